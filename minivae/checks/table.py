"""The table `python -m minivae.gradcheck` runs: one small named check per branch of every backward pass.

A check is a row (group, name, seed, run): run(rng, noise_aware) builds its layer, function or model, draws
every array from rng (a generator seeded by the row alone), and returns {what was checked: relative error}
from finite_differences' check_layer, check_function or check_model. The rows cover, on purpose:
  * both sides of every kink (ReLU inputs of either sign), inputs near and at a floor (sigma = 0 in the
    sigma KL, where its 1e-10 floor decides) and probabilities inside, at the edge of and outside the clip of
    losses.bce_probs, each with a step h small enough not to step over the kink (its name gives that h);
  * every stride and padding path of Conv2D and ConvTranspose2D (stride 1 and 2, non-square kernels and
    strides, a kernel smaller than its stride, 'same' with the odd pixel, 'valid', int padding,
    output_padding), for the plain layers (conv.py) and for their fast twins (conv_fast.py), whose cases also
    take every way round: by shifts (fewer output than input channels at stride 1), dx as a convolution, and
    col2im by phases;
  * a square Dense (so a missing transpose is wrong, not a shape error), losses at a scale != 1;
  * the fast twins whose chains of passes are fused kernels on a GPU (losses_fast, gaussian_fast, layers_fast:
    core/kernels.py), at the same hard points as the plain functions: on NumPy these rows check the plain
    functions again, on CuPy (`--device gpu`) they check the kernels;
  * every model a config can build: the MLP for each recon x posterior x activation, two hidden layers,
    decoder_hidden != hidden, beta != 1, the convnet at a small size, the conditional VAE with each
    posterior and a density decoder, the K-sample objectives, the classifier and M2.
Every layer and model row fills grads with noise and runs backward twice (finite_differences.py).

Adding a row for a new op: reuse a recipe below (or write one: a function returning run(rng, noise_aware)) and
add one line to CHECKS, e.g.
    Check("loss", "my loss, logits in [-5, 5]", 38, loss_check("my_loss", uniform((3, 4), -5, 5))),
Give it a seed no other row uses (tests/checks/test_gradcheck.py checks), keep its shapes small (each checked entry
costs 4 evaluations of f, twice), and add a row per branch of its backward (each side of a kink or clip). Then
plant a one-line mistake in it in tests/checks/test_gradcheck_mistakes.py: some row must fail.
"""

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from minivae.checks.finite_differences import check_function, check_layer, check_model
from minivae.core import (
    backend,
    continuous_bernoulli,
    conv,
    conv_fast,
    gaussian,
    gaussian_fast,
    layers,
    layers_fast,
    losses,
    losses_fast,
)
from minivae.core.padding import conv_geometry
from minivae.models import iwae, m2
from minivae.models.classifier import mlp_classifier
from minivae.models.convnet import conv_vae
from minivae.models.vae import mlp_vae

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


def random_biases(model, rng, low=-0.5, high=0.5):
    """Set every bias of a model to uniform(low, high): zero biases put a unit fed only by dead ReLUs exactly on the
    next kink."""
    for name, param in model.params.items():
        if name.endswith(".b"):
            param[...] = device(rng.uniform(low, high, param.shape))


# ---- recipes: each returns a row's run(rng, noise_aware) ---------------------------------------------------------


def layer_check(make_layer, draw_x, h=None):
    """check_layer on make_layer(rng) at x = draw_x(rng)."""
    def run(rng, noise_aware):
        layer = make_layer(rng)
        x = device(draw_x(rng))
        return check_layer(layer, x, seed=int(rng.integers(2**31)), h=h, noise_aware=noise_aware)
    return run


def pixels(rng, out):
    """Data for a reconstruction loss: x uniform in [0, 1], out's shape, float64 on the backend."""
    return device(rng.uniform(0, 1, out.shape))


