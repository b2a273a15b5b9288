"""Tests of the explore command (minivae.explore): the page of a checkpoint, where it goes, and the one-line errors
that leave no file. The checkpoints are the old ones of every kind in tests/fixtures/v0.1.0, with their synthetic
data; nothing here touches the network. What the page holds is tested in tests/figures/test_explorer.py, and the page
itself in a browser by tests/figures/test_explorer_browser.py."""

import base64
import errno
import json
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager

import numpy as np
import pytest
from conftest import REPO

from minivae import explore
from minivae.figures import explorer
from minivae.run import checkpoint, files

FIXTURES = REPO / "tests" / "fixtures" / "v0.1.0"
DATA = FIXTURES / "data"
KINDS = ("mlp", "mlp-sigma-mse", "mlp-rmsprop-bce-prob", "mlp-cb-tanh", "iwae-dynamic", "conv", "cvae", "m2")


@pytest.fixture(autouse=True)
def offline(isolated_data):
    """No real data folder or network: everything comes from the fixtures."""


def run_copy(kind, tmp_path):
    """A copy of an old checkpoint's run folder (the command writes beside the checkpoint)."""
    return shutil.copytree(FIXTURES / kind, tmp_path / kind)


def page_data(path):
    html = path.read_text()
    return json.loads(re.search(r'type="application/json">(.*?)</script>', html, flags=re.S).group(1))


def fails_in_one_line(capsys, argv, message):
    """Run the command; it must exit 2 with one line `error: ...` holding `message` (a regex)."""
    assert explore.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and re.search(message, err), err


@pytest.mark.parametrize("kind", KINDS)
def test_the_page_of_an_old_checkpoint_goes_beside_it(kind, tmp_path, capsys):
    run = run_copy(kind, tmp_path)
    assert explore.main([str(run), "--data-dir", str(DATA)]) == 0
    page = run / explorer.FILENAME
    size = page.stat().st_size / 1e6
    assert capsys.readouterr().out == f"wrote {page} ({size:.1f} MB): open it in a browser\n"
    config = checkpoint.load(run).config
    info = page_data(page)["info"]
    assert (info["latent"], info["classes"]) == (config["latent"], config.get("classes", 0))


def test_the_page_holds_the_checkpoints_own_weights(tmp_path):
    page = explore.explore_checkpoint(FIXTURES / "mlp" / checkpoint.FILENAME, tmp_path / "mlp.html", DATA)
    first = page_data(page)["decoder"]["layers"][0]
    weights = np.frombuffer(base64.b64decode(first["W"]), "<f4").reshape(first["inSize"], first["outSize"])
    assert np.array_equal(weights, checkpoint.load(FIXTURES / "mlp").params["decoder.0.W"])


def test_out_names_the_page_and_points_the_number_of_dots(tmp_path):
    assert explore.main([str(FIXTURES / "cvae"), "--data-dir", str(DATA), "--out", str(tmp_path / "cvae.html"),
                         "--points", "7"]) == 0
    assert page_data(tmp_path / "cvae.html")["points"]["count"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cvae.html"]


def test_a_second_page_replaces_the_first(tmp_path):
    argv = [str(FIXTURES / "mlp"), "--data-dir", str(DATA), "--out", str(tmp_path / "page.html")]
    assert explore.main([*argv, "--points", "3"]) == 0
    assert explore.main([*argv, "--points", "5"]) == 0
    assert page_data(tmp_path / "page.html")["points"]["count"] == 5


def test_a_file_that_is_no_checkpoint_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "checkpoint.npz").write_text("not a zip")
    fails_in_one_line(capsys, [str(tmp_path)], "not a readable minivae checkpoint")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]


def test_a_missing_checkpoint_is_refused_in_one_line(tmp_path, capsys):
    fails_in_one_line(capsys, [str(tmp_path / "nothing")], "no such checkpoint file")


def test_weights_that_are_not_finite_are_refused_and_write_no_page(tmp_path, capsys):
    ckpt = checkpoint.load(FIXTURES / "mlp")
    params = ckpt.params | {"decoder.2.b": np.full_like(ckpt.params["decoder.2.b"], np.nan)}
    model = type("Saved", (), {"params": params})()
    checkpoint.save(tmp_path / checkpoint.FILENAME, model, None, ckpt.config, ckpt.epoch, ckpt.step, ckpt.history,
                    extra=ckpt.extra)
    fails_in_one_line(capsys, [str(tmp_path), "--data-dir", str(DATA)],
                      r"the model's weights hold NaN or infinity \(decoder.2.b\), so there is nothing to draw")
    assert not (tmp_path / explorer.FILENAME).exists()


@pytest.mark.parametrize("out, message", [
    ("missing/page.html", "cannot write .*: the folder .*missing does not exist; choose another --out"),
    (".", "is a folder; the page needs a file name, such as .*; choose another --out"),
])
def test_an_out_that_is_no_file_name_is_refused_before_the_data_is_read(tmp_path, capsys, out, message):
    # --data-dir names no data: the --out is refused first
    fails_in_one_line(capsys, [str(FIXTURES / "mlp"), "--out", str(tmp_path / out), "--data-dir", str(tmp_path)],
                      message)
    assert list(tmp_path.iterdir()) == []


def test_an_out_that_holds_another_file_is_left_as_it_is(tmp_path, capsys):
    mine = tmp_path / "notes.html"
    mine.write_text("<p>my notes</p>")
    fails_in_one_line(capsys, [str(FIXTURES / "mlp"), "--out", str(mine), "--data-dir", str(DATA)],
                      "exists and is not a page minivae wrote, so it is left as it is; choose another --out")
    assert mine.read_text() == "<p>my notes</p>"


def test_a_full_disk_leaves_no_page_and_says_so_in_one_line(tmp_path, capsys, monkeypatch):
    @contextmanager
    def full_disk(path):
        raise OSError(errno.ENOSPC, "No space left on device")
        yield

    monkeypatch.setattr(files, "atomic_file", full_disk)
    fails_in_one_line(capsys, [str(FIXTURES / "mlp"), "--out", str(tmp_path / "page.html"), "--data-dir", str(DATA)],
                      r"cannot write .*page.html \(No space left on device\); choose another --out")
    assert list(tmp_path.iterdir()) == []


def test_missing_test_data_is_one_line_and_no_page(tmp_path, capsys):
    fails_in_one_line(capsys, [str(FIXTURES / "mlp"), "--out", str(tmp_path / "page.html"), "--data-dir",
                               str(tmp_path)], "t10k-images")
    assert list(tmp_path.iterdir()) == []


def test_help_works_as_a_module():
    result = subprocess.run([sys.executable, "-m", "minivae.explore", "--help"], capture_output=True, text=True,
                            cwd=REPO, timeout=60)
    assert result.returncode == 0 and "--out FILE.html" in result.stdout
