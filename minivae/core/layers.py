"""Layers with hand-written backward passes: Dense, ReLU, Sigmoid, Tanh, and Sequential to chain them.

The contract, the same for every layer (and for the convolution layers in conv.py):

    out = layer.forward(x)                    # keeps in `self` what backward will need
    dx = layer.backward(dout, need_dx=True)   # dout = dL/dout, shaped like out; returns dL/dx, shaped like x

A layer with weights also has `params` (name -> array) and `grads` (name -> array of the same shape).
backward *overwrites* `grads` (it never accumulates), so calling backward twice on the same forward gives the
same gradients, and there is nothing to zero between steps. With need_dx=False the caller does not want dL/dx
(the first layer of an encoder: nobody uses the gradient of the data), and a layer may skip computing it and
return None; Dense does, saving a whole matrix product. Shapes below use B for the batch size.
"""

import math

from minivae.core import backend


class Layer:
    """The interface every layer follows (see the module docstring). Subclasses fill params/grads and the passes."""

    def __init__(self):
        self.params = {}
        self.grads = {}

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dout, need_dx=True):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def __repr__(self):
        return f"{type(self).__name__}()"


def init_weights(shape, fan_in, init, rng=None, dtype="float32"):
    """Initial weights on the current backend, for a layer summing `fan_in` inputs per output:

      'he'       N(0, 2 / fan_in)            keeps ReLU activations' variance from layer to layer
      'lecun'    N(0, 1 / fan_in)            LeCun-normal: the same for tanh, sigmoid and linear heads
                 (not Glorot's, whose variance is 2 / (fan_in + fan_out))
      'uniform'  U(-1/sqrt(fan_in), 1/sqrt(fan_in)), variance 1 / (3 fan_in): PyTorch's default for its
                 Linear layers, and the default setup's choice (docs/experiments.md says why)
      a number   N(0, number^2)              (the TF-Slim tutorial uses 0.1)

    rng: a NumPy or CuPy generator (default backend.rng); a NumPy one gives the same weights on either backend.
    """
    rng = backend.rng if rng is None else rng
    if init == "uniform":
        bound = 1.0 / math.sqrt(fan_in)
        return backend.to_device((rng.random(shape) * 2 - 1) * bound, dtype=dtype)
    if init == "he":
        scale = math.sqrt(2.0 / fan_in)
    elif init == "lecun":
        scale = math.sqrt(1.0 / fan_in)
    elif isinstance(init, (int, float)) and not isinstance(init, bool):
        scale = float(init)
    else:
        raise ValueError(f"unknown init {init!r}: use 'he', 'lecun', 'uniform' or a standard deviation")
    return backend.to_device(rng.standard_normal(shape, dtype="float64") * scale, dtype=dtype)


class Dense(Layer):
    """Fully connected layer: out = x @ W + b.

    x: (B, in_dim), W: (in_dim, out_dim), b: (out_dim,), out: (B, out_dim).

    Initialisation: W from `init_weights` ('he', 'lecun', 'uniform' or a standard deviation), b = 0.
    """

    def __init__(self, in_dim, out_dim, init="he", rng=None, dtype="float32"):
        super().__init__()
        xp = backend.xp
        self.in_dim, self.out_dim, self.init = in_dim, out_dim, init
        self.params = {"W": init_weights((in_dim, out_dim), in_dim, init, rng, dtype),
                       "b": xp.zeros(out_dim, dtype=dtype)}
        self.grads = {k: xp.zeros_like(v) for k, v in self.params.items()}
        self.x = None

    def forward(self, x):
        self.x = x  # backward needs the input for dW
        out = x @ self.params["W"]
        out += self.params["b"]
        return out

    def backward(self, dout, need_dx=True):
        # out_bj = sum_i x_bi W_ij + b_j, so
        #   dL/dW_ij = sum_b x_bi dout_bj  -> dW = x.T @ dout   (in_dim, out_dim)
        #   dL/db_j  = sum_b dout_bj        -> db = dout summed over the batch (out_dim,)
        #   dL/dx_bi = sum_j dout_bj W_ij   -> dx = dout @ W.T  (B, in_dim)
        xp = backend.xp
        xp.matmul(self.x.T, dout, out=self.grads["W"])
        dout.sum(axis=0, out=self.grads["b"])
        # The first layer of a network needs no dx (nobody uses it): skipping it saves a whole matrix product.
        return dout @ self.params["W"].T if need_dx else None

    def __repr__(self):
        return f"Dense({self.in_dim}, {self.out_dim}, init={self.init!r})"


