"""Kernel timings at the small and medium configs' shapes: ptbfast vs NumPy reference vs PyTorch."""

import numpy as np
import pytest

import ptbfast
from ptbfast import gemm_bench, ops
from ptbfast import reference as ref

from conftest import HAS_TORCH, IMPLS

SHAPES = {"small": (20, 20, 200, 10000), "medium": (20, 35, 650, 10000)}  # B, T, H, V


def arrays(config):
    B, T, H, V = SHAPES[config]
    rng = np.random.default_rng(0)
    f = lambda *s: rng.uniform(-0.1, 0.1, s).astype(np.float32)  # noqa: E731
    return dict(B=B, T=T, H=H, V=V, rng=rng, emb=f(V, H), ids=rng.integers(0, V, (B, T)), x=f(T, B, H),
                c0=f(B, H), h0=f(B, H), kernel=f(2 * H, 4 * H), bias=f(4 * H), h=f(B * T, H), w=f(H, V), b=f(V),
                targets=rng.integers(0, V, B * T), d_out=f(B, T, H))


def torch_lstm(a):
    import torch
    lstm = torch.nn.LSTM(a["H"], a["H"], 1)
    return lstm, torch.from_numpy(a["x"]), (torch.from_numpy(a["h0"])[None], torch.from_numpy(a["c0"])[None])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("config", ["small", "medium"])
def test_embedding_forward(benchmark, impl, config):
    a = arrays(config)
    benchmark.group = f"embedding forward {config}"
    if impl == "ptbfast":
        benchmark(ptbfast.embedding_lookup, a["emb"], a["ids"])
    elif impl == "numpy":
        benchmark(ref.embedding_lookup, a["emb"], a["ids"])
    else:
        import torch
        emb, ids = torch.from_numpy(a["emb"]), torch.from_numpy(a["ids"])
        benchmark(torch.nn.functional.embedding, ids, emb)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("config", ["small", "medium"])
def test_embedding_backward(benchmark, impl, config):
    a = arrays(config)
    benchmark.group = f"embedding backward (sparse) {config}"
    if impl == "ptbfast":
        benchmark(ops.merge_duplicate_ids, a["ids"], a["d_out"])
    elif impl == "numpy":
        benchmark(ref.embedding_lookup_backward_sparse, a["d_out"], a["ids"])
    else:
        import torch
        d, ids = torch.from_numpy(a["d_out"]).reshape(-1, a["H"]), torch.from_numpy(a["ids"]).reshape(-1)
        benchmark(lambda: torch.sparse_coo_tensor(ids[None], d, (a["V"], a["H"]), check_invariants=False).coalesce())


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("config", ["small", "medium"])
def test_lstm_forward(benchmark, impl, config):
    a = arrays(config)
    benchmark.group = f"LSTM layer forward {config}"
    if impl == "ptbfast":
        benchmark(ops.lstm_forward, a["x"], a["c0"], a["h0"], a["kernel"], a["bias"], 0.0)
    elif impl == "numpy":
        benchmark(ref.lstm_layer_forward, a["x"], a["c0"], a["h0"], a["kernel"], a["bias"])
    else:
        import torch
        lstm, x, state = torch_lstm(a)
        with torch.no_grad():
            benchmark(lstm, x, state)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("config", ["small", "medium"])
def test_lstm_forward_backward(benchmark, impl, config):
    a = arrays(config)
    benchmark.group = f"LSTM layer forward+backward {config}"
    if impl == "ptbfast":
        def run():
            h_all, c_all, gates = ops.lstm_forward(a["x"], a["c0"], a["h0"], a["kernel"], a["bias"], 0.0)
            ops.lstm_backward(h_all, None, None, a["x"], a["c0"], a["h0"], a["kernel"], h_all, c_all, gates)
        benchmark(run)
    elif impl == "numpy":
        def run():
            h_all, _, cache = ref.lstm_layer_forward(a["x"], a["c0"], a["h0"], a["kernel"], a["bias"])
            ref.lstm_layer_backward(h_all, None, None, cache)
        benchmark(run)
    else:
        lstm, x, state = torch_lstm(a)
        x.requires_grad_(True)

        def run():
            out, _ = lstm(x, state)
            out.backward(out.detach())
        benchmark(run)


