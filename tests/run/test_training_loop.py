"""The training loop's bookkeeping and randomness, checked against values worked out independently.

A resumed run compared with an uninterrupted one, or a run with the same run again, shares any mistake of the loop.
So here the training command runs on a tiny dataset while every step's inputs and losses are recorded, and they are
compared with

* a replay of what training.py, feeds.py and seeds.py document, written with NumPy alone: epoch e shuffles with
  default_rng([seed, e, 0]); its noise generator default_rng([seed, e, 1]) draws, step after step, the binary
  images (with dynamic binarization), M2's labelled picks and their binary draws, then eps; M2's labelled images are
  labels / K of each class, drawn by default_rng([seed, 0, 6]);
* plain sums for the epoch's training loss: sum over its steps of (the step's loss) x (its examples), over the
  examples, the last batch short.

Every run: 40 training images in batches of 16 (16, 16, and a short 8; M2 keeps 20 labels and runs over the 20
others, 16 and a short 4), 2 epochs, with each source of per-step randomness: dynamic binarization, the K-sample
noise (K, B, L), the labels of the conditional VAE, M2's labelled draws.
"""

import inspect
import json

import numpy as np
import pytest
import references as ref
from conftest import write_tiny_dataset

from minivae import train
from minivae.core import backend
from minivae.models import iwae, m2, vae
from minivae.run import checkpoint, data, feeds, presets

N_TRAIN, N_TEST, BATCH, LATENT, SEED = 40, 12, 16, 2, 0
RUNS = {  # name -> the options of the run, beyond the small model's
    "mlp dynamic": ["--binarize", "dynamic"],
    "iwae K=2 dynamic": ["--objective", "iwae", "--k", "2", "--binarize", "dynamic"],
    "k-sample elbo K=3 threshold": ["--k", "3", "--binarize", "threshold"],
    "iwae K=1": ["--objective", "iwae", "--k", "1"],
    "cvae dynamic": ["--preset", "cvae", "--binarize", "dynamic"],
    "m2 dynamic": ["--preset", "m2", "--labels", "20", "--binarize", "dynamic"],
    "m2 grayscale": ["--preset", "m2", "--labels", "20", "--seed", "3"],
}


@pytest.fixture(autouse=True)
def offline(isolated_data):
    """No real data folder or network: the runs read the tiny dataset's files."""


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny"), N_TRAIN, N_TEST)


def command(tiny_dir, out, options, epochs=2):
    return ["--data-dir", str(tiny_dir), "--out", str(out), "--hidden", "8", "--latent", str(LATENT),
            "--batch-size", str(BATCH), "--epochs", str(epochs), "--eval-samples", "0", "--no-plots", *options]


def option(options, name, default):
    return options[options.index(name) + 1] if name in options else default


# ---- recording what each step is fed ----------------------------------------------------------------------------


class Steps:
    """Records every training step's inputs (as host arrays, by the step function's own argument names) and the loss
    it returned, by wrapping VAE.step, iwae.step and M2.step. stop_at: the call (1-based) that raises
    KeyboardInterrupt instead of stepping, as Ctrl-C between two steps would."""

    def __init__(self, monkeypatch, stop_at=None):
        self.inputs, self.losses, self.stop_at, self.calls = [], [], stop_at, 0
        for owner, name in ((vae.VAE, "step"), (iwae, "step"), (m2.M2, "step")):
            monkeypatch.setattr(owner, name, self.wrap(getattr(owner, name)))

    def wrap(self, step):
        signature = inspect.signature(step)

        def recording(*args, **kwargs):
            self.calls += 1
            if self.calls == self.stop_at:
                raise KeyboardInterrupt
            arguments = signature.bind(*args, **kwargs).arguments
            self.inputs.append({name: np.array(backend.to_numpy(value)) for name, value in arguments.items()
                                if name not in ("self", "model", "objective", "k", "rng") and value is not None})
            loss = step(*args, **kwargs)
            self.losses.append(loss)
            return loss

        return recording


# ---- the independent replay ---------------------------------------------------------------------------------------


def labelled_images(y, labels, classes, seed):
    """labels / classes images of each class, drawn without replacement by default_rng([seed, 0, 6]), sorted."""
    rng = np.random.default_rng([seed, 0, 6])
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), labels // classes, replace=False)
                                   for c in range(classes)]))


