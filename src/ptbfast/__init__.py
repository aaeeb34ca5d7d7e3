"""ptbfast: TensorFlow's ptb_word_lm LSTM language model, exactly, and fast on a CPU."""

from ptbfast.ops import build_info, embedding_lookup, get_num_threads, set_num_threads
from ptbfast.lm import LanguageModel, load
from ptbfast.model import LSTMLanguageModel

__version__ = build_info()["version"]

__all__ = [
    "LSTMLanguageModel",
    "LanguageModel",
    "build_info",
    "embedding_lookup",
    "get_num_threads",
    "load",
    "set_num_threads",
]
