"""Anomaly detection with a VAE (tutorial 002's application): train on every class but one, then ask how
surprised the model is by each test image. Does the class it never saw stand out?

    python demos/anomaly_detection.py                      # hold out class 8; 10 epochs, under a minute on a CPU
    python demos/anomaly_detection.py --holdout 1          # a class the score fails on (see the numbers)
    python demos/anomaly_detection.py --full               # the tutorial's 50 epochs
    python demos/anomaly_detection.py --dataset fashion-mnist --data-dir /path/to/fashion-mnist
    python demos/anomaly_detection.py --quick              # seconds, on a tiny synthetic dataset

The model is tutorial 002's (preset keras-2d-rmsprop), trained on the training images of the 9 other classes.
The anomaly score of an image is its negative ELBO, recon + KL: an upper bound on -log p(x), the number of nats
the model needs to describe the image. We also try the tighter importance-weighted -log p(x). How well a score
separates the held-out class from the rest is its ROC AUC: the probability that a random held-out image scores
higher than a random normal one (1 = perfect, 0.5 = chance, below 0.5 = backwards). Figures, in
runs/demo-anomaly_detection/ (or --out):

    score_extremes.png    the 8 test images with the lowest scores (top row) and the 8 with the highest (bottom row)
"""

# %% Setup: options and data
import _common
import numpy as np
from scipy.stats import rankdata

from minivae.core import backend
from minivae.figures import plots
from minivae.run import data, seeds

parser = _common.parser("anomaly_detection", __doc__)
parser.add_argument("--holdout", type=int, default=8, choices=range(10), metavar="{0..9}",
                    help="the class left out of training (default 8)")
args = _common.parse(parser)
epochs = 50 if args.full else 3 if args.quick else 10
full = _common.load(args)
names = _common.class_names(full) or [str(c) for c in range(10)]
train_keep, test_keep = full.y_train != args.holdout, full.y_test != args.holdout
normal = data.Dataset(full.name, full.x_train[train_keep], full.y_train[train_keep],
                      full.x_test[test_keep], full.y_test[test_keep])  # what the model may see
print(f"held out: class {args.holdout} ({names[args.holdout]}), {np.sum(~train_keep):,} training images dropped; "
      f"{np.sum(~test_keep):,} of the {len(full.x_test):,} test images are the anomalies")

# %% Train on the normal classes only (minivae's training loop; the test loss is on normal test images)
model, config, state = _common.fit("keras-2d-rmsprop", normal, args, epochs)

# %% Score every test image
x, anomaly = full.x_test, full.y_test == args.holdout
# The model computes where its weights are (the GPU with CuPy): the images and the noise go there, the scores
# come back to the host for SciPy and the plots.
x_device = backend.to_device(x)
eps = seeds.generator(args.seed, seeds.TEST_NOISE).standard_normal((len(x), model.latent), dtype=np.float32)
recon, kl = map(backend.to_numpy, model.per_example_losses(x_device, eps=backend.to_device(eps)))  # nats, one z each
neg_elbo = recon + kl
k = 10 if args.quick else 100
importance = seeds.device_generator(args.seed, seeds.IMPORTANCE)
neg_ll = -np.concatenate([backend.to_numpy(model.log_likelihood(x_device[i:i + 500], k=k, rng=importance))
                          for i in range(0, len(x), 500)])


def roc_auc(scores, positive):
    """P(score of a random positive > score of a random negative), ties counted half: the Mann-Whitney U
    statistic over n_pos * n_neg. With ranks r (1 = lowest, ties averaged), U = sum of the positives' ranks
    - n_pos (n_pos + 1) / 2: each positive's rank counts the scores at or below it, itself included."""
    ranks = rankdata(scores)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return (ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


print(f"\nROC AUC, held-out class ({anomaly.sum()} images) against the rest ({(~anomaly).sum()}):")
print(f"  -ELBO (recon + KL)                      {roc_auc(neg_elbo, anomaly):.3f}")
print(f"  -log p(x), importance-weighted, K={k:<4}  {roc_auc(neg_ll, anomaly):.3f}")
print(f"  reconstruction term alone               {roc_auc(recon, anomaly):.3f}")
# A baseline that knows nothing: the total ink (sum of pixel values). A likelihood model of pixels finds dark,
# mostly empty images easy to describe, whatever they show; where the VAE's AUC is close to this one, the
# score measures little more than how much ink an image has.
print(f"  baseline: total ink of the image        {roc_auc(x.sum(axis=1), anomaly):.3f}")

# %% Which classes the model finds surprising
print("\nmean -ELBO per test class (nats; the model never saw the held-out class):")
for c in np.unique(full.y_test):
    mark = "   <- held out" if c == args.holdout else ""
    print(f"  {names[c]:>12}: {neg_elbo[full.y_test == c].mean():7.1f}{mark}")

# %% The least and the most surprising test images
paths = [plots.score_extremes(x, neg_elbo, args.out / "score_extremes.png")]
top = np.argsort(neg_elbo)[::-1][:100]
print(f"\nof the 100 highest-scored test images, {np.mean(anomaly[top]):.0%} are held-out ones "
      f"({np.mean(anomaly):.0%} of the test set is)")
_common.wrote(*paths)
