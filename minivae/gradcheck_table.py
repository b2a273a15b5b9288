"""The table `python -m minivae.gradcheck` runs: one small named check per branch of every backward pass.

A check is a row (group, name, seed, run): run(rng, noise_aware) builds its layer, function or model, draws
every array from rng (a generator seeded by the row alone), and returns {what was checked: relative error}
from gradcheck's check_layer / check_function / check_model. The rows cover, on purpose:
  * both sides of every kink (ReLU inputs of either sign), inputs near and at a floor (sigma = 0 in the
    sigma KL, where its 1e-10 floor decides) and probabilities inside, at the edge of and outside the clip of
    losses.bce_probs, each with a step h small enough not to step over the kink (its name gives that h);
  * every stride and padding path of Conv2D and ConvTranspose2D (stride 1 and 2, non-square kernels and
    strides, 'same' with the odd pixel, 'valid', int padding, output_padding), and both ways Conv2D gets dx;
  * a square Dense (so a missing transpose is wrong, not a shape error), losses at a scale != 1;
  * every model a preset or option builds: the MLP for each recon x posterior x activation, two hidden
    layers, decoder_hidden != hidden, beta != 1, and the convnet of convvae.py at a small size.
Every layer and model check also fills grads with noise and runs backward twice (see gradcheck.py).

Adding a row for a new op: reuse a recipe below (or write one: a function returning run(rng, noise_aware)) and
add one line to CHECKS, e.g.
    Check("loss", "continuous Bernoulli", 80, loss_check("continuous_bernoulli", uniform((3, 4), 0.05, 0.95))),
    Check("model", "IWAE k=3", 81, model_check(make_iwae)),  # make_iwae(rng) -> a float64 model with VAE's
                                                             # step, per_example_losses, params and grads
Give it a seed no other row uses, keep its shapes small (each checked entry costs 4 evaluations of f, twice),
and add a row per branch of its backward (each side of a kink or clip). Then plant a one-line mistake in it
in tests/test_gradcheck_mistakes.py: some row must fail.
"""

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from minivae import backend, continuous_bernoulli, conv, cvae, gaussian, iwae, layers, losses, m2
from minivae.gradcheck import check_function, check_layer, check_model

F64 = "float64"


class Check(NamedTuple):
    """One row: group and name as printed, the seed of its generator, and run(rng, noise_aware) -> {what: err}."""

    group: str
    name: str
    seed: int
    run: Callable


# ---- what the checks draw: each takes the row's generator and returns a NumPy array ----------------------------


def uniform(shape, low=-2.0, high=2.0):
    """An array of `shape`, uniform in [low, high]."""
    return lambda rng: rng.uniform(low, high, shape)


def both_sides(shape, low, high):
    """|x| uniform in [low, high], each sign equally likely: both sides of a kink at 0, never within low of it."""
    return lambda rng: rng.uniform(low, high, shape) * rng.choice([-1.0, 1.0], shape)


