"""class_rows.image_rows: one named row of images per class, written like every other figure."""

import matplotlib.figure
import matplotlib.image as mpimg
import numpy as np
import pytest

from minivae.figures import class_rows


@pytest.fixture
def drawn(monkeypatch):
    """Every figure drawn, kept so that a test can look at it."""
    kept = []

    class Recorded(matplotlib.figure.Figure):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            kept.append(self)

    monkeypatch.setattr(matplotlib.figure, "Figure", Recorded)  # plots imports it where it draws
    return kept


def test_image_rows_draws_one_labelled_row_per_class(tmp_path, drawn):
    rows = np.random.default_rng(0).random((3, 4, 784))
    path = class_rows.image_rows(rows, ["Sandal", "Sneaker", "Bag"], tmp_path / "grid.png", title="t")
    assert path == tmp_path / "grid.png" and mpimg.imread(path).shape[:2] == (300, 450)
    axes = drawn[0].axes
    assert len(axes) == 12
    assert [axes[4 * r].get_ylabel() for r in range(3)] == ["Sandal", "Sneaker", "Bag"]


def test_image_rows_takes_a_list_of_rows_of_folded_images(tmp_path):
    rows = [np.zeros((2, 28, 28)), np.ones((2, 784))]
    assert class_rows.image_rows(rows, ["zeros", "ones"], tmp_path / "rows.png").is_file()


@pytest.mark.parametrize("rows, labels, message", [
    (np.zeros((2, 3, 784)), ["one"], "2 rows of images but 1 row labels"),
    ([np.zeros((3, 784)), np.zeros((2, 784))], ["a", "b"], "the same number of images"),
])
def test_image_rows_refuses_rows_that_do_not_fit(tmp_path, rows, labels, message):
    with pytest.raises(ValueError, match=message):
        class_rows.image_rows(rows, labels, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
