"""``python -m ptbfast train`` that, once it has written its first checkpoint, waits for a stop
signal before going on (for test_cli.py's killed-and-resumed runs).

    python tests/signal_train_worker.py [train flags ...]

Without the wait, a test that signals the run once the checkpoint appears races the run's end: a
tiny run can finish before a busy machine schedules the test to send the signal.
"""

import sys
import time

from ptbfast.__main__ import main
from ptbfast.train import Trainer


def wait_for_a_signal_after_the_first_save() -> None:
    real = Trainer.save
    saves = {"n": 0}

    def save(self, *args, **kwargs):
        path = real(self, *args, **kwargs)
        saves["n"] += 1
        deadline = time.monotonic() + 60
        while saves["n"] == 1 and self.signals.received is None and time.monotonic() < deadline:
            time.sleep(0.005)  # (SIGKILL ends the process here; SIGTERM's handler sets ``received``)
        return path

    Trainer.save = save


if __name__ == "__main__":
    wait_for_a_signal_after_the_first_save()
    sys.exit(main(["train", *sys.argv[1:]]))
