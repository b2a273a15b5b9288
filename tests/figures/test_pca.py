"""Principal components against the eigenvectors of the covariance matrix, computed another way (np.linalg.eigh)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivae.figures.pca import pca, principal_directions


@pytest.fixture
def rng():
    return np.random.default_rng(3)


def test_pca_finds_all_variance_of_points_on_a_plane(rng):
    plane = rng.normal(size=(200, 2)) @ rng.normal(size=(2, 5))  # 5-D points that lie on a 2-D plane
    projected, explained = pca(plane, 2)
    assert projected.shape == (200, 2)
    assert explained.sum() == pytest.approx(1.0)
    assert explained[0] >= explained[1]


@settings(max_examples=30, deadline=None)
@given(d=st.integers(2, 6), k=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_principal_directions_are_the_covariance_eigenvectors_with_the_largest_eigenvalues(d, k, seed):
    k = min(k, d)
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
    x = rng.normal(size=(400, d)) * 3.0 ** np.arange(d) @ rotation + rng.normal(size=d)  # well-separated spreads
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(x, rowvar=False))  # ascending
    directions, explained = principal_directions(x, k)
    assert directions.shape == (k, d)
    np.testing.assert_allclose(explained, eigenvalues[::-1][:k] / eigenvalues.sum(), rtol=1e-9)
    # each direction is an eigenvector up to its sign: |cos| = 1
    np.testing.assert_allclose(np.abs(np.sum(directions * eigenvectors[:, ::-1][:, :k].T, axis=1)), 1.0, rtol=1e-6)


def test_pca_projects_the_centred_points_on_the_directions(rng):
    x = rng.normal(size=(50, 4)) * [5.0, 2.0, 1.0, 0.5] + 7.0
    projected, _ = pca(x, 2)
    directions, _ = principal_directions(x, 2)
    np.testing.assert_allclose(projected, (x - x.mean(axis=0)) @ directions.T)
    np.testing.assert_allclose(projected.mean(axis=0), 0.0, atol=1e-12)


def test_identical_points_explain_nothing_rather_than_dividing_by_zero():
    _, explained = principal_directions(np.ones((10, 3)), 2)
    np.testing.assert_array_equal(explained, [0.0, 0.0])
