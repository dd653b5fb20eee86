"""The dashboard's statistics, streamed over a run: firing counts, activation histograms, top-k, quantile-interval
samples, lift of action keys and env events (what fires a latent; `direct_effect.py` has what it does).

1. First pass, every latent: firing count (a latent fires when its activation is > 0), a
   histogram of its nonzero activations over fixed log-spaced bins (`HIST_EDGES`: 10 per
   decade from 1e-4 to 1e4, plus an underflow and an overflow bin), the running top-k
   activating steps (each batch's top-k merged into the running top-k: the same set as a
   top-k over the whole run), and co-occurrence counts with the binary MineRL action keys
   and the env's event types (its ground truth `events`).
2. Second pass, the latents shown: quantile-interval samples. The interval edges are the
   quantiles (q / n_quantile_bins) of the latent's nonzero activations, read from the pass-1
   histogram by `scipy.stats.rv_histogram` over log10 activations (the CDF interpolated within a
   bin, log-linearly): exact to within a histogram bin, and reported with each interval's exact
   count. Within an interval the samples are a uniform random subset (each firing step gets a
   seeded uniform key; the smallest keys are kept).

Lift of an action key for a latent: P(key | latent fires) / P(key), the probabilities being
fractions of steps of the run. Events: the number of events of each type at steps where the
latent fires against the number at all steps, as rates per step and their ratio (lift).

Functions that take `cfg` read a `DashboardConfig`'s n_top, batch_size, block_steps, device, seed,
n_per_quantile, latents and n_latents.
"""

import math
from collections import defaultdict
from dataclasses import dataclass

import cv2
import numpy as np
import scipy.stats
import torch
from jaxtyping import Float, Int, UInt8
from torch import Tensor
from tqdm import tqdm

from vptlens.agents.actions import MINERL_BUTTONS
from vptlens.recordings.store import Episode

