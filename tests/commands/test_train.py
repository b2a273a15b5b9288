"""Tests for the training command (minivae.train) and the evaluation command (minivae.evaluate).

Every run trains a small model on a tiny synthetic dataset written as IDX files into a temporary folder, in
process (`train.main([...])`). Nothing here touches the network: the mirror lists are emptied, urlopen raises,
and the cache and home folders point into tmp_path.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error

import numpy as np
import pytest
from conftest import REPO, SHARED_DATA, write_tiny_dataset

from minivae import evaluate, train
from minivae.models import vae
from minivae.run import checkpoint, download, presets, training
from minivae.run import metrics as run_metrics

N_TRAIN, N_TEST, BATCH = 128, 48, 32  # 4 steps per epoch
STEPS = N_TRAIN // BATCH
FIGURES = {"reconstructions.png", "samples.png", "loss_curves.png", "latent_scatter.png", "latent_histograms.png",
           "interpolation.png", "manifold.png", "progress_samples.gif", "progress_reconstructions.gif"}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """The tiny synthetic dataset as the four gzip IDX files that data.load looks for."""
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny"), N_TRAIN, N_TEST)


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """No network and no real data folders: empty mirror lists, an urlopen that refuses, private cache/home."""
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("the tests never touch the network")

    monkeypatch.setattr(download, "urlopen", refuse)
    monkeypatch.setattr(download, "MIRRORS", {"mnist": [], "fashion-mnist": []})
    monkeypatch.setattr(download, "DEBIAN_DIR", str(tmp_path / "no-debian"))
    monkeypatch.delenv("MINIVAE_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def args(tiny_dir, out, *extra, epochs=2):
    """Options for a small, fast run: 16 hidden units, 2 latent dimensions, no figures unless asked."""
    plots = [] if "--plots" in extra else ["--no-plots"]
    extra = [e for e in extra if e != "--plots"]
    return ["--data-dir", str(tiny_dir), "--out", str(out), "--hidden", "16", "--latent", "2", "--batch-size",
            str(BATCH), "--epochs", str(epochs), "--eval-samples", "3", *plots, *extra]


def metrics(out):
    return json.loads((out / "metrics.json").read_text())


def numbers(out):
    """Everything a run computed, less the timings: history, final results, parameters, optimizer state."""
    history = [{k: v for k, v in h.items() if k != "seconds"} for h in metrics(out)["history"]]
    ckpt = checkpoint.load(out)
    return history, metrics(out).get("final"), ckpt.params, ckpt.optimizer_state


def assert_same(a, b):
    assert a[0] == b[0] and a[1] == b[1]
    for x, y in zip(a[2:], b[2:]):
        assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)


def stop_at_call(monkeypatch, k, action):
    """Make the k-th VAE.step call (1-based) run `action(model)` first, which may raise or signal."""
    original, calls = vae.VAE.step, []

    def step(self, x, eps=None, rng=None):
        calls.append(1)
        if len(calls) == k:
            action(self)
        return original(self, x, eps=eps, rng=rng)

    monkeypatch.setattr(vae.VAE, "step", step)


@pytest.fixture(scope="module")
def reference(tiny_dir, tmp_path_factory):
    """An uninterrupted 3-epoch run that the resume tests compare against."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert train.main(args(tiny_dir, out, epochs=3)) == 0
    return numbers(out)


# ---------------------------------------------------------------- a run end to end


def test_help_works_as_a_module():
    result = subprocess.run([sys.executable, "-m", "minivae.train", "--help"], capture_output=True, text=True,
                            cwd=REPO, timeout=60)
    assert result.returncode == 0 and "--resume" in result.stdout


