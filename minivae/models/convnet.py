"""The convolutional VAE of tutorial 003: `conv_vae`, and what its loss means.

It is built from the fast twins of the plain layers (core/conv_fast.py, core/layers_fast.py): the same numbers as
conv.py's Conv2D and ConvTranspose2D and layers.py's ReLU, in less time (`fast=False` builds it from the plain
ones, which tests/models/test_conv_vae.py holds equal).
"""

from minivae.core.conv import Conv2D, ConvTranspose2D, Flatten, Reshape
from minivae.core.conv_fast import FastConv2D, FastConvTranspose2D
from minivae.core.layers import Dense, ReLU, Sequential, Sigmoid
from minivae.core.layers_fast import ThreadedReLU
from minivae.core.losses import LOGIT_RECONSTRUCTIONS
from minivae.models.vae import VAE


def conv_vae(latent=2, posterior="logvar", recon="bce-prob", beta=1.0, rng=None, dtype="float32",
             channels=(32, 64, 64, 64), dense=32, image_shape=(28, 28), fast=True):
    """Tutorial 003's convnet VAE (Keras) as a vae.VAE on flat (B, H*W) inputs; defaults are the tutorial's.

    encoder: Reshape(1, H, W) -> Conv2D(1 -> c0, 3x3, same) ReLU -> Conv2D(c0 -> c1, 3x3, stride 2, same) ReLU
             -> Conv2D(c1 -> c2, 3x3, same) ReLU -> Conv2D(c2 -> c3, 3x3, same) ReLU -> Flatten
             -> Dense(c3*H/2*W/2 -> dense) ReLU;  the VAE adds the two heads mu and logvar (Dense(dense -> latent))
    decoder: Dense(latent -> c3*H/2*W/2) ReLU -> Reshape(c3, H/2, W/2)
             -> ConvTranspose2D(c3 -> c0, 3x3, stride 2, same) ReLU -> Conv2D(c0 -> 1, 3x3, same)
             -> Sigmoid (recon 'bce-prob' or 'mse'; none for 'bce' and 'cb', whose losses take logits) -> Flatten

    With channels=(32, 64, 64, 64), dense=32 and 28x28 images: the encoder's last conv gives (64, 14, 14), 12,544
    features; the decoder's Dense "upsamples to the correct number of units", 12,544, and ConvTranspose2D takes
    14x14 back to 28x28. H and W must be even (stride 2 down, then up). Smaller channels/dense/image_shape
    build the same architecture small enough for finite differences (tests/models/test_conv_vae.py).

    The loss. Tutorial 003 minimises, for each example and then averaged over the batch,

        mean over pixels of BCE  -  5e-4 * mean over latent units of (1 + logvar - mu^2 - exp(logvar))

    (its K.flatten flattens the whole batch, so its BCE is the mean over all
    pixels of the batch: the same number). Against the ELBO, in nats per example, with D = 784 pixels, L latent
    units and KL = 0.5 * sum_l (mu^2 + exp(logvar) - 1 - logvar) (core/gaussian.py):
    the first term is (1/D) * sum BCE, and the second is 5e-4 * (2/L) * KL, so the loss is

        (1/D) * [ sum BCE + D * 5e-4 * (2/L) * KL ]  =  (1/D) * [ recon + beta * KL ],  beta = 784 * 5e-4 * 2/L

    that is beta = 0.392 for L = 2: a down-weighted KL (a beta-VAE with beta < 1), and the whole divided by 784.
    Adam's step is (nearly) blind to a constant factor on the loss (m / sqrt(v) cancels it; only eps does not),
    so training on recon + 0.392 * KL reproduces the tutorial; the preset "keras-conv-2d" sets beta 0.392, and
    --beta 1 gives the plain ELBO. tests/models/test_conv_vae.py checks this identity numerically.

    The sampler. Tutorial 003 draws z = mu + exp(logvar) * eps: a standard deviation of sigma^2 instead of sigma,
    while its KL is written for variance exp(logvar) = sigma^2. minivae samples z = mu + exp(0.5 * logvar) * eps,
    as the KL assumes (see the note in core/gaussian.py); this fixes the bug rather than reproduce it.
    """
    height, width = image_shape
    if height % 2 or width % 2:
        raise ValueError(f"image_shape must be even (stride 2 down, then up), got {image_shape}")
    c0, c1, c2, c3 = channels
    small = (c3, height // 2, width // 2)  # the shape after the stride-2 conv
    features = c3 * (height // 2) * (width // 2)
    kw = dict(rng=rng, dtype=dtype)
    conv, conv_transpose, relu = (FastConv2D, FastConvTranspose2D, ThreadedReLU) if fast else \
        (Conv2D, ConvTranspose2D, ReLU)
    encoder = Sequential(
        Reshape((1, height, width)),
        conv(1, c0, 3, padding="same", **kw), relu(),
        conv(c0, c1, 3, stride=2, padding="same", **kw), relu(),
        conv(c1, c2, 3, padding="same", **kw), relu(),
        conv(c2, c3, 3, padding="same", **kw), relu(),
        Flatten(),
        Dense(features, dense, **kw), relu(),
    )
    decoder = [
        Dense(latent, features, **kw), relu(),
        Reshape(small),
        conv_transpose(c3, c0, 3, stride=2, padding="same", **kw), relu(),
        conv(c0, 1, 3, padding="same", init="lecun", **kw),
    ]
    if recon not in LOGIT_RECONSTRUCTIONS:  # 'bce' and 'cb' take logits
        decoder.append(Sigmoid())
    decoder.append(Flatten())
    return VAE(encoder, Sequential(*decoder), features=dense, latent=latent, posterior=posterior, recon=recon,
               beta=beta, **kw)