def replay(options, dataset, epoch):
    """The inputs of every step of epoch `epoch`, drawn as the docstrings of training.py and feeds.py say."""
    seed = int(option(options, "--seed", str(SEED)))
    dynamic = option(options, "--binarize", "none") == "dynamic"
    preset, k = option(options, "--preset", "default"), int(option(options, "--k", "1"))
    objective = option(options, "--objective", "vae")
    x_train, y_train = dataset.x_train, dataset.y_train
    runs_over = np.arange(len(x_train))
    if preset == "m2":
        labelled = labelled_images(y_train, int(option(options, "--labels", "0")), 10, seed)
        runs_over = np.setdiff1d(runs_over, labelled)
    order = np.random.default_rng([seed, epoch, 0]).permutation(len(runs_over))
    noise = np.random.default_rng([seed, epoch, 1])

    def binary(x):
        return (noise.random(x.shape, dtype=np.float32) < x).astype(np.float32) if dynamic else x

    steps = []
    for start in range(0, len(runs_over), BATCH):
        rows = runs_over[order[start:start + BATCH]]
        x = binary(x_train[rows])
        if preset == "m2":
            pick = labelled[noise.integers(0, len(labelled), 100)]  # the m2 preset's labelled_batch_size
            x_labelled = binary(x_train[pick])
            eps_labelled = noise.standard_normal((100, LATENT), dtype=np.float32)
            eps_unlabelled = noise.standard_normal((10 * len(rows), LATENT), dtype=np.float32)  # class-major rows
            steps.append({"x_labelled": x_labelled, "y_labelled": y_train[pick], "x_unlabelled": x,
                          "eps_labelled": eps_labelled, "eps_unlabelled": eps_unlabelled})
        elif objective == "vae" and k == 1:
            eps = noise.standard_normal((len(rows), LATENT), dtype=np.float32)
            steps.append({"x": x, "y": y_train[rows], "eps": eps} if preset == "cvae" else {"x": x, "eps": eps})
        else:
            steps.append({"x": x, "eps": noise.standard_normal((k, len(rows), LATENT), dtype=np.float32)})
    return steps


def assert_fed_as_replayed(recorded, replayed):
    assert len(recorded) == len(replayed)
    for i, (fed, expected) in enumerate(zip(recorded, replayed, strict=True)):
        assert fed.keys() == expected.keys(), i
        for name, value in expected.items():
            assert fed[name].dtype == value.dtype, (i, name, fed[name].dtype)
            np.testing.assert_array_equal(fed[name], value, err_msg=f"step {i + 1}, {name}")


def load(tiny_dir, options):
    return data.load("mnist", tiny_dir, download=False, binarize=option(options, "--binarize", "none"),
                     seed=int(option(options, "--seed", str(SEED))))


def steps_per_epoch(options):
    return 2 if option(options, "--preset", "default") == "m2" else 3


def examples(fed):
    """The examples a step counts for in its epoch: its batch (M2: its unlabelled batch, what the epoch runs over)."""
    return len(fed["x_unlabelled"] if "x_unlabelled" in fed else fed["x"])


def weighted_means(losses, fed):
    """Each part of the loss averaged over the epoch's examples: sum_steps part * examples / sum_steps examples."""
    counts = [examples(f) for f in fed]
    return {name: sum(getattr(loss, name) * n for loss, n in zip(losses, counts)) / sum(counts)
            for name in losses[0]._fields}


def history(out):
    return json.loads((out / "metrics.json").read_text())["history"]


# ---- the tests ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(RUNS))
def test_each_step_is_fed_what_the_documented_generators_draw(monkeypatch, tmp_path, tiny_dir, name):
    options = RUNS[name]
    steps = Steps(monkeypatch)
    assert train.main(command(tiny_dir, tmp_path / "run", options)) == 0
    dataset = load(tiny_dir, options)
    assert_fed_as_replayed(steps.inputs, replay(options, dataset, 1) + replay(options, dataset, 2))


