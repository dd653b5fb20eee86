// Shared helpers: the API client, DOM building, number formats, the colour scale, small canvas plots.

// What an offline snapshot's page holds (`vptlens serve --export`; set by snapshot.js): the episode, the steps
// exported, the attention heads embedded. null when the server serves the page.
export const SNAPSHOT = window.VPTLENS_SNAPSHOT || null;

class ApiError extends Error {
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

// GET or POST JSON; a 202 answer ({pending: job}) is returned as is, an error answer throws ApiError.
export async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify(body),
  };
  const response = await fetch(path, init);
  const text = await response.text();
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    throw new ApiError(`${response.status}: ${text.slice(0, 300)}`, response.status, null);
  }
  if (!response.ok) throw new ApiError(data.error || `HTTP ${response.status}`, response.status, data);
  return data;
}

export async function apiBinary(path) {
  const response = await fetch(path);
  if (!response.ok) {
    const text = await response.text();
    let message = text;
    try { message = JSON.parse(text).error; } catch { /* not JSON */ }
    throw new ApiError(message, response.status, null);
  }
  return response.arrayBuffer();
}

// Wait for a background job, calling onUpdate(job) at each poll; resolves with the finished job.
export async function waitJob(job, onUpdate, isCancelled = () => false) {
  while (job.status === "running") {
    onUpdate(job);
    await new Promise((resolve) => setTimeout(resolve, 500));
    if (isCancelled()) return job;
    job = await api(`/api/jobs/${job.id}`);
  }
  onUpdate(job);
  return job;
}

// GET that waits through 202 answers (background work), showing progress with onProgress(job).
export async function apiReady(path, onProgress, isCancelled = () => false) {
  for (;;) {
    const data = await api(path);
    if (!data.pending) return data;
    const job = await waitJob(data.pending, onProgress, isCancelled);
    if (job.status === "failed") throw new ApiError(job.error, 500, job);
    if (isCancelled()) return null;
  }
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function errorBox(message) {
  return el("div", {class: "error", role: "alert"}, String(message));
}

export function fmt(x, digits = 3) {
  if (x === null || x === undefined || (typeof x === "number" && Number.isNaN(x))) return "n/a";
  if (typeof x !== "number") return String(x);
  if (Number.isInteger(x)) return String(x);
  if (x !== 0 && (Math.abs(x) < 1e-3 || Math.abs(x) >= 1e5)) return x.toExponential(digits - 1);
  return Number(x.toPrecision(digits)).toString();
}

export function pct(x) {
  return x === null || x === undefined ? "n/a" : `${fmt(100 * x, 3)}%`;
}

export function hashQuery() {
  const hash = location.hash;
  const i = hash.indexOf("?");
  return new URLSearchParams(i < 0 ? "" : hash.slice(i + 1));
}

// Replace the hash's query without a history entry (the player keeps its step and view there).
export function setHashQuery(params) {
  const hash = location.hash;
  const i = hash.indexOf("?");
  const base = i < 0 ? hash : hash.slice(0, i);
  history.replaceState(null, "", `${base}?${new URLSearchParams(params)}`);
}

// Viridis, sampled at 9 points and interpolated: the colour scale of every attention and activation view.
const VIRIDIS = [
  [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
  [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
];

function viridisRGB(u) {
  const x = Math.min(1, Math.max(0, u)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  const a = VIRIDIS[i], b = VIRIDIS[i + 1];
  return a.map((v, j) => Math.round(v + f * (b[j] - v)));
}

function viridis(u) {
  return `rgb(${viridisRGB(u).join(",")})`;
}

// The attention colour scale: fixed, log10 from WEIGHT_MIN (and below) to 1.
export const WEIGHT_MIN = 1e-3;
const weightScale = (w) => (Math.log10(Math.max(w, WEIGHT_MIN)) - Math.log10(WEIGHT_MIN)) / -Math.log10(WEIGHT_MIN);
const WEIGHT_LUT = Array.from({length: 256}, (_, i) => viridisRGB(i / 255));
export function weightRGB(w) {
  return WEIGHT_LUT[Math.round(255 * weightScale(w))];
}
export function weightColour(w) {
  return viridis(weightScale(w));
}
// Masked cells: two greys alternating like a hatch (in pixel rasters) or a hatch pattern (in drawn cells).
export const MASKED_RGB = [[216, 216, 216], [168, 168, 168]];

// A hatch pattern for masked cells (keys the attention cannot see).
export function maskedPattern(ctx) {
  const tile = document.createElement("canvas");
  tile.width = tile.height = 6;
  const t = tile.getContext("2d");
  t.fillStyle = "#d8d8d8";
  t.fillRect(0, 0, 6, 6);
  t.strokeStyle = "#999";
  t.beginPath();
  t.moveTo(0, 6);
  t.lineTo(6, 0);
  t.stroke();
  return ctx.createPattern(tile, "repeat");
}

// A canvas sized for the screen's pixel ratio; drawing uses CSS pixels.
export function hiDpiCanvas(width, height, attrs = {}) {
  const canvas = el("canvas", attrs);
  sizeCanvas(canvas, width, height);
  return canvas;
}

// (Re)size a canvas for the screen's pixel ratio (its content is cleared).
export function sizeCanvas(canvas, width, height) {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  canvas.getContext("2d").setTransform(ratio, 0, 0, ratio, 0, 0);
}

// Lines over a shared x axis: series = [{values, colour, label, dash}], drawn into (x0, y0, w, h) of ctx.
export function drawLines(ctx, series, box, {yMin, yMax, xMin = 0, xMax} = {}) {
  const all = series.flatMap((s) => s.values.filter((v) => v !== null && Number.isFinite(v)));
  let lo = yMin ?? Math.min(...all), hi = yMax ?? Math.max(...all);
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) { lo = 0; hi = 1; }
  if (hi - lo < 1e-12) { hi = lo + 1; }
  const n = Math.max(...series.map((s) => s.values.length));
  const x1 = xMax ?? n - 1;
  const sx = (i) => box.x + ((i - xMin) / Math.max(1e-9, x1 - xMin)) * box.w;
  const sy = (v) => box.y + box.h - ((v - lo) / (hi - lo)) * box.h;
  for (const s of series) {
    ctx.strokeStyle = s.colour;
    ctx.lineWidth = s.width || 1.2;
    ctx.setLineDash(s.dash || []);
    ctx.beginPath();
    let pen = false;
    s.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) { pen = false; return; }
      const x = sx((s.x0 || 0) + i), y = sy(v);
      if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      pen = true;
    });
    ctx.stroke();
  }
  ctx.setLineDash([]);
  return {lo, hi, sx, sy};
}

export function legend(items) {
  return el("div", {class: "legend"}, items.map(([colour, label, dash]) =>
    el("span", {}, el("i", {style: `border-top: 2px ${dash ? "dashed" : "solid"} ${colour}`}), label)));
}
