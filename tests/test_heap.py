"""ops.keep_freed_memory: large blocks come from glibc's heap and stay there when freed, so that the
next step's arrays reuse them instead of taking fresh pages from the kernel (src/cpp/heap.cpp)."""

import os
import platform
import subprocess
import sys

import pytest

import ptbfast
from ptbfast import ops

GLIBC = platform.libc_ver()[0] == "glibc"


# Faults on a block of 80 MB freed just before its twin is allocated and touched: above glibc's largest
# dynamic mmap threshold (32 MB), so mapped afresh under its defaults. NumPy's huge pages are off for
# it (2 MB pages would fault 512 times less, hiding the difference).
REUSE_FAULTS = """
import resource, numpy as np, ptbfast
try:
    from numpy._core.multiarray import _set_madvise_hugepage
except ImportError:
    from numpy.core.multiarray import _set_madvise_hugepage
_set_madvise_hugepage(False)
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(20 << 20, np.float32)
before = faults()
np.ones(20 << 20, np.float32)
print(faults() - before)
"""
PAGES = (80 << 20) // 4096


def _reuse_faults(malloc: str) -> int:
    env = {**os.environ, "PTBFAST_MALLOC": malloc}
    done = subprocess.run([sys.executable, "-c", REUSE_FAULTS], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.mark.skipif(not GLIBC, reason="the policy is glibc's mmap and trim thresholds")
def test_a_freed_block_is_reused_without_page_faults():
    assert _reuse_faults("keep") < PAGES // 100
    # (and the measurement sees the difference: glibc's defaults map the block afresh)
    assert _reuse_faults("system") > PAGES // 2


@pytest.mark.skipif(not GLIBC, reason="the policy is glibc's mmap and trim thresholds")
def test_keep_freed_memory_reports_glibc():
    assert ops.keep_freed_memory() is True  # (import already did: PTBFAST_MALLOC unset)


def _info_in_subprocess(malloc: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PTBFAST_MALLOC": malloc}
    code = "import ptbfast; print(ptbfast.build_info()['malloc'])"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not GLIBC, reason="the policy is glibc's mmap and trim thresholds")
def test_the_environment_chooses_the_policy():
    kept = _info_in_subprocess("keep")
    assert kept.returncode == 0, kept.stderr
    assert "glibc: blocks up to 1024 MiB" in kept.stdout or "glibc: blocks up to 32 MiB" in kept.stdout
    system = _info_in_subprocess("system")
    assert system.returncode == 0, system.stderr
    assert system.stdout.strip() == "the C library's defaults"


def test_a_bad_policy_stops_the_import_naming_the_variable():
    done = _info_in_subprocess("jemalloc")
    assert done.returncode != 0 and "PTBFAST_MALLOC='jemalloc'" in done.stderr


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match=">= 0"):
        ops.keep_freed_memory(-1)
    with pytest.raises(TypeError):
        ops.keep_freed_memory(1.5)


def test_info_names_the_policy():
    assert isinstance(ptbfast.build_info()["malloc"], str) and ptbfast.build_info()["malloc"]
