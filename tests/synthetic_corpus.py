"""A tiny, learnable PTB-style corpus for training, checkpoint and command-line tests.

Words follow a fixed Markov chain in which every word has two likely successors, so a small LSTM
learns it within a few epochs (perplexity falls well below the vocabulary size) while an epoch
of batch 4 x 5 steps is only ~150 batches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_WORDS = 29  # plus <eos>: a 30-word vocabulary
SIZES = {"train": 3000, "valid": 500, "test": 300}  # words per split, before the <eos> tokens


def _text(n_words: int, seed: int) -> str:
    chain = np.random.default_rng(12345)  # the same chain for every split
    cycle = chain.permutation(N_WORDS)  # the likely successor: one cycle through every word
    successors = np.stack([np.roll(cycle, -1)[np.argsort(cycle)], chain.integers(0, N_WORDS, N_WORDS)], axis=1)
    rng = np.random.default_rng(seed)
    word, lines, line = 0, [], []
    for _ in range(n_words):
        word = int(successors[word, 0 if rng.random() < 0.75 else 1])
        line.append(f"w{word:02d}")
        if len(line) >= 4 + rng.integers(0, 8):
            lines.append(" " + " ".join(line) + " ")
            line = []
    lines.append(" " + " ".join(line) + " ")
    return "\n".join(lines) + "\n"


def write_corpus(directory, sizes=None) -> Path:
    """Write ``ptb.{train,valid,test}.txt`` into ``directory`` (created) and return it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for seed, (split, n_words) in enumerate((sizes or SIZES).items(), start=1):
        (directory / f"ptb.{split}.txt").write_text(_text(n_words, seed), encoding="utf-8")
    return directory


# ---- the tiny config every training test uses on this corpus ------------------------------------
# TF's small recipe (two layers, lr 1.0 halved per epoch after the first) at a size that trains an
# epoch of ~150 batches in a fraction of a second. tests/conftest.py serves it as the tiny_config
# fixture; command-line tests pass the same settings as flags (cli_args).

VOCAB_SIZE = N_WORDS + 1
TINY = dict(hidden_size=8, num_steps=5, batch_size=4, vocab_size=VOCAB_SIZE, max_epoch=1, max_max_epoch=2,
            init_scale=0.3)


def tiny_config(**changes):
    """``get_config("small")`` with :data:`TINY` and then ``changes`` applied."""
    from ptbfast.configs import get_config

    return get_config("small", **{**TINY, **changes})


def cli_args(**changes) -> list:
    """The flags of ``python -m ptbfast train`` for ``tiny_config(**changes)``, without a progress bar
    (``max_max_epoch`` is given as ``--max-epochs``, so a later ``--max-epochs N`` replaces it)."""
    args = ["--config", "small", "--no-progress"]
    for name, value in {**TINY, **changes}.items():
        flag = "--max-epochs" if name == "max_max_epoch" else "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        else:
            args += [flag, str(value)]
    return args
