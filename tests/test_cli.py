"""Smoke tests of every subcommand through `main(cfg)` and through the console entry point."""

import json
import re

import pytest
from conftest import fixture_paths

from vptlens.agents.info import InfoConfig, main
from vptlens.cli import entrypoint


def test_info_main_lists_architecture_and_hooks():
    text = main(InfoConfig(*fixture_paths("vpt_tiny")))
    assert "VPT policy, " in text and "M=32 frames" in text
    assert re.search(r"blocks\.1\.attn\.hook_pattern +\(B, 4, 33\) +\(B, 4, t, 33\)", text)
    assert re.search(r"value_head\.hook_value +\(B,\) +\(B, t\)", text)


def test_info_entrypoint_steve1(capsys):
    model, weights = fixture_paths("steve1_tiny")
    entrypoint(["info", str(model), str(weights), "--no-hooks"])
    out = capsys.readouterr().out
    assert "STEVE-1" in out and "MineCLIP 512" in out and "hook points" not in out


def test_doctor_subcommand(capsys, monkeypatch):
    monkeypatch.delenv("VPTLENS_MINERL_PYTHON", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        entrypoint(["doctor", "minerl"])
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "[MISSING] MineRL interpreter" in out and "Fix the MISSING items" in out


def test_attention_and_probe_subcommands(tiny_run, tmp_path):
    entrypoint(["attention", str(tiny_run), "--out", str(tmp_path / "att"), "--n-bootstrap", "50"])
    assert (tmp_path / "att" / "attention.json").is_file() and (tmp_path / "att" / "lag_profiles_L1.png").is_file()
    entrypoint(
        ["probe", str(tiny_run), "--out", str(tmp_path / "probe"), "--labels", "villager_visible", "--hooks",
         "blocks.*.hook_resid_post"]
    )  # fmt: skip
    assert (tmp_path / "probe" / "probe.json").is_file()


def test_sae_subcommands(tiny_run, tmp_path):
    saes = tmp_path / "saes"
    entrypoint(
        ["sae", "train", str(tiny_run), "--hook", "blocks.1.hook_resid_post", "--out", str(saes), "--architectures",
         "topk:k=4", "--expansion-factor", "2", "--batch-size", "64", "--buffer-rows", "256", "--total-activations",
         "1280", "--warmup-steps", "2"]
    )  # fmt: skip
    sae_dir = saes / "topk-k_4"
    entrypoint(["sae", "eval", str(sae_dir), "--behaviour-max-steps", "32"])
    assert "kl_recovered" in json.loads((sae_dir / "eval.json").read_text())["behaviour"]
    entrypoint(["sae", "dashboard", str(sae_dir), str(tiny_run), "--out", str(tmp_path / "dash"), "--n-latents", "2"])
    assert (tmp_path / "dash" / "index.html").is_file()
