/* bench_gemm: single-precision GEMM throughput.
 *
 *   build/bench_gemm [--quick] [--isa scalar|avx2|avx512|neon|all|best|none] [--threads N] [--csv]
 *                    [--vgg-only] [--cpu-time] [--proc-time] [--mean] [--shape M,N,K|syrk,N,K]...
 *
 * --quick caps N at 65536 (the first VGG shape then has a quarter of its pixels); --cpu-time times the
 * 1-thread rows with the thread's CPU clock, so time spent descheduled by other processes on a busy
 * machine does not count (2-thread rows are always wall time); --shape "M,N,K" (repeatable) runs only
 * those shapes of the table; --proc-time times every row by the process's CPU clock divided by the
 * thread count (run with OMP_WAIT_POLICY=passive so waiting threads sleep): what the threads computed,
 * on a loaded machine, but not how evenly. --mean reports the mean rate over the timed calls (at least
 * 0.3 s of them) instead of the best call: with another process busy on the machine, what a caller gets
 * (the best call only shows that a quiet moment came by).
 *
 * Measures the FMA peak with a register-only FMA loop (per vector width, 1 and 2 threads), then GFLOP/s
 * of nst's GEMM per ISA and thread count on squares 64..2048 and the shapes VGG-19 makes at 512x512
 * (C[cout][pixels] = W[cout][cin*9] x cols[cin*9][pixels]), with % of the matching peak. Best of
 * several repetitions; the default run takes about a minute.
 *
 * Built with -DNST_BENCH_CBLAS and linked with a BLAS (bench/compare.sh does this for OpenBLAS and BLIS),
 * the same program times cblas_sgemm instead, with the thread count taken from the BLAS's environment
 * variables; --csv output from both is what compare.sh joins into one table. */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 199309L   /* clock_gettime */
#endif
#define NST_IMPLEMENTATION
#include "nst.h"
#include "bench_clock.h"

#ifdef NST_BENCH_CBLAS
/* cblas_sgemm with int enums: CblasRowMajor = 101, CblasNoTrans = 111 (same ABI as the header's enums). */
void cblas_sgemm(int order, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc);
/* CblasLower = 122: C's lower triangle = alpha A A^T (row-major A[n][k]), the Gram matrix */
void cblas_ssyrk(int order, int uplo, int trans, int n, int k, float alpha, const float *a, int lda, float beta,
                 float *c, int ldc);
#endif

/* ---- FMA peak ----------------------------------------------------------------------------------------*/
#if defined(NST__X86)
NST__TARGET_AVX2 static float fma_loop_256(long iters) {   /* 12 chains: 16 ymm registers in all */
    __m256 acc[12], m = _mm256_set1_ps(0.999999f), d = _mm256_set1_ps(1e-7f), s;
    long it;
    int j;
    for (j = 0; j < 12; j++) acc[j] = _mm256_set1_ps((float)j);
    for (it = 0; it < iters; it++)
        NST__UNROLL for (j = 0; j < 12; j++) acc[j] = _mm256_fmadd_ps(acc[j], m, d);
    s = acc[0];
    for (j = 1; j < 12; j++) s = _mm256_add_ps(s, acc[j]);
    return _mm256_cvtss_f32(s);
}
#if defined(NST__X86_AVX512)
NST__TARGET_AVX512 static float fma_loop_512(long iters) {
    __m512 acc[16], m = _mm512_set1_ps(0.999999f), d = _mm512_set1_ps(1e-7f), s;
    long it;
    int j;
    for (j = 0; j < 16; j++) acc[j] = _mm512_set1_ps((float)j);
    for (it = 0; it < iters; it++)
        NST__UNROLL for (j = 0; j < 16; j++) acc[j] = _mm512_fmadd_ps(acc[j], m, d);
    s = acc[0];
    for (j = 1; j < 16; j++) s = _mm512_add_ps(s, acc[j]);
    return _mm512_reduce_add_ps(s);
}
#endif
#endif
#if defined(NST__NEON)
static float fma_loop_128(long iters) {
    float32x4_t acc[16], m = vdupq_n_f32(0.999999f), d = vdupq_n_f32(1e-7f), s;
    long it;
    int j;
    for (j = 0; j < 16; j++) acc[j] = vdupq_n_f32((float)j);
    for (it = 0; it < iters; it++)
        NST__UNROLL for (j = 0; j < 16; j++) acc[j] = vfmaq_f32(d, acc[j], m);
    s = acc[0];
    for (j = 1; j < 16; j++) s = vaddq_f32(s, acc[j]);
    return vgetq_lane_f32(s, 0);
}
#endif

