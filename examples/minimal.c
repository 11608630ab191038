/* minimal - the smallest complete program using nst.h: a photo painted in the style of a painting.
 *
 *     minimal CONTENT STYLE OUT [WEIGHTS]     e.g. minimal photo.jpg painting.jpg out.png weights/vgg19.nstw
 *
 * Without WEIGHTS it runs the weight-free random VGG-19: no download, but only an approximation.
 * Build: cc -O2 minimal.c nst.c -lm -fopenmp   (nst.c holds `#define NST_IMPLEMENTATION` + `#include "nst.h"`) */
#include <stdio.h>
#include <string.h>
#include "nst.h"

int main(int argc, char **argv) {
    nst_image content, style, out;
    nst_model *model = NULL;
    nst_options o;
    nst_status st;
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: minimal CONTENT STYLE OUT [WEIGHTS]\n");
        return 2;
    }
    memset(&content, 0, sizeof content); memset(&style, 0, sizeof style); memset(&out, 0, sizeof out);

    st = nst_image_load(argv[1], &content);
    if (st == NST_OK) st = nst_image_load(argv[2], &style);
    if (st == NST_OK) st = argc == 5 ? nst_model_load(argv[4], &model) : nst_model_random(0, &model);
    if (st == NST_OK) {
        nst_options_init(&o);                           /* jcjohnson/neural-style's defaults */
        o.image_size = 256;                             /* longest side of the output */
        o.iterations = 200;
        st = nst_transfer(model, &content, &style, NULL, 1, &o, &out);
    }
    if (st == NST_OK) st = nst_image_save(argv[3], &out);   /* format from the extension */
    if (st != NST_OK) fprintf(stderr, "minimal: %s\n", nst_last_error());

    nst_image_free(&out); nst_image_free(&style); nst_image_free(&content);
    nst_model_free(model);
    return st == NST_OK ? 0 : 1;
}
