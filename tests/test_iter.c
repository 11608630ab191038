/* The iteration outside the convolutions: ReLU masks, pooling fused with them, the L-BFGS passes.
 * Each SIMD path against its scalar reference on awkward sizes, the fused kernels against the plain
 * ones they replace, and L-BFGS results independent of the thread count. */
#define NST_IMPLEMENTATION
#include "nst.h"
#include "nst_test.h"
#include <stdlib.h>

static nst__rng rng = {777};
static float *rand_vec(size_t n, double lo, double hi) { return nst_t_rand_vec(&rng, n, lo, hi); }
static const size_t sizes[] = {1, 7, 8, 13, 17, 33, 63, 511, 512, 513, 1031, 4099};

TEST(relu_masks_match_scalar) {
    size_t si;
    for (si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        size_t n = sizes[si], nb = (n + 7) / 8, i;
        float *x = rand_vec(n, -1, 1), *g1 = rand_vec(n, -2, 2), *g2 = (float *)malloc(n * sizeof(float));
        unsigned char *b1 = (unsigned char *)malloc(nb), *b2 = (unsigned char *)malloc(nb);
        int bad = 0;
        x[n / 2] = 0.0f;   /* zero is masked out */
        memcpy(g2, g1, n * sizeof(float));
        nst__relu_mask_bits_scalar(x, b1, 0, n);
        nst__relu_mask_bits(x, b2, n, 2);   /* the dispatched path (AVX2 where the CPU has it) */
        CHECK_MSG(memcmp(b1, b2, nb) == 0, "mask bits differ at n = %lu", (unsigned long)n);
        for (i = 0; i < n; i++) bad += ((b1[i / 8] >> (i % 8)) & 1) != (x[i] > 0.0f);
        CHECK_MSG(bad == 0, "%d wrong bits at n = %lu", bad, (unsigned long)n);
        nst__relu_backward_scalar(g1, b1, 0, n);
        nst__relu_backward(g2, b1, n, 2);
        CHECK_MSG(memcmp(g1, g2, n * sizeof(float)) == 0, "relu backward differs at n = %lu", (unsigned long)n);
        for (i = 0, bad = 0; i < n; i++) bad += x[i] > 0.0f ? 0 : g1[i] != 0.0f;
        CHECK(bad == 0);
        free(x); free(g1); free(g2); free(b1); free(b2);
    }
}

/* pool + mask, fused, against the reference pool and the plain mask (both directions, avg and max); simd 1
 * is the AVX2 kernels, or the NEON ones (pool forward, unpool) under tests/neon.sh. Widths are multiples of
 * 8 (the kernels' contract), pooled widths 4 .. 68 (odd and even multiples of 4); channel 1 is quantized to quarters, so
 * windows tie (first maximum wins) and hold -0 against +0. */
