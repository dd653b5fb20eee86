"""The SAE feature browser's data: every latent's code at every step of a served run, and what it sorts, filters,
searches and shows.

`vptlens sae dashboard` streams its statistics for a few dozen latents; the browser has thousands and needs
any latent's trace along an episode, its correlation with any label and new examples on demand. So it encodes
the run once (in a background job) and keeps the codes as a sparse matrix (steps x latents; an SAE's codes are
sparse, ~k nonzeros per step), from which each statistic is one sparse product: firing counts, mean and max
activations, co-occurrence with MineRL keys and env events (their lift, `dashboard_data.lift`), correlation with
a probe label (`probes.labels`). Feature pages use `dashboard_data`'s histogram bins and quantile intervals and
`direct_effect` for what a latent does (read as per-key probabilities, `viewer.actions`).

The run is the one the SAE was trained on when it is served, else the first served run that recorded the SAE's
hook with its width: the browser reads nothing the server was not given.
"""

import json
import math
import threading
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse
import torch

from vptlens.agents.actions import MINERL_BUTTONS
from vptlens.probes.labels import LABELS, compute_label
from vptlens.probes.report import strict_json
from vptlens.probes.sae.dashboard_data import HIST_EDGES, N_HIST_BINS, lift, quantile_edges
from vptlens.probes.sae.direct_effect import direct_effects
from vptlens.probes.sae.model import CFG_NAME, SAE, SAEConfig
from vptlens.recordings.store import Episode, iter_blocks
from vptlens.viewer.actions import LABELS as ACTION_LABELS
from vptlens.viewer.actions import key_probabilities
from vptlens.viewer.jobs import Job, Jobs, Pending
from vptlens.viewer.policies import Policies
from vptlens.viewer.registry import Registry, SAEItem

DENSE_RATE = 0.1
"""A latent firing at more than this share of steps is called dense."""
MIN_COUNT = 3
"""Co-occurrences below this are too few for a lift to mean anything (left out of a latent's search text)."""
N_TOP, N_QUANTILES, N_PER_QUANTILE, CONTEXT, N_EFFECT = 16, 4, 6, 8, 8
"""Top examples, activation-quantile intervals and samples in each, context steps either side of an example,
top examples replayed for the effect on the action probabilities."""
ENCODE_ROWS = 1024


