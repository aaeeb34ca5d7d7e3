"""Property tests of the whole model (``ptbfast.LSTMLanguageModel``): loss, gradients and state
against the float64 NumPy model, and the exception each kind of bad batch, state or mask raises.

The contract, the strategies and the case counter are in tests/fuzz_strategies.py.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ptbfast
from ptbfast import reference as ref

from fuzz_strategies import KERNEL_TOL, MODEL_TOL, assert_close, draw_rng, normal, out_of_range, ran


@given(data=st.data())
def test_model_matches_reference(data):
    rng = draw_rng(data)
    V, H = data.draw(st.integers(1, 30), label="V"), data.draw(st.integers(1, 12), label="H")
    L, B, T = (data.draw(st.integers(1, 3), label="L"), data.draw(st.integers(1, 5), label="B"),
               data.draw(st.integers(0, 5), label="T"))
    forget_bias = data.draw(st.sampled_from([0.0, 1.0, -0.5]), label="forget_bias")
    seed = data.draw(st.integers(0, 2**16), label="init seed")
    fast = ptbfast.LSTMLanguageModel(V, H, L, forget_bias=forget_bias, seed=seed)
    slow = ref.NumpyLSTMLanguageModel(V, H, L, forget_bias=forget_bias, seed=seed, dtype=np.float64)
    slow.params = {k: v.astype(np.float64) for k, v in fast.params.items()}
    id_dtype = data.draw(st.sampled_from(["int32", "int64", "uint16", "list"]), label="id dtype")
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    x, y = (a.tolist() if id_dtype == "list" and T else a.astype("int64" if id_dtype == "list" else id_dtype)
            for a in (x, y))
    state = [tuple(normal(rng, (B, H), 0.3) for _ in range(2)) for _ in range(L)]
    masks = None
    if data.draw(st.booleans(), label="dropout"):
        keep = data.draw(st.sampled_from([0.35, 0.5, 0.9]), label="keep_prob")
        masks = [((rng.random((T, B, H)) < keep) / keep).astype(np.float32) for _ in range(L + 1)]

    cost, grads, new_state = fast.loss_and_grads(x, y, state, masks)
    ref_cost, ref_grads, ref_state = slow.loss_and_grads(
        np.asarray(x), np.asarray(y), [(c.astype(np.float64), h.astype(np.float64)) for c, h in state], masks)
    assert abs(cost - ref_cost) <= 1e-5 * max(1.0, abs(ref_cost))
    assert list(grads) == list(fast.params)
    # A gradient can cancel too: with V = 2, softmax_b's two entries are -+(sum of p - count of the
    # word) over the steps, 4e-4 from terms of 0.5 (seed 222), with float32 rounding errors of 7e-8
    # from those terms; so each is measured against at least 0.01 (an error of 1e-6 at most).
    for name, g in grads.items():
        assert g.dtype == np.float32 and g.shape == fast.params[name].shape, name
        assert_close(g, ref_grads[name], MODEL_TOL, floor=0.01, name=name)
    # c = c_prev * f + i * j can cancel: with B * H = 1 the only entry may be ~1e-4 while its float32
    # rounding is that of terms ~0.1-1, so a state is measured against at least 0.1.
    for (c, h), (rc, rh) in zip(new_state, ref_state):
        assert_close(c, rc, KERNEL_TOL, floor=0.1, name="c")
        assert_close(h, rh, KERNEL_TOL, floor=0.1, name="h")
    ran("valid")


@given(data=st.data())
def test_model_rejects_bad_input(data):
    rng = draw_rng(data)
    V, H, L = data.draw(st.integers(2, 12), label="V"), data.draw(st.integers(1, 5), label="H"), 2
    B, T = data.draw(st.integers(1, 4), label="B"), data.draw(st.integers(1, 4), label="T")
    model = ptbfast.LSTMLanguageModel(V, H, L, seed=1)
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    state = [tuple(normal(rng, (B, H), 0.3) for _ in range(2)) for _ in range(L)]
    masks = None
    kind = data.draw(st.sampled_from(["ids dtype", "ids range", "ids shape", "ids python", "empty batch",
                                      "state count", "state shape", "state dtype", "state python", "state pair",
                                      "masks count", "masks shape", "masks dtype", "nan state",
                                      "nan mask", "nan param"]), label="corruption")
    which = data.draw(st.sampled_from(["x", "y"]), label="which ids")
    ids = {"x": x, "y": y}
    if kind == "ids dtype":
        dtype = data.draw(st.sampled_from(["float32", "bool", "complex64", "object"]), label="dtype")
        ids[which], exc = ids[which].astype(dtype), TypeError
    elif kind == "ids range":
        ids[which], exc = out_of_range(data, ids[which], V), IndexError
    elif kind == "ids shape":
        ids[which], exc = data.draw(st.sampled_from([ids[which][:, :-1], ids[which][0], ids[which][None],
                                                     ids[which][..., None]])), ValueError
    elif kind == "ids python":
        ids[which], exc = data.draw(st.sampled_from([None, "abc", 1.5])), TypeError
    elif kind == "empty batch":
        ids, state, exc = {"x": x[:0], "y": y[:0]}, model.initial_state(0), ValueError
    elif kind == "state count":
        state, exc = data.draw(st.sampled_from([state[:1], state + state[:1], []])), ValueError
    elif kind == "state shape":
        c, h = state[0]
        state[0], exc = data.draw(st.sampled_from([(c[:, :-1], h), (c, h[:-1]), (c[None], h),
                                                   (c, np.zeros((B, H + 1), np.float32))])), ValueError
    elif kind == "state dtype":
        c, h = state[-1]
        state[-1], exc = (c.astype(data.draw(st.sampled_from(["float64", "float16", "int32"]))), h), TypeError
    elif kind == "state python":
        # not a sequence, pairs that are not iterable: TypeError; pairs of floats (shape ()): ValueError
        state, exc = data.draw(st.sampled_from([(None, TypeError), (3, TypeError), ([None] * L, TypeError),
                                                ([(1.0, 2.0)] * L, ValueError)]))
    elif kind == "state pair":
        c, h = state[0]
        state[0], exc = data.draw(st.sampled_from([(c,), (c, h, h)])), ValueError
    elif kind == "masks count":
        masks, exc = [np.ones((T, B, H), np.float32)] * data.draw(st.sampled_from([0, 1, L, L + 2])), ValueError
    elif kind == "masks shape":
        masks, exc = [np.ones((T, B, H), np.float32)] * L + [np.ones((B, T, H + 1), np.float32)], ValueError
    elif kind == "masks dtype":  # the float32 policy: strings, float64 and bool masks are TypeErrors
        dtype = data.draw(st.sampled_from(["U1", "float64", "bool"]), label="mask dtype")
        masks, exc = [np.ones((T, B, H), np.float32)] * L + [np.ones((T, B, H), dtype)], TypeError
    elif kind == "nan state":  # a non-finite loss is a FloatingPointError that names the cause
        c, h = state[0]
        c = c.copy()
        c[data.draw(st.integers(0, B - 1)), data.draw(st.integers(0, H - 1))] = np.nan
        state[0], exc = (c, h), FloatingPointError
    elif kind == "nan mask":
        masks = [np.ones((T, B, H), np.float32) for _ in range(L + 1)]
        masks[data.draw(st.integers(0, L))][data.draw(st.integers(0, T - 1)), 0, 0] = np.nan
        exc = FloatingPointError
    else:
        # (NaN, not Inf: an infinite pre-activation saturates a gate to a finite value.)
        name = data.draw(st.sampled_from(["lstm_0/bias", "lstm_1/kernel", "softmax_b"]), label="param")
        model.params[name].flat[0] = np.nan
        exc = FloatingPointError
    call = data.draw(st.sampled_from(["loss", "loss_and_grads", "loss_and_sparse_grads"]), label="method")
    with pytest.raises(exc):
        getattr(model, call)(ids["x"], ids["y"], state, masks)
    ran("invalid")
