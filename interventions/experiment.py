"""`vptlens experiment run SPEC --out DIR` and `vptlens experiment report DIR`: the commands, thin over the API.

`run` validates everything first (the spec, every edit against every agent, the output
directory: all problems at once, before any episode), records every cell (resuming a killed
run), then analyses the outcomes (`interventions.analysis`): results.csv, results.json,
report.html. `report` redoes the analysis of a recorded experiment (e.g. with other metrics).
"""

from dataclasses import dataclass
from pathlib import Path

import tyro

from vptlens.interventions.spec import ExperimentSpec, load_spec


@dataclass(frozen=True)
class RunConfig:
    """Run an experiment: every cell of its grid (agents x scenes x edits) over the same seeds, then its statistics."""

    spec: tyro.conf.Positional[str]
    """A spec file (YAML or JSON), or a built-in spec's name (villager_study)."""
    out: Path = Path("experiment")
    """The experiment directory: one run per cell, results.csv, results.json, report.html."""
    model: Path | None = None
    """Replace the spec's agents by this agent's .model file (with --weights)."""
    weights: Path | None = None
    """Replace the spec's agents by this agent's .weights file (with --model)."""
    n_seeds: int | None = None
    """Replace the spec's number of episodes per cell."""
    n_steps: int | None = None
    """Replace the spec's steps per episode."""
    workers: int = 1
    """Cells recorded in parallel: local processes (or Ray tasks with --ray)."""
    ray: bool = False
    """Run the cells as Ray tasks on a local Ray cluster (pip install 'vpt-lens[ray]')."""
    ray_address: str | None = None
    """Join an existing Ray cluster at this address instead."""
    device: str = "cpu"
    """Torch device of the policies."""
    overwrite: bool = False
    """Replace --out if it holds another experiment (the same experiment is resumed)."""

    def __post_init__(self):
        if (self.model is None) != (self.weights is None):
            raise ValueError("give --model and --weights together (they replace the spec's agents)")
        if self.workers < 1:
            raise ValueError(f"--workers {self.workers}: give at least 1")
        for name in ("n_seeds", "n_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} {value}: give at least 1")


def resolve_spec(cfg: RunConfig) -> tuple[ExperimentSpec, Path]:
    """The spec with the command line's overrides; and the directory its relative paths start from."""
    spec = load_spec(cfg.spec)
    path = Path(cfg.spec)
    base = path.parent if path.is_file() else Path(__file__).parent / "specs"
    raw = dict(spec.raw)
    if cfg.model is not None:
        agent = {"name": cfg.model.stem, "model": str(cfg.model.resolve()), "weights": str(cfg.weights.resolve())}
        raw["agents"] = [agent]
    if cfg.n_seeds is not None:
        raw["seeds"] = {**(raw.get("seeds") or {}), "count": cfg.n_seeds}
    if cfg.n_steps is not None:
        raw["n_steps"] = cfg.n_steps
    if raw != spec.raw:
        from vptlens.interventions.spec import spec_from_dict

        spec = spec_from_dict(raw, base, str(cfg.spec))
    return spec, base


def run(cfg: RunConfig) -> dict:
    from vptlens.interventions.analysis import analyse
    from vptlens.interventions.runner import run_experiment

    spec, base = resolve_spec(cfg)
    run_experiment(
        spec, cfg.out, spec_base=base, workers=cfg.workers, use_ray=cfg.ray, ray_address=cfg.ray_address,
        device=cfg.device, overwrite=cfg.overwrite,
    )  # fmt: skip
    result = analyse(cfg.out)
    print(result.text)
    return result.to_json()


@dataclass(frozen=True)
class ReportConfig:
    """Analyse a recorded experiment again: outcomes, statistics against the control, report.html."""

    experiment: tyro.conf.Positional[Path]
    """The --out of `vptlens experiment run`."""


def report(cfg: ReportConfig) -> dict:
    from vptlens.interventions.analysis import analyse

    result = analyse(cfg.experiment)
    print(result.text)
    return result.to_json()
