"""``python -m ptbfast bench``: the JSON contract for scripts, the FLOP count, and failures."""

import json
import subprocess
import sys

import pytest

from ptbfast import bench
from ptbfast.configs import get_config

from test_cli import light_env


def test_json_has_the_documented_fields_from_real_steps(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ptbfast", "bench", "--config", "test", "--steps", "2", "--json",
                           "--vocab-size", "50", "--hidden-size", "8", "--tie-weights", "--grad-norm", "dense"],
                          cwd=tmp_path, env=light_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("train_wps", "eval_wps", "eval_b1_wps", "peak_rss_mb", "train_gflops", "eval_gflops"):
        assert result[key] > 0, key
    assert result["impl"] == "ptbfast" and result["threads"] == 1


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
