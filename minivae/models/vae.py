"""The variational autoencoder: encoder, Gaussian posterior, decoder, and the loss that ties them.

One batch, forward then backward (the same path in reverse):

    x (B, D) --encoder--> h --mu head-----> mu (B, L) ---\\
                            --scale head-> logvar or sigma  --sampler--> z --decoder--> out (B, D)
    loss = mean_b [ recon(out_b, x_b) + beta * KL(q(z|x_b) || N(0, I)) ]     (nats per example)

`step(x)` runs both passes and leaves every gradient in `grads`, under the same names as `params`
('encoder.0.W', 'mu.b', 'decoder.2.W', ...). The optimizer then updates `params` in place.
`mlp_vae()` builds the classic 784-400-20 ReLU MLP VAE with a Bernoulli decoder; convnet.py builds the convnet.
The sampler, the Bernoulli losses and the MLPs' ReLU come from the fast twins (core/gaussian_fast.py, losses_fast,
layers_fast): on NumPy they are the plain formulas of gaussian.py, losses.py and layers.py, on CuPy each chain of
elementwise passes is one fused kernel (core/kernels.py).

Conditioned on a class. With `classes=K`, the VAE is a conditional VAE (Kingma et al. 2014): the one-hot class y
is joined to the encoder's input and to the decoder's, q(z|x,y) and p(x|z,y), and its loss is the -ELBO of
log p(x|y). Because the decoder is told the class, z no longer has to encode it: z keeps the *style* (slant,
thickness, size), and decoding one z with each y draws the same style in every class. Every method then takes
the labels y (B,), integers on the host or the device. Joining y to a layer's input needs no new backward: the
first Dense layer after the join has a weight matrix (D+K, H) made of two blocks, and

    [x, y] @ W + b  =  x @ W[:D] + y @ W[D:] + b          W[:D] (D, H): the usual weights;  W[D:] (K, H)

With y one-hot, y @ W[D:] is row y of the label block: each class adds a learned vector of its own to the
layer's pre-activations. Dense.backward on the joined input already gives both blocks' gradients,

    dW = [x, y].T @ dout = [x.T @ dout ; y.T @ dout]          d[x, y] = dout @ W.T = [dout @ W[:D].T, dout @ W[D:].T]

so the decoder's backward is the ordinary one: of d[z, y] we keep the first L columns, dz, and drop dy (y is
data, not something to learn). The encoder needs neither.
"""

import math
import numbers
from typing import NamedTuple

from minivae.core import backend, continuous_bernoulli
from minivae.core.gaussian import log_prior
from minivae.core.gaussian_fast import POSTERIORS
from minivae.core.layers import Dense, mlp, sigmoid
from minivae.core.layers_fast import ACTIVATIONS as FAST_ACTIVATIONS
from minivae.core.losses import LOGIT_RECONSTRUCTIONS, gaussian_nll_constant
from minivae.core.losses_fast import RECONSTRUCTIONS


class Loss(NamedTuple):
    """Batch means in nats per example: loss = recon + beta * kl (for the IWAE objective, iwae.py, loss is its
    tighter bound and recon, kl the ELBO's terms)."""

    loss: float
    recon: float
    kl: float


