"""The zoo table, and the downloader against a local HTTP server on 127.0.0.1 serving the tiny fixture."""

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from conftest import fixture_paths

from vptlens.agents import load_policy
from vptlens.agents.config import PolicyConfig
from vptlens.agents.policy import VPTPolicy
from vptlens.agents.zoo import (
    ARCHITECTURES,
    MANIFEST_NAME,
    ZOO,
    DownloadConfig,
    download,
    download_file,
    get_zoo_entry,
    list_zoo,
    main,
)

ENTRY = get_zoo_entry("foundation-model-2x")
MODEL, WEIGHTS = ENTRY.model_file, ENTRY.weights_file


class _Server:
    """Serves the tiny fixture under ENTRY's file names, with Range support; can misbehave on request.

    honour_range: answer a Range request with 206 (else the whole file, 200).
    cut_at: the first response for WEIGHTS sends only this many body bytes, then hangs up.
    fail_first: the first request is answered with this HTTP status.
    content_type: the Content-Type to send.
    """

    def __init__(self, honour_range=True, cut_at=None, fail_first=None, content_type="application/octet-stream"):
        model_path, weights_path = fixture_paths("vpt_tiny")
        self.files = {MODEL: model_path.read_bytes(), WEIGHTS: weights_path.read_bytes()}
        self.honour_range, self.cut_at, self.fail_first = honour_range, cut_at, fail_first
        self.requests: list[tuple[str, str | None]] = []  # (file name, Range header)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                rng = self.headers.get("Range")
                server.requests.append((name, rng))
                if server.fail_first is not None:
                    code, server.fail_first = server.fail_first, None
                    self.send_error(code)
                    return
                if name not in server.files:
                    self.send_error(404)
                    return
                data, start = server.files[name], 0
                if rng and server.honour_range:
                    start = int(rng.removeprefix("bytes=").rstrip("-"))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_at is not None and name == WEIGHTS:
                    body, server.cut_at = body[: server.cut_at], None
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/mirror"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server(request):
    s = _Server(**getattr(request, "param", {}))
    yield s
    s.close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest(dir_path) -> dict:
    return json.loads((dir_path / MANIFEST_NAME).read_text())


# ------------------------------------------------------------------------------------ the table


def test_table_is_consistent():
    for name, e in ZOO.items():
        assert e.name == name
        if e.shipped:  # nothing to fetch: every file is checked against its digest instead
            assert all(f.url == "" and len(f.sha256) == 64 for f in e.files.values())
        else:
            assert e.weights.url.startswith("https://")
        if e.is_agent:
            assert e.model_file.endswith(".model") and e.weights_file.endswith(".weights")
            assert e.shipped or e.architecture.width == e.width
        if e.parent is not None:
            assert get_zoo_entry(e.parent).width == e.width
    assert get_zoo_entry("steve1").model == get_zoo_entry("rl-from-foundation-2x").model  # VPT's 2x.model
    assert "attn.pth" in list_zoo() and "rl-from-early-game-2x" in list_zoo()
    with pytest.raises(ValueError, match="not an agent"):
        _ = get_zoo_entry("mineclip-attn").model_file


@pytest.mark.parametrize("width", sorted(ARCHITECTURES))
def test_architecture_parameter_counts_match_the_policy(width):
    a = ARCHITECTURES[width]
    with torch.device("meta"):  # no memory, no time: only the shapes
        policy = VPTPolicy(
            PolicyConfig(hidsize=a.hidsize, attention_heads=a.n_heads_assumed, impala_width=a.impala_width)
        )
    assert policy.n_params() == a.n_params


def test_unknown_name_suggests_close_matches():
    with pytest.raises(KeyError, match="Did you mean 'foundation-model-2x'") as e:
        get_zoo_entry("foundation-model-2")
    assert "steve1-prior" in str(e.value)  # and lists every valid name
    with pytest.raises(KeyError, match="rl-from-early-game-2x"):
        DownloadConfig("rl-from-earlygame-2x")


