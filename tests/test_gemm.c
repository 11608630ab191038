/* GEMM tests: every micro-kernel of every ISA this CPU has against a double-precision reference (all
 * m in 1..MR, n in 1..NR, k around KC, alpha/beta/bias/ReLU variants, strided C, NaN in C with beta 0),
 * the full GEMM on awkward sizes with all transpose combinations, SYRK, the fused and pre-packed entry
 * points, determinism across thread counts, and argument errors.
 *
 * Tolerance: |got - ref| <= tol * (|alpha| * sum_p |a_ip||b_pj| + |beta c_ij| + |bias_i|) + 1e-30, with
 * tol per ISA below (float accumulation over k <= 3*KC+5 in the kernel's order: the random-walk error is
 * ~sqrt(k) * 2^-24, the bound allows for sums of same-sign terms too).
 * Environment: NST_TEST_KMAX=N caps the kernel sweep's k (qemu runs, tests/neon.sh). */
#define NST_IMPLEMENTATION
#include "nst.h"
#include "nst_test.h"
#ifndef NST_T_PROGRAM
#define NST_T_PROGRAM "test_gemm"
#endif

static double nst_t_tol(nst_arch a) {
    switch (a) {
    case NST_ARCH_SCALAR: return 2e-5;   /* separate multiply and add */
    case NST_ARCH_AVX2: return 2e-5;     /* FMA */
    case NST_ARCH_AVX512: return 2e-5;   /* FMA */
    case NST_ARCH_NEON: return 2e-5;     /* FMA */
    default: return 2e-5;
    }
}

static const nst_arch nst_t_archs[] = {NST_ARCH_SCALAR, NST_ARCH_AVX2, NST_ARCH_AVX512, NST_ARCH_NEON};
#define NST_T_NARCH 4

static void fill(float *x, size_t n, nst__rng *r) {
    size_t i;
    for (i = 0; i < n; i++) x[i] = (float)(2.0 * nst__rng_uniform(r) - 1.0);
}

/* Reference: C = relu?(alpha * op(A) op(B) + beta * C0 + bias), in double; err = the bound's scale. */
static void ref_gemm(int ta, int tb, int m, int n, int k, double alpha, const float *a, int lda, const float *b,
                     int ldb, double beta, const float *c0, int ldc, const float *bias, int relu,
                     double *out, double *scale) {
    int i, j, p;
    for (i = 0; i < m; i++)
        for (j = 0; j < n; j++) {
            double s = 0, sa = 0, r;
            for (p = 0; p < k; p++) {
                double x = ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
                double y = tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
                s += x * y;
                sa += fabs(x * y);
            }
            r = alpha * s + (beta != 0.0 ? beta * c0[(size_t)i * ldc + j] : 0.0) + (bias ? bias[i] : 0.0);
            if (relu && r < 0) r = 0;
            out[(size_t)i * n + j] = r;
            scale[(size_t)i * n + j] = fabs(alpha) * sa + (beta != 0.0 ? fabs(beta * c0[(size_t)i * ldc + j]) : 0.0) +
                                       (bias ? fabs(bias[i]) : 0.0);
        }
}

/* Compares C (m x n, stride ldc) with the reference; returns the number of bad elements (reports one). */
static int compare(const char *what, int m, int n, const float *c, int ldc, const double *ref, const double *scale,
                   double tol) {
    int i, j, bad = 0;
    for (i = 0; i < m; i++)
        for (j = 0; j < n; j++) {
            double got = c[(size_t)i * ldc + j], want = ref[(size_t)i * n + j];
            double lim = tol * scale[(size_t)i * n + j] + 1e-30;
            if (!(fabs(got - want) <= lim)) {
                if (!bad) fprintf(stderr, "  %s: C[%d][%d] = %.9g, want %.9g (limit %.3g)\n", what, i, j, got, want, lim);
                bad++;
            }
        }
    return bad;
}

static int env_int(const char *name, int def) {
    const char *e = getenv(name);
    return e && atoi(e) > 0 ? atoi(e) : def;
}

/* ---- micro-kernels, through the edge-tile wrapper the driver uses -----------------------------------*/
static void kernel_sweep_one(const nst__gemm_kernel *kt) {
    nst_arch arch = kt->arch;
    int ks[6], ki, m, n, v, kmax = env_int("NST_TEST_KMAX", 1 << 30), bad = 0;
    float *a, *b, *c, *c0, bias[64];
    double *ref, *scale;
    nst__rng rng = {42};
    static const float alphas[4] = {1.0f, 0.5f, -1.5f, 1.0f}, betas[4] = {0.0f, 1.0f, 0.25f, 0.0f};
    nst__gemm_blocks bl;
    nst__gemm_blocking(kt, &bl);
    CHECK(kt->mr * kt->nr <= NST__TILE_MAX && kt->mc % kt->mr == 0 && kt->nc % kt->nr == 0);
    CHECK(bl.mc % kt->mr == 0 && bl.nc % kt->nr == 0 && bl.mc > 0 && bl.nc > 0 && bl.kc > 0);
    ks[0] = 1; ks[1] = 2; ks[2] = bl.kc - 1; ks[3] = bl.kc; ks[4] = bl.kc + 1; ks[5] = 3 * bl.kc + 5;
    a = (float *)malloc(sizeof(float) * kt->mr * ks[5]);
    b = (float *)malloc(sizeof(float) * kt->nr * ks[5]);
    c = (float *)malloc(sizeof(float) * kt->mr * (kt->nr + 5));
    c0 = (float *)malloc(sizeof(float) * kt->mr * (kt->nr + 5));
    ref = (double *)malloc(sizeof(double) * kt->mr * kt->nr);
    scale = (double *)malloc(sizeof(double) * kt->mr * kt->nr);
    fill(bias, 64, &rng);
    for (ki = 0; ki < 6; ki++) {
        int k = ks[ki] > kmax ? kmax + ki : ks[ki], ldc = kt->nr + 5;
        fill(a, (size_t)kt->mr * k, &rng);
        fill(b, (size_t)kt->nr * k, &rng);
        for (m = 1; m <= kt->mr; m++)
            for (n = 1; n <= kt->nr; n++)
                for (v = 0; v < 4; v++) {
                    char what[96];
                    const float *bi = v == 3 ? bias : NULL;
                    int relu = v == 3, i;
                    fill(c0, (size_t)kt->mr * ldc, &rng);
                    if (betas[v] == 0.0f)   /* beta 0: C is never read, NaN must not leak */
                        for (i = 0; i < kt->mr * ldc; i++) c0[i] = nst__f32_from_bits(0x7FC00000u);
                    memcpy(c, c0, sizeof(float) * kt->mr * ldc);
                    /* packed layouts: a[p*MR + i], b[p*NR + j]; the reference reads them as op(A), op(B) */
                    nst__gemm_tile(kt, k, a, b, c, ldc, m, n, alphas[v], betas[v], bi, relu);
                    ref_gemm(1, 0, m, n, k, alphas[v], a, kt->mr, b, kt->nr, betas[v], c0, ldc, bi, relu, ref, scale);
                    snprintf(what, sizeof what, "%s m=%d n=%d k=%d variant %d", kt->name, m, n, k, v);
                    if (compare(what, m, n, c, ldc, ref, scale, nst_t_tol(arch))) bad++;
                    for (i = 0; i < m; i++) {   /* the padding columns of strided C stay untouched */
                        int j;
                        for (j = n; j < ldc; j++)
                            if (memcmp(&c[i * ldc + j], &c0[i * ldc + j], sizeof(float))) { bad++; i = m; break; }
                    }
                    if (bad > 3) goto done;
                }
    }
done:
    CHECK_MSG(bad == 0, "%d kernel cases failed", bad);
    free(a); free(b); free(c); free(c0); free(ref); free(scale);
}
static void kernel_sweep(nst_arch arch) {
    size_t kx;
    int ran = 0;
    if (!nst__cpu()->has[arch]) SKIP("ISA not available on this CPU/build");
    CHECK(nst__gemm_kernel_for(arch)->arch == arch);
    for (kx = 0; kx < sizeof nst__gemm_kernels / sizeof nst__gemm_kernels[0]; kx++)   /* every kernel of the ISA */
        if (nst__gemm_kernels[kx].arch == arch) { kernel_sweep_one(&nst__gemm_kernels[kx]); ran++; }
    CHECK(ran >= 1);
}
TEST(kernel_scalar) { kernel_sweep(NST_ARCH_SCALAR); }
TEST(kernel_avx2) { kernel_sweep(NST_ARCH_AVX2); }
TEST(kernel_avx512) { kernel_sweep(NST_ARCH_AVX512); }
TEST(kernel_neon) { kernel_sweep(NST_ARCH_NEON); }

