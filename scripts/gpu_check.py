"""The one prepared device check: on a machine with an NVIDIA GPU, run everything the GPU path promises, time each
part, and write ONE report file (markdown). docs/gpu.md says how to run it, what the report holds and the goals.

    python3 scripts/gpu_check.py --data shared/data/fashion-mnist --report $OUT/gpu_check.md

It needs the device image's packages (CuPy for CUDA 13, PyTorch with CUDA, NumPy, SciPy, matplotlib, pytest,
hypothesis, tqdm; pytest-xdist if there) and no network: it installs minivae with `pip install --no-deps
--no-build-isolation -e .` and reads Fashion-MNIST's four IDX files from --data. Everything runs in subprocesses
with time limits inside a budget of BUDGET seconds (8 minutes for the device call, with room to spare), so that a
part that fails or hangs costs its own figures only; the report is rewritten after every part, so that even a
killed check leaves what it measured. The parts:

  1. `python -m pytest --backend cupy` (the backend-sensitive tests on the real CuPy; no GPU test may skip)
  2. `python -m minivae.gradcheck --device gpu`
  3. the default model on Fashion-MNIST: its first 100 training steps on the GPU against the same steps on the
     CPU (the largest differences in the loss and the parameters: scripts/compare_steps.py)
  4. 10 epochs on the GPU and the test loss; the same run stopped by Ctrl-C (SIGINT) after epoch 3 and resumed
     with the command it prints: it must end with the uninterrupted run's weights and losses
  5. every demo with --quick on the GPU
  6. `python -m minivae.bench --device gpu --against torch` at batch 128, 1024, 8192 and the convnet: samples/s,
     the ratio to PyTorch CUDA eager, the kernels per step
Parts 1-5 run side by side (they check numbers, not speed); the bench runs alone at the end.

`--stand-in` runs the same parts, smaller, on the CuPy stand-in with its kernels emulated on the CPU
(tests/kernel_emulator.py) instead of a GPU, and installs nothing: CI runs it so (tests/scripts), so that the one
call on a GPU cannot die on a typo in here.
"""

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gpu_report import Report

REPO = Path(__file__).resolve().parents[1]
BUDGET = 470  # seconds, all parts: the device call has 8 minutes (480 s)
BENCH_RESERVE = 170  # of them kept for the bench, which runs alone after the others
CPU_TEST_LOSS = (244.29, 244.80)  # the default model's test loss after 10 epochs of Fashion-MNIST on CPUs (README)
BENCH_GOALS = {"MLP, batch 128": 1.0, "MLP, batch 8192": 1.0, "convnet, batch 16": 1.5}  # minivae/PyTorch step

# What each mode runs: the GPU's full sizes, or the stand-in's small ones.
SIZES = {
    "gpu": {"compare_steps": 100, "epochs": 10, "stop_after_epoch": 3, "stop_delay": 0.3, "gradcheck": [],
            "pytest": [], "demos": None,  # None: every demo
            "bench": {"MLP, batch 128": ["--batch-size", "128"], "MLP, batch 1024": ["--batch-size", "1024"],
                      "MLP, batch 8192": ["--batch-size", "8192"], "convnet, batch 16": ["--model", "conv"]},
            "bench_data": True},
    "stand-in": {"compare_steps": 5, "epochs": 3, "stop_after_epoch": 1, "stop_delay": 0.0,
                 "gradcheck": ["--only", "relu"],
                 "pytest": ["tests/core/test_kernels.py", "-k", "relu or flush"],
                 "demos": ["002_latent_2d.py", "step_through.py"],
                 "bench": {"MLP, batch 128": ["--batch-size", "128", "--hidden", "32"],
                           "convnet, batch 16": ["--model", "conv", "--batch-size", "2"]},
                 "bench_data": False},
}
SMALL_BENCH = ["--repeats", "1", "--inner", "1", "--epoch-repeats", "1", "--epoch-steps", "2"]


# ---------------------------------------------------------------- running the parts


