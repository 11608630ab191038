/* nst - neural style transfer from the command line, built on nst.h's public API only.
 *
 *     nst CONTENT STYLE [STYLE...] -o OUT [options]        (nst --help lists the options)
 *
 * The option names follow jcjohnson/neural-style (its -style_weight spelling works too: a single dash
 * and underscores are accepted, and its renamed options have aliases), so existing command lines carry
 * over. Exit codes: 0 done, 1 an error (one line naming it), 2 a bad command line, 130 interrupted by
 * Ctrl-C after saving the last good image.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L   /* isatty, fileno, sigaction, readlink */
#endif
#include "nst.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _WIN32
#include <io.h>
#include <direct.h>
#define nst_cli_isatty(fd) _isatty(fd)
#define nst_cli_fileno(f)  _fileno(f)
#else
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#define nst_cli_isatty(fd) isatty(fd)
#define nst_cli_fileno(f)  fileno(f)
#endif

#define CLI_DEFAULT_WEIGHTS      "weights/vgg19.nstw"
#define CLI_RANDOM_MODEL_SEED    0ull   /* one fixed random model, so --seed only changes the init noise */
#define CLI_AUTO                 (-1)   /* --print-every not given: per TTY or not */

/* ---- Ctrl-C ---------------------------------------------------------------------------------------
 * The first SIGINT only raises a flag: the progress callback sees it at the next evaluation and asks
 * nst_transfer to stop, which hands back the last good image for saving. A second SIGINT means "now".
 * On POSIX the handler says so at once with write(), the one output call that is async-signal-safe. */
static volatile sig_atomic_t cli_interrupts = 0;
static int cli_stderr_tty = 0;   /* set once before the handler is installed */

#if defined(_WIN32)
#define cli_signal_say(s) ((void)0)
#else
static void cli_signal_say(const char *s) {
    size_t n = strlen(s);
    if (!cli_stderr_tty) s++, n--;   /* the leading newline ends a \r-updated line on a terminal only */
    if (write(2, s, n) < 0) { /* nothing to do about it here */ }
}
#endif

static void cli_on_sigint(int sig) {
    (void)sig;
    if (cli_interrupts) {
        cli_signal_say("\nnst: interrupted again: quitting without saving\n");
        _Exit(130);
    }
    cli_interrupts = 1;
    cli_signal_say("\nnst: interrupted: stopping at the next iteration to save the last good image "
                   "(Ctrl-C again quits without saving)\n");
#if defined(_WIN32)
    signal(SIGINT, cli_on_sigint);   /* the handler is reset on delivery there */
#endif
}

static void cli_install_sigint(void) {
    cli_stderr_tty = nst_cli_isatty(nst_cli_fileno(stderr));
#if defined(_WIN32)
    signal(SIGINT, cli_on_sigint);
#else
    {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = cli_on_sigint;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
    }
#endif
}

/* ---- messages -------------------------------------------------------------------------------------*/
static const char *const cli_usage_line = "usage: nst CONTENT STYLE [STYLE...] -o OUT [options]\n"
                                          "       nst --batch LIST STYLE [STYLE...] -o DIR [options]";

static void cli_usage_error(const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 1, 2), noreturn))
#endif
    ;
static void cli_usage_error(const char *fmt, ...) {
    va_list ap;
    fputs("nst: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s\nTry 'nst --help' for more information.\n", cli_usage_line);
    exit(2);
}

static void cli_print_help(void) {
    printf(
"%s\n"
"Paints the CONTENT photo in the style of the STYLE painting(s): Gatys et al., with the losses and\n"
"defaults of jcjohnson/neural-style. Reads PNG, JPEG and PPM/PGM; OUT's extension picks the format:\n"
".png, .jpg, .ppm, .pgm (gray) or .pam.\n"
"\n"
"Output\n"
"  -o, --output FILE          where to write the result (required)\n"
"      --size N               longest side of the output in pixels (512; 0 = the content's size)\n"
"      --save-every N         also write OUT_<iteration>.<ext> every N iterations (0 = off)\n"
"      --quality Q            JPEG quality 1-100 when OUT is .jpg/.jpeg\n"
"Objective\n"
"      --content-weight W     5\n"
"      --style-weight W       100\n"
"      --tv-weight W          total-variation smoothness, 1e-3 (1e-6 with the random model)\n"
"      --content-layers L     relu4_2\n"
"      --style-layers L       relu1_1,relu2_1,relu3_1,relu4_1,relu5_1\n"
"      --style-layer-weights w1,w2,...   one per style layer (all 1)\n"
"      --style-blend w1,w2,...   one per STYLE image (equal)\n"
"      --style-scale S        style images are resized to S * --size (1)\n"
"      --pool max|avg         VGG pooling (the model's default: max, avg for the random model)\n"
"      --normalize-gradients  as jcjohnson's -normalize_gradients\n"
"      --colors style|luminance|histogram   keep the style's colours (default), or the content's\n"
"                             by luminance transfer or by histogram (colour statistics) matching\n"
"      --original-colors      same as --colors luminance\n"
"      --style-mask FILE      where a STYLE applies (Gatys et al. 2017): give it once per STYLE, in\n"
"                             the same order. Any image nst reads, resized to the output; its\n"
"                             luminance counts (white = this style, black = not). Masks are\n"
"                             normalised to sum to 1 at each pixel; where all are black the\n"
"                             --style-blend weights apply\n"
"Optimisation\n"
"      --iterations N         1000; with --scales, N1,N2,... gives each scale its own count\n"
"                             (coarsest first, the last repeats): --scales 4 --iterations\n"
"                             300,150,60,20 reaches 4096 px in reasonable time\n"
"      --init random|content|image|previous   starting image (random); previous (with\n"
"                             --batch): the previous item's output, resized if need be\n"
"      --init-image FILE      the starting image for --init image (implies it)\n"
"      --optimizer lbfgs|adam lbfgs\n"
"      --learning-rate R      1 for lbfgs, 10 for adam\n"
"      --lbfgs-history M      L-BFGS memory (100); memory grows with M\n"
"      --line-search          backtracking line search for L-BFGS (default: fixed step, as torch)\n"
"      --scales N             coarse-to-fine passes ending at --size (1 = single scale)\n"
"      --seed N               random seed for the initial noise (0)\n",
        cli_usage_line);
    printf(
"Batches and video frames\n"
"      --batch LIST           stylise every content image listed in LIST (one path per line, '-' =\n"
"                             standard input; empty lines and lines starting with # are skipped)\n"
"                             with the STYLE images given: the model is loaded and the style\n"
"                             targets computed once. -o names a directory (created if missing);\n"
"                             outputs are DIR/<content name without extension>.png. A file that\n"
"                             cannot be read or processed is reported and skipped; the exit status\n"
"                             is then 1. Progress lines start with the item, e.g. (3/120)\n"
"      --format png|jpg|ppm   the batch's output format (png)\n"
"      --temporal-weight W    with --batch: hold each output close to the previous one where the\n"
"                             content did not change (per-pixel weight from the difference of\n"
"                             consecutive content frames; Ruder et al. 2016 without optical flow).\n"
"                             0 = off (default); try 10-100 with --init previous for video frames\n"
"Model\n"
"      --weights FILE|random  VGG-19 weights: .nstw, or .pth/.caffemodel/.npz converted on load.\n"
"                             Without it: $NST_WEIGHTS, else ./%s, else\n"
"                             ../%s next to the executable, else the random model.\n"
"                             The random model needs no download, but its output is only a\n"
"                             weight-free approximation of real style transfer.\n"
"Machine\n"
"      --threads N            worker threads (0 = $OMP_NUM_THREADS or all cores)\n"
"      --memory-limit SIZE    stay within SIZE (e.g. 4G, 512M; default: available memory): above\n"
"                             it, tile the image, then shorten the L-BFGS history, then refuse\n"
"      --tile N               evaluate in tiles of at most N px (plus a halo; exact, less memory,\n"
"                             slower); 0 = never (default: only when over the memory limit)\n"
"Messages\n"
"      --print-every N        progress line every N iterations (0 = off; default: updated in place\n"
"                             on a terminal, every 50 otherwise)\n"
"  -q, --quiet                no summary or progress, only warnings and errors\n"
"  -h, --help                 this text\n"
"  -V, --version              version and CPU\n"
"\n"
"jcjohnson/neural-style spellings work too (-style_weight 100, -num_iterations, -image_size,\n"
"-content_image, -style_image a.jpg,b.jpg, -output_image, -print_iter, -save_iter, -pooling,\n"
"-lbfgs_num_correction, -style_blend_weights, -model_file, -original_colors 1; -gpu -1 is accepted).\n"
"Ctrl-C stops and saves the last good image to OUT; pressing it twice quits at once.\n"
"Exit status: 0 done, 1 error (with --batch: any item failed), 2 bad command line, 130 interrupted\n"
"(OUT saved).\n",
        CLI_DEFAULT_WEIGHTS, CLI_DEFAULT_WEIGHTS);
}