/* ---- full GEMM ---------------------------------------------------------------------------------------*/
static const int shapes[][3] = {
    {1, 1, 1}, {7, 13, 17}, {13, 7, 1}, {17, 33, 7}, {33, 17, 127}, {127, 1, 33}, {1, 127, 257},
    {257, 33, 13}, {127, 257, 7}, {1000, 17, 33}, {33, 1000, 127}, {13, 257, 1000}, {257, 127, 257},
    {1000, 7, 1000}, {7, 1000, 257}};
#define NSHAPES ((int)(sizeof shapes / sizeof shapes[0]))

static void gemm_sizes(nst_arch arch) {
    int s, t, bad = 0, quick = env_int("NST_TEST_QUICK", 0);
    nst__rng rng = {7};
    if (!nst__cpu()->has[arch]) SKIP("ISA not available on this CPU/build");
    CHECK_OK(nst_set_arch(arch));
    for (s = 0; s < NSHAPES && !bad; s++) {
        int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        if (quick && (double)m * n * k > 1e6) continue;
        for (t = 0; t < 4 && !bad; t++) {
            int ta = t & 1, tb = t >> 1, lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
            float alpha = t == 3 ? -0.75f : 1.0f, beta = (s & 1) ? 0.5f : 0.0f;
            float *a = (float *)malloc(sizeof(float) * (size_t)(ta ? k : m) * lda);
            float *b = (float *)malloc(sizeof(float) * (size_t)(tb ? n : k) * ldb);
            float *c = (float *)malloc(sizeof(float) * (size_t)m * ldc), *c0 = (float *)malloc(sizeof(float) * (size_t)m * ldc);
            double *ref = (double *)malloc(sizeof(double) * (size_t)m * n), *sc = (double *)malloc(sizeof(double) * (size_t)m * n);
            char what[96];
            fill(a, (size_t)(ta ? k : m) * lda, &rng);
            fill(b, (size_t)(tb ? n : k) * ldb, &rng);
            fill(c0, (size_t)m * ldc, &rng);
            memcpy(c, c0, sizeof(float) * (size_t)m * ldc);
            CHECK_OK(nst__sgemm_ex(2, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc));
            ref_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c0, ldc, NULL, 0, ref, sc);
            snprintf(what, sizeof what, "%s %dx%dx%d trans %d%d", nst__arch_name(arch), m, n, k, ta, tb);
            bad += compare(what, m, n, c, ldc, ref, sc, nst_t_tol(arch));
            free(a); free(b); free(c); free(c0); free(ref); free(sc);
        }
    }
    CHECK(bad == 0);
    nst_set_arch(NST_ARCH_DEFAULT);
}
TEST(gemm_scalar) { gemm_sizes(NST_ARCH_SCALAR); }
TEST(gemm_avx2) { gemm_sizes(NST_ARCH_AVX2); }
TEST(gemm_avx512) { gemm_sizes(NST_ARCH_AVX512); }
TEST(gemm_neon) { gemm_sizes(NST_ARCH_NEON); }

/* One GEMM case's operands (A, B with leading dimensions past their rows; C with ldc = n + 3), filled in a
 * fixed order from r; c0 is the starting C (NaN where beta == 0 never reads it), c and c2 copies of it. */
typedef struct {
    float *a, *b, *c, *c2, *c0, *bias;
    double *ref, *sc;
    int lda, ldb, ldc, ta, tb, m, n, k;
    float beta;
} gemm_case;
static void gemm_case_make(gemm_case *g, int ta, int tb, int m, int n, int k, float beta, nst__rng *r) {
    int i;
    g->ta = ta; g->tb = tb; g->m = m; g->n = n; g->k = k; g->beta = beta;
    g->lda = (ta ? m : k) + 3; g->ldb = (tb ? k : n) + 1; g->ldc = n + 3;
    g->a = (float *)malloc(sizeof(float) * (size_t)(ta ? k : m) * g->lda);
    g->b = (float *)malloc(sizeof(float) * (size_t)(tb ? n : k) * g->ldb);
    g->c = (float *)malloc(sizeof(float) * (size_t)m * g->ldc);
    g->c2 = (float *)malloc(sizeof(float) * (size_t)m * g->ldc);
    g->c0 = (float *)malloc(sizeof(float) * (size_t)m * g->ldc);
    g->bias = (float *)malloc(sizeof(float) * (size_t)m);
    g->ref = (double *)malloc(sizeof(double) * (size_t)m * n);
    g->sc = (double *)malloc(sizeof(double) * (size_t)m * n);
    fill(g->a, (size_t)(ta ? k : m) * g->lda, r);
    fill(g->b, (size_t)(tb ? n : k) * g->ldb, r);
    fill(g->c0, (size_t)m * g->ldc, r);
    fill(g->bias, (size_t)m, r);
    if (beta == 0.0f)   /* C is never read: NaN must not leak */
        for (i = 0; i < m * n; i++) g->c0[(size_t)(i / n) * g->ldc + i % n] = nst__f32_from_bits(0x7FC00000u);
    memcpy(g->c, g->c0, sizeof(float) * (size_t)m * g->ldc);
    memcpy(g->c2, g->c0, sizeof(float) * (size_t)m * g->ldc);
}
static void gemm_case_free(gemm_case *g) {
    free(g->a); free(g->b); free(g->c); free(g->c2); free(g->c0); free(g->bias); free(g->ref); free(g->sc);
}
/* The case on one thread into c, against the reference (what names the case in a failure), and the ldc
 * padding untouched; returns the number of failures. */
