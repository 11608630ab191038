/* Beyond neural-style: reflection padding of the random model, spatial style masks (guided Grams),
 * temporal consistency for video frames, and the style-target cache that batch runs share. */
#define NST_IMPLEMENTATION
#include "nst.h"
#include "nst_test.h"
#include <stdlib.h>

static nst__rng rng = {777};
static float *rand_vec(size_t n, double lo, double hi) { return nst_t_rand_vec(&rng, n, lo, hi); }
static double max_abs(const float *a, size_t n) {
    double m = 0;
    size_t i;
    for (i = 0; i < n; i++) if (fabs(a[i]) > m) m = fabs(a[i]);
    return m;
}

/* A model of narrow layers (fast), He-initialised, zero bias unless asked. */
static nst_model *tiny_model(int widths, unsigned long long seed, int reflect) {
    nst_model *m = nst_t_tiny_model(&rng, widths, seed);
    if (m) m->reflect = reflect;
    return m;
}

/* The weight-free model, made once (its calibration takes a few seconds on the scalar path). */
static nst_model *shared_random;
static nst_model *random_model(void) {
    if (!shared_random && nst_model_random(2, &shared_random) != NST_OK)
        fprintf(stderr, "random model: %s\n", nst_last_error());
    return shared_random;
}

/* ---- reflection padding ----------------------------------------------------------------------------*/
/* The random model's pad: outside index i reads 0.7 * its edge + 0.3 * the row next to it (nst.h). */
static double pad_tap(const float *img, int y, int x, int h, int wd) {
    int ys[2], xs[2], a, b;
    double wy[2], wx[2], s = 0;
    ys[0] = ys[1] = y; wy[0] = 1; wy[1] = 0;
    xs[0] = xs[1] = x; wx[0] = 1; wx[1] = 0;
    if (y < 0 || y >= h) { ys[0] = y < 0 ? 0 : h - 1; ys[1] = h < 2 ? ys[0] : y < 0 ? 1 : h - 2; wy[0] = 0.7; wy[1] = 0.3; }
    if (x < 0 || x >= wd) { xs[0] = x < 0 ? 0 : wd - 1; xs[1] = wd < 2 ? xs[0] : x < 0 ? 1 : wd - 2; wx[0] = 0.7; wx[1] = 0.3; }
    for (a = 0; a < 2; a++)
        for (b = 0; b < 2; b++) s += wy[a] * wx[b] * img[ys[a] * wd + xs[b]];
    return s;
}
static void naive_conv_reflect(double *out, const float *in, const float *w, const float *b, int cin, int cout, int h,
                               int wd) {
    int co, ci, y, x, ky, kx;
    for (co = 0; co < cout; co++)
        for (y = 0; y < h; y++)
            for (x = 0; x < wd; x++) {
                double s = b[co];
                for (ci = 0; ci < cin; ci++)
                    for (ky = 0; ky < 3; ky++)
                        for (kx = 0; kx < 3; kx++)
                            s += (double)w[((co * cin + ci) * 3 + ky) * 3 + kx] *
                                 pad_tap(in + (size_t)ci * h * wd, y + ky - 1, x + kx - 1, h, wd);
                out[(co * h + y) * wd + x] = s;
            }
}

TEST(reflection_padding_matches_naive_and_its_adjoint) {
    static const int shapes[][2] = {{1, 1}, {1, 5}, {2, 2}, {5, 1}, {2, 7}, {3, 3}, {7, 5}, {13, 17}, {33, 4}};
    nst_model *m = tiny_model(7, 11, 1);
    size_t s;
    if (!m) { CHECK(m != NULL); return; }
    for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int h = shapes[s][0], w = shapes[s][1], ci;
        for (ci = 0; ci < 2; ci++) {   /* conv1_1 (3 -> 7) and conv1_2 (7 -> 7) */
            int cin = m->cin[ci], cout = m->cout[ci];
            size_t nin = (size_t)cin * h * w, nout = (size_t)cout * h * w, i;
            float *x = rand_vec(nin, -1, 1), *y = rand_vec(nout, 0, 1), *r = rand_vec(nout, -1, 1);
            float *dx = rand_vec(nin, 0, 1), *dy = rand_vec(nout, 0, 1);
            float *pad = (float *)malloc(sizeof(float) * nst__reflect_scratch_floats(cin, cout, h, w, 2));
            double *ref = (double *)malloc(sizeof(double) * nout), err = 0, lhs = 0, rhs = 0;
            naive_conv_reflect(ref, x, m->w[ci], m->b[ci], cin, cout, h, w);
            CHECK_OK(nst__conv_forward(m->plan[ci], x, y, h, w, 0, 1, NULL));
            CHECK_OK(nst__reflect_fix_forward(m, ci, x, y, h, w, 1, pad));
            for (i = 0; i < nout; i++) if (fabs(y[i] - ref[i]) > err) err = fabs(y[i] - ref[i]);
            CHECK_MSG(err < 1e-4, "forward %dx%d conv %d: err %g", w, h, ci, err);
            {   /* the border path: the engine's output (ReLU fused or not) with its border rewritten */
                int relu;
                for (relu = 0; relu < 2; relu++) {
                    double e2 = 0;
                    CHECK_OK(nst__conv_forward(m->plan[ci], x, y, h, w, relu, 1, NULL));
                    CHECK_OK(nst__reflect_border_forward(m, ci, x, y, h, w, relu, 2, pad));
                    for (i = 0; i < nout; i++) {
                        double want = relu && ref[i] < 0 ? 0 : ref[i];
                        if (fabs(y[i] - want) > e2) e2 = fabs(y[i] - want);
                    }
                    CHECK_MSG(e2 < 1e-4, "border forward %dx%d conv %d relu %d: err %g", w, h, ci, relu, e2);
                }
            }
            /* backward is the exact adjoint of forward without bias: <A x, r> = <x, A^T r> */
            CHECK_OK(nst__conv_forward(m->plan[ci], x, y, h, w, 0, 1, NULL));
            CHECK_OK(nst__reflect_fix_forward(m, ci, x, y, h, w, 2, pad));   /* 2 threads: split by channel */
            CHECK_OK(nst__conv_backward_data(m->plan[ci], r, dx, h, w, 1, NULL));
            CHECK_OK(nst__reflect_fix_backward(m, ci, r, dx, h, w, 2, pad));
            for (i = 0; i < nout; i++) lhs += (double)(y[i] - m->b[ci][i / ((size_t)h * w)]) * r[i];
            for (i = 0; i < nin; i++) rhs += (double)x[i] * dx[i];
            CHECK_MSG(fabs(lhs - rhs) < 1e-4 * (fabs(lhs) + 1), "adjoint %dx%d conv %d: %g vs %g", w, h, ci, lhs, rhs);
            free(x); free(y); free(r); free(dx); free(dy); free(pad); free(ref);
        }
    }
    nst_model_free(m);
}

