"""Part of the bench, on a GPU: what one training step makes the GPU do. `python -m minivae.bench --device gpu`
prints, for minivae's step and PyTorch's:

    kernels per step, minivae: N launches (P products, C copies); the GPU is busy B ms (products ..., other
    kernels ..., copies ...) and waits W ms of the S ms step for Python and the launches

A step is fast on a GPU when the GPU is busy most of it: each
kernel launch costs the host several microseconds of Python and driver, and while the host prepares the next
launch a small kernel has long finished. The launches are counted by PyTorch's profiler: its CUPTI tracing sees
every kernel the process launches, CuPy's as well as PyTorch's own. The products are cuBLAS's kernels, known by
their names; the copies are CUPTI's memcpy and memset records (a loss read back to the host is one).
"""

import re

# cuBLAS's kernels, by the names profilers show (sgemm, xmma_gemm, cutlass::Kernel, gemv2T_kernel, splitKreduce, ...)
PRODUCT_KERNEL = re.compile(r"gemm|gemv|cutlass|xmma|cublas|splitk|dot_kernel", re.IGNORECASE)
COPY = re.compile(r"^mem(cpy|set)", re.IGNORECASE)  # CUPTI's names for copies and fills: "Memcpy HtoD (...)"


def split_kernels(device_events, calls):
    """What `calls` calls of a step made the GPU do, per call: device_events, (name, microseconds) of each kernel,
    copy and fill the profiler saw. Returns {"launches", "products", "copies"} (counts) and {"products_s",
    "kernels_s", "copies_s"} (seconds busy with the products, the other kernels, the copies)."""
    split = dict.fromkeys(("launches", "products", "copies", "products_s", "kernels_s", "copies_s"), 0.0)
    for name, microseconds in device_events:
        kind = "copies" if COPY.search(name) else "products" if PRODUCT_KERNEL.search(name) else "kernels"
        split["launches"] += 1
        if kind != "kernels":
            split[kind] += 1
        split[f"{kind}_s"] += microseconds * 1e-6
    return {key: value / calls for key, value in split.items()}


def measure(fn, sync, calls=20):
    """split_kernels of `calls` calls of fn (after one more to warm up; sync() waits for the GPU), recorded by
    PyTorch's profiler. None without PyTorch or without CUDA."""
    try:
        import torch
        from torch.autograd import DeviceType
        from torch.profiler import ProfilerActivity, profile
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    fn()
    sync()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as recorded:
        for _ in range(calls):
            fn()
        sync()
    events = [(event.name, event.time_range.elapsed_us()) for event in recorded.events()
              if event.device_type == DeviceType.CUDA]
    return split_kernels(events, calls)


def print_splits(steps, sync):
    """One line per contender: steps is {name: (step function, its median seconds)}."""
    for name, (fn, step_s) in steps.items():
        try:
            split = measure(fn, sync)
        except Exception as err:  # noqa: BLE001 (a profiler that cannot start must not cost the bench's other figures)
            print(f"kernels per step: (PyTorch's profiler failed: {type(err).__name__}: {str(err)[:200]})")
            return
        if split is None:
            print("kernels per step: (PyTorch with CUDA is needed to count them: its profiler does)")
            return
        print(split_line(name, split, step_s))


def split_line(name, split, step_s):
    busy = split["products_s"] + split["kernels_s"] + split["copies_s"]
    return (f"kernels per step, {name}: {split['launches']:.0f} launches ({split['products']:.0f} products, "
            f"{split['copies']:.0f} copies); the GPU is busy {busy * 1e3:.3f} ms (products "
            f"{split['products_s'] * 1e3:.3f}, other kernels {split['kernels_s'] * 1e3:.3f}, copies "
            f"{split['copies_s'] * 1e3:.3f}) and waits {max(step_s - busy, 0) * 1e3:.3f} ms of the {step_s * 1e3:.3f} "
            f"ms step for Python and the launches")
