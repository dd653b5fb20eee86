"""The report layer every analysis shares: figures, strict JSON and static HTML pages.

An analysis computes a result object; this module renders it. JSON is strict (RFC 8259 has no
NaN or infinity): a value that is not a finite number is written as `null`, and the reason is
kept beside it in the document's top-level `null_reasons` (a JSON pointer -> reason map), either
the one given with `Null("why")` or "not a finite number (nan)".
"""

import dataclasses
import html
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# ------------------------------------------------------------------------------------------------ JSON


@dataclasses.dataclass(frozen=True)
class Null:
    """A value that does not exist, with the reason why (written as null; the reason goes to `null_reasons`)."""

    reason: str


def strict_json(obj: Any) -> Any:
    """`obj` as plain JSON values: numpy, paths and dataclasses converted; non-finite numbers and `Null`s become
    None and their reasons are collected under the top-level `null_reasons` key when `obj` is a dict."""
    reasons: dict[str, str] = {}
    out = _convert(obj, "", reasons)
    if reasons and isinstance(out, dict):
        out["null_reasons"] = {**out.get("null_reasons", {}), **reasons}
    return out


def _convert(x: Any, pointer: str, reasons: dict[str, str]) -> Any:
    if isinstance(x, Null):
        reasons[pointer] = x.reason
        return None
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        x = {f.name: getattr(x, f.name) for f in dataclasses.fields(x)}
    if isinstance(x, dict):
        return {str(k): _convert(v, f"{pointer}/{_escape_pointer(str(k))}", reasons) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        x = x.tolist()
    if isinstance(x, list | tuple):
        return [_convert(v, f"{pointer}/{i}", reasons) for i, v in enumerate(x)]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        reasons[pointer] = f"not a finite number ({x})"
        return None
    if isinstance(x, Path):
        return str(x)
    if x is None or isinstance(x, bool | int | float | str):
        return x
    return str(x)


def _escape_pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def dumps(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(strict_json(obj), indent=indent, allow_nan=False)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write `obj` as strict JSON, atomically (a temporary file renamed over `path`)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(dumps(obj))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ------------------------------------------------------------------------------------------------ figures


def new_figure(**kwargs):
    """A matplotlib Figure on the Agg canvas (no pyplot state, safe in threads and without a display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure (PNG unless the suffix says otherwise), trimmed to its content."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if fig.canvas is None or not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return Path(path)


def save_png(image_rgb: np.ndarray, path: str | Path) -> Path:
    """Save an RGB uint8 image as PNG."""
    import cv2

    if not cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return Path(path)


# ------------------------------------------------------------------------------------------------ HTML

CSS = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222}
body{font-size:15px}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td.l,th.l{text-align:left}img{max-width:100%}h2{margin-top:1.2em}.small{color:#555;font-size:13px}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto}"""


class Raw(str):
    """Already-escaped HTML (a link or image built from escaped parts): inserted as is."""


def esc(x: Any) -> str:
    return x if isinstance(x, Raw) else html.escape(str(x))


def fmt(x: Any, digits: int = 4) -> str:
    """Numbers for people: significant digits, nan and null shown as such."""
    if x is None or isinstance(x, Null):
        return "n/a"
    if isinstance(x, float | np.floating):
        return "nan" if math.isnan(x) else f"{float(x):.{digits}g}"
    return str(x)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], left: tuple[int, ...] = (0,)) -> Raw:
    """An HTML table; cells are formatted with `fmt` and escaped unless they are `Raw`."""
    cls = lambda j: ' class="l"' if j in left else ""
    head = "".join(f"<th{cls(j)}>{esc(h)}</th>" for j, h in enumerate(headers))
    body = "".join(
        "<tr>"
        + "".join(f"<td{cls(j)}>{cell if isinstance(cell, Raw) else esc(fmt(cell))}</td>" for j, cell in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return Raw(f"<table><tr>{head}</tr>{body}</table>")


def img(src: str, alt: str = "") -> Raw:
    return Raw(f'<img src="{esc(src)}" alt="{esc(alt)}">')


def link(href: str, text: str) -> Raw:
    return Raw(f'<a href="{esc(href)}">{esc(text)}</a>')


def page(title: str, *parts: str) -> str:
    """A whole HTML page: `parts` are `Raw` HTML or plain text (escaped, one paragraph each)."""
    body = "".join(p if isinstance(p, Raw) else f"<p>{esc(p)}</p>" for p in parts)
    head = f'<meta charset="utf-8"><title>{esc(title)}</title><style>{CSS}</style>'
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>\n"


def write_page(path: str | Path, title: str, *parts: str) -> Path:
    path = Path(path)
    path.write_text(page(title, *parts))
    return path


# ------------------------------------------------------------------------------------------------ output dirs


def check_out_dir(path: str | Path, overwrite: bool, flag: str = "--out") -> None:
    """Refuse an existing, non-empty output directory unless `overwrite` (call before any work; writes nothing)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{flag} {path} is a file; pass a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"{flag} {path} exists and is not empty; pass --overwrite to replace it, or a new {flag}")


def make_out_dir(path: str | Path, overwrite: bool, flag: str = "--out") -> Path:
    """Create the output directory (emptied first when `overwrite`)."""
    import shutil

    path = Path(path)
    check_out_dir(path, overwrite, flag)
    if path.is_dir() and overwrite:
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path
