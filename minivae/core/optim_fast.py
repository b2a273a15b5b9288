"""optim.py's optimizers, faster: on the CPU the same updates in cache-sized chunks, spread over threads; on the GPU
each update one fused kernel. The same numbers as the plain ones (tests/core/test_optim.py and test_kernels.py hold
them equal); the training command uses these.

The updates are elementwise and memory-bound: a 650k-parameter Adam step reads and writes arrays of 2.6 MB, and
NumPy makes one full pass over memory per operation. So here
  1. every result goes into a scratch array with `out=` (no temporaries);
  2. on the CPU each parameter is walked in chunks of CHUNK elements, so the passes over one chunk hit the L2
     cache instead of main memory;
  3. the chunks are dealt out to `threads.elementwise_threads` threads (threads.py): one NumPy pass only ever uses
     one core, but it lets the others run while it works;
  4. every FLUSH_EVERY steps, state entries smaller than TINY are set to 0. A unit that stops receiving gradient
     (a dead ReLU) has its moments decay geometrically into float32's subnormal range, where CPUs compute 10 to
     100 times slower; TINY is far below anything an update can feel. (This one changes the numbers, by less
     than 1e-30 per entry: until the first flush the plain optimizers agree with these bit for bit.)
On CuPy each of those passes would be one GPU kernel launch, ten per parameter array for Adam, and the launches
would be the time. There each update is instead one kernel (core/kernels.py), written below beside the passes it
fuses: every array read once and written once, the flush included; no chunks, no threads. Its arithmetic is the
passes' own, in the same order, so it gives their float32 numbers bit for bit. docs/speed.md has what each of
these measured.
"""

from minivae.core import backend, kernels, threads
from minivae.core.optim import SGD, Adam, RMSprop

CHUNK = 1 << 16  # elements per chunk on the CPU: 256 KB of float32, so the 5 arrays of an update fit in L2
FLUSH_EVERY, TINY = 100, 1e-30


class InChunks:
    """Put before an optimizer class: its `update` then runs chunk by chunk on threads, or as one kernel per
    parameter array where the backend compiles kernels (CuPy). The subclass writes `update(p, g, *state, tmp)`,
    the plain update with `tmp` a scratch array of the chunk's size, and `fused_update(p, g, *state,
    flush_below)`, the same update as one kernel that first sets the state's entries below flush_below to 0."""

    _planned_for, _tasks = None, ()

    def update_all(self, grads):
        flush = self.t % FLUSH_EVERY == 0  # counted by t, so that a resumed run flushes at the same steps
        if kernels.available():
            for name, param in self.params.items():
                self.fused_update(param, grads[name], *(self.state[s][name] for s in self.state_names),
                                  TINY if flush else 0.0)  # |x| < 0 never holds: no flush
            return
        if flush:
            for arrays in self.state.values():
                for a in arrays.values():
                    # a[abs(a) < TINY] = 0, without a boolean index: on a GPU that waits for the device
                    backend.xp.copyto(a, 0, where=backend.xp.abs(a) < TINY)
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


class FastSGD(InChunks, SGD):
    """SGD.update with no temporary array, or as one kernel."""

    def update(self, p, g, velocity, tmp):
        velocity *= self.momentum
        velocity += g
        backend.xp.multiply(velocity, self.lr, out=tmp)
        p -= tmp

    def fused_update(self, p, g, velocity, flush_below):
        SGD_KERNEL(g, self.momentum, self.lr, flush_below, p, velocity)


SGD_KERNEL = kernels.Kernel("T g, T momentum, T lr, T flush_below", "T p, T velocity", """
    if (fabs(velocity) < flush_below) velocity = T(0);
    velocity = velocity * momentum + g;
    p -= velocity * lr;
""", "minivae_sgd")


class FastRMSprop(InChunks, RMSprop):
    """RMSprop.update with no temporary array."""

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

    def fused_update(self, p, g, v, flush_below):
        RMSPROP_KERNEL(g, 1 - self.rho, self.lr, self.eps, flush_below, p, v)


RMSPROP_KERNEL = kernels.Kernel("T g, T one_minus_rho, T lr, T eps, T flush_below", "T p, T v", """
    if (fabs(v) < flush_below) v = T(0);
    v += (g * g - v) * one_minus_rho;
    p -= g / (sqrt(v) + eps) * lr;
""", "minivae_rmsprop")


class FastAdam(InChunks, Adam):
    """Adam.update with no temporary array: its 10 passes, each into M, V, p or the scratch array."""

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

    def fused_update(self, p, g, M, V, flush_below):
        ADAM_KERNEL(g, self.beta1, self.beta2, self.lr_t, self.eps_t, flush_below, p, M, V)


# The 10 passes of FastAdam.update in one kernel, in their order (so with their roundings), after the flush.
ADAM_KERNEL = kernels.Kernel("T g, T beta1, T beta2, T lr_t, T eps_t, T flush_below", "T p, T M, T V", """
    if (fabs(M) < flush_below) M = T(0);
    if (fabs(V) < flush_below) V = T(0);
    M = M * beta1 + g;
    V = V * beta2 + g * g;
    p -= M / (sqrt(V) + eps_t) * lr_t;
""", "minivae_adam")


OPTIMIZERS = {"adam": FastAdam, "rmsprop": FastRMSprop, "sgd": FastSGD}
