"""``ptbfast.bench``: the FLOP count, and a failing measurement. (``bench --json``, the contract for
scripts, is a command-line test: tests/test_cli.py.)"""

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
