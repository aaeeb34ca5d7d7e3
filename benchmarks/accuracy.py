"""Print each kernel's max-norm relative error against the float64 NumPy reference.

    python benchmarks/accuracy.py

Shapes are the small config's (B=20, T=20, H=200, V=10,000) and the medium config's LSTM layer
(H=650, T=35). The error measure is tests/helpers.py's: max|fast - ref| / max|ref| per tensor.
"""

import warnings

import numpy as np

import ptbfast
from ptbfast import _core, ops
from ptbfast import reference as ref


def rel(a, b):
    b = np.asarray(b, np.float64)
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / max(np.max(np.abs(b)), 1e-300))


def f64(*arrays):
    return [np.asarray(a, np.float64) for a in arrays]


def main():
    warnings.simplefilter("ignore", ptbfast.precision.Bf16PerformanceWarning)
    rng = np.random.default_rng(0)
    rows = []
    V, H, B, T = 10000, 200, 20, 20
    params = rng.uniform(-0.1, 0.1, (V, H)).astype(np.float32)
    ids = rng.integers(0, V, (B, T))
    rows.append(("embedding forward", rel(ptbfast.embedding_lookup(params, ids), ref.embedding_lookup(params, ids))))
    d_out = rng.standard_normal((B, T, H)).astype(np.float32)
    ids_rep = rng.integers(0, 50, (B, T))  # repeated ids
    rows.append(("embedding backward (dense)", rel(ops.embedding_lookup_backward(d_out, ids_rep, V),
                                                   ref.embedding_lookup_backward(d_out.astype(np.float64), ids_rep, V))))
    rows.append(("embedding backward (sparse)", rel(ops.merge_duplicate_ids(ids_rep, d_out)[1],
                                                    ref.embedding_lookup_backward_sparse(d_out.astype(np.float64), ids_rep)[1])))

    for H_, T_ in ((200, 20), (650, 35)):
        x = rng.standard_normal((T_, B, H_)).astype(np.float32)
        c0 = (rng.standard_normal((B, H_)) * 0.5).astype(np.float32)
        h0 = (rng.standard_normal((B, H_)) * 0.5).astype(np.float32)
        kernel = rng.uniform(-0.1, 0.1, (2 * H_, 4 * H_)).astype(np.float32)
        bias = rng.uniform(-0.1, 0.1, 4 * H_).astype(np.float32)
        h_all, c_all, gates = ops.lstm_forward(x, c0, h0, kernel, bias, 0.0)
        ref_h, _, cache = ref.lstm_layer_forward(*f64(x, c0, h0, kernel, bias))
        rows.append((f"LSTM layer forward H={H_} T={T_}", rel(h_all, ref_h)))
        d = rng.standard_normal((T_, B, H_)).astype(np.float32)
        got = ops.lstm_backward(d, None, None, x, c0, h0, kernel, h_all, c_all, gates)
        want = ref.lstm_layer_backward(d.astype(np.float64), None, None, cache)
        rows.append((f"LSTM layer backward H={H_} T={T_} (worst of dx,dc0,dh0,dW,db)",
                     max(rel(a, b) for a, b in zip(got, want))))

    N = B * T
    h = rng.standard_normal((N, H)).astype(np.float32)
    w = rng.uniform(-0.1, 0.1, (H, V)).astype(np.float32)
    b = rng.uniform(-0.1, 0.1, V).astype(np.float32)
    targets = rng.integers(0, V, N)
    total, losses, dh, dw, db = ops.output_layer_loss_and_grads(h, w, b, targets, 1.0 / B)
    ref_losses, cache = ref.output_layer_forward(*f64(h, w, b), targets)
    rows.append(("output layer losses", rel(losses, ref_losses)))
    rows.append(("output layer backward (worst of dh,dW,db)",
                 max(rel(a, c) for a, c in zip((dh, dw, db), ref.output_layer_backward(1.0 / B, cache)))))

    # A 100,000-word vocabulary: evaluation and training both go through column chunks.
    big_v = 100_000
    w_big = rng.uniform(-0.1, 0.1, (H, big_v)).astype(np.float32)
    b_big = rng.uniform(-0.1, 0.1, big_v).astype(np.float32)
    t_big = rng.integers(0, big_v, N)
    _, losses = ops.output_layer_loss(h, w_big, b_big, t_big)
    _, train_losses, dh, dw, db = ops.output_layer_loss_and_grads(h, w_big, b_big, t_big, 1.0 / B)
    ref_losses, cache = ref.output_layer_forward(*f64(h, w_big, b_big), t_big)
    rows.append(("output layer losses, 100,000 words (column chunks)",
                 max(rel(losses, ref_losses), rel(train_losses, ref_losses))))
    rows.append(("output layer backward, 100,000 words (two passes)",
                 max(rel(a, c) for a, c in zip((dh, dw, db), ref.output_layer_backward(1.0 / B, cache)))))

    fast = ptbfast.LSTMLanguageModel(V, H, 2, seed=1)
    slow = ref.NumpyLSTMLanguageModel(V, H, 2, seed=1, dtype=np.float64)
    slow.params = {k: v.astype(np.float64) for k, v in fast.params.items()}
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    cost, grads, _ = fast.loss_and_grads(x, y, fast.initial_state(B))
    ref_cost, ref_grads, _ = slow.loss_and_grads(x, y, slow.initial_state(B))
    rows.append(("whole model cost (small config)", abs(cost - ref_cost) / ref_cost))
    rows.append(("whole model gradients (worst tensor)", max(rel(grads[k], ref_grads[k]) for k in grads)))

    # bf16 mixed precision, small config: against the bf16 twin (rounding at the same places; one
    # float32 ulp can flip a rounding) and against the fp32 reference (the cost of bf16 itself).
    for precision in ("bf16", "fp32"):
        fast_bf16 = ptbfast.LSTMLanguageModel(V, H, 2, seed=1, precision="bf16")
        slow = ref.NumpyLSTMLanguageModel(V, H, 2, seed=1, dtype=np.float64, precision=precision)
        slow.params = {k: v.astype(np.float64) for k, v in fast_bf16.params.items()}
        cost, grads, _ = fast_bf16.loss_and_grads(x, y, fast_bf16.initial_state(B))
        ref_cost, ref_grads, _ = slow.loss_and_grads(x, y, slow.initial_state(B))
        rows.append((f"bf16 model vs {precision} reference: cost", abs(cost - ref_cost) / ref_cost))
        rows.append((f"bf16 model vs {precision} reference: gradients (worst tensor)",
                     max(rel(grads[k], ref_grads[k]) for k in grads)))

    x = np.linspace(-100, 100, 2_000_001).astype(np.float32)
    xd = x.astype(np.float64)
    inside = (xd > -87.3) & (xd < 88.3)
    rows.append(("exp_approx (relative, [-87.3, 88.3])",
                 float(np.max(np.abs(_core._vecmath("exp", x)[inside] - np.exp(xd[inside])) / np.exp(xd[inside])))))
    rows.append(("sigmoid_approx (absolute)", float(np.max(np.abs(_core._vecmath("sigmoid", x) - 1 / (1 + np.exp(-xd)))))))
    t = np.tanh(xd)
    nz = t != 0
    rows.append(("tanh_approx (relative)", float(np.max(np.abs(_core._vecmath("tanh", x)[nz] - t[nz]) / np.abs(t[nz])))))

    print(f"ptbfast {ptbfast.build_info()['blas']} build")
    width = max(len(name) for name, _ in rows)
    for name, err in rows:
        print(f"{name:<{width}}  {err:.2e}")


if __name__ == "__main__":
    main()
