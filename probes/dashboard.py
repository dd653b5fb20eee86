"""`vptlens sae dashboard`: static HTML pages, one per SAE latent, of what fires it and what it does.

Everything comes from streaming over the run's episodes (one block of `block_steps` steps of
`activations/<hook>` in memory at a time, encoded `batch_size` rows at a time):

1. First pass, every latent: firing count (a latent fires when its activation is > 0), a
   histogram of its nonzero activations over fixed log-spaced bins (`HIST_EDGES`: 10 per
   decade from 1e-4 to 1e4, plus an underflow and an overflow bin), the running top-k
   activating steps (each batch's top-k merged into the running top-k: the same set as a
   top-k over the whole run), and co-occurrence counts with the binary MineRL action keys
   (`action/minerl/<key>`) and the env's event types (`gt/events`).
2. Second pass, the latents shown: quantile-interval samples. The interval edges are the
   quantiles (q / n_quantile_bins) of the latent's nonzero activations, read from the pass-1
   histogram (interpolated within a bin, log-linearly): exact to within a histogram bin, and
   reported with each interval's exact count. Within an interval the samples are a uniform
   random subset (each firing step gets a seeded uniform key; the smallest keys are kept).
3. Direct effect on the action heads, per latent: at each of its top-activating steps t, the
   change in the policy's log-probabilities at step t when the latent's decoder contribution
   z_s(x_t) * W_dec[s] is subtracted from the live activation x_t at that step only (the
   memory of earlier steps untouched, the activation recomputed by the policy, not read from
   the float16 store). The episode is replayed up to each such step (sequence mode; steps for
   STEVE-1 with guidance, where both streams are edited, each by its own z), and there one
   batched step from copies of the state runs row j with latent j's contribution removed,
   against a clean step of the same batch shape (rows of one batch do not round alike, so row
   j's clean reference is row j of an unedited call: an edit of exactly zero then changes
   nothing, exactly). Reported: the mean over the top examples of the change of each button
   class's and camera class's log-probability, and the mean KL(clean || edited) of each head.

Lift of an action key for a latent: P(key | latent fires) / P(key), the probabilities being
fractions of steps of the run. Events: the number of events of each type at steps where the
latent fires against the number at all steps, as rates per step and their ratio (lift).
"""

import datetime as dt
import html
import json
import logging
import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import torch
import tyro
from jaxtyping import Float, Int, UInt8
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor
from tqdm import tqdm

import vptlens
from vptlens.agents.actions import (
    INVENTORY_CLASS,
    MINERL_BUTTONS,
    N_CAMERA_BINS,
    VPT_BUTTONS,
    class_to_buttons,
    dequantize_camera,
)
from vptlens.agents.policy import PolicyState, VPTPolicy
from vptlens.probes.runs import episode_goal, load_run_policy
from vptlens.probes.sae import SAE
from vptlens.probes.splice import kl_divergence
from vptlens.recordings.store import Episode, git_commit, open_episodes

logger = logging.getLogger(__name__)

HIST_EDGES = np.logspace(-4, 4, 81).astype(np.float32)
"""Inner edges of the activation histogram: bin 0 is (0, 1e-4), bin i is [edge[i-1], edge[i]), the last >= 1e4."""
N_HIST_BINS = len(HIST_EDGES) + 1


