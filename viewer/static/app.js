// The app's router (views by URL hash), the runs page and the jobs page.

import {experimentView, experimentsView} from "./experiments.js";
import {featuresView, latentView, saeView} from "./features.js";
import {playerView} from "./player.js";
import {api, el, errorBox, fmt} from "./util.js";

const ROUTES = [
  [/^#\/?$/, runsView, "runs"],
  [/^#\/episode\/(\w+)$/, playerView, "runs"],
  [/^#\/features$/, featuresView, "features"],
  [/^#\/sae\/(\w+)$/, saeView, "features"],
  [/^#\/sae\/(\w+)\/latent\/(\d+)$/, latentView, "features"],
  [/^#\/experiments$/, experimentsView, "experiments"],
  [/^#\/experiment\/(\w+)$/, experimentView, "experiments"],
  [/^#\/jobs$/, jobsView, "jobs"],
];

let cleanup = () => {};

// Views keep their state in the hash's query with history.replaceState, which fires no hashchange: a hashchange
// is always a navigation (a link, the address bar, back), so the view is drawn afresh.
async function navigate() {
  const hash = location.hash || "#/";
  const path = hash.split("?")[0];
  cleanup();
  cleanup = () => {};
  const main = document.getElementById("main");
  main.replaceChildren();
  for (const [pattern, view, nav] of ROUTES) {
    const match = path.match(pattern);
    if (!match) continue;
    document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.nav === nav));
    try {
      cleanup = (await view(main, match.slice(1))) || (() => {});
    } catch (e) {
      main.append(errorBox(e.message));
    }
    return;
  }
  main.append(errorBox(`no page ${path}`));
}

window.addEventListener("hashchange", navigate);
navigate();

function behaviour(e) {
  if (e.hits === null || e.hits === undefined) return ["", "", ""];
  return [`${e.hits}${e.target_hits !== e.hits ? ` (target ${e.target_hits})` : ""}`,
    `${e.kills}${e.target_killed ? " (target)" : ""}`, e.logs];
}

function runTable(run) {
  const rows = run.episodes.map((e) => e.error
    ? el("tr", {class: "damaged"}, el("td", {class: "l"}, el("a", {href: `#/episode/${e.id}`}, e.name)),
      el("td", {class: "l"}, el("span", {class: "badge damaged"}, "damaged")), el("td", {class: "l", colspan: 7}, e.error))
    : el("tr", {},
      el("td", {class: "l"}, el("a", {href: `#/episode/${e.id}`}, e.name)),
      el("td", {class: "l"}, el("span", {class: `badge ${e.status}`}, e.status)),
      el("td", {}, e.length), el("td", {class: "l"}, e.scene || "none"), el("td", {}, e.seed),
      ...behaviour(e).map((v) => el("td", {}, v)), el("td", {class: "l"}, e.edit || "")));
  return el("table", {class: "episodes"},
    el("tr", {}, ["episode", "status", "steps", "scene", "seed", "hits", "kills", "logs", "recorded edit"].map((h, i) =>
      el("th", {class: [0, 1, 3, 8].includes(i) ? "l" : ""}, h))),
    rows);
}

async function runsView(root) {
  root.append(el("h1", {}, "Runs and episodes"));
  const {runs} = await api("/api/runs");
  if (!runs.length) root.append(el("p", {}, "No run is served."));
  const plain = runs.filter((r) => !r.experiment), cells = runs.filter((r) => r.experiment);
  for (const run of plain) {
    root.append(el("section", {class: "run"}, el("h2", {}, run.name, el("span", {class: "small"}, ` ${run.episodes.length} episodes`)),
      runTable(run)));
  }
  if (cells.length) {
    root.append(el("h2", {}, "Experiment cells"));
    for (const run of cells) {
      root.append(el("details", {class: "run"},
        el("summary", {}, run.name, " ", el("a", {href: `#/experiment/${run.experiment}`}, "(experiment)"),
          el("span", {class: "small"}, ` ${run.episodes.length} episodes`)),
        runTable(run)));
    }
  }
  root.append(el("p", {class: "small"}, "hits and kills count every mob hurt or killed (the scene's target in brackets); "
    + "logs counts log blocks broken. From each episode's ground-truth events."));
}

async function jobsView(root) {
  root.append(el("h1", {}, "Background jobs"));
  const box = el("div", {});
  root.append(box);
  let alive = true;
  const refresh = async () => {
    const {jobs} = await api("/api/jobs");
    box.replaceChildren(jobs.length ? el("table", {},
      el("tr", {}, el("th", {class: "l"}, "job"), el("th", {class: "l"}, "status"), el("th", {}, "progress"),
        el("th", {}, "seconds"), el("th", {class: "l"}, "result")),
      jobs.map((j) => el("tr", {},
        el("td", {class: "l"}, j.description), el("td", {class: "l"}, j.status), el("td", {}, `${Math.round(100 * j.progress)}%`),
        el("td", {}, fmt(j.seconds)),
        el("td", {class: "l"}, j.error ? errorBox(j.error) : j.result && j.result.experiment
          ? el("a", {href: `#/experiment/${j.result.experiment}`}, "experiment") : j.message))))
      : el("p", {}, "No job has run (closed-loop launches and SAE indexing show here)."));
    if (alive && jobs.some((j) => j.status === "running")) setTimeout(refresh, 1000);
  };
  await refresh();
  return () => { alive = false; };
}
