"""The benchmark: the figures it prints for both models, its options, and a PyTorch twin that computes the
same loss as minivae's model (it measures; no test here times anything)."""

import re
import sys

import fake_cupy
import numpy as np
import pytest

from minivae.bench import __main__ as bench_command
from minivae.bench import kernel_split, timing
from minivae.bench.torch_twin import torch_twin
from minivae.core import backend
from minivae.run import data, presets

SMALL = ["--repeats", "1", "--inner", "1", "--epoch-repeats", "1"]


@pytest.fixture(autouse=True)
def small_epoch(monkeypatch):
    monkeypatch.setattr(timing, "EPOCH", 64)  # an epoch of 64 images keeps the epoch timing quick


def test_mlp_bench_prints_throughput_parts_floor_ratio_and_epoch(capsys):
    bench_command.main(["--batch-size", "16", "--hidden", "32", "--latent", "4", "--threads", "1", *SMALL])
    out = capsys.readouterr().out
    assert re.search(r"MLP VAE 784-32-4 \([\d,]+ parameters\), batch 16, .*threads: BLAS 1, elementwise 1", out)
    assert re.search(r"train step: +[\d.]+ ms +[\d.]+ steps/s +\d+ samples/s", out)
    for part in ("matrix products \\(the floor\\)", "Adam", "reconstruction loss", "sampler and KL",
                 "everything else"):
        assert re.search(rf"  {part}: +-?[\d.]+ ms", out), part
    assert re.search(r"^step/floor ratio: \d+\.\d\d$", out, re.MULTILINE)
    assert re.search(r"epoch of 64 random images \(4 steps\): [\d.]+ s, of which shuffling and batching \d+ ms", out)


def test_epochs_run_on_fashion_mnist_images_from_data_dir(capsys, tmp_path):
    rng = np.random.default_rng(0)
    for name, shape in zip(data.FILES, [(64, 28, 28), (64,), (8, 28, 28), (8,)]):
        data.write_idx(tmp_path / name, rng.integers(0, 256 if len(shape) == 3 else 10, shape, dtype=np.uint8))
    bench_command.main(["--data-dir", str(tmp_path), "--batch-size", "16", "--hidden", "32", "--latent", "4", *SMALL])
    assert f"epoch of 64 Fashion-MNIST from {tmp_path} (4 steps)" in capsys.readouterr().out


def test_conv_bench_times_the_keras_conv_preset(capsys):
    bench_command.main(["--model", "conv", "--batch-size", "4", "--epoch-steps", "1", *SMALL])
    out = capsys.readouterr().out
    assert "conv VAE of tutorial 003 (550,629 parameters), batch 4" in out
    assert re.search(r"^step/floor ratio: \d+\.\d\d$", out, re.MULTILINE)
    assert "epoch of 64 random images (16 steps, projected from its first 1)" in out


def test_layers_prints_each_layers_forward_and_backward_and_leaves_the_layers_as_they_were(capsys):
    bench_command.main(["--model", "conv", "--batch-size", "2", "--epoch-steps", "1", "--layers", *SMALL])
    out = capsys.readouterr().out
    rows = re.findall(r"^  (FastConv2D|FastConvTranspose2D|Dense|ThreadedReLU)\(.* +([\d.]+) ms +([\d.]+) ms$", out,
                      re.MULTILINE)
    assert len(rows) == 5 + 1 + 4 + 7  # Conv2D, ConvTranspose2D, Dense (the two heads among them), ReLU
    assert re.search(r"^  the layers: [\d.]+ ms; the rest of the step \(sampler, KL, loss\): -?[\d.]+ ms", out,
                     re.MULTILINE)


