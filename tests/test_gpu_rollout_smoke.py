"""benchmarks/gpu_rollout.py runs end to end on the CPU at tiny sizes and writes what it promises."""

import json

import pytest
import torch
from conftest import load_script


@pytest.fixture(scope="module")
def gpu_rollout():
    return load_script("benchmarks/gpu_rollout.py")


def test_cpu_smoke_run_writes_rates_and_exactness(gpu_rollout, tmp_path):
    out = tmp_path / "gpu_rollout.json"
    args = ["--device", "cpu", "--size", "tiny", "--batches", "1", "2", "--steps", "3", "--repeats", "1"]
    gpu_rollout.main([*args, "--variants", "fp32", "channels_last", "bf16", "--out", str(out)])
    result = json.loads(out.read_text())
    assert {"machine", "args", "flops_per_frame", "peak_tflops", "rows", "exactness", "record"} <= set(result)
    assert {"device", "torch", "cuda", "cpus"} <= set(result["machine"])
    assert result["flops_per_frame"]["step"] >= result["flops_per_frame"]["cnn"] > 0
    assert result["peak_tflops"] is None and result["record"] is None  # a CPU has no default peak
    assert [(r["variant"], r["batch"]) for r in result["rows"]] == [
        (v, b) for v in ("fp32", "channels_last", "bf16") for b in (1, 2)
    ]
    for row in result["rows"]:
        assert row["cnn_fps"] > 0 and row["step_fps"] > 0 and row["step_tflops"] > 0
        assert row["cnn_share_of_peak"] is None
    checks = {c["variant"]: c for c in result["exactness"]}
    for name in ("fp32", "channels_last"):
        assert checks[name]["max_abs_logit_diff"] <= gpu_rollout.FP32_TOL and checks[name]["within_tolerance"]
    assert 0 <= checks["bf16"]["kl_buttons_max"] <= gpu_rollout.BF16_KL_BOUND


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for machines without a GPU")
def test_without_a_gpu_it_exits_with_one_line(gpu_rollout, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        gpu_rollout.main(["--out", str(tmp_path / "never.json")])
    message = str(exit_info.value.code)
    assert "no GPU found" in message and "--device cpu" in message and "\n" not in message


@pytest.mark.slow
def test_record_comparison_runs_at_64x64(gpu_rollout, tmp_path):
    out = tmp_path / "gpu_rollout.json"
    gpu_rollout.main(
        ["--device", "cpu", "--size", "tiny", "--batches", "1", "--steps", "2", "--repeats", "1", "--variants", "fp32",
         "--record", "--record-envs", "2", "--record-steps", "4", "--record-resolution", "64", "64",
         "--env-workers", "1", "--out", str(out)]
    )  # fmt: skip
    record = json.loads(out.read_text())["record"]
    assert record["resolution"] == "64x64" and record["bare_steps_per_s"] > 0 and record["recorded_steps_per_s"] > 0
    assert record["pipelined_steps_per_s"] > 0 and record["env_workers"] == 1
