"""Parameter names, shapes and TF-style initialisation shared by every model implementation.

The layout is TensorFlow ``ptb_word_lm``'s, so weights map one-to-one to a TF checkpoint:

    embedding       [V, H]
    lstm_{l}/kernel [2H, 4H]   rows: layer input then h; columns: gates i, j, f, o
    lstm_{l}/bias   [4H]
    softmax_w       [H, V]
    softmax_b       [V]
"""

from __future__ import annotations

import math

import numpy as np


def param_shapes(vocab_size: int, hidden_size: int, num_layers: int,
                 tie_weights: bool = False) -> dict[str, tuple[int, ...]]:
    """Names and shapes of all parameters, in initialisation order. With ``tie_weights`` (Press &
    Wolf 2017) there is no ``softmax_w``: the output projection is ``embedding.T``."""
    V, H = vocab_size, hidden_size
    shapes: dict[str, tuple[int, ...]] = {"embedding": (V, H)}
    for layer in range(num_layers):
        shapes[f"lstm_{layer}/kernel"] = (2 * H, 4 * H)
        shapes[f"lstm_{layer}/bias"] = (4 * H,)
    if not tie_weights:
        shapes["softmax_w"] = (H, V)
    shapes["softmax_b"] = (V,)
    return shapes


def init_params(
    vocab_size: int,
    hidden_size: int,
    num_layers: int,
    init_scale: float = 0.1,
    seed: int = 0,
    dtype=np.float32,
    tie_weights: bool = False,
) -> dict[str, np.ndarray]:
    """Every parameter uniform in [-init_scale, init_scale], as TF's ``random_uniform_initializer``."""
    if vocab_size < 1 or hidden_size < 1 or num_layers < 1:
        raise ValueError(
            f"vocab_size, hidden_size and num_layers must be >= 1, got "
            f"{vocab_size}, {hidden_size}, {num_layers}"
        )
    if not (math.isfinite(init_scale) and init_scale >= 0):  # (NumPy's own words: "high - low range exceeds ...")
        raise ValueError(f"init_scale must be a finite number >= 0, got {init_scale}")
    rng = np.random.default_rng(seed)
    return {
        name: rng.uniform(-init_scale, init_scale, size=shape).astype(dtype)
        for name, shape in param_shapes(vocab_size, hidden_size, num_layers, tie_weights).items()
    }
