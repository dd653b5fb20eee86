"""The `vptlens` command: one console script, a subcommand per job, each also callable as `main(cfg)`.

A user error (a bad value, a missing file, an unknown scene) prints one line, `vptlens: error: ...`, and
exits with status 2; `--debug` anywhere on the command line shows the traceback instead.
"""

import importlib
import logging
import sys
from collections.abc import Callable
from typing import Annotated, Union

DESCRIPTION = "vpt-lens: record, replay, look inside and intervene on VPT / STEVE-1 agents."

Spec = tuple[str, str, str]
"""Where a subcommand lives: (module, its frozen config dataclass, whose docstring is the help, its main)."""

COMMANDS: dict[str, Spec] = {
    "record": ("vptlens.recordings.recorder", "RecordConfig", "main"),
    "replay": ("vptlens.recordings.replay", "ReplayConfig", "main"),
    "summary": ("vptlens.recordings.replay", "SummaryConfig", "summary"),
    "attention": ("vptlens.probes.attention", "AttentionConfig", "main"),
    "probe": ("vptlens.probes.linear", "ProbeConfig", "main"),
    "scenes": ("vptlens.envs.scene_cli", "ScenesConfig", "main"),
    "info": ("vptlens.agents.info", "InfoConfig", "main"),
    "download": ("vptlens.agents.zoo", "DownloadConfig", "main"),
    "doctor": ("vptlens.envs.minerl_env", "DoctorConfig", "doctor_main"),
    "serve": ("vptlens.viewer.serve", "ServeConfig", "main"),
}

GROUPS: dict[str, tuple[str, dict[str, Spec]]] = {
    "sae": (
        "sparse autoencoders on recorded activations: train, eval, dashboard",
        {
            "train": ("vptlens.probes.sae.train", "TrainConfig", "main"),
            "eval": ("vptlens.probes.sae.evaluate", "EvalConfig", "main"),
            "dashboard": ("vptlens.probes.sae.dashboard", "DashboardConfig", "main"),
        },
    ),
    "train": (
        "the model organism: record the scripted expert, behavioural cloning with DAgger",
        {
            "expert-demos": ("vptlens.training.demos", "ExpertDemosConfig", "main"),
            "bc": ("vptlens.training.bc", "BCConfig", "main"),
        },
    ),
    "experiment": (
        "interventions: scenes x activation edits x seeds, with statistics against controls",
        {
            "run": ("vptlens.interventions.experiment", "RunConfig", "run"),
            "report": ("vptlens.interventions.experiment", "ReportConfig", "report"),
        },
    ),
}
"""Subcommands with subcommands of their own (`vptlens sae train ...`): name -> (help, commands)."""

Commands = dict[str, tuple[type, Callable]]


def _load(specs: dict[str, Spec]) -> Commands:
    """Import only the modules these subcommands live in: all of them together take ~4 s to import."""
    loaded = {}
    for name, (module, config, main) in specs.items():
        mod = importlib.import_module(module)
        loaded[name] = (getattr(mod, config), getattr(mod, main))
    return loaded


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


def _cli(kind, args: list[str], prog: str, description: str | None = None):
    import tyro

    with _on_config_error():
        return tyro.cli(
            kind,
            prog=prog,
            description=description,
            args=args,
            config=(tyro.conf.CascadeSubcommandArgs,),  # `record env:blockworld --env.height 128 --n-steps 64` works
        )


def parse(args: list[str]) -> tuple[object, Callable]:
    """The config a command line describes, and the `main` that runs it (nothing runs yet).

    A command line that names its subcommand imports that subcommand's module only (a second or more saved on every
    command); anything else (`--help`, a misspelt name) builds the parser for them all, so tyro lists them.
    """
    import tyro

    def named(spec: Spec, n_words: int) -> tuple[object, Callable]:
        ((cls, main),) = _load({"command": spec}).values()
        return _cli(cls, args[n_words:], " ".join(["vptlens", *args[:n_words]])), main

    first, second = (args + [None, None])[:2]
    if first in COMMANDS:
        return named(COMMANDS[first], 1)
    if first in GROUPS:
        description, group = GROUPS[first]
        if second in group:
            return named(group[second], 2)
        commands = _load(group)
        cfg = _cli(_union(commands), args[1:], f"vptlens {first}", description)
        return cfg, next(main for cls, main in commands.values() if type(cfg) is cls)
    commands = _load(COMMANDS)
    members = list(_union(commands).__args__)
    for name, (description, specs) in GROUPS.items():
        group = _load(specs)
        members.append(Annotated[_union(group), tyro.conf.subcommand(name, description=description)])
        commands = {**commands, **group}
    description = f"{DESCRIPTION} `vptlens --version` prints the version; `--debug` shows tracebacks."
    cfg = _cli(Union[tuple(members)], args, "vptlens", description)  # noqa: UP007
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
