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


# ---- hypothesis profiles (tests/test_fuzz.py) ------------------------------------------------------
# HYPOTHESIS_PROFILE=ci (the default): 25 examples per property, derandomized so a CI run always
# tests the same cases, no example database; the whole file runs in seconds.
# HYPOTHESIS_PROFILE=fuzz: FUZZ_EXAMPLES per property, fresh random cases each run (failures are
# kept in .hypothesis/ and replayed first next time); test_fuzz.py has 18 properties, so a run is
# 18 x 700 = 12,600 generated cases (>= 10,000), plus 7 fixed cases of two plain tests.
# deadline=None in both: a first call can pay a one-off cost (OpenMP pool, MKL dispatch), and the
# machine may be busy; a hang is caught by the CI job's timeout, not by per-example deadlines.
try:
    from hypothesis import settings as _hypothesis_settings
except ImportError:  # hypothesis is a test extra; the other test files do not need it
    _hypothesis_settings = None

FUZZ_EXAMPLES = 700

if _hypothesis_settings is not None:
    _hypothesis_settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True, database=None)
    _hypothesis_settings.register_profile("fuzz", max_examples=FUZZ_EXAMPLES, deadline=None)
    _hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_terminal_summary(terminalreporter):
    """One line with the number of fuzz cases run: 'N valid and M invalid cases'."""
    fuzz = sys.modules.get("test_fuzz")
    if fuzz is None or not sum(fuzz.CASES.values()):
        return
    from hypothesis import settings

    terminalreporter.write_line(
        f"test_fuzz: {fuzz.CASES['valid']} valid and {fuzz.CASES['invalid']} invalid cases run "
        f"(max_examples={settings().max_examples} per property)")


def pytest_configure(config):
    # When a property fails, hypothesis' pytest plugin imports libcst to write the failing examples as
    # a patch; libcst's import touches mypy_extensions.TypedDict, whose DeprecationWarning would turn
    # the report of that failure into an INTERNALERROR under pyproject's filterwarnings = error.
    config.addinivalue_line("filterwarnings",
                            "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")
