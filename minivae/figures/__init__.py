"""Pictures of what a model learned: pca.py (principal components, the plane a latent space of more than two
dimensions is shown on), plots.py (every figure, from NumPy arrays to an image file), class_rows.py
(rows of images, one per class), run_figures.py (the set a training run writes), explorer.py (the explorer page: one
HTML file to move through the latent space, made of explorer_page.html and three scripts: explorer_decoder.js,
explorer_plane.js, explorer_page.js).

Uses: core/, models/ and run/. Nothing below imports this.
"""
