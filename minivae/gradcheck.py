"""Gradient checking: compare every hand-written backward pass with central finite differences.

    numeric df/dx_i = (f(x + h e_i) - f(x - h e_i)) / (2h)        error O(h^2), run in float64

`check_layer` turns a layer into a scalar function by projecting its output on a fixed random array R,
f(x) = sum(forward(x) * R), so that backward(R) must equal df/dx, and each parameter's grads df/dparam.
`python -m minivae.gradcheck` runs the checks on every op of the library and prints a table of the largest
relative error of each; it exits with status 1 if any exceeds 1e-6.

How far can a numeric gradient be trusted? Its truncation error grows like h^2 and its rounding error like
1e-16 |f| / h. So we compute it twice, with h and 2h: the truncation error of the second is 4x the first's,
and their gap measures the numeric error itself. A difference between analytic and numeric gradient smaller
than that gap (plus the rounding) is noise and counts as agreement; every larger one is judged relatively.
"""

import numpy as np

from minivae import backend

TOLERANCE = 1e-6
# The finite-difference step. Smaller is not better: truncation shrinks like h^2 but rounding grows like 1/h,
# and f sums many terms (logits of 40 make |f| ~ 500). Measured on this library's table: h = 1e-6 is
# rounding-limited (errors 2e-6 with logits of +-40), 1e-4 truncation-limited; 3e-5 keeps every check < 1e-7.
STEP = 3e-5


def numerical_grad(f, x, h=None):
    """Central-difference gradient of the scalar function f() with respect to the array x, changed in place
    (and restored) element by element. x should be float64; f takes no arguments and reads x itself.
    h defaults to STEP."""
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
    """The numeric gradient and, per entry, how far it can be off: |g(h) - g(2h)| (truncation; g(2h)'s is 4x
    g(h)'s, so this is 3x g(h)'s own) plus 1e-12 max(1, |f|) / h (rounding, with a 100x margin)."""
    h = STEP if h is None else h
    grad = numerical_grad(f, x, h)
    error = backend.xp.abs(grad - numerical_grad(f, x, 2 * h)) + 1e-12 * max(1.0, abs(float(f()))) / h
    return grad, error


def rel_error(analytic, numeric, numeric_error=0.0, floor=1e-4):
    """Largest elementwise relative error:  max_i |a_i - n_i| / max(|a_i| + |n_i|, floor * scale),
    with scale the largest |a_j| + |n_j| of the array. 0 for identical arrays, 1 for opposite signs.

    Differences within `numeric_error` (what finite differences cannot resolve, scalar or per entry) count
    as 0: where the true gradient is 0, the numeric one is still ~1e-10, which no relative measure can judge.
    And an entry a million times smaller than its neighbours (an input of 1e-8, say) is measured against
    1e-4 of the array's scale rather than against itself. A real bug (a 1% error, a missing term) still shows.
    """
    a, n = backend.to_numpy(analytic).astype(np.float64), backend.to_numpy(numeric).astype(np.float64)
    if a.shape != n.shape:
        raise ValueError(f"gradient shapes differ: analytic {a.shape}, numeric {n.shape}")
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


def check_layer(layer, x, seed=0, h=None, noise_aware=True):
    """Relative errors of a layer's backward: {'x': err, '<param>': err, ...}.

    Use float64 inputs and a layer built with dtype='float64'. The projection f = sum(forward(x) * R) has
    df/dout = R, so one call backward(R) gives every analytic gradient at once.
    """
    xp = backend.xp
    rng = np.random.default_rng(seed)
    out = layer.forward(x)
    projection = xp.asarray(rng.standard_normal(out.shape))
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


def check_model(model, x, eps, noise_aware=True):
    """Relative error of every parameter's gradient of the model's loss (noise eps fixed): {name: err}."""
    model.step(x, eps=eps)
    analytic = {name: g.copy() for name, g in model.grads.items()}

    def loss():
        recon, kl = model.per_example_losses(x, eps=eps)
        return float(recon.mean() + model.beta * kl.mean())

    return {name: compare(analytic[name], loss, p, noise_aware=noise_aware) for name, p in model.params.items()}


