"""One data-parallel training step's collectives (:class:`DataParallel`): see ptbfast.distributed."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ptbfast.distributed.agreement import mark_agreed
from ptbfast.distributed.communicators import SingleProcess
from ptbfast.distributed.launch import DistributedError
from ptbfast.model import LSTMLanguageModel
from ptbfast.signals import STOP_SIGNALS

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


def check_batch_split(batch_size: int, ranks: int) -> None:
    """Each rank trains an equal block of the batch's rows: a clear error if ``ranks`` do not divide it."""
    if batch_size % ranks:
        raise DistributedError(f"batch_size {batch_size} cannot be split over {ranks} ranks: choose a "
                               f"batch size divisible by {ranks} or another number of ranks")


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
        check_batch_split(batch_size, size)
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
        summed = self._unpack(flat, grads)  # (tied weights: the embedding's dense gradient, summed, among them)
        if "embedding" not in self._dense:
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
        """The embedding's gradient where it is an IndexedSlices (untied weights) of this rank's
        tokens in the model's order (:meth:`LSTMLanguageModel.time_major`: [T, rows] flattened):
        every rank's gathered and interleaved back into the one-process [T, batch] order, indexed
        by the full batch's ids."""
        steps = x.shape[1]
        per_rank = self.rows.stop - self.rows.start
        hidden = g.values.shape[-1]
        block = np.ascontiguousarray(g.values).reshape(steps * per_rank, hidden)
        gathered = self.comm.allgatherv(block, [steps * per_rank] * self.comm.size)
        self.stats.gather_bytes = block.nbytes
        rows = gathered.reshape(self.comm.size, steps, per_rank, hidden).transpose(1, 0, 2, 3)
        ids = LSTMLanguageModel.time_major(x).reshape(-1).astype(g.indices.dtype, copy=False)
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
