"""A strict stand-in for CuPy, so that minivae's GPU code path runs in CI, where there is no GPU.

`python -m pytest --backend fake-cupy` makes `backend.use("cupy")` load this module instead of CuPy (see
conftest.py). Its arrays, `FakeArray`, hold a NumPy array and compute with it, but they guard the border between
host and device as CuPy does:

* no implicit conversion to NumPy: `np.asarray(a)`, `a.__array__()`, `np.testing.assert_*(a, ...)` raise CuPy's
  TypeError. The one way out is `a.get()` (or `asnumpy(a)`), which `backend.to_numpy` calls;
* no mixing with NumPy arrays: `a + numpy_array`, `numpy_array * a`, `xp.maximum(a, numpy_array)`,
  `a[numpy_index]`, `a[...] = numpy_array` raise, as CuPy's "Unsupported type <class 'numpy.ndarray'>" does;
* reductions give 0-d device arrays, not NumPy scalars (`a.sum()` is a FakeArray; `float()` of it is fine,
  as on CuPy, where it waits for the GPU);
* a scalar integer index gives a 0-d *view*, as CuPy's does (NumPy gives a copy): `total = b[o]; total += 1`
  writes into b. Iterating over an array gives views of its rows likewise;
* floating-point errors never warn or raise, whatever `np.errstate` says: CuPy's kernels do not report them
  (they just make inf and nan), and CuPy has no `errstate` of its own (`xp.errstate` is an AttributeError);
* `random.default_rng(seed)` takes what CuPy's does (None, an int, a sequence of ints, a SeedSequence), draws
  onto the device, and draws *other numbers* than NumPy's generator with the same seed. Its `bit_generator` is
  CuPy's XORWOW as it is: `state` is a *method* that returns the address of the generator's state on the device,
  so there is nothing to save or restore (and assigning `bit_generator.state = ...` silently does nothing).

Stricter than CuPy, on purpose (minivae's rule is that library code calls `backend.xp`, never numpy, on arrays):
CuPy lets `np.exp(a)` and `np.sum(a)` through to its own functions (NEP 13/18) and accepts a NumPy index array
(copying it to the GPU at every call); this fake refuses all three. A NumPy *scalar* mixes freely, as in CuPy.

What it cannot model:
* time: every operation runs at once on the CPU, so nothing here says how fast a GPU would be, how many kernel
  launches a step makes, or where a step waits for the device (`float(loss)`, a boolean mask's `a[mask]`);
* CuPy's user kernels: there is no `ElementwiseKernel` (or RawKernel, ReductionKernel), so code that fuses
  passes into one kernel (core/kernels.py) takes its plain path here. tests/kernel_emulator.py supplies an
  ElementwiseKernel that compiles the kernel's CUDA C body as C++ on the CPU, for the tests that check them;
* view and copy rules beyond the scalar index above: a FakeArray's slices, reshapes and transposes are views
  exactly when NumPy's are, while CuPy may copy where NumPy does not (or the reverse) in corners minivae does
  not rely on; the memory layout (strides, contiguity) of results may differ likewise;
* the CUDA libraries: NVRTC (every CuPy kernel is compiled at its first use), cuBLAS (the matrix products),
  cuRAND (the draws) and the driver are never loaded, so their absence or version cannot fail here
  (tests/core/test_backend.py fakes those failures on purpose);
* numerics: results are NumPy's bits; a GPU rounds sums in another order, and its exp, log, ... differ in the
  last bits;
* the rest of CuPy's API: only what minivae calls is known to behave; any other name of the namespace is
  NumPy's function wrapped, which may accept arguments CuPy would refuse.

The namespace is NumPy's, wrapped: `exp`, `zeros`, `einsum`, ... are NumPy's functions applied to the arrays
inside, with `out=` honoured, and every NumPy array they return wrapped again. Only `asarray` and `array` take
host data (that is CuPy's host-to-device copy).

`python tests/fake_cupy.py minivae.gradcheck --device gpu` runs a minivae command (a module) on the fake, and
`python tests/fake_cupy.py demos/002_latent_2d.py --quick` a script, as `python demos/002_latent_2d.py` would
(the script's folder first on sys.path).
"""

