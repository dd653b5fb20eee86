"""The viewer in a real headless Chromium, used as a person would: open an episode, scrub, switch head, hover a cell,
play, search the feature browser and open a feature, run a steering request, meet a damaged episode, open an
exported snapshot from disk.

Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them); skipped with that reason without them.
"""

import shutil
import tempfile
from pathlib import Path

import pytest
from test_viewer_helpers import served, start

from vptlens.viewer.app import make_app
from vptlens.viewer.browser import chromium_available, headless_chromium
from vptlens.viewer.export import StepRange, export_episode
from vptlens.viewer.registry import Registry

webdriver = pytest.importorskip("selenium.webdriver", reason="the browser tests need selenium (pip install selenium)")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


def make_driver(profile_dir: str):
    """Headless Chromium (Debian's, nothing downloaded); the test is skipped where it is not installed."""
    if not chromium_available():
        pytest.skip(
            "browser tests need Debian's chromium and chromium-driver: apt-get install chromium chromium-driver"
        )
    return headless_chromium(profile_dir, 1440, 1100)


@pytest.fixture(scope="module")
def url(tiny_run, tmp_path_factory):
    data = served(tiny_run, tmp_path_factory.getbasetemp() / "viewer")
    registry = Registry.from_paths([data.run, data.sae, data.broken, data.experiment, data.full])
    address, stop = start(make_app(registry, tmp_path_factory.mktemp("work")))
    yield address
    stop()


@pytest.fixture(scope="module")
def snapshot(tiny_run, tmp_path_factory) -> Path:
    """Steps 40..99 of the tiny run's episode 1, with the mean attention and head 2."""
    data = served(tiny_run, tmp_path_factory.getbasetemp() / "viewer")
    out = tmp_path_factory.mktemp("export") / "snapshot.html"
    export_episode(Registry.from_paths([data.run]), "r0e1", StepRange(40, 100), ["mean", "2"], out)
    return out


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="vptlens-chromium-")
    driver = make_driver(profile)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def wait(driver, condition, timeout: float = 30):
    """Poll `condition` until it holds; an element the app re-rendered between finding and reading it (stale) is
    polled again, not a failure (a CI run failed on `h1` re-rendered as the feature page opened)."""
    ignored = (StaleElementReferenceException,)
    return WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=ignored).until(lambda d: condition(d))


def step_shown(driver) -> str:
    return driver.find_element(By.CSS_SELECTOR, "canvas.frame").get_attribute("data-step")


def press(driver, *keys):
    ActionChains(driver).send_keys(*keys).perform()


def test_open_an_episode_scrub_switch_head_hover_and_play(browser, url):
    browser.get(f"{url}/#/episode/r0e0")
    wait(browser, lambda d: step_shown(d) == "0")
    assert not browser.find_elements(By.CSS_SELECTOR, ".full-toggle")  # it stores no full-resolution frames
    box = browser.find_element(By.CSS_SELECTOR, ".step-box")
    box.clear()
    box.send_keys("70", Keys.ENTER)
    wait(browser, lambda d: step_shown(d) == "70")  # frame 70 drawn from its chunk's sprite
    browser.find_element(By.CSS_SELECTOR, "h1").click()  # leave the box: keys now drive the player
    press(browser, Keys.ARROW_RIGHT)
    wait(browser, lambda d: step_shown(d) == "71")
    ActionChains(browser).key_down(Keys.SHIFT).send_keys(Keys.ARROW_RIGHT).key_up(Keys.SHIFT).perform()
    wait(browser, lambda d: step_shown(d) == "81")
    wait(browser, lambda d: "t=81" in d.current_url)

    Select(browser.find_element(By.CSS_SELECTOR, ".head-select")).select_by_value("2")
    wait(browser, lambda d: "head=2" in d.current_url)
    strip = browser.find_element(By.CSS_SELECTOR, ".att-strip")
    width = strip.size["width"]
    cell = width / 33  # memory 32: lags 0..32, now on the right
    lag = 5
    ActionChains(browser).move_to_element_with_offset(strip, int((32 - lag + 0.5) * cell - width / 2), 0).perform()
    tooltip = browser.find_element(By.CSS_SELECTOR, ".att-tooltip")
    wait(browser, lambda d: tooltip.is_displayed() and tooltip.get_attribute("data-frame") == str(81 - lag))
    assert "attends to step 76 (5 back)" in tooltip.text and "weight 0." in tooltip.text
    ActionChains(browser).move_to_element_with_offset(strip, int(0.5 * cell - width / 2), 0).perform()
    wait(browser, lambda d: "masked" in tooltip.text)  # lag 32: the memory's oldest slot

    press(browser, " ")
    wait(browser, lambda d: int(step_shown(d) or 0) >= 86, timeout=10)  # plays at 20 fps
    press(browser, " ")
    paused = browser.execute_script("return window.__player.step")
    assert browser.execute_script("return window.__player.step") == paused
    assert browser.execute_script("return window.__player.stats.drawn") > 0


