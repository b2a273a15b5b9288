"""Tests for minivae.data: IDX reading, loading, binarization, batches. (Finding files: test_download.py.)"""

import gzip
import struct

import numpy as np
import pytest
from conftest import SHARED_DATA as SHARED
from conftest import write_dataset
from hypothesis import given, settings
from hypothesis import strategies as st

from minivae.run import data
from minivae.run.data import DataError

pytestmark = pytest.mark.usefixtures("isolated_data")


# ---------------------------------------------------------------- IDX files

def test_write_idx_then_read_idx_round_trips(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.arange(5, dtype=np.uint8)
    data.write_idx(tmp_path / "i.gz", images)
    data.write_idx(tmp_path / "l.gz", labels)
    assert np.array_equal(data.read_idx(tmp_path / "i.gz"), images)
    assert np.array_equal(data.read_idx(tmp_path / "l.gz"), labels)


def _gzip(path, payload):
    with gzip.open(path, "wb") as f:
        f.write(payload)


BAD_FILES = {
    "truncated payload": lambda p: _gzip(p, struct.pack(">IIII", 0x803, 3, 28, 28) + bytes(28 * 28 * 2)),
    "extra bytes": lambda p: _gzip(p, struct.pack(">II", 0x801, 3) + bytes(4)),
    "cut-off gzip stream": lambda p: p.write_bytes(gzip.compress(np.arange(5000, dtype=np.uint32).tobytes())[:200]),
    "wrong magic": lambda p: _gzip(p, struct.pack(">II", 0x12345678, 0)),
    "wrong dtype byte": lambda p: _gzip(p, struct.pack(">II", 0x00000D01, 0)),
    "cut-off header": lambda p: _gzip(p, struct.pack(">IH", 0x803, 1)),
    "empty": lambda p: _gzip(p, b""),
    "not gzip": lambda p: p.write_bytes(b"<html>404 Not Found</html>"),
}


@pytest.mark.parametrize("problem", BAD_FILES)
def test_read_idx_rejects_bad_file_with_one_line_naming_it(tmp_path, problem):
    path = tmp_path / "bad-file-idx3-ubyte.gz"
    BAD_FILES[problem](path)
    with pytest.raises(DataError) as info:
        data.read_idx(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message


def test_read_idx_of_missing_file_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        data.read_idx(tmp_path / "nothing.gz")


def test_write_idx_refuses_values_outside_a_byte(tmp_path):
    with pytest.raises(ValueError):
        data.write_idx(tmp_path / "x.gz", np.array([0, 256]))


# ---------------------------------------------------------------- loading

def test_load_gives_flat_float32_images_in_unit_range_and_int64_labels(tmp_path):
    ds = data.load("mnist", write_dataset(tmp_path / "d", n_train=20, n_test=10), download=False)
    assert ds.name == "mnist"
    assert ds.x_train.shape == (20, 784) and ds.x_test.shape == (10, 784)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64 and ds.y_test.shape == (10,)
    assert 0 <= ds.x_train.min() and ds.x_train.max() <= 1
    assert ds.x_val is None and ds.y_val is None


def test_load_rejects_label_count_that_does_not_match_images(tmp_path):
    folder = write_dataset(tmp_path / "d", n_train=20)
    data.write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(19, dtype=np.uint8))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz"):
        data.load("mnist", folder, download=False)


def test_unknown_dataset_raises_data_error():
    with pytest.raises(DataError, match="unknown dataset 'cifar'"):
        data.load("cifar")


def test_unknown_binarization_raises_data_error():
    with pytest.raises(DataError, match="unknown binarization"):
        data.load("mnist", binarize="sometimes")


# ---------------------------------------------------------------- binarization and validation

@pytest.fixture
def folder(tmp_path):
    return write_dataset(tmp_path / "d", n_train=200, n_test=100)


def test_threshold_binarization_is_x_above_one_half(folder):
    gray = data.load("mnist", folder, download=False)
    binary = data.load("mnist", folder, download=False, binarize="threshold")
    for split in ("x_train", "x_test"):
        assert getattr(binary, split).dtype == np.float32
        assert np.array_equal(getattr(binary, split), (getattr(gray, split) > 0.5).astype(np.float32))


def test_dynamic_binarization_keeps_train_gray_and_fixes_test_set_by_seed(folder):
    gray = data.load("mnist", folder, download=False)
    a = data.load("mnist", folder, download=False, binarize="dynamic", seed=3)
    b = data.load("mnist", folder, download=False, binarize="dynamic", seed=3)
    c = data.load("mnist", folder, download=False, binarize="dynamic", seed=4)
    assert np.array_equal(a.x_train, gray.x_train)
    assert set(np.unique(a.x_test)) <= {0.0, 1.0} and a.x_test.dtype == np.float32
    assert np.array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.x_test, c.x_test)
    assert a.binarize == "dynamic"


