// The SAE feature browser: every latent in a sortable, filterable, searchable list (rendered virtually: thousands
// of rows cost what the visible ones cost), and a page per latent: activation histogram, top and quantile examples
// with their temporal context and links to the player, the trace along an episode, lift of keys and events, and
// its effect on the per-key action probabilities.

import {api, apiReady, drawLines, el, errorBox, fmt, hashQuery, hiDpiCanvas, pct, setHashQuery} from "./util.js";

const ROW_H = 26;
const VISIBLE_ROWS = 22;

export async function featuresView(root) {
  root.append(el("h1", {}, "SAE features"));
  const {saes} = await api("/api/saes");
  if (!saes.length) {
    root.append(el("p", {}, "No SAE is served: pass SAE directories (from vptlens sae train) to vptlens serve."));
    return;
  }
  root.append(el("table", {},
    el("tr", {}, ["SAE", "hook", "architecture", "latents", "shown on"].map((h) => el("th", {class: "l"}, h))),
    saes.map((s) => el("tr", {},
      el("td", {class: "l"}, el("a", {href: `#/sae/${s.id}`}, s.name)), el("td", {class: "l"}, s.hook),
      el("td", {class: "l"}, `${s.architecture}${s.k ? ` k=${s.k}` : ""}`), el("td", {}, s.d_sae),
      el("td", {class: "l"}, s.run ? `run ${s.run}` : errorBox(s.problem))))));
}

function progressBox(text) {
  const bar = el("progress", {max: 1, value: 0});
  const message = el("span", {class: "small"}, text);
  return {element: el("div", {class: "indexing"}, bar, " ", message),
    update: (job) => { bar.value = job.progress; message.textContent = `${job.description}: ${job.message}`; }};
}

