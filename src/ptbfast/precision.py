"""Numeric precision of the matrix products: "fp32", or "bf16" mixed precision.

bf16 rounds every matrix-product operand to bfloat16 (round to nearest even) and accumulates the
products in float32; parameters, cell state, gate nonlinearities, softmax, loss, gradients and
the SGD update stay float32 (the recipe of PyTorch's autocast and llm.c, with fp32 master weights,
unlike TF's --use_fp16, which kept float16 variables).

Today every CPU runs bf16 products the same way: float32 SGEMMs on the rounded operands. That is
bf16 arithmetic exactly (a product of two bf16 numbers is exact in float32), so a model trained in
bf16 here trains as it would on a matrix engine, but it is no faster: a path through the CPU's bf16
instructions (AMX, AVX512-BF16) is not built yet, and the first bf16 model says so once.
"""

from __future__ import annotations

import warnings

PRECISIONS = ("fp32", "bf16")

# bf16 / fp32 training step time, alternating rounds, on the project's machine (AMD EPYC Zen 3, no
# bf16 instructions): 0.92-1.03x with 1 thread (small and medium), 1.03-1.21x with 2 (small). The
# products are the same SGEMMs; the rounding passes and their fresh arrays cost the rest (small,
# 2 threads, bench --profile: 5.5 ms rounding + 6 ms more Python of a 96 ms step).
EMULATED_STEP_TIME = "0.92-1.21x"

_warned = False


class Bf16PerformanceWarning(UserWarning):
    """bf16 gives bf16 numerics here but no speed-up (its products run as float32 SGEMMs)."""


def cpu_matrix_features() -> list:
    """The CPU's bf16 matrix features that Linux reports (``amx_bf16``, ``avx512_bf16``), or []."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    return [name for name in ("amx_bf16", "avx512_bf16") if name in flags]
    except OSError:
        pass
    return []


def bf16_product_path() -> str:
    """How bf16 products are computed in this build, in words (``ptbfast info``)."""
    return "float32 SGEMM on bf16-rounded operands (bf16 numerics, fp32 speed or a little slower)"


def warn_if_bf16_is_emulated() -> None:
    """Says once per process that bf16 brings no speed-up here, and how its speed compares."""
    global _warned
    if _warned:
        return
    _warned = True
    features = ", ".join(cpu_matrix_features()) or "none"
    warnings.warn(f"precision='bf16': this build runs bf16 products as {bf16_product_path()}; the CPU's bf16 "
                  f"matrix features ({features}) are not used yet, so bf16 is no faster than fp32 (a bf16 "
                  f"step took {EMULATED_STEP_TIME} the time of an fp32 one where measured)",
                  Bf16PerformanceWarning, stacklevel=3)