TEST(pool_mask_matches_reference) {
    static const int ws[] = {8, 16, 24, 40, 56, 72, 136}, hs[] = {1, 2, 3, 7, 8};
    int wi, hi, avg, c = 3, simd;
    for (simd = 0; simd < 2; simd++)
        for (avg = 0; avg < 2; avg++)
            for (wi = 0; wi < 7; wi++)
                for (hi = 0; hi < 5; hi++) {
                    int w = ws[wi], h = hs[hi], oh = h / 2, ow = w / 2, ch;
                    size_t n = (size_t)c * h * w, no = (size_t)c * oh * ow, i;
                    float *in = rand_vec(n, -1, 1), *o1 = rand_vec(no, 0, 1), *o2 = rand_vec(no, 0, 1);
                    float *go = rand_vec(no, -1, 1), *d1 = rand_vec(n, 5, 6), *d2 = rand_vec(n, 7, 8);
                    unsigned char *b1 = (unsigned char *)malloc(n / 8 + 1), *b2 = (unsigned char *)malloc(n / 8 + 1);
                    unsigned char *code = (unsigned char *)malloc(no);
                    if (h < 2) {   /* not fusable: the kernel alone on one odd row, bits only */
                        nst__relu_mask_bits_scalar(in, b1, 0, (size_t)w);
                        nst__pool_mask_rows(o2, code, (size_t)ow, b2, (size_t)w / 8, in, (size_t)w, 1, w, avg,
                                            simd && nst__simd_pool());
                        CHECK_MSG(memcmp(b1, b2, (size_t)w / 8) == 0, "pool mask bits %s %dx1 simd %d", avg ? "avg" : "max", w, simd);
                        free(in); free(o1); free(o2); free(go); free(d1); free(d2); free(b1); free(b2); free(code);
                        continue;
                    }
                    for (i = (size_t)h * w; i < (size_t)2 * h * w; i++) in[i] = floorf(in[i] * 4.0f + 0.5f) * 0.25f;
                    in[(size_t)h * w] = -0.0f; in[(size_t)h * w + 1] = 0.0f;
                    CHECK(nst__pool_fusable(h, w));
                    nst__pool2x2_forward_ref(o1, in, c, h, w, avg, 1);
                    nst__relu_mask_bits_scalar(in, b1, 0, n);
                    for (ch = 0; ch < c; ch++)
                        nst__pool_mask_rows(o2 + ch * oh * ow, avg ? NULL : code + ch * oh * ow, (size_t)ow,
                                            b2 + (size_t)ch * h * w / 8, (size_t)w / 8, in + (size_t)ch * h * w, (size_t)w,
                                            h, w, avg, simd && nst__simd_pool());
                    CHECK_MSG(memcmp(o1, o2, no * sizeof(float)) == 0, "pool forward %s %dx%d simd %d", avg ? "avg" : "max", w, h, simd);
                    CHECK_MSG(memcmp(b1, b2, n / 8) == 0, "pool mask bits %s %dx%d simd %d", avg ? "avg" : "max", w, h, simd);
                    nst__pool2x2_backward_ref(d1, go, in, c, h, w, avg, 1);
                    nst__relu_backward_scalar(d1, b1, 0, n);
                    for (ch = 0; ch < c; ch++) {   /* row by row, from every start column (the Winograd staging's) */
                        int y, x0 = (ch * 5) % w;
                        for (y = 0; y < h; y++) {
                            size_t e = ((size_t)ch * h + y) * w, p = ((size_t)ch * oh + y / 2) * ow;
                            if (y >= oh * 2) { memset(d2 + e, 0, sizeof(float) * (size_t)w); continue; }
                            nst__unpool_row(d2 + e, go + p, avg ? NULL : code + p, b1 + e / 8, y & 1, 0, x0, avg,
                                            simd && nst__simd_pool());
                            nst__unpool_row(d2 + e + x0, go + p, avg ? NULL : code + p, b1 + e / 8, y & 1, x0, w, avg,
                                            simd && nst__simd_pool());
                        }
                    }
                    CHECK_MSG(memcmp(d1, d2, n * sizeof(float)) == 0, "pool backward %s %dx%d simd %d", avg ? "avg" : "max", w, h, simd);
                    free(in); free(o1); free(o2); free(go); free(d1); free(d2); free(b1); free(b2); free(code);
                }
    /* The SIMD kernel on a part of a map through its strides (as the Winograd driver calls it on a strip):
     * rows [1, 1 + rows) and columns [8, 8 + cols) of a 9 x 80 map against the scalar kernel, every
     * byte of the outputs compared (nothing written outside the part). */
    for (avg = 0; avg < 2; avg++) {
        int rows, cols;
        for (rows = 1; rows <= 8; rows++)
            for (cols = 8; cols <= 72; cols += 8) {
                const int h = 9, w = 80;
                float *in = rand_vec((size_t)h * w, -1, 1), *o1 = rand_vec((size_t)h * w / 4, 0, 1);
                float *o2 = (float *)malloc(sizeof(float) * (size_t)h * w / 4);
                unsigned char b1[90], b2[90], k1[180], k2[180];
                size_t i, ofs = (size_t)1 * w + 8;
                for (i = 0; i < (size_t)h * w; i += 3) in[i] = floorf(in[i] * 2.0f) * 0.5f;
                memcpy(o2, o1, sizeof(float) * (size_t)h * w / 4);
                for (i = 0; i < sizeof b1; i++) b1[i] = b2[i] = (unsigned char)(i * 37 + 11);
                for (i = 0; i < sizeof k1; i++) k1[i] = k2[i] = (unsigned char)(i * 13 + 5);
                nst__pool_mask_rows_scalar(o1 + 4, avg ? NULL : k1 + 4, (size_t)w / 2, b1 + ofs / 8, (size_t)w / 8,
                                           in + ofs, (size_t)w, rows, cols, avg);
                nst__pool_mask_rows(o2 + 4, avg ? NULL : k2 + 4, (size_t)w / 2, b2 + ofs / 8, (size_t)w / 8, in + ofs,
                                    (size_t)w, rows, cols, avg, nst__simd_pool());
                CHECK_MSG(memcmp(o1, o2, sizeof(float) * (size_t)h * w / 4) == 0, "strided pool %s rows %d cols %d",
                          avg ? "avg" : "max", rows, cols);
                CHECK_MSG(memcmp(b1, b2, sizeof b1) == 0, "strided pool bits %s rows %d cols %d", avg ? "avg" : "max",
                          rows, cols);
                CHECK_MSG(memcmp(k1, k2, sizeof k1) == 0, "strided pool codes %s rows %d cols %d", avg ? "avg" : "max",
                          rows, cols);
                free(in); free(o1); free(o2);
            }
    }
}

