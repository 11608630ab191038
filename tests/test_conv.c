/* Fast 3x3 convolution and pooling (the >>conv section of nst.h) against the scalar reference kernels (>>tensor).
 *
 * Error bounds, as max |fast - ref| / max |ref| over the output (per layer, random N(0,1) inputs and
 * He-scaled weights):
 *   direct AVX-512            1e-5  (same sums, FMA rounding and a different order)
 *   Winograd F(4x4,3x3)       2e-4  (transform constants up to 8, 1/24: measured ~1e-5..5e-5)
 *   Winograd chained 8 deep   5e-4  at the last layer, and not more than 10x the first layer's error
 *   pooling                   exact (bit for bit)
 * Every path in the kernel table the CPU has (scalar, AVX2+FMA, AVX-512, NEON) runs the same sweeps; the
 * others are skipped. Every path runs with thread counts 1, 2 and 3 and must give identical bytes. Layers with >= 64x64
 * filters transform them per call (lazy, NST__WINO_LAZY): the sweeps' 65 x 65 and the VGG shapes from
 * 64 -> 64 on; smaller ones keep them (eager). */
#define NST_IMPLEMENTATION
#include "nst.h"
#include "nst_test.h"

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

/* A path is tested when the CPU has it and the build has a kernel-table entry for it. */
static int have(nst_arch a) { return nst__cpu()->has[a] && nst__conv_kernels_for(a)->arch == a; }
static const nst_arch simd_archs[] = { NST_ARCH_AVX2, NST_ARCH_AVX512, NST_ARCH_NEON };

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

static const int sizes[][2] = { { 33, 17 }, { 1, 1 }, { 7, 5 }, { 2, 3 }, { 16, 70 }, { 12, 9 }, { 5, 32 } };
static const int chans[] = { 1, 3, 7, 17, 65 };
#define NSIZES ((int)(sizeof sizes / sizeof sizes[0]))
#define NCHANS ((int)(sizeof chans / sizeof chans[0]))

static void sweep(int algo, nst_arch arch, double tol) {
    int a, b, s;
    for (a = 0; a < NCHANS; a++)
        for (b = 0; b < NCHANS; b++)
            for (s = 0; s < NSIZES; s++) {
                int relu = (a + b + s) & 1;
                double e = check_layer(chans[a], chans[b], sizes[s][0], sizes[s][1], relu, algo, arch);
                CHECK_MSG(e <= tol, "cin %d cout %d %dx%d relu %d: error %.3g > %.3g", chans[a], chans[b],
                          sizes[s][0], sizes[s][1], relu, e, tol);
            }
}

TEST(direct_scalar_matches_reference) { sweep(NST__CONV_DIRECT, NST_ARCH_SCALAR, 1e-6); }
TEST(winograd_scalar_matches_reference) { sweep(NST__CONV_WINO, NST_ARCH_SCALAR, 2e-4); }
#define NST_T_PATH(name, arch, label)                                   \
    TEST(direct_##name##_matches_reference) {                          \
        if (!have(arch)) SKIP("no " label);                            \
        sweep(NST__CONV_DIRECT, arch, 1e-5);                           \
    }                                                                  \
    TEST(winograd_##name##_matches_reference) {                        \
        if (!have(arch)) SKIP("no " label);                            \
        sweep(NST__CONV_WINO, arch, 2e-4);                             \
    }
