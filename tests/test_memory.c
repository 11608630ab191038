/* The memory estimate of nst_transfer (nst_transfer_memory) against what real runs use, on a matrix of
 * runs: style larger and smaller than the content, style scale 2, 2 and 3 scales, two styles, Adam and
 * L-BFGS, odd sizes, gray and RGBA inputs, histogram colours. Each run is its own process (this program
 * re-executed with --child N), so its peak resident memory (VmHWM, Linux) is that run's alone, as
 * /usr/bin/time -v would report it for the CLI. Two checks per run:
 *   - the estimate against VmHWM: within -10% / +15% (the promise the CLI makes to users);
 *   - the estimate without its runtime allowance against the peak of the library's live allocations
 *     (counted through the NST_MALLOC hooks): at least that peak (nothing missed) and within +10%.
 * The model has VGG-19's layers at 1/16 of its widths so the matrix runs in seconds; the sizes are large
 * enough that the per-pixel buffers, not the runtime, dominate. `test_memory --table` runs the matrix
 * with the full-width random VGG-19 instead (minutes) and prints the table the README quotes. */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* live bytes through the library's allocator, and their peak (atomics: OpenMP workers allocate too) */
static size_t mem_live, mem_peak;
static void *mem_malloc(size_t n) {
    size_t *p = (size_t *)malloc(n + 16), now, old;
    if (!p) return NULL;
    p[0] = n;
    now = __atomic_add_fetch(&mem_live, n, __ATOMIC_RELAXED);
    old = __atomic_load_n(&mem_peak, __ATOMIC_RELAXED);
    while (now > old && !__atomic_compare_exchange_n(&mem_peak, &old, now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return (char *)p + 16;
}
static void mem_free(void *q) {
    size_t *p;
    if (!q) return;
    p = (size_t *)((char *)q - 16);
    __atomic_sub_fetch(&mem_live, p[0], __ATOMIC_RELAXED);
    free(p);
}
static void *mem_realloc(void *q, size_t n) {
    void *r = mem_malloc(n);
    if (r && q) {
        size_t o = ((size_t *)((char *)q - 16))[0];
        memcpy(r, q, o < n ? o : n);
        mem_free(q);
    }
    return r;
}
#define NST_MALLOC(n) mem_malloc(n)
#define NST_FREE(p) mem_free(p)
#define NST_REALLOC(p, n) mem_realloc(p, n)
#define NST_IMPLEMENTATION
#include "nst.h"
#include "nst_test.h"
#if defined(__linux__)
#include <sys/wait.h>
#include <unistd.h>
#endif

static long proc_file_kb(const char *path, const char *key) {
    FILE *f = fopen(path, "r");
    char line[256];
    long v = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, strlen(key)) == 0) { v = atol(line + strlen(key) + 1); break; }
    fclose(f);
    return v;
}
static long proc_kb(const char *key) { return proc_file_kb("/proc/self/status", key); }

/* ---- the matrix ------------------------------------------------------------------------------------*/
typedef struct mem_run {
    const char *what;
    int cw, ch, cc;               /* content size and channels */
    int sw[2], sh[2], sc[2], ns;  /* styles */
    int size, iterations, scales, adam, history, line_search, threads;
    float style_scale;
    nst_colors colors;
} mem_run;

static const mem_run mem_runs[] = {
    /* what                             content          styles                                 size it sc adam h ls th scale colors */
    {"style larger than content",      451, 300, 3, {1001, 0}, {717, 0}, {3, 0}, 1,            256, 6, 1, 0, 4, 0, 1, 1.0f, NST_COLORS_STYLE},
    {"style smaller (scale 0.5)",      640, 427, 3, {512, 0}, {393, 0}, {3, 0}, 1,             288, 6, 1, 0, 4, 0, 1, 0.5f, NST_COLORS_STYLE},
    {"style scale 2",                  451, 300, 3, {1001, 0}, {717, 0}, {3, 0}, 1,            144, 6, 1, 0, 4, 0, 1, 2.0f, NST_COLORS_STYLE},
    {"2 scales",                       600, 400, 3, {928, 0}, {514, 0}, {3, 0}, 1,             288, 6, 2, 0, 4, 0, 1, 1.0f, NST_COLORS_STYLE},
    {"3 scales, line search",          600, 400, 3, {928, 0}, {514, 0}, {3, 0}, 1,             288, 6, 3, 0, 4, 1, 1, 1.0f, NST_COLORS_STYLE},
    {"two styles",                     451, 300, 3, {768, 928}, {768, 514}, {3, 3}, 2,         256, 6, 1, 0, 4, 0, 2, 1.0f, NST_COLORS_STYLE},
    {"Adam",                           451, 300, 3, {1001, 0}, {717, 0}, {3, 0}, 1,            320, 6, 1, 1, 4, 0, 2, 1.0f, NST_COLORS_STYLE},
    {"odd sizes, gray + RGBA, hist.",  1001, 717, 1, {333, 0}, {477, 0}, {4, 0}, 1,            257, 6, 1, 0, 4, 0, 1, 1.0f, NST_COLORS_HISTOGRAM},
};
#define MEM_RUNS ((int)(sizeof mem_runs / sizeof mem_runs[0]))

