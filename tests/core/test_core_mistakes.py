"""The tests of core/ that check against independent values must fail on every plausible one-line mistake they guard
against: a density's constant (test_densities.py), a softmax shifted by the batch's largest logit
(test_extreme_ranges.py), a work array kept across a change of size, pads or dtype (test_conv_work_arrays.py), an
initial spread off its fan-in (test_conv_init.py).

Each test plants one mistake (tests/planting.py) and runs the test named beside it, which must then fail. The ids
name the mistakes.
"""

from functools import partial

import pytest
import test_conv_init as conv_init
import test_conv_work_arrays as work_arrays
import test_densities as densities
import test_extreme_ranges as extreme_ranges
from planting import Mistake, fails, plant

from minivae.core.conv import Conv2D, ConvTranspose2D
from minivae.core.conv_fast import FastConv2D, FastConvTranspose2D


def work_array_test(layer_class, name):
    """The work-array test of one case, by the start of its name."""
    cases = work_arrays.CONV2D_CASES if layer_class is FastConv2D else work_arrays.CONV_TRANSPOSE2D_CASES
    case = next(case for case in cases if case[0].startswith(name))
    return partial(work_arrays.test_a_layer_called_on_one_size_another_and_the_first_again_computes_what_a_new_one_does,
                   layer_class, case)


def init_test(layer_class, init="he"):
    """The initial-spread test of the first layer of that class."""
    return partial(conv_init.test_initial_conv_weights_follow_the_distribution_of_their_fan_in,
                   *next(layer for layer in conv_init.LAYERS if layer[0] is layer_class), init)


same_padded_shape = work_array_test(FastConv2D, "3x3 stride 2 same")
transposed_same = work_array_test(FastConvTranspose2D, "3x3 stride 2 same")
by_shifts = work_array_test(FastConv2D, "3x3 stride 1 same")
density = partial(densities.test_each_reconstruction_loss_plus_its_constant_is_minus_a_scipy_log_density)
float32_cross_entropy = extreme_ranges.test_the_cross_entropy_in_float32_is_finite_and_scipys_for_rows_150_apart

