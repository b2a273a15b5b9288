"""The gradient check must fail on every plausible one-line mistake in a backward pass.

Each test plants one mistake (tests/planting.py: the source of one real function of the library with one piece of
code replaced by a mistaken version, compiled in the function's own module and monkeypatched in). Then the table of
`python -m minivae.gradcheck` must have a failing row. The test ids name the mistakes; the planted code reads as
the list of what the checker guards against.

Where the backend compiles fused kernels (a GPU, or the stand-in with emulated kernels: the `kernels_on`
fixture), the fast twins run those instead of some plain code, so a mistake is planted in a kernel's CUDA C too
(KERNEL_MISTAKES), and the plain mistakes whose code does not run there (CPU_ONLY) are skipped.
"""

from typing import NamedTuple

import pytest
from planting import Mistake, plant

from minivae import gradcheck
from minivae.checks.finite_differences import passes, run_check
from minivae.checks.table import CHECKS
from minivae.core import gaussian_fast, kernels, layers_fast, losses_fast

MISTAKES = [
    # core/layers.py and its fast twin
    Mistake("dense-dx-without-transpose", "core.layers.Dense.backward",
            'dout @ self.params["W"].T', 'dout @ self.params["W"]'),
    Mistake("dense-dW-transposed", "core.layers.Dense.backward",
            'xp.matmul(self.x.T, dout, out=self.grads["W"])', 'xp.matmul(dout.T, self.x, out=self.grads["W"])'),
    Mistake("dense-dW-accumulates", "core.layers.Dense.backward",
            'xp.matmul(self.x.T, dout, out=self.grads["W"])', 'self.grads["W"] += self.x.T @ dout'),
    Mistake("dense-bias-gradient-missing", "core.layers.Dense.backward",
            'dout.sum(axis=0, out=self.grads["b"])', 'self.grads["b"][...] = 0'),
    Mistake("dense-bias-gradient-mean-not-sum", "core.layers.Dense.backward",
            'dout.sum(axis=0, out=self.grads["b"])', 'dout.mean(axis=0, out=self.grads["b"])'),
    Mistake("relu-mask-always-true (>= instead of >)", "core.layers.ReLU.backward", "self.out > 0", "self.out >= 0"),
    Mistake("relu-mask-from-dout", "core.layers.ReLU.backward", "self.out > 0", "dout > 0"),
    Mistake("threaded-relu-mask-always-true", "core.layers_fast._relu_backward", "out > 0", "out >= 0"),
    Mistake("sigmoid-s-instead-of-s(1-s)", "core.layers.Sigmoid.backward",
            "dout * self.out * (1 - self.out)", "dout * self.out"),
    Mistake("tanh-1-out-instead-of-1-out^2", "core.layers.Tanh.backward",
            "dout * (1 - self.out * self.out)", "dout * (1 - self.out)"),
    # core/columns.py and core/conv.py: the plain convolutions
    Mistake("col2im-overwrites-overlapping-windows", "core.columns.col2im",
            "+= windows[:, i, j].transpose(1, 0, 2, 3)", "= windows[:, i, j].transpose(1, 0, 2, 3)"),
    Mistake("col2im-taps-one-pixel-apart-whatever-the-stride", "core.columns.col2im",
            "slice(i, i + sh * (out_h - 1) + 1, sh)", "slice(i, i + out_h)"),
    Mistake("conv2d-dW-accumulates", "core.conv.Conv2D.backward",
            'self.grads["W"][...] = (dout2 @ self.cols.T)', 'self.grads["W"][...] += (dout2 @ self.cols.T)'),
    Mistake("conv2d-dcols-by-reshape-not-transpose", "core.conv.Conv2D.backward", "dcols = W2.T @ dout2\n",
            "dcols = W2.reshape(W2.shape[1], -1) @ dout2\n"),
    Mistake("conv-transpose-dx-with-kernel-turned", "core.conv.ConvTranspose2D.backward",
            'W2 = self.params["W"].reshape(self.in_channels, -1)',
            'W2 = self.params["W"][:, :, ::-1, ::-1].reshape(self.in_channels, -1)'),
    Mistake("conv-transpose-bias-gradient-misses-the-batch", "core.conv.ConvTranspose2D.backward",
            'dout.sum(axis=(0, 2, 3), out=self.grads["b"])', 'dout[0].sum(axis=(1, 2), out=self.grads["b"])'),
    # core/conv_fast.py: every way round
    Mistake("fast-col2im-overwrites-overlapping-windows", "core.conv_fast._add_taps",
            "+= windows[:, i, j, : size - shift]", "= windows[:, i, j, : size - shift]"),
    Mistake("fast-col2im-fills-phases-no-tap-reaches (kernel smaller than stride)", "core.conv_fast._add_taps",
            "windows[:, a, b] if a < kh and b < kw else 0", "windows[:, a % kh, b % kw]"),
    Mistake("fast-conv2d-col2im-with-stride-1", "core.conv_fast.FastConv2D.backward",
            "self.kernel_size, self.stride, dout.shape[2:]", "self.kernel_size, (1, 1), dout.shape[2:]"),
    Mistake("fast-conv2d-col2im-with-strides-swapped", "core.conv_fast.FastConv2D.backward",
            "self.kernel_size, self.stride, dout.shape[2:]", "self.kernel_size, self.stride[::-1], dout.shape[2:]"),
    Mistake("fast-conv2d-dW-accumulates", "core.conv_fast.FastConv2D.backward",
            'self._transposed_product(self.cols, dout2.T, out=self.grads["W"].reshape(W2.shape))',
            'self.grads["W"] += (dout2 @ self.cols.T).reshape(self.grads["W"].shape)'),
    Mistake("fast-conv-dW-not-transposed-back", "core.conv_fast.WorkArrays._transposed_product",
            "out[...] = product.T", "out[...] = product.reshape(out.shape)"),
    Mistake("fast-conv2d-dx-by-convolution-kernel-not-turned", "core.conv_fast.FastConv2D._dx_by_convolution",
            'self.params["W"][:, :, ::-1, ::-1]', 'self.params["W"]'),
    Mistake("fast-conv2d-dx-by-convolution-pads-top-for-bottom", "core.conv_fast.FastConv2D._dx_by_convolution",
            "(kh - 1 - top, kh - 1 - bottom)", "(kh - 1 - bottom, kh - 1 - top)"),
    Mistake("fast-conv2d-dW-by-shifts-without-the-shift", "core.conv_fast.FastConv2D._dW_by_shifts",
            "self.xf[:, i * Wp + j : i * Wp + j + M].T", "self.xf[:, :M].T"),
    Mistake("fast-conv-transpose-dx-with-kernel-turned", "core.conv_fast.FastConvTranspose2D.backward",
            'W2 = self.params["W"].reshape(self.in_channels, -1)',
            'W2 = self.params["W"][:, :, ::-1, ::-1].reshape(self.in_channels, -1)'),
    Mistake("fast-conv-transpose-dW-accumulates", "core.conv_fast.FastConvTranspose2D.backward",
            'self._transposed_product(dcols, self.x2.T, out=self.grads["W"].reshape(W2.shape))',
            'self.grads["W"] += (self.x2 @ dcols.T).reshape(self.grads["W"].shape)'),
    Mistake("fast-conv-transpose-bias-gradient-misses-the-batch", "core.conv_fast.FastConvTranspose2D.backward",
            'dout.sum(axis=(0, 2, 3), out=self.grads["b"])', 'dout[0].sum(axis=(1, 2), out=self.grads["b"])'),
    # core/losses.py
    Mistake("bce-logits-gradient-without-the-scale", "core.losses.bce_logits", "work *= scale", "pass"),
    Mistake("bce-logits-gradient-wrong-sign", "core.losses.bce_logits", "work -= x", "work = x - work"),
    Mistake("bce-probs-clip-keeps-the-gradient", "core.losses.bce_probs",
            "(clipped * (1 - clipped)) * inside", "(clipped * (1 - clipped))"),
    Mistake("bce-probs-clip-test->=-keeps-the-top-clip", "core.losses.bce_probs",
            "inside = (probs == clipped)", "inside = (probs >= clipped)"),
    Mistake("bce-probs-gradient-without-the-scale", "core.losses.bce_probs", "dprobs *= scale", "pass"),
    Mistake("bce-probs-gradient-of-unclipped-p", "core.losses.bce_probs",
            "dprobs = (clipped - x) / (clipped * (1 - clipped))", "dprobs = (probs - x) / (probs * (1 - probs))"),
    Mistake("squared-error-missing-factor-2", "core.losses.squared_error", "diff *= 2 * scale", "diff *= scale"),
    Mistake("cross-entropy-forgets-the-true-class", "core.losses.softmax_cross_entropy",
            "dlogits[rows, labels] -= 1", "pass"),
    # core/gaussian.py
    Mistake("logvar-sampler-missing-factor-0.5", "core.gaussian.LogvarGaussian.backward",
            "dz * (0.5 * self.std * self.eps)", "dz * (self.std * self.eps)"),
    Mistake("logvar-sampler-forgets-eps", "core.gaussian.LogvarGaussian.backward",
            "dz * (0.5 * self.std * self.eps)", "dz * (0.5 * self.std)"),
    Mistake("sigma-sampler-forgets-eps", "core.gaussian.SigmaGaussian.backward", "return dz, dz * self.eps",
            "return dz, dz"),
    Mistake("logvar-kl-gradient-exp(logvar)-not-0.5(exp(logvar)-1)", "core.gaussian.LogvarGaussian.kl",
            "return kl, mu, 0.5 * (var - 1)", "return kl, mu, var"),
    Mistake("logvar-kl-mu-gradient-wrong-sign", "core.gaussian.LogvarGaussian.kl",
            "return kl, mu, 0.5 * (var - 1)", "return kl, -mu, 0.5 * (var - 1)"),
    Mistake("sigma-kl-ignores-the-floor (1/sigma)", "core.gaussian.SigmaGaussian.kl",
            "sigma - sigma / (var + cls.LOG_FLOOR)", "sigma - 1 / sigma"),
    Mistake("sigma-kl-ignores-the-floor (sigma/sigma^2)", "core.gaussian.SigmaGaussian.kl",
            "sigma - sigma / (var + cls.LOG_FLOOR)", "sigma - sigma / var"),
    Mistake("sigma-kl-keeps-the-0.5", "core.gaussian.SigmaGaussian.kl",
            "sigma - sigma / (var + cls.LOG_FLOOR)", "0.5 * (sigma - sigma / (var + cls.LOG_FLOOR))"),
    # core/continuous_bernoulli.py: the gradient E[x] - x goes through its mean
    Mistake("cb-mean-loses-its-sign-for-negative-logits", "core.continuous_bernoulli.mean",
            "closed = xp.where(logits < 0, -half_gap, half_gap)", "closed = half_gap"),
    Mistake("cb-mean-without-its-1/a-term", "core.continuous_bernoulli.mean",
            "half_gap = 0.5 + xp.exp(-r) / -xp.expm1(-r) - 1.0 / r", "half_gap = 0.5 + xp.exp(-r) / -xp.expm1(-r)"),
    # models/vae.py
    Mistake("heads-gradients-not-added", "models.vae.VAE.backward_heads",
            "dh += self.scale_head.backward(dscale)", "dh = self.scale_head.backward(dscale)"),
    Mistake("kl-weight-without-beta", "models.vae.VAE.weighted_step", "kl_weight = self.beta * w", "kl_weight = w"),
    Mistake("kl-weight-without-the-batch-mean", "models.vae.VAE.weighted_step", "kl_weight = self.beta * w",
            "kl_weight = self.beta"),
    Mistake("kl-path-to-the-scale-head-missing", "models.vae.VAE.weighted_step",
            "dscale = dscale + kl_weight * dkl_dscale", "dscale = dscale"),
    Mistake("decoder-gradient-skips-the-sampler", "models.vae.VAE.weighted_step",
            "dmu, dscale = self.posterior.backward(dz)", "dmu, dscale = dz, dz"),
    Mistake("conditional-decoder-gradient-keeps-the-label-columns", "models.vae.VAE.weighted_step",
            "[:, :self.latent]", "[:, -self.latent:]"),
    Mistake("per-example-weights-left-out-of-the-decoder-gradient", "models.vae.VAE.weighted_step",
            "dout *= w", "pass"),
    # models/iwae.py
    Mistake("iwae-weights-every-sample-alike", "models.iwae.step",
            "weight = w_tilde / n", "weight = backend.xp.full_like(w_tilde, 1.0 / (k * n))"),
    Mistake("iwae-forgets-the-prior's-gradient-in-z", "models.iwae.step",
            "dz += w3 * (dlogq_dz + z)", "dz += w3 * dlogq_dz"),
    Mistake("iwae-samples-gradients-averaged-not-summed", "models.iwae.step",
            "dmu, dscale = dmu.sum(axis=0), dscale.sum(axis=0)", "dmu, dscale = dmu.mean(axis=0), dscale.mean(axis=0)"),
    Mistake("k-sample-elbo-kl-gradient-without-beta", "models.iwae.step",
            "kl_weight = model.beta * (1.0 / n)", "kl_weight = 1.0 / n"),
    Mistake("k-sample-elbo-kl-gradient-in-the-scale-without-beta", "models.iwae.step",
            "dscale += kl_weight * dkl_dscale", "dscale += dkl_dscale / n"),
    # models/classifier.py and models/m2.py: the classifier's gradients
    Mistake("classifier-step-without-the-batch-mean", "models.classifier.Classifier.step",
            "scale=1.0 / len(x)", "scale=1.0"),
    Mistake("m2-dU/dlogits-without-the-entropy's-log-q", "models.m2.unlabelled_loss",
            "q * (costs - unlabelled[:, None])", "q * (neg_elbos - unlabelled[:, None])"),
    Mistake("m2-dU/dlogits-without-the-softmax-centering", "models.m2.unlabelled_loss",
            "q * (costs - unlabelled[:, None])", "q * costs"),
]


