"""The whole model (ptbfast.LSTMLanguageModel) against the NumPy reference model.

Whole-model gradients pass through every kernel and T steps of recurrence, so float32 rounding
accumulates: the bound is 1e-4 in the max-norm relative error, per parameter tensor.
"""

import os
import re
import threading

import numpy as np
import pytest

import ptbfast
from ptbfast import reference as ref

from helpers import max_rel_error

TOL = 1e-4


def model_pair(V, H, L, forget_bias=0.0, seed=0):
    fast = ptbfast.LSTMLanguageModel(V, H, L, forget_bias=forget_bias, seed=seed)
    slow = ref.NumpyLSTMLanguageModel(V, H, L, forget_bias=forget_bias, seed=seed, dtype=np.float64)
    slow.params = {k: v.astype(np.float64) for k, v in fast.params.items()}
    return fast, slow


def random_state(rng, L, B, H):
    return [tuple((rng.standard_normal((B, H)) * 0.3).astype(np.float32) for _ in range(2)) for _ in range(L)]


def as64(state):
    return [(c.astype(np.float64), h.astype(np.float64)) for c, h in state]


def test_same_seed_gives_the_reference_parameters():
    fast = ptbfast.LSTMLanguageModel(13, 5, 2, seed=3)
    slow = ref.NumpyLSTMLanguageModel(13, 5, 2, seed=3)
    assert list(fast.params) == ["embedding", "lstm_0/kernel", "lstm_0/bias", "lstm_1/kernel", "lstm_1/bias",
                                 "softmax_w", "softmax_b"]
    for name in fast.params:
        np.testing.assert_array_equal(fast.params[name], slow.params[name])
        assert fast.params[name].dtype == np.float32
    assert fast.params["lstm_1/kernel"].shape == (10, 20)
    assert np.abs(fast.params["embedding"]).max() <= 0.1


@pytest.mark.parametrize("V,H,L,B,T", [(50, 17, 2, 3, 5), (7, 1, 1, 1, 1), (200, 33, 3, 4, 7), (31, 16, 2, 20, 3)])
@pytest.mark.parametrize("forget_bias", [0.0, 1.0])
def test_loss_and_grads_match_reference(V, H, L, B, T, forget_bias):
    rng = np.random.default_rng(V + H + B)
    fast, slow = model_pair(V, H, L, forget_bias)
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    state = random_state(rng, L, B, H)
    cost, grads, new_state = fast.loss_and_grads(x, y, state)
    ref_cost, ref_grads, ref_state = slow.loss_and_grads(x, y, as64(state))
    assert abs(cost - ref_cost) <= 1e-5 * abs(ref_cost)
    assert list(grads) == list(fast.params)
    for name in grads:
        assert grads[name].shape == fast.params[name].shape and grads[name].dtype == np.float32
        assert max_rel_error(grads[name], ref_grads[name]) <= TOL, name
    for (c, h), (rc, rh) in zip(new_state, ref_state):
        assert max_rel_error(c, rc) <= 1e-5 and max_rel_error(h, rh) <= 1e-5
    loss_only, state2 = fast.loss(x, y, state)
    assert loss_only == pytest.approx(cost, rel=1e-6)


def test_dropout_masks_match_reference():
    rng = np.random.default_rng(1)
    V, H, L, B, T = 40, 9, 2, 3, 4
    fast, slow = model_pair(V, H, L)
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    masks = [((rng.random((T, B, H)) < 0.6) / 0.6).astype(np.float32) for _ in range(L + 1)]
    state = fast.initial_state(B)
    cost, grads, _ = fast.loss_and_grads(x, y, state, masks)
    ref_cost, ref_grads, _ = slow.loss_and_grads(x, y, as64(state), masks)
    assert abs(cost - ref_cost) <= 1e-5 * ref_cost
    for name in grads:
        assert max_rel_error(grads[name], ref_grads[name]) <= TOL, name


def test_sparse_embedding_gradient_is_the_dense_one_unmerged():
    rng = np.random.default_rng(2)
    model = ptbfast.LSTMLanguageModel(6, 4, 1)
    x, y = rng.integers(0, 6, (3, 5)), rng.integers(0, 6, (3, 5))
    _, dense, _ = model.loss_and_grads(x, y, model.initial_state(3))
    _, sparse, _ = model.loss_and_sparse_grads(x, y, model.initial_state(3))
    g = sparse["embedding"]
    assert g.values.shape == (15, 4) and sorted(g.indices.tolist()) == sorted(x.ravel().tolist())
    np.testing.assert_array_equal(g.to_dense(), dense["embedding"])


def test_cost_is_tf_sum_over_steps_of_batch_mean():
    # With zero weights every word has probability 1/V: cost = T * log(V) exactly.
    model = ptbfast.LSTMLanguageModel(10, 3, 1, init_scale=0.0)
    x = np.zeros((4, 6), np.int64)
    cost, _ = model.loss(x, x, model.initial_state(4))
    assert cost == pytest.approx(6 * np.log(10), rel=1e-6)


