"""Tests for minivae.data: IDX reading, where files are looked for, safe downloads, binarization, batches.

Nothing here touches the real network: every test starts with the mirror lists emptied, and the download
tests serve files from a local HTTP server on 127.0.0.1.
"""

import functools
import gzip
import hashlib
import http.server
import re
import socket
import struct
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivae import data
from minivae.data import DataError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real environment leaks in: own HOME and cache, no MINIVAE_DATA_DIR, no Debian folder, no mirrors."""
    monkeypatch.delenv("MINIVAE_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "DEBIAN_DIR", str(tmp_path / "debian"))
    monkeypatch.setattr(data, "MIRRORS", {"mnist": [], "fashion-mnist": []})
    # An opener that ignores proxy variables, so 127.0.0.1 is reached directly.
    monkeypatch.setattr(data, "urlopen", urllib.request.build_opener(urllib.request.ProxyHandler({})).open)


def write_dataset(folder, n_train=20, n_test=10, seed=0):
    """Write the four IDX files of a small random dataset into folder. Image i of train has pixel 0 = i."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    train[:, 0, 0] = np.arange(n_train)
    data.write_idx(folder / "train-images-idx3-ubyte.gz", train)
    data.write_idx(folder / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, n_train, dtype=np.uint8))
    data.write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8))
    data.write_idx(folder / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, n_test, dtype=np.uint8))
    return folder