export async function saeView(root, [sid]) {
  let alive = true;
  root.append(el("p", {}, el("a", {href: "#/features"}, "← all SAEs")));
  const title = el("h1", {}, `SAE ${sid}`);
  root.append(title);
  const progress = progressBox("encoding the run…");
  root.append(progress.element);
  const data = await apiReady(`/api/saes/${sid}/latents`, progress.update, () => !alive);
  progress.element.remove();
  if (!data) return;
  const {saes} = await api("/api/saes");
  const me = saes.find((s) => s.id === sid);
  title.textContent = `SAE ${me ? me.name : sid}`;
  const cols = data.columns;
  const n = data.d_sae;
  const query = hashQuery();
  const state = {q: query.get("q") || "", filter: query.get("filter") || "all", sort: query.get("sort") || "firing_rate",
    desc: query.get("desc") !== "0", extra: [], rateMin: query.get("rmin") || "", rateMax: query.get("rmax") || ""};
  const extraValues = new Map();
  const isDense = (i) => cols.firing_rate[i] > data.dense_rate;
  const filters = {
    all: () => true, alive: (i) => cols.n_fire[i] > 0, dead: (i) => cols.n_fire[i] === 0, dense: isDense,
    "not dense": (i) => cols.n_fire[i] > 0 && !isDense(i),
  };

  const search = el("input", {type: "search", value: state.q, class: "latent-search", "aria-label": "search latents",
    placeholder: "latent id, or what it goes with: attack, block_broken…", oninput: () => { state.q = search.value; update(); }});
  const filter = el("select", {"aria-label": "filter", class: "latent-filter", onchange: () => { state.filter = filter.value; update(); }},
    Object.keys(filters).map((f) => el("option", {value: f, selected: f === state.filter},
      f === "dense" ? `dense (fires > ${pct(data.dense_rate)} of steps)` : f)));
  // the firing-rate range, in % of steps (an empty box: no bound)
  const rateBox = (key, name, placeholder) => {
    const box = el("input", {type: "number", min: 0, max: 100, step: "any", value: state[key], class: `rate-${name}`,
      "aria-label": `${name} firing rate, %`, placeholder, oninput: () => { state[key] = box.value; update(); }});
    return box;
  };
  const rateRange = el("span", {class: "rate-range"}, "firing rate ", rateBox("rateMin", "min", "0"), " to ",
    rateBox("rateMax", "max", "100"), " %");
  const addColumn = el("select", {"aria-label": "add a column", class: "add-column", onchange: () => add(addColumn.value)},
    el("option", {value: ""}, "add a column…"),
    el("optgroup", {label: "lift of a key (P(key | fires) / P(key))"}, data.keys.map((k) => el("option", {value: `lift:key:${k}`}, `lift: ${k}`))),
    el("optgroup", {label: "lift of an event"}, data.events.map((k) => el("option", {value: `lift:event:${k}`}, `lift: ${k}`))),
    el("optgroup", {label: "correlation with a label"}, data.labels.map((k) => el("option", {value: `corr:${k}`}, `corr: ${k}`))));
  const count = el("span", {class: "small"});
  const status = el("div", {});
  const header = el("div", {class: "vrow vhead"});
  const body = el("div", {class: "vbody"});
  const spacer = el("div", {class: "vspacer"});
  const scroller = el("div", {class: "vscroll", style: `height:${ROW_H * VISIBLE_ROWS}px`}, spacer, body);
  root.append(el("p", {class: "small"}, `${n} latents on run ${data.run} (${data.n_steps} steps). A latent fires at a step when its code is > 0. `
    + "Click a column to sort; lift and correlation columns are computed over every step."),
  el("div", {class: "toolbar"}, search, filter, rateRange, addColumn, count), status, el("div", {class: "vtable"}, header, scroller));

  const base = [["id", "latent"], ["firing_rate", "firing rate"], ["max_act", "max"], ["mean_act", "mean if fires"]];
  const adding = new Set();
  let order = [];
  const value = (key, i) => key === "id" ? i : (cols[key] || extraValues.get(key))[i];

  async function add(name) {
    addColumn.value = "";
    if (!name || state.extra.includes(name) || adding.has(name)) return;
    adding.add(name);
    status.textContent = `computing ${name}…`;
    try {
      const answer = await api(`/api/saes/${sid}/column?name=${encodeURIComponent(name)}`);
      extraValues.set(name, answer.values);
      state.extra.push(name);
      state.sort = name;
      state.desc = true;
      status.textContent = "";
      update();
    } catch (e) {
      status.replaceChildren(errorBox(e.message));
    }
    adding.delete(name);
  }

  function drop(name) {
    state.extra = state.extra.filter((x) => x !== name);
    if (state.sort === name) state.sort = "firing_rate";
    update();
  }

  function columns() {
    return [...base, ...state.extra.map((x) => [x, x.replace(/^lift:(key|event):/, "lift ").replace(/^corr:/, "corr ")]), ["top", "goes with (lift)"]];
  }

  function update() {
    const q = state.q.trim().toLowerCase();
    const keep = filters[state.filter] || filters.all;
    const byId = /^\d+$/.test(q);
    const bound = (text, otherwise) => (text.trim() === "" || !Number.isFinite(Number(text)) ? otherwise : Number(text) / 100);
    const lo = bound(state.rateMin, -Infinity), hi = bound(state.rateMax, Infinity);
    order = [];
    for (let i = 0; i < n; i++) {
      if (!keep(i) || cols.firing_rate[i] < lo || cols.firing_rate[i] > hi) continue;
      if (q && !(byId ? String(i).startsWith(q) : cols.top[i].toLowerCase().includes(q))) continue;
      order.push(i);
    }
    const key = state.sort;
    const sign = state.desc ? -1 : 1;
    order.sort((a, b) => {
      const va = value(key, a), vb = value(key, b);
      if (va === null || va === undefined) return 1;
      if (vb === null || vb === undefined) return -1;
      return sign * (va - vb) || a - b;
    });
    count.textContent = `${order.length} of ${n} latents`;
    header.replaceChildren(...columns().map(([k, label]) => el("button", {class: `vcell${k === "top" ? " wide" : ""}${k === state.sort ? " sorted" : ""}`,
      onclick: (ev) => {
        if (ev.target.classList.contains("drop")) { drop(k); return; }
        if (k === "top") return;
        state.desc = state.sort === k ? !state.desc : true; state.sort = k; update();
      }},
      label, k === state.sort ? (state.desc ? " ▼" : " ▲") : "",
      state.extra.includes(k) ? el("span", {class: "drop", title: "remove this column"}, "×") : "")));
    spacer.style.height = `${order.length * ROW_H}px`;
    setHashQuery({q: state.q, filter: state.filter, sort: state.sort, desc: state.desc ? 1 : 0, rmin: state.rateMin,
      rmax: state.rateMax});
    drawRows();
  }

  function drawRows() {
    const first = Math.floor(scroller.scrollTop / ROW_H);
    const rows = order.slice(first, first + VISIBLE_ROWS + 2);
    body.style.transform = `translateY(${first * ROW_H}px)`;
    body.replaceChildren(...rows.map((i) => el("a", {class: `vrow${cols.n_fire[i] === 0 ? " dead" : ""}`, href: `#/sae/${sid}/latent/${i}`,
      "data-latent": i}, columns().map(([k]) => el("span", {class: `vcell${k === "top" ? " wide" : ""}`},
      k === "id" ? String(i) : k === "top" ? cols.top[i] : k === "firing_rate" ? pct(value(k, i)) : fmt(value(k, i)))))));
  }

  scroller.addEventListener("scroll", drawRows);
  update();
  return () => { alive = false; };
}

