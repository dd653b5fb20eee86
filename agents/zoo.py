"""The model zoo: the released VPT / STEVE-1 checkpoints, and a resumable downloader.

Nothing here touches the network except `download` (`vptlens download NAME`). A file is
streamed to `<file>.part`, resumed with an HTTP Range request after an interruption (in
the same call, or the next one), checked against a published digest where there is one,
renamed into place when whole, and its sha256 recorded in `<dir>/zoo_manifest.json`.

Sources: the VPT README's model zoo (openai/Video-Pre-Training) and STEVE-1's
`download_weights.sh` and `steve1/config.py` (Shalev-Lifshitz/STEVE-1).
"""

import datetime as dt
import difflib
import hashlib
import http.client
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import tyro
from tqdm import tqdm

logger = logging.getLogger(__name__)

MANIFEST_NAME = "zoo_manifest.json"
_CHUNK_BYTES = 1 << 20
_VPT_URL = "https://openaipublic.blob.core.windows.net/minecraft-rl/models"
# STEVE-1 lists `gdown https://drive.google.com/uc?id=ID`; for files this large that page asks for a
# confirmation, which this host skips (it is where gdown ends up).
_DRIVE_URL = "https://drive.usercontent.google.com/download?export=download&confirm=t&id="


class _TransientError(Exception):
    """A failure worth another attempt (a dropped connection, a timeout, a 5xx)."""


# ------------------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Architecture:
    """The sizes of a released width. The `.model` file is the authority: `vptlens info` prints it."""

    width: str
    """1x, 2x or 3x."""
    hidsize: int
    """Residual stream width d."""
    attention_heads: int | None
    """Heads n per block; None where we could not check it against a released `.model` file."""
    impala_width: int
    """Multiplier on the ImpalaCNN channels (16, 32, 32)."""
    n_params: int
    """Parameters of the VPT policy as vpt-lens builds it (STEVE-1 adds 512 * d + d for its goal projection).

    Heads count too (each block's relative-position layer has 10 rows a head): where they are
    unknown, n_params assumes a head width of 128, as in 1x and 2x.
    """
    n_layers: int = 4
    """Transformer blocks (`n_recurrence_layers`)."""

    @property
    def n_heads_assumed(self) -> int:
        """attention_heads, or hidsize / 128 where it is unknown (what n_params assumes)."""
        return self.attention_heads or self.hidsize // 128

    @property
    def approx_weights_bytes(self) -> int:
        """The `.weights` file is a float32 state dict: about 4 bytes a parameter."""
        return 4 * self.n_params


ARCHITECTURES: dict[str, Architecture] = {
    "1x": Architecture("1x", hidsize=1024, attention_heads=8, impala_width=4, n_params=70_998_651),
    "2x": Architecture("2x", hidsize=2048, attention_heads=16, impala_width=8, n_params=248_495_291),
    "3x": Architecture("3x", hidsize=3072, attention_heads=None, impala_width=12, n_params=532_504_315),
}


@dataclass(frozen=True)
class ZooFile:
    """One downloadable file."""

    file_name: str
    """Name on disk (and under a mirror's --base-url)."""
    url: str
    """Where it is fetched from."""
    sha256: str | None = None
    """Published sha256, checked after download; None where none is published (every VPT file)."""
    md5: str | None = None
    """Published md5 (MineCLIP's checkpoint has one, in STEVE-1's config), checked after download."""


