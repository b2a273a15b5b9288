"""The conditional VAE: q(z|x,y) and p(x|z,y), with the class y shown to both the encoder and the decoder.

    x (B, D), y (B,) -> [x, onehot(y)] (B, D+K) --encoder--> h --heads--> mu, logvar --sampler--> z (B, L)
                        [z, onehot(y)] (B, L+K) --decoder--> logits (B, D)
    loss = mean_b [ recon(logits_b, x_b) + beta * KL(q(z|x_b,y_b) || N(0, I)) ]    (-ELBO of log p(x|y))

Because the decoder is told the class, z no longer has to encode it: z keeps the *style* (slant, thickness,
size), and decoding one z with each y draws the same style in every class (plots_labels.class_grid).

Joining y to a layer's input needs no new backward. The first Dense layer after the join has a weight matrix
(D+K, H) made of two blocks, and

    [x, y] @ W + b  =  x @ W[:D] + y @ W[D:] + b          W[:D] (D, H): the usual weights;  W[D:] (K, H)

With y one-hot, y @ W[D:] is row y of the label block: each class adds a learned vector of its own to the
layer's pre-activations. Dense.backward on the joined input already gives both blocks' gradients,

    dW = [x, y].T @ dout = [x.T @ dout ; y.T @ dout]          d[x, y] = dout @ W.T = [dout @ W[:D].T, dout @ W[D:].T]

so the decoder's backward is the ordinary one: of d[z, y] we keep the first L columns, dz, and drop dy (y is
data, not something to learn). The encoder needs neither.

`weighted_step` is the general backward: it weights each example's -ELBO by a number of its own. `step` uses
1/B for all (the batch mean); the M2 model (m2.py) uses q(y|x) / B for the ten guesses at an unlabelled image.
"""

import math

from minivae import backend
from minivae.gaussian import LogvarGaussian
from minivae.layers import Dense, mlp, sigmoid
from minivae.losses import RECONSTRUCTIONS, gaussian_nll_constant
from minivae.vae import Loss, importance_weighted


def _flat(a):
    """(B, ...) -> (B, values per example), also for an empty batch (where reshape(0, -1) is ambiguous)."""
    return a.reshape(a.shape[0], math.prod(a.shape[1:]))


LIKELIHOODS = ("bce", "bce-prob", "mse")  # the decoders whose mean is sigmoid(out) or out itself


