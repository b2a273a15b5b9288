"""Tests for minivae.download: where dataset files are looked for, and safe downloads.

Nothing here touches the real network: every test starts with the mirror lists emptied (conftest's
`isolated_data`), and the download tests serve files from a local HTTP server on 127.0.0.1.
"""

import functools
import hashlib
import http.server
import re
import socket
import threading
from pathlib import Path

import pytest
from conftest import write_dataset

from minivae.run import data, download
from minivae.run.data import DataError

pytestmark = pytest.mark.usefixtures("isolated_data")


def sha256_of(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------- where files are looked for

def test_cache_defaults_to_home_dot_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert download.cache_dir("mnist") == tmp_path / "home" / ".cache" / "minivae" / "mnist"


def test_data_dir_beats_env(tmp_path, monkeypatch):
    write_dataset(tmp_path / "arg")
    write_dataset(tmp_path / "env")
    monkeypatch.setenv("MINIVAE_DATA_DIR", str(tmp_path / "env"))
    assert download.locate("mnist", tmp_path / "arg") == tmp_path / "arg"


def test_env_beats_cache(tmp_path, monkeypatch):
    write_dataset(tmp_path / "env")
    write_dataset(download.cache_dir("mnist"))
    monkeypatch.setenv("MINIVAE_DATA_DIR", str(tmp_path / "env"))
    assert download.locate("mnist") == tmp_path / "env"


def test_cache_used_when_nothing_else_given():
    write_dataset(download.cache_dir("mnist"))
    assert download.locate("mnist") == download.cache_dir("mnist")


def test_parent_folder_with_dataset_subfolder_is_accepted(tmp_path, monkeypatch):
    write_dataset(tmp_path / "arg" / "mnist")
    write_dataset(tmp_path / "env" / "fashion-mnist")
    monkeypatch.setenv("MINIVAE_DATA_DIR", str(tmp_path / "env"))
    assert download.locate("mnist", tmp_path / "arg") == tmp_path / "arg" / "mnist"
    assert download.locate("fashion-mnist") == tmp_path / "env" / "fashion-mnist"


def test_debian_folder_is_used_for_fashion_mnist_only(tmp_path):
    write_dataset(tmp_path / "debian")
    assert download.locate("fashion-mnist", download=False) == tmp_path / "debian"
    with pytest.raises(DataError):
        download.locate("mnist", download=False)


def test_a_data_dir_missing_a_file_is_an_error_naming_the_folder_and_the_file(tmp_path):
    folder = write_dataset(tmp_path / "arg", n_train=7)
    write_dataset(download.cache_dir("mnist"), n_train=9)  # never silently used instead
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as info:
        download.locate("mnist", folder)
    message = str(info.value)
    assert f"--data-dir {folder} holds 3 of the 4 mnist files" in message
    assert "missing: t10k-labels-idx1-ubyte.gz" in message and "\n" not in message


def test_a_mistyped_data_dir_is_an_error_not_a_download(tmp_path):
    with pytest.raises(DataError, match=re.escape(f"--data-dir {tmp_path / 'typo'}: no such folder")):
        download.locate("mnist", tmp_path / "typo")


def test_a_data_dir_holding_other_files_says_what_it_holds(tmp_path):
    (tmp_path / "arg").mkdir()
    (tmp_path / "arg" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="holds none of the mnist files \\(notes.txt\\)"):
        download.locate("mnist", tmp_path / "arg")


def test_a_bad_minivae_data_dir_is_named_as_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIVAE_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="MINIVAE_DATA_DIR .*: no such folder"):
        download.locate("mnist")


def test_evaluation_needs_only_the_test_files(tmp_path):
    folder = write_dataset(tmp_path / "arg")
    for name in download.FILES[:2]:
        (folder / name).unlink()
    assert download.locate("mnist", folder, files=download.TEST_FILES) == folder


# ---------------------------------------------------------------- offline

def test_offline_message_names_missing_files_and_ways_to_provide_them():
    with pytest.raises(DataError) as info:
        data.load("mnist", download=False)
    message = str(info.value)
    assert "\n" not in message
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "--data-dir" in message and "MINIVAE_DATA_DIR" in message
    assert str(download.cache_dir("mnist")) in message
    assert "--dataset fashion-mnist" in message


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
    monkeypatch.setattr(download, "SHA256", {"mnist": {name: sha256_of(good / name) for name in download.FILES}})
    return base, good, bad


def cache_listing():
    return sorted(p.name for p in download.cache_dir("mnist").iterdir())


def no_cache_folder_left():
    """A failed download leaves nothing behind: not a file, nor the cache folders it made ($XDG_CACHE_HOME is a
    folder of the test's own that did not exist)."""
    cache = download.cache_dir("mnist").parents[1]
    return not cache.exists()


