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
#endif
