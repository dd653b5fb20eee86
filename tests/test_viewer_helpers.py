"""What the viewer's tests serve, built once per test session and shared by the API and browser tests (no tests here).

`served(tiny_run, root)`: the tiny recorded run, an SAE on its `blocks.1.hook_resid_post`, a run of broken episodes
(half-written, a missing frames chunk, an unreadable zarr.json), a two-cell experiment and a short run that keeps
full-resolution frames. `start(app)`: a live
uvicorn server in a thread, as `vptlens serve` runs it.
"""

import functools
import json
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import uvicorn
from conftest import fixture_paths

HOOK = "blocks.1.hook_resid_post"
D_SAE = 48


@dataclass(frozen=True)
class Served:
    root: Path
    run: Path
    sae: Path
    broken: Path
    experiment: Path
    full: Path


def make_sae(path: Path, run: Path) -> Path:
    """A TopK SAE with random weights on the tiny run's hook (its provenance names the run, as training writes)."""
    from vptlens.probes.sae import SAE, SAEConfig

    cfg = SAEConfig(d_in=64, d_sae=D_SAE, architecture="topk", k=4, l1_coefficient=None, hook_name=HOOK)
    SAE(cfg, generator=torch.Generator().manual_seed(0)).save(path, {"run": str(run)})
    return path


def make_broken_run(path: Path, run: Path) -> Path:
    """A run whose episodes are: 0 half-written (status recording, 64 committed steps), 1 missing frames chunk 1
    (steps 64..127), 2 an unreadable zarr.json."""
    path.mkdir(parents=True)
    shutil.copy(run / "run.json", path / "run.json")
    sources = sorted(run.glob("episode_*.zarr"))
    half = shutil.copytree(sources[0], path / "episode_000000.zarr")
    meta = json.loads((half / "zarr.json").read_text())
    meta["attributes"].update(status="recording", committed_length=64)
    (half / "zarr.json").write_text(json.dumps(meta))
    holed = shutil.copytree(sources[1], path / "episode_000001.zarr")
    shutil.rmtree(holed / "frames" / "c" / "1")
    garbage = path / "episode_000002.zarr"
    garbage.mkdir()
    (garbage / "zarr.json").write_text("{this is not json")
    return path


def make_experiment(path: Path) -> Path:
    """Two cells (no edit; layer 1's heads ablated) x 2 seeds x 16 steps of the tiny agent, analysed."""
    from vptlens.interventions import analyse, run_experiment, spec_from_dict

    model, weights = fixture_paths("vpt_tiny")
    spec = {
        "name": "tiny_study",
        "agents": [{"name": "tiny", "model": str(model.resolve()), "weights": str(weights.resolve())}],
        "env": {"kind": "blockworld", "height": 64, "width": 64},
        "scenes": ["villager_under_leaves"],
        "edits": [{"name": "none", "kind": "none"}, {"name": "ablate_L1", "kind": "head_ablation", "heads": ["1.*"]}],
        "seeds": {"start": 0, "count": 2},
        "n_steps": 16,
    }
    run_experiment(spec_from_dict(spec, path.parent), path)
    analyse(path)
    return path


def make_full_run(path: Path) -> Path:
    """One 40-step episode that stores full-resolution frames (`--full-frames`), 72x128: not square, unlike the
    agent's 128x128."""
    from vptlens.envs.blockworld import BlockWorldConfig
    from vptlens.recordings import recorder

    model, weights = fixture_paths("vpt_tiny")
    cfg = recorder.RecordConfig(
        model=model,
        weights=weights,
        out=path,
        n_episodes=1,
        n_envs=1,
        n_steps=40,
        env=BlockWorldConfig(height=72, width=128),
        seed=3,
        full_frames=True,
        scene="villager_under_leaves",
    )
    recorder.main(cfg)
    return path


@functools.cache
def served(tiny_run: Path, root: Path) -> Served:
    return Served(
        root=root,
        run=tiny_run,
        sae=make_sae(root / "sae", tiny_run),
        broken=make_broken_run(root / "broken", tiny_run),
        experiment=make_experiment(root / "experiment"),
        full=make_full_run(root / "full"),
    )


def start(app) -> tuple[str, callable]:
    """Serve `app` on a free loopback port in a thread; returns its URL and a function that stops it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # as serve.make_server binds
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)
        sock.close()

    return f"http://127.0.0.1:{sock.getsockname()[1]}", stop


def wait_ready(client, path: str, timeout: float = 120.0):
    """GET `path` through its 202 answers (background jobs) until it answers otherwise."""
    deadline = time.time() + timeout
    while True:
        response = client.get(path)
        if response.status_code != 202:
            return response
        if time.time() > deadline:
            raise TimeoutError(f"{path} still pending after {timeout} s: {response.json()}")
        time.sleep(0.2)


def wait_job(client, job: dict, timeout: float = 180.0) -> dict:
    deadline = time.time() + timeout
    while job["status"] == "running":
        if time.time() > deadline:
            raise TimeoutError(f"job {job['id']} still running after {timeout} s: {job}")
        time.sleep(0.3)
        job = client.get(f"/api/jobs/{job['id']}").json()
    return job