/* The backward fix alone against the naive transpose of the outside taps (in double), at channel counts
 * cut into several chunks (40: 16 + 16 + 8; conv1_1's 3 in one), and the same bits on 1, 2 and 3 threads:
 * the chunks depend on the channels only, whichever thread takes them. */
static void pad_tap_adjoint(double *din, double g, int y, int x, int h, int wd) {
    int ys[2], xs[2], a, b;
    double wy[2], wx[2];
    ys[0] = ys[1] = y; wy[0] = 1; wy[1] = 0;
    xs[0] = xs[1] = x; wx[0] = 1; wx[1] = 0;
    if (y < 0 || y >= h) { ys[0] = y < 0 ? 0 : h - 1; ys[1] = h < 2 ? ys[0] : y < 0 ? 1 : h - 2; wy[0] = 0.7; wy[1] = 0.3; }
    if (x < 0 || x >= wd) { xs[0] = x < 0 ? 0 : wd - 1; xs[1] = wd < 2 ? xs[0] : x < 0 ? 1 : wd - 2; wx[0] = 0.7; wx[1] = 0.3; }
    for (a = 0; a < 2; a++)
        for (b = 0; b < 2; b++) din[ys[a] * wd + xs[b]] += wy[a] * wx[b] * g;
}
/* Widths 40 and 17: chunks of whole kernel panels with a short last one (NEON 12 12 12 4 and 12 5, AVX2
 * 16 16 8 and 16 1), so the tap panels' vector blocks, scalar remainder and zero fill all run. */
static void fix_backward_in_chunks(int width);
TEST(reflection_fix_backward_matches_naive_in_chunks) {
    fix_backward_in_chunks(40);
    fix_backward_in_chunks(17);
}
static void fix_backward_in_chunks(int width) {
    static const int shapes[][2] = {{1, 1}, {1, 5}, {2, 2}, {5, 1}, {3, 17}, {13, 7}, {33, 4}};
    nst_model *m = tiny_model(width, 13, 1);
    size_t s;
    if (!m) { CHECK(m != NULL); return; }
    for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int h = shapes[s][0], w = shapes[s][1], ci;
        for (ci = 0; ci < 2; ci++) {
            int cin = m->cin[ci], cout = m->cout[ci], o, i, y, x, ky, kx, t;
            size_t nin = (size_t)cin * h * w, nout = (size_t)cout * h * w, j;
            float *dout = rand_vec(nout, -1, 1), *base = rand_vec(nin, -1, 1), *dx[3];
            float *pad = (float *)malloc(sizeof(float) * nst__reflect_scratch_floats(cin, cout, h, w, 3));
            double *ref = (double *)calloc(nin, sizeof(double)), err = 0, mx = 0;
            for (o = 0; o < cout; o++)
                for (y = 0; y < h; y++)
                    for (x = 0; x < w; x++)
                        for (i = 0; i < cin; i++)
                            for (ky = 0; ky < 3; ky++)
                                for (kx = 0; kx < 3; kx++) {
                                    int yy = y + ky - 1, xx = x + kx - 1;
                                    if (yy >= 0 && yy < h && xx >= 0 && xx < w) continue;
                                    pad_tap_adjoint(ref + (size_t)i * h * w,
                                                    (double)m->w[ci][((size_t)(o * cin + i) * 3 + ky) * 3 + kx] *
                                                        dout[((size_t)o * h + y) * w + x],
                                                    yy, xx, h, w);
                                }
            for (t = 0; t < 3; t++) {
                dx[t] = (float *)malloc(nin * sizeof(float));
                memcpy(dx[t], base, nin * sizeof(float));
                CHECK_OK(nst__reflect_fix_backward(m, ci, dout, dx[t], h, w, t + 1, pad));
            }
            for (j = 0; j < nin; j++) {
                double d = (double)dx[0][j] - base[j];
                if (fabs(d - ref[j]) > err) err = fabs(d - ref[j]);
                if (fabs(ref[j]) > mx) mx = fabs(ref[j]);
            }
            CHECK_MSG(mx > 0 && err < 1e-5 * (mx + 1), "%dx%d conv %d: err %g (max %g)", w, h, ci, err, mx);
            CHECK_MSG(!memcmp(dx[0], dx[1], nin * sizeof(float)) && !memcmp(dx[0], dx[2], nin * sizeof(float)),
                      "%dx%d conv %d: 1, 2 and 3 threads differ", w, h, ci);
            for (t = 0; t < 3; t++) free(dx[t]);
            free(dout); free(base); free(pad); free(ref);
        }
    }
    nst_model_free(m);
}

static double rel_err_d(const float *a, const double *ref, size_t n, int relu) {
    double m = 0, d = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        double want = relu && ref[i] < 0 ? 0 : ref[i], e = fabs(a[i] - want);
        if (!(e <= d)) d = e;   /* NaN fails */
        if (fabs(want) > m) m = fabs(want);
    }
    return d / (m > 1e-30 ? m : 1e-30);
}
/* Forward of plan p (cin -> cout, weights wt, bias) with the blend at h x w on x, with and without the
 * fused ReLU: 1 and 2 threads (ws for 2) bit-equal, each within tol of the naive padded convolution;
 * y and y2 get the outputs. Returns the larger error. */
