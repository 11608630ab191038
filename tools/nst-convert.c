/* nst-convert: a VGG-19 weight file of another library -> .nstw
 *
 *   nst-convert IN OUT.nstw [--half] [--all] [--bgr|--rgb] [--scale S] [--mean a,b,c] [--std a,b,c]
 *
 * IN: PyTorch .pth (zip or legacy, torchvision or Gatys/Caffe key names), Caffe .caffemodel (V1/V2),
 * NumPy .npz or pickled-dict .npy; the format is detected from the bytes. Only conv1_1..conv5_1 (all
 * that style transfer uses) are kept unless --all. --half stores f16 (half the size; the library
 * converts to f32 at load). The input convention (channel order, scale, mean, std) comes from the
 * format; formats that carry none (NumPy) need --bgr (Caffe preset: 0..255, mean 103.939,116.779,
 * 123.68, std 1) or --rgb (torchvision preset: 0..1, ImageNet mean/std), then --scale/--mean/--std
 * override single values (means and stds in the network's channel order). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "nst.h"

/* Name of conv layer i (0..15), from the library's layer table. */
static const char *conv_name(int i) {
    int l;
    for (l = 0; l < NST_VGG_LAYERS; l++) {
        const char *n = nst_layer_name(l);
        if (n && !strncmp(n, "conv", 4) && i-- == 0) return n;
    }
    return "?";
}

static void usage(void) {
    fprintf(stderr,
            "usage: nst-convert IN OUT.nstw [--half] [--all] [--bgr|--rgb] [--scale S] [--mean a,b,c] [--std a,b,c]\n"
            "  IN: .pth (zip or legacy), .caffemodel, .npz or .npy with VGG-19 weights\n"
            "  --half   store f16 (default f32)     --all  keep conv5_2..conv5_4 too\n"
            "  --bgr/--rgb and --scale/--mean/--std: the input convention, for files that carry none\n");
}

static int parse3(const char *s, float *v) {
    char *end;
    int i;
    for (i = 0; i < 3; i++) {
        v[i] = (float)strtod(s, &end);
        if (end == s) return 0;
        s = end;
        if (i < 2) {
            if (*s != ',') return 0;
            s++;
        }
    }
    return *s == 0;
}

static void print_convention(const nst_input_convention *c) {
    printf("%s, pixels x %g, mean (%g, %g, %g), std (%g, %g, %g)", c->bgr ? "BGR" : "RGB", (double)c->scale,
           (double)c->mean[0], (double)c->mean[1], (double)c->mean[2], (double)c->std[0], (double)c->std[1],
           (double)c->std[2]);
}

int main(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    int half = 0, i, preset = 0, have_scale = 0, have_mean = 0, have_std = 0;
    float scale = 0.0f, mean[3] = {0, 0, 0}, stdv[3] = {1, 1, 1};
    nst_import_options o;
    nst_import_info info;
    nst_model *m = NULL;
    nst_status st;
    memset(&o, 0, sizeof o);
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--half")) half = 1;
        else if (!strcmp(a, "--all")) o.all_layers = 1;
        else if (!strcmp(a, "--bgr")) preset = 1;
        else if (!strcmp(a, "--rgb")) preset = 2;
        else if (!strcmp(a, "--scale") && i + 1 < argc) { scale = (float)atof(argv[++i]); have_scale = 1; }
        else if (!strcmp(a, "--mean") && i + 1 < argc) {
            if (!parse3(argv[++i], mean)) { fprintf(stderr, "nst-convert: --mean needs a,b,c\n"); return 2; }
            have_mean = 1;
        } else if (!strcmp(a, "--std") && i + 1 < argc) {
            if (!parse3(argv[++i], stdv)) { fprintf(stderr, "nst-convert: --std needs a,b,c\n"); return 2; }
            have_std = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else if (a[0] == '-' && a[1]) { fprintf(stderr, "nst-convert: unknown option '%s'\n", a); usage(); return 2; }
        else if (!in) in = a;
        else if (!out) out = a;
        else { usage(); return 2; }
    }
    if (!in || !out) { usage(); return 2; }
    if (preset || have_scale || have_mean || have_std) {
        nst_input_convention *c = &o.convention;
        if (preset == 2) {
            c->bgr = 0; c->scale = 1.0f;
            c->mean[0] = 0.485f; c->mean[1] = 0.456f; c->mean[2] = 0.406f;
            c->std[0] = 0.229f; c->std[1] = 0.224f; c->std[2] = 0.225f;
        } else {
            c->bgr = 1; c->scale = 255.0f;
            c->mean[0] = 103.939f; c->mean[1] = 116.779f; c->mean[2] = 123.68f;
            c->std[0] = c->std[1] = c->std[2] = 1.0f;
        }
        if (have_scale) c->scale = scale;
        if (have_mean) memcpy(c->mean, mean, sizeof mean);
        if (have_std) memcpy(c->std, stdv, sizeof stdv);
        o.set_convention = 1;
    }
    st = nst_model_import(in, &o, &m, &info);
    if (st != NST_OK) {
        fprintf(stderr, "nst-convert: %s\n", nst_last_error());
        return 1;
    }
    printf("format:     %s\n", info.format);
    printf("layers:     %d conv layers, conv1_1 .. %s%s\n", info.convs, conv_name(info.convs - 1),
           info.convs == 16 ? " (all of VGG-19's)" : "");
    for (i = 0; i < info.convs; i++)
        printf("  %-8s weight [%d][%d][3][3]  bias [%d]\n", conv_name(i), info.cout[i], info.cin[i], info.cout[i]);
    printf("input:      ");
    print_convention(&info.convention);
    printf("\n            (%s)\n", o.set_convention ? (info.convention_known ? "from the command line, overriding the file's"
                                                                         : "from the command line")
                                                    : "implied by the file");
    if (!o.set_convention && strstr(info.format, "torchvision names"))
        printf("note:       torchvision key names imply torchvision's convention; jcjohnson's vgg19-d01eb7cb.pth\n"
               "            (neural-style-pt) holds Caffe weights under these names: convert it with --bgr\n");
    {
        static const int vgg[13] = {64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512};
        int full = info.convs >= 13;
        for (i = 0; i < 13 && i < info.convs; i++)
            if (info.cout[i] != vgg[i]) full = 0;
        if (!full) printf("note:       channel counts differ from the real VGG-19 (a test model?)\n");
    }
    st = nst_model_save(m, out, half);
    nst_model_free(m);
    if (st != NST_OK) {
        fprintf(stderr, "nst-convert: %s\n", nst_last_error());
        return 1;
    }
    printf("wrote:      %s (%s)\n", out, half ? "f16" : "f32");
    return 0;
}
