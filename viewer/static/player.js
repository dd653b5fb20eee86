// The episode player: the frame, scrubbing (slider, keyboard), play/pause at 20 fps, the timeline with event and
// key-frame markers, traces (value, entropy, keys, camera), the action at the current step, the attention panel
// (attention.js) and steering (steer.js).

import {AttentionPanel} from "./attention.js";
import {steeringPanel} from "./steer.js";
import {api, apiBinary, drawLines, el, errorBox, fmt, hashQuery, hiDpiCanvas, setHashQuery} from "./util.js";

const FPS = 20;
const FRAME_PX = 384;
const TRACE_W = 620;
const EVENT_COLOURS = {
  entity_attacked: "#d62728", entity_killed: "#111", block_broken: "#8c564b", player_hurt: "#ff7f0e",
  item_collected: "#2ca02c", block_placed: "#1f77b4", item_dropped: "#7f7f7f",
};
const KEY_FRAME_COLOUR = "#9b30d9";
const ARROWS = {left: "←", right: "→", up: "↑", down: "↓"};

// Frames (JPEG sprites of view.sprite_steps steps) and attention rows (per store chunk, layer and head), each
// fetched once.
class EpisodeCache {
  constructor(eid, view, onLoad) {
    this.eid = eid;
    this.view = view;
    this.onLoad = onLoad;
    this.sprites = new Map();
    this.overlays = new Map();
    this.rows = new Map();
  }

  blockOf(t) { return Math.floor(t / this.view.sprite_steps); }

  sprite(b) { return this.load(this.sprites, b, "sprite"); }

  saliency(b) { return this.load(this.overlays, b, "saliency"); }

  // A sprite of block b (frames or saliency), fetched once: fetch, not an <img>, so the request leaves at once, can
  // be cancelled, and decodes off the main thread.
  load(map, b, kind) {
    if (b < 0 || b * this.view.sprite_steps >= this.view.length) return null;
    let entry = map.get(b);
    if (!entry) {
      entry = {img: null, ready: false, error: null, abort: new AbortController()};
      fetch(`/api/episodes/${this.eid}/${kind}/${b}?n=${this.view.length}`, {signal: entry.abort.signal})
        .then(async (response) => {
          if (!response.ok) throw new Error((await response.json()).error);
          entry.img = await createImageBitmap(await response.blob());
          entry.ready = true;
          this.onLoad();
        })
        .catch((e) => {
          if (e.name === "AbortError") return;
          entry.error = `${kind} of steps ${b * this.view.sprite_steps}..: ${e.message}`;
          this.onLoad();
        });
      map.set(b, entry);
    }
    return entry;
  }

  // Cancel the sprites still loading other than block `keep` (a jump elsewhere made them stale).
  dropPending(keep) {
    for (const [b, entry] of this.sprites) {
      if (b !== keep && !entry.ready && !entry.error) {
        entry.abort.abort();
        this.sprites.delete(b);
      }
    }
  }

  // Draw step t's frame into ctx at (x, y, size); false (and a grey square) while its sprite loads.
  drawFrame(ctx, t, x, y, size) {
    const entry = this.sprite(this.blockOf(t));
    if (!entry || !entry.ready) {
      ctx.fillStyle = "#444";
      ctx.fillRect(x, y, size, size);
      return false;
    }
    const [h, w] = this.view.frame_size;
    const i = t - this.blockOf(t) * this.view.sprite_steps;
    const cols = this.view.sprite_columns;
    ctx.imageSmoothingEnabled = size < w;
    ctx.drawImage(entry.img, (i % cols) * w, Math.floor(i / cols) * h, w, h, x, y, size, size);
    return true;
  }

  // Draw step t's saliency over its frame; false while it is computed.
  drawSaliency(ctx, t, x, y, size) {
    const entry = this.saliency(this.blockOf(t));
    if (!entry || !entry.ready) return false;
    const [h, w] = this.view.frame_size;
    const i = t - this.blockOf(t) * this.view.sprite_steps;
    const cols = this.view.sprite_columns;
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(entry.img, (i % cols) * w, Math.floor(i / cols) * h, w, h, x, y, size, size);
    return true;
  }

