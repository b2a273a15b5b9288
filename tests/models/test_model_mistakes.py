"""The independent references of the models' losses (test_references.py) and the float32 tests (test_float32.py)
must fail on every plausible one-line mistake they guard against, including the ones the gradient check cannot
see: a constant, a reshape or an enumeration shared by `step` and the loss it is checked against, a reported loss
that is not the one trained, a float64 upcast, a log-sum-exp shifted by the wrong maximum.

Each test plants one mistake (tests/planting.py) and runs the test named beside it, which must then fail. The ids
name the mistakes.
"""

from functools import partial

import pytest
import test_classifier as classifier_tests
import test_float32 as float32
import test_references as references
from planting import Mistake, fails, plant

# the tests that the mistakes below must fail, with their parameters
neg_elbo = partial(references.test_step_reports_the_batch_mean_of_each_images_neg_elbo, "bce", "logvar", 0)
neg_elbo_cvae = partial(references.test_step_reports_the_batch_mean_of_each_images_neg_elbo, "bce", "logvar", 3)
log_likelihood = partial(references.test_the_log_likelihood_is_scipys_logsumexp_of_each_images_weights, "bce",
                         "logvar", 0)
log_likelihood_mse = partial(references.test_the_log_likelihood_is_scipys_logsumexp_of_each_images_weights, "mse",
                             "sigma", 0)
iwae_bound = partial(references.test_the_iwae_loss_is_minus_scipys_logsumexp_of_each_images_k_weights, "bce", "logvar")
iwae_bound_sigma = partial(references.test_the_iwae_loss_is_minus_scipys_logsumexp_of_each_images_k_weights, "cb",
                           "sigma")
k_sample_elbo = partial(references.test_the_k_sample_elbo_averages_k_reconstructions_and_weighs_the_kl_by_beta, "bce",
                        "logvar")
m2_unlabelled = references.test_m2s_unlabelled_loss_is_the_sum_over_classes_of_q_times_e_plus_log_q_image_by_image
m2_labelled = references.test_m2s_labelled_loss_is_the_neg_elbo_plus_log_k_and_its_cross_entropy_is_scipys
m2_step = references.test_m2s_step_reports_the_weighted_sum_of_its_parts_computed_image_by_image
cvae_float32 = partial(float32.test_a_conditional_vae_step_hands_only_float32_from_layer_to_layer, recon="bce",
                       posterior="logvar")
m2_float32 = float32.test_an_m2_step_hands_only_float32_from_layer_to_layer
k_sample_float32 = partial(float32.test_a_k_sample_step_hands_only_float32_from_layer_to_layer, objective="vae", k=3)
blank_beside_busy = float32.test_the_iwae_step_in_float32_is_finite_for_a_blank_image_beside_a_busy_one
samples_far_apart = float32.test_the_iwae_step_in_float32_is_finite_where_one_images_samples_are_hundreds_of_nats_apart

