"""Tests of minivae.figures.explorer, the explorer page's exporter: what goes into the page, and what it refuses.

The decoder's description is checked by running it: `run_description` below reads it as the page's script does
(explorer_decoder.js), in NumPy and float64, with the convolutions written from their definitions (not with
minivae's layers), and must decode what minivae's VAE.decode does, for every kind of model, activation, posterior
and output, and for convolutions of any padding (hypothesis). tests/figures/test_explorer_browser.py holds the
page's own JavaScript to the same numbers in a real browser.
"""

import base64
import json
import re

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from minivae.core import backend, continuous_bernoulli
from minivae.core.conv import Conv2D, ConvTranspose2D, Flatten, Reshape
from minivae.core.layers import Dense, Layer, ReLU, Sequential
from minivae.figures import explorer
from minivae.figures.pca import principal_directions
from minivae.figures.run_figures import encoder_means
from minivae.run import data, metrics, presets
from minivae.run.kinds import KINDS, kind_of
from minivae.run.start import FolderError

# (preset, overrides): small models of every kind, activation, posterior and output the page must draw
MODELS = {
    "mlp-bce-relu": ("default", dict(hidden=[16], latent=3)),
    "mlp-bce-sigmoid": ("default", dict(hidden=[16], latent=3, activation="sigmoid")),
    "mlp-cb-tanh": ("default", dict(hidden=[16], latent=3, activation="tanh", recon="cb")),
    "mlp-sigma-mse": ("keras-sigma-mse", dict(hidden=[16], decoder_hidden=[12], latent=4)),
    "mlp-bce-prob": ("keras-2d-rmsprop", dict(hidden=[16])),
    "cvae": ("cvae", dict(hidden=[16], latent=2)),
    "m2": ("m2", dict(hidden=[16], classifier_hidden=[8], latent=2, labelled_weight=0.1)),
    "conv": ("keras-conv-2d", dict()),
}


def build(name, seed=0):
    """The model MODELS[name] names, with fresh weights, and its config."""
    preset, overrides = MODELS[name]
    config = presets.config_for(preset, seed=seed, **overrides)
    return presets.build_model(config), config


def floats(text):
    return np.frombuffer(base64.b64decode(text), dtype="<f4")


# ---- the page's decoder, in NumPy --------------------------------------------------------------------------


def conv2d(x, W, b, stride, pad, out_shape):
    """out[n, o, u, v] = b[o] + sum_{c,i,j} W[o, c, i, j] x[n, c, u*sh + i - top, v*sw + j - left] (0 outside)."""
    (sh, sw), (top, left), (_, out_h, out_w) = stride, pad, out_shape
    batch, _, height, width = x.shape
    kh, kw = W.shape[2:]
    bottom = max(0, (out_h - 1) * sh + kh - top - height)
    right = max(0, (out_w - 1) * sw + kw - left - width)
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    out = np.zeros((batch, W.shape[0], out_h, out_w)) + b[None, :, None, None]
    for i in range(kh):
        for j in range(kw):
            window = padded[:, :, i:i + (out_h - 1) * sh + 1:sh, j:j + (out_w - 1) * sw + 1:sw]
            out += np.einsum("nchw,oc->nohw", window, W[:, :, i, j])
    return out


def conv_transpose2d(x, W, b, stride, pad, out_shape):
    """Every input pixel adds x[n, c, u, v] W[c, o, i, j] at (u*sh + i - top, v*sw + j - left), inside the output."""
    (sh, sw), (top, left), (_, out_h, out_w) = stride, pad, out_shape
    batch, _, height, width = x.shape
    kh, kw = W.shape[2:]
    rows, cols = max((height - 1) * sh + kh, top + out_h), max((width - 1) * sw + kw, left + out_w)
    out = np.zeros((batch, W.shape[1], rows, cols))
    for i in range(kh):
        for j in range(kw):
            out[:, :, i:i + (height - 1) * sh + 1:sh, j:j + (width - 1) * sw + 1:sw] += \
                np.einsum("nchw,co->nohw", x, W[:, :, i, j])
    return out[:, :, top:top + out_h, left:left + out_w] + b[None, :, None, None]


