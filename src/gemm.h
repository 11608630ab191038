/* -----------------------------------------------------------------------------------------------------
 * >>cpu >>gemm  CPU detection and single-precision GEMM
 *
 * WHAT IS HERE
 *   nst__cpu_arch()        the nst_arch in use on this thread: nst_set_arch() (per thread, like
 *                          nst_set_threads: resolve it on the calling thread, before a parallel region) if set, else
 *                          $NST_ARCH (scalar|avx2|avx512|neon, read once; ignored when the CPU lacks it),
 *                          else the newest ISA the CPU has. Detection (CPUID + XGETBV) runs once, guarded
 *                          by an atomic flag, so it is thread-safe.
 *   nst_sgemm(...)         public, row-major, thread count from nst_get_threads().
 *   nst__sgemm_ex(nthreads, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
 *                          the same with an explicit thread count (0 = the default).
 *   nst__sgemm_fused(nthreads, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias, relu)
 *                          C = relu?(alpha*op(A)*op(B) + beta*C + bias[i]) with the epilogue fused into the
 *                          micro-kernel's last store: bias (NULL = none) has m values, one per ROW of C
 *                          (the output channel of C[cout][pixels]); relu nonzero clamps at 0. beta = 1 is
 *                          the accumulate form (C += ...); beta = 0 never reads C (NaN in C is ignored).
 *   nst__ssyrk_ex(nthreads, n, k, alpha, a, lda, c, ldc)
 *                          C[n][n] = alpha * A * A^T for row-major A[n][k] (Gram matrices): only tiles that
 *                          touch the lower triangle are computed, then the lower triangle is mirrored, so
 *                          C is exactly symmetric. C is overwritten (beta = 0).
 *   Pre-packed A (pack once, multiply many times; the convolution's weights):
 *     nst__sgemm_apack pk;
 *     nst__sgemm_pack_a(&pk, trans_a, m, k, a, lda)            packs op(A) (m x k) for the kernel in use
 *     nst__sgemm_apacked(nthreads, &pk, trans_b, n, alpha, b, ldb, beta, c, ldc, bias, relu)
 *                                                              = nst__sgemm_fused with A taken from pk
 *     nst__sgemm_apack_free(&pk)
 *   The pack remembers the kernel it was made for, so a later nst_set_arch() does not invalidate it.
 *   All return NST_OK, NST_ERR_ARGUMENT or NST_ERR_NOMEM.
 *
 * STRUCTURE (BLIS-style)
 *   for jc in N step NC:                        this thread's column range
 *     for pc in K step KC:   pack B[pc:,jc:] into NR-column panels (k-major: KC x NR, zero-padded)
 *       for ic in M step MC: pack A[ic:,pc:] into MR-row panels   (k-major: KC x MR, zero-padded)
 *         for jr in NC step NR: for ir in MC step MR: micro-kernel MR x NR over KC
 *   The micro-kernel keeps the MR x NR tile of C in registers, reads one MR-vector of A (broadcasts) and
 *   one NR-vector of B per k, and stores with alpha/beta and, on the last KC block, bias and ReLU.
 *   Edge tiles (m < MR or n < NR) run the same kernel into an aligned stack tile, then a short loop adds
 *   the valid part into C: no scalar cliff. K is cut into ceil(k/KC) equal blocks (no tiny last block).
 *
 * BLOCKING (measured on this project's machine: CPUID says "Turin-like", i.e. Zen 5 cores with a full
 * 512-bit FMA datapath: 48 KiB L1d, 1 MiB L2 per core, shared L3. The FMA loop in bench/bench_gemm.c
 * gives ~111 GFLOP/s per core with 256-bit FMAs and ~223 with 512-bit ones, so AVX-512 is twice AVX2
 * here, unlike Zen 4 where 512-bit ops run as two halves and both peak at ~32 flop/cycle.)
 *   avx512  MR x NR = 8 x 48: 24 zmm accumulators + 3 B vectors + 1 broadcast
 *   avx2    MR x NR = 6 x 16: 12 ymm accumulators + 2 B vectors + 1 broadcast (all 16 ymm)
 *   neon    MR x NR = 8 x 12: 24 q accumulators, 3 B vectors, 2 A vectors used through lane FMAs
 *   scalar  MR x NR = 4 x 8
 *   KC = 192: the KC x NR micro-panel of B, reused by every MR tile of the MC block, stays in L1
 *     (192*48*4 = 36 KiB of 48; the kernel alone runs at ~99% of peak with it in L1, ~90% at KC = 384
 *     where it streams from L2). Short enough that C is rewritten only K/192 times.
 *   MC = 256: the MC x KC block of A (192 KiB) lives in L2 next to the streaming B; 256 divides the
 *     VGG channel counts, so no ragged MC block.
 *   NC = 1536: KC x NC of B (1.1 MiB) sits in L2/L3 while the MC blocks pass over it.
 *   Kernel shape: MR = 8 divides every VGG channel count (64..512), so the convolution shapes waste no
 *   rows (14 x 32 computes 70 rows for 64); of 8x48, 6x64, 14x32, 8x32 and 12x32, 8x48 was fastest
 *   (geometric mean over squares and VGG shapes, 1 thread: 170 / 162 / 154 / 158 / 146 GFLOP/s).
 *   Memory: B usually comes from DRAM (the convolution's im2col matrix); while the kernels run on one
 *   block, the next block's source lines are prefetched a few per kernel call, and when all of M fits
 *   one MC block (C[64][pixels]), B is packed panel by panel right before its kernels.
 *   On a Zen 4 (32 KiB L1d), KC = 128 keeps the same L1 fit; set NST__KC to tune.
 *
 * THREADS
 *   OpenMP over the macro-kernel loops only: the columns (or, when N is narrow, the rows) are split into
 *   one contiguous, panel-aligned range per thread; each thread packs its own panels. The split is a
 *   function of the sizes and the thread count only; since every C element sees the same tiles and the
 *   same K blocks whichever range it falls in, results are even identical across thread counts.
 * ---------------------------------------------------------------------------------------------------*/
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

#if defined(__GNUC__) || defined(__clang__)
#define NST__UNROLL _Pragma("GCC unroll 32")
#define NST__ALIGN64 __attribute__((aligned(64)))
#else
#define NST__UNROLL
#define NST__ALIGN64
#endif

