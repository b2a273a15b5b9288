"""Tutorial 002: a VAE with a 2-D latent space, which we can look at directly: the classes, and the images
decoded over a grid.

    python demos/002_latent_2d.py                          # 10 epochs: well under a minute on a laptop CPU
    python demos/002_latent_2d.py --full                   # the tutorial's 50 epochs
    python demos/002_latent_2d.py --dataset fashion-mnist --data-dir /path/to/fashion-mnist
    python demos/002_latent_2d.py --quick                  # seconds, on a tiny synthetic dataset

The setup is the preset keras-2d-rmsprop (minivae/run/presets.py): encoder 784-256 ReLU with two heads of 2 (mu
and logvar), decoder 2-256 ReLU-784 sigmoid, binary cross-entropy summed over pixels + KL, RMSprop, batch
100. Figures, in runs/demo-002_latent_2d/ (or --out):

    loss_curves.png       train and test loss per epoch, with the reconstruction and KL terms apart
    latent_scatter.png    the encoder means of the test images, coloured by class
    manifold.png          15 x 15 images decoded over z = norm.ppf(linspace(0.05, 0.95, 15)) in each coordinate
"""

# %% Setup: options and data
import _common
import numpy as np
from scipy.stats import norm

from minivae.figures import plots, run_figures

parser = _common.parser("002_latent_2d", __doc__)
args = _common.parse(parser)
epochs = 50 if args.full else 3 if args.quick else 10
dataset = _common.load(args)

# %% Train with minivae's training loop (one line per epoch)
model, config, state = _common.fit("keras-2d-rmsprop", dataset, args, epochs)
_common.final(model, dataset, config, k=10 if args.quick else 100)

# %% Loss curves: the two terms pull against each other
# The reconstruction term falls as the decoder improves; the KL term usually *rises* at first: to reconstruct,
# the encoder must move images apart in z, away from the prior's N(0, I), and it pays for that in KL.
first, last = state.history[0], state.history[-1]
for key, what in (("recon", "reconstruction"), ("kl", "KL")):
    print(f"{what:>14}: test {first['test'][key]:7.2f} after epoch 1, {last['test'][key]:7.2f} after epoch {epochs}")
print(f"{'gap':>14}: test loss - train loss = {last['test']['loss'] - last['train']['loss']:+.2f} nats after epoch "
      f"{epochs} (a gap that keeps growing is overfitting)")
paths = [plots.loss_curves(state.history, args.out / "loss_curves.png")]

# %% Where each class lands in the 2-D latent space
mu = run_figures.encoder_means(model, dataset.x_test)
names = _common.class_names(dataset) or [str(c) for c in range(10)]
print(f"\nthe test means span z[0] in [{mu[:, 0].min():.2f}, {mu[:, 0].max():.2f}], z[1] in [{mu[:, 1].min():.2f}, "
      f"{mu[:, 1].max():.2f}]; each class's centre, and its spread (RMS distance to the centre):")
for c in np.unique(dataset.y_test):
    points = mu[dataset.y_test == c]
    centre = points.mean(axis=0)
    spread = np.sqrt(np.mean(np.sum((points - centre) ** 2, axis=1)))
    print(f"  {names[c]:>12}: ({centre[0]:+.2f}, {centre[1]:+.2f})  spread {spread:.2f}")
paths.append(plots.latent_scatter(mu, dataset.y_test, args.out / "latent_scatter.png",
                                  class_names=_common.class_names(dataset)))

# %% The manifold: decode a 15 x 15 grid of z
# The grid is evenly spaced in *probability* under the prior: norm.ppf(0.05) = -1.64 to norm.ppf(0.95) = 1.64,
# closer together near 0 where the prior puts most of its mass.
edge = norm.ppf(0.95)
inside = np.mean(np.all(np.abs(mu) <= edge, axis=1))
print(f"\nthe manifold covers z in [-{edge:.2f}, {edge:.2f}]^2, where {inside:.0%} of the test means lie")
paths.append(plots.manifold(run_figures.host_decoder(model), args.out / "manifold.png", n=15, quantiles=(0.05, 0.95)))
_common.wrote(*paths)
