"""Optimizers that update parameters in place: SGD with momentum, RMSprop, Adam.

    opt = Adam(model.params, lr=1e-3)   # params: name -> array, updated in place
    opt.step(model.grads)               # grads: name -> array, same names and shapes

Each optimizer keeps its state (moments, step count) per parameter name, so `state_dict()` can be saved in a
checkpoint and `load_state_dict()` resumes exactly.

Speed note. These updates are elementwise and memory-bound: a 650k-parameter Adam step reads and writes
arrays of 2.6 MB, and NumPy makes one full pass per operation. So (1) every result goes into a preallocated
array with `out=` (no temporaries); (2) Adam keeps its moments rescaled so that all its constant factors fold
into two scalars: 10 passes instead of 14 (see Adam); (3) on the CPU each parameter is walked in cache-sized
chunks, so the passes over one chunk hit the L2 cache instead of main memory; (4) the chunks are dealt out to
`threads.elementwise_threads` threads (threads.py), since one NumPy pass only ever uses one core. On CuPy each
pass is one GPU kernel: no chunks, no threads. `python -m minivae.bench` measures what each of these buys.
"""

import math

from minivae import backend, threads

# Elements per chunk on the CPU: 256 KB of float32, so the 5 arrays of an update fit in L2 together. Measured
# for the 784-400-20 model, Adam took 1.25 ms with it on 1 thread against 1.35 and 1.45 with 32k and 16k
# chunks; on 2 threads 0.86 ms against 1.04 and 1.71 (smaller chunks: more calls, each waiting for the GIL).
CHUNK = 1 << 16
# Subnormal floats (below ~1e-38 in float32) are 10-100x slower on CPUs. A unit that stops receiving gradient
# (a dead ReLU) has its moments decay geometrically into that range: measured, after 10 epochs of the default
# setup 51,217 of Adam's m entries were subnormal and a step took 3.3 ms instead of 1.3. So every
# FLUSH_EVERY steps, state entries smaller than TINY are set to 0 -- far below anything an update can feel.
FLUSH_EVERY, TINY = 100, 1e-30


