"""Finite-difference gradient checks and behaviour tests for the NumPy reference model.

Gradients are checked in float64 with central differences, eps = 1e-6. Central differences
have truncation error ~eps**2 and rounding error ~1e-16 / eps, so about 1e-10 relative;
we accept max|analytic - numeric| / max|numeric| <= 1e-6, far below any real bug (a wrong
sign or a missing term gives errors of order 1).

Vector outputs are reduced to a scalar as sum(output * fixed random weights): the gradient
of that projection is exactly what the backward function returns when those weights are
passed as upstream gradients, so the whole Jacobian is tested with one scalar function.
"""

import numpy as np
import pytest

from ptbfast import reference as ref

EPS = 1e-6
RTOL = 1e-6


def numerical_gradient(scalar_fn, array: np.ndarray) -> np.ndarray:
    """Central differences of scalar_fn() with respect to every entry of array (edited in place)."""
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + EPS
        plus = scalar_fn()
        array[index] = saved - EPS
        minus = scalar_fn()
        array[index] = saved
        grad[index] = (plus - minus) / (2 * EPS)
    return grad


def assert_gradient_close(analytic: np.ndarray, numeric: np.ndarray, name: str = "") -> None:
    assert analytic.shape == numeric.shape, name
    scale = np.max(np.abs(numeric))
    assert scale > 1e-8, f"{name}: gradient is ~0, the check would be vacuous"
    error = np.max(np.abs(analytic - numeric)) / scale
    assert error <= RTOL, f"{name}: relative error {error:.3e}"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# --------------------------------------------------------------------------------------
# Embedding
# --------------------------------------------------------------------------------------


def test_embedding_lookup_selects_rows(rng):
    table = rng.standard_normal((5, 3))
    ids = np.array([[4, 0], [0, 2]])
    out = ref.embedding_lookup(table, ids)
    assert out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out[0, 0], table[4])
    np.testing.assert_array_equal(out[1, 0], table[0])


def test_embedding_backward_dense_and_sparse_match_finite_differences(rng):
    vocab_size, hidden_size = 6, 3
    table = rng.standard_normal((vocab_size, hidden_size))
    ids = np.array([[1, 3, 1], [5, 1, 3]])  # repeats accumulate; ids 0, 2, 4 unused
    weights = rng.standard_normal(ids.shape + (hidden_size,))

    dense = ref.embedding_lookup_backward(weights, ids, vocab_size)
    numeric = numerical_gradient(lambda: np.sum(ref.embedding_lookup(table, ids) * weights), table)
    assert_gradient_close(dense, numeric, "dense")

    unique_ids, summed_rows = ref.embedding_lookup_backward_sparse(weights, ids)
    assert unique_ids.dtype == np.int64
    np.testing.assert_array_equal(unique_ids, [1, 3, 5])
    np.testing.assert_allclose(summed_rows, dense[unique_ids], rtol=1e-15, atol=0)
    unused = np.setdiff1d(np.arange(vocab_size), unique_ids)
    assert np.all(dense[unused] == 0)


# --------------------------------------------------------------------------------------
# LSTM cell
# --------------------------------------------------------------------------------------


def test_sigmoid_is_stable_and_keeps_dtype():
    x = np.array([-1e4, -50.0, 0.0, 50.0, 1e4])
    with np.errstate(over="raise", invalid="raise", under="ignore"):  # exp(-1e4) -> 0 is fine
        s = ref.sigmoid(x)
    np.testing.assert_allclose(s, [0.0, np.exp(-50.0) / (1 + np.exp(-50.0)), 0.5, 1 / (1 + np.exp(-50.0)), 1.0])
    assert ref.sigmoid(x.astype(np.float32)).dtype == np.float32


def test_lstm_cell_matches_tf_formula_with_gate_order_ijfo(rng):
    batch_size, input_size, hidden_size, forget_bias = 2, 3, 4, 1.0
    x = rng.standard_normal((batch_size, input_size))
    c = rng.standard_normal((batch_size, hidden_size))
    h = rng.standard_normal((batch_size, hidden_size))
    kernel = rng.standard_normal((input_size + hidden_size, 4 * hidden_size))
    bias = rng.standard_normal(4 * hidden_size)
    new_c, new_h, _ = ref.lstm_cell_forward(x, c, h, kernel, bias, forget_bias)

    gates = x @ kernel[:input_size] + h @ kernel[input_size:] + bias
    i, j, f, o = (gates[:, k * hidden_size : (k + 1) * hidden_size] for k in range(4))
    logistic = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    expected_c = c * logistic(f + forget_bias) + logistic(i) * np.tanh(j)
    np.testing.assert_allclose(new_c, expected_c, rtol=1e-13)
    np.testing.assert_allclose(new_h, np.tanh(expected_c) * logistic(o), rtol=1e-13)


