"""scripts/gpu_check.py, the one prepared device check, run here without a GPU: its --stand-in dry run goes through
every part on the CuPy stand-in with emulated kernels and writes the report, so that the one call on a GPU does
not die on a typo; and the figures it reads from the commands' output are the ones they print."""

import re
import subprocess
import sys

import kernel_emulator
import pytest
from conftest import REPO, write_tiny_dataset

sys.path.insert(0, str(REPO / "scripts"))  # gpu_check and gpu_report: scripts, not a package
import gpu_check  # noqa: E402 (a script, not a package)

from minivae.bench import __main__ as bench_command  # noqa: E402
from minivae.bench import timing  # noqa: E402

PARTS = ("pip install", "pytest", "gradcheck", "GPU against CPU", "epochs of the default model", "Ctrl-C",
         "every demo", "bench")


@pytest.mark.skipif(kernel_emulator.COMPILER is None, reason="the stand-in's kernels need a C++ compiler")
def test_the_stand_in_dry_run_goes_through_every_part_and_writes_one_report(tmp_path):
    (tmp_path / "data").mkdir()
    data = write_tiny_dataset(tmp_path / "data", n_train=2000, n_test=300)
    report = tmp_path / "report.md"
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--stand-in", "--data", str(data),
                             "--report", str(report)], capture_output=True, text=True, timeout=400)
    text = report.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| part")]
    summary = {part: next((row for row in rows if part in row), None) for part in PARTS}
    assert all(summary.values()), (summary, result.stdout[-3000:], result.stderr[-3000:])
    assert "not run yet" not in text and "the check itself failed" not in text, text
    # on the stand-in the GPU tests skip, and the check says so (that is what fails its exit code)
    assert re.search(r"GPU tests skipped: [1-9]\d* \| .* \| \*\*NO\*\*", summary["pytest"])
    assert result.returncode == 1
    for part in ("gradcheck", "GPU against CPU", "Ctrl-C", "every demo"):
        assert summary[part].split(" | ")[-2] == "yes", summary[part]
    assert "bit for bit where the uninterrupted one ends" in summary["Ctrl-C"]
    assert re.search(r"test loss \d+\.\d\d after epoch 3", summary["epochs of the default model"])
    assert re.search(r"\| MLP, batch 128 \| \d+ \| - \| - \| <= 1.0 \|", text)  # no PyTorch CUDA here: no ratio
    assert result.stdout.rstrip().endswith(text.rstrip().splitlines()[-1])  # and the report is printed at the end


def test_the_bench_figures_are_read_from_what_the_bench_prints(capsys, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setattr(timing, "EPOCH", 64)
    bench_command.main(["--against", "torch", "--batch-size", "16", "--hidden", "32", "--latent", "4", "--repeats", "1",
                        "--inner", "1", "--epoch-repeats", "1"])
    figures = gpu_check.bench_figures(capsys.readouterr().out)
    assert set(figures) == {"samples", "torch_samples", "ratio", "epoch_ratio", "floor_ratio"}
    assert figures["samples"] > 0 and figures["ratio"] > 0


def gpu_usable():
    from minivae.core import backend

    try:
        backend.use("cupy")
        return hasattr(backend.xp, "ElementwiseKernel")  # the real CuPy, not the stand-in
    except backend.BackendError:
        return False
    finally:
        backend.use("numpy")


@pytest.mark.skipif(gpu_usable(), reason="a GPU is here: the check would run for minutes")
def test_without_a_gpu_every_part_fails_in_one_line_about_the_gpu_and_the_report_is_whole(tmp_path):
    """The GPU mode's command lines all parse (a typo in an option would be a usage error instead), and each part
    ends with the backend's one-line error, in the report."""
    (tmp_path / "data").mkdir()
    data = write_tiny_dataset(tmp_path / "data", n_train=200, n_test=100)
    report = tmp_path / "report.md"
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--no-install", "--data",
                             str(data), "--report", str(report)], capture_output=True, text=True, timeout=400)
    text = report.read_text()
    assert result.returncode == 1 and "not run yet" not in text and "the check itself failed" not in text, text
    assert "usage:" not in text and "Traceback" not in text, text
    assert text.count("CuPy") >= 8  # every part says what is missing (CuPy, or a GPU, or a driver)
    assert "MLP, batch 8192" in text and "convnet, batch 16" in text
