"""The timings of `python -m minivae.bench`: how fast is a training step, how close to its floor, and how fast
against PyTorch?

One routine (`bench`) serves both models. It times, alternating the contenders within one run and taking
medians over repeats (so that a burst of load from elsewhere hits all of them alike):

* the training step: forward, backward and the Adam update, in float32, on a fixed batch;
* its floor: the same step's matrix products alone (every Dense, Conv2D and ConvTranspose2D product of
  forward and backward, one GEMM each, into preallocated outputs). Everything beyond them -- activations,
  the loss, the sampler, the optimizer's elementwise passes, im2col -- is overhead, and step/floor says how
  much. Ratios compare across machines; absolute times only on the same one;
* with `--against torch`: the same model in PyTorch (torch_twin.torch_twin: layer for layer, with minivae's weights,
  the same loss; torch.optim.Adam with its defaults), and a whole epoch of 60,000 images in both, including
  the data handling (a permutation, then per step the batch's images and its sampler noise), and prints
  minivae/torch for both. PyTorch is optional (`pip install -e .[bench]`), never needed by minivae.

`--layers` adds where the step's time goes, layer by layer (`layer_times`): each layer's forward and backward,
and what lies outside them; with `--against torch`, the same layer's forward and backward in PyTorch beside it
(torch_twin.layer_times).

On a GPU (`--device gpu`) it also splits the step by what the GPU does (kernel_split.py): how many kernels one
step launches, how many of them are matrix products, and how long the GPU is busy with them; the rest of the step
the GPU waits for Python and the launches. The same for PyTorch's step beside it.

`--threads N` sets the threads of BLAS and of minivae's elementwise passes (core/threads.py) and
torch.set_num_threads(N). On a machine where other busy processes share the cores, multithreaded figures
can be many times slower (threads wait for each other): measure when it is quiet, and compare ratios.
The images are random: a step's time does not depend on the pixel values.
"""

import statistics
import time

import numpy as np

from minivae.bench import kernel_split, torch_twin
from minivae.core import backend, threads
from minivae.core.conv_fast import FastConv2D, FastConvTranspose2D
from minivae.core.layers import Dense
from minivae.core.optim_fast import FastAdam
from minivae.models.vae import count_params
from minivae.run import data, presets, seeds
from minivae.run.files import one_line
from minivae.run.memory import DoesNotFit, check_step, is_allocation_failure

EPOCH = 60_000  # images in an MNIST epoch
SETUPS = {  # --model: the preset it benchmarks, and the defaults of the timing loop
    "mlp": dict(preset="default", repeats=15, epoch_steps=None, epoch_repeats=3),  # None: the whole epoch
    # the convnet's epoch (3,750 steps) is projected from 400 steps, 5 times (fewer moved its ratio: docs/speed.md)
    "conv": dict(preset="keras-conv-2d", repeats=5, epoch_steps=400, epoch_repeats=5),
}


# ---------------------------------------------------------------- timing

def alternate(contenders, repeats, inner, sync=None):
    """Seconds per call of each function in `contenders` (name -> fn), one figure per round: after a warm-up
    round, each of `repeats` rounds times `inner` calls of every contender in turn. sync() waits for a GPU."""
    sync = sync or (lambda: None)
    times = {name: [] for name in contenders}
    for round_ in range(repeats + 1):
        for name, fn in contenders.items():
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            sync()
            if round_:  # round 0 warms up: first-touch of work arrays, BLAS and thread start-up
                times[name].append((time.perf_counter() - start) / inner)
    return times


def layers_in_order(model):
    """(layer, need_dx) for every layer of a VAE, in forward order; need_dx says whether backward computes
    the layer's input gradient (the encoder skips it for layers with no parameters before them)."""
    encoder = list(zip(model.encoder.layers, model.encoder.feeds_params))
    return encoder + [(model.mu_head, True), (model.scale_head, True)] + [(a, True) for a in model.decoder.layers]


