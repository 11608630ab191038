/* Cost of the random model's reflection padding, per conv layer against the layer's own convolution
 * with zero padding, at one image size. Forward: the padded convolution as nst__net_forward runs it
 * (ReLU fused) against the zero-padded one (ReLU fused): on the Winograd layers the engine pads itself
 * (nst__conv_forward_pad), on conv1_1 (direct) the zero-padded convolution plus the border correction
 * the rule picks ("border": nst__reflect_border_forward, ReLU fused; "fix": nst__reflect_fix_forward and a
 * separate ReLU pass). Backward: nst__reflect_fix_backward (the outside taps' side GEMMs) after the
 * zero-padded backward-data. "pad %" is the padded layer's extra time over the zero-padded forward +
 * backward. Then one whole objective evaluation (VGG-19 to relu5_1, forward + backward) with reflection
 * and zero padding.
 *
 *   build/bench_reflect [--size N] [--threads N] [--reps N] [--evals N]      (defaults 256, 1, 3, 5)
 * Times are the best of --reps (layers) or of --evals pairs (evaluations), in CPU seconds of the process
 * (robust on a shared machine with 1 thread; with more, a thread waiting at a barrier for a descheduled
 * one spins and counts); "fix wall" is the backward fix's best wall time, what --threads 2 is about. */
#define NST_IMPLEMENTATION
#include "nst.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "bench_clock.h"


