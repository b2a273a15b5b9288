"""Training on K samples of z per example: the K-sample ELBO, and the importance-weighted bound (IWAE).

Burda, Grosse and Salakhutdinov (2015). With K samples z_i ~ q(z|x) and the importance weights

    w_i = p(x|z_i) p(z_i) / q(z_i|x),    log w_i = -nll(x, decoder(z_i)) + log p(z_i) - log q(z_i|x)

the two objectives (each a lower bound on log p(x); minivae minimises their negatives, in nats per example):

    'vae'   ELBO_K = (1/K) sum_i log p(x|z_i) - KL(q(z|x) || p(z))      (K single-sample ELBOs averaged; the KL
                                                                         in closed form, as VAE.step has it)
    'iwae'  IWAE_K = log (1/K) sum_i w_i                                 (tighter: ELBO <= IWAE_K <= log p(x))

The IWAE's gradient, by hand. Let l_i = -log w_i, the loss of a single-sample ELBO that uses the *sampled*
log q(z_i|x) - log p(z_i) in place of the closed-form KL. Then, for any parameter theta (z_i = mu + std eps_i
depends on the encoder's, so d/dtheta goes through z_i too),

    loss = -log (1/K) sum_i exp(-l_i)
    d loss / d theta = sum_i [ exp(-l_i) / sum_j exp(-l_j) ] d l_i / d theta  =  sum_i w~_i  d l_i / d theta

with w~_i = w_i / sum_j w_j the normalised weights (a softmax of the log-weights over the K samples). So the
IWAE's gradient is each sample's own ELBO gradient, weighted by how well that sample explains x, where the
K-sample ELBO weights every sample by 1/K. The weights are e^-100 and smaller in float32, so both the loss and
w~ are computed in log space: subtract the largest log-weight m, then loss = -(m + log sum_i e^(log w_i - m)
- log K) and w~_i = e^(log w_i - m) / sum_j e^(log w_j - m), every exponent <= 0 (log-sum-exp).

K = 1, stated precisely. Then w~_1 = 1 and the IWAE's gradient is exactly the gradient of the single-sample ELBO
estimator with the *sampled* KL, nll(x, z) + log q(z|x) - log p(z). It is not VAE.step's gradient, which uses
the KL in closed form; the two agree only in expectation over eps, because E_eps[log q - log p] is the KL and
the gradient of the sampled term is unbiased for the closed form's (tests/models/test_iwae.py checks both). The
'vae' objective with K = 1 gives VAE.step's gradients bit for bit; its loss, the mean of the per-example
losses, may differ from VAE.step's mean(recon) + beta * mean(kl) in the last bit (sums in another order).

Cost. The encoder runs once per example: the K samples share mu and std. The decoder runs on the K*B rows of
z at once, (K, B, L) reshaped to (K*B, L): the K-sample objectives cost about K decoder passes.

Shapes: x (B, D) (or (B, ...) for the convnet); eps (K, B, L); log-weights and nll (K, B); losses (B,).
"""

from minivae.core import backend
from minivae.core.gaussian import log_prior
from minivae.models.vae import Loss, log_mean_exp

OBJECTIVES = ("vae", "iwae")