static int gemm_case_one(gemm_case *g, nst_arch arch, const char *what, float alpha, int fused) {
    int i, bad;
    CHECK_OK(nst__sgemm_fused(1, g->ta, g->tb, g->m, g->n, g->k, alpha, g->a, g->lda, g->b, g->ldb, g->beta, g->c,
                              g->ldc, fused ? g->bias : NULL, fused));
    ref_gemm(g->ta, g->tb, g->m, g->n, g->k, alpha, g->a, g->lda, g->b, g->ldb, g->beta, g->c0, g->ldc,
             fused ? g->bias : NULL, fused, g->ref, g->sc);
    bad = compare(what, g->m, g->n, g->c, g->ldc, g->ref, g->sc, nst_t_tol(arch));
    for (i = 0; i < g->m && !bad; i++)
        bad += memcmp(g->c + (size_t)i * g->ldc + g->n, g->c0 + (size_t)i * g->ldc + g->n, 3 * sizeof(float)) != 0;
    return bad;
}
/* The case on 2 and 3 threads: the bits of c (one thread); returns the number of differences. */
static int gemm_case_threads(gemm_case *g, float alpha, int fused) {
    int th, bad = 0;
    for (th = 2; th <= 3; th++) {
        memcpy(g->c2, g->c0, sizeof(float) * (size_t)g->m * g->ldc);
        CHECK_OK(nst__sgemm_fused(th, g->ta, g->tb, g->m, g->n, g->k, alpha, g->a, g->lda, g->b, g->ldb, g->beta,
                                  g->c2, g->ldc, fused ? g->bias : NULL, fused));
        bad += memcmp(g->c, g->c2, sizeof(float) * (size_t)g->m * g->ldc) != 0;
    }
    return bad;
}

/* The short-M, wide-N path (nst__gemm_wide_kb > 0: A packed once, B in column blocks): rows not a multiple
 * of MR, an N tail in the last block and panel, K = 1, K cut into several blocks, every transpose, alpha and
 * beta (NaN in C with beta 0), ldc > n, the fused bias and ReLU, and 1 and 2 threads giving the same bits. */
static void gemm_wide(nst_arch arch) {
    static const int ms[] = {1, 7, 13, 33, 64}, ns[] = {775, 1000};
    int mi, ni, ki, t, bad = 0, quick = env_int("NST_TEST_QUICK", 0), multi = 0;
    nst__rng rng = {17};
    if (!nst__cpu()->has[arch]) SKIP("ISA not available on this CPU/build");
    CHECK_OK(nst_set_arch(arch));
    if (nst__gemm_kernel_pick(arch, 64, 1000)->wide_nc == 0) { nst_set_arch(NST_ARCH_DEFAULT); SKIP("short-M path off for this ISA"); }
    for (mi = 0; mi < 5 && !bad; mi++)
        for (ni = 0; ni < 2 && !bad; ni++)
            for (ki = 0; ki < 3 && !bad; ki++) {
                int m = ms[mi], n = ns[(mi + ni) % 2], v = mi * 6 + ni * 3 + ki;
                const nst__gemm_kernel *kt = nst__gemm_kernel_pick(arch, m, n);
                nst__gemm_blocks bl;
                int k, kb;
                nst__gemm_blocking(kt, &bl);
                k = ki == 0 ? 1 : ki == 1 ? 17 : 3 * bl.kc + 101;
                kb = nst__gemm_wide_kb(kt, &bl, m, n, k);
                if (ki == 2 && m > 33) continue;   /* the double reference would take seconds */
                if (quick && (double)m * n * k > 1e6) continue;
                CHECK_MSG(kb > 0, "%dx%dx%d does not take the short-M path", m, n, k);
                multi += kb < k;
                for (t = 0; t < 4 && !bad; t++) {
                    int ta = t & 1, tb = t >> 1, i;
                    float alpha = (v & 1) ? -0.75f : 1.0f, beta = (v + t) % 3 == 0 ? 0.0f : 0.5f;
                    int fused = (v + t) % 4 == 1;
                    gemm_case g;
                    char what[96];
                    gemm_case_make(&g, ta, tb, m, n, k, beta, &rng);
                    CHECK_OK(nst__sgemm_fused(1, ta, tb, m, n, k, alpha, g.a, g.lda, g.b, g.ldb, beta, g.c, g.ldc,
                                              fused ? g.bias : NULL, fused));
                    CHECK_OK(nst__sgemm_fused(2, ta, tb, m, n, k, alpha, g.a, g.lda, g.b, g.ldb, beta, g.c2, g.ldc,
                                              fused ? g.bias : NULL, fused));
                    ref_gemm(ta, tb, m, n, k, alpha, g.a, g.lda, g.b, g.ldb, beta, g.c0, g.ldc, fused ? g.bias : NULL, fused,
                             g.ref, g.sc);
                    snprintf(what, sizeof what, "%s wide %dx%dx%d trans %d%d", nst__arch_name(arch), m, n, k, ta, tb);
                    bad += compare(what, m, n, g.c, g.ldc, g.ref, g.sc, nst_t_tol(arch));
                    bad += memcmp(g.c, g.c2, sizeof(float) * (size_t)m * g.ldc) != 0;   /* incl. the untouched ldc padding */
                    for (i = 0; i < m && !bad; i++)
                        bad += memcmp(g.c + (size_t)i * g.ldc + n, g.c0 + (size_t)i * g.ldc + n, 3 * sizeof(float)) != 0;
                    gemm_case_free(&g);
                }
            }
    CHECK(bad == 0);
    CHECK(multi > 0);   /* some shape had K in several blocks */
    nst_set_arch(NST_ARCH_DEFAULT);
}
TEST(gemm_wide_scalar) { gemm_wide(NST_ARCH_SCALAR); }
TEST(gemm_wide_avx2) { gemm_wide(NST_ARCH_AVX2); }
TEST(gemm_wide_avx512) { gemm_wide(NST_ARCH_AVX512); }
TEST(gemm_wide_neon) { gemm_wide(NST_ARCH_NEON); }

/* Same inputs, same thread count: same bits; and the fixed partition makes 1 and 2 threads agree too. */
TEST(gemm_deterministic) {
    int m = 300, n = 700, k = 900, i, same12 = 1, same22 = 1;
    float *a = (float *)malloc(sizeof(float) * m * k), *b = (float *)malloc(sizeof(float) * k * n);
    float *c1 = (float *)malloc(sizeof(float) * m * n), *c2 = (float *)malloc(sizeof(float) * m * n);
    float *c3 = (float *)malloc(sizeof(float) * m * n);
    nst__rng rng = {11};
    fill(a, (size_t)m * k, &rng);
    fill(b, (size_t)k * n, &rng);
    for (i = 0; i < 2; i++) {   /* wide (columns split) and tall (rows split) */
        int mm = i ? n : m, nn = i ? m : n;
        CHECK_OK(nst__sgemm_ex(1, 0, 0, mm, nn, k, 1.0f, i ? b : a, k, i ? a : b, nn, 0.0f, c1, nn));
        CHECK_OK(nst__sgemm_ex(2, 0, 0, mm, nn, k, 1.0f, i ? b : a, k, i ? a : b, nn, 0.0f, c2, nn));
        CHECK_OK(nst__sgemm_ex(2, 0, 0, mm, nn, k, 1.0f, i ? b : a, k, i ? a : b, nn, 0.0f, c3, nn));
        same12 &= !memcmp(c1, c2, sizeof(float) * m * n);
        same22 &= !memcmp(c2, c3, sizeof(float) * m * n);
    }
    CHECK(same22);
    CHECK(same12);
    free(a); free(b); free(c1); free(c2); free(c3);
}

