"""Checkpoints written by minivae 0.1.0 keep working: they load, evaluate to the numbers that version printed, and
resume to the very weights that version reached, and its metrics (tests/fixtures/v0.1.0: one small run of every
kind of model, stopped mid-epoch; make.py says how they were made, expected.json what that version computed).

Bit for bit where the arithmetic is the same: with the NumPy and the BLAS kernels that made the fixtures
(made_with.json), the resumed weights are the very same bits and the metrics agree to float32 rounding (since 0.2.0
the IWAE's training loss and the importance-weighted estimate share one log-mean-exp, which adds up the IWAE's
loss in another order). Another NumPy or another CPU's BLAS kernels round sums differently, so there the metrics
are compared to 1e-4 and the weights' digest is not.
"""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from threadpoolctl import threadpool_info

from minivae import evaluate, train
from minivae.run import checkpoint
from minivae.run.kinds import KINDS

FIXTURES = REPO / "tests" / "fixtures" / "v0.1.0"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
DATA = FIXTURES / "data"


def arithmetic_here():
    """The NumPy version and the BLAS kernels in use, as made_with.json records those that made the fixtures."""
    blas = [f"{lib['internal_api']} {lib.get('version')} {lib.get('architecture')}" for lib in threadpool_info()
            if lib["user_api"] == "blas"]
    return {"numpy": np.__version__, "blas": sorted(blas)}


SAME_ARITHMETIC = arithmetic_here() == json.loads((FIXTURES / "made_with.json").read_text())
REL = 1e-6 if SAME_ARITHMETIC else 1e-4


@pytest.fixture(autouse=True)
def offline(isolated_data):
    """No real data folder or network: everything comes from the fixtures."""


def params_digest(path):
    """sha256 over every parameter in name order, as make.py computed it."""
    ckpt = checkpoint.load(path)
    digest = hashlib.sha256()
    for name in sorted(ckpt.params):
        digest.update(name.encode() + np.ascontiguousarray(ckpt.params[name]).tobytes())
    return digest.hexdigest()


def copy_of(kind, tmp_path):
    run = tmp_path / kind
    shutil.copytree(FIXTURES / kind, run)
    return run / checkpoint.FILENAME


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_an_old_checkpoint_evaluates_to_the_numbers_it_gave(kind, tmp_path):
    final = evaluate.evaluate_checkpoint(copy_of(kind, tmp_path), DATA, eval_samples=3)
    assert final == pytest.approx(EXPECTED[kind]["evaluate"], rel=REL)


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_an_old_checkpoint_resumes_to_the_weights_and_metrics_it_reached(kind, tmp_path):
    out = tmp_path / "resumed"
    assert train.main(["--resume", str(copy_of(kind, tmp_path)), "--out", str(out), "--data-dir", str(DATA),
                       "--no-plots", "--eval-samples", "3"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    if SAME_ARITHMETIC:
        assert params_digest(out / checkpoint.FILENAME) == EXPECTED[kind]["resumed_params_sha256"]
    expected = EXPECTED[kind]["resumed"]
    assert [epoch["epoch"] for epoch in metrics["history"]] == [epoch["epoch"] for epoch in expected["history"]]
    for epoch, then in zip(metrics["history"], expected["history"], strict=True):
        for split in ("train", "test"):
            assert epoch[split] == pytest.approx(then[split], rel=REL), (epoch["epoch"], split)
    assert metrics["final"] == pytest.approx(expected["final"], rel=REL)


def test_every_kind_of_model_has_a_fixture():
    paths = sorted(Path(FIXTURES).glob("*/checkpoint.npz"))
    assert {path.parent.name for path in paths} == set(EXPECTED)
    assert {checkpoint.load(path).config["arch"] for path in paths} == set(KINDS)


# ---- a checkpoint of the first format of all --------------------------------------------------------------------


def in_the_first_format(fixture, path):
    """Write the checkpoint `fixture` (0.1.0's) at `path` as the first checkpoints of minivae were written
    (git show aca8350:minivae/train.py, minivae/optim.py): Adam's textbook moments 'm.<name>' = (1 - b1) M and
    'v.<name>' = (1 - b2) V, the running totals as a list [loss, recon, kl, examples] under "sums" with the epoch's
    seconds beside it, and a config from before the objective and k existed. The same .npz layout (format 1)."""
    with np.load(fixture) as npz:
        entries = {name: npz[name] for name in npz.files}
    meta = json.loads(str(entries.pop("meta")))
    totals = meta["extra"]["totals"]
    meta["extra"] = {"sums": [totals["sums"]["loss"], totals["sums"]["recon"], totals["sums"]["kl"],
                              totals["examples"]], "seconds": meta["extra"]["seconds"]}
    meta["config"] = {key: value for key, value in meta["config"].items() if key not in ("objective", "k")}
    first = {"meta": np.array(json.dumps(meta))}
    for name, value in entries.items():
        if name.startswith("optim/M."):
            first["optim/m." + name.removeprefix("optim/M.")] = value * np.float32(1 - 0.9)
        elif name.startswith("optim/V."):
            first["optim/v." + name.removeprefix("optim/V.")] = value * np.float32(1 - 0.999)
        else:
            first[name] = value
    np.savez(path, **first)
    return path


def test_a_checkpoint_of_the_first_format_resumes_to_the_numbers_that_version_reached(tmp_path):
    # The mlp fixture stopped at epoch 2, step 2 with Adam; written as the first checkpoints were, it must resume
    # through the command to what 0.1.0 computed from it (expected.json): epoch 2's training loss adds the totals
    # of its first two steps from the list, the moments translated back to Adam's M and V give the same updates
    # (to float32's rounding of m and v), and the parameters end where the 0.1.0 checkpoint's resume ends.
    first = in_the_first_format(FIXTURES / "mlp" / checkpoint.FILENAME, tmp_path / "first.npz")
    assert set(checkpoint.load(first).optimizer_state) >= {"t", "m.decoder.2.W", "v.mu.b"}
    out = tmp_path / "resumed"
    assert train.main(["--resume", str(first), "--out", str(out), "--data-dir", str(DATA), "--no-plots",
                       "--eval-samples", "3"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    expected = EXPECTED["mlp"]["resumed"]
    assert [epoch["epoch"] for epoch in metrics["history"]] == [1, 2, 3]
    for epoch, then in zip(metrics["history"], expected["history"], strict=True):
        for split in ("train", "test"):
            assert epoch[split] == pytest.approx(then[split], rel=1e-6), (epoch["epoch"], split)
    assert metrics["final"] == pytest.approx(expected["final"], rel=1e-6)
    now = tmp_path / "resumed-now"  # the 0.1.0 checkpoint itself, whose resume is 0.1.0's bit for bit
    assert train.main(["--resume", str(copy_of("mlp", tmp_path)), "--out", str(now), "--data-dir", str(DATA),
                       "--no-plots", "--eval-samples", "0"]) == 0
    assert params_digest(now / checkpoint.FILENAME) == EXPECTED["mlp"]["resumed_params_sha256"]
    resumed, reference = checkpoint.load(out).params, checkpoint.load(now).params
    for name, value in reference.items():
        np.testing.assert_allclose(resumed[name], value, rtol=1e-5, atol=1e-7, err_msg=name)
