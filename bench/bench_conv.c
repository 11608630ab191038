/* Per-layer 3x3 convolution benchmark: VGG-19 conv1_1 .. conv5_1 (the layers a style-transfer
 * iteration runs) at one image size, forward (bias + ReLU fused) and backward-data, 1 and 2 threads.
 * "GFLOP/s" is effective: direct-convolution FLOP (2 * cin * cout * 9 * h * w) / time, so an algorithm
 * with fewer multiplies (Winograd) can exceed the machine's FMA peak.
 *
 *   build/bench_conv [--size N] [--reps N] [--arch scalar|avx2|avx512|neon] [--algo auto|direct|wino] [--threads N] [--cpu]
 *                    [--layer NAME[,NAME...]]
 * --arch picks the convolution kernel table (default: the CPU's best, or $NST_ARCH); a path the CPU lacks is
 * refused.
 * --cpu times with process CPU time / threads (tuning aid when other jobs load the machine).
 * --layer runs only the named layers (e.g. conv4_2,conv5_1): many reps of one layer, alternated between two
 * builds, is what shows a few percent on a shared machine.
 * --filters times only the Winograd filter transform of each layer, both directions, one thread (what a
 * lazy layer, conv3_2 .. conv5_1, redoes on every call), best of --reps. */
#define NST_IMPLEMENTATION
#include "nst.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "bench_clock.h"

/* --cpu: process CPU time / threads instead of wall time, for tuning on a machine others are loading */
static int use_cpu, filters_only;
static double now(int threads) {
    return use_cpu ? bench_cpu_seconds() / threads : nst__now();
}

static const struct { const char *name; int cin, cout, div; } layers[] = {
    { "conv1_1", 3, 64, 1 },     { "conv1_2", 64, 64, 1 },    { "conv2_1", 64, 128, 2 },
    { "conv2_2", 128, 128, 2 },  { "conv3_1", 128, 256, 4 },  { "conv3_2", 256, 256, 4 },
    { "conv3_3", 256, 256, 4 },  { "conv3_4", 256, 256, 4 },  { "conv4_1", 256, 512, 8 },
    { "conv4_2", 512, 512, 8 },  { "conv4_3", 512, 512, 8 },  { "conv4_4", 512, 512, 8 },
    { "conv5_1", 512, 512, 16 },
};
#define NLAYERS ((int)(sizeof layers / sizeof layers[0]))

static void fill(float *x, size_t n, uint64_t seed, float scale) {
    nst__rng r;
    size_t i;
    r.s = seed;
    for (i = 0; i < n; i++) x[i] = (float)(nst__rng_uniform(&r) - 0.5) * scale;
}

/* The first layer at or after l that --layer selects (all when only is NULL); NLAYERS when none is left.
 * Whole comma-separated names only: "conv4_1" does not select conv4_10. */
static int next_layer(const char *only, int l) {
    for (; l < NLAYERS; l++) {
        const char *q = only;
        size_t nl = strlen(layers[l].name);
        if (!only) return l;
        while ((q = strstr(q, layers[l].name)) != NULL) {
            if ((q == only || q[-1] == ',') && (q[nl] == 0 || q[nl] == ',')) return l;
            q++;
        }
    }
    return NLAYERS;
}