def _cases():
    """(group, name, run) for every op in the library; run(noise_aware) returns {what: error}. Each run draws
    its arrays from its own seeded generator, so the raw and the noise-aware runs check the same numbers."""
    from minivae import conv, gaussian, layers, losses
    from minivae.vae import mlp_vae

    f64 = "float64"

    def arrays(*shapes, low=-2.0, high=2.0):
        rng = np.random.default_rng(sum(map(sum, shapes)))
        return [backend.xp.asarray(rng.uniform(low, high, size=shape)) for shape in shapes]

    def layer(make, shape, low=-2.0, high=2.0):
        return lambda na: check_layer(make(), *arrays(shape, low=low, high=high), noise_aware=na)

    def loss(fn, low, high):
        def run(na):
            (out,), (x,) = arrays((4, 7), low=low, high=high), arrays((4, 8), low=0, high=1)
            x = x[:, :7]
            return {"out": check_function(lambda o: (fn(o, x)[0], fn(o, x)[1:]), [out], noise_aware=na)[0]}
        return run

    cases = [
        ("layer", "Dense", layer(lambda: layers.Dense(6, 4, dtype=f64), (5, 6))),
        ("layer", "ReLU", layer(layers.ReLU, (5, 6), low=0.1, high=2)),  # off the kink at 0
        ("layer", "Sigmoid", layer(layers.Sigmoid, (5, 6), low=-8, high=8)),
        ("layer", "Tanh", layer(layers.Tanh, (5, 6))),
        ("layer", "Sequential (MLP)", layer(lambda: layers.mlp([6, 5, 3], "tanh", dtype=f64), (4, 6))),
        ("conv", "Conv2D 3x3 stride 2 same", layer(lambda: conv.Conv2D(2, 3, 3, 2, "same", dtype=f64), (2, 2, 5, 5))),
        ("conv", "ConvTranspose2D 3x3 stride 2", layer(
            lambda: conv.ConvTranspose2D(2, 3, 3, 2, padding=1, output_padding=1, dtype=f64), (2, 2, 3, 3))),
        ("conv", "Flatten", layer(conv.Flatten, (2, 3, 2, 2))),
        ("conv", "Reshape", layer(lambda: conv.Reshape((2, 2, 3)), (2, 12))),
        ("loss", "bce_logits", loss(losses.bce_logits, -40, 40)),
        ("loss", "bce_probs", loss(losses.bce_probs, 0.02, 0.98)),
        ("loss", "squared_error", loss(losses.squared_error, 0, 1)),
    ]
    for posterior, low, high in [(gaussian.LogvarGaussian(), -10, 10), (gaussian.SigmaGaussian(), 0.2, 2)]:
        tag = posterior.scale_name

        def sample(na, posterior=posterior, low=low, high=high, tag=tag):
            mu, eps, projection = arrays((4, 3), (4, 3), (4, 3))
            (second,) = arrays((4, 3), low=low, high=high)

            def fn(m, s):
                return posterior.sample(m, s, eps=eps) * projection, posterior.backward(projection)

            return dict(zip(["mu", tag], check_function(fn, [mu, second], noise_aware=na)))

        def kl(na, posterior=posterior, low=low, high=high, tag=tag):
            (mu,), (second,) = arrays((4, 3)), arrays((4, 3), low=low, high=high)

            def fn(m, s):
                value, dmu, dsecond = posterior.kl(m, s)
                return value, (dmu, dsecond)

            return dict(zip(["mu", tag], check_function(fn, [mu, second], noise_aware=na)))

        cases += [("sampler", f"z = mu + std * eps [{tag}]", sample), ("KL", f"KL to N(0, I) [{tag}]", kl)]
    for config in [dict(recon="bce", posterior="logvar", activation="relu"),
                   dict(recon="mse", posterior="sigma", activation="relu", decoder_hidden=(6,)),
                   dict(recon="bce-prob", posterior="logvar", activation="tanh", beta=0.5)]:

        def elbo(na, config=config):
            model = mlp_vae(input_dim=9, hidden=(7,), latent=3, rng=backend.default_rng(1), dtype=f64, **config)
            (x,), (eps,) = arrays((5, 9), low=0, high=1), arrays((5, 3))
            return check_model(model, x, eps, noise_aware=na)

        cases.append(("model", f"ELBO {config['recon']}/{config['posterior']}/{config['activation']}", elbo))
    return cases


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(prog="python -m minivae.gradcheck",
                                     description="Check every hand-written gradient against finite differences.")
    parser.add_argument("--device", choices=("cpu", "gpu"), help="default: as MINIVAE_BACKEND says, else cpu")
    args = parser.parse_args(argv)
    try:
        backend.use_device(args.device)
    except backend.BackendError as err:
        parser.exit(2, f"error: {err}\n")
    print(f"Every hand-written gradient against central differences (h = {STEP:g}, float64, {backend.name}).")
    print("raw: largest relative error of any entry; verdict: the same, ignoring differences within the")
    print(f"finite differences' own error (see the module docstring). A check fails when verdict > {TOLERANCE:g}.\n")
    print(f"{'group':8s} {'check':34s} {'raw':>9s} {'verdict':>9s}  worst entry")
    failed = 0
    for group, name, run in _cases():
        raw, verdict = run(False), run(True)
        worst = max(raw, key=raw.get)
        ok = max(verdict.values()) <= TOLERANCE
        failed += not ok
        print(f"{group:8s} {name:34s} {raw[worst]:9.1e} {max(verdict.values()):9.1e}  {worst}"
              f"{'' if ok else '   FAIL'}")
    print("\nall gradients match" if not failed else f"\n{failed} check(s) over tolerance")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
