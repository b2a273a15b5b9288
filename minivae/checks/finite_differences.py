"""Gradient checking: compare every hand-written backward pass with central finite differences.

    numeric df/dx_i = g_h = (f(x + h e_i) - f(x - h e_i)) / (2h)        error O(h^2), run in float64

`check_layer` turns a layer into a scalar function by projecting its output on a fixed random array R,
f(x) = sum(forward(x) * R), so that backward(R) must equal df/dx, and each parameter's grads df/dparam.
`check_function` does the same for a function that returns its own gradients, `check_model` for a model's loss
(any model: its `step` and the same loss without gradients are passed in). Gradients must be overwritten, never
accumulated: before the analytic gradients are taken, every `grads` array is filled with noise and backward (or
the model's step) runs twice; the second call's results are the ones checked.

How far can a numeric gradient be trusted? Its truncation error grows like h^2 and its rounding error like
u |f| / h (u = 1.1e-16, float64's unit roundoff). So each entry is computed twice, with h and 2h, and given an
error bound
    e_i = |g_h - g_2h|  +  1e-12 * max(1, |f|) / h
The first term is 3x g_h's truncation error (g_2h's is 4x g_h's). The second is the rounding of the two
evaluations of f, with 1e-12 ~ 10^4 u: f sums hundreds of terms, each rounded, and the margin is generous.

The pass rule, exactly as `main` applies it. For every checked array (an input or a parameter):
  1. entries where the analytic and numeric gradients differ by at most e_i agree (finite differences cannot
     tell them apart);
  2. the verdict is the largest relative error of the other entries, |a_i - n_i| / max(|a_i| + |n_i|, 1e-4 * S)
     with S the largest |a_j| + |n_j| of the array (so an entry 10^4 times smaller than the rest is measured
     against the array's scale); 0 when every entry agrees, inf when a gradient is not finite;
  3. a check fails when its largest verdict exceeds TOLERANCE = 1e-6, or when it raises.
The table also prints the raw relative error (step 2 with e_i = 0) to show the finite differences' own noise;
it decides nothing. `python -m minivae.gradcheck` exits 1 when any check fails, 0 otherwise.

The table is table.py: one small named check per branch of every backward (its docstring says how to add a
row). A planted one-line mistake in any backward must make some row fail; tests/checks/test_gradcheck_mistakes.py
plants them, and docs/gradcheck.md explains the design.
"""

import numpy as np

from minivae.core import backend

TOLERANCE = 1e-6
# The finite-difference step. Smaller is not better: truncation shrinks like h^2 but rounding grows like 1/h,
# and f sums many terms (logits of 40 make |f| ~ 500). h = 1e-6 is rounding-limited on this library's ops,
# 1e-4 truncation-limited; at 3e-5 the raw errors of the table's rows lie between 1e-11 and 2e-6. Rows whose
# inputs sit within 3e-5 of a kink or a floor (the clip of bce_probs, sigma near 0) pass a smaller h of their own.
STEP = 3e-5
ROUNDING = 1e-12  # the rounding term's factor: ~10^4 times float64's unit roundoff (see the module docstring)
SMALL_ENTRY = 1e-4  # entries below this fraction of an array's largest gradient are judged against that scale


def numerical_grad(f, x, h=None):
    """Central-difference gradient of the scalar function f() with respect to the array x, changed in place
    (and restored) element by element. x should be float64; f takes no arguments and reads x itself.
    h defaults to STEP. Returns an array shaped like x."""
    h = STEP if h is None else h
    xp = backend.xp
    grad = xp.zeros_like(x)
    flat_x, flat_grad = x.reshape(-1), grad.reshape(-1)  # views: writing flat_x[i] changes x
    for i in range(flat_x.size):
        old = float(flat_x[i])
        flat_x[i] = old + h
        f_plus = float(f())
        flat_x[i] = old - h
        f_minus = float(f())
        flat_x[i] = old
        flat_grad[i] = (f_plus - f_minus) / (2 * h)
    return grad


def numerical_grad_with_error(f, x, h=None):
    """The numeric gradient g_h and, per entry, its error bound e = |g_h - g_2h| + ROUNDING * max(1, |f|) / h
    (see the module docstring). Both shaped like x."""
    h = STEP if h is None else h
    grad = numerical_grad(f, x, h)
    error = backend.xp.abs(grad - numerical_grad(f, x, 2 * h)) + ROUNDING * max(1.0, abs(float(f()))) / h
    return grad, error


