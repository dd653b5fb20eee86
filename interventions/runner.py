"""Run an experiment: every cell of the grid recorded as a normal run, in parallel, resumable.

Layout of an experiment directory:

    OUT/experiment.json        the spec as read, its provenance, the cells and their levels
    OUT/scenes/<name>.yaml     every scene level as applied (templates filled in)
    OUT/cells/cell_000/        one normal run per cell (run.json + episode_*.zarr): every analysis reads it
    OUT/results.csv, results.json, report.html   (interventions.analysis)

A cell's episodes use seeds start..start+count-1, whatever cell or worker records them, so
outcomes do not depend on the number of workers, and a killed experiment resumes: each cell's
run keeps its complete episodes and records the rest from their seeds (`vptlens record --resume`).
Workers are local processes (spawned, one torch thread and one numba thread each: on shared
cores that was ~4x faster than two threads each), or Ray tasks with `ray=True`.
"""

import importlib.util
import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from vptlens.envs.workers import WORKER_ENV, init_worker, worker_environment
from vptlens.interventions.controls import ReplayActions
from vptlens.interventions.spec import Cell, ExperimentSpec, SpecError, spec_from_dict
from vptlens.probes.report import write_json
from vptlens.recordings.run_agent import agent_files
from vptlens.recordings.schema import provenance

logger = logging.getLogger(__name__)

EXPERIMENT_FILE = "experiment.json"


@dataclass(frozen=True)
class CellRun:
    """What recording one cell gave: its directory and the recorder's summary."""

    index: int
    path: Path
    complete: int
    steps: int
    seconds: float


def check_edits(spec: ExperimentSpec, device: str = "cpu") -> None:
    """Every edit against every agent (a head, hook or latent the agent does not have...), all problems at once,
    before any episode runs."""
    from vptlens.agents import load_policy

    problems = []
    for agent in spec.agents:
        if not agent.is_policy:
            problems += [
                f"edit {level.name} on agent {agent.name}: a scripted or blind agent has no activations to edit; "
                "give it only edits of kind none (split the experiment, or drop the edit)"
                for level in spec.edits
                if level.make().kind != "none"
            ]
            continue
        policy = load_policy(*agent_files(agent), device=device)
        if policy.cfg.is_goal_conditioned and not agent.has_goal:
            problems.append(f"agent {agent.name}: a STEVE-1 policy needs a goal: prompt, goal_video or goal (.npy)")
        elif agent.has_goal and not policy.cfg.is_goal_conditioned:
            problems.append(f"agent {agent.name}: a VPT policy takes no goal; drop prompt, goal_video and goal")
        for level in spec.edits:
            problems += [f"edit {level.name} on agent {agent.name}: {p}" for p in level.make().validate(policy)]
        for hook in spec.hooks:
            if not policy.select_hooks(hook):
                problems.append(f"hooks: {hook!r} matches no hook of agent {agent.name}; `vptlens info` lists them")
    if problems:
        raise SpecError("the experiment", problems)


def record_cell(task: dict) -> CellRun:
    """Record one cell (in a worker process or a Ray task): its episodes, resumed if some are there already."""
    from vptlens.agents import load_policy
    from vptlens.recordings.recorder import RecordConfig, Recorder

    spec = spec_from_dict(task["spec"], Path(task["base_dir"]))
    cell: Cell = spec.cells()[task["cell"]]
    out = Path(task["out"]) / "cells" / cell.dir_name
    common = dict(
        out=out,
        env=spec.env,
        scene=task["scene_file"],
        n_episodes=spec.n_seeds,
        n_steps=spec.n_steps,
        seed=spec.seed_start,
        resume=(out / "run.json").exists(),
    )
    if cell.agent.scripted is not None:  # the edit is `none` (check_edits): the agent as it is
        from vptlens.training.demos import expert_actor

        cfg = RecordConfig(scripted=cell.agent.scripted, n_envs=min(spec.n_envs, spec.n_seeds), hooks=(), **common)
        recorder = Recorder(cfg, actor=expert_actor)
    elif cell.agent.blind is not None:
        source = spec.blind_source(cell)
        name = f"blind replay of {source.agent.name} in {source.scene.name}"
        cfg = RecordConfig(scripted=name, n_envs=min(spec.n_envs, spec.n_seeds), hooks=(), **common)
        recorder = Recorder(cfg, actor=ReplayActions.factory(Path(task["out"]) / "cells" / source.dir_name))
    else:
        model, weights = agent_files(cell.agent)
        policy = load_policy(model, weights, device=task["device"])
        edit = cell.edit.make()
        hooks = edit.hooks(policy)
        cfg = RecordConfig(
            model=model,
            weights=weights,
            n_envs=1 if edit.kind == "patch" else min(spec.n_envs, spec.n_seeds),  # a patch counts steps of one env
            hooks=spec.hooks,
            prompt=cell.agent.prompt,
            goal_video=cell.agent.goal_video,
            goal=cell.agent.goal,
            goal_seed=cell.agent.goal_seed,
            mineclip=cell.agent.mineclip,
            prior=cell.agent.prior,
            checkpoint_dir=cell.agent.checkpoint_dir,
            cond_scale=cell.agent.cond_scale,
            device=task["device"],
            **common,
        )
        recorder = Recorder(cfg, policy, fwd_hooks=hooks, intervention=edit.to_dict() if hooks else None)
    start = time.perf_counter()
    summary = recorder.run()
    if recorder.interrupted:
        raise KeyboardInterrupt
    return CellRun(cell.index, out, summary["complete"], summary["steps"], time.perf_counter() - start)


