"""`python -m minivae.evaluate CKPT`: how good is a trained VAE? Also the measurements and figures of train.py.

    python -m minivae.evaluate runs/<run>/checkpoint.npz            # or just the run folder
    python -m minivae.evaluate runs/<run> --eval-samples 1000       # a tighter log-likelihood bound

Two numbers, both in nats per test image (higher is better):

* the ELBO, -(reconstruction + KL), with one sample of z per image: what training maximises (at beta = 1);
* the importance-weighted estimate of log p(x) with K samples (VAE.log_likelihood): also a lower bound on
  log p(x), but a tighter one; it is never below the ELBO on average, and approaches log p(x) as K grows.

The training loss each epoch is the same single-sample quantity, recon + beta * KL, and every evaluation draws
its noise from a generator seeded the same way, so epoch 3's test loss and epoch 4's differ only because the
model changed. The noise for the ELBO is drawn on the host (NumPy), so CPU and GPU see the same draws; the
importance samples are drawn on the device by VAE.log_likelihood, so the two backends give close but not
identical estimates there.

The rest of the module is what the training command writes into its output folder: the frames of the progress
GIFs after every epoch (`progress_frames`) and the standard figures at the end (`write_figures`).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from minivae import backend, checkpoint, data, plots, presets
from minivae.losses import gaussian_nll_constant

# Purposes of the generators seeded with (seed, 0, purpose); train.py uses (seed, epoch, 0 and 1) for epochs >= 1.
TEST_NOISE, IMPORTANCE, SAMPLES, FIXED_Z = 2, 3, 4, 5
EVAL_BATCH = 1000  # examples per forward pass when evaluating: no gradients, so bigger batches are fine
IW_BATCH = 500  # the importance-weighted estimate decodes K times per batch: keep its working set smaller
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
PROGRESS_SAMPLES, PROGRESS_IMAGES = 64, 16  # per progress-GIF frame: decoded fixed z, reconstructed test images
# The default K of the importance-weighted estimate. The convnet decodes ~1,100 images/s on a 2-core CPU, so
# K = 100 over 10,000 test images would take ~15 minutes there; K = 10 takes ~1.5 (a looser bound).
EVAL_SAMPLES = {"mlp": 100, "conv": 10}


def eval_samples_for(config, asked=None):
    """K for the log-likelihood: what the user asked for, else the architecture's default."""
    return EVAL_SAMPLES.get(config["arch"], 100) if asked is None else asked


def generator(seed, purpose):
    """The host generator for one evaluation purpose, the same every time it is asked for."""
    return np.random.default_rng([seed, 0, purpose])


def test_losses(model, x, seed, batch_size=EVAL_BATCH):
    """Single-sample loss over all of x (host array, (N, 784)), in batches, without gradients.

    Returns {"loss", "recon", "kl"}, means over x in nats per example, with loss = recon + beta * kl.
    """
    noise = generator(seed, TEST_NOISE)
    recon_sum = kl_sum = 0.0
    for start in range(0, len(x), batch_size):
        batch = backend.to_device(x[start:start + batch_size])
        eps = backend.to_device(noise.standard_normal((len(batch), model.latent), dtype=np.float32))
        recon, kl = model.per_example_losses(batch, eps=eps)
        recon_sum += float(recon.sum())  # float32 sums of at most batch_size terms, then added up in float64
        kl_sum += float(kl.sum())
    recon, kl = recon_sum / len(x), kl_sum / len(x)
    return {"loss": recon + model.beta * kl, "recon": recon, "kl": kl}


def log_likelihood(model, x, k, seed, batch_size=IW_BATCH):
    """Importance-weighted log p(x) with k samples, averaged over x (host array), in nats per example."""
    # VAE.log_likelihood draws on the device, so it needs a generator of the backend in use. CuPy's wants an
    # integer seed: SeedSequence turns (seed, purpose) into one.
    rng = backend.default_rng(int(np.random.SeedSequence([seed, 0, IMPORTANCE]).generate_state(1)[0]))
    total = 0.0
    starts = range(0, len(x), batch_size)
    # K decodes of every test image can take minutes: show a bar (on a terminal only, like training's)
    for start in tqdm(starts, desc=f"log-likelihood, K={k}", unit="batch", leave=False, file=sys.stderr,
                      disable=None):
        total += float(model.log_likelihood(backend.to_device(x[start:start + batch_size]), k=k, rng=rng).sum())
    return total / len(x)


def final_results(model, x_test, seed, eval_samples):
    """The run's closing numbers: the test ELBO (and its two terms) and the IW log-likelihood (None if k = 0)."""
    losses = test_losses(model, x_test, seed)
    elbo = -(losses["recon"] + losses["kl"])  # the bound itself, at beta = 1 whatever beta training used
    if model.recon_name == "mse":  # squared error is -log N(x; out, 1/2) minus a constant: put it back
        elbo -= gaussian_nll_constant(x_test.shape[1])
    ll = log_likelihood(model, x_test, eval_samples, seed) if eval_samples > 0 else None
    return {"test_elbo": elbo, "test_recon": losses["recon"], "test_kl": losses["kl"], "test_log_likelihood": ll,
            "eval_samples": eval_samples}


def summary(final, n_test):
    """The closing line: ELBO with its terms, and the log-likelihood."""
    line = (f"test set ({n_test} images): ELBO {final['test_elbo']:.2f} nats (recon {final['test_recon']:.2f}, "
            f"KL {final['test_kl']:.2f})")
    if final["test_log_likelihood"] is not None:
        line += f"; log-likelihood >= {final['test_log_likelihood']:.2f} nats (importance-weighted, " \
                f"K={final['eval_samples']})"
    return line


