// The player's frames and attention rows, fetched from the API and cached.
//
// Frames come in sprites of view.sprite_steps steps: the agent's frames and the full-resolution ones as JPEG, the
// saliency overlay as PNG. A jump to a random step of a long episode should not wait for the server, so the
// agent's frame sprites are also fetched in the background, nearest the current step first, one request at a time
// and never during a scrub; they are kept as the bytes the server sent (ENCODED_BYTES: 6000 steps of BlockWorld's
// 128 px frames are 26 MB) and decoded into ImageBitmaps when drawn, the decoded ones kept in an LRU
// (DECODED_BYTES: decoded, those 6000 steps would take 390 MB). A jump cancels the frame requests it made stale; a small move (a drag of
// the slider, playing) fetches the next sprites in its direction; and a step's attention rows are asked for once
// its frame is drawn, so that they do not delay it.

import {apiBinary} from "./util.js";

const ENCODED_BYTES = 64e6;
const DECODED_BYTES = 96e6;
const SCRUB_QUIET_MS = 250;  // the background waits this long after a jump: a scrub's own requests go first
const NEAR_BLOCKS = 4;  // a move of at most this many sprites is a drag or playback: fetch ahead in its direction

// One kind of sprite of an episode, by block: fetched once, kept encoded within a byte budget, decoded on demand.
class SpriteStore {
  constructor(cache, kind, {background = false, encoded = ENCODED_BYTES, decoded = DECODED_BYTES} = {}) {
    this.cache = cache;
    this.kind = kind;
    this.background = background;
    this.budget = {encoded, decoded};
    this.entries = new Map();  // block -> {blob, bitmap, error, abort, decoding, bytes}
    this.decodedOrder = new Map();  // blocks with a bitmap, least recently drawn first
    this.encodedBytes = 0;
    this.decodedBytes = 0;
    this.largest = 0;  // the largest sprite yet: the background stops while another would not fit the budget
  }

  get nBlocks() { return Math.ceil(this.cache.view.length / this.cache.view.sprite_steps); }

  pending() {
    let n = 0;
    for (const entry of this.entries.values()) if (!entry.blob && !entry.error) n += 1;
    return n;
  }

  // Block b's entry, its fetch started if it has none (null outside the episode, or once the player left).
  get(b, background = false) {
    if (b < 0 || b >= this.nBlocks || this.cache.closed) return null;
    let entry = this.entries.get(b);
    if (!entry) {
      entry = {blob: null, bitmap: null, error: null, abort: new AbortController(), decoding: false, bytes: 0,
        background};
      this.entries.set(b, entry);
      const {eid, view} = this.cache;
      fetch(`/api/episodes/${eid}/${this.kind}/${b}?n=${view.length}`, {signal: entry.abort.signal})
        .then(async (response) => {
          if (!response.ok) throw new Error((await response.json()).error);
          entry.blob = await response.blob();
          entry.bytes = entry.blob.size;
          this.encodedBytes += entry.bytes;
          this.largest = Math.max(this.largest, entry.bytes);
          this.trimEncoded();
          if (!entry.background) this.decode(b);
        })
        .catch((e) => {
          if (e.name === "AbortError") return;
          entry.error = `${this.kind} of steps ${b * view.sprite_steps}..: ${e.message}`;
        })
        .finally(() => this.cache.changed());
    }
    entry.background &&= background;  // asked for in the foreground now: decode it when it comes
    return entry;
  }

  decode(b) {
    const entry = this.entries.get(b);
    if (!entry || !entry.blob || entry.bitmap || entry.decoding) return;
    entry.decoding = true;
    createImageBitmap(entry.blob).then((bitmap) => {
      entry.decoding = false;
      if (this.entries.get(b) !== entry) { bitmap.close(); return; }  // dropped meanwhile
      entry.bitmap = bitmap;
      this.decodedBytes += 4 * bitmap.width * bitmap.height;
      this.decodedOrder.set(b, true);
      this.trimDecoded(b);
      this.cache.onLoad();
    }, (e) => {
      entry.decoding = false;
      entry.error = `${this.kind} of block ${b} could not be decoded: ${e.message}`;
      this.cache.onLoad();
    });
  }

  // Block b's bitmap, or null while it loads or decodes (asking for it starts both).
  bitmap(b) {
    const entry = this.get(b);
    if (!entry || !entry.bitmap) {
      if (entry) this.decode(b);
      return null;
    }
    this.decodedOrder.delete(b);  // most recently drawn last
    this.decodedOrder.set(b, true);
    return entry.bitmap;
  }

