"""Data-parallel training over MPI (``mpiexec -n 2 python -m ptbfast train``).

* without MPI: how a run knows it is distributed, that a plain run never imports mpi4py, the
  missing-mpi4py error, and the data-parallel math in one process (row blocks, gradient scaling,
  the gathered embedding rows' order);
* with mpi4py and an mpiexec (``pip install '.[mpi]'``: the MPICH wheel; skipped otherwise): two
  ranks against one process (parameters to 1e-5 after 20 steps with dropout, 1e-4 after an epoch
  of the test config on 3,000 lines of PTB), resume across rank counts, rank 0 alone writing, and
  faults: SIGKILL of either rank, SIGINT/SIGTERM/SIGUSR1 to mpiexec, a NaN or an exception on one
  rank. PTBFAST_MPIEXEC picks another MPI's mpiexec (Open MPI: SIGUSR1 only, see docs/scaling.md).

Runs are tiny (the synthetic corpus, or slices of PTB with PTBFAST_DATA), one thread per rank.
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ptbfast import checkpoint, distributed
from ptbfast.distributed import DataParallel, DistributedError, launcher_world, wants_mpi
from ptbfast.model import LSTMLanguageModel

from helpers import max_rel_error
from synthetic_corpus import write_corpus

HERE = Path(__file__).parent
PTB = os.environ.get("PTBFAST_DATA")
MPIEXEC = distributed.find_mpiexec()
HAVE_MPI = importlib.util.find_spec("mpi4py") is not None and MPIEXEC is not None
if not HAVE_MPI and os.environ.get("PTBFAST_REQUIRE_MPI"):  # CI: the MPI tests must run, not skip
    raise RuntimeError("PTBFAST_REQUIRE_MPI is set but mpi4py or mpiexec is missing: pip install '.[mpi]'")
needs_mpi = pytest.mark.skipif(not HAVE_MPI, reason="needs mpi4py and mpiexec: pip install 'ptbfast[mpi]'")
needs_ptb = pytest.mark.skipif(not PTB, reason="set PTBFAST_DATA to a directory holding ptb.{train,valid,test}.txt")

# The synthetic corpus (30 words) at the tiny size: an epoch is ~180 batches of 4 x 5. Learning rate
# 0.5, not the 1.0 of the other tests' tiny config: at 1.0 two epochs are chaotic (a 1e-7 nudge of the
# initial weights moves the parameters by 0.4), at 0.5 the nudge moves them by 7e-7, so runs that
# should agree can be compared at 1e-5.
TINY = ["--config", "small", "--vocab-size", "30", "--hidden-size", "8", "--num-steps", "5", "--batch-size", "4",
        "--init-scale", "0.3", "--learning-rate", "0.5", "--max-epoch", "1", "--no-progress", "--threads", "1"]
LAUNCH_TIMEOUT = 120
LONG_RUN = 12  # epochs of TINY: long enough to signal or kill a job in epoch 1 or 2, short enough to resume


# ---- running the command line, as one process or as ranks --------------------------------------------

def clean_env(**changes):
    """This environment without any MPI launcher's variables (pytest may itself run under one)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "PMIX_", "OMPI_", "MV2_", "HYDRA_", "MPI_LOCAL"))}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("PYTHONWARNINGS", None)  # (the tests read the warnings a run prints)
    env.update({k: str(v) for k, v in changes.items()})
    return env


def command(args, ranks=1, worker=None):
    """``python -m ptbfast train args`` (or the fault worker), under ``mpiexec -n ranks`` if ranks > 1."""
    argv = [sys.executable, *([str(HERE / "mpi_train_worker.py"), *worker] if worker else ["-m", "ptbfast", "train"]),
            *map(str, args)]
    return distributed.mpiexec_command(ranks, argv, MPIEXEC) if ranks > 1 else argv


def train(args, ranks=1, worker=None, env=None, timeout=LAUNCH_TIMEOUT):
    return subprocess.run(command(args, ranks, worker), env=env or clean_env(), capture_output=True, text=True,
                          timeout=timeout)


def params(save_path):
    return checkpoint.load(Path(save_path) / "checkpoint.npz")[0]