@dataclass
class FeatureIndex:
    """An SAE's codes on a run and the per-latent statistics the list shows."""

    sae: SAE
    run_id: str
    episode_ids: list[str]
    episodes: list[Episode]
    offsets: np.ndarray
    """Global row of each episode's first step."""
    codes: scipy.sparse.csc_matrix
    """(steps, latents) float32, the nonzero codes."""
    action_keys: list[str]
    key_fire: np.ndarray
    """(latents, keys): steps where the latent fires and the key is pressed."""
    key_total: np.ndarray
    event_types: list[str]
    event_fire: np.ndarray
    """(latents, event types): events at steps where the latent fires."""
    event_total: np.ndarray

    @property
    def n_steps(self) -> int:
        return self.codes.shape[0]

    @property
    def n_fire(self) -> np.ndarray:
        return np.diff(self.codes.indptr)

    def column(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """Latent s's firing rows (global steps, ascending) and activations."""
        lo, hi = self.codes.indptr[s], self.codes.indptr[s + 1]
        return self.codes.indices[lo:hi], self.codes.data[lo:hi]

    def locate(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global rows -> (episode position, step)."""
        episode = np.searchsorted(self.offsets, rows, side="right") - 1
        return episode, rows - self.offsets[episode]


def build_index(sae: SAE, run_id: str, episode_ids: list[str], episodes: list[Episode], job: Job) -> FeatureIndex:
    """Encode every step of `episodes` (progress into `job`) and count co-occurrences."""
    hook = sae.cfg.hook_name
    lengths = np.array([len(e) for e in episodes])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    rows, cols, vals = [], [], []
    done = 0
    with torch.no_grad():
        for i, start, block in iter_blocks(episodes, lambda e: e.activation(hook)):
            acts = torch.from_numpy(np.asarray(block, np.float32).reshape(len(block), -1))
            for a in range(0, len(acts), ENCODE_ROWS):
                z = sae.encode(acts[a : a + ENCODE_ROWS].to(sae.W_enc.dtype)).float()
                r, c = (z > 0).nonzero(as_tuple=True)
                rows.append((r + offsets[i] + start + a).numpy())
                cols.append(c.numpy())
                vals.append(z[r, c].numpy())
            done += len(block)
            job.progress = 0.9 * done / max(1, lengths.sum())
            job.message = f"encoded {done} of {lengths.sum()} steps"
    n_steps = int(lengths.sum())
    cat = lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
    codes = scipy.sparse.csc_matrix(
        (cat(vals, np.float32), (cat(rows, np.int64), cat(cols, np.int64))), shape=(n_steps, sae.cfg.d_sae)
    )
    fires = codes.copy()
    fires.data[:] = 1.0
    fires_t = fires.T.tocsr()
    common = set.intersection(*(set(e.minerl_keys) for e in episodes)) if episodes else set()
    action_keys = [k for k in MINERL_BUTTONS if k in common]
    keys = np.zeros((n_steps, len(action_keys)), np.float64)
    event_types: list[str] = []
    event_rows: list[tuple[int, str]] = []
    for i, episode in enumerate(episodes):
        for j, key in enumerate(action_keys):
            keys[offsets[i] : offsets[i] + len(episode), j] = np.asarray(episode.minerl_action(key)[:]) > 0
        if episode.has_ground_truth("events"):
            for t, row in enumerate(episode.ground_truth("events")[:]):
                for event in row or []:
                    kind = str(event.get("type", "?")) if isinstance(event, dict) else str(event)
                    event_rows.append((offsets[i] + t, kind))
                    if kind not in event_types:
                        event_types.append(kind)
    events = np.zeros((n_steps, len(event_types)), np.float64)
    for row, kind in event_rows:
        events[row, event_types.index(kind)] += 1
    return FeatureIndex(
        sae,
        run_id,
        episode_ids,
        episodes,
        offsets,
        codes,
        action_keys,
        np.asarray(fires_t @ keys),
        keys.sum(0),
        event_types,
        np.asarray(fires_t @ events),
        events.sum(0),
    )


def _json_floats(a: np.ndarray, digits: int = 5) -> list:
    a = np.asarray(a, np.float64)
    return [v if math.isfinite(v) else None for v in np.round(a, digits).tolist()]


class FeatureBrowser:
    """The served SAEs, each bound to a served run, their indexes built on first use."""

    def __init__(self, registry: Registry, jobs: Jobs, policies: Policies, open_episode):
        self.registry, self.jobs, self.policies, self.open_episode = registry, jobs, policies, open_episode
        self._indexes: dict[str, FeatureIndex] = {}
        self._building: dict[str, Job] = {}
        self._effects: dict[tuple[str, int], dict] = {}
        self._columns: dict[tuple[str, str], list] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ SAEs and their runs

    @staticmethod
    def config(item: SAEItem) -> SAEConfig:
        return SAEConfig.from_json_dict(json.loads((item.path / CFG_NAME).read_text()), str(item.path / CFG_NAME))

    def bound_run(self, item: SAEItem) -> str:
        """The served run the SAE is shown on (ValueError with the fix when there is none)."""
        cfg = self.config(item)
        candidates = self.registry.runs_with_hook(cfg.hook_name)
        trained_on = cfg.provenance.get("run")
        for run in candidates:
            if trained_on is not None and run.path == Path(trained_on).resolve():
                return run.id
        for run in candidates:
            episode = self.open_episode(run.episode_paths()[0])
            if int(np.prod(episode.activation(cfg.hook_name).shape[1:])) == cfg.d_in:
                return run.id
        raise ValueError(
            f"SAE {item.name} reads {cfg.hook_name} (width {cfg.d_in}) and no served run recorded it; serve the run it "
            f"was trained on too: vptlens serve {item.name} RUN_DIR"
        )

    def describe(self, item: SAEItem) -> dict:
        cfg = self.config(item)
        try:
            run, problem = self.bound_run(item), None
        except (ValueError, OSError) as e:
            run, problem = None, str(e)
        return {
            "id": item.id,
            "name": item.name,
            "hook": cfg.hook_name,
            "d_sae": cfg.d_sae,
            "d_in": cfg.d_in,
            "architecture": cfg.architecture,
            "k": cfg.k,
            "run": run,
            "problem": problem,
        }

    def index(self, sae_id: str) -> FeatureIndex:
        """The SAE's index; raises `Pending` with the building job until it is ready."""
        with self._lock:
            if sae_id in self._indexes:
                return self._indexes[sae_id]
            job = self._building.get(sae_id)
            if job is not None and job.status == "failed":
                raise ValueError(f"indexing SAE {sae_id} failed: {job.error}")
            if job is None:
                item = self.registry.sae(sae_id)
                run_id = self.bound_run(item)
                paths = [p for p in self.registry.run(run_id).episode_paths()]
                episodes = [self.open_episode(p) for p in paths]
                ids = [f"{run_id}e{k}" for k in range(len(paths))]
                keep = [j for j, e in enumerate(episodes) if e.status == "complete" and len(e)]
                episodes, ids = [episodes[j] for j in keep], [ids[j] for j in keep]
                if not episodes:
                    raise ValueError(f"run {run_id} has no complete episode to show SAE {item.name} on")

                def build(job: Job) -> str:
                    sae = SAE.load(item.path).eval()
                    index = build_index(sae, run_id, ids, episodes, job)
                    with self._lock:
                        self._indexes[sae_id] = index
                    return sae_id

                job = self.jobs.start("feature_index", f"index SAE {item.name} on run {run_id}", build)
                self._building[sae_id] = job
        if job.status == "done":
            return self._indexes[sae_id]
        raise Pending(job)

    # ------------------------------------------------------------------ the list

    def latents(self, sae_id: str) -> dict:
        """Every latent's firing statistics and search text, as columns."""
        ix = self.index(sae_id)
        n_fire = ix.n_fire
        rate = n_fire / max(1, ix.n_steps)
        sums = np.asarray(ix.codes.sum(0)).ravel()
        maxes = ix.codes.max(0).toarray().ravel()
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n_fire > 0, sums / np.maximum(n_fire, 1), np.nan)
        text = [[] for _ in range(ix.codes.shape[1])]
        for names, fire, total in (
            (ix.action_keys, ix.key_fire, ix.key_total),
            (ix.event_types, ix.event_fire, ix.event_total),
        ):
            if not names:
                continue
            lifts = lift(fire, n_fire[:, None], total[None, :], ix.n_steps)
            lifts = np.where(fire >= MIN_COUNT, lifts, np.nan)
            best = np.argmax(np.nan_to_num(lifts, nan=-1.0), 1)
            for s, j in enumerate(best):
                if np.isfinite(lifts[s, j]) and lifts[s, j] > 1:
                    text[s].append(f"{names[j]} ×{lifts[s, j]:.1f}")
        return {
            "sae": sae_id,
            "run": ix.run_id,
            "n_steps": ix.n_steps,
            "d_sae": ix.codes.shape[1],
            "dense_rate": DENSE_RATE,
            "keys": ix.action_keys,
            "events": ix.event_types,
            "labels": sorted(LABELS),
            "columns": {
                "n_fire": n_fire.tolist(),
                "firing_rate": _json_floats(rate, 6),
                "max_act": _json_floats(maxes),
                "mean_act": _json_floats(mean),
                "top": [", ".join(t) for t in text],
            },
        }

    def column(self, sae_id: str, name: str) -> list:
        """An extra sortable column: `lift:key:<key>`, `lift:event:<type>` or `corr:<label>` (cached)."""
        if (sae_id, name) not in self._columns:
            self._columns[(sae_id, name)] = self._column(self.index(sae_id), name)
        return self._columns[(sae_id, name)]

    def _column(self, ix: FeatureIndex, name: str) -> list:
        kind, _, what = name.partition(":")
        if kind == "lift":
            group, _, key = what.partition(":")
            names, fire, total = {
                "key": (ix.action_keys, ix.key_fire, ix.key_total),
                "event": (ix.event_types, ix.event_fire, ix.event_total),
            }.get(group, ([], None, None))
            if key not in names:
                raise ValueError(
                    f"column {name!r}: give lift:key:<{'|'.join(ix.action_keys)}> or "
                    f"lift:event:<{'|'.join(ix.event_types)}>"
                )
            j = names.index(key)
            return _json_floats(lift(fire[:, j], ix.n_fire, np.full(len(ix.n_fire), total[j]), ix.n_steps), 4)
        if kind == "corr":
            return _json_floats(self._correlation(ix, what), 4)
        raise ValueError(f"column {name!r}: give lift:key:<key>, lift:event:<type> or corr:<label>")

    def _correlation(self, ix: FeatureIndex, label: str) -> np.ndarray:
        """Pearson correlation of every latent's code with a label (`probes.labels`) over the steps it is defined."""
        if label not in LABELS:
            raise ValueError(f"unknown label {label!r}; known: {', '.join(sorted(LABELS))}")
        y = np.zeros(ix.n_steps)
        valid = np.zeros(ix.n_steps, bool)
        for i, episode in enumerate(ix.episodes):
            values, ok = compute_label(label, episode)
            y[ix.offsets[i] : ix.offsets[i] + len(episode)] = np.nan_to_num(values)
            valid[ix.offsets[i] : ix.offsets[i] + len(episode)] = ok
        n = valid.sum()
        if n < 2:
            return np.full(ix.codes.shape[1], np.nan)
        yc = np.where(valid, y - y[valid].mean(), 0.0)
        codes_t = ix.codes.T.tocsr()
        mean_z = (codes_t @ valid.astype(np.float64)) / n
        var_z = (codes_t.multiply(codes_t) @ valid.astype(np.float64)) / n - mean_z**2
        cov = (codes_t @ yc) / n
        var_y = (yc**2).sum() / n
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where((var_z > 1e-12) & (var_y > 0), cov / np.sqrt(np.maximum(var_z, 1e-12) * var_y), np.nan)

    # ------------------------------------------------------------------ a feature's page

    def _example(self, ix: FeatureIndex, dense: np.ndarray, row: int, value: float) -> dict:
        episode, step = (int(x[0]) for x in ix.locate(np.array([row])))
        length = len(ix.episodes[episode])
        lo, hi = max(0, step - CONTEXT), min(length, step + CONTEXT + 1)
        base = ix.offsets[episode]
        return {
            "episode": ix.episode_ids[episode],
            "episode_name": ix.episodes[episode].path.name,
            "step": step,
            "activation": round(float(value), 5),
            "context_start": lo,
            "context": _json_floats(dense[base + lo : base + hi], 4),
        }

    def latent(self, sae_id: str, s: int) -> dict:
        """Latent s: statistics, histogram, top and quantile-interval examples with context, lift of keys and events."""
        ix = self.index(sae_id)
        if not 0 <= s < ix.codes.shape[1]:
            raise ValueError(f"latent {s} out of range: the SAE has latents 0..{ix.codes.shape[1] - 1}")
        rows, values = ix.column(s)
        dense = np.zeros(ix.n_steps, np.float32)
        dense[rows] = values
        hist = np.bincount(np.searchsorted(HIST_EDGES, values, side="right"), minlength=N_HIST_BINS)
        n_fire = len(rows)
        max_act = float(values.max()) if n_fire else 0.0
        top = np.argsort(-values, kind="stable")[:N_TOP]
        intervals = []
        if n_fire:
            edges = quantile_edges(hist, max_act, N_QUANTILES)
            rng = np.random.default_rng(s)
            for q in range(N_QUANTILES):
                inside = np.flatnonzero((values > edges[q]) & (values <= edges[q + 1]))
                picked = rng.choice(inside, min(N_PER_QUANTILE, len(inside)), replace=False)
                picked = picked[np.argsort(-values[picked], kind="stable")]
                intervals.append(
                    {
                        "lo": float(edges[q]),
                        "hi": float(edges[q + 1]),
                        "count": len(inside),
                        "examples": [self._example(ix, dense, int(rows[j]), float(values[j])) for j in picked],
                    }
                )

        def lifts(names: list[str], fire: np.ndarray, total: np.ndarray) -> list[dict]:
            values = lift(fire[s], np.full(len(names), n_fire), total, ix.n_steps)
            return [
                {
                    "name": name,
                    "n_both": int(fire[s, j]),
                    "p_given_fire": fire[s, j] / n_fire if n_fire else None,
                    "p": total[j] / ix.n_steps,
                    "lift": values[j],
                }
                for j, name in enumerate(names)
            ]

        return strict_json(
            {
                "sae": sae_id,
                "id": s,
                "n_steps": ix.n_steps,
                "n_fire": n_fire,
                "firing_rate": n_fire / ix.n_steps,
                "max_act": max_act,
                "mean_act": float(values.mean()) if n_fire else None,
                "histogram": {"counts": hist.tolist(), "inner_edges": HIST_EDGES.tolist()},
                "top": [self._example(ix, dense, int(rows[j]), float(values[j])) for j in top],
                "quantiles": intervals,
                "keys": lifts(ix.action_keys, ix.key_fire, ix.key_total),
                "events": lifts(ix.event_types, ix.event_fire, ix.event_total),
                "episodes": [
                    {"id": i, "name": e.path.name, "length": len(e), "max": float(dense[o : o + len(e)].max())}
                    for i, e, o in zip(ix.episode_ids, ix.episodes, ix.offsets)
                ],
            }
        )

    def trace(self, sae_id: str, s: int, episode_id: str) -> list:
        """Latent s's code at every step of one of the run's episodes."""
        ix = self.index(sae_id)
        if episode_id not in ix.episode_ids:
            raise ValueError(
                f"episode {episode_id} is not among the {len(ix.episode_ids)} episodes the SAE is shown on"
            )
        i = ix.episode_ids.index(episode_id)
        rows, values = ix.column(s)
        lo, hi = ix.offsets[i], ix.offsets[i] + len(ix.episodes[i])
        out = np.zeros(hi - lo, np.float32)
        keep = (rows >= lo) & (rows < hi)
        out[rows[keep] - lo] = values[keep]
        return _json_floats(out, 4)

    def effect(self, sae_id: str, s: int) -> dict:
        """What removing latent s's decoder contribution at its top steps does to the per-key action probabilities
        (`direct_effect`: that step only, the memory untouched), mean over the top N_EFFECT examples."""
        key = (sae_id, s)
        if key in self._effects:
            return self._effects[key]
        ix = self.index(sae_id)
        rows, values = ix.column(s)
        if len(rows) == 0:
            return {"n_examples": 0, "labels": list(ACTION_LABELS)}
        top = rows[np.argsort(-values, kind="stable")[:N_EFFECT]]
        episodes, steps = ix.locate(top)
        by_episode: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for i, t in zip(episodes.tolist(), steps.tolist()):
            by_episode[i].append((t, s))
        clean, edited, kl_b, kl_c = [], [], [], []
        for i, examples in by_episode.items():
            policy, lock = self.policies.get(ix.episodes[i])
            with lock:
                effect_rows = direct_effects(policy, ix.episodes[i], ix.sae, examples)
            for r in effect_rows:
                before = key_probabilities(torch.from_numpy(r.clean_buttons), torch.from_numpy(r.clean_camera))
                after = key_probabilities(
                    torch.from_numpy(r.clean_buttons + r.delta_buttons),
                    torch.from_numpy(r.clean_camera + r.delta_camera),
                )
                clean.append(before)
                edited.append(after)
                kl_b.append(r.kl_buttons)
                kl_c.append(r.kl_camera)
        clean_p, edited_p = np.mean(clean, 0), np.mean(edited, 0)
        result = {
            "n_examples": len(clean),
            "labels": list(ACTION_LABELS),
            "clean": _json_floats(clean_p),
            "without_latent": _json_floats(edited_p),
            "delta": _json_floats(edited_p - clean_p),
            "kl_buttons": float(np.mean(kl_b)),
            "kl_camera": float(np.mean(kl_c)),
        }
        self._effects[key] = result
        return result