def matmul_floor(model, x, eps):
    """A function running exactly the matrix products of one training step, each into an output allocated
    once: forward, weight gradient and (where backward computes it) input gradient of every Dense, Conv2D and
    ConvTranspose2D layer, on the arrays that one real step left in each layer (core/conv_fast.py has the shapes
    of the convnet's fast layers, the only ones this knows)."""
    xp = backend.xp
    model.step(x, eps=eps)  # leaves x (Dense), cols (Conv2D), x2 and the im2col of dout (ConvTranspose2D)
    products = []  # (a, b, out): out = a @ b
    for layer, need_dx in layers_in_order(model):
        if isinstance(layer, Dense):  # out = x @ W, dW = x.T @ dout, dx = dout @ W.T
            W, dout = layer.params["W"], xp.ones((len(x), layer.out_dim), dtype=x.dtype)
            pairs = [(layer.x, W), (layer.x.T, dout)] + [(dout, W.T)] * need_dx
        elif isinstance(layer, FastConv2D) and layer.cols is None:  # by shifts: taps = W_taps @ xf, kh*kw for dW
            (kh, kw), taps, xf = layer.kernel_size, layer.work["taps"], layer.xf
            M = xf.shape[1] - (kh - 1) * layer.padded_shape[3] - (kw - 1)
            dgrid = xp.ones((layer.out_channels, M), dtype=xf.dtype)
            pairs = [(xp.ones((len(taps), layer.in_channels), dtype=xf.dtype), xf)] + [(dgrid, xf[:, :M].T)] * kh * kw
            if need_dx:  # dx = W_turned @ im2col(dout), see Conv2D
                dcols = layer.work["dcols"]
                pairs.append((xp.ones((layer.in_channels, dcols.shape[0]), dtype=xf.dtype), dcols))
        elif isinstance(layer, FastConv2D):  # out = W2 @ cols, dW2.T = cols @ dout2.T, dcols = W2.T @ dout2
            W2, cols = layer.params["W"].reshape(layer.out_channels, -1), layer.cols
            dout2 = xp.ones((W2.shape[0], cols.shape[1]), dtype=cols.dtype)
            pairs = [(W2, cols), (cols, dout2.T)]
            if need_dx and layer.dx_is_a_convolution():  # dx = W_turned @ im2col(dout), see Conv2D
                dcols = layer.work["dcols"]
                pairs.append((xp.ones((layer.in_channels, dcols.shape[0]), dtype=W2.dtype), dcols))
            elif need_dx:  # dcols = W2.T @ dout2 over col2im's grid (dout2 with zero columns)
                pairs.append((W2.T, xp.ones((W2.shape[0], layer.work["dcols"].shape[1]), dtype=W2.dtype)))
        elif isinstance(layer, FastConvTranspose2D):  # cols = W2.T @ x_grid, dW2.T = dcols @ x2.T, dx2 = W2 @ dcols
            W2, x2, dcols = layer.params["W"].reshape(layer.in_channels, -1), layer.x2, layer.work["cols"]
            pairs = [(W2.T, layer.x_grid), (dcols, x2.T)] + [(W2, dcols)] * need_dx
        else:
            continue
        products += [(a, b, xp.empty((a.shape[0], b.shape[1]), dtype=a.dtype)) for a, b in pairs]

    def run():
        for a, b, out in products:
            xp.matmul(a, b, out=out)

    return run


def layer_times(model, x, eps, repeats):
    """Median seconds of each layer's forward and backward over `repeats` steps (model.step on x, eps), and of
    the whole step: ([(layer, forward_s, backward_s)], step_s). Each layer's two methods are wrapped in timers
    for the duration (instance attributes, which shadow the class's), then unwrapped."""
    layers = [layer for layer, _ in layers_in_order(model)]
    times = {(id(layer), method): [] for layer in layers for method in ("forward", "backward")}

    def timed(layer, method):
        run = getattr(layer, method)

        def timer(*args, **kwargs):
            start = time.perf_counter()
            result = run(*args, **kwargs)
            sync()
            times[id(layer), method].append(time.perf_counter() - start)
            return result

        return timer

    steps = []
    try:
        for layer in layers:
            layer.forward, layer.backward = timed(layer, "forward"), timed(layer, "backward")
        for _ in range(repeats + 1):  # the first warms up
            start = time.perf_counter()
            model.step(x, eps=eps)
            sync()
            steps.append(time.perf_counter() - start)
    finally:
        for layer in layers:
            del layer.forward, layer.backward
    return [(layer, _after_warm_up(times[id(layer), "forward"]), _after_warm_up(times[id(layer), "backward"]))
            for layer in layers], _after_warm_up(steps)


