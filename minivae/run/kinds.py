"""The kinds of model minivae trains, in one table: how each is built, what a training step is fed, and how it is
scored and drawn. A config's "arch" names its kind; every place that treats the kinds differently reads this table.

    arch  the model                               a step is fed (feeds.py)       scored (metrics.py)      drawn
    mlp   vae.mlp_vae: an MLP VAE                  images                        ELBO, log p(x)           images
    conv  convnet.conv_vae: tutorial 003's convnet images                        ELBO, log p(x)           images
    cvae  vae.mlp_vae(classes=K): conditional VAE  images with every label       ELBO, log p(x|y)         by class
    m2    m2.mlp_m2: classifier + conditional VAE  a few labelled, many not      accuracy of q(y|x), ELBOs by class
"""

from collections.abc import Callable
from dataclasses import dataclass

from minivae.models.convnet import conv_vae
from minivae.models.m2 import mlp_m2
from minivae.models.vae import mlp_vae

IMAGE_SIZE = 784  # 28 x 28 pixels: MNIST and Fashion-MNIST


@dataclass(frozen=True)
class Kind:
    """One row of the table. build(config, rng, dtype) makes the model; labels says what a step is fed: 'none',
    'every' (each image with its label) or 'few' (a few labelled images, many unlabelled). mlp: built of MLPs, so
    the config's hidden sizes and activation apply (the convnet's layers are fixed). eval_samples: the default K of
    the importance-weighted log-likelihood. vae_of(model) is the (conditional) VAE inside that decodes images."""

    arch: str
    description: str
    build: Callable
    labels: str
    mlp: bool = True
    eval_samples: int = 100
    vae_of: Callable = lambda model: model  # noqa: E731 (an instance attribute: called as a plain function)

    @property
    def conditioned(self):
        """Whether its decoder takes a class: decode(z, y), per_example_losses(x, y), ..."""
        return self.labels != "none"

    @property
    def semi_supervised(self):
        """M2: scored by its classifier's accuracy and its two ELBOs, trained on a few labels."""
        return self.labels == "few"


def _mlp(config, rng, dtype, classes=0):
    return mlp_vae(input_dim=IMAGE_SIZE, hidden=config["hidden"], decoder_hidden=config["decoder_hidden"],
                   latent=config["latent"], activation=config["activation"], posterior=config["posterior"],
                   recon=config["recon"], beta=config["beta"], classes=classes, init=config["init"], rng=rng,
                   dtype=dtype)


def _conv(config, rng, dtype):
    return conv_vae(latent=config["latent"], posterior=config["posterior"], recon=config["recon"],
                    beta=config["beta"], rng=rng, dtype=dtype)


def _cvae(config, rng, dtype):
    return _mlp(config, rng, dtype, classes=config["classes"])


def _m2(config, rng, dtype):
    # a checkpoint saved before labelled_weight existed trained with 1 (every mean weighing the same)
    labelled_weight = config.get("labelled_weight", 1.0)
    if labelled_weight is None:
        raise ValueError("the m2 config's labelled_weight is still None: fill it in from the training set first "
                         "(start.fill_labelled_weight)")
    return mlp_m2(input_dim=IMAGE_SIZE, hidden=config["hidden"], latent=config["latent"], classes=config["classes"],
                  classifier_hidden=config["classifier_hidden"], alpha=config["alpha"],
                  labelled_weight=labelled_weight, activation=config["activation"], init=config["init"], rng=rng,
                  dtype=dtype)


KINDS = {kind.arch: kind for kind in (
    Kind("mlp", "an MLP VAE", _mlp, labels="none"),
    Kind("conv", "tutorial 003's convnet VAE", _conv, labels="none", mlp=False, eval_samples=10),
    Kind("cvae", "a conditional VAE, q(z|x,y) and p(x|z,y)", _cvae, labels="every"),
    Kind("m2", "the semi-supervised M2: a classifier q(y|x) and a conditional VAE", _m2, labels="few",
         vae_of=lambda model: model.cvae),
)}


def kind_of(config):
    """The Kind a config's "arch" names."""
    return KINDS[config["arch"]]