/* One recursion pass: the dispatched kernel (AVX2, or NEON under tests/neon.sh) against the scalar one, every
 * combination. */
TEST(lbfgs_pass_matches_scalar) {
    size_t si;
    int bf, mode;
    for (si = 0; si < sizeof sizes / sizeof *sizes; si++)
        for (bf = 0; bf < 2; bf++)
            for (mode = 0; mode < 4; mode++) {
                size_t n = sizes[si], i;
                float *g = rand_vec(n, -1, 1), *u = rand_vec(n, -1, 1), *v = rand_vec(n, -1, 1);
                float *d1 = rand_vec(n, -1, 1), *d2 = (float *)malloc(n * sizeof(float));
                uint16_t *ub = (uint16_t *)malloc(n * 2), *vb = (uint16_t *)malloc(n * 2);
                nst__lb_pass p;
                double s1, a1, s2, a2;
                for (i = 0; i < n; i++) { ub[i] = nst__to_bf16(u[i]); vb[i] = nst__to_bf16(v[i]); }
                memcpy(d2, d1, n * sizeof(float));
                memset(&p, 0, sizeof p);
                p.bf16 = bf;
                p.g = mode == 0 ? g : NULL;
                p.u = mode == 3 ? NULL : bf ? (const void *)ub : (const void *)u;
                p.a = -0.37f;
                p.scale = mode >= 2;
                p.sc = 0.731;
                p.v = mode == 1 ? (const void *)g : bf ? (const void *)vb : (const void *)v;
                p.v_f32 = mode == 1;
                p.want_asum = 1;
                nst__lb_pass_scalar(&p, d1, 0, n, &s1, &a1);
                s2 = nst__lb_run(&p, d2, n, 2, &a2);
                CHECK_MSG(memcmp(d1, d2, n * sizeof(float)) == 0, "d differs: n %lu bf16 %d mode %d", (unsigned long)n, bf, mode);
                CHECK_MSG(fabs(s1 - s2) <= 1e-12 * (fabs(s1) + a1 + 1), "dot %g vs %g", s1, s2);
                CHECK_MSG(fabs(a1 - a2) <= 1e-12 * (a1 + 1), "asum %g vs %g", a1, a2);
                free(g); free(u); free(v); free(d1); free(d2); free(ub); free(vb);
            }
}

/* The vector-free recursion's two passes: the dispatched kernels (AVX2, or NEON under tests/neon.sh) against
 * the scalar ones on awkward lengths, histories of 0, 1, 3 and 4 pairs, one or three measured vectors. d
 * to the bit; the dots are summed in float lanes within a sub-chunk (at most NST__LB_SUB / 8 = 256 terms
 * a lane), so they agree to that sum's rounding bound, 256 * 2^-24 of the sum of |products|. 140001 elements make the thread chunks longer than a
 * sub-chunk. Also: a bf16 store leaves the stored values in its source, which the dots then measure. */
