"""Env configs as a tagged union (`envs.make`), the record command's env subcommands, and the CLI's user-facing
behaviour: --version, one-line user errors (--debug for the traceback), --overwrite, `scenes`, `doctor`."""

import dataclasses
import json
import subprocess
import sys

import cv2
import pytest
import yaml
from conftest import fixture_paths

from vptlens import cli, envs, minerl_spec
from vptlens.agents import actions
from vptlens.envs import minerl_env
from vptlens.envs.blockworld import BlockWorldConfig, BlockWorldEnv
from vptlens.envs.blockworld import env as blockworld_env
from vptlens.envs.minerl_env import MineRLConfig, MineRLEnv
from vptlens.envs.scenes import Scene, list_builtin_scenes, load_builtin_scene
from vptlens.recordings import recorder

MODEL, WEIGHTS = fixture_paths("vpt_tiny")
AGENT = ["--model", str(MODEL), "--weights", str(WEIGHTS)]


def test_make_builds_the_env_its_config_names():
    env = envs.make(BlockWorldConfig(height=32, width=48, terrain="flat"))
    assert isinstance(env, BlockWorldEnv) and env.observation_space["pov"].shape == (32, 48, 3)
    assert isinstance(envs.make(MineRLConfig(python="/nonexistent/python")), MineRLEnv)  # starts nothing until reset
    scene = load_builtin_scene("villager_in_open")
    wrapped = envs.make(BlockWorldConfig(height=32, width=32), scene=scene)
    _, info = wrapped.reset(seed=3)
    assert info["scene"]["name"] == "villager_in_open" and isinstance(wrapped.unwrapped, BlockWorldEnv)
    assert envs.get_env_id(MineRLConfig()) == "minerl"
    assert {"height": 360, "width": 640, "env_id": "HumanSurvival"}.items() <= envs.get_env_settings(
        MineRLConfig()
    ).items()
    with pytest.raises(TypeError):
        envs.make({"height": 32})
    make_unchecked = getattr(envs.make, "__wrapped__", envs.make)  # without the tests' runtime type checker
    with pytest.raises(TypeError, match="dict is not an env config; pass a BlockWorldConfig or MineRLConfig"):
        make_unchecked({"height": 32})


def test_record_config_takes_the_env_as_a_nested_subcommand():
    assert recorder.RecordConfig(model=MODEL, weights=WEIGHTS).env == BlockWorldConfig()
    cfg, main = cli.parse(["record", *AGENT, "env:blockworld", "--env.height", "128", "--env.width", "96",
                           "--env.terrain", "flat", "--n-steps", "5"])  # fmt: skip
    assert main is recorder.main and cfg.n_steps == 5
    assert cfg.env == BlockWorldConfig(height=128, width=96, terrain="flat")
    cfg, _ = cli.parse(["record", *AGENT, "env:minerl", "--env.python", "/opt/minerl/bin/python"])
    assert cfg.env == MineRLConfig(python="/opt/minerl/bin/python") and (cfg.env.height, cfg.env.width) == (360, 640)


def test_full_frames_take_their_size_from_the_env(vpt_tiny):
    cfg = recorder.RecordConfig(model=MODEL, weights=WEIGHTS, env=BlockWorldConfig(48, 80), full_frames=True)
    assert recorder.episode_specs(vpt_tiny, cfg, [])["frames_full"].shape == (48, 80, 3)
    cfg = recorder.RecordConfig(model=MODEL, weights=WEIGHTS, env=MineRLConfig(), full_frames=True)
    assert recorder.episode_specs(vpt_tiny, cfg, [])["frames_full"].shape == (360, 640, 3)


def test_version_and_help_list_every_command(capsys):
    cli.entrypoint(["--version"])
    assert capsys.readouterr().out.strip() == f"vptlens {__import__('vptlens').__version__}"
    with pytest.raises(SystemExit) as exit_info:
        cli.entrypoint(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("record", "scenes", "doctor", "sae"))


