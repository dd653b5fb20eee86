"""`vptlens serve PATH --export OUT.html`: one episode's player as a single HTML file that works opened from disk,
offline, with no server.

The file runs the viewer's own front end: `static/index.html` with the stylesheet inlined, and the ES modules of
`static/` embedded verbatim, which `static/snapshot.js` loads as blob: URLs (a page opened from disk can load no
module from a file). It answers the modules' requests from the API's answers embedded in the file. Those answers
are asked of the app itself, in process, at the URLs the player asks for, so the snapshot shows what the server
shows and cannot drift from it. What is embedded: the episode's metadata, traces, events and key frames (each
layer), the frame sprites of the chosen steps and of the memory before them (the frames attention points at),
and each layer's attention of the chosen steps for the chosen heads (gzip, inflated by the browser).

Steering, saliency and full-resolution frames need the server and its agent, so a snapshot leaves them out.
"""

import asyncio
import base64
import gzip
import html
import json
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette

from vptlens.recordings.schema import provenance
from vptlens.viewer.app import STATIC_DIR, make_app
from vptlens.viewer.registry import Registry

logger = logging.getLogger(__name__)

ENTRY_MODULE = "app.js"
LOADER = "snapshot.js"
_IMPORT = re.compile(r'^import \{[^}]*\} from "\./([\w-]+\.js)";$', re.M)
_STEPS = re.compile(r"^(\d*):(\d*)$")


@dataclass(frozen=True)
class StepRange:
    """Steps start..stop-1 of an episode, as `--steps START:STOP` gives them (either end may be left out)."""

    start: int | None = None
    stop: int | None = None

    @classmethod
    def parse(cls, text: str | None) -> "StepRange":
        match = _STEPS.match((text or ":").strip())
        if match is None:
            raise ValueError(f"--steps {text!r}: give START:STOP, e.g. 100:700 (STOP excluded; 100: runs to the end)")
        start, stop = (int(x) if x else None for x in match.groups())
        if start is not None and stop is not None and stop <= start:
            raise ValueError(f"--steps {text}: STOP must be above START")
        return cls(start, stop)

    def resolve(self, length: int) -> tuple[int, int]:
        """(start, stop) within an episode of `length` steps; ValueError with the episode's range otherwise."""
        start, stop = self.start or 0, length if self.stop is None else self.stop
        if not 0 <= start < stop <= length:
            raise ValueError(f"--steps {start}:{stop}: the episode has {length} steps; give a range within 0:{length}")
        return start, stop


def parse_heads(text: str | None) -> list[str]:
    """`mean`, `all` or a comma list such as `mean,0,5` -> the heads asked for, checked later against the episode."""
    heads = [h.strip() for h in (text or "mean").split(",") if h.strip()]
    if not heads or any(h not in ("mean", "all") and not h.isdigit() for h in heads):
        raise ValueError(f"--export-heads {text!r}: give mean, all, or a comma list such as mean,0,5")
    return heads


def find_episode(registry: Registry, episode: str | None) -> str:
    """The viewer id of the episode to export: `episode` is its directory (a path), its name (episode_000003.zarr,
    when one served run has it) or its id (r0e3); it may be left out when the served paths hold one episode."""
    ids = {f"{run.id}e{k}": path for run in registry.runs.values() for k, path in enumerate(run.episode_paths())}
    if episode is None:
        if len(ids) == 1:
            return next(iter(ids))
        names = ", ".join(p.name for p in list(ids.values())[:4])
        raise ValueError(f"the given paths hold {len(ids)} episodes: name one with --episode ({names}, ...)")
    if episode in ids:
        return episode
    if Path(episode).is_dir():
        named = [i for i, path in ids.items() if path.resolve() == Path(episode).resolve()]
    else:
        named = [i for i, path in ids.items() if path.name == Path(episode).name]
    if len(named) == 1:
        return named[0]
    if named:
        where = ", ".join(str(ids[i].parent) for i in named)
        raise ValueError(f"--episode {episode}: the runs in {where} all have it; give its directory instead")
    raise ValueError(
        f"--episode {episode}: no such episode among the {len(ids)} served; give its directory, or a name like "
        "episode_000003.zarr"
    )


