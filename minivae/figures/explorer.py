"""The explorer: one self-contained HTML page to move through a trained model's latent space.

    write_page(path, model, config, x_test, y_test, history, epoch)      # what `python -m minivae.explore` does

The page needs no server and makes no request: everything is inlined into the one file, which opens from disk in
any current browser, offline. It holds

  * the page itself: explorer_page.html (markup and style), explorer_decoder.js (the decoder, interpreted layer by
    layer), explorer_plane.js (the latent plane) and explorer_page.js (the pictures, the sliders, the classes, the
    state and window.minivae), all beside this module;
  * the decoder as a list of layers (`describe_decoder`): each Dense, activation, Reshape, Flatten, Conv2D and
    ConvTranspose2D with its sizes, and its weights as base64 float32 (little-endian), so that the page decodes in
    float32 with minivae's own weights; then what turns the decoder's output into pixel means (`OUTPUTS`), as
    VAE.decode does: sigmoid of the logits ('bce'), the continuous Bernoulli's mean ('cb'), or the output of the
    decoder's own Sigmoid ('bce-prob', 'mse');
  * the encoder means of the first `points` test images (float32), their labels, and the images themselves in 16
    grey levels, two pixels to a byte, deflated (the page inflates them with the browser's DecompressionStream), a
    quarter of their size as 8-bit bytes or less (docs/explorer.md has the page's size, part by part);
  * the two principal directions of those means, the latent units that get a slider (at most MAX_SLIDERS: those
    whose means vary most) and each slider's range;
  * the model summary: preset, kind, sizes, dataset, epochs, and the test ELBO of the last finished epoch (from the
    run's history, the same number the run printed).

docs/explorer.md says what the page shows and how to drive it (window.minivae).

Refusals are plain errors: a layer the page cannot draw or numbers that are not finite (ValueError), a target that
is a folder or a file minivae did not write, or that cannot be written (run/start.FolderError).
"""

import base64
import json
import math
import os
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

from minivae.core import backend
from minivae.core.conv import Conv2D, ConvTranspose2D, Flatten, Reshape
from minivae.core.layers import Dense, ReLU, Sequential, Sigmoid, Tanh
from minivae.core.padding import conv_geometry, transposed_geometry
from minivae.figures.pca import principal_directions
from minivae.figures.run_figures import class_names, encoder_means
from minivae.run import files, metrics
from minivae.run.kinds import kind_of
from minivae.run.start import FolderError

FILENAME = "explorer.html"  # the name the training command gives the page in a run folder
POINTS = 2000  # test images encoded and shown as dots: enough to see the classes' shapes
MAX_SLIDERS = 64
GREY_LEVELS = 15  # test images are stored as round(x * 15): 16 levels, 4 bits a pixel
GENERATOR = "minivae explorer"  # in the page's <meta name="generator">: how a page this module wrote is recognised
FORMAT = 1  # of the page's data; explorer_page.js refuses another
# what the page applies to the decoder's output to draw pixel means, by recon: VAE.decode's rule
OUTPUTS = {"bce": "sigmoid", "cb": "cb-mean", "bce-prob": "identity", "mse": "identity"}
PAGE_FILES = ("explorer_page.html", "explorer_decoder.js", "explorer_plane.js", "explorer_page.js")
DATA_MARK, SCRIPT_MARK = "/*MINIVAE-DATA*/", "/*MINIVAE-SCRIPT*/"  # where explorer_page.html takes the two


# ---------------------------------------------------------------- the decoder as data


def _floats(array, what):
    """A float array as base64 of its little-endian float32 bytes, after checking that every value is finite."""
    values = np.asarray(backend.to_numpy(array), dtype="<f4")
    if not np.isfinite(values).all():
        raise ValueError(f"{what} holds NaN or infinity: the page would draw nothing")
    return base64.b64encode(np.ascontiguousarray(values).tobytes()).decode("ascii")


