"""Tests for minivae.figures.plots: every picture is written, has the size asked for, and leaves nothing behind."""

import os

import matplotlib.figure
import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from minivae.figures import plots

LATENT = 4


def fake_decode(z):
    """A stand-in decoder: a fixed random linear map then a sigmoid, (n, LATENT) -> (n, 784) in (0, 1)."""
    weights = np.random.default_rng(0).standard_normal((z.shape[1], 784))
    return 1.0 / (1.0 + np.exp(-(z @ weights)))


@pytest.fixture
def rng():
    return np.random.default_rng(1)


@pytest.fixture(autouse=True)
def no_open_figures():
    yield
    assert plt.get_fignums() == [], "a plot function opened a pyplot figure"


@pytest.fixture
def drawn(monkeypatch):
    """Every figure the plot functions make, kept here so that a test can look at what was drawn."""
    kept = []

    class Recorded(Figure):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            kept.append(self)

    monkeypatch.setattr(matplotlib.figure, "Figure", Recorded)  # plots imports it where it draws
    return kept


def png_shape(path):
    """(height, width) in pixels of a PNG file, after checking that it is a non-empty file."""
    assert os.path.getsize(path) > 0
    return mpimg.imread(path).shape[:2]


def gif_frames_and_size(path):
    assert os.path.getsize(path) > 0
    with Image.open(path) as gif:
        return gif.n_frames, gif.size  # size is (width, height)


# ---------------------------------------------------------------- tile


def test_tile_places_images_row_by_row(rng):
    images = rng.random((5, 2, 3))
    grid = plots.tile(images, ncols=3, image_shape=(2, 3))
    assert grid.shape == (4, 9)
    np.testing.assert_array_equal(grid[0:2, 3:6], images[1])
    np.testing.assert_array_equal(grid[2:4, 0:3], images[3])
    np.testing.assert_array_equal(grid[2:4, 6:9], 0.0)  # the unused last cell is black


def test_tile_accepts_flat_images_and_shrinks_to_fewer_columns(rng):
    grid = plots.tile(rng.random((3, 784)), ncols=10)
    assert grid.shape == (28, 3 * 28)


# ---------------------------------------------------------------- each picture has the size asked for

FIGSIZE, DPI = (4.0, 3.0), 50
EXPECTED = (150, 200)  # (height, width) = figsize * dpi, reversed
HISTORY = [
    {"epoch": e, "train": {"loss": 200 / e, "recon": 180 / e, "kl": 20 + e},
     "test": {"loss": 210 / e, "recon": 188 / e, "kl": 22 + e}, "seconds": 1.5}
    for e in range(1, 6)
]
ZEROS, ONES = np.zeros(LATENT), np.ones(LATENT)

# Each PNG plot as a call (path, rng, **size) with small random inputs; size is {} or figsize and dpi.
PNG_CALLS = {
    "reconstructions": lambda p, rng, **size: plots.reconstructions(rng.random((12, 784)), rng.random((12, 784)), p,
                                                                    n=6, **size),
    "image_grid": lambda p, rng, **size: plots.image_grid(rng.random((12, 784)), p, ncols=5, title="samples", **size),
    "manifold": lambda p, rng, **size: plots.manifold(fake_decode, p, n=5, latent_dim=LATENT, **size),
    "latent_scatter": lambda p, rng, **size: plots.latent_scatter(rng.normal(size=(50, 5)), rng.integers(0, 3, 50), p,
                                                                  **size),
    "latent_scatter_3d": lambda p, rng, **size: plots.latent_scatter_3d(rng.normal(size=(50, 5)),
                                                                        rng.integers(0, 3, 50), p, **size),
    "latent_histograms": lambda p, rng, **size: plots.latent_histograms(rng.normal(size=(50, 5)), p, **size),
    "loss_curves": lambda p, rng, **size: plots.loss_curves(HISTORY, p, **size),
    "interpolation": lambda p, rng, **size: plots.interpolation(fake_decode, ZEROS, ONES, p, steps=4, **size),
    "score_extremes": lambda p, rng, **size: plots.score_extremes(rng.random((12, 784)), rng.random(12), p, n=3,
                                                                  **size),
}


