"""Training with labels: the cvae and m2 presets through the training command, their records, exact resuming,
and the one-line errors of --labels. Runs on the tiny synthetic dataset written as IDX files, offline."""

import json
import re

import numpy as np
import pytest
from conftest import write_tiny_dataset

from minivae import train
from minivae.core import backend
from minivae.models import m2
from minivae.run import checkpoint, data, download, feeds, seeds

N_TRAIN, N_TEST, BATCH = 120, 40, 25  # m2 with 20 labels: 100 unlabelled images, 4 steps per epoch


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny"), N_TRAIN, N_TEST)


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "MIRRORS", {"mnist": [], "fashion-mnist": []})
    monkeypatch.setattr(download, "DEBIAN_DIR", str(tmp_path / "no-debian"))
    monkeypatch.delenv("MINIVAE_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def args(tiny_dir, out, preset, *extra, epochs=2):
    labels = ["--labels", "20"] if preset == "m2" else []
    return ["--preset", preset, "--data-dir", str(tiny_dir), "--out", str(out), "--hidden", "16", "--latent", "3",
            "--batch-size", str(BATCH), "--epochs", str(epochs), "--eval-samples", "3", "--no-plots", *labels,
            *extra]


def metrics(out):
    return json.loads((out / "metrics.json").read_text())


def test_cvae_run_records_the_conditional_elbo_and_draws_a_class_grid(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main([a for a in args(tiny_dir, out, "cvae") if a != "--no-plots"]) == 0
    record = metrics(out)
    assert set(record["history"][0]["test"]) == {"loss", "recon", "kl"}
    assert record["final"]["test_log_likelihood"] is not None
    assert "ELBO of log p(x|y)" in capsys.readouterr().out
    assert {"class_grid.png", "reconstructions.png", "loss_curves.png", "progress_samples.gif", "explorer.html"} <= \
        {p.name for p in out.iterdir()}


def test_m2_epoch_lines_and_metrics_carry_the_test_accuracy(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main([a for a in args(tiny_dir, out, "m2") if a != "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert len(re.findall(r"^epoch +\d/2 .*test accuracy \d+\.\d\d%", printed, flags=re.M)) == 2
    assert "20 labelled" in printed and "accuracy of q(y|x)" in printed
    record = metrics(out)
    assert set(record["history"][0]["train"]) == {"loss", "labelled", "classification", "unlabelled"}
    assert 0 <= record["history"][-1]["test"]["accuracy"] <= 1
    assert record["final"]["test_accuracy"] == record["history"][-1]["test"]["accuracy"]
    assert {"class_grid.png", "explorer.html"} <= {p.name for p in out.iterdir()}


def test_m2_run_weighs_the_labelled_elbo_by_the_labelled_share_and_records_it(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(args(tiny_dir, out, "m2", epochs=1)) == 0
    weight = metrics(out)["config"]["labelled_weight"]
    assert weight == pytest.approx(20 / (N_TRAIN - 20))  # 20 labelled training images, the rest unlabelled
    assert f"({weight:.3g} x labelled " in capsys.readouterr().out


def test_m2_keeps_the_same_number_of_labels_in_every_class():
    y = np.arange(1000) % 10
    chosen = feeds.choose_labelled(y, 100, 10, seed=3)
    assert np.array_equal(np.bincount(y[chosen]), np.full(10, 10))
    assert np.array_equal(chosen, feeds.choose_labelled(y, 100, 10, seed=3))  # the seed decides
    assert not np.array_equal(chosen, feeds.choose_labelled(y, 100, 10, seed=4))
    assert seeds.LABELS == 6


def test_m2_resumed_mid_epoch_gives_the_numbers_of_an_uninterrupted_run(tiny_dir, tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    assert train.main(args(tiny_dir, reference, "m2", epochs=2)) == 0
    original, calls = m2.M2.step, []

    def step(self, *a, **kw):
        calls.append(1)
        if len(calls) == 6:  # the second step of epoch 2
            raise KeyboardInterrupt
        return original(self, *a, **kw)

    out = tmp_path / "run"
    monkeypatch.setattr(m2.M2, "step", step)
    assert train.main(args(tiny_dir, out, "m2", epochs=2)) == 130
    monkeypatch.undo()
    assert (checkpoint.load(out).epoch, checkpoint.load(out).step) == (1, 1)
    assert train.main(["--resume", str(out), "--eval-samples", "3", "--no-plots"]) == 0
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in metrics(reference)["history"]]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in metrics(out)["history"]]
    assert metrics(out)["final"] == metrics(reference)["final"]
    ours, theirs = checkpoint.load(out), checkpoint.load(reference)
    assert all(np.array_equal(ours.params[k], theirs.params[k]) for k in theirs.params)


@pytest.mark.parametrize("extra, message", [
    (["--labels", "200"], "not fewer than the 120 training images"),
    (["--labels", "25"], "--labels 25: 25 labels cannot be shared equally among 10 classes"),
])
def test_bad_labels_are_one_line_errors(tiny_dir, tmp_path, capsys, extra, message):
    assert train.main(args(tiny_dir, tmp_path / "run", "m2", *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("preset", ["default", "cvae"])
def test_labels_with_a_preset_that_takes_none_is_a_one_line_error(tiny_dir, tmp_path, capsys, preset):
    assert train.main(args(tiny_dir, tmp_path / "run", preset, "--labels", "20")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --labels is for the semi-supervised m2 preset") and err.count("\n") == 1


def test_evaluating_an_m2_checkpoint_reports_its_test_accuracy(tiny_dir, tmp_path, capsys):
    from minivae import evaluate

    out = tmp_path / "run"
    assert train.main(args(tiny_dir, out, "m2", epochs=1)) == 0
    trained = metrics(out)["final"]["test_accuracy"]
    capsys.readouterr()
    assert evaluate.main([str(out)]) == 0
    assert f"accuracy of q(y|x) {trained:.2%}" in capsys.readouterr().out


@pytest.mark.parametrize("binarize", ["none", "dynamic"])
def test_m2_steps_see_labelled_images_drawn_like_the_unlabelled_ones(binarize):
    dataset = data.tiny_dataset(60, 10, binarize=binarize)
    config = {"labels": 20, "classes": 10, "seed": 0, "labelled_batch_size": 7, "binarize": binarize}
    feed = feeds.SemiSupervised(dataset, config)
    seen = {}

    class Model:
        latent, classes = 3, 10

        def step(self, x_labelled, y_labelled, x_unlabelled, eps_labelled, eps_unlabelled):
            seen.update(x=x_labelled, y=y_labelled, eps_u=eps_unlabelled)

    feed.step(Model(), backend.xp.zeros((5, 784), np.float32), np.arange(5), np.random.default_rng(0))
    assert seen["x"].shape == (7, 784) and seen["eps_u"].shape == (50, 3)
    assert isinstance(seen["x"], backend.xp.ndarray) and isinstance(seen["eps_u"], backend.xp.ndarray)
    assert set(np.unique(backend.to_numpy(seen["y"]))) <= set(dataset.y_train[feed.labelled])
    assert (set(np.unique(backend.to_numpy(seen["x"]))) <= {0.0, 1.0}) == (binarize == "dynamic")
    assert len(feed.rows) == 40 and not set(feed.rows) & set(feed.labelled)
