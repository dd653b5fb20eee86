"""What the viewer serves: the runs, episodes, SAEs and experiments found under the paths it was given, by id.

URLs name items by short ids (`r0`, `r0e3`, `s1`, `x0`), never by filesystem paths: a request can only reach
what discovery found at start (or what the server itself wrote since, e.g. a closed-loop experiment), so a path
in a request cannot escape the given paths. Discovery walks each given directory a few levels down, stops at
episode groups (`*.zarr`), and skips anything whose real path (symlinks resolved) lies outside the directory
it was found in.
"""

import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from vptlens.probes.sae.model import CFG_NAME, WEIGHTS_NAME
from vptlens.recordings.schema import MANIFEST_FILE
from vptlens.recordings.store import Episode, Run

logger = logging.getLogger(__name__)

EXPERIMENT_FILE = "experiment.json"
"""Written by `vptlens experiment run` (the same name as `interventions.runner.EXPERIMENT_FILE`)."""
MAX_DEPTH = 3
"""How many directory levels below a given path discovery looks."""
MAX_ITEMS = 2000
"""Discovery stops after this many items (a given path like / would otherwise walk the whole disk)."""

_EPISODE_ID = re.compile(r"^(r\d+)e(\d+)$")


class NotFound(KeyError):
    """An id the viewer does not serve (the app answers 404)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


@dataclass
class RunItem:
    """A run directory, or one episode directory seen as a run of one (`recordings.store.Run.open`)."""

    id: str
    path: Path
    name: str
    experiment: str | None = None
    """The id of the experiment this run is a cell of."""

    def episode_paths(self) -> list[Path]:
        """Every episode directory on disk, whatever its status (listed afresh: a run being recorded grows)."""
        return Run.open(self.path).episode_paths(status=None)


@dataclass
class SAEItem:
    id: str
    path: Path
    name: str


@dataclass
class ExperimentItem:
    id: str
    path: Path
    name: str
    cells: dict[str, str] = field(default_factory=dict)
    """Cell directory name (cell_000) -> run id."""


def _is_episode(path: Path) -> bool:
    return (path / "zarr.json").is_file() and path.suffix == ".zarr"


def _kind(path: Path) -> str | None:
    if (path / EXPERIMENT_FILE).is_file():
        return "experiment"
    if (path / MANIFEST_FILE).is_file() or _is_episode(path):
        return "run"
    if (path / CFG_NAME).is_file() and (path / WEIGHTS_NAME).is_file():
        return "sae"
    return None


def _inside(path: Path, root: Path) -> bool:
    real = path.resolve()
    return real == root or root in real.parents


class Registry:
    """The served items by id; thread-safe (the server adds experiments it records)."""

    def __init__(self) -> None:
        self.runs: dict[str, RunItem] = {}
        self.saes: dict[str, SAEItem] = {}
        self.experiments: dict[str, ExperimentItem] = {}
        self._seen: set[Path] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_paths(cls, paths: list[Path]) -> "Registry":
        """Discover every item under `paths`; a path holding nothing servable raises ValueError saying what is."""
        registry = cls()
        for path in paths:
            path = Path(path)
            if not path.exists():
                raise FileNotFoundError(f"{path}: no such file or directory; pass runs, SAE or experiment directories")
            if not path.is_dir():
                raise ValueError(f"{path} is a file; pass a directory (a run, an episode, an SAE or an experiment)")
            if registry.add(path) == 0:
                raise ValueError(
                    f"{path}: nothing to serve found (looked {MAX_DEPTH} levels down); pass a run directory "
                    f"({MANIFEST_FILE}), an episode (episode_*.zarr), an SAE directory ({CFG_NAME}) or an experiment "
                    f"directory ({EXPERIMENT_FILE})"
                )
        return registry

    def add(self, root: Path) -> int:
        """Register everything found under `root`; returns how many new items."""
        root = root.resolve()
        with self._lock:
            before = len(self.runs) + len(self.saes) + len(self.experiments)
            self._walk(root, root, MAX_DEPTH)
            return len(self.runs) + len(self.saes) + len(self.experiments) - before

    def _walk(self, path: Path, root: Path, depth: int) -> None:
        if len(self.runs) + len(self.saes) + len(self.experiments) >= MAX_ITEMS:
            return
        if not _inside(path, root):
            logger.warning("not serving %s: it leads outside %s", path, root)
            return
        real = path.resolve()
        kind = _kind(path)
        if kind is not None and real not in self._seen:
            self._seen.add(real)
            self._register(kind, real, root)
        if _is_episode(path) or kind == "sae" or depth == 0:
            return
        try:
            children = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return
        in_run = (path / MANIFEST_FILE).is_file()
        for child in children:
            if not (in_run and _is_episode(child)):  # a run's episodes are served through the run
                self._walk(child, root, depth - 1)

    def _register(self, kind: str, path: Path, root: Path) -> None:
        name = path.name if path == root else f"{root.name}/{path.relative_to(root)}"
        if kind == "run":
            item = RunItem(f"r{len(self.runs)}", path, name)
            self.runs[item.id] = item
        elif kind == "sae":
            item = SAEItem(f"s{len(self.saes)}", path, name)
            self.saes[item.id] = item
        else:
            item = ExperimentItem(f"x{len(self.experiments)}", path, name)
            self.experiments[item.id] = item
            cells = path / "cells"
            for cell in sorted(cells.iterdir()) if cells.is_dir() else []:
                if (cell / MANIFEST_FILE).is_file() and _inside(cell, root) and cell.resolve() not in self._seen:
                    self._seen.add(cell.resolve())
                    run = RunItem(f"r{len(self.runs)}", cell.resolve(), f"{name}/{cell.name}", experiment=item.id)
                    self.runs[run.id] = run
                    item.cells[cell.name] = run.id

    # ------------------------------------------------------------------ lookups

    def run(self, run_id: str) -> RunItem:
        if run_id not in self.runs:
            raise NotFound(f"no run {run_id!r} is served")
        return self.runs[run_id]

    def sae(self, sae_id: str) -> SAEItem:
        if sae_id not in self.saes:
            raise NotFound(f"no SAE {sae_id!r} is served")
        return self.saes[sae_id]

    def experiment(self, experiment_id: str) -> ExperimentItem:
        if experiment_id not in self.experiments:
            raise NotFound(f"no experiment {experiment_id!r} is served")
        return self.experiments[experiment_id]

    def episode_path(self, episode_id: str) -> Path:
        """The directory of episode `r<run>e<k>`: the k-th episode directory of the run, in name order."""
        match = _EPISODE_ID.match(episode_id)
        if match is None:
            raise NotFound(f"{episode_id!r} is not an episode id (they look like r0e3)")
        paths = self.run(match.group(1)).episode_paths()
        k = int(match.group(2))
        if k >= len(paths):
            raise NotFound(f"run {match.group(1)} has {len(paths)} episodes, no episode {k}")
        return paths[k]

    def runs_with_hook(self, hook_name: str) -> list[RunItem]:
        """Served runs whose first episode stores `hook_name`'s activation."""
        found = []
        for run in self.runs.values():
            paths = run.episode_paths()
            try:
                if paths and Episode(paths[0]).has_activation(hook_name):
                    found.append(run)
            except (OSError, ValueError):
                continue
        return found