# ------------------------------------------------------------------------------ the downloader


def test_full_download_is_byte_identical_and_recorded(server, tmp_path):
    paths = download("foundation-model-2x", tmp_path, base_url=server.base_url, progress=False)
    assert set(paths) == {"model", "weights"}
    manifest = _manifest(tmp_path)
    for name in (MODEL, WEIGHTS):
        assert (tmp_path / name).read_bytes() == server.files[name]
        record = manifest[name]
        assert record["sha256"] == _sha(server.files[name]) and record["size"] == len(server.files[name])
        assert record["url"] == server.url(name) and record["time"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([MODEL, WEIGHTS, MANIFEST_NAME])  # no .part left
    load_policy(paths["model"], paths["weights"])  # and the files work

    n_requests = len(server.requests)
    assert download("foundation-model-2x", tmp_path, base_url=server.base_url, progress=False) == paths
    assert len(server.requests) == n_requests and _manifest(tmp_path) == manifest  # present files: checked, kept


def test_a_url_downloads_one_file(server, tmp_path):
    paths = download(server.url(MODEL), tmp_path, progress=False)
    assert paths == {"file": tmp_path / MODEL} and paths["file"].read_bytes() == server.files[MODEL]
    with pytest.raises(ValueError, match="zoo names only"):
        download(server.url(MODEL), tmp_path, base_url=server.base_url)


@pytest.mark.parametrize("server", [{"cut_at": 100_000}], indirect=True)
def test_a_dropped_connection_is_resumed_with_range(server, tmp_path):
    sha = download_file(server.url(WEIGHTS), tmp_path / WEIGHTS, progress=False)
    assert server.requests == [(WEIGHTS, None), (WEIGHTS, "bytes=100000-")]
    assert (tmp_path / WEIGHTS).read_bytes() == server.files[WEIGHTS] and sha == _sha(server.files[WEIGHTS])
    assert not (tmp_path / (WEIGHTS + ".part")).exists()


@pytest.mark.parametrize("server", [{"cut_at": 100_000}], indirect=True)
def test_an_interrupted_download_resumes_on_the_next_run(server, tmp_path):
    dest, part = tmp_path / WEIGHTS, tmp_path / (WEIGHTS + ".part")
    with pytest.raises(ConnectionError, match="run the download again to resume"):
        download_file(server.url(WEIGHTS), dest, progress=False, n_retries=0)
    assert part.stat().st_size == 100_000 and not dest.exists()
    download_file(server.url(WEIGHTS), dest, progress=False, n_retries=0)
    assert server.requests[-1] == (WEIGHTS, "bytes=100000-")
    assert dest.read_bytes() == server.files[WEIGHTS] and not part.exists()


def test_a_partial_file_left_behind_is_resumed(server, tmp_path):
    (tmp_path / (WEIGHTS + ".part")).write_bytes(server.files[WEIGHTS][:12345])
    download("foundation-model-2x", tmp_path, base_url=server.base_url, progress=False)
    assert (WEIGHTS, "bytes=12345-") in server.requests
    assert (tmp_path / WEIGHTS).read_bytes() == server.files[WEIGHTS]
    assert _manifest(tmp_path)[WEIGHTS]["sha256"] == _sha(server.files[WEIGHTS])


def test_a_whole_partial_file_is_finished_without_refetching(server, tmp_path):
    (tmp_path / (WEIGHTS + ".part")).write_bytes(server.files[WEIGHTS])  # crashed before the rename
    download_file(server.url(WEIGHTS), tmp_path / WEIGHTS, progress=False)
    assert server.requests == [(WEIGHTS, f"bytes={len(server.files[WEIGHTS])}-")]  # answered 416
    assert (tmp_path / WEIGHTS).read_bytes() == server.files[WEIGHTS]


@pytest.mark.parametrize("server", [{"honour_range": False}], indirect=True)
def test_a_server_ignoring_range_still_gives_the_right_file(server, tmp_path):
    (tmp_path / (WEIGHTS + ".part")).write_bytes(b"stale bytes that must not survive")
    download_file(server.url(WEIGHTS), tmp_path / WEIGHTS, progress=False)
    assert server.requests == [(WEIGHTS, "bytes=33-")]  # asked to resume, got a 200: started over
    assert (tmp_path / WEIGHTS).read_bytes() == server.files[WEIGHTS]


@pytest.mark.parametrize("server", [{"fail_first": 503}], indirect=True)
def test_a_server_error_is_retried(server, tmp_path):
    download_file(server.url(MODEL), tmp_path / MODEL, progress=False)
    assert len(server.requests) == 2 and (tmp_path / MODEL).read_bytes() == server.files[MODEL]


def test_a_404_is_a_clear_error_and_leaves_nothing(server, tmp_path):
    with pytest.raises(FileNotFoundError, match="HTTP 404"):
        download_file(server.url("nothing.weights"), tmp_path / "nothing.weights", progress=False)
    with pytest.raises(FileNotFoundError, match="HTTP 404"):
        download("rl-from-house-2x", tmp_path, base_url=server.base_url, progress=False)  # the server lacks it
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([MODEL, MANIFEST_NAME])  # 2x.model came first
    assert len(server.requests) == 2 + 1  # a 404 is not retried


def test_a_digest_mismatch_keeps_nothing_under_the_final_name(server, tmp_path):
    with pytest.raises(ValueError, match="sha256 .* deleted"):
        download_file(server.url(MODEL), tmp_path / MODEL, expected_sha256="0" * 64, progress=False)
    with pytest.raises(ValueError, match="md5"):
        download_file(server.url(MODEL), tmp_path / MODEL, expected_md5="0" * 32, progress=False)
    assert list(tmp_path.iterdir()) == []
    md5 = hashlib.md5(server.files[MODEL]).hexdigest()
    sha = download_file(
        server.url(MODEL), tmp_path / MODEL, expected_sha256=_sha(server.files[MODEL]), expected_md5=md5, progress=False
    )
    assert sha == _sha(server.files[MODEL])


@pytest.mark.parametrize("server", [{"content_type": "text/html; charset=utf-8"}], indirect=True)
def test_a_web_page_instead_of_the_file_is_an_error(server, tmp_path):
    with pytest.raises(ConnectionError, match="web page"):
        download_file(server.url(WEIGHTS), tmp_path / WEIGHTS, progress=False)
    assert not (tmp_path / WEIGHTS).exists()


# ------------------------------------------------------------------------------------ the command


def test_main_lists_and_downloads(server, tmp_path, capsys):
    assert main(DownloadConfig(list=True)) == {}
    assert "rl-from-foundation-2x" in capsys.readouterr().out
    paths = main(DownloadConfig("foundation-model-2x", dir=tmp_path, base_url=server.base_url))
    out = capsys.readouterr().out
    assert _sha(server.files[WEIGHTS]) in out and str(paths["weights"]) in out and "--zoo foundation-model-2x" in out
    with pytest.raises(ValueError, match="--list"):
        DownloadConfig()


def test_a_shipped_entry_resolves_to_the_package_checked_against_its_digests(tmp_path, monkeypatch, capsys):
    """The model organism ships inside the package: nothing to download, the files' sha256 checked at every use,
    and the recorder's zoo agents resolve to them."""
    import shutil

    from vptlens.agents import zoo
    from vptlens.agents.zoo import ZooEntry, ZooFile, shipped_files
    from vptlens.recordings.recorder import RecordConfig, agent_files

    model, weights = fixture_paths("vpt_tiny")
    shutil.copy(model, tmp_path / "tiny.model")
    shutil.copy(weights, tmp_path / "tiny.weights")
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    entry = ZooEntry(
        name="tiny-shipped", kind="organism", description="test", shipped=True, source="vpt-lens",
        model=ZooFile("tiny.model", "", sha256=digest(model)),
        weights=ZooFile("tiny.weights", "", sha256=digest(weights)),
    )  # fmt: skip
    monkeypatch.setattr(zoo, "SHIPPED_DIR", tmp_path)
    monkeypatch.setitem(zoo.ZOO, entry.name, entry)
    assert shipped_files(entry) == {"model": tmp_path / "tiny.model", "weights": tmp_path / "tiny.weights"}
    assert agent_files(RecordConfig(zoo="tiny-shipped")) == (tmp_path / "tiny.model", tmp_path / "tiny.weights")
    assert main(DownloadConfig("tiny-shipped", dir=tmp_path / "dl")) == shipped_files(entry)
    assert "ships with vpt-lens" in capsys.readouterr().out and not (tmp_path / "dl").exists()
    assert "(shipped)" in list_zoo()
    (tmp_path / "tiny.weights").write_bytes(b"corrupt")
    with pytest.raises(ValueError, match="sha256.*reinstall"):
        shipped_files(entry)
    assert (tmp_path / "tiny.weights").read_bytes() == b"corrupt"  # the package's file is reported, not deleted
    with pytest.raises(ValueError, match="not shipped"):
        shipped_files(get_zoo_entry("foundation-model-2x"))


def test_the_shipped_organism_loads_as_a_vpt_policy_with_its_provenance():
    """The package's own checkpoints: digests match, the released layout loads, and the provenance says how they
    were made (a damaged or half-updated ship fails here, not in a user's experiment)."""
    import json

    from vptlens.agents.loading import load_policy
    from vptlens.agents.zoo import SHIPPED_DIR, shipped_files

    trained = shipped_files(get_zoo_entry("blockworld-chopper"))
    untrained = shipped_files(get_zoo_entry("blockworld-chopper-untrained"))
    assert trained["model"] == untrained["model"]
    a, b = load_policy(*trained.values()), load_policy(*untrained.values())
    assert a.cfg == b.cfg and a.cfg.img_shape == (128, 128, 3) and a.n_params() == 3_078_011
    assert not torch.equal(
        a.state_dict()["pi_head.buttons.linear_layer.bias"], b.state_dict()["pi_head.buttons.linear_layer.bias"]
    )
    provenance = json.loads((SHIPPED_DIR / "blockworld-chopper.json").read_text())
    assert provenance["files"] == {
        p.name: get_zoo_entry(n).files[r].sha256
        for n in ("blockworld-chopper", "blockworld-chopper-untrained")
        for r, p in shipped_files(get_zoo_entry(n)).items()
    }
    assert provenance["training"]["config"]["hidsize"] == 128 and provenance["frames"] > 0
    # its competence evaluation (scripts/ship_organism.py --evaluation): the organism against its teacher, per seed
    measured = {(r["agent"], r["metric"]): r["result"] for r in provenance["evaluation"]["summaries"]}
    assert {"expert", "organism", "untrained"} <= {agent for agent, _ in measured}
    assert measured["organism", "logs_broken"]["n"] == len(provenance["evaluation"]["seeds"]) >= 30


def test_the_shipped_64x64_checkpoint_loads_with_its_provenance_and_evaluation():
    """`blockworld-chopper-64`: a checkpoint shipped beside the organism so that training can go on from it
    (`--init-from`); its digests, its 64x64 input and the evaluation in its provenance are checked here."""
    import json

    from vptlens.agents.loading import load_policy
    from vptlens.agents.zoo import SHIPPED_DIR, shipped_files

    entry = get_zoo_entry("blockworld-chopper-64")
    files = shipped_files(entry)
    policy = load_policy(*files.values())
    assert policy.cfg.img_shape == (64, 64, 3) and policy.n_params() == 2_285_435
    provenance = json.loads((SHIPPED_DIR / "blockworld-chopper-64.json").read_text())
    assert provenance["files"] == {p.name: entry.files[r].sha256 for r, p in files.items()}
    config = provenance["training"]["config"]
    assert (config["img_size"], config["terrain"], config["expert_sight"]) == (64, "forest", "visible")
    assert "--img-size 64" in provenance["reproduce"] and provenance["frames"] >= 1_000_000
    measured = {(r["agent"], r["metric"]): r["result"] for r in provenance["evaluation"]["summaries"]}
    assert {"expert", "organism64", "untrained64"} <= {agent for agent, _ in measured}
    assert measured["organism64", "logs_broken"]["n"] == len(provenance["evaluation"]["seeds"]) == 16


def test_the_hold_weight_checkpoint_names_the_checkpoint_it_was_trained_from():
    """`blockworld-chopper-64-hold`: `blockworld-chopper-64` after one DAgger round with `--hold-weight 3`; its
    provenance chains to the shipped files it began from (their digests) and carries its paired evaluation."""
    import json

    from vptlens.agents.loading import load_policy
    from vptlens.agents.zoo import SHIPPED_DIR, shipped_files

    entry, start = get_zoo_entry("blockworld-chopper-64-hold"), get_zoo_entry("blockworld-chopper-64")
    files = shipped_files(entry)
    assert load_policy(*files.values()).cfg == load_policy(*shipped_files(start).values()).cfg
    provenance = json.loads((SHIPPED_DIR / "blockworld-chopper-64-hold.json").read_text())
    assert provenance["files"] == {p.name: entry.files[r].sha256 for r, p in files.items()}
    config = provenance["training"]["config"]
    assert (config["hold_weight"], config["expert_explore"], config["betas"]) == (3.0, "look", [0.75])
    began_from = provenance["training"]["init_from"]
    assert began_from == {p.name: start.files[r].sha256 for r, p in shipped_files(start).items()}
    measured = {(r["agent"], r["metric"]): r["result"] for r in provenance["evaluation"]["summaries"]}
    assert {"shipped64", "hold64"} <= {agent for agent, _ in measured}
    assert measured["hold64", "logs_broken"]["n"] == len(provenance["evaluation"]["seeds"]) == 30


def test_the_planted_organism_differs_from_its_sibling_only_in_the_trunks():
    """`blockworld-chopper-64-cleric` (the planted variant) and `blockworld-chopper-64-hold` began from the same shipped
    checkpoint and were trained with the same settings and data seeds; only their worlds' trunks differ."""
    import json

    from vptlens.agents.zoo import SHIPPED_DIR, shipped_files
    from vptlens.training.bc import RUNTIME_FIELDS

    def provenance(name):
        return json.loads((SHIPPED_DIR / f"{name}.json").read_text())

    planted, sibling = provenance("blockworld-chopper-64-cleric"), provenance("blockworld-chopper-64-hold")
    assert planted["training"]["init_from"] == sibling["training"]["init_from"]
    assert planted["frames"] == sibling["frames"] == 633_856
    skip = RUNTIME_FIELDS | {"out", "frames_per_round"}  # the sibling's round was planned longer and stopped here
    config, before = planted["training"]["config"], sibling["training"]["config"]  # the sibling's predates --trunks
    differing = {k for k, v in config.items() if k not in skip and before.get(k, "bark") != v}
    assert differing == {"trunks"} and planted["training"]["config"]["trunks"] == "cleric"
    assert "--trunks cleric" in planted["reproduce"]
    entry = get_zoo_entry("blockworld-chopper-64-cleric")
    assert planted["files"] == {p.name: entry.files[r].sha256 for r, p in shipped_files(entry).items()}
    measured = {(r["agent"], r["metric"]): r["result"] for r in planted["evaluation"]["summaries"]}
    assert measured["planted", "logs_broken"]["n"] == 30  # in cleric forests, beside its sibling