def _conv_entry(layer, shape, name, transposed):
    """A Conv2D's or ConvTranspose2D's entry, for an input of shape (C, H, W): its output shape, and the padding
    that conv_reference.py's definitions read (top and left: padding.py works them out)."""
    if len(shape) != 3 or shape[0] != layer.in_channels:
        raise ValueError(f"{name}: {type(layer).__name__} with {layer.in_channels} input channels cannot take an "
                         f"input of shape {shape}")
    if transposed:
        (out_h, out_w), pads = transposed_geometry(layer.padding, layer.output_padding, shape[1:],
                                                   layer.kernel_size, layer.stride)
    else:
        (out_h, out_w), pads = conv_geometry(layer.padding, shape[1:], layer.kernel_size, layer.stride)
    entry = {"type": "conv-transpose2d" if transposed else "conv2d", "inShape": list(shape),
             "outShape": [layer.out_channels, out_h, out_w], "kernel": list(layer.kernel_size),
             "stride": list(layer.stride), "pad": [pads[0][0], pads[1][0]],
             "W": _floats(layer.params["W"], f"{name}.W"), "b": _floats(layer.params["b"], f"{name}.b")}
    return entry, (layer.out_channels, out_h, out_w)


def describe_decoder(decoder, input_size):
    """The decoder as the page's script reads it: (layers, output shape) for an input of input_size values (the
    latent, plus the classes of a conditional VAE).

    Each entry is a dict with a "type" and what that layer needs: "dense" (inSize, outSize, W (in, out), b),
    "relu", "sigmoid", "tanh", "reshape" (shape), "flatten", "conv2d" (inShape (C, H, W), outShape, kernel,
    stride, pad [top, left], W (C_out, C_in, kh, kw), b) and "conv-transpose2d" (the same, W (C_in, C_out, kh,
    kw)). Arrays are base64 float32 in C order. The fast twins (conv_fast.py, layers_fast.py) are subclasses of
    the plain layers, with their parameters and layout, so they are described as those. Raises ValueError for a
    layer the page cannot draw, or weights that are not finite."""
    layers = decoder.layers if isinstance(decoder, Sequential) else [decoder]
    shape, entries = (input_size,), []
    for i, layer in enumerate(layers):
        name = f"decoder.{i}"
        if isinstance(layer, Dense):
            if shape != (layer.in_dim,):
                raise ValueError(f"{name}: Dense({layer.in_dim}, {layer.out_dim}) cannot take an input of shape "
                                 f"{shape}")
            entries.append({"type": "dense", "inSize": layer.in_dim, "outSize": layer.out_dim,
                            "W": _floats(layer.params["W"], f"{name}.W"), "b": _floats(layer.params["b"], f"{name}.b")})
            shape = (layer.out_dim,)
        elif isinstance(layer, (ReLU, Sigmoid, Tanh)):
            entries.append({"type": next(kind for kind, cls in (("relu", ReLU), ("sigmoid", Sigmoid),
                                                                ("tanh", Tanh)) if isinstance(layer, cls))})
        elif isinstance(layer, Reshape):
            if math.prod(layer.shape) != math.prod(shape):
                raise ValueError(f"{name}: {layer!r} cannot take an input of shape {shape}")
            entries.append({"type": "reshape", "shape": list(layer.shape)})
            shape = layer.shape
        elif isinstance(layer, Flatten):
            entries.append({"type": "flatten"})
            shape = (math.prod(shape),)
        elif isinstance(layer, (Conv2D, ConvTranspose2D)):
            entry, shape = _conv_entry(layer, shape, name, isinstance(layer, ConvTranspose2D))
            entries.append(entry)
        else:
            raise ValueError(f"{name}: the explorer cannot draw a decoder with a {type(layer).__name__} layer "
                             f"(it knows Dense, ReLU, Sigmoid, Tanh, Reshape, Flatten, Conv2D, ConvTranspose2D)")
    return entries, tuple(shape)


def image_shape(pixels):
    """(H, W) of a square image of `pixels` values: (28, 28) for 784. ValueError for a count that is no square."""
    side = math.isqrt(pixels)
    if side * side != pixels:
        raise ValueError(f"the decoder draws {pixels} values, which is no square image")
    return side, side


# ---------------------------------------------------------------- the test images and the plane


