"""`python -m minivae.bench`: how fast is one training step, and how close to the floor?

A training step of the 784-400-20 MLP VAE (forward, backward, Adam update) at batch 128, in float32, timed
against the same step's matrix products alone: the eleven GEMMs that forward and backward must do (the first
layer needs no input gradient). Those products are the floor for this model on this machine; everything else
(activations, the loss, the sampler, the optimizer's elementwise passes) is overhead, and the ratio
step/floor says how much. Times are medians over repeats, measured in one run, so the ratio is comparable
across machines even when absolute times are not.

`--model conv` does the same for the convolutional VAE of tutorial 003 (convvae.conv_vae: 550,629 parameters), at
the tutorial's batch size 16 and at 128, and adds the projected time of one epoch of 60,000 images. Its floor
is every Conv2D, ConvTranspose2D and Dense product of the step (one 2-D GEMM each, see conv.py) on the
inputs the layers kept from a real step, written into preallocated outputs; im2col, col2im, padding and the
elementwise passes are the overhead.

On a machine where other busy processes share the cores, multithreaded BLAS can run many times slower (its
threads wait for each other); OPENBLAS_NUM_THREADS=1 gives steadier figures there.

What it shows (2-core Xeon, OpenBLAS, quiet machine): the MLP step takes 3.7 ms against a 1.76 ms floor, a
ratio of 2.1-2.2. The overhead is mostly Adam: 1.22 ms for 653k float32 parameters, i.e. 12 elementwise passes
(read g, m, v, p; write m, v, p) that NumPy cannot fuse, already chunked to stay in cache and with the bias
corrections folded into scalars; BLAS axpy in place of a multiply-add was measured no faster. Forward and
backward add 0.6 ms beyond their GEMMs (0.23 ms of it the loss on 128 x 784 logits). A ratio near 1.4 would
need fused elementwise kernels (compiled code, or CuPy's ElementwiseKernel on a GPU), which a NumPy-only
library that people read line by line does not have. The conv VAE: 523 samples/s at batch 16 (115 s per
epoch of 60,000), ratio 2.4; at batch 128, 519 samples/s, ratio 2.2.
"""

import argparse
import statistics
import time

import numpy as np

from minivae import backend, data
from minivae.conv import Conv2D, ConvTranspose2D
from minivae.convvae import conv_vae
from minivae.layers import Dense
from minivae.optim import Adam
from minivae.vae import mlp_vae


def _median_seconds(fn, repeats, inner):
    """Median over `repeats` of the mean time of `inner` calls of fn (after a warm-up)."""
    for _ in range(inner):
        fn()
    backend.xp.cuda.Device().synchronize() if backend.is_gpu() else None
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        if backend.is_gpu():
            backend.xp.cuda.Device().synchronize()
        times.append((time.perf_counter() - start) / inner)
    return statistics.median(times)


def dense_layers(model):
    """Every Dense layer of the model, in forward order."""
    inner = [*model.encoder.layers, model.mu_head, model.scale_head, *model.decoder.layers]
    return [layer for layer in inner if isinstance(layer, Dense)]


def matmul_floor(model, x, eps):
    """A function running exactly the step's matrix products: per Dense layer out = x @ W, dW = x.T @ dout
    and (except for the first layer) dx = dout @ W.T, on the inputs one real step gave each layer."""
    model.step(x, eps=eps)  # leaves each Dense layer's input in layer.x
    layers = dense_layers(model)
    douts = [backend.xp.ones((len(x), layer.out_dim), dtype=x.dtype) for layer in layers]

    def products():
        for i, (layer, dout) in enumerate(zip(layers, douts)):
            layer.x @ layer.params["W"]
            layer.x.T @ dout
            if i > 0:
                dout @ layer.params["W"].T

    return products


EPOCH = 60_000  # images in an MNIST epoch


