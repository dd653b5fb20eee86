"""`vptlens probe`: how linearly decodable is a ground-truth label from a recorded activation?

For each (label, hook) a logistic probe (binary labels) or a ridge probe (regression labels)
is cross-validated with folds made of whole EPISODES: consecutive frames are nearly
identical, so frame-level splits would let a probe memorise episodes and score what it has
seen. Features are standardised with the training fold's statistics only. Reported per fold
and as a mean with a 95% t-interval over folds, next to two baselines on the same folds: the
majority class (train mean for regression) and the same probe on the raw CNN output
`img.hook_out`.

Memory is linear in the number of steps: activations are streamed from the store episode by
episode (only the arrays needed), kept in float16 as recorded, and the probes work through
them in row chunks (`linear_stats.py`: folds, metrics, fits). Labels are in `labels.py`, the
figures in `linear_plots.py`.

Features are named as users type them in `--hooks`: a recorded hook (`blocks.3.hook_resid_post`),
or `attention/` + `L{l}` (built by `attention_feature(l)`) for block l's attention pattern flattened to
heads x (M + 1) per step, the spelling of earlier versions, kept; `attention/*` matches every layer.
`parse_feature` is the one place that reads these names.
"""

import fnmatch
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro
from tqdm import tqdm

from vptlens.probes import linear_plots as plots
from vptlens.probes import report
from vptlens.probes.labels import Label, LabelSource, compute_label, describe_labels, get_label
from vptlens.probes.linear_stats import PRIMARY_METRIC, cross_validate, episode_folds
from vptlens.recordings import schema
from vptlens.recordings.store import CommittedArray, Episode, Run, iter_blocks

logger = logging.getLogger(__name__)

ATTENTION_FEATURE = "attention"
"""Features named by `attention_feature(l)` probe block l's flattened attention pattern."""


@dataclass(frozen=True)
class ProbeConfig:
    """Cross-validated linear probes from recorded activations to ground-truth labels."""

    run: tyro.conf.Positional[Path | None] = None
    """Run directory written by `vptlens record` (its complete episodes), or one episode directory (required unless
    --list-labels)."""
    out: Path = Path("runs/probe")
    """Output directory: probe.json and the plots."""
    overwrite: bool = False
    """Replace an existing, non-empty --out directory (otherwise refused before any work)."""
    list_labels: bool = False
    """Print every label with its kind and description, and exit."""
    labels: tuple[str, ...] = (
        "villager_visible",
        "crosshair_on_villager",
        "crosshair_distance",
        "nearest_tree_distance",
        "pitch",
    )
    """Labels to probe (`--list-labels` lists them; an unknown name is refused). A label that cannot be probed in
    this run (not recorded, one class, constant, or defined in fewer than 2 episodes) is skipped with its reason."""
    hooks: tuple[str, ...] = ("*.hook_*",)
    """Recorded activations to probe, hook names or wildcards (e.g. `blocks.*.hook_resid_post`); `attention/*`
    probes every layer's flattened attention pattern, `attention/` + `L0` layer 0's. A pattern matching nothing
    recorded is refused."""
    baseline_hook: str | None = "img.hook_out"
    """The raw CNN output, probed the same way as a baseline when the run recorded it (None: no such baseline)."""
    n_folds: int = 5
    """Cross-validation folds of whole episodes (leave-one-episode-out when the run has fewer episodes)."""
    l2: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
    """L2 penalty: the probe minimises mean loss + l2/2 * |w|^2 on standardised features (intercept free). One
    value: used as is. Several: chosen for each test fold by an inner cross-validation over the other folds
    (whole episodes again; the primary metric, AUROC or R^2), so the test episodes never pick it."""
    balance_classes: bool = True
    """Logistic probes: weight the classes equally in the loss (the threshold then targets balanced accuracy)."""
    max_steps: int = 200_000
    """At most this many steps are used (a seeded uniform subsample of the steps where some label is defined)."""
    max_iter: int = 200
    """L-BFGS iterations of each logistic probe."""
    seed: int = 0
    """Seed of the fold assignment and of the step subsample."""
    block_steps: int = 4096
    """Steps read from the store at a time."""
    device: str = "cpu"
    """Torch device for the probes' arithmetic (e.g. cuda)."""

    def __post_init__(self):
        if self.list_labels:
            return
        if self.run is None:
            raise ValueError("give the run to probe (`vptlens probe RUN ...`), or --list-labels to see the labels")
        if not self.labels:
            raise ValueError("give at least one label (--labels NAME ...; --list-labels lists them)")
        for name in self.labels:
            get_label(name)  # KeyError listing the known labels
        if not self.hooks:
            raise ValueError("give at least one hook name or wildcard (--hooks 'blocks.*.hook_resid_post')")
        if self.n_folds < 2:
            raise ValueError(f"n_folds must be at least 2, got {self.n_folds}")
        if not self.l2 or not all(v >= 0 for v in self.l2):
            raise ValueError(f"l2 needs one or more values >= 0, got {self.l2}")
        if self.max_steps < 2 or self.max_iter < 1 or self.block_steps < 1:
            raise ValueError("max_steps must be >= 2, max_iter and block_steps >= 1")


