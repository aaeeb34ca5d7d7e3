"""The step profile (python -m ptbfast bench --profile): kernel phase timers and the Python rows."""

import numpy as np
import pytest

from ptbfast import ops
from ptbfast.configs import get_config
from ptbfast.profile import PART_ROWS, ROWS, format_profile, profile_eval, profile_training

pytestmark = pytest.mark.filterwarnings("ignore::ptbfast.precision.Bf16PerformanceWarning")


def test_profiling_switched_on_during_a_call_adds_no_more_than_the_time_that_passed():
    # A section started while profiling was off has no start time (0): it once added the whole
    # clock, the machine's uptime, to its phase when profiling came on before it ended.
    import threading
    import time

    rng = np.random.default_rng(1)
    s = np.zeros((20, 64), np.float32)
    k, bias = rng.standard_normal((128, 256)).astype(np.float32), np.zeros(256, np.float32)
    for steps in (400, 4000):  # (the longer one where the call ended within 2 ms: nothing was checked)
        x = rng.standard_normal((steps, 20, 64)).astype(np.float32)
        ops.profile_read()
        started = time.perf_counter()
        call = threading.Thread(target=ops.lstm_forward, args=(x, s, s, k, bias))
        call.start()
        time.sleep(0.002)
        ops.profile_enable(True)
        switched_on_during_the_call = call.is_alive()
        try:
            call.join()
            elapsed = time.perf_counter() - started
        finally:
            ops.profile_enable(False)
        seconds = ops.profile_read()
        if switched_on_during_the_call:
            assert sum(seconds.values()) <= elapsed + 0.01, (seconds, elapsed)
            return
    pytest.skip("an LSTM forward of 4000 x 20 x 64 ended within 2 ms: profiling never came on during a call")


def test_kernel_timers_count_only_while_enabled_and_reset_on_read():
    rng = np.random.default_rng(0)
    h, w = rng.standard_normal((64, 32)).astype(np.float32), rng.standard_normal((32, 500)).astype(np.float32)
    b, targets = np.zeros(500, np.float32), rng.integers(0, 500, 64)
    ops.profile_read()
    ops.output_layer_loss_and_grads(h, w, b, targets, 1.0)
    assert all(v == 0 for v in ops.profile_read().values())  # off by default
    ops.profile_enable(True)
    try:
        ops.output_layer_loss_and_grads(h, w, b, targets, 1.0)
        x = rng.standard_normal((5, 4, 32)).astype(np.float32)
        s = np.zeros((4, 32), np.float32)
        k, bias = rng.standard_normal((64, 128)).astype(np.float32), np.zeros(128, np.float32)
        h_all, c_all, gates = ops.lstm_forward(x, s, s, k, bias)
        ops.lstm_backward(h_all, None, None, x, s, s, k, h_all, c_all, gates)
    finally:
        ops.profile_enable(False)
    sections, seconds = ops.profile_sections(), ops.profile_read()
    assert set(seconds) == set(sections) == {"lstm_input_products", "recurrent_products", "gate_math",
                                             "output_products", "softmax_pass", "bf16_packing"}
    # Every phase was timed (fp32: no bf16 packing); its time may round to 0 ns on a coarse clock, so
    # only >= 0 is certain.
    assert all(n > 0 for name, n in sections.items() if name != "bf16_packing"), sections
    assert sections["bf16_packing"] == 0
    assert all(v >= 0 for v in seconds.values()), seconds
    assert all(v == 0 for v in ops.profile_read().values())  # the read reset them ...
    assert all(n == 0 for n in ops.profile_sections().values())  # ... and the counts


def assert_rows_fit_in_the_step(profile):
    """python_overhead is the step's time less every timed row, so the rows add up whatever the
    timers say; what can fail is the rest: each timed row inside the step, the remainder not
    negative (timers that counted too much, or twice, make it so; 1 % for the clocks' granularity)."""
    assert sum(profile[row] for row in ROWS) == pytest.approx(profile["total"], rel=1e-9)
    assert profile["python_overhead"] >= -0.01 * profile["total"], profile
    assert all(profile[row] <= profile["total"] for row in ROWS), profile


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_rows_add_up_to_the_step(precision):
    config = get_config("test", vocab_size=300, hidden_size=24, num_layers=2, num_steps=6, batch_size=5,
                        keep_prob=0.5, precision=precision)
    profile = profile_training(config, steps=3, warmup=1)
    assert set(profile) == set(ROWS) | set(PART_ROWS) | {"total"}
    assert_rows_fit_in_the_step(profile)
    # (packing is timed inside the products it packs for, the recurrent ones' in the time loop included)
    assert 0 <= profile["bf16_packing"] <= (profile["lstm_input_products"] + profile["output_products"] +
                                            profile["recurrent_products"])
    # Rows the kernels time can be 0 ms (see the test above); Python's rows time whole NumPy calls.
    assert all(profile[row] >= 0 for row in ROWS if row != "python_overhead")
    assert all(profile[row] > 0 for row in ("embedding", "dropout_masks", "update"))
    assert (profile["bf16_rounding"] > 0) == (precision == "bf16")
    assert not ops.profile_read()["gate_math"]  # profiling was switched off again
    table = format_profile({precision: profile})
    assert table.splitlines()[-2].startswith("total") and f"{precision} ms" in table
    assert table.splitlines()[-1].startswith("of it bf16 packing")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_eval_rows_add_up_to_the_step(precision):
    config = get_config("test", vocab_size=300, hidden_size=24, num_layers=2, num_steps=6, batch_size=5,
                        precision=precision)
    profile = profile_eval(config, steps=3, warmup=1)
    assert_rows_fit_in_the_step(profile)
    assert all(profile[row] >= 0 for row in ROWS if row != "python_overhead") and profile["embedding"] > 0
    assert profile["update"] == profile["dropout_masks"] == 0  # forward only
    assert (profile["bf16_rounding"] > 0) == (precision == "bf16")
    assert not ops.profile_read()["gate_math"]


def test_a_step_that_raises_leaves_the_timers_off():
    from ptbfast.profile import _profile_steps

    rng = np.random.default_rng(1)
    h, w = rng.standard_normal((8, 4)).astype(np.float32), rng.standard_normal((4, 30)).astype(np.float32)
    b, targets = np.zeros(30, np.float32), rng.integers(0, 30, 8)

    def step():  # (the timers are on from the first step after warmup)
        ops.output_layer_loss_and_grads(h, w, b, targets, 1.0)
        raise FloatingPointError("a step that fails")

    with pytest.raises(FloatingPointError):
        _profile_steps(step, steps=2, warmup=0)
    ops.profile_read()
    ops.output_layer_loss_and_grads(h, w, b, targets, 1.0)
    assert not any(ops.profile_sections().values())  # nothing counted: the timers are off again
