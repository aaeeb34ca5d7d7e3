"""The LSTM layer kernel (forward and backward through time) against the NumPy reference.

The reference runs in float64 on the same float32 inputs; the kernel's float32 results must be
within 1e-5 in the max-norm relative error of tests/helpers.py.
"""

import os
import sys

import numpy as np
import pytest

from ptbfast import ops
from ptbfast import reference as ref

from helpers import ONE_ROW_SETTING, f32, f64, max_rel_error, on_one_row_loops_at_thread_counts

TOL = 1e-5

SHAPES = [  # (T, B, In, H): SIMD tails, size 1, empty, In != H
    (1, 1, 1, 1), (3, 2, 5, 5), (4, 3, 17, 17), (2, 5, 16, 33), (5, 1, 7, 3),
    (0, 2, 4, 4), (3, 0, 4, 4), (6, 20, 40, 24),
    # Large enough (B*H*4H >= 2^16) for the threaded time loop (at 2 and 3 threads): units split
    # 16 + 1; one thread with no units at all; batch 1 (TF's test pass); T < 8 runs unpacked.
    (9, 64, 10, 17), (8, 300, 3, 9), (10, 1, 200, 200), (3, 64, 5, 17),
    (2, 4100, 3, 2),  # (fewer steps than packing pays for, threaded, fewer unit vectors than threads)
]


def random_layer(rng, T, B, In, H, scale=1.0):
    x = f32(rng, T, B, In)
    c0, h0 = f32(rng, B, H, scale=0.5), f32(rng, B, H, scale=0.5)
    kernel = f32(rng, In + H, 4 * H, scale=scale / np.sqrt(In + H))
    bias = f32(rng, 4 * H, scale=0.1)
    return x, c0, h0, kernel, bias


@pytest.fixture(params=[1, 2, 3])
def threads(request):
    """The time loop splits units over as many threads as OpenMP gives it, so the split is tested at
    1, 2 and 3 threads whatever the machine has (3: a split that is not a power of two)."""
    import ptbfast

    before = ptbfast.get_num_threads()
    ptbfast.set_num_threads(request.param)
    yield request.param
    ptbfast.set_num_threads(before)


@pytest.mark.parametrize("T,B,In,H", SHAPES)
@pytest.mark.parametrize("forget_bias", [0.0, 1.0])
def test_forward_and_backward_match_reference(T, B, In, H, forget_bias, threads):
    rng = np.random.default_rng(T * 100 + B * 10 + H)
    x, c0, h0, kernel, bias = random_layer(rng, T, B, In, H)
    h_all, c_all, gates = ops.lstm_forward(x, c0, h0, kernel, bias, forget_bias)
    ref_h, (ref_c_T, ref_h_T), cache = ref.lstm_layer_forward(*f64(x, c0, h0, kernel, bias), forget_bias)
    assert h_all.shape == (T, B, H) and c_all.shape == (T, B, H) and gates.shape == (T, B, 4 * H)
    assert max_rel_error(h_all, ref_h) <= TOL
    if T:
        assert max_rel_error(c_all[-1], ref_c_T) <= TOL

    d_h_all, d_c_T, d_h_T = f32(rng, T, B, H), f32(rng, B, H), f32(rng, B, H)
    got = ops.lstm_backward(d_h_all, d_c_T, d_h_T, x, c0, h0, kernel, h_all, c_all, gates)
    want = ref.lstm_layer_backward(*f64(d_h_all, d_c_T, d_h_T), cache)
    for name, a, b in zip(("dx", "dc0", "dh0", "dkernel", "dbias"), got, want):
        assert a.shape == b.shape, name
        assert max_rel_error(a, b) <= TOL, name


# ---- batch 1: the float32 recurrent product of one row (src/cpp/row_product.h) -------------------