# The CPU's own paths: on a backend with kernels the fused kernel runs instead (its mistakes are below)
CPU_ONLY = {"threaded-relu-mask-always-true"}


class KernelMistake(NamedTuple):
    id: str
    module: object  # where the kernel is defined, as module.<name>
    name: str
    correct: str
    mistaken: str


KERNEL_MISTAKES = [
    KernelMistake("relu-kernel-mask-always-true", layers_fast, "RELU_BACKWARD", "out > T(0)", "out >= T(0)"),
    KernelMistake("bce-logits-kernel-gradient-without-the-scale", losses_fast, "BCE_LOGITS", ") * scale;", ");"),
    KernelMistake("bce-logits-kernel-gradient-wrong-sign", losses_fast, "BCE_LOGITS", "exp(a - softplus) - x",
                  "x - exp(a - softplus)"),
    KernelMistake("bce-probs-kernel-clip-keeps-the-gradient", losses_fast, "BCE_PROBS", " * T(p == c)", ""),
    KernelMistake("logvar-sampler-kernel-missing-factor-0.5", gaussian_fast, "SAMPLE_BACKWARD", "T(0.5) * std",
                  "std"),
    KernelMistake("logvar-kl-kernel-gradient-exp(logvar)-not-0.5(exp(logvar)-1)", gaussian_fast, "KL",
                  "dlogvar = T(0.5) * (var - T(1));", "dlogvar = var;"),
]


