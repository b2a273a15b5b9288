"""What one training step feeds each kind of model (kinds.py): no labels, every label, or a few.

    labels 'none'   VAE, convnet VAE     model.step(x, eps=eps)                        the labels are never read
    labels 'every'  conditional VAE      model.step(x, y, eps=eps)                     every image with its label
    labels 'few'    M2                   model.step(x_l, y_l, x_u, eps_l, eps_u)       a few images keep theirs

The training loop (training.py) runs an epoch over `feed.rows`, the training images it cuts into shuffled
batches, and hands each batch to `feed.step`. For M2, `choose_labelled` picks the images that keep their label,
labels / K of each class, with the generator seeds.LABELS, so a seed always picks the same ones; the epoch is a
pass over all the others, which lose their label, and every step also draws `labelled_batch_size` labelled
images (with replacement) from the epoch's noise generator. The loop saves that generator's state after every
step, so a run resumed mid-epoch draws the same labelled batches and the same noise.
"""

import numpy as np

from minivae.core import backend
from minivae.models import iwae
from minivae.run import data, seeds
from minivae.run.kinds import kind_of


def choose_labelled(y, count, classes, seed):
    """The indices (sorted) of the `count` training images that keep their label: count / classes of each class,
    drawn without replacement by seeds.generator(seed, seeds.LABELS). y: (N,) host integers.

    Raises ValueError, saying why, when count is not a positive multiple of classes, leaves no image unlabelled,
    or asks more of a class than it has.
    """
    if count <= 0 or count % classes:
        raise ValueError(f"{count} labels cannot be shared equally among {classes} classes; use a multiple of "
                         f"{classes}")
    if count >= len(y):
        raise ValueError(f"{count} labels are not fewer than the {len(y):,} training images; M2 learns from "
                         f"labelled and unlabelled images, so some must stay unlabelled")
    rng = seeds.generator(seed, seeds.LABELS)
    per_class = count // classes
    chosen = []
    for c in range(classes):
        members = np.flatnonzero(y == c)
        if len(members) < per_class:
            raise ValueError(f"class {c} has {len(members)} training images, fewer than the {per_class} labels "
                             f"asked for each class")
        chosen.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(chosen))


class Unsupervised:
    """Every training image, without its label: model.step(x, eps=eps), or iwae.step for a K-sample objective."""

    def __init__(self, dataset, config):
        self.rows = np.arange(len(dataset.x_train))
        self.objective, self.k = config.get("objective", "vae"), config.get("k", 1)

    def step(self, model, x, rows, noise):
        """One forward and backward on the batch x (the training images `rows`, on the device): fills
        model.grads, returns the vae.Loss. The plain VAE (objective 'vae', k 1) draws eps (B, L) for model.step;
        the K-sample objectives draw eps (K, B, L) for iwae.step (the K-sample ELBO, or the importance-weighted
        bound: see iwae.py)."""
        if self.objective == "vae" and self.k == 1:
            eps = noise.standard_normal((len(x), model.latent), dtype=np.float32)
            return model.step(x, eps=backend.to_device(eps))
        eps = noise.standard_normal((self.k, len(x), model.latent), dtype=np.float32)
        return iwae.step(model, x, self.objective, eps=backend.to_device(eps))


class Supervised(Unsupervised):
    """Every training image with its label: model.step(x, y, eps=eps)."""

    def __init__(self, dataset, config):
        super().__init__(dataset, config)
        self.y_train = dataset.y_train

    def step(self, model, x, rows, noise):
        eps = noise.standard_normal((len(x), model.latent), dtype=np.float32)
        return model.step(x, self.y_train[rows], eps=backend.to_device(eps))


class SemiSupervised:
    """config['labels'] images keep their label, the loop runs over the rest: model.step(x_l, y_l, x_u, ...)."""

    def __init__(self, dataset, config):
        self.labelled = choose_labelled(dataset.y_train, config["labels"], config["classes"], config["seed"])
        self.rows = np.setdiff1d(np.arange(len(dataset.x_train)), self.labelled)  # the unlabelled images
        self.dynamic = config["binarize"] == "dynamic"  # then a fresh binary draw of each labelled batch too
        x_labelled = dataset.x_train[self.labelled]
        self.x_labelled = x_labelled if self.dynamic else backend.to_device(x_labelled)
        self.y_labelled = dataset.y_train[self.labelled]
        self.batch_size = config["labelled_batch_size"]

    def step(self, model, x, rows, noise):
        pick = noise.integers(0, len(self.labelled), self.batch_size)
        if self.dynamic:
            x_labelled = backend.to_device(data.binarize_batch(self.x_labelled[pick], noise))
        else:
            x_labelled = self.x_labelled[backend.to_device(pick)]
        eps_labelled = noise.standard_normal((len(pick), model.latent), dtype=np.float32)
        eps_unlabelled = noise.standard_normal((model.classes * len(x), model.latent), dtype=np.float32)
        return model.step(x_labelled, self.y_labelled[pick], x, eps_labelled=backend.to_device(eps_labelled),
                          eps_unlabelled=backend.to_device(eps_unlabelled))


FEEDS = {"none": Unsupervised, "every": Supervised, "few": SemiSupervised}


def feed_for(config, dataset):
    """What the loop feeds the config's model, from this dataset."""
    return FEEDS[kind_of(config).labels](dataset, config)
