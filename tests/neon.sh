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
# Each source is cross-compiled once, NEON_JOBS (default 2) at a time, and the runs (one qemu process each,
# single-threaded: no OpenMP) go NEON_JOBS at a time too; their outputs are printed in the order below.
set -u
EXTRA=("$@")   # extra arguments go to test_gemm
cd "$(dirname "$0")/.." || exit 1
mkdir -p build/tests
JOBS=${NEON_JOBS:-2} DIR=build/tests SUF=_aarch64
. tests/subsuite.sh
build() {   # build NAME: tests/NAME.c into build/tests/NAME_aarch64; its exit status into .rc
    local bin=build/tests/$1_aarch64
    aarch64-linux-gnu-gcc -std=c99 -Wall -Wextra -Wpedantic -O2 -static -I. -DNST_T_PROGRAM="\"$1_aarch64\"" \
        "tests/$1.c" -o "$bin" -lm > "$bin.build.log" 2>&1
    echo $? > "$bin.rc"
}
go() {   # go LABEL NAME [args]: one run, its output (and time) into build/tests/LABEL.out; EXTRA to test_gemm
    local label=$1 name=$2 bin=build/tests/$2_aarch64 t0=$SECONDS
    shift 2
    [ "$name" = test_gemm ] && set -- "$@" "${EXTRA[@]}"
    NST_ARCH=neon NST_TEST_KMAX=${NST_TEST_KMAX:-96} NST_TEST_QUICK=1 qemu-aarch64 "$bin" "$@" \
        > "build/tests/$label.out" 2>&1
    echo "   ($label: $((SECONDS - t0)) s)" >> "build/tests/$label.out"
}
# label, source, filter
runs=("test_gemm_aarch64 test_gemm" "test_conv_aarch64 test_conv neon"
      "test_core_aarch64 test_core objective_gradient_matches" "test_features_aarch64 test_features reflection_"
      "test_iter_aarch64 test_iter lbfgs_" "test_iter_pool_aarch64 test_iter pool_mask"
      "test_iter_relu_aarch64 test_iter relu_masks" "test_iter_fused_aarch64 test_iter pool_fused"
      "test_lossgrad_aarch64 test_lossgrad")
subsuite test_neon_aarch64 cross-compiled test_gemm test_conv test_core test_features test_iter test_lossgrad
