"""figures/run_figures.py: which files a run resumed in its folder may draw over (drawn_by_minivae)."""

import os

import numpy as np
from PIL import Image, PngImagePlugin

from minivae.figures import plots, run_figures


def test_a_figure_plots_drew_is_one_a_run_may_draw_again(tmp_path):
    path = plots.image_grid(np.random.default_rng(0).random((4, 784)), tmp_path / "samples.png", ncols=2)
    assert run_figures.drawn_by_minivae(path)


def test_a_png_of_someone_elses_is_not_even_if_its_text_says_matplotlib(tmp_path):
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "made without Matplotlib, by hand")
    Image.new("L", (28, 28)).save(tmp_path / "samples.png", pnginfo=text)
    assert not run_figures.drawn_by_minivae(tmp_path / "samples.png")


def test_a_link_a_folder_and_a_pipe_are_not(tmp_path):
    drawn = plots.image_grid(np.zeros((1, 784)), tmp_path / "drawn.png", ncols=1)
    (tmp_path / "link.png").symlink_to(drawn)
    (tmp_path / "folder.png").mkdir()
    os.mkfifo(tmp_path / "pipe.png")  # never opened: reading a pipe would wait for a writer
    assert not any(run_figures.drawn_by_minivae(tmp_path / name) for name in ("link.png", "folder.png", "pipe.png"))
