"""Tutorial 001: a VAE whose encoder outputs sigma itself, trained with squared error; is its latent space N(0, I)?

    python demos/001_sigma_mse.py                          # 10 epochs: well under a minute on a laptop CPU
    python demos/001_sigma_mse.py --full                   # the tutorial's 50 epochs
    python demos/001_sigma_mse.py --dataset fashion-mnist --data-dir /path/to/fashion-mnist
    python demos/001_sigma_mse.py --quick                  # seconds, on a tiny synthetic dataset

The setup is the preset keras-sigma-mse (minivae/run/presets.py): encoder 784-250 ReLU with linear heads for mu
and sigma (30 each), decoder 30-320 ReLU-784 sigmoid, loss = sum of squared errors + KL, Adam, batch 250.
Figures, in runs/demo-001_sigma_mse/ (or --out):

    latent_histograms.png   the encoder means of the test images, one panel per latent unit, against N(0, 1)
    latent_pca_2d.png       the 30-D means projected on their first 2 principal components, coloured by class
    latent_pca_3d.png       the same on 3 components
    interpolation.png       decoding the straight line between the codes of two test images (and .gif)
    progress_samples.gif    the same 64 z ~ N(0, I) decoded after every epoch: generation improving
    samples.png             100 new images
"""

# %% Setup: options and data
import _common
import numpy as np

from minivae.core import backend
from minivae.figures import plots, run_figures
from minivae.figures.pca import pca
from minivae.run import seeds

parser = _common.parser("001_sigma_mse", __doc__)
args = _common.parse(parser)
epochs = 50 if args.full else 3 if args.quick else 10
dataset = _common.load(args)  # grayscale: squared error needs no binary pixels

# %% Train with minivae's training loop (one line per epoch)
model, config, state = _common.fit("keras-sigma-mse", dataset, args, epochs)
_common.final(model, dataset, config, k=10 if args.quick else 100)
print("  (squared error is -log N(x; x_hat, 1/2) minus a constant; the ELBO above puts the constant back)")

# %% The latent space against the prior
# The KL term pulls every q(z|x) = N(mu, sigma^2) towards N(0, 1). What should match the prior is the mixture
# of all of them (the "aggregate posterior", what the tutorial's histograms of sampled codes show): per unit,
# its variance is Var(mu) + mean(sigma^2), which should be near 1. The means alone are narrower. A unit with
# Var(mu) near 0 is unused: its q(z|x) is the prior for every image, and the decoder ignores it ("posterior
# collapse"). Squared error is a weak likelihood (a Gaussian of variance 1/2 per pixel), so expect many.
mu, sigma = map(backend.to_numpy, model.encode(backend.to_device(dataset.x_test)))  # sigma: from a linear layer,
sigma2 = sigma**2  # so it may be negative; only sigma^2 enters z's distribution and the KL: the sign does not matter
aggregate = mu.var(axis=0) + sigma2.mean(axis=0)
active = np.flatnonzero(mu.var(axis=0) > 0.01)
print(f"\nVar(mu) + mean(sigma^2) per latent unit, 1 under the prior: median {np.median(aggregate):.2f} "
      f"({aggregate.min():.2f} .. {aggregate.max():.2f})")
print(f"active units (Var(mu) > 0.01): {len(active)} of {model.latent}: z{active.tolist()}")
print(f"|sigma| averaged over images: {np.abs(sigma[:, active]).mean():.2f} on the active units, "
      f"{np.abs(np.delete(sigma, active, axis=1)).mean():.2f} on the others; {np.mean(sigma < 0):.0%} of sigmas < 0")
paths = [plots.latent_histograms(mu, args.out / "latent_histograms.png", n=model.latent, ncols=10,
                                 figsize=(20.0, 2.0 * -(-model.latent // 10) + 0.75))]

# %% PCA of the test means, coloured by class
_, explained = pca(mu, 3)
print(f"principal components of the means: {', '.join(f'{e:.1%}' for e in explained)} of the variance")
names = _common.class_names(dataset)
paths.append(plots.latent_scatter(mu, dataset.y_test, args.out / "latent_pca_2d.png", class_names=names))
paths.append(plots.latent_scatter_3d(mu, dataset.y_test, args.out / "latent_pca_3d.png", class_names=names))

# %% Interpolation between two test images of different classes
# Decode (1 - t) mu_a + t mu_b for t from 0 to 1: a smooth morph if the latent space has no holes between them.
a = 0
b = int(np.argmax(dataset.y_test != dataset.y_test[a]))  # the first test image of another class
names = names or range(10)
print(f"interpolating between test images {a} ({names[dataset.y_test[a]]}) and {b} ({names[dataset.y_test[b]]})")
decode = run_figures.host_decoder(model)  # NumPy z in, NumPy images out, on either backend
paths.append(plots.interpolation(decode, mu[a], mu[b], args.out / "interpolation.png"))
paths.append(plots.interpolation_gif(decode, mu[a], mu[b], args.out / "interpolation.gif"))

# %% Generation improving over the epochs: the same 64 z decoded after every epoch
tiles = [plots.tile(f.astype(np.float32) / 255, 8) for f in state.frames["samples"]]
paths.append(plots.progress_gif(tiles, args.out / "progress_samples.gif",
                                titles=[f"the same z decoded\nafter epoch {e + 1}" for e in range(len(tiles))]))
z = seeds.generator(args.seed, seeds.SAMPLES).standard_normal((100, model.latent), dtype=np.float32)
paths.append(plots.image_grid(decode(z), args.out / "samples.png",
                              title="100 samples: z ~ N(0, I), decoded (pixel means)"))
_common.wrote(*paths)
