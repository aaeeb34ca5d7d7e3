#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run of the kernel, model and fuzz tests.
#
# Builds ptbfast with -Ccmake.define.PTBFAST_SANITIZE=ON into its own venv (.venv-asan) and its own
# CMake build folder (build/asan-<blas>: a normal `pip install .` shares build/<wheel tag>, and its
# CMake cache would otherwise keep PTBFAST_SANITIZE=ON), then runs the tests with the sanitizer
# runtimes preloaded into Python. Fails if a test fails, if Python dies, or if a sanitizer wrote any
# report.
#
#   scripts/sanitize.sh                              # MKL: the default backend, MKL's packed GEMMs included
#   PTBFAST_BLAS=openblas scripts/sanitize.sh        # the OpenBLAS build
#   HYPOTHESIS_PROFILE=fuzz scripts/sanitize.sh      # the >= 10,000-case fuzz profile under the sanitizers
#   scripts/sanitize.sh tests/test_lstm.py -k nan    # other pytest arguments instead of the default set
#   SANITIZE_REBUILD=0 scripts/sanitize.sh           # reuse .venv-asan as it is
set -euo pipefail
cd "$(dirname "$0")/.."

case "$(uname -m)" in x86_64|AMD64) default_blas=mkl ;; *) default_blas=openblas ;; esac  # (as .ci/run)
blas="${PTBFAST_BLAS:-$default_blas}"
venv=.venv-asan
python="${PYTHON:-python3}"

if [ "${SANITIZE_REBUILD:-1}" != 0 ] || [ ! -x "$venv/bin/python" ]; then
  echo "== building ptbfast with ASan + UBSan ($blas) into $venv"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  extras=test
  # (pip always rebuilds and reinstalls a project given as a directory.)
  # install.strip=false keeps the -g line tables, so ASan's stack traces name files and lines.
  "$venv/bin/pip" install -q ".[$extras]" -Ccmake.define.PTBFAST_SANITIZE=ON -Ccmake.define.PTBFAST_BLAS="$blas" \
      -Cbuild-dir="build/asan-$blas" -Cinstall.strip=false
fi

# The runtimes the module was linked with (libasan must come first in the process: LD_PRELOAD).
# (Found without importing ptbfast: an import before the preload would abort the process.)
core=$("$venv/bin/python" -c "import importlib.util as u, pathlib
print(next(pathlib.Path(u.find_spec('ptbfast').origin).parent.glob('_core*.so')))")
runtime() { ldd "$core" | awk -v lib="$1" '$1 ~ "^"lib"\\.so" {print $3}' ; }
libasan=$(runtime libasan)
libubsan=$(runtime libubsan)
if [ -z "$libasan" ]; then
  echo "error: $core is not linked with libasan: was it built with PTBFAST_SANITIZE=ON?" >&2
  exit 1
fi

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
# detect_leaks=0: CPython keeps interned objects and module state until exit by design.
# allocator_may_return_null=1: a huge request must fail as NULL (-> MemoryError), which the tests
#   expect, not as an ASan "allocation-size-too-big" abort.
# abort_on_error / halt_on_error (+ -fno-sanitize-recover in CMakeLists.txt): the first report kills
#   the process, so pytest cannot carry on and pass.
# PYTHONMALLOC=malloc: Python objects come from malloc, with redzones, so that reading past one (an
#   object taken for an ndarray, say) is caught; pymalloc's arenas would hide it.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1"
export PYTHONMALLOC=malloc
export PTBFAST_EXPECT_BLAS="$blas"

if [ $# -eq 0 ]; then
  set -- tests/test_embedding.py tests/test_lstm.py tests/test_output_layer.py tests/test_vecmath.py \
         tests/test_sgd.py tests/test_model.py tests/test_bf16.py tests/test_fuzz_*.py \
         tests/test_bindings.py tests/test_gemm_bf16.py tests/test_gemm.py  # (their overflow and alignment tests fail only here)
fi
echo "== pytest under ASan + UBSan: $*"
# --capture=sys: pytest's default fd capture would swallow a report written to fd 2 by a process
# that then aborts; stderr is also kept to look for reports that did not abort.
status=0
LD_PRELOAD="$libasan${libubsan:+ $libubsan}" "$venv/bin/python" -m pytest -q -p no:cacheprovider --capture=sys "$@" \
    2> >(tee "$logs/stderr" >&2) || status=$?
wait  # for tee

if grep -qE "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: (Address|UndefinedBehavior)Sanitizer" \
    "$logs/stderr"; then
  echo "== FAILED: sanitizer report above (exit $status)" >&2
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "== FAILED: pytest exit $status, no sanitizer report" >&2
  exit "$status"
fi
echo "== clean: tests passed, no ASan or UBSan report"
