#!/usr/bin/env bash
# The C engine under AddressSanitizer + UndefinedBehaviorSanitizer, OpenMP still on: a copy of
# the project is built with -fsanitize=address,undefined (any UB aborts), and the test suite
# runs against that build with libasan preloaded into the (uninstrumented) Python. Leak
# detection is off: CPython's interned objects and the engine's worker threads live until exit.
#
#   bash .ci/sanitize.sh            # the tests/ suite (not the benchmarks)
#   bash .ci/sanitize.sh -k fork    # extra pytest arguments
#
# Run inside the venv that has the test extras (.ci/run calls it after README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
CC=${CC:-gcc}
libasan=$("$CC" -print-file-name=libasan.so)
if [ ! -e "$libasan" ]; then
    echo "sanitize: $CC has no libasan ($libasan); skipped"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The tracked files of the working tree (what CI checked out), nothing built or installed.
git ls-files -z | xargs -0 cp --parents -t "$work"
cd "$work"
# setup.py's build requirements (pip's editable install built in isolation, so the venv may
# lack them).
python -m pip install --quiet "setuptools>=64" "Cython>=3" "numpy>=2"
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
# In CC itself, so that setup.py's OpenMP probe (which links an executable) gets them too.
CC="$CC $san" python setup.py -q build_ext --inplace >"$work/build.log" 2>&1 ||
    { cat "$work/build.log"; exit 1; }
# libstdc++ too: C++ extensions (matplotlib's) throw, and ASan's __cxa_throw interceptor needs
# the real one loaded at start-up ("CHECK failed: real___cxa_throw" otherwise).
libstdcxx=$("$CC" -print-file-name=libstdc++.so)
export LD_PRELOAD="$libasan${libstdcxx:+ $libstdcxx}"
# Reports go to files (pytest captures the tests' stderr and a halted process loses it) and are
# printed when the run fails.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_init_order=1:log_path=$work/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$work/ubsan"
trap 'cat "$work"/asan.* "$work"/ubsan.* 2>/dev/null || true; rm -rf "$work"' EXIT
export PYTHONPATH="$work"
python - <<'EOF'
import subprocess, sys
import fastlenet._engine as e
deps = subprocess.run(["ldd", e.__file__], capture_output=True, text=True).stdout
assert "libasan" in deps and "libgomp" in deps, deps
print("sanitize: built", e.__file__, "(ASan + UBSan + OpenMP)")
EOF
export FASTLENET_FUZZ_CASES="${FASTLENET_FUZZ_CASES:-1500}"
# -p no:cacheprovider: the copy is thrown away; tests/ only: the benchmarks measure, not check.
python -m pytest -q -p no:cacheprovider tests "$@"
echo "sanitize: the test suite passed under ASan + UBSan (from $root)"