class CVAE:
    """A conditional VAE from an encoder and a decoder that take the one-hot class joined to their input.

    encoder: a layer from [x, onehot(y)] (B, D+K) to features h (B, features).
    decoder: a layer from [z, onehot(y)] (B, L+K) to logits (recon 'bce') or pixel means (B, D).
    latent: L; classes: K. recon and beta as in VAE; the posterior is N(mu, exp(logvar)).
    Labels y are integers (B,), on the host or the device.
    """

    def __init__(self, encoder, decoder, features, latent, classes, recon="bce", beta=1.0, head_init="lecun",
                 rng=None, dtype="float32"):
        if recon not in LIKELIHOODS:
            raise ValueError(f"the CVAE's reconstruction loss is one of {', '.join(LIKELIHOODS)}, not {recon!r}")
        self.encoder, self.decoder = encoder, decoder
        self.latent, self.classes, self.beta, self.recon_name, self.dtype = latent, classes, beta, recon, dtype
        self.mu_head = Dense(features, latent, init=head_init, rng=rng, dtype=dtype)
        self.logvar_head = Dense(features, latent, init=head_init, rng=rng, dtype=dtype)
        self.posterior = LogvarGaussian()
        self.recon_fn = RECONSTRUCTIONS[recon]
        parts = {"encoder": encoder, "mu": self.mu_head, "logvar": self.logvar_head, "decoder": decoder}
        self.params = {f"{p}.{k}": a for p, layer in parts.items() for k, a in layer.params.items()}
        self.grads = {f"{p}.{k}": a for p, layer in parts.items() for k, a in layer.grads.items()}

    # ---- forward pieces -------------------------------------------------------------------------------
    def join(self, a, y):
        """[a, onehot(y)]: a (B, n) and integer labels y (B,) -> (B, n + K), a's dtype."""
        xp = backend.xp
        onehot = backend.to_device(y)[:, None] == xp.arange(self.classes)
        return xp.concatenate([a, onehot.astype(a.dtype)], axis=1)

    def encode(self, x, y):
        """x (B, D), y (B,) -> (mu, logvar) of q(z|x,y), each (B, L)."""
        h = self.encoder.forward(self.join(_flat(x), y))
        return self.mu_head.forward(h), self.logvar_head.forward(h)

    def decoder_output(self, z, y):
        """z (B, L), y (B,) -> the decoder's output (B, D): logits for 'bce', pixel means otherwise."""
        return _flat(self.decoder.forward(self.join(z, y)))

    def decode(self, z, y):
        """z (B, L), y (B,) -> pixel means (B, D) in [0, 1]: images of class y in the style z."""
        out = self.decoder_output(z, y)
        return sigmoid(out) if self.recon_name == "bce" else out

    def reconstruct(self, x, y, sample=False, rng=None):
        """Encode x with its class y, decode the mean (or a sample of z): (B, D) pixel means. Passing
        another y to `decode(encode(x, y)[0], y_other)` instead moves x's style to another class."""
        mu, logvar = self.encode(x, y)
        return self.decode(self.posterior.sample(mu, logvar, rng=rng) if sample else mu, y)

    def sample(self, y, rng=None):
        """One new image of each class in y (n,): decode z ~ N(0, I) with y. Returns (n, D) pixel means."""
        rng = backend.rng if rng is None else rng
        return self.decode(backend.to_device(rng.standard_normal((len(y), self.latent), dtype=self.dtype)), y)

    # ---- the loss -------------------------------------------------------------------------------------
    def per_example_losses(self, x, y, eps=None, rng=None):
        """Each example's reconstruction loss and KL, two (B,) arrays, with one sample of z. No gradients."""
        mu, logvar = self.encode(x, y)
        z = self.posterior.sample(mu, logvar, eps, rng)
        recon, _ = self.recon_fn(self.decoder_output(z, y), _flat(x), grad=False)
        kl, _, _ = self.posterior.kl(mu, logvar)
        return recon, kl

    def weighted_step(self, x, y, weights, eps=None, rng=None):
        """Forward, then the backward of  sum_b weights_b * (recon_b + beta * kl_b)  into `grads`.

        x (B, D), y (B,), weights (B,) on the device; eps (B, L) fixes the sampler's noise.
        Returns (recon, kl), each example's terms, (B,).
        """
        x_flat = _flat(x)
        w = weights[:, None]  # (B, 1): scales each example's row of every gradient
        # forward
        mu, logvar = self.encode(x_flat, y)
        z = self.posterior.sample(mu, logvar, eps, rng)
        out = self.decoder.forward(self.join(z, y))
        recon, dout = self.recon_fn(_flat(out), x_flat)  # dout: d recon_b / d out_b, unweighted
        kl, dkl_dmu, dkl_dlogvar = self.posterior.kl(mu, logvar)
        # backward: example b's loss enters the total with weight w_b, so each of its gradients is w_b times
        dzy = self.decoder.backward((dout * w).reshape(out.shape))  # d[z, y] (B, L+K)
        dmu, dlogvar = self.posterior.backward(dzy[:, :self.latent])  # keep dz; y is data: drop dy
        dmu = dmu + self.beta * w * dkl_dmu
        dlogvar = dlogvar + self.beta * w * dkl_dlogvar
        dh = self.mu_head.backward(dmu)
        dh += self.logvar_head.backward(dlogvar)
        self.encoder.backward(dh, need_dx=False)
        return recon, kl

    def step(self, x, y, eps=None, rng=None):
        """Forward and backward on a labelled batch x (B, D), y (B,): fills `grads`, returns the Loss (means)."""
        weights = backend.xp.full(len(x), 1.0 / len(x), dtype=x.dtype)
        recon, kl = self.weighted_step(x, y, weights, eps, rng)
        recon_mean, kl_mean = float(recon.mean()), float(kl.mean())
        return Loss(recon_mean + self.beta * kl_mean, recon_mean, kl_mean)

    # ---- evaluation -----------------------------------------------------------------------------------
    def log_likelihood(self, x, y, k=100, rng=None):
        """Importance-weighted estimate of log p(x|y) with k samples, (B,) in nats (see VAE.log_likelihood):

            log p(x|y) ~= log (1/k) sum_i p(x|z_i,y) p(z_i) / q(z_i|x,y),   z_i ~ q(z|x,y)
        """
        x_flat = _flat(x)
        mu, logvar = self.encode(x_flat, y)
        constant = gaussian_nll_constant(x_flat.shape[1]) if self.recon_name == "mse" else 0.0  # a true density

        def nll_of(z):
            return self.recon_fn(self.decoder_output(z, y), x_flat, grad=False)[0] + constant

        return importance_weighted(self.posterior, mu, logvar, nll_of, k, rng)

    def __repr__(self):
        return (f"CVAE(encoder={self.encoder!r}, heads=Dense({self.mu_head.in_dim}, {self.latent}) x2 [mu, logvar], "
                f"decoder={self.decoder!r}, classes={self.classes}, recon={self.recon_name!r}, beta={self.beta})")


