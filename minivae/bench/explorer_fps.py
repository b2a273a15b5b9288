"""`python -m minivae.bench.explorer_fps`: how fast the explorer page redraws, measured in a real browser.

    python -m minivae.bench.explorer_fps                              # the default 784-400-20 model and the convnet
    python -m minivae.bench.explorer_fps runs/<run> --data-dir DIR    # the pages of trained models

For each model it writes the explorer page (figures/explorer.py): of the checkpoints named, or else of the default
preset's model and the convnet's (preset keras-conv-2d) with fresh weights and synthetic test images (the redraw's
work does not depend on the weights' values). It opens the page in headless Chromium (bench/browser.py) and drives
it from a requestAnimationFrame loop, as a moving pointer would: every frame calls window.minivae.set with a new z,
which decodes it and redraws everything that depends on z (the image, the class row of a conditional model, the
cursor, the sliders). It prints

  * frames per second: the frames over the seconds between the first and the last. A browser runs such a loop at
    most once per display refresh, so the first line gives that ceiling: the rate of the same loop with nothing to
    draw (60 in headless Chromium); reaching it means the redraw keeps up with the display;
  * the redraw's own time, median and 95th percentile in ms, and the frames per second that it alone would allow;
  * the largest difference between the page's pixels (window.minivae.decode) and minivae's decode, over 100 z.

docs/explorer.md has what it measured. It needs Chromium, chromedriver and selenium (bench/browser.py says how to
install them).
"""

import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from minivae import cli
from minivae.bench import browser
from minivae.core import backend
from minivae.figures import explorer
from minivae.run import data, presets
from minivae.run.kinds import kind_of

PRESETS = {"mlp": "default", "conv": "keras-conv-2d"}  # the models measured when no checkpoint is named

# One frame per animation frame: set(z) and time it. Resolves with the frame times and the redraws' times (ms).
LOOP = """
const [frames, zs, label, done] = arguments;
const stamps = [], work = [];
function frame() {
  const started = performance.now();
  window.minivae.set(zs[stamps.length % zs.length], label);
  work.push(performance.now() - started);
  stamps.push(started);
  if (stamps.length < frames) requestAnimationFrame(frame);
  else done({stamps, work});
}
window.minivae.ready.then(() => requestAnimationFrame(frame));
"""

# The same loop with nothing to draw: how many frames per second this browser shows at all (its ceiling).
EMPTY_LOOP = """
const [frames, done] = arguments;
const stamps = [];
function frame() {
  stamps.push(performance.now());
  if (stamps.length < frames) requestAnimationFrame(frame);
  else done(stamps);
}
requestAnimationFrame(frame);
"""


def fresh_page(name, folder):
    """The page of a preset's model with fresh weights, on synthetic test images: (its path, its title, the model,
    its config)."""
    config = presets.config_for(PRESETS[name])
    model = presets.build_model(config)
    images = data.tiny_dataset(16, explorer.POINTS)
    page = explorer.write_page(Path(folder) / f"{name}.html", model, config, images.x_test, images.y_test)
    return page, f"{PRESETS[name]} preset, fresh weights", model, config


def checkpoint_page(path, out, data_dir):
    """The page of a checkpoint, written to `out`: (its path, its title, the model, its config)."""
    from minivae import explore

    _, config, model = explore.load_model(path)
    page = explore.explore_checkpoint(path, out, data_dir)
    return page, str(path), model, config


def measure(driver, page, frames, seed=0):
    """Open `page` and run LOOP for `frames` frames on random z (2 sigma wide). Returns (frames per second, the
    redraws' times in ms)."""
    driver.get(page.as_uri())
    info = driver.execute_script("return window.minivae.info")
    zs = (2 * np.random.default_rng(seed).standard_normal((64, info["latent"]))).tolist()
    driver.set_script_timeout(max(60, frames))
    result = driver.execute_async_script(LOOP, frames, zs, 0 if info["classes"] else None)
    stamps = result["stamps"]
    return (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1000), result["work"]


def largest_difference(driver, model, config, n=100, seed=1):
    """The largest difference between the open page's window.minivae.decode and minivae's decode, over n random z
    (2 sigma wide) and labels."""
    kind = kind_of(config)
    vae = kind.vae_of(model)
    rng = np.random.default_rng(seed)
    z = (2 * rng.standard_normal((n, vae.latent))).astype(np.float32)
    labels = rng.integers(0, vae.classes, n) if kind.conditioned else None
    page = np.array(driver.execute_script("return arguments[0].map((z, i) => window.minivae.decode(z, "
                                          "arguments[1] && arguments[1][i]))", z.tolist(),
                                          None if labels is None else labels.tolist()))
    return float(np.abs(page - backend.to_numpy(vae.decode(backend.to_device(z), labels))).max())


def report(title, page, fps, work, difference):
    median, slowest = statistics.median(work), float(np.percentile(work, 95))
    return (f"{title}: {page.stat().st_size / 1e6:.1f} MB page; {fps:.1f} frames per second; redraw "
            f"{median:.2f} ms median, {slowest:.2f} ms at the 95th percentile (alone: {1000 / median:.0f} frames "
            f"per second); pixels within {difference:.1e} of minivae's decode")


def build_parser():
    parser = cli.Parser(prog="python -m minivae.bench.explorer_fps", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="*", help="checkpoints or run folders (default: the default preset's "
                        "model and the convnet, with fresh weights)")
    parser.add_argument("--data-dir", type=cli.path, help="folder with the test files of the checkpoints' dataset")
    parser.add_argument("--frames", type=cli.positive_int, default=300, help="frames per model (default 300)")
    return parser


def bench_command(args):
    problem = browser.missing()
    if problem:
        raise cli.UsageError(f"no headless Chromium to measure in: {problem}")
    with tempfile.TemporaryDirectory(prefix="minivae-fps-") as folder, browser.chromium() as driver:
        if args.checkpoints:
            pages = [checkpoint_page(path, Path(folder) / f"{i}.html", args.data_dir)
                     for i, path in enumerate(args.checkpoints)]
        else:
            pages = [fresh_page(name, folder) for name in PRESETS]
        driver.set_script_timeout(max(60, args.frames))
        stamps = driver.execute_async_script(EMPTY_LOOP, args.frames)
        print(f"{browser.version(driver)}, headless, {args.frames} frames per model; with nothing to draw it shows "
              f"{(len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1000):.1f} frames per second", flush=True)
        for page, title, model, config in pages:
            fps, work = measure(driver, page, args.frames)
            print(report(title, page, fps, work, largest_difference(driver, model, config)), flush=True)
    return 0


def main(argv=None):
    """Entry point of `python -m minivae.bench.explorer_fps`. Returns the exit code."""
    return cli.run(bench_command, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
