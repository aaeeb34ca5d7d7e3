"""bf16 mixed precision: the rounding kernel, the LSTM and output-layer kernels and the whole model
against the NumPy reference's bf16 twin (ptbfast.reference rounds the same operands), and
against the fp32 reference with a looser bound.

Tolerances (max-norm relative, tests/helpers.py):
  * Against the bf16 twin (close_to_twin): the kernels and the twin round the same values, but the
    twin computes them in float64, so a value within a few float32 ulps of a bf16 rounding boundary
    can round the other way (a 2^-8 relative jump, which then propagates). Whether that happens
    depends on the float32 summation order, which differs by CPU and BLAS code path, so no fixed
    seed avoids it everywhere. The bound is therefore two-part: the largest error <= FLIP_TOL =
    2^-7 (the budget of one bf16 rounding step, two ulps; measured 2e-5 to 4e-3 where a flip
    happened), and the median element error <= TWIN_TOL = 1e-5 (a flip moves the elements it
    reaches, a missing or misplaced rounding moves all of them by ~2^-9).
  * FP32_TOL = 1e-2 against the fp32 reference: bf16 operands carry 8 significant bits, so
    products are off by about 2^-9 relative each (measured 4e-4 to 4e-3).
"""

import os
import platform
import sys
import warnings

import numpy as np
import pytest

import ptbfast
from ptbfast import ops
from ptbfast import reference as ref
from ptbfast.model import LSTMLanguageModel
from ptbfast.precision import Bf16PerformanceWarning

from helpers import f32, f64, max_rel_error

TWIN_TOL = 1e-5
FLIP_TOL = 2.0 ** -7
FP32_TOL = 1e-2

pytestmark = pytest.mark.filterwarnings("ignore::ptbfast.precision.Bf16PerformanceWarning")


@pytest.fixture(params=ops.BF16_KERNELS)
def bf16_products(request):
    """Each bf16 kernel test runs on every kernel of the bf16 GEMM table by name, whatever "auto"
    would choose on this CPU (so a test covers the same code on every machine that can run it):
    MKL's bf16 GEMM (emulated on CPUs without bf16 instructions), ptbfast's AVX512-BF16 kernel, SGEMM
    and the generic twin of the dot-product kernels."""
    if request.param not in ops.BF16_KERNELS_HERE:
        pytest.skip(f"this CPU or build cannot run the {request.param!r} bf16 kernel")
    before = ops.bf16_products()
    ops.set_bf16_products(request.param)
    yield request.param
    ops.set_bf16_products(before)


def close_to_twin(actual, expected) -> bool:
    """Within FLIP_TOL in the max norm and TWIN_TOL in the median element (see the top)."""
    if max_rel_error(actual, expected) > FLIP_TOL:
        return False
    expected = np.asarray(expected, dtype=np.float64)
    if expected.size == 0:
        return True
    diff = np.abs(np.asarray(actual, dtype=np.float64) - expected)
    scale = np.max(np.abs(expected)) or 1.0
    return float(np.median(diff)) / scale <= TWIN_TOL