def run_description(description, inputs):
    """The decoder the page gets (explorer.describe_decoder's layers and the output) on inputs (B, inputSize), in
    float64: (B, pixels)."""
    x = np.asarray(inputs, dtype=np.float64)
    assert x.shape[1] == description["inputSize"]
    for entry in description["layers"]:
        kind = entry["type"]
        if kind == "dense":
            x = x @ floats(entry["W"]).reshape(entry["inSize"], entry["outSize"]) + floats(entry["b"])
        elif kind == "relu":
            x = np.maximum(x, 0)
        elif kind == "sigmoid":
            x = 1 / (1 + np.exp(-x))
        elif kind == "tanh":
            x = np.tanh(x)
        elif kind in ("reshape", "flatten"):
            x = x.reshape(len(x), *entry.get("shape", [-1]))
        else:
            channels = entry["inShape"][0], entry["outShape"][0]
            weights = floats(entry["W"]).reshape(*(channels if kind == "conv-transpose2d" else channels[::-1]),
                                                 *entry["kernel"])
            assert list(x.shape[1:]) == entry["inShape"]
            conv = conv_transpose2d if kind == "conv-transpose2d" else conv2d
            x = conv(x, weights, floats(entry["b"]), entry["stride"], entry["pad"], entry["outShape"])
            assert list(x.shape[1:]) == entry["outShape"]
    x = x.reshape(len(x), -1)
    if description["output"] == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if description["output"] == "cb-mean":
        return backend.to_numpy(continuous_bernoulli.mean(backend.to_device(x)))
    assert description["output"] == "identity"
    return x


def decoder_inputs(latent, classes, n=20, seed=0):
    """n random z (2 sigma wide: the page's plane) and labels, and the decoder's input [z, onehot(y)]."""
    rng = np.random.default_rng(seed)
    z = (2 * rng.standard_normal((n, latent))).astype(np.float32)
    y = rng.integers(0, classes, n) if classes else None
    onehot = np.eye(classes, dtype=np.float32)[y] if classes else np.zeros((n, 0), np.float32)
    return z, y, np.concatenate([z, onehot], axis=1)


# ---- the decoder's description -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_described_decoder_decodes_what_the_model_decodes(name):
    model, config = build(name)
    kind = kind_of(config)
    vae = kind.vae_of(model)
    classes = vae.classes if kind.conditioned else 0
    layers, _ = explorer.describe_decoder(vae.decoder, vae.latent + classes)
    description = {"inputSize": vae.latent + classes, "layers": layers, "output": explorer.OUTPUTS[vae.recon_name]}
    z, y, inputs = decoder_inputs(vae.latent, classes)
    expected = backend.to_numpy(vae.decode(backend.to_device(z), y))
    np.testing.assert_allclose(run_description(description, inputs), expected, atol=1e-5, rtol=0)


def test_an_mlp_decoder_is_described_layer_by_layer_with_its_weights():
    model, _ = build("mlp-bce-relu")
    layers, out_shape = explorer.describe_decoder(model.decoder, 3)
    assert [entry["type"] for entry in layers] == ["dense", "relu", "dense"]  # logits: no sigmoid for 'bce'
    assert (layers[0]["inSize"], layers[0]["outSize"], layers[2]["outSize"], out_shape) == (3, 16, 784, (784,))
    W = backend.to_numpy(model.decoder.layers[2].params["W"])
    assert np.array_equal(floats(layers[2]["W"]).reshape(W.shape), W)  # float32, bit for bit


def test_the_convnet_decoder_is_described_with_its_shapes_and_padding():
    model, _ = build("conv")
    layers, out_shape = explorer.describe_decoder(model.decoder, 2)
    assert [entry["type"] for entry in layers] == ["dense", "relu", "reshape", "conv-transpose2d", "relu", "conv2d",
                                                   "sigmoid", "flatten"]
    transposed, conv = layers[3], layers[5]
    assert (transposed["inShape"], transposed["outShape"], transposed["pad"]) == ([64, 14, 14], [32, 28, 28], [0, 0])
    assert (conv["inShape"], conv["outShape"], conv["pad"]) == ([32, 28, 28], [1, 28, 28], [1, 1])
    assert out_shape == (784,)


