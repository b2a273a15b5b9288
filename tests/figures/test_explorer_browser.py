"""The explorer page in a real browser: headless Chromium driven by selenium (minivae/bench/browser.py).

Each page is opened from disk (file://). Its JavaScript decoder must give minivae's VAE.decode to 1e-5 for every
kind of model (the old checkpoints of every kind in tests/fixtures/v0.1.0, and models built here for what those lack:
a sigmoid activation, convolutions of every padding, and logits where the continuous Bernoulli's formulas switch);
it must make no request; and real mouse events (selenium's ActionChains) must move z and redraw.

Without Chromium, chromedriver or selenium every test here is skipped, with the reason. CI installs them
(.ci/run) and runs this file as a step of its own with MINIVAE_REQUIRE_BROWSER=1, which turns that skip into an
error, so a CI run that passes has run it.
"""

import base64
import json
import os

import numpy as np
import pytest
from conftest import REPO

from minivae import explore
from minivae.bench import browser
from minivae.core import backend, continuous_bernoulli
from minivae.core.conv import Conv2D, ConvTranspose2D, Flatten, Reshape
from minivae.core.layers import Dense, ReLU, Sequential, Tanh, mlp
from minivae.figures import explorer
from minivae.models.vae import VAE
from minivae.run import checkpoint, data, presets
from minivae.run.kinds import kind_of

MISSING = browser.missing()
if MISSING and os.environ.get("MINIVAE_REQUIRE_BROWSER"):
    raise RuntimeError(f"MINIVAE_REQUIRE_BROWSER is set but the browser test cannot run: {MISSING}")
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"no headless Chromium to drive: {MISSING}")

FIXTURES = REPO / "tests" / "fixtures" / "v0.1.0"
OLD_CHECKPOINTS = ("mlp", "conv", "cvae", "m2", "mlp-cb-tanh", "mlp-sigma-mse", "mlp-rmsprop-bce-prob")
WAIT = 10  # seconds a test waits for the page to redraw (it takes milliseconds)


# ---- the models and their pages ------------------------------------------------------------------------------


def odd_convnet():
    """A VAE whose decoder has convolutions of every kind of padding: a 'same' transposed convolution with a
    non-square kernel and stride, one with int padding, a strided 'same' convolution, output_padding, a padding
    pair, and tanh."""
    rng = np.random.default_rng(3)
    kw = dict(rng=rng)
    decoder = Sequential(
        Dense(2, 3 * 7 * 14, **kw), ReLU(), Reshape((3, 7, 14)),
        ConvTranspose2D(3, 4, (3, 2), stride=(2, 1), padding="same", **kw), ReLU(),  # (4, 14, 14)
        ConvTranspose2D(4, 3, 4, stride=2, padding=1, **kw), Tanh(),  # (3, 28, 28)
        Conv2D(3, 2, 3, stride=2, padding="same", **kw), ReLU(),  # (2, 14, 14)
        ConvTranspose2D(2, 2, 3, stride=2, padding=1, output_padding=1, **kw), ReLU(),  # (2, 28, 28)
        Conv2D(2, 1, (3, 5), padding=(1, 2), init="lecun", **kw), Flatten())  # (1, 28, 28)
    for layer in decoder.layers:
        if "b" in layer.params:
            layer.params["b"][...] = backend.to_device(0.1 * rng.standard_normal(layer.params["b"].shape))
    return VAE(mlp([784, 8]), decoder, features=8, latent=2, rng=rng)


def hard_logits(recon):
    """An MLP VAE whose decoder outputs the same logits whatever z: continuous_bernoulli.HARD_LOGITS (in float32)
    and more, repeated over the 784 pixels, where the output's formulas switch branches or overflow."""
    config = presets.config_for("default", hidden=[8], latent=2, recon=recon)
    model = presets.build_model(config)
    logits = np.array(continuous_bernoulli.HARD_LOGITS + (-0.5, 0.4999, -1e-2, 88.0, -88.7, 1e30), dtype=np.float32)
    last = model.decoder.layers[-1]
    last.params["W"][...] = 0
    last.params["b"][...] = backend.to_device(np.resize(logits, 784))
    return model, config