def check(objective, k, beta=1.0):
    """Raise ValueError with a one-line message if the objective cannot be trained as asked."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    if int(k) != k or k < 1:
        raise ValueError(f"k, the samples of z per example, must be a whole number >= 1, got {k}")
    if objective == "iwae" and beta != 1:
        raise ValueError(f"the IWAE bound has no KL weight (its weights are p(x, z) / q(z|x)); use beta 1, "
                         f"not {beta}")


def _noise(model, x, k, eps, rng):
    if eps is None:
        rng = backend.rng if rng is None else rng
        eps = backend.to_device(rng.standard_normal((k, len(x), model.latent), dtype=model.dtype))
    if eps.ndim != 3 or eps.shape[1:] != (len(x), model.latent):
        raise ValueError(f"eps must be (K, B, L) = (K, {len(x)}, {model.latent}), got {eps.shape}")
    return eps


def _forward(model, x, eps, grad):
    """Encode once, sample K z per example, decode all K*B at once. Returns what the loss and backward need."""
    xp = backend.xp
    k, n, latent = eps.shape
    mu, scale = model.encode(x)
    z = model.posterior.sample(mu, scale, eps)  # (K, B, L): mu and scale broadcast over the K samples
    out = model.decoder.forward(z.reshape(k * n, latent))
    x_flat = x.reshape(n, -1)
    x_rows = xp.broadcast_to(x_flat, (k, *x_flat.shape)).reshape(k * n, -1)  # x repeated for each sample
    nll, dnll_dout = model.recon_fn(out.reshape(k * n, -1), x_rows, grad=grad)  # dnll_dout: d nll_row / d out
    return mu, scale, z, out, nll.reshape(k, n), dnll_dout


def _log_weights(model, z, mu, scale, nll):
    """log w = -nll + log p(z) - log q(z|x): (K, B)."""
    return -nll + log_prior(z) - model.posterior.log_q(z, mu, scale)


def _normalised(log_w):
    """(-log (1/K) sum_i w_i per example (B,), the normalised weights w~ (K, B)), by log-sum-exp."""
    log_mean, w_tilde = log_mean_exp(log_w)
    return -log_mean, w_tilde


def per_example_losses(model, x, objective="iwae", k=1, eps=None, rng=None):
    """Each example's loss under the objective, (B,), without gradients: -ELBO_K or -IWAE_K (nats).

    eps (K, B, L) fixes the noise (then k is eps's K); else k samples are drawn from rng. For recon 'mse' the
    loss leaves out the Gaussian's constant, as VAE.step does (it shifts every log-weight alike).
    """
    eps = _noise(model, x, k, eps, rng)
    mu, scale, z, _, nll, _ = _forward(model, x, eps, grad=False)
    if objective == "iwae":
        return _normalised(_log_weights(model, z, mu, scale, nll))[0]
    kl, _, _ = model.posterior.kl(mu, scale)
    return nll.mean(axis=0) + model.beta * kl


def step(model, x, objective="iwae", k=1, eps=None, rng=None):
    """Forward and backward of the K-sample objective on a batch x (B, D): fills model.grads, returns a vae.Loss.

    eps (K, B, L) fixes the noise (then k is eps's K); else k samples are drawn from rng (default backend.rng).
    The Loss holds batch means: `loss` is the objective's (-ELBO_K, or -IWAE_K, the tighter), `recon` and `kl`
    the K-sample ELBO's two terms (the KL in closed form), so that for the IWAE loss <= recon + kl on average.
    """
    check(objective, k if eps is None else len(eps), model.beta)
    eps = _noise(model, x, k, eps, rng)
    k, n, latent = eps.shape
    mu, scale, z, out, nll, dnll_dout = _forward(model, x, eps, grad=True)
    kl, dkl_dmu, dkl_dscale = model.posterior.kl(mu, scale)
    if objective == "iwae":
        losses, w_tilde = _normalised(_log_weights(model, z, mu, scale, nll))
        weight = w_tilde / n  # d loss / d l_i for loss = mean_b IWAE loss: w~_i / B, (K, B)
    else:
        losses = nll.mean(axis=0) + model.beta * kl
        weight = backend.xp.full((k, n), 1.0 / (k * n), dtype=mu.dtype)  # every sample's nll counts 1/(K B)

    # backward. The decoder: every row's d nll / d out, times its sample's weight. (K*B, D)
    dout = dnll_dout * weight.reshape(k * n, 1)
    dz = model.decoder.backward(dout.reshape(out.shape)).reshape(k, n, latent)
    w3 = weight[:, :, None]  # (K, B, 1), to scale (K, B, L) arrays
    if objective == "iwae":
        # l_i also holds log q(z_i|x) - log p(z_i). Its partial in z: d log q/dz + z  (d(-log p)/dz = z);
        # its partials in mu and scale with z fixed are log q's own (gaussian.py), added after the sampler.
        dlogq_dz, dlogq_dmu, dlogq_dscale = model.posterior.log_q_partials(z, mu, scale)
        dz += w3 * (dlogq_dz + z)
    dmu, dscale = model.posterior.backward(dz)  # the path through z = mu + std * eps, (K, B, L) each
    dmu, dscale = dmu.sum(axis=0), dscale.sum(axis=0)  # the K samples share mu and scale: their gradients add
    if objective == "iwae":
        dmu += (w3 * dlogq_dmu).sum(axis=0)
        dscale += (w3 * dlogq_dscale).sum(axis=0)
    else:  # the closed-form KL's direct path, as in VAE.step (beta times the mean's 1/B, in that order)
        kl_weight = model.beta * (1.0 / n)
        dmu += kl_weight * dkl_dmu
        dscale += kl_weight * dkl_dscale
    model.backward_heads(dmu, dscale)
    return Loss(float(losses.mean()), float(nll.mean()), float(kl.mean()))