function histogram(h) {
  const canvas = hiDpiCanvas(560, 150, {class: "histogram"});
  const ctx = canvas.getContext("2d");
  const counts = h.counts, inner = h.inner_edges;
  const used = counts.map((c, i) => (c > 0 ? i : -1)).filter((i) => i >= 0);
  if (!used.length) {
    ctx.fillText("never fires on this run", 200, 75);
    return canvas;
  }
  // bin 0 is (0, inner[0]), bin i is [inner[i-1], inner[i]), the last >= inner[-1]
  const edge = (i) => (i === 0 ? inner[0] / 10 : i > inner.length ? inner[inner.length - 1] * 10 : inner[i - 1]);
  const lo = used[0], hi = used[used.length - 1] + 1;
  const box = {x: 40, y: 8, w: 500, h: 110};
  const top = Math.max(...counts);
  const lx = (v) => box.x + ((Math.log10(v) - Math.log10(edge(lo))) / (Math.log10(edge(hi)) - Math.log10(edge(lo)))) * box.w;
  ctx.fillStyle = "#1f77b4";
  for (let i = lo; i < hi; i++) {
    const x0 = lx(edge(i)), x1 = lx(edge(i + 1));
    const bh = (counts[i] / top) * box.h;
    ctx.fillRect(x0, box.y + box.h - bh, Math.max(1, x1 - x0 - 1), bh);
  }
  ctx.fillStyle = "#333";
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillText(String(top), 2, box.y + 10);
  ctx.fillText("0", 2, box.y + box.h);
  const ticks = new Set([edge(lo), edge(hi)]);  // the ends, and every power of ten between them
  for (let e = Math.ceil(Math.log10(edge(lo))); e <= Math.floor(Math.log10(edge(hi))); e++) ticks.add(10 ** e);
  for (const v of ticks) {
    ctx.fillRect(lx(v), box.y + box.h, 1, 4);
    ctx.fillText(fmt(v, 2), Math.min(box.x + box.w - 20, lx(v) - 8), box.y + box.h + 16);
  }
  ctx.fillText("activation (log scale) → steps per bin", box.x + 140, 146);
  return canvas;
}

function exampleCard(ex) {
  const last = ex.context_start + ex.context.length - 1;
  const steps = [-6, -3, 0, 3, 6].map((d) => ex.step + d).filter((s) => s >= ex.context_start && s <= last);
  const spark = hiDpiCanvas(steps.length * 64, 28, {class: "spark"});
  const ctx = spark.getContext("2d");
  const box = {x: 0, y: 2, w: steps.length * 64, h: 24};
  ctx.fillStyle = "#f3f3f3";
  ctx.fillRect(0, 0, box.w, 28);
  const xs = (s) => ((s - steps[0] + 0.5) / (steps[steps.length - 1] - steps[0] + 1)) * box.w;
  const values = ex.context.slice(steps[0] - ex.context_start, steps[steps.length - 1] - ex.context_start + 1);
  drawLines(ctx, [{values, colour: "#d62728", width: 1.5}], {...box, x: xs(steps[0]), w: xs(steps[steps.length - 1]) - xs(steps[0])}, {yMin: 0});
  ctx.fillStyle = "#000";
  ctx.fillRect(xs(ex.step), 0, 1, 28);
  return el("a", {class: "example", href: `#/episode/${ex.episode}?t=${ex.step}`, title: "open this step in the player"},
    el("img", {src: `/api/episodes/${ex.episode}/strip?steps=${steps.join(",")}&size=64`, width: steps.length * 64, height: 64,
      alt: `frames ${steps.join(", ")}`}),
    spark, el("div", {class: "small"}, `${ex.episode_name} step ${ex.step} · act ${fmt(ex.activation)}`));
}

function liftTable(rows, what) {
  const sorted = [...rows].sort((a, b) => (b.lift ?? -1) - (a.lift ?? -1));
  return el("table", {},
    el("tr", {}, el("th", {class: "l"}, what), el("th", {}, "steps firing with it"), el("th", {}, "P(· | fires)"), el("th", {}, "P(·)"), el("th", {}, "lift")),
    sorted.map((r) => el("tr", {}, el("td", {class: "l"}, r.name), el("td", {}, r.n_both), el("td", {}, fmt(r.p_given_fire)),
      el("td", {}, fmt(r.p)), el("td", {}, fmt(r.lift)))));
}

