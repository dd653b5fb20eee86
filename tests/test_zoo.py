"""The downloader against a local HTTP server on 127.0.0.1 serving the tiny fixture."""

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import fixture_paths

from vptlens.agents import load_policy
from vptlens.agents.zoo import DownloadConfig, download, download_file, get_zoo_entry, main

ENTRY = get_zoo_entry("foundation-model-2x")


class _Server:
    """Serves the tiny fixture under a zoo entry's file names; can ignore Range or cut a response short."""

    def __init__(self, honour_range=True, cut_first_response_at=None):
        model, weights = fixture_paths("vpt_tiny")
        self.files = {ENTRY.model_file: model.read_bytes(), ENTRY.weights_file: weights.read_bytes()}
        self.honour_range = honour_range
        self.cut_at = cut_first_response_at
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                rng = self.headers.get("Range")
                server.requests.append((name, rng))
                if name not in server.files:
                    self.send_error(404)
                    return
                data, start = server.files[name], 0
                if rng and server.honour_range:
                    start = int(rng.removeprefix("bytes=").rstrip("-"))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_at is not None and name == ENTRY.weights_file:
                    self.wfile.write(body[: server.cut_at])
                    server.cut_at = None
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def server(request):
    s = _Server(**getattr(request, "param", {}))
    yield s
    s.close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_full_download_is_byte_identical_and_recorded(server, tmp_path):
    paths = download("foundation-model-2x", tmp_path, base_url=server.url, progress=False)
    for role, name in (("model", ENTRY.model_file), ("weights", ENTRY.weights_file)):
        assert paths[role].read_bytes() == server.files[name]
    manifest = json.loads((tmp_path / "zoo_manifest.json").read_text())
    assert manifest[ENTRY.weights_file]["sha256"] == _sha(server.files[ENTRY.weights_file])
    assert manifest[ENTRY.weights_file]["url"] == f"{server.url}/{ENTRY.weights_file}"
    load_policy(paths["model"], paths["weights"])  # and the files work


@pytest.mark.parametrize("server", [{"cut_first_response_at": 100_000}], indirect=True)
def test_interrupted_download_resumes_with_range(server, tmp_path):
    url, dest = f"{server.url}/{ENTRY.weights_file}", tmp_path / ENTRY.weights_file
    with pytest.raises(ConnectionError, match="resume"):
        download_file(url, dest, progress=False)
    assert (tmp_path / (ENTRY.weights_file + ".part")).stat().st_size == 100_000 and not dest.exists()
    digest = download_file(url, dest, progress=False)
    assert server.requests[-1] == (ENTRY.weights_file, "bytes=100000-")
    assert dest.read_bytes() == server.files[ENTRY.weights_file] and digest == _sha(dest.read_bytes())
    assert not (tmp_path / (ENTRY.weights_file + ".part")).exists()


@pytest.mark.parametrize("server", [{"honour_range": False}], indirect=True)
def test_server_ignoring_range_still_gives_the_right_file(server, tmp_path):
    part = tmp_path / (ENTRY.weights_file + ".part")
    part.write_bytes(b"garbage that must not survive")
    download_file(f"{server.url}/{ENTRY.weights_file}", tmp_path / ENTRY.weights_file, progress=False)
    assert (tmp_path / ENTRY.weights_file).read_bytes() == server.files[ENTRY.weights_file]


def test_sha_mismatch_keeps_nothing_under_the_final_name(server, tmp_path):
    with pytest.raises(ValueError, match="does not match"):
        download_file(
            f"{server.url}/{ENTRY.model_file}", tmp_path / "x.model", expected_sha256="0" * 64, progress=False
        )
    assert not (tmp_path / "x.model").exists()


def test_404_is_a_clear_error(server, tmp_path):
    with pytest.raises(ConnectionError, match="HTTP 404"):
        download_file(f"{server.url}/nothing.weights", tmp_path / "nothing.weights", progress=False)
    assert not (tmp_path / "nothing.weights").exists()


def test_unknown_name_suggests_close_matches():
    with pytest.raises(KeyError, match="foundation-model-2x"):
        get_zoo_entry("foundation-model-2")


def test_main_lists_and_downloads(server, tmp_path, capsys):
    assert main(DownloadConfig(list=True)) is None
    assert "rl-from-foundation-2x" in capsys.readouterr().out
    paths = main(DownloadConfig("foundation-model-2x", dir=tmp_path, base_url=server.url))
    assert "sha256" in capsys.readouterr().out and paths["model"].exists()
