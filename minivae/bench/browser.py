"""A headless Chromium driven through selenium: how the explorer page is measured (explorer_fps.py) and tested in a
real browser (tests/figures/test_explorer_browser.py).

It needs Debian's `chromium` and `chromium-driver` packages (`apt-get install chromium chromium-driver`) and
selenium (`pip install selenium`, in the dev extras); minivae itself needs none of them. `missing()` says which is
absent, so that a caller can skip with that reason. Chromium starts with the flags that keep it off the network
(no background requests, no component updates, no QUIC; without them it hangs on a machine with no network), a
fresh profile folder of its own, and the driver named by path, so that selenium never looks for one online.
"""

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


def _first(names):
    return next((path for path in map(shutil.which, names) if path), None)


def missing():
    """Why a headless Chromium cannot be driven here, in a sentence saying what to install; None when it can."""
    try:
        import selenium  # noqa: F401 (only whether it is there)
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    if _first(BROWSERS) is None:
        return "Chromium is not installed (apt-get install chromium chromium-driver)"
    if _first(DRIVERS) is None:
        return "chromedriver is not installed (apt-get install chromium-driver)"
    return None


@contextmanager
def chromium(width=1400, height=1000, network_log=False):
    """A selenium WebDriver on a new headless Chromium with a window of width x height CSS pixels; quit and its
    profile folder removed afterwards. network_log: keep Chrome's performance log (driver.get_log("performance"):
    every request the page makes). Raises RuntimeError with missing()'s sentence when it cannot start."""
    problem = missing()
    if problem:
        raise RuntimeError(problem)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = Path(tempfile.mkdtemp(prefix="minivae-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = _first(BROWSERS)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    if network_log:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(_first(DRIVERS)))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def version(driver):
    """The browser's name and version, e.g. 'chrome 156.0.8078.114'."""
    capabilities = driver.capabilities
    return f"{capabilities.get('browserName', 'browser')} {capabilities.get('browserVersion', '(version unknown)')}"
