"""Shared test helpers: the error measure every parity test uses, float64 copies, comparing training
runs, and damaged checkpoints."""

import os
from pathlib import Path

import numpy as np

# Where products of one row run, as import set it (PTBFAST_ONE_ROW_PRODUCTS): tests that change the
# setting (ops.set_one_row_products) restore this.
ONE_ROW_SETTING = os.environ.get("PTBFAST_ONE_ROW_PRODUCTS") or "auto"


def on_one_row_loops_at_thread_counts(call, counts=(1, 2, 3)) -> list:
    """``call()``'s results with the products of one row on ptbfast's loops, at each thread count
    (the thread count and the setting restored afterwards)."""
    import ptbfast
    from ptbfast import ops

    before = ptbfast.get_num_threads()
    ops.set_one_row_products("ptbfast")
    try:
        results = []
        for n in counts:
            ptbfast.set_num_threads(n)
            results.append(call())
        return results
    finally:
        ptbfast.set_num_threads(before)
        ops.set_one_row_products(ONE_ROW_SETTING)


def max_rel_error(actual, expected) -> float:
    """Normwise relative error ``max|actual - expected| / max|expected|`` (the max norm).

    Element-wise relative error is meaningless where the expected value is ~0 (a gradient entry
    that cancels to 1e-9 carries float32 rounding of the terms that cancelled), so every parity
    test in ptbfast compares in this norm, per tensor.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if expected.size == 0:
        return 0.0
    scale = np.max(np.abs(expected))
    diff = np.max(np.abs(actual - expected))
    return float(diff / scale) if scale > 0 else float(diff)


def within_summation_bound(got, a, b, c0=None) -> bool:
    """Element by element, ``got`` is ``a @ b (+ c0)`` to within float32 summation's bound:
    |got - exact| <= gamma(K + 1) * (|c0| + sum_k |a_k b_k|), gamma(n) = n u / (1 - n u), u = 2^-24
    (Higham's bound for any order of the sums, so it holds for every BLAS and kernel)."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    exact = a64 @ b64 + (0 if c0 is None else np.asarray(c0, np.float64))
    size = np.abs(a64) @ np.abs(b64) + (0 if c0 is None else np.abs(np.asarray(c0, np.float64)))
    n = a64.shape[1] + 1
    gamma = n * 2.0**-24 / (1 - n * 2.0**-24)
    return bool(np.all(np.abs(np.asarray(got, np.float64) - exact) <= gamma * size))


def f64(*arrays):
    return tuple(np.asarray(a, dtype=np.float64) for a in arrays)


def f32(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# ---- comparing training runs ---------------------------------------------------------------------

def same_params(a, b) -> bool:
    """The same parameter names with bit-identical values."""
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def epochs_of(history):
    """A training history without the timings, which differ from run to run."""
    return [{k: row[k] for k in ("epoch", "learning_rate", "train_perplexity", "valid_perplexity")}
            for row in history]


# ---- damaged checkpoints: a named file that is unusable, beside a good checkpoint.npz.prev ----------

def _truncated(path, good: bytes) -> None:
    path.write_bytes(good[: len(good) // 2])


def _corrupt(path, good: bytes) -> None:
    data = bytearray(good)
    middle = len(data) // 2
    data[middle: middle + 64] = bytes(64)  # inside a member's data, which its CRC-32 covers
    assert data != good
    path.write_bytes(bytes(data))


def _foreign_npz(path, good: bytes) -> None:
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:  # (np.savez on a path would append .npz to a name without it)
        np.savez(f, embedding=rng.standard_normal((30, 8)).astype(np.float32), ids=rng.integers(0, 30, 50))


def _text(path, good: bytes) -> None:
    path.write_text("epoch 3: valid perplexity 5.43\n" * 20, encoding="utf-8")


# kind -> (how to make the file from a good checkpoint's bytes, what the error must say about it);
# None: the file is missing.
DAMAGED_CHECKPOINTS = {
    "missing": (None, "does not exist"),
    "truncated": (_truncated, "corrupt or truncated"),
    "corrupt": (_corrupt, "corrupt or truncated"),
    "foreign npz": (_foreign_npz, "not a ptbfast checkpoint (a .npz file without ptbfast's metadata)"),
    "text file": (_text, "not a ptbfast checkpoint (not a .npz file)"),
}


def damaged_checkpoint(directory, run, kind: str):
    """``directory/checkpoint.npz`` made unusable in the way ``kind`` names, from the good
    ``run/checkpoint.npz``, with ``run``'s good ``checkpoint.npz.prev`` copied beside it (the file a
    silent fallback would use). Returns the path and the fragment its error message must hold."""
    from ptbfast.checkpoint import previous_path
    from ptbfast.train import CHECKPOINT_NAME

    make, says = DAMAGED_CHECKPOINTS[kind]
    path, good = Path(directory) / CHECKPOINT_NAME, Path(run) / CHECKPOINT_NAME
    previous_path(path).write_bytes(previous_path(good).read_bytes())
    if make is not None:
        make(path, good.read_bytes())
    return path, says


SMALLEST_NORMAL = 2.0**-126


def _flush(x):
    """Denormals (|x| < 2^-126) to a zero of their sign, as the bf16 instructions read and write them."""
    return np.where(np.abs(x) < SMALLEST_NORMAL, np.copysign(0.0, x), x)


def pair_products_twin(a, b, c0=None) -> np.ndarray:
    """NumPy twin of VDPBF16PS's arithmetic: float32 C = a @ b (+ c0) with a, b holding bf16 values, K
    taken in pairs in order, each pair's odd product added to the float32 accumulator first, then
    the even one, each addition rounded to float32 (a bf16 product is exact, so this is a float32 fma),
    denormal inputs read as zero and denormal results flushed. An addition done in float64 and
    rounded once is exact here: the sum of a float32 and a bf16 product fits 53 bits unless their
    exponents are more than ~30 apart, which random test operands never are."""
    a, b = _flush(np.asarray(a, np.float64)), _flush(np.asarray(b, np.float64))
    M, K = a.shape
    if K % 2:  # an odd K is padded with a zero pair element, which adds 0 * 0 (turning -0 into +0)
        a, b = np.pad(a, ((0, 0), (0, 1))), np.pad(b, ((0, 1), (0, 0)))
    acc = np.zeros((M, b.shape[1]), np.float32) if c0 is None else np.array(c0, np.float32)
    for k in range(0, K, 2):
        for j in (k + 1, k):
            acc = _flush((_flush(acc.astype(np.float64)) + np.outer(a[:, j], b[j])).astype(np.float32))
    return acc
