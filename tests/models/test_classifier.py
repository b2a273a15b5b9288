"""The classifier q(y|x) (models/classifier.py): the loss its step reports, its accuracy over a data set cut in
batches, and the labelled examples `fit` trains on, each against a value worked out one example at a time."""

import numpy as np
import pytest
import references as ref
from scipy import special

from minivae.core import backend
from minivae.models import classifier as classifiers
from minivae.models.classifier import accuracy, fit, mlp_classifier

on_device, on_host = backend.to_device, backend.to_numpy
D, CLASSES = 5, 3


def small(seed=5):
    return mlp_classifier(input_dim=D, hidden=(4,), classes=CLASSES, rng=np.random.default_rng(seed), dtype="float64")


def test_the_classifier_step_reports_the_mean_cross_entropy():
    classifier, rng = small(), np.random.default_rng(6)
    x, y = rng.uniform(0, 1, (4, D)), np.array([0, 2, 2, 1])
    expected = np.mean([-special.log_softmax(ref.host(classifier.logits(on_device(x[b:b + 1])))[0])[y[b]]
                        for b in range(4)])
    assert classifier.step(on_device(x), on_device(y)) == pytest.approx(expected, rel=1e-12)


def test_accuracy_over_batches_with_a_short_last_one_is_the_fraction_of_examples_predicted_right():
    classifier, x = small(), np.random.default_rng(7).uniform(0, 1, (9, D))  # batches of 4, 4 and 1
    predicted = np.array([np.argmax(ref.classifier_log_q(classifier, image)) for image in x])
    y = np.where(np.isin(np.arange(9), [0, 3, 5, 8]), predicted, (predicted + 1) % CLASSES)  # right in every batch
    assert accuracy(classifier, x, y, batch_size=4) == pytest.approx(4 / 9)


def test_fit_draws_every_labelled_example_the_first_and_the_last_included(monkeypatch):
    classifier, rng = small(), np.random.default_rng(8)
    x, y = rng.uniform(0, 1, (12, D)), np.arange(12) % CLASSES
    x[:, 0] = np.arange(12)  # each example names itself in its first pixel
    drawn, labels = [], []
    step = classifiers.Classifier.step

    def recording(model, x_batch, y_batch):
        drawn.extend(on_host(x_batch)[:, 0].astype(int))
        labels.extend(on_host(y_batch))
        return step(model, x_batch, y_batch)

    monkeypatch.setattr(classifiers.Classifier, "step", recording)
    fit(classifier, x, y, steps=40, batch_size=5, rng=np.random.default_rng(9))
    assert len(drawn) == 200 and set(drawn) == set(range(12))
    np.testing.assert_array_equal(labels, y[drawn])  # each with its own label