static double blend_forward_check(nst__conv_plan *p, const float *wt, const float *bias, int cin, int cout, int h,
                                  int w, const float *x, float *y, float *y2, void *ws, double tol) {
    size_t nout = (size_t)cout * h * w;
    double *ref = (double *)malloc(sizeof(double) * nout), worst = 0;
    const char *name = p->k->name;
    int relu;
    naive_conv_reflect(ref, x, wt, bias, cin, cout, h, w);
    for (relu = 0; relu < 2; relu++) {
        double e;
        CHECK_OK(nst__conv_forward_pad(p, x, y, h, w, relu, NST__CONV_PAD_BLEND, 1, NULL));
        CHECK_OK(nst__conv_forward_pad(p, x, y2, h, w, relu, NST__CONV_PAD_BLEND, 2, ws));
        CHECK_MSG(!memcmp(y, y2, sizeof(float) * nout), "%s %dx%d relu %d: 2 threads change the result", name, w, h, relu);
        e = rel_err_d(y, ref, nout, relu);
        if (!(e <= worst)) worst = e;
        CHECK_MSG(e < tol, "%s %dx%d relu %d: error %g", name, w, h, relu, e);
    }
    free(ref);
    return worst;
}
/* The Winograd engine pads with the blend itself (nst__conv_forward_pad, NST__CONV_PAD_BLEND): against the
 * naive convolution over the padded image on every path the CPU has, with and without the fused ReLU,
 * 1 and 2 threads bit-equal, at sizes where every tile is a border tile and at tiles' ragged ends. */
TEST(reflection_padding_in_the_winograd_engine) {
    static const int shapes[][2] = {{1, 1}, {1, 2}, {2, 1}, {2, 2}, {3, 3}, {5, 7}, {7, 5}, {1, 17}, {13, 17},
                                    {17, 13}, {3, 33}, {33, 2}, {33, 33}};
    static const nst_arch archs[] = {NST_ARCH_SCALAR, NST_ARCH_AVX2, NST_ARCH_AVX512, NST_ARCH_NEON};
    const int cin = 9, cout = 13;
    float *wt = rand_vec((size_t)cin * cout * 9, -0.3, 0.3), *bias = rand_vec((size_t)cout, -0.5, 0.5);
    size_t a, s;
    for (a = 0; a < sizeof archs / sizeof archs[0]; a++) {
        nst__conv_plan *p = NULL;
        double worst = 0;
        if (!nst__cpu()->has[archs[a]] || nst__conv_kernels_for(archs[a])->arch != archs[a]) continue;
        CHECK_OK(nst__conv_plan_create_ex(wt, bias, cin, cout, NST__CONV_WINO, archs[a], &p));
        if (!p) continue;
        CHECK(nst__conv_forward_pads(p));
        for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int h = shapes[s][0], w = shapes[s][1];
            size_t nin = (size_t)cin * h * w, nout = (size_t)cout * h * w;
            float *x = rand_vec(nin, -1, 1), *y = rand_vec(nout, 0, 1), *y2 = rand_vec(nout, 0, 1);
            void *ws = malloc(nst__conv_workspace(p, h, w, 2));
            double e = blend_forward_check(p, wt, bias, cin, cout, h, w, x, y, y2, ws, 2e-4);
            if (e > worst) worst = e;
            free(x); free(y); free(y2); free(ws);
        }
        if (getenv("NST_TEST_VERBOSE")) printf("  %s: worst error %.3g\n", nst__conv_kernels_for(archs[a])->name, worst);
        nst__conv_plan_free(p);
    }
    {   /* the direct path pads only with zeros, and says so */
        nst__conv_plan *p = NULL;
        float x[9 * 4], y[13 * 4];
        memset(x, 0, sizeof x);
        CHECK_OK(nst__conv_plan_create_ex(wt, bias, cin, cout, NST__CONV_DIRECT, NST_ARCH_SCALAR, &p));
        if (p) {
            CHECK(!nst__conv_forward_pads(p));
            CHECK(nst__conv_forward_pad(p, x, y, 2, 2, 0, NST__CONV_PAD_BLEND, 1, NULL) == NST_ERR_UNSUPPORTED);
        }
        nst__conv_plan_free(p);
    }
    free(wt); free(bias);
}

/* The small-map GEMM of a lazy direction (nst__conv_small_run) pads with the blend as the engine does:
 * 72 -> 64 filters (lazy, NST__WINO_LAZY; few, as qemu runs this too) at maps of at most
 * NST__CONV_SMALL_HW pixels, against the naive convolution over the
 * padded image on every path the CPU has, with and without ReLU, 1 and 2 threads bit-equal; and its
 * backward-data with the blend (what the network runs there instead of the border fix) against the naive
 * adjoint of that padded convolution, every tap's gradient handed back through pad_tap_adjoint. */
