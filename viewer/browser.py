"""Headless Chromium for looking at the viewer: its browser tests, its benchmark and its screenshots.

Debian's `chromium` and `chromium-driver`, driven by selenium (a dev dependency): nothing is downloaded. The
flags keep Chromium off the network it would otherwise call at every start (refused here, and slow).
"""

import shutil
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def chromium_available() -> bool:
    return Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()


def headless_chromium(profile_dir: str | Path, width: int, height: int, *extra_flags: str):
    """A selenium driver of a headless Chromium with its profile in `profile_dir` (the caller's to remove) and a
    window of width x height."""
    if not chromium_available():
        raise FileNotFoundError("no Chromium here: apt-get install chromium chromium-driver (Debian's packages)")
    try:
        from selenium import webdriver
    except ImportError as e:
        raise ImportError("driving Chromium needs selenium: pip install 'vpt-lens[dev]'") from e
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, *extra_flags, f"--window-size={width},{height}", f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