def built_models():
    """name -> (model, config) for the models the old checkpoints lack."""
    sigmoid = presets.config_for("default", hidden=[16], latent=3, activation="sigmoid")
    wide = presets.config_for("default", hidden=[8], latent=70)
    odd = presets.config_for("default", hidden=[8], latent=2)
    return {"mlp-sigmoid": (presets.build_model(sigmoid), sigmoid), "odd-convnet": (odd_convnet(), odd),
            "cb-hard-logits": hard_logits("cb"), "bce-hard-logits": hard_logits("bce"),
            "latent-70": (presets.build_model(wide), wide)}


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """name -> (page path, the VAE that decodes, classes): a page for every old checkpoint and every built model."""
    folder = tmp_path_factory.mktemp("pages")
    made = {}
    for name in OLD_CHECKPOINTS:
        path = explore.explore_checkpoint(FIXTURES / name, folder / f"{name}.html", FIXTURES / "data")
        ckpt = checkpoint.load(FIXTURES / name)
        config = presets.complete(ckpt.config)
        model = presets.build_model(config)
        checkpoint.restore(model, None, ckpt)
        made[name] = (path, model, config)
    tiny = data.tiny_dataset(16, 60)
    for name, (model, config) in built_models().items():
        made[name] = (explorer.write_page(folder / f"{name}.html", model, config, tiny.x_test, tiny.y_test), model,
                      config)
    return {name: (path, kind_of(config).vae_of(model), kind_of(config).conditioned)
            for name, (path, model, config) in made.items()}


@pytest.fixture(scope="module")
def driver():
    with browser.chromium(1400, 1100, network_log=True) as chrome:
        yield chrome


def open_page(driver, pages, name):
    """Open a page from disk and wait until its test images are unpacked. Returns (VAE, classes)."""
    path, vae, conditioned = pages[name]
    driver.get(path.as_uri())
    driver.execute_async_script("window.minivae.ready.then(arguments[arguments.length - 1])")
    return vae, vae.classes if conditioned else 0


# ---- reading the page ---------------------------------------------------------------------------------------------

READ_CANVAS = """
const canvas = typeof arguments[0] === "string" ? document.getElementById(arguments[0]) : arguments[0];
const rgba = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
return Array.from(rgba.filter((_, k) => k % 4 === 0));"""


def grey(driver, canvas):
    """The grey levels (0-255) drawn in a canvas (an element, or the id of one)."""
    return np.array(driver.execute_script(READ_CANVAS, canvas))


def page_decode(driver, z, label=None):
    return np.array(driver.execute_script("return window.minivae.decode(arguments[0], arguments[1])",
                                          [float(v) for v in z], label))


def as_grey(pixels):
    """The grey levels the page draws for pixel means: Math.round(255 * v), v clipped to [0, 1]."""
    return np.floor(255 * np.clip(pixels, 0, 1) + 0.5).astype(int)


def current(driver):
    return driver.execute_script("return window.minivae.current()")


def wait_until(driver, condition):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT).until(lambda _: condition())


def plane_offset(driver, u, v):
    """Where the plane point (u, v) is, in CSS pixels from the plane's centre (as ActionChains offsets go)."""
    overlay = driver.find_element("id", "overlay")
    extent, size = float(overlay.get_attribute("data-extent")), overlay.size["width"]
    return round(u / (2 * extent) * size), round(-v / (2 * extent) * size)


def actions(driver):
    from selenium.webdriver.common.action_chains import ActionChains

    return ActionChains(driver)


# ---- what the page decodes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*OLD_CHECKPOINTS, "mlp-sigmoid", "odd-convnet", "cb-hard-logits",
                                  "bce-hard-logits"])
