"""The Gaussian posterior q(z|x) = N(mu, diag(sigma^2)): reparameterized sampling, its backward, and the KL
to the prior p(z) = N(0, I), in the two parametrizations the tutorials use.

The reparameterization trick draws eps ~ N(0, I) outside the network and computes

    z = mu + sigma * eps

so z is a differentiable function of (mu, sigma) and the gradient flows back into the encoder.

* `LogvarGaussian`: the encoder outputs logvar = log(sigma^2), so sigma = exp(0.5 * logvar) is always
  positive and the head is unconstrained. This is the usual choice (tutorials 000, 002, 003).
* `SigmaGaussian`: the encoder outputs sigma itself from a linear layer (tutorial 001). sigma may come out
  negative; only sigma^2 enters the KL and z's distribution, so the sign is harmless.

A common bug, in tutorial 003: sampling with `z = mu + exp(logvar) * eps`. That draws z with standard
deviation exp(logvar) = sigma^2, i.e. variance sigma^4, while the KL term is written for variance
exp(logvar) = sigma^2. The two halves of the loss then describe different distributions: the KL no longer
measures the q that produced z, and the ELBO is not a bound. With logvar the standard deviation is
exp(0.5 * logvar), the square root of the variance.

Shapes: mu, logvar, sigma, eps and z are (B, latent). KL values are per example, (B,), summed over the
latent units; the losses module and the model take the mean over the batch.
"""

import math

from minivae.core import backend

LOG_2PI = math.log(2 * math.pi)


class LogvarGaussian:
    """q(z|x) parametrized by (mu, logvar). Forward `sample`, then `backward` with dL/dz."""

    scale_name = "logvar"  # what the encoder's second head outputs (and its parameters' name)

    def sample(self, mu, logvar, eps=None, rng=None):
        """z = mu + exp(0.5 logvar) * eps. eps ~ N(0, I) is drawn from rng (default: backend.rng) unless given,
        so a step can be replayed exactly. Returns z (B, latent)."""
        self.eps = eps = noise(mu, eps, rng)
        self.std = backend.xp.exp(0.5 * logvar)
        return mu + self.std * eps

    def backward(self, dz):
        # dz/dmu = 1                               -> dmu = dz
        # dz/dlogvar = eps * d exp(logvar/2)/dlogvar = 0.5 * std * eps  -> dlogvar = dz * 0.5 * std * eps
        # Shapes: all (B, latent).
        return dz, dz * (0.5 * self.std * self.eps)

    @staticmethod
    def kl(mu, logvar):
        """KL(N(mu, exp(logvar)) || N(0, 1)) summed over latent units: (B,), plus d(sum KL)/dmu and /dlogvar.

        KL = 0.5 * sum(mu^2 + exp(logvar) - 1 - logvar)
        dKL/dmu = mu;  dKL/dlogvar = 0.5 * (exp(logvar) - 1)
        """
        var = backend.xp.exp(logvar)
        kl = 0.5 * (mu * mu + var - 1 - logvar).sum(axis=1)
        return kl, mu, 0.5 * (var - 1)

    @staticmethod
    def log_q(z, mu, logvar):
        """log N(z; mu, exp(logvar)) summed over latent units: (..., B) for z (..., B, latent)."""
        return -0.5 * ((z - mu) ** 2 * backend.xp.exp(-logvar) + logvar + LOG_2PI).sum(axis=-1)

    @staticmethod
    def log_q_partials(z, mu, logvar):
        """The partial derivatives of log q(z|x) = -0.5 sum((z - mu)^2 / var + logvar + log 2 pi), var = e^logvar,
        with z, mu and logvar each held fixed in turn: (d/dz, d/dmu, d/dlogvar), each shaped like z.

            d/dz = -(z - mu) / var;   d/dmu = (z - mu) / var;   d/dlogvar = 0.5 (z - mu)^2 / var - 0.5

        When z = mu + std * eps itself depends on mu and logvar (the IWAE's log-weights), the total derivative
        adds the path through z, which `backward` takes (dz/dmu = 1, dz/dlogvar = 0.5 std eps); with
        z - mu = std eps the two paths give
            total d/dmu     = -(z - mu)/var + (z - mu)/var = 0
            total d/dlogvar = -(std eps / var) 0.5 std eps + 0.5 eps^2 - 0.5 = -0.5
        (log q(z(eps)|x) = -0.5 sum(eps^2 + logvar + log 2 pi): only the log-determinant remains).
        """
        precision_gap = (z - mu) * backend.xp.exp(-logvar)  # (z - mu) / var
        return -precision_gap, precision_gap, 0.5 * (z - mu) * precision_gap - 0.5


