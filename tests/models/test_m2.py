"""The M2 model: the classifier's cross-entropy, the unlabelled loss and its gradient, and the whole step."""

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp, softmax

from minivae.checks.finite_differences import check_function, check_model, run_check
from minivae.checks.table import CHECKS
from minivae.core import backend
from minivae.core.layers import ReLU
from minivae.core.losses import softmax_cross_entropy
from minivae.models.classifier import accuracy, fit, mlp_classifier
from minivae.models.m2 import M2, mlp_m2, unlabelled_loss
from minivae.run import presets, start

TOL = 1e-6
on_device, on_host = backend.to_device, backend.to_numpy


def tiny_model_and_batch(seed=0, n_labelled=4, n_unlabelled=5, hidden=(6,), classifier_hidden=(5,), latent=2,
                         classes=3, alpha=0.7, labelled_weight=0.3):
    """A float64 M2 on 9-pixel images and a batch for it, everything drawn from default_rng(seed) on the host
    and copied to the backend in use. Returns (model, (x_l, y_l, x_u, eps_l, eps_u))."""
    rng = np.random.default_rng(seed)
    model = mlp_m2(input_dim=9, hidden=hidden, latent=latent, classes=classes, classifier_hidden=classifier_hidden,
                   alpha=alpha, labelled_weight=labelled_weight, rng=rng, dtype="float64")
    for name, param in model.params.items():  # biases off 0, so that no ReLU sits on its kink
        if name.endswith(".b"):
            param += on_device(rng.uniform(0.05, 0.2, param.shape))
    draw = [rng.uniform(0, 1, (n_labelled, 9)), rng.integers(0, classes, n_labelled),
            rng.uniform(0, 1, (n_unlabelled, 9)), rng.standard_normal((n_labelled, latent)),
            rng.standard_normal((classes * n_unlabelled, latent))]
    return model, tuple(on_device(a) for a in draw)


def step_errors(model, batch):
    """Relative error of every parameter's gradient from `step` against finite differences of `loss_value`."""
    x_l, y_l, x_u, eps_l, eps_u = batch
    return check_model(model, lambda: model.step(x_l, y_l, x_u, eps_labelled=eps_l, eps_unlabelled=eps_u),
                       lambda: model.loss_value(*batch))


def nearest_kink(model, batch):
    """The smallest |input| of any ReLU in a step of the model on the batch: where finite differences with a step
    of that size or more straddle the kink (seed 109 of the test below puts a classifier unit at -5.8e-6)."""
    smallest, forward = [np.inf], ReLU.forward

    def recording(layer, x):
        smallest.append(float(np.abs(on_host(x)).min(initial=np.inf)))
        return forward(layer, x)

    x_l, y_l, x_u, eps_l, eps_u = batch
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(ReLU, "forward", recording)
        model.step(x_l, y_l, x_u, eps_labelled=eps_l, eps_unlabelled=eps_u)
    return min(smallest)


def cross_entropy_error(seed=0, batch=5, classes=4):
    """softmax_cross_entropy's dlogits against finite differences, logits in [-30, 30]."""
    rng = np.random.default_rng(seed)
    logits, labels = on_device(rng.uniform(-30, 30, (batch, classes))), on_device(rng.integers(0, classes, batch))
    return check_function(lambda a: (softmax_cross_entropy(a, labels)[0], softmax_cross_entropy(a, labels)[1:]),
                          [logits])[0]


def unlabelled_dlogits_error(seed=0, batch=5, classes=4):
    """unlabelled_loss's dU/dlogits = q (c - U) against finite differences, logits in [-6, 6], E in [80, 120]."""
    rng = np.random.default_rng(seed)
    logits = on_device(rng.uniform(-6, 6, (batch, classes)))
    neg_elbos = on_device(rng.uniform(80, 120, (batch, classes)))
    return check_function(lambda a: (unlabelled_loss(a, neg_elbos)[0], unlabelled_loss(a, neg_elbos)[1:]),
                          [logits])[0]


