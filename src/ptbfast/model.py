"""The ptb_word_lm model on ptbfast's C++ kernels.

Same parameters and maths as :class:`ptbfast.reference.NumpyLSTMLanguageModel`, the readable NumPy
twin this class is tested against. The signatures differ where the two jobs do: the reference takes
a ``dtype`` (float64 for finite-difference checks) where this class is float32 only; this class's
``loss`` and ``loss_and_grads`` also take ``total_batch`` (data-parallel ranks), and it adds
``loss_and_sparse_grads`` (the embedding gradient as TF's optimizer sees it) and ``hidden_states``
(inference). Inside, activations are time-major
([T, B, H]) so that each step's rows are contiguous for the recurrent GEMM; inputs and outputs
follow TF: ids ``[batch, steps]``.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

from ptbfast import ops
from ptbfast.grads import IndexedSlices
from ptbfast.ops import as_float32, as_ids
from ptbfast.params import init_params
from ptbfast.precision import PRECISIONS, warn_about_bf16_speed


class LSTMLanguageModel:
    """Embedding -> ``num_layers`` LSTM layers -> softmax over the vocabulary (TF ``PTBModel``).

    ``params``: dict of float32 arrays, keys ``embedding`` [V,H], ``lstm_{l}/kernel`` [2H,4H],
    ``lstm_{l}/bias`` [4H], ``softmax_w`` [H,V], ``softmax_b`` [V]; see ``ptbfast.params``.

    ``precision``: "fp32", or "bf16" mixed precision: every matrix-product operand (layer inputs,
    h, weights, the gradients that multiply them) is rounded to bfloat16 and the products
    accumulate in float32; parameters, cell state, gate nonlinearities, softmax, loss, gradients
    and the update stay float32. The kernels round the weights as they use them (into scratch that
    fp32 needs too, or a piece at a time), and each layer's fresh input is rounded in place, so bf16
    training holds no more memory than fp32 where its products are SGEMMs (the bf16 kernels hold
    packed copies of the operands); evaluation inside :meth:`frozen` holds the weights packed once
    (or one rounded copy of the output weights where the products are SGEMMs).
    ``ptbfast.reference`` rounds at the same places.
    """

    def __init__(self, vocab_size: int, hidden_size: int, num_layers: int, forget_bias: float = 0.0,
                 init_scale: float = 0.1, seed: int = 0, tie_weights: bool = False, precision: str = "fp32"):
        self.precision = precision
        self.vocab_size = ops.checked_count(vocab_size, "vocab_size")  # (10.7 words is an error, not 10)
        self.hidden_size = ops.checked_count(hidden_size, "hidden_size")  # (init_params checks >= 1)
        self.num_layers = ops.checked_count(num_layers, "num_layers")
        self.forget_bias = float(forget_bias)
        self.init_scale = float(init_scale)
        # Tied input and output embeddings (Press & Wolf 2017): no softmax_w, the output layer
        # multiplies by embedding.T (the kernel reads the embedding transposed, no copy).
        self.tie_weights = bool(tie_weights)
        self.params = init_params(self.vocab_size, self.hidden_size, self.num_layers, init_scale, seed,
                                  tie_weights=self.tie_weights)
        # Inside frozen(), with bf16: the weights in bf16 once for every loss, per thread (threads
        # sharing a model each keep their own, so one's block ending does not end another's).
        self._frozen_by_thread = {}

    @classmethod
    def from_config(cls, config, precision: str | None = None) -> "LSTMLanguageModel":
        """The model a :class:`ptbfast.configs.Config` describes, freshly initialised from its seed
        (``precision``: instead of the config's)."""
        return cls(config.vocab_size, config.hidden_size, config.num_layers, config.forget_bias, config.init_scale,
                   config.seed, config.tie_weights, precision or config.precision)

    @property
    def precision(self) -> str:
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        if value not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {value!r}")
        if value == "bf16":
            warn_about_bf16_speed()
        self._precision = value

    def output_weights(self) -> np.ndarray:
        """The output projection [H, V]: ``softmax_w``, or with tied weights ``embedding.T`` (a
        view the output-layer kernel reads in place)."""
        return self.params["embedding"].T if self.tie_weights else self.params["softmax_w"]

    @property
    def _frozen(self):
        return self._frozen_by_thread.get(threading.get_ident())

    @contextlib.contextmanager
    def frozen(self, one_step: bool = False):
        """A block in which the parameters do not change (evaluation, scoring). With bf16 the weights
        are made into bf16 once on entry, for every loss the block computes, instead of in each call:
        packed as the CPU's bf16 kernels read them (:class:`FrozenBf16Weights`), or where the products
        are SGEMMs one rounded copy of the output weights (and with ``one_step``, for a block whose
        calls run one step each such as generation's, of the LSTM weights too). They live until the
        block ends. Changing ``params`` inside the block is not seen by those losses."""
        if self._precision != "bf16" or self._frozen is not None:
            yield self
            return
        me = threading.get_ident()  # (the thread that entered the block, wherever it is left)
        self._frozen_by_thread[me] = FrozenBf16Weights(self, one_step)
        try:
            yield self
        finally:
            del self._frozen_by_thread[me]

    def initial_state(self, batch_size: int):
        """Zero state: a list of ``(c, h)`` per layer, each [batch_size, H] float32."""
        shape = (ops.checked_count(batch_size, "batch_size"), self.hidden_size)
        return [(np.zeros(shape, np.float32), np.zeros(shape, np.float32)) for _ in range(self.num_layers)]

    # ---- public API ---------------------------------------------------------------------------
    def loss(self, x, y, state, masks=None, total_batch=None):
        """``(cost, new_state)``; cost = sum over steps of the batch-mean cross-entropy (TF's).

        ``total_batch``: the batch size the mean divides by (default: the rows of ``x``). A
        data-parallel rank passes the global batch size, so that the ranks' costs (and gradients)
        add up to the one-process ones.
        """
        cost, _, new_state = self._run(x, y, state, masks, with_grads=False, total_batch=total_batch)
        return cost, new_state

    def loss_and_grads(self, x, y, state, masks=None, total_batch=None):
        """``(cost, grads, new_state)``; ``grads`` holds d cost / d param, dense, keys of ``params``.

        ``masks`` (dropout, optional): ``num_layers + 1`` float32 arrays [T, B, H], already scaled
        (0 or 1/keep_prob); masks[0] multiplies the embedding output, masks[l+1] layer l's output.
        The incoming state is a constant (truncated backpropagation through time, as in TF).
        ``total_batch``: as in :meth:`loss`.
        """
        cost, grads, new_state = self._run(x, y, state, masks, with_grads=True, total_batch=total_batch)
        if isinstance(grads["embedding"], IndexedSlices):
            grads["embedding"] = grads["embedding"].to_dense()
        return cost, grads, new_state

    def loss_and_sparse_grads(self, x, y, state, masks=None, total_batch=None):
        """As :meth:`loss_and_grads`, but ``grads["embedding"]`` is an :class:`IndexedSlices` with
        one row per token, as TF's optimizer sees it (the trainer updates only the used rows). With
        tied weights it stays dense: the output layer's gradient reaches every row."""
        return self._run(x, y, state, masks, with_grads=True, total_batch=total_batch)

    def hidden_states(self, x, state):
        """Top-layer LSTM outputs for ids ``x`` [B, T]: ``(outputs [B, T, H], new_state)``.

        The softmax input of every position, for inference: ``outputs @ softmax_w + softmax_b``
        (``embedding.T`` in place of ``softmax_w`` with tied weights) are the next word's logits.
        """
        ids, _, batch, steps = self._check_batch(x, x)
        state = self._check_state(state, batch)
        top, _, _, new_state = self._forward_layers(ids, state, None, steps, keep_caches=False)
        return np.ascontiguousarray(top.transpose(1, 0, 2)), new_state

    @staticmethod
    def time_major(ids) -> np.ndarray:
        """ids [batch, steps] in the order the model runs them: [steps, batch], C-contiguous. Every
        per-token array it makes (the embedding gradient's rows, the losses) comes in this order
        flattened: step 0's batch rows, then step 1's, and so on."""
        return np.ascontiguousarray(np.asarray(ids).T)

    # ---- forward and backward -------------------------------------------------------------------
    def _forward_layers(self, ids, state, masks, steps, keep_caches=True):
        """Embedding and LSTM layers on time-major ids: (top [T,B,H], layer inputs, caches, new state).
        Each cache holds what the layer's backward needs: (h_all, c_all, gates, kernel); without
        ``keep_caches`` (no backward) none are kept, so that a layer's cell states and gates [T, B, 4H]
        are freed as the next layer runs instead of living through the output layer."""
        p, bf16 = self.params, self._precision == "bf16"
        inputs = ops.embedding_lookup(p["embedding"], ids)  # [T, B, H]
        if masks is not None:
            inputs = inputs * masks[0]
        layer_inputs, caches, new_state = [], [], []
        for layer, (c0, h0) in enumerate(state):
            if bf16 and (layer == 0 or masks is not None):  # a fresh array (an unmasked h_all is rounded already)
                ops.round_bf16_in_place(inputs)
            kernel = p[f"lstm_{layer}/kernel"]
            frozen = self._frozen.lstm[layer] if self._frozen is not None else None
            h_all, c_all, gates = ops.lstm_forward(inputs, c0, h0, kernel, p[f"lstm_{layer}/bias"], self.forget_bias,
                                                   bf16, frozen)
            if keep_caches:
                layer_inputs.append(inputs)
                caches.append((h_all, c_all, gates, kernel))
            new_state.append((c_all[-1].copy(), h_all[-1].copy()) if steps else (c0.copy(), h0.copy()))
            del c_all, gates  # (without caches, freed here: the new state holds copies of the last step's)
            inputs = h_all if masks is None else h_all * masks[layer + 1]
        return inputs, layer_inputs, caches, new_state

    def _run(self, x, y, state, masks, with_grads, total_batch=None):
        ids, targets, batch, steps = self._check_batch(x, y)
        # The cost is a mean over these rows: at least this call's (0 divided by zero; -3 negated the cost).
        mean_over = batch if total_batch is None else ops.checked_count(total_batch, "total_batch", max(batch, 1))
        state = self._check_state(state, batch)
        masks = self._check_masks(masks, steps, batch)
        p = self.params
        top, layer_inputs, caches, new_state = self._forward_layers(ids, state, masks, steps, keep_caches=with_grads)
        top = top.reshape(steps * batch, self.hidden_size)

        bf16 = self._precision == "bf16"
        if bf16 and masks is not None:  # h_all * mask, a fresh array (h_all itself is rounded already)
            ops.round_bf16_in_place(top)
        w = self.output_weights()
        if not with_grads:
            frozen = self._frozen
            if frozen is not None and frozen.output is not None:
                total, _ = ops.output_layer_loss(top, w, p["softmax_b"], targets, bf16=bf16, frozen=frozen.output)
            elif frozen is not None:
                total, _ = ops.output_layer_loss(top, frozen.rounded_output, p["softmax_b"], targets, bf16=bf16,
                                                 w_is_bf16=True)
            else:
                total, _ = ops.output_layer_loss(top, w, p["softmax_b"], targets, bf16=bf16)
            return self._checked_cost(total / mean_over), None, new_state

        total, _, d_top, d_w, d_softmax_b = ops.output_layer_loss_and_grads(
            top, w, p["softmax_b"], targets, 1.0 / mean_over, bf16=bf16)
        cost = self._checked_cost(total / mean_over)
        grads = {"softmax_b": d_softmax_b}
        if not self.tie_weights:
            grads["softmax_w"] = d_w
        d_inputs = d_top.reshape(steps, batch, self.hidden_size)
        for layer in reversed(range(self.num_layers)):
            if masks is not None:
                d_inputs = d_inputs * masks[layer + 1]
            c0, h0 = state[layer]
            h_all, c_all, gates, kernel = caches[layer]
            d_inputs, _, _, d_kernel, d_bias = ops.lstm_backward(
                d_inputs, None, None, layer_inputs[layer], c0, h0, kernel, h_all, c_all, gates, bf16)
            grads[f"lstm_{layer}/kernel"] = d_kernel
            grads[f"lstm_{layer}/bias"] = d_bias
        if masks is not None:
            d_inputs = d_inputs * masks[0]
        token_rows = d_inputs.reshape(steps * batch, self.hidden_size)
        if self.tie_weights:  # dense: the output layer's gradient plus the lookup's rows
            d_embedding = d_w.T  # [V, H], C-contiguous: the kernel wrote it in the embedding's layout
            ops.scatter_add(d_embedding, ids.reshape(-1), token_rows)
            grads["embedding"] = d_embedding
        else:
            grads["embedding"] = IndexedSlices(ids.reshape(-1), token_rows, p["embedding"].shape)
        return cost, {name: grads[name] for name in p}, new_state

    # ---- input checks -----------------------------------------------------------------------------
    def _check_batch(self, x, y):
        x, y = as_ids(x, "x"), as_ids(y, "y")
        if x.ndim != 2 or x.shape != y.shape:
            raise ValueError(f"x and y must be id arrays of the same shape [batch, steps], got {x.shape} and {y.shape}")
        batch, steps = x.shape
        if batch == 0:
            raise ValueError("empty batch: x has 0 rows")
        for name, ids in (("x", x), ("y", y)):
            if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
                bad = ids[(ids < 0) | (ids >= self.vocab_size)].flat[0]
                raise IndexError(f"{name} contains id {bad}, outside the vocabulary [0, {self.vocab_size})")
        # Time-major ids for the kernels; targets in the same (t, b) row order as the outputs.
        return self.time_major(x), self.time_major(y).reshape(-1), batch, steps

    def _check_state(self, state, batch):
        # (a sequence of (c, h) pairs, or an array [layers, 2, batch, H]; None said "has no len()")
        if not hasattr(state, "__len__") or isinstance(state, (str, bytes)):
            raise TypeError(f"state must be a sequence of (c, h) pairs, one per layer (initial_state(batch) "
                            f"makes one), got {type(state).__name__}")
        if len(state) != self.num_layers:
            raise ValueError(f"state must hold {self.num_layers} (c, h) pairs, got {len(state)}")
        shape = (batch, self.hidden_size)
        checked = []
        for layer, pair in enumerate(state):
            # (not a sequence: TypeError, as for state itself; a wrong length: ValueError)
            if not hasattr(pair, "__len__"):
                raise TypeError(f"state[{layer}] must be a (c, h) pair, got {type(pair).__name__}")
            if len(pair) != 2:
                raise ValueError(f"state[{layer}] must be a (c, h) pair, got {type(pair).__name__} of length "
                                 f"{len(pair)}")
            c, h = (np.asarray(a) for a in pair)
            for name, a in (("c", c), ("h", h)):
                if a.shape != shape:
                    raise ValueError(f"state[{layer}] {name} must have shape {shape}, got {a.shape}")
                if a.dtype != np.float32:
                    raise TypeError(f"state[{layer}] {name} must be float32, got {a.dtype}")
            checked.append((np.ascontiguousarray(c), np.ascontiguousarray(h)))
        return checked

    def _check_masks(self, masks, steps, batch):
        if masks is None:
            return None
        if len(masks) != self.num_layers + 1:
            raise ValueError(f"masks must hold num_layers + 1 = {self.num_layers + 1} arrays, got {len(masks)}")
        shape = (steps, batch, self.hidden_size)
        for k, m in enumerate(masks):
            if np.shape(m) != shape:
                raise ValueError(f"masks[{k}] must have shape {shape} (time-major), got {np.shape(m)}")
        return [as_float32(m, f"masks[{k}]") for k, m in enumerate(masks)]

    def _checked_cost(self, cost: float) -> float:
        if np.isfinite(cost):
            return float(cost)
        bad = [name for name, a in self.params.items() if not np.isfinite(a).all()]
        where = f"parameters with NaN/Inf: {', '.join(bad)}" if bad else "the parameters are finite: check the state"
        raise FloatingPointError(f"the loss is {cost} ({where})")


class FrozenBf16Weights:
    """A bf16 model's weights made once for the losses of a :meth:`LSTMLanguageModel.frozen` block.

    ``output``: the output weights packed as the CPU's bf16 kernels read them
    (:func:`ptbfast.ops.freeze_output_weights_bf16`; half the bytes of a rounded float32 copy), or
    None where the products are SGEMMs; then ``rounded_output`` is the rounded copy they read.
    ``lstm``: each layer's packs (:func:`ptbfast.ops.freeze_lstm_weights_bf16`; with ``one_step``,
    where the products are SGEMMs, its weights rounded once). Copies, made on entry: the weights must
    not change inside the block."""

    def __init__(self, model: LSTMLanguageModel, one_step: bool = False):
        w = model.output_weights()
        self.output = ops.freeze_output_weights_bf16(w)
        self.rounded_output = ops.round_bf16(w) if self.output is None else None  # (tied: a transposed view)
        self.lstm = [ops.freeze_lstm_weights_bf16(model.params[f"lstm_{layer}/kernel"], model.hidden_size, one_step)
                     for layer in range(model.num_layers)]
