"""Learning from 100 labels and 59,900 unlabelled images: a classifier alone, M1 and M2 (Kingma et al. 2014).

    python demos/semi_supervised.py --dataset fashion-mnist --data-dir /path/to/fashion-mnist
    python demos/semi_supervised.py                        # MNIST, the paper's data set
    python demos/semi_supervised.py --labels 1000          # 100 of each class
    python demos/semi_supervised.py --quick                # seconds, on a tiny synthetic dataset

The same labelled images (--labels, labels / 10 of each class, chosen by the seed: feeds.py) for all three:

    (a) the classifier alone   M2's classifier network, 784-500-10, trained on the labelled images only
    (b) M1                     a VAE trained on every training image without its label (preset default), then
                               a softmax regression on the labelled images' encoder means
    (c) M2                     preset m2: the classifier q(y|x) trained together with a CVAE, on the labelled
                               images and on all the others, unlabelled (m2.py)

It prints the three test accuracies beside the paper's MNIST figures. Figures, in runs/demo-semi_supervised/:
class_grid.png, M2's generative model drawing each class (one row per class, the same z down each column).
"""

# %% Setup: options and data
import _common
import numpy as np

from minivae.core import backend
from minivae.figures import class_rows, run_figures
from minivae.models.classifier import accuracy, fit, mlp_classifier
from minivae.run import feeds, presets, seeds

parser = _common.parser("semi_supervised", __doc__)
parser.add_argument("--labels", type=int, default=100, help="labelled training images, a multiple of 10 (default 100)")
args = _common.parse(parser)
dataset = _common.load(args)
sizes = {"hidden": [64], "classifier_hidden": [64], "latent": 8} if args.quick else {}  # --quick: small nets
config = presets.config_for("m2", seed=args.seed, labels=args.labels, **sizes)
m2_epochs = 30 if args.full else 2 if args.quick else config["epochs"]
vae_epochs = 2 if args.quick else 10
steps = 200 if args.quick else 2000  # for the classifiers trained on the labelled images alone
labelled = feeds.choose_labelled(dataset.y_train, args.labels, 10, args.seed)
x_labelled, y_labelled = dataset.x_train[labelled], dataset.y_train[labelled]
print(f"{len(labelled)} labelled training images ({len(labelled) // 10} of each class), "
      f"{len(dataset.x_train) - len(labelled):,} unlabelled, {len(dataset.x_test):,} test images")

# %% (a) The classifier alone: M2's classifier network, on the labelled images only
# Adam on batches of the labelled images until it knows them all by heart; it has nothing else to learn from.
alone = mlp_classifier(hidden=config["classifier_hidden"], rng=seeds.weights(args.seed))
fit(alone, x_labelled, y_labelled, steps=steps, rng=seeds.generator(args.seed, seeds.ORDER))
accuracy_alone = accuracy(alone, dataset.x_test, dataset.y_test)
print(f"(a) the classifier alone: {accuracy_alone:.2%} of test images right "
      f"({accuracy(alone, x_labelled, y_labelled):.0%} of its labelled images)")

# %% (b) M1: a VAE learns features from every image, a softmax regression learns the classes from 100 of them
vae, vae_config, _ = _common.fit("default", dataset, args, vae_epochs, out=args.out / "m1-vae")
means_labelled = run_figures.encoder_means(vae, x_labelled)
means_test = run_figures.encoder_means(vae, dataset.x_test)
regression = mlp_classifier(input_dim=vae.latent, hidden=(), rng=seeds.weights(args.seed))  # one Dense layer
fit(regression, means_labelled, y_labelled, steps=steps, lr=1e-2, rng=seeds.generator(args.seed, seeds.ORDER))
accuracy_m1 = accuracy(regression, means_test, dataset.y_test)
print(f"(b) M1, softmax regression on the {vae.latent} encoder means: {accuracy_m1:.2%} of test images right")

# %% (c) M2: the classifier and the generative model learn together, from the labelled and unlabelled images
m2, _, _ = _common.fit("m2", dataset, args, m2_epochs, out=args.out / "m2", labels=args.labels, **sizes)
accuracy_m2 = accuracy(m2, dataset.x_test, dataset.y_test)
print(f"(c) M2: {accuracy_m2:.2%} of test images right")

# %% The comparison, beside the paper's (MNIST, 100 labels: NN 25.8% error, M1 + TSVM 11.82%, M2 11.97%)
print(f"\ntest accuracy with {args.labels} labels on {dataset.name}:")
paper = {"(a)": "74.2% (NN)", "(b)": "88.2% (M1 + TSVM)", "(c)": "88.0% (M2)"} if args.labels == 100 else {}
for key, what, value in (("(a)", "the classifier alone", accuracy_alone), ("(b)", "M1", accuracy_m1),
                         ("(c)", "M2", accuracy_m2)):
    print(f"  {key} {what:<22} {value:7.2%}   paper, MNIST: {paper.get(key, '-')}")
print(f"M2 - classifier alone: {100 * (accuracy_m2 - accuracy_alone):+.2f} points")

# %% What M2's generative model draws: one row per class, the same z down each column
names = _common.class_names(dataset) or [str(c) for c in range(10)]
z = backend.to_device(seeds.generator(args.seed, seeds.SAMPLES).standard_normal((10, m2.latent), dtype=np.float32))
rows = [backend.to_numpy(m2.cvae.decode(z, np.full(10, c))) for c in range(10)]
_common.wrote(class_rows.image_rows(rows, names, args.out / "class_grid.png",
                                      title="M2's p(x|y,z): one row per class, the same z down each column"))
