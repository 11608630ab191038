/* nst-inspect: look inside weight files, and dump what the objective sees for comparisons
 *
 *   nst-inspect WEIGHTS
 *       .nstw: header, input convention, each tensor's dtype, shape and checksum status
 *       other formats (.pth, .caffemodel, .npz, .npy): what the importer finds
 *   nst-inspect WEIGHTS --content C --style S [--input I] [--pool max|avg] [--content-weight A]
 *               [--style-weight B] --dump DIR
 *       evaluates the objective at the input image (default: the per-pixel mean of content and style,
 *       which must have the same size; nothing is resized) and writes NumPy float32 files to DIR
 *       (created, with its parents, if missing):
 *         act_<layer>.npy   (C,H,W) at relu1_1 relu2_1 relu3_1 relu4_1 relu4_2 relu5_1
 *         gram_<layer>.npy  (C,C), normalised by C*H*W, at the five style layers
 *         loss.npy          [total, content unweighted, style unweighted], total = A*content + B*style
 *         grad_pixels.npy   (3,H,W): d total / d pixel, pixels RGB in 0..255
 *       Losses as DESIGN.md section 5 (jcjohnson's): content relu4_2, TV weight 0; A = 5, B = 100. */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L   /* mkdir, stat */
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "nst.h"
#ifdef _WIN32
#include <direct.h>
#define nst_inspect_mkdir(p) _mkdir(p)
#else
#include <sys/stat.h>
#define nst_inspect_mkdir(p) mkdir(p, 0777)
#endif

static int usage(void) {
    fprintf(stderr,
            "usage: nst-inspect WEIGHTS\n"
            "       nst-inspect WEIGHTS --content C --style S [--input I] [--pool max|avg]\n"
            "                   [--content-weight A] [--style-weight B] --dump DIR\n");
    return 2;
}

static void print_convention(const nst_input_convention *c) {
    printf("%s, pixels x %g, mean (%g, %g, %g), std (%g, %g, %g)\n", c->bgr ? "BGR" : "RGB", (double)c->scale,
           (double)c->mean[0], (double)c->mean[1], (double)c->mean[2], (double)c->std[0], (double)c->std[1],
           (double)c->std[2]);
}

/* The whole file, or NULL after saying why (a directory opens but fails the first read: EISDIR). */
static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    unsigned char *b = NULL;
    long len;
    int c;
    if (!f) { fprintf(stderr, "nst-inspect: cannot open '%s': %s\n", path, strerror(errno)); return NULL; }
    errno = 0;
    if ((c = getc(f)) == EOF && ferror(f)) {
        fprintf(stderr, "nst-inspect: cannot read '%s': %s\n", path, errno == EISDIR ? "it is a directory" : strerror(errno));
        fclose(f);
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        b = (unsigned char *)malloc(len ? (size_t)len : 1);
        if (b && fread(b, 1, (size_t)len, f) != (size_t)len) { free(b); b = NULL; }
        *n = (size_t)len;
    }
    fclose(f);
    if (!b) fprintf(stderr, "nst-inspect: cannot read '%s'\n", path);
    return b;
}

static int inspect(const char *path) {
    size_t n = 0;
    unsigned char *b = read_all(path, &n);
    int i, bad = 0;
    if (!b) return 1;
    if (n >= 4 && !memcmp(b, "NSTW", 4)) {
        nst_nstw_info info;
        nst_model *m = NULL;
        if (nst_nstw_inspect_memory(b, n, &info) != NST_OK) {
            fprintf(stderr, "nst-inspect: %s: %s\n", path, nst_last_error());
            free(b);
            return 1;
        }
        printf("file:       %s (%lu bytes), .nstw version %u\n", path, (unsigned long)n, info.version);
        printf("header:     checksum %s\n", info.header_ok ? "ok" : "MISMATCH");
        printf("model:      %s, default pooling %s\n", info.flags & 1 ? "random (weight-free)" : "trained weights",
               info.pool == NST_POOL_AVG ? "average" : "max");
        printf("input:      ");
        print_convention(&info.convention);
        printf("tensors:    %d\n", info.count);
        for (i = 0; i < info.count && i < 64; i++) {
            const nst_nstw_tensor *t = &info.tensor[i];
            char shape[64];
            int d, len = 0;
            shape[0] = 0;
            for (d = 0; d < t->ndim; d++) len += snprintf(shape + len, sizeof shape - (size_t)len, "[%d]", t->shape[d]);
            printf("  %-16s %-4s %-18s %10llu bytes  %s\n", t->name, t->dtype_bits == 32 ? "f32" : t->dtype_bits == 16 ? "f16" : "?",
                   shape, t->bytes, !t->in_bounds ? "OUT OF BOUNDS" : t->checksum_ok ? "crc ok" : "CRC MISMATCH");
            if (!t->in_bounds || !t->checksum_ok) bad = 1;
        }
        if (!info.header_ok) bad = 1;
        if (nst_model_load_memory(b, n, &m) != NST_OK) {
            printf("load:       FAILS: %s\n", nst_last_error());
            bad = 1;
        } else {
            printf("load:       ok, %d conv layers\n", nst_model_convs(m));
            nst_model_free(m);
        }
    } else {
        nst_import_info info;
        nst_import_options o;
        nst_model *m = NULL;
        nst_status st;
        memset(&o, 0, sizeof o);
        o.all_layers = 1;
        st = nst_model_import_memory(b, n, &o, &m, &info);
        if (st == NST_ERR_ARGUMENT && info.format[0]) {   /* no convention in the file: report anyway */
            o.set_convention = 1;
            o.convention.bgr = 1; o.convention.scale = 255.0f;
            o.convention.std[0] = o.convention.std[1] = o.convention.std[2] = 1.0f;
            st = nst_model_import_memory(b, n, &o, &m, &info);
            info.convention_known = 0;
        }
        if (st != NST_OK) {
            fprintf(stderr, "nst-inspect: %s: %s\n", path, nst_last_error());
            free(b);
            return 1;
        }
        printf("file:       %s (%lu bytes)\n", path, (unsigned long)n);
        printf("format:     %s\n", info.format);
        printf("input:      ");
        if (info.convention_known) print_convention(&info.convention);
        else printf("not stated by the file (convert with --bgr/--rgb ...)\n");
        printf("layers:     %d conv layers\n", info.convs);
        for (i = 0; i < info.convs; i++) {
            const float *w, *bias;
            double s = 0.0;
            int k, cin, cout;
            nst_model_conv(m, i, &w, &bias, &cin, &cout);
            for (k = 0; k < cin * cout * 9; k++) s += (double)w[k] * w[k];
            printf("  conv %2d  [%d][%d][3][3]  |w| %.4g\n", i + 1, cout, cin, s > 0 ? sqrt(s) : 0.0);
        }
        nst_model_free(m);
    }
    free(b);
    return bad;
}