# ---------------------------------------------------------------- pictures


def _decoder(model):
    """model.decode as plots wants it: NumPy float32 z in, NumPy pixel means out."""
    return lambda z: backend.to_numpy(model.decode(backend.to_device(z)))


def _as_uint8(images):
    return np.round(np.clip(backend.to_numpy(images), 0, 1) * 255).astype(np.uint8)


def progress_frames(model, x_test, seed):
    """What the progress GIFs show after one epoch: the same z decoded, and the same test images
    reconstructed, as uint8 (n, 784) arrays (small enough to keep every epoch's in the checkpoint)."""
    z = generator(seed, FIXED_Z).standard_normal((PROGRESS_SAMPLES, model.latent), dtype=np.float32)
    recon = model.reconstruct(backend.to_device(x_test[:PROGRESS_IMAGES]))
    return {"samples": _as_uint8(model.decode(backend.to_device(z))), "reconstructions": _as_uint8(recon)}


def encoder_means(model, x, batch_size=EVAL_BATCH):
    """mu(x) for every row of x (host array), as a NumPy (N, latent) array."""
    return np.concatenate([backend.to_numpy(model.encode(backend.to_device(x[start:start + batch_size]))[0])
                           for start in range(0, len(x), batch_size)])


def write_figures(model, dataset, history, frames, folder, seed):
    """The standard set of figures for a trained model, into folder. Returns the paths written.

    frames: {"samples": [uint8 (64, 784) per epoch], "reconstructions": [uint8 (16, 784) per epoch]}.
    """
    folder = Path(folder)
    x, y = dataset.x_test, dataset.y_test
    decode = _decoder(model)
    names = FASHION_CLASSES if dataset.name == "fashion-mnist" else None
    paths = [plots.reconstructions(x[:10], backend.to_numpy(model.reconstruct(backend.to_device(x[:10]))),
                                   folder / "reconstructions.png")]
    z = generator(seed, SAMPLES).standard_normal((100, model.latent), dtype=np.float32)
    paths.append(plots.image_grid(decode(z), folder / "samples.png",
                                  title="100 samples: z ~ N(0, I), decoded (pixel means)"))
    if history:
        paths.append(plots.loss_curves(history, folder / "loss_curves.png"))
    means = encoder_means(model, x)
    if model.latent >= 2:
        paths.append(plots.latent_scatter(means, y, folder / "latent_scatter.png", class_names=names))
    paths.append(plots.latent_histograms(means, folder / "latent_histograms.png"))
    if model.latent == 2:
        paths.append(plots.manifold(decode, folder / "manifold.png"))
    other = int(np.argmax(y != y[0]))  # the first test image of another class than image 0 (or 0 itself)
    paths.append(plots.interpolation(decode, means[0], means[other], folder / "interpolation.png"))
    epochs = [h["epoch"] for h in history]
    originals = _as_uint8(x[:PROGRESS_IMAGES])
    gifs = (("samples", "the same z decoded", (5.0, 5.5)),  # 8 x 8 images
            ("reconstructions", "test images above reconstructions", (6.0, 3.75)))  # 4 rows of 8
    for name, title, figsize in gifs:
        if frames.get(name):  # one frame per epoch, 8 images a row
            shown = [np.concatenate([originals, f]) if name == "reconstructions" else f for f in frames[name]]
            tiles = [plots.tile(f.astype(np.float32) / 255, 8) for f in shown]
            titles = [f"{title}\nafter epoch {e}" for e in epochs] if len(epochs) == len(tiles) else None
            paths.append(plots.progress_gif(tiles, folder / f"progress_{name}.gif", titles=titles, figsize=figsize))
    return paths


# ---------------------------------------------------------------- the command


def evaluate_checkpoint(path, data_dir=None, eval_samples=None):
    """Load a checkpoint and its dataset, print and return final_results. Errors are one-line exceptions
    (CheckpointError, DataError)."""
    ckpt = checkpoint.load(path)
    config = ckpt.config
    model = presets.build_model(config)
    checkpoint.restore(model, None, ckpt)
    dataset = data.load(config["dataset"], data_dir, binarize=config["binarize"], seed=config["seed"],
                        validation=config["validation"])
    where = f"epoch {ckpt.epoch}" + (f", step {ckpt.step} of epoch {ckpt.epoch + 1}" if ckpt.step else "")
    print(f"{ckpt.path}: {config['preset']} preset, latent {config['latent']}, trained on {config['dataset']} "
          f"to the end of {where}")
    final = final_results(model, dataset.x_test, config["seed"], eval_samples_for(config, eval_samples))
    print(summary(final, len(dataset.x_test)))
    return final


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minivae.evaluate",
                                     description="Test ELBO and importance-weighted log-likelihood of a checkpoint.")
    parser.add_argument("checkpoint", help="a checkpoint.npz, or the run folder that holds one")
    parser.add_argument("--data-dir", help="folder with the dataset's IDX files (see minivae.data)")
    parser.add_argument("--eval-samples", type=non_negative_int, metavar="K",
                        help="importance samples per image for the log-likelihood; 0 skips it "
                             "(default 100, 10 for the convnet)")
    parser.add_argument("--device", choices=("cpu", "gpu"), help="default: as MINIVAE_BACKEND says, else cpu")
    args = parser.parse_args(argv)
    try:
        backend.use_device(args.device)
        evaluate_checkpoint(args.checkpoint, args.data_dir, args.eval_samples)
    except (checkpoint.CheckpointError, data.DataError, backend.BackendError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