def test_threads_calling_concurrently_get_correct_results():
    rng = np.random.default_rng(3)
    model = ptbfast.LSTMLanguageModel(300, 32, 2)
    batches = [(rng.integers(0, 300, (5, 8)), rng.integers(0, 300, (5, 8))) for _ in range(6)]
    expected = [model.loss_and_grads(x, y, model.initial_state(5)) for x, y in batches]
    results = [None] * len(batches)

    def work(k):
        for _ in range(3):
            results[k] = model.loss_and_grads(*batches[k], model.initial_state(5))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (cost, grads, _), (ref_cost, ref_grads, _) in zip(results, expected):
        assert cost == pytest.approx(ref_cost, rel=1e-6)
        for name in grads:
            assert max_rel_error(grads[name], ref_grads[name]) <= 1e-6


# ---- bad input -----------------------------------------------------------------------------------

@pytest.fixture
def model():
    return ptbfast.LSTMLanguageModel(10, 4, 2)


def test_bad_ids(model):
    state = model.initial_state(2)
    ok = np.zeros((2, 3), np.int64)
    with pytest.raises(IndexError, match=r"x contains id 10.*\[0, 10\)"):
        model.loss(np.full((2, 3), 10), ok, state)
    with pytest.raises(IndexError, match="y contains id -1"):
        model.loss(ok, np.full((2, 3), -1), state)
    with pytest.raises(TypeError, match="x must be integers"):
        model.loss(ok.astype(np.float32), ok, state)
    with pytest.raises(ValueError, match="same shape"):
        model.loss(ok, ok[:, :2], state)
    with pytest.raises(ValueError, match=r"\[batch, steps\]"):
        model.loss(ok[0], ok[0], state)
    with pytest.raises(ValueError, match="empty batch"):
        model.loss(np.zeros((0, 3), np.int64), np.zeros((0, 3), np.int64), model.initial_state(0))


def test_bad_state_and_masks(model):
    x = np.zeros((2, 3), np.int64)
    with pytest.raises(ValueError, match="2 \\(c, h\\) pairs"):
        model.loss(x, x, model.initial_state(2)[:1])
    with pytest.raises(ValueError, match="state\\[0\\] c must have shape"):
        model.loss(x, x, model.initial_state(3))
    with pytest.raises(TypeError, match="float32"):
        model.loss(x, x, [(c.astype(np.float64), h) for c, h in model.initial_state(2)])
    with pytest.raises(ValueError, match="masks must hold"):
        model.loss(x, x, model.initial_state(2), masks=[np.ones((3, 2, 4), np.float32)])
    with pytest.raises(ValueError, match="time-major"):
        model.loss(x, x, model.initial_state(2), masks=[np.ones((2, 3, 4), np.float32)] * 3)


def test_nan_parameter_raises_and_names_it(model):
    model.params["lstm_1/bias"][0] = np.nan
    x = np.zeros((2, 3), np.int64)
    with pytest.raises(FloatingPointError, match="lstm_1/bias"):
        model.loss_and_grads(x, x, model.initial_state(2))


def test_build_info_reports_the_build():
    info = ptbfast.build_info()
    assert info["blas"] in ("mkl", "openblas")
    assert info["openmp_threads"] >= 1 and info["compiler"]
    expected = os.environ.get("PTBFAST_EXPECT_BLAS")  # set by .ci/run for each backend it tests
    if expected:
        assert info["blas"] == expected


@pytest.mark.parametrize("sizes, error, says", [((10.7, 4, 1), TypeError, "vocab_size must be an integer, got 10.7"),
                                                ((10, 2.0, 1), TypeError, "hidden_size must be an integer, got 2.0"),
                                                ((10, 4, True), TypeError, "num_layers must be an integer, got True"),
                                                ((10, 4, "2"), TypeError, "num_layers must be an integer, got '2'"),
                                                ((10, 0, 1), ValueError, "must be >= 1, got 10, 0, 1")])
def test_model_sizes_are_whole_numbers_from_one(sizes, error, says):
    with pytest.raises(error, match=re.escape(says)):
        ptbfast.LSTMLanguageModel(*sizes)
    assert ptbfast.LSTMLanguageModel(np.int64(10), np.int32(4), 1).vocab_size == 10  # NumPy's integers are integers


@pytest.mark.parametrize("total_batch, error", [(0, ValueError), (-3, ValueError), (1, ValueError), (2.5, TypeError),
                                                ("3", TypeError), (True, TypeError)])