CACHE_SCRIPT = """
const done = arguments[arguments.length - 1];
const until = async (ok) => { while (!ok()) await new Promise((r) => setTimeout(r, 20)); };
(async () => {
  const {EpisodeCache} = await import("/static/frames.js");
  const view = await (await fetch("/api/episodes/r0e0")).json();  // 128 steps: 8 sprites of 16
  const out = {};
  let cache = new EpisodeCache("r0e0", view, () => {});
  const size = (await (await fetch("/api/episodes/r0e0/sprite/0")).blob()).size;
  cache.frames.budget.decoded = 2.5 * 4 * 512 * 512;  // two decoded sprites
  cache.focus(0, {playing: false, full: false});
  await until(() => cache.frames.entries.size === 8 && cache.frames.pending() === 0);  // all, in the background
  out.fetched = cache.stats().fetched;
  for (let t = 0; t < 128; t += 16) {
    cache.focus(t, {playing: false, full: false});
    await until(() => cache.frames.bitmap(cache.blockOf(t)));
  }
  out.decoded = [...cache.frames.decodedOrder.keys()];
  out.decodedBytes = cache.frames.decodedBytes;
  cache = new EpisodeCache("r0e0", view, () => {});
  cache.frames.budget.encoded = 2.5 * size;  // two or three sprites' bytes
  cache.focus(0, {playing: false, full: false});
  await new Promise((r) => setTimeout(r, 1500));
  out.nearFirst = [...cache.frames.entries.keys()].sort();
  cache.focus(127, {playing: false, full: false});
  await until(() => cache.frames.bitmap(7));
  await new Promise((r) => setTimeout(r, 1000));
  out.afterJump = [...cache.frames.entries.keys()].sort();
  done(out);
})().catch((e) => done({error: String(e)}));
"""


def test_the_frame_cache_fetches_in_the_background_within_its_budgets(browser, url):
    browser.get(f"{url}/#/")
    browser.set_script_timeout(60)
    out = browser.execute_async_script(CACHE_SCRIPT)
    assert out["fetched"] == 8  # the whole episode, though only step 0 was asked for
    assert out["decoded"] == [6, 7] and out["decodedBytes"] == 2 * 4 * 512 * 512  # the last drawn, decoded
    assert out["nearFirst"] in ([0, 1], [0, 1, 2])  # nearest the step first, stopped at the byte budget
    assert 7 in out["afterJump"] and 0 not in out["afterJump"]  # the farthest forgotten for the step jumped to


