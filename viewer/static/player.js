// The episode player: the frame, scrubbing (slider, keyboard), play/pause at 20 fps, the timeline with event and
// key-frame markers, traces (value, entropy, keys, camera), the action at the current step (traces.js), the
// attention panel (attention.js) and steering (steer.js). In an offline snapshot it plays the exported steps only,
// without steering or saliency (they need the server's agent).

import {AttentionPanel} from "./attention.js";
import {EpisodeCache} from "./frames.js";
import {steeringPanel} from "./steer.js";
import {EVENT_COLOURS, KEY_FRAME_COLOUR, TRACE_W, drawActionNow, drawTimeline, drawTraceBackground, drawTraces,
  xStep} from "./traces.js";
import {SNAPSHOT, api, el, errorBox, fmt, hashQuery, hiDpiCanvas, setHashQuery, sizeCanvas} from "./util.js";

const FPS = 20;
const FRAME_PX = 384;
const FULL_BOX = [640, 384];  // full-resolution frames are shown at their aspect within this (w, h)

export async function playerView(root, [eid]) {
  const query = hashQuery();
  let view;
  try {
    view = await api(`/api/episodes/${eid}`);
  } catch (e) {
    root.append(el("h1", {}, `Episode ${eid}`), errorBox(e.message),
      el("p", {}, el("a", {href: "#/"}, "back to the runs")));
    return () => {};
  }
  const n = view.length;
  const span = SNAPSHOT ? {lo: SNAPSHOT.steps[0], hi: SNAPSHOT.steps[1]} : {lo: 0, hi: n};  // the steps it plays
  const clamp = (t) => Math.min(span.hi - 1, Math.max(span.lo, Math.round(t)));
  const player = {eid, view, t: clamp(Number(query.get("t") || 0)), playing: false};
  const header = el("div", {class: "episode-head"},
    el("h1", {}, view.name, " ", el("span", {class: `badge ${view.status}`}, view.status)),
    el("p", {class: "small summary-line"}, summaryLine(view)));
  root.append(header);
  if (n === 0) {
    root.append(errorBox("This episode has no committed steps yet (a recording in progress commits every 64 steps)."));
    return () => {};
  }

  let scheduled = false;
  const render = () => {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => { scheduled = false; draw(); });
  };
  const cache = new EpisodeCache(eid, view, render, span);
  player.cache = cache;

  // ---- frame and controls
  const frame = hiDpiCanvas(FRAME_PX, FRAME_PX, {class: "frame", "data-step": "", "aria-label": "frame"});
  const slider = el("input", {type: "range", min: span.lo, max: span.hi - 1, value: player.t, class: "slider",
    "aria-label": "step", oninput: () => seek(Number(slider.value))});
  const stepBox = el("input", {type: "number", min: span.lo, max: span.hi - 1, value: player.t, class: "step-box",
    onchange: () => seek(Number(stepBox.value))});
  const playButton = el("button", {class: "play", onclick: () => setPlaying(!player.playing)}, "▶ play");
  const frameError = el("div", {class: "frame-error"});
  const saliencyNote = el("span", {class: "small saliency-note"});
  const saliencyBox = el("input", {type: "checkbox", class: "saliency-toggle", onchange: () => {
    saliencyBox.blur();
    if (saliencyBox.checked && !player.saliencyScale) loadSaliencyScale();
    render();
  }});
  const controls = el("div", {class: "controls"},
    el("button", {onclick: () => seek(player.t - 1), title: "previous step (←)"}, "◀"), playButton,
    el("button", {onclick: () => seek(player.t + 1), title: "next step (→)"}, "▶"),
    el("label", {}, "step ", stepBox, SNAPSHOT ? ` (steps ${span.lo}..${span.hi - 1} of ${n})` : ` of ${n - 1}`),
    el("span", {class: "small"}, "← → step, shift ×10, space plays"));
  // full-resolution frames, when the episode stores them (the server's: a snapshot holds the agent's frames only)
  const fullSize = SNAPSHOT ? null : view.full_frame_size;
  const fullBox = el("input", {type: "checkbox", class: "full-toggle", checked: fullSize && query.get("full") === "1",
    onchange: () => { fullBox.blur(); sizeFrame(); updateUrl(); focus(); render(); }});
  const saliencyRow = el("div", {class: "controls"},
    fullSize ? el("label", {}, fullBox, ` full resolution (${fullSize[1]}×${fullSize[0]})`) : null,
    el("label", {}, saliencyBox, " saliency overlay"), saliencyNote);
  const frameWrap = el("div", {class: "frame-wrap"}, frame, frameError);
  const showFull = () => Boolean(fullSize) && fullBox.checked;
  function frameBox() {  // the frame's [width, height] in CSS pixels
    if (!showFull()) return [FRAME_PX, FRAME_PX];
    const scale = Math.min(FULL_BOX[0] / fullSize[1], FULL_BOX[1] / fullSize[0]);
    return [Math.round(fullSize[1] * scale), Math.round(fullSize[0] * scale)];
  }
  function sizeFrame() {
    const [w, h] = frameBox();
    sizeCanvas(frame, w, h);
    frameWrap.style.width = `${w}px`;
  }
  sizeFrame();

  async function loadSaliencyScale() {
    saliencyNote.textContent = "computing the episode's saliency scale…";
    try {
      const s = await api(`/api/episodes/${eid}/saliency_scale`);
      player.saliencyScale = s;
      saliencyNote.textContent = `|∂ log π(action taken) / ∂ pixel|, blue 0 to red ≥ ${fmt(s.scale)} (the ${s.percentile}th `
        + `percentile over ${s.samples} frames): one scale for the whole episode`;
      render();
    } catch (e) {
      saliencyBox.checked = false;
      saliencyNote.textContent = `saliency: ${e.message}`;
    }
  }

  // ---- timeline: events and key frames (the traces and events come in a second answer: the frame does not wait)
  const timeline = hiDpiCanvas(TRACE_W, 30, {class: "timeline", title: "click to jump"});
  const markers = {events: [], keyFrames: []};
  timeline.addEventListener("click", (ev) => seek(xStep(span, ev.offsetX)));
  const timelineLegend = el("div", {class: "legend"},
    el("span", {}, el("b", {style: `background:${KEY_FRAME_COLOUR}`}), "key frame (attention)"));

  // ---- traces
  const traceBox = el("div", {class: "traces-box"}, el("p", {class: "small"}, "loading the traces…"));
  let traces = null, traceBackground = null;

  async function loadTraces() {
    try {
      Object.assign(view, await api(`/api/episodes/${eid}/traces`));
    } catch (e) {
      traceBox.replaceChildren(errorBox(`traces: ${e.message}`));
      return;
    }
    header.querySelector(".summary-line").textContent = summaryLine(view);
    markers.events = view.events;
    timelineLegend.prepend(...[...new Set(view.events.map((e) => e.type))].map((type) =>
      el("span", {}, el("b", {style: `background:${EVENT_COLOURS[type] || "#555"}`}), type)));
    const rows = [["value", 44], ["entropy", 44], ...Object.keys(view.traces.keys).map((k) => [k, 9]), ["camera", 44]];
    const height = rows.reduce((a, [, h]) => a + h + 4, 0);
    traceBackground = drawTraceBackground(view, rows, height, span);
    traces = hiDpiCanvas(TRACE_W + 80, height, {class: "traces", title: "click to jump"});
    traces.addEventListener("click", (ev) => {
      if (ev.offsetX >= 80) seek(xStep(span, ev.offsetX - 80));
    });
    traceBox.replaceChildren(traces);
    loadKeyFrames();
    render();
  }

  // ---- the action at the current step
  const actionBox = el("div", {class: "actions-now"});

  const attention = new AttentionPanel(player, {
    layer: query.has("layer") ? Number(query.get("layer")) : view.layers[view.layers.length - 1],
    head: query.get("head") || "mean",
    onChange: () => { loadKeyFrames(); updateUrl(); render(); },
    seek: (t) => seek(t),
  });

  const steer = SNAPSHOT ? null : steeringPanel({eid, view, step: () => player.t, seek: (t) => seek(t)});

  root.append(el("div", {class: "player"},
    el("div", {class: "player-left"}, frameWrap, slider, controls, SNAPSHOT ? null : saliencyRow,
      el("h3", {}, "Timeline"), timeline, timelineLegend, el("h3", {}, "Traces"), traceBox),
    el("div", {class: "player-right"}, el("h3", {}, "Action at this step"), actionBox, attention.element)));
  if (steer) root.append(steer);

  let urlTimer = null;
  function updateUrl() {
    clearTimeout(urlTimer);
    const state = {t: player.t, layer: attention.layer, head: attention.head, ...(showFull() ? {full: 1} : {})};
    urlTimer = setTimeout(() => setHashQuery(state), 250);
  }

  // fetch what step player.t needs, and what is likely next
  const focus = () => cache.focus(player.t, {playing: player.playing, full: showFull()});

  function seek(t) {
    player.t = clamp(t);
    if (player.t === span.hi - 1 && player.playing) setPlaying(false);
    updateUrl();
    focus();
    draw();
  }

  function setPlaying(on) {
    player.playing = on && player.t < span.hi - 1;
    playButton.textContent = player.playing ? "❚❚ pause" : "▶ play";
    focus();
    if (player.playing) {
      const start = performance.now(), from = player.t;
      const tick = (now) => {
        if (!player.playing) return;
        const target = from + Math.floor(((now - start) / 1000) * FPS);
        if (target !== player.t) seek(target);
        if (player.playing) requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
    }
  }

  async function loadKeyFrames() {
    markers.keyFrames = [];
    const layer = attention.layer;
    try {
      const data = await api(`/api/episodes/${eid}/keyframes?layer=${layer}`);
      if (layer === attention.layer) { markers.keyFrames = data.key_frames; render(); }
    } catch (e) {
      timelineLegend.append(el("span", {class: "error-inline"}, `key frames: ${e.message}`));
    }
  }

  const stats = {drawn: 0, placeholders: 0, firstFrameAt: null};  // firstFrameAt: ms since the page's navigation
  window.__player = {stats, seek, setPlaying, get step() { return player.t; }, view, cache: () => cache.stats()};

  function draw() {
    const t = player.t;
    slider.value = t;
    if (document.activeElement !== stepBox) stepBox.value = t;
    const full = showFull();
    if (player.playing && view.layers.length) {
      const next = (Math.floor(t / view.attention_chunk) + 1) * view.attention_chunk;
      try { if (next < n) cache.row(next, attention.layer, attention.head); } catch { /* shown by the panel */ }
    }
    const ctx = frame.getContext("2d");
    const [w, h] = frameBox();
    const ok = cache.drawFrame(ctx, t, 0, 0, w, h, full);
    const instead = ok ? null : cache.drawNearest(ctx, t, 0, 0, w, h, full);  // while t's own sprite loads
    frameError.textContent = cache.frameError(t, full);
    frame.dataset.step = ok ? String(t) : "";
    frame.dataset.full = ok && full ? "1" : "";
    frame.dataset.saliency = "";
    if (ok && saliencyBox.checked && player.saliencyScale) {
      const shown = cache.drawSaliency(ctx, t, 0, 0, w, h);
      frame.dataset.saliency = shown ? String(t) : "";
      if (cache.saliencyError(t)) saliencyNote.textContent = cache.saliencyError(t);
      if (player.playing) cache.prefetchSaliency(t);
    }
    if (ok) stats.drawn += 1; else stats.placeholders += 1;
    if (ok && stats.firstFrameAt === null) stats.firstFrameAt = performance.now();
    const label = ok ? `step ${t}` : `step ${t}: loading${instead === null ? "" : `, showing step ${instead}`}`;
    ctx.font = "12px system-ui, sans-serif";
    ctx.fillStyle = "rgba(0,0,0,0.55)";
    ctx.fillRect(0, 0, ctx.measureText(label).width + 12, 20);
    ctx.fillStyle = "#fff";
    ctx.fillText(label, 6, 14);
    drawTimeline(timeline, markers, span, t);
    if (traces) drawTraces(traces, traceBackground, span, t);
    drawActionNow(actionBox, view, t);
    attention.render(t, ok || player.playing);
  }

  const onKey = (ev) => {
    const tag = document.activeElement && document.activeElement.tagName;
    if (["INPUT", "SELECT", "TEXTAREA"].includes(tag) && document.activeElement !== slider) return;
    const jump = ev.shiftKey ? 10 : 1;
    if (ev.key === "ArrowRight") seek(player.t + jump);
    else if (ev.key === "ArrowLeft") seek(player.t - jump);
    else if (ev.key === "Home") seek(span.lo);
    else if (ev.key === "End") seek(span.hi - 1);
    else if (ev.key === " ") setPlaying(!player.playing);
    else return;
    ev.preventDefault();
  };
  document.addEventListener("keydown", onKey);
  focus();
  draw();
  loadTraces();
  return () => {
    player.playing = false;
    cache.close();
    document.removeEventListener("keydown", onKey);
    delete window.__player;
  };
}


function summaryLine(view) {
  const s = view.summary;
  const scene = view.scene && view.scene.name ? view.scene.name : "no scene";
  const parts = [`${view.length} steps`, `scene ${scene}`, `seed ${view.seed}`, `${view.env}`];
  if (s && s.hits !== null) parts.push(`hits ${s.hits} (target ${s.target_hits})`, `kills ${s.kills}`, `logs ${s.logs}`);
  if (view.intervention) parts.push(`recorded with the edit ${view.intervention.kind}`);
  return parts.join(" · ");
}