@dataclass(frozen=True)
class DashboardConfig:
    """Feature dashboards of an SAE's latents on a recorded run: static HTML, PNG images and dashboard.json."""

    sae: tyro.conf.Positional[Annotated[Path, tyro.conf.arg(metavar="SAE_DIR")]]
    """SAE directory written by `vptlens sae train` (cfg.json + sae_weights.safetensors)."""
    run: tyro.conf.Positional[Annotated[Path, tyro.conf.arg(metavar="RUN")]]
    """Recorded run directory (its complete episodes) holding `activations/<the SAE's hook>`, or one episode."""
    out: Path = Path("dashboard")
    """Output directory: index.html, latent_<id>.html, img/*.png, dashboard.json (created)."""
    n_latents: int = 32
    """Latents shown when `latents` is empty: the most frequently firing ones among those that fire at all."""
    latents: tuple[int, ...] = ()
    """Explicit latent ids to show (overrides `n_latents`); a latent that never fires gets a page saying so."""
    n_top: int = 16
    """Top-activating examples kept and shown per latent."""
    n_quantile_bins: int = 4
    """Activation-quantile intervals per latent (quantiles of its nonzero activations) ..."""
    n_per_quantile: int = 8
    """... and uniformly sampled examples shown from each."""
    thumb_size: int = 128
    """Side in pixels of the frame thumbnails in the grids (the stored frames are 128x128)."""
    grid_columns: int = 8
    """Thumbnails per row of an example grid."""
    batch_size: int = 512
    """Activation rows encoded by the SAE at a time (memory: batch_size x d_sae floats); also the most rows of one
    batched direct-effect step."""
    block_steps: int = 4096
    """Steps read from the store at a time."""
    direct_effect: bool = True
    """Compute the direct effect of each shown latent on the action heads (replays the episodes of its examples)."""
    n_effect_examples: int = 16
    """Top examples per latent used for the direct effect (at most n_top)."""
    n_effect_classes: int = 8
    """Button and camera classes listed per direction (most increased, most decreased) in the direct-effect table."""
    model: Path | None = None
    """Policy .model file for the direct effect (default: the one the run's provenance names; sha256 checked)."""
    weights: Path | None = None
    """Policy .weights file for the direct effect (default: the one the run's provenance names; sha256 checked)."""
    replay_tolerance: float = 1e-3
    """Largest |recorded - replayed| log-probability (nats) of a recorded action accepted while replaying."""
    seed: int = 0
    """Seed of the quantile-interval sampling."""
    device: str = "cpu"
    """Torch device for the SAE and the policy (e.g. cuda)."""

    def __post_init__(self):
        for name in ("n_top", "n_quantile_bins", "thumb_size", "grid_columns", "batch_size", "block_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("n_latents", "n_per_quantile", "n_effect_examples", "n_effect_classes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if any(i < 0 for i in self.latents):
            raise ValueError(f"latent ids must be >= 0, got {self.latents}")


# ---------------------------------------------------------------------------------------------- streaming stats


def hist_bins(values: Float[Tensor, " n"]) -> Int[Tensor, " n"]:
    """Histogram bin of each positive activation (see `HIST_EDGES`); same as np.searchsorted(HIST_EDGES, v, 'right')."""
    return torch.bucketize(values, torch.as_tensor(HIST_EDGES, device=values.device), right=True)


def merge_topk(
    values: Float[Tensor, "k s"],
    index: Int[Tensor, "k s"],
    new_values: Float[Tensor, "b s"],
    new_index: Int[Tensor, " b"],
    k: int,
    largest: bool = True,
) -> tuple[Float[Tensor, "k2 s"], Int[Tensor, "k2 s"]]:
    """Per column, the k largest (or smallest) of the running values and new ones, sorted, with their indices.

    `new_index[i]` is the index of new row i (the same for every column).
    """
    n_old = values.shape[0]
    all_values = torch.cat([values, new_values])
    top = torch.topk(all_values, min(k, all_values.shape[0]), dim=0, largest=largest, sorted=True)
    from_new = top.indices >= n_old
    picked_new = new_index[(top.indices - n_old).clamp(min=0)]
    if n_old == 0:
        return top.values, picked_new
    return top.values, torch.where(from_new, picked_new, index.gather(0, top.indices.clamp(max=n_old - 1)))


class LatentStats:
    """Pass-1 accumulator for every latent: counts, histograms, top-k, action and event co-occurrence."""

    def __init__(self, d_sae: int, n_top: int, action_keys: list[str], device: torch.device):
        self.d_sae, self.n_top, self.action_keys, self.device = d_sae, n_top, list(action_keys), device
        self.n_steps = 0
        self.fire_count = torch.zeros(d_sae, dtype=torch.int64, device=device)
        self.act_sum = torch.zeros(d_sae, dtype=torch.float64, device=device)
        self.max_act = torch.zeros(d_sae, dtype=torch.float32, device=device)
        self.hist = torch.zeros(d_sae * N_HIST_BINS, dtype=torch.int64, device=device)
        self.top_values = torch.full((0, d_sae), -math.inf, device=device)
        self.top_index = torch.zeros((0, d_sae), dtype=torch.int64, device=device)  # global step index
        self.key_fire = torch.zeros((d_sae, len(action_keys)), dtype=torch.float64, device=device)
        self.key_total = torch.zeros(len(action_keys), dtype=torch.float64)
        self.event_types: list[str] = []
        self.event_fire = torch.zeros((d_sae, 0), dtype=torch.float64, device=device)
        self.event_total = torch.zeros(0, dtype=torch.float64)

    def update(
        self,
        z_bs: Float[Tensor, "b s"],
        index_b: Int[Tensor, " b"],
        keys_bk: Float[Tensor, "b k"],
        events: list[list[str]],
    ) -> None:
        """Add a batch: latent activations, each row's global step index, action keys (0/1), event types per row."""
        # sparse updates over the firing entries (an SAE's codes are sparse); only the top-k merge is dense
        rows, cols = (z_bs > 0).nonzero(as_tuple=True)
        vals = z_bs[rows, cols]
        self.n_steps += z_bs.shape[0]
        self.fire_count += torch.bincount(cols, minlength=self.d_sae)
        self.act_sum.index_add_(0, cols, vals.double())
        self.max_act.scatter_reduce_(0, cols, vals, reduce="amax")
        self.hist.scatter_add_(0, cols * N_HIST_BINS + hist_bins(vals), torch.ones_like(cols))
        self.top_values, self.top_index = merge_topk(self.top_values, self.top_index, z_bs, index_b, self.n_top)
        self.key_fire.index_add_(0, cols, keys_bk[rows].double())
        self.key_total += keys_bk.double().sum(0).cpu()
        for types in events:
            for t in types:
                if t not in self.event_types:
                    self.event_types.append(t)
        if self.event_types:
            counts = torch.zeros((len(events), len(self.event_types)), dtype=torch.float64, device=self.device)
            for row, types in enumerate(events):
                for t in types:
                    counts[row, self.event_types.index(t)] += 1
            grow = len(self.event_types) - self.event_fire.shape[1]
            if grow:
                self.event_fire = torch.cat([self.event_fire, self.event_fire.new_zeros((self.d_sae, grow))], 1)
                self.event_total = torch.cat([self.event_total, self.event_total.new_zeros(grow)])
            self.event_fire.index_add_(0, cols, counts[rows])
            self.event_total += counts.sum(0).cpu()

    def histogram(self) -> np.ndarray:
        return self.hist.view(self.d_sae, N_HIST_BINS).cpu().numpy()


def lift(n_both: np.ndarray, n_fire: np.ndarray, n_key: np.ndarray, n_steps: int) -> np.ndarray:
    """P(key | fires) / P(key) = (n_both / n_fire) / (n_key / n_steps); NaN where n_fire or n_key is 0."""
    n_both, n_fire, n_key = (np.asarray(a, np.float64) for a in (n_both, n_fire, n_key))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (n_both / n_fire) / (n_key / n_steps)
    return np.where((n_fire > 0) & (n_key > 0), out, np.nan)


def quantile_edges(hist: np.ndarray, max_act: float, n_bins: int) -> np.ndarray:
    """Edges e_0 = 0 < ... <= e_n = max of the intervals (e_q, e_q+1] holding equal shares of the nonzero activations.

    Read from the fixed log-spaced histogram `hist` (N_HIST_BINS counts): the empirical CDF is
    interpolated within the bin holding each quantile, log-linearly (linearly in the underflow and
    overflow bins, which run from 0 and to `max_act`).
    """
    total = hist.sum()
    edges = np.zeros(n_bins + 1)
    edges[-1] = max_act
    if total == 0:
        return edges
    lo = np.concatenate([[0.0], HIST_EDGES.astype(np.float64)])
    hi = np.concatenate([HIST_EDGES.astype(np.float64), [max(max_act, float(HIST_EDGES[-1]))]])
    cum = np.concatenate([[0], np.cumsum(hist)])
    for q in range(1, n_bins):
        target = q / n_bins * total
        i = int(np.searchsorted(cum, target, side="left")) - 1  # cum[i] < target <= cum[i + 1]
        frac = (target - cum[i]) / hist[i]
        linear = i in (0, N_HIST_BINS - 1)
        edge = lo[i] + frac * (hi[i] - lo[i]) if linear else lo[i] * (hi[i] / lo[i]) ** frac
        edges[q] = min(edge, max_act)
    return np.maximum.accumulate(edges)


# ---------------------------------------------------------------------------------------------- reading the run


@dataclass(frozen=True)
class StepRef:
    """A step of the run: the episode's position among the run's episodes, and the step in that episode."""

    episode: int
    step: int


def _action_keys(episode: Episode) -> list[str]:
    return [k for k in MINERL_BUTTONS if f"action/minerl/{k}" in episode]


def _event_type(event) -> str:
    return str(event.get("type", "?")) if isinstance(event, dict) else str(event)


def _iter_run(episodes: list[Episode], hook_name: str, block_steps: int, action_keys: list[str] | None, desc: str):
    """Yields (episode position, first step, activations float32 (n, d), action keys (n, k) float32, event types
    per step); without `action_keys` (None) only the activations are read (keys and events come back empty)."""
    name = f"activations/{hook_name}"
    total = sum(len(e) for e in episodes)
    with tqdm(total=total, desc=desc, unit="step", mininterval=5.0) as bar:
        for i, episode in enumerate(episodes):
            arr = episode[name]
            chunk = arr.array.chunks[0]
            step = max(chunk, block_steps - block_steps % chunk)
            for start in range(0, len(arr), step):
                stop = min(len(arr), start + step)
                acts = np.asarray(arr[start:stop], np.float32).reshape(stop - start, -1)
                keys = np.zeros((stop - start, len(action_keys or ())), np.float32)
                for j, key in enumerate(action_keys or ()):
                    keys[:, j] = np.asarray(episode[f"action/minerl/{key}"][start:stop]) > 0
                events = [[] for _ in range(stop - start)]
                if action_keys is not None and "gt/events" in episode:
                    events = [[_event_type(ev) for ev in json.loads(str(s))] for s in episode["gt/events"][start:stop]]
                yield i, start, acts, keys, events
                bar.update(stop - start)


def _encode(sae: torch.nn.Module, acts: np.ndarray, device: torch.device) -> Tensor:
    x = torch.from_numpy(acts).to(device)
    dtype = sae.W_enc.dtype
    return sae.encode(x.to(dtype)).float()


@torch.no_grad()
def first_pass(sae: torch.nn.Module, episodes: list[Episode], cfg: DashboardConfig) -> tuple[LatentStats, np.ndarray]:
    """Pass 1 over the run; also returns the global step offset of each episode (global index = offset + step)."""
    device = torch.device(cfg.device)
    action_keys = sorted(set.intersection(*(set(_action_keys(e)) for e in episodes)), key=MINERL_BUTTONS.index)
    stats = LatentStats(sae.cfg.d_sae, cfg.n_top, action_keys, device)
    offsets = np.concatenate([[0], np.cumsum([len(e) for e in episodes])[:-1]]).astype(np.int64)
    for i, start, acts, keys, events in _iter_run(episodes, sae.cfg.hook_name, cfg.block_steps, action_keys, "pass 1"):
        for a in range(0, len(acts), cfg.batch_size):
            b = min(len(acts), a + cfg.batch_size)
            z = _encode(sae, acts[a:b], device)
            index = torch.arange(offsets[i] + start + a, offsets[i] + start + b, device=device)
            stats.update(z, index, torch.from_numpy(keys[a:b]).to(device), events[a:b])
    return stats, offsets


@torch.no_grad()
def quantile_samples(
    sae: torch.nn.Module,
    episodes: list[Episode],
    cfg: DashboardConfig,
    latents: list[int],
    edges_nq: np.ndarray,
    offsets: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pass 2: per shown latent and interval, exact counts and up to n_per_quantile uniformly sampled steps.

    Returns counts (n, Q), sampled global indices (m, n, Q) (-1 where fewer) and their activations (m, n, Q).
    """
    device = torch.device(cfg.device)
    n, n_q, m = len(latents), edges_nq.shape[1] - 1, cfg.n_per_quantile
    sel = torch.tensor(latents, device=device)
    inner = torch.as_tensor(edges_nq[:, 1:-1], dtype=torch.float32, device=device)  # (n, Q-1)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    counts = torch.zeros((n, n_q), dtype=torch.int64, device=device)
    keys = torch.full((0, n * n_q), math.inf, device=device)
    picked = torch.zeros((0, n * n_q), dtype=torch.int64, device=device)
    values = torch.zeros((0, n * n_q), device=device)
    for i, start, acts, _, _ in _iter_run(episodes, sae.cfg.hook_name, cfg.block_steps, None, "pass 2"):
        for a in range(0, len(acts), cfg.batch_size):
            b = min(len(acts), a + cfg.batch_size)
            z = _encode(sae, acts[a:b], device)[:, sel]  # (B, n)
            q = (z[:, :, None] > inner[None]).sum(-1)  # interval (e_q, e_q+1] of each activation
            in_q = (q[:, :, None] == torch.arange(n_q, device=device)) & (z > 0)[:, :, None]  # (B, n, Q)
            counts += in_q.sum(0)
            u = torch.rand(z.shape, generator=gen, device=device)[:, :, None].expand_as(in_q)
            index = torch.arange(offsets[i] + start + a, offsets[i] + start + b, device=device)
            all_keys = torch.cat([keys, torch.where(in_q, u, math.inf).flatten(1)])
            top = torch.topk(all_keys, min(m, all_keys.shape[0]), dim=0, largest=False)
            keys = top.values
            picked = torch.cat([picked, index[:, None].expand(-1, n * n_q)]).gather(0, top.indices)
            values = torch.cat([values, z[:, :, None].expand_as(in_q).flatten(1)]).gather(0, top.indices)
    found = torch.isfinite(keys)
    picked = torch.where(found, picked, -1).view(-1, n, n_q).cpu().numpy()
    values = torch.where(found, values, math.nan).view(-1, n, n_q).cpu().numpy()
    return counts.cpu().numpy(), picked, values


def _locate(index: int, offsets: np.ndarray) -> StepRef:
    i = int(np.searchsorted(offsets, index, side="right")) - 1
    return StepRef(i, int(index - offsets[i]))


# ---------------------------------------------------------------------------------------------- direct effect


@dataclass
class EffectRow:
    """The direct effect of one latent at one step."""

    latent: int
    step: int
    z: float
    """The latent's activation on the live activation at that step (with guidance: the conditional stream's; the
    unconditional stream is edited with its own value)."""
    delta_buttons: np.ndarray
    """(8641,) edited - clean log-probabilities of the button classes."""
    delta_camera: np.ndarray
    """(121,) edited - clean log-probabilities of the camera classes."""
    clean_buttons: np.ndarray
    clean_camera: np.ndarray
    kl_buttons: float
    kl_camera: float


@torch.no_grad()
def direct_effects(
    policy: VPTPolicy,
    episode: Episode,
    sae: torch.nn.Module,
    examples: list[tuple[int, int]],
    batch_size: int = 512,
    replay_tolerance: float | None = 1e-3,
) -> list[EffectRow]:
    """Direct effect of latent s at step t for each (step t, latent s) of `examples`, from one replay of `episode`.

    The episode is replayed up to each example step; there, one batched step from copies of the
    state gives row j with latent j's decoder contribution removed from the hook's activation (that
    step only), and a clean step of the same batch shape the reference. The replay is checked against
    the recorded log-probabilities of the actions taken (unless `replay_tolerance` is None or the run used guidance).
    """
    hook_name = sae.cfg.hook_name
    if hook_name not in policy.hook_names:
        raise KeyError(f"the policy has no hook {hook_name!r} (the SAE's hook); `vptlens info` lists them")
    cond_scale = (episode.attrs.get("record_config") or {}).get("cond_scale")
    goal = episode_goal(episode)
    goal_1g = None if goal is None else torch.from_numpy(goal).to(policy.device, policy.dtype)[None]
    by_step: dict[int, list[int]] = defaultdict(list)
    for t, s in examples:
        if not 0 <= t < len(episode):
            raise ValueError(f"step {t} out of range: {episode.path} has {len(episode)} steps")
        by_step[int(t)].append(int(s))
    frames = _FrameBlocks(episode)
    recorded = None
    if replay_tolerance is not None and cond_scale is None and {"log_prob", "action/buttons"} <= set(episode.names()):
        recorded = tuple(np.asarray(episode[n][:]) for n in ("action/buttons", "action/camera", "log_prob"))
    state = policy.initial_state(1, guided=cond_scale is not None)
    rows, pos = [], 0
    for t in sorted(by_step):
        state = _advance(policy, frames, state, pos, t, goal_1g, cond_scale)
        frame = torch.from_numpy(frames.get(t, t + 1)[0]).to(policy.device)
        latents = by_step[t]
        next_state = None
        for a in range(0, len(latents), batch_size):
            chunk = latents[a : a + batch_size]
            clean, new_state, _ = _edited_step(
                policy, sae, frame, t == 0, state, [-1] * len(chunk), goal_1g, cond_scale
            )
            out, _, z_used = _edited_step(policy, sae, frame, t == 0, state, chunk, goal_1g, cond_scale)
            if next_state is None:
                next_state = new_state.select([0] if cond_scale is None else [0, len(chunk)])
                if recorded is not None:
                    _check_replay(episode, t, clean, recorded, replay_tolerance)
            kl_b = kl_divergence(clean.buttons_logits, out.buttons_logits)
            kl_c = kl_divergence(clean.camera_logits, out.camera_logits)
            clean_b, clean_c = (
                clean.buttons_logits[0].double().cpu().numpy(),
                clean.camera_logits[0].double().cpu().numpy(),
            )
            d_b = (out.buttons_logits - clean.buttons_logits).double().cpu().numpy()
            d_c = (out.camera_logits - clean.camera_logits).double().cpu().numpy()
            for j, s in enumerate(chunk):
                rows.append(
                    EffectRow(s, t, float(z_used[j]), d_b[j], d_c[j], clean_b, clean_c, float(kl_b[j]), float(kl_c[j]))
                )
        state, pos = next_state, t + 1
    return rows


class _FrameBlocks:
    """An episode's frames, read a block of whole chunks at a time (the block of the last request is kept)."""

    def __init__(self, episode: Episode, block_steps: int = 256):
        self.array = episode["frames"]
        chunk = self.array.array.chunks[0]
        self.block = max(chunk, block_steps - block_steps % chunk)
        self.start, self.data = -1, None

    def get(self, a: int, b: int) -> np.ndarray:
        parts = []
        while a < b:
            start = a // self.block * self.block
            if start != self.start:
                self.start, self.data = start, np.asarray(self.array[start : start + self.block])
            stop = min(b, start + self.block)
            parts.append(self.data[a - start : stop - start])
            a = stop
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _advance(
    policy: VPTPolicy, frames_src: _FrameBlocks, state: PolicyState, start: int, stop: int, goal_1g, cond_scale
):
    """Run the policy over frames start..stop-1 (clean); sequence mode, or steps when guided."""
    chunk = policy.cfg.memory_len
    for a in range(start, stop, chunk):
        b = min(stop, a + chunk)
        frames = torch.from_numpy(frames_src.get(a, b)).to(policy.device)
        if cond_scale is None:
            first = torch.zeros((1, b - a), dtype=torch.bool, device=policy.device)
            first[0, 0] = a == 0
            _, state = policy.forward(frames[None], first, state, goal_1g)
        else:
            for i in range(b - a):
                first = torch.tensor([a + i == 0], device=policy.device)
                _, state = policy.step(frames[i : i + 1], first, state, goal_1g, cond_scale)
    return state


def _edited_step(policy: VPTPolicy, sae, frame, first: bool, state: PolicyState, latents, goal_1g, cond_scale):
    """One step of len(latents) rows from copies of `state`: row j without latent j's decoder contribution (-1: none).

    Rows of one batch need not round alike (a GEMM treats rows in blocks), so the clean reference of
    row j is row j of the same call with every latent -1: the two calls differ only by the edit.
    """
    n = len(latents)
    lat = torch.tensor(latents, device=policy.device)
    if cond_scale is None:
        state_n = PolicyState.cat([state] * n)
    else:  # guided rows are [cond rows..., uncond rows...]
        state_n = PolicyState.cat([state.select([0])] * n + [state.select([1])] * n)
    z_used = []

    def remove(x: Tensor, *, hook) -> Tensor:
        rows_lat = lat if x.shape[0] == n else lat.repeat(x.shape[0] // n)
        safe = rows_lat.clamp(min=0)
        z = sae.encode(x.to(sae.W_enc.dtype).reshape(x.shape[0], -1)).gather(1, safe[:, None])[:, 0]
        z = torch.where(rows_lat >= 0, z, torch.zeros_like(z))
        z_used.append(z[:n].float().cpu())
        contrib = z[:, None] * sae.W_dec[safe]
        return x - contrib.reshape(x.shape).to(x.dtype)

    frames = frame[None].expand(n, *frame.shape)
    first_n = torch.full((n,), first, dtype=torch.bool, device=policy.device)
    goal = None if goal_1g is None else goal_1g.expand(n, -1)
    with policy.hooks([(sae.cfg.hook_name, remove)]):
        out, new_state = policy.step(frames, first_n, state_n, goal, cond_scale)
    return out, new_state, z_used[0].numpy()


def _check_replay(episode: Episode, t: int, out, recorded: tuple, tolerance: float) -> None:
    """Row 0 of `out` (clean) must give the recorded action its recorded log-probability."""
    buttons, camera, log_prob = recorded
    replayed = float(out.buttons_logits[0, int(buttons[t])]) + float(out.camera_logits[0, int(camera[t])])
    error = abs(replayed - float(log_prob[t]))
    if error > tolerance:
        raise ValueError(
            f"{episode.path} step {t}: the replayed log-probability of the recorded action is {error:.3g} nats away "
            "from the recorded one; the policy is not the one that recorded the run (pass the exact --model and "
            "--weights files it was recorded with)"
        )


# ---------------------------------------------------------------------------------------------- action labels


def button_label(button_class: int) -> str:
    """A joint button class as MineRL keys, e.g. 'forward+attack, camera' ('noop' when nothing is pressed)."""
    pressed, camera_off = class_to_buttons(np.array([button_class]))
    if button_class == INVENTORY_CLASS:
        return "inventory"
    keys = [b for b, on in zip(VPT_BUTTONS, pressed[0]) if on]
    return "+".join(keys or ["noop"]) + ("" if camera_off[0] else ", camera")


def camera_label(camera_class: int) -> str:
    """A camera class as degrees per step (pitch positive looks down)."""
    bins = np.array([camera_class // N_CAMERA_BINS, camera_class % N_CAMERA_BINS])
    pitch, yaw = dequantize_camera(bins)
    return f"pitch {pitch:+.2f}°, yaw {yaw:+.2f}°"


def summarise_effects(rows: list[EffectRow], episodes: list[int], n_classes: int) -> dict:
    """Mean over a latent's examples (rows, with each one's episode position): change of every class's
    log-probability, the extremes labelled, the KLs."""
    d_b = np.mean([r.delta_buttons for r in rows], 0)
    d_c = np.mean([r.delta_camera for r in rows], 0)
    clean_b = np.mean([np.exp(r.clean_buttons) for r in rows], 0)
    clean_c = np.mean([np.exp(r.clean_camera) for r in rows], 0)

    def extremes(delta, clean, label, sign):
        order = np.argsort(-sign * delta, kind="stable")[:n_classes]
        return [
            {
                "class": int(c),
                "label": label(int(c)),
                "mean_delta_logprob": float(delta[c]),
                "mean_clean_prob": float(clean[c]),
            }
            for c in order
        ]

    return {
        "n_examples": len(rows),
        "examples": [
            {"episode": e, "step": r.step, "z": r.z, "kl_buttons": r.kl_buttons, "kl_camera": r.kl_camera}
            for e, r in zip(episodes, rows)
        ],
        "mean_z": float(np.mean([r.z for r in rows])),
        "mean_kl_buttons": float(np.mean([r.kl_buttons for r in rows])),
        "mean_kl_camera": float(np.mean([r.kl_camera for r in rows])),
        "buttons_up": extremes(d_b, clean_b, button_label, 1),
        "buttons_down": extremes(d_b, clean_b, button_label, -1),
        "camera_up": extremes(d_c, clean_c, camera_label, 1),
        "camera_down": extremes(d_c, clean_c, camera_label, -1),
        "mean_delta_buttons": d_b,
        "mean_delta_camera": d_c,
    }


# ---------------------------------------------------------------------------------------------- images


def read_thumbnails(
    episodes: list[Episode], refs: list[StepRef], size: int
) -> dict[tuple[int, int], UInt8[np.ndarray, "h w 3"]]:
    """The stored frames of `refs`, resized to size x size; each needed chunk of `frames` is read once."""
    wanted: dict[int, set[int]] = defaultdict(set)
    for ref in refs:
        wanted[ref.episode].add(ref.step)
    out = {}
    for i, steps in wanted.items():
        arr = episodes[i]["frames"]
        chunk = arr.array.chunks[0]
        for c in sorted({t // chunk for t in steps}):
            block = np.asarray(arr[c * chunk : (c + 1) * chunk])
            for t in steps:
                if t // chunk == c:
                    frame = block[t - c * chunk]
                    interp = cv2.INTER_AREA if size < frame.shape[0] else cv2.INTER_NEAREST
                    out[(i, t)] = (
                        frame
                        if frame.shape[:2] == (size, size)
                        else cv2.resize(frame, (size, size), interpolation=interp)
                    )
    return out


def make_grid(
    thumbs: list[UInt8[np.ndarray, "h w 3"]], captions: list[list[str]], columns: int, size: int
) -> UInt8[np.ndarray, "H W 3"]:
    """Thumbnails in rows of `columns`, each with its caption lines on a dark strip below (RGB)."""
    line_h = max(12, size // 9)
    scale = line_h / 30.0
    n_lines = max((len(c) for c in captions), default=1)
    cell_h, pad = size + n_lines * line_h + 6, 4
    n = max(1, len(thumbs))
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    grid = np.full((rows * (cell_h + pad) + pad, cols * (size + pad) + pad, 3), 255, np.uint8)
    for k, (thumb, lines) in enumerate(zip(thumbs, captions)):
        y, x = pad + (k // cols) * (cell_h + pad), pad + (k % cols) * (size + pad)
        grid[y : y + size, x : x + size] = thumb
        grid[y + size : y + cell_h, x : x + size] = 30
        for j, line in enumerate(lines):
            baseline = y + size + (j + 1) * line_h
            cv2.putText(grid, line, (x + 3, baseline), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return grid


def save_png(image_rgb: np.ndarray, path: Path) -> str:
    if not cv2.imwrite(str(path), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path.name


def plot_histogram(hist: np.ndarray, max_act: float, edges_q: np.ndarray, title: str, path: Path) -> str:
    """The latent's nonzero activations over the fixed log-spaced bins, with its quantile-interval edges."""
    fig = Figure(figsize=(6.4, 2.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    nonzero = np.flatnonzero(hist)
    if len(nonzero):
        lo, hi = nonzero[0], nonzero[-1] + 1
        edges = np.concatenate([[HIST_EDGES[0] / 10], HIST_EDGES, [max(10 * HIST_EDGES[-1], max_act)]])
        ax.stairs(hist[lo:hi], edges[lo : hi + 1], fill=True, color="tab:blue")
        for e in edges_q[1:-1]:
            ax.axvline(e, color="tab:orange", lw=1, ls="--")
        ax.axvline(max_act, color="tab:red", lw=1)
        ax.set_xscale("log")
    else:
        ax.text(0.5, 0.5, "never fires", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("activation (log scale; dashed: quantile-interval edges, red: max)")
    ax.set_ylabel("steps")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return path.name


def plot_effects(summary: dict, title: str, path: Path) -> str:
    """Bars of the mean change in log-probability of the most increased and decreased button and camera classes."""
    fig = Figure(figsize=(11, 0.32 * 2 * len(summary["buttons_up"]) + 1.6), dpi=100)
    FigureCanvasAgg(fig)
    for k, head in enumerate(("buttons", "camera")):
        ax = fig.add_subplot(1, 2, k + 1)
        items = summary[f"{head}_up"] + summary[f"{head}_down"][::-1]
        values = [it["mean_delta_logprob"] for it in items]
        y = np.arange(len(items))[::-1]
        ax.barh(y, values, color=["tab:green" if v > 0 else "tab:red" for v in values])
        ax.set_yticks(y, [it["label"] for it in items], fontsize=8)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel("mean change in log-prob (nats)")
        ax.set_title(f"{head} classes", fontsize=10)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return path.name


# ---------------------------------------------------------------------------------------------- HTML

_CSS = """body{font-family:sans-serif;margin:1.5em;max-width:1200px}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right;font-size:13px}th{background:#eee}
td.l,th.l{text-align:left}img{max-width:100%}h2{margin-top:1.2em}.small{color:#555;font-size:13px}"""


def _e(x) -> str:
    return html.escape(str(x))


def _fmt(x, digits: int = 4) -> str:
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.{digits}g}"
    return str(x)


def _table(headers: list[str], rows: list[list], left: tuple[int, ...] = (0,)) -> str:
    """An HTML table; every cell is escaped (numbers formatted first)."""
    cls = lambda j: ' class="l"' if j in left else ""
    head = "".join(f"<th{cls(j)}>{_e(h)}</th>" for j, h in enumerate(headers))
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{cls(j)}>{cell if isinstance(cell, _Raw) else _e(_fmt(cell))}</td>" for j, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


class _Raw(str):
    """Already-escaped HTML for a table cell (a link built from escaped parts)."""


def _page(title: str, body: str) -> str:
    head = f'<meta charset="utf-8"><title>{_e(title)}</title><style>{_CSS}</style>'
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>\n"


def _img(src: str, alt: str) -> str:
    return f'<img src="img/{_e(src)}" alt="{_e(alt)}">'


def latent_page(latent: dict, images: dict[str, str], context: dict) -> str:
    s = latent["id"]
    parts = [
        f'<p><a href="index.html">&larr; all latents</a></p><h1>Latent {_e(s)}</h1>',
        f"<p class=small>{_e(context['title'])}</p>",
        _table(
            ["firing steps", "firing rate", "max activation", "mean activation when firing"],
            [[latent["n_fire"], latent["firing_rate"], latent["max_act"], latent["mean_act_when_firing"]]],
            left=(),
        ),
    ]
    parts.append("<h2>Activation histogram</h2>" + _img(images["hist"], f"histogram of latent {s}"))
    parts.append("<h2>Top-activating frames</h2>")
    if latent["top_examples"]:
        parts.append(_img(images["top"], f"top-activating frames of latent {s}"))
        rows = [
            [k, context["episode_names"][x["episode"]], x["step"], x["activation"]]
            for k, x in enumerate(latent["top_examples"])
        ]
        parts.append(
            "<details><summary>examples</summary>"
            + _table(["#", "episode", "step", "activation"], rows, (1,))
            + "</details>"
        )
    else:
        parts.append("<p>This latent never fires on the run.</p>")
    parts.append(
        "<h2>Quantile-interval samples</h2><p class=small>Intervals holding equal shares of the nonzero activations "
        "(edges from the histogram); uniform random samples within each.</p>"
    )
    for q, interval in enumerate(latent["quantile_intervals"]):
        head = f"interval {q + 1}: ({_fmt(interval['lo'])}, {_fmt(interval['hi'])}], {interval['count']} steps"
        parts.append(f"<h3>{_e(head)}</h3>")
        if f"quantile_{q}" in images:
            parts.append(_img(images[f"quantile_{q}"], head))
    parts.append("<h2>Actions when it fires</h2>")
    rows = [[a["key"], a["n_both"], a["p_key_given_fire"], a["p_key"], a["lift"]] for a in latent["actions"]]
    parts.append(_table(["MineRL key", "steps firing with key", "P(key | fires)", "P(key)", "lift"], rows))
    parts.append("<h2>Env events when it fires</h2>")
    if latent["events"]:
        rows = [
            [v["type"], v["n_when_firing"], v["rate_when_firing"], v["n_total"], v["rate_overall"], v["lift"]]
            for v in latent["events"]
        ]
        parts.append(
            _table(["event", "events at firing steps", "per firing step", "events in run", "per step", "lift"], rows)
        )
    else:
        parts.append("<p>No events recorded in the run.</p>")
    parts.append("<h2>Direct effect on the action heads</h2>")
    effect = latent.get("direct_effect")
    if effect is None:
        parts.append("<p>Not computed.</p>")
    elif effect["n_examples"] == 0:
        parts.append("<p>No examples (the latent never fires).</p>")
    else:
        parts.append(
            f"<p class=small>Removing z·W_dec[{_e(s)}] from {_e(context['hook_name'])} at each of "
            f"{effect['n_examples']} top steps (mean z {_e(_fmt(effect['mean_z']))}): mean KL(clean‖edited) "
            f"buttons {_e(_fmt(effect['mean_kl_buttons']))}, camera {_e(_fmt(effect['mean_kl_camera']))} nats.</p>"
        )
        parts.append(_img(images["effect"], f"direct effect of latent {s}"))
        for head in ("buttons", "camera"):
            for direction in ("up", "down"):
                rows = [
                    [it["label"], it["class"], it["mean_delta_logprob"], it["mean_clean_prob"]]
                    for it in effect[f"{head}_{direction}"]
                ]
                word = "raised" if direction == "up" else "lowered"
                parts.append(f"<h3>{_e(head)} classes most {word}</h3>")
                parts.append(_table([f"{head} action", "class", "mean Δ log-prob", "mean clean prob"], rows))
    return _page(f"latent {s}", "\n".join(parts))


def index_page(latents: list[dict], context: dict) -> str:
    rows = []
    for lat in latents:
        actions = [a for a in lat["actions"] if not math.isnan(a["lift"]) and a["n_both"] > 0][:3]
        events = [v for v in lat["events"] if not math.isnan(v["lift"]) and v["n_when_firing"] > 0][:3]
        link = _Raw(f'<a href="latent_{lat["id"]}.html">page</a>')
        rows.append(
            [
                lat["id"],
                lat["firing_rate"],
                lat["max_act"],
                ", ".join(f"{v['type']} ×{v['lift']:.2f} ({v['n_when_firing']})" for v in events),
                ", ".join(f"{a['key']} ×{a['lift']:.2f} ({a['n_both']})" for a in actions),
                link,
            ]
        )
    body = f"<h1>SAE latents</h1><p class=small>{_e(context['title'])}</p>" + _table(
        ["latent", "firing rate", "max act", "top events: lift (count)", "top actions: lift (count)", ""], rows, (3, 4)
    )
    return _page("SAE dashboard", body)


# ---------------------------------------------------------------------------------------------- main


def select_latents(fire_count: np.ndarray, cfg: DashboardConfig) -> list[int]:
    """Explicit ids, or the n_latents most frequently firing latents that fire at all (ties: lower id first)."""
    d_sae = len(fire_count)
    if cfg.latents:
        bad = [i for i in cfg.latents if i >= d_sae]
        if bad:
            raise ValueError(f"latent ids {bad} out of range: the SAE has {d_sae} latents (0..{d_sae - 1})")
        return list(dict.fromkeys(cfg.latents))
    order = np.argsort(-fire_count, kind="stable")
    return [int(s) for s in order[: cfg.n_latents] if fire_count[s] > 0]


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def main(cfg: DashboardConfig) -> dict:
    """Write the dashboards of `cfg.sae`'s latents on `cfg.run` into `cfg.out`; return dashboard.json's content."""
    sae = SAE.load(cfg.sae, device=cfg.device).eval()
    hook_name = sae.cfg.hook_name
    episodes = open_episodes(cfg.run)
    if not episodes:
        raise ValueError(f"{cfg.run}: no complete episodes; record some with `vptlens record`")
    for episode in episodes:
        if f"activations/{hook_name}" not in episode:
            raise KeyError(
                f"{episode.path} did not record activations/{hook_name} (the SAE's hook); it has "
                f"{episode.attrs.get('hooks')}. Record a run with --hooks {hook_name} or use an SAE of one of these."
            )
        width = int(np.prod(episode[f"activations/{hook_name}"].shape[1:]))
        if width != sae.cfg.d_in:
            raise ValueError(
                f"{episode.path}: activations/{hook_name} has {width} values per step, the SAE's d_in is "
                f"{sae.cfg.d_in}; pass the run the SAE was trained on (or one recorded with the same policy)"
            )
    n_steps_run = sum(len(e) for e in episodes)
    logger.info(
        "dashboard: SAE %s (%s, %d latents) on %d episodes, %d steps",
        cfg.sae,
        hook_name,
        sae.cfg.d_sae,
        len(episodes),
        n_steps_run,
    )

    stats, offsets = first_pass(sae, episodes, cfg)
    fire_count = stats.fire_count.cpu().numpy()
    max_act = stats.max_act.cpu().numpy().astype(np.float64)
    act_sum = stats.act_sum.cpu().numpy()
    hist = stats.histogram()
    latents = select_latents(fire_count, cfg)
    n_q = cfg.n_quantile_bins
    edges = (
        np.stack([quantile_edges(hist[s], float(max_act[s]), n_q) for s in latents])
        if latents
        else np.zeros((0, n_q + 1))
    )
    counts_q, picked, sampled_z = (
        quantile_samples(sae, episodes, cfg, latents, edges, offsets) if latents else (None, None, None)
    )
    top_values = stats.top_values.cpu().numpy()
    top_index = stats.top_index.cpu().numpy()

    n_steps = stats.n_steps
    key_fire, key_total = stats.key_fire.cpu().numpy(), stats.key_total.numpy()
    event_fire, event_total = stats.event_fire.cpu().numpy(), stats.event_total.numpy()
    results, refs_needed = [], []
    for j, s in enumerate(latents):
        keep = top_values[:, s] > 0
        tops = [(_locate(int(g), offsets), float(v)) for g, v in zip(top_index[keep, s], top_values[keep, s])]
        refs_needed += [r for r, _ in tops]
        intervals = []
        for q in range(n_q):
            samples = [
                (_locate(int(g), offsets), float(v)) for g, v in zip(picked[:, j, q], sampled_z[:, j, q]) if g >= 0
            ]
            samples.sort(key=lambda rv: -rv[1])  # shown by activation, highest first
            refs_needed += [r for r, _ in samples]
            intervals.append(
                {
                    "lo": float(edges[j, q]),
                    "hi": float(edges[j, q + 1]),
                    "count": int(counts_q[j, q]),
                    "samples": [{"episode": r.episode, "step": r.step, "activation": v} for r, v in samples],
                }
            )
        lifts = lift(key_fire[s], np.full(len(key_total), fire_count[s]), key_total, n_steps)
        actions = [
            {
                "key": key,
                "n_both": int(key_fire[s, k]),
                "p_key_given_fire": float(key_fire[s, k] / fire_count[s]) if fire_count[s] else math.nan,
                "p_key": float(key_total[k] / n_steps),
                "lift": float(lifts[k]),
            }
            for k, key in enumerate(stats.action_keys)
            if key_total[k] > 0
        ]
        ev_lifts = lift(event_fire[s], np.full(len(event_total), fire_count[s]), event_total, n_steps)
        events = [
            {
                "type": t,
                "n_when_firing": int(event_fire[s, k]),
                "rate_when_firing": float(event_fire[s, k] / fire_count[s]) if fire_count[s] else math.nan,
                "n_total": int(event_total[k]),
                "rate_overall": float(event_total[k] / n_steps),
                "lift": float(ev_lifts[k]),
            }
            for k, t in enumerate(stats.event_types)
        ]
        by_lift = lambda d: (-(d["lift"] if not math.isnan(d["lift"]) else -math.inf), d.get("key", d.get("type")))
        results.append(
            {
                "id": s,
                "n_fire": int(fire_count[s]),
                "firing_rate": float(fire_count[s] / n_steps),
                "max_act": float(max_act[s]),
                "mean_act_when_firing": float(act_sum[s] / fire_count[s]) if fire_count[s] else math.nan,
                "histogram": hist[s].tolist(),
                "top_examples": [{"episode": r.episode, "step": r.step, "activation": v} for r, v in tops],
                "quantile_intervals": intervals,
                "actions": sorted(actions, key=by_lift),
                "events": sorted(events, key=by_lift),
            }
        )

    effects_npz = {}
    if cfg.direct_effect and latents:
        _direct_effects_into(results, episodes, sae, cfg, effects_npz)

    out = cfg.out
    (out / "img").mkdir(parents=True, exist_ok=True)
    thumbs = read_thumbnails(episodes, refs_needed, cfg.thumb_size)
    names = [e.path.name for e in episodes]
    title = (
        f"SAE {cfg.sae} ({hook_name}, {sae.cfg.d_sae} latents) on {cfg.run}: {len(episodes)} episodes, {n_steps} steps"
    )
    context = {"title": title, "hook_name": hook_name, "episode_names": names}
    for lat in results:
        s = lat["id"]
        images = {}
        images["hist"] = plot_histogram(
            np.asarray(lat["histogram"]),
            lat["max_act"],
            np.array([iv["lo"] for iv in lat["quantile_intervals"]] + [lat["max_act"]]),
            f"latent {s}: fires at {lat['n_fire']} of {n_steps} steps ({100 * lat['firing_rate']:.2f}%), "
            f"max {lat['max_act']:.3g}",
            out / "img" / f"hist_{s}.png",
        )
        if lat["top_examples"]:
            captions = [[f"ep{x['episode']} t{x['step']}", f"act {x['activation']:.3g}"] for x in lat["top_examples"]]
            grid = make_grid(
                [thumbs[(x["episode"], x["step"])] for x in lat["top_examples"]],
                captions,
                cfg.grid_columns,
                cfg.thumb_size,
            )
            images["top"] = save_png(grid, out / "img" / f"top_{s}.png")
        for q, interval in enumerate(lat["quantile_intervals"]):
            if interval["samples"]:
                captions = [
                    [f"ep{x['episode']} t{x['step']}", f"act {x['activation']:.3g}"] for x in interval["samples"]
                ]
                grid = make_grid(
                    [thumbs[(x["episode"], x["step"])] for x in interval["samples"]],
                    captions,
                    cfg.grid_columns,
                    cfg.thumb_size,
                )
                images[f"quantile_{q}"] = save_png(grid, out / "img" / f"quantile_{s}_{q}.png")
        effect = lat.get("direct_effect")
        if effect is not None and effect["n_examples"]:
            images["effect"] = plot_effects(
                effect,
                f"latent {s}: direct effect over {effect['n_examples']} top examples",
                out / "img" / f"effect_{s}.png",
            )
        lat["images"] = {k: f"img/{v}" for k, v in images.items()}
        (out / f"latent_{s}.html").write_text(latent_page(lat, images, context))
    (out / "index.html").write_text(index_page(results, context))
    if effects_npz:
        np.savez_compressed(out / "direct_effect.npz", **effects_npz)

    sae_cfg_path = Path(cfg.sae) / "cfg.json"
    report = {
        "schema": "vptlens.sae_dashboard",
        "schema_version": 1,
        "provenance": {
            "config": asdict(cfg),
            "sae_dir": str(cfg.sae),
            "sae_cfg": json.loads(sae_cfg_path.read_text()) if sae_cfg_path.is_file() else _jsonable(vars(sae.cfg)),
            "run": str(cfg.run),
            "episodes": [str(e.path) for e in episodes],
            "package_version": vptlens.__version__,
            "git_commit": git_commit(),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
        "method": __doc__,
        "hook_name": hook_name,
        "d_sae": sae.cfg.d_sae,
        "n_steps": n_steps,
        "n_alive": int((fire_count > 0).sum()),
        "firing_counts": fire_count.tolist(),
        "max_activations": max_act.tolist(),
        "hist_inner_edges": HIST_EDGES.tolist(),
        "action_keys": stats.action_keys,
        "event_types": stats.event_types,
        "latents": results,
        "direct_effect_arrays": "direct_effect.npz" if effects_npz else None,
    }
    report = _jsonable(report)
    (out / "dashboard.json").write_text(json.dumps(report, indent=1))
    logger.info("dashboard: %d latent pages in %s", len(results), out)
    return report


def _direct_effects_into(results: list[dict], episodes: list[Episode], sae, cfg: DashboardConfig, arrays: dict) -> None:
    """Compute each shown latent's direct effect over its top examples; adds `direct_effect` to each result."""
    shas = {(e.attrs.get("agent") or {}).get("weights_sha256") for e in episodes}
    if len(shas) > 1:
        raise ValueError(f"{cfg.run}: episodes were recorded with different policies; make a dashboard per policy")
    policy = load_run_policy(episodes[0], cfg.model, cfg.weights, cfg.device).eval()
    per_episode: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for lat in results:
        for x in lat["top_examples"][: cfg.n_effect_examples]:
            per_episode[x["episode"]].append((x["step"], lat["id"]))
    rows_by_latent: dict[int, list[tuple[int, EffectRow]]] = defaultdict(list)
    for i in tqdm(sorted(per_episode), desc="direct effect", unit="episode", mininterval=5.0):
        tol = cfg.replay_tolerance
        for row in direct_effects(policy, episodes[i], sae, per_episode[i], cfg.batch_size, tol):
            rows_by_latent[row.latent].append((i, row))
    for lat in results:
        pairs = rows_by_latent.get(lat["id"], [])
        if not pairs:
            lat["direct_effect"] = {"n_examples": 0}
            continue
        summary = summarise_effects([r for _, r in pairs], [i for i, _ in pairs], cfg.n_effect_classes)
        arrays[f"buttons_{lat['id']}"] = summary.pop("mean_delta_buttons").astype(np.float32)
        arrays[f"camera_{lat['id']}"] = summary.pop("mean_delta_camera").astype(np.float32)
        lat["direct_effect"] = summary