NST_T_PATH(avx2, NST_ARCH_AVX2, "AVX2+FMA")
NST_T_PATH(avx512, NST_ARCH_AVX512, "AVX-512")
NST_T_PATH(neon, NST_ARCH_NEON, "NEON")

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
    for (i = 0; i < 6; i++) {   /* every path explicitly (256->512 and 512->512 transform filters per call) */
        double e = check_layer(shp[i][0], shp[i][1], shp[i][2], shp[i][3], 1, NST__CONV_AUTO, NST_ARCH_SCALAR);
        size_t a;
        CHECK_MSG(e <= 2e-4, "scalar %d->%d at %dx%d: error %.3g", shp[i][0], shp[i][1], shp[i][2], shp[i][3], e);
        for (a = 0; a < sizeof simd_archs / sizeof simd_archs[0]; a++) {
            if (!have(simd_archs[a]) || simd_archs[a] == nst__cpu_arch()) continue;
            e = check_layer(shp[i][0], shp[i][1], shp[i][2], shp[i][3], 1, NST__CONV_AUTO, simd_archs[a]);
            CHECK_MSG(e <= 2e-4, "%s %d->%d at %dx%d: error %.3g", nst__arch_name(simd_archs[a]), shp[i][0], shp[i][1],
                      shp[i][2], shp[i][3], e);
        }
    }
}

/* Wide maps: tile groups whose six rows lie inside the image are transformed from the feature map in
 * place, the border groups from zero-padded copies; blocks that start mid-row, ragged right edges and
 * both group widths (8 tiles AVX2, 16 AVX-512) on every path, 1..3 threads (check_layer). */
TEST(winograd_in_place_rows) {
    static const int shp[][4] = { { 9, 7, 13, 301 }, { 17, 6, 10, 257 }, { 3, 13, 23, 199 }, { 8, 8, 9, 70 } };
    int i;
    size_t a;
    for (i = 0; i < 4; i++) {
        double e = check_layer(shp[i][0], shp[i][1], shp[i][2], shp[i][3], i & 1, NST__CONV_WINO, NST_ARCH_SCALAR);
        CHECK_MSG(e <= 2e-4, "scalar %d->%d at %dx%d: error %.3g", shp[i][0], shp[i][1], shp[i][2], shp[i][3], e);
        for (a = 0; a < sizeof simd_archs / sizeof simd_archs[0]; a++) {
            if (!have(simd_archs[a])) continue;
            e = check_layer(shp[i][0], shp[i][1], shp[i][2], shp[i][3], i & 1, NST__CONV_WINO, simd_archs[a]);
            CHECK_MSG(e <= 2e-4, "%s %d->%d at %dx%d: error %.3g", nst__arch_name(simd_archs[a]), shp[i][0], shp[i][1],
                      shp[i][2], shp[i][3], e);
        }
    }
}

/* Planes of >= 512 x 512 (NST__WINO_STREAM_PLANE): the AVX2 output transform writes them with
 * non-temporal stores, whole aligned rows only (w = 512: every row; w = 509: rows at any alignment,
 * ragged right edge, partial last tile row), both directions, 1..3 threads (check_layer). */
TEST(winograd_streamed_planes) {
    static const int shp[][4] = { { 8, 9, 512, 512 }, { 9, 8, 515, 509 } };
    int i;
    size_t a;
    for (i = 0; i < 2; i++)
        for (a = 0; a < sizeof simd_archs / sizeof simd_archs[0]; a++) {
            double e;
            if (!have(simd_archs[a])) continue;
            e = check_layer(shp[i][0], shp[i][1], shp[i][2], shp[i][3], i & 1, NST__CONV_WINO, simd_archs[a]);
            CHECK_MSG(e <= 2e-4, "%s %d->%d at %dx%d: error %.3g", nst__arch_name(simd_archs[a]), shp[i][0], shp[i][1],
                      shp[i][2], shp[i][3], e);
        }
}

/* conv1_1's shapes, both directions (3 -> 64 forward, 64 -> 3 backward), direct, on every path against the
 * reference: sizes around the 32-pixel blocks and 16-pixel tiles of the AVX2 packed-row kernel (1..5
 * rows, ragged right edges whose last block holds 1..31 pixels or ends exactly at the border, several
 * bands per thread at 9 rows), channel counts around its 6- and 3-channel tiles; and
 * the automatic choice: on AVX2, conv1_1's backward (64 -> 3) is direct (dkout), its forward direct. */
