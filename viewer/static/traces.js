// What the player draws beside the frame, over the steps it plays (span: {lo, hi}, hi excluded; the whole episode
// when served, the exported steps in a snapshot): the timeline with event and key-frame markers, the traces
// (value, entropy, keys, camera) and the action at the current step.

import {drawLines, el, fmt} from "./util.js";

export const TRACE_W = 620;
export const EVENT_COLOURS = {
  entity_attacked: "#d62728", entity_killed: "#111", block_broken: "#8c564b", player_hurt: "#ff7f0e",
  item_collected: "#2ca02c", block_placed: "#1f77b4", item_dropped: "#7f7f7f",
};
export const KEY_FRAME_COLOUR = "#9b30d9";
const ARROWS = {left: "←", right: "→", up: "↑", down: "↓"};

// Step -> x in 0..TRACE_W-1, and back (a click on the timeline or the traces).
export function stepX(span, s) {
  return ((s - span.lo) / Math.max(1, span.hi - 1 - span.lo)) * (TRACE_W - 1);
}
export function xStep(span, x) {
  return span.lo + Math.round((x / TRACE_W) * (span.hi - 1 - span.lo));
}

export function drawTimeline(canvas, markers, span, t) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, TRACE_W, 30);
  ctx.fillStyle = "#f1f1f1";
  ctx.fillRect(0, 0, TRACE_W, 30);
  const inside = (s) => s >= span.lo && s < span.hi;
  for (const e of markers.events) {
    if (!inside(e.step)) continue;
    ctx.fillStyle = EVENT_COLOURS[e.type] || "#555";
    ctx.fillRect(stepX(span, e.step) - 1, 2, 2, 12);
  }
  ctx.fillStyle = KEY_FRAME_COLOUR;
  for (const k of markers.keyFrames) if (inside(k.step)) ctx.fillRect(stepX(span, k.step) - 1, 16, 2, 12);
  ctx.fillStyle = "#000";
  ctx.fillRect(stepX(span, t) - 1, 0, 2, 30);
}

// The traces without the cursor, drawn once into an offscreen canvas (each step then costs one drawImage).
export function drawTraceBackground(view, rows, height, span) {
  const canvas = document.createElement("canvas");
  const ratio = window.devicePixelRatio || 1;
  canvas.width = (TRACE_W + 80) * ratio;
  canvas.height = height * ratio;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  const n = span.hi - span.lo;
  const part = (values) => values.slice(span.lo, span.hi);
  let y = 0;
  ctx.font = "11px system-ui, sans-serif";
  for (const [name, h] of rows) {
    ctx.fillStyle = "#f6f6f6";
    ctx.fillRect(80, y, TRACE_W, h);
    ctx.fillStyle = "#333";
    const box = {x: 80, y: y + 2, w: TRACE_W, h: h - 4};
    if (name === "value") {
      const r = drawLines(ctx, [{values: part(view.traces.value), colour: "#1f77b4"}], box);
      ctx.fillText(`value ${fmt(r.lo, 2)}..${fmt(r.hi, 2)}`, 2, y + 12);
    } else if (name === "entropy") {
      const r = drawLines(ctx, [{values: part(view.traces.entropy_buttons), colour: "#ff7f0e"},
        {values: part(view.traces.entropy_camera), colour: "#2ca02c"}], box);
      ctx.fillText("entropy (nats)", 2, y + 12);
      ctx.fillStyle = "#ff7f0e"; ctx.fillText("buttons", 2, y + 24);
      ctx.fillStyle = "#2ca02c"; ctx.fillText(`camera ≤${fmt(r.hi, 2)}`, 2, y + 36);
    } else if (name === "camera") {
      drawLines(ctx, [{values: part(view.traces.camera[1]), colour: "#d62728"},
        {values: part(view.traces.camera[0]), colour: "#9467bd"}], box, {yMin: -10, yMax: 10});
      ctx.fillText("camera (°)", 2, y + 12);
      ctx.fillStyle = "#d62728"; ctx.fillText("yaw → +", 2, y + 24);
      ctx.fillStyle = "#9467bd"; ctx.fillText("pitch ↓ +", 2, y + 36);
    } else {
      const bits = part(view.traces.keys[name]);
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

export function drawTraces(canvas, background, span, t) {
  const ctx = canvas.getContext("2d");
  ctx.save();
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(background, 0, 0);
  ctx.restore();
  ctx.fillStyle = "rgba(0,0,0,0.8)";
  ctx.fillRect(80 + stepX(span, t) - 0.5, 0, 1, canvas.height);
}

function cameraArrow(pitch, yaw) {
  const parts = [];
  if (yaw < -0.05) parts.push(`${ARROWS.left} ${fmt(-yaw, 2)}°`);
  if (yaw > 0.05) parts.push(`${ARROWS.right} ${fmt(yaw, 2)}°`);
  if (pitch < -0.05) parts.push(`${ARROWS.up} ${fmt(-pitch, 2)}°`);
  if (pitch > 0.05) parts.push(`${ARROWS.down} ${fmt(pitch, 2)}°`);
  return parts.length ? parts.join("  ") : "still";
}

export function drawActionNow(box, view, t) {
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
