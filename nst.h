/* nst.h - v0.1 - neural style transfer in one C header
 *
 * Do this:
 *     #define NST_IMPLEMENTATION
 * before you include this file in *one* C or C++ file to create the implementation.
 * Every other file includes it without the define and sees the declarations only.
 *
 * =====================================================================================================
 * TABLE OF CONTENTS                                      (grep for the tag to jump to a section)
 *   1. Documentation: what it is, example, configuration macros     >>doc
 *   2. Public API                                                   >>public
 *   3. Implementation                                               >>impl
 *      3.1 platform: errors, allocation, threads, timers, crc32     >>platform
 *      3.2 cpu detection, GEMM: packing, micro-kernels, dispatch    >>cpu >>gemm
 *      3.3 tensors and scalar reference kernels                     >>tensor
 *      3.4 3x3 convolution fast paths, pooling                      >>conv
 *      3.5 VGG-19: layer table, .nstw reader/writer, random model   >>vgg
 *      3.6 losses: content, Gram style, total variation             >>loss
 *      3.7 optimisers: L-BFGS, Adam                                 >>lbfgs
 *      3.8 the transfer driver                                      >>transfer
 *      3.9 images: PNG, JPEG, PPM codecs, resampling, colour         >>image
 *      3.10 weight import: .pth (zip, legacy), .caffemodel, .npy/.npz >>import
 *   4. License                                                      >>license
 * =====================================================================================================
 *
 * >>doc
 * WHAT IT IS
 *   Gatys et al. style transfer: the pixels of an output image are optimised (L-BFGS or Adam) so that
 *   its VGG-19 features match a content photo (relu4_2) and the Gram matrices of a style painting
 *   (relu1_1 ... relu5_1), with a total-variation smoothness term. Losses and defaults follow
 *   jcjohnson/neural-style, so weights and settings carry over.
 *
 * EXAMPLE
 *     #define NST_IMPLEMENTATION
 *     #include "nst.h"
 *     int main(void) {
 *         nst_image content, style, out;
 *         nst_model *vgg;
 *         nst_options o;
 *         if (nst_image_load("photo.jpg", &content) || nst_image_load("painting.jpg", &style) ||
 *             nst_model_load("weights/vgg19.nstw", &vgg)) {
 *             fprintf(stderr, "%s\n", nst_last_error());
 *             return 1;
 *         }
 *         nst_options_init(&o);                 // 512 px, 1000 L-BFGS iterations, jcjohnson weights
 *         if (nst_transfer(vgg, &content, &style, NULL, 1, &o, &out) == NST_OK)
 *             nst_image_save("out.png", &out);
 *         nst_image_free(&out); nst_image_free(&content); nst_image_free(&style); nst_model_free(vgg);
 *         return 0;
 *     }
 *
 * CONFIGURATION (define before including the implementation)
 *   NST_STATIC            make every function static (private copy per translation unit)
 *   NST_MALLOC/NST_REALLOC/NST_FREE   allocation hooks: define all three or none
 *   NST_ASSERT(x)         internal invariants (default: assert); never used for bad input
 *   NST_NO_SIMD           scalar kernels only
 *   NST_NO_AVX512         never use the AVX-512 kernels
 *   NST_NO_IMAGE_IO       leave out the image codecs
 *   NST_NO_STDIO          no file access: the memory-only API
 *   OpenMP is used when the compiler enables it (_OPENMP) and ignored otherwise.
 *
 * ERRORS
 *   Every fallible function returns an nst_status (NST_OK == 0). On failure, nst_last_error() gives a
 *   message for the calling thread naming the problem. The library never prints, exits or aborts on
 *   bad input.
 *
 * THREADS
 *   Kernels use OpenMP with a fixed partition: the same inputs and thread count give the same bytes.
 *   The thread count is per calling thread (nst_set_threads) or per call (nst_options.threads);
 *   0 means OMP_NUM_THREADS, else all cores.
 */
#ifndef NST_H
#define NST_H

#include <stddef.h>
#include <stdint.h>

#define NST_VERSION_STRING "0.1.0"

#ifndef NSTDEF
#ifdef NST_STATIC
#if defined(__GNUC__) || defined(__clang__)
#define NSTDEF static __attribute__((unused))   /* a private copy need not use every function */
#else
#define NSTDEF static
#endif
#else
#define NSTDEF extern
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* =====================================================================================================
 * >>public  Public API
 * ===================================================================================================*/

