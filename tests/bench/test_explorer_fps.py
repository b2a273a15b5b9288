"""The explorer page's benchmark (minivae.bench.explorer_fps): the figures it prints, and its one line without a
browser. It measures; no test here times anything."""

import re

import pytest
from conftest import REPO

from minivae.bench import browser, explorer_fps

FIXTURES = REPO / "tests" / "fixtures" / "v0.1.0"


@pytest.mark.skipif(browser.missing() is not None, reason=f"no headless Chromium to drive: {browser.missing()}")
def test_it_prints_the_browsers_ceiling_then_each_pages_size_frame_rate_redraw_and_agreement(capsys, isolated_data):
    assert explorer_fps.main([str(FIXTURES / "cvae"), "--data-dir", str(FIXTURES / "data"), "--frames", "5"]) == 0
    first, line = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r".+, headless, 5 frames per model; with nothing to draw it shows [\d.]+ frames per second",
                        first)
    assert re.fullmatch(r".*cvae: [\d.]+ MB page; [\d.]+ frames per second; redraw [\d.]+ ms median, [\d.]+ ms at the "
                        r"95th percentile \(alone: \d+ frames per second\); pixels within [\d.]+e-\d\d of minivae's "
                        r"decode", line)


def test_without_a_browser_it_says_what_to_install_in_one_line(capsys, monkeypatch):
    monkeypatch.setattr(browser, "missing", lambda: "Chromium is not installed (apt-get install chromium)")
    assert explorer_fps.main([]) == 2
    assert capsys.readouterr().err == ("error: no headless Chromium to measure in: Chromium is not installed "
                                       "(apt-get install chromium)\n")