  // Step t's attention over its memory (Float32Array of M+1, column M = now), or null while it loads.
  row(t, layer, head) {
    const c = Math.floor(t / this.view.attention_chunk);
    const key = `${layer}|${head}|${c}`;
    let entry = this.rows.get(key);
    if (!entry) {
      entry = {data: null, error: null};
      this.rows.set(key, entry);
      apiBinary(`/api/episodes/${this.eid}/attention?layer=${layer}&head=${head}&chunk=${c}&n=${this.view.length}`)
        .then((buf) => { entry.data = new Float32Array(buf); this.onLoad(); },
          (e) => { entry.error = e.message; this.onLoad(); });
    }
    if (entry.error) throw new Error(entry.error);
    if (!entry.data) return null;
    const T = this.view.memory + 1;
    const i = t - c * this.view.attention_chunk;
    return entry.data.subarray(i * T, (i + 1) * T);
  }
}

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
  const player = {eid, view, t: Math.min(n - 1, Math.max(0, Number(query.get("t") || 0))), playing: false};
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
  const cache = new EpisodeCache(eid, view, render);
  player.cache = cache;

  // ---- frame and controls
  const frame = hiDpiCanvas(FRAME_PX, FRAME_PX, {class: "frame", "data-step": "", "aria-label": "frame"});
  const slider = el("input", {type: "range", min: 0, max: n - 1, value: player.t, class: "slider",
    "aria-label": "step", oninput: () => seek(Number(slider.value))});
  const stepBox = el("input", {type: "number", min: 0, max: n - 1, value: player.t, class: "step-box",
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
    el("label", {}, "step ", stepBox, ` of ${n - 1}`),
    el("span", {class: "small"}, "← → step, shift ×10, space plays"));
  const saliencyRow = el("div", {class: "controls"}, el("label", {}, saliencyBox, " saliency overlay"), saliencyNote);

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
  timeline.addEventListener("click", (ev) => seek(Math.round((ev.offsetX / TRACE_W) * (n - 1))));
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
    traceBackground = drawTraceBackground(view, rows, height);
    traces = hiDpiCanvas(TRACE_W + 80, height, {class: "traces", title: "click to jump"});
    traces.addEventListener("click", (ev) => {
      if (ev.offsetX >= 80) seek(Math.round(((ev.offsetX - 80) / TRACE_W) * (n - 1)));
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

  const steer = steeringPanel({eid, view, step: () => player.t, seek: (t) => seek(t)});

  root.append(el("div", {class: "player"},
    el("div", {class: "player-left"}, el("div", {class: "frame-wrap"}, frame, frameError), slider, controls, saliencyRow,
      el("h3", {}, "Timeline"), timeline, timelineLegend, el("h3", {}, "Traces"), traceBox),
    el("div", {class: "player-right"}, el("h3", {}, "Action at this step"), actionBox, attention.element)),
  steer);

  let urlTimer = null;
  function updateUrl() {
    clearTimeout(urlTimer);
    urlTimer = setTimeout(() => setHashQuery({t: player.t, layer: attention.layer, head: attention.head}), 250);
  }

  function seek(t) {
    player.t = Math.min(n - 1, Math.max(0, Math.round(t)));
    if (player.t === n - 1 && player.playing) setPlaying(false);
    updateUrl();
    draw();
  }

  function setPlaying(on) {
    player.playing = on && player.t < n - 1;
    playButton.textContent = player.playing ? "❚❚ pause" : "▶ play";
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
  window.__player = {stats, seek, setPlaying, get step() { return player.t; }, view};

  function draw() {
    const t = player.t;
    slider.value = t;
    if (document.activeElement !== stepBox) stepBox.value = t;
    const b = cache.blockOf(t);
    if (player.playing) for (let ahead = 1; ahead <= 3; ahead++) cache.sprite(b + ahead);  // prefetch
    else cache.dropPending(b);  // scrubbing: only the frame asked for now is worth waiting for
    if (player.playing && view.layers.length) {
      const next = (Math.floor(t / view.attention_chunk) + 1) * view.attention_chunk;
      try { if (next < n) cache.row(next, attention.layer, attention.head); } catch { /* shown by the panel */ }
    }
    const ctx = frame.getContext("2d");
    const ok = cache.drawFrame(ctx, t, 0, 0, FRAME_PX);
    const sprite = cache.sprite(b);
    frameError.textContent = sprite && sprite.error ? sprite.error : "";
    frame.dataset.step = ok ? String(t) : "";
    frame.dataset.saliency = "";
    if (ok && saliencyBox.checked && player.saliencyScale) {
      const shown = cache.drawSaliency(ctx, t, 0, 0, FRAME_PX);
      frame.dataset.saliency = shown ? String(t) : "";
      const overlay = cache.saliency(b);
      if (overlay && overlay.error) saliencyNote.textContent = overlay.error;
      if (player.playing) cache.saliency(b + 1);
    }
    if (ok) stats.drawn += 1; else stats.placeholders += 1;
    if (ok && stats.firstFrameAt === null) stats.firstFrameAt = performance.now();
    ctx.fillStyle = "rgba(0,0,0,0.55)";
    ctx.fillRect(0, 0, 92, 20);
    ctx.fillStyle = "#fff";
    ctx.font = "12px system-ui, sans-serif";
    ctx.fillText(`step ${t}`, 6, 14);
    drawTimeline(timeline, markers, n, t);
    if (traces) drawTraces(traces, traceBackground, n, t);
    drawActionNow(actionBox, view, t);
    attention.render(t);
  }

  const onKey = (ev) => {
    const tag = document.activeElement && document.activeElement.tagName;
    if (["INPUT", "SELECT", "TEXTAREA"].includes(tag) && document.activeElement !== slider) return;
    const jump = ev.shiftKey ? 10 : 1;
    if (ev.key === "ArrowRight") seek(player.t + jump);
    else if (ev.key === "ArrowLeft") seek(player.t - jump);
    else if (ev.key === "Home") seek(0);
    else if (ev.key === "End") seek(n - 1);
    else if (ev.key === " ") setPlaying(!player.playing);
    else return;
    ev.preventDefault();
  };
  document.addEventListener("keydown", onKey);
  draw();
  loadTraces();
  return () => {
    player.playing = false;
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

function drawTimeline(canvas, markers, n, t) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, TRACE_W, 30);
  ctx.fillStyle = "#f1f1f1";
  ctx.fillRect(0, 0, TRACE_W, 30);
  const x = (s) => (s / Math.max(1, n - 1)) * (TRACE_W - 1);
  for (const e of markers.events) {
    ctx.fillStyle = EVENT_COLOURS[e.type] || "#555";
    ctx.fillRect(x(e.step) - 1, 2, 2, 12);
  }
  ctx.fillStyle = KEY_FRAME_COLOUR;
  for (const k of markers.keyFrames) ctx.fillRect(x(k.step) - 1, 16, 2, 12);
  ctx.fillStyle = "#000";
  ctx.fillRect(x(t) - 1, 0, 2, 30);
}

function drawTraceBackground(view, rows, height) {
  const canvas = document.createElement("canvas");
  const ratio = window.devicePixelRatio || 1;
  canvas.width = (TRACE_W + 80) * ratio;
  canvas.height = height * ratio;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  const n = view.length;
  let y = 0;
  ctx.font = "11px system-ui, sans-serif";
  for (const [name, h] of rows) {
    ctx.fillStyle = "#f6f6f6";
    ctx.fillRect(80, y, TRACE_W, h);
    ctx.fillStyle = "#333";
    const box = {x: 80, y: y + 2, w: TRACE_W, h: h - 4};
    if (name === "value") {
      const r = drawLines(ctx, [{values: view.traces.value, colour: "#1f77b4"}], box);
      ctx.fillText(`value ${fmt(r.lo, 2)}..${fmt(r.hi, 2)}`, 2, y + 12);
    } else if (name === "entropy") {
      const r = drawLines(ctx, [{values: view.traces.entropy_buttons, colour: "#ff7f0e"},
        {values: view.traces.entropy_camera, colour: "#2ca02c"}], box);
      ctx.fillText("entropy (nats)", 2, y + 12);
      ctx.fillStyle = "#ff7f0e"; ctx.fillText("buttons", 2, y + 24);
      ctx.fillStyle = "#2ca02c"; ctx.fillText(`camera ≤${fmt(r.hi, 2)}`, 2, y + 36);
    } else if (name === "camera") {
      drawLines(ctx, [{values: view.traces.camera[1], colour: "#d62728"}, {values: view.traces.camera[0], colour: "#9467bd"}],
        box, {yMin: -10, yMax: 10});
      ctx.fillText("camera (°)", 2, y + 12);
      ctx.fillStyle = "#d62728"; ctx.fillText("yaw → +", 2, y + 24);
      ctx.fillStyle = "#9467bd"; ctx.fillText("pitch ↓ +", 2, y + 36);
    } else {
      const bits = view.traces.keys[name];
      ctx.fillText(name, 2, y + h - 1);
      ctx.fillStyle = "#222";
      const perPixel = n / TRACE_W;  // one rectangle per pixel column that holds a press, not one per step
      for (let x = 0; x < TRACE_W; x++) {
        const lo = Math.floor(x * perPixel), hi = Math.max(lo + 1, Math.floor((x + 1) * perPixel));
        const at = bits.indexOf("1", lo);
        if (at >= 0 && at < hi) ctx.fillRect(80 + x, y + 1, Math.max(1, 1 / perPixel), h - 2);
      }
    }
    y += h + 4;
  }
  return canvas;
}

function drawTraces(canvas, background, n, t) {
  const ctx = canvas.getContext("2d");
  ctx.save();
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(background, 0, 0);
  ctx.restore();
  ctx.fillStyle = "rgba(0,0,0,0.8)";
  ctx.fillRect(80 + (t / Math.max(1, n - 1)) * (TRACE_W - 1) - 0.5, 0, 1, canvas.height);
}

function cameraArrow(pitch, yaw) {
  const parts = [];
  if (yaw < -0.05) parts.push(`${ARROWS.left} ${fmt(-yaw, 2)}°`);
  if (yaw > 0.05) parts.push(`${ARROWS.right} ${fmt(yaw, 2)}°`);
  if (pitch < -0.05) parts.push(`${ARROWS.up} ${fmt(-pitch, 2)}°`);
  if (pitch > 0.05) parts.push(`${ARROWS.down} ${fmt(pitch, 2)}°`);
  return parts.length ? parts.join("  ") : "still";
}

function drawActionNow(box, view, t) {
  if (!view.traces) {
    box.replaceChildren(el("span", {class: "small"}, "loading…"));
    return;
  }
  const keys = Object.entries(view.traces.keys);
  const pitch = view.traces.camera[0][t], yaw = view.traces.camera[1][t];
  const events = view.events.filter((e) => e.step === t);
  box.replaceChildren(
    el("div", {class: "chips"}, keys.length ? keys.map(([k, bits]) =>
      el("span", {class: bits[t] === "1" ? "chip on" : "chip"}, k)) : el("span", {class: "small"}, "no key pressed in this episode")),
    el("div", {class: "camera-now"}, "camera ", el("b", {}, cameraArrow(pitch, yaw))),
    el("div", {class: "small"}, `value ${fmt(view.traces.value[t])} · entropy buttons ${fmt(view.traces.entropy_buttons[t])}, `
      + `camera ${fmt(view.traces.entropy_camera[t])} nats · reward ${fmt(view.traces.reward[t])}`),
    el("div", {class: "events-now"}, events.map((e) => el("span", {class: "event", style: `border-color:${EVENT_COLOURS[e.type] || "#555"}`}, e.label))),
  );
}
