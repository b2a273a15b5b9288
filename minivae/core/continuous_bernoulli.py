"""The continuous Bernoulli (Loaiza-Ganem and Cunningham, 2019): a true density for grayscale pixels in [0, 1].

The Bernoulli likelihood x log(lam) + (1-x) log(1-lam) is a probability for x in {0, 1}. Applied to grayscale
x in [0, 1], as most VAE tutorials do, it is not the log-density of anything: it does not integrate to 1 over
[0, 1] (its integral is 1 / C(lam) <= 1/2). The continuous Bernoulli fixes that with the normalising constant

    p(x|lam) = C(lam) lam^x (1-lam)^(1-x),   C(lam) = 2 artanh(1 - 2 lam) / (1 - 2 lam)   (C(1/2) = 2)

so that its "log-likelihood" is a log-density on [0, 1], comparable with other densities on the same data.

On logits. With lam = sigmoid(a) we have 1 - 2 lam = -tanh(a/2), so artanh(1 - 2 lam) = -a/2 exactly, and

    C = a / tanh(a/2) = a (1 + e^-a) / (1 - e^-a)        (even in a; C -> 2 as a -> 0)
    log C = log( r / (1 - e^-r) ) + log1p(e^-r),  r = |a|

Both pieces are accurate for every r > 0: expm1 gives 1 - e^-r to full relative precision even for tiny r, so
the ratio r / (1 - e^-r) is a ratio of two accurate numbers. (Written with lam instead, 1 - 2 lam loses all its
digits near lam = 1/2 and artanh(1 - 2 lam) / (1 - 2 lam) becomes noise: work on logits, as bce_logits does.)
Only a = 0 itself is 0/0, so below |a| < 1e-2 we use the Taylor series

    log C = log 2 + a^2/12 - 7 a^4/1440 + 31 a^6/90720 - ...

to order a^4: the first omitted term, 3.4e-4 a^6, is at most 3.4e-16 there, float64's rounding of log 2.

The mean is not lam. p(x|a) = exp(a x) / Z(a) on [0, 1] (an exponential family with natural parameter a),
Z(a) = (e^a - 1) / a, and its mean is d log Z / da:

    E[x] = 1 / (1 - e^-a) - 1/a  =  lam / (2 lam - 1) + 1 / (2 artanh(1 - 2 lam))        (1/2 at a = 0)

It is 1/2 + a/12 near 0 (much flatter than sigmoid(a) = 1/2 + a/4), and 1 - 1/a for large a: to get a mean of
0.99 the decoder needs a logit of 100, not 4.6. Decoding, reconstructions and samples must show this mean.

The gradient. log p(x|a) = a x - log Z(a), so  d(-log p)/da = E[x] - x : the same form as the Bernoulli's
sigmoid(a) - x, with the continuous Bernoulli's mean. In the terms of the formula above,
-log p = BCE(a, x) - log C(a), so d log C / da = sigmoid(a) - E[x] = 1/a - 1/sinh(a).

Near a = 0 the mean's closed form subtracts two numbers of size 1/|a| and keeps an absolute error of about
float-epsilon/|a| (4e-5 in float32 at |a| = 1e-3). Below |a| < 0.5 we use its Taylor series instead,

    E[x] - 1/2 = a/12 - a^3/720 + a^5/30240 - a^7/1209600 + a^9/47900160 - ...

to order a^9: the first omitted term, 5.3e-10 |a|^11, is at most 2.6e-13 at |a| = 0.5, far below float32's
resolution and below what the float64 gradient check can see, while the closed form at |a| >= 0.5 loses at most
about 2 float-epsilons (measured against 50-digit arithmetic: 5e-8 in float32, 3e-16 in float64).

Shapes: every function is elementwise on logits of any shape, (B, D) for the loss.
"""

import math

from minivae.core import backend

