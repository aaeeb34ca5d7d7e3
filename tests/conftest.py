import os
import sys

import pytest

# Tests import their shared helpers as a plain module (tests/ is not a package).
sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests with one thread: tiny matrices gain nothing from threads, and an
    OpenMP pool oversubscribed by another busy process is slow. Restores the count afterwards."""
    import ptbfast

    before = ptbfast.get_num_threads()
    ptbfast.set_num_threads(1)
    yield
    ptbfast.set_num_threads(before)


@pytest.fixture(params=["ptbfast", "blas"])
def one_row_route(request):
    """Both routes of the float32 products of one row on every CPU ("auto" takes one by CPU vendor):
    ptbfast's loops and the BLAS (ops.set_one_row_products); restores the setting afterwards."""
    from helpers import ONE_ROW_SETTING
    from ptbfast import ops

    ops.set_one_row_products(request.param)
    yield request.param
    ops.set_one_row_products(ONE_ROW_SETTING)


# ---- the synthetic corpus and the tiny config (tests/synthetic_corpus.py) ---------------------------

@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A directory holding the synthetic ``ptb.{train,valid,test}.txt`` (30 words); read-only."""
    from synthetic_corpus import write_corpus

    return write_corpus(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def corpus(data_dir):
    from ptbfast import reader

    return reader.load_corpus(data_dir)


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(**changes)``: the config every training test uses on the synthetic corpus."""
    from synthetic_corpus import tiny_config

    return tiny_config


@pytest.fixture(scope="module")
def trained_run(one_thread, corpus, tiny_config, tmp_path_factory):
    """A finished tiny run, one per test module: ``checkpoint.npz`` (end of epoch 2, ``finished``),
    ``checkpoint.npz.prev`` (end of epoch 1) and ``metrics.jsonl``. Copy it before changing it."""
    from ptbfast.train import Trainer

    save = tmp_path_factory.mktemp("trained_run")
    Trainer(tiny_config(), corpus, save_path=save, log=lambda s: None, progress=False).train()
    return save


# ---- hypothesis profiles (tests/test_fuzz_*.py) ------------------------------------------------------
# HYPOTHESIS_PROFILE=ci (the default): 25 examples per property, derandomized so a CI run always
# tests the same cases, no example database; the whole file runs in seconds.
# HYPOTHESIS_PROFILE=fuzz: FUZZ_EXAMPLES per property, fresh random cases each run (failures are
# kept in .hypothesis/ and replayed first next time); tests/test_fuzz_*.py have 21 properties, so a
# run is 21 x 700 = 14,700 generated cases (>= 10,000), plus 7 fixed cases of two plain tests.
# deadline=None in both: a first call can pay a one-off cost (OpenMP pool, MKL dispatch), and the
# machine may be busy; a hang is caught by the CI job's timeout, not by per-example deadlines.
try:
    from hypothesis import settings as _hypothesis_settings
except ImportError:  # hypothesis is a test extra; only the fuzz files need it
    _hypothesis_settings = None

FUZZ_EXAMPLES = 700

if _hypothesis_settings is not None:
    _hypothesis_settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True, database=None)
    _hypothesis_settings.register_profile("fuzz", max_examples=FUZZ_EXAMPLES, deadline=None)
    _hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_terminal_summary(terminalreporter):
    """One line with the number of fuzz cases run (tests/fuzz_strategies.py counts them):
    'test_fuzz_*: N valid and M invalid cases run'."""
    fuzz = sys.modules.get("fuzz_strategies")
    if fuzz is None or not sum(fuzz.CASES.values()):
        return
    from hypothesis import settings

    terminalreporter.write_line(
        f"test_fuzz_*: {fuzz.CASES['valid']} valid and {fuzz.CASES['invalid']} invalid cases run "
        f"(max_examples={settings().max_examples} per property)")


def pytest_configure(config):
    # When a property fails, hypothesis' pytest plugin imports libcst to write the failing examples as
    # a patch; libcst's import touches mypy_extensions.TypedDict, whose DeprecationWarning would turn
    # the report of that failure into an INTERNALERROR under pyproject's filterwarnings = error.
    config.addinivalue_line("filterwarnings",
                            "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")