def test_a_named_subcommand_imports_only_its_own_module():
    """Every command line used to import every subcommand's module (torch, sklearn, scipy.stats: ~4 s)."""
    code = (
        "import sys; from vptlens import cli; cfg, main = cli.parse(['scenes']); "
        "print(type(cfg).__name__, 'torch' in sys.modules, 'sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["ScenesConfig", "False", "False"]


def test_every_subcommand_names_a_config_and_a_main():
    for specs in [cli.COMMANDS, *(group for _, group in cli.GROUPS.values())]:
        for name, (cls, main) in cli._load(specs).items():
            assert dataclasses.is_dataclass(cls) and callable(main), name


def test_a_group_without_its_subcommand_lists_them(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.entrypoint(["sae", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("train", "eval", "dashboard"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scene", "villager_undr_leaves"], "did you mean 'villager_under_leaves'"),
        (["--scene", "missing_scene.yaml"], "no such scene file"),
        (["--resume", "--overwrite"], "pass one of them"),  # a config's own check (__post_init__)
        (["--n-envs", "0"], "must be at least 1"),
        (["--flush-steps", "0"], "positive multiple of 64"),
        (["env:blockworld", "--env.height", "8"], "too small"),
    ],
)
def test_a_user_error_is_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        cli.entrypoint(["record", *AGENT, "--out", str(out), "--n-steps", "4", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vptlens: error: ") and message in err and "\n" not in err and "Traceback" not in err
    assert not out.exists()


def test_a_missing_model_file_is_a_user_error(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        cli.entrypoint(
            ["record", "--model", str(tmp_path / "nope.model"), "--weights", str(WEIGHTS), "--out", str(out)]
        )
    assert exit_info.value.code == 2 and "nope.model" in capsys.readouterr().err and not out.exists()


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(KeyError, match="villager_undr_leaves"):
        cli.entrypoint(["record", *AGENT, "--out", str(tmp_path / "run"), "--scene", "villager_undr_leaves", "--debug"])
    assert not (tmp_path / "run").exists()


def test_overwrite_records_afresh_and_refuses_what_is_not_a_run(tmp_path, capsys):
    out = tmp_path / "run"
    record = ["record", *AGENT, "--out", str(out), "--n-episodes", "1", "--n-envs", "1", "--n-steps", "4",
              "env:blockworld", "--env.height", "32", "--env.width", "32"]  # fmt: skip
    cli.entrypoint(record)
    (out / "stray.txt").write_text("left over")
    with pytest.raises(SystemExit) as exit_info:
        cli.entrypoint(record)
    assert exit_info.value.code == 2 and "--resume" in capsys.readouterr().err
    cli.entrypoint([*record, "--overwrite", "--seed", "1"])
    manifest = json.loads((out / "run.json").read_text())
    assert not (out / "stray.txt").exists() and manifest["config"]["seed"] == 1
    assert (out / "episode_000000.zarr").is_dir()
    with pytest.raises(SystemExit) as exit_info:
        cli.entrypoint([*record, "--overwrite", "--resume"])
    assert exit_info.value.code == 2
    not_a_run = tmp_path / "notes"
    not_a_run.mkdir()
    (not_a_run / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a vptlens run"):
        recorder.main(recorder.RecordConfig(model=MODEL, weights=WEIGHTS, out=not_a_run, overwrite=True))
    assert (not_a_run / "keep.txt").exists()


def test_scenes_lists_shows_and_previews(tmp_path, capsys):
    cli.entrypoint(["scenes"])
    lines = capsys.readouterr().out.splitlines()
    names = list_builtin_scenes()
    assert len(names) == 9 and all(any(line.startswith(name + " ") for line in lines) for name in names)
    cli.entrypoint(["scenes", "--show", "villager_under_leaves"])
    shown = Scene.from_dict(yaml.safe_load(capsys.readouterr().out))
    assert shown == load_builtin_scene("villager_under_leaves")
    png = tmp_path / "preview" / "scene.png"
    cli.entrypoint(["scenes", "--preview", "tree_at_spot", "--out", str(png), "--env.height", "72", "--env.width",
                    "128"])  # fmt: skip
    assert cv2.imread(str(png)).shape == (72, 128, 3)
    with pytest.raises(SystemExit) as exit_info:
        cli.entrypoint(["scenes", "--show", "canopy_onyl"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "did you mean 'canopy_only'" in err and "villager_in_open" in err


def test_doctor_checks_every_item_without_an_interpreter(capsys):
    ok, report = minerl_env.doctor("/nonexistent/python")
    assert not ok and "[MISSING] interpreter /nonexistent/python runs" in report
    for item in ("Python 3.8-3.11", "minerl", "numpy", "gym"):
        assert f"[not checked] {item}" in report and "no interpreter" in report
    assert "Java 8" in report and "xvfb" in report
    with pytest.raises(SystemExit) as exit_info:
        cli.entrypoint(["doctor", "minerl", "--python", "/nonexistent/python"])
    assert exit_info.value.code == 1 and "fix:" in capsys.readouterr().out


def test_doctor_reports_what_an_interpreter_lacks():
    ok, report = minerl_env.doctor(sys.executable)  # runs, but has no minerl (and numpy 2)
    assert not ok and f"[ok] interpreter {sys.executable} runs" in report
    assert "[ok] Python 3." in report and "[MISSING] minerl not importable" in report
    assert "[MISSING] numpy 2." in report and "fix: pip install 'numpy<1.24'" in report


def test_the_minerl_keys_are_defined_once():
    keys = minerl_spec.MINERL_BUTTONS
    assert actions.MINERL_BUTTONS is keys and blockworld_env.MINERL_BUTTONS is keys
    assert minerl_env.MINERL_BUTTONS is keys and recorder.MINERL_BUTTONS is keys
    assert set(BlockWorldEnv(height=16, width=16).action_space.spaces) == {*keys, minerl_spec.CAMERA_KEY}