def test_lstm_cell_gradients(rng):
    batch_size, input_size, hidden_size, forget_bias = 2, 3, 4, 0.7
    inputs = {
        "x": rng.standard_normal((batch_size, input_size)),
        "c": rng.standard_normal((batch_size, hidden_size)),
        "h": rng.standard_normal((batch_size, hidden_size)),
        "kernel": rng.standard_normal((input_size + hidden_size, 4 * hidden_size)) * 0.5,
        "bias": rng.standard_normal(4 * hidden_size) * 0.5,
    }
    weight_c = rng.standard_normal((batch_size, hidden_size))
    weight_h = rng.standard_normal((batch_size, hidden_size))

    def projected_output():
        new_c, new_h, _ = ref.lstm_cell_forward(**inputs, forget_bias=forget_bias)
        return np.sum(new_c * weight_c) + np.sum(new_h * weight_h)

    _, _, cache = ref.lstm_cell_forward(**inputs, forget_bias=forget_bias)
    analytic = dict(zip(["x", "c", "h", "kernel", "bias"], ref.lstm_cell_backward(weight_c, weight_h, cache)))
    for name, array in inputs.items():
        assert_gradient_close(analytic[name], numerical_gradient(projected_output, array), name)


# --------------------------------------------------------------------------------------
# LSTM layer
# --------------------------------------------------------------------------------------


def make_layer_inputs(rng, num_steps, batch_size, input_size, hidden_size):
    return {
        "x": rng.standard_normal((num_steps, batch_size, input_size)),
        "c0": rng.standard_normal((batch_size, hidden_size)),
        "h0": rng.standard_normal((batch_size, hidden_size)),
        "kernel": rng.standard_normal((input_size + hidden_size, 4 * hidden_size)) * 0.5,
        "bias": rng.standard_normal(4 * hidden_size) * 0.5,
    }


@pytest.mark.parametrize("num_steps, batch_size, with_final_state_grads", [(3, 2, True), (4, 1, False)])
def test_lstm_layer_gradients(rng, num_steps, batch_size, with_final_state_grads):
    input_size, hidden_size, forget_bias = 2, 3, 1.0
    inputs = make_layer_inputs(rng, num_steps, batch_size, input_size, hidden_size)
    weight_h_all = rng.standard_normal((num_steps, batch_size, hidden_size))
    weight_c_T = rng.standard_normal((batch_size, hidden_size)) if with_final_state_grads else None
    weight_h_T = rng.standard_normal((batch_size, hidden_size)) if with_final_state_grads else None

    def projected_output():
        h_all, (c_T, h_T), _ = ref.lstm_layer_forward(**inputs, forget_bias=forget_bias)
        total = np.sum(h_all * weight_h_all)
        if with_final_state_grads:
            total += np.sum(c_T * weight_c_T) + np.sum(h_T * weight_h_T)
        return total

    _, _, cache = ref.lstm_layer_forward(**inputs, forget_bias=forget_bias)
    grads = ref.lstm_layer_backward(weight_h_all, weight_c_T, weight_h_T, cache)
    analytic = dict(zip(["x", "c0", "h0", "kernel", "bias"], grads))
    for name, array in inputs.items():
        assert_gradient_close(analytic[name], numerical_gradient(projected_output, array), name)


def test_lstm_layer_backward_none_means_zero(rng):
    inputs = make_layer_inputs(rng, 3, 2, 2, 3)
    _, _, cache = ref.lstm_layer_forward(**inputs)
    d_h_all = rng.standard_normal((3, 2, 3))
    zeros = np.zeros((2, 3))
    for with_none, with_zeros in zip(
        ref.lstm_layer_backward(d_h_all, None, None, cache),
        ref.lstm_layer_backward(d_h_all, zeros, zeros, cache),
    ):
        np.testing.assert_array_equal(with_none, with_zeros)