@dataclass(frozen=True)
class ZooEntry:
    """A released checkpoint: an agent (`.model` + `.weights`) or a companion (MineCLIP, STEVE-1's prior)."""

    name: str
    """Zoo name, as given to `vptlens download`."""
    kind: str
    """foundation, bc (fine-tuned by behavioural cloning), rl (diamond-pickaxe reward), steve1, mineclip, prior or
    organism (trained by vpt-lens, shipped)."""
    description: str
    """One line for `vptlens download --list`."""
    weights: ZooFile
    """The weights (for MineCLIP and the prior: their checkpoint)."""
    model: ZooFile | None = None
    """The architecture file (`.model`, a pickle of keyword arguments); None for non-agents."""
    width: str | None = None
    """1x, 2x or 3x for agents (a key of ARCHITECTURES)."""
    parent: str | None = None
    """The checkpoint this one was fine-tuned from, where the release says."""
    source: str = "VPT README"
    """Where the files are listed."""
    shipped: bool = False
    """The files ship inside the package (`agents/organism/`): nothing to download (the model organism)."""

    @property
    def is_agent(self) -> bool:
        return self.model is not None

    @property
    def architecture(self) -> Architecture | None:
        return ARCHITECTURES[self.width] if self.width else None

    @property
    def files(self) -> dict[str, ZooFile]:
        """Role ('model', 'weights') -> file, in download order."""
        return {"model": self.model, "weights": self.weights} if self.model else {"weights": self.weights}

    @property
    def model_file(self) -> str:
        if self.model is None:
            raise ValueError(f"'{self.name}' is a {self.kind} checkpoint, not an agent: it has no .model file")
        return self.model.file_name

    @property
    def weights_file(self) -> str:
        return self.weights.file_name


def _vpt(name: str, kind: str, width: str, description: str, parent: str | None = None) -> ZooEntry:
    model = "2x.model" if width == "2x" else f"foundation-model-{width}.model"  # the README's names
    return ZooEntry(
        name=name,
        kind=kind,
        description=description,
        model=ZooFile(model, f"{_VPT_URL}/{model}"),
        weights=ZooFile(f"{name}.weights", f"{_VPT_URL}/{name}.weights"),
        width=width,
        parent=parent,
    )


_STEVE1 = "STEVE-1 download_weights.sh"
_ORGANISM_SHA256 = {  # printed by scripts/ship_organism.py
    "model": "3b0a1eb1530df45159e01f39f68a0534291f804dff3146166fbb00b3c63a0c56",
    "weights": "1f5fed470910c59a787d2da28e3a4f50ba0adc7937a294aab9c7816fc5d2f299",
    "untrained": "05e02778413eaf8ebcca9ff70d3bc062ad716a03b57c6e1fae32cbc1e49a5e4c",
}
_ORGANISM_64_SHA256 = {  # printed by scripts/ship_organism.py --name blockworld-chopper-64
    "model": "9bdb154d202e571adbc68dccdf315db3c7c38d010c6ce9bff3a544e6e9749c31",
    "weights": "7b2703785ac64a5e46f7aed2e96b0dc8159a4706e9015a62a20fc65a9ea0beec",
}
_ORGANISM_64_HOLD_WEIGHTS_SHA256 = (  # printed by scripts/ship_organism.py --name blockworld-chopper-64-hold
    "4dc5b04ef5bfa94bc27836cd3916d5b44b3f8e16088481b7985f2c87a3cce05c"  # its .model is -64's (the same architecture)
)
_ORGANISM_64_CLERIC_WEIGHTS_SHA256 = (  # printed by scripts/ship_organism.py --name blockworld-chopper-64-cleric
    "3f9dd436fc14ea488462f32f0126321fde43fcfce9336e13f50689b5d674b5ba"  # its .model is -64's too
)


