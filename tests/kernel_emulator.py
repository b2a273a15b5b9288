"""CuPy's ElementwiseKernel for the CuPy stand-in: a kernel's CUDA C body compiled as C++ and run on the CPU.

minivae fuses elementwise passes into kernels on CuPy (minivae/core/kernels.py). The stand-in (fake_cupy.py) has
no ElementwiseKernel, so without a GPU those kernels would never run, and a typo in one would first show on a
GPU. This emulator lends the stand-in one: `install()` (or the `emulated_kernels` fixture of the tests) puts
`ElementwiseKernel` into fake_cupy's namespace, and then every fused kernel runs, compiled by the machine's C++
compiler, on the stand-in's arrays.

It does what CuPy's ElementwiseKernel does with its arguments (cupy/_core/_kernel.pyx, CuPy 14):
* the parameters "T x, float32 y, raw T z": a one-letter type is a placeholder, bound by the arrays passed (the
  outputs first, then the inputs; two arrays of one placeholder must have the same dtype: "Type is mismatched"),
  and numbers are converted to their parameter's type; a placeholder only numbers meet is an error, as on CuPy;
* kernel(*inputs) allocates the outputs in the broadcast shape of the arrays; kernel(*inputs, *outputs) writes
  into the outputs given, which must be device arrays of exactly that shape ("Out shape is mismatched");
* a NumPy array among the arguments is refused (CuPy's "Unsupported type"), and the parameter name `i` too;
* the generated code is CuPy's: for each element, `const T &x = ...` for an input array (so a body that writes
  to an input does not compile) and `T &y = ...` for an output, then the body; `typedef float T;` before it.

What it does not do: raw arrays, `_ind`, `size=`, the loop_prep and after_loop fragments (minivae's kernels use
none of them: they raise here); CUDA's own headers and intrinsics (__expf, rsqrt, threadIdx: a body using them does
not compile here, which is the point: minivae's kernels use only C's math functions, which both have). The
numbers are the CPU's: + - * / and sqrt round as on a GPU (IEEE, no fused multiply-add: -ffp-contract=off, as
NVRTC's --fmad=false that minivae passes), exp and log are glibc's, a bit or two from CUDA's and NumPy's.

`python tests/kernel_emulator.py MODULE_OR_SCRIPT [ARGS...]` runs a minivae command or script on the stand-in
with emulated kernels, as `python tests/fake_cupy.py` runs it without them.
"""

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import fake_cupy
import numpy as np

COMPILER = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++") or shutil.which("clang++")
FLAGS = ["-O2", "-ffp-contract=off", "-fno-fast-math", "-std=c++17", "-shared", "-fPIC", "-x", "c++"]
CACHE = Path(tempfile.gettempdir()) / f"minivae-kernel-emulator-{os.getuid() if hasattr(os, 'getuid') else 0}"
C_TYPES = {np.dtype(np.float32): ("float", ctypes.c_float), np.dtype(np.float64): ("double", ctypes.c_double),
           np.dtype(np.int32): ("int", ctypes.c_int32), np.dtype(np.int64): ("long long", ctypes.c_int64),
           np.dtype(np.bool_): ("bool", ctypes.c_bool)}


class Parameter:
    """One parameter of a kernel, parsed as CuPy parses "raw T name" or "float32 name"."""

    def __init__(self, text, is_input):
        words = text.split()
        if len(words) < 2:
            raise Exception(f"Syntax error: {text}")
        kind, self.name = words[-2:]
        self.placeholder = kind if len(kind) == 1 else None
        self.dtype = None if self.placeholder else np.dtype(kind)
        self.is_input = is_input
        for word in words[:-2]:
            if word == "raw":
                raise NotImplementedError("the kernel emulator has no raw arrays")
            raise Exception(f'Unknown keyword "{word}"')


def parameters(text, is_input):
    return [Parameter(part, is_input) for part in text.strip().split(",")] if text.strip() else []


