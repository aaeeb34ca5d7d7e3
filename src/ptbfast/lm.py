"""Using a trained model: next-word probabilities, generation, scoring, and the learned embeddings.

    lm = ptbfast.load("runs/small/checkpoint.npz")
    lm.next_word_probs("the stock market", k=5)    # [(word, probability), ...]
    lm.generate("the company said", words=20, seed=0)
    lm.score("the market fell sharply")            # per-word log-probabilities and perplexity
    lm.nearest("monday", k=5)                       # cosine neighbours in the embedding

Text is split on whitespace as in training; words outside the vocabulary become ``<unk>`` (with a
warning). Contexts start after an ``<eos>``, like sentences in PTB. Generation is incremental: the
LSTM state is carried, so N words cost N single steps.
"""

from __future__ import annotations

import collections
import math
import warnings
from dataclasses import dataclass

import numpy as np

from ptbfast import checkpoint, ops
from ptbfast.configs import Config
from ptbfast.model import LSTMLanguageModel
from ptbfast.reader import EOS

UNK = "<unk>"


@dataclass
class Score:
    words: list          # the scored words (after <unk> mapping)
    log_probs: np.ndarray  # natural log-probability of each word given the ones before it
    perplexity: float


class LanguageModel:
    """A trained :class:`LSTMLanguageModel` together with its vocabulary."""

    def __init__(self, model: LSTMLanguageModel, id_to_word: list, config: Config | None = None):
        id_to_word = list(id_to_word)
        if len(id_to_word) > model.vocab_size:
            raise ValueError(f"{len(id_to_word)} words but the model has vocab_size {model.vocab_size}")
        not_words = [w for w in id_to_word if not isinstance(w, str) or w.split() != [w]]
        if not_words:  # (encode splits text on whitespace: such an entry could never be looked up)
            raise ValueError(f"the vocabulary's words must be non-empty strings without spaces, got {not_words[0]!r}")
        twice = [w for w, n in collections.Counter(id_to_word).items() if n > 1]
        if twice:  # (a word of two ids: encode would see only the last)
            raise ValueError(f"the vocabulary holds {twice[0]!r} more than once")
        self.model = model
        self.id_to_word = id_to_word
        self.word_to_id = {w: i for i, w in enumerate(self.id_to_word)}
        self.config = config  # the training config, when loaded from a checkpoint

    @classmethod
    def load(cls, path, precision: str | None = None) -> "LanguageModel":
        """From the checkpoint ``path`` and no other file; :class:`ptbfast.checkpoint.CheckpointError`
        naming it if it is missing, corrupt or holds no complete model. ``precision``: "fp32" or
        "bf16" (default: the precision it was trained in)."""
        saved = checkpoint.load_model(path, precision)
        return cls(saved.model, saved.vocabulary, saved.config)

    # ---- text <-> ids ----
    def encode(self, text: str) -> np.ndarray:
        """Word ids of ``text`` (whitespace-split, newlines as <eos>); unknown words -> <unk>."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        words = text.replace("\n", f" {EOS} ").split()
        unknown = sorted({w for w in words if w not in self.word_to_id})
        if unknown:
            if UNK not in self.word_to_id:
                raise KeyError(f"words not in the vocabulary, which has no {UNK}: {', '.join(unknown[:10])}")
            warnings.warn(f"{len(unknown)} word(s) not in the vocabulary, read as {UNK}: "
                          f"{', '.join(unknown[:10])}", stacklevel=3)
        unk = self.word_to_id.get(UNK)
        return np.array([self.word_to_id.get(w, unk) for w in words], dtype=np.int64)

    def _start(self, context_ids: np.ndarray):
        """State after reading <eos> + context, and the softmax input of the last position."""
        ids = np.concatenate([[self.word_to_id.get(EOS, 0)], context_ids]).astype(np.int64)
        outputs, state = self.model.hidden_states(ids[None, :], self.model.initial_state(1))
        return outputs[0], state

    def _product_weights(self, columns: int | None = None, rows: int = 1 << 20):
        """The output projection (its first ``columns`` columns) as the logits' product of ``rows``
        rows reads it: for a bf16 model (whose h the LSTM already rounds) packed once in bf16 for
        the kernel the frozen model's loss multiplies such rows on, where that kernel reads packed
        weights (half the bytes of a rounded float32 copy: a word of medium generation streams 13 MB
        fewer), else rounded to bf16 for SGEMM; as it is for fp32."""
        w = self.output_weights()[:, :columns]
        if self.model.precision != "bf16":  # (read in place, or a slice copied once, not in every product)
            return w if w.flags.c_contiguous or w.T.flags.c_contiguous else np.ascontiguousarray(w)
        kernel = ops.bf16_product_kernel(1 << 20, w.shape[1], w.shape[0])  # (the one freezing packs for)
        if kernel not in ops.BF16_PACKED_B_KERNELS:
            return ops.round_bf16(w)
        return ops.pack_bf16(w, ops.bf16_kernel_for_rows(kernel, rows))

    @staticmethod
    def _logits(h: np.ndarray, w, b: np.ndarray) -> np.ndarray:
        """``h @ w + b`` (h [H] or [N, H]; w an array or packed by ops.pack_bf16) on ptbfast's
        products. NumPy's ``@`` would run NumPy's BLAS, whose threads go on spinning after it returns,
        beside ptbfast's: generating with the medium model took 14-16 ms a word instead of 2 (2 cores,
        Intel Xeon family 6 model 167)."""
        return ops.matmul(np.atleast_2d(h), w).reshape(*h.shape[:-1], w.shape[1]) + b

    def _log_softmax(self, h: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        logits = self._logits(h, self._product_weights(), self.model.params["softmax_b"]).astype(np.float64)
        logits /= temperature
        logits -= logits.max(axis=-1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))

    # ---- prediction ----
    def next_word_probs(self, context: str = "", k: int = 10) -> list:
        """The ``k`` most likely next words after ``context``, as (word, probability), best first."""
        k = ops.checked_count(k, "k", 1)
        with self.model.frozen():  # (as generate and score: the same arithmetic)
            outputs, _ = self._start(self.encode(context))
        log_p = self._log_softmax(outputs[-1])[: len(self.id_to_word)]
        k = min(k, len(log_p))
        best = np.argsort(-log_p, kind="stable")[:k]
        return [(self.id_to_word[i], float(np.exp(log_p[i]))) for i in best]

    def generate(self, prompt: str = "", words: int = 50, temperature: float = 1.0, top_k: int | None = None,
                 seed: int | None = None) -> str:
        """Sample ``words`` words after ``prompt``; one LSTM step per word, the state carried."""
        words = ops.checked_count(words, "words", 0)
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
        top_k = None if top_k is None else ops.checked_count(top_k, "top_k", 1)
        seed = None if seed is None else ops.checked_count(seed, "seed", 0)
        rng = np.random.default_rng(seed)
        with self.model.frozen(one_step=True):  # (bf16: the LSTM's weights made once for all the steps)
            return self._sample(self.encode(prompt), words, temperature, top_k, rng)

    def _sample(self, prompt_ids, words, temperature, top_k, rng) -> str:
        outputs, state = self._start(prompt_ids)
        h = outputs[-1]
        out = []
        n_words = len(self.id_to_word)
        w = self._product_weights(n_words, rows=1)  # (one word a product)
        b = self.model.params["softmax_b"][:n_words]
        for _ in range(words):
            logits = self._logits(h, w, b)
            if top_k is not None and top_k < n_words:
                cut = np.partition(logits, -top_k)[-top_k]
                logits = np.where(logits >= cut, logits, -np.inf)
            # exp((l - max) / T): the largest term is 1 whatever T, so a tiny T cannot overflow.
            cumulative = np.cumsum(np.exp((logits - logits.max()).astype(np.float64) / temperature))
            word = min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")), n_words - 1)
            out.append(self.id_to_word[word])
            h_next, state = self.model.hidden_states(np.array([[word]]), state)
            h = h_next[0, -1]
        lines = [[]]  # words joined by spaces, each <eos> a newline with no space beside it
        for word in out:
            if word == EOS:
                lines.append([])
            else:
                lines[-1].append(word)
        return "\n".join(" ".join(line) for line in lines)

    def score(self, text: str) -> Score:
        """Log-probability of every word of ``text`` given the words before it (after an <eos>).
        A text of no words (``""``) scores none: perplexity NaN, the exponent of an empty mean."""
        ids = self.encode(text)
        if len(ids) == 0:
            return Score([], np.zeros(0), math.nan)
        with self.model.frozen():  # (bf16: the weights as evaluation multiplies them)
            outputs, _ = self._start(ids[:-1])
        log_p = self._log_softmax(outputs)
        log_probs = log_p[np.arange(len(ids)), ids]
        return Score([self.id_to_word[i] for i in ids], log_probs, float(np.exp(-log_probs.mean())))

    def output_weights(self) -> np.ndarray:
        """The output projection [H, V] (``embedding.T`` for a model with tied weights)."""
        return self.model.output_weights()

    # ---- embeddings ----
    def vectors(self, space: str = "input") -> np.ndarray:
        """Word vectors: rows of the input embedding, or ("output") columns of softmax_w."""
        if space == "input":
            return self.model.params["embedding"][: len(self.id_to_word)]
        if space == "output":
            return self.output_weights().T[: len(self.id_to_word)]
        raise ValueError(f"space must be 'input' or 'output', got {space!r}")

    def _cosine_neighbours(self, query: np.ndarray, k: int, space: str, exclude: set) -> list:
        vecs = self.vectors(space).astype(np.float64)
        sims = vecs @ query / (np.linalg.norm(vecs, axis=1) * np.linalg.norm(query) + 1e-12)
        order = [i for i in np.argsort(-sims, kind="stable") if i not in exclude]
        return [(self.id_to_word[i], float(sims[i])) for i in order[:k]]

    def _vector(self, word: str, space: str) -> np.ndarray:
        if word not in self.word_to_id:
            raise KeyError(f"{word!r} is not in the vocabulary")
        return self.vectors(space)[self.word_to_id[word]].astype(np.float64)

    def nearest(self, word: str, k: int = 10, space: str = "input") -> list:
        """The ``k`` words whose vectors have the highest cosine similarity with ``word``'s."""
        k = ops.checked_count(k, "k", 1)
        return self._cosine_neighbours(self._vector(word, space), k, space, {self.word_to_id[word]})

    def analogy(self, a: str, b: str, c: str, k: int = 5, space: str = "input") -> list:
        """Words nearest to ``a - b + c`` (``king - man + woman``), excluding the three inputs."""
        k = ops.checked_count(k, "k", 1)
        query = self._vector(a, space) - self._vector(b, space) + self._vector(c, space)
        return self._cosine_neighbours(query, k, space, {self.word_to_id[w] for w in (a, b, c)})


def load(path, precision: str | None = None) -> LanguageModel:
    """A trained model and its vocabulary from a ptbfast checkpoint (``precision``: see
    :meth:`LanguageModel.load`)."""
    return LanguageModel.load(path, precision)