def first_failing_row():
    """The name of the first row of the table that fails (by gradcheck's pass rule), or None."""
    for check in CHECKS:
        verdicts, _, problem = run_check(check, raw=False)
        if not passes(verdicts, problem):
            return check.name
    return None


def test_the_table_passes_without_a_planted_mistake():
    assert first_failing_row() is None


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.id for m in MISTAKES])
def test_the_table_catches_a_planted_mistake(monkeypatch, mistake):
    if mistake.id in CPU_ONLY and kernels.available():
        pytest.skip("this backend runs a fused kernel instead of this code")
    plant(monkeypatch, mistake)
    assert first_failing_row() is not None, f"no row of the table catches {mistake.id}"


@pytest.mark.parametrize("mistake", KERNEL_MISTAKES, ids=[m.id for m in KERNEL_MISTAKES])
def test_the_table_catches_a_mistake_planted_in_a_fused_kernel(kernels_on, monkeypatch, mistake):
    kernel = getattr(mistake.module, mistake.name)
    assert kernel.body.count(mistake.correct) == 1, f"{mistake.name} should contain {mistake.correct!r} once"
    mistaken = kernels.Kernel(kernel.inputs, kernel.outputs, kernel.body.replace(mistake.correct, mistake.mistaken),
                              kernel.name + "_mistaken")
    monkeypatch.setattr(mistake.module, mistake.name, mistaken)
    assert first_failing_row() is not None, f"no row of the table catches {mistake.id}"


def test_the_command_exits_1_on_a_planted_mistake(monkeypatch, capsys):
    plant(monkeypatch, MISTAKES[0])
    assert gradcheck.main([]) == 1
    assert "FAIL" in capsys.readouterr().out
