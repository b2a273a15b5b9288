"""Part 3 of scripts/gpu_check.py, in its own process: the default model's first training steps on the CPU and on
the GPU, through the training loop itself, and their largest differences.

    python scripts/compare_steps.py --data shared/data/fashion-mnist --steps 100

Both runs start from the same weights (drawn on the host) and see the same batches and the same sampler noise
(drawn on the host too: run/seeds.py), so what differs is only the arithmetic: cuBLAS's products and CUDA's exp
and log against the CPU's, rounding otherwise. It prints one line, COMPARE {json}, that gpu_check.py reads.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def compare_steps(data_dir, steps):
    """The default model's first `steps` training steps on the CPU, then on the GPU, through the training loop
    itself (run/training.py: the same batches and noise on both), from the same initial weights. Prints one line
    COMPARE {json} with the largest differences."""
    import numpy as np

    from minivae.core import backend
    from minivae.run import data, presets, start, training

    try:
        backend.use_device("gpu")  # before minutes on the CPU: a GPU that cannot run is one line, at once
    except backend.BackendError as err:
        sys.exit(f"error: {err}")
    config = presets.config_for("default", dataset="fashion-mnist", epochs=1)
    dataset = data.load("fashion-mnist", data_dir, download=False, binarize=config["binarize"], seed=config["seed"],
                        validation=config["validation"])
    runs = {}
    for device in ("cpu", "gpu"):
        backend.use_device(device)
        run_config, model, optimizer, state = start.begin(config, dataset)
        losses, model_step, optimizer_step = [], model.step, optimizer.step

        def recorded(*args, model_step=model_step, losses=losses, **kwargs):
            loss = model_step(*args, **kwargs)
            losses.append(loss.loss)
            return loss

        def then_stop(grads, optimizer_step=optimizer_step, losses=losses, state=state):
            optimizer_step(grads)
            state.stop_requested = len(losses) >= steps  # the loop stops before the next step

        model.step, optimizer.step = recorded, then_stop
        with tempfile.TemporaryDirectory() as out:
            try:
                training.train(model, optimizer, dataset, run_config, state, Path(out))
            except KeyboardInterrupt:
                pass
        runs[device] = np.array(losses), {k: backend.to_numpy(v).astype(np.float64) for k, v in model.params.items()}
    (cpu_losses, cpu_params), (gpu_losses, gpu_params) = runs["cpu"], runs["gpu"]
    loss_gap = np.abs(cpu_losses - gpu_losses)
    worst = int(np.argmax(loss_gap))
    gaps = {name: float(np.max(np.abs(cpu_params[name] - gpu_params[name]))) for name in cpu_params}
    name = max(gaps, key=gaps.get)
    print("COMPARE " + json.dumps({
        "loss_diff": float(loss_gap[worst]), "loss_rel": float(loss_gap[worst] / abs(cpu_losses[worst])),
        "loss_step": worst + 1, "cpu_first": float(cpu_losses[0]), "gpu_first": float(gpu_losses[0]),
        "cpu_last": float(cpu_losses[-1]), "gpu_last": float(gpu_losses[-1]), "param_diff": gaps[name],
        "param_name": name, "param_rel": gaps[name] / float(np.max(np.abs(cpu_params[name]))),
        "per_param": {k: float(f"{v:.3g}") for k, v in gaps.items()}}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the folder with Fashion-MNIST's four IDX files (.gz)")
    parser.add_argument("--steps", type=int, default=100, help="training steps compared (default 100)")
    args = parser.parse_args()
    compare_steps(args.data, args.steps)


if __name__ == "__main__":
    main()
