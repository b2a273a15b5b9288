"""The softmax and its cross-entropy in float32 where the rows of a batch live far apart.

log softmax(a) = (a - m) - log sum_j e^(a_j - m) is exact for any shift m, but only a shift by each row's own largest
logit keeps every exponent of every row <= 0 with one of them exactly 0: a row whose logits are 150 below another
row's, shifted by the batch's largest, has e^-150 = 0 everywhere in float32, and log 0 = -inf.
"""

import numpy as np
from scipy import special

from minivae.core import backend, losses
from minivae.models.m2 import unlabelled_loss

on_device, on_host = backend.to_device, backend.to_numpy

# Rows whose largest logits are ~150 apart (150, 0 and -150), one of them with a near tie at the top, one spanning
# 120 nats itself (e^120 overflows float32: only its largest logit is a safe shift).
LOGITS = np.array([[150.0, 148.5, 120.0, 149.0],
                   [0.3, -2.0, 0.0, -120.0],
                   [-150.0, -151.0, -149.5, -180.0]], dtype=np.float32)
LABELS = np.array([1, 3, 2])


def test_log_softmax_in_float32_is_scipys_row_by_row():
    expected = special.log_softmax(LOGITS.astype(np.float64), axis=1)
    np.testing.assert_allclose(on_host(losses.log_softmax(on_device(LOGITS))), expected, rtol=1e-5, atol=1e-5)


def test_the_cross_entropy_in_float32_is_finite_and_scipys_for_rows_150_apart():
    nll, dlogits = losses.softmax_cross_entropy(on_device(LOGITS), on_device(LABELS), scale=0.5)
    nll, dlogits = on_host(nll), on_host(dlogits)
    assert nll.dtype == dlogits.dtype == np.float32
    logits = LOGITS.astype(np.float64)
    rows = np.arange(len(LABELS))
    np.testing.assert_allclose(nll, special.logsumexp(logits, axis=1) - logits[rows, LABELS], rtol=1e-5, atol=1e-5)
    expected = special.softmax(logits, axis=1)
    expected[rows, LABELS] -= 1
    np.testing.assert_allclose(dlogits, 0.5 * expected, atol=1e-6)


def test_m2s_unlabelled_loss_in_float32_is_finite_for_rows_150_apart():
    neg_elbos = np.array([[90.0, 95.0, 80.0, 100.0]] * 3, dtype=np.float32)
    loss, dlogits = unlabelled_loss(on_device(LOGITS), on_device(neg_elbos))
    log_q = special.log_softmax(LOGITS.astype(np.float64), axis=1)
    expected = (np.exp(log_q) * (neg_elbos + log_q)).sum(axis=1)
    np.testing.assert_allclose(on_host(loss), expected, rtol=1e-5)
    assert np.isfinite(on_host(dlogits)).all()
