"""Compile every fused kernel of minivae (core/kernels.py) with NVRTC, as CuPy would, without a GPU.

    pip install cupy-cuda13x nvidia-cuda-nvrtc      # both install on a machine without a GPU
    python scripts/compile_kernels.py               # --arch 90: the H100's and H200's compute capability

CuPy compiles a kernel only at its first call, which needs a GPU. This script makes the same source CuPy would
make for each kernel (its per-element code around the kernel's body, CuPy's headers in front) for float32 and
float64 arrays, and compiles it with NVRTC and CuPy's compiler options, so that a kernel edited on a machine
without a GPU is known to compile before the next GPU run. It reaches into CuPy's internals
(cupy._core._kernel: written against CuPy 14.2), so it is a tool for developers, not part of the test suite
(CI has no CuPy). Exit 1 if any kernel fails, with NVRTC's log.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minivae.core import gaussian_fast, kernels, layers_fast, losses_fast, optim_fast  # noqa: E402

# The inputs the fast twins pass numbers for (Python floats): rates, betas, scales, bounds. The others are arrays.
NUMBERS = {"beta1", "beta2", "lr_t", "eps_t", "flush_below", "momentum", "lr", "one_minus_rho", "eps", "scale", "low",
           "high"}
KERNELS = [optim_fast.ADAM_KERNEL, optim_fast.RMSPROP_KERNEL, optim_fast.SGD_KERNEL, layers_fast.RELU_BACKWARD,
           losses_fast.BCE_LOGITS, losses_fast.BCE_PROBS, gaussian_fast.SAMPLE, gaussian_fast.SAMPLE_BACKWARD,
           gaussian_fast.KL, kernels.Kernel("T x", "T y", "y = x + x", "minivae_probe")]  # the last: backend.py's


def source(kernel, dtype, cupy):
    """The CUDA C++ CuPy generates for `kernel` called with 1-d arrays of dtype (and numbers among its inputs)."""
    from cupy._core import _carray, _kernel, _scalar, core

    made = cupy.ElementwiseKernel(kernel.inputs, kernel.outputs, kernel.body, kernel.name, options=kernels.OPTIONS)
    infos = [_kernel._ArgInfo(3, _scalar.CScalar, dtype, 0, True, True) if p.name in NUMBERS else
             _kernel._ArgInfo(1, cupy.ndarray, dtype, 1, True, True) for p in made.in_params]
    infos += [_kernel._ArgInfo(1, cupy.ndarray, dtype, 1, True, True) for _ in made.out_params]
    infos.append(_kernel._ArgInfo(2, _carray.Indexer, None, 1, True, True))
    code = _kernel._get_elementwise_kernel_code(tuple(infos), _kernel._TypeMap((("T", dtype),)), made.params,
                                                made.operation, made.name, made.preamble)
    return "".join(f"#include <{header}>\n" for header in core._cupy_header_list) + code


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="90", help="compute capability to compile for (default 90)")
    args = parser.parse_args()
    import cupy
    from cupy._core import core
    from cupy_backends.cuda.libs import nvrtc

    # CuPy's own options (its include folders, the C++ standard) with the kernels', for a GPU of this arch
    options = [*core.assemble_cupy_compiler_options(tuple(kernels.OPTIONS)), f"-arch=compute_{args.arch}"]
    print(f"CuPy {cupy.__version__}, NVRTC {'.'.join(map(str, nvrtc.getVersion()))}: "
          f"{' '.join(o for o in options if not o.startswith('-I'))}")
    failed = 0
    for kernel in KERNELS:
        for dtype in (np.dtype(np.float32), np.dtype(np.float64)):
            program = nvrtc.createProgram(source(kernel, dtype, cupy), "kernel.cu", [], [])
            try:
                nvrtc.compileProgram(program, options)
                print(f"{kernel.name:32s} {dtype.name}: compiled ({len(nvrtc.getPTX(program))} bytes of PTX)")
            except nvrtc.NVRTCError as err:
                failed += 1
                print(f"{kernel.name:32s} {dtype.name}: FAILED ({err})\n{nvrtc.getProgramLog(program)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
