"""`vptlens serve PATH...`: the local web viewer of runs, episodes, SAEs and experiments (`viewer.app`), on uvicorn.

It binds 127.0.0.1 by default. Another address makes the server reachable from other machines, so it then
needs a token (`--token`), which every request must carry: the printed URL has it. With `--export OUT.html` it
serves nothing and writes one episode's player as a self-contained page instead (`viewer.export`).
"""

import ipaddress
import logging
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import tyro
import uvicorn

from vptlens.viewer.app import make_app
from vptlens.viewer.export import StepRange, export_episode, parse_heads
from vptlens.viewer.policies import Policies
from vptlens.viewer.registry import Registry

logger = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServeConfig:
    """Serve runs, SAEs and experiments in a local web app: episode player with attention, SAE feature browser,
    steering, experiment reports. Prints the URL to open. With --export, writes one episode's player as a
    self-contained HTML file that works offline instead."""

    paths: tyro.conf.Positional[tuple[Path, ...]]
    """Run directories, episodes (episode_*.zarr), SAE directories, experiment directories, or folders holding them
    (looked into 3 levels deep). Nothing outside them is served."""
    host: str = "127.0.0.1"
    """Address to bind. Anything but a loopback address (127.0.0.1, ::1, localhost) needs --token."""
    port: int = 8765
    """Port to listen on (0: any free port)."""
    token: str | None = None
    """Access token every request must carry (at least 16 characters), e.g. from
    `python -c "import secrets; print(secrets.token_urlsafe())"`. Required with a non-loopback --host."""
    work_dir: Path | None = None
    """Where closed-loop experiments launched from the player are recorded, and served from (default: a new temporary
    directory)."""
    device: str = "cpu"
    """Torch device of the agents replayed (steering, the effect of SAE latents)."""
    model: Path | None = None
    """The agent's .model file for replays of runs that do not keep their agent (recorded before RUN/agent/ existed);
    its sha256 must match each recording's."""
    weights: Path | None = None
    """The agent's .weights file, with --model."""
    export: Path | None = None
    """Serve nothing: write the player of one episode (--episode, --steps) to this .html file, which works opened
    from disk with no server or network (frames, attention, traces, events and key frames embedded; no steering
    or saliency). About 4 MB for 600 BlockWorld steps with the mean attention."""
    episode: str | None = None
    """With --export: the episode, by its directory, its name (episode_000003.zarr) or its viewer id (r0e3); not
    needed when the paths hold a single episode."""
    steps: str | None = None
    """With --export: the steps START:STOP (STOP excluded, either may be left out), e.g. 100:700 (default: all)."""
    export_heads: str | None = None
    """With --export: the attention embedded for each layer: mean (default), all (the mean and every head: VPT's 16
    heads multiply its share ~17-fold), or a comma list such as mean,0,5."""

    def __post_init__(self):
        if not self.paths:
            raise ValueError("give at least one path to serve: a run, an episode, an SAE or an experiment directory")
        if (self.model is None) != (self.weights is None):
            raise ValueError("give --model and --weights together (the agent files of runs that do not keep them)")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port {self.port}: give 0..65535 (0: any free port)")
        if self.token is not None and len(self.token) < MIN_TOKEN_CHARS:
            raise ValueError(
                f"--token is too short to guard anything: give at least {MIN_TOKEN_CHARS} characters, "
                'e.g. from python -c "import secrets; print(secrets.token_urlsafe())"'
            )
        if self.export is None and (self.episode, self.steps, self.export_heads) != (None, None, None):
            raise ValueError(
                "--episode, --steps and --export-heads choose what --export writes: pass --export OUT.html too"
            )
        if self.export is not None:
            if self.export.suffix.lower() not in (".html", ".htm"):
                raise ValueError(f"--export {self.export}: give the .html file to write, e.g. --export snapshot.html")
            StepRange.parse(self.steps)
            parse_heads(self.export_heads)
        if not is_loopback(self.host) and self.token is None:
            raise ValueError(
                f"--host {self.host} lets other machines connect: pass --token SECRET too (e.g. --token "
                '$(python -c "import secrets; print(secrets.token_urlsafe())")), or keep the default 127.0.0.1'
            )

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def make_server(cfg: ServeConfig) -> tuple[uvicorn.Server, socket.socket, str]:
    """The uvicorn server, its bound socket and the URL to open (nothing runs yet: `server.run(sockets=[sock])`)."""
    registry = Registry.from_paths(list(cfg.paths))
    work_dir = cfg.work_dir or Path(tempfile.mkdtemp(prefix="vptlens-serve-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    registry.add(work_dir)  # closed-loop experiments an earlier server recorded there
    policies = Policies(cfg.device, cfg.model, cfg.weights)
    app = make_app(registry, work_dir, token=cfg.token, loopback=cfg.loopback, policies=policies)
    family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
    # IPPROTO_TCP: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say so; with proto 0 every small answer
    # waited ~40 ms for the client's delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((cfg.host, cfg.port))
    except OSError as e:
        sock.close()
        raise ValueError(f"cannot listen on {cfg.host}:{cfg.port} ({e.strerror}); pass another --port (0: any)") from e
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if cfg.host in ("0.0.0.0", "localhost") else f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    url = f"http://{shown}:{port}/" + (f"?token={cfg.token}" if cfg.token else "")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    logger.info(
        "serving %d runs, %d SAEs, %d experiments; closed-loop runs go to %s",
        len(registry.runs),
        len(registry.saes),
        len(registry.experiments),
        work_dir,
    )
    return server, sock, url


def main(cfg: ServeConfig) -> None:
    """Serve until Ctrl-C; or, with --export, write the snapshot and return."""
    if cfg.export is not None:
        registry = Registry.from_paths(list(cfg.paths))
        done = export_episode(
            registry, cfg.episode, StepRange.parse(cfg.steps), parse_heads(cfg.export_heads), cfg.export, cfg
        )
        start, stop = done["steps"]
        print(f"vptlens serve: wrote {cfg.export} ({done['bytes']['total'] / 1e6:.1f} MB, steps {start}..{stop - 1})")
        return
    server, sock, url = make_server(cfg)
    print(f"vptlens serve: open {url}  (Ctrl-C stops)", flush=True)
    server.run(sockets=[sock])