class ElementwiseKernel:
    """cupy.ElementwiseKernel(in_params, out_params, operation, name, ...), run on the CPU (see the module
    docstring). Only `options` among the keyword arguments is taken (and needs nothing: no fused multiply-adds
    here in any case)."""

    def __init__(self, in_params, out_params, operation, name="kernel", reduce_dims=True, preamble="",
                 no_return=False, return_tuple=False, **kwargs):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f'Invalid kernel name: "{name}"')
        unknown = set(kwargs) - {"options"}
        if unknown:
            raise NotImplementedError(f"the kernel emulator does not take {sorted(unknown)}")
        self.inputs, self.outputs = parameters(in_params, True), parameters(out_params, False)
        if "i" in [p.name for p in self.inputs + self.outputs]:
            raise ValueError("Can not use 'i' as a parameter name")
        self.operation, self.name, self.preamble = operation, name, preamble
        self.no_return, self.return_tuple = no_return, return_tuple
        self._functions = {}  # (parameters' kinds and types, placeholders' types) -> the compiled function

    def __call__(self, *args, **kwargs):
        if set(kwargs) - {"stream", "block_size"}:
            raise TypeError(f"Wrong arguments {kwargs}")
        n_in, n_all = len(self.inputs), len(self.inputs) + len(self.outputs)
        if len(args) not in (n_in, n_all):
            raise TypeError(f"Wrong number of arguments for {self.name!r}. It must be either {n_in} or {n_all} "
                            f"(with outputs), but given {len(args)}.")
        for arg in args:
            if isinstance(arg, np.ndarray):
                raise TypeError(f"Unsupported type {type(arg)}")
        ins, outs = list(args[:n_in]), list(args[n_in:])
        for arg in outs:
            if not isinstance(arg, fake_cupy.FakeArray):
                raise TypeError("Output arguments must be cupy.ndarray")
        types, bound = self._bind(ins, outs)
        arrays = [a._data for a in ins + outs if isinstance(a, fake_cupy.FakeArray)]
        if not arrays:
            raise ValueError("Loop size is undecided.")
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
        if any(a.shape != shape for a in outs):
            raise ValueError("Out shape is mismatched")
        out_arrays = [a._data for a in outs] or [np.empty(shape, dtype=types[p.name]) for p in self.outputs]
        self._run(ins, out_arrays, shape, types, bound)
        results = tuple(outs) or tuple(fake_cupy.FakeArray(a) for a in out_arrays)
        if self.no_return:
            return None
        return results[0] if len(results) == 1 and not self.return_tuple else results

    def _bind(self, ins, outs):
        """Each parameter's dtype by name, and each placeholder's, bound by the arrays as CuPy binds them (the
        outputs first)."""
        bound = {}
        pairs = list(zip(self.outputs, outs)) + list(zip(self.inputs, ins))
        for param, arg in pairs:
            if not isinstance(arg, fake_cupy.FakeArray):
                continue
            if param.dtype is not None and arg.dtype != param.dtype:
                raise TypeError(f"Type is mismatched. {param.name} {arg.dtype} {param.dtype}")
            if param.placeholder:
                if bound.setdefault(param.placeholder, arg.dtype) != arg.dtype:
                    raise TypeError(f"Type is mismatched. {param.name} {arg.dtype} {bound[param.placeholder]} "
                                    f"{param.placeholder}")
        types = {}
        for param in self.inputs + self.outputs:
            if param.placeholder and param.placeholder not in bound:
                raise KeyError(param.placeholder)  # what CuPy raises: no array says what the placeholder is
            types[param.name] = param.dtype if param.dtype is not None else bound[param.placeholder]
        return types, bound

    def _run(self, ins, out_arrays, shape, types, bound):
        argtypes, values, copy_back = [ctypes.c_int64], [int(np.prod(shape))], []
        signature = []
        for param, arg in zip(self.inputs, ins):
            ctype, c_scalar = C_TYPES[types[param.name]]
            if isinstance(arg, fake_cupy.FakeArray):
                data = np.ascontiguousarray(np.broadcast_to(arg._data, shape))
                signature.append(("in-array", param.name, ctype))
                argtypes.append(ctypes.c_void_p)
                values.append(data.ctypes.data)
                copy_back.append((None, data))  # kept alive until the call returns
            else:
                signature.append(("scalar", param.name, ctype))
                argtypes.append(c_scalar)
                values.append(types[param.name].type(arg).item())
        for param, array in zip(self.outputs, out_arrays):
            ctype = C_TYPES[types[param.name]][0]
            work = array if array.flags.c_contiguous else np.ascontiguousarray(array)
            signature.append(("out-array", param.name, ctype))
            argtypes.append(ctypes.c_void_p)
            values.append(work.ctypes.data)
            copy_back.append((array, work))
        key = (tuple(signature), tuple(sorted(bound.items())))
        if key not in self._functions:
            function = getattr(ctypes.CDLL(str(self._library(self.source(signature, bound)))), self.name)
            function.argtypes, function.restype = argtypes, None
            self._functions[key] = function
        self._functions[key](*values)
        for array, work in copy_back:
            if array is not None and work is not array:
                array[...] = work

    def _library(self, source):
        """The compiled kernel: a shared library, cached on disk by its source."""
        CACHE.mkdir(exist_ok=True)
        library = CACHE / f"{self.name}-{hashlib.sha256(source.encode()).hexdigest()[:20]}.so"
        if not library.exists():
            if COMPILER is None:
                raise RuntimeError("no C++ compiler found to emulate ElementwiseKernel (set CXX)")
            (CACHE / f"{library.stem}.cpp").write_text(source)
            partial = library.with_suffix(f".{os.getpid()}.tmp")
            result = subprocess.run([COMPILER, *FLAGS, str(CACHE / f"{library.stem}.cpp"), "-o", str(partial)],
                                    capture_output=True, text=True)
            if result.returncode:
                raise RuntimeError(f"kernel {self.name} does not compile:\n{result.stderr}\n{source}")
            os.replace(partial, library)
        return library

    def source(self, signature, bound):
        """The C++ of the kernel: CuPy's per-element references, then the body, in a loop over the elements.
        signature: (kind, name, C type) of each parameter; bound: the placeholders' dtypes."""
        typedefs = "".join(f"typedef {C_TYPES[dtype][0]} {name};\n" for name, dtype in sorted(bound.items()))
        params = ", ".join(f"const {ctype} {name}" if kind == "scalar" else
                           f"{'const ' if kind == 'in-array' else ''}{ctype}* _raw_{name}"
                           for kind, name, ctype in signature)
        references = "".join(f"    const {ctype} &{name} = _raw_{name}[i];\n" if kind == "in-array" else
                             f"    {ctype} &{name} = _raw_{name}[i];\n"
                             for kind, name, ctype in signature if kind != "scalar")
        return (f"#include <cmath>\n#include <cstdint>\nusing namespace std;\n{typedefs}{self.preamble}\n"
                f'extern "C" void {self.name}(long long _n, {params}) {{\n'
                f"  for (long long i = 0; i < _n; ++i) {{\n{references}    {self.operation};\n  }}\n}}\n")


def install():
    """Give the CuPy stand-in this ElementwiseKernel (what the `emulated_kernels` fixture does for one test)."""
    fake_cupy.ElementwiseKernel = ElementwiseKernel


if __name__ == "__main__":  # python tests/kernel_emulator.py MODULE_OR_SCRIPT [ARGS...]
    if len(sys.argv) < 2:
        sys.exit("usage: python tests/kernel_emulator.py MODULE_OR_SCRIPT [ARGS...]")
    install()
    fake_cupy.run(sys.argv[1], sys.argv[2:])
