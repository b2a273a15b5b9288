"""The CuPy stand-in (fake_cupy.py) is strict where CuPy is: these tests show it catches host/device mistakes.

They test the fake itself, so they run the same under either --backend.
"""

import os
import subprocess
import sys

import fake_cupy as cp
import numpy as np
import pytest
from conftest import REPO

from minivae.core import backend, layers

IMPLICIT = "Implicit conversion to a NumPy array is not allowed"
FAKE = REPO / "tests" / "fake_cupy.py"


@pytest.fixture
def device_array():
    return cp.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))


def test_np_asarray_of_a_device_array_is_refused_as_cupy_refuses_it(device_array):
    with pytest.raises(TypeError, match=IMPLICIT):
        np.asarray(device_array)


def test_numpy_testing_cannot_read_a_device_array(device_array):
    with pytest.raises(TypeError, match=IMPLICIT):
        np.testing.assert_array_equal(device_array, np.arange(6).reshape(2, 3))


@pytest.mark.parametrize("mix", [lambda d, h: d + h, lambda d, h: h * d, lambda d, h: cp.maximum(d, h),
                                 lambda d, h: d.__setitem__(..., h)], ids=["d+h", "h*d", "xp.maximum", "d[...]=h"])
def test_a_numpy_array_cannot_meet_a_device_array(device_array, mix):
    with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
        mix(device_array, np.ones((2, 3), dtype=np.float32))


def test_indexing_with_a_numpy_index_array_is_refused(device_array):
    with pytest.raises(TypeError, match="Unsupported type"):
        device_array[np.array([1, 0])]
    np.testing.assert_array_equal(device_array[cp.asarray(np.array([1, 0]))].get(), [[3, 4, 5], [0, 1, 2]])


def test_a_planted_numpy_call_on_a_device_array_is_caught(device_array):
    with pytest.raises(TypeError, match="numpy.exp was called on a device array"):
        np.exp(device_array)
    with pytest.raises(TypeError, match="numpy.concatenate was called on a device array"):
        np.concatenate([device_array, device_array])


def test_a_planted_numpy_call_in_a_layer_is_caught_on_the_fake_backend(monkeypatch):
    monkeypatch.setattr(backend, "import_cupy", lambda: cp)
    backend.use("cupy")
    monkeypatch.setattr(layers.backend, "xp", np)  # as if tanh were written with np.tanh
    with pytest.raises(TypeError, match="numpy.tanh was called on a device array"):
        layers.Tanh().forward(cp.ones((2, 3)))


def test_python_and_numpy_scalars_mix_freely_as_in_cupy(device_array):
    np.testing.assert_array_equal((np.float32(2) * device_array + 1.0).get(), 2 * np.arange(6).reshape(2, 3) + 1)


def test_the_way_back_to_numpy_is_get_or_to_numpy(device_array):
    host = backend.to_numpy(device_array)
    assert isinstance(host, np.ndarray) and isinstance(cp.asnumpy(device_array), np.ndarray)
    np.testing.assert_array_equal(host, device_array.get())


def test_reductions_give_0d_device_arrays_that_python_numbers_can_read(device_array):
    total = device_array.sum()
    assert isinstance(total, cp.ndarray) and total.shape == ()
    assert float(total) == 15.0 and int(device_array[1, 2]) == 5 and f"{total:.1f}" == "15.0"


def test_out_arguments_write_in_place_and_return_the_same_array(device_array):
    out = cp.empty((2, 3), dtype=np.float32)
    assert cp.multiply(device_array, 2, out=out) is out
    np.testing.assert_array_equal(out.get(), 2 * np.arange(6).reshape(2, 3))


def test_views_share_memory_with_their_base(device_array):
    device_array.reshape(-1)[0] = 7
    device_array.T[2, 1] += 1
    np.testing.assert_array_equal(device_array.get(), [[7, 1, 2], [3, 4, 6]])