# ---- the classifier's loss ---------------------------------------------------------------------------------
@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 6), classes=st.integers(2, 6), seed=st.integers(0, 1000))
def test_softmax_cross_entropy_gradient_matches_finite_differences(batch, classes, seed):
    assert cross_entropy_error(seed, batch, classes) < TOL


def test_softmax_cross_entropy_is_minus_log_the_true_class_probability():
    logits = np.random.default_rng(0).normal(0, 3, (6, 5))
    labels = np.array([0, 4, 2, 2, 1, 3])
    nll, _ = softmax_cross_entropy(on_device(logits), on_device(labels))
    np.testing.assert_allclose(on_host(nll), -np.log(softmax(logits, axis=1)[np.arange(6), labels]), rtol=1e-12)


def test_softmax_cross_entropy_stays_finite_for_huge_logits():
    logits = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 0.0]], dtype=np.float32)
    nll, dlogits = softmax_cross_entropy(on_device(logits), on_device(np.array([1, 1])))
    nll, dlogits = on_host(nll), on_host(dlogits)
    assert np.all(np.isfinite(nll)) and np.all(np.isfinite(dlogits))
    assert nll[0] == pytest.approx(2000.0) and nll[1] == pytest.approx(0.0)


def test_a_classifier_learns_a_small_labelled_set():
    rng = np.random.default_rng(0)
    x = rng.random((40, 12), dtype=np.float32)
    y = (x[:, 0] > x[:, 1]).astype(np.int64)  # a rule the net can learn
    model = mlp_classifier(input_dim=12, hidden=(16,), classes=2, rng=rng)
    fit(model, x, y, steps=300, batch_size=20, lr=1e-2)
    assert accuracy(model, x, y) == 1.0


# ---- the unlabelled loss -------------------------------------------------------------------------------------
@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 6), classes=st.integers(2, 6), seed=st.integers(0, 1000))
def test_unlabelled_loss_gradient_for_the_logits_matches_finite_differences(batch, classes, seed):
    assert unlabelled_dlogits_error(seed, batch, classes) < TOL


def test_unlabelled_loss_is_the_expected_elbo_minus_the_entropy():
    rng = np.random.default_rng(0)
    logits, neg_elbos = rng.normal(0, 2, (4, 5)), rng.uniform(80, 120, (4, 5))
    q = softmax(logits, axis=1)
    expected = (q * neg_elbos).sum(1) - (-(q * np.log(q)).sum(1))
    np.testing.assert_allclose(on_host(unlabelled_loss(on_device(logits), on_device(neg_elbos))[0]), expected,
                               rtol=1e-12)


def test_unlabelled_loss_is_smallest_when_q_is_the_posterior_over_classes():
    # For fixed E, U = sum q (E + log q) is minimised by q(y) proportional to exp(-E_y): there dU/dlogits = 0 and
    # U = -log sum_y exp(-E_y), the -log p(x) bound of the mixture over classes.
    neg_elbos = np.random.default_rng(0).uniform(90, 100, (3, 6))
    unlabelled, dlogits = map(on_host, unlabelled_loss(on_device(-neg_elbos), on_device(neg_elbos)))
    np.testing.assert_allclose(unlabelled, -logsumexp(-neg_elbos, axis=1), rtol=1e-12)
    np.testing.assert_allclose(dlogits, 0, atol=1e-12)


# ---- the whole model ---------------------------------------------------------------------------------------
@settings(max_examples=10, deadline=None)
@given(n_labelled=st.integers(0, 4), n_unlabelled=st.integers(0, 4), hidden=st.lists(st.integers(2, 6), min_size=1,
       max_size=2), classifier_hidden=st.lists(st.integers(2, 6), max_size=1), latent=st.integers(1, 3),
       classes=st.integers(2, 4), alpha=st.sampled_from([0.0, 0.3, 5.0]),
       labelled_weight=st.sampled_from([0.0, 1 / 599, 1.0]), seed=st.integers(0, 1000))