def test_lstm_layer_with_zero_steps_passes_state_through(rng):
    batch_size, input_size, hidden_size = 2, 2, 3
    inputs = make_layer_inputs(rng, 0, batch_size, input_size, hidden_size)
    h_all, (c_T, h_T), cache = ref.lstm_layer_forward(**inputs)
    assert h_all.shape == (0, batch_size, hidden_size)
    np.testing.assert_array_equal(c_T, inputs["c0"])
    np.testing.assert_array_equal(h_T, inputs["h0"])

    d_c_T = rng.standard_normal((batch_size, hidden_size))
    d_h_T = rng.standard_normal((batch_size, hidden_size))
    dx, dc0, dh0, dkernel, dbias = ref.lstm_layer_backward(h_all, d_c_T, d_h_T, cache)
    assert dx.shape == (0, batch_size, input_size)
    np.testing.assert_array_equal(dc0, d_c_T)
    np.testing.assert_array_equal(dh0, d_h_T)
    assert dkernel.shape == inputs["kernel"].shape and not dkernel.any()
    assert dbias.shape == inputs["bias"].shape and not dbias.any()


# --------------------------------------------------------------------------------------
# Output layer
# --------------------------------------------------------------------------------------


def test_output_layer_gradients(rng):
    num_rows, hidden_size, vocab_size = 5, 3, 4
    inputs = {
        "h": rng.standard_normal((num_rows, hidden_size)),
        "w": rng.standard_normal((hidden_size, vocab_size)),
        "b": rng.standard_normal(vocab_size),
    }
    targets = np.array([0, 3, 3, 1, 2])
    weight_losses = rng.standard_normal(num_rows)

    def projected_losses():
        losses, _ = ref.output_layer_forward(**inputs, targets=targets)
        return np.sum(losses * weight_losses)

    _, cache = ref.output_layer_forward(**inputs, targets=targets)
    analytic = dict(zip(["h", "w", "b"], ref.output_layer_backward(weight_losses, cache)))
    for name, array in inputs.items():
        assert_gradient_close(analytic[name], numerical_gradient(projected_losses, array), name)

    # A scalar upstream gradient is broadcast to every row.
    for from_scalar, from_array in zip(
        ref.output_layer_backward(0.25, cache), ref.output_layer_backward(np.full(num_rows, 0.25), cache)
    ):
        np.testing.assert_array_equal(from_scalar, from_array)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_output_layer_is_stable_for_huge_logits(dtype):
    # Logits rows: [1e4, 1e4, 0], [1e4, 1e4, 0], [-1e4, -1e4, 0]; exp(1e4) would overflow.
    h = np.array([[1e4], [1e4], [-1e4]], dtype=dtype)
    w = np.array([[1.0, 1.0, 0.0]], dtype=dtype)
    b = np.zeros(3, dtype=dtype)
    targets = np.array([0, 2, 2])
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        losses, cache = ref.output_layer_forward(h, w, b, targets)
        grads = ref.output_layer_backward(1.0, cache)
    assert losses.dtype == dtype
    np.testing.assert_allclose(losses, [np.log(2.0), 1e4 + np.log(2.0), 0.0], rtol=1e-6, atol=1e-6)
    assert all(np.all(np.isfinite(g)) for g in grads)


# --------------------------------------------------------------------------------------
# Whole model
# --------------------------------------------------------------------------------------

VOCAB_SIZE, HIDDEN_SIZE, NUM_LAYERS = 7, 3, 2


def make_model(forget_bias=0.0):
    # init_scale 0.5 instead of TF's 0.1 so gates are not all ~0.5 and every term matters.
    return ref.NumpyLSTMLanguageModel(
        VOCAB_SIZE, HIDDEN_SIZE, NUM_LAYERS, forget_bias=forget_bias, init_scale=0.5, seed=3, dtype=np.float64
    )


def make_batch(rng, batch_size, num_steps):
    x = rng.integers(0, VOCAB_SIZE, size=(batch_size, num_steps))
    y = rng.integers(0, VOCAB_SIZE, size=(batch_size, num_steps))
    return x, y


def make_random_state(rng, batch_size):
    return [
        (rng.standard_normal((batch_size, HIDDEN_SIZE)), rng.standard_normal((batch_size, HIDDEN_SIZE)))
        for _ in range(NUM_LAYERS)
    ]


def make_masks(rng, batch_size, num_steps, keep_prob=0.6):
    shape = (num_steps, batch_size, HIDDEN_SIZE)
    return [(rng.random(shape) < keep_prob) / keep_prob for _ in range(NUM_LAYERS + 1)]


