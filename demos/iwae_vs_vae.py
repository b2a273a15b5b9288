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

from minivae import cli
from minivae.core import backend
from minivae.run import metrics

parser = _common.parser("iwae_vs_vae", __doc__)
parser.add_argument("--k", type=cli.positive_int, default=5, help="samples of z per image in training (default 5)")
parser.add_argument("--eval-k", type=cli.positive_int,
                    help="importance samples for the test log-likelihood (default 1000)")
args = _common.parse(parser)
epochs = 100 if args.full else 2 if args.quick else 10
eval_k = args.eval_k or (50 if args.quick else 1000)
dataset = _common.load(args, binarize="dynamic")  # training images are redrawn as binary every batch
x_test = dataset.x_test  # binarized once, with a fixed seed
RUNS = [("VAE", "vae", args.k), ("IWAE", "iwae", args.k)]


# %% Training and evaluation
# minivae's training loop with --objective and --k (feeds.py): each step draws eps (K, B, L), and
# iwae.step encodes the batch once and decodes all K*B samples of z together.
def evaluate(model, config):
    """The test log-likelihood (every model sees the same importance draws) and each unit's A_u."""
    started = time.perf_counter()
    ll = metrics.mean_log_likelihood(model, x_test, eval_k, config["seed"])
    means = np.concatenate([backend.to_numpy(model.encode(backend.to_device(x_test[i:i + 1000]))[0])
                            for i in range(0, len(x_test), 1000)])
    print(f"test log-likelihood (K = {eval_k}) {ll:.2f} nats ({time.perf_counter() - started:.0f} s)", flush=True)
    return ll, means.var(axis=0)  # A_u = Var_x(E_q[u|x]), (L,)


results = {}
for name, objective, k in RUNS:
    print(f"\n{name}, K = {k}, on dynamically binarized {dataset.name}:")
    model, config, _ = _common.fit("default", dataset, args, epochs, out=args.out / f"{objective}-k{k}",
                                   binarize="dynamic", objective=objective, k=k)
    results[f"{name} K={k}"] = evaluate(model, config)

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