class Check:
    """The parts, run against one mode's backend: the GPU, or the stand-in with emulated kernels."""

    def __init__(self, args):
        self.args, self.mode = args, "stand-in" if args.stand_in else "gpu"
        self.sizes = SIZES[self.mode]
        self.started = time.monotonic()
        self.deadline = self.started + BUDGET
        self.report = Report(args.report, self.mode, self.started, BUDGET)
        self.work = Path(tempfile.mkdtemp(prefix="minivae-gpu-check-"))
        self.data = str(Path(args.data).resolve())
        self.env = os.environ | {"MINIVAE_BACKEND": "cupy", "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
                                 "MPLBACKEND": "Agg"}

    def command(self, target, *args):
        """The command line running a minivae module (or a script) on this mode's backend."""
        if self.mode == "stand-in":
            return [sys.executable, str(REPO / "tests" / "kernel_emulator.py"), target, *args]
        if target.endswith(".py"):
            return [sys.executable, target, *args]
        return [sys.executable, "-m", target, *args]

    def left(self, until=None):
        return (until or self.deadline) - time.monotonic()

    def run(self, command, limit, until=None, env=None):
        """Run command (from the repository's root) for at most `limit` seconds and what is left before `until`
        (default: the deadline). Returns (exit code, or 'timeout' / 'no time left'; its output; seconds)."""
        limit = min(limit, self.left(until))
        if limit < 5:
            return "no time left", "", 0.0
        start = time.monotonic()
        process = subprocess.Popen(command, cwd=REPO, env=env or self.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            output, _ = process.communicate(timeout=limit)
            code = process.returncode
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # with its children (pytest's workers)
            output, _ = process.communicate()
            code = "timeout"
        return code, output, time.monotonic() - start

    def say(self, key):
        part = self.report.parts[key]
        print(f"[{time.monotonic() - self.started:4.0f} s] {part.title}: {part.result}", flush=True)
        self.report.write()

    def guarded(self, key, function, *args):
        """Run one part's function; a bug in here is reported as that part's failure, not the end of the check."""
        try:
            function(*args)
        except Exception as err:  # noqa: BLE001 (the report must go on)
            self.report.parts[key].done(f"the check itself failed: {type(err).__name__}: {err}", False, None)
        self.say(key)

    # ---- the environment, the install

    def environment(self):
        probe = ("import json, platform, sys\n"
                 "found = {'python': platform.python_version()}\n"
                 "for name in ('numpy', 'scipy', 'cupy', 'torch'):\n"
                 "    try:\n        found[name] = __import__(name).__version__\n"
                 "    except Exception as err:\n        found[name] = f'not usable ({type(err).__name__})'\n"
                 "try:\n    import cupy\n    props = cupy.cuda.runtime.getDeviceProperties(0)\n"
                 "    found['gpu'] = props['name'].decode() if isinstance(props['name'], bytes) else props['name']\n"
                 "    v = cupy.cuda.runtime.driverGetVersion(); r = cupy.cuda.runtime.runtimeGetVersion()\n"
                 "    found['cuda'] = f'driver supports CUDA {v // 1000}.{v % 1000 // 10}, CuPy built for "
                 "{r // 1000}.{r % 1000 // 10}'\n"
                 "except Exception as err:\n    found['gpu'] = f'none found ({type(err).__name__})'\n"
                 "print(json.dumps(found))\n")
        code, output, _ = self.run([sys.executable, "-c", probe], 60)
        try:
            found = json.loads(output.strip().splitlines()[-1])
            self.report.environment = [f"{name}: {value}" for name, value in found.items()]
        except (ValueError, IndexError):
            self.report.environment = [f"the environment probe failed ({code}): {output[-300:]!r}"]
        self.report.environment.append(f"data: {self.data}; mode: {self.mode}; work folder: {self.work}")

    def install(self):
        part = self.report.part("install", "pip install --no-deps --no-build-isolation -e .")
        if self.mode == "stand-in" or self.args.no_install:
            part.done(f"skipped ({'--stand-in' if self.args.stand_in else '--no-install'}; PYTHONPATH points at the "
                      "repository)", None, 0)
            return self.say("install")
        code, output, seconds = self.run([sys.executable, "-m", "pip", "install", "--no-deps",
                                          "--no-build-isolation", "-e", "."], 180)
        part.done("installed" if code == 0 else f"failed ({code}); the parts run from PYTHONPATH", code == 0,
                  seconds, [] if code == 0 else tail(output))
        self.say("install")

    # ---- 1. pytest on CuPy

    def pytest(self, until):
        part = self.report.part("pytest", "pytest --backend cupy" if self.mode == "gpu" else
                                "pytest --backend fake-cupy (a few tests)", "all pass, no GPU test skipped")
        backend = ["--backend", "cupy"] if self.mode == "gpu" else ["--backend", "fake-cupy"]
        workers = ["-n", "8"] if self.mode == "gpu" and has_module("xdist") else []
        command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *backend, *workers,
                   *self.sizes["pytest"]]
        code, output, seconds = self.run(command, 300, until)
        counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", output)}
        skips = re.findall(r"^SKIPPED \[(\d+)\] (.*)$", output, re.MULTILINE)
        gpu_skips = sum(int(n) for n, reason in skips if "GPU" in reason or "not a GPU" in reason)
        failures = [line for line in output.splitlines() if line.startswith(("FAILED", "ERROR"))]
        summary = ", ".join(f"{n} {kind}" for kind, n in counts.items()) or f"no summary ({code})"
        part.done(f"{summary}; GPU tests skipped: {gpu_skips}", code == 0 and gpu_skips == 0, seconds,
                  [f"`{shlex.join(command)}` exited {code}", "", *[f"- {line}" for line in failures[:40]],
                   *[f"- skipped {n}: {reason}" for n, reason in skips[:20]],
                   *(tail(output) if code not in (0, 1) or not counts else [])])

    # ---- 2. the gradient check on the GPU

    def gradcheck(self, until):
        part = self.report.part("gradcheck", "gradcheck --device gpu", "every gradient matches")
        command = self.command("minivae.gradcheck", "--device", "gpu", *self.sizes["gradcheck"])
        code, output, seconds = self.run(command, 240, until)
        last = re.search(r"^(\d+) checks in [\d.]+ s: (.*)$", output, re.MULTILINE)
        failing = [line for line in output.splitlines() if "FAIL" in line and not line.startswith("A row")]
        part.done(f"{last.group(1)} checks: {last.group(2)}" if last else f"no verdict ({code})", code == 0, seconds,
                  [f"`{shlex.join(command)}` exited {code}", *[f"    {line}" for line in failing[:30]],
                   *(tail(output) if not last else [])])

    # ---- 3. the first 100 steps, GPU against CPU

    def compare(self, until):
        steps = self.sizes["compare_steps"]
        part = self.report.part("compare", f"the first {steps} steps, GPU against CPU",
                                "the same run to float32's roundings: losses within 0.1%")
        command = self.command(str(REPO / "scripts" / "compare_steps.py"), "--steps", str(steps), "--data", self.data)
        env = self.env | {"OPENBLAS_NUM_THREADS": "4", "OMP_NUM_THREADS": "4"}
        code, output, seconds = self.run(command, 120, until, env)
        found = re.search(r"^COMPARE (\{.*\})$", output, re.MULTILINE)
        if not found:
            return part.done(f"failed ({code})", False, seconds, tail(output))
        c = json.loads(found.group(1))
        result = (f"loss: largest difference {c['loss_diff']:.3g} nats (relative {c['loss_rel']:.2g}, step "
                  f"{c['loss_step']}); parameters: largest {c['param_diff']:.3g} ({c['param_name']}, relative to "
                  f"its largest weight {c['param_rel']:.2g})")
        part.done(result, c["loss_rel"] < 1e-3, seconds,
                  [f"default preset on Fashion-MNIST from {self.data}, the training loop's own batches and noise; "
                   f"loss at step 1: CPU {c['cpu_first']:.6f}, GPU {c['gpu_first']:.6f}; at step {steps}: "
                   f"CPU {c['cpu_last']:.6f}, GPU {c['gpu_last']:.6f}",
                   f"per parameter array, the largest difference: {c['per_param']}"])

    # ---- 4. 10 epochs, a Ctrl-C and a resume

    def train_args(self, out):
        return self.command("minivae.train", "--device", "gpu", "--dataset", "fashion-mnist", "--data-dir",
                            self.data, "--epochs", str(self.sizes["epochs"]), "--out", str(out), "--no-plots")

    def train(self, until):
        epochs = self.sizes["epochs"]
        part = self.report.part("train", f"{epochs} epochs of the default model",
                                f"test loss {CPU_TEST_LOSS[0]}-{CPU_TEST_LOSS[1]} (the CPU's)")
        code, output, seconds = self.run(self.train_args(self.work / "whole"), 150, until)
        lines = re.findall(r"^epoch +\d+/\d+ .*$", output, re.MULTILINE)
        test = re.findall(r"^epoch +\d+/\d+ +train [\d.]+.* test ([\d.]+) ", output, re.MULTILINE)
        final = [line for line in output.splitlines() if line.startswith("test set")]
        if code != 0 or not test:
            return part.done(f"failed ({code})", False, seconds, tail(output))
        loss = float(test[-1])
        part.done(f"test loss {loss:.2f} after epoch {len(test)}", CPU_TEST_LOSS[0] <= loss <= CPU_TEST_LOSS[1]
                  if self.mode == "gpu" else None, seconds, [*[f"    {line}" for line in lines + final]])

    def interrupt_and_resume(self, until):
        part = self.report.part("resume", f"Ctrl-C after epoch {self.sizes['stop_after_epoch']}, then the resume "
                                "command it prints", "ends where the uninterrupted run ends")
        start = time.monotonic()
        out = self.work / "stopped"
        limit = min(150, self.left(until))
        if limit < 5:
            return part.done("no time left", False, None)
        errors = self.work / "stopped.stderr"
        with open(errors, "w") as stderr_file:
            process = subprocess.Popen(self.train_args(out), cwd=REPO, env=self.env, stdout=subprocess.PIPE,
                                       stderr=stderr_file, text=True, start_new_session=True)
            timer = threading.Timer(limit, lambda: os.killpg(process.pid, signal.SIGKILL))
            timer.start()
            printed, sent = [], False
            for line in process.stdout:  # the epoch lines, as they come
                printed.append(line.rstrip())
                if not sent and re.match(rf"^epoch +{self.sizes['stop_after_epoch']}/", line):
                    time.sleep(self.sizes["stop_delay"])  # into the next epoch: a stop mid-epoch
                    process.send_signal(signal.SIGINT)
                    sent = True
            code = process.wait()
            timer.cancel()
        stderr = errors.read_text()
        said = re.search(r"interrupted; (.*) holds (.*?)(?: \(.*\))?; resume with: (.*)$", stderr, re.MULTILINE)
        if code != 130 or not said:
            return part.done(f"the stop did not work as documented (exit {code})", False, time.monotonic() - start,
                             [*printed[-5:], *stderr.splitlines()[-5:]])
        words = shlex.split(said.group(3))
        if words[:2] != ["python", "-m"]:
            return part.done(f"unexpected resume command: {said.group(3)}", False, time.monotonic() - start)
        code, output, _ = self.run(self.command(words[2], *words[3:]), 150, until)
        seconds = time.monotonic() - start
        if code != 0:
            return part.done(f"the resume failed ({code})", False, seconds, tail(output))
        same, differences = same_run(self.work / "whole", out)
        part.done(f"stopped at {said.group(2)}; the resumed run ends {'bit for bit ' if same else 'NOT '}where the "
                  "uninterrupted one ends", same, seconds,
                  [f"stop: {said.group(0)}", *[f"- {line}" for line in differences]])

    # ---- 5. the demos

    def demos(self, until):
        part = self.report.part("demos", "every demo with --quick on the GPU", "all run")
        names = self.sizes["demos"] or sorted(p.name for p in (REPO / "demos").glob("*.py")
                                              if not p.name.startswith("_"))
        start = time.monotonic()

        def one(name):
            args = [] if name == "step_through.py" else ["--quick", "--out", str(self.work / "demos" / name)]
            code, output, seconds = self.run(self.command(str(REPO / "demos" / name), *args), 180, until)
            lines = output.strip().splitlines()
            return name, code, seconds, lines[-1] if lines else "", output

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(one, names))
        ran = [r for r in results if r[1] == 0]
        details = [f"- {name}: {'ok' if code == 0 else f'FAILED ({code})'} in {s:.0f} s; last line: {last[:150]}"
                   for name, code, s, last, _ in results]
        for name, code, _, _, output in results:
            if code != 0:
                details += ["", f"{name}:", *tail(output, 15)]
        part.done(f"{len(ran)} of {len(results)} ran", len(ran) == len(results), time.monotonic() - start, details)

    # ---- 6. the bench, alone

    def bench(self):
        part = self.report.part("bench", "bench --device gpu --against torch", "step <= 1.0x PyTorch eager (MLP, "
                                "batch 128 and 8192), <= 1.5x (convnet)")
        start, rows, details, verdicts = time.monotonic(), [], [], []
        for name, extra in self.sizes["bench"].items():
            extra = extra + (["--data-dir", self.data] if self.sizes["bench_data"] else SMALL_BENCH)
            command = self.command("minivae.bench", "--device", "gpu", "--against", "torch", *extra)
            code, output, seconds = self.run(command, 120)
            figures = bench_figures(output)
            goal = BENCH_GOALS.get(name)
            met = None if goal is None or "ratio" not in figures else figures["ratio"] <= goal
            verdicts += [False] if code != 0 else [] if goal is None else [met]
            rows.append(f"| {name} | {figures.get('samples', '-')} | {figures.get('torch_samples', '-')} | "
                        f"{figures.get('ratio', '-')} | {'-' if goal is None else f'<= {goal}'} | "
                        f"{figures.get('epoch_ratio', '-')} | {figures.get('floor_ratio', '-')} | {seconds:.0f} |")
            details += ["", f"### {name}: `{shlex.join(command)}` exited {code}", "",
                        *[f"    {line}" for line in output.strip().splitlines()[-25:]]]
        table = ["| setup | minivae samples/s | PyTorch samples/s | step ratio | goal | epoch ratio | step/floor | s |",
                 "| --- | --- | --- | --- | --- | --- | --- | --- |", *rows]
        ok = False if False in verdicts else None if None in verdicts or not verdicts else True  # None: no PyTorch
        part.done(f"{len(rows)} setups timed (table below)", ok, time.monotonic() - start, table + details)

    # ---- all of it

    def all(self):
        self.environment()
        self.report.write()
        self.install()
        parallel_until = self.deadline - BENCH_RESERVE
        checks = [("pytest", self.pytest), ("gradcheck", self.gradcheck), ("compare", self.compare),
                  ("train", self.train), ("demos", self.demos)]
        for key in ("pytest", "gradcheck", "compare", "train", "resume", "demos", "bench"):
            self.report.part(key, key)  # the summary's order, before any has finished
        with ThreadPoolExecutor(len(checks) + 1) as pool:
            futures = [pool.submit(self.guarded, key, function, parallel_until) for key, function in checks]
            futures.append(pool.submit(self.guarded, "resume", self.interrupt_and_resume_after_train, parallel_until,
                                       futures[3]))
            for future in futures:
                future.result()
        self.guarded("bench", self.bench)
        self.report.write()
        print(f"\nwrote {self.report.path}\n")
        print(self.report.render())
        return 0 if all(part.ok is not False for part in self.report.parts.values()) else 1

    def interrupt_and_resume_after_train(self, until, train_done):
        train_done.result()  # the uninterrupted run first: the stopped one is compared with it
        self.interrupt_and_resume(until)