/* ---- strict number parsing -------------------------------------------------------------------------
 * The whole string must be the number: "12abc", "", " 12", "0x10" and out-of-range values are refused. */
static int cli_parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    long v;
    if (!*s || isspace((unsigned char)*s)) return 0;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

static int cli_parse_float(const char *s, double lo, double hi, double *out) {
    char *end;
    double v;
    const char *p;
    if (!*s || isspace((unsigned char)*s)) return 0;
    for (p = s; *p; p++)   /* digits, sign, point and exponent only: no "inf", "nan", hex floats */
        if (!isdigit((unsigned char)*p) && !strchr("+-.eE", *p)) return 0;
    errno = 0;
    v = strtod(s, &end);
    if (errno || *end || !(v >= lo && v <= hi)) return 0;
    *out = v;
    return 1;
}

static int cli_parse_u64(const char *s, unsigned long long *out) {
    char *end;
    unsigned long long v;
    if (!isdigit((unsigned char)*s)) return 0;   /* strtoull would wrap "-1" around */
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end) return 0;
    *out = v;
    return 1;
}

/* "4G", "512M", "1.5GiB", "2000000000": binary units (K = 1024). */
static int cli_parse_size(const char *s, size_t *out) {
    char num[64];
    size_t n = 0;
    double v, mul = 1;
    const char *u;
    while (s[n] && (isdigit((unsigned char)s[n]) || s[n] == '.')) n++;
    if (n == 0 || n >= sizeof num) return 0;
    memcpy(num, s, n);
    num[n] = 0;
    if (!cli_parse_float(num, 0, 1e30, &v)) return 0;
    u = s + n;
    switch (toupper((unsigned char)*u)) {
    case 0: break;
    case 'K': mul = 1024.0; u++; break;
    case 'M': mul = 1024.0 * 1024; u++; break;
    case 'G': mul = 1024.0 * 1024 * 1024; u++; break;
    case 'T': mul = 1024.0 * 1024 * 1024 * 1024; u++; break;
    case 'B': break;
    default: return 0;
    }
    if (mul > 1 && (*u == 'i' || *u == 'I')) u++;
    if (*u == 'b' || *u == 'B') u++;
    if (*u) return 0;
    v *= mul;
    if (v >= (double)SIZE_MAX) return 0;
    *out = (size_t)v;
    return 1;
}

/* Comma-separated floats, each >= 0, into a new array; returns the count or -1. */
static int cli_parse_float_list(const char *s, float **out) {
    int n = 1, k = 0;
    const char *p, *q;
    float *v;
    for (p = s; *p; p++) n += *p == ',';
    v = (float *)malloc((size_t)n * sizeof *v);
    if (!v) return -1;
    for (p = s;; p = q + 1) {
        char buf[64];
        double d;
        size_t len;
        q = strchr(p, ',');
        len = q ? (size_t)(q - p) : strlen(p);
        if (len == 0 || len >= sizeof buf) { free(v); return -1; }
        memcpy(buf, p, len);
        buf[len] = 0;
        if (!cli_parse_float(buf, 0, 1e30, &d)) { free(v); return -1; }
        v[k++] = (float)d;
        if (!q) break;
    }
    *out = v;
    return k;
}

/* Checks every name of a comma-separated VGG layer list; returns the count. */
static int cli_check_layers(const char *option, const char *list) {
    int n = 0;
    const char *p = list, *q;
    for (;; p = q + 1) {
        char name[32];
        size_t len;
        q = strchr(p, ',');
        len = q ? (size_t)(q - p) : strlen(p);
        if (len == 0 || len >= sizeof name) cli_usage_error("%s: bad layer list '%s'", option, list);
        memcpy(name, p, len);
        name[len] = 0;
        if (nst_layer_index(name) < 0)
            cli_usage_error("%s: unknown layer '%s' (VGG-19 layers: conv1_1, relu1_1, ..., relu5_4, pool1..pool5)",
                            option, name);
        n++;
        if (!q) return n;
    }
}

/* ---- the command line -------------------------------------------------------------------------------*/
enum cli_opt {
    O_OUTPUT = 1, O_SIZE, O_ITERATIONS, O_CONTENT_WEIGHT, O_STYLE_WEIGHT, O_TV_WEIGHT, O_CONTENT_LAYERS,
    O_STYLE_LAYERS, O_STYLE_LAYER_WEIGHTS, O_STYLE_BLEND, O_STYLE_SCALE, O_INIT, O_INIT_IMAGE, O_OPTIMIZER,
    O_LEARNING_RATE, O_LBFGS_HISTORY, O_LINE_SEARCH, O_POOL, O_NORMALIZE_GRADIENTS, O_COLORS,
    O_ORIGINAL_COLORS, O_SCALES, O_WEIGHTS, O_SEED, O_PRINT_EVERY, O_SAVE_EVERY, O_THREADS, O_MEMORY_LIMIT,
    O_QUALITY, O_QUIET, O_VERSION, O_HELP, O_CONTENT_IMAGE, O_STYLE_IMAGE, O_GPU, O_IGNORED_VALUE,
    O_IGNORED_FLAG, O_STYLE_MASK, O_BATCH, O_FORMAT, O_TEMPORAL_WEIGHT, O_TILE
};
enum { V_NONE, V_REQUIRED, V_BOOL };   /* V_BOOL: a flag that may be followed by 0 or 1 (jcjohnson) */

typedef struct cli_optdef { const char *name; int id, value; } cli_optdef;

static const cli_optdef cli_opts[] = {
    {"output", O_OUTPUT, V_REQUIRED},           {"o", O_OUTPUT, V_REQUIRED},
    {"output-image", O_OUTPUT, V_REQUIRED},
    {"size", O_SIZE, V_REQUIRED},               {"image-size", O_SIZE, V_REQUIRED},
    {"iterations", O_ITERATIONS, V_REQUIRED},   {"num-iterations", O_ITERATIONS, V_REQUIRED},
    {"content-weight", O_CONTENT_WEIGHT, V_REQUIRED},
    {"style-weight", O_STYLE_WEIGHT, V_REQUIRED},
    {"tv-weight", O_TV_WEIGHT, V_REQUIRED},
    {"content-layers", O_CONTENT_LAYERS, V_REQUIRED},
    {"style-layers", O_STYLE_LAYERS, V_REQUIRED},
    {"style-layer-weights", O_STYLE_LAYER_WEIGHTS, V_REQUIRED},
    {"style-blend", O_STYLE_BLEND, V_REQUIRED}, {"style-blend-weights", O_STYLE_BLEND, V_REQUIRED},
    {"style-scale", O_STYLE_SCALE, V_REQUIRED},
    {"init", O_INIT, V_REQUIRED},               {"init-image", O_INIT_IMAGE, V_REQUIRED},
    {"optimizer", O_OPTIMIZER, V_REQUIRED},     {"learning-rate", O_LEARNING_RATE, V_REQUIRED},
    {"lbfgs-history", O_LBFGS_HISTORY, V_REQUIRED},
    {"lbfgs-num-correction", O_LBFGS_HISTORY, V_REQUIRED},
    {"line-search", O_LINE_SEARCH, V_BOOL},
    {"pool", O_POOL, V_REQUIRED},               {"pooling", O_POOL, V_REQUIRED},
    {"normalize-gradients", O_NORMALIZE_GRADIENTS, V_BOOL},
    {"colors", O_COLORS, V_REQUIRED},           {"original-colors", O_ORIGINAL_COLORS, V_BOOL},
    {"scales", O_SCALES, V_REQUIRED},
    {"weights", O_WEIGHTS, V_REQUIRED},         {"model-file", O_WEIGHTS, V_REQUIRED},
    {"seed", O_SEED, V_REQUIRED},
    {"print-every", O_PRINT_EVERY, V_REQUIRED}, {"print-iter", O_PRINT_EVERY, V_REQUIRED},
    {"save-every", O_SAVE_EVERY, V_REQUIRED},   {"save-iter", O_SAVE_EVERY, V_REQUIRED},
    {"threads", O_THREADS, V_REQUIRED},         {"memory-limit", O_MEMORY_LIMIT, V_REQUIRED},
    {"tile", O_TILE, V_REQUIRED},
    {"quality", O_QUALITY, V_REQUIRED},
    {"quiet", O_QUIET, V_NONE},                 {"q", O_QUIET, V_NONE},
    {"version", O_VERSION, V_NONE},             {"V", O_VERSION, V_NONE},
    {"help", O_HELP, V_NONE},                   {"h", O_HELP, V_NONE},
    {"content-image", O_CONTENT_IMAGE, V_REQUIRED},
    {"style-image", O_STYLE_IMAGE, V_REQUIRED},
    {"gpu", O_GPU, V_REQUIRED},
    {"backend", O_IGNORED_VALUE, V_REQUIRED},   {"proto-file", O_IGNORED_VALUE, V_REQUIRED},
    {"cudnn-autotune", O_IGNORED_FLAG, V_NONE},
    {"style-mask", O_STYLE_MASK, V_REQUIRED},   {"batch", O_BATCH, V_REQUIRED},
    {"format", O_FORMAT, V_REQUIRED},           {"temporal-weight", O_TEMPORAL_WEIGHT, V_REQUIRED},
};