HIST_EDGES = np.logspace(-4, 4, 81).astype(np.float32)
"""Inner edges of the activation histogram: bin 0 is (0, 1e-4), bin i is [edge[i-1], edge[i]), the last >= 1e4."""
N_HIST_BINS = len(HIST_EDGES) + 1


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

    Read from the fixed log-spaced histogram `hist` (N_HIST_BINS counts) as the quantiles of
    `scipy.stats.rv_histogram` over log10 activations: the empirical CDF is interpolated within the bin
    holding each quantile, log-linearly (the underflow bin taken to start a decade below 1e-4, the
    overflow bin to end at `max_act`).
    """
    edges = np.zeros(n_bins + 1)
    edges[-1] = max_act
    nonzero = np.flatnonzero(hist)
    if len(nonzero) == 0 or n_bins < 2:
        return edges
    inner = np.log10(HIST_EDGES.astype(np.float64))
    top = max(math.log10(max(max_act, 1e-30)), inner[-1] + 1e-6)
    log_edges = np.concatenate([[inner[0] - 1], inner, [top]])
    lo, hi = nonzero[0], nonzero[-1] + 1  # only the occupied bins: no empty bin at either end
    dist = scipy.stats.rv_histogram((hist[lo:hi], log_edges[lo : hi + 1]), density=False)
    edges[1:-1] = np.minimum(10.0 ** dist.ppf(np.arange(1, n_bins) / n_bins), max_act)
    return np.maximum.accumulate(edges)


# ---------------------------------------------------------------------------------------------- reading the run


@dataclass(frozen=True)
class StepRef:
    """A step of the run: the episode's position among the run's episodes, and the step in that episode."""

    episode: int
    step: int


def _action_keys(episode: Episode) -> list[str]:
    return [k for k in MINERL_BUTTONS if k in episode.minerl_keys]


def _event_type(event) -> str:
    return str(event.get("type", "?")) if isinstance(event, dict) else str(event)


def _iter_run(episodes: list[Episode], hook_name: str, block_steps: int, action_keys: list[str] | None, desc: str):
    """Yields (episode position, first step, activations float32 (n, d), action keys (n, k) float32, event types
    per step); without `action_keys` (None) only the activations are read (keys and events come back empty)."""
    total = sum(len(e) for e in episodes)
    with tqdm(total=total, desc=desc, unit="step", mininterval=5.0) as bar:
        for i, episode in enumerate(episodes):
            arr = episode.activation(hook_name)
            chunk = arr.array.chunks[0]
            step = max(chunk, block_steps - block_steps % chunk)
            events_gt = episode.ground_truth("events") if episode.has_ground_truth("events") else None
            for start in range(0, len(arr), step):
                stop = min(len(arr), start + step)
                acts = np.asarray(arr[start:stop], np.float32).reshape(stop - start, -1)
                keys = np.zeros((stop - start, len(action_keys or ())), np.float32)
                for j, key in enumerate(action_keys or ()):
                    keys[:, j] = np.asarray(episode.minerl_action(key)[start:stop]) > 0
                events = [[] for _ in range(stop - start)]
                if action_keys is not None and events_gt is not None:
                    events = [[_event_type(ev) for ev in step_events] for step_events in events_gt[start:stop]]
                yield i, start, acts, keys, events
                bar.update(stop - start)


def _encode(sae: torch.nn.Module, acts: np.ndarray, device: torch.device) -> Tensor:
    x = torch.from_numpy(acts).to(device)
    dtype = sae.W_enc.dtype
    return sae.encode(x.to(dtype)).float()


@torch.no_grad()
def first_pass(sae: torch.nn.Module, episodes: list[Episode], cfg) -> tuple[LatentStats, np.ndarray]:
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
    cfg,
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


def locate(index: int, offsets: np.ndarray) -> StepRef:
    """The step of a global step index (offset of its episode + step)."""
    i = int(np.searchsorted(offsets, index, side="right")) - 1
    return StepRef(i, int(index - offsets[i]))


def select_latents(fire_count: np.ndarray, cfg) -> list[int]:
    """Explicit ids, or the n_latents most frequently firing latents that fire at all (ties: lower id first)."""
    d_sae = len(fire_count)
    if cfg.latents:
        bad = [i for i in cfg.latents if i >= d_sae]
        if bad:
            raise ValueError(f"latent ids {bad} out of range: the SAE has {d_sae} latents (0..{d_sae - 1})")
        return list(dict.fromkeys(cfg.latents))
    order = np.argsort(-fire_count, kind="stable")
    return [int(s) for s in order[: cfg.n_latents] if fire_count[s] > 0]


def read_thumbnails(
    episodes: list[Episode], refs: list[StepRef], size: int
) -> dict[tuple[int, int], UInt8[np.ndarray, "h w 3"]]:
    """The stored frames of `refs`, resized to size x size; each needed chunk of the frames is read once."""
    wanted: dict[int, set[int]] = defaultdict(set)
    for ref in refs:
        wanted[ref.episode].add(ref.step)
    out = {}
    for i, steps in wanted.items():
        arr = episodes[i].frames
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


def latent_records(
    stats: LatentStats,
    offsets: np.ndarray,
    latents: list[int],
    edges_nq: np.ndarray,
    samples: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
) -> tuple[list[dict], list[StepRef]]:
    """Each shown latent's statistics as dashboard.json holds them, and every step whose frame they show.

    `samples`: what `quantile_samples` returned for `latents` (None when no latent is shown).
    """
    fire_count = stats.fire_count.cpu().numpy()
    max_act = stats.max_act.cpu().numpy().astype(np.float64)
    act_sum = stats.act_sum.cpu().numpy()
    hist = stats.histogram()
    top_values, top_index = stats.top_values.cpu().numpy(), stats.top_index.cpu().numpy()
    n_steps = stats.n_steps
    key_fire, key_total = stats.key_fire.cpu().numpy(), stats.key_total.numpy()
    event_fire, event_total = stats.event_fire.cpu().numpy(), stats.event_total.numpy()
    counts_q, picked, sampled_z = samples if samples is not None else (None, None, None)
    n_q = edges_nq.shape[1] - 1
    results, refs = [], []
    for j, s in enumerate(latents):
        keep = top_values[:, s] > 0
        tops = [(locate(int(g), offsets), float(v)) for g, v in zip(top_index[keep, s], top_values[keep, s])]
        refs += [r for r, _ in tops]
        intervals = []
        for q in range(n_q):
            found = [(locate(int(g), offsets), float(v)) for g, v in zip(picked[:, j, q], sampled_z[:, j, q]) if g >= 0]
            found.sort(key=lambda rv: -rv[1])  # shown by activation, highest first
            refs += [r for r, _ in found]
            intervals.append(
                {
                    "lo": float(edges_nq[j, q]),
                    "hi": float(edges_nq[j, q + 1]),
                    "count": int(counts_q[j, q]),
                    "samples": [{"episode": r.episode, "step": r.step, "activation": v} for r, v in found],
                }
            )
        n_fire = fire_count[s]
        lifts = lift(key_fire[s], np.full(len(key_total), n_fire), key_total, n_steps)
        actions = [
            {
                "key": key,
                "n_both": int(key_fire[s, k]),
                "p_key_given_fire": float(key_fire[s, k] / n_fire) if n_fire else math.nan,
                "p_key": float(key_total[k] / n_steps),
                "lift": float(lifts[k]),
            }
            for k, key in enumerate(stats.action_keys)
            if key_total[k] > 0
        ]
        ev_lifts = lift(event_fire[s], np.full(len(event_total), n_fire), event_total, n_steps)
        events = [
            {
                "type": t,
                "n_when_firing": int(event_fire[s, k]),
                "rate_when_firing": float(event_fire[s, k] / n_fire) if n_fire else math.nan,
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
                "n_fire": int(n_fire),
                "firing_rate": float(n_fire / n_steps),
                "max_act": float(max_act[s]),
                "mean_act_when_firing": float(act_sum[s] / n_fire) if n_fire else math.nan,
                "histogram": hist[s].tolist(),
                "top_examples": [{"episode": r.episode, "step": r.step, "activation": v} for r, v in tops],
                "quantile_intervals": intervals,
                "actions": sorted(actions, key=by_lift),
                "events": sorted(events, key=by_lift),
            }
        )
    return results, refs
