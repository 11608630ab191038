/* Fast 3x3 convolution and pooling (the >>conv section of nst.h) against the scalar reference kernels (>>tensor).
 *
 * Error bounds, as max |fast - ref| / max |ref| over the output (per layer, random N(0,1) inputs and
 * He-scaled weights):
 *   direct AVX-512            1e-5  (same sums, FMA rounding and a different order)
 *   Winograd F(4x4,3x3)       2e-4  (transform constants up to 8, 1/24: measured ~1e-5..5e-5)
 *   Winograd chained 8 deep   5e-4  at the last layer, and not more than 10x the first layer's error
 *   pooling                   exact (bit for bit)
 * Every path runs with thread counts 1, 2 and 3 and must give identical bytes. Layers with >= 256x512
 * filters transform them per call (lazy); the VGG shape test covers them on every path.
 * The NEON tests run on aarch64 (tests/neon.sh: under qemu, `test_conv neon` with NST_TEST_QUICK=1,
 * which keeps the awkward channel counts and sizes but drops the slowest combinations). */
#define NST_IMPLEMENTATION
#include "nst.h"
#include "nst_test.h"
#include <stdlib.h>

static void fill(float *x, size_t n, uint64_t seed, float scale) {
    nst__rng r;
    size_t i;
    r.s = seed;
    for (i = 0; i < n; i++) x[i] = (float)nst__rng_normal(&r) * scale;
}
static double rel_err(const float *a, const float *ref, size_t n) {
    double m = 0, d = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        double e = fabs((double)a[i] - ref[i]);
        if (!(e <= d)) d = e;   /* NaN propagates as a failure */
        if (fabs(ref[i]) > m) m = fabs(ref[i]);
    }
    return d / (m > 1e-30 ? m : 1e-30);
}

static int quick(void) {
    const char *e = getenv("NST_TEST_QUICK");
    return e && atoi(e) > 0;
}

static int have_neon(void) {
#if defined(NST__NEON)
    return 1;
#else
    return 0;
#endif
}

