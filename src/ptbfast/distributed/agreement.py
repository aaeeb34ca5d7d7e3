"""Taking decisions on every rank."""

from __future__ import annotations

import pickle

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
