"""Steering from the player: an edit (ablate heads, clamp / scale an SAE latent, steer along a latent's decoder row)
applied from a chosen step, open-loop and closed-loop.

- Open loop: the episode is replayed (`EpisodeReplayer`, checked against the recording) up to the step; from
  there two batch rows run side by side on the recorded frames, row 0 clean and row 1 edited
  (`interventions.open_loop.only_rows`), for the next steps. The edit enters row 1's memory, so its effect
  accumulates; the frames stay the recorded ones. Per step: each key's probability in both rows
  (`viewer.actions`) and the KL of each head.
- Closed loop: a BlockWorld experiment through the intervention suite's API (`spec_from_dict`,
  `run_experiment`, `analyse`): the episode's agent, scene and seed, with and without the edit, recorded in a
  separate process into the server's work directory, then served like any experiment.

Edits come from the page as `edits.edit_from_dict` mappings whose SAE is named by its served id (`"sae": "s0"`),
never by a path.
"""

import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import yaml

from vptlens.interventions.edit_ops import Edit
from vptlens.interventions.edits import edit_from_dict
from vptlens.interventions.open_loop import only_rows
from vptlens.probes.sae.model import CFG_NAME
from vptlens.probes.sae.splice import kl_divergence
from vptlens.recordings.store import Episode
from vptlens.viewer.actions import LABELS, key_probabilities
from vptlens.viewer.jobs import Job
from vptlens.viewer.policies import Policies, make_replayer
from vptlens.viewer.registry import Registry

MAX_STEPS = 256
"""Most steps an open-loop request replays after its start (the page asks for fewer)."""
MAX_CLOSED_LOOP_STEPS = 2000
KINDS = ("head_ablation", "latent_clamp", "steering")
"""Edits the page can make (the others need files the page cannot name: head means, profiles, source episodes)."""


def make_edit(spec: dict, registry: Registry) -> Edit:
    """An `Edit` from the page's mapping; `sae` (a served SAE id) becomes the SAE's directory, and a steering edit
    reads at the SAE's hook."""
    if not isinstance(spec, dict):
        raise ValueError('give the edit as a mapping, e.g. {"kind": "head_ablation", "heads": ["1.0"]}')
    spec = dict(spec)
    if spec.get("kind") not in KINDS:
        raise ValueError(f"edit kind {spec.get('kind')!r}: the viewer makes {', '.join(KINDS)}")
    if spec["kind"] != "head_ablation":
        if "sae" not in spec:
            raise ValueError(f'a {spec["kind"]} edit names its SAE by id ("sae": "s0")')
        sae_dir = registry.sae(str(spec.pop("sae"))).path
        spec["sae_dir"] = str(sae_dir)
        if spec["kind"] == "steering":
            spec["hook"] = json.loads((sae_dir / CFG_NAME).read_text())["hook_name"]
    return edit_from_dict(spec)


def open_loop(episode: Episode, policies: Policies, edit: Edit, start: int, n_steps: int) -> dict:
    """Clean and edited per-key probabilities at steps start..start+n_steps-1, the edit applied from `start`."""
    if not 0 <= start < len(episode):
        raise ValueError(f"start step {start} out of range: the episode has {len(episode)} steps")
    if not 1 <= n_steps <= MAX_STEPS:
        raise ValueError(f"n_steps {n_steps}: give 1..{MAX_STEPS}")
    stop = min(len(episode), start + n_steps)
    policy, lock = policies.get(episode)
    clean, edited, kl_b, kl_c = [], [], [], []
    with lock, torch.no_grad():
        replayer = make_replayer(episode, policy)
        hooks = only_rows(edit.hooks(policy))
        ((_, state),) = replayer.states([start])
        for t in range(start, stop):
            out, state = replayer.step(t, state, rows=2, fwd_hooks=hooks)
            replayer.check(out, t, t + 1, row=0)
            p = key_probabilities(out.buttons_logits, out.camera_logits)  # (2, labels)
            clean.append(p[0])
            edited.append(p[1])
            kl_b.append(float(kl_divergence(out.buttons_logits[0], out.buttons_logits[1])))
            kl_c.append(float(kl_divergence(out.camera_logits[0], out.camera_logits[1])))
    rounded = lambda rows: np.round(np.asarray(rows), 5).tolist()
    return {
        "start": start,
        "steps": list(range(start, stop)),
        "labels": list(LABELS),
        "edit": edit.describe(),
        "clean": rounded(clean),
        "edited": rounded(edited),
        "kl_buttons": np.round(kl_b, 6).tolist(),
        "kl_camera": np.round(kl_c, 6).tolist(),
        "replay_max_abs_logprob_error": replayer.max_error,
    }


