/* The GEMM tests with NST_NO_SIMD: the scalar kernels and packing alone must pass the same checks. */
#ifndef NST_NO_SIMD
#define NST_NO_SIMD
#endif
#define NST_T_PROGRAM "test_gemm_nosimd"
#include "test_gemm.c"