TEST(direct_conv1_1_shapes) {
    static const int hw[][2] = { { 1, 1 }, { 2, 3 }, { 3, 2 }, { 5, 7 }, { 7, 13 }, { 13, 17 }, { 17, 33 },
                                 { 33, 17 }, { 3, 65 }, { 2, 97 }, { 1, 7 }, { 2, 13 }, { 5, 17 }, { 1, 33 },
                                 { 2, 40 }, { 5, 40 }, { 1, 100 }, { 5, 100 }, { 9, 64 } };
    static const int ch[][2] = { { 3, 64 }, { 64, 3 }, { 2, 5 }, { 9, 2 }, { 3, 9 } };
    const nst_arch archs[] = { NST_ARCH_SCALAR, NST_ARCH_AVX2, NST_ARCH_AVX512, NST_ARCH_NEON };
    int i, j;
    size_t a;
    for (a = 0; a < sizeof archs / sizeof archs[0]; a++) {
        if (archs[a] != NST_ARCH_SCALAR && !have(archs[a])) continue;
        for (i = 0; i < (int)(sizeof hw / sizeof hw[0]); i++)
            for (j = 0; j < (int)(sizeof ch / sizeof ch[0]); j++) {
                double e = check_layer(ch[j][0], ch[j][1], hw[i][0], hw[i][1], (i + j) & 1, NST__CONV_DIRECT, archs[a]);
                CHECK_MSG(e <= 1e-5, "%s %d->%d at %dx%d: error %.3g", nst__arch_name(archs[a]), ch[j][0], ch[j][1],
                          hw[i][0], hw[i][1], e);
            }
    }
    if (have(NST_ARCH_AVX2)) {
        static float wt[64 * 3 * 9];
        nst__conv_plan *p = NULL;
        CHECK(nst__conv_plan_create_ex(wt, NULL, 3, 64, NST__CONV_AUTO, NST_ARCH_AVX2, &p) == NST_OK);
        CHECK(p && p->dir[0].algo == NST__CONV_DIRECT && p->dir[1].algo == NST__CONV_DIRECT);
        nst__conv_plan_free(p);
        CHECK(nst__conv_plan_create_ex(wt, NULL, 48, 4, NST__CONV_AUTO, NST_ARCH_AVX2, &p) == NST_OK);   /* 4 outputs */
        CHECK(p && p->dir[0].algo == NST__CONV_WINO && p->dir[1].algo == NST__CONV_DIRECT);
        nst__conv_plan_free(p);
    }
}

#if defined(NST__X86)
/* The AVX2 filter transform ((channel, row) pairs whose taps are transposed in, k-major blocks of 6 rows)
 * writes the scalar transform's values in the layout u[36][nob][kin][6]; partial groups of 4 channels and
 * 32-channel chunks, missing rows of the last block, both directions. */
TEST(avx2_filter_transform_layout) {
    static const int shp[][2] = { { 1, 1 }, { 13, 7 }, { 33, 17 }, { 70, 6 }, { 5, 64 } };
    int i, d;
    if (!have(NST_ARCH_AVX2)) SKIP("no AVX2+FMA");
    for (i = 0; i < 5; i++) {
        int cin = shp[i][0], cout = shp[i][1];
        float *wt = (float *)nst__malloc(sizeof(float) * (size_t)cin * cout * 9);
        nst__conv_plan *ps = NULL, *pa = NULL;
        fill(wt, (size_t)cin * cout * 9, 40 + i, 1.0f);
        CHECK_OK(nst__conv_plan_create_ex(wt, NULL, cin, cout, NST__CONV_WINO, NST_ARCH_SCALAR, &ps));
        CHECK_OK(nst__conv_plan_create_ex(wt, NULL, cin, cout, NST__CONV_WINO, NST_ARCH_AVX2, &pa));
        for (d = 0; d < 2 && ps && pa; d++) {
            int kin = d == 0 ? cin : cout, kout = d == 0 ? cout : cin, nob = (kout + 5) / 6, ob, e, r, k;
            size_t n = (size_t)36 * nob * 6 * kin, bad = 0;
            float *ur = (float *)nst__malloc(sizeof(float) * n), *ua = (float *)nst__malloc(sizeof(float) * n);
            for (ob = 0; ob < nob; ob++) {
                nst__wino_filters(ps, d, ur, ob);
                pa->k->wino_filters(pa, d, ua, ob);
            }
            for (e = 0; e < 36; e++)
                for (ob = 0; ob < nob; ob++)
                    for (r = 0; r < 6; r++)
                        for (k = 0; k < kin; k++) {
                            float x = ur[(((size_t)e * nob + ob) * 6 + r) * kin + k];
                            size_t j = (((size_t)e * nob + ob) * kin + k) * 6 + r;
                            bad += !(fabs(ua[j] - x) <= 1e-6 * (1 + fabs(x)));
                        }
            CHECK_MSG(bad == 0, "%d->%d direction %d: %zu AVX2 values differ", cin, cout, d, bad);
            nst__free(ur); nst__free(ua);
        }
        nst__conv_plan_free(ps); nst__conv_plan_free(pa);
        nst__free(wt);
    }
}
#endif

