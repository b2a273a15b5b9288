"""The tests of run/ that check against independent values (test_training_loop.py, test_metrics.py, test_feeds.py)
must fail on every plausible one-line mistake in the loop's bookkeeping, its randomness, what a step is fed, and
the evaluation: mistakes that a resumed run compared with an uninterrupted one, or a run compared with itself,
cannot see, since both sides make them.

Each test plants one mistake (tests/planting.py) and runs the test named beside it, which must then fail. The ids
name the mistakes.
"""

import inspect
from functools import partial

import pytest
import test_data as data_tests
import test_feeds as feeds_tests
import test_metrics as metrics_tests
import test_training_loop as loop
from conftest import write_dataset, write_tiny_dataset
from planting import Mistake, fails, plant


@pytest.fixture(autouse=True)
def offline(isolated_data):
    """No real data folder or network: the runs read the tiny dataset's files."""


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """The datasets the catching tests take as arguments: the tiny one the runs train on, test_data.py's folder."""
    return {"tiny_dir": write_tiny_dataset(tmp_path_factory.mktemp("tiny"), loop.N_TRAIN, loop.N_TEST),
            "folder": write_dataset(tmp_path_factory.mktemp("data") / "d", n_train=200, n_test=100)}


def fed(run):
    return partial(loop.test_each_step_is_fed_what_the_documented_generators_draw, name=run)


def epoch_loss(run):
    return partial(loop.test_an_epochs_training_loss_is_the_mean_over_its_examples_of_its_steps_losses, name=run)


def resumed(run):
    return partial(loop.test_a_run_resumed_mid_epoch_is_fed_what_the_documented_generators_draw, name=run)


epochs_differ = loop.test_no_two_epochs_draw_the_same_shuffle_noise_or_binary_images
saved_model = loop.test_each_epoch_reports_the_test_and_validation_losses_of_the_model_it_saved
test_loss = partial(metrics_tests.test_the_test_loss_is_the_mean_of_every_images_loss_when_the_last_batch_is_short, 0)
cvae_test_loss = partial(test_loss.func, 3)
log_likelihood = partial(
    metrics_tests.test_the_log_likelihood_of_a_test_set_larger_than_a_batch_is_the_mean_of_each_images_estimate,
    "bce", 0)
cvae_log_likelihood = partial(log_likelihood.func, "bce", 3)
bounds = metrics_tests.test_the_log_likelihood_lies_between_the_elbo_and_log_p_x
final_elbo = metrics_tests.test_the_final_elbo_is_each_decoders_log_density_less_the_kl_at_beta_1
squared_error = partial(metrics_tests.test_the_squared_error_elbo_and_log_likelihood_are_gaussian_log_densities, 3)
m2_losses = partial(metrics_tests.test_m2s_test_losses_weigh_the_labelled_elbo_by_its_weight_image_by_image, 4)
m2_final = metrics_tests.test_m2s_final_results_are_its_accuracy_and_the_two_elbos
covered = feeds_tests.test_the_labelled_images_m2_draws_cover_all_of_them_the_first_and_the_last_included
own_labels = feeds_tests.test_each_labelled_image_comes_with_its_own_label
labelled_apart = feeds_tests.test_labels_over_k_of_each_class_keep_their_label_and_the_epoch_runs_over_all_the_others
just_enough = feeds_tests.test_choosing_labels_takes_a_class_with_just_enough_images_and_leaves_one_unlabelled
refused = feeds_tests.test_choosing_labels_refuses_zero_an_unequal_share_and_no_image_left_unlabelled

seeded_data = data_tests.test_the_split_and_the_evaluation_sets_binary_draws_are_seedsequences_three_children

LOOP = "run.training.train"
LABELLED_IMAGES = ("    if self.dynamic:\n"  # SemiSupervised.step's labelled images (as plant reads it: dedented)
                   "        x_labelled = backend.to_device(data.binarize_batch(self.x_labelled[pick], noise))\n"
                   "    else:\n"
                   "        x_labelled = self.x_labelled[backend.to_device(pick)]\n")