class ReLU(Layer):
    """out = max(x, 0), elementwise. Any shape. (layers_fast.ThreadedReLU: the same on several cores.)"""

    def forward(self, x):
        self.out = backend.xp.maximum(x, 0)
        return self.out

    def backward(self, dout, need_dx=True):
        # d max(x,0)/dx = 1 where x > 0, else 0 (we take 0 at the kink): dx = dout * [out > 0]
        return dout * (self.out > 0)


class Sigmoid(Layer):
    """out = 1 / (1 + exp(-x)), elementwise, computed without overflow for large |x|. Any shape."""

    def forward(self, x):
        self.out = sigmoid(x)
        return self.out

    def backward(self, dout, need_dx=True):
        # d sigmoid(x)/dx = s (1 - s) with s = sigmoid(x): dx = dout * s * (1 - s)
        return dout * self.out * (1 - self.out)


class Tanh(Layer):
    """out = tanh(x), elementwise. Any shape."""

    def forward(self, x):
        self.out = backend.xp.tanh(x)
        return self.out

    def backward(self, dout, need_dx=True):
        # d tanh(x)/dx = 1 - tanh(x)^2: dx = dout * (1 - out^2)
        return dout * (1 - self.out * self.out)


ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}


def sigmoid(x):
    """Stable logistic function: with e = exp(-|x|) <= 1, sigmoid(x) = 1/(1+e) for x >= 0 and e/(1+e) below,
    so exp never overflows (the naive 1/(1+exp(-x)) overflows for x < -88 in float32)."""
    xp = backend.xp
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1, e) / (1 + e)


class Sequential(Layer):
    """Layers applied in order. forward runs them first to last, backward last to first.

    Parameters are reachable by name as '<index>.<param>', e.g. '0.W' for the first layer's weights.
    """

    def __init__(self, *layers):
        super().__init__()
        self.layers = list(layers)
        for i, layer in enumerate(self.layers):
            for key in layer.params:
                self.params[f"{i}.{key}"] = layer.params[key]
                self.grads[f"{i}.{key}"] = layer.grads[key]
        # Layer i's input gradient is needed only if some layer before it has parameters to learn (or the
        # caller wants dx): e.g. the first Dense of an MLP, or the first Conv2D after a Reshape, can skip it.
        self.feeds_params = [any(layer.params for layer in self.layers[:i]) for i in range(len(self.layers))]

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dout, need_dx=True):
        # Chain rule: each layer turns dL/d(its output) into dL/d(its input), which is the previous layer's dout.
        for i in range(len(self.layers) - 1, -1, -1):
            dout = self.layers[i].backward(dout, need_dx=need_dx or self.feeds_params[i])
            if dout is None:  # nothing before this layer needs a gradient
                return None
        return dout

    def __repr__(self):
        return "Sequential(" + ", ".join(repr(layer) for layer in self.layers) + ")"


def mlp(sizes, activation="relu", last_activation=None, init=None, rng=None, dtype="float32", activations=None):
    """A Sequential of Dense layers through `sizes`, e.g. mlp([784, 400]) = Dense(784, 400) + ReLU.

    `activation` follows every Dense; `last_activation` (None for none) replaces it after the last one.
    Without `init`, Dense layers followed by ReLU use He initialisation, the others LeCun-normal.
    `activations`: the layer class of each activation's name, ACTIVATIONS by default (the models pass
    layers_fast.ACTIVATIONS, whose ReLU has a fused backward on the GPU).
    """
    activations = ACTIVATIONS if activations is None else activations
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        act = activation if i < len(sizes) - 2 else last_activation
        layer_init = init if init is not None else ("he" if act == "relu" else "lecun")
        layers.append(Dense(n_in, n_out, init=layer_init, rng=rng, dtype=dtype))
        if act is not None:
            if act not in activations:
                raise ValueError(f"unknown activation {act!r}; choose one of {', '.join(activations)}")
            layers.append(activations[act]())
    return Sequential(*layers)