/* Long K with a small C (nst__gemm_ksplit_blocks > 0: K cut into fixed chunks whose partial products are
 * summed in chunk order): awkward M and N, K over several chunks with a short last block, every transpose,
 * alpha and beta (NaN in C with beta 0), ldc > n, the fused bias and ReLU; 1, 2 and 3 threads give the
 * same bits (the chunks do not depend on the thread count). */
static void gemm_longk(nst_arch arch) {
    static const int mn[][2] = {{1, 1}, {7, 13}, {13, 7}, {17, 33}, {33, 17}, {1, 33}, {64, 64}};
    int s, t, bad = 0, quick = env_int("NST_TEST_QUICK", 0);
    nst__rng rng = {29};
    if (!nst__cpu()->has[arch]) SKIP("ISA not available on this CPU/build");
    CHECK_OK(nst_set_arch(arch));
    for (s = 0; s < (int)(sizeof mn / sizeof mn[0]) && !bad; s++) {
        int m = mn[s][0], n = mn[s][1];
        const nst__gemm_kernel *kt = nst__gemm_kernel_pick(arch, m, n);
        nst__gemm_blocks bl;
        int k, nkb, kb;
        nst__gemm_blocking(kt, &bl);
        k = 9 * bl.kc + 13 + 5 * s;
        nkb = (k + bl.kc - 1) / bl.kc;
        kb = (k + nkb - 1) / nkb;
        CHECK_MSG(nst__gemm_ksplit_blocks(m, n, k, kb) > 0, "%dx%dx%d does not split K", m, n, k);
        if (quick && s == 6) continue;
        for (t = 0; t < 4 && !bad; t++) {
            int ta = t & 1, tb = t >> 1;
            float alpha = (s + t) & 1 ? -0.75f : 1.0f, beta = (s + t) % 3 == 0 ? 0.0f : 0.5f;
            int fused = (s + t) % 4 == 1;
            gemm_case g;
            char what[96];
            gemm_case_make(&g, ta, tb, m, n, k, beta, &rng);
            snprintf(what, sizeof what, "%s long K %dx%dx%d trans %d%d", nst__arch_name(arch), m, n, k, ta, tb);
            bad += gemm_case_one(&g, arch, what, alpha, fused);
            bad += gemm_case_threads(&g, alpha, fused);
            gemm_case_free(&g);
        }
    }
    CHECK(bad == 0);
    nst_set_arch(NST_ARCH_DEFAULT);
}
/* The shared A (the usual path, columns split, op(A) packed once by all threads in MC x KB pieces): awkward
 * M, N and K, with the caches forced small so that K spans several blocks, M several MC pieces and N several
 * column blocks (one thread shares too); every transpose, alpha and beta (NaN in C with beta 0), ldc > n, the
 * fused bias and ReLU; against the reference, and 1, 2 and 3 threads bit-equal. The probe also keeps the odd
 * pieces from ever being marked ready, so the fallback (a thread packing such a piece itself) runs too.
 * Then SYRK under the same blocks, 1, 2 and 3 threads. */
static void gemm_shared_a(nst_arch arch) {
    static const int sz[][3] = {{1, 700, 33}, {7, 333, 257}, {13, 767, 600}, {17, 129, 1000}, {33, 700, 513},
                                {130, 500, 301}, {257, 1000, 137}};
    int s, t, i, th, bad = 0, runs = 0, quick = env_int("NST_TEST_QUICK", 0);
    nst__rng rng = {31};
    if (!nst__cpu()->has[arch]) SKIP("ISA not available on this CPU/build");
    CHECK_OK(nst_set_arch(arch));
    nst__gemm_cache_forced[0] = 8 * 1024;    /* KC 64 or less, MC a few tiles, NC a few hundred columns */
    nst__gemm_cache_forced[1] = 64 * 1024;
    nst__gemm_share_probe = &runs;
    nst__gemm_small_off = 1;   /* 1 x 700 x 33 would skip the packing */
    for (s = 0; s < (int)(sizeof sz / sizeof sz[0]) && !bad; s++) {
        int m = sz[s][0], n = sz[s][1], k = sz[s][2];
        const nst__gemm_kernel *kt = nst__gemm_kernel_pick(arch, m, n);
        nst__gemm_blocks bl;
        nst__gemm_blocking(kt, &bl);
        if (quick && (double)m * n * k > 3e6) continue;
        CHECK_MSG(nst__gemm_wide_kb(kt, &bl, m, n, k) == 0, "%dx%dx%d takes the short-M path", m, n, k);
        for (t = 0; t < 4 && !bad; t++) {
            int ta = t & 1, tb = t >> 1, before = runs;
            float alpha = (s + t) & 1 ? -0.75f : 1.0f, beta = (s + t) % 3 == 0 ? 0.0f : 0.5f;
            int fused = (s + t) % 4 == 1;
            gemm_case g;
            char what[96];
            gemm_case_make(&g, ta, tb, m, n, k, beta, &rng);
            snprintf(what, sizeof what, "%s shared A %dx%dx%d trans %d%d", nst__arch_name(arch), m, n, k, ta, tb);
            bad += gemm_case_one(&g, arch, what, alpha, fused);
            if (n > bl.nc) CHECK_MSG(runs == before + 1, "%dx%dx%d, 1 thread: A not shared", m, n, k);
            bad += gemm_case_threads(&g, alpha, fused);
            gemm_case_free(&g);
        }
    }
    for (s = 0; s < 4 && !bad; s++) {   /* SYRK (row ranges, not the shared A) under the same small blocks */
        static const int sy[4][2] = {{7, 100}, {33, 257}, {130, 301}, {257, 137}};
        int n = sy[s][0], k = sy[s][1], lda = k + 1, ldc = n + 3, j;
        float *a = (float *)malloc(sizeof(float) * n * lda), *c = (float *)malloc(sizeof(float) * n * ldc);
        float *c2 = (float *)malloc(sizeof(float) * n * ldc);
        double *ref = (double *)malloc(sizeof(double) * n * n), *sc = (double *)malloc(sizeof(double) * n * n);
        char what[64];
        fill(a, (size_t)n * lda, &rng);
        ref_gemm(0, 1, n, n, k, -0.5, a, lda, a, lda, 0.0, c, ldc, NULL, 0, ref, sc);
        for (th = 1; th <= 3; th++) {
            for (i = 0; i < n * ldc; i++) c[i] = nst__f32_from_bits(0x7FC00000u);
            CHECK_OK(nst__ssyrk_ex(th, n, k, -0.5f, a, lda, c, ldc));
            snprintf(what, sizeof what, "%s shared A syrk %dx%d, %d threads", nst__arch_name(arch), n, k, th);
            bad += compare(what, n, n, c, ldc, ref, sc, nst_t_tol(arch));
            for (i = 0; i < n; i++)
                for (j = 0; j < n; j++) bad += memcmp(&c[i * ldc + j], &c[j * ldc + i], sizeof(float)) != 0;
            if (th == 1) memcpy(c2, c, sizeof(float) * n * ldc);
            else bad += memcmp(c, c2, sizeof(float) * n * ldc) != 0;
        }
        free(a); free(c); free(c2); free(ref); free(sc);
    }
    nst__gemm_share_probe = NULL;
    nst__gemm_small_off = 0;
    nst__gemm_cache_forced[0] = nst__gemm_cache_forced[1] = 0;
    CHECK(bad == 0);
    CHECK(runs > 0);
    nst_set_arch(NST_ARCH_DEFAULT);
}
TEST(gemm_shared_a_scalar) { gemm_shared_a(NST_ARCH_SCALAR); }
TEST(gemm_shared_a_avx2) { gemm_shared_a(NST_ARCH_AVX2); }
TEST(gemm_shared_a_avx512) { gemm_shared_a(NST_ARCH_AVX512); }
TEST(gemm_shared_a_neon) { gemm_shared_a(NST_ARCH_NEON); }