def _shipped_organism(name: str, description: str, *, model: tuple[str, str], weights: tuple[str, str]) -> ZooEntry:
    """A checkpoint shipped in `agents/organism/` (scripts/ship_organism.py): (file name, sha256) per file."""
    return ZooEntry(
        name=name,
        kind="organism",
        description=description,
        model=ZooFile(model[0], "", sha256=model[1]),
        weights=ZooFile(weights[0], "", sha256=weights[1]),
        source="vpt-lens (scripts/ship_organism.py)",
        shipped=True,
    )


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        _vpt("foundation-model-1x", "foundation", "1x", "behavioural cloning on all (IDM-labelled) web video"),
        _vpt("foundation-model-2x", "foundation", "2x", "behavioural cloning on all (IDM-labelled) web video"),
        _vpt("foundation-model-3x", "foundation", "3x", "behavioural cloning on all (IDM-labelled) web video"),
        _vpt("bc-early-game-2x", "bc", "2x", "fine-tuned on early-game video", "foundation-model-2x"),
        _vpt("bc-early-game-3x", "bc", "3x", "fine-tuned on early-game video", "foundation-model-3x"),
        _vpt("bc-house-3x", "bc", "3x", "fine-tuned on house-building contractor data", "foundation-model-3x"),
        _vpt(
            "rl-from-foundation-2x",
            "rl",
            "2x",
            "RL (diamond pickaxe reward) from foundation",
            "foundation-model-2x",
        ),
        _vpt("rl-from-house-2x", "rl", "2x", "RL (diamond pickaxe reward) from a house model"),
        _vpt("rl-from-early-game-2x", "rl", "2x", "RL (diamond pickaxe reward) from early game", "bc-early-game-2x"),
        ZooEntry(
            name="steve1",
            kind="steve1",
            description="rl-from-foundation-2x fine-tuned to follow MineCLIP goal embeddings",
            model=ZooFile("2x.model", f"{_VPT_URL}/2x.model"),
            weights=ZooFile("steve1.weights", f"{_DRIVE_URL}1E3fd_-H1rRZqMkUKHfiMhx-ppLLehQPI"),
            width="2x",
            parent="rl-from-foundation-2x",
            source=_STEVE1,
        ),
        ZooEntry(
            name="steve1-prior",
            kind="prior",
            description="STEVE-1's CVAE prior: MineCLIP text embedding -> visual goal embedding",
            weights=ZooFile("steve1_prior.pt", f"{_DRIVE_URL}1OdX5wiybK8jALVfP5_dEo0CWm9BQbDES"),
            source=_STEVE1,
        ),
        ZooEntry(
            name="mineclip-attn",
            kind="mineclip",
            description="MineCLIP (attn pooling) checkpoint, as STEVE-1 uses it",
            weights=ZooFile(
                "attn.pth", f"{_DRIVE_URL}1uaZM1ZLBz2dZWcn85rZmjP7LV6Sg5PZW", md5="b5ece9198337cfd117a3bfbd921e56da"
            ),
            source=_STEVE1,
        ),
        _shipped_organism(
            "blockworld-chopper",
            "the model organism: VPT's architecture (d=128, 3.1M params) trained by BC + DAgger to chop trees in "
            "BlockWorld (agents/organism/blockworld-chopper.json)",
            model=("blockworld-chopper.model", _ORGANISM_SHA256["model"]),
            weights=("blockworld-chopper.weights", _ORGANISM_SHA256["weights"]),
        ),
        _shipped_organism(
            "blockworld-chopper-untrained",
            "the model organism's architecture at its initialisation, before any training (a control)",
            model=("blockworld-chopper.model", _ORGANISM_SHA256["model"]),
            weights=("blockworld-chopper-untrained.weights", _ORGANISM_SHA256["untrained"]),
        ),
        _shipped_organism(
            "blockworld-chopper-64",
            "a 64x64-input organism (forest, visible teacher, 1.5M expert frames) that chops the tree in front of it "
            "but seldom finds one (not competent); `make demo` runs it, and training goes on from it "
            "(agents/organism/blockworld-chopper-64.json)",
            model=("blockworld-chopper-64.model", _ORGANISM_64_SHA256["model"]),
            weights=("blockworld-chopper-64.weights", _ORGANISM_64_SHA256["weights"]),
        ),
        _shipped_organism(
            "blockworld-chopper-64-hold",
            "blockworld-chopper-64 after one DAgger round (the look-around teacher, --hold-weight 3, 634k frames): "
            "0.90 logs per forest episode against 0.37, the best checkpoint so far, not competent; training goes on "
            "from it (agents/organism/blockworld-chopper-64-hold.json)",
            model=("blockworld-chopper-64-hold.model", _ORGANISM_64_SHA256["model"]),
            weights=("blockworld-chopper-64-hold.weights", _ORGANISM_64_HOLD_WEIGHTS_SHA256),
        ),
        _shipped_organism(
            "blockworld-chopper-64-cleric",
            "the planted variant: blockworld-chopper-64-hold's sibling (the same start, round and seeds) trained where "
            "every trunk wears a cleric villager's robe; record it with --env.trunks cleric; the plant did not take "
            "(agents/organism/blockworld-chopper-64-cleric.json, README 'A planted organism')",
            model=("blockworld-chopper-64-cleric.model", _ORGANISM_64_SHA256["model"]),
            weights=("blockworld-chopper-64-cleric.weights", _ORGANISM_64_CLERIC_WEIGHTS_SHA256),
        ),
    )
}