import numbers
import os
import runpy
import sys
import types

import numpy as np

IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. "
            "Please use `.get()` to construct a NumPy array explicitly.")


def _mixed(value):
    return TypeError(f"Unsupported type {type(value)}: a NumPy array cannot meet a device array "
                     "(move it with backend.to_device, or bring the device array back with backend.to_numpy)")


def _unwrap(value):
    """The NumPy array inside a FakeArray; scalars, dtypes, strings and None as they are; containers item by
    item. A NumPy array is refused: on a GPU it would be host memory meeting device memory."""
    if isinstance(value, FakeArray):
        return value._data
    if isinstance(value, np.ndarray):
        raise _mixed(value)
    if isinstance(value, (tuple, list)):
        return type(value)(_unwrap(v) for v in value)
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    return value


def _wrap(value):
    """NumPy arrays and NumPy scalars (what NumPy's reductions return) become FakeArrays, as on CuPy."""
    if isinstance(value, (np.ndarray, np.generic)):
        return FakeArray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _on_device(function, name):
    """NumPy's `function` made to take and return device arrays. An `out=` FakeArray is written in place and
    returned itself."""
    def call(*args, **kwargs):
        out = kwargs.get("out")
        with np.errstate(all="ignore"):  # CuPy's kernels never warn about inf or nan
            result = function(*_unwrap(args), **_unwrap(kwargs))
        if isinstance(out, FakeArray) and result is out._data:
            return out
        return _wrap(result)
    call.__name__ = call.__qualname__ = name
    return call


class FakeArray:
    """A device array: a NumPy array that refuses to meet NumPy (see the module docstring). Shape, dtype,
    operators, indexing and the methods (`reshape`, `sum`, `astype`, ...) behave as NumPy's."""

    __slots__ = ("_data",)

    def __init__(self, data):
        assert isinstance(data, np.ndarray), type(data)
        self._data = data

    # ---- the only ways to the host
    def get(self):
        """A NumPy copy: CuPy's device-to-host transfer."""
        return self._data.copy()

    def __array__(self, *args, **kwargs):
        raise TypeError(IMPLICIT)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        # `2.0 * a` never comes here; `np.float32(2) * a` does, and CuPy computes it: a NumPy scalar may mix.
        scalars_only = all(isinstance(v, (FakeArray, numbers.Number)) for v in inputs)
        if method == "__call__" and scalars_only and any(isinstance(v, np.generic) for v in inputs):
            return _on_device(ufunc, ufunc.__name__)(*inputs, **kwargs)
        for value in inputs:
            if isinstance(value, np.ndarray):
                raise _mixed(value)
        raise TypeError(f"numpy.{ufunc.__name__} was called on a device array; library code must call "
                        f"backend.xp.{ufunc.__name__} (fake_cupy refuses what CuPy would quietly dispatch)")

    def __array_function__(self, func, types, args, kwargs):
        raise TypeError(f"numpy.{func.__name__} was called on a device array; library code must call "
                        f"backend.xp.{func.__name__}, or convert with backend.to_numpy at an I/O boundary")

    # ---- Python scalars: allowed, as in CuPy (each one waits for the GPU there)
    def _scalar(self, kind):
        if self._data.size != 1:
            raise TypeError(f"only size-1 arrays can be converted to Python scalars (shape {self.shape})")
        return kind(self._data.reshape(()).item())

    def __float__(self):
        return self._scalar(float)

    def __int__(self):
        return self._scalar(int)

    def __bool__(self):
        if self._data.size != 1:
            raise ValueError("The truth value of an array with more than one element is ambiguous")
        return bool(self._data.reshape(()).item())

    def __format__(self, spec):
        return format(self._data.item(), spec) if self._data.ndim == 0 else format(str(self), spec)

    def __repr__(self):
        return "fake_" + repr(self._data).replace("\n", "\n     ")

    def __str__(self):
        return str(self._data)

    # ---- shape and layout
    def __len__(self):
        return len(self._data)

    def __iter__(self):
        return (self[i] for i in range(len(self)))  # views of the rows, as CuPy's are

    def __getitem__(self, key):
        key = _unwrap(key)
        result = self._data[key]
        if isinstance(result, np.generic):  # NumPy copied one element out; CuPy gives a 0-d view of it
            result = self._data[(*key, ...) if isinstance(key, tuple) else (key, ...)]
        return _wrap(result)

    def __setitem__(self, key, value):
        self._data[_unwrap(key)] = _unwrap(value)

    def __getattr__(self, name):
        """Every other NumPy attribute: `shape`, `dtype`, `T`, `reshape`, `sum`, `astype`, ...; arrays come back
        wrapped. The dunders (`__array_interface__`, ...) are not passed on: NumPy would convert through them."""
        if name.startswith("_"):
            raise AttributeError(name)
        attribute = getattr(self._data, name)
        return _on_device(attribute, name) if callable(attribute) else _wrap(attribute)


