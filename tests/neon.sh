#!/usr/bin/env bash
# NEON kernels: cross-compiles tests/test_gemm.c, tests/test_conv.c and tests/test_core.c for aarch64 (static,
# no OpenMP) and runs them under qemu-aarch64 with NST_ARCH=neon, forwarding their output; the last line is
# one combined summary ("test_neon_aarch64: N passed, ...") that tests/run.sh counts. qemu is slow, so the
# GEMM kernel sweep caps k (NST_TEST_KMAX), NST_TEST_QUICK keeps the small shapes, test_conv runs only its
# NEON tests (the scalar ones run natively) and test_core only the finite-difference gradient check of the
# objective (a tiny model whose layers all take the NEON direct kernel, both directions); test_features only
# the random model's padding against a naive convolution (the Winograd engine's and the small-map GEMM's) and
# as the adjoint of its forward, and the backward
# fix in chunks of the NEON kernel's columns against the naive transpose (NEON GEMM);
# test_iter only the L-BFGS tests (both recursions' kernels against their scalar references, one against the other)
# and, built again, its pooling-with-mask test (the NEON kernels, pool forward and unpool, against the scalar ones
# and the reference pool), its ReLU-mask test (mask bits and the masked backward against the scalar loops) and
# its fused pool and ReLU-mask test (the network with them fused into the convolutions against unfused);
# test_lossgrad the one-pass loss gradient's NEON kernel against the scalar one and a double reference.
set -u
cd "$(dirname "$0")/.." || exit 1
mkdir -p build/tests
passed=0; failed=0; skipped=0
run() {   # run NAME SOURCE [filter]
    local name=$1 src=$2 bin=build/tests/$1 out line t0=$SECONDS
    shift 2
    if ! aarch64-linux-gnu-gcc -std=c99 -Wall -Wextra -Wpedantic -O2 -static -I. -DNST_T_PROGRAM="\"$name\"" \
            "$src" -o "$bin" -lm; then
        echo "$name: 0 passed, 1 failed, 0 skipped (does not build)"; failed=$((failed + 1)); return
    fi
    out=$(NST_ARCH=neon NST_TEST_KMAX=${NST_TEST_KMAX:-96} NST_TEST_QUICK=1 qemu-aarch64 "$bin" "$@" 2>&1)
    echo "$out"
    echo "   ($name: $((SECONDS - t0)) s, build included)"
    line=$(grep -E '^[A-Za-z0-9_.-]+: [0-9]+ passed, [0-9]+ failed' <<<"$out" | tail -n 1)
    if [ -z "$line" ]; then echo "FAIL $name: no summary line"; failed=$((failed + 1)); return; fi
    passed=$((passed + $(sed -E 's/.*: ([0-9]+) passed.*/\1/' <<<"$line")))
    failed=$((failed + $(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")))
    skipped=$((skipped + $(sed -nE 's/.* ([0-9]+) skipped.*/\1/p' <<<"$line")))
}
run test_gemm_aarch64 tests/test_gemm.c "$@"
run test_conv_aarch64 tests/test_conv.c neon
run test_core_aarch64 tests/test_core.c objective_gradient_matches
run test_features_aarch64 tests/test_features.c reflection_
run test_iter_aarch64 tests/test_iter.c lbfgs_
run test_iter_pool_aarch64 tests/test_iter.c pool_mask
run test_iter_relu_aarch64 tests/test_iter.c relu_masks
run test_iter_fused_aarch64 tests/test_iter.c pool_fused
run test_lossgrad_aarch64 tests/test_lossgrad.c
echo "test_neon_aarch64: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
