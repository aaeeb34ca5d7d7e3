"""Data-parallel training over MPI: each rank trains a contiguous slice of the batch's rows.

By responsibility: ``launch`` (is this run distributed, threads per rank, ``mpiexec``),
``communicators`` (one process, MPI, :func:`world`), ``agreement`` (decisions on every rank) and
``data_parallel`` (a step's collectives); this module gathers the names callers use.

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

from ptbfast.distributed.agreement import agree, is_agreed, mark_agreed, on_root
from ptbfast.distributed.communicators import MPICommunicator, SingleProcess, _drain_pipes, world
from ptbfast.distributed.data_parallel import (BUCKET_BYTES, DataParallel, ExchangeStats, StepResult,
                                               check_batch_split)
from ptbfast.distributed.launch import (LAUNCHER_VARIABLES, PMIX_SIZE_VARIABLES, DistributedError, default_threads,
                                        find_mpiexec, launcher_world, mpiexec_command, mpiexec_flavour, wants_mpi)
from ptbfast.signals import STOP_SIGNALS

__all__ = ["BUCKET_BYTES", "LAUNCHER_VARIABLES", "PMIX_SIZE_VARIABLES", "STOP_SIGNALS", "DataParallel",
           "DistributedError", "ExchangeStats", "MPICommunicator", "SingleProcess", "StepResult", "agree",
           "check_batch_split", "default_threads", "find_mpiexec", "is_agreed", "launcher_world", "mark_agreed",
           "mpiexec_command", "mpiexec_flavour", "on_root", "wants_mpi", "world"]
