// Steering from the player: ablate a head, clamp / scale an SAE latent, or steer along a latent's decoder row,
// from the current step. Open loop: the action probabilities of the next steps, clean against edited, on the
// recorded frames. Closed loop: a BlockWorld experiment (the episode's agent, scene and seed, with and without the
// edit) recorded in the background and served when done.

import {api, drawLines, el, errorBox, fmt, hiDpiCanvas, legend, waitJob} from "./util.js";

const COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
const CHART_W = 560, CHART_H = 150;

export function steeringPanel({eid, view, step, seek}) {
  const kind = el("select", {"aria-label": "edit kind", class: "edit-kind"},
    el("option", {value: "head"}, "ablate a head (zero its output)"),
    el("option", {value: "clamp"}, "clamp or scale an SAE latent"),
    el("option", {value: "steer"}, "steer along an SAE latent's decoder row"));
  const layer = el("select", {"aria-label": "ablated layer", class: "steer-layer"},
    view.layers.map((l) => el("option", {value: l}, `layer ${l}`)));
  const head = el("select", {"aria-label": "ablated head", class: "steer-head"}, el("option", {value: "*"}, "all heads"),
    Array.from({length: view.heads}, (_, i) => el("option", {value: i}, `head ${i}`)));
  const sae = el("select", {"aria-label": "SAE", class: "steer-sae"});
  const latent = el("input", {type: "number", min: 0, value: 0, class: "steer-latent", "aria-label": "latent"});
  const mode = el("select", {"aria-label": "clamp mode"}, el("option", {value: "value"}, "set to"),
    el("option", {value: "scale"}, "multiply by"));
  const amount = el("input", {type: "number", step: "any", value: 0, class: "steer-amount", "aria-label": "amount"});
  const strength = el("input", {type: "number", step: "any", value: 4, "aria-label": "strength"});
  const nSteps = el("input", {type: "number", min: 1, max: 256, value: 32, class: "steer-steps", "aria-label": "steps"});
  const nClosed = el("input", {type: "number", min: 1, max: 2000, value: view.length, "aria-label": "closed-loop steps"});
  const status = el("div", {class: "steer-status", role: "status"});
  const result = el("div", {class: "steer-result"});
  const headFields = el("span", {}, layer, head);
  const saeFields = el("span", {hidden: true}, sae, " latent ", latent);
  const clampFields = el("span", {hidden: true}, mode, amount);
  const steerFields = el("span", {hidden: true}, "strength ", strength);
  kind.addEventListener("change", () => {
    headFields.hidden = kind.value !== "head";
    saeFields.hidden = kind.value === "head";
    clampFields.hidden = kind.value !== "clamp";
    steerFields.hidden = kind.value !== "steer";
  });
  api("/api/saes").then(({saes}) => {
    sae.replaceChildren(...saes.map((s) => el("option", {value: s.id}, `${s.name} (${s.hook}, ${s.d_sae} latents)`)));
    if (!saes.length) sae.append(el("option", {value: ""}, "no SAE served"));
  }, (e) => status.replaceChildren(errorBox(e.message)));

  function edit() {
    if (kind.value === "head") return {kind: "head_ablation", heads: [`${layer.value}.${head.value}`]};
    if (!sae.value) throw new Error("no SAE is served: pass an SAE directory to vptlens serve");
    if (kind.value === "clamp") {
      return {kind: "latent_clamp", sae: sae.value, latents: [Number(latent.value)], [mode.value]: Number(amount.value)};
    }
    return {kind: "steering", sae: sae.value, latent: Number(latent.value), strength: Number(strength.value)};
  }

  async function openLoop() {
    const start = step();
    status.textContent = `replaying to step ${start} and running ${nSteps.value} steps clean and edited…`;
    result.replaceChildren();
    try {
      const data = await api(`/api/episodes/${eid}/steer`, {edit: edit(), start, n_steps: Number(nSteps.value)});
      status.textContent = `${data.edit}, from step ${start}: ${data.steps.length} steps `
        + `(replay checked against the recording: max error ${fmt(data.replay_max_abs_logprob_error)} nats)`;
      result.replaceChildren(openLoopResult(data, seek));
    } catch (e) {
      status.replaceChildren(errorBox(e.message));
    }
  }

  async function closedLoop() {
    status.textContent = "starting a closed-loop experiment…";
    try {
      const answer = await api(`/api/episodes/${eid}/closed_loop`, {edit: edit(), n_steps: Number(nClosed.value)});
      const bar = el("progress", {max: 1, value: 0});
      const text = el("span", {});
      status.replaceChildren(el("div", {}, "closed loop: ", bar, " ", text));
      const job = await waitJob(answer.pending, (j) => { bar.value = j.progress; text.textContent = j.message; });
      if (job.status === "failed") status.replaceChildren(errorBox(job.error));
      else {
        status.replaceChildren(el("div", {class: "closed-done"}, `closed loop done in ${fmt(job.seconds)} s: `,
          el("a", {href: `#/experiment/${job.result.experiment}`}, "open the experiment (edited vs control episodes)")));
      }
    } catch (e) {
      status.replaceChildren(errorBox(e.message));
    }
  }

  return el("section", {class: "steer"},
    el("h2", {}, "Steering"),
    el("p", {class: "small"}, "Open loop: the recorded frames are replayed through the agent up to the current step; from "
      + "there a clean and an edited copy run side by side (the edit enters the edited copy's memory). Closed loop: "
      + "BlockWorld episodes with the episode's agent, scene and seed, with and without the edit."),
    el("div", {class: "steer-form"}, kind, headFields, saeFields, clampFields, steerFields),
    el("div", {class: "steer-form"},
      el("button", {class: "run-open-loop", onclick: openLoop}, "Open loop from the current step"), " for ", nSteps, " steps",
      el("span", {class: "sep"}), el("button", {class: "run-closed-loop", onclick: closedLoop}, "Closed loop in BlockWorld"),
      " for ", nClosed, " steps"),
    status, result);
}