def test_the_page_decodes_what_minivae_decodes(driver, pages, name):
    vae, classes = open_page(driver, pages, name)
    rng = np.random.default_rng(0)
    z = (2 * rng.standard_normal((20, vae.latent))).astype(np.float32)
    labels = [int(c) for c in rng.integers(0, classes, 20)] if classes else [None] * 20
    got = np.array([page_decode(driver, zi, label) for zi, label in zip(z, labels)])
    expected = backend.to_numpy(vae.decode(backend.to_device(z), np.array(labels) if classes else None))
    assert got.shape == expected.shape == (20, 784)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_every_page_opens_without_an_error(driver, pages):
    for name in pages:
        open_page(driver, pages, name)
        assert driver.find_element("id", "error").get_attribute("class") == "hidden", name
        assert [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"] == [], name


def test_the_page_makes_no_request_to_any_file_or_host(driver, pages):
    driver.get("about:blank")
    driver.get_log("performance")  # what came before this test (the browser's own start page among it)
    path = pages["cvae"][0]
    open_page(driver, pages, "cvae")
    actions(driver).move_to_element(driver.find_element("id", "overlay")).click().perform()
    driver.find_element("id", "path-start").click()
    requested = {json.loads(entry["message"])["message"]["params"].get("request", {}).get("url")
                 for entry in driver.get_log("performance")
                 if json.loads(entry["message"])["message"]["method"] == "Network.requestWillBeSent"}
    assert requested == {path.as_uri()}
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0


def test_info_describes_the_model(driver, pages):
    open_page(driver, pages, "cvae")
    info = driver.execute_script("return window.minivae.info")
    assert (info["latent"], info["classes"], info["imageShape"]) == (2, 10, [28, 28])
    assert info["classNames"] == [str(c) for c in range(10)]
    assert dict(info["summary"])["test ELBO"].endswith("nats of log p(x|y), after epoch 1")


def test_the_hook_refuses_what_it_cannot_decode(driver, pages):
    from selenium.common.exceptions import JavascriptException

    open_page(driver, pages, "cvae")
    for call, message in [("decode([1, 2, 3], 0)", "z must hold 2 numbers"),
                          ("decode([1, 2])", "give a label from 0 to 9"),
                          ("decode([1, 2], 10)", "label must be 0 to 9"),
                          ("set([1, NaN])", "z must hold finite numbers")]:
        with pytest.raises(JavascriptException, match=message):
            driver.execute_script(f"return window.minivae.{call}")
    open_page(driver, pages, "mlp")
    with pytest.raises(JavascriptException, match="this model takes no label"):
        driver.execute_script("return window.minivae.decode([0, 0, 0], 1)")


# ---- what it draws, driven by the hook and by the mouse --------------------------------------------------------------


def test_set_moves_the_view_and_draws_what_decode_returns(driver, pages):
    open_page(driver, pages, "mlp")
    z = [0.5, -1.25, 2.0]
    driver.execute_script("window.minivae.set(arguments[0])", z)
    assert current(driver) == {"z": z, "label": None}
    assert np.array_equal(grey(driver, "decoded"), as_grey(page_decode(driver, z)))
    sliders = driver.find_elements("css selector", "#sliders output")
    assert [s.text for s in sliders] == ["0.50", "-1.25", "2.00"]


def test_moving_the_pointer_over_the_plane_moves_z_and_redraws(driver, pages):
    open_page(driver, pages, "mlp-rmsprop-bce-prob")  # a 2-D latent: the plane is z itself
    overlay = driver.find_element("id", "overlay")
    drawn = grey(driver, "decoded")
    for u, v in ((1.5, -1.0), (-2.0, 2.0)):
        actions(driver).move_to_element_with_offset(overlay, *plane_offset(driver, u, v)).perform()
        z = wait_until(driver, lambda u=u: current(driver)["z"] if current(driver)["z"][0] * u > 1 else None)
        assert z == pytest.approx([u, v], abs=0.05)
        before, drawn = drawn, redrawn(driver, "decoded", drawn)
        assert not np.array_equal(drawn, before)
        assert np.array_equal(drawn, as_grey(page_decode(driver, z)))


def redrawn(driver, canvas, before):
    """The grey levels of a canvas once they differ from `before` (the page redraws at its next frame)."""
    wait_until(driver, lambda: not np.array_equal(grey(driver, canvas), before))
    return grey(driver, canvas)


def test_clicking_a_dot_moves_z_to_its_encoder_mean_and_shows_that_test_image(driver, pages):
    open_page(driver, pages, "cvae")
    dots = explorer_data(driver)
    means, labels, images = dots["means"], dots["labels"], dots["images"]
    far = np.array([np.sort(np.abs(means - m).sum(axis=1))[1] for m in means])
    i = int(np.argmax(far))  # the dot farthest from any other: a click cannot take its neighbour
    overlay = driver.find_element("id", "overlay")
    actions(driver).move_to_element_with_offset(overlay, *plane_offset(driver, *means[i])).click().perform()
    wait_until(driver, lambda: current(driver)["z"] == [float(v) for v in means[i]])
    assert current(driver)["label"] == labels[i]  # a conditional VAE decodes it as its own class
    assert np.array_equal(grey(driver, "picked-image"), as_grey(images[i]))
    assert np.array_equal(grey(driver, "picked-recon"), as_grey(page_decode(driver, means[i], int(labels[i]))))
    actions(driver).move_to_element_with_offset(overlay, 100, 100).perform()  # z stays at the dot
    assert current(driver)["z"] == [float(v) for v in means[i]]


def explorer_data(driver):
    """The dots of the open page, read from its own data: means (N, L), labels (N,), images (N, 784)."""
    page = json.loads(driver.execute_script("return document.getElementById('minivae-data').textContent"))
    points, latent = page["points"], page["info"]["latent"]
    return {"means": np.frombuffer(base64.b64decode(points["means"]), "<f4").reshape(points["count"], latent),
            "labels": np.frombuffer(base64.b64decode(points["labels"]), np.uint8),
            "images": explorer.unpack_images(points["images"], points["count"], 784)}


def test_shift_clicking_two_points_decodes_the_path_between_them(driver, pages):
    from selenium.webdriver.common.keys import Keys

    open_page(driver, pages, "mlp-rmsprop-bce-prob")
    overlay = driver.find_element("id", "overlay")
    (x0, y0), (x1, y1) = plane_offset(driver, -2.5, -2.5), plane_offset(driver, 2.5, 2.5)
    actions(driver).key_down(Keys.SHIFT).move_to_element_with_offset(overlay, x0, y0).click() \
        .move_to_element_with_offset(overlay, x1, y1).click().key_up(Keys.SHIFT).perform()
    frames = wait_until(driver, lambda: driver.find_elements("css selector", "#path-strip canvas"))
    assert len(frames) == 12
    assert not np.array_equal(grey(driver, frames[0]), grey(driver, frames[-1]))


def test_the_path_buttons_decode_the_straight_line_from_one_z_to_another(driver, pages):
    open_page(driver, pages, "mlp")
    start, end = [-1.0, 0.0, 2.0], [1.0, 1.0, -2.0]
    for z, button in ((start, "path-start"), (end, "path-end")):
        driver.execute_script("window.minivae.set(arguments[0])", z)
        driver.find_element("id", button).click()
    frames = driver.find_elements("css selector", "#path-strip canvas")
    middle = [(s + e) / 2 for s, e in zip(start, end)]
    assert len(frames) == 12
    assert np.array_equal(grey(driver, frames[0]), as_grey(page_decode(driver, start)))
    assert np.array_equal(grey(driver, frames[-1]), as_grey(page_decode(driver, end)))
    assert not np.array_equal(grey(driver, frames[5]), as_grey(page_decode(driver, middle)))  # 12 frames: no middle


def test_dragging_a_slider_sets_its_latent_unit_alone(driver, pages):
    open_page(driver, pages, "mlp")
    before = grey(driver, "decoded")
    slider = driver.find_elements("css selector", "#sliders input")[1]
    actions(driver).drag_and_drop_by_offset(slider, 40, 0).perform()
    z = wait_until(driver, lambda: current(driver)["z"] if current(driver)["z"][1] != 0 else None)
    assert z[1] > 0.5 and z[0] == z[2] == 0
    assert np.array_equal(redrawn(driver, "decoded", before), as_grey(page_decode(driver, z)))


def test_the_class_row_decodes_every_class_at_z_and_a_click_chooses_the_label(driver, pages):
    open_page(driver, pages, "cvae")
    z = [0.3, -0.7]
    driver.execute_script("window.minivae.set(arguments[0], 0)", z)
    buttons = driver.find_elements("css selector", "#classes button")
    assert len(buttons) == 10
    for c, button in enumerate(buttons):
        canvas = button.find_element("tag name", "canvas")
        assert np.array_equal(grey(driver, canvas), as_grey(page_decode(driver, z, c))), c
    buttons[7].click()
    assert current(driver)["label"] == 7
    assert np.array_equal(grey(driver, "decoded"), as_grey(page_decode(driver, z, 7)))
    assert driver.find_element("id", "label").get_attribute("value") == "7"


def test_the_axes_choice_moves_z_along_the_units_chosen(driver, pages):
    from selenium.webdriver.support.ui import Select

    open_page(driver, pages, "mlp-sigmoid")  # latent 3: the plane starts on the two principal directions
    horizontal, vertical = Select(driver.find_element("id", "axis-x")), Select(driver.find_element("id", "axis-y"))
    assert horizontal.first_selected_option.text.startswith("PC1")
    horizontal.select_by_visible_text("z3")
    vertical.select_by_visible_text("z1")
    overlay = driver.find_element("id", "overlay")
    actions(driver).move_to_element_with_offset(overlay, *plane_offset(driver, 1.0, -2.0)).perform()
    z = wait_until(driver, lambda: current(driver)["z"] if current(driver)["z"] != [0, 0, 0] else None)
    assert z == pytest.approx([-2.0, 0.0, 1.0], abs=0.05)


def test_past_64_latent_units_64_sliders_show_the_most_varied(driver, pages):
    open_page(driver, pages, "latent-70")
    assert len(driver.find_elements("css selector", "#sliders input")) == 64
    assert "64 of the 70 latent units have a slider" in driver.find_element("id", "sliders-note").text