/* The tiles per Winograd block follow the L2 size (nst__wino_nt): a small L2 must shrink the blocks of
 * wide layers, and the result must be the same bytes as with the table's block size, forward and
 * backward, 1 and 2 threads (every tile's sums run in the same order whatever the block). */
TEST(winograd_block_follows_l2) {
    enum { CIN = 72, COUT = 40, H = 37, W = 70 };   /* 10 x 18 tiles: several blocks of 32 and of 64 */
    size_t nin = (size_t)CIN * H * W, nout = (size_t)COUT * H * W;
    float *wt = (float *)nst__malloc(sizeof(float) * CIN * COUT * 9), *b = (float *)nst__malloc(sizeof(float) * COUT);
    float *x = (float *)nst__malloc(sizeof(float) * nin), *dy = (float *)nst__malloc(sizeof(float) * nout);
    float *y[2], *dx[2];
    int ai, v, t;
    fill(wt, (size_t)CIN * COUT * 9, 91, 0.1f);
    fill(b, COUT, 92, 0.1f);
    fill(x, nin, 93, 1.0f);
    fill(dy, nout, 94, 1.0f);
    for (v = 0; v < 2; v++) {
        y[v] = (float *)nst__malloc(sizeof(float) * nout);
        dx[v] = (float *)nst__malloc(sizeof(float) * nin);
    }
    for (ai = -1; ai < 3; ai++) {
        nst_arch a = ai < 0 ? NST_ARCH_SCALAR : simd_archs[ai];
        nst__conv_plan *p = NULL;
        if (!have(a)) continue;
        CHECK_OK(nst__conv_plan_create_ex(wt, b, CIN, COUT, NST__CONV_WINO, a, &p));
        if (!p) continue;
        for (t = 1; t <= 2; t++) {
            for (v = 0; v < 2; v++) {   /* v = 0: the table's nt (huge L2); v = 1: a 4 KiB L2 caps it at 32 */
                int tiles = ((H + 3) / 4) * ((W + 3) / 4), nt;
                nst__gemm_cache_forced[0] = 32 * 1024;
                nst__gemm_cache_forced[1] = v == 0 ? 1 << 30 : 4 * 1024;
                nt = nst__wino_nt(p->k, CIN, tiles, 1);
                CHECK_MSG(v == 0 ? nt == NST__MIN(p->k->nt, (tiles + p->k->nr - 1) / p->k->nr * p->k->nr)
                                 : nt == (32 + p->k->nr - 1) / p->k->nr * p->k->nr,
                          "%s: %d tiles per block with L2 %d", p->k->name, nt, nst__gemm_cache_forced[1]);
                CHECK_OK(nst__conv_forward(p, x, y[v], H, W, 1, t, NULL));
                CHECK_OK(nst__conv_backward_data(p, dy, dx[v], H, W, t, NULL));
            }
            CHECK_MSG(!memcmp(y[0], y[1], sizeof(float) * nout) && !memcmp(dx[0], dx[1], sizeof(float) * nin),
                      "%s, %d threads: the block size changed the result", p->k->name, t);
        }
        nst__gemm_cache_forced[0] = nst__gemm_cache_forced[1] = 0;
        nst__conv_plan_free(p);
    }
    for (v = 0; v < 2; v++) { nst__free(y[v]); nst__free(dx[v]); }
    nst__free(wt); nst__free(b); nst__free(x); nst__free(dy);
}