  dropBitmap(b) {
    const entry = this.entries.get(b);
    this.decodedOrder.delete(b);
    if (!entry || !entry.bitmap) return;
    this.decodedBytes -= 4 * entry.bitmap.width * entry.bitmap.height;
    entry.bitmap.close();
    entry.bitmap = null;
  }

  trimDecoded(keep) {
    for (const b of this.decodedOrder.keys()) {
      if (this.decodedBytes <= this.budget.decoded) break;
      if (b !== keep) this.dropBitmap(b);
    }
  }

  // Over budget: forget the sprites farthest from the step shown (they are fetched again if wanted).
  trimEncoded() {
    const focus = this.cache.focusBlock;
    const far = [...this.entries].filter(([, e]) => e.blob)
      .sort(([a], [b]) => Math.abs(b - focus) - Math.abs(a - focus));
    for (const [b, entry] of far) {
      if (this.encodedBytes <= this.budget.encoded || Math.abs(b - focus) <= NEAR_BLOCKS) break;
      this.dropBitmap(b);
      this.encodedBytes -= entry.bytes;
      this.entries.delete(b);
    }
  }

  // Cancel the requests still in flight for blocks not in `keep` (a jump made them stale); a background one goes
  // on (the server computes it anyway, and it fills the cache).
  cancel(keep) {
    for (const [b, entry] of this.entries) {
      if (!entry.blob && !entry.error && !entry.background && !keep.has(b)) {
        entry.abort.abort();
        this.entries.delete(b);
      }
    }
  }

  // Forget everything: abort what is in flight, free the bitmaps.
  close() {
    for (const [b, entry] of this.entries) {
      if (!entry.blob && !entry.error) entry.abort.abort();
      this.dropBitmap(b);
    }
    this.entries.clear();
    this.encodedBytes = 0;
  }

  // The block of first..last nearest b not fetched yet, within the budget (null when none is left to fetch).
  nextMissing(b, [first, last]) {
    if (this.encodedBytes + this.largest > this.budget.encoded) return null;
    for (let d = 0; d <= last - first; d++) {
      for (const c of d ? [b + d, b - d] : [b]) if (c >= first && c <= last && !this.entries.has(c)) return c;
    }
    return null;
  }

  // The loaded block nearest b and its step nearest t (what to show while t's own sprite loads), or null.
  nearest(b, t) {
    let best = null;
    for (const c of this.decodedOrder.keys()) if (best === null || Math.abs(c - b) < Math.abs(best - b)) best = c;
    if (best === null) return null;
    const steps = this.cache.view.sprite_steps;
    return Math.min(Math.max(t, best * steps), Math.min(this.cache.view.length, (best + 1) * steps) - 1);
  }
}

export class EpisodeCache {
  // `span`: the steps the player plays ({lo, hi}, hi excluded; a snapshot holds no others).
  constructor(eid, view, onLoad, span = {lo: 0, hi: view.length}) {
    this.eid = eid;
    this.view = view;
    this.onLoad = onLoad;
    // fetched in the background: the sprites of the steps played and of the memory before them (attention's frames)
    this.fillBlocks = [this.blockOf(Math.max(0, span.lo - view.memory)), this.blockOf(span.hi - 1)];
    this.frames = new SpriteStore(this, "sprite", {background: true});
    this.full = new SpriteStore(this, "frames_full");
    this.overlays = new SpriteStore(this, "saliency", {encoded: 16e6, decoded: 32e6});
    this.rows = new Map();
    this.focusBlock = 0;
    this.lastJump = -Infinity;
    this.quietTimer = null;
    this.closed = false;
  }

  // The player left the page: stop fetching, free the memory.
  close() {
    this.closed = true;
    clearTimeout(this.quietTimer);
    for (const store of [this.frames, this.full, this.overlays]) store.close();
  }

  blockOf(t) { return Math.floor(t / this.view.sprite_steps); }

  frameReady(t) { return Boolean(this.frames.get(this.blockOf(t))?.bitmap); }

  // How much of the episode's frames the page holds (for the benchmark).
  stats() {
    return {blocks: this.frames.nBlocks, fetched: [...this.frames.entries.values()].filter((e) => e.blob).length,
      encoded_bytes: this.frames.encodedBytes, decoded_bytes: this.frames.decodedBytes};
  }

