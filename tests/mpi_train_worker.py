"""``python -m ptbfast train`` under mpiexec, with a fault injected on one rank (for test_distributed.py).

    mpiexec -n 2 python tests/mpi_train_worker.py FAULT RANK STEP [train flags ...]

FAULT is "nan" (rank RANK's loss is non-finite at its STEP-th training step, 1-based), "raise" (a
RuntimeError there, which no other rank sees) or "none". With $PIDDIR set, every rank first writes
its pid to $PIDDIR/rank<r>.pid, so that a test can kill one rank.
"""

import os
import sys

from ptbfast import distributed
from ptbfast.__main__ import main
from ptbfast.model import LSTMLanguageModel


def inject(fault: str, at_step: int) -> None:
    real = LSTMLanguageModel.loss_and_sparse_grads
    calls = {"n": 0}

    def faulty(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at_step:
            if fault == "nan":
                raise FloatingPointError("the loss is nan (injected)")
            raise RuntimeError("injected failure")
        return real(self, *args, **kwargs)

    LSTMLanguageModel.loss_and_sparse_grads = faulty


if __name__ == "__main__":
    fault, fault_rank, at_step, argv = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    rank = distributed.world().rank
    if os.environ.get("PIDDIR"):
        with open(os.path.join(os.environ["PIDDIR"], f"rank{rank}.pid"), "w") as f:
            f.write(str(os.getpid()))
    if fault != "none" and rank == fault_rank:
        inject(fault, at_step)
    sys.exit(main(["train", *argv]))
