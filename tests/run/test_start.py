"""Tests for minivae.run.start: a run's claim on its folder (made, locked, released; only what it made removed),
the temporary files it clears (only its own), and the data fingerprint a resume is checked against."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, write_dataset

from minivae.run import checkpoint, data, files, presets, start, training

OLD_FIXTURE = REPO / "tests" / "fixtures" / "v0.1.0"


def test_a_claim_makes_the_folder_locks_it_and_removes_what_it_made_when_empty(tmp_path):
    out = tmp_path / "a" / "b" / "run"
    with start.claim_folder(out) as claim:
        assert claim.created and claim.made == [tmp_path / "a", tmp_path / "a" / "b", out]
        assert f"process {os.getpid()} (" in (out / start.LOCK).read_text()
    assert not (tmp_path / "a").exists()


def test_a_second_claim_is_refused_naming_the_process_that_holds_the_folder(tmp_path):
    out = tmp_path / "run"
    with start.claim_folder(out):
        with pytest.raises(start.FolderInUse, match=rf"is in use by process {os.getpid()} \("):
            start.claim_folder(out)
        assert out.is_dir()  # the refused claim removed nothing
    with start.claim_folder(out):  # released: free again
        pass


def test_a_claim_never_removes_a_folder_it_did_not_make(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    with start.claim_folder(out) as claim:
        assert not claim.created and claim.made == []
    assert out.is_dir() and list(out.iterdir()) == []


def test_a_claim_leaves_a_folder_it_made_once_it_holds_a_file(tmp_path):
    out = tmp_path / "run"
    with start.claim_folder(out):
        (out / "checkpoint.npz").write_bytes(b"saved")
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.npz"]  # the lock file is gone, the save is not


def test_a_new_folder_must_not_exist(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError):
        start.claim_folder(tmp_path / "taken", new=True)


def test_a_lock_file_left_by_a_killed_run_locks_nothing(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / start.LOCK).write_text("process 99999999 (python -m minivae.train)\n")  # its process is gone
    with start.claim_folder(out):
        pass


def test_only_minivaes_own_temporary_files_are_cleared(tmp_path):
    ours = [tmp_path / f"{files.TEMP_PREFIX}checkpoint.npz.k3j9.tmp.npz", tmp_path / f"{files.TEMP_PREFIX}a.json.x.tmp"]
    theirs = [tmp_path / name for name in (".config.json.tmp", ".checkpoint.npz.x.tmp.npz", ".minivae-tmp-x.tmp",
                                           "notes.tmp", "minivae-tmp.a.b.tmp")]
    for path in ours + theirs:
        path.write_text("x")
    with start.claim_folder(tmp_path):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in theirs)


def test_make_folders_says_which_it_made_and_remove_made_keeps_one_that_holds_a_file(tmp_path):
    made = files.make_folders(tmp_path / "a" / "b")
    assert made == [tmp_path / "a", tmp_path / "a" / "b"]
    (tmp_path / "a" / "note").write_text("someone else's")
    files.remove_made(made)
    assert not (tmp_path / "a" / "b").exists() and (tmp_path / "a" / "note").exists()


def test_make_folders_that_fails_part_way_removes_the_parents_it_made(tmp_path):
    with pytest.raises(OSError):
        files.make_folders(tmp_path / "a" / "b" / ("c" * 300))  # a name past every file system's limit
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- the data a run trains on


def test_the_folder_a_checkpoint_recorded_is_used_only_while_it_holds_the_files(tmp_path):
    folder = write_dataset(tmp_path / "data", n_train=8, n_test=4)
    ckpt = checkpoint.Checkpoint(path=tmp_path / "c.npz", config={}, epoch=0, step=0, history=[], rng_state=None,
                                 extra={"data_folder": str(folder)}, params={},
                                 optimizer_state={})
    assert start.recorded_data_folder(ckpt) == str(folder)
    (folder / data.FILES[0]).unlink()  # a training file: evaluating needs only the test files
    assert start.recorded_data_folder(ckpt) == str(folder)
    assert start.recorded_data_folder(ckpt, data.FILES) is None
    ckpt.extra["data_folder"] = "/etc"  # a folder, but not of this dataset: the usual places instead
    assert start.recorded_data_folder(ckpt) is None


def dataset_in(folder):
    return data.load("mnist", folder)


@pytest.mark.parametrize("preset, covers", [("default", set()), ("cvae", {"labels_sha256"}),
                                            ("m2", {"labels_sha256", "labelled_sha256"})])
def test_the_fingerprint_covers_the_labels_of_a_model_that_reads_them(preset, covers, tmp_path):
    dataset = dataset_in(write_dataset(tmp_path / "data", n_train=64, n_test=16))
    config = presets.config_for(preset, labels=20)
    now = training.fingerprint(dataset, config)
    assert set(now) == {"name", "train", "test", "images_sha256"} | covers
    relabelled = dataset_in(write_dataset(tmp_path / "data", n_train=64, n_test=16))
    relabelled.y_train = np.roll(relabelled.y_train, 1)
    differs = {key for key, value in training.fingerprint(relabelled, config).items() if now[key] != value}
    assert differs == covers


def test_one_changed_pixel_anywhere_changes_the_fingerprint(tmp_path):
    dataset = dataset_in(write_dataset(tmp_path / "data", n_train=200, n_test=16))
    before = training.fingerprint(dataset, presets.config_for())
    dataset.x_train[150, 400] += 1 / 255  # not one of the images the 0.1 fingerprint sampled (every 97th)
    assert training.fingerprint(dataset, presets.config_for())["images_sha256"] != before["images_sha256"]


@pytest.mark.parametrize("preset, covers", [("default", {"validation_sha256"}),
                                            ("cvae", {"validation_sha256", "validation_labels_sha256"})])
def test_with_a_validation_split_the_fingerprint_covers_its_images_and_labels(preset, covers, tmp_path):
    folder = write_dataset(tmp_path / "data", n_train=64, n_test=16)
    dataset = data.load("mnist", folder, validation=0.25)
    config = presets.config_for(preset, validation=0.25)
    now = training.fingerprint(dataset, config)
    assert covers <= set(now)
    changed = data.load("mnist", folder, validation=0.25)
    changed.x_val[-1, 0] += 1 / 255  # the last validation image
    changed.y_val = np.roll(changed.y_val, 1)
    differs = {key for key, value in training.fingerprint(changed, config).items() if now[key] != value}
    assert differs == covers


def test_a_checkpoint_saved_before_the_validation_hash_still_resumes_on_its_data(tmp_path):
    dataset = data.load("mnist", write_dataset(tmp_path / "data", n_train=64, n_test=16), validation=0.25)
    config = presets.config_for("default", hidden=[8], latent=2, batch_size=16, epochs=1, validation=0.25)
    config, model, optimizer, state = start.begin(config, dataset)
    state.dataset_fingerprint = {k: v for k, v in state.dataset_fingerprint.items() if not k.startswith("validation")}
    training.save_checkpoint(Path(tmp_path / "c.npz"), model, optimizer, config, state)
    start.begin(config, dataset, checkpoint.load(tmp_path / "c.npz"))  # no CheckpointError
    dataset.x_train[0, 0] += 1 / 255
    with pytest.raises(checkpoint.CheckpointError, match="its training images differ"):
        start.begin(config, dataset, checkpoint.load(tmp_path / "c.npz"))


def test_a_checkpoint_of_0_1_resumes_on_its_data_and_is_refused_on_other_images(tmp_path):
    ckpt = checkpoint.load(OLD_FIXTURE / "cvae")
    assert "sample_sha256" in ckpt.extra["dataset"]
    same = dataset_in(OLD_FIXTURE / "data")
    config = presets.complete(ckpt.config)
    start.check_same_data(ckpt, training.fingerprint(same, config), same)
    other_folder = shutil.copytree(OLD_FIXTURE / "data", tmp_path / "other")
    images = data.read_idx(other_folder / data.FILES[0]).copy()
    images[0, 0, 0] ^= 1  # image 0: sampled by 0.1's fingerprint
    data.write_idx(other_folder / data.FILES[0], images)
    other = dataset_in(other_folder)
    with pytest.raises(checkpoint.CheckpointError, match="its training images differ"):
        start.check_same_data(ckpt, training.fingerprint(other, config), other)


def test_a_new_checkpoint_is_refused_on_relabelled_data(tmp_path):
    dataset = dataset_in(write_dataset(tmp_path / "data", n_train=64, n_test=16))
    config = presets.config_for("cvae", hidden=[8], latent=2, batch_size=16, epochs=1)
    config, model, optimizer, state = start.begin(config, dataset)
    training.save_checkpoint(Path(tmp_path / "c.npz"), model, optimizer, config, state)
    ckpt = checkpoint.load(tmp_path / "c.npz", presets.config_problem)
    dataset.y_train = np.roll(dataset.y_train, 1)
    with pytest.raises(checkpoint.CheckpointError, match=r"c.npz was trained on other data \(its training labels"):
        start.begin(config, dataset, ckpt)