def test_full_resolution_frames_at_their_own_aspect(browser, url):
    browser.get(f"{url}/#/")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "table.episodes"))
    runs = browser.execute_async_script("fetch('/api/runs').then((r) => r.json()).then(arguments[0])")["runs"]
    eid = next(r for r in runs if r["name"] == "full")["episodes"][0]["id"]
    browser.get(f"{url}/#/episode/{eid}?t=20")
    wait(browser, lambda d: step_shown(d) == "20")
    frame = browser.find_element(By.CSS_SELECTOR, "canvas.frame")
    toggle = browser.find_element(By.CSS_SELECTOR, ".full-toggle")
    assert "full resolution (128×72)" in toggle.find_element(By.XPATH, "..").text
    toggle.click()
    wait(browser, lambda d: frame.get_attribute("data-full") == "1" and step_shown(d) == "20")
    assert frame.size == {"width": 640, "height": 360}  # 72x128 scaled 5x, not squashed into the square
    press(browser, Keys.ARROW_RIGHT)
    wait(browser, lambda d: frame.get_attribute("data-full") == "1" and step_shown(d) == "21")
    wait(browser, lambda d: "t=21" in d.current_url and "full=1" in d.current_url)
    browser.refresh()  # the choice is kept in the address
    frame = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "canvas.frame[data-full='1']"))[0]
    browser.find_element(By.CSS_SELECTOR, ".full-toggle").click()
    wait(browser, lambda d: frame.get_attribute("data-full") == "" and step_shown(d) == "21")
    assert frame.size == {"width": 384, "height": 384}


def test_search_the_feature_browser_and_open_a_feature(browser, url):
    browser.get(f"{url}/#/sae/s0")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".vbody .vrow"))
    assert "48 of 48 latents" in browser.find_element(By.CSS_SELECTOR, ".toolbar").text
    browser.find_element(By.CSS_SELECTOR, ".latent-search").send_keys("4")
    wait(
        browser,
        lambda d: (
            "of 48 latents" in d.page_source and "48 of 48" not in d.find_element(By.CSS_SELECTOR, ".toolbar").text
        ),
    )
    ids = [r.get_attribute("data-latent") for r in browser.find_elements(By.CSS_SELECTOR, ".vbody .vrow")]
    assert ids and all(i.startswith("4") for i in ids)
    Select(browser.find_element(By.CSS_SELECTOR, ".latent-filter")).select_by_value("alive")
    rows = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".vbody .vrow"))
    latent = rows[0].get_attribute("data-latent")
    rows[0].click()
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "h1").text.startswith(f"Latent {latent}"))
    example = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".examples .example"))[0]
    wait(browser, lambda d: d.execute_script("return arguments[0].querySelector('img').naturalWidth", example) > 0)
    wait(browser, lambda d: "P without it" in d.page_source)  # the effect on the action probabilities
    target = example.get_attribute("href").split("t=")[1]
    example.click()
    wait(browser, lambda d: step_shown(d) == target)  # the example's step, in the player


def test_the_feature_browser_filters_by_a_firing_rate_range(browser, url):
    browser.get(f"{url}/#/sae/s0")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".vbody .vrow"))
    fetch = "fetch('/api/saes/s0/latents').then((r) => r.json()).then(arguments[0])"
    rates = browser.execute_async_script(fetch)["columns"]["firing_rate"]
    lo, hi = sorted(rates)[10], sorted(rates)[30]  # percentiles of the SAE's own rates: never an empty range
    browser.find_element(By.CSS_SELECTOR, ".rate-min").send_keys(str(100 * lo))
    browser.find_element(By.CSS_SELECTOR, ".rate-max").send_keys(str(100 * hi))
    expected = {str(i) for i, r in enumerate(rates) if lo <= r <= hi}
    toolbar = browser.find_element(By.CSS_SELECTOR, ".toolbar")
    wait(browser, lambda d: f"{len(expected)} of 48 latents" in toolbar.text)
    shown = [r.get_attribute("data-latent") for r in browser.find_elements(By.CSS_SELECTOR, ".vbody .vrow")]
    assert set(shown) <= expected and len(shown) == min(len(expected), 24)  # the rows drawn: those in view
    assert [rates[int(i)] for i in shown] == sorted((rates[int(i)] for i in shown), reverse=True)
    wait(browser, lambda d: f"rmin={100 * lo}" in d.current_url.replace("%2C", ","))
    browser.refresh()  # the range is kept in the address
    wait(browser, lambda d: f"{len(expected)} of 48 latents" in d.find_element(By.CSS_SELECTOR, ".toolbar").text)
    browser.find_element(By.CSS_SELECTOR, ".rate-max").send_keys(Keys.CONTROL, "a", Keys.BACKSPACE)  # no upper bound
    n_above = sum(r >= lo for r in rates)
    wait(browser, lambda d: f"{n_above} of 48 latents" in d.find_element(By.CSS_SELECTOR, ".toolbar").text)


