"""Fused output projection + softmax cross-entropy against the NumPy reference."""

import numpy as np
import pytest

from ptbfast import ops
from ptbfast import reference as ref

from helpers import f32, f64, max_rel_error

TOL = 1e-5

SHAPES = [(1, 1, 1), (1, 3, 2), (5, 17, 33), (37, 16, 100), (0, 4, 9), (64, 20, 1000)]  # (N, H, V)


def random_problem(rng, N, H, V, scale=1.0):
    h = f32(rng, N, H, scale=scale)
    w = f32(rng, H, V, scale=1.0 / np.sqrt(H))
    b = f32(rng, V, scale=0.1)
    targets = rng.integers(0, V, size=N)
    return h, w, b, targets


@pytest.mark.parametrize("N,H,V", SHAPES)
@pytest.mark.parametrize("block_rows", [0, 1, 3])
def test_loss_and_gradients_match_reference(N, H, V, block_rows):
    rng = np.random.default_rng(N + H + V)
    h, w, b, targets = random_problem(rng, N, H, V)
    ref_losses, cache = ref.output_layer_forward(*f64(h, w, b), targets)
    total, losses = ops.output_layer_loss(h, w, b, targets, block_rows)
    assert losses.shape == (N,)
    assert max_rel_error(losses, ref_losses) <= TOL
    assert abs(total - ref_losses.sum()) <= TOL * max(1.0, abs(ref_losses.sum()))

    d_loss = 0.05
    total2, losses2, dh, dw, db = ops.output_layer_loss_and_grads(h, w, b, targets, d_loss, block_rows)
    np.testing.assert_array_equal(losses2, losses)
    for name, got, want in zip(("dh", "dw", "db"), (dh, dw, db), ref.output_layer_backward(d_loss, cache)):
        assert got.shape == want.shape, name
        assert max_rel_error(got, want) <= TOL, name


def test_block_size_does_not_change_results_beyond_rounding():
    rng = np.random.default_rng(1)
    h, w, b, targets = random_problem(rng, 50, 8, 300)
    whole = ops.output_layer_loss_and_grads(h, w, b, targets, 1.0, 0)
    for block_rows in (1, 7, 49, 50, 1000):
        part = ops.output_layer_loss_and_grads(h, w, b, targets, 1.0, block_rows)
        for a, c in zip(whole[1:], part[1:]):
            assert max_rel_error(a, c) <= 1e-6


@pytest.mark.parametrize("N,H,V", [(37, 16, 100), (5, 17, 33), (1, 3, 2), (64, 20, 1000)])
@pytest.mark.parametrize("block_rows, block_columns", [(0, 1), (0, 7), (3, 16), (5, 99), (1, 100), (0, 5000)])
def test_forward_in_column_chunks_matches_reference(N, H, V, block_rows, block_columns):
    # Evaluation folds column chunks into a running logsumexp per row (any chunk width, the last
    # ones balanced); the tied layout reads the chunk's rows of the embedding.
    rng = np.random.default_rng(N * H + V)
    h, w, b, targets = random_problem(rng, N, H, V, scale=3.0)
    ref_losses, _ = ref.output_layer_forward(*f64(h, w, b), targets)
    for weights in (w, np.ascontiguousarray(w.T).T):  # softmax_w, and the tied embedding's .T view
        total, losses = ops.output_layer_loss(h, weights, b, targets, block_rows, block_columns=block_columns)
        assert max_rel_error(losses, ref_losses) <= TOL
        assert abs(total - ref_losses.sum()) <= TOL * max(1.0, abs(ref_losses.sum()))


