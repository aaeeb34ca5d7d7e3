"""``python -m ptbfast bench``: words/second of training and evaluation, and how close to the machine.

Each (config, implementation) pair runs in its own process so that peak memory is its own. A
training step is a real one (forward, backward, clipping, update, dropout when the config has it)
on synthetic ids; times are medians over steps.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np


class BenchError(RuntimeError):
    """A measuring subprocess failed; the message carries its stderr."""


def flops_per_word(config, train: bool = True) -> float:
    """Matrix-product FLOPs per word: LSTM gates (2·2H·4H per layer) and output (2·H·V), forward;
    training adds the backward's two products per forward one (3x)."""
    H, V, L = config.hidden_size, config.vocab_size, config.num_layers
    forward = L * 2 * (2 * H) * (4 * H) + 2 * H * V
    return 3 * forward if train else forward


def sgemm_peak_gflops() -> float:
    from ptbfast import ops
    n = 2048
    return 2 * n**3 / ops.sgemm_seconds(n, n, n, 5) / 1e9


def _median_seconds(step, steps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_ptbfast(config, steps: int) -> dict:
    from ptbfast.model import LSTMLanguageModel
    from ptbfast.sgd import apply_sgd
    from ptbfast.train import dropout_masks, evaluate

    rng = np.random.default_rng(0)
    B, T, V = config.batch_size, config.num_steps, config.vocab_size
    model = LSTMLanguageModel(V, config.hidden_size, config.num_layers, config.forget_bias, config.init_scale,
                              tie_weights=config.tie_weights, precision=config.precision)
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    box = {"state": model.initial_state(B)}
    mask_shape = (T, B, config.hidden_size)

    def train_step():
        masks = dropout_masks(rng, config.num_layers + 1, mask_shape, config.keep_prob)
        _, grads, box["state"] = model.loss_and_sparse_grads(x, y, box["state"], masks)
        apply_sgd(model.params, grads, 0.1, config.max_grad_norm, config.grad_norm)

    def eval_step():
        _, box["state"] = model.loss(x, y, box["state"])

    train_s = _median_seconds(train_step, steps)
    eval_s = _median_seconds(eval_step, steps)
    words = rng.integers(0, V, 2001)
    start = time.perf_counter()
    evaluate(model, words, 1, 1)
    b1_s = time.perf_counter() - start
    return {"train_wps": B * T / train_s, "eval_wps": B * T / eval_s, "eval_b1_wps": 2000 / b1_s}


def measure_torch(config, steps: int) -> dict:
    import torch

    from ptbfast.torch_baseline import make_torch_trainer

    torch.set_num_threads(_threads())
    rng = np.random.default_rng(0)
    B, T, V = config.batch_size, config.num_steps, config.vocab_size
    train_step, eval_step, zero_state = make_torch_trainer(config)
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    box = {"state": zero_state(B)}

    def train():
        _, box["state"] = train_step(x, y, box["state"], 0.1)

    def evaluate():
        _, box["state"] = eval_step(x, y, box["state"])

    train_s = _median_seconds(train, steps)
    eval_s = _median_seconds(evaluate, steps)
    words = rng.integers(0, V, 2001)
    state = zero_state(1)
    start = time.perf_counter()
    for k in range(2000):  # TF's test pass: batch 1, one step per call
        _, state = eval_step(words[None, k:k + 1], words[None, k + 1:k + 2], state)
    b1_s = time.perf_counter() - start
    return {"train_wps": B * T / train_s, "eval_wps": B * T / eval_s, "eval_b1_wps": 2000 / b1_s}


def _threads() -> int:
    from ptbfast import ops
    return ops.get_num_threads()


def run_one(config, steps: int, impl: str) -> dict:
    """Measure in this process; the result includes its peak RSS."""
    result = measure_torch(config, steps) if impl == "torch" else measure_ptbfast(config, steps)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["impl"] = impl
    result["threads"] = _threads()
    result["train_gflops"] = result["train_wps"] * flops_per_word(config, True) / 1e9
    result["eval_gflops"] = result["eval_wps"] * flops_per_word(config, False) / 1e9
    return result


def torch_available() -> bool:
    # find_spec, not import: this process forks the measuring ones, and Linux carries the peak RSS
    # of a process across exec, so importing torch here would inflate every child's figure.
    import importlib.util
    return importlib.util.find_spec("torch") is not None


def run_table(configs, steps: int, threads: int | None, overrides: list[str]) -> list[dict]:
    """Run every (config, impl) in a subprocess and print a table of ratios measured in this run."""
    extra = ["--threads", str(threads)] if threads else []
    impls = ["ptbfast"] + (["torch"] if torch_available() else [])
    peak = sgemm_peak_gflops()
    rows = []
    for name in configs:
        results = {}
        for impl in impls:
            cmd = [sys.executable, "-m", "ptbfast", "bench", "--config", name, "--steps", str(steps), "--impl", impl,
                   "--json", *extra, *overrides]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise BenchError(f"measuring {name} with {impl} failed (exit {done.returncode}):\n"
                                   + done.stderr.strip()[-2000:])
            results[impl] = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append({"config": name, "sgemm_peak_gflops": peak, **results})
    _print_table(rows, impls)
    return rows


def _print_table(rows, impls) -> None:
    head = (f"{'config':<8} {'train wps':>10} {'eval wps':>10} {'b1 eval wps':>11} {'GFLOP/s':>8} "
            f"{'% peak':>6} {'RSS MB':>7}")
    if "torch" in impls:
        head += f" | {'torch train':>11} {'torch eval':>10} {'torch b1':>8} {'torch RSS':>9} | {'train x':>7} {'eval x':>6} {'b1 x':>6}"
    print(head)
    for r in rows:
        p = r["ptbfast"]
        line = (f"{r['config']:<8} {p['train_wps']:>10.0f} {p['eval_wps']:>10.0f} {p['eval_b1_wps']:>11.0f} "
                f"{p['train_gflops']:>8.1f} {100 * p['train_gflops'] / r['sgemm_peak_gflops']:>5.0f}% "
                f"{p['peak_rss_mb']:>7.0f}")
        if "torch" in r:
            t = r["torch"]
            line += (f" | {t['train_wps']:>11.0f} {t['eval_wps']:>10.0f} {t['eval_b1_wps']:>8.0f} {t['peak_rss_mb']:>9.0f}"
                     f" | {p['train_wps'] / t['train_wps']:>6.2f}x {p['eval_wps'] / t['eval_wps']:>5.2f}x"
                     f" {p['eval_b1_wps'] / t['eval_b1_wps']:>5.2f}x")
        print(line)
    print(f"sgemm 2048^3 peak through ptbfast's BLAS: {rows[0]['sgemm_peak_gflops']:.0f} GFLOP/s")
