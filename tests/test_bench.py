"""The MLP benchmark runs and prints the figures its docstring promises (it measures; nothing here times)."""

import re

from minivae import bench


def test_mlp_bench_prints_throughput_floor_data_share_and_ratio(capsys, monkeypatch):
    monkeypatch.setattr(bench, "EPOCH", 2_000)  # a small epoch keeps the data measurement quick
    bench.main(["--batch-size", "16", "--hidden", "32", "--latent", "4", "--repeats", "1", "--inner", "2"])
    out = capsys.readouterr().out
    assert re.search(r"train step: +[\d.]+ ms +[\d.]+ steps/s +\d+ samples/s", out)
    assert re.search(r"matmul floor: +[\d.]+ ms", out)
    assert re.search(r"shuffling and batching \d+ ms more \([\d.]+% of the epoch\)", out)
    assert re.search(r"^step/floor ratio: \d+\.\d\d$", out, re.MULTILINE)
