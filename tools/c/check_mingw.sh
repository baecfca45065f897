#!/usr/bin/env bash
# Windows: compiles csrc/ with Debian's MinGW-w64 cross compiler (x86_64-w64-mingw32-gcc) with
# -Wall -Wextra -Werror, with and without OpenMP, links it as a DLL, and links
# tools/c/kernel_check.c against it as an .exe, so that the engine stays buildable for Windows
# (no POSIX-only calls: the aligned allocator, the fork guard and <unistd.h> compile out).
# Nothing is run (that would need Wine). Installs the compiler with apt when running as root;
# skips with a note only when it cannot be had.
set -euo pipefail
cd "$(dirname "$0")/../.."
CC=x86_64-w64-mingw32-gcc
if ! command -v "$CC" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        (apt-get update -qq && apt-get install -y -qq --no-install-recommends \
            gcc-mingw-w64-x86-64 >/dev/null) ||
            { echo "check_mingw: apt could not install $CC; skipped"; exit 0; }
    else
        echo "check_mingw: $CC not found (and not root with apt); skipped"
        exit 0
    fi
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for omp in "" -fopenmp; do
    mkdir -p "$out/o$omp"
    for src in csrc/*.c csrc/kernels/*.c; do
        "$CC" -O2 -std=gnu11 -fno-math-errno -Wall -Wextra -Werror $omp -Icsrc \
            -c "$src" -o "$out/o$omp/$(basename "$src" .c).o" &
    done
    wait
    # wait returns 0 even when a job failed: check that every object exists
    for src in csrc/*.c csrc/kernels/*.c; do
        [ -f "$out/o$omp/$(basename "$src" .c).o" ] || { echo "check_mingw: $src failed to compile${omp:+ with $omp}"; exit 1; }
    done
    "$CC" -shared $omp "$out/o$omp"/*.o -o "$out/o$omp/fastlenet.dll" -lm
    "$CC" -O2 -std=gnu11 -Wall -Wextra -Werror $omp -Icsrc tools/c/kernel_check.c "$out/o$omp"/*.o \
        -o "$out/o$omp/kernel_check.exe" -lm
    echo "check_mingw: csrc/ builds for Windows x86-64${omp:+ with OpenMP} ($CC $($CC -dumpversion)): fastlenet.dll, kernel_check.exe"
done
