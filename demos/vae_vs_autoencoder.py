"""A VAE against a plain autoencoder of the same size (tutorial 001's comparison): which one can generate?

    python demos/vae_vs_autoencoder.py                     # 10 epochs each: about a minute on a laptop CPU
    python demos/vae_vs_autoencoder.py --full              # the tutorial's 50 epochs each
    python demos/vae_vs_autoencoder.py --dataset fashion-mnist --data-dir /path/to/fashion-mnist
    python demos/vae_vs_autoencoder.py --quick             # seconds, on a tiny synthetic dataset

Both have tutorial 001's layers (preset keras-sigma-mse): encoder 784-250 ReLU, a 30-number code, decoder
30-320 ReLU-784 sigmoid, squared error, Adam, batch 250, the same data order. The VAE's encoder gives a
distribution N(mu, sigma^2) and pays a KL term to keep it near N(0, I); the autoencoder's gives one point z and
pays nothing. Figures, in runs/demo-vae_vs_autoencoder/ (or --out), each as vae_*.png and ae_*.png:

    *_latent_pca.png      the codes of the test images on their first 2 principal components, coloured by class
    *_interpolation.png   decoding the straight line between the codes of two test images
    *_samples.png         100 decodes of random z ~ N(0, I), the same z for both: only the VAE was taught that
                          this is where its codes live
"""

# %% Setup: options and data
import _common
import numpy as np

from minivae.core import backend, layers, losses
from minivae.core.optim_fast import OPTIMIZERS
from minivae.figures import plots, run_figures
from minivae.run import data, seeds

parser = _common.parser("vae_vs_autoencoder", __doc__)
args = _common.parse(parser)
epochs = 50 if args.full else 3 if args.quick else 10
dataset = _common.load(args)
x_train, x_test = dataset.x_train, dataset.x_test  # on the host, for the figures and the distances below

# %% The VAE, trained with minivae's training loop
vae, config, _ = _common.fit("keras-sigma-mse", dataset, args, epochs, out=args.out / "vae")

# %% The autoencoder: the same layers, with one code head instead of mu and sigma
rng = np.random.default_rng(config["seed"])
init, latent = config["init"], config["latent"]
encoder = layers.Sequential(*layers.mlp([784, *config["hidden"]], "relu", "relu", init, rng).layers,
                            layers.Dense(config["hidden"][-1], latent, init=init or "lecun", rng=rng))
decoder = layers.mlp([latent, *config["decoder_hidden"], 784], "relu", "sigmoid", init, rng)
params = {f"encoder.{k}": v for k, v in encoder.params.items()} | {f"decoder.{k}": v for k, v in decoder.params.items()}
grads = {f"encoder.{k}": v for k, v in encoder.grads.items()} | {f"decoder.{k}": v for k, v in decoder.grads.items()}
optimizer = OPTIMIZERS[config["optimizer"]](params, lr=config["lr"])
print(f"\nautoencoder: the same layers, {sum(p.size for p in params.values()):,} parameters (the VAE's count adds its "
      f"sigma head); {config['optimizer']} lr {config['lr']}, batch {config['batch_size']}, {epochs} epochs")
train_device, test_device = backend.to_device(x_train), backend.to_device(x_test)  # beside the weights (a GPU's)
for epoch in range(1, epochs + 1):
    order = seeds.generator(config["seed"], seeds.ORDER, epoch)  # the order the VAE was trained in
    total = 0.0
    for idx in data.batches(len(x_train), config["batch_size"], order):
        x = train_device[backend.to_device(idx)]
        # forward: z = enc(x) is one point -- no mu and sigma, no sampling -- and x_hat = dec(z)
        x_hat = decoder.forward(encoder.forward(x))
        # loss L = (1/B) sum_b sum_d (x_hat_bd - x_bd)^2: the VAE's reconstruction term, and nothing else (no KL);
        # squared_error also returns dL/dx_hat = 2 (x_hat - x) / B
        err, dx_hat = losses.squared_error(x_hat, x, scale=1.0 / len(x))
        # backward, by the chain rule: dL/dz through the decoder, then on into the encoder. In the VAE, dL/dz
        # also passes the sampler (dz/dmu = 1, dz/dsigma = eps) and the KL adds its own gradient to mu and sigma.
        encoder.backward(decoder.backward(dx_hat), need_dx=False)
        optimizer.step(grads)
        total += float(err.sum())
    test_err = float(losses.squared_error(decoder.forward(encoder.forward(test_device)), test_device,
                                          grad=False)[0].mean())
    print(f"autoencoder epoch {epoch:>3}/{epochs}  train {total / len(x_train):.2f}  test {test_err:.2f}")