def sha256_of(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


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


# ---------------------------------------------------------------- where files are looked for

def test_search_dirs_order_is_data_dir_env_cache_then_debian(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIVAE_DATA_DIR", str(tmp_path / "env"))
    dirs = data.search_dirs("fashion-mnist", tmp_path / "arg")
    assert dirs == [tmp_path / "arg", tmp_path / "arg" / "fashion-mnist", tmp_path / "env",
                    tmp_path / "env" / "fashion-mnist", tmp_path / "cache" / "minivae" / "fashion-mnist",
                    tmp_path / "debian"]


def test_cache_defaults_to_home_dot_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.cache_dir("mnist") == tmp_path / "home" / ".cache" / "minivae" / "mnist"


def test_data_dir_beats_env(tmp_path, monkeypatch):
    write_dataset(tmp_path / "arg")
    write_dataset(tmp_path / "env")
    monkeypatch.setenv("MINIVAE_DATA_DIR", str(tmp_path / "env"))
    assert data.find_dir("mnist", tmp_path / "arg") == tmp_path / "arg"


def test_env_beats_cache(tmp_path, monkeypatch):
    write_dataset(tmp_path / "env")
    write_dataset(data.cache_dir("mnist"))
    monkeypatch.setenv("MINIVAE_DATA_DIR", str(tmp_path / "env"))
    assert data.find_dir("mnist") == tmp_path / "env"


def test_cache_used_when_nothing_else_given():
    write_dataset(data.cache_dir("mnist"))
    assert data.find_dir("mnist") == data.cache_dir("mnist")


def test_parent_folder_with_dataset_subfolder_is_accepted(tmp_path, monkeypatch):
    write_dataset(tmp_path / "arg" / "mnist")
    write_dataset(tmp_path / "env" / "fashion-mnist")
    monkeypatch.setenv("MINIVAE_DATA_DIR", str(tmp_path / "env"))
    assert data.find_dir("mnist", tmp_path / "arg") == tmp_path / "arg" / "mnist"
    assert data.find_dir("fashion-mnist") == tmp_path / "env" / "fashion-mnist"


def test_debian_folder_is_used_for_fashion_mnist_only(tmp_path):
    write_dataset(tmp_path / "debian")
    assert data.find_dir("fashion-mnist") == tmp_path / "debian"
    assert data.find_dir("mnist") is None


def test_folder_missing_one_file_does_not_count(tmp_path):
    write_dataset(tmp_path / "arg", n_train=7)
    write_dataset(data.cache_dir("mnist"), n_train=9)
    (tmp_path / "arg" / "t10k-labels-idx1-ubyte.gz").unlink()
    assert len(data.load("mnist", tmp_path / "arg", download=False).x_train) == 9


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


# ---------------------------------------------------------------- offline

def test_offline_message_names_missing_files_and_ways_to_provide_them():
    with pytest.raises(DataError) as info:
        data.load("mnist", download=False)
    message = str(info.value)
    assert "\n" not in message
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "--data-dir" in message and "MINIVAE_DATA_DIR" in message
    assert str(data.cache_dir("mnist")) in message
    assert "--dataset fashion-mnist" in message


def test_offline_message_names_what_the_given_data_dir_lacks(tmp_path):
    folder = write_dataset(tmp_path / "arg")
    (folder / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match=re.escape(f"missing train-images-idx3-ubyte.gz in {folder} ")):
        data.load("mnist", folder, download=False)


def test_offline_message_for_fashion_mentions_the_debian_package():
    with pytest.raises(DataError, match="apt install dataset-fashion-mnist"):
        data.load("fashion-mnist", download=False)


# ---------------------------------------------------------------- downloads from a local server

class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A local HTTP server serving tmp_path/www; yields (base URL, www folder)."""
    www = tmp_path / "www"
    www.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=www))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", www
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def served(tmp_path, server, monkeypatch):
    """Good files under www/good/, corrupted ones under www/bad/, the checksum table set to the good ones."""
    base, www = server
    good = write_dataset(www / "good", n_train=30)
    bad = write_dataset(www / "bad", n_train=30, seed=1)
    monkeypatch.setattr(data, "SHA256", {"mnist": {name: sha256_of(good / name) for name in data.FILES}})
    return base, good, bad


def cache_listing():
    return sorted(p.name for p in data.cache_dir("mnist").iterdir())


def test_download_verifies_and_renames_leaving_no_temp_files(served, monkeypatch, capsys):
    base, good, _ = served
    monkeypatch.setitem(data.MIRRORS, "mnist", [base + "good/"])
    ds = data.load("mnist")
    assert len(ds.x_train) == 30
    assert cache_listing() == sorted(data.FILES)
    assert all(sha256_of(data.cache_dir("mnist") / n) == sha256_of(good / n) for n in data.FILES)
    err = capsys.readouterr().err
    assert f"downloading train-images-idx3-ubyte.gz from {base}good/train-images-idx3-ubyte.gz ..." in err
    assert err.count("downloading") == 4


def test_checksum_mismatch_on_first_mirror_falls_back_to_second(served, monkeypatch):
    base, good, _ = served
    monkeypatch.setitem(data.MIRRORS, "mnist", [base + "bad/", base + "good/"])
    data.load("mnist")
    assert cache_listing() == sorted(data.FILES)
    assert all(sha256_of(data.cache_dir("mnist") / n) == sha256_of(good / n) for n in data.FILES)


def test_checksum_mismatch_on_all_mirrors_raises_and_leaves_no_file(served, monkeypatch):
    base, _, _ = served
    monkeypatch.setitem(data.MIRRORS, "mnist", [base + "bad/", base + "bad/"])
    with pytest.raises(DataError, match="checksum mismatch") as info:
        data.load("mnist")
    assert "\n" not in str(info.value) and "--data-dir" in str(info.value)
    assert cache_listing() == []


def test_file_missing_on_all_mirrors_raises(served, monkeypatch):
    base, _, _ = served
    monkeypatch.setitem(data.MIRRORS, "mnist", [base + "nothing/", base + "neither/"])
    with pytest.raises(DataError, match="404"):
        data.load("mnist")
    assert cache_listing() == []


def test_refused_connection_raises_data_error(monkeypatch):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setitem(data.MIRRORS, "mnist", [f"http://127.0.0.1:{port}/"])
    with pytest.raises(DataError, match="could not download"):
        data.load("mnist")
    assert cache_listing() == []


def test_offline_message_states_the_shared_reason_once_and_names_every_missing_file(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setitem(data.MIRRORS, "mnist", [f"http://127.0.0.1:{port}/a/", f"http://127.0.0.1:{port}/b/"])
    with pytest.raises(DataError) as info:
        data.load("mnist")
    message = str(info.value)
    assert "\n" not in message
    assert "all 2 mirrors failed" in message and message.count("refused") == 1
    assert "still missing: " + ", ".join(data.FILES) in message
    assert "--data-dir DIR" in message and "MINIVAE_DATA_DIR" in message


def test_only_missing_files_are_downloaded(served, monkeypatch, capsys):
    base, good, _ = served
    cache = data.cache_dir("mnist")
    cache.mkdir(parents=True)
    for name in data.FILES[:3]:
        (cache / name).write_bytes((good / name).read_bytes())
    monkeypatch.setitem(data.MIRRORS, "mnist", [base + "good/"])
    data.load("mnist")
    assert capsys.readouterr().err.count("downloading") == 1
    assert cache_listing() == sorted(data.FILES)


def test_interrupted_download_leaves_no_temp_file(monkeypatch):
    class Interrupted:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, size):
            raise KeyboardInterrupt

    monkeypatch.setattr(data, "urlopen", lambda url, timeout: Interrupted())
    monkeypatch.setitem(data.MIRRORS, "mnist", ["http://127.0.0.1:9/"])
    with pytest.raises(KeyboardInterrupt):
        data.load("mnist")
    assert cache_listing() == []


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
