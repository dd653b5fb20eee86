// The attention panel: the current step's attention over its memory (one layer, one head or the mean), a raster
// of the last RASTER_ROWS steps on the same lag axis, a fixed log colour scale with its legend, masked lags
// hatched, hover on any cell showing the frame it points at with its weight, and the most attended past frames.

import {MASKED_RGB, SNAPSHOT, WEIGHT_MIN, el, fmt, hiDpiCanvas, maskedPattern, weightColour, weightRGB} from "./util.js";

const WIDTH = 520;
const STRIP_H = 34;
const RASTER_ROWS = 48;
const ROW_H = 3;
const AXIS_H = 30;

export class AttentionPanel {
  constructor(player, {layer, head, onChange, seek}) {
    this.player = player;
    this.view = player.view;
    this.layer = this.view.layers.includes(layer) ? layer : this.view.layers[this.view.layers.length - 1];
    // a snapshot holds the heads it was exported with
    const heads = SNAPSHOT ? SNAPSHOT.heads : ["mean", ...Array.from({length: this.view.heads}, (_, i) => String(i))];
    this.head = heads.includes(String(head)) ? String(head) : heads[0];
    this.onChange = onChange;
    this.seek = seek;
    this.T = this.view.memory + 1;
    this.cell = WIDTH / this.T;
    if (!this.view.layers.length) {
      this.element = el("div", {class: "attention"}, el("h3", {}, "Attention"),
        el("p", {class: "small"}, "This episode stores no attention."));
      this.render = () => {};
      return;
    }
    const layerSelect = el("select", {"aria-label": "layer", class: "layer-select", onchange: () => {
      this.layer = Number(layerSelect.value); layerSelect.blur(); this.onChange();  // keys go back to the player
    }}, this.view.layers.map((l) => el("option", {value: l, selected: l === this.layer}, `layer ${l}`)));
    const headSelect = el("select", {"aria-label": "head", class: "head-select", onchange: () => {
      this.head = headSelect.value; headSelect.blur(); this.onChange();
    }}, heads.map((h) => el("option", {value: h, selected: h === String(this.head)}, h === "mean" ? "mean of heads" : `head ${h}`)));
    this.strip = hiDpiCanvas(WIDTH, STRIP_H, {class: "att-strip", "aria-label": "attention of this step"});
    // one pixel per (step, lag), scaled up by CSS: drawing it costs one putImageData per frame
    this.raster = el("canvas", {class: "att-raster", width: this.T, height: RASTER_ROWS,
      style: `width:${WIDTH}px;height:${RASTER_ROWS * ROW_H}px`, "aria-label": "attention of the last steps"});
    this.rasterImage = this.raster.getContext("2d").createImageData(this.T, RASTER_ROWS);
    this.axis = hiDpiCanvas(WIDTH, AXIS_H);
    this.tooltip = el("div", {class: "att-tooltip", hidden: true});
    this.tipCanvas = hiDpiCanvas(128, 128);
    this.tipText = el("div", {class: "small"});
    this.tooltip.append(this.tipCanvas, this.tipText);
    this.top = el("div", {class: "att-top"});
    this.status = el("div", {class: "small"});
    this.hover = null;
    for (const [canvas, kind] of [[this.strip, "strip"], [this.raster, "raster"]]) {
      canvas.addEventListener("mousemove", (ev) => this.onHover(ev, kind));
      canvas.addEventListener("mouseleave", () => { this.hover = null; this.tooltip.hidden = true; });
      canvas.addEventListener("click", () => { if (this.hover && this.hover.valid) this.seek(this.hover.frame); });
    }
    this.element = el("div", {class: "attention"},
      el("h3", {}, "Attention over the memory"),
      el("div", {class: "att-controls"}, layerSelect, headSelect),
      el("div", {class: "att-plot"}, el("div", {class: "small"}, "this step"), this.strip,
        el("div", {class: "small"}, `the last ${RASTER_ROWS} steps (this step at the bottom)`), this.raster, this.axis,
        this.tooltip),
      this.colourLegend(), this.status,
      el("div", {class: "small"}, "most attended past frames (click to jump)"), this.top);
    this.drawAxis();
  }

  // Lag k of column j (stored layout: column M is now); masked when before the episode's start or k = M.
  lagOf(j) { return this.T - 1 - j; }
  masked(step, k) { return k > step || k === this.T - 1; }

  rowAt(step, fetch = true) {
    if (step < 0) return null;
    return this.player.cache.row(step, this.layer, this.head, fetch);
  }

  drawRow(ctx, step, row, y, h) {
    const pattern = ctx.maskedPattern || (ctx.maskedPattern = maskedPattern(ctx));
    for (let j = 0; j < this.T; j++) {
      const k = this.lagOf(j);
      ctx.fillStyle = this.masked(step, k) ? pattern : row ? weightColour(row[j]) : "#444";
      ctx.fillRect(j * this.cell, y, Math.ceil(this.cell), h);
    }
  }

