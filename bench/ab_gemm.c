/* ab_gemm: two builds of nst's GEMM in one process, their calls alternated (bench/ab_gemm.sh builds it).
 *
 *   bench/ab_gemm.sh REV M N K [REPS [THREADS]]      (M = syrk: nst__ssyrk_ex of N x K)
 *
 * On a shared machine the rate of one build drifts with the load by more than the few per cent a GEMM
 * change is worth; two programs run one after the other see different loads. Here side "a" (REV's nst.h)
 * and side "b" (the working tree's) are linked into one program and called in turn, REPS pairs of single
 * calls; the best call of each side and the ratio b/a are printed (1 thread: the thread's CPU time; more:
 * wall time). The operands come from malloc (16-byte aligned, as a caller's may be), not the 64-byte
 * aligned buffers of bench_gemm, so the two benches can disagree where alignment matters.
 *
 * The file is compiled three times: with AB_SIDE=a and AB_SIDE=b as one translation unit of nst.h each
 * (NST_STATIC, so the two copies do not clash), and once as the driver. */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 199309L   /* clock_gettime */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(AB_SIDE)
#define NST_STATIC
#define NST_IMPLEMENTATION
#include "nst.h"
#define AB_CAT2(x, y) x##y
#define AB_CAT(x, y) AB_CAT2(x, y)
int AB_CAT(ab_run_, AB_SIDE)(int nt, int syrk, int m, int n, int k, const float *a, const float *b, float *c);
int AB_CAT(ab_run_, AB_SIDE)(int nt, int syrk, int m, int n, int k, const float *a, const float *b, float *c) {
    return syrk ? nst__ssyrk_ex(nt, n, k, 1.0f, a, k, c, n) != NST_OK
                : nst__sgemm_ex(nt, 0, 0, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n) != NST_OK;
}
#else
int ab_run_a(int nt, int syrk, int m, int n, int k, const float *a, const float *b, float *c);
int ab_run_b(int nt, int syrk, int m, int n, int k, const float *a, const float *b, float *c);

static double seconds(int thread_cpu) {
    struct timespec ts;
    clock_gettime(thread_cpu ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    int syrk, m, n, k, reps, nt, r, side;
    size_t i, na, nb, nc;
    float *a, *b, *c;
    double best[2] = {1e30, 1e30}, sum[2] = {0, 0}, flops;
    if (argc < 5) {
        fprintf(stderr, "usage: %s M|syrk N K REPS [THREADS]\n", argv[0]);
        return 2;
    }
    syrk = !strcmp(argv[1], "syrk");
    n = atoi(argv[2]);
    k = atoi(argv[3]);
    m = syrk ? n : atoi(argv[1]);
    reps = atoi(argv[4]);
    nt = argc > 5 ? atoi(argv[5]) : 1;
    if (m < 1 || n < 1 || k < 1 || reps < 1 || nt < 1) { fprintf(stderr, "bad arguments\n"); return 2; }
    na = (size_t)m * k; nb = syrk ? 1 : (size_t)k * n; nc = (size_t)m * n;
    a = (float *)malloc(na * sizeof(float));
    b = (float *)malloc(nb * sizeof(float));
    c = (float *)malloc(nc * sizeof(float));
    if (!a || !b || !c) { fprintf(stderr, "out of memory\n"); return 1; }
    for (i = 0; i < na; i++) a[i] = (float)(i % 13) * 0.01f - 0.06f;
    for (i = 0; i < nb; i++) b[i] = (float)(i % 11) * 0.01f - 0.05f;
    memset(c, 0, nc * sizeof(float));
    flops = syrk ? (double)n * (n + 1) * k : 2.0 * m * n * k;
    for (r = 0; r < reps; r++)
        for (side = 0; side < 2; side++) {
            double t0 = seconds(nt == 1), t;
            if ((side ? ab_run_b : ab_run_a)(nt, syrk, m, n, k, a, b, c)) { fprintf(stderr, "call failed\n"); return 1; }
            t = seconds(nt == 1) - t0;
            if (t < best[side]) best[side] = t;
            sum[side] += t;
        }
    printf("%s %d %d %d, %d thread%s, %d pairs: a %.1f GFLOP/s, b %.1f GFLOP/s (best call); b/a %.3f best, %.3f mean\n",
           syrk ? "syrk" : "gemm", m, n, k, nt, nt > 1 ? "s" : "", reps, flops / best[0] * 1e-9,
           flops / best[1] * 1e-9, best[0] / best[1], sum[0] / sum[1]);
    free(a); free(b); free(c);
    return 0;
}
#endif
