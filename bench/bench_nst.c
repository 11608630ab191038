/* One style-transfer iteration through the public objective API: VGG-19 forward to relu5_1 (random
 * normalised model), content + style + TV losses, backward to the pixels; time per evaluation and the
 * process's peak resident memory (VmHWM) at 256, 512 and 1024 px.
 *
 *   build/bench_nst [--threads N] [--reps N] [--size N] [--arch scalar|avx2|avx512|neon] [--profile [--cpu]]
 *                   [--model random|trained|FILE] [--lbfgs [--history M] [--f32] [--two-loop]]
 * --arch (or $NST_ARCH) picks the kernel path (GEMM, convolution, pooling); the last column names it.
 * Without --size it runs itself once per size (so each peak-memory figure is that size's alone).
 * --profile (default size 512): time per phase and layer, summed over the reps (after a warm-up),
 *   through the library's profiling hook (nst__net.prof). With --cpu the hook reads the calling thread's
 *   CPU time instead of the wall clock: with --threads 1 on a shared, overloaded machine that is the
 *   figure an idle machine would show (only that thread's work is counted, so not for --threads > 1).
 * --model: "random" (the default) is the random model as the CLI's --weights random runs it (reflection
 *   padding, average pooling); "trained" runs the same weights the way a trained VGG-19 file runs (zero
 *   padding, max pooling, jcjohnson's TV), which skips the random model's border fix-up of every backward
 *   convolution (bench_reflect: +4-8% per evaluation): the like-for-like figure against PyTorch with
 *   bench/torch_vgg.py --pool max; FILE loads a model file (real VGG-19 weights, see weights/).
 * --lbfgs (default size 512): the L-BFGS step alone (the vector-free recursion over a full history of M
 *   pairs, bf16 unless --f32, plus the vector updates), on a cheap quadratic whose own time is subtracted.
 *   --two-loop: the reference recursion instead (one pass per history vector per loop). */
#define NST_IMPLEMENTATION
#include "nst.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "bench_clock.h"



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

static const char *model_spec = "random";

