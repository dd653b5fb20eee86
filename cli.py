"""The `vptlens` command: one console script, a subcommand per job, each also callable as `main(cfg)`.

A user error (a bad value, a missing file, an unknown scene) prints one line, `vptlens: error: ...`, and
exits with status 2; `--debug` anywhere on the command line shows the traceback instead.
"""

import logging
import sys
from collections.abc import Callable
from typing import Annotated, Union

Commands = dict[str, tuple[type, Callable]]

DESCRIPTION = "vpt-lens: record, replay, look inside and intervene on VPT / STEVE-1 agents."


def _subcommands() -> Commands:
    """Subcommand name -> (its frozen config dataclass, whose docstring is the help, and its main)."""
    from vptlens.agents import info, zoo
    from vptlens.envs import minerl_env, scene_cli
    from vptlens.probes import attention, linear
    from vptlens.recordings import recorder, replay
    from vptlens.viewer import serve

    return {
        "record": (recorder.RecordConfig, recorder.main),
        "replay": (replay.ReplayConfig, replay.main),
        "summary": (replay.SummaryConfig, replay.summary),
        "attention": (attention.AttentionConfig, attention.main),
        "probe": (linear.ProbeConfig, linear.main),
        "scenes": (scene_cli.ScenesConfig, scene_cli.main),
        "info": (info.InfoConfig, info.main),
        "download": (zoo.DownloadConfig, zoo.main),
        "doctor": (minerl_env.DoctorConfig, minerl_env.doctor_main),
        "serve": (serve.ServeConfig, serve.main),
    }


def _groups() -> dict[str, tuple[str, Commands]]:
    """Subcommands with subcommands of their own (`vptlens sae train ...`): name -> (help, commands)."""
    from vptlens.probes.sae import dashboard, evaluate, train

    sae = {
        "train": (train.TrainConfig, train.main),
        "eval": (evaluate.EvalConfig, evaluate.main),
        "dashboard": (dashboard.DashboardConfig, dashboard.main),
    }
    from vptlens.interventions import experiment

    experiments = {
        "run": (experiment.RunConfig, experiment.run),
        "report": (experiment.ReportConfig, experiment.report),
    }
    from vptlens.training import bc, demos

    training = {
        "expert-demos": (demos.ExpertDemosConfig, demos.main),
        "bc": (bc.BCConfig, bc.main),
    }
    return {
        "sae": ("sparse autoencoders on recorded activations: train, eval, dashboard", sae),
        "train": ("the model organism: record the scripted expert, behavioural cloning with DAgger", training),
        "experiment": (
            "interventions: scenes x activation edits x seeds, with statistics against controls",
            experiments,
        ),
    }


def _union(commands: Commands):
    import tyro

    return Union[tuple(Annotated[cls, tyro.conf.subcommand(name)] for name, (cls, _) in commands.items())]  # noqa: UP007


USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    KeyError,
    FileNotFoundError,
    FileExistsError,
    ImportError,  # a missing optional dependency: the message says what to install
)
"""Exceptions that mean the input was wrong (STYLE.md, Errors): one line, exit 2. SceneError is a ValueError."""


def _message(e: BaseException) -> str:
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)  # a KeyError's str() adds quotes
    return " ".join(text.split()) or type(e).__name__


class ConfigError(ValueError):
    """A config's own check (`__post_init__`) refused the values given on the command line."""


def _raise_config_errors(event) -> None:
    """tyro draws a box for a config whose `__post_init__` refuses the values; we print one line instead."""
    if type(event).__name__ == "InstantiationFailure":
        raise ConfigError(event.message)


def _on_config_error():
    """tyro's parse-error hook (tyro >= 1.0; private module): without it, tyro's own box is shown (still exit 2)."""
    import contextlib

    try:
        from tyro._errors import on_parse_error
    except ImportError:
        return contextlib.nullcontext()
    return on_parse_error(_raise_config_errors)


def parse(args: list[str]) -> tuple[object, Callable]:
    """The config a command line describes, and the `main` that runs it (nothing runs yet)."""
    import tyro

    commands = _subcommands()
    members = list(_union(commands).__args__)
    for name, (description, group) in _groups().items():
        members.append(Annotated[_union(group), tyro.conf.subcommand(name, description=description)])
        commands = {**commands, **group}
    with _on_config_error():
        cfg = tyro.cli(
            Union[tuple(members)],  # noqa: UP007
            prog="vptlens",
            description=f"{DESCRIPTION} `vptlens --version` prints the version; `--debug` shows tracebacks.",
            args=args,
            config=(tyro.conf.CascadeSubcommandArgs,),  # `record env:blockworld --env.height 128 --n-steps 64` works
        )
    return cfg, next(main for cls, main in commands.values() if type(cfg) is cls)


def entrypoint(argv: list[str] | None = None) -> None:
    import vptlens

    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    if args in (["--version"], ["-V"]):
        print(f"vptlens {vptlens.__version__}")
        return
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg, main = parse(args)
        main(cfg)
    except USER_ERRORS as e:
        if debug:
            raise
        print(f"vptlens: error: {_message(e)}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as e:  # the machine, not the input: a full disk, a lost mount (WriterError wraps them too)
        if debug:
            raise
        print(f"vptlens: error: {_message(e)}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    entrypoint()
