"""Pictures of what a model learned: plots.py (every figure, from NumPy arrays to an image file), class_rows.py
(rows of images, one per class), run_figures.py (the set a training run writes).

Uses: core/, models/ and run/. Nothing below imports this.
"""