def worst_error(actual: dict, expected: dict) -> float:
    """The largest per-tensor max-norm relative error."""
    assert actual.keys() == expected.keys()
    return max(max_rel_error(actual[name], expected[name]) for name in expected)


def metrics(save_path):
    return [json.loads(line) for line in (Path(save_path) / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def ptb_slice(directory: Path, train_tokens=None, train_lines=None, other_lines=100) -> Path:
    """The first lines of PTB's files: ``train_lines`` lines, or as many as give at least
    ``train_tokens`` tokens (words plus one <eos> per line)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = Path(PTB, "ptb.train.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    if train_lines is None:
        count, train_lines = 0, 0
        while count < train_tokens:
            count += len(lines[train_lines].split()) + 1
            train_lines += 1
    (directory / "ptb.train.txt").write_text("".join(lines[:train_lines]), encoding="utf-8")
    for split in ("valid", "test"):
        text = Path(PTB, f"ptb.{split}.txt").read_text(encoding="utf-8").splitlines(keepends=True)
        (directory / f"ptb.{split}.txt").write_text("".join(text[:other_lines]), encoding="utf-8")
    return directory


# ---- how a run knows it is distributed (no MPI needed) -------------------------------------------

@pytest.mark.parametrize("env, world", [
    ({}, None),
    ({"PMI_SIZE": "2", "PMI_RANK": "1"}, (2, 1)),                       # MPICH / Intel MPI (Hydra)
    ({"OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "3"}, (4, 3)),  # Open MPI
    ({"MV2_COMM_WORLD_SIZE": "2", "MV2_COMM_WORLD_RANK": "0"}, (2, 0)),  # MVAPICH
    ({"PMIX_RANK": "1", "SLURM_STEP_NUM_TASKS": "8"}, (8, 1)),          # srun --mpi=pmix
    ({"PMIX_RANK": "0"}, (None, 0)),
])
def test_launcher_world_reads_each_launchers_variables(env, world):
    assert launcher_world(env) == world


def test_one_rank_or_no_launcher_is_a_plain_run():
    assert not wants_mpi({})
    assert not wants_mpi({"PMI_SIZE": "1", "PMI_RANK": "0"})  # mpiexec -n 1
    assert wants_mpi({"PMI_SIZE": "2", "PMI_RANK": "0"})
    assert not wants_mpi({"PMI_SIZE": "2", "PMI_RANK": "0", "PTBFAST_MPI": "0"})
    assert wants_mpi({"PTBFAST_MPI": "1"})


def test_plain_run_never_imports_mpi4py(tiny_data, tmp_path):
    code = ("import sys; from ptbfast.__main__ import main; "
            f"code = main({['train', '--data-path', str(tiny_data), '--max-epochs', '1', *TINY]!r}); "
            "assert 'mpi4py' not in sys.modules, 'mpi4py was imported'; sys.exit(code)")
    for env in (clean_env(), clean_env(PMI_SIZE=1, PMI_RANK=0)):  # plain, and mpiexec -n 1
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "Test Perplexity" in done.stdout


def test_ranks_without_mpi4py_is_a_clear_error(tiny_data, tmp_path):
    blocker = tmp_path / "no_mpi4py" / "mpi4py"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError(\"No module named 'mpi4py'\")\n")
    path = os.pathsep.join([str(blocker.parent), os.environ.get("PYTHONPATH", "")])
    env = clean_env(PMI_SIZE=2, PMI_RANK=1, PYTHONPATH=path)  # what rank 1 of mpiexec -n 2 sees
    done = subprocess.run(command(["--data-path", tiny_data, "--save-path", tmp_path / "run", *TINY]), env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "launched by mpiexec with 2 ranks but mpi4py is not installed: pip install 'ptbfast[mpi]'" in done.stderr
    assert not (tmp_path / "run").exists()


# ---- the data-parallel math, in one process --------------------------------------------------------

class StubComm:
    """Rank ``rank`` of ``size``; its allgatherv returns what the test put in ``gathered``."""

    def __init__(self, rank, size):
        self.rank, self.size, self.is_root, self.local_size = rank, size, rank == 0, 1
        self.gathered = None

    def allgatherv(self, block, counts):
        return self.gathered


def test_default_threads_share_the_cores_within_openmps_limit(monkeypatch):
    from types import SimpleNamespace

    from ptbfast import ops

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    cores = os.cpu_count() or 1
    one_rank, many_ranks = SimpleNamespace(local_size=1), SimpleNamespace(local_size=cores + 1)
    assert distributed.default_threads(many_ranks) == 1
    info = ops.build_info()
    monkeypatch.setattr(ops, "build_info", lambda: dict(info, openmp_thread_limit=0))  # (0: no limit)
    assert distributed.default_threads(one_rank) == min(usable, cores)
    monkeypatch.setattr(ops, "build_info", lambda: dict(info, openmp_thread_limit=1))  # (OMP_THREAD_LIMIT=1)
    assert distributed.default_threads(one_rank) == 1


def test_batch_rows_are_split_in_contiguous_blocks():
    model = LSTMLanguageModel(11, 4, 1)
    assert [DataParallel(StubComm(r, 4), 20, model.params).rows for r in range(4)] == [
        slice(0, 5), slice(5, 10), slice(10, 15), slice(15, 20)]
    with pytest.raises(DistributedError, match="batch_size 20 cannot be split over 3 ranks"):
        DataParallel(StubComm(0, 3), 20, model.params)


def test_rank_gradients_sum_to_the_one_process_gradient_and_rows_come_back_in_order():
    rng = np.random.default_rng(0)
    V, H, B, T = 13, 6, 4, 5
    model = LSTMLanguageModel(V, H, 2, init_scale=0.3, seed=1)
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    masks = [(rng.random((T, B, H)) < 0.5).astype(np.float32) * 2 for _ in range(3)]
    state = model.initial_state(B)
    cost, grads, _ = model.loss_and_sparse_grads(x, y, state, masks)
    parts = []
    for rank in range(2):
        dp = DataParallel(StubComm(rank, 2), B, model.params)
        local_state = dp.local_state(state)
        parts.append((dp, model.loss_and_sparse_grads(dp.local(x), dp.local(y), local_state, dp.local_masks(masks),
                                                      total_batch=B)))
    assert abs(parts[0][1][0] + parts[1][1][0] - cost) <= 1e-6 * cost
    for name in grads:
        if name != "embedding":
            assert max_rel_error(parts[0][1][1][name] + parts[1][1][1][name], grads[name]) < 1e-5
    dp = parts[0][0]
    dp.comm.gathered = np.concatenate([part[1][1]["embedding"].values for part in parts])
    merged = dp._gather_embedding_rows(parts[0][1][1]["embedding"], x)
    np.testing.assert_array_equal(merged.indices, grads["embedding"].indices)
    assert max_rel_error(merged.values, grads["embedding"].values) < 1e-5


class MirrorComm(StubComm):
    """Rank 0 of 2 whose other rank sends what this one sends: every sum is twice this rank's."""

    def allreduce_sum(self, buffer):
        buffer *= 2

    def allgatherv(self, block, counts):
        return np.concatenate([block, block])


@pytest.mark.parametrize("tie_weights", [False, True])
def test_exchange_returns_every_gradient_summed_over_the_ranks(tie_weights):
    # Tied weights make the embedding's gradient dense: it is summed in the flat buffer with the
    # others (it was replaced by this rank's own, so ranks applied different updates and drifted).
    rng = np.random.default_rng(2)
    V, H, B, T = 13, 6, 4, 5
    model = LSTMLanguageModel(V, H, 2, init_scale=0.3, seed=1, tie_weights=tie_weights)
    dp = DataParallel(MirrorComm(0, 2), B, model.params, sparse_embedding=not tie_weights)
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    cost, grads, _ = model.loss_and_sparse_grads(dp.local(x), dp.local(y), dp.local_state(model.initial_state(B)),
                                                 None, total_batch=B)
    result = dp.exchange(cost, grads, x, None, None)
    assert result.failure is None and result.cost == pytest.approx(2 * cost, rel=1e-6)
    assert result.grads.keys() == grads.keys()
    for name, g in grads.items():
        if isinstance(g, np.ndarray):
            np.testing.assert_array_equal(result.grads[name], 2 * g, err_msg=name)
    assert isinstance(result.grads["embedding"], np.ndarray) == tie_weights
    if not tie_weights:  # (rows of both ranks, interleaved back into the full batch's order)
        assert len(result.grads["embedding"].values) == 2 * len(grads["embedding"].values)


def test_one_process_data_parallel_returns_its_inputs():
    model = LSTMLanguageModel(11, 4, 1)
    dp = DataParallel(distributed.SingleProcess(), 3, model.params)
    x = np.arange(6).reshape(3, 2)
    assert dp.local(x) is x and dp.local_masks(None) is None
    result = dp.exchange(1.5, {"g": 1}, x, None, None)
    assert (result.cost, result.grads, result.failure, result.signal) == (1.5, {"g": 1}, None, None)


# ---- two ranks against one process ----------------------------------------------------------------------

@needs_mpi
@needs_ptb
def test_twenty_steps_with_dropout_match_one_process(tmp_path):
    # small's shapes with dropout; 20 batches of 20 x 20 (8,020 tokens), then valid and test. At TF's
    # learning rate 1.0 these first steps are chaotic (gradient norms of 60-70 clipped to 5): one
    # process with 1 or 2 threads already differs by up to 6e-5 after 20 steps. At 0.25 the thread
    # counts agree to ~5e-7, so 1e-5 leaves room for rounding only, and any real error (a wrong row of
    # a mask, a wrong scale, embedding rows out of order) is orders of magnitude above it.
    data = ptb_slice(tmp_path / "data", train_tokens=20 * (20 * 20 + 1), other_lines=40)
    args = ["--config", "small", "--keep-prob", "0.5", "--learning-rate", "0.25", "--max-epochs", "1",
            "--no-progress", "--threads", "1", "--checkpoint-every", "0", "--data-path", data]
    one = train([*args, "--save-path", tmp_path / "one"])
    two = train([*args, "--save-path", tmp_path / "two"], ranks=2)
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("Epoch: 1 Train Perplexity") == 1  # rank 0 alone logs
    assert worst_error(params(tmp_path / "two"), params(tmp_path / "one")) < 1e-5
    for key in ("train_perplexity", "valid_perplexity"):
        assert metrics(tmp_path / "two")[0][key] == pytest.approx(metrics(tmp_path / "one")[0][key], rel=1e-5)


@needs_mpi
@needs_ptb
@pytest.mark.slow
def test_an_epoch_of_the_test_config_matches_one_process(tmp_path):
    data = ptb_slice(tmp_path / "data", train_lines=3000, other_lines=300)
    args = ["--config", "test", "--no-progress", "--threads", "1", "--checkpoint-every", "0", "--data-path", data]
    one = train([*args, "--save-path", tmp_path / "one"])
    two = train([*args, "--save-path", tmp_path / "two"], ranks=2)
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    assert worst_error(params(tmp_path / "two"), params(tmp_path / "one")) < 1e-4
    (one_valid, one_test), (two_valid, two_test) = ([m[0]["valid_perplexity"], m[1]["test_perplexity"]]
                                                    for m in (metrics(tmp_path / "one"), metrics(tmp_path / "two")))
    assert two_valid == pytest.approx(one_valid, rel=1e-4)
    assert two_test == pytest.approx(one_test, rel=1e-4)


@needs_mpi
def test_tied_weights_on_two_ranks_match_one_process(tiny_data, tmp_path):
    # An epoch of TINY with tied weights: each rank applied its own half of the embedding's (also
    # the output layer's) gradient, and the ranks were 0.03-0.05 apart after 3 steps.
    args = [*TINY, "--tie-weights", "--data-path", tiny_data, "--max-epochs", "1", "--checkpoint-every", "0"]
    for ranks in (1, 2):
        done = train([*args, "--save-path", tmp_path / f"ranks{ranks}"], ranks=ranks)
        assert done.returncode == 0, done.stderr
    assert worst_error(params(tmp_path / "ranks2"), params(tmp_path / "ranks1")) < 1e-5


@needs_mpi
def test_resume_across_rank_counts(tiny_data, tmp_path):
    """A mid-epoch checkpoint (kept as checkpoint.npz.prev by the epoch-end one) resumed with the
    other number of ranks ends where an uninterrupted one-process run ends."""
    args = [*TINY, "--data-path", tiny_data, "--max-epochs", "2", "--checkpoint-every", "60"]
    for ranks in (1, 2):
        done = train([*args, "--save-path", tmp_path / f"ranks{ranks}"], ranks=ranks)
        assert done.returncode == 0, done.stderr
    expected = params(tmp_path / "ranks1")
    assert worst_error(params(tmp_path / "ranks2"), expected) < 1e-5
    assert [m.get("epoch") for m in metrics(tmp_path / "ranks2")] == [1, 2, None]  # rank 0 alone wrote it
    for ranks_before, ranks_after in ((1, 2), (2, 1)):
        resumed = tmp_path / f"resumed{ranks_before}to{ranks_after}"
        resumed.mkdir()
        # The epoch-end checkpoint kept the last mid-epoch one (epoch 2, step 120) as .prev.
        middle = checkpoint.previous_path(tmp_path / f"ranks{ranks_before}" / "checkpoint.npz")
        (resumed / "checkpoint.npz").write_bytes(middle.read_bytes())
        position = checkpoint.load(resumed / "checkpoint.npz")[1]["position"]
        assert position["step"] > 0
        done = train([*args, "--save-path", resumed, "--resume"], ranks=ranks_after)
        assert done.returncode == 0, done.stderr
        assert f"at epoch {position['epoch'] + 1}, step {position['step']}" in done.stdout
        assert worst_error(params(resumed), expected) < 1e-5


@needs_mpi
def test_a_launcher_whose_ranks_mpi4py_does_not_see_is_an_error(tiny_data, tmp_path):
    # mpiexec of one MPI, mpi4py built on another: each process finds itself alone in MPI_COMM_WORLD
    # (it trained alone, and N of them wrote one save path). Open MPI's variables, MPICH's mpi4py.
    env = clean_env(OMPI_COMM_WORLD_SIZE=2, OMPI_COMM_WORLD_RANK=0, PYTHONWARNINGS="ignore")
    done = train([*TINY, "--data-path", tiny_data, "--save-path", tmp_path / "run", "--max-epochs", "1"], env=env)
    assert done.returncode != 0 and "the launcher started 2 ranks but MPI sees this process alone" in done.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_ptbfast_mpiexec_is_found_on_path_or_refused(monkeypatch, tmp_path):
    fake = tmp_path / "bin" / "my-mpiexec"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("PTBFAST_MPIEXEC", "my-mpiexec")  # a bare name: looked up on PATH
    assert distributed.find_mpiexec() == str(fake)
    monkeypatch.setenv("PTBFAST_MPIEXEC", "no-such-mpiexec")  # (it fell back to another MPI silently)
    with pytest.raises(DistributedError, match="PTBFAST_MPIEXEC='no-such-mpiexec' is not an executable"):
        distributed.find_mpiexec()


@needs_mpi
def test_batch_size_the_ranks_do_not_divide_is_an_error_before_training(tiny_data, tmp_path):
    done = train([*TINY, "--batch-size", "5", "--data-path", tiny_data, "--save-path", tmp_path / "run"], ranks=2)
    assert done.returncode == 2
    assert done.stderr.count("batch_size 5 cannot be split over 2 ranks") == 1  # said once, by rank 0
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


# ---- faults ------------------------------------------------------------------------------------------

@needs_mpi
@pytest.mark.parametrize("skip", [False, True])
def test_nan_on_one_rank_stops_or_skips_on_every_rank(tiny_data, tmp_path, skip):
    args = [*TINY, "--data-path", tiny_data, "--save-path", tmp_path / "run", "--max-epochs", "1"]
    if skip:
        args += ["--nonfinite", "skip"]
    done = train(args, ranks=2, worker=["nan", "1", "7"])
    if skip:
        assert done.returncode == 0, done.stderr
        assert metrics(tmp_path / "run")[0]["skipped_batches"] == 1
        assert done.stdout.count("step 6 skipped: rank 1: the loss is nan (injected)") == 1
    else:
        assert done.returncode == 3, done.stderr
        assert done.stderr.count("training stopped: epoch 1, step 6: rank 1: the loss is nan (injected)") == 1


@needs_mpi
def test_exception_on_one_rank_ends_the_job(tiny_data, tmp_path):
    # The job must end (a hang would run into the timeout) and say why: the failing rank's message
    # must reach stderr before MPI_Abort ends the job (distributed._drain_pipes).
    done = train([*TINY, "--data-path", tiny_data, "--save-path", tmp_path / "run", "--max-epochs", "1"], ranks=2,
                 worker=["raise", "1", "7"], timeout=LAUNCH_TIMEOUT)
    assert done.returncode != 0
    assert "rank 1: ending the MPI job" in done.stderr and "injected failure" in done.stderr


def wait_for(condition, process, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@needs_mpi
@pytest.mark.parametrize("victim", [0, 1])  # rank 0 writes the checkpoints
def test_killed_rank_ends_the_job_and_the_checkpoint_resumes(tiny_data, tmp_path, victim):
    run, pids = tmp_path / "run", tmp_path / "pids"
    pids.mkdir()
    args = [*TINY, "--data-path", tiny_data, "--save-path", run, "--max-epochs", str(LONG_RUN), "--checkpoint-every", "20"]
    job = subprocess.Popen(command(args, 2, ["none", "0", "0"]), env=clean_env(PIDDIR=pids),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # A checkpoint exists: training is under way (12 epochs of ~180 steps; one checkpoint every 20).
        wait_for(lambda: (pids / f"rank{victim}.pid").exists() and (run / "checkpoint.npz").exists(), job)
        os.kill(int((pids / f"rank{victim}.pid").read_text()), signal.SIGKILL)
        job.communicate(timeout=LAUNCH_TIMEOUT)  # the job ends (a hang runs into this timeout)
    finally:
        if job.poll() is None:
            job.kill()
            job.communicate()
    assert job.returncode != 0
    saved, _ = checkpoint.load_model_or_previous(run / "checkpoint.npz")  # what --resume will use
    used, meta = saved.path, saved.meta
    assert not meta["position"]["finished"]
    done = train([*args, "--resume"], ranks=2)
    assert done.returncode == 0, done.stderr
    assert f"Resumed from {used}" in done.stdout and "Test Perplexity" in done.stdout


@needs_mpi
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGUSR1])
def test_signal_to_mpiexec_checkpoints_and_exits_as_one_process(tiny_data, tmp_path, sig):
    if sig != signal.SIGUSR1 and distributed.mpiexec_flavour(MPIEXEC) == "openmpi":
        pytest.skip("Open MPI's mpirun kills the ranks at once on SIGINT/SIGTERM; it forwards SIGUSR1")
    run = tmp_path / "run"
    args = [*TINY, "--data-path", tiny_data, "--save-path", run, "--max-epochs", str(LONG_RUN), "--checkpoint-every", "0"]
    job = subprocess.Popen(command(args, 2), env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        for line in job.stdout:  # into the second epoch
            if line.startswith("Epoch: 2 Learning rate"):
                break
        job.send_signal(sig)
        out, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
            job.communicate()
    assert job.returncode == 128 + sig, err
    assert out.count(f"Stopped by signal {int(sig)}") == 1
    _, meta, state = checkpoint.load(run / "checkpoint.npz")
    assert meta["position"]["epoch"] >= 1 and not meta["position"]["finished"]
    assert state[0][0].shape == (4, 8)  # the full batch's state, gathered from both ranks
    done = train([*args, "--resume"], ranks=2)
    assert done.returncode == 0, done.stderr
    assert [m["epoch"] for m in metrics(run) if "epoch" in m] == list(range(1, LONG_RUN + 1))


@needs_mpi
def test_bench_ranks_times_the_trainers_step_in_its_parts():
    # bench --ranks runs ptbfast.step.training_step under mpiexec and times its parts by wrapping them.
    done = subprocess.run([sys.executable, "-m", "ptbfast", "bench", "--config", "test", "--ranks", "2", "--threads",
                           "1", "--steps", "2"], env=clean_env(PTBFAST_MPIEXEC=MPIEXEC), capture_output=True,
                          text=True, timeout=LAUNCH_TIMEOUT)
    assert done.returncode == 0, done.stderr[-2000:]
    head, row = done.stdout.splitlines()[:2]
    assert "masks" in head and "compute" in head and "update" in head
    cells = row.split("|")[1].split()
    assert len(cells) == 8 and all(float(c) >= 0 for c in cells)
    assert float(cells[1]) > 0  # compute was timed (a forward and backward in Python: far above 0.05 ms)