def _after_warm_up(seconds):
    """The median of the timings after the first; 0 for a pass that never ran (a backward that a layer before
    it made unnecessary, e.g. the encoder's leading Reshape)."""
    return statistics.median(seconds[1:]) if len(seconds) > 1 else 0.0


def print_layer_times(model, x, eps, repeats, torch_side=None):
    """The table of `layer_times`, in ms, with what lies outside the layers (sampler, KL, loss, the heads' sum);
    with torch_side, PyTorch's time for the same layer beside each (torch_twin.layer_times)."""
    rows, step_s = layer_times(model, x, eps, repeats)
    twins = torch_side["layers"](repeats) if torch_side else None
    print(f"where a step's time goes (median of {repeats} steps, without Adam; each pass timed on its own"
          + ("; PyTorch's layers each run alone on the input they get in a step):" if twins else "):"))
    labels = [repr(layer).replace(", init='he'", "").replace(", init='lecun'", "").replace("kernel_size=", "")
              .replace(", output_padding=(0, 0)", "") for layer, _, _ in rows]
    width = max(map(len, labels))
    torch_heads = f" {'torch fwd':>10s} {'torch bwd':>10s}" if twins else ""
    print(f"  {'layer':{width}s} {'forward':>9s} {'backward':>9s}{torch_heads}")
    for i, (label, (_, forward_s, backward_s)) in enumerate(zip(labels, rows, strict=True)):
        twin = "".join(f" {t * 1e3:7.3f} ms" for t in twins[i]) if twins else ""
        print(f"  {label:{width}s} {forward_s * 1e3:6.3f} ms {backward_s * 1e3:6.3f} ms{twin}")
    in_layers = sum(f + b for _, f, b in rows)
    print(f"  the layers: {in_layers * 1e3:.3f} ms; the rest of the step (sampler, KL, loss): "
          f"{(step_s - in_layers) * 1e3:.3f} ms; the step: {step_s * 1e3:.3f} ms")
    if twins:
        print(f"  PyTorch's layers, each run alone: {sum(f + b for f, b in twins) * 1e3:.3f} ms")


# ---------------------------------------------------------------- one model, every figure