@pytest.mark.parametrize("name", sorted(PNG_CALLS))
def test_png_has_figsize_times_dpi_pixels(name, tmp_path, rng):
    path = PNG_CALLS[name](tmp_path / f"{name}.png", rng, figsize=FIGSIZE, dpi=DPI)
    assert path == tmp_path / f"{name}.png"
    assert png_shape(path) == EXPECTED


@pytest.mark.parametrize("name", sorted(PNG_CALLS))
def test_png_default_size_is_sensible(name, tmp_path, rng):
    height, width = png_shape(PNG_CALLS[name](tmp_path / "plot.png", rng))
    assert 100 <= height <= 1000 and 100 <= width <= 1500


def test_interpolation_gif_goes_there_and_back_in_2_steps_minus_2_frames(tmp_path):
    path = plots.interpolation_gif(fake_decode, np.full(LATENT, -2.0), np.full(LATENT, 2.0), tmp_path / "walk.gif",
                                   steps=6, figsize=FIGSIZE, dpi=DPI)
    assert gif_frames_and_size(path) == (10, (200, 150))


def test_progress_gif_has_one_frame_per_array(tmp_path, rng):
    frames = [plots.tile(rng.random((6, 784)), 3) for _ in range(4)]
    path = plots.progress_gif(frames, tmp_path / "progress.gif", titles=[f"epoch {e}" for e in range(1, 5)],
                              figsize=FIGSIZE, dpi=DPI)
    assert gif_frames_and_size(path) == (4, (200, 150))


def test_progress_gif_default_size(tmp_path, rng):
    frames = [plots.tile(rng.random((6, 784)), 3) for _ in range(3)]
    n_frames, (width, height) = gif_frames_and_size(plots.progress_gif(frames, tmp_path / "p.gif"))
    assert n_frames == 3 and (width, height) == (500, 550)  # the default 5 x 5.5 inches at 100 dpi


# ---------------------------------------------------------------- files


def test_save_makes_missing_parent_folders(tmp_path, rng):
    path = plots.image_grid(rng.random((4, 784)), tmp_path / "a" / "b" / "grid.png")
    assert path.is_file()


def test_save_leaves_no_temporary_files(tmp_path, rng):
    plots.image_grid(rng.random((4, 784)), tmp_path / "grid.png")
    plots.interpolation_gif(fake_decode, np.zeros(LATENT), np.ones(LATENT), tmp_path / "walk.gif", steps=3)
    assert sorted(os.listdir(tmp_path)) == ["grid.png", "walk.gif"]


def test_save_replaces_an_existing_file(tmp_path, rng):
    path = tmp_path / "grid.png"
    path.write_bytes(b"old")
    plots.image_grid(rng.random((4, 784)), path)
    assert png_shape(path) and path.read_bytes()[:4] == b"\x89PNG"


def test_failed_plot_keeps_old_file_and_leaves_no_figure_or_temp_file(tmp_path):
    path = tmp_path / "manifold.png"
    path.write_bytes(b"old")

    def broken_decode(z):
        raise RuntimeError("decoder exploded")

    with pytest.raises(RuntimeError, match="exploded"):
        plots.manifold(broken_decode, path)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["manifold.png"]


def test_failed_write_keeps_old_file_and_removes_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "loss.png"
    path.write_bytes(b"old")

    def failing_savefig(self, fname, **kwargs):
        with open(fname, "wb") as half_written:
            half_written.write(b"half an ima")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", failing_savefig)
    with pytest.raises(OSError, match="disk full"):
        plots.loss_curves(HISTORY, path)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["loss.png"]