@pytest.mark.parametrize("name", sorted(RUNS))
def test_an_epochs_training_loss_is_the_mean_over_its_examples_of_its_steps_losses(monkeypatch, tmp_path, tiny_dir,
                                                                                   name):
    options = RUNS[name]
    steps = Steps(monkeypatch)
    out = tmp_path / "run"
    assert train.main(command(tiny_dir, out, options)) == 0
    per_epoch = steps_per_epoch(options)
    assert [examples(f) for f in steps.inputs[:per_epoch]][-1] < BATCH  # the last batch is short
    for epoch, record in enumerate(history(out)):  # each epoch's steps alone: its totals start from zero
        part = slice(epoch * per_epoch, (epoch + 1) * per_epoch)
        assert record["train"] == pytest.approx(weighted_means(steps.losses[part], steps.inputs[part]), rel=1e-12)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_run_resumed_mid_epoch_is_fed_what_the_documented_generators_draw(monkeypatch, tmp_path, tiny_dir, name):
    options = RUNS[name]
    out, per_epoch = tmp_path / "run", steps_per_epoch(options)
    before = Steps(monkeypatch, stop_at=per_epoch + 2)  # Ctrl-C before the second step of epoch 2
    assert train.main(command(tiny_dir, out, options)) == 130
    assert (checkpoint.load(out).epoch, checkpoint.load(out).step) == (1, 1)
    monkeypatch.undo()
    after = Steps(monkeypatch)
    assert train.main(["--resume", str(out), "--eval-samples", "0", "--no-plots"]) == 0
    dataset = load(tiny_dir, options)
    epoch_2 = replay(options, dataset, 2)
    assert_fed_as_replayed(before.inputs[per_epoch:], epoch_2[:1])
    assert_fed_as_replayed(after.inputs, epoch_2[1:])
    # and epoch 2's training loss counts the step before the stop with the steps after it
    expected = weighted_means(before.losses[per_epoch:] + after.losses, before.inputs[per_epoch:] + after.inputs)
    assert history(out)[1]["train"] == pytest.approx(expected, rel=1e-12)


def test_no_two_epochs_draw_the_same_shuffle_noise_or_binary_images(monkeypatch, tmp_path, tiny_dir):
    steps, rows = Steps(monkeypatch), []
    step = feeds.Unsupervised.step
    monkeypatch.setattr(feeds.Unsupervised, "step", lambda feed, model, x, batch_rows, noise: (
        rows.append(np.array(batch_rows)), step(feed, model, x, batch_rows, noise))[1])
    assert train.main(command(tiny_dir, tmp_path / "run", RUNS["mlp dynamic"], epochs=3)) == 0
    orders = [np.concatenate(rows[3 * e:3 * e + 3]) for e in range(3)]
    eps = [np.concatenate([fed["eps"] for fed in steps.inputs[3 * e:3 * e + 3]]) for e in range(3)]
    draws = []  # each image's binary draw in each epoch, by image
    for e, order in enumerate(orders):
        assert sorted(order) == list(range(N_TRAIN))  # every image once per epoch
        x = np.concatenate([fed["x"] for fed in steps.inputs[3 * e:3 * e + 3]])
        draws.append(x[np.argsort(order)])
    for a in range(3):
        for b in range(a):
            assert (orders[a] != orders[b]).any(), (a, b)
            assert not np.isin(eps[a], eps[b]).any(), (a, b)  # not one number of one epoch's noise in another's
            assert (draws[a] != draws[b]).any(axis=1).mean() > 0.9, (a, b)  # almost every image drawn anew


def test_each_epoch_reports_the_test_and_validation_losses_of_the_model_it_saved(tmp_path, tiny_dir):
    # The last epoch's record is computed from the weights the checkpoint holds: its test loss is the mean over the
    # test images, its validation loss the mean over the held-out training images (each binarized once), every
    # image scored alone (tests/references.py) with the evaluation noise default_rng([seed, 0, 2]) replayed.
    options = ["--validation", "0.25", "--binarize", "dynamic", "--beta", "0.5"]
    out = tmp_path / "run"
    assert train.main(command(tiny_dir, out, options)) == 0
    ckpt = checkpoint.load(out)
    model = presets.build_model(ckpt.config)
    checkpoint.restore(model, None, ckpt)
    dataset = data.load("mnist", tiny_dir, download=False, binarize="dynamic", seed=SEED, validation=0.25)
    assert len(dataset.x_val) == N_TRAIN // 4 and len(dataset.x_test) == N_TEST
    last = history(out)[-1]
    for split, x in (("test", dataset.x_test), ("val", dataset.x_val)):
        eps = np.random.default_rng([SEED, 0, 2]).standard_normal((len(x), LATENT), dtype=np.float32)
        recon, kl = np.array([ref.neg_elbo(model, x[b], eps[b]) for b in range(len(x))]).T
        assert last[split]["recon"] == pytest.approx(recon.mean(), rel=1e-5), split
        assert last[split]["kl"] == pytest.approx(kl.mean(), rel=1e-4), split  # ~0.002 nats: float32's 7e-6
        assert last[split]["loss"] == pytest.approx(recon.mean() + 0.5 * kl.mean(), rel=1e-5), split