# One row times a weight (batch 1, generation): the logits [1, H] @ [H, V] and an LSTM step's
# product [1, H] @ [H, 4H]; on ptbfast's loop or on the BLAS (ops.set_one_row_products: "auto" takes
# one of them by CPU).
@pytest.mark.parametrize("impl", ["ptbfast-loop", "ptbfast-blas", *IMPLS[1:]])
@pytest.mark.parametrize("columns", ["V", "4H"])
@pytest.mark.parametrize("config", ["small", "medium"])
def test_product_of_one_row(benchmark, impl, columns, config):
    a = arrays(config)
    x, w = a["h"][:1], (a["w"] if columns == "V" else a["kernel"][: a["H"]])
    benchmark.group = f"product of one row {config}: [1, {a['H']}] @ {list(w.shape)}"
    if impl == "torch":
        import torch
        benchmark(torch.matmul, torch.from_numpy(x), torch.from_numpy(w))
    elif impl == "numpy":
        benchmark(np.matmul, x, w)
    else:
        before = ops.one_row_products()
        ops.set_one_row_products("blas" if impl == "ptbfast-blas" else "ptbfast")
        try:
            benchmark(ops.matmul, x, w)
        finally:
            ops.set_one_row_products(before)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("config", ["small", "medium"])
def test_output_layer_forward(benchmark, impl, config):
    a = arrays(config)
    benchmark.group = f"output layer forward {config}"
    if impl == "ptbfast":
        benchmark(ops.output_layer_loss, a["h"], a["w"], a["b"], a["targets"])
    elif impl == "numpy":
        benchmark(ref.output_layer_forward, a["h"], a["w"], a["b"], a["targets"])
    else:
        import torch
        h, w, b, t = (torch.from_numpy(a[k]) for k in ("h", "w", "b", "targets"))
        with torch.no_grad():
            benchmark(lambda: torch.nn.functional.cross_entropy(torch.addmm(b, h, w), t, reduction="sum"))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("config", ["small", "medium"])
def test_output_layer_forward_backward(benchmark, impl, config):
    a = arrays(config)
    benchmark.group = f"output layer forward+backward {config}"
    if impl == "ptbfast":
        benchmark(ops.output_layer_loss_and_grads, a["h"], a["w"], a["b"], a["targets"], 1.0 / a["B"])
    elif impl == "numpy":
        def run():
            _, cache = ref.output_layer_forward(a["h"], a["w"], a["b"], a["targets"])
            ref.output_layer_backward(1.0 / a["B"], cache)
        benchmark(run)
    else:
        import torch
        h, w, b = (torch.from_numpy(a[k]).requires_grad_(True) for k in ("h", "w", "b"))
        t = torch.from_numpy(a["targets"])

        def run():
            torch.nn.functional.cross_entropy(torch.addmm(b, h, w), t, reduction="sum").backward()
        benchmark(run)


# ---- bf16 mixed precision: the same kernels and products, by precision and bf16 product kernel ----
# "bf16-<kernel>": every product outside the LSTM time loops on that kernel of the bf16 GEMM table
# (src/cpp/gemm/bf16/: MKL's bf16 GEMM, ptbfast's AVX512-BF16 kernel, SGEMM on bf16 values, the
# generic twin); "bf16-auto": what the model uses by default. Kernels this CPU cannot run are skipped.

PRECISIONS = ["fp32", "bf16-auto", *(f"bf16-{name}" for name in ops.BF16_KERNELS)]


@pytest.fixture
def precision_path(request):
    """Sets the bf16 products path a benchmark's `precision` names, and restores it after."""
    precision = request.node.callspec.params["precision"]
    path = precision.partition("-")[2] or "auto"
    if path not in ("auto", *ops.BF16_KERNELS_HERE):
        pytest.skip(f"this CPU or build cannot run the {path!r} bf16 kernel")
    before = ops.bf16_products()
    ops.set_bf16_products(path)
    yield precision != "fp32"
    ops.set_bf16_products(before)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("config", ["small", "medium"])