/* ---- status and errors ---------------------------------------------------------------------------*/
typedef enum nst_status {
    NST_OK = 0,
    NST_ERR_ARGUMENT,     /* a parameter is out of range or inconsistent */
    NST_ERR_NOMEM,        /* an allocation failed, or the job would exceed the memory limit */
    NST_ERR_IO,           /* a file could not be opened, read or written */
    NST_ERR_FORMAT,       /* the bytes are not a valid file of the expected kind */
    NST_ERR_UNSUPPORTED,  /* valid, but a feature we do not implement */
    NST_ERR_CANCELLED,    /* the progress callback asked to stop */
    NST_ERR_LIMIT         /* the input exceeds a configured size limit */
} nst_status;

NSTDEF const char *nst_last_error(void);              /* message of the last failure on this thread */
NSTDEF const char *nst_status_string(nst_status s);   /* "NST_ERR_FORMAT: invalid file format", ... */
NSTDEF const char *nst_version(void);

/* Thread count used by calls that take none (nst_sgemm, the public kernels) on this thread.
 * 0 = OMP_NUM_THREADS if set, else all cores. Without OpenMP everything runs on one thread. */
NSTDEF void nst_set_threads(int n);
NSTDEF int  nst_get_threads(void);          /* the resolved count (>= 1) */

/* ---- CPU dispatch --------------------------------------------------------------------------------*/
typedef enum nst_arch {
    NST_ARCH_DEFAULT = 0,  /* best the CPU has, or $NST_ARCH */
    NST_ARCH_SCALAR,
    NST_ARCH_AVX2,         /* AVX2 + FMA */
    NST_ARCH_AVX512,       /* AVX-512F (+BW/DQ/VL) */
    NST_ARCH_NEON
} nst_arch;
NSTDEF nst_status  nst_set_arch(nst_arch a);   /* force a path; NST_ERR_UNSUPPORTED if the CPU lacks it */
NSTDEF nst_arch    nst_get_arch(void);         /* the path in use */
NSTDEF const char *nst_cpu_string(void);       /* e.g. "avx512 (AMD Zen 4: avx2 fma avx512f ...)" */

/* ---- GEMM ---------------------------------------------------------------------------------------
 * Row-major C = alpha * op(A) * op(B) + beta * C, like cblas_sgemm(CblasRowMajor, ...).
 * op(A) is m x k, op(B) is k x n. trans_a/trans_b nonzero = transposed. When beta == 0, C is not read. */
NSTDEF nst_status nst_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
                            const float *a, int lda, const float *b, int ldb, float beta,
                            float *c, int ldc);

/* ---- tensors and kernels --------------------------------------------------------------------------
 * Feature maps are float32, CHW (batch 1), 64-byte aligned. Filters are [cout][cin][3][3] (PyTorch). */
typedef struct nst_tensor {
    int c, h, w;
    float *data;
} nst_tensor;
NSTDEF nst_status nst_tensor_alloc(nst_tensor *t, int c, int h, int w);   /* zero-filled */
NSTDEF void       nst_tensor_free(nst_tensor *t);

/* 3x3, stride 1, zero padding 1. out[cout][h][w] = bias + sum w * in; relu != 0 clamps at 0. */
NSTDEF nst_status nst_conv3x3_forward(float *out, const float *in, const float *weight, const float *bias,
                                      int cin, int cout, int h, int w, int relu);
/* din[cin][h][w] = gradient of the convolution's input given dout[cout][h][w] (overwrites din). */
NSTDEF nst_status nst_conv3x3_backward_data(float *din, const float *dout, const float *weight,
                                            int cin, int cout, int h, int w);
/* g[c][c] = scale * F F^T for F = f[c][hw]. */
NSTDEF nst_status nst_gram(float *g, const float *f, int c, int hw, float scale);

/* ---- images --------------------------------------------------------------------------------------*/
typedef struct nst_image {
    int width, height, channels;   /* channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA */
    float *pixels;                 /* [0,1], interleaved, row-major, alpha not premultiplied */
} nst_image;

