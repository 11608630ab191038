/* One style-transfer iteration through the public objective API: VGG-19 forward to relu5_1 (random
 * normalised model), content + style + TV losses, backward to the pixels; time per evaluation and the
 * process's peak resident memory (VmHWM) at 256, 512 and 1024 px.
 *
 *   build/bench_nst [--threads N] [--reps N] [--size N] [--arch scalar|avx2|avx512|neon]
 * --arch (or $NST_ARCH) picks the kernel path (GEMM, convolution, pooling); the last column names it.
 * Without --size it runs itself once per size (so each peak-memory figure is that size's alone). */
#define NST_IMPLEMENTATION
#include "nst.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* process CPU time: with the wall time it shows how much a loaded machine distorted a run */
static double cpu_seconds(void) {
#if defined(CLOCK_PROCESS_CPUTIME_ID)
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
#else
    return (double)clock() / CLOCKS_PER_SEC;
#endif
}

static double vmhwm_mib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = atof(line + 6);
    fclose(f);
    return kb < 0 ? -1 : kb / 1024.0;
}

static nst_status make_image(nst_image *img, int s, unsigned seed) {
    nst_status st = nst_image_alloc(img, s, s, 3);
    size_t i, n = (size_t)s * s * 3;
    nst__rng r;
    r.s = seed;
    if (st != NST_OK) return st;
    for (i = 0; i < n; i++) img->pixels[i] = (float)nst__rng_uniform(&r);
    return NST_OK;
}

static int run_size(int size, int threads, int reps) {
    nst_model *m = NULL;
    nst_image content, style;
    nst_options o;
    nst_objective *obj = NULL;
    nst_losses l;
    float *x = NULL, *g = NULL;
    double best = 1e30, best_cpu = 1e30, t_create, rss_before;
    size_t i, n = (size_t)3 * size * size;
    int r, rc = 1;
    content.pixels = style.pixels = NULL;
    if (nst_model_random(1, &m) || make_image(&content, size, 2) || make_image(&style, size, 3)) goto fail;
    nst_options_init(&o);
    o.threads = threads;
    o.image_size = size;
    rss_before = vmhwm_mib();
    t_create = nst__now();
    if (nst_objective_create(m, &content, &style, NULL, 1, &o, &obj)) goto fail;
    t_create = nst__now() - t_create;
    x = (float *)nst__malloc(sizeof(float) * n);
    g = (float *)nst__malloc(sizeof(float) * n);
    if (!x || !g) goto fail;
    for (i = 0; i < n; i++) x[i] = (float)((i * 2654435761u) % 256);
    for (r = 0; r < reps + 1; r++) {   /* the first evaluation warms up (page faults, first touches) */
        double t0 = nst__now(), c0 = cpu_seconds(), dt, dc;
        if (nst_objective_eval(obj, x, &l, g)) goto fail;
        dt = nst__now() - t0;
        dc = (cpu_seconds() - c0) / threads;
        if (r > 0 && dt < best) best = dt;
        if (r > 0 && dc < best_cpu) best_cpu = dc;
    }
    printf("%6d %7d %10.3f %9.1f %10.3f %12.0f %12.0f %10.4g  %s (conv %s)\n", size, threads, best,
           377.3 * (size / 512.0) * (size / 512.0) / best, best_cpu, vmhwm_mib(), rss_before, l.total,
           nst__arch_name(nst_get_arch()), nst__conv_kernels_for(nst_get_arch())->name);
    rc = 0;
    (void)t_create;
fail:
    if (rc) fprintf(stderr, "bench_nst: %s\n", nst_last_error());
    nst__free(x);
    nst__free(g);
    nst_objective_free(obj);
    nst_image_free(&content);
    nst_image_free(&style);
    nst_model_free(m);
    return rc;
}

int main(int argc, char **argv) {
    int threads = 2, reps = 3, size = 0, i;
    const char *arch = NULL;
    static const int sizes[] = { 256, 512, 1024 };
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc) size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--arch") && i + 1 < argc) arch = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--threads N] [--reps N] [--size N] [--arch scalar|avx2|avx512|neon]\n", argv[0]);
            return 2;
        }
    }
    if (arch) {
        int a;
        for (a = NST_ARCH_SCALAR; a <= NST_ARCH_NEON; a++)
            if (!strcmp(arch, nst__arch_name((nst_arch)a))) break;
        if (a > NST_ARCH_NEON || nst_set_arch((nst_arch)a) != NST_OK) {
            fprintf(stderr, "bench_nst: path '%s' is not available on this CPU/build\n", arch);
            return 2;
        }
    }
    if (threads < 1 || reps < 1 || size < 0) return 2;
    if (size) return run_size(size, threads, reps);
    printf("bench_nst: one iteration = VGG-19 forward to relu5_1 + content/style/TV losses + backward to the pixels\n"
           "(random normalised model, best of %d after a warm-up; GF/s = 377 GFLOP direct-conv at 512 px, scaled;\n"
           " cpu/thr = process CPU time / threads; model MiB = peak before the objective is built)\n",
           reps);
    printf("%6s %7s %10s %9s %10s %12s %12s %10s  %s\n", "size", "threads", "s/iter", "GF/s", "cpu/thr s", "peak MiB",
           "model MiB", "loss", "path");
    fflush(stdout);
    for (i = 0; i < 3; i++) {
        char cmd[4096];
        if (strlen(argv[0]) > 3000 || (arch && strlen(arch) > 100)) return 2;
        snprintf(cmd, sizeof cmd, "\"%s\" --threads %d --reps %d --size %d%s%s", argv[0], threads, reps, sizes[i],
                 arch ? " --arch " : "", arch ? arch : "");
        if (system(cmd) != 0) return 1;
        fflush(stdout);
    }
    return 0;
}
