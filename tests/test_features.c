/* Beyond neural-style: reflection padding of the random model, spatial style masks (guided Grams),
 * temporal consistency for video frames, and the style-target cache that batch runs share. */
#define NST_IMPLEMENTATION
#include "nst.h"
#include "nst_test.h"
#include <stdlib.h>

static nst__rng rng = {777};
static float *rand_vec(size_t n, double lo, double hi) {
    float *v = (float *)malloc(n * sizeof(float));
    size_t i;
    for (i = 0; i < n; i++) v[i] = (float)(lo + (hi - lo) * nst__rng_uniform(&rng));
    return v;
}
static double max_abs(const float *a, size_t n) {
    double m = 0;
    size_t i;
    for (i = 0; i < n; i++) if (fabs(a[i]) > m) m = fabs(a[i]);
    return m;
}

/* A model of narrow layers (fast), He-initialised, zero bias unless asked. */
static nst_model *tiny_model(int widths, unsigned long long seed, int reflect) {
    nst__tensor_list l;
    nst_model *m = NULL;
    int i, cin = 3;
    memset(&l, 0, sizeof l);
    l.t = (nst__named_tensor *)calloc(32, sizeof *l.t);
    for (i = 0; i < NST_VGG_CONVS; i++) {
        nst__named_tensor *w = &l.t[l.n++], *b = &l.t[l.n++];
        size_t k, nw = (size_t)widths * cin * 9;
        snprintf(w->name, sizeof w->name, "%s.weight", nst__conv_names[i]);
        snprintf(b->name, sizeof b->name, "%s.bias", nst__conv_names[i]);
        w->ndim = 4; w->shape[0] = widths; w->shape[1] = cin; w->shape[2] = 3; w->shape[3] = 3;
        b->ndim = 1; b->shape[0] = widths;
        w->data = (float *)malloc(nw * sizeof(float));
        b->data = (float *)malloc(widths * sizeof(float));
        rng.s = seed + i;
        for (k = 0; k < nw; k++) w->data[k] = (float)(nst__rng_normal(&rng) * sqrt(2.0 / (9 * cin)));
        for (k = 0; k < (size_t)widths; k++) b->data[k] = (float)(0.1 * nst__rng_normal(&rng));
        cin = widths;
    }
    l.has_conv = 1;
    l.conv = nst__caffe_convention();
    if (nst__model_from_tensors(&l, &m) != NST_OK) fprintf(stderr, "tiny model: %s\n", nst_last_error());
    nst__tensor_list_free(&l);
    if (m) m->reflect = reflect;
    return m;
}

/* ---- reflection padding ----------------------------------------------------------------------------*/
static int refl(int i, int n) { return i < 0 ? (n > 1 ? 1 : 0) : i >= n ? (n > 1 ? n - 2 : 0) : i; }
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
                                 in[(ci * h + refl(y + ky - 1, h)) * wd + refl(x + kx - 1, wd)];
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
            float *pad = (float *)malloc(sizeof(float) * nst__reflect_scratch_floats(cin, cout, h, w));
            double *ref = (double *)malloc(sizeof(double) * nout), err = 0, lhs = 0, rhs = 0;
            naive_conv_reflect(ref, x, m->w[ci], m->b[ci], cin, cout, h, w);
            CHECK_OK(nst__conv_forward(m->plan[ci], x, y, h, w, 0, 1, NULL));
            CHECK_OK(nst__reflect_fix_forward(m, ci, x, y, h, w, 1, pad));
            for (i = 0; i < nout; i++) if (fabs(y[i] - ref[i]) > err) err = fabs(y[i] - ref[i]);
            CHECK_MSG(err < 1e-4, "forward %dx%d conv %d: err %g", w, h, ci, err);
            /* backward is the exact adjoint of forward without bias: <A x, r> = <x, A^T r> */
            CHECK_OK(nst__conv_forward(m->plan[ci], x, y, h, w, 0, 1, NULL));
            CHECK_OK(nst__reflect_fix_forward(m, ci, x, y, h, w, 1, pad));
            CHECK_OK(nst__conv_backward_data(m->plan[ci], r, dx, h, w, 1, NULL));
            CHECK_OK(nst__reflect_fix_backward(m, ci, r, dx, h, w, 1, pad));
            for (i = 0; i < nout; i++) lhs += (double)(y[i] - m->b[ci][i / ((size_t)h * w)]) * r[i];
            for (i = 0; i < nin; i++) rhs += (double)x[i] * dx[i];
            CHECK_MSG(fabs(lhs - rhs) < 1e-4 * (fabs(lhs) + 1), "adjoint %dx%d conv %d: %g vs %g", w, h, ci, lhs, rhs);
            free(x); free(y); free(r); free(dx); free(dy); free(pad); free(ref);
        }
    }
    nst_model_free(m);
}

int main(int argc, char **argv) {
    nst_test_begin(argc, argv);
    RUN(reflection_padding_matches_naive_and_its_adjoint);
    return nst_test_end("test_features");
}