TEST(gemm_longk_scalar) { gemm_longk(NST_ARCH_SCALAR); }
TEST(gemm_longk_avx2) { gemm_longk(NST_ARCH_AVX2); }
TEST(gemm_longk_avx512) { gemm_longk(NST_ARCH_AVX512); }
TEST(gemm_longk_neon) { gemm_longk(NST_ARCH_NEON); }

/* C = alpha A A^T through blk (NULL: nst__ssyrk_ex) on 1, 2 and 3 threads, C starting as NaN: against the
 * reference, exactly symmetric, the same bits on every count (c2: scratch). Returns the bad elements.
 * Without OpenMP every count runs the same single thread: once is enough (qemu runs it for NEON). */
static int gram_check(const char *what, nst__gram_block_fn blk, int n, int k, float alpha, const float *a, int lda,
                      float *c, float *c2, int ldc, const double *ref, const double *sc, double tol) {
    int i, j, t, bad = 0, tmax = 3;
#ifndef _OPENMP
    tmax = 1;
#endif
    for (t = 1; t <= tmax; t++) {
        for (i = 0; i < n * ldc; i++) c[i] = nst__f32_from_bits(0x7FC00000u);
        if (blk) CHECK_OK(nst__gram_rows(blk, t, n, k, alpha, a, lda, c, ldc));
        else CHECK_OK(nst__ssyrk_ex(t, n, k, alpha, a, lda, c, ldc));
        bad += compare(what, n, n, c, ldc, ref, sc, tol);
        for (i = 0; i < n; i++)
            for (j = 0; j < n; j++) bad += memcmp(&c[i * ldc + j], &c[j * ldc + i], sizeof(float)) != 0;
        if (t == 1) memcpy(c2, c, sizeof(float) * n * ldc);
        else bad += memcmp(c, c2, sizeof(float) * n * ldc) != 0;
    }
    return bad;
}

/* ---- SYRK, fused epilogue, pre-packed A --------------------------------------------------------------*/
TEST(syrk) {
    static const int sz[][2] = {{1, 1}, {7, 300}, {64, 1000}, {130, 257}, {200, 33}};
    int s, bad = 0;
    nst__rng rng = {5};
    for (s = 0; s < 5; s++) {
        int n = sz[s][0], k = sz[s][1], lda = k + 1, ldc = n + 3;
        float *a = (float *)malloc(sizeof(float) * n * lda), *c = (float *)malloc(sizeof(float) * n * ldc);
        float *c2 = (float *)malloc(sizeof(float) * n * ldc);
        double *ref = (double *)malloc(sizeof(double) * n * n), *sc = (double *)malloc(sizeof(double) * n * n);
        fill(a, (size_t)n * lda, &rng);
        ref_gemm(0, 1, n, n, k, 0.5, a, lda, a, lda, 0.0, c, ldc, NULL, 0, ref, sc);
        bad += gram_check("syrk", NULL, n, k, 0.5f, a, lda, c, c2, ldc, ref, sc, nst_t_tol(nst__cpu_arch()));
        free(a); free(c); free(c2); free(ref); free(sc);
    }
    CHECK(bad == 0);
}

/* Gram matrices of long rows (nst__gram_rows): each block kernel (scalar and this CPU's) on row counts
 * around its 4-row and 3-row blocks, K of 1 and 7 (no full vector), 16n and 16n + 5 (the shortest rows
 * the dispatch sends here, with a tail), a few thousand (several sub-blocks, several chunks, and more
 * sub-blocks than chunks); against the double reference, exactly symmetric, the same bits on 1, 2 and
 * 3 threads. Then nst__ssyrk_ex on a shape it sends down this path. */
TEST(gram_rows) {
    static const int sz[][2] = {{1, 1}, {1, 7}, {2, 7}, {3, 13}, {4, 17}, {5, 85}, {6, 1}, {7, 7}, {7, 112},
                                {8, 300}, {9, 149}, {12, 7}, {13, 208}, {13, 1000}, {17, 277}, {17, 5003},
                                {33, 533}, {33, 2049}, {64, 1}, {64, 1029}, {100, 1801},
                                {128, 7}, {128, 2053}, {256, 301}, {5, 70001}, {13, 30000}};
    /* every block kernel this CPU runs, not only the one nst__gram_block_for picks (Zen 4 runs AVX2's
     * under AVX-512) */
    static const struct { nst_arch arch; nst__gram_block_fn blk; } blks[] = {
        {NST_ARCH_SCALAR, nst__gram_block_scalar},
#if defined(NST__X86)
        {NST_ARCH_AVX2, nst__gram_block_avx2},
#if defined(NST__X86_AVX512)
        {NST_ARCH_AVX512, nst__gram_block_avx512},
#endif
#elif defined(NST__NEON)
        {NST_ARCH_NEON, nst__gram_block_neon},
#endif
    };
    int s, v, bad = 0;
    nst__rng rng = {15};
    for (v = 0; v < (int)(sizeof blks / sizeof blks[0]); v++) {
        nst__gram_block_fn blk = blks[v].blk;
        if (!nst__cpu()->has[blks[v].arch]) continue;
        for (s = 0; s < (int)(sizeof sz / sizeof sz[0]); s++) {
            int n = sz[s][0], k = sz[s][1], lda = k + 3, ldc = n + 1;
            float *a = (float *)malloc(sizeof(float) * n * lda), *c = (float *)malloc(sizeof(float) * n * ldc);
            float *c1 = (float *)malloc(sizeof(float) * n * ldc);
            double *ref = (double *)malloc(sizeof(double) * n * n), *sc = (double *)malloc(sizeof(double) * n * n);
            char what[64];
            snprintf(what, sizeof what, "gram_rows %s %dx%d", nst__arch_name(blks[v].arch), n, k);
            fill(a, (size_t)n * lda, &rng);
            ref_gemm(0, 1, n, n, k, -0.25, a, lda, a, lda, 0.0, c, ldc, NULL, 0, ref, sc);
            bad += gram_check(what, blk, n, k, -0.25f, a, lda, c, c1, ldc, ref, sc, nst_t_tol(NST_ARCH_SCALAR));
            free(a); free(c); free(c1); free(ref); free(sc);
        }
    }
    {   /* the dispatch: a Gram shape nst__ssyrk_ex sends here when this CPU has a block kernel */
        int n = 40, k = 16 * 40 + 5;
        float *a = (float *)malloc(sizeof(float) * n * k), *c = (float *)malloc(sizeof(float) * n * n);
        double *ref = (double *)malloc(sizeof(double) * n * n), *sc = (double *)malloc(sizeof(double) * n * n);
        fill(a, (size_t)n * k, &rng);
        ref_gemm(0, 1, n, n, k, 1.0, a, k, a, k, 0.0, c, n, NULL, 0, ref, sc);
        CHECK(nst__gram_rows_pay(n, k));
        CHECK_OK(nst__ssyrk_ex(2, n, k, 1.0f, a, k, c, n));
        bad += compare("ssyrk (gram_rows)", n, n, c, n, ref, sc, nst_t_tol(nst__cpu_arch()));
        free(a); free(c); free(ref); free(sc);
    }
    CHECK(bad == 0);
}