def test_lstm_forward_backward_by_precision(benchmark, precision, config, precision_path):
    # bf16 includes rounding the layer input (in place, as the model does; the kernel rounds the weights).
    a = arrays(config)
    benchmark.group = f"LSTM layer forward+backward by precision {config}"
    bf16 = precision_path

    def run():
        x = ops.round_bf16_in_place(a["x"].copy()) if bf16 else a["x"]
        h_all, c_all, gates = ops.lstm_forward(x, a["c0"], a["h0"], a["kernel"], a["bias"], 0.0, bf16)
        ops.lstm_backward(h_all, None, None, x, a["c0"], a["h0"], a["kernel"], h_all, c_all, gates, bf16)
    benchmark(run)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("config", ["small", "medium"])
def test_output_layer_forward_backward_by_precision(benchmark, precision, config, precision_path):
    a = arrays(config)
    benchmark.group = f"output layer forward+backward by precision {config}"
    bf16 = precision_path

    def run():
        h = ops.round_bf16_in_place(a["h"].copy()) if bf16 else a["h"]
        ops.output_layer_loss_and_grads(h, a["w"], a["b"], a["targets"], 1.0 / a["B"], bf16=bf16)
    benchmark(run)


# The model's product shapes (M x K @ K x N; ptbfast.gemm_bench, which bench --gemm prints as a table).
GEMM_SHAPES = gemm_bench.GEMM_SHAPES


@pytest.mark.parametrize("precision", [*PRECISIONS, pytest.param("torch-bf16", marks=pytest.mark.skipif(
    not HAS_TORCH, reason="PyTorch not installed"))])
@pytest.mark.parametrize("shape", GEMM_SHAPES, ids=gemm_bench.shape_name)
def test_gemm_by_precision(benchmark, precision, shape, request):
    # GFLOP/s = extra_info gflop_per_call / the median; bench.py prints the bf16 instruction's peak
    # (ops.bf16_peak_gflops) beside SGEMM's to compare them with.
    M, K, N = shape
    rng = np.random.default_rng(0)
    a, b = (ops.round_bf16(rng.uniform(-1, 1, s).astype(np.float32)) for s in ((M, K), (K, N)))
    benchmark.group = f"GEMM {M}x{K}@{K}x{N} by precision"
    benchmark.extra_info["gflop_per_call"] = 2 * M * N * K / 1e9
    if precision == "torch-bf16":  # PyTorch's bf16 matmul (oneDNN where the CPU has bf16 instructions)
        import torch
        ta, tb = torch.from_numpy(a).bfloat16(), torch.from_numpy(b).bfloat16()
        benchmark(torch.matmul, ta, tb)
        return
    bf16 = request.getfixturevalue("precision_path")
    benchmark(ops.matmul, a, b, bf16)


@pytest.mark.parametrize("kernel", ops.BF16_PACKED_B_KERNELS)
@pytest.mark.parametrize("shape", GEMM_SHAPES, ids=gemm_bench.shape_name)
def test_gemm_with_b_packed_once(benchmark, kernel, shape):
    # B packed before the timing (ops.pack_bf16), as the model packs its weights; A converted in each
    # call. The same group as test_gemm_by_precision's, to read beside its per-call rows.
    if kernel not in ops.BF16_KERNELS_HERE:
        pytest.skip(f"this CPU or build cannot run the {kernel!r} bf16 kernel")
    M, K, N = shape
    rng = np.random.default_rng(0)
    a, b = (ops.round_bf16(rng.uniform(-1, 1, s).astype(np.float32)) for s in ((M, K), (K, N)))
    benchmark.group = f"GEMM {M}x{K}@{K}x{N} by precision"
    benchmark.extra_info["gflop_per_call"] = 2 * M * N * K / 1e9
    benchmark(ops.matmul, a, ops.pack_bf16(b, kernel))