@st.composite
def conv_decoders(draw):
    """A decoder Dense -> Reshape -> ConvTranspose2D -> Conv2D -> Flatten with random kernels, strides and
    padding of either kind, and its input size; the sizes are kept small."""
    channels = draw(st.lists(st.integers(1, 3), min_size=3, max_size=3))
    height, width = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    kernel = st.tuples(st.integers(1, 4), st.integers(1, 4))
    stride = st.tuples(st.integers(1, 3), st.integers(1, 3))
    padding = st.one_of(st.just("same"), st.just("valid"), st.tuples(st.integers(0, 2), st.integers(0, 2)))
    up_stride, up_padding = draw(stride), draw(padding)
    output_padding = (0, 0) if up_padding == "same" else \
        (draw(st.integers(0, up_stride[0] - 1)), draw(st.integers(0, up_stride[1] - 1)))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    try:
        decoder = Sequential(
            Dense(2, channels[0] * height * width, init="lecun", rng=rng), Reshape((channels[0], height, width)),
            ConvTranspose2D(channels[0], channels[1], draw(kernel), up_stride, up_padding, output_padding, rng=rng),
            Conv2D(channels[1], channels[2], draw(kernel), draw(stride), draw(padding), rng=rng), Flatten())
        decoder.forward(backend.to_device(np.zeros((1, 2), np.float32)))
    except ValueError:  # a padding that leaves no output
        assume(False)
    decoder.layers[2].params["b"][...] = backend.to_device(rng.standard_normal(channels[1]))  # biases show too
    return decoder


@settings(max_examples=60, deadline=None)
@given(conv_decoders())
def test_convolutions_of_any_padding_are_described_so_that_they_compute_the_same(decoder):
    layers, out_shape = explorer.describe_decoder(decoder, 2)
    z = np.random.default_rng(0).standard_normal((3, 2)).astype(np.float32)
    expected = backend.to_numpy(decoder.forward(backend.to_device(z)))
    description = {"inputSize": 2, "layers": layers, "output": "identity"}
    assert out_shape == expected.shape[1:]
    np.testing.assert_allclose(run_description(description, z), expected, atol=1e-5, rtol=1e-5)


def test_a_layer_the_page_cannot_draw_is_refused_by_name():
    class Softplus(Layer):
        pass

    with pytest.raises(ValueError, match="decoder.1: the explorer cannot draw a decoder with a Softplus layer"):
        explorer.describe_decoder(Sequential(Dense(2, 4), Softplus()), 2)


def test_a_decoder_whose_sizes_do_not_chain_is_refused():
    with pytest.raises(ValueError, match=r"decoder.1: Dense\(5, 3\) cannot take an input of shape \(4,\)"):
        explorer.describe_decoder(Sequential(Dense(2, 4), Dense(5, 3)), 2)


def test_weights_that_are_not_finite_are_refused_naming_the_parameter():
    decoder = Sequential(Dense(2, 4), ReLU(), Dense(4, 784))
    decoder.layers[2].params["b"][3] = np.inf
    with pytest.raises(ValueError, match=r"decoder.2.b holds NaN or infinity"):
        explorer.describe_decoder(decoder, 2)


# ---- the test images, the sliders, the summary --------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 5), st.integers(0, 2**31))
def test_test_images_come_back_on_16_grey_levels(n, seed):
    x = np.random.default_rng(seed).random((n, 784), dtype=np.float32)
    x[0, :4] = (0, 1, 0.5, 1 / 30)  # the ends, and rounding at a half level
    back = explorer.unpack_images(explorer.pack_images(x), n, 784)
    assert np.abs(back - x).max() <= 1 / 30 + 1e-6
    assert np.array_equal(back * 15, np.rint(back * 15))
    assert back[0, 0] == 0 and back[0, 1] == 1


def test_binary_test_images_come_back_exactly():
    x = (np.random.default_rng(0).random((4, 784)) > 0.5).astype(np.float32)
    assert np.array_equal(explorer.unpack_images(explorer.pack_images(x), 4, 784), x)


def test_every_latent_unit_gets_a_slider_up_to_64():
    means = np.random.default_rng(0).standard_normal((50, 64))
    assert explorer.slider_units(means) == list(range(64))


def test_past_64_units_the_sliders_go_to_the_units_whose_means_vary_most():
    rng = np.random.default_rng(0)
    scale = rng.permutation(np.linspace(0.1, 3, 100))
    noise = rng.standard_normal((400, 100))
    means = (noise - noise.mean(axis=0)) / noise.std(axis=0) * scale  # unit k's variance: scale[k]^2, exactly
    units = explorer.slider_units(means)
    assert units == sorted(units) and len(units) == 64
    assert set(units) == set(np.argsort(-scale)[:64].tolist())


def test_slider_ranges_cover_the_prior_and_every_mean():
    means = np.array([[0.5, -7.3, 0.0], [-1.0, 2.0, 3.99]])
    ranges = explorer.slider_ranges(means)
    assert ranges[0] == 4.0 and ranges[2] >= 4.0
    assert 7.3 < ranges[1] <= 8.5


