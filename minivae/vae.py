"""The variational autoencoder: encoder, Gaussian posterior, decoder, and the loss that ties them.

One batch, forward then backward (the same path in reverse):

    x (B, D) --encoder--> h --mu head-----> mu (B, L) ---\\
                            --scale head-> logvar or sigma  --sampler--> z --decoder--> out (B, D)
    loss = mean_b [ recon(out_b, x_b) + beta * KL(q(z|x_b) || N(0, I)) ]     (nats per example)

`step(x)` runs both passes and leaves every gradient in `grads`, under the same names as `params`
('encoder.0.W', 'mu.b', 'decoder.2.W', ...). The optimizer then updates `params` in place.
`mlp_vae()` builds the classic 784-400-20 ReLU MLP VAE with a Bernoulli decoder; convvae.py builds the convnet.
"""

from typing import NamedTuple

from minivae import backend, continuous_bernoulli
from minivae.gaussian import POSTERIORS, log_prior
from minivae.layers import Dense, mlp, sigmoid
from minivae.losses import LOGIT_RECONSTRUCTIONS, RECONSTRUCTIONS, gaussian_nll_constant


class Loss(NamedTuple):
    """Batch means in nats per example: loss = recon + beta * kl (for the IWAE objective, iwae.py, loss is its
    tighter bound and recon, kl the ELBO's terms)."""

    loss: float
    recon: float
    kl: float


class VAE:
    """A VAE from an encoder and a decoder: the model adds the two heads, the sampler and the loss.

    encoder: a layer (usually a Sequential) from x (B, D) to features h (B, features).
    decoder: a layer from z (B, latent) to the decoder's output, D values per example (any shape: flattened
             for the loss): logits for recon 'bce', pixel means in [0, 1] (after a Sigmoid) otherwise.
    latent: L, the size of z.
    posterior: 'logvar' (the second head outputs log sigma^2) or 'sigma' (it outputs sigma, tutorial 001);
               `scale` below names that second output, whichever it is.
    recon: 'bce' (Bernoulli on logits, stable), 'bce-prob' (Bernoulli on sigmoid outputs, Keras form),
           'mse' (sum of squared errors on sigmoid outputs, tutorial 001) or 'cb' (continuous Bernoulli on
           logits, a true density for grayscale pixels: continuous_bernoulli.py).
    beta: weight of the KL term (1 = the ELBO).  head_init: the heads' initialisation (layers.init_weights).
    dtype: float32 to train, float64 for gradient checks.

    `mlp_vae` below builds the classic MLP VAE; convvae.py builds tutorial 003's convnet; presets.build_model
    builds either from a config.
    """

    def __init__(self, encoder, decoder, features, latent, posterior="logvar", recon="bce", beta=1.0,
                 head_init="lecun", rng=None, dtype="float32"):
        if posterior not in POSTERIORS:
            raise ValueError(f"unknown posterior {posterior!r}; choose one of {', '.join(POSTERIORS)}")
        if recon not in RECONSTRUCTIONS:
            raise ValueError(f"unknown reconstruction loss {recon!r}; choose one of {', '.join(RECONSTRUCTIONS)}")
        self.encoder, self.decoder = encoder, decoder
        self.latent, self.beta, self.recon_name, self.dtype = latent, beta, recon, dtype
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
    def encode(self, x):
        """x (B, D) -> (mu, scale), each (B, L); scale is logvar or sigma, as the posterior says."""
        h = self.encoder.forward(x)
        return self.mu_head.forward(h), self.scale_head.forward(h)

    def decoder_output(self, z):
        """z (B, L) -> the decoder's output flattened to (B, D): logits for 'bce' and 'cb', pixel means otherwise."""
        out = self.decoder.forward(z)
        return out.reshape(len(out), -1)

    def decode(self, z):
        """z (B, L) -> pixel means (B, D) in [0, 1]: E[x|z] under the decoder's likelihood. For the continuous
        Bernoulli that is not sigmoid(logits) (continuous_bernoulli.mean)."""
        out = self.decoder_output(z)
        if self.recon_name == "bce":
            return sigmoid(out)
        if self.recon_name == "cb":
            return continuous_bernoulli.mean(out)
        return out

    def reconstruct(self, x, sample=False, rng=None):
        """Decode the posterior mean (or a sample of z when sample=True): (B, D) pixel means."""
        mu, scale = self.encode(x)
        return self.decode(self.posterior.sample(mu, scale, rng=rng) if sample else mu)

    def sample(self, n, rng=None):
        """n new images: decode z ~ N(0, I). Returns (n, D) pixel means."""
        rng = backend.rng if rng is None else rng
        return self.decode(backend.to_device(rng.standard_normal((n, self.latent), dtype=self.dtype)))

    # ---- the loss -------------------------------------------------------------------------------------
    def per_example_losses(self, x, eps=None, rng=None):
        """Each example's reconstruction loss and KL, two (B,) arrays, with one sample of z. No gradients."""
        mu, scale = self.encode(x)
        z = self.posterior.sample(mu, scale, eps, rng)
        recon, _ = self.recon_fn(self.decoder_output(z), x.reshape(len(x), -1), grad=False)
        kl, _, _ = self.posterior.kl(mu, scale)
        return recon, kl

    def step(self, x, eps=None, rng=None):
        """Forward and backward on a batch x (B, D): fills `grads`, returns the Loss (batch means).

        eps (B, L) fixes the noise of the sampler so that a step can be replayed (gradient checks do).
        """
        n = len(x)
        # forward
        mu, scale = self.encode(x)
        z = self.posterior.sample(mu, scale, eps, rng)
        out = self.decoder.forward(z)
        recon, dout = self.recon_fn(out.reshape(n, -1), x.reshape(n, -1), scale=1.0 / n)
        kl, dkl_dmu, dkl_dscale = self.posterior.kl(mu, scale)
        # backward: loss = mean(recon) + beta * mean(kl); dout already carries the 1/B of the mean
        dz = self.decoder.backward(dout.reshape(out.shape))
        dmu, dscale = self.posterior.backward(dz)  # the reconstruction's path through z
        weight = self.beta / n
        dmu = dmu + weight * dkl_dmu  # plus the KL's direct path
        dscale = dscale + weight * dkl_dscale
        dh = self.mu_head.backward(dmu)
        dh += self.scale_head.backward(dscale)  # h feeds both heads: their gradients add
        self.encoder.backward(dh, need_dx=False)  # nobody needs dL/dx
        recon_mean, kl_mean = float(recon.mean()), float(kl.mean())
        return Loss(recon_mean + self.beta * kl_mean, recon_mean, kl_mean)

    # ---- evaluation -----------------------------------------------------------------------------------
    def log_likelihood(self, x, k=100, rng=None):
        """Importance-weighted estimate of log p(x) with k samples (Burda et al.), (B,) in nats:

            log p(x) ~= log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x),   z_i ~ q(z|x)

        A lower bound that tightens as k grows (k = 1 is the ELBO); `importance_weighted` below computes it.
        """
        x_flat = x.reshape(len(x), -1)
        mu, scale = self.encode(x)
        constant = gaussian_nll_constant(x_flat.shape[1]) if self.recon_name == "mse" else 0.0  # a true density

        def nll_of(z):
            return self.recon_fn(self.decoder_output(z), x_flat, grad=False)[0] + constant

        return importance_weighted(self.posterior, mu, scale, nll_of, k, rng)

    def __repr__(self):
        heads = f"Dense({self.mu_head.in_dim}, {self.latent}) x2 [mu, {self.posterior.scale_name}]"
        return (f"VAE(encoder={self.encoder!r}, heads={heads}, decoder={self.decoder!r}, "
                f"recon={self.recon_name!r}, beta={self.beta})")


