"""Shared test fixtures: the reference policies and their oracle outputs; opt-in markers."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

FIXTURES_DIR = Path(__file__).parent / "fixtures"


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="run tests marked slow")
    parser.addoption("--gpu", action="store_true", help="run tests marked gpu (needs CUDA)")
    parser.addoption("--minerl", action="store_true", help="run tests marked minerl (needs a MineRL interpreter)")


def pytest_collection_modifyitems(config, items):
    for marker, option in (("slow", "--runslow"), ("gpu", "--gpu"), ("minerl", "--minerl")):
        if config.getoption(option):
            continue
        skip = pytest.mark.skip(reason=f"marked {marker}: run with {option}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


REPO = Path(__file__).resolve().parents[1]


def load_script(relative: str):
    """A script of the repository (benchmarks/, scripts/) imported as a module, by its path from the repo root."""
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fixture_paths(name: str) -> tuple[Path, Path]:
    return FIXTURES_DIR / name / "agent.model", FIXTURES_DIR / name / "agent.weights"


def record_guided_steve1(out: Path, goal_seed: int, cond_scale: float, **settings) -> np.ndarray:
    """Record the tiny STEVE-1 fixture at 64x64 with classifier-free guidance towards a random goal embedding
    (saved beside `out`); `settings` are further RecordConfig fields. Returns the goal (512,)."""
    from vptlens.envs.blockworld import BlockWorldConfig
    from vptlens.recordings import recorder

    goal = np.random.default_rng(goal_seed).standard_normal(512).astype(np.float32)
    goal_path = out.parent / f"{out.name}_goal.npy"
    np.save(goal_path, goal)
    model, weights = fixture_paths("steve1_tiny")
    env = BlockWorldConfig(height=64, width=64)
    recorder.main(recorder.RecordConfig(model=model, weights=weights, out=out, env=env, goal=goal_path,
                                        cond_scale=cond_scale, **settings))  # fmt: skip
    return goal


@pytest.fixture(scope="session")
def vpt_tiny():
    from vptlens.agents import load_policy

    return load_policy(*fixture_paths("vpt_tiny"))


@pytest.fixture(scope="session")
def steve1_tiny():
    from vptlens.agents import load_policy

    return load_policy(*fixture_paths("steve1_tiny"))


@pytest.fixture(scope="session")
def vpt_oracle():
    return dict(np.load(FIXTURES_DIR / "vpt_tiny" / "oracle.npz"))


@pytest.fixture(scope="session")
def steve1_oracle():
    return dict(np.load(FIXTURES_DIR / "steve1_tiny" / "oracle.npz"))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A BlockWorld run recorded with `vpt_tiny` in the villager-under-leaves scene, shared by the probe tests.

    4 complete episodes of 128 steps at 64x64 (the agent sees 128x128), storing `img.hook_out`
    and `blocks.*.hook_resid_post` (d = 64), and the attention of both blocks (4 heads, M = 32).
    Treat it as read-only.
    """
    from vptlens.envs.blockworld import BlockWorldConfig
    from vptlens.recordings import recorder

    model, weights = fixture_paths("vpt_tiny")
    out = tmp_path_factory.mktemp("tiny_run") / "run"
    recorder.main(
        recorder.RecordConfig(
            model=model,
            weights=weights,
            out=out,
            scene="villager_under_leaves",
            n_episodes=4,
            n_steps=128,
            n_envs=2,
            env=BlockWorldConfig(height=64, width=64),
            seed=11,
        )
    )
    return out