/* ---- cpu detection ---------------------------------------------------------------------------------*/
typedef struct nst__cpu_info {
    nst_arch best;        /* newest path this CPU and build support */
    nst_arch deflt;       /* $NST_ARCH if valid, else best */
    int has[5];           /* indexed by nst_arch: usable on this CPU and compiled in */
    char desc[200];       /* "AMD EPYC ...: avx2 fma avx512f ..." */
} nst__cpu_info;

static nst__cpu_info nst__cpu_g;
static int nst__cpu_state;               /* 0 = not started, 1 = being filled, 2 = ready */
static NST__TLS int nst__arch_forced;    /* nst_set_arch() on this thread; 0 = none */

#if defined(NST__X86)
static void nst__cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
    unsigned a, b, c, d;
    __asm__ __volatile__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(leaf), "c"(sub));
    r[0] = a; r[1] = b; r[2] = c; r[3] = d;
}
static unsigned long long nst__xgetbv0(void) {
    unsigned lo, hi;
    __asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}
#endif

static const char *nst__arch_name(nst_arch a) {
    switch (a) {
    case NST_ARCH_SCALAR: return "scalar";
    case NST_ARCH_AVX2: return "avx2";
    case NST_ARCH_AVX512: return "avx512";
    case NST_ARCH_NEON: return "neon";
    default: return "default";
    }
}

static void nst__desc_add(char *d, size_t cap, const char *s) {
    size_t n = strlen(d), m = strlen(s);
    if (n + m + 1 < cap) memcpy(d + n, s, m + 1);
}

static void nst__cpu_detect(nst__cpu_info *ci) {
    const char *env;
    memset(ci, 0, sizeof *ci);
    ci->has[NST_ARCH_SCALAR] = 1;
    ci->best = NST_ARCH_SCALAR;
#if defined(NST__X86)
    {
        unsigned r[4], maxleaf, l1c = 0, l7b = 0, l7c = 0, l71a = 0, i;
        unsigned long long xcr0 = 0;
        char brand[49];
        int os_avx, os_avx512, fma, avx2, f, dq, bw, vl;
        nst__cpuid(0, 0, r);
        maxleaf = r[0];
        if (maxleaf >= 1) { nst__cpuid(1, 0, r); l1c = r[2]; }
        if (maxleaf >= 7) {
            nst__cpuid(7, 0, r); l7b = r[1]; l7c = r[2];
            if (r[0] >= 1) { nst__cpuid(7, 1, r); l71a = r[0]; }
        }
        if (l1c & (1u << 27)) xcr0 = nst__xgetbv0();   /* OSXSAVE: the OS saves the wide registers */
        os_avx = (xcr0 & 0x6) == 0x6;
        os_avx512 = os_avx && (xcr0 & 0xE0) == 0xE0;
        fma = os_avx && (l1c & (1u << 12)) && (l1c & (1u << 28));
        avx2 = os_avx && (l7b & (1u << 5));
        f = os_avx512 && (l7b & (1u << 16));
        dq = os_avx512 && (l7b & (1u << 17));
        bw = os_avx512 && (l7b & (1u << 30));
        vl = os_avx512 && (l7b & (1u << 31));
        memset(brand, 0, sizeof brand);
        nst__cpuid(0x80000000u, 0, r);
        if (r[0] >= 0x80000004u)
            for (i = 0; i < 3; i++) { nst__cpuid(0x80000002u + i, 0, r); memcpy(brand + 16 * i, r, 16); }
        for (i = 47; i > 0 && (brand[i] == ' ' || brand[i] == 0); i--) brand[i] = 0;   /* trim */
        for (i = 0; brand[i] == ' '; i++) {}
        nst__desc_add(ci->desc, sizeof ci->desc, brand[i] ? brand + i : "x86-64");
        nst__desc_add(ci->desc, sizeof ci->desc, ":");
        if (avx2) nst__desc_add(ci->desc, sizeof ci->desc, " avx2");
        if (fma) nst__desc_add(ci->desc, sizeof ci->desc, " fma");
        if (f) nst__desc_add(ci->desc, sizeof ci->desc, " avx512f");
        if (dq) nst__desc_add(ci->desc, sizeof ci->desc, " avx512dq");
        if (bw) nst__desc_add(ci->desc, sizeof ci->desc, " avx512bw");
        if (vl) nst__desc_add(ci->desc, sizeof ci->desc, " avx512vl");
        if (os_avx512 && (l7c & (1u << 11))) nst__desc_add(ci->desc, sizeof ci->desc, " avx512_vnni");
        if (os_avx512 && (l71a & (1u << 5))) nst__desc_add(ci->desc, sizeof ci->desc, " avx512_bf16");
        if (avx2 && fma) { ci->has[NST_ARCH_AVX2] = 1; ci->best = NST_ARCH_AVX2; }
#if defined(NST__X86_AVX512)
        if (avx2 && fma && f && dq && bw && vl) { ci->has[NST_ARCH_AVX512] = 1; ci->best = NST_ARCH_AVX512; }
#endif
    }
#elif defined(NST__NEON)
    nst__desc_add(ci->desc, sizeof ci->desc, "aarch64: neon");
    ci->has[NST_ARCH_NEON] = 1;
    ci->best = NST_ARCH_NEON;
#else
    nst__desc_add(ci->desc, sizeof ci->desc, "generic (SIMD not compiled in)");
#endif
    ci->deflt = ci->best;
    env = getenv("NST_ARCH");
    if (env) {
        int a;
        for (a = NST_ARCH_SCALAR; a <= NST_ARCH_NEON; a++)
            if (!strcmp(env, nst__arch_name((nst_arch)a)) && ci->has[a]) ci->deflt = (nst_arch)a;
    }
}

