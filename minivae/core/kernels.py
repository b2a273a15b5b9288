"""Fused kernels for the GPU: a chain of elementwise passes run as one CuPy kernel. The fast twins use this.

On a GPU every array operation is a kernel launch: a few microseconds of Python and of the launch itself, then a
pass that reads its inputs from the GPU's memory and writes its result back. Adam's update of one parameter
array is ten such passes (optim_fast.FastAdam), the loss a dozen, the sampler four; for the small arrays of an
MLP the launches, not the arithmetic, are the time. CuPy's `ElementwiseKernel` compiles a few lines of CUDA C,
run once per element, into one kernel: one launch, each array read once and written once.

A `Kernel` here is such a kernel's text. Each fast twin writes its kernels beside the plain formula they fuse
(optim_fast: the optimizers' updates; layers_fast: ReLU's backward; losses_fast: the Bernoulli losses;
gaussian_fast: the sampler and the KL), and calls them only where `available()` says the backend can compile
them, that is on CuPy. Elsewhere the fast twins compute the plain formula itself, so NumPy's numbers do not
change by a bit. tests/fake_cupy.py's CuPy stand-in has no ElementwiseKernel either, and takes the plain path;
tests/kernel_emulator.py lends it one that compiles the same text as C++ on the CPU, so that CI runs every kernel
against its formula without a GPU (tests/core/test_kernels.py, which on a GPU runs them on CuPy too).

What a kernel's text may use, so that both compilers take it and it computes what the formula does:
* its arrays and numbers typed T (the type of the arrays passed: float32 to train, float64 to check gradients),
  constants as T(0.5); the arrays all of one type, the numbers (Python floats) converted to it, as NumPy
  converts a Python float that meets a float32 array;
* C's math functions (exp, log, log1p, sqrt, fabs, fmax, ...), which CUDA provides for float and double alike;
  no CUDA intrinsics (__expf, rsqrt, ...): the emulator has none, and they round differently;
* every kernel is compiled with --fmad=false, so that a * b + c is rounded twice, as NumPy's two passes round
  it, and not once as a fused multiply-add. Kernels of + - * / and sqrt then give NumPy's float32 bits exactly
  (IEEE rounding on both sides); exp and log may differ from NumPy's in the last bit or two.
"""

from minivae.core import backend

OPTIONS = ("--fmad=false",)  # NVRTC's flag: no fused multiply-adds (see the module docstring)


def available():
    """Whether the backend can compile fused kernels: CuPy can; NumPy and the CuPy stand-in cannot."""
    return backend.name == "cupy" and hasattr(backend.xp, "ElementwiseKernel")  # the name first: NumPy pays nothing


class Kernel:
    """One elementwise kernel: `inputs` and `outputs` as CuPy writes them ("T x, T scale", "T y"), `body` the CUDA C
    run once per element (inputs read-only, outputs assignable), `name` what profilers show (minivae_...).

    kernel(*inputs) returns the outputs, new arrays of the inputs' broadcast shape (one array, or a tuple);
    kernel(*inputs, *outputs) writes into the given outputs instead, which the body may also read (an update in
    place). Numbers among the inputs are converted to T. Built at the first call on each backend that has
    ElementwiseKernel (CuPy compiles it then, and caches the binary on disk for later runs).
    """

    def __init__(self, inputs, outputs, body, name):
        self.inputs, self.outputs, self.body, self.name = inputs, outputs, body, name
        self._built = {}  # the backend's ElementwiseKernel class -> this kernel built by it

    def __call__(self, *args):
        make = backend.xp.ElementwiseKernel
        kernel = self._built.get(make)
        if kernel is None:
            kernel = self._built[make] = make(self.inputs, self.outputs, self.body, self.name, options=OPTIONS)
        return kernel(*args)

    def __repr__(self):
        return f"Kernel({self.name}: {self.inputs} -> {self.outputs})"
