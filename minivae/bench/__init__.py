"""The speed of minivae: timing.py (a training step against its matrix products and against PyTorch, epochs, each
layer) and torch_twin.py (the same model in PyTorch, for the comparison only). `python -m minivae.bench` runs it.

Uses: core/, models/ and run/. The only place outside the tests where PyTorch may be imported (torch_twin.py).
"""