/* Option names compare with '_' and '-' as equals, so -style_weight finds style-weight. */
static const cli_optdef *cli_find_opt(const char *name, size_t len) {
    size_t i, k;
    for (i = 0; i < sizeof cli_opts / sizeof cli_opts[0]; i++) {
        const char *o = cli_opts[i].name;
        if (strlen(o) != len) continue;
        for (k = 0; k < len; k++) {
            char a = name[k] == '_' ? '-' : name[k];
            if (a != o[k]) break;
        }
        if (k == len) return &cli_opts[i];
    }
    return NULL;
}

typedef struct cli {
    nst_options o;
    const char *content_path, *out_path, *weights, *init_image_path, *style_list;
    char *style_list_copy;             /* -style_image's list, split in place */
    const char **style_paths;
    int nstyles;
    float *blend, *layer_weights;
    int nblend, nlayer_weights;
    int print_every, save_every, quality, quiet;
    const char **mask_paths;           /* --style-mask, in order; argv strings */
    int nmasks;
    const char *batch_list, *format;   /* --batch LIST, --format png|jpg|ppm */
    int init_previous;                 /* --init previous */
    int scale_its[16], nscale_its;     /* --iterations N1,N2,... (o.scale_iterations points here) */
} cli;

static long cli_int_arg(const char *opt, const char *v, long lo, long hi) {
    long x;
    if (!cli_parse_int(v, lo, hi, &x))
        cli_usage_error("%s: expected a whole number from %ld to %ld, got '%s'", opt, lo, hi, v);
    return x;
}
static float cli_float_arg(const char *opt, const char *v, double lo, int lo_exclusive) {
    double x;
    if (!cli_parse_float(v, lo, 1e30, &x) || (lo_exclusive && x == lo))
        cli_usage_error("%s: expected a number %s %g, got '%s'", opt, lo_exclusive ? ">" : ">=", lo, v);
    return (float)x;
}
static int cli_choice(const char *opt, const char *v, const char *const *names, int n) {
    int i;
    for (i = 0; i < n; i++)
        if (strcmp(v, names[i]) == 0) return i;
    if (n == 2) cli_usage_error("%s: expected %s or %s, got '%s'", opt, names[0], names[1], v);
    cli_usage_error("%s: expected %s, %s or %s, got '%s'", opt, names[0], names[1], names[2], v);
    return -1;   /* not reached */
}

