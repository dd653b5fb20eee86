"""The web app: a JSON API over the served items (`registry`), and the front end from `static/` (plain ES modules,
no build step, nothing fetched from elsewhere).

Every endpoint answers an error as JSON (`{"error": ...}`, 404 for an unknown id, 422 for bad input or a damaged
episode, 202 with the job while background work runs), so a page shows what went wrong and the server goes on.
Access: bound to a loopback address, requests must name a loopback host (a web page elsewhere cannot reach the
server through DNS rebinding); with a token, every request carries it (`?token=` once, then a cookie, or an
`Authorization: Bearer` header). State-changing requests must be JSON POSTs, which other sites' pages cannot send
without a CORS preflight the server never grants.
"""

import functools
import hmac
import itertools
import logging
import threading
import traceback
from pathlib import Path
from urllib.parse import parse_qs, urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from vptlens.recordings.replayer import ReplayMismatch
from vptlens.recordings.store import DamagedEpisodeError
from vptlens.viewer import experiments, steering
from vptlens.viewer.episodes import EpisodeData, parse_steps
from vptlens.viewer.features import FeatureBrowser
from vptlens.viewer.jobs import Jobs, Pending
from vptlens.viewer.policies import Policies
from vptlens.viewer.registry import NotFound, Registry
from vptlens.viewer.saliency import SCALE_PERCENTILE, SCALE_SAMPLES, Saliency

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
COOKIE = "vptlens_token"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'self'",
    ),
]


class State:
    """What the endpoints share: the registry, the episode data caches, the feature browser, jobs and policies."""

    def __init__(self, registry: Registry, work_dir: Path, policies: Policies):
        self.registry = registry
        self.work_dir = Path(work_dir)
        self.data = EpisodeData()
        self.jobs = Jobs()
        self.policies = policies
        self.features = FeatureBrowser(registry, self.jobs, self.policies, self.data.open)
        self.saliency = Saliency(policies)
        self._lock = threading.Lock()

    def episode(self, episode_id: str):
        return self.data.open(self.registry.episode_path(episode_id))

    def new_job_dir(self, prefix: str) -> Path:
        """A new directory in the work directory (what an earlier server left there is kept)."""
        with self._lock:
            for i in itertools.count(1):
                path = self.work_dir / f"{prefix}{i:03d}"
                if not path.exists():
                    path.mkdir(parents=True)
                    return path


def _error(status: int, message: str, **extra) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split()), **extra}, status_code=status)


def api(fn):
    """An endpoint's errors as JSON answers (the server never falls over a bad request or a damaged episode)."""

    @functools.wraps(fn)
    def endpoint(request: Request):
        try:
            out = fn(request, request.app.state.viewer)
        except NotFound as e:
            return _error(404, str(e))
        except Pending as e:
            return JSONResponse({"pending": e.job.to_dict()}, status_code=202)
        except DamagedEpisodeError as e:
            return _error(422, str(e), damaged=True)
        except ReplayMismatch as e:
            return _error(422, str(e), replay_mismatch=True)
        except KeyError as e:
            return _error(422, e.args[0] if e.args else str(e))
        except (ValueError, TypeError, IndexError, FileNotFoundError) as e:
            return _error(422, str(e))
        except Exception as e:  # a bug, or the disk: say so on the page, keep serving
            logger.error("%s %s failed:\n%s", request.method, request.url.path, traceback.format_exc())
            return _error(500, f"internal error ({type(e).__name__}: {e}); the server log has the traceback")
        return out if isinstance(out, Response) else JSONResponse(out)

    return endpoint