static volatile float sink;

/* GFLOP/s of the FMA loop of `width` floats on nt threads: the sum over threads of each thread's best
 * rate over many short tries (~5 ms each). */
static double fma_peak(int width, int nt) {
    long iters = 2000000;
    double total = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) reduction(+ : total)
#endif
    {
        double best = 0;
        int r;
        for (r = 0; r < 15; r++) {
            double t0 = bench_thread_seconds(), t;
            float s = 0;
#if defined(NST__X86)
            if (width == 8) s = fma_loop_256(iters * 4 / 3);   /* 12 chains: same flops as 16 */
#if defined(NST__X86_AVX512)
            if (width == 16) s = fma_loop_512(iters);
#endif
#endif
#if defined(NST__NEON)
            if (width == 4) s = fma_loop_128(iters);
#endif
            sink = s;
            t = bench_thread_seconds() - t0;
            if (t > 0 && 16.0 * 2 * width * iters / t * 1e-9 > best) best = 16.0 * 2 * width * iters / t * 1e-9;
        }
        total += best;
    }
    (void)nt;
    return total;
}

/* ---- GEMM timing -------------------------------------------------------------------------------------*/
static int use_cpu_time;   /* --cpu-time: 1-thread rows timed by the thread's CPU clock */
static int use_proc_time;  /* --proc-time: every row timed by the process's CPU clock / threads */
static int use_mean;       /* --mean: the mean rate over the calls, not the best call's */

/* CPU seconds of the whole process divided by nt: with OMP_WAIT_POLICY=passive (idle threads sleep) the
 * time the threads computed, whatever else ran on the machine; no measure of load balance. */
static double proc_seconds(int nt) { return bench_cpu_seconds() / nt; }

