"""losses.py's Bernoulli losses, faster on the GPU: the same contract, the same numbers to the last bit or two
(tests/core/test_kernels.py holds them equal), each one fused kernel (core/kernels.py) where the backend compiles
kernels, and the plain function itself elsewhere (NumPy's numbers do not change).

The plain bce_logits makes a dozen passes over (B, D): |a|, its negation, exp, log1p, the max, the sum, the row
dot products, then a - softplus, exp, - x and * scale for the gradient. Here one kernel computes each pixel's loss
and gradient, and one sum adds the pixels of each row: two launches. The row's loss is summed as
sum_d (softplus(a_d) - x_d a_d), where the plain one sums the softplus and subtracts the dot product: the same
number in other roundings. bce_probs likewise. The other losses make few passes (squared error: 3) or are used
little (the continuous Bernoulli); they keep the plain functions.

The models read RECONSTRUCTIONS from here: the plain table with these two in place of the plain ones.
"""

from minivae.core import kernels, losses

# softplus(a) = max(a, 0) + log1p(e^-|a|);  nll = softplus(a) - x a;  d nll/da = (e^(a - softplus(a)) - x) * scale
BCE_LOGITS = kernels.Kernel("T a, T x, T scale", "T nll, T dlogits", """
    T softplus = fmax(a, T(0)) + log1p(exp(-fabs(a)));
    nll = softplus - x * a;
    dlogits = (exp(a - softplus) - x) * scale;
""", "minivae_bce_logits")


def bce_logits(logits, x, scale=1.0, grad=True):
    """losses.bce_logits: nll (B,) and dlogits (B, D) = scale * (sigmoid(a) - x) (None when grad=False), for
    logits, x (B, D)."""
    if not kernels.available():
        return losses.bce_logits(logits, x, scale, grad)
    per_pixel, dlogits = BCE_LOGITS(logits, x, scale)
    return per_pixel.sum(axis=1), dlogits if grad else None


# p clipped to [low, high]: c; nll = -(x log c + (1 - x) log(1 - c)); d nll/dp = (c - x) / (c (1 - c)) where p
# was inside the clip range, 0 where it was clipped. `p < low ? ...` keeps a nan p nan, as NumPy's clip does.
BCE_PROBS = kernels.Kernel("T p, T x, T low, T high, T scale", "T nll, T dprobs", """
    T c = p < low ? low : (p > high ? high : p);
    nll = -(x * log(c) + (T(1) - x) * log(T(1) - c));
    dprobs = (c - x) / (c * (T(1) - c)) * T(p == c) * scale;
""", "minivae_bce_probs")


def bce_probs(probs, x, scale=1.0, grad=True):
    """losses.bce_probs: nll (B,) and dprobs (B, D) (None when grad=False), for probs, x (B, D)."""
    if not kernels.available():
        return losses.bce_probs(probs, x, scale, grad)
    per_pixel, dprobs = BCE_PROBS(probs, x, losses.PROB_CLIP, 1 - losses.PROB_CLIP, scale)
    return per_pixel.sum(axis=1), dprobs if grad else None


RECONSTRUCTIONS = losses.RECONSTRUCTIONS | {"bce": bce_logits, "bce-prob": bce_probs}