/* One-time, thread-safe: the first caller fills the record, concurrent callers wait for it. */
static const nst__cpu_info *nst__cpu(void) {
#if defined(__GNUC__) || defined(__clang__)
    int expect = 0;
    if (__atomic_load_n(&nst__cpu_state, __ATOMIC_ACQUIRE) == 2) return &nst__cpu_g;
    if (__atomic_compare_exchange_n(&nst__cpu_state, &expect, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        nst__cpu_detect(&nst__cpu_g);
        __atomic_store_n(&nst__cpu_state, 2, __ATOMIC_RELEASE);
    } else {
        while (__atomic_load_n(&nst__cpu_state, __ATOMIC_ACQUIRE) != 2) {}
    }
#else
    if (nst__cpu_state != 2) {   /* no atomics known: racing threads write identical records */
        nst__cpu_detect(&nst__cpu_g);
        nst__cpu_state = 2;
    }
#endif
    return &nst__cpu_g;
}

static nst_arch nst__cpu_arch(void) {
    return nst__arch_forced ? (nst_arch)nst__arch_forced : nst__cpu()->deflt;
}

NSTDEF nst_status nst_set_arch(nst_arch a) {
    const nst__cpu_info *ci = nst__cpu();
    if (a == NST_ARCH_DEFAULT) { nst__arch_forced = 0; return NST_OK; }
    if ((int)a < NST_ARCH_SCALAR || (int)a > NST_ARCH_NEON)
        return nst__err(NST_ERR_ARGUMENT, "set_arch: unknown architecture %d", (int)a);
    if (!ci->has[a])
        return nst__err(NST_ERR_UNSUPPORTED, "set_arch: %s is not available on this CPU/build (%s)",
                        nst__arch_name(a), ci->desc);
    nst__arch_forced = (int)a;
    return NST_OK;
}
NSTDEF nst_arch nst_get_arch(void) { return nst__cpu_arch(); }
NSTDEF const char *nst_cpu_string(void) {
    static NST__TLS char buf[256];
    snprintf(buf, sizeof buf, "%s (%s)", nst__arch_name(nst__cpu_arch()), nst__cpu()->desc);
    return buf;
}

/* ---- micro-kernels -----------------------------------------------------------------------------------
 * Contract: C[MR][NR] (row stride ldc) = alpha * A*B + beta * C (+ bias[i]) (then max(.,0) if relu),
 * A packed k-major (a[p*MR + i]), B packed k-major (b[p*NR + j]); beta == 0 never reads C. Always the
 * full tile: edges go through a stack tile (nst__gemm_tile). */
typedef void (*nst__ukr_fn)(int k, const float *a, const float *b, float *c, ptrdiff_t ldc,
                            float alpha, float beta, const float *bias, int relu);

typedef struct nst__gemm_kernel {
    nst_arch arch;
    int mr, nr, mc, kc, nc;      /* register tile, cache blocks (mc % mr == 0, nc % nr == 0) */
    nst__ukr_fn ukr;
    const char *name;
} nst__gemm_kernel;

#define NST__TILE_MAX 1024       /* MR*NR of the largest kernel, for the stack tile */

/* Scalar reference kernel (also the NST_NO_SIMD path): the tile in a local array, which compilers keep
 * in vector registers of the baseline ISA. */
#define NST__S_MR 4
#define NST__S_NR 8
static void nst__ukr_4x8_scalar(int k, const float *a, const float *b, float *c, ptrdiff_t ldc,
                                float alpha, float beta, const float *bias, int relu) {
    float acc[NST__S_MR][NST__S_NR];
    int i, j, p;
    memset(acc, 0, sizeof acc);
    for (p = 0; p < k; p++, a += NST__S_MR, b += NST__S_NR)
        for (i = 0; i < NST__S_MR; i++)
            for (j = 0; j < NST__S_NR; j++) acc[i][j] += a[i] * b[j];
    for (i = 0; i < NST__S_MR; i++) {
        float *cr = c + i * ldc, bi = bias ? bias[i] : 0.0f;
        for (j = 0; j < NST__S_NR; j++) {
            float r = alpha * acc[i][j];
            if (beta != 0.0f) r += beta * cr[j];
            r += bi;
            cr[j] = relu && !(r > 0.0f) ? 0.0f : r;
        }
    }
}

/* x86 kernels, one template per vector width: MR rows x NV vectors, unrolled by the compiler
 * (NST__UNROLL), the tile in MR*NV registers. */
#if defined(NST__X86)
#define NST__UKR_X86(NAME, TARGET, VT, W, MR, NV, LOAD, STORE, SET1, ZERO, FMA, MUL, ADD, MAX)              \
    TARGET static void NAME(int k, const float *a, const float *b, float *c, ptrdiff_t ldc, float alpha,     \
                            float beta, const float *bias, int relu) {                                     \
        VT acc[MR][NV], bv[NV], av;                                                                        \
        int i, v, p;                                                                                       \
        NST__UNROLL for (i = 0; i < MR; i++) {                                                             \
            NST__UNROLL for (v = 0; v < NV; v++) {   /* the C tile arrives while the k loop runs */       \
                _mm_prefetch((const char *)(c + i * ldc + W * v), _MM_HINT_T0);                            \
                acc[i][v] = ZERO();                                                                        \
            }                                                                                              \
            _mm_prefetch((const char *)(c + i * ldc + W * NV - 1), _MM_HINT_T0);                           \
        }                                                                                                  \
        for (p = 0; p < k; p++) {                                                                          \
            NST__UNROLL for (v = 0; v < NV; v++) bv[v] = LOAD(b + W * v);                                  \
            NST__UNROLL for (i = 0; i < MR; i++) {                                                         \
                av = SET1(a[i]);                                                                           \
                NST__UNROLL for (v = 0; v < NV; v++) acc[i][v] = FMA(av, bv[v], acc[i][v]);               \
            }                                                                                              \
            a += MR;                                                                                       \
            b += W * NV;                                                                                   \
        }                                                                                                  \
        {                                                                                                  \
            VT va = SET1(alpha), vb = SET1(beta), z = ZERO();                                              \
            NST__UNROLL for (i = 0; i < MR; i++) {                                                         \
                VT bi = bias ? SET1(bias[i]) : z;                                                          \
                float *cr = c + i * ldc;                                                                   \
                NST__UNROLL for (v = 0; v < NV; v++) {                                                     \
                    VT r = MUL(acc[i][v], va);                                                             \
                    if (beta != 0.0f) r = FMA(vb, LOAD(cr + W * v), r);                                    \
                    r = ADD(r, bi);                                                                        \
                    if (relu) r = MAX(r, z);                                                               \
                    STORE(cr + W * v, r);                                                                  \
                }                                                                                          \
            }                                                                                              \
        }                                                                                                  \
    }
#define NST__UKR_AVX2(NAME, MR, NV)                                                                       \
    NST__UKR_X86(NAME, NST__TARGET_AVX2, __m256, 8, MR, NV, _mm256_loadu_ps, _mm256_storeu_ps,            \
                 _mm256_set1_ps, _mm256_setzero_ps, _mm256_fmadd_ps, _mm256_mul_ps, _mm256_add_ps,         \
                 _mm256_max_ps)
#define NST__UKR_AVX512(NAME, MR, NV)                                                                     \
    NST__UKR_X86(NAME, NST__TARGET_AVX512, __m512, 16, MR, NV, _mm512_loadu_ps, _mm512_storeu_ps,         \
                 _mm512_set1_ps, _mm512_setzero_ps, _mm512_fmadd_ps, _mm512_mul_ps, _mm512_add_ps,         \
                 NST__MAX512)
NST__UKR_AVX2(nst__ukr_6x16_avx2, 6, 2)
#if defined(NST__X86_AVX512)
/* the masked form: g++ 12 flags _mm512_max_ps's undefined pass-through lanes as maybe-uninitialized */
#define NST__MAX512(a, b) _mm512_maskz_max_ps((__mmask16)0xFFFF, a, b)
#ifndef NST__AVX512_MR   /* tuning hooks for bench experiments; the defaults are the measured best */
#define NST__AVX512_MR 8
#define NST__AVX512_NV 3
#endif
NST__UKR_AVX512(nst__ukr_avx512, NST__AVX512_MR, NST__AVX512_NV)
#endif
#endif /* NST__X86 */

#if defined(NST__NEON)
/* 8 x 12: 24 q-register accumulators, A as two q registers, lane-indexed FMAs. */
static void nst__ukr_8x12_neon(int k, const float *a, const float *b, float *c, ptrdiff_t ldc,
                               float alpha, float beta, const float *bias, int relu) {
    float32x4_t acc[8][3], bv[3], a0, a1;
    int i, v, p;
    NST__UNROLL for (i = 0; i < 8; i++) NST__UNROLL for (v = 0; v < 3; v++) acc[i][v] = vdupq_n_f32(0.0f);
    for (p = 0; p < k; p++) {
        bv[0] = vld1q_f32(b); bv[1] = vld1q_f32(b + 4); bv[2] = vld1q_f32(b + 8);
        a0 = vld1q_f32(a); a1 = vld1q_f32(a + 4);
        NST__UNROLL for (v = 0; v < 3; v++) {
            acc[0][v] = vfmaq_laneq_f32(acc[0][v], bv[v], a0, 0);
            acc[1][v] = vfmaq_laneq_f32(acc[1][v], bv[v], a0, 1);
            acc[2][v] = vfmaq_laneq_f32(acc[2][v], bv[v], a0, 2);
            acc[3][v] = vfmaq_laneq_f32(acc[3][v], bv[v], a0, 3);
            acc[4][v] = vfmaq_laneq_f32(acc[4][v], bv[v], a1, 0);
            acc[5][v] = vfmaq_laneq_f32(acc[5][v], bv[v], a1, 1);
            acc[6][v] = vfmaq_laneq_f32(acc[6][v], bv[v], a1, 2);
            acc[7][v] = vfmaq_laneq_f32(acc[7][v], bv[v], a1, 3);
        }
        a += 8;
        b += 12;
    }
    {
        float32x4_t va = vdupq_n_f32(alpha), vb = vdupq_n_f32(beta), z = vdupq_n_f32(0.0f);
        NST__UNROLL for (i = 0; i < 8; i++) {
            float32x4_t bi = bias ? vdupq_n_f32(bias[i]) : z;
            float *cr = c + i * ldc;
            NST__UNROLL for (v = 0; v < 3; v++) {
                float32x4_t r = vmulq_f32(acc[i][v], va);
                if (beta != 0.0f) r = vfmaq_f32(r, vb, vld1q_f32(cr + 4 * v));
                r = vaddq_f32(r, bi);
                if (relu) r = vmaxq_f32(r, z);
                vst1q_f32(cr + 4 * v, r);
            }
        }
    }
}
#endif

#ifndef NST__KC
#define NST__KC 192
#endif
#ifndef NST__MC
#define NST__MC 256
#endif
#ifndef NST__NC
#define NST__NC 1536
#endif

static const nst__gemm_kernel nst__gemm_kernels[] = {
    {NST_ARCH_SCALAR, NST__S_MR, NST__S_NR, 128, 256, 2048, nst__ukr_4x8_scalar, "4x8 scalar"},
#if defined(NST__X86)
    {NST_ARCH_AVX2, 6, 16, NST__MC / 6 * 6, NST__KC, NST__NC, nst__ukr_6x16_avx2, "6x16 avx2+fma"},
#if defined(NST__X86_AVX512)
    {NST_ARCH_AVX512, NST__AVX512_MR, 16 * NST__AVX512_NV, NST__MC / NST__AVX512_MR * NST__AVX512_MR, NST__KC,
     NST__NC / (16 * NST__AVX512_NV) * (16 * NST__AVX512_NV), nst__ukr_avx512, "8x48 avx512"},
#endif
#endif
#if defined(NST__NEON)
    {NST_ARCH_NEON, 8, 12, 128, 256, 2040, nst__ukr_8x12_neon, "8x12 neon"},
#endif
};

static const nst__gemm_kernel *nst__gemm_kernel_for(nst_arch a) {
    size_t i;
    for (i = 0; i < sizeof nst__gemm_kernels / sizeof nst__gemm_kernels[0]; i++)
        if (nst__gemm_kernels[i].arch == a) return &nst__gemm_kernels[i];
    return &nst__gemm_kernels[0];
}

/* Edge tile: the full kernel into an aligned stack tile, then the valid m x n part into C with the same
 * update the kernel does (C not read when beta == 0). */
static void nst__gemm_tile(const nst__gemm_kernel *kt, int k, const float *a, const float *b, float *c,
                           ptrdiff_t ldc, int m, int n, float alpha, float beta, const float *bias, int relu) {
    float tile[NST__TILE_MAX] NST__ALIGN64;
    int i, j, nr = kt->nr;
    if (m == kt->mr && n == nr) {
        kt->ukr(k, a, b, c, ldc, alpha, beta, bias, relu);
        return;
    }
    kt->ukr(k, a, b, tile, nr, 1.0f, 0.0f, NULL, 0);
    for (i = 0; i < m; i++) {
        float *cr = c + i * ldc, bi = bias ? bias[i] : 0.0f;
        const float *t = tile + i * nr;
        for (j = 0; j < n; j++) {
            float r = alpha * t[j];
            if (beta != 0.0f) r += beta * cr[j];
            r += bi;
            cr[j] = relu && !(r > 0.0f) ? 0.0f : r;
        }
    }
}

/* ---- packing -----------------------------------------------------------------------------------------
 * Panels are k-major and zero-padded to the full MR / NR, so kernels never see ragged edges.
 * pack_rows: dst[p*W + i] = src[i*ld + p]  (a row-major operand cut across its rows: transposing)
 * pack_cols: dst[p*W + i] = src[p*ld + i]  (rows of W contiguous floats: copies)                      */
static void nst__pack_cols(float *dst, const float *src, ptrdiff_t ld, int kc, int w, int W) {
    int p, i;
    if (w == W) {
        switch (W) {   /* constant widths: the copies become a few vector moves */
#define NST__PACK_COPY(WW) case WW: for (p = 0; p < kc; p++) memcpy(dst + (size_t)p * WW, src + p * ld, WW * sizeof(float)); return;
        NST__PACK_COPY(4) NST__PACK_COPY(6) NST__PACK_COPY(8) NST__PACK_COPY(12) NST__PACK_COPY(16)
        NST__PACK_COPY(32) NST__PACK_COPY(48) NST__PACK_COPY(64)
#undef NST__PACK_COPY
        default: break;
        }
    }
    for (p = 0; p < kc; p++) {
        const float *s = src + p * ld;
        float *d = dst + (size_t)p * W;
        for (i = 0; i < w; i++) d[i] = s[i];
        for (; i < W; i++) d[i] = 0.0f;
    }
}

#if defined(NST__X86)
/* 8 rows x 8 k at a time through an in-register transpose. */
NST__TARGET_AVX2 static void nst__pack_rows8_avx2(float *dst, const float *src, ptrdiff_t ld, int kc, int W) {
    int p;
    for (p = 0; p + 8 <= kc; p += 8) {
        __m256 r0 = _mm256_loadu_ps(src + 0 * ld + p), r1 = _mm256_loadu_ps(src + 1 * ld + p);
        __m256 r2 = _mm256_loadu_ps(src + 2 * ld + p), r3 = _mm256_loadu_ps(src + 3 * ld + p);
        __m256 r4 = _mm256_loadu_ps(src + 4 * ld + p), r5 = _mm256_loadu_ps(src + 5 * ld + p);
        __m256 r6 = _mm256_loadu_ps(src + 6 * ld + p), r7 = _mm256_loadu_ps(src + 7 * ld + p);
        __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
        __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
        __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
        __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
        __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
        __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
        __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
        __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
        float *d = dst + (size_t)p * W;
        _mm256_storeu_ps(d + 0 * W, _mm256_permute2f128_ps(u0, u4, 0x20));
        _mm256_storeu_ps(d + 1 * W, _mm256_permute2f128_ps(u1, u5, 0x20));
        _mm256_storeu_ps(d + 2 * W, _mm256_permute2f128_ps(u2, u6, 0x20));
        _mm256_storeu_ps(d + 3 * W, _mm256_permute2f128_ps(u3, u7, 0x20));
        _mm256_storeu_ps(d + 4 * W, _mm256_permute2f128_ps(u0, u4, 0x31));
        _mm256_storeu_ps(d + 5 * W, _mm256_permute2f128_ps(u1, u5, 0x31));
        _mm256_storeu_ps(d + 6 * W, _mm256_permute2f128_ps(u2, u6, 0x31));
        _mm256_storeu_ps(d + 7 * W, _mm256_permute2f128_ps(u3, u7, 0x31));
    }
    for (; p < kc; p++) {
        int i;
        for (i = 0; i < 8; i++) dst[(size_t)p * W + i] = src[i * ld + p];
    }
}
#endif

static void nst__pack_rows(float *dst, const float *src, ptrdiff_t ld, int kc, int w, int W, int simd) {
    int p, i = 0;
#if defined(NST__X86)
    if (simd)   /* blocks of 8 rows (W is a multiple of 8, or 6 and then never w >= 8) */
        for (; i + 8 <= w; i += 8) nst__pack_rows8_avx2(dst + i, src + i * ld, ld, kc, W);
#else
    (void)simd;
#endif
    for (; i < w; i++) {
        const float *s = src + i * ld;
        float *d = dst + i;
        for (p = 0; p < kc; p++) d[(size_t)p * W] = s[p];
    }
    for (; i < W; i++)
        for (p = 0; p < kc; p++) dst[(size_t)p * W + i] = 0.0f;
}

/* ---- the blocked driver ------------------------------------------------------------------------------*/
typedef struct nst__gemm_job {
    const nst__gemm_kernel *kt;
    int trans_a, trans_b, m, n, k, kb;     /* kb: K block size (ceil(k / ceil(k/KC))) */
    float alpha, beta;
    const float *a, *b;
    ptrdiff_t lda, ldb, ldc;
    float *c;
    const float *bias;
    int relu, lower;                       /* lower: SYRK, skip tiles strictly above the diagonal */
    const float *apacked;                  /* whole op(A) pre-packed (nst__sgemm_apack), or NULL */
    int simd_pack;                         /* 1: AVX2 transposes; 2: and AVX-512 row copies */
} nst__gemm_job;

static int nst__round_up(int x, int r) { return (x + r - 1) / r * r; }

/* Packs op(A)[i0:i0+mcur][pc:pc+kcur] into MR panels at dst. */
static void nst__gemm_pack_a(const nst__gemm_job *g, float *dst, int i0, int mcur, int pc, int kcur) {
    int mr = g->kt->mr, ir;
    for (ir = 0; ir < mcur; ir += mr) {
        int w = NST__MIN(mr, mcur - ir);
        float *d = dst + (size_t)ir * kcur;
        if (g->trans_a) nst__pack_cols(d, g->a + (size_t)pc * g->lda + i0 + ir, g->lda, kcur, w, mr);
        else nst__pack_rows(d, g->a + (size_t)(i0 + ir) * g->lda + pc, g->lda, kcur, w, mr, g->simd_pack);
    }
}
/* Packs op(B)[pc:pc+kcur][j0:j0+ncur] into NR panels at dst. */
#if defined(NST__X86_AVX512)
/* One source row into consecutive 48-wide panels (`step` floats apart): whole-line loads and stores. */
NST__TARGET_AVX512 static void nst__pack_row48_avx512(float *d, const float *s, int full, size_t step) {
    int jr;
    for (jr = 0; jr < full; jr += 48, d += step) {
        __m512 x0 = _mm512_loadu_ps(s + jr), x1 = _mm512_loadu_ps(s + jr + 16), x2 = _mm512_loadu_ps(s + jr + 32);
        _mm512_storeu_ps(d, x0);
        _mm512_storeu_ps(d + 16, x1);
        _mm512_storeu_ps(d + 32, x2);
    }
}
#endif

static void nst__gemm_pack_b(const nst__gemm_job *g, float *dst, int j0, int ncur, int pc, int kcur) {
    int nr = g->kt->nr, jr, p;
    if (g->trans_b) {
        for (jr = 0; jr < ncur; jr += nr)
            nst__pack_rows(dst + (size_t)jr * kcur, g->b + (size_t)(j0 + jr) * g->ldb + pc, g->ldb, kcur,
                           NST__MIN(nr, ncur - jr), nr, g->simd_pack);
        return;
    }
    /* Row by row: each source row is read front to back once (B usually comes from DRAM here, and long
     * sequential runs are what the hardware prefetchers stream best), scattered into the panels. */
    for (p = 0; p < kcur; p++) {
        const float *s = g->b + (size_t)(pc + p) * g->ldb + j0;
        float *d = dst + (size_t)p * nr;
        size_t step = (size_t)nr * kcur;
        int full = ncur / nr * nr;
#if defined(__GNUC__) || defined(__clang__)
        if (p + 4 < kcur) {   /* a few rows ahead: more misses in flight than the prefetchers start */
            const char *q = (const char *)(s + 4 * g->ldb);
            int o;
            for (o = 0; o < ncur * (int)sizeof(float); o += 64) __builtin_prefetch(q + o);
        }
#endif
#if defined(NST__X86_AVX512)
        if (nr == 48 && g->simd_pack == 2) {
            nst__pack_row48_avx512(d, s, full, step);
            d += (size_t)(full / 48) * step;
        } else
#endif
        switch (nr) {   /* constant widths: each copy becomes a few vector moves */
#define NST__PACK_ROW(NR) case NR: for (jr = 0; jr < full; jr += NR, d += step) memcpy(d, s + jr, NR * sizeof(float)); break;
        NST__PACK_ROW(8) NST__PACK_ROW(12) NST__PACK_ROW(16) NST__PACK_ROW(32) NST__PACK_ROW(48) NST__PACK_ROW(64)
#undef NST__PACK_ROW
        default: for (jr = 0; jr < full; jr += nr, d += step) memcpy(d, s + jr, (size_t)nr * sizeof(float));
        }
        if (full < ncur) nst__pack_cols(d, s + full, 0, 1, ncur - full, nr);
    }
}

/* Software prefetch of the next B block's source while the kernels run on the current one: the block
 * is packed from memory (usually DRAM) right after, and a few lines issued per kernel call keep the
 * memory system busy in the background instead of stalling the packing loop later. */
typedef struct nst__pf_cursor {
    const char *base;
    size_t stride;           /* bytes between source rows */
    int rows, lines, row, line, per_call;
} nst__pf_cursor;

static void nst__pf_setup(nst__pf_cursor *pf, const nst__gemm_job *g, int jc, int ncur, int pc, int kcur, int calls) {
    size_t total;
    memset(pf, 0, sizeof *pf);
    if (ncur <= 0 || kcur <= 0) return;
    if (g->trans_b) {   /* B is n x k: ncur rows of kcur floats */
        pf->base = (const char *)(g->b + (size_t)jc * g->ldb + pc);
        pf->rows = ncur;
        pf->lines = (kcur * (int)sizeof(float) + 63) / 64;
    } else {            /* B is k x n: kcur rows of ncur floats */
        pf->base = (const char *)(g->b + (size_t)pc * g->ldb + jc);
        pf->rows = kcur;
        pf->lines = (ncur * (int)sizeof(float) + 63) / 64;
    }
    pf->stride = (size_t)g->ldb * sizeof(float);
    total = (size_t)pf->rows * pf->lines;
    pf->per_call = (int)((total + (size_t)calls - 1) / (size_t)NST__MAX(calls, 1));
}

static void nst__pf_step(nst__pf_cursor *pf) {
#if defined(__GNUC__) || defined(__clang__)
    int q;
    for (q = 0; q < pf->per_call && pf->row < pf->rows; q++) {
        __builtin_prefetch(pf->base + pf->row * pf->stride + (size_t)pf->line * 64, 0, 2);
        if (++pf->line == pf->lines) { pf->line = 0; pf->row++; }
    }
#else
    (void)pf;
#endif
}

/* One thread's share: rows [i0,i1) x columns [j0,j1) of C; i0 is MR-aligned, j0 NR-aligned. */
static void nst__gemm_range(const nst__gemm_job *g, int i0, int i1, int j0, int j1, float *abuf, float *bbuf) {
    const nst__gemm_kernel *kt = g->kt;
    int mr = kt->mr, nr = kt->nr, jc, pc, ic, jr, ir;
    size_t mpad = (size_t)nst__round_up(g->m, mr);
    /* Few rows (one MC block, e.g. the convolution's C[64][pixels]): every B element feeds only a few
     * kernels, so each NR panel is packed just before its kernels run (it is then still in L1), and the
     * prefetcher below fetches the next panel instead of the next block. */
    int stream_b = !g->trans_b && !g->lower && i1 - i0 <= kt->mc;
    for (jc = j0; jc < j1; jc += kt->nc) {
        int ncur = NST__MIN(kt->nc, j1 - jc);
        if (g->lower) {   /* SYRK: this thread's rows end at i1, so columns >= i1 are above the diagonal */
            if (i1 <= jc) break;
            ncur = NST__MIN(ncur, i1 - jc);
        }
        for (pc = 0; pc < g->k; pc += g->kb) {
            int kcur = NST__MIN(g->kb, g->k - pc), last = pc + kcur >= g->k;
            float beta = pc == 0 ? g->beta : 1.0f;
            const float *bias = last ? g->bias : NULL;
            int relu = last ? g->relu : 0;
            int tiles = ((i1 - i0 + mr - 1) / mr) * ((ncur + nr - 1) / nr);
            nst__pf_cursor pf;
            if (!stream_b) {
                /* the next block: next K slice of these columns, else the first of the next columns */
                int npc = last ? 0 : pc + kcur, njc = last ? jc + kt->nc : jc;
                int nn = NST__MIN(kt->nc, j1 - njc);
                nst__pf_setup(&pf, g, njc, njc < j1 ? nn : 0, npc, NST__MIN(g->kb, g->k - npc), tiles);
                nst__gemm_pack_b(g, bbuf, jc, ncur, pc, kcur);
            }
            for (ic = i0; ic < i1; ic += kt->mc) {
                int mcur = NST__MIN(kt->mc, i1 - ic);
                const float *ap;
                if (g->lower && ic + mcur <= jc) continue;
                if (g->apacked) ap = g->apacked + mpad * pc + (size_t)ic * kcur;
                else { nst__gemm_pack_a(g, abuf, ic, mcur, pc, kcur); ap = abuf; }
                for (jr = 0; jr < ncur; jr += nr) {
                    int ncr = NST__MIN(nr, ncur - jr);
                    const float *bp = bbuf + (size_t)jr * kcur;
                    if (stream_b) {
                        nst__pf_setup(&pf, g, jc + jr + nr, NST__MIN(nr, ncur - jr - nr), pc, kcur, (mcur + mr - 1) / mr);
                        nst__gemm_pack_b(g, bbuf + (size_t)jr * kcur, jc + jr, ncr, pc, kcur);
                    }
                    for (ir = 0; ir < mcur; ir += mr) {
                        int i = ic + ir, mrows = NST__MIN(mr, mcur - ir);
                        nst__pf_step(&pf);
                        if (g->lower && i + mrows <= jc + jr) continue;   /* tile strictly above the diagonal */
                        nst__gemm_tile(kt, kcur, ap + (size_t)ir * kcur, bp, g->c + i * g->ldc + jc + jr,
                                       g->ldc, mrows, ncr, g->alpha, beta,
                                       bias ? bias + i : NULL, relu);
                    }
                }
            }
        }
    }
}

/* C = beta*C (+bias, relu) when there is no product to add (k == 0 or alpha == 0). */
static void nst__gemm_scale_c(const nst__gemm_job *g) {
    int i, j;
    for (i = 0; i < g->m; i++) {
        float *cr = g->c + i * g->ldc, bi = g->bias ? g->bias[i] : 0.0f;
        for (j = 0; j < g->n; j++) {
            float r = g->beta != 0.0f ? g->beta * cr[j] : 0.0f;
            r += bi;
            cr[j] = g->relu && !(r > 0.0f) ? 0.0f : r;
        }
    }
}

/* Splits [0, total) in `parts` ranges aligned to `align`, as even as possible. */
static int nst__split_at(int total, int align, int parts, int t) {
    int units = (total + align - 1) / align, u = (int)((long long)units * t / parts);
    return NST__MIN(total, u * align);
}
/* SYRK rows: thread t gets rows up to n*sqrt((t+1)/nt), so the lower-triangle areas are equal. */
static int nst__split_tri(int total, int align, int parts, int t) {
    double f = sqrt((double)t / parts);
    int u = (int)(f * total / align + 0.5);
    return t >= parts ? total : NST__MIN(total, u * align);
}

static nst_status nst__gemm_run(nst__gemm_job *g, int nthreads) {
    const nst__gemm_kernel *kt = g->kt;
    int nt, split_n, parts, nkb;
    size_t abuf_n, bbuf_n, per;
    float *buf;
    double flops;
    if (g->m == 0 || g->n == 0) return NST_OK;
    if (g->k == 0 || g->alpha == 0.0f) { nst__gemm_scale_c(g); return NST_OK; }
    nkb = (g->k + kt->kc - 1) / kt->kc;
    g->kb = (g->k + nkb - 1) / nkb;
#if defined(NST__X86)
    g->simd_pack = kt->arch == NST_ARCH_AVX512 ? 2 : kt->arch == NST_ARCH_AVX2;
#endif
    /* Threads: at least ~20 MFLOP (~0.1 ms) each, so the fork/join and a late-starting thread on a busy
     * machine cost little; never more threads than panels in the split dimension. */
    nt = nst__resolve_threads(nthreads);
    flops = 2.0 * g->m * g->n * g->k;
    if (flops < 2e7 * nt) nt = NST__MAX(1, (int)(flops / 2e7));
    split_n = !g->lower && (g->n >= g->m || (g->n + kt->nr - 1) / kt->nr >= 4 * nt);
    parts = split_n ? (g->n + kt->nr - 1) / kt->nr : (g->m + kt->mr - 1) / kt->mr;
    if (nt > parts) nt = parts;
    if (nt < 1) nt = 1;
    abuf_n = g->apacked ? 0 : (size_t)kt->mc * g->kb;
    {   /* B buffer: the widest column range a thread packs at once, in whole panels */
        int units = (g->n + kt->nr - 1) / kt->nr, cols = (split_n ? (units + nt - 1) / nt : units) * kt->nr;
        bbuf_n = (size_t)NST__MIN(kt->nc, cols) * g->kb;
    }
    per = (abuf_n + bbuf_n + 15) & ~(size_t)15;
    buf = (float *)nst__aligned_alloc(per * nt * sizeof(float));
    if (!buf) return nst__err(NST_ERR_NOMEM, "sgemm: out of memory for %d x %lu packing floats", nt, (unsigned long)per);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        int t, step = 1, first = 0;
#ifdef _OPENMP
        first = omp_get_thread_num();
        step = omp_get_num_threads();   /* fewer than asked (nesting): each takes several ranges */
#endif
        for (t = first; t < nt; t += step) {
            float *ab = buf + per * t, *bb = ab + abuf_n;
            if (g->lower)
                nst__gemm_range(g, nst__split_tri(g->m, kt->mr, nt, t), nst__split_tri(g->m, kt->mr, nt, t + 1),
                                0, g->n, ab, bb);
            else if (split_n)
                nst__gemm_range(g, 0, g->m, nst__split_at(g->n, kt->nr, nt, t), nst__split_at(g->n, kt->nr, nt, t + 1),
                                ab, bb);
            else
                nst__gemm_range(g, nst__split_at(g->m, kt->mr, nt, t), nst__split_at(g->m, kt->mr, nt, t + 1),
                                0, g->n, ab, bb);
        }
    }
    nst__aligned_free(buf);
    return NST_OK;
}