def test_the_commands_import_neither_matplotlib_nor_scipy_before_they_draw():
    # (they take a second or two to import: --help and a typo's error would wait for them)
    code = ("import sys, minivae.train, minivae.evaluate, minivae.explore; "
            "print(sorted({'matplotlib', 'scipy'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


def test_run_writes_metrics_checkpoint_and_figures(tiny_dir, tmp_path):
    out = tmp_path / "run"
    assert train.main(args(tiny_dir, out, "--plots")) == 0
    m = metrics(out)
    assert m["config"]["hidden"] == [16] and m["config"]["epochs"] == 2
    assert [h["epoch"] for h in m["history"]] == [1, 2]
    for h in m["history"]:
        assert set(h) == {"epoch", "train", "test", "seconds"}
        assert set(h["train"]) == set(h["test"]) == {"loss", "recon", "kl"}
    assert set(m["final"]) == {"test_elbo", "test_recon", "test_recon_constant", "test_kl", "test_log_likelihood",
                              "eval_samples"}
    assert m["final"]["test_log_likelihood"] >= m["final"]["test_elbo"] - 5  # a bound, tighter on average
    assert checkpoint.load(out).epoch == 2
    assert FIGURES | {"explorer.html"} <= set(os.listdir(out))
    page = (out / "explorer.html").read_text()  # the explorer page says what the run printed
    assert f"test ELBO\",\"{m['final']['test_elbo']:.2f} nats of log p(x), after epoch 2\"" in page


def test_no_plots_writes_no_figures(tiny_dir, tmp_path):
    out = tmp_path / "run"
    assert train.main(args(tiny_dir, out)) == 0
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "metrics.json"]


def test_each_epoch_prints_one_line_and_the_end_a_summary(tiny_dir, tmp_path, capsys):
    assert train.main(args(tiny_dir, tmp_path / "run")) == 0
    lines = capsys.readouterr().out.splitlines()
    epoch_lines = [line for line in lines if line.startswith("epoch")]
    assert len(epoch_lines) == 2
    assert re.match(r"epoch +2/2 +train [\d.]+ +test [\d.]+ \(recon [\d.]+ \+ KL [\d.]+\) +[\d.]+ s", epoch_lines[1])
    assert "ELBO" in lines[-2] and "log-likelihood" in lines[-2]
    assert lines[-1].startswith("  the log-likelihood is ")  # what it is: a density of the images, or not


def test_the_start_line_says_1_epoch_not_1_epochs(tiny_dir, tmp_path, capsys):
    assert train.main(args(tiny_dir, tmp_path / "run", epochs=1)) == 0
    assert ", 1 epoch, " in capsys.readouterr().out


def test_epoch_line_shows_beta_times_kl_when_beta_is_not_1():
    record = {"epoch": 1, "train": {"loss": 3.0}, "test": {"loss": 3.0, "recon": 2.0, "kl": 2.0}, "seconds": 1.0}
    assert "(recon 2.00 + KL 2.00)" in training.epoch_line(record, {"arch": "mlp", "beta": 1.0, "epochs": 1})
    assert "(recon 2.00 + 0.5 x KL 2.00)" in training.epoch_line(record, {"arch": "mlp", "beta": 0.5, "epochs": 1})


def test_summary_writes_the_elbo_as_its_sum_with_the_gaussian_constant_of_mse():
    final = {"test_elbo": -110.0, "test_recon": 50.0, "test_recon_constant": 40.0, "test_kl": 20.0,
             "test_log_likelihood": None, "eval_samples": 0}
    line = run_metrics.summary(final, 10, {"arch": "mlp", "beta": 1.0, "recon": "mse", "binarize": "none"})
    assert "ELBO -110.00 nats = -(recon 50.00 + Gaussian constant 40.00 + KL 20.00)" in line


