"""An experiment's outcomes and statistics: per episode metrics, per cell summaries, paired tests against controls.

For every cell and metric: a rate with its Wilson interval (binary), a mean with an episode-level
bootstrap interval (counts, continuous), a Kaplan-Meier curve (time to event). For every cell
that differs from a control cell in one factor (the same seeds in both, so pairs): exact McNemar
with Newcombe's interval of the difference (binary), the paired mean difference with its bootstrap
interval and a Wilcoxon signed-rank p-value (counts, continuous), the log-rank test (time to
event); p-values Holm-corrected within each family (one metric, one factor). Written as
results.csv (tidy: one row per episode and metric), results.json (with provenance) and report.html
(`interventions.report_html`).
"""

import csv
import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.stats

from vptlens.interventions import stats
from vptlens.interventions.metrics import Target, TimeToEvent, compute_metrics, get_metric
from vptlens.interventions.runner import EXPERIMENT_FILE
from vptlens.interventions.spec import FACTORS, Cell, ExperimentSpec, spec_from_dict
from vptlens.probes.report import Null, fmt, write_json
from vptlens.recordings.schema import provenance
from vptlens.recordings.store import Episode, Run

logger = logging.getLogger(__name__)
_fmt = functools.partial(fmt, digits=3)


@dataclass
class CellOutcomes:
    """One cell's episodes and their metric values, by seed."""

    cell: Cell
    path: Path
    episodes: dict[int, Episode]
    values: dict[str, dict[int, object]]
    """metric -> seed -> value."""


@dataclass
class AnalysisResult:
    spec: ExperimentSpec
    out: Path
    cells: list[CellOutcomes]
    summaries: list[dict]
    comparisons: list[dict]
    fractions: list[dict]
    dose_responses: list[dict] = field(default_factory=list)
    open_loop: list[dict] = field(default_factory=list)
    beyond_blind: list[dict] = field(default_factory=list)
    text: str = ""
    files: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "experiment": self.spec.name,
            "summaries": self.summaries,
            "comparisons": self.comparisons,
            "fraction_moving_behaviour": self.fractions,
            "dose_response": self.dose_responses,
            "open_loop": self.open_loop,
            "beyond_blind": self.beyond_blind,
            "files": self.files,
        }


def _value_of(value: object):
    if isinstance(value, TimeToEvent):
        return value.steps
    if isinstance(value, bool):
        return int(value)
    return value


def _jsonable(result) -> dict:
    """A stats result dataclass as a dict, None values with their reasons kept as `Null`s."""
    d = {}
    for key, value in vars(result).items():
        if hasattr(value, "__dataclass_fields__"):
            d[key] = _jsonable(value)
        elif value is None and key in ("estimate", "mean", "low", "high", "p_value", "difference", "median"):
            d[key] = Null(getattr(result, "p_value_reason" if key == "p_value" else "reason", None) or "undefined")
        else:
            d[key] = value
    return d


def load_outcomes(out: Path) -> tuple[ExperimentSpec, list[CellOutcomes]]:
    saved = json.loads((out / EXPERIMENT_FILE).read_text())
    spec = spec_from_dict(saved["spec"], Path(saved["spec_base"]), str(out / EXPERIMENT_FILE))
    target = Target(spec.target_tag)
    cells = []
    for cell in spec.cells():
        path = out / "cells" / cell.dir_name
        episodes = {e.meta.seed: e for e in Run.open(path).episodes()} if (path / "run.json").exists() else {}
        values: dict[str, dict[int, object]] = {m: {} for m in spec.metrics}
        for seed, episode in episodes.items():
            for name, value in compute_metrics(episode, spec.metrics, target).items():
                values[name][seed] = value
        cells.append(CellOutcomes(cell, path, episodes, values))
    return spec, cells


def summarise(spec: ExperimentSpec, outcome: CellOutcomes) -> list[dict]:
    rows = []
    for name in spec.metrics:
        kind = get_metric(name).kind
        values = [outcome.values[name][s] for s in sorted(outcome.values[name])]
        if kind == "binary":
            result = stats.rate(sum(bool(v) for v in values), len(values))
        elif kind == "time_to_event":
            result = stats.kaplan_meier(values)
        else:
            result = stats.bootstrap_mean([None if v is None else float(v) for v in values])
        rows.append({"cell": outcome.cell.index, **outcome.cell.levels, "metric": name, "kind": kind,
                     "n": len(values), "result": _jsonable(result)})  # fmt: skip
    return rows