def test_layers_against_torch_prints_pytorchs_time_beside_each_layer(capsys):
    pytest.importorskip("torch")
    bench_command.main(["--model", "conv", "--batch-size", "2", "--epoch-steps", "1", "--layers", "--against", "torch",
                *SMALL])
    out = capsys.readouterr().out
    rows = re.findall(r"^  (FastConv2D|FastConvTranspose2D|Dense|ThreadedReLU)\(.*\)( +[\d.]+ ms){4}$", out,
                      re.MULTILINE)
    assert len(rows) == 5 + 1 + 4 + 7
    assert re.search(r"^  PyTorch's layers, each run alone: [\d.]+ ms$", out, re.MULTILINE)


def test_the_torch_twin_has_one_module_per_layer_fed_what_the_layer_gets():
    torch = pytest.importorskip("torch")
    config = presets.config_for("keras-conv-2d")
    model = presets.build_model(config, rng=np.random.default_rng(0))
    x, eps = np.random.default_rng(1).random((2, 784), dtype=np.float32), np.zeros((2, 2), np.float32)
    model.step(x, eps=eps)
    twin = torch_twin(model)
    inputs = twin.layer_inputs(torch.from_numpy(x), torch.from_numpy(eps))
    layers = [layer for layer, _ in timing.layers_in_order(model)]
    assert len(twin.layers) == len(inputs) == len(layers)
    n_encoder = len(model.encoder.layers)
    z = model.encode(x)[0]  # eps = 0: z = mu
    for start, h, stop in [(0, x, n_encoder), (n_encoder + 2, z, len(layers))]:  # the encoder, the decoder
        for layer, module, h_twin in zip(layers[start:stop], twin.layers[start:stop], inputs[start:stop]):
            np.testing.assert_allclose(h_twin.detach().numpy(), h, rtol=1e-4, atol=1e-5)  # the same input
            h = layer.forward(h)
            np.testing.assert_allclose(module(h_twin).detach().numpy(), h, rtol=1e-4, atol=1e-5)


def test_layer_times_unwraps_every_layer():
    model = presets.build_model(presets.config_for("default", hidden=[8], latent=2))
    x, eps = np.zeros((2, 784), np.float32), np.zeros((2, 2), np.float32)
    rows, step_s = timing.layer_times(model, x, eps, repeats=2)
    assert [layer for layer, _, _ in rows] == [*model.encoder.layers, model.mu_head, model.scale_head,
                                                *model.decoder.layers]
    assert step_s > 0 and all(forward_s > 0 for _, forward_s, _ in rows)
    assert all("forward" not in vars(layer) and "backward" not in vars(layer) for layer, _, _ in rows)


def test_against_torch_prints_step_and_epoch_ratios(capsys):
    pytest.importorskip("torch")
    bench_command.main(["--against", "torch", "--batch-size", "16", "--hidden", "32", "--latent", "4", *SMALL])
    out = capsys.readouterr().out
    assert re.search(r"torch step: +[\d.]+ ms .*torch.optim.Adam defaults: foreach=\w+, fused=\w+", out)
    assert re.search(r"^minivae/torch step ratio: \d+\.\d\d$", out, re.MULTILINE)
    assert re.search(r"^minivae/torch epoch ratio: \d+\.\d\d$", out, re.MULTILINE)