MISTAKES = [
    # core/conv_fast.py: the kept work arrays
    Mistake("padded-copy-kept-when-its-pads-change (a stale border)", "core.conv_fast.WorkArrays._padded",
            ' or self.work.get(name + " pads") != pads', "", same_padded_shape),
    Mistake("padded-copy-kept-for-an-input-of-another-dtype", "core.conv_fast.WorkArrays._padded",
            " or array.dtype != x.dtype", "", same_padded_shape),
    Mistake("work-array-kept-for-another-dtype (conv2d)", "core.conv_fast.WorkArrays._work",
            " or array.dtype != dtype", "", same_padded_shape),
    Mistake("work-array-kept-for-another-dtype (by shifts)", "core.conv_fast.WorkArrays._work",
            " or array.dtype != dtype", "", by_shifts),
    Mistake("work-array-kept-for-another-dtype (conv transpose)", "core.conv_fast.WorkArrays._work",
            " or array.dtype != dtype", "", transposed_same),
    Mistake("fast-conv2d-returns-its-output-in-a-kept-array", "core.conv_fast.FastConv2D.forward",
            'out = self.params["W"].reshape(self.out_channels, -1) @ self.cols',
            'out = backend.xp.matmul(self.params["W"].reshape(self.out_channels, -1), self.cols, '
            'out=self._work("out", (self.out_channels, self.cols.shape[1]), x.dtype))', same_padded_shape),
    Mistake("fast-conv-transpose-returns-dx-in-a-kept-array", "core.conv_fast.FastConvTranspose2D.backward",
            "return batch_first(W2 @ dcols,",
            'return batch_first(backend.xp.matmul(W2, dcols, out=self._work("dx", (len(W2), dcols.shape[1]), '
            'dout.dtype)),', transposed_same),
    # core/conv.py and core/layers.py: the initial spread
    Mistake("conv-fan-in-without-the-kernel-size", "core.conv.ConvLayer.__init__",
            "fan_in * kh * kw", "fan_in", init_test(Conv2D)),
    Mistake("conv2d-fan-in-of-the-output-channels", "core.conv.Conv2D.__init__",
            "in_channels, init, rng, dtype)", "out_channels, init, rng, dtype)", init_test(Conv2D)),
    Mistake("fast-conv2d-fan-in-of-the-output-channels", "core.conv.Conv2D.__init__",
            "in_channels, init, rng, dtype)", "out_channels, init, rng, dtype)", init_test(FastConv2D)),
    Mistake("conv-transpose-fan-in-without-the-stride", "core.conv.ConvTranspose2D.__init__",
            "in_channels / (sh * sw)", "in_channels", init_test(ConvTranspose2D)),
    Mistake("conv-transpose-fan-in-of-the-output-channels", "core.conv.ConvTranspose2D.__init__",
            "in_channels / (sh * sw)", "out_channels / (sh * sw)", init_test(FastConvTranspose2D)),
    Mistake("he-init-without-the-2", "core.layers.init_weights",
            "math.sqrt(2.0 / fan_in)", "math.sqrt(1.0 / fan_in)", init_test(Conv2D)),
    Mistake("uniform-init-bound-1/fan-in", "core.layers.init_weights",
            "bound = 1.0 / math.sqrt(fan_in)", "bound = 1.0 / fan_in", init_test(ConvTranspose2D, "uniform")),
    # core/losses.py, gaussian.py, continuous_bernoulli.py: constants no gradient sees
    Mistake("gaussian-constant-log-2pi-not-log-pi", "core.losses.gaussian_nll_constant",
            "math.log(math.pi)", "math.log(2 * math.pi)", partial(density, "mse")),
    Mistake("gaussian-constant-without-the-half", "core.losses.gaussian_nll_constant",
            "0.5 * dim * math.log(math.pi)", "dim * math.log(math.pi)",
            densities.test_the_gaussian_constant_is_half_d_log_pi),
    Mistake("cb-log-normaliser-series-without-log-2", "core.continuous_bernoulli.log_normalizer",
            "taylor = LOG_2 + ", "taylor = ",
            densities.test_the_continuous_bernoulli_loss_at_its_hard_logits_is_minus_its_log_density),
    Mistake("bce-probs-clip-at-1e-6", "core.losses.bce_probs",
            "xp.clip(probs, PROB_CLIP, 1 - PROB_CLIP)", "xp.clip(probs, 1e-6, 1 - 1e-6)", partial(density, "bce-prob")),
    Mistake("log-prior-without-its-log-2pi", "core.gaussian.log_prior",
            "(z * z + LOG_2PI)", "(z * z)", densities.test_log_prior_is_scipys_standard_normal_log_density),
    Mistake("sigma-log-q-without-its-log-2pi", "core.gaussian.SigmaGaussian.log_q",
            "backend.xp.log(var) + LOG_2PI", "backend.xp.log(var)",
            partial(densities.test_log_q_is_scipys_normal_log_density, "sigma")),
    Mistake("sigma-kl-without-its-minus-1", "core.gaussian.SigmaGaussian.kl",
            "(mu * mu + var - 1 - backend.xp.log", "(mu * mu + var - backend.xp.log",
            partial(densities.test_the_kl_is_the_integral_of_q_log_q_over_p, "sigma")),
    Mistake("logvar-kl-half-missing", "core.gaussian.LogvarGaussian.kl",
            "kl = 0.5 * (mu * mu + var - 1 - logvar).sum(axis=1)", "kl = (mu * mu + var - 1 - logvar).sum(axis=1)",
            partial(densities.test_the_kl_is_the_integral_of_q_log_q_over_p, "logvar")),
    # core/losses.py: the softmax in float32
    Mistake("log-softmax-shifted-by-the-batch-maximum", "core.losses.log_softmax",
            "logits.max(axis=-1, keepdims=True)", "logits.max()", float32_cross_entropy),
    Mistake("log-softmax-shifted-by-the-row-minimum", "core.losses.log_softmax",
            "logits.max(axis=-1, keepdims=True)", "logits.min(axis=-1, keepdims=True)", float32_cross_entropy),
]


def test_every_catching_test_passes_without_a_planted_mistake():
    for test in {mistake.caught_by for mistake in MISTAKES}:
        assert not fails(test), test


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.id for m in MISTAKES])
def test_a_planted_mistake_fails_its_test(monkeypatch, mistake):
    plant(monkeypatch, mistake)
    assert fails(mistake.caught_by), f"{mistake.caught_by} does not catch {mistake.id}"
