"""`python -m minivae.bench`: how fast is one training step, and how close to the floor?

A training step of the 784-400-20 MLP VAE (forward, backward, Adam update) at batch 128, in float32, timed
against the same step's matrix products alone: the eleven GEMMs that forward and backward must do (the first
layer needs no input gradient). Those products are the floor for this model on this machine; everything else
(activations, the loss, the sampler, the optimizer's elementwise passes) is overhead, and the ratio
step/floor says how much. Times are medians over repeats, measured in one run, so the ratio is comparable
across machines even when absolute times are not.
"""

import argparse
import statistics
import time

import numpy as np

from minivae import backend
from minivae.layers import Dense
from minivae.optim import Adam
from minivae.vae import VAE


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
    inner = [*model.encoder.layers, model.mu_head, model.second_head, *model.decoder.layers]
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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minivae.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--latent", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--inner", type=int, default=20)
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    args = parser.parse_args(argv)
    try:
        backend.use("cupy" if args.device == "gpu" else "numpy")
    except backend.BackendError as err:
        parser.exit(2, f"error: {err}\n")
    xp = backend.xp
    rng = np.random.default_rng(0)
    x = backend.to_device((rng.random((args.batch_size, 784)) < 0.3).astype(np.float32))
    model = VAE(hidden=(args.hidden,), latent=args.latent)
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
    print(f"step/floor ratio: {step_s / floor_s:.2f}")


if __name__ == "__main__":
    main()