def labels(rng, out):
    """Data for a classifier's loss: one class per row of out (B, classes), uniform over the classes."""
    return backend.to_device(rng.integers(0, out.shape[1], len(out)))


def loss_check(name, draw_out, h=None, scale=0.25, draw_target=pixels, module=losses):
    """<module>.<name>(out, x, scale) against d(scale * sum nll)/dout, with data x from draw_target(rng, out)
    (pixels in [0, 1], or labels); module: losses, or its fast twin losses_fast. The function is looked up when
    the row runs, so a patched one is checked."""
    def run(rng, noise_aware):
        out = device(draw_out(rng))
        x = draw_target(rng, out)

        def value_and_grad(o):
            nll, dout = getattr(module, name)(o, x, scale=scale)
            return scale * nll, (dout,)

        return {"out": check_function(value_and_grad, [out], h=h, noise_aware=noise_aware)[0]}
    return run


def unlabelled_loss_check(shape=(5, 4)):
    """M2's U(x) against its dU/dlogits = q (c - U): logits in [-6, 6], E(x, k) in [80, 120] nats."""
    def run(rng, noise_aware):
        logits = device(rng.uniform(-6, 6, shape))
        neg_elbos = device(rng.uniform(80, 120, shape))

        def value_and_grad(a):
            unlabelled, dlogits = m2.unlabelled_loss(a, neg_elbos)
            return unlabelled, (dlogits,)

        return {"logits": check_function(value_and_grad, [logits], noise_aware=noise_aware)[0]}
    return run


def sampler_check(posterior, draw_scale, posteriors=gaussian.POSTERIORS):
    """z = posterior.sample(mu, scale, eps) projected on R, against posterior.backward(R); mu, eps, R ~ N(0, 1),
    all (4, 3), the scale from draw_scale. posteriors: gaussian's, or gaussian_fast's."""
    def run(rng, noise_aware):
        mu, scale = device(rng.standard_normal((4, 3))), device(draw_scale(rng))
        eps, projection = device(rng.standard_normal((4, 3))), device(rng.standard_normal((4, 3)))
        sampler = posteriors[posterior]()

        def fn(m, s):
            return sampler.sample(m, s, eps=eps) * projection, sampler.backward(projection)

        return dict(zip(["mu", posterior], check_function(fn, [mu, scale], noise_aware=noise_aware)))
    return run


def kl_check(posterior, draw_scale, h=None, posteriors=gaussian.POSTERIORS):
    """The KL to N(0, I), (4,), and its two gradients; mu ~ N(0, 1) (4, 3), the scale (4, 3) from draw_scale.
    posteriors: gaussian's, or gaussian_fast's."""
    def run(rng, noise_aware):
        mu, scale = device(rng.standard_normal((4, 3))), device(draw_scale(rng))

        def fn(m, s):
            value, dmu, dscale = posteriors[posterior].kl(m, s)
            return value, (dmu, dscale)

        return dict(zip(["mu", posterior], check_function(fn, [mu, scale], h=h, noise_aware=noise_aware)))
    return run


def vae_check(make_model, batch=3):
    """model.step of a VAE (conditioned on a class or not) from make_model(rng), with random biases, x
    (batch, pixels) uniform in [0, 1], eps (batch, latent) ~ N(0, 1) and, with classes, random labels."""
    def run(rng, noise_aware):
        model = make_model(rng)
        random_biases(model, rng)
        y = backend.to_device(rng.integers(0, model.classes, batch)) if model.classes else None
        n_pixels = model.decoder_output(backend.xp.zeros((batch, model.latent), dtype=F64), y).shape[1]
        x, eps = device(rng.uniform(0, 1, (batch, n_pixels))), device(rng.standard_normal((batch, model.latent)))

        def loss():
            recon, kl = model.per_example_losses(x, y, eps=eps)
            return float((recon + model.beta * kl).mean())

        return check_model(model, lambda: model.step(x, y, eps=eps), loss, noise_aware)
    return run