/* VGG-19's topology at widths / div (div 1: the random VGG-19 itself). */
static nst_status mem_model(int div, nst_model **out) {
    int cin[NST_VGG_CONVS], cout[NST_VGG_CONVS], i;
    size_t k;
    nst_model *m;
    nst_status st;
    nst__rng r;
    if (div <= 1) return nst_model_random(1, out);
    for (i = 0; i < NST_VGG_CONVS; i++) {
        cout[i] = nst__vgg_cout[i] / div;
        cin[i] = i ? cout[i - 1] : 3;
    }
    if ((st = nst__model_alloc(NST_VGG_CONVS, cin, cout, &m)) != NST_OK) return st;
    r.s = 7;
    for (i = 0; i < NST_VGG_CONVS; i++) {
        for (k = 0; k < (size_t)cout[i] * cin[i] * 9; k++) m->w[i][k] = (float)(nst__rng_normal(&r) * sqrt(2.0 / (9.0 * cin[i])));
        for (k = 0; k < (size_t)cout[i]; k++) m->b[i][k] = 0.01f;
    }
    if ((st = nst__model_finish(m)) != NST_OK) { nst_model_free(m); return st; }
    *out = m;
    return NST_OK;
}

static void mem_fill(nst_image *im, int w, int h, int c, unsigned seed) {
    size_t i, n = (size_t)w * h * c;
    nst_image_alloc(im, w, h, c);
    for (i = 0; im->pixels && i < n; i++) im->pixels[i] = (float)(((i + seed) * 2654435761u) % 1000) / 1000.0f;
}

/* The child: one run; prints "est E heap H hwm_kb K". */
static int mem_child(int index, int div) {
    const mem_run *r = &mem_runs[index];
    nst_model *m = NULL;
    nst_image c, s[2], out;
    nst_options o;
    size_t est;
    int k;
    if (mem_model(div, &m) != NST_OK) { fprintf(stderr, "model: %s\n", nst_last_error()); return 1; }
    mem_fill(&c, r->cw, r->ch, r->cc, 1);
    for (k = 0; k < r->ns; k++) mem_fill(&s[k], r->sw[k], r->sh[k], r->sc[k], 2 + k);
    nst_options_init(&o);
    o.image_size = r->size;
    o.iterations = r->iterations;
    o.scales = r->scales;
    o.optimizer = r->adam ? NST_OPT_ADAM : NST_OPT_LBFGS;
    o.lbfgs_history = r->history;   /* fewer pairs than iterations: the whole history is touched */
    o.lbfgs_line_search = r->line_search;
    o.style_scale = r->style_scale;
    o.colors = r->colors;
    o.threads = r->threads;
    est = nst_transfer_memory(m, &c, s, r->ns, &o);
    if (nst_transfer(m, &c, s, NULL, r->ns, &o, &out) != NST_OK) { fprintf(stderr, "transfer: %s\n", nst_last_error()); return 1; }
    printf("est %lu heap %lu runtime %lu hwm_kb %ld\n", (unsigned long)est, (unsigned long)mem_peak,
           (unsigned long)nst__mem_runtime(r->threads, 0), proc_kb("VmHWM:"));
    return 0;
}

#if defined(__linux__)
static const char *mem_self;
/* Runs the child for run i; fills est, heap (bytes) and hwm (bytes). */
static int mem_measure(int i, int div, double *est, double *heap, double *runtime, double *hwm) {
    char cmd[4200], line[256];
    FILE *p;
    unsigned long e = 0, h = 0, rt = 0;
    long kb = -1;
    int ok = 0;
    snprintf(cmd, sizeof cmd, "'%s' --child %d %d", mem_self, i, div);
    if (!(p = popen(cmd, "r"))) return 0;
    while (fgets(line, sizeof line, p))
        if (sscanf(line, "est %lu heap %lu runtime %lu hwm_kb %ld", &e, &h, &rt, &kb) == 4) ok = 1;
    if (pclose(p) != 0) ok = 0;
    *est = (double)e; *heap = (double)h; *runtime = (double)rt; *hwm = (double)kb * 1024.0;
    return ok && kb > 0;
}