def mlp_cvae(input_dim=784, hidden=(500,), latent=20, classes=10, activation="relu", recon="bce", beta=1.0,
             decoder_hidden=None, init=None, rng=None, dtype="float32"):
    """The MLP CVAE: encoder (input_dim + K) -> hidden..., decoder (latent + K) -> decoder_hidden... -> input_dim.

    Arguments as in vae.mlp_vae, plus classes = K, the size of the one-hot label joined to both inputs.
    """
    hidden = tuple(hidden)
    if not hidden:
        raise ValueError("an MLP CVAE needs at least one hidden layer, e.g. hidden=(500,)")
    decoder_hidden = tuple(reversed(hidden)) if decoder_hidden is None else tuple(decoder_hidden)
    out_activation = None if recon == "bce" else "sigmoid"
    encoder = mlp([input_dim + classes, *hidden], activation, activation, init, rng, dtype)
    decoder = mlp([latent + classes, *decoder_hidden, input_dim], activation, out_activation, init, rng, dtype)
    return CVAE(encoder, decoder, features=hidden[-1], latent=latent, classes=classes, recon=recon, beta=beta,
                head_init="lecun" if init is None else init, rng=rng, dtype=dtype)


# ---- the gradient check: one row of `python -m minivae.gradcheck` ----------------------------------------
def check_elbo(noise_aware=True, seed=0, batch=5, hidden=(6,), latent=2, classes=3, recon="bce", beta=1.0):
    """Relative error of every parameter's gradient of a tiny float64 CVAE's loss: {name: error}.

    x (batch, 9) in [0, 1], fixed noise eps, everything drawn from default_rng(seed) on the host and copied to
    the backend in use.
    """
    import numpy as np

    from minivae.gradcheck import compare

    rng = np.random.default_rng(seed)
    model = mlp_cvae(input_dim=9, hidden=hidden, latent=latent, classes=classes, recon=recon, beta=beta, rng=rng,
                     dtype="float64")
    for name, param in model.params.items():  # biases off 0, so that no ReLU sits on its kink
        if name.endswith(".b"):
            param += backend.to_device(rng.uniform(0.05, 0.2, param.shape))
    x = backend.to_device(rng.uniform(0, 1, (batch, 9)))
    y = backend.to_device(rng.integers(0, classes, batch))
    eps = backend.to_device(rng.standard_normal((batch, latent)))
    model.step(x, y, eps=eps)
    analytic = {name: g.copy() for name, g in model.grads.items()}

    def loss():
        recon_, kl = model.per_example_losses(x, y, eps=eps)
        return float((recon_ + model.beta * kl).mean())

    return {name: compare(analytic[name], loss, p, noise_aware=noise_aware) for name, p in model.params.items()}
