"""gaussian.py's logvar posterior, faster on the GPU: the same contract and numbers (tests/core/test_kernels.py holds
them equal), with the sampler, its backward and the KL each one fused kernel (core/kernels.py) where the backend
compiles kernels, and the plain methods themselves elsewhere (NumPy's numbers do not change).

Plain, the sampler is four passes (0.5 logvar, its exp, * eps, + mu), its backward three, the KL eight; fused, one
kernel each, and the KL's sum over the latent units. The sigma posterior's sampler is two passes already: it keeps
the plain class. The models read POSTERIORS from here.
"""

from minivae.core import kernels
from minivae.core.gaussian import POSTERIORS, LogvarGaussian, noise

# z = mu + exp(0.5 logvar) * eps, keeping std = exp(0.5 logvar) for the backward. mu and logvar (B, L) broadcast
# against eps (B, L) or (K, B, L) (the IWAE's K samples), and so std comes out in eps's shape.
SAMPLE = kernels.Kernel("T mu, T logvar, T eps", "T z, T std", """
    std = exp(T(0.5) * logvar);
    z = mu + std * eps;
""", "minivae_logvar_sample")

# dlogvar = dz * 0.5 * std * eps (see LogvarGaussian.backward), in the plain one's order
SAMPLE_BACKWARD = kernels.Kernel("T dz, T std, T eps", "T dlogvar", "dlogvar = dz * (T(0.5) * std * eps);",
                                 "minivae_logvar_sample_backward")

# each unit's mu^2 + exp(logvar) - 1 - logvar (the KL is half their sum), and dKL/dlogvar = 0.5 (exp(logvar) - 1)
KL = kernels.Kernel("T mu, T logvar", "T twice_kl, T dlogvar", """
    T var = exp(logvar);
    twice_kl = mu * mu + var - T(1) - logvar;
    dlogvar = T(0.5) * (var - T(1));
""", "minivae_logvar_kl")


class FastLogvarGaussian(LogvarGaussian):
    """LogvarGaussian with its three elementwise chains fused on the GPU. Shapes as LogvarGaussian's."""

    def sample(self, mu, logvar, eps=None, rng=None):
        if not kernels.available():
            return super().sample(mu, logvar, eps, rng)
        self.eps = eps = noise(mu, eps, rng)
        z, self.std = SAMPLE(mu, logvar, eps)
        return z

    def backward(self, dz):
        if not kernels.available():
            return super().backward(dz)
        return dz, SAMPLE_BACKWARD(dz, self.std, self.eps)

    @staticmethod
    def kl(mu, logvar):
        if not kernels.available():
            return LogvarGaussian.kl(mu, logvar)
        twice_kl, dlogvar = KL(mu, logvar)
        return 0.5 * twice_kl.sum(axis=1), mu, dlogvar


POSTERIORS = POSTERIORS | {"logvar": FastLogvarGaussian}
