"""The demos run end to end, as a student starts them: `python demos/X.py --quick --out DIR` in a subprocess.

--quick trains for a few seconds on data.tiny_dataset, so nothing here needs a dataset file or the network.
Each demo must exit 0, print the numbers it is about, and write its figures as non-empty PNG or GIF files:
on NumPy, and on the CuPy stand-in (`MINIVAE_BACKEND=cupy python tests/fake_cupy.py demos/X.py --quick`), where
a host array handed to the model, or a device array handed to NumPy, SciPy or matplotlib, fails as on a GPU.
"""

import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

DEMOS = REPO / "demos"
FAKE = REPO / "tests" / "fake_cupy.py"
BACKENDS = ("numpy", "fake-cupy")
MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".gif": b"GIF8"}
# One BLAS thread per process: two cores shared by threaded BLAS calls thrash (the conv demo runs 10x slower).
ENV = os.environ | {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
NUMBER = r"-?\d+\.\d+"

# demo -> (patterns its output must contain, figures it must write)
CASES = {
    "000_binarized_mlp.py": (
        [rf"after epoch  5: {NUMBER}%", rf"test images: {NUMBER}% of pixels", rf"ELBO {NUMBER} nats",
         rf"log-likelihood >= {NUMBER} nats"],
        ["reconstructions_by_epoch.png", "progress_reconstructions.gif", "samples.png"]),
    "001_sigma_mse.py": (
        [rf"ELBO {NUMBER} nats", rf"1 under the prior: median {NUMBER}",
         r"active units \(Var\(mu\) > 0.01\): \d+ of 30", rf"principal components of the means: {NUMBER}%"],
        ["latent_histograms.png", "latent_pca_2d.png", "latent_pca_3d.png", "interpolation.png", "interpolation.gif",
         "progress_samples.gif", "samples.png"]),
    "002_latent_2d.py": (
        [rf"ELBO {NUMBER} nats", rf"reconstruction: test +{NUMBER} after epoch 1", rf"spread {NUMBER}",
         r"where \d+% of the test means lie"],
        ["loss_curves.png", "latent_scatter.png", "manifold.png"]),
    "003_conv_vae.py": (
        [re.escape("KL weight beta = 784 * 5e-4 * 2 / latent = 0.392"), rf"ELBO {NUMBER} nats",
         rf"median sigma {NUMBER}", r"\d+% lie inside the manifold's grid"],
        ["latent_scatter.png", "manifold.png"]),
    "anomaly_detection.py": (
        [rf"-ELBO \(recon \+ KL\) +{NUMBER}", rf"importance-weighted, K=10 +{NUMBER}",
         rf"total ink of the image +{NUMBER}", r"<- held out"],
        ["score_extremes.png"]),
    "conditional.py": (
        [rf"ELBO of log p\(x\|y\) -{NUMBER} nats", rf"{NUMBER} nats with their own class, {NUMBER} with another",
         rf"argmax_y ELBO\(x, y\): {NUMBER}% of test images right"],
        ["draw.png", "class_grid.png", "style_transfer.png", "reconstructions.png"]),
    "semi_supervised.py": (
        [rf"\(a\) the classifier alone: {NUMBER}%", rf"\(b\) M1, .*: {NUMBER}%", rf"\(c\) M2: {NUMBER}%",
         r"test accuracy \d+\.\d\d%", rf"M2 - classifier alone: [+-]{NUMBER} points"],
        ["class_grid.png"]),
    "continuous_bernoulli.py": (
        [rf"not a density\) +{NUMBER}", rf"decoder normalised \(a density\) +{NUMBER}",
         rf"continuous Bernoulli model \(a density\) +{NUMBER}", r"the log-likelihood is not a log-density",
         rf"continuous Bernoulli: E\[x\] +mean squared error {NUMBER}"],
        ["reconstructions.png"]),
    "iwae_vs_vae.py": (
        [rf"VAE K=5 +{NUMBER} +\d+ of 20", rf"IWAE K=5 +{NUMBER} +\d+ of 20",
         rf"train {NUMBER} \(-IWAE, K=5\)", r"VAE -86.47, IWAE -85.54"],
        ["active_units.png"]),
    "vae_vs_autoencoder.py": (
        [rf"autoencoder epoch +3/3  train {NUMBER}  test {NUMBER}", rf"autoencoder {NUMBER}, VAE {NUMBER}",
         rf"VAE samples: {NUMBER}", rf"autoencoder samples: {NUMBER}", rf"real test images: {NUMBER}"],
        ["vae_latent_pca.png", "ae_latent_pca.png", "vae_interpolation.png", "ae_interpolation.png", "vae_samples.png",
         "ae_samples.png"]),
}


def run_demo(script, *args, backend="numpy", timeout=90):
    """Run demos/script with args on `backend`: NumPy, or the CuPy stand-in as MINIVAE_BACKEND=cupy would pick
    a real CuPy. Returns what it printed; it must exit 0."""
    if backend == "numpy":
        command, env = [sys.executable, str(DEMOS / script)], ENV | {"MINIVAE_BACKEND": "numpy"}
    else:
        command, env = [sys.executable, str(FAKE), str(DEMOS / script)], ENV | {"MINIVAE_BACKEND": "cupy"}
    result = subprocess.run([*command, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (f"{script} on {backend} exited {result.returncode}:\n{result.stdout[-2000:]}\n"
                                    f"{result.stderr[-3000:]}")
    return result.stdout


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("script", sorted(CASES))
def test_demo_runs_quick(script, backend, tmp_path):
    out = tmp_path / "out"
    printed = run_demo(script, "--quick", "--out", str(out), backend=backend)
    patterns, figures = CASES[script]
    for pattern in patterns:
        assert re.search(pattern, printed), f"{script} did not print /{pattern}/:\n{printed}"
    for name in figures:
        path = out / name
        assert path.is_file(), f"{script} did not write {name}; it wrote {sorted(p.name for p in out.iterdir())}"
        head = path.read_bytes()[:8]
        assert head.startswith(MAGIC[path.suffix]) and path.stat().st_size > 1000, f"{path} is not a real image"
        assert f"wrote {path}" in printed


def test_anomaly_auc_is_a_probability(tmp_path):
    printed = run_demo("anomaly_detection.py", "--quick", "--holdout", "3", "--out", str(tmp_path))
    aucs = [float(v) for v in re.findall(r"^  \S.*?  +(\d\.\d{3})$", printed, flags=re.M)]
    assert len(aucs) == 4 and all(0 <= v <= 1 for v in aucs), printed
    assert "class 3 (3)" in printed


@pytest.mark.parametrize("backend", BACKENDS)
def test_step_through(backend):
    printed = run_demo("step_through.py", backend=backend, timeout=60)
    assert "the same gradients" in printed


def test_every_demo_is_tested_and_reads_as_a_notebook():
    scripts = {p.name for p in DEMOS.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(CASES) | {"step_through.py"}
    for name in scripts:
        text = (DEMOS / name).read_text()
        assert text.startswith('"""') and "# %%" in text, f"{name}: a docstring first, then # %% cells"
        assert len(text.splitlines()) <= 200, f"{name} is over 200 lines"
