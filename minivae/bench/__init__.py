"""The speed of minivae: timing.py (a training step against its matrix products and against PyTorch, epochs, each
layer), kernel_split.py (on a GPU, a step split into kernel launches and products) and torch_twin.py (the same
model in PyTorch, for the comparison only). `python -m minivae.bench` runs it.
explorer_fps.py measures how fast the explorer page redraws in a headless browser (browser.py starts it:
`python -m minivae.bench.explorer_fps`).

Uses: core/, models/, run/, figures/ (the explorer page), and the commands' cli.py and explore.py (to time what a
user runs). The only place outside the tests where PyTorch may be imported (torch_twin.py, timing.py for its
threads and CUDA, kernel_split.py for its profiler), and selenium (browser.py).
"""