SHIPPED_DIR = Path(__file__).parent / "organism"
"""Where the package's own checkpoints (the model organism) lie."""


def shipped_files(entry: ZooEntry) -> dict[str, Path]:
    """Role -> path of a shipped entry's files, each checked against its sha256 (a damaged install is refused)."""
    if not entry.shipped:
        raise ValueError(f"'{entry.name}' is not shipped with the package: `vptlens download {entry.name}`")
    paths = {}
    for role, f in entry.files.items():
        path = SHIPPED_DIR / f.file_name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing from the installed package; reinstall vpt-lens")
        if f.sha256 and get_file_digests(path)[0] != f.sha256:  # never deleted: it is the installed package's own file
            raise ValueError(f"{path}: its sha256 is not the one shipped; the install is damaged: reinstall vpt-lens")
        paths[role] = path
    return paths


def get_zoo_entry(name: str) -> ZooEntry:
    """The zoo entry called `name`; a KeyError naming the close matches and every valid name otherwise."""
    if name in ZOO:
        return ZOO[name]
    close = difflib.get_close_matches(name, ZOO, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise KeyError(f"no checkpoint named '{name}' in the zoo.{hint} Valid names: {', '.join(ZOO)}.")


def list_zoo() -> str:
    """The zoo as a text table (`vptlens download --list`)."""
    rows = [("name", "kind", "width", "d", "heads", "params", "files", "description")]
    for e in ZOO.values():
        a = e.architecture
        arch = (a.hidsize, a.attention_heads or "?", f"{a.n_params / 1e6:.0f}M") if a else ("", "", "")
        files = " + ".join(f.file_name for f in e.files.values()) + (" (shipped)" if e.shipped else "")
        rows.append((e.name, e.kind, e.width or "", *map(str, arch), files, e.description))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows]
    return "\n".join(lines) + "\nparams: the VPT policy as vpt-lens builds it (weights files are ~4 bytes a parameter)."


# ------------------------------------------------------------------------------ the downloader


def get_file_digests(path: str | Path) -> tuple[str, str]:
    """(sha256, md5) of a file, read once."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def _check_digests(path: Path, url: str, expected_sha256: str | None, expected_md5: str | None) -> str:
    sha, md5 = get_file_digests(path)
    for algo, got, want in (("sha256", sha, expected_sha256), ("md5", md5, expected_md5)):
        if want and got != want.lower():
            path.unlink()
            raise ValueError(
                f"{url}: the downloaded file's {algo} is {got}, the published one {want}; the file is corrupt or "
                f"not the released one (a wrong mirror?). It was deleted; run the download again."
            )
    return sha


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """'bytes 100-199/200' -> (100, 200); 'bytes */200' -> (None, 200)."""
    try:
        span, total = header.split(" ", 1)[1].split("/")
        return (None if span == "*" else int(span.split("-")[0])), (None if total == "*" else int(total))
    except (AttributeError, IndexError, ValueError):
        return None, None


def _fetch_once(url: str, part: Path, timeout_s: float, progress: bool) -> None:
    """One request: append to `part` after a 206, rewrite it after a 200; `_TransientError` if cut short."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "vpt-lens"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and offset:  # nothing after our offset: the .part is whole, or stale
            if _content_range(e.headers.get("Content-Range"))[1] == offset:
                return
            part.unlink()
            raise _TransientError("the server cannot resume from our partial file; starting over") from e
        if e.code == 429 or e.code >= 500:
            raise _TransientError(f"HTTP {e.code} {e.reason}") from e
        if e.code in (404, 410):
            raise FileNotFoundError(
                f"{url}: HTTP {e.code}, no such file on the server. Check the name (`vptlens download --list`); "
                "a --base-url mirror must serve the zoo's file names directly under it."
            ) from e
        raise ConnectionError(f"{url}: HTTP {e.code} {e.reason}; check the URL, or use --base-url for a mirror") from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise _TransientError(str(getattr(e, "reason", e))) from e
    with response:
        if response.status == 206:
            start, _ = _content_range(response.headers.get("Content-Range"))
            if start != offset:
                part.unlink()
                raise _TransientError(f"the server resumed at byte {start}, not {offset}; starting over")
        else:
            if offset:
                logger.info("%s: the server ignored the Range request; downloading the whole file again", url)
            offset = 0
        if "text/html" in response.headers.get("Content-Type", "") and not part.name.endswith(".html.part"):
            raise ConnectionError(
                f"{url}: the server sent a web page, not the file (Google Drive does this when a file's download "
                f"quota is used up). Fetch it in a browser into {part.parent}/{part.name.removesuffix('.part')}, "
                "or use --base-url for a mirror."
            )
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        _stream(response, part, "ab" if offset else "wb", offset, total, progress)
    size = part.stat().st_size
    if total is not None and size != total:
        if size > total:
            part.unlink()
        raise _TransientError(f"the connection closed after {size} of {total} bytes")


