/* The style layers' loss gradient at 512 px (relu1_1 .. relu5_1): g = mask(F > 0) . (g + D F), D c x c,
 * F c x hw (random, ~30% of F not positive), the GEMM path of nst__objective_lossgrad_fused (blocks of
 * 131072 / c columns for c < 256, else D packed once and nst__lossgrad_cols columns; each block a
 * 1-thread GEMM, then its mask pass) against the one-pass kernels (nst__lossgrad_onepass: the SIMD
 * kernels of the build, or with NST_ARCH=scalar the scalar one against the scalar GEMM). The variants
 * alternate within each rep; the figures are the best wall time and the best process CPU time per
 * thread (set OMP_WAIT_POLICY=passive so idle threads sleep), which a loaded machine distorts less than
 * the wall clock.
 *
 *   OMP_WAIT_POLICY=passive build/bench_lossgrad [--threads N] [--reps N] [--layers 0-4 ...]   */
#define NST_IMPLEMENTATION
#include "nst.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "bench_clock.h"


/* the GEMM path, as nst__objective_lossgrad_fused runs it without a content term */
static void lossgrad_gemm(int nt, int c, size_t hw, const float *d, const float *f, float *g) {
    nst__sgemm_apack pk;
    size_t nb;
    long nblk, b;
    int shared = c >= 256, simd = nst__simd_avx2();
    memset(&pk, 0, sizeof pk);
    if (shared) nst__sgemm_pack_a(&pk, 0, c, c, d, c);
    nb = shared ? nst__lossgrad_cols(c, hw, nt) : (size_t)(131072 / c);
    nblk = (long)NST__MAX((size_t)1, hw / nb);
    (void)simd;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
#endif
    for (b = 0; b < nblk; b++) {
        size_t j0 = (size_t)b * nb, j1 = b == nblk - 1 ? hw : j0 + nb;
        int ch, w = (int)(j1 - j0);
        if (shared) nst__sgemm_apacked(1, &pk, 0, w, 1.0f, f + j0, (int)hw, 1.0f, g + j0, (int)hw, NULL, 0);
        else nst__sgemm_ex(1, 0, 0, c, w, c, 1.0f, d, c, f + j0, (int)hw, 1.0f, g + j0, (int)hw);
        for (ch = 0; ch < c; ch++) nst__relu_backward_feat(g, f, (size_t)ch * hw + j0, (size_t)ch * hw + j1, simd);
    }
    nst__sgemm_apack_free(&pk);
}

int main(int argc, char **argv) {
    static const int cs[] = {64, 128, 256, 512, 512};
    int nt = 2, reps = 5, i, r, v, x, nk = 0, kidx[8], nv, lo = 0, hi = 4;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) nt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--layers") && i + 1 < argc && sscanf(argv[i + 1], "%d-%d", &lo, &hi) == 2) i++;
        else { fprintf(stderr, "usage: %s [--threads N] [--reps N] [--layers LO-HI (0-4)]\n", argv[0]); return 2; }
    }
    if (nt < 1) nt = 1;
    if (lo < 0) lo = 0;
    if (hi > 4) hi = 4;
    /* the one-pass kernels of the table: the scalar reference only with NST_ARCH=scalar (then the GEMM
     * path is scalar too), the SIMD ones this CPU runs otherwise */
    for (i = nst_get_arch() == NST_ARCH_SCALAR ? 0 : 1; i < (int)(sizeof nst__lg_kernels / sizeof *nst__lg_kernels); i++) {
        const char *nm = nst__lg_kernels[i].name;
        if (i > 0 && nst_get_arch() == NST_ARCH_SCALAR) continue;
        if ((strstr(nm, "avx512") && !nst__cpu()->has[NST_ARCH_AVX512]) ||
            (strstr(nm, "avx2") && !nst__cpu()->has[NST_ARCH_AVX2]))
            continue;
        kidx[nk++] = i;
    }
    nv = 1 + nk;
    printf("cpu: %s, %d thread(s), best of %d; ms: wall / CPU per thread\n", nst_cpu_string(), nt, reps);
    printf("%-24s %15s", "layer (c x hw)", "GEMM+mask");
    for (i = 0; i < nk; i++) printf(" %15s", nst__lg_kernels[kidx[i]].name);
    printf("  ratio (GEMM / best one-pass, CPU)\n");
    for (x = lo; x <= hi; x++) {
        int c = cs[x];
        size_t hw = (size_t)512 * 512 >> (2 * (x < 4 ? x : 4)), n = (size_t)c * hw, k;
        float *d = (float *)nst__aligned_alloc(sizeof(float) * (size_t)c * c);
        float *f = (float *)nst__aligned_alloc(sizeof(float) * n), *g = (float *)nst__aligned_alloc(sizeof(float) * n);
        double bw[8], bc[8], bestk = 1e30;
        nst__rng rng = {5};
        char name[32];
        if (!d || !f || !g) { fprintf(stderr, "out of memory\n"); return 1; }
        for (v = 0; v < nv; v++) bw[v] = bc[v] = 1e30;
        for (k = 0; k < (size_t)c * c; k++) d[k] = 1e-3f * ((float)nst__rng_uniform(&rng) - 0.5f);
        for (k = 0; k < n; k++) { f[k] = (float)nst__rng_uniform(&rng) - 0.3f; g[k] = 1e-3f * ((float)nst__rng_uniform(&rng) - 0.5f); }
        for (r = 0; r < reps; r++)
            for (v = 0; v < nv; v++) {
                double t0 = bench_cpu_seconds(), w0 = nst__now(), t, w;
                if (v == 0) lossgrad_gemm(nt, c, hw, d, f, g);
                else {
                    nst__lg_args la;
                    memset(&la, 0, sizeof la);
                    la.c = c; la.hw = hw; la.relu = 1; la.feat = f; la.g = g;
                    nst__lossgrad_onepass(&nst__lg_kernels[kidx[v - 1]], &la, d, nt);
                }
                w = nst__now() - w0;
                t = (bench_cpu_seconds() - t0) / nt;
                if (t < bc[v]) bc[v] = t;
                if (w < bw[v]) bw[v] = w;
            }
        snprintf(name, sizeof name, "relu%d_1 (%d x %lu)", x < 4 ? x + 1 : 5, c, (unsigned long)hw);
        printf("%-24s", name);
        for (v = 0; v < nv; v++) printf("   %6.2f /%6.2f", 1e3 * bw[v], 1e3 * bc[v]);
        for (v = 1; v < nv; v++) bestk = bc[v] < bestk ? bc[v] : bestk;
        printf("  %5.2f\n", bc[0] / bestk);
        nst__aligned_free(d); nst__aligned_free(f); nst__aligned_free(g);
    }
    return 0;
}