def zero_or_both_sides(shape, low, high):
    """A quarter of the entries exactly 0, the others as both_sides(shape, low, high)."""
    def draw(rng):
        x = both_sides(shape, low, high)(rng)
        x.reshape(-1)[rng.permutation(x.size)[: x.size // 4]] = 0.0
        return x
    return draw


def shuffled(values, shape):
    """The given values (repeated as needed) in a random order: exact points such as 0 or the clip edges."""
    return lambda rng: rng.permutation(np.resize(np.asarray(values, dtype=F64), shape))


def device(array):
    """A NumPy array as float64 on the current backend (NumPy or CuPy), same shape."""
    return backend.to_device(array, dtype=F64)


# ---- recipes: each returns a row's run(rng, noise_aware) ---------------------------------------------------------


def layer_check(make_layer, draw_x, h=None):
    """check_layer on make_layer(rng) at x = draw_x(rng)."""
    def run(rng, noise_aware):
        layer = make_layer(rng)
        x = device(draw_x(rng))
        return check_layer(layer, x, seed=int(rng.integers(2**31)), h=h, noise_aware=noise_aware)
    return run


def dense(n_in, n_out):
    """make_layer for a float64 Dense: x (B, n_in) -> (B, n_out), weights from the row's generator."""
    return lambda rng: layers.Dense(n_in, n_out, rng=rng, dtype=F64)


def conv2d(c_in, c_out, kernel, stride, padding):
    """make_layer for a float64 Conv2D: x (B, c_in, H, W) -> (B, c_out, H_out, W_out)."""
    return lambda rng: conv.Conv2D(c_in, c_out, kernel, stride, padding, rng=rng, dtype=F64)


def conv_transpose2d(c_in, c_out, kernel, stride, padding, output_padding=0):
    """make_layer for a float64 ConvTranspose2D: x (B, c_in, H, W) -> (B, c_out, H_out, W_out)."""
    return lambda rng: conv.ConvTranspose2D(c_in, c_out, kernel, stride, padding, output_padding, rng=rng,
                                            dtype=F64)


def pixels(rng, out):
    """Data for a reconstruction loss: x uniform in [0, 1], out's shape, float64 on the backend."""
    return device(rng.uniform(0, 1, out.shape))


def labels(rng, out):
    """Data for a classifier's loss: one class per row of out (B, classes), uniform over the classes."""
    return backend.to_device(rng.integers(0, out.shape[1], len(out)))


def loss_check(name, draw_out, h=None, scale=0.25, draw_target=pixels):
    """losses.<name>(out, x, scale) against d(scale * sum nll)/dout, with data x from draw_target(rng, out)
    (pixels in [0, 1], or labels). The function is looked up when the row runs, so a patched one is checked."""
    def run(rng, noise_aware):
        out = device(draw_out(rng))
        x = draw_target(rng, out)

        def value_and_grad(o):
            nll, dout = getattr(losses, name)(o, x, scale=scale)
            return scale * nll, (dout,)

        return {"out": check_function(value_and_grad, [out], h=h, noise_aware=noise_aware)[0]}
    return run


def sampler_check(posterior, draw_scale):
    """z = posterior.sample(mu, scale, eps) projected on R, against posterior.backward(R); mu, eps, R ~ N(0, 1),
    all (4, 3), the scale from draw_scale."""
    def run(rng, noise_aware):
        mu, scale = device(rng.standard_normal((4, 3))), device(draw_scale(rng))
        eps, projection = device(rng.standard_normal((4, 3))), device(rng.standard_normal((4, 3)))
        sampler = gaussian.POSTERIORS[posterior]()

        def fn(m, s):
            return sampler.sample(m, s, eps=eps) * projection, sampler.backward(projection)

        return dict(zip(["mu", posterior], check_function(fn, [mu, scale], noise_aware=noise_aware)))
    return run


def kl_check(posterior, draw_scale, h=None):
    """The KL to N(0, I), (4,), and its two gradients; mu ~ N(0, 1) (4, 3), the scale (4, 3) from draw_scale."""
    def run(rng, noise_aware):
        mu, scale = device(rng.standard_normal((4, 3))), device(draw_scale(rng))

        def fn(m, s):
            value, dmu, dscale = gaussian.POSTERIORS[posterior].kl(m, s)
            return value, (dmu, dscale)

        return dict(zip(["mu", posterior], check_function(fn, [mu, scale], h=h, noise_aware=noise_aware)))
    return run


def model_check(make_model, batch=3):
    """check_model on make_model(rng), with random biases (zero ones put a unit fed only by dead ReLUs exactly on
    the next kink), x (batch, pixels) uniform in [0, 1] and eps (batch, latent) ~ N(0, 1)."""
    def run(rng, noise_aware):
        model = make_model(rng)
        for name, param in model.params.items():
            if name.endswith(".b"):
                param[...] = device(rng.uniform(-0.5, 0.5, param.shape))
        n_pixels = model.decoder_output(backend.xp.zeros((1, model.latent), dtype=F64)).shape[1]
        x, eps = device(rng.uniform(0, 1, (batch, n_pixels))), device(rng.standard_normal((batch, model.latent)))
        return check_model(model, x, eps, noise_aware=noise_aware)
    return run


def mlp(recon="bce", posterior="logvar", activation="relu", hidden=(5,), **options):
    """A float64 MLP VAE 6 -> hidden -> 2 (latent), and back."""
    from minivae.vae import mlp_vae

    return lambda rng: mlp_vae(input_dim=6, hidden=hidden, latent=2, recon=recon, posterior=posterior,
                               activation=activation, rng=rng, dtype=F64, **options)


def convnet(**options):
    """convvae.conv_vae at a small size: 2 channels throughout, dense 3, latent 2, 4x6 images."""
    from minivae.convvae import conv_vae

    return lambda rng: conv_vae(channels=(2, 2, 2, 2), dense=3, image_shape=(4, 6), rng=rng, dtype=F64, **options)


# ---- the table --------------------------------------------------------------------------------------------------

CLIP_EDGES = [0.0, 1e-8, 3e-7, 1e-6, 1 - 1e-6, 1 - 3e-7, 1 - 1e-8, 1.0]  # p clipped (first and last 2) or just in

CHECKS = [
    Check("layer", "Dense 6 -> 4", 1, layer_check(dense(6, 4), uniform((5, 6)))),
    Check("layer", "Dense 4 -> 4 (square: a missing .T is wrong, not a crash)", 2, layer_check(dense(4, 4),
                                                                                              uniform((3, 4)))),
    Check("layer", "ReLU, |x| in [0.01, 2], both signs", 3, layer_check(lambda rng: layers.ReLU(),
                                                                         both_sides((5, 6), 0.01, 2))),
    Check("layer", "Sigmoid, x in [-10, 10]", 4, layer_check(lambda rng: layers.Sigmoid(), uniform((5, 6), -10, 10))),
    Check("layer", "Tanh, x in [-3, 3]", 5, layer_check(lambda rng: layers.Tanh(), uniform((5, 6), -3, 3))),
    Check("layer", "Sequential 5-4-3 tanh", 6, layer_check(lambda rng: layers.mlp([5, 4, 3], "tanh", rng=rng,
                                                                                  dtype=F64), uniform((4, 5)))),
    # Conv2D: dx by convolution (stride 1, C_out <= C_in, pads < kernel) or by col2im (everything else)
    Check("conv", "Conv2D 3x3 stride 1 same, 3 -> 2 (dx by convolution)", 10,
          layer_check(conv2d(3, 2, 3, 1, "same"), uniform((2, 3, 4, 5)))),
    Check("conv", "Conv2D 2x2 stride 1 same (odd pixel after), 2 -> 2", 11,
          layer_check(conv2d(2, 2, 2, 1, "same"), uniform((2, 2, 4, 3)))),
    Check("conv", "Conv2D 3x3 stride 1 same, 2 -> 3 (dx by col2im)", 12,
          layer_check(conv2d(2, 3, 3, 1, "same"), uniform((2, 2, 4, 4)))),
    Check("conv", "Conv2D 1x1 stride 1 padding 1 (pads >= kernel: col2im)", 13,
          layer_check(conv2d(2, 1, 1, 1, 1), uniform((1, 2, 3, 3)))),
    Check("conv", "Conv2D 3x3 stride 2 same, 5x5 (odd pixel after)", 14,
          layer_check(conv2d(2, 3, 3, 2, "same"), uniform((2, 2, 5, 5)))),
    Check("conv", "Conv2D 3x3 stride 2 valid", 15, layer_check(conv2d(2, 2, 3, 2, "valid"), uniform((2, 2, 6, 5)))),
    Check("conv", "Conv2D 3x3 stride 2 padding 1", 16, layer_check(conv2d(2, 2, 3, 2, 1), uniform((1, 2, 5, 4)))),
    Check("conv", "Conv2D 2x3 stride (1, 2) padding (1, 0)", 17,
          layer_check(conv2d(2, 2, (2, 3), (1, 2), (1, 0)), uniform((2, 2, 4, 6)))),
    Check("conv", "Conv2D 3x1 stride (2, 1) same, 2 -> 1", 18,
          layer_check(conv2d(2, 1, (3, 1), (2, 1), "same"), uniform((2, 2, 5, 3)))),
    Check("conv", "ConvTranspose2D 3x3 stride 1 valid", 20,
          layer_check(conv_transpose2d(2, 2, 3, 1, "valid"), uniform((2, 2, 3, 3)))),
    Check("conv", "ConvTranspose2D 3x3 stride 1 same", 21,
          layer_check(conv_transpose2d(2, 3, 3, 1, "same"), uniform((2, 2, 3, 4)))),
    Check("conv", "ConvTranspose2D 3x3 stride 2 same", 22,
          layer_check(conv_transpose2d(2, 2, 3, 2, "same"), uniform((2, 2, 3, 3)))),
    Check("conv", "ConvTranspose2D 3x3 stride 2 padding 1 output_padding 1", 23,
          layer_check(conv_transpose2d(2, 3, 3, 2, 1, 1), uniform((2, 2, 3, 3)))),
    Check("conv", "ConvTranspose2D 4x4 stride 2 padding 1", 24,
          layer_check(conv_transpose2d(3, 2, 4, 2, 1), uniform((1, 3, 3, 2)))),
    Check("conv", "ConvTranspose2D 2x3 stride (2, 1) pad (0, 1) out_pad (1, 0)", 25,
          layer_check(conv_transpose2d(2, 2, (2, 3), (2, 1), (0, 1), (1, 0)), uniform((2, 2, 3, 3)))),
    Check("conv", "Flatten (2, 3, 2, 2)", 26, layer_check(lambda rng: conv.Flatten(), uniform((2, 3, 2, 2)))),
    Check("conv", "Reshape (12,) -> (2, 2, 3)", 27, layer_check(lambda rng: conv.Reshape((2, 2, 3)), uniform((2, 12)))),
    Check("loss", "bce_logits, logits in [-40, 40]", 30, loss_check("bce_logits", uniform((4, 7), -40, 40))),
    Check("loss", "bce_probs, p in [0.02, 0.98]", 31, loss_check("bce_probs", uniform((4, 7), 0.02, 0.98))),
    Check("loss", "bce_probs at the clip: p within 1e-6 of 0 and 1 (h = 1e-9)", 32,
          loss_check("bce_probs", shuffled(CLIP_EDGES, (4, 6)), h=1e-9)),
    Check("loss", "squared_error", 33, loss_check("squared_error", uniform((4, 7), 0, 1))),
    Check("loss", "continuous Bernoulli, logits in [-60, 60]", 34,
          loss_check("continuous_bernoulli", uniform((3, 5), -60, 60))),
    Check("loss", "continuous Bernoulli at 0, tiny, both sides of its series switches, tails", 35,
          loss_check("continuous_bernoulli", shuffled(continuous_bernoulli.HARD_LOGITS, (3, 5)))),
    Check("sampler", "z = mu + exp(logvar / 2) eps, logvar in [-6, 3]", 40,
          sampler_check("logvar", uniform((4, 3), -6, 3))),
    Check("sampler", "z = mu + sigma eps, |sigma| in [0.1, 2], both signs", 41,
          sampler_check("sigma", both_sides((4, 3), 0.1, 2))),
    Check("KL", "KL [logvar], logvar in [-6, 3]", 42, kl_check("logvar", uniform((4, 3), -6, 3))),
    Check("KL", "KL [sigma], |sigma| in [0.1, 2], both signs", 43, kl_check("sigma", both_sides((4, 3), 0.1, 2))),
    Check("KL", "KL [sigma] at its floor: sigma 0, |sigma| 3e-6..3e-5 (h = 1e-8)", 44,
          kl_check("sigma", zero_or_both_sides((4, 3), 3e-6, 3e-5), h=1e-8)),
]
def labelled(check):
    """A row for a check written as check(noise_aware, seed) -> {what: error} (cvae.py, m2.py): its seed is
    drawn from the row's generator."""
    return lambda rng, noise_aware: check(noise_aware, seed=int(rng.integers(2**31)))


# every MLP a config can build: recon x posterior x activation, then the other options
MLP_GRID = [(recon, posterior, activation) for recon in ("bce", "bce-prob", "mse", "cb")
            for posterior in ("logvar", "sigma") for activation in ("relu", "tanh", "sigmoid")]
CHECKS += [Check("model", f"MLP {recon}/{posterior}/{activation}", 100 + i,
                 model_check(mlp(recon, posterior, activation)))
           for i, (recon, posterior, activation) in enumerate(MLP_GRID)]
CHECKS += [
    Check("model", "MLP two hidden layers 5-4", 70, model_check(mlp(hidden=(5, 4)))),
    Check("model", "MLP decoder_hidden 3-4 != hidden 5, sigma/mse", 71,
          model_check(mlp("mse", "sigma", hidden=(5,), decoder_hidden=(3, 4)))),
    Check("model", "MLP beta 0.3", 72, model_check(mlp("bce-prob", beta=0.3))),
    Check("model", "convnet bce-prob/logvar, beta 0.392 (the preset)", 73,
          model_check(convnet(recon="bce-prob", beta=0.392))),
    Check("model", "convnet bce/sigma", 74, model_check(convnet(recon="bce", posterior="sigma"))),
    Check("model", "convnet mse/logvar", 75, model_check(convnet(recon="mse"))),
    # The K-sample objectives (iwae.py): the noise eps (K, B, L) fixed, every parameter of a tiny tanh MLP.
    Check("model", "IWAE K=1", 90, iwae.gradient_check("iwae", 1)),
    Check("model", "IWAE K=2 bce-prob/sigma", 91, iwae.gradient_check("iwae", 2, "bce-prob", "sigma")),
    Check("model", "IWAE K=5", 92, iwae.gradient_check("iwae", 5)),
    Check("model", "IWAE K=5 cb", 93, iwae.gradient_check("iwae", 5, "cb")),
    Check("model", "K-sample ELBO K=5 mse", 94, iwae.gradient_check("vae", 5, "mse")),
    # The models that use labels (cvae.py, m2.py): their checks build their own tiny float64 model from a seed.
    Check("loss", "softmax cross-entropy, logits in [-30, 30]", 36,
          loss_check("softmax_cross_entropy", uniform((5, 4), -30, 30), draw_target=labels)),
    Check("loss", "M2 unlabelled loss: dU/dlogits = q (c - U)", 37, labelled(m2.check_unlabelled_dlogits)),
    Check("model", "CVAE ELBO", 95, labelled(cvae.check_elbo)),
    Check("model", "CVAE ELBO mse, beta 0.5", 96, labelled(lambda na, seed: cvae.check_elbo(na, seed, recon="mse",
                                                                                          beta=0.5))),
    Check("model", "M2 labelled loss", 97, labelled(m2.check_labelled)),
    Check("model", "M2 unlabelled loss", 98, labelled(m2.check_unlabelled)),
    Check("model", "M2 labelled + unlabelled", 99, labelled(m2.check_m2)),
]