# ------------------------------------------------------------------------------------------------ closed loop


def closed_loop_spec(episode: Episode, policies: Policies, edit: Edit, n_steps: int, job_dir: Path) -> dict:
    """An experiment spec: the episode's agent, env, scene and seed; two edit levels, none (the control) and
    `edit`. Files it needs (the scene, a STEVE-1 goal) are written into `job_dir`."""
    meta = episode.meta
    if meta.env.id != "blockworld":
        raise ValueError(f"{episode.path.name} ran in {meta.env.id}; closed-loop launches run BlockWorld episodes")
    if not 1 <= n_steps <= MAX_CLOSED_LOOP_STEPS:
        raise ValueError(f"n_steps {n_steps}: give 1..{MAX_CLOSED_LOOP_STEPS}")
    model, weights = policies.files(episode)
    agent = {"name": "agent", "model": str(model), "weights": str(weights)}
    job_dir.mkdir(parents=True, exist_ok=True)
    if meta.goal is not None:
        np.save(job_dir / "goal.npy", np.asarray(meta.goal, np.float32))
        agent["goal"] = str(job_dir / "goal.npy")
    if meta.cond_scale is not None:
        agent["cond_scale"] = meta.cond_scale
    scene = meta.scene or {"name": "no_scene", "description": "no scene edits", "edits": []}
    scene_file = job_dir / "scene.yaml"
    scene_file.write_text(yaml.safe_dump(scene, sort_keys=False))
    return {
        "name": f"closed_loop_{episode.path.stem}",
        "description": f"{edit.describe()} against no edit, from {episode.path.name} (seed {meta.seed})",
        "agents": [agent],
        "env": {"kind": "blockworld", **meta.env.settings},
        "scenes": [{"name": str(scene.get("name") or "scene"), "scene": str(scene_file)}],
        "edits": [{"name": "none", "kind": "none"}, {"name": "edit", **edit.to_dict()}],
        "control": {"edit": "none"},
        "seeds": {"start": int(meta.seed), "count": 1},
        "n_steps": n_steps,
        "n_envs": 1,
    }


def run_closed_loop(spec: dict, base_dir: str, out: str) -> None:
    """Record and analyse the experiment (in a worker process: the server stays responsive)."""
    from vptlens.interventions import analyse, run_experiment, spec_from_dict

    torch.set_num_threads(1)
    run_experiment(spec_from_dict(spec, Path(base_dir)), out, workers=1)
    analyse(out)


def closed_loop_job(spec: dict, job_dir: Path, registry: Registry, job: Job) -> dict:
    """Run `run_closed_loop` in a spawned process, reporting the cells' recorded steps as progress; then serve the
    experiment it wrote."""
    out = job_dir / "experiment"
    total = 2 * spec["n_steps"]
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        future = pool.submit(run_closed_loop, spec, str(job_dir), str(out))
        while not future.done():
            time.sleep(0.5)
            steps = 0
            for path in out.glob("cells/*/episode_*.zarr"):
                try:
                    steps += len(Episode(path))
                except (OSError, ValueError):
                    continue
            job.progress = 0.95 * min(1.0, steps / total)
            job.message = f"recorded {steps} of {total} steps" if steps < total else "analysing"
        future.result()
    registry.add(job_dir)
    experiment = next(x for x in registry.experiments.values() if x.path == out.resolve())
    return {"experiment": experiment.id}
