"""The default setup and one preset per seed tutorial: every hyperparameter of a run in one flat dict.

A config is plain data (strings, numbers, lists), so it goes into metrics.json and checkpoints as it is.
`build_model(config)` rebuilds the exact architecture from it (kinds.py says how for each kind of model) and
`build_optimizer(config, model)` its optimizer: the one way the commands, the demos and the tests make a model.
The training command starts from `DEFAULT`, overlays a preset, then any option the user gave. A config read from a
file (a checkpoint) is checked first with `config_problem`: a file from another version of minivae, or edited by
hand, is refused in one line rather than failing somewhere inside the model.
"""

import copy
import numbers

from minivae.core.gaussian import POSTERIORS
from minivae.core.layers import ACTIVATIONS
from minivae.core.losses import RECONSTRUCTIONS
from minivae.core.optim_fast import OPTIMIZERS
from minivae.models import iwae
from minivae.run import seeds
from minivae.run.checkpoint import is_number
from minivae.run.data import BINARIZE, DATASETS
from minivae.run.files import one_line
from minivae.run.kinds import IMAGE_SIZE, KINDS, kind_of
from minivae.run.memory import DoesNotFit, is_allocation_failure

DEFAULT = {
    "dataset": "mnist",
    "arch": "mlp",  # the kind of model: 'mlp', 'conv', 'cvae' or 'm2' (kinds.py)
    "hidden": [400],  # encoder hidden sizes
    "decoder_hidden": None,  # None: the encoder's, reversed
    "latent": 20,
    "activation": "relu",
    "posterior": "logvar",  # 'logvar' or 'sigma'
    "recon": "bce",  # 'bce' (logits), 'bce-prob' (Keras form), 'mse' (sum of squared errors), 'cb' (continuous
    #                   Bernoulli on logits: a true density for grayscale pixels)
    "beta": 1.0,
    "objective": "vae",  # 'vae' (the ELBO, averaged over k samples of z) or 'iwae' (the IW bound; models/iwae.py)
    "k": 1,  # samples of z per example in training
    # Weight initialisation (layers.init_weights): None is He before ReLU and LeCun-normal elsewhere. The default
    # setup uses PyTorch's uniform init, as the reference implementation of this model does (docs/experiments.md
    # compares the two).
    "init": "uniform",
    "optimizer": "adam",
    "lr": 1e-3,
    "batch_size": 128,
    "epochs": 10,
    "binarize": "none",  # 'none', 'threshold' (x > 0.5), 'dynamic' (a fresh Bernoulli draw every batch)
    "validation": 0.0,  # fraction of the training set held out
    "seed": 0,
}

PRESETS = {
    "default": {},
    # 000: TF-Slim on MNIST binarized at 0.5. fc 784-128 ReLU, then one linear 128-unit layer split into
    # mu (64) and logvar (64) -- the same as two 64-unit heads; decoder 64-128 ReLU-784 logits; Bernoulli
    # likelihood on logits; weights ~ N(0, 0.1^2) (truncated there); Adam defaults; 20,000 iterations of
    # batch 100, about 33 epochs of 60,000 images.
    "tfslim-binarized": {
        "hidden": [128], "latent": 64, "recon": "bce", "init": 0.1, "binarize": "threshold",
        "optimizer": "adam", "lr": 1e-3, "batch_size": 100, "epochs": 33,
    },
    # 001: Keras, encoder 784-250 ReLU with linear heads for mu and sigma (30 each), decoder 30-320 ReLU-784
    # sigmoid, sum of squared errors, KL 0.5 (mu^2 + sigma^2 - 1 - log(1e-10 + sigma^2)); Adam defaults,
    # batch 250, 50 epochs, grayscale MNIST.
    "keras-sigma-mse": {
        "init": None, "hidden": [250], "decoder_hidden": [320], "latent": 30, "posterior": "sigma",
        "recon": "mse", "optimizer": "adam", "lr": 1e-3, "batch_size": 250, "epochs": 50,
    },
    # 002: Keras, 784-256-2 ReLU, sigmoid decoder 2-256-784, binary cross-entropy on probabilities times 784
    # (a per-example sum), logvar KL; RMSprop (lr 1e-3), batch 100, 50 epochs, grayscale MNIST.
    "keras-2d-rmsprop": {
        "init": None, "hidden": [256], "latent": 2, "recon": "bce-prob", "optimizer": "rmsprop", "lr": 1e-3,
        "batch_size": 100, "epochs": 50,
    },
    # 003: Keras convnet (conv 32, conv 64 stride 2, conv 64, conv 64, dense 32; latent 2; decoder dense,
    # reshape, transposed conv, conv 1 filter sigmoid), BCE on probabilities, batch 16, 10 epochs. Its loss,
    # per-pixel-mean BCE - 5e-4 * mean(1 + logvar - mu^2 - exp(logvar)), is the ELBO divided by 784 with
    # beta = 784 * 5e-4 * 2 / latent = 0.392 (models/convnet.py); Adam is blind to the overall scale, so 0.392
    # reproduces it. Pass --beta 1 for the plain ELBO.
    "keras-conv-2d": {
        "arch": "conv", "latent": 2, "recon": "bce-prob", "beta": 0.392, "optimizer": "adam", "lr": 1e-3,
        "batch_size": 16, "epochs": 10,
    },
    # A conditional VAE trained on every labelled training image: q(z|x,y), p(x|z,y), 784+10 -> 500 -> 20,
    # 20+10 -> 500 -> 784 (models/vae.py).
    "cvae": {
        "arch": "cvae", "init": None, "hidden": [500], "latent": 20, "classes": 10, "optimizer": "adam",
        "lr": 1e-3, "batch_size": 100, "epochs": 10,
    },
    # Kingma et al.'s semi-supervised M2 (models/m2.py): `labels` training images keep their labels (labels /
    # classes of each class), the rest lose them. Each step takes `batch_size` unlabelled images (an epoch is
    # one pass over them) and `labelled_batch_size` labelled ones, drawn again every step. The paper: 500
    # hidden units everywhere, latent 50; alpha = 0.1 N in its data-set sums, which with our per-example
    # means is 0.1 N N_l / N_u ~ 0.1 * labels, and the labelled -ELBO weighs N_l / N_u (m2.py explains):
    # labelled_weight None is that share, worked out from the training set when a run starts
    # (start.fill_labelled_weight).
    "m2": {
        "arch": "m2", "init": None, "hidden": [500], "classifier_hidden": [500], "latent": 50, "classes": 10,
        "labels": 100, "alpha": 10.0, "labelled_weight": None, "optimizer": "adam", "lr": 1e-3, "batch_size": 100,
        "labelled_batch_size": 100, "epochs": 10,
    },
}