  // Draw step t; with `fetch` false (its frame is not drawn yet) rows not loaded are not asked for: the frame first.
  render(t, fetch = true) {
    let row;
    try {
      row = this.rowAt(t, fetch);
      this.status.textContent = row ? "" : "loading attention…";
    } catch (e) {
      this.status.textContent = `attention could not be read: ${e.message}`;
      return;
    }
    const sctx = this.strip.getContext("2d");
    this.drawRow(sctx, t, row, 0, STRIP_H);
    const pixels = this.rasterImage.data;
    for (let r = 0; r < RASTER_ROWS; r++) {
      const step = t - (RASTER_ROWS - 1) + r;
      let data = null;
      if (step >= 0 && row) {  // earlier chunks only once this step's has come: a jump shows this step first
        try { data = this.rowAt(step); } catch { data = null; }
      }
      for (let j = 0; j < this.T; j++) {
        const k = this.lagOf(j);
        const rgb = step < 0 ? [255, 255, 255] : this.masked(step, k) ? MASKED_RGB[(r + j) % 2]
          : data ? weightRGB(data[j]) : [68, 68, 68];
        const o = 4 * (r * this.T + j);
        pixels[o] = rgb[0]; pixels[o + 1] = rgb[1]; pixels[o + 2] = rgb[2]; pixels[o + 3] = 255;
      }
    }
    this.raster.getContext("2d").putImageData(this.rasterImage, 0, 0);
    if (this.hover) this.showTooltip();
    this.drawTop(t, row);
  }

  drawTop(t, row) {
    if (!row || !this.player.cache.frameReady(t)) { this.top.replaceChildren(); return; }  // this step's frame first
    const past = [];
    for (let j = 0; j < this.T; j++) {
      const k = this.lagOf(j);
      if (k >= 1 && !this.masked(t, k)) past.push([row[j], k]);
    }
    past.sort((a, b) => b[0] - a[0]);
    this.top.replaceChildren(...past.slice(0, 3).map(([w, k]) => {
      const canvas = hiDpiCanvas(88, 88, {class: "thumb"});
      this.player.cache.drawFrame(canvas.getContext("2d"), t - k, 0, 0, 88);
      return el("button", {class: "top-frame", onclick: () => this.seek(t - k)}, canvas,
        el("div", {class: "small"}, `${k} back (step ${t - k})`), el("div", {class: "small"}, `weight ${fmt(w)}`));
    }));
  }

  onHover(ev, kind) {
    const j = Math.min(this.T - 1, Math.max(0, Math.floor(ev.offsetX / this.cell)));
    const t = this.player.t;
    const step = kind === "strip" ? t : t - (RASTER_ROWS - 1) + Math.floor(ev.offsetY / ROW_H);
    const k = this.lagOf(j);
    this.hover = {step, k, j, x: ev.offsetX, y: ev.target === this.strip ? 0 : STRIP_H + 16 + ev.offsetY,
      frame: step - k, valid: step >= 0 && !this.masked(step, k)};
    this.showTooltip();
  }

  showTooltip() {
    const h = this.hover;
    const ctx = this.tipCanvas.getContext("2d");
    let text;
    if (h.step < 0) {
      this.tooltip.hidden = true;
      return;
    }
    if (!h.valid) {
      ctx.fillStyle = "#ddd";
      ctx.fillRect(0, 0, 128, 128);
      text = h.k === this.T - 1
        ? `lag ${h.k}: masked (the memory's oldest slot is never attended)`
        : `lag ${h.k}: masked (before the episode's first frame)`;
    } else {
      let row = null;
      try { row = this.rowAt(h.step); } catch { row = null; }
      this.player.cache.drawFrame(ctx, h.frame, 0, 0, 128);
      const w = row ? row[h.j] : null;
      text = `step ${h.step} attends to step ${h.frame} (${h.k} back${h.k === 0 ? ": itself" : ""}): weight ${w === null ? "…" : fmt(w)}`;
    }
    this.tipText.textContent = text;
    this.tooltip.dataset.frame = h.valid ? String(h.frame) : "";
    this.tooltip.hidden = false;
    this.tooltip.style.left = `${Math.min(WIDTH - 150, Math.max(0, h.x - 70))}px`;
    this.tooltip.style.top = `${h.y + 40}px`;
  }

  drawAxis() {
    const ctx = this.axis.getContext("2d");
    ctx.fillStyle = "#333";
    ctx.font = "11px system-ui, sans-serif";
    ctx.textAlign = "center";
    const step = this.T > 64 ? 16 : this.T > 16 ? 8 : 2;
    for (let k = 0; k < this.T; k += step) {
      const x = (this.T - 1 - k + 0.5) * this.cell;
      ctx.fillRect(x, 0, 1, 4);
      ctx.fillText(k === 0 ? "0 (now)" : String(k), Math.min(WIDTH - 20, Math.max(12, x)), 15);
    }
    ctx.fillText("← older          frames back (lag)          now →", WIDTH / 2, 28);
  }

  colourLegend() {
    const bar = hiDpiCanvas(220, 12);
    const ctx = bar.getContext("2d");
    for (let x = 0; x < 220; x++) {
      ctx.fillStyle = weightColour(10 ** (Math.log10(WEIGHT_MIN) * (1 - x / 219)));
      ctx.fillRect(x, 0, 1, 12);
    }
    const swatch = hiDpiCanvas(18, 12);
    const sctx = swatch.getContext("2d");
    sctx.fillStyle = maskedPattern(sctx);
    sctx.fillRect(0, 0, 18, 12);
    const ticks = [];
    for (let e = Math.log10(WEIGHT_MIN); e <= 0; e++) ticks.push(10 ** e);
    return el("div", {class: "colour-legend"},
      el("span", {class: "small"}, "weight (log scale, fixed)"),
      el("div", {class: "bar"}, bar, el("div", {class: "ticks"}, ticks.map((w) => el("span", {}, w === WEIGHT_MIN ? `≤${fmt(w)}` : fmt(w))))),
      el("span", {class: "masked-key"}, swatch, " masked"));
  }
}
