"""How good is a trained VAE? The numbers the training command prints and the evaluate command reports.

Two numbers, both in nats per test image (higher is better):

* the ELBO, -(reconstruction + KL), with one sample of z per image: what training maximises (at beta = 1);
* the importance-weighted estimate of log p(x) with K samples (VAE.log_likelihood): also a lower bound on
  log p(x), but a tighter one; it is never below the ELBO on average, and approaches log p(x) as K grows.

Which of these compare across models? Only true log-densities of the same images (losses.likelihood_meaning,
printed under the summary): the continuous Bernoulli on grayscale pixels, the Bernoulli on binarized ones, the
Gaussian of squared error with its constant. The Bernoulli on grayscale pixels is not a density on [0, 1].

The training loss each epoch is the same single-sample quantity, recon + beta * KL, and every evaluation draws
its noise from the same generator (seeds.TEST_NOISE), so epoch 3's test loss and epoch 4's differ only because
the model changed. The noise for the ELBO is drawn on the host (NumPy), so CPU and GPU see the same draws; the
importance samples are drawn on the device, so the two backends give close but not identical estimates there.
"""

import sys

import numpy as np
from tqdm import tqdm

from minivae.core import backend
from minivae.core.losses import gaussian_nll_constant, likelihood_meaning
from minivae.run import seeds
from minivae.run.kinds import kind_of
from minivae.run.memory import DoesNotFit, is_allocation_failure

EVAL_BATCH = 1000  # examples per forward pass when evaluating: no gradients, so bigger batches are fine
IW_BATCH = 500  # the importance-weighted estimate decodes K times per batch: keep its working set smaller


def eval_samples_for(config, asked=None):
    """K for the log-likelihood: what the user asked for, else the kind of model's default (kinds.py)."""
    return kind_of(config).eval_samples if asked is None else asked


def test_losses(model, kind, x, y, seed, batch_size=EVAL_BATCH):
    """Single-sample loss over all of x (host array, (N, 784)), in batches, without gradients; kind: the model's
    row of kinds.KINDS.

    Returns {"loss", "recon", "kl"}, means over x in nats per example, with loss = recon + beta * kl. A
    conditional VAE reads the labels y (host integers, (N,)): its loss is the -ELBO of log p(x|y). M2 gives
    `semi_supervised_losses` instead.
    """
    if kind.semi_supervised:
        return semi_supervised_losses(model, x, y, seed)
    noise = seeds.generator(seed, seeds.TEST_NOISE)
    recon_sum = kl_sum = 0.0
    for start in range(0, len(x), batch_size):
        batch = backend.to_device(x[start:start + batch_size])
        labels = y[start:start + batch_size] if kind.conditioned else None
        eps = backend.to_device(noise.standard_normal((len(batch), model.latent), dtype=np.float32))
        recon, kl = model.per_example_losses(batch, labels, eps=eps)
        recon_sum += float(recon.sum())  # float32 sums of at most batch_size terms, then added up in float64
        kl_sum += float(kl.sum())
    recon, kl = recon_sum / len(x), kl_sum / len(x)
    return {"loss": recon + model.beta * kl, "recon": recon, "kl": kl}


