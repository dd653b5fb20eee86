"""benchmarks/record.py's phase breakdown: what it times adds up, and the timed methods are put back."""

import pytest
from conftest import load_script

from vptlens.agents.policy import VPTPolicy
from vptlens.envs.blockworld import BlockWorldEnv


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/record.py")


def test_phases_add_up_and_methods_are_restored(bench, tmp_path):
    step, forward = BlockWorldEnv.step, VPTPolicy.forward
    policy = bench.load_policy(bench.FIXTURE / "agent.model", bench.FIXTURE / "agent.weights")
    row = bench.measure(policy, "tiny", n_envs=2, steps=3, repeats=1, tmp=tmp_path)
    assert BlockWorldEnv.step is step and VPTPolicy.forward is forward
    assert len(row["recording_cost_per_repeat"]) == 1 and row["bytes_per_step"] > 0
    for run, rate in (("unrecorded", "steps_per_s_unrecorded"), ("recorded", "steps_per_s_recorded")):
        ms = row["ms_per_env_step_median"][run]
        assert set(ms) == {"env", "policy", "rest"}
        assert ms["env"] > 0 and ms["policy"] > 0 and ms["rest"] > 0
        assert ms["env"] + ms["policy"] < 1e3 / row[rate][0]  # the timed calls lie inside the rollout's wall time


def test_timer_restores_methods_after_an_error(bench):
    step = BlockWorldEnv.step
    with pytest.raises(RuntimeError), bench.phase_timer():
        assert BlockWorldEnv.step is not step
        raise RuntimeError("boom")
    assert BlockWorldEnv.step is step
