"""The `vptlens` command: one console script, a subcommand per job, each also callable as `main(cfg)`."""

import logging
import sys
from collections.abc import Callable


def _subcommands() -> dict[str, tuple[type, Callable]]:
    """Subcommand name -> (its frozen config dataclass, whose docstring is the help, and its main)."""
    from vptlens.agents import info, zoo
    from vptlens.envs import minerl_env
    from vptlens.recordings import recorder, replay

    return {
        "record": (recorder.RecordConfig, recorder.main),
        "replay": (replay.ReplayConfig, replay.main),
        "summary": (replay.SummaryConfig, replay.summary),
        "info": (info.InfoConfig, info.main),
        "download": (zoo.DownloadConfig, zoo.main),
        "doctor": (minerl_env.DoctorConfig, minerl_env.doctor_main),
    }


def entrypoint(argv: list[str] | None = None) -> None:
    import tyro

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    commands = _subcommands()
    cfg = tyro.extras.subcommand_cli_from_dict(
        {name: cls for name, (cls, _) in commands.items()},
        args=sys.argv[1:] if argv is None else argv,
        description="vpt-lens: record, replay, look inside and intervene on VPT / STEVE-1 agents.",
    )
    for cls, main in commands.values():
        if type(cfg) is cls:
            main(cfg)
            return
    raise AssertionError(f"no subcommand handles {type(cfg).__name__}")


if __name__ == "__main__":
    entrypoint()