def prepare(spec: ExperimentSpec, spec_base: Path, out: Path, overwrite: bool) -> bool:
    """Check the output directory; returns whether an earlier run of the same experiment is resumed."""
    manifest = out / EXPERIMENT_FILE
    if manifest.is_file():
        import json

        saved = json.loads(manifest.read_text())
        if saved.get("spec") == spec.raw and saved.get("spec_base") == str(spec_base.resolve()):
            return not overwrite
        if not overwrite:
            raise FileExistsError(
                f"{out} holds another experiment (its spec differs); pass --overwrite to replace it, or a new --out"
            )
    elif out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"--out {out} exists and is not an experiment; pass --overwrite or a new --out")
    return False


def run_experiment(
    spec: ExperimentSpec,
    out: str | Path,
    *,
    spec_base: Path | None = None,
    workers: int = 1,
    use_ray: bool = False,
    ray_address: str | None = None,
    device: str = "cpu",
    overwrite: bool = False,
) -> list[CellRun]:
    """Record every cell of `spec` into `out` (see the module's docstring); returns what each cell recorded."""
    out = Path(out)
    spec_base = spec.base_dir if spec_base is None else Path(spec_base)
    check_edits(spec, device)
    if (use_ray or ray_address) and importlib.util.find_spec("ray") is None:
        raise ImportError("Ray is not installed: pip install 'vpt-lens[ray]' (or run without --ray)")
    resumed = prepare(spec, spec_base, out, overwrite)
    if overwrite and out.exists() and not resumed:
        import shutil

        shutil.rmtree(out)
    (out / "scenes").mkdir(parents=True, exist_ok=True)
    scene_files = {}
    for level in spec.scenes:
        path = out / "scenes" / f"{level.name}.yaml"
        level.resolve().save(path)
        scene_files[level.name] = str(path.resolve())
    cells = spec.cells()
    write_json(
        out / EXPERIMENT_FILE,
        {
            "spec": spec.raw,
            "spec_base": str(spec_base.resolve()),
            "provenance": provenance({"workers": workers, "ray": use_ray, "device": device}),
            "cells": [{"index": c.index, "dir": f"cells/{c.dir_name}", **c.levels} for c in cells],
            "control": {f: spec.control_level(f) for f in ("agent", "scene", "edit")},
            "seeds": spec.seeds,
        },
    )
    tasks = [
        {
            "spec": spec.raw,
            "base_dir": str(spec_base.resolve()),
            "cell": c.index,
            "out": str(out.resolve()),
            "scene_file": scene_files[c.scene.name],
            "device": device,
        }
        for c in cells
    ]
    logger.info("%s: %d cells x %d episodes, %d worker(s)%s", spec.name, len(cells), spec.n_seeds, workers,
                " (resuming)" if resumed else "")  # fmt: skip
    # blind controls replay what the others recorded: they run in a second wave
    blind = [c.agent.blind is not None for c in cells]
    waves = [[t for t, b in zip(tasks, blind) if not b], [t for t, b in zip(tasks, blind) if b]]
    runs = []
    for wave in filter(None, waves):
        runs += _run_wave(wave, workers, use_ray, ray_address)
    return sorted(runs, key=lambda r: r.index)


def _run_wave(tasks: list[dict], workers: int, use_ray: bool, ray_address: str | None) -> list[CellRun]:
    if use_ray or ray_address:
        return _run_ray(tasks, workers, ray_address)
    if workers <= 1:
        return [record_cell(t) for t in tasks]
    context = multiprocessing.get_context("spawn")
    with (
        worker_environment(),
        ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=init_worker) as pool,
    ):
        return list(pool.map(record_cell, tasks))


def _run_ray(tasks: list[dict], workers: int, address: str | None) -> list[CellRun]:
    import ray

    if not ray.is_initialized():
        runtime_env = {"env_vars": WORKER_ENV}
        ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                 runtime_env=runtime_env)  # fmt: skip
    remote = ray.remote(num_cpus=1)(_ray_record_cell)
    return ray.get([remote.remote(t) for t in tasks])


def _ray_record_cell(task: dict) -> CellRun:
    init_worker()
    return record_cell(task)
