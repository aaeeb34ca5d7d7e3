"""``python -m ptbfast bench --gemm``: the bf16 GEMM table, GFLOP/s of each product kernel on the
model's shapes, beside SGEMM and PyTorch's matmul (when installed), and each native kernel's share of
its instruction's measured peak.

Each ptbfast kernel is timed two ways: "per call", both operands converted and packed inside each
call (``ops.matmul(a, b, bf16=True)`` with that kernel set: what a product of two float32 arrays
costs), and "B packed" (``ops.matmul(a, ops.pack_bf16(b, kernel))``: the weights packed once, as the
model packs its weights for all the products of a step or of a frozen model; A is still converted in
the call, as the model's activations are). PyTorch's bf16 matmul is timed on bf16 tensors made
before the timing, its fp32 matmul on the float32 arrays. The generic twin is for tests (plain C++,
slow) and is not timed here. Times are medians of ``reps`` calls after ``warmup``.
"""

from __future__ import annotations

import numpy as np

# M x K @ K x N: the output layer's logits (small, medium, large) and small's dh, the medium and
# large recurrent products (20 rows), the other shapes of the notes' Zen 4 and Xeon tables
# (20x400@400x800, 200x400@400x10000) and their square.
GEMM_SHAPES = [(400, 200, 10000), (400, 10000, 200), (700, 650, 10000), (700, 1500, 10000), (20, 650, 2600),
               (20, 1500, 6000), (20, 400, 800), (200, 400, 10000), (2048, 2048, 2048)]


def shape_name(shape) -> str:
    M, K, N = shape
    return f"{M}x{K}@{K}x{N}"


def timed_kernels() -> tuple[list[str], list[str]]:
    """(kernels timed per call, kernels timed with B packed): those of this CPU and build, but the
    generic twin and "sgemm" (the fp32 SGEMM column is that product)."""
    from ptbfast import ops
    here = [k for k in ops.BF16_KERNELS_HERE if k not in ("generic", "sgemm")]
    return here, [k for k in here if k in ops.BF16_PACKED_B_KERNELS]


def measure(shapes=None, reps: int = 7, warmup: int = 2, with_torch: bool | None = None, progress=None) -> dict:
    """{"peaks": {name: GFLOP/s}, "rows": [{"shape", "gflop", column: GFLOP/s, ...}]} for every shape
    (default GEMM_SHAPES); columns "sgemm", "<kernel>", "<kernel> packed", "torch fp32", "torch bf16"
    (PyTorch's where it is installed, or as ``with_torch`` says). ``progress(done, total, shape name)``
    after each shape (the table takes minutes)."""
    from ptbfast import ops
    from ptbfast.bench import _median_seconds, sgemm_peak_gflops, torch_available

    torch = None
    if torch_available() if with_torch is None else with_torch:
        import torch
    per_call, packed = timed_kernels()
    peaks = {"sgemm 2048^3": sgemm_peak_gflops()}
    for kernel in ("amx", "avx512_bf16"):
        if kernel in ops.BF16_KERNELS_HERE:
            peaks[kernel] = ops.bf16_peak_gflops(kernel)
    rng = np.random.default_rng(0)
    before = ops.bf16_products()
    rows = []
    shapes = GEMM_SHAPES if shapes is None else shapes
    try:
        for shape in shapes:
            M, K, N = shape
            a, b = (ops.round_bf16(rng.uniform(-1, 1, s).astype(np.float32)) for s in ((M, K), (K, N)))
            gflop = 2 * M * N * K / 1e9
            row = {"shape": shape_name(shape), "gflop": gflop}
            rate = lambda call: gflop / _median_seconds(call, reps, warmup)  # noqa: E731
            row["sgemm"] = rate(lambda: ops.matmul(a, b))
            for kernel in per_call:
                ops.set_bf16_products(kernel)
                row[kernel] = rate(lambda: ops.matmul(a, b, bf16=True))
                if kernel in packed:
                    b_packed = ops.pack_bf16(b, kernel)
                    row[f"{kernel} packed"] = rate(lambda: ops.matmul(a, b_packed))
                    del b_packed
            ops.set_bf16_products(before)
            if torch is not None:
                ta, tb = torch.from_numpy(a), torch.from_numpy(b)
                row["torch fp32"] = rate(lambda: torch.matmul(ta, tb))
                ta, tb = ta.bfloat16(), tb.bfloat16()
                row["torch bf16"] = rate(lambda: torch.matmul(ta, tb))
            rows.append(row)
            if progress is not None:
                progress(len(rows), len(shapes), row["shape"])
    finally:
        ops.set_bf16_products(before)
    return {"peaks": peaks, "rows": rows}


def format_table(result: dict) -> str:
    """The table: a column per product, GFLOP/s, and after each native kernel's packed column its
    share of its instruction's peak."""
    peaks, rows = result["peaks"], result["rows"]
    columns = [c for c in rows[0] if c not in ("shape", "gflop")] if rows else []
    heads, cells = [], [[] for _ in rows]
    for column in columns:
        heads.append(column)
        for i, row in enumerate(rows):
            cells[i].append(f"{row[column]:.0f}")
        kernel = column.removesuffix(" packed")
        if column.endswith(" packed") and peaks.get(kernel):
            heads.append("% peak")
            for i, row in enumerate(rows):
                cells[i].append(f"{100 * row[column] / peaks[kernel]:.0f}%")
    widths = [max(len(h), 6) for h in heads]
    name_width = max([len("M x K @ K x N")] + [len(r["shape"]) for r in rows])
    lines = [f"{'M x K @ K x N':<{name_width}} " + " ".join(f"{h:>{w}}" for h, w in zip(heads, widths))]
    for row, cell in zip(rows, cells):
        lines.append(f"{row['shape']:<{name_width}} " + " ".join(f"{c:>{w}}" for c, w in zip(cell, widths)))
    lines.append("GFLOP/s (medians); peaks measured here: "
                 + ", ".join(f"{name} {value:.0f}" for name, value in peaks.items())
                 + " GFLOP/s. \"packed\": B packed once (ops.pack_bf16), as the model packs its weights; "
                 "the others convert both operands in each call; torch bf16: bf16 tensors made before timing.")
    return "\n".join(lines)