int main(int argc, char **argv) {
    const char *only = NULL;
    int size = 512, reps = 3, algo = NST__CONV_AUTO, maxthreads = 2, i, l, t;
    nst_arch arch = nst__cpu_arch();
    double tot[2][2] = { { 0, 0 }, { 0, 0 } }, flop_total = 0;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--size") && i + 1 < argc) size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--cpu")) use_cpu = 1;
        else if (!strcmp(argv[i], "--filters")) filters_only = 1;
        else if (!strcmp(argv[i], "--layer") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) maxthreads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--arch") && i + 1 < argc) {
            int a;
            ++i;
            for (a = NST_ARCH_SCALAR; a <= NST_ARCH_NEON; a++)
                if (!strcmp(argv[i], nst__arch_name((nst_arch)a))) break;
            if (a > NST_ARCH_NEON || !nst__cpu()->has[a] || nst__conv_kernels_for((nst_arch)a)->arch != (nst_arch)a) {
                fprintf(stderr, "bench_conv: path '%s' is not available on this CPU/build\n", argv[i]);
                return 2;
            }
            arch = (nst_arch)a;
        } else if (!strcmp(argv[i], "--algo") && i + 1 < argc) {
            ++i;
            algo = !strcmp(argv[i], "direct") ? NST__CONV_DIRECT : !strcmp(argv[i], "wino") ? NST__CONV_WINO
                                                                                            : NST__CONV_AUTO;
        } else {
            fprintf(stderr, "usage: %s [--size N] [--reps N] [--threads N] [--arch scalar|avx2|avx512|neon] "
                            "[--algo auto|direct|wino] [--cpu] [--filters] [--layer NAME,...]\n", argv[0]);
            return 2;
        }
    }
    if (size < 16 || reps < 1 || maxthreads < 1) { fprintf(stderr, "bad arguments\n"); return 2; }
    if (next_layer(only, 0) == NLAYERS) { fprintf(stderr, "bench_conv: no layer named in '%s'\n", only); return 2; }
    printf("bench_conv: VGG-19 3x3 convolutions at %dx%d, best of %d, path %s (kernels %s), %s, effective GFLOP/s = "
           "direct FLOP / time\n", size, size, reps, nst__arch_name(arch), nst__conv_kernels_for(arch)->name,
           use_cpu ? "CPU time" : "wall time");
    if (!filters_only) {
        printf("%-8s %9s %9s %-6s %-6s", "layer", "cin>cout", "h x w", "fwd", "bwd");
        for (t = 1; t <= maxthreads; t = t == 1 && maxthreads > 1 ? maxthreads : t + maxthreads)
            printf(" | %dT fwd ms  GF/s  bwd ms  GF/s", t);
        printf("\n");
    }
    for (l = next_layer(only, 0); l < NLAYERS; l = next_layer(only, l + 1)) {
        int cin = layers[l].cin, cout = layers[l].cout, h = size / layers[l].div, w = size / layers[l].div;
        size_t nin = (size_t)cin * h * w, nout = (size_t)cout * h * w, wsn;
        double flop = 2.0 * cin * cout * 9 * (double)h * w;
        float *wt = (float *)nst__aligned_alloc(sizeof(float) * (size_t)cin * cout * 9);
        float *b = (float *)nst__aligned_alloc(sizeof(float) * (size_t)cout);
        float *x = (float *)nst__aligned_alloc(sizeof(float) * nin), *y = (float *)nst__aligned_alloc(sizeof(float) * nout);
        void *ws;
        nst__conv_plan *p;
        if (!wt || !b || !x || !y) { fprintf(stderr, "out of memory\n"); return 1; }
        fill(wt, (size_t)cin * cout * 9, 1, 0.1f);
        fill(b, (size_t)cout, 2, 0.1f);
        fill(x, nin, 3, 1.0f);
        fill(y, nout, 4, 1.0f);
        if (nst__conv_plan_create_ex(wt, b, cin, cout, algo, arch, &p) != NST_OK) {
            fprintf(stderr, "%s\n", nst_last_error());
            return 1;
        }
        if (filters_only) {   /* the lazy transform's loop (nst__conv_run) on one thread */
            double best[2] = { 1e30, 1e30 };
            int d, r;
            for (d = 0; d < 2; d++) {
                const nst__conv_dir *dd = &p->dir[d];
                int nob = (dd->kout + p->k->mr - 1) / p->k->mr, ob;
                float *u = (float *)nst__aligned_alloc(sizeof(float) * ((size_t)36 * nob * p->k->mr * dd->kin + 16));
                if (!u) { fprintf(stderr, "out of memory\n"); return 1; }
                for (r = 0; r < reps + 1 && dd->algo == NST__CONV_WINO; r++) {
                    double t0 = now(1), dt;
                    for (ob = 0; ob < nob; ob++) p->k->wino_filters(p, d, u, ob);
                    dt = now(1) - t0;
                    if (r > 0 && dt < best[d]) best[d] = dt;
                }
                nst__aligned_free(u);
            }
            printf("%-8s %4d>%-4d filter transform, 1 thread:", layers[l].name, cin, cout);
            for (d = 0; d < 2; d++)   /* a direct direction (conv1_1) has no transform */
                if (p->dir[d].algo == NST__CONV_WINO) printf(" %s %7.2f ms", d ? " bwd" : "fwd", 1e3 * best[d]);
                else printf(" %s %7s   ", d ? " bwd" : "fwd", "-");
            if (p->dir[0].lazy || p->dir[1].lazy) printf("  lazy: every call on maps over %d px", NST__CONV_SMALL_HW);
            printf("\n");
            nst__conv_plan_free(p);
            nst__aligned_free(wt); nst__aligned_free(b); nst__aligned_free(x); nst__aligned_free(y);
            continue;
        }
        wsn = nst__conv_workspace(p, h, w, maxthreads);
        ws = wsn ? nst__aligned_alloc(wsn) : NULL;
        printf("%-8s %4d>%-4d %4dx%-4d %-6s %-6s", layers[l].name, cin, cout, h, w,
               p->dir[0].algo == NST__CONV_WINO ? "wino" : "direct", p->dir[1].algo == NST__CONV_WINO ? "wino" : "direct");
        fflush(stdout);
        flop_total += flop;
        for (t = 1; t <= maxthreads; t = t == 1 && maxthreads > 1 ? maxthreads : t + maxthreads) {
            double best[2] = { 1e30, 1e30 };
            int d, r;
            for (d = 0; d < 2; d++)
                for (r = 0; r < reps + 1; r++) {   /* the first run warms up caches and pages */
                    double t0 = now(t), dt;
                    if (d == 0) nst__conv_forward(p, x, y, h, w, 1, t, ws);
                    else nst__conv_backward_data(p, y, x, h, w, t, ws);
                    dt = now(t) - t0;
                    if (r > 0 && dt < best[d]) best[d] = dt;
                    if (d == 1) fill(y, nout, 4, 1.0f);   /* keep magnitudes bounded: no denormals */
                }
            printf(" | %9.2f %5.0f %7.2f %5.0f", 1e3 * best[0], flop / best[0] * 1e-9, 1e3 * best[1],
                   flop / best[1] * 1e-9);
            tot[t == 1 ? 0 : 1][0] += best[0];
            tot[t == 1 ? 0 : 1][1] += best[1];
            fflush(stdout);
        }
        printf("\n");
        nst__aligned_free(ws);
        nst__conv_plan_free(p);
        nst__aligned_free(wt); nst__aligned_free(b); nst__aligned_free(x); nst__aligned_free(y);
    }
    if (filters_only) return 0;
    printf("%-8s %9s %9s %-6s %-6s", "total", "", "", "", "");
    for (t = 1; t <= maxthreads; t = t == 1 && maxthreads > 1 ? maxthreads : t + maxthreads) {
        int k = t == 1 ? 0 : 1;
        printf(" | %9.2f %5.0f %7.2f %5.0f", 1e3 * tot[k][0], flop_total / tot[k][0] * 1e-9, 1e3 * tot[k][1],
               flop_total / tot[k][1] * 1e-9);
    }
    printf("\n(direct-convolution FLOP per direction: %.1f G)\n", flop_total * 1e-9);
    return 0;
}