def test_written_file_is_readable_by_others(tmp_path, rng):
    path = plots.image_grid(rng.random((4, 784)), tmp_path / "grid.png")
    assert os.stat(path).st_mode & 0o044 == 0o044


# ---------------------------------------------------------------- what each picture is made of


def test_manifold_decodes_a_grid_of_normal_quantiles_in_the_chosen_dims(tmp_path):
    seen = []

    def recording_decode(z):
        seen.append(z)
        return fake_decode(z)

    plots.manifold(recording_decode, tmp_path / "m.png", n=3, latent_dim=LATENT, dims=(1, 3), quantiles=(0.1, 0.9))
    (z,) = seen
    assert z.dtype == np.float32 and z.shape == (9, LATENT)
    np.testing.assert_array_equal(z[:, [0, 2]], 0.0)
    q = 1.2815516  # norm.ppf(0.9)
    np.testing.assert_allclose(sorted(set(np.round(z[:, 1], 5))), [-q, 0.0, q], atol=1e-5)
    np.testing.assert_allclose(z[0, [1, 3]], [-q, q], atol=1e-5)  # top-left: smallest z[dims[0]], largest z[dims[1]]


def test_manifold_ticks_show_the_z_values(tmp_path, drawn):
    plots.manifold(fake_decode, tmp_path / "m.png", n=3, latent_dim=LATENT, quantiles=(0.1, 0.9))
    ax = drawn[0].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["-1.28", "0.00", "1.28"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1.28", "0.00", "-1.28"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("z[0]", "z[1]")


def test_manifold_rejects_dims_outside_the_latent_space(tmp_path):
    with pytest.raises(ValueError, match="dims"):
        plots.manifold(fake_decode, tmp_path / "m.png", latent_dim=2, dims=(0, 2))


def test_latent_scatter_of_5d_means_shows_pca_with_explained_variance(tmp_path, rng, drawn):
    plots.latent_scatter(rng.normal(size=(40, 5)), rng.integers(0, 3, 40), tmp_path / "s.png")
    ax = drawn[0].axes[0]
    assert ax.get_xlabel().startswith("PC 1 (") and ax.get_ylabel().startswith("PC 2 (")
    assert "5-D" in ax.get_title() and "% of the variance" in ax.get_title()


def test_latent_scatter_of_2d_means_plots_them_directly_with_class_names(tmp_path, rng, drawn):
    means, labels = rng.normal(size=(40, 2)), np.arange(40) % 4
    plots.latent_scatter(means, labels, tmp_path / "s.png", class_names=[f"digit {d}" for d in range(10)])
    ax = drawn[0].axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("z[0]", "z[1]")
    np.testing.assert_allclose(ax.collections[0].get_offsets(), means[labels == 0])
    assert [t.get_text() for t in drawn[0].legends[0].get_texts()] == ["digit 0", "digit 1", "digit 2", "digit 3"]


def test_latent_scatter_without_labels_draws_one_uncoloured_cloud(tmp_path, rng, drawn):
    plots.latent_scatter(rng.normal(size=(40, 3)), None, tmp_path / "s.png")
    assert len(drawn[0].axes[0].collections) == 1 and drawn[0].legends == []


def test_latent_scatter_3d_of_3d_means_plots_them_directly(tmp_path, rng, drawn):
    plots.latent_scatter_3d(rng.normal(size=(40, 3)), rng.integers(0, 3, 40), tmp_path / "s.png")
    ax = drawn[0].axes[0]
    assert ax.name == "3d" and ax.get_zlabel() == "z[2]"


def test_latent_scatter_3d_needs_three_latent_dimensions(tmp_path, rng):
    with pytest.raises(ValueError, match="at least 3"):
        plots.latent_scatter_3d(rng.normal(size=(40, 2)), None, tmp_path / "s.png")


def test_latent_histograms_draw_one_panel_per_latent_dimension_up_to_n(tmp_path, rng, drawn):
    plots.latent_histograms(rng.normal(size=(100, 3)), tmp_path / "h.png", n=10)
    visible = [ax for ax in drawn[0].axes if ax.get_visible()]
    assert [ax.get_title().split(":")[0] for ax in visible] == ["z[0]", "z[1]", "z[2]"]
    assert all(len(ax.lines) == 1 for ax in visible)  # the N(0, 1) curve on each


def test_loss_curves_draw_train_and_test_in_three_panels(tmp_path, drawn):
    plots.loss_curves(HISTORY, tmp_path / "loss.png")
    panels = drawn[0].axes
    assert [ax.get_title().split()[0] for ax in panels] == ["Total", "Reconstruction", "KL"]
    for ax, key in zip(panels, ["loss", "recon", "kl"], strict=True):
        train, test = ax.lines
        np.testing.assert_allclose(train.get_ydata(), [h["train"][key] for h in HISTORY])
        np.testing.assert_allclose(test.get_ydata(), [h["test"][key] for h in HISTORY])


def test_loss_curves_skip_epochs_without_a_test_run(tmp_path, drawn):
    history = [h if h["epoch"] % 2 else {**h, "test": None} for h in HISTORY]
    plots.loss_curves(history, tmp_path / "loss.png")
    train, test = drawn[0].axes[0].lines
    assert list(train.get_xdata()) == [1, 2, 3, 4, 5] and list(test.get_xdata()) == [1, 3, 5]


def test_loss_curves_of_one_epoch_without_test_split_still_plot(tmp_path):
    train_only = [{"epoch": 1, "train": HISTORY[0]["train"]}]
    assert png_shape(plots.loss_curves(train_only, tmp_path / "loss.png")) == (400, 1300)


def test_loss_curves_reject_an_empty_history(tmp_path):
    with pytest.raises(ValueError, match="at least one epoch"):
        plots.loss_curves([], tmp_path / "loss.png")


def test_interpolation_decodes_the_straight_line_between_the_ends(tmp_path):
    seen = []

    def recording_decode(z):
        seen.append(z)
        return fake_decode(z)

    plots.interpolation(recording_decode, np.zeros(LATENT), np.full(LATENT, 3.0), tmp_path / "i.png", steps=4)
    np.testing.assert_allclose(seen[0][:, 0], [0.0, 1.0, 2.0, 3.0])


def test_score_extremes_show_lowest_then_highest_scores_as_titles(tmp_path, drawn):
    images = np.repeat(np.arange(6.0)[:, None], 784, axis=1) / 10  # image i has every pixel i / 10
    plots.score_extremes(images, [3.0, 0.5, 9.0, 1.0, 7.0, 2.0], tmp_path / "s.png", n=2)
    axes = drawn[0].axes
    assert [ax.get_title() for ax in axes] == ["0.5", "1", "9", "7"]
    np.testing.assert_allclose([ax.images[0].get_array()[0, 0] for ax in axes], [0.1, 0.3, 0.2, 0.4])


def test_gif_frames_last_one_over_fps_seconds_and_loop(tmp_path, rng):
    path = plots.progress_gif([rng.random((28, 28)) for _ in range(3)], tmp_path / "p.gif", fps=4)
    with Image.open(path) as gif:
        assert gif.info["duration"] == 250 and gif.info["loop"] == 0


def test_importing_plots_leaves_the_users_matplotlib_backend_alone():
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('svg'); import minivae.figures.plots; "
            "print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "svg"


def test_latent_scatter_title_names_what_the_points_are(drawn, rng, tmp_path):
    plots.latent_scatter(rng.normal(size=(40, 2)), None, tmp_path / "s.png", what="Autoencoder codes")
    assert drawn[-1].axes[0].get_title().startswith("Autoencoder codes")


def test_loss_curves_tick_whole_epochs_only(tmp_path, drawn):
    plots.loss_curves(HISTORY[:3], tmp_path / "loss.png")
    for ax in drawn[0].axes:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