static void pad_tap_adjoint(double *din, double g, int y, int x, int h, int wd);
TEST(reflection_padding_in_the_small_map_gemm) {
    static const int shapes[][2] = {{1, 1}, {1, 2}, {2, 1}, {3, 3}, {5, 7}, {1, 17}, {8, 16}};
    static const nst_arch archs[] = {NST_ARCH_SCALAR, NST_ARCH_AVX2, NST_ARCH_AVX512, NST_ARCH_NEON};
    const int cin = 72, cout = 64;
    float *wt = rand_vec((size_t)cin * cout * 9, -0.15, 0.15), *bias = rand_vec((size_t)cout, -0.5, 0.5);
    size_t a, s;
    for (a = 0; a < sizeof archs / sizeof archs[0]; a++) {
        nst__conv_plan *p = NULL;
        if (!nst__cpu()->has[archs[a]] || nst__conv_kernels_for(archs[a])->arch != archs[a]) continue;
        CHECK_OK(nst__conv_plan_create_ex(wt, bias, cin, cout, NST__CONV_WINO, archs[a], &p));
        if (!p) continue;
        CHECK(nst__conv_forward_pads(p) && p->dir[0].lazy && p->dir[1].lazy);
        for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int h = shapes[s][0], w = shapes[s][1], before = nst__conv_small_calls;
            size_t nin = (size_t)cin * h * w, nout = (size_t)cout * h * w;
            /* y2 takes the forward's output and then the backward's (cin > cout) */
            float *x = rand_vec(nin, -1, 1), *y = rand_vec(nout, 0, 1), *y2 = rand_vec(NST__MAX(nin, nout), 0, 1);
            void *ws = malloc(nst__conv_workspace(p, h, w, 2));
            blend_forward_check(p, wt, bias, cin, cout, h, w, x, y, y2, ws, 1e-5);
            CHECK_MSG(nst__conv_small_calls - before == 4, "%dx%d: %d small-map calls", w, h, nst__conv_small_calls - before);
            {   /* backward-data with the blend: reuses y as dout, x and y2 as the outputs */
                double *rb = (double *)calloc(nin, sizeof(double)), err = 0, mx = 0;
                int o, i, yy, xx, t;
                size_t j;
                CHECK(nst__conv_backward_pads(p, h, w));
                for (o = 0; o < cout; o++)
                    for (yy = 0; yy < h; yy++)
                        for (xx = 0; xx < w; xx++)
                            for (i = 0; i < cin; i++)
                                for (t = 0; t < 9; t++)
                                    pad_tap_adjoint(rb + (size_t)i * h * w,
                                                    (double)wt[((size_t)o * cin + i) * 9 + t] * y[((size_t)o * h + yy) * w + xx],
                                                    yy + t / 3 - 1, xx + t % 3 - 1, h, w);
                CHECK_OK(nst__conv_backward_data_pad(p, y, x, h, w, NST__CONV_PAD_BLEND, 1, NULL));
                CHECK_OK(nst__conv_backward_data_pad(p, y, y2, h, w, NST__CONV_PAD_BLEND, 2, ws));
                CHECK_MSG(!memcmp(x, y2, sizeof(float) * nin), "%s %dx%d backward: 2 threads change the result",
                          nst__conv_kernels_for(archs[a])->name, w, h);
                for (j = 0; j < nin; j++) {
                    if (fabs(x[j] - rb[j]) > err) err = fabs(x[j] - rb[j]);
                    if (fabs(rb[j]) > mx) mx = fabs(rb[j]);
                }
                CHECK_MSG(err <= 1e-5 * mx, "%s %dx%d backward: error %g of %g", nst__conv_kernels_for(archs[a])->name,
                          w, h, err, mx);
                free(rb);
            }
            free(x); free(y); free(y2); free(ws);
        }
        nst__conv_plan_free(p);
    }
    free(wt); free(bias);
}

/* The random VGG-19 at 64x48 px: conv4_1 .. conv5_1 run on maps of 48 and 12 pixels, as the small-map GEMM
 * with the blend in both directions and no border fix, against the same objective with that path off
 * (nst__conv_small_off: the engine, its lazy filter transforms and the fix): losses and pixel gradient
 * agree to the two algorithms' rounding, and the GEMM did run. */
TEST(small_map_gemm_in_the_network_matches_the_engine) {
    const int w = 64, h = 48;
    size_t n = (size_t)3 * w * h, j;
    nst_model *m = NULL;
    nst_image c, st;
    nst_options o;
    nst_objective *ob = NULL;
    nst_losses lo[2];
    float *x = rand_vec(n, 20, 235), *g[2];
    double gmax, err = 0;
    int k, before = nst__conv_small_calls;
    CHECK_OK(nst_model_random(3, &m));
    if (!m) { free(x); return; }
    CHECK(m->reflect);
    nst_image_alloc(&c, w, h, 3);
    nst_image_alloc(&st, h, w, 3);
    for (j = 0; j < n; j++) { c.pixels[j] = (float)nst__rng_uniform(&rng); st.pixels[j] = (float)nst__rng_uniform(&rng); }
    nst_options_init(&o);
    o.threads = 2; o.tile = 0; o.style_weight = 1e3f;
    for (k = 0; k < 2; k++) {   /* the flag holds from create (workspace sizes) to eval */
        nst__conv_small_off = k;
        g[k] = (float *)malloc(n * sizeof(float));
        CHECK_OK(nst_objective_create(m, &c, &st, NULL, 1, &o, &ob));
        if (ob) CHECK_OK(nst_objective_eval(ob, x, &lo[k], g[k]));
        if (k == 0) CHECK_MSG(nst__conv_small_calls - before >= 10, "%d small-map calls", nst__conv_small_calls - before);
        if (k == 0) nst_objective_free(ob);
        if (!ob) break;
    }
    nst__conv_small_off = 0;
    if (ob) {
        gmax = max_abs(g[1], n);
        for (j = 0; j < n; j++) if (fabs(g[0][j] - g[1][j]) > err) err = fabs(g[0][j] - g[1][j]);
        if (getenv("NST_TEST_VERBOSE"))
            printf("  loss %.9g vs %.9g, gradient |diff| / max %.3g\n", lo[0].total, lo[1].total, err / gmax);
        CHECK_MSG(lo[1].total > 0 && fabs(lo[0].total / lo[1].total - 1) < 1e-4, "loss %.9g vs %.9g", lo[0].total,
                  lo[1].total);
        CHECK_MSG(gmax > 0 && err < 1e-4 * gmax, "gradient differs by %g (max %g)", err, gmax);
        free(g[0]); free(g[1]);
    }
    nst_objective_free(ob);
    free(x);
    nst_image_free(&c); nst_image_free(&st);
    nst_model_free(m);
}

/* The whole network with the engine's padding (layers of 8 channels: all but conv1_1 take Winograd)
 * against the same model run the way the engine did not pad, the direct convolution with the border
 * corrected afterwards (nst__reflect_fix_forward/backward, nst__reflect_border_forward): losses and
 * gradient to the pixels, at sizes that leave maps of 1, 2, 3 and 7 pixels at the deep layers. */