def compare(spec: ExperimentSpec, treated: CellOutcomes, control: CellOutcomes, factor: str, name: str) -> dict:
    """One metric of `treated` against `control` (one factor apart), paired by seed."""
    kind = get_metric(name).kind
    seeds = sorted(set(treated.values[name]) & set(control.values[name]))
    t = [treated.values[name][s] for s in seeds]
    c = [control.values[name][s] for s in seeds]
    if kind == "binary":
        result = stats.paired_binary([bool(x) for x in t], [bool(x) for x in c])
        effect, low, high, p = result.difference, result.low, result.high, result.p_value
    elif kind == "time_to_event":
        result = stats.log_rank(t, c)
        km_t, km_c = stats.kaplan_meier(t), stats.kaplan_meier(c)
        effect = low = high = None
        p = result.p_value
        result = {"log_rank": _jsonable(result), "treatment": _jsonable(km_t), "control": _jsonable(km_c)}
    else:
        tf = [None if x is None else float(x) for x in t]
        cf = [None if x is None else float(x) for x in c]
        result = stats.bootstrap_paired_difference(tf, cf)
        effect, low, high = result.mean, result.low, result.high
        p = _wilcoxon(tf, cf)
    return {
        "metric": name,
        "kind": kind,
        "factor": factor,
        "cell": treated.cell.index,
        "control_cell": control.cell.index,
        "treatment": treated.cell.levels[factor],
        "control": control.cell.levels[factor],
        **{f"{k}": v for k, v in treated.cell.levels.items() if k != factor},
        "n_pairs": len(seeds),
        "effect": effect,
        "low": low,
        "high": high,
        "p_value": p,
        "detail": result if isinstance(result, dict) else _jsonable(result),
    }


