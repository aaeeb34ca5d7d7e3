"""``python -m ptbfast bench``: words/second of training and evaluation, and how close to the machine.

Each (config, implementation) pair runs in its own process so that peak memory is its own. A
training step is a real one (forward, backward, clipping, update, dropout when the config has it)
on synthetic ids; times are medians over steps. ``--ranks N`` measures data-parallel training
under ``mpiexec -n N`` against one process with as many threads in all, and times the step's parts.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np


class BenchError(RuntimeError):
    """A measuring subprocess failed; the message carries its stderr."""


def flops_per_word(config, train: bool = True) -> float:
    """Matrix-product FLOPs per word: LSTM gates (2·2H·4H per layer) and output (2·H·V), forward;
    training adds the backward's two products per forward one (3x)."""
    H, V, L = config.hidden_size, config.vocab_size, config.num_layers
    forward = L * 2 * (2 * H) * (4 * H) + 2 * H * V
    return 3 * forward if train else forward


def sgemm_peak_gflops(n: int = 2048, reps: int = 5) -> float:
    """GFLOP/s of an n^3 SGEMM through ptbfast's BLAS (the median of ``reps`` after one warm-up):
    the ceiling bench's GFLOP/s are compared with."""
    from ptbfast import ops
    rng = np.random.default_rng(0)
    a, b = (rng.uniform(-1, 1, (n, n)).astype(np.float32) for _ in range(2))
    c = np.zeros((n, n), np.float32)
    ops.matmul(a, b, out=c)
    seconds = []
    for _ in range(reps):
        start = time.perf_counter()
        ops.matmul(a, b, out=c)
        seconds.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(seconds) / 1e9