/* 64 x 1000 x 576 pre-packed takes the short-M path with the pack's K blocks (several: K > KC). */
TEST(fused_and_prepacked) {
    static const int sz[][3] = {{64, 1000, 576}, {13, 77, 5}, {100, 33, 900}, {1, 1, 1}, {64, 9, 0}};
    int s, tb, bad = 0;
    nst__rng rng = {9};
    for (s = 0; s < 5; s++)
        for (tb = 0; tb < 2; tb++) {
            int m = sz[s][0], n = sz[s][1], k = sz[s][2], ldb = tb ? k + 1 : n, ta = s & 1;
            float *a = (float *)malloc(sizeof(float) * (m * k + 1)), *b = (float *)malloc(sizeof(float) * ((tb ? n : k) * ldb + 1));
            float *c = (float *)malloc(sizeof(float) * m * n), *c2 = (float *)malloc(sizeof(float) * m * n);
            float *c0 = (float *)malloc(sizeof(float) * m * n), *bias = (float *)malloc(sizeof(float) * m);
            double *ref = (double *)malloc(sizeof(double) * m * n), *sc = (double *)malloc(sizeof(double) * m * n);
            nst__sgemm_apack pk;
            fill(a, (size_t)m * k + 1, &rng);
            fill(b, (size_t)(tb ? n : k) * ldb + 1, &rng);
            fill(c0, (size_t)m * n, &rng);
            fill(bias, (size_t)m, &rng);
            memcpy(c, c0, sizeof(float) * m * n);
            memcpy(c2, c0, sizeof(float) * m * n);
            CHECK_OK(nst__sgemm_fused(2, ta, tb, m, n, k, 1.25f, a, ta ? m : k, b, ldb, 1.0f, c, n, bias, 1));
            ref_gemm(ta, tb, m, n, k, 1.25, a, ta ? m : k, b, ldb, 1.0, c0, n, bias, 1, ref, sc);
            bad += compare("fused", m, n, c, n, ref, sc, nst_t_tol(nst__cpu_arch()));
            CHECK_OK(nst__sgemm_pack_a(&pk, ta, m, k, a, ta ? m : k));
            CHECK(pk.kt == nst__gemm_kernel_pick(nst__cpu_arch(), m, -1));   /* the unpacked call's kernel */
            CHECK_OK(nst__sgemm_apacked(2, &pk, tb, n, 1.25f, b, ldb, 1.0f, c2, n, bias, 1));
            /* not bit-equal to the fused call: that one may take the short-M path, whose K blocks depend on
             * N, which a pack made before N is known cannot follow */
            bad += compare("prepacked", m, n, c2, n, ref, sc, nst_t_tol(nst__cpu_arch()));
            memcpy(c, c0, sizeof(float) * m * n);   /* 1 thread: the bits of 2 (64 x 1000: the short-M path) */
            CHECK_OK(nst__sgemm_apacked(1, &pk, tb, n, 1.25f, b, ldb, 1.0f, c, n, bias, 1));
            bad += memcmp(c, c2, sizeof(float) * m * n) != 0;
            nst__sgemm_apack_free(&pk);
            free(a); free(b); free(c); free(c2); free(c0); free(bias); free(ref); free(sc);
        }
    CHECK(bad == 0);
}

/* ---- dispatch and arguments --------------------------------------------------------------------------*/
TEST(dispatch) {
    int i;
    const char *s = nst_cpu_string();
    CHECK(s && strlen(s) > 3);
    CHECK(nst_get_arch() != NST_ARCH_DEFAULT);
    for (i = 0; i < NST_T_NARCH; i++) {
        nst_status st = nst_set_arch(nst_t_archs[i]);
        CHECK(st == (nst__cpu()->has[nst_t_archs[i]] ? NST_OK : NST_ERR_UNSUPPORTED));
        if (st == NST_OK) {
            CHECK(nst_get_arch() == nst_t_archs[i]);
            CHECK(!strncmp(nst_cpu_string(), nst__arch_name(nst_t_archs[i]), strlen(nst__arch_name(nst_t_archs[i]))));
        }
    }
    CHECK(nst_set_arch((nst_arch)99) == NST_ERR_ARGUMENT);
    CHECK_OK(nst_set_arch(NST_ARCH_DEFAULT));
    CHECK(nst_get_arch() == nst__cpu()->deflt);
    printf("     %s\n", nst_cpu_string());
}

TEST(arguments) {
    float a[4] = {1, 2, 3, 4}, b[4] = {1, 0, 0, 1}, c[4] = {9, 9, 9, 9};
    CHECK(nst_sgemm(0, 0, -1, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2) == NST_ERR_ARGUMENT);
    CHECK(nst_sgemm(0, 0, 2, 2, 2, 1.0f, a, 1, b, 2, 0.0f, c, 2) == NST_ERR_ARGUMENT);
    CHECK(nst_sgemm(0, 0, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 1) == NST_ERR_ARGUMENT);
    CHECK(nst_sgemm(0, 0, 2, 2, 2, 1.0f, NULL, 2, b, 2, 0.0f, c, 2) == NST_ERR_ARGUMENT);
    CHECK_OK(nst_sgemm(0, 0, 2, 2, 0, 1.0f, a, 2, b, 2, 2.0f, c, 2));   /* k = 0: C = beta * C */
    CHECK(c[0] == 18.0f && c[3] == 18.0f);
    CHECK_OK(nst_sgemm(0, 0, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2));
    CHECK(c[0] == 1.0f && c[1] == 2.0f && c[2] == 3.0f && c[3] == 4.0f);
    CHECK_OK(nst_sgemm(0, 0, 0, 0, 5, 1.0f, NULL, 1, NULL, 1, 0.0f, NULL, 1));   /* empty */
}

/* The blocking rule (nst__gemm_blocking) on the caches of the CPUs this project runs on: AVX-512 keeps
 * the blocks measured best on Zen 5 (and used on Intel), whatever the L2, and on Zen 4 (512-bit ops
 * split) a K block twice as deep; unknown caches give the table. */
