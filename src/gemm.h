/* STUB owned by the GEMM work (issue 3): replaced by packed, blocked SIMD kernels with dispatch.
 * Contract the rest of nst.h relies on:
 *   nst_sgemm(...)                  public, row-major, thread count from nst_get_threads()
 *   nst__sgemm_ex(nthreads, ...)    same with an explicit thread count (0 = default)
 *   nst__cpu_arch()                 the nst_arch in use (resolved, never DEFAULT)
 *   NST__X86 / NST__NEON            set when SIMD code for that architecture is compiled in
 *   NST__TARGET_AVX2 / NST__TARGET_AVX512   function attributes for per-function ISA targets */
#if !defined(NST_NO_SIMD) && (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define NST__X86 1
#include <immintrin.h>
#define NST__TARGET_AVX2 __attribute__((target("avx2,fma")))
#if !defined(NST_NO_AVX512)
#define NST__X86_AVX512 1
#define NST__TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))
#endif
#endif
#if !defined(NST_NO_SIMD) && defined(__aarch64__)
#define NST__NEON 1
#include <arm_neon.h>
#endif
static nst_arch nst__arch_forced = NST_ARCH_DEFAULT;
static nst_arch nst__cpu_arch(void) { return nst__arch_forced ? nst__arch_forced : NST_ARCH_SCALAR; }
NSTDEF nst_status nst_set_arch(nst_arch a) {
    if (a != NST_ARCH_DEFAULT && a != NST_ARCH_SCALAR)
        return nst__err(NST_ERR_UNSUPPORTED, "only the scalar path is built in");
    nst__arch_forced = a;
    return NST_OK;
}
NSTDEF nst_arch nst_get_arch(void) { return nst__cpu_arch(); }
NSTDEF const char *nst_cpu_string(void) { return "scalar"; }

static nst_status nst__sgemm_ex(int nthreads, int trans_a, int trans_b, int m, int n, int k, float alpha,
                                const float *a, int lda, const float *b, int ldb, float beta,
                                float *c, int ldc) {
    int i;
    if (m < 0 || n < 0 || k < 0) return nst__err(NST_ERR_ARGUMENT, "sgemm: negative size");
    nthreads = nst__resolve_threads(nthreads);
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (i = 0; i < m; i++) {
        int j, p;
        for (j = 0; j < n; j++) {
            float s = 0;
            for (p = 0; p < k; p++)
                s += (trans_a ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p]) *
                     (trans_b ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j]);
            c[(size_t)i * ldc + j] = alpha * s + (beta == 0.0f ? 0.0f : beta * c[(size_t)i * ldc + j]);
        }
    }
    return NST_OK;
}

NSTDEF nst_status nst_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
                            const float *a, int lda, const float *b, int ldb, float beta,
                            float *c, int ldc) {
    return nst__sgemm_ex(0, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