def is_bf16(a) -> bool:
    """Every value has its low 16 bits zero (NaN aside)."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    return bool(np.all((bits & 0xFFFF) == 0))


# ---- rounding ------------------------------------------------------------------------------------

def test_rounding_matches_the_reference_bit_for_bit():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(200_001) * 10.0 ** rng.uniform(-44, 38, 200_001)).astype(np.float32)
    special = np.array([0.0, -0.0, np.inf, -np.inf, 3.4028235e38, -3.4028235e38, 1e-45, -1e-45, 1e-40,
                        1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, -(1 + 2**-8)], np.float32)
    for values in (x, special, x[:17], x[:1], x[:0], x[:1000].reshape(10, 100)):
        got = ops.round_bf16(values)
        assert got.shape == values.shape and got.dtype == np.float32
        np.testing.assert_array_equal(got.view(np.uint32), ref.round_bf16(values).view(np.uint32))
        assert is_bf16(got)


def test_rounding_is_to_nearest_even():
    one_ulp = 2.0 ** -7  # bf16's spacing just above 1; 3.4e38 lies past bf16's largest finite 3.39e38 + half a step
    values = np.array([1 + one_ulp / 2, 1 + 3 * one_ulp / 2, 1 + one_ulp / 2 + 2**-20, 3.4e38],
                      np.float32)
    np.testing.assert_array_equal(ops.round_bf16(values), np.array([1.0, 1 + 2 * one_ulp, 1 + one_ulp, np.inf],
                                                                   np.float32))


def test_nan_stays_nan_and_transposed_views_stay_views():
    nan_with_low_payload = np.array([0x7F800001], np.uint32).view(np.float32)  # would become inf if truncated
    assert np.isnan(ops.round_bf16(nan_with_low_payload)).all()
    assert np.isnan(ref.round_bf16(nan_with_low_payload)).all()
    w = np.random.default_rng(1).standard_normal((7, 5)).astype(np.float32)
    rounded = ops.round_bf16(w.T)
    assert rounded.shape == (5, 7) and rounded.T.flags.c_contiguous
    np.testing.assert_array_equal(rounded, ref.round_bf16(w.T))
    with pytest.raises(TypeError, match="float32"):
        ops.round_bf16(np.zeros(3))


# ---- LSTM layer ----------------------------------------------------------------------------------

@pytest.fixture
def auto_products():
    """bf16 products on "auto" for the test, whatever PTBFAST_BF16_PRODUCTS set at import."""
    before = ops.bf16_products()
    ops.set_bf16_products("auto")
    yield
    ops.set_bf16_products(before)


def outputs_under(settings, run) -> dict:
    """{setting: run()} with the bf16 products set to each setting in turn (the one before restored)."""
    before = ops.bf16_products()
    try:
        outputs = {}
        for name in settings:
            ops.set_bf16_products(name)
            outputs[name] = run()
        return outputs
    finally:
        ops.set_bf16_products(before)


def random_bf16_layer(rng, T, B, In, H):
    x = ops.round_bf16(f32(rng, T, B, In))
    kernel = ops.round_bf16(f32(rng, In + H, 4 * H, scale=1 / np.sqrt(H)))
    return x, f32(rng, B, H), f32(rng, B, H), kernel, f32(rng, 4 * H, scale=0.1)


@pytest.mark.parametrize("T,B,In,H", [
    (1, 1, 1, 1), (3, 2, 5, 5), (4, 3, 17, 17), (6, 20, 40, 24), (5, 1, 7, 3), (0, 2, 4, 4), (3, 0, 4, 4),
    (8, 20, 200, 200), (12, 64, 128, 300)])  # (the last: the threaded time loop)
def test_lstm_matches_the_bf16_twin_and_the_fp32_reference(T, B, In, H, bf16_products):
    rng = np.random.default_rng(T * 1000 + B * 10 + H)
    x, c0, h0, kernel, bias = random_bf16_layer(rng, T, B, In, H)
    h_all, c_all, gates = ops.lstm_forward(x, c0, h0, kernel, bias, 0.0, bf16=True)
    assert is_bf16(h_all)  # h is a product operand wherever it goes: stored rounded
    d = f32(rng, T, B, H)
    got = ops.lstm_backward(d, None, None, x, c0, h0, kernel, h_all, c_all, gates, bf16=True)
    for bf16 in (True, False):
        close = close_to_twin if bf16 else lambda a, b: max_rel_error(a, b) <= FP32_TOL
        want_h, _, cache = ref.lstm_layer_forward(*f64(x, c0, h0, kernel, bias), 0.0, bf16=bf16)
        want = ref.lstm_layer_backward(f64(d)[0], None, None, cache, bf16=bf16)
        assert close(h_all, want_h)
        for name, g, w in zip(("dx", "dc0", "dh0", "dkernel", "dbias"), got, want):
            assert close(g, w), name


@pytest.mark.parametrize("T,In,H", [(10, 40, 200), (2, 30, 150), (1, 64, 256)])
def test_lstm_forward_at_batch_one_matches_the_bf16_twin_on_either_route(T, In, H, bf16_products, one_row_route):
    """Batch 1, threaded (B x H x 4H >= 2^16): where the products are SGEMMs, ptbfast's loop of one row
    reads the gathered, rounded columns of Wh when one_row_route says (exact bf16 products either way)."""
    from ptbfast import _core

    rng = np.random.default_rng(T * 1000 + H)
    x, c0, h0, kernel, bias = random_bf16_layer(rng, T, 1, In, H)
    runs = _core._one_row_recurrent_product_runs()
    h_all, c_all, _ = ops.lstm_forward(x, c0, h0, kernel, bias, 0.0, bf16=True)
    on_loop = one_row_route == "ptbfast" and ops.bf16_recurrent_kernel(1) == "sgemm"
    assert _core._one_row_recurrent_product_runs() - runs == on_loop
    want_h, (want_c, _), _ = ref.lstm_layer_forward(*f64(x, c0, h0, kernel, bias), 0.0, bf16=True)
    assert close_to_twin(h_all, want_h) and close_to_twin(c_all[-1], want_c)


@pytest.mark.skipif("avx512_bf16" not in ops.BF16_KERNELS_HERE, reason="this CPU (or build) has no AVX512-BF16")
@pytest.mark.parametrize("T,B,In,H", [(1, 1, 1, 1), (5, 3, 17, 33), (8, 20, 200, 200), (12, 64, 128, 300)])
def test_lstm_on_the_avx512_bf16_kernel_equals_the_generic_twin_bit_for_bit(T, B, In, H):
    # Every product of the layer (the input projection, the recurrent products in the time loop,
    # dx and the weight gradients) runs on the kernel set, and the rest is the same code: so the
    # native kernel gives the twin's outputs bit for bit, forward and backward, threaded or not.
    rng = np.random.default_rng(T + H)
    x, c0, h0, kernel, bias = random_bf16_layer(rng, T, B, In, H)
    d, d_c_T = f32(rng, T, B, H), f32(rng, B, H)

    def forward_and_backward():
        forward = ops.lstm_forward(x, c0, h0, kernel, bias, 1.0, bf16=True)
        return forward + ops.lstm_backward(d, d_c_T, None, x, c0, h0, kernel, *forward, bf16=True)
    outputs = outputs_under(("generic", "avx512_bf16"), forward_and_backward)
    for native, twin in zip(outputs["avx512_bf16"], outputs["generic"]):
        np.testing.assert_array_equal(native, twin)


def test_lstm_bf16_differs_from_fp32():
    # The test above could not fail if the flag were ignored on shapes where bf16 and fp32 agree to
    # FLIP_TOL; here the two must differ by far more than float32 rounding.
    rng = np.random.default_rng(3)
    x, c0, h0, kernel, bias = random_bf16_layer(rng, 6, 20, 40, 24)
    fp32 = ops.lstm_forward(x, c0, h0, kernel, bias)[0]
    bf16 = ops.lstm_forward(x, c0, h0, kernel, bias, bf16=True)[0]
    assert max_rel_error(bf16, fp32) > 1e-4
    # And the twin comparison's median bound tells the two apart, though FLIP_TOL alone would not.
    assert max_rel_error(fp32, bf16) <= FLIP_TOL and not close_to_twin(fp32, bf16)


# ---- output layer --------------------------------------------------------------------------------

# (450, 150, 10000): whole rows in two blocks of rows, where kernels that take a packed B multiply w
# and w^T packed once per call (output_layer.cpp); (137, 130, 1001): on AMX, the softmax pass packs
# the gradient itself, here with an odd number of rows and of words and a last group of 9 rows.
@pytest.mark.parametrize("N,H,V", [(1, 1, 1), (5, 17, 33), (37, 16, 100), (0, 4, 9), (400, 200, 10000),
                                   (450, 150, 10000), (137, 130, 1001)])
@pytest.mark.parametrize("block_columns", [0, 7])
def test_output_layer_matches_the_bf16_twin_and_the_fp32_reference(N, H, V, block_columns, bf16_products):
    rng = np.random.default_rng(N + H + V)
    h = ops.round_bf16(f32(rng, N, H))
    w = ops.round_bf16(f32(rng, H, V, scale=1 / np.sqrt(H)))
    b, targets = f32(rng, V, scale=0.1), rng.integers(0, V, N)
    block_columns *= 1 if V < 1000 else 300  # (column chunks of 7 over 10,000 words would be slow)
    for weights in (w, np.ascontiguousarray(w.T).T):  # softmax_w, and tied weights (embedding.T)
        total, losses, dh, dw, db = ops.output_layer_loss_and_grads(h, weights, b, targets, 0.05,
                                                                    block_columns=block_columns, bf16=True)
        for bf16 in (True, False):
            close = close_to_twin if bf16 else lambda a, b: max_rel_error(a, b) <= FP32_TOL
            want_losses, cache = ref.output_layer_forward(*f64(h, w, b), targets, bf16=bf16)
            assert max_rel_error(losses, want_losses) <= TWIN_TOL  # (the losses see no rounded gradient)
            for name, g, want in zip(("dh", "dw", "db"), (dh, dw, db), ref.output_layer_backward(0.05, cache, bf16)):
                assert close(g, want), name


# The softmax pass packs the gradient of all rows for one dh and one dw product after the last block
# of rows (output_layer.cpp; odd block sizes are made even, so that no pair of rows spans two blocks).
# On the dot-product kernels, whose accumulators take K's pairs in order, the results are then the
# same bits whatever the blocks; AMX rounds inside its tiles, and SGEMM and MKL's kernels sum in an
# order of their own: within float32 summation's error of the one-block result.
@pytest.mark.parametrize("N", [1, 37, 300])
def test_bf16_output_layer_does_not_depend_on_its_blocks_of_rows(N, bf16_products):
    _, h, w, b, targets = output_layer_operands(N, N, 24, 1001)
    w = ops.round_bf16(w)
    whole = ops.output_layer_loss_and_grads(h, w, b, targets, 0.05, block_rows=N, bf16=True)
    for block_rows in (1, 7, 16, 33, 150):
        blocks = ops.output_layer_loss_and_grads(h, w, b, targets, 0.05, block_rows=block_rows, bf16=True)
        for name, got, want in zip(("total", "losses", "dh", "dw", "db"), blocks, whole):
            if bf16_products in ("generic", "avx512_bf16"):
                np.testing.assert_array_equal(got, want, err_msg=f"{name}, blocks of {block_rows} rows")
            else:
                assert max_rel_error(got, want) <= 1e-5, (name, block_rows)


def output_layer_operands(seed, N, H, V):
    """(rng, h rounded [N, H], fp32 master w [H, V], b [V], targets [N]) for the output layer."""
    rng = np.random.default_rng(seed)
    h = ops.round_bf16(f32(rng, N, H))
    w = f32(rng, H, V, scale=1 / np.sqrt(H))
    return rng, h, w, f32(rng, V, scale=0.1), rng.integers(0, V, N)


def masters_and_rounded(w):
    """softmax_w and tied weights (the embedding's .T view), each with its bf16 rounding."""
    for master in (w, np.ascontiguousarray(w.T).T):
        yield master, ops.round_bf16(master)


# V = 1300: three pieces of w's columns; H = 3000: pieces of 174 columns (the scratch's cap).
@pytest.mark.parametrize("N,H,V", [(1, 1, 1), (0, 3, 5), (9, 7, 1300), (5, 3000, 1000)])
def test_kernels_round_the_weights_themselves(N, H, V, bf16_products):
    # bf16 kernels take the fp32 master weights and round them piece by piece into scratch: the
    # same results, bit for bit, as given weights rounded beforehand (rounding is idempotent), and
    # the eval path agrees with the bf16 twin, which rounds w itself.
    rng, h, w, b, targets = output_layer_operands(N + H + V, N, H, V)
    for master, rounded in masters_and_rounded(w):
        for block_columns in (0, 400):
            got = ops.output_layer_loss_and_grads(h, master, b, targets, 0.05, block_columns=block_columns, bf16=True)
            want = ops.output_layer_loss_and_grads(h, rounded, b, targets, 0.05, block_columns=block_columns,
                                                   bf16=True)
            for g, r in zip(got[1:], want[1:]):
                np.testing.assert_array_equal(g, r)
            losses = ops.output_layer_loss(h, master, b, targets, block_columns=block_columns, bf16=True)[1]
            np.testing.assert_array_equal(losses, ops.output_layer_loss(h, rounded, b, targets,
                                                                        block_columns=block_columns, bf16=True)[1])
            want_losses, _ = ref.output_layer_forward(*f64(h, w, b), targets, bf16=True)
            assert max_rel_error(losses, want_losses) <= TWIN_TOL  # (the losses round nothing they compute)
    T, B = 3, max(N, 1)
    x, c0, h0, _, bias = random_bf16_layer(rng, T, B, min(H, 40), min(H, 40))
    kernel = f32(rng, 2 * min(H, 40), 4 * min(H, 40))
    forward = [ops.lstm_forward(x, c0, h0, k, bias, 0.0, bf16=True) for k in (kernel, ops.round_bf16(kernel))]
    d = f32(rng, T, B, min(H, 40))
    for g, r in zip(*[ops.lstm_backward(d, None, None, x, c0, h0, k, *out, bf16=True)
                      for k, out in zip((kernel, ops.round_bf16(kernel)), forward)]):
        np.testing.assert_array_equal(g, r)
    for g, r in zip(*forward):
        np.testing.assert_array_equal(g, r)


@pytest.mark.parametrize("block_columns", [0, 400])
def test_auto_runs_every_block_of_rows_on_the_full_blocks_kernel(block_columns):
    # Under "auto" a product's kernel depends on its shape: blocks of 256 rows go to a kernel that
    # rounds w as it packs it where this CPU has one (AMX, AVX512-BF16), and the last block's 6 rows
    # would go to SGEMM, which rounds nothing: those rows were multiplied by the fp32 master weights
    # (and their dh by an unrounded gradient). Every block runs on the full block's kernel, so the
    # master weights give the results of weights rounded beforehand, bit for bit, on every CPU.
    before = ops.bf16_products()
    ops.set_bf16_products("auto")
    try:
        _, h, w, b, targets = output_layer_operands(5, 262, 24, 1001)
        for master, rounded in masters_and_rounded(w):
            got, want = (ops.output_layer_loss_and_grads(h, weights, b, targets, 0.05, block_rows=256,
                                                         block_columns=block_columns, bf16=True)
                         for weights in (master, rounded))
            for name, g, r in zip(("total", "losses", "dh", "dw", "db"), got, want):
                np.testing.assert_array_equal(g, r, err_msg=name)
            losses, want_losses = (ops.output_layer_loss(h, weights, b, targets, block_rows=256,
                                                         block_columns=block_columns, bf16=True)[1]
                                   for weights in (master, rounded))
            np.testing.assert_array_equal(losses, want_losses)
    finally:
        ops.set_bf16_products(before)

# V = 1300 and H = 3000: the piecewise path multiplies pieces of w's columns, w_is_bf16 whole blocks.
@pytest.mark.parametrize("N,H,V", [(1, 1, 1), (0, 3, 5), (9, 7, 1300), (5, 3000, 1000), (37, 16, 100)])
def test_the_loss_of_weights_rounded_beforehand_is_the_same_product(N, H, V, bf16_products):
    # w_is_bf16: w already holds bf16 values and the kernel multiplies it as it is, in whole blocks.
    # The operands are the same as the piecewise path's, so the losses agree to float32 summation
    # (the GEMMs are cut differently, so their sums may be ordered differently); on SGEMM they equal
    # the fp32 path's bit for bit, which makes the same calls on the same operands.
    _, h, w, b, targets = output_layer_operands(N * 7 + H + V, N, H, V)
    for master, rounded in masters_and_rounded(w):
        for block_columns in (0, 400):
            got = ops.output_layer_loss(h, rounded, b, targets, block_columns=block_columns, bf16=True, w_is_bf16=True)
            piecewise = ops.output_layer_loss(h, master, b, targets, block_columns=block_columns, bf16=True)
            assert max_rel_error(got[1], piecewise[1]) <= 1e-5  # float32 sums in another order
            if bf16_products == "sgemm":
                fp32 = ops.output_layer_loss(h, rounded, b, targets, block_columns=block_columns)
                np.testing.assert_array_equal(got[1], fp32[1])
    # Without bf16 the flag changes nothing: fp32 never rounds.
    np.testing.assert_array_equal(ops.output_layer_loss(h, w, b, targets, w_is_bf16=True)[1],
                                  ops.output_layer_loss(h, w, b, targets)[1])


# The kernels that multiply weights packed once (gemm/bf16: FrozenWeights); SGEMM and MKL read a
# rounded float32 copy instead.
PACKING_KERNELS = ("amx", "avx512_bf16", "generic")


@pytest.mark.parametrize("tie_weights", [False, True])
def test_a_frozen_model_makes_its_bf16_weights_once_with_the_same_losses(tie_weights, bf16_products):
    model = LSTMLanguageModel(50, 8, 2, init_scale=0.5, seed=1, tie_weights=tie_weights, precision="bf16")
    rng = np.random.default_rng(6)
    x, y = rng.integers(0, 50, (3, 5)), rng.integers(0, 50, (3, 5))
    state = model.initial_state(3)
    cost, new_state = model.loss(x, y, state)
    with model.frozen():
        with model.frozen():  # (nested: the outer block's weights serve)
            frozen_cost, frozen_state = model.loss(x, y, state)
        frozen = model._frozen
        packs = bf16_products in PACKING_KERNELS
        assert (frozen.output is not None) == packs and (frozen.rounded_output is None) == packs
        assert len(frozen.lstm) == 2
    assert model._frozen is None
    assert frozen_cost == pytest.approx(cost, rel=1e-5)  # the same operands; sums possibly in another order
    for (c, h), (fc, fh) in zip(new_state, frozen_state):
        np.testing.assert_array_equal(c, fc)  # (the layers' packs are what each call packs)
        np.testing.assert_array_equal(h, fh)
    fp32 = LSTMLanguageModel(50, 8, 2, init_scale=0.5, seed=1, tie_weights=tie_weights)
    before = fp32.loss(x, y, state)[0]
    with fp32.frozen():  # fp32 never rounds: nothing to make, and the same loss
        assert fp32._frozen is None
        assert fp32.loss(x, y, state)[0] == before


def test_threads_sharing_a_model_each_keep_their_own_frozen_weights():
    # One thread's block ending must not end another's (its losses would change kernels mid-block).
    import threading

    model = LSTMLanguageModel(50, 8, 2, init_scale=0.5, seed=1, precision="bf16")
    b_inside, a_done, seen = threading.Event(), threading.Event(), {}

    def a():
        b_inside.wait(10)
        with model.frozen():
            seen["a"] = model._frozen
        a_done.set()

    def b():
        with model.frozen():
            seen["b"] = model._frozen
            b_inside.set()
            a_done.wait(10)
            seen["b after a"] = model._frozen

    threads = [threading.Thread(target=f) for f in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen["a"] is not None and seen["b"] is not None and seen["a"] is not seen["b"]
    assert seen["b after a"] is seen["b"] and model._frozen is None


def test_a_frozen_model_under_auto_multiplies_few_rows_on_its_packs(auto_products):
    # "auto" runs products of fewer than 128 rows on SGEMM, but a frozen model's packs on the kernel
    # they were made for (where the CPU has one): the same operands, the sums in another order.
    model = LSTMLanguageModel(60, 16, 2, init_scale=0.5, seed=2, precision="bf16")
    rng = np.random.default_rng(7)
    for batch, steps in ((1, 1), (4, 5)):
        x, y = rng.integers(0, 60, (batch, steps)), rng.integers(0, 60, (batch, steps))
        state = model.initial_state(batch)
        cost, new_state = model.loss(x, y, state)
        with model.frozen():
            frozen_cost, frozen_state = model.loss(x, y, state)
            packs = model._frozen.output is not None
        assert packs == (ops.bf16_product_kernel(1 << 20, 60, 16) in PACKING_KERNELS)
        # Summed in another order, an h near a bf16 rounding boundary may round the other way (the
        # twin tolerance, above): the states within it, the cost within one such step.
        assert frozen_cost == pytest.approx(cost, rel=FLIP_TOL)
        for (c, h), (fc, fh) in zip(new_state, frozen_state):
            assert close_to_twin(fc, c) and close_to_twin(fh, h)


# Rows 1 (a word at a time), 150 (from 128 rows "auto" packs B per call), column chunks that are
# not whole panels of 32 (300 -> 4 chunks of 251), an odd vocabulary, no rows.
@pytest.mark.parametrize("N,H,V,block_columns", [(1, 8, 50, 0), (150, 24, 1001, 0), (150, 24, 1001, 300),
                                                 (0, 8, 50, 0), (7, 33, 65, 0)])
@pytest.mark.parametrize("transposed", [False, True])
def test_frozen_output_weights_give_the_losses_of_packing_per_call(N, H, V, block_columns, transposed,
                                                                  bf16_products):
    rng = np.random.default_rng(N + V)
    h = ops.round_bf16(rng.standard_normal((N, H)).astype(np.float32))
    w = rng.standard_normal((V, H) if transposed else (H, V)).astype(np.float32) * 0.3
    w = w.T if transposed else w  # (tied: the embedding's transposed view)
    b = rng.standard_normal(V).astype(np.float32)
    targets = rng.integers(0, V, N)
    packed = ops.freeze_output_weights_bf16(w)
    if bf16_products not in PACKING_KERNELS:
        assert packed is None  # (SGEMM and MKL read a rounded copy: w_is_bf16)
        return
    assert packed.nbytes >= H * V * 2
    per_call = ops.output_layer_loss(h, w, b, targets, block_columns=block_columns, bf16=True)
    got = ops.output_layer_loss(h, w, b, targets, block_columns=block_columns, bf16=True, frozen=packed)
    if block_columns == 0:  # one chunk of whole rows either way: the same product, the same bits
        np.testing.assert_array_equal(got[1], per_call[1])
    assert max_rel_error(got[1], per_call[1]) <= 1e-6  # chunks of whole panels: sums grouped otherwise
    if not transposed:  # (a copy: changing w afterwards does not change the packs)
        w[...] = 0.0
        np.testing.assert_array_equal(
            ops.output_layer_loss(h, w, b, targets, block_columns=block_columns, bf16=True, frozen=packed)[1], got[1])


# (35, 4, 24, 70): from 2^16 multiply-adds a step (lstm.cpp's kParallelMacs) the time loop runs on
# every thread, the count the recurrent packs are made for; the smaller layers run it on one.
@pytest.mark.parametrize("T,B,In,H", [(35, 4, 24, 70), (35, 4, 24, 40), (2, 3, 5, 7), (0, 2, 3, 4), (1, 1, 1, 1)])
@pytest.mark.parametrize("threads", [None, 1, 3])
def test_frozen_lstm_weights_give_the_outputs_of_packing_per_call(T, B, In, H, threads, bf16_products):
    rng = np.random.default_rng(T * 100 + H)
    x = ops.round_bf16(rng.standard_normal((T, B, In)).astype(np.float32))
    c0, h0 = (rng.standard_normal((B, H)).astype(np.float32) for _ in range(2))
    kernel = (rng.standard_normal((In + H, 4 * H)) * 0.3).astype(np.float32)
    bias = rng.standard_normal(4 * H).astype(np.float32)
    packed = ops.freeze_lstm_weights_bf16(kernel, In)  # for this process's threads
    before = ops.get_num_threads()
    try:
        if threads:  # (packs made for another thread count: the call packs its own)
            ops.set_num_threads(threads)
        per_call = ops.lstm_forward(x, c0, h0, kernel, bias, 1.0, bf16=True)
        got = ops.lstm_forward(x, c0, h0, kernel, bias, 1.0, bf16=True, frozen=packed)
    finally:
        ops.set_num_threads(before)
    for a, e in zip(got, per_call):
        np.testing.assert_array_equal(a, e)
    if bf16_products in PACKING_KERNELS and threads is None:  # the packs are what the call reads:
        kernel[:In] = 0.0  # Wx (packed for every kernel that takes packed weights)
        # and Wh (the recurrent products' B, for the time loop's threads), where the loop is threaded
        # and gets the team it asks for (a smaller one packs its own: OMP_THREAD_LIMIT, OMP_DYNAMIC)
        if B * H * 4 * H >= 1 << 16 and not ops.fewer_threads_reason(ops.get_num_threads()):
            kernel[In:] = 0.0
        for a, e in zip(ops.lstm_forward(x, c0, h0, kernel, bias, 1.0, bf16=True, frozen=packed), per_call):
            np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("T,B,In,H", [(35, 4, 24, 70), (2, 3, 5, 7), (1, 1, 40, 70)])
def test_frozen_lstm_weights_made_under_one_setting_serve_every_other(T, B, In, H):
    # Packs made for a kernel that reads packed weights, or rounded copies made for SGEMMs, are used
    # by whatever kernel a later call is set to, where they are what that call would make, and
    # ignored where they are not: the outputs are that kernel's per-call outputs, bit for bit. (Under
    # "auto" a frozen model also multiplies few rows on its packs, by design: the test above.)
    rng = np.random.default_rng(T * 10 + H)
    x = ops.round_bf16(rng.standard_normal((T, B, In)).astype(np.float32))
    c0, h0 = (rng.standard_normal((B, H)).astype(np.float32) for _ in range(2))
    kernel = (rng.standard_normal((In + H, 4 * H)) * 0.3).astype(np.float32)
    bias = rng.standard_normal(4 * H).astype(np.float32)
    before = ops.bf16_products()
    try:
        ops.set_bf16_products("sgemm")  # (rounded copies on request only: as much memory as the kernel)
        assert ops.freeze_lstm_weights_bf16(kernel, In).nbytes == 0
        assert ops.freeze_lstm_weights_bf16(kernel, In, rounded_copies=True).nbytes == kernel.nbytes
        for made_under in ("sgemm", "generic", "auto"):
            ops.set_bf16_products(made_under)
            packed = ops.freeze_lstm_weights_bf16(kernel, In, rounded_copies=True)
            for used_under in ops.BF16_KERNELS_HERE:
                ops.set_bf16_products(used_under)
                per_call = ops.lstm_forward(x, c0, h0, kernel, bias, 1.0, bf16=True)
                got = ops.lstm_forward(x, c0, h0, kernel, bias, 1.0, bf16=True, frozen=packed)
                for a, e in zip(got, per_call):
                    np.testing.assert_array_equal(a, e, err_msg=f"made under {made_under}, used under {used_under}")
    finally:
        ops.set_bf16_products(before)


FEWER_THREADS_SCRIPT = """
import numpy as np
from ptbfast import ops
ops.set_num_threads(2)
rng = np.random.default_rng(1)
T, B, In, H = 3, 4, 24, 70  # (B H 4H >= 2^16: the time loop asks for every thread)
x = ops.round_bf16(rng.standard_normal((T, B, In)).astype(np.float32))
c0, h0 = (rng.standard_normal((B, H)).astype(np.float32) for _ in range(2))
kernel = (rng.standard_normal((In + H, 4 * H)) * 0.3).astype(np.float32)
bias = rng.standard_normal(4 * H).astype(np.float32)
for setting in ("sgemm", *(k for k in ops.BF16_PACKED_B_KERNELS if k in ops.BF16_KERNELS_HERE)):
    ops.set_bf16_products(setting)
    frozen = ops.freeze_lstm_weights_bf16(kernel, In, rounded_copies=True)
    per_call = ops.lstm_forward(x, c0, h0, kernel, bias, 1.0, bf16=True)
    got = ops.lstm_forward(x, c0, h0, kernel, bias, 1.0, bf16=True, frozen=frozen)
    print(setting, all(np.array_equal(a, e) for a, e in zip(got, per_call)))
"""


def test_frozen_lstm_weights_serve_a_team_of_fewer_threads_than_asked():
    # Packs and rounded gathers are laid out for the time loop's thread count. With OMP_THREAD_LIMIT=1
    # the loop asks for 2 threads and gets 1, which read the packs as if made for 1 (other threads'
    # columns: other outputs, silently) until the loop made its own for a team of another size.
    import subprocess
    env = {**os.environ, "OMP_THREAD_LIMIT": "1", "PTBFAST_BF16_PRODUCTS": "auto"}
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", FEWER_THREADS_SCRIPT], capture_output=True,
                          text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    same = dict(line.split() for line in done.stdout.splitlines())  # {setting: "True" or "False"}
    assert "sgemm" in same and set(same.values()) == {"True"}, done.stdout


def test_frozen_weights_of_another_shape_are_refused():
    kernel = np.zeros((3 + 4, 16), np.float32)
    lstm = ops.freeze_lstm_weights_bf16(kernel, 3)
    x, state = np.zeros((2, 1, 3), np.float32), np.zeros((1, 4), np.float32)
    wide = np.zeros((5 + 4, 16), np.float32)
    with pytest.raises(ValueError, match="not an LSTM kernel of 5 inputs"):
        ops.lstm_forward(np.zeros((2, 1, 5), np.float32), state, state, wide, np.zeros(16, np.float32), bf16=True,
                         frozen=lstm)
    with pytest.raises(ValueError, match="must have shape"):
        ops.freeze_lstm_weights_bf16(kernel, 4)
    with pytest.raises(TypeError, match="input_size must be an integer, got 5.0"):  # (was int(): 4.7 became 4)
        ops.freeze_lstm_weights_bf16(kernel, 5.0)
    before = ops.bf16_products()
    ops.set_bf16_products("generic")  # (a kernel that takes packed weights on every CPU)
    try:
        output = ops.freeze_output_weights_bf16(np.zeros((4, 9), np.float32))
    finally:
        ops.set_bf16_products(before)
    h, b, targets = np.zeros((2, 4), np.float32), np.zeros(10, np.float32), np.zeros(2, np.int64)
    with pytest.raises(ValueError, match="not output weights of 4 x 10"):
        ops.output_layer_loss(h, np.zeros((4, 10), np.float32), b, targets, bf16=True, frozen=output)
    with pytest.raises(ValueError, match="not an LSTM kernel"):
        ops.lstm_forward(x, state, state, kernel, np.zeros(16, np.float32), bf16=True, frozen=output)
    with pytest.raises(TypeError):
        ops.lstm_forward(x, state, state, kernel, np.zeros(16, np.float32), bf16=True, frozen="packs")


def test_round_in_place_refuses_what_it_cannot_write():
    x = np.linspace(-3, 3, 10, dtype=np.float32)
    assert ops.round_bf16_in_place(x) is x and is_bf16(x)
    with pytest.raises(TypeError, match="NumPy array"):
        ops.round_bf16_in_place([1.0, 2.0])
    with pytest.raises(TypeError, match="float32"):
        ops.round_bf16_in_place(np.ones(3))
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.round_bf16_in_place(np.ones((4, 4), np.float32)[:, 1])
    read_only = np.ones(3, np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        ops.round_bf16_in_place(read_only)


def test_output_layer_bf16_rounds_the_gradient_products():
    # On the SGEMM kernel, bf16 operands give the fp32 path's products bit for bit (same library, same
    # shapes), so whatever differs comes from rounding the gradient. The dot-product kernels and MKL's
    # sum K in another order than SGEMM, so on them the logits, and with them db, differ in the last bit.
    before = ops.bf16_products()
    ops.set_bf16_products("sgemm")
    try:
        check_that_only_the_gradient_products_are_rounded()
    finally:
        ops.set_bf16_products(before)


def check_that_only_the_gradient_products_are_rounded():
    rng = np.random.default_rng(4)
    h = ops.round_bf16(f32(rng, 30, 16))
    w = ops.round_bf16(f32(rng, 16, 50, scale=0.25))
    b, targets = f32(rng, 50, scale=0.1), rng.integers(0, 50, 30)
    fp32 = ops.output_layer_loss_and_grads(h, w, b, targets, 0.05)
    bf16 = ops.output_layer_loss_and_grads(h, w, b, targets, 0.05, bf16=True)
    np.testing.assert_array_equal(fp32[1], bf16[1])  # same operands: the same losses ...
    np.testing.assert_array_equal(fp32[4], bf16[4])  # ... and db sums the unrounded gradient
    assert max_rel_error(bf16[2], fp32[2]) > 1e-4    # dh and dw multiply the rounded one
    assert max_rel_error(bf16[3], fp32[3]) > 1e-4


# ---- the model -----------------------------------------------------------------------------------

@pytest.mark.parametrize("tie_weights", [False, True])
@pytest.mark.parametrize("dropout", [False, True])
def test_model_gradients_match_the_bf16_reference_model(tie_weights, dropout, bf16_products):
    V, H, L, B, T = 23, 8, 2, 3, 4
    fast = LSTMLanguageModel(V, H, L, forget_bias=0.5, init_scale=0.5, seed=2, tie_weights=tie_weights,
                             precision="bf16")
    rng = np.random.default_rng(5)
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    state = [(f32(rng, B, H), f32(rng, B, H)) for _ in range(L)]
    masks = ([((rng.random((T, B, H)) < 0.6) / np.float32(0.6)).astype(np.float32) for _ in range(L + 1)]
             if dropout else None)
    cost, grads, new_state = fast.loss_and_grads(x, y, state, masks)
    for precision, bound in (("bf16", 1e-4), ("fp32", FP32_TOL)):
        slow = ref.NumpyLSTMLanguageModel(V, H, L, forget_bias=0.5, tie_weights=tie_weights, dtype=np.float64,
                                          precision=precision)
        slow.params = {k: v.astype(np.float64) for k, v in fast.params.items()}
        want_cost, want_grads, want_state = slow.loss_and_grads(x, y, [f64(c, h) for c, h in state],
                                                                None if masks is None else f64(*masks))
        assert abs(cost - want_cost) <= bound * abs(want_cost)
        for name in fast.params:
            assert max_rel_error(grads[name], want_grads[name]) <= bound, (precision, name)
        for (c, h), (wc, wh) in zip(new_state, want_state):
            assert max_rel_error(c, wc) <= bound and max_rel_error(h, wh) <= bound


def test_unknown_precision_names_the_choices():
    with pytest.raises(ValueError, match="fp32, bf16"):
        LSTMLanguageModel(10, 4, 1, precision="fp16")
    with pytest.raises(ValueError, match="fp32, bf16"):
        ref.NumpyLSTMLanguageModel(10, 4, 1, precision="float16")
    from ptbfast.configs import get_config
    with pytest.raises(ValueError, match="precision"):
        get_config("test", precision="half")


def test_bf16_says_once_that_it_brings_no_speed_up(monkeypatch):
    from ptbfast import precision
    monkeypatch.setattr(precision, "_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        LSTMLanguageModel(10, 4, 1, precision="bf16")
        LSTMLanguageModel(10, 4, 1, precision="bf16")
        LSTMLanguageModel(10, 4, 1)
    said = [w for w in caught if issubclass(w.category, Bf16PerformanceWarning)]
    assert len(said) == 1
    message = str(said[0].message)
    assert ptbfast.build_info()["bf16_products"] in message
    if ops.bf16_products() == "generic":  # (PTBFAST_BF16_PRODUCTS=generic: the twin, for tests)
        assert "far slower than fp32" in message
    elif ops.bf16_products() == "mkl" and not ptbfast.build_info()["bf16_instructions"]:
        assert "emulates" in message
    elif ptbfast.build_info()["bf16_instructions"]:
        assert precision.MEASURED_ON_AMX_XEON in message and "PTBFAST_BF16_PRODUCTS=sgemm" in message
    else:
        assert precision.EMULATED_STEP_TIME in message and "no faster" in message


def test_a_bf16_trained_checkpoint_evaluates_in_either_precision(tmp_path):
    import ptbfast
    from ptbfast import checkpoint
    from ptbfast.configs import get_config

    config = get_config("test", vocab_size=12, hidden_size=6, precision="bf16")
    model = LSTMLanguageModel(12, 6, 1, precision="bf16")
    path = checkpoint.save(tmp_path / "c.npz", model.params, {"config": config.to_dict(),
                                                              "vocabulary": [f"w{k}" for k in range(12)]})
    as_trained = ptbfast.load(path)
    assert as_trained.model.precision == "bf16" and as_trained.config.precision == "bf16"
    in_fp32 = ptbfast.load(path, precision="fp32")
    assert in_fp32.model.precision == "fp32"
    text = "w1 w2 w3 w4 w5"
    bf16_logp, fp32_logp = as_trained.score(text).log_probs, in_fp32.score(text).log_probs
    assert not np.array_equal(bf16_logp, fp32_logp)
    assert np.max(np.abs(bf16_logp - fp32_logp)) < 0.05
    with pytest.raises(ValueError, match="precision"):
        ptbfast.load(path, precision="int8")


def cpu_vendor() -> str:
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
        for line in f:
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    return ""


def cpu_flags() -> set:
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
        for line in f:
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    return set()


def test_info_reports_the_amx_permission_and_the_bf16_path():
    info = ptbfast.build_info()
    flags = cpu_flags()
    features = [name for name in ("amx_bf16", "avx512_bf16") if name in flags] or ["none"]
    assert info["cpu_matrix_features"] == features
    assert info["bf16_products"]
    if platform.machine() in ("x86_64", "AMD64") and sys.platform == "linux":
        assert info["cpu_vendor"] == cpu_vendor()
    chosen = ops.bf16_products()  # ("auto" unless PTBFAST_BF16_PRODUCTS names a kernel)
    if chosen != "auto":
        assert info["bf16_products"].endswith(f"PTBFAST_BF16_PRODUCTS={chosen})")
    elif info["cpu_vendor"] != "GenuineIntel":  # MKL's bf16 kernels are Intel's only: auto never takes them
        assert not info["bf16_products"].startswith("MKL") and "SGEMM" in info["bf16_products"]
        assert info["bf16_instructions"] == ("avx512_bf16" in ops.BF16_KERNELS_HERE)
    assert info["bf16_matrix_engine"] == info["bf16_instructions"]  # (the key's first name)
    # The recurrent products run on "auto"'s kernel for many rows where it takes packed weights:
    # AMX, else AVX512-BF16 on CPUs not Intel's, else SGEMM.
    if chosen == "auto":
        expected = ("amx" if "amx" in ops.BF16_KERNELS_HERE else
                    "avx512_bf16" if "avx512_bf16" in ops.BF16_KERNELS_HERE and info["cpu_vendor"] != "GenuineIntel"
                    else "sgemm")
        assert info["bf16_recurrent_products"] == expected
    if "amx_tile" in flags:  # Linux >= 5.16 grants it; an older kernel refuses, and info says so
        assert info["amx_permission"] == "granted" or info["amx_permission"].startswith("refused by the kernel")
    else:
        assert info["amx_permission"].startswith("not requested")


def test_the_kernel_of_the_recurrent_products_by_rows():
    # A named kernel runs them whatever the rows (SGEMM's are packed SGEMMs); under "auto" info names
    # the kernel of many rows, and one row runs on AVX512-BF16 where the CPU has it beside AMX.
    before = ops.bf16_products()
    try:
        for kernel in ops.BF16_KERNELS_HERE:
            ops.set_bf16_products(kernel)
            want = kernel if kernel in ops.BF16_PACKED_B_KERNELS else "sgemm"
            assert [ops.bf16_recurrent_kernel(rows) for rows in (1, 2, 20)] == [want] * 3
        ops.set_bf16_products("auto")
        for kernel in ("amx", "avx512_bf16", "generic"):  # (what a forced setting packs for, it runs on)
            assert ops.bf16_kernel_for_rows(kernel, 1) == (
                "avx512_bf16" if kernel == "amx" and {"amx", "avx512_bf16"} <= set(ops.BF16_KERNELS_HERE) else kernel)
            assert ops.bf16_kernel_for_rows(kernel, 2) == kernel
        for bad, error in ((("nope", 5), ValueError), (("amx", -1), ValueError), (("amx", 2.5), TypeError)):
            with pytest.raises(error):  # (a name that packs nothing was handed back as the answer)
                ops.bf16_kernel_for_rows(*bad)
        with pytest.raises(ValueError, match="M must be >= 0, got -1"):
            ops.bf16_product_kernel(-1, 5, 5)
        info = ptbfast.build_info()
        many = info["bf16_recurrent_products"]
        assert ops.bf16_recurrent_kernel(2) == ops.bf16_recurrent_kernel(20) == many
        both = {"amx", "avx512_bf16"} <= set(ops.BF16_KERNELS_HERE)
        assert ops.bf16_recurrent_kernel(1) == info["bf16_recurrent_products_of_one_row"] == \
            ("avx512_bf16" if both else many)
    finally:
        ops.set_bf16_products(before)


@pytest.mark.skipif(not {"amx", "avx512_bf16"} <= set(ops.BF16_KERNELS_HERE),
                    reason="only a CPU with AMX and AVX512-BF16 has two kernels to choose from by rows")
def test_auto_runs_the_recurrent_products_of_one_row_on_avx512_bf16(auto_products):
    # With x = 0 the input projection is 0 on every kernel, so the forward's outputs are the
    # recurrent products' and the gate math's, and so are the backward's dc0, dh0 and dbias (dx and
    # dkernel come from products of T rows, which auto runs elsewhere): under auto, with batch 1,
    # AVX512-BF16's bit for bit. (On AMX, c_all and gates differ from them.)
    rng = np.random.default_rng(8)
    T, B, In, H = 6, 1, 5, 70
    x, c0, h0, kernel, bias = random_bf16_layer(rng, T, B, In, H)
    x[:] = 0.0
    d, d_c_T = f32(rng, T, B, H), f32(rng, B, H)

    def forward_and_recurrent_gradients():
        forward = ops.lstm_forward(x, c0, h0, kernel, bias, 1.0, bf16=True)
        _, dc0, dh0, _, dbias = ops.lstm_backward(d, d_c_T, None, x, c0, h0, kernel, *forward, bf16=True)
        return forward + (dc0, dh0, dbias)
    outputs = outputs_under(("auto", "avx512_bf16"), forward_and_recurrent_gradients)
    assert ptbfast.build_info()["bf16_recurrent_products_of_one_row"] == "avx512_bf16"
    for got, want in zip(outputs["auto"], outputs["avx512_bf16"]):
        np.testing.assert_array_equal(got, want)


@pytest.mark.skipif(not {"amx", "avx512_bf16"} <= set(ops.BF16_KERNELS_HERE),
                    reason="only a CPU with AMX and AVX512-BF16 has two kernels to choose from by rows")
def test_a_frozen_model_under_auto_multiplies_one_row_on_avx512_bf16():
    # Batch 1 and one step (generation): the frozen weights' products of one row, the LSTM's input
    # projection and the output layer's logits, run on AVX512-BF16 (the packs are AMX's: the same
    # layout), so every output equals that kernel's bit for bit.
    rng = np.random.default_rng(9)
    x, c0, h0, kernel, bias = random_bf16_layer(rng, 1, 1, 40, 70)
    w, b = ops.round_bf16(f32(rng, 70, 300)), f32(rng, 300)
    before = ops.bf16_products()
    outputs = {}
    try:
        ops.set_bf16_products("auto")  # (packs for auto's kernel, whatever PTBFAST_BF16_PRODUCTS says)
        lstm, output = ops.freeze_lstm_weights_bf16(kernel, 40), ops.freeze_output_weights_bf16(w)
        for name in ("auto", "avx512_bf16", "amx"):
            ops.set_bf16_products(name)
            h_all = ops.lstm_forward(x, c0, h0, kernel, bias, 1.0, bf16=True, frozen=lstm)
            outputs[name] = h_all + ops.output_layer_loss(h_all[0][0], w, b, [7], bf16=True, frozen=output)[1:]
    finally:
        ops.set_bf16_products(before)
    for got, want in zip(outputs["auto"], outputs["avx512_bf16"]):
        np.testing.assert_array_equal(got, want)
    if not any(np.any(a != e) for a, e in zip(outputs["amx"], outputs["avx512_bf16"])):
        # (AMX rounds inside its tiles where its parts so far differ from AVX512-BF16; where they agree
        # on these inputs, equality with AVX512-BF16 cannot tell auto's choice from AMX)
        pytest.skip("AMX's results equal AVX512-BF16's on this CPU: auto's kernel cannot be told apart")


@pytest.mark.parametrize("kernel", ["generic", "sgemm"])
def test_info_names_the_kernel_of_the_recurrent_products(kernel):
    before = ops.bf16_products()
    try:
        ops.set_bf16_products(kernel)  # (both run on every CPU)
        assert ptbfast.build_info()["bf16_recurrent_products"] == kernel
    finally:
        ops.set_bf16_products(before)


def test_bf16_products_setting_is_checked():
    with pytest.raises(ValueError, match="must be one of " + ", ".join(ops.BF16_PRODUCTS)):
        ops.set_bf16_products("fast")
    assert ops.bf16_products() in ops.BF16_PRODUCTS


def test_a_bad_bf16_products_variable_stops_the_import():
    import subprocess
    env = {**os.environ, "PTBFAST_BF16_PRODUCTS": "fast"}
    done = subprocess.run([sys.executable, "-c", "import ptbfast"], capture_output=True, text=True, env=env)
    assert done.returncode != 0 and "PTBFAST_BF16_PRODUCTS='fast'" in done.stderr
    env["PTBFAST_BF16_PRODUCTS"] = "sgemm"
    done = subprocess.run([sys.executable, "-c", "import ptbfast; print(ptbfast.build_info()['bf16_products'])"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0 and "PTBFAST_BF16_PRODUCTS=sgemm" in done.stdout


# (Each bf16 product kernel against float64: tests/test_gemm_bf16.py.)


def test_matmul_refuses_mismatched_or_float64_operands():
    with pytest.raises(ValueError, match="b must have shape"):
        ops.matmul(np.ones((2, 3), np.float32), np.ones((4, 2), np.float32))
    with pytest.raises(TypeError, match="float32"):
        ops.matmul(np.ones((2, 3)), np.ones((3, 2), np.float32))
