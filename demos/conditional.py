"""A conditional VAE: "draw me a sneaker", and one image's style moved to every other class.

    python demos/conditional.py                            # 10 epochs
    python demos/conditional.py --dataset fashion-mnist --data-dir /path/to/fashion-mnist --draw Sneaker
    python demos/conditional.py --quick                    # seconds, on a tiny synthetic dataset

The setup is the preset cvae (minivae/run/presets.py; the model is minivae/models/vae.py's VAE with classes): the
one-hot class is joined to the encoder's input, q(z|x,y), and to the decoder's, p(x|z,y); 784+10 -> 500 -> 20 and
20+10 -> 500 -> 784, Bernoulli decoder, Adam, batch 100. Told the class, the decoder leaves z to hold everything
else: the style. Figures, in runs/demo-conditional/ (or --out):

    draw.png              ten samples of the class asked for with --draw: z ~ N(0, I) decoded with that class
    class_grid.png        one row per class, one column per z: the same z (one style) down every column
    style_transfer.png    test images (top row), each encoded with its own class, then decoded as every class
    reconstructions.png   test images above their reconstructions (encoded and decoded with their class)
"""

# %% Setup: options and data
import _common
import numpy as np

from minivae.core import backend
from minivae.figures import class_rows, plots
from minivae.run import seeds

parser = _common.parser("conditional", __doc__)
parser.add_argument("--draw", default="7", help="the class to draw, by number or name (default 7: Sneaker)")
args = _common.parse(parser)
epochs = 30 if args.full else 3 if args.quick else 10
dataset = _common.load(args)
names = list(_common.class_names(dataset) or [str(c) for c in range(10)])
lowered = [name.lower() for name in names]
if args.draw.lower() not in lowered and not (args.draw.isdigit() and int(args.draw) < len(names)):
    parser.error(f"--draw {args.draw}: choose a class number 0-{len(names) - 1} or one of {', '.join(names)}")
drawn = lowered.index(args.draw.lower()) if args.draw.lower() in lowered else int(args.draw)

# %% Train with minivae's training loop: each batch comes with its labels
model, config, _ = _common.fit("cvae", dataset, args, epochs)
_common.final(model, dataset, config, k=10 if args.quick else 100)


def decode(z, label):
    """Pixel means (n, 784) on the host for z (n, L) host float32, every row decoded as class `label`."""
    return backend.to_numpy(model.decode(backend.to_device(z), np.full(len(z), label)))


# %% Draw me a sneaker: z ~ N(0, I), decoded with the class we ask for
z = seeds.generator(config["seed"], seeds.SAMPLES).standard_normal((10, model.latent), dtype=np.float32)
paths = [plots.image_grid(decode(z, drawn), args.out / "draw.png", title=f"Ten samples of class {names[drawn]}")]

# %% The same z, every class: a column holds one style
# Down a column only the class changes. If z had learned the class too, the columns would fight the labels;
# instead each column keeps a look of its own (its width, its brightness, its slant) across all ten classes.
rows = [decode(z, label) for label in range(10)]
paths.append(class_rows.image_rows(rows, names, args.out / "class_grid.png",
                                     title="One row per class; the same z down each column"))

# %% Style transfer: encode a test image with its own class, decode it as every other class
first_of_each = [int(np.flatnonzero(dataset.y_test == c)[0]) for c in range(10)]
x, y = dataset.x_test[first_of_each], dataset.y_test[first_of_each]
style = model.encode(backend.to_device(x), y)[0]  # the mean of q(z|x, y): the image's style, without its class
rows = [x] + [decode(backend.to_numpy(style), label) for label in range(10)]
paths.append(class_rows.image_rows(rows, ["test image"] + [f"as {name}" for name in names],
                                     args.out / "style_transfer.png",
                                     title="Each test image (top) encoded with its class, decoded as every class"))
reconstructed = backend.to_numpy(model.reconstruct(backend.to_device(dataset.x_test[:10]), dataset.y_test[:10]))
paths.append(plots.reconstructions(dataset.x_test[:10], reconstructed, args.out / "reconstructions.png"))

# %% Does the label matter? Score every test image under every class
# -ELBO(x, y) with one z per (image, class), the same noise for every class. With the true class the image is
# cheaper to explain; argmax_y ELBO(x, y) even makes the generative model a classifier (Bayes' rule, p(y) = 1/10).
noise = seeds.generator(config["seed"], seeds.TEST_NOISE)
n_test = min(len(dataset.x_test), 2000)
x_test = backend.to_device(dataset.x_test[:n_test])
eps = backend.to_device(noise.standard_normal((n_test, model.latent), dtype=np.float32))
costs = np.stack([backend.to_numpy(sum(model.per_example_losses(x_test, np.full(n_test, label), eps=eps)))
                  for label in range(10)], axis=1)  # (n_test, 10): -ELBO of each image as each class
true_labels = dataset.y_test[:n_test]
own = costs[np.arange(n_test), true_labels]
other = (costs.sum(axis=1) - own) / 9
print(f"\n-ELBO of {n_test} test images: {own.mean():.2f} nats with their own class, {other.mean():.2f} with another")
print(f"classifying by argmax_y ELBO(x, y): {np.mean(costs.argmin(axis=1) == true_labels):.1%} of test images right")
_common.wrote(*paths)
