/* Tiling overhead: time per evaluation (loss and gradient, VGG-19 to relu5_1, random model) of the
 * whole image against the tiled objective, with the deep layers' filters transformed per tile
 * (tile_keep_filters 0) and kept (1).
 *
 *   build/bench_tiling [--size N] [--tile T | --memory-limit MB [--adam] [--plan]] [--reps N] [--threads N]
 *                      [--no-kept] [--no-whole]
 *
 * Defaults: --size 1024 --tile 384 --reps 2 --threads 1. With --memory-limit the tile is the one
 * nst_transfer_plan picks for a --size run under that limit (as the CLI would, with L-BFGS or with
 * --adam; --plan: only print it). The image is size x 3/4 size (content and style alike, smooth random). Times are the calling thread's CPU time
 * with --threads 1 (what an idle machine shows, also on a loaded one), else wall time; the first
 * evaluation of each objective is a warm-up and not counted. The tiled evaluation (filters per tile) is
 * broken down into pass 1 (forward, Grams, content loss: a value-only evaluation), pass 2's forward and
 * pass 2's backward (the library's profiling hook, nst__net.prof), and the halo's cost: the tiles'
 * input area over the image's, and the convolutions' work (cin * cout * input area, summed over the
 * tiles' regions) over the image's. --no-kept skips the kept-filters objective, --no-whole
 * the whole image (then no ratios). */
#define NST_IMPLEMENTATION
#include "nst.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "bench_clock.h"

static int use_cpu;
static double now_s(void) {
    return use_cpu ? bench_thread_seconds() : nst__now();
}

static void make_image(nst_image *im, int w, int h, unsigned seed) {
    int x, y, c;
    nst__rng r;
    r.s = seed;
    nst_image_alloc(im, w, h, 3);
    for (y = 0; y < h; y++)
        for (x = 0; x < w; x++)
            for (c = 0; c < 3; c++)
                im->pixels[((size_t)y * w + x) * 3 + c] =
                    (float)(0.5 + 0.25 * sin(0.013 * x * (c + 1) + 0.021 * y) + 0.2 * (nst__rng_uniform(&r) - 0.5));
}

static double thread_cpu(void) { return now_s(); }

/* Seconds per evaluation (after one warm-up); the loss of the last one in *loss. With brk (a tiled
 * objective): brk[0] pass 1 (a value-only evaluation), brk[1] pass 2 forward, brk[2] pass 2 backward
 * (the rest of the evaluation), per evaluation, brk[3] the input's halo fraction, brk[4] the
 * convolutions'. */
static double time_eval(const nst_model *m, const nst_image *c, const nst_image *s, const nst_options *o, int reps,
                        const float *x, float *g, double *loss, double *brk) {
    nst_objective *obj = NULL;
    nst_losses l;
    double t0, t1, prof[NST__PROF_SLOTS], fwd[2], t[2];
    int i, k;
    if (nst_objective_create(m, c, s, NULL, 1, o, &obj) != NST_OK) {
        fprintf(stderr, "objective: %s\n", nst_last_error());
        exit(1);
    }
    nst_objective_eval(obj, x, &l, g);
    t0 = now_s();
    for (i = 0; i < reps; i++) nst_objective_eval(obj, x, &l, g);
    t0 = (now_s() - t0) / reps;
    *loss = l.total;
    if (brk && obj->tiled) {
        const nst__tiling *tl = &obj->tiled->t;
        double area = 0;
        nst__tile r;
        for (i = 0; i < tl->ny * tl->nx; i++) {
            nst__tiling_tile(tl, i, &r);
            area += (double)(r.ey1 - r.ey0) * (r.ex1 - r.ex0);
        }
        brk[3] = area / ((double)tl->h * tl->w);
        {   /* the convolutions' work (cin * cout * input region) over the whole image's */
            double wt = 0, ww = 0;
            int l, ci;
            for (i = 0; i < tl->ny * tl->nx; i++) {
                nst__tiling_tile(tl, i, &r);
                for (l = 0, ci = 0; l <= tl->last; l++) {
                    int v = nst__layer_level(l);
                    double cc;
                    if (nst__layer_type(l) != NST__L_CONV) continue;
                    cc = (double)m->cin[ci] * m->cout[ci];
                    ci++;
                    wt += cc * (l ? (double)r.rh[l - 1] * r.rw[l - 1] : (double)(r.ey1 - r.ey0) * (r.ex1 - r.ex0));
                    if (i == 0) ww += cc * (double)(tl->h >> v) * (tl->w >> v);
                }
            }
            brk[4] = wt / ww;
        }
        obj->net.prof = prof;
        if (use_cpu) obj->net.prof_clock = thread_cpu;
        for (k = 0; k < 2; k++) {   /* value only (pass 1), then with the gradient */
            memset(prof, 0, sizeof prof);
            t1 = now_s();
            nst_objective_eval(obj, x, &l, k ? g : NULL);
            t[k] = now_s() - t1;
            for (fwd[k] = prof[NST__PROF_PRE], i = 0; i < NST_VGG_LAYERS; i++) fwd[k] += prof[NST__PROF_FWD + i];
        }
        obj->net.prof = NULL;
        brk[0] = t[0];
        brk[1] = fwd[1] - fwd[0];
        brk[2] = t[1] - t[0] - brk[1];
    }
    nst_objective_free(obj);
    return t0;
}

