"""NumPy reference implementation of TensorFlow's ``ptb_word_lm`` LSTM language model.

This module is the ground truth the C++ kernels are tested against, so it favours clarity
over speed. Every function computes in the dtype of its inputs (pass float64 for gradient
checks) and each forward function sits next to its backward.

Shape letters: V vocabulary size, H hidden size, In layer input size, B batch size,
T time steps, N = T * B rows fed to the softmax, U number of distinct ids.

LSTM semantics are TF's ``BasicLSTMCell`` with gate columns in the order i, j, f, o:

    gates = concat([x, h], axis=1) @ kernel + bias
    new_c = c * sigmoid(f + forget_bias) + sigmoid(i) * tanh(j)
    new_h = tanh(new_c) * sigmoid(o)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .params import init_params
from .precision import PRECISIONS  # "bf16": matrix-product operands rounded to bfloat16

# --------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------


def _check_rank(name: str, array: np.ndarray, rank: int) -> None:
    if array.ndim != rank:
        raise ValueError(f"{name} must have rank {rank}, got shape {array.shape}")


def _check_shape(name: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    if array.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {array.shape}")


def _check_ids(name: str, ids, vocab_size: int | None) -> np.ndarray:
    """Integer ids in [0, vocab_size); vocab_size None checks only the lower bound."""
    ids = np.asarray(ids)
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, got dtype {ids.dtype}")
    if ids.size:
        low, high = ids.min(), ids.max()
        if low < 0 or (vocab_size is not None and high >= vocab_size):
            allowed = f"[0, {vocab_size})" if vocab_size is not None else "[0, inf)"
            raise IndexError(f"{name} must lie in {allowed}, got values in [{low}, {high}]")
    return ids


# --------------------------------------------------------------------------------------
# Embedding
# --------------------------------------------------------------------------------------


def embedding_lookup(params: np.ndarray, ids) -> np.ndarray:
    """Rows of ``params`` [V, H] selected by integer ``ids`` (any shape) -> ids.shape + (H,)."""
    params = np.asarray(params)
    _check_rank("params", params, 2)
    ids = _check_ids("ids", ids, params.shape[0])
    return params[ids]


def embedding_lookup_backward(d_out: np.ndarray, ids, vocab_size: int) -> np.ndarray:
    """Dense gradient [V, H] of the embedding table from ``d_out`` [ids.shape + (H,)].

    Repeated ids accumulate, hence the scatter-add rather than a plain assignment.
    """
    d_out = np.asarray(d_out)
    ids = _check_ids("ids", ids, vocab_size)
    if d_out.shape[:-1] != ids.shape or d_out.ndim != ids.ndim + 1:
        raise ValueError(f"d_out must have shape ids.shape + (H,), got {d_out.shape} for ids {ids.shape}")
    hidden_size = d_out.shape[-1]
    d_params = np.zeros((vocab_size, hidden_size), dtype=d_out.dtype)
    np.add.at(d_params, ids.reshape(-1), d_out.reshape(-1, hidden_size))
    return d_params


def embedding_lookup_backward_sparse(d_out: np.ndarray, ids) -> tuple[np.ndarray, np.ndarray]:
    """Sparse embedding gradient: (unique ids ascending int64 [U], summed rows [U, H]).

    Row k of the result is the sum of the rows of ``d_out`` whose id is ``unique_ids[k]``;
    it equals ``embedding_lookup_backward(...)[unique_ids]`` and every other row is zero.
    """
    d_out = np.asarray(d_out)
    ids = _check_ids("ids", ids, None)
    if d_out.shape[:-1] != ids.shape or d_out.ndim != ids.ndim + 1:
        raise ValueError(f"d_out must have shape ids.shape + (H,), got {d_out.shape} for ids {ids.shape}")
    hidden_size = d_out.shape[-1]
    unique_ids, position_in_unique = np.unique(ids.reshape(-1), return_inverse=True)
    summed_rows = np.zeros((unique_ids.size, hidden_size), dtype=d_out.dtype)
    np.add.at(summed_rows, position_in_unique.reshape(-1), d_out.reshape(-1, hidden_size))
    return unique_ids.astype(np.int64), summed_rows


# --------------------------------------------------------------------------------------
# Dropout's random numbers (src/cpp/dropout.cpp)
# --------------------------------------------------------------------------------------

_PHILOX_M = (np.uint64(0xD2511F53), np.uint64(0xCD9E8D57))
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)


def philox4x32_10(counter, key) -> np.ndarray:
    """Philox4x32-10 (Salmon et al. 2011): ``counter`` [4, n] and ``key`` (2 ints) -> the blocks' four
    32-bit words [4, n] (uint32), as Random123 computes them."""
    c = [np.asarray(word, dtype=np.uint64) for word in counter]
    k = [int(key[0]) & 0xFFFFFFFF, int(key[1]) & 0xFFFFFFFF]
    low = np.uint64(0xFFFFFFFF)
    for round_ in range(10):
        if round_ > 0:  # the key schedule: Weyl increments, before rounds 2..10
            k = [(k[0] + _PHILOX_W[0]) & 0xFFFFFFFF, (k[1] + _PHILOX_W[1]) & 0xFFFFFFFF]
        p0, p1 = _PHILOX_M[0] * c[0], _PHILOX_M[1] * c[2]  # (32 x 32 bits: exact in uint64)
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ np.uint64(k[0]), p1 & low,
             (p0 >> np.uint64(32)) ^ c[3] ^ np.uint64(k[1]), p0 & low]
    return np.stack(c).astype(np.uint32)


def random_uniform(shape, seed: int, stream: int = 0) -> np.ndarray:
    """float32 [shape] in [0, 1): element k (row-major) is word (k % 64) // 16 of Philox block
    16 (k // 64) + k % 16 (counter: the block as two 32-bit words, ``stream``, 0; key: ``seed``'s two
    halves), made a float as NumPy's float32 ``random()`` does: (word >> 8) * 2**-24."""
    n = int(np.prod(shape, dtype=np.int64))
    groups = -(-n // 64)
    blocks = np.arange(16 * groups, dtype=np.uint64)
    counter = (blocks & np.uint64(0xFFFFFFFF), blocks >> np.uint64(32),
               np.full(blocks.shape, stream, np.uint64), np.zeros(blocks.shape, np.uint64))
    words = philox4x32_10(counter, (seed & 0xFFFFFFFF, seed >> 32))       # [4, 16 * groups]
    words = words.reshape(4, groups, 16).transpose(1, 0, 2).reshape(-1)[:n]  # 64 elements a group
    return ((words >> np.uint32(8)).astype(np.float32) * np.float32(2.0**-24)).reshape(shape)


def dropout_mask(shape, seed: int, stream: int, keep_prob: float) -> np.ndarray:
    """An inverted-dropout mask: 1 / keep_prob where ``random_uniform`` < keep_prob, else 0 (float32)."""
    keep = random_uniform(shape, seed, stream) < np.float32(keep_prob)
    return np.where(keep, np.float32(1.0 / keep_prob), np.float32(0.0))


# --------------------------------------------------------------------------------------
# LSTM cell
# --------------------------------------------------------------------------------------


def round_bf16(x) -> np.ndarray:
    """``x`` rounded to bfloat16 (round to nearest, ties to even), returned in ``x``'s dtype.

    bf16 mixed precision rounds every matrix-product operand to bf16 and accumulates the products
    in float (ptbfast's kernels in float32, this reference in float64 or float32): a bf16 number
    is its float32 bit pattern with the low 16 bits dropped, so the rounding is done on those bits.
    float64 values are rounded to float32 first, as the kernels hold them. NaN stays NaN.
    """
    x = np.asarray(x)
    bits = x.astype(np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    nan = (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    rounded = np.where(nan, (bits | np.uint32(0x00400000)) & np.uint32(0xFFFF0000), rounded)
    return rounded.astype(np.uint32).view(np.float32).astype(x.dtype if x.dtype.kind == "f" else np.float32)


def _operand(x, bf16: bool):
    """A matrix-product operand: rounded to bf16 under mixed precision, else as it is."""
    return round_bf16(x) if bf16 else x


def sigmoid(x) -> np.ndarray:
    """Logistic function, elementwise, without overflow for large |x|.

    Only exp(-|x|) is ever evaluated, which lies in (0, 1].
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z)).astype(x.dtype, copy=False)


class _CellCache(NamedTuple):
    """What lstm_cell_backward needs from the forward pass (all gates after activation)."""

    x_and_h: np.ndarray  # [B, In + H]
    kernel: np.ndarray  # [In + H, 4H]
    c: np.ndarray  # [B, H] incoming cell state
    input_gate: np.ndarray  # sigmoid(i)
    candidate: np.ndarray  # tanh(j)
    forget_gate: np.ndarray  # sigmoid(f + forget_bias)
    output_gate: np.ndarray  # sigmoid(o)
    tanh_new_c: np.ndarray  # tanh(new_c)


def lstm_cell_forward(x, c, h, kernel, bias, forget_bias: float = 0.0, bf16: bool = False):
    """One step of TF's BasicLSTMCell.

    x [B, In], c [B, H], h [B, H], kernel [In + H, 4H], bias [4H]
    -> (new_c [B, H], new_h [B, H], cache). With ``bf16`` the product's operands ([x, h] and the
    kernel) are rounded to bf16, and so is new_h (an operand wherever it goes next); the cell
    state and the gate nonlinearities stay in full precision.
    """
    x, c, h, kernel, bias = (np.asarray(a) for a in (x, c, h, kernel, bias))
    _check_rank("x", x, 2)
    _check_rank("c", c, 2)
    _check_rank("kernel", kernel, 2)
    batch_size, input_size = x.shape
    hidden_size = c.shape[1]
    _check_shape("c", c, (batch_size, hidden_size))
    _check_shape("h", h, (batch_size, hidden_size))
    _check_shape("kernel", kernel, (input_size + hidden_size, 4 * hidden_size))
    _check_shape("bias", bias, (4 * hidden_size,))

    x_and_h = _operand(np.concatenate([x, h], axis=1), bf16)
    kernel = _operand(kernel, bf16)
    gates = x_and_h @ kernel + bias
    i, j, f, o = np.split(gates, 4, axis=1)
    input_gate = sigmoid(i)
    candidate = np.tanh(j)
    forget_gate = sigmoid(f + forget_bias)
    output_gate = sigmoid(o)

    new_c = c * forget_gate + input_gate * candidate
    tanh_new_c = np.tanh(new_c)
    new_h = _operand(tanh_new_c * output_gate, bf16)
    cache = _CellCache(x_and_h, kernel, c, input_gate, candidate, forget_gate, output_gate, tanh_new_c)
    return new_c, new_h, cache


def lstm_cell_backward(d_new_c, d_new_h, cache: _CellCache, bf16: bool = False):
    """Gradients of one LSTM step.

    d_new_c [B, H], d_new_h [B, H]
    -> (dx [B, In], dc [B, H], dh [B, H], dkernel [In + H, 4H], dbias [4H]). With ``bf16`` the
    gate gradients are rounded for the two products (the cache holds the rounded [x, h] and
    kernel); dbias sums them unrounded.
    """
    x_and_h, kernel, c, input_gate, candidate, forget_gate, output_gate, tanh_new_c = cache
    hidden_size = c.shape[1]
    input_size = x_and_h.shape[1] - hidden_size

    # new_c reaches the loss both directly and through new_h = tanh(new_c) * output_gate.
    d_output_gate = d_new_h * tanh_new_c
    d_new_c_total = d_new_c + d_new_h * output_gate * (1 - tanh_new_c**2)

    dc = d_new_c_total * forget_gate
    d_forget_gate = d_new_c_total * c
    d_input_gate = d_new_c_total * candidate
    d_candidate = d_new_c_total * input_gate

    # Back through the activations to the pre-activation gates, in column order i, j, f, o.
    d_gates = np.concatenate(
        [
            d_input_gate * input_gate * (1 - input_gate),
            d_candidate * (1 - candidate**2),
            d_forget_gate * forget_gate * (1 - forget_gate),
            d_output_gate * output_gate * (1 - output_gate),
        ],
        axis=1,
    )
    dbias = d_gates.sum(axis=0)
    d_gates = _operand(d_gates, bf16)
    dkernel = x_and_h.T @ d_gates
    d_x_and_h = d_gates @ kernel.T
    dx = d_x_and_h[:, :input_size]
    dh = d_x_and_h[:, input_size:]
    return dx, dc, dh, dkernel, dbias


# --------------------------------------------------------------------------------------
# LSTM layer (the cell unrolled over time)
# --------------------------------------------------------------------------------------


class _LayerCache(NamedTuple):
    cell_caches: list  # one _CellCache per time step
    x_shape: tuple  # [T, B, In], kept so T == 0 still knows its shapes
    c0: np.ndarray
    h0: np.ndarray
    kernel: np.ndarray
    bias: np.ndarray


def lstm_layer_forward(x, c0, h0, kernel, bias, forget_bias: float = 0.0, bf16: bool = False):
    """Run the cell over time-major ``x`` [T, B, In] from state (c0 [B, H], h0 [B, H]).

    -> (h_all [T, B, H], (c_T [B, H], h_T [B, H]), cache). With T == 0, h_all is empty and
    the final state is the initial one.
    """
    x, c0, h0, kernel, bias = (np.asarray(a) for a in (x, c0, h0, kernel, bias))
    _check_rank("x", x, 3)
    _check_rank("c0", c0, 2)
    _check_rank("kernel", kernel, 2)
    num_steps, batch_size, input_size = x.shape
    hidden_size = c0.shape[1]
    _check_shape("c0", c0, (batch_size, hidden_size))
    _check_shape("h0", h0, (batch_size, hidden_size))
    _check_shape("kernel", kernel, (input_size + hidden_size, 4 * hidden_size))
    _check_shape("bias", bias, (4 * hidden_size,))

    dtype = np.result_type(x, c0, h0, kernel, bias)
    h_all = np.empty((num_steps, batch_size, hidden_size), dtype=dtype)
    cell_caches = []
    c, h = c0, h0
    for t in range(num_steps):
        c, h, cell_cache = lstm_cell_forward(x[t], c, h, kernel, bias, forget_bias, bf16)
        h_all[t] = h
        cell_caches.append(cell_cache)
    cache = _LayerCache(cell_caches, x.shape, c0, h0, kernel, bias)
    return h_all, (c, h), cache


def lstm_layer_backward(d_h_all, d_c_T, d_h_T, cache: _LayerCache, bf16: bool = False):
    """Backpropagation through time for one layer.

    d_h_all [T, B, H] is the gradient on every step's output; d_c_T, d_h_T [B, H] (or None
    for zeros) are the gradients on the final state.
    -> (dx [T, B, In], dc0 [B, H], dh0 [B, H], dkernel [In + H, 4H], dbias [4H])
    """
    cell_caches, (num_steps, batch_size, input_size), c0, h0, kernel, bias = cache
    hidden_size = c0.shape[1]
    d_h_all = np.asarray(d_h_all)
    _check_shape("d_h_all", d_h_all, (num_steps, batch_size, hidden_size))
    dtype = np.result_type(d_h_all, kernel, c0)
    dc = np.zeros((batch_size, hidden_size), dtype) if d_c_T is None else np.asarray(d_c_T)
    dh_carry = np.zeros((batch_size, hidden_size), dtype) if d_h_T is None else np.asarray(d_h_T)
    _check_shape("d_c_T", dc, (batch_size, hidden_size))
    _check_shape("d_h_T", dh_carry, (batch_size, hidden_size))

    dx = np.empty((num_steps, batch_size, input_size), dtype=dtype)
    dkernel = np.zeros(kernel.shape, dtype=dtype)
    dbias = np.zeros(bias.shape, dtype=dtype)
    for t in reversed(range(num_steps)):
        # Step t's h feeds both the layer output and the next step.
        dx[t], dc, dh_carry, dkernel_t, dbias_t = lstm_cell_backward(
            dc, d_h_all[t] + dh_carry, cell_caches[t], bf16
        )
        dkernel += dkernel_t
        dbias += dbias_t
    return dx, dc, dh_carry, dkernel, dbias


# --------------------------------------------------------------------------------------
# Softmax output layer with cross-entropy loss
# --------------------------------------------------------------------------------------


class _OutputCache(NamedTuple):
    h: np.ndarray  # [N, H]
    w: np.ndarray  # [H, V]
    probabilities: np.ndarray  # [N, V] softmax(logits)
    targets: np.ndarray  # [N]


def output_layer_forward(h, w, b, targets, bf16: bool = False):
    """Per-row cross-entropy of softmax(h @ w + b) against integer ``targets``.

    h [N, H], w [H, V], b [V], targets [N] -> (losses [N], cache), where
    losses = logsumexp(logits) - logits[target], with the row max subtracted first so
    large logits neither overflow nor lose the loss. ``bf16``: h and w rounded for the product.
    """
    h, w, b = (np.asarray(a) for a in (h, w, b))
    _check_rank("h", h, 2)
    _check_rank("w", w, 2)
    num_rows, hidden_size = h.shape
    vocab_size = w.shape[1]
    _check_shape("w", w, (hidden_size, vocab_size))
    _check_shape("b", b, (vocab_size,))
    targets = _check_ids("targets", targets, vocab_size)
    _check_shape("targets", targets, (num_rows,))

    h, w = _operand(h, bf16), _operand(w, bf16)
    logits = h @ w + b
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp_shifted = np.exp(shifted)
    sum_exp = exp_shifted.sum(axis=1)
    rows = np.arange(num_rows)
    losses = np.log(sum_exp) - shifted[rows, targets]
    probabilities = exp_shifted / sum_exp[:, None]
    return losses, _OutputCache(h, w, probabilities, targets)


def output_layer_backward(d_losses, cache: _OutputCache, bf16: bool = False):
    """Gradients of the output layer; ``d_losses`` is [N] or a scalar applied to every row.

    -> (dh [N, H], dw [H, V], db [V]). ``bf16``: the logits' gradient rounded for the two
    products (db sums it unrounded).
    """
    h, w, probabilities, targets = cache
    num_rows = h.shape[0]
    d_losses = np.asarray(d_losses)
    if d_losses.ndim == 0:
        d_losses = np.full(num_rows, d_losses, dtype=np.result_type(d_losses, probabilities))
    _check_shape("d_losses", d_losses, (num_rows,))

    # d loss / d logits = softmax - one_hot(target)
    d_logits = probabilities * d_losses[:, None]
    d_logits[np.arange(num_rows), targets] -= d_losses
    db = d_logits.sum(axis=0)
    d_logits = _operand(d_logits, bf16)
    dh = d_logits @ w.T
    dw = h.T @ d_logits
    return dh, dw, db


# --------------------------------------------------------------------------------------
# Whole model
# --------------------------------------------------------------------------------------


class NumpyLSTMLanguageModel:
    """TF ``ptb_word_lm``'s model: embedding, stacked LSTM layers, softmax.

    ``params`` holds the weights under the names of ``ptbfast.params``. The incoming state
    of each batch is a constant (truncated backpropagation through time, as in TF).
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        num_layers: int,
        forget_bias: float = 0.0,
        init_scale: float = 0.1,
        seed: int = 0,
        dtype=np.float32,
        tie_weights: bool = False,
        precision: str = "fp32",
    ):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.precision = precision  # "bf16": matrix-product operands rounded to bf16 (round_bf16)
        self.vocab_size = vocab_size
        self.tie_weights = tie_weights
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.forget_bias = forget_bias
        self.dtype = np.dtype(dtype)
        self.params = init_params(vocab_size, hidden_size, num_layers, init_scale, seed, dtype, tie_weights)

    def output_weights(self) -> np.ndarray:
        """The output projection [H, V]: ``softmax_w``, or ``embedding.T`` with tied weights."""
        return self.params["embedding"].T if self.tie_weights else self.params["softmax_w"]

    def initial_state(self, batch_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Zero (c, h) per layer, each [B, H] in the params' dtype."""
        zeros = lambda: np.zeros((batch_size, self.hidden_size), dtype=self.dtype)  # noqa: E731
        return [(zeros(), zeros()) for _ in range(self.num_layers)]

    def loss(self, x, y, state, masks=None):
        """-> (cost, new_state); see ``loss_and_grads``."""
        cost, new_state, _ = self._forward(x, y, state, masks)
        return cost, new_state

    def loss_and_grads(self, x, y, state, masks=None):
        """Cost, gradients and final state for one batch.

        x, y: integer ids [B, T], batch-major as TF's ptb_producer yields them; y is x
        shifted by one word. state: list of (c [B, H], h [B, H]) per layer.
        masks: None, or num_layers + 1 dropout masks [T, B, H] already scaled (0 or
        1/keep_prob); masks[0] multiplies the embeddings, masks[l + 1] layer l's output.

        -> (cost, grads, new_state). cost is TF's: the sum over time steps of the
        batch-mean cross-entropy, i.e. sum(losses) / B, as a Python float. grads maps every
        parameter name to the dense gradient of cost, same shape and dtype.
        """
        cost, new_state, caches = self._forward(x, y, state, masks)
        return cost, self._backward(caches), new_state

    # ----------------------------------------------------------------------------------

    def _validate(self, x, y, state, masks):
        x = _check_ids("x", x, self.vocab_size)
        y = _check_ids("y", y, self.vocab_size)
        _check_rank("x", x, 2)
        _check_shape("y", y, x.shape)
        batch_size, num_steps = x.shape
        if batch_size < 1:
            raise ValueError("batch size must be >= 1")
        state_shape = (batch_size, self.hidden_size)
        if len(state) != self.num_layers:
            raise ValueError(f"state must hold {self.num_layers} (c, h) pairs, got {len(state)}")
        checked_state = []
        for layer, pair in enumerate(state):
            if len(pair) != 2:
                raise ValueError(f"state[{layer}] must be a (c, h) pair")
            c, h = (np.asarray(a, dtype=self.dtype) for a in pair)
            _check_shape(f"state[{layer}] c", c, state_shape)
            _check_shape(f"state[{layer}] h", h, state_shape)
            checked_state.append((c, h))
        if masks is not None:
            if len(masks) != self.num_layers + 1:
                raise ValueError(f"masks must hold {self.num_layers + 1} arrays, got {len(masks)}")
            masks = [np.asarray(m, dtype=self.dtype) for m in masks]
            for index, mask in enumerate(masks):
                _check_shape(f"masks[{index}]", mask, (num_steps, batch_size, self.hidden_size))
        return x, y, checked_state, masks

    def _forward(self, x, y, state, masks):
        x, y, state, masks = self._validate(x, y, state, masks)
        p = self.params
        batch_size = x.shape[0]

        # Time-major from here on: row t * B + b of the softmax input is step t of sequence b.
        layer_input = embedding_lookup(p["embedding"], x.T)  # [T, B, H]
        if masks is not None:
            layer_input = layer_input * masks[0]
        layer_caches = []
        new_state = []
        bf16 = self.precision == "bf16"
        for layer in range(self.num_layers):
            c0, h0 = state[layer]
            h_all, final_state, layer_cache = lstm_layer_forward(
                layer_input, c0, h0, p[f"lstm_{layer}/kernel"], p[f"lstm_{layer}/bias"], self.forget_bias, bf16
            )
            layer_caches.append(layer_cache)
            new_state.append(final_state)
            layer_input = h_all * masks[layer + 1] if masks is not None else h_all

        top = layer_input.reshape(-1, self.hidden_size)
        targets = y.T.reshape(-1)
        losses, output_cache = output_layer_forward(top, self.output_weights(), p["softmax_b"], targets, bf16)
        cost = float(losses.sum() / batch_size)
        return cost, new_state, (x, batch_size, masks, layer_caches, output_cache)

    def _backward(self, caches):
        x, batch_size, masks, layer_caches, output_cache = caches
        num_steps = x.shape[1]
        grads = {}
        bf16 = self.precision == "bf16"
        d_top, d_softmax_w, grads["softmax_b"] = output_layer_backward(
            np.asarray(1.0 / batch_size, dtype=self.dtype), output_cache, bf16
        )
        d_layer_output = d_top.reshape(num_steps, batch_size, self.hidden_size)
        for layer in reversed(range(self.num_layers)):
            if masks is not None:
                d_layer_output = d_layer_output * masks[layer + 1]
            # The final state goes to the next batch only, never back into this cost.
            d_layer_output, _, _, grads[f"lstm_{layer}/kernel"], grads[f"lstm_{layer}/bias"] = (
                lstm_layer_backward(d_layer_output, None, None, layer_caches[layer], bf16)
            )
        if masks is not None:
            d_layer_output = d_layer_output * masks[0]
        grads["embedding"] = embedding_lookup_backward(d_layer_output, x.T, self.vocab_size)
        if self.tie_weights:  # the embedding is used twice: its gradient is the sum of both uses
            grads["embedding"] = grads["embedding"] + d_softmax_w.T
        else:
            grads["softmax_w"] = d_softmax_w
        # Same key order as params, and the params' dtype even if an input promoted it.
        return {name: grads[name].astype(self.dtype, copy=False) for name in self.params}
