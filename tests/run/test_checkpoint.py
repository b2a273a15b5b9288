"""Tests for minivae.checkpoint: a round trip keeps everything, saving is atomic, damage is one clear error."""

import os
import tracemalloc

import numpy as np
import pytest
from conftest import forge_shape

from minivae.core import backend
from minivae.core.optim import SGD, Adam
from minivae.run import checkpoint, presets
from minivae.run.checkpoint import CheckpointError

CONFIG = presets.config_for("default", hidden=[16], latent=3)
HISTORY = [{"epoch": 1, "train": {"loss": 210.5}, "test": {"loss": 208.25, "recon": 190.0, "kl": 18.25}}]
on_device, on_host = backend.to_device, backend.to_numpy


def make(config=CONFIG, seed=0, optimizer=Adam):
    model = presets.build_model(config, rng=np.random.default_rng(seed))
    return model, optimizer(model.params)


def trained(seed=0):
    """A model and optimizer a few steps into training, so every state array is non-trivial."""
    model, opt = make(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(3):
        model.step(on_device(rng.random((8, 784), dtype=np.float32)), rng=rng)
        opt.step(model.grads)
    return model, opt


def save(path, model, opt, **kwargs):
    return checkpoint.save(path, model, opt, CONFIG, epoch=2, step=5, history=HISTORY, **kwargs)


def one_line_naming(err, path):
    text = str(err.value)
    return "\n" not in text and str(path) in text


def test_round_trip_keeps_parameters_optimizer_state_and_metadata(tmp_path):
    model, opt = trained()
    noise = np.random.default_rng(7)
    noise.standard_normal(3)
    path = save(tmp_path / "c.npz", model, opt, rng_state=noise.bit_generator.state, extra={"sums": [1.5, 2]},
                arrays={"frames": np.arange(6, dtype=np.uint8)})
    ckpt = checkpoint.load(path)
    assert (ckpt.config, ckpt.epoch, ckpt.step, ckpt.history) == (CONFIG, 2, 5, HISTORY)
    assert ckpt.extra == {"sums": [1.5, 2]}
    assert np.array_equal(ckpt.arrays["frames"], np.arange(6))
    assert ckpt.params.keys() == model.params.keys()
    assert all(np.array_equal(ckpt.params[k], on_host(v)) for k, v in model.params.items())
    state = opt.state_dict()
    assert all(np.array_equal(ckpt.optimizer_state[k], on_host(v)) for k, v in state.items())
    restored = np.random.default_rng(0)
    restored.bit_generator.state = ckpt.rng_state
    assert np.array_equal(restored.standard_normal(5), noise.standard_normal(5))


def test_restore_writes_in_place_so_the_layers_compute_with_the_saved_weights(tmp_path):
    model, opt = trained()
    path = save(tmp_path / "c.npz", model, opt)
    fresh, fresh_opt = make(seed=1)
    layer_weights = fresh.encoder.layers[0].params["W"]
    checkpoint.restore(fresh, fresh_opt, checkpoint.load(path))
    assert fresh.params["encoder.0.W"] is layer_weights  # the same array, now holding the saved values
    x = on_device(np.random.default_rng(3).random((4, 784), dtype=np.float32))
    assert np.array_equal(on_host(fresh.decode(fresh.encode(x)[0])), on_host(model.decode(model.encode(x)[0])))
    assert fresh_opt.t == opt.t
    assert all(np.array_equal(on_host(fresh_opt.state_dict()[k]), on_host(v))
               for k, v in opt.state_dict().items() if k != "t")


def test_load_accepts_the_run_folder(tmp_path):
    model, opt = make()
    save(tmp_path / checkpoint.FILENAME, model, opt)
    assert checkpoint.load(tmp_path).path == tmp_path / checkpoint.FILENAME


def test_save_leaves_no_temporary_files(tmp_path):
    model, opt = make()
    save(tmp_path / "c.npz", model, opt)
    save(tmp_path / "c.npz", model, opt)  # overwriting as well
    assert sorted(os.listdir(tmp_path)) == ["c.npz"]


def test_ctrl_c_during_save_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    model, opt = make()
    path = save(tmp_path / "c.npz", model, opt)
    before = path.read_bytes()

    def interrupted_savez(file, **arrays):
        file.write(b"PK half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted_savez)
    trained_model, _ = trained()
    with pytest.raises(KeyboardInterrupt):
        save(path, trained_model, opt)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["c.npz"]


def test_truncated_file_is_a_one_line_error_naming_it(tmp_path):
    model, opt = make()
    path = save(tmp_path / "c.npz", model, opt)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError) as err:
        checkpoint.load(path)
    assert one_line_naming(err, path)


def test_random_bytes_are_a_one_line_error_naming_the_file(tmp_path):
    path = tmp_path / "c.npz"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(CheckpointError) as err:
        checkpoint.load(path)
    assert one_line_naming(err, path)


def test_npz_without_the_metadata_is_a_one_line_error(tmp_path):
    path = tmp_path / "c.npz"
    np.savez(path, format=np.array(checkpoint.FORMAT), **{"param/mu.b": np.zeros(3)})
    with pytest.raises(CheckpointError, match="meta") as err:
        checkpoint.load(path)
    assert one_line_naming(err, path)


def test_missing_file_is_a_one_line_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        checkpoint.load(tmp_path / "nope.npz")


def test_another_architecture_is_refused_naming_the_parameter_and_nothing_is_written(tmp_path):
    model, opt = make()
    path = save(tmp_path / "c.npz", model, opt)
    wider, wider_opt = make(presets.config_for("default", hidden=[24], latent=3))
    before = {k: on_host(v).copy() for k, v in wider.params.items()}
    with pytest.raises(CheckpointError, match=r"'encoder\.0\.W'.*\(784, 16\).*\(784, 24\)") as err:
        checkpoint.restore(wider, wider_opt, checkpoint.load(path))
    assert one_line_naming(err, path)
    assert all(np.array_equal(before[k], on_host(v)) for k, v in wider.params.items())


def test_a_deeper_model_is_refused_naming_the_missing_parameter(tmp_path):
    model, opt = make()
    path = save(tmp_path / "c.npz", model, opt)
    deeper, deeper_opt = make(presets.config_for("default", hidden=[16, 16], latent=3))
    with pytest.raises(CheckpointError, match="'encoder.2.W'"):
        checkpoint.restore(deeper, deeper_opt, checkpoint.load(path))


def test_another_optimizer_is_refused(tmp_path):
    model, opt = make()
    path = save(tmp_path / "c.npz", model, opt)
    other, sgd = make(optimizer=SGD)
    with pytest.raises(CheckpointError, match="another optimizer"):
        checkpoint.restore(other, sgd, checkpoint.load(path))


@pytest.mark.parametrize("entry, shape", [("param/encoder.0.W", (10**9,)), ("optim/t", (10**5, 10**5)),
                                          ("meta", (10**6,)), ("param/mu.b", (1,))])
def test_a_declared_size_that_the_file_does_not_hold_is_refused_before_anything_is_allocated(entry, shape, tmp_path):
    model, opt = make()
    path = save(tmp_path / "c.npz", model, opt)
    forge_shape(path, entry, shape)
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError) as err:
            checkpoint.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert one_line_naming(err, path) and f"the entry {entry!r} declares" in str(err.value)
    assert peak < 20 * 2**20  # bytes: the checkpoint's own size, not the gigabytes its header asks for