@pytest.mark.parametrize("N,H,V", [(37, 16, 100), (5, 17, 33), (64, 20, 1000), (0, 4, 9), (1, 3, 2)])
@pytest.mark.parametrize("block_rows, block_columns", [(0, 1), (0, 7), (3, 16), (5, 99), (1, 50)])
def test_training_in_column_chunks_matches_reference(N, H, V, block_rows, block_columns):
    # The two-pass form for vocabularies too large for whole rows, in both weight layouts.
    rng = np.random.default_rng(N * H + V + 1)
    h, w, b, targets = random_problem(rng, N, H, V, scale=3.0)
    ref_losses, cache = ref.output_layer_forward(*f64(h, w, b), targets)
    want = ref.output_layer_backward(0.05, cache)
    for weights in (w, np.ascontiguousarray(w.T).T):  # softmax_w, and the tied embedding's .T view
        total, losses, dh, dw, db = ops.output_layer_loss_and_grads(
            h, weights, b, targets, 0.05, block_rows, block_columns=block_columns)
        assert max_rel_error(losses, ref_losses) <= TOL
        assert abs(total - ref_losses.sum()) <= TOL * max(1.0, abs(ref_losses.sum()))
        for name, got, ref_grad in zip(("dh", "dw", "db"), (dh, dw, db), want):
            assert got.shape == ref_grad.shape, name
            assert max_rel_error(got, ref_grad) <= TOL, name


def test_large_logits_are_stable():
    # Logits around 1e4: a naive exp would overflow to inf and give NaN.
    rng = np.random.default_rng(2)
    h, w, b, targets = random_problem(rng, 9, 6, 50, scale=3e4)
    total, losses, dh, dw, db = ops.output_layer_loss_and_grads(h, w, b, targets, 1.0, 0)
    assert np.isfinite(losses).all() and np.isfinite(dh).all() and np.isfinite(dw).all()
    ref_losses, cache = ref.output_layer_forward(*f64(h, w, b), targets)
    for block_columns in (0, 7):  # the online logsumexp rescales sums between chunks of very different maxima
        _, chunked = ops.output_layer_loss(h, w, b, targets, block_columns=block_columns)
        assert max_rel_error(chunked, ref_losses) <= 1e-5
    _, chunked, *grads = ops.output_layer_loss_and_grads(h, w, b, targets, 1.0, block_columns=7)
    assert max_rel_error(chunked, ref_losses) <= 1e-5
    for got, want in zip(grads, ref.output_layer_backward(1.0, cache)):
        assert max_rel_error(got, want) <= 1e-5
    assert np.abs(h @ w).max() > 1e4
    # Logits of 1e4 carry float32 rounding of ~1e-3 from the GEMM itself; the loss inherits it.
    assert max_rel_error(losses, ref_losses) <= 1e-5
    for got, want in zip((dh, dw, db), ref.output_layer_backward(1.0, cache)):
        assert max_rel_error(got, want) <= 1e-5


def test_single_word_vocabulary_has_zero_loss():
    h = np.ones((3, 2), np.float32)
    total, losses, dh, dw, db = ops.output_layer_loss_and_grads(
        h, np.ones((2, 1), np.float32), np.zeros(1, np.float32), np.zeros(3, np.int64), 1.0, 0)
    assert total == 0.0 and not losses.any() and not dh.any() and not dw.any() and not db.any()


def test_empty_batch_gives_zero_gradients():
    rng = np.random.default_rng(3)
    _, w, b, _ = random_problem(rng, 1, 4, 7)
    total, losses, dh, dw, db = ops.output_layer_loss_and_grads(
        np.zeros((0, 4), np.float32), w, b, np.zeros(0, np.int64), 1.0, 0)
    assert total == 0.0 and losses.shape == (0,) and dh.shape == (0, 4)
    assert not dw.any() and not db.any()


def test_nan_in_hidden_state_gives_nan_loss_for_that_row_only():
    rng = np.random.default_rng(4)
    h, w, b, targets = random_problem(rng, 3, 4, 7)
    h[1, 2] = np.nan
    for block_columns in (0, 3):
        _, losses = ops.output_layer_loss(h, w, b, targets, block_columns=block_columns)
        assert np.isfinite(losses[[0, 2]]).all() and np.isnan(losses[1])
        _, losses, dh, _, _ = ops.output_layer_loss_and_grads(h, w, b, targets, 1.0, block_columns=block_columns)
        assert np.isfinite(losses[[0, 2]]).all() and np.isnan(losses[1])
        assert np.isfinite(dh[[0, 2]]).all() and np.isnan(dh[1]).all()