TEST(blocking_rule) {
    nst__gemm_blocks bl;
    const nst__gemm_kernel *kt;
    size_t i;
#if defined(NST__X86_AVX512)
    static const int l2s[2] = {1024, 2048};   /* Zen 5, Intel Xeon: 48 KiB L1d */
    for (i = 0; i < 2; i++) {
        nst__gemm_cache_forced[0] = 48 * 1024;
        nst__gemm_cache_forced[1] = l2s[i] * 1024;
        nst__gemm_cache_forced[2] = 1;
        nst__gemm_blocking(nst__gemm_kernel_for(NST_ARCH_AVX512), &bl);
        CHECK_MSG(bl.kc == 192 && bl.mc == 256 && bl.nc == 1536 && bl.wide_nc == 0, "avx512, L2 %d KiB: kc %d mc %d nc %d wide %d",
                  l2s[i], bl.kc, bl.mc, bl.nc, bl.wide_nc);
    }
    nst__gemm_cache_forced[0] = 32 * 1024;   /* Zen 4 */
    nst__gemm_cache_forced[1] = 1024 * 1024;
    nst__gemm_cache_forced[2] = 2;
    nst__gemm_blocking(nst__gemm_kernel_for(NST_ARCH_AVX512), &bl);
    CHECK_MSG(bl.kc == 256 && bl.mc == 256 && bl.nc == 1536, "avx512, Zen 4: kc %d mc %d nc %d", bl.kc, bl.mc, bl.nc);
    CHECK(nst__gemm_kernel_pick(NST_ARCH_AVX512, 128, 128)->nr == 32);   /* the Zen 4 costs */
    CHECK(nst__gemm_kernel_pick(NST_ARCH_AVX512, 60, 1 << 16)->mr == 12);
    CHECK(nst__gemm_kernel_pick(NST_ARCH_AVX512, 64, 1 << 16)->nr == 48);
    nst__gemm_cache_forced[2] = 1;
    CHECK(nst__gemm_kernel_pick(NST_ARCH_AVX512, 128, 128)->nr == 48);
    CHECK(nst__gemm_kernel_pick(NST_ARCH_AVX512, 64, 64)->nr == 32);
    nst__gemm_cache_forced[2] = 0;
#endif
#if defined(NST__X86)
    nst__gemm_cache_forced[0] = 32 * 1024;   /* Zen 3 */
    nst__gemm_cache_forced[1] = 512 * 1024;
    nst__gemm_blocking(nst__gemm_kernel_pick(NST_ARCH_AVX2, 64, 1 << 20), &bl);   /* 4 x 24 */
    CHECK_MSG(bl.kc == 256 && bl.mc == 128 && bl.nc == 768 && bl.wide_nc == 192, "4x24: kc %d mc %d nc %d", bl.kc, bl.mc, bl.nc);
#endif
    nst__gemm_cache_forced[0] = nst__gemm_cache_forced[1] = 0;
    for (i = 0; i < sizeof nst__gemm_kernels / sizeof nst__gemm_kernels[0]; i++) {
        kt = &nst__gemm_kernels[i];
        nst__gemm_blocking(kt, &bl);
        if (nst__cpu()->l1d <= 0 || nst__cpu()->l2 <= 0) CHECK(bl.kc == kt->kc && bl.mc == kt->mc && bl.nc == kt->nc);
        CHECK(bl.kc >= 16 && bl.mc >= kt->mr && bl.mc % kt->mr == 0 && bl.nc >= kt->nr && bl.nc % kt->nr == 0);
    }
}

/* Blockings other CPUs get, and the clamps of tiny or odd reported caches (KC 16, one tile per block):
 * every ISA against the reference on awkward shapes (K over many blocks, M/N tails, the short-M path
 * where its K blocks fit), 1 and 2 threads bit-equal, and an A packed under one blocking used under
 * another (the pack keeps its own K blocks). */
static void gemm_caches(nst_arch arch) {
    static const int caches[][2] = {{1, 4}, {8, 64}, {24, 96}, {48, 1024}, {48, 2048}};   /* KiB */
    static const int sz[][3] = {{1, 1, 1}, {7, 13, 17}, {33, 17, 127}, {13, 1000, 300}, {64, 800, 200},
                                {130, 257, 61}, {100, 33, 400}, {257, 9, 35}};
    int ci, s, i, bad = 0, wide = 0, quick = env_int("NST_TEST_QUICK", 0);
    nst__rng rng = {23};
    if (!nst__cpu()->has[arch]) SKIP("ISA not available on this CPU/build");
    CHECK_OK(nst_set_arch(arch));
    for (ci = 0; ci < (int)(sizeof caches / sizeof caches[0]) && !bad; ci++)
        for (s = 0; s < (int)(sizeof sz / sizeof sz[0]) && !bad; s++) {
            int m = sz[s][0], n = sz[s][1], k = sz[s][2], ta = s & 1, tb = (s >> 1) & 1, ldc = n + 1;
            int lda = ta ? m : k, ldb = tb ? k : n;
            float *a, *b, *c, *c2, *c0;
            double *ref, *sc;
            nst__sgemm_apack pk;
            nst__gemm_blocks bl;
            char what[96];
            if (quick && (double)m * n * k > 1e6) continue;
            a = (float *)malloc(sizeof(float) * (size_t)m * k);
            b = (float *)malloc(sizeof(float) * (size_t)k * n);
            c = (float *)malloc(sizeof(float) * (size_t)m * ldc);
            c2 = (float *)malloc(sizeof(float) * (size_t)m * ldc);
            c0 = (float *)malloc(sizeof(float) * (size_t)m * ldc);
            ref = (double *)malloc(sizeof(double) * (size_t)m * n);
            sc = (double *)malloc(sizeof(double) * (size_t)m * n);
            fill(a, (size_t)m * k, &rng);
            fill(b, (size_t)k * n, &rng);
            fill(c0, (size_t)m * ldc, &rng);
            nst__gemm_cache_forced[0] = caches[ci][0] * 1024;
            nst__gemm_cache_forced[1] = caches[ci][1] * 1024;
            nst__gemm_blocking(nst__gemm_kernel_pick(arch, m, n), &bl);
            wide += nst__gemm_wide_kb(nst__gemm_kernel_pick(arch, m, n), &bl, m, n, k) > 0;
            memcpy(c, c0, sizeof(float) * (size_t)m * ldc);
            memcpy(c2, c0, sizeof(float) * (size_t)m * ldc);
            CHECK_OK(nst__sgemm_ex(1, ta, tb, m, n, k, -0.75f, a, lda, b, ldb, 0.5f, c, ldc));
            CHECK_OK(nst__sgemm_ex(2, ta, tb, m, n, k, -0.75f, a, lda, b, ldb, 0.5f, c2, ldc));
            ref_gemm(ta, tb, m, n, k, -0.75, a, lda, b, ldb, 0.5, c0, ldc, NULL, 0, ref, sc);
            snprintf(what, sizeof what, "%s L1d %d KiB L2 %d KiB %dx%dx%d", nst__arch_name(arch), caches[ci][0],
                     caches[ci][1], m, n, k);
            bad += compare(what, m, n, c, ldc, ref, sc, nst_t_tol(arch));
            for (i = 0; i < m; i++) bad += memcmp(c + (size_t)i * ldc, c2 + (size_t)i * ldc, sizeof(float) * n) != 0;
            CHECK_OK(nst__sgemm_pack_a(&pk, ta, m, k, a, lda));
            nst__gemm_cache_forced[0] = caches[(ci + 1) % 5][0] * 1024;   /* used under another blocking */
            nst__gemm_cache_forced[1] = caches[(ci + 1) % 5][1] * 1024;
            memcpy(c2, c0, sizeof(float) * (size_t)m * ldc);
            CHECK_OK(nst__sgemm_apacked(2, &pk, tb, n, -0.75f, b, ldb, 0.5f, c2, ldc, NULL, 0));
            bad += compare("prepacked", m, n, c2, ldc, ref, sc, nst_t_tol(arch));
            nst__sgemm_apack_free(&pk);
            free(a); free(b); free(c); free(c2); free(c0); free(ref); free(sc);
        }
    nst__gemm_cache_forced[0] = nst__gemm_cache_forced[1] = 0;
    CHECK(bad == 0);
    if (!quick && nst__gemm_kernel_for(arch)->wide_nc > 0) CHECK(wide > 0);   /* the short-M path ran */
    nst_set_arch(NST_ARCH_DEFAULT);
}
TEST(caches_scalar) { gemm_caches(NST_ARCH_SCALAR); }
TEST(caches_avx2) { gemm_caches(NST_ARCH_AVX2); }
TEST(caches_avx512) { gemm_caches(NST_ARCH_AVX512); }
TEST(caches_neon) { gemm_caches(NST_ARCH_NEON); }

