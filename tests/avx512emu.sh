#!/usr/bin/env bash
# AVX-512 kernels on any x86-64 with AVX2: builds the tests below with tests/avx512_emu.h (every AVX-512
# intrinsic nst.h uses, in C) and runs them with NST_ARCH=avx512, so the AVX-512 GEMM, Winograd, direct,
# pooling and SYRK code is compared against the scalar path here too, not only on AVX-512 hardware. The
# emulation is slow (every vector operation a 16-step loop), so each program runs the tests that reach
# AVX-512 code with small shapes (the filters below; the kernel sweeps' K capped by NST_TEST_KMAX). The last line is one combined summary
# ("test_avx512_emu: N passed, ...") that tests/run.sh counts. Skipped (one skip) off x86-64.
set -u
cd "$(dirname "$0")/.." || exit 1
case "$(uname -m)" in x86_64|amd64) ;; *) echo "test_avx512_emu: 0 passed, 0 failed, 1 skipped (not x86-64)"; exit 0 ;; esac
CC=${CC:-cc}
OMP=${OPENMP_FLAG--fopenmp}
mkdir -p build/emu
JOBS=${EMU_JOBS:-2} DIR=build/emu SUF=
. tests/subsuite.sh
build() {   # build NAME: tests/NAME.c into build/emu/NAME; its exit status into .rc
    $CC -std=c99 -Wall -Wextra -Wpedantic -O2 $OMP -include tests/avx512_emu.h -I. -DNST_T_PROGRAM="\"$1_avx512emu\"" \
        "tests/$1.c" -o "build/emu/$1" -lm > "build/emu/$1.build.log" 2>&1
    echo $? > "build/emu/$1.rc"
}
go() {   # go LABEL NAME [filter]: one run, its output (and time) into build/emu/LABEL.out
    local label=$1 name=$2 t0=$SECONDS
    shift 2
    NST_ARCH=avx512 NST_TEST_KMAX=${NST_TEST_KMAX:-96} OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} "build/emu/$name" "$@" \
        > "build/emu/$label.out" 2>&1
    echo "   ($label: $((SECONDS - t0)) s)" >> "build/emu/$label.out"
}
# label, source, filter (a test's name must contain it)
runs=("gemm test_gemm avx512" "gemm_syrk test_gemm syrk" "gemm_gram test_gemm gram_rows"
      "gemm_small test_gemm small_matches" "gemm_choice test_gemm kernel_choice"
      "conv test_conv avx512" "conv_vgg test_conv vgg_shapes" "conv_small test_conv small_maps"
      "conv_pool test_conv pooling" "core test_core objective_gradient_matches"
      "features test_features reflection_" "iter_pool test_iter pool_mask" "iter_relu test_iter relu_masks"
      "iter_fused test_iter pool_fused" "iter_blocks test_iter lossgrad_independent"
      "iter_threads test_iter objective_gradient_independent" "lossgrad test_lossgrad")
subsuite test_avx512_emu built test_gemm test_conv test_core test_features test_iter test_lossgrad
