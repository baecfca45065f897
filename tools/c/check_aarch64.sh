#!/usr/bin/env bash
# aarch64, built and run: cross-compiles the C engine with Debian's gcc-aarch64-linux-gnu
# (-Wall -Wextra -Werror, as a shared library, so the portable code keeps building there) and
# tools/c/kernel_check.c, then runs the checker under qemu-user. On aarch64 the `generic` level is
# simd_body.h on NEON (csrc/kernels/neon.c); kernel_check compares every kernel of it (and of scalar) with a float64
# reference and with the scalar specification, and exits non-zero on any mismatch, which fails
# this script and CI. Installs the tools with apt when running as root; skips with a note only
# when they cannot be had.
set -euo pipefail
cd "$(dirname "$0")/../.."
CC=aarch64-linux-gnu-gcc
SYSROOT=/usr/aarch64-linux-gnu
qemu() { command -v qemu-aarch64 || command -v qemu-aarch64-static || true; }
if ! command -v "$CC" >/dev/null 2>&1 || [ -z "$(qemu)" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        (apt-get update -qq && apt-get install -y -qq --no-install-recommends \
            gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null) ||
            { echo "check_aarch64: apt could not install $CC / qemu-user; skipped"; exit 0; }
    else
        echo "check_aarch64: $CC or qemu-aarch64 not found (and not root with apt); skipped"
        exit 0
    fi
fi
QEMU=$(qemu)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
CFLAGS=(-O3 -std=gnu11 -fno-math-errno -Wall -Wextra -Werror -fopenmp -Icsrc)
for src in csrc/*.c csrc/kernels/*.c; do
    "$CC" "${CFLAGS[@]}" -fPIC -c "$src" -o "$out/$(basename "$src" .c).o" &
done
wait
"$CC" -shared -fopenmp "$out"/*.o -o "$out/libfastlenet.so" -lm
echo "check_aarch64: csrc/ builds for aarch64 ($CC $($CC -dumpversion))"
"$CC" "${CFLAGS[@]}" tools/c/kernel_check.c "$out"/*.o -o "$out/kernel_check" -lm
# The NEON code must really be there: FMLA in neon.c, the generic level on aarch64.
aarch64-linux-gnu-objdump -d "$out/neon.o" >"$out/neon.s"
if ! grep -q fmla "$out/neon.s"; then
    echo "check_aarch64: no NEON FMLA in neon.o: the generic level did not compile to NEON"
    exit 1
fi
echo "check_aarch64: running tools/c/kernel_check under $("$QEMU" --version | head -1)"
QEMU_LD_PREFIX=$SYSROOT "$QEMU" -L "$SYSROOT" "$out/kernel_check" "$@"
