"""Step through one training step of a VAE, by hand, printing every intermediate next to its equation.

    python demos/step_through.py            # a 784-16-2 VAE on 4 images
    python demos/step_through.py --hidden 400 --latent 20 --batch 8

The demo a teacher runs in class. It drives the model's layers one by one instead of calling `model.step`,
so each line on screen is one equation. At the end it checks that these hand-driven gradients are exactly
the ones `model.step` computes, and it applies one Adam update. Open it in an editor that understands `# %%`
cells to run it piece by piece. With MINIVAE_BACKEND=cupy it runs on the GPU: the batch and the noise go to the
device once (backend.to_device), and only what is printed comes back (backend.to_numpy).
"""

# %% Setup: a tiny model and one small batch
# ruff: noqa: E402 (the stop handling comes first: minivae/run/stops.py)
import sys

from minivae.run import stops

if "ipykernel" not in sys.modules:  # (a notebook kernel handles Ctrl-C itself)
    stops.early()  # a stop while the rest loads: one line, exit 130

import numpy as np

from minivae import cli
from minivae.core import backend, layers
from minivae.core.optim import Adam
from minivae.models.vae import mlp_vae
from minivae.run import data

parser = cli.Parser(description=__doc__.splitlines()[0])
parser.add_argument("--hidden", type=cli.positive_int, default=16)
parser.add_argument("--latent", type=cli.positive_int, default=2)
parser.add_argument("--batch", type=cli.positive_int, default=4)
parser.add_argument("--seed", type=cli.non_negative_int, default=0)
# a notebook kernel passes arguments of its own (-f kernel.json): ignore those there, refuse typos elsewhere
if "ipykernel" in sys.modules:
    args = parser.parse_known_args()[0]
else:
    cli.report_errors_in_one_line()  # a size too big to allocate: one line, exit 2
    args = parser.parse_args()
backend.use_device()  # NumPy, or MINIVAE_BACKEND's choice (a missing GPU: one line, exit 2)

np.set_printoptions(precision=4, suppress=True, linewidth=110)
rng = np.random.default_rng(args.seed)
x = data.tiny_dataset(n_train=args.batch, n_test=1, seed=args.seed).x_train[: args.batch]  # (B, 784) in [0, 1]
model = mlp_vae(hidden=(args.hidden,), latent=args.latent, rng=rng)
eps = rng.standard_normal((args.batch, args.latent)).astype(np.float32)  # the sampler's noise, fixed
x, eps = backend.to_device(x), backend.to_device(eps)  # where the model's weights are (a GPU with CuPy)
B = len(x)


def show(label, equation, array):
    """One line per intermediate: what it is, the math, its shape, a few values (brought to the host)."""
    flat = np.ravel(backend.to_numpy(array))
    start = flat.size // 2 if flat.size > 100 else 0  # images are 0 at their corners: show the middle
    print(f"{label:14s} {equation:44s} {str(array.shape):11s} {flat[start:start + 4]}"
          f"{' ...' if flat.size > 4 else ''}")


print(model, "\n")
print("FORWARD")
show("x", "a batch of images, pixels in [0, 1]", x)

# %% Forward: encoder, heads, sampler, decoder, loss
enc_dense, enc_relu = model.encoder.layers
pre = enc_dense.forward(x)
show("a1", "a1 = x W1 + b1", pre)
h = enc_relu.forward(pre)
show("h", "h = max(a1, 0)", h)
mu = model.mu_head.forward(h)
show("mu", "mu = h Wmu + bmu", mu)
logvar = model.scale_head.forward(h)
show("logvar", "logvar = h Wlv + blv", logvar)
show("eps", "eps ~ N(0, I)  (drawn once, fixed)", eps)
z = model.posterior.sample(mu, logvar, eps=eps)
show("z", "z = mu + exp(logvar / 2) * eps", z)
dec_dense1, dec_relu, dec_dense2 = model.decoder.layers
hd = dec_relu.forward(dec_dense1.forward(z))
show("hd", "hd = max(z W3 + b3, 0)", hd)
logits = dec_dense2.forward(hd)
show("logits", "logits = hd W4 + b4", logits)
show("x_hat", "x_hat = sigmoid(logits)", layers.sigmoid(logits))
recon, dlogits = model.recon_fn(logits, x, scale=1.0 / B)
show("recon", "sum_pixels softplus(logits) - x logits", recon)
kl, dkl_dmu, dkl_dlogvar = model.posterior.kl(mu, logvar)
show("kl", "0.5 sum(mu^2 + exp(logvar) - 1 - logvar)", kl)
loss = float(recon.mean() + model.beta * kl.mean())
print(f"{'loss':14s} {'mean_b(recon + beta kl)':44s} {loss:.4f} nats per example\n")

# %% Backward: the same path in reverse
print("BACKWARD")
show("dlogits", "(sigmoid(logits) - x) / B", dlogits)
dhd = dec_dense2.backward(dlogits)
show("dW4", "hd^T dlogits", dec_dense2.grads["W"])
show("dhd", "dlogits W4^T", dhd)
dz = dec_dense1.backward(dec_relu.backward(dhd))
show("dz", "(dhd * [hd > 0]) W3^T", dz)
dmu, dlogvar = model.posterior.backward(dz)
show("dmu(recon)", "dz", dmu)
show("dlogvar(recon)", "dz * 0.5 * exp(logvar / 2) * eps", dlogvar)
dmu = dmu + model.beta / B * dkl_dmu
dlogvar = dlogvar + model.beta / B * dkl_dlogvar
show("dmu", "+ beta mu / B", dmu)
show("dlogvar", "+ beta 0.5 (exp(logvar) - 1) / B", dlogvar)
dh = model.mu_head.backward(dmu) + model.scale_head.backward(dlogvar)
show("dh", "dmu Wmu^T + dlogvar Wlv^T", dh)
enc_dense.backward(enc_relu.backward(dh), need_dx=False)
show("dW1", "x^T (dh * [a1 > 0])", enc_dense.grads["W"])

# %% Check: the hand-driven pass equals model.step
by_hand = {name: g.copy() for name, g in model.grads.items()}
step_loss = model.step(x, eps=eps)
for name, grad in model.grads.items():
    np.testing.assert_allclose(backend.to_numpy(by_hand[name]), backend.to_numpy(grad), rtol=1e-6, atol=1e-7,
                               err_msg=name)
print(f"\nmodel.step gives the same loss ({step_loss.loss:.4f}) and the same gradients for all "
      f"{len(model.grads)} parameters")

# %% One Adam update
print("\nADAM (lr 1e-3): m = 0.1 g, v = 0.001 g^2 at step 1, so every weight moves by about lr * sign(g)")
adam = Adam(model.params, lr=1e-3)
before = model.params["decoder.2.b"].copy()
adam.step(model.grads)
show("g", "gradient of decoder.2.b", model.grads["decoder.2.b"])
show("m", "0.9 m + 0.1 g", adam.moments("decoder.2.b")[0])
show("v", "0.999 v + 0.001 g^2", adam.moments("decoder.2.b")[1])
show("delta b", "-lr m_hat / (sqrt(v_hat) + eps)", model.params["decoder.2.b"] - before)
print(f"\nloss after one update: {model.step(x, eps=eps).loss:.4f} (was {step_loss.loss:.4f})")