static void mem_matrix(int div, int table) {
    int i;
    if (table) printf("| run | estimate MiB | measured peak MiB (VmHWM) | estimate/peak |\n|---|---|---|---|\n");
    for (i = 0; i < MEM_RUNS; i++) {
        double est, heap, rt, hwm, ratio;
        if (!mem_measure(i, div, &est, &heap, &rt, &hwm)) { CHECK_MSG(0, "run '%s' failed", mem_runs[i].what); continue; }
        ratio = est / hwm;
        if (table) printf("| %s | %.1f | %.1f | %.3f |\n", mem_runs[i].what, est / 1048576.0, hwm / 1048576.0, ratio);
        else printf("  %-32s estimate %6.1f MiB, peak %6.1f MiB (%.3f); allocations %6.1f MiB\n", mem_runs[i].what,
                    est / 1048576.0, hwm / 1048576.0, ratio, heap / 1048576.0);
        CHECK_MSG(ratio >= 0.90 && ratio <= 1.15, "%s: estimate %.1f MiB, measured %.1f MiB", mem_runs[i].what,
                  est / 1048576.0, hwm / 1048576.0);
        /* the buffers counted cover every allocation, with little to spare */
        CHECK_MSG(est - rt >= heap && est - rt <= 1.10 * heap, "%s: estimate without runtime %.1f MiB, allocations peak %.1f MiB",
                  mem_runs[i].what, (est - rt) / 1048576.0, heap / 1048576.0);
    }
}
#endif

TEST(estimate_matches_peak_on_a_matrix_of_runs) {
#if defined(__linux__)
    if (proc_kb("VmHWM:") < 0) SKIP("no /proc/self/status");
    mem_matrix(16, 0);
#else
    SKIP("needs Linux (/proc/self/status)");
#endif
}

TEST(refuses_runs_above_the_limit) {
    nst_model *m = NULL;
    nst_image c, out;
    nst_options o;
    CHECK_OK(mem_model(16, &m));
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

/* Large blocks: 64-byte aligned, usable end to end, and (Linux with THP in "madvise" or "always" mode)
 * backed by huge pages once touched, which is what nst__aligned_alloc's advice is for. */
TEST(large_blocks_aligned_and_on_huge_pages) {
    static const size_t sizes[] = { 1, 63, ((size_t)4 << 20) - 1, (size_t)4 << 20, ((size_t)4 << 20) + 4097,
                                    ((size_t)33 << 20) + 13 };
    size_t i;
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = (unsigned char *)nst__aligned_alloc(sizes[i]);
        CHECK(p != NULL);
        if (!p) continue;
        CHECK_MSG(((uintptr_t)p & 63) == 0, "block of %zu bytes at %p", sizes[i], (void *)p);
        memset(p, 0xA5, sizes[i]);
        CHECK(p[0] == 0xA5 && p[sizes[i] - 1] == 0xA5);
        nst__aligned_free(p);
    }
#if defined(__linux__) && defined(NST__HUGEPAGES)
    {
        FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
        char mode[128] = "";
        long before, after;
        unsigned char *p;
        if (f) {
            if (!fgets(mode, sizeof mode, f)) mode[0] = 0;
            fclose(f);
        }
        if (!strstr(mode, "[madvise]") && !strstr(mode, "[always]")) SKIP("transparent huge pages are off here");
        if ((before = proc_file_kb("/proc/self/smaps_rollup", "AnonHugePages:")) < 0) SKIP("no /proc/self/smaps_rollup");
        p = (unsigned char *)nst__aligned_alloc((size_t)16 << 20);
        CHECK(p != NULL);
        if (!p) return;
        memset(p, 1, (size_t)16 << 20);
        after = proc_file_kb("/proc/self/smaps_rollup", "AnonHugePages:");
        /* at least 6 of the 7 whole 2 MiB pages inside (one may be lost to fragmentation) */
        CHECK_MSG(after - before >= 12 * 1024, "AnonHugePages %ld -> %ld kB after touching 16 MiB", before, after);
        nst__aligned_free(p);
    }
#endif
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "--child") == 0) return mem_child(atoi(argv[2]), atoi(argv[3]));
#if defined(__linux__)
    setenv("OMP_WAIT_POLICY", "passive", 0);   /* workers that spin at barriers starve a shared CPU */
    mem_self = "/proc/self/exe";
    {
        static char self[4096];
        ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
        if (k > 0) { self[k] = 0; mem_self = self; }
    }
    if (argc == 2 && strcmp(argv[1], "--table") == 0) {
        mem_matrix(1, 1);
        return nst_test_end("test_memory");
    }
#endif
    nst_test_begin(argc, argv);
    RUN(estimate_matches_peak_on_a_matrix_of_runs);
    RUN(refuses_runs_above_the_limit);
    RUN(large_blocks_aligned_and_on_huge_pages);
    return nst_test_end("test_memory");
}
