"""Where a training step's and an evaluation step's time goes (``python -m ptbfast bench --profile``).

The kernels time their own phases (src/cpp/profile.h: the LSTM's input-side and recurrent
products and gate math, the output layer's products and softmax pass); Python times the
embedding lookup, the bf16 rounding of operands, drawing the dropout masks and the update
(clipping and SGD); what is left of the step's wall time is Python overhead (NumPy glue between
the kernels: dropout multiplies, reshapes, argument checks).
"""

from __future__ import annotations

import contextlib
import time

import numpy as np

from ptbfast import ops

ROWS = ("embedding", "lstm_input_products", "recurrent_products", "gate_math", "output_products", "softmax_pass",
        "bf16_rounding", "dropout_masks", "update", "python_overhead")


@contextlib.contextmanager
def _timed(module, name: str, seconds: dict, row: str):
    """Replaces ``module.name`` by a version that adds its time to ``seconds[row]``."""
    original = getattr(module, name)

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds[row] += time.perf_counter() - start

    setattr(module, name, timed)
    try:
        yield
    finally:
        setattr(module, name, original)


def _profile_steps(step, steps: int, warmup: int) -> dict:
    """Runs ``step(seconds)`` ``warmup + steps`` times with the kernels' and ``ops``' timers on
    and returns ms per step in each of :data:`ROWS` (and ``total``); ``step`` adds the rows it
    times itself (dropout masks, update) into ``seconds``."""
    seconds = dict.fromkeys(ROWS, 0.0)
    total = 0.0
    with _timed(ops, "embedding_lookup", seconds, "embedding"), \
            _timed(ops, "round_bf16_in_place", seconds, "bf16_rounding"):
        for k in range(warmup + steps):
            if k == warmup:  # measure from here (in place: the wrappers add into this dict)
                seconds.update(dict.fromkeys(ROWS, 0.0))
                ops.profile_read()
                ops.profile_enable(True)
            start = time.perf_counter()
            step(seconds)
            if k >= warmup:
                total += time.perf_counter() - start
    ops.profile_enable(False)
    seconds.update(ops.profile_read())
    seconds["python_overhead"] = total - sum(v for k, v in seconds.items() if k != "python_overhead")
    result = {row: 1e3 * seconds[row] / steps for row in ROWS}
    result["total"] = 1e3 * total / steps
    return result


def _model_and_batch(config, seed: int):
    """(rng, a fresh model of ``config``, random ids x and y of its batch shape, a box holding
    the carried state)."""
    from ptbfast.model import LSTMLanguageModel

    rng = np.random.default_rng(seed)
    B, T, V = config.batch_size, config.num_steps, config.vocab_size
    model = LSTMLanguageModel.from_config(config)
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    return rng, model, x, y, {"state": model.initial_state(B)}


def profile_training(config, steps: int = 10, warmup: int = 2, seed: int = 0) -> dict:
    """Milliseconds per training step in each of :data:`ROWS` (and ``total``), averaged over
    ``steps`` steps of ``config`` (its precision included) on random ids."""
    from ptbfast.sgd import apply_sgd
    from ptbfast.train import dropout_masks

    rng, model, x, y, box = _model_and_batch(config, seed)
    shape = (config.num_steps, config.batch_size, config.hidden_size)

    def train_step(seconds):
        start = time.perf_counter()
        masks = dropout_masks(rng, config.num_layers + 1, shape, config.keep_prob)
        masked = time.perf_counter()
        _, grads, box["state"] = model.loss_and_sparse_grads(x, y, box["state"], masks)
        updating = time.perf_counter()
        apply_sgd(model.params, grads, 0.1, config.max_grad_norm, config.grad_norm)
        seconds["dropout_masks"] += masked - start
        seconds["update"] += time.perf_counter() - updating

    return _profile_steps(train_step, steps, warmup)


def profile_eval(config, steps: int = 10, warmup: int = 2, seed: int = 0) -> dict:
    """As :func:`profile_training` for an evaluation step: the loss of the training batch's
    shape, forward only, no dropout (what ``bench``'s eval words/s times); the dropout masks and
    update rows are 0."""
    _, model, x, y, box = _model_and_batch(config, seed)

    def eval_step(seconds):
        _, box["state"] = model.loss(x, y, box["state"])

    return _profile_steps(eval_step, steps, warmup)


def format_profile(profiles: dict) -> str:
    """A table of ms and % per step, one column pair per precision: ``{"fp32": {...}, "bf16": {...}}``."""
    names = list(profiles)
    head = f"{'phase':<22}" + "".join(f" | {name + ' ms':>10} {'%':>5}" for name in names)
    lines = [head, "-" * len(head)]
    for row in ROWS + ("total",):
        cells = "".join(f" | {p[row]:>10.2f} {100 * p[row] / p['total']:>5.1f}" for p in profiles.values())
        lines.append(f"{row.replace('_', ' '):<22}{cells}")
    return "\n".join(lines)