TEST(reflection_padding_net_engine_matches_fix) {
    static const int sizes[][2] = {{29, 23}, {37, 50}, {18, 16}};
    nst_model *m = tiny_model(8, 21, 1), mk;
    nst__conv_plan *direct[NST_VGG_CONVS];
    int i, s, ok = 1;
    if (!m) { CHECK(m != NULL); return; }
    mk = *m;
    for (i = 0; i < m->nconv; i++) {
        direct[i] = NULL;
        CHECK_OK(nst__conv_plan_create_ex(m->w[i], m->b[i], m->cin[i], m->cout[i], NST__CONV_DIRECT, nst__cpu_arch(),
                                          &direct[i]));
        if (!direct[i]) ok = 0;
        mk.plan[i] = direct[i];
        if (i) CHECK(nst__conv_forward_pads(m->plan[i]));
    }
    for (s = 0; s < 3 && ok; s++) {
        int w = sizes[s][0], h = sizes[s][1], k;
        size_t n = (size_t)3 * w * h, j;
        nst_image c, st;
        nst_options o;
        nst_objective *ob[2] = {NULL, NULL};
        nst_losses lo[2];
        float *x = rand_vec(n, 20, 235), *g[2];
        double gmax, err = 0;
        nst_image_alloc(&c, w, h, 3);
        nst_image_alloc(&st, h, w, 3);
        for (j = 0; j < n; j++) { c.pixels[j] = (float)nst__rng_uniform(&rng); st.pixels[j] = (float)nst__rng_uniform(&rng); }
        nst_options_init(&o);
        o.threads = 2; o.tile = 0; o.style_weight = 1e3f;
        o.pool = s == 2 ? NST_POOL_MAX : NST_POOL_AVG;
        for (k = 0; k < 2; k++) {
            g[k] = (float *)malloc(n * sizeof(float));
            CHECK_OK(nst_objective_create(k ? &mk : m, &c, &st, NULL, 1, &o, &ob[k]));
            if (ob[k]) CHECK_OK(nst_objective_eval(ob[k], x, &lo[k], g[k]));
        }
        if (ob[0] && ob[1]) {
            gmax = max_abs(g[1], n);
            for (j = 0; j < n; j++) if (fabs(g[0][j] - g[1][j]) > err) err = fabs(g[0][j] - g[1][j]);
            if (getenv("NST_TEST_VERBOSE"))
                printf("  %dx%d: loss %.9g vs %.9g, gradient |diff| / max %.3g\n", w, h, lo[0].total, lo[1].total,
                       err / gmax);
            CHECK_MSG(lo[1].total > 0 && fabs(lo[0].total / lo[1].total - 1) < 1e-3, "%dx%d: loss %.9g vs %.9g", w, h,
                      lo[0].total, lo[1].total);
            CHECK_MSG(gmax > 0 && err < 2e-3 * gmax, "%dx%d: gradient differs by %g (max %g)", w, h, err, gmax);
        }
        for (k = 0; k < 2; k++) { nst_objective_free(ob[k]); free(g[k]); }
        free(x);
        nst_image_free(&c); nst_image_free(&st);
    }
    for (i = 0; i < m->nconv; i++) nst__conv_plan_free(direct[i]);
    nst_model_free(m);
}

/* The frame of the weight-free model was the pixels at the border being pulled more weakly (or more
 * strongly) than the others. On images without structure (noise content, style and start) the style
 * gradient must reach the border rows as it reaches the interior: mean |d loss / d pixel| at distance
 * 0 and 1 from the nearest edge, over that at distance >= 12. Whole-sample reflection (row -1 = row 1)
 * gives 0.69 and 1.21 here (the edge row half-starved, its neighbour fed twice), the blended pad
 * 0.84 and 1.03, replicating the edge 1.18 and 1.07. */
static double border_ratio(const float *g, int h, int w, int d) {
    double s = 0, n = 0, si = 0, ni = 0;
    int c, y, x;
    for (c = 0; c < 3; c++)
        for (y = 0; y < h; y++)
            for (x = 0; x < w; x++) {
                int dy = y < h - 1 - y ? y : h - 1 - y, dx = x < w - 1 - x ? x : w - 1 - x, e = dx < dy ? dx : dy;
                double v = fabs(g[((size_t)c * h + y) * w + x]);
                if (e == d) { s += v; n++; }
                else if (e >= 12) { si += v; ni++; }
            }
    return (s / n) / (si / ni);
}

TEST(random_model_border_pixels_get_the_interior_gradient) {
    const int w = 64, h = 64, evals = 3;
    nst_model *m = random_model();
    nst_image c, s;
    nst_options o;
    nst_objective *ob = NULL;
    size_t n = (size_t)3 * w * h, i;
    float *x, *g, *acc;
    int k;
    if (!m) { CHECK(m != NULL); return; }
    nst_image_alloc(&c, w, h, 3);
    nst_image_alloc(&s, w, h, 3);
    for (i = 0; i < n; i++) { c.pixels[i] = (float)nst__rng_uniform(&rng); s.pixels[i] = (float)nst__rng_uniform(&rng); }
    nst_options_init(&o);
    o.threads = 1; o.tile = 0; o.content_weight = 0; o.tv_weight = 0;
    CHECK_OK(nst_objective_create(m, &c, &s, NULL, 1, &o, &ob));
    x = (float *)malloc(n * sizeof(float));
    g = (float *)malloc(n * sizeof(float));
    acc = (float *)calloc(n, sizeof(float));
    for (k = 0; ob && k < evals; k++) {
        for (i = 0; i < n; i++) x[i] = (float)(255 * nst__rng_uniform(&rng));
        CHECK_OK(nst_objective_eval(ob, x, NULL, g));
        for (i = 0; i < n; i++) acc[i] += (float)fabs(g[i]);
    }
    if (ob) {
        double r0 = border_ratio(acc, h, w, 0), r1 = border_ratio(acc, h, w, 1);
        if (getenv("NST_TEST_VERBOSE")) printf("  distance 0: %.3f, distance 1: %.3f of the interior's\n", r0, r1);
        CHECK_MSG(r0 > 0.76 && r0 < 1.3 && r1 / r0 > 0.75 && r1 / r0 < 1.45,
                  "mean |gradient| at distance 0 and 1 from the border: %.3f and %.3f of the interior's", r0, r1);
    }
    nst_objective_free(ob);
    nst_image_free(&c); nst_image_free(&s);
    free(x); free(g); free(acc);
}

/* jcjohnson's TV sums the (H-1)x(W-1) corner's right and down differences, so nothing smooths the last
 * row along itself or the last column down itself; the random model's TV adds those pairs (nst.h
 * ">>loss"). On a checkerboard of +-1 every neighbour pair differs by 2: 1/2 * 4 per pair. Real weights
 * keep jcjohnson's loss. */