def bench(args):
    """Time the step of --model against its floor (and PyTorch's, with --against torch); print the figures."""
    setup = SETUPS[args.model]
    x_train = epoch_images(args.data_dir)  # first: a wrong --data-dir is said before minutes of timing
    config = presets.config_for(setup["preset"], batch_size=args.batch_size, latent=args.latent,
                                hidden=[args.hidden] if args.hidden else None)
    batch, latent = config["batch_size"], config["latent"]
    model = presets.build_model(config, rng=np.random.default_rng(0))  # sizes that do not fit: DoesNotFit
    check_step(model, batch, 0, 784, ("batch_size",))  # a step that could never fit: said before it is killed
    rng = np.random.default_rng(0)
    try:
        x = backend.to_device(rng.random((batch, 784), dtype=np.float32))
        eps = backend.to_device(rng.standard_normal((batch, latent), dtype=np.float32))
    except (MemoryError, ValueError) as err:
        if not is_allocation_failure(err):
            raise
        raise DoesNotFit(f"a batch of {batch} images, latent {latent}, does not fit in memory ({one_line(err)})",
                         ("batch_size", "latent")) from None
    adam = FastAdam(model.params, lr=config["lr"])
    # Adam alone, on copies and with a tiny rate: the same work, without pushing the model off with the
    # same gradient applied hundreds of times.
    adam_alone = FastAdam({k: p.copy() for k, p in model.params.items()}, lr=1e-12)
    floor = matmul_floor(model, x, eps)  # also runs the step that fills the layers' work arrays
    mu, scale = model.encode(x)
    z = model.posterior.sample(mu, scale, eps)
    out = model.decoder_output(z)

    def step():
        model.step(x, eps=eps)
        adam.step(model.grads)

    def sampler_and_kl():
        model.posterior.sample(mu, scale, eps)
        model.posterior.kl(mu, scale)
        model.posterior.backward(z)

    contenders = {"step": step, "floor": floor, "adam": lambda: adam_alone.step(model.grads),
                  "loss": lambda: model.recon_fn(out, x, scale=1 / batch), "sampler": sampler_and_kl}
    start = time.perf_counter()
    step()
    inner = args.inner or max(1, round(0.1 / (time.perf_counter() - start)))  # default: ~0.1 s per timing
    torch_side = twin_contenders(model, config, x, eps, args) if args.against == "torch" else None
    if torch_side:
        contenders["torch step"] = torch_side["step"]
    rounds = alternate(contenders, args.repeats or setup["repeats"], inner, sync)
    seconds = {name: statistics.median(times) for name, times in rounds.items()}

    xp = backend.xp
    name = "MLP VAE " + "-".join(map(str, [784, *config["hidden"], latent])) if args.model == "mlp" else \
        "conv VAE of tutorial 003"
    print(f"model {name} ({count_params(model):,} parameters), batch {batch}, Adam lr {config['lr']:g}, "
          f"{backend.name} {xp.dtype(model.dtype).name}, {threads_line(torch_side)}")
    step_s = seconds["step"]
    print(f"train step:   {step_s * 1e3:8.3f} ms   {1 / step_s:8.1f} steps/s   {batch / step_s:8.0f} samples/s")
    parts = {"matrix products (the floor)": seconds["floor"], "Adam": seconds["adam"],
             "reconstruction loss": seconds["loss"], "sampler and KL": seconds["sampler"]}
    parts["everything else"] = step_s - sum(parts.values())
    for part, part_s in parts.items():
        print(f"  {part + ':':29s}{part_s * 1e3:8.3f} ms")
    print(f"step/floor ratio: {step_s / seconds['floor']:.2f}")
    if torch_side:
        torch_s = seconds["torch step"]
        print(f"torch step:   {torch_s * 1e3:8.3f} ms   {1 / torch_s:8.1f} steps/s   {batch / torch_s:8.0f} samples/s"
              f"   ({torch_side['adam']})")
        print(f"minivae/torch step ratio: {step_s / torch_s:.2f}")
    if backend.is_gpu():
        kernel_split.print_splits({"minivae": (step, step_s)} | ({"torch": (torch_side["step"], seconds["torch step"])}
                                                                 if torch_side else {}), sync)
    if args.layers:
        print_layer_times(model, x, eps, args.repeats or 50, torch_side)
    epochs(model, adam, config, args, torch_side, x_train)


def twin_contenders(model, config, x, eps, args):
    """PyTorch's step and epoch for the same model, or None (with a note) when PyTorch cannot be imported, or has
    no CUDA while minivae runs on a GPU."""
    try:
        import torch
    except ImportError:
        print("(PyTorch is not installed: no comparison. `pip install -e .[bench]` installs it.)")
        return None
    device = "cuda" if backend.is_gpu() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        print(f"(PyTorch {torch.__version__} has no CUDA here: no comparison on the GPU.)")
        return None
    if args.threads:
        torch.set_num_threads(args.threads)
    twin = torch_twin.torch_twin(model, device)
    opt = torch.optim.Adam(twin.net.parameters(), lr=config["lr"])  # the defaults: foreach and fused left to torch
    if device == "cuda":
        add_sync(torch.cuda.synchronize)

    def train_step(x, eps):
        opt.zero_grad()  # set_to_none, the default
        twin.loss(x, eps).backward()
        opt.step()

    x_fixed, eps_fixed = (torch.from_numpy(backend.to_numpy(a)).to(device) for a in (x, eps))

    def epoch(x_train, n_steps):
        x_train = torch.from_numpy(x_train).to(device)
        generator = torch.Generator(device).manual_seed(0)
        order = torch.randperm(len(x_train), generator=generator, device=device)
        for idx in order.split(config["batch_size"])[:n_steps]:
            train_step(x_train[idx], torch.randn(len(idx), config["latent"], generator=generator, device=device))

    def layers(repeats):
        need_dx = [need_dx for _, need_dx in layers_in_order(model)]
        return torch_twin.layer_times(twin, x_fixed, eps_fixed, need_dx, repeats, sync)

    return {"step": lambda: train_step(x_fixed, eps_fixed), "epoch": epoch, "layers": layers,
            "version": torch.__version__,
            "threads": torch.get_num_threads(),
            "adam": f"torch.optim.Adam defaults: foreach={opt.defaults['foreach']}, "
                    f"fused={opt.defaults['fused']}" + (", i.e. its single-tensor loop" * (device == "cpu"))}