def test_dynamic_binarization_also_draws_the_validation_set(folder):
    ds = data.load("mnist", folder, download=False, binarize="dynamic", validation=0.25)
    assert set(np.unique(ds.x_val)) <= {0.0, 1.0}


def test_the_split_and_the_evaluation_sets_binary_draws_are_seedsequences_three_children(folder):
    """seeds.py's table: SeedSequence(seed).spawn(3) seeds the validation split, the test set's one Bernoulli draw
    and the validation set's, in that order (replayed here with NumPy alone)."""
    gray = data.load("mnist", folder, download=False)
    ds = data.load("mnist", folder, download=False, binarize="dynamic", validation=0.25, seed=6)
    split, test, val = (np.random.default_rng(child) for child in np.random.SeedSequence(6).spawn(3))
    order = split.permutation(200)
    val_ids, train_ids = np.sort(order[:50]), np.sort(order[50:])
    np.testing.assert_array_equal(ds.x_train, gray.x_train[train_ids])
    test_draw = test.random(gray.x_test.shape, dtype=np.float32) < gray.x_test
    val_draw = val.random((50, 784), dtype=np.float32) < gray.x_train[val_ids]
    np.testing.assert_array_equal(ds.x_test, test_draw.astype(np.float32))
    np.testing.assert_array_equal(ds.x_val, val_draw.astype(np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binarize_batch_mean_matches_x_mean_and_keeps_dtype(dtype):
    x = np.random.default_rng(0).random((500, 784)).astype(dtype)
    draws = data.binarize_batch(x, np.random.default_rng(1))
    assert draws.dtype == dtype and draws.shape == x.shape
    assert set(np.unique(draws)) <= {0.0, 1.0}
    assert abs(draws.mean() - x.mean()) < 0.005


def test_validation_split_is_disjoint_covering_and_seeded(folder):
    ds = data.load("mnist", folder, download=False, validation=0.25, seed=5)
    again = data.load("mnist", folder, download=False, validation=0.25, seed=5)
    assert len(ds.x_val) == 50 and len(ds.x_train) == 150 and len(ds.y_val) == 50
    ids = np.rint(np.concatenate([ds.x_train, ds.x_val])[:, 0] * 255).astype(int)  # write_dataset's pixel 0
    assert sorted(ids.tolist()) == list(range(200))
    assert np.array_equal(ds.x_val, again.x_val)


def test_validation_outside_unit_interval_raises(folder):
    with pytest.raises(DataError, match="validation"):
        data.load("mnist", folder, download=False, validation=1.0)


# ---------------------------------------------------------------- batches and the tiny dataset

@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 300), batch_size=st.integers(1, 64), seed=st.integers(0, 2**32 - 1))
def test_batches_cover_every_index_once(n, batch_size, seed):
    parts = list(data.batches(n, batch_size, np.random.default_rng(seed)))
    assert all(p.dtype == np.int64 for p in parts)
    flat = np.concatenate(parts).tolist() if parts else []
    assert sorted(flat) == list(range(n))
    assert all(len(p) == batch_size for p in parts[:-1])


def test_batches_without_rng_are_in_order_with_a_smaller_last_batch():
    parts = list(data.batches(10, 4))
    assert [p.tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_tiny_dataset_is_deterministic_with_all_classes():
    a, b = data.tiny_dataset(seed=2), data.tiny_dataset(seed=2)
    assert a.x_train.shape == (64, 784) and a.x_test.shape == (32, 784)
    assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int64
    assert 0 <= a.x_train.min() and a.x_train.max() <= 1
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert set(a.y_train.tolist()) == set(range(10)) == set(a.y_test.tolist())
    assert not np.array_equal(a.x_train, data.tiny_dataset(seed=3).x_train)


# ---------------------------------------------------------------- the real files, where this machine has them

@pytest.mark.skipif(not (SHARED / "fashion-mnist").is_dir(), reason="no shared Fashion-MNIST copy here")
def test_real_fashion_mnist_loads_from_data_dir():
    ds = data.load("fashion-mnist", SHARED / "fashion-mnist", download=False)
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.y_train.shape == (60000,) and set(np.unique(ds.y_test).tolist()) == set(range(10))
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0


@pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason="no shared MNIST copy here")
def test_real_mnist_test_images_read_as_idx():
    images = data.read_idx(SHARED / "mnist" / "t10k-images-idx3-ubyte.gz")
    labels = data.read_idx(SHARED / "mnist" / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.max() == 9
