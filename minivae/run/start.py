"""The start of a run, the same for the training command and the demos: the config completed from the data, the
model and its optimizer built (or restored from a checkpoint), the run's state, and its output folder claimed.

    config, model, optimizer, state = start.begin(config, dataset, ckpt)     # ckpt None for a new run
    created = start.claim_folder(out)
    training.train(model, optimizer, dataset, config, state, out)

Everything that can be checked is checked here, before the first step: a config that cannot train on this data
(ConfigError), a resume on other data than the checkpoint's (CheckpointError), a folder that cannot be written
(FolderError).
"""

from pathlib import Path

from minivae.run import checkpoint, files, presets, training
from minivae.run.feeds import choose_labelled
from minivae.run.kinds import kind_of


class ConfigError(ValueError):
    """A config that cannot train on this data. key and value: the config entry at fault; reason: why."""

    def __init__(self, key, value, reason):
        super().__init__(f"{key} {value}: {reason}")
        self.key, self.value, self.reason = key, value, reason


class FolderError(OSError):
    """The output folder cannot be created or written (the message names it and why)."""


def fill_labelled_weight(config, dataset):
    """The config with M2's labelled_weight filled in where it is None: the paper's N_l / N_u, the labelled
    images' share of the training set against the unlabelled ones' (models/m2.py explains). Other configs, and a
    labelled_weight already set (a number in the config, or a checkpoint's), come back as they are."""
    if not kind_of(config).semi_supervised or config.get("labelled_weight", 1.0) is not None:
        return config
    labelled = config["labels"]
    return config | {"labelled_weight": labelled / (len(dataset.x_train) - labelled)}


def check_labels(config, dataset):
    """M2's labels must be shared equally among the classes and leave images unlabelled (feeds.choose_labelled
    says why not, in a ConfigError)."""
    if kind_of(config).semi_supervised:
        try:
            choose_labelled(dataset.y_train, config["labels"], config["classes"], config["seed"])
        except ValueError as err:
            raise ConfigError("labels", config["labels"], files.one_line(err)) from None


def check_same_data(ckpt, dataset):
    """A checkpoint resumes only on the data it was trained on: CheckpointError (one line) otherwise."""
    saved = ckpt.extra.get("dataset")
    now = training.fingerprint(dataset)
    if saved is not None and saved != now:
        differs = next(key for key in now if saved.get(key) != now[key])
        raise checkpoint.CheckpointError(f"{ckpt.path} was trained on other data ({differs}: {saved.get(differs)} "
                                         f"then, {now[differs]} now); resume it on the same files, or start a new run")


def recorded_data_folder(ckpt):
    """The folder a checkpoint's run read its data from, if the checkpoint says and it is still there; else None
    (then the usual places are searched: download.py)."""
    folder = ckpt.extra.get("data_folder")
    return folder if folder and Path(folder).is_dir() else None


def begin(config, dataset, ckpt=None, threads=None):
    """(config, model, optimizer, state) for a run of `config` on `dataset`: the config with what the data decides
    filled in, the model and optimizer fresh (or as the checkpoint ckpt left them: then `state` continues its
    run), and the RunState that records where the data came from. threads: the --threads count, kept in the
    checkpoint."""
    if len(dataset.x_train) == 0:
        raise ConfigError("validation", config["validation"], "no training images are left; hold out less")
    check_labels(config, dataset)
    config = fill_labelled_weight(config, dataset)
    model = presets.build_model(config)
    optimizer = presets.build_optimizer(config, model)
    state = training.RunState()
    if ckpt is not None:
        check_same_data(ckpt, dataset)
        checkpoint.restore(model, optimizer, ckpt)
        state = training.RunState.from_checkpoint(ckpt)
    state.data_folder, state.dataset_fingerprint = dataset.folder, training.fingerprint(dataset)
    state.threads = threads
    return config, model, optimizer, state


def claim_folder(out):
    """Make the output folder `out` (and its parents) if needed and check, before any training, that files can be
    written there; then clear what a save killed mid-way (SIGKILL) left of minivae's own temporary files.
    Returns True when this call created the folder (so that a run that saves nothing can remove it again).
    Raises FolderError naming the folder."""
    out = Path(out)
    created = not out.exists()
    probe = out / f"{files.TEMP_PREFIX}write-test"  # a name of minivae's own (files.py), gone at once
    try:
        out.mkdir(parents=True, exist_ok=True)
        with files.atomic_file(probe):
            pass
        probe.unlink()
    except OSError as err:
        if created:
            remove_if_empty(out)
        raise FolderError(f"cannot write to the output folder {out} ({files.one_line(err)})") from None
    files.remove_stale(out)
    return created


def remove_if_empty(folder):
    """Remove a folder that holds nothing (a run that created it and saved nothing); else leave it."""
    try:
        Path(folder).rmdir()
    except OSError:
        pass