def test_default_out_is_a_new_folder_under_runs_every_time(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert train.main([a for a in args(tiny_dir, "x", epochs=1) if a not in ("--out", "x")]) == 0
    runs = sorted(os.listdir(tmp_path / "runs"))
    assert len(runs) == 2 and all(re.fullmatch(r"\d{8}-\d{6}-default-mnist(-2)?", r) for r in runs)


def test_out_folder_holding_a_run_is_refused(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(args(tiny_dir, out, epochs=1)) == 0
    assert train.main(args(tiny_dir, out, epochs=1)) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_validation_split_adds_a_val_loss_per_epoch(tiny_dir, tmp_path):
    out = tmp_path / "run"
    assert train.main(args(tiny_dir, out, "--validation", "0.25", epochs=1)) == 0
    assert set(metrics(out)["history"][0]["val"]) == {"loss", "recon", "kl"}


# ---------------------------------------------------------------- reproducibility and resuming


def test_same_seed_gives_the_same_numbers(tiny_dir, tmp_path):
    for name in ("a", "b"):
        assert train.main(args(tiny_dir, tmp_path / name, "--binarize", "dynamic")) == 0
    assert_same(numbers(tmp_path / "a"), numbers(tmp_path / "b"))


def test_different_seed_gives_different_numbers(tiny_dir, tmp_path):
    for name, seed in (("a", "0"), ("b", "1")):
        assert train.main(args(tiny_dir, tmp_path / name, "--seed", seed)) == 0
    assert numbers(tmp_path / "a")[0] != numbers(tmp_path / "b")[0]


def test_resume_from_an_epoch_end_gives_the_numbers_of_an_uninterrupted_run(tiny_dir, tmp_path, reference):
    out = tmp_path / "run"
    assert train.main(args(tiny_dir, out, epochs=1)) == 0
    assert train.main(["--resume", str(out / "checkpoint.npz"), "--epochs", "3", "--data-dir", str(tiny_dir),
                       "--eval-samples", "3", "--no-plots"]) == 0
    assert_same(numbers(out), reference)


def test_ctrl_c_mid_epoch_saves_a_checkpoint_that_resumes_to_the_same_numbers(tiny_dir, tmp_path, monkeypatch,
                                                                              capsys, reference):
    def ctrl_c(model):
        raise KeyboardInterrupt

    out = tmp_path / "run"
    stop_at_call(monkeypatch, STEPS + 3, ctrl_c)  # the third step of epoch 2: two steps of it are done
    assert train.main(args(tiny_dir, out, epochs=3)) == 130
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "epoch 2, step 2" in err and "Traceback" not in err
    ckpt = checkpoint.load(out)
    assert (ckpt.epoch, ckpt.step) == (1, 2)
    assert len(metrics(out)["history"]) == 1  # metrics.json was written at the end of epoch 1
    monkeypatch.undo()
    command = err.split("resume with: ")[1].split()
    assert command[:3] == ["python", "-m", "minivae.train"]
    assert train.main(command[3:]) == 0  # the printed command, as it is (it keeps --eval-samples, --no-plots)
    assert_same(numbers(out), reference)


def test_ctrl_c_signal_stops_between_two_steps(tiny_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    stop_at_call(monkeypatch, 3, lambda model: os.kill(os.getpid(), signal.SIGINT))
    assert train.main(args(tiny_dir, out)) == 130
    ckpt = checkpoint.load(out)
    assert (ckpt.epoch, ckpt.step) == (0, 3)  # the step that was running finished; no step was cut in half
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back


def test_nan_loss_stops_with_exit_1_and_keeps_the_last_checkpoint(tiny_dir, tmp_path, monkeypatch, capsys):
    out, kept = tmp_path / "run", []

    def poison(model):
        kept.append((out / "checkpoint.npz").read_bytes())  # the checkpoint of epoch 1, before anything goes wrong
        model.params["decoder.0.W"][...] = np.nan

    stop_at_call(monkeypatch, STEPS + 2, poison)
    assert train.main(args(tiny_dir, out, epochs=3)) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "epoch 2, step 2" in err and "--lr" in err
    assert (out / "checkpoint.npz").read_bytes() == kept[0]


def test_huge_learning_rate_is_caught_as_a_non_finite_loss(tiny_dir, tmp_path, capsys):
    assert train.main(args(tiny_dir, tmp_path / "run", "--lr", "1e30", "--optimizer", "sgd")) == 1
    assert "became" in capsys.readouterr().err


# ---------------------------------------------------------------- errors are one line, exit 2


def one_error_line(err):
    """stderr holds exactly one line, the error, and no traceback."""
    return "Traceback" not in err and len(err.strip().splitlines()) == 1 and err.startswith("error: ")


@pytest.mark.parametrize("damage", ["truncate", "random bytes"])
def test_damaged_checkpoint_is_one_line_exit_2(tiny_dir, tmp_path, capsys, damage):
    out = tmp_path / "run"
    assert train.main(args(tiny_dir, out, epochs=1)) == 0
    path = out / "checkpoint.npz"
    path.write_bytes(path.read_bytes()[:1000] if damage == "truncate" else os.urandom(1000))
    capsys.readouterr()
    assert train.main(["--resume", str(path), "--data-dir", str(tiny_dir)]) == 2
    assert one_error_line(capsys.readouterr().err)


def test_resuming_with_another_architecture_is_one_line_exit_2(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(args(tiny_dir, out, epochs=1)) == 0
    capsys.readouterr()
    assert train.main(["--resume", str(out), "--hidden", "32", "--data-dir", str(tiny_dir)]) == 2
    err = capsys.readouterr().err
    assert one_error_line(err) and "--hidden [32] conflicts" in err


def test_missing_resume_path_is_one_line_exit_2(tmp_path, capsys):
    assert train.main(["--resume", str(tmp_path / "nothing.npz")]) == 2
    assert one_error_line(capsys.readouterr().err)


def test_offline_without_arguments_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(download, "MIRRORS", {"mnist": [f"http://127.0.0.1:{port}/"], "fashion-mnist": []})
    monkeypatch.chdir(tmp_path)
    assert train.main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    assert [line for line in err if line.startswith("error: ")] == [err[-1]]  # above it: the download attempt
    assert "could not download" in err[-1]
    assert not (tmp_path / "runs").exists()  # a run that cannot start leaves no folder behind


def test_an_iwae_run_records_its_objective_and_resumes_to_the_numbers_of_an_uninterrupted_run(tiny_dir, tmp_path,
                                                                                             capsys):
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert train.main(args(tiny_dir, whole, "--objective", "iwae", "--k", "3", epochs=2)) == 0
    assert re.search(r"epoch +2/2 +train [\d.]+ \(-IWAE, K=3\) +test", capsys.readouterr().out)
    assert metrics(whole)["config"]["objective"] == "iwae" and checkpoint.load(whole).config["k"] == 3
    assert train.main(args(tiny_dir, part, "--objective", "iwae", "--k", "3", epochs=1)) == 0
    assert train.main(["--resume", str(part), "--epochs", "2", "--data-dir", str(tiny_dir), "--eval-samples", "3",
                       "--no-plots"]) == 0
    assert_same(numbers(part), numbers(whole))


def test_a_k_sample_run_differs_from_the_single_sample_one(tiny_dir, tmp_path):
    assert train.main(args(tiny_dir, tmp_path / "k1", epochs=1)) == 0
    assert train.main(args(tiny_dir, tmp_path / "k2", "--k", "2", epochs=1)) == 0
    assert metrics(tmp_path / "k1")["history"] != metrics(tmp_path / "k2")["history"]


def test_iwae_with_a_kl_weight_is_one_line_exit_2(tiny_dir, tmp_path, capsys):
    assert train.main(args(tiny_dir, tmp_path / "run", "--objective", "iwae", "--beta", "0.5")) == 2
    err = capsys.readouterr().err
    assert one_error_line(err) and err.startswith("error: --objective iwae: the IWAE bound has no KL weight")
    assert not (tmp_path / "run").exists()


def test_resuming_with_another_objective_is_one_line_exit_2(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(args(tiny_dir, out, epochs=1)) == 0
    capsys.readouterr()
    assert train.main(["--resume", str(out), "--objective", "iwae", "--data-dir", str(tiny_dir)]) == 2
    err = capsys.readouterr().err
    assert one_error_line(err) and "--objective iwae conflicts with the checkpoint's vae" in err


def test_a_config_saved_before_objective_existed_trains_the_plain_vae():
    old = {key: value for key, value in presets.config_for().items() if key not in ("objective", "k")}
    assert presets.config_problem(old) is None
    assert presets.complete(old) == presets.config_for()


@pytest.mark.parametrize("bad", [["--lr", "-1"], ["--lr", "nan"], ["--batch-size", "0"], ["--dataset", "cifar"],
                                 ["--hidden", "0"], ["--latent", "-2"], ["--validation", "1"], ["--epochs", "x"],
                                 ["--k", "0"], ["--objective", "elbo"]])
def test_invalid_options_are_argparse_errors(bad, capsys):
    with pytest.raises(SystemExit) as exit_:
        train.main(bad)
    assert exit_.value.code == 2


# ---------------------------------------------------------------- evaluation


def test_evaluate_command_prints_the_final_numbers_of_the_run(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(args(tiny_dir, out, epochs=1)) == 0
    capsys.readouterr()
    assert evaluate.main([str(out), "--data-dir", str(tiny_dir), "--eval-samples", "3"]) == 0
    final = metrics(out)["final"]
    printed = capsys.readouterr().out
    assert f"ELBO {final['test_elbo']:.2f}" in printed
    assert f"log-likelihood >= {final['test_log_likelihood']:.2f}" in printed
    assert "the log-likelihood is not a log-density" in printed  # a Bernoulli on grayscale pixels


def test_eval_only_evaluates_the_checkpoint_without_training(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(args(tiny_dir, out, epochs=1)) == 0
    before = (out / "checkpoint.npz").read_bytes()
    capsys.readouterr()
    assert train.main(["--resume", str(out), "--eval-only", "--data-dir", str(tiny_dir), "--eval-samples", "0"]) == 0
    assert "ELBO" in capsys.readouterr().out
    assert (out / "checkpoint.npz").read_bytes() == before


def test_evaluate_of_a_damaged_checkpoint_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "c.npz").write_bytes(b"not a checkpoint")
    assert evaluate.main([str(tmp_path / "c.npz")]) == 2
    assert one_error_line(capsys.readouterr().err)


@pytest.mark.skipif(not (SHARED_DATA / "fashion-mnist").is_dir(), reason="no shared Fashion-MNIST here")
def test_real_fashion_mnist_learns_in_two_hundred_steps(tmp_path):
    out = tmp_path / "run"
    # 40% of the training set is 24,000 images: 188 steps of 128.
    assert train.main(["--dataset", "fashion-mnist", "--data-dir", str(SHARED_DATA / "fashion-mnist"), "--out",
                       str(out), "--epochs", "1", "--validation", "0.6", "--eval-samples", "0", "--no-plots"]) == 0
    test_loss = metrics(out)["history"][0]["test"]["loss"]
    assert test_loss < 300  # an untrained model scores about 550; a fully trained one about 240


def test_default_importance_samples_are_fewer_for_the_slow_convnet():
    assert run_metrics.eval_samples_for(presets.config_for("default")) == 100
    assert run_metrics.eval_samples_for(presets.config_for("keras-conv-2d")) == 10
    assert run_metrics.eval_samples_for(presets.config_for("keras-conv-2d"), asked=50) == 50


def test_resuming_into_a_new_out_folder_leaves_a_run_that_can_be_resumed_there(tiny_dir, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    assert train.main(args(tiny_dir, first, epochs=1)) == 0
    assert train.main(["--resume", str(first), "--epochs", "1", "--out", str(second), "--no-plots",
                       "--eval-samples", "0"]) == 0  # nothing to train: only evaluated
    assert checkpoint.load(second).epoch == 1
    assert train.main(["--resume", str(second), "--epochs", "2", "--no-plots", "--eval-samples", "0"]) == 0
    assert checkpoint.load(second).epoch == 2 and checkpoint.load(first).epoch == 1