async function effectPanel(sid, s, box) {
  box.replaceChildren(el("p", {class: "small"}, "replaying the top examples through the agent…"));
  try {
    const e = await api(`/api/saes/${sid}/latents/${s}/effect`);
    if (!e.n_examples) { box.replaceChildren(el("p", {}, "It never fires: no effect to measure.")); return; }
    const rows = e.labels.map((label, j) => el("tr", {},
      el("td", {class: "l"}, label), el("td", {}, fmt(e.clean[j])), el("td", {}, fmt(e.without_latent[j])),
      el("td", {class: "bar-cell"}, el("span", {class: e.delta[j] >= 0 ? "bar up" : "bar down",
        style: `width:${Math.min(100, 400 * Math.abs(e.delta[j]))}px`}), ` ${fmt(e.delta[j])}`)));
    box.replaceChildren(el("p", {class: "small"}, `Removing the latent's contribution (z·W_dec) at each of its ${e.n_examples} top steps, `
      + `that step only: mean probability of each key, KL buttons ${fmt(e.kl_buttons)}, camera ${fmt(e.kl_camera)} nats.`),
    el("table", {class: "effect"}, el("tr", {}, el("th", {class: "l"}, "action"), el("th", {}, "P"), el("th", {}, "P without it"),
      el("th", {class: "l"}, "Δ")), rows));
  } catch (err) {
    box.replaceChildren(errorBox(err.message));
  }
}

export async function latentView(root, [sid, latent]) {
  let alive = true;
  const s = Number(latent);
  root.append(el("p", {}, el("a", {href: `#/sae/${sid}`}, "← all latents")));
  const progress = progressBox("encoding the run…");
  root.append(progress.element);
  const d = await apiReady(`/api/saes/${sid}/latents/${s}`, progress.update, () => !alive);
  progress.element.remove();
  if (!d) return;
  const traceBox = el("div", {});
  const best = d.episodes.reduce((a, b) => (b.max > a.max ? b : a), d.episodes[0]);
  const episodeSelect = el("select", {"aria-label": "episode", onchange: () => drawTrace(episodeSelect.value)},
    d.episodes.map((e) => el("option", {value: e.id, selected: e.id === best.id}, `${e.name} (max ${fmt(e.max)})`)));
  const effect = el("div", {class: "effect-box"});
  root.append(
    el("h1", {}, `Latent ${s}`, d.n_fire === 0 ? el("span", {class: "badge damaged"}, "dead") : ""),
    el("p", {}, `fires at ${d.n_fire} of ${d.n_steps} steps (${pct(d.firing_rate)}); max ${fmt(d.max_act)}, mean when firing ${fmt(d.mean_act)}`),
    el("div", {class: "two-col"},
      el("div", {}, el("h2", {}, "Activation histogram"), histogram(d.histogram)),
      el("div", {}, el("h2", {}, "Effect on the action probabilities"), effect)),
    el("h2", {}, "Along an episode"), el("div", {class: "toolbar"}, episodeSelect, el("span", {class: "small"}, "click the trace to open that step")), traceBox,
    el("h2", {}, "Top-activating steps"), el("div", {class: "examples"}, d.top.map(exampleCard)));
  for (const [q, interval] of d.quantiles.entries()) {
    root.append(el("h3", {}, `Interval ${q + 1}: activations in (${fmt(interval.lo)}, ${fmt(interval.hi)}], ${interval.count} steps`),
      el("div", {class: "examples"}, interval.examples.map(exampleCard)));
  }
  root.append(el("div", {class: "two-col"},
    el("div", {}, el("h2", {}, "Keys pressed when it fires"), liftTable(d.keys, "MineRL key")),
    el("div", {}, el("h2", {}, "Env events when it fires"), d.events.length ? liftTable(d.events, "event") : el("p", {}, "No events in the run."))));

  async function drawTrace(eid) {
    const {values} = await api(`/api/saes/${sid}/latents/${s}/trace?episode=${eid}`);
    const canvas = hiDpiCanvas(900, 90, {class: "trace"});
    const ctx = canvas.getContext("2d");
    const box = {x: 40, y: 4, w: 850, h: 70};
    ctx.fillStyle = "#f6f6f6";
    ctx.fillRect(box.x, box.y, box.w, box.h);
    const r = drawLines(ctx, [{values, colour: "#d62728"}], box, {yMin: 0});
    ctx.fillStyle = "#333";
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillText(fmt(r.hi), 2, 14);
    ctx.fillText("0", 2, box.y + box.h);
    ctx.fillText(`step 0 … ${values.length - 1}`, box.x, 88);
    canvas.addEventListener("click", (ev) => {
      const t = Math.round(((ev.offsetX - box.x) / box.w) * (values.length - 1));
      location.hash = `#/episode/${eid}?t=${Math.max(0, Math.min(values.length - 1, t))}`;
    });
    traceBox.replaceChildren(canvas);
  }
  drawTrace(best.id);
  effectPanel(sid, s, effect);
  return () => { alive = false; };
}