# (T, In, H): from PACKED_MIN_USES steps on, ptbfast's panels (H gives each thread's 4n columns as
# whole panels of 32 and as tails, one unit, odd rows: K = H); fewer steps (generation: one), Wh read
# in place, a gate's columns in whole and partial vectors of 8 and row counts either side of 8; 1 to 3 threads.
ONE_ROW_SHAPES = [(8, 5, 200), (9, 7, 33), (8, 1, 1), (12, 3, 17), (10, 40, 72), (7, 5, 200), (8, 3, 130),
                  (1, 5, 200), (1, 1, 1), (1, 9, 7), (2, 3, 17), (3, 40, 72), (1, 7, 130), (1, 16, 8)]


@pytest.mark.parametrize("T,In,H", ONE_ROW_SHAPES)
def test_batch_one_matches_reference_on_either_route(T, In, H, one_row_route, threads):
    from ptbfast import _core

    rng = np.random.default_rng(T * 1000 + In * 10 + H)
    x, c0, h0, kernel, bias = random_layer(rng, T, 1, In, H)
    runs = _core._one_row_recurrent_product_runs()
    h_all, c_all, gates = ops.lstm_forward(x, c0, h0, kernel, bias, 1.0)
    # the route taken: ptbfast's loops, when asked for
    took_loop = one_row_route == "ptbfast"
    assert _core._one_row_recurrent_product_runs() - runs == took_loop
    ref_h, (ref_c_T, _), cache = ref.lstm_layer_forward(*f64(x, c0, h0, kernel, bias), 1.0)
    assert max_rel_error(h_all, ref_h) <= TOL
    assert max_rel_error(c_all[-1], ref_c_T) <= TOL
    d_h_all, d_c_T, d_h_T = f32(rng, T, 1, H), f32(rng, 1, H), f32(rng, 1, H)
    got = ops.lstm_backward(d_h_all, d_c_T, d_h_T, x, c0, h0, kernel, h_all, c_all, gates)
    want = ref.lstm_layer_backward(*f64(d_h_all, d_c_T, d_h_T), cache)
    for name, a, b in zip(("dx", "dc0", "dh0", "dkernel", "dbias"), got, want):
        assert max_rel_error(a, b) <= TOL, name


@pytest.mark.parametrize("T", [9, 1, 3])  # (on panels; in place, with the input product of one row on ptbfast's too)
def test_batch_one_on_ptbfast_does_not_depend_on_the_thread_count(T):
    """Each column's sum is one thread's, in row order, however the units are split (the BLAS's
    products need not promise that)."""
    rng = np.random.default_rng(5)
    x, c0, h0, kernel, bias = random_layer(rng, T, 1, 30, 150)
    # x @ Wx, the BLAS's input projection, exact (small integers times 1/64), so that only the
    # recurrent products could differ by thread count
    x = rng.integers(-3, 4, x.shape).astype(np.float32)
    kernel[:30] = rng.integers(-8, 9, (30, 600)).astype(np.float32) / 64
    results = on_one_row_loops_at_thread_counts(lambda: ops.lstm_forward(x, c0, h0, kernel, bias, 0.0))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_auto_runs_batch_one_on_ptbfast_on_amd_cpus_from_the_avx2_level():
    import ptbfast

    ops.set_one_row_products("auto")
    level = ops.kernels_isa()
    try:
        for isa in ops.supported_isas():
            ops.set_kernels_isa(isa)
            info = ptbfast.build_info()
            expected = "ptbfast" if info["cpu_vendor"] == "AuthenticAMD" and isa != "baseline" else "blas"
            assert info["one_row_products"] == info["one_row_recurrent_products"] == expected, isa
        assert ops.one_row_products() == ops.one_row_recurrent_products() == "auto"
    finally:
        ops.set_kernels_isa(level)
        ops.set_one_row_products(ONE_ROW_SETTING)


