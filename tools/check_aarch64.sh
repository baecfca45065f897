#!/usr/bin/env bash
# Cross-compiles the C engine for aarch64 (Debian's gcc-aarch64-linux-gnu), proving the portable
# scalar path builds where the x86 SIMD files compile to nothing. Installs the compiler when
# running as root with apt; exits 0 with a note when no compiler can be had.
set -euo pipefail
cd "$(dirname "$0")/.."
CC=aarch64-linux-gnu-gcc
if ! command -v "$CC" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        (apt-get update -qq && apt-get install -y -qq gcc-aarch64-linux-gnu >/dev/null) ||
            { echo "check_aarch64: could not install $CC; skipped"; exit 0; }
    else
        echo "check_aarch64: $CC not found; skipped"; exit 0
    fi
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for src in csrc/*.c csrc/kernels/*.c; do
    "$CC" -O2 -std=gnu11 -Wall -Wextra -Werror -fopenmp -fPIC -Icsrc -c "$src" -o "$out/$(basename "$src" .c).o"
done
"$CC" -shared -fopenmp "$out"/*.o -o "$out/libfastlenet.so" -lm
echo "check_aarch64: csrc/ builds for aarch64 ($($CC -dumpversion))"
