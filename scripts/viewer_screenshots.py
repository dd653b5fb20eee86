"""Screenshots of the viewer's main pages at a laptop's size, for docs/viewer/ (and for looking at before a release).

    python scripts/viewer_screenshots.py [PATH ...] [--out docs/viewer] [--model M --weights W]

Serves PATH (default: runs/demo, what `make demo` writes: a run, its SAEs and an experiment) with `vptlens serve`
in its own process, opens the pages in headless Chromium (Debian's chromium and chromium-driver) at 1440x900, and
saves runs.png; player.png (an episode at its first hit, the pointer on a past frame of the attention strip);
player_full.png (the same step in full resolution, when the episode stores it); saliency.png (that frame with the
saliency overlay); steering.png (an open-loop head ablation); snapshot.png (`vptlens serve --export` of the 200
steps around the hit, opened from disk); features.png (an SAE's latents, filtered by firing rate); latent.png (one
latent's page); experiment.png. --model/--weights: the agent for runs that do not keep their own (recorded before
RUN/agent/).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from vptlens.viewer.browser import headless_chromium
from vptlens.viewer.export import StepRange, export_episode
from vptlens.viewer.registry import Registry

SIZE = (1440, 900)


def start_server(paths: list[Path], model: Path | None, weights: Path | None) -> tuple[subprocess.Popen, str]:
    code = (
        "import json, sys; from pathlib import Path; from vptlens.viewer.serve import ServeConfig, main; "
        "a = json.loads(sys.argv[1]); main(ServeConfig(paths=tuple(map(Path, a['paths'])), port=0, "
        "model=a['model'] and Path(a['model']), weights=a['weights'] and Path(a['weights'])))"
    )
    args = json.dumps(
        {"paths": [str(p) for p in paths], "model": model and str(model), "weights": weights and str(weights)}
    )
    process = subprocess.Popen([sys.executable, "-c", code, args], stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if "open " not in line:
        process.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return process, line.split("open ")[1].split()[0].rstrip("/")


def browser() -> webdriver.Chrome:
    driver = headless_chromium(tempfile.mkdtemp(prefix="vptlens-shots-"), *SIZE, "--hide-scrollbars")
    driver.set_window_size(*SIZE)
    return driver


def wait(driver, condition, timeout: float = 120):
    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: condition(d))


def settle(driver, seconds: float = 1.0) -> None:
    """Let images decode and canvases draw."""
    time.sleep(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, default=[Path("runs/demo")])
    parser.add_argument("--out", type=Path, default=Path("docs/viewer"))
    parser.add_argument("--model", type=Path)
    parser.add_argument("--weights", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    process, url = start_server(args.paths, args.model, args.weights)
    driver = browser()
    shot = lambda name: (driver.save_screenshot(str(args.out / name)), print(f"wrote {args.out / name}"))
    try:
        driver.get(url + "/#/")
        wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "table.episodes"))
        settle(driver)
        shot("runs.png")

        runs = json.loads(driver.execute_script("return fetch('/api/runs').then(r => r.text())"))["runs"]
        episode = next(e for r in runs if not r["experiment"] for e in r["episodes"] if e.get("status") == "complete")
        traces = json.loads(
            driver.execute_script(f"return fetch('/api/episodes/{episode['id']}/traces').then(r => r.text())")
        )
        hits = [e["step"] for e in traces["events"] if e["type"] == "entity_attacked"]
        step = hits[0] if hits else episode["length"] // 2
        driver.get(f"{url}/#/episode/{episode['id']}?t={step}")
        wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "canvas.frame").get_attribute("data-step") == str(step))
        wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "canvas.traces"))
        strip = driver.find_element(By.CSS_SELECTOR, ".att-strip")
        ActionChains(driver).move_to_element_with_offset(strip, strip.size["width"] // 4, 0).perform()
        settle(driver)
        shot("player.png")
        ActionChains(driver).move_by_offset(0, 300).perform()
        if driver.find_elements(By.CSS_SELECTOR, ".full-toggle"):
            frame = driver.find_element(By.CSS_SELECTOR, "canvas.frame")
            driver.find_element(By.CSS_SELECTOR, ".full-toggle").click()
            wait(driver, lambda d: frame.get_attribute("data-full") == "1")
            settle(driver)
            shot("player_full.png")
            driver.find_element(By.CSS_SELECTOR, ".full-toggle").click()
        driver.find_element(By.CSS_SELECTOR, ".saliency-toggle").click()
        frame = driver.find_element(By.CSS_SELECTOR, "canvas.frame")
        wait(driver, lambda d: frame.get_attribute("data-saliency") == str(step) or "saliency:" in d.page_source)
        settle(driver)
        frame.screenshot(str(args.out / "saliency.png"))
        print(f"wrote {args.out / 'saliency.png'}")

        driver.find_element(By.CSS_SELECTOR, ".run-open-loop").click()
        wait(
            driver,
            lambda d: (
                d.find_elements(By.CSS_SELECTOR, ".steer-table") or d.find_elements(By.CSS_SELECTOR, ".steer .error")
            ),
        )
        driver.execute_script("document.querySelector('.steer').scrollIntoView()")
        settle(driver)
        shot("steering.png")

        with tempfile.TemporaryDirectory() as tmp:
            snapshot = Path(tmp) / "snapshot.html"
            steps = StepRange(max(0, step - 100), min(episode["length"], step + 100))
            export_episode(Registry.from_paths(args.paths), episode["id"], steps, ["mean"], snapshot)  # the same ids
            driver.get(snapshot.as_uri())
            shown = lambda d: d.find_element(By.CSS_SELECTOR, "canvas.frame").get_attribute("data-step")
            wait(driver, shown)
            driver.execute_script(f"window.__player.seek({step})")
            wait(driver, lambda d: shown(d) == str(step))
            settle(driver)
            shot("snapshot.png")
        driver.get(url + "/#/")  # back to the server (the snapshot's page answers only from itself)

        saes = json.loads(driver.execute_script("return fetch('/api/saes').then(r => r.text())"))["saes"]
        if saes:
            sae = next((s for s in saes if s["architecture"] == "topk"), saes[0])
            driver.get(f"{url}/#/sae/{sae['id']}")
            wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".vbody .vrow"))
            Select(driver.find_element(By.CSS_SELECTOR, ".add-column")).select_by_value("lift:key:attack")
            wait(driver, lambda d: "lift attack" in d.find_element(By.CSS_SELECTOR, ".vhead").text)
            driver.find_element(By.CSS_SELECTOR, ".rate-min").send_keys("1")  # latents firing at >= 1% of steps
            settle(driver)
            shot("features.png")
            driver.find_elements(By.CSS_SELECTOR, ".vbody .vrow")[0].click()
            wait(
                driver,
                lambda d: "P without it" in d.page_source or d.find_elements(By.CSS_SELECTOR, ".effect-box .error"),
            )
            settle(driver, 2)
            shot("latent.png")

        experiments = json.loads(driver.execute_script("return fetch('/api/experiments').then(r => r.text())"))
        if experiments["experiments"]:
            driver.get(f"{url}/#/experiment/{experiments['experiments'][0]['id']}")
            wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".cell-episodes"))
            settle(driver)
            shot("experiment.png")
    finally:
        driver.quit()
        process.terminate()
        process.wait()


if __name__ == "__main__":
    main()