class Optimizer:
    """Shared bookkeeping: the parameters, named state arrays, and the chunks each thread updates.

    A subclass names its state arrays in `state_names` and writes `update(p, g, *state, tmp)`: the update of
    one chunk, in place, with `tmp` a scratch array of the chunk's size.
    """

    state_names = ()

    def __init__(self, params, lr):
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        self.params, self.lr, self.t = params, lr, 0
        xp = backend.xp
        self.state = {s: {k: xp.zeros_like(p) for k, p in params.items()} for s in self.state_names}
        self._planned_for, self._tasks = None, []

    def step(self, grads):
        """Update every parameter in place from its gradient."""
        self.t += 1
        if self.t % FLUSH_EVERY == 0:  # counted by t, so that a resumed run flushes at the same steps
            for arrays in self.state.values():
                for a in arrays.values():
                    a[backend.xp.abs(a) < TINY] = 0
        threads.run(self._plan(grads))

    def _plan(self, grads):
        """One function per thread, each updating its share of the chunks: (param, grad, *state) views of
        CHUNK elements, dealt out largest first to the least loaded thread. Built once, and again only if
        other parameter or gradient arrays, or another number of threads, come."""
        total = sum(p.size for p in self.params.values())  # below CHUNK in all, a thread would cost more than it saves
        n_threads = 1 if backend.is_gpu() else max(1, min(threads.elementwise_threads, total // CHUNK))
        arrays = [*self.params.values(), *(grads[name] for name in self.params)]
        planned_threads, planned_arrays = self._planned_for or (None, [])
        if planned_threads != n_threads or len(arrays) != len(planned_arrays) or any(
                a is not b for a, b in zip(arrays, planned_arrays)):
            chunks = []
            for name, param in self.params.items():
                flat = [a.reshape(-1) for a in (param, grads[name], *(s[name] for s in self.state.values()))]
                step = max(param.size, 1) if backend.is_gpu() else CHUNK  # views: updating one updates param
                chunks += [[a[start:start + step] for a in flat] for start in range(0, param.size, step)]
            shares, loads = [[] for _ in range(n_threads)], [0] * n_threads
            for chunk in sorted(chunks, key=lambda c: -c[0].size):
                least = loads.index(min(loads))
                shares[least].append(chunk)
                loads[least] += chunk[0].size
            self._tasks = [self._updater(share) for share in shares if share]
            self._planned_for = n_threads, arrays
        return self._tasks

    def _updater(self, chunks):
        """A function updating these chunks, with a scratch array of its own (threads must not share one)."""
        scratch = backend.xp.empty(max(c[0].size for c in chunks), dtype=chunks[0][0].dtype)
        work = [(*chunk, scratch[: chunk[0].size]) for chunk in chunks]

        def update_all():
            for arrays in work:
                self.update(*arrays)

        return update_all

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

    def update(self, p, g, velocity, tmp):
        velocity *= self.momentum
        velocity += g
        backend.xp.multiply(velocity, self.lr, out=tmp)
        p -= tmp


class RMSprop(Optimizer):
    """RMSprop (Keras defaults, as tutorial 002 uses them):
    v = rho * v + (1 - rho) * g^2;  p -= lr * g / (sqrt(v) + eps)."""

    state_names = ("v",)

    def __init__(self, params, lr=1e-3, rho=0.9, eps=1e-7):
        super().__init__(params, lr)
        self.rho, self.eps = rho, eps

    def update(self, p, g, v, tmp):
        xp = backend.xp
        xp.multiply(g, g, out=tmp)  # v += (1 - rho) (g^2 - v)  is  v = rho v + (1 - rho) g^2
        tmp -= v
        tmp *= 1 - self.rho
        v += tmp
        xp.sqrt(v, out=tmp)
        tmp += self.eps
        xp.divide(g, tmp, out=tmp)
        tmp *= self.lr
        p -= tmp


class Adam(Optimizer):
    """Adam (Kingma & Ba), the textbook update for a gradient g at step t = 1, 2, ...:

        m = b1 m + (1 - b1) g                v = b2 v + (1 - b2) g^2
        m_hat = m / (1 - b1^t)               v_hat = v / (1 - b2^t)
        p -= lr * m_hat / (sqrt(v_hat) + eps)

    `adam_reference_step` below is exactly that, one line per formula, and tests/test_optim.py checks that
    this class gives the same numbers to float32 rounding over hundreds of steps.

    The same numbers in fewer passes over memory. The state kept is not m and v but the plain weighted sums

        M = b1 M + g        V = b2 V + g^2          (so that m = (1 - b1) M and v = (1 - b2) V)

    and with c = sqrt((1 - b2) / (1 - b2^t)), putting m and v into the update and dividing top and bottom by c:

        p -= lr_t * M / (sqrt(V) + eps_t),    lr_t = lr (1 - b1) / ((1 - b1^t) c),   eps_t = eps / c

    Every constant is in the two scalars lr_t and eps_t: 10 passes (see `update`) where the formulas as
    written take 14. `moments(name)` gives m and v themselves.
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

    def update(self, p, g, M, V, tmp):
        xp = backend.xp
        M *= self.beta1  # M = b1 M + g
        M += g
        V *= self.beta2  # V = b2 V + g^2
        xp.multiply(g, g, out=tmp)
        V += tmp
        xp.sqrt(V, out=tmp)  # p -= lr_t * M / (sqrt(V) + eps_t)
        tmp += self.eps_t
        xp.divide(M, tmp, out=tmp)
        tmp *= self.lr_t
        p -= tmp

    def moments(self, name):
        """The textbook m and v of one parameter (new arrays): (1 - b1) M and (1 - b2) V."""
        return (1 - self.beta1) * self.state["M"][name], (1 - self.beta2) * self.state["V"][name]

    def from_older(self, saved):
        """minivae 0.1 saved the textbook m and v ('m.<name>', 'v.<name>'): as M = m / (1 - b1), V = v / (1 - b2)."""
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
    Slow (a new array per operation) and plain; `Adam` computes the same numbers faster."""
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g**2
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    p = p - lr * m_hat / (v_hat**0.5 + eps)  # ** 0.5: sqrt for NumPy and CuPy arrays alike
    return p, m, v


OPTIMIZERS = {"adam": Adam, "rmsprop": RMSprop, "sgd": SGD}
