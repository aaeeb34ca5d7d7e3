"""The kernels' instruction-set levels (src/cpp/isa.h): every level this CPU runs, side by side.

A portable build compiles each kernel file for "baseline", "avx2" and "avx512" and runs the
highest the CPU has; PTBFAST_ISA (or ops.set_kernels_isa) chooses a lower one. Here every level the
CPU runs computes the same results as the active one: bit for bit where the inputs make the
arithmetic exact (integer-valued floats, as faiss tests its SIMD code: sums of small integers are
exact in float32 in any order; rounding to bf16 is exact by definition), and within 1e-5 (float32's
rounding, summed in another order or with FMA contraction) for the LSTM and the output layer.
The kernels' own tests run under each level too: CI runs them with PTBFAST_ISA set to each level.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import ptbfast
from ptbfast import ops

from helpers import f32, max_rel_error

LEVELS = ops.supported_isas()


@pytest.fixture
def at_level():
    """at_level(name): run the kernels at that level for the rest of the test."""
    before = ops.kernels_isa()
    yield ops.set_kernels_isa
    ops.set_kernels_isa(before)


def run_everything(rng_seed=0):
    """Every kernel once, on integer-valued inputs where that makes the result exact."""
    rng = np.random.default_rng(rng_seed)
    ints = lambda *shape: rng.integers(-8, 9, shape).astype(np.float32)  # noqa: E731
    out = {}
    emb, ids = ints(37, 19), rng.integers(0, 37, (5, 7))
    out["embedding"] = ptbfast.embedding_lookup(emb, ids)
    unique, summed = ops.merge_duplicate_ids(ids, ints(5, 7, 19))
    out["scatter_ids"], out["scatter_rows"] = unique, summed
    y = ints(1001)
    ops.sgd_update(y, ints(1001), 3.0)
    out["sgd_update"] = y
    out["sum_of_squares"] = np.float64(ops.sum_of_squares(ints(40_003)))  # (integer squares: exact in double)
    out["dropout_mask"] = ops.dropout_mask((7, 149), 2**63 + 5, 2, 0.4)
    out["round_bf16"] = ops.round_bf16(rng.standard_normal(1003).astype(np.float32) * 1e3)
    T, B, In, H = 5, 3, 17, 21
    x, s = f32(rng, T, B, In), f32(rng, B, H, scale=0.5)
    kernel, bias = f32(rng, In + H, 4 * H, scale=0.2), f32(rng, 4 * H, scale=0.1)
    h_all, c_all, gates = ops.lstm_forward(x, s, s, kernel, bias, 1.0)
    out["lstm_h"] = h_all
    out["lstm_grads"] = ops.lstm_backward(f32(rng, T, B, H), None, None, x, s, s, kernel, h_all, c_all, gates)
    h, w, b = f32(rng, 30, 16), f32(rng, 16, 70, scale=0.3), f32(rng, 70, scale=0.1)
    out["output_layer"] = ops.output_layer_loss_and_grads(h, w, b, rng.integers(0, 70, 30), 0.5)
    return out


EXACT = ("embedding", "scatter_ids", "scatter_rows", "sgd_update", "sum_of_squares", "dropout_mask", "round_bf16")


@pytest.mark.parametrize("level", LEVELS)
def test_every_level_this_cpu_runs_agrees_with_the_active_one(level, at_level):
    want = run_everything()
    at_level(level)
    assert ops.kernels_isa() == level and ptbfast.build_info()["kernels_isa"] == level
    got = run_everything()
    for name in EXACT:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert max_rel_error(got["lstm_h"], want["lstm_h"]) <= 1e-5
    for g, w in zip(got["lstm_grads"], want["lstm_grads"]):
        assert max_rel_error(g, w) <= 1e-5
    for g, w in zip(got["output_layer"][1:], want["output_layer"][1:]):
        assert max_rel_error(g, w) <= 1e-5


def test_the_active_level_is_the_highest_this_cpu_runs_unless_chosen():
    info = ptbfast.build_info()
    assert LEVELS and set(LEVELS) <= set(info["kernels_isas"])
    if not os.environ.get("PTBFAST_ISA"):
        assert info["kernels_isa"] == LEVELS[-1]
    if info["isa_flags"]:  # a -march=native build: one level
        assert info["kernels_isas"] == ["native"]


def test_a_level_beyond_the_cpu_or_unknown_is_refused(at_level):
    beyond = [name for name in ptbfast.build_info()["kernels_isas"] if name not in LEVELS]
    for name in beyond:
        with pytest.raises(ValueError, match="beyond this CPU, which runs: " + ", ".join(LEVELS)):
            at_level(name)
    with pytest.raises(ValueError, match="must be one of this build's"):
        at_level("sse9")


def test_the_environment_variable_chooses_the_level_at_import():
    code = "import ptbfast; print(ptbfast.build_info()['kernels_isa'])"
    env = {**os.environ, "PTBFAST_ISA": LEVELS[0]}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stdout.strip() == LEVELS[0], done.stderr
    env["PTBFAST_ISA"] = "sse9"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode != 0 and "ValueError: PTBFAST_ISA='sse9'" in done.stderr  # (an import: the traceback)
    # The command says it in one line, as its other errors.
    done = subprocess.run([sys.executable, "-m", "ptbfast", "info"], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and done.stdout == "", done.stdout
    assert done.stderr.startswith("error: PTBFAST_ISA='sse9': ") and done.stderr.count("\n") == 1, done.stderr
