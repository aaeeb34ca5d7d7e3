"""``ptbfast.bench``: the FLOP count, and a failing measurement. (``bench --json``, the contract for
scripts, is a command-line test: tests/test_cli.py.)"""

import json
import subprocess

import pytest

from ptbfast import bench
from ptbfast.configs import get_config


def test_flops_per_word_counts_the_matrix_products():
    small = get_config("small")  # TF small: 2 layers, H=200, V=10000
    forward = 2 * (2 * 400 * 800) + 2 * 200 * 10000
    assert bench.flops_per_word(small, train=False) == forward
    assert bench.flops_per_word(small) == 3 * forward == pytest.approx(15.9e6, rel=0.01)


def test_a_failing_measurement_reports_the_child_error(monkeypatch):
    def failing_run(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 2, stdout="", stderr="error: something broke inside")
    monkeypatch.setattr(bench.subprocess, "run", failing_run)
    monkeypatch.setattr(bench, "sgemm_peak_gflops", lambda: 100.0)
    with pytest.raises(bench.BenchError, match="something broke inside"):
        bench.run_table(["small"], 1, None, [])


def test_a_failing_pytorch_comparison_is_reported_and_the_table_printed(monkeypatch, capsys):
    ours = {"train_wps": 100.0, "eval_wps": 300.0, "eval_b1_wps": 50.0, "peak_rss_mb": 90.0, "train_gflops": 1.6,
            "eval_gflops": 3.2}

    def run(cmd, **kwargs):
        if cmd[cmd.index("--impl") + 1] == "torch":  # as PyTorch's bf16 LSTM fails on a CPU without AVX512-BF16
            return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="Traceback ...\nRuntimeError: no primitive")
        return subprocess.CompletedProcess(cmd, 0, stdout=json.dumps(ours) + "\n", stderr="")
    monkeypatch.setattr(bench.subprocess, "run", run)
    monkeypatch.setattr(bench, "sgemm_peak_gflops", lambda: 10.0)
    monkeypatch.setattr(bench, "torch_available", lambda: True)
    rows = bench.run_table(["small"], 1, None, ["--precision", "bf16"])
    out = capsys.readouterr().out
    assert rows[0]["ptbfast"] == ours and "torch" not in rows[0]
    assert "PyTorch could not measure small (exit 1): RuntimeError: no primitive" in out
    assert " 16%    32% " in out  # train and eval GFLOP/s against the peak


def test_the_gemm_table_times_every_kernel_here_both_ways(monkeypatch, capsys):
    from ptbfast import gemm_bench, ops
    from ptbfast.__main__ import main

    before = ops.bf16_products()
    result = gemm_bench.measure([(3, 5, 7), (1, 64, 40)], reps=1, warmup=0, with_torch=False)
    assert ops.bf16_products() == before
    per_call, packed = gemm_bench.timed_kernels()
    assert "generic" not in per_call and set(packed) <= set(per_call) <= set(ops.BF16_KERNELS_HERE)
    columns = ["sgemm", *(c for k in per_call for c in ([k, f"{k} packed"] if k in packed else [k]))]
    for row, name in zip(result["rows"], ("3x5@5x7", "1x64@64x40")):
        assert row["shape"] == name and list(row)[2:] == columns
        assert all(0 < row[c] < float("inf") for c in columns)
    assert set(result["peaks"]) == {"sgemm 2048^3", *(k for k in ("amx", "avx512_bf16") if k in ops.BF16_KERNELS_HERE)}
    table = gemm_bench.format_table(result)
    assert table.splitlines()[1].startswith("3x5@5x7 ") and table.count("% peak") == len(result["peaks"]) - 1
    # bench --gemm --json prints the same measurement as one JSON object.
    monkeypatch.setattr(gemm_bench, "GEMM_SHAPES", [(2, 3, 4)])
    assert main(["bench", "--gemm", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["shape"] for r in printed["rows"]] == ["2x3@3x4"]