/* Small products (nst__gemm_small_pays) skip the packing: every SIMD path's result has the packed path's
 * bits (nst__gemm_small_off forces that one), on shapes around the tiles (1, 7, 13, 17, 33, 64), A plain
 * and transposed with padded strides, beta 0 and not, with and without bias and ReLU; C's padding
 * columns untouched. And the dispatch: a small product does skip it (no packing buffer, so no NOMEM). */
TEST(small_matches_packed) {
    static const int sz[] = {1, 7, 13, 17, 33, 64};
    int x, im, in, ik, ta, var, bad = 0, ran = 0;
    nst__rng rng = {77};
    for (x = 0; x < NST_T_NARCH; x++) {
        if (!nst__cpu()->has[nst_t_archs[x]] || !nst__gemm_kernel_for(nst_t_archs[x])->small) continue;
        CHECK_OK(nst_set_arch(nst_t_archs[x]));
        for (im = 0; im < 6; im++) for (in = 0; in < 6; in++) for (ik = 0; ik < 6; ik++) for (ta = 0; ta < 2; ta++) {
            int m = sz[im], n = sz[in], k = sz[ik], lda = (ta ? m : k) + 3, ldb = n + 5, ldc = n + 2;
            float *a = (float *)malloc(sizeof(float) * (size_t)lda * (ta ? k : m));
            float *b = (float *)malloc(sizeof(float) * (size_t)ldb * k), bias[64];
            float *c1 = (float *)malloc(sizeof(float) * (size_t)ldc * m), *c2 = (float *)malloc(sizeof(float) * (size_t)ldc * m);
            fill(a, (size_t)lda * (ta ? k : m), &rng);
            fill(b, (size_t)ldb * k, &rng);
            fill(bias, 64, &rng);
            for (var = 0; var < 3; var++) {
                float beta = var == 1 ? 0.75f : 0.0f;
                const float *bs = var == 2 ? bias : NULL;
                fill(c1, (size_t)ldc * m, &rng);
                memcpy(c2, c1, sizeof(float) * (size_t)ldc * m);
                CHECK(nst__gemm_small_pays(nst__gemm_kernel_pick(nst__cpu_arch(), m, n), m, n, k));
                CHECK_OK(nst__sgemm_fused(1, ta, 0, m, n, k, -1.25f, a, lda, b, ldb, beta, c1, ldc, bs, var == 2));
                nst__gemm_small_off = 1;
                CHECK_OK(nst__sgemm_fused(1, ta, 0, m, n, k, -1.25f, a, lda, b, ldb, beta, c2, ldc, bs, var == 2));
                nst__gemm_small_off = 0;
                bad += memcmp(c1, c2, sizeof(float) * (size_t)ldc * m) != 0;
                ran++;
            }
            free(a); free(b); free(c1); free(c2);
        }
    }
    nst_set_arch(NST_ARCH_DEFAULT);
    if (!ran) SKIP("no SIMD path with small kernels here");
    CHECK_MSG(bad == 0, "%d of %d small products differ from the packed path", bad, ran);
}

/* The kernel nst__gemm_kernel_pick takes for a shape must not change C's bits (the same K blocks for all
 * kernels of an ISA): rows 0..63 of a 66-row product (AVX2: 6 x 16) equal the 64-row product (4 x 24),
 * and columns 0..63 of a 96-column one (AVX-512: 8 x 48) the 64-column product (12 x 32), K over
 * several blocks; the CLI's white style mask = no mask relies on it. */
TEST(kernel_choice_keeps_bits) {
    int m = 66, n = 96, k = 1000, same = 1, x, i;
    float *a = (float *)malloc(sizeof(float) * m * k), *b = (float *)malloc(sizeof(float) * k * n);
    float *c1 = (float *)malloc(sizeof(float) * m * n), *c2 = (float *)malloc(sizeof(float) * m * n);
    nst__rng rng = {31};
    fill(a, (size_t)m * k, &rng);
    fill(b, (size_t)k * n, &rng);
    for (x = 0; x < NST_T_NARCH; x++) {
        if (!nst__cpu()->has[nst_t_archs[x]]) continue;
        CHECK_OK(nst_set_arch(nst_t_archs[x]));
        CHECK_OK(nst__sgemm_ex(1, 0, 0, m, n, k, 1.0f, a, k, b, n, 0.0f, c1, n));
        CHECK_OK(nst__sgemm_ex(2, 0, 0, 64, n, k, 1.0f, a, k, b, n, 0.0f, c2, n));
        same &= !memcmp(c1, c2, sizeof(float) * 64 * n);
        CHECK_OK(nst__sgemm_ex(2, 0, 0, 64, 64, k, 1.0f, a, k, b, n, 0.0f, c2, 64));
        for (i = 0; i < 64; i++) same &= !memcmp(c1 + i * n, c2 + i * 64, sizeof(float) * 64);
    }
    nst_set_arch(NST_ARCH_DEFAULT);
    CHECK(same);
#if defined(NST__X86)
    if (nst__cpu()->has[NST_ARCH_AVX2]) CHECK(nst__gemm_kernel_pick(NST_ARCH_AVX2, 66, n) != nst__gemm_kernel_pick(NST_ARCH_AVX2, 64, n));
    if (nst__cpu()->has[NST_ARCH_AVX512]) {
        CHECK(nst__gemm_kernel_pick(NST_ARCH_AVX512, 64, 64)->nr == 32);
        CHECK(nst__gemm_kernel_pick(NST_ARCH_AVX512, 64, 96)->nr == 48);
        CHECK(nst__gemm_kernel_pick(NST_ARCH_AVX512, 512, 1 << 16)->nr == 48);
    }
#endif
    free(a); free(b); free(c1); free(c2);
}

int main(int argc, char **argv) {
    nst_test_begin(argc, argv);
    RUN(dispatch);
    RUN(arguments);
    RUN(kernel_scalar);
    RUN(kernel_avx2);
    RUN(kernel_avx512);
    RUN(kernel_neon);
    RUN(gemm_scalar);
    RUN(gemm_avx2);
    RUN(gemm_avx512);
    RUN(gemm_neon);
    RUN(gemm_wide_scalar);
    RUN(gemm_wide_avx2);
    RUN(gemm_wide_avx512);
    RUN(gemm_wide_neon);
    RUN(gemm_longk_scalar);
    RUN(gemm_longk_avx2);
    RUN(gemm_longk_avx512);
    RUN(gemm_longk_neon);
    RUN(gemm_shared_a_scalar);
    RUN(gemm_shared_a_avx2);
    RUN(gemm_shared_a_avx512);
    RUN(gemm_shared_a_neon);
    RUN(gemm_deterministic);
    RUN(syrk);
    RUN(gram_rows);
    RUN(fused_and_prepacked);
    RUN(blocking_rule);
    RUN(kernel_choice_keeps_bits);
    RUN(small_matches_packed);
    RUN(caches_scalar);
    RUN(caches_avx2);
    RUN(caches_avx512);
    RUN(caches_neon);
    return nst_test_end(NST_T_PROGRAM);
}