def snapshot_urls(eid: str, meta: dict, start: int, stop: int, heads: list[str]) -> list[str]:
    """The player's requests for steps start..stop-1, as `snapshot.js` looks them up (the cache-busting `n`
    dropped, the query sorted): metadata, traces, key frames, frames from `memory` steps before `start`, attention."""
    base = f"/api/episodes/{eid}"
    urls = [base, f"{base}/traces", *(f"{base}/keyframes?layer={layer}" for layer in meta["layers"])]
    per_sprite, per_chunk = meta["sprite_steps"], meta["attention_chunk"]
    first = max(0, start - meta["memory"]) // per_sprite
    urls += [f"{base}/sprite/{b}" for b in range(first, (stop - 1) // per_sprite + 1)]
    for layer in meta["layers"]:
        for head in heads:
            chunks = range(start // per_chunk, (stop - 1) // per_chunk + 1)
            urls += [f"{base}/attention?chunk={c}&head={head}&layer={layer}" for c in chunks]
    return urls


async def _get(app: Starlette, url: str) -> tuple[int, str, bytes]:
    """GET `url` of the app in process (what a browser on the loopback would get): status, media type, body."""
    path, _, query = url.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0),
    }
    messages: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        messages.append(message)

    await app(scope, receive, send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    media = dict(start["headers"]).get(b"content-type", b"").decode().split(";")[0]
    return start["status"], media, b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


def get_answers(app: Starlette, urls: list[str]) -> dict[str, dict]:
    """Each URL's answer as the snapshot stores it: JSON as JSON, binary as base64 (attention gzipped first: float32
    widened from the store's float16 halves in size). Error answers are kept as errors, shown where the server
    would show them (a damaged chunk)."""

    async def all_answers() -> dict[str, dict]:
        out = {}
        for url in urls:
            status, media, body = await _get(app, url)
            if media == "application/json":
                out[url] = {"status": status, "json": json.loads(body)}
            elif media == "application/octet-stream":
                out[url] = {"status": status, "type": media, "gzip": base64.b64encode(gzip.compress(body, 6)).decode()}
            else:
                out[url] = {"status": status, "type": media, "base64": base64.b64encode(body).decode()}
        return out

    return asyncio.run(all_answers())


def module_order(sources: dict[str, str]) -> list[str]:
    """The modules reachable from the entry module, each after the modules it imports (the order blob: URLs are
    made in: a module's URL names its imports' URLs). Every import must be `import {...} from "./name.js";`."""
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in order:
            return
        assert name not in path, f"static/{name}: circular import through {path}"
        text = sources[name]
        deps = _IMPORT.findall(text)
        n_imports = len(re.findall(r"^import\b", text, re.M))
        assert len(deps) == n_imports, f"static/{name}: an import snapshot.js cannot load"
        for dep in deps:
            visit(dep, (*path, name))
        order.append(name)

    visit(ENTRY_MODULE, ())
    return order


def _script_json(obj) -> str:
    """JSON safe inside <script type="application/json">: no '<' can close the element early."""
    return json.dumps(obj, separators=(",", ":")).replace("<", "\\u003c")


def _replace_once(text: str, pattern: str, new: str, flags: int = 0) -> str:
    out, n = re.subn(pattern, lambda _: new, text, flags=flags)
    assert n == 1, f"static/index.html: expected one match of {pattern!r}, found {n}"
    return out


def render_html(snapshot: dict) -> str:
    """index.html made self-contained: the stylesheet inline, the navigation replaced by what the snapshot is, the
    modules and answers as JSON, and the loader."""
    sources = {p.name: p.read_text("utf-8") for p in sorted(STATIC_DIR.glob("*.js")) if p.name != LOADER}
    order = module_order(sources)
    modules = {"order": order, "sources": {name: sources[name] for name in order}}
    loader = (STATIC_DIR / LOADER).read_text("utf-8")
    css = (STATIC_DIR / "style.css").read_text("utf-8")
    assert "</script" not in loader and "</style" not in css
    start, stop = snapshot["steps"]
    note = (
        f"snapshot of {snapshot['name']}, steps {start}..{stop - 1}, exported {snapshot['provenance']['created']} "
        f"(vptlens {snapshot['provenance']['package_version']}): offline, no steering or saliency"
    )
    page = (STATIC_DIR / "index.html").read_text("utf-8")
    page = _replace_once(page, r'<link rel="stylesheet" href="/static/style.css">', f"<style>\n{css}</style>")
    page = _replace_once(page, r'<script type="module" src="/static/app.js"></script>\n', "")
    page = re.sub(r'<link rel="modulepreload" href="[^"]*">\n', "", page)
    page = _replace_once(page, r"<title>[^<]*</title>", f"<title>{html.escape(snapshot['name'])} (vpt-lens)</title>")
    page = _replace_once(page, r'href="#/" class="brand"', f'href="#/episode/{snapshot["episode"]}" class="brand"')
    page = _replace_once(page, r"<nav>.*</nav>", f'<span class="snapshot-note">{html.escape(note)}</span>', re.S)
    scripts = (
        f'<script type="application/json" id="vptlens-modules">{_script_json(modules)}</script>\n'
        f'<script type="application/json" id="vptlens-snapshot">{_script_json(snapshot)}</script>\n'
        f"<script>\n{loader}</script>\n"
    )
    return _replace_once(page, r"</body>", scripts + "</body>")


def export_episode(
    registry: Registry,
    episode: str | None,
    steps: StepRange,
    heads: list[str],
    out_path: Path,
    config: object | None = None,
) -> dict:
    """Write the snapshot of one served episode's steps to `out_path` (`config`: the command's, for the provenance);
    returns what it holds and its size by part."""
    eid = find_episode(registry, episode)
    with tempfile.TemporaryDirectory(prefix="vptlens-export-") as work_dir:
        app = make_app(registry, Path(work_dir))
        meta_answer = get_answers(app, [f"/api/episodes/{eid}"])[f"/api/episodes/{eid}"]
        if meta_answer["status"] != 200:
            raise ValueError(f"cannot export {eid}: {meta_answer['json']['error']}")
        meta = meta_answer["json"]
        start, stop = steps.resolve(meta["length"])
        known = ["mean", *map(str, range(meta["heads"]))]
        chosen = known if "all" in heads else heads
        unknown = [h for h in chosen if h not in known]
        if unknown:
            raise ValueError(
                f"--export-heads: the episode has heads 0..{meta['heads'] - 1} and their mean, not {unknown}"
            )
        answers = get_answers(app, snapshot_urls(eid, meta, start, stop, chosen if meta["layers"] else []))
    snapshot = {
        "episode": eid,
        "name": meta["name"],
        "steps": [start, stop],
        "heads": chosen,
        "provenance": provenance(config, episode=str(registry.episode_path(eid))),
        "answers": answers,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(render_html(snapshot), "utf-8")
    size = {"total": out_path.stat().st_size}
    for kind in ("sprite", "attention"):
        size[kind] = sum(len(json.dumps(a)) for url, a in answers.items() if f"/{kind}" in url)
    size["other"] = size["total"] - size["sprite"] - size["attention"]
    logger.info(
        "wrote %s: %s steps %d..%d, %.1f MB (frames %.1f, attention %.1f, the rest %.1f)",
        out_path,
        meta["name"],
        start,
        stop - 1,
        *(size[k] / 1e6 for k in ("total", "sprite", "attention", "other")),
    )
    return {"episode": eid, "steps": [start, stop], "heads": chosen, "bytes": size}
