// Experiment reports: the intervention suite's tables (outcomes per cell, comparisons against the control, open
// loop) and plots, every episode linked to the player. The static report.html stays the export format.

import {api, el, fmt} from "./util.js";

export async function experimentsView(root) {
  root.append(el("h1", {}, "Experiments"));
  const {experiments} = await api("/api/experiments");
  if (!experiments.length) {
    root.append(el("p", {}, "No experiment is served: pass experiment directories (vptlens experiment run --out) to "
      + "vptlens serve, or launch a closed loop from the player."));
    return;
  }
  root.append(el("ul", {}, experiments.map((x) =>
    el("li", {}, el("a", {href: `#/experiment/${x.id}`}, x.name), ` (${x.n_cells} cells)`))));
}

const interval = (r) => (r.low === null || r.low === undefined ? "" : `[${fmt(r.low)}, ${fmt(r.high)}]`);

function estimate(result) {
  return result.estimate ?? result.mean ?? result.median ?? null;
}

function table(headers, rows, left = [0]) {
  return el("table", {},
    el("tr", {}, headers.map((h, i) => el("th", {class: left.includes(i) ? "l" : ""}, h))),
    rows.map((row) => el("tr", {}, row.map((cell, i) => el("td", {class: left.includes(i) ? "l" : ""}, cell)))));
}

export async function experimentView(root, [xid]) {
  const x = await api(`/api/experiments/${xid}`);
  const fileUrl = (name) => `/api/experiments/${xid}/files/${name}`;
  root.append(el("p", {}, el("a", {href: "#/experiments"}, "← all experiments")),
    el("h1", {}, `Experiment ${x.title}`),
    x.description ? el("p", {class: "small"}, x.description) : "",
    el("p", {}, `${x.cells.length} cells, seeds ${x.seeds ? x.seeds.join(", ") : "?"}, ${x.n_steps} steps per episode. Control: `
      + Object.entries(x.control || {}).map(([k, v]) => `${k} = ${v}`).join(", ") + ". ",
    x.files.includes("report.html") ? el("a", {href: fileUrl("report.html"), target: "_blank"}, "static report (export)") : "",
    " ", x.files.includes("results.csv") ? el("a", {href: fileUrl("results.csv")}, "results.csv") : ""));

  root.append(el("h2", {}, "Cells and their episodes"));
  root.append(table(["cell", "agent", "scene", "edit", "episodes (open in the player)"],
    x.cells.map((c) => [String(c.index), c.agent, c.scene, c.edit,
      el("div", {class: "cell-episodes"}, c.episodes.length ? c.episodes.map((e) => el("a", {href: `#/episode/${e.id}`, class: "episode-link",
        title: Object.entries(e.metrics).map(([k, v]) => `${k} ${v}`).join(", ")},
      e.name.replace("episode_", "").replace(".zarr", ""), " ",
      el("span", {class: "small"}, Object.entries(e.metrics).slice(0, 3).map(([k, v]) => `${k.replace(/_/g, " ")} ${v}`).join(" · "))))
        : el("span", {class: "small"}, "not recorded yet"))]), [0, 1, 2, 3, 4]));

  const results = x.results;
  if (!results) {
    root.append(el("p", {}, "No analysis yet: run vptlens experiment report on the directory."));
    return;
  }
  if (results.comparisons && results.comparisons.length) {
    root.append(el("h2", {}, "Against the control"),
      el("p", {class: "small"}, "Paired by seed; binary: rate difference (Newcombe) and exact McNemar; counts and continuous: "
        + "mean paired difference (bootstrap) and Wilcoxon; time to event: log-rank. p (Holm) within each metric and factor."),
      table(["metric", "factor", "treatment", "control", "pairs", "effect", "95% interval", "p", "p (Holm)"],
        results.comparisons.map((r) => [r.metric, r.factor, r.treatment, r.control, r.n_pairs, fmt(r.effect), interval(r),
          fmt(r.p_value), fmt(r.p_holm)]), [0, 1, 2, 3]));
  }
  if (results.summaries && results.summaries.length) {
    root.append(el("h2", {}, "Outcomes per cell"),
      table(["cell", "metric", "n", "estimate", "95% interval"],
        results.summaries.map((s) => [`${s.cell}: ${s.scene}, ${s.edit}, ${s.agent}`, s.metric, s.n, fmt(estimate(s.result)),
          interval(s.result)]), [0, 1]));
  }
  if (results.open_loop && results.open_loop.length) {
    const m = (r, k) => `${fmt(r[k].mean)} ${interval(r[k])}`;
    root.append(el("h2", {}, "Open loop"),
      table(["edit", "scene", "agent", "episodes", "mean ΔP(attack)", "mean |ΔP(attack)|", "KL buttons", "KL camera"],
        results.open_loop.map((r) => [r.edit, r.scene, r.agent, r.n_episodes, m(r, "d_p_attack"), m(r, "abs_d_p_attack"),
          m(r, "kl_buttons"), m(r, "kl_camera")]), [0, 1, 2]));
  }
  const plots = x.files.filter((f) => f.startsWith("img/") && !/img\/cell\d+_seed/.test(f));
  if (plots.length) {
    root.append(el("h2", {}, "Plots"), el("div", {class: "plots"}, plots.map((f) => el("img", {src: fileUrl(f), alt: f}))));
  }
}