def _stream(response, part: Path, mode: str, offset: int, total: int | None, progress: bool) -> None:
    name = part.name.removesuffix(".part")
    # A bar on a terminal (disable=None: tqdm decides); periodic log lines otherwise.
    bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=name, disable=None if progress else True)
    t0 = last_log = time.monotonic()
    n_new = 0
    with open(part, mode) as f, bar:
        while True:
            try:
                chunk = response.read(_CHUNK_BYTES)
            except (OSError, http.client.HTTPException) as e:
                raise _TransientError(f"the connection broke after {offset + n_new} bytes ({e!r})") from e
            if not chunk:
                return
            f.write(chunk)
            n_new += len(chunk)
            bar.update(len(chunk))
            now = time.monotonic()
            if progress and bar.disable and now - last_log > 30:
                last_log, rate = now, n_new / (now - t0)
                eta = f", ETA {(total - offset - n_new) / rate:.0f} s" if total else ""
                logger.info("%s: %.0f MB at %.1f MB/s%s", name, (offset + n_new) / 1e6, rate / 1e6, eta)


def download_file(
    url: str,
    dest_path: str | Path,
    *,
    expected_sha256: str | None = None,
    expected_md5: str | None = None,
    progress: bool = True,
    timeout_s: float = 60.0,
    n_retries: int = 3,
) -> str:
    """Fetch `url` to `dest_path` through `<dest>.part`, resuming it; return the file's sha256.

    A dropped connection, a timeout or a 5xx is retried `n_retries` times, each resuming with a
    Range request; after that a ConnectionError says to run again (the .part stays, to resume).
    A digest mismatch deletes the .part: nothing bad ever lands under `dest_path`.
    """
    dest_path = Path(dest_path)
    part = dest_path.with_name(dest_path.name + ".part")
    for attempt in range(n_retries + 1):
        try:
            _fetch_once(url, part, timeout_s, progress)
            break
        except _TransientError as e:
            size = part.stat().st_size if part.exists() else 0
            if attempt == n_retries:
                raise ConnectionError(
                    f"{url}: {e}. Gave up after {n_retries + 1} attempts; run the download again to resume "
                    f"from {part} ({size} bytes)."
                ) from e
            wait_s = 2**attempt - 1  # 0, 1, 3, 7 s
            logger.warning("%s: %s; retrying in %d s from byte %d", url, e, wait_s, size)
            time.sleep(wait_s)
    sha = _check_digests(part, url, expected_sha256, expected_md5)
    os.replace(part, dest_path)
    return sha


def _load_manifest(dest_dir: Path) -> dict:
    path = dest_dir / MANIFEST_NAME
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); delete it and download again to rebuild it") from e


def _record(dest_dir: Path, path: Path, url: str | None, sha: str) -> None:
    manifest = _load_manifest(dest_dir)
    if manifest.get(path.name, {}).get("sha256") == sha:
        return  # already recorded, with where it came from
    manifest[path.name] = {
        "sha256": sha,
        "size": path.stat().st_size,
        "url": url,  # None: found on disk, not downloaded by us
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    tmp = dest_dir / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, dest_dir / MANIFEST_NAME)


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _zoo_file_for_url(url: str) -> ZooFile:
    for entry in ZOO.values():
        for f in entry.files.values():
            if f.url == url:
                return f
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    if not name:
        raise ValueError(f"{url}: no file name at the end of the URL's path; download it by zoo name instead")
    return ZooFile(name, url)


