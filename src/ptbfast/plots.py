"""Pictures: a 2-D map of the learned word vectors, and training curves. Needs matplotlib."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'ptbfast[plot]'") from None
    matplotlib.use("Agg")  # files only, no screen needed
    import matplotlib.pyplot as plt
    return plt


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """Project rows onto their two principal components (SVD of the centred matrix)."""
    centred = vectors - vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def plot_embeddings(lm, out_path, n_words: int = 300, space: str = "input") -> list:
    """Draw the ``n_words`` most frequent words (lowest ids) by PCA, and by t-SNE if scikit-learn is
    installed; returns the methods drawn."""
    plt = _pyplot()
    n = min(n_words, len(lm.id_to_word))
    skip = {"<unk>", "<eos>", "N"}
    ids = [i for i in range(n) if lm.id_to_word[i] not in skip]
    if len(ids) < 3:  # (PCA's two axes and t-SNE's perplexity need them)
        raise ValueError(f"a map needs at least 3 words: the {n} most frequent leave {len(ids)} once "
                         f"{', '.join(sorted(skip))} are left out; ask for more words")
    vectors = lm.vectors(space)[ids].astype(np.float64)
    maps = [("PCA", pca_2d(vectors))]
    try:
        from sklearn.manifold import TSNE
        maps.append(("t-SNE", TSNE(n_components=2, init="pca", perplexity=min(30, len(ids) - 1),
                                   random_state=0).fit_transform(vectors)))
    except ImportError:
        pass
    fig, axes = plt.subplots(1, len(maps), figsize=(13 * len(maps), 12), squeeze=False)
    for ax, (method, xy) in zip(axes[0], maps):
        ax.scatter(xy[:, 0], xy[:, 1], s=4, color="tab:blue", alpha=0.5)
        for (x, y), i in zip(xy, ids):
            ax.annotate(lm.id_to_word[i], (x, y), fontsize=8)
        ax.set_title(f"{method} of the {len(ids)} most frequent words ({space} embedding)")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    _make_parent(out_path)
    fig.savefig(out_path, dpi=90)
    plt.close(fig)
    return [method for method, _ in maps]


def _make_parent(out_path) -> None:
    """A path's missing directories, as export makes them (savefig also takes a file object: left alone)."""
    if isinstance(out_path, (str, os.PathLike)):
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)


_CURVE_KEYS = ("epoch", "train_perplexity", "valid_perplexity", "train_wps")


def plot_training_curves(log_path, out_path) -> None:
    """Train/valid perplexity and words/sec per epoch from a trainer's metrics.jsonl."""
    plt = _pyplot()
    rows = []
    try:
        lines = Path(log_path).read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise ValueError(f"{log_path} is not a metrics.jsonl log: not UTF-8 text (byte {e.start})") from None
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{log_path}:{n} is not JSON") from None
        if not isinstance(row, dict):
            raise ValueError(f"{log_path}:{n} is not a JSON object (a trainer's metrics.jsonl has one a line)")
        if "epoch" in row:
            missing = [key for key in _CURVE_KEYS if not isinstance(row.get(key), (int, float))]
            if missing:
                raise ValueError(f"{log_path}:{n}: the epoch line lacks {', '.join(missing)} (or not as a number)")
            rows.append(row)
    if not rows:
        raise ValueError(f"{log_path} has no epoch lines")
    epochs = [r["epoch"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax1.plot(epochs, [r["train_perplexity"] for r in rows], "o-", label="train")
    ax1.plot(epochs, [r["valid_perplexity"] for r in rows], "o-", label="valid")
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("perplexity")
    ax1.legend()
    ax1.grid(True, which="both", alpha=0.3)
    ax2.plot(epochs, [r["train_wps"] for r in rows], "o-", color="tab:green")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("training words/sec")
    ax2.set_ylim(bottom=0)
    ax2.grid(True, alpha=0.3)
    fig.tight_layout()
    _make_parent(out_path)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