def _wilcoxon(t: list[float | None], c: list[float | None]) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (None when every difference is 0)."""
    diffs = np.array([a - b for a, b in zip(t, c) if a is not None and b is not None])
    if len(diffs) == 0 or np.all(diffs == 0):
        return None
    return float(scipy.stats.wilcoxon(diffs, zero_method="wilcox").pvalue)


def analyse(out: str | Path) -> AnalysisResult:
    """Compute every outcome and statistic of a recorded experiment and write results.csv, results.json and
    report.html into it."""
    out = Path(out)
    if not (out / EXPERIMENT_FILE).is_file():
        raise FileNotFoundError(f"{out}: not an experiment (no {EXPERIMENT_FILE}); pass the --out of `experiment run`")
    spec, cells = load_outcomes(out)
    by_levels = {tuple(sorted(c.cell.levels.items())): c for c in cells}
    summaries = [row for c in cells for row in summarise(spec, c)]
    comparisons = []
    for factor in FACTORS:
        for outcome in cells:
            control_cell = spec.control_of(outcome.cell, factor)
            if control_cell is None:
                continue
            control = by_levels[tuple(sorted(control_cell.levels.items()))]
            comparisons += [compare(spec, outcome, control, factor, name) for name in spec.metrics]
    fractions = []
    for factor in FACTORS:
        for name in spec.metrics:
            family = [row for row in comparisons if row["factor"] == factor and row["metric"] == name]
            if not family:
                continue
            corrected = stats.holm([row["p_value"] for row in family])
            for row, adjusted, reject in zip(family, corrected.adjusted, corrected.reject):
                row["p_holm"], row["significant"] = adjusted, reject
            moved = stats.fraction_significant(list(corrected.adjusted))
            fractions.append({"factor": factor, "metric": name, **_jsonable(moved)})
    result = AnalysisResult(spec, out, cells, summaries, comparisons, fractions, dose_responses(spec, cells))
    result.beyond_blind = beyond_blind(spec, by_levels)
    if spec.open_loop:
        result.open_loop = open_loop_effects(spec, cells)
    result.files = _write(result)
    result.text = _text(result)
    return result


def beyond_blind(spec: ExperimentSpec, by_levels: dict) -> list[dict]:
    """For every input-blind control B of an agent A, every other scene S than the one B replays (S0), and every
    metric but times to event: per seed (A(S) - A(S0)) - (B(S) - B(S0)), the change the scene made in A's
    behaviour beyond what geometry alone made of the same actions; its mean with a BCa interval, Wilcoxon's test,
    and Holm's correction within each metric."""
    rows = []
    reference_scene = {a.name: a.blind_scene or spec.control_level("scene") for a in spec.agents if a.blind}
    for blind in (c for c in spec.cells() if c.agent.blind and c.scene.name == reference_scene[c.agent.name]):
        source = spec.blind_source(blind)
        for scene in spec.scenes:
            if scene.name == source.scene.name:
                continue
            cells = {
                (who, where): by_levels[tuple(sorted({**blind.levels, "agent": who, "scene": where}.items()))]
                for who in (blind.agent.blind, blind.agent.name)
                for where in (scene.name, source.scene.name)
            }
            for name in spec.metrics:
                kind = get_metric(name).kind
                if kind == "time_to_event":
                    continue
                seeds = sorted(set.intersection(*(set(c.values[name]) for c in cells.values())))
                agent_diff = _scene_change(cells, blind.agent.blind, scene.name, source.scene.name, name, seeds)
                blind_diff = _scene_change(cells, blind.agent.name, scene.name, source.scene.name, name, seeds)
                result = stats.bootstrap_paired_difference(agent_diff, blind_diff)
                rows.append({
                    "metric": name, "kind": kind, "agent": blind.agent.blind, "blind": blind.agent.name,
                    "edit": blind.edit.name, "scene": scene.name, "versus_scene": source.scene.name,
                    "n_pairs": len(seeds), "agent_change": _mean(agent_diff), "blind_change": _mean(blind_diff),
                    "effect": result.mean,
                    "low": result.low, "high": result.high, "p_value": _wilcoxon(agent_diff, blind_diff),
                })  # fmt: skip
    for name in spec.metrics:
        family = [row for row in rows if row["metric"] == name]
        if family:
            corrected = stats.holm([row["p_value"] for row in family])
            for row, adjusted in zip(family, corrected.adjusted):
                row["p_holm"] = adjusted
    return rows


def _scene_change(cells: dict, who: str, scene: str, reference: str, name: str, seeds: list[int]) -> list:
    """Per seed, `who`'s metric in `scene` minus in `reference` (None where either is undefined)."""
    out = []
    for seed in seeds:
        a, b = (cells[who, where].values[name][seed] for where in (scene, reference))
        out.append(None if a is None or b is None else float(_value_of(a)) - float(_value_of(b)))
    return out


def _mean(values: list) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def dose_responses(spec: ExperimentSpec, cells: list[CellOutcomes]) -> list[dict]:
    """For every swept edit (`sweep:` in the spec), agent and scene, and every metric but times to event: the
    outcome per strength with its interval, and Spearman's trend test over the episodes."""
    rows = []
    sweeps = {level.sweep: level.sweep_param for level in spec.edits if level.sweep is not None}
    for sweep, param in sweeps.items():
        groups: dict[tuple[str, str], list[CellOutcomes]] = {}
        for outcome in cells:
            if outcome.cell.edit.sweep == sweep:
                groups.setdefault((outcome.cell.agent.name, outcome.cell.scene.name), []).append(outcome)
        for (agent, scene), members in groups.items():
            for name in spec.metrics:
                kind = get_metric(name).kind
                if kind == "time_to_event":
                    continue
                strengths, values = [], []
                for outcome in members:
                    for seed in sorted(outcome.values[name]):
                        strengths.append(outcome.cell.edit.sweep_value)
                        value = outcome.values[name][seed]
                        values.append(None if value is None else float(_value_of(value)))
                result = stats.dose_response(strengths, values, kind)
                rows.append({"sweep": sweep, "param": param, "agent": agent, "scene": scene, "metric": name,
                             "kind": kind, "result": _jsonable(result)})  # fmt: skip
    return rows


OPEN_LOOP_MEASURES = ("d_p_attack", "abs_d_p_attack", "kl_buttons", "kl_camera")


