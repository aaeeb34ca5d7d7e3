"""ptbfast: TensorFlow's ptb_word_lm LSTM language model, exactly, and fast on a CPU."""

import sys

from ptbfast import ops
from ptbfast.ops import build_info, embedding_lookup, get_num_threads, set_num_threads
from ptbfast.lm import LanguageModel, load
from ptbfast.model import LSTMLanguageModel


def _configure_from_environment() -> None:
    """PTBFAST_ISA, PTBFAST_BF16_PRODUCTS, PTBFAST_SGEMM_LARGE, PTBFAST_ONE_ROW_PRODUCTS, PTBFAST_MALLOC.
    A bad value stops the import with a ValueError naming the variable; while ``python -m`` imports
    the module it runs (``python -m ptbfast``: runpy imports this package before __main__ can catch
    anything; sys.argv[0] is "-m" meanwhile), a one-line error and exit 2 instead of a traceback,
    also for ``python -m`` of another module that imports ptbfast as it loads."""
    try:
        ops.configure_from_environment()
    except ValueError as e:
        if sys.argv[:1] != ["-m"]:
            raise
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


_configure_from_environment()
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