def test_m2_gradient_matches_finite_differences_for_every_parameter(n_labelled, n_unlabelled, hidden,
                                                                    classifier_hidden, latent, classes, alpha,
                                                                    labelled_weight, seed):
    model, data = tiny_model_and_batch(seed, n_labelled, n_unlabelled, tuple(hidden), tuple(classifier_hidden),
                                       latent, classes, alpha, labelled_weight)
    assume(nearest_kink(model, data) > 1e-4)  # finite differences step over a ReLU input closer to 0 than h
    errors = step_errors(model, data)
    assert set(errors) == set(model.params)
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("row", [check for check in CHECKS if "M2" in check.name], ids=lambda check: check.name)
def test_the_gradcheck_rows_pass(row):
    verdicts, _, problem = run_check(row, raw=False)
    assert problem is None and max(verdicts.values()) < TOL


def test_step_reports_the_loss_it_differentiates():
    model, (x_l, y_l, x_u, eps_l, eps_u) = tiny_model_and_batch()
    loss = model.step(x_l, y_l, x_u, eps_labelled=eps_l, eps_unlabelled=eps_u)
    assert loss.loss == pytest.approx(model.loss_value(x_l, y_l, x_u, eps_l, eps_u), rel=1e-12)
    assert loss.loss == pytest.approx(model.labelled_weight * loss.labelled + model.alpha * loss.classification
                                      + loss.unlabelled)


def test_the_labelled_elbo_includes_log_p_y():
    model, (x_l, y_l, _, eps_l, _) = tiny_model_and_batch(classes=3)
    neg_elbos, _ = model.labelled_losses(x_l, y_l, eps_l)
    recon, kl = model.cvae.per_example_losses(x_l, y_l, eps_l)
    np.testing.assert_allclose(on_host(neg_elbos), on_host(recon + kl) + np.log(3), rtol=1e-12)


def test_each_unlabelled_image_is_tried_with_every_class():
    model, (_, _, x_u, _, _) = tiny_model_and_batch(n_unlabelled=2, classes=3)
    rows, labels = model.enumerate_classes(x_u)
    assert rows.shape == (6, 9) and on_host(labels).tolist() == [0, 0, 1, 1, 2, 2]
    np.testing.assert_array_equal(on_host(rows[3]), on_host(x_u[1]))  # row k * B + b: image b, class k


def test_parameters_are_the_classifiers_and_the_cvaes():
    model = presets.build_model(presets.config_for("m2", labelled_weight=0.01))
    assert isinstance(model, M2)
    assert {"classifier.0.W", "classifier.2.W", "encoder.0.W", "mu.W", "logvar.W", "decoder.2.W"} <= set(model.params)
    assert model.params["classifier.2.W"].shape == (500, 10)
    assert model.params["encoder.0.W"].shape == (784 + 10, 500)


def test_m2_gradients_match_on_cupy(gpu):
    assert max(step_errors(*tiny_model_and_batch()).values()) < TOL
    assert cross_entropy_error() < TOL


# ---- the weight of the labelled -ELBO -----------------------------------------------------------------------
def test_the_preset_weighs_the_labelled_elbo_by_the_labelled_share_of_the_training_set():
    dataset = SimpleNamespace(x_train=np.zeros((60_000, 784), np.float32))
    config = start.fill_labelled_weight(presets.config_for("m2", labels=100), dataset)
    assert config["labelled_weight"] == pytest.approx(100 / 59_900)
    assert presets.build_model(config).labelled_weight == config["labelled_weight"]


def test_a_labelled_weight_already_set_is_kept():
    dataset = SimpleNamespace(x_train=np.zeros((600, 784), np.float32))
    config = presets.config_for("m2", labelled_weight=1.0)
    assert start.fill_labelled_weight(config, dataset)["labelled_weight"] == 1.0


def test_an_m2_config_from_before_labelled_weight_builds_with_weight_1():
    config = presets.config_for("m2")
    del config["labelled_weight"]  # as in a checkpoint saved before the key existed
    assert presets.config_problem(config) is None
    assert presets.build_model(config).labelled_weight == 1.0


def test_an_unfilled_labelled_weight_is_refused_when_building():
    with pytest.raises(ValueError, match="labelled_weight is still None"):
        presets.build_model(presets.config_for("m2"))
