/* Tiny shared test runner: one test program per area, each ending with "name: N passed, N failed, N skipped".
 * tests/run.sh runs them all and sums the counts into the last line of `make test`.
 *
 *   TEST(conv_matches_reference) { ... CHECK(x == y); CHECK_NEAR(a, b, 1e-5); ... }
 *   int main(int argc, char **argv) { RUN(conv_matches_reference); return nst_test_end("test_conv"); }
 *
 * A test passes when none of its checks failed; SKIP("why") marks it skipped (e.g. the CPU lacks AVX-512).
 * With an argument, only the tests whose names contain it run. */
#ifndef NST_TEST_H
#define NST_TEST_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

static int nst_t_passed, nst_t_failed, nst_t_skipped, nst_t_cur_failed, nst_t_cur_skipped;
static const char *nst_t_filter;

#define TEST(name) static void name(void)
#define CHECK(cond) do { if (!(cond)) { nst_t_cur_failed++; \
    fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_MSG(cond, ...) do { if (!(cond)) { nst_t_cur_failed++; \
    fprintf(stderr, "  %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)
#define CHECK_NEAR(a, b, tol) do { double nst_t_a = (double)(a), nst_t_b = (double)(b); \
    if (!(fabs(nst_t_a - nst_t_b) <= (tol))) { nst_t_cur_failed++; \
    fprintf(stderr, "  %s:%d: %s = %.9g, %s = %.9g, |diff| %.3g > %.3g\n", __FILE__, __LINE__, \
            #a, nst_t_a, #b, nst_t_b, fabs(nst_t_a - nst_t_b), (double)(tol)); } } while (0)
#define CHECK_OK(expr) do { nst_status nst_t_s = (expr); if (nst_t_s != NST_OK) { nst_t_cur_failed++; \
    fprintf(stderr, "  %s:%d: %s returned %d: %s\n", __FILE__, __LINE__, #expr, (int)nst_t_s, \
            nst_last_error()); } } while (0)
#define SKIP(why) do { nst_t_cur_skipped = 1; fprintf(stderr, "  skipped: %s\n", why); return; } while (0)
#define RUN(name) nst_t_run(#name, name)

static void nst_t_run(const char *name, void (*fn)(void)) {
    if (nst_t_filter && !strstr(name, nst_t_filter)) return;
    nst_t_cur_failed = 0;
    nst_t_cur_skipped = 0;
    fn();
    if (nst_t_cur_failed) { nst_t_failed++; fprintf(stderr, "FAIL %s\n", name); }
    else if (nst_t_cur_skipped) { nst_t_skipped++; printf("skip %s\n", name); }
    else { nst_t_passed++; printf("ok   %s\n", name); }
    fflush(stdout);
}
static void nst_test_begin(int argc, char **argv) { nst_t_filter = argc > 1 ? argv[1] : NULL; }
static int nst_test_end(const char *program) {
    printf("%s: %d passed, %d failed, %d skipped\n", program, nst_t_passed, nst_t_failed, nst_t_skipped);
    return nst_t_failed ? 1 : 0;
}
#ifdef NST_IMPLEMENTATION
/* A VGG-19-shaped model with every layer `widths` channels wide (cheap at any size), He-initialised
 * weights and N(0, 0.1) biases drawn from *rng, reseeded per layer (seed + layer), Caffe convention.
 * Shared by the tests that need a whole network (core, features, tiling). */
/* n floats uniform in [lo, hi) from r, with 64 bytes of slack after them (for SIMD tails); free() them. */
static NST__UNUSED float *nst_t_rand_vec(nst__rng *r, size_t n, double lo, double hi) {
    float *v = (float *)malloc(n * sizeof(float) + 64);
    size_t i;
    if (v)
        for (i = 0; i < n; i++) v[i] = (float)(lo + (hi - lo) * nst__rng_uniform(r));
    return v;
}

static NST__UNUSED nst_model *nst_t_tiny_model(nst__rng *rng, int widths, unsigned long long seed) {
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
        rng->s = seed + i;
        for (k = 0; k < nw; k++) w->data[k] = (float)(nst__rng_normal(rng) * sqrt(2.0 / (9 * cin)));
        for (k = 0; k < (size_t)widths; k++) b->data[k] = (float)(0.1 * nst__rng_normal(rng));
        cin = widths;
    }
    l.has_conv = 1;
    l.conv = nst__caffe_convention();
    if (nst__model_from_tensors(&l, &m) != NST_OK) fprintf(stderr, "tiny model: %s\n", nst_last_error());
    nst__tensor_list_free(&l);
    return m;
}
#endif

#endif
