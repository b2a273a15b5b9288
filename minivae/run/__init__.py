"""A training run: from a config and a dataset to checkpoints and numbers, and back again after any stop.

Read presets.py (every hyperparameter of a run as one config) and kinds.py (the kinds of model, in one table),
then data.py (the IDX files, binarization, batches), seeds.py (where every random number comes from), feeds.py
(what a step is fed), training.py (the loop) and checkpoint.py (what a resume needs). start.py begins a run;
metrics.py scores a model; progress.py keeps the frames of the progress GIFs. For the tool around them:
download.py (finding or fetching the data), files.py (atomic writes), memory.py (sizes that do not fit), stops.py
(Ctrl-C, SIGTERM and SIGHUP, and the blocks they must not cut).

Uses: core/ and models/. Nothing here draws, times or parses a command line.
"""