LABELLED_EPS = "    eps_labelled = noise.standard_normal((len(pick), model.latent), dtype=np.float32)\n"
MISTAKES = [
    # run/training.py: the epoch's totals
    Mistake("totals-add-batch-means-unweighted", "run.training.Totals.add",
            "self.sums.get(name, 0.0) + value * n", "self.sums.get(name, 0.0) + value", epoch_loss("mlp dynamic")),
    Mistake("totals-count-batches-not-examples", "run.training.Totals.add",
            "self.examples += n", "self.examples += 1", epoch_loss("mlp dynamic")),
    Mistake("loop-counts-the-short-batch-as-a-full-one", LOOP,
            "state.totals.add(loss, len(rows))", "state.totals.add(loss, batch_size)", epoch_loss("mlp dynamic")),
    Mistake("totals-carried-into-the-next-epoch", "run.training.finish_epoch",
            "Totals(), None, 0.0", "state.totals, None, 0.0", epoch_loss("mlp dynamic")),
    # run/training.py and run/seeds.py: each epoch's own randomness
    Mistake("every-epoch-shuffled-alike", LOOP,
            "seeds.generator(seed, seeds.ORDER, epoch)", "seeds.generator(seed, seeds.ORDER, 1)", epochs_differ),
    Mistake("every-epoch-draws-the-same-noise", LOOP,
            "seeds.generator(seed, seeds.NOISE, epoch)", "seeds.generator(seed, seeds.NOISE, 1)", epochs_differ),
    Mistake("noise-seeded-by-the-epochs-finished", LOOP,
            "seeds.generator(seed, seeds.NOISE, epoch)", "seeds.generator(seed, seeds.NOISE, state.epoch)",
            fed("mlp dynamic")),
    Mistake("shuffle-seeded-by-the-epochs-finished", LOOP,
            "seeds.generator(seed, seeds.ORDER, epoch)", "seeds.generator(seed, seeds.ORDER, state.epoch)",
            fed("cvae dynamic")),
    Mistake("noise-drawn-from-the-shuffles-generator", LOOP,
            "noise = seeds.generator(seed, seeds.NOISE, epoch)", "noise = order", fed("iwae K=2 dynamic")),
    Mistake("generator-ignores-the-epoch", "run.seeds.generator",
            "default_rng([seed, epoch, purpose])", "default_rng([seed, purpose])", epochs_differ),
    Mistake("binary-draws-from-the-shuffles-generator", LOOP,
            "data.binarize_batch(x_train[rows], noise)", "data.binarize_batch(x_train[rows], order)",
            fed("mlp dynamic")),
    Mistake("test-images-drawn-by-the-validation-generator", "run.data._split_and_binarize",
            "binarize_batch(data.x_test, test_rng)", "binarize_batch(data.x_test, val_rng)", seeded_data),
    Mistake("split-by-the-test-draws-generator", "run.data._split_and_binarize",
            "split_rng, test_rng, val_rng = seeds", "test_rng, split_rng, val_rng = seeds", seeded_data),
    Mistake("binary-draw-inverted", "run.data.binarize_batch",
            "rng.random(x.shape, dtype=x.dtype) < x", "rng.random(x.shape, dtype=x.dtype) > x", fed("mlp dynamic")),
    Mistake("shuffle-leaves-out-the-last-image", "run.data.batches",
            "rng.permutation(n)", "rng.permutation(n - 1)", epochs_differ),
    # run/feeds.py: what a step is fed
    Mistake("vae-noise-drawn-in-float64", "run.feeds.Unsupervised.step",
            "eps = noise.standard_normal((len(x), model.latent), dtype=np.float32)",
            "eps = noise.standard_normal((len(x), model.latent))", fed("mlp dynamic")),
    Mistake("k-sample-noise-drawn-image-major", "run.feeds.Unsupervised.step",
            "noise.standard_normal((self.k, len(x), model.latent), dtype=np.float32)",
            "noise.standard_normal((len(x), self.k, model.latent), dtype=np.float32).transpose(1, 0, 2)",
            fed("k-sample elbo K=3 threshold")),
    Mistake("iwae-with-one-sample-trained-as-the-plain-vae", "run.feeds.Unsupervised.step",
            'if self.objective == "vae" and self.k == 1:', "if self.k == 1:", fed("iwae K=1")),
    Mistake("cvae-labels-of-the-first-images", "run.feeds.Supervised.step",
            "self.y_train[rows]", "self.y_train[:len(rows)]", fed("cvae dynamic")),
    Mistake("labelled-draw-misses-the-last-image", "run.feeds.SemiSupervised.step",
            "noise.integers(0, len(self.labelled), self.batch_size)",
            "noise.integers(0, len(self.labelled) - 1, self.batch_size)", covered),
    Mistake("labelled-draw-misses-the-first-image", "run.feeds.SemiSupervised.step",
            "noise.integers(0, len(self.labelled), self.batch_size)",
            "noise.integers(1, len(self.labelled), self.batch_size)", covered),
    Mistake("labelled-images-with-the-first-labels", "run.feeds.SemiSupervised.__init__",
            "self.y_labelled = dataset.y_train[self.labelled]",
            "self.y_labelled = dataset.y_train[:len(self.labelled)]", own_labels),
    Mistake("epoch-runs-over-the-labelled-images-too", "run.feeds.SemiSupervised.__init__",
            "np.setdiff1d(np.arange(len(dataset.x_train)), self.labelled)", "np.arange(len(dataset.x_train))",
            labelled_apart),
    Mistake("labelled-batch-drawn-grayscale-under-dynamic-binarization", "run.feeds.SemiSupervised.__init__",
            'self.dynamic = config["binarize"] == "dynamic"', "self.dynamic = False", fed("m2 dynamic")),
    Mistake("labelled-eps-drawn-before-the-labelled-binary-draw", "run.feeds.SemiSupervised.step",
            LABELLED_IMAGES + LABELLED_EPS, LABELLED_EPS + LABELLED_IMAGES, fed("m2 dynamic")),
    Mistake("labelled-images-one-per-class-short", "run.feeds.choose_labelled",
            "rng.choice(members, per_class, replace=False)", "rng.choice(members, per_class - 1, replace=False)",
            labelled_apart),
    Mistake("a-class-with-just-enough-images-refused", "run.feeds.choose_labelled",
            "if len(members) < per_class:", "if len(members) <= per_class:", just_enough),
    Mistake("labels-leaving-one-image-unlabelled-refused", "run.feeds.choose_labelled",
            "if count >= len(y):", "if count >= len(y) - 1:", just_enough),
    Mistake("no-labels-at-all-accepted", "run.feeds.choose_labelled",
            "if count <= 0 or count % classes:", "if count < 0 or count % classes:", partial(refused, 0)),
    # run/training.py: resuming mid-epoch
    Mistake("resume-restarts-the-epochs-noise", LOOP,
            "noise.bit_generator.state = state.noise_state", "pass", resumed("mlp dynamic")),
    Mistake("resume-repeats-the-last-step", LOOP,
            "index_batches[state.step:]", "index_batches[state.step - 1:]", resumed("iwae K=2 dynamic")),
    Mistake("resume-forgets-the-steps-done", "run.training.RunState.from_checkpoint",
            "step=ckpt.step,", "step=0,", resumed("cvae dynamic")),
    Mistake("resume-forgets-the-epochs-totals", "run.training.RunState.from_checkpoint",
            "totals=Totals(**_totals(extra))", "totals=Totals()", resumed("mlp dynamic")),
    Mistake("noise-state-kept-only-at-the-epochs-start", LOOP,
            "state.noise_state = noise.bit_generator.state", "pass", resumed("m2 dynamic")),
    # run/training.py and run/metrics.py: the evaluation
    Mistake("validation-loss-of-the-test-images", "run.training.finish_epoch",
            "metrics.test_losses(model, kind, dataset.x_val, dataset.y_val, seed)",
            "metrics.test_losses(model, kind, dataset.x_test, dataset.y_test, seed)", saved_model),
    Mistake("test-loss-of-the-validation-images", "run.training.finish_epoch",
            '"test": metrics.test_losses(model, kind, dataset.x_test, dataset.y_test, seed)',
            '"test": metrics.test_losses(model, kind, dataset.x_val, dataset.y_val, seed)', saved_model),
    Mistake("test-loss-divided-by-the-batches-not-the-images", "run.metrics.test_losses",
            "recon, kl = recon_sum / len(x), kl_sum / len(x)",
            "recon, kl = recon_sum / -(-len(x) // batch_size), kl_sum / -(-len(x) // batch_size)", test_loss),
    Mistake("test-loss-sums-batch-means", "run.metrics.test_losses",
            "recon_sum += float(recon.sum())", "recon_sum += float(recon.mean()) * batch_size", test_loss),
    Mistake("test-loss-without-beta", "run.metrics.test_losses",
            "recon + model.beta * kl", "recon + kl", test_loss),
    Mistake("cvae-test-loss-with-the-first-batchs-labels", "run.metrics.test_losses",
            "labels = y[start:start + batch_size]", "labels = y[:len(batch)]", cvae_test_loss),
    Mistake("log-likelihood-sums-batch-means", "run.metrics.mean_log_likelihood",
            "total += float(model.log_likelihood(batch, labels, k=k, rng=rng).sum())",
            "total += float(model.log_likelihood(batch, labels, k=k, rng=rng).mean()) * batch_size", log_likelihood),
    Mistake("log-likelihood-summed-not-averaged (off by a factor of N)", "run.metrics.mean_log_likelihood",
            "return total / len(x)", "return total", bounds),
    Mistake("log-likelihood-of-the-test-loss-noise", "run.metrics.mean_log_likelihood",
            "seeds.device_generator(seed, seeds.IMPORTANCE)", "seeds.device_generator(seed, seeds.TEST_NOISE)",
            log_likelihood),
    Mistake("cvae-log-likelihood-with-the-first-batchs-labels", "run.metrics.mean_log_likelihood",
            "labels = y[start:start + batch_size]", "labels = y[:min(batch_size, len(x) - start)]",
            cvae_log_likelihood),
    Mistake("final-elbo-without-the-gaussian-constant", "run.metrics.recon_constant",
            'gaussian_nll_constant(pixels) if recon == "mse" else 0.0', "0.0", squared_error),
    Mistake("final-elbo-with-the-gaussian-constant-for-every-density-but-bce", "run.metrics.recon_constant",
            'if recon == "mse"', 'if recon != "bce"', partial(final_elbo, "cb")),
    Mistake("final-elbo-with-the-gaussian-constant-for-probabilities", "run.metrics.recon_constant",
            'if recon == "mse"', 'if recon in ("mse", "bce-prob")', partial(final_elbo, "bce-prob")),
    Mistake("final-elbo-at-the-training-beta (the loss, not recon + KL)", "run.metrics.elbo_of",
            '-(losses["recon"] + recon_constant(recon, pixels) + losses["kl"])',
            '-(losses["loss"] + recon_constant(recon, pixels))', squared_error),
    Mistake("m2-test-loss-weighs-the-labelled-elbo-by-1", "run.metrics.semi_supervised_losses",
            'loss = model.labelled_weight * means["labelled"]', 'loss = means["labelled"]', m2_losses),
    Mistake("m2-test-loss-without-alpha", "run.metrics.semi_supervised_losses",
            'model.alpha * means["classification"]', 'means["classification"]', m2_losses),
    Mistake("m2-test-loss-stops-one-image-short", "run.metrics.semi_supervised_losses",
            "for start in range(0, len(x), batch_size):", "for start in range(0, len(x) - 1, batch_size):", m2_losses),
    Mistake("log-likelihood-of-one-sample-left-out", "run.metrics.final_results",
            "if eval_samples > 0 else None", "if eval_samples > 1 else None", partial(squared_error.func, 1)),
    Mistake("m2-accuracy-sums-batch-means", "run.metrics.semi_supervised_losses",
            '(model.predict(batch) == labels).sum()', '(model.predict(batch) == labels).mean() * batch_size',
            m2_losses),
    Mistake("m2-unlabelled-noise-shifted-by-a-row", "run.metrics.semi_supervised_losses",
            "model.unlabelled_losses(batch, eps[n:])", "model.unlabelled_losses(batch, eps[n - 1:-1])", m2_losses),
    Mistake("m2-final-elbo-of-log-p-x-y", "run.metrics.m2_final_results",
            '"test_elbo": -losses["unlabelled"]', '"test_elbo": -losses["labelled"]', m2_final),
]


def test_every_catching_test_passes_without_a_planted_mistake(folders):
    for test in {mistake.caught_by for mistake in MISTAKES}:
        assert not fails(test, **needs(test, folders)), test


def needs(test, folders):
    """The dataset folders a test takes as arguments."""
    return {name: folder for name, folder in folders.items() if name in inspect.signature(test).parameters}


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.id for m in MISTAKES])
def test_a_planted_mistake_fails_its_test(monkeypatch, folders, mistake):
    plant(monkeypatch, mistake)
    assert fails(mistake.caught_by, **needs(mistake.caught_by, folders)), \
        f"{mistake.caught_by} does not catch {mistake.id}"
