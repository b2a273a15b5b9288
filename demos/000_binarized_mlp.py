"""Tutorial 000: an MLP VAE on binarized images, and its reconstructions improving while it trains.

    python demos/000_binarized_mlp.py                          # 10 epochs: well under a minute on a laptop CPU
    python demos/000_binarized_mlp.py --full                   # the tutorial: 20,000 steps of 100 = 33 epochs
    python demos/000_binarized_mlp.py --dataset fashion-mnist --data-dir /path/to/fashion-mnist
    python demos/000_binarized_mlp.py --quick                  # seconds, on a tiny synthetic dataset

The setup is the preset tfslim-binarized (minivae/run/presets.py): pixels thresholded at 0.5, an encoder
784-128 ReLU with two 64-unit heads (mu and logvar), a decoder 64-128 ReLU-784 giving Bernoulli logits,
weights drawn from N(0, 0.1^2), Adam. Figures, in runs/demo-000_binarized_mlp/ (or --out):

    reconstructions_by_epoch.png   test images (top row), then their reconstructions after epochs 1, 2, 5, 10, ...
    progress_reconstructions.gif   the same 16 test images above their reconstructions, one frame per epoch
    samples.png                    100 new images: z ~ N(0, I), decoded
"""

# %% Setup: options and data
import _common
import numpy as np

from minivae.core import backend
from minivae.figures import plots, run_figures
from minivae.run import seeds

parser = _common.parser("000_binarized_mlp", __doc__)
args = _common.parse(parser)
epochs = 33 if args.full else 5 if args.quick else 10
dataset = _common.load(args, binarize="threshold")  # every pixel is now exactly 0 or 1
print(f"binarized at 0.5: {dataset.x_train.mean():.1%} of the training pixels are 1")

# %% Train with minivae's training loop (one line per epoch)
model, config, state = _common.fit("tfslim-binarized", dataset, args, epochs)

# %% Reconstructions during training
# After every epoch the training loop reconstructs the first 16 test images (encode, decode the mean of z) and
# keeps them as uint8 pixel means. A pixel counts as wrong when its mean falls on the other side of 0.5.
x16 = dataset.x_test[:16]
frames = [f.astype(np.float32) / 255 for f in state.frames["reconstructions"]]  # one (16, 784) per epoch
shown = [e for e in (1, 2, 5, 10, 20, 33) if e <= epochs]
print("\nwrong pixels in the 16 reconstructions (mean > 0.5 where the image is 0, or the reverse):")
for epoch in shown:
    print(f"  after epoch {epoch:>2}: {np.mean((frames[epoch - 1] > 0.5) != (x16 > 0.5)):.2%}")
rows = np.concatenate([x16[:10]] + [frames[e - 1][:10] for e in shown])  # 10 images a row
paths = [plots.image_grid(rows, args.out / "reconstructions_by_epoch.png",
                          title=f"Top row: test images; below: after epochs {', '.join(map(str, shown))}")]
tiles = [plots.tile(np.concatenate([x16, f]), 8) for f in frames]  # originals above reconstructions
paths.append(plots.progress_gif(tiles, args.out / "progress_reconstructions.gif", figsize=(6.0, 3.75),
                                titles=[f"test images above reconstructions\nafter epoch {e + 1}"
                                        for e in range(len(tiles))]))

# %% The whole test set
# The tutorial shows x_hat = a Bernoulli *sample* of each pixel, which looks speckled; we show (and score)
# the pixel means, what the model actually believes.
recon = backend.to_numpy(model.reconstruct(backend.to_device(dataset.x_test)))  # on the model's device, then back
print(f"\nall {len(recon):,} test images: {np.mean((recon > 0.5) != (dataset.x_test > 0.5)):.2%} of pixels "
      f"reconstructed wrong")
_common.final(model, dataset, config, k=10 if args.quick else 100)

# %% Samples: new images from the prior
z = seeds.generator(args.seed, seeds.SAMPLES).standard_normal((100, model.latent), dtype=np.float32)
paths.append(plots.image_grid(run_figures.host_decoder(model)(z), args.out / "samples.png",
                              title="100 samples: z ~ N(0, I), decoded (pixel means)"))
_common.wrote(*paths)