/* A last block of at most a quarter of the others is folded into them (nst__wino_nt): 9 x 8 tiles on one
 * thread run as one block of 72 (80 on 16-column paths) instead of 64 + 8, on two as 48 + 24. Every path
 * against the reference, and (check_layer) the same bytes on 1, 2 and 3 threads, so across the block sizes. */
TEST(winograd_small_last_block_merged) {
    enum { CIN = 40, COUT = 24, H = 36, W = 32 };
    int ai;
    nst__gemm_cache_forced[0] = 32 * 1024;
    nst__gemm_cache_forced[1] = 1 << 30;
    for (ai = -1; ai < (int)(sizeof simd_archs / sizeof simd_archs[0]); ai++) {
        nst_arch a = ai < 0 ? NST_ARCH_SCALAR : simd_archs[ai];
        const nst__conv_kernels *k = nst__conv_kernels_for(a);
        int tiles = ((H + 3) / 4) * ((W + 3) / 4), nt1, nt2;
        double e;
        if (!have(a)) continue;
        nt1 = nst__wino_nt(k, CIN, tiles, 1);
        nt2 = nst__wino_nt(k, CIN, tiles, 2);
        CHECK_MSG(nt1 >= tiles && nt1 > k->nt && nt2 <= k->nt, "%s: %d tiles in blocks of %d (1 thread), %d (2)",
                  k->name, tiles, nt1, nt2);
        e = check_layer(CIN, COUT, H, W, 1, NST__CONV_WINO, a);
        CHECK_MSG(e <= 2e-4, "%s: error %.3g", k->name, e);
    }
    nst__gemm_cache_forced[0] = nst__gemm_cache_forced[1] = 0;
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
    size_t a;
    chain(NST_ARCH_SCALAR);
    for (a = 0; a < sizeof simd_archs / sizeof simd_archs[0]; a++)
        if (have(simd_archs[a])) chain(simd_archs[a]);
}

/* Lazy directions (filters transformed per call) on maps of at most NST__CONV_SMALL_HW pixels run as one
 * GEMM over the 9 taps (nst__conv_small_run): forward with bias and ReLU, backward-data through the
 * transposed weights and col2im, against the reference on every path, 1..3 threads bit-equal
 * (check_layer); the probe counts that the GEMM ran, and that a map one pixel past the limit stays on the
 * engine. No fused pool or mask there: nst__conv_pool_fuses says no at those sizes and yes above. */