def k_sample_check(objective, k, recon="bce", posterior="logvar", beta=1.0):
    """iwae.step of the K-sample objective on a 9-7-3 tanh MLP (no ReLU kinks), x (5, 9) and eps (K, 5, 3) fixed."""
    def run(rng, noise_aware):
        model = mlp_vae(input_dim=9, hidden=(7,), latent=3, activation="tanh", recon=recon, posterior=posterior,
                        beta=beta, rng=rng, dtype=F64)
        if posterior == "sigma":  # keep sigma away from 0, the pole of log sigma^2
            model.params["sigma.b"] += 1.0
        x, eps = device(rng.uniform(0, 1, (5, 9))), device(rng.standard_normal((k, 5, 3)))
        return check_model(model, lambda: iwae.step(model, x, objective, eps=eps),
                           lambda: float(iwae.per_example_losses(model, x, objective, eps=eps).mean()), noise_aware)
    return run


def m2_check(n_labelled=4, n_unlabelled=5, classes=3, latent=2):
    """M2.step on 9-pixel images (a labelled batch, an unlabelled one, or both; alpha 0.7, labelled weight 0.3),
    against finite differences of M2.loss_value with the same noise."""
    def run(rng, noise_aware):
        model = m2.mlp_m2(input_dim=9, hidden=(6,), latent=latent, classes=classes, classifier_hidden=(5,),
                          alpha=0.7, labelled_weight=0.3, rng=rng, dtype=F64)
        random_biases(model, rng, 0.05, 0.2)
        batch = (device(rng.uniform(0, 1, (n_labelled, 9))), backend.to_device(rng.integers(0, classes, n_labelled)),
                 device(rng.uniform(0, 1, (n_unlabelled, 9))), device(rng.standard_normal((n_labelled, latent))),
                 device(rng.standard_normal((classes * n_unlabelled, latent))))
        x_l, y_l, x_u, eps_l, eps_u = batch
        return check_model(model, lambda: model.step(x_l, y_l, x_u, eps_labelled=eps_l, eps_unlabelled=eps_u),
                           lambda: model.loss_value(*batch), noise_aware)
    return run


def classifier_check(hidden=(5,), classes=4):
    """Classifier.step, the mean cross-entropy of a 6-5-4 MLP on 5 images with random labels."""
    def run(rng, noise_aware):
        model = mlp_classifier(input_dim=6, hidden=hidden, classes=classes, rng=rng, dtype=F64)
        random_biases(model, rng, 0.05, 0.2)
        x, y = device(rng.uniform(0, 1, (5, 6))), backend.to_device(rng.integers(0, classes, 5))

        def loss():
            return float(losses.softmax_cross_entropy(model.logits(x), y, grad=False)[0].mean())

        return check_model(model, lambda: model.step(x, y), loss, noise_aware)
    return run


def mlp(recon="bce", posterior="logvar", activation="relu", hidden=(5,), **options):
    """A float64 MLP VAE 6 -> hidden -> 2 (latent), and back."""
    return lambda rng: mlp_vae(input_dim=6, hidden=hidden, latent=2, recon=recon, posterior=posterior,
                               activation=activation, rng=rng, dtype=F64, **options)


def convnet(**options):
    """models.convnet.conv_vae at a small size: 2 channels throughout, dense 3, latent 2, 4x6 images."""
    return lambda rng: conv_vae(channels=(2, 2, 2, 2), dense=3, image_shape=(4, 6), rng=rng, dtype=F64, **options)


# ---- the table --------------------------------------------------------------------------------------------------

CLIP_EDGES = [0.0, 1e-8, 3e-7, 1e-6, 1 - 1e-6, 1 - 3e-7, 1 - 1e-8, 1.0]  # p clipped (first and last 2) or just in

