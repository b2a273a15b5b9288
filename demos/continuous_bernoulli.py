"""Bernoulli against continuous Bernoulli on grayscale images: which "log-likelihood" is a density?

    python demos/continuous_bernoulli.py                  # 784-400-20, 10 epochs each of the two models
    python demos/continuous_bernoulli.py --full           # 50 epochs each
    python demos/continuous_bernoulli.py --dataset fashion-mnist --data-dir /path/to/fashion-mnist
    python demos/continuous_bernoulli.py --quick          # seconds, on a tiny synthetic dataset

Most VAE tutorials train on grayscale pixels x in [0, 1] with the Bernoulli likelihood x log lam + (1-x)
log(1-lam), and report its "log-likelihood". For x in [0, 1] that is not the log-density of anything: it
integrates to 1/C(lam) < 1 over [0, 1]. The continuous Bernoulli (Loaiza-Ganem and Cunningham, 2019; recon
'cb', minivae/core/continuous_bernoulli.py) multiplies it by C(lam) and is a true density. Two models, the same
784-400-20 VAE on the same grayscale images, trained the same number of epochs: recon 'bce' and recon 'cb'.

On the same test images, three importance-weighted log-likelihoods (K samples, metrics.py):
  * the Bernoulli model's own number: not a density, so it compares with nothing but other Bernoulli numbers;
  * the Bernoulli model's decoder normalised on [0, 1], i.e. scored with the continuous Bernoulli of the same
    lam: a density, so this is the Bernoulli model's honest score;
  * the continuous Bernoulli model's: a density, trained as such.
The last two compare. Figure, in runs/demo-continuous_bernoulli/ (or --out):

    reconstructions.png   test images; the Bernoulli model's means sigmoid(logits); the continuous Bernoulli's
                          means E[x] (what it believes); and its lam = sigmoid(logits), which is not its mean
"""

# %% Setup: options and data
import _common
import numpy as np

from minivae.core import backend, losses
from minivae.core.continuous_bernoulli import mean as cb_mean
from minivae.core.layers import sigmoid
from minivae.figures import plots
from minivae.run import metrics

parser = _common.parser("continuous_bernoulli", __doc__)
args = _common.parse(parser)
epochs = 50 if args.full else 2 if args.quick else 10
eval_k = 10 if args.quick else 100
dataset = _common.load(args)  # grayscale: binarize "none"
x_test = dataset.x_test

# %% Train the two models with minivae's training loop
models = {}
for recon in ("bce", "cb"):
    print(f"\nrecon {recon!r} on grayscale {dataset.name}:")
    models[recon] = _common.fit("default", dataset, args, epochs, out=args.out / recon, recon=recon)[:2]

# %% Log-likelihoods of the same test images
# metrics.final_results: the test ELBO and the importance-weighted log p(x); its summary says what the
# number is (losses.likelihood_meaning).
scores = {}
for recon, (model, config) in models.items():
    print(f"\n{recon}: ", end="")
    scores[recon] = _common.final(model, dataset, config, eval_k)["test_log_likelihood"]
bernoulli, config = models["bce"]
bernoulli.recon_fn = losses.continuous_bernoulli  # the same trained networks, the decoder's lam now scored
bernoulli.recon_name = "cb"  # by the normalised density C(lam) lam^x (1-lam)^(1-x)
normalised = metrics.mean_log_likelihood(bernoulli, x_test, eval_k, config["seed"])
bernoulli.recon_fn, bernoulli.recon_name = losses.bce_logits, "bce"
print(f"\nlog-likelihood of the {len(x_test):,} test images, nats per image (importance-weighted, K = {eval_k}):")
print(f"  Bernoulli model, as trained (not a density)          {scores['bce']:10.2f}")
print(f"  Bernoulli model, its decoder normalised (a density)  {normalised:10.2f}")
print(f"  continuous Bernoulli model (a density)               {scores['cb']:10.2f}")
print(f"  the continuous Bernoulli model is better by {scores['cb'] - normalised:.2f} nats per image; the "
      f"Bernoulli's own number is {normalised - scores['bce']:.0f} nats below its density (about the sum of log C(lam) "
      f"over the pixels, at least 784 log 2 = 543: C >= 2)")

# %% Reconstructions: the continuous Bernoulli's mean is not lam
cb_model = models["cb"][0]
x10 = x_test[:10]
logits = cb_model.decoder_output(cb_model.encode(backend.to_device(x10))[0])
rows = {"test images": x10,
        "Bernoulli: sigmoid(logits)": bernoulli.reconstruct(backend.to_device(x10)),
        "continuous Bernoulli: E[x]": cb_mean(logits),
        "continuous Bernoulli: lam (not its mean)": sigmoid(logits)}
rows = {name: backend.to_numpy(images) for name, images in rows.items()}
for name, images in list(rows.items())[1:]:
    print(f"{name:42s} mean squared error {np.mean((images - x10) ** 2):.4f} per pixel (these 10 images)")
path = plots.image_grid(np.concatenate(list(rows.values())), args.out / "reconstructions.png",
                        title="Rows: " + "; ".join(rows), figsize=(10.0, 3.0))
_common.wrote(path)
