"""The initial weights of Conv2D and ConvTranspose2D have the spread their fan-in asks for (layers.init_weights):

    'he'  N(0, 2 / fan_in)      'lecun'  N(0, 1 / fan_in)      'uniform'  U(-1/sqrt(fan_in), 1/sqrt(fan_in))

with fan_in the inputs summed per output: C_in * kh * kw for Conv2D, and C_in * kh * kw / (sh * sw) for
ConvTranspose2D, whose output pixels each receive about that many terms on average. Each layer's weights are tested
against that distribution by a Kolmogorov-Smirnov test (scipy.stats.kstest): a fan-in off by the kernel size, the
stride or the channels moves the spread by a factor of 1.4 or more, which thousands of weights show at once.
"""

import math

import numpy as np
import pytest
from scipy import stats

from minivae.core import backend
from minivae.core.conv import Conv2D, ConvTranspose2D
from minivae.core.conv_fast import FastConv2D, FastConvTranspose2D

# (layer class, C_in, C_out, kernel, stride, the fan-in by hand): C_in != C_out, kh != kw, sh * sw != 1
LAYERS = [
    (Conv2D, 12, 20, (3, 5), 1, 12 * 3 * 5),
    (Conv2D, 12, 20, (3, 5), 2, 12 * 3 * 5),  # the stride does not change a Conv2D's fan-in
    (FastConv2D, 20, 12, 3, 2, 20 * 3 * 3),
    (ConvTranspose2D, 12, 20, (4, 6), 2, 12 * 4 * 6 / 4),
    (ConvTranspose2D, 12, 20, 4, (1, 2), 12 * 4 * 4 / 2),
    (FastConvTranspose2D, 20, 12, 3, 2, 20 * 3 * 3 / 4),
]


def expected_distribution(init, fan_in):
    """The frozen scipy.stats distribution of one initial weight."""
    if init == "he":
        return stats.norm(scale=math.sqrt(2 / fan_in))
    if init == "lecun":
        return stats.norm(scale=math.sqrt(1 / fan_in))
    bound = 1 / math.sqrt(fan_in)
    return stats.uniform(loc=-bound, scale=2 * bound)


@pytest.mark.parametrize("init", ["he", "lecun", "uniform"])
@pytest.mark.parametrize("layer_class, c_in, c_out, kernel, stride, fan_in", LAYERS,
                         ids=[f"{c[0].__name__} {c[1]}->{c[2]} kernel {c[3]} stride {c[4]}" for c in LAYERS])
def test_initial_conv_weights_follow_the_distribution_of_their_fan_in(layer_class, c_in, c_out, kernel, stride,
                                                                        fan_in, init):
    layer = layer_class(c_in, c_out, kernel, stride=stride, init=init, rng=np.random.default_rng(0))
    weights = backend.to_numpy(layer.params["W"]).astype(np.float64).ravel()
    assert weights.size >= 2000
    assert stats.kstest(weights, expected_distribution(init, fan_in).cdf).pvalue > 1e-3
    assert not backend.to_numpy(layer.params["b"]).any()  # and the biases start at 0


def test_the_test_tells_a_spread_off_by_a_factor_of_1_4_from_the_right_one():
    # what the test above relies on: 2,000 weights drawn with sqrt(2) times the spread fail it
    weights = np.random.default_rng(0).normal(0, math.sqrt(2) * 0.1, 2000)
    assert stats.kstest(weights, stats.norm(scale=0.1).cdf).pvalue < 1e-6
