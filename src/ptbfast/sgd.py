"""One SGD step as TF's ``ptb_word_lm`` takes it: ``tf.clip_by_global_norm`` over every gradient,
then ``GradientDescentOptimizer`` (the embedding's rows updated sparsely, as ``scatter_sub``)."""

from __future__ import annotations

import math

import numpy as np

from ptbfast import ops
from ptbfast.configs import GRAD_NORM_MODES
from ptbfast.grads import IndexedSlices


class TrainingError(RuntimeError):
    """Training cannot go on (for example the loss or a gradient became NaN or infinite)."""


def global_norm(grads: dict, mode: str = "indexed_slices") -> float:
    """``tf.clip_by_global_norm``'s norm over all gradients.

    TF hands the embedding gradient to the optimizer as ``IndexedSlices`` (one row per token), and
    its global norm squares those rows before merging repeated ids ("indexed_slices"); "dense"
    uses the merged gradient, the true norm of d cost / d embedding.
    """
    if mode not in GRAD_NORM_MODES:
        raise ValueError(f"mode must be one of {', '.join(GRAD_NORM_MODES)}, got {mode!r}")
    total = 0.0
    for g in grads.values():
        if isinstance(g, IndexedSlices):
            flat = (g.values if mode == "indexed_slices" else g.merged().values).ravel()
        else:
            flat = g.ravel()
        total += ops.sum_of_squares(flat)  # (in double: TF sums in float32, which rounds and can overflow)
    return math.sqrt(total)


def apply_sgd(params: dict, grads: dict, learning_rate: float, max_grad_norm: float,
              norm_mode: str = "indexed_slices") -> float:
    """Clip all gradients by one global norm, then ``param -= lr * grad``; returns the norm.

    The embedding gradient updates only the rows that were used (a sparse update, like TF's
    ``scatter_sub``). Raises :class:`TrainingError` before touching ``params`` if the norm is not
    finite, so a NaN never reaches the weights; every argument is checked before any parameter changes.
    """
    if not (math.isfinite(learning_rate) and learning_rate >= 0):
        raise ValueError(f"learning_rate must be a finite number >= 0, got {learning_rate}")
    if not (math.isfinite(max_grad_norm) and max_grad_norm > 0):  # (a negative one turned the step uphill)
        raise ValueError(f"max_grad_norm must be a finite number > 0, got {max_grad_norm}")
    _check_gradients(params, grads)
    norm = global_norm(grads, norm_mode)
    if not math.isfinite(norm):
        raise TrainingError(f"gradient norm is {norm}: training diverged")
    step = -learning_rate * max_grad_norm / max(norm, max_grad_norm)
    # No entry of the update exceeds |step| * norm * sqrt(k), k the most rows of one id that a sparse
    # update sums where the norm was over the rows before they are summed (indexed_slices; Cauchy-
    # Schwarz), else |step| * norm: if that overflows float32, so might the weights.
    repeats = 1
    if norm_mode == "indexed_slices":
        repeats = max((int(np.bincount(g.indices).max()) for g in grads.values()
                       if isinstance(g, IndexedSlices) and len(g.indices)), default=1)
    if not abs(step) * norm * math.sqrt(repeats) < float(np.finfo(np.float32).max):
        raise TrainingError(f"the update (learning rate {learning_rate} x gradient norm {norm:.3g}) overflows "
                            "float32: training diverged")
    for name, g in grads.items():
        if isinstance(g, IndexedSlices):  # only the used rows change
            ops.sparse_sgd_update(params[name], g, step)
        else:
            ops.sgd_update(params[name], g, step)
    return norm


def _check_gradients(params: dict, grads: dict) -> None:
    """Each gradient fits its parameter: else an error before the first update (not half a step)."""
    for name, g in grads.items():
        if name not in params:
            raise KeyError(f"a gradient for {name!r}, which is not a parameter")
        shape = np.shape(params[name])
        if isinstance(g, IndexedSlices):
            values, indices = np.asarray(g.values), np.asarray(g.indices)
            if tuple(g.dense_shape) != shape or values.shape[1:] != shape[1:] or len(values) != len(indices):
                raise ValueError(f"the gradient of {name} (IndexedSlices of {tuple(g.dense_shape)}: {len(indices)} "
                                 f"indices, values {values.shape}) does not fit its shape {shape}")
            if len(indices) and (indices.min() < 0 or indices.max() >= shape[0]):
                raise IndexError(f"the gradient of {name} has rows outside [0, {shape[0]}): "
                                 f"{indices.min()} to {indices.max()}")
        elif np.shape(g) != shape:
            raise ValueError(f"the gradient of {name} has shape {np.shape(g)}, the parameter {shape}")