def rel_error(analytic, numeric, numeric_error=0.0, floor=SMALL_ENTRY):
    """Largest elementwise relative error:  max_i |a_i - n_i| / max(|a_i| + |n_i|, floor * scale),
    with scale the largest |a_j| + |n_j| of the array. 0 for identical arrays, 1 for opposite signs,
    inf when either holds a NaN or an infinity (a gradient that is not a number is wrong).

    Differences within `numeric_error` (what finite differences cannot resolve, scalar or per entry) count
    as 0: where the true gradient is 0, the numeric one is still ~1e-10, which no relative measure can judge.
    And an entry a million times smaller than its neighbours (an input of 1e-8, say) is measured against
    `floor` of the array's scale rather than against itself. A real bug (a 1% error, a missing term) still shows.
    """
    a, n = backend.to_numpy(analytic).astype(np.float64), backend.to_numpy(numeric).astype(np.float64)
    if a.shape != n.shape:
        raise ValueError(f"gradient shapes differ: analytic {a.shape}, numeric {n.shape}")
    if not (np.isfinite(a).all() and np.isfinite(n).all()):
        return float("inf")
    diff = np.abs(a - n)
    diff[diff <= backend.to_numpy(numeric_error)] = 0.0
    if not diff.any():
        return 0.0
    magnitude = np.abs(a) + np.abs(n)
    return float(np.max(diff / np.maximum(magnitude, floor * magnitude.max())))


def compare(analytic, f, x, h=None, noise_aware=True):
    """Relative error of the analytic gradient of f() with respect to x (see rel_error). With
    noise_aware=False the raw error, counting differences finite differences cannot resolve."""
    numeric, error = numerical_grad_with_error(f, x, h)
    return rel_error(analytic, numeric, error if noise_aware else 0.0)


def fill_with_noise(grads, rng):
    """Overwrite every array of a grads dict with noise: a backward that accumulates into it then shows."""
    for grad in grads.values():
        grad[...] = backend.xp.asarray(rng.standard_normal(grad.shape))


def check_layer(layer, x, seed=0, h=None, noise_aware=True):
    """Relative errors of a layer's backward: {'x': err, '<param>': err, ...}.

    Use float64 inputs and a layer built with dtype='float64'. The projection f = sum(forward(x) * R) has
    df/dout = R (R drawn from `seed`), so one call backward(R) gives every analytic gradient at once: it is
    made on grads filled with noise, twice, and the second call's dx and grads are checked.
    """
    xp = backend.xp
    rng = np.random.default_rng(seed)
    out = layer.forward(x)
    projection = xp.asarray(rng.standard_normal(out.shape))
    fill_with_noise(layer.grads, rng)
    layer.backward(projection)
    dx = layer.backward(projection)
    analytic = {"x": dx} | {name: g.copy() for name, g in layer.grads.items()}

    def f():
        return float((layer.forward(x) * projection).sum())

    errors = {"x": compare(analytic["x"], f, x, h, noise_aware)}
    for name, param in layer.params.items():
        errors[name] = compare(analytic[name], f, param, h, noise_aware)
    return errors


def check_function(fn, inputs, wrt=None, h=None, noise_aware=True):
    """Relative errors for a function with a hand-written gradient, one per checked input.

    fn(*inputs) must return (value, grads): value an array or a number, grads a tuple holding
    d sum(value) / d inputs[i] for each i in `wrt` (default: every input), in that order.
    """
    wrt = range(len(inputs)) if wrt is None else wrt
    _, grads = fn(*inputs)

    def f():
        return fn(*inputs)[0].sum()

    return [compare(g, f, inputs[i], h, noise_aware) for i, g in zip(wrt, grads)]


def check_model(model, step, loss, noise_aware=True, h=None):
    """Relative error of every parameter's gradient of a model's loss: {name: err}. step() runs the model's forward
    and backward, filling model.grads (its noise fixed); loss() is the same loss as a float, without gradients.
    step runs twice on grads filled with noise; the second call's gradients are checked."""
    fill_with_noise(model.grads, np.random.default_rng(0))
    step()
    step()
    analytic = {name: g.copy() for name, g in model.grads.items()}
    return {name: compare(analytic[name], loss, p, h, noise_aware) for name, p in model.params.items()}


def run_check(check, raw=True):
    """Run one row of the table: (verdicts, raws, problem). verdicts and raws map what was checked to its
    error (raws is {} when raw=False); problem is the exception's one-line text when the check raised, else None.
    Each run draws from a fresh generator seeded by the row, so the raw and the verdict see the same numbers."""
    try:
        with np.errstate(all="ignore"):  # a gradient that overflows fails by its inf, not by a warning
            verdicts = check.run(np.random.default_rng(check.seed), True)
            raws = check.run(np.random.default_rng(check.seed), False) if raw else {}
    except Exception as err:  # a backward that crashes fails its row; the table goes on
        return {}, {}, f"{type(err).__name__}: {err}"
    return verdicts, raws, None


def passes(verdicts, problem):
    """The pass rule: no exception, and every verdict at most TOLERANCE (inf and NaN fail)."""
    return problem is None and all(v <= TOLERANCE for v in verdicts.values())