def epoch_images(data_dir):
    """The EPOCH images the epochs are timed on: Fashion-MNIST's training images from data_dir (the time of a step
    does not depend on them, but training does), else random ones. (N, 784) float32 on the host."""
    if not data_dir:
        return np.random.default_rng(1).random((EPOCH, 784), dtype=np.float32)
    x_train = data.load("fashion-mnist", data_dir, download=False).x_train[:EPOCH].reshape(-1, 784)
    if len(x_train) < EPOCH:
        raise data.DataError(f"{data_dir} holds {len(x_train):,} training images, fewer than the {EPOCH:,} of the "
                             f"epochs timed here; give the folder of the whole Fashion-MNIST, or time random images")
    return np.ascontiguousarray(x_train, dtype=np.float32)


def epochs(model, adam, config, args, torch_side, x_train):
    """An epoch of EPOCH images, data handling included, as run/training.py does it: a permutation, then per
    step the gather of the batch's images, its sampler noise, the generator-state snapshot kept for Ctrl-C,
    the step and the update. Timed whole, or from its first --epoch-steps steps; PyTorch's beside it.

    Each round goes on training the same model, so the rounds show what changes as training goes (PyTorch leaves
    subnormal floats alone and slows down, while Adam here flushes them: core/optim_fast.py, docs/speed.md).
    The median of the rounds is the figure compared."""
    batch, latent = config["batch_size"], config["latent"]
    x_device = backend.to_device(x_train)
    n_steps = -(-EPOCH // batch)
    timed = min(args.epoch_steps or SETUPS[args.model]["epoch_steps"] or n_steps, n_steps)

    def epoch(with_steps=True):
        order, noise = seeds.generator(0, seeds.ORDER, epoch=1), seeds.generator(0, seeds.NOISE, epoch=1)
        for idx in list(data.batches(EPOCH, batch, order))[:timed]:
            x = x_device[backend.to_device(idx) if backend.is_gpu() else idx]
            eps = backend.to_device(noise.standard_normal((len(idx), latent), dtype=np.float32))
            snapshot = noise.bit_generator.state  # noqa: F841 (the training loop keeps it for Ctrl-C)
            if with_steps:
                model.step(x, eps=eps)
                adam.step(model.grads)

    contenders = {"minivae": epoch, "data": lambda: epoch(with_steps=False)}
    if torch_side:
        contenders["torch"] = lambda: torch_side["epoch"](x_train, timed)
    rounds = alternate(contenders, args.epoch_repeats or SETUPS[args.model]["epoch_repeats"], 1, sync)
    rounds = {name: [t * n_steps / timed for t in times] for name, times in rounds.items()}
    seconds = {name: statistics.median(times) for name, times in rounds.items()}
    of = "" if timed == n_steps else f", projected from its first {timed}"
    images = f"Fashion-MNIST from {args.data_dir}" if args.data_dir else "random images"
    print(f"epoch of {EPOCH:,} {images} ({n_steps} steps{of}): {seconds['minivae']:.2f} s, of which shuffling and "
          f"batching {seconds['data'] * 1e3:.0f} ms ({100 * seconds['data'] / seconds['minivae']:.1f}%); "
          f"one after the other: {', '.join(f'{t:.2f}' for t in rounds['minivae'])} s")
    if torch_side:
        print(f"torch epoch: {seconds['torch']:.2f} s; one after the other: "
              f"{', '.join(f'{t:.2f}' for t in rounds['torch'])} s")
        print(f"minivae/torch epoch ratio: {seconds['minivae'] / seconds['torch']:.2f}")


_syncs = []  # functions that wait for a GPU's queued work (CuPy's, PyTorch's)


def add_sync(wait):
    """Make `sync` also call wait(), a function that waits for a GPU's queued work."""
    _syncs.append(wait)


def sync():
    for wait in _syncs:
        wait()


def threads_line(torch_side):
    blas = threads.blas_threads()
    line = f"threads: BLAS {blas}, elementwise {threads.elementwise_threads}"
    return line + (f"; torch {torch_side['version']}, {torch_side['threads']} threads" if torch_side else "")