LOG_2 = math.log(2.0)
LOG_C_TAYLOR_BELOW = 1e-2  # |a| below this: log C from its Taylor series (to a^4)
MEAN_TAYLOR_BELOW = 0.5  # |a| below this: the mean from its Taylor series (to a^9)
LOG_C_SERIES = (1 / 12, -7 / 1440)  # coefficients of a^2, a^4 in log C - log 2
MEAN_SERIES = (1 / 12, -1 / 720, 1 / 30240, -1 / 1209600, 1 / 47900160)  # of a, a^3, ..., a^9 in E[x] - 1/2


def _odd_series(a, coefficients):
    """sum_n c_n a^(2n+1) by Horner's rule in a^2 (coefficients in increasing order)."""
    a2 = a * a
    total = backend.xp.zeros_like(a)
    for c in reversed(coefficients):
        total *= a2
        total += c
    return total * a


def _split(a, below):
    """Split logits a for two formulas without 0/0 or overflow in the one that is not used:
    r = |a| with the entries below `below` replaced by 1 (for the closed form), a_small = a with the others
    replaced by 0 (for the Taylor series), and the mask `small` saying which is which."""
    xp = backend.xp
    r = xp.abs(a)
    small = r < below
    xp.copyto(r, 1.0, where=small)  # r[small] = 1, without a boolean index (on a GPU that waits for the device)
    return r, xp.where(small, a, 0), small


def log_normalizer(logits):
    """log C(sigmoid(a)) for logits a (any shape): log(a / tanh(a/2)), log 2 at a = 0."""
    xp = backend.xp
    r, a_small, small = _split(logits, LOG_C_TAYLOR_BELOW)
    log_c = xp.log(r / -xp.expm1(-r)) + xp.log1p(xp.exp(-r))
    taylor = LOG_2 + _odd_series(a_small, LOG_C_SERIES) * a_small  # even: (odd series) * a
    return xp.where(small, taylor, log_c)


def mean(logits):
    """E[x] under the continuous Bernoulli with logits a (any shape), in (0, 1): 1/(1 - e^-a) - 1/a.

    Written for r = |a| with the sign put back (E[x] - 1/2 is odd in a), so that e^-r never overflows:
    E[x] - 1/2 = sign(a) * (1/2 + e^-r / (1 - e^-r) - 1/r).
    """
    xp = backend.xp
    r, a_small, small = _split(logits, MEAN_TAYLOR_BELOW)
    half_gap = 0.5 + xp.exp(-r) / -xp.expm1(-r) - 1.0 / r  # E[x] - 1/2 for a = +r
    closed = xp.where(logits < 0, -half_gap, half_gap)
    return 0.5 + xp.where(small, _odd_series(a_small, MEAN_SERIES), closed)


def nll(logits, x, scale=1.0, grad=True):
    """-log p(x|a) of the continuous Bernoulli, summed over pixels, with its gradient:

        -log p = softplus(a) - x a - log C(a)        (BCE on logits, minus the log normaliser)
        d/da   = E[x](a) - x                         (see the module docstring)

    logits, x: (B, D), x in [0, 1]. Returns nll (B,) and dlogits (B, D) = scale * (E[x] - x). The nll can be
    negative: a density on [0, 1] may exceed 1.
    """
    xp = backend.xp
    softplus = xp.maximum(logits, 0) + xp.log1p(xp.exp(-xp.abs(logits)))
    per_pixel = softplus - log_normalizer(logits)
    total = per_pixel.sum(axis=1) - xp.einsum("ij,ij->i", logits, x)
    if not grad:
        return total, None
    dlogits = mean(logits) - x
    if scale != 1.0:
        dlogits *= scale
    return total, dlogits


# Logits where the formulas change or strain: exactly 0, tiny, both sides of each Taylor switch, and the tails
# (a row of the gradient check, checks/table.py, and the tests use them).
HARD_LOGITS = (0.0, 1e-300, -1e-30, 1e-8, -1e-3, 0.00999, 0.01001, -0.4999, 0.5001, 1.0, -3.0, 17.0, -40.0,
               100.0, -1e4)

