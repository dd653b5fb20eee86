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
    agent: tuple[str, ...] = ()
    """Replace the network of the spec's agents by name, each NAME=ZOO (a zoo name) or NAME=STEM (STEM.model and
    STEM.weights), e.g. `--agent organism=blockworld-chopper-64`; their other settings and their blind controls stay."""
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
        if self.agent and self.model is not None:
            raise ValueError("give --model/--weights (every agent) or --agent (agents by name), not both")
        for item in self.agent:
            name, _, network = item.partition("=")
            if not name or not network:
                raise ValueError(f"--agent {item!r}: give NAME=ZOO or NAME=STEM, e.g. organism=blockworld-chopper-64")
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
    if cfg.agent:
        raw["agents"] = replace_networks(spec, dict(item.partition("=")[::2] for item in cfg.agent))
    if cfg.n_seeds is not None:
        raw["seeds"] = {**(raw.get("seeds") or {}), "count": cfg.n_seeds}
    if cfg.n_steps is not None:
        raw["n_steps"] = cfg.n_steps
    if raw != spec.raw:
        from vptlens.interventions.spec import spec_from_dict

        spec = spec_from_dict(raw, base, str(cfg.spec))
    return spec, base


def replace_networks(spec: ExperimentSpec, networks: dict[str, str]) -> list[dict]:
    """The spec's raw agents with the network of each named one replaced: by a zoo entry, or by a checkpoint's
    STEM.model + STEM.weights (absolute paths). Scripted agents and blind controls have no network to replace."""
    from vptlens.agents.zoo import ZOO

    agents = {a.name: a for a in spec.agents}
    unknown = sorted(set(networks) - set(agents))
    if unknown:
        names = ", ".join(agents)
        raise ValueError(f"--agent {', '.join(unknown)}: no such agent in {spec.name} (its agents: {names})")
    raw_agents = []
    for raw in spec.raw["agents"]:
        name = raw["name"]
        if name not in networks:
            raw_agents.append(raw)
            continue
        if not agents[name].is_policy:
            raise ValueError(f"--agent {name}: a scripted agent or a blind control has no network to replace")
        network = networks[name]
        source: dict[str, str] = {"zoo": network}
        if network not in ZOO:
            stem = Path(network).with_suffix("") if Path(network).suffix in (".model", ".weights") else Path(network)
            model, weights = (stem.with_name(stem.name + suffix) for suffix in (".model", ".weights"))
            if not (model.is_file() and weights.is_file()):
                raise FileNotFoundError(
                    f"--agent {name}={network}: neither a zoo name (`vptlens zoo`) nor a checkpoint "
                    f"({model.name} and {weights.name} side by side)"
                )
            source = {"model": str(model.resolve()), "weights": str(weights.resolve())}
        kept = {k: v for k, v in raw.items() if k not in ("zoo", "model", "weights")}
        raw_agents.append({**kept, **source})
    return raw_agents


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
