"""Property test of the output layer (projection + log-softmax + NLL, whole rows and column chunks)
against the NumPy reference.

The contract, the strategies and the case counter are in tests/fuzz_strategies.py; what the raw
binding refuses is in tests/test_fuzz_bad_input.py.
"""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ptbfast import ops
from ptbfast import reference as ref

from fuzz_strategies import KERNEL_TOL, assert_close, draw_rng, normal, ran
from helpers import f64


@given(data=st.data())
def test_output_layer_matches_reference(data):
    rng = draw_rng(data)
    N, H = data.draw(st.integers(0, 40), label="N"), data.draw(st.integers(1, 40), label="H")
    V = data.draw(st.integers(1, 300), label="V")
    block_rows = data.draw(st.integers(-2, 50), label="block_rows")  # <= 0: the default block
    d_loss = data.draw(st.floats(-2, 2, width=32).filter(lambda v: abs(v) >= 1e-3), label="d_loss")
    h = normal(rng, (N, H))
    w = normal(rng, (H, V), 1.0 / np.sqrt(H))
    b = normal(rng, (V,), 0.1)
    targets = rng.integers(0, V, size=N).astype(data.draw(st.sampled_from(["int32", "int64"]), label="dtype"))

    ref_losses, cache = ref.output_layer_forward(*f64(h, w, b), targets)
    total, losses = ops.output_layer_loss(h, w, b, targets, block_rows)
    # A loss is log(sum of exps) with the sum >= 1, so its float32 rounding is absolute (~1e-7):
    # measured against at least 1 when every row is confidently right and the losses are ~0.
    assert_close(losses, ref_losses, KERNEL_TOL, floor=1.0, name="losses")
    assert abs(total - ref_losses.sum()) <= KERNEL_TOL * max(1.0, abs(ref_losses.sum()))
    block_columns = data.draw(st.integers(-2, V + 2), label="block_columns")  # column chunks
    _, chunked = ops.output_layer_loss(h, w, b, targets, block_rows, block_columns)
    assert_close(chunked, ref_losses, KERNEL_TOL, floor=1.0, name="losses in column chunks")
    chunked_grads = ops.output_layer_loss_and_grads(h, w, b, targets, d_loss, block_rows, block_columns)[2:]

    total2, losses2, dh, dw, db = ops.output_layer_loss_and_grads(h, w, b, targets, d_loss, block_rows)
    np.testing.assert_array_equal(losses2, losses)
    assert total2 == total
    ref_dh, ref_dw, ref_db = ref.output_layer_backward(float(d_loss), cache)
    # d_logits = d_loss * (softmax - onehot): entries carry ~1e-7 * |d_loss| of absolute rounding, so a
    # gradient that cancels (a confident row: softmax ~ onehot) is measured against that scale.
    assert_close(dh, ref_dh, KERNEL_TOL, floor=abs(d_loss) * float(np.abs(w).max()), name="dh")
    assert_close(dw, ref_dw, KERNEL_TOL, floor=abs(d_loss) * float(np.abs(h).max(initial=0)), name="dw")
    assert_close(db, ref_db, KERNEL_TOL, floor=abs(d_loss), name="db")
    for name, got, want, floor in zip(("dh", "dw", "db"), chunked_grads, (ref_dh, ref_dw, ref_db),
                                      (abs(d_loss) * float(np.abs(w).max()),
                                       abs(d_loss) * float(np.abs(h).max(initial=0)), abs(d_loss))):
        assert_close(got, want, KERNEL_TOL, floor=floor, name=f"{name} in column chunks")
    ran("valid")