SOURCES = {
    "default": "the classic 784-400-20 MLP VAE (Kingma & Welling's setup)",
    "tfslim-binarized": "seed 000_37a2b0a2cd9b3e89 (TF-Slim, binarized MNIST)",
    "keras-sigma-mse": "seed 001_50716ab5e9c48dba (Keras, sigma parametrization, squared error)",
    "keras-2d-rmsprop": "seed 002_2fcd8d9a0551ec36 (Keras, 2-D latent, RMSprop)",
    "keras-conv-2d": "seed 003_2e3fa44ddac98e3b (Keras convnet, 2-D latent)",
    "cvae": "a conditional VAE, q(z|x,y) and p(x|z,y) (Kingma et al. 2014)",
    "m2": "the semi-supervised M2 model of Kingma, Rezende, Mohamed & Welling (2014)",
}


INITS = ("uniform", "he", "lecun", None)  # or a number: the standard deviation
CHOICES = {"dataset": DATASETS, "arch": tuple(KINDS), "activation": tuple(ACTIVATIONS), "posterior": tuple(POSTERIORS),
           "recon": tuple(RECONSTRUCTIONS), "optimizer": tuple(OPTIMIZERS), "binarize": BINARIZE,
           "objective": iwae.OBJECTIVES}


def config_problem(config, params=None):
    """What makes `config` (read from a file) unusable, in words ("it lacks 'latent'"), or None if nothing:
    every key of DEFAULT and a known preset, values among the known choices, sizes and rates in range, an
    objective the model can train on (iwae.check), and for M2 the labelled weight its run worked out. With
    `params` (name -> array, a checkpoint's), the config's sizes must also be sizes of those arrays, so that an
    edited config is refused before a model of its sizes is allocated."""
    def whole(value, low):
        return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low

    def sizes(value):
        return isinstance(value, list) and all(whole(size, 1) for size in value)

    number = is_number  # finite: an edited 1e400 or NaN is refused here, not met later as an overflow

    config = complete(config)  # a run from before objective and k existed is fine
    missing = [key for key in (*DEFAULT, "preset") if key not in config]
    if missing:
        return f"its config lacks {', '.join(map(repr, missing))}"
    if not isinstance(config["preset"], str) or config["preset"] not in PRESETS:
        return f"its config names the preset {config['preset']!r}, which this minivae does not know"
    for key, choices in CHOICES.items():
        if config[key] not in choices:
            return f"its config has {key} {config[key]!r}, which this minivae does not know (one of {choices})"
    checks = {"latent": whole(config["latent"], 1), "batch_size": whole(config["batch_size"], 1),
              "epochs": whole(config["epochs"], 0), "seed": whole(config["seed"], 0), "k": whole(config["k"], 1),
              "hidden": sizes(config["hidden"]),
              "decoder_hidden": config["decoder_hidden"] is None or sizes(config["decoder_hidden"]),
              "lr": number(config["lr"]) and config["lr"] > 0, "beta": number(config["beta"]) and config["beta"] >= 0,
              "validation": number(config["validation"]) and 0 <= config["validation"] < 1,
              "init": config["init"] in INITS or (number(config["init"]) and config["init"] > 0)}
    kind = kind_of(config)
    if kind.conditioned:  # the keys of the presets that use labels
        checks["classes"] = whole(config.get("classes"), 2)
    if kind.semi_supervised:
        checks |= {"labels": whole(config.get("labels"), 1),
                   "labelled_batch_size": whole(config.get("labelled_batch_size"), 1),
                   "classifier_hidden": sizes(config.get("classifier_hidden")),
                   "alpha": number(config.get("alpha")) and config["alpha"] >= 0,
                   # a run saves the weight it worked out from its data (start.fill_labelled_weight), never None;
                   # a checkpoint from before the key existed has none (it trained with 1)
                   "labelled_weight": "labelled_weight" not in config
                   or (number(config["labelled_weight"]) and config["labelled_weight"] >= 0)}
    bad = [key for key, fine in checks.items() if not fine]
    if bad:
        return f"its config has an unusable {bad[0]} ({config[bad[0]]!r})"
    try:
        iwae.check(config["objective"], config["k"], config["beta"])
    except ValueError as err:
        return f"its config has objective {config['objective']} with k {config['k']} and beta {config['beta']}: {err}"
    if kind.conditioned and (config["objective"], config["k"]) != ("vae", 1):
        return (f"its config has objective {config['objective']} with k {config['k']}, but {kind.description} "
                f"trains on the ELBO with one sample of z")
    return _sizes_problem(config, kind, params) if params is not None else None