def open_loop_effects(spec: ExperimentSpec, cells: list[CellOutcomes]) -> list[dict]:
    """Every edit applied open-loop to its control cell's recorded episodes (the same agent and scene, no edit):
    per episode the mean over steps of each measure, then the mean over episodes with a bootstrap interval."""
    from vptlens.interventions.open_loop import open_loop_effect
    from vptlens.recordings.replayer import load_recording_policy

    by_levels = {tuple(sorted(c.cell.levels.items())): c for c in cells}
    policies = {}
    rows = []
    for outcome in cells:
        control_cell = spec.control_of(outcome.cell, "edit")
        if control_cell is None or not outcome.cell.agent.is_policy:
            continue  # no edit to measure, or no policy to replay
        control = by_levels[tuple(sorted(control_cell.levels.items()))]
        if control.cell.edit.make().kind != "none" or not control.episodes:
            continue  # open-loop effects are measured on episodes recorded without an edit
        edit = outcome.cell.edit.make()
        per_episode = {m: [] for m in OPEN_LOOP_MEASURES}
        for seed in sorted(control.episodes):
            episode = control.episodes[seed]
            agent = outcome.cell.agent.name
            if agent not in policies:
                policies[agent] = load_recording_policy(episode)
            means = open_loop_effect(episode, edit, policy=policies[agent]).means()
            for m in OPEN_LOOP_MEASURES:
                per_episode[m].append(means[m])
        rows.append({
            "cell": outcome.cell.index, **outcome.cell.levels, "replayed_cell": control.cell.index,
            "n_episodes": len(control.episodes),
            **{m: _jsonable(stats.bootstrap_mean(v)) for m, v in per_episode.items()},
        })  # fmt: skip
    return rows


def _tidy_rows(result: AnalysisResult) -> list[dict]:
    rows = []
    for outcome in result.cells:
        for name in result.spec.metrics:
            kind = get_metric(name).kind
            for seed in sorted(outcome.values[name]):
                value = outcome.values[name][seed]
                rows.append({
                    "experiment": result.spec.name, "cell": outcome.cell.index, **outcome.cell.levels, "seed": seed,
                    "episode": str(outcome.episodes[seed].path.relative_to(result.out)), "metric": name, "kind": kind,
                    "value": "" if value is None else _value_of(value),
                    "observed": int(value.observed) if isinstance(value, TimeToEvent) else "",
                })  # fmt: skip
    return rows


def _write(result: AnalysisResult) -> dict[str, str]:
    from vptlens.interventions.report_html import write_report

    out = result.out
    rows = _tidy_rows(result)
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["experiment"])
        writer.writeheader()
        writer.writerows(rows)
    files = {"csv": "results.csv", "json": "results.json", "html": "report.html"}
    result.files = files
    spec = result.spec
    write_json(
        out / "results.json",
        {
            **result.to_json(),
            "control": {f: spec.control_level(f) for f in FACTORS},
            "seeds": spec.seeds,
            "n_steps": spec.n_steps,
            "provenance": provenance({"experiment": str(out)}, spec=spec.raw),
        },
    )
    write_report(result)
    return files


def _text(result: AnalysisResult) -> str:
    lines = [f"{result.spec.name}: {len(result.cells)} cells x {result.spec.n_seeds} seeds -> {result.out}"]
    for row in result.comparisons:
        lines.append(
            f"  {row['metric']:<22} {row['factor']} {row['treatment']} vs {row['control']}: "
            f"effect {_fmt(row['effect'])}"
            f" [{_fmt(row['low'])}, {_fmt(row['high'])}], p {_fmt(row['p_value'])}, Holm {_fmt(row.get('p_holm'))}"
            f" (n = {row['n_pairs']} pairs)"
        )
    for row in result.beyond_blind:
        lines.append(
            f"  {row['metric']:<22} {row['agent']} in {row['scene']} vs {row['versus_scene']}, beyond its input-blind "
            f"control: {_fmt(row['effect'])} [{_fmt(row['low'])}, {_fmt(row['high'])}], p {_fmt(row['p_value'])}"
            f" (n = {row['n_pairs']} pairs)"
        )
    lines.append(f"  report: {result.out / 'report.html'}")
    return "\n".join(lines)