def test_the_summary_names_the_model_data_training_and_test_elbo():
    config = presets.config_for("default", dataset="fashion-mnist")
    history = [{"epoch": 1, "test": {"loss": 300.0, "recon": 280.0, "kl": 20.0}},
               {"epoch": 2, "test": {"loss": 290.0, "recon": 272.5, "kl": 17.5}}]
    rows = dict(explorer.summary(config, history, epoch=2, step=0, pixels=784))
    assert rows["model"] == "default preset: an MLP VAE, 784-400-20, bce decoder, relu"
    assert rows["data"] == "fashion-mnist" and rows["trained"] == "2 epochs"
    assert rows["test ELBO"] == "-290.00 nats of log p(x), after epoch 2"


def test_the_summary_of_squared_error_adds_the_gaussian_constant_as_the_run_does():
    config = presets.config_for("keras-sigma-mse")
    test = {"loss": 30.0, "recon": 20.0, "kl": 10.0}
    rows = dict(explorer.summary(config, [{"epoch": 5, "test": test}], epoch=5, step=0, pixels=784))
    elbo = metrics.elbo_of(test, KINDS["mlp"], "mse", 784)
    assert rows["test ELBO"].startswith(f"{elbo:.2f} nats")
    assert elbo == pytest.approx(-(30.0 + metrics.recon_constant("mse", 784)))
    assert "sigma posterior" in rows["model"]


def test_the_summary_of_m2_gives_its_elbo_of_log_px_and_its_accuracy():
    config = presets.config_for("m2")
    test = {"loss": 1.0, "labelled": 250.0, "classification": 0.5, "unlabelled": 260.0, "accuracy": 0.7}
    rows = dict(explorer.summary(config, [{"epoch": 3, "test": test}], epoch=3, step=12, pixels=784))
    assert rows["test ELBO"] == "-260.00 nats of log p(x), after epoch 3"
    assert rows["test accuracy"].startswith("70.00%") and rows["trained"] == "3 epochs and 12 steps"


def test_the_summary_of_a_run_with_no_finished_epoch_says_so():
    rows = dict(explorer.summary(presets.config_for("cvae"), [], epoch=0, step=3, pixels=784))
    assert rows["test ELBO"] == "not measured yet (no epoch finished)"


def test_the_summary_of_an_edited_history_without_its_losses_still_shows_the_model():
    rows = dict(explorer.summary(presets.config_for("m2"), [{"epoch": 1, "train": {}, "test": {}}], epoch=1, step=0,
                                 pixels=784))
    assert rows["test ELBO"] == "not in the checkpoint's history of epoch 1" and "test accuracy" not in rows
    assert rows["model"].startswith("m2 preset")


# ---- the page's data -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    return data.tiny_dataset(16, 40)


def test_the_page_holds_the_first_test_images_their_labels_and_encoder_means(tiny):
    model, config = build("mlp-bce-relu")
    page = explorer.page_data(model, config, tiny.x_test, tiny.y_test, points=30)
    points = page["points"]
    assert points["count"] == 30
    np.testing.assert_array_equal(floats(points["means"]).reshape(30, 3), encoder_means(model, tiny.x_test[:30]))
    assert np.array_equal(np.frombuffer(base64.b64decode(points["labels"]), np.uint8), tiny.y_test[:30])
    np.testing.assert_allclose(explorer.unpack_images(points["images"], 30, 784), tiny.x_test[:30], atol=1 / 30)
    assert page["info"] == {"latent": 3, "classes": 0, "imageShape": [28, 28]}


def test_a_conditional_models_means_are_encoded_with_each_images_class(tiny):
    model, config = build("m2")
    page = explorer.page_data(model, config, tiny.x_test, tiny.y_test)
    expected = encoder_means(model.cvae, tiny.x_test, tiny.y_test)
    np.testing.assert_array_equal(floats(page["points"]["means"]).reshape(expected.shape), expected)
    assert page["info"]["classes"] == 10 and page["decoder"]["inputSize"] == 12
    assert page["classNames"] == [str(c) for c in range(10)]