# Convolution cases, each checked on the plain layer (conv.py) and on its fast twin (conv_fast.py):
# (name, C_in, C_out, kernel, stride, padding, x's shape). They take every way round of the fast Conv2D (by shifts
# or by im2col forward, dx as a convolution or by col2im phases): `ways` names the ones each takes, in its row's name.
CONV2D_CASES = [
    ("3x3 stride 1 same, 3 -> 2", 3, 2, 3, 1, "same", (2, 3, 4, 5)),
    ("2x2 stride 1 same (odd pixel after), 2 -> 2", 2, 2, 2, 1, "same", (2, 2, 4, 3)),
    ("3x3 stride 1 same, 2 -> 3", 2, 3, 3, 1, "same", (2, 2, 4, 4)),
    ("1x1 stride 1 padding 1 (pads >= kernel), 2 -> 1", 2, 1, 1, 1, 1, (1, 2, 3, 3)),
    ("3x3 stride 2 same, 5x5 (odd pixel after)", 2, 3, 3, 2, "same", (2, 2, 5, 5)),
    ("3x3 stride 2 valid", 2, 2, 3, 2, "valid", (2, 2, 6, 5)),
    ("3x3 stride 2 padding 1", 2, 2, 3, 2, 1, (1, 2, 5, 4)),
    ("2x3 stride (1, 2) padding (1, 0)", 2, 2, (2, 3), (1, 2), (1, 0), (2, 2, 4, 6)),
    ("3x1 stride (2, 1) same, 2 -> 1", 2, 1, (3, 1), (2, 1), "same", (2, 2, 5, 3)),
    ("1x1 stride 2 (kernel smaller than stride)", 2, 3, 1, 2, "valid", (2, 2, 5, 4)),
]
# (name, C_in, C_out, kernel, stride, padding, output_padding, x's shape)
CONV_TRANSPOSE2D_CASES = [
    ("3x3 stride 1 valid", 2, 2, 3, 1, "valid", 0, (2, 2, 3, 3)),
    ("3x3 stride 1 same", 2, 3, 3, 1, "same", 0, (2, 2, 3, 4)),
    ("3x3 stride 2 same", 2, 2, 3, 2, "same", 0, (2, 2, 3, 3)),
    ("3x3 stride 2 padding 1 output_padding 1", 2, 3, 3, 2, 1, 1, (2, 2, 3, 3)),
    ("4x4 stride 2 padding 1", 3, 2, 4, 2, 1, 0, (1, 3, 3, 2)),
    ("2x3 stride (2, 1) pad (0, 1) out_pad (1, 0)", 2, 2, (2, 3), (2, 1), (0, 1), (1, 0), (2, 2, 3, 3)),
    ("1x1 stride 2 (kernel smaller than stride)", 2, 2, 1, 2, "valid", 0, (1, 2, 3, 3)),
]


def ways(c_in, c_out, kernel, stride, padding, shape):
    """The ways FastConv2D takes for this case, in words: what its row's name adds to the plain layer's."""
    layer = conv_fast.FastConv2D(c_in, c_out, kernel, stride, padding, dtype=F64)
    layer.pads = conv_geometry(layer.padding, shape[2:], layer.kernel_size, layer.stride)[1]
    forward = "by shifts" if layer.by_shifts() else "im2col"
    return f"{forward}, dx {'as a convolution' if layer.dx_is_a_convolution() else 'by col2im phases'}"


def conv_rows(conv2d_class, transposed_class, first_seed, fast=False):
    """One row per case of the two tables above, for these two layer classes."""
    rows = []
    for i, (name, c_in, c_out, kernel, stride, padding, shape) in enumerate(CONV2D_CASES):
        def make(rng, args=(c_in, c_out, kernel, stride, padding)):
            return conv2d_class(*args, rng=rng, dtype=F64)
        taken = f" ({ways(c_in, c_out, kernel, stride, padding, shape)})" if fast else ""
        rows.append(Check("conv", f"{conv2d_class.__name__} {name}{taken}", first_seed + i,
                          layer_check(make, uniform(shape))))
    for i, (name, c_in, c_out, kernel, stride, padding, extra, shape) in enumerate(CONV_TRANSPOSE2D_CASES):
        def make(rng, args=(c_in, c_out, kernel, stride, padding, extra)):
            return transposed_class(*args, rng=rng, dtype=F64)
        rows.append(Check("conv", f"{transposed_class.__name__} {name}", first_seed + 20 + i,
                          layer_check(make, uniform(shape))))
    return rows