def conv_matmul_floor(model, x, eps):
    """A function running exactly the matrix products of one step of a convolutional VAE, each into an output
    allocated once: forward, weight gradient and (where backward computes it) input gradient of every Conv2D,
    ConvTranspose2D and Dense layer, on the arrays that one real step left in each layer."""
    xp = backend.xp
    model.step(x, eps=eps)  # leaves cols (Conv2D), x2 and the im2col of dout (ConvTranspose2D), x (Dense)
    # The encoder's backward skips the input gradient of every layer with no parameters before it
    # (Sequential.feeds_params: here the Reshape and the first Conv2D); the decoder computes them all.
    layers = list(zip(model.encoder.layers, model.encoder.feeds_params))
    layers += [(model.mu_head, True), (model.scale_head, True)]
    layers += [(layer, True) for layer in model.decoder.layers]
    products = []  # (a, b, out): out = a @ b
    for layer, need_dx in layers:
        if isinstance(layer, Conv2D):  # out = W2 @ cols, dW2 = dout2 @ cols.T, dcols = W2.T @ dout2
            W2, cols = layer.params["W"].reshape(layer.out_channels, -1), layer.cols
            dout2 = xp.ones((W2.shape[0], cols.shape[1]), dtype=cols.dtype)
            pairs = [(W2, cols), (dout2, cols.T)]
            if need_dx and layer.dx_is_a_convolution():  # dx = W_turned @ im2col(dout), see Conv2D
                dcols = layer.work["dcols"]
                pairs.append((xp.ones((layer.in_channels, dcols.shape[0]), dtype=W2.dtype), dcols))
            elif need_dx:
                pairs.append((W2.T, dout2))
        elif isinstance(layer, ConvTranspose2D):  # cols = W2.T @ x2, dW2 = x2 @ dcols.T, dx2 = W2 @ dcols
            W2, x2, dcols = layer.params["W"].reshape(layer.in_channels, -1), layer.x2, layer.work["cols"]
            pairs = [(W2.T, x2), (x2, dcols.T)] + [(W2, dcols)] * need_dx
        elif isinstance(layer, Dense):  # out = x @ W, dW = x.T @ dout, dx = dout @ W.T
            W, dout = layer.params["W"], xp.ones((len(x), layer.out_dim), dtype=x.dtype)
            pairs = [(layer.x, W), (layer.x.T, dout)] + [(dout, W.T)] * need_dx
        else:
            continue
        products += [(a, b, xp.empty((a.shape[0], b.shape[1]), dtype=a.dtype)) for a, b in pairs]

    def run():
        for a, b, out in products:
            xp.matmul(a, b, out=out)

    return run


def data_seconds_per_epoch(batch_size, latent, n=EPOCH):
    """One epoch of the training loop's host-side data work, as train.run_epoch does it: a permutation, then
    per step the gather of the batch's images, its sampler noise, and the generator-state snapshot kept for
    Ctrl-C. Median of 3 epochs, in seconds."""
    x_train = np.random.default_rng(0).random((n, 784), dtype=np.float32)

    def epoch():
        order, noise = np.random.default_rng([0, 1, 0]), np.random.default_rng([0, 1, 1])
        for idx in data.batches(n, batch_size, order):
            x_train[idx]
            noise.standard_normal((len(idx), latent), dtype=np.float32)
            snapshot = noise.bit_generator.state  # noqa: F841 (train.py keeps it for Ctrl-C)

    return _median_seconds(epoch, 3, 1)


