"""Part of the bench: the same VAE in PyTorch, for `python -m minivae.bench --against torch` only. `torch_twin(model)`
builds it layer for layer, with minivae's weights and loss; `layer_times(twin, ...)` times each of its layers
alone, for `--layers`. Nothing outside the bench imports this module, and it imports PyTorch only when called:
minivae's own derivatives are all written by hand.
"""

import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from minivae.core import backend
from minivae.core.conv import Conv2D, ConvTranspose2D, Flatten, Reshape
from minivae.core.layers import Dense, ReLU, Sigmoid, Tanh
from minivae.models.vae import count_params


class Twin(NamedTuple):
    """A VAE in PyTorch: `net` holds every parameter; loss(x, eps) is the batch-mean loss as a 0-d tensor, like
    model.step's; `layers` has one module per minivae layer, in timing.layers_in_order's order, and
    layer_inputs(x, eps) gives what each of them receives in a forward pass."""

    net: object
    loss: Callable
    layers: list
    layer_inputs: Callable


def torch_twin(model, device="cpu"):
    """The same VAE in PyTorch, with the same weights: a module per minivae layer, the same sampler and loss.
    Returns a Twin.

    Dense -> Linear (W transposed); Conv2D -> Conv2d, after a ZeroPad2d where Keras' 'same' pads unevenly;
    ConvTranspose2D -> ConvTranspose2d and a crop of the same rows and columns. The loss: BCE with logits
    ('bce') or BCE on probabilities clipped to [1e-7, 1 - 1e-7] like Keras ('bce-prob'), summed per example,
    plus beta * KL, averaged over the batch; z = mu + exp(0.5 logvar) * eps with eps given."""
    import torch
    from torch import nn

    def tensor(array):
        return torch.from_numpy(np.ascontiguousarray(backend.to_numpy(array))).to(device)

    class Crop(nn.Module):  # ((top, bottom), (left, right)) rows and columns off an NCHW image
        def __init__(self, pads):
            super().__init__()
            self.pads = pads

        def forward(self, x):
            (top, bottom), (left, right) = self.pads
            return x[:, :, top: x.shape[2] - bottom, left: x.shape[3] - right]

    def twin(layer):
        if isinstance(layer, Dense):
            module = nn.Linear(layer.in_dim, layer.out_dim)
            module.weight.data, module.bias.data = tensor(layer.params["W"].T), tensor(layer.params["b"])
            return [module]
        if isinstance(layer, (Conv2D, ConvTranspose2D)):  # layer.pads: set by the forward pass already run
            (top, bottom), (left, right) = layer.pads
            even = top == bottom and left == right
            if isinstance(layer, Conv2D):
                module = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                                   padding=(top, left) if even else 0)
                modules = [module] if even else [nn.ZeroPad2d((left, right, top, bottom)), module]
            else:
                module = nn.ConvTranspose2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                                            padding=(top, left) if even else 0, output_padding=layer.output_padding)
                modules = [module] if even else [module, Crop(layer.pads)]
            module.weight.data, module.bias.data = tensor(layer.params["W"]), tensor(layer.params["b"])
            return modules
        simple = {ReLU: nn.ReLU, Sigmoid: nn.Sigmoid, Tanh: nn.Tanh, Flatten: lambda: nn.Flatten(1)}
        for kind, module in simple.items():  # the fast twins (ThreadedReLU, ...) subclass the plain layers
            if isinstance(layer, kind):
                return [module()]
        if isinstance(layer, Reshape):
            return [nn.Unflatten(1, layer.shape)]
        raise ValueError(f"no PyTorch twin for {layer!r}")

    if model.posterior.scale_name != "logvar" or model.recon_name not in ("bce", "bce-prob"):
        raise ValueError("the PyTorch twin covers the logvar posterior and the 'bce' and 'bce-prob' losses")
    encoder = [nn.Sequential(*twin(layer)) for layer in model.encoder.layers]  # a conv's padding goes with it
    decoder = [nn.Sequential(*twin(layer)) for layer in model.decoder.layers]
    net = nn.ModuleDict({"encoder": nn.Sequential(*encoder), "mu": twin(model.mu_head)[0],
                         "logvar": twin(model.scale_head)[0], "decoder": nn.Sequential(*decoder)}).to(device)
    beta, functional = model.beta, torch.nn.functional

    def forward(x, eps, inputs):
        """mu, logvar and the decoder's output (B, 784); appends what each layer receives to `inputs`."""
        h = x
        for layer in encoder:
            inputs.append(h)
            h = layer(h)
        mu, logvar = net["mu"](h), net["logvar"](h)
        inputs += [h, h]  # the two heads read the encoder's output
        z = mu + torch.exp(0.5 * logvar) * eps
        for layer in decoder:
            inputs.append(z)
            z = layer(z)
        return mu, logvar, z.flatten(1)

    def layer_inputs(x, eps):
        inputs = []
        forward(x, eps, inputs)
        return inputs

    def loss(x, eps):
        mu, logvar, out = forward(x, eps, [])
        if model.recon_name == "bce":
            recon = functional.binary_cross_entropy_with_logits(out, x, reduction="sum")
        else:
            recon = functional.binary_cross_entropy(out.clamp(1e-7, 1 - 1e-7), x, reduction="sum")
        kl = 0.5 * (mu * mu + logvar.exp() - 1 - logvar).sum()
        return (recon + beta * kl) / len(x)

    n_torch = sum(p.numel() for p in net.parameters())
    if n_torch != count_params(model):
        raise AssertionError(f"the PyTorch twin has {n_torch:,} parameters, minivae's model {count_params(model):,}")
    return Twin(net, loss, [*encoder, net["mu"], net["logvar"], *decoder], layer_inputs)


def layer_times(twin, x, eps, need_dx, repeats, sync=lambda: None):
    """Median seconds of each twin layer's forward and backward, [(forward_s, backward_s)], each layer run alone
    `repeats` times (after one warm-up) on the input it receives in a forward pass of x, eps. need_dx: for each
    layer, whether its backward computes its input's gradient (as minivae's does); a layer with neither
    parameters nor an input gradient has no backward (0 s)."""
    import torch

    with torch.no_grad():
        inputs = twin.layer_inputs(x, eps)
    times = []
    for layer, h, dx in zip(twin.layers, inputs, need_dx, strict=True):
        forward, backward = [], []
        with torch.no_grad():
            gradient = torch.ones_like(layer(h))  # any values: only the time is kept
        for _ in range(repeats + 1):
            h_in = h.detach().requires_grad_(dx)
            start = time.perf_counter()
            out = layer(h_in)
            sync()
            middle = time.perf_counter()
            if out.requires_grad:
                out.backward(gradient)
                sync()
            forward.append(middle - start)
            backward.append(time.perf_counter() - middle)
        times.append((statistics.median(forward[1:]), statistics.median(backward[1:])))
    return times
