"""The communicators: :class:`SingleProcess` for a plain run, :class:`MPICommunicator` over mpi4py,
and :func:`world`, the one this process uses."""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from ptbfast.distributed.launch import DistributedError, launcher_world, wants_mpi


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
            if world and world[0] and world[0] > 1:  # (N copies of one run would write one save path)
                raise DistributedError(
                    f"the launcher started {world[0]} ranks but MPI sees this process alone: mpiexec and "
                    "mpi4py's MPI library differ (use the mpiexec of the MPI mpi4py was built with, e.g. the "
                    "one `pip install 'ptbfast[mpi]'` puts beside this Python)")
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


_WORLD = None


def world():
    """This process's communicator: :class:`SingleProcess`, or :class:`MPICommunicator` when an MPI
    launcher started more than one rank. Raises :class:`DistributedError` if it did and mpi4py is
    not installed, rather than letting N independent runs overwrite one save path."""
    global _WORLD
    if _WORLD is None:
        _WORLD = MPICommunicator.world() if wants_mpi() else SingleProcess()
    return _WORLD
