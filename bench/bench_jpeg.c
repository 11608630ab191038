/* JPEG decode/encode speed on a ~12-megapixel photo, next to libjpeg-turbo's djpeg/cjpeg measured in the
 * same run. The test photo is made at run time (never committed): ../shared/images/content/tubingen.jpg
 * upscaled to 4000x3000 by ImageMagick and saved at quality 90, 4:2:0 (or, without ImageMagick, a
 * synthetic image encoded by our own encoder). Every time is the best of --reps runs (wall clock).
 * MB/s counts the JPEG file's bytes; MP/s the pixels. djpeg/cjpeg run as processes writing to /dev/null
 * (their time includes process start-up, ~1 ms) and read/write PPM, while we decode to float.
 * Two columns: wall clock, and CPU time (ours from clock(), theirs from getrusage(RUSAGE_CHILDREN)),
 * which stays meaningful when other jobs load the machine; MB/s and MP/s use the CPU time for one
 * thread. A 12 MP float image is 144 MB: allocating it (zeroed, page-faulted) is listed on its own.
 *
 *   build/bench_jpeg [--reps N] [--file photo.jpg]      (run from the repository root) */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#define NST_IMPLEMENTATION
#include "nst.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if !defined(_WIN32)
#include <sys/resource.h>
#define HAVE_RUSAGE 1
#endif
#include <time.h>

#define BENCH_JPG "/tmp/nst_bench_jpeg_12mp.jpg"
#define BENCH_PPM "/tmp/nst_bench_jpeg_12mp.ppm"

