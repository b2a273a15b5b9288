"""The importance-weighted autoencoder against the VAE (Burda et al. 2015): a tighter bound, a better model.

    python demos/iwae_vs_vae.py                      # 784-400-20, K = 5, 10 epochs each of the two models
    python demos/iwae_vs_vae.py --full               # 100 epochs each
    python demos/iwae_vs_vae.py --dataset fashion-mnist --data-dir /path/to/fashion-mnist
    python demos/iwae_vs_vae.py --quick              # seconds, on a tiny synthetic dataset

The paper's table, in kind: the same 784-400-20 model (minivae's default) on dynamically binarized images,
trained the same number of epochs two ways, each step drawing K samples of z per image (iwae.py):

    VAE,  K = 5   the average of 5 single-sample ELBOs: the paper's VAE at k = 5 (minivae.train's default is
                  K = 1; --k 1 here compares that instead)
    IWAE, K = 5   log (1/5) sum_i p(x|z_i) p(z_i) / q(z_i|x): each sample's gradient weighted by its w~_i

Then, on the test set, each model's log-likelihood (the importance-weighted estimate with --eval-k samples,
1000 by default: VAE.log_likelihood) and its active units: latent unit u is active when the spread of its
posterior mean over the data, A_u = Var_x(E_q(u|x)[u]), exceeds 1e-2 (the paper's criterion). Pixels are
binary here, so each log-likelihood is a true log-probability of the same test images and they compare. The
figure active_units.png shows A_u of every unit, sorted, for each model.
"""

# %% Setup: options and data
import time

import _common
import numpy as np
from matplotlib.figure import Figure

from minivae import backend, data, iwae, presets, seeds

parser = _common.parser("iwae_vs_vae", __doc__)
parser.add_argument("--k", type=int, default=5, help="samples of z per image in training (default 5)")
parser.add_argument("--eval-k", type=int, help="importance samples for the test log-likelihood (default 1000)")
args = _common.parse(parser)
epochs = 100 if args.full else 2 if args.quick else 10
eval_k = args.eval_k or (50 if args.quick else 1000)
dataset = _common.load(args, binarize="dynamic")  # training images are redrawn as binary every batch
x_test = dataset.x_test  # binarized once, with a fixed seed
RUNS = [("VAE", "vae", args.k), ("IWAE", "iwae", args.k)]


# %% Training: the K-sample objectives, one step per batch
# minivae.train's loop draws one eps (B, L) per step; here each step draws K of them, eps (K, B, L), and
# iwae.step encodes the batch once and decodes all K*B samples of z together.
def fit(objective, k):
    config = presets.config_for("default", dataset=dataset.name, binarize="dynamic", seed=args.seed,
                                epochs=epochs, objective=objective, k=k)
    model, started = presets.build_model(config), time.perf_counter()
    optimizer = presets.build_optimizer(config, model)
    for epoch in range(1, epochs + 1):
        order, noise = seeds.generator(args.seed, seeds.ORDER, epoch), seeds.generator(args.seed, seeds.NOISE, epoch)
        total = 0.0
        for idx in data.batches(len(dataset.x_train), config["batch_size"], order):
            x = backend.to_device(data.binarize_batch(dataset.x_train[idx], noise))  # a fresh binary draw
            eps = backend.to_device(noise.standard_normal((k, len(idx), model.latent), dtype=np.float32))
            total += iwae.step(model, x, objective, eps=eps).loss * len(idx)
            optimizer.step(model.grads)
        if epoch in (1, epochs) or epoch % 10 == 0:
            print(f"  epoch {epoch:>3}/{epochs}  train -{objective.upper()}_{k} {total / len(dataset.x_train):.2f}"
                  f"  ({time.perf_counter() - started:.0f} s)", flush=True)
    return model


# %% Evaluation: log-likelihood and active units on the test set
def evaluate(model, batch=500):
    rng = seeds.device_generator(args.seed, seeds.IMPORTANCE)  # every model sees the same importance draws
    ll, means = 0.0, []
    for start in range(0, len(x_test), batch):
        x = backend.to_device(x_test[start:start + batch])
        ll += float(model.log_likelihood(x, k=eval_k, rng=rng).sum())
        means.append(backend.to_numpy(model.encode(x)[0]))
    activity = np.concatenate(means).var(axis=0)  # A_u = Var_x(E_q[u|x]), (L,)
    return ll / len(x_test), activity


results = {}
for name, objective, k in RUNS:
    print(f"\n{name}, K = {k}: 784-400-20, Adam 1e-3, batch 128, {epochs} epochs of {len(dataset.x_train):,} "
          f"dynamically binarized {dataset.name} images", flush=True)
    model = fit(objective, k)
    started = time.perf_counter()
    results[f"{name} K={k}"] = evaluate(model)
    print(f"  test log-likelihood (K = {eval_k}) {results[f'{name} K={k}'][0]:.2f} nats "
          f"({time.perf_counter() - started:.0f} s)", flush=True)

# %% The table
print(f"\n{'':12s} {'test log p(x)':>14s} {'active units':>13s}    ({epochs} epochs; log p(x) by importance "
      f"sampling, K = {eval_k}; active: A_u > 1e-2)")
for label, (ll, activity) in results.items():
    print(f"{label:12s} {ll:14.2f} {int((activity > 1e-2).sum()):>7d} of {len(activity)}")
print("Burda et al., MNIST, one stochastic layer, k = 5 (3,280 epochs): VAE -86.47, IWAE -85.54 nats")

# %% Active units, sorted: the IWAE keeps more of its latent units in use
fig = Figure(figsize=(6, 3.5))  # a bare matplotlib figure, as plots.py draws them: no display needed
ax = fig.add_subplot()
for label, (_, activity) in results.items():
    ax.semilogy(np.sort(activity)[::-1], marker="o", label=label)
ax.axhline(1e-2, color="grey", linestyle="--", label="active: A_u > 1e-2")
ax.set(xlabel="latent unit (sorted)", ylabel="A_u = Var_x(E_q[u|x])", title="Active latent units")
ax.legend()
path = args.out / "active_units.png"
fig.savefig(path, dpi=100, bbox_inches="tight")
_common.wrote(path)