function mean(rows, j) {
  return rows.reduce((a, r) => a + r[j], 0) / Math.max(1, rows.length);
}

function openLoopResult(data, seek) {
  const labels = data.labels;
  const delta = labels.map((_, j) => mean(data.edited, j) - mean(data.clean, j));
  const order = labels.map((_, j) => j).sort((a, b) => Math.abs(delta[b]) - Math.abs(delta[a]));
  const shown = [labels.indexOf("attack"), ...order.filter((j) => labels[j] !== "attack")].slice(0, 4);
  const chart = hiDpiCanvas(CHART_W, CHART_H, {class: "steer-chart"});
  const ctx = chart.getContext("2d");
  const box = {x: 36, y: 6, w: CHART_W - 44, h: CHART_H - 24};
  ctx.fillStyle = "#f6f6f6";
  ctx.fillRect(box.x, box.y, box.w, box.h);
  const series = shown.flatMap((j, i) => [
    {values: data.clean.map((r) => r[j]), colour: COLOURS[i], dash: [4, 3]},
    {values: data.edited.map((r) => r[j]), colour: COLOURS[i], width: 2},
  ]);
  const {lo, hi} = drawLines(ctx, series, box, {yMin: 0});
  ctx.fillStyle = "#333";
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillText(fmt(hi, 2), 2, box.y + 10);
  ctx.fillText(fmt(lo, 2), 2, box.y + box.h);
  ctx.fillText(`step ${data.steps[0]}`, box.x, CHART_H - 4);
  ctx.textAlign = "right";
  ctx.fillText(`step ${data.steps[data.steps.length - 1]}`, box.x + box.w, CHART_H - 4);
  chart.addEventListener("click", (ev) => {
    seek(data.steps[0] + Math.round(((ev.offsetX - box.x) / box.w) * (data.steps.length - 1)));
  });
  const kl = data.kl_buttons.map((v, i) => v + data.kl_camera[i]);
  const rows = order.map((j) => el("tr", {},
    el("td", {class: "l"}, labels[j]), el("td", {}, fmt(mean(data.clean, j))), el("td", {}, fmt(mean(data.edited, j))),
    el("td", {class: delta[j] > 0 ? "up" : delta[j] < 0 ? "down" : ""}, fmt(delta[j]))));
  return el("div", {},
    el("div", {class: "small"}, "P(key) over the steps: dashed clean, solid edited (click to jump)"), chart,
    legend(shown.map((j, i) => [COLOURS[i], labels[j]])),
    el("div", {class: "small"}, `KL(clean ‖ edited) of both heads: mean ${fmt(kl.reduce((a, b) => a + b, 0) / kl.length)}, `
      + `max ${fmt(Math.max(...kl))} nats`),
    el("table", {class: "steer-table"},
      el("tr", {}, el("th", {class: "l"}, "action"), el("th", {}, "mean P clean"), el("th", {}, "mean P edited"), el("th", {}, "Δ")),
      rows));
}
