"""Tutorial 003: a convolutional VAE with a 2-D latent space: its manifold of images and where the classes land.

    python demos/003_conv_vae.py                           # 2 epochs of 10,000 images: 1-2 minutes on a CPU
    python demos/003_conv_vae.py --full                    # the tutorial: 10 epochs of all 60,000 (over half an hour)
    python demos/003_conv_vae.py --train-size 20000 --epochs 3
    python demos/003_conv_vae.py --dataset fashion-mnist --data-dir /path/to/fashion-mnist
    python demos/003_conv_vae.py --quick                   # seconds, on a tiny synthetic dataset

The setup is the preset keras-conv-2d (minivae/run/presets.py, minivae/models/convnet.py): four 3x3 convolutions (32, 64
stride 2, 64, 64), dense 32, latent 2; the decoder mirrors it with a transposed convolution; binary
cross-entropy on probabilities, Adam, batch 16. A convnet in NumPy is slow (an epoch takes about 55 times the
default MLP's: docs/speed.md's epoch times), so by default this trains on a random subset of the training images and
evaluates on the first 2,000 test images; --full uses them all. Figures, in runs/demo-003_conv_vae/ (or --out):

    manifold.png          15 x 15 images decoded over z = norm.ppf(linspace(0.05, 0.95, 15)) in each coordinate
    latent_scatter.png    the encoder means of the test images, coloured by class
"""

# %% Setup: options and data
import _common
import numpy as np

from minivae import cli
from minivae.core import backend
from minivae.figures import plots, run_figures

parser = _common.parser("003_conv_vae", __doc__)
parser.add_argument("--train-size", type=cli.positive_int, help="training images used (default 10,000; --full: all)")
parser.add_argument("--test-size", type=cli.positive_int, help="test images evaluated (default 2,000; --full: all)")
parser.add_argument("--epochs", type=cli.positive_int, help="default 2 (--full: the tutorial's 10)")
args = _common.parse(parser)
epochs = args.epochs or (10 if args.full else 1 if args.quick else 2)
dataset = _common.load(args)
n_train = args.train_size or (len(dataset.x_train) if args.full or args.quick else 10_000)
n_test = args.test_size or (len(dataset.x_test) if args.full or args.quick else 2_000)
keep = np.sort(np.random.default_rng(args.seed).permutation(len(dataset.x_train))[:n_train])
dataset.x_train, dataset.y_train = dataset.x_train[keep], dataset.y_train[keep]
dataset.x_test, dataset.y_test = dataset.x_test[:n_test], dataset.y_test[:n_test]
print(f"using {len(dataset.x_train):,} training images (a random subset unless --full) and the first "
      f"{len(dataset.x_test):,} test images")

# %% Two things this model does differently from the tutorial's code (models/convnet.py explains both)
# 1. The KL weight. The tutorial's loss is  mean over pixels of BCE - 5e-4 * mean over units of (1 + logvar -
#    mu^2 - exp(logvar)). Multiplied by 784 pixels that is  recon + beta * KL  with beta = 784 * 5e-4 * 2 / 2 =
#    0.392: a VAE whose KL counts for less than the ELBO says. Adam does not care about the overall factor
#    1/784, so the preset trains on recon + 0.392 * KL. (Try --beta 1 with python -m minivae.train.)
# 2. The sampler. The tutorial draws z = mu + exp(logvar) * eps, a standard deviation of sigma^2 where its KL
#    assumes sigma. minivae draws z = mu + exp(logvar / 2) * eps, as the KL assumes.
print("KL weight beta = 784 * 5e-4 * 2 / latent = 0.392 (the tutorial's loss, times 784); the sampler uses "
      "exp(logvar / 2), not the tutorial's exp(logvar)")

# %% Train with minivae's training loop (one line per epoch; the loss printed is recon + 0.392 * KL)
model, config, state = _common.fit("keras-conv-2d", dataset, args, epochs)
print("the ELBO below uses beta = 1, so it is recon + KL, not the training loss; the importance-weighted bound "
      "would decode every test image 100 times, so it is skipped here")
_common.final(model, dataset, config, k=0)

# %% How much the sampler bug would matter for this model
mu, logvar = map(backend.to_numpy, model.encode(backend.to_device(dataset.x_test[:1000])))
sigma = np.exp(logvar / 2)
print(f"\nposterior standard deviations: median sigma {np.median(sigma):.3f}; the tutorial's sampler would draw z "
      f"with sigma^2 = {np.median(sigma**2):.4f}, {np.median(1 / sigma):.1f}x less spread than its KL term assumes")

# %% The 2-D latent space: classes, then the decoded grid
mu = run_figures.encoder_means(model, dataset.x_test)
names = _common.class_names(dataset)
paths = [plots.latent_scatter(mu, dataset.y_test, args.out / "latent_scatter.png", class_names=names)]
edge = 1.645  # norm.ppf(0.95): the grid's edge
print(f"the test means span z[0] in [{mu[:, 0].min():.2f}, {mu[:, 0].max():.2f}], z[1] in [{mu[:, 1].min():.2f}, "
      f"{mu[:, 1].max():.2f}]; {np.mean(np.all(np.abs(mu) <= edge, axis=1)):.0%} lie inside the manifold's grid "
      f"[-{edge}, {edge}]^2")
paths.append(plots.manifold(run_figures.host_decoder(model), args.out / "manifold.png", n=15, quantiles=(0.05, 0.95)))
_common.wrote(*paths)