static double child_cpu(void) {
#ifdef HAVE_RUSAGE
    struct rusage u;
    getrusage(RUSAGE_CHILDREN, &u);
    return (double)u.ru_utime.tv_sec + (double)u.ru_stime.tv_sec + 1e-6 * (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
#else
    return -1;
#endif
}
static double cpu_now(void) { return (double)clock() / CLOCKS_PER_SEC; }
typedef struct { double wall, cpu; } timing;
static void keep_best(timing *b, double wall, double cpu) {
    if (wall < b->wall) b->wall = wall;
    if (cpu < b->cpu) b->cpu = cpu;
}
static timing time_cmd(const char *cmd, int reps) {
    timing best = {1e30, 1e30};
    int r;
    for (r = 0; r < reps; r++) {
        double t0 = nst__now(), c0 = child_cpu();
        if (system(cmd) != 0) { best.wall = -1; return best; }
        keep_best(&best, nst__now() - t0, child_cpu() - c0);
    }
    return best;
}
static void row(const char *label, timing t, double mb, double mp) {
    double base = t.cpu > 0 && t.cpu < 1e29 ? t.cpu : t.wall;
    printf("%-40s %9.1f %9.1f %9.1f %9.1f\n", label, t.wall * 1e3, t.cpu * 1e3, mb > 0 ? mb / base : 0.0, mp / base);
}

static int make_photo(const char *path) {
    nst_image im;
    nst__buf b;
    int x, y, ok;
    if (system("command -v convert >/dev/null 2>&1") == 0 &&
        system("convert ../shared/images/content/tubingen.jpg -resize 4000x3000! -quality 90 "
               "-sampling-factor 2x2 " BENCH_JPG " 2>/dev/null") == 0)
        return 1;
    /* fallback: smooth gradients + texture, encoded by us */
    if (nst_image_alloc(&im, 4000, 3000, 3) != NST_OK) return 0;
    for (y = 0; y < 3000; y++)
        for (x = 0; x < 4000; x++) {
            float *p = im.pixels + ((size_t)y * 4000 + x) * 3;
            float t = (float)(0.5 + 0.25 * sin(x * 0.013) * cos(y * 0.007) + 0.1 * sin((x ^ y) * 0.3));
            p[0] = t; p[1] = (float)(0.3 + 0.4 * y / 3000.0); p[2] = (float)(1.0 - t * 0.8);
        }
    memset(&b, 0, sizeof b);
    ok = nst__jpeg_encode(&im, 90, 1, &b) == NST_OK && nst__write_file_atomic(path, b.data, b.len) == NST_OK;
    nst__buf_free(&b);
    nst_image_free(&im);
    return ok;
}

int main(int argc, char **argv) {
    int reps = 5, i, r, have_djpeg, have_cjpeg, threads[2], nt, iw, ih, ic;
    const char *file = NULL;
    unsigned char *data;
    size_t n;
    nst_image im;
    double mp;
    timing tdec[2] = {{1e30, 1e30}, {1e30, 1e30}}, tenc[2] = {{1e30, 1e30}, {1e30, 1e30}}, tdj = {-1, -1},
           tcj = {-1, -1}, talloc = {1e30, 1e30};
    size_t enc_bytes[2] = {0, 0};
    char cmd[512];
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--file") && i + 1 < argc) file = argv[++i];
        else { fprintf(stderr, "usage: %s [--reps N] [--file photo.jpg]\n", argv[0]); return 2; }
    }
    if (reps < 1) reps = 1;
    if (!file) {
        if (!make_photo(BENCH_JPG)) { fprintf(stderr, "cannot make the test photo\n"); return 1; }
        file = BENCH_JPG;
    }
    if (nst__read_file(file, (size_t)1 << 30, &data, &n) != NST_OK) { fprintf(stderr, "%s\n", nst_last_error()); return 1; }
    if (nst__jpeg_decode(data, n, &im) != NST_OK) { fprintf(stderr, "%s\n", nst_last_error()); return 1; }
    mp = (double)im.width * im.height / 1e6;
    iw = im.width; ih = im.height; ic = im.channels;
    printf("JPEG %s: %dx%d (%.1f MP), %.2f MB, best of %d\n", file, im.width, im.height, mp, n / 1e6, reps);
    nst_image_free(&im);
    threads[0] = 1;   /* the codec runs on one thread (threads[1] is kept for a future parallel path) */
    threads[1] = nst__resolve_threads(0);
    nt = 1;
    for (i = 0; i < nt; i++) {
        nst_set_threads(threads[i]);
        for (r = 0; r < reps; r++) {
            nst__buf b;
            double t0 = nst__now(), c0 = cpu_now();
            if (nst__jpeg_decode(data, n, &im) != NST_OK) { fprintf(stderr, "%s\n", nst_last_error()); return 1; }
            keep_best(&tdec[i], nst__now() - t0, cpu_now() - c0);
            memset(&b, 0, sizeof b);
            t0 = nst__now(); c0 = cpu_now();
            if (nst__jpeg_encode(&im, 90, 1, &b) != NST_OK) { fprintf(stderr, "%s\n", nst_last_error()); return 1; }
            keep_best(&tenc[i], nst__now() - t0, cpu_now() - c0);
            enc_bytes[i] = b.len;
            nst__buf_free(&b);
            nst_image_free(&im);
        }
    }
    nst_set_threads(0);
    for (r = 0; r < reps; r++) {   /* the part of a decode that is just getting 144 MB of fresh floats */
        nst_image x;
        double t0 = nst__now(), c0 = cpu_now();
        if (nst_image_alloc(&x, iw, ih, ic) != NST_OK) break;
        keep_best(&talloc, nst__now() - t0, cpu_now() - c0);
        nst_image_free(&x);
    }
    have_djpeg = system("command -v djpeg >/dev/null 2>&1") == 0;
    have_cjpeg = system("command -v cjpeg >/dev/null 2>&1") == 0;
    if (have_djpeg) {
        snprintf(cmd, sizeof cmd, "djpeg -dct int -outfile /dev/null %s", file);
        tdj = time_cmd(cmd, reps);
        if (have_cjpeg) {
            snprintf(cmd, sizeof cmd, "djpeg -dct int -outfile " BENCH_PPM " %s", file);
            if (system(cmd) == 0) tcj = time_cmd("cjpeg -quality 90 -outfile /dev/null " BENCH_PPM, reps);
            remove(BENCH_PPM);
        }
    }
    printf("%-40s %9s %9s %9s %9s\n", "", "wall ms", "cpu ms", "MB/s", "MP/s");
    for (i = 0; i < nt; i++) {
        char label[64];
        snprintf(label, sizeof label, "nst decode (%d thread%s)", threads[i], threads[i] > 1 ? "s" : "");
        row(label, tdec[i], n / 1e6, mp);
    }
    row("  of which nst_image_alloc(float output)", talloc, 0, mp);
    if (tdj.wall > 0) row("djpeg -dct int (libjpeg-turbo, SIMD)", tdj, n / 1e6, mp);
    for (i = 0; i < nt; i++) {
        char label[64];
        snprintf(label, sizeof label, "nst encode q90 4:2:0 (%d thread%s)", threads[i], threads[i] > 1 ? "s" : "");
        row(label, tenc[i], enc_bytes[i] / 1e6, mp);
    }
    if (tcj.wall > 0) row("cjpeg -quality 90 (from PPM)", tcj, 0, mp);
    if (tdj.wall > 0) printf("cpu-time ratio decode nst(1 thread)/djpeg: %.2f (%.2f without the output allocation)\n",
                             tdec[0].cpu / tdj.cpu, (tdec[0].cpu - talloc.cpu) / tdj.cpu);
    if (tcj.wall > 0) printf("cpu-time ratio encode nst(1 thread)/cjpeg: %.2f; our file %.2f MB\n", tenc[0].cpu / tcj.cpu,
                             enc_bytes[0] / 1e6);
    nst__free(data);
    return 0;
}