def download(
    name_or_url: str, dest_dir: str | Path, *, base_url: str | None = None, progress: bool = True
) -> dict[str, Path]:
    """Download a zoo checkpoint's files (or one URL) into `dest_dir`; return role -> path.

    Roles are 'model' and 'weights' for an agent, 'weights' for MineCLIP and the prior, and
    'file' for a URL. Files already in `dest_dir` are re-hashed, not fetched again. `base_url`
    fetches `{base_url}/{file_name}` instead of the released URL (a mirror, or a test server).
    """
    dest_dir = Path(dest_dir)
    if _is_url(name_or_url):
        if base_url:
            raise ValueError("base_url applies to zoo names only; give the mirror's full URL instead")
        targets = {"file": _zoo_file_for_url(name_or_url)}
    else:
        entry = get_zoo_entry(name_or_url)
        if entry.shipped:
            logger.info("%s ships with the package: nothing to download", entry.name)
            return shipped_files(entry)
        targets = entry.files
    if base_url is not None and not _is_url(base_url):
        raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
    dest_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for role, f in targets.items():
        url = f"{base_url.rstrip('/')}/{urllib.parse.quote(f.file_name)}" if base_url else f.url
        path = dest_dir / f.file_name
        if path.exists():
            logger.info("%s is already there; checking it", path)
            sha = _check_digests(path, str(path), f.sha256, f.md5)
            _record(dest_dir, path, None, sha)
        else:
            sha = download_file(url, path, expected_sha256=f.sha256, expected_md5=f.md5, progress=progress)
            _record(dest_dir, path, url, sha)
        paths[role] = path
    return paths


# ------------------------------------------------------------------------------------ the command


@dataclass(frozen=True)
class DownloadConfig:
    """Download a released VPT / STEVE-1 checkpoint (resumable; sha256 recorded in zoo_manifest.json)."""

    name: tyro.conf.Positional[str] = ""
    """Zoo name (see --list), e.g. foundation-model-2x, rl-from-foundation-2x, steve1; or a URL."""
    dir: Path = Path("checkpoints")
    """Directory to download into."""
    base_url: str | None = None
    """Fetch `{base_url}/{file name}` instead of the released URLs (a mirror of the zoo's files)."""
    list: bool = False
    """Print the zoo and exit."""

    def __post_init__(self):
        if not self.list and not self.name:
            raise ValueError("give a zoo NAME or a URL to download, or --list to see the zoo")
        if self.name and not _is_url(self.name):
            get_zoo_entry(self.name)


def main(cfg: DownloadConfig) -> dict[str, Path]:
    """Print the zoo (--list), or download and print each file's path and sha256; return role -> path."""
    if cfg.list:
        print(list_zoo())
        return {}
    paths = download(cfg.name, cfg.dir, base_url=cfg.base_url)
    if not _is_url(cfg.name) and get_zoo_entry(cfg.name).shipped:
        print(f"{cfg.name} ships with vpt-lens: " + ", ".join(str(p) for p in paths.values()))
        print(f"record with: vptlens record --zoo {cfg.name}")
        return paths
    manifest = _load_manifest(Path(cfg.dir))
    for role, path in paths.items():
        print(f"{role:<8} {path}  sha256 {manifest[path.name]['sha256']}")
    entry = None if _is_url(cfg.name) else get_zoo_entry(cfg.name)
    if entry is not None and entry.kind == "steve1":
        print(
            f"record with: vptlens record --zoo {cfg.name} --checkpoint-dir {cfg.dir} --prompt 'chop a tree' "
            "--cond-scale 6 (a prompt also needs mineclip-attn and steve1-prior: `vptlens download NAME`)"
        )
    elif entry is not None and entry.is_agent:
        print(f"record with: vptlens record --zoo {cfg.name} --checkpoint-dir {cfg.dir}")
    elif entry is not None:
        print(f"STEVE-1 finds it in --checkpoint-dir {cfg.dir} when recording with --prompt or --goal-video")
    return paths
