/* The memory estimate of nst_transfer against the measured peak resident memory of a real run
 * (Linux only: it reads VmHWM from /proc/self/status). Its own program, so earlier tests do not
 * raise the high-water mark. */
#define NST_IMPLEMENTATION
#include "nst.h"
#include "nst_test.h"

static long proc_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, strlen(key)) == 0) { v = atol(line + strlen(key) + 1); break; }
    fclose(f);
    return v;
}

TEST(estimate_within_10_percent_of_peak) {
    nst_model *m = NULL;
    nst_image c, s, out;
    nst_options o;
    size_t est, i;
    long base, peak;
    double measured;
    if (proc_kb("VmHWM:") < 0) SKIP("no /proc/self/status");
    CHECK_OK(nst_model_random(1, &m));
    if (!m) return;
    nst_image_alloc(&c, 320, 240, 3);
    nst_image_alloc(&s, 256, 256, 3);
    for (i = 0; i < (size_t)320 * 240 * 3; i++) c.pixels[i] = (float)((i * 2654435761u) % 1000) / 1000.0f;
    for (i = 0; i < (size_t)256 * 256 * 3; i++) s.pixels[i] = (float)((i * 40503u) % 997) / 997.0f;
    nst_options_init(&o);
    o.image_size = 320;
    o.iterations = 12;
    o.lbfgs_history = 8;   /* fewer pairs than iterations, so the whole history is touched */
    o.threads = 2;
    est = nst_transfer_memory(m, &c, &s, 1, &o);
    /* the high-water mark so far covers the model, the inputs and the runtime; the estimate counts
     * the model and inputs too, so compare against the growth over what is resident without them */
    base = proc_kb("VmRSS:") - (long)((m->block_bytes + (size_t)(320 * 240 + 256 * 256) * 12) / 1024);
    CHECK_OK(nst_transfer(m, &c, &s, NULL, 1, &o, &out));
    peak = proc_kb("VmHWM:");
    measured = (double)(peak - base) * 1024.0;
    printf("  estimate %.1f MB, measured peak %.1f MB (ratio %.3f)\n", est / 1048576.0, measured / 1048576.0,
           est / measured);
    CHECK_MSG(fabs(est / measured - 1.0) <= 0.10, "estimate %.1f MB vs measured %.1f MB", est / 1048576.0,
              measured / 1048576.0);
    nst_image_free(&out); nst_image_free(&c); nst_image_free(&s);
    nst_model_free(m);
}

TEST(refuses_runs_above_the_limit) {
    nst_model *m = NULL;
    nst_image c, out;
    nst_options o;
    CHECK_OK(nst_model_random(1, &m));
    if (!m) return;
    nst_image_alloc(&c, 64, 64, 3);
    nst_options_init(&o);
    o.image_size = 4096;
    o.memory_limit = (size_t)256 << 20;
    CHECK(nst_transfer(m, &c, &c, NULL, 1, &o, &out) == NST_ERR_NOMEM);
    CHECK(strstr(nst_last_error(), "MB") != NULL);
    nst_image_free(&c);
    nst_model_free(m);
}

int main(int argc, char **argv) {
    nst_test_begin(argc, argv);
    RUN(estimate_within_10_percent_of_peak);
    RUN(refuses_runs_above_the_limit);
    return nst_test_end("test_memory");
}
