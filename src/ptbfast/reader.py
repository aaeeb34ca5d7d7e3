"""Utilities for parsing PTB text files, after TensorFlow's ``models/tutorials/rnn/ptb/reader.py``.

The tokenisation, vocabulary and batching are TF's, so the word ids and the batches are the same
ids and batches that TF's ``ptb_word_lm.py`` trains on:

* Every newline becomes an ``<eos>`` token and words are split on whitespace. A file that does not
  end with a newline therefore has no final ``<eos>`` (as in TF).
* The vocabulary comes from the training file only. Ids are given by descending count, ties broken
  by ascending word, so on PTB ``the`` = 0, ``<unk>`` = 1 and ``<eos>`` = 2.
* Words of the validation and test files that are not in the vocabulary are dropped (as in TF;
  PTB itself has no such words since it already maps rare words to ``<unk>``).

Where this module differs from TF, it does so only for text that TF handles badly. None of these
differences changes anything for PTB:

* TF replaces ``"\\n"`` with ``"<eos>"`` without spaces, so a line without a trailing space glues
  ``<eos>`` to its last word (``"a b\\nc"`` gives ``a``, ``b<eos>c``). Here ``<eos>`` is always a
  word of its own. PTB lines start and end with a space, so the result is the same.
* Windows line ends (``"\\r\\n"``) are read as ``"\\n"``. A lone ``"\\r"`` is only whitespace.
* Files are decoded as strict UTF-8 (an invalid byte is an error that gives its offset) and a
  leading UTF-8 byte order mark is ignored.
* Problems with the files raise :class:`DataError`, whose message names the file.
"""

from __future__ import annotations

import collections
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

EOS = "<eos>"

SPLITS = ("train", "valid", "test")

# File name patterns of the accepted data directories, tried in this order: PTB as shipped in
# Mikolov's simple-examples/data, then plain train/valid/test names, then WikiText's.
FILE_PATTERNS = ("ptb.{}.txt", "{}.txt", "wiki.{}.tokens")


class DataError(ValueError):
    """A data file or directory is missing or unreadable; the message says which one and why."""


def _not_a_file(path: Path) -> str:
    return "is a directory, not a file" if path.is_dir() else "is not a regular file" if path.exists() \
        else "does not exist"


def _read_words(filename: PathLike) -> list[str]:
    """All words of a file, with every newline turned into ``<eos>`` (TF's ``_read_words``)."""
    path = Path(filename)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"data file {path} does not exist") from None
    except OSError as e:
        raise DataError(f"cannot read data file {path}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"data file {path} is not valid UTF-8: byte 0x{raw[e.start]:02x} at offset {e.start}"
        ) from None
    if text.startswith("\ufeff"):  # byte order mark written by some Windows editors
        text = text[1:]
    # "\r\n" first, so that a Windows line end gives one <eos>, not "\r" plus one <eos>.
    words = text.replace("\r\n", "\n").replace("\n", f" {EOS} ").split()
    if not words:
        raise DataError(f"data file {path} is empty (it has no words)")
    return words


def _vocab_from_words(words: list[str]) -> dict[str, int]:
    counter = collections.Counter(words)
    count_pairs = sorted(counter.items(), key=lambda x: (-x[1], x[0]))
    return {word: i for i, (word, _) in enumerate(count_pairs)}


def _words_to_ids(words: list[str], word_to_id: dict[str, int], source="the text") -> np.ndarray:
    # Out-of-vocabulary words are dropped, as TF does; said, since a perplexity over what is left is
    # lower than over the text (PTB itself has none: its rare words are <unk> already).
    ids = np.fromiter((word_to_id[w] for w in words if w in word_to_id), dtype=np.int32)
    if len(ids) < len(words):
        dropped = len(words) - len(ids)
        warnings.warn(f"{dropped} of the {len(words)} words of {source} ({dropped / len(words):.2%}) are not in the "
                      "vocabulary and were dropped, as TF's reader does", stacklevel=3)
    return ids


def build_vocab(filename: PathLike) -> dict[str, int]:
    """Map each word of ``filename`` to an id: most frequent first, ties by ascending word."""
    return _vocab_from_words(_read_words(filename))


def file_to_word_ids(filename: PathLike, word_to_id: dict[str, int]) -> np.ndarray:
    """The words of ``filename`` as int32 ids; words not in ``word_to_id`` are dropped."""
    return _words_to_ids(_read_words(filename), word_to_id, filename)