TEST(random_model_tv_covers_the_last_row_and_column) {
    const int w = 19, h = 17;
    nst_model *m = tiny_model(4, 5, 0);
    nst_image c;
    nst_options o;
    nst_objective *ob;
    nst_losses L;
    size_t n = (size_t)3 * w * h, i;
    float *x = (float *)malloc(n * sizeof(float)), *g = (float *)calloc(n, sizeof(float));
    int pass, y, xx;
    if (!m || !x || !g) { CHECK(0); nst_model_free(m); free(x); free(g); return; }
    for (i = 0; i < n; i++) x[i] = (float)(((i % w) + (i / w)) % 2 ? 1 : -1);   /* a checkerboard in each plane */
    nst_image_alloc(&c, w, h, 3);
    for (i = 0; i < n; i++) c.pixels[i] = 0.5f;
    nst_options_init(&o);
    o.threads = 1; o.content_weight = 0; o.style_weight = 0; o.tv_weight = 1;
    for (pass = 0; pass < 2; pass++) {
        double pairs = pass ? 2.0 * w * h - w - h : 2.0 * (w - 1) * (h - 1);
        m->is_random = pass;
        ob = NULL;
        CHECK_OK(nst_objective_create(m, &c, NULL, NULL, 0, &o, &ob));
        if (!ob) break;
        CHECK_OK(nst_objective_eval(ob, x, &L, g));
        CHECK_MSG(fabs(L.tv - 3 * 2 * pairs) < 1e-6 * L.tv, "%s TV %g, expected %g", pass ? "random" : "VGG",
                  L.tv, 3 * 2 * pairs);
        /* d/da 1/2 (a - b)^2 = 2a per pair here. The bottom-right pixel is in no pair of the corner, in 2
         * (up, left) of the random model's; a pixel inside the last row in 1 (up) and 3 (up, left, right). */
        y = h - 1; xx = w - 1;
        CHECK_MSG(fabs(g[(size_t)y * w + xx] - x[(size_t)y * w + xx] * 2 * (pass ? 2 : 0)) < 1e-4,
                  "%s: corner gradient %g", pass ? "random" : "VGG", g[(size_t)y * w + xx]);
        xx = 3;
        CHECK_MSG(fabs(g[(size_t)y * w + xx] - x[(size_t)y * w + xx] * 2 * (pass ? 3 : 1)) < 1e-4,
                  "%s: last row gradient %g", pass ? "random" : "VGG", g[(size_t)y * w + xx]);
        nst_objective_free(ob);
    }
    nst_image_free(&c);
    nst_model_free(m);
    free(x); free(g);
}

/* ---- spatial masks ---------------------------------------------------------------------------------*/
static void fill_image(nst_image *im, int w, int h, int kind) {
    int x, y;
    nst_image_alloc(im, w, h, 3);
    for (y = 0; y < h; y++)
        for (x = 0; x < w; x++) {
            float *p = im->pixels + ((size_t)y * w + x) * 3;
            switch (kind) {
            case 0: p[0] = (float)x / w; p[1] = (float)y / h; p[2] = 0.5f; break;              /* smooth "photo" */
            case 1: p[0] = ((x + y) / 3) % 2 ? 0.95f : 0.6f; p[1] = 0.15f; p[2] = 0.1f; break;  /* red stripes */
            default: p[0] = 0.1f; p[1] = 0.2f; p[2] = (x / 2 + y / 2) % 2 ? 0.95f : 0.55f; break; /* blue checks */
            }
        }
}
/* Grey masks: 0 all black, 1 all white, 2 left half white, 3 right half white, 4 a soft ramp. */
static void fill_mask(nst_image *im, int w, int h, int kind) {
    int x, y;
    nst_image_alloc(im, w, h, 1);
    for (y = 0; y < h; y++)
        for (x = 0; x < w; x++)
            im->pixels[(size_t)y * w + x] = kind == 0 ? 0.0f : kind == 1 ? 1.0f : kind == 2 ? (x < w / 2 ? 1.0f : 0.0f)
                                          : kind == 3 ? (x < w / 2 ? 0.0f : 1.0f) : (float)(x + y) / (w + h);
}
static double mean_abs_diff(const nst_image *a, const nst_image *b) {
    size_t i, n = (size_t)a->width * a->height * 3;
    double s = 0;
    if (!a->pixels || !b->pixels || a->width != b->width || a->height != b->height) return 1e9;
    for (i = 0; i < n; i++) s += fabs(a->pixels[i] - b->pixels[i]);
    return s / n;
}
/* mean(red - blue) over the left (side 0) or right (side 1) half */
static double redness(const nst_image *im, int side) {
    int x, y, w = im->width, h = im->height;
    double s = 0;
    for (y = 0; y < h; y++)
        for (x = side ? w / 2 : 0; x < (side ? w : w / 2); x++) {
            const float *p = im->pixels + ((size_t)y * w + x) * 3;
            s += p[0] - p[2];
        }
    return s / (h * (w / 2));
}

TEST(all_white_mask_is_the_unmasked_objective) {
    nst_model *m = tiny_model(8, 5, 0);
    nst_image c, st, mask;
    nst_options o;
    nst_objective *a = NULL, *b = NULL;
    size_t n = 3 * 20 * 18, i;
    float *x, *ga, *gb;
    nst_losses la, lb;
    double err = 0;
    if (!m) { CHECK(m != NULL); return; }
    fill_image(&c, 20, 18, 0);
    fill_image(&st, 23, 19, 1);
    fill_mask(&mask, 7, 5, 1);   /* any size: resized to the output */
    nst_options_init(&o);
    o.threads = 1;
    CHECK_OK(nst_objective_create(m, &c, &st, NULL, 1, &o, &a));
    o.style_masks = &mask;
    CHECK_OK(nst_objective_create(m, &c, &st, NULL, 1, &o, &b));
    if (!a || !b) return;
    x = rand_vec(n, 30, 225);
    ga = (float *)malloc(n * sizeof(float));
    gb = (float *)malloc(n * sizeof(float));
    CHECK_OK(nst_objective_eval(a, x, &la, ga));
    CHECK_OK(nst_objective_eval(b, x, &lb, gb));
    CHECK_MSG(fabs(la.style - lb.style) <= 1e-5 * la.style && la.style > 0, "style loss %g vs %g", la.style, lb.style);
    CHECK(la.content == lb.content);
    for (i = 0; i < n; i++) if (fabs(ga[i] - gb[i]) > err) err = fabs(ga[i] - gb[i]);
    CHECK_MSG(err <= 1e-5 * max_abs(ga, n), "gradient differs by %g (max %g)", err, max_abs(ga, n));
    nst_objective_free(a); nst_objective_free(b);
    free(x); free(ga); free(gb);
    nst_image_free(&c); nst_image_free(&st); nst_image_free(&mask);
    nst_model_free(m);
}

