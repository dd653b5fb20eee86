"""An experiment directory as the viewer shows it: the grid's cells with their episodes (linked to the player) and
each episode's metrics, and the intervention suite's tables and plots (`interventions.analysis`, whose report.html
stays the export format and is served as is).

Files are served only by name from a list made from the directory (`files`), never by joining a requested path.
"""

import csv
import json
from pathlib import Path

from vptlens.viewer.registry import ExperimentItem, NotFound, Registry

REPORT_FILES = ("report.html", "results.csv", "results.json")
MEDIA_TYPES = {".html": "text/html", ".csv": "text/csv", ".json": "application/json", ".png": "image/png"}


def files(item: ExperimentItem) -> dict[str, Path]:
    """Name (as report.html links it) -> file: the report, its data and its images."""
    found = {name: item.path / name for name in REPORT_FILES if (item.path / name).is_file()}
    img = item.path / "img"
    if img.is_dir():
        found |= {
            f"img/{p.name}": p
            for p in sorted(img.iterdir())
            if p.suffix == ".png" and p.is_file() and not p.is_symlink()
        }
    return found


def file(item: ExperimentItem, name: str) -> tuple[Path, str]:
    """The file `name` of the experiment and its media type (NotFound for anything not in `files`)."""
    listed = files(item)
    if name not in listed:
        raise NotFound(f"experiment {item.id} has no file {name!r}; it has {', '.join(listed) or 'none yet'}")
    return listed[name], MEDIA_TYPES[listed[name].suffix]


def view(item: ExperimentItem, registry: Registry) -> dict:
    """The experiment page's data: spec summary, cells with their episodes and metric values, the analysis."""
    saved = json.loads((item.path / "experiment.json").read_text())
    values: dict[str, dict[str, object]] = {}
    csv_path = item.path / "results.csv"
    if csv_path.is_file():
        with csv_path.open(newline="") as f:
            for row in csv.DictReader(f):
                values.setdefault(row["episode"], {})[row["metric"]] = row["value"]
    cells = []
    for cell in saved.get("cells", []):
        run_id = item.cells.get(Path(cell["dir"]).name)
        episodes = []
        if run_id is not None:
            for k, path in enumerate(registry.run(run_id).episode_paths()):
                rel = f"{cell['dir']}/{path.name}"
                episodes.append({"id": f"{run_id}e{k}", "name": path.name, "metrics": values.get(rel, {})})
        cells.append({**cell, "run": run_id, "episodes": episodes})
    results_path = item.path / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else None
    spec = saved.get("spec", {})
    return {
        "id": item.id,
        "name": item.name,
        "title": spec.get("name", item.name),
        "description": spec.get("description", ""),
        "control": saved.get("control"),
        "seeds": saved.get("seeds"),
        "n_steps": spec.get("n_steps"),
        "metrics": sorted({m for v in values.values() for m in v}),
        "cells": cells,
        "results": None
        if results is None
        else {
            k: results.get(k)
            for k in ("summaries", "comparisons", "open_loop", "dose_response", "fraction_moving_behaviour")
        },
        "files": sorted(files(item)),
    }