@pytest.mark.parametrize(
    "batch_size, with_masks, forget_bias", [(2, False, 0.0), (2, True, 1.0), (1, False, 0.0)]
)
def test_model_gradients_for_every_parameter(rng, batch_size, with_masks, forget_bias):
    model = make_model(forget_bias)
    x, y = make_batch(rng, batch_size, num_steps=3)
    state = make_random_state(rng, batch_size)
    masks = make_masks(rng, batch_size, 3) if with_masks else None

    cost, grads, _ = model.loss_and_grads(x, y, state, masks)
    assert list(grads) == list(model.params)
    for name, param in model.params.items():
        assert grads[name].shape == param.shape and grads[name].dtype == param.dtype
        numeric = numerical_gradient(lambda: model.loss(x, y, state, masks)[0], param)
        assert_gradient_close(grads[name], numeric, name)


@pytest.mark.parametrize("with_masks", [False, True])
def test_tied_model_gradients_for_every_parameter(rng, with_masks):
    # Tied weights: the embedding is used by the lookup and, transposed, by the softmax.
    model = ref.NumpyLSTMLanguageModel(VOCAB_SIZE, HIDDEN_SIZE, NUM_LAYERS, forget_bias=0.3, init_scale=0.5, seed=1,
                                  dtype=np.float64, tie_weights=True)
    assert "softmax_w" not in model.params
    x, y = make_batch(rng, 2, num_steps=3)
    state = make_random_state(rng, 2)
    masks = make_masks(rng, 2, 3) if with_masks else None
    _, grads, _ = model.loss_and_grads(x, y, state, masks)
    assert list(grads) == list(model.params)
    for name, param in model.params.items():
        numeric = numerical_gradient(lambda: model.loss(x, y, state, masks)[0], param)
        assert_gradient_close(grads[name], numeric, name)


def naive_cost(model, x, y, state):
    """TF's cost written out step by step: sum over t of the batch-mean cross-entropy."""
    p = model.params
    logistic = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    state = [(c.copy(), h.copy()) for c, h in state]
    total = 0.0
    for t in range(x.shape[1]):
        layer_input = p["embedding"][x[:, t]]
        for layer in range(model.num_layers):
            c, h = state[layer]
            gates = np.concatenate([layer_input, h], axis=1) @ p[f"lstm_{layer}/kernel"] + p[f"lstm_{layer}/bias"]
            i, j, f, o = np.split(gates, 4, axis=1)
            c = c * logistic(f + model.forget_bias) + logistic(i) * np.tanh(j)
            h = np.tanh(c) * logistic(o)
            state[layer] = (c, h)
            layer_input = h
        logits = layer_input @ p["softmax_w"] + p["softmax_b"]
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        total += np.mean(-np.log(probabilities[np.arange(x.shape[0]), y[:, t]]))
    return total, state


def test_model_cost_is_sum_over_steps_of_batch_mean_cross_entropy(rng):
    model = make_model(forget_bias=0.5)
    x, y = make_batch(rng, batch_size=3, num_steps=4)
    state = make_random_state(rng, 3)
    cost, new_state = model.loss(x, y, state)
    expected_cost, expected_state = naive_cost(model, x, y, state)
    assert isinstance(cost, float)
    assert cost == pytest.approx(expected_cost, rel=1e-12)
    for (c, h), (expected_c, expected_h) in zip(new_state, expected_state):
        np.testing.assert_allclose(c, expected_c, rtol=1e-12)
        np.testing.assert_allclose(h, expected_h, rtol=1e-12)


def test_loss_agrees_with_loss_and_grads(rng):
    model = make_model()
    x, y = make_batch(rng, batch_size=2, num_steps=3)
    state = model.initial_state(2)
    masks = make_masks(rng, 2, 3)
    cost, new_state = model.loss(x, y, state, masks)
    cost_with_grads, _, new_state_with_grads = model.loss_and_grads(x, y, state, masks)
    assert cost == cost_with_grads
    for pair, pair_with_grads in zip(new_state, new_state_with_grads):
        for a, b in zip(pair, pair_with_grads):
            np.testing.assert_array_equal(a, b)


def test_carried_state_splits_a_sequence_exactly(rng):
    model = make_model()
    x, y = make_batch(rng, batch_size=2, num_steps=6)
    whole_cost, whole_state = model.loss(x, y, model.initial_state(2))
    first_cost, middle_state = model.loss(x[:, :3], y[:, :3], model.initial_state(2))
    second_cost, final_state = model.loss(x[:, 3:], y[:, 3:], middle_state)
    assert first_cost + second_cost == pytest.approx(whole_cost, rel=1e-12)
    for (c, h), (whole_c, whole_h) in zip(final_state, whole_state):
        np.testing.assert_allclose(c, whole_c, rtol=1e-12)
        np.testing.assert_allclose(h, whole_h, rtol=1e-12)


