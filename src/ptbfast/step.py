"""One training step of TF's ``ptb_word_lm``, written once: the trainer, ``bench`` and
``bench --profile`` all run :func:`training_step`.

    masks = dropout_masks(...)                          # tf.nn.dropout on every layer's input
    cost, grads, state = model.loss_and_sparse_grads()  # forward and backward
    (data-parallel ranks: sum the gradients and costs)
    apply_sgd(params, grads, lr, max_grad_norm)         # clip by the global norm, then SGD

The functions it calls are looked up in this module when it runs, so ``ptbfast.profile`` can time
each part by wrapping them here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ptbfast import ops
from ptbfast.sgd import TrainingError, apply_sgd


def dropout_masks(rng: np.random.Generator, count: int, shape, keep_prob: float):
    """``count`` inverted-dropout masks (0 or 1/keep_prob), as ``tf.nn.dropout``; None if keep_prob == 1.

    One seed drawn from ``rng`` keys Philox4x32-10 (TF's generator for dropout), mask i its stream i
    (``ops.dropout_mask``, in C++: a medium mask took 0.14 ms with AVX-512 on an Intel Xeon, where
    NumPy's ``rng.random`` and comparison took about 0.9 ms)."""
    if keep_prob >= 1.0:
        return None
    seed = int(rng.integers(0, 2**64, dtype=np.uint64))
    return [ops.dropout_mask(shape, seed, stream, keep_prob) for stream in range(count)]


@dataclass
class StepOutcome:
    """What one step did. ``failure``: why the batch could not be used (a non-finite loss or
    gradient, on any rank); then the weights were not updated and ``cost``/``state`` are None.
    ``signal``: data-parallel ranks, the stop signal any rank had received by this step."""

    cost: float | None
    state: list | None
    failure: Exception | None = None
    signal: int | None = None


def training_step(model, config, dp, x, y, state, rng, learning_rate: float, stop_signal=None) -> StepOutcome:
    """Forward, backward, clipping and the SGD update of one batch ``x``/``y`` [batch, steps].

    ``dp`` (:class:`ptbfast.distributed.DataParallel`): this rank's rows of the batch, the state
    and the masks (every rank draws the full batch's masks from the same stream), the mean over the
    global batch, and the exchange that sums gradients and costs and tells every rank whether any
    rank failed, so that all of them skip or stop at the same batch. One process: all rows, and
    the exchange returns its inputs as they are.
    """
    masks = dropout_masks(rng, config.num_layers + 1, (config.num_steps, config.batch_size, config.hidden_size),
                          config.keep_prob)
    try:
        cost, grads, new_state = model.loss_and_sparse_grads(dp.local(x), dp.local(y), state, dp.local_masks(masks),
                                                             total_batch=config.batch_size)
        failure = None
    except FloatingPointError as e:  # decided in the exchange, together with the other ranks
        cost, grads, new_state, failure = None, None, None, e
    summed = dp.exchange(cost, grads, x, failure, stop_signal)
    if summed.failure is not None:
        return StepOutcome(None, None, summed.failure, summed.signal)
    try:
        apply_sgd(model.params, summed.grads, learning_rate, config.max_grad_norm, config.grad_norm)
    except TrainingError as e:
        return StepOutcome(None, None, e, summed.signal)
    return StepOutcome(summed.cost, new_state, None, summed.signal)