TEST(lbfgs_vf_kernels_match_scalar) {
    static const size_t ns[] = {1, 7, 13, 17, 33, 1037, 4099, 140001};
    static const int ks[] = {0, 1, 3, 4};
    size_t si, i;
    int bf, ki, nw, j, r;
    for (si = 0; si < sizeof ns / sizeof *ns; si++)
        for (bf = 0; bf < 2; bf++)
            for (ki = 0; ki < 4; ki++) {
                size_t n = ns[si];
                int nv = 2 * ks[ki];
                float *g = rand_vec(n, -1, 1), *w1 = rand_vec(n, -2, 2), *w2 = rand_vec(n, -0.5, 0.5);
                float *d1 = (float *)malloc(n * sizeof(float)), *d2 = (float *)malloc(n * sizeof(float));
                float *hv[8], cf[8];
                void *hs[8];
                const void *vp[8];
                double out1[24], out2[24], part[24 * NST__LB_CHUNKS], gd1, gd2, a1, a2;
                nst__lb_vf p;
                for (j = 0; j < nv; j++) {
                    hv[j] = rand_vec(n, -3, 3);
                    hs[j] = malloc(n * (bf ? 2 : 4));
                    nst__hist_store(hs[j], bf, hv[j], n, 2);
                    for (i = 0; i < n; i++) {
                        float e = bf ? nst__from_bf16(((uint16_t *)hs[j])[i]) : ((float *)hs[j])[i];
                        if (e != hv[j][i]) break;
                    }
                    CHECK_MSG(i == n, "stored history differs from its source at %lu (n %lu bf16 %d)", (unsigned long)i,
                              (unsigned long)n, bf);
                    vp[j] = hs[j];
                    cf[j] = (float)(0.3 * j - 0.7);
                }
                for (nw = 1; nw <= 3; nw += 2) {
                    memset(&p, 0, sizeof p);
                    p.v = vp; p.nv = nv; p.bf16 = bf;
                    p.w[0] = p.g = g; p.w[1] = w1; p.w[2] = w2; p.nw = nw;
                    p.c = cf; p.cg = -1.3f;
                    nst__lb_dots_scalar(&p, 0, n, out1);
                    nst__lb_vf_dots(&p, n, 2, part, out2);
                    for (j = 0; j < nv; j++)
                        for (r = 0; r < nw; r++) {
                            double bound = 0;
                            for (i = 0; i < n; i++) bound += fabs((double)p.w[r][i] * nst__lb_get(vp[j], bf, i));
                            CHECK_MSG(fabs(out1[3 * j + r] - out2[3 * j + r]) <= 1.6e-5 * bound + 1e-30,
                                      "dot %d.%d: %.9g vs %.9g (n %lu bf16 %d nv %d nw %d)", j, r, out1[3 * j + r],
                                      out2[3 * j + r], (unsigned long)n, bf, nv, nw);
                        }
                }
                nst__lb_comb_scalar(&p, d1, 0, n, &gd1, &a1);
                gd2 = nst__lb_vf_comb(&p, d2, n, 2, &a2);
                CHECK_MSG(memcmp(d1, d2, n * sizeof(float)) == 0, "d differs: n %lu bf16 %d nv %d", (unsigned long)n, bf, nv);
                CHECK_MSG(fabs(gd1 - gd2) <= 1e-12 * (a1 + 1), "g.d %g vs %g", gd1, gd2);
                CHECK_MSG(fabs(a1 - a2) <= 1e-12 * (a1 + 1), "|d| %g vs %g", a1, a2);
                for (j = 0; j < nv; j++) { free(hv[j]); free(hs[j]); }
                free(g); free(w1); free(w2); free(d1); free(d2);
            }
}

static nst_status quad(const float *x, float *g, double *v, void *u) {
    size_t n = *(size_t *)u, i;
    double f = 0;
    for (i = 0; i < n; i++) {
        double a = 1e-3 + (double)(i % 97) / 97.0, e = x[i] - 0.01 * (double)(i % 13);
        f += 0.5 * a * e * e;
        g[i] = (float)(a * e);
    }
    *v = f;
    return NST_OK;
}

