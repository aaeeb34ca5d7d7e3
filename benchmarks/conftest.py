"""Shared fixtures of the benchmark suite: `pytest benchmarks/ --benchmark-group-by=group`.

Every group times ptbfast next to the NumPy reference and, when installed, PyTorch, in one run,
so the ratios in a group's table are measured side by side on the same machine state.
"""

import importlib.util

import pytest

HAS_TORCH = importlib.util.find_spec("torch") is not None

IMPLS = ["ptbfast", "numpy", pytest.param("torch", marks=pytest.mark.skipif(not HAS_TORCH, reason="PyTorch not installed"))]