int main(int argc, char **argv) {
    int size = 1024, tile = 384, reps = 2, threads = 1, plan_only = 0, kept = 1, whole = 1, adam = 0, i, w, h;
    size_t limit = 0, n, j;
    nst_model *m = NULL;
    nst_image c, s;
    nst_options o;
    float *x, *g;
    double t_whole = 0, t_per_tile, t_kept = 0, l0 = 0, l1, l2 = 0, brk[5] = {0, 0, 0, 0, 0};
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--size") && i + 1 < argc) size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tile") && i + 1 < argc) tile = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--memory-limit") && i + 1 < argc) limit = (size_t)atol(argv[++i]) << 20;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--plan")) plan_only = 1;
        else if (!strcmp(argv[i], "--no-kept")) kept = 0;
        else if (!strcmp(argv[i], "--no-whole")) whole = 0;
        else if (!strcmp(argv[i], "--adam")) adam = 1;
        else {
            fprintf(stderr, "usage: %s [--size N] [--tile T | --memory-limit MB] [--reps N] [--threads N]\n", argv[0]);
            return 2;
        }
    }
    use_cpu = threads == 1;
    w = size; h = size * 3 / 4;
    if (nst_model_random(1, &m) != NST_OK) return 1;
    make_image(&c, w, h, 1);
    make_image(&s, w, h, 2);
    nst_options_init(&o);
    o.threads = threads;
    o.image_size = size;
    if (adam) o.optimizer = NST_OPT_ADAM;
    if (limit) {
        o.memory_limit = limit;
        o.tile = -1;
        if (nst_transfer_plan(m, &c, &s, 1, &o) != NST_OK) {
            fprintf(stderr, "plan: %s\n", nst_last_error());
            return 1;
        }
        tile = o.tile;
        printf("plan under %zu MB: tile %d, history %d, filters %s, estimate %zu MB\n", limit >> 20, o.tile,
               o.lbfgs_history, o.tile_keep_filters ? "kept" : "per tile", nst_transfer_memory(m, &c, &s, 1, &o) >> 20);
        if (plan_only) return 0;
    }
    n = (size_t)3 * w * h;
    x = (float *)malloc(n * sizeof(float));
    g = (float *)malloc(n * sizeof(float));
    if (!x || !g) return 1;
    for (j = 0; j < n; j++) x[j] = (float)(255.0 * c.pixels[(j % ((size_t)w * h)) * 3 + j / ((size_t)w * h)]);
    o.tile = 0;
    if (whole) t_whole = time_eval(m, &c, &s, &o, reps, x, g, &l0, NULL);
    o.tile = tile;
    o.tile_keep_filters = 0;
    t_per_tile = time_eval(m, &c, &s, &o, reps, x, g, &l1, brk);
    o.tile_keep_filters = 1;
    if (kept) t_kept = time_eval(m, &c, &s, &o, reps, x, g, &l2, NULL);
    if (!whole) { t_whole = 1; l0 = l1; }
    printf("%dx%d, tile %d, %d thread%s, %s per evaluation (%d reps):\n", w, h, tile, threads, threads == 1 ? "" : "s",
           use_cpu ? "thread CPU time" : "wall time", reps);
    if (whole) printf("  whole image              %8.2f s\n", t_whole);
    printf("  tiled, filters per tile  %8.2f s  %.2fx  (loss rel. diff %.1e)\n", t_per_tile, t_per_tile / t_whole,
           l1 / l0 - 1);
    printf("    pass 1 %.2f s, pass 2 forward %.2f s, pass 2 backward %.2f s (one profiled evaluation); "
           "halo: input %.3f, convolutions' work %.3f of the image's\n", brk[0], brk[1], brk[2], brk[3], brk[4]);
    if (kept)
        printf("  tiled, filters kept      %8.2f s  %.2fx  (loss rel. diff %.1e)\n", t_kept, t_kept / t_whole,
               l2 / l0 - 1);
    free(x); free(g);
    nst_image_free(&c); nst_image_free(&s);
    nst_model_free(m);
    return 0;
}