/* Same bytes with 1, 2 and 3 threads, bf16 and f32 history, on a size that is not a multiple of anything. */
TEST(lbfgs_independent_of_threads) {
    size_t n = 10007, i;
    int bf, th;
    for (bf = 0; bf < 2; bf++) {
        float *ref = NULL;
        for (th = 1; th <= 3; th++) {
            float *x = (float *)malloc(n * sizeof(float));
            nst_lbfgs_options o;
            double f;
            for (i = 0; i < n; i++) x[i] = 1.0f;
            nst_lbfgs_options_init(&o);
            o.history = 7; o.max_iter = 30; o.history_bf16 = bf; o.threads = th;
            o.tol_fun = o.tol_x = -1;
            CHECK_OK(nst_lbfgs(x, n, quad, &n, &o, &f, NULL));
            if (!ref) ref = x;
            else {
                CHECK_MSG(memcmp(ref, x, n * sizeof(float)) == 0, "bf16 %d: %d threads differ from 1", bf, th);
                free(x);
            }
        }
        free(ref);
    }
}

/* The vector-free recursion against the pass-per-vector one on the same problem, histories of 1, 3 and 7
 * pairs (the last one evicting pairs for 23 iterations). With an f32 history the two are the same recursion
 * up to float rounding: after 30 iterations x agrees to 1e-4 of its range (measured 2.5e-5 with one pair,
 * whose trajectory is the most sensitive, 2e-6 with 3 and 7). In bf16 any rounding difference in d
 * changes which way some elements of the next stored pair round, so the trajectories separate to the
 * bf16 noise (measured: perturbing d by 2e-7 moves the pass-per-vector run's f as much as switching to
 * the vector-free one); there the final f agrees to 0.5% (measured: 0.05%). */
TEST(lbfgs_vf_matches_two_loop) {
    size_t n = 10007, i;
    int bf, hi;
    static const int hist[] = {1, 3, 7};
    for (bf = 0; bf < 2; bf++)
        for (hi = 0; hi < 3; hi++) {
            float *x1 = (float *)malloc(n * sizeof(float)), *x2 = (float *)malloc(n * sizeof(float));
            double f1, f2, e = 0, range = 0;
            nst_lbfgs_options o;
            for (i = 0; i < n; i++) x1[i] = x2[i] = (float)(i % 7) - 3.0f;
            nst_lbfgs_options_init(&o);
            o.history = hist[hi]; o.max_iter = 30; o.history_bf16 = bf; o.threads = 2;
            o.tol_fun = o.tol_x = -1;
            CHECK_OK(nst__lbfgs(x1, n, quad, &n, &o, &f1, NULL, 0));
            CHECK_OK(nst__lbfgs(x2, n, quad, &n, &o, &f2, NULL, 1));
            for (i = 0; i < n; i++) {
                e = NST__MAX(e, fabs((double)x1[i] - x2[i]));
                range = NST__MAX(range, fabs((double)x2[i]));
            }
            if (!bf) CHECK_MSG(e <= 1e-4 * range, "history %d: max |x_vf - x_ref| = %g (range %g)", hist[hi], e, range);
            CHECK_MSG(fabs(f1 - f2) <= 5e-3 * f2, "history %d bf16 %d: f %.9g vs %.9g", hist[hi], bf, f1, f2);
            free(x1); free(x2);
        }
}

/* The whole gradient (fused masks, blocked Gram backward) byte for byte the same with 1 and 2 threads,
 * max and avg pooling, at a width where the pools fuse their masks. */