static void cli_parse(cli *c, int argc, char **argv) {
    static const char *const inits[] = {"random", "content", "image"};
    static const char *const optimizers[] = {"lbfgs", "adam"};
    static const char *const pools[] = {"max", "avg"};
    static const char *const colors[] = {"style", "luminance", "histogram"};
    static const char *const formats[] = {"png", "jpg", "ppm"};
    int i, positional_only = 0, npos = 0, init_set = 0;
    const char **pos = (const char **)calloc((size_t)argc + 1, sizeof *pos);
    if (!pos) { fprintf(stderr, "nst: error: out of memory\n"); exit(1); }

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *name, *eq, *v = NULL;
        char opt[64];
        const cli_optdef *d;
        size_t len;
        if (positional_only || a[0] != '-' || a[1] == 0) { pos[npos++] = a; continue; }
        if (strcmp(a, "--") == 0) { positional_only = 1; continue; }
        name = a + (a[1] == '-' ? 2 : 1);
        eq = strchr(name, '=');
        len = eq ? (size_t)(eq - name) : strlen(name);
        d = cli_find_opt(name, len);
        if (!d) cli_usage_error("unknown option '%.*s'", (int)(len + (size_t)(name - a)), a);
        {   /* messages name the option by its first (long) spelling in the table */
            const cli_optdef *canon = cli_opts;
            while (canon->id != d->id) canon++;
            snprintf(opt, sizeof opt, "--%s", canon->name);
        }
        if (d->value == V_REQUIRED) {
            if (eq) v = eq + 1;
            else if (i + 1 < argc) v = argv[++i];
            else cli_usage_error("%s needs a value", opt);
        } else if (eq) {
            if (d->value == V_NONE) cli_usage_error("%s takes no value", opt);
            v = eq + 1;
        } else if (d->value == V_BOOL && i + 1 < argc &&
                   (!strcmp(argv[i + 1], "0") || !strcmp(argv[i + 1], "1"))) {
            v = argv[++i];
        }
        if (d->value == V_BOOL && v && strcmp(v, "0") && strcmp(v, "1"))
            cli_usage_error("%s: expected 0 or 1, got '%s'", opt, v);

        switch (d->id) {
        case O_OUTPUT: c->out_path = v; break;
        case O_SIZE: c->o.image_size = (int)cli_int_arg(opt, v, 0, 65535); break;
        case O_ITERATIONS: {   /* N, or N1,N2,... per scale (coarsest first; the last repeats) */
            char buf[32];
            const char *p = v;
            c->nscale_its = 0;
            while (*p) {
                size_t len = strcspn(p, ",");
                if (len == 0 || len >= sizeof buf || c->nscale_its == 16)
                    cli_usage_error("%s: expected N or N1,N2,... (one count per scale), got '%s'", opt, v);
                memcpy(buf, p, len);
                buf[len] = 0;
                c->scale_its[c->nscale_its++] = (int)cli_int_arg(opt, buf, 1, INT_MAX);
                p += len + (p[len] == ',');
                if (p[-1] == ',' && !*p) cli_usage_error("%s: trailing comma in '%s'", opt, v);
            }
            if (c->nscale_its == 0) cli_usage_error("%s: expected a whole number, got '%s'", opt, v);
            c->o.iterations = c->scale_its[0];
            c->o.scale_iterations = c->nscale_its > 1 ? c->scale_its : NULL;
            c->o.nscale_iterations = c->nscale_its > 1 ? c->nscale_its : 0;
            break;
        }
        case O_CONTENT_WEIGHT: c->o.content_weight = cli_float_arg(opt, v, 0, 0); break;
        case O_STYLE_WEIGHT: c->o.style_weight = cli_float_arg(opt, v, 0, 0); break;
        case O_TV_WEIGHT: c->o.tv_weight = cli_float_arg(opt, v, 0, 0); break;
        case O_CONTENT_LAYERS: cli_check_layers(opt, v); c->o.content_layers = v; break;
        case O_STYLE_LAYERS: cli_check_layers(opt, v); c->o.style_layers = v; break;
        case O_STYLE_LAYER_WEIGHTS:
            free(c->layer_weights);
            c->nlayer_weights = cli_parse_float_list(v, &c->layer_weights);
            if (c->nlayer_weights < 0) cli_usage_error("%s: expected numbers >= 0 like 1,0.5,2, got '%s'", opt, v);
            break;
        case O_STYLE_BLEND:
            free(c->blend);
            c->nblend = cli_parse_float_list(v, &c->blend);
            if (c->nblend < 0) cli_usage_error("%s: expected numbers >= 0 like 3,1, got '%s'", opt, v);
            break;
        case O_STYLE_SCALE: c->o.style_scale = cli_float_arg(opt, v, 0, 1); break;
        case O_INIT:
            c->init_previous = strcmp(v, "previous") == 0;
            c->o.init = c->init_previous ? NST_INIT_RANDOM : (nst_init)(NST_INIT_RANDOM + cli_choice(opt, v, inits, 3));
            init_set = 1;
            break;
        case O_INIT_IMAGE: c->init_image_path = v; break;
        case O_OPTIMIZER:
            c->o.optimizer = (nst_optimizer)(NST_OPT_LBFGS + cli_choice(opt, v, optimizers, 2));
            break;
        case O_LEARNING_RATE: c->o.learning_rate = cli_float_arg(opt, v, 0, 1); break;
        case O_LBFGS_HISTORY: c->o.lbfgs_history = (int)cli_int_arg(opt, v, 1, 100000); break;
        case O_LINE_SEARCH: c->o.lbfgs_line_search = !v || *v == '1'; break;
        case O_POOL: c->o.pool = (nst_pool)(NST_POOL_MAX + cli_choice(opt, v, pools, 2)); break;
        case O_NORMALIZE_GRADIENTS: c->o.normalize_gradients = !v || *v == '1'; break;
        case O_COLORS: c->o.colors = (nst_colors)(NST_COLORS_STYLE + cli_choice(opt, v, colors, 3)); break;
        case O_ORIGINAL_COLORS: c->o.colors = (!v || *v == '1') ? NST_COLORS_LUMINANCE : NST_COLORS_STYLE; break;
        case O_SCALES: c->o.scales = (int)cli_int_arg(opt, v, 1, 16); break;
        case O_WEIGHTS: c->weights = v; break;
        case O_SEED:
            if (!cli_parse_u64(v, &c->o.seed))
                cli_usage_error("%s: expected a whole number >= 0, got '%s'", opt, v);
            break;
        case O_PRINT_EVERY: c->print_every = (int)cli_int_arg(opt, v, 0, INT_MAX); break;
        case O_SAVE_EVERY: c->save_every = (int)cli_int_arg(opt, v, 0, INT_MAX); break;
        case O_THREADS: c->o.threads = (int)cli_int_arg(opt, v, 0, 1024); break;
        case O_MEMORY_LIMIT:
            if (!cli_parse_size(v, &c->o.memory_limit) || c->o.memory_limit == 0)
                cli_usage_error("%s: expected a size like 4G, 512M or 2000000000, got '%s'", opt, v);
            break;
        case O_TILE: c->o.tile = (int)cli_int_arg(opt, v, 0, 65536); break;
        case O_QUALITY: c->quality = (int)cli_int_arg(opt, v, 1, 100); break;
        case O_QUIET: c->quiet = 1; break;
        case O_VERSION:
            printf("nst %s\ncpu: %s\nthreads: %d%s\n", nst_version(), nst_cpu_string(), nst_get_threads(),
#ifdef _OPENMP
                   " (OpenMP)"
#else
                   " (built without OpenMP)"
#endif
            );
            exit(0);
        case O_HELP: cli_print_help(); exit(0);
        case O_CONTENT_IMAGE: c->content_path = v; break;
        case O_STYLE_IMAGE: c->style_list = v; break;   /* jcjohnson: comma-separated */
        case O_GPU:
            if (strcmp(v, "-1") != 0) fprintf(stderr, "nst: warning: -gpu %s ignored: nst runs on the CPU\n", v);
            break;
        case O_STYLE_MASK:
            if (!c->mask_paths) c->mask_paths = (const char **)calloc((size_t)argc, sizeof *c->mask_paths);
            if (!c->mask_paths) { fprintf(stderr, "nst: error: out of memory\n"); exit(1); }
            c->mask_paths[c->nmasks++] = v;
            break;
        case O_BATCH: c->batch_list = v; break;
        case O_FORMAT: c->format = formats[cli_choice(opt, v, formats, 3)]; break;
        case O_TEMPORAL_WEIGHT: c->o.temporal_weight = cli_float_arg(opt, v, 0, 0); break;
        case O_IGNORED_VALUE: case O_IGNORED_FLAG:
            fprintf(stderr, "nst: warning: %s ignored (a jcjohnson/neural-style option nst does not need)\n", opt);
            break;
        default: break;
        }
    }

    /* Positionals: CONTENT STYLE [STYLE...], unless -content_image / -style_image said so already. */
    {
        int k = 0, n;
        char *list;
        if (c->batch_list && c->content_path) cli_usage_error("--batch takes the content images from LIST");
        if (!c->content_path && !c->batch_list) {
            if (npos == 0) cli_usage_error("missing CONTENT and STYLE images");
            c->content_path = pos[k++];
        }
        n = npos - k;
        if (c->style_list) {   /* jcjohnson's "a.jpg,b.jpg" */
            const char *p;
            int m = 1;
            for (p = c->style_list; *p; p++) m += *p == ',';
            c->style_list_copy = (char *)malloc(strlen(c->style_list) + 1);
            if (!c->style_list_copy) { fprintf(stderr, "nst: error: out of memory\n"); exit(1); }
            strcpy(c->style_list_copy, c->style_list);
            n += m;
        }
        list = c->style_list_copy;
        if (n == 0) cli_usage_error("missing the STYLE image");
        c->style_paths = (const char **)calloc((size_t)n, sizeof *c->style_paths);
        if (!c->style_paths) { fprintf(stderr, "nst: error: out of memory\n"); exit(1); }
        if (list) {
            char *p = list, *q;
            for (;; p = q + 1) {
                q = strchr(p, ',');
                if (q) *q = 0;
                if (!*p) cli_usage_error("-style_image: empty name in '%s'", c->style_list);
                c->style_paths[c->nstyles++] = p;
                if (!q) break;
            }
        }
        while (k < npos) c->style_paths[c->nstyles++] = pos[k++];
    }
    free(pos);

    if (!c->out_path) cli_usage_error(c->batch_list ? "missing -o DIR (where to write the results)"
                                                    : "missing -o OUT (where to write the result)");
    if (c->nmasks && c->nmasks != c->nstyles)
        cli_usage_error("--style-mask given %d time%s for %d style image%s (once per STYLE, in order)", c->nmasks,
                        c->nmasks == 1 ? "" : "s", c->nstyles, c->nstyles == 1 ? "" : "s");
    if (!c->batch_list && c->format) cli_usage_error("--format applies to --batch (OUT's extension picks the format)");
    if (!c->batch_list && c->init_previous) cli_usage_error("--init previous needs --batch");
    if (!c->batch_list && c->o.temporal_weight > 0) cli_usage_error("--temporal-weight needs --batch");
    if (c->batch_list) {
        if (c->quality && (!c->format || strcmp(c->format, "jpg")))
            cli_usage_error("--quality applies to JPEG output only (add --format jpg)");
        if (c->save_every) cli_usage_error("--save-every does not apply to --batch");
    } else {   /* know the format now rather than after an hour of optimisation */
        nst_image_format f = nst_image_format_from_path(c->out_path);
        if (f == NST_IMAGE_UNKNOWN)
            cli_usage_error("-o %s: the name must end in .png, .jpg, .jpeg, .ppm, .pgm or .pam", c->out_path);
        if (c->quality && f != NST_IMAGE_JPEG)
            cli_usage_error("--quality applies to JPEG output only (OUT is '%s')", c->out_path);
    }
    if (c->init_image_path && !init_set) c->o.init = NST_INIT_IMAGE;
    if (c->o.init == NST_INIT_IMAGE && !c->init_image_path)
        cli_usage_error("--init image needs --init-image FILE");
    if (c->init_image_path && c->o.init != NST_INIT_IMAGE)
        cli_usage_error("--init-image needs --init image (or no --init)");
    if (c->blend && c->nblend != c->nstyles)
        cli_usage_error("--style-blend has %d weight%s for %d style image%s", c->nblend, c->nblend == 1 ? "" : "s",
                        c->nstyles, c->nstyles == 1 ? "" : "s");
    if (c->blend) {
        int k;
        double sum = 0;
        for (k = 0; k < c->nblend; k++) sum += c->blend[k];
        if (!(sum > 0)) cli_usage_error("--style-blend: the weights must not all be 0");
    }
    if (c->layer_weights) {
        int nl = cli_check_layers("--style-layers", c->o.style_layers ? c->o.style_layers
                                                  : "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1");
        if (c->nlayer_weights != nl)
            cli_usage_error("--style-layer-weights has %d weight%s for %d style layer%s", c->nlayer_weights,
                            c->nlayer_weights == 1 ? "" : "s", nl, nl == 1 ? "" : "s");
        c->o.style_layer_weights = c->layer_weights;
    }
}

