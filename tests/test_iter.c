/* The iteration outside the convolutions: ReLU masks, pooling fused with them, the L-BFGS passes.
 * Each SIMD path against its scalar reference on awkward sizes, the fused kernels against the plain
 * ones they replace, and L-BFGS results independent of the thread count. */
#define NST_IMPLEMENTATION
#include "nst.h"
#include "nst_test.h"
#include <stdlib.h>

static nst__rng rng = {777};
static float *rand_vec(size_t n, double lo, double hi) {
    float *v = (float *)malloc(n * sizeof(float) + 64);
    size_t i;
    for (i = 0; i < n; i++) v[i] = (float)(lo + (hi - lo) * nst__rng_uniform(&rng));
    return v;
}
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

/* pool + mask, fused, against the reference pool and the plain mask (both directions, avg and max) */
TEST(pool_mask_matches_reference) {
    static const int ws[] = {8, 16, 24, 40, 72}, hs[] = {2, 3, 7, 8};
    int wi, hi, avg, c = 3, simd;
    for (simd = 0; simd < 2; simd++)
        for (avg = 0; avg < 2; avg++)
            for (wi = 0; wi < 5; wi++)
                for (hi = 0; hi < 4; hi++) {
                    int w = ws[wi], h = hs[hi], oh = h / 2, ow = w / 2, ch;
                    size_t n = (size_t)c * h * w, no = (size_t)c * oh * ow;
                    float *in = rand_vec(n, -1, 1), *o1 = rand_vec(no, 0, 1), *o2 = rand_vec(no, 0, 1);
                    float *go = rand_vec(no, -1, 1), *d1 = rand_vec(n, 5, 6), *d2 = rand_vec(n, 7, 8);
                    unsigned char *b1 = (unsigned char *)malloc(n / 8 + 1), *b2 = (unsigned char *)malloc(n / 8 + 1);
                    unsigned char *code = (unsigned char *)malloc(no);
                    CHECK(nst__pool_fusable(h, w));
                    nst__pool2x2_forward_ref(o1, in, c, h, w, avg, 1);
                    nst__relu_mask_bits_scalar(in, b1, 0, n);
                    for (ch = 0; ch < c; ch++) {
#if defined(NST__X86)
                        if (simd && nst__simd_avx2()) nst__pool_mask_fwd_avx2(o2, avg ? NULL : code, b2, in, ch, h, w, avg);
                        else
#endif
                            nst__pool_mask_fwd_scalar(o2, avg ? NULL : code, b2, in, ch, h, w, avg);
                    }
                    CHECK_MSG(memcmp(o1, o2, no * sizeof(float)) == 0, "pool forward %s %dx%d simd %d", avg ? "avg" : "max", w, h, simd);
                    CHECK_MSG(memcmp(b1, b2, n / 8) == 0, "pool mask bits %s %dx%d simd %d", avg ? "avg" : "max", w, h, simd);
                    nst__pool2x2_backward_ref(d1, go, in, c, h, w, avg, 1);
                    nst__relu_backward_scalar(d1, b1, 0, n);
                    for (ch = 0; ch < c; ch++) {
#if defined(NST__X86)
                        if (simd && nst__simd_avx2()) nst__pool_mask_bwd_avx2(d2, go, avg ? NULL : code, b1, ch, h, w, avg);
                        else
#endif
                            nst__pool_mask_bwd_scalar(d2, go, avg ? NULL : code, b1, ch, h, w, avg);
                    }
                    CHECK_MSG(memcmp(d1, d2, n * sizeof(float)) == 0, "pool backward %s %dx%d simd %d", avg ? "avg" : "max", w, h, simd);
                    free(in); free(o1); free(o2); free(go); free(d1); free(d2); free(b1); free(b2); free(code);
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

int main(int argc, char **argv) {
    nst_test_begin(argc, argv);
    RUN(relu_masks_match_scalar);
    RUN(pool_mask_matches_reference);
    RUN(lbfgs_pass_matches_scalar);
    RUN(lbfgs_independent_of_threads);
    RUN(objective_gradient_independent_of_threads);
    return nst_test_end("test_iter");
}