def _median_seconds(step, steps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def synthetic_training(config, comm=None, seed: int = 0):
    """``(rng, model, dp, x, y, state)`` for timing steps of ``config``: a fresh model, random ids
    ``x``/``y`` of its batch shape drawn from ``rng`` (which then draws the dropout masks), the
    data-parallel rows of ``comm`` (default: one process) and this rank's zero state."""
    from ptbfast.distributed import DataParallel, SingleProcess
    from ptbfast.model import LSTMLanguageModel

    rng = np.random.default_rng(seed)
    B, T, V = config.batch_size, config.num_steps, config.vocab_size
    model = LSTMLanguageModel.from_config(config)
    dp = DataParallel(comm or SingleProcess(), B, model.params, sparse_embedding=not config.tie_weights)
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    return rng, model, dp, x, y, model.initial_state(dp.rows.stop - dp.rows.start)


def step_on_synthetic_batch(config, model, dp, x, y, rng):
    """A function ``state -> state`` running one training step (:func:`ptbfast.step.training_step`,
    learning rate 0.1) on the batch ``x``/``y``; a failed step raises."""
    from ptbfast.step import training_step

    def step(state):
        outcome = training_step(model, config, dp, x, y, state, rng, 0.1)
        if outcome.failure is not None:
            raise outcome.failure
        return outcome.state
    return step


def measure_ptbfast(config, steps: int, train_only: bool = False) -> dict:
    from ptbfast.train import evaluate

    rng, model, dp, x, y, state = synthetic_training(config)
    B, T, V = config.batch_size, config.num_steps, config.vocab_size
    box = {"state": state}
    step = step_on_synthetic_batch(config, model, dp, x, y, rng)

    def train_step():
        box["state"] = step(box["state"])

    def eval_step():
        _, box["state"] = model.loss(x, y, box["state"])

    train_s = _median_seconds(train_step, steps)
    if train_only:
        return {"train_wps": B * T / train_s, "step_ms": 1e3 * train_s}
    with model.frozen():  # as evaluate() runs its losses
        eval_s = _median_seconds(eval_step, steps)
    words = rng.integers(0, V, 2001)
    start = time.perf_counter()
    evaluate(model, words, 1, 1)
    b1_s = time.perf_counter() - start
    return {"train_wps": B * T / train_s, "eval_wps": B * T / eval_s, "eval_b1_wps": 2000 / b1_s}


def measure_data_parallel(config, steps: int, comm, warmup: int = 3) -> dict:
    """The trainer's data-parallel step (this rank's rows, the exchange, the update) on synthetic
    ids, timed in parts; medians over ``steps`` as rank 0 sees them. Runs on every rank of an MPI job."""
    from ptbfast import step as step_module
    from ptbfast.profile import timed

    rng, model, dp, x, y, state = synthetic_training(config, comm)  # the same ids and masks on every rank
    B, T = config.batch_size, config.num_steps
    step = step_on_synthetic_batch(config, model, dp, x, y, rng)
    parts = {name: [] for name in ("masks", "compute", "pack", "allreduce", "gather", "update", "step")}
    seconds = dict.fromkeys(("masks", "compute", "update"), 0.0)  # summed by the wrappers
    with timed(step_module, "dropout_masks", seconds, "masks"), \
            timed(model, "loss_and_sparse_grads", seconds, "compute"), \
            timed(step_module, "apply_sgd", seconds, "update"):
        for k in range(warmup + steps):
            seconds.update(dict.fromkeys(seconds, 0.0))
            start = time.perf_counter()
            state = step(state)
            total = time.perf_counter() - start
            if k >= warmup:
                s = dp.stats
                for name, value in (*seconds.items(), ("pack", s.pack_s), ("allreduce", s.allreduce_s),
                                    ("gather", s.gather_s), ("step", total)):
                    parts[name].append(value)
    result = {f"{name}_ms": 1e3 * statistics.median(times) for name, times in parts.items()}
    result.update(train_wps=B * T / statistics.median(parts["step"]), ranks=comm.size, mpi=comm.library,
                  allreduce_alone_ms=1e3 * statistics.median(dp.allreduce_seconds(max(5, steps // 2))),
                  allreduce_bytes=dp.stats.allreduce_bytes, gather_bytes=dp.stats.gather_bytes)
    return result


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
    start = time.perf_counter()
    # TF's test pass (batch 1, one step a batch) as ptbfast's evaluate() runs it: with the state
    # carried, one call over the 2000 words computes what a call per word does. (Until 2026-12-06 it
    # made a call per word, as TF's script does, and the b1 ratio measured PyTorch's per-call overhead.)
    eval_step(words[None, :-1], words[None, 1:], zero_state(1))
    b1_s = time.perf_counter() - start
    return {"train_wps": B * T / train_s, "eval_wps": B * T / eval_s, "eval_b1_wps": 2000 / b1_s}


def _threads() -> int:
    from ptbfast import ops
    return ops.get_num_threads()


def run_one(config, steps: int, impl: str, train_only: bool = False) -> dict:
    """Measure in this process (under mpiexec: data-parallel training on every rank); the result
    includes its peak RSS (rank 0's)."""
    from ptbfast import distributed

    comm = distributed.world()
    if comm.size > 1:
        result = measure_data_parallel(config, steps, comm)
    elif impl == "torch":
        try:
            result = measure_torch(config, steps)
        except RuntimeError as e:  # (PyTorch's bf16 LSTM has no CPU primitive on some CPUs: one line, not a trace)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BenchError(f"PyTorch could not measure {config.precision} here: {first}") from e
    else:
        result = measure_ptbfast(config, steps, train_only)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["impl"] = impl
    result["threads"] = _threads()
    result["train_gflops"] = result["train_wps"] * flops_per_word(config, True) / 1e9
    if "eval_wps" in result:
        result["eval_gflops"] = result["eval_wps"] * flops_per_word(config, False) / 1e9
    return result


def torch_available() -> bool:
    # find_spec, not import: this process forks the measuring ones, and Linux carries the peak RSS
    # of a process across exec, so importing torch here would inflate every child's figure.
    import importlib.util
    return importlib.util.find_spec("torch") is not None


def _measure_child(name: str, impl: str, steps: int, args: list[str], notes: list[str], precision: str = ""):
    """``bench --config name --impl impl --json`` and ``args`` in a process of its own: its result.
    PyTorch is only the comparison: where it fails (its oneDNN LSTM has no bf16 kernel on CPUs
    without AVX512-BF16, for one), None, and why goes to ``notes``; a failing ptbfast raises."""
    cmd = [sys.executable, "-m", "ptbfast", "bench", "--config", name, "--steps", str(steps), "--impl", impl, "--json",
           *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 and impl == "torch":
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
        notes.append(f"PyTorch{' ' + precision if precision else ''} could not measure {name} "
                     f"(exit {done.returncode}): {why[:300]}")
        return None
    if done.returncode != 0:
        raise BenchError(f"measuring {name}{' in ' + precision if precision else ''} with {impl} failed "
                         f"(exit {done.returncode}):\n" + done.stderr.strip()[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_table(configs, steps: int, threads: int | None, overrides: list[str]) -> list[dict]:
    """Run every (config, impl) in a subprocess and print a table of ratios measured in this run."""
    extra = ["--threads", str(threads)] if threads else []
    impls = ["ptbfast"] + (["torch"] if torch_available() else [])
    from ptbfast import ops

    peak, bf16_peak = sgemm_peak_gflops(), ops.bf16_peak_gflops()
    rows, notes = [], []
    for name in configs:
        results = {}
        for impl in impls:
            result = _measure_child(name, impl, steps, [*extra, *overrides], notes)
            if result is not None:
                results[impl] = result
        rows.append({"config": name, "sgemm_peak_gflops": peak, "bf16_peak_gflops": bf16_peak, **results})
    _print_table(rows, impls)
    for note in dict.fromkeys(notes):
        print(note)
    return rows


def _print_table(rows, impls) -> None:
    head = (f"{'config':<8} {'train wps':>10} {'eval wps':>10} {'b1 eval wps':>11} {'GFLOP/s':>8} "
            f"{'% peak':>6} {'eval %':>6} {'RSS MB':>7}")
    if "torch" in impls:
        head += f" | {'torch train':>11} {'torch eval':>10} {'torch b1':>8} {'torch RSS':>9} | {'train x':>7} {'eval x':>6} {'b1 x':>6}"
    print(head)
    for r in rows:
        p = r["ptbfast"]
        line = (f"{r['config']:<8} {p['train_wps']:>10.0f} {p['eval_wps']:>10.0f} {p['eval_b1_wps']:>11.0f} "
                f"{p['train_gflops']:>8.1f} {100 * p['train_gflops'] / r['sgemm_peak_gflops']:>5.0f}% "
                f"{100 * p['eval_gflops'] / r['sgemm_peak_gflops']:>5.0f}% {p['peak_rss_mb']:>7.0f}")
        if "torch" in r:
            t = r["torch"]
            line += (f" | {t['train_wps']:>11.0f} {t['eval_wps']:>10.0f} {t['eval_b1_wps']:>8.0f} {t['peak_rss_mb']:>9.0f}"
                     f" | {p['train_wps'] / t['train_wps']:>6.2f}x {p['eval_wps'] / t['eval_wps']:>5.2f}x"
                     f" {p['eval_b1_wps'] / t['eval_b1_wps']:>5.2f}x")
        print(line)
    print(f"sgemm 2048^3 peak through ptbfast's BLAS: {rows[0]['sgemm_peak_gflops']:.0f} GFLOP/s; bf16 "
          "instruction peak (TDPBF16PS where AMX is usable, else VDPBF16PS): "
          + (f"{rows[0]['bf16_peak_gflops']:.0f} GFLOP/s" if rows[0]["bf16_peak_gflops"]
             else "none (the CPU has neither AMX-BF16 nor AVX512-BF16)"))


# ---- bf16 against fp32: bench --precisions --repeat K ---------------------------------------------------

PRECISION_RUNS = [("ptbfast", "fp32"), ("ptbfast", "bf16"), ("torch", "fp32"), ("torch", "bf16")]


def run_precision_rounds(configs, steps: int, repeat: int, threads: int | None, overrides: list[str]) -> list[dict]:
    """ptbfast and PyTorch (when installed) in fp32 and bf16, each in its own process, the four
    alternated ``repeat`` times per config; prints each round's words/s and ratios (bf16 against
    fp32, ptbfast against PyTorch in the same precision) and their medians. Ratios are taken within
    a round, so a slower or faster machine between rounds moves both sides."""
    extra = ["--threads", str(threads)] if threads else []
    runs = [r for r in PRECISION_RUNS if r[0] == "ptbfast" or torch_available()]
    rows, notes = [], []
    for name in configs:
        for round_ in range(1, repeat + 1):
            row = {"config": name, "round": round_}
            for impl, precision in runs:
                result = _measure_child(name, impl, steps, [*extra, *overrides, "--precision", precision], notes,
                                        precision)
                if result is not None:
                    row[f"{impl} {precision}"] = result
            row.update(_precision_ratios(row))
            rows.append(row)
    _print_precision_rounds(rows)
    for note in dict.fromkeys(notes):
        print(note)
    return rows


def _precision_ratios(row) -> dict:
    """Within one round: bf16 / fp32 (ptbfast), and ptbfast / PyTorch in each precision, train and eval."""
    pairs = {"bf16/fp32": ("ptbfast bf16", "ptbfast fp32"), "vs torch bf16": ("ptbfast bf16", "torch bf16"),
             "vs torch fp32": ("ptbfast fp32", "torch fp32")}
    return {f"{label} {kind}": row[a][f"{kind}_wps"] / row[b][f"{kind}_wps"]
            for label, (a, b) in pairs.items() if a in row and b in row for kind in ("train", "eval")}


def _print_precision_rounds(rows) -> None:
    # (the union over rows: PyTorch may have failed for some configs or rounds and not others)
    ratios = list(dict.fromkeys(k for r in rows for k in r if k.endswith((" train", " eval"))))
    runs = [f"{i} {p}" for i, p in PRECISION_RUNS if any(f"{i} {p}" in r for r in rows)]
    width = max([18] + [len(k) for k in ratios])
    print(f"{'config':<8} {'round':>6} " + " ".join(f"{r + ' train/eval':>26}" for r in runs)
          + " | " + " ".join(f"{k:>{width}}" for k in ratios) + " | RSS MB fp32/bf16")
    ratio = lambda value: f"{value:>{width - 1}.2f}x" if value is not None else f"{'-':>{width}}"  # noqa: E731
    for name in dict.fromkeys(r["config"] for r in rows):
        mine = [r for r in rows if r["config"] == name]
        for r in mine:
            cells = " ".join(f"{r[run]['train_wps']:>12,.0f} / {r[run]['eval_wps']:>9,.0f}" if run in r else f"{'-':>26}"
                             for run in runs)
            rss = "/".join(f"{r[f'ptbfast {p}']['peak_rss_mb']:.0f}" for p in ("fp32", "bf16"))
            print(f"{name:<8} {r['round']:>6} {cells} | " + " ".join(ratio(r.get(k)) for k in ratios) + f" | {rss}")
        medians = [statistics.median(values) if (values := [r[k] for r in mine if k in r]) else None for k in ratios]
        print(f"{name:<8} {'median':>6} {'':>{27 * len(runs) - 1}} | " + " ".join(ratio(m) for m in medians))
    print("words/s, medians over steps; ratios within each round (bf16/fp32: ptbfast's bf16 against its fp32; vs "
          "torch: ptbfast against PyTorch in the same precision, bf16 by autocast).")


# ---- data-parallel: bench --ranks N ------------------------------------------------------------------

def run_ranks_table(configs, steps: int, ranks: int, threads: int | None, overrides: list[str],
                    repeat: int = 1) -> list[dict]:
    """Train words/s of ``mpiexec -n ranks`` (``threads`` each; default: cores / ranks, at most
    OMP_THREAD_LIMIT) against one process with ``ranks * threads`` threads, the two alternated
    ``repeat`` times; medians."""
    from ptbfast import distributed, ops

    threads = threads or ops.threads_within_limit(max(1, (os.cpu_count() or 1) // ranks))
    reason = ops.fewer_threads_reason(ranks * threads)  # (the children's own warnings are not shown)
    if reason:
        warnings.warn(f"the one-process run's {ranks * threads} threads asked for, but {reason}", RuntimeWarning,
                      stacklevel=2)
    rows = []
    for name in configs:
        base = [sys.executable, "-m", "ptbfast", "bench", "--config", name, "--steps", str(steps), "--json", *overrides]
        one, many = [], []
        for _ in range(repeat):
            one.append(_measure(base + ["--threads", str(ranks * threads), "--train-only"], name))
            many.append(_measure(distributed.mpiexec_command(ranks, base + ["--threads", str(threads)]), name))
        row = {key: statistics.median(r[key] for r in many) for key in many[0] if key.endswith(("_ms", "_wps"))}
        row.update(config=name, ranks=ranks, threads=threads, one_process_wps=statistics.median(r["train_wps"] for r in one),
                   allreduce_bytes=many[0]["allreduce_bytes"], gather_bytes=many[0]["gather_bytes"], mpi=many[0]["mpi"],
                   one_process_runs=[r["train_wps"] for r in one], ranks_runs=[r["train_wps"] for r in many])
        rows.append(row)
    _print_ranks_table(rows, repeat)
    return rows


def _measure(cmd, name) -> dict:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"measuring {name} ({' '.join(cmd[:3])} ...) failed (exit {done.returncode}):\n"
                         + (done.stderr or done.stdout).strip()[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def _print_ranks_table(rows, repeat: int) -> None:
    r0 = rows[0]
    one, many = f"1 x {r0['ranks'] * r0['threads']} threads", f"{r0['ranks']} ranks x {r0['threads']}"
    print(f"{'config':<8} {one + ' wps':>18} {many + ' wps':>18} {'ratio':>6} | ms per step: {'masks':>6} {'compute':>8} "
          f"{'pack':>6} {'allreduce':>9} {'alone':>6} {'gather':>7} {'update':>7} {'step':>7} | {'MB':>6}")
    for r in rows:
        mb = (r["allreduce_bytes"] + r["gather_bytes"]) / 1e6
        print(f"{r['config']:<8} {r['one_process_wps']:>18.0f} {r['train_wps']:>18.0f} "
              f"{r['train_wps'] / r['one_process_wps']:>5.2f}x | {'':>12} {r['masks_ms']:>6.1f} {r['compute_ms']:>8.1f} "
              f"{r['pack_ms']:>6.1f} {r['allreduce_ms']:>9.1f} {r['allreduce_alone_ms']:>6.1f} {r['gather_ms']:>7.1f} "
              f"{r['update_ms']:>7.1f} {r['step_ms']:>7.1f} | {mb:>6.2f}")
    print(f"{r0['mpi']}; medians of {repeat} alternating run(s). Per rank and step: compute = forward and backward "
          "of its rows; allreduce = the flat gradient buffer, including any wait for the slower rank (alone: the "
          "same allreduce back to back); gather = the embedding's token rows; MB = bytes this rank sends into the "
          "two collectives.")