int main(int argc, char **argv) {
    int size = 256, threads = 1, reps = 3, evals = 5, i, r, ci, h, w;
    nst_model *m = NULL;
    nst_image content, style;
    nst_options o;
    nst_objective *obj = NULL;
    float *x, *g, *a, *b, *pad;
    double conv_total = 0, fix_total = 0, wall_total = 0, eval[2], ratio[64] = {0};
    size_t n;
    for (i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--size")) size = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--evals")) evals = atoi(argv[i + 1]);
    }
    if (size < 32 || reps < 1 || evals < 1 || evals > 64) {
        fprintf(stderr, "usage: bench_reflect [--size N>=32] [--threads N] [--reps N] [--evals 1..64]\n");
        return 2;
    }
    if (nst_model_random(1, &m) != NST_OK) { fprintf(stderr, "%s\n", nst_last_error()); return 1; }
    printf("reflection padding of the random model, %dx%d, %d thread(s), cpu: %s\n", size, size, threads,
           nst_cpu_string());
    printf("%-8s %6s %10s %16s %10s %10s %7s %9s\n", "layer", "side", "fwd zero", "fwd padded", "bwd zero", "bwd fix",
           "pad %", "fix wall");
    /* per layer, at the sizes VGG-19 sees */
    n = (size_t)512 * size * size;
    a = (float *)nst__aligned_alloc(n * sizeof(float));
    b = (float *)nst__aligned_alloc(n * sizeof(float));
    pad = (float *)nst__aligned_alloc(nst__reflect_scratch_floats(512, 512, size, size, threads) * sizeof(float));
    for (i = 0; i < (int)n; i++) a[i] = (float)((i * 2654435761u) % 1000) * 1e-3f;
    for (ci = 0, h = w = size; ci < 13; ci++) {
        double t[4] = {1e30, 1e30, 1e30, 1e30}, extra, fw = 1e30;
        unsigned char *bits = (unsigned char *)malloc((size_t)m->cout[ci] * h * w / 8 + 1);
        const nst__conv_plan *p = m->plan[ci];
        const char *how;
        if (ci == 2 || ci == 4 || ci == 8 || ci == 12) { h /= 2; w /= 2; }
        how = nst__conv_forward_pads(p) ? "engine" : nst__reflect_border_pays(m->cin[ci], h, w) ? "border" : "fix";
        for (r = 0; r < reps; r++) {
            double c[5], w0;
            c[0] = bench_cpu_seconds();
            nst__conv_forward(p, a, b, h, w, 1, threads, NULL);
            c[1] = bench_cpu_seconds();
            if (nst__conv_forward_pads(p)) {
                nst__conv_forward_pad(p, a, b, h, w, 1, NST__CONV_PAD_BLEND, threads, NULL);
            } else if (nst__reflect_border_pays(m->cin[ci], h, w)) {
                nst__conv_forward(p, a, b, h, w, 1, threads, NULL);
                nst__reflect_border_forward(m, ci, a, b, h, w, 1, threads, pad);
            } else {
                nst__conv_forward(p, a, b, h, w, 0, threads, NULL);
                nst__reflect_fix_forward(m, ci, a, b, h, w, threads, pad);
                nst__relu_forward(b, b, bits, (size_t)m->cout[ci] * h * w, threads);
            }
            c[2] = bench_cpu_seconds();
            nst__conv_backward_data(p, b, a, h, w, threads, NULL);
            c[3] = bench_cpu_seconds();
            w0 = nst__now();   /* the library's wall clock */
            nst__reflect_fix_backward(m, ci, b, a, h, w, threads, pad);
            c[4] = bench_cpu_seconds();
            w0 = nst__now() - w0;
            if (w0 < fw) fw = w0;
            for (i = 0; i < (int)n; i++) a[i] = (float)((i * 2654435761u) % 1000) * 1e-3f;   /* keep values sane */
            for (i = 0; i < 4; i++) if (c[i + 1] - c[i] < t[i]) t[i] = c[i + 1] - c[i];
        }
        extra = t[1] - t[0] + t[3];
        conv_total += t[0] + t[2];
        fix_total += extra;
        wall_total += fw;
        printf("%-8s %6d %10.2f %9.2f %-6s %10.2f %10.2f %6.2f%% %9.2f\n", nst__conv_names[ci], h, 1e3 * t[0], 1e3 * t[1],
               how, 1e3 * t[2], 1e3 * t[3], 100 * extra / (t[0] + t[2]), 1e3 * fw);
        free(bits);
    }
    printf("%-8s %6s %10s %16s %10s %10s %6.2f%% %9.2f   (zero padding %.2f ms, padding adds %.2f ms)\n", "total", "",
           "", "", "", "", 100 * fix_total / conv_total, 1e3 * wall_total, 1e3 * conv_total, 1e3 * fix_total);
    nst__aligned_free(a); nst__aligned_free(b); nst__aligned_free(pad);
    /* one objective evaluation, reflection (the random model's default) vs zero padding, alternated
     * evaluation by evaluation on one objective (m->reflect is read per call; the targets stay the
     * reflected ones, which changes no work) so that a shared machine's changing load hits both alike */
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
    if (nst_objective_create(m, &content, &style, NULL, 1, &o, &obj) != NST_OK) { fprintf(stderr, "%s\n", nst_last_error()); return 1; }
    nst_objective_eval(obj, x, NULL, g);   /* warm-up */
    eval[0] = eval[1] = 1e30;
    for (r = 0; r < evals; r++) {
        double t[2];
        for (ci = 0; ci < 2; ci++) {
            int refl = (ci + r) & 1;   /* which goes first alternates */
            double t0 = bench_cpu_seconds();
            m->reflect = refl;
            nst_objective_eval(obj, x, NULL, g);
            t[refl ? 0 : 1] = bench_cpu_seconds() - t0;
        }
        m->reflect = 1;
        for (ci = 0; ci < 2; ci++) if (t[ci] < eval[ci]) eval[ci] = t[ci];
        ratio[r] = t[0] / t[1];
    }
    nst_objective_free(obj);
    for (i = 1; i < r; i++) {   /* insertion sort for the median */
        double v = ratio[i];
        int j = i;
        while (j > 0 && ratio[j - 1] > v) { ratio[j] = ratio[j - 1]; j--; }
        ratio[j] = v;
    }
    printf("objective eval (forward + backward), %d alternated pairs: reflection %.3f s, zero padding %.3f s (best): "
           "%+.1f%%; median of the pairs' ratios %+.1f%%\n", r, eval[0], eval[1], 100 * (eval[0] / eval[1] - 1),
           100 * ((r & 1 ? ratio[r / 2] : 0.5 * (ratio[r / 2 - 1] + ratio[r / 2])) - 1));
    free(x); free(g);
    nst_image_free(&content); nst_image_free(&style);
    nst_model_free(m);
    return 0;
}