MISTAKES = [
    # models/m2.py: the class enumeration, the constants, the weights of the reported loss
    Mistake("m2-guesses-repeat-each-image-instead-of-tiling-the-batch", "models.m2.M2.enumerate_classes",
            "xp.tile(x, (self.classes, 1))", "xp.repeat(x, self.classes, axis=0)", m2_unlabelled),
    Mistake("m2-guessed-labels-tiled-instead-of-repeated", "models.m2.M2.enumerate_classes",
            "xp.repeat(xp.arange(self.classes), len(x))", "xp.tile(xp.arange(self.classes), len(x))", m2_unlabelled),
    Mistake("m2-unlabelled-neg-elbos-read-image-major", "models.m2.M2.unlabelled_losses",
            ".reshape(self.classes, len(x)).T", ".reshape(len(x), self.classes)", m2_unlabelled),
    Mistake("m2-log-p-y-with-the-wrong-sign", "models.m2.M2.__init__",
            "self.log_prior_y = -math.log(self.classes)", "self.log_prior_y = math.log(self.classes)", m2_labelled),
    Mistake("m2-entropy-added-instead-of-subtracted", "models.m2.unlabelled_loss",
            "costs = neg_elbos + log_q", "costs = neg_elbos - log_q", m2_unlabelled),
    Mistake("m2-unlabelled-loss-q-times-e-without-the-entropy", "models.m2.unlabelled_loss",
            "unlabelled = (q * costs).sum(axis=1)", "unlabelled = (q * neg_elbos).sum(axis=1)", m2_unlabelled),
    Mistake("m2-step-reports-the-labelled-elbo-unweighted", "models.m2.M2.step",
            "loss = self.labelled_weight * labelled +", "loss = labelled +", m2_step),
    Mistake("m2-loss-value-without-alpha", "models.m2.M2.loss_value",
            "self.alpha * _mean(nll)", "_mean(nll)", m2_step),
    Mistake("m2-step-reports-the-unlabelled-loss-summed", "models.m2.M2.step",
            "_mean(nll), _mean(unlabelled)", "_mean(nll), float(unlabelled.sum())", m2_step),
    # models/iwae.py and vae.py: the K-sample reshapes, means and constants
    Mistake("k-sample-x-rows-repeated-image-major", "models.iwae._forward",
            "xp.broadcast_to(x_flat, (k, *x_flat.shape)).reshape(k * n, -1)", "xp.repeat(x_flat, k, axis=0)",
            iwae_bound),
    Mistake("k-sample-nll-read-image-major", "models.iwae._forward",
            "nll.reshape(k, n)", "nll.reshape(n, k).T", k_sample_elbo),
    Mistake("log-mean-exp-without-the-1/K", "models.vae.log_mean_exp",
            "top + xp.log(total / len(log_w))", "top + xp.log(total)", iwae_bound),
    Mistake("importance-weighted-log-likelihood-without-the-1/K", "models.vae.log_mean_exp",
            "top + xp.log(total / len(log_w))", "top + xp.log(total)", log_likelihood),
    Mistake("k-sample-elbo-without-beta", "models.iwae.per_example_losses",
            "nll.mean(axis=0) + model.beta * kl", "nll.mean(axis=0) + kl", k_sample_elbo),
    Mistake("k-sample-elbo-sums-its-samples", "models.iwae.per_example_losses",
            "nll.mean(axis=0) + model.beta * kl", "nll.sum(axis=0) + model.beta * kl", k_sample_elbo),
    Mistake("k-sample-elbo-step-trains-without-beta", "models.iwae.step",
            "losses = nll.mean(axis=0) + model.beta * kl", "losses = nll.mean(axis=0) + kl", k_sample_elbo),
    Mistake("k-sample-step-reports-the-sum-not-the-mean", "models.iwae.step",
            "Loss(float(losses.mean())", "Loss(float(losses.sum())", iwae_bound),
    Mistake("log-weight-subtracts-the-prior", "models.iwae._log_weights",
            "-nll + log_prior(z)", "-nll - log_prior(z)", iwae_bound),
    Mistake("vae-step-reports-the-kl-unweighted", "models.vae.VAE.step",
            "Loss(recon_mean + self.beta * kl_mean", "Loss(recon_mean + kl_mean", neg_elbo),
    Mistake("log-likelihood-without-the-gaussian-constant", "models.vae.VAE.log_likelihood",
            'gaussian_nll_constant(x_flat.shape[1]) if self.recon_name == "mse" else 0.0', "0.0", log_likelihood_mse),
    # core/gaussian.py and core/losses.py: constants that no gradient sees
    Mistake("log-prior-without-its-log-2pi", "core.gaussian.log_prior",
            "(z * z + LOG_2PI)", "(z * z)", iwae_bound),
    Mistake("logvar-log-q-without-its-log-2pi", "core.gaussian.LogvarGaussian.log_q",
            "+ logvar + LOG_2PI)", "+ logvar)", log_likelihood),
    Mistake("sigma-log-q-with-log-sigma-not-log-sigma^2", "core.gaussian.SigmaGaussian.log_q",
            "backend.xp.log(var)", "backend.xp.log(backend.xp.abs(sigma))", iwae_bound_sigma),
    Mistake("logvar-kl-without-its-minus-1", "core.gaussian.LogvarGaussian.kl",
            "(mu * mu + var - 1 - logvar)", "(mu * mu + var - logvar)", neg_elbo),
    Mistake("gaussian-constant-log-2pi-not-log-pi", "core.losses.gaussian_nll_constant",
            "math.log(math.pi)", "math.log(2 * math.pi)", log_likelihood_mse),
    Mistake("cb-log-normaliser-without-log1p", "core.continuous_bernoulli.log_normalizer",
            "xp.log(r / -xp.expm1(-r)) + xp.log1p(xp.exp(-r))", "xp.log(r / -xp.expm1(-r))", iwae_bound_sigma),
    # models/vae.py: the conditioning
    Mistake("cvae-one-hot-of-the-next-class", "models.vae.VAE.with_class",
            "backend.to_device(y)[:, None] == xp.arange(self.classes)",
            "backend.to_device(y)[:, None] == xp.arange(1, self.classes + 1)", neg_elbo_cvae),
    # models/classifier.py
    Mistake("classifier-step-reports-the-summed-cross-entropy", "models.classifier.Classifier.step",
            "return float(nll.mean())", "return float(nll.sum())",
            classifier_tests.test_the_classifier_step_reports_the_mean_cross_entropy),
    Mistake("classifier-fit-never-draws-the-last-example", "models.classifier.fit",
            "rng.integers(0, len(x), size=", "rng.integers(0, len(x) - 1, size=",
            classifier_tests.test_fit_draws_every_labelled_example_the_first_and_the_last_included),
    Mistake("classifier-fit-labels-of-the-first-examples", "models.classifier.fit",
            "model.step(backend.to_device(x[idx]), y[idx])", "model.step(backend.to_device(x[idx]), y[:len(idx)])",
            classifier_tests.test_fit_draws_every_labelled_example_the_first_and_the_last_included),
    Mistake("accuracy-counts-the-last-batch-as-a-full-one", "models.classifier.accuracy",
            "return float(np.mean(predicted == np.asarray(y)))",
            "return float(np.sum(predicted == np.asarray(y)) / (-(-len(x) // batch_size) * batch_size))",
            classifier_tests.test_accuracy_over_batches_with_a_short_last_one_is_the_fraction_of_examples_predicted_right),
    # float32: no upcast, log-sum-exp shifted per example
    Mistake("cvae-one-hot-as-float64", "models.vae.VAE.with_class",
            "onehot.astype(a.dtype)", 'onehot.astype("float64")', cvae_float32),
    Mistake("m2-labelled-weights-as-float64", "models.m2.M2.step",
            "xp.full(n_l, self.labelled_weight * per_l, dtype=q.dtype)", "xp.full(n_l, self.labelled_weight * per_l)",
            m2_float32),
    Mistake("m2-q-as-float64", "models.m2.M2.step",
            "q = xp.exp(log_softmax(logits[n_l:]))", "q = xp.exp(log_softmax(logits[n_l:])).astype(float)",
            m2_float32),
    Mistake("k-sample-elbo-weights-as-float64", "models.iwae.step",
            "1.0 / (k * n), dtype=mu.dtype)", "1.0 / (k * n))", k_sample_float32),
    Mistake("importance-weights-kept-in-float64", "models.vae.importance_weighted",
            "backend.xp.empty((k, len(mu)), dtype=mu.dtype)", "backend.xp.empty((k, len(mu)))",
            float32.test_a_convnet_step_and_its_log_likelihood_hand_only_float32_from_layer_to_layer),
    Mistake("log-sum-exp-shifted-by-the-batch-maximum", "models.vae.log_mean_exp",
            "top = log_w.max(axis=0)", "top = log_w.max()", blank_beside_busy),
    Mistake("log-sum-exp-shifted-by-the-minimum", "models.vae.log_mean_exp",
            "top = log_w.max(axis=0)", "top = log_w.min(axis=0)", samples_far_apart),
]


def test_every_catching_test_passes_without_a_planted_mistake():
    for test in {mistake.caught_by for mistake in MISTAKES}:
        assert not fails(test), test


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.id for m in MISTAKES])
def test_a_planted_mistake_fails_its_test(monkeypatch, mistake):
    plant(monkeypatch, mistake)
    assert fails(mistake.caught_by), f"{mistake.caught_by} does not catch {mistake.id}"