def test_a_size_the_zip_directory_claims_beyond_the_file_is_refused(tmp_path):
    model, opt = make()
    path = save(tmp_path / "c.npz", model, opt)
    data = bytearray(path.read_bytes())
    # the entry's record in the zip's central directory: 46 bytes, then its name; sizes at 20 (stored) and 24
    record = data.find(b"param/encoder.0.W.npy", data.find(b"PK\x01\x02")) - 46
    data[record + 20:record + 28] = (2**31).to_bytes(4, "little") * 2
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="claims 2,147,483,648 bytes, more than the file can hold") as err:
        checkpoint.load(path)
    assert one_line_naming(err, path)


@pytest.mark.parametrize("key, value, says", [
    ("optim/t", np.array(np.nan), "step count t"), ("optim/t", np.array(1.5), "step count t"),
    ("optim/t", np.array([1, 2]), "step count t"), ("param/mu.b", np.array(["a", "b", "c"]), "not of floating-point"),
    ("optim/M.mu.b", np.full(3, np.inf, np.float32), "holds NaN or infinity")])
def test_entries_of_the_wrong_kind_are_refused_naming_the_file(key, value, says, tmp_path):
    model, opt = make()
    path = save(tmp_path / "c.npz", model, opt)
    with np.load(path) as npz:
        entries = {name: npz[name] for name in npz.files}
    entries[key] = value
    np.savez(path, **entries)
    with pytest.raises(CheckpointError, match=says) as err:
        checkpoint.load(path)
    assert one_line_naming(err, path)
