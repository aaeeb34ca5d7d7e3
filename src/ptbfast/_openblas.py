"""Loads the OpenBLAS of the scipy-openblas32 package before the extension (``ptbfast._core``
links it for large products, or for all of them in an OpenBLAS build).

A build from source finds it through the extension's RPATH ($ORIGIN/../scipy_openblas32/lib). A
wheel repaired by auditwheel (scripts/build_wheel.sh) loses that entry, which points outside the
wheel, so the library is loaded here by its path, with RTLD_GLOBAL: the extension's dependency on
it is then already met when the extension loads. Loading it twice is harmless (one copy).
"""

import ctypes
import glob
import os


def load() -> None:
    try:
        import scipy_openblas32
    except ImportError:  # a dependency of ptbfast; if it is missing, importing the extension says so
        return
    for path in glob.glob(os.path.join(scipy_openblas32.get_lib_dir(), "libscipy_openblas*.so*")) + \
            glob.glob(os.path.join(scipy_openblas32.get_lib_dir(), "libscipy_openblas*.dylib")):
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        return