class VAE:
    """A VAE from an encoder and a decoder: the model adds the two heads, the sampler and the loss.

    encoder: a layer (usually a Sequential) from x (B, D) to features h (B, features); with classes, from the
             joined [x, onehot(y)] (B, D+K).
    decoder: a layer from z (B, latent) (with classes: [z, onehot(y)] (B, L+K)) to the decoder's output, D values
             per example (any shape: flattened for the loss): logits for recon 'bce' and 'cb', pixel means in
             [0, 1] (after a Sigmoid) otherwise.
    latent: L, the size of z.
    posterior: 'logvar' (the second head outputs log sigma^2) or 'sigma' (it outputs sigma, tutorial 001);
               `scale` below names that second output, whichever it is.
    recon: 'bce' (Bernoulli on logits, stable), 'bce-prob' (Bernoulli on sigmoid outputs, Keras form),
           'mse' (sum of squared errors on sigmoid outputs, tutorial 001) or 'cb' (continuous Bernoulli on
           logits, a true density for grayscale pixels: core/continuous_bernoulli.py).
    beta: weight of the KL term (1 = the ELBO).  classes: K > 0 conditions on a class (see above), 0 does not.
    head_init: the heads' initialisation (layers.init_weights).  dtype: float32 to train, float64 to check.

    `mlp_vae` below builds the MLP VAE; convnet.py builds tutorial 003's convnet.
    """

    def __init__(self, encoder, decoder, features, latent, posterior="logvar", recon="bce", beta=1.0, classes=0,
                 head_init="lecun", rng=None, dtype="float32"):
        if posterior not in POSTERIORS:
            raise ValueError(f"unknown posterior {posterior!r}; choose one of {', '.join(POSTERIORS)}")
        if recon not in RECONSTRUCTIONS:
            raise ValueError(f"unknown reconstruction loss {recon!r}; choose one of {', '.join(RECONSTRUCTIONS)}")
        self.encoder, self.decoder = encoder, decoder
        self.latent, self.beta, self.recon_name, self.classes, self.dtype = latent, beta, recon, classes, dtype
        self.mu_head = Dense(features, latent, init=head_init, rng=rng, dtype=dtype)
        self.scale_head = Dense(features, latent, init=head_init, rng=rng, dtype=dtype)
        self.posterior = POSTERIORS[posterior]()
        self.recon_fn = RECONSTRUCTIONS[recon]
        # Every parameter and its gradient by name: the same arrays the layers hold, not copies. The second
        # head is named after what it outputs: 'logvar.W' or 'sigma.W'.
        parts = {"encoder": encoder, "mu": self.mu_head, posterior: self.scale_head, "decoder": decoder}
        self.params = {f"{p}.{k}": a for p, layer in parts.items() for k, a in layer.params.items()}
        self.grads = {f"{p}.{k}": a for p, layer in parts.items() for k, a in layer.grads.items()}

    # ---- forward pieces -------------------------------------------------------------------------------
    def with_class(self, a, y):
        """[a, onehot(y)] (B, n + K) for a (B, ...) flattened to (B, n) and labels y (B,): what the encoder and
        the decoder of a conditional VAE read. Without classes, a itself (y must be None)."""
        if not self.classes:
            if y is not None:
                raise ValueError("this VAE is not conditioned on a class (classes=0), but labels were given")
            return a
        if y is None:
            raise ValueError(f"this VAE is conditioned on one of {self.classes} classes: give the labels y")
        xp = backend.xp
        onehot = backend.to_device(y)[:, None] == xp.arange(self.classes)
        return xp.concatenate([_flat(a), onehot.astype(a.dtype)], axis=1)

    def encode(self, x, y=None):
        """x (B, D) (and y (B,)) -> (mu, scale), each (B, L); scale is logvar or sigma, as the posterior says."""
        h = self.encoder.forward(self.with_class(x, y))
        return self.mu_head.forward(h), self.scale_head.forward(h)

    def decoder_output(self, z, y=None):
        """z (B, L) (and y (B,)) -> the decoder's output flattened to (B, D): logits for 'bce' and 'cb', pixel
        means otherwise."""
        return _flat(self.decoder.forward(self.with_class(z, y)))

    def decode(self, z, y=None):
        """z (B, L) (and y (B,)) -> pixel means (B, D) in [0, 1]: E[x|z] under the decoder's likelihood. For the
        continuous Bernoulli that is not sigmoid(logits) (continuous_bernoulli.mean)."""
        out = self.decoder_output(z, y)
        if self.recon_name == "bce":
            return sigmoid(out)
        if self.recon_name == "cb":
            return continuous_bernoulli.mean(out)
        return out

    def reconstruct(self, x, y=None, sample=False, rng=None):
        """Decode the posterior mean (or a sample of z when sample=True): (B, D) pixel means. With classes,
        decode(encode(x, y)[0], y_other) moves x's style to another class."""
        mu, scale = self.encode(x, y)
        return self.decode(self.posterior.sample(mu, scale, rng=rng) if sample else mu, y)

    def sample(self, n, rng=None, y=None):
        """n new images: decode z ~ N(0, I) (with classes: as the n labels y). Returns (n, D) pixel means."""
        rng = backend.rng if rng is None else rng
        return self.decode(backend.to_device(rng.standard_normal((n, self.latent), dtype=self.dtype)), y)

    # ---- the loss -------------------------------------------------------------------------------------
    def per_example_losses(self, x, y=None, eps=None, rng=None):
        """Each example's reconstruction loss and KL, two (B,) arrays, with one sample of z. No gradients."""
        mu, scale = self.encode(x, y)
        z = self.posterior.sample(mu, scale, eps, rng)
        recon, _ = self.recon_fn(self.decoder_output(z, y), _flat(x), grad=False)
        kl, _, _ = self.posterior.kl(mu, scale)
        return recon, kl

    def step(self, x, y=None, eps=None, rng=None):
        """Forward and backward on a batch x (B, D) (and y (B,)): fills `grads`, returns the Loss (batch means).

        eps (B, L) fixes the noise of the sampler so that a step can be replayed (gradient checks do).
        """
        recon, kl = self.weighted_step(x, 1.0 / len(x), y, eps, rng)
        recon_mean, kl_mean = float(recon.mean()), float(kl.mean())
        return Loss(recon_mean + self.beta * kl_mean, recon_mean, kl_mean)

    def weighted_step(self, x, weights, y=None, eps=None, rng=None):
        """Forward, then the backward of  sum_b weights_b * (recon_b + beta * kl_b)  into `grads`.

        weights: one number for every example (step's 1/B: the batch mean), or (B,) on the device, a weight
        for each (M2 weighs its guesses at an unlabelled image's class by q(y|x), m2.py). x (B, D), y (B,),
        eps (B, L). Returns (recon, kl), each example's terms, (B,).
        """
        # forward
        mu, scale = self.encode(x, y)
        z = self.posterior.sample(mu, scale, eps, rng)
        out = self.decoder.forward(self.with_class(z, y))
        if isinstance(weights, numbers.Real):  # one weight for all: the loss scales dout itself, in place
            w = weights
            recon, dout = self.recon_fn(_flat(out), _flat(x), scale=w)
        else:
            w = weights[:, None]  # (B, 1): scales each example's row of every gradient
            recon, dout = self.recon_fn(_flat(out), _flat(x))
            dout *= w
        kl, dkl_dmu, dkl_dscale = self.posterior.kl(mu, scale)
        # backward: example b's loss enters the total with weight w_b, so each of its gradients is w_b times
        dz = self.decoder.backward(dout.reshape(out.shape))[:, :self.latent]  # of d[z, y], keep dz: y is data
        dmu, dscale = self.posterior.backward(dz)  # the reconstruction's path through z
        kl_weight = self.beta * w
        dmu = dmu + kl_weight * dkl_dmu  # plus the KL's direct path
        dscale = dscale + kl_weight * dkl_dscale
        self.backward_heads(dmu, dscale)
        return recon, kl

    def backward_heads(self, dmu, dscale):
        """The backward of the two heads and the encoder, from dL/dmu and dL/dscale (B, L): h feeds both heads, so
        their gradients add; the encoder needs no dL/dx (nobody uses it)."""
        dh = self.mu_head.backward(dmu)
        dh += self.scale_head.backward(dscale)
        self.encoder.backward(dh, need_dx=False)

    # ---- evaluation -----------------------------------------------------------------------------------
    def log_likelihood(self, x, y=None, k=100, rng=None):
        """Importance-weighted estimate of log p(x) (with classes: log p(x|y)) with k samples (Burda et al.),
        (B,) in nats:

            log p(x) ~= log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x),   z_i ~ q(z|x)

        A lower bound that tightens as k grows (k = 1 is the ELBO); `importance_weighted` below computes it.
        """
        x_flat = _flat(x)
        mu, scale = self.encode(x, y)
        constant = gaussian_nll_constant(x_flat.shape[1]) if self.recon_name == "mse" else 0.0  # a true density

        def nll_of(z):
            return self.recon_fn(self.decoder_output(z, y), x_flat, grad=False)[0] + constant

        return importance_weighted(self.posterior, mu, scale, nll_of, k, rng)

    def __repr__(self):
        heads = f"Dense({self.mu_head.in_dim}, {self.latent}) x2 [mu, {self.posterior.scale_name}]"
        classes = f", classes={self.classes}" if self.classes else ""
        return (f"VAE(encoder={self.encoder!r}, heads={heads}, decoder={self.decoder!r}, "
                f"recon={self.recon_name!r}, beta={self.beta}{classes})")


