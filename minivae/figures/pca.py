"""Principal components: the directions along which a cloud of points (a model's encoder means) spreads most.

A latent space of more than two dimensions cannot be drawn directly. Both the scatter plots (plots.py) and the
explorer page (explorer.py) show it on the plane of its first two principal directions, found here with one SVD.
"""

import numpy as np

from minivae.core.backend import to_numpy


def principal_directions(x, k):
    """The first k principal directions of the rows of x, computed with an SVD of x less its mean.

    x: (N, d) with d >= k. Returns (directions (k, d), explained (k,)): orthonormal rows, and the fraction of the
    total variance along each. Their signs are arbitrary.
    """
    x = np.asarray(to_numpy(x), dtype=float)
    # centered = U S Vt: the rows of Vt are the principal directions, S**2 the variance along each (times N)
    _, s, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    total = np.sum(s**2)
    explained = s[:k] ** 2 / total if total > 0 else np.zeros(k)
    return vt[:k], explained


def pca(x, k):
    """Project rows of x onto their first k principal components (principal_directions).

    x: (N, d) with d >= k. Returns (projected (N, k), explained (k,)), where explained[i] is the fraction of
    the total variance along component i. Components have unit length; their signs are arbitrary.
    """
    x = np.asarray(to_numpy(x), dtype=float)
    directions, explained = principal_directions(x, k)
    return (x - x.mean(axis=0)) @ directions.T, explained
