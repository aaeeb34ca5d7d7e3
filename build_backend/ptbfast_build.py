"""In-tree PEP 517 backend: scikit-build-core, plus the BLAS build requirements of the chosen backend.

The backend is chosen, in this order, by the config setting ``cmake.define.PTBFAST_BLAS``
(``pip install . -Ccmake.define.PTBFAST_BLAS=openblas``), the environment variable
``PTBFAST_BLAS``, or the machine: MKL on x86_64, OpenBLAS elsewhere. CMakeLists.txt applies the
same rule, so the downloaded requirements and the library linked always agree.
"""

from __future__ import annotations

import os
import platform

from scikit_build_core import build as _skbuild
from scikit_build_core.build import *  # noqa: F401,F403  (re-export every PEP 517 hook)

_REQUIREMENTS = {
    # MKL, plus OpenBLAS for the large products (CMake option PTBFAST_MKL_LARGE_OPENBLAS).
    # (below the next major release: one that renamed a static library would break every source build)
    "mkl": ["mkl-static>=2024.2,<2027", "mkl-include>=2024.2,<2027", "scipy-openblas32>=0.3.27"],
    "openblas": ["scipy-openblas32>=0.3.27"],
}


def chosen_blas(config_settings=None) -> str:
    value = (config_settings or {}).get("cmake.define.PTBFAST_BLAS") or os.environ.get("PTBFAST_BLAS")
    if not value:
        value = "mkl" if platform.machine().lower() in ("x86_64", "amd64") else "openblas"
    value = value.lower()
    if value not in _REQUIREMENTS:
        raise ValueError(f"PTBFAST_BLAS must be one of {sorted(_REQUIREMENTS)}, got {value!r}")
    return value


def get_requires_for_build_wheel(config_settings=None):
    return _skbuild.get_requires_for_build_wheel(config_settings) + _REQUIREMENTS[chosen_blas(config_settings)]


def get_requires_for_build_editable(config_settings=None):
    return _skbuild.get_requires_for_build_editable(config_settings) + _REQUIREMENTS[chosen_blas(config_settings)]