def _flat(a):
    """(B, ...) -> (B, values per example), also for an empty batch (where reshape(0, -1) is ambiguous)."""
    return a.reshape(a.shape[0], math.prod(a.shape[1:]))


def count_params(model):
    """The number of trainable numbers in a model."""
    return sum(int(a.size) for a in model.params.values())


def log_mean_exp(log_w):
    """log (1/K) sum_i exp(log_w[i]) over the first axis, (K, B) -> (B,), and the normalised weights
    exp(log_w) / sum_i exp(log_w[i]) (K, B). The largest log-weight m is subtracted first, so that every exponent
    is <= 0: no overflow, and the sum is >= 1 (log-weights are e^-100 and less in float32)."""
    xp = backend.xp
    top = log_w.max(axis=0)
    w = xp.exp(log_w - top)
    total = w.sum(axis=0)
    return top + xp.log(total / len(log_w)), w / total


def importance_weighted(posterior, mu, scale, nll_of, k, rng=None):
    """log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x) = posterior(mu, scale): (B,) in nats.

    nll_of(z) gives -log p(x|z) per example, (B,): the decoder's part.
    """
    log_w = backend.xp.empty((k, len(mu)), dtype=mu.dtype)
    for i in range(k):
        z = posterior.sample(mu, scale, rng=rng)
        log_w[i] = -nll_of(z) + log_prior(z) - posterior.log_q(z, mu, scale)
    return log_mean_exp(log_w)[0]