def test_bad_input():
    rng = np.random.default_rng(5)
    h, w, b, targets = random_problem(rng, 4, 3, 6)
    with pytest.raises(IndexError, match=r"targets has 6 .*\[0, 6\)"):
        ops.output_layer_loss(h, w, b, np.array([0, 1, 2, 6]))
    with pytest.raises(IndexError, match="-1"):
        ops.output_layer_loss(h, w, b, np.array([0, -1, 2, 3]))
    with pytest.raises(ValueError, match="targets must have shape"):
        ops.output_layer_loss(h, w, b, targets[:3])
    with pytest.raises(ValueError, match="softmax_w"):
        ops.output_layer_loss(h, w[:2], b, targets)
    with pytest.raises(ValueError, match="softmax_b"):
        ops.output_layer_loss(h, w, b[:5], targets)
    with pytest.raises(TypeError, match="float32"):
        ops.output_layer_loss(h.astype(np.float64), w, b, targets)
    with pytest.raises(TypeError, match="targets must be integers"):
        ops.output_layer_loss(h, w, b, targets.astype(np.float32))
    # A Fortran-ordered softmax_w is read in place as the transpose of a [V, H] matrix: same losses.
    assert max_rel_error(ops.output_layer_loss(h, np.asfortranarray(w), b, targets)[1],
                         ops.output_layer_loss(h, w, b, targets)[1]) <= 1e-6


@pytest.mark.parametrize("N,H,V", [(1, 1, 1), (5, 17, 33), (37, 16, 100), (0, 4, 9)])
@pytest.mark.parametrize("block_rows", [0, 3])
def test_transposed_weights_for_tied_embeddings(N, H, V, block_rows):
    # w given as embedding.T (a view of a C-contiguous [V, H]) is read in place, and dw comes back
    # as the same kind of view: dw.T is [V, H] and C-contiguous, the embedding's layout.
    rng = np.random.default_rng(N + V)
    h, w, b, targets = random_problem(rng, N, H, V)
    embedding = np.ascontiguousarray(w.T)
    total, losses, dh, dw, db = ops.output_layer_loss_and_grads(h, embedding.T, b, targets, 0.5, block_rows)
    ref_losses, cache = ref.output_layer_forward(*f64(h, w, b), targets)
    ref_dh, ref_dw, ref_db = ref.output_layer_backward(0.5, cache)
    assert dw.shape == (H, V) and (dw.T.flags.c_contiguous or dw.size == 0)
    assert max_rel_error(losses, ref_losses) <= TOL
    for got, want in ((dh, ref_dh), (dw, ref_dw), (db, ref_db)):
        assert max_rel_error(got, want) <= TOL
    _, forward_losses = ops.output_layer_loss(h, embedding.T, b, targets)
    assert max_rel_error(forward_losses, losses) <= 1e-6
    with pytest.raises(ValueError, match="softmax_w"):
        ops.output_layer_loss(h, np.zeros((V, H + 1), np.float32).T, b, targets)


@pytest.mark.parametrize("block_columns", [0, 1, 2, 5])
def test_a_nan_in_any_column_chunk_makes_the_loss_nan(block_columns):
    # A chunk holding only NaN leaves the running max at -inf; the NaN must still reach the sum.
    rng = np.random.default_rng(5)
    h, w, b, targets = random_problem(rng, 4, 3, 6)
    b[0] = np.nan
    _, losses = ops.output_layer_loss(h, w, b, targets, block_columns=block_columns)
    assert np.isnan(losses).all()
    _, losses, dh, _, _ = ops.output_layer_loss_and_grads(h, w, b, targets, 1.0, block_columns=block_columns)
    assert np.isnan(losses).all() and np.isnan(dh).all()