def test_total_batch_is_a_whole_number_of_rows_at_least_the_batch(total_batch, error):
    model = ptbfast.LSTMLanguageModel(10, 4, 1)
    x = np.zeros((2, 3), np.int64)
    for run in (model.loss, model.loss_and_grads):
        with pytest.raises(error, match="total_batch must"):
            run(x, x, model.initial_state(2), total_batch=total_batch)
    halved = model.loss(x, x, model.initial_state(2), total_batch=np.int64(4))[0]
    assert halved == pytest.approx(model.loss(x, x, model.initial_state(2))[0] / 2, rel=1e-6)


def test_state_and_sizes_get_named_errors():
    # (each raised NumPy's or Python's own words: "has no len()", "too many values to unpack",
    # "negative dimensions are not allowed", "high - low range exceeds valid bounds")
    model = ptbfast.LSTMLanguageModel(10, 4, 2)
    x = np.zeros((2, 3), np.int64)
    c = np.zeros((2, 4), np.float32)
    with pytest.raises(TypeError, match="state must be a sequence of \\(c, h\\) pairs, one per layer"):
        model.loss(x, x, None)
    with pytest.raises(ValueError, match="state\\[1\\] must be a \\(c, h\\) pair, got tuple of length 3"):
        model.loss(x, x, [(c, c), (c, c, c)])
    with pytest.raises(ValueError, match="state\\[0\\] c must have shape \\(2, 4\\), got \\(4,\\)"):
        model.loss(x, x, [c, c])  # (a pair of rows: c's row is taken for c)
    stacked = np.zeros((2, 2, 2, 4), np.float32)  # [layers, (c, h), batch, H], as before
    assert model.loss(x, x, stacked)[0] == model.loss(x, x, model.initial_state(2))[0]
    with pytest.raises(ValueError, match="batch_size must be >= 0, got -1"):
        model.initial_state(-1)
    with pytest.raises(ValueError, match="init_scale must be a finite number >= 0, got nan"):
        ptbfast.LSTMLanguageModel(10, 4, 2, init_scale=float("nan"))
    with pytest.raises(ValueError, match="vocab_size must be >= 0, got -1"):
        ptbfast.ops.embedding_lookup_backward(np.zeros((2, 4), np.float32), np.array([0, 1]), -1)
    with pytest.raises(TypeError, match="keep_prob must be a number, got '0.5'"):
        ptbfast.ops.dropout_mask((2, 2), 0, 0, "0.5")


@pytest.mark.parametrize("n", [0, -1, ptbfast.ops.MAX_THREADS + 1, 100_000])
def test_set_num_threads_validates(n):
    # (libgomp ends the process at counts like 100,000; the count in effect stays as it was)
    before = ptbfast.get_num_threads()
    with pytest.raises(ValueError, match=f"between 1 and {ptbfast.ops.MAX_THREADS}, got {n}"):
        ptbfast.set_num_threads(n)
    assert ptbfast.get_num_threads() == before


@pytest.mark.parametrize("masked", [False, True])
def test_tied_weights_match_reference(masked):
    rng = np.random.default_rng(5)
    V, H, L, B, T = 30, 9, 2, 3, 4
    fast = ptbfast.LSTMLanguageModel(V, H, L, tie_weights=True, seed=2)
    slow = ref.NumpyLSTMLanguageModel(V, H, L, tie_weights=True, seed=2, dtype=np.float64)
    assert "softmax_w" not in fast.params and list(fast.params) == list(slow.params)
    slow.params = {k: v.astype(np.float64) for k, v in fast.params.items()}
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    masks = [((rng.random((T, B, H)) < 0.7) / 0.7).astype(np.float32) for _ in range(L + 1)] if masked else None
    cost, grads, _ = fast.loss_and_grads(x, y, fast.initial_state(B), masks)
    ref_cost, ref_grads, _ = slow.loss_and_grads(x, y, slow.initial_state(B), masks)
    assert abs(cost - ref_cost) <= 1e-5 * ref_cost
    for name in grads:
        assert max_rel_error(grads[name], ref_grads[name]) <= TOL, name
    _, sparse, _ = fast.loss_and_sparse_grads(x, y, fast.initial_state(B), masks)
    np.testing.assert_array_equal(sparse["embedding"], grads["embedding"])  # dense when tied


def test_from_config_builds_the_model_the_config_describes():
    from ptbfast.configs import get_config
    config = get_config("test", tie_weights=True, seed=3, precision="bf16")
    model = ptbfast.LSTMLanguageModel.from_config(config, precision="fp32")  # (the argument overrides the config's bf16)
    assert (model.vocab_size, model.hidden_size, model.num_layers) == (config.vocab_size, config.hidden_size,
                                                                     config.num_layers)
    assert model.tie_weights and "softmax_w" not in model.params and model.precision == "fp32"
    same = ptbfast.LSTMLanguageModel(config.vocab_size, config.hidden_size, config.num_layers, config.forget_bias,
                                     config.init_scale, 3, True)
    for name, value in same.params.items():
        np.testing.assert_array_equal(model.params[name], value)  # initialised from the config's seed