/* ---- progress ---------------------------------------------------------------------------------------*/
typedef struct cli_run {
    const char *out_path;
    int quiet, tty, print_every, save_every, quality;
    int line_open;                     /* a \r-updated line is on the terminal */
    int announced;                     /* the Ctrl-C message was printed (Windows) */
    int rate_scale, rate_iter;         /* where the it/s measurement of this pass started */
    double rate_sec, last_print_sec;
    int pending_save;                  /* a --save-every point the driver had no image for yet */
    int pending_scale;
    int last_iter, last_scale;
    const char *item;                  /* "(3/120) " in a batch, else NULL */
} cli_run;

/* Columns of the terminal on stderr: the window size, else $COLUMNS, else 80. */
static int cli_term_width(void) {
    const char *e = getenv("COLUMNS");
    long v;
#if defined(TIOCGWINSZ)
    struct winsize ws;
    if (ioctl(nst_cli_fileno(stderr), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
#endif
    if (e && cli_parse_int(e, 1, 10000, &v)) return (int)v;
    return 80;
}

static void cli_end_line(cli_run *r) {
    if (r->line_open) { fputc('\n', stderr); r->line_open = 0; }
}

static void cli_format_time(char *buf, size_t n, double s) {
    long t;
    if (!(s >= 0) || s > 1e8) { snprintf(buf, n, "?"); return; }
    t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

static void cli_format_bytes(char *buf, size_t n, double b) {
    if (b >= 1024.0 * 1024 * 1024) snprintf(buf, n, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    else if (b >= 1024.0 * 1024) snprintf(buf, n, "%.0f MiB", b / (1024.0 * 1024));
    else snprintf(buf, n, "%.0f KiB", b / 1024.0);
}

/* "out.png" + 100 -> "out_100.png" (and "out_s2_100.png" in pass 2 of a multi-scale run). */
static void cli_numbered_name(char *buf, size_t n, const char *path, int scale, int scales, int iter) {
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    size_t stem = (dot && (!slash || dot > slash)) ? (size_t)(dot - path) : strlen(path);
    if (scales > 1) snprintf(buf, n, "%.*s_s%d_%d%s", (int)stem, path, scale, iter, path + stem);
    else snprintf(buf, n, "%.*s_%d%s", (int)stem, path, iter, path + stem);
}

static nst_status cli_save(const char *path, const nst_image *img, int quality) {
    nst_image_save_options so;
    memset(&so, 0, sizeof so);   /* format from the extension; quality 0 = the library's default (90) */
    so.quality = quality;
    return nst_image_save_ex(path, img, &so);
}

static int cli_progress(const nst_progress *p, void *user) {
    cli_run *r = (cli_run *)user;
    int last = p->iteration >= p->iterations && p->scale >= p->scales;
    if (cli_interrupts) {
#if defined(_WIN32)
        if (!r->announced) {
            cli_end_line(r);
            fprintf(stderr, "nst: interrupted: stopping to save the last good image (Ctrl-C again quits "
                            "without saving)\n");
            r->announced = 1;
        }
#endif
        r->line_open = 0;   /* the handler's message ended the progress line */
        return 1;
    }
    r->last_iter = p->iteration;
    r->last_scale = p->scale;
    if (p->scale != r->rate_scale || p->iteration < r->rate_iter) {   /* a new pass: restart the it/s clock */
        r->rate_scale = p->scale;
        r->rate_iter = p->iteration;
        r->rate_sec = p->seconds;
    }
    /* L-BFGS may evaluate once more than `iterations`: that evaluation is not reported as "9/8" */
    if (!r->quiet && r->print_every != 0 && p->iteration <= p->iterations) {
        int due;
        if (r->print_every == CLI_AUTO)
            due = r->tty ? (last || p->iteration == 1 || p->seconds - r->last_print_sec >= 0.2)
                         : (last || p->iteration % 50 == 0);
        else
            due = last || p->iteration % r->print_every == 0;
        if (due) {
            char el[32], eta[32], rate[32], pass[32] = "", line[512], parts[128];
            double dt = p->seconds - r->rate_sec, its = dt > 0 ? (p->iteration - r->rate_iter) / dt : 0;
            double left = p->eta_seconds;
            int digits = p->iterations >= 10000 ? 5 : p->iterations >= 1000 ? 4 : 3, width;
            if (!(left > 0) && its > 0) left = (p->iterations - p->iteration) / its;
            cli_format_time(el, sizeof el, p->seconds);
            cli_format_time(eta, sizeof eta, last ? 0 : left);
            if (its >= 1) snprintf(rate, sizeof rate, "%.2f it/s", its);
            else if (its > 0) snprintf(rate, sizeof rate, "%.2f s/it", 1 / its);
            else snprintf(rate, sizeof rate, "- it/s");
            if (p->scales > 1) snprintf(pass, sizeof pass, "scale %d/%d  ", p->scale, p->scales);
            snprintf(parts, sizeof parts, " (content %.2e style %.2e tv %.2e)", p->content, p->style, p->tv);
            snprintf(line, sizeof line, "%s%siter %*d/%d  loss %.4e%s  %s  %s elapsed  ETA %s", r->item ? r->item : "",
                     pass, digits, p->iteration, p->iterations, p->total, parts, rate, el, eta);
            /* a \r-updated line must fit the terminal, or every update scrolls: shed the loss breakdown,
               then cut */
            if (r->tty && (width = cli_term_width()) > 0 && (int)strlen(line) >= width) {
                snprintf(line, sizeof line, "%s%siter %*d/%d  loss %.4e  %s  %s elapsed  ETA %s",
                         r->item ? r->item : "", pass, digits, p->iteration, p->iterations, p->total, rate, el, eta);
                if ((int)strlen(line) >= width) line[width > 1 ? width - 1 : 0] = 0;
            }
            fprintf(stderr, "%s%s%s", r->tty ? "\r" : "", line, r->tty ? "\033[K" : "\n");
            fflush(stderr);
            r->line_open = r->tty;
            r->last_print_sec = p->seconds;
        }
    }
    if (r->save_every > 0 && p->iteration % r->save_every == 0 && !last) {
        r->pending_save = p->iteration;
        r->pending_scale = p->scale;
    }
    if (r->pending_save && p->image) {   /* the driver may hand out its image only now and then */
        char name[4096];
        cli_numbered_name(name, sizeof name, r->out_path, r->pending_scale, p->scales, r->pending_save);
        if (cli_save(name, p->image, r->quality) != NST_OK) {
            cli_end_line(r);
            fprintf(stderr, "nst: warning: cannot write '%s': %s\n", name, nst_last_error());
        }
        r->pending_save = 0;
    }
    return 0;
}

/* ---- weights ------------------------------------------------------------------------------------------*/
static int cli_file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

/* <directory of the executable>/../weights/vgg19.nstw, from /proc/self/exe or argv[0]. */
static int cli_exe_weights(const char *argv0, char *buf, size_t n) {
    char exe[4096];
    const char *slash;
    size_t len = 0;
#if defined(__linux__)
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) { exe[k] = 0; len = (size_t)k; }
#endif
    if (!len) {
        if (!argv0 || !strchr(argv0, '/') || strlen(argv0) >= sizeof exe) return 0;
        strcpy(exe, argv0);
    }
    slash = strrchr(exe, '/');
    if (!slash) return 0;
    if ((size_t)snprintf(buf, n, "%.*s/../%s", (int)(slash - exe), exe, CLI_DEFAULT_WEIGHTS) >= n) return 0;
    return 1;
}

/* Returns the weights to load, or NULL for the random model; *why says where the choice came from. */
static const char *cli_resolve_weights(const char *opt, const char *argv0, char *buf, size_t n,
                                       const char **why) {
    const char *env = getenv("NST_WEIGHTS");
    if (opt) { *why = "--weights"; return strcmp(opt, "random") ? opt : NULL; }
    if (env && *env) { *why = "$NST_WEIGHTS"; return strcmp(env, "random") ? env : NULL; }
    *why = "default";
    if (cli_file_exists(CLI_DEFAULT_WEIGHTS)) return CLI_DEFAULT_WEIGHTS;
    if (cli_exe_weights(argv0, buf, n) && cli_file_exists(buf)) return buf;
    *why = "none found";
    return NULL;
}

/* ---- main ---------------------------------------------------------------------------------------------*/
static nst_status cli_load_rgb(const char *path, nst_image *out) {
    nst_image raw;
    nst_status st;
    memset(&raw, 0, sizeof raw);
    st = nst_image_load(path, &raw);
    if (st == NST_OK && raw.channels != 3) {
        st = nst_image_to_rgb(&raw, out);
        nst_image_free(&raw);
    } else {
        *out = raw;
    }
    return st;
}

/* The size nst_transfer resizes to: longest side `size` (0 = unchanged), aspect kept. */
static void cli_fit(int w, int h, int size, int *ow, int *oh) {
    int longest = w > h ? w : h;
    if (size <= 0 || longest <= 0) { *ow = w; *oh = h; return; }
    *ow = w >= h ? size : (int)((double)w * size / longest + 0.5);
    *oh = h >= w ? size : (int)((double)h * size / longest + 0.5);
    if (*ow < 1) *ow = 1;
    if (*oh < 1) *oh = 1;
}

static const char *cli_pool_name(nst_pool p) { return p == NST_POOL_AVG ? "avg" : "max"; }

/* ---- style masks and batches ------------------------------------------------------------------------*/
static void cli_free_images(nst_image *im, int n) {
    int i;
    if (!im) return;
    for (i = 0; i < n; i++) nst_image_free(&im[i]);
    free(im);
}

/* --style-mask files, kept as read (grey or colour: the library takes their luminance); sets
 * c->o.style_masks. NULL after printing the error. */
static nst_image *cli_load_masks(cli *c) {
    nst_image *m = (nst_image *)calloc((size_t)c->nmasks, sizeof *m);
    int i;
    if (!m) { fprintf(stderr, "nst: error: out of memory\n"); return NULL; }
    for (i = 0; i < c->nmasks; i++)
        if (nst_image_load(c->mask_paths[i], &m[i]) != NST_OK) {
            fprintf(stderr, "nst: error: cannot read the style mask '%s': %s\n", c->mask_paths[i], nst_last_error());
            cli_free_images(m, c->nmasks);
            return NULL;
        }
    c->o.style_masks = m;
    return m;
}

static double cli_now(void) {
#if defined(CLOCK_MONOTONIC) && !defined(_WIN32)
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
#else
    return (double)time(NULL);
#endif
}

/* Reads LIST (a file, or '-' for standard input): one path per line; blank lines and # comments are
 * skipped. Returns the number of paths (into *out) or -1 after printing why. */
static int cli_read_list(const char *path, char ***out) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    char line[4096], **v = NULL;
    int n = 0, cap = 0, bad = 0;
    *out = NULL;
    if (!f) { fprintf(stderr, "nst: error: cannot read the list '%s': %s\n", path, strerror(errno)); return -1; }
    while (fgets(line, sizeof line, f)) {
        size_t len = strlen(line);
        char *p = line;
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            fprintf(stderr, "nst: error: '%s': a line is longer than %d characters\n", path, (int)sizeof line - 2);
            bad = 1;
            break;
        }
        while (len && isspace((unsigned char)line[len - 1])) line[--len] = 0;
        while (isspace((unsigned char)*p)) p++;
        if (!*p || *p == '#') continue;
        if (n == cap) {
            char **nv = (char **)realloc(v, sizeof *nv * (size_t)(cap = cap ? 2 * cap : 64));
            if (!nv) { fprintf(stderr, "nst: error: out of memory\n"); bad = 1; break; }
            v = nv;
        }
        if (!(v[n] = (char *)malloc(strlen(p) + 1))) { fprintf(stderr, "nst: error: out of memory\n"); bad = 1; break; }
        strcpy(v[n++], p);
    }
    if (f != stdin) fclose(f);
    if (bad) {
        int i;
        for (i = 0; i < n; i++) free(v[i]);
        free(v);
        return -1;
    }
    *out = v;
    return n;
}

/* mkdir -p DIR; 1 when DIR is a directory afterwards. */
static int cli_make_dir(const char *dir) {
    char buf[4096];
    size_t i, n = strlen(dir);
    struct stat sb;
    if (n == 0 || n >= sizeof buf) return 0;
    strcpy(buf, dir);
    for (i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        buf[i] = 0;
        if (stat(buf, &sb) != 0) {
#ifdef _WIN32
            if (_mkdir(buf) != 0 && errno != EEXIST) return 0;
#else
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) return 0;
#endif
        }
        if (i < n) buf[i] = '/';
    }
    return stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* DIR/<file name without its extension>.<ext> */
static void cli_batch_name(char *buf, size_t n, const char *dir, const char *path, const char *ext) {
    const char *base = strrchr(path, '/'), *dot;
    size_t dl = strlen(dir), stem;
    base = base ? base + 1 : path;
    dot = strrchr(base, '.');
    stem = dot && dot > base ? (size_t)(dot - base) : strlen(base);
    while (dl > 1 && dir[dl - 1] == '/') dl--;
    snprintf(buf, n, "%.*s/%.*s.%s", (int)dl, dir, (int)stem, base, ext);
}

/* nst --batch LIST STYLE... -o DIR: one model and one set of style targets (an nst_style_cache) for
 * every item in turn; an item that fails is reported by name and skipped. */
static int cli_batch(cli *c, const char *argv0) {
    char **items = NULL, exe_weights[4096], name[4200];
    const char *ext = c->format ? c->format : "png", *weights_path, *why;
    nst_image *styles = NULL, *masks = NULL, prev_out, prev_content, init;
    nst_model *model = NULL;
    nst_style_cache *cache = NULL;
    int n = 0, i, k, failed = 0, done = 0, rc = 1;
    double t0;
    cli_run run;
    memset(&prev_out, 0, sizeof prev_out);
    memset(&prev_content, 0, sizeof prev_content);
    memset(&init, 0, sizeof init);
    if ((n = cli_read_list(c->batch_list, &items)) < 0) { n = 0; goto done; }
    if (n == 0) { fprintf(stderr, "nst: error: the list '%s' names no images\n", c->batch_list); goto done; }
    styles = (nst_image *)calloc((size_t)c->nstyles, sizeof *styles);
    if (!styles) { fprintf(stderr, "nst: error: out of memory\n"); goto done; }
    for (i = 0; i < c->nstyles; i++)
        if (cli_load_rgb(c->style_paths[i], &styles[i]) != NST_OK) {
            fprintf(stderr, "nst: error: cannot read '%s': %s\n", c->style_paths[i], nst_last_error());
            goto done;
        }
    if (c->nmasks && !(masks = cli_load_masks(c))) goto done;
    if (c->init_image_path) {
        if (cli_load_rgb(c->init_image_path, &init) != NST_OK) {
            fprintf(stderr, "nst: error: cannot read '%s': %s\n", c->init_image_path, nst_last_error());
            goto done;
        }
        c->o.init_image = &init;
    }
    if (!cli_make_dir(c->out_path)) {
        fprintf(stderr, "nst: error: cannot create the directory '%s': %s\n", c->out_path, strerror(errno));
        goto done;
    }
    weights_path = cli_resolve_weights(c->weights, argv0, exe_weights, sizeof exe_weights, &why);
    if ((weights_path ? nst_model_load(weights_path, &model) : nst_model_random(CLI_RANDOM_MODEL_SEED, &model)) !=
        NST_OK) {
        fprintf(stderr, "nst: error: cannot load %s: %s\n", weights_path ? weights_path : "the random model",
                nst_last_error());
        goto done;
    }
    if (nst_model_is_random(model))
        fprintf(stderr, "nst: warning: random model (%s): its output is a weight-free approximation\n",
                weights_path ? weights_path : why);
    if (nst_style_cache_create(&cache) != NST_OK) { fprintf(stderr, "nst: error: %s\n", nst_last_error()); goto done; }
    if (!c->quiet)
        fprintf(stderr, "nst %s: %d image%s from '%s' in the style of %d image%s -> %s/*.%s\n", nst_version(), n,
                n == 1 ? "" : "s", c->batch_list, c->nstyles, c->nstyles == 1 ? "" : "s", c->out_path, ext);
    memset(&run, 0, sizeof run);
    run.quiet = c->quiet;
    run.tty = nst_cli_isatty(nst_cli_fileno(stderr));
    run.print_every = c->print_every;
    run.quality = c->quality;
    c->o.progress = cli_progress;
    c->o.user = &run;
    c->o.progress_every = 1;
    c->o.style_cache = cache;
    t0 = cli_now();
    for (i = 0; i < n && !cli_interrupts; i++) {
        nst_image content, out;
        nst_status st;
        char item[48];
        memset(&content, 0, sizeof content);
        memset(&out, 0, sizeof out);
        snprintf(item, sizeof item, "(%d/%d) ", i + 1, n);
        cli_batch_name(name, sizeof name, c->out_path, items[i], ext);
        for (k = 0; k < i; k++) {   /* two inputs named alike would overwrite each other's output */
            char other[4200];
            cli_batch_name(other, sizeof other, c->out_path, items[k], ext);
            if (strcmp(other, name) == 0) break;
        }
        if (k < i) {
            fprintf(stderr, "nst: error: %s'%s': its output '%s' is taken by '%s': skipped\n", item, items[i], name,
                    items[k]);
            failed++;
            continue;
        }
        if (cli_load_rgb(items[i], &content) != NST_OK) {
            fprintf(stderr, "nst: error: %scannot read '%s': %s: skipped\n", item, items[i], nst_last_error());
            failed++;
            continue;
        }
        if (!c->quiet) fprintf(stderr, "nst: %s%s -> %s\n", item, items[i], name);
        run.item = item;
        run.out_path = name;
        run.rate_scale = -1;
        run.last_print_sec = 0;
        /* video frames: start from, and hold to, the previous output */
        c->o.temporal_image = NULL;
        c->o.temporal_content = NULL;
        if (c->init_previous) {
            c->o.init = prev_out.pixels ? NST_INIT_IMAGE : NST_INIT_RANDOM;
            c->o.init_image = prev_out.pixels ? &prev_out : NULL;
        }
        if (c->o.temporal_weight > 0 && prev_out.pixels) {
            c->o.temporal_image = &prev_out;
            c->o.temporal_content = &prev_content;
        }
        st = nst_transfer(model, &content, styles, c->blend, c->nstyles, &c->o, &out);
        cli_end_line(&run);
        if (st == NST_ERR_CANCELLED) {
            if (out.pixels && cli_save(name, &out, c->quality) == NST_OK)
                fprintf(stderr, "nst: %ssaved the image as of iteration %d to '%s'\n", item, run.last_iter, name);
        } else if (st != NST_OK) {
            fprintf(stderr, "nst: error: %s'%s': %s: skipped\n", item, items[i], nst_last_error());
            failed++;
        } else if (cli_save(name, &out, c->quality) != NST_OK) {
            fprintf(stderr, "nst: error: %scannot write '%s': %s\n", item, name, nst_last_error());
            failed++;
        } else {
            done++;
            nst_image_free(&prev_out);   /* the next frame's reference */
            nst_image_free(&prev_content);
            prev_out = out;
            prev_content = content;
            memset(&out, 0, sizeof out);
            memset(&content, 0, sizeof content);
        }
        nst_image_free(&out);
        nst_image_free(&content);
    }
    if (cli_interrupts) {
        fprintf(stderr, "nst: interrupted: %d of %d written\n", done, n);
        rc = 130;
        goto done;
    }
    if (!c->quiet || failed)
        fprintf(stderr, "nst: %d of %d written to %s in %.1f s (%.2f s per image)%s\n", done, n, c->out_path,
                cli_now() - t0, done ? (cli_now() - t0) / done : 0.0, failed ? ", some failed (see above)" : "");
    rc = failed ? 1 : 0;
done:
    for (i = 0; i < n; i++) free(items[i]);
    free(items);
    cli_free_images(styles, c->nstyles);
    cli_free_images(masks, c->nmasks);
    nst_image_free(&prev_out);
    nst_image_free(&prev_content);
    nst_image_free(&init);
    nst_style_cache_free(cache);
    nst_model_free(model);
    free(c->mask_paths);
    free(c->style_paths);
    free(c->style_list_copy);
    free(c->blend);
    free(c->layer_weights);
    return rc;
}

int main(int argc, char **argv) {
    cli c;
    cli_run run;
    nst_image content, out, init_image, *styles = NULL, *masks = NULL;
    nst_model *model = NULL;
    nst_status st;
    char exe_weights[4096];
    const char *weights_path, *why;
    int i, rc = 1, random_model;

    memset(&c, 0, sizeof c);
    memset(&run, 0, sizeof run);
    memset(&content, 0, sizeof content);
    memset(&out, 0, sizeof out);
    memset(&init_image, 0, sizeof init_image);
    nst_options_init(&c.o);
    c.print_every = CLI_AUTO;
    cli_parse(&c, argc, argv);
    if (c.o.threads > 0) nst_set_threads(c.o.threads);
    cli_install_sigint();
    if (c.batch_list) return cli_batch(&c, argv[0]);

    /* Inputs first: a typo in a file name should fail in a second, not after loading a model. */
    if (cli_load_rgb(c.content_path, &content) != NST_OK) {
        fprintf(stderr, "nst: error: cannot read '%s': %s\n", c.content_path, nst_last_error());
        goto done;
    }
    styles = (nst_image *)calloc((size_t)c.nstyles, sizeof *styles);
    if (!styles) { fprintf(stderr, "nst: error: out of memory\n"); goto done; }
    for (i = 0; i < c.nstyles; i++) {
        if (cli_load_rgb(c.style_paths[i], &styles[i]) != NST_OK) {
            fprintf(stderr, "nst: error: cannot read '%s': %s\n", c.style_paths[i], nst_last_error());
            goto done;
        }
    }
    if (c.nmasks && !(masks = cli_load_masks(&c))) goto done;
    if (c.init_image_path) {
        if (cli_load_rgb(c.init_image_path, &init_image) != NST_OK) {
            fprintf(stderr, "nst: error: cannot read '%s': %s\n", c.init_image_path, nst_last_error());
            goto done;
        }
        c.o.init_image = &init_image;
    }
    {   /* can OUT be written? Better to know before the run than after it. */
        char probe[4200];
        FILE *f;
        snprintf(probe, sizeof probe, "%s.tmp-nst-probe", c.out_path);
        f = fopen(probe, "wb");
        if (!f) {
            fprintf(stderr, "nst: error: cannot write '%s': %s\n", c.out_path, strerror(errno));
            goto done;
        }
        fclose(f);
        remove(probe);
    }

    weights_path = cli_resolve_weights(c.weights, argv[0], exe_weights, sizeof exe_weights, &why);
    st = weights_path ? nst_model_load(weights_path, &model) : nst_model_random(CLI_RANDOM_MODEL_SEED, &model);
    if (st != NST_OK) {
        if (weights_path)
            fprintf(stderr, "nst: error: cannot load weights '%s' (%s): %s\n", weights_path, why,
                    nst_last_error());
        else
            fprintf(stderr, "nst: error: cannot build the random model: %s\n", nst_last_error());
        goto done;
    }
    random_model = nst_model_is_random(model);
    if (random_model) {
        if (weights_path)
            fprintf(stderr, "nst: warning: '%s' holds the random model: its output is a weight-free "
                            "approximation\n", weights_path);
        else if (strcmp(why, "none found") == 0)
            fprintf(stderr, "nst: warning: no VGG-19 weights found: using the random model; its output is a "
                            "weight-free approximation (see weights/README.md)\n");
        else
            fprintf(stderr, "nst: warning: random model (%s random): its output is a weight-free approximation\n",
                    why);
    }

    if (c.o.tile < 0) {   /* over the memory limit: tiles, then a shorter history (the library's choice, told) */
        nst_options asked = c.o;
        if (nst_transfer_plan(model, &content, styles, c.nstyles, &c.o) != NST_OK) {
            fprintf(stderr, "nst: error: %s\n", nst_last_error());
            goto done;
        }
        if (!c.quiet && c.o.tile > 0) {
            char wbuf[32], lbuf[32];
            asked.tile = 0;
            cli_format_bytes(wbuf, sizeof wbuf, (double)nst_transfer_memory(model, &content, styles, c.nstyles, &asked));
            if (c.o.memory_limit) cli_format_bytes(lbuf, sizeof lbuf, (double)c.o.memory_limit);
            else snprintf(lbuf, sizeof lbuf, "available memory");
            fprintf(stderr, "nst: the whole image needs ~%s, above %s: evaluating in tiles of up to %d px "
                            "(exact; --tile 0 to refuse instead)\n", wbuf, lbuf, c.o.tile);
        }
        if (!c.quiet && c.o.lbfgs_history != asked.lbfgs_history)
            fprintf(stderr, "nst: L-BFGS history shortened from %d to %d to fit in memory\n", asked.lbfgs_history,
                    c.o.lbfgs_history);
    }
    if (!c.quiet) {
        int ow, oh, sw, sh, threads = nst_get_threads();   /* after nst_set_threads(--threads) */
        size_t mem = nst_transfer_memory(model, &content, styles, c.nstyles, &c.o);
        char mbuf[32], lbuf[32];
        nst_pool pool = c.o.pool != NST_POOL_DEFAULT ? c.o.pool : nst_model_default_pool(model);
        int style_size = (int)ceil((double)c.o.style_scale * (c.o.image_size > 0 ? c.o.image_size
                                   : (content.width > content.height ? content.width : content.height)));
        cli_fit(content.width, content.height, c.o.image_size, &ow, &oh);
        fprintf(stderr, "nst %s\n", nst_version());
        fprintf(stderr, "  content    %s  %dx%d -> output %dx%d\n", c.content_path, content.width, content.height,
                ow, oh);
        for (i = 0; i < c.nstyles; i++) {
            cli_fit(styles[i].width, styles[i].height, style_size, &sw, &sh);
            fprintf(stderr, "  style      %s  %dx%d -> %dx%d", c.style_paths[i], styles[i].width, styles[i].height,
                    sw, sh);
            if (c.nstyles > 1) {
                double sum = 0, wgt;
                int k;
                for (k = 0; k < c.nstyles; k++) sum += c.blend ? c.blend[k] : 1.0;
                wgt = (c.blend ? c.blend[i] : 1.0) / sum;
                fprintf(stderr, "  blend %.3g", wgt);
            }
            fputc('\n', stderr);
        }
        if (random_model)
            fprintf(stderr, "  model      %s%srandom VGG-19 (weight-free approximation), %s pooling\n",
                    weights_path ? weights_path : "", weights_path ? ": " : "", cli_pool_name(pool));
        else
            fprintf(stderr, "  model      %s, %s pooling\n", weights_path, cli_pool_name(pool));
        fprintf(stderr, "  losses     content %g @ %s, style %g @ %s, tv %g\n", (double)c.o.content_weight,
                c.o.content_layers ? c.o.content_layers : "relu4_2", (double)c.o.style_weight,
                c.o.style_layers ? c.o.style_layers : "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1",
                (double)(c.o.tv_weight < 0 ? nst_model_default_tv_weight(model) : c.o.tv_weight));
        fprintf(stderr, "  optimizer  %s", c.o.optimizer == NST_OPT_ADAM ? "adam" : "lbfgs");
        if (c.o.optimizer != NST_OPT_ADAM)
            fprintf(stderr, " (history %d%s)", c.o.lbfgs_history, c.o.lbfgs_line_search ? ", line search" : "");
        if (c.o.learning_rate > 0) fprintf(stderr, ", learning rate %g", (double)c.o.learning_rate);
        if (c.o.scale_iterations) {
            int k;
            fprintf(stderr, ", iterations");
            for (k = 0; k < c.o.nscale_iterations; k++) fprintf(stderr, "%s%d", k ? "," : " ", c.o.scale_iterations[k]);
            fprintf(stderr, " by scale");
        } else
            fprintf(stderr, ", %d iterations%s", c.o.iterations, c.o.scales > 1 ? " per scale" : "");
        fprintf(stderr, ", init %s, seed %llu\n",
                c.o.init == NST_INIT_CONTENT ? "content" : c.o.init == NST_INIT_IMAGE ? "image" : "random",
                c.o.seed);
        if (c.o.colors == NST_COLORS_LUMINANCE || c.o.colors == NST_COLORS_HISTOGRAM || c.o.scales > 1 ||
            c.o.normalize_gradients)
            fprintf(stderr, "  options    colors %s, %d scale%s%s\n",
                    c.o.colors == NST_COLORS_LUMINANCE ? "luminance" :
                    c.o.colors == NST_COLORS_HISTOGRAM ? "histogram" : "style",
                    c.o.scales > 1 ? c.o.scales : 1, c.o.scales > 1 ? "s" : "",
                    c.o.normalize_gradients ? ", normalized gradients" : "");
        fprintf(stderr, "  threads    %d on %s\n", threads, nst_cpu_string());
        if (c.o.tile > 0)
            fprintf(stderr, "  tiles      up to %d px, plus a halo for the deepest layer%s\n", c.o.tile,
                    c.o.tile_keep_filters ? "; deep filters kept" : "");
        if (mem) cli_format_bytes(mbuf, sizeof mbuf, (double)mem);
        else snprintf(mbuf, sizeof mbuf, "? (no estimate)");
        if (c.o.memory_limit) {
            cli_format_bytes(lbuf, sizeof lbuf, (double)c.o.memory_limit);
            fprintf(stderr, "  memory     ~%s estimated (limit %s)\n", mbuf, lbuf);
        } else {
            fprintf(stderr, "  memory     ~%s estimated\n", mbuf);
        }
    }

    run.out_path = c.out_path;
    run.quiet = c.quiet;
    run.tty = nst_cli_isatty(nst_cli_fileno(stderr));
    run.print_every = c.print_every;
    run.save_every = c.save_every;
    run.quality = c.quality;
    run.rate_scale = -1;
    c.o.progress = cli_progress;
    c.o.user = &run;
    c.o.progress_every = 1;   /* every evaluation: Ctrl-C answers within one iteration */

    if (cli_interrupts) {
        fprintf(stderr, "nst: interrupted before the first iteration: nothing to save\n");
        rc = 130;
        goto done;
    }
    st = nst_transfer(model, &content, styles, c.blend, c.nstyles, &c.o, &out);
    cli_end_line(&run);
    if (st != NST_OK && st != NST_ERR_CANCELLED) {
        fprintf(stderr, "nst: error: %s\n", nst_last_error());
        if (st == NST_ERR_ARGUMENT) {   /* the options, as the library judges them (e.g. too many scales) */
            fprintf(stderr, "Try 'nst --help' for more information.\n");
            rc = 2;
        }
        goto done;
    }
    if (st == NST_ERR_CANCELLED && !out.pixels) {
        fprintf(stderr, "nst: interrupted before the first iteration finished: nothing to save\n");
        rc = 130;
        goto done;
    }
    if (cli_save(c.out_path, &out, c.quality) != NST_OK) {
        fprintf(stderr, "nst: error: cannot write '%s': %s\n", c.out_path, nst_last_error());
        goto done;
    }
    if (st == NST_ERR_CANCELLED) {
        fprintf(stderr, "nst: saved the image as of iteration %d to '%s' (%dx%d)\n", run.last_iter, c.out_path,
                out.width, out.height);
        rc = 130;
    } else {
        if (!c.quiet) fprintf(stderr, "nst: wrote '%s' (%dx%d)\n", c.out_path, out.width, out.height);
        rc = 0;
    }

done:
    nst_image_free(&out);
    nst_image_free(&content);
    nst_image_free(&init_image);
    if (styles)
        for (i = 0; i < c.nstyles; i++) nst_image_free(&styles[i]);
    free(styles);
    cli_free_images(masks, c.nmasks);
    free(c.mask_paths);
    free(c.style_paths);
    free(c.style_list_copy);
    free(c.blend);
    free(c.layer_weights);
    nst_model_free(model);
    return rc;
}