# ---------------------------------------------------------------- features


def attention_feature(layer: int) -> str:
    """The feature name of block `layer`'s flattened attention pattern: `attention/` + `L{layer}`."""
    return f"{ATTENTION_FEATURE}/L{int(layer)}"


def parse_feature(name: str) -> tuple[Literal["activation", "attention"], str | int]:
    """A feature name as users type it -> ("attention", layer) or ("activation", hook)."""
    match = re.fullmatch(rf"{ATTENTION_FEATURE}/L(\d+)", name)
    return ("attention", int(match[1])) if match else ("activation", name)


def feature_array(episode: Episode, name: str) -> CommittedArray:
    kind, key = parse_feature(name)
    return episode.attention(key) if kind == "attention" else episode.activation(key)


def _natural_key(name: str):
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", name)]


def available_features(episode: Episode) -> list[str]:
    """Probe-able features: the recorded hooks (in the order the recorder listed them), then the attention patterns."""
    order = {h: i for i, h in enumerate(episode.meta.hooks)}
    hooks = sorted(episode.hooks, key=lambda h: (order.get(h, len(order)), _natural_key(h)))
    return hooks + [attention_feature(layer) for layer in episode.layers]


def match_features(patterns: Sequence[str], available: Sequence[str]) -> list[str]:
    """Available names matching any pattern (fnmatch wildcards), in the run's order; KeyError if one matches none."""
    out = []
    for pattern in patterns:
        matches = [n for n in available if fnmatch.fnmatchcase(n, pattern)]
        if not matches:
            raise KeyError(f"hook {pattern!r} matches nothing recorded in this run; it has {list(available)}")
        out += [m for m in matches if m not in out]
    return [n for n in available if n in out]


def load_features(
    episodes: Sequence[Episode], feature: str, rows: Sequence[np.ndarray], block_steps: int = 4096
) -> np.ndarray:
    """The rows `rows[i]` (sorted step indices) of episode i's array for `feature`, flattened to (n, d) float16."""
    parts = []
    bar = tqdm(total=sum(len(r) for r in rows), unit="step", desc=f"reading {feature}", leave=False)
    for i, start, block in iter_blocks(list(episodes), lambda e: feature_array(e, feature), block_steps):
        r = rows[i]
        take = r[(r >= start) & (r < start + len(block))] - start
        if len(take):
            parts.append(np.asarray(block[take], np.float16).reshape(len(take), -1))
            bar.update(len(take))
    bar.close()
    d = int(np.prod(feature_array(episodes[0], feature).shape[1:]))
    return np.concatenate(parts) if parts else np.zeros((0, d), np.float16)