/* mkdir -p: DIR and every missing parent; 1 when DIR is a directory afterwards. */
static int make_dirs(const char *dir) {
    char path[4096];
    size_t i, len = strlen(dir);
    FILE *probe;
    if (len == 0 || len >= sizeof path) { fprintf(stderr, "nst-inspect: bad directory name '%s'\n", dir); return 0; }
    memcpy(path, dir, len + 1);
    for (i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\\' && path[i] != 0) continue;
        if (path[i - 1] == '/' || path[i - 1] == '\\' || (i == 2 && path[1] == ':')) continue;
        {
            char c = path[i];
            path[i] = 0;
            if (nst_inspect_mkdir(path) != 0 && errno != EEXIST) {
                fprintf(stderr, "nst-inspect: cannot create directory '%s': %s\n", path, strerror(errno));
                return 0;
            }
            path[i] = c;
        }
    }
    /* an existing file of that name passes mkdir's EEXIST: writing into it must still fail here */
    snprintf(path, sizeof path, "%s/.nst-inspect-probe", dir);
    if (!(probe = fopen(path, "wb"))) {
        fprintf(stderr, "nst-inspect: cannot write into '%s': %s\n", dir, strerror(errno));
        return 0;
    }
    fclose(probe);
    remove(path);
    return 1;
}

static int write_npy(const char *dir, const char *name, const float *d, int ndim, const int *shape) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    if (nst_npy_write(path, d, ndim, shape) != NST_OK) {
        fprintf(stderr, "nst-inspect: %s\n", nst_last_error());
        return 0;
    }
    return 1;
}

static int load_rgb(const char *path, nst_image *out) {
    nst_image raw;
    if (nst_image_load(path, &raw) != NST_OK) {
        fprintf(stderr, "nst-inspect: %s\n", nst_last_error());
        return 0;
    }
    if (nst_image_to_rgb(&raw, out) != NST_OK) {
        fprintf(stderr, "nst-inspect: %s\n", nst_last_error());
        nst_image_free(&raw);
        return 0;
    }
    nst_image_free(&raw);
    return 1;
}

