"""How fast the viewer is on a long episode: opening it, and frames and attention while scrubbing and playing.

    python benchmarks/viewer.py [--run runs/bench_viewer] [--steps 6000] [--browser]
        [--baseline DIR --rounds 4] [--out benchmarks/results/viewer.json]

Records (once, into --run) a BlockWorld episode of --steps steps with the tiny fixture agent (4 heads, memory 32;
frames are 128x128 whatever the agent), then starts `vptlens serve` on it in its own process and measures over HTTP:

- open: the player's first requests, cold (a fresh server) and warm: the episode's metadata, the first frame
  sprite and attention chunk (the frame is drawn then), then the traces (value, entropy, keys, camera, events and
  the behaviour summary) and the key frames, which the page fills in as they come;
- every chunk cold: sprite and attention chunk latency over the whole episode (what a jump anywhere costs);
  scrubbing keeps up at 20 fps when a cold chunk (sprite + attention) arrives within one frame, 50 ms.

With --browser, headless Chromium (Debian's) also measures the page on a fresh server, in this order: time to the
first frame drawn (from the page's navigation start, and as the driver sees it); random scrubbing at 20 jumps per
second at once (cold: little is cached in the page or the server yet); playback for 5 s (steps advanced per
second, frames drawn from a loaded sprite vs placeholders); the time from a jump to a random step until its frame
is drawn (30 jumps, one at a time); then random scrubbing again, and by 24 steps (a drag of the slider). Scrubbing
scores the share of jumps whose own frame was drawn before the next one (a nearby frame shown meanwhile does not
count). Last, for clients that say how much of the episode's frames they hold (`window.__player.cache`): that, and
random scrubbing once they hold every frame sprite they will fetch (the page fetches them in the background).

With --baseline DIR (another vptlens as DIR/vptlens, e.g. `mkdir -p DIR/vptlens && git archive HEAD | tar -x -C
DIR/vptlens`), the page of that version and of this one are measured alternately, --rounds times each, back to
back: on a loaded machine only a comparison made at the same time means anything. Medians and ranges are printed.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from vptlens.viewer.browser import headless_chromium

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "vpt_tiny"


def record(run: Path, n_steps: int) -> Path:
    """The run's first episode, recorded when it is not there yet (or shorter than asked)."""
    from vptlens.envs.blockworld import BlockWorldConfig
    from vptlens.recordings import recorder
    from vptlens.recordings.store import Run

    if (run / "run.json").is_file():
        episodes = Run.open(run).episodes()
        if episodes and len(episodes[0]) >= n_steps:
            return episodes[0].path
        shutil.rmtree(run)
    cfg = recorder.RecordConfig(
        model=FIXTURE / "agent.model",
        weights=FIXTURE / "agent.weights",
        out=run,
        n_episodes=1,
        n_envs=1,
        n_steps=n_steps,
        env=BlockWorldConfig(height=128, width=128),
        seed=0,
        hooks=(),
        scene="villager_under_leaves",
    )
    recorder.main(cfg)
    return Run.open(run).episodes()[0].path


def start_server(path: Path, source: Path | None = None) -> tuple[subprocess.Popen, str]:
    """`vptlens serve PATH --port 0` in its own process, as a user runs it (the vptlens in `source`, else this one);
    returns it and its URL."""
    code = (
        "import sys; from pathlib import Path; from vptlens.viewer.serve import ServeConfig, main; "
        "main(ServeConfig(paths=(Path(sys.argv[1]),), port=0))"
    )
    env = {**os.environ, "PYTHONPATH": str(source)} if source is not None else None
    process = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    line = process.stdout.readline()
    if "open " not in line:
        process.kill()
        raise RuntimeError(f"the server did not start: {line!r}")
    return process, line.split("open ")[1].split()[0].rstrip("/")


def timed(client: httpx.Client, path: str) -> tuple[float, int]:
    start = time.perf_counter()
    response = client.get(path)
    response.raise_for_status()
    return 1000 * (time.perf_counter() - start), len(response.content)


def summary(ms: list[float]) -> dict:
    ordered = sorted(ms)
    return {
        "n": len(ms),
        "median_ms": statistics.median(ms),
        "p95_ms": ordered[int(0.95 * (len(ms) - 1))],
        "max_ms": ordered[-1],
    }