/* Limits checked before any allocation while decoding. Zero fields mean the defaults. */
typedef struct nst_image_limits {
    int    max_width, max_height;  /* default 65535 each */
    size_t max_pixels;             /* default 1 << 28 (268 megapixels) */
    size_t max_bytes;              /* largest decoded buffer in bytes; default 4 GiB */
} nst_image_limits;
NSTDEF void nst_image_set_limits(const nst_image_limits *l);   /* per calling thread; NULL = defaults */

NSTDEF nst_status nst_image_alloc(nst_image *img, int width, int height, int channels);
NSTDEF void       nst_image_free(nst_image *img);
NSTDEF nst_status nst_image_load(const char *path, nst_image *out);   /* PNG, JPEG, PPM/PGM by content */
NSTDEF nst_status nst_image_load_memory(const void *bytes, size_t n, nst_image *out);
NSTDEF nst_status nst_image_save(const char *path, const nst_image *img);   /* .png .jpg/.jpeg .ppm/.pgm */
NSTDEF nst_status nst_image_to_rgb(const nst_image *in, nst_image *out);   /* gray->RGB, alpha over white */
NSTDEF nst_status nst_image_resize(const nst_image *in, int w, int h, nst_image *out);

/* ---- the model: VGG-19 -----------------------------------------------------------------------------
 * Layers, in order (37): conv1_1 relu1_1 conv1_2 relu1_2 pool1 conv2_1 ... relu5_4 pool5. */
#define NST_VGG_LAYERS 37
#define NST_VGG_CONVS  16
NSTDEF const char *nst_layer_name(int index);        /* NULL when out of range */
NSTDEF int         nst_layer_index(const char *name); /* -1 when unknown */

typedef enum nst_pool { NST_POOL_DEFAULT = 0, NST_POOL_MAX, NST_POOL_AVG } nst_pool;

/* How pixels become network input: in[c] = (rgb01[src(c)] * scale - mean[c]) / std[c], where
 * rgb01 is RGB in [0,1] and src() swaps R and B when bgr is set. Caffe VGG: bgr=1, scale=255,
 * mean=(103.939,116.779,123.68), std=1. torchvision: bgr=0, scale=1, mean=(.485,.456,.406),
 * std=(.229,.224,.225). */
typedef struct nst_input_convention {
    int   bgr;
    float scale;
    float mean[3], std[3];
} nst_input_convention;

typedef struct nst_model nst_model;
NSTDEF nst_status nst_model_load(const char *path, nst_model **out);      /* .nstw, or any importable format */
NSTDEF nst_status nst_model_load_memory(const void *bytes, size_t n, nst_model **out);
NSTDEF nst_status nst_model_random(unsigned long long seed, nst_model **out);
NSTDEF nst_status nst_model_save(const nst_model *m, const char *path, int half);   /* .nstw, f32 or f16 */
NSTDEF void       nst_model_free(nst_model *m);
NSTDEF int        nst_model_convs(const nst_model *m);        /* conv layers present (1..16) */
NSTDEF int        nst_model_is_random(const nst_model *m);
NSTDEF nst_pool   nst_model_default_pool(const nst_model *m);  /* avg for the random model, else max */
NSTDEF nst_input_convention nst_model_convention(const nst_model *m);
/* Conv layer i (0..15): weight [cout][cin][3][3] and bias [cout], read-only, f32. */
NSTDEF nst_status nst_model_conv(const nst_model *m, int i, const float **weight, const float **bias,
                                 int *cin, int *cout);

/* ---- the transfer ----------------------------------------------------------------------------------*/
typedef enum nst_init { NST_INIT_DEFAULT = 0, NST_INIT_RANDOM, NST_INIT_CONTENT, NST_INIT_IMAGE } nst_init;
typedef enum nst_optimizer { NST_OPT_DEFAULT = 0, NST_OPT_LBFGS, NST_OPT_ADAM } nst_optimizer;
typedef enum nst_colors { NST_COLORS_DEFAULT = 0, NST_COLORS_STYLE, NST_COLORS_LUMINANCE,
                          NST_COLORS_HISTOGRAM } nst_colors;

typedef struct nst_progress {
    int   iteration, iterations;       /* 1-based function evaluation count, total */
    int   scale, scales;               /* multi-scale: current pass (1-based) and number of passes */
    double total, content, style, tv;  /* weighted losses at this evaluation */
    double seconds, eta_seconds;       /* elapsed in this run, estimated remaining */
    const nst_image *image;            /* current image (RGB [0,1]) when the driver has one ready, else NULL */
} nst_progress;