/* syrk: the Gram matrix C = A A^T of A[m][k] (n = m; b unused), counted as its useful m(m+1)k FLOP. */
static double time_gemm(int nt, int m, int n, int k, const float *a, const float *b, float *c, int syrk) {
    double best = 1e30, total = 0, flops = syrk ? (double)m * (m + 1) * k : 2.0 * m * n * k;
    int r, cpu = use_cpu_time && nt == 1;
    for (r = 0; use_mean ? total < 0.3 || r < 3 : r < 20 && (r < 3 || total < 0.3); r++) {
        double t0 = use_proc_time ? proc_seconds(nt) : cpu ? bench_thread_seconds() : nst__now(), t;
#ifdef NST_BENCH_CBLAS
        (void)nt;
        if (syrk) cblas_ssyrk(101, 122, 111, m, k, 1.0f, a, k, 0.0f, c, m);
        else cblas_sgemm(101, 111, 111, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
#else
        if (syrk ? nst__ssyrk_ex(nt, m, k, 1.0f, a, k, c, m) != NST_OK
                 : nst__sgemm_ex(nt, 0, 0, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n) != NST_OK) {
            fprintf(stderr, "sgemm failed: %s\n", nst_last_error());
            exit(1);
        }
#endif
        t = (use_proc_time ? proc_seconds(nt) : cpu ? bench_thread_seconds() : nst__now()) - t0;
        total += t;
        if (t < best) best = t;
    }
    return use_mean ? flops * r / total * 1e-9 : flops / best * 1e-9;
}

typedef struct { int m, n, k; const char *what; } shape;
static const shape shapes[] = {
    {64, 64, 64, "square"}, {128, 128, 128, "square"}, {256, 256, 256, "square"}, {512, 512, 512, "square"},
    {1024, 1024, 1024, "square"}, {2048, 2048, 2048, "square"},
    {64, 262144, 576, "vgg conv1_2 @512"}, {128, 65536, 1152, "vgg conv2_2"}, {256, 16384, 1152, "vgg conv3_x"},
    {512, 4096, 4608, "vgg conv4_x"}, {512, 1024, 4608, "vgg conv5_x"},
    /* the style loss at 512 px: Gram backward C[c][pixels] = (G - A)[c][c] x F[c][pixels] (wide, short K),
     * and the Gram matrix itself, F F^T, as a plain product (long K) */
    {64, 262144, 64, "gram bwd relu1_1"}, {128, 65536, 128, "gram bwd relu2_1"}, {256, 16384, 256, "gram bwd relu3_1"},
    {64, 64, 262144, "gram fwd relu1_1"}, {128, 128, 65536, "gram fwd relu2_1"},
    /* the Grams as nst computes them (nst__ssyrk_ex: the lower triangle, mirrored) against cblas_ssyrk */
    {64, 64, 262144, "syrk relu1_1"}, {128, 128, 65536, "syrk relu2_1"}, {256, 256, 16384, "syrk relu3_1"},
    {512, 512, 4096, "syrk relu4_1"}};
#define NSHAPES ((int)(sizeof shapes / sizeof shapes[0]))

int main(int argc, char **argv) {
    int quick = 0, csv = 0, vgg_only = 0, only_threads = 0, i, s, t, ai, nonly = 0, only[NSHAPES];
    const char *isa = "all";
    size_t amax = 0, bmax = 0, cmax = 0, z;
    float *a, *b, *c;
    double peak[3][3];   /* [width class: 0 scalar-ish, 1 avx2/neon, 2 avx512][threads] */
    nst_arch archs[4] = {NST_ARCH_AVX512, NST_ARCH_AVX2, NST_ARCH_NEON, NST_ARCH_SCALAR};
    nst__rng rng = {1};
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--csv")) csv = 1;
        else if (!strcmp(argv[i], "--vgg-only")) vgg_only = 1;
        else if (!strcmp(argv[i], "--cpu-time")) use_cpu_time = 1;
        else if (!strcmp(argv[i], "--proc-time")) use_proc_time = 1;
        else if (!strcmp(argv[i], "--mean")) use_mean = 1;
        else if (!strcmp(argv[i], "--isa") && i + 1 < argc) isa = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) only_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc) {   /* "M,N,K" or "syrk,N,K" of the table; repeatable */
            int m, n, k;
            i++;
            for (s = 0; s < NSHAPES; s++) {   /* "syrk,N,K": the Gram rows */
                int sy = !strncmp(shapes[s].what, "syrk", 4);
                if (sy ? sscanf(argv[i], "syrk,%d,%d", &m, &k) == 2 && m == shapes[s].m && k == shapes[s].k
                       : sscanf(argv[i], "%d,%d,%d", &m, &n, &k) == 3 && m == shapes[s].m && n == shapes[s].n && k == shapes[s].k)
                    break;
            }
            if (s == NSHAPES) { fprintf(stderr, "--shape %s: not a shape of the table\n", argv[i]); return 2; }
            if (nonly < NSHAPES) only[nonly++] = s;
        }
        else { fprintf(stderr, "usage: %s [--quick] [--csv] [--vgg-only] [--cpu-time] [--proc-time] [--mean] [--isa NAME|all|best|none] [--threads N] [--shape M,N,K]...\n", argv[0]); return 2; }
    }
    for (s = 0; s < NSHAPES; s++) {
        size_t n = shapes[s].n;
        if (quick && n > 65536) n = 65536;
        if ((size_t)shapes[s].m * shapes[s].k > amax) amax = (size_t)shapes[s].m * shapes[s].k;
        if ((size_t)shapes[s].k * n > bmax) bmax = (size_t)shapes[s].k * n;
        if ((size_t)shapes[s].m * n > cmax) cmax = (size_t)shapes[s].m * n;
    }
    a = (float *)nst__aligned_alloc(amax * sizeof(float));
    b = (float *)nst__aligned_alloc(bmax * sizeof(float));
    c = (float *)nst__aligned_alloc(cmax * sizeof(float));
    if (!a || !b || !c) { fprintf(stderr, "out of memory\n"); return 1; }
    for (z = 0; z < amax; z++) a[z] = (float)nst__rng_uniform(&rng) - 0.5f;
    for (z = 0; z < bmax; z++) b[z] = (float)nst__rng_uniform(&rng) - 0.5f;
    memset(c, 0, cmax * sizeof(float));

    memset(peak, 0, sizeof peak);
