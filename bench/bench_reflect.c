/* Cost of the random model's reflection padding, per conv layer against the layer's own convolution
 * (forward + backward-data), at one image size: the fix (nst__reflect_fix_forward + _backward: the
 * outside taps, before a separate ReLU pass), and for the forward the choice nst.h makes per layer,
 * "fix + ReLU pass" against "border" (nst__reflect_border_forward: all 9 taps of the border pixels, so
 * the engine's ReLU can be fused), with the rule's pick marked *. Then one whole objective evaluation
 * (VGG-19 to relu5_1, forward + backward) with reflection and zero padding.
 *
 *   build/bench_reflect [--size N] [--threads N] [--reps N]      (defaults 256, 1, 3)
 * Times are the best of --reps, in CPU seconds of the process (robust on a shared machine with 1 thread). */
#define NST_IMPLEMENTATION
#include "nst.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_seconds(void) {
#if defined(CLOCK_PROCESS_CPUTIME_ID)
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
#else
    return (double)clock() / CLOCKS_PER_SEC;
#endif
}

int main(int argc, char **argv) {
    int size = 256, threads = 1, reps = 3, i, r, ci, h, w;
    nst_model *m = NULL;
    nst_image content, style;
    nst_options o;
    nst_objective *obj = NULL;
    float *x, *g, *a, *b, *pad;
    double conv_total = 0, fix_total = 0, eval[2];
    size_t n;
    for (i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--size")) size = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
    }
    if (size < 32 || reps < 1) { fprintf(stderr, "usage: bench_reflect [--size N>=32] [--threads N] [--reps N]\n"); return 2; }
    if (nst_model_random(1, &m) != NST_OK) { fprintf(stderr, "%s\n", nst_last_error()); return 1; }
    printf("reflection padding of the random model, %dx%d, %d thread(s), cpu: %s\n", size, size, threads,
           nst_cpu_string());
    printf("%-8s %6s %10s %10s %7s | %14s %10s\n", "layer", "side", "conv ms", "fix ms", "fix %", "fwd: fix+relu",
           "border");
    /* per layer, at the sizes VGG-19 sees: conv forward + backward-data vs the two border fixes */
    n = (size_t)512 * size * size;
    a = (float *)nst__aligned_alloc(n * sizeof(float));
    b = (float *)nst__aligned_alloc(n * sizeof(float));
    pad = (float *)nst__aligned_alloc(nst__reflect_scratch_floats(512, 512, size, size) * sizeof(float));
    for (i = 0; i < (int)n; i++) a[i] = (float)((i * 2654435761u) % 1000) * 1e-3f;
    for (ci = 0, h = w = size; ci < 13; ci++) {
        double bc = 1e30, bf = 1e30, bfr = 1e30, bb = 1e30;
        unsigned char *bits = (unsigned char *)malloc((size_t)m->cout[ci] * h * w / 8 + 1);
        int pick;
        if (ci == 2 || ci == 4 || ci == 8 || ci == 12) { h /= 2; w /= 2; }
        for (r = 0; r < reps; r++) {
            double t0 = cpu_seconds(), t1, t2;
            nst__conv_forward(m->plan[ci], a, b, h, w, 0, threads, NULL);
            nst__conv_backward_data(m->plan[ci], b, a, h, w, threads, NULL);
            t1 = cpu_seconds();
            nst__reflect_fix_forward(m, ci, a, b, h, w, threads, pad);
            nst__reflect_fix_backward(m, ci, b, a, h, w, threads, pad);
            t2 = cpu_seconds();
            for (i = 0; i < (int)n; i++) a[i] = (float)((i * 2654435761u) % 1000) * 1e-3f;   /* keep values sane */
            if (t1 - t0 < bc) bc = t1 - t0;
            if (t2 - t1 < bf) bf = t2 - t1;
            /* forward only: the unfused way's extra work vs the fused way's */
            t0 = cpu_seconds();
            nst__reflect_fix_forward(m, ci, a, b, h, w, threads, pad);
            nst__relu_forward(b, b, bits, (size_t)m->cout[ci] * h * w, threads);
            t1 = cpu_seconds();
            nst__reflect_border_forward(m, ci, a, b, h, w, 1, threads, pad);
            t2 = cpu_seconds();
            if (t1 - t0 < bfr) bfr = t1 - t0;
            if (t2 - t1 < bb) bb = t2 - t1;
        }
        conv_total += bc;
        fix_total += bf;
        pick = nst__reflect_border_pays(m->cin[ci], h, w);
        printf("%-8s %6d %10.2f %10.2f %6.2f%% | %13.2f%s %9.2f%s\n", nst__conv_names[ci], h, 1e3 * bc, 1e3 * bf,
               100 * bf / bc, 1e3 * bfr, pick ? " " : "*", 1e3 * bb, pick ? "*" : " ");
        free(bits);
    }
    printf("%-8s %6s %10.2f %10.2f %6.2f%%\n", "total", "", 1e3 * conv_total, 1e3 * fix_total,
           100 * fix_total / conv_total);
    nst__aligned_free(a); nst__aligned_free(b); nst__aligned_free(pad);
    /* one objective evaluation, reflection (the random model's default) vs zero padding */
    nst_image_alloc(&content, size, size, 3);
    nst_image_alloc(&style, size, size, 3);
    for (i = 0; i < size * size * 3; i++) {
        content.pixels[i] = (float)((i * 7919) % 256) / 255.0f;
        style.pixels[i] = (float)((i * 104729) % 256) / 255.0f;
    }
    nst_options_init(&o);
    o.threads = threads;
    n = (size_t)3 * size * size;
    x = (float *)malloc(n * sizeof(float));
    g = (float *)malloc(n * sizeof(float));
    for (i = 0; i < (int)n; i++) x[i] = (float)((i * 31) % 255);
    for (ci = 0; ci < 2; ci++) {
        m->reflect = ci == 0;
        eval[ci] = 1e30;
        if (nst_objective_create(m, &content, &style, NULL, 1, &o, &obj) != NST_OK) { fprintf(stderr, "%s\n", nst_last_error()); return 1; }
        for (r = 0; r < reps; r++) {
            double t0 = cpu_seconds();
            nst_objective_eval(obj, x, NULL, g);
            if (cpu_seconds() - t0 < eval[ci]) eval[ci] = cpu_seconds() - t0;
        }
        nst_objective_free(obj);
    }
    printf("objective eval (forward + backward): reflection %.3f s, zero padding %.3f s: %+.1f%%\n", eval[0], eval[1],
           100 * (eval[0] / eval[1] - 1));
    free(x); free(g);
    nst_image_free(&content); nst_image_free(&style);
    nst_model_free(m);
    return 0;
}