TEST(masked_gradient_matches_finite_differences) {
    nst_model *m = tiny_model(6, 9, 1);   /* with reflection padding too */
    nst_image c, st[2], mk[2];
    nst_options o;
    nst_objective *ob = NULL;
    int w = 20, h = 18, k, norm;
    size_t n = (size_t)3 * w * h;
    float *x, *g;
    if (!m) { CHECK(m != NULL); return; }
    fill_image(&c, w, h, 0);
    fill_image(&st[0], 21, 19, 1);
    fill_image(&st[1], 17, 20, 2);
    fill_mask(&mk[0], w, h, 4);   /* soft ramp */
    fill_mask(&mk[1], 9, 9, 2);   /* left half, resized */
    nst_options_init(&o);
    o.threads = 1;
    o.content_weight = 0; o.tv_weight = 0; o.style_weight = 1e3f;
    o.pool = NST_POOL_AVG;
    o.style_masks = mk;
    x = rand_vec(n, 30, 225);
    g = (float *)malloc(n * sizeof(float));
    for (norm = 0; norm < 1; norm++) {
        double worst = 0, gmax;
        CHECK_OK(nst_objective_create(m, &c, st, NULL, 2, &o, &ob));
        if (!ob) break;
        CHECK_OK(nst_objective_eval(ob, x, NULL, g));
        gmax = max_abs(g, n);
        CHECK(gmax > 0);
        for (k = 0; k < 16; k++) {
            size_t i = (size_t)(nst__rng_next(&rng) % n);
            float x0 = x[i];
            double hs = 0.25, fd;
            nst_losses a, b;
            x[i] = (float)(x0 + hs); nst_objective_eval(ob, x, &a, NULL);
            x[i] = (float)(x0 - hs); nst_objective_eval(ob, x, &b, NULL);
            x[i] = x0;
            fd = (a.total - b.total) / (2 * hs);
            if (fabs(fd - g[i]) / gmax > worst) worst = fabs(fd - g[i]) / gmax;
        }
        CHECK_MSG(worst < 2e-3, "masked style: worst |fd - analytic| / max|g| = %g", worst);
        nst_objective_free(ob);
        ob = NULL;
    }
    free(x); free(g);
    nst_image_free(&c);
    for (k = 0; k < 2; k++) { nst_image_free(&st[k]); nst_image_free(&mk[k]); }
    nst_model_free(m);
}

/* Two styles painted on two halves: red stripes left and blue checks right, then the masks swapped. */
/* The guided Grams' gradient in blocks taken by the threads as they come free: the same bytes with 1 and 3
 * threads, with and without normalize_gradients, at a size where relu1_1 and relu2_1 span several blocks. */
TEST(masked_gradient_independent_of_threads) {
    nst_model *m = tiny_model(8, 11, 0);
    nst_image c, st[2], mk[2];
    int w = 48, h = 40, th, norm;
    size_t n = (size_t)3 * w * h;
    float *x, *ref = NULL;
    if (!m) { CHECK(m != NULL); return; }
    fill_image(&c, w, h, 0);
    fill_image(&st[0], 41, 37, 1);
    fill_image(&st[1], 37, 44, 2);
    fill_mask(&mk[0], w, h, 4);
    fill_mask(&mk[1], 9, 9, 2);
    x = rand_vec(n, 30, 225);
    for (norm = 0; norm < 2; norm++)
        for (th = 1; th <= 3; th += 2) {
            nst_options o;
            nst_objective *ob = NULL;
            float *g = (float *)malloc(n * sizeof(float));
            nst_options_init(&o);
            o.threads = th;
            o.normalize_gradients = norm;
            o.style_masks = mk;
            CHECK_OK(nst_objective_create(m, &c, st, NULL, 2, &o, &ob));
            if (ob) CHECK_OK(nst_objective_eval(ob, x, NULL, g));
            nst_objective_free(ob);
            if (th == 1) {
                free(ref);
                ref = g;
            } else {
                CHECK_MSG(memcmp(ref, g, n * sizeof(float)) == 0, "normalize %d: 3 threads differ from 1", norm);
                free(g);
            }
        }
    free(ref); free(x);
    nst_image_free(&c); nst_image_free(&st[0]); nst_image_free(&st[1]); nst_image_free(&mk[0]); nst_image_free(&mk[1]);
    nst_model_free(m);
}