def _sizes_problem(config, kind, params):
    """A size in the config that is the size of none of the parameters (a config edited apart from its weights)."""
    dims = {int(d) for array in params.values() for d in array.shape}
    sizes = [("latent", config["latent"])]  # (key, value): value must be a parameter's size
    if kind.mlp:
        sizes += [("hidden", h) for h in config["hidden"]] + [("decoder_hidden", h) for h in config["decoder_hidden"]
                                                              or ()]
    if kind.semi_supervised:
        sizes += [("classifier_hidden", h) for h in config["classifier_hidden"]]
    for key, size in sizes:
        if size not in dims:
            return f"its config has {key} {size}, but none of its parameters has that size"
    if kind.conditioned and IMAGE_SIZE + config["classes"] not in dims:  # the encoder reads x and a one-hot y
        return f"its config has classes {config['classes']}, but its encoder does not read that many"
    return None


def config_for(preset="default", **overrides):
    """DEFAULT, then the preset, then the overrides whose value is not None."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    config = copy.deepcopy(DEFAULT) | copy.deepcopy(PRESETS[preset]) | {"preset": preset}
    config |= {k: v for k, v in overrides.items() if v is not None}
    return config


# Config keys added after checkpoints were first written: a config without them trained as DEFAULT says.
LATER_KEYS = ("objective", "k")


def complete(config):
    """A config read from a file, with the LATER_KEYS it predates set to their defaults (objective 'vae',
    k 1: how such a run trained)."""
    return {key: DEFAULT[key] for key in LATER_KEYS if key not in config} | dict(config)


def check_objective(config):
    """Raise ValueError (one line) if the config's objective and k cannot train its model (iwae.check)."""
    iwae.check(config["objective"], config["k"], config["beta"])


def build_model(config, rng=None, dtype="float32"):
    """The model a config describes (kinds.py), with fresh weights drawn from rng (default: the config's seed, so
    the same config always gives the same initial weights; see seeds.py). Sizes too big to allocate raise
    DoesNotFit naming them."""
    kind = kind_of(config)
    try:
        return kind.build(config, seeds.weights(config["seed"]) if rng is None else rng, dtype)
    except (MemoryError, ValueError) as err:
        if not is_allocation_failure(err):
            raise
        keys = ("hidden", "latent") if kind.mlp else ("latent",)
        sizes = ", ".join(f"{key} {config[key]}" for key in keys)
        raise DoesNotFit(f"a model with {sizes} does not fit in memory ({one_line(err)})", keys) from None


def build_optimizer(config, model):
    """The optimizer a config names (optim_fast.py's: the plain ones' numbers, faster), over the model's
    parameters, with the config's learning rate."""
    if config["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {config['optimizer']!r}; choose one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[config["optimizer"]](model.params, lr=config["lr"])