static nst_status nst__gemm_check(const char *who, int trans_a, int trans_b, int m, int n, int k,
                                  const float *a, int lda, const float *b, int ldb, const float *c, int ldc) {
    if (m < 0 || n < 0 || k < 0) return nst__err(NST_ERR_ARGUMENT, "%s: negative size (%d, %d, %d)", who, m, n, k);
    if (m && n && !c) return nst__err(NST_ERR_ARGUMENT, "%s: C is NULL", who);
    if (ldc < NST__MAX(1, n)) return nst__err(NST_ERR_ARGUMENT, "%s: ldc %d < n %d", who, ldc, n);
    if (m && n && k) {
        if ((a && lda < NST__MAX(1, trans_a ? m : k)) || (b && ldb < NST__MAX(1, trans_b ? k : n)))
            return nst__err(NST_ERR_ARGUMENT, "%s: leading dimension too small (lda %d, ldb %d)", who, lda, ldb);
        if (!b) return nst__err(NST_ERR_ARGUMENT, "%s: B is NULL", who);
    }
    return NST_OK;
}

static nst_status nst__sgemm_fused(int nthreads, int trans_a, int trans_b, int m, int n, int k, float alpha,
                                   const float *a, int lda, const float *b, int ldb, float beta,
                                   float *c, int ldc, const float *bias, int relu) {
    nst__gemm_job g;
    nst_status s = nst__gemm_check("sgemm", trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc);
    if (s) return s;
    if (m && n && k && !a) return nst__err(NST_ERR_ARGUMENT, "sgemm: A is NULL");
    memset(&g, 0, sizeof g);
    g.kt = nst__gemm_kernel_for(nst__cpu_arch());
    g.trans_a = trans_a; g.trans_b = trans_b; g.m = m; g.n = n; g.k = k;
    g.alpha = alpha; g.beta = beta; g.a = a; g.b = b; g.lda = lda; g.ldb = ldb; g.c = c; g.ldc = ldc;
    g.bias = bias; g.relu = relu;
    return nst__gemm_run(&g, nthreads);
}