int main(int argc, char **argv) {
    static const char *const acts[6] = {"relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"};
    static const char *const grams[5] = {"relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"};
    const char *weights = NULL, *cpath = NULL, *spath = NULL, *ipath = NULL, *dir = NULL;
    float cw = 5.0f, sw = 100.0f;
    nst_pool pool = NST_POOL_DEFAULT;
    nst_image content, style, input;
    nst_model *m = NULL;
    nst_objective *obj = NULL;
    nst_options o;
    nst_losses l;
    float *px = NULL, *grad = NULL;
    int i, w, h, rc = 1;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--content") && more) cpath = argv[++i];
        else if (!strcmp(a, "--style") && more) spath = argv[++i];
        else if (!strcmp(a, "--input") && more) ipath = argv[++i];
        else if (!strcmp(a, "--dump") && more) dir = argv[++i];
        else if (!strcmp(a, "--content-weight") && more) cw = (float)atof(argv[++i]);
        else if (!strcmp(a, "--style-weight") && more) sw = (float)atof(argv[++i]);
        else if (!strcmp(a, "--pool") && more) {
            const char *p = argv[++i];
            if (!strcmp(p, "max")) pool = NST_POOL_MAX;
            else if (!strcmp(p, "avg")) pool = NST_POOL_AVG;
            else { fprintf(stderr, "nst-inspect: --pool takes max or avg\n"); return 2; }
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else if (a[0] == '-' && a[1]) { fprintf(stderr, "nst-inspect: unknown option '%s'\n", a); return usage(); }
        else if (!weights) weights = a;
        else return usage();
    }
    if (!weights) return usage();
    if (!cpath && !spath && !dir && !ipath) return inspect(weights);
    if (!cpath || !spath || !dir) {
        fprintf(stderr, "nst-inspect: --dump needs --content, --style and --dump DIR\n");
        return 2;
    }
    memset(&content, 0, sizeof content);
    memset(&style, 0, sizeof style);
    memset(&input, 0, sizeof input);
    if (!make_dirs(dir)) return 1;
    if (nst_model_load(weights, &m) != NST_OK) { fprintf(stderr, "nst-inspect: %s\n", nst_last_error()); return 1; }
    if (!load_rgb(cpath, &content) || !load_rgb(spath, &style) || (ipath && !load_rgb(ipath, &input))) goto done;
    w = content.width; h = content.height;
    if (ipath) {
        if (input.width != w || input.height != h) {
            fprintf(stderr, "nst-inspect: the input image must have the content's size (%dx%d)\n", w, h);
            goto done;
        }
    } else {
        size_t k;
        if (style.width != w || style.height != h) {
            fprintf(stderr, "nst-inspect: without --input, content and style must have the same size (%dx%d vs %dx%d)\n",
                    w, h, style.width, style.height);
            goto done;
        }
        if (nst_image_alloc(&input, w, h, 3) != NST_OK) { fprintf(stderr, "nst-inspect: %s\n", nst_last_error()); goto done; }
        for (k = 0; k < (size_t)w * h * 3; k++) input.pixels[k] = 0.5f * (content.pixels[k] + style.pixels[k]);
    }
    nst_options_init(&o);
    o.content_weight = cw;
    o.style_weight = sw;
    o.tv_weight = 0.0f;
    o.pool = pool;
    o.content_layers = "relu4_2";
    o.style_layers = "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1";
    if (nst_objective_create(m, &content, &style, NULL, 1, &o, &obj) != NST_OK) {
        fprintf(stderr, "nst-inspect: %s\n", nst_last_error());
        goto done;
    }
    px = (float *)malloc(sizeof(float) * 3 * (size_t)w * h);
    grad = (float *)malloc(sizeof(float) * 3 * (size_t)w * h);
    if (!px || !grad) { fprintf(stderr, "nst-inspect: out of memory\n"); goto done; }
    {
        size_t k, hw = (size_t)w * h;
        int c;
        for (c = 0; c < 3; c++)
            for (k = 0; k < hw; k++) px[c * hw + k] = input.pixels[k * 3 + c] * 255.0f;   /* planar RGB 0..255 */
    }
    if (nst_objective_eval(obj, px, &l, grad) != NST_OK) { fprintf(stderr, "nst-inspect: %s\n", nst_last_error()); goto done; }
    for (i = 0; i < 6; i++) {
        int c, fh, fw, shape[3];
        const float *d;
        char name[64];
        if (nst_objective_features(obj, acts[i], &c, &fh, &fw, &d) != NST_OK) {
            fprintf(stderr, "nst-inspect: %s\n", nst_last_error());
            goto done;
        }
        shape[0] = c; shape[1] = fh; shape[2] = fw;
        snprintf(name, sizeof name, "act_%s", acts[i]);
        if (!write_npy(dir, name, d, 3, shape)) goto done;
    }
    for (i = 0; i < 5; i++) {
        int c, shape[2];
        const float *d;
        char name[64];
        if (nst_objective_gram(obj, grams[i], &c, &d) != NST_OK) {
            fprintf(stderr, "nst-inspect: %s\n", nst_last_error());
            goto done;
        }
        shape[0] = shape[1] = c;
        snprintf(name, sizeof name, "gram_%s", grams[i]);
        if (!write_npy(dir, name, d, 2, shape)) goto done;
    }
    {
        float loss[3];
        int one = 3, shape[3];
        loss[0] = (float)l.total; loss[1] = (float)l.content_raw; loss[2] = (float)l.style_raw;
        if (!write_npy(dir, "loss", loss, 1, &one)) goto done;
        shape[0] = 3; shape[1] = h; shape[2] = w;
        if (!write_npy(dir, "grad_pixels", grad, 3, shape)) goto done;
    }
    printf("loss: total %.9g  content %.9g  style %.9g  (content weight %g, style weight %g)\n", l.total, l.content_raw,
           l.style_raw, (double)cw, (double)sw);
    printf("wrote %s/{act_*,gram_*,loss,grad_pixels}.npy\n", dir);
    rc = 0;
done:
    free(px);
    free(grad);
    nst_objective_free(obj);
    nst_image_free(&content);
    nst_image_free(&style);
    nst_image_free(&input);
    nst_model_free(m);
    return rc;
}