def test_a_scalar_integer_index_gives_a_0d_view_as_cupy_does(device_array):
    total = device_array[1, 2]
    assert isinstance(total, cp.ndarray) and total.shape == ()
    total += 10  # NumPy's a[1, 2] is a copy; CuPy's (and the fake's) writes through
    assert float(device_array[1, 2]) == 15.0
    row = device_array[0]
    row[0] = -1
    assert float(device_array[0, 0]) == -1.0


def test_iterating_gives_views_of_the_rows(device_array):
    for row in device_array:
        row *= 0
    assert float(abs(device_array).sum()) == 0.0
    first = next(iter(device_array[0]))  # the elements of a 1-d array: 0-d views
    first += 3
    assert float(device_array[0, 0]) == 3.0


def test_floating_point_errors_never_warn_or_raise_whatever_errstate_says():
    big = cp.asarray(np.array([100.0, -1.0, 0.0], dtype=np.float32))
    with np.errstate(all="raise"):  # on NumPy arrays these would raise FloatingPointError
        overflowed, invalid, divided = cp.exp(big), cp.sqrt(big), 1.0 / big
    assert np.isinf(overflowed.get()[0]) and np.isnan(invalid.get()[1]) and np.isinf(divided.get()[2])


def test_cupy_has_no_errstate_of_its_own():
    for name in ("errstate", "seterr", "geterr"):
        assert not hasattr(cp, name)


@pytest.mark.parametrize("seed", [0, [3, 1, 4], np.random.SeedSequence(5)], ids=["int", "list", "SeedSequence"])
def test_the_generator_takes_the_seeds_cupy_takes_and_draws_on_the_device(seed):
    draws = cp.random.default_rng(seed).standard_normal((2, 3), dtype=np.float32)
    assert isinstance(draws, cp.ndarray) and draws.dtype == np.float32
    again = cp.random.default_rng(seed).standard_normal((2, 3), dtype="float32")
    np.testing.assert_array_equal(draws.get(), again.get())


def test_the_generator_draws_other_numbers_than_numpy():
    assert not np.array_equal(cp.random.default_rng(0).random(5).get(), np.random.default_rng(0).random(5))


def test_the_generators_state_is_a_device_address_with_nothing_to_save_or_restore():
    generator = cp.random.default_rng(0)
    assert callable(generator.bit_generator.state) and isinstance(generator.bit_generator.state(), int)
    first = generator.random(3).get()
    generator.bit_generator.state = "saved"  # as on CuPy: an attribute that shadows the method, no effect
    assert not np.array_equal(generator.random(3).get(), first)  # the stream went on


def test_a_script_runs_on_the_fake_with_its_folder_first_on_sys_path(tmp_path):
    (tmp_path / "helper.py").write_text("VALUE = 42\n")
    script = tmp_path / "script.py"
    script.write_text("import sys\nimport helper\nfrom minivae.core import backend\nbackend.use_device('gpu')\n"
                      "print(helper.VALUE, sys.argv[1:], type(backend.xp.zeros(1)).__name__)\n")
    out = subprocess.run([sys.executable, str(FAKE), str(script), "--quick"], capture_output=True, text=True,
                         env=os.environ | {"PYTHONPATH": str(REPO)}, timeout=60, check=True)
    assert out.stdout.strip() == "42 ['--quick'] FakeArray"


def test_minivae_backend_cupy_runs_a_module_on_the_fake(tmp_path):
    (tmp_path / "which_backend.py").write_text(
        "from minivae.core import backend\nprint(backend.name, type(backend.xp.zeros(1)).__name__)\n")
    out = subprocess.run([sys.executable, str(FAKE), "which_backend"], capture_output=True, text=True, timeout=60,
                         env=os.environ | {"PYTHONPATH": f"{REPO}{os.pathsep}{tmp_path}", "MINIVAE_BACKEND": "cupy"},
                         check=True)
    assert out.stdout.strip() == "cupy FakeArray"
