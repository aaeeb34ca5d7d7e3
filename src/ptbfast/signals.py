"""The signals that stop training: SIGINT, SIGTERM and SIGUSR1 (which Open MPI's mpirun and Slurm's
``--signal`` forward) finish the current step, save a checkpoint and stop."""

from __future__ import annotations

import contextlib
import signal

# Signals that stop training with a checkpoint. Open MPI's mpirun answers SIGINT/SIGTERM by killing
# the ranks at once, but forwards SIGUSR1 (as Slurm's ``--signal`` does), so that is the graceful stop
# there, for a job of one rank too (its default action ended the run without a checkpoint).
STOP_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGUSR1", None)) if s is not None)


class StopSignals:
    """What the trainer knows of stop signals: ``received``, the one this process's handler caught
    (None: none), and with ranks ``agreed``, the one any rank had received by the last step's
    exchange (the same on every rank, so all of them stop after the same step)."""

    def __init__(self, distributed: bool):
        self.distributed = distributed
        self.received = None
        self.agreed = None

    def stop_requested(self) -> bool:
        """One process: whether a signal has arrived. Ranks: whether one had arrived on any rank by
        the last step's exchange."""
        return (self.agreed if self.distributed else self.received) is not None

    @contextlib.contextmanager
    def caught(self):
        """Within the block the stop signals set :attr:`received` instead of their usual action
        (on the main thread only: elsewhere the caller keeps them)."""
        def on_signal(signum, _frame):
            self.received = signum
        handlers = {}
        try:
            for sig in STOP_SIGNALS:
                handlers[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread: signals stay with the caller
            pass
        try:
            yield self
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
