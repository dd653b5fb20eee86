"""The model zoo: released VPT and STEVE-1 checkpoints, and a resumable downloader.

Nothing is fetched at import or at run time: only `vptlens download NAME` reaches the
network. Downloads go to `<file>.part`, resume with an HTTP Range request, are renamed
into place when complete, and their sha256 is recorded in `zoo_manifest.json`.
"""

import datetime as dt
import difflib
import hashlib
import json
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import tyro
from tqdm import tqdm

logger = logging.getLogger(__name__)

_VPT = "https://openaipublic.blob.core.windows.net/minecraft-rl/models"
_DRIVE = "https://drive.usercontent.google.com/download?export=download&confirm=t&id="


@dataclass(frozen=True)
class ZooEntry:
    """A released checkpoint: an architecture file (`.model`) and its weights."""

    name: str
    width: str
    """1x, 2x or 3x: the released widths (2x is hidsize 2048, 16 heads, ~248M parameters)."""
    kind: str
    """foundation (behavioural cloning on all videos), bc fine-tune, rl (diamond-pickaxe reward), or steve1."""
    model_url: str
    weights_url: str
    description: str
    weights_sha256: str | None = None
    """Expected digest where one is published; None where none is (every VPT file, today)."""

    @property
    def model_file(self) -> str:
        return self.model_url.rsplit("/", 1)[-1]

    @property
    def weights_file(self) -> str:
        return "steve1.weights" if self.kind == "steve1" else self.weights_url.rsplit("/", 1)[-1]


def _vpt(name: str, width: str, kind: str, description: str) -> ZooEntry:
    model = "2x.model" if width == "2x" else f"foundation-model-{width}.model"
    return ZooEntry(name, width, kind, f"{_VPT}/{model}", f"{_VPT}/{name}.weights", description)


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        _vpt("foundation-model-1x", "1x", "foundation", "VPT foundation model, behavioural cloning on 70k hours"),
        _vpt("foundation-model-2x", "2x", "foundation", "VPT foundation model, behavioural cloning on 70k hours"),
        _vpt("foundation-model-3x", "3x", "foundation", "VPT foundation model, behavioural cloning on 70k hours"),
        _vpt("bc-house-3x", "3x", "bc", "foundation 3x fine-tuned on house-building contractor data"),
        _vpt("bc-early-game-2x", "2x", "bc", "foundation 2x fine-tuned on early-game videos"),
        _vpt("bc-early-game-3x", "3x", "bc", "foundation 3x fine-tuned on early-game videos"),
        _vpt("rl-from-foundation-2x", "2x", "rl", "RL fine-tune (diamond pickaxe reward) from the 2x foundation"),
        _vpt("rl-from-house-2x", "2x", "rl", "RL fine-tune (diamond pickaxe reward) from the house model"),
        _vpt("rl-from-early-game-2x", "2x", "rl", "RL fine-tune (diamond pickaxe reward) from early game"),
        ZooEntry(
            "steve1",
            "2x",
            "steve1",
            f"{_VPT}/2x.model",
            f"{_DRIVE}1E3fd_-H1rRZqMkUKHfiMhx-ppLLehQPI",
            "STEVE-1: rl-from-foundation-2x fine-tuned to follow MineCLIP goals (weights on Google Drive)",
        ),
    )
}


def get_zoo_entry(name: str) -> ZooEntry:
    if name in ZOO:
        return ZOO[name]
    close = difflib.get_close_matches(name, ZOO, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise KeyError(f"no checkpoint named '{name}' in the zoo.{hint} Known: {', '.join(ZOO)}")


def format_zoo() -> str:
    rows = [f"{'name':<24} {'width':<5} {'kind':<10} description"]
    rows += [f"{e.name:<24} {e.width:<5} {e.kind:<10} {e.description}" for e in ZOO.values()]
    return "\n".join(rows)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(
    url: str, dest_path: Path, *, expected_sha256: str | None = None, progress: bool = True, timeout: float = 60.0
) -> str:
    """Download `url` to `dest_path`, resuming a previous `.part`; return the file's sha256."""
    dest_path = Path(dest_path)
    part = dest_path.with_name(dest_path.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "vpt-lens"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # our .part is already whole or the server lost the file: start over
            part.unlink()
            return download_file(url, dest_path, expected_sha256=expected_sha256, progress=progress, timeout=timeout)
        raise ConnectionError(f"downloading {url}: HTTP {e.code} {e.reason}; check the name or --base-url") from e
    except (urllib.error.URLError, TimeoutError) as e:
        raise ConnectionError(f"downloading {url}: {e}; check the network, or use --base-url for a mirror") from e
    with response:
        resumed = response.status == 206
        if offset and not resumed:
            logger.info("%s: the server ignored the Range request; starting over", url)
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=dest_path.name, disable=not progress)
        with open(part, "ab" if resumed else "wb") as f, bar:
            while chunk := response.read(1 << 20):
                f.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size != total:
        raise ConnectionError(
            f"downloading {url}: got {size} of {total} bytes; run the command again to resume from {part}"
        )
    digest = sha256_of(part)
    if expected_sha256 and digest != expected_sha256:
        raise ValueError(
            f"{url}: sha256 {digest} does not match the published {expected_sha256}; the partial file is kept at "
            f"{part} for inspection. Delete it and download again."
        )
    os.replace(part, dest_path)
    return digest


def _record(dest_dir: Path, path: Path, url: str, digest: str) -> None:
    manifest_path = dest_dir / "zoo_manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest[path.name] = {
        "sha256": digest,
        "size": path.stat().st_size,
        "url": url,
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    tmp = manifest_path.with_name(manifest_path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, manifest_path)


def download(name: str, dest_dir: str | Path, *, base_url: str | None = None, progress: bool = True) -> dict[str, Path]:
    """Download a zoo checkpoint's `.model` and `.weights` into dest_dir (skipping files already there)."""
    entry = get_zoo_entry(name)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for role, url, file_name, expected in (
        ("model", entry.model_url, entry.model_file, None),
        ("weights", entry.weights_url, entry.weights_file, entry.weights_sha256),
    ):
        if base_url:
            url = f"{base_url.rstrip('/')}/{file_name}"
        path = dest_dir / file_name
        if path.exists():
            logger.info("%s already downloaded", path)
            digest = sha256_of(path)
        else:
            digest = download_file(url, path, expected_sha256=expected, progress=progress)
        _record(dest_dir, path, url, digest)
        paths[role] = path
    return paths


@dataclass(frozen=True)
class DownloadConfig:
    """Download a released VPT / STEVE-1 checkpoint (resumable; sha256 recorded in zoo_manifest.json)."""

    name: tyro.conf.Positional[str] = ""
    """Zoo name, e.g. foundation-model-2x, rl-from-foundation-2x, steve1 (see --list)."""
    dir: Path = Path("checkpoints")
    """Directory to download into."""
    base_url: str | None = None
    """Fetch the files from this URL prefix instead (a mirror, or a local server in tests)."""
    list: bool = False
    """Print the zoo and exit."""


def main(cfg: DownloadConfig) -> dict[str, Path] | None:
    if cfg.list or not cfg.name:
        print(format_zoo())
        return None
    paths = download(cfg.name, cfg.dir, base_url=cfg.base_url)
    manifest = json.loads((cfg.dir / "zoo_manifest.json").read_text())
    for role, path in paths.items():
        print(f"{role:<8} {path}  sha256 {manifest[path.name]['sha256']}")
    return paths
