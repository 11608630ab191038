/* The style layers' one-pass loss gradient (nst__lossgrad_onepass): every kernel of the build's table
 * (the scalar reference, AVX2 or NEON) against a double-precision reference on awkward shapes, with and
 * without content terms and the ReLU mask; the SIMD kernels against the scalar one; and the bytes of
 * each kernel the same on 1, 2 and 3 threads and for any strip width. */
#define NST_IMPLEMENTATION
#include "nst.h"
#include "nst_test.h"
#include <stdlib.h>

static nst__rng rng = {4242};
static float *rand_vec(size_t n, double lo, double hi) { return nst_t_rand_vec(&rng, n, lo, hi); }
static const int cs[] = {1, 7, 13, 17, 33, 64, 128};
static const size_t hws[] = {1, 7, 13, 33, 1031};

static int kernel_runs(int ki) {
    const char *nm = nst__lg_kernels[ki].name;
#if defined(NST__X86)
    if (strstr(nm, "avx2")) return nst__cpu()->has[NST_ARCH_AVX2];
    if (strstr(nm, "avx512")) return nst__cpu()->has[NST_ARCH_AVX512];
#endif
    (void)nm;
    return 1;
}

/* g := onepass(kernel ki, nsub, threads) from g0; returns g (malloc'd) */
static float *run(int ki, int nsub, int nt, int c, size_t hw, const float *d, const float *f, const float *g0, int nct,
                  float *const *p, int relu) {
    nst__lg_args la;
    float *g = (float *)malloc(sizeof(float) * (size_t)c * hw);
    int k;
    memcpy(g, g0, sizeof(float) * (size_t)c * hw);
    memset(&la, 0, sizeof la);
    la.c = c; la.hw = hw; la.relu = relu; la.feat = f; la.g = g; la.nct = nct;
    for (k = 0; k < nct; k++) { la.ct_sc[k] = 0.25f + 0.5f * (float)k; la.ct_p[k] = p[k]; }
    nst__lg_nsub_forced = nsub;
    CHECK_OK(nst__lossgrad_onepass(&nst__lg_kernels[ki], &la, d, nt));
    nst__lg_nsub_forced = 0;
    return g;
}

TEST(onepass_matches_reference) {
    int nk = (int)(sizeof nst__lg_kernels / sizeof *nst__lg_kernels), ci, hi, ki, var, quick = getenv("NST_TEST_QUICK") != NULL;
    for (ci = 0; ci < (int)(sizeof cs / sizeof *cs); ci++)
        for (hi = 0; hi < (int)(sizeof hws / sizeof *hws); hi++)
            for (var = 0; var < 4; var++) {
                int c = cs[ci], nct = var >> 1, relu = var & 1, bad = 0;
                size_t hw = hws[hi], n = (size_t)c * hw, e;
                float *d, *f, *g0, *p[2], *gs = NULL;
                if (quick && c >= 64 && hw > 1000) continue;   /* under qemu: the double reference is slow */
                d = rand_vec((size_t)c * c, -0.5, 0.5); f = rand_vec(n, -0.3, 0.7); g0 = rand_vec(n, -1, 1);
                p[0] = rand_vec(n, -0.5, 0.5);
                p[1] = rand_vec(n, -0.5, 0.5);
                f[n / 2] = 0.0f;   /* zero is masked out */
                for (ki = 0; ki < nk; ki++) {
                    float *g;
                    if (!kernel_runs(ki)) continue;
                    g = run(ki, 0, 1, c, hw, d, f, g0, nct, p, relu);
                    for (e = 0; e < n && !bad; e++) {
                        size_t i = e / hw, j = e % hw;
                        double ref = g0[e], scale = fabs(ref) + 1, acc = 0;
                        int k;
                        for (k = 0; k < nct; k++) {
                            double u = (0.25 + 0.5 * k) * ((double)f[e] - p[k][e]);
                            ref += u; scale += fabs(u);
                        }
                        for (k = 0; k < c; k++) {
                            double u = (double)d[i * c + k] * f[(size_t)k * hw + j];
                            acc += u; scale += fabs(u);
                        }
                        ref += acc;
                        if (relu && !(f[e] > 0.0f)) ref = 0.0;
                        if (fabs(g[e] - ref) > 4e-6 * scale || (relu && !(f[e] > 0.0f) && g[e] != 0.0f)) {
                            CHECK_MSG(0, "%s: c %d hw %lu content %d relu %d: (%lu,%lu) %.8g, reference %.8g",
                                      nst__lg_kernels[ki].name, c, (unsigned long)hw, nct, relu, (unsigned long)i,
                                      (unsigned long)j, g[e], ref);
                            bad = 1;
                        }
                    }
                    if (!gs) gs = g;   /* the scalar reference is the table's first */
                    else {
                        for (e = 0; e < n && !bad; e++)
                            if (fabs(g[e] - gs[e]) > 4e-6 * (fabs(gs[e]) + c)) {
                                CHECK_MSG(0, "%s vs scalar: c %d hw %lu at %lu", nst__lg_kernels[ki].name, c,
                                          (unsigned long)hw, (unsigned long)e);
                                bad = 1;
                            }
                        free(g);
                    }
                }
                free(gs); free(d); free(f); free(g0); free(p[0]); free(p[1]);
            }
}

/* The sum of each element runs k = 0..c-1 in one accumulator whatever the strip or thread: 1, 2 and 3
 * threads and strips of 1, 2, 3 subpanels or the default, the same bytes. */
TEST(onepass_independent_of_threads_and_strips) {
    static const int nsubs[] = {0, 1, 3, 2};
    int nk = (int)(sizeof nst__lg_kernels / sizeof *nst__lg_kernels), ci, hi, ki, v;
    for (ki = 0; ki < nk; ki++) {
        if (!kernel_runs(ki)) continue;
        for (ci = 2; ci < (int)(sizeof cs / sizeof *cs); ci += 2)
            for (hi = 2; hi < (int)(sizeof hws / sizeof *hws); hi++) {
                int c = cs[ci];
                size_t hw = hws[hi] * 3, n = (size_t)c * hw;
                float *d = rand_vec((size_t)c * c, -0.5, 0.5), *f = rand_vec(n, -0.3, 0.7), *g0 = rand_vec(n, -1, 1);
                float *p[1], *ref = NULL;
                p[0] = rand_vec(n, -0.5, 0.5);
                for (v = 0; v < 4; v++) {
                    float *g = run(ki, nsubs[v], v == 0 ? 1 : v == 1 ? 2 : 3, c, hw, d, f, g0, 1, p, 1);
                    if (!ref) ref = g;
                    else {
                        CHECK_MSG(memcmp(ref, g, n * sizeof(float)) == 0, "%s: c %d hw %lu: %d subpanels, %d threads differ",
                                  nst__lg_kernels[ki].name, c, (unsigned long)hw, nsubs[v], v == 1 ? 2 : 3);
                        free(g);
                    }
                }
                free(ref); free(d); free(f); free(g0); free(p[0]);
            }
    }
}

int main(int argc, char **argv) {
    nst_test_begin(argc, argv);
    RUN(onepass_matches_reference);
    RUN(onepass_independent_of_threads_and_strips);
    return nst_test_end("test_lossgrad");
}