typedef struct nst_options {
    int   iterations;                  /* 1000 */
    int   image_size;                  /* 512: longest side of the output; 0 = content size */
    float content_weight;              /* 5 */
    float style_weight;                /* 100 */
    float tv_weight;                   /* 1e-3 */
    const char *content_layers;        /* "relu4_2" */
    const char *style_layers;          /* "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1" */
    const float *style_layer_weights;  /* one per style layer, NULL = all 1 */
    float style_scale;                 /* 1: style images resized to style_scale * image_size */
    nst_init init;                     /* random */
    const nst_image *init_image;       /* for NST_INIT_IMAGE */
    nst_optimizer optimizer;           /* lbfgs */
    int   lbfgs_history;               /* 100 */
    int   lbfgs_line_search;           /* 0: torch optim.lbfgs fixed step; 1: backtracking (Armijo) */
    int   lbfgs_history_bf16;          /* 1 (default): L-BFGS history in bfloat16, half the memory */
    float learning_rate;               /* 1 for L-BFGS, 10 for Adam (jcjohnson) */
    nst_pool pool;                     /* the model's default */
    int   normalize_gradients;         /* 0: jcjohnson -normalize_gradients */
    nst_colors colors;                 /* keep the style's colours (default) or the content's */
    int   scales;                      /* coarse-to-fine passes: 1 = single scale */
    unsigned long long seed;           /* 0 */
    int   threads;                     /* 0 = nst_get_threads() */
    size_t memory_limit;               /* bytes; 0 = available memory */
    int   progress_every;              /* call progress every N evaluations (1) */
    int (*progress)(const nst_progress *p, void *user);  /* nonzero return cancels */
    void *user;
} nst_options;

NSTDEF void       nst_options_init(nst_options *o);
/* Paints content in the style of styles[0..nstyles-1] (blend weights, NULL = equal). out is RGB. */
NSTDEF nst_status nst_transfer(const nst_model *m, const nst_image *content,
                               const nst_image *styles, const float *blend, int nstyles,
                               const nst_options *o, nst_image *out);
/* Peak memory in bytes nst_transfer would use for these inputs (an estimate within ~10%). */
NSTDEF size_t     nst_transfer_memory(const nst_model *m, const nst_image *content,
                                      const nst_image *styles, int nstyles, const nst_options *o);

/* ---- the objective, for tools that compare with other implementations -----------------------------
 * Pixels are planar RGB in 0..255, [3][h][w]. The objective is built with the same losses as
 * nst_transfer (content, styles and sizes as given, no resizing). */
typedef struct nst_objective nst_objective;
NSTDEF nst_status nst_objective_create(const nst_model *m, const nst_image *content,
                                       const nst_image *styles, const float *blend, int nstyles,
                                       const nst_options *o, nst_objective **out);
typedef struct nst_losses {
    double total;                      /* content + style + tv, weighted */
    double content, style, tv;         /* weighted terms */
    double content_raw, style_raw, tv_raw;  /* the same without content/style/tv weight */
} nst_losses;
/* Evaluates at pixels; grad (may be NULL) receives d total / d pixels, [3][h][w]. */
NSTDEF nst_status nst_objective_eval(nst_objective *obj, const float *pixels, nst_losses *l, float *grad);
/* After an eval: features of the evaluated image at a loss layer (pointer valid until the next eval). */
NSTDEF nst_status nst_objective_features(const nst_objective *obj, const char *layer,
                                         int *c, int *h, int *w, const float **data);
/* After an eval: the Gram matrix (c x c, normalised by c*h*w) at a style layer. */
NSTDEF nst_status nst_objective_gram(const nst_objective *obj, const char *layer, int *c, const float **data);
NSTDEF void       nst_objective_free(nst_objective *obj);

/* ---- optimisers -----------------------------------------------------------------------------------
 * Minimise f over x[n]. The callback returns f(x) and writes the gradient; nonzero status aborts. */
typedef nst_status (*nst_value_grad_fn)(const float *x, float *grad, double *value, void *user);
typedef int (*nst_iter_fn)(int iteration, double value, const float *x, void *user); /* nonzero cancels */

