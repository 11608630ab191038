/* texture - texture synthesis (Gatys, Ecker & Bethge 2015): new image, same texture as the example.
 *
 *     texture STYLE OUT [--size WxH] [--iterations N] [--style-scale S] [--seed N] [--weights FILE|random]
 *
 * Style transfer with the content weight at 0: the optimisation starts from noise and only matches the
 * Gram matrices of the style image, so the output has its statistics (colours, strokes, motifs) but no
 * layout. The content image only sets the output size: a blank WxH picture. Without --weights it uses
 * $NST_WEIGHTS, else weights/vgg19.nstw when present, else the weight-free random model. */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "nst.h"

static int usage(const char *why) {
    if (why) fprintf(stderr, "texture: error: %s\n", why);
    fprintf(stderr, "usage: texture STYLE OUT [--size WxH] [--iterations N] [--style-scale S] [--seed N]"
                    " [--weights FILE|random]\n");
    return 2;
}

/* Whole string as a number in [lo, hi], nothing after it. */
static int parse_long(const char *s, long lo, long hi, long *out, char **rest) {
    char *end;
    errno = 0;
    if (*s < '0' || *s > '9') return 0;
    *out = strtol(s, &end, 10);
    if (errno || *out < lo || *out > hi || (rest ? 0 : *end != 0)) return 0;
    if (rest) *rest = end;
    return 1;
}

static int report(const nst_progress *p, void *user) {
    (void)user;
    if (p->iteration % 50 == 0 || p->iteration == p->iterations)
        fprintf(stderr, "texture: iteration %d/%d  style loss %.4e\n", p->iteration, p->iterations, p->style);
    return 0;
}

int main(int argc, char **argv) {
    nst_image style, blank, out;
    nst_model *model = NULL;
    nst_options o;
    nst_status st;
    long width = 256, height = 256, iterations = 500, v;
    unsigned long long seed = 0;
    float style_scale = 1;
    const char *weights = getenv("NST_WEIGHTS"), *paths[2] = {NULL, NULL};
    int i, npaths = 0;
    FILE *f;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        char *rest;
        if (a[0] != '-') {
            if (npaths == 2) return usage("too many file names");
            paths[npaths++] = a;
            continue;
        }
        if (!val) return usage("an option needs a value");
        i++;
        if (!strcmp(a, "--size")) {
            if (!parse_long(val, 1, 65535, &width, &rest) || *rest != 'x' ||
                !parse_long(rest + 1, 1, 65535, &height, NULL))
                return usage("--size wants WxH, e.g. 512x256");
        } else if (!strcmp(a, "--iterations")) {
            if (!parse_long(val, 1, 1000000, &iterations, NULL)) return usage("--iterations wants a number >= 1");
        } else if (!strcmp(a, "--seed")) {
            if (!parse_long(val, 0, 2147483647L, &v, NULL)) return usage("--seed wants a number >= 0");
            seed = (unsigned long long)v;
        } else if (!strcmp(a, "--style-scale")) {
            char *end;
            double s = strtod(val, &end);
            if (*end || !(s > 0 && s <= 100)) return usage("--style-scale wants a number > 0");
            style_scale = (float)s;
        } else if (!strcmp(a, "--weights")) {
            weights = val;
        } else {
            return usage("unknown option");
        }
    }
    if (npaths != 2) return usage(NULL);
    if (!weights && (f = fopen("weights/vgg19.nstw", "rb")) != NULL) { fclose(f); weights = "weights/vgg19.nstw"; }
    if (weights && !strcmp(weights, "random")) weights = NULL;

    memset(&style, 0, sizeof style); memset(&blank, 0, sizeof blank); memset(&out, 0, sizeof out);
    st = nst_image_load(paths[0], &style);
    if (st == NST_OK) st = nst_image_alloc(&blank, (int)width, (int)height, 3);   /* only its size matters */
    if (st == NST_OK) st = weights ? nst_model_load(weights, &model) : nst_model_random(0, &model);
    if (st == NST_OK) {
        if (nst_model_is_random(model))
            fprintf(stderr, "texture: warning: random model: the result is a weight-free approximation\n");
        nst_options_init(&o);
        o.content_weight = 0;                          /* no content: pure texture */
        if (nst_model_is_random(model)) o.style_weight = 1e4f;
        o.init = NST_INIT_RANDOM;
        o.image_size = (int)(width > height ? width : height);   /* the blank's longest side: no resizing */
        o.style_scale = style_scale;
        o.iterations = (int)iterations;
        o.seed = seed;
        o.progress = report;
        st = nst_transfer(model, &blank, &style, NULL, 1, &o, &out);
    }
    if (st == NST_OK) st = nst_image_save(paths[1], &out);
    if (st != NST_OK) fprintf(stderr, "texture: error: %s\n", nst_last_error());
    else fprintf(stderr, "texture: wrote '%s' (%dx%d)\n", paths[1], out.width, out.height);

    nst_image_free(&out); nst_image_free(&blank); nst_image_free(&style);
    nst_model_free(model);
    return st == NST_OK ? 0 : 1;
}