# %% Reconstruction: the autoencoder wins, as it should
vae_codes = run_figures.encoder_means(vae, x_test)  # mu, as a NumPy array
ae_codes = backend.to_numpy(encoder.forward(test_device))
vae_decode = run_figures.host_decoder(vae)  # both decoders as the plots want them: NumPy z in, NumPy images out


def ae_decode(z):
    return backend.to_numpy(decoder.forward(backend.to_device(z)))


vae_err = losses.squared_error(vae_decode(vae_codes), x_test, grad=False)[0].mean()
print(f"\ntest reconstruction error (squared error per image, decoding the code; the VAE decodes mu):\n"
      f"  autoencoder {test_err:.2f}, VAE {vae_err:.2f}: the VAE gives up some detail for a regular code space")

# %% The code spaces: where are the codes, compared to N(0, I)?
for name, codes in (("VAE means", vae_codes), ("autoencoder codes", ae_codes)):
    std = codes.std(axis=0)
    print(f"  {name:>17}: per-unit mean {codes.mean(axis=0).min():+.2f} .. {codes.mean(axis=0).max():+.2f}, "
          f"std {std.min():.2f} .. {std.max():.2f}   (N(0, I): 0 and 1)")
names = _common.class_names(dataset)
paths = [plots.latent_scatter(vae_codes, dataset.y_test, args.out / "vae_latent_pca.png", class_names=names),
         plots.latent_scatter(ae_codes, dataset.y_test, args.out / "ae_latent_pca.png", class_names=names,
                              what="Autoencoder codes")]

# %% Interpolation between the same two test images
a = 0
b = int(np.argmax(dataset.y_test != dataset.y_test[a]))  # the first test image of another class
paths += [plots.interpolation(vae_decode, vae_codes[a], vae_codes[b], args.out / "vae_interpolation.png"),
          plots.interpolation(ae_decode, ae_codes[a], ae_codes[b], args.out / "ae_interpolation.png")]

# %% Generation: decode random z ~ N(0, I), the same z for both
z = seeds.generator(args.seed, seeds.SAMPLES).standard_normal((100, latent), dtype=np.float32)
vae_samples, ae_samples = vae_decode(z), ae_decode(z)
paths += [plots.image_grid(vae_samples, args.out / "vae_samples.png", title="VAE: 100 random z ~ N(0, I), decoded"),
          plots.image_grid(ae_samples, args.out / "ae_samples.png", title="Autoencoder: the same 100 z, decoded")]

train_sq = (x_train**2).sum(axis=1)  # |x|^2 of every training image, for the distances below


# How good are the samples? For each one, the distance to the closest image of the training set, as an RMS
# pixel difference: a decode that looks like a real garment or digit has a training image close to it, one
# that is a smear or a patchwork of parts does not. As a yardstick, real test images measured the same way.
# (Blurry images sit a little closer to everything than sharp ones, so compare the two models with each other
# and with the yardstick, not with 0.)
def nearest_rms(images):
    d2 = (images**2).sum(axis=1)[:, None] + train_sq[None, :] - 2 * images @ x_train.T
    return np.sqrt(np.maximum(d2.min(axis=1), 0) / x_train.shape[1])


print("\ndistance to the nearest training image (RMS pixel difference, median over 100 images):")
for name, images in (("VAE samples", vae_samples), ("autoencoder samples", ae_samples),
                     ("real test images", x_test[:100])):
    print(f"  {name:>19}: {np.median(nearest_rms(images)):.3f}")
_common.wrote(*paths)