def _int(request: Request, name: str, default: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        if default is None:
            raise ValueError(f"missing query parameter {name}=<integer>")
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: give an integer") from None


def _image(data: bytes) -> Response:
    return Response(data, media_type="image/jpeg", headers={"cache-control": "private, max-age=3600"})


async def _json_body(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise ValueError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    return body


# ------------------------------------------------------------------------------------------------ endpoints


@api
def list_runs(request: Request, s: State):
    runs = []
    for run in s.registry.runs.values():
        episodes = []
        for k, path in enumerate(run.episode_paths()):
            row = {"id": f"{run.id}e{k}", "name": path.name}
            try:
                row |= s.data.summary(s.data.open(path))
            except Exception as e:  # a damaged episode is a row with its error, not a failed page
                row |= {"status": "damaged", "error": f"{type(e).__name__}: {e}"}
            episodes.append(row)
        runs.append({"id": run.id, "name": run.name, "experiment": run.experiment, "episodes": episodes})
    return {"runs": runs}


@api
def episode_meta(request: Request, s: State):
    return {"id": request.path_params["eid"], **s.data.meta(s.episode(request.path_params["eid"]))}


@api
def episode_traces(request: Request, s: State):
    return s.data.traces(s.episode(request.path_params["eid"]))


@api
def episode_sprite(request: Request, s: State):
    return _image(s.data.sprite(s.episode(request.path_params["eid"]), request.path_params["block"]))


@api
def episode_full_sprite(request: Request, s: State):
    return _image(s.data.sprite(s.episode(request.path_params["eid"]), request.path_params["block"], full=True))


@api
def episode_attention(request: Request, s: State):
    episode = s.episode(request.path_params["eid"])
    head = request.query_params.get("head", "mean")
    data = s.data.attention(episode, _int(request, "layer"), head, _int(request, "chunk"))
    return Response(data, media_type="application/octet-stream", headers={"cache-control": "private, max-age=3600"})


@api
def episode_key_frames(request: Request, s: State):
    return {"key_frames": s.data.key_frames(s.episode(request.path_params["eid"]), _int(request, "layer"))}


@api
def episode_saliency(request: Request, s: State):
    png = s.saliency.sprite(s.episode(request.path_params["eid"]), request.path_params["block"])
    return Response(png, media_type="image/png", headers={"cache-control": "private, max-age=3600"})


@api
def episode_saliency_scale(request: Request, s: State):
    scale = s.saliency.scale(s.episode(request.path_params["eid"]))
    return {"scale": scale, "samples": SCALE_SAMPLES, "percentile": SCALE_PERCENTILE}


@api
def episode_strip(request: Request, s: State):
    steps = parse_steps(request.query_params.get("steps", ""))
    return _image(s.data.strip(s.episode(request.path_params["eid"]), steps, _int(request, "size", 64)))


def post(fn):
    """A JSON POST endpoint: the body parsed first (a form or a text body is refused: see the module's docstring)."""

    handler = api(fn)

    async def endpoint(request: Request):
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _error(415, "send the request as JSON (content-type: application/json)")
        try:
            request.state.body = await _json_body(request)
        except ValueError as e:
            return _error(422, str(e))
        return await run_in_threadpool(handler, request)

    return endpoint


@post
def episode_steer(request: Request, s: State):
    body = request.state.body
    edit = steering.make_edit(body.get("edit"), s.registry)
    episode = s.episode(request.path_params["eid"])
    return steering.open_loop(episode, s.policies, edit, int(body.get("start", 0)), int(body.get("n_steps", 32)))


@post
def episode_closed_loop(request: Request, s: State):
    body = request.state.body
    edit = steering.make_edit(body.get("edit"), s.registry)
    episode = s.episode(request.path_params["eid"])
    job_dir = s.new_job_dir("closed_loop_")
    spec = steering.closed_loop_spec(episode, s.policies, edit, int(body.get("n_steps", 200)), job_dir)
    job = s.jobs.start(
        "closed_loop",
        f"closed loop: {edit.describe()} from {episode.path.name}",
        lambda job: steering.closed_loop_job(spec, job_dir, s.registry, job),
    )
    return JSONResponse({"pending": job.to_dict()}, status_code=202)


@api
def list_saes(request: Request, s: State):
    return {"saes": [s.features.describe(item) for item in s.registry.saes.values()]}


@api
def sae_latents(request: Request, s: State):
    return s.features.latents(request.path_params["sid"])


@api
def sae_column(request: Request, s: State):
    return {
        "name": request.query_params.get("name", ""),
        "values": s.features.column(request.path_params["sid"], request.query_params.get("name", "")),
    }


@api
def sae_latent(request: Request, s: State):
    return s.features.latent(request.path_params["sid"], request.path_params["latent"])


@api
def sae_trace(request: Request, s: State):
    episode = request.query_params.get("episode", "")
    return {"values": s.features.trace(request.path_params["sid"], request.path_params["latent"], episode)}


@api
def sae_effect(request: Request, s: State):
    return s.features.effect(request.path_params["sid"], request.path_params["latent"])


@api
def list_experiments(request: Request, s: State):
    return {
        "experiments": [{"id": x.id, "name": x.name, "n_cells": len(x.cells)} for x in s.registry.experiments.values()]
    }


@api
def experiment_view(request: Request, s: State):
    return experiments.view(s.registry.experiment(request.path_params["xid"]), s.registry)


@api
def experiment_file(request: Request, s: State):
    path, media_type = experiments.file(s.registry.experiment(request.path_params["xid"]), request.path_params["name"])
    return FileResponse(path, media_type=media_type)


@api
def list_jobs(request: Request, s: State):
    return {"jobs": [job.to_dict() for job in s.jobs.all()]}


@api
def job_view(request: Request, s: State):
    return s.jobs.get(request.path_params["jid"]).to_dict()


def index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"cache-control": "no-cache"})