def count_params(model):
    """The number of trainable numbers in a model."""
    return sum(int(a.size) for a in model.params.values())


def importance_weighted(posterior, mu, scale, nll_of, k, rng=None):
    """log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x) = posterior(mu, scale): (B,) in nats.

    nll_of(z) gives -log p(x|z) per example, (B,): the decoder's part, all that differs between models (the
    CVAE's also conditions on y). The log-mean-exp subtracts the largest log-weight first, so it stays finite
    in float32 although the weights themselves are e^-100 and less.
    """
    xp = backend.xp
    log_w = xp.empty((k, len(mu)), dtype=mu.dtype)
    for i in range(k):
        z = posterior.sample(mu, scale, rng=rng)
        log_w[i] = -nll_of(z) + log_prior(z) - posterior.log_q(z, mu, scale)
    top = log_w.max(axis=0)
    return top + xp.log(xp.exp(log_w - top).mean(axis=0))


def mlp_vae(input_dim=784, hidden=(400,), latent=20, activation="relu", posterior="logvar", recon="bce",
            beta=1.0, decoder_hidden=None, init=None, rng=None, dtype="float32"):
    """The MLP VAE: encoder input_dim -> hidden..., decoder latent -> decoder_hidden... -> input_dim.

    hidden: the encoder's hidden sizes, at least one, e.g. (400,); decoder_hidden: the decoder's, by default
    reversed(hidden). activation: 'relu' | 'tanh' | 'sigmoid' after every hidden layer. The decoder's last
    layer has no activation for recon 'bce' and 'cb' (their losses take logits) and a sigmoid otherwise.
    init: every Dense's initialisation ('he', 'lecun', 'uniform' or a standard deviation); None picks He before
    a ReLU and LeCun-normal elsewhere (the heads included). The defaults build the classic 784-400-20 model.
    """
    hidden = tuple(hidden)
    if not hidden:
        raise ValueError("an MLP VAE needs at least one hidden layer, e.g. hidden=(400,)")
    decoder_hidden = tuple(reversed(hidden)) if decoder_hidden is None else tuple(decoder_hidden)
    out_activation = None if recon in LOGIT_RECONSTRUCTIONS else "sigmoid"
    # Built in this order (encoder, decoder, then the VAE's heads), so a seed always gives the same weights.
    encoder = mlp([input_dim, *hidden], activation, activation, init, rng, dtype)
    decoder = mlp([latent, *decoder_hidden, input_dim], activation, out_activation, init, rng, dtype)
    return VAE(encoder, decoder, features=hidden[-1], latent=latent, posterior=posterior, recon=recon, beta=beta,
               head_init="lecun" if init is None else init, rng=rng, dtype=dtype)
