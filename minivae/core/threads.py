"""How many CPU threads minivae uses: `limit_threads(n)` for BLAS and for the elementwise passes, `run` and
`in_slices`. The fast twins of the plain files (optim_fast, layers_fast, conv_fast) use it; nothing plain does.

Matrix products run in BLAS (OpenBLAS, MKL), which spreads each product over every core by itself. NumPy's
elementwise passes (m *= beta, sqrt(v), ...) each run on ONE core. NumPy does release Python's GIL inside
them, though, so k Python threads that each loop over their own slice of the arrays run k passes at once.
`run(tasks)` runs a list of functions, one per thread, and waits for all (optim_fast.py deals out its chunks
so); `in_slices(function, *arrays)` cuts big arrays into one block per thread and runs the same pass on each
block (the fast conv layers' copies and ReLU's passes).

    with limit_threads(1):      # BLAS and the elementwise passes on one core, e.g. to time them
        ...
    limit_threads(2)            # or as a plain call: from now on, two

The worker threads are started once and wait between calls: starting a thread costs ~50 us, a step only
needs a wake-up. They share the cores with BLAS's own threads, which by default spin for a while after each
product, waiting for the next; minivae/__init__.py sets OPENBLAS_THREAD_TIMEOUT so that OpenBLAS's threads sleep
at once instead (docs/speed.md has what that measured). On the GPU (CuPy) none of this applies: every pass is
one kernel over all the cores.
"""

import functools
import os
import queue
import threading

from minivae.core import backend

MAX_DEFAULT = 4  # the default never exceeds this: a 650k-parameter update is only ~10 chunks to share
# `in_slices` gives each thread at least this many elements: waking a thread costs ~50 us, the time of a pass
# over ~100k floats, so smaller arrays (an MLP's activations) stay on the calling thread.
MIN_SLICE = 1 << 17


def available_cores():
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


elementwise_threads = min(available_cores(), MAX_DEFAULT)  # threads `run` uses; set it with limit_threads


def blas_threads():
    """The threads BLAS uses now (as threadpoolctl reports them; '?' if it finds no BLAS)."""
    from threadpoolctl import threadpool_info  # here: only the commands need it, not `import minivae`

    counts = sorted({str(lib["num_threads"]) for lib in threadpool_info() if lib["user_api"] == "blas"})
    return "/".join(counts) or "?"


class _Workers:
    """Threads that each wait for a function on their own queue, call it, and report on a shared queue."""

    def __init__(self):
        self.inboxes, self.done, self.lock = [], queue.SimpleQueue(), threading.Lock()

    def run(self, tasks):
        with self.lock:  # one caller at a time: the workers and their shared `done` queue serve one list
            self._run(tasks)

    def _run(self, tasks):
        while len(self.inboxes) < len(tasks) - 1:  # a new worker the first time this many are wanted
            inbox = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(inbox,), daemon=True).start()
            self.inboxes.append(inbox)
        for inbox, task in zip(self.inboxes, tasks[1:]):
            inbox.put(task)
        errors = []
        try:
            tasks[0]()  # the calling thread does the first share itself
        except BaseException as err:  # noqa: BLE001 (wait for the workers, then re-raise)
            errors.append(err)
        errors += [err for err in (self.done.get() for _ in tasks[1:]) if err is not None]
        if errors:
            raise errors[0]

    def _serve(self, inbox):
        while True:
            task = inbox.get()
            try:
                task()
                self.done.put(None)
            except BaseException as err:  # noqa: BLE001 (handed to the caller)
                self.done.put(err)


_workers = _Workers()


def run(tasks):
    """Call every function in `tasks` (at most `elementwise_threads` of them), each on its own thread, and
    return when all have finished. An exception in any is raised here, after all have finished."""
    if len(tasks) > max(elementwise_threads, 1):
        raise ValueError(f"{len(tasks)} tasks for {elementwise_threads} threads")
    if len(tasks) == 1:
        tasks[0]()
    elif tasks:
        _workers.run(tasks)


def in_slices(function, *arrays, axis=None):
    """function(*blocks) for matching blocks of `arrays`, one block per thread, and wait for all of them.

    Every array is cut along the same `axis` (default: the axis of the first array with the largest stride,
    so that each block is one stretch of its memory), into `elementwise_threads` blocks or fewer, each of
    at least MIN_SLICE elements of the first array; they must all have that axis's length. function writes its
    results into blocks of output arrays passed among `arrays`, e.g.

        in_slices(np.copyto, destination, source)                       # destination[...] = source
        in_slices(lambda x, out: np.maximum(x, 0, out=out), x, out)     # out = max(x, 0)

    On the GPU, for small arrays, or with one thread, it is simply function(*arrays).
    """
    first = arrays[0]
    n = 1 if backend.is_gpu() else min(elementwise_threads, first.size // MIN_SLICE)
    if axis is None and n > 1:
        long_enough = [a for a in range(first.ndim) if first.shape[a] >= n]
        axis = max(long_enough, key=lambda a: abs(first.strides[a]), default=None)
    if n <= 1 or axis is None:
        function(*arrays)
        return
    length = first.shape[axis]
    bounds = [length * k // n for k in range(n + 1)]
    blocks = [tuple(slice(None) for _ in range(axis)) + (slice(lo, hi),) for lo, hi in zip(bounds, bounds[1:])]
    run([functools.partial(function, *(a[block] for a in arrays)) for block in blocks])


class limit_threads:
    """Use n threads for BLAS (through threadpoolctl) and for the elementwise passes (`run`).

    As a plain call it applies until changed; as a context manager (`with limit_threads(1):`) it puts the
    previous limits back at the end. n = None leaves everything as it is.
    """

    def __init__(self, n):
        global elementwise_threads
        if n is not None and n < 1:
            raise ValueError(f"the number of threads must be at least 1, got {n}")
        from threadpoolctl import threadpool_limits  # here: only the commands need it, not `import minivae`

        self.previous = elementwise_threads
        self.blas = threadpool_limits(limits=n, user_api="blas") if n is not None else None
        elementwise_threads = self.previous if n is None else n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global elementwise_threads
        elementwise_threads = self.previous
        if self.blas is not None:
            self.blas.restore_original_limits()
        return False