def test_initial_state_and_float32_model_keep_dtype(rng):
    model = ref.NumpyLSTMLanguageModel(VOCAB_SIZE, HIDDEN_SIZE, NUM_LAYERS)  # float32 default, as in TF
    state = model.initial_state(2)
    assert len(state) == NUM_LAYERS
    for c, h in state:
        assert c.shape == h.shape == (2, HIDDEN_SIZE)
        assert c.dtype == h.dtype == np.float32 and not c.any() and not h.any()
    x, y = make_batch(rng, batch_size=2, num_steps=3)
    cost, grads, new_state = model.loss_and_grads(x, y, state, make_masks(rng, 2, 3))
    assert isinstance(cost, float) and np.isfinite(cost)
    assert all(g.dtype == np.float32 for g in grads.values())
    assert all(a.dtype == np.float32 for pair in new_state for a in pair)


# --------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------


def test_embedding_rejects_bad_ids():
    table = np.zeros((4, 2))
    with pytest.raises(TypeError):
        ref.embedding_lookup(table, np.array([0.0, 1.0]))
    with pytest.raises(IndexError):
        ref.embedding_lookup(table, np.array([0, 4]))
    with pytest.raises(IndexError):
        ref.embedding_lookup(table, np.array([-1]))
    with pytest.raises(IndexError):
        ref.embedding_lookup_backward(np.zeros((1, 2)), np.array([4]), vocab_size=4)
    with pytest.raises(IndexError):
        ref.embedding_lookup_backward_sparse(np.zeros((1, 2)), np.array([-2]))
    with pytest.raises(ValueError):
        ref.embedding_lookup_backward(np.zeros((3, 2)), np.array([0, 1]), vocab_size=4)


def test_lstm_rejects_mismatched_shapes(rng):
    x, c, h = np.zeros((2, 3)), np.zeros((2, 4)), np.zeros((2, 4))
    kernel, bias = np.zeros((7, 16)), np.zeros(16)
    with pytest.raises(ValueError):
        ref.lstm_cell_forward(x, c, h, np.zeros((6, 16)), bias)
    with pytest.raises(ValueError):
        ref.lstm_cell_forward(x, c, np.zeros((1, 4)), kernel, bias)
    with pytest.raises(ValueError):
        ref.lstm_cell_forward(x, c, h, kernel, np.zeros(15))
    with pytest.raises(ValueError):
        ref.lstm_layer_forward(x, c, h, kernel, bias)  # x must be [T, B, In]
    _, _, cache = ref.lstm_layer_forward(np.zeros((2, 2, 3)), c, h, kernel, bias)
    with pytest.raises(ValueError):
        ref.lstm_layer_backward(np.zeros((3, 2, 4)), None, None, cache)


def test_output_layer_rejects_bad_targets():
    h, w, b = np.zeros((2, 3)), np.zeros((3, 5)), np.zeros(5)
    with pytest.raises(ValueError):
        ref.output_layer_forward(h, w, b, np.array([0, 1, 2]))
    with pytest.raises(TypeError):
        ref.output_layer_forward(h, w, b, np.array([0.0, 1.0]))
    with pytest.raises(IndexError):
        ref.output_layer_forward(h, w, b, np.array([0, 5]))
    with pytest.raises(ValueError):
        ref.output_layer_forward(h, np.zeros((3, 5)), np.zeros(4), np.array([0, 1]))


def test_model_rejects_bad_inputs(rng):
    model = make_model()
    x, y = make_batch(rng, batch_size=2, num_steps=3)
    state = model.initial_state(2)
    with pytest.raises(ValueError):
        model.loss(x, y[:, :2], state)
    with pytest.raises(ValueError):
        model.loss(x[0], y[0], state)  # rank 1
    with pytest.raises(TypeError):
        model.loss(x.astype(np.float64), y, state)
    with pytest.raises(IndexError):
        model.loss(x, y + VOCAB_SIZE, state)
    with pytest.raises(ValueError):
        model.loss(x, y, state[:1])
    with pytest.raises(ValueError):
        model.loss(x, y, model.initial_state(3))
    with pytest.raises(ValueError):
        model.loss(x, y, state, make_masks(rng, 2, 3)[:NUM_LAYERS])
    with pytest.raises(ValueError):
        model.loss(x, y, state, make_masks(rng, 2, 4))