def data_files(data_path: PathLike) -> dict[str, Path]:
    """The train, valid and test files of a data directory, keyed by split name.

    Accepted names are ``ptb.{train,valid,test}.txt`` (PTB), ``{train,valid,test}.txt`` and
    ``wiki.{train,valid,test}.tokens`` (WikiText); the first pattern whose training file exists
    is used and its other two files must exist too.
    """
    directory = Path(data_path).expanduser()
    if not directory.exists():
        raise DataError(f"data directory {directory} does not exist")
    if not directory.is_dir():
        raise DataError(f"data directory {directory} is not a directory")
    for pattern in FILE_PATTERNS:
        if (directory / pattern.format("train")).is_file():
            paths = {split: directory / pattern.format(split) for split in SPLITS}
            for path in paths.values():
                if not path.is_file():
                    raise DataError(f"data file {path} {_not_a_file(path)}")
            return paths
    for pattern in FILE_PATTERNS:  # (a directory of that name, say)
        if (directory / pattern.format("train")).exists():
            path = directory / pattern.format("train")
            raise DataError(f"data file {path} {_not_a_file(path)}")
    expected = " or ".join(pattern.format("train") for pattern in FILE_PATTERNS)
    raise DataError(
        f"data file {directory / FILE_PATTERNS[0].format('train')} does not exist "
        f"(looked in {directory} for {expected})"
    )


@dataclass(eq=False)
class Corpus:
    """The three splits as int32 word ids, with the vocabulary they index."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    word_to_id: dict[str, int]
    id_to_word: list[str]
    paths: dict[str, Path]  # "train", "valid", "test" -> the file that was read

    @property
    def vocab_size(self) -> int:
        return len(self.id_to_word)


def load_corpus(data_path: PathLike) -> Corpus:
    """Read a data directory (see :func:`data_files`) into a :class:`Corpus`."""
    paths = data_files(data_path)
    train_words = _read_words(paths["train"])  # read once, for both the vocabulary and the ids
    word_to_id = _vocab_from_words(train_words)
    return Corpus(
        train=_words_to_ids(train_words, word_to_id),
        valid=file_to_word_ids(paths["valid"], word_to_id),
        test=file_to_word_ids(paths["test"], word_to_id),
        word_to_id=word_to_id,
        id_to_word=list(word_to_id),  # dicts keep insertion order, which is id order
        paths=paths,
    )


def ptb_raw_data(data_path: PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Load PTB raw data from ``data_path``, as TF's ``ptb_raw_data``.

    Reads the text files, converts strings to integer ids and returns
    ``(train_data, valid_data, test_data, vocabulary_size)``; the data are int32 arrays.
    """
    corpus = load_corpus(data_path)
    return corpus.train, corpus.valid, corpus.test, corpus.vocab_size


def epoch_size(n_tokens: int, batch_size: int, num_steps: int) -> int:
    """Number of ``[batch_size, num_steps]`` batches one epoch over ``n_tokens`` tokens gives."""
    if batch_size < 1 or num_steps < 1:
        raise ValueError(f"batch_size and num_steps must be >= 1, got {batch_size}, {num_steps}")
    batch_len = n_tokens // batch_size
    # The targets are the inputs shifted by one, hence the -1.
    return max(0, (batch_len - 1) // num_steps)


def ptb_producer(
    raw_data, batch_size: int, num_steps: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Iterate over one epoch of ``raw_data`` in TF's order, yielding ``(x, y)`` pairs.

    The data are cut into ``batch_size`` contiguous rows (trailing tokens dropped) and each
    step takes the next ``num_steps`` columns, so row ``b`` of one batch continues row ``b`` of
    the previous one and the LSTM state can be carried over. ``x`` and ``y`` are contiguous
    int32 arrays of shape ``[batch_size, num_steps]``; ``y`` is ``x`` shifted one word ahead.

    Raises ValueError if the data are too short for a single batch. The arguments are checked
    when this is called, not at the first ``next()``.
    """
    data = np.asarray(raw_data)
    if data.ndim != 1:
        raise ValueError(f"raw_data must be one-dimensional, got shape {data.shape}")
    if data.size and not np.issubdtype(data.dtype, np.integer):
        raise ValueError(f"raw_data must hold integer word ids, got dtype {data.dtype}")
    if data.size and (data.min() < 0 or data.max() > np.iinfo(np.int32).max):  # (int32 would wrap them)
        raise ValueError(f"raw_data must hold word ids in [0, 2**31), got {data.min()} .. {data.max()}")
    data = data.astype(np.int32, copy=False)
    n = epoch_size(len(data), batch_size, num_steps)
    if n == 0:
        raise ValueError(
            f"epoch_size == 0, decrease batch_size or num_steps: {len(data)} tokens with "
            f"batch_size={batch_size} and num_steps={num_steps} (an epoch needs at least "
            f"batch_size * (num_steps + 1) = {batch_size * (num_steps + 1)} tokens)"
        )
    batch_len = len(data) // batch_size
    data = data[: batch_size * batch_len].reshape(batch_size, batch_len)
    return _batches(data, n, num_steps)


def _batches(data: np.ndarray, n: int, num_steps: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for i in range(n):
        start = i * num_steps
        x = np.ascontiguousarray(data[:, start : start + num_steps])
        y = np.ascontiguousarray(data[:, start + 1 : start + num_steps + 1])
        yield x, y
