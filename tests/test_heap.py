"""ops.keep_freed_memory: large blocks come from glibc's heap and stay there when freed, so that the
next step's arrays reuse them instead of taking fresh pages from the kernel (src/cpp/heap.cpp). Each
policy runs in a process of its own (it is process-wide and set at import). And the huge-page advice
given for the buffers that products stream every step."""

import json
import os
import platform
import subprocess
import sys

import pytest

from ptbfast import ops

GLIBC = platform.libc_ver()[0] == "glibc"
needs_glibc = pytest.mark.skipif(not GLIBC, reason="the policy is glibc's mmap and trim thresholds")

BLOCK = 80 << 20  # above glibc's largest adaptive mmap threshold (32 MB): mapped afresh under its own policy
PAGES = BLOCK // os.sysconf("SC_PAGE_SIZE")  # (4 KiB on x86_64; 16 or 64 KiB on some arm64 kernels)

# The page faults of allocating and touching a block just after its twin was freed, with transparent
# huge pages off for the process (PR_SET_THP_DISABLE; 2 MB pages would fault 512 times less, whatever
# the machine's THP setting), and the threshold ptbfast's policy put in effect (0: none).
REUSE_FAULTS = f"""
import ctypes, json, resource
thp_off = ctypes.CDLL(None, use_errno=True).prctl(41, 1, 0, 0, 0) == 0
import numpy as np
import ptbfast
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones({BLOCK // 4}, np.float32)
before = faults()
np.ones({BLOCK // 4}, np.float32)
after = faults()
info = ptbfast.build_info()["malloc"]
print(json.dumps({{"thp_off": thp_off, "faults": after - before, "info": info}}))
"""


def _run(code: str, malloc: str = None, **extra) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ops._MALLOC_VARIABLES + ("GLIBC_TUNABLES", "PTBFAST_MALLOC")}
    if malloc is not None:
        env["PTBFAST_MALLOC"] = malloc
    env.update(extra)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def _reuse(malloc: str) -> dict:
    done = _run(REUSE_FAULTS, malloc)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@needs_glibc
def test_a_freed_block_is_reused_without_page_faults():
    kept = _reuse("keep")
    if not kept["thp_off"]:
        pytest.skip("prctl(PR_SET_THP_DISABLE) refused: huge pages would hide the faults")
    if not kept["info"].startswith("glibc:"):
        pytest.skip(f"malloc is not glibc's here ({kept['info']}; an LD_PRELOAD allocator?)")
    if "below 32 MiB" in kept["info"]:
        pytest.skip("glibc before 2.35 caps the mmap threshold at 32 MiB: an 80 MB block is still mapped afresh")
    assert kept["faults"] < PAGES // 100, kept
    # (and the measurement sees the difference: under glibc's own policy the block is mapped afresh)
    assert _reuse("system")["faults"] > PAGES // 2


INFO = "import ptbfast; print(ptbfast.build_info()['malloc'])"


@needs_glibc
def test_the_environment_chooses_the_policy():
    default = _run(INFO)
    assert default.returncode == 0, default.stderr
    if not default.stdout.startswith("glibc:"):
        pytest.skip(f"malloc is not glibc's here ({default.stdout.strip()})")
    assert default.stdout.startswith("glibc: blocks below ")
    for malloc, extra in (("system", {}), (None, {"MALLOC_MMAP_THRESHOLD_": "131072"}),
                          (None, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"})):
        own = _run(INFO, malloc, **extra)
        assert own.returncode == 0 and own.stdout.strip() == "the C library's own policy", (malloc, extra, own)
    asked = _run(INFO, "keep", MALLOC_MMAP_THRESHOLD_="131072")  # (asked for by name: set anyway)
    assert asked.returncode == 0 and asked.stdout.startswith("glibc: blocks below "), asked


def test_a_bad_policy_stops_the_import_naming_the_variable():
    done = _run(INFO, "jemalloc")
    assert done.returncode != 0 and "PTBFAST_MALLOC='jemalloc'" in done.stderr


def test_bad_limits_are_refused_before_anything_changes():
    for limit in (-1, 0, (1 << 20) - 1):
        with pytest.raises(ValueError, match="at least 1 MiB"):
            ops.keep_freed_memory(limit)
    with pytest.raises(TypeError):
        ops.keep_freed_memory(1.5)


def _vma_flags(start: int, end: int) -> list:
    """``(first, last, VmFlags)`` of each mapping of this process that overlaps [start, end)."""
    mappings, current = [], None
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                first, last = (int(x, 16) for x in head.split("-"))
                current = (first, last) if first < end and last > start else None
            elif head == "VmFlags:" and current is not None:
                mappings.append((*current, line.split()[1:]))
    return mappings


@pytest.mark.skipif(not os.path.isdir("/sys/kernel/mm/transparent_hugepage"),
                    reason="transparent huge pages are Linux's, and this kernel has none")
def test_advise_huge_pages_marks_the_whole_2mb_pages_inside_the_buffer():
    import mmap

    import numpy as np

    from ptbfast import _core

    huge = 2 << 20
    region = mmap.mmap(-1, 8 << 20)  # a mapping of its own, page-aligned
    buffer = np.frombuffer(region, np.uint8)[4096:]  # begins inside a 2 MB page
    start = buffer.ctypes.data
    end = start + buffer.nbytes
    advised = ((start + huge - 1) // huge * huge, end // huge * huge)
    _core._advise_huge_pages(buffer)
    mappings = _vma_flags(start - 4096, end)
    marked = [(first, last) for first, last, flags in mappings if "hg" in flags]
    # The whole 2 MB pages are advised (a neighbouring mapping advised alike may have merged with
    # them: contained, not equal); the buffer's head and tail outside them are not.
    assert any(first <= advised[0] and advised[1] <= last for first, last in marked), mappings
    for outside in ((start, advised[0]), (advised[1], end)):
        assert not any(first < outside[1] and last > outside[0] for first, last in marked), (outside, mappings)
    del buffer
    region.close()