def bench_conv(batch, repeats, inner):
    """Time a step of tutorial 003's conv VAE (Adam) and its matrix products at one batch size; print both."""
    rng = np.random.default_rng(0)
    x = backend.to_device((rng.random((batch, 784)) < 0.3).astype(np.float32))
    eps = backend.to_device(rng.standard_normal((batch, 2)).astype(np.float32))
    model = conv_vae(rng=np.random.default_rng(0))
    opt = Adam(model.params)

    def train_step():
        model.step(x, eps=eps)
        opt.step(model.grads)

    train_step()  # the first step allocates the layers' work arrays
    start = time.perf_counter()
    train_step()
    inner = inner or max(1, round(0.3 / (time.perf_counter() - start)))  # default: ~0.3 s per timing
    floor = conv_matmul_floor(model, x, eps)
    adam_alone = Adam({k: p.copy() for k, p in model.params.items()}, lr=1e-12)
    step_s = _median_seconds(train_step, repeats, inner)
    floor_s = _median_seconds(floor, repeats, inner)
    part_s = {"forward+backward": _median_seconds(lambda: model.step(x, eps=eps), repeats, inner),
              "adam": _median_seconds(lambda: adam_alone.step(model.grads), repeats, inner)}
    step_s = min(step_s, _median_seconds(train_step, repeats, inner))  # re-time: noise only adds
    floor_s = min(floor_s, _median_seconds(floor, repeats, inner))
    n_params = sum(int(p.size) for p in model.params.values())
    print(f"model 003 conv VAE ({n_params:,} parameters), batch {batch}, {backend.name}, "
          f"{backend.xp.dtype(model.dtype).name}")
    print(f"train step:         {step_s * 1e3:9.3f} ms   {1 / step_s:8.1f} steps/s   "
          f"{batch / step_s:8.0f} samples/s")
    print(f"epoch of {EPOCH:,}:    {EPOCH / batch * step_s:7.1f} s    (projected: {EPOCH / batch:.0f} steps)")
    for name, seconds in part_s.items():
        print(f"  {name + ':':18s}{seconds * 1e3:9.3f} ms")
    print(f"matmul floor:       {floor_s * 1e3:9.3f} ms")
    print(f"step/floor ratio: {step_s / floor_s:.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minivae.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("mlp", "conv"), default="mlp",
                        help="mlp: the 784-400-20 VAE; conv: tutorial 003's convnet VAE at batch 16 and 128")
    parser.add_argument("--batch-size", type=int, default=None, help="default 128 (mlp); 16 and 128 (conv)")
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--latent", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=None, help="default 15 (mlp), 5 (conv)")
    parser.add_argument("--inner", type=int, default=None, help="default 20 (mlp), ~0.3 s worth (conv)")
    parser.add_argument("--device", choices=("cpu", "gpu"), help="default: as MINIVAE_BACKEND says, else cpu")
    args = parser.parse_args(argv)
    try:
        backend.use_device(args.device)
    except backend.BackendError as err:
        parser.exit(2, f"error: {err}\n")
    if args.model == "conv":
        for i, batch in enumerate([args.batch_size] if args.batch_size else [16, 128]):
            print("\n" * (i > 0), end="")
            bench_conv(batch, args.repeats or 5, args.inner)
        return
    args.batch_size, args.repeats, args.inner = args.batch_size or 128, args.repeats or 15, args.inner or 20
    xp = backend.xp
    rng = np.random.default_rng(0)
    x = backend.to_device((rng.random((args.batch_size, 784)) < 0.3).astype(np.float32))
    model = mlp_vae(hidden=(args.hidden,), latent=args.latent)
    opt = Adam(model.params)
    eps = backend.to_device(rng.standard_normal((args.batch_size, args.latent)).astype(np.float32))

    def train_step():
        model.step(x, eps=eps)
        opt.step(model.grads)

    floor = matmul_floor(model, x, eps)
    # Adam alone, on copies and with a tiny rate: the same work, without pushing the model off with
    # the same gradient applied hundreds of times.
    adam_alone = Adam({k: p.copy() for k, p in model.params.items()}, lr=1e-12)
    parts = {
        "forward+backward": lambda: model.step(x, eps=eps),
        "adam": lambda: adam_alone.step(model.grads),
    }
    step_s = _median_seconds(train_step, args.repeats, args.inner)
    floor_s = _median_seconds(floor, args.repeats, args.inner)
    part_s = {name: _median_seconds(fn, args.repeats, args.inner) for name, fn in parts.items()}
    step_s = min(step_s, _median_seconds(train_step, args.repeats, args.inner))  # re-time: noise only adds
    floor_s = min(floor_s, _median_seconds(floor, args.repeats, args.inner))
    print(f"model 784-{args.hidden}-{args.latent} MLP VAE, batch {args.batch_size}, {backend.name}, "
          f"{xp.dtype(model.dtype).name}")
    print(f"train step:        {step_s * 1e3:8.3f} ms   {1 / step_s:8.1f} steps/s   "
          f"{args.batch_size / step_s:10.0f} samples/s")
    for name, seconds in part_s.items():
        print(f"  {name + ':':17s}{seconds * 1e3:8.3f} ms")
    print(f"matmul floor:      {floor_s * 1e3:8.3f} ms")
    data_s, steps = data_seconds_per_epoch(args.batch_size, args.latent), -(-EPOCH // args.batch_size)
    print(f"an epoch of {EPOCH:,}: {steps * step_s:.2f} s of steps; shuffling and batching {data_s * 1e3:.0f} ms more "
          f"({100 * data_s / (steps * step_s + data_s):.1f}% of the epoch)")
    print(f"step/floor ratio: {step_s / floor_s:.2f}")


if __name__ == "__main__":
    main()