  // What the player shows now (step t, playing or not, full-resolution or not): fetch it and what comes next,
  // cancel the frame requests that no longer matter, and hold the background back while a scrub goes on.
  focus(t, {playing, full}) {
    const b = this.blockOf(t);
    const move = b - this.focusBlock;
    this.focusBlock = b;
    const store = full ? this.full : this.frames;
    const dir = Math.sign(move);
    const ahead = playing ? [1, 2, 3] : dir && Math.abs(move) <= NEAR_BLOCKS ? [dir, 2 * dir] : [];
    const keep = new Set([b, ...ahead.map((d) => b + d)]);
    if (!playing) {
      this.frames.cancel(full ? new Set() : keep);
      this.full.cancel(full ? keep : new Set());
      this.lastJump = performance.now();
      clearTimeout(this.quietTimer);
      this.quietTimer = setTimeout(() => this.changed(), SCRUB_QUIET_MS);
    }
    for (const c of keep) {
      store.get(c);
      store.decode(c);  // fetched in the background before: decode it before it is drawn
    }
  }

  // A request finished: draw, and fetch the next sprite in the background when nothing else is waited for.
  changed() {
    if (this.closed) return;
    this.onLoad();
    if (performance.now() - this.lastJump < SCRUB_QUIET_MS || this.frames.pending() || this.full.pending()) return;
    const b = this.frames.nextMissing(this.focusBlock, this.fillBlocks);
    if (b !== null) this.frames.get(b, true);
  }

  // Draw step t's cell of a decoded sprite (frames of [h, w]) into (x, y, dw, dh) of ctx: frames scaled up keep
  // their pixels sharp.
  drawCell(ctx, bitmap, [h, w], t, x, y, dw, dh, smooth = dw < w) {
    const i = t - this.blockOf(t) * this.view.sprite_steps;
    const cols = this.view.sprite_columns;
    ctx.imageSmoothingEnabled = smooth;
    ctx.drawImage(bitmap, (i % cols) * w, Math.floor(i / cols) * h, w, h, x, y, dw, dh);
  }

  // Draw step t's frame into (x, y, w, h) of ctx (the full-resolution one with `full`); false, and grey, while its
  // sprite loads.
  drawFrame(ctx, t, x, y, w, h = w, full = false) {
    const bitmap = (full ? this.full : this.frames).bitmap(this.blockOf(t));
    if (!bitmap) {
      ctx.fillStyle = "#444";
      ctx.fillRect(x, y, w, h);
      return false;
    }
    this.drawCell(ctx, bitmap, full ? this.view.full_frame_size : this.view.frame_size, t, x, y, w, h);
    return true;
  }

  // While step t's sprite loads: draw the nearest step already decoded, dimmed; returns that step, or null.
  drawNearest(ctx, t, x, y, w, h, full) {
    const store = full ? this.full : this.frames;
    const s = store.nearest(this.blockOf(t), t);
    if (s === null) return null;
    const size = full ? this.view.full_frame_size : this.view.frame_size;
    this.drawCell(ctx, store.bitmap(this.blockOf(s)), size, s, x, y, w, h);
    ctx.fillStyle = "rgba(40,40,40,0.45)";
    ctx.fillRect(x, y, w, h);
    return s;
  }

  // The error of step t's sprite, if it failed.
  frameError(t, full) {
    const entry = (full ? this.full : this.frames).entries.get(this.blockOf(t));
    return entry && entry.error ? entry.error : "";
  }

  saliencyError(t) {
    const entry = this.overlays.entries.get(this.blockOf(t));
    return entry && entry.error ? entry.error : "";
  }

  prefetchSaliency(t) { this.overlays.get(this.blockOf(t) + 1); }

  // Draw step t's saliency over its frame, stretched to (w, h) over a full-resolution one (the agent's frame is
  // the full frame resized); false while it is computed.
  drawSaliency(ctx, t, x, y, w, h) {
    const bitmap = this.overlays.bitmap(this.blockOf(t));
    if (!bitmap) return false;
    this.drawCell(ctx, bitmap, this.view.frame_size, t, x, y, w, h, true);
    return true;
  }

  // Step t's attention over its memory (Float32Array of M+1, column M = now), or null while it loads; with
  // `fetch` false a row not loaded yet is not asked for.
  row(t, layer, head, fetch = true) {
    const c = Math.floor(t / this.view.attention_chunk);
    const key = `${layer}|${head}|${c}`;
    let entry = this.rows.get(key);
    if (!entry) {
      if (!fetch || this.closed) return null;
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