typedef struct nst_lbfgs_options {
    int    max_iter;           /* 100 */
    int    max_eval;           /* 0 = max_iter * 1.25, as torch */
    int    history;            /* 100 (torch optim.lbfgs nCorrection) */
    double learning_rate;      /* 1 */
    double tol_fun, tol_x;     /* 1e-5, 1e-9 (torch); negative disables, as jcjohnson does */
    int    line_search;        /* 0: fixed step as torch; 1: backtracking Armijo */
    int    relative_curvature; /* 0: drop pairs with s'y <= 1e-10, as torch. 1: with s'y <= 1e-10 y'y, which
                                  does not depend on the loss's scale; the two agree whenever y'y >= 1, as
                                  with Caffe VGG-19 and jcjohnson's weights, but torch's absolute test
                                  degrades to plain gradient descent when losses are small (random or
                                  torchvision weights, tiny images). nst_transfer uses 1. */
    int    history_bf16;       /* 1: store the s/y history in bfloat16, half the memory (default 0) */
    nst_iter_fn on_iter;
    void  *user;               /* passed to on_iter */
} nst_lbfgs_options;
NSTDEF void       nst_lbfgs_options_init(nst_lbfgs_options *o);
/* Runs L-BFGS in place on x. *evals (may be NULL) receives the number of function evaluations. */
NSTDEF nst_status nst_lbfgs(float *x, size_t n, nst_value_grad_fn fg, void *user,
                            const nst_lbfgs_options *o, double *final_value, int *evals);

typedef struct nst_adam_options {
    int    max_iter;           /* 100 */
    double learning_rate;      /* 1e-3 */
    double beta1, beta2, eps;  /* 0.9, 0.999, 1e-8 */
    nst_iter_fn on_iter;
    void  *user;
} nst_adam_options;
NSTDEF void       nst_adam_options_init(nst_adam_options *o);
NSTDEF nst_status nst_adam(float *x, size_t n, nst_value_grad_fn fg, void *user,
                           const nst_adam_options *o, double *final_value);

/* ---- colour helpers --------------------------------------------------------------------------------*/
/* Keeps the luminance (YIQ Y) of src and the chroma of colors; both RGB, same size. */
NSTDEF nst_status nst_image_luminance_transfer(const nst_image *src_luma, const nst_image *colors,
                                               nst_image *out);
/* Affine colour transform of img so its RGB mean and covariance match those of target. */
NSTDEF nst_status nst_image_match_colors(const nst_image *img, const nst_image *target, nst_image *out);

#include "src/image_api.h"
#include "src/import_api.h"

#ifdef __cplusplus
}
#endif
#endif /* NST_H */

/* =====================================================================================================
 * >>impl  Implementation
 * ===================================================================================================*/
#ifdef NST_IMPLEMENTATION
#ifndef NST__IMPL_DONE
#define NST__IMPL_DONE

#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <stdarg.h>
#include <math.h>
#include <float.h>
#include <limits.h>
#include <time.h>
#ifndef NST_ASSERT
#include <assert.h>
#define NST_ASSERT(x) assert(x)
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(NST_MALLOC) && defined(NST_FREE) && defined(NST_REALLOC)
#elif !defined(NST_MALLOC) && !defined(NST_FREE) && !defined(NST_REALLOC)
#define NST_MALLOC(sz)     malloc(sz)
#define NST_REALLOC(p, sz) realloc(p, sz)
#define NST_FREE(p)        free(p)
#else
#error "define all of NST_MALLOC, NST_REALLOC and NST_FREE, or none of them"
#endif

/* =====================================================================================================
 * >>platform  errors, allocation, threads, timers, checksums
 * ===================================================================================================*/
#if defined(__cplusplus) && __cplusplus >= 201103L
#define NST__TLS thread_local
#elif defined(_MSC_VER)
#define NST__TLS __declspec(thread)
#else
#define NST__TLS __thread
#endif

#if defined(__GNUC__) || defined(__clang__)
#define NST__PRINTF(f, a) __attribute__((format(printf, f, a)))
#define NST__UNUSED __attribute__((unused))
#else
#define NST__PRINTF(f, a)
#define NST__UNUSED
#endif
#define NST__MIN(a, b) ((a) < (b) ? (a) : (b))
#define NST__MAX(a, b) ((a) > (b) ? (a) : (b))

