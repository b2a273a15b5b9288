"""Optimizers that update parameters in place: SGD with momentum, RMSprop, Adam.

    opt = Adam(model.params, lr=1e-3)   # params: name -> array, updated in place
    opt.step(model.grads)               # grads: name -> array, same names and shapes

Each optimizer keeps its state (moments, step count) per parameter name, so `state_dict()` can be saved in a
checkpoint and `load_state_dict()` resumes exactly. Each update below is the formula as written, one parameter
array at a time; optim_fast.py computes the same updates in cache-sized chunks on several threads (and the
training command uses those).
"""

import math

from minivae.core import backend


class Optimizer:
    """Shared bookkeeping: the parameters, their named state arrays, the step count t.

    A subclass names its state arrays in `state_names` and writes `update(p, g, *state)`: the update of one
    parameter array p from its gradient g, in place.
    """

    state_names = ()

    def __init__(self, params, lr):
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        self.params, self.lr, self.t = params, lr, 0
        xp = backend.xp
        self.state = {s: {k: xp.zeros_like(p) for k, p in params.items()} for s in self.state_names}

    def step(self, grads):
        """Update every parameter in place from its gradient."""
        self.t += 1
        self.update_all(grads)

    def update_all(self, grads):
        for name, param in self.params.items():
            self.update(param, grads[name], *(self.state[s][name] for s in self.state_names))

    def state_dict(self):
        """Everything needed to resume: {'t': t, '<state>.<param name>': array}."""
        out = {"t": self.t}
        for s, arrays in self.state.items():
            out |= {f"{s}.{k}": a for k, a in arrays.items()}
        return out

    def from_older(self, saved):
        """A state_dict saved by an older minivae, in this version's names (the same dict if nothing changed)."""
        return saved

    def load_state_dict(self, saved):
        self.t = int(saved["t"])
        for s, arrays in self.state.items():
            for k, a in arrays.items():
                a[...] = backend.to_device(saved[f"{s}.{k}"], dtype=a.dtype)


class SGD(Optimizer):
    """SGD with momentum:  velocity = momentum * velocity + g;  p -= lr * velocity."""

    state_names = ("velocity",)

    def __init__(self, params, lr=0.01, momentum=0.9):
        super().__init__(params, lr)
        self.momentum = momentum

    def update(self, p, g, velocity):
        velocity *= self.momentum
        velocity += g
        p -= self.lr * velocity


class RMSprop(Optimizer):
    """RMSprop (Keras defaults, as tutorial 002 uses them):
    v = rho * v + (1 - rho) * g^2;  p -= lr * g / (sqrt(v) + eps)."""

    state_names = ("v",)

    def __init__(self, params, lr=1e-3, rho=0.9, eps=1e-7):
        super().__init__(params, lr)
        self.rho, self.eps = rho, eps

    def update(self, p, g, v):
        v += (1 - self.rho) * (g * g - v)  # = rho v + (1 - rho) g^2: v moves a fraction 1 - rho towards g^2
        p -= self.lr * (g / (backend.xp.sqrt(v) + self.eps))


class Adam(Optimizer):
    """Adam (Kingma & Ba), the textbook update for a gradient g at step t = 1, 2, ...:

        m = b1 m + (1 - b1) g                v = b2 v + (1 - b2) g^2
        m_hat = m / (1 - b1^t)               v_hat = v / (1 - b2^t)
        p -= lr * m_hat / (sqrt(v_hat) + eps)

    `adam_reference_step` below is exactly that, one line per formula, and tests/core/test_optim.py checks that
    this class gives the same numbers to float32 rounding over hundreds of steps.

    The same numbers with less arithmetic. The state kept is not m and v but the plain weighted sums

        M = b1 M + g        V = b2 V + g^2          (so that m = (1 - b1) M and v = (1 - b2) V)

    and with c = sqrt((1 - b2) / (1 - b2^t)), putting m and v into the update and dividing top and bottom by c:

        p -= lr_t * M / (sqrt(V) + eps_t),    lr_t = lr (1 - b1) / ((1 - b1^t) c),   eps_t = eps / c

    Every constant is in the two scalars lr_t and eps_t, worked out once per step: the update of an array is
    10 elementwise operations where the formulas as written take 14. `moments(name)` gives m and v themselves.
    """

    state_names = ("M", "V")

    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def step(self, grads):
        t = self.t + 1
        c = math.sqrt((1 - self.beta2) / (1 - self.beta2**t))
        self.lr_t = self.lr * (1 - self.beta1) / ((1 - self.beta1**t) * c)
        self.eps_t = self.eps / c
        super().step(grads)

    def update(self, p, g, M, V):
        M *= self.beta1  # M = b1 M + g
        M += g
        V *= self.beta2  # V = b2 V + g^2
        V += g * g
        p -= self.lr_t * (M / (backend.xp.sqrt(V) + self.eps_t))

    def moments(self, name):
        """The textbook m and v of one parameter (new arrays): (1 - b1) M and (1 - b2) V."""
        return (1 - self.beta1) * self.state["M"][name], (1 - self.beta2) * self.state["V"][name]

    def from_older(self, saved):
        """The first checkpoints minivae wrote, before Adam kept M and V, saved the textbook m and v ('m.<name>',
        'v.<name>'): as M = m / (1 - b1), V = v / (1 - b2)."""
        if not any(key.startswith("m.") for key in saved):
            return saved
        renamed = {"t": saved["t"]}
        for key, value in saved.items():
            if key.startswith(("m.", "v.")):
                moment, name = key.split(".", 1)
                beta = self.beta1 if moment == "m" else self.beta2
                renamed[f"{moment.upper()}.{name}"] = value / (1 - beta)
        return renamed


def adam_reference_step(p, g, m, v, t, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    """One textbook Adam step at step t (1, 2, ...), written as the formulas read: returns new (p, m, v).
    Slow (a new array per operation) and plain; `Adam` computes the same numbers with less arithmetic."""
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g**2
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    p = p - lr * m_hat / (v_hat**0.5 + eps)  # ** 0.5: sqrt for NumPy and CuPy arrays alike
    return p, m, v


OPTIMIZERS = {"adam": Adam, "rmsprop": RMSprop, "sgd": SGD}
