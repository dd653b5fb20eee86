"""`vptlens serve --export`: the offline snapshot of an episode's player holds the API's own answers for the chosen
steps, fetches nothing, and refuses what it cannot write. (Opening it in Chromium: test_viewer_browser.py.)"""

import base64
import gzip
import json
import re

import httpx
import pytest
from test_viewer_helpers import served, start

from vptlens.viewer import serve
from vptlens.viewer.app import STATIC_DIR, make_app
from vptlens.viewer.export import StepRange, export_episode, module_order, parse_heads
from vptlens.viewer.registry import Registry


@pytest.fixture(scope="module")
def data(tiny_run, tmp_path_factory):
    return served(tiny_run, tmp_path_factory.getbasetemp() / "viewer")


@pytest.fixture(scope="module")
def registry(data):
    return Registry.from_paths([data.run, data.broken])


@pytest.fixture(scope="module")
def client(registry, tmp_path_factory):
    url, stop = start(make_app(registry, tmp_path_factory.mktemp("work")))
    with httpx.Client(base_url=url, timeout=60) as c:
        yield c
    stop()


def embedded(page: str, element_id: str) -> dict:
    match = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', page, re.S)
    return json.loads(match.group(1))


def decode(answer: dict) -> bytes:
    if "gzip" in answer:
        return gzip.decompress(base64.b64decode(answer["gzip"]))
    return base64.b64decode(answer["base64"])


def test_the_snapshot_holds_the_apis_answers_for_the_chosen_steps(registry, client, tmp_path):
    out = tmp_path / "snap.html"
    done = export_episode(registry, "r0e1", StepRange(40, 100), parse_heads("mean,2"), out)
    page = out.read_text()
    assert not re.search(r"https?://", page)  # nothing to fetch from anywhere
    assert not re.search(r'(src|href)="(?!#)', page)  # no file beside it either: everything inline
    snapshot = embedded(page, "vptlens-snapshot")
    assert snapshot["steps"] == done["steps"] == [40, 100] and snapshot["heads"] == ["mean", "2"]
    assert snapshot["provenance"]["episode"].endswith("episode_000001.zarr")
    e = "/api/episodes/r0e1"
    expected = {e, f"{e}/traces", f"{e}/keyframes?layer=0", f"{e}/keyframes?layer=1"}
    expected |= {f"{e}/sprite/{b}" for b in range(0, 7)}  # steps 8..99: the memory (32 steps) before 40, then 40..99
    chunks = [(c, h, layer) for c in (0, 1) for h in ("mean", "2") for layer in (0, 1)]
    expected |= {f"{e}/attention?chunk={c}&head={h}&layer={layer}" for c, h, layer in chunks}
    assert set(snapshot["answers"]) == expected
    for url, answer in snapshot["answers"].items():
        live = client.get(url)
        assert answer["status"] == live.status_code == 200, url
        if "json" in answer:
            assert answer["json"] == live.json(), url
        else:
            assert answer["type"] == live.headers["content-type"] and decode(answer) == live.content, url
    modules = embedded(page, "vptlens-modules")
    assert modules["order"][-1] == "app.js" and {"player.js", "util.js", "frames.js"} <= set(modules["order"])
    for name in modules["order"]:
        assert modules["sources"][name] == (STATIC_DIR / name).read_text()  # verbatim: the same front end


def test_a_damaged_chunk_is_embedded_as_the_servers_error(registry, client, tmp_path):
    out = tmp_path / "holed.html"
    export_episode(registry, "r1e1", StepRange(None, None), ["mean"], out)  # frames chunk 1 (steps 64..127) missing
    answers = embedded(out.read_text(), "vptlens-snapshot")["answers"]
    holed = answers["/api/episodes/r1e1/sprite/4"]
    assert holed["status"] == 422 and holed["json"] == client.get("/api/episodes/r1e1/sprite/4").json()
    assert answers["/api/episodes/r1e1/sprite/0"]["status"] == 200


def test_module_order_puts_imports_first_and_refuses_what_the_loader_cannot_load():
    sources = {"app.js": 'import {a} from "./b.js";\n', "b.js": 'import {c} from "./c.js";\nexport const a = 1;\n'}
    assert module_order({**sources, "c.js": "export const c = 2;\n"}) == ["c.js", "b.js", "app.js"]
    with pytest.raises(AssertionError, match="cannot load"):
        module_order({**sources, "c.js": 'import * as x from "./d.js";\n'})


def test_export_through_main_and_its_errors(data, tmp_path, capsys):
    lone = sorted(data.run.glob("episode_*.zarr"))[2]
    serve.main(serve.ServeConfig(paths=(lone,), export=tmp_path / "lone.html", steps="100:"))  # needs no --episode
    assert "steps 100..127" in capsys.readouterr().out and (tmp_path / "lone.html").stat().st_size > 10_000
    serve.main(serve.ServeConfig(paths=(data.run,), export=tmp_path / "named.html", episode="episode_000003.zarr"))
    assert embedded((tmp_path / "named.html").read_text(), "vptlens-snapshot")["episode"] == "r0e3"
    both, by_path = (data.run, data.broken), tmp_path / "by_path.html"
    serve.main(serve.ServeConfig(paths=both, export=by_path, episode=str(data.broken / "episode_000001.zarr")))
    assert embedded(by_path.read_text(), "vptlens-snapshot")["episode"] == "r1e1"  # the directory, not the name
    with pytest.raises(ValueError, match="give its directory instead"):
        serve.main(serve.ServeConfig(paths=both, export=by_path, episode="episode_000001.zarr"))
    for kwargs, words in (
        ({}, "name one with --episode"),
        ({"episode": "episode_000009.zarr"}, "no such episode"),
        ({"episode": "r0e0", "steps": "100:200"}, "has 128 steps"),
        ({"episode": "r0e0", "export_heads": "mean,7"}, "heads 0..3"),
    ):
        with pytest.raises(ValueError, match=words):
            serve.main(serve.ServeConfig(paths=(data.run,), export=tmp_path / "x.html", **kwargs))
    for kwargs, words in (
        ({"episode": "r0e0"}, "pass --export"),
        ({"export": tmp_path / "x.txt"}, ".html file"),
        ({"export": tmp_path / "x.html", "steps": "9:3"}, "above START"),
        ({"export": tmp_path / "x.html", "steps": "a:b"}, "START:STOP"),
        ({"export": tmp_path / "x.html", "export_heads": "first"}, "comma list"),
    ):
        with pytest.raises(ValueError, match=words):
            serve.ServeConfig(paths=(data.run,), **kwargs)