/* The model --model names (see the top of the file). */
static nst_status load_model(nst_model **m) {
    nst_status st;
    if (strcmp(model_spec, "random") && strcmp(model_spec, "trained")) return nst_model_load(model_spec, m);
    st = nst_model_random(1, m);
    if (st == NST_OK && !strcmp(model_spec, "trained")) {   /* what loading a trained file sets (>>vgg, nstw) */
        (*m)->is_random = 0;
        (*m)->reflect = 0;
        (*m)->pool = NST_POOL_MAX;
    }
    return st;
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
    if (load_model(&m) || make_image(&content, size, 2) || make_image(&style, size, 3)) goto fail;
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
        double t0 = nst__now(), c0 = bench_cpu_seconds(), dt, dc;
        if (nst_objective_eval(obj, x, &l, g)) goto fail;
        dt = nst__now() - t0;
        dc = (bench_cpu_seconds() - c0) / threads;
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

static void prof_row(const char *name, const double *t, double *sum, int reps) {
    int j;
    printf("%-10s", name);
    for (j = 0; j < 4; j++) {
        if (t[j] > 0) printf(" %9.2f", 1e3 * t[j] / reps);
        else printf(" %9s", "");
        sum[j] += t[j];
    }
    printf("\n");
}

static int run_profile(int size, int threads, int reps, int cpu) {
    nst_model *m = NULL;
    nst_image content, style;
    nst_options o;
    nst_objective *obj = NULL;
    nst_losses l;
    float *x = NULL, *g = NULL;
    double prof[NST__PROF_SLOTS], total = 0, conv = 0, other = 0, sum[4] = {0, 0, 0, 0}, t0;
    size_t i, n = (size_t)3 * size * size;
    int r, rc = 1, layer;
    content.pixels = style.pixels = NULL;
    if (load_model(&m) || make_image(&content, size, 2) || make_image(&style, size, 3)) goto fail;
    nst_options_init(&o);
    o.threads = threads;
    o.image_size = size;
    if (nst_objective_create(m, &content, &style, NULL, 1, &o, &obj)) goto fail;
    x = (float *)nst__malloc(sizeof(float) * n);
    g = (float *)nst__malloc(sizeof(float) * n);
    if (!x || !g) goto fail;
    for (i = 0; i < n; i++) x[i] = (float)((i * 2654435761u) % 256);
    if (nst_objective_eval(obj, x, &l, g)) goto fail;   /* warm-up */
    memset(prof, 0, sizeof prof);
    obj->net.prof = prof;
    if (cpu) obj->net.prof_clock = bench_thread_seconds;
    t0 = cpu ? bench_thread_seconds() : nst__now();
    for (r = 0; r < reps; r++)
        if (nst_objective_eval(obj, x, &l, g)) goto fail;
    total = (cpu ? bench_thread_seconds() : nst__now()) - t0;
    obj->net.prof = NULL;
    printf("bench_nst --profile: %dx%d, %d threads, %s, ms per evaluation (mean of %d), %s\n", size, size, threads,
           nst_cpu_string(), reps, cpu ? "CPU time of the calling thread" : "wall time");
    printf("%-10s %9s %9s %9s %9s\n", "layer", "forward", "backward", "lossgrad", "gram+loss");
    for (layer = 0; layer <= obj->net.last; layer++) {
        double t[4];
        t[0] = prof[NST__PROF_FWD + layer]; t[1] = prof[NST__PROF_BWD + layer];
        t[2] = prof[NST__PROF_LOSSGRAD + layer]; t[3] = prof[NST__PROF_GRAM + layer];
        prof_row(nst_layer_name(layer), t, sum, reps);
        if (nst__layer_type(layer) == NST__L_CONV) conv += t[0] + t[1];
        else other += t[0] + t[1];
        other += t[2] + t[3];
    }
    printf("%-10s %9.2f %9.2f %9.2f %9.2f\n", "sum", 1e3 * sum[0] / reps, 1e3 * sum[1] / reps, 1e3 * sum[2] / reps,
           1e3 * sum[3] / reps);
    printf("preprocess %9.2f   content loss %7.2f   tv %7.2f   pixel grad %7.2f\n", 1e3 * prof[NST__PROF_PRE] / reps,
           1e3 * prof[NST__PROF_CONTENT] / reps, 1e3 * prof[NST__PROF_TV] / reps, 1e3 * prof[NST__PROF_PIXGRAD] / reps);
    other += prof[NST__PROF_PRE] + prof[NST__PROF_CONTENT] + prof[NST__PROF_TV] + prof[NST__PROF_PIXGRAD];
    if (prof[NST__PROF_RECOMPUTE] > 0)
        printf("recompute  %9.2f   (backward makes relu1_1 again: conv1_1 forward, counted as a convolution)\n",
               1e3 * prof[NST__PROF_RECOMPUTE] / reps);
    conv += prof[NST__PROF_RECOMPUTE];
    printf("evaluation %9.2f ms: convolutions %.2f, everything else %.2f (%.1f%%), unaccounted %.2f\n",
           1e3 * total / reps, 1e3 * conv / reps, 1e3 * other / reps, 100.0 * other / total,
           1e3 * (total - conv - other) / reps);
    {   /* where the memory goes (MiB): what the model, the network and the objective hold */
        const nst__net *nn = &obj->net;
        double filt = 0, feat = 0, inside = 0, rec = 0, targets = 0, mib = 1.0 / (1 << 20);
        int d;
        for (i = 0; i < (size_t)m->nconv; i++)
            for (d = 0; d < 2; d++) {
                const nst__conv_dir *dd = &m->plan[i]->dir[d];
                if (!dd->u) continue;
                filt += dd->algo == NST__CONV_WINO ? 36.0 * ((dd->kout + 5) / 6) * 6 * dd->kin * 4
                                                   : 9.0 * ((dd->kout + 5) / 6) * 6 * dd->kin * 4;
            }
        for (layer = 0; layer <= nn->last; layer++) {
            size_t el = (size_t)nn->c_[layer] * nn->h_[layer] * nn->w_[layer];
            if (nn->feat[layer] && !nn->placed[layer]) feat += (double)el * 4;
            else if (nn->feat[layer]) inside += (double)el * 4;
            if (nn->rec[layer]) rec += nst__layer_type(layer) == NST__L_RELU ? (double)(el + 7) / 8 : (double)el;
        }
        for (layer = 0; layer < obj->ncontent; layer++) {
            int cl = obj->content_layer[layer];
            targets += 4.0 * nn->c_[cl] * nn->h_[cl] * nn->w_[cl];
        }
        for (layer = 0; layer < obj->nstyle; layer++) targets += 8.0 * obj->style[layer].c * obj->style[layer].c;
        printf("memory MiB: weights %.1f, transformed filters %.1f (conv plans), ping-pong buffers %.1f (holding %.1f of "
               "kept features), kept features outside them %.1f, masks %.1f, conv workspace outside them %.1f, loss "
               "targets and Grams %.1f\n", m->block_bytes * mib, filt * mib, 2.0 * nn->buf_elems * 4 * mib, inside * mib,
               feat * mib, rec * mib, nn->ws_bytes * mib, targets * mib);
    }
    rc = 0;
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

/* The L-BFGS step on f(x) = 1/2 sum a_i x_i^2 (a_i from 1e-4 to 1, so it does not converge within the
 * run): every pair is kept, so after M iterations each step runs the two loops over all M pairs. The
 * step time is the time between two iterations minus the function's own time. */
typedef struct {
    const float *a;
    size_t n;
    double t_fg, t_last, t_steps, fg_at_last, c_fg, c_last, c_steps, cfg_at_last;
    int iters, from;
} quad_ctx;
static nst_status quad_fg(const float *x, float *g, double *f, void *user) {
    quad_ctx *q = (quad_ctx *)user;
    double t0 = nst__now(), c0 = bench_thread_seconds(), s = 0;
    size_t i;
    for (i = 0; i < q->n; i++) { g[i] = q->a[i] * x[i]; s += 0.5 * (double)g[i] * x[i]; }
    *f = s;
    q->t_fg += nst__now() - t0;
    q->c_fg += bench_thread_seconds() - c0;
    return NST_OK;
}
static int quad_iter(int iter, double f, const float *x, void *user) {
    quad_ctx *q = (quad_ctx *)user;
    double t = nst__now(), c = bench_cpu_seconds();
    (void)f; (void)x;
    if (iter > q->from) {
        q->t_steps += (t - q->t_last) - (q->t_fg - q->fg_at_last);
        q->c_steps += (c - q->c_last) - (q->c_fg - q->cfg_at_last);
        q->iters++;
    }
    q->t_last = t;
    q->fg_at_last = q->t_fg;
    q->c_last = c;
    q->cfg_at_last = q->c_fg;
    return 0;
}

static int run_lbfgs(int size, int threads, int reps, int history, int f32, int two_loop) {
    size_t n = (size_t)3 * size * size, i;
    float *x = (float *)nst__malloc(sizeof(float) * n), *a = (float *)nst__malloc(sizeof(float) * n);
    nst_lbfgs_options lo;
    quad_ctx q;
    nst__rng r;
    double fv;
    int rc = 1;
    if (!x || !a) goto fail;
    r.s = 7;
    for (i = 0; i < n; i++) {
        a[i] = (float)pow(10.0, -4.0 * nst__rng_uniform(&r));
        x[i] = (float)(2.0 * nst__rng_uniform(&r) - 1.0);
    }
    memset(&q, 0, sizeof q);
    q.a = a; q.n = n; q.from = history + 1;
    nst_lbfgs_options_init(&lo);
    lo.history = history;
    lo.history_bf16 = !f32;
    lo.max_iter = history + 2 + reps;
    lo.tol_fun = lo.tol_x = -1;
    lo.threads = threads;
    lo.on_iter = quad_iter;
    lo.user = &q;
    q.t_last = nst__now();
    q.c_last = bench_cpu_seconds();
    if (nst__lbfgs(x, n, quad_fg, &q, &lo, &fv, NULL, two_loop)) goto fail;
    printf("bench_nst --lbfgs%s: n = %lu (%dx%d RGB), history %d (%s), %d threads, %s: %.2f ms per step, "
           "process CPU %.2f ms per step (mean of %d steps with a full history; f = %.9g)\n", two_loop ? " --two-loop" : "", (unsigned long)n, size,
           size, history, f32 ? "f32" : "bf16", threads, nst_cpu_string(), 1e3 * q.t_steps / (q.iters ? q.iters : 1),
           1e3 * q.c_steps / (q.iters ? q.iters : 1), q.iters, fv);
    rc = 0;
fail:
    if (rc) fprintf(stderr, "bench_nst: %s\n", nst_last_error());
    nst__free(x);
    nst__free(a);
    return rc;
}

int main(int argc, char **argv) {
    int threads = 2, reps = 3, size = 0, i, profile = 0, lbfgs = 0, history = 100, f32 = 0, cpu = 0, two_loop = 0;
    const char *arch = NULL;
    static const int sizes[] = { 256, 512, 1024 };
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc) size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--arch") && i + 1 < argc) arch = argv[++i];
        else if (!strcmp(argv[i], "--history") && i + 1 < argc) history = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--profile")) profile = 1;
        else if (!strcmp(argv[i], "--lbfgs")) lbfgs = 1;
        else if (!strcmp(argv[i], "--f32")) f32 = 1;
        else if (!strcmp(argv[i], "--two-loop")) two_loop = 1;
        else if (!strcmp(argv[i], "--cpu")) cpu = 1;
        else if (!strcmp(argv[i], "--model") && i + 1 < argc) model_spec = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--threads N] [--reps N] [--size N] [--arch scalar|avx2|avx512|neon] "
                    "[--profile [--cpu]] [--model random|trained|FILE] [--lbfgs [--history M] [--f32] [--two-loop]]\n", argv[0]);
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
    if (threads < 1 || reps < 1 || size < 0 || history < 1) return 2;
    if (profile) return run_profile(size ? size : 512, threads, reps, cpu);
    if (lbfgs) return run_lbfgs(size ? size : 512, threads, reps, history, f32, two_loop);
    if (size) return run_size(size, threads, reps);
    printf("bench_nst: one iteration = VGG-19 forward to relu5_1 + content/style/TV losses + backward to the pixels\n"
           "(model %s, best of %d after a warm-up; GF/s = 377 GFLOP direct-conv at 512 px, scaled;\n"
           " cpu/thr = process CPU time / threads; model MiB = peak before the objective is built)\n",
           model_spec, reps);
    printf("%6s %7s %10s %9s %10s %12s %12s %10s  %s\n", "size", "threads", "s/iter", "GF/s", "cpu/thr s", "peak MiB",
           "model MiB", "loss", "path");
    fflush(stdout);
    for (i = 0; i < 3; i++) {
        char cmd[4096];
        if (strlen(argv[0]) > 3000 || (arch && strlen(arch) > 100) || strlen(model_spec) > 800 ||
            strchr(model_spec, '"'))
            return 2;
        snprintf(cmd, sizeof cmd, "\"%s\" --threads %d --reps %d --size %d --model \"%s\"%s%s", argv[0], threads, reps,
                 sizes[i], model_spec, arch ? " --arch " : "", arch ? arch : "");
        if (system(cmd) != 0) return 1;
        fflush(stdout);
    }
    return 0;
}