def mlp_vae(input_dim=784, hidden=(400,), latent=20, activation="relu", posterior="logvar", recon="bce",
            beta=1.0, decoder_hidden=None, classes=0, init=None, rng=None, dtype="float32"):
    """The MLP VAE: encoder input_dim (+ K) -> hidden..., decoder latent (+ K) -> decoder_hidden... -> input_dim.

    hidden: the encoder's hidden sizes, at least one, e.g. (400,); decoder_hidden: the decoder's, by default
    reversed(hidden). activation: 'relu' | 'tanh' | 'sigmoid' after every hidden layer. The decoder's last
    layer has no activation for recon 'bce' and 'cb' (their losses take logits) and a sigmoid otherwise.
    classes: K > 0 builds a conditional VAE, the one-hot class joined to both inputs.
    init: every Dense's initialisation ('he', 'lecun', 'uniform' or a standard deviation); None picks He before
    a ReLU and LeCun-normal elsewhere (the heads included). The defaults build the classic 784-400-20 model.
    """
    hidden = tuple(hidden)
    if not hidden:
        raise ValueError("an MLP VAE needs at least one hidden layer, e.g. hidden=(400,)")
    decoder_hidden = tuple(reversed(hidden)) if decoder_hidden is None else tuple(decoder_hidden)
    out_activation = None if recon in LOGIT_RECONSTRUCTIONS else "sigmoid"
    # Built in this order (encoder, decoder, then the VAE's heads), so a seed always gives the same weights.
    encoder = mlp([input_dim + classes, *hidden], activation, activation, init, rng, dtype, FAST_ACTIVATIONS)
    decoder = mlp([latent + classes, *decoder_hidden, input_dim], activation, out_activation, init, rng, dtype,
                  FAST_ACTIVATIONS)
    return VAE(encoder, decoder, features=hidden[-1], latent=latent, posterior=posterior, recon=recon, beta=beta,
               classes=classes, head_init="lecun" if init is None else init, rng=rng, dtype=dtype)