static nst_status nst__sgemm_ex(int nthreads, int trans_a, int trans_b, int m, int n, int k, float alpha,
                                const float *a, int lda, const float *b, int ldb, float beta,
                                float *c, int ldc) {
    return nst__sgemm_fused(nthreads, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, NULL, 0);
}

static NST__UNUSED nst_status nst__ssyrk_ex(int nthreads, int n, int k, float alpha, const float *a, int lda,
                                            float *c, int ldc) {
    nst__gemm_job g;
    int i, j;
    nst_status s = nst__gemm_check("ssyrk", 0, 1, n, n, k, a, lda, a, lda, c, ldc);
    if (s) return s;
    memset(&g, 0, sizeof g);
    g.kt = nst__gemm_kernel_for(nst__cpu_arch());
    g.trans_b = 1; g.m = n; g.n = n; g.k = k; g.alpha = alpha; g.beta = 0.0f;
    g.a = a; g.b = a; g.lda = lda; g.ldb = lda; g.c = c; g.ldc = ldc; g.lower = 1;
    s = nst__gemm_run(&g, nthreads);
    if (s) return s;
    for (i = 0; i < n; i++)
        for (j = i + 1; j < n; j++) c[(size_t)i * ldc + j] = c[(size_t)j * ldc + i];
    return NST_OK;
}