static NST__TLS char nst__errbuf[512];
static NST__TLS int  nst__threads_setting;

/* Records a message for nst_last_error() and returns the code, so callers write
 * `return nst__err(NST_ERR_FORMAT, "png: bad CRC in chunk %s", name);` */
static nst_status nst__err(nst_status code, const char *fmt, ...) NST__PRINTF(2, 3);
static nst_status nst__err(nst_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(nst__errbuf, sizeof nst__errbuf, fmt, ap);
    va_end(ap);
    return code;
}

NSTDEF const char *nst_last_error(void) { return nst__errbuf; }
NSTDEF const char *nst_version(void) { return NST_VERSION_STRING; }

NSTDEF const char *nst_status_string(nst_status s) {
    switch (s) {
    case NST_OK: return "NST_OK: success";
    case NST_ERR_ARGUMENT: return "NST_ERR_ARGUMENT: invalid argument";
    case NST_ERR_NOMEM: return "NST_ERR_NOMEM: out of memory";
    case NST_ERR_IO: return "NST_ERR_IO: input/output error";
    case NST_ERR_FORMAT: return "NST_ERR_FORMAT: invalid file format";
    case NST_ERR_UNSUPPORTED: return "NST_ERR_UNSUPPORTED: unsupported feature";
    case NST_ERR_CANCELLED: return "NST_ERR_CANCELLED: cancelled";
    case NST_ERR_LIMIT: return "NST_ERR_LIMIT: size limit exceeded";
    }
    return "unknown status";
}

static NST__UNUSED void *nst__malloc(size_t n) { return NST_MALLOC(n ? n : 1); }
static NST__UNUSED void *nst__calloc(size_t count, size_t size) {
    void *p;
    if (size && count > SIZE_MAX / size) return NULL;
    p = NST_MALLOC(count * size > 0 ? count * size : 1);
    if (p) memset(p, 0, count * size);
    return p;
}
static NST__UNUSED void *nst__realloc(void *p, size_t n) { return NST_REALLOC(p, n ? n : 1); }
static NST__UNUSED void nst__free(void *p) { if (p) NST_FREE(p); }

/* 64-byte aligned blocks on top of the user's allocator: the byte before the block holds the offset. */
static NST__UNUSED void *nst__aligned_alloc(size_t n) {
    unsigned char *raw, *p;
    if (n > SIZE_MAX - 64) return NULL;
    raw = (unsigned char *)NST_MALLOC(n + 64);
    if (!raw) return NULL;
    p = (unsigned char *)(((uintptr_t)raw + 64) & ~(uintptr_t)63);
    p[-1] = (unsigned char)(p - raw);
    return p;
}
static NST__UNUSED void nst__aligned_free(void *p) {
    unsigned char *q = (unsigned char *)p;
    if (q) NST_FREE(q - q[-1]);
}

/* size_t products with overflow detection: returns 0 when a*b would overflow. */
static NST__UNUSED int nst__mul_ok(size_t a, size_t b, size_t *out) {
    if (b && a > SIZE_MAX / b) return 0;
    *out = a * b;
    return 1;
}

NSTDEF void nst_set_threads(int n) { nst__threads_setting = n < 0 ? 0 : n; }

/* Resolves a requested count (0 = default) to what will actually run. */
static int nst__resolve_threads(int n) {
#ifdef _OPENMP
    if (n <= 0) n = nst__threads_setting;
    if (n <= 0) {
        const char *e = getenv("OMP_NUM_THREADS");
        n = e ? atoi(e) : 0;
        if (n <= 0) n = omp_get_num_procs();
    }
    return n < 1 ? 1 : n;
#else
    (void)n;
    return 1;
#endif
}
NSTDEF int nst_get_threads(void) { return nst__resolve_threads(0); }

static NST__UNUSED double nst__now(void) {
#ifdef _OPENMP
    return omp_get_wtime();
#elif defined(CLOCK_MONOTONIC) && !defined(_WIN32)
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
#else
    return (double)clock() / CLOCKS_PER_SEC;
#endif
}

