"""``ptbfast.bench``: the FLOP count, and a failing measurement. (``bench --json``, the contract for
scripts, is a command-line test: tests/test_cli.py.)"""

import json
import subprocess
import warnings

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


def test_a_pytorch_measurement_that_fails_is_one_line(monkeypatch):
    # (PyTorch's bf16 LSTM has no oneDNN primitive on an AMD Zen 3: bench --json --impl torch printed its trace)
    def no_primitive(config, steps):
        raise RuntimeError("could not create a primitive descriptor for the LSTM forward propagation primitive\n"
                           "more detail")
    monkeypatch.setattr(bench, "measure_torch", no_primitive)
    with pytest.raises(bench.BenchError, match="^PyTorch could not measure bf16 here: could not create a primitive "
                                               "descriptor for the LSTM forward propagation primitive$"):
        bench.run_one(get_config("test", precision="bf16"), 1, "torch")


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

    monkeypatch.setattr(bench, "sgemm_peak_gflops", lambda: 100.0)  # (the peaks' loops take seconds)
    monkeypatch.setattr(ops, "bf16_peak_gflops", lambda kernel="": 200.0)
    before = ops.bf16_products()
    said = []
    result = gemm_bench.measure([(3, 5, 7), (1, 64, 40)], reps=1, warmup=0, with_torch=False,
                                progress=lambda *args: said.append(args))
    assert ops.bf16_products() == before and said == [(1, 2, "3x5@5x7"), (2, 2, "1x64@64x40")]
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


def test_precision_rounds_take_ratios_within_each_round(monkeypatch, capsys):
    # Round 2 runs on a machine twice as fast: every words/s doubles, the ratios stay.
    speeds = {("ptbfast", "fp32"): 100.0, ("ptbfast", "bf16"): 200.0, ("torch", "fp32"): 80.0, ("torch", "bf16"): 125.0}
    calls = []

    def run(cmd, **kwargs):
        key = (cmd[cmd.index("--impl") + 1], cmd[cmd.index("--precision") + 1])
        calls.append(key)
        scale = 1.0 if len(calls) <= 4 else 2.0
        out = {"train_wps": scale * speeds[key], "eval_wps": 3 * scale * speeds[key], "peak_rss_mb": 50.0}
        return subprocess.CompletedProcess(cmd, 0, stdout=json.dumps(out) + "\n", stderr="")
    monkeypatch.setattr(bench.subprocess, "run", run)
    monkeypatch.setattr(bench, "torch_available", lambda: True)
    rows = bench.run_precision_rounds(["small"], 1, 2, None, [])
    assert calls == bench.PRECISION_RUNS * 2  # alternated, round by round
    for row in rows:
        assert row["bf16/fp32 train"] == row["bf16/fp32 eval"] == 2.0
        assert row["vs torch bf16 train"] == 1.6 and row["vs torch fp32 eval"] == 1.25
    assert "small    median" in capsys.readouterr().out


def test_precision_rounds_go_on_without_a_failing_pytorch(monkeypatch, capsys):
    def run(cmd, **kwargs):
        if cmd[cmd.index("--impl") + 1] == "torch":
            return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="RuntimeError: no bf16 primitive")
        out = {"train_wps": 10.0, "eval_wps": 30.0, "peak_rss_mb": 50.0}
        return subprocess.CompletedProcess(cmd, 0, stdout=json.dumps(out) + "\n", stderr="")
    monkeypatch.setattr(bench.subprocess, "run", run)
    monkeypatch.setattr(bench, "torch_available", lambda: True)
    rows = bench.run_precision_rounds(["small"], 1, 1, None, [])
    assert rows[0]["bf16/fp32 train"] == 1.0 and "vs torch bf16 train" not in rows[0]
    out = capsys.readouterr().out
    assert out.count("PyTorch bf16 could not measure small (exit 1): RuntimeError: no bf16 primitive") == 1


def test_bench_precisions_refuses_one_precision(capsys):
    from ptbfast.__main__ import main
    assert main(["bench", "--precisions", "--precision", "bf16"]) != 0
    assert "drop --precision" in capsys.readouterr().err


def test_precision_rounds_print_configs_that_pytorch_measured_and_those_it_did_not(monkeypatch, capsys):
    def run(cmd, **kwargs):
        config, impl = cmd[cmd.index("--config") + 1], cmd[cmd.index("--impl") + 1]
        if impl == "torch" and config == "medium":
            return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="RuntimeError: out of memory")
        out = {"train_wps": 10.0, "eval_wps": 30.0, "peak_rss_mb": 50.0}
        return subprocess.CompletedProcess(cmd, 0, stdout=json.dumps(out) + "\n", stderr="")
    monkeypatch.setattr(bench.subprocess, "run", run)
    monkeypatch.setattr(bench, "torch_available", lambda: True)
    rows = bench.run_precision_rounds(["small", "medium"], 1, 2, None, [])
    assert [("vs torch bf16 train" in r) for r in rows] == [True, True, False, False]
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines[1:7]] == [["small", "1"], ["small", "2"], ["small", "median"],
                                                        ["medium", "1"], ["medium", "2"], ["medium", "median"]]
    assert lines[6].split()[-1] == "-" and lines[6].split()[-6] == "1.00x"  # (no PyTorch ratios: none taken)


def test_bench_ranks_names_threads_openmp_may_withhold(monkeypatch, capsys):
    """The children's warnings are not shown, so the parent says where the one-process run's
    ranks x threads are more than OpenMP may give (its words/s would be timed on fewer)."""
    from ptbfast import distributed, ops

    keys = ["masks_ms", "compute_ms", "pack_ms", "allreduce_ms", "allreduce_alone_ms", "gather_ms", "update_ms",
            "step_ms", "train_wps"]
    measured = dict(dict.fromkeys(keys, 1.0), allreduce_bytes=0, gather_bytes=0, mpi="MPICH")
    monkeypatch.setattr(bench, "_measure", lambda cmd, name: measured)
    monkeypatch.setattr(distributed, "mpiexec_command", lambda ranks, argv, mpiexec=None: ["mpiexec", *argv])
    monkeypatch.setattr(ops, "fewer_threads_reason", lambda n: f"capped below {n}" if n > 3 else None)
    with pytest.warns(RuntimeWarning, match="the one-process run's 4 threads asked for, but capped below 4"):
        bench.run_ranks_table(["test"], 1, 2, 2, [])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (3 threads: nothing to say)
        bench.run_ranks_table(["test"], 1, 3, 1, [])
    assert "1 x 3 threads" in capsys.readouterr().out
