"""ptbfast: TensorFlow's ptb_word_lm LSTM language model, exactly, and fast on a CPU."""

from ptbfast import ops
from ptbfast.ops import build_info, embedding_lookup, get_num_threads, set_num_threads
from ptbfast.lm import LanguageModel, load
from ptbfast.model import LSTMLanguageModel

ops.configure_from_environment()  # PTBFAST_ISA, PTBFAST_BF16_PRODUCTS, PTBFAST_SGEMM_LARGE, PTBFAST_ONE_ROW_PRODUCTS, PTBFAST_MALLOC
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