/* CRC-32 (IEEE, as PNG, zip and .nstw use it), table built on first use. */
static NST__UNUSED uint32_t nst__crc32(uint32_t crc, const void *data, size_t n) {
    static uint32_t table[256];
    static volatile int ready = 0;
    const unsigned char *p = (const unsigned char *)data;
    size_t i;
    if (!ready) {   /* racing threads compute identical tables, so the race is benign */
        uint32_t c, k, j;
        for (k = 0; k < 256; k++) {
            c = k;
            for (j = 0; j < 8; j++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[k] = c;
        }
        ready = 1;
    }
    crc = ~crc;
    for (i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/* Little-endian reads/writes for the file formats, independent of host byte order. */
static NST__UNUSED uint16_t nst__rd16le(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static NST__UNUSED uint32_t nst__rd32le(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static NST__UNUSED uint64_t nst__rd64le(const unsigned char *p) {
    return (uint64_t)nst__rd32le(p) | ((uint64_t)nst__rd32le(p + 4) << 32);
}
static NST__UNUSED uint32_t nst__rd32be(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}
static NST__UNUSED void nst__wr32le(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}
static NST__UNUSED void nst__wr64le(unsigned char *p, uint64_t v) {
    nst__wr32le(p, (uint32_t)v); nst__wr32le(p + 4, (uint32_t)(v >> 32));
}
static NST__UNUSED float nst__f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static NST__UNUSED uint32_t nst__bits_from_f32(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* IEEE half <-> float, exact for every half (subnormals, inf, nan); float->half rounds to nearest even. */
static NST__UNUSED float nst__half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF;
    if (exp == 0) {
        float f = (float)man * (1.0f / 16777216.0f);   /* man * 2^-24 */
        return sign ? -f : f;
    }
    if (exp == 31) return nst__f32_from_bits(sign | 0x7F800000u | (man << 13));
    return nst__f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}
static NST__UNUSED uint16_t nst__float_to_half(float f) {
    uint32_t u = nst__bits_from_f32(f), sign = (u >> 16) & 0x8000, rest = u & 0x7FFFFFFFu;
    if (rest >= 0x7F800000u) return (uint16_t)(sign | 0x7C00 | (rest > 0x7F800000u ? 0x200 : 0));
    if (rest >= 0x477FF000u) return (uint16_t)(sign | 0x7C00);   /* rounds to >= 65520: inf */
    if (rest < 0x38800000u) {                                       /* below 2^-14: subnormal half */
        float a = nst__f32_from_bits(rest) * 16777216.0f;         /* in units of 2^-24 */
        uint32_t m = (uint32_t)a;
        float frac = a - (float)m;
        if (frac > 0.5f || (frac == 0.5f && (m & 1))) m++;
        return (uint16_t)(sign | m);
    }
    {
        uint32_t e = (rest >> 23) - 112, m = rest & 0x7FFFFF, h = (e << 10) | (m >> 13), r = m & 0x1FFF;
        if (r > 0x1000 || (r == 0x1000 && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
}

#if !defined(NST_NO_STDIO)
/* Reads a whole file, refusing ones larger than max_bytes. */
static NST__UNUSED nst_status nst__read_file(const char *path, size_t max_bytes, unsigned char **out, size_t *n) {
    FILE *f;
    long len;
    unsigned char *buf;
    *out = NULL; *n = 0;
    f = fopen(path, "rb");
    if (!f) return nst__err(NST_ERR_IO, "cannot open '%s'", path);
    if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return nst__err(NST_ERR_IO, "cannot determine the size of '%s'", path);
    }
    if ((unsigned long)len > max_bytes) {
        fclose(f);
        return nst__err(NST_ERR_LIMIT, "'%s' is %ld bytes, above the limit of %lu", path, len,
                        (unsigned long)max_bytes);
    }
    buf = (unsigned char *)nst__malloc((size_t)len);
    if (!buf) { fclose(f); return nst__err(NST_ERR_NOMEM, "out of memory reading '%s'", path); }
    if (len && fread(buf, 1, (size_t)len, f) != (size_t)len) {
        fclose(f); nst__free(buf);
        return nst__err(NST_ERR_IO, "read error on '%s'", path);
    }
    fclose(f);
    *out = buf; *n = (size_t)len;
    return NST_OK;
}

/* Writes to "<path>.tmp-<pid-ish>" and renames into place: a failure never leaves a partial file. */
static NST__UNUSED nst_status nst__write_file_atomic(const char *path, const void *data, size_t n) {
    char tmp[4096];
    FILE *f;
    int ok;
    if (strlen(path) > sizeof tmp - 32) return nst__err(NST_ERR_ARGUMENT, "path too long: '%s'", path);
    snprintf(tmp, sizeof tmp, "%s.tmp%lu", path, (unsigned long)((uintptr_t)&tmp >> 4) & 0xFFFFFu);
    f = fopen(tmp, "wb");
    if (!f) return nst__err(NST_ERR_IO, "cannot create '%s'", tmp);
    ok = fwrite(data, 1, n, f) == n;
    ok = (fclose(f) == 0) && ok;
    if (!ok) { remove(tmp); return nst__err(NST_ERR_IO, "write error on '%s' (disk full?)", tmp); }
#ifdef _WIN32
    remove(path);
#endif
    if (rename(tmp, path) != 0) {
        remove(tmp);
        return nst__err(NST_ERR_IO, "cannot rename '%s' to '%s'", tmp, path);
    }
    return NST_OK;
}
#endif

/* Growable byte buffer for the encoders and writers. On allocation failure it latches `failed`. */
typedef struct nst__buf {
    unsigned char *data;
    size_t len, cap;
    int failed;
} nst__buf;
static NST__UNUSED int nst__buf_reserve(nst__buf *b, size_t extra) {
    size_t need, cap;
    if (b->failed) return 0;
    if (extra > SIZE_MAX - b->len) { b->failed = 1; return 0; }
    need = b->len + extra;
    if (need <= b->cap) return 1;
    cap = b->cap ? b->cap : 256;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    {
        unsigned char *p = (unsigned char *)nst__realloc(b->data, cap);
        if (!p) { b->failed = 1; return 0; }
        b->data = p; b->cap = cap;
    }
    return 1;
}
static NST__UNUSED void nst__buf_put(nst__buf *b, const void *p, size_t n) {
    if (n && nst__buf_reserve(b, n)) { memcpy(b->data + b->len, p, n); b->len += n; }
}
static NST__UNUSED void nst__buf_byte(nst__buf *b, int v) {
    unsigned char c = (unsigned char)v;
    nst__buf_put(b, &c, 1);
}
static NST__UNUSED void nst__buf_free(nst__buf *b) { nst__free(b->data); b->data = NULL; b->len = b->cap = 0; }

/* Deterministic RNG (splitmix64) for the random model, init noise and tests. */
typedef struct nst__rng { uint64_t s; } nst__rng;
static NST__UNUSED uint64_t nst__rng_next(nst__rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static NST__UNUSED double nst__rng_uniform(nst__rng *r) { return (double)(nst__rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }
static NST__UNUSED double nst__rng_normal(nst__rng *r) {   /* Box-Muller; one value per call keeps streams simple */
    double u1 = nst__rng_uniform(r), u2 = nst__rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* =====================================================================================================
 * >>cpu >>gemm  CPU detection, GEMM
 * ===================================================================================================*/
#include "src/gemm.h"

/* =====================================================================================================
 * >>tensor  tensors and scalar reference kernels
 * ===================================================================================================*/
#include "src/ref.h"

/* =====================================================================================================
 * >>conv  3x3 convolution fast paths, pooling
 * ===================================================================================================*/
#include "src/conv.h"

/* =====================================================================================================
 * >>vgg >>loss >>lbfgs >>transfer
 * ===================================================================================================*/
#include "src/core.h"

/* =====================================================================================================
 * >>image  PNG, JPEG, PPM codecs, zlib, resampling, colour
 * ===================================================================================================*/
#include "src/image.h"
#include "src/jpeg.h"

/* =====================================================================================================
 * >>import  weight files of other libraries: .pth, .caffemodel, .npy/.npz
 * ===================================================================================================*/
#include "src/import.h"

#endif /* NST__IMPL_DONE */
#endif /* NST_IMPLEMENTATION */

/* =====================================================================================================
 * >>license
 * MIT License. Copyright (c) 2026 the nst authors.
 * Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
 * associated documentation files (the "Software"), to deal in the Software without restriction,
 * including without limitation the rights to use, copy, modify, merge, publish, distribute,
 * sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
 * furnished to do so, subject to the following conditions: The above copyright notice and this
 * permission notice shall be included in all copies or substantial portions of the Software.
 * THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED.
 * ===================================================================================================*/