#ifndef NST_BENCH_CBLAS
    if (!csv) printf("cpu: %s\n", nst_cpu_string());
#endif
    for (t = 1; t <= 2; t++) {
#if defined(NST__X86)
        peak[1][t] = fma_peak(8, t);
#if defined(NST__X86_AVX512)
        if (nst__cpu()->has[NST_ARCH_AVX512]) peak[2][t] = fma_peak(16, t);
#endif
#elif defined(NST__NEON)
        peak[1][t] = fma_peak(4, t);
#endif
        if (!csv) printf("FMA peak, %d thread%s: %.1f GFLOP/s (256-bit)  %.1f GFLOP/s (512-bit)\n", t, t > 1 ? "s" : "",
                         peak[1][t], peak[2][t]);
    }
    if (!csv) printf("\n%-20s %-7s %3s %9s %7s\n", "shape (M N K)", "isa", "thr", "GFLOP/s", "%peak");
    for (ai = 0; ai < 4; ai++) {
        nst_arch arch = archs[ai];
        const char *name = nst__arch_name(arch);
#ifdef NST_BENCH_CBLAS
        if (ai) break;
        name = "blas";
        if (!only_threads) only_threads = 1;   /* the BLAS takes its count from the environment */
#else
        if (!nst__cpu()->has[arch]) continue;
        if (!strcmp(isa, "best") ? arch != nst__cpu()->best : strcmp(isa, "all") && strcmp(isa, name)) continue;
        nst_set_arch(arch);
#endif
        for (t = 1; t <= 2; t++) {
            if (only_threads && t != only_threads) continue;
            for (s = 0; s < NSHAPES; s++) {
                int m = shapes[s].m, n = shapes[s].n, k = shapes[s].k;
                double g, pk;
                char label[64];
                if (vgg_only && !strcmp(shapes[s].what, "square")) continue;
                if (nonly) {
                    int q, hit = 0;
                    for (q = 0; q < nonly; q++) hit |= only[q] == s;
                    if (!hit) continue;
                }
                if (quick && n > 65536) n = 65536;
                if (arch == NST_ARCH_SCALAR && (double)m * n * k > 2e8) continue;   /* too slow to matter */
                g = time_gemm(t, m, n, k, a, b, c, !strncmp(shapes[s].what, "syrk", 4));
                pk = peak[arch == NST_ARCH_AVX512 ? 2 : 1][t];
#ifdef NST_BENCH_CBLAS
                pk = peak[2][t] > 0 ? peak[2][t] : peak[1][t];
#endif
                if (!strncmp(shapes[s].what, "syrk", 4)) snprintf(label, sizeof label, "syrk %d %d", m, k);
                else snprintf(label, sizeof label, "%d %d %d", m, n, k);
                if (csv) printf("%s,%s,%d,%.1f,%.1f\n", label, name, t, g, pk > 0 ? 100.0 * g / pk : 0.0);
                else printf("%-20s %-7s %3d %9.1f %6.1f%%\n", label, name, t, g, pk > 0 ? 100.0 * g / pk : 0.0);
                fflush(stdout);
            }
        }
    }
    nst__aligned_free(a);
    nst__aligned_free(b);
    nst__aligned_free(c);
    return 0;
}