# ---------------------------------------------------------------- helpers


def tail(output, lines=30):
    return ["    " + line for line in output.strip().splitlines()[-lines:]]


def has_module(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None


def bench_figures(output):
    """The bench's figures from its printed lines (absent ones left out)."""
    figures = {}
    patterns = {"samples": r"^train step: .* (\d+) samples/s", "torch_samples": r"^torch step: .* (\d+) samples/s",
                "ratio": r"^minivae/torch step ratio: ([\d.]+)", "epoch_ratio": r"^minivae/torch epoch ratio: ([\d.]+)",
                "floor_ratio": r"^step/floor ratio: ([\d.]+)"}
    for key, pattern in patterns.items():
        found = re.search(pattern, output, re.MULTILINE)
        if found:
            figures[key] = float(found.group(1)) if "ratio" in key else int(found.group(1))
    return figures


def same_run(whole, stopped):
    """Whether two run folders hold the same checkpoint (every parameter and optimizer array, bit for bit) and the
    same per-epoch losses in metrics.json. Returns (same, the differences found, in words)."""
    import numpy as np

    differences = []
    with np.load(whole / "checkpoint.npz") as a, np.load(stopped / "checkpoint.npz") as b:
        keys = [key for key in a.files if key.startswith(("param/", "optim/"))]
        if sorted(keys) != sorted(key for key in b.files if key.startswith(("param/", "optim/"))):
            differences.append("the checkpoints hold different arrays")
        for key in keys:
            if key in b.files and not np.array_equal(a[key], b[key]):
                diff = np.max(np.abs(a[key].astype(np.float64) - b[key].astype(np.float64)))
                differences.append(f"{key} differs by up to {diff:.3g}")
    histories = [json.loads((folder / "metrics.json").read_text())["history"] for folder in (whole, stopped)]
    for one, other in zip(*histories, strict=False):
        for phase in ("train", "test"):
            if one[phase] != other[phase]:
                differences.append(f"epoch {one['epoch']}'s {phase} losses: {one[phase]} against {other[phase]}")
    if len(histories[0]) != len(histories[1]):
        differences.append(f"{len(histories[0])} epochs against {len(histories[1])}")
    return not differences, differences or [f"all {len(keys)} arrays and every epoch's losses are equal"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the folder with Fashion-MNIST's four IDX files (.gz)")
    parser.add_argument("--report", default="gpu_check.md", help="the report file to write (default gpu_check.md)")
    parser.add_argument("--stand-in", action="store_true", help="run the parts, smaller, on the CuPy stand-in with "
                        "emulated kernels instead of a GPU (to test this script)")
    parser.add_argument("--no-install", action="store_true", help="skip the pip install (minivae runs from "
                        "PYTHONPATH, which points at this repository)")
    return Check(parser.parse_args(argv)).all()


if __name__ == "__main__":
    sys.exit(main())
