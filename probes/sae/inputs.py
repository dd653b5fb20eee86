"""What every SAE command checks before it works: the run's episodes, the hook they recorded, the output directory."""

from pathlib import Path

import numpy as np

from vptlens.probes.report import check_out_dir
from vptlens.recordings.store import Episode, Run


def open_episodes(run_path: str | Path) -> tuple[Run, list[Episode]]:
    """A run's complete episodes (or one episode); raises when there are none."""
    run = Run.open(run_path)
    episodes = run.episodes()
    if not episodes:
        raise ValueError(f"{run_path}: no complete episodes; record some with `vptlens record`")
    return run, episodes


def check_hook(episodes: list[Episode], hook_name: str, flatten: bool = False) -> int:
    """The activation width (d) of `hook_name` in every episode; raises if it was not recorded or is not (N, d).

    `flatten`: accept any step shape and return the number of values per step.
    """
    if not episodes:
        raise ValueError("no episodes given; pass a run directory with complete episodes")
    widths = set()
    for episode in episodes:
        if not episode.has_activation(hook_name):
            raise KeyError(
                f"{episode.path} has no activation of {hook_name!r} (the run did not record that hook); recorded "
                f"hooks: {episode.hooks}. Pass one of those, or record a run with --hooks {hook_name}"
            )
        shape = episode.activation(hook_name).shape
        if len(shape) != 2 and not flatten:
            raise ValueError(
                f"{episode.path}: the hook {hook_name!r} has shape {shape}; an SAE reads (N, d) activations"
            )
        widths.add(int(np.prod(shape[1:])))
    if len(widths) != 1:
        raise ValueError(f"episodes disagree on the width of '{hook_name}': {sorted(widths)}")
    return widths.pop()


def check_out(out: str | Path, overwrite: bool, *inputs: str | Path) -> None:
    """Refuse an output directory that exists and is not empty (unless `overwrite`), or that holds one of the
    command's `inputs` (overwriting would delete them). Writes nothing."""
    out = Path(out).resolve()
    for path in inputs:
        path = Path(path).resolve()
        if out == path or out in path.parents:
            raise ValueError(f"--out {out} holds the input {path}; pass an output directory outside it")
    check_out_dir(out, overwrite)