# ---------------------------------------------------------------- checks


def _check(cfg: ProbeConfig, run: Run) -> tuple[list[Episode], list[str], str | None]:
    """Every check that needs the run but no work. Returns (episodes, probed hooks, CNN baseline hook or None)."""
    episodes = run.episodes()
    if len(episodes) < 2:
        raise ValueError(f"{cfg.run}: {len(episodes)} complete episode(s); probes split by episode and need at least 2")
    available = available_features(episodes[0])
    for ep in episodes[1:]:
        missing = set(available) - set(available_features(ep))
        if missing:
            raise ValueError(f"{ep.path} lacks {sorted(missing)} that {episodes[0].path} has; probe a uniform run")
    features = match_features(cfg.hooks, available)
    cnn = cfg.baseline_hook if cfg.baseline_hook in available else None
    if cfg.baseline_hook is not None and cnn is None:
        logger.warning("baseline hook %s was not recorded in %s: no CNN baseline", cfg.baseline_hook, cfg.run)
    return episodes, features, cnn


def _check_label(label: Label, values: np.ndarray, valid: np.ndarray, episode_of: np.ndarray) -> str | None:
    """Why the label cannot be probed in this run, or None."""
    n_eps = len(np.unique(episode_of[valid]))
    if n_eps < 2:
        return f"defined in {n_eps} episode(s); episode-split cross-validation needs at least 2"
    v = values[valid]
    if label.kind == "binary" and len(np.unique(v)) < 2:
        return f"one class only ({int(v[0])}) over its {len(v)} steps"
    if label.kind == "binary":  # a class seen in one episode is never both trained on and tested
        for c in (0, 1):
            n_c = len(np.unique(episode_of[valid][v == c]))
            if n_c < 2:
                return f"class {c} occurs in {n_c} episode only; episode-split cross-validation needs it in 2 or more"
    if label.kind == "regression" and np.ptp(v) == 0:
        return f"constant ({v[0]}) over its {len(v)} steps"
    return None


# ---------------------------------------------------------------- compute


@dataclass
class ProbeResult:
    """What `compute` finds; `main` renders it."""

    episodes: list[Episode]
    features: list[str]
    """The hooks asked for, in the run's order."""
    probed: list[str]
    """`features` and the CNN baseline hook."""
    labels: dict[str, dict]
    """Per probed label: its description, step counts, and per hook the folds, summary and pooled metrics."""
    skipped: dict[str, str]
    """Labels that could not be probed, with the reason."""
    split: dict
    n_steps_used: int
    targets: dict[str, tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]
    directions: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    """(label, hook) -> the probe's weights on the raw activations, fitted on every row (what steering adds)."""
    """Per label: (true values, fold of each value, out-of-fold predictions per hook), for the figures."""