def test_past_two_latent_units_the_plane_offers_the_means_principal_directions(tiny):
    model, config = build("mlp-sigma-mse")
    page = explorer.page_data(model, config, tiny.x_test, tiny.y_test)
    directions = np.array(page["principal"]["directions"])
    means = floats(page["points"]["means"]).reshape(-1, 4)
    assert directions.shape == (2, 4)
    np.testing.assert_allclose(directions @ directions.T, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(np.abs(directions), np.abs(principal_directions(means, 2)[0]))


def test_with_two_latent_units_the_plane_is_z_itself(tiny):
    model, config = build("cvae")
    page = explorer.page_data(model, config, tiny.x_test, tiny.y_test)
    assert page["principal"]["directions"] == [[1.0, 0.0], [0.0, 1.0]]


def test_fashion_mnist_pages_name_the_garments(tiny):
    model, config = build("mlp-bce-relu")
    page = explorer.page_data(model, config | {"dataset": "fashion-mnist"}, tiny.x_test, tiny.y_test)
    assert page["classNames"][9] == "Ankle boot"


def test_test_images_of_another_size_than_the_decoders_are_refused(tiny):
    model, config = build("mlp-bce-relu")
    with pytest.raises(ValueError, match="the test images have 100 pixels but the decoder draws 784"):
        explorer.page_data(model, config, tiny.x_test[:, :100], tiny.y_test)


# ---- the page itself ------------------------------------------------------------------------------------------


def test_the_page_is_one_file_that_names_no_other_file_or_host(tiny):
    model, config = build("cvae")
    html = explorer.render(explorer.page_data(model, config, tiny.x_test, tiny.y_test))
    assert not re.search(r"\b(src|href)\s*=|@import|url\(|https?:|//[a-z0-9.-]+\.[a-z]{2,}/", html, flags=re.I)
    assert html.count("<script") == 2 and "/*MINIVAE-" not in html


def test_the_pages_data_cannot_close_its_script_block(tiny):
    model, config = build("mlp-bce-relu")
    page = explorer.page_data(model, config, tiny.x_test, tiny.y_test)
    page["classNames"][0] = "</script><script>alert(1)</script>"
    html = explorer.render(page)
    assert html.count("</script>") == 2
    block = re.search(r'<script id="minivae-data" type="application/json">(.*?)</script>', html, flags=re.S)
    assert json.loads(block.group(1)) == page


def test_the_page_of_the_default_model_takes_at_most_3_mb(tmp_path):
    images = data.tiny_dataset(16, explorer.POINTS)
    model = presets.build_model(presets.config_for("default"))
    path = explorer.write_page(tmp_path / "page.html", model, presets.config_for("default"), images.x_test,
                               images.y_test)
    assert path.stat().st_size <= 3_000_000


# ---- writing it -------------------------------------------------------------------------------------------------


def write(path, tiny, name="mlp-bce-relu"):
    model, config = build(name)
    return explorer.write_page(path, model, config, tiny.x_test, tiny.y_test)


def test_write_page_writes_the_page_and_nothing_else(tmp_path, tiny):
    path = write(tmp_path / "explorer.html", tiny)
    assert path == tmp_path / "explorer.html" and explorer.written_by_minivae(path)
    assert [p.name for p in tmp_path.iterdir()] == ["explorer.html"]


def test_write_page_replaces_a_page_it_wrote(tmp_path, tiny):
    path = write(tmp_path / "explorer.html", tiny)
    before = path.read_text()
    write(path, tiny, "cvae")
    assert path.read_text() != before and explorer.written_by_minivae(path)


def test_write_page_leaves_a_file_minivae_did_not_write(tmp_path, tiny):
    path = tmp_path / "notes.html"
    path.write_text("<p>mine</p>")
    with pytest.raises(FolderError, match="exists and is not a page minivae wrote, so it is left as it is"):
        write(path, tiny)
    assert path.read_text() == "<p>mine</p>"


@pytest.mark.parametrize("target, message", [(".", "is a folder; the page needs a file name"),
                                             ("missing/page.html", "the folder .* does not exist")])
def test_write_page_refuses_a_target_that_is_no_file_name(tmp_path, tiny, target, message):
    with pytest.raises(FolderError, match=message):
        write(tmp_path / target, tiny)
    assert list(tmp_path.iterdir()) == []


def test_a_model_with_weights_that_are_not_finite_writes_no_page(tmp_path, tiny):
    model, config = build("mlp-bce-relu")
    model.params["decoder.0.W"][0, 0] = np.nan
    with pytest.raises(ValueError, match="decoder.0.W holds NaN or infinity"):
        explorer.write_page(tmp_path / "page.html", model, config, tiny.x_test, tiny.y_test)
    assert list(tmp_path.iterdir()) == []


def test_the_page_files_are_inlined_whole(tiny):
    model, config = build("mlp-bce-relu")
    html = explorer.render(explorer.page_data(model, config, tiny.x_test, tiny.y_test))
    for name in explorer.PAGE_FILES[1:]:
        assert explorer._read(name) in html