/* ---- pre-packed A ------------------------------------------------------------------------------------*/
typedef struct nst__sgemm_apack {
    const nst__gemm_kernel *kt;   /* the kernel the layout was made for */
    int m, k;
    float *data;                  /* K blocks one after another, each ceil(m/MR) panels of kb x MR */
} nst__sgemm_apack;

static NST__UNUSED void nst__sgemm_apack_free(nst__sgemm_apack *pk) {
    if (!pk) return;
    nst__aligned_free(pk->data);
    memset(pk, 0, sizeof *pk);
}

static NST__UNUSED nst_status nst__sgemm_pack_a(nst__sgemm_apack *pk, int trans_a, int m, int k,
                                                const float *a, int lda) {
    nst__gemm_job g;
    size_t mpad, total;
    int nkb, pc;
    if (!pk) return nst__err(NST_ERR_ARGUMENT, "sgemm_pack_a: NULL pack");
    memset(pk, 0, sizeof *pk);
    if (m < 0 || k < 0 || (m && k && (!a || lda < (trans_a ? m : k))))
        return nst__err(NST_ERR_ARGUMENT, "sgemm_pack_a: bad arguments (m %d, k %d, lda %d)", m, k, lda);
    memset(&g, 0, sizeof g);
    g.kt = nst__gemm_kernel_for(nst__cpu_arch());
    g.trans_a = trans_a; g.m = m; g.k = k; g.a = a; g.lda = lda;
#if defined(NST__X86)
    g.simd_pack = g.kt->arch == NST_ARCH_AVX512 ? 2 : g.kt->arch == NST_ARCH_AVX2;
#endif
    mpad = (size_t)nst__round_up(m, g.kt->mr);
    if (!nst__mul_ok(mpad, (size_t)k, &total) || !nst__mul_ok(total, sizeof(float), &total))
        return nst__err(NST_ERR_NOMEM, "sgemm_pack_a: %d x %d is too large", m, k);
    pk->data = (float *)nst__aligned_alloc(total);
    if (!pk->data) return nst__err(NST_ERR_NOMEM, "sgemm_pack_a: out of memory (%lu bytes)", (unsigned long)total);
    pk->kt = g.kt; pk->m = m; pk->k = k;
    if (k == 0) return NST_OK;
    nkb = (k + g.kt->kc - 1) / g.kt->kc;
    g.kb = (k + nkb - 1) / nkb;
    for (pc = 0; pc < k; pc += g.kb)
        nst__gemm_pack_a(&g, pk->data + mpad * pc, 0, m, pc, NST__MIN(g.kb, k - pc));
    return NST_OK;
}