def compute(cfg: ProbeConfig, run: Run | None = None) -> ProbeResult:
    """Probe every (label, hook) with episode-split cross-validation. Writes nothing."""
    episodes, features, cnn = _check(cfg, Run.open(cfg.run) if run is None else run)
    probed = features + ([cnn] if cnn is not None and cnn not in features else [])

    # labels: cheap, computed first so that a label that cannot be probed is known before any activation is read
    lengths = [len(ep) for ep in episodes]
    episode_of = np.repeat(np.arange(len(episodes)), lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    labels = [get_label(n) for n in cfg.labels]
    skipped = {}
    for label in labels:
        absent = [a for ep in episodes for a in label.reads.missing(ep)]
        if absent:
            skipped[label.name] = (
                f"not recorded in this run (no array {absent[0]}; record again with a current vpt-lens)"
            )
            logger.warning("label %s skipped: %s", label.name, skipped[label.name])
    labels = [lab for lab in labels if lab.name not in skipped]
    parts = {label.name: [] for label in labels}
    for ep in tqdm(episodes, desc="labels", unit="episode", leave=False):
        src = LabelSource(ep)  # parsed JSON is cached per episode only: memory stays at one episode's rows
        for label in labels:
            parts[label.name].append(compute_label(label, src))
    values = {name: np.concatenate([p[0] for p in ps]) for name, ps in parts.items()}
    valid = {name: np.concatenate([p[1] for p in ps]) for name, ps in parts.items()}
    for label in labels:
        reason = _check_label(label, values[label.name], valid[label.name], episode_of)
        if reason is not None:
            skipped[label.name] = reason
            logger.warning("label %s skipped: %s", label.name, reason)
    labels = [lab for lab in labels if lab.name not in skipped]
    if not labels:
        raise ValueError(f"no label can be probed in {cfg.run}: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))

    # the steps used: where some label is defined, subsampled to max_steps
    keep = np.flatnonzero(np.any([valid[lab.name] for lab in labels], axis=0))
    if len(keep) > cfg.max_steps:
        logger.info("using a seeded subsample of %d of the %d labelled steps", cfg.max_steps, len(keep))
        keep = np.sort(np.random.default_rng(cfg.seed).choice(keep, cfg.max_steps, replace=False))
    rows = [keep[(keep >= offsets[i]) & (keep < offsets[i + 1])] - offsets[i] for i in range(len(episodes))]
    fold_by_ep = episode_folds(lengths, cfg.n_folds, cfg.seed)
    folds_kept = fold_by_ep[episode_of[keep]]

    results = {}
    oof: dict[str, dict[str, np.ndarray]] = {lab.name: {} for lab in labels}
    directions: dict[tuple[str, str], np.ndarray] = {}
    for label in labels:
        sel = valid[label.name][keep]
        y = values[label.name][keep][sel]
        stats = {"class_counts": {"0": int((y == 0).sum()), "1": int((y == 1).sum())}} if label.kind == "binary" else {
            "mean": float(y.mean()), "sd": float(y.std())}  # fmt: skip
        results[label.name] = {
            **label.to_dict(), "n_steps": int(sel.sum()), "n_episodes": int(len(np.unique(episode_of[keep][sel]))),
            "n_folds": int(len(np.unique(folds_kept[sel]))), "label_stats": stats, "hooks": features,
            "cnn_baseline": cnn, "probes": {},
        }  # fmt: skip
    for feature in probed:
        t_feature = time.time()
        X_all = torch.from_numpy(load_features(episodes, feature, rows, cfg.block_steps)).to(cfg.device)
        for label in labels:
            sel = valid[label.name][keep]
            idx = torch.from_numpy(np.flatnonzero(sel)).to(cfg.device)
            cv = cross_validate(X_all[idx], values[label.name][keep][sel], folds_kept[sel], label.kind, cfg.l2,
                                cfg.balance_classes, cfg.max_iter)  # fmt: skip
            oof[label.name][feature] = cv.pop("oof")
            directions[(label.name, feature)] = cv.pop("direction")
            baseline = cv.pop("baseline")
            results[label.name].setdefault("baseline", baseline)
            results[label.name]["probes"][feature] = {"n_features": int(X_all.shape[1]), **cv}
            metric = PRIMARY_METRIC[label.kind]
            s = cv["summary"][metric]
            logger.info("%s <- %s: %s %.3f [%.3f, %.3f] over %d folds", label.name, feature, metric, s["mean"],
                        s["ci95"][0], s["ci95"][1], s["n_folds"])  # fmt: skip
        logger.info("%s: %d steps x %d features probed in %.1f s", feature, *X_all.shape, time.time() - t_feature)
        del X_all

    targets = {}
    for label in labels:
        res = results[label.name]
        metric = PRIMARY_METRIC[label.kind]
        scores = {h: res["probes"][h]["summary"][metric]["mean"] for h in features}
        finite = {h: s for h, s in scores.items() if np.isfinite(s)}
        res["best_hook"] = max(finite, key=finite.get) if finite else features[0]
        sel = valid[label.name][keep]
        targets[label.name] = (values[label.name][keep][sel], folds_kept[sel], oof[label.name])

    split = {
        "scheme": "leave-one-episode-out" if len(episodes) <= cfg.n_folds else "group k-fold by episode",
        "n_folds": len(np.unique(fold_by_ep)),
        "seed": cfg.seed,
        "episodes": [
            {"path": str(ep.path), "n_steps": len(ep), "n_used": len(r), "fold": int(f)}
            for ep, r, f in zip(episodes, rows, fold_by_ep)
        ],
    }
    return ProbeResult(episodes, features, probed, results, skipped, split, int(len(keep)), targets, directions)


# ---------------------------------------------------------------- the report


ONE_CLASS = report.Null("only one class in the fold")


def _one_class_nulls(rows: list[dict]) -> list[dict]:
    """Fold rows with an undefined AUROC (one class in the test fold) marked with the reason."""
    return [{**r, "auroc": ONE_CLASS} if "auroc" in r and not np.isfinite(r["auroc"]) else r for r in rows]


def to_json(result: ProbeResult, cfg: ProbeConfig, run: Run, seconds: float) -> dict:
    """probe.json: provenance at the top level (as earlier versions wrote it), the split, and per label the results."""
    labels = {}
    for name, res in result.labels.items():
        res = dict(res)
        if res["kind"] == "binary":
            probes = {h: {**p, "folds": _one_class_nulls(p["folds"])} for h, p in res["probes"].items()}
            res.update(probes=probes, baseline={**res["baseline"], "folds": _one_class_nulls(res["baseline"]["folds"])})
        labels[name] = res
    manifest = run.manifest
    return {
        "schema": "vptlens.probe",
        "schema_version": 1,
        **schema.provenance(
            cfg,
            run=run,
            run_path=Path(cfg.run).resolve(),
            run_git_commit=None if manifest is None else manifest.git_commit,
        ),
        "split": result.split,
        "n_steps_used": result.n_steps_used,
        "features": result.probed,
        "labels": labels,
        "skipped_labels": result.skipped,
        "seconds": seconds,
    }


def main(cfg: ProbeConfig) -> dict:
    """Probe every (label, hook) with episode-split cross-validation; write probe.json and the plots to cfg.out.

    With --list-labels, print the labels and return {}."""
    if cfg.list_labels:
        print(describe_labels())
        return {}
    t0 = time.time()
    report.check_out_dir(cfg.out, cfg.overwrite)
    run = Run.open(cfg.run)
    result = compute(cfg, run)
    out = report.make_out_dir(cfg.out, cfg.overwrite)
    for name, res in result.labels.items():
        y, folds, oof = result.targets[name]
        files = [f"{name}_metrics.png"]
        plots.plot_metrics(name, res, out / files[0])
        if res["kind"] == "binary":
            files.append(f"{name}_roc.png")
            plots.plot_roc(name, res, y, folds, oof, out / files[-1])
        else:
            files.append(f"{name}_scatter.png")
            plots.plot_scatter(name, res, y, oof, out / files[-1], cfg.seed)
        res["plots"] = files
    (out / "directions").mkdir()
    for (label, feature), w in result.directions.items():
        if parse_feature(feature)[0] == "attention":
            continue  # attention patterns are not activations one can steer
        norm = float(np.linalg.norm(w))
        if norm > 0:  # unit vector along the probe's weights: `kind: steering, vector_path: ...`
            np.save(out / "directions" / f"{label}__{feature}.npy", (w / norm).astype(np.float32))
            result.labels[label]["probes"][feature]["direction_file"] = f"directions/{label}__{feature}.npy"
    doc = to_json(result, cfg, run, time.time() - t0)
    report.write_json(out / "probe.json", doc)
    logger.info("probes written to %s in %.1f s", out, time.time() - t0)
    return report.strict_json(doc)