TEST(swapped_masks_swap_the_result) {
    nst_model *m = NULL;
    nst_image c, st[2], sw[2], mk[2], mr[2], one, plain, out[3];
    nst_options o;
    int k;
    m = random_model();
    if (!m) return;
    fill_image(&c, 24, 24, 0);
    fill_image(&st[0], 24, 24, 1);
    fill_image(&st[1], 24, 24, 2);
    sw[0] = st[1]; sw[1] = st[0];
    fill_mask(&mk[0], 24, 24, 2); fill_mask(&mk[1], 24, 24, 3);
    mr[0] = mk[1]; mr[1] = mk[0];
    nst_options_init(&o);
    o.image_size = 24; o.iterations = 25; o.threads = 1;
    o.style_layers = "relu1_1,relu2_1"; o.content_layers = "relu2_1";
    o.content_weight = 0.5f; o.style_weight = 1e4f;
    o.style_masks = mk;
    CHECK_OK(nst_transfer(m, &c, st, NULL, 2, &o, &out[0]));
    o.style_masks = mr;
    CHECK_OK(nst_transfer(m, &c, st, NULL, 2, &o, &out[1]));
    CHECK_OK(nst_transfer(m, &c, sw, NULL, 2, &o, &out[2]));   /* styles and masks both swapped */
    if (out[0].pixels && out[1].pixels && out[2].pixels) {
        double l0 = redness(&out[0], 0), r0 = redness(&out[0], 1), l1 = redness(&out[1], 0), r1 = redness(&out[1], 1);
        if (getenv("NST_TEST_VERBOSE")) printf("  red-blue %.3f %.3f / %.3f %.3f, reorder %g\n", l0, r0, l1, r1, mean_abs_diff(&out[0], &out[2]));
        CHECK_MSG(l0 > r0 + 0.2 && r1 > l1 + 0.2, "red-blue: left %.3f right %.3f, swapped: left %.3f right %.3f",
                  l0, r0, l1, r1);
        /* the same assignment in the other order is the same picture (up to summation order) */
        CHECK_MSG(mean_abs_diff(&out[0], &out[2]) < 2e-3, "reordered styles differ by %g", mean_abs_diff(&out[0], &out[2]));
    }
    /* one all-white mask is the unmasked single-style run */
    fill_mask(&one, 5, 5, 1);
    o.iterations = 10;
    o.style_masks = NULL;
    CHECK_OK(nst_transfer(m, &c, st, NULL, 1, &o, &plain));
    nst_image_free(&out[1]);
    o.style_masks = &one;
    CHECK_OK(nst_transfer(m, &c, st, NULL, 1, &o, &out[1]));
    if (getenv("NST_TEST_VERBOSE")) printf("  white %g\n", mean_abs_diff(&plain, &out[1]));
    CHECK_MSG(mean_abs_diff(&plain, &out[1]) < 1e-3, "white mask vs unmasked: %g", mean_abs_diff(&plain, &out[1]));
    for (k = 0; k < 3; k++) nst_image_free(&out[k]);
    for (k = 0; k < 2; k++) { nst_image_free(&st[k]); nst_image_free(&mk[k]); }
    nst_image_free(&c); nst_image_free(&one); nst_image_free(&plain);
}

/* ---- batch: style targets once -------------------------------------------------------------------*/
TEST(style_cache_reuses_targets_and_changes_nothing) {
    nst_model *m = NULL;
    nst_image c, c2, st, a, b, b2;
    nst_options o;
    nst_style_cache *cache = NULL;
    m = random_model();
    CHECK_OK(nst_style_cache_create(&cache));
    if (!m || !cache) return;
    fill_image(&c, 32, 24, 0);
    fill_image(&c2, 24, 32, 2);
    fill_image(&st, 40, 30, 1);
    nst_options_init(&o);
    o.image_size = 32; o.iterations = 5; o.threads = 1;
    o.style_layers = "relu1_1,relu2_1"; o.content_layers = "relu2_1";
    CHECK_OK(nst_transfer(m, &c, &st, NULL, 1, &o, &a));
    o.style_cache = cache;
    CHECK_OK(nst_transfer(m, &c, &st, NULL, 1, &o, &b));
    CHECK(nst_style_cache_hits(cache) == 0);
    CHECK_OK(nst_transfer(m, &c2, &st, NULL, 1, &o, &b2));   /* another content: the same style size */
    CHECK(nst_style_cache_hits(cache) == 1);
    nst_image_free(&b);
    CHECK_OK(nst_transfer(m, &c, &st, NULL, 1, &o, &b));
    CHECK(nst_style_cache_hits(cache) == 2);
    if (a.pixels && b.pixels)
        CHECK_MSG(memcmp(a.pixels, b.pixels, sizeof(float) * 32 * 24 * 3) == 0, "cached run differs");
    nst_image_free(&a); nst_image_free(&b); nst_image_free(&b2);
    nst_image_free(&c); nst_image_free(&c2); nst_image_free(&st);
    nst_style_cache_free(cache);
}

/* ---- video frames: temporal consistency ----------------------------------------------------------*/
TEST(identical_frames_give_near_identical_outputs) {
    nst_model *m = NULL;
    nst_image c, st, first, free_run, held;
    nst_options o;
    double d_free, d_held;
    m = random_model();
    if (!m) return;
    fill_image(&c, 24, 24, 0);
    fill_image(&st, 24, 24, 2);
    nst_options_init(&o);
    o.image_size = 24; o.iterations = 20; o.threads = 1;
    o.style_layers = "relu1_1,relu2_1"; o.content_layers = "relu2_1";
    CHECK_OK(nst_transfer(m, &c, &st, NULL, 1, &o, &first));
    /* frame 2 = frame 1: from the previous output, with and without the temporal term */
    o.init = NST_INIT_IMAGE; o.init_image = &first;
    CHECK_OK(nst_transfer(m, &c, &st, NULL, 1, &o, &free_run));
    o.temporal_image = &first; o.temporal_content = &c; o.temporal_weight = 100;
    CHECK_OK(nst_transfer(m, &c, &st, NULL, 1, &o, &held));
    d_free = mean_abs_diff(&first, &free_run);
    d_held = mean_abs_diff(&first, &held);
    if (getenv("NST_TEST_VERBOSE")) printf("  held %g free %g\n", d_held, d_free);
    CHECK_MSG(d_held < 2.0 / 255 && d_held < 0.5 * d_free, "mean |frame2 - frame1|: %.5f held, %.5f free", d_held,
              d_free);
    nst_image_free(&first); nst_image_free(&free_run); nst_image_free(&held);
    nst_image_free(&c); nst_image_free(&st);
}

int main(int argc, char **argv) {
    nst_test_begin(argc, argv);
    RUN(reflection_padding_matches_naive_and_its_adjoint);
    RUN(reflection_fix_backward_matches_naive_in_chunks);
    RUN(reflection_padding_in_the_winograd_engine);
    RUN(reflection_padding_in_the_small_map_gemm);
    RUN(small_map_gemm_in_the_network_matches_the_engine);
    RUN(reflection_padding_net_engine_matches_fix);
    RUN(random_model_border_pixels_get_the_interior_gradient);
    RUN(random_model_tv_covers_the_last_row_and_column);
    RUN(all_white_mask_is_the_unmasked_objective);
    RUN(masked_gradient_matches_finite_differences);
    RUN(masked_gradient_independent_of_threads);
    RUN(swapped_masks_swap_the_result);
    RUN(style_cache_reuses_targets_and_changes_nothing);
    RUN(identical_frames_give_near_identical_outputs);
    nst_model_free(shared_random);
    return nst_test_end("test_features");
}