class SigmaGaussian:
    """q(z|x) parametrized by (mu, sigma), sigma straight from a linear layer (tutorial 001)."""

    scale_name = "sigma"
    # The tutorial adds 1e-10 inside log(sigma^2) so that sigma = 0 does not give log(0) = -inf.
    LOG_FLOOR = 1e-10

    def sample(self, mu, sigma, eps=None, rng=None):
        """z = mu + sigma * eps. Returns z (B, latent)."""
        self.eps = eps = noise(mu, eps, rng)
        return mu + sigma * eps

    def backward(self, dz):
        # dz/dmu = 1 -> dmu = dz;   dz/dsigma = eps -> dsigma = dz * eps.   Shapes: (B, latent).
        return dz, dz * self.eps

    @classmethod
    def kl(cls, mu, sigma):
        """KL = 0.5 * sum(mu^2 + sigma^2 - 1 - log(sigma^2 + floor)): (B,), plus the gradients.

        dKL/dmu = mu;  dKL/dsigma = sigma - sigma / (sigma^2 + floor)   (= sigma - 1/sigma without the floor)
        """
        var = sigma * sigma
        kl = 0.5 * (mu * mu + var - 1 - backend.xp.log(var + cls.LOG_FLOOR)).sum(axis=1)
        return kl, mu, sigma - sigma / (var + cls.LOG_FLOOR)

    @staticmethod
    def log_q(z, mu, sigma):
        """log N(z; mu, sigma^2) summed over latent units: (..., B) for z (..., B, latent)."""
        var = sigma * sigma
        return -0.5 * ((z - mu) ** 2 / var + backend.xp.log(var) + LOG_2PI).sum(axis=-1)

    @staticmethod
    def log_q_partials(z, mu, sigma):
        """Partial derivatives of log q(z|x) = -0.5 sum((z - mu)^2 / sigma^2 + log sigma^2 + log 2 pi), each of
        z, mu, sigma held fixed in turn: (d/dz, d/dmu, d/dsigma), each shaped like z.

            d/dz = -(z - mu) / sigma^2;   d/dmu = (z - mu) / sigma^2;   d/dsigma = (z - mu)^2 / sigma^3 - 1/sigma

        With z = mu + sigma eps the path through z (dz/dmu = 1, dz/dsigma = eps) makes the totals 0 and
        -(sigma eps / sigma^2) eps + eps^2 / sigma - 1/sigma = -1/sigma.
        """
        precision_gap = (z - mu) / (sigma * sigma)
        return -precision_gap, precision_gap, (z - mu) * precision_gap / sigma - 1.0 / sigma


POSTERIORS = {"logvar": LogvarGaussian, "sigma": SigmaGaussian}


def noise(mu, eps=None, rng=None):
    """The sampler's eps: as given, or drawn ~ N(0, I) in mu's shape and dtype from rng (default backend.rng; a
    NumPy generator's draws are copied to the device)."""
    if eps is not None:
        return eps
    generator = backend.rng if rng is None else rng
    return backend.to_device(generator.standard_normal(mu.shape, dtype=mu.dtype))


def log_prior(z):
    """log N(z; 0, I) summed over latent units: (..., B) for z (..., B, latent). Its gradient d/dz is -z."""
    return -0.5 * (z * z + LOG_2PI).sum(axis=-1)