def semi_supervised_losses(model, x, y, seed, batch_size=EVAL_BATCH // 10):
    """An M2 model on labelled images x (host, (N, D)), y (host integers, (N,)), without gradients: each image
    scored as labelled (E(x, y) with its class, and the classifier's -log q(y|x)) and as unlabelled (U(x), the
    -ELBO of log p(x) with the class summed out), and whether q(y|x) puts its mode on the right class.

    Returns means over x: {"loss" (labelled_weight * labelled + alpha * classification + unlabelled, as in
    training), "labelled", "classification", "unlabelled", "accuracy"}.
    """
    noise = seeds.generator(seed, seeds.TEST_NOISE)
    sums = dict.fromkeys(("labelled", "classification", "unlabelled", "accuracy"), 0.0)
    for start in range(0, len(x), batch_size):
        batch, labels = backend.to_device(x[start:start + batch_size]), backend.to_device(y[start:start + batch_size])
        n = len(batch)
        eps = backend.to_device(noise.standard_normal(((1 + model.classes) * n, model.latent), dtype=np.float32))
        neg_elbos, nll = model.labelled_losses(batch, labels, eps[:n])
        sums["labelled"] += float(neg_elbos.sum())
        sums["classification"] += float(nll.sum())
        sums["unlabelled"] += float(model.unlabelled_losses(batch, eps[n:]).sum())
        sums["accuracy"] += float((model.predict(batch) == labels).sum())
    means = {name: total / len(x) for name, total in sums.items()}
    loss = model.labelled_weight * means["labelled"] + model.alpha * means["classification"] + means["unlabelled"]
    return {"loss": loss} | means


def mean_log_likelihood(model, x, k, seed, y=None, batch_size=IW_BATCH):
    """Importance-weighted log p(x) with k samples (VAE.log_likelihood), averaged over x (host array, (N, D)):
    one number, in nats per example. With y (a CVAE): log p(x|y)."""
    rng = seeds.device_generator(seed, seeds.IMPORTANCE)  # VAE.log_likelihood draws on the device
    total = 0.0
    starts = range(0, len(x), batch_size)
    # K decodes of every test image can take minutes: show a bar (on a terminal only, like training's)
    for start in tqdm(starts, desc=f"log-likelihood, K={k}", unit="batch", leave=False, file=sys.stderr,
                      disable=None):
        labels = y[start:start + batch_size] if y is not None else None
        batch = backend.to_device(x[start:start + batch_size])
        total += float(model.log_likelihood(batch, labels, k=k, rng=rng).sum())
    return total / len(x)


def final_results(model, kind, x_test, y_test, seed, eval_samples):
    """The run's closing numbers, in nats per test image: the test ELBO at beta = 1 (whatever beta training
    used) and its terms, and the IW log-likelihood with eval_samples samples (None if 0). For a conditional VAE
    both bound log p(x|y). For M2: the test accuracy of q(y|x) and its bounds (`m2_final_results`).

    ELBO = -(recon + constant + KL). The constant is 0 except for squared error, which is the Gaussian
    -log N(x; out, 1/2) less (D/2) log(pi) (core/losses.py): the ELBO puts it back so that it bounds log p(x).
    Raises DoesNotFit when eval_samples decodes of a batch do not fit in memory.
    """
    if kind.semi_supervised:
        return m2_final_results(model, x_test, y_test, seed)
    y_test = y_test if kind.conditioned else None
    losses = test_losses(model, kind, x_test, y_test, seed)
    constant = recon_constant(model.recon_name, x_test.shape[1])
    elbo = elbo_of(losses, kind, model.recon_name, x_test.shape[1])
    try:
        ll = mean_log_likelihood(model, x_test, eval_samples, seed, y_test) if eval_samples > 0 else None
    except (MemoryError, ValueError) as err:  # K decodes of a batch at once: a K too big to allocate
        if not is_allocation_failure(err):
            raise
        raise DoesNotFit(f"{eval_samples} importance samples per image do not fit in memory",
                         ("eval_samples",)) from None
    return {"test_elbo": elbo, "test_recon": losses["recon"], "test_recon_constant": constant,
            "test_kl": losses["kl"], "test_log_likelihood": ll, "eval_samples": eval_samples}


def recon_constant(recon, pixels):
    """What the reconstruction loss leaves out of -log p(x|z), in nats per image: the Gaussian constant for squared
    error over `pixels` values (core/losses.py), 0 for the others."""
    return gaussian_nll_constant(pixels) if recon == "mse" else 0.0


def elbo_of(losses, kind, recon, pixels):
    """The ELBO at beta 1, in nats per image, from test losses as `test_losses` gives them (and as an epoch's
    record["test"] in the history keeps them): -(recon + constant + KL); for M2 (kind.semi_supervised), the ELBO of
    log p(x), -U(x). recon: the config's reconstruction loss; pixels: values per image."""
    if kind.semi_supervised:
        return -losses["unlabelled"]
    return -(losses["recon"] + recon_constant(recon, pixels) + losses["kl"])


def m2_final_results(model, x_test, y_test, seed):
    """M2's closing numbers: the test accuracy of q(y|x), and the test ELBO of log p(x) (the class summed out)
    and of log p(x, y) (the true class given), in nats per test image."""
    losses = semi_supervised_losses(model, x_test, y_test, seed)
    return {"test_accuracy": losses["accuracy"], "test_elbo": -losses["unlabelled"],
            "test_labelled_elbo": -losses["labelled"], "test_classification": losses["classification"]}


def all_finite(final):
    """Whether every number of final_results is finite (a model with NaN weights gives NaN everywhere)."""
    return all(np.isfinite(v) for v in final.values() if isinstance(v, float))


def summary(final, n_test, config):
    """The closing line: the ELBO as the sum it is, and the log-likelihood (for M2: the accuracy and bounds)."""
    kind = kind_of(config)
    if kind.semi_supervised:
        return (f"test set ({n_test} images): accuracy of q(y|x) {final['test_accuracy']:.2%}; ELBO of log p(x) "
                f"{final['test_elbo']:.2f} nats, of log p(x, y) {final['test_labelled_elbo']:.2f} nats")
    terms = f"recon {final['test_recon']:.2f}"
    if final.get("test_recon_constant"):
        terms += f" + Gaussian constant {final['test_recon_constant']:.2f}"
    bound = "ELBO of log p(x|y)" if kind.conditioned else "ELBO"
    line = f"test set ({n_test} images): {bound} {final['test_elbo']:.2f} nats = -({terms} + KL {final['test_kl']:.2f})"
    if config.get("beta", 1.0) != 1.0:
        line += f" at beta 1 (trained with beta {config['beta']})"
    if final["test_log_likelihood"] is not None:
        line += (f"; log-likelihood >= {final['test_log_likelihood']:.2f} nats (importance-weighted, "
                 f"K={final['eval_samples']})")
    if not all_finite(final):
        line += "; the model's weights hold NaN or infinity: this checkpoint is not usable"
    if final["test_log_likelihood"] is not None:
        line += f"\n  the log-likelihood is {likelihood_meaning(config['recon'], config['binarize'])[1]}"
    return line