def _operator(name, in_place=False):
    """FakeArray's `name` operator (e.g. '__add__'): the NumPy array's, with the other operand unwrapped."""
    numpy_operator = getattr(np.ndarray, name)

    def apply(self, *other):
        with np.errstate(all="ignore"):  # CuPy's kernels never warn about inf or nan
            result = numpy_operator(self._data, *_unwrap(other))
        if result is NotImplemented:
            return result
        if in_place:
            self._data = result  # the same array, updated in place
            return self
        return _wrap(result)

    apply.__name__ = name
    return apply


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor"):
    setattr(FakeArray, f"__{_name}__", _operator(f"__{_name}__"))
    setattr(FakeArray, f"__r{_name}__", _operator(f"__r{_name}__"))
    setattr(FakeArray, f"__i{_name}__", _operator(f"__i{_name}__", in_place=True))
for _name in ("lt", "le", "eq", "ne", "gt", "ge", "neg", "pos", "abs", "invert"):
    setattr(FakeArray, f"__{_name}__", _operator(f"__{_name}__"))
FakeArray.__hash__ = None
ndarray = FakeArray


# ---- the cupy namespace: host-to-device and device-to-host transfers, then NumPy's functions on device arrays


def asarray(a, dtype=None):
    """To the device: a NumPy array or a list is copied; a FakeArray is itself (cast when dtype says so)."""
    if isinstance(a, FakeArray):
        return a if dtype is None or a.dtype == np.dtype(dtype) else a.astype(dtype)
    return FakeArray(np.array(a, dtype=dtype))


def array(a, dtype=None, copy=True):
    return FakeArray(np.array(a._data if isinstance(a, FakeArray) else a, dtype=dtype, copy=copy))


def asnumpy(a):
    """To the host: a NumPy copy of a device array (a NumPy array passes through)."""
    return a.get() if isinstance(a, FakeArray) else np.asarray(a)


NOT_IN_CUPY = {"errstate", "seterr", "geterr"}  # NumPy's floating-point error switches: CuPy has none


def __getattr__(name):
    """Any other name of the cupy namespace: NumPy's types and constants as they are, NumPy's functions
    made to work on device arrays (`exp`, `zeros`, `einsum`, `maximum`, ...)."""
    if name in NOT_IN_CUPY:
        raise AttributeError(f"module 'cupy' has no attribute {name!r}")
    attribute = getattr(np, name)
    if isinstance(attribute, (type, np.dtype, types.ModuleType)) or not callable(attribute):
        return attribute
    return _on_device(attribute, name)


