"""The variational autoencoder: encoder, Gaussian posterior, decoder, and the loss that ties them.

One batch, forward then backward (the same path in reverse):

    x (B, D) --encoder--> h --mu head-----> mu (B, L) ---\\
                            --second head-> logvar or sigma  --sampler--> z --decoder--> out (B, D)
    loss = mean_b [ recon(out_b, x_b) + beta * KL(q(z|x_b) || N(0, I)) ]     (nats per example)

`step(x)` runs both passes and leaves every gradient in `grads`, under the same names as `params`
('encoder.0.W', 'mu.b', 'decoder.2.W', ...). The optimizer then updates `params` in place.
Without hidden layers given, the defaults build the classic 784-400-20 ReLU MLP VAE with a Bernoulli decoder.
"""

from typing import NamedTuple

from minivae import backend
from minivae.gaussian import POSTERIORS, log_prior
from minivae.layers import Dense, mlp, sigmoid
from minivae.losses import RECONSTRUCTIONS, gaussian_nll_constant


class Loss(NamedTuple):
    """Batch means in nats per example: loss = recon + beta * kl."""

    loss: float
    recon: float
    kl: float


class VAE:
    """An MLP VAE, or any encoder/decoder pair given as Sequentials (see conv.py for the convnet).

    input_dim: D, pixels per example (inputs are flat (B, D) arrays).
    hidden: encoder hidden sizes, e.g. (400,); decoder_hidden: the decoder's, default reversed(hidden).
    latent: L, the size of z.  activation: 'relu' | 'tanh' | 'sigmoid' for hidden layers.
    posterior: 'logvar' (encoder outputs log sigma^2) or 'sigma' (outputs sigma, tutorial 001).
    recon: 'bce' (Bernoulli on logits, stable), 'bce-prob' (Bernoulli on sigmoid outputs, Keras form) or
           'mse' (sum of squared errors on sigmoid outputs, tutorial 001).
    beta: weight of the KL term (1 = the ELBO).  init: Dense initialisation ('he', 'glorot', a std, or None
    for He before ReLU and Glorot elsewhere).  dtype: float32 to train, float64 for gradient checks.
    encoder, decoder, encoder_dim: a custom encoder ending in encoder_dim features, and a decoder from
    (B, L) to outputs with D values per example (any shape: they are flattened for the loss).
    """

    def __init__(self, input_dim=784, hidden=(400,), latent=20, activation="relu", posterior="logvar",
                 recon="bce", beta=1.0, decoder_hidden=None, init=None, rng=None, dtype="float32",
                 encoder=None, decoder=None, encoder_dim=None):
        if posterior not in POSTERIORS:
            raise ValueError(f"unknown posterior {posterior!r}; choose one of {', '.join(POSTERIORS)}")
        if recon not in RECONSTRUCTIONS:
            raise ValueError(f"unknown reconstruction loss {recon!r}; choose one of {', '.join(RECONSTRUCTIONS)}")
        hidden = tuple(hidden)
        decoder_hidden = tuple(reversed(hidden)) if decoder_hidden is None else tuple(decoder_hidden)
        self.input_dim, self.latent, self.beta, self.recon_name, self.dtype = input_dim, latent, beta, recon, dtype
        # The Bernoulli-on-logits loss takes raw logits; the other two take sigmoid outputs in [0, 1].
        out_activation = None if recon == "bce" else "sigmoid"
        if encoder is None:
            encoder = mlp([input_dim, *hidden], activation, activation, init, rng, dtype)
            encoder_dim = hidden[-1] if hidden else input_dim
        if decoder is None:
            decoder = mlp([latent, *decoder_hidden, input_dim], activation, out_activation, init, rng, dtype)
        self.encoder, self.decoder = encoder, decoder
        head_init = "glorot" if init is None else init
        self.mu_head = Dense(encoder_dim, latent, init=head_init, rng=rng, dtype=dtype)
        self.second_head = Dense(encoder_dim, latent, init=head_init, rng=rng, dtype=dtype)
        self.posterior = POSTERIORS[posterior]()
        self.recon_fn = RECONSTRUCTIONS[recon]
        # Every parameter and its gradient by name: the same arrays the layers hold, not copies.
        parts = {"encoder": encoder, "mu": self.mu_head, posterior: self.second_head, "decoder": decoder}
        self.params = {f"{p}.{k}": a for p, layer in parts.items() for k, a in layer.params.items()}
        self.grads = {f"{p}.{k}": a for p, layer in parts.items() for k, a in layer.grads.items()}

    # ---- forward pieces -------------------------------------------------------------------------------
    def encode(self, x):
        """x (B, D) -> (mu, logvar) or (mu, sigma), each (B, L)."""
        h = self.encoder.forward(x)
        return self.mu_head.forward(h), self.second_head.forward(h)

    def decode_raw(self, z):
        """z (B, L) -> decoder outputs flattened to (B, D): logits for 'bce', pixel means otherwise."""
        out = self.decoder.forward(z)
        return out.reshape(len(out), -1)

    def decode(self, z):
        """z (B, L) -> pixel means (B, D) in [0, 1]."""
        out = self.decode_raw(z)
        if self.recon_name == "bce":
            return sigmoid(out)
        return out

    def reconstruct(self, x, sample=False, rng=None):
        """Decode the posterior mean (or a sample of z when sample=True): (B, D) pixel means."""
        mu, second = self.encode(x)
        return self.decode(self.posterior.sample(mu, second, rng=rng) if sample else mu)

    def sample(self, n, rng=None):
        """n new images: decode z ~ N(0, I). Returns (n, D) pixel means."""
        rng = backend.rng if rng is None else rng
        return self.decode(backend.to_device(rng.standard_normal((n, self.latent), dtype=self.dtype)))

    # ---- the loss -------------------------------------------------------------------------------------
    def losses(self, x, eps=None, rng=None):
        """Per-example reconstruction and KL, each (B,), with one sample of z. No gradients."""
        mu, second = self.encode(x)
        z = self.posterior.sample(mu, second, eps, rng)
        recon, _ = self.recon_fn(self.decode_raw(z), x.reshape(len(x), -1), grad=False)
        kl, _, _ = self.posterior.kl(mu, second)
        return recon, kl

    def step(self, x, eps=None, rng=None):
        """Forward and backward on a batch x (B, D): fills `grads`, returns the Loss (batch means).

        eps (B, L) fixes the noise of the sampler so that a step can be replayed (gradient checks do).
        """
        n = len(x)
        # forward
        mu, second = self.encode(x)
        z = self.posterior.sample(mu, second, eps, rng)
        out = self.decoder.forward(z)
        recon, dout = self.recon_fn(out.reshape(n, -1), x.reshape(n, -1), scale=1.0 / n)
        kl, dkl_dmu, dkl_dsecond = self.posterior.kl(mu, second)
        # backward: loss = mean(recon) + beta * mean(kl); dout already carries the 1/B of the mean
        dz = self.decoder.backward(dout.reshape(out.shape))
        dmu, dsecond = self.posterior.backward(dz)  # the reconstruction's path through z
        weight = self.beta / n
        dmu = dmu + weight * dkl_dmu  # plus the KL's direct path
        dsecond = dsecond + weight * dkl_dsecond
        has_encoder = bool(self.encoder.layers)
        dh = self.mu_head.backward(dmu, need_dx=has_encoder)
        if has_encoder:
            dh += self.second_head.backward(dsecond)  # h feeds both heads: their gradients add
            self.encoder.backward(dh, need_dx=False)
        else:
            self.second_head.backward(dsecond, need_dx=False)
        recon_mean, kl_mean = float(recon.mean()), float(kl.mean())
        return Loss(recon_mean + self.beta * kl_mean, recon_mean, kl_mean)

    # ---- evaluation -----------------------------------------------------------------------------------
    def log_likelihood(self, x, k=100, rng=None):
        """Importance-weighted estimate of log p(x) with k samples (Burda et al.), (B,) in nats:

            log p(x) ~= log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x),   z_i ~ q(z|x)

        A lower bound that tightens as k grows (k = 1 is the ELBO). The log-mean-exp subtracts the largest
        log-weight first, so it stays finite in float32 although the weights themselves are e^-100 and less.
        """
        xp = backend.xp
        n = len(x)
        x_flat = x.reshape(n, -1)
        mu, second = self.encode(x)
        log_w = xp.empty((k, n), dtype=mu.dtype)
        for i in range(k):
            z = self.posterior.sample(mu, second, rng=rng)
            nll, _ = self.recon_fn(self.decode_raw(z), x_flat, grad=False)
            if self.recon_name == "mse":
                nll = nll + gaussian_nll_constant(x_flat.shape[1])
            log_w[i] = -nll + log_prior(z) - self.posterior.log_q(z, mu, second)
        top = log_w.max(axis=0)
        return top + xp.log(xp.exp(log_w - top).mean(axis=0))

    def __repr__(self):
        return (f"VAE(encoder={self.encoder!r}, heads=Dense({self.mu_head.in_dim}, {self.latent}) x2 "
                f"[{self.posterior.second}], decoder={self.decoder!r}, recon={self.recon_name!r}, beta={self.beta})")


def count_params(model):
    """The number of trainable numbers in a model."""
    return sum(int(a.size) for a in model.params.values())