def pack_images(x):
    """Images (N, D) in [0, 1], D even, as base64 of their deflated 4-bit grey levels: level round(x * 15),
    pixel 2k in the high half of byte k and pixel 2k+1 in the low half."""
    levels = np.clip(np.rint(np.asarray(x, dtype=np.float64) * GREY_LEVELS), 0, GREY_LEVELS).astype(np.uint8)
    packed = (levels[:, 0::2] << 4) | levels[:, 1::2]
    return base64.b64encode(zlib.compress(packed.tobytes(), 9)).decode("ascii")


def unpack_images(text, n, pixels):
    """pack_images undone: (n, pixels) float32 in [0, 1], on the 16 grey levels."""
    packed = np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=np.uint8).reshape(n, pixels // 2)
    levels = np.empty((n, pixels), dtype=np.uint8)
    levels[:, 0::2], levels[:, 1::2] = packed >> 4, packed & 15
    return levels.astype(np.float32) / np.float32(GREY_LEVELS)


def slider_units(means, most=MAX_SLIDERS):
    """The latent units that get a slider: all of them up to `most`, else the `most` whose encoder means vary
    most, in the order of their index. means: (N, L). Returns a list of indices."""
    latent = means.shape[1]
    if latent <= most:
        return list(range(latent))
    return sorted(np.argsort(-means.var(axis=0), kind="stable")[:most].tolist())


def slider_ranges(means):
    """Each latent unit's slider range, as its bound r (the slider runs from -r to r): 4, the prior's +-4 sigma,
    or wider where the encoder means reach further (up to the next half). means (N, L) -> (L,) list."""
    reach = np.abs(means).max(axis=0) if len(means) else np.zeros(means.shape[1])
    return [float(max(4.0, math.ceil(2 * r * 1.05) / 2)) for r in reach]


# ---------------------------------------------------------------- the summary


def summary(config, history, epoch, step, pixels):
    """What the page says about the model, as (label, text) rows: the model, the data, how long it trained, and
    the test ELBO (nats per image) of the last finished epoch, from the run's history."""
    kind = kind_of(config)
    sizes = f"{pixels}-{'-'.join(map(str, config['hidden']))}-{config['latent']}" if kind.mlp else \
        f"latent {config['latent']}"
    model = f"{config['preset']} preset: {kind.description}, {sizes}, {config['recon']} decoder"
    if kind.mlp:
        model += f", {config['activation']}"
    if config["posterior"] != "logvar":
        model += f", {config['posterior']} posterior"
    if config.get("beta", 1.0) != 1.0:
        model += f", beta {config['beta']:g}"
    trained = f"{epoch} epoch{'s' * (epoch != 1)}" + (f" and {step} steps" if step else "")
    rows = [["model", model], ["data", f"{config['dataset']}, binarized {config['binarize']}"
                               if config["binarize"] != "none" else config["dataset"]], ["trained", trained]]
    if not history:
        return rows + [["test ELBO", "not measured yet (no epoch finished)"]]
    last = history[-1]  # (checkpoint.load checked that it is an epoch's losses; their names, the page reads here)
    try:
        elbo = metrics.elbo_of(last["test"], kind, config["recon"], pixels)
    except KeyError:  # an edited history: the page still shows the model
        return rows + [["test ELBO", f"not in the checkpoint's history of epoch {last['epoch']}"]]
    bound = "of log p(x|y)" if kind.conditioned and not kind.semi_supervised else "of log p(x)"
    rows.append(["test ELBO", f"{elbo:.2f} nats {bound}, after epoch {last['epoch']}"])
    if kind.semi_supervised and "accuracy" in last["test"]:
        rows.append(["test accuracy", f"{last['test']['accuracy']:.2%} (q(y|x)), after epoch {last['epoch']}"])
    return rows


# ---------------------------------------------------------------- the page


def page_data(model, config, x_test, y_test, history=(), epoch=0, step=0, points=POINTS):
    """Everything the page shows, as a JSON-able dict (the module docstring lists it).

    model: a trained model of `config`'s kind (kinds.py: the VAE that decodes is kind.vae_of(model)); x_test (N, D)
    and y_test (N,) on the host: the first `points` become the dots, encoded with their own class where the model
    takes one; history: the run's records; epoch, step: how far it trained. Raises ValueError for a decoder the page
    cannot draw, or numbers that are not finite."""
    kind = kind_of(config)
    vae = kind.vae_of(model)
    classes = vae.classes if kind.conditioned else 0
    layers, out_shape = describe_decoder(vae.decoder, vae.latent + classes)
    pixels = math.prod(out_shape)
    x = np.asarray(x_test[:points], dtype=np.float32)
    y = np.asarray(y_test[:points]).astype(np.int64)
    if x.shape[1] != pixels:
        raise ValueError(f"the test images have {x.shape[1]} pixels but the decoder draws {pixels}")
    means = encoder_means(vae, x, y if classes else None).astype(np.float32)
    directions, explained = principal_directions(means, 2) if vae.latent > 2 and len(means) > 1 else \
        (np.eye(2, vae.latent), np.zeros(2))
    names = class_names(config["dataset"]) or [str(c) for c in range(max(classes, int(y.max(initial=0)) + 1))]
    return {
        "format": FORMAT,
        "info": {"latent": vae.latent, "classes": classes, "imageShape": list(image_shape(pixels))},
        "summary": summary(config, history, epoch, step, pixels),
        "title": f"{config['preset']}, latent {vae.latent}, {config['dataset']}",
        "classNames": list(names),
        "decoder": {"inputSize": vae.latent + classes, "layers": layers, "output": OUTPUTS[vae.recon_name]},
        "points": {"count": len(x), "means": _floats(means, "the encoder means"),
                   "labels": base64.b64encode(y.astype(np.uint8).tobytes()).decode("ascii"),
                   "images": pack_images(x), "greyLevels": GREY_LEVELS},
        "principal": {"directions": directions.tolist(), "explained": [float(e) for e in explained]},
        "sliders": {"units": slider_units(means), "ranges": slider_ranges(means)},
    }


def _read(name):
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def render(data):
    """The page's HTML for page_data's dict: the template with the data and the scripts inlined (PAGE_FILES)."""
    page, *scripts = (_read(name) for name in PAGE_FILES)
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")  # "</script>" would end the block
    head, rest = page.split(DATA_MARK)
    middle, tail = rest.split(SCRIPT_MARK)
    return head + payload + middle + "\n".join(scripts) + tail


def written_by_minivae(path):
    """Whether the file at `path` is a page this module wrote (its <meta name="generator"> says so). A link, a
    folder or a pipe is not (and is never opened: a pipe would wait for a writer)."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with open(path, "rb") as f:
            return f'content="{GENERATOR}"'.encode() in f.read(2048)
    except OSError:
        return False


def check_target(path):
    """Raise FolderError (one line) if the page cannot go to `path`: a folder, a folder that does not exist, a
    link (even a broken one) or a file minivae did not write (left as it is). A page written before is replaced."""
    path = Path(path)
    if path.is_dir():
        raise FolderError(f"{path} is a folder; the page needs a file name, such as {path / FILENAME}")
    if not path.parent.is_dir():
        raise FolderError(f"cannot write {path}: the folder {path.parent} does not exist")
    if os.path.lexists(path) and not written_by_minivae(path):
        raise FolderError(f"{path} exists and is not a page minivae wrote, so it is left as it is")


def write_page(path, model, config, x_test, y_test, history=(), epoch=0, step=0, points=POINTS):
    """Write the explorer page of a trained model to `path`, atomically (run/files.py). Returns the Path.

    The arguments after path are page_data's. Raises FolderError when the page cannot go there (check_target, or
    an OSError on writing) and ValueError for a decoder the page cannot draw or numbers that are not finite."""
    path = Path(path)
    check_target(path)
    html = render(page_data(model, config, x_test, y_test, history, epoch, step, points))
    try:
        with files.atomic_file(path) as f:
            f.write(html.encode("utf-8"))
    except OSError as err:
        raise FolderError(f"cannot write {path} ({err.strerror or files.one_line(err)})") from None
    return path
