"""layers.py's ReLU on several cores: the same contract and the same numbers (tests/core/test_conv_fast.py holds
them equal).

NumPy runs each elementwise pass on one core, but it releases Python's GIL while it runs, so threads that each
take a block of a big array run their passes at once (threads.in_slices). Worth it for a convnet's activations
(hundreds of thousands of floats per batch); an MLP's stay on one thread, so the convnet builder uses this class
and the MLPs the plain one. On the GPU each pass is one kernel over all the cores anyway.
"""

from minivae.core import backend, threads
from minivae.core.layers import ReLU


class ThreadedReLU(ReLU):
    """ReLU with both passes cut into one block per thread. Any shape."""

    def forward(self, x):
        self.out = backend.xp.empty_like(x)
        threads.in_slices(_relu, x, self.out)
        return self.out

    def backward(self, dout, need_dx=True):
        # as ReLU.backward: dx = dout * [out > 0], written block by block
        dx = backend.xp.empty_like(dout)
        threads.in_slices(_relu_backward, dout, self.out, dx)
        return dx


def _relu(x, out):
    backend.xp.maximum(x, 0, out=out)


def _relu_backward(dout, out, dx):
    backend.xp.multiply(dout, out > 0, out=dx)