def test_download_verifies_and_renames_leaving_no_temp_files(served, monkeypatch, capsys):
    base, good, _ = served
    monkeypatch.setitem(download.MIRRORS, "mnist", [base + "good/"])
    ds = data.load("mnist")
    assert len(ds.x_train) == 30
    assert cache_listing() == sorted(download.FILES)
    assert all(sha256_of(download.cache_dir("mnist") / n) == sha256_of(good / n) for n in download.FILES)
    err = capsys.readouterr().err
    assert f"downloading train-images-idx3-ubyte.gz from {base}good/train-images-idx3-ubyte.gz ..." in err
    assert err.count("downloading") == 4


def test_checksum_mismatch_on_first_mirror_falls_back_to_second(served, monkeypatch):
    base, good, _ = served
    monkeypatch.setitem(download.MIRRORS, "mnist", [base + "bad/", base + "good/"])
    data.load("mnist")
    assert cache_listing() == sorted(download.FILES)
    assert all(sha256_of(download.cache_dir("mnist") / n) == sha256_of(good / n) for n in download.FILES)


def test_checksum_mismatch_on_all_mirrors_raises_and_leaves_no_file(served, monkeypatch):
    base, _, _ = served
    monkeypatch.setitem(download.MIRRORS, "mnist", [base + "bad/", base + "bad/"])
    with pytest.raises(DataError, match="checksum mismatch") as info:
        data.load("mnist")
    assert "\n" not in str(info.value) and "--data-dir" in str(info.value)
    assert no_cache_folder_left()


def test_file_missing_on_all_mirrors_raises(served, monkeypatch):
    base, _, _ = served
    monkeypatch.setitem(download.MIRRORS, "mnist", [base + "nothing/", base + "neither/"])
    with pytest.raises(DataError, match="404"):
        data.load("mnist")
    assert no_cache_folder_left()


def test_refused_connection_raises_data_error(monkeypatch):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setitem(download.MIRRORS, "mnist", [f"http://127.0.0.1:{port}/"])
    with pytest.raises(DataError, match="could not download"):
        data.load("mnist")
    assert no_cache_folder_left()


def test_offline_message_states_the_shared_reason_once_and_names_every_missing_file(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setitem(download.MIRRORS, "mnist", [f"http://127.0.0.1:{port}/a/", f"http://127.0.0.1:{port}/b/"])
    with pytest.raises(DataError) as info:
        data.load("mnist")
    message = str(info.value)
    assert "\n" not in message
    assert "all 2 mirrors failed" in message and message.count("refused") == 1
    assert "still missing: " + ", ".join(download.FILES) in message
    assert "--data-dir DIR" in message and "MINIVAE_DATA_DIR" in message


def test_only_missing_files_are_downloaded(served, monkeypatch, capsys):
    base, good, _ = served
    cache = download.cache_dir("mnist")
    cache.mkdir(parents=True)
    for name in download.FILES[:3]:
        (cache / name).write_bytes((good / name).read_bytes())
    monkeypatch.setitem(download.MIRRORS, "mnist", [base + "good/"])
    data.load("mnist")
    assert capsys.readouterr().err.count("downloading") == 1
    assert cache_listing() == sorted(download.FILES)


def test_interrupted_download_leaves_no_temp_file(monkeypatch):
    class Interrupted:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, size):
            raise KeyboardInterrupt

    monkeypatch.setattr(download, "urlopen", lambda url, timeout: Interrupted())
    monkeypatch.setitem(download.MIRRORS, "mnist", ["http://127.0.0.1:9/"])
    with pytest.raises(KeyboardInterrupt):
        data.load("mnist")
    assert no_cache_folder_left()


def test_a_failed_download_removes_only_the_folders_it_made(tmp_path, monkeypatch):
    cache = download.cache_dir("mnist")
    cache.parent.mkdir(parents=True)  # $XDG_CACHE_HOME/minivae was there before; <dataset> was not
    (cache.parent / "notes.txt").write_text("the user's")
    monkeypatch.setitem(download.MIRRORS, "mnist", ["http://127.0.0.1:9/"])
    monkeypatch.setattr(download, "urlopen", lambda url, timeout: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(DataError, match="offline"):
        data.load("mnist")
    assert not cache.exists() and sorted(p.name for p in cache.parent.iterdir()) == ["notes.txt"]


def test_a_failed_download_keeps_the_files_it_got(served, monkeypatch):
    base, good, _ = served
    monkeypatch.setitem(download.MIRRORS, "mnist", [base + "good/"])
    monkeypatch.setitem(download.SHA256["mnist"], download.FILES[3], "0" * 64)  # the last one never matches
    with pytest.raises(DataError, match="checksum mismatch"):
        data.load("mnist")
    assert cache_listing() == sorted(download.FILES[:3])
