"""The `vptlens` command: one console script, a subcommand per job, each also callable as `main(cfg)`."""

import logging
import sys
from collections.abc import Callable

Commands = dict[str, tuple[type, Callable]]


def _subcommands() -> Commands:
    """Subcommand name -> (its frozen config dataclass, whose docstring is the help, and its main)."""
    from vptlens.agents import info, zoo
    from vptlens.envs import minerl_env
    from vptlens.probes import attention, linear
    from vptlens.recordings import recorder, replay

    return {
        "record": (recorder.RecordConfig, recorder.main),
        "replay": (replay.ReplayConfig, replay.main),
        "summary": (replay.SummaryConfig, replay.summary),
        "attention": (attention.AttentionConfig, attention.main),
        "probe": (linear.ProbeConfig, linear.main),
        "info": (info.InfoConfig, info.main),
        "download": (zoo.DownloadConfig, zoo.main),
        "doctor": (minerl_env.DoctorConfig, minerl_env.doctor_main),
    }


def _groups() -> dict[str, tuple[str, Commands]]:
    """Subcommands with subcommands of their own (`vptlens sae train ...`): name -> (help, commands)."""
    from vptlens.probes import dashboard, sae_eval, sae_train

    sae = {
        "train": (sae_train.TrainConfig, sae_train.main),
        "eval": (sae_eval.EvalConfig, sae_eval.main),
        "dashboard": (dashboard.DashboardConfig, dashboard.main),
    }
    return {"sae": ("sparse autoencoders on recorded activations: train, eval, dashboard", sae)}


def entrypoint(argv: list[str] | None = None) -> None:
    import tyro

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = sys.argv[1:] if argv is None else list(argv)
    groups = _groups()
    if args and args[0] in groups:
        description, commands = groups[args[0]]
        cfg = tyro.extras.subcommand_cli_from_dict(
            {name: cls for name, (cls, _) in commands.items()}, prog=f"vptlens {args[0]}", args=args[1:],
            description=description,
        )  # fmt: skip
    else:
        commands = _subcommands()
        listing = "; ".join(f"`vptlens {name} --help`: {help_}" for name, (help_, _) in groups.items())
        cfg = tyro.extras.subcommand_cli_from_dict(
            {name: cls for name, (cls, _) in commands.items()},
            args=args,
            description="vpt-lens: record, replay, look inside and intervene on VPT / STEVE-1 agents. " + listing,
        )
    for cls, main in commands.values():
        if type(cfg) is cls:
            main(cfg)
            return
    raise AssertionError(f"no subcommand handles {type(cfg).__name__}")


if __name__ == "__main__":
    entrypoint()
