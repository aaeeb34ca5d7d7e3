"""Shared test helpers: the error measure every parity test uses, and float64 copies."""

import numpy as np


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


def f64(*arrays):
    return tuple(np.asarray(a, dtype=np.float64) for a in arrays)


def f32(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)
