"""layers.py's ReLU, faster: the same contract and the same numbers (tests/core/test_conv_fast.py and
test_kernels.py hold them equal).

* `FastReLU`: on the GPU its backward, dout * [out > 0], is one fused kernel (core/kernels.py) instead of two
  passes (the comparison, then the product) with a boolean array between them; elsewhere the plain ReLU. The
  forward, max(x, 0), is one kernel already. The MLPs use this class.
* `ThreadedReLU`: on the CPU both passes cut into one block per thread. NumPy runs each elementwise pass on one
  core, but it releases Python's GIL while it runs, so threads that each take a block of a big array run their
  passes at once (threads.in_slices). Worth it for a convnet's activations (hundreds of thousands of floats per
  batch), so the convnet builder uses this class; an MLP's activations are too small for it. On the GPU it is
  FastReLU: each pass one kernel over all the cores anyway.
"""

from minivae.core import backend, kernels, threads
from minivae.core.layers import ACTIVATIONS, ReLU

# dout * [out > 0] in one pass: the comparison gives C's bool, 1 or 0, which the product turns into T, so the
# numbers are the plain formula's exactly (dout * 0 keeps its sign and its nan, as NumPy's does).
RELU_BACKWARD = kernels.Kernel("T dout, T out", "T dx", "dx = dout * (out > T(0));", "minivae_relu_backward")


class FastReLU(ReLU):
    """ReLU whose backward is one fused kernel on the GPU. Any shape."""

    def backward(self, dout, need_dx=True):
        if kernels.available():
            return RELU_BACKWARD(dout, self.out)
        return super().backward(dout, need_dx)


ACTIVATIONS = ACTIVATIONS | {"relu": FastReLU}  # for layers.mlp: the plain table, with the fast ReLU


class ThreadedReLU(FastReLU):
    """ReLU with both passes cut into one block per thread on the CPU (FastReLU on the GPU). Any shape."""

    def forward(self, x):
        self.out = backend.xp.empty_like(x)
        threads.in_slices(_relu, x, self.out)
        return self.out

    def backward(self, dout, need_dx=True):
        if kernels.available():
            return super().backward(dout, need_dx)
        # as ReLU.backward: dx = dout * [out > 0], written block by block
        dx = backend.xp.empty_like(dout)
        threads.in_slices(_relu_backward, dout, self.out, dx)
        return dx


def _relu(x, out):
    backend.xp.maximum(x, 0, out=out)


def _relu_backward(dout, out, dx):
    backend.xp.multiply(dout, out > 0, out=dx)
