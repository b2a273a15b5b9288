"""The default model written in PyTorch the usual way (autograd), trained as minivae trains it: the reference for
the README's "the same model in a well-known framework" row.

    pip install torch
    python scripts/torch_reference.py --data-dir ../shared/data/fashion-mnist --seeds 0 1 2

784-400-20 ReLU MLP, a Gaussian posterior by mean and log-variance, a Bernoulli decoder on logits, Adam 1e-3,
batch 128, 10 epochs of the shuffled grayscale training images; the test loss is the mean over the test images of
-ELBO with one sample of z, as minivae reports it. PyTorch's own initialisation (which minivae copies) and its own
generator, so the numbers are a reference for the spread of seeds, not for any one run's bits. A tool for the
comparison only: minivae itself never imports PyTorch outside its bench.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from minivae.run import data  # noqa: E402  (the IDX reader only)


class ReferenceVAE(nn.Module):
    def __init__(self, pixels=784, hidden=400, latent=20):
        super().__init__()
        self.encoder = nn.Linear(pixels, hidden)
        self.mu, self.logvar = nn.Linear(hidden, latent), nn.Linear(hidden, latent)
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, pixels))

    def loss(self, x):
        """Mean over the batch of BCE(logits, x) + KL(q(z|x) || N(0, I)), one sample of z."""
        h = F.relu(self.encoder(x))
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        recon = F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="sum")
        kl = 0.5 * torch.sum(mu * mu + logvar.exp() - 1 - logvar)
        return (recon + kl) / len(x)


def images(folder, name):
    return torch.from_numpy(data.read_idx(Path(folder) / name).reshape(-1, 784).copy()).float() / 255


def run(seed, x_train, x_test, epochs=10, batch=128):
    torch.manual_seed(seed)
    model = ReferenceVAE()
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        for rows in torch.randperm(len(x_train)).split(batch):
            adam.zero_grad()
            model.loss(x_train[rows]).backward()
            adam.step()
    with torch.no_grad():
        return sum(model.loss(x).item() * len(x) for x in x_test.split(1000)) / len(x_test)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="the folder of the dataset's four IDX files")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    x_train = images(args.data_dir, data.FILES[0])
    x_test = images(args.data_dir, data.FILES[2])
    for seed in args.seeds:
        print(f"seed {seed}: test loss {run(seed, x_train, x_test, args.epochs):.2f} nats after {args.epochs} epochs",
              flush=True)


if __name__ == "__main__":
    main()
