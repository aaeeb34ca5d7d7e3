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
from ptbfast import step as step_module

ROWS = ("embedding", "lstm_input_products", "recurrent_products", "gate_math", "output_products", "softmax_pass",
        "bf16_rounding", "dropout_masks", "update", "python_overhead")
# Parts of the rows above, shown below them and not added into the total: the time the bf16 kernels
# spend rounding and packing operands, within the products' rows (outside the LSTM's time loop).
PART_ROWS = ("bf16_packing",)


@contextlib.contextmanager
def timed(owner, name: str, seconds: dict, row: str):
    """Within the block ``owner.name`` (a module's function, or an object's method) is a version
    that adds its time to ``seconds[row]``."""
    original = getattr(owner, name)
    had_own = name in getattr(owner, "__dict__", {})  # (an object's method lives on its class)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds[row] += time.perf_counter() - start

    setattr(owner, name, wrapper)
    try:
        yield
    finally:
        if had_own:
            setattr(owner, name, original)
        else:
            delattr(owner, name)


def _profile_steps(step, steps: int, warmup: int) -> dict:
    """Runs ``step()`` ``warmup + steps`` times with the kernels' timers on and the functions of
    ``ops`` and ``ptbfast.step`` that the rows name timed, and returns ms per step in each of
    :data:`ROWS` (and ``total``)."""
    seconds = dict.fromkeys(ROWS + PART_ROWS, 0.0)
    total = 0.0
    with timed(ops, "embedding_lookup", seconds, "embedding"), \
            timed(ops, "round_bf16_in_place", seconds, "bf16_rounding"), \
            timed(step_module, "dropout_masks", seconds, "dropout_masks"), \
            timed(step_module, "apply_sgd", seconds, "update"):
        try:
            for k in range(warmup + steps):
                if k == warmup:  # measure from here (in place: the wrappers add into this dict)
                    seconds.update(dict.fromkeys(ROWS + PART_ROWS, 0.0))
                    ops.profile_read()
                    ops.profile_enable(True)
                start = time.perf_counter()
                step()
                if k >= warmup:
                    total += time.perf_counter() - start
        finally:  # (a step that raises leaves the process's kernel timers off, not counting every later call)
            ops.profile_enable(False)
    seconds.update(ops.profile_read())
    seconds["python_overhead"] = total - sum(seconds[row] for row in ROWS if row != "python_overhead")
    result = {row: 1e3 * seconds[row] / steps for row in ROWS + PART_ROWS}
    result["total"] = 1e3 * total / steps
    return result


def profile_training(config, steps: int = 10, warmup: int = 2, seed: int = 0) -> dict:
    """Milliseconds per training step in each of :data:`ROWS` (and ``total``), averaged over
    ``steps`` steps of ``config`` (its precision included) on random ids."""
    from ptbfast.bench import step_on_synthetic_batch, synthetic_training

    rng, model, dp, x, y, state = synthetic_training(config, seed=seed)
    box = {"state": state}
    step = step_on_synthetic_batch(config, model, dp, x, y, rng)

    def train_step():
        box["state"] = step(box["state"])

    return _profile_steps(train_step, steps, warmup)


def profile_eval(config, steps: int = 10, warmup: int = 2, seed: int = 0) -> dict:
    """As :func:`profile_training` for an evaluation step: the loss of the training batch's
    shape, forward only, no dropout, with the weights frozen as ``evaluate`` has them (what
    ``bench``'s eval words/s times); the dropout masks and update rows are 0."""
    from ptbfast.bench import synthetic_training

    _, model, _, x, y, state = synthetic_training(config, seed=seed)
    box = {"state": state}

    def eval_step():
        _, box["state"] = model.loss(x, y, box["state"])

    with model.frozen():  # as evaluate() runs its losses
        return _profile_steps(eval_step, steps, warmup)


def format_profile(profiles: dict) -> str:
    """A table of ms and % per step, one column pair per precision: ``{"fp32": {...}, "bf16": {...}}``."""
    names = list(profiles)
    head = f"{'phase':<22}" + "".join(f" | {name + ' ms':>10} {'%':>5}" for name in names)
    lines = [head, "-" * len(head)]
    for row in ROWS + ("total",) + PART_ROWS:
        cells = "".join(f" | {p[row]:>10.2f} {100 * p[row] / p['total']:>5.1f}" for p in profiles.values())
        label = row.replace('_', ' ') if row not in PART_ROWS else f"of it {row.replace('_', ' ')}"
        lines.append(f"{label:<22}{cells}")
    return "\n".join(lines)
