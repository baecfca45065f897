#!/usr/bin/env bash
# The kernel check over many seeds, at every ISA level this CPU runs:
#     bash tools/c/kernel_check_seeds.sh [SEEDS [FIRST]]     (default 1000 seeds from 1)
# Builds tools/c/kernel_check.c against csrc/ (as tests/engine/test_kernel_check.py does), runs
# the seeds on every core, and prints the failing seeds; exit status 1 if any fails. About a
# second per seed and core; the suite itself runs a few seeds (tests/engine/test_kernel_check.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
seeds=${1:-1000}
first=${2:-1}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
${CC:-cc} -O2 -std=gnu11 -fno-math-errno -fopenmp -Icsrc -Icsrc/kernels tools/c/kernel_check.c \
    csrc/*.c csrc/kernels/*.c -o "$out/kernel_check" -lm
"$out/kernel_check" --seed "$first" | grep -m1 -i "isa levels" || true
seq "$first" $((first + seeds - 1)) |
    xargs -P "$(nproc)" -I{} sh -c '"$1" --seed {} > "$2/{}.log" 2>&1 || echo "seed {} FAILED"' \
        _ "$out/kernel_check" "$out" | tee "$out/failed"
n=$(grep -c FAILED "$out/failed" || true)
echo "kernel_check_seeds: $seeds seeds from $first, $n failed"
[ "$n" -eq 0 ]