def test_against_torch_without_torch_says_so_and_times_minivae_alone(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    bench_command.main(["--against", "torch", "--batch-size", "16", "--hidden", "32", "--latent", "4", *SMALL])
    out = capsys.readouterr().out
    assert "PyTorch is not installed" in out and "step/floor ratio" in out and "torch step" not in out


@pytest.mark.parametrize("option", ["--repeats", "--inner", "--threads", "--batch-size", "--epoch-steps"])
def test_zero_is_refused_with_a_one_line_error(option, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_command.main([option, "0"])
    assert exit_info.value.code == 2
    assert f"argument {option}: must be more than 0, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("preset", ["default", "keras-conv-2d"])
def test_the_torch_twin_has_the_same_parameters_and_loss_as_the_model(preset):
    torch = pytest.importorskip("torch")
    config = presets.config_for(preset)
    model = presets.build_model(config, rng=np.random.default_rng(0))
    rng = np.random.default_rng(1)
    x, eps = rng.random((3, 784), dtype=np.float32), rng.standard_normal((3, config["latent"]), dtype=np.float32)
    loss = model.step(x, eps=eps).loss  # the step also sets the conv layers' paddings that the twin copies
    twin = torch_twin(model)
    assert sum(p.numel() for p in twin.net.parameters()) == sum(p.size for p in model.params.values())
    assert twin.loss(torch.from_numpy(x), torch.from_numpy(eps)).item() == pytest.approx(loss, rel=1e-5)


@pytest.mark.parametrize("preset, n_products", [
    # 5 Dense layers: forward and weight gradient of each, and the input gradient of all but the first (4)
    ("default", 2 * 5 + 4),
    # 10 layers with weights (4 Conv2D and a Dense in the encoder, 2 heads, Dense, ConvTranspose2D and Conv2D in
    # the decoder): forward and weight gradient of each, and the input gradient of all but the first Conv2D (9);
    # the decoder's last Conv2D (32 -> 1) goes by shifts, its weight gradient is 9 products (one per tap): 8 more
    ("keras-conv-2d", 2 * 10 + 9 + 8),
])
def test_the_floor_runs_every_matrix_product_of_a_step_once(preset, n_products, monkeypatch):
    config = presets.config_for(preset)
    model = presets.build_model(config, rng=np.random.default_rng(0))
    x, eps = np.full((2, 784), 0.5, np.float32), np.zeros((2, config["latent"]), np.float32)
    floor = timing.matmul_floor(model, x, eps)
    shapes, matmul = [], np.matmul

    def counting(a, b, **kwargs):
        shapes.append((a.shape, b.shape))
        return matmul(a, b, **kwargs)

    monkeypatch.setattr(np, "matmul", counting)
    floor()
    assert len(shapes) == n_products
    assert all(a[1] == b[0] for a, b in shapes)  # each one a well-formed product


def test_the_kernel_split_sorts_a_steps_device_events_into_products_kernels_and_copies():
    events = [("ampere_sgemm_64x32_sliced1x4_nn", 30.0), ("cupy_add", 2.0), ("minivae_adam", 4.0),
              ("void cutlass::Kernel2<cutlass_80_tensorop_s1688gemm>(Params)", 50.0),
              ("Memcpy DtoH (Device -> Pageable)", 6.0), ("Memset (Device)", 1.0)] * 2  # two calls of the step
    split = kernel_split.split_kernels(events, calls=2)
    assert split == {"launches": 6, "products": 2, "copies": 2, "products_s": pytest.approx(80e-6),
                     "kernels_s": pytest.approx(6e-6), "copies_s": pytest.approx(7e-6)}
    line = kernel_split.split_line("minivae", split, step_s=200e-6)
    assert line == ("kernels per step, minivae: 6 launches (2 products, 2 copies); the GPU is busy 0.093 ms (products "
                    "0.080, other kernels 0.006, copies 0.007) and waits 0.107 ms of the 0.200 ms step for Python and "
                    "the launches")


def test_on_the_cupy_stand_in_the_bench_says_what_it_cannot_measure(capsys, monkeypatch):
    monkeypatch.setattr(backend, "import_cupy", lambda: fake_cupy)
    monkeypatch.setattr(timing, "_syncs", [])
    bench_command.main(["--device", "gpu", "--against", "torch", "--batch-size", "8", "--hidden", "16", "--latent",
                        "2", *SMALL])
    out = capsys.readouterr().out
    assert re.search(r"batch 8, Adam lr [\d.e-]+, cupy float32", out) and "step/floor ratio" in out
    if "torch" in sys.modules:  # PyTorch installed, without CUDA here
        assert "has no CUDA here: no comparison on the GPU" in out
    assert "kernels per step: (PyTorch with CUDA is needed to count them: its profiler does)" in out