static NST__UNUSED nst_status nst__sgemm_apacked(int nthreads, const nst__sgemm_apack *pk, int trans_b, int n,
                                                 float alpha, const float *b, int ldb, float beta,
                                                 float *c, int ldc, const float *bias, int relu) {
    nst__gemm_job g;
    nst_status s;
    if (!pk || (!pk->data && pk->m && pk->k)) return nst__err(NST_ERR_ARGUMENT, "sgemm_apacked: empty pack");
    s = nst__gemm_check("sgemm_apacked", 0, trans_b, pk->m, n, pk->k, NULL, 0, b, ldb, c, ldc);
    if (s) return s;
    memset(&g, 0, sizeof g);
    g.kt = pk->kt ? pk->kt : nst__gemm_kernel_for(nst__cpu_arch());
    g.trans_b = trans_b; g.m = pk->m; g.n = n; g.k = pk->k;
    g.alpha = alpha; g.beta = beta; g.b = b; g.ldb = ldb; g.c = c; g.ldc = ldc;
    g.bias = bias; g.relu = relu; g.apacked = pk->data;
    return nst__gemm_run(&g, nthreads);
}

NSTDEF nst_status nst_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
                            const float *a, int lda, const float *b, int ldb, float beta,
                            float *c, int ldc) {
    return nst__sgemm_ex(0, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