# every MLP a config can build: recon x posterior x activation, then the other options
MLP_GRID = [(recon, posterior, activation) for recon in ("bce", "bce-prob", "mse", "cb")
            for posterior in ("logvar", "sigma") for activation in ("relu", "tanh", "sigmoid")]

CHECKS = [
    Check("layer", "Dense 6 -> 4", 1, layer_check(lambda rng: layers.Dense(6, 4, rng=rng, dtype=F64),
                                                   uniform((5, 6)))),
    Check("layer", "Dense 4 -> 4 (square: a missing .T is wrong, not a crash)", 2,
          layer_check(lambda rng: layers.Dense(4, 4, rng=rng, dtype=F64), uniform((3, 4)))),
    Check("layer", "ReLU, |x| in [0.01, 2], both signs", 3, layer_check(lambda rng: layers.ReLU(),
                                                                         both_sides((5, 6), 0.01, 2))),
    Check("layer", "ThreadedReLU, |x| in [0.01, 2], both signs", 7,
          layer_check(lambda rng: layers_fast.ThreadedReLU(), both_sides((5, 6), 0.01, 2))),
    Check("layer", "FastReLU (fused backward on a GPU), |x| in [0.01, 2], both signs", 8,
          layer_check(lambda rng: layers_fast.FastReLU(), both_sides((5, 6), 0.01, 2))),
    Check("layer", "Sigmoid, x in [-10, 10]", 4, layer_check(lambda rng: layers.Sigmoid(), uniform((5, 6), -10, 10))),
    Check("layer", "Tanh, x in [-3, 3]", 5, layer_check(lambda rng: layers.Tanh(), uniform((5, 6), -3, 3))),
    Check("layer", "Sequential 5-4-3 tanh", 6, layer_check(lambda rng: layers.mlp([5, 4, 3], "tanh", rng=rng,
                                                                                  dtype=F64), uniform((4, 5)))),
    *conv_rows(conv.Conv2D, conv.ConvTranspose2D, 200),
    *conv_rows(conv_fast.FastConv2D, conv_fast.FastConvTranspose2D, 250, fast=True),
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
    Check("loss", "softmax cross-entropy, logits in [-30, 30]", 36,
          loss_check("softmax_cross_entropy", uniform((5, 4), -30, 30), draw_target=labels)),
    Check("loss", "M2 unlabelled loss: dU/dlogits = q (c - U)", 37, unlabelled_loss_check()),
    Check("loss", "bce_logits fused on a GPU (losses_fast), logits in [-40, 40]", 45,
          loss_check("bce_logits", uniform((4, 7), -40, 40), module=losses_fast)),
    Check("loss", "bce_probs fused on a GPU (losses_fast), p in [0.02, 0.98]", 46,
          loss_check("bce_probs", uniform((4, 7), 0.02, 0.98), module=losses_fast)),
    Check("loss", "bce_probs fused on a GPU (losses_fast) at the clip (h = 1e-9)", 47,
          loss_check("bce_probs", shuffled(CLIP_EDGES, (4, 6)), h=1e-9, module=losses_fast)),
    Check("sampler", "z = mu + exp(logvar / 2) eps, logvar in [-6, 3]", 40,
          sampler_check("logvar", uniform((4, 3), -6, 3))),
    Check("sampler", "z = mu + sigma eps, |sigma| in [0.1, 2], both signs", 41,
          sampler_check("sigma", both_sides((4, 3), 0.1, 2))),
    Check("sampler", "the logvar sampler fused on a GPU (gaussian_fast), logvar in [-6, 3]", 48,
          sampler_check("logvar", uniform((4, 3), -6, 3), posteriors=gaussian_fast.POSTERIORS)),
    Check("KL", "KL [logvar], logvar in [-6, 3]", 42, kl_check("logvar", uniform((4, 3), -6, 3))),
    Check("KL", "KL [logvar] fused on a GPU (gaussian_fast), logvar in [-6, 3]", 49,
          kl_check("logvar", uniform((4, 3), -6, 3), posteriors=gaussian_fast.POSTERIORS)),
    Check("KL", "KL [sigma], |sigma| in [0.1, 2], both signs", 43, kl_check("sigma", both_sides((4, 3), 0.1, 2))),
    Check("KL", "KL [sigma] at its floor: sigma 0, |sigma| 3e-6..3e-5 (h = 1e-8)", 44,
          kl_check("sigma", zero_or_both_sides((4, 3), 3e-6, 3e-5), h=1e-8)),
    *[Check("model", f"MLP {recon}/{posterior}/{activation}", 100 + i, vae_check(mlp(recon, posterior, activation)))
      for i, (recon, posterior, activation) in enumerate(MLP_GRID)],
    Check("model", "MLP two hidden layers 5-4", 70, vae_check(mlp(hidden=(5, 4)))),
    Check("model", "MLP decoder_hidden 3-4 != hidden 5, sigma/mse", 71,
          vae_check(mlp("mse", "sigma", hidden=(5,), decoder_hidden=(3, 4)))),
    Check("model", "MLP beta 0.3", 72, vae_check(mlp("bce-prob", beta=0.3))),
    Check("model", "convnet bce-prob/logvar, beta 0.392 (the preset)", 73,
          vae_check(convnet(recon="bce-prob", beta=0.392))),
    Check("model", "convnet bce/sigma", 74, vae_check(convnet(recon="bce", posterior="sigma"))),
    Check("model", "convnet mse/logvar", 75, vae_check(convnet(recon="mse"))),
    Check("model", "convnet of the plain layers, cb/logvar", 76, vae_check(convnet(recon="cb", fast=False))),
    # The K-sample objectives (iwae.py): the noise eps (K, B, L) fixed, every parameter of a tiny tanh MLP.
    Check("model", "IWAE K=1", 90, k_sample_check("iwae", 1)),
    Check("model", "IWAE K=2 bce-prob/sigma", 91, k_sample_check("iwae", 2, "bce-prob", "sigma")),
    Check("model", "IWAE K=5", 92, k_sample_check("iwae", 5)),
    Check("model", "IWAE K=5 cb", 93, k_sample_check("iwae", 5, "cb")),
    Check("model", "K-sample ELBO K=5 mse", 94, k_sample_check("vae", 5, "mse")),
    Check("model", "K-sample ELBO K=3 bce/sigma, beta 0.4", 77, k_sample_check("vae", 3, "bce", "sigma", beta=0.4)),
    # The models that use labels: the conditional VAE (vae.py with classes), the classifier and M2.
    Check("model", "conditional VAE bce/logvar, 3 classes", 95, vae_check(mlp(classes=3))),
    Check("model", "conditional VAE mse/sigma, beta 0.5", 96, vae_check(mlp("mse", "sigma", classes=3, beta=0.5))),
    Check("model", "conditional VAE cb/logvar tanh", 80, vae_check(mlp("cb", activation="tanh", classes=4))),
    Check("model", "classifier 6-5-4, cross-entropy", 81, classifier_check()),
    Check("model", "M2 labelled loss", 97, m2_check(n_unlabelled=0)),
    Check("model", "M2 unlabelled loss", 98, m2_check(n_labelled=0)),
    Check("model", "M2 labelled + unlabelled", 99, m2_check()),
]