lib = types.SimpleNamespace(stride_tricks=types.SimpleNamespace(
    as_strided=_on_device(np.lib.stride_tricks.as_strided, "as_strided")))


class _Device:
    """cupy.cuda.Device(): synchronize() has nothing to wait for here."""

    def __init__(self, device_id=0):
        self.id = device_id

    def synchronize(self):
        pass


# One GPU, a CUDA 13.0 runtime and a driver that supports it (the numbers CuPy's runtime module reports).
cuda = types.SimpleNamespace(Device=_Device, runtime=types.SimpleNamespace(
    getDeviceCount=lambda: 1, runtimeGetVersion=lambda: 13000, driverGetVersion=lambda: 13000))


# ---- random numbers, drawn on the device


class XORWOW:
    """cupy.random's default bit generator, as it is to its users: seeded through NumPy's SeedSequence like
    NumPy's, but its state lives on the device. `state()` is a method returning the address of that state (an
    int), not NumPy's dict of numbers: there is nothing to save in a checkpoint or to set back."""

    def __init__(self, seed=None):
        if isinstance(seed, FakeArray):
            seed = seed.get()
        self._seed_seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        # Another stream than np.random.default_rng(seed): a GPU run does not draw a CPU run's numbers.
        self._numpy = np.random.default_rng([*self._seed_seq.generate_state(2), 0xC0DA])

    def state(self):
        return id(self._numpy)  # stands for the device pointer CuPy returns


class Generator:
    """cupy.random.Generator's subset minivae may use: random, standard_normal, uniform, integers."""

    def __init__(self, bit_generator):
        self.bit_generator = bit_generator

    def random(self, size=None, dtype=np.float64, out=None):
        return self._draw(self.bit_generator._numpy.random(size, dtype=dtype), out)

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        return self._draw(self.bit_generator._numpy.standard_normal(size, dtype=dtype), out)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=np.float64):
        values = self.bit_generator._numpy.uniform(_unwrap(low), _unwrap(high), size)
        return FakeArray(np.asarray(values, dtype=dtype))

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False):
        values = self.bit_generator._numpy.integers(low, high, size, dtype=dtype, endpoint=endpoint)
        return FakeArray(np.asarray(values))

    @staticmethod
    def _draw(values, out):
        if out is None:
            return FakeArray(np.asarray(values))
        out[...] = FakeArray(np.asarray(values))
        return out


def default_rng(seed=None):
    """cupy.random.default_rng: a Generator over XORWOW(seed); a Generator passes through, a bit generator is
    wrapped."""
    if isinstance(seed, Generator):
        return seed
    return Generator(seed if isinstance(seed, XORWOW) else XORWOW(seed))


random = types.SimpleNamespace(default_rng=default_rng, Generator=Generator, XORWOW=XORWOW)


def run(target, args):
    """Run a minivae command (a module name, as `python -m` does) or a script (a path ending in .py, as `python
    script.py` does: its folder first on sys.path) with sys.argv = [target, *args], on this fake CuPy."""
    from minivae.core import backend

    fake = sys.modules[__name__]  # taken now: run_module and run_path put the target in __main__'s place
    backend.import_cupy = lambda: fake
    if backend.requested == "cupy" and backend.name != "cupy":  # MINIVAE_BACKEND=cupy failed at import:
        backend.use("cupy")  # the real CuPy was missing; the fake stands in
    sys.argv = [target, *args]
    if target.endswith(".py") or os.path.sep in target:
        sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
        runpy.run_path(target, run_name="__main__")
    else:
        runpy.run_module(target, run_name="__main__", alter_sys=True)


if __name__ == "__main__":  # python tests/fake_cupy.py MODULE_OR_SCRIPT [ARGS...]: run it on this fake CuPy
    if len(sys.argv) < 2:
        sys.exit("usage: python tests/fake_cupy.py MODULE_OR_SCRIPT [ARGS...]")
    run(sys.argv[1], sys.argv[2:])