static int have_avx512(void) {
#if defined(NST__X86_AVX512)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

/* Forward and backward of one layer shape on one path vs the reference; returns the larger error,
 * or 1e9 on any failure (status, thread-count dependence). */
static double check_layer(int cin, int cout, int h, int w, int relu, int algo, nst_arch arch) {
    size_t nin = (size_t)cin * h * w, nout = (size_t)cout * h * w;
    float *wt = (float *)nst__malloc(sizeof(float) * (size_t)cin * cout * 9);
    float *b = (float *)nst__malloc(sizeof(float) * (size_t)cout);
    float *x = (float *)nst__malloc(sizeof(float) * nin), *dy = (float *)nst__malloc(sizeof(float) * nout);
    float *y = (float *)nst__malloc(sizeof(float) * nout), *yr = (float *)nst__malloc(sizeof(float) * nout);
    float *y2 = (float *)nst__malloc(sizeof(float) * nout);
    float *dx = (float *)nst__malloc(sizeof(float) * nin), *dxr = (float *)nst__malloc(sizeof(float) * nin);
    float *dx2 = (float *)nst__malloc(sizeof(float) * nin);
    nst__conv_plan *p = NULL;
    double err = 1e9;
    int t;
    fill(wt, (size_t)cin * cout * 9, 1 + cin * 7 + cout, (float)sqrt(2.0 / (9.0 * cin)));
    fill(b, (size_t)cout, 2 + cout, 0.1f);
    fill(x, nin, 3 + h * 31 + w, 1.0f);
    fill(dy, nout, 4 + h + w * 17, 1.0f);
    nst__conv3x3_forward_ref(yr, x, wt, b, cin, cout, h, w, relu, 1);
    nst__conv3x3_backward_data_ref(dxr, dy, wt, cin, cout, h, w, 1);
    if (nst__conv_plan_create_ex(wt, b, cin, cout, algo, arch, &p) != NST_OK) goto done;
    if (nst__conv_forward(p, x, y, h, w, relu, 1, NULL) != NST_OK) goto done;
    if (nst__conv_backward_data(p, dy, dx, h, w, 1, NULL) != NST_OK) goto done;
    for (t = 2; t <= 3; t++) {   /* other thread counts, with a caller workspace: identical bytes */
        size_t wsn = nst__conv_workspace(p, h, w, t);
        void *ws = wsn ? nst__malloc(wsn) : NULL;
        int ok = nst__conv_forward(p, x, y2, h, w, relu, t, ws) == NST_OK &&
                 nst__conv_backward_data(p, dy, dx2, h, w, t, ws) == NST_OK;
        nst__free(ws);
        if (!ok || memcmp(y, y2, sizeof(float) * nout) || memcmp(dx, dx2, sizeof(float) * nin)) {
            fprintf(stderr, "  %dx%d %dx%d: thread count %d changes the result\n", cin, cout, h, w, t);
            goto done;
        }
    }
    err = rel_err(y, yr, nout);
    {
        double e2 = rel_err(dx, dxr, nin);
        if (!(e2 <= err)) err = e2;
    }
done:
    nst__conv_plan_free(p);
    nst__free(wt); nst__free(b); nst__free(x); nst__free(dy); nst__free(y); nst__free(yr); nst__free(y2);
    nst__free(dx); nst__free(dxr); nst__free(dx2);
    return err;
}

static const int sizes[][2] = { { 33, 17 }, { 1, 1 }, { 7, 5 }, { 2, 3 }, { 16, 70 } };
static const int chans[] = { 1, 3, 7, 13, 17, 33 };
#define NSIZES ((int)(sizeof sizes / sizeof sizes[0]))
#define NCHANS ((int)(sizeof chans / sizeof chans[0]))

static void sweep(int algo, nst_arch arch, double tol) {
    int a, b, s;
    for (a = 0; a < NCHANS; a++)
        for (b = 0; b < NCHANS; b++)
            for (s = 0; s < NSIZES; s++) {
                int relu = (a + b + s) & 1;
                if (quick() && (a + b + s) % 3 != 0) continue;   /* a third of the grid, every value kept */
                double e = check_layer(chans[a], chans[b], sizes[s][0], sizes[s][1], relu, algo, arch);
                CHECK_MSG(e <= tol, "cin %d cout %d %dx%d relu %d: error %.3g > %.3g", chans[a], chans[b],
                          sizes[s][0], sizes[s][1], relu, e, tol);
            }
}

TEST(direct_scalar_matches_reference) { sweep(NST__CONV_DIRECT, NST_ARCH_SCALAR, 1e-6); }
TEST(direct_avx512_matches_reference) {
    if (!have_avx512()) SKIP("no AVX-512");
    sweep(NST__CONV_DIRECT, NST_ARCH_AVX512, 1e-5);
}
TEST(winograd_scalar_matches_reference) { sweep(NST__CONV_WINO, NST_ARCH_SCALAR, 2e-4); }
TEST(direct_neon_matches_reference) {
    if (!have_neon()) SKIP("not aarch64");
    sweep(NST__CONV_DIRECT, NST_ARCH_NEON, 1e-5);
}
TEST(winograd_neon_matches_reference) {
    if (!have_neon()) SKIP("not aarch64");
    sweep(NST__CONV_WINO, NST_ARCH_NEON, 2e-4);
    {   /* 65 channels: odd, past the 64-tile block and the 48-channel chunk */
        double e = check_layer(65, 65, 13, 19, 1, NST__CONV_WINO, NST_ARCH_NEON);
        CHECK_MSG(e <= 2e-4, "65x65 13x19: error %.3g", e);
    }
}
TEST(winograd_avx512_matches_reference) {
    if (!have_avx512()) SKIP("no AVX-512");
    sweep(NST__CONV_WINO, NST_ARCH_AVX512, 2e-4);
}

/* VGG-19 shape classes (3->64, 64->64, 64->128, 128->256, 256->512, 512->512) through the automatic
 * choice on the machine's path, at sizes that exercise full 64-tile blocks and ragged edges. */
TEST(vgg_shapes_auto_path) {
    static const int shp[][4] = { { 3, 64, 67, 45 }, { 64, 64, 45, 38 }, { 64, 128, 23, 30 },
                                  { 128, 256, 17, 13 }, { 256, 512, 9, 11 }, { 512, 512, 6, 5 } };
    int i;
    for (i = 0; i < 6; i++) {
        double e = check_layer(shp[i][0], shp[i][1], shp[i][2], shp[i][3], i & 1, NST__CONV_AUTO, nst__cpu_arch());
        CHECK_MSG(e <= 2e-4, "%d->%d at %dx%d: error %.3g", shp[i][0], shp[i][1], shp[i][2], shp[i][3], e);
    }
    for (i = 0; i < 6; i++) {   /* both paths explicitly (256->512 and 512->512 transform filters per call) */
        double e = check_layer(shp[i][0], shp[i][1], shp[i][2], shp[i][3], 1, NST__CONV_AUTO, NST_ARCH_SCALAR);
        CHECK_MSG(e <= 2e-4, "scalar %d->%d at %dx%d: error %.3g", shp[i][0], shp[i][1], shp[i][2], shp[i][3], e);
        if (!have_avx512()) continue;
        e = check_layer(shp[i][0], shp[i][1], shp[i][2], shp[i][3], 1, NST__CONV_AUTO, NST_ARCH_AVX512);
        CHECK_MSG(e <= 2e-4, "avx512 %d->%d at %dx%d: error %.3g", shp[i][0], shp[i][1], shp[i][2], shp[i][3], e);
    }
}

TEST(vgg_shapes_neon) {
    static const int shp[][4] = { { 3, 64, 67, 45 }, { 64, 64, 45, 38 }, { 64, 128, 23, 30 },
                                  { 128, 256, 17, 13 }, { 256, 512, 9, 11 }, { 512, 512, 6, 5 } };
    /* quick (qemu): smaller planes, still a full 64-tile block (64->64) and a lazy layer (256->512) */
    static const int qshp[][4] = { { 3, 64, 67, 45 }, { 64, 64, 37, 29 }, { 64, 128, 11, 13 },
                                   { 128, 256, 9, 7 }, { 256, 512, 5, 3 } };
    int i;
    if (!have_neon()) SKIP("not aarch64");
    for (i = 0; i < (quick() ? 5 : 6); i++) {
        const int *q = quick() ? qshp[i] : shp[i];
        double e = check_layer(q[0], q[1], q[2], q[3], i & 1, NST__CONV_AUTO, NST_ARCH_NEON);
        CHECK_MSG(e <= 2e-4, "neon %d->%d at %dx%d: error %.3g", q[0], q[1], q[2], q[3], e);
    }
}

/* nst_set_arch and $NST_ARCH reach the convolution table (tests/neon.sh sets NST_ARCH=neon). */
TEST(neon_selected_by_arch) {
    const char *env = getenv("NST_ARCH");
    nst__conv_plan *p = NULL;
    float wt[9 * 4 * 8] = {0};
    if (!have_neon()) SKIP("not aarch64");
    if (env && !strcmp(env, "neon")) CHECK(nst_get_arch() == NST_ARCH_NEON);
    CHECK_OK(nst_set_arch(NST_ARCH_SCALAR));
    CHECK(nst__conv_kernels_for(NST_ARCH_DEFAULT)->arch == NST_ARCH_SCALAR);
    CHECK_OK(nst_set_arch(NST_ARCH_NEON));
    CHECK(nst__conv_kernels_for(NST_ARCH_DEFAULT)->arch == NST_ARCH_NEON);
    CHECK_OK(nst__conv_plan_create(wt, NULL, 8, 4, &p));
    CHECK(p && p->arch == NST_ARCH_NEON);
#if defined(NST__NEON)
    CHECK(p && p->k->wino_gemm == nst__wino_gemm_neon);
#endif
    nst__conv_plan_free(p);
    CHECK_OK(nst_set_arch(NST_ARCH_DEFAULT));
}

/* Eight 32->32 ReLU layers (forward), then eight backward layers through the same stack: the
 * Winograd error relative to the reference chain must stay bounded, not compound. */
static void chain(nst_arch arch) {
    enum { L = 8, C = 32, H = 29, W = 35 };
    size_t n = (size_t)C * H * W;
    float *wt = (float *)nst__malloc(sizeof(float) * L * C * C * 9), *bias = (float *)nst__malloc(sizeof(float) * L * C);
    float *a = (float *)nst__malloc(sizeof(float) * n), *b = (float *)nst__malloc(sizeof(float) * n);
    float *ar = (float *)nst__malloc(sizeof(float) * n), *br = (float *)nst__malloc(sizeof(float) * n);
    nst__conv_plan *p[L];
    double e1 = 0, eb1 = 0, e;
    int l;
    fill(wt, (size_t)L * C * C * 9, 77, (float)sqrt(2.0 / (9.0 * C)));
    fill(bias, (size_t)L * C, 78, 0.05f);
    fill(a, n, 79, 1.0f);
    memcpy(ar, a, sizeof(float) * n);
    for (l = 0; l < L; l++) CHECK_OK(nst__conv_plan_create_ex(wt + (size_t)l * C * C * 9, bias + l * C, C, C,
                                                              NST__CONV_WINO, arch, &p[l]));
    for (l = 0; l < L; l++) {
        CHECK_OK(nst__conv_forward(p[l], a, b, H, W, 1, 2, NULL));
        nst__conv3x3_forward_ref(br, ar, wt + (size_t)l * C * C * 9, bias + l * C, C, C, H, W, 1, 2);
        memcpy(a, b, sizeof(float) * n); memcpy(ar, br, sizeof(float) * n);
        e = rel_err(a, ar, n);
        if (l == 0) e1 = e;
        CHECK_MSG(e <= 5e-4 && e <= 10 * e1 + 1e-6, "forward layer %d: error %.3g (first %.3g)", l + 1, e, e1);
    }
    fill(a, n, 80, 1.0f);
    memcpy(ar, a, sizeof(float) * n);
    for (l = L - 1; l >= 0; l--) {
        CHECK_OK(nst__conv_backward_data(p[l], a, b, H, W, 2, NULL));
        nst__conv3x3_backward_data_ref(br, ar, wt + (size_t)l * C * C * 9, C, C, H, W, 2);
        memcpy(a, b, sizeof(float) * n); memcpy(ar, br, sizeof(float) * n);
        e = rel_err(a, ar, n);
        if (l == L - 1) eb1 = e;
        CHECK_MSG(e <= 5e-4 && e <= 10 * eb1 + 1e-6, "backward layer %d: error %.3g (first %.3g)", l + 1, e, eb1);
    }
    for (l = 0; l < L; l++) nst__conv_plan_free(p[l]);
    nst__free(wt); nst__free(bias); nst__free(a); nst__free(b); nst__free(ar); nst__free(br);
}
TEST(winograd_error_does_not_grow_with_depth) {
    chain(NST_ARCH_SCALAR);
    if (have_avx512()) chain(NST_ARCH_AVX512);
}
TEST(winograd_neon_error_does_not_grow_with_depth) {
    if (!have_neon()) SKIP("not aarch64");
    chain(NST_ARCH_NEON);
}

/* Pooling, fast vs reference, bit for bit; values quantised so ties (first maximum wins) happen.
 * arch: one path, or NST_ARCH_DEFAULT for the machine's path and AVX-512 when present. */
static void pool_check(nst_arch only) {
    static const int shp[][3] = { { 3, 7, 5 }, { 1, 1, 1 }, { 2, 33, 17 }, { 5, 2, 3 }, { 4, 64, 63 }, { 3, 6, 130 },
                                  { 2, 9, 18 }, { 1, 4, 9 } };
    int i, avg, a;
    for (i = 0; i < (int)(sizeof shp / sizeof shp[0]); i++)
        for (avg = 0; avg < 2; avg++) {
            int c = shp[i][0], h = shp[i][1], w = shp[i][2], oh = h / 2, ow = w / 2;
            size_t n = (size_t)c * h * w, no = (size_t)c * oh * ow + 1, k;
            float *x = (float *)nst__malloc(sizeof(float) * n), *g = (float *)nst__malloc(sizeof(float) * no);
            float *o1 = (float *)nst__malloc(sizeof(float) * no), *o2 = (float *)nst__malloc(sizeof(float) * no);
            float *d1 = (float *)nst__malloc(sizeof(float) * n), *d2 = (float *)nst__malloc(sizeof(float) * n);
            fill(x, n, 5 + i, 2.0f);
            for (k = 0; k < n; k++) x[k] = (float)floor(x[k]);   /* many equal values */
            fill(g, no, 6 + i, 1.0f);
            for (k = 0; k < n; k++) d1[k] = 123.0f;              /* must be overwritten */
            nst__pool2x2_forward_ref(o1, x, c, h, w, avg, 1);
            nst__pool2x2_backward_ref(d1, g, avg ? NULL : x, c, h, w, avg, 1);
            for (a = 0; a < 2; a++) {
                nst_arch arch = only != NST_ARCH_DEFAULT ? only : a ? NST_ARCH_AVX512 : nst__cpu_arch();
                if (a && (only != NST_ARCH_DEFAULT || !have_avx512())) break;
                for (k = 0; k < n; k++) d2[k] = 123.0f;
                nst__pool_forward_ex(o2, x, c, h, w, avg, 2, arch);
                CHECK_MSG(!memcmp(o1, o2, sizeof(float) * (no - 1)), "forward %dx%dx%d avg %d arch %d", c, h, w, avg, (int)arch);
                nst__pool_backward_ex(d2, g, avg ? NULL : x, c, h, w, avg, 2, arch);
                CHECK_MSG(!memcmp(d1, d2, sizeof(float) * n), "backward %dx%dx%d avg %d arch %d", c, h, w, avg, (int)arch);
            }
            nst__free(x); nst__free(g); nst__free(o1); nst__free(o2); nst__free(d1); nst__free(d2);
        }
}
TEST(pooling_matches_reference) { pool_check(NST_ARCH_DEFAULT); }
TEST(pooling_neon_matches_reference) {
    if (!have_neon()) SKIP("not aarch64");
    pool_check(NST_ARCH_NEON);
}

TEST(public_api_and_bad_arguments) {
    enum { CI = 5, CO = 9, H = 11, W = 13 };
    float wt[CO * CI * 9], b[CO], x[CI * H * W], y[CO * H * W], yr[CO * H * W], dx[CI * H * W], dxr[CI * H * W];
    nst__conv_plan *p = (nst__conv_plan *)&p;
    fill(wt, sizeof wt / sizeof *wt, 9, 0.3f);
    fill(b, CO, 10, 0.3f);
    fill(x, sizeof x / sizeof *x, 11, 1.0f);
    CHECK_OK(nst_conv3x3_forward(y, x, wt, b, CI, CO, H, W, 1));
    nst__conv3x3_forward_ref(yr, x, wt, b, CI, CO, H, W, 1, 1);
    CHECK(rel_err(y, yr, sizeof y / sizeof *y) <= 2e-4);
    CHECK_OK(nst_conv3x3_backward_data(dx, y, wt, CI, CO, H, W));
    nst__conv3x3_backward_data_ref(dxr, y, wt, CI, CO, H, W, 1);
    CHECK(rel_err(dx, dxr, sizeof dx / sizeof *dx) <= 2e-4);
    CHECK(nst_conv3x3_forward(y, x, wt, b, 0, CO, H, W, 1) == NST_ERR_ARGUMENT);
    CHECK(nst_conv3x3_forward(y, NULL, wt, b, CI, CO, H, W, 1) == NST_ERR_ARGUMENT);
    CHECK(nst_conv3x3_backward_data(dx, y, wt, CI, CO, 0, W) == NST_ERR_ARGUMENT);
    CHECK(nst__conv_plan_create(NULL, b, CI, CO, &p) == NST_ERR_ARGUMENT && p == NULL);
    CHECK(strlen(nst_last_error()) > 0);
}

int main(int argc, char **argv) {
    nst_test_begin(argc, argv);
    RUN(direct_scalar_matches_reference);
    RUN(direct_avx512_matches_reference);
    RUN(winograd_scalar_matches_reference);
    RUN(winograd_avx512_matches_reference);
    RUN(direct_neon_matches_reference);
    RUN(winograd_neon_matches_reference);
    RUN(vgg_shapes_auto_path);
    RUN(vgg_shapes_neon);
    RUN(neon_selected_by_arch);
    RUN(winograd_error_does_not_grow_with_depth);
    RUN(winograd_neon_error_does_not_grow_with_depth);
    RUN(pooling_matches_reference);
    RUN(pooling_neon_matches_reference);
    RUN(public_api_and_bad_arguments);
    return nst_test_end("test_conv");
}
