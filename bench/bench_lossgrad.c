/* The style loss gradient's product and ReLU mask at the 512 px style layers: g += D F, then g = 0 where
 * !(F > 0), with D c x c and F c x hw (random, ~30% of F not positive), the way nst__objective_lossgrad_fused
 * does it now (the mask fused into the GEMM's tiles) against the way before (the GEMM, then a mask pass).
 *
 *   build/bench_lossgrad [--threads N] [--reps N]
 *
 * c < 256: before, blocks of 131072 / c columns, each its own 1-thread GEMM + mask pass, over the threads;
 *          now one nst__sgemm_masked over the layer.  c >= 256: D packed once, blocks of nst__lossgrad_cols
 *          columns, GEMM + mask pass before, masked GEMM now. The two alternate in each rep; the figure is
 *          the best process CPU time per thread (set OMP_WAIT_POLICY=passive so idle threads sleep), which
 *          a loaded machine distorts less than the wall clock. */
#define NST_IMPLEMENTATION
#include "nst.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_seconds(void) {
#if defined(CLOCK_PROCESS_CPUTIME_ID)
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
#else
    return (double)clock() / CLOCKS_PER_SEC;
#endif
}

/* fused: 0 = GEMM then mask pass (before), 1 = the mask in the GEMM (now) */
static void lossgrad(int nt, int c, size_t hw, const float *d, const float *f, float *g, int fused) {
    nst__sgemm_apack pk;
    size_t nb;
    long nblk, b;
    if (c < 256 && fused) {
        nst__sgemm_masked(nt, 0, 0, c, (int)hw, c, 1.0f, d, c, f, (int)hw, 1.0f, g, (int)hw, f, (int)hw);
        return;
    }
    if (c >= 256) nst__sgemm_pack_a(&pk, 0, c, c, d, c);
    nb = c >= 256 ? nst__lossgrad_cols(c, hw, nt) : (size_t)(131072 / c);
    nblk = (long)(hw / nb);
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
#endif
    for (b = 0; b < nblk; b++) {
        size_t j0 = (size_t)b * nb, j1 = b == nblk - 1 ? hw : j0 + nb;
        int ch, w = (int)(j1 - j0);
        if (c >= 256)
            nst__sgemm_apacked(1, &pk, 0, w, 1.0f, f + j0, (int)hw, 1.0f, g + j0, (int)hw, NULL, 0,
                               fused ? f + j0 : NULL, (int)hw);
        else
            nst__sgemm_ex(1, 0, 0, c, w, c, 1.0f, d, c, f + j0, (int)hw, 1.0f, g + j0, (int)hw);
        if (!fused)
            for (ch = 0; ch < c; ch++) nst__relu_backward_feat(g, f, (size_t)ch * hw + j0, (size_t)ch * hw + j1, nst__simd_avx2());
    }
    if (c >= 256) nst__sgemm_apack_free(&pk);
}

int main(int argc, char **argv) {
    static const int cs[] = {64, 128, 256, 512};
    int nt = 2, reps = 5, i, r, v, x;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) nt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else { fprintf(stderr, "usage: %s [--threads N] [--reps N]\n", argv[0]); return 2; }
    }
    if (nt < 1) nt = 1;
    printf("cpu: %s, %d thread(s), best of %d, CPU ms per thread\n", nst_cpu_string(), nt, reps);
    printf("%-24s %12s %12s %6s\n", "layer (c x hw)", "GEMM+mask", "masked GEMM", "ratio");
    for (x = 0; x < 4; x++) {
        int c = cs[x];
        size_t hw = (size_t)512 * 512 >> (2 * x), n = (size_t)c * hw, k;
        float *d = (float *)nst__aligned_alloc(sizeof(float) * (size_t)c * c);
        float *f = (float *)nst__aligned_alloc(sizeof(float) * n), *g = (float *)nst__aligned_alloc(sizeof(float) * n);
        double best[2] = {1e30, 1e30};
        nst__rng rng = {5};
        char name[32];
        if (!d || !f || !g) { fprintf(stderr, "out of memory\n"); return 1; }
        for (k = 0; k < (size_t)c * c; k++) d[k] = (float)nst__rng_uniform(&rng) - 0.5f;
        for (k = 0; k < n; k++) { f[k] = (float)nst__rng_uniform(&rng) - 0.3f; g[k] = 1e-3f * ((float)nst__rng_uniform(&rng) - 0.5f); }
        for (r = 0; r < reps; r++)
            for (v = 0; v < 2; v++) {
                double t0 = cpu_seconds(), t;
                lossgrad(nt, c, hw, d, f, g, v);
                t = (cpu_seconds() - t0) / nt;
                if (t < best[v]) best[v] = t;
            }
        snprintf(name, sizeof name, "relu%d_1 (%d x %lu)", x + 1, c, (unsigned long)hw);
        printf("%-24s %12.2f %12.2f %6.2f\n", name, 1e3 * best[0], 1e3 * best[1], best[0] / best[1]);
        nst__aligned_free(d); nst__aligned_free(f); nst__aligned_free(g);
    }
    return 0;
}