def measure_http(url: str, n_steps: int) -> dict:
    eid = "r0e0"
    out = {}
    with httpx.Client(base_url=url, timeout=120) as client:
        view_ms, view_bytes = timed(client, f"/api/episodes/{eid}")
        sprite_ms, sprite_bytes = timed(client, f"/api/episodes/{eid}/sprite/0")
        attention_ms, _ = timed(client, f"/api/episodes/{eid}/attention?layer=1&head=mean&chunk=0")
        traces_ms, traces_bytes = timed(client, f"/api/episodes/{eid}/traces")
        key_frames_ms, _ = timed(client, f"/api/episodes/{eid}/keyframes?layer=1")
        out["open_cold"] = {  # the player's first requests on a fresh server
            "view_ms": view_ms,
            "view_bytes": view_bytes,
            "first_sprite_ms": sprite_ms,
            "sprite_bytes": sprite_bytes,
            "first_attention_ms": attention_ms,
            "traces_ms": traces_ms,
            "traces_bytes": traces_bytes,
            "key_frames_ms": key_frames_ms,
            "total_ms": view_ms + sprite_ms + attention_ms,
        }
        warm = [timed(client, f"/api/episodes/{eid}")[0] for _ in range(5)]
        out["open_warm_view"] = summary(warm)
        view = client.get(f"/api/episodes/{eid}").json()
        sprite_steps, attention_steps = view["sprite_steps"], view["attention_chunk"]
        # a jump to a step whose store chunk is cold: the first sprite of each chunk, then its attention
        sprites, attention = [], []
        for c in range(1, -(-n_steps // attention_steps)):
            sprites.append(timed(client, f"/api/episodes/{eid}/sprite/{c * attention_steps // sprite_steps}")[0])
            attention.append(timed(client, f"/api/episodes/{eid}/attention?layer=1&head=2&chunk={c}")[0])
        out["cold_chunk_sprite"] = summary(sprites)
        out["cold_chunk_attention"] = summary(attention)
        out["cold_chunk_both"] = summary([a + b for a, b in zip(sprites, attention)])
        out["warm_sprite"] = summary(
            [timed(client, f"/api/episodes/{eid}/sprite/{b}")[0] for b in range(0, n_steps // sprite_steps, 16)]
        )
    return out


SCRUB = """
const done = arguments[arguments.length - 1];
const stride = arguments[0];  // 0: random jumps; else steps moved per jump, like dragging the slider
const p = window.__player; const n = p.view.length; const frame = document.querySelector('canvas.frame');
let jumps = 0, shown = 0, target = -1;
const check = () => { if (target >= 0 && frame.dataset.step === String(target)) { shown += 1; target = -1; } };
const watch = () => { check(); if (jumps < 100) requestAnimationFrame(watch); };
requestAnimationFrame(watch);
let at = Math.floor(Math.random() * (n - 2500));
const timer = setInterval(() => {
  target = stride ? (at += stride) : Math.floor(Math.random() * n); jumps += 1; p.seek(target);
  if (jumps < 100) return;
  clearInterval(timer);
  setTimeout(() => { check(); done({jumps, shown_before_next: shown}); }, 50);
}, 50);
"""
"""Seek 100 times at 20 per second; count the jumps whose frame was drawn before the next jump."""


def wait_until_held(driver, timeout: float = 120) -> float | None:
    """Seconds until the page's background fetching stops (every sprite held, or its byte budget full)."""
    start = time.perf_counter()
    last, since = -1, time.perf_counter()
    while time.perf_counter() - start < timeout:
        fetched = driver.execute_script("return window.__player.cache().fetched")
        if fetched != last:
            last, since = fetched, time.perf_counter()
        elif time.perf_counter() - since > 2:
            return since - start
        time.sleep(0.2)
    return None


def measure_browser(url: str) -> dict:
    profile = tempfile.mkdtemp(prefix="vptlens-bench-")
    driver = headless_chromium(profile, 1440, 1000)
    try:
        start = time.perf_counter()
        driver.get(url + "/#/episode/r0e0?t=3000")
        while (
            driver.execute_script("const c = document.querySelector('canvas.frame'); return c && c.dataset.step")
            != "3000"
        ):
            time.sleep(0.005)
        first_frame_ms = 1000 * (time.perf_counter() - start)
        page_first_frame_ms = driver.execute_script("return window.__player.stats.firstFrameAt")
        driver.set_script_timeout(30)
        cold = driver.execute_async_script(SCRUB, 0)
        play = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const p = window.__player; p.seek(0);
            const s0 = {...p.stats}; const t0 = performance.now(); p.setPlaying(true);
            setTimeout(() => { p.setPlaying(false); const dt = (performance.now() - t0) / 1000;
              done({seconds: dt, steps: p.step, drawn: p.stats.drawn - s0.drawn,
                    placeholders: p.stats.placeholders - s0.placeholders}); }, 5000);""")
        jump = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const p = window.__player; const n = p.view.length; const frame = document.querySelector('canvas.frame');
            const ms = []; let i = 0;
            const next = () => {
              if (i++ === 30) { done(ms); return; }
              const target = Math.floor(Math.random() * n); const t0 = performance.now(); p.seek(target);
              const poll = () => frame.dataset.step === String(target)
                ? (ms.push(performance.now() - t0), setTimeout(next, 150)) : requestAnimationFrame(poll);
              poll();
            };
            next();""")
        scrub = {name: driver.execute_async_script(SCRUB, stride) for name, stride in (("random", 0), ("drag", 24))}
        scrub["cold_random"] = cold
        held = driver.execute_script("return window.__player.cache ? window.__player.cache() : null")
        if held is not None:
            held["more_seconds_to_hold_all"] = wait_until_held(driver)
            scrub["held_random"] = driver.execute_async_script(SCRUB, 0)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return {
        "first_frame_ms": first_frame_ms,
        "page_first_frame_ms": page_first_frame_ms,
        "play": {**play, "steps_per_second": play["steps"] / play["seconds"]},
        "random_jump_to_frame": summary(jump),
        **{
            f"{name}_scrub_20_per_s": {**r, "share_shown": r["shown_before_next"] / r["jumps"]}
            for name, r in scrub.items()
        },
        "frames_held_at_end": held,
    }


COMPARED = {
    "cold random scrub": lambda r: r["cold_random_scrub_20_per_s"]["share_shown"],
    "random scrub": lambda r: r["random_scrub_20_per_s"]["share_shown"],
    "drag scrub": lambda r: r["drag_scrub_20_per_s"]["share_shown"],
    "jump to frame, median ms": lambda r: r["random_jump_to_frame"]["median_ms"],
    "jump to frame, p95 ms": lambda r: r["random_jump_to_frame"]["p95_ms"],
    "first frame ms": lambda r: r["page_first_frame_ms"],
    "playback steps/s": lambda r: r["play"]["steps_per_second"],
}


def compare(episode: Path, baseline: Path, rounds: int) -> dict:
    """The baseline's page and this one's, alternately (each on a fresh server), `rounds` times each."""
    runs: dict[str, list] = {"baseline": [], "this": []}
    for i in range(rounds):
        for name in ("baseline", "this") if i % 2 == 0 else ("this", "baseline"):
            process, url = start_server(episode, baseline if name == "baseline" else None)
            try:
                runs[name].append({**measure_browser(url), "load_average": os.getloadavg()[0]})
            finally:
                process.terminate()
                process.wait()
    table = {}
    for label, get in COMPARED.items():
        table[label] = {}
        for name, results in runs.items():
            values = [get(r) for r in results]
            table[label][name] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
        print(
            f"{label:28s}"
            + "".join(f"  {n} {t['median']:.3g} [{t['min']:.3g}-{t['max']:.3g}]" for n, t in table[label].items())
        )
    return {"baseline": str(baseline), "rounds": rounds, "summary": table, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/bench_viewer"))
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--browser", action="store_true", help="also measure the page in headless Chromium")
    parser.add_argument("--baseline", type=Path, help="compare the page with the vptlens in BASELINE/vptlens")
    parser.add_argument("--rounds", type=int, default=4, help="with --baseline: measurements of each version")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/viewer.json"))
    args = parser.parse_args()
    episode = record(args.run, args.steps)
    if args.baseline is not None:
        if not (args.baseline / "vptlens" / "viewer" / "app.py").is_file():
            raise SystemExit(f"--baseline {args.baseline}: expected another vptlens in {args.baseline / 'vptlens'}")
        results = compare(episode, args.baseline.resolve(), args.rounds)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
        return
    process, url = start_server(episode)
    try:
        results = {"episode_steps": args.steps, "http": measure_http(url, args.steps)}
        if args.browser:
            process.terminate()
            process.wait()
            process, url = start_server(episode)  # a cold server for the page too
            results["browser"] = measure_browser(url)
    finally:
        process.terminate()
        process.wait()
    results["machine"] = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "python": sys.version.split()[0],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