TEST(objective_gradient_independent_of_threads) {
    nst_model *m = NULL;
    int pool, th, w = 48, h = 24;
    size_t n = (size_t)3 * w * h, i;
    CHECK_OK(nst_model_random(5, &m));
    if (!m) return;
    for (pool = 0; pool < 2; pool++) {
        float *ref = NULL, *x = rand_vec(n, 0, 255);
        nst_image c, st;
        nst_image_alloc(&c, w, h, 3);
        nst_image_alloc(&st, w + 8, h + 8, 3);
        for (i = 0; i < n; i++) c.pixels[i] = (float)nst__rng_uniform(&rng);
        for (i = 0; i < (size_t)3 * (w + 8) * (h + 8); i++) st.pixels[i] = (float)nst__rng_uniform(&rng);
        for (th = 1; th <= 2; th++) {
            nst_options o;
            nst_objective *ob = NULL;
            float *g = (float *)malloc(n * sizeof(float));
            nst_options_init(&o);
            o.threads = th;
            o.pool = pool ? NST_POOL_AVG : NST_POOL_MAX;
            o.content_layers = "relu4_2,relu1_2";
            CHECK_OK(nst_objective_create(m, &c, &st, NULL, 1, &o, &ob));
            if (ob) CHECK_OK(nst_objective_eval(ob, x, NULL, g));
            nst_objective_free(ob);
            if (!ref) ref = g;
            else {
                CHECK_MSG(memcmp(ref, g, n * sizeof(float)) == 0, "pool %d: 2 threads differ from 1", pool);
                free(g);
            }
        }
        free(ref); free(x);
        nst_image_free(&c); nst_image_free(&st);
    }
    nst_model_free(m);
}

/* The fused loss gradient where D = s (G - A) is packed once (c >= 256: relu3_1, relu4_1, relu5_1) cuts
 * the columns by the L2 size and the thread count; its bits must not depend on the cut. Blocks of 48,
 * of 100 (tiles straddling every block edge) and the default, with 1 and 3 threads, two style layers
 * at relu4_1 (D summed over them): the same bytes. */
TEST(lossgrad_independent_of_blocks) {
    static const size_t cols[] = {0, 48, 100, 0};
    nst_model *m = NULL;
    int w = 160, h = 96, ci;
    size_t n = (size_t)3 * w * h, i;
    float *ref = NULL, *x = rand_vec(n, 0, 255);
    nst_image c, st;
    CHECK_OK(nst_model_random(9, &m));
    CHECK_OK(nst_image_alloc(&c, w, h, 3));
    CHECK_OK(nst_image_alloc(&st, w, h, 3));
    if (!m || !c.pixels || !st.pixels) return;
    for (i = 0; i < n; i++) c.pixels[i] = (float)nst__rng_uniform(&rng);
    for (i = 0; i < n; i++) st.pixels[i] = (float)nst__rng_uniform(&rng);
    for (ci = 0; ci < 4; ci++) {
        nst_options o;
        nst_objective *ob = NULL;
        float *g = (float *)malloc(n * sizeof(float));
        nst_options_init(&o);
        o.threads = ci == 3 ? 3 : 1;
        o.style_layers = "relu1_1,relu3_1,relu4_1,relu4_1,relu5_1";
        nst__lossgrad_cols_forced = cols[ci];
        CHECK_OK(nst_objective_create(m, &c, &st, NULL, 1, &o, &ob));
        if (ob) CHECK_OK(nst_objective_eval(ob, x, NULL, g));
        nst_objective_free(ob);
        if (!ref) ref = g;
        else {
            CHECK_MSG(memcmp(ref, g, n * sizeof(float)) == 0, "%lu columns, %d threads: not the bytes of the default",
                      (unsigned long)cols[ci], o.threads);
            free(g);
        }
    }
    nst__lossgrad_cols_forced = 0;
    free(ref); free(x);
    nst_image_free(&c); nst_image_free(&st);
    nst_model_free(m);
}

/* A made-up loss gradient at the kept layers (see nst__lossgrad_fn): a fixed pattern plus a multiple of
 * the features, and the ReLU's backward at a ReLU layer. */
static nst_status fake_lossgrad(void *ctx, int l, const float *feat, float *g, float *scratch) {
    const nst__net *n = (const nst__net *)ctx;
    size_t el = (size_t)n->c_[l] * n->h_[l] * n->w_[l], i;
    (void)scratch;
    for (i = 0; i < el; i++) {
        g[i] += 0.01f * (float)((int)(i % 7) - 3) + 0.003f * feat[i];
        if (nst__layer_type(l) == NST__L_RELU && !(feat[i] > 0.0f)) g[i] = 0.0f;
    }
    return NST_OK;
}

