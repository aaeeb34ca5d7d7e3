"""Numeric precision of the matrix products: "fp32", or "bf16" mixed precision.

bf16 rounds every matrix-product operand to bfloat16 (round to nearest even) and accumulates the
products in float32; parameters, cell state, gate nonlinearities, softmax, loss, gradients and
the SGD update stay float32 (the recipe of PyTorch's autocast and llm.c, with fp32 master weights,
unlike TF's --use_fp16, which kept float16 variables).

Where the products run is the bf16 GEMM table's choice (src/cpp/gemm/bf16/; ``ptbfast info`` says
it): from 128 rows ptbfast's AMX kernel where the CPU has AMX, else MKL's bf16 GEMM where an Intel
CPU has AVX512-BF16 and K >= 400, else ptbfast's AVX512-BF16 kernel where another CPU has that
instruction (AMX's or AVX512-BF16's kernel also runs the LSTM's recurrent products, their weights
packed once for all steps); float32 SGEMMs on the rounded operands everywhere else.
All are bf16 arithmetic (a product of two bf16 numbers is exact in float32, and all accumulate in
float32), so a model trains the same on any, up to the order of the sums (and the bf16
instructions' flushing of denormals to zero).
The first bf16 model of a process says once how its speed compares with fp32 here
(Bf16PerformanceWarning).
"""

from __future__ import annotations

import warnings

PRECISIONS = ("fp32", "bf16")

# bf16 / fp32 training step time where products are SGEMMs, alternating rounds on an AMD EPYC
# Zen 3 (family 25 model 1, no bf16 instructions; bench --json): small 1.10-1.13x with 1 thread and
# 1.00-1.40x with 2 (noisy), medium 1.05-1.13x with 2. The products are the same SGEMMs; rounding
# the weights piece by piece (for memory) and the operands costs the rest (bench --profile).
EMULATED_STEP_TIME = "1.0-1.4x"
# python -m ptbfast bench --precisions --repeat 3 (2 threads), bf16 against fp32 per round on an Intel
# Xeon with AMX (family 6 model 167; docs/performance.md, 2026-12-06, commit 167d50e), products on
# ptbfast's AMX kernel, evaluation on weights packed once (model.frozen()).
MEASURED_ON_AMX_XEON = "small 1.75-1.89x (train) / 1.81-1.90x (eval), medium 2.47-2.58x / 2.92-3.16x"

_warned = False


class Bf16PerformanceWarning(UserWarning):
    """bf16 gives bf16 numerics here, but no speed-up (its products run as float32 SGEMMs), or one
    ptbfast has measured on another CPU only."""


def warn_about_bf16_speed() -> None:
    """Says once per process how bf16's speed compares with fp32's here: no faster where its
    products run as float32 SGEMMs; as measured on an AMX Xeon where they run on the CPU's bf16
    instructions."""
    global _warned
    if _warned:
        return
    _warned = True
    from ptbfast import ops
    info = ops.build_info()
    features = ", ".join(info["cpu_matrix_features"])
    if ops.bf16_products() == "generic":
        message = (f"precision='bf16': products run as {info['bf16_products']}: plain C++ for tests, far slower "
                   f"than fp32 (PTBFAST_BF16_PRODUCTS=auto for speed)")
    elif ops.bf16_products() == "mkl" and not info["bf16_instructions"]:
        message = (f"precision='bf16': products run as {info['bf16_products']}, which MKL emulates on this CPU "
                   f"(bf16 features: {features}): expect it to be slower than fp32 (not measured by ptbfast)")
    elif info["bf16_instructions"]:
        message = (f"precision='bf16': products run as {info['bf16_products']}. Measured on an Intel Xeon with "
                   f"AMX (family 6 model 167, 2 threads): bf16 ran {MEASURED_ON_AMX_XEON} fp32's words/s. This "
                   f"CPU has {features}: to see its own speed-up, compare `python -m ptbfast bench --config small "
                   f"--precision bf16` with fp32, and set PTBFAST_BF16_PRODUCTS=sgemm if it is slower")
    else:
        # (bf16_products already says which bf16 instructions are not used, and why)
        message = (f"precision='bf16': products run as {info['bf16_products']}; so bf16 is no faster than fp32 "
                   f"here (a bf16 step took {EMULATED_STEP_TIME} the time of an fp32 one where measured)")
    warnings.warn(message, Bf16PerformanceWarning, stacklevel=3)
