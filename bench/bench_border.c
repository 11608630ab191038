/* Whether the random model pulls the border pixels as hard as the interior: mean |d loss / d pixel| at
 * each distance 0..23 from the nearest edge, over the mean at distance >= 24, for the content loss
 * and the style loss alone (nst's default layers and weights, no TV), on images without structure:
 * content and style are uniform noise, the pixels are noise (as --init random starts) or flat grey.
 * A ratio far from 1 in the first rows is a frame in the making (see ">>vgg" reflection padding).
 *
 *   build/bench_border [--size N] [--zero]     (default 192; --zero: the same weights, zero padding)
 * Numbers in the reflection-padding comment of nst.h come from this at 192 px. */
#define NST_IMPLEMENTATION
#include "nst.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void profile(const float *g, int n, const char *tag) {
    double s[24] = {0}, c[24] = {0}, si = 0, ci = 0;
    int ch, y, x, d;
    for (ch = 0; ch < 3; ch++)
        for (y = 0; y < n; y++)
            for (x = 0; x < n; x++) {
                int dy = y < n - 1 - y ? y : n - 1 - y, dx = x < n - 1 - x ? x : n - 1 - x;
                double v = fabs(g[((size_t)ch * n + y) * n + x]);
                d = dx < dy ? dx : dy;
                if (d < 24) { s[d] += v; c[d]++; } else { si += v; ci++; }
            }
    printf("%-14s", tag);
    for (d = 0; d < 24; d++) printf(" %.2f", s[d] / c[d] / (si / ci));
    printf("\n");
}

int main(int argc, char **argv) {
    int n = 192, zero = 0, i, mode, start;
    nst_model *m = NULL;
    nst_image content, style;
    nst__rng r;
    float *px, *g;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--size") && i + 1 < argc) n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--zero")) zero = 1;
        else { fprintf(stderr, "usage: bench_border [--size N] [--zero]\n"); return 2; }
    }
    if (n < 64) n = 64;
    if (nst_model_random(0, &m) != NST_OK || nst_image_alloc(&content, n, n, 3) != NST_OK ||
        nst_image_alloc(&style, n, n, 3) != NST_OK) {
        fprintf(stderr, "bench_border: %s\n", nst_last_error());
        return 1;
    }
    if (zero) m->reflect = 0;
    r.s = 9;
    for (i = 0; i < 3 * n * n; i++) {
        content.pixels[i] = (float)nst__rng_uniform(&r);
        style.pixels[i] = (float)nst__rng_uniform(&r);
    }
    px = (float *)malloc(sizeof(float) * 3 * n * n);
    g = (float *)malloc(sizeof(float) * 3 * n * n);
    printf("%d x %d, %s padding; |gradient| at distance 0, 1, ... 23 / interior\n", n, n,
           zero ? "zero" : "the random model's");
    for (mode = 0; mode < 2 && px && g; mode++) {
        nst_options o;
        nst_objective *ob = NULL;
        nst_options_init(&o);
        o.tile = 0; o.tv_weight = 0;
        if (mode == 0) o.style_weight = 0; else o.content_weight = 0;
        if (nst_objective_create(m, &content, &style, NULL, 1, &o, &ob) != NST_OK) {
            fprintf(stderr, "bench_border: %s\n", nst_last_error());
            return 1;
        }
        for (start = 0; start < 2; start++) {
            for (i = 0; i < 3 * n * n; i++) px[i] = start ? 128.0f : (float)(255 * nst__rng_uniform(&r));
            if (nst_objective_eval(ob, px, NULL, g) != NST_OK) { fprintf(stderr, "bench_border: %s\n", nst_last_error()); return 1; }
            profile(g, n, mode == 0 ? (start ? "content, grey" : "content, noise") : (start ? "style, grey" : "style, noise"));
        }
        nst_objective_free(ob);
    }
    free(px); free(g);
    nst_image_free(&content); nst_image_free(&style);
    nst_model_free(m);
    return 0;
}