TEST(small_maps_run_lazy_directions_as_one_gemm) {
    static const int shp[][4] = { { 256, 256, 1, 1 }, { 256, 256, 1, 7 }, { 256, 256, 13, 1 }, { 256, 256, 3, 5 },
                                  { 256, 512, 8, 8 }, { 512, 256, 11, 11 }, { 256, 256, 8, 16 }, { 512, 512, 4, 4 } };
    nst_arch archs[4];
    int na = 0, a, i;
    archs[na++] = NST_ARCH_SCALAR;
    for (a = 0; a < (int)(sizeof simd_archs / sizeof simd_archs[0]); a++)
        if (have(simd_archs[a])) archs[na++] = simd_archs[a];
    for (a = 0; a < na; a++)
        for (i = 0; i < (int)(sizeof shp / sizeof shp[0]); i++) {
            int before = nst__conv_small_calls;
            double e = check_layer(shp[i][0], shp[i][1], shp[i][2], shp[i][3], i & 1, NST__CONV_WINO, archs[a]);
            CHECK_MSG(e <= 1e-5, "%s %d->%d at %dx%d: error %.3g", nst__arch_name(archs[a]), shp[i][0], shp[i][1],
                      shp[i][2], shp[i][3], e);
            /* check_layer: forward and backward at 1, 2 and 3 threads */
            CHECK_MSG(nst__conv_small_calls - before == 6, "%s %dx%d: %d small-map calls", nst__arch_name(archs[a]),
                      shp[i][2], shp[i][3], nst__conv_small_calls - before);
        }
    {   /* 129 pixels: the engine; and the pool fusion follows the path */
        int before = nst__conv_small_calls;
        double e = check_layer(256, 256, 3, 43, 1, NST__CONV_WINO, NST_ARCH_SCALAR);
        float *wt = (float *)nst__calloc((size_t)256 * 256 * 9, sizeof(float));
        nst__conv_plan *p = NULL;
        CHECK_MSG(e <= 2e-4, "256->256 at 3x43: error %.3g", e);
        CHECK(nst__conv_small_calls == before);
        CHECK_OK(nst__conv_plan_create_ex(wt, NULL, 256, 256, NST__CONV_WINO, nst__cpu_arch(), &p));
        if (p) {
            CHECK(p->dir[0].lazy && p->dir[1].lazy);
            CHECK(!nst__conv_pool_fuses(p, 0, 8, 16) && !nst__conv_pool_fuses(p, 1, 8, 16));
            CHECK(nst__conv_pool_fuses(p, 0, 16, 16) == (p->k->nr % 2 == 0));
        }
        nst__conv_plan_free(p);
        nst__free(wt);
    }
}

/* Pooling, fast vs reference, bit for bit; values quantised so ties (first maximum wins) happen. */
TEST(pooling_matches_reference) {
    static const int shp[][3] = { { 3, 7, 5 }, { 1, 1, 1 }, { 2, 33, 17 }, { 5, 2, 3 }, { 4, 64, 63 }, { 3, 6, 130 } };
    int i, avg, a;
    for (i = 0; i < 6; i++)
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
            for (a = 0; a < 4; a++) {
                nst_arch arch = a < 3 ? simd_archs[a] : NST_ARCH_SCALAR;
                if (!have(arch)) continue;
                for (k = 0; k < n; k++) d2[k] = 123.0f;
                nst__pool_forward_ex(o2, x, c, h, w, avg, 2, arch);
                CHECK_MSG(!memcmp(o1, o2, sizeof(float) * (no - 1)), "forward %dx%dx%d avg %d arch %d", c, h, w, avg, (int)arch);
                nst__pool_backward_ex(d2, g, avg ? NULL : x, c, h, w, avg, 2, arch);
                CHECK_MSG(!memcmp(d1, d2, sizeof(float) * n), "backward %dx%dx%d avg %d arch %d", c, h, w, avg, (int)arch);
            }
            nst__free(x); nst__free(g); nst__free(o1); nst__free(o2); nst__free(d1); nst__free(d2);
        }
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
    RUN(winograd_scalar_matches_reference);
    RUN(direct_avx2_matches_reference);
    RUN(winograd_avx2_matches_reference);
    RUN(direct_avx512_matches_reference);
    RUN(winograd_avx512_matches_reference);
    RUN(direct_neon_matches_reference);
    RUN(winograd_neon_matches_reference);
    RUN(vgg_shapes_auto_path);
    RUN(winograd_small_last_block_merged);
    RUN(winograd_in_place_rows);
    RUN(winograd_streamed_planes);
    RUN(winograd_block_follows_l2);
    RUN(direct_conv1_1_shapes);
#if defined(NST__X86)
    RUN(avx2_filter_transform_layout);
#endif
    RUN(winograd_error_does_not_grow_with_depth);
    RUN(small_maps_run_lazy_directions_as_one_gemm);
    RUN(pooling_matches_reference);
    RUN(public_api_and_bad_arguments);
    return nst_test_end("test_conv");
}