def test_saliency_overlay_and_a_steering_request_from_the_player(browser, url):
    browser.get(f"{url}/#/episode/r0e1?t=30")
    wait(browser, lambda d: step_shown(d) == "30")
    browser.find_element(By.CSS_SELECTOR, ".saliency-toggle").click()
    frame = browser.find_element(By.CSS_SELECTOR, "canvas.frame")
    wait(browser, lambda d: frame.get_attribute("data-saliency") == "30", timeout=60)
    assert "one scale for the whole episode" in browser.find_element(By.CSS_SELECTOR, ".saliency-note").text
    Select(browser.find_element(By.CSS_SELECTOR, ".steer-layer")).select_by_value("1")
    steps = browser.find_element(By.CSS_SELECTOR, ".steer-steps")
    steps.clear()
    steps.send_keys("10")
    browser.find_element(By.CSS_SELECTOR, ".run-open-loop").click()
    table = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".steer-table"), timeout=60)[0]
    assert len(table.find_elements(By.TAG_NAME, "tr")) == 17  # 16 readable actions and the header
    assert "ablate heads 1.*" in browser.find_element(By.CSS_SELECTOR, ".steer-status").text
    assert "from step 30: 10 steps" in browser.find_element(By.CSS_SELECTOR, ".steer-status").text


def test_damaged_episodes_show_an_error_on_their_page(browser, url):
    browser.get(f"{url}/#/")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tr.damaged"))
    browser.find_element(By.CSS_SELECTOR, "tr.damaged a").click()
    error = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".error"))[0]
    assert "damaged" in error.text and "zarr.json" in error.text
    browser.get(f"{url}/#/")  # the server is still serving
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "table.episodes"))


def test_an_exported_snapshot_plays_from_disk_with_nothing_fetched(browser, snapshot):
    browser.get(snapshot.as_uri())
    wait(browser, lambda d: step_shown(d) == "40")  # the first exported step
    box = browser.find_element(By.CSS_SELECTOR, ".step-box")
    box.clear()
    box.send_keys("70", Keys.ENTER)
    wait(browser, lambda d: step_shown(d) == "70")
    browser.find_element(By.CSS_SELECTOR, "h1").click()
    press(browser, Keys.ARROW_RIGHT)
    wait(browser, lambda d: step_shown(d) == "71")
    press(browser, Keys.END)
    wait(browser, lambda d: step_shown(d) == "99")  # the last exported step, not the episode's
    slider = browser.find_element(By.CSS_SELECTOR, ".slider")
    assert (slider.get_attribute("min"), slider.get_attribute("max")) == ("40", "99")
    heads = Select(browser.find_element(By.CSS_SELECTOR, ".head-select"))
    assert [o.get_attribute("value") for o in heads.options] == ["mean", "2"]
    heads.select_by_value("2")
    status = browser.find_element(By.CSS_SELECTOR, ".attention > .small")
    wait(browser, lambda d: status.text == "" and d.find_elements(By.CSS_SELECTOR, ".att-top .top-frame"))
    browser.execute_script("window.__player.seek(41)")
    wait(browser, lambda d: step_shown(d) == "41")
    assert browser.find_elements(By.CSS_SELECTOR, "canvas.traces") and "snapshot of" in browser.page_source
    assert not browser.find_elements(By.CSS_SELECTOR, ".steer, .saliency-toggle")  # they need the server
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
    assert all(name.startswith("blob:") for name in fetched), fetched  # the modules; no data from anywhere