def test_one_row_products_setting_refuses_other_names_here_and_at_import():
    import subprocess

    for setter in (ops.set_one_row_products, ops.set_one_row_recurrent_products):  # (and its former name)
        with pytest.raises(ValueError, match="auto"):
            setter("mkl")
    assert ops.one_row_products() == ONE_ROW_SETTING
    code = "import ptbfast; print(ptbfast.build_info()['one_row_products'])"
    env = {**os.environ, "PTBFAST_ONE_ROW_PRODUCTS": "fast"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode != 0 and "PTBFAST_ONE_ROW_PRODUCTS='fast'" in done.stderr
    env["PTBFAST_ONE_ROW_PRODUCTS"] = "blas"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "blas"


def test_saturated_gates():
    # Pre-activations of +-30 saturate sigmoid and tanh: derivatives must be ~0, never NaN.
    rng = np.random.default_rng(7)
    x, c0, h0, kernel, bias = random_layer(rng, 4, 3, 8, 8, scale=60.0)
    h_all, c_all, gates = ops.lstm_forward(x, c0, h0, kernel, bias, 0.0)
    ref_h, _, cache = ref.lstm_layer_forward(*f64(x, c0, h0, kernel, bias))
    assert max_rel_error(h_all, ref_h) <= TOL
    got = ops.lstm_backward(np.ones_like(h_all), None, None, x, c0, h0, kernel, h_all, c_all, gates)
    want = ref.lstm_layer_backward(np.ones(h_all.shape), None, None, cache)
    for a, b in zip(got, want):
        assert np.isfinite(a).all()
        assert max_rel_error(a, b) <= TOL


def test_final_state_gradients_default_to_zero():
    rng = np.random.default_rng(8)
    x, c0, h0, kernel, bias = random_layer(rng, 3, 2, 4, 4)
    h_all, c_all, gates = ops.lstm_forward(x, c0, h0, kernel, bias)
    d = f32(rng, 3, 2, 4)
    zeros = np.zeros((2, 4), np.float32)
    a = ops.lstm_backward(d, None, None, x, c0, h0, kernel, h_all, c_all, gates)
    b = ops.lstm_backward(d, zeros, zeros, x, c0, h0, kernel, h_all, c_all, gates)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_zero_steps_pass_the_state_gradient_through():
    rng = np.random.default_rng(9)
    x, c0, h0, kernel, bias = random_layer(rng, 0, 2, 3, 3)
    h_all, c_all, gates = ops.lstm_forward(x, c0, h0, kernel, bias)
    d_c_T, d_h_T = f32(rng, 2, 3), f32(rng, 2, 3)
    dx, dc0, dh0, dkernel, dbias = ops.lstm_backward(
        np.zeros((0, 2, 3), np.float32), d_c_T, d_h_T, x, c0, h0, kernel, h_all, c_all, gates)
    np.testing.assert_array_equal(dc0, d_c_T)
    np.testing.assert_array_equal(dh0, d_h_T)
    assert not dkernel.any() and not dbias.any() and dx.shape == (0, 2, 3)


def test_nan_in_input_propagates():
    rng = np.random.default_rng(10)
    x, c0, h0, kernel, bias = random_layer(rng, 2, 2, 3, 3)
    x[1, 0, 0] = np.nan
    h_all, _, _ = ops.lstm_forward(x, c0, h0, kernel, bias)
    assert np.isfinite(h_all[0]).all() and np.isnan(h_all[1, 0]).all() and np.isfinite(h_all[1, 1]).all()



# ---- a thread failing inside the time loop ------------------------------------------------------

@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("thread,barrier", [(0, 0), (1, 0), (2, 4), (1, 8)])
def test_a_thread_failing_in_the_time_loop_raises_memory_error(thread, barrier, direction, bf16, threads):
    """A std::bad_alloc on one thread of the time loop's parallel region (packing its columns, a
    product's scratch) must come out as MemoryError, not end the process (std::terminate) or leave
    the other threads at a barrier; the next call is right. The failure is injected at a barrier
    (_core._fail_lstm_time_loop): thread 0 always runs the loop; threads 1 and 2 exist where it is
    threaded (MKL, or bf16 on ptbfast's kernels, at 2 or 3 threads)."""
    import faulthandler

    import ptbfast

    from ptbfast import _core

    info = ptbfast.build_info()
    reason = ops.fewer_threads_reason(threads)
    if thread > 0 and reason and info["openmp_dynamic"]:  # (a team shrunk by load may have no thread `thread`)
        pytest.skip(f"thread {thread} may not run: {reason}")
    T, B, In, H = 9, 64, 10, 17  # threaded (B*H*4H >= 2^16), 9 barriers
    rng = np.random.default_rng(12)
    x, c0, h0, kernel, bias = random_layer(rng, T, B, In, H)
    if bf16:
        x = ops.round_bf16(x)
    d_h_all = f32(rng, T, B, H)

    def run():
        h_all, c_all, gates = ops.lstm_forward(x, c0, h0, kernel, bias, 0.0, bf16)
        return ops.lstm_backward(d_h_all, None, None, x, c0, h0, kernel, h_all, c_all, gates, bf16)

    want = run()
    h_all, c_all, gates = ops.lstm_forward(x, c0, h0, kernel, bias, 0.0, bf16)
    # (threads left at a barrier: fail, don't hang; to the real stderr, which pytest's capture may replace)
    faulthandler.dump_traceback_later(120, exit=True, file=sys.__stderr__)
    try:
        _core._fail_lstm_time_loop(thread, barrier)
        try:
            if direction == "forward":
                ops.lstm_forward(x, c0, h0, kernel, bias, 0.0, bf16)
            else:
                ops.lstm_backward(d_h_all, None, None, x, c0, h0, kernel, h_all, c_all, gates, bf16)
            raised = False
        except MemoryError:
            raised = True
    finally:
        faulthandler.cancel_dump_traceback_later()
        still_to_come = _core._fail_lstm_time_loop(-1, -1)  # (disarmed whatever the call raised)
    assert raised != still_to_come  # raised exactly where a thread reached the failure
    # The loop runs on all `threads` where each thread may run its products inside the region (MKL's,
    # or bf16 on ptbfast's kernels), else on one (lstm.cpp's time_loop_threads): there thread k exists.
    own_products = bf16 and ops.bf16_recurrent_kernel(B) != "sgemm"
    team = threads if own_products or info["blas"] == "mkl" else 1
    team = ops.threads_within_limit(team)  # (OMP_THREAD_LIMIT caps every team)
    assert raised == (thread < team)
    for a, b in zip(run(), want):
        np.testing.assert_array_equal(a, b)


# ---- bad input -----------------------------------------------------------------------------------

def test_shape_and_dtype_errors():
    rng = np.random.default_rng(11)
    x, c0, h0, kernel, bias = random_layer(rng, 2, 3, 4, 5)
    with pytest.raises(ValueError, match="kernel has 8 rows"):
        ops.lstm_forward(x, c0, h0, kernel[:8], bias)
    with pytest.raises(ValueError, match=r"kernel must have shape \(In\+H, 4H\)"):
        ops.lstm_forward(x, c0, h0, np.ascontiguousarray(kernel[:, :19]), bias)
    with pytest.raises(ValueError, match="bias"):
        ops.lstm_forward(x, c0, h0, kernel, bias[:-1])
    with pytest.raises(ValueError, match="c0"):
        ops.lstm_forward(x, c0[:2], h0, kernel, bias)
    with pytest.raises(ValueError, match="x must have 3 dimensions"):
        ops.lstm_forward(x[0], c0, h0, kernel, bias)
    with pytest.raises(TypeError, match="float32"):
        ops.lstm_forward(x.astype(np.float64), c0, h0, kernel, bias)
    np.testing.assert_array_equal(ops.lstm_forward(np.asfortranarray(x), c0, h0, kernel, bias)[0],
                                  ops.lstm_forward(x, c0, h0, kernel, bias)[0])  # copied to C order
    h_all, c_all, gates = ops.lstm_forward(x, c0, h0, kernel, bias)
    with pytest.raises(ValueError, match="gates"):
        ops.lstm_backward(h_all, None, None, x, c0, h0, kernel, h_all, c_all, gates[:, :, :4])
    with pytest.raises(ValueError, match="d_c_T"):
        ops.lstm_backward(h_all, c0[:1], None, x, c0, h0, kernel, h_all, c_all, gates)
