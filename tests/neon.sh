#!/usr/bin/env bash
# NEON kernels: cross-compiles tests/test_gemm.c for aarch64 (static, no OpenMP) and runs it under
# qemu-aarch64, forwarding its output (the summary line is what tests/run.sh counts). qemu is slow, so
# the kernel sweep caps k (NST_TEST_KMAX) and the full-GEMM sweep keeps the small shapes (NST_TEST_QUICK).
set -u
cd "$(dirname "$0")/.." || exit 1
mkdir -p build/tests
bin=build/tests/test_gemm_aarch64
if ! aarch64-linux-gnu-gcc -std=c99 -Wall -Wextra -Wpedantic -O2 -static -I. -DNST_T_PROGRAM='"test_gemm_aarch64"' \
        tests/test_gemm.c -o "$bin" -lm; then
    echo "test_gemm_aarch64: 0 passed, 1 failed, 0 skipped"
    exit 1
fi
NST_TEST_KMAX=${NST_TEST_KMAX:-96} NST_TEST_QUICK=1 qemu-aarch64 "$bin" "$@"