# ------------------------------------------------------------------------------------------------ access


class Guard:
    """ASGI middleware: the host check on loopback, the token when there is one, security headers on every answer."""

    def __init__(self, app, token: str | None, loopback: bool):
        self.app, self.token, self.loopback = app, token, loopback

    def _host_ok(self, scope) -> bool:
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        name = host[1:].split("]")[0] if host.startswith("[") else host.rsplit(":", 1)[0] if ":" in host else host
        return name in LOOPBACK_HOSTS

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_secured(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        if self.loopback and not self._host_ok(scope):
            response = PlainTextResponse("vptlens serve answers requests to localhost / 127.0.0.1 only", 403)
            return await response(scope, receive, send_secured)
        if self.token is not None:
            request = Request(scope)
            given = request.query_params.get("token")
            bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if given is not None and hmac.compare_digest(given, self.token):
                rest = {k: v for k, v in parse_qs(scope.get("query_string", b"").decode()).items() if k != "token"}
                url = scope["path"] + ("?" + urlencode(rest, doseq=True) if rest else "")
                response = RedirectResponse(url, 303)
                response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
                return await response(scope, receive, send_secured)
            cookie = request.cookies.get(COOKIE, "")
            if not (hmac.compare_digest(cookie, self.token) or (bearer and hmac.compare_digest(bearer, self.token))):
                response = PlainTextResponse(
                    "this server needs its token: open the URL `vptlens serve` printed (it ends in ?token=...)", 401
                )
                return await response(scope, receive, send_secured)
        await self.app(scope, receive, send_secured)


def make_app(
    registry: Registry,
    work_dir: Path,
    *,
    token: str | None = None,
    loopback: bool = True,
    policies: Policies | None = None,
) -> Starlette:
    """The app serving `registry`'s items; `work_dir` receives what the server records (closed-loop experiments);
    `policies` loads the agents replays need (default: each run's own agent files, on the CPU)."""
    e, x = "/api/episodes/{eid}", "/api/saes/{sid}/latents/{latent:int}"
    routes = [
        Route("/", index),
        Route("/api/runs", list_runs),
        Route(e, episode_meta),
        Route(e + "/traces", episode_traces),
        Route(e + "/sprite/{block:int}", episode_sprite),
        Route(e + "/frames_full/{block:int}", episode_full_sprite),
        Route(e + "/attention", episode_attention),
        Route(e + "/keyframes", episode_key_frames),
        Route(e + "/strip", episode_strip),
        Route(e + "/saliency/{block:int}", episode_saliency),
        Route(e + "/saliency_scale", episode_saliency_scale),
        Route(e + "/steer", episode_steer, methods=["POST"]),
        Route(e + "/closed_loop", episode_closed_loop, methods=["POST"]),
        Route("/api/saes", list_saes),
        Route("/api/saes/{sid}/latents", sae_latents),
        Route("/api/saes/{sid}/column", sae_column),
        Route(x, sae_latent),
        Route(x + "/trace", sae_trace),
        Route(x + "/effect", sae_effect),
        Route("/api/experiments", list_experiments),
        Route("/api/experiments/{xid}", experiment_view),
        Route("/api/experiments/{xid}/files/{name:path}", experiment_file),
        Route("/api/jobs", list_jobs),
        Route("/api/jobs/{jid}", job_view),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    middleware = [Middleware(Guard, token=token, loopback=loopback), Middleware(GZipMiddleware, compresslevel=5)]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.viewer = State(registry, work_dir, policies or Policies())
    return app