/* The 2x2 pools fused into the Winograd convolutions before them (forward) and the unpooling into their
 * backward (nst__net_pool_fuses), and the ReLU masks recorded and applied by the convolutions' output
 * strips (nst__net_mask_fuses): the pooled features, the ReLU mask bits, the argmax codes and the pixel
 * gradient byte for byte those of the unfused passes (nst__pool_fuse_off), for avg and max pooling,
 * zero and reflection padding, 1..3 threads, scalar and AVX2 kernels, at sizes where every pool fuses,
 * where only some do (40x56: w = 28 at conv2_2; 64x64: conv4_4 at 8x8 is a small map's GEMM) and where
 * none do (odd width), odd heights included.
 * It also checks that the fused path ran where it should, so it cannot pass by never fusing. */
TEST(pool_fused_into_conv_matches_unfused) {
    /* w, h, the last layer (pool4 or pool2), how many convolutions fuse */
    static const int cfg[][4] = {{64, 64, 4, 3}, {32, 24, 2, 2}, {72, 20, 2, 1}, {32, 19, 2, 2}, {24, 13, 2, 1},
                                 {40, 18, 2, 1}, {21, 16, 2, 0}, {128, 72, 4, 4}};
    static const nst_arch archs[] = {NST_ARCH_SCALAR, NST_ARCH_AVX2, NST_ARCH_NEON};   /* NEON's wino_out, scalar pools */
    const char *keeps[] = {"pool1", "pool2", "relu3_1", "pool3", "pool4"};
    int ai, si, avg, refl, th, k, quick = getenv("NST_TEST_QUICK") != NULL;
    unsigned char keep[NST_VGG_LAYERS];
    nst_model *m = NULL;
    memset(keep, 0, sizeof keep);
    for (k = 0; k < 5; k++) keep[nst_layer_index(keeps[k])] = 1;
    CHECK_OK(nst_model_random(11, &m));
    if (!m) return;
    for (ai = 0; ai < 3; ai++) {
        if ((quick && ai != 2) || nst_set_arch(archs[ai]) != NST_OK) continue;   /* not this CPU */
        for (k = 0; k < m->nconv; k++) {   /* plans take their kernels when made (the scalar model's calibration is slow) */
            nst__conv_plan_free(m->plan[k]);
            m->plan[k] = NULL;
            CHECK_OK(nst__conv_plan_create(m->w[k], m->b[k], m->cin[k], m->cout[k], &m->plan[k]));
            if (!m->plan[k]) { nst_set_arch(NST_ARCH_DEFAULT); return; }
        }
        for (si = 0; si < (int)(sizeof cfg / sizeof *cfg); si++)
            for (avg = 0; avg < 2; avg++)
                for (refl = 0; refl < 2; refl++)
                    for (th = 1; th <= 3; th++) {
                        int w = cfg[si][0], h = cfg[si][1], off, l, ci, nf = 0, nb = 0, nm[2] = {0, 0};
                        int last = nst_layer_index(cfg[si][2] == 4 ? "pool4" : "pool2");
                        /* seconds, not minutes: the scalar kernels with 3 threads only (the most segments);
                         * under qemu (tests/neon.sh, NST_TEST_QUICK) the NEON kernels, 1 thread, at three pool2
                         * sizes (every pool fuses, odd heights, only some fuse: the odd entries of cfg; 32x19,
                         * not smaller: conv2_2 at 8x5 would be a small map's GEMM, which fuses no pool) */
                        if ((cfg[si][2] == 4 && (th != 2 || ai == 0)) || (ai == 0 && th != 3)) continue;
                        if (quick && (si % 2 == 0 || th != 1)) continue;
                        size_t np = (size_t)3 * w * h;
                        float *px = rand_vec(np, 0, 255), *grad[2];
                        nst__net net[2];
                        m->reflect = refl;
                        for (off = 0; off < 2; off++) {
                            nst__pool_fuse_off = off;
                            grad[off] = (float *)malloc(np * sizeof(float));
                            CHECK_OK(nst__net_init(&net[off], m, h, w, last, keep, avg, th, 1));
                            CHECK_OK(nst__net_forward(&net[off], px));
                            CHECK_OK(nst__net_backward(&net[off], fake_lossgrad, &net[off], grad[off]));
                        }
                        nst__pool_fuse_off = 0;
                        for (l = 0, ci = 0; l <= last; l++) {
                            if (nst__layer_type(l) != NST__L_CONV) continue;
                            nf += nst__net_pool_fuses(&net[0], l, ci, 0);
                            nb += nst__net_pool_fuses(&net[0], l, ci, 1);
                            nm[0] += nst__net_mask_fuses(&net[0], l, ci, 0);
                            nm[1] += nst__net_mask_fuses(&net[0], l, ci, 1);
                            ci++;
                        }
                        CHECK_MSG(nf == cfg[si][3] && nb == cfg[si][3],
                                  "%dx%d reflect %d: %d convs fuse forward, %d backward", w, h, refl, nf, nb);
                        /* 128x72: the 7 ReLUs relu1_1, relu2_1, relu3_2, relu3_3, relu4_1..4_3 masked by the convs
                         * around them, except conv1_1 (the direct algorithm) recording relu1_1's; 64x64: conv4_1..4_4
                         * at 8x8 run as one GEMM (nst__conv_small_run) and fuse neither masks nor pool4 */
                        if (w == 128) CHECK_MSG(nm[0] == 6 && nm[1] == 7, "128x72: %d convs record a ReLU mask, %d apply one", nm[0], nm[1]);
                        if (w == 64) CHECK_MSG(nm[0] == 3 && nm[1] == 4, "64x64: %d convs record a ReLU mask, %d apply one", nm[0], nm[1]);
                        for (l = 0; l <= last; l++) {
                            size_t el = (size_t)net[0].c_[l] * net[0].h_[l] * net[0].w_[l];
                            int t = nst__layer_type(l);
                            if (keep[l])
                                CHECK_MSG(memcmp(net[0].feat[l], net[1].feat[l], el * sizeof(float)) == 0,
                                          "%s %s %dx%d reflect %d threads %d: %s differs", nst__arch_name(archs[ai]),
                                          avg ? "avg" : "max", w, h, refl, th, nst_layer_name(l));
                            if (t == NST__L_RELU && !keep[l])   /* recorded by a pool, a conv's strips or a pass */
                                CHECK_MSG(memcmp(net[0].rec[l], net[1].rec[l], el / 8) == 0,
                                          "%s %s %dx%d reflect %d threads %d: mask bits of %s differ",
                                          nst__arch_name(archs[ai]), avg ? "avg" : "max", w, h, refl, th, nst_layer_name(l));
                            if (t == NST__L_POOL && !avg)
                                CHECK_MSG(memcmp(net[0].rec[l], net[1].rec[l], el) == 0,
                                          "%s %dx%d reflect %d threads %d: codes of %s differ", nst__arch_name(archs[ai]),
                                          w, h, refl, th, nst_layer_name(l));
                        }
                        CHECK_MSG(memcmp(grad[0], grad[1], np * sizeof(float)) == 0,
                                  "%s %s %dx%d reflect %d threads %d: pixel gradient differs", nst__arch_name(archs[ai]),
                                  avg ? "avg" : "max", w, h, refl, th);
                        nst__net_free(&net[0]); nst__net_free(&net[1]);
                        free(grad[0]); free(grad[1]); free(px);
                    }
        nst_set_arch(NST_ARCH_DEFAULT);
    }
    nst_model_free(m);
}

int main(int argc, char **argv) {
    nst_test_begin(argc, argv);
    RUN(relu_masks_match_scalar);
    RUN(pool_mask_matches_reference);
    RUN(pool_fused_into_conv_matches_unfused);
    RUN(lbfgs_pass_matches_scalar);
    RUN(lbfgs_independent_of_threads);
    RUN(lbfgs_vf_kernels_match_scalar);
    RUN(lbfgs_vf_matches_two_loop);
    RUN(objective_gradient_independent_of_threads);
    RUN(lossgrad_independent_of_blocks);
    return nst_test_end("test_iter");
}
