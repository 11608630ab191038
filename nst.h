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
 *   NST_NO_HUGEPAGES      on Linux, do not ask for transparent huge pages on large buffers (madvise)
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
NSTDEF float      nst_model_default_tv_weight(const nst_model *m);  /* 1e-6 for the random model, else 1e-3 */
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
    int   iteration, iterations;       /* 1-based iteration (1 = the starting point; L-BFGS: the
                                          evaluations a guard or line search adds are not counted), total */
    int   scale, scales;               /* multi-scale: current pass (1-based) and number of passes */
    double total, content, style, tv;  /* weighted losses at this iteration's point */
    double seconds, eta_seconds;       /* elapsed since nst_transfer started, estimated remaining for the
                                          whole call (later scales of --scales from this one's time per
                                          pixel) */
    const nst_image *image;            /* current image (RGB [0,1]) when the driver has one ready, else NULL */
} nst_progress;

typedef struct nst_options {
    int   iterations;                  /* 1000 */
    int   image_size;                  /* 512: longest side of the output; 0 = content size */
    float content_weight;              /* 5 */
    float style_weight;                /* 100 */
    float tv_weight;                   /* < 0 (the default): the model's, 1e-3 (1e-6 for the random model) */
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
    /* Spatial control (Gatys et al. 2017, guided Gram matrices): NULL, or one mask per style image, in
     * the same order. A mask is any image (its luminance counts, alpha over white; white = this style
     * applies), resized to the output. At each pixel the masks are normalised to sum to 1; where all
     * are black the blend weights apply. At each style layer the masks are area-averaged to the
     * layer's size (as average pooling does), and each style's Gram of the mask-weighted features,
     * normalised by the sum of the squared mask, is matched to that style's own Gram; its loss counts
     * in proportion to the style's share of the mask. One all-white mask is the unmasked run. */
    const nst_image *style_masks;
    /* Short-term temporal consistency for video frames (Ruder et al. 2016, without optical flow):
     * temporal_weight * mean over pixels of c_p * |x_p - prev_p|^2 (0..255 units), prev = the previous
     * frame's output (temporal_image), c_p = 1 where the content did not change from the previous
     * content frame (temporal_content; NULL = unchanged everywhere) and falling linearly to 0 where a
     * channel changed by 10% of the range or more. 0 (the default) or no temporal_image = off. */
    const nst_image *temporal_image;
    const nst_image *temporal_content;
    float temporal_weight;
    /* Style Grams computed once and reused: NULL, or a cache from nst_style_cache_create shared by the
     * calls of a batch (same model; one call at a time). Entries are keyed by the style's pixels at the
     * size used, the layer and the pooling, so any change simply computes new ones. */
    struct nst_style_cache *style_cache;
    /* Tiled evaluation for images larger than memory allows (exact: the same losses and gradient as
     * the whole image, up to float rounding). The image is cut into tiles of at most `tile` x `tile`
     * pixels (rounded down to the pooling grid, 16 px for relu5_1), each run with a halo covering the
     * receptive field of the deepest loss layer (70 px for relu5_1, narrowing with depth). > 0: tiles of
     * that size when the image (or a style image) is larger; 0: never tile; < 0 (nst_options_init's
     * default): nst_transfer tiles only when the whole image would exceed memory_limit (see
     * nst_transfer_plan). */
    int   tile;
    /* Iterations per coarse-to-fine pass (nst_options.scales), coarsest first: NULL (the default) runs
     * `iterations` at every scale; else nscale_iterations counts (each >= 1), the last repeating when
     * there are fewer than scales. Few iterations at the top scales make 4096 px practical. */
    const int *scale_iterations;
    int   nscale_iterations;
    /* Tiled runs: the deep layers' transformed convolution filters (which an untiled evaluation makes
     * once per call) kept for the objective's life instead of made per tile and pass: ~300 MB more for
     * relu5_1. 0 (nst_options_init's default): per tile; 1: keep; < 0: keep when it fits (nst_transfer_plan
     * drops it before shrinking a tile). Measured on Zen 3 (AVX2), 1024 px in 384 px tiles: no gain
     * (bench/bench_tiling.c), hence off by default. */
    int   tile_keep_filters;
} nst_options;

typedef struct nst_style_cache nst_style_cache;
NSTDEF nst_status nst_style_cache_create(nst_style_cache **out);
NSTDEF void       nst_style_cache_free(nst_style_cache *c);
NSTDEF int        nst_style_cache_hits(const nst_style_cache *c);   /* style networks skipped so far */

NSTDEF void       nst_options_init(nst_options *o);
/* Paints content in the style of styles[0..nstyles-1] (blend weights, NULL = equal). out is RGB. */
NSTDEF nst_status nst_transfer(const nst_model *m, const nst_image *content,
                               const nst_image *styles, const float *blend, int nstyles,
                               const nst_options *o, nst_image *out);
/* Peak memory in bytes of a process running nst_transfer on these inputs: the model, the inputs, every
 * buffer of the run and the runtime (measured peaks are within -10%/+15% of it, tests/test_memory.c). */
NSTDEF size_t     nst_transfer_memory(const nst_model *m, const nst_image *content,
                                      const nst_image *styles, int nstyles, const nst_options *o);
/* Resolves what nst_transfer does by itself when o->tile < 0: under o->memory_limit (0 = available
 * memory) it sets o->tile to 0 when the whole image fits, else to the largest tile that fits; when no
 * tile fits with o->lbfgs_history, it shortens the history (not below 5). NST_ERR_NOMEM, naming the
 * largest --size that would fit, when nothing does. With o->tile >= 0 it changes nothing. */
NSTDEF nst_status nst_transfer_plan(const nst_model *m, const nst_image *content, const nst_image *styles,
                                    int nstyles, nst_options *o);

/* ---- the objective, for tools that compare with other implementations -----------------------------
 * Pixels are planar RGB in 0..255, [3][h][w]. The objective is built with the same losses as
 * nst_transfer (content, styles and sizes as given, no resizing). With o->tile > 0 and an image larger
 * than one tile, targets and evaluations run tile by tile (nst_options.tile); features are then not
 * kept for the whole image (nst_objective_features fails), Grams are. */
typedef struct nst_objective nst_objective;
NSTDEF nst_status nst_objective_create(const nst_model *m, const nst_image *content,
                                       const nst_image *styles, const float *blend, int nstyles,
                                       const nst_options *o, nst_objective **out);
typedef struct nst_losses {
    double total;                      /* content + style + tv, weighted */
    double content, style, tv;         /* weighted terms */
    double content_raw, style_raw, tv_raw;  /* the same without content/style/tv weight */
    double temporal, temporal_raw;     /* temporal consistency (nst_options.temporal_weight); in total */
} nst_losses;
/* Evaluates at pixels; grad (may be NULL) receives d total / d pixels, [3][h][w]. */
NSTDEF nst_status nst_objective_eval(nst_objective *obj, const float *pixels, nst_losses *l, float *grad);
/* After an eval: features of the evaluated image at a loss layer. The backward reuses the feature memory,
 * so this may rerun the forward up to the layer: the pointer is valid until the next eval or features call,
 * and calls on one objective must not run concurrently. */
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
    int    threads;            /* for the vector operations; 0 = nst_get_threads() */
    int    guard;              /* 1: halve a fixed step that more than doubles the loss, and evaluate
                                  after the last step too (default 0: exactly torch) */
    double first_step;         /* 0: torch's first step, lr * min(1, 1/|g|_1). > 0: that step, but moving x
                                  by at least this much on average (mean |dx|): torch's shrinks as 1/n, and
                                  on a 1-megapixel image it is below float rounding, so the first iteration
                                  is lost and the second starts without curvature. Also, until a pair is
                                  kept (s'y > 0), each step moves x as much as the last, 4x as much after
                                  negative curvature (from noise the loss is concave at first) */
    double *curvature;         /* optional, in and out. In: *curvature > 0 starts warm, the first direction
                                  is -(*curvature) g with the full step (e.g. the s'y/y'y of a coarser
                                  scale); then first_step is not used. Out: the last s'y/y'y measured
                                  (unchanged if no pair was accepted) */
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

/* ---- images: options beyond the basic calls ------------------------------------------------------
 * Every options struct follows one rule: a zeroed struct (or a NULL pointer) means the defaults. */

/* Container formats. NST_IMAGE_AUTO = from the bytes when reading, from the extension when saving. */
typedef enum nst_image_format {
    NST_IMAGE_AUTO = 0,
    NST_IMAGE_PNG,
    NST_IMAGE_JPEG,
    NST_IMAGE_PPM,        /* P6 (P3 with pnm_ascii): RGB; alpha is composited over white */
    NST_IMAGE_PGM,        /* P5 (P2 with pnm_ascii): gray; colour becomes Rec.601 luma */
    NST_IMAGE_PAM,        /* P7: the image's own channels, alpha kept */
    NST_IMAGE_UNKNOWN
} nst_image_format;

/* Detects the format from the first bytes: PNG signature, JPEG SOI (FF D8 FF), "P2".."P7".
 * NST_IMAGE_UNKNOWN for anything else. PPM, PGM and PAM all report as the netpbm kind they are. */
NSTDEF nst_image_format nst_image_detect_format(const void *bytes, size_t n);
/* The format implied by a file name's extension (case-insensitive): .png .jpg .jpeg .jpe .ppm .pnm
 * .pgm .pam; NST_IMAGE_UNKNOWN otherwise. */
NSTDEF nst_image_format nst_image_format_from_path(const char *path);

typedef struct nst_image_load_options {
    int ignore_checksums;   /* 1: skip the PNG CRC-32 and zlib Adler-32 checks (salvage damaged files) */
} nst_image_load_options;
NSTDEF nst_status nst_image_load_ex(const char *path, const nst_image_load_options *o, nst_image *out);
NSTDEF nst_status nst_image_load_memory_ex(const void *bytes, size_t n, const nst_image_load_options *o,
                                           nst_image *out);

typedef struct nst_image_save_options {
    nst_image_format format;   /* AUTO: from the path's extension (nst_image_save_ex), PNG (nst_image_encode) */
    int quality;               /* JPEG 1..100; 0 = 90 */
    int subsampling;           /* JPEG chroma: 420 or 444; 0 = 420 */
    int bits;                  /* PNG and PPM/PGM/PAM sample depth: 8 or 16; 0 = 8 */
    int compression;           /* PNG deflate level 1..9; 0 = 6; -1 = no compression (stored blocks) */
    int pnm_ascii;             /* 1: plain P2/P3 instead of binary P5/P6 */
} nst_image_save_options;
NSTDEF nst_status nst_image_save_ex(const char *path, const nst_image *img, const nst_image_save_options *o);
/* Encodes into memory. *bytes is allocated with the library's allocator: release it with
 * nst_image_free_encoded. */
NSTDEF nst_status nst_image_encode(const nst_image *img, const nst_image_save_options *o,
                                   unsigned char **bytes, size_t *n);
NSTDEF void       nst_image_free_encoded(unsigned char *bytes);

/* Resampling filters. Downscaling widens the filter by the ratio (no aliasing); upscaling
 * interpolates with it. DEFAULT = CUBIC. */
typedef enum nst_resize_filter {
    NST_FILTER_DEFAULT = 0,
    NST_FILTER_BOX,        /* area average when downscaling, nearest neighbour when upscaling */
    NST_FILTER_TRIANGLE,   /* bilinear */
    NST_FILTER_CUBIC,      /* Catmull-Rom (Keys a = -0.5): "bicubic", sharp */
    NST_FILTER_MITCHELL,   /* Mitchell-Netravali B = C = 1/3: softer, least ringing */
    NST_FILTER_LANCZOS3    /* windowed sinc, 3 lobes: sharpest, some ringing */
} nst_resize_filter;
typedef struct nst_resize_options {
    nst_resize_filter filter;
    int linear_light;      /* 1: decode sRGB to linear light, filter, encode back (alpha stays linear) */
} nst_resize_options;
/* Like nst_image_resize with a choice of filter. Alpha is premultiplied while filtering, so transparent
 * pixels do not bleed colour; the result is clamped to [0,1]. Any size 1..limits both ways. As with every
 * image function here, out receives a new image and must not be the input's struct. */
NSTDEF nst_status nst_image_resize_ex(const nst_image *in, int w, int h, const nst_resize_options *o,
                                      nst_image *out);

/* Colour matching variants (nst_image_match_colors uses NST_MATCH_PCA). Both map img's RGB mean and
 * covariance exactly onto target's; they differ in the rotation they pick (Gatys et al. 2017, sec. 5). */
typedef enum nst_match_mode {
    NST_MATCH_DEFAULT = 0,
    NST_MATCH_PCA,         /* A = Ct^1/2 Ci^-1/2 (symmetric square roots): the least colour rotation */
    NST_MATCH_CHOLESKY     /* A = Lt Li^-1 with C = L L^T */
} nst_match_mode;
NSTDEF nst_status nst_image_match_colors_ex(const nst_image *img, const nst_image *target, nst_match_mode mode,
                                            nst_image *out);
/* ---- weight import: VGG-19 files of other libraries ------------------------------------------------
 * nst_model_load reads these too (and refuses a file that does not imply its input convention);
 * the calls below add options and report what was found, for tools such as nst-convert. */
typedef struct nst_import_options {    /* zero-initialised = defaults */
    int all_layers;                    /* 0: conv1_1..conv5_1 (all style transfer uses); 1: all 16 */
    int set_convention;                /* nonzero: use `convention` instead of what the file implies */
    nst_input_convention convention;
} nst_import_options;

typedef struct nst_import_info {
    char format[48];                   /* "pytorch zip (torchvision names)", "caffe v1 (layers)", "npz", ... */
    int  convention_known;             /* the file or its format implies the input convention */
    nst_input_convention convention;   /* the convention the model got */
    int  convs;                        /* conv layers imported, from conv1_1 on */
    int  cin[NST_VGG_CONVS], cout[NST_VGG_CONVS];
} nst_import_info;

/* PyTorch .pth (zip and legacy), Caffe .caffemodel (V1/V2), NumPy .npz / pickled-dict .npy, or .nstw.
 * When neither the file nor the options give an input convention: NST_ERR_ARGUMENT, saying so.
 * info may be NULL. */
NSTDEF nst_status nst_model_import_memory(const void *bytes, size_t n, const nst_import_options *o,
                                          nst_model **out, nst_import_info *info);
NSTDEF nst_status nst_model_import(const char *path, const nst_import_options *o, nst_model **out,
                                   nst_import_info *info);

/* ---- .nstw inspection: what a weight file holds and whether its checksums hold ---------------------*/
typedef struct nst_nstw_tensor {
    char name[48];
    int  dtype_bits;                   /* 32 (f32) or 16 (f16); 0 unknown */
    int  ndim, shape[4];
    unsigned long long offset, bytes;
    int  in_bounds;                    /* the data lies inside the file */
    int  checksum_ok;                  /* CRC-32 of the data matches the table */
} nst_nstw_tensor;
typedef struct nst_nstw_info {
    unsigned version, flags;           /* flags bit 0: the weight-free random model */
    int  header_ok;                    /* header + table CRC-32 matches */
    nst_input_convention convention;
    nst_pool pool;                     /* the default pooling stored in the file */
    int  count;                        /* tensors in the table (entries below: at most 64) */
    nst_nstw_tensor tensor[64];
} nst_nstw_info;
/* Reads the header and table and checks every checksum, without stopping at the first bad one.
 * Fails only when the bytes are not an .nstw file at all (bad magic, version, truncated table). */
NSTDEF nst_status nst_nstw_inspect_memory(const void *bytes, size_t n, nst_nstw_info *info);

/* ---- NumPy .npy output (float32, C order), for dumps compared with other implementations ---------*/
NSTDEF nst_status nst_npy_write(const char *path, const float *data, int ndim, const int *shape);

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
#include <errno.h>
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

/* Transparent huge pages for the large buffers (feature maps, the conv workspace with its transformed
 * filters, weights, the L-BFGS history). Debian and Ubuntu ship THP in "madvise" mode, so without the
 * advice every 4 KiB page costs a TLB entry: the convolutions read one page per input channel and
 * stream 38 MB of transformed filters per conv4_x call, the loss gradients read feature rows 1 MiB
 * apart. Only the whole 2 MiB pages inside a block are advised; the advice is a hint (ignored where
 * THP is off, failing harmlessly on memory it does not apply to), so nothing else depends on it.
 * Measured (2026-12-01, AMD EPYC Zen 3, 1 thread, 512 px evaluation, `bench_nst --threads 1 --profile
 * --cpu --reps 2`, 3 pairs alternated, against a build with NST_NO_HUGEPAGES): 2010-2133 ms against
 * 2208-2271 (an earlier set on a more loaded host: 2391-2467 against 2455-2676). Strict C99
 * hides madvise and MADV_HUGEPAGE in glibc's headers, so where they are hidden the declaration and the
 * value (14: asm-generic, shared by x86 and ARM Linux) are given here. */
#if defined(__linux__) && !defined(NST_NO_HUGEPAGES) && \
    (defined(__x86_64__) || defined(__i386__) || defined(__aarch64__) || defined(__arm__))
#include <sys/mman.h>
#define NST__HUGEPAGES 1
#ifdef MADV_HUGEPAGE
#define NST__MADV_HUGEPAGE MADV_HUGEPAGE
#else
#define NST__MADV_HUGEPAGE 14
#ifdef __cplusplus
extern "C"
#endif
int madvise(void *addr, size_t length, int advice);
#endif
#endif
#define NST__HUGE_PAGE ((uintptr_t)2 << 20)

/* 64-byte aligned blocks on top of the user's allocator: the byte before the block holds the offset.
 * Blocks of 4 MiB or more get the huge-page advice above on their whole 2 MiB pages. */
static NST__UNUSED void *nst__aligned_alloc(size_t n) {
    unsigned char *raw, *p;
    if (n > SIZE_MAX - 64) return NULL;
    raw = (unsigned char *)NST_MALLOC(n + 64);
    if (!raw) return NULL;
    p = (unsigned char *)(((uintptr_t)raw + 64) & ~(uintptr_t)63);
    p[-1] = (unsigned char)(p - raw);
#ifdef NST__HUGEPAGES
    if (n >= ((size_t)4 << 20)) {
        uintptr_t a = ((uintptr_t)p + NST__HUGE_PAGE - 1) & ~(NST__HUGE_PAGE - 1);
        uintptr_t b = ((uintptr_t)p + n) & ~(NST__HUGE_PAGE - 1);
        if (b > a) (void)madvise((void *)a, (size_t)(b - a), NST__MADV_HUGEPAGE);
    }
#endif
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
#if defined(__unix__) || defined(__APPLE__) || defined(_WIN32)
#include <sys/stat.h>
#endif
/* fopen opens a directory on POSIX systems and ftell then reports LONG_MAX: ask first. */
static int nst__is_directory(const char *path) {
#if defined(_WIN32)
    struct _stat s;
    return _stat(path, &s) == 0 && (s.st_mode & _S_IFDIR) != 0;
#elif defined(__unix__) || defined(__APPLE__)
    struct stat s;
    return stat(path, &s) == 0 && S_ISDIR(s.st_mode);
#else
    (void)path;
    return 0;
#endif
}

/* Reads a whole file, refusing ones larger than max_bytes. */
static NST__UNUSED nst_status nst__read_file(const char *path, size_t max_bytes, unsigned char **out, size_t *n) {
    FILE *f;
    long len;
    unsigned char *buf;
    *out = NULL; *n = 0;
    if (nst__is_directory(path)) return nst__err(NST_ERR_IO, "'%s' is a directory, not a file", path);
    f = fopen(path, "rb");
    if (!f) return nst__err(NST_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
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
#define NST__RNG_STEP 0x9E3779B97F4A7C15ull   /* SplitMix64: the state moves by this per draw */
static NST__UNUSED uint64_t nst__rng_next(nst__rng *r) {
    uint64_t z = (r->s += NST__RNG_STEP);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static NST__UNUSED double nst__rng_uniform(nst__rng *r) { return (double)(nst__rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }
/* The stream n draws on, in O(1) (the state is a counter): where a parallel loop's chunk starts. */
static NST__UNUSED void nst__rng_skip(nst__rng *r, uint64_t n) { r->s += n * NST__RNG_STEP; }
static NST__UNUSED double nst__rng_normal(nst__rng *r) {   /* Box-Muller, two draws; one value per call keeps streams simple */
    double u1 = nst__rng_uniform(r), u2 = nst__rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* =====================================================================================================
 * >>cpu >>gemm  CPU detection, GEMM
 * ===================================================================================================*/
/* -----------------------------------------------------------------------------------------------------
 * >>cpu >>gemm  CPU detection and single-precision GEMM
 *
 * WHAT IS HERE
 *   nst__cpu_arch()        the nst_arch in use on this thread: nst_set_arch() (per thread, like
 *                          nst_set_threads: resolve it on the calling thread, before a parallel region; a
 *                          GEMM inside a region goes through nst__sgemm_worker with it) if set, else
 *                          $NST_ARCH (scalar|avx2|avx512|neon, read once; ignored when the CPU lacks it),
 *                          else the newest ISA the CPU has. Detection (CPUID + XGETBV) runs once, guarded
 *                          by an atomic flag, so it is thread-safe.
 *   nst_sgemm(...)         public, row-major, thread count from nst_get_threads().
 *   nst__sgemm_ex(nthreads, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
 *                          the same with an explicit thread count (0 = the default).
 *   nst__sgemm_fused(nthreads, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias, relu)
 *                          C = relu?(alpha*op(A)*op(B) + beta*C + bias[i]) with the epilogue fused into the
 *                          micro-kernel's last store: bias (NULL = none) has m values, one per ROW of C
 *                          (the output channel of C[cout][pixels]); relu nonzero clamps at 0. beta = 1 is
 *                          the accumulate form (C += ...); beta = 0 never reads C (NaN in C is ignored).
 *   nst__ssyrk_ex(nthreads, n, k, alpha, a, lda, c, ldc)
 *                          C[n][n] = alpha * A * A^T for row-major A[n][k] (Gram matrices): only tiles that
 *                          touch the lower triangle are computed, then the lower triangle is mirrored, so
 *                          C is exactly symmetric. C is overwritten (beta = 0). Few long rows (n <= 256,
 *                          k >= 16n) on AVX2/NEON go to nst__gram_rows instead (after nst__ssyrk_ex).
 *   Pre-packed A (pack once, multiply many times; the convolution's weights):
 *     nst__sgemm_apack pk;
 *     nst__sgemm_pack_a(&pk, trans_a, m, k, a, lda)            packs op(A) (m x k) for the kernel in use
 *     nst__sgemm_apacked(nthreads, &pk, trans_b, n, alpha, b, ldb, beta, c, ldc, bias, relu)
 *                                                              = nst__sgemm_fused with A taken from pk
 *     nst__sgemm_apack_free(&pk)
 *   The pack remembers the kernel it was made for, so a later nst_set_arch() does not invalidate it; it is
 *   the kernel nst__sgemm_fused takes for m rows (nst__gemm_kernel_pick; it was 6 x 16 for every m on AVX2
 *   while unpacked C[64..512][.] ran 4 x 24: same bits, and on Zen 3 the loss gradient's c = 256/512
 *   blocks ran the same within noise either way). Wide N takes the short-M path with the pack's own K
 *   blocks (it used to turn the path off: Zen 3, 1 thread, g += D F over a whole 512 px layer, CPU time,
 *   pre-packed D vs the GEMM packing D itself: c = 64 48-49 vs 34-36 ms before, 36-40 vs 36-40 after;
 *   c = 128 32-36 vs 28-31 before, 28.5-30.6 vs 28.5-28.9 after).
 *   All return NST_OK, NST_ERR_ARGUMENT or NST_ERR_NOMEM.
 *
 * STRUCTURE (BLIS-style)
 *   for jc in N step NC:                        this thread's column range
 *     for pc in K step KC:   pack B[pc:,jc:] into NR-column panels (k-major: KC x NR, zero-padded)
 *       for ic in M step MC: pack A[ic:,pc:] into MR-row panels   (k-major: KC x MR, zero-padded)
 *         for jr in NC step NR: for ir in MC step MR: micro-kernel MR x NR over KC
 *   The micro-kernel keeps the MR x NR tile of C in registers, reads one MR-vector of A (broadcasts) and
 *   one NR-vector of B per k, and stores with alpha/beta and, on the last KC block, bias and ReLU.
 *   Edge tiles (m < MR or n < NR) run the same kernel into an aligned stack tile, then a short loop adds
 *   the valid part into C: no scalar cliff. K is cut into ceil(k/KC) equal blocks (no tiny last block).
 *
 * BLOCKING (measured on this project's machine: CPUID says "Turin-like", i.e. Zen 5 cores with a full
 * 512-bit FMA datapath: 48 KiB L1d, 1 MiB L2 per core, shared L3. The FMA loop in bench/bench_gemm.c
 * gives ~111 GFLOP/s per core with 256-bit FMAs and ~223 with 512-bit ones, so AVX-512 is twice AVX2
 * here, unlike Zen 4 where 512-bit ops run as two halves and both peak at ~32 flop/cycle.)
 *   avx512  MR x NR = 8 x 48: 24 zmm accumulators + 3 B vectors + 1 broadcast; 8 x 32 and 12 x 32 where
 *           48 columns pad C more than their cost outweighs (nst__gemm_kernel_pick, the table's costs)
 *   avx2    MR x NR = 6 x 16: 12 ymm accumulators + 2 B vectors + 1 broadcast (all 16 ymm), or 4 x 24
 *           (12 + 3 + 1), whichever pads C less (nst__gemm_kernel_pick): the VGG channel counts are
 *           multiples of 4 and not of 6, so wide C[64..512][pixels] runs 4 x 24 without an edge tile
 *   neon    MR x NR = 8 x 12: 24 q accumulators, 3 B vectors, 2 A vectors used through lane FMAs
 *   scalar  MR x NR = 4 x 8
 *   The cache blocks come from the L1d and L2 sizes CPUID reports (nst__gemm_blocking, one rule for
 *   all CPUs; $NST_GEMM_CACHE="L1D,L2" in KiB overrides the detected sizes). On Zen 5 and Intel Xeon
 *   (48 KiB L1d, 1 or 2 MiB L2) the rule gives AVX-512 the blocks measured best here:
 *   KC = 192: the KC x NR micro-panel of B, reused by every MR tile of the MC block, stays in L1
 *     (192*48*4 = 36 KiB of 48; the kernel alone runs at ~99% of peak with it in L1, ~90% at KC = 384
 *     where it streams from L2). Short enough that C is rewritten only K/192 times.
 *   MC = 256: the MC x KC block of A (192 KiB) lives in L2 next to the streaming B; 256 divides the
 *     VGG channel counts, so no ragged MC block.
 *   NC = 1536: KC x NC of B (1.1 MiB) sits in L2/L3 while the MC blocks pass over it.
 *   On Zen 3 (32 KiB L1d, 512 KiB L2) the same rule gives AVX2 KC 256 and MC 128, NC 768 (4 x 24)
 *   or MC 126, NC 768 (6 x 16) (was 192 / 256 / 1536 everywhere).
 *   Kernel shape: MR = 8 divides every VGG channel count (64..512), so the convolution shapes waste no
 *   rows (14 x 32 computes 70 rows for 64); of 8x48, 6x64, 14x32, 8x32 and 12x32, 8x48 was fastest
 *   (geometric mean over squares and VGG shapes, 1 thread: 170 / 162 / 154 / 158 / 146 GFLOP/s), so
 *   8 x 32 and 12 x 32 only join it for narrow C, more of it on Zen 4 where they run as fast per flop.
 *   Small products (at most 64^3 multiply-adds, K in one block) skip the packing: the same tiles read A
 *   and B in place (nst__small_fn), with the packed path's bits.
 *   Memory: B usually comes from DRAM (the convolution's im2col matrix); while the kernels run on one
 *   block, the next block's source lines are prefetched a few per kernel call, and when all of M fits
 *   one MC block (C[64][pixels]), B is packed panel by panel right before its kernels (AVX-512; on the
 *   other paths only when the thread's columns exceed a third of a column block: few columns, as in
 *   long K, pack their block whole; see nst__gemm_range). SYRK (B = A^T) packs the B panels a row block
 *   needs right before that block's A panels, so both packs read the same source rows once from memory.
 *   Short-M path (scalar, AVX2, NEON; see nst__gemm_run): when all of M fits one MC block, N is wide
 *   and op(A) is small, A is packed once for all K (shared by the threads), K is cut only where a block
 *   of A would leave L2, and B comes in 192-column blocks without software prefetch. On Zen 3 (32 KiB
 *   L1d, 512 KiB L2), with the 4 x 24 kernel, 1 thread: C[64][262144] x K 576 from 0.51x to 0.94x
 *   OpenBLAS, x K 64 from 0.67x to 1.01x (bench/compare.sh --cpu-time, both builds in one run).
 *   On a Zen 4 (32 KiB L1d, 1 MiB L2, 512-bit ops split) the rule gives AVX-512 KC = 256 (B from L2).
 *
 * THREADS
 *   OpenMP over the macro-kernel loops only: the columns (or, when N is narrow, the rows) are cut into
 *   panel-aligned chunks, about three per thread and a whole number of rounds (3 chunks on 2 threads
 *   idled one thread a third of 2048^3), which the threads take from a shared counter (a thread
 *   descheduled on a busy machine no longer holds the other up); each thread packs its own B panels,
 *   and op(A) (unless pre-packed or on the short-M path) is packed once into a buffer all threads read,
 *   the threads taking its pieces from a counter (no barrier; see nst__gemm_run).
 *   Since every C element sees the same tiles and the same K blocks whichever chunk it falls in,
 *   results are identical across thread counts. A thread gets at least NST__GEMM_MINFLOPS (1 MFLOP:
 *   128^3 runs on 2 threads, 64^3 on one; with 4 MFLOP, 128^3 ran on one thread at 80-83 GFLOP/s against
 *   119-153 on two, mean 128-135, quiet Zen 3, where OpenBLAS takes 140). Long K with a small C (m, n <= 256, k >= 8 max(m, n):
 *   64 x 64 x 262144) is cut along K instead, into chunks fixed by the sizes (nst__gemm_ksplit_blocks),
 *   each one's partial product in its own buffer, summed in chunk order: again the bits of one thread.
 *   SYRK keeps one static range per thread.
 *   Zen 3, AVX2, where the remaining gap to OpenBLAS is (2026-12-01, 1 thread, perf -e cpu-clock and
 *   bench/ab_gemm.sh, the old and new builds alternated in one process): the 6 x 16 kernel alone, its
 *   MC x KC block of A from L2 and its panel of B in L1, runs at 96-98% of the FMA peak; unrolling its
 *   k loop by 2 or 4 (gcc 12 then spills), software prefetch of A inside it, KC 192/320/384, NC from 0.5 to 3 L2 and balanced MC/NC blocks all measured
 *   within noise or slower. What is left at 1024^3 and 2048^3 is packing (~4%: A 2%, B 2%, latency of
 *   strided source reads, not instructions: an AVX2 6-row transpose for the A panels changed nothing)
 *   and the kernel's ~3% loss in context; on the wide short-M shapes (C[64..256][.]) it is reading B
 *   from DRAM in the pack (11% at 128 x 65536 x 1152). Software prefetch of the next block's A or B
 *   rows (a page apart) slowed every shape it was tried on (wide short-M, long K, SYRK).
 * ---------------------------------------------------------------------------------------------------*/
#if !defined(NST_NO_SIMD) && (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define NST__X86 1
#include <immintrin.h>
#define NST__TARGET_AVX2 __attribute__((target("avx2,fma")))
#if !defined(NST_NO_AVX512)
#define NST__X86_AVX512 1
#ifndef NST__TARGET_AVX512   /* tests/avx512_emu.h compiles these functions for AVX2 */
#define NST__TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))
#endif
#endif
#endif
#if !defined(NST_NO_SIMD) && defined(__aarch64__)
#define NST__NEON 1
#include <arm_neon.h>
#endif

#if !defined(__cplusplus)
#define NST__RESTRICT restrict
#elif defined(__GNUC__) || defined(__clang__) || defined(_MSC_VER)
#define NST__RESTRICT __restrict
#else
#define NST__RESTRICT
#endif
#if defined(__GNUC__) || defined(__clang__)
#define NST__UNROLL _Pragma("GCC unroll 32")
#define NST__ALIGN64 __attribute__((aligned(64)))
#else
#define NST__UNROLL
#define NST__ALIGN64
#endif

/* ---- cpu detection ---------------------------------------------------------------------------------*/
typedef struct nst__cpu_info {
    nst_arch best;        /* newest path this CPU and build support */
    nst_arch deflt;       /* $NST_ARCH if valid, else best */
    int has[5];           /* indexed by nst_arch: usable on this CPU and compiled in */
    int l1d, l2;          /* data cache bytes per core (CPUID leaf 4 / 0x8000001D), 0 = unknown */
    int split512;         /* 512-bit ops run as two 256-bit halves (AMD family 19h: Zen 4), so AVX-512
                           * peaks where AVX2 does and some kernels keep AVX2's shape (nst__lg_kernel_pick,
                           * nst__gram_block_for, the GEMM kernel costs, nst__conv_kernels_for's
                           * conv1_1) */
    char desc[200];       /* "AMD EPYC ...: avx2 fma avx512f ..." */
} nst__cpu_info;

static nst__cpu_info nst__cpu_g;
static int nst__cpu_state;               /* 0 = not started, 1 = being filled, 2 = ready */
static NST__TLS int nst__arch_forced;    /* nst_set_arch() on this thread; 0 = none */

#if defined(NST__X86)
static void nst__cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
    unsigned a, b, c, d;
    __asm__ __volatile__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(leaf), "c"(sub));
    r[0] = a; r[1] = b; r[2] = c; r[3] = d;
}
/* L1 data and L2 cache sizes from the deterministic cache parameters (Intel leaf 4, AMD 0x8000001D:
 * same layout), else AMD's older 0x80000005/6 sizes in KiB; what stays 0 is unknown. */
static void nst__cpu_caches(nst__cpu_info *ci, unsigned maxleaf, unsigned vendor_ebx) {
    unsigned r[4], leaf = 0, i, maxext;
    int amd = vendor_ebx == 0x68747541u || vendor_ebx == 0x6f677948u;   /* "Auth"enticAMD, "Hygo"nGenuine */
    nst__cpuid(0x80000000u, 0, r);
    maxext = r[0];
    if (amd && maxext >= 0x8000001Du) {
        nst__cpuid(0x80000001u, 0, r);
        if (r[2] & (1u << 22)) leaf = 0x8000001Du;   /* topology extensions */
    } else if (!amd && maxleaf >= 4) {
        leaf = 4;
    }
    for (i = 0; leaf && i < 16; i++) {
        unsigned type, level;
        double bytes;
        nst__cpuid(leaf, i, r);
        type = r[0] & 31;
        level = (r[0] >> 5) & 7;
        if (type == 0) break;
        bytes = (double)((r[1] >> 22) + 1) * (((r[1] >> 12) & 1023) + 1) * ((r[1] & 4095) + 1) * ((double)r[2] + 1);
        if (bytes > 1 << 30) continue;
        if (level == 1 && (type == 1 || type == 3)) ci->l1d = (int)bytes;
        if (level == 2 && (type == 2) == 0) ci->l2 = (int)bytes;
    }
    if (amd && !ci->l1d && maxext >= 0x80000005u) { nst__cpuid(0x80000005u, 0, r); ci->l1d = (int)(r[2] >> 24) * 1024; }
    if (amd && !ci->l2 && maxext >= 0x80000006u) { nst__cpuid(0x80000006u, 0, r); ci->l2 = (int)(r[2] >> 16) * 1024; }
}
static unsigned long long nst__xgetbv0(void) {
    unsigned lo, hi;
    __asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}
#endif

static const char *nst__arch_name(nst_arch a) {
    switch (a) {
    case NST_ARCH_SCALAR: return "scalar";
    case NST_ARCH_AVX2: return "avx2";
    case NST_ARCH_AVX512: return "avx512";
    case NST_ARCH_NEON: return "neon";
    default: return "default";
    }
}

static void nst__desc_add(char *d, size_t cap, const char *s) {
    size_t n = strlen(d), m = strlen(s);
    if (n + m + 1 < cap) memcpy(d + n, s, m + 1);
}

static void nst__cpu_detect(nst__cpu_info *ci) {
    const char *env;
    memset(ci, 0, sizeof *ci);
    ci->has[NST_ARCH_SCALAR] = 1;
    ci->best = NST_ARCH_SCALAR;
#if defined(NST__X86)
    {
        unsigned r[4], maxleaf, vendor, family = 0, l1c = 0, l7b = 0, l7c = 0, l71a = 0, i;
        unsigned long long xcr0 = 0;
        char brand[49];
        int os_avx, os_avx512, fma, avx2, f, dq, bw, vl;
        nst__cpuid(0, 0, r);
        maxleaf = r[0];
        vendor = r[1];
        nst__cpu_caches(ci, maxleaf, r[1]);
        if (maxleaf >= 1) {
            nst__cpuid(1, 0, r);
            l1c = r[2];
            family = (r[0] >> 8) & 15;
            if (family == 15) family += (r[0] >> 20) & 255;
        }
        if (maxleaf >= 7) {
            nst__cpuid(7, 0, r); l7b = r[1]; l7c = r[2];
            if (r[0] >= 1) { nst__cpuid(7, 1, r); l71a = r[0]; }
        }
        if (l1c & (1u << 27)) xcr0 = nst__xgetbv0();   /* OSXSAVE: the OS saves the wide registers */
        os_avx = (xcr0 & 0x6) == 0x6;
        os_avx512 = os_avx && (xcr0 & 0xE0) == 0xE0;
        fma = os_avx && (l1c & (1u << 12)) && (l1c & (1u << 28));
        avx2 = os_avx && (l7b & (1u << 5));
        f = os_avx512 && (l7b & (1u << 16));
        dq = os_avx512 && (l7b & (1u << 17));
        bw = os_avx512 && (l7b & (1u << 30));
        vl = os_avx512 && (l7b & (1u << 31));
        memset(brand, 0, sizeof brand);
        nst__cpuid(0x80000000u, 0, r);
        if (r[0] >= 0x80000004u)
            for (i = 0; i < 3; i++) { nst__cpuid(0x80000002u + i, 0, r); memcpy(brand + 16 * i, r, 16); }
        for (i = 47; i > 0 && (brand[i] == ' ' || brand[i] == 0); i--) brand[i] = 0;   /* trim */
        for (i = 0; brand[i] == ' '; i++) {}
        nst__desc_add(ci->desc, sizeof ci->desc, brand[i] ? brand + i : "x86-64");
        nst__desc_add(ci->desc, sizeof ci->desc, ":");
        if (avx2) nst__desc_add(ci->desc, sizeof ci->desc, " avx2");
        if (fma) nst__desc_add(ci->desc, sizeof ci->desc, " fma");
        if (f) nst__desc_add(ci->desc, sizeof ci->desc, " avx512f");
        if (dq) nst__desc_add(ci->desc, sizeof ci->desc, " avx512dq");
        if (bw) nst__desc_add(ci->desc, sizeof ci->desc, " avx512bw");
        if (vl) nst__desc_add(ci->desc, sizeof ci->desc, " avx512vl");
        if (os_avx512 && (l7c & (1u << 11))) nst__desc_add(ci->desc, sizeof ci->desc, " avx512_vnni");
        if (os_avx512 && (l71a & (1u << 5))) nst__desc_add(ci->desc, sizeof ci->desc, " avx512_bf16");
        if (avx2 && fma) { ci->has[NST_ARCH_AVX2] = 1; ci->best = NST_ARCH_AVX2; }
        ci->split512 = f && family == 0x19 && vendor == 0x68747541u;   /* "Auth"enticAMD; Zen 5 is 1Ah */
#if defined(NST__X86_AVX512)
        if (avx2 && fma && f && dq && bw && vl) { ci->has[NST_ARCH_AVX512] = 1; ci->best = NST_ARCH_AVX512; }
#if defined(NST_TEST_AVX512_EMULATED)   /* tests/avx512_emu.h: selectable (NST_ARCH=avx512), never the default */
        if (avx2 && fma) ci->has[NST_ARCH_AVX512] = 1;
#endif
#endif
    }
#elif defined(NST__NEON)
    nst__desc_add(ci->desc, sizeof ci->desc, "aarch64: neon");
    ci->has[NST_ARCH_NEON] = 1;
    ci->best = NST_ARCH_NEON;
#else
    nst__desc_add(ci->desc, sizeof ci->desc, "generic (SIMD not compiled in)");
#endif
    ci->deflt = ci->best;
    env = getenv("NST_ARCH");
    if (env) {
        int a;
        for (a = NST_ARCH_SCALAR; a <= NST_ARCH_NEON; a++)
            if (!strcmp(env, nst__arch_name((nst_arch)a)) && ci->has[a]) ci->deflt = (nst_arch)a;
    }
    env = getenv("NST_GEMM_CACHE");   /* "L1D,L2" in KiB: the GEMM blocking for another CPU's caches */
    if (env) {
        char *end;
        long l1 = strtol(env, &end, 10), l2 = *end == ',' ? strtol(end + 1, NULL, 10) : 0;
        if (l1 > 0 && l1 <= 65536 && l2 > 0 && l2 <= 1048576) { ci->l1d = (int)l1 * 1024; ci->l2 = (int)l2 * 1024; }
    }
    if (ci->l1d > 0 && ci->l2 > 0) {
        char cs[64];
        snprintf(cs, sizeof cs, ", L1d %d KiB, L2 %d KiB", ci->l1d / 1024, ci->l2 / 1024);
        nst__desc_add(ci->desc, sizeof ci->desc, cs);
    }
}

/* One-time, thread-safe: the first caller fills the record, concurrent callers wait for it. */
static const nst__cpu_info *nst__cpu(void) {
#if defined(__GNUC__) || defined(__clang__)
    int expect = 0;
    if (__atomic_load_n(&nst__cpu_state, __ATOMIC_ACQUIRE) == 2) return &nst__cpu_g;
    if (__atomic_compare_exchange_n(&nst__cpu_state, &expect, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        nst__cpu_detect(&nst__cpu_g);
        __atomic_store_n(&nst__cpu_state, 2, __ATOMIC_RELEASE);
    } else {
        while (__atomic_load_n(&nst__cpu_state, __ATOMIC_ACQUIRE) != 2) {}
    }
#else
    if (nst__cpu_state != 2) {   /* no atomics known: racing threads write identical records */
        nst__cpu_detect(&nst__cpu_g);
        nst__cpu_state = 2;
    }
#endif
    return &nst__cpu_g;
}

static nst_arch nst__cpu_arch(void) {
    return nst__arch_forced ? (nst_arch)nst__arch_forced : nst__cpu()->deflt;
}
/* Makes this thread run as one whose nst_set_arch() left `forced` (nst__arch_forced of the thread that
 * opened a parallel region); returns this thread's own value, to give back. */
static int nst__arch_adopt(int forced) {
    int old = nst__arch_forced;
    nst__arch_forced = forced;
    return old;
}

NSTDEF nst_status nst_set_arch(nst_arch a) {
    const nst__cpu_info *ci = nst__cpu();
    if (a == NST_ARCH_DEFAULT) { nst__arch_forced = 0; return NST_OK; }
    if ((int)a < NST_ARCH_SCALAR || (int)a > NST_ARCH_NEON)
        return nst__err(NST_ERR_ARGUMENT, "set_arch: unknown architecture %d", (int)a);
    if (!ci->has[a])
        return nst__err(NST_ERR_UNSUPPORTED, "set_arch: %s is not available on this CPU/build (%s)",
                        nst__arch_name(a), ci->desc);
    nst__arch_forced = (int)a;
    return NST_OK;
}
NSTDEF nst_arch nst_get_arch(void) { return nst__cpu_arch(); }
NSTDEF const char *nst_cpu_string(void) {
    static NST__TLS char buf[256];
    snprintf(buf, sizeof buf, "%s (%s)", nst__arch_name(nst__cpu_arch()), nst__cpu()->desc);
    return buf;
}

/* ---- micro-kernels -----------------------------------------------------------------------------------
 * Contract: C[MR][NR] (row stride ldc) = alpha * A*B + beta * C (+ bias[i]) (then max(.,0) if relu),
 * A packed k-major (a[p*MR + i]), B packed k-major (b[p*NR + j]); beta == 0 never reads C. Always the
 * full tile: edges go through a stack tile (nst__gemm_tile). */
typedef void (*nst__ukr_fn)(int k, const float *a, const float *b, float *c, ptrdiff_t ldc,
                            float alpha, float beta, const float *bias, int relu);
/* The same tiles on unpacked operands, for products too small to pay for packing (nst__sgemm_fused):
 * C[m][n] = relu?(alpha * A*B + beta * C + bias), A(i, p) = a[i sa + p sp], B(p, j) = b[p ldb + j], every
 * element's sum in the packed kernel's order and updated as the packed path updates it (full tiles as
 * the kernel, edge tiles as nst__gemm_tile), so C has the packed path's bits for K within one K block. */
typedef void (*nst__small_fn)(int m, int n, int k, float alpha, const float *a, ptrdiff_t sa, ptrdiff_t sp,
                              const float *b, ptrdiff_t ldb, float beta, float *c, ptrdiff_t ldc,
                              const float *bias, int relu);
static void nst__gemm_tile_store(const float *tile, int nr, float *c, ptrdiff_t ldc, int m, int n, float alpha,
                                 float beta, const float *bias, int relu);

typedef struct nst__gemm_kernel {
    nst_arch arch;
    int mr, nr, mc, kc, nc;      /* register tile; cache blocks when the caches are unknown (nst__gemm_blocking) */
    int wide_nc;                 /* column block of the short-M path (nst__gemm_run), 0 = path off */
    nst__ukr_fn ukr;
    const char *name;
    nst__small_fn small;         /* the unpacked form of ukr, NULL = none */
    float cost[2];               /* time per computed (padded) flop against the ISA's best kernel, where 512-bit
                                  * ops run whole [0] and split in halves [1] (nst__cpu_info.split512) */
} nst__gemm_kernel;

/* The cache blocks in use: nst__gemm_blocking() derives them from the kernel and the cache sizes. */
typedef struct nst__gemm_blocks {
    int mc, kc, nc;              /* mc % mr == 0, nc % nr == 0 */
    int wide_nc;                 /* short-M path: columns per B block, 0 = path off */
    size_t wide_a, wide_amax;    /* short-M path: floats of packed A per K block, and in all */
} nst__gemm_blocks;

#define NST__TILE_MAX 1024       /* MR*NR of the largest kernel, for the stack tile */

/* Scalar reference kernel (also the NST_NO_SIMD path): the tile in a local array, which compilers keep
 * in vector registers of the baseline ISA. */
#define NST__S_MR 4
#define NST__S_NR 8
static void nst__ukr_4x8_scalar(int k, const float *a, const float *b, float *c, ptrdiff_t ldc,
                                float alpha, float beta, const float *bias, int relu) {
    float acc[NST__S_MR][NST__S_NR];
    int i, j, p;
    memset(acc, 0, sizeof acc);
    for (p = 0; p < k; p++, a += NST__S_MR, b += NST__S_NR)
        for (i = 0; i < NST__S_MR; i++)
            for (j = 0; j < NST__S_NR; j++) acc[i][j] += a[i] * b[j];
    for (i = 0; i < NST__S_MR; i++) {
        float *cr = c + i * ldc, bi = bias ? bias[i] : 0.0f;
        for (j = 0; j < NST__S_NR; j++) {
            float r = alpha * acc[i][j];
            if (beta != 0.0f) r += beta * cr[j];
            r += bi;
            cr[j] = relu && !(r > 0.0f) ? 0.0f : r;
        }
    }
}

/* x86 kernels, one template per vector width: MR rows x NV vectors, unrolled by the compiler
 * (NST__UNROLL), the tile in MR*NV registers. */
#if defined(NST__X86)
/* A full tile's update of C (row stride ldc) from acc: the one both forms of a kernel do, so the unpacked
 * form keeps the packed kernel's bits. Uses alpha, beta, relu, ldc, acc, i and v of the enclosing kernel. */
#define NST__UKR_UPDATE(C0, BIAS0, VT, W, MR, NV, LOAD, STORE, SET1, ZERO, FMA, MUL, ADD, MAX)               \
    {                                                                                                      \
        VT va = SET1(alpha), vb = SET1(beta), z = ZERO();                                                  \
        NST__UNROLL for (i = 0; i < MR; i++) {                                                             \
            VT bi = (BIAS0) ? SET1((BIAS0)[i]) : z;                                                        \
            float *cr = (C0) + i * ldc;                                                                    \
            NST__UNROLL for (v = 0; v < NV; v++) {                                                         \
                VT r = MUL(acc[i][v], va);                                                                 \
                if (beta != 0.0f) r = FMA(vb, LOAD(cr + W * v), r);                                        \
                r = ADD(r, bi);                                                                            \
                if (relu) r = MAX(r, z);                                                                   \
                STORE(cr + W * v, r);                                                                      \
            }                                                                                              \
        }                                                                                                  \
    }
#define NST__UKR_X86(NAME, TARGET, VT, W, MR, NV, LOAD, STORE, SET1, ZERO, FMA, MUL, ADD, MAX)              \
    TARGET static void NAME(int k, const float *a, const float *b, float *c, ptrdiff_t ldc, float alpha,     \
                            float beta, const float *bias, int relu) {                                     \
        VT acc[MR][NV], bv[NV], av;                                                                        \
        int i, v, p;                                                                                       \
        NST__UNROLL for (i = 0; i < MR; i++) {                                                             \
            NST__UNROLL for (v = 0; v < NV; v++) {   /* the C tile arrives while the k loop runs */       \
                _mm_prefetch((const char *)(c + i * ldc + W * v), _MM_HINT_T0);                            \
                acc[i][v] = ZERO();                                                                        \
            }                                                                                              \
            _mm_prefetch((const char *)(c + i * ldc + W * NV - 1), _MM_HINT_T0);                           \
        }                                                                                                  \
        for (p = 0; p < k; p++) {                                                                          \
            NST__UNROLL for (v = 0; v < NV; v++) bv[v] = LOAD(b + W * v);                                  \
            NST__UNROLL for (i = 0; i < MR; i++) {                                                         \
                av = SET1(a[i]);                                                                           \
                NST__UNROLL for (v = 0; v < NV; v++) acc[i][v] = FMA(av, bv[v], acc[i][v]);               \
            }                                                                                              \
            a += MR;                                                                                       \
            b += W * NV;                                                                                   \
        }                                                                                                  \
        NST__UKR_UPDATE(c, bias, VT, W, MR, NV, LOAD, STORE, SET1, ZERO, FMA, MUL, ADD, MAX)               \
    }
/* The unpacked form (nst__small_fn): B's rows read in place, masked past n; rows past m repeat row m-1,
 * whose sums are dropped. */
#define NST__SMALL_KLOOP(BLOAD, MR, NV, SET1, FMA)                                                         \
    for (p = 0; p < k; p++, bp += ldb) {                                                                   \
        NST__UNROLL for (v = 0; v < NV; v++) bv[v] = BLOAD;                                                \
        NST__UNROLL for (i = 0; i < MR; i++) {                                                             \
            av = SET1(ar[i][p * sp]);                                                                      \
            NST__UNROLL for (v = 0; v < NV; v++) acc[i][v] = FMA(av, bv[v], acc[i][v]);                   \
        }                                                                                                  \
    }
#define NST__SMALL_X86(NAME, TARGET, VT, MT, W, MR, NV, MASK, MLOAD, LOAD, STORE, SET1, ZERO, FMA, MUL, ADD, MAX) \
    TARGET static void NAME(int m, int n, int k, float alpha, const float *a, ptrdiff_t sa, ptrdiff_t sp,     \
                            const float *b, ptrdiff_t ldb, float beta, float *c, ptrdiff_t ldc,             \
                            const float *bias, int relu) {                                                 \
        int i0, j0, i, v, p;                                                                               \
        for (j0 = 0; j0 < n; j0 += W * NV) {                                                               \
            int cols = NST__MIN(W * NV, n - j0);                                                           \
            MT mk[NV];                                                                                     \
            NST__UNROLL for (v = 0; v < NV; v++) mk[v] = MASK(cols - W * v);                               \
            for (i0 = 0; i0 < m; i0 += MR) {                                                               \
                int rows = NST__MIN(MR, m - i0);                                                           \
                const float *ar[MR], *bp = b + j0;                                                         \
                VT acc[MR][NV], bv[NV], av;                                                                \
                NST__UNROLL for (i = 0; i < MR; i++) {                                                     \
                    ar[i] = a + (i0 + NST__MIN(i, rows - 1)) * sa;                                         \
                    NST__UNROLL for (v = 0; v < NV; v++) acc[i][v] = ZERO();                               \
                }                                                                                          \
                if (cols == W * NV) { NST__SMALL_KLOOP(LOAD(bp + W * v), MR, NV, SET1, FMA) }              \
                else { NST__SMALL_KLOOP(MLOAD(mk[v], bp + W * v), MR, NV, SET1, FMA) }                     \
                if (rows == MR && cols == W * NV) {                                                        \
                    float *c0 = c + i0 * ldc + j0;                                                         \
                    const float *b0 = bias ? bias + i0 : NULL;                                             \
                    NST__UKR_UPDATE(c0, b0, VT, W, MR, NV, LOAD, STORE, SET1, ZERO, FMA, MUL, ADD, MAX)    \
                } else {                                                                                   \
                    float tile[MR * W * NV];                                                               \
                    NST__UNROLL for (i = 0; i < MR; i++)                                                   \
                        NST__UNROLL for (v = 0; v < NV; v++) STORE(tile + i * W * NV + W * v, acc[i][v]);  \
                    nst__gemm_tile_store(tile, W * NV, c + i0 * ldc + j0, ldc, rows, cols, alpha, beta,    \
                                         bias ? bias + i0 : NULL, relu);                                   \
                }                                                                                          \
            }                                                                                              \
        }                                                                                                  \
    }
#define NST__MASK8(cnt) _mm256_cmpgt_epi32(_mm256_set1_epi32(cnt), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define NST__MLOAD8(mk, p) _mm256_maskload_ps((p), (mk))
#define NST__MASK16(cnt) ((__mmask16)((cnt) >= 16 ? 0xFFFFu : (cnt) <= 0 ? 0u : (1u << (cnt)) - 1u))
#define NST__UKR_AVX2(NAME, MR, NV)                                                                       \
    NST__UKR_X86(NAME, NST__TARGET_AVX2, __m256, 8, MR, NV, _mm256_loadu_ps, _mm256_storeu_ps,            \
                 _mm256_set1_ps, _mm256_setzero_ps, _mm256_fmadd_ps, _mm256_mul_ps, _mm256_add_ps,         \
                 _mm256_max_ps)                                                                            \
    NST__SMALL_X86(NAME##_small, NST__TARGET_AVX2, __m256, __m256i, 8, MR, NV, NST__MASK8, NST__MLOAD8,    \
                   _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_fmadd_ps,   \
                   _mm256_mul_ps, _mm256_add_ps, _mm256_max_ps)
#define NST__UKR_AVX512(NAME, MR, NV)                                                                     \
    NST__UKR_X86(NAME, NST__TARGET_AVX512, __m512, 16, MR, NV, _mm512_loadu_ps, _mm512_storeu_ps,         \
                 _mm512_set1_ps, _mm512_setzero_ps, _mm512_fmadd_ps, _mm512_mul_ps, _mm512_add_ps,         \
                 NST__MAX512)                                                                              \
    NST__SMALL_X86(NAME##_small, NST__TARGET_AVX512, __m512, __mmask16, 16, MR, NV, NST__MASK16,           \
                   _mm512_maskz_loadu_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps,               \
                   _mm512_setzero_ps, _mm512_fmadd_ps, _mm512_mul_ps, _mm512_add_ps, NST__MAX512)
NST__UKR_AVX2(nst__ukr_6x16_avx2, 6, 2)
NST__UKR_AVX2(nst__ukr_4x24_avx2, 4, 3)   /* the VGG channel counts are multiples of 4, not of 6 */
#if defined(NST__X86_AVX512)
/* the masked form: g++ 12 flags _mm512_max_ps's undefined pass-through lanes as maybe-uninitialized */
#define NST__MAX512(a, b) _mm512_maskz_max_ps((__mmask16)0xFFFF, a, b)
#ifndef NST__AVX512_MR   /* tuning hooks for bench experiments; the defaults are the measured best */
#define NST__AVX512_MR 8
#define NST__AVX512_NV 3
#endif
NST__UKR_AVX512(nst__ukr_avx512, NST__AVX512_MR, NST__AVX512_NV)
NST__UKR_AVX512(nst__ukr_12x32_avx512, 12, 2)
NST__UKR_AVX512(nst__ukr_8x32_avx512, 8, 2)
#endif
#endif /* NST__X86 */

#if defined(NST__NEON)
/* 8 x 12: 24 q-register accumulators, A as two q registers, lane-indexed FMAs. */
static void nst__ukr_8x12_neon(int k, const float *a, const float *b, float *c, ptrdiff_t ldc,
                               float alpha, float beta, const float *bias, int relu) {
    float32x4_t acc[8][3], bv[3], a0, a1;
    int i, v, p;
    NST__UNROLL for (i = 0; i < 8; i++) NST__UNROLL for (v = 0; v < 3; v++) acc[i][v] = vdupq_n_f32(0.0f);
    for (p = 0; p < k; p++) {
        bv[0] = vld1q_f32(b); bv[1] = vld1q_f32(b + 4); bv[2] = vld1q_f32(b + 8);
        a0 = vld1q_f32(a); a1 = vld1q_f32(a + 4);
        NST__UNROLL for (v = 0; v < 3; v++) {
            acc[0][v] = vfmaq_laneq_f32(acc[0][v], bv[v], a0, 0);
            acc[1][v] = vfmaq_laneq_f32(acc[1][v], bv[v], a0, 1);
            acc[2][v] = vfmaq_laneq_f32(acc[2][v], bv[v], a0, 2);
            acc[3][v] = vfmaq_laneq_f32(acc[3][v], bv[v], a0, 3);
            acc[4][v] = vfmaq_laneq_f32(acc[4][v], bv[v], a1, 0);
            acc[5][v] = vfmaq_laneq_f32(acc[5][v], bv[v], a1, 1);
            acc[6][v] = vfmaq_laneq_f32(acc[6][v], bv[v], a1, 2);
            acc[7][v] = vfmaq_laneq_f32(acc[7][v], bv[v], a1, 3);
        }
        a += 8;
        b += 12;
    }
    {
        float32x4_t va = vdupq_n_f32(alpha), vb = vdupq_n_f32(beta), z = vdupq_n_f32(0.0f);
        NST__UNROLL for (i = 0; i < 8; i++) {
            float32x4_t bi = bias ? vdupq_n_f32(bias[i]) : z;
            float *cr = c + i * ldc;
            NST__UNROLL for (v = 0; v < 3; v++) {
                float32x4_t r = vmulq_f32(acc[i][v], va);
                if (beta != 0.0f) r = vfmaq_f32(r, vb, vld1q_f32(cr + 4 * v));
                r = vaddq_f32(r, bi);
                if (relu) r = vmaxq_f32(r, z);
                vst1q_f32(cr + 4 * v, r);
            }
        }
    }
}
#endif

#ifndef NST__KC
#define NST__KC 192
#endif
#ifndef NST__MC
#define NST__MC 256
#endif
#ifndef NST__NC
#define NST__NC 1536
#endif
#ifndef NST__WIDE_NC    /* short-M path: columns per B block (a multiple of every NR but 48) */
#define NST__WIDE_NC 192
#endif
#ifndef NST__WIDE_A     /* short-M path: floats of packed A per K block (160 KiB) */
#define NST__WIDE_A 40960
#endif
#ifndef NST__WIDE_AMAX  /* short-M path: floats of all of packed A (1.6 MiB; C[256][.] with K = 1152 fits) */
#define NST__WIDE_AMAX (10 * NST__WIDE_A)
#endif
#ifndef NST__WIDE_KMIN  /* short-M path: no K blocks shorter than this (then the usual path) */
#define NST__WIDE_KMIN 96
#endif

static const nst__gemm_kernel nst__gemm_kernels[] = {
    {NST_ARCH_SCALAR, NST__S_MR, NST__S_NR, 128, 256, 2048, NST__WIDE_NC, nst__ukr_4x8_scalar, "4x8 scalar", NULL, {1, 1}},
#if defined(NST__X86)
    {NST_ARCH_AVX2, 6, 16, NST__MC / 6 * 6, NST__KC, NST__NC, NST__WIDE_NC, nst__ukr_6x16_avx2, "6x16 avx2+fma", nst__ukr_6x16_avx2_small, {1, 1}},
    {NST_ARCH_AVX2, 4, 24, NST__MC / 4 * 4, NST__KC, NST__NC / 24 * 24, NST__WIDE_NC, nst__ukr_4x24_avx2, "4x24 avx2+fma", nst__ukr_4x24_avx2_small, {1, 1}},
#if defined(NST__X86_AVX512)
    /* short-M path off: the panel-streaming path was measured best on Zen 5; not re-measured since */
    {NST_ARCH_AVX512, NST__AVX512_MR, 16 * NST__AVX512_NV, NST__MC / NST__AVX512_MR * NST__AVX512_MR, NST__KC,
     NST__NC / (16 * NST__AVX512_NV) * (16 * NST__AVX512_NV), 0, nst__ukr_avx512, "8x48 avx512", nst__ukr_avx512_small, {1, 1}},
    /* for C 32, 64, 128 .. columns wide, which 48 pads: the costs are the 1-thread time per padded flop
     * against 8 x 48. Zen 4 (KC 256, in-process A/B on shapes all three tile exactly: 480 or 512 rows x
     * 960 x 4608 / 1152 / 576): 12 x 32 0.98-1.00x and 8 x 32 0.97-1.00x 8 x 48's rate (12 x 32 at 0.95-0.97x
     * with KC 128, 512 x 1024 x 4608); 8 x 32 forced on the VGG shapes: 0.92 / 0.95 / 0.97 / 1.00 at 64 /
     * 128 / 256 / 512 rows (less reuse of each B vector), 1.04x and 1.02x on 512^3 and 1024^3 (where 48 pads
     * 3%). So there 8 x 32 takes the 64..1024 squares and 512 x 1024 x 4608 (+2-3%; 12 x 32 over 8 x 48
     * on 64^3 +32-35%, 8 x 32 a further +19%, 128^3 +5%, 256^3 +2%, 64 x 64 x 262144 +12%), 8 x 48 the
     * VGG shapes. Where 512-bit ops run whole, Zen 5 measured 146 (12 x 32) and 158 (8 x 32) against 170
     * GFLOP/s over squares and VGG shapes as the only kernel: the costs there are guesses that leave them
     * only C 64 columns wide. */
    {NST_ARCH_AVX512, 12, 32, NST__MC / 12 * 12, NST__KC, NST__NC / 32 * 32, 0, nst__ukr_12x32_avx512, "12x32 avx512",
     nst__ukr_12x32_avx512_small, {1.2f, 1.06f}},
    {NST_ARCH_AVX512, 8, 32, NST__MC / 8 * 8, NST__KC, NST__NC / 32 * 32, 0, nst__ukr_8x32_avx512, "8x32 avx512",
     nst__ukr_8x32_avx512_small, {1.3f, 1.02f}},
#endif
#endif
#if defined(NST__NEON)
    {NST_ARCH_NEON, 8, 12, 128, 256, 2040, NST__WIDE_NC, nst__ukr_8x12_neon, "8x12 neon", NULL, {1, 1}},
#endif
};

static const nst__gemm_kernel *nst__gemm_kernel_for(nst_arch a) {
    size_t i;
    for (i = 0; i < sizeof nst__gemm_kernels / sizeof nst__gemm_kernels[0]; i++)
        if (nst__gemm_kernels[i].arch == a) return &nst__gemm_kernels[i];
    return &nst__gemm_kernels[0];
}

/* Tests only: L1d, L2 bytes, and [2] 1 = 512-bit ops whole, 2 = split, for the blocking rule and the
 * kernel choice of another CPU; 0 = not forced. */
static int nst__gemm_cache_forced[3];

/* 512-bit ops split into halves (nst__cpu_info.split512), or what a test forces. */
static int nst__gemm_split512(void) {
    return nst__gemm_cache_forced[2] ? nst__gemm_cache_forced[2] == 2 : nst__cpu()->split512;
}

/* The kernel of this ISA with the least computed (padded) area of C times its cost (edge tiles run a
 * full kernel into a stack tile; ties go to the later entry); n < 0: unknown, taken as wide, so only the
 * rows count. AVX2 has 6x16 and 4x24: C[64][pixels] is 11 6-row tiles (66 rows computed, one
 * stack-tile edge) or exactly 16 4-row ones. AVX-512 has 8x48 and, for C 64 columns wide (96 with 48),
 * 8x32 and 12x32 (see their costs in the table). */
static const nst__gemm_kernel *nst__gemm_kernel_pick(nst_arch a, int m, int n) {
    const nst__gemm_kernel *best = nst__gemm_kernel_for(a), *kt;
    double area = -1, x;
    int split = nst__gemm_split512();
    size_t i;
    for (i = 0; i < sizeof nst__gemm_kernels / sizeof nst__gemm_kernels[0]; i++) {
        kt = &nst__gemm_kernels[i];
        if (kt->arch != best->arch) continue;
        x = (double)((m + kt->mr - 1) / kt->mr * kt->mr) * (n < 0 ? 1.0 : (double)((n + kt->nr - 1) / kt->nr * kt->nr))
            * kt->cost[split];
        if (area < 0 || x <= area) { best = kt; area = x; }
    }
    return best;
}

/* Cache sizes the blocking is derived from: a test's forced sizes, else the detected ones ($NST_GEMM_CACHE
 * overrides those), else 0 (unknown). */
static void nst__gemm_caches(int *l1, int *l2) {
    const nst__cpu_info *ci = nst__cpu();
    *l1 = nst__gemm_cache_forced[0] ? nst__gemm_cache_forced[0] : ci->l1d;
    *l2 = nst__gemm_cache_forced[1] ? nst__gemm_cache_forced[1] : ci->l2;
}

/* The blocks for this kernel on this CPU. One rule for every cache size:
 *   KC: the KC x NR micro-panel of B, reused by every MR tile of the MC block, fills 3/4 of L1d for
 *       the widest NR of the ISA (48 KiB, NR 48: 192; 32 KiB: 128 for NR 48, 256 for NR 24); twice
 *       that for AVX-512 where 512-bit ops are split (Zen 4: 256): an FMA there issues at half the
 *       rate, so the 8 x 48 kernel needs B at 8 bytes a cycle, which L2 supplies as well as L1, and C
 *       is rewritten half as often (in-process A/B against 128, Zen 4: +2-7% 1 thread on squares
 *       256-2048 and every VGG shape, +3-4% on 2; 384 no better; AVX2 there gained nothing from 512);
 *   MC: the MC x KC block of A fills NST__MC_L2 of L2, at most NST__MC rows (256 divides the VGG
 *       channel counts; more rows only lengthen the stretch over which B panels must stay in L1);
 *   NC: the KC x NC block of B fills NST__NC_L2 of L2, at most NST__NC columns;
 *   short-M path: a K block of packed A fills half of L2 (Zen 3, 1 and 2 threads, bench/ab_gemm.sh, 10-20
 *       alternated pairs: 256 x 16384 x 1152 +4-8%, 128 x 65536 x 1152 +4-6% against 5/16, K blocks of 231
 *       and 384 instead of 144 and 288, each C tile rewritten 5 and 3 times instead of 8 and 4; 5/8 and 3/4
 *       the same within the noise; the shapes with K <= 576 are one block either way), and all of packed
 *       A at most 25/8 of L2 (a larger A takes the usual path).
 * Clamped to at least one tile, 16 for KC, so a tiny or odd reported cache still gives a working,
 * if slow, blocking. Unknown caches (no CPUID leaf, non-x86): the kernel table's constants. */
#ifndef NST__MC_L2
#define NST__MC_L2 0.25
#endif
#ifndef NST__NC_L2
#define NST__NC_L2 1.5
#endif
static void nst__gemm_blocking(const nst__gemm_kernel *kt, nst__gemm_blocks *b) {
    int l1, l2, nr = kt->nr;
    size_t i;
    double x;
    nst__gemm_caches(&l1, &l2);
    b->mc = kt->mc; b->kc = kt->kc; b->nc = kt->nc; b->wide_nc = kt->wide_nc;
    b->wide_a = NST__WIDE_A; b->wide_amax = NST__WIDE_AMAX;
    if (l1 <= 0 || l2 <= 0) return;
    /* KC from the widest kernel of the ISA: the K blocks set the rounding, and C must not change with
     * the kernel nst__gemm_kernel_pick takes for the shape (a masked and an unmasked Gram agree) */
    for (i = 0; i < sizeof nst__gemm_kernels / sizeof nst__gemm_kernels[0]; i++)
        if (nst__gemm_kernels[i].arch == kt->arch) nr = NST__MAX(nr, nst__gemm_kernels[i].nr);
    b->kc = NST__MAX(16, NST__MIN(512, (kt->arch == NST_ARCH_AVX512 && nst__gemm_split512() ? 2 : 1) * l1 / 4 * 3 / (nr * 4) / 16 * 16));
    x = NST__MC_L2 * l2 / (4.0 * b->kc) / kt->mr;
    b->mc = kt->mr * (int)NST__MAX(1.0, NST__MIN(x, (double)(NST__MC / kt->mr)));
    x = NST__NC_L2 * l2 / (4.0 * b->kc) / kt->nr;
    b->nc = kt->nr * (int)NST__MAX(1.0, NST__MIN(x, (double)(NST__NC / kt->nr)));
    b->wide_a = NST__MAX((size_t)256, (size_t)l2 / 4 / 2);
    b->wide_amax = (size_t)l2 / 4 * 25 / 8;   /* 10 of the 5/16 blocks of before: which shapes go wide is unchanged */
}

/* Edge tile: the full kernel into an aligned stack tile, then the valid m x n part into C with the same
 * update the kernel does (C not read when beta == 0). */
static void nst__gemm_tile(const nst__gemm_kernel *kt, int k, const float *a, const float *b, float *c,
                           ptrdiff_t ldc, int m, int n, float alpha, float beta, const float *bias, int relu) {
    float tile[NST__TILE_MAX] NST__ALIGN64;
    int nr = kt->nr;
    if (m == kt->mr && n == nr) {
        kt->ukr(k, a, b, c, ldc, alpha, beta, bias, relu);
        return;
    }
    kt->ukr(k, a, b, tile, nr, 1.0f, 0.0f, NULL, 0);
    nst__gemm_tile_store(tile, nr, c, ldc, m, n, alpha, beta, bias, relu);
}
/* The valid m x n part of a tile (row stride nr) into C, the edge tiles' update. */
static void nst__gemm_tile_store(const float *tile, int nr, float *c, ptrdiff_t ldc, int m, int n, float alpha,
                                 float beta, const float *bias, int relu) {
    int i, j;
    for (i = 0; i < m; i++) {
        float *cr = c + i * ldc, bi = bias ? bias[i] : 0.0f;
        const float *t = tile + i * nr;
        for (j = 0; j < n; j++) {
            float r = alpha * t[j];
            if (beta != 0.0f) r += beta * cr[j];
            r += bi;
            cr[j] = relu && !(r > 0.0f) ? 0.0f : r;
        }
    }
}

/* ---- packing -----------------------------------------------------------------------------------------
 * Panels are k-major and zero-padded to the full MR / NR, so kernels never see ragged edges.
 * pack_rows: dst[p*W + i] = src[i*ld + p]  (a row-major operand cut across its rows: transposing)
 * pack_cols: dst[p*W + i] = src[p*ld + i]  (rows of W contiguous floats: copies)                      */
static void nst__pack_cols(float *dst, const float *src, ptrdiff_t ld, int kc, int w, int W) {
    int p, i;
    if (w == W) {
        switch (W) {   /* constant widths: the copies become a few vector moves */
#define NST__PACK_COPY(WW) case WW: for (p = 0; p < kc; p++) memcpy(dst + (size_t)p * WW, src + p * ld, WW * sizeof(float)); return;
        NST__PACK_COPY(4) NST__PACK_COPY(6) NST__PACK_COPY(8) NST__PACK_COPY(12) NST__PACK_COPY(16) NST__PACK_COPY(24)
        NST__PACK_COPY(32) NST__PACK_COPY(48) NST__PACK_COPY(64)
#undef NST__PACK_COPY
        default: break;
        }
    }
    for (p = 0; p < kc; p++) {
        const float *s = src + p * ld;
        float *d = dst + (size_t)p * W;
        for (i = 0; i < w; i++) d[i] = s[i];
        for (; i < W; i++) d[i] = 0.0f;
    }
}

#if defined(NST__X86)
/* 8 rows x 8 k at a time through an in-register transpose. */
NST__TARGET_AVX2 static void nst__pack_rows8_avx2(float *dst, const float *src, ptrdiff_t ld, int kc, int W) {
    int p;
    for (p = 0; p + 8 <= kc; p += 8) {
        __m256 r0 = _mm256_loadu_ps(src + 0 * ld + p), r1 = _mm256_loadu_ps(src + 1 * ld + p);
        __m256 r2 = _mm256_loadu_ps(src + 2 * ld + p), r3 = _mm256_loadu_ps(src + 3 * ld + p);
        __m256 r4 = _mm256_loadu_ps(src + 4 * ld + p), r5 = _mm256_loadu_ps(src + 5 * ld + p);
        __m256 r6 = _mm256_loadu_ps(src + 6 * ld + p), r7 = _mm256_loadu_ps(src + 7 * ld + p);
        __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
        __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
        __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
        __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
        __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
        __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
        __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
        __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
        float *d = dst + (size_t)p * W;
        _mm256_storeu_ps(d + 0 * W, _mm256_permute2f128_ps(u0, u4, 0x20));
        _mm256_storeu_ps(d + 1 * W, _mm256_permute2f128_ps(u1, u5, 0x20));
        _mm256_storeu_ps(d + 2 * W, _mm256_permute2f128_ps(u2, u6, 0x20));
        _mm256_storeu_ps(d + 3 * W, _mm256_permute2f128_ps(u3, u7, 0x20));
        _mm256_storeu_ps(d + 4 * W, _mm256_permute2f128_ps(u0, u4, 0x31));
        _mm256_storeu_ps(d + 5 * W, _mm256_permute2f128_ps(u1, u5, 0x31));
        _mm256_storeu_ps(d + 6 * W, _mm256_permute2f128_ps(u2, u6, 0x31));
        _mm256_storeu_ps(d + 7 * W, _mm256_permute2f128_ps(u3, u7, 0x31));
    }
    for (; p < kc; p++) {
        int i;
        for (i = 0; i < 8; i++) dst[(size_t)p * W + i] = src[i * ld + p];
    }
}
#endif

#if defined(NST__X86)
/* 4 rows x 4 k at a time (SSE, baseline x86-64): the 4- and 6-row A panels of the AVX2 kernels, which
 * the scalar loop below packed at a cost near the kernels' own on long-K products (64 x 64 x 262144). */
static void nst__pack_rows4_sse(float *dst, const float *src, ptrdiff_t ld, int kc, int W) {
    int p;
    for (p = 0; p + 4 <= kc; p += 4) {
        __m128 r0 = _mm_loadu_ps(src + p), r1 = _mm_loadu_ps(src + ld + p);
        __m128 r2 = _mm_loadu_ps(src + 2 * ld + p), r3 = _mm_loadu_ps(src + 3 * ld + p);
        float *d = dst + (size_t)p * W;
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
        _mm_storeu_ps(d, r0);
        _mm_storeu_ps(d + W, r1);
        _mm_storeu_ps(d + 2 * W, r2);
        _mm_storeu_ps(d + 3 * W, r3);
    }
    for (; p < kc; p++) {
        int i;
        for (i = 0; i < 4; i++) dst[(size_t)p * W + i] = src[i * ld + p];
    }
}

/* 2 rows x 4 k at a time: the last two rows of the 6-row panels (6 x 16), which the scalar loop packed at
 * half the cost of the other four. */
static void nst__pack_rows2_sse(float *dst, const float *src, ptrdiff_t ld, int kc, int W) {
    int p;
    for (p = 0; p + 4 <= kc; p += 4) {
        __m128 r0 = _mm_loadu_ps(src + p), r1 = _mm_loadu_ps(src + ld + p);
        __m128 lo = _mm_unpacklo_ps(r0, r1), hi = _mm_unpackhi_ps(r0, r1);
        float *d = dst + (size_t)p * W;
        _mm_storel_pi((__m64 *)d, lo);
        _mm_storeh_pi((__m64 *)(d + W), lo);
        _mm_storel_pi((__m64 *)(d + 2 * W), hi);
        _mm_storeh_pi((__m64 *)(d + 3 * W), hi);
    }
    for (; p < kc; p++) {
        dst[(size_t)p * W] = src[p];
        dst[(size_t)p * W + 1] = src[ld + p];
    }
}
#endif

static void nst__pack_rows(float *dst, const float *src, ptrdiff_t ld, int kc, int w, int W, int simd) {
    int p, i = 0;
#if defined(NST__X86)
    if (simd) {   /* blocks of 8 rows (W is a multiple of 8, or 4 or 6 and then never w >= 8), then of 4, of 2 */
        for (; i + 8 <= w; i += 8) nst__pack_rows8_avx2(dst + i, src + i * ld, ld, kc, W);
        for (; i + 4 <= w; i += 4) nst__pack_rows4_sse(dst + i, src + i * ld, ld, kc, W);
        for (; i + 2 <= w; i += 2) nst__pack_rows2_sse(dst + i, src + i * ld, ld, kc, W);
    }
#else
    (void)simd;
#endif
    for (; i < w; i++) {
        const float *s = src + i * ld;
        float *d = dst + i;
        for (p = 0; p < kc; p++) d[(size_t)p * W] = s[p];
    }
    for (; i < W; i++)
        for (p = 0; p < kc; p++) dst[(size_t)p * W + i] = 0.0f;
}

/* ---- the blocked driver ------------------------------------------------------------------------------*/
typedef struct nst__gemm_job {
    const nst__gemm_kernel *kt;
    int trans_a, trans_b, m, n, k, kb;     /* kb: K block size (ceil(k / ceil(k/KC))) */
    float alpha, beta;
    const float *a, *b;
    ptrdiff_t lda, ldb, ldc;
    float *c;
    const float *bias;
    int relu, lower;                       /* lower: SYRK, skip tiles strictly above the diagonal */
    const float *apacked;                  /* whole op(A) pre-packed (nst__sgemm_apack), or NULL */
    int *aready;                           /* shared A packed in the region: a flag per MC x KB piece, or NULL */
    int nc, wide;                          /* column block; wide: the short-M path (nst__gemm_run) */
    nst__gemm_blocks bl;                   /* nst__gemm_blocking(kt) */
    int simd_pack;                         /* 1: AVX2 transposes; 2: and AVX-512 row copies */
} nst__gemm_job;

static int nst__round_up(int x, int r) { return (x + r - 1) / r * r; }

/* Packs op(A)[i0:i0+mcur][pc:pc+kcur] into MR panels at dst. */
static void nst__gemm_pack_a(const nst__gemm_job *g, float *dst, int i0, int mcur, int pc, int kcur) {
    int mr = g->kt->mr, ir;
    for (ir = 0; ir < mcur; ir += mr) {
        int w = NST__MIN(mr, mcur - ir);
        float *d = dst + (size_t)ir * kcur;
        if (g->trans_a) nst__pack_cols(d, g->a + (size_t)pc * g->lda + i0 + ir, g->lda, kcur, w, mr);
        else nst__pack_rows(d, g->a + (size_t)(i0 + ir) * g->lda + pc, g->lda, kcur, w, mr, g->simd_pack);
    }
}
/* Packs op(B)[pc:pc+kcur][j0:j0+ncur] into NR panels at dst. */
#if defined(NST__X86_AVX512)
/* One source row into consecutive 48-wide panels (`step` floats apart): whole-line loads and stores. */
NST__TARGET_AVX512 static void nst__pack_row48_avx512(float *d, const float *s, int full, size_t step) {
    int jr;
    for (jr = 0; jr < full; jr += 48, d += step) {
        __m512 x0 = _mm512_loadu_ps(s + jr), x1 = _mm512_loadu_ps(s + jr + 16), x2 = _mm512_loadu_ps(s + jr + 32);
        _mm512_storeu_ps(d, x0);
        _mm512_storeu_ps(d + 16, x1);
        _mm512_storeu_ps(d + 32, x2);
    }
}
#endif

static void nst__gemm_pack_b(const nst__gemm_job *g, float *dst, int j0, int ncur, int pc, int kcur) {
    int nr = g->kt->nr, jr, p;
    if (g->trans_b) {
        for (jr = 0; jr < ncur; jr += nr)
            nst__pack_rows(dst + (size_t)jr * kcur, g->b + (size_t)(j0 + jr) * g->ldb + pc, g->ldb, kcur,
                           NST__MIN(nr, ncur - jr), nr, g->simd_pack);
        return;
    }
    if (ncur == nr && nr <= 24) {   /* one whole panel (packed right before its kernels): constant-width rows */
        const float *s = g->b + (size_t)pc * g->ldb + j0;
        switch (nr) {
#if defined(__GNUC__) || defined(__clang__)
#define NST__PACK_PF(q, w) do { __builtin_prefetch(q); __builtin_prefetch((const char *)(q) + (w) * sizeof(float) - 1); } while (0)
#else
#define NST__PACK_PF(q, w) ((void)0)
#endif
#define NST__PACK_PANEL(NR) case NR:                                                                 \
            for (p = 0; p < kcur; p++, s += g->ldb) {                                                 \
                if (p + 4 < kcur) NST__PACK_PF(s + 4 * g->ldb, NR);                                     \
                memcpy(dst + (size_t)p * NR, s, NR * sizeof(float));                                  \
            }                                                                                         \
            return;
        NST__PACK_PANEL(8) NST__PACK_PANEL(12) NST__PACK_PANEL(16) NST__PACK_PANEL(24)
#undef NST__PACK_PANEL
#undef NST__PACK_PF
        default: break;
        }
    }
    /* Row by row: each source row is read front to back once (B usually comes from DRAM here, and long
     * sequential runs are what the hardware prefetchers stream best), scattered into the panels. */
    for (p = 0; p < kcur; p++) {
        const float *s = g->b + (size_t)(pc + p) * g->ldb + j0;
        float *d = dst + (size_t)p * nr;
        size_t step = (size_t)nr * kcur;
        int full = ncur / nr * nr;
#if defined(__GNUC__) || defined(__clang__)
        if (p + 4 < kcur) {   /* a few rows ahead: more misses in flight than the prefetchers start */
            const char *q = (const char *)(s + 4 * g->ldb);
            int o;
            for (o = 0; o < ncur * (int)sizeof(float); o += 64) __builtin_prefetch(q + o);
        }
#endif
#if defined(NST__X86_AVX512)
        if (nr == 48 && g->simd_pack == 2) {
            nst__pack_row48_avx512(d, s, full, step);
            d += (size_t)(full / 48) * step;
        } else
#endif
        switch (nr) {   /* constant widths: each copy becomes a few vector moves */
#define NST__PACK_ROW(NR) case NR: for (jr = 0; jr < full; jr += NR, d += step) memcpy(d, s + jr, NR * sizeof(float)); break;
        NST__PACK_ROW(8) NST__PACK_ROW(12) NST__PACK_ROW(16) NST__PACK_ROW(24) NST__PACK_ROW(32) NST__PACK_ROW(48) NST__PACK_ROW(64)
#undef NST__PACK_ROW
        default: for (jr = 0; jr < full; jr += nr, d += step) memcpy(d, s + jr, (size_t)nr * sizeof(float));
        }
        if (full < ncur) nst__pack_cols(d, s + full, 0, 1, ncur - full, nr);
    }
}

/* Software prefetch of the next B block's source while the kernels run on the current one: the block
 * is packed from memory (usually DRAM) right after, and a few lines issued per kernel call keep the
 * memory system busy in the background instead of stalling the packing loop later. nst__gram_rows uses
 * the same cursor for its next sub-block. */
typedef struct nst__pf_cursor {
    const char *base;
    size_t stride;           /* bytes between source rows */
    int rows, lines, row, line, per_call;
    int hot;                 /* prefetch to L1 (locality 3) instead of L2 (2); see nst__gram_rows */
} nst__pf_cursor;

/* rows of n floats from base, stride floats apart, spread over `calls` steps; n <= 0: nothing */
static void nst__pf_init(nst__pf_cursor *pf, const float *base, size_t stride, int rows, int n, int calls, int hot) {
    size_t total;
    memset(pf, 0, sizeof *pf);
    if (rows <= 0 || n <= 0) return;
    pf->base = (const char *)base;
    pf->stride = stride * sizeof(float);
    pf->rows = rows;
    pf->lines = (int)((((uintptr_t)base & 63) + (size_t)n * sizeof(float) + 63) / 64);
    pf->hot = hot;
    total = (size_t)pf->rows * pf->lines;
    pf->per_call = (int)((total + (size_t)calls - 1) / (size_t)NST__MAX(calls, 1));
}

static void nst__pf_setup(nst__pf_cursor *pf, const nst__gemm_job *g, int jc, int ncur, int pc, int kcur, int calls) {
    if (ncur <= 0 || kcur <= 0) { memset(pf, 0, sizeof *pf); return; }
    if (g->trans_b)   /* B is n x k: ncur rows of kcur floats */
        nst__pf_init(pf, g->b + (size_t)jc * g->ldb + pc, (size_t)g->ldb, ncur, kcur, calls, 0);
    else              /* B is k x n: kcur rows of ncur floats */
        nst__pf_init(pf, g->b + (size_t)pc * g->ldb + jc, (size_t)g->ldb, kcur, ncur, calls, 0);
}

static void nst__pf_step(nst__pf_cursor *pf) {
#if defined(__GNUC__) || defined(__clang__)
    int q;
    for (q = 0; q < pf->per_call && pf->row < pf->rows; q++) {
        const char *p = pf->base + pf->row * pf->stride + (size_t)pf->line * 64;
        if (pf->hot) __builtin_prefetch(p, 0, 3);
        else __builtin_prefetch(p, 0, 2);
        if (++pf->line == pf->lines) { pf->line = 0; pf->row++; }
    }
#else
    (void)pf;
#endif
}

/* Flags between the threads of the region: set after the data they announce is written (the flush
 * orders it), read before that data is used. Without OpenMP there is one thread and nothing to order. */
static int nst__gemm_flag_get(int *f) {
    int v;
#ifdef _OPENMP
#pragma omp atomic read
#endif
    v = *f;
#ifdef _OPENMP
    if (v) {
#pragma omp flush
    }
#endif
    return v;
}
static void nst__gemm_flag_set(int *f) {
#ifdef _OPENMP
#pragma omp flush
#pragma omp atomic write
#endif
    *f = 1;
}

/* One thread's share: rows [i0,i1) x columns [j0,j1) of C; i0 is MR-aligned, j0 NR-aligned. */
static void nst__gemm_range(const nst__gemm_job *g, int i0, int i1, int j0, int j1, float *abuf, float *bbuf) {
    const nst__gemm_kernel *kt = g->kt;
    int mr = kt->mr, nr = kt->nr, jc, pc, ic, jr, ir, bdone;
    size_t mpad = (size_t)nst__round_up(g->m, mr);
    /* Few rows (one MC block, e.g. the convolution's C[64][pixels]): every B element feeds only a few
     * kernels, so each NR panel is packed just before its kernels run (it is then still in L1), and the
     * prefetcher below fetches the next panel instead of the next block. Not when the columns are few
     * too (at most a third of a column block, so the B block takes at most half of L2 by the NC rule;
     * long K, 64 x 64 x 262144): then the block is packed whole, its rows read front to back, while the
     * next block is prefetched. Zen 3, 1 thread, CPU time, against panel streaming: 64 x 64 x 262144
     * +3-5% (bench_gemm's 64-byte aligned operands) and +13% (bench/ab_gemm.sh: malloc, 16-byte aligned:
     * a 16-column panel row then spans two lines), 96 x 256 x 8192 +2-7%, 64 x 512 x 16384 +1%, and
     * 64 x 700 x 2048 -5% (hence the limit). AVX-512 keeps panel streaming, measured best on Zen 5 and
     * not re-measured since. */
    int mc = g->bl.mc, stream_b = !g->trans_b && !g->lower && !g->wide && i1 - i0 <= mc &&
                                  (kt->arch == NST_ARCH_AVX512 || j1 - j0 > g->nc / 3);
    for (jc = j0; jc < j1; jc += g->nc) {
        int ncur = NST__MIN(g->nc, j1 - jc);
        if (g->lower) {   /* SYRK: this thread's rows end at i1, so columns >= i1 are above the diagonal */
            if (i1 <= jc) break;
            ncur = NST__MIN(ncur, i1 - jc);
        }
        for (pc = 0; pc < g->k; pc += g->kb) {
            int kcur = NST__MIN(g->kb, g->k - pc), last = pc + kcur >= g->k;
            float beta = pc == 0 ? g->beta : 1.0f;
            const float *bias = last ? g->bias : NULL;
            int relu = last ? g->relu : 0;
            int tiles = ((i1 - i0 + mr - 1) / mr) * ((ncur + nr - 1) / nr);
            nst__pf_cursor pf;
            memset(&pf, 0, sizeof pf);   /* wide: no software prefetch (it stalled the kernels) */
            if (g->wide) nst__gemm_pack_b(g, bbuf, jc, ncur, pc, kcur);
            else if (!stream_b && !g->lower) {   /* SYRK packs B per row block below, without software
                * prefetch: the next block's A^T rows, a page apart, stalled the prefetching loop (Zen 3,
                * 1 thread: syrk 256x16384 and 512x4096 +2% without it) */
                /* the next block: next K slice of these columns, else the first of the next columns */
                int npc = last ? 0 : pc + kcur, njc = last ? jc + g->nc : jc;
                int nn = NST__MIN(g->nc, j1 - njc);
                nst__pf_setup(&pf, g, njc, njc < j1 ? nn : 0, npc, NST__MIN(g->kb, g->k - npc), tiles);
                nst__gemm_pack_b(g, bbuf, jc, ncur, pc, kcur);
            }
            bdone = 0;
            for (ic = i0; ic < i1; ic += mc) {
                int mcur = NST__MIN(mc, i1 - ic);
                const float *ap;
                if (g->lower) {
                    /* SYRK: B = A^T, and the row block's tiles need the B panels up to its last row only:
                     * those are packed now, so the A rows packed next are the source rows just read */
                    int need = NST__MIN(ncur, nst__round_up(ic + mcur - jc, nr));
                    if (need > bdone) {
                        nst__gemm_pack_b(g, bbuf + (size_t)bdone * kcur, jc + bdone, need - bdone, pc, kcur);
                        bdone = need;
                    }
                    if (ic + mcur <= jc) continue;
                }
                if (g->apacked && (!g->aready || nst__gemm_flag_get(g->aready + (pc / g->kb) * ((g->m + mc - 1) / mc) + ic / mc)))
                    ap = g->apacked + mpad * pc + (size_t)ic * kcur;
                else { nst__gemm_pack_a(g, abuf, ic, mcur, pc, kcur); ap = abuf; }   /* shared piece not ready: same bytes, own copy */
                for (jr = 0; jr < ncur; jr += nr) {
                    int ncr = NST__MIN(nr, ncur - jr);
                    const float *bp = bbuf + (size_t)jr * kcur;
                    if (stream_b) {
                        nst__pf_setup(&pf, g, jc + jr + nr, NST__MIN(nr, ncur - jr - nr), pc, kcur, (mcur + mr - 1) / mr);
                        nst__gemm_pack_b(g, bbuf + (size_t)jr * kcur, jc + jr, ncr, pc, kcur);
                    }
                    for (ir = 0; ir < mcur; ir += mr) {
                        int i = ic + ir, mrows = NST__MIN(mr, mcur - ir);
                        nst__pf_step(&pf);
                        if (g->lower && i + mrows <= jc + jr) continue;   /* tile strictly above the diagonal */
                        nst__gemm_tile(kt, kcur, ap + (size_t)ir * kcur, bp, g->c + i * g->ldc + jc + jr,
                                       g->ldc, mrows, ncr, g->alpha, beta,
                                       bias ? bias + i : NULL, relu);
                    }
                }
            }
        }
    }
}

/* C = beta*C (+bias, relu) when there is no product to add (k == 0 or alpha == 0). */
static void nst__gemm_scale_c(const nst__gemm_job *g) {
    int i, j;
    for (i = 0; i < g->m; i++) {
        float *cr = g->c + i * g->ldc, bi = g->bias ? g->bias[i] : 0.0f;
        for (j = 0; j < g->n; j++) {
            float r = g->beta != 0.0f ? g->beta * cr[j] : 0.0f;
            r += bi;
            cr[j] = g->relu && !(r > 0.0f) ? 0.0f : r;
        }
    }
}

/* SYRK rows: thread t gets rows up to n*sqrt((t+1)/nt), so the lower-triangle areas are equal. */
static int nst__split_tri(int total, int align, int parts, int t) {
    double f = sqrt((double)t / parts);
    int u = (int)(f * total / align + 0.5);
    return t >= parts ? total : NST__MIN(total, u * align);
}

/* The short-M path's K block for these sizes, or 0 when the path does not apply (see nst__gemm_run). */
static int nst__gemm_wide_kb(const nst__gemm_kernel *kt, const nst__gemm_blocks *bl, int m, int n, int k) {
    size_t mpad = (size_t)nst__round_up(m, kt->mr);
    int kb, nw;
    /* A reused by many column blocks, and small */
    if (bl->wide_nc <= 0 || m > NST__MC || n < 4 * bl->wide_nc || mpad * (size_t)k > bl->wide_amax) return 0;
    kb = (int)NST__MIN((size_t)NST__MIN(k, 3 * bl->kc), NST__MAX((size_t)1, bl->wide_a / mpad));
    nw = (k + kb - 1) / kb;
    kb = (k + nw - 1) / nw;
    return kb >= NST__WIDE_KMIN || kb == k ? kb : 0;
}

/* Long K, small C (the Gram matrix F F^T as a plain product, 64 x 64 x 262144): the K blocks per K
 * chunk, or 0 when K is not split. M and N offer the threads a few panels at most, and each thread
 * would pack all of the other operand again; cutting K instead gives every thread its own part of both
 * operands, read once. The chunks are fixed by the sizes (never the thread count): at most
 * NST__GEMM_KSPLIT of them, at least 4 K blocks each; their partial products are summed in chunk order
 * (nst__gemm_ksum), so the bits do not depend on which thread computed which chunk. */
#ifndef NST__GEMM_KSPLIT
#define NST__GEMM_KSPLIT 16
#endif
static int nst__gemm_ksplit_blocks(int m, int n, int k, int kb) {
    int nblk = (k + kb - 1) / kb, nck;
    if (m > 256 || n > 256 || k < 8 * NST__MAX(m, n) || nblk < 8) return 0;
    nck = NST__MIN(NST__GEMM_KSPLIT, nblk / 4);
    return (nblk + nck - 1) / nck;
}

/* Rows [i0,i1) of C = relu?(alpha * (P_0 + P_1 + ... + P_{np-1}) + beta*C + bias), P_q the m x n partial
 * products at p + q*m*n, added in that order; the update is the one of nst__gemm_tile. */
static void nst__gemm_ksum(const nst__gemm_job *g, const float *p, int np, int i0, int i1) {
    size_t mn = (size_t)g->m * g->n;
    int i, j, q;
    for (i = i0; i < i1; i++) {
        float *cr = g->c + i * g->ldc, bi = g->bias ? g->bias[i] : 0.0f;
        const float *p0 = p + (size_t)i * g->n;
        for (j = 0; j < g->n; j++) {
            float s = p0[j], r;
            for (q = 1; q < np; q++) s += p0[q * mn + j];
            r = g->alpha * s;
            if (g->beta != 0.0f) r += g->beta * cr[j];
            r += bi;
            cr[j] = g->relu && !(r > 0.0f) ? 0.0f : r;
        }
    }
}

#ifndef NST__GEMM_CHUNKS   /* chunks per thread (at most; see nst__gemm_run) */
#define NST__GEMM_CHUNKS 3
#endif
#ifndef NST__GEMM_MINFLOPS /* least work per thread */
#define NST__GEMM_MINFLOPS 1e6
#endif

#ifndef NST__GEMM_SHARED_A /* most floats of op(A) packed once for all threads (32 MiB) */
#define NST__GEMM_SHARED_A (1 << 23)
#endif
/* tests only: when set, each run that shares A adds one to it, and odd pieces are never marked ready,
 * so the threads take the fallback (their own copy) for those */
static int *nst__gemm_share_probe;
static nst_status nst__gemm_run(nst__gemm_job *g, int nthreads) {
    const nst__gemm_kernel *kt = g->kt;
    int nt, split_n, parts, nkb, wkb, chunk, nchunks, next = 0, ksb = 0, share = 0, nic = 0, npieces = 0, anext = 0;
    size_t abuf_n, bbuf_n, per, wide_n = 0, part_n = 0, share_n = 0, mpad = (size_t)nst__round_up(g->m, kt->mr);
    float *buf;
    double flops;
    if (g->m == 0 || g->n == 0) return NST_OK;
    if (g->k == 0 || g->alpha == 0.0f) { nst__gemm_scale_c(g); return NST_OK; }
    nst__gemm_blocking(kt, &g->bl);
    nkb = (g->k + g->bl.kc - 1) / g->bl.kc;
    if (!g->apacked) g->kb = (g->k + nkb - 1) / nkb;   /* pre-packed A: the pack's K blocks */
    g->nc = g->bl.nc;
    /* Short M, wide N (C[64][pixels]: the convolution's and the Gram backward's shapes). Every B element
     * feeds only m/MR kernels, so the time goes to bringing B in from memory. A is packed once, all of K,
     * and stays in L2 (no repacking per column block); K is cut only where A would not fit (C[64][.] with
     * K = 576 is one pass over C); B comes in blocks of WIDE_NC columns whose rows are contiguous runs
     * the hardware prefetchers stream (packing NR-wide panels touched one line per row and page, and
     * software prefetch of the next block stalled the kernels: measured on Zen 3, bench/compare.sh).
     * Decided by the sizes only, never the thread count, so results stay identical across counts.
     * Not for long K (the Gram matrix F F^T): there A is large and C small, the usual path suits. */
    if (!g->lower && (wkb = nst__gemm_wide_kb(kt, &g->bl, g->m, g->n, g->k)) > 0) {
        g->wide = 1;
        g->nc = g->bl.wide_nc;
        if (!g->apacked) {   /* pre-packed A: already shared, in its own K blocks (the bits stay the pack's) */
            g->kb = wkb;
            wide_n = (mpad * (size_t)g->k + 15) & ~(size_t)15;
        }
    }
#if defined(NST__X86)
    g->simd_pack = kt->arch == NST_ARCH_AVX512 ? 2 : kt->arch == NST_ARCH_AVX2;
#endif
    /* Threads: at least NST__GEMM_MINFLOPS each, so the fork/join and a late-starting thread on a busy
     * machine cost little; never more threads than panels in the split dimension. */
    nt = nst__resolve_threads(nthreads);
    flops = 2.0 * g->m * g->n * g->k;
    if (flops < NST__GEMM_MINFLOPS * nt) nt = NST__MAX(1, (int)(flops / NST__GEMM_MINFLOPS));
    split_n = !g->lower && (g->n >= g->m || (g->n + kt->nr - 1) / kt->nr >= 4 * nt);
    parts = split_n ? (g->n + kt->nr - 1) / kt->nr : (g->m + kt->mr - 1) / kt->mr;
    if (!g->lower && !g->apacked && !g->wide && (ksb = nst__gemm_ksplit_blocks(g->m, g->n, g->k, g->kb)) > 0) {
        int nck = (g->k + ksb * g->kb - 1) / (ksb * g->kb);
        split_n = 0;
        parts = nck;
        part_n = ((size_t)nck * g->m * g->n + 15) & ~(size_t)15;
    }
    if (nt > parts) nt = parts;
    if (nt < 1) nt = 1;
    /* Shared A (the usual path with the columns split): every column chunk needs all of op(A), and
     * packed per chunk it was packed once per chunk and column block (2048^3 on 2 threads: 4 times, and
     * 512x4096x4608 on one: 6 times, each pass strided reads of the source). Instead the threads pack it
     * once, together, in MC x KB pieces taken from a counter, into the layout of nst__sgemm_pack_a, then
     * take column chunks as before. No barrier: a piece whose packer has not finished it (a thread
     * descheduled mid-piece on a busy machine) is packed again into the thread's own buffer, the same
     * bytes, so no thread ever waits for another. The chunks keep their widths (finer ones, possible
     * now, measured no better on Zen 3: a packed A block then comes from L3 more often). The kernels, their
     * K blocks and the tiles are those of the unshared path, so the bits do not change with the thread
     * count nor with sharing, and the change is ISA-neutral: it moves only where the packing happens and
     * when a chunk ends (AVX-512's blocks on Zen 5/Intel are the same as before; only its repacking of A
     * per NC = 1536 column block is gone). Capped at NST__GEMM_SHARED_A floats: a large A (the
     * convolution's weight gradient, dY[cout][pixels]) would otherwise add that much to the peak memory. */
    if (split_n && !ksb && !g->lower && !g->wide && !g->apacked && (nt > 1 || g->n > g->nc) &&
        mpad * (size_t)g->k <= (size_t)NST__GEMM_SHARED_A) {
        share = 1;
        nic = (g->m + g->bl.mc - 1) / g->bl.mc;
        npieces = nic * ((g->k + g->kb - 1) / g->kb);
        share_n = (mpad * (size_t)g->k + 15) & ~(size_t)15;
    }
    /* The split dimension goes out in chunks, about three per thread and at most one cache block, each
     * taken by whichever thread is free: on a shared machine a descheduled thread no longer holds up
     * the other (a static half each ran 2 threads slower than 1 under load). Every chunk packs the
     * other operand again (unless A is shared), so a chunk is never narrower than that operand while
     * it fits one block (64x64x262144 would read A once per 16 columns), nor wider than an even share.
     * A chunk only moves where a tile is computed, never how: the bits stay those of one thread. */
    chunk = split_n ? g->nc / kt->nr : g->bl.mc / kt->mr;
    if (ksb) {
        chunk = 1;
    } else if (nt > 1) {
        int lo = g->wide || g->apacked ? 1 : split_n ? (g->m + kt->nr - 1) / kt->nr : (g->n + kt->mr - 1) / kt->mr;
        lo = NST__MIN(lo, chunk);
        chunk = NST__MIN(chunk, (parts + NST__GEMM_CHUNKS * nt - 1) / (NST__GEMM_CHUNKS * nt));
        chunk = NST__MAX(1, NST__MIN(NST__MAX(chunk, lo), (parts + nt - 1) / nt));
    } else {
        chunk = parts;
    }
    nchunks = (parts + chunk - 1) / chunk;
    if (!ksb && nchunks > nt && nchunks % nt) {   /* whole rounds of equal chunks: 3 chunks on 2 threads idled one a third */
        nchunks += nt - nchunks % nt;
        chunk = (parts + nchunks - 1) / nchunks;
        nchunks = (parts + chunk - 1) / chunk;
    }
    abuf_n = g->apacked || g->wide ? 0 : (size_t)g->bl.mc * g->kb;
    {   /* B buffer: the widest column range a thread packs at once, in whole panels */
        int units = (g->n + kt->nr - 1) / kt->nr, cols = (split_n && !ksb ? chunk : units) * kt->nr;
        bbuf_n = (size_t)NST__MIN(g->nc, cols) * g->kb;
    }
    per = (abuf_n + bbuf_n + 15) & ~(size_t)15;
    buf = (float *)nst__aligned_alloc((wide_n + share_n + part_n + per * nt) * sizeof(float));
    if (share && (g->aready = (int *)nst__calloc((size_t)npieces, sizeof(int))) == NULL) {
        nst__aligned_free(buf);
        buf = NULL;
    }
    if (!buf) return nst__err(NST_ERR_NOMEM, "sgemm: out of memory for %d x %lu packing floats", nt, (unsigned long)per);
    if (share) {   /* ahead of the threads' buffers, filled in the region */
        if (nst__gemm_share_probe) ++*nst__gemm_share_probe;
        g->apacked = buf;
        buf += share_n;
    }
    if (wide_n) {   /* the shared packed A, in the layout of nst__sgemm_pack_a, ahead of the threads' buffers */
        int pc;
        for (pc = 0; pc < g->k; pc += g->kb) nst__gemm_pack_a(g, buf + mpad * pc, 0, g->m, pc, NST__MIN(g->kb, g->k - pc));
        g->apacked = buf;
        buf += wide_n;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        int t, step = 1, first = 0, c;
        float *ab, *bb;
#ifdef _OPENMP
        first = omp_get_thread_num();
        step = omp_get_num_threads();   /* fewer than asked (nesting): each takes several ranges */
#endif
        ab = buf + part_n + per * first;
        bb = ab + abuf_n;
        while (share) {   /* the shared A, piece by piece, K block major (the order the chunks use them) */
            int p, pc, ic, kcur;
#ifdef _OPENMP
#pragma omp atomic capture
#endif
            p = anext++;
            if (p >= npieces) break;
            pc = p / nic * g->kb;
            ic = p % nic * g->bl.mc;
            kcur = NST__MIN(g->kb, g->k - pc);
            nst__gemm_pack_a(g, buf - share_n + mpad * pc + (size_t)ic * kcur, ic, NST__MIN(g->bl.mc, g->m - ic), pc, kcur);
            if (!nst__gemm_share_probe || !(p & 1)) nst__gemm_flag_set(g->aready + p);
        }
        if (ksb) {   /* K chunk c: its partial product into buf + c*m*n, then the sum, rows split evenly */
            for (;;) {
                nst__gemm_job sub = *g;
                int k0;
#ifdef _OPENMP
#pragma omp atomic capture
#endif
                c = next++;
                if (c >= nchunks) break;
                k0 = c * ksb * g->kb;
                sub.k = NST__MIN(ksb * g->kb, g->k - k0);
                sub.a = g->trans_a ? g->a + (size_t)k0 * g->lda : g->a + k0;
                sub.b = g->trans_b ? g->b + k0 : g->b + (size_t)k0 * g->ldb;
                sub.c = buf + (size_t)c * g->m * g->n;
                sub.ldc = g->n;
                sub.alpha = 1.0f; sub.beta = 0.0f; sub.bias = NULL; sub.relu = 0;
                nst__gemm_range(&sub, 0, g->m, 0, g->n, ab, bb);
            }
#ifdef _OPENMP
#pragma omp barrier
#endif
            nst__gemm_ksum(g, buf, nchunks, (int)((long long)g->m * first / step), (int)((long long)g->m * (first + 1) / step));
        } else if (g->lower) {
            for (t = first; t < nt; t += step)
                nst__gemm_range(g, nst__split_tri(g->m, kt->mr, nt, t), nst__split_tri(g->m, kt->mr, nt, t + 1),
                                0, g->n, buf + part_n + per * t, buf + part_n + per * t + abuf_n);
        } else {
            for (;;) {
#ifdef _OPENMP
#pragma omp atomic capture
#endif
                c = next++;
                if (c >= nchunks) break;
                if (split_n)
                    nst__gemm_range(g, 0, g->m, c * chunk * kt->nr, NST__MIN(g->n, (c + 1) * chunk * kt->nr), ab, bb);
                else
                    nst__gemm_range(g, c * chunk * kt->mr, NST__MIN(g->m, (c + 1) * chunk * kt->mr), 0, g->n, ab, bb);
            }
        }
    }
    if (share) {
        buf -= share_n;
        g->apacked = NULL;
        nst__free(g->aready);
        g->aready = NULL;
    }
    if (wide_n) { buf -= wide_n; g->apacked = NULL; }
    g->wide = 0;
    nst__aligned_free(buf);
    return NST_OK;
}

static nst_status nst__gemm_check(const char *who, int trans_a, int trans_b, int m, int n, int k,
                                  const float *a, int lda, const float *b, int ldb, const float *c, int ldc) {
    if (m < 0 || n < 0 || k < 0) return nst__err(NST_ERR_ARGUMENT, "%s: negative size (%d, %d, %d)", who, m, n, k);
    if (m && n && !c) return nst__err(NST_ERR_ARGUMENT, "%s: C is NULL", who);
    if (ldc < NST__MAX(1, n)) return nst__err(NST_ERR_ARGUMENT, "%s: ldc %d < n %d", who, ldc, n);
    if (m && n && k) {
        if ((a && lda < NST__MAX(1, trans_a ? m : k)) || (b && ldb < NST__MAX(1, trans_b ? k : n)))
            return nst__err(NST_ERR_ARGUMENT, "%s: leading dimension too small (lda %d, ldb %d)", who, lda, ldb);
        if (!b) return nst__err(NST_ERR_ARGUMENT, "%s: B is NULL", who);
    }
    return NST_OK;
}

/* Small products skip the packing (nst__small_fn): at most NST__SMALL_MNK multiply-adds, which the GEMM
 * gives one thread anyway (NST__GEMM_MINFLOPS), with K in one K block (the bits stay the packed path's). */
#ifndef NST__SMALL_MNK
#define NST__SMALL_MNK (64 * 64 * 64)
#endif
static int nst__gemm_small_off;   /* tests only: 1 = always the packed path */
static int nst__gemm_small_pays(const nst__gemm_kernel *kt, int m, int n, int k) {
    nst__gemm_blocks bl;
    if (nst__gemm_small_off || (double)m * n * k > NST__SMALL_MNK) return 0;
    nst__gemm_blocking(kt, &bl);
    return k <= bl.kc;
}
static nst_status nst__sgemm_fused(int nthreads, int trans_a, int trans_b, int m, int n, int k, float alpha,
                                   const float *a, int lda, const float *b, int ldb, float beta,
                                   float *c, int ldc, const float *bias, int relu) {
    nst__gemm_job g;
    nst_status s = nst__gemm_check("sgemm", trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc);
    if (s) return s;
    if (m && n && k && !a) return nst__err(NST_ERR_ARGUMENT, "sgemm: A is NULL");
    memset(&g, 0, sizeof g);
    g.kt = nst__gemm_kernel_pick(nst__cpu_arch(), m, n);
    if (g.kt->small && !trans_b && m && n && k && alpha != 0.0f && nst__gemm_small_pays(g.kt, m, n, k)) {
        g.kt->small(m, n, k, alpha, a, trans_a ? 1 : lda, trans_a ? lda : 1, b, ldb, beta, c, ldc, bias, relu);
        return NST_OK;
    }
    g.trans_a = trans_a; g.trans_b = trans_b; g.m = m; g.n = n; g.k = k;
    g.alpha = alpha; g.beta = beta; g.a = a; g.b = b; g.lda = lda; g.ldb = ldb; g.c = c; g.ldc = ldc;
    g.bias = bias; g.relu = relu;
    return nst__gemm_run(&g, nthreads);
}

static nst_status nst__sgemm_ex(int nthreads, int trans_a, int trans_b, int m, int n, int k, float alpha,
                                const float *a, int lda, const float *b, int ldb, float beta,
                                float *c, int ldc) {
    return nst__sgemm_fused(nthreads, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, NULL, 0);
}
/* One thread's nst__sgemm_ex inside a parallel region, on the path of the thread that opened it (forced:
 * its nst__arch_forced, read before the region). nst_set_arch() is per thread, so an OpenMP worker left
 * to itself takes the default path: under NST_ARCH_SCALAR forced by the caller, the reflection fix-ups'
 * GEMMs ran scalar on the calling thread and AVX2 on the worker, and the pixel gradient changed with
 * which thread took which chunk (tests/test_iter.c, pool_fused_into_conv_matches_unfused). */
static nst_status nst__sgemm_worker(int forced, int trans_a, int trans_b, int m, int n, int k, float alpha,
                                    const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    int own = nst__arch_adopt(forced);
    nst_status st = nst__sgemm_ex(1, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    nst__arch_adopt(own);
    return st;
}

typedef void (*nst__gram_block_fn)(const float *const *r, const float *const *s, int kc, float *out);
static nst__gram_block_fn nst__gram_block_for(nst_arch arch);
static int nst__gram_rows_pay(int n, int k);
static nst_status nst__gram_rows(nst__gram_block_fn blk, int nthreads, int n, int k, float alpha, const float *a,
                                 int lda, float *c, int ldc);

static NST__UNUSED nst_status nst__ssyrk_ex(int nthreads, int n, int k, float alpha, const float *a, int lda,
                                            float *c, int ldc) {
    nst__gemm_job g;
    nst__gram_block_fn blk;
    int i;
    nst_status s = nst__gemm_check("ssyrk", 0, 1, n, n, k, a, lda, a, lda, c, ldc);
    if (s) return s;
    if (n > 0 && k > 0 && (blk = nst__gram_block_for(nst__cpu_arch())) != NULL && nst__gram_rows_pay(n, k))
        return nst__gram_rows(blk, nthreads, n, k, alpha, a, lda, c, ldc);
    memset(&g, 0, sizeof g);
    g.kt = nst__gemm_kernel_for(nst__cpu_arch());
    g.trans_b = 1; g.m = n; g.n = n; g.k = k; g.alpha = alpha; g.beta = 0.0f;
    g.a = a; g.b = a; g.lda = lda; g.ldb = lda; g.c = c; g.ldc = ldc; g.lower = 1;
    s = nst__gemm_run(&g, nthreads);
    if (s) return s;
    /* the upper triangle from the lower in 32 x 32 blocks (row by row, the column reads walked 512 lines
     * for each row at n = 512), threaded over block rows: ~0.3 ms of one thread at 512 rows before */
#ifdef _OPENMP
#pragma omp parallel for num_threads(nst__resolve_threads(nthreads)) schedule(dynamic, 1) if (n >= 256)
#endif
    for (i = 0; i < n; i += 32) {
        int jb, ii, jj;
        for (jb = i; jb < n; jb += 32)
            for (ii = i; ii < NST__MIN(n, i + 32); ii++)
                for (jj = NST__MAX(jb, ii + 1); jj < NST__MIN(n, jb + 32); jj++) c[(size_t)ii * ldc + jj] = c[(size_t)jj * ldc + ii];
    }
    return NST_OK;
}

/* ---- Gram matrices of long rows ------------------------------------------------------------------------
 * The style layers' Grams have few rows and very long ones (64 x 262144 at relu1_1 of 512 px, 128 x 65536
 * at relu2_1). Through the packed GEMM both operands need transposing panels (A into MR-row panels, A^T
 * into NR-column ones), two copies of every element for 64 or 128 FMAs on it, and the triangle's rows
 * split over threads make each thread pack all of A^T. Here a block of 4 rows against 3 accumulates
 * dot products in 8 lanes (7 loads and 12 FMAs per 8 k; 12 accumulators and 4 operands fill the 16 ymm
 * registers). K goes in sub-blocks of nst__gram_kc(n) floats whose rows are copied side by side (128 KiB
 * at 64 rows, 256 KiB at 128, in L2 while the blocks visit it; rows 2^18 floats apart all fall in one L2
 * set, as in the 512 px layers), the 4 rows of the outer block staying in L1, the inner block's 3 coming
 * from L2 (a quarter of a line per FMA, against a third with the 3 x 3 blocks this replaced). Each block
 * keeps its 12 x 8 lane sums in memory from one sub-block to the next and reduces them once per chunk.
 * At 256 rows (512 KiB sub-blocks) this is still ahead of the packed GEMM, whose threads each pack all
 * of A^T: 144-148 GFLOP/s on 2 threads against 105-129 at relu3_1's 256 x 16384; at 512 x 4096 (relu4_1,
 * with k >= 16n relaxed) it fell behind, 63-64 against 78-80 on 1 thread.
 * Threads take whole chunks of sub-blocks; chunk j's triangle goes to partial j and the partials are
 * summed in chunk order, and every cut depends on (n, k) only: the bits do not depend on the thread count.
 * The block kernel adds the products of rows r[a] and s[b], element i, to acc[8 * (3a + b) + i % 8].
 * Measured (Zen 3, AVX2, 1 thread, relu1_1's 64 x 262144, best of 30 alternated calls, loaded host):
 * the copy is ~4.5 ms of ~18 and runs at ~15 GB/s, the rate of a plain row-by-row memcpy; copying the
 * next sub-block between the block calls (with or without software prefetch 4 calls ahead) or inside
 * the kernel's loop (8 floats a step) ran 5-25% slower than copying before the sub-block, and
 * prefetching the next sub-block during the compute gained 0-3%, within the noise. 128 KiB
 * sub-blocks at 64 rows (512 floats, not 1024) ran 17.4-18.3 ms against 18.8-19.9; the 4 x 3 kernel
 * ran 95-96 GFLOP/s of products with its inner rows from L2 against the 3 x 3's 88-92.
 * Zen 4 (2026-12-02, /tmp-style ab_gemm A/B, best of 15): there the copy alone took as long as the
 * products alone (64 x 262144, 1 thread: 117 and 103 GFLOP/s-equivalents when the other was skipped,
 * 57 together: ~7 GB/s a thread, latency-bound, the 2 KiB rows too short for the hardware prefetchers),
 * so the next sub-block of the chunk is now prefetched into L1 (locality 3) a few lines per block call
 * (nst__pf_step): 1.24-1.34x at 64 rows on 1 and 2 threads, 1.12-1.18x at 128, 1.00-1.07x at 256;
 * into L2 (locality 2, as the GEMM's B) it gained nothing, nor did prefetching the whole of it in the
 * first half of the calls (1.06-1.08x), copying it between the calls from the prefetched lines
 * (1.11-1.24x) or 2x / 4x longer sub-blocks (1.0-1.06x). */
#define NST__GRAM_MAX_CHUNKS 8
#define NST__GRAM_ACC 96   /* floats of lane sums per block: 4 x 3 products x 8 lanes */
#ifndef NST__GRAM_ROWS_MAX_N   /* rows up to which the Grams take this path (0: never; for comparisons) */
#define NST__GRAM_ROWS_MAX_N 256
#endif
static int nst__gram_rows_pay(int n, int k) { return n <= NST__GRAM_ROWS_MAX_N && k >= 16 * n; }
static int nst__gram_kc(int n) { return NST__MAX(512, (32768 / n) & ~7); }
/* Blocks of the triangle: outer blocks of rows 4bi..4bi+3 against inner blocks of 3 rows 3bj.. up to
 * the outer block's last row (rows past n - 1 clamped to it, their sums dropped). */
static int nst__gram_nin(int n, int bi) { return NST__MIN(4 * bi + 3, n - 1) / 3 + 1; }
static size_t nst__gram_nblocks(int n) {
    size_t t = 0;
    int bi;
    for (bi = 0; 4 * bi < n; bi++) t += (size_t)nst__gram_nin(n, bi);
    return t;
}

static NST__UNUSED void nst__gram_block_scalar(const float *const *r, const float *const *s, int kc, float *acc) {
    int q, i;
    for (q = 0; q < 12; q++) {
        const float *x = r[q / 3], *y = s[q % 3];
        float *l = acc + 8 * q;
        for (i = 0; i < kc; i++) l[i & 7] += x[i] * y[i];
    }
}

#if defined(NST__X86)
static NST__TARGET_AVX2 void nst__gram_block_avx2(const float *const *r, const float *const *s, int kc, float *acc) {
    const float *r0 = r[0], *r1 = r[1], *r2 = r[2], *r3 = r[3], *s0 = s[0], *s1 = s[1], *s2 = s[2];
    __m256 c00 = _mm256_loadu_ps(acc), c01 = _mm256_loadu_ps(acc + 8), c02 = _mm256_loadu_ps(acc + 16);
    __m256 c10 = _mm256_loadu_ps(acc + 24), c11 = _mm256_loadu_ps(acc + 32), c12 = _mm256_loadu_ps(acc + 40);
    __m256 c20 = _mm256_loadu_ps(acc + 48), c21 = _mm256_loadu_ps(acc + 56), c22 = _mm256_loadu_ps(acc + 64);
    __m256 c30 = _mm256_loadu_ps(acc + 72), c31 = _mm256_loadu_ps(acc + 80), c32 = _mm256_loadu_ps(acc + 88);
    __m256 a, b0, b1, b2;
    int i = 0;
#define NST__GRAM_STEP(LD)                                                                                     \
    b0 = LD(s0 + i); b1 = LD(s1 + i); b2 = LD(s2 + i);                                                         \
    a = LD(r0 + i); c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01); c02 = _mm256_fmadd_ps(a, b2, c02); \
    a = LD(r1 + i); c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11); c12 = _mm256_fmadd_ps(a, b2, c12); \
    a = LD(r2 + i); c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21); c22 = _mm256_fmadd_ps(a, b2, c22); \
    a = LD(r3 + i); c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31); c32 = _mm256_fmadd_ps(a, b2, c32);
    for (; i + 8 <= kc; i += 8) { NST__GRAM_STEP(_mm256_loadu_ps) }
    if (i < kc) {   /* the tail as zeros: +0 products leave the lane sums as they are */
        const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(kc - i), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
#define NST__GRAM_MASKED(p) _mm256_maskload_ps((p), m)
        NST__GRAM_STEP(NST__GRAM_MASKED)
#undef NST__GRAM_MASKED
    }
#undef NST__GRAM_STEP
    _mm256_storeu_ps(acc, c00); _mm256_storeu_ps(acc + 8, c01); _mm256_storeu_ps(acc + 16, c02);
    _mm256_storeu_ps(acc + 24, c10); _mm256_storeu_ps(acc + 32, c11); _mm256_storeu_ps(acc + 40, c12);
    _mm256_storeu_ps(acc + 48, c20); _mm256_storeu_ps(acc + 56, c21); _mm256_storeu_ps(acc + 64, c22);
    _mm256_storeu_ps(acc + 72, c30); _mm256_storeu_ps(acc + 80, c31); _mm256_storeu_ps(acc + 88, c32);
}
#endif

#if defined(NST__X86_AVX512)
/* In a register, for the compiler: with 32 of them gcc 12 folds the outer row's load into each of its 3
 * FMAs, 15 loads per 12 FMAs (at 2 loads per cycle 7.5 cycles for the FMAs' 6); kept, 7. */
#ifndef NST__ZMM_KEEP
#define NST__ZMM_KEEP(x) __asm__("" : "+v"(x))
#endif
/* The 4 x 3 block in 16 lanes (7 loads and 12 FMAs per 16 k, the tail by masked loads); at the end each
 * product's lanes l and l + 8 are added into the block's 8 lane sums, acc[8q + l] += z[l] + z[l + 8]: its
 * own bits (AVX2's sum k = l, l + 8, .. in one lane), fixed by the sub-blocks, so still independent of the
 * thread count. Tested under tests/avx512emu.sh; not yet timed on an AVX-512 CPU (see nst__gram_block_for). */
static NST__TARGET_AVX512 void nst__gram_block_avx512(const float *const *r, const float *const *s, int kc, float *acc) {
    const float *r0 = r[0], *r1 = r[1], *r2 = r[2], *r3 = r[3], *s0 = s[0], *s1 = s[1], *s2 = s[2];
    __m512 c[12], a, b0, b1, b2;
    float lanes[16];
    int i = 0, q;
    for (q = 0; q < 12; q++) c[q] = _mm512_setzero_ps();
#define NST__GRAM_STEP16(LD)                                                                                 \
    b0 = LD(s0 + i); b1 = LD(s1 + i); b2 = LD(s2 + i);                                                         \
    a = LD(r0 + i); NST__ZMM_KEEP(a); c[0] = _mm512_fmadd_ps(a, b0, c[0]); c[1] = _mm512_fmadd_ps(a, b1, c[1]); c[2] = _mm512_fmadd_ps(a, b2, c[2]); \
    a = LD(r1 + i); NST__ZMM_KEEP(a); c[3] = _mm512_fmadd_ps(a, b0, c[3]); c[4] = _mm512_fmadd_ps(a, b1, c[4]); c[5] = _mm512_fmadd_ps(a, b2, c[5]); \
    a = LD(r2 + i); NST__ZMM_KEEP(a); c[6] = _mm512_fmadd_ps(a, b0, c[6]); c[7] = _mm512_fmadd_ps(a, b1, c[7]); c[8] = _mm512_fmadd_ps(a, b2, c[8]); \
    a = LD(r3 + i); NST__ZMM_KEEP(a); c[9] = _mm512_fmadd_ps(a, b0, c[9]); c[10] = _mm512_fmadd_ps(a, b1, c[10]); c[11] = _mm512_fmadd_ps(a, b2, c[11]);
    for (; i + 16 <= kc; i += 16) { NST__GRAM_STEP16(_mm512_loadu_ps) }
    if (i < kc) {   /* the tail as zeros: +0 products leave the lane sums as they are */
        const __mmask16 m = (__mmask16)((1u << (kc - i)) - 1);
#define NST__GRAM_MASKED16(p) _mm512_maskz_loadu_ps(m, (p))
        NST__GRAM_STEP16(NST__GRAM_MASKED16)
#undef NST__GRAM_MASKED16
    }
#undef NST__GRAM_STEP16
    for (q = 0; q < 12; q++) {
        _mm512_storeu_ps(lanes, c[q]);
        _mm256_storeu_ps(acc + 8 * q, _mm256_add_ps(_mm256_loadu_ps(acc + 8 * q),
                                                    _mm256_add_ps(_mm256_loadu_ps(lanes), _mm256_loadu_ps(lanes + 8))));
    }
}
#endif

#if defined(NST__NEON)
/* One pass over k, 8 at a time in two halves of 4: 24 accumulators (lanes 0-3 and 4-7 of the 12 products)
 * and 4 operands (3 inner rows, 1 outer) of the 32 q registers, 14 loads per 24 FMAs; each lane sums the same elements in the same
 * order as the AVX2 kernel. Spelled out register by register: the loop form of this kernel (arrays of
 * accumulators indexed by the product) was not unrolled by gcc 12 at -O2 and kept every accumulator on
 * the stack, ~190 instructions per 8 k instead of ~40 (bench/neon_profile.sh: 292M instructions of the
 * 2.27e9 of a 128 px evaluation, 18M of them FMAs). */
#define NST__GN_ACC(A, B)                                                                                      \
    float32x4_t c##A##B##0 = vld1q_f32(acc + 8 * (3 * A + B)), c##A##B##1 = vld1q_f32(acc + 8 * (3 * A + B) + 4);
#define NST__GN_ROW(A, H)                                                                                      \
    { float32x4_t a = vld1q_f32(r##A + o);                                                                    \
      c##A##0##H = vfmaq_f32(c##A##0##H, a, b0); c##A##1##H = vfmaq_f32(c##A##1##H, a, b1);                   \
      c##A##2##H = vfmaq_f32(c##A##2##H, a, b2); }
#define NST__GN_HALF(H)                                                                                        \
    {   const int o = i + 4 * H;                                                                               \
        float32x4_t b0 = vld1q_f32(s0 + o), b1 = vld1q_f32(s1 + o), b2 = vld1q_f32(s2 + o);                   \
        NST__GN_ROW(0, H) NST__GN_ROW(1, H) NST__GN_ROW(2, H) NST__GN_ROW(3, H) }
#define NST__GN_ST(A, B) vst1q_f32(acc + 8 * (3 * A + B), c##A##B##0); vst1q_f32(acc + 8 * (3 * A + B) + 4, c##A##B##1);
static void nst__gram_block_neon(const float *const *r, const float *const *s, int kc, float *acc) {
    const float *r0 = r[0], *r1 = r[1], *r2 = r[2], *r3 = r[3], *s0 = s[0], *s1 = s[1], *s2 = s[2];
    int i, q;
    NST__GN_ACC(0, 0) NST__GN_ACC(0, 1) NST__GN_ACC(0, 2) NST__GN_ACC(1, 0) NST__GN_ACC(1, 1) NST__GN_ACC(1, 2)
    NST__GN_ACC(2, 0) NST__GN_ACC(2, 1) NST__GN_ACC(2, 2) NST__GN_ACC(3, 0) NST__GN_ACC(3, 1) NST__GN_ACC(3, 2)
    for (i = 0; i + 8 <= kc; i += 8) { NST__GN_HALF(0) NST__GN_HALF(1) }
    NST__GN_ST(0, 0) NST__GN_ST(0, 1) NST__GN_ST(0, 2) NST__GN_ST(1, 0) NST__GN_ST(1, 1) NST__GN_ST(1, 2)
    NST__GN_ST(2, 0) NST__GN_ST(2, 1) NST__GN_ST(2, 2) NST__GN_ST(3, 0) NST__GN_ST(3, 1) NST__GN_ST(3, 2)
    for (; i < kc; i++)
        for (q = 0; q < 12; q++) acc[8 * q + (i & 7)] += r[q / 3][i] * s[q % 3][i];
}
#undef NST__GN_ACC
#undef NST__GN_ROW
#undef NST__GN_HALF
#undef NST__GN_ST
#endif

/* Bytes nst__gram_rows allocates at most for n rows (any k) on nt threads, for the memory estimate. */
static size_t nst__gram_rows_bytes(int n, int nt) {
    size_t per = (size_t)n * ((size_t)nst__gram_kc(n) + 16) + nst__gram_nblocks(n) * NST__GRAM_ACC;
    return ((size_t)n * (n + 1) / 2 * NST__GRAM_MAX_CHUNKS + per * (size_t)NST__MAX(1, nt)) * sizeof(float) + 128;
}

/* The block kernel for arch, NULL where the packed GEMM serves better (the packed SYRK's threads each
 * pack all of A^T). bench/ab_gemm.sh-style alternation against -DNST__GRAM_ROWS_MAX_N=0: Zen 3 (AVX2),
 * best call of 8: the packed SYRK at 0.60-0.75x the rows' speed on 2 threads at 64, 128 and 256 rows,
 * 0.82-0.84x on one at 64 and 128, 1.03x at 256. Zen 4 (AVX-512 build), best of 12: the packed SYRK at
 * 0.60 / 0.82 / 0.97x the rows on 1 thread at 64 / 128 / 256 rows, 0.60 / 0.95 / 1.07x on 2; and the AVX2
 * block 1.02-1.10x the AVX-512 one at every size and count (512-bit ops split there), so it runs that.
 * The AVX-512 block (CPUs with 512-bit FMA units) is not yet timed there. */
static nst__gram_block_fn nst__gram_block_for(nst_arch arch) {
#if defined(NST__X86)
    if (arch == NST_ARCH_AVX2) return nst__gram_block_avx2;
#if defined(NST__X86_AVX512)
    if (arch == NST_ARCH_AVX512) return nst__cpu()->split512 ? nst__gram_block_avx2 : nst__gram_block_avx512;
#endif
#elif defined(NST__NEON)
    if (arch == NST_ARCH_NEON) return nst__gram_block_neon;
#endif
    (void)arch;
    return NULL;
}

/* C = alpha * A A^T (the lower triangle mirrored) through blk; k >= 1, n >= 1. */
static nst_status nst__gram_rows(nst__gram_block_fn blk, int nthreads, int n, int k, float alpha, const float *a,
                                 int lda, float *c, int ldc) {
    int kc = nst__gram_kc(n), nsub = (k + kc - 1) / kc, spc = (nsub + NST__GRAM_MAX_CHUNKS - 1) / NST__GRAM_MAX_CHUNKS;
    int nch = (nsub + spc - 1) / spc, nbo = (n + 3) / 4, nt = nst__resolve_threads(nthreads), next = 0, i, j;
    size_t tri = (size_t)n * (n + 1) / 2, ldb = (size_t)NST__MIN(kc, (k + 7) & ~7) + 16, nblk = nst__gram_nblocks(n);
    size_t per = (size_t)n * ldb + nblk * NST__GRAM_ACC;
    float *part, *buf;
    if (nt > nch) nt = nch;
    part = (float *)nst__aligned_alloc(sizeof(float) * (tri * (size_t)nch + per * (size_t)nt));
    if (!part) return nst__err(NST_ERR_NOMEM, "gram: out of memory for %d partial sums", nch);
    buf = part + tri * (size_t)nch;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        int ch, t = 0;
        float *rows, *acc;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        rows = buf + per * (size_t)t;
        acc = rows + (size_t)n * ldb;
        for (;;) {
            int sb, bi, bj, x, y;
            float *p, *l;
#ifdef _OPENMP
#pragma omp atomic capture
#endif
            ch = next++;
            if (ch >= nch) break;
            memset(acc, 0, sizeof(float) * nblk * NST__GRAM_ACC);
            for (sb = ch * spc; sb < NST__MIN(nsub, (ch + 1) * spc); sb++) {
                size_t k0 = (size_t)sb * kc;
                int len = NST__MIN(kc, k - (int)k0);
                nst__pf_cursor pf;   /* the next sub-block of the chunk, spread over this one's block calls */
                if (sb + 1 < NST__MIN(nsub, (ch + 1) * spc))
                    nst__pf_init(&pf, a + k0 + kc, (size_t)lda, n, NST__MIN(kc, k - (int)k0 - kc), (int)nblk, 1);
                else
                    nst__pf_init(&pf, a, 0, 0, 0, 1, 1);
                for (x = 0; x < n; x++) memcpy(rows + (size_t)x * ldb, a + (size_t)x * lda + k0, sizeof(float) * (size_t)len);
                for (bi = 0, l = acc; bi < nbo; bi++) {
                    const float *r[4];
                    int nin = nst__gram_nin(n, bi);
                    for (x = 0; x < 4; x++) r[x] = rows + (size_t)NST__MIN(4 * bi + x, n - 1) * ldb;
                    for (bj = 0; bj < nin; bj++, l += NST__GRAM_ACC) {
                        const float *s[3];
                        for (y = 0; y < 3; y++) s[y] = rows + (size_t)NST__MIN(3 * bj + y, n - 1) * ldb;
                        nst__pf_step(&pf);
                        blk(r, s, len, l);
                    }
                }
            }
            p = part + tri * (size_t)ch;   /* lanes summed pairwise, the same order for every kernel */
            for (bi = 0, l = acc; bi < nbo; bi++)
                for (bj = 0; bj < nst__gram_nin(n, bi); bj++, l += NST__GRAM_ACC)
                    for (x = 0; x < 4 && 4 * bi + x < n; x++)
                        for (y = 0; y < 3 && 3 * bj + y <= 4 * bi + x; y++) {
                            const float *v = l + 8 * (3 * x + y);
                            p[(size_t)(4 * bi + x) * (4 * bi + x + 1) / 2 + 3 * bj + y] =
                                ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
                        }
        }
    }
    for (i = 0; i < n; i++)
        for (j = 0; j <= i; j++) {
            size_t o = (size_t)i * (i + 1) / 2 + j;
            double s = 0;
            int q;
            for (q = 0; q < nch; q++) s += part[tri * (size_t)q + o];
            c[(size_t)i * ldc + j] = c[(size_t)j * ldc + i] = (float)(alpha * s);
        }
    nst__aligned_free(part);
    return NST_OK;
}

/* ---- pre-packed A ------------------------------------------------------------------------------------*/
typedef struct nst__sgemm_apack {
    const nst__gemm_kernel *kt;   /* the kernel the layout was made for */
    int m, k, kb;                 /* kb: its K block (the blocking of the time it was packed) */
    float *data;                  /* K blocks one after another, each ceil(m/MR) panels of kb x MR */
} nst__sgemm_apack;

static NST__UNUSED void nst__sgemm_apack_free(nst__sgemm_apack *pk) {
    if (!pk) return;
    nst__aligned_free(pk->data);
    memset(pk, 0, sizeof *pk);
}

static NST__UNUSED nst_status nst__sgemm_pack_a(nst__sgemm_apack *pk, int trans_a, int m, int k,
                                                const float *a, int lda) {
    nst__gemm_job g;
    size_t mpad, total;
    int nkb, pc;
    if (!pk) return nst__err(NST_ERR_ARGUMENT, "sgemm_pack_a: NULL pack");
    memset(pk, 0, sizeof *pk);
    if (m < 0 || k < 0 || (m && k && (!a || lda < (trans_a ? m : k))))
        return nst__err(NST_ERR_ARGUMENT, "sgemm_pack_a: bad arguments (m %d, k %d, lda %d)", m, k, lda);
    memset(&g, 0, sizeof g);
    /* the kernel nst__sgemm_fused would take for these rows (N unknown: taken as wide), so a pre-packed
     * caller runs the kernel an unpacked one does: 4 x 24 for C[64..512][.] on AVX2, not 6 x 16 */
    g.kt = nst__gemm_kernel_pick(nst__cpu_arch(), m, -1);
    g.trans_a = trans_a; g.m = m; g.k = k; g.a = a; g.lda = lda;
#if defined(NST__X86)
    g.simd_pack = g.kt->arch == NST_ARCH_AVX512 ? 2 : g.kt->arch == NST_ARCH_AVX2;
#endif
    mpad = (size_t)nst__round_up(m, g.kt->mr);
    if (!nst__mul_ok(mpad, (size_t)k, &total) || !nst__mul_ok(total, sizeof(float), &total))
        return nst__err(NST_ERR_NOMEM, "sgemm_pack_a: %d x %d is too large", m, k);
    pk->data = (float *)nst__aligned_alloc(total);
    if (!pk->data) return nst__err(NST_ERR_NOMEM, "sgemm_pack_a: out of memory (%lu bytes)", (unsigned long)total);
    pk->kt = g.kt; pk->m = m; pk->k = k;
    if (k == 0) return NST_OK;
    nst__gemm_blocking(g.kt, &g.bl);
    nkb = (k + g.bl.kc - 1) / g.bl.kc;
    g.kb = pk->kb = (k + nkb - 1) / nkb;
    for (pc = 0; pc < k; pc += g.kb)
        nst__gemm_pack_a(&g, pk->data + mpad * pc, 0, m, pc, NST__MIN(g.kb, k - pc));
    return NST_OK;
}

static NST__UNUSED nst_status nst__sgemm_apacked(int nthreads, const nst__sgemm_apack *pk, int trans_b, int n,
                                                 float alpha, const float *b, int ldb, float beta,
                                                 float *c, int ldc, const float *bias, int relu) {
    nst__gemm_job g;
    nst_status s;
    if (!pk || (!pk->data && pk->m && pk->k)) return nst__err(NST_ERR_ARGUMENT, "sgemm_apacked: empty pack");
    s = nst__gemm_check("sgemm_apacked", 0, trans_b, pk->m, n, pk->k, NULL, 0, b, ldb, c, ldc);
    if (s) return s;
    memset(&g, 0, sizeof g);
    g.kt = pk->kt ? pk->kt : nst__gemm_kernel_for(nst__cpu_arch());
    g.trans_b = trans_b; g.m = pk->m; g.n = n; g.k = pk->k;
    g.alpha = alpha; g.beta = beta; g.b = b; g.ldb = ldb; g.c = c; g.ldc = ldc;
    g.bias = bias; g.relu = relu; g.apacked = pk->data; g.kb = pk->kb;
    return nst__gemm_run(&g, nthreads);
}

NSTDEF nst_status nst_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
                            const float *a, int lda, const float *b, int ldb, float beta,
                            float *c, int ldc) {
    return nst__sgemm_ex(0, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* =====================================================================================================
 * >>tensor  tensors and scalar reference kernels
 * ===================================================================================================*/
NSTDEF nst_status nst_tensor_alloc(nst_tensor *t, int c, int h, int w) {
    size_t n;
    t->c = t->h = t->w = 0;
    t->data = NULL;
    if (c <= 0 || h <= 0 || w <= 0) return nst__err(NST_ERR_ARGUMENT, "tensor: bad shape %dx%dx%d", c, h, w);
    if (!nst__mul_ok((size_t)c * (size_t)h, (size_t)w, &n) || !nst__mul_ok(n, sizeof(float), &n))
        return nst__err(NST_ERR_NOMEM, "tensor: %dx%dx%d is too large", c, h, w);
    t->data = (float *)nst__aligned_alloc(n);
    if (!t->data) return nst__err(NST_ERR_NOMEM, "tensor: out of memory for %dx%dx%d", c, h, w);
    memset(t->data, 0, n);
    t->c = c; t->h = h; t->w = w;
    return NST_OK;
}
NSTDEF void nst_tensor_free(nst_tensor *t) {
    if (!t) return;
    nst__aligned_free(t->data);
    t->data = NULL;
    t->c = t->h = t->w = 0;
}

/* ---- scalar reference kernels ------------------------------------------------------------------
 * Plain loops every fast path is tested against. Threaded over output channels only, so each output
 * element is summed in the same order whatever the thread count. */

/* out[co] = bias[co] + sum_ci sum_taps w * in, with the tap loop outside the row loop so the
 * inner loop is a contiguous, vectorisable axpy. */
static void nst__conv3x3_forward_ref(float *out, const float *in, const float *wt, const float *bias,
                                     int cin, int cout, int h, int w, int relu, int nthreads) {
    int co;
    size_t hw = (size_t)h * w;
    nthreads = nst__resolve_threads(nthreads);
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (co = 0; co < cout; co++) {
        float *o = out + (size_t)co * hw;
        int ci, ky, kx, y, x;
        size_t i;
        for (i = 0; i < hw; i++) o[i] = bias ? bias[co] : 0.0f;
        for (ci = 0; ci < cin; ci++) {
            const float *src = in + (size_t)ci * hw;
            const float *k9 = wt + ((size_t)co * cin + ci) * 9;
            for (ky = 0; ky < 3; ky++)
                for (kx = 0; kx < 3; kx++) {
                    float k = k9[ky * 3 + kx];
                    int x0 = kx == 0 ? 1 : 0, x1 = kx == 2 ? w - 1 : w;
                    for (y = 0; y < h; y++) {
                        int sy = y + ky - 1;
                        const float *srow;
                        float *orow;
                        if (sy < 0 || sy >= h) continue;
                        srow = src + (size_t)sy * w + (kx - 1);
                        orow = o + (size_t)y * w;
                        for (x = x0; x < x1; x++) orow[x] += k * srow[x];
                    }
                }
        }
        if (relu)
            for (i = 0; i < hw; i++) o[i] = o[i] > 0.0f ? o[i] : 0.0f;
    }
}

/* din[ci] = sum_co sum_taps w[co][ci][2-ky][2-kx] * dout[co]: the transposed convolution. */
static void nst__conv3x3_backward_data_ref(float *din, const float *dout, const float *wt, int cin, int cout,
                                           int h, int w, int nthreads) {
    int ci;
    size_t hw = (size_t)h * w;
    nthreads = nst__resolve_threads(nthreads);
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (ci = 0; ci < cin; ci++) {
        float *o = din + (size_t)ci * hw;
        int co, ky, kx, y, x;
        size_t i;
        for (i = 0; i < hw; i++) o[i] = 0.0f;
        for (co = 0; co < cout; co++) {
            const float *src = dout + (size_t)co * hw;
            const float *k9 = wt + ((size_t)co * cin + ci) * 9;
            for (ky = 0; ky < 3; ky++)
                for (kx = 0; kx < 3; kx++) {
                    /* in[y+ky-1][x+kx-1] received k*out[y][x], so din[y][x] += k * dout[y-ky+1][x-kx+1] */
                    float k = k9[ky * 3 + kx];
                    int dx = 1 - kx;
                    int x0 = dx < 0 ? -dx : 0, x1 = dx > 0 ? w - dx : w;
                    for (y = 0; y < h; y++) {
                        int sy = y + 1 - ky;
                        const float *srow;
                        float *orow;
                        if (sy < 0 || sy >= h) continue;
                        srow = src + (size_t)sy * w + dx;
                        orow = o + (size_t)y * w;
                        for (x = x0; x < x1; x++) orow[x] += k * srow[x];
                    }
                }
        }
    }
}

/* 2x2 stride-2 pooling; odd trailing rows/columns are dropped (floor), as torch and Caffe's VGG do. */
static NST__UNUSED void nst__pool2x2_forward_ref(float *out, const float *in, int c, int h, int w, int avg, int nthreads) {
    int ch, oh = h / 2, ow = w / 2;
    nthreads = nst__resolve_threads(nthreads);
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (ch = 0; ch < c; ch++) {
        const float *s = in + (size_t)ch * h * w;
        float *o = out + (size_t)ch * oh * ow;
        int y, x;
        for (y = 0; y < oh; y++)
            for (x = 0; x < ow; x++) {
                const float *p = s + (size_t)(2 * y) * w + 2 * x;
                float a = p[0], b = p[1], cc = p[w], d = p[w + 1];
                if (avg) {
                    o[(size_t)y * ow + x] = 0.25f * (a + b + cc + d);
                } else {
                    float m = a;
                    if (b > m) m = b;
                    if (cc > m) m = cc;
                    if (d > m) m = d;
                    o[(size_t)y * ow + x] = m;
                }
            }
    }
}

/* Max pooling sends the gradient to the first maximum in row-major order (as torch does). */
static NST__UNUSED void nst__pool2x2_backward_ref(float *din, const float *dout, const float *in, int c, int h, int w,
                                      int avg, int nthreads) {
    int ch, oh = h / 2, ow = w / 2;
    nthreads = nst__resolve_threads(nthreads);
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (ch = 0; ch < c; ch++) {
        const float *s = in ? in + (size_t)ch * h * w : NULL;
        const float *g = dout + (size_t)ch * oh * ow;
        float *d = din + (size_t)ch * h * w;
        int y, x;
        memset(d, 0, sizeof(float) * (size_t)h * w);
        for (y = 0; y < oh; y++)
            for (x = 0; x < ow; x++) {
                size_t base = (size_t)(2 * y) * w + 2 * x;
                float gv = g[(size_t)y * ow + x];
                if (avg) {
                    float q = 0.25f * gv;
                    d[base] = q; d[base + 1] = q; d[base + w] = q; d[base + w + 1] = q;
                } else {
                    size_t best = base;
                    if (s[base + 1] > s[best]) best = base + 1;
                    if (s[base + w] > s[best]) best = base + w;
                    if (s[base + w + 1] > s[best]) best = base + w + 1;
                    d[best] = gv;
                }
            }
    }
}

NSTDEF nst_status nst_gram(float *g, const float *f, int c, int hw, float scale) {
    if (!g || !f || c <= 0 || hw <= 0) return nst__err(NST_ERR_ARGUMENT, "gram: bad arguments");
    return nst__ssyrk_ex(0, c, hw, scale, f, hw, g, c);
}

/* =====================================================================================================
 * >>conv  3x3 convolution fast paths, pooling
 * ===================================================================================================*/
/* ---- 3x3 convolution fast paths and 2x2 pooling --------------------------------------------------
 * Contract used by the VGG code (>>vgg):
 *   nst__conv_plan_create(w, bias, cin, cout, &plan)   packs/transforms filters once, for both directions
 *   nst__conv_workspace(plan, h, w, nthreads)        bytes of scratch forward/backward need at h x w
 *   nst__conv_forward(plan, in, out, h, w, relu, nthreads, ws)      ws: that scratch, or NULL (allocates)
 *   nst__conv_forward_pad(plan, in, out, h, w, relu, pad, ...)      padded as NST__CONV_PAD_* says (Winograd
 *                                                                    only: nst__conv_forward_pads)
 *   nst__conv_backward_data(plan, dout, din, h, w, nthreads, ws)    overwrites din
 *   nst__conv_backward_data_pad(plan, dout, din, h, w, pad, ...)    the adjoint of a padded forward (small
 *                                                                    maps only: nst__conv_backward_pads)
 *   nst__conv_plan_free(plan)
 *   nst__pool_forward(out, in, c, h, w, avg, nthreads)  2x2/2 pooling (floor), fast path of the ref
 *   nst__pool_backward(din, dout, in, c, h, w, avg, nthreads)  (in may be NULL for avg)
 * Layout: CHW float, batch 1. The plan borrows weight and bias (they must outlive it). A ws sized for
 * (h, w, nthreads) serves both directions; forward/backward never allocate when ws is given.
 * Results depend on the CPU path (scalar, AVX2+FMA, AVX-512) but never on the thread count: every output
 * is summed by one thread in a fixed order.
 *
 * KERNEL TABLE. One driver (nst__conv_run, nst__wino_run/block, the pooling loops) and one row of
 * nst__conv_table[] per ISA (nst__conv_kernels: filter transform, input transform, transform-domain
 * GEMM with its tile parameters mr/nr/nt/cb, output transform, direct kernel, pooling forward/backward),
 * like the GEMM's nst__gemm_kernel_for. A plan takes its row once from nst__cpu_arch() (nst_set_arch,
 * $NST_ARCH); the driver never tests the ISA, and every layout (u, V, M, the staged rows) follows the
 * row's parameters. The scalar row is the reference and the fallback for an ISA without a row. The
 * layout contracts are at nst__conv_kernels and above nst__wino_nt; a new ISA adds its kernels before
 * the table and one row in it, nothing else.
 *
 * Two algorithms, chosen per layer and direction when the plan is made (nst__conv_choose):
 *
 *   Winograd F(4x4, 3x3)  (NST__CONV_WINO) whenever the input has >= 8 channels. Each 4x4 output tile
 *     comes from a 6x6 input patch with 36 multiplies per channel pair instead of 144, so a layer costs
 *     a quarter of direct convolution's FMAs plus the transforms:
 *       V = B^T d B (input patch), U = G g G^T (filter), Y = A^T (sum_ci U . V) A.
 *     The sum over input channels is, for each of the 36 transform elements, a GEMM
 *     M[e][cout x tiles] = U[e][cout x cin] * V[e][cin x tiles] on an mr x (nr..nt) register-tile
 *     micro-kernel (U broadcast, tiles along the vector). Tiles go in blocks of up to nt (one thread per
 *     block; its V and M scratch stay in L2/L3), output channels in chunks of cb so M stays small.
 *     The input transform de-interleaves the stride-4 tile columns in registers and the output
 *     transform interleaves them back, so feature maps stay plain CHW (no blocked layout needed).
 *     Backward-data is the same engine on the flipped, channel-transposed filters. Transformed filters
 *     take 4x the weights per direction, so only layers below 64x64 filters keep them in the plan
 *     (none of VGG-19's, see NST__WINO_LAZY); conv1_2 .. conv5_1 transform theirs into the workspace
 *     on every call (~3 ms per 512x512 layer on one core, AVX-512;
 *     on one Zen 3 core with AVX2 3.0-3.5 ms either direction since its taps are transposed in rather
 *     than gathered (3.4-4.4 before; 12-13.6 backward before its weights were prefetched: `bench_conv
 *     --filters`); without the taps' loads it would take ~2.6, without writing U ~2.9), which saves
 *     ~410 MB for VGG-19 to relu5_1 (~640 MB with conv5_2 .. conv5_4).
 *     Measured and not kept (2026-12-01, Zen 3, conv4_x and conv5_1 at 512 px, 1 and 2 threads): a
 *     mode by output channels for these few-tile layers (the whole image's V first, then chunks of 48
 *     output channels per thread, each chunk's filters transformed just before its GEMMs so they stay
 *     in L2/L3; same bits as the blocks) ran conv4_x 10-20% slower on one thread (the 19 MB V of the
 *     whole image is read per chunk from beyond L3 on a shared machine; the GEMM took 12-30% more
 *     samples) and conv5_1 no faster on two; the filter transform's cost did not drop either (its
 *     gathers and writes, not where the writes land). The transform-domain GEMM alone on the conv4_2
 *     shape (U streamed from memory, V hot) runs as fast as on conv3_2's (85 GFLOP/s), so the blocks
 *     lose little to U's streaming; pinning U in cache (a wrong-result experiment) changed nothing
 *     measurable.
 *     Accuracy: the transforms multiply by up to 8 and divide by 24, so the error is ~10x direct
 *     summation's: measured max |err| / max |out| 1e-5 (VGG shapes) .. 7e-5 (1..33 channels); tests
 *     bound it at 2e-4 per layer and check that it does not compound over 8 chained layers.
 *
 *   Direct (NST__CONV_DIRECT) for conv1_1's forward (cin = 3) and, where the row has a direct kernel
 *     for few outputs (dkout: AVX2), conv1_1's backward (64 -> 3): a register tile of output channels x
 *     pixels; exact up to FMA rounding. Either a per-call kernel (direct: dmr channels x dnx pixels,
 *     masked loads at the borders) or a per-band one (direct_rows) that reads input rows packed with
 *     their zero border (AVX2: nst__direct_pack_avx2).
 *
 * Per-ISA choices:
 *   scalar   mr 6, nr 16, nt 64: the reference loops; direct and pooling are the >>tensor reference kernels.
 *   avx512   GEMM 6 x 64 (24 zmm accumulators, U broadcast, nr 16 so 6 x 16..64), transforms 16 tiles per
 *            vector (vpermt2ps de-interleave), direct 6 x 64 pixels, pooling with vpermt2ps and masks.
 *   avx2     16 ymm registers: GEMM 6 x 16 (12 accumulators + 2 V vectors + 1 broadcast, nr 8 with a 6 x 8
 *            tail). Measured on AMD EPYC Zen 3 (bench_conv --size 256 --cpu, 1 thread, the kernel alone
 *            in a loop at 80..90 GFLOP/s): 6 x 16 is the only 16-register tile that keeps both FMA pipes
 *            busy without spilling (4 x 24 needs 3 V loads + 4 broadcasts for the same 12 FMAs; 3 x 32
 *            needs 17 registers); a software prefetch of V 4..16 rows ahead changed nothing measurable.
 *            u is k-major within each block of 6 rows, as on NEON: with row-major u the six broadcast
 *            streams of a 512-channel layer lie 2 KiB apart, in two L1 sets, and the GEMM ran ~20% slower
 *            (the GEMM alone on the conv4_2 shape, 1 thread: 54 -> 65..73 GFLOP/s real).
 *            Direct: direct_rows, blocks of 32 pixels, 6 x 16 tiles (two per block) or 3 x 32 where a
 *            block has at most 3 channels; conv1_1's backward takes it instead of Winograd (dkout 3).
 *            Where conv1_1's time goes (Zen 3, 1 thread, perf, 2026-12-01): the kernels alone run at
 *            ~95 GFLOP/s (3 x 32) and ~75 (6 x 16, K = 27 with its epilogue) of a ~145 FMA peak; the
 *            forward is compute-bound (its GFLOP/s at 128 px, output in cache, equal 512 px's), the
 *            backward spent ~45% packing its 64 input planes (a 64 MiB read: 5 ms alone at this
 *            core's bandwidth). The vector packing and the next row's lines prefetched inside the
 *            3 x 32 kernel's channel loop took the backward, `bench_conv --layer conv1_1 --cpu --reps 7`
 *            alternated with the old build (best of 3), from 20.1 to 17.1 ms at 512 px on 1 thread, 13.0
 *            to 10.2 on 2, and 6.4 to 4.3 at 256 px on 1; the forward did not move (12.7..13.1 ms). In
 *            `bench_nst --profile --cpu` (1 thread, 512 px, 3 runs each, a loaded host) conv1_1's
 *            backward row stayed within its noise (20-25 ms both builds): not explained yet.
 *            Measured and not kept: streaming stores for the forward's 64 MiB output (17 ms against
 *            13), 3 x 32 tiles for the forward (15 against 13), packing block by block (a block's 64
 *            planes 1 MiB apart; the forward's b-outer order 23 ms against 13), prefetching 1..16
 *            blocks ahead or in bursts (no difference beyond the noise), 27 taps unrolled.
 *            Transforms: 8 tiles per vector; the stride-4 de-interleave is a vperm2f128 pair + a 4x4
 *            in-lane transpose (exact tile order, so a partial group is a prefix), columns 4 and 5 are the
 *            next tile's columns 0 and 1 (one lane rotate + broadcast each); the output transform is the
 *            inverse shuffle. Filter transform: 8 (input channel, output row) pairs per vector in u's
 *            order, taps gathered. Direct: maskstore only at the image's right border (vmaskmovps
 *            stores are slow on AMD; plain ones inside made conv1_1's forward 1.8x faster).
 *            Pooling: shuffle_ps 0x88/0xDD de-interleave, permute4x64 to natural order (bit-identical max/avg, first maximum wins).
 *   F(4x4,3x3) vs F(6x6,3x3): F(6x6) needs 64 multiplies per 36 outputs (1.78 per output vs 2.25, at
 *   most 21% fewer GEMM FLOPs) but its transforms (points 0, +-1, +-2, +-1/2; B^T entries up to 5.25, G
 *   entries down to 1/180) are reported to lose about an order of magnitude more fp32 accuracy than
 *   F(4x4)'s measured 1e-5..7e-5, i.e. past the 2e-4 bound every path is tested against, and the GEMM is
 *   not the whole cost (transforms + filter transforms are ~25% on AVX2, perf at 256 px). F(4x4) is kept
 *   on every path; F(6x6) was not implemented or measured. */

enum { NST__CONV_AUTO = 0, NST__CONV_DIRECT = 1, NST__CONV_WINO = 2 };
#define NST__WINO_NT 64   /* tiles per block (multiple of 16): scalar and AVX-512 entries */
#define NST__WINO_CB 48   /* output channels per chunk (multiple of 6): scalar and AVX-512 entries */
#define NST__WINO_STREAM_PLANE ((size_t)512 * 512)   /* output planes written non-temporally (nst__wino_out_avx2) */

struct nst__conv_plan;
struct nst__conv_dir;

/* The kernels of one ISA (see "KERNEL TABLE" above and CONV_TABLE.md). The driver never looks at the
 * ISA: every shape parameter of the data layouts comes from the entry. NULL direct/pool = reference. */
typedef struct nst__conv_kernels {
    nst_arch arch;
    const char *name;
    /* Winograd F(4x4,3x3) */
    int mr;        /* output channels (rows of u) per GEMM call; u is [36][ceil(kout/mr)][mr][kin], each block
                      of mr rows row-major (scalar, AVX-512) or k-major [kin][mr] (AVX2, NEON): only the row's
                      own filter transform and GEMM read it */
    int nr;        /* GEMM column granularity: it is called with n = a multiple of nr columns, n <= nt */
    int nt;        /* max tiles per block (multiple of nr) */
    int cb;        /* output channels per M chunk (multiple of mr) */
    int tg;        /* tiles per vector group of the in/out transforms (they may touch whole groups) */
    int rslack;    /* staged floats per row beyond 4 * round_up(len, tg): 2 at least (the 6x6 patch) */
    void (*wino_filters)(const struct nst__conv_plan *p, int d, float *u, int ob);
    void (*wino_in)(float *v, size_t estride, const float *rows, size_t rstride, int len);
    void (*wino_gemm)(int n, int kk, const float *u, const float *v, size_t ldv, float *m, size_t ldm);
    void (*wino_out)(float *out, int h, int w, int ty, int tx, int len, const float *m, size_t estride,
                     float bias, int relu);
    /* direct convolution (conv1_1 forward); NULL = the reference kernel over the whole layer */
    int dmr, dnx;  /* output channels x pixels of one call; packed filters [ceil(kout/dmr)][kin][9][dmr] */
    int dkout;     /* the direct kernel also takes directions with kin >= 8 and at most this many outputs
                      (conv1_1's backward), where it beats Winograd; 0: only kin < 8 */
    void (*direct)(const struct nst__conv_dir *dd, const float *in, float *out, int h, int w, const float *bias,
                   int relu, int ob, int y, int x0);
    /* or, where not NULL (it is used instead): output rows y0 .. y1-1, every channel, from input rows it
       packs itself into ring (nst__direct_ring_floats of workspace per thread) */
    void (*direct_rows)(const struct nst__conv_dir *dd, const float *in, float *out, int h, int w,
                        const float *bias, int relu, int y0, int y1, float *ring);
    /* 2x2 stride-2 pooling of channel ch (bit-identical to the reference); NULL = the reference */
    void (*pool_fwd)(float *out, const float *in, int ch, int h, int w, int avg);
    void (*pool_bwd)(float *din, const float *dout, const float *in, int ch, int h, int w, int avg);
    int split512;  /* 1: the row for CPUs whose 512-bit ops run as two halves (nst__cpu_info.split512) */
} nst__conv_kernels;

/* One direction: a 3x3 convolution from kin to kout channels. */
typedef struct nst__conv_dir {
    int algo;          /* NST__CONV_DIRECT or NST__CONV_WINO */
    int kin, kout;
    int lazy;          /* WINO only: u is NULL and the filters are transformed into the workspace per call */
    float *u;          /* WINO: [36][ceil(kout/mr)][mr][kin] transformed filters (blocks of mr output
                          rows, zero-padded); DIRECT with a kernel: [ceil(kout/dmr)][kin][9][dmr]; else NULL */
    size_t u_bytes;    /* size of u, for the memory estimate */
} nst__conv_dir;

typedef struct nst__conv_plan {
    int cin, cout;
    const float *weight, *bias;   /* borrowed from the model; valid as long as the plan */
    nst_arch arch;                /* the path of k */
    const nst__conv_kernels *k;   /* kernels chosen at creation */
    nst__conv_dir dir[2];         /* [0] forward (cin -> cout), [1] backward-data (cout -> cin) */
} nst__conv_plan;

/* Filter tap t (0..8, row-major) from input channel i to output channel o in direction d:
 * backward-data reads the forward filter flipped and with its channels swapped. */
static float nst__conv_tap(const nst__conv_plan *p, int d, int o, int i, int t) {
    if (d == 0) return p->weight[((size_t)o * p->cin + i) * 9 + t];
    return p->weight[((size_t)i * p->cin + o) * 9 + (8 - t)];
}

/* Auto choice, from bench_conv on Zen 4: Winograd wins wherever the input has >= 8 channels; with 3
 * inputs (conv1_1 forward) they tie, and direct is exact. With at most dkout outputs (conv1_1's backward,
 * 64 -> 3) a path whose direct kernel reads packed rows (AVX2) takes it: Winograd's 6-row GEMM tile
 * spends half its work on zero filters there and its input transform of 64 channels dominates (Zen 3,
 * 512 px, bench_conv --layer conv1_1 --cpu alternated on a loaded host: 19-23 ms against 24-30 on one
 * thread, 10.5-14.6 against 14-15 on two). Zen 4's AVX-512 row points at that kernel too (measured, see
 * nst__conv_kernels_for); the other AVX-512 row and NEON keep Winograd for it (unmeasured there). */
static int nst__conv_choose(const nst__conv_kernels *k, int kin, int kout) {
    return kin < 8 || ((k->direct || k->direct_rows) && kout <= k->dkout) ? NST__CONV_DIRECT : NST__CONV_WINO;
}

/* Layers with at least this many filters (cin * cout: every Winograd layer of VGG-19, conv1_2 on) keep no
 * transformed filters: each call transforms them into the workspace (a few ms on 2 threads for 512x512
 * filters, ~5% of those layers' time at 512 px; ~1 ms for 256x256, <1% of conv3_x), which saves 8x their
 * weight size, ~410 MB for VGG-19 to relu5_1; the untiled objective's workspace lives in the parts of
 * its feature buffers that deep layers leave free (nst__net_init_packed), so at 512 px this costs no
 * memory at all. The threshold was 256 x 256 until conv1_2 .. conv3_1 (18 MB of filters, both
 * directions) went lazy too: ~2 ms of one Zen 3 core per evaluation for 17.3 MiB less at every size,
 * which took a 512 x 512 run with history 100 from 604 to 587 MiB (issue 10's 600). On maps of at most
 * NST__CONV_SMALL_HW pixels, where the transform would be most of the layer, a lazy direction runs as
 * one GEMM instead (nst__conv_small_run). */
#ifndef NST__WINO_LAZY
#define NST__WINO_LAZY (64 * 64)
#endif

/* U = G g G^T for the mr output channels of row block ob, every input channel, into
 * u[36][nob][mr][kin] (rows past kout are zero; mr from the plan's kernel entry). G is the filter transform of F(4x4, 3x3) with
 * points 0, 1, -1, 2, -2, infinity: rows (1/4,0,0), -(1,1,1)/6, -(1,-1,1)/6, (1/24,1/12,1/6),
 * (1/24,-1/12,1/6), (0,0,1), applied here in factored form. */
#define NST__WINO_G(a, b, c, t0, t1, t2, t3, t4, t5) do {                                  \
    float s_ = (a) + (c), q_ = (a) * (1.0f / 24) + (c) * (1.0f / 6), h_ = (b) * (1.0f / 12); \
    t0 = (a) * 0.25f; t1 = -(s_ + (b)) * (1.0f / 6); t2 = -(s_ - (b)) * (1.0f / 6);         \
    t3 = q_ + h_; t4 = q_ - h_; t5 = (c); } while (0)
/* The 36 transformed values v[e] of the filter from input channel i to output channel o (o < kout). */
static void nst__wino_filter1(const nst__conv_plan *p, int d, int o, int i, float v[36]) {
    float g[9], t[6][3];
    int k, c;
    if (d == 0) memcpy(g, p->weight + ((size_t)o * p->cin + i) * 9, sizeof g);
    else {
        const float *w = p->weight + ((size_t)i * p->cin + o) * 9;
        for (k = 0; k < 9; k++) g[k] = w[8 - k];
    }
    for (c = 0; c < 3; c++) NST__WINO_G(g[c], g[3 + c], g[6 + c], t[0][c], t[1][c], t[2][c], t[3][c], t[4][c], t[5][c]);
    for (k = 0; k < 6; k++)
        NST__WINO_G(t[k][0], t[k][1], t[k][2], v[k * 6], v[k * 6 + 1], v[k * 6 + 2], v[k * 6 + 3], v[k * 6 + 4],
                    v[k * 6 + 5]);
}
static void nst__wino_filters(const nst__conv_plan *p, int d, float *u, int ob) {
    const nst__conv_dir *dd = &p->dir[d];
    int mr = p->k->mr, kin = dd->kin, kout = dd->kout, nob = (kout + mr - 1) / mr, i, e, r;
    size_t es = (size_t)nob * mr * kin;
    for (r = 0; r < mr; r++) {
        int o = ob * mr + r;
        float *base = u + ((size_t)ob * mr + r) * kin;   /* + e * es + i */
        for (i = 0; i < kin; i++) {
            float v[36];
            if (o >= kout) {
                for (e = 0; e < 36; e++) base[e * es + i] = 0.0f;
                continue;
            }
            nst__wino_filter1(p, d, o, i, v);
            for (e = 0; e < 36; e++) base[e * es + i] = v[e];
        }
    }
}

#if defined(NST__X86_AVX512)
/* The same transform, 16 input channels per vector (gathered taps), stored straight into the
 * [6][kin] rows. Same operations as the scalar version, so the same values unless the compiler
 * contracts the scalar one into FMAs. */
static NST__TARGET_AVX512 void nst__wino_filters_avx512(const nst__conv_plan *p, int d, float *u, int ob) {
    const nst__conv_dir *dd = &p->dir[d];
    int kin = dd->kin, kout = dd->kout, nob = (kout + 5) / 6, i0, r;
    size_t es = (size_t)nob * 6 * kin;
    const __m512 c4 = _mm512_set1_ps(0.25f), c6 = _mm512_set1_ps(1.0f / 6), c12 = _mm512_set1_ps(1.0f / 12);
    const __m512 c24 = _mm512_set1_ps(1.0f / 24), cn6 = _mm512_set1_ps(-1.0f / 6);   /* as in the AVX2 transform */
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i idx = _mm512_mullo_epi32(lane, _mm512_set1_epi32(d == 0 ? 9 : 9 * p->cin));
    for (r = 0; r < 6; r++) {
        int o = ob * 6 + r;
        float *base = u + ((size_t)ob * 6 + r) * kin;
        for (i0 = 0; i0 < kin; i0 += 16) {
            int n = NST__MIN(16, kin - i0), k, c;
            __mmask16 mk = (__mmask16)(n >= 16 ? 0xFFFF : (1u << n) - 1);
            __m512 g[9], t[6][3];
            if (o >= kout) {
                for (k = 0; k < 36; k++) _mm512_mask_storeu_ps(base + k * es + i0, mk, _mm512_setzero_ps());
                continue;
            }
            for (k = 0; k < 9; k++) {
                const float *src = d == 0 ? p->weight + ((size_t)o * p->cin + i0) * 9 + k
                                          : p->weight + ((size_t)i0 * p->cin + o) * 9 + (8 - k);
                g[k] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mk, idx, src, 4);
            }
#define NST__WINO_GV(a, b, cc, t0, t1, t2, t3, t4, t5) do {                                          \
    __m512 s_ = _mm512_add_ps(a, cc), q_ = _mm512_add_ps(_mm512_mul_ps(a, c24), _mm512_mul_ps(cc, c6)); \
    __m512 h_ = _mm512_mul_ps(b, c12);                                                                 \
    t0 = _mm512_mul_ps(a, c4);                                                                         \
    t1 = _mm512_mul_ps(_mm512_add_ps(s_, b), cn6);                                                      \
    t2 = _mm512_mul_ps(_mm512_sub_ps(s_, b), cn6);                                                      \
    t3 = _mm512_add_ps(q_, h_); t4 = _mm512_sub_ps(q_, h_); t5 = cc; } while (0)
            for (c = 0; c < 3; c++) NST__WINO_GV(g[c], g[3 + c], g[6 + c], t[0][c], t[1][c], t[2][c], t[3][c], t[4][c], t[5][c]);
            for (k = 0; k < 6; k++) {
                __m512 w0, w1, w2, w3, w4, w5;
                float *dst = base + (size_t)(k * 6) * es + i0;
                NST__WINO_GV(t[k][0], t[k][1], t[k][2], w0, w1, w2, w3, w4, w5);
                _mm512_mask_storeu_ps(dst, mk, w0); _mm512_mask_storeu_ps(dst + es, mk, w1);
                _mm512_mask_storeu_ps(dst + 2 * es, mk, w2); _mm512_mask_storeu_ps(dst + 3 * es, mk, w3);
                _mm512_mask_storeu_ps(dst + 4 * es, mk, w4); _mm512_mask_storeu_ps(dst + 5 * es, mk, w5);
            }
#undef NST__WINO_GV
        }
    }
}
#endif

#if defined(NST__NEON)
/* The NEON kernels keep each block of 6 output rows k-major, u[36][nob][kin][6] (the 6 rows of one input
 * channel contiguous), so the GEMM loads the 12 filter values of two k in three q registers (see
 * nst__wino_gemm16_neon). Two input channels per pass: their 12 (channel, row) pairs are the lanes of 3 q
 * registers, computed one q register at a time by the scalar transform's operations (nst__wino_f4_neon);
 * each transform element's 12 values are stored contiguously. Missing rows/channels read zeros. The lazy
 * layers run this on every call, so its cost shows in the evaluation: written with the 12 source pointers
 * chosen per pass (a modulo and a division by 6 for each) and the 36 destinations as separate offsets, gcc
 * 12 kept those offsets on the stack and the transform took 96 instructions per filter (35 of them vector,
 * 28 loads/stores; 265M of a 128 px evaluation's 1.99e9, bench/neon_profile.sh). Now full passes take
 * their pointers from two row bases and each q register's 36 results go out through one pointer stepped by
 * the element stride: 64 instructions per filter, 185M (-30%; the evaluation 1.99e9 -> 1.91e9, the same
 * loss). gcc still computes a q register's 36 results before storing them (spilling ~6), and two pointers
 * stepped by 2 es (one add per two stores) came out with a copy per store: no fewer instructions. */
#define NST__WINO_GN(a, b, cc, t0, t1, t2, t3, t4, t5) do {                                         \
    float32x4_t s_ = vaddq_f32(a, cc), q_ = vaddq_f32(vmulq_n_f32(a, 1.0f / 24), vmulq_n_f32(cc, 1.0f / 6)); \
    float32x4_t h_ = vmulq_n_f32(b, 1.0f / 12);                                                     \
    t0 = vmulq_n_f32(a, 0.25f);                                                                     \
    t1 = vmulq_n_f32(vaddq_f32(s_, b), -1.0f / 6);   /* the same bits as negating first */             \
    t2 = vmulq_n_f32(vsubq_f32(s_, b), -1.0f / 6);                                                  \
    t3 = vaddq_f32(q_, h_); t4 = vsubq_f32(q_, h_); t5 = cc; } while (0)
/* The transforms of the 4 filters w0..w3 (9 taps each; flipped: backward-data's tap k is stored at 8 - k)
 * into lane l of o[e * es] (e = 0..35), all 4 lanes or (lanes == 2) the first two. */
static void nst__wino_f4_neon(const float *w0, const float *w1, const float *w2, const float *w3, int flip, float *o,
                              size_t es, int lanes) {
    /* taps 0..3 and 4..7 of the 4 filters by plain loads and a 4x4 transpose (gcc keeps ld4-lane structures
     * on the stack), tap 8 by lane loads */
    float32x4_t r[8], g[9], t[6][3], g8 = vld1q_dup_f32(w0 + 8);
    int k, c;
    g8 = vld1q_lane_f32(w1 + 8, g8, 1); g8 = vld1q_lane_f32(w2 + 8, g8, 2); g8 = vld1q_lane_f32(w3 + 8, g8, 3);
    NST__UNROLL for (k = 0; k < 2; k++) {
        float32x4_t a0 = vld1q_f32(w0 + 4 * k), a1 = vld1q_f32(w1 + 4 * k), a2 = vld1q_f32(w2 + 4 * k);
        float32x4_t a3 = vld1q_f32(w3 + 4 * k);
        float64x2_t e0 = vreinterpretq_f64_f32(vtrn1q_f32(a0, a1)), o0 = vreinterpretq_f64_f32(vtrn2q_f32(a0, a1));
        float64x2_t e1 = vreinterpretq_f64_f32(vtrn1q_f32(a2, a3)), o1 = vreinterpretq_f64_f32(vtrn2q_f32(a2, a3));
        r[4 * k] = vreinterpretq_f32_f64(vtrn1q_f64(e0, e1));
        r[4 * k + 1] = vreinterpretq_f32_f64(vtrn1q_f64(o0, o1));
        r[4 * k + 2] = vreinterpretq_f32_f64(vtrn2q_f64(e0, e1));
        r[4 * k + 3] = vreinterpretq_f32_f64(vtrn2q_f64(o0, o1));
    }
    if (!flip) {
        NST__UNROLL for (k = 0; k < 8; k++) g[k] = r[k];
        g[8] = g8;
    } else {
        NST__UNROLL for (k = 0; k < 8; k++) g[8 - k] = r[k];
        g[0] = g8;
    }
    NST__UNROLL for (c = 0; c < 3; c++)
        NST__WINO_GN(g[c], g[3 + c], g[6 + c], t[0][c], t[1][c], t[2][c], t[3][c], t[4][c], t[5][c]);
    NST__UNROLL for (k = 0; k < 6; k++) {
        float32x4_t w[6];
        NST__WINO_GN(t[k][0], t[k][1], t[k][2], w[0], w[1], w[2], w[3], w[4], w[5]);
        NST__UNROLL for (c = 0; c < 6; c++, o += es) {
            if (lanes == 4) vst1q_f32(o, w[c]);
            else vst1_f32(o, vget_low_f32(w[c]));
#if defined(__GNUC__) || defined(__clang__)
            __asm__("" : "+r"(o));   /* one pointer stepped, not 36 offsets kept on the stack */
#endif
        }
    }
}
#undef NST__WINO_GN
static void nst__wino_filters_neon(const nst__conv_plan *p, int d, float *u, int ob) {
    static const float zero9[9] = {0};
    const nst__conv_dir *dd = &p->dir[d];
    int kin = dd->kin, kout = dd->kout, nob = (kout + 5) / 6, nr = NST__MIN(6, kout - ob * 6), i = 0;
    size_t es = (size_t)nob * 6 * kin;
    size_t so = d == 0 ? (size_t)9 * p->cin : 9, si = d == 0 ? 9 : (size_t)9 * p->cin;   /* per out/in channel */
    const float *wb = p->weight + (size_t)ob * 6 * so;
    float *base = u + (size_t)ob * 6 * kin;
    if (nr == 6)   /* pairs of channels, all 6 rows: lanes (i, 0..3), (i, 4..5; i + 1, 0..1), (i + 1, 2..5) */
        for (; i + 2 <= kin; i += 2) {
            const float *a = wb + (size_t)i * si, *b = a + si;
            float *o = base + (size_t)i * 6;
            nst__wino_f4_neon(a, a + so, a + 2 * so, a + 3 * so, d, o, es, 4);
            nst__wino_f4_neon(a + 4 * so, a + 5 * so, b, b + so, d, o + 4, es, 4);
            nst__wino_f4_neon(b + 2 * so, b + 3 * so, b + 4 * so, b + 5 * so, d, o + 8, es, 4);
        }
    for (; i < kin; i += 2) {   /* the last block of rows, an odd last channel */
        const float *wp[12];
        int ni = NST__MIN(2, kin - i), f, q;
        for (f = 0; f < 12; f++)   /* pair f = lane f % 4 of q register f / 4: channel i + f / 6, row f % 6 */
            wp[f] = f % 6 >= nr || f / 6 >= ni ? zero9 : wb + (f % 6) * so + (i + f / 6) * si;
        for (q = 0; q < (ni == 2 ? 3 : 2); q++)   /* odd kin: rows 4, 5 of the last channel are 2 lanes */
            nst__wino_f4_neon(wp[4 * q], wp[4 * q + 1], wp[4 * q + 2], wp[4 * q + 3], d, base + (size_t)i * 6 + 4 * q,
                              es, ni == 2 || q == 0 ? 4 : 2);
    }
}
#endif

static const nst__conv_kernels *nst__conv_kernels_for(nst_arch a);

static nst_status nst__conv_dir_init(nst__conv_plan *p, int d, int algo) {
    nst__conv_dir *dd = &p->dir[d];
    const nst__conv_kernels *k = p->k;
    int kin = d == 0 ? p->cin : p->cout, kout = d == 0 ? p->cout : p->cin;
    int o, i, t;
    size_t n;
    dd->kin = kin; dd->kout = kout;
    dd->algo = algo == NST__CONV_AUTO ? nst__conv_choose(k, kin, kout) : algo;
    dd->u = NULL;
    if (dd->algo == NST__CONV_WINO) {
        int nob = (kout + k->mr - 1) / k->mr;
        dd->lazy = (size_t)kin * kout >= NST__WINO_LAZY;
        if (dd->lazy) return NST_OK;
        if (!nst__mul_ok((size_t)36 * nob * k->mr, (size_t)kin, &n) || !nst__mul_ok(n, sizeof(float), &n))
            return nst__err(NST_ERR_NOMEM, "conv: %dx%d filters are too large", kin, kout);
        dd->u = (float *)nst__aligned_alloc(n);
        if (!dd->u) return nst__err(NST_ERR_NOMEM, "conv: out of memory for transformed filters");
        dd->u_bytes = n;
        for (o = 0; o < nob; o++) k->wino_filters(p, d, dd->u, o);
    } else if (k->direct || k->direct_rows) {
        int mr = k->dmr, nob = (kout + mr - 1) / mr;
        if (!nst__mul_ok((size_t)nob * mr * 9, (size_t)kin, &n) || !nst__mul_ok(n, sizeof(float), &n))
            return nst__err(NST_ERR_NOMEM, "conv: %dx%d filters are too large", kin, kout);
        dd->u = (float *)nst__aligned_alloc(n);
        if (!dd->u) return nst__err(NST_ERR_NOMEM, "conv: out of memory for packed filters");
        dd->u_bytes = n;
        memset(dd->u, 0, n);
        for (o = 0; o < kout; o++)
            for (i = 0; i < kin; i++)
                for (t = 0; t < 9; t++)
                    dd->u[(((size_t)(o / mr) * kin + i) * 9 + t) * mr + o % mr] = nst__conv_tap(p, d, o, i, t);
    }
    return NST_OK;
}

static void nst__conv_plan_free(nst__conv_plan *p) {
    if (!p) return;
    nst__aligned_free(p->dir[0].u);
    nst__aligned_free(p->dir[1].u);
    nst__free(p);
}

/* algo: NST__CONV_AUTO, or one algorithm forced for both directions (tests, benches). */
static nst_status nst__conv_plan_create_ex(const float *weight, const float *bias, int cin, int cout, int algo,
                                           nst_arch arch, nst__conv_plan **out) {
    nst__conv_plan *p;
    nst_status st;
    *out = NULL;
    if (!weight || cin <= 0 || cout <= 0) return nst__err(NST_ERR_ARGUMENT, "conv: bad plan arguments");
    p = (nst__conv_plan *)nst__calloc(1, sizeof *p);
    if (!p) return nst__err(NST_ERR_NOMEM, "conv: out of memory");
    p->cin = cin; p->cout = cout; p->weight = weight; p->bias = bias;
    p->k = nst__conv_kernels_for(arch);
    p->arch = p->k->arch;
    if ((st = nst__conv_dir_init(p, 0, algo)) != NST_OK || (st = nst__conv_dir_init(p, 1, algo)) != NST_OK) {
        nst__conv_plan_free(p);
        return st;
    }
    *out = p;
    return NST_OK;
}
static nst_status nst__conv_plan_create(const float *weight, const float *bias, int cin, int cout,
                                        nst__conv_plan **out) {
    return nst__conv_plan_create_ex(weight, bias, cin, cout, NST__CONV_AUTO, nst__cpu_arch(), out);
}

/* ---- Winograd F(4x4, 3x3) ------------------------------------------------------------------------
 * Tiles are numbered row-major over the (ceil(h/4) x ceil(w/4)) grid. A block is a run of nt consecutive
 * tiles; it may span several tile rows ("segments"). nt (<= k->nt, a multiple of k->nr) is also the
 * column stride ("ntcap") of the block's scratch. Per-thread scratch, in floats, each region starting
 * 64-byte aligned:
 *   V [36][kin*nt + 16]    transformed input patches of the block (column = tile within the block)
 *   M [36][cb*nt + 16] + tg  transform-domain outputs of one chunk of cb output channels
 *   R [6][rstride]         six zero-padded input rows of one segment
 * The 16 floats (one cache line) between transform elements: the input transform stores and the output
 * transform loads all 36 elements of a tile group, and kin*nt floats is a multiple of 4 KiB, so without
 * the skew those 36 lines share one L1 set (8..12 ways on every CPU we target) and each is evicted before
 * the next group uses the rest of it.
 * nt is the ISA's nt unless kin x nt floats (one transform element's V[e]) would exceed an eighth of
 * L2; then fewer tiles, down to 32. On Zen 3 (512 KiB L2, AVX2) that takes the 512-channel directions
 * (conv4_2..4_4, conv4_1's backward, conv5_1's forward) from 64 to 32 tiles and leaves the rest at 64.
 * What it buys: the block's whole V (36 x kin x nt floats, 4.7 MB at 512 channels and 64 tiles) is read
 * again by each chunk of cb output channels, with the chunk's share of the filters (3.4 MB) streamed in
 * between; at half the size it is likelier to be in L3 still for the next chunk (our reading: this host
 * has no cache counters). Not V[e]'s reuse inside a chunk: the GEMM run on 32-column halves of a 64-tile
 * V[e] measured like 64 tiles. L2 is the cache size we know; the rule is a proxy that reproduces the
 * measured choice and changes nothing for VGG's channel counts where L2 is 1 MiB or more.
 * Measured: `bench_conv --size 512 --layer conv4_2` alternated with the old build, 12 pairs, 1 thread: faster in 11 of 12 pairs forward and 12 of 12 backward (mean
 * 116/114 -> 90/88 ms); 2 threads, 8 pairs: conv4_2 forward + backward 125 -> 92 ms, conv4_1 58 -> 50;
 * conv4_3 8 of 8 pairs on 1 thread, 6 of 8 on 2 (217 -> 180, 130 -> 108 ms). All layers at 32 was slower
 * where kin = 256 (conv3_2's backward 9 of 10 pairs, conv4_1's forward 8 of 10); 16, 24, 40 and 48
 * tiles on conv4_2 were no better than 32, and 96 or 128 tiles for the 64..256-channel layers no better
 * than 64; at 256 px (1 thread, 10 pairs) conv4_1 and conv4_2 were faster in 6-8 of 10 pairs, conv5_1
 * even. Inside the evaluation the gain is smaller and shows in the busy pairs (profile rows conv4_x +
 * conv5_1: 2 threads 440 -> 369 ms over 8 pairs, no difference in the quietest two; 1 thread 763 -> 735
 * over 6). Same bits whatever nt: every tile's sums run in the same order. */
#define NST__WINO_SKEW 16
static int nst__wino_nt(const nst__conv_kernels *k, int kin, int tiles, int nthreads) {
    int per = (tiles + nthreads - 1) / nthreads, cap = k->nt, l1, l2;
    nst__gemm_caches(&l1, &l2);
    if (l2 > 0 && kin > 0) {   /* kin x nt floats within an eighth of L2, at least 32 tiles (see above) */
        int c = (int)((size_t)l2 / 8 / (sizeof(float) * (size_t)kin)) / k->nr * k->nr;
        cap = NST__MIN(cap, NST__MAX(c, (32 + k->nr - 1) / k->nr * k->nr));
    }
    per = (per + k->nr - 1) / k->nr * k->nr;
    if (per > cap && tiles % cap && tiles % cap <= cap / 4) {
        /* A last block of at most a quarter of the others is folded into them (up to 1.25 cap + nr tiles a
         * block): each block streams all of the layer's transformed filters (37.7 MB at 512 x 512), which a
         * handful of tiles cannot pay for. Zen 4, AVX-512, `bench_conv --layer conv4_2,conv3_2`, the old
         * build alternated 3 times: conv4_2 at 384 px (144 tiles: 64 + 64 + 16 -> 80 + 64) 22.4-23.7 ->
         * 18.8-21.6 ms on 2 threads, at 448 px (196: 64 x 3 + 4 -> 80 + 80 + 36) 50.2-52.8 -> 47.5-50.7 on 1
         * (CPU time), conv3_2 at 448 (784 tiles) 46.4-50.6 -> 45.3-49. Same bits: a tile's sums do not
         * depend on its block. */
        int nb = tiles / cap;
        return ((tiles + nb - 1) / nb + k->nr - 1) / k->nr * k->nr;
    }
    return per < cap ? per : cap;
}
static size_t nst__wino_rstride(const nst__conv_kernels *k, int nt) {
    return ((size_t)4 * ((nt + k->tg - 1) / k->tg * k->tg) + (size_t)k->rslack + 15) / 16 * 16;
}
static size_t nst__wino_thread_floats(const nst__conv_kernels *k, int kin, int nt) {
    size_t v = (size_t)36 * ((size_t)kin * nt + NST__WINO_SKEW), m = (size_t)36 * ((size_t)k->cb * nt + NST__WINO_SKEW) + (size_t)k->tg;
    size_t r = 6 * nst__wino_rstride(k, nt);
    return (v + 15) / 16 * 16 + (m + 15) / 16 * 16 + (r + 15) / 16 * 16;
}

/* Padding of the input (nst__conv_forward_pad): zeros, or the random model's blended reflection
 * (>>vgg, "reflection padding for the random model"): row -1 is NST__PAD_EDGE * row 0 + (1 - NST__PAD_EDGE)
 * * row 1, row h, column -1 and column w alike, a corner blending 4 pixels as nst__pad_at does. Positions
 * farther out stay zero: only the discarded outputs of a tile's overhang read them. */
enum { NST__CONV_PAD_ZERO = 0, NST__CONV_PAD_BLEND = 1 };
#define NST__PAD_EDGE 0.7f

/* Row r (0..5) of a segment: in[y0 + r][xs + i] for i < n, padded as `pad` says outside the image. */
static void nst__wino_rows(float *rows, size_t rstride, const float *src, int h, int w, int y0, int xs, int n,
                           int pad) {
    const float pe = NST__PAD_EDGE, pn = 1.0f - NST__PAD_EDGE;
    int r, i;
    for (r = 0; r < 6; r++) {
        float *b = rows + r * rstride;
        int y = y0 + r, a = xs < 0 ? -xs : 0, e = w - xs < n ? w - xs : n, x1 = w > 1 ? 1 : 0;
        const float *p0, *p1 = NULL;   /* the row, or (p1 set) the two rows a padded row blends */
        if (y >= 0 && y < h) p0 = src + (size_t)y * w;
        else if (pad == NST__CONV_PAD_BLEND && (y == -1 || y == h)) {
            p0 = src + (size_t)(y < 0 ? 0 : h - 1) * w;
            p1 = src + (size_t)(h < 2 ? (y < 0 ? 0 : h - 1) : y < 0 ? 1 : h - 2) * w;
        } else p0 = NULL;
        if (!p0 || e <= a) { memset(b, 0, sizeof(float) * (size_t)n); continue; }
        if (a > 0) memset(b, 0, sizeof(float) * (size_t)a);
        if (!p1) memcpy(b + a, p0 + xs + a, sizeof(float) * (size_t)(e - a));
        else for (i = a; i < e; i++) b[i] = pe * p0[xs + i] + pn * p1[xs + i];
        if (e < n) memset(b + e, 0, sizeof(float) * (size_t)(n - e));
        if (pad != NST__CONV_PAD_BLEND) continue;
        if (a > 0) {   /* column -1 (xs is -1 here) */
            b[0] = pe * p0[0] + pn * p0[x1];
            if (p1) b[0] = pe * b[0] + pn * (pe * p1[0] + pn * p1[x1]);
        }
        if (e < n) {   /* column w */
            b[e] = pe * p0[w - 1] + pn * p0[w - 1 - x1];
            if (p1) b[e] = pe * b[e] + pn * (pe * p1[w - 1] + pn * p1[w - 1 - x1]);
        }
    }
}

/* B^T z for one 6-vector, the 1-D input transform. Shared by the scalar path (macro over floats). */
#define NST__WINO_BT(z0, z1, z2, z3, z4, z5, t0, t1, t2, t3, t4, t5) do { \
    t0 = 4 * (z0) - 5 * (z2) + (z4);                                     \
    t1 = -4 * ((z1) + (z2)) + (z3) + (z4);                               \
    t2 = 4 * ((z1) - (z2)) - (z3) + (z4);                                \
    t3 = 2 * ((z3) - (z1)) - (z2) + (z4);                                \
    t4 = 2 * ((z1) - (z3)) - (z2) + (z4);                                \
    t5 = 4 * (z1) - 5 * (z3) + (z5); } while (0)
/* A^T m, the 1-D output transform. */
#define NST__WINO_AT(m0, m1, m2, m3, m4, m5, y0, y1, y2, y3) do {        \
    y0 = (m0) + ((m1) + (m2)) + ((m3) + (m4));                           \
    y1 = ((m1) - (m2)) + 2 * ((m3) - (m4));                              \
    y2 = ((m1) + (m2)) + 4 * ((m3) + (m4));                              \
    y3 = ((m1) - (m2)) + 8 * ((m3) - (m4)) + (m5); } while (0)

/* Scalar input transform of `len` tiles of one segment into V columns jb.. (row stride nt). */
static void nst__wino_in_scalar(float *v, size_t estride, const float *rows, size_t rstride, int len) {
    int j, r, c;
    for (j = 0; j < len; j++) {
        float t[6][6], d[6];
        for (r = 0; r < 6; r++) {
            const float *z = rows + r * rstride + 4 * j;
            NST__WINO_BT(z[0], z[1], z[2], z[3], z[4], z[5], t[r][0], t[r][1], t[r][2], t[r][3], t[r][4], t[r][5]);
        }
        for (c = 0; c < 6; c++) {
            NST__WINO_BT(t[0][c], t[1][c], t[2][c], t[3][c], t[4][c], t[5][c], d[0], d[1], d[2], d[3], d[4], d[5]);
            for (r = 0; r < 6; r++) v[(size_t)(r * 6 + c) * estride + j] = d[r];
        }
    }
}

/* Scalar transform-domain GEMM: m[r][0..n) = sum_k u[r][k] * v[k][..], r < 6 (u rows kk apart), n <= 64. */
static void nst__wino_gemm_scalar(int n, int kk, const float *u, const float *v, size_t ldv, float *m, size_t ldm) {
    int r, k, j;
    for (; n > 64; n -= 64, v += 64, m += 64) nst__wino_gemm_scalar(64, kk, u, v, ldv, m, ldm);   /* merged blocks */
    for (r = 0; r < 6; r++) {
        float acc[64];
        for (j = 0; j < n; j++) acc[j] = 0.0f;
        for (k = 0; k < kk; k++) {
            float a = u[(size_t)r * kk + k];
            const float *vr = v + (size_t)k * ldv;
            for (j = 0; j < n; j++) acc[j] += a * vr[j];
        }
        for (j = 0; j < n; j++) m[(size_t)r * ldm + j] = acc[j];
    }
}

/* Scalar output transform of `len` tiles of channel row m (element stride estride) to out tiles. */
static void nst__wino_out_scalar(float *out, int h, int w, int ty, int tx, int len, const float *m, size_t estride,
                                 float bias, int relu) {
    int j, r, c;
    for (j = 0; j < len; j++) {
        float t[4][6], y[4][4];
        for (c = 0; c < 6; c++) {
            const float *q = m + j + (size_t)c * estride;
            NST__WINO_AT(q[0], q[6 * estride], q[12 * estride], q[18 * estride], q[24 * estride], q[30 * estride],
                         t[0][c], t[1][c], t[2][c], t[3][c]);
        }
        for (r = 0; r < 4; r++) NST__WINO_AT(t[r][0], t[r][1], t[r][2], t[r][3], t[r][4], t[r][5], y[r][0], y[r][1], y[r][2], y[r][3]);
        for (r = 0; r < 4; r++) {
            int yy = 4 * ty + r;
            if (yy >= h) break;
            for (c = 0; c < 4; c++) {
                int xx = 4 * (tx + j) + c;
                float s = y[r][c] + bias;
                if (xx >= w) break;
                out[(size_t)yy * w + xx] = relu && !(s > 0.0f) ? 0.0f : s;
            }
        }
    }
}

#if defined(NST__X86_AVX512)
/* AVX-512: 16 tiles per vector. Tiles sit 4 floats apart in a row, so the input transform
 * de-interleaves with stride 4 (two vpermt2ps and a blend per column) and the output transform
 * interleaves back (eight vpermt2ps per row of 16 tiles). */
static NST__TARGET_AVX512 __m512 nst__wino_deint4(__m512 a0, __m512 a1, __m512 a2, __m512 a3, __m512i idx) {
    return _mm512_mask_blend_ps(0xFF00, _mm512_permutex2var_ps(a0, idx, a1), _mm512_permutex2var_ps(a2, idx, a3));
}
static NST__TARGET_AVX512 void nst__wino_in_avx512(float *v, size_t estride, const float *rows, size_t rstride,
                                                   int len) {
    const __m512i i0 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
    const __m512i i1 = _mm512_add_epi32(i0, _mm512_set1_epi32(1));
    const __m512i i2 = _mm512_add_epi32(i0, _mm512_set1_epi32(2));
    const __m512i i3 = _mm512_add_epi32(i0, _mm512_set1_epi32(3));
    const __m512 c2 = _mm512_set1_ps(2), c4 = _mm512_set1_ps(4), c5 = _mm512_set1_ps(5);
    int g;
    for (g = 0; 16 * g < len; g++) {
        __m512 t[6][6];
        int r, c, n = len - 16 * g;
        __mmask16 mk = (__mmask16)(n >= 16 ? 0xFFFF : (1u << n) - 1);
        for (r = 0; r < 6; r++) {
            const float *b = rows + r * rstride + 64 * g;
            __m512 a0 = _mm512_loadu_ps(b), a1 = _mm512_loadu_ps(b + 16), a2 = _mm512_loadu_ps(b + 32),
                   a3 = _mm512_loadu_ps(b + 48);
            __m512 e0 = _mm512_loadu_ps(b + 2), e1 = _mm512_loadu_ps(b + 18), e2 = _mm512_loadu_ps(b + 34),
                   e3 = _mm512_loadu_ps(b + 50);
            __m512 z0 = nst__wino_deint4(a0, a1, a2, a3, i0), z1 = nst__wino_deint4(a0, a1, a2, a3, i1);
            __m512 z2 = nst__wino_deint4(a0, a1, a2, a3, i2), z3 = nst__wino_deint4(a0, a1, a2, a3, i3);
            __m512 z4 = nst__wino_deint4(e0, e1, e2, e3, i2), z5 = nst__wino_deint4(e0, e1, e2, e3, i3);
            __m512 s12 = _mm512_add_ps(z1, z2), d12 = _mm512_sub_ps(z1, z2), s34 = _mm512_add_ps(z3, z4);
            __m512 d31 = _mm512_sub_ps(z3, z1), z4mz2 = _mm512_sub_ps(z4, z2);
            t[r][0] = _mm512_add_ps(_mm512_fmsub_ps(c4, z0, _mm512_mul_ps(c5, z2)), z4);
            t[r][1] = _mm512_fnmadd_ps(c4, s12, s34);
            t[r][2] = _mm512_fmadd_ps(c4, d12, _mm512_sub_ps(z4, z3));
            t[r][3] = _mm512_fmadd_ps(c2, d31, z4mz2);
            t[r][4] = _mm512_fnmadd_ps(c2, d31, z4mz2);
            t[r][5] = _mm512_add_ps(_mm512_fmsub_ps(c4, z1, _mm512_mul_ps(c5, z3)), z5);
        }
        for (c = 0; c < 6; c++) {
            __m512 z0 = t[0][c], z1 = t[1][c], z2 = t[2][c], z3 = t[3][c], z4 = t[4][c], z5 = t[5][c];
            __m512 s12 = _mm512_add_ps(z1, z2), d12 = _mm512_sub_ps(z1, z2), s34 = _mm512_add_ps(z3, z4);
            __m512 d31 = _mm512_sub_ps(z3, z1), z4mz2 = _mm512_sub_ps(z4, z2);
            float *o = v + 16 * g + (size_t)c * estride;
            _mm512_mask_storeu_ps(o, mk, _mm512_add_ps(_mm512_fmsub_ps(c4, z0, _mm512_mul_ps(c5, z2)), z4));
            _mm512_mask_storeu_ps(o + 6 * estride, mk, _mm512_fnmadd_ps(c4, s12, s34));
            _mm512_mask_storeu_ps(o + 12 * estride, mk, _mm512_fmadd_ps(c4, d12, _mm512_sub_ps(z4, z3)));
            _mm512_mask_storeu_ps(o + 18 * estride, mk, _mm512_fmadd_ps(c2, d31, z4mz2));
            _mm512_mask_storeu_ps(o + 24 * estride, mk, _mm512_fnmadd_ps(c2, d31, z4mz2));
            _mm512_mask_storeu_ps(o + 30 * estride, mk, _mm512_add_ps(_mm512_fmsub_ps(c4, z1, _mm512_mul_ps(c5, z3)), z5));
        }
    }
}

/* 6 x (16*NV) register tile: m[r][..] = sum_k u[r][k] * v[k][..] (u rows kk apart). */
#define NST__WK_ROW(NV, r)                                                  \
    { __m512 a = _mm512_set1_ps(u##r[k]);                               \
      c##r##0 = _mm512_fmadd_ps(a, b0, c##r##0);                        \
      if (NV > 1) c##r##1 = _mm512_fmadd_ps(a, b1, c##r##1);            \
      if (NV > 2) c##r##2 = _mm512_fmadd_ps(a, b2, c##r##2);            \
      if (NV > 3) c##r##3 = _mm512_fmadd_ps(a, b3, c##r##3); }
#define NST__WK_ST(NV, r)                                                   \
    { float *q = m + r * ldm;                                           \
      _mm512_storeu_ps(q, c##r##0);                                     \
      if (NV > 1) _mm512_storeu_ps(q + 16, c##r##1);                    \
      if (NV > 2) _mm512_storeu_ps(q + 32, c##r##2);                    \
      if (NV > 3) _mm512_storeu_ps(q + 48, c##r##3); }
#define NST__WK_DEF(NV)                                                                                  \
static NST__TARGET_AVX512 void nst__wino_gemm##NV##_avx512(int kk, const float *u, const float *v, size_t ldv, \
                                                          float *m, size_t ldm) {                        \
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00,  \
           c13 = c00, c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00,       \
           c33 = c00, c40 = c00, c41 = c00, c42 = c00, c43 = c00, c50 = c00, c51 = c00, c52 = c00,       \
           c53 = c00;                                                                                    \
    const float *u0 = u, *u1 = u + kk, *u2 = u1 + kk, *u3 = u2 + kk, *u4 = u3 + kk, *u5 = u4 + kk;     \
    int k;                                                                                               \
    for (k = 0; k < kk; k++, v += ldv) {                                                                 \
        __m512 b0 = _mm512_loadu_ps(v), b1 = b0, b2 = b0, b3 = b0;                                       \
        if (NV > 1) b1 = _mm512_loadu_ps(v + 16);                                                        \
        if (NV > 2) b2 = _mm512_loadu_ps(v + 32);                                                        \
        if (NV > 3) b3 = _mm512_loadu_ps(v + 48);                                                        \
        NST__WK_ROW(NV, 0) NST__WK_ROW(NV, 1) NST__WK_ROW(NV, 2) NST__WK_ROW(NV, 3) NST__WK_ROW(NV, 4) NST__WK_ROW(NV, 5)       \
    }                                                                                                    \
    NST__WK_ST(NV, 0) NST__WK_ST(NV, 1) NST__WK_ST(NV, 2) NST__WK_ST(NV, 3) NST__WK_ST(NV, 4) NST__WK_ST(NV, 5)                 \
}
NST__WK_DEF(1)
NST__WK_DEF(2)
NST__WK_DEF(3)
NST__WK_DEF(4)
#undef NST__WK_DEF
#undef NST__WK_ROW
#undef NST__WK_ST
static NST__TARGET_AVX512 void nst__wino_gemm_avx512(int n, int kk, const float *u, const float *v, size_t ldv,
                                                     float *m, size_t ldm) {
    for (; n > 64; n -= 64, v += 64, m += 64) nst__wino_gemm4_avx512(kk, u, v, ldv, m, ldm);   /* merged blocks */
    switch (n / 16) {
    case 1: nst__wino_gemm1_avx512(kk, u, v, ldv, m, ldm); break;
    case 2: nst__wino_gemm2_avx512(kk, u, v, ldv, m, ldm); break;
    case 3: nst__wino_gemm3_avx512(kk, u, v, ldv, m, ldm); break;
    default: nst__wino_gemm4_avx512(kk, u, v, ldv, m, ldm); break;
    }
}

static NST__TARGET_AVX512 void nst__wino_out_avx512(float *out, int h, int w, int ty, int tx, int len,
                                                    const float *m, size_t estride, float bias, int relu) {
    const __m512i p_lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i p_hi = _mm512_add_epi32(p_lo, _mm512_set1_epi32(8));
    const __m512i q_a = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
    const __m512i q_b = _mm512_add_epi32(q_a, _mm512_set1_epi32(8));
    const __m512 c2 = _mm512_set1_ps(2), c4 = _mm512_set1_ps(4), c8 = _mm512_set1_ps(8);
    const __m512 vb = _mm512_set1_ps(bias), zero = _mm512_setzero_ps();
    const int nt = (size_t)h * w >= NST__WINO_STREAM_PLANE;   /* as the AVX2 transform: see there */
    int g;
    for (g = 0; 16 * g < len; g++) {
        __m512 t[4][6];
        int r, c, xb = 4 * (tx + 16 * g);
        int n = 4 * (len - 16 * g);
        if (n > 64) n = 64;
        if (n > w - xb) n = w - xb;
        for (c = 0; c < 6; c++) {
            const float *q = m + 16 * g + (size_t)c * estride;
            __m512 m0 = _mm512_loadu_ps(q), m1 = _mm512_loadu_ps(q + 6 * estride),
                   m2 = _mm512_loadu_ps(q + 12 * estride), m3 = _mm512_loadu_ps(q + 18 * estride),
                   m4 = _mm512_loadu_ps(q + 24 * estride), m5 = _mm512_loadu_ps(q + 30 * estride);
            __m512 s12 = _mm512_add_ps(m1, m2), d12 = _mm512_sub_ps(m1, m2);
            __m512 s34 = _mm512_add_ps(m3, m4), d34 = _mm512_sub_ps(m3, m4);
            t[0][c] = _mm512_add_ps(_mm512_add_ps(m0, s12), s34);
            t[1][c] = _mm512_fmadd_ps(c2, d34, d12);
            t[2][c] = _mm512_fmadd_ps(c4, s34, s12);
            t[3][c] = _mm512_add_ps(_mm512_fmadd_ps(c8, d34, d12), m5);
        }
        for (r = 0; r < 4 && 4 * ty + r < h; r++) {
            __m512 m0 = t[r][0], m1 = t[r][1], m2 = t[r][2], m3 = t[r][3], m4 = t[r][4], m5 = t[r][5];
            __m512 s12 = _mm512_add_ps(m1, m2), d12 = _mm512_sub_ps(m1, m2);
            __m512 s34 = _mm512_add_ps(m3, m4), d34 = _mm512_sub_ps(m3, m4);
            __m512 y0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(m0, s12), s34), vb);
            __m512 y1 = _mm512_add_ps(_mm512_fmadd_ps(c2, d34, d12), vb);
            __m512 y2 = _mm512_add_ps(_mm512_fmadd_ps(c4, s34, s12), vb);
            __m512 y3 = _mm512_add_ps(_mm512_add_ps(_mm512_fmadd_ps(c8, d34, d12), m5), vb);
            __m512 l01, h01, l23, h23;
            float *o = out + (size_t)(4 * ty + r) * w + xb;
            int qq;
            if (relu) {
                y0 = _mm512_maskz_max_ps(0xFFFF, y0, zero); y1 = _mm512_maskz_max_ps(0xFFFF, y1, zero);
                y2 = _mm512_maskz_max_ps(0xFFFF, y2, zero); y3 = _mm512_maskz_max_ps(0xFFFF, y3, zero);
            }
            l01 = _mm512_permutex2var_ps(y0, p_lo, y1); h01 = _mm512_permutex2var_ps(y0, p_hi, y1);
            l23 = _mm512_permutex2var_ps(y2, p_lo, y3); h23 = _mm512_permutex2var_ps(y2, p_hi, y3);
            for (qq = 0; qq < 4; qq++) {
                int cnt = n - 16 * qq;
                __m512 val;
                if (cnt <= 0) break;
                val = qq == 0 ? _mm512_permutex2var_ps(l01, q_a, l23)
                    : qq == 1 ? _mm512_permutex2var_ps(l01, q_b, l23)
                    : qq == 2 ? _mm512_permutex2var_ps(h01, q_a, h23)
                              : _mm512_permutex2var_ps(h01, q_b, h23);
                if (cnt >= 16 && nt && !((uintptr_t)(o + 16 * qq) & 63)) _mm512_stream_ps(o + 16 * qq, val);
                else if (cnt >= 16) _mm512_storeu_ps(o + 16 * qq, val);
                else _mm512_mask_storeu_ps(o + 16 * qq, (__mmask16)((1u << cnt) - 1), val);
            }
        }
    }
    if (nt) _mm_sfence();
}
#endif

#if defined(NST__NEON)
/* NEON: 4 tiles per q register. Tiles sit 4 floats apart in a row, which is exactly what vld4q
 * de-interleaves (z0..z3 of 4 tiles from 16 floats, z4 and z5 from the 16 after the next 4) and vst4q
 * interleaves back. Reads rows up to 16 * ceil(len / 4) + 4 floats. */
static void nst__wino_in_neon(float *v, size_t estride, const float *rows, size_t rstride, int len) {
    int g;
    for (g = 0; 4 * g < len; g++) {
        float32x4_t t[6][6];
        int r, c, j, n = len - 4 * g;
        for (r = 0; r < 6; r++) {
            const float *b = rows + r * rstride + 16 * g;
            float32x4x4_t a = vld4q_f32(b), e = vld4q_f32(b + 4);
            float32x4_t z0 = a.val[0], z1 = a.val[1], z2 = a.val[2], z3 = a.val[3], z4 = e.val[0], z5 = e.val[1];
            float32x4_t s12 = vaddq_f32(z1, z2), d12 = vsubq_f32(z1, z2), s34 = vaddq_f32(z3, z4);
            float32x4_t d31 = vsubq_f32(z3, z1), z4mz2 = vsubq_f32(z4, z2);
            t[r][0] = vfmsq_n_f32(vfmaq_n_f32(z4, z0, 4.0f), z2, 5.0f);
            t[r][1] = vfmsq_n_f32(s34, s12, 4.0f);
            t[r][2] = vfmaq_n_f32(vsubq_f32(z4, z3), d12, 4.0f);
            t[r][3] = vfmaq_n_f32(z4mz2, d31, 2.0f);
            t[r][4] = vfmsq_n_f32(z4mz2, d31, 2.0f);
            t[r][5] = vfmsq_n_f32(vfmaq_n_f32(z5, z1, 4.0f), z3, 5.0f);
        }
        for (c = 0; c < 6; c++) {
            float32x4_t z0 = t[0][c], z1 = t[1][c], z2 = t[2][c], z3 = t[3][c], z4 = t[4][c], z5 = t[5][c];
            float32x4_t s12 = vaddq_f32(z1, z2), d12 = vsubq_f32(z1, z2), s34 = vaddq_f32(z3, z4);
            float32x4_t d31 = vsubq_f32(z3, z1), z4mz2 = vsubq_f32(z4, z2);
            float32x4_t y0 = vfmsq_n_f32(vfmaq_n_f32(z4, z0, 4.0f), z2, 5.0f), y1 = vfmsq_n_f32(s34, s12, 4.0f);
            float32x4_t y2 = vfmaq_n_f32(vsubq_f32(z4, z3), d12, 4.0f), y3 = vfmaq_n_f32(z4mz2, d31, 2.0f);
            float32x4_t y4 = vfmsq_n_f32(z4mz2, d31, 2.0f), y5 = vfmsq_n_f32(vfmaq_n_f32(z5, z1, 4.0f), z3, 5.0f);
            float *o = v + 4 * g + (size_t)c * estride;
            if (n >= 4) {   /* six named stores: gcc 12 left a loop over an array of the six on the stack */
                vst1q_f32(o, y0); vst1q_f32(o + 6 * estride, y1); vst1q_f32(o + 12 * estride, y2);
                vst1q_f32(o + 18 * estride, y3); vst1q_f32(o + 24 * estride, y4); vst1q_f32(o + 30 * estride, y5);
            } else {
                float tmp[6][4];
                vst1q_f32(tmp[0], y0); vst1q_f32(tmp[1], y1); vst1q_f32(tmp[2], y2);
                vst1q_f32(tmp[3], y3); vst1q_f32(tmp[4], y4); vst1q_f32(tmp[5], y5);
                for (r = 0; r < 6; r++)
                    for (j = 0; j < n; j++) o[(size_t)(6 * r) * estride + j] = tmp[r][j];
            }
        }
    }
}

/* 6 x 16 register tile, m[r][0..16) = sum_k u[k][r] * v[k][0..16) (u k-major: the 6 rows of one k
 * contiguous): 24 q accumulators; two k at a time the 12 u values come in 3 q registers and are used
 * through lane-indexed FMAs, so each k costs 24 FMAs, 2 ldp of v and half a 3-register load of u, with
 * 31 of the 32 registers live. (The x86 layout, u[r][k], would need 6 registers for the u values of 4 k
 * and made gcc spill accumulators.) */
#define NST__WN_K(A0, L0, A1, L1, A2, L2, A3, L3, A4, L4, A5, L5)                                          \
    { float32x4_t b0 = vld1q_f32(v), b1 = vld1q_f32(v + 4), b2 = vld1q_f32(v + 8), b3 = vld1q_f32(v + 12); \
      c00 = vfmaq_laneq_f32(c00, b0, A0, L0); c01 = vfmaq_laneq_f32(c01, b1, A0, L0);                    \
      c02 = vfmaq_laneq_f32(c02, b2, A0, L0); c03 = vfmaq_laneq_f32(c03, b3, A0, L0);                    \
      c10 = vfmaq_laneq_f32(c10, b0, A1, L1); c11 = vfmaq_laneq_f32(c11, b1, A1, L1);                    \
      c12 = vfmaq_laneq_f32(c12, b2, A1, L1); c13 = vfmaq_laneq_f32(c13, b3, A1, L1);                    \
      c20 = vfmaq_laneq_f32(c20, b0, A2, L2); c21 = vfmaq_laneq_f32(c21, b1, A2, L2);                    \
      c22 = vfmaq_laneq_f32(c22, b2, A2, L2); c23 = vfmaq_laneq_f32(c23, b3, A2, L2);                    \
      c30 = vfmaq_laneq_f32(c30, b0, A3, L3); c31 = vfmaq_laneq_f32(c31, b1, A3, L3);                    \
      c32 = vfmaq_laneq_f32(c32, b2, A3, L3); c33 = vfmaq_laneq_f32(c33, b3, A3, L3);                    \
      c40 = vfmaq_laneq_f32(c40, b0, A4, L4); c41 = vfmaq_laneq_f32(c41, b1, A4, L4);                    \
      c42 = vfmaq_laneq_f32(c42, b2, A4, L4); c43 = vfmaq_laneq_f32(c43, b3, A4, L4);                    \
      c50 = vfmaq_laneq_f32(c50, b0, A5, L5); c51 = vfmaq_laneq_f32(c51, b1, A5, L5);                    \
      c52 = vfmaq_laneq_f32(c52, b2, A5, L5); c53 = vfmaq_laneq_f32(c53, b3, A5, L5);                    \
      v += ldv; }
#define NST__WN_ST(r)                                                                                     \
    { float *q = m + r * ldm;                                                                             \
      vst1q_f32(q, c##r##0); vst1q_f32(q + 4, c##r##1); vst1q_f32(q + 8, c##r##2); vst1q_f32(q + 12, c##r##3); }
static void nst__wino_gemm16_neon(int kk, const float *u, const float *v, size_t ldv, float *m, size_t ldm) {
    float32x4_t c00 = vdupq_n_f32(0.0f), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00,
                c13 = c00, c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00,
                c33 = c00, c40 = c00, c41 = c00, c42 = c00, c43 = c00, c50 = c00, c51 = c00, c52 = c00,
                c53 = c00;
    int k;
    for (k = 0; k + 2 <= kk; k += 2, u += 12) {
        float32x4_t a0 = vld1q_f32(u), a1 = vld1q_f32(u + 4), a2 = vld1q_f32(u + 8);
        NST__WN_K(a0, 0, a0, 1, a0, 2, a0, 3, a1, 0, a1, 1)
        NST__WN_K(a1, 2, a1, 3, a2, 0, a2, 1, a2, 2, a2, 3)
    }
    if (k < kk) {   /* odd kk: the last k's 6 values */
        float32x4_t a0 = vld1q_f32(u), a1 = vcombine_f32(vld1_f32(u + 4), vdup_n_f32(0.0f));
        NST__WN_K(a0, 0, a0, 1, a0, 2, a0, 3, a1, 0, a1, 1)
    }
    NST__WN_ST(0) NST__WN_ST(1) NST__WN_ST(2) NST__WN_ST(3) NST__WN_ST(4) NST__WN_ST(5)
}
#undef NST__WN_K
#undef NST__WN_ST
static void nst__wino_gemm_neon(int n, int kk, const float *u, const float *v, size_t ldv, float *m, size_t ldm) {
    int j;
    for (j = 0; j < n; j += 16) nst__wino_gemm16_neon(kk, u, v + j, ldv, m + j, ldm);
}

static void nst__wino_out_neon(float *out, int h, int w, int ty, int tx, int len, const float *m, size_t estride,
                               float bias, int relu) {
    const float32x4_t vb = vdupq_n_f32(bias), zero = vdupq_n_f32(0.0f);
    int g;
    for (g = 0; 4 * g < len; g++) {
        float32x4_t t[4][6];
        int r, c, xb = 4 * (tx + 4 * g), n = 4 * (len - 4 * g);
        if (n > 16) n = 16;
        if (n > w - xb) n = w - xb;
        for (c = 0; c < 6; c++) {
            const float *q = m + 4 * g + (size_t)c * estride;
            float32x4_t m0 = vld1q_f32(q), m1 = vld1q_f32(q + 6 * estride), m2 = vld1q_f32(q + 12 * estride);
            float32x4_t m3 = vld1q_f32(q + 18 * estride), m4 = vld1q_f32(q + 24 * estride), m5 = vld1q_f32(q + 30 * estride);
            float32x4_t s12 = vaddq_f32(m1, m2), d12 = vsubq_f32(m1, m2), s34 = vaddq_f32(m3, m4), d34 = vsubq_f32(m3, m4);
            t[0][c] = vaddq_f32(vaddq_f32(m0, s12), s34);
            t[1][c] = vfmaq_n_f32(d12, d34, 2.0f);
            t[2][c] = vfmaq_n_f32(s12, s34, 4.0f);
            t[3][c] = vaddq_f32(vfmaq_n_f32(d12, d34, 8.0f), m5);
        }
        for (r = 0; r < 4 && 4 * ty + r < h; r++) {
            float32x4_t m0 = t[r][0], m1 = t[r][1], m2 = t[r][2], m3 = t[r][3], m4 = t[r][4], m5 = t[r][5];
            float32x4_t s12 = vaddq_f32(m1, m2), d12 = vsubq_f32(m1, m2), s34 = vaddq_f32(m3, m4), d34 = vsubq_f32(m3, m4);
            float32x4x4_t y;
            float *o = out + (size_t)(4 * ty + r) * w + xb;
            y.val[0] = vaddq_f32(vaddq_f32(vaddq_f32(m0, s12), s34), vb);
            y.val[1] = vaddq_f32(vfmaq_n_f32(d12, d34, 2.0f), vb);
            y.val[2] = vaddq_f32(vfmaq_n_f32(s12, s34, 4.0f), vb);
            y.val[3] = vaddq_f32(vaddq_f32(vfmaq_n_f32(d12, d34, 8.0f), m5), vb);
            if (relu) {   /* maxnm: NaN and -0 become +0, as in the reference */
                y.val[0] = vmaxnmq_f32(y.val[0], zero); y.val[1] = vmaxnmq_f32(y.val[1], zero);
                y.val[2] = vmaxnmq_f32(y.val[2], zero); y.val[3] = vmaxnmq_f32(y.val[3], zero);
            }
            if (n == 16) {
                vst4q_f32(o, y);
            } else {
                float tmp[16];
                vst4q_f32(tmp, y);
                memcpy(o, tmp, sizeof(float) * (size_t)n);
            }
        }
    }
}
#endif

/* ---- 2x2 pooling fused into the Winograd driver ------------------------------------------------------
 * For "conv -> ReLU -> 2x2 pool" (conv1_2, conv2_2, conv3_4, conv4_4 of VGG-19) the full-resolution
 * ReLU output is only ever read by the pool (forward), and the pool's scattered, masked gradient only
 * by this conv's backward; at 512 px that is a 64 MiB map written and read back each way for conv1_2.
 * Forward (nst__conv_forward_pool): the output stage writes each channel's segment of tiles (at most 4
 * rows x 4 * nt columns) into R, free once the input transform is done, and pools it there: pooled
 * map, argmax codes and ReLU mask bits come out while the strip is in L1 (the kernels of
 * nst__pool_mask_forward, on a row range). Backward (nst__conv_backward_fused): the input rows are
 * generated from the pooled gradient, the codes and the bits (nst__unpool_row) instead of copied.
 * Same values bit for bit as the unfused passes. Byte ownership: a segment starts at an even tile
 * column (nt is a multiple of nr, which is even, and the tile rows have w / 4 tiles, even as w % 8 == 0)
 * and spans an even number of tiles, so it covers whole mask bytes and no two threads write one.
 * Backward stages every segment through R (no in-place reads): generating a row costs about what
 * copying it did. Measured 2026-12-01 on AMD EPYC Zen 3 (AVX2), 512 px, one thread, CPU time
 * (bench_nst --size 512 --threads 1 --profile --cpu --reps 2, the random model with its reflection
 * switched off so that backward fuses too; 5 pairs alternated with 43b924d on a host at load ~7):
 * the pooling rows (17.7-20.8 ms forward, 16.3-18.9 backward) are gone; conv + pool of the four layers
 * forward 332-413 ms against 408-455 (every pair faster, by 21-88), backward 336-470 against 382-493
 * (within the noise); evaluation 1875-2440 against 2128-2502. Peak RSS unchanged (276 MiB): the two
 * ping-pong buffers are still sized for, and filled by, relu1_1 and conv1_2's input gradient. With
 * reflection (the random model as shipped) only the forward fuses. */
typedef struct nst__conv_pool {
    float *out;                  /* forward: the pooled map [kout][h / 2][w / 2]; NULL in backward */
    const float *dout;           /* backward: its gradient; the conv's input is unpool(dout) * mask */
    unsigned char *code;         /* max: the argmax code of each pooled element; NULL for avg */
    unsigned char *bits;         /* the ReLU mask of the [kout][h][w] map, bit per element (backward reads) */
    int avg, simd;               /* simd: the SIMD pool kernels (nst__simd_pool) */
    /* The ReLU mask of the convolution's own output map ([kout][h][w], bit per element), or NULL: orec = 1
     * records it from the output (forward, ReLU fused, no pool), orec = 0 applies it, zeroing where a bit
     * is clear (backward-data: the gradient at the input of the ReLU below). Done on each strip of rows
     * the output transform has just written, while it is in L1: no pass of its own over the map. */
    unsigned char *obits;
    int orec;
} nst__conv_pool;
static void nst__mask_bits_run(const float *x, unsigned char *bits, size_t n, int simd);
static void nst__mask_apply_run(float *g, const unsigned char *bits, size_t n, int simd);
static int nst__simd_avx2(void);
static int nst__simd_pool(void);
static int nst__pool_fusable(int h, int w);
static void nst__pool_mask_rows(float *out, unsigned char *code, size_t ldo, unsigned char *bits, size_t ldb,
                                const float *in, size_t ldi, int rows, int cols, int avg, int simd);
static void nst__unpool_row(float *d, const float *g, const unsigned char *code, const unsigned char *bits, int par,
                            int x0, int x1, int avg, int simd);
static int nst__pool_fuse_off;   /* tests only: 1 = never fuse (the unfused path to compare with) */

/* nst__wino_rows for the backward of a fused pool: row r of channel ci of unpool(dout) * mask, zero
 * outside the image and on an odd last row (which no window pooled). */
static void nst__wino_rows_unpool(float *rows, size_t rstride, const nst__conv_pool *pc, int ci, int h, int w, int y0,
                                  int xs, int n) {
    int ow = w / 2, r;
    size_t hw = (size_t)h * w, ohw = (size_t)(h / 2) * ow;
    for (r = 0; r < 6; r++) {
        float *b = rows + r * rstride;
        int y = y0 + r, a = xs < 0 ? -xs : 0, e = w - xs < n ? w - xs : n;
        size_t po, eo;
        if (y < 0 || y >= h / 2 * 2 || e <= a) { memset(b, 0, sizeof(float) * (size_t)n); continue; }
        po = ci * ohw + (size_t)(y / 2) * ow;
        eo = ci * hw + (size_t)y * w;
        if (a > 0) memset(b, 0, sizeof(float) * (size_t)a);
        nst__unpool_row(b + a, pc->dout + po, pc->code ? pc->code + po : NULL, pc->bits + eo / 8, y & 1, xs + a, xs + e,
                        pc->avg, pc->simd);
        if (e < n) memset(b + e, 0, sizeof(float) * (size_t)(n - e));
    }
}

/* One block of nt tiles starting at tile t0, all output channels. pc: a fused pool (above), or NULL. */
static void nst__wino_block(const nst__conv_kernels *k, const nst__conv_dir *dd, const float *in, float *out, int h,
                            int w, const float *bias, int relu, int pad, int t0, int nt, int ntcap, int q0, int q1,
                            float *ws, const nst__conv_pool *pc) {
    int kin = dd->kin, kout = dd->kout, tw = (w + 3) / 4, mr = k->mr, cbk = k->cb, nob = (kout + mr - 1) / mr;
    int ncol = (nt + k->nr - 1) / k->nr * k->nr, ci, c0, e, t;
    size_t hw = (size_t)h * w, est = (size_t)kin * ntcap + NST__WINO_SKEW, rstride = nst__wino_rstride(k, ntcap);
    size_t mest = (size_t)cbk * ntcap + NST__WINO_SKEW;
    float *V = ws, *M = V + (36 * est + 15) / 16 * 16;
    float *R = M + (36 * mest + (size_t)k->tg + 15) / 16 * 16;
    const nst__conv_pool *up = pc && pc->dout ? pc : NULL;   /* the input rows come from the pooled gradient */
    /* input transform, segment by segment (a segment = the block's tiles within one tile row). The
     * kernel reads 4 * round_up(n, tg) + rslack floats of each of the 6 rows from column 4 * tx - 1: whole
     * groups of tiles whose rows lie inside the image read the feature map in place (a, a + nd); the
     * tiles at the borders read padded copies (nst__wino_rows). The copy cost 12% of conv1_2 at 512 px
     * (AVX2, Zen 3). In place never reads outside the image: rows 4 ty - 1 .. 4 ty + 4 lie inside, the
     * first group of a tile row (column -1) is always copied, and nd stops the reads at column w - 1, so
     * every patch touching row -1, row h, column -1 or column w gets the padding mode's values. */
    for (t = t0; t < t0 + nt;) {
        int ty = t / tw, tx = t % tw, len = NST__MIN(tw - tx, t0 + nt - t), jb = t - t0;
        int a = tx == 0 ? NST__MIN(k->tg, len) : 0, nd = 0, part;   /* a: a whole group, not one tile */
        if (ty >= 1 && 4 * ty + 4 < h && len > a && !up) {
            nd = (w + 1 - k->rslack - 4 * (tx + a)) / (4 * k->tg) * k->tg;
            nd = NST__MAX(0, NST__MIN(nd, (len - a) / k->tg * k->tg));
        }
        if (nd == 0) a = len;   /* nothing in place: the whole segment from one copy */
        for (part = 0; part < 3; part++) {   /* [0, a) copied, [a, a + nd) in place, [a + nd, len) copied */
            int s0 = part == 0 ? 0 : part == 1 ? a : a + nd, n = part == 0 ? a : part == 1 ? nd : len - a - nd;
            int nrow = 4 * ((n + k->tg - 1) / k->tg * k->tg) + k->rslack;
            if (n <= 0) continue;
            for (ci = 0; ci < kin; ci++) {
                float *vv = V + (size_t)ci * ntcap + jb + s0;
#if defined(__GNUC__) || defined(__clang__)
                if (ci + 2 < kin && !up) {   /* the rows of channel ci + 2: short rows of 64 planes start no prefetch stream */
                    int r0 = NST__MAX(0, 4 * ty - 1), r1 = NST__MIN(h, 4 * ty + 5), x0 = NST__MAX(0, 4 * (tx + s0) - 1);
                    int x1 = NST__MIN(w, 4 * (tx + s0 + n) + 1), r, o;
                    for (r = r0; r < r1 && x0 < x1; r++) {
                        const char *q = (const char *)(in + (ci + 2) * hw + (size_t)r * w + x0);
                        for (o = 0; o < (x1 - x0) * (int)sizeof(float); o += 64) __builtin_prefetch(q + o, 0, 2);
                        __builtin_prefetch(q + (x1 - x0) * (int)sizeof(float) - 1, 0, 2);
                    }
                }
#endif
                if (part == 1) {
                    k->wino_in(vv, est, in + ci * hw + (size_t)(4 * ty - 1) * w + 4 * (tx + s0) - 1, (size_t)w, n);
                } else {
                    if (up) nst__wino_rows_unpool(R, rstride, up, ci, h, w, 4 * ty - 1, 4 * (tx + s0) - 1, nrow);
                    else nst__wino_rows(R, rstride, in + ci * hw, h, w, 4 * ty - 1, 4 * (tx + s0) - 1, nrow, pad);
                    k->wino_in(vv, est, R, rstride, n);
                }
            }
        }
        t += len;
    }
    if (nt < ncol)   /* the GEMM runs whole column groups: keep the unused columns finite */
        for (e = 0; e < 36; e++)
            for (ci = 0; ci < kin; ci++) memset(V + e * est + (size_t)ci * ntcap + nt, 0, sizeof(float) * (size_t)(ncol - nt));
    for (c0 = q0 * cbk; c0 < kout && c0 < q1 * cbk; c0 += cbk) {   /* output chunks [q0, q1) */
        int cb = NST__MIN(cbk, kout - c0), co;
        for (e = 0; e < 36; e++) {
            int ob;
            for (ob = 0; ob * mr < cb; ob++) {
                const float *u = dd->u + (((size_t)e * nob + c0 / mr + ob) * mr) * kin;
                float *m = M + (size_t)e * mest + (size_t)ob * mr * ntcap;
                k->wino_gemm(ncol, kin, u, V + (size_t)e * est, ntcap, m, ntcap);
            }
        }
        for (co = c0; co < c0 + cb; co++) {
            float b = bias ? bias[co] : 0.0f;
            const float *mrow = M + (size_t)(co - c0) * ntcap;
            for (t = t0; t < t0 + nt;) {
                int ty = t / tw, tx = t % tw, len = NST__MIN(tw - tx, t0 + nt - t), jb = t - t0;
                if (pc && pc->out) {
                    /* the strip as a map of its own (every wino_out addresses out only through h, w, ty,
                     * tx), pooled from R while in L1; see nst__conv_pool */
                    int sh = NST__MIN(4, h - 4 * ty), sw = NST__MIN(4 * len, w - 4 * tx);
                    size_t po = co * ((size_t)(h / 2) * (w / 2)) + (size_t)(2 * ty) * (w / 2) + 2 * tx;
                    k->wino_out(R, sh, sw, 0, 0, len, mrow + jb, mest, b, relu);
                    nst__pool_mask_rows(pc->out + po, pc->code ? pc->code + po : NULL, (size_t)(w / 2),
                                        pc->bits + (co * hw + (size_t)(4 * ty) * w + 4 * tx) / 8, (size_t)(w / 8), R,
                                        (size_t)sw, sh, sw, pc->avg, pc->simd);
                } else {
                    k->wino_out(out + co * hw, h, w, ty, tx, len, mrow + jb, mest, b, relu);
                    if (pc && pc->obits) {   /* segments start and end on mask bytes: tx and t0 even, w % 8 == 0 */
                        int y, y1 = NST__MIN(h, 4 * ty + 4), x0 = 4 * tx, x1 = NST__MIN(w, 4 * (tx + len));
                        for (y = 4 * ty; y < y1; y++) {
                            size_t e = co * hw + (size_t)y * w + x0;
                            if (pc->orec) nst__mask_bits_run(out + e, pc->obits + e / 8, (size_t)(x1 - x0), pc->simd);
                            else nst__mask_apply_run(out + e, pc->obits + e / 8, (size_t)(x1 - x0), pc->simd);
                        }
                    }
                }
                t += len;
            }
        }
    }
}

/* Jobs: the tile blocks, each over all output chunks, handed out dynamically (a descheduled thread on a
 * busy machine does not stall the others). With fewer blocks than threads (on 2 threads at most 8 tiles
 * on AVX2, 16 on AVX-512 and NEON: one block, which left the second thread idle) each block's chunks are
 * split between jobs instead, every job transforming the block's input itself (kin x tiles values, little
 * next to the chunks' products: 1/300 of the GEMM's FLOPs at 512 -> 512 and 16 tiles). Each output value
 * comes from the same GEMM calls whichever job or thread computes it, so the result stays deterministic. */
static void nst__wino_run(const nst__conv_kernels *k, const nst__conv_dir *dd, const float *in, float *out, int h,
                          int w, const float *bias, int relu, int pad, int nthreads, float *ws, const nst__conv_pool *pc) {
    int tiles = ((h + 3) / 4) * ((w + 3) / 4), nt = nst__wino_nt(k, dd->kin, tiles, nthreads);
    int nblocks = (tiles + nt - 1) / nt, nch = (dd->kout + k->cb - 1) / k->cb, nsplit = 1, j;
    size_t per = nst__wino_thread_floats(k, dd->kin, nt);
    if (nblocks < nthreads) nsplit = NST__MIN(nch, nthreads / nblocks);
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
#endif
    for (j = 0; j < nblocks * nsplit; j++) {
        int tid = 0, b = j / nsplit, s = j % nsplit;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        nst__wino_block(k, dd, in, out, h, w, bias, relu, pad, b * nt, NST__MIN(nt, tiles - b * nt), nt,
                        nch * s / nsplit, nch * (s + 1) / nsplit, ws + (size_t)tid * per, pc);
    }
}

/* ---- direct convolution (thin layers) ------------------------------------------------------------*/
#if defined(NST__X86_AVX512)
/* out[o][y][x0..x0+64) for 6 output channels, masked at the image borders; 24 accumulators. */
#define NST__DK_ROW(r)                                                  \
    { __m512 a = _mm512_set1_ps(wt[r]);                                 \
      c##r##0 = _mm512_fmadd_ps(a, b0, c##r##0);                        \
      c##r##1 = _mm512_fmadd_ps(a, b1, c##r##1);                        \
      c##r##2 = _mm512_fmadd_ps(a, b2, c##r##2);                        \
      c##r##3 = _mm512_fmadd_ps(a, b3, c##r##3); }
#define NST__DK_ST(r)                                                   \
    if (ob * 6 + r < kout) {                                            \
        int o = ob * 6 + r;                                             \
        __m512 vb = _mm512_set1_ps(bias ? bias[o] : 0.0f);              \
        float *dst = out + o * hw + (size_t)y * w + x0;                 \
        c##r##0 = _mm512_add_ps(c##r##0, vb); c##r##1 = _mm512_add_ps(c##r##1, vb); \
        c##r##2 = _mm512_add_ps(c##r##2, vb); c##r##3 = _mm512_add_ps(c##r##3, vb); \
        if (relu) {                                                     \
            c##r##0 = _mm512_maskz_max_ps(0xFFFF, c##r##0, z); c##r##1 = _mm512_maskz_max_ps(0xFFFF, c##r##1, z); \
            c##r##2 = _mm512_maskz_max_ps(0xFFFF, c##r##2, z); c##r##3 = _mm512_maskz_max_ps(0xFFFF, c##r##3, z); \
        }                                                               \
        _mm512_mask_storeu_ps(dst, ms[0], c##r##0); _mm512_mask_storeu_ps(dst + 16, ms[1], c##r##1); \
        _mm512_mask_storeu_ps(dst + 32, ms[2], c##r##2); _mm512_mask_storeu_ps(dst + 48, ms[3], c##r##3); \
    }
static NST__TARGET_AVX512 void nst__direct_avx512(const nst__conv_dir *dd, const float *in, float *out, int h, int w,
                                                  const float *bias, int relu, int ob, int y, int x0) {
    int kin = dd->kin, kout = dd->kout, ci, ky, kx, v;
    size_t hw = (size_t)h * w;
    __m512 z = _mm512_setzero_ps();
    __m512 c00 = z, c01 = z, c02 = z, c03 = z, c10 = z, c11 = z, c12 = z, c13 = z, c20 = z, c21 = z, c22 = z,
           c23 = z, c30 = z, c31 = z, c32 = z, c33 = z, c40 = z, c41 = z, c42 = z, c43 = z, c50 = z, c51 = z,
           c52 = z, c53 = z;
    __mmask16 mk[3][4], ms[4];
    for (kx = 0; kx < 3; kx++)
        for (v = 0; v < 4; v++) {
            int b = x0 + 16 * v + kx - 1, lo = b < 0 ? -b : 0, hi = w - b < 16 ? w - b : 16;
            mk[kx][v] = (__mmask16)(hi <= lo ? 0 : (((1u << hi) - 1) & ~((1u << lo) - 1)));
        }
    for (v = 0; v < 4; v++) {
        int hi = w - (x0 + 16 * v);
        ms[v] = (__mmask16)(hi <= 0 ? 0 : hi >= 16 ? 0xFFFF : (1u << hi) - 1);
    }
    for (ci = 0; ci < kin; ci++)
        for (ky = 0; ky < 3; ky++) {
            int sy = y + ky - 1;
            if (sy < 0 || sy >= h) continue;
            for (kx = 0; kx < 3; kx++) {
                const float *row = in + ci * hw + (size_t)sy * w + x0 + kx - 1;
                const float *wt = dd->u + ((size_t)(ob * kin + ci) * 9 + ky * 3 + kx) * 6;
                __m512 b0 = _mm512_maskz_loadu_ps(mk[kx][0], row), b1 = _mm512_maskz_loadu_ps(mk[kx][1], row + 16);
                __m512 b2 = _mm512_maskz_loadu_ps(mk[kx][2], row + 32), b3 = _mm512_maskz_loadu_ps(mk[kx][3], row + 48);
                NST__DK_ROW(0) NST__DK_ROW(1) NST__DK_ROW(2) NST__DK_ROW(3) NST__DK_ROW(4) NST__DK_ROW(5)
            }
        }
    NST__DK_ST(0) NST__DK_ST(1) NST__DK_ST(2) NST__DK_ST(3) NST__DK_ST(4) NST__DK_ST(5)
}
#undef NST__DK_ROW
#undef NST__DK_ST
#endif

#if defined(NST__NEON)
/* out[o][y][x0..x0+64) for 6 output channels, in chunks of 16 pixels: 24 q accumulators, the 6 taps of
 * one filter position in two q registers (taps 0..3, and 2..5 used through lanes 2 and 3) read by lane
 * FMAs: per filter position 4 loads of input, 2 of filter, 24 FMAs, 32 instructions in gcc 12 -O2's kx
 * loop. Row segments that touch the image border are copied, zero-padded, to the stack. The spelling is
 * set by instruction counts (bench/neon_profile.sh --size 128, one evaluation of the random model: 14.5M
 * FMAs here, conv1_1's forward twice): 45.5M instructions before, 29.9M now (loss unchanged, 3324.95).
 * What cost the difference: an accumulator array filled by a row switch for the epilogue (gcc stored
 * all 24 to the stack and reloaded them: the epilogue is now spelled out per output row, and a partial
 * last chunk goes through tmp after all rows, since a memcpy call per row saved and restored every live
 * accumulator around it); the border copy element by element with a bounds test (~160 instructions
 * per row: now whole vectors over the in-image span, zeros set once per chunk; written as a loop to
 * that span gcc made it a memcpy call, with the same saves around it); the second filter register as
 * a d register (gcc loaded its 2 lanes separately plus a copy, 34 instructions per position).
 * Unrolling the 3 positions of a filter row made gcc's scheduler hoist the next position's loads and
 * spill accumulators (in the disassembly about as many instructions per filter row as the loop). */
#define NST__DN_ROW(r, W, L)                                                                  \
    c##r##0 = W(c##r##0, b0, L); c##r##1 = W(c##r##1, b1, L);                                   \
    c##r##2 = W(c##r##2, b2, L); c##r##3 = W(c##r##3, b3, L);
#define NST__DN_Q(acc, b, l) vfmaq_laneq_f32(acc, b, w0, l)
#define NST__DN_D(acc, b, l) vfmaq_laneq_f32(acc, b, w1, (l) + 2)
#define NST__DN_TAP(kx)                                                                       \
    {                                                                                         \
        const float32x4_t w0 = vld1q_f32(wt + 6 * (kx));                                      \
        const float32x4_t w1 = vld1q_f32(wt + 6 * (kx) + 2);                                  \
        const float32x4_t b0 = vld1q_f32(row + (kx)), b1 = vld1q_f32(row + (kx) + 4);          \
        const float32x4_t b2 = vld1q_f32(row + (kx) + 8), b3 = vld1q_f32(row + (kx) + 12);     \
        NST__DN_ROW(0, NST__DN_Q, 0) NST__DN_ROW(1, NST__DN_Q, 1) NST__DN_ROW(2, NST__DN_Q, 2) \
        NST__DN_ROW(3, NST__DN_Q, 3) NST__DN_ROW(4, NST__DN_D, 0) NST__DN_ROW(5, NST__DN_D, 1) \
    }
#define NST__DN_ST(r)                                                                         \
    if (ob * 6 + (r) < kout) {                                                                \
        const float32x4_t vb = vdupq_n_f32(bias ? bias[ob * 6 + (r)] : 0.0f);                 \
        float *dst = n == 16 ? out + (size_t)(ob * 6 + (r)) * hw + (size_t)y * w + xc : tmp + 16 * (r); \
        c##r##0 = vaddq_f32(c##r##0, vb); c##r##1 = vaddq_f32(c##r##1, vb);                   \
        c##r##2 = vaddq_f32(c##r##2, vb); c##r##3 = vaddq_f32(c##r##3, vb);                   \
        if (relu) {   /* NaN and -0 become +0, as in the reference */                         \
            c##r##0 = vmaxnmq_f32(c##r##0, z); c##r##1 = vmaxnmq_f32(c##r##1, z);             \
            c##r##2 = vmaxnmq_f32(c##r##2, z); c##r##3 = vmaxnmq_f32(c##r##3, z);             \
        }                                                                                     \
        vst1q_f32(dst, c##r##0); vst1q_f32(dst + 4, c##r##1);                                 \
        vst1q_f32(dst + 8, c##r##2); vst1q_f32(dst + 12, c##r##3);                            \
    }
static void nst__direct_neon(const nst__conv_dir *dd, const float *in, float *out, int h, int w,
                             const float *bias, int relu, int ob, int y, int x0) {
    int kin = dd->kin, kout = dd->kout, xc;
    size_t hw = (size_t)h * w;
    const float32x4_t z = vdupq_n_f32(0.0f);
    for (xc = x0; xc < x0 + 64 && xc < w; xc += 16) {
        float32x4_t c00 = z, c01 = z, c02 = z, c03 = z, c10 = z, c11 = z, c12 = z, c13 = z, c20 = z, c21 = z,
                    c22 = z, c23 = z, c30 = z, c31 = z, c32 = z, c33 = z, c40 = z, c41 = z, c42 = z, c43 = z,
                    c50 = z, c51 = z, c52 = z, c53 = z;
        float seg[20], tmp[6 * 16];
        int ci, ky, kx, r, n = NST__MIN(16, w - xc), inner = xc >= 1 && xc + 17 <= w;
        int lo = xc >= 1 ? 0 : 1, hi = NST__MIN(18, w - xc + 1);   /* seg's columns inside the image */
        if (!inner) {   /* the zeros outside [lo, hi) are the same for every row of the chunk */
            vst1q_f32(seg, z); vst1q_f32(seg + 4, z); vst1q_f32(seg + 8, z); vst1q_f32(seg + 12, z);
            vst1q_f32(seg + 16, z);
        }
        for (ci = 0; ci < kin; ci++) {
            const float *wt = dd->u + (size_t)(ob * kin + ci) * 54;   /* [ky][kx][6] */
            for (ky = 0; ky < 3; ky++, wt += 18) {
                int sy = y + ky - 1;
                const float *row;
                if (sy < 0 || sy >= h) continue;
                row = in + ci * hw + (size_t)sy * w + xc - 1;   /* input columns xc-1 .. xc+16 */
                if (!inner) {
                    if (hi - lo >= 16) {   /* not as a loop to the bound: gcc made that a memcpy call */
                        vst1q_f32(seg + lo, vld1q_f32(row + lo)); vst1q_f32(seg + lo + 4, vld1q_f32(row + lo + 4));
                        vst1q_f32(seg + lo + 8, vld1q_f32(row + lo + 8));
                        vst1q_f32(seg + lo + 12, vld1q_f32(row + lo + 12));
                        if (lo + 16 < hi) seg[lo + 16] = row[lo + 16];
                        if (lo + 17 < hi) seg[lo + 17] = row[lo + 17];
                    } else {
                        int i;
                        for (i = 0; i < 18; i++) seg[i] = i >= lo && i < hi ? row[i] : 0.0f;
                    }
                    row = seg;
                }
                for (kx = 0; kx < 3; kx++) NST__DN_TAP(kx)
            }
        }
        NST__DN_ST(0) NST__DN_ST(1) NST__DN_ST(2) NST__DN_ST(3) NST__DN_ST(4) NST__DN_ST(5)
        if (n < 16)   /* the image's last columns: the rows were stored to tmp */
            for (r = 0; r < 6 && ob * 6 + r < kout; r++)
                memcpy(out + (size_t)(ob * 6 + r) * hw + (size_t)y * w + xc, tmp + 16 * r, sizeof(float) * (size_t)n);
    }
}
#undef NST__DN_ROW
#undef NST__DN_Q
#undef NST__DN_D
#undef NST__DN_TAP
#undef NST__DN_ST
#endif

/* ---- packed input rows for the direct_rows kernels (AVX2: nst__direct_pack_avx2) -------------------
 * Input row sy of every channel, in blocks of NST__DR_X output pixels: block b holds, per input channel,
 * columns NST__DR_X * b - 1 .. NST__DR_X * b + NST__DR_X (zeros outside the image), NST__DR_LD floats,
 * [nb][kin][NST__DR_LD]. A kernel thus reads every tap of a block without masks, and the kin x 3 rows
 * of a block lie together: read straight from the CHW planes (1 MiB apart at 512 px, one L1/L2 set),
 * conv1_1's backward, 64 planes x 3 rows per block, missed L2 on almost every load. Each thread keeps
 * the 3 latest rows (row sy in slot sy % 3) and packs one new row per output row. */
#define NST__DR_X 32
#define NST__DR_LD (NST__DR_X + 2)
/* Floats of one thread's rows (three packed rows, rounded to 64 bytes). */
static size_t nst__direct_ring_floats(const nst__conv_dir *dd, int w) {
    return ((size_t)3 * ((w + NST__DR_X - 1) / NST__DR_X) * dd->kin * NST__DR_LD + 15) / 16 * 16;
}

/* ---- entry points ----------------------------------------------------------------------------------*/
static int nst__conv_small(const struct nst__conv_dir *dd, int h, int w);
static size_t nst__conv_small_floats(const struct nst__conv_dir *dd, int d, int h, int w);
/* Floats of workspace a lazy direction's transformed filters take (at the start of the workspace). */
static size_t nst__wino_lazy_floats(const nst__conv_kernels *k, const nst__conv_dir *dd) {
    return dd->lazy ? ((size_t)36 * ((dd->kout + k->mr - 1) / k->mr) * k->mr * dd->kin + 15) / 16 * 16 : 0;
}

static NST__UNUSED size_t nst__conv_workspace(const nst__conv_plan *p, int h, int w, int nthreads) {
    size_t best = 0;
    int d;
    if (!p || h <= 0 || w <= 0) return 0;
    nthreads = nst__resolve_threads(nthreads);
    for (d = 0; d < 2; d++)
        if (nst__conv_small(&p->dir[d], h, w)) {   /* the GEMM's operand, not the transformed filters */
            size_t n = nst__conv_small_floats(&p->dir[d], d, h, w);
            if (n > best) best = n;
        } else if (p->dir[d].algo == NST__CONV_WINO) {
            int tiles = ((h + 3) / 4) * ((w + 3) / 4);
            size_t n = nst__wino_thread_floats(p->k, p->dir[d].kin, nst__wino_nt(p->k, p->dir[d].kin, tiles, nthreads)) * nthreads;
            n += nst__wino_lazy_floats(p->k, &p->dir[d]);
            if (n > best) best = n;
        } else if (p->k->direct_rows) {
            size_t n = nst__direct_ring_floats(&p->dir[d], w) * nthreads;
            if (n > best) best = n;
        }
    return best ? best * sizeof(float) + 64 : 0;
}

/* ---- small maps: a lazy direction as one GEMM ---------------------------------------------------------
 * A lazy direction (NST__WINO_LAZY) transforms all its kin x kout filters on every call, whatever the map:
 * ~4.4 ms for 512 x 512 filters on one Zen 3 core (bench_conv --filters), ~17 ns a filter (3.0-3.5 ms
 * since the AVX2 transform stopped gathering: the break-even below then falls to ~80 pixels, and an 8 x 8
 * map, 64, still favours the GEMM; the threshold of 128 was measured and stays), while the Winograd GEMM
 * costs ~4.5 hw FLOP a filter and the convolution as one GEMM over the 9 taps (im2col) 18 hw.
 * With the GEMM at ~90 GFLOP/s the two meet near hw = 110 pixels; below it the transform is most of the
 * layer (bench_conv --size 64 --threads 1: conv4_x at 8 x 8 took 8-11 ms a direction for 0.3 GFLOP, conv5_1
 * at 4 x 4 7.8 ms for 0.08). So maps of at most NST__CONV_SMALL_HW pixels (conv5_1 at 128 px input, conv4_x
 * and conv5_1 at 64 px: the coarse passes of --scales) take C[kout][hw] = A[kout][9 kin] X[9 kin][hw]:
 * X the input's 3 x 3 neighbourhoods (zero or blended padding, as the engine pads), A the forward's
 * weights as they are ([cout][cin][9]), bias and ReLU the GEMM's epilogue. Backward-data multiplies by the
 * same weights transposed (the GEMM's packing reads them so: no flipped copy), [9 cin][hw] = W^T dout,
 * and each input pixel then sums the 9 products that reached it (col2im). The GEMM runs on the plan's
 * path (its kernel table's ISA), so a scalar plan stays scalar. nst__conv_workspace sizes the workspace
 * for the GEMM's operand (9 kin hw or 9 kout hw floats, 2.4 MB at 512 channels and 8 x 8, where the
 * transformed filters took 38 MB), and any workspace sized for the lazy transform holds it too (hw <= 4
 * min(kin, kout)).
 * Fused pools and masks (nst__conv_pool) stay on the engine: nst__conv_pool_fuses says no for these maps,
 * so a network runs them unfused, the same as its unfused reference. With the random model's blended
 * padding, backward-data here is the padded forward's exact adjoint by itself: col2im onto the padded
 * grid, each outside pixel's sum handed back to the pixels its value blended; the network then skips the
 * border fix (nst__conv_backward_pads), ~1 ms per 512-channel layer on 2 threads at these sizes. */
#ifndef NST__CONV_SMALL_HW
#define NST__CONV_SMALL_HW 128
#endif
static int nst__conv_small_calls;   /* tests only: calls that took the small-map GEMM */
static int nst__conv_small_off;     /* tests only: 1 = never (the engine's path, to compare with; set it before the
                                     * network is made: its workspace follows the path) */
static int nst__conv_small(const nst__conv_dir *dd, int h, int w) {
    return !nst__conv_small_off && dd->algo == NST__CONV_WINO && dd->lazy && (size_t)h * w <= NST__CONV_SMALL_HW &&
           (size_t)h * w <= (size_t)4 * NST__MIN(dd->kin, dd->kout);
}
/* Its workspace: the 3 x 3 neighbourhoods of the input (forward) or the products before col2im (backward). */
static size_t nst__conv_small_floats(const nst__conv_dir *dd, int d, int h, int w) {
    return (size_t)9 * (d == 0 ? dd->kin : dd->kout) * h * w;
}
static float nst__pad_at(const float *p, int h, int w, int y, int x);
static void nst__pad_source(int i, int n, int *src, float *wt);
static nst_status nst__conv_small_run(const nst__conv_plan *p, int d, const float *in, float *out, int h, int w,
                                      const float *bias, int relu, int pad, int nthreads, float *ws) {
    const nst__conv_dir *dd = &p->dir[d];
    int kin = dd->kin, kout = dd->kout, hw = h * w, own;
    long i;
    nst_status st;
    own = nst__arch_adopt((int)p->k->arch);
    if (d == 0) {   /* X[i 9 + t][y w + x]: input channel i at (y + t / 3 - 1, x + t % 3 - 1); C = W X */
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static) if ((size_t)kin * hw >= 16384)
#endif
        for (i = 0; i < kin; i++) {
            const float *pl = in + (size_t)i * hw;
            float *xi = ws + (size_t)i * 9 * hw;
            int t, y, x;
            for (t = 0; t < 9; t++)
                for (y = 0; y < h; y++) {
                    int sy = y + t / 3 - 1, dx = t % 3 - 1, x0 = dx < 0 ? 1 : 0, x1 = dx > 0 ? w - 1 : w;
                    float *d = xi + (size_t)t * hw + (size_t)y * w;
                    if (sy < 0 || sy >= h || x1 <= x0) {   /* a padded row (or a 1-pixel-wide map) */
                        for (x = 0; x < w; x++)
                            d[x] = pad == NST__CONV_PAD_BLEND ? nst__pad_at(pl, h, w, sy, x + dx) : 0.0f;
                        continue;
                    }
                    memcpy(d + x0, pl + (size_t)sy * w + x0 + dx, sizeof(float) * (size_t)(x1 - x0));
                    if (x0) d[0] = pad == NST__CONV_PAD_BLEND ? nst__pad_at(pl, h, w, sy, -1) : 0.0f;
                    if (x1 < w) d[w - 1] = pad == NST__CONV_PAD_BLEND ? nst__pad_at(pl, h, w, sy, w) : 0.0f;
                }
        }
        st = nst__sgemm_fused(nthreads, 0, 0, kout, hw, 9 * kin, 1.0f, p->weight, 9 * kin, ws, hw, 0.0f, out, hw, bias, relu);
    } else {   /* backward-data: Y[o 9 + t][pixel] = (W^T dout), the forward weights [kin][kout 9] read transposed by
                * the GEMM's packing; input pixel q of channel o sums Y[o 9 + t] at q - (t / 3 - 1, t % 3 - 1) */
        st = nst__sgemm_fused(nthreads, 1, 0, 9 * kout, hw, kin, 1.0f, p->weight, 9 * kout, in, hw, 0.0f, ws, hw, NULL, 0);
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static) if ((size_t)kout * hw >= 16384)
#endif
        for (i = 0; i < kout; i++) {   /* row by row, the 9 products added in tap order */
            const float *yo = ws + (size_t)i * 9 * hw;
            float *dst = out + (size_t)i * hw;
            int t, y, x;
            memset(dst, 0, sizeof(float) * (size_t)hw);
            for (t = 0; t < 9; t++)
                for (y = 0; y < h; y++) {
                    int sy = y - (t / 3 - 1), dx = t % 3 - 1, x0 = dx > 0 ? 1 : 0, x1 = dx < 0 ? w - 1 : w;
                    const float *src = yo + (size_t)t * hw + (size_t)sy * w - dx;
                    float *d = dst + (size_t)y * w;
                    if (sy < 0 || sy >= h) continue;
                    for (x = x0; x < x1; x++) d[x] += src[x];
                }
            if (pad == NST__CONV_PAD_BLEND)   /* the padded ring: what reached each outside pixel goes back to
                                               * the pixels its value blended (nst__pad_at), with the same weights */
                for (y = -1; y <= h; y++)
                    for (x = -1; x <= w; x += (y < 0 || y >= h) ? 1 : w + 1) {
                        int ry[2], rx[2], a, b;
                        float wy[2], wx[2], sum = 0.0f;
                        for (t = 0; t < 9; t++) {
                            int sy = y - (t / 3 - 1), sx = x - (t % 3 - 1);
                            if (sy >= 0 && sy < h && sx >= 0 && sx < w) sum += yo[(size_t)t * hw + (size_t)sy * w + sx];
                        }
                        nst__pad_source(y, h, ry, wy);
                        nst__pad_source(x, w, rx, wx);
                        for (a = 0; a < 2; a++)
                            for (b = 0; b < 2; b++) dst[(size_t)ry[a] * w + rx[b]] += wy[a] * wx[b] * sum;
                    }
        }
    }
    nst__arch_adopt(own);
#ifdef _OPENMP
#pragma omp atomic
#endif
    nst__conv_small_calls++;
    return st;
}

static nst_status nst__conv_run(const nst__conv_plan *p, int d, const float *in, float *out, int h, int w,
                                int relu, int pad, int nthreads, void *ws, const nst__conv_pool *pc) {
    const nst__conv_dir *dd = &p->dir[d];
    const nst__conv_kernels *k = p->k;
    const float *bias = d == 0 ? p->bias : NULL;
    if (!in || !out || h <= 0 || w <= 0) return nst__err(NST_ERR_ARGUMENT, "conv: bad arguments");
    if (pad != NST__CONV_PAD_ZERO && (dd->algo != NST__CONV_WINO || (d == 1 && !nst__conv_small(dd, h, w))))
        return nst__err(NST_ERR_UNSUPPORTED, "conv: only the Winograd path pads other than with zeros (backward-data: "
                                             "only on small maps)");
    if (pc && (dd->algo != NST__CONV_WINO || k->nr % 2 || !nst__pool_fusable(h, w) || (pc->out && !relu) ||
               nst__conv_small(dd, h, w)))
        return nst__err(NST_ERR_UNSUPPORTED, "conv: a fused pool needs the Winograd engine (w %% 8 == 0, ReLU, "
                                             "not a small map's GEMM)");
    nthreads = nst__resolve_threads(nthreads);
    if (dd->algo == NST__CONV_WINO) {
        void *own = NULL;
        if (!ws) {
            own = ws = nst__aligned_alloc(nst__conv_workspace(p, h, w, nthreads));
            if (!own) return nst__err(NST_ERR_NOMEM, "conv: out of memory for a %dx%d workspace", w, h);
        }
        /* align the caller's scratch to 64 bytes (the workspace size includes the slack) */
        ws = (void *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
        if (nst__conv_small(dd, h, w)) {
            nst_status st = nst__conv_small_run(p, d, in, out, h, w, bias, relu, pad, nthreads, (float *)ws);
            nst__aligned_free(own);
            return st;
        }
        if (dd->lazy) {
            nst__conv_dir tmp = *dd;
            int nob = (dd->kout + k->mr - 1) / k->mr, ob;
            tmp.u = (float *)ws;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
#endif
            for (ob = 0; ob < nob; ob++) k->wino_filters(p, d, tmp.u, ob);
            nst__wino_run(k, &tmp, in, out, h, w, bias, relu, pad, nthreads, tmp.u + nst__wino_lazy_floats(k, dd), pc);
        } else {
            nst__wino_run(k, dd, in, out, h, w, bias, relu, pad, nthreads, (float *)ws, pc);
        }
        nst__aligned_free(own);
        return NST_OK;
    }
    if (k->direct_rows) {
        /* one band of consecutive rows per thread and job, each thread with its rows (ws) */
        int band = NST__MAX(4, (h + 4 * nthreads - 1) / (4 * nthreads)), njobs = (h + band - 1) / band, job;
        size_t per = nst__direct_ring_floats(dd, w);
        void *own = NULL;
        if (!ws) {
            own = ws = nst__aligned_alloc(nst__conv_workspace(p, h, w, nthreads));
            if (!own) return nst__err(NST_ERR_NOMEM, "conv: out of memory for a %dx%d workspace", w, h);
        }
        ws = (void *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
#endif
        for (job = 0; job < njobs; job++) {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            k->direct_rows(dd, in, out, h, w, bias, relu, job * band, NST__MIN(h, (job + 1) * band),
                           (float *)ws + (size_t)tid * per);
        }
        nst__aligned_free(own);
        return NST_OK;
    }
    if (k->direct) {
        /* jobs: (dmr output channels, one row, dnx pixels); the OpenMP loop stays outside the
         * target-attributed kernel (clang cannot outline a parallel region from one) */
        int nx = (w + k->dnx - 1) / k->dnx, job, njobs = (dd->kout + k->dmr - 1) / k->dmr * h * nx;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 8)
#endif
        for (job = 0; job < njobs; job++)
            k->direct(dd, in, out, h, w, bias, relu, job / (h * nx), (job / nx) % h, k->dnx * (job % nx));
        return NST_OK;
    }
    if (d == 0) nst__conv3x3_forward_ref(out, in, p->weight, bias, p->cin, p->cout, h, w, relu, nthreads);
    else nst__conv3x3_backward_data_ref(out, in, p->weight, p->cin, p->cout, h, w, nthreads);
    return NST_OK;
}
static nst_status nst__conv_forward(const nst__conv_plan *p, const float *in, float *out, int h, int w,
                                    int relu, int nthreads, void *ws) {
    return nst__conv_run(p, 0, in, out, h, w, relu, NST__CONV_PAD_ZERO, nthreads, ws, NULL);
}
/* Whether forward can pad other than with zeros (nst__conv_forward_pad): the Winograd path only. */
static int nst__conv_forward_pads(const nst__conv_plan *p) { return p->dir[0].algo == NST__CONV_WINO; }
/* nst__conv_forward with the input padded as `pad` says (NST__CONV_PAD_*); bias and ReLU fused as there. */
static nst_status nst__conv_forward_pad(const nst__conv_plan *p, const float *in, float *out, int h, int w,
                                        int relu, int pad, int nthreads, void *ws) {
    return nst__conv_run(p, 0, in, out, h, w, relu, pad, nthreads, ws, NULL);
}
static nst_status nst__conv_backward_data(const nst__conv_plan *p, const float *dout, float *din, int h, int w,
                                          int nthreads, void *ws) {
    return nst__conv_run(p, 1, dout, din, h, w, 0, NST__CONV_PAD_ZERO, nthreads, ws, NULL);
}
/* Whether backward-data at h x w can be the adjoint of a padded forward itself (nst__conv_backward_data_pad):
 * a small map's GEMM only; otherwise the reflection's fix (nst__reflect_fix_backward) adds the pad's part. */
static int nst__conv_backward_pads(const nst__conv_plan *p, int h, int w) { return nst__conv_small(&p->dir[1], h, w); }
static nst_status nst__conv_backward_data_pad(const nst__conv_plan *p, const float *dout, float *din, int h, int w,
                                              int pad, int nthreads, void *ws) {
    return nst__conv_run(p, 1, dout, din, h, w, 0, pad, nthreads, ws, NULL);
}
/* Whether direction d at h x w takes a fused pool (nst__conv_pool): the Winograd engine (not a small map's GEMM),
 * w % 8 == 0. */
static int nst__conv_pool_fuses(const nst__conv_plan *p, int d, int h, int w) {
    return !nst__pool_fuse_off && p->dir[d].algo == NST__CONV_WINO && p->k->nr % 2 == 0 && nst__pool_fusable(h, w) &&
           !nst__conv_small(&p->dir[d], h, w);
}
/* Forward with ReLU, padded as `pad` says, followed by the 2x2 pool: writes the pooled map
 * ([cout][h / 2][w / 2]), its argmax codes (max; code unused for avg) and the ReLU mask bits of the
 * full map, never the full map itself; the same bytes as nst__conv_forward_pad + nst__pool_mask_forward. */
static nst_status nst__conv_forward_pool(const nst__conv_plan *p, const float *in, float *pooled, unsigned char *code,
                                         unsigned char *bits, int h, int w, int avg, int pad, int nthreads, void *ws) {
    nst__conv_pool pc;
    pc.out = pooled; pc.dout = NULL; pc.code = avg ? NULL : code; pc.bits = bits; pc.avg = avg;
    pc.simd = nst__simd_pool(); pc.obits = NULL; pc.orec = 0;
    return nst__conv_run(p, 0, in, pooled, h, w, 1, pad, nthreads, ws, &pc);
}
/* Forward with ReLU, padded as `pad` says, that also records the ReLU's mask bits ([cout][h][w]): the
 * same bytes as nst__conv_forward_pad + nst__relu_mask_bits, without the pass over the map. */
static nst_status nst__conv_forward_mask(const nst__conv_plan *p, const float *in, float *out, unsigned char *bits,
                                         int h, int w, int pad, int nthreads, void *ws) {
    nst__conv_pool pc;
    memset(&pc, 0, sizeof pc);
    pc.obits = bits; pc.orec = 1; pc.simd = nst__simd_pool();
    return nst__conv_run(p, 0, in, out, h, w, 1, pad, nthreads, ws, &pc);
}
/* Backward-data with what pc fuses into it (pc->dout: dout is the pooled gradient, scattered back through
 * the pool and the ReLU mask by forward's codes and bits; pc->obits: the result masked by the ReLU below):
 * the same bytes as nst__pool_mask_backward, nst__conv_backward_data and nst__relu_backward in turn. */
static nst_status nst__conv_backward_fused(const nst__conv_plan *p, const nst__conv_pool *pc, const float *dout,
                                           float *din, int h, int w, int nthreads, void *ws) {
    return nst__conv_run(p, 1, dout, din, h, w, 0, NST__CONV_PAD_ZERO, nthreads, ws, pc);
}

/* ---- 2x2 stride-2 pooling ---------------------------------------------------------------------------
 * Same results as the reference bit for bit: max keeps the first maximum in row-major order (so a NaN
 * never wins, as in the reference), avg sums ((a + b) + c) + d. */
#if defined(NST__X86_AVX512)
static NST__TARGET_AVX512 void nst__pool_fwd_avx512(float *out, const float *in, int ch, int h, int w, int avg) {
    int oh = h / 2, ow = w / 2;
    {
        const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        const __m512i io = _mm512_add_epi32(ie, _mm512_set1_epi32(1));
        const float *s = in + (size_t)ch * h * w;
        float *o = out + (size_t)ch * oh * ow;
        int y, x;
        for (y = 0; y < oh; y++) {
            const float *r0 = s + (size_t)(2 * y) * w, *r1 = r0 + w;
            for (x = 0; x < ow; x += 16) {
                int n = NST__MIN(16, ow - x), n0 = NST__MIN(16, 2 * n), n1 = 2 * n - n0;
                __mmask16 k0 = (__mmask16)(n0 >= 16 ? 0xFFFF : (1u << n0) - 1);
                __mmask16 k1 = (__mmask16)(n1 >= 16 ? 0xFFFF : (1u << n1) - 1);
                __mmask16 ko = (__mmask16)(n >= 16 ? 0xFFFF : (1u << n) - 1);
                __m512 p0 = _mm512_maskz_loadu_ps(k0, r0 + 2 * x), p1 = _mm512_maskz_loadu_ps(k1, r0 + 2 * x + 16);
                __m512 q0 = _mm512_maskz_loadu_ps(k0, r1 + 2 * x), q1 = _mm512_maskz_loadu_ps(k1, r1 + 2 * x + 16);
                __m512 a = _mm512_permutex2var_ps(p0, ie, p1), b = _mm512_permutex2var_ps(p0, io, p1);
                __m512 cc = _mm512_permutex2var_ps(q0, ie, q1), d = _mm512_permutex2var_ps(q0, io, q1), m;
                if (avg) {
                    m = _mm512_mul_ps(_mm512_set1_ps(0.25f), _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a, b), cc), d));
                } else {
                    m = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(b, a, _CMP_GT_OQ), a, b);
                    m = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(cc, m, _CMP_GT_OQ), m, cc);
                    m = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(d, m, _CMP_GT_OQ), m, d);
                }
                _mm512_mask_storeu_ps(o + (size_t)y * ow + x, ko, m);
            }
        }
    }
}
static NST__TARGET_AVX512 void nst__pool_bwd_avx512(float *din, const float *dout, const float *in, int ch, int h,
                                                    int w, int avg) {
    int oh = h / 2, ow = w / 2;
    {
        const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        const __m512i io = _mm512_add_epi32(ie, _mm512_set1_epi32(1));
        const __m512i il = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        const __m512i ih = _mm512_add_epi32(il, _mm512_set1_epi32(8));
        const float *s = in ? in + (size_t)ch * h * w : NULL;
        const float *g = dout + (size_t)ch * oh * ow;
        float *dd = din + (size_t)ch * h * w;
        int y, x;
        for (y = 0; y < oh; y++) {
            float *r0 = dd + (size_t)(2 * y) * w, *r1 = r0 + w;
            for (x = 0; x < ow; x += 16) {
                int n = NST__MIN(16, ow - x), n0 = NST__MIN(16, 2 * n), n1 = 2 * n - n0;
                __mmask16 k0 = (__mmask16)(n0 >= 16 ? 0xFFFF : (1u << n0) - 1);
                __mmask16 k1 = (__mmask16)(n1 >= 16 ? 0xFFFF : (1u << n1) - 1);
                __mmask16 ko = (__mmask16)(n >= 16 ? 0xFFFF : (1u << n) - 1);
                __m512 gv = _mm512_maskz_loadu_ps(ko, g + (size_t)y * ow + x), ga, gb, gc, gd;
                if (avg) {
                    ga = gb = gc = gd = _mm512_mul_ps(_mm512_set1_ps(0.25f), gv);
                } else {
                    const float *s0 = s + (size_t)(2 * y) * w, *s1 = s0 + w;
                    __m512 p0 = _mm512_maskz_loadu_ps(k0, s0 + 2 * x), p1 = _mm512_maskz_loadu_ps(k1, s0 + 2 * x + 16);
                    __m512 q0 = _mm512_maskz_loadu_ps(k0, s1 + 2 * x), q1 = _mm512_maskz_loadu_ps(k1, s1 + 2 * x + 16);
                    __m512 a = _mm512_permutex2var_ps(p0, ie, p1), b = _mm512_permutex2var_ps(p0, io, p1);
                    __m512 cc = _mm512_permutex2var_ps(q0, ie, q1), d = _mm512_permutex2var_ps(q0, io, q1), m;
                    __mmask16 sb, sc, sd, wa, wb, wc;
                    sb = _mm512_cmp_ps_mask(b, a, _CMP_GT_OQ);
                    m = _mm512_mask_blend_ps(sb, a, b);
                    sc = _mm512_cmp_ps_mask(cc, m, _CMP_GT_OQ);
                    m = _mm512_mask_blend_ps(sc, m, cc);
                    sd = _mm512_cmp_ps_mask(d, m, _CMP_GT_OQ);
                    wc = (__mmask16)(sc & ~sd);
                    wb = (__mmask16)(sb & ~sc & ~sd);
                    wa = (__mmask16)(~sb & ~sc & ~sd);
                    ga = _mm512_maskz_mov_ps(wa, gv); gb = _mm512_maskz_mov_ps(wb, gv);
                    gc = _mm512_maskz_mov_ps(wc, gv); gd = _mm512_maskz_mov_ps(sd, gv);
                }
                _mm512_mask_storeu_ps(r0 + 2 * x, k0, _mm512_permutex2var_ps(ga, il, gb));
                _mm512_mask_storeu_ps(r0 + 2 * x + 16, k1, _mm512_permutex2var_ps(ga, ih, gb));
                _mm512_mask_storeu_ps(r1 + 2 * x, k0, _mm512_permutex2var_ps(gc, il, gd));
                _mm512_mask_storeu_ps(r1 + 2 * x + 16, k1, _mm512_permutex2var_ps(gc, ih, gd));
            }
            if (w & 1) { r0[w - 1] = 0.0f; r1[w - 1] = 0.0f; }
        }
        if (h & 1) memset(dd + (size_t)(h - 1) * w, 0, sizeof(float) * (size_t)w);
    }
}
#endif

#if defined(NST__X86)
/* ---- AVX2 + FMA kernels (16 ymm registers, 8 tiles / pixels / channels per vector) ----------------*/
/* Lanes < n set (n clamped to 0..8), for maskload/maskstore. */
static NST__TARGET_AVX2 __m256i nst__avx2_lanes(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
/* 8 x 8 transpose in place: afterwards lane l of x[j] is what lane j of x[l] was. For the 9 taps of 3x3
 * filters stored one filter after another: 8 filters' taps 0..7 as 8 row loads, then one vector per tap. */
static NST__TARGET_AVX2 void nst__avx2_transpose8(__m256 x[8]) {
    __m256 y[8];
    int l;
    for (l = 0; l < 8; l += 2) {
        y[l] = _mm256_unpacklo_ps(x[l], x[l + 1]);
        y[l + 1] = _mm256_unpackhi_ps(x[l], x[l + 1]);
    }
    for (l = 0; l < 8; l += 4) {
        x[l] = _mm256_shuffle_ps(y[l], y[l + 2], 0x44);
        x[l + 1] = _mm256_shuffle_ps(y[l], y[l + 2], 0xEE);
        x[l + 2] = _mm256_shuffle_ps(y[l + 1], y[l + 3], 0x44);
        x[l + 3] = _mm256_shuffle_ps(y[l + 1], y[l + 3], 0xEE);
    }
    for (l = 0; l < 4; l++) {
        y[l] = _mm256_permute2f128_ps(x[l], x[l + 4], 0x20);
        y[l + 4] = _mm256_permute2f128_ps(x[l], x[l + 4], 0x31);
    }
    for (l = 0; l < 8; l++) x[l] = y[l];
}

/* Filter transform into the GEMM's layout: each block of 6 output rows k-major, u[36][nob][kin][6] (as on
 * NEON). With the 6 rows kin floats apart the GEMM's six broadcast streams, 2 KiB apart at kin = 512, fall
 * into two L1 sets and it ran at 54 GFLOP/s instead of 71 on conv4_2 (Zen 3, one core, the transform-domain
 * GEMM alone). A group of 4 input channels is 24 (channel, row) pairs, lane l of its q-th vector pair
 * 8q + l (channel (8q + l) / 6, row (8q + l) % 6), so every transform element of a vector is 8 consecutive
 * floats of u: the same operations as the scalar transform. The taps of a vector's 8 filters are 8 rows of
 * 9 floats (each filter's taps are contiguous): taps 0..7 come in as 8 row loads and an 8 x 8 transpose,
 * tap 8 as 8 scalar loads. Gathering all 9 taps (vgatherdps, one index vector per q) ran the transform at
 * 16.8 ns a filter on one Zen 3 core (512 x 512 forward), of which the gathers took ~7. The 36 outputs of
 * 32 channels are staged on the stack and written row by row: written straight, the 36 destination rows
 * (often 4 KiB-aliased) thrash one L1 set. */
static NST__TARGET_AVX2 void nst__wino_filters_avx2(const nst__conv_plan *p, int d, float *u, int ob) {
    const nst__conv_dir *dd = &p->dir[d];
    int kin = dd->kin, kout = dd->kout, nob = (kout + 5) / 6, nr = NST__MIN(6, kout - ob * 6), b0, q, l;
    size_t es = (size_t)nob * 6 * kin;
    size_t so = d == 0 ? (size_t)9 * p->cin : 9, si = d == 0 ? 9 : (size_t)9 * p->cin;   /* per out/in channel */
    const __m256 c4 = _mm256_set1_ps(0.25f), c6 = _mm256_set1_ps(1.0f / 6), c12 = _mm256_set1_ps(1.0f / 12);
    /* -1/6: -(x) / 6 as x * (-1/6), the same bits (a sign flip is exact), one operation fewer */
    const __m256 c24 = _mm256_set1_ps(1.0f / 24), cn6 = _mm256_set1_ps(-1.0f / 6);
    static const float zero9[9] = {0};
    size_t ix[24];
    float buf[36][192] NST__ALIGN64;
    for (l = 0; l < 24; l++) ix[l] = (size_t)(l % 6) * so + (size_t)(l / 6) * si;   /* pair l: row l % 6, channel l / 6 */
    for (b0 = 0; b0 < kin; b0 += 32) {
        int nb = NST__MIN(32, kin - b0), i0, e, j;
        for (i0 = 0; i0 < nb; i0 += 4) {
            const float *wb = p->weight + (size_t)ob * 6 * so + (size_t)(b0 + i0) * si;
            int full = nr == 6 && i0 + 4 <= nb;   /* all 24 pairs inside: the per-filter tests (a modulo each) skipped */
            if (d == 1) {   /* the channels two groups ahead: nr rows of 9 taps (216 bytes) each */
                int c2, last = 36 * nr - 1;
                for (c2 = 8; c2 < 12 && b0 + i0 + c2 < kin; c2++) {
                    const char *f = (const char *)(wb + (size_t)c2 * si);
                    _mm_prefetch(f, _MM_HINT_T0); _mm_prefetch(f + NST__MIN(64, last), _MM_HINT_T0);
                    _mm_prefetch(f + NST__MIN(128, last), _MM_HINT_T0); _mm_prefetch(f + last, _MM_HINT_T0);
                }
            }
            for (q = 0; q < 3; q++) {
                __m256 g[9], t[6][3], x[8];
                const float *f[8];
                int k, c;
                for (l = 0; l < 8; l++) {   /* the 8 filters' rows of taps; outside rows and channels read zeros */
                    int pp = 8 * q + l;
                    f[l] = full || (pp % 6 < nr && i0 + pp / 6 < nb) ? wb + ix[pp] : zero9;
                    x[l] = _mm256_loadu_ps(f[l]);
                }
                nst__avx2_transpose8(x);   /* x[j] lane l: tap j of filter l */
                for (k = 0; k < 9; k++) {   /* backward-data: the flipped filter */
                    int tap = d == 0 ? k : 8 - k;
                    g[k] = tap < 8 ? x[tap] : _mm256_setr_ps(f[0][8], f[1][8], f[2][8], f[3][8], f[4][8], f[5][8],
                                                             f[6][8], f[7][8]);
                }
#define NST__WINO_GA(a, b, cc, t0, t1, t2, t3, t4, t5) do {                                          \
    __m256 s_ = _mm256_add_ps(a, cc), q_ = _mm256_add_ps(_mm256_mul_ps(a, c24), _mm256_mul_ps(cc, c6)); \
    __m256 h_ = _mm256_mul_ps(b, c12);                                                                 \
    t0 = _mm256_mul_ps(a, c4);                                                                         \
    t1 = _mm256_mul_ps(_mm256_add_ps(s_, b), cn6);                                                      \
    t2 = _mm256_mul_ps(_mm256_sub_ps(s_, b), cn6);                                                      \
    t3 = _mm256_add_ps(q_, h_); t4 = _mm256_sub_ps(q_, h_); t5 = cc; } while (0)
                for (c = 0; c < 3; c++) NST__WINO_GA(g[c], g[3 + c], g[6 + c], t[0][c], t[1][c], t[2][c], t[3][c], t[4][c], t[5][c]);
                for (k = 0; k < 6; k++) {
                    __m256 w0, w1, w2, w3, w4, w5;
                    float *o = buf[6 * k] + 6 * i0 + 8 * q;
                    NST__WINO_GA(t[k][0], t[k][1], t[k][2], w0, w1, w2, w3, w4, w5);
                    _mm256_store_ps(o, w0); _mm256_store_ps(o + 192, w1); _mm256_store_ps(o + 2 * 192, w2);
                    _mm256_store_ps(o + 3 * 192, w3); _mm256_store_ps(o + 4 * 192, w4); _mm256_store_ps(o + 5 * 192, w5);
                }
#undef NST__WINO_GA
            }
        }
        for (e = 0; e < 36; e++) {   /* whole cache lines per row: the 36 rows alias in L1 (es*4 % 4096 == 0) */
            float *dst = u + (size_t)e * es + ((size_t)ob * kin + b0) * 6;
            int n = 6 * nb;
            if (n == 192 && !((uintptr_t)dst & 31)) {   /* streaming: no read for ownership */
                for (j = 0; j < 192; j += 8) _mm256_stream_ps(dst + j, _mm256_load_ps(buf[e] + j));
                continue;
            }
            for (j = 0; j + 8 <= n; j += 8) _mm256_storeu_ps(dst + j, _mm256_load_ps(buf[e] + j));
            if (j < n) _mm256_maskstore_ps(dst + j, nst__avx2_lanes(n - j), _mm256_load_ps(buf[e] + j));
        }
    }
    _mm_sfence();
}

/* Input transform, 8 tiles per vector. The 32 floats of 8 tiles' first four columns are transposed
 * 4x4 within 128-bit lanes after swapping halves (exact tile order, so a partial group is a prefix);
 * columns 4 and 5 are columns 0 and 1 of the next tile: a lane rotate and one broadcast each. */
static NST__TARGET_AVX2 void nst__wino_in_avx2(float *v, size_t estride, const float *rows, size_t rstride, int len) {
    const __m256i rot = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 7);
    const __m256 c2 = _mm256_set1_ps(2), c4 = _mm256_set1_ps(4), c5 = _mm256_set1_ps(5);
    int g;
    for (g = 0; 8 * g < len; g++) {
        __m256 t[6][6];
        int r, c, n = len - 8 * g;
        __m256i mk = nst__avx2_lanes(n);
        for (r = 0; r < 6; r++) {
            const float *b = rows + r * rstride + 32 * g;
            __m256 a0 = _mm256_loadu_ps(b), a1 = _mm256_loadu_ps(b + 8), a2 = _mm256_loadu_ps(b + 16),
                   a3 = _mm256_loadu_ps(b + 24);
            __m256 b0 = _mm256_permute2f128_ps(a0, a2, 0x20), b1 = _mm256_permute2f128_ps(a0, a2, 0x31);
            __m256 b2 = _mm256_permute2f128_ps(a1, a3, 0x20), b3 = _mm256_permute2f128_ps(a1, a3, 0x31);
            __m256 u0 = _mm256_unpacklo_ps(b0, b1), u1 = _mm256_unpackhi_ps(b0, b1);
            __m256 u2 = _mm256_unpacklo_ps(b2, b3), u3 = _mm256_unpackhi_ps(b2, b3);
            __m256 z0 = _mm256_shuffle_ps(u0, u2, 0x44), z1 = _mm256_shuffle_ps(u0, u2, 0xEE);
            __m256 z2 = _mm256_shuffle_ps(u1, u3, 0x44), z3 = _mm256_shuffle_ps(u1, u3, 0xEE);
            __m256 z4 = _mm256_blend_ps(_mm256_permutevar8x32_ps(z0, rot), _mm256_broadcast_ss(b + 32), 0x80);
            __m256 z5 = _mm256_blend_ps(_mm256_permutevar8x32_ps(z1, rot), _mm256_broadcast_ss(b + 33), 0x80);
            __m256 s12 = _mm256_add_ps(z1, z2), d12 = _mm256_sub_ps(z1, z2), s34 = _mm256_add_ps(z3, z4);
            __m256 d31 = _mm256_sub_ps(z3, z1), z4mz2 = _mm256_sub_ps(z4, z2);
            t[r][0] = _mm256_add_ps(_mm256_fmsub_ps(c4, z0, _mm256_mul_ps(c5, z2)), z4);
            t[r][1] = _mm256_fnmadd_ps(c4, s12, s34);
            t[r][2] = _mm256_fmadd_ps(c4, d12, _mm256_sub_ps(z4, z3));
            t[r][3] = _mm256_fmadd_ps(c2, d31, z4mz2);
            t[r][4] = _mm256_fnmadd_ps(c2, d31, z4mz2);
            t[r][5] = _mm256_add_ps(_mm256_fmsub_ps(c4, z1, _mm256_mul_ps(c5, z3)), z5);
        }
        for (c = 0; c < 6; c++) {
            __m256 z0 = t[0][c], z1 = t[1][c], z2 = t[2][c], z3 = t[3][c], z4 = t[4][c], z5 = t[5][c];
            __m256 s12 = _mm256_add_ps(z1, z2), d12 = _mm256_sub_ps(z1, z2), s34 = _mm256_add_ps(z3, z4);
            __m256 d31 = _mm256_sub_ps(z3, z1), z4mz2 = _mm256_sub_ps(z4, z2);
            __m256 y0 = _mm256_add_ps(_mm256_fmsub_ps(c4, z0, _mm256_mul_ps(c5, z2)), z4);
            __m256 y1 = _mm256_fnmadd_ps(c4, s12, s34), y2 = _mm256_fmadd_ps(c4, d12, _mm256_sub_ps(z4, z3));
            __m256 y3 = _mm256_fmadd_ps(c2, d31, z4mz2), y4 = _mm256_fnmadd_ps(c2, d31, z4mz2);
            __m256 y5 = _mm256_add_ps(_mm256_fmsub_ps(c4, z1, _mm256_mul_ps(c5, z3)), z5);
            float *o = v + 8 * g + (size_t)c * estride;
            if (n >= 8) {
                _mm256_storeu_ps(o, y0); _mm256_storeu_ps(o + 6 * estride, y1);
                _mm256_storeu_ps(o + 12 * estride, y2); _mm256_storeu_ps(o + 18 * estride, y3);
                _mm256_storeu_ps(o + 24 * estride, y4); _mm256_storeu_ps(o + 30 * estride, y5);
            } else {
                _mm256_maskstore_ps(o, mk, y0); _mm256_maskstore_ps(o + 6 * estride, mk, y1);
                _mm256_maskstore_ps(o + 12 * estride, mk, y2); _mm256_maskstore_ps(o + 18 * estride, mk, y3);
                _mm256_maskstore_ps(o + 24 * estride, mk, y4); _mm256_maskstore_ps(o + 30 * estride, mk, y5);
            }
        }
    }
}

/* 6 x (8*NV) register tile: m[r][..] = sum_k u[k][r] * v[k][..] (u k-major, see nst__wino_filters_avx2). */
#define NST__WA_ROW(NV, r)                                              \
    { __m256 a = _mm256_broadcast_ss(u + r);                            \
      c##r##0 = _mm256_fmadd_ps(a, b0, c##r##0);                        \
      if (NV > 1) c##r##1 = _mm256_fmadd_ps(a, b1, c##r##1); }
#define NST__WA_ST(NV, r)                                               \
    { float *q = m + r * ldm;                                           \
      _mm256_storeu_ps(q, c##r##0);                                     \
      if (NV > 1) _mm256_storeu_ps(q + 8, c##r##1); }
#define NST__WA_DEF(NV)                                                                                  \
static NST__TARGET_AVX2 void nst__wino_gemm##NV##_avx2(int kk, const float *u, const float *v, size_t ldv,  \
                                                      float *m, size_t ldm) {                            \
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,  \
           c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;                                        \
    int k;                                                                                               \
    for (k = 0; k < kk; k++, v += ldv, u += 6) {                                                         \
        __m256 b0 = _mm256_loadu_ps(v), b1 = b0;                                                         \
        if (NV > 1) b1 = _mm256_loadu_ps(v + 8);                                                         \
        NST__WA_ROW(NV, 0) NST__WA_ROW(NV, 1) NST__WA_ROW(NV, 2) NST__WA_ROW(NV, 3) NST__WA_ROW(NV, 4)   \
        NST__WA_ROW(NV, 5)                                                                               \
    }                                                                                                    \
    NST__WA_ST(NV, 0) NST__WA_ST(NV, 1) NST__WA_ST(NV, 2) NST__WA_ST(NV, 3) NST__WA_ST(NV, 4)            \
    NST__WA_ST(NV, 5)                                                                                    \
}
NST__WA_DEF(1)
NST__WA_DEF(2)
#undef NST__WA_DEF
#undef NST__WA_ROW
#undef NST__WA_ST
static NST__TARGET_AVX2 void nst__wino_gemm_avx2(int n, int kk, const float *u, const float *v, size_t ldv,
                                                 float *m, size_t ldm) {
    int j;
    for (j = 0; j + 16 <= n; j += 16) nst__wino_gemm2_avx2(kk, u, v + j, ldv, m + j, ldm);
    if (j < n) nst__wino_gemm1_avx2(kk, u, v + j, ldv, m + j, ldm);
}

/* Output transform, 8 tiles per vector; the 4x4 outputs of each row are transposed back within lanes
 * and the halves swapped (the inverse of the input transform's shuffle).
 * Planes of at least NST__WINO_STREAM_PLANE floats (1 MiB: 512 x 512; a VGG layer has >= 64 channels,
 * so its output is >= 64 MiB, beyond L3, and its consumer reads it from DRAM anyway) are written with
 * non-temporal stores: each call writes 4 rows of one plane and the next call the next plane 1 MiB on,
 * and with plain stores every line is first read for ownership from DRAM. Same values, same bits.
 * Measured (2026-12-01, Zen 3, 1 thread, host loaded by another job, old/new alternated): the kernel
 * alone on 48 fresh 512 x 512 planes 156-190 -> 103-118 ns per 8 tiles (8 runs each); `bench_conv
 * --size 512 --cpu --reps 5 --layer conv1_2` min of 4 pairs fwd/bwd 89.8/88.6 -> 83.2/83.7 ms (the
 * layers below 512 x 512, same code, moved 0..+-8% with the noise). In the evaluation only conv1_2's
 * backward streams (its forward writes the fused pool's row buffer, h <= 4): ~5 ms of ~2100, below
 * that host's run-to-run spread (bench_nst 2085..2406 ms either way). Not kept: a prefetchw of the next
 * plane's rows (no gain); streaming 256 x 256 planes too (conv2_x, 16-32 MiB outputs): no difference
 * resolved in bench_conv or the evaluation (3 pairs), and a consumer reading such an output next can
 * lose its L3 hits. The AVX-512 output transform streams by the same rule (Zen 4, 2026-12-02, `bench_conv
 * --size 512 --cpu --reps 5 --layer conv1_2`, 1 thread, 3 pairs: fwd/bwd 68.0-75.5/68.0-76.7 -> 62.7-63.8/
 * 62.5-66.3 ms; the evaluation, 3 pairs on 2 threads, 0.71-0.73 against 0.69-0.77 s: not resolved).
 * The fence makes the weakly ordered stores visible before the block's threads join. */
static NST__TARGET_AVX2 void nst__wino_out_avx2(float *out, int h, int w, int ty, int tx, int len, const float *m,
                                                size_t estride, float bias, int relu) {
    const __m256 c2 = _mm256_set1_ps(2), c4 = _mm256_set1_ps(4), c8 = _mm256_set1_ps(8);
    const __m256 vb = _mm256_set1_ps(bias), zero = _mm256_setzero_ps();
    const int nt = (size_t)h * w >= NST__WINO_STREAM_PLANE;   /* stream whole aligned rows */
    int g;
    for (g = 0; 8 * g < len; g++) {
        __m256 t[4][6];
        int r, c, xb = 4 * (tx + 8 * g);
        int n = 4 * (len - 8 * g);
        if (n > 32) n = 32;
        if (n > w - xb) n = w - xb;
        for (c = 0; c < 6; c++) {
            const float *q = m + 8 * g + (size_t)c * estride;
            __m256 m0 = _mm256_loadu_ps(q), m1 = _mm256_loadu_ps(q + 6 * estride),
                   m2 = _mm256_loadu_ps(q + 12 * estride), m3 = _mm256_loadu_ps(q + 18 * estride),
                   m4 = _mm256_loadu_ps(q + 24 * estride), m5 = _mm256_loadu_ps(q + 30 * estride);
            __m256 s12 = _mm256_add_ps(m1, m2), d12 = _mm256_sub_ps(m1, m2);
            __m256 s34 = _mm256_add_ps(m3, m4), d34 = _mm256_sub_ps(m3, m4);
            t[0][c] = _mm256_add_ps(_mm256_add_ps(m0, s12), s34);
            t[1][c] = _mm256_fmadd_ps(c2, d34, d12);
            t[2][c] = _mm256_fmadd_ps(c4, s34, s12);
            t[3][c] = _mm256_add_ps(_mm256_fmadd_ps(c8, d34, d12), m5);
        }
        for (r = 0; r < 4 && 4 * ty + r < h; r++) {
            __m256 m0 = t[r][0], m1 = t[r][1], m2 = t[r][2], m3 = t[r][3], m4 = t[r][4], m5 = t[r][5];
            __m256 s12 = _mm256_add_ps(m1, m2), d12 = _mm256_sub_ps(m1, m2);
            __m256 s34 = _mm256_add_ps(m3, m4), d34 = _mm256_sub_ps(m3, m4);
            __m256 y0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(m0, s12), s34), vb);
            __m256 y1 = _mm256_add_ps(_mm256_fmadd_ps(c2, d34, d12), vb);
            __m256 y2 = _mm256_add_ps(_mm256_fmadd_ps(c4, s34, s12), vb);
            __m256 y3 = _mm256_add_ps(_mm256_add_ps(_mm256_fmadd_ps(c8, d34, d12), m5), vb);
            __m256 l0, l1, l2, l3, p0, p1, p2, p3, o4[4];
            float *o = out + (size_t)(4 * ty + r) * w + xb;
            int qq, al;
            if (relu) {   /* max(y, 0) returns 0 for NaN y, as the reference's !(s > 0) */
                y0 = _mm256_max_ps(y0, zero); y1 = _mm256_max_ps(y1, zero);
                y2 = _mm256_max_ps(y2, zero); y3 = _mm256_max_ps(y3, zero);
            }
            l0 = _mm256_unpacklo_ps(y0, y1); l1 = _mm256_unpackhi_ps(y0, y1);
            l2 = _mm256_unpacklo_ps(y2, y3); l3 = _mm256_unpackhi_ps(y2, y3);
            p0 = _mm256_shuffle_ps(l0, l2, 0x44); p1 = _mm256_shuffle_ps(l0, l2, 0xEE);
            p2 = _mm256_shuffle_ps(l1, l3, 0x44); p3 = _mm256_shuffle_ps(l1, l3, 0xEE);
            o4[0] = _mm256_permute2f128_ps(p0, p1, 0x20); o4[1] = _mm256_permute2f128_ps(p2, p3, 0x20);
            o4[2] = _mm256_permute2f128_ps(p0, p1, 0x31); o4[3] = _mm256_permute2f128_ps(p2, p3, 0x31);
            al = nt && !((uintptr_t)o & 31);
            for (qq = 0; qq < 4; qq++) {
                int cnt = n - 8 * qq;
                if (cnt <= 0) break;
                if (cnt >= 8 && al) _mm256_stream_ps(o + 8 * qq, o4[qq]);
                else if (cnt >= 8) _mm256_storeu_ps(o + 8 * qq, o4[qq]);
                else _mm256_maskstore_ps(o + 8 * qq, nst__avx2_lanes(cnt), o4[qq]);
            }
        }
    }
    if (nt) _mm_sfence();
}

/* Direct convolution from the packed rows of nst__direct_pack_avx2 (no masks on loads): one 32-pixel
 * block b of output row y for the channels of block ob. A block with more than 3 channels takes two
 * tiles of 6 channels x 16 pixels (12 accumulators, 2 input vectors, 1 broadcast: 12 FMAs per 8 loads);
 * one with at most 3 (conv1_1's backward, 64 -> 3) one tile of 3 channels x 32 pixels (12 accumulators,
 * 3 broadcasts per filter position, 1 input vector: 12 FMAs per 7 loads), where a 6-channel tile would
 * spend half its FMAs on zero filters. r[ky]: block b of input row y + ky - 1, NULL outside the image.
 * Stores are plain inside the image (vmaskmovps stores are slow on AMD). */
#define NST__DA_ROW(r, kx)                                              \
    { __m256 a = _mm256_broadcast_ss(wt + 6 * kx + r);                  \
      c##r##0 = _mm256_fmadd_ps(a, b0, c##r##0);                        \
      c##r##1 = _mm256_fmadd_ps(a, b1, c##r##1); }
#define NST__DA_KX(kx)                                                  \
    { __m256 b0 = _mm256_loadu_ps(row + kx), b1 = _mm256_loadu_ps(row + kx + 8); \
      NST__DA_ROW(0, kx) NST__DA_ROW(1, kx) NST__DA_ROW(2, kx) NST__DA_ROW(3, kx) NST__DA_ROW(4, kx) NST__DA_ROW(5, kx) }
#define NST__DA_ST(r)                                                   \
    if (ob * 6 + r < kout) {                                            \
        int o = ob * 6 + r;                                             \
        __m256 vb = _mm256_set1_ps(bias ? bias[o] : 0.0f);              \
        float *dst = out + o * hw + (size_t)y * w + x0;                 \
        c##r##0 = _mm256_add_ps(c##r##0, vb); c##r##1 = _mm256_add_ps(c##r##1, vb); \
        if (relu) { c##r##0 = _mm256_max_ps(c##r##0, z); c##r##1 = _mm256_max_ps(c##r##1, z); } \
        if (x0 + 16 <= w) { _mm256_storeu_ps(dst, c##r##0); _mm256_storeu_ps(dst + 8, c##r##1); } \
        else { _mm256_maskstore_ps(dst, nst__avx2_lanes(w - x0), c##r##0);  \
               _mm256_maskstore_ps(dst + 8, nst__avx2_lanes(w - x0 - 8), c##r##1); } \
    }
static NST__TARGET_AVX2 void nst__direct6_avx2(const nst__conv_dir *dd, const float *const r[3], float *out, int h,
                                               int w, const float *bias, int relu, int ob, int y, int x0, int off) {
    int kin = dd->kin, kout = dd->kout, ci, ky;
    size_t hw = (size_t)h * w;
    __m256 z = _mm256_setzero_ps();
    __m256 c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z, c40 = z, c41 = z, c50 = z, c51 = z;
    for (ky = 0; ky < 3; ky++) {
        const float *row = r[ky], *wt = dd->u + ((size_t)ob * kin * 9 + ky * 3) * 6;
        if (!row) continue;
        for (ci = 0, row += off; ci < kin; ci++, row += NST__DR_LD, wt += 54) {
            NST__DA_KX(0) NST__DA_KX(1) NST__DA_KX(2)
        }
    }
    NST__DA_ST(0) NST__DA_ST(1) NST__DA_ST(2) NST__DA_ST(3) NST__DA_ST(4) NST__DA_ST(5)
}
#undef NST__DA_ROW
#undef NST__DA_KX
#undef NST__DA_ST
#define NST__DA_V(v, kx)                                                \
    { __m256 b = _mm256_loadu_ps(row + kx + 8 * v);                     \
      c0##v = _mm256_fmadd_ps(a0, b, c0##v);                            \
      c1##v = _mm256_fmadd_ps(a1, b, c1##v);                            \
      c2##v = _mm256_fmadd_ps(a2, b, c2##v); }
#define NST__DA_KX3(kx)                                                 \
    { __m256 a0 = _mm256_broadcast_ss(wt + 6 * kx), a1 = _mm256_broadcast_ss(wt + 6 * kx + 1); \
      __m256 a2 = _mm256_broadcast_ss(wt + 6 * kx + 2);                 \
      NST__DA_V(0, kx) NST__DA_V(1, kx) NST__DA_V(2, kx) NST__DA_V(3, kx) }
#define NST__DA_ST3(r)                                                  \
    if (ob * 6 + r < kout) {                                            \
        int o = ob * 6 + r, v;                                          \
        __m256 vb = _mm256_set1_ps(bias ? bias[o] : 0.0f), acc[4];     \
        float *dst = out + o * hw + (size_t)y * w + x0;                 \
        acc[0] = c##r##0; acc[1] = c##r##1; acc[2] = c##r##2; acc[3] = c##r##3; \
        for (v = 0; v < 4; v++) {                                       \
            acc[v] = _mm256_add_ps(acc[v], vb);                         \
            if (relu) acc[v] = _mm256_max_ps(acc[v], z);                \
            if (x0 + 32 <= w) _mm256_storeu_ps(dst + 8 * v, acc[v]);    \
            else _mm256_maskstore_ps(dst + 8 * v, nst__avx2_lanes(w - x0 - 8 * v), acc[v]); \
        }                                                               \
    }
static NST__TARGET_AVX2 void nst__direct3_avx2(const nst__conv_dir *dd, const float *const r[3], float *out, int h,
                                               int w, const float *bias, int relu, int ob, int y, int x0,
                                               const float *pf, int pf2) {
    int kin = dd->kin, kout = dd->kout, ci, ky;
    size_t hw = (size_t)h * w;
    __m256 z = _mm256_setzero_ps();
    __m256 c00 = z, c01 = z, c02 = z, c03 = z, c10 = z, c11 = z, c12 = z, c13 = z, c20 = z, c21 = z, c22 = z, c23 = z;
    for (ky = 0; ky < 3; ky++) {
        const float *row = r[ky], *wt = dd->u + ((size_t)ob * kin * 9 + ky * 3) * 6;
        if (!row) continue;
        for (ci = 0; ci < kin; ci++, row += NST__DR_LD, wt += 54) {
            if (ky == 1 && pf) {   /* one channel's lines of a block packed soon, spread over the FMAs */
                _mm_prefetch((const char *)(pf + ci * hw), _MM_HINT_T0);
                if (pf2) _mm_prefetch((const char *)(pf + ci * hw + 16), _MM_HINT_T0);
            }
            NST__DA_KX3(0) NST__DA_KX3(1) NST__DA_KX3(2)
        }
    }
    NST__DA_ST3(0) NST__DA_ST3(1) NST__DA_ST3(2)
}
#undef NST__DA_V
#undef NST__DA_KX3
#undef NST__DA_ST3
/* Input row sy of every channel into dst, packed as nst__direct_ring_floats says: a channel's row is read
 * in one sweep (2 KiB at 512 px; block by block, 64 planes 1 MiB apart per block, it ran slower). */
static NST__TARGET_AVX2 void nst__direct_pack_avx2(const float *in, int kin, int h, int w, int sy, float *dst) {
    int nb = (w + NST__DR_X - 1) / NST__DR_X, ci, b, j;
    for (ci = 0; ci < kin; ci++) {
        const float *src = in + (size_t)ci * h * w + (size_t)sy * w;
        for (b = 0; b < nb; b++) {
            float *d = dst + ((size_t)b * kin + ci) * NST__DR_LD;
            int x = NST__DR_X * b - 1;
            if (x >= 0 && x + NST__DR_LD <= w) {
                for (j = 0; j < NST__DR_X; j += 8) _mm256_storeu_ps(d + j, _mm256_loadu_ps(src + x + j));
                d[NST__DR_X] = src[x + NST__DR_X];
                d[NST__DR_X + 1] = src[x + NST__DR_X + 1];
            } else {   /* the image's left or right border: the masked loads touch no column outside the row */
                int lo = x < 0 ? -x : 0;
                for (j = 0; j < NST__DR_X; j += 8) {
                    __m256i m = _mm256_andnot_si256(nst__avx2_lanes(lo - j), nst__avx2_lanes(w - x - j));
                    _mm256_storeu_ps(d + j, _mm256_maskload_ps(src + x + j, m));
                }
                for (j = NST__DR_X; j < NST__DR_LD; j++) d[j] = x + j < w ? src[x + j] : 0.0f;
            }
        }
    }
}
/* The table's direct_rows kernel: output rows y0 .. y1-1, every channel (see nst__direct_ring_floats). */
static NST__TARGET_AVX2 void nst__direct_rows_avx2(const nst__conv_dir *dd, const float *in, float *out, int h, int w,
                                                   const float *bias, int relu, int y0, int y1, float *ring) {
    int kin = dd->kin, nb = (w + NST__DR_X - 1) / NST__DR_X, nob = (dd->kout + 5) / 6, y, b, ob, ky;
    size_t slot = (size_t)nb * kin * NST__DR_LD;
    for (y = y0; y < y1; y++) {
        for (ky = y == y0 ? -1 : 1; ky <= 1; ky++)
            if (y + ky >= 0 && y + ky < h) nst__direct_pack_avx2(in, kin, h, w, y + ky, ring + (size_t)((y + ky) % 3) * slot);
        for (ob = 0; ob < nob; ob++)
            for (b = 0; b < nb; b++) {
                const float *r[3], *pf = NULL;
                int pf2 = NST__DR_X * b + 16 < w;
                if (ob == 0 && y + 2 < h) pf = in + (size_t)(y + 2) * w + NST__DR_X * b;   /* the row packed next */
                for (ky = 0; ky < 3; ky++) {
                    int sy = y + ky - 1;
                    r[ky] = sy < 0 || sy >= h ? NULL : ring + (size_t)(sy % 3) * slot + (size_t)b * kin * NST__DR_LD;
                }
                if (dd->kout - ob * 6 <= 3) {
                    nst__direct3_avx2(dd, r, out, h, w, bias, relu, ob, y, NST__DR_X * b, pf, pf2);
                } else {
                    if (pf) {   /* few input channels: their lines at once */
                        int ci;
                        for (ci = 0; ci < kin; ci++) {
                            _mm_prefetch((const char *)(pf + (size_t)ci * h * w), _MM_HINT_T0);
                            if (pf2) _mm_prefetch((const char *)(pf + (size_t)ci * h * w + 16), _MM_HINT_T0);
                        }
                    }
                    nst__direct6_avx2(dd, r, out, h, w, bias, relu, ob, y, NST__DR_X * b, 0);
                    if (NST__DR_X * b + 16 < w) nst__direct6_avx2(dd, r, out, h, w, bias, relu, ob, y, NST__DR_X * b + 16, 16);
                }
            }
    }
}

/* Pooling, 8 outputs per vector. shuffle_ps(p0, p1, 0x88/0xDD) de-interleaves even/odd columns into
 * the order [0 1 4 5 2 3 6 7]; permute4x64(0xD8) maps between that order and the natural one (it is
 * its own inverse), and unpacklo/hi of two vectors in that order interleave back to natural order. */
static NST__TARGET_AVX2 void nst__pool_fwd_avx2(float *out, const float *in, int ch, int h, int w, int avg) {
    int oh = h / 2, ow = w / 2, y, x;
    const float *s = in + (size_t)ch * h * w;
    float *o = out + (size_t)ch * oh * ow;
    for (y = 0; y < oh; y++) {
        const float *r0 = s + (size_t)(2 * y) * w, *r1 = r0 + w;
        for (x = 0; x < ow; x += 8) {
            int n = NST__MIN(8, ow - x);
            __m256i k0 = nst__avx2_lanes(2 * n), k1 = nst__avx2_lanes(2 * n - 8), ko = nst__avx2_lanes(n);
            __m256 p0 = _mm256_maskload_ps(r0 + 2 * x, k0), p1 = _mm256_maskload_ps(r0 + 2 * x + 8, k1);
            __m256 q0 = _mm256_maskload_ps(r1 + 2 * x, k0), q1 = _mm256_maskload_ps(r1 + 2 * x + 8, k1);
            __m256 a = _mm256_shuffle_ps(p0, p1, 0x88), b = _mm256_shuffle_ps(p0, p1, 0xDD);
            __m256 cc = _mm256_shuffle_ps(q0, q1, 0x88), d = _mm256_shuffle_ps(q0, q1, 0xDD), m;
            if (avg) {
                m = _mm256_mul_ps(_mm256_set1_ps(0.25f), _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a, b), cc), d));
            } else {
                m = _mm256_blendv_ps(a, b, _mm256_cmp_ps(b, a, _CMP_GT_OQ));
                m = _mm256_blendv_ps(m, cc, _mm256_cmp_ps(cc, m, _CMP_GT_OQ));
                m = _mm256_blendv_ps(m, d, _mm256_cmp_ps(d, m, _CMP_GT_OQ));
            }
            m = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(m), 0xD8));
            if (n == 8) _mm256_storeu_ps(o + (size_t)y * ow + x, m);
            else _mm256_maskstore_ps(o + (size_t)y * ow + x, ko, m);
        }
    }
}
static NST__TARGET_AVX2 void nst__pool_bwd_avx2(float *din, const float *dout, const float *in, int ch, int h, int w,
                                                int avg) {
    int oh = h / 2, ow = w / 2, y, x;
    const float *s = in ? in + (size_t)ch * h * w : NULL;
    const float *g = dout + (size_t)ch * oh * ow;
    float *dd = din + (size_t)ch * h * w;
    for (y = 0; y < oh; y++) {
        float *r0 = dd + (size_t)(2 * y) * w, *r1 = r0 + w;
        for (x = 0; x < ow; x += 8) {
            int n = NST__MIN(8, ow - x);
            __m256i k0 = nst__avx2_lanes(2 * n), k1 = nst__avx2_lanes(2 * n - 8), ko = nst__avx2_lanes(n);
            __m256 gv = _mm256_maskload_ps(g + (size_t)y * ow + x, ko), ga, gb, gc, gd;
            gv = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(gv), 0xD8));
            if (avg) {
                ga = gb = gc = gd = _mm256_mul_ps(_mm256_set1_ps(0.25f), gv);
            } else {
                const float *s0 = s + (size_t)(2 * y) * w, *s1 = s0 + w;
                __m256 p0 = _mm256_maskload_ps(s0 + 2 * x, k0), p1 = _mm256_maskload_ps(s0 + 2 * x + 8, k1);
                __m256 q0 = _mm256_maskload_ps(s1 + 2 * x, k0), q1 = _mm256_maskload_ps(s1 + 2 * x + 8, k1);
                __m256 a = _mm256_shuffle_ps(p0, p1, 0x88), b = _mm256_shuffle_ps(p0, p1, 0xDD);
                __m256 cc = _mm256_shuffle_ps(q0, q1, 0x88), d = _mm256_shuffle_ps(q0, q1, 0xDD), m;
                __m256 sb, sc, sd;
                sb = _mm256_cmp_ps(b, a, _CMP_GT_OQ);
                m = _mm256_blendv_ps(a, b, sb);
                sc = _mm256_cmp_ps(cc, m, _CMP_GT_OQ);
                m = _mm256_blendv_ps(m, cc, sc);
                sd = _mm256_cmp_ps(d, m, _CMP_GT_OQ);
                gd = _mm256_and_ps(sd, gv);
                gc = _mm256_and_ps(_mm256_andnot_ps(sd, sc), gv);
                gb = _mm256_and_ps(_mm256_andnot_ps(_mm256_or_ps(sc, sd), sb), gv);
                ga = _mm256_andnot_ps(_mm256_or_ps(_mm256_or_ps(sb, sc), sd), gv);
            }
            _mm256_maskstore_ps(r0 + 2 * x, k0, _mm256_unpacklo_ps(ga, gb));
            _mm256_maskstore_ps(r0 + 2 * x + 8, k1, _mm256_unpackhi_ps(ga, gb));
            _mm256_maskstore_ps(r1 + 2 * x, k0, _mm256_unpacklo_ps(gc, gd));
            _mm256_maskstore_ps(r1 + 2 * x + 8, k1, _mm256_unpackhi_ps(gc, gd));
        }
        if (w & 1) { r0[w - 1] = 0.0f; r1[w - 1] = 0.0f; }
    }
    if (h & 1) memset(dd + (size_t)(h - 1) * w, 0, sizeof(float) * (size_t)w);
}
#endif

#if defined(NST__NEON)
/* 4 outputs per q register: vld2q splits even and odd columns, vst2q interleaves the gradient back; the
 * last ow % 4 columns take the reference's scalar code. Same operations in the same order, so the same
 * bits: max keeps the first maximum (b > m), avg is 0.25 * (((a + b) + c) + d). */
static void nst__pool_fwd_neon(float *out, const float *in, int ch, int h, int w, int avg) {
    int oh = h / 2, ow = w / 2, y, x;
    const float *s = in + (size_t)ch * h * w;
    float *o = out + (size_t)ch * oh * ow;
    const float32x4_t q = vdupq_n_f32(0.25f);
    for (y = 0; y < oh; y++) {
        const float *r0 = s + (size_t)(2 * y) * w, *r1 = r0 + w;
        float *orow = o + (size_t)y * ow;
        for (x = 0; x + 4 <= ow; x += 4) {
            float32x4x2_t p0 = vld2q_f32(r0 + 2 * x), p1 = vld2q_f32(r1 + 2 * x);
            float32x4_t a = p0.val[0], b = p0.val[1], cc = p1.val[0], d = p1.val[1], m;
            if (avg) {
                m = vmulq_f32(q, vaddq_f32(vaddq_f32(vaddq_f32(a, b), cc), d));
            } else {
                m = vbslq_f32(vcgtq_f32(b, a), b, a);
                m = vbslq_f32(vcgtq_f32(cc, m), cc, m);
                m = vbslq_f32(vcgtq_f32(d, m), d, m);
            }
            vst1q_f32(orow + x, m);
        }
        for (; x < ow; x++) {
            const float *pp = r0 + 2 * x;
            float a = pp[0], b = pp[1], cc = pp[w], d = pp[w + 1];
            if (avg) {
                orow[x] = 0.25f * (a + b + cc + d);
            } else {
                float m = a;
                if (b > m) m = b;
                if (cc > m) m = cc;
                if (d > m) m = d;
                orow[x] = m;
            }
        }
    }
}
static void nst__pool_bwd_neon(float *din, const float *dout, const float *in, int ch, int h, int w, int avg) {
    int oh = h / 2, ow = w / 2, y, x;
    const float *s = in ? in + (size_t)ch * h * w : NULL;
    const float *g = dout + (size_t)ch * oh * ow;
    float *dd = din + (size_t)ch * h * w;
    const float32x4_t q = vdupq_n_f32(0.25f);
    for (y = 0; y < oh; y++) {
        float *r0 = dd + (size_t)(2 * y) * w, *r1 = r0 + w;
        const float *grow = g + (size_t)y * ow;
        for (x = 0; x + 4 <= ow; x += 4) {
            float32x4_t gv = vld1q_f32(grow + x);
            float32x4x2_t top, bot;
            if (avg) {
                top.val[0] = top.val[1] = bot.val[0] = bot.val[1] = vmulq_f32(q, gv);
            } else {
                const float *s0 = s + (size_t)(2 * y) * w, *s1 = s0 + w;
                float32x4x2_t p0 = vld2q_f32(s0 + 2 * x), p1 = vld2q_f32(s1 + 2 * x);
                float32x4_t a = p0.val[0], b = p0.val[1], cc = p1.val[0], d = p1.val[1], m;
                uint32x4_t sb, sc, sd, gu = vreinterpretq_u32_f32(gv);
                sb = vcgtq_f32(b, a);
                m = vbslq_f32(sb, b, a);
                sc = vcgtq_f32(cc, m);
                m = vbslq_f32(sc, cc, m);
                sd = vcgtq_f32(d, m);
                /* the winner gets g, the others +0 (the AND leaves +0's bits) */
                top.val[0] = vreinterpretq_f32_u32(vbicq_u32(gu, vorrq_u32(vorrq_u32(sb, sc), sd)));
                top.val[1] = vreinterpretq_f32_u32(vbicq_u32(vandq_u32(gu, sb), vorrq_u32(sc, sd)));
                bot.val[0] = vreinterpretq_f32_u32(vbicq_u32(vandq_u32(gu, sc), sd));
                bot.val[1] = vreinterpretq_f32_u32(vandq_u32(gu, sd));
            }
            vst2q_f32(r0 + 2 * x, top);
            vst2q_f32(r1 + 2 * x, bot);
        }
        for (; x < ow; x++) {
            size_t base = (size_t)(2 * y) * w + 2 * x;
            float gv = grow[x];
            if (avg) {
                float qq = 0.25f * gv;
                dd[base] = qq; dd[base + 1] = qq; dd[base + w] = qq; dd[base + w + 1] = qq;
            } else {
                size_t best = base;
                dd[base] = dd[base + 1] = dd[base + w] = dd[base + w + 1] = 0.0f;
                if (s[base + 1] > s[best]) best = base + 1;
                if (s[base + w] > s[best]) best = base + w;
                if (s[base + w + 1] > s[best]) best = base + w + 1;
                dd[best] = gv;
            }
        }
        if (w & 1) { r0[w - 1] = 0.0f; r1[w - 1] = 0.0f; }
    }
    if (h & 1) memset(dd + (size_t)(h - 1) * w, 0, sizeof(float) * (size_t)w);
}
#endif

/* ---- the kernel tables ----------------------------------------------------------------------------*/
#if defined(NST__X86_AVX512)
/* The gathers index 16 filters 9 * cin floats apart in an int: fall back to the scalar transform past that. */
static void nst__wino_filters_avx512_entry(const nst__conv_plan *p, int d, float *u, int ob) {
    if ((size_t)p->cin * 9 * 16 < (size_t)INT_MAX) nst__wino_filters_avx512(p, d, u, ob);
    else nst__wino_filters(p, d, u, ob);
}
#endif

static const nst__conv_kernels nst__conv_table[] = {
    {NST_ARCH_SCALAR, "scalar", 6, 16, NST__WINO_NT, NST__WINO_CB, 1, 2, nst__wino_filters, nst__wino_in_scalar,
     nst__wino_gemm_scalar, nst__wino_out_scalar, 6, 64, 0, NULL, NULL, NULL, NULL, 0},
#if defined(NST__X86)
    {NST_ARCH_AVX2, "avx2 wino 6x16", 6, 8, 64, 48, 8, 2, nst__wino_filters_avx2, nst__wino_in_avx2,
     nst__wino_gemm_avx2, nst__wino_out_avx2, 6, 32, 3, NULL, nst__direct_rows_avx2, nst__pool_fwd_avx2, nst__pool_bwd_avx2, 0},
#endif
#if defined(NST__X86_AVX512)
    {NST_ARCH_AVX512, "avx512 wino 6x64", 6, 16, NST__WINO_NT, NST__WINO_CB, 16, 66, nst__wino_filters_avx512_entry,
     nst__wino_in_avx512, nst__wino_gemm_avx512, nst__wino_out_avx512, 6, 64, 0, nst__direct_avx512, NULL,
     nst__pool_fwd_avx512, nst__pool_bwd_avx512, 0},
    /* Zen 4 (nst__cpu_info.split512): the same Winograd kernels, conv1_1 by AVX2's packed-rows direct
     * kernel in both directions (nst__conv_kernels_for) */
    {NST_ARCH_AVX512, "avx512 wino 6x64, avx2 direct rows", 6, 16, NST__WINO_NT, NST__WINO_CB, 16, 66,
     nst__wino_filters_avx512_entry, nst__wino_in_avx512, nst__wino_gemm_avx512, nst__wino_out_avx512, 6, 32, 3, NULL,
     nst__direct_rows_avx2, nst__pool_fwd_avx512, nst__pool_bwd_avx512, 1},
#endif
#if defined(NST__NEON)
    /* NEON (32 q registers): a 6 x 16 GEMM tile, 24 accumulators, with u k-major inside each block of 6
     * rows (its filter transform and GEMM agree on that; nothing else reads u); 4 tiles per vector in
     * the transforms (vld4q / vst4q), which read up to 4 floats past the group. Chosen by instruction
     * count under qemu (../shared/tools/qemu-insn/count.sh 128): 8 x 12 would waste half the columns of
     * conv4's 16-tile layers at 128 px; u row-major made gcc spill accumulators. */
    {NST_ARCH_NEON, "neon wino 6x16", 6, 16, NST__WINO_NT, NST__WINO_CB, 4, 4, nst__wino_filters_neon, nst__wino_in_neon,
     nst__wino_gemm_neon, nst__wino_out_neon, 6, 64, 0, nst__direct_neon, NULL, nst__pool_fwd_neon, nst__pool_bwd_neon, 0},
#endif
};

/* The ISA's row for this CPU (split512 or not), else its first. Zen 4 (512-bit ops split), conv1_1 at
 * 512 px, `bench_conv --layer conv1_1` default against --arch avx2 alternated: the AVX-512 direct kernel
 * forward 8.4-12.3 ms on 2 threads against AVX2's packed rows' 6.7-7.1 (13.9-16.9 against 10.6-13.6 on
 * one), Winograd backward 8.9-10.0 against 7.4-8.7 for the direct rows (16.2-19.9 / 13.9-16.5). */
static const nst__conv_kernels *nst__conv_kernels_for(nst_arch a) {
    const nst__conv_kernels *first = NULL;
    size_t i;
    int split;
    if (a == NST_ARCH_DEFAULT) a = nst__cpu_arch();
    if ((int)a < NST_ARCH_SCALAR || (int)a > NST_ARCH_NEON || !nst__cpu()->has[a]) a = NST_ARCH_SCALAR;
    split = a == NST_ARCH_AVX512 && nst__cpu()->split512;
    for (i = 0; i < sizeof nst__conv_table / sizeof nst__conv_table[0]; i++)
        if (nst__conv_table[i].arch == a) {
            if (nst__conv_table[i].split512 == split) return &nst__conv_table[i];
            if (!first) first = &nst__conv_table[i];
        }
    return first ? first : &nst__conv_table[0];
}

static void nst__pool_forward_ex(float *out, const float *in, int c, int h, int w, int avg, int nthreads,
                                 nst_arch arch) {
    const nst__conv_kernels *k = nst__conv_kernels_for(arch);
    int ch;
    if (!k->pool_fwd) { nst__pool2x2_forward_ref(out, in, c, h, w, avg, nthreads); return; }
    nthreads = nst__resolve_threads(nthreads);
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (ch = 0; ch < c; ch++) k->pool_fwd(out, in, ch, h, w, avg);
}
static void nst__pool_backward_ex(float *din, const float *dout, const float *in, int c, int h, int w, int avg,
                                  int nthreads, nst_arch arch) {
    const nst__conv_kernels *k = nst__conv_kernels_for(arch);
    int ch;
    if (!k->pool_bwd) { nst__pool2x2_backward_ref(din, dout, in, c, h, w, avg, nthreads); return; }
    nthreads = nst__resolve_threads(nthreads);
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (ch = 0; ch < c; ch++) k->pool_bwd(din, dout, in, ch, h, w, avg);
}
static NST__UNUSED void nst__pool_forward(float *out, const float *in, int c, int h, int w, int avg, int nthreads) {
    nst__pool_forward_ex(out, in, c, h, w, avg, nthreads, nst__cpu_arch());
}
static NST__UNUSED void nst__pool_backward(float *din, const float *dout, const float *in, int c, int h, int w,
                                           int avg, int nthreads) {
    nst__pool_backward_ex(din, dout, in, c, h, w, avg, nthreads, nst__cpu_arch());
}

NSTDEF nst_status nst_conv3x3_forward(float *out, const float *in, const float *weight, const float *bias,
                                      int cin, int cout, int h, int w, int relu) {
    nst__conv_plan *p;
    nst_status st;
    if (!out || !in || !weight || cin <= 0 || cout <= 0 || h <= 0 || w <= 0)
        return nst__err(NST_ERR_ARGUMENT, "conv3x3_forward: bad arguments");
    if ((st = nst__conv_plan_create(weight, bias, cin, cout, &p)) != NST_OK) return st;
    st = nst__conv_forward(p, in, out, h, w, relu, 0, NULL);
    nst__conv_plan_free(p);
    return st;
}
NSTDEF nst_status nst_conv3x3_backward_data(float *din, const float *dout, const float *weight,
                                            int cin, int cout, int h, int w) {
    nst__conv_plan *p;
    nst_status st;
    if (!din || !dout || !weight || cin <= 0 || cout <= 0 || h <= 0 || w <= 0)
        return nst__err(NST_ERR_ARGUMENT, "conv3x3_backward_data: bad arguments");
    if ((st = nst__conv_plan_create(weight, NULL, cin, cout, &p)) != NST_OK) return st;
    st = nst__conv_backward_data(p, dout, din, h, w, 0, NULL);
    nst__conv_plan_free(p);
    return st;
}

/* =====================================================================================================
 * >>vgg >>loss >>lbfgs >>transfer
 * ===================================================================================================*/
/* Weights travel between the file readers and the model as a list of named f32 tensors:
 *   nst__tensor_list        canonical names "conv1_1.weight" [cout][cin][3][3] and "conv1_1.bias" [cout]
 *   nst__model_from_tensors(list, &model)  checks the VGG-19 topology and builds a model, freeing each tensor once copied
 *   nst__import_weights(bytes, n, &list)   (>>import) .pth zip/legacy, .caffemodel, .npy/.npz */
typedef struct nst__named_tensor {
    char    name[64];        /* canonical: "conv1_1.weight", "conv1_1.bias", ... */
    int     ndim;
    int64_t shape[4];
    float  *data;            /* nst__malloc'ed, contiguous row-major */
} nst__named_tensor;
typedef struct nst__tensor_list {
    nst__named_tensor *t;
    int n, cap;
    nst_input_convention conv;   /* the convention the source format implies */
    int has_conv;                /* 0: unknown, the caller must choose */
    char format[48];             /* "pytorch zip", "pytorch legacy", "caffe v1", "npz", ... */
} nst__tensor_list;
static nst_status nst__import_weights(const unsigned char *bytes, size_t n, nst__tensor_list *out);
static NST__UNUSED void nst__tensor_list_free(nst__tensor_list *l) {
    int i;
    if (!l) return;
    for (i = 0; i < l->n; i++) nst__free(l->t[i].data);
    nst__free(l->t);
    memset(l, 0, sizeof *l);
}

/* ---- VGG-19 layer table ------------------------------------------------------------------------
 * Configuration E: blocks of 2, 2, 4, 4, 4 convolutions, each followed by ReLU, each block by a pool. */
enum { NST__L_CONV = 0, NST__L_RELU = 1, NST__L_POOL = 2 };
static const char *const nst__layer_names[NST_VGG_LAYERS] = {
    "conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
    "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
    "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "conv3_4", "relu3_4", "pool3",
    "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "conv4_4", "relu4_4", "pool4",
    "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "conv5_4", "relu5_4", "pool5"};
static const int nst__vgg_cout[NST_VGG_CONVS] = {64, 64, 128, 128, 256, 256, 256, 256,
                                                 512, 512, 512, 512, 512, 512, 512, 512};
static const char *const nst__conv_names[NST_VGG_CONVS] = {
    "conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv3_4",
    "conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1", "conv5_2", "conv5_3", "conv5_4"};

static int nst__layer_type(int l) {
    const char *n = nst__layer_names[l];
    return n[0] == 'c' ? NST__L_CONV : n[0] == 'r' ? NST__L_RELU : NST__L_POOL;
}
/* The conv layer whose output a layer depends on last: conv i for convX_Y/reluX_Y, the block's last
 * conv for a pool. A layer is computable when this conv is present in the model. */
static int nst__layer_conv(int l) {
    int i, c = -1;
    for (i = 0; i <= l; i++)
        if (nst__layer_type(i) == NST__L_CONV) c++;
    return c;
}

NSTDEF const char *nst_layer_name(int index) {
    return index >= 0 && index < NST_VGG_LAYERS ? nst__layer_names[index] : NULL;
}
NSTDEF int nst_layer_index(const char *name) {
    int i;
    if (!name) return -1;
    for (i = 0; i < NST_VGG_LAYERS; i++)
        if (strcmp(name, nst__layer_names[i]) == 0) return i;
    return -1;
}

/* ---- the model ---------------------------------------------------------------------------------*/
struct nst_model {
    int nconv;                          /* conv layers present, from conv1_1 on */
    int cin[NST_VGG_CONVS], cout[NST_VGG_CONVS];
    float *w[NST_VGG_CONVS], *b[NST_VGG_CONVS];   /* into block */
    float *block;                       /* all weights and biases, one aligned allocation */
    size_t block_bytes;
    nst__conv_plan *plan[NST_VGG_CONVS];
    nst_input_convention conv;
    nst_pool pool;
    int is_random;
    int reflect;                        /* reflection padding instead of zero padding (the random model) */
};

NSTDEF void nst_model_free(nst_model *m) {
    int i;
    if (!m) return;
    for (i = 0; i < m->nconv; i++) nst__conv_plan_free(m->plan[i]);
    nst__aligned_free(m->block);
    nst__free(m);
}
NSTDEF int nst_model_convs(const nst_model *m) { return m ? m->nconv : 0; }
NSTDEF int nst_model_is_random(const nst_model *m) { return m ? m->is_random : 0; }
NSTDEF nst_pool nst_model_default_pool(const nst_model *m) { return m ? m->pool : NST_POOL_MAX; }
/* The random model's content and style losses are about 1000x smaller than real VGG-19's (1e3
 * against 1e6), so jcjohnson's TV weight of 1e-3, negligible there, blurs everything here. */
#define NST__RANDOM_TV_WEIGHT 1e-6f
NSTDEF float nst_model_default_tv_weight(const nst_model *m) { return m && m->is_random ? NST__RANDOM_TV_WEIGHT : 1e-3f; }
NSTDEF nst_input_convention nst_model_convention(const nst_model *m) { return m->conv; }
NSTDEF nst_status nst_model_conv(const nst_model *m, int i, const float **weight, const float **bias,
                                 int *cin, int *cout) {
    if (!m || i < 0 || i >= m->nconv) return nst__err(NST_ERR_ARGUMENT, "model: no conv layer %d", i);
    if (weight) *weight = m->w[i];
    if (bias) *bias = m->b[i];
    if (cin) *cin = m->cin[i];
    if (cout) *cout = m->cout[i];
    return NST_OK;
}

static nst_input_convention nst__caffe_convention(void) {
    nst_input_convention c;
    c.bgr = 1; c.scale = 255.0f;
    c.mean[0] = 103.939f; c.mean[1] = 116.779f; c.mean[2] = 123.68f;
    c.std[0] = c.std[1] = c.std[2] = 1.0f;
    return c;
}

static nst_status nst__check_convention(const nst_input_convention *c) {
    int i;
    if (!(c->scale > 0.0f) || !(c->scale < 1e6f))
        return nst__err(NST_ERR_FORMAT, "weights: invalid input scale %g", (double)c->scale);
    for (i = 0; i < 3; i++)
        if (!(c->std[i] > 0.0f) || !(fabsf(c->mean[i]) < 1e6f))
            return nst__err(NST_ERR_FORMAT, "weights: invalid input mean/std");
    return NST_OK;
}

/* Allocates the weight block for the given channel counts and builds the convolution plans later. */
static nst_status nst__model_alloc(int nconv, const int *cin, const int *cout, nst_model **out) {
    nst_model *m;
    size_t total = 0, off = 0;
    int i;
    *out = NULL;
    m = (nst_model *)nst__calloc(1, sizeof *m);
    if (!m) return nst__err(NST_ERR_NOMEM, "model: out of memory");
    m->nconv = nconv;
    for (i = 0; i < nconv; i++) {
        size_t wn = (size_t)cout[i] * cin[i] * 9, bn = (size_t)cout[i];
        m->cin[i] = cin[i]; m->cout[i] = cout[i];
        total += ((wn + 15) & ~(size_t)15) + ((bn + 15) & ~(size_t)15);   /* keep each tensor 64-byte aligned */
    }
    m->block_bytes = total * sizeof(float);
    m->block = (float *)nst__aligned_alloc(m->block_bytes);
    if (!m->block) { nst__free(m); return nst__err(NST_ERR_NOMEM, "model: out of memory for weights"); }
    for (i = 0; i < nconv; i++) {
        size_t wn = (size_t)cout[i] * cin[i] * 9, bn = (size_t)cout[i];
        m->w[i] = m->block + off; off += (wn + 15) & ~(size_t)15;
        m->b[i] = m->block + off; off += (bn + 15) & ~(size_t)15;
    }
    m->conv = nst__caffe_convention();
    m->pool = NST_POOL_MAX;
    *out = m;
    return NST_OK;
}

static nst_status nst__model_finish(nst_model *m) {
    int i;
    nst_status st;
    for (i = 0; i < m->nconv; i++)
        if ((st = nst__conv_plan_create(m->w[i], m->b[i], m->cin[i], m->cout[i], &m->plan[i])) != NST_OK)
            return st;
    return NST_OK;
}

/* Channel counts must chain (cin of layer i == cout of layer i-1, conv1_1 takes 3): that is the
 * VGG-19 topology. Widths other than VGG-19's (64..512) are accepted so small test models work;
 * nst__model_is_vgg19 tells the two apart. */
static nst_status nst__check_topology(int nconv, const int *cin, const int *cout) {
    int i;
    if (nconv < 1 || nconv > NST_VGG_CONVS) return nst__err(NST_ERR_FORMAT, "weights: %d conv layers", nconv);
    for (i = 0; i < nconv; i++) {
        int want_in = i == 0 ? 3 : cout[i - 1];
        if (cin[i] != want_in)
            return nst__err(NST_ERR_FORMAT, "weights: %s takes %d input channels, VGG-19 needs %d (the output of %s)",
                            nst__conv_names[i], cin[i], want_in, i ? nst__conv_names[i - 1] : "the RGB image");
        if (cout[i] < 1 || cout[i] > 4096)
            return nst__err(NST_ERR_FORMAT, "weights: %s has %d output channels", nst__conv_names[i], cout[i]);
    }
    return NST_OK;
}

static NST__UNUSED int nst__model_is_vgg19(const nst_model *m) {
    int i;
    for (i = 0; i < m->nconv; i++)
        if (m->cout[i] != nst__vgg_cout[i]) return 0;
    return 1;
}

static const nst__named_tensor *nst__find_tensor(const nst__tensor_list *l, const char *name) {
    int i;
    for (i = 0; i < l->n; i++)
        if (strcmp(l->t[i].name, name) == 0) return &l->t[i];
    return NULL;
}

/* Builds a model from canonical tensors: conv1_1 on, as many consecutive layers as are present. */
static nst_status nst__model_from_tensors(nst__tensor_list *l, nst_model **out) {
    int nconv = 0, cin[NST_VGG_CONVS], cout[NST_VGG_CONVS], i;
    nst_model *m;
    nst_status st;
    char name[80];
    *out = NULL;
    for (i = 0; i < NST_VGG_CONVS; i++) {
        const nst__named_tensor *w, *b;
        snprintf(name, sizeof name, "%s.weight", nst__conv_names[i]);
        w = nst__find_tensor(l, name);
        snprintf(name, sizeof name, "%s.bias", nst__conv_names[i]);
        b = nst__find_tensor(l, name);
        if (!w) break;
        if (w->ndim != 4 || w->shape[2] != 3 || w->shape[3] != 3 || w->shape[0] < 1 || w->shape[1] < 1 ||
            w->shape[0] > 4096 || w->shape[1] > 4096)
            return nst__err(NST_ERR_FORMAT, "weights: %s.weight must be [cout][cin][3][3]", nst__conv_names[i]);
        if (!b || b->ndim != 1 || b->shape[0] != w->shape[0])
            return nst__err(NST_ERR_FORMAT, "weights: %s.bias missing or not [%d]", nst__conv_names[i],
                            (int)w->shape[0]);
        cout[i] = (int)w->shape[0];
        cin[i] = (int)w->shape[1];
        nconv++;
    }
    if (nconv == 0) return nst__err(NST_ERR_FORMAT, "weights: no conv1_1 weight found");
    if ((st = nst__check_topology(nconv, cin, cout)) != NST_OK) return st;
    if ((st = nst__model_alloc(nconv, cin, cout, &m)) != NST_OK) return st;
    /* each tensor is freed once copied, so the list and the model never both hold everything */
    for (i = 0; i < nconv; i++) {
        nst__named_tensor *t;
        snprintf(name, sizeof name, "%s.weight", nst__conv_names[i]);
        t = (nst__named_tensor *)nst__find_tensor(l, name);
        memcpy(m->w[i], t->data, sizeof(float) * (size_t)cout[i] * cin[i] * 9);
        nst__free(t->data); t->data = NULL;
        snprintf(name, sizeof name, "%s.bias", nst__conv_names[i]);
        t = (nst__named_tensor *)nst__find_tensor(l, name);
        memcpy(m->b[i], t->data, sizeof(float) * (size_t)cout[i]);
        nst__free(t->data); t->data = NULL;
    }
    if (l->has_conv) {
        if ((st = nst__check_convention(&l->conv)) != NST_OK) { nst_model_free(m); return st; }
        m->conv = l->conv;
    }
    if ((st = nst__model_finish(m)) != NST_OK) { nst_model_free(m); return st; }
    *out = m;
    return NST_OK;
}

/* ---- .nstw: our weight file --------------------------------------------------------------------
 * Little-endian. A 64-byte header, a table of 96-byte tensor entries, then tensor data at 64-byte
 * aligned offsets, so the file can be used in place after one fread or mmap.
 *   header: 0 "NSTW" | 4 u32 version (1) | 8 u32 header+table bytes | 12 u32 tensor count | 16 u32 flags
 *           (bit 0: random model) | 20 u32 bgr | 24 f32 scale | 28 f32 mean[3] | 40 f32 std[3] |
 *           52 u32 default pool (1 max, 2 avg) | 56 u32 CRC-32 of header+table with this field zero | 60 0
 *   entry:  0 name[48] NUL-padded | 48 u32 dtype (1 f32, 2 f16) | 52 u32 ndim | 56 u32 shape[4] |
 *           72 u64 offset | 80 u64 bytes | 88 u32 CRC-32 of the data | 92 0 */
#define NST__NSTW_HEADER 64
#define NST__NSTW_ENTRY 96
#define NST__NSTW_MAX_TENSORS 64

/* Where tensor data comes from: the bytes in memory, or (nst_model_load) the open file, so that loading
 * never holds the file, the parsed tensors and the model at once: only the model and one tensor. */
typedef struct nst__nstw_src {
    const unsigned char *mem;   /* whole file in memory, or NULL */
#ifndef NST_NO_STDIO
    FILE *f;
#endif
} nst__nstw_src;

static int nst__nstw_read(const nst__nstw_src *s, uint64_t off, void *dst, size_t bytes) {
    if (s->mem) { memcpy(dst, s->mem + off, bytes); return 1; }
#ifndef NST_NO_STDIO
    /* offsets were checked against the file size: they fit in a long on every file we accept */
    return fseek(s->f, (long)off, SEEK_SET) == 0 && fread(dst, 1, bytes, s->f) == bytes;
#else
    return 0;
#endif
}

/* head: the header and table (hsize bytes, at least the first NST__NSTW_HEADER of n when fewer);
 * n: the whole file's size, against which every tensor's offset and size are checked. */
static nst_status nst__nstw_parse(const unsigned char *head, size_t head_n, uint64_t n, const nst__nstw_src *src,
                                  nst_model **out) {
    const unsigned char *p = head;
    uint32_t version, hsize, count, flags, crc, i;
    nst__tensor_list list;
    nst_status st = NST_OK;
    unsigned char hdr_copy[NST__NSTW_HEADER];
    *out = NULL;
    memset(&list, 0, sizeof list);
    if (head_n < NST__NSTW_HEADER || memcmp(p, "NSTW", 4) != 0)
        return nst__err(NST_ERR_FORMAT, "nstw: not an .nstw file (bad magic)");
    version = nst__rd32le(p + 4);
    hsize = nst__rd32le(p + 8);
    count = nst__rd32le(p + 12);
    flags = nst__rd32le(p + 16);
    if (version != 1) return nst__err(NST_ERR_UNSUPPORTED, "nstw: version %u (this library reads 1)", version);
    if (count == 0 || count > NST__NSTW_MAX_TENSORS || hsize != NST__NSTW_HEADER + NST__NSTW_ENTRY * count)
        return nst__err(NST_ERR_FORMAT, "nstw: bad tensor count %u / header size %u", count, hsize);
    if (hsize > n || hsize > head_n)
        return nst__err(NST_ERR_FORMAT, "nstw: truncated (%lu bytes, header needs %u)", (unsigned long)n, hsize);
    memcpy(hdr_copy, p, NST__NSTW_HEADER);
    memset(hdr_copy + 56, 0, 4);
    crc = nst__crc32(nst__crc32(0, hdr_copy, NST__NSTW_HEADER), p + NST__NSTW_HEADER, hsize - NST__NSTW_HEADER);
    if (crc != nst__rd32le(p + 56)) return nst__err(NST_ERR_FORMAT, "nstw: header checksum mismatch (corrupted file)");
    list.has_conv = 1;
    list.conv.bgr = nst__rd32le(p + 20) != 0;
    list.conv.scale = nst__f32_from_bits(nst__rd32le(p + 24));
    for (i = 0; i < 3; i++) {
        list.conv.mean[i] = nst__f32_from_bits(nst__rd32le(p + 28 + 4 * i));
        list.conv.std[i] = nst__f32_from_bits(nst__rd32le(p + 40 + 4 * i));
    }
    if ((st = nst__check_convention(&list.conv)) != NST_OK) return st;
    list.t = (nst__named_tensor *)nst__calloc(count, sizeof *list.t);
    if (!list.t) return nst__err(NST_ERR_NOMEM, "nstw: out of memory");
    list.cap = (int)count;
    for (i = 0; i < count && st == NST_OK; i++) {
        const unsigned char *e = p + NST__NSTW_HEADER + (size_t)i * NST__NSTW_ENTRY;
        nst__named_tensor *t = &list.t[list.n];
        uint32_t dtype = nst__rd32le(e + 48), ndim = nst__rd32le(e + 52), j;
        uint64_t off = nst__rd64le(e + 72), bytes = nst__rd64le(e + 80), elems = 1;
        size_t esize = dtype == 1 ? 4 : 2;
        if (memchr(e, 0, 48) == NULL) { st = nst__err(NST_ERR_FORMAT, "nstw: tensor %u has no name", i); break; }
        memcpy(t->name, e, 48);
        if ((dtype != 1 && dtype != 2) || ndim < 1 || ndim > 4) {
            st = nst__err(NST_ERR_FORMAT, "nstw: tensor '%s' has dtype %u, %u dims", t->name, dtype, ndim);
            break;
        }
        t->ndim = (int)ndim;
        for (j = 0; j < ndim; j++) {
            uint32_t d = nst__rd32le(e + 56 + 4 * j);
            if (d == 0 || d > (1u << 24)) { st = nst__err(NST_ERR_FORMAT, "nstw: tensor '%s' has dimension %u", t->name, d); break; }
            t->shape[j] = d;
            elems *= d;
            if (elems > ((uint64_t)1 << 34)) { st = nst__err(NST_ERR_FORMAT, "nstw: tensor '%s' is too large", t->name); break; }
        }
        if (st != NST_OK) break;
        if (bytes != elems * esize || (off & 63) || off < hsize || off > n || bytes > n - off ||
            elems > SIZE_MAX / sizeof(float)) {
            st = nst__err(NST_ERR_FORMAT, "nstw: tensor '%s' data is out of bounds or the file is truncated", t->name);
            break;
        }
        t->data = (float *)nst__malloc((size_t)elems * sizeof(float));
        if (!t->data) { st = nst__err(NST_ERR_NOMEM, "nstw: out of memory"); break; }
        list.n++;
        {
            /* The raw bytes land in the tensor's own buffer (f16: in its upper half) and are converted in
             * place: reading half k (bytes 2*elems + 2k) happens before float k (bytes 4k..4k+3, below
             * 2*elems + 2k + 2) is written, so nothing unread is overwritten. */
            unsigned char *raw = (unsigned char *)t->data + (dtype == 1 ? 0 : (size_t)elems * 2);
            size_t k;
            if (!nst__nstw_read(src, off, raw, (size_t)bytes)) {
                st = nst__err(NST_ERR_IO, "nstw: read error in tensor '%s'", t->name);
                break;
            }
            if (nst__crc32(0, raw, (size_t)bytes) != nst__rd32le(e + 88)) {
                st = nst__err(NST_ERR_FORMAT, "nstw: checksum mismatch in tensor '%s' (corrupted file)", t->name);
                break;
            }
            if (dtype == 1)
                for (k = 0; k < elems; k++) t->data[k] = nst__f32_from_bits(nst__rd32le(raw + 4 * k));
            else
                for (k = 0; k < elems; k++) t->data[k] = nst__half_to_float(nst__rd16le(raw + 2 * k));
        }
    }
    if (st == NST_OK) st = nst__model_from_tensors(&list, out);
    if (st == NST_OK) {
        uint32_t pool = nst__rd32le(p + 52);
        (*out)->is_random = (int)(flags & 1);
        (*out)->reflect = (*out)->is_random;
        (*out)->pool = pool == 2 ? NST_POOL_AVG : NST_POOL_MAX;
    }
    nst__tensor_list_free(&list);
    return st;
}

/* Serialises a model to .nstw bytes (f32, or f16 with half). */
static NST__UNUSED nst_status nst__nstw_write(const nst_model *m, int half, nst__buf *b) {
    uint32_t count = (uint32_t)(2 * m->nconv), i;
    size_t hsize = NST__NSTW_HEADER + NST__NSTW_ENTRY * (size_t)count, off;
    unsigned char *p;
    uint32_t crc;
    memset(b, 0, sizeof *b);
    if (!nst__buf_reserve(b, hsize)) return nst__err(NST_ERR_NOMEM, "nstw: out of memory");
    memset(b->data, 0, hsize);
    b->len = hsize;
    off = (hsize + 63) & ~(size_t)63;
    for (i = 0; i < count; i++) {
        int li = (int)i / 2, isb = (int)i & 1;
        const float *src = isb ? m->b[li] : m->w[li];
        size_t elems = isb ? (size_t)m->cout[li] : (size_t)m->cout[li] * m->cin[li] * 9, k;
        size_t bytes = elems * (half ? 2 : 4);
        unsigned char *e, *d;
        while (b->len < off) nst__buf_byte(b, 0);
        if (!nst__buf_reserve(b, bytes)) return nst__err(NST_ERR_NOMEM, "nstw: out of memory");
        d = b->data + b->len;
        for (k = 0; k < elems; k++) {
            if (half) { uint16_t h = nst__float_to_half(src[k]); d[2 * k] = (unsigned char)h; d[2 * k + 1] = (unsigned char)(h >> 8); }
            else nst__wr32le(d + 4 * k, nst__bits_from_f32(src[k]));
        }
        b->len += bytes;
        e = b->data + NST__NSTW_HEADER + (size_t)i * NST__NSTW_ENTRY;
        snprintf((char *)e, 48, "%s.%s", nst__conv_names[li], isb ? "bias" : "weight");
        nst__wr32le(e + 48, half ? 2u : 1u);
        if (isb) {
            nst__wr32le(e + 52, 1); nst__wr32le(e + 56, (uint32_t)m->cout[li]);
        } else {
            nst__wr32le(e + 52, 4); nst__wr32le(e + 56, (uint32_t)m->cout[li]);
            nst__wr32le(e + 60, (uint32_t)m->cin[li]); nst__wr32le(e + 64, 3); nst__wr32le(e + 68, 3);
        }
        nst__wr64le(e + 72, off);
        nst__wr64le(e + 80, bytes);
        nst__wr32le(e + 88, nst__crc32(0, d, bytes));
        off = (b->len + 63) & ~(size_t)63;
    }
    if (b->failed) { nst__buf_free(b); return nst__err(NST_ERR_NOMEM, "nstw: out of memory"); }
    p = b->data;
    memcpy(p, "NSTW", 4);
    nst__wr32le(p + 4, 1);
    nst__wr32le(p + 8, (uint32_t)hsize);
    nst__wr32le(p + 12, count);
    nst__wr32le(p + 16, m->is_random ? 1u : 0u);
    nst__wr32le(p + 20, m->conv.bgr ? 1u : 0u);
    nst__wr32le(p + 24, nst__bits_from_f32(m->conv.scale));
    for (i = 0; i < 3; i++) {
        nst__wr32le(p + 28 + 4 * i, nst__bits_from_f32(m->conv.mean[i]));
        nst__wr32le(p + 40 + 4 * i, nst__bits_from_f32(m->conv.std[i]));
    }
    nst__wr32le(p + 52, m->pool == NST_POOL_AVG ? 2u : 1u);
    crc = nst__crc32(0, p, hsize);
    nst__wr32le(p + 56, crc);
    return NST_OK;
}

NSTDEF nst_status nst_model_load_memory(const void *bytes, size_t n, nst_model **out) {
    const unsigned char *p = (const unsigned char *)bytes;
    nst__tensor_list list;
    nst_status st;
    if (!out) return nst__err(NST_ERR_ARGUMENT, "model: NULL output");
    *out = NULL;
    if (!p && n) return nst__err(NST_ERR_ARGUMENT, "model: NULL bytes");
    if (n >= 4 && memcmp(p, "NSTW", 4) == 0) {
        nst__nstw_src src;
        memset(&src, 0, sizeof src);
        src.mem = p;
        return nst__nstw_parse(p, n, n, &src, out);
    }
    memset(&list, 0, sizeof list);
    if ((st = nst__import_weights(p, n, &list)) != NST_OK) { nst__tensor_list_free(&list); return st; }
    if (!list.has_conv) {
        st = nst__err(NST_ERR_FORMAT, "the %s file does not say how its network expects pixels (channel "
                      "order, scale, mean): convert it with nst-convert and --bgr or --rgb, --scale, --mean, --std",
                      list.format[0] ? list.format : "weight");
        nst__tensor_list_free(&list);
        return st;
    }
    st = nst__model_from_tensors(&list, out);
    nst__tensor_list_free(&list);
    return st;
}

#ifndef NST_NO_STDIO
NSTDEF nst_status nst_model_load(const char *path, nst_model **out) {
    unsigned char *bytes, head[NST__NSTW_HEADER + NST__NSTW_ENTRY * NST__NSTW_MAX_TENSORS];
    size_t n, head_n;
    nst_status st;
    FILE *f;
    long len;
    if (!path || !out) return nst__err(NST_ERR_ARGUMENT, "model: NULL argument");
    *out = NULL;
    if (nst__is_directory(path)) return nst__err(NST_ERR_IO, "'%s' is a directory, not a weight file", path);
    /* .nstw is read tensor by tensor from the file; other formats are parsed from memory */
    f = fopen(path, "rb");
    if (!f) return nst__err(NST_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    head_n = fread(head, 1, sizeof head, f);
    if (head_n >= 4 && memcmp(head, "NSTW", 4) == 0) {
        nst__nstw_src src;
        if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0) {
            fclose(f);
            return nst__err(NST_ERR_IO, "cannot determine the size of '%s'", path);
        }
        memset(&src, 0, sizeof src);
        src.f = f;
        st = nst__nstw_parse(head, head_n, (uint64_t)len, &src, out);
        fclose(f);
    } else {
        fclose(f);
        if ((st = nst__read_file(path, sizeof(size_t) > 4 ? ((size_t)1 << 36) : ((size_t)1 << 31), &bytes, &n)) != NST_OK)
            return st;
        st = nst_model_load_memory(bytes, n, out);
        nst__free(bytes);
    }
    if (st != NST_OK) {
        char msg[sizeof nst__errbuf];
        snprintf(msg, sizeof msg, "%s", nst__errbuf);
        return nst__err(st, "'%s': %s", path, msg);
    }
    return NST_OK;
}

NSTDEF nst_status nst_model_save(const nst_model *m, const char *path, int half) {
    nst__buf b;
    nst_status st;
    if (!m || !path) return nst__err(NST_ERR_ARGUMENT, "model: NULL argument");
    if ((st = nst__nstw_write(m, half, &b)) != NST_OK) return st;
    st = nst__write_file_atomic(path, b.data, b.len);
    nst__buf_free(&b);
    return st;
}
#endif

/* ---- reflection padding for the random model ------------------------------------------------------
 * With zero padding a random network sees a dark edge (its post-ReLU activations average 10, the
 * padding 0) and paints a frame around every output. Reflection padding gives border pixels
 * neighbours like the interior's, but which reflection matters for the gradient. PyTorch's
 * ReflectionPad2d (row -1 is row 1) reads the edge row 2 times per 3x3 layer and its neighbour 4 times
 * (the interior's rows: 3); over 16 layers the edge pixels got 0.6 of the interior's gradient and
 * their neighbours 1.2, which left a rim of initial noise around every output. Replicating the edge
 * (row -1 is row 0) evens the style gradient but, for smooth gradients, adds up at the edge: the content
 * gradient there was 2.4x the interior's, fading over 10 px. The pad is therefore the blend
 * 0.7 * row 0 + 0.3 * row 1 (NST__PAD_EDGE; separable, so a corner blends 4 pixels), which measured
 * (bench/bench_border.c: 192 px noise images) 0.8-1.25 of the interior's gradient at every
 * distance for both losses; test_features checks the edge rows.
 * Forward, the Winograd engine pads with the blend itself (nst__conv_forward_pad, NST__CONV_PAD_BLEND):
 * it copies the rows of every border tile anyway (nst__wino_rows), so the blend costs only its few
 * multiply-adds (+1.0% instructions on a 64-channel forward at 128 px, callgrind, AVX2; not measurable
 * in time) and bias and ReLU fuse as with zero padding. Direct convolution (conv1_1) and the backward pass pad
 * with zeros, and the VGG code corrects the border outputs afterwards, in one of two ways
 * (bench/bench_reflect.c times what runs per layer against the zero-padded convolution):
 * - the fix (nst__reflect_fix_forward/backward): only the taps that fall outside the image change,
 *   and on each side of the border those are 3 of the 9 (top: ky = 0; left: kx = 0, ...). Per side,
 *   one GEMM C[cout][len] += W_side[cout][3 cin] B[3 cin][len] adds them, B holding the padded rows
 *   (columns) under those taps; forward copies the side's weights out of W once per call (one sweep, the
 *   4 sides). A corner's outside taps are split between its row and its column, never counted twice.
 *   Backward is the transpose per side, dB = W_side^T dC, folded back onto the pixels each pad blends,
 *   computed as dB^T = dC^T W_side in channel chunks (see nst__reflect_fix_backward).
 *   Cost 2 x 3 cin cout 2(H+W) multiply-adds per direction: 1/3 of multiplying the 9 taps of every
 *   border pixel, which cost 15% of the convolutions at 512 px and 30% at 64 px.
 * - the border (nst__reflect_border_forward, forward only): the whole pre-activation of every border
 *   pixel, 9 taps, recomputed by one GEMM with bias and ReLU and written over what the engine made.
 *   3x the fix's multiply-adds, but the engine can then fuse its ReLU: for the early layers (few input
 *   channels, large maps) that saves a pass over the map worth more than the GEMM.
 * Measured (bench_reflect --size 512 --threads 1, Zen 3, AVX2, CPU time): the backward fix is what is
 * left, 54-69 ms per evaluation (0.6..10 ms per layer, 3.4% of the 2.05 s of zero-padded convolutions); the
 * padded forward is the zero-padded one within the noise (+-10% per layer on the shared machine). The
 * chunked backward (one parallel region, threaded scatter) costs 64-66 ms of CPU there, 10-20% more than
 * the whole-layer one (54-55 ms, same run; its weights are read in 2 KB runs, not one stream), for less
 * wall time on 2 threads: the whole-layer fix scattered on one thread (~10 ms) after 2 regions (its
 * "fix wall" at --threads 2 on the shared machine, overloaded by other jobs: 200-208 ms, chunked 133-141;
 * quiet, it should be about half the chunked CPU time). Of the 2.5 GFLOP of side GEMMs at 512 px, ~30 ms
 * of one thread; the gathers and scatters (~15 ms) touch a cache line per row of every channel's border
 * columns. Since, the chunk's weights go straight into the micro-kernel's panels and dC is packed once
 * per layer (nst__fix_side_gemm): the same bits (byte-compared at 256 px, every layer), the fix at 512 px 53.3 ms against 64.8 (per-layer best
 * of 3 alternated bench_reflect runs, 1 thread, CPU time; conv4_x 7.5-7.6 ms against 9.2-10.2, conv1_1
 * 0.78 against 0.61: its 3 channels padded to the kernel's 16 columns; --threads 2 on the host loaded
 * by other jobs, fix wall 113-116 ms against 137-168). At conv4_2 (perf) the kernel is then ~57% of the
 * fix, the weights' copy ~17%, the scatter ~11%, packing dC's columns ~8%; the copy would go with side
 * panels kept per model (8 cin cout floats per layer, ~36 MiB for conv4_1..conv5_1), not tried.
 * The transpose in the engine (the backward-data convolution evaluated on the (H+2) x (W+2) grid, the
 * pad rows and columns folded back 0.7/0.3) was not built: its extra tiles cost +1.6% of a layer's
 * backward at 512 px, 3.1% at 256, 6.3% at 128, 12.9% at 64, 26.6% at 32; with the per-layer times
 * above that is 1.6 ms (conv1_2, fix 3.4) .. 16.5 ms (conv5_1, fix 6.3), ~80 ms in all: no gain.
 * Real VGG-19 weights keep zero padding: they were trained with it. */
/* NST__PAD_EDGE is defined with the engine's padding modes (>>conv, nst__wino_rows). */
/* Where outside index i (of 0..n-1) reads: src[0] with weight wt[0] plus src[1] with wt[1]. */
static void nst__pad_source(int i, int n, int *src, float *wt) {
    if (i >= 0 && i < n) { src[0] = src[1] = i; wt[0] = 1.0f; wt[1] = 0.0f; return; }
    src[0] = i < 0 ? 0 : n - 1;
    src[1] = n < 2 ? src[0] : i < 0 ? 1 : n - 2;
    wt[0] = NST__PAD_EDGE; wt[1] = 1.0f - NST__PAD_EDGE;
}
/* The padded plane at (y, x), y in [-1, h], x in [-1, w]. */
static float nst__pad_at(const float *p, int h, int w, int y, int x) {
    int ry[2], rx[2];
    float wy[2], wx[2];
    nst__pad_source(y, h, ry, wy);
    nst__pad_source(x, w, rx, wx);
    return wy[0] * (wx[0] * p[(size_t)ry[0] * w + rx[0]] + wx[1] * p[(size_t)ry[0] * w + rx[1]]) +
           wy[1] * (wx[0] * p[(size_t)ry[1] * w + rx[0]] + wx[1] * p[(size_t)ry[1] * w + rx[1]]);
}
static size_t nst__border_count(int h, int w) {
    return h <= 2 || w <= 2 ? (size_t)h * w : (size_t)2 * w + (size_t)2 * (h - 2);
}
/* Border pixel k in a fixed order: row 0, row h-1, then columns 0 and w-1 of the rows between. */
static size_t nst__border_pixel(size_t k, int h, int w, int *y, int *x) {
    if (h <= 2 || w <= 2) { *y = (int)(k / (size_t)w); *x = (int)(k % (size_t)w); }
    else if (k < (size_t)w) { *y = 0; *x = (int)k; }
    else if (k < (size_t)2 * w) { *y = h - 1; *x = (int)(k - w); }
    else { k -= (size_t)2 * w; *y = 1 + (int)(k / 2); *x = (k & 1) ? w - 1 : 0; }
    return (size_t)*y * w + *x;
}
/* The scratch either correction needs (the larger of the two). */
static size_t nst__fix_thread_floats(int cin, int cout, int h, int w);
static size_t nst__fix_dc_floats(int cout, int h, int w);
static size_t nst__reflect_scratch_floats(int cin, int cout, int h, int w, int nthreads) {
    size_t nb = nst__border_count(h, w), len = (size_t)NST__MAX(h, w);
    size_t border = nb * ((size_t)9 * cin + cout), fix = (size_t)12 * cin * cout + 4 * len * ((size_t)3 * cin + cout);
    size_t bwd = nst__fix_dc_floats(cout, h, w) + (size_t)nst__resolve_threads(nthreads) * nst__fix_thread_floats(cin, cout, h, w);
    return NST__MAX(NST__MAX(border, fix), bwd);
}
/* Whether the border path (and the engine's fused ReLU) beats the fix plus a ReLU pass for a layer:
 * the border costs 6 cin cout nb more multiply-adds than the fix; a pass over an element of the map
 * (read, ReLU, mask bit, write) costs about 24 of the GEMM's multiply-adds. */
static int nst__reflect_border_pays(int cin, int h, int w) {
    return (double)cin * (double)nst__border_count(h, w) * 6.0 < 24.0 * (double)h * w;
}

/* Side s of the border (0 top, 1 bottom, 2 left, 3 right): its length. Its j-th outside tap (ky*3 + kx)
 * is j (top), 6 + j (bottom), 3j (left), 3j + 2 (right). */
static int nst__side_len(int s, int h, int w) { return s < 2 ? w : h; }

/* B[(i*3 + j)][p] of side s for channels [c0, c1): the padded value under outside tap j of the side's
 * pixel p; zero where a column's tap falls outside vertically too (the row's GEMM adds that one). */
static void nst__side_gather(float *B, const float *img, int c0, int c1, int h, int w, int s) {
    int len = nst__side_len(s, h, w), i, p, src[2];
    size_t hw = (size_t)h * w;
    float wt[2];
    for (i = c0; i < c1; i++) {
        const float *pl = img + (size_t)i * hw;
        float *b0 = B + (size_t)i * 3 * len, *b1 = b0 + len, *b2 = b1 + len;
        if (s < 2) {   /* the padded row above (below) the image, shifted by kx - 1 */
            const float *r0, *r1;
            nst__pad_source(s == 0 ? -1 : h, h, src, wt);
            r0 = pl + (size_t)src[0] * w; r1 = pl + (size_t)src[1] * w;
            for (p = 0; p < w; p++) b1[p] = wt[0] * r0[p] + wt[1] * r1[p];
            nst__pad_source(-1, w, src, wt);
            b0[0] = wt[0] * b1[src[0]] + wt[1] * b1[src[1]];
            memcpy(b0 + 1, b1, sizeof(float) * (size_t)(w - 1));
            nst__pad_source(w, w, src, wt);
            b2[w - 1] = wt[0] * b1[src[0]] + wt[1] * b1[src[1]];
            memcpy(b2, b1 + 1, sizeof(float) * (size_t)(w - 1));
        } else {       /* the padded column left (right) of the image, shifted by ky - 1 */
            nst__pad_source(s == 2 ? -1 : w, w, src, wt);
            for (p = 0; p < h; p++) b1[p] = wt[0] * pl[(size_t)p * w + src[0]] + wt[1] * pl[(size_t)p * w + src[1]];
            b0[0] = 0.0f;
            memcpy(b0 + 1, b1, sizeof(float) * (size_t)(h - 1));
            b2[h - 1] = 0.0f;
            memcpy(b2, b1 + 1, sizeof(float) * (size_t)(h - 1));
        }
    }
}
/* The four sides' weights, A[s][cout][3 cin] (column i*3 + j: side s's outside tap j of channel i),
 * rows [o0, o1) of each. */
static void nst__side_weights(float *A, const float *W, int cin, int cout, int o0, int o1) {
    size_t side = (size_t)cout * 3 * cin;
    int o, i;
    for (o = o0; o < o1; o++) {   /* taps spelled out (a tap function per element ran 4x slower) */
        const float *q = W + (size_t)o * 9 * cin;
        float *t = A + (size_t)o * 3 * cin, *b = t + side, *l = b + side, *r = l + side;
        for (i = 0; i < cin; i++, q += 9, t += 3, b += 3, l += 3, r += 3) {
            t[0] = q[0]; t[1] = q[1]; t[2] = q[2];
            b[0] = q[6]; b[1] = q[7]; b[2] = q[8];
            l[0] = q[0]; l[1] = q[3]; l[2] = q[6];
            r[0] = q[2]; r[1] = q[5]; r[2] = q[8];
        }
    }
}
/* [lo, hi) of n for thread t of nt. */
static void nst__split(int n, int t, int nt, int *lo, int *hi) {
    *lo = (int)((long)n * t / nt);
    *hi = (int)((long)n * (t + 1) / nt);
}
/* The forward fix's scratch: A[4][cout][3 cin], then per side B[3 cin][len] and C[cout][len] (len =
 * max(h, w)). Two parallel regions per call (gather, the four side GEMMs one per thread): it runs only
 * where the engine cannot pad (conv1_1 when the border path does not pay, and the calibration). */
static void nst__fix_scratch(float *scratch, int cin, int cout, int h, int w, float **A, float **B, float **C) {
    size_t len = (size_t)NST__MAX(h, w);
    *A = scratch;
    *B = *A + (size_t)12 * cin * cout;
    *C = *B + (size_t)12 * cin * len;
}
/* out (the zero-padded convolution of in, before ReLU) += the outside taps' contribution. */
static nst_status nst__reflect_fix_forward(const nst_model *m, int ci, const float *in, float *out, int h, int w,
                                           int nthreads, float *scratch) {
    int cin = m->cin[ci], cout = m->cout[ci], nt = NST__MAX(1, nthreads), t, s, forced = nst__arch_forced;
    size_t hw = (size_t)h * w, side = (size_t)cout * 3 * cin, len = (size_t)NST__MAX(h, w);
    float *A, *B, *C;
    nst_status st = NST_OK, ss[4];
    long o;
    nst__fix_scratch(scratch, cin, cout, h, w, &A, &B, &C);
    (void)t; (void)s;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static)
#endif
    for (t = 0; t < nt; t++) {
        int a, b, k;
        nst__split(cout, t, nt, &a, &b);
        nst__side_weights(A, m->w[ci], cin, cout, a, b);
        nst__split(cin, t, nt, &a, &b);
        for (k = 0; k < 4; k++) nst__side_gather(B + (size_t)k * 3 * cin * len, in, a, b, h, w, k);
    }
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static)
#endif
    for (s = 0; s < 4; s++) {
        int n = nst__side_len(s, h, w);
        ss[s] = nst__sgemm_worker(forced, 0, 0, cout, n, 3 * cin, 1.0f, A + (size_t)s * side, 3 * cin,
                              B + (size_t)s * 3 * cin * len, n, 0.0f, C + (size_t)s * cout * len, n);
    }
    for (s = 0; s < 4; s++) if (ss[s] != NST_OK) st = ss[s];
    if (st != NST_OK) return st;
    for (o = 0; o < cout; o++) {   /* 4 (H + W) adds per channel: not worth a parallel region */
        float *po = out + (size_t)o * hw;
        const float *c0 = C + (size_t)o * w, *c1 = C + (size_t)cout * len + (size_t)o * w,
                    *c2 = C + (size_t)2 * cout * len + (size_t)o * h, *c3 = C + (size_t)3 * cout * len + (size_t)o * h;
        int p;
        for (p = 0; p < w; p++) po[p] += c0[p];
        for (p = 0; p < w; p++) po[(size_t)(h - 1) * w + p] += c1[p];
        for (p = 0; p < h; p++) po[(size_t)p * w] += c2[p];
        for (p = 0; p < h; p++) po[(size_t)p * w + w - 1] += c3[p];
    }
    return NST_OK;
}
/* The backward fix works on chunks of input channels, cin / 8 of them, at least 16 (the GEMM's columns)
 * and at most 64 (their weights, 8 cout cc floats, in L2/L3): 4 chunks or more at 64..128 channels for
 * the threads to share, then cut to a whole number of the kernel's NR columns where it has more (NEON's
 * 12: 64 -> 60; AVX-512's 48: 64 -> 48; AVX2's 16 divides them all), so only a layer's last chunk pads
 * (NEON 64 -> 72 columns in every chunk was +12.5% FMAs and +0.9% instructions per 128 px evaluation,
 * bench/neon_profile.sh). The chunks depend on cin and the kernel alone, so the bits do not depend on the
 * thread count. Per chunk, the weights of its channels are copied out of W straight into the micro-kernel's B
 * panels, one set per outside tap (nst__fix_tap_panels): W is read from memory once and the copy never
 * goes out to it (the whole layer's, 12 cin cout floats, went to memory and back: 12 MB per 512 x 512
 * layer). */
static int nst__fix_chunk(int cin) { return NST__MIN(cin, NST__MAX(16, NST__MIN(64, cin / 8))); }
/* The outside taps around the 3 x 3 window in ring order, the first one again at the end: each side's 3
 * taps are 3 neighbours, top from ring position 0 (taps 0 1 2), right from 2 (2 5 8), bottom from 4
 * (8 7 6), left from 6 (6 3 0). Bottom and left run backwards. */
static const unsigned char nst__ring_tap[9] = {0, 1, 2, 5, 8, 7, 6, 3, 0};
static const unsigned char nst__ring_start[4] = {0, 4, 6, 2};   /* of side s (0 top, 1 bottom, 2 left, 3 right) */
static size_t nst__fix_ru(size_t x, size_t r) { return (x + r - 1) / r * r; }
/* The largest MR - 1 (nr = 0) or NR - 1 (nr = 1) of nst__gemm_kernels: the scratch is sized for any kernel,
 * whichever ISA runs (x rounded up to a multiple of MR is at most x + MR - 1). */
static int nst__fix_pad_max(int nr) {
    int mx = 0;
    size_t i;
    for (i = 0; i < sizeof nst__gemm_kernels / sizeof nst__gemm_kernels[0]; i++)
        mx = NST__MAX(mx, (nr ? nst__gemm_kernels[i].nr : nst__gemm_kernels[i].mr) - 1);
    return mx;
}
/* The four sides' output gradient, packed as the kernel's A panels (ahead of the threads' scratch). */
static size_t nst__fix_dc_floats(int cout, int h, int w) {
    return ((size_t)2 * ((size_t)h + w + 2 * nst__fix_pad_max(0)) * cout + 15) & ~(size_t)15;
}
/* Per thread floats of the backward fix: the chunk's tap panels [8][cout][cc padded to NR], one side's
 * product [len][3 cc padded] and the gradient along one padded line. */
static size_t nst__fix_thread_floats(int cin, int cout, int h, int w) {
    size_t ccp = (size_t)nst__fix_chunk(cin) + nst__fix_pad_max(1), len = (size_t)NST__MAX(h, w);
    return ((size_t)8 * cout * ccp + len * 3 * ccp + len + 2 + 15) & ~(size_t)15;
}
/* Row o of every tap panel (see nst__fix_tap_panels) from q, its filters of the chunk's channels. */
static void nst__fix_tap_row(float *P, const float *q, size_t tstride, int o, int cout, int nc, int nr) {
    int r, jp, c;
    for (r = 0; r < 8; r++) {
        float *t = P + (size_t)r * tstride + (size_t)o * nr;
        for (jp = 0; jp < nc; jp += nr, t += (size_t)cout * nr) {
            const float *s = q + (size_t)jp * 9 + nst__ring_tap[r];
            int n = NST__MIN(nr, nc - jp);
            for (c = 0; c + 8 <= n; c += 8, s += 72) {   /* 8 loads, then 8 stores (conv4_2's W alone: 1.1 ms
                * from memory against 1.5-2.1 one at a time; AVX2 gathers were slower, 1.6-2.5, and so were
                * 8 channels' rows loaded and transposed in registers, one pass per row: 2.5-3.1 ms against
                * 1.8-2.4 for all of conv4_2's panels, 2026-12-02) */
                float x0 = s[0], x1 = s[9], x2 = s[18], x3 = s[27], x4 = s[36], x5 = s[45], x6 = s[54], x7 = s[63];
                t[c] = x0; t[c + 1] = x1; t[c + 2] = x2; t[c + 3] = x3;
                t[c + 4] = x4; t[c + 5] = x5; t[c + 6] = x6; t[c + 7] = x7;
            }
            for (; c < n; c++, s += 9) t[c] = s[0];
            for (; c < nr; c++) t[c] = 0.0f;
        }
    }
}
#if defined(NST__NEON)
/* The same, 4 channels at a time: tap (a, b) of channel j is float 9j + 3a + b of their 36, a stride-9
 * de-interleave done as two stride-3 ones: 3 ld3 split the floats by b (group b: m = 3j + a, m = 0..11,
 * over the three loads), the groups go to a 36-float buffer in m order, and an ld3 per group splits it
 * by a, giving each tap's 4 channels in one register (23 instructions for 32 floats). The scalar copy
 * took 72M of a 128 px evaluation's 1.91e9 instructions (bench/neon_profile.sh --
 * -fno-inline-functions-called-once), this one 29M: the evaluation 1.91e9 -> 1.86e9, the same loss. Table lookups (tbl over a group's 3 registers) came
 * out at ~60 instructions: gcc copied the operands into consecutive registers for every lookup. */
static void nst__fix_tap_row_neon(float *P, const float *q, size_t tstride, int o, int cout, int nc, int nr) {
    float buf[36];
    int r, jp, c;
    for (jp = 0; jp < nc; jp += nr) {
        int n = NST__MIN(nr, nc - jp);
        float *t = P + (size_t)o * nr + (size_t)jp * cout;
        for (c = 0; c + 4 <= n; c += 4) {
            const float *s = q + (size_t)(jp + c) * 9;
            float32x4x3_t a = vld3q_f32(s), b = vld3q_f32(s + 12), d = vld3q_f32(s + 24), g0, g1, g2;
            vst1q_f32(buf, a.val[0]); vst1q_f32(buf + 4, b.val[0]); vst1q_f32(buf + 8, d.val[0]);
            vst1q_f32(buf + 12, a.val[1]); vst1q_f32(buf + 16, b.val[1]); vst1q_f32(buf + 20, d.val[1]);
            vst1q_f32(buf + 24, a.val[2]); vst1q_f32(buf + 28, b.val[2]); vst1q_f32(buf + 32, d.val[2]);
            g0 = vld3q_f32(buf); g1 = vld3q_f32(buf + 12); g2 = vld3q_f32(buf + 24);   /* g_b.val[a]: tap 3a + b */
            /* ring order: taps 0 1 2 5 8 7 6 3 */
            vst1q_f32(t + c, g0.val[0]); vst1q_f32(t + tstride + c, g1.val[0]);
            vst1q_f32(t + 2 * tstride + c, g2.val[0]); vst1q_f32(t + 3 * tstride + c, g2.val[1]);
            vst1q_f32(t + 4 * tstride + c, g2.val[2]); vst1q_f32(t + 5 * tstride + c, g1.val[2]);
            vst1q_f32(t + 6 * tstride + c, g0.val[2]); vst1q_f32(t + 7 * tstride + c, g0.val[1]);
        }
        for (r = 0; r < 8; r++) {
            int cc;
            for (cc = c; cc < n; cc++) t[(size_t)r * tstride + cc] = q[(size_t)(jp + cc) * 9 + nst__ring_tap[r]];
            for (; cc < nr; cc++) t[(size_t)r * tstride + cc] = 0.0f;
        }
    }
}
#endif
/* Tap panels of channels [i0, i0 + nc): for ring position r (0..7), P + r ncp cout holds ncp / nr
 * panels [cout][nr] (ncp: nc rounded up to nr), panel k's [o][j] = W[o][i0 + k nr + j][nst__ring_tap[r]],
 * zero past nc: the micro-kernel's packed B for the columns (r, c), read by the side GEMMs in place. */
static void nst__fix_tap_panels(float *P, const float *W, int cin, int cout, int i0, int nc, int nr) {
    size_t ncp = nst__fix_ru((size_t)nc, (size_t)nr), tstride = ncp * cout;
    int o;
    for (o = 0; o < cout; o++) {
        const float *q = W + ((size_t)o * cin + i0) * 9;
#if defined(__GNUC__) || defined(__clang__)
        if (o + 8 < cout) {   /* rows 36 cin bytes apart: each a new page the hardware prefetchers wait for */
            const char *f = (const char *)(q + (size_t)8 * 9 * cin);
            int b;
            for (b = 0; b < 9 * nc * (int)sizeof(float); b += 64) __builtin_prefetch(f + b);
        }
#endif
#if defined(NST__NEON)
        nst__fix_tap_row_neon(P, q, tstride, o, cout, nc, nr);
        (void)nst__fix_tap_row;
#else
        nst__fix_tap_row(P, q, tstride, o, cout, nc, nr);
#endif
    }
}
/* D[p][j ncp + c] = sum_o A[p][o] B_j[o][c] for the side's len rows (A: its packed output gradient, MR
 * panels of all cout) and its 3 taps' panels bj[j]: the blocked GEMM's loops (K blocks of kb, each B panel
 * over the A panels, edges through nst__gemm_tile), without its packing: both operands are packed. */
static void nst__fix_side_gemm(const nst__gemm_kernel *kt, int kb, int len, int cout, const float *A,
                               const float *const *bj, int ncp, float *D) {
    int mr = kt->mr, nr = kt->nr, ldd = 3 * ncp, pc, j, jp, ip;
    for (pc = 0; pc < cout; pc += kb) {
        int kcur = NST__MIN(kb, cout - pc);
        float beta = pc ? 1.0f : 0.0f;
        for (j = 0; j < 3; j++)
            for (jp = 0; jp < ncp; jp += nr) {
                const float *b = bj[j] + (size_t)jp * cout + (size_t)pc * nr;
                for (ip = 0; ip < len; ip += mr)
                    nst__gemm_tile(kt, kcur, A + (size_t)ip * cout + (size_t)pc * mr, b, D + (size_t)ip * ldd + j * ncp + jp,
                                   ldd, NST__MIN(mr, len - ip), nr, 1.0f, beta, NULL, 0);
            }
    }
}
/* img (channels [i0, i0 + nc)) += the gradient side s's outside taps pass back: D[p][j ts + c] is the
 * gradient at the value under ring tap j of the side at its pixel p, for channel i0 + c. The transpose of
 * nst__side_gather: a row side's taps read the padded row at p - 1, p, p + 1 (the pad's ends blended),
 * a column side's the padded column there (the corners' ends are the row sides'). line: len + 2 floats. */
static void nst__side_scatter_ring(const float *D, int ldd, int nc, int ts, float *img, int i0, int h, int w, int s,
                                   float *line) {
    int len = nst__side_len(s, h, w), rev = s == 1 || s == 2, c, p, src[2];
    size_t hw = (size_t)h * w;
    float wt[2];
    for (c = 0; c < nc; c++) {
        float *pl = img + (size_t)(i0 + c) * hw;
        const float *d = D + c;
        memset(line, 0, sizeof(float) * (size_t)(len + 2));
        for (p = 0; p < len; p++, d += ldd) {   /* line[k + 1]: the padded line at k, k = -1 .. len */
            float a = d[0], b = d[ts], e = d[2 * ts];
            line[p] += rev ? e : a;
            line[p + 1] += b;
            line[p + 2] += rev ? a : e;
        }
        if (s < 2) {
            float *r0, *r1;
            nst__pad_source(-1, w, src, wt);
            line[src[0] + 1] += wt[0] * line[0]; line[src[1] + 1] += wt[1] * line[0];
            nst__pad_source(w, w, src, wt);
            line[src[0] + 1] += wt[0] * line[w + 1]; line[src[1] + 1] += wt[1] * line[w + 1];
            nst__pad_source(s == 0 ? -1 : h, h, src, wt);
            r0 = pl + (size_t)src[0] * w; r1 = pl + (size_t)src[1] * w;
            for (p = 0; p < w; p++) r0[p] += wt[0] * line[p + 1];
            for (p = 0; p < w; p++) r1[p] += wt[1] * line[p + 1];
        } else {
            nst__pad_source(s == 2 ? -1 : w, w, src, wt);
            for (p = 0; p < h; p++) {
                pl[(size_t)p * w + src[0]] += wt[0] * line[p + 1];
                pl[(size_t)p * w + src[1]] += wt[1] * line[p + 1];
            }
        }
    }
}
/* After a backward-data that masked its output by the ReLU below (nst__net_mask_fuses), the fix's sums
 * masked as a whole: the mask again where nst__side_scatter_ring adds (the first and last two rows and
 * columns of each plane); zeros stay zeros. w % 8 == 0: every plane and row starts a mask byte. */
static void nst__mask_border(float *g, const unsigned char *bits, int c, int h, int w, int nthreads) {
    long ch;
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (ch = 0; ch < c; ch++) {
        float *p = g + (size_t)ch * h * w;
        const unsigned char *b = bits + (size_t)ch * h * w / 8;
        int y, x, k;
        for (y = 0; y < h; y++)
            for (k = 0; k < (y < 2 || y >= h - 2 ? w : 4); k++) {
                size_t e;
                x = y < 2 || y >= h - 2 || k < 2 ? k : w - 4 + k;
                e = (size_t)y * w + x;
                if (!((b[e / 8] >> (e % 8)) & 1)) p[e] = 0.0f;
            }
    }
}
/* din (backward-data of the zero-padded convolution) += the gradient through the outside taps.
 * Per side, dB^T[len][3 cc] = dC^T[len][cout] W_side[cout][3 cc] for each channel chunk: the long side
 * of the product is the chunk's columns, not the pixels (C[3 cin][len] with len 32..64 ran the GEMM at a
 * third of its speed at 512 px: the 6 x 16 kernel over 2-4 column panels per packed A row block). The
 * sides' dC are gathered first, packed as the kernel's A panels (one barrier), then the threads take
 * chunks from a shared counter, pack the chunk's tap panels and scatter each chunk's gradient
 * themselves: one parallel region per layer. Both operands arrive packed, so the side products run the
 * micro-kernel directly (nst__fix_side_gemm): no GEMM call re-packs dC per chunk or copies the weights a
 * second time. The kernel and its K blocks depend on the shapes alone: the bits are those of the GEMM
 * on the same operands, whichever thread computes a chunk. */
static float nst__unpool_at(const float *g, const unsigned char *code, const unsigned char *bits, int par, int x,
                            int avg);
/* Element (y, x) of channel o of the gradient a fused unpool (nst__conv_backward_fused) makes from up's
 * pooled gradient and masks, as nst__pool_mask_backward writes it: an odd last row gets zero. */
static float nst__unpooled_at(const nst__conv_pool *up, int o, int y, int x, int h, int w) {
    size_t ow = (size_t)(w / 2), p = (size_t)o * (size_t)(h / 2) * ow + (size_t)(y / 2) * ow;
    if (y >= h / 2 * 2) return 0.0f;
    return nst__unpool_at(up->dout + p, up->code ? up->code + p : NULL, up->bits + ((size_t)o * h + y) * (size_t)w / 8,
                          y & 1, x, up->avg);
}
static nst_status nst__reflect_fix_backward_up(const nst_model *m, int ci, const float *dout, const nst__conv_pool *up,
                                               float *din, int h, int w, int nthreads, float *scratch);
static NST__UNUSED nst_status nst__reflect_fix_backward(const nst_model *m, int ci, const float *dout, float *din, int h, int w,
                                            int nthreads, float *scratch) {
    return nst__reflect_fix_backward_up(m, ci, dout, NULL, din, h, w, nthreads, scratch);
}
/* up non-NULL: the output gradient arrives pooled (dout unused), the sides' values unpooled one by one
 * (2 (h + w) per channel: what lets the random model's pools fuse into its backward convolutions). */
static nst_status nst__reflect_fix_backward_up(const nst_model *m, int ci, const float *dout, const nst__conv_pool *up,
                                               float *din, int h, int w, int nthreads, float *scratch) {
    int cin = m->cin[ci], cout = m->cout[ci], nt = nst__resolve_threads(nthreads), cc = nst__fix_chunk(cin);
    /* the kernel that pads the products least: the sides' rows (2 (h + w)) to MR, the chunk's columns to NR
     * (AVX2: 6 x 16 for the VGG chunks of 16..64 channels, 4 x 24 would pad 64 to 72) */
    const nst__gemm_kernel *kt = nst__gemm_kernel_pick(nst__cpu_arch(), h + w, cc);
    int mr = kt->mr, nr = kt->nr, nch, next = 0, kb, nkb;
    if (cc > nr) cc = cc / nr * nr;   /* never above nst__fix_chunk's: the scratch is sized by it */
    nch = (cin + cc - 1) / cc;
    size_t hw = (size_t)h * w, per = nst__fix_thread_floats(cin, cout, h, w), off[4];
    float *thr = scratch + nst__fix_dc_floats(cout, h, w);
    nst__gemm_blocks bl;
    nst__gemm_blocking(kt, &bl);
    nkb = (cout + bl.kc - 1) / bl.kc;
    kb = (cout + nkb - 1) / nkb;
    off[0] = 0;
    off[1] = nst__fix_ru((size_t)w, (size_t)mr) * cout;
    off[2] = 2 * off[1];
    off[3] = off[2] + nst__fix_ru((size_t)h, (size_t)mr) * cout;
    if (nt > nch) nt = nch;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        int t = 0, k, o, s;
        float *P, *D, *line;
#ifdef _OPENMP
        t = omp_get_thread_num();
#pragma omp for schedule(static)
#endif
        for (o = 0; o < cout; o++) {   /* dC of each side, the output gradient along it, as MR panels [len / MR][cout][MR] */
            for (s = 0; s < 4; s++) {
                int len = nst__side_len(s, h, w), ip, i;
                size_t step = s < 2 ? 1 : (size_t)w, first = s == 1 ? (size_t)(h - 1) * w : s == 3 ? (size_t)w - 1 : 0;
                float *a = scratch + off[s] + (size_t)o * mr;
                for (ip = 0; ip < len; ip += mr, a += (size_t)mr * cout) {
                    int n = NST__MIN(mr, len - ip);
                    if (!up)
                        for (i = 0; i < n; i++) a[i] = dout[(size_t)o * hw + first + (size_t)(ip + i) * step];
                    else if (s == 1 && (h & 1))   /* an odd last row: no window pooled it */
                        for (i = 0; i < n; i++) a[i] = 0.0f;
                    else if (s < 2) {   /* a row: the fused backward's own row kernel (NEON, AVX2) */
                        size_t po = (size_t)o * (size_t)(h / 2) * (size_t)(w / 2) + (size_t)(s ? h / 2 - 1 : 0) * (size_t)(w / 2);
                        nst__unpool_row(a, up->dout + po, up->code ? up->code + po : NULL,
                                        up->bits + ((size_t)o * h + (size_t)(s ? h - 1 : 0)) * (size_t)w / 8, s ? (h - 1) & 1 : 0,
                                        ip, ip + n, up->avg, up->simd);
                        i = n;
                    }
                    else
                        for (i = 0; i < n; i++) a[i] = nst__unpooled_at(up, o, ip + i, s == 2 ? 0 : w - 1, h, w);
                    for (; i < mr; i++) a[i] = 0.0f;
                }
            }
        }
        P = thr + per * (size_t)t;
        D = P + (size_t)8 * cout * (cc + nst__fix_pad_max(1));
        line = D + (size_t)NST__MAX(h, w) * 3 * (cc + nst__fix_pad_max(1));
        for (;;) {
            int i0, nc, ncp;
#ifdef _OPENMP
#pragma omp atomic capture
#endif
            k = next++;
            if (k >= nch) break;
            i0 = k * cc;
            nc = NST__MIN(cc, cin - i0);
            ncp = (int)nst__fix_ru((size_t)nc, (size_t)nr);
            nst__fix_tap_panels(P, m->w[ci], cin, cout, i0, nc, nr);
            for (s = 0; s < 4; s++) {
                const float *bj[3];
                int j;
                for (j = 0; j < 3; j++) bj[j] = P + (size_t)((nst__ring_start[s] + j) % 8) * ncp * cout;
                nst__fix_side_gemm(kt, kb, nst__side_len(s, h, w), cout, scratch + off[s], bj, ncp, D);
                nst__side_scatter_ring(D, 3 * ncp, nc, ncp, din, i0, h, w, s, line);
            }
        }
    }
    return NST_OK;
}
/* out's border pixels = relu?(bias + the convolution with the padded input), over what the engine wrote
 * there (with a fused ReLU, the engine's border values are lost anyway). B[(i*9 + t)][k] holds all 9
 * taps of border pixel k (nst__border_pixel order). */
static nst_status nst__reflect_border_forward(const nst_model *m, int ci, const float *in, float *out, int h, int w,
                                              int relu, int nthreads, float *scratch) {
    int cin = m->cin[ci], cout = m->cout[ci], nt = NST__MAX(1, nthreads), t;
    size_t nb = nst__border_count(h, w), hw = (size_t)h * w;
    float *B = scratch, *C = scratch + (size_t)9 * cin * nb;
    long o;
    nst_status st;
    (void)t;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static)
#endif
    for (t = 0; t < nt; t++) {
        int c0, c1, i, ky, kx, y, x;
        size_t k;
        nst__split(cin, t, nt, &c0, &c1);
        for (i = c0; i < c1; i++) {
            const float *pl = in + (size_t)i * hw;
            float *bi = B + (size_t)i * 9 * nb;
            if (h <= 2 || w <= 2) {   /* every pixel is a border pixel: tiny maps, the plain way */
                for (k = 0; k < nb; k++) {
                    nst__border_pixel(k, h, w, &y, &x);
                    for (ky = 0; ky < 3; ky++)
                        for (kx = 0; kx < 3; kx++) bi[(size_t)(ky * 3 + kx) * nb + k] = nst__pad_at(pl, h, w, y + ky - 1, x + kx - 1);
                }
                continue;
            }
            for (ky = 0; ky < 3; ky++) {
                int r;
                for (r = 0; r < 2; r++) {   /* rows 0 and h-1: the padded row, then shifted by kx - 1 */
                    size_t off = (size_t)r * w;
                    float *b1 = bi + (size_t)(ky * 3 + 1) * nb + off, *b0 = b1 - nb, *b2 = b1 + nb;
                    int yy = (r ? h - 1 : 0) + ky - 1, src[2];
                    float wt[2];
                    nst__pad_source(yy, h, src, wt);
                    if (wt[1] == 0.0f) memcpy(b1, pl + (size_t)src[0] * w, sizeof(float) * (size_t)w);
                    else
                        for (x = 0; x < w; x++) b1[x] = wt[0] * pl[(size_t)src[0] * w + x] + wt[1] * pl[(size_t)src[1] * w + x];
                    b0[0] = NST__PAD_EDGE * b1[0] + (1.0f - NST__PAD_EDGE) * b1[1];
                    memcpy(b0 + 1, b1, sizeof(float) * (size_t)(w - 1));
                    b2[w - 1] = NST__PAD_EDGE * b1[w - 1] + (1.0f - NST__PAD_EDGE) * b1[w - 2];
                    memcpy(b2, b1 + 1, sizeof(float) * (size_t)(w - 1));
                }
                for (y = 1; y < h - 1; y++) {   /* columns 0 and w-1 of the rows between */
                    const float *row = pl + (size_t)(y + ky - 1) * w;
                    size_t kl = (size_t)2 * w + (size_t)2 * (y - 1);
                    float *b = bi + (size_t)ky * 3 * nb;
                    b[kl] = NST__PAD_EDGE * row[0] + (1.0f - NST__PAD_EDGE) * row[1];
                    b[nb + kl] = row[0];
                    b[2 * nb + kl] = row[1];
                    b[kl + 1] = row[w - 2];
                    b[nb + kl + 1] = row[w - 1];
                    b[2 * nb + kl + 1] = NST__PAD_EDGE * row[w - 1] + (1.0f - NST__PAD_EDGE) * row[w - 2];
                }
            }
        }
    }
    if ((st = nst__sgemm_fused(nthreads, 0, 0, cout, (int)nb, 9 * cin, 1.0f, m->w[ci], 9 * cin, B, (int)nb, 0.0f, C,
                               (int)nb, m->b[ci], relu)) != NST_OK)
        return st;
    for (o = 0; o < cout; o++) {   /* cout * nb stores: not worth a parallel region */
        float *po = out + (size_t)o * hw;
        const float *c = C + (size_t)o * nb;
        size_t k;
        int y, x;
        if (h <= 2 || w <= 2) {
            for (k = 0; k < nb; k++) po[nst__border_pixel(k, h, w, &y, &x)] = c[k];
            continue;
        }
        memcpy(po, c, sizeof(float) * (size_t)w);
        memcpy(po + (size_t)(h - 1) * w, c + w, sizeof(float) * (size_t)w);
        for (y = 1; y < h - 1; y++) {
            po[(size_t)y * w] = c[2 * (size_t)w + 2 * (size_t)(y - 1)];
            po[(size_t)y * w + w - 1] = c[2 * (size_t)w + 2 * (size_t)(y - 1) + 1];
        }
    }
    return NST_OK;
}

/* ---- the network: forward that records what backward needs, backward to the pixels ------------
 * Kept for backward, per layer: ReLU masks as bits, max-pool argmax as 2-bit codes in a byte, and the
 * features at loss layers (written there directly by the layer, so no copy). Everything else lives
 * in two ping-pong buffers that forward and backward share. */
typedef struct nst__net {
    const nst_model *m;
    int h, w, last, avg, nthreads;
    int c_[NST_VGG_LAYERS], h_[NST_VGG_LAYERS], w_[NST_VGG_LAYERS];   /* output shape per layer */
    unsigned char keep[NST_VGG_LAYERS];      /* output kept for a loss */
    float *feat[NST_VGG_LAYERS];
    unsigned char *rec[NST_VGG_LAYERS];      /* relu bits or pool codes */
    float *buf[2];
    size_t buf_elems;
    void *ws;                                /* convolution scratch, owned unless ws_borrowed */
    size_t ws_bytes;
    int ws_borrowed, bufs_borrowed;
    size_t bytes;                            /* everything above, for the memory estimate */
    const float *out;                        /* output of the last layer after forward */
    float *pad_scratch;                      /* reflection padding's border GEMM operands (m->reflect) */
    double *prof;                            /* NULL, or NST__PROF_SLOTS phase times (bench_nst --profile) */
    double (*prof_clock)(void);              /* the clock for prof; NULL = wall time (nst__now) */
    size_t pad_elems;                        /* floats of pad_scratch */
    /* The packed layout (nst__net_init_packed): kept features and per-convolution scratch live in the
     * parts of the two buffers the maps of their layers leave free; a kept layer that finds no room
     * is recomputed by backward from the input (relu1_1) or gets its own buffer. */
    int packed;
    float *input;                                    /* the preprocessed input, kept (NULL: buf[0]) */
    unsigned char placed[NST_VGG_LAYERS];            /* feat[l] points into buf[0] or buf[1] */
    unsigned char recompute[NST_VGG_LAYERS];         /* feat[l] is NULL: backward recomputes it */
    void *cws[NST_VGG_CONVS];                        /* convolution ci's scratch in the buffers; NULL: ws */
    /* called after layer l of forward where watch[l], with its output and a free buffer of the output's
     * size (the untiled objective's losses; the Grams of a style image) */
    unsigned char watch[NST_VGG_LAYERS];
    nst_status (*hook)(void *ctx, int layer, const float *out, float *scratch);
    void *hook_ctx;
    /* Tiled evaluation (nst__net_reshape_tile): where h_[l] x w_[l] of a pool or convolution layer is less
     * than its natural output (half its input; its input), the output is cropped to the rows and columns
     * from crop_y[l], crop_x[l] of that (forward), and the gradient put back in place with zeros around
     * it (backward). A convolution fused with its ReLU crops before the ReLU's mask is taken. */
    int crop_y[NST_VGG_LAYERS], crop_x[NST_VGG_LAYERS];
} nst__net;

/* Profiling hook: when a net's or objective's prof points at NST__PROF_SLOTS doubles (bench_nst
 * --profile sets it), each phase adds its wall time in seconds to its slot; the library leaves it NULL,
 * so the hook costs a pointer test per layer. Per layer l: forward (conv, ReLU mask, pool) at
 * FWD + l, backward at BWD + l, the loss gradient added at that layer (content, Gram backward) at
 * LOSSGRAD + l, the Gram matrix and style loss at GRAM + l; RECOMPUTE: backward making a kept layer's
 * features again (conv1_1 + ReLU, the packed layout's relu1_1), a convolution. */
enum {
    NST__PROF_FWD = 0, NST__PROF_BWD = NST_VGG_LAYERS, NST__PROF_LOSSGRAD = 2 * NST_VGG_LAYERS,
    NST__PROF_GRAM = 3 * NST_VGG_LAYERS, NST__PROF_PRE = 4 * NST_VGG_LAYERS, NST__PROF_CONTENT, NST__PROF_TV,
    NST__PROF_PIXGRAD, NST__PROF_RECOMPUTE, NST__PROF_SLOTS
};
static double nst__prof_now(const nst__net *n) { return !n->prof ? 0 : n->prof_clock ? n->prof_clock() : nst__now(); }
static double nst__prof(const nst__net *n, int slot, double t0) {
    double t;
    if (!n->prof) return 0;
    t = nst__prof_now(n);
    n->prof[slot] += t - t0;
    return t;
}

static size_t nst__round64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Computes shapes and sizes; with alloc == 0 only sizes (for the estimate). A net may borrow the
 * ping-pong buffers and convolution scratch of another that is idle meanwhile (borrow, where they
 * are large enough) instead of allocating its own: the style networks do, from the main one. */
static nst_status nst__net_init_ws(nst__net *n, const nst_model *m, int h, int w, int last, const unsigned char *keep,
                                   int avg, int nthreads, int alloc, const nst__net *borrow, size_t min_ws,
                                   size_t min_buf) {
    int l, c = 3, ch = h, cw = w, ci;
    size_t maxel = (size_t)3 * h * w, ws = 0, pad = 0;
    memset(n, 0, sizeof *n);
    n->m = m; n->h = h; n->w = w; n->last = last; n->avg = avg;
    n->nthreads = nst__resolve_threads(nthreads);
    if (last < 0 || last >= NST_VGG_LAYERS || nst__layer_conv(last) >= m->nconv)
        return nst__err(NST_ERR_ARGUMENT, "layer %s needs %s, which the model does not have",
                        last >= 0 && last < NST_VGG_LAYERS ? nst__layer_names[last] : "?",
                        last >= 0 && last < NST_VGG_LAYERS ? nst__conv_names[nst__layer_conv(last)] : "?");
    if (h < 1 || w < 1) return nst__err(NST_ERR_ARGUMENT, "image size %dx%d", w, h);
    for (l = 0, ci = 0; l <= last; l++) {
        int t = nst__layer_type(l);
        if (t == NST__L_CONV) {
            size_t s = nst__conv_workspace(m->plan[ci], ch, cw, n->nthreads);
            if (s > ws) ws = s;
            if (m->reflect && nst__reflect_scratch_floats(m->cin[ci], m->cout[ci], ch, cw, n->nthreads) > pad)
                pad = nst__reflect_scratch_floats(m->cin[ci], m->cout[ci], ch, cw, n->nthreads);
            c = m->cout[ci++];
        } else if (t == NST__L_POOL) {
            if (ch < 2 || cw < 2)
                return nst__err(NST_ERR_ARGUMENT, "image of %dx%d is too small for %s (needs at least %d pixels "
                                "on each side)", w, h, nst__layer_names[l], 2 * (h / ch > w / cw ? h / ch : w / cw));
            ch /= 2; cw /= 2;
        }
        n->c_[l] = c; n->h_[l] = ch; n->w_[l] = cw;
        if ((size_t)c * ch * cw > maxel) maxel = (size_t)c * ch * cw;
        n->keep[l] = keep ? keep[l] : 0;
    }
    if (maxel < min_buf) maxel = min_buf;
    n->buf_elems = maxel;
    n->pad_elems = pad;
    if (ws < min_ws) ws = min_ws;
    n->ws_bytes = ws;
    n->ws_borrowed = borrow && borrow->ws_bytes >= ws;
    n->bufs_borrowed = borrow && borrow->buf_elems >= maxel;
    n->bytes = (n->bufs_borrowed ? 0 : 2 * nst__round64(maxel * sizeof(float))) + (n->ws_borrowed ? 0 : ws);
    n->bytes += nst__round64(pad * sizeof(float));
    for (l = 0; l <= last; l++) {
        size_t el = (size_t)n->c_[l] * n->h_[l] * n->w_[l];
        if (n->keep[l]) n->bytes += nst__round64(el * sizeof(float));
        if (nst__layer_type(l) == NST__L_RELU) n->bytes += nst__round64((el + 7) / 8);
        if (nst__layer_type(l) == NST__L_POOL && !avg) n->bytes += nst__round64(el);
    }
    if (!alloc) return NST_OK;
    if (n->bufs_borrowed) {
        n->buf[0] = borrow->buf[0];
        n->buf[1] = borrow->buf[1];
    } else {
        n->buf[0] = (float *)nst__aligned_alloc(maxel * sizeof(float));
        n->buf[1] = (float *)nst__aligned_alloc(maxel * sizeof(float));
    }
    n->ws = n->ws_borrowed ? borrow->ws : ws ? nst__aligned_alloc(ws) : NULL;
    if (!n->buf[0] || !n->buf[1] || (ws && !n->ws)) goto oom;
    if (pad && !(n->pad_scratch = (float *)nst__aligned_alloc(pad * sizeof(float)))) goto oom;
    for (l = 0; l <= last; l++) {
        size_t el = (size_t)n->c_[l] * n->h_[l] * n->w_[l];
        if (n->keep[l] && !(n->feat[l] = (float *)nst__aligned_alloc(el * sizeof(float)))) goto oom;
        if (nst__layer_type(l) == NST__L_RELU && !(n->rec[l] = (unsigned char *)nst__aligned_alloc((el + 7) / 8))) goto oom;
        if (nst__layer_type(l) == NST__L_POOL && !avg && !(n->rec[l] = (unsigned char *)nst__aligned_alloc(el))) goto oom;
    }
    return NST_OK;
oom:
    return nst__err(NST_ERR_NOMEM, "out of memory for the network at %dx%d", w, h);
}

static nst_status nst__net_init(nst__net *n, const nst_model *m, int h, int w, int last, const unsigned char *keep,
                                int avg, int nthreads, int alloc) {
    return nst__net_init_ws(n, m, h, w, last, keep, avg, nthreads, alloc, NULL, 0, 0);
}

static void nst__net_free(nst__net *n) {
    int l;
    if (!n->bufs_borrowed) {
        nst__aligned_free(n->buf[0]);
        nst__aligned_free(n->buf[1]);
    }
    if (!n->ws_borrowed) nst__aligned_free(n->ws);
    nst__aligned_free(n->pad_scratch);
    nst__aligned_free(n->input);
    for (l = 0; l < NST_VGG_LAYERS; l++) {
        if (!n->placed[l]) nst__aligned_free(n->feat[l]);
        nst__aligned_free(n->rec[l]);
    }
    memset(n, 0, sizeof *n);
}

/* ---- the packed layout ----------------------------------------------------------------------------
 * Forward and backward pass layer l with its input and output map at the low end of the buffers:
 * low[l] = max(input, output) floats of each. Every other object has a range of layers during which it
 * is live (a kept feature from the convolution that writes it until backward has used it; a
 * convolution's scratch during that convolution, forward and backward) and goes first fit at or above
 * the low ends of its layers, clear of every object whose layers overlap. At 512 px the deep features
 * and the conv4/conv5 scratch (their filters transformed on the fly) fit where the 64-channel maps of
 * block 1 need the whole buffers; relu1_1 finds no room and is recomputed (one 3-channel convolution). */
typedef struct nst__pk_obj {
    int buf, lo, hi;   /* buffer, live layers [lo, hi] */
    size_t off, size;  /* floats */
} nst__pk_obj;

static size_t nst__round16(size_t n) { return (n + 15) & ~(size_t)15; }

static int nst__pk_place(nst__pk_obj *objs, int nobj, const size_t *low, size_t cap, size_t size, int lo, int hi) {
    size_t base = 0;
    int l, b, i, moved;
    for (l = lo; l <= hi; l++) base = NST__MAX(base, low[l]);
    for (b = 0; b < 2; b++) {
        size_t off = nst__round16(base);
        do {
            moved = 0;
            for (i = 0; i < nobj; i++) {
                const nst__pk_obj *o = &objs[i];
                if (o->buf == b && o->lo <= hi && lo <= o->hi && o->off < off + size && off < o->off + o->size) {
                    off = nst__round16(o->off + o->size);
                    moved = 1;
                }
            }
        } while (moved && off + size <= cap);
        if (off + size <= cap) {
            objs[nobj].buf = b; objs[nobj].lo = lo; objs[nobj].hi = hi; objs[nobj].off = off; objs[nobj].size = size;
            return 1;
        }
    }
    return 0;
}

/* nst__net_init_ws with the packed layout. watch: the layers forward calls the hook at (NULL: none).
 * recompute_ok: the loss gradient needs no scratch (backward recomputes into it). with_input: keep the
 * preprocessed input (needed to recompute; nst_objective_features reruns forward from it). A borrowed
 * net lends its buffers (and its own scratch where large enough); min_buf, min_ws as in
 * nst__net_init_ws, so that nets built beside this one can borrow. */
static nst_status nst__net_init_packed(nst__net *n, const nst_model *m, int h, int w, int last,
                                       const unsigned char *keep, const unsigned char *watch, int avg, int nthreads,
                                       int alloc, const nst__net *borrow, size_t min_buf, size_t min_ws,
                                       int recompute_ok, int with_input) {
    nst__pk_obj objs[NST_VGG_LAYERS + NST_VGG_CONVS];
    size_t low[NST_VGG_LAYERS], el[NST_VGG_LAYERS], cap, ws = 0, cws_off[NST_VGG_CONVS];
    int l, ci, nobj = 0, cws_buf[NST_VGG_CONVS], feat_obj[NST_VGG_LAYERS];
    nst_status st = nst__net_init_ws(n, m, h, w, last, keep, avg, nthreads, 0, NULL, 0, min_buf);
    if (st != NST_OK) return st;
    n->packed = 1;
    for (l = 0; l <= last; l++) {
        n->watch[l] = watch ? watch[l] : 0;
        el[l] = (size_t)n->c_[l] * n->h_[l] * n->w_[l];
        low[l] = nst__round16(NST__MAX(el[l], l ? el[l - 1] : (size_t)3 * h * w));
        feat_obj[l] = -1;
    }
    cap = n->buf_elems;
    n->bufs_borrowed = borrow && borrow->buf_elems >= cap;
    if (n->bufs_borrowed) cap = borrow->buf_elems;
    n->buf_elems = cap;
    for (l = 0; l <= last; l++) {
        if (!n->keep[l]) continue;
        if (nst__pk_place(objs, nobj, low, cap, nst__round16(el[l]), l ? l - 1 : 0, last)) feat_obj[l] = nobj++;
        else if (l == 1 && recompute_ok && with_input && !n->keep[0] && nst__layer_type(1) == NST__L_RELU)
            n->recompute[l] = 1;
    }
    for (l = 0, ci = 0; l <= last; l++) {
        size_t s;
        if (nst__layer_type(l) != NST__L_CONV) continue;
        s = nst__conv_workspace(m->plan[ci], l ? n->h_[l - 1] : h, l ? n->w_[l - 1] : w, n->nthreads);
        cws_buf[ci] = -1;
        if (s && nst__pk_place(objs, nobj, low, cap, nst__round16((s + 3) / 4), l, NST__MIN(l + 1, last))) {
            cws_buf[ci] = objs[nobj].buf;
            cws_off[ci] = objs[nobj++].off;
        } else {
            ws = NST__MAX(ws, s);
        }
        ci++;
    }
    if (ws < min_ws) ws = min_ws;
    n->ws_bytes = ws;
    n->ws_borrowed = borrow && borrow->ws_bytes >= ws;
    n->bytes = (n->bufs_borrowed ? 0 : 2 * nst__round64(cap * sizeof(float))) + (n->ws_borrowed ? 0 : ws);
    n->bytes += nst__round64(n->pad_elems * sizeof(float));
    if (with_input) n->bytes += nst__round64((size_t)3 * h * w * sizeof(float));
    for (l = 0; l <= last; l++) {
        if (n->keep[l] && feat_obj[l] < 0 && !n->recompute[l]) n->bytes += nst__round64(el[l] * sizeof(float));
        if (nst__layer_type(l) == NST__L_RELU) n->bytes += nst__round64((el[l] + 7) / 8);
        if (nst__layer_type(l) == NST__L_POOL && !avg) n->bytes += nst__round64(el[l]);
    }
    if (!alloc) return NST_OK;
    if (n->bufs_borrowed) {
        n->buf[0] = borrow->buf[0];
        n->buf[1] = borrow->buf[1];
    } else {
        n->buf[0] = (float *)nst__aligned_alloc(cap * sizeof(float));
        n->buf[1] = (float *)nst__aligned_alloc(cap * sizeof(float));
    }
    n->ws = n->ws_borrowed ? borrow->ws : ws ? nst__aligned_alloc(ws) : NULL;
    if (!n->buf[0] || !n->buf[1] || (ws && !n->ws)) goto oom;
    if (n->pad_elems && !(n->pad_scratch = (float *)nst__aligned_alloc(n->pad_elems * sizeof(float)))) goto oom;
    if (with_input && !(n->input = (float *)nst__aligned_alloc((size_t)3 * h * w * sizeof(float)))) goto oom;
    for (l = 0, ci = 0; l <= last; l++) {
        if (nst__layer_type(l) == NST__L_CONV) {
            if (cws_buf[ci] >= 0) n->cws[ci] = n->buf[cws_buf[ci]] + cws_off[ci];
            ci++;
        }
        if (feat_obj[l] >= 0) {
            n->feat[l] = n->buf[objs[feat_obj[l]].buf] + objs[feat_obj[l]].off;
            n->placed[l] = 1;
        } else if (n->keep[l] && !n->recompute[l] && !(n->feat[l] = (float *)nst__aligned_alloc(el[l] * sizeof(float)))) {
            goto oom;
        }
        if (nst__layer_type(l) == NST__L_RELU && !(n->rec[l] = (unsigned char *)nst__aligned_alloc((el[l] + 7) / 8))) goto oom;
        if (nst__layer_type(l) == NST__L_POOL && !avg && !(n->rec[l] = (unsigned char *)nst__aligned_alloc(el[l]))) goto oom;
    }
    return NST_OK;
oom:
    return nst__err(NST_ERR_NOMEM, "out of memory for the network at %dx%d", w, h);
}

/* The scratch of convolution ci. */
static void *nst__net_cws(const nst__net *n, int ci) { return n->cws[ci] ? n->cws[ci] : n->ws; }

/* Applies ReLU from src to dst (may alias) and records the mask, one bit per element: elements
 * [lo, hi), lo a multiple of 8. The AVX2 loop does the same bit for bit (NaN and -0 give +0). */
static void nst__relu_forward_scalar(float *dst, const float *src, unsigned char *bits, size_t lo, size_t hi) {
    size_t i;
    for (i = lo; i < hi; i += 8) {
        size_t k, end = NST__MIN(i + 8, hi);
        unsigned v = 0;
        for (k = i; k < end; k++) {
            float x = src[k];
            int pos = x > 0.0f;
            dst[k] = pos ? x : 0.0f;
            v |= (unsigned)pos << (k - i);
        }
        bits[i / 8] = (unsigned char)v;
    }
}
#if defined(NST__X86)
static NST__TARGET_AVX2 void nst__relu_forward_avx2(float *dst, const float *src, unsigned char *bits, size_t lo,
                                                    size_t hi) {
    const __m256 z = _mm256_setzero_ps();
    size_t i = lo;
    for (; i + 8 <= hi; i += 8) {
        __m256 x = _mm256_loadu_ps(src + i), m = _mm256_cmp_ps(x, z, _CMP_GT_OQ);
        _mm256_storeu_ps(dst + i, _mm256_and_ps(x, m));
        bits[i / 8] = (unsigned char)_mm256_movemask_ps(m);
    }
    nst__relu_forward_scalar(dst, src, bits, i, hi);
}
#endif
static int nst__simd_avx2(void);
#define NST__MASK_RUN 512
static void nst__relu_forward(float *dst, const float *src, unsigned char *bits, size_t n, int nthreads) {
    long nr = (long)((n + NST__MASK_RUN - 1) / NST__MASK_RUN), r;
    int simd = nst__simd_avx2();
    (void)nthreads; (void)simd;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (r = 0; r < nr; r++) {
        size_t lo = (size_t)r * NST__MASK_RUN, hi = NST__MIN(lo + NST__MASK_RUN, n);
#if defined(NST__X86)
        if (simd) { nst__relu_forward_avx2(dst, src, bits, lo, hi); continue; }
#endif
        nst__relu_forward_scalar(dst, src, bits, lo, hi);
    }
}
/* ReLU masks, one bit per element (bit k of byte i: element 8i + k is > 0). The scalar loops are the
 * references; the AVX2 ones (movemask of a compare; a byte broadcast against lane bits) do the same
 * bit for bit. Threads take whole 64-byte runs of the mask (512 elements), so they never share a byte. */
static void nst__relu_mask_bits_scalar(const float *x, unsigned char *bits, size_t lo, size_t hi) {
    size_t i;
    for (i = lo; i < hi; i += 8) {
        size_t k, end = NST__MIN(i + 8, hi);
        unsigned v = 0;
        for (k = i; k < end; k++) v |= (unsigned)(x[k] > 0.0f) << (k - i);
        bits[i / 8] = (unsigned char)v;
    }
}
static void nst__relu_backward_scalar(float *g, const unsigned char *bits, size_t lo, size_t hi) {
    size_t i;
    for (i = lo; i < hi; i += 8) {
        size_t k, end = NST__MIN(i + 8, hi);
        unsigned v = bits[i / 8];
        for (k = i; k < end; k++)
            if (!((v >> (k - i)) & 1)) g[k] = 0.0f;
    }
}
#if defined(NST__X86)
static NST__TARGET_AVX2 void nst__relu_mask_bits_avx2(const float *x, unsigned char *bits, size_t lo, size_t hi) {
    const __m256 z = _mm256_setzero_ps();
    size_t i = lo;
    for (; i + 32 <= hi; i += 32) {
        unsigned m0 = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), z, _CMP_GT_OQ));
        unsigned m1 = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i + 8), z, _CMP_GT_OQ));
        unsigned m2 = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i + 16), z, _CMP_GT_OQ));
        unsigned m3 = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i + 24), z, _CMP_GT_OQ));
        bits[i / 8] = (unsigned char)m0;
        bits[i / 8 + 1] = (unsigned char)m1;
        bits[i / 8 + 2] = (unsigned char)m2;
        bits[i / 8 + 3] = (unsigned char)m3;
    }
    nst__relu_mask_bits_scalar(x, bits, i, hi);
}
static NST__TARGET_AVX2 __m256 nst__bits_to_mask_avx2(unsigned b) {
    const __m256i lane = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    __m256i v = _mm256_and_si256(_mm256_set1_epi32((int)b), lane);
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(v, lane));
}
static NST__TARGET_AVX2 void nst__relu_backward_avx2(float *g, const unsigned char *bits, size_t lo, size_t hi) {
    size_t i = lo;
    for (; i + 8 <= hi; i += 8)
        _mm256_storeu_ps(g + i, _mm256_and_ps(_mm256_loadu_ps(g + i), nst__bits_to_mask_avx2(bits[i / 8])));
    nst__relu_backward_scalar(g, bits, i, hi);
}
#endif
#if defined(NST__NEON)
/* The NEON forms: a mask byte is the sum of the 8 compare lanes weighted 1, 2, 4 .. 128 (one add across
 * lanes); the backward tests each lane's weight against the byte. Bit for bit the scalar loops. */
static const uint32_t nst__lane_bits_neon[8] = {1, 2, 4, 8, 16, 32, 64, 128};
static void nst__relu_mask_bits_neon(const float *x, unsigned char *bits, size_t lo, size_t hi) {
    const uint32x4_t wl = vld1q_u32(nst__lane_bits_neon), wh = vld1q_u32(nst__lane_bits_neon + 4);
    const float32x4_t z = vdupq_n_f32(0.0f);
    size_t i = lo;
    for (; i + 8 <= hi; i += 8) {
        uint32x4_t a = vandq_u32(vcgtq_f32(vld1q_f32(x + i), z), wl), b = vandq_u32(vcgtq_f32(vld1q_f32(x + i + 4), z), wh);
        bits[i / 8] = (unsigned char)vaddvq_u32(vorrq_u32(a, b));
    }
    nst__relu_mask_bits_scalar(x, bits, i, hi);
}
static void nst__relu_backward_neon(float *g, const unsigned char *bits, size_t lo, size_t hi) {
    const uint32x4_t wl = vld1q_u32(nst__lane_bits_neon), wh = vld1q_u32(nst__lane_bits_neon + 4);
    size_t i = lo;
    for (; i + 8 <= hi; i += 8) {
        uint32x4_t b = vdupq_n_u32(bits[i / 8]);
        vst1q_f32(g + i, vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(vld1q_f32(g + i)), vtstq_u32(b, wl))));
        vst1q_f32(g + i + 4, vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(vld1q_f32(g + i + 4)), vtstq_u32(b, wh))));
    }
    nst__relu_backward_scalar(g, bits, i, hi);
}
#endif
static int nst__simd_avx2(void) {
#if defined(NST__X86)
    nst_arch a = nst__cpu_arch();
    return a == NST_ARCH_AVX2 || a == NST_ARCH_AVX512;
#else
    return 0;
#endif
}
/* The pooling and ReLU-mask kernels' SIMD path for the running ISA: AVX2, or NEON (both directions). */
static int nst__simd_pool(void) {
#if defined(NST__NEON)
    return nst__cpu_arch() == NST_ARCH_NEON;
#else
    return nst__simd_avx2();
#endif
}
/* One run of n elements from element 0 of a mask byte (n % 8 == 0 unless it ends the map): its ReLU mask
 * bits, or the gradient zeroed where a bit is clear, on the running ISA's kernel. The whole-map passes
 * below and the convolutions' output strips (nst__conv_pool.obits) both go through these. */
static void nst__mask_bits_run(const float *x, unsigned char *bits, size_t n, int simd) {
    (void)simd;
#if defined(NST__X86)
    if (simd) { nst__relu_mask_bits_avx2(x, bits, 0, n); return; }
#elif defined(NST__NEON)
    if (simd) { nst__relu_mask_bits_neon(x, bits, 0, n); return; }
#endif
    nst__relu_mask_bits_scalar(x, bits, 0, n);
}
static void nst__mask_apply_run(float *g, const unsigned char *bits, size_t n, int simd) {
    (void)simd;
#if defined(NST__X86)
    if (simd) { nst__relu_backward_avx2(g, bits, 0, n); return; }
#elif defined(NST__NEON)
    if (simd) { nst__relu_backward_neon(g, bits, 0, n); return; }
#endif
    nst__relu_backward_scalar(g, bits, 0, n);
}
/* n elements in runs of NST__MASK_RUN (64 mask bytes), split evenly between threads. */
static void nst__relu_mask_bits(const float *x, unsigned char *bits, size_t n, int nthreads) {
    long nr = (long)((n + NST__MASK_RUN - 1) / NST__MASK_RUN), r;
    int simd = nst__simd_pool();
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (r = 0; r < nr; r++) {
        size_t lo = (size_t)r * NST__MASK_RUN;
        nst__mask_bits_run(x + lo, bits + lo / 8, NST__MIN((size_t)NST__MASK_RUN, n - lo), simd);
    }
}
static void nst__relu_backward(float *g, const unsigned char *bits, size_t n, int nthreads) {
    long nr = (long)((n + NST__MASK_RUN - 1) / NST__MASK_RUN), r;
    int simd = nst__simd_pool();
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (r = 0; r < nr; r++) {
        size_t lo = (size_t)r * NST__MASK_RUN;
        nst__mask_apply_run(g + lo, bits + lo / 8, NST__MIN((size_t)NST__MASK_RUN, n - lo), simd);
    }
}

/* 2x2 max pooling that records which of the four won (0..3, first maximum in row-major order). */
static void nst__maxpool_forward_rec(float *out, unsigned char *code, const float *in, int c, int h, int w, int nthreads) {
    int ch, oh = h / 2, ow = w / 2;
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (ch = 0; ch < c; ch++) {
        const float *s = in + (size_t)ch * h * w;
        float *o = out + (size_t)ch * oh * ow;
        unsigned char *k = code + (size_t)ch * oh * ow;
        int y, x;
        for (y = 0; y < oh; y++) {
            const float *r0 = s + (size_t)(2 * y) * w, *r1 = r0 + w;
            for (x = 0; x < ow; x++) {
                float m = r0[2 * x];
                int best = 0;
                if (r0[2 * x + 1] > m) { m = r0[2 * x + 1]; best = 1; }
                if (r1[2 * x] > m) { m = r1[2 * x]; best = 2; }
                if (r1[2 * x + 1] > m) { m = r1[2 * x + 1]; best = 3; }
                o[(size_t)y * ow + x] = m;
                k[(size_t)y * ow + x] = (unsigned char)best;
            }
        }
    }
}
static void nst__maxpool_backward_rec(float *din, const float *dout, const unsigned char *code, int c, int h, int w,
                                      int nthreads) {
    int ch, oh = h / 2, ow = w / 2;
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (ch = 0; ch < c; ch++) {
        const float *g = dout + (size_t)ch * oh * ow;
        const unsigned char *k = code + (size_t)ch * oh * ow;
        float *d = din + (size_t)ch * h * w;
        int y, x;
        memset(d, 0, sizeof(float) * (size_t)h * w);
        for (y = 0; y < oh; y++)
            for (x = 0; x < ow; x++) {
                int b = k[(size_t)y * ow + x];
                d[(size_t)(2 * y + (b >> 1)) * w + 2 * x + (b & 1)] = g[(size_t)y * ow + x];
            }
    }
}

/* ---- 2x2 pooling fused with the ReLU mask of its input --------------------------------------------
 * The pool reads every element of the ReLU output it pools, so it records the mask bits too (forward)
 * and applies them to the gradient it scatters (backward): the separate mask passes over the largest
 * feature maps (relu1_2, relu2_2, relu3_4, relu4_4) disappear. Needs w % 8 == 0 (every row starts a
 * mask byte); nst__pool_fusable says when. Same pooling arithmetic as the reference (avg: 0.25 *
 * (((a + b) + c) + d); max: first maximum in row-major order, its position as code 0..3). code is
 * NULL for avg. The kernels take a range of rows (forward) or one row (backward) with their own
 * strides, so the Winograd driver calls them too, on the 4-row strip of one tile row it has just
 * computed (forward) or to stage the rows its input transform reads (backward): nst__conv_pool. */
static int nst__pool_fusable(int h, int w) { return w % 8 == 0 && h >= 2; }

/* Rows [0, rows) of a map (row stride ldi), columns [0, cols), cols a multiple of 8: the rows / 2 row
 * pairs pooled into out and code (row stride ldo), the mask bits of every row into bits (the byte of
 * element (0, 0); ldb bytes per row). An odd last row only gets its bits. */
static void nst__pool_mask_rows_scalar(float *out, unsigned char *code, size_t ldo, unsigned char *bits, size_t ldb,
                                       const float *in, size_t ldi, int rows, int cols, int avg) {
    int y, x;
    for (y = 0; y < rows / 2; y++) {
        const float *r0 = in + (size_t)(2 * y) * ldi, *r1 = r0 + ldi;
        float *o = out + (size_t)y * ldo;
        unsigned char *k = code ? code + (size_t)y * ldo : NULL;
        for (x = 0; x < cols / 2; x++) {
            float a = r0[2 * x], b = r0[2 * x + 1], c = r1[2 * x], d = r1[2 * x + 1];
            if (avg) {
                o[x] = 0.25f * (a + b + c + d);
            } else {
                float m = a;
                int best = 0;
                if (b > m) { m = b; best = 1; }
                if (c > m) { m = c; best = 2; }
                if (d > m) { m = d; best = 3; }
                o[x] = m;
                k[x] = (unsigned char)best;
            }
        }
    }
    for (y = 0; y < rows; y++) nst__relu_mask_bits_scalar(in + (size_t)y * ldi, bits + (size_t)y * ldb, 0, (size_t)cols);
}

/* Element x of row y of the pooled gradient scattered back and masked (what the pool's input gets):
 * g and code are pooled row y / 2 (index x / 2), bits the row's mask bytes (index x / 8), par = y & 1. */
static float nst__unpool_at(const float *g, const unsigned char *code, const unsigned char *bits, int par, int x,
                            int avg) {
    float v = avg ? 0.25f * g[x / 2] : code[x / 2] == 2 * par + (x & 1) ? g[x / 2] : 0.0f;
    return (bits[x / 8] >> (x % 8)) & 1 ? v : 0.0f;
}
/* Columns [x0, x1) of that row into d[0 .. x1 - x0). */
static void nst__unpool_row_scalar(float *d, const float *g, const unsigned char *code, const unsigned char *bits,
                                   int par, int x0, int x1, int avg) {
    int x;
    for (x = x0; x < x1; x++) d[x - x0] = nst__unpool_at(g, code, bits, par, x, avg);
}

#if defined(NST__X86)
/* 8 outputs from 16 floats of each row: even and odd columns in order. */
static NST__TARGET_AVX2 void nst__deint_avx2(const float *p, __m256 *ev, __m256 *od) {
    __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
    *ev = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
    *od = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
}
static NST__TARGET_AVX2 void nst__pool_mask_rows_avx2(float *out, unsigned char *code, size_t ldo, unsigned char *bits,
                                                      size_t ldb, const float *in, size_t ldi, int rows, int cols,
                                                      int avg) {
    int ow = cols / 2, y, x;
    const __m256 z = _mm256_setzero_ps(), q = _mm256_set1_ps(0.25f);
    for (y = 0; y < rows / 2; y++) {
        const float *r0 = in + (size_t)(2 * y) * ldi, *r1 = r0 + ldi;
        unsigned char *b0 = bits + (size_t)(2 * y) * ldb, *b1 = b0 + ldb;
        float *o = out + (size_t)y * ldo;
        unsigned char *k = code ? code + (size_t)y * ldo : NULL;
        for (x = 0; x + 8 <= ow; x += 8) {
            __m256 a, b, c, d, m;
            nst__deint_avx2(r0 + 2 * x, &a, &b);
            nst__deint_avx2(r1 + 2 * x, &c, &d);
            b0[x / 4] = (unsigned char)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(r0 + 2 * x), z, _CMP_GT_OQ));
            b0[x / 4 + 1] = (unsigned char)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(r0 + 2 * x + 8), z, _CMP_GT_OQ));
            b1[x / 4] = (unsigned char)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(r1 + 2 * x), z, _CMP_GT_OQ));
            b1[x / 4 + 1] = (unsigned char)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(r1 + 2 * x + 8), z, _CMP_GT_OQ));
            if (avg) {
                m = _mm256_mul_ps(q, _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a, b), c), d));
            } else {
                __m256 sb = _mm256_cmp_ps(b, a, _CMP_GT_OQ), sc, sd;
                __m256i cd;
                m = _mm256_blendv_ps(a, b, sb);
                sc = _mm256_cmp_ps(c, m, _CMP_GT_OQ);
                m = _mm256_blendv_ps(m, c, sc);
                sd = _mm256_cmp_ps(d, m, _CMP_GT_OQ);
                m = _mm256_blendv_ps(m, d, sd);
                /* code: 3 if d won, else 2 if c, else 1 if b, else 0 (masks are all-ones lanes) */
                cd = _mm256_blendv_epi8(_mm256_blendv_epi8(_mm256_and_si256(_mm256_castps_si256(sb), _mm256_set1_epi32(1)),
                                                           _mm256_set1_epi32(2), _mm256_castps_si256(sc)),
                                        _mm256_set1_epi32(3), _mm256_castps_si256(sd));
                cd = _mm256_packus_epi32(cd, cd);                       /* 16-bit, per 128-bit lane */
                cd = _mm256_packus_epi16(cd, cd);                       /* 8-bit */
                {
                    uint32_t lo = (uint32_t)_mm_cvtsi128_si32(_mm256_castsi256_si128(cd));
                    uint32_t hi = (uint32_t)_mm_cvtsi128_si32(_mm256_extracti128_si256(cd, 1));
                    memcpy(k + x, &lo, 4);
                    memcpy(k + x + 4, &hi, 4);
                }
            }
            _mm256_storeu_ps(o + x, m);
        }
        if (x < ow) {   /* ow % 8 == 4 here (cols % 8 == 0): the last 8 columns' outputs and mask bytes */
            size_t c0 = (size_t)(2 * x);
            nst__pool_mask_rows_scalar(o + x, k ? k + x : NULL, ldo, b0 + c0 / 8, ldb, r0 + c0, ldi, 2, cols - (int)c0,
                                       avg);
        }
    }
    if (rows & 1) nst__relu_mask_bits_avx2(in + (size_t)(rows - 1) * ldi, bits + (size_t)(rows - 1) * ldb, 0, (size_t)cols);
}
static NST__TARGET_AVX2 void nst__unpool_row_avx2(float *d, const float *g, const unsigned char *code,
                                                  const unsigned char *bits, int par, int x0, int x1, int avg) {
    const __m256 q = _mm256_set1_ps(0.25f);
    const __m256i ca = _mm256_set1_epi32(2 * par), cb = _mm256_set1_epi32(2 * par + 1);
    int x = x0;
    for (; x < x1 && (x & 7); x++) d[x - x0] = nst__unpool_at(g, code, bits, par, x, avg);
    for (; x + 16 <= x1; x += 16) {   /* 8 pooled elements: columns x .. x + 15, mask bytes x / 8 and x / 8 + 1 */
        __m256 gv = _mm256_loadu_ps(g + x / 2), ga, gb, lo, hi;
        if (avg) {
            ga = gb = _mm256_mul_ps(q, gv);
        } else {
            __m256i cd = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(code + x / 2)));
            ga = _mm256_and_ps(gv, _mm256_castsi256_ps(_mm256_cmpeq_epi32(cd, ca)));
            gb = _mm256_and_ps(gv, _mm256_castsi256_ps(_mm256_cmpeq_epi32(cd, cb)));
        }
        lo = _mm256_unpacklo_ps(ga, gb); hi = _mm256_unpackhi_ps(ga, gb);
        _mm256_storeu_ps(d + (x - x0), _mm256_and_ps(_mm256_permute2f128_ps(lo, hi, 0x20), nst__bits_to_mask_avx2(bits[x / 8])));
        _mm256_storeu_ps(d + (x - x0) + 8, _mm256_and_ps(_mm256_permute2f128_ps(lo, hi, 0x31), nst__bits_to_mask_avx2(bits[x / 8 + 1])));
    }
    for (; x < x1; x++) d[x - x0] = nst__unpool_at(g, code, bits, par, x, avg);
}
#endif

#if defined(NST__NEON)
/* The same contract and bytes as nst__pool_mask_rows_scalar. ld2 splits each row's 8 floats into even
 * and odd columns, so a, b, c, d are the 4 windows' elements; the mask byte of those 8 floats is the
 * lane sum of the compares weighted 1, 4, 16, 64 (even) and 2, 8, 32, 128 (odd), two pairwise adds for
 * both rows at once. Max selects with bsl on strict compares in the reference's order (first maximum
 * wins; vmaxq would also differ from it on -0 against +0); the codes narrow 32 -> 8 bits. cols % 8 == 0,
 * so the outputs come in whole groups of 4 and there is no tail. bench/neon_profile.sh --size 128 (one
 * evaluation of the random model, the forward pools of relu1_2 .. relu4_4): 27.4M instructions in the
 * scalar kernel, 4.37M in this one, ~2.3 per input element (loss unchanged, 3324.95). */
static void nst__pool_mask_rows_neon(float *out, unsigned char *code, size_t ldo, unsigned char *bits, size_t ldb,
                                     const float *in, size_t ldi, int rows, int cols, int avg) {
    static const uint32_t wts[8] = {1, 4, 16, 64, 2, 8, 32, 128};
    const uint32x4_t we = vld1q_u32(wts), wo = vld1q_u32(wts + 4);
    const uint32x4_t c1 = vdupq_n_u32(1), c2 = vdupq_n_u32(2), c3 = vdupq_n_u32(3);
    const float32x4_t z = vdupq_n_f32(0.0f), q = vdupq_n_f32(0.25f);
    int ow = cols / 2, y, x;
    for (y = 0; y < rows / 2; y++) {
        const float *r0 = in + (size_t)(2 * y) * ldi, *r1 = r0 + ldi;
        unsigned char *b0 = bits + (size_t)(2 * y) * ldb, *b1 = b0 + ldb;
        float *o = out + (size_t)y * ldo;
        unsigned char *k = code ? code + (size_t)y * ldo : NULL;
        for (x = 0; x < ow; x += 4) {
            float32x4x2_t p0 = vld2q_f32(r0 + 2 * x), p1 = vld2q_f32(r1 + 2 * x);
            float32x4_t a = p0.val[0], b = p0.val[1], c = p1.val[0], d = p1.val[1], m;
            uint32x4_t m0 = vorrq_u32(vandq_u32(vcgtq_f32(a, z), we), vandq_u32(vcgtq_f32(b, z), wo));
            uint32x4_t m1 = vorrq_u32(vandq_u32(vcgtq_f32(c, z), we), vandq_u32(vcgtq_f32(d, z), wo));
            uint8x16_t mb;
            m0 = vpaddq_u32(m0, m1);                              /* row 0: lanes 0, 1; row 1: lanes 2, 3 */
            mb = vreinterpretq_u8_u32(vpaddq_u32(m0, m0));        /* row 0's byte in lane 0, row 1's in 4 */
            vst1q_lane_u8(b0 + x / 4, mb, 0);
            vst1q_lane_u8(b1 + x / 4, mb, 4);
            if (avg) {
                m = vmulq_f32(q, vaddq_f32(vaddq_f32(vaddq_f32(a, b), c), d));
            } else {
                uint32x4_t sb = vcgtq_f32(b, a), sc, sd, cd;
                uint8x8_t c8;
                uint32_t c4;
                m = vbslq_f32(sb, b, a);
                sc = vcgtq_f32(c, m);
                m = vbslq_f32(sc, c, m);
                sd = vcgtq_f32(d, m);
                m = vbslq_f32(sd, d, m);
                /* code: 3 if d won, else 2 if c, else 1 if b, else 0 */
                cd = vbslq_u32(sd, c3, vbslq_u32(sc, c2, vandq_u32(sb, c1)));
                c8 = vmovn_u16(vcombine_u16(vmovn_u32(cd), vmovn_u32(cd)));
                c4 = vget_lane_u32(vreinterpret_u32_u8(c8), 0);
                memcpy(k + x, &c4, 4);
            }
            vst1q_f32(o + x, m);
        }
    }
    if (rows & 1) nst__relu_mask_bits_neon(in + (size_t)(rows - 1) * ldi, bits + (size_t)(rows - 1) * ldb, 0, (size_t)cols);
}
/* nst__unpool_row_avx2's NEON form, 8 columns (4 pooled elements, one mask byte) a step. The scalar row
 * (nst__unpool_at per element) took 56M of a 128 px evaluation's instructions (the fused pools' backward),
 * this one 7.4M (bench/neon_profile.sh; with the ReLU-mask kernels above the evaluation 1.95e9 -> 1.79e9). */
static void nst__unpool_row_neon(float *d, const float *g, const unsigned char *code, const unsigned char *bits,
                                 int par, int x0, int x1, int avg) {
    const uint32x4_t wl = vld1q_u32(nst__lane_bits_neon), wh = vld1q_u32(nst__lane_bits_neon + 4);
    const uint32x4_t ca = vdupq_n_u32((uint32_t)(2 * par)), cb = vdupq_n_u32((uint32_t)(2 * par + 1));
    int x = x0;
    for (; x < x1 && (x & 7); x++) d[x - x0] = nst__unpool_at(g, code, bits, par, x, avg);
    for (; x + 8 <= x1; x += 8) {
        float32x4_t gv = vld1q_f32(g + x / 2), ga, gb;
        uint32x4_t b = vdupq_n_u32(bits[x / 8]);
        if (avg) {
            ga = gb = vmulq_n_f32(gv, 0.25f);
        } else {
            uint32_t c4;
            uint32x4_t cd;
            memcpy(&c4, code + x / 2, 4);
            cd = vmovl_u16(vget_low_u16(vmovl_u8(vcreate_u8((uint64_t)c4))));
            ga = vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(gv), vceqq_u32(cd, ca)));
            gb = vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(gv), vceqq_u32(cd, cb)));
        }
        vst1q_f32(d + (x - x0), vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(vzip1q_f32(ga, gb)), vtstq_u32(b, wl))));
        vst1q_f32(d + (x - x0) + 4, vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(vzip2q_f32(ga, gb)), vtstq_u32(b, wh))));
    }
    for (; x < x1; x++) d[x - x0] = nst__unpool_at(g, code, bits, par, x, avg);
}
#endif

static void nst__pool_mask_rows(float *out, unsigned char *code, size_t ldo, unsigned char *bits, size_t ldb,
                                const float *in, size_t ldi, int rows, int cols, int avg, int simd) {
    (void)simd;
#if defined(NST__X86)
    if (simd) { nst__pool_mask_rows_avx2(out, code, ldo, bits, ldb, in, ldi, rows, cols, avg); return; }
#endif
#if defined(NST__NEON)
    if (simd) { nst__pool_mask_rows_neon(out, code, ldo, bits, ldb, in, ldi, rows, cols, avg); return; }
#endif
    nst__pool_mask_rows_scalar(out, code, ldo, bits, ldb, in, ldi, rows, cols, avg);
}
static void nst__unpool_row(float *d, const float *g, const unsigned char *code, const unsigned char *bits, int par,
                            int x0, int x1, int avg, int simd) {
    (void)simd;
#if defined(NST__X86)
    if (simd) { nst__unpool_row_avx2(d, g, code, bits, par, x0, x1, avg); return; }
#endif
#if defined(NST__NEON)
    if (simd) { nst__unpool_row_neon(d, g, code, bits, par, x0, x1, avg); return; }
#endif
    nst__unpool_row_scalar(d, g, code, bits, par, x0, x1, avg);
}

/* Whole maps, threads taking whole channels. */
static void nst__pool_mask_forward(float *out, unsigned char *code, unsigned char *bits, const float *in, int c, int h,
                                   int w, int avg, int nthreads) {
    int ch, simd = nst__simd_pool();
    size_t hw = (size_t)h * w, ohw = (size_t)(h / 2) * (w / 2);
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (ch = 0; ch < c; ch++)
        nst__pool_mask_rows(out + ch * ohw, avg ? NULL : code + ch * ohw, (size_t)(w / 2), bits + ch * hw / 8,
                            (size_t)(w / 8), in + ch * hw, (size_t)w, h, w, avg, simd);
}
static void nst__pool_mask_backward(float *din, const float *dout, const unsigned char *code, const unsigned char *bits,
                                    int c, int h, int w, int avg, int nthreads) {
    int ch, simd = nst__simd_pool(), ow = w / 2;
    size_t hw = (size_t)h * w, ohw = (size_t)(h / 2) * ow;
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (ch = 0; ch < c; ch++) {
        int y;
        for (y = 0; y < h; y++) {
            size_t e = ch * hw + (size_t)y * w, p = ch * ohw + (size_t)(y / 2) * ow;
            if (y < h / 2 * 2)
                nst__unpool_row(din + e, dout + p, avg ? NULL : code + p, bits + e / 8, y & 1, 0, w, avg, simd);
            else
                memset(din + e, 0, sizeof(float) * (size_t)w);   /* an odd last row is not pooled */
        }
    }
}

/* d[i] = s[i] a (+ b unless nob), n elements: restrict pointers and a count gcc -O2 knows divides by the
 * vector width let it vectorize (x86 SSE; the same arithmetic per element, so the same bits). */
static void nst__affine_run(float *NST__RESTRICT d, const float *NST__RESTRICT s, size_t n, float a, float b, int nob) {
    size_t i, m = n & ~(size_t)7;
    if (nob) {
        for (i = 0; i < m; i++) d[i] = s[i] * a;
        for (; i < n; i++) d[i] = s[i] * a;
    } else {
        for (i = 0; i < m; i++) d[i] = s[i] * a + b;
        for (; i < n; i++) d[i] = s[i] * a + b;
    }
}
/* Plane c of dst = plane src_of[c] of src times a[c] plus b[c] (b NULL: nothing added, so -0 stays -0),
 * 3 planes of hw, on all threads in runs of 16K floats. At 512 px the preprocessing and the pixel
 * gradient each took ~1 ms per evaluation on one thread, unvectorized (2 threads now: ~0.4 ms each). */
static void nst__affine_planes(float *dst, const float *src, const int src_of[3], const float a[3], const float b[3],
                               size_t hw, int nthreads) {
    long nr = (long)((hw + 16383) / 16384), r;
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static) if (hw >= 65536)
#endif
    for (r = 0; r < 3 * nr; r++) {
        size_t lo = (size_t)(r % nr) * 16384;
        int c = (int)(r / nr);
        nst__affine_run(dst + (size_t)c * hw + lo, src + (size_t)src_of[c] * hw + lo, NST__MIN((size_t)16384, hw - lo),
                        a[c], b ? b[c] : 0.0f, !b);
    }
}

/* Pixels (planar RGB, 0..255) to network input under the model's convention. */
static void nst__preprocess(const nst_input_convention *cv, const float *px, float *in, size_t hw, int nthreads) {
    int c, src_of[3];
    float a[3], b[3];
    for (c = 0; c < 3; c++) {
        src_of[c] = cv->bgr ? 2 - c : c;
        a[c] = cv->scale / (255.0f * cv->std[c]);
        b[c] = -cv->mean[c] / cv->std[c];
    }
    nst__affine_planes(in, px, src_of, a, b, hw, nthreads);
}

/* Whether pool layer l records (forward) and applies (backward) the mask of the ReLU before it: when
 * that ReLU was fused into its conv, is not a loss layer (its gradient gets the loss added before the
 * mask) and the map's width suits the fused kernel. */
static int nst__pool_masks(const nst__net *n, int l) {
    return l >= 2 && l <= n->last && nst__layer_type(l) == NST__L_POOL && nst__layer_type(l - 1) == NST__L_RELU &&
           !n->keep[l - 1] && !n->keep[l - 2] && nst__pool_fusable(n->h_[l - 1], n->w_[l - 1]);
}

/* Whether conv layer l (convolution ci) runs with the ReLU and the masked pool after it fused into its
 * Winograd driver (nst__conv_forward_pool; d = 1: nst__conv_backward_fused), so that the ReLU's
 * full-resolution map (forward) and the pool's full-resolution gradient (backward) are never written.
 * Where it does not (hooks or crops at l or l + 1, the reflection padding's fix-up paths in forward,
 * the direct algorithm), the conv and nst__pool_mask_forward / _backward run apart: the same bytes. In
 * backward the reflection's border fix unpools the few values it reads itself (nst__unpooled_at). */
static int nst__net_pool_fuses(const nst__net *n, int l, int ci, int d) {
    const nst_model *m = n->m;
    int h, w;
    if (l < 0 || !nst__pool_masks(n, l + 2) || nst__layer_type(l) != NST__L_CONV) return 0;
    h = l ? n->h_[l - 1] : n->h;
    w = l ? n->w_[l - 1] : n->w;
    if (n->h_[l] != h || n->w_[l] != w || n->watch[l] || n->watch[l + 1]) return 0;
    if (m->reflect && d == 0 && !nst__conv_forward_pads(m->plan[ci])) return 0;
    return nst__conv_pool_fuses(m->plan[ci], d, h, w);
}

/* Whether the mask of a ReLU beside conv layer l (convolution ci) goes through that convolution's output
 * strips (nst__conv_pool.obits) rather than a pass over the map of its own: d = 0, ReLU l + 1's bits,
 * recorded by the forward (its ReLU fused); d = 1, ReLU l - 1's, applied by the backward-data. Only
 * where such a pass would run (the ReLU neither a loss layer nor masked by a pool after it: relu3_2,
 * relu3_3 and relu4_3 of VGG-19 at the default layers), on the Winograd path with w % 8 == 0, without
 * a crop at l, and in forward not on the reflection's fix-up paths (they rewrite the border after). */
static int nst__net_mask_fuses(const nst__net *n, int l, int ci, int d) {
    const nst_model *m = n->m;
    int r = d ? l - 1 : l + 1, h, w;
    if (nst__layer_type(l) != NST__L_CONV || r < 1 || r > n->last || nst__layer_type(r) != NST__L_RELU) return 0;
    if (n->keep[r] || nst__pool_masks(n, r + 1)) return 0;
    h = l ? n->h_[l - 1] : n->h;
    w = l ? n->w_[l - 1] : n->w;
    if (n->h_[l] != h || n->w_[l] != w) return 0;
    if (d == 0 && (n->keep[l] || n->watch[l] || (m->reflect && !nst__conv_forward_pads(m->plan[ci])))) return 0;
    return nst__conv_pool_fuses(m->plan[ci], d, h, w);
}

static float *nst__net_other(nst__net *n, const float *cur) { return cur == n->buf[0] ? n->buf[1] : n->buf[0]; }

/* In place: rows [y0, y0 + ch) and columns [x0, x0 + cw) of each of c planes of h x w, packed as c x ch x cw
 * (nst__net.crop_y). Every row moves to a lower address, so going forward never overwrites unread rows. */
static void nst__crop_planes(float *p, int c, int h, int w, int y0, int x0, int ch, int cw) {
    int k, y;
    for (k = 0; k < c; k++)
        for (y = 0; y < ch; y++)
            memmove(p + ((size_t)k * ch + y) * cw, p + ((size_t)k * h + y0 + y) * w + x0, sizeof(float) * (size_t)cw);
}
/* The inverse, the zeros around included: every row moves up, so it goes backward (a row's margins
 * only after it moved: the row's own source may lie there). */
static void nst__uncrop_planes(float *p, int c, int h, int w, int y0, int x0, int ch, int cw) {
    int k, y;
    for (k = c - 1; k >= 0; k--) {
        float *d = p + (size_t)k * h * w;
        memset(d + (size_t)(y0 + ch) * w, 0, sizeof(float) * (size_t)(h - y0 - ch) * w);
        for (y = ch - 1; y >= 0; y--) {
            float *r = d + (size_t)(y0 + y) * w;
            memmove(r + x0, p + ((size_t)k * ch + y) * cw, sizeof(float) * (size_t)cw);
            memset(r, 0, sizeof(float) * (size_t)x0);
            memset(r + x0 + cw, 0, sizeof(float) * (size_t)(w - x0 - cw));
        }
        memset(d, 0, sizeof(float) * (size_t)y0 * w);
    }
}

/* Calls the hook after layer l (see nst__net.watch); scratch is the buffer that does not hold out. */
static nst_status nst__net_hook(nst__net *n, int l, const float *out, double *tp) {
    uintptr_t p = (uintptr_t)out, b0 = (uintptr_t)n->buf[0];
    nst_status st;
    if (!n->hook || !n->watch[l]) return NST_OK;
    st = n->hook(n->hook_ctx, l, out, p >= b0 && p < b0 + n->buf_elems * sizeof(float) ? n->buf[1] : n->buf[0]);
    *tp = nst__prof_now(n);
    return st;
}

/* pixels NULL: from the kept input of the last call (a packed net with an input buffer). */
static nst_status nst__net_forward(nst__net *n, const float *pixels) {
    const nst_model *m = n->m;
    float *cur = n->input ? n->input : n->buf[0];
    int l, ci = 0, c = 3, h = n->h, w = n->w;
    nst_status st;
    double tp = nst__prof_now(n);
    if (pixels) nst__preprocess(&m->conv, pixels, cur, (size_t)h * w, n->nthreads);
    tp = nst__prof(n, NST__PROF_PRE, tp);
    for (l = 0; l <= n->last; l++) {
        int t = nst__layer_type(l);
        size_t el = (size_t)n->c_[l] * n->h_[l] * n->w_[l];
        float *out = n->feat[l] ? n->feat[l] : nst__net_other(n, cur);
        if (t == NST__L_CONV && nst__net_pool_fuses(n, l, ci, 0)) {   /* conv, ReLU and pool in one pass */
            out = n->feat[l + 2] ? n->feat[l + 2] : nst__net_other(n, cur);
            if ((st = nst__conv_forward_pool(m->plan[ci], cur, out, n->rec[l + 2], n->rec[l + 1], h, w, n->avg,
                                             m->reflect ? NST__CONV_PAD_BLEND : NST__CONV_PAD_ZERO, n->nthreads,
                                             nst__net_cws(n, ci))) != NST_OK)
                return st;
            c = m->cout[ci++];
            tp = nst__prof(n, NST__PROF_FWD + l, tp);
            l += 2;
            h /= 2; w /= 2;
            if (n->h_[l] != h || n->w_[l] != w) {
                nst__crop_planes(out, c, h, w, n->crop_y[l], n->crop_x[l], n->h_[l], n->w_[l]);
                h = n->h_[l]; w = n->w_[l];
            }
        } else if (t == NST__L_CONV) {
            /* fuse the ReLU unless the pre-activation itself is a loss layer */
            int fuse = l + 1 <= n->last && !n->keep[l] && !n->watch[l], mfuse = fuse && nst__net_mask_fuses(n, l, ci, 0);
            if (fuse) out = n->feat[l + 1] ? n->feat[l + 1] : nst__net_other(n, cur);
            if (mfuse) {   /* the ReLU's mask bits too, strip by strip */
                if ((st = nst__conv_forward_mask(m->plan[ci], cur, out, n->rec[l + 1], h, w,
                                                 m->reflect ? NST__CONV_PAD_BLEND : NST__CONV_PAD_ZERO, n->nthreads,
                                                 nst__net_cws(n, ci))) != NST_OK)
                    return st;
            } else if (m->reflect && nst__conv_forward_pads(m->plan[ci])) {   /* the engine pads, fuses its ReLU */
                if ((st = nst__conv_forward_pad(m->plan[ci], cur, out, h, w, fuse, NST__CONV_PAD_BLEND, n->nthreads,
                                                nst__net_cws(n, ci))) != NST_OK)
                    return st;
            } else if (m->reflect && !(fuse && nst__reflect_border_pays(m->cin[ci], h, w))) {
                /* the border fix goes in before the ReLU, so the engine's ReLU is not fused */
                if ((st = nst__conv_forward(m->plan[ci], cur, out, h, w, 0, n->nthreads, nst__net_cws(n, ci))) != NST_OK ||
                    (st = nst__reflect_fix_forward(m, ci, cur, out, h, w, n->nthreads, n->pad_scratch)) != NST_OK)
                    return st;
                c = m->cout[ci++];
                if (n->h_[l] != h || n->w_[l] != w) {
                    nst__crop_planes(out, c, h, w, n->crop_y[l], n->crop_x[l], n->h_[l], n->w_[l]);
                    h = n->h_[l]; w = n->w_[l];
                }
                tp = nst__prof(n, NST__PROF_FWD + l, tp);
                if (fuse) {
                    l++;
                    nst__relu_forward(out, out, n->rec[l], el, n->nthreads);
                }
                cur = out;
                tp = nst__prof(n, NST__PROF_FWD + l, tp);
                if ((st = nst__net_hook(n, l, out, &tp)) != NST_OK) return st;
                continue;
            } else if ((st = nst__conv_forward(m->plan[ci], cur, out, h, w, fuse, n->nthreads, nst__net_cws(n, ci))) != NST_OK ||
                       (m->reflect &&
                        (st = nst__reflect_border_forward(m, ci, cur, out, h, w, 1, n->nthreads, n->pad_scratch)) != NST_OK)) {
                return st;
            }
            c = m->cout[ci++];
            if (n->h_[l] != h || n->w_[l] != w) {
                nst__crop_planes(out, c, h, w, n->crop_y[l], n->crop_x[l], n->h_[l], n->w_[l]);
                h = n->h_[l]; w = n->w_[l];
            }
            tp = nst__prof(n, NST__PROF_FWD + l, tp);
            if (fuse) {
                l++;
                /* a pool right after records this mask while it reads the map anyway */
                if (!mfuse && !nst__pool_masks(n, l + 1) && !n->keep[l]) nst__relu_mask_bits(out, n->rec[l], el, n->nthreads);
            }
        } else if (t == NST__L_RELU) {
            nst__relu_forward(out, cur, n->rec[l], el, n->nthreads);
        } else {
            if (nst__pool_masks(n, l))
                nst__pool_mask_forward(out, n->rec[l], n->rec[l - 1], cur, c, h, w, n->avg, n->nthreads);
            else if (n->avg) nst__pool_forward(out, cur, c, h, w, 1, n->nthreads);
            else nst__maxpool_forward_rec(out, n->rec[l], cur, c, h, w, n->nthreads);
            h /= 2; w /= 2;
            if (n->h_[l] != h || n->w_[l] != w) {
                nst__crop_planes(out, c, h, w, n->crop_y[l], n->crop_x[l], n->h_[l], n->w_[l]);
                h = n->h_[l]; w = n->w_[l];
            }
        }
        tp = nst__prof(n, NST__PROF_FWD + l, tp);
        cur = out;
        if ((st = nst__net_hook(n, l, out, &tp)) != NST_OK) return st;
    }
    n->out = cur;
    return NST_OK;
}

/* Adds d loss / d (output of layer) into g, given the layer's kept features; scratch has room for
 * one more feature map of that layer. At a ReLU layer it then applies the ReLU's backward too (g = 0
 * where feat <= 0, which is where the pre-activation was <= 0), so it can do so block by block while
 * the block is in cache; those layers record no mask bits in the forward pass. Returns NST_OK, or why
 * it could not (out of memory for the GEMM's packing), which backward passes on. */
typedef nst_status (*nst__lossgrad_fn)(void *ctx, int layer, const float *feat, float *g, float *scratch);

/* The output of layer l (relu1_1: nst__net_init_packed recomputes no other) into dst, as forward made it. */
static nst_status nst__net_recompute(nst__net *n, int l, float *dst) {
    const nst_model *m = n->m;
    size_t el = (size_t)n->c_[l] * n->h_[l] * n->w_[l];
    nst_status st;
    NST_ASSERT(l == 1 && n->input);
    if (m->reflect && nst__conv_forward_pads(m->plan[0]))   /* as forward does it */
        return nst__conv_forward_pad(m->plan[0], n->input, dst, n->h, n->w, 1, NST__CONV_PAD_BLEND, n->nthreads,
                                     nst__net_cws(n, 0));
    if (!m->reflect || nst__reflect_border_pays(m->cin[0], n->h, n->w)) {
        if ((st = nst__conv_forward(m->plan[0], n->input, dst, n->h, n->w, 1, n->nthreads, nst__net_cws(n, 0))) != NST_OK)
            return st;
        return m->reflect ? nst__reflect_border_forward(m, 0, n->input, dst, n->h, n->w, 1, n->nthreads, n->pad_scratch)
                          : NST_OK;
    }
    if ((st = nst__conv_forward(m->plan[0], n->input, dst, n->h, n->w, 0, n->nthreads, nst__net_cws(n, 0))) != NST_OK ||
        (st = nst__reflect_fix_forward(m, 0, n->input, dst, n->h, n->w, n->nthreads, n->pad_scratch)) != NST_OK)
        return st;
    nst__relu_forward(dst, dst, n->rec[l], el, n->nthreads);
    return NST_OK;
}

/* Backward from the deepest layer to the pixels; grad_pixels is [3][h][w]. */
static nst_status nst__net_backward(nst__net *n, nst__lossgrad_fn lossgrad, void *ctx, float *grad_pixels) {
    const nst_model *m = n->m;
    float *g = n->buf[0];
    int l, ci = nst__layer_conv(n->last), masked = 0;   /* masked: the conv above applied this ReLU's mask */
    size_t hw = (size_t)n->h * n->w;
    nst_status st;
    double tp = nst__prof_now(n);
    memset(g, 0, sizeof(float) * (size_t)n->c_[n->last] * n->h_[n->last] * n->w_[n->last]);
    for (l = n->last; l >= 0; l--) {
        int t = nst__layer_type(l), padded;
        int inc = l ? n->c_[l - 1] : 3, inh = l ? n->h_[l - 1] : n->h, inw = l ? n->w_[l - 1] : n->w;
        size_t el = (size_t)n->c_[l] * n->h_[l] * n->w_[l];
        float *other = nst__net_other(n, g);
        nst__conv_pool fu, *pooled = NULL;
        if (n->keep[l]) {
            if (n->recompute[l]) {   /* into the free buffer, which the loss gradient then does not use */
                if ((st = nst__net_recompute(n, l, other)) != NST_OK) return st;
                tp = nst__prof(n, NST__PROF_RECOMPUTE, tp);
                if ((st = lossgrad(ctx, l, other, g, NULL)) != NST_OK) return st;
            } else if ((st = lossgrad(ctx, l, n->feat[l], g, other)) != NST_OK) {
                return st;
            }
            tp = nst__prof(n, NST__PROF_LOSSGRAD + l, tp);
        }
        if (t == NST__L_RELU) {
            if (!masked && !nst__pool_masks(n, l + 1) && !n->keep[l]) nst__relu_backward(g, n->rec[l], el, n->nthreads);
            masked = 0;
        } else if (t == NST__L_POOL) {
            if (n->h_[l] != inh / 2 || n->w_[l] != inw / 2)
                nst__uncrop_planes(g, inc, inh / 2, inw / 2, n->crop_y[l], n->crop_x[l], n->h_[l], n->w_[l]);
            if (nst__net_pool_fuses(n, l - 2, ci, 1)) {   /* the conv below reads g through the pool itself */
                tp = nst__prof(n, NST__PROF_BWD + l, tp);
                continue;
            }
            if (nst__pool_masks(n, l))
                nst__pool_mask_backward(other, g, n->rec[l], n->rec[l - 1], inc, inh, inw, n->avg, n->nthreads);
            else if (n->avg) nst__pool_backward(other, g, NULL, inc, inh, inw, 1, n->nthreads);
            else nst__maxpool_backward_rec(other, g, n->rec[l], inc, inh, inw, n->nthreads);
            g = other;
        } else {
            if (n->h_[l] != inh || n->w_[l] != inw)
                nst__uncrop_planes(g, n->c_[l], inh, inw, n->crop_y[l], n->crop_x[l], n->h_[l], n->w_[l]);
            masked = nst__net_mask_fuses(n, l, ci, 1);
            memset(&fu, 0, sizeof fu);
            if (nst__net_pool_fuses(n, l, ci, 1)) {
                fu.dout = g; fu.code = n->avg ? NULL : n->rec[l + 2]; fu.bits = n->rec[l + 1]; fu.avg = n->avg;
                pooled = &fu;
            }
            if (masked) fu.obits = n->rec[l - 1];
            fu.simd = nst__simd_pool();
            padded = m->reflect && !pooled && !masked && nst__conv_backward_pads(m->plan[ci], inh, inw);
            if (pooled || masked)
                st = nst__conv_backward_fused(m->plan[ci], &fu, g, other, inh, inw, n->nthreads, nst__net_cws(n, ci));
            else
                st = nst__conv_backward_data_pad(m->plan[ci], g, other, inh, inw,
                                                 padded ? NST__CONV_PAD_BLEND : NST__CONV_PAD_ZERO, n->nthreads,
                                                 nst__net_cws(n, ci));
            if (st != NST_OK) return st;
            /* the border fix reads the output gradient along the sides only: unpooled there when it is pooled */
            if (m->reflect && !padded &&
                (st = nst__reflect_fix_backward_up(m, ci, g, pooled, other, inh, inw, n->nthreads, n->pad_scratch)) != NST_OK)
                return st;
            if (m->reflect && masked) nst__mask_border(other, n->rec[l - 1], inc, inh, inw, n->nthreads);   /* what the fix added */
            ci--;
            g = other;
        }
        tp = nst__prof(n, NST__PROF_BWD + l, tp);
    }
    {   /* pixel plane j from network plane (bgr ? 2 - j : j): the preprocessing's scale, no offset */
        const nst_input_convention *cv = &m->conv;
        int j, src_of[3];
        float a[3];
        for (j = 0; j < 3; j++) {
            src_of[j] = cv->bgr ? 2 - j : j;
            a[j] = cv->scale / (255.0f * cv->std[src_of[j]]);
        }
        nst__affine_planes(grad_pixels, g, src_of, a, NULL, hw, n->nthreads);
    }
    nst__prof(n, NST__PROF_PIXGRAD, tp);
    return NST_OK;
}

/* ---- the random model ----------------------------------------------------------------------------
 * He-initialised VGG-19 whose layers are rescaled, one scalar per layer, so the mean post-ReLU
 * activation on a fixed calibration image is the same at every layer (the "normalised VGG" of Gatys
 * et al.); without it activations vanish or explode over 16 layers and the style loss barely moves
 * (DESIGN 5b). The common mean is 10, not 1: content loss scales with its square and style loss with
 * its fourth power, so at 10 jcjohnson's default weights (content 5, style 100) strike the balance that
 * style weight 1e4 strikes at 1, and the gradients are large enough that torch-style L-BFGS (unit step,
 * curvature pairs below 1e-10 dropped) does not crawl: at 1 it spent its first ~10 iterations as
 * plain gradient descent with steps too small to measure curvature. */
#define NST__RANDOM_MEAN 10.0

static void nst__calibration_image(float *px, int h, int w, unsigned long long seed) {
    nst__rng r;
    int c, k, y, x;
    r.s = seed ^ 0x5DEECE66DULL;
    for (c = 0; c < 3; c++) {
        float *p = px + (size_t)c * h * w;
        double fx[6], fy[6], ph[6], amp[6];
        for (k = 0; k < 6; k++) {
            fx[k] = 0.5 + 6.0 * nst__rng_uniform(&r);
            fy[k] = 0.5 + 6.0 * nst__rng_uniform(&r);
            ph[k] = 6.283185307 * nst__rng_uniform(&r);
            amp[k] = 20.0 + 20.0 * nst__rng_uniform(&r);
        }
        for (y = 0; y < h; y++)
            for (x = 0; x < w; x++) {
                double v = 128.0 + 10.0 * nst__rng_normal(&r);
                for (k = 0; k < 6; k++) v += amp[k] * sin(6.283185307 * (fx[k] * x / w + fy[k] * y / h) + ph[k]);
                p[(size_t)y * w + x] = (float)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    }
}

NSTDEF nst_status nst_model_random(unsigned long long seed, nst_model **out) {
    int cin[NST_VGG_CONVS], i;
    const int cal = 64;
    nst_model *m;
    nst_status st;
    nst__rng r;
    float *px;
    if (!out) return nst__err(NST_ERR_ARGUMENT, "model: NULL output");
    *out = NULL;
    for (i = 0; i < NST_VGG_CONVS; i++) cin[i] = i ? nst__vgg_cout[i - 1] : 3;
    if ((st = nst__model_alloc(NST_VGG_CONVS, cin, nst__vgg_cout, &m)) != NST_OK) return st;
    m->is_random = 1;
    m->reflect = 1;
    m->pool = NST_POOL_AVG;
    m->conv.bgr = 0;
    m->conv.scale = 255.0f;
    m->conv.mean[0] = 123.68f; m->conv.mean[1] = 116.779f; m->conv.mean[2] = 103.939f;
    m->conv.std[0] = m->conv.std[1] = m->conv.std[2] = 1.0f;
    /* 20M normal draws, one stream: ~0.9 s on one Zen 3 core (log and cos per weight), as long as an
     * evaluation at 512 px. Chunks of the stream start where the counter state says, on all threads: the
     * same weights, bit for bit, in a fraction of the time. */
    r.s = seed;
    for (i = 0; i < NST_VGG_CONVS; i++) {
        size_t nw = (size_t)m->cout[i] * m->cin[i] * 9;
        long nb = (long)((nw + 65535) / 65536), b;
        double sd = sqrt(2.0 / (9.0 * m->cin[i]));
        float *wt = m->w[i];
        const nst__rng r0 = r;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nst__resolve_threads(0)) schedule(static) if (nb > 1)
#endif
        for (b = 0; b < nb; b++) {
            nst__rng q = r0;
            size_t k, k0 = (size_t)b * 65536, k1 = NST__MIN(nw, k0 + 65536);
            nst__rng_skip(&q, 2 * (uint64_t)k0);   /* two draws per normal */
            for (k = k0; k < k1; k++) wt[k] = (float)(sd * nst__rng_normal(&q));
        }
        nst__rng_skip(&r, 2 * (uint64_t)nw);
        memset(m->b[i], 0, sizeof(float) * (size_t)m->cout[i]);
    }
    if ((st = nst__model_finish(m)) != NST_OK) { nst_model_free(m); return st; }
    /* calibrate in one forward pass: scale each layer's output (and filters) so its mean is 1, then
     * feed the scaled output on, which is what the next layer sees after rescaling */
    {
        size_t cap = (size_t)64 * cal * cal;
        float *a = (float *)nst__aligned_alloc(cap * sizeof(float)), *b = (float *)nst__aligned_alloc(cap * sizeof(float));
        float *pad = (float *)nst__aligned_alloc(nst__reflect_scratch_floats(512, 512, cal, cal, 1) * sizeof(float));
        int h = cal, w = cal, c = 3, l;
        px = (float *)nst__malloc(sizeof(float) * 3 * cal * cal);
        if (!a || !b || !px || !pad) st = nst__err(NST_ERR_NOMEM, "model: out of memory");
        if (st == NST_OK) {
            nst__calibration_image(px, cal, cal, seed);
            nst__preprocess(&m->conv, px, a, (size_t)cal * cal, 1);
        }
        for (l = 0, i = 0; l < NST_VGG_LAYERS && st == NST_OK; l++) {
            int t = nst__layer_type(l);
            float *tmp;
            if (t == NST__L_RELU) continue;
            if (t == NST__L_POOL) {
                if (h < 2 || w < 2) break;
                nst__pool_forward(b, a, c, h, w, 1, 0);
                h /= 2; w /= 2;
            } else {
                size_t k, el = (size_t)m->cout[i] * h * w, nw = (size_t)m->cout[i] * m->cin[i] * 9;
                double sum = 0;
                float sc;
                if ((st = nst__conv_forward(m->plan[i], a, b, h, w, 0, 0, NULL)) != NST_OK ||
                    (st = nst__reflect_fix_forward(m, i, a, b, h, w, 0, pad)) != NST_OK)
                    break;
                for (k = 0; k < el; k++) b[k] = b[k] > 0.0f ? b[k] : 0.0f;
                for (k = 0; k < el; k++) sum += b[k];
                /* bias is zero and ReLU is positively homogeneous: scaling filters scales the output */
                sc = sum > 0 ? (float)(NST__RANDOM_MEAN * el / sum) : 1.0f;
                for (k = 0; k < el; k++) b[k] *= sc;
                for (k = 0; k < nw; k++) m->w[i][k] *= sc;
                c = m->cout[i++];
            }
            tmp = a; a = b; b = tmp;
        }
        nst__aligned_free(a);
        nst__aligned_free(b);
        nst__aligned_free(pad);
        nst__free(px);
    }
    /* the plans packed the unscaled filters: rebuild them */
    for (i = 0; i < m->nconv; i++) { nst__conv_plan_free(m->plan[i]); m->plan[i] = NULL; }
    if (st == NST_OK) st = nst__model_finish(m);
    if (st != NST_OK) { nst_model_free(m); return st; }
    *out = m;
    return NST_OK;
}

/* ---- losses (jcjohnson/neural-style) ---------------------------------------------------------------
 * content = content_weight * mean((F - P)^2) over each content layer
 * style   = style_weight * sum_l w_l * mean((G_l - A_l)^2), G = F F^T / (C*H*W), A = blend of style Grams
 * tv      = tv_weight * 1/2 * sum over the (H-1)x(W-1) corner of squared right and down differences,
 *           whose gradient is exactly jcjohnson's TVLoss gradient (it applies TV to the 0..255 image);
 *           the random model's (full) adds the last row's right and the last column's down differences
 * normalize_gradients divides each loss layer's gradient by its L1 norm (+1e-8) before weighting. */
#define NST__MAX_LOSS_LAYERS 16

typedef struct nst__style_layer {
    int layer, c;
    float weight;
    float *target;   /* A: c x c */
    float *gram;     /* G at the last evaluation */
} nst__style_layer;

struct nst_objective {
    const nst_model *m;
    nst__net net;
    int h, w, nthreads, normalize;
    double cw, sw, tvw;
    int ncontent, nstyle;
    int content_layer[NST__MAX_LOSS_LAYERS];
    float *content_target[NST__MAX_LOSS_LAYERS];
    nst__style_layer style[NST__MAX_LOSS_LAYERS];
    nst_losses last;
    int evaluated;
    /* spatial masks: per style layer k, nmask masks at the layer's size and each style's own Gram */
    int nmask;                                   /* 0 = unmasked */
    float *mask[NST__MAX_LOSS_LAYERS];           /* [nmask][h_l * w_l] */
    float *mtarget[NST__MAX_LOSS_LAYERS];        /* [nmask][c][c] */
    float *mgram[NST__MAX_LOSS_LAYERS];          /* [nmask][c][c] guided Grams at the last evaluation */
    double mz[NST__MAX_LOSS_LAYERS][8];          /* sum of mask^2: the guided Gram's normalisation */
    double mfrac[NST__MAX_LOSS_LAYERS][8];       /* mean of the mask: the style's share of the loss */
    float *mtmp;                                 /* per thread [2][c][NST__MASK_BLOCK]: masked features, product */
    /* temporal consistency */
    double tw;
    float *tprev;                                /* previous output, planar 0..255 */
    float *tweight;                              /* [h*w] per-pixel weight c_p / (3*h*w) */
    struct nst__tiled *tiled;   /* NULL: the whole image at once; else see nst__objective_eval_tiled */
    nst_losses acc;             /* raw losses of the evaluation under way, added up by nst__objective_hook */
    int feat_stale;             /* backward overwrote kept features (packed net): features() reruns forward */
};

/* Parses "relu1_1,relu2_1" into layer indices. */
static nst_status nst__parse_layers(const char *spec, int *out, int *count) {
    const char *p = spec;
    *count = 0;
    if (!spec) return NST_OK;
    while (*p) {
        char name[32];
        size_t len = strcspn(p, ", ");
        int idx;
        if (len == 0) { p++; continue; }
        if (len >= sizeof name) return nst__err(NST_ERR_ARGUMENT, "unknown layer '%.*s'", (int)NST__MIN(len, 40), p);
        memcpy(name, p, len);
        name[len] = 0;
        idx = nst_layer_index(name);
        if (idx < 0) return nst__err(NST_ERR_ARGUMENT, "unknown layer '%s' (expected e.g. relu4_2)", name);
        if (*count >= NST__MAX_LOSS_LAYERS) return nst__err(NST_ERR_ARGUMENT, "too many layers in '%s'", spec);
        out[(*count)++] = idx;
        p += len;
    }
    return NST_OK;
}

static int nst__deepest(const int *a, int n, int d) {
    int i;
    for (i = 0; i < n; i++) if (a[i] > d) d = a[i];
    return d;
}

static double nst__asum(const float *a, size_t n) {
    double s = 0;
    size_t i;
    for (i = 0; i < n; i++) s += fabs((double)a[i]);
    return s;
}

/* loss = 1/2 sum (x[i][j]-x[i][j+1])^2 + (x[i][j]-x[i+1][j])^2 over i<H-1, j<W-1; grad += tvw * dloss.
 * full: also the last row's right and the last column's down differences. jcjohnson's corner leaves
 * the bottom row and the right column without smoothing along them; with VGG-19 TV is too weak for
 * that to show, but the random model's outputs kept a line of coloured specks there: the outer pixel
 * 2.7-3.7x (bottom) and 4.2-6.9x (right) as rough as the interior against 0.9-2.0x at the top and left,
 * and 1.35-1.8x and 1.55-2.1x with full TV (3 pairs, 256 px, 148-165 iterations; bench/frame_metric.py
 * --edges). Band offset and interior roughness did not move. Real weights keep jcjohnson's loss. */
/* Rows of the image are independent in this form: each pixel's gradient gathers the 4 differences it
 * takes part in (right, down, and its left and upper neighbours'), so threads take whole rows and no
 * two write the same pixel. The loss is summed per row (double) and the rows in a fixed number of
 * chunks, added in order: the bits do not depend on the thread count. One thread made this a 2.6 ms
 * scalar pass of a 512 px evaluation (Zen 3). */
#define NST__SUM_CHUNKS 64
/* The interior columns 1 .. of one row in steps of 8 (8 independent float sums in acc): restrict pointers,
 * so gcc vectorizes the gradient's read-modify-write with the sums (the same operations per element;
 * 1.2-1.4 ms of a 2-thread 512 px evaluation went here, scalar). Returns the first column not done. */
static int nst__tv_mid(const float *NST__RESTRICT r, const float *NST__RESTRICT dn, const float *NST__RESTRICT upr,
                       float *NST__RESTRICT gr, int w, float mdx, float mdy, float mup, float tvw, float *NST__RESTRICT acc) {
    float a[8];   /* the sums in a local array and no test of gr in the loop: else gcc 12 keeps it scalar */
    int x, l;
    for (l = 0; l < 8; l++) a[l] = acc[l];
#define NST__TV_STEP(GRAD)                                                                                 \
    for (x = 1; x + 8 < w; x += 8)                                                                         \
        for (l = 0; l < 8; l++) {                                                                          \
            float ddx = mdx * (r[x + l] - r[x + l + 1]), ddy = mdy * (r[x + l] - dn[x + l]);               \
            float dl = mdx * (r[x + l - 1] - r[x + l]), ddu = mup * (upr[x + l] - r[x + l]);               \
            a[l] += ddx * ddx + ddy * ddy;                                                                 \
            GRAD;                                                                                          \
        }
    if (gr) { NST__TV_STEP(gr[x + l] += tvw * (ddx + ddy - dl - ddu)) }
    else { NST__TV_STEP((void)dl; (void)ddu) }
#undef NST__TV_STEP
    for (l = 0; l < 8; l++) acc[l] = a[l];
    return x;
}
static double nst__tv_row(const float *p, float *g, int y, int h, int w, float tvw, int full) {
    /* dx: along row y (not the last row unless full); dy: from row y down; up: from row y - 1 down to y.
     * The last column has dy (and up) only when full. */
    const float mdx = (y + 1 < h || full) ? 1.0f : 0.0f, mdy = y + 1 < h ? 1.0f : 0.0f, mup = y > 0 ? 1.0f : 0.0f;
    const float *r = p + (size_t)y * w, *dn = y + 1 < h ? r + w : r, *upr = y > 0 ? r - w : r;
    float *gr = g ? g + (size_t)y * w : NULL;
    double s = 0;
    int x;
    if (w == 1) {   /* one column: only the (full) vertical differences */
        float dy = full ? mdy * (r[0] - dn[0]) : 0.0f, du = full ? mup * (upr[0] - r[0]) : 0.0f;
        if (gr) gr[0] += tvw * (dy - du);
        return 0.5 * (double)dy * dy;
    }
    {   /* x = 0, then 8 independent float sums (the compiler's vectors), added per row in double */
        float dx = mdx * (r[0] - r[1]), dy = mdy * (r[0] - dn[0]), du = mup * (upr[0] - r[0]), acc[8] = {0};
        s = (double)dx * dx + (double)dy * dy;
        if (gr) gr[0] += tvw * (dx + dy - du);
        x = nst__tv_mid(r, dn, upr, gr, w, mdx, mdy, mup, tvw, acc);
        for (; x + 1 < w; x++) {
            float ddx = mdx * (r[x] - r[x + 1]), ddy = mdy * (r[x] - dn[x]);
            float dl = mdx * (r[x - 1] - r[x]), ddu = mup * (upr[x] - r[x]);
            acc[0] += ddx * ddx + ddy * ddy;
            if (gr) gr[x] += tvw * (ddx + ddy - dl - ddu);
        }
        s += (((double)acc[0] + acc[1]) + ((double)acc[2] + acc[3])) + (((double)acc[4] + acc[5]) + ((double)acc[6] + acc[7]));
    }
    {   /* the last column */
        float dy = full ? mdy * (r[x] - dn[x]) : 0.0f, du = full ? mup * (upr[x] - r[x]) : 0.0f;
        float dl = mdx * (r[x - 1] - r[x]);
        s += (double)dy * dy;
        if (gr) gr[x] += tvw * (dy - dl - du);
    }
    return 0.5 * s;
}
static double nst__tv(const float *x, int h, int w, float tvw, int full, float *grad, int nthreads) {
    double part[3 * NST__SUM_CHUNKS], loss = 0;
    long k;
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static) if ((size_t)h * w >= 65536)
#endif
    for (k = 0; k < 3 * NST__SUM_CHUNKS; k++) {
        int c = (int)(k / NST__SUM_CHUNKS), q = (int)(k % NST__SUM_CHUNKS), y;
        int y0 = (int)((long)h * q / NST__SUM_CHUNKS), y1 = (int)((long)h * (q + 1) / NST__SUM_CHUNKS);
        const float *p = x + (size_t)c * h * w;
        float *g = grad ? grad + (size_t)c * h * w : NULL;
        double s = 0;
        for (y = y0; y < y1; y++) s += nst__tv_row(p, g, y, h, w, tvw, full);
        part[k] = s;
    }
    for (k = 0; k < 3 * NST__SUM_CHUNKS; k++) loss += part[k];
    return loss;
}

/* sum (a - b)^2 in double, threaded, in fixed chunks added in order (bits independent of threads). */
static double nst__sqdist(const float *a, const float *b, size_t n, int nthreads) {
    double part[NST__SUM_CHUNKS], s = 0;
    long k;
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static) if (n >= 65536)
#endif
    for (k = 0; k < NST__SUM_CHUNKS; k++) {
        size_t i, lo = n * (size_t)k / NST__SUM_CHUNKS, hi = n * (size_t)(k + 1) / NST__SUM_CHUNKS;
        double s0 = 0, s1 = 0;
        for (i = lo; i + 1 < hi; i += 2) {
            double d0 = (double)a[i] - b[i], d1 = (double)a[i + 1] - b[i + 1];
            s0 += d0 * d0; s1 += d1 * d1;
        }
        if (i < hi) { double d = (double)a[i] - b[i]; s0 += d * d; }
        part[k] = s0 + s1;
    }
    for (k = 0; k < NST__SUM_CHUNKS; k++) s += part[k];
    return s;
}

static nst_status nst__gram(float *g, const float *f, int c, size_t hw, int nthreads) {
    if (hw > INT_MAX) return nst__err(NST_ERR_ARGUMENT, "gram: feature map too large");
    return nst__ssyrk_ex(nthreads, c, (int)hw, 1.0f / (float)((double)c * hw), f, (int)hw, g, c);
}

/* ---- spatial masks: guided Gram matrices (Gatys et al. 2017) ------------------------------------
 * For style j with mask m (at the layer's size): G_j = (F.m)(F.m)^T / (C * sum m^2), matched to style
 * j's own Gram A_j; loss_j = style_weight * w_l * mean(m) * mean((G_j - A_j)^2). With m = 1 this is the
 * unmasked Gram and loss. dloss_j/dF = m . (4 sw w_l mean(m) / (C^2 * C * sum m^2)) (G_j - A_j) (F.m),
 * formed in column blocks, each thread holding one [C][block] block of F.m and its product. */
#define NST__MASK_BLOCK 256
static nst_status nst__resized(const nst_image *in, int w, int h, nst_image *out);
static void nst__image_to_planar(const nst_image *im, float *px);
static nst_status nst__require_rgb(const nst_image *im, const char *what);

static void nst__mask_features(float *fm, const float *feat, const float *mask, int c, size_t hw) {
    int ch;
    size_t i;
    for (ch = 0; ch < c; ch++)
        for (i = 0; i < hw; i++) fm[(size_t)ch * hw + i] = feat[(size_t)ch * hw + i] * mask[i];
}

/* Guided Grams of every style at style layer k into o->mgram[k]; returns the weighted raw loss. */
static nst_status nst__masked_style_eval(nst_objective *o, int k, const float *feat, float *fm, double *loss) {
    const nst__style_layer *s = &o->style[k];
    const nst__net *n = &o->net;
    size_t hw = (size_t)n->h_[s->layer] * n->w_[s->layer], cc = (size_t)s->c * s->c;
    int j;
    nst_status st;
    *loss = 0;
    for (j = 0; j < o->nmask; j++) {
        float *gj = o->mgram[k] + (size_t)j * cc;
        const float *aj = o->mtarget[k] + (size_t)j * cc;
        double acc = 0;
        if (!(o->mz[k][j] > 0)) { memset(gj, 0, cc * sizeof(float)); continue; }   /* no pixel of this style here */
        nst__mask_features(fm, feat, o->mask[k] + (size_t)j * hw, s->c, hw);
        if (hw > INT_MAX) return nst__err(NST_ERR_ARGUMENT, "gram: feature map too large");
        if ((st = nst__ssyrk_ex(o->nthreads, s->c, (int)hw, 1.0f / (float)((double)s->c * o->mz[k][j]), fm, (int)hw,
                                gj, s->c)) != NST_OK)
            return st;
        acc = nst__sqdist(gj, aj, cc, o->nthreads);
        *loss += s->weight * o->mfrac[k][j] * acc / (double)cc;
    }
    memcpy(s->gram, o->mgram[k], cc * sizeof(float));   /* nst_objective_gram: the first style's */
    return NST_OK;
}

/* Per style j, D_j = s_j (G_j - A_j) is formed once (c >= 256: also packed once, as in
 * nst__objective_lossgrad_fused; it was packed again for every block) and the product formed in blocks of
 * NST__MASK_BLOCK columns, which the threads take as they come free (each block was a GEMM of its own on
 * all threads); each thread masks its block of features into its own part of o->mtmp, rows one block
 * long, so the GEMM's packing reads whole lines instead of one per channel from a map-sized copy, and the
 * product goes next to it. The bits do not depend on the thread count: a block is computed the same by
 * any thread, and normalize_gradients' L1 norm is summed over the blocks in order. */
static nst_status nst__masked_style_grad(nst_objective *o, int layer, const float *feat, float *g) {
    const nst__net *n = &o->net;
    size_t hw = (size_t)n->h_[layer] * n->w_[layer];
    long nblk = (long)((hw + NST__MASK_BLOCK - 1) / NST__MASK_BLOCK), b;
    int k, j, failed = 0, forced = nst__arch_forced;
    double *l1b = NULL;
    nst_status st = NST_OK;
    if (o->normalize && !(l1b = (double *)nst__malloc(sizeof(double) * (size_t)nblk)))
        return nst__err(NST_ERR_NOMEM, "masked style gradient: out of memory");
    for (k = 0; k < o->nstyle && st == NST_OK; k++) {
        const nst__style_layer *s = &o->style[k];
        int c = s->c, shared = c >= 256;   /* as in nst__objective_lossgrad_fused */
        size_t cc = (size_t)c * c, i;
        if (s->layer != layer || o->sw * s->weight == 0) continue;
        for (j = 0; j < o->nmask && st == NST_OK; j++) {
            const float *gj = o->mgram[k] + (size_t)j * cc, *a = o->mtarget[k] + (size_t)j * cc;
            const float *mk = o->mask[k] + (size_t)j * hw;
            double coef = o->sw * s->weight * o->mfrac[k][j], l1 = 0;
            float sc, *d;
            nst__sgemm_apack pk;
            int pass;
            if (!(o->mz[k][j] > 0) || coef == 0) continue;
            sc = (float)(4.0 / ((double)cc * c * o->mz[k][j]));
            if (!(d = (float *)nst__aligned_alloc(cc * sizeof(float)))) {
                st = nst__err(NST_ERR_NOMEM, "masked style gradient: out of memory");
                break;
            }
            for (i = 0; i < cc; i++) d[i] = sc * (gj[i] - a[i]);
            memset(&pk, 0, sizeof pk);
            if (shared) {
                st = nst__sgemm_pack_a(&pk, 0, c, c, d, c);
                nst__aligned_free(d);
                d = NULL;
                if (st != NST_OK) break;
            }
            /* with normalize_gradients a first pass measures the term's L1 norm, the second adds it */
            for (pass = o->normalize ? 0 : 1; pass < 2 && !failed; pass++) {
                float mul = pass == 0 ? 1.0f : (float)(o->normalize ? coef / (l1 + 1e-8) : coef);
#ifdef _OPENMP
#pragma omp parallel for num_threads(o->nthreads) schedule(dynamic, 1)
#endif
                for (b = 0; b < nblk; b++) {
                    size_t b0 = (size_t)b * NST__MASK_BLOCK;
                    int nb = (int)NST__MIN((size_t)NST__MASK_BLOCK, hw - b0), ch, q, t = 0;
                    float *fb, *tb;
                    double acc = 0;
#ifdef _OPENMP
                    t = omp_get_thread_num();
#endif
                    fb = o->mtmp + (size_t)t * 2 * c * NST__MASK_BLOCK;
                    tb = fb + (size_t)c * nb;
                    for (ch = 0; ch < c; ch++) {
                        const float *f = feat + (size_t)ch * hw + b0;
                        float *dst = fb + (size_t)ch * nb;
                        for (q = 0; q < nb; q++) dst[q] = f[q] * mk[b0 + q];
                    }
                    if ((shared ? nst__sgemm_apacked(1, &pk, 0, nb, 1.0f, fb, nb, 0.0f, tb, nb, NULL, 0)
                                : nst__sgemm_worker(forced, 0, 0, c, nb, c, 1.0f, d, c, fb, nb, 0.0f, tb, nb)) != NST_OK) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
                        failed = 1;
                        continue;
                    }
                    for (ch = 0; ch < c; ch++) {
                        const float *tt = tb + (size_t)ch * nb;
                        float *gr = g + (size_t)ch * hw + b0;
                        if (pass == 0)
                            for (q = 0; q < nb; q++) acc += fabs((double)tt[q] * mk[b0 + q]);
                        else
                            for (q = 0; q < nb; q++) gr[q] += mul * (tt[q] * mk[b0 + q]);
                    }
                    if (pass == 0) l1b[b] = acc;
                }
                if (pass == 0)
                    for (b = 0; b < nblk; b++) l1 += l1b[b];
            }
            nst__sgemm_apack_free(&pk);
            nst__aligned_free(d);
            if (failed) st = nst__err(NST_ERR_NOMEM, "masked style gradient: out of memory for the GEMM's packing");
        }
    }
    nst__free(l1b);
    return st;
}

/* Masks at the output size (w x h), normalised per pixel, then area-averaged to each style layer. */
static nst_status nst__objective_masks(nst_objective *o, const nst_image *masks, int nstyles, const float *blend,
                                       double bsum) {
    size_t hw = (size_t)o->w * o->h, i;
    float *full = NULL, *a = NULL, *b = NULL;
    nst_status st = NST_OK;
    int j, k;
    nst_resize_options ro;
    memset(&ro, 0, sizeof ro);
    ro.filter = NST_FILTER_TRIANGLE;   /* no overshoot: a mask stays within [0,1] */
    o->nmask = nstyles;
    full = (float *)nst__malloc(sizeof(float) * hw * (size_t)nstyles);
    a = (float *)nst__malloc(sizeof(float) * hw * (size_t)nstyles);
    b = (float *)nst__malloc(sizeof(float) * hw * (size_t)nstyles);
    if (!full || !a || !b) { st = nst__err(NST_ERR_NOMEM, "objective: out of memory for masks"); goto done; }
    for (j = 0; j < nstyles; j++) {
        nst_image rgb, sized;
        memset(&rgb, 0, sizeof rgb);
        memset(&sized, 0, sizeof sized);
        if (!masks[j].pixels || masks[j].width < 1 || masks[j].height < 1) {
            st = nst__err(NST_ERR_ARGUMENT, "style mask %d is empty", j + 1);
            goto done;
        }
        if ((st = nst_image_to_rgb(&masks[j], &rgb)) == NST_OK)
            st = rgb.width == o->w && rgb.height == o->h ? nst__resized(&rgb, o->w, o->h, &sized)
                                                         : nst_image_resize_ex(&rgb, o->w, o->h, &ro, &sized);
        if (st == NST_OK)
            for (i = 0; i < hw; i++) {
                const float *p = sized.pixels + 3 * i;
                float v = 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2];
                full[(size_t)j * hw + i] = v < 0 ? 0 : v > 1 ? 1 : v;
            }
        nst_image_free(&rgb);
        nst_image_free(&sized);
        if (st != NST_OK) goto done;
    }
    for (i = 0; i < hw; i++) {
        double sum = 0;
        for (j = 0; j < nstyles; j++) sum += full[(size_t)j * hw + i];
        for (j = 0; j < nstyles; j++)
            full[(size_t)j * hw + i] = sum > 1e-6 ? (float)(full[(size_t)j * hw + i] / sum)
                                                  : (float)((blend ? blend[j] : 1.0) / bsum);
    }
    for (k = 0; k < o->nstyle; k++) {
        int l = o->style[k].layer, h = o->h, w = o->w, t, c = o->style[k].c;
        size_t lhw = (size_t)o->net.h_[l] * o->net.w_[l], cc = (size_t)c * c;
        const float *cur = full;
        for (t = 0; t < l; t++)
            if (nst__layer_type(t) == NST__L_POOL) {
                float *dst = cur == a ? b : a;
                nst__pool_forward(dst, cur, nstyles, h, w, 1, 1);
                h /= 2; w /= 2;
                cur = dst;
            }
        o->mask[k] = (float *)nst__aligned_alloc(sizeof(float) * lhw * (size_t)nstyles);
        o->mtarget[k] = (float *)nst__aligned_alloc(sizeof(float) * cc * (size_t)nstyles);
        o->mgram[k] = (float *)nst__aligned_alloc(sizeof(float) * cc * (size_t)nstyles);
        if (!o->mask[k] || !o->mtarget[k] || !o->mgram[k]) { st = nst__err(NST_ERR_NOMEM, "objective: out of memory"); goto done; }
        memcpy(o->mask[k], cur, sizeof(float) * lhw * (size_t)nstyles);
        for (j = 0; j < nstyles; j++) {
            double z = 0, sum = 0;
            const float *mk = o->mask[k] + (size_t)j * lhw;
            for (i = 0; i < lhw; i++) { z += (double)mk[i] * mk[i]; sum += mk[i]; }
            o->mz[k][j] = z;
            o->mfrac[k][j] = sum / (double)lhw;
        }
        memset(o->mtarget[k], 0, sizeof(float) * cc * (size_t)nstyles);
    }
    {
        int cmax = 0;
        for (k = 0; k < o->nstyle; k++) cmax = NST__MAX(cmax, o->style[k].c);
        o->mtmp = (float *)nst__aligned_alloc(sizeof(float) * 2 * (size_t)o->nthreads * (size_t)cmax * NST__MASK_BLOCK);
        if (!o->mtmp) st = nst__err(NST_ERR_NOMEM, "objective: out of memory");
    }
done:
    nst__free(full); nst__free(a); nst__free(b);
    return st;
}

/* Temporal consistency: the previous output at this size and the per-pixel weights. */
#define NST__TEMPORAL_CHANGE 0.1f   /* a channel change (0..1) at which a pixel stops being held */
static nst_status nst__objective_temporal(nst_objective *o, const nst_image *content, const nst_options *opt) {
    size_t hw = (size_t)o->w * o->h, i;
    nst_image prev, pc;
    nst_status st;
    memset(&prev, 0, sizeof prev);
    memset(&pc, 0, sizeof pc);
    o->tw = opt->temporal_weight;
    o->tprev = (float *)nst__aligned_alloc(sizeof(float) * 3 * hw);
    o->tweight = (float *)nst__aligned_alloc(sizeof(float) * hw);
    if (!o->tprev || !o->tweight) return nst__err(NST_ERR_NOMEM, "objective: out of memory");
    if ((st = nst__require_rgb(opt->temporal_image, "the previous frame's output")) != NST_OK) return st;
    if ((st = nst__resized(opt->temporal_image, o->w, o->h, &prev)) != NST_OK) return st;
    nst__image_to_planar(&prev, o->tprev);
    nst_image_free(&prev);
    if (opt->temporal_content) {
        if ((st = nst__require_rgb(opt->temporal_content, "the previous content frame")) != NST_OK) return st;
        if ((st = nst__resized(opt->temporal_content, o->w, o->h, &pc)) != NST_OK) return st;
    }
    for (i = 0; i < hw; i++) {
        float wgt = 1.0f;
        if (pc.pixels) {
            int c;
            float d = 0;
            for (c = 0; c < 3; c++) d = NST__MAX(d, (float)fabs(pc.pixels[3 * i + c] - content->pixels[3 * i + c]));
            wgt = d >= NST__TEMPORAL_CHANGE ? 0.0f : 1.0f - d / NST__TEMPORAL_CHANGE;
        }
        o->tweight[i] = wgt / (float)(3.0 * hw);
    }
    nst_image_free(&pc);
    return NST_OK;
}

/* loss = sum_p tweight_p * sum_c (x - prev)^2; grad += tw * dloss */
static double nst__temporal(const nst_objective *o, const float *x, float *grad) {
    size_t hw = (size_t)o->w * o->h, i;
    double loss = 0;
    int c;
    for (c = 0; c < 3; c++) {
        const float *p = x + (size_t)c * hw, *q = o->tprev + (size_t)c * hw;
        float *g = grad ? grad + (size_t)c * hw : NULL;
        for (i = 0; i < hw; i++) {
            float d = p[i] - q[i];
            loss += (double)o->tweight[i] * d * d;
            if (g) g[i] += (float)(o->tw * 2.0 * o->tweight[i] * d);
        }
    }
    return loss;
}

/* ---- the style cache: Grams of style images, reused across the calls of a batch ------------------*/
typedef struct nst__cached_gram {
    const nst_model *m;
    int layer, avg, w, h, c;
    uint32_t crc;
    float *gram;
} nst__cached_gram;
struct nst_style_cache {
    nst__cached_gram *e;
    int n, cap, hits;
};
NSTDEF nst_status nst_style_cache_create(nst_style_cache **out) {
    if (!out) return nst__err(NST_ERR_ARGUMENT, "style cache: NULL output");
    *out = (nst_style_cache *)nst__calloc(1, sizeof **out);
    return *out ? NST_OK : nst__err(NST_ERR_NOMEM, "style cache: out of memory");
}
NSTDEF void nst_style_cache_free(nst_style_cache *c) {
    int i;
    if (!c) return;
    for (i = 0; i < c->n; i++) nst__aligned_free(c->e[i].gram);
    nst__free(c->e);
    nst__free(c);
}
NSTDEF int nst_style_cache_hits(const nst_style_cache *c) { return c ? c->hits : 0; }
static float *nst__style_cache_find(nst_style_cache *c, const nst_model *m, int layer, int avg, const nst_image *im,
                                    uint32_t crc) {
    int i;
    for (i = 0; c && i < c->n; i++) {
        nst__cached_gram *e = &c->e[i];
        if (e->m == m && e->layer == layer && e->avg == avg && e->w == im->width && e->h == im->height && e->crc == crc)
            return e->gram;
    }
    return NULL;
}
static void nst__style_cache_add(nst_style_cache *c, const nst_model *m, int layer, int avg, const nst_image *im,
                                 uint32_t crc, const float *gram, int ch) {
    nst__cached_gram *e;
    if (!c) return;
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 16;
        nst__cached_gram *ne = (nst__cached_gram *)nst__realloc(c->e, sizeof *ne * (size_t)cap);
        if (!ne) return;   /* a cache that cannot grow only costs time */
        c->e = ne;
        c->cap = cap;
    }
    e = &c->e[c->n];
    e->gram = (float *)nst__aligned_alloc(sizeof(float) * (size_t)ch * ch);
    if (!e->gram) return;
    memcpy(e->gram, gram, sizeof(float) * (size_t)ch * ch);
    e->m = m; e->layer = layer; e->avg = avg; e->w = im->width; e->h = im->height; e->c = ch; e->crc = crc;
    c->n++;
}

/* g = 0 where f <= 0, over elements [lo, hi): the ReLU backward from the kept ReLU output. */
static void nst__relu_backward_feat_scalar(float *g, const float *f, size_t lo, size_t hi) {
    size_t i;
    for (i = lo; i < hi; i++)
        if (!(f[i] > 0.0f)) g[i] = 0.0f;
}
#if defined(NST__X86)
static NST__TARGET_AVX2 void nst__relu_backward_feat_avx2(float *g, const float *f, size_t lo, size_t hi) {
    const __m256 z = _mm256_setzero_ps();
    size_t i = lo;
    for (; i + 8 <= hi; i += 8)
        _mm256_storeu_ps(g + i, _mm256_and_ps(_mm256_loadu_ps(g + i), _mm256_cmp_ps(_mm256_loadu_ps(f + i), z, _CMP_GT_OQ)));
    nst__relu_backward_feat_scalar(g, f, i, hi);
}
#endif
static void nst__relu_backward_feat(float *g, const float *f, size_t lo, size_t hi, int simd) {
    (void)simd;
#if defined(NST__X86)
    if (simd) { nst__relu_backward_feat_avx2(g, f, lo, hi); return; }
#endif
    nst__relu_backward_feat_scalar(g, f, lo, hi);
}

/* Tests only: the shared-pack path's column block (0 = nst__lossgrad_cols' rule). */
static size_t nst__lossgrad_cols_forced;

/* Columns per block of the fused loss gradient when D is packed once (c >= 256): about L2 / (12 c), so
 * a block of g, the same block of the features and the GEMM's packed copy of it (4 c bytes per column
 * each) fit L2 together, and the content term and ReLU mask after the GEMM read them from there; at
 * least three blocks per thread (relu5_1 at 512 px was one block, so one thread did it all). Multiples
 * of 48, a whole number of panels of every kernel. On Zen 3 (512 KiB L2), relu4_1 at 512 px, 1 thread:
 * 96 columns 25.0-25.7 ms, 384 or 1024 columns 26-27 ms. */
static size_t nst__lossgrad_cols(int c, size_t hw, int nthreads) {
    int l1, l2;
    size_t nb, share, nt = (size_t)nst__resolve_threads(nthreads);
    if (nst__lossgrad_cols_forced) return nst__lossgrad_cols_forced;
    nst__gemm_caches(&l1, &l2);
    if (l2 <= 0) l2 = 512 * 1024;   /* unknown (no CPUID): the smallest L2 measured */
    nb = ((size_t)l2 / (12 * (size_t)c) + 24) / 48 * 48;
    share = ((hw + 3 * nt - 1) / (3 * nt) + 47) / 48 * 48;
    return NST__MAX((size_t)48, NST__MIN(nb, share));
}

/* ---- the style layers' loss gradient in one pass ----------------------------------------------------
 * g = mask(feat > 0) . (g + sum_content sc (feat - p) + D F), strip by strip of pixel columns: the
 * strip's c rows of F are copied once into contiguous [c][nr] panels, D is packed once into [c][mr]
 * panels, and each mr x nr tile of g is read, finished (content, D F, the mask from the copied feat) and
 * written once. Why the copy: a layer's rows are a multiple of 4 KiB apart (1 MiB at relu1_1), so the c
 * rows of one column share one L1 set (and one L2 set from 64 KiB apart); read in place, 8 ways held 8
 * of the 64-512 rows. The next strip's rows are prefetched nsub tile calls ahead (the call of the next
 * panel on the same subpanel) and copied a few rows per call, between the tiles' FMAs, into the other of
 * two buffers; g's tile of that call is prefetched the same way. Strips are NST__LG_STRIP / c columns
 * (384 at c = 64): at 48 columns each row was visited 192 bytes at a time and relu1_1 took 49-60 ms on
 * 1 thread, at 384 it takes 30-34 (Zen 3).
 * Each call covers whole strips' width of a row (nr = 24 would split a 64-byte line between two calls,
 * fetched twice: 1.5x slower when the calls ran subpanel-major). Each element's sum runs k = 0..c-1
 * into one accumulator whatever tile, strip or thread computes it (edge tiles run the same FMAs on zero
 * padding, their epilogue is the scalar one), so the bits do not depend on the thread count
 * (tests/test_lossgrad.c).
 * Where the time goes (2026-12-01, Zen 3, AVX2, 1 thread unless said, load average 5-7 on the 2
 * cores): the 4x24 tile alone, in L1, runs 88-94 GFLOP/s at c = 64 and 83-99 at c = 128-512 (best of
 * 7-15; the spread is the load); the whole pass with F and g in L2/L3 (c = 64, hw = 1536, repeated) 79;
 * relu1_1 in place 70 at best (30.5 ms), while a plain pass reading F and g and writing g (the same 192
 * MiB, no FMAs) takes 12.6-17 ms by itself: the layer is bound by overlapping memory with ~23 ms of
 * FMAs, not by the register tile. The AVX2 k loop runs to an end pointer, unrolled by 2 (no load of c
 * per k): in L1 78-90 -> 88-94 GFLOP/s at c = 64; in place the plain loop took 0.99-1.04x its time per
 * layer on 1 and 2 threads (best of 4 x 20 alternated runs); `bench_nst --size 512 --threads 1 --profile
 * --cpu --reps 2`, lossgrad column summed, 3 alternated pairs: 171-179 ms before, 133-162 after (the
 * load moves it more than that).
 * Measured and not kept (same conditions; CPU ms, best of 5-7, alternated in one binary with the 4x24):
 *   a 6x16 AVX2 tile (12 accumulators, 6 broadcasts + 2 loads per k, a row of g one 64-byte line; strips
 *     of the same width): in L1 no faster (c = 64 79.5-86.2 vs 78.6-85.9 GFLOP/s, c = 256 91.7-93.0 vs
 *     93.7-96.8), in place 0.95-1.07x the 4x24's time at relu1_1 (32.6-34.0 vs 31.4-34.4 ms), 1.00-1.06
 *     at relu2_1, 1.01-1.04 at relu3_1, 1.03-1.10 at relu4_1; 0.95-1.06 on 2 threads;
 *   copying whole strip rows (one 1.5 KiB read per row at c = 64, split into the nsub subpanels with
 *     AVX2 stores, rows spread evenly over the calls, prefetched 2, 8 or 32 calls ahead): 1.13-1.25x
 *     slower (relu1_1 37.6-40.0 vs 31.0-34.1 ms, relu3_1 29.3-31.9 vs 25.5-27.4);
 *   AVX2 loads and stores for the nr-float pieces instead of memcpy: 1.0-1.1x slower (relu4_1 26.4-27.1
 *     vs 24.3-24.6 ms); prefetching g or the next strip to L2 only (locality 2): 0.97-1.08x, noise;
 *   strips of 192-576 columns at c = 64 (8-24 subpanels): the same within noise (32.2-33.2 ms), 768
 *     columns 34.3-37.0; 128-384 columns at c = 128 the same;
 *   calls subpanel-major (u outer, panels inner), with the 4x24 or the 6x16: 1.5-2.0x slower, g's rows
 *     of one column (1 MiB apart at relu1_1) then all fall in one L1 set.
 * What F's trip from memory costs (2026-12-02, Zen 3, a test build whose strip copies read one 64 x 768
 * window that stays in L2 instead of the layer's F; bench_lossgrad --reps 15, alternated): relu1_1 30.7
 * -> 29.1 ms on 1 thread, 15.9 -> 14.6 on 2; relu2_1 26.3 -> 25.6, 14.2 -> 13.3. So recomputing relu1_1
 * band by band into the strips (never writing it whole) would gain ~1.3 ms of the pass on 2 threads plus
 * the recompute's 64 MiB write; the better reason for it would be memory: the recomputed map fills a
 * whole 64 MiB feature buffer at 512 px. */
#define NST__LG_CMAX 512     /* c above it: the GEMM path (VGG's layers all fit) */
#define NST__LG_STRIP 24576  /* c x columns of a strip: 384 columns at c = 64, 96 at c = 256 */
typedef struct nst__lg_args {
    int c, relu, nct;
    size_t hw;
    const float *feat;
    float *g;
    float ct_sc[NST__MAX_LOSS_LAYERS];
    const float *ct_p[NST__MAX_LOSS_LAYERS];
} nst__lg_args;

/* One tile: rows i0.. (rows <= mr) and columns j0.. (cols <= nr) of g; dp is D's panel [c][mr] (zero
 * rows past c), fs the strip's panel [c][nr] of F (zero columns past hw). */
typedef void (*nst__lg_tile_fn)(const nst__lg_args *a, const float *dp, const float *fs, int i0, size_t j0,
                                int rows, int cols);
typedef struct nst__lg_kernel {
    int mr, nr;   /* register tile */
    nst__lg_tile_fn tile;
    const char *name;
} nst__lg_kernel;

/* The epilogue of the scalar reference and of every path's edge tiles: acc is [rows][nr]. */
static void nst__lg_epilogue_scalar(const nst__lg_args *a, const float *acc, int nr, const float *fs, int i0,
                                    size_t j0, int rows, int cols) {
    int r, q, k;
    for (r = 0; r < rows; r++) {
        size_t off = (size_t)(i0 + r) * a->hw + j0;
        float *gr = a->g + off;
        const float *fr = fs + (size_t)(i0 + r) * nr;
        for (q = 0; q < cols; q++) {
            float t = gr[q], u;
            for (k = 0; k < a->nct; k++) {
                u = a->ct_sc[k] * (fr[q] - a->ct_p[k][off + q]);
                t += u;
            }
            t += acc[r * nr + q];
            if (a->relu && !(fr[q] > 0.0f)) t = 0.0f;
            gr[q] = t;
        }
    }
}

#define NST__LG_S_MR 4
#define NST__LG_S_NR 8
static void nst__lg_tile_scalar(const nst__lg_args *a, const float *dp, const float *fs, int i0, size_t j0,
                                int rows, int cols) {
    float acc[NST__LG_S_MR * NST__LG_S_NR];
    int k, r, q;
    for (q = 0; q < NST__LG_S_MR * NST__LG_S_NR; q++) acc[q] = 0.0f;
    for (k = 0; k < a->c; k++)
        for (r = 0; r < NST__LG_S_MR; r++)
            for (q = 0; q < NST__LG_S_NR; q++)
                acc[r * NST__LG_S_NR + q] += dp[k * NST__LG_S_MR + r] * fs[k * NST__LG_S_NR + q];
    nst__lg_epilogue_scalar(a, acc, NST__LG_S_NR, fs, i0, j0, rows, cols);
}

#if defined(__GNUC__) || defined(__clang__)
#define NST__LG_UNROLL2 _Pragma("GCC unroll 2")
#else
#define NST__LG_UNROLL2
#endif
#if defined(NST__X86)
/* x86 tiles, one template per vector width (as the GEMM's kernels): MR rows of D x NV vectors of W columns;
 * LOADA loads F from the strip's panel, GT0(t, f, z) is t where f > 0, else 0. */
#define NST__LG_TILE_X86(NAME, TARGET, VT, W, MR, NV, LOADA, LOADU, STOREU, SET1, ZERO, FMA, ADD, SUB, MUL, GT0)  \
    static TARGET void NAME(const nst__lg_args *a, const float *dp, const float *fs, int i0, size_t j0,         \
                            int rows, int cols) {                                                               \
        VT acc[MR][NV], bv[NV], av;                                                                             \
        const float *fk = fs, *fe = fs + (size_t)a->c * W * NV;                                                 \
        int r, v, k;                                                                                            \
        NST__UNROLL for (r = 0; r < MR; r++) NST__UNROLL for (v = 0; v < NV; v++) acc[r][v] = ZERO();           \
        NST__LG_UNROLL2 for (; fk < fe; dp += MR, fk += W * NV) {                                               \
            NST__UNROLL for (v = 0; v < NV; v++) bv[v] = LOADA(fk + W * v);                                     \
            NST__UNROLL for (r = 0; r < MR; r++) {                                                              \
                av = SET1(dp[r]);                                                                               \
                NST__UNROLL for (v = 0; v < NV; v++) acc[r][v] = FMA(av, bv[v], acc[r][v]);                     \
            }                                                                                                   \
        }                                                                                                       \
        if (rows == MR && cols == W * NV) {                                                                     \
            const VT z = ZERO();                                                                                \
            NST__UNROLL for (r = 0; r < MR; r++) {                                                              \
                size_t off = (size_t)(i0 + r) * a->hw + j0;                                                     \
                float *gr = a->g + off;                                                                         \
                const float *fr = fs + (size_t)(i0 + r) * (W * NV);                                             \
                NST__UNROLL for (v = 0; v < NV; v++) {                                                          \
                    VT t = LOADU(gr + W * v), f = LOADA(fr + W * v);                                            \
                    for (k = 0; k < a->nct; k++)                                                                \
                        t = ADD(t, MUL(SET1(a->ct_sc[k]), SUB(f, LOADU(a->ct_p[k] + off + W * v))));            \
                    t = ADD(t, acc[r][v]);                                                                      \
                    if (a->relu) t = GT0(t, f, z);                                                              \
                    STOREU(gr + W * v, t);                                                                      \
                }                                                                                               \
            }                                                                                                   \
        } else {                                                                                                \
            float tmp[MR * W * NV];                                                                             \
            NST__UNROLL for (r = 0; r < MR; r++) NST__UNROLL for (v = 0; v < NV; v++)                          \
                STOREU(tmp + r * W * NV + W * v, acc[r][v]);                                                    \
            nst__lg_epilogue_scalar(a, tmp, W * NV, fs, i0, j0, rows, cols);                                    \
        }                                                                                                       \
    }
#define NST__LG_GT0_AVX2(t, f, z) _mm256_and_ps(t, _mm256_cmp_ps(f, z, _CMP_GT_OQ))
NST__LG_TILE_X86(nst__lg_tile_4x24_avx2, NST__TARGET_AVX2, __m256, 8, 4, 3, _mm256_load_ps, _mm256_loadu_ps,
                 _mm256_storeu_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_sub_ps,
                 _mm256_mul_ps, NST__LG_GT0_AVX2)
#if defined(NST__X86_AVX512)
/* 8 x 48 as the GEMM's AVX-512 kernel (24 zmm accumulators, 3 F vectors, 1 broadcast of D; 11 loads per 24
 * FMAs, no spills in gcc 12's loop); the mask by a compare into a zeroing move. */
#define NST__LG_GT0_AVX512(t, f, z) _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(f, z, _CMP_GT_OQ), t)
NST__LG_TILE_X86(nst__lg_tile_8x48_avx512, NST__TARGET_AVX512, __m512, 16, 8, 3, _mm512_loadu_ps, _mm512_loadu_ps,
                 _mm512_storeu_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_sub_ps,
                 _mm512_mul_ps, NST__LG_GT0_AVX512)
#endif
#endif

#if defined(NST__NEON)
/* 8 x 12 as the GEMM's NEON kernel: 24 q-register accumulators, D as two q registers, lane FMAs. */
static void nst__lg_tile_8x12_neon(const nst__lg_args *a, const float *dp, const float *fs, int i0, size_t j0,
                                   int rows, int cols) {
    float32x4_t acc[8][3], bv[3], a0, a1;
    const float *fk = fs;
    int r, v, k;
    NST__UNROLL for (r = 0; r < 8; r++) NST__UNROLL for (v = 0; v < 3; v++) acc[r][v] = vdupq_n_f32(0.0f);
    for (k = 0; k < a->c; k++, dp += 8, fk += 12) {
        bv[0] = vld1q_f32(fk); bv[1] = vld1q_f32(fk + 4); bv[2] = vld1q_f32(fk + 8);
        a0 = vld1q_f32(dp); a1 = vld1q_f32(dp + 4);
        NST__UNROLL for (v = 0; v < 3; v++) {
            acc[0][v] = vfmaq_laneq_f32(acc[0][v], bv[v], a0, 0);
            acc[1][v] = vfmaq_laneq_f32(acc[1][v], bv[v], a0, 1);
            acc[2][v] = vfmaq_laneq_f32(acc[2][v], bv[v], a0, 2);
            acc[3][v] = vfmaq_laneq_f32(acc[3][v], bv[v], a0, 3);
            acc[4][v] = vfmaq_laneq_f32(acc[4][v], bv[v], a1, 0);
            acc[5][v] = vfmaq_laneq_f32(acc[5][v], bv[v], a1, 1);
            acc[6][v] = vfmaq_laneq_f32(acc[6][v], bv[v], a1, 2);
            acc[7][v] = vfmaq_laneq_f32(acc[7][v], bv[v], a1, 3);
        }
    }
    if (rows == 8 && cols == 12) {
        const float32x4_t z = vdupq_n_f32(0.0f);
        NST__UNROLL for (r = 0; r < 8; r++) {
            size_t off = (size_t)(i0 + r) * a->hw + j0;
            float *gr = a->g + off;
            const float *fr = fs + (size_t)(i0 + r) * 12;
            NST__UNROLL for (v = 0; v < 3; v++) {
                float32x4_t t = vld1q_f32(gr + 4 * v), f = vld1q_f32(fr + 4 * v);
                for (k = 0; k < a->nct; k++)
                    t = vaddq_f32(t, vmulq_f32(vdupq_n_f32(a->ct_sc[k]), vsubq_f32(f, vld1q_f32(a->ct_p[k] + off + 4 * v))));
                t = vaddq_f32(t, acc[r][v]);
                if (a->relu) t = vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(t), vcgtq_f32(f, z)));
                vst1q_f32(gr + 4 * v, t);
            }
        }
    } else {
        float tmp[8 * 12];
        NST__UNROLL for (r = 0; r < 8; r++) NST__UNROLL for (v = 0; v < 3; v++) vst1q_f32(tmp + r * 12 + 4 * v, acc[r][v]);
        nst__lg_epilogue_scalar(a, tmp, 12, fs, i0, j0, rows, cols);
    }
}
#endif

static const nst__lg_kernel nst__lg_kernels[] = {
    {NST__LG_S_MR, NST__LG_S_NR, nst__lg_tile_scalar, "4x8 scalar"},
#if defined(NST__X86)
    {4, 24, nst__lg_tile_4x24_avx2, "4x24 avx2+fma"},
#if defined(NST__X86_AVX512)
    {8, 48, nst__lg_tile_8x48_avx512, "8x48 avx512"},
#endif
#endif
#if defined(NST__NEON)
    {8, 12, nst__lg_tile_8x12_neon, "8x12 neon"},
#endif
};
/* Tests only: subpanels per strip forced (0 = nst__lossgrad_onepass's rule). */
static int nst__lg_nsub_forced;

/* The kernel for the running ISA (bench/bench_lossgrad.c times each against the GEMM path it replaced).
 * AVX2, Zen 3: the one pass 1.20-1.34x the GEMM path's speed on 2 threads at every style layer; on one
 * 1.20-1.23x at relu1_1 and relu2_1, 0.91-1.03x at relu3_1..relu5_1. Zen 4 (512-bit ops split, AVX-512
 * build): 4 x 24 1.13-1.22x the GEMM path at relu1_1, 1.03-1.10x at relu2_1 and relu3_1, and 5-9% ahead
 * of 8 x 48 there (2 threads and 1, best of 15; 8 x 48 ahead by 2-5% only at relu4_1/relu5_1, 1/6 of the
 * work), so it runs 4 x 24. 8 x 48 (the AVX-512 CPUs with 512-bit FMA units) is not yet timed there. */
static const nst__lg_kernel *nst__lg_kernel_pick(void) {
    nst_arch a = nst__cpu_arch();
#if defined(NST__X86)
    if (a == NST_ARCH_AVX2) return &nst__lg_kernels[1];
#if defined(NST__X86_AVX512)
    if (a == NST_ARCH_AVX512) return &nst__lg_kernels[nst__cpu()->split512 ? 1 : 2];
#endif
#endif
#if defined(NST__NEON)
    if (a == NST_ARCH_NEON) return &nst__lg_kernels[1];
#endif
    return a == NST_ARCH_SCALAR ? &nst__lg_kernels[0] : NULL;
}

/* Rows [r0, r1) of subpanel u of strip s (columns s sw + u nr ..) into fs ([nsub][c][nr]), zero past hw. */
static void nst__lg_copy_rows(int nr, int nsub, const nst__lg_args *a, size_t s, int u, int r0, int r1, float *fs) {
    int k;
    size_t ju = s * (size_t)nr * nsub + (size_t)u * nr;
    int n = ju >= a->hw ? 0 : (int)NST__MIN((size_t)nr, a->hw - ju);
    float *dst = fs + (size_t)u * a->c * nr;
    if (n == nr) {   /* whole pieces at the tiles' widths: constant-size copies, a few vector moves each instead
                      * of a memcpy call (Zen 4, 2 threads, bench_lossgrad: relu1_1 14.1-14.3 -> 13.4-13.6 ms) */
        switch (nr) {
#define NST__LG_COPY(NR) \
        case NR: for (k = r0; k < r1; k++) memcpy(dst + (size_t)k * NR, a->feat + (size_t)k * a->hw + ju, NR * sizeof(float)); return;
        NST__LG_COPY(12) NST__LG_COPY(24) NST__LG_COPY(48)
#undef NST__LG_COPY
        default: break;
        }
    }
    for (k = r0; k < r1; k++) {
        if (n) memcpy(dst + (size_t)k * nr, a->feat + (size_t)k * a->hw + ju, (size_t)n * sizeof(float));
        if (n < nr) memset(dst + (size_t)k * nr + n, 0, (size_t)(nr - n) * sizeof(float));
    }
}
#if defined(__GNUC__) || defined(__clang__)
#define NST__LG_PF(p) __builtin_prefetch(p, 0, 3)
#else
#define NST__LG_PF(p) ((void)(p))
#endif
/* Prefetch of rows [r0, r1) of columns [j0, j0 + n) of a c x hw map. */
static void nst__lg_prefetch(const float *m, size_t hw, int r0, int r1, size_t j0, size_t n) {
    int k;
    size_t o;
    if (!n) return;
    for (k = r0; k < r1; k++) {
        const char *p = (const char *)(m + (size_t)k * hw + j0);
        for (o = 0; o < n * sizeof(float); o += 64) NST__LG_PF(p + o);
        NST__LG_PF(p + n * sizeof(float) - 1);
    }
}

/* The loss gradient at one layer in one pass (see above); d is D, c x c row-major. */
static nst_status nst__lossgrad_onepass(const nst__lg_kernel *kt, const nst__lg_args *a, const float *d, int nthreads) {
    int c = a->c, mr = kt->mr, nr = kt->nr, np = (c + mr - 1) / mr, rpc, p, k, r;
    int nt = nst__resolve_threads(nthreads), nsub = NST__MAX(1, NST__MIN(16, NST__LG_STRIP / c / nr));
    if (nst__lg_nsub_forced) nsub = nst__lg_nsub_forced;
    size_t sw = (size_t)nr * nsub, nstrip = (a->hw + sw - 1) / sw, per = (size_t)c * sw, chunk;
    long nchunk, b;
    float *dp, *buf;
    rpc = (c + np - 1) / np;   /* rows of the next strip copied per tile call */
    dp = (float *)nst__aligned_alloc(sizeof(float) * (size_t)np * mr * c);
    buf = (float *)nst__aligned_alloc(sizeof(float) * 2 * per * (size_t)nt);
    if (!dp || !buf) {
        nst__aligned_free(dp); nst__aligned_free(buf);
        return nst__err(NST_ERR_NOMEM, "style gradient: out of memory");
    }
    /* threaded: at c = 512 the pack is 1 MiB, ~0.3 ms of one thread */
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) private(k, r) if (c >= 256)
#endif
    for (p = 0; p < np; p++)
        for (k = 0; k < c; k++)
            for (r = 0; r < mr; r++) {
                int i = p * mr + r;
                dp[((size_t)p * c + k) * mr + r] = i < c ? d[(size_t)i * c + k] : 0.0f;
            }
    /* chunks of strips taken as threads come free; each pipelines its strips */
    chunk = NST__MAX((size_t)4, NST__MIN((size_t)256, nstrip / (8 * (size_t)nt)));
    nchunk = (long)((nstrip + chunk - 1) / chunk);
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
#endif
    for (b = 0; b < nchunk; b++) {
        size_t s0 = (size_t)b * chunk, s1 = NST__MIN(nstrip, s0 + chunk), s;
        int t = 0, u, pi;
        float *f0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        f0 = buf + (size_t)t * 2 * per;
        for (u = 0; u < nsub; u++) nst__lg_copy_rows(nr, nsub, a, s0, u, 0, c, f0);
        for (s = s0; s < s1; s++) {
            float *cur = f0 + ((s - s0) & 1) * per, *nxt = f0 + (((s - s0) & 1) ^ 1) * per;
            size_t j0 = s * sw;
            for (pi = 0; pi < np; pi++)
                for (u = 0; u < nsub; u++) {
                    /* the next call (panel pn of strip sn): its rows of the strip after sn and its tile of g
                     * are prefetched now, subpanel by subpanel, so the copy and the epilogue find them */
                    int pn = pi + 1 < np ? pi + 1 : 0;
                    size_t sn = pi + 1 < np ? s : s + 1, ju = j0 + (size_t)u * nr, jn = (sn + 1) * sw + (size_t)u * nr;
                    if (sn + 1 < s1 && jn < a->hw)
                        nst__lg_prefetch(a->feat, a->hw, NST__MIN(c, pn * rpc), NST__MIN(c, (pn + 1) * rpc), jn,
                                         NST__MIN((size_t)nr, a->hw - jn));
                    if (s + 1 < s1) nst__lg_copy_rows(nr, nsub, a, s + 1, u, NST__MIN(c, pi * rpc), NST__MIN(c, (pi + 1) * rpc), nxt);
                    jn = sn * sw + (size_t)u * nr;
                    if (sn < s1 && jn < a->hw)
                        nst__lg_prefetch(a->g, a->hw, pn * mr, NST__MIN(c, pn * mr + mr), jn, NST__MIN((size_t)nr, a->hw - jn));
                    if (ju < a->hw)
                        kt->tile(a, dp + (size_t)pi * c * mr, cur + (size_t)u * c * nr, pi * mr, ju, NST__MIN(mr, c - pi * mr),
                                 (int)NST__MIN((size_t)nr, a->hw - ju));
                }
        }
    }
    nst__aligned_free(dp);
    nst__aligned_free(buf);
    return NST_OK;
}

/* The loss gradient at one layer without normalisation, fused. With a style term, where the ISA has a
 * one-pass kernel (AVX2, AVX-512, NEON, scalar; c <= NST__LG_CMAX), nst__lossgrad_onepass above: content
 * terms, D F and the ReLU mask per tile, g read and written once. bench/bench_lossgrad.c (2026-12-01 14:15, Zen
 * 3, AVX2, load average 6 on the 2 cores; `OMP_WAIT_POLICY=passive build/bench_lossgrad --threads 1|2
 * --reps 20`, 4 runs, best CPU ms per thread, GEMM + mask pass vs one pass): relu1_1 38.5-39.9 vs
 * 30.6-34.6 on 1 thread, 19.6-19.8 vs 15.6-16.1 on 2; relu2_1 31.8-32.6 vs 27.1-28.3, 15.9-16.3 vs
 * 13.3-13.9; relu3_1 1.04x (1 thread) and 1.01x (2) faster, relu4_1 1.06x and 1.04x, relu5_1 1.03x and
 * 1.04x. Otherwise (no style term: relu4_2 only streams; or c above NST__LG_CMAX) pixel columns in
 * blocks taken by the threads as they come free, each block gets the content terms, the Gram backward D F with D the sum of the style
 * terms' s (G - A) as a GEMM, and, at a ReLU layer, the ReLU mask while the block is in cache.
 *   c >= 256: D is packed once for all blocks (1 MiB at c = 512, which each 1024-column block packed
 *     again before). Every element of g then sees the same K blocks of the one pack and is added to
 *     with beta = 1 (edge tiles add the same way), so the bits do not depend on where the blocks are
 *     cut: the width may follow the thread count (tests/test_iter.c, lossgrad_independent_of_blocks).
 *   c < 256: packed D is at most 64 KiB, little next to a block's features, and the GEMM's short-M
 *     path (for at least 4 NST__WIDE_NC columns) streams the features from memory better than the
 *     pre-packed path did when a pack turned the short-M path off (Zen 3, 1 thread, 512 px: relu1_1 37
 *     ms vs 53-70, relu2_1 30-31 vs 35); a pack now takes that path too and runs as fast as the GEMM's
 *     own packing (see nst__sgemm_pack_a), no faster. Each block calls the GEMM itself, 131072 / c
 *     columns (768 to 2048 measured the same), a width independent of the thread count, so the bits are.
 * Measured and not kept (2026-12-01, Zen 3, AVX2): the ReLU mask as an epilogue of the GEMM's tiles
 * (each tile of g masked right after the kernel stored it, one read-modify-write of g) and, at c < 256,
 * one masked GEMM over the whole layer instead of the blocks: bench/bench_lossgrad.c of commit 063adb6
 * (`OMP_WAIT_POLICY=passive build/bench_lossgrad --threads 1|2 --reps 15`, GEMM + mask pass over fused,
 * best CPU time, alternated, load average 6 on the 2 cores) gave 0.93-1.02 at relu1_1, 0.97-1.02 at
 * relu2_1, 0.95-0.99 at relu3_1 and 0.96-1.05 at relu4_1 on 1 and 2 threads: the mask pass reads a block
 * that is still in L2, while the fused form reads the mask from feature rows 4 hw bytes apart. The
 * one-pass kernel reads the mask from its copy of the strip instead. */
/* g[i] += sc (f[i] - p[i]), n elements: the content term's gradient, vectorized as nst__affine_run. */
static void nst__content_run(float *NST__RESTRICT g, const float *NST__RESTRICT f, const float *NST__RESTRICT p, size_t n,
                             float sc) {
    size_t i, m = n & ~(size_t)7;
    for (i = 0; i < m; i++) g[i] += sc * (f[i] - p[i]);
    for (; i < n; i++) g[i] += sc * (f[i] - p[i]);
}

/* d = (add ? d : 0) + sc (g - t), n elements; threaded from 256 x 256 on (0.2-0.3 ms of one thread there) */
static void nst__style_diff(float *d, const float *g, const float *t, float sc, size_t n, int add, int nthreads) {
    long i, nn = (long)n;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nst__resolve_threads(nthreads)) schedule(static) if (n >= 65536)
#endif
    for (i = 0; i < nn; i++) d[i] = (add ? d[i] : 0.0f) + sc * (g[i] - t[i]);
    (void)nthreads;
}

static nst_status nst__objective_lossgrad_fused(nst_objective *o, int layer, const float *feat, float *g) {
    const nst__net *n = &o->net;
    int c = n->c_[layer], k, relu = nst__layer_type(layer) == NST__L_RELU, simd = nst__simd_avx2(), styled = 0;
    int shared = c >= 256, failed = 0, forced = nst__arch_forced;
    size_t hw = (size_t)n->h_[layer] * n->w_[layer], cc = (size_t)c * c, nb;
    long nblk, b;
    float content_sc[NST__MAX_LOSS_LAYERS], *d = NULL;
    double el = (double)c * hw;
    nst__sgemm_apack pk;
    const nst__lg_kernel *kt;
    memset(&pk, 0, sizeof pk);
    for (k = 0; k < o->ncontent; k++)
        content_sc[k] = o->content_layer[k] == layer && o->cw != 0 ? (float)(o->cw * 2.0 / el) : 0.0f;
    for (k = 0; k < o->nstyle; k++) {   /* G itself stays as it is, for nst_objective_gram */
        const nst__style_layer *s = &o->style[k];
        double coef = o->sw * s->weight;
        float sc;
        if (s->layer != layer || coef == 0) continue;
        sc = (float)(coef * 4.0 / ((double)cc * el));
        if (!d && !(d = (float *)nst__aligned_alloc(cc * sizeof(float))))
            return nst__err(NST_ERR_NOMEM, "style gradient: out of memory for %d x %d floats", c, c);
        nst__style_diff(d, s->gram, s->target, sc, cc, styled, n->nthreads);
        styled = 1;
    }
    if (styled && c <= NST__LG_CMAX && (kt = nst__lg_kernel_pick()) != NULL) {
        nst__lg_args la;
        nst_status st;
        memset(&la, 0, sizeof la);
        la.c = c; la.hw = hw; la.relu = relu; la.feat = feat; la.g = g;
        for (k = 0; k < o->ncontent; k++)
            if (content_sc[k] != 0.0f) { la.ct_sc[la.nct] = content_sc[k]; la.ct_p[la.nct++] = o->content_target[k]; }
        st = nst__lossgrad_onepass(kt, &la, d, n->nthreads);
        nst__aligned_free(d);
        return st;
    }
    if (styled && shared) {
        nst_status st = nst__sgemm_pack_a(&pk, 0, c, c, d, c);
        nst__aligned_free(d);
        d = NULL;
        if (st != NST_OK) return st;
    }
    /* without a style term (relu4_2) the pass only streams: the wide blocks of before */
    nb = styled && shared ? nst__lossgrad_cols(c, hw, n->nthreads)
                          : (size_t)(c >= 256 ? 1024 : NST__MAX(1, 131072 / c));
    nblk = (long)NST__MAX((size_t)1, hw / nb);   /* the last block takes the rest: none narrower than nb */
    (void)simd;
#ifdef _OPENMP
#pragma omp parallel for num_threads(n->nthreads) schedule(dynamic, 1)
#endif
    for (b = 0; b < nblk; b++) {
        size_t j0 = (size_t)b * nb, j1 = b == nblk - 1 ? hw : j0 + nb;
        int kk, ch, w = (int)(j1 - j0);
        nst_status st = NST_OK;
        if (!styled) {   /* relu4_2: the content terms and the mask row by row, each row still in L1 for the mask
                          * (a block's 512 rows of g, feat and the target are 6 MiB: the mask's pass after
                          * them read g and feat again from L3) */
            for (ch = 0; ch < c; ch++) {
                size_t r = (size_t)ch * hw + j0;
                for (kk = 0; kk < o->ncontent; kk++)
                    if (content_sc[kk] != 0.0f) nst__content_run(g + r, feat + r, o->content_target[kk] + r, (size_t)w, content_sc[kk]);
                if (relu) nst__relu_backward_feat(g, feat, r, r + (size_t)w, simd);
            }
            continue;
        }
        for (kk = 0; kk < o->ncontent; kk++) {
            if (content_sc[kk] == 0.0f) continue;
            for (ch = 0; ch < c; ch++) {
                size_t r = (size_t)ch * hw + j0;
                nst__content_run(g + r, feat + r, o->content_target[kk] + r, (size_t)w, content_sc[kk]);
            }
        }
        if (styled && shared)
            st = nst__sgemm_apacked(1, &pk, 0, w, 1.0f, feat + j0, (int)hw, 1.0f, g + j0, (int)hw, NULL, 0);
        else if (styled)
            st = nst__sgemm_worker(forced, 0, 0, c, w, c, 1.0f, d, c, feat + j0, (int)hw, 1.0f, g + j0, (int)hw);
        if (st != NST_OK) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
            failed = 1;
        }
        if (relu)
            for (ch = 0; ch < c; ch++) nst__relu_backward_feat(g, feat, (size_t)ch * hw + j0, (size_t)ch * hw + j1, simd);
    }
    nst__sgemm_apack_free(&pk);
    nst__aligned_free(d);
    /* the GEMM's message went to the thread that failed */
    return failed ? nst__err(NST_ERR_NOMEM, "style gradient: out of memory for the GEMM's packing") : NST_OK;
}

static nst_status nst__objective_lossgrad(void *ctx, int layer, const float *feat, float *g, float *scratch) {
    nst_objective *o = (nst_objective *)ctx;
    const nst__net *n = &o->net;
    size_t el = (size_t)n->c_[layer] * n->h_[layer] * n->w_[layer], i;
    int k;
    nst_status st = NST_OK;
    if (!o->normalize && !o->nmask && n->h_[layer] * n->w_[layer] <= INT_MAX)
        return nst__objective_lossgrad_fused(o, layer, feat, g);
    for (k = 0; k < o->ncontent; k++) {
        const float *p = o->content_target[k];
        if (o->content_layer[k] != layer || o->cw == 0) continue;
        if (o->normalize) {
            double a = 0, sc;
            for (i = 0; i < el; i++) { scratch[i] = 2.0f * (feat[i] - p[i]) / (float)el; a += fabs(scratch[i]); }
            sc = o->cw / (a + 1e-8);
            for (i = 0; i < el; i++) g[i] += (float)(sc * scratch[i]);
        } else {
            nst__content_run(g, feat, p, el, (float)(o->cw * 2.0 / (double)el));
        }
    }
    if (o->nmask) {
        st = nst__masked_style_grad(o, layer, feat, g);
        if (nst__layer_type(layer) == NST__L_RELU) nst__relu_backward_feat(g, feat, 0, el, nst__simd_avx2());
        return st;
    }
    for (k = 0; k < o->nstyle && st == NST_OK; k++) {
        nst__style_layer *s = &o->style[k];
        int c = s->c;
        size_t hw = el / (size_t)c, cc = (size_t)c * c;
        double coef = o->sw * s->weight;
        float *d;
        if (s->layer != layer || coef == 0) continue;
        /* dL/dF = 4 w (G - A) F / (C^2 * C*H*W); G - A is formed in place of G (recomputed each eval) */
        d = s->gram;
        for (i = 0; i < cc; i++) d[i] -= s->target[i];
        if (o->normalize) {
            double a;
            st = nst__sgemm_ex(n->nthreads, 0, 0, c, (int)hw, c, (float)(4.0 / ((double)cc * el)), d, c, feat, (int)hw,
                               0.0f, scratch, (int)hw);
            a = nst__asum(scratch, el);
            for (i = 0; i < el && st == NST_OK; i++) g[i] += (float)(coef / (a + 1e-8)) * scratch[i];
        } else {
            st = nst__sgemm_ex(n->nthreads, 0, 0, c, (int)hw, c, (float)(coef * 4.0 / ((double)cc * el)), d, c, feat,
                               (int)hw, 1.0f, g, (int)hw);
        }
        for (i = 0; i < cc; i++) d[i] += s->target[i];   /* restore G for nst_objective_gram */
    }
    if (nst__layer_type(layer) == NST__L_RELU) nst__relu_backward_feat(g, feat, 0, el, nst__simd_avx2());
    return st;
}

/* The losses at layer l as forward passes it (nst__net.hook of the untiled objective): the content
 * terms, the Grams and style terms into o->acc. */
static nst_status nst__objective_hook(void *ctx, int layer, const float *feat, float *scratch) {
    nst_objective *o = (nst_objective *)ctx;
    const nst__net *n = &o->net;
    size_t hw = (size_t)n->h_[layer] * n->w_[layer], el = (size_t)n->c_[layer] * hw;
    double tp = nst__prof_now(n);
    nst_status st;
    int k;
    for (k = 0; k < o->ncontent; k++) {
        if (o->content_layer[k] != layer) continue;
        o->acc.content_raw += nst__sqdist(feat, o->content_target[k], el, o->nthreads) / (double)el;
        tp = nst__prof(n, NST__PROF_CONTENT, tp);
    }
    for (k = 0; k < o->nstyle; k++) {
        nst__style_layer *s = &o->style[k];
        size_t cc = (size_t)s->c * s->c;
        double acc = 0;
        if (s->layer != layer) continue;
        if (o->nmask) {   /* the masked features go to the free buffer */
            if ((st = nst__masked_style_eval(o, k, feat, scratch, &acc)) != NST_OK) return st;
            o->acc.style_raw += acc;
            continue;
        }
        if ((st = nst__gram(s->gram, feat, s->c, hw, o->nthreads)) != NST_OK) return st;
        acc = nst__sqdist(s->gram, s->target, cc, o->nthreads);
        o->acc.style_raw += s->weight * acc / (double)cc;
        tp = nst__prof(n, NST__PROF_GRAM + layer, tp);
    }
    return NST_OK;
}

/* nst_objective_create's targets, taken as forward passes the layers: the content features, or one
 * style image's Grams (blended into the targets, kept per style for masks, added to the cache). */
typedef struct nst__build_ctx {
    nst_objective *o;
    const nst__net *net;
    int content, index, avg;
    float wgt;
    const nst_image *si;
    uint32_t crc;
    nst_style_cache *cache;
} nst__build_ctx;

static nst_status nst__objective_build_hook(void *ctx, int layer, const float *feat, float *scratch) {
    nst__build_ctx *b = (nst__build_ctx *)ctx;
    nst_objective *o = b->o;
    size_t hw = (size_t)b->net->h_[layer] * b->net->w_[layer], j;
    nst_status st;
    int k;
    (void)scratch;
    if (b->content) {
        for (k = 0; k < o->ncontent; k++)
            if (o->content_layer[k] == layer)
                memcpy(o->content_target[k], feat, sizeof(float) * (size_t)b->net->c_[layer] * hw);
        return NST_OK;
    }
    for (k = 0; k < o->nstyle; k++) {
        nst__style_layer *s = &o->style[k];
        size_t cc = (size_t)s->c * s->c;
        if (s->layer != layer) continue;
        if ((st = nst__gram(s->gram, feat, s->c, hw, o->nthreads)) != NST_OK) return st;
        for (j = 0; j < cc; j++) s->target[j] += b->wgt * s->gram[j];
        if (o->nmask) memcpy(o->mtarget[k] + (size_t)b->index * cc, s->gram, sizeof(float) * cc);
        if (b->cache) nst__style_cache_add(b->cache, o->m, s->layer, b->avg, b->si, b->crc, s->gram, s->c);
    }
    return NST_OK;
}

/* The untiled objective's main network as nst_objective_create builds it (packed, keeping the loss
 * layers), sized so that each style image's network (sh, sw; packed, keeping nothing, watching the style
 * layers up to slast) can borrow its buffers and scratch. */
static nst_status nst__objective_net(nst__net *n, const nst_model *m, int h, int w, int last, const unsigned char *keep,
                                     const int *sh, const int *sw, int nstyles, int slast, const unsigned char *swatch,
                                     int avg, int nthreads, int recompute_ok, int alloc) {
    nst__net t;
    size_t bufs, ws = 0;
    int i;
    nst_status st;
    if ((st = nst__net_init(&t, m, h, w, last, keep, avg, nthreads, 0)) != NST_OK) return st;
    bufs = t.buf_elems;
    for (i = 0; i < nstyles && slast >= 0; i++)
        if (nst__net_init(&t, m, sh[i], sw[i], slast, NULL, avg, nthreads, 0) == NST_OK) bufs = NST__MAX(bufs, t.buf_elems);
    for (i = 0; i < nstyles && slast >= 0; i++)
        if (nst__net_init_packed(&t, m, sh[i], sw[i], slast, NULL, swatch, avg, nthreads, 0, NULL, bufs, 0, 0, 0) == NST_OK)
            ws = NST__MAX(ws, t.ws_bytes);
    return nst__net_init_packed(n, m, h, w, last, keep, keep, avg, nthreads, alloc, NULL, bufs, ws, recompute_ok, 1);
}

static void nst__tiled_free(struct nst__tiled *t);
NSTDEF void nst_objective_free(nst_objective *o) {
    int k;
    if (!o) return;
    nst__tiled_free(o->tiled);
    nst__net_free(&o->net);
    for (k = 0; k < o->ncontent; k++) nst__aligned_free(o->content_target[k]);
    for (k = 0; k < o->nstyle; k++) {
        nst__aligned_free(o->style[k].target);
        nst__aligned_free(o->style[k].gram);
    }
    for (k = 0; k < NST__MAX_LOSS_LAYERS; k++) {
        nst__aligned_free(o->mask[k]);
        nst__aligned_free(o->mtarget[k]);
        nst__aligned_free(o->mgram[k]);
    }
    nst__aligned_free(o->mtmp);
    nst__aligned_free(o->tprev);
    nst__aligned_free(o->tweight);
    nst__free(o);
}

/* Image (RGB interleaved [0,1]) to planar 0..255. */
static void nst__image_to_planar(const nst_image *im, float *px) {
    size_t hw = (size_t)im->width * im->height, i;
    int c;
    for (c = 0; c < 3; c++)
        for (i = 0; i < hw; i++) px[(size_t)c * hw + i] = 255.0f * im->pixels[i * 3 + c];
}
static void nst__planar_to_image(const float *px, nst_image *im) {
    size_t hw = (size_t)im->width * im->height, i;
    int c;
    for (c = 0; c < 3; c++)
        for (i = 0; i < hw; i++) {
            float v = px[(size_t)c * hw + i] * (1.0f / 255.0f);
            im->pixels[i * 3 + c] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
        }
}

static nst_status nst__require_rgb(const nst_image *im, const char *what) {
    if (!im || !im->pixels || im->channels != 3 || im->width < 1 || im->height < 1)
        return nst__err(NST_ERR_ARGUMENT, "%s must be an RGB image (use nst_image_to_rgb)", what);
    return NST_OK;
}

/* Byte count of an objective at h x w (the network plus targets), for the memory estimate. */
static nst_status nst__objective_layout(const nst_model *m, const nst_options *o, int *content, int *nc, int *style,
                                        int *ns, int *last, unsigned char *keep) {
    nst_status st;
    int k;
    if ((st = nst__parse_layers(o->content_layers, content, nc)) != NST_OK) return st;
    if ((st = nst__parse_layers(o->style_layers, style, ns)) != NST_OK) return st;
    if (*nc + *ns == 0) return nst__err(NST_ERR_ARGUMENT, "no content or style layers");
    *last = nst__deepest(style, *ns, nst__deepest(content, *nc, -1));
    if (nst__layer_conv(*last) >= m->nconv)
        return nst__err(NST_ERR_ARGUMENT, "layer %s needs %s, but the model stops at %s", nst__layer_names[*last],
                        nst__conv_names[nst__layer_conv(*last)], nst__conv_names[m->nconv - 1]);
    memset(keep, 0, NST_VGG_LAYERS);
    for (k = 0; k < *nc; k++) keep[content[k]] = 1;
    for (k = 0; k < *ns; k++) keep[style[k]] = 1;
    return NST_OK;
}

static int nst__tiling_needed(const nst_options *o, const nst_image *content, const nst_image *styles, int nstyles,
                              const int *content_l, int nc, const int *style_l, int ns);
static nst_status nst__objective_create_tiled(const nst_model *m, const nst_image *content, const nst_image *styles,
                                              const float *blend, int nstyles, const nst_options *opt,
                                              nst_objective **out);
static nst_status nst__objective_eval_tiled(nst_objective *o, const float *pixels, nst_losses *lo, float *grad);

NSTDEF nst_status nst_objective_create(const nst_model *m, const nst_image *content, const nst_image *styles,
                                       const float *blend, int nstyles, const nst_options *opt,
                                       nst_objective **out) {
    nst_objective *o;
    nst_options defaults;
    int content_l[NST__MAX_LOSS_LAYERS], style_l[NST__MAX_LOSS_LAYERS], nc, ns, last, k, i, avg;
    unsigned char keep[NST_VGG_LAYERS];
    nst_status st;
    float *px = NULL;
    double bsum = 0;
    if (!out) return nst__err(NST_ERR_ARGUMENT, "objective: NULL output");
    *out = NULL;
    if (!opt) { nst_options_init(&defaults); opt = &defaults; }
    if (!m) return nst__err(NST_ERR_ARGUMENT, "objective: no model");
    if ((st = nst__require_rgb(content, "the content image")) != NST_OK) return st;
    if (nstyles < 0 || (nstyles > 0 && !styles)) return nst__err(NST_ERR_ARGUMENT, "objective: bad style images");
    for (k = 0; k < nstyles; k++) {
        if ((st = nst__require_rgb(&styles[k], "a style image")) != NST_OK) return st;
        bsum += blend ? blend[k] : 1.0;
        if (blend && !(blend[k] >= 0)) return nst__err(NST_ERR_ARGUMENT, "style blend weights must be >= 0");
    }
    if (nstyles && !(bsum > 0)) return nst__err(NST_ERR_ARGUMENT, "style blend weights sum to 0");
    if ((st = nst__objective_layout(m, opt, content_l, &nc, style_l, &ns, &last, keep)) != NST_OK) return st;
    if (nstyles == 0) ns = 0;
    if (opt->tile > 0 && nst__tiling_needed(opt, content, styles, nstyles, content_l, nc, style_l, ns))
        return nst__objective_create_tiled(m, content, styles, blend, nstyles, opt, out);
    o = (nst_objective *)nst__calloc(1, sizeof *o);
    if (!o) return nst__err(NST_ERR_NOMEM, "objective: out of memory");
    o->m = m;
    o->h = content->height; o->w = content->width;
    o->nthreads = nst__resolve_threads(opt->threads);
    o->normalize = opt->normalize_gradients;
    o->cw = opt->content_weight; o->sw = opt->style_weight;
    o->tvw = opt->tv_weight < 0 ? nst_model_default_tv_weight(m) : opt->tv_weight;
    avg = (opt->pool == NST_POOL_DEFAULT ? m->pool : opt->pool) == NST_POOL_AVG;
    if (ns == 0) for (k = 0; k < NST_VGG_LAYERS; k++) keep[k] = 0;
    for (k = 0; k < nc; k++) keep[content_l[k]] = 1;
    if (ns == 0) last = nst__deepest(content_l, nc, -1);
    {
        int sw[8], sh[8];
        unsigned char swatch[NST_VGG_LAYERS];
        memset(swatch, 0, sizeof swatch);
        for (k = 0; k < ns; k++) swatch[style_l[k]] = 1;
        for (i = 0; i < nstyles && i < 8; i++) { sw[i] = styles[i].width; sh[i] = styles[i].height; }
        if ((st = nst__objective_net(&o->net, m, o->h, o->w, last, keep, sh, sw, NST__MIN(nstyles, 8),
                                     ns > 0 ? nst__deepest(style_l, ns, -1) : -1, swatch, avg, o->nthreads,
                                     !opt->normalize_gradients && !(opt->style_masks && ns > 0 && nstyles > 0), 1)) !=
            NST_OK)
            goto fail;
    }
    /* content targets, copied as forward passes their layers */
    for (k = 0; k < nc; k++) {
        int l = content_l[k];
        size_t el = (size_t)o->net.c_[l] * o->net.h_[l] * o->net.w_[l];
        o->content_layer[k] = l;
        o->content_target[k] = (float *)nst__aligned_alloc(el * sizeof(float));
        o->ncontent = k + 1;
        if (!o->content_target[k]) { st = nst__err(NST_ERR_NOMEM, "objective: out of memory"); goto fail; }
    }
    px = (float *)nst__malloc(sizeof(float) * 3 * (size_t)o->w * o->h);
    if (!px) { st = nst__err(NST_ERR_NOMEM, "objective: out of memory"); goto fail; }
    nst__image_to_planar(content, px);
    {
        nst__build_ctx b;
        memset(&b, 0, sizeof b);
        b.o = o; b.net = &o->net; b.content = 1;
        o->net.hook = nst__objective_build_hook; o->net.hook_ctx = &b;
        st = nst__net_forward(&o->net, px);
        o->net.hook = NULL;
        if (st != NST_OK) goto fail;
    }
    nst__free(px);
    px = NULL;
    /* style targets: blended Grams, each style image at its own size */
    for (k = 0; k < ns; k++) {
        int l = style_l[k], c = o->net.c_[l];
        nst__style_layer *s = &o->style[k];
        s->layer = l; s->c = c;
        s->weight = opt->style_layer_weights ? opt->style_layer_weights[k] : 1.0f;
        s->target = (float *)nst__aligned_alloc(sizeof(float) * (size_t)c * c);
        s->gram = (float *)nst__aligned_alloc(sizeof(float) * (size_t)c * c);
        o->nstyle = k + 1;
        if (!s->target || !s->gram) { st = nst__err(NST_ERR_NOMEM, "objective: out of memory"); goto fail; }
        memset(s->target, 0, sizeof(float) * (size_t)c * c);
    }
    if (opt->style_masks && ns > 0 && nstyles > 0) {
        if (nstyles > 8) { st = nst__err(NST_ERR_ARGUMENT, "objective: at most 8 masked styles"); goto fail; }
        if ((st = nst__objective_masks(o, opt->style_masks, nstyles, blend, bsum)) != NST_OK) goto fail;
    }
    if (opt->temporal_weight > 0 && opt->temporal_image &&
        (st = nst__objective_temporal(o, content, opt)) != NST_OK)
        goto fail;
    for (i = 0; i < nstyles && ns > 0; i++) {
        nst__net sn;
        unsigned char skeep[NST_VGG_LAYERS];
        const nst_image *si = &styles[i];
        int slast = nst__deepest(style_l, ns, -1);
        float wgt = (float)((blend ? blend[i] : 1.0) / bsum);
        uint32_t crc = 0;
        if (opt->style_cache) {
            int hit = 1;
            crc = nst__crc32(0, si->pixels, sizeof(float) * 3 * (size_t)si->width * si->height);
            for (k = 0; k < ns && hit; k++) hit = nst__style_cache_find(opt->style_cache, m, style_l[k], avg, si, crc) != NULL;
            if (hit) {
                opt->style_cache->hits++;
                for (k = 0; k < ns; k++) {
                    nst__style_layer *s = &o->style[k];
                    size_t j, cc = (size_t)s->c * s->c;
                    memcpy(s->gram, nst__style_cache_find(opt->style_cache, m, s->layer, avg, si, crc), cc * sizeof(float));
                    for (j = 0; j < cc; j++) s->target[j] += wgt * s->gram[j];
                    if (o->nmask) memcpy(o->mtarget[k] + (size_t)i * cc, s->gram, cc * sizeof(float));
                }
                continue;
            }
        }
        memset(skeep, 0, sizeof skeep);
        for (k = 0; k < ns; k++) skeep[style_l[k]] = 1;
        /* keeps nothing: the Grams are taken as forward passes the style layers */
        if ((st = nst__net_init_packed(&sn, m, si->height, si->width, slast, NULL, skeep, avg, o->nthreads, 1, &o->net,
                                       0, 0, 0, 0)) != NST_OK) {
            nst__net_free(&sn);
            goto fail;
        }
        px = (float *)nst__malloc(sizeof(float) * 3 * (size_t)si->width * si->height);
        if (!px) { nst__net_free(&sn); st = nst__err(NST_ERR_NOMEM, "objective: out of memory"); goto fail; }
        nst__image_to_planar(si, px);
        {
            nst__build_ctx b;
            memset(&b, 0, sizeof b);
            b.o = o; b.net = &sn; b.wgt = wgt; b.index = i; b.si = si; b.crc = crc; b.cache = opt->style_cache;
            b.avg = avg;
            sn.hook = nst__objective_build_hook; sn.hook_ctx = &b;
            st = nst__net_forward(&sn, px);
        }
        nst__free(px);
        px = NULL;
        nst__net_free(&sn);
        if (st != NST_OK) goto fail;
    }
    *out = o;
    return NST_OK;
fail:
    nst__free(px);
    nst_objective_free(o);
    return st;
}

NSTDEF nst_status nst_objective_eval(nst_objective *o, const float *pixels, nst_losses *lo, float *grad) {
    nst__net *n;
    nst_losses L;
    nst_status st;
    double tp;
    if (!o || !pixels) return nst__err(NST_ERR_ARGUMENT, "objective: NULL argument");
    if (o->tiled) return nst__objective_eval_tiled(o, pixels, lo, grad);
    n = &o->net;
    memset(&o->acc, 0, sizeof o->acc);
    o->evaluated = 0;
    n->hook = nst__objective_hook; n->hook_ctx = o;
    st = nst__net_forward(n, pixels);
    n->hook = NULL;
    if (st != NST_OK) return st;
    L = o->acc;
    o->feat_stale = 0;
    if (grad) {
        o->feat_stale = n->packed;
        if ((st = nst__net_backward(n, nst__objective_lossgrad, o, grad)) != NST_OK) return st;
    }
    tp = nst__prof_now(n);
    L.tv_raw = nst__tv(pixels, o->h, o->w, (float)o->tvw, o->m->is_random, grad, o->nthreads);
    nst__prof(n, NST__PROF_TV, tp);
    L.content = o->cw * L.content_raw;
    L.style = o->sw * L.style_raw;
    L.tv = o->tvw * L.tv_raw;
    L.total = L.content + L.style + L.tv;
    if (o->tprev) {
        L.temporal_raw = nst__temporal(o, pixels, grad);
        L.temporal = o->tw * L.temporal_raw;
        L.total += L.temporal;
    }
    o->last = L;
    o->evaluated = 1;
    if (lo) *lo = L;
    return NST_OK;
}

NSTDEF nst_status nst_objective_features(const nst_objective *o, const char *layer, int *c, int *h, int *w,
                                         const float **data) {
    int l = nst_layer_index(layer);
    if (o && o->tiled)
        return nst__err(NST_ERR_UNSUPPORTED, "objective: a tiled objective keeps no whole-image features");
    if (!o || l < 0 || l > o->net.last || !o->net.keep[l] || !o->evaluated)
        return nst__err(NST_ERR_ARGUMENT, "objective: no features kept at '%s'", layer ? layer : "(null)");
    if (c) *c = o->net.c_[l];
    if (h) *h = o->net.h_[l];
    if (w) *w = o->net.w_[l];
    if (o->net.recompute[l] || (o->feat_stale && o->net.placed[l])) {
        /* backward has overwritten them, or they were never kept whole: forward again up to the layer from
         * the kept input (o comes from nst_objective_create, which allocates it writable) */
        nst__net *n = (nst__net *)&o->net;
        int last = n->last;
        nst_status st;
        n->last = l;
        st = nst__net_forward(n, NULL);
        n->last = last;
        ((nst_objective *)o)->feat_stale = 1;
        if (st != NST_OK) return st;
        if (data) *data = n->out;
        return NST_OK;
    }
    if (data) *data = o->net.feat[l];
    return NST_OK;
}

NSTDEF nst_status nst_objective_gram(const nst_objective *o, const char *layer, int *c, const float **data) {
    int l = nst_layer_index(layer), k;
    if (o && o->evaluated)
        for (k = 0; k < o->nstyle; k++)
            if (o->style[k].layer == l) {
                if (c) *c = o->style[k].c;
                if (data) *data = o->style[k].gram;
                return NST_OK;
            }
    return nst__err(NST_ERR_ARGUMENT, "objective: '%s' is not an evaluated style layer", layer ? layer : "(null)");
}

/* ---- the tiled objective ----------------------------------------------------------------------------
 * The whole-image objective evaluated tile by tile, exactly, so memory follows the tile, not the image.
 * A tile is an interior (the pixels it answers for) plus a halo on every side that is not the image's
 * edge. Interiors and their origins are multiples of the pooling grid (2^pools: 16 px up to relu5_1),
 * and every layer computes a region of its own: the interior plus the rows the deeper layers need
 * (nst__tile_halos: 70 px at the input for relu5_1, 1 row at conv5_1's input), pooled from even
 * origins, so every pooling window of a tile is one of the whole image's; the rows the zero padding at a
 * region's edge makes wrong are cropped away before they reach a row that matters. The tile's features
 * over its interior are then the whole image's, and interiors partition every layer: rows
 * [iy0 >> k, iy1 >> k) at pooling level k, the last tile ending at H >> k as the whole image's floor does.
 *   pass 1: each tile forward; over its interior, sum F F^T into the Grams and (F - P)^2 into the content
 *           loss; the losses follow.
 *   pass 2: each tile forward again (in reverse order, so the last tile of pass 1, still in the network,
 *           goes first without one), backward with the loss gradient on its interior only (zero on the
 *           halo, whose features another tile answers for), and its whole input gradient, halo included,
 *           added into the image's: every feature's receptive field lies where the tile is exact, so
 *           the sum over tiles is the whole image's gradient.
 * Content targets are kept for the whole image at their layers' resolution, filled from the content
 * image's tiles; style targets accumulate over the style image's own tiles.
 * Spatial style masks fit the same loop: each mask at each style layer's resolution is kept for the whole
 * image and indexed by the interior's global origin, as the content targets are (nst__tile_rect gives
 * both the local interior and its global origin); a guided Gram sums over interiors like a plain one
 * (nst__tile_gram_add with the mask) and its gradient is formed on the interior (nst__tiled_masked_grad).
 * The temporal term is per pixel of the image and needs no tiles. Normalised gradients are refused: each
 * layer's L1 norm of the gradient would be known only after a third pass over the tiles. */
#define NST__TILE_CROP_LEVEL 2   /* convolutions crop their output from this pooling level on */

typedef struct nst__tile {
    int ey0, ey1, ex0, ex1;   /* extent: interior plus halo, image pixels */
    int iy0, iy1, ix0, ix1;   /* interior */
    /* the region each layer computes: origin and size in its level's rows and columns */
    int oy[NST_VGG_LAYERS], ox[NST_VGG_LAYERS], rh[NST_VGG_LAYERS], rw[NST_VGG_LAYERS];
} nst__tile;

typedef struct nst__tiling {
    int h, w, grid, halo;
    int ty, tx, ny, nx;       /* interior size (a multiple of grid) and tiles per column / per row */
    int max_h, max_w;         /* largest extent */
    int last, top, lh[NST_VGG_LAYERS];   /* the network's last layer, deepest level, each layer's halo */
} nst__tiling;

struct nst__tiled {
    nst__tiling t;                                /* of the image being optimised */
    int lh[NST_VGG_LAYERS], lw[NST_VGG_LAYERS];   /* the whole image's shape per layer */
    float *px, *grad;                             /* one tile's pixels and input gradient */
    float *gtmp;                                  /* one tile's Gram at the widest style layer */
    float *diff[NST__MAX_LOSS_LAYERS];            /* G - A per style layer during pass 2 */
    nst__tile cur;                                /* the tile in the network */
    int loaded;                                   /* its index in t when it is of the optimised image, else -1 */
    /* tile_keep_filters: the model with its lazy convolutions' filters transformed once (the network
     * runs on mk; kept[i] copies the model's plan i, its lazy directions' u owned here) */
    nst_model mk;
    nst__conv_plan kept[NST_VGG_CONVS];
    float *kept_u[NST_VGG_CONVS][2];
};

/* mk = m with the lazy Winograd directions of convolutions up to layer `last` made eager (filters
 * transformed once, into memory owned by T) or, with T NULL, only marked so (for the estimate: the
 * network's workspace then holds no filters). Returns the bytes the filters take. */
static size_t nst__tiled_keep_filters(const nst_model *m, int last, nst_model *mk, nst__conv_plan *kept,
                                      float *(*ku)[2], int alloc, int nthreads, nst_status *st) {
    int i, d, nconv = last >= 0 ? nst__layer_conv(last) + 1 : 0;
    size_t bytes = 0;
    *mk = *m;
    *st = NST_OK;
    for (i = 0; i < m->nconv && i < nconv; i++) {
        const nst__conv_plan *p = m->plan[i];
        int lazy = 0;
        for (d = 0; d < 2 && p; d++) lazy |= p->dir[d].algo == NST__CONV_WINO && p->dir[d].lazy;
        if (!lazy) continue;
        kept[i] = *p;
        mk->plan[i] = &kept[i];
        for (d = 0; d < 2; d++) {
            nst__conv_dir *dd = &kept[i].dir[d];
            size_t n = nst__wino_lazy_floats(p->k, dd) * sizeof(float);
            if (!dd->lazy) continue;
            bytes += nst__round64(n);
            dd->lazy = 0;
            dd->u = NULL;
            dd->u_bytes = 0;   /* not the model's: nst__model_bytes of mk stays the model's */
            if (alloc) {
                int nob = (dd->kout + p->k->mr - 1) / p->k->mr, ob;
                if (!(ku[i][d] = dd->u = (float *)nst__aligned_alloc(n))) {
                    *st = nst__err(NST_ERR_NOMEM, "objective: out of memory for the kept filters");
                    return bytes;
                }
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
#endif
                for (ob = 0; ob < nob; ob++) p->k->wino_filters(p, d, dd->u, ob);
                (void)nthreads;
            }
        }
    }
    return bytes;
}

typedef struct nst__rect { int y0, y1, x0, x1, gy0, gx0; } nst__rect;   /* local interior, its global origin */

static int nst__layer_level(int l) {   /* pools up to and including layer l */
    int i, k = 0;
    for (i = 0; i <= l; i++) k += nst__layer_type(i) == NST__L_POOL;
    return k;
}

/* The halo (rows beside the interior, in the layer's level) each layer of a network ending at layer
 * `last` computes, and the input's (*in_halo). Back from `last`, the rows the interior's deepest
 * features depend on: a 3x3 convolution needs one more row of its input, a 2x2 pool twice its output's.
 * A region's edge makes one wrong row per convolution (zero padding where the image goes on); pools,
 * and from NST__TILE_CROP_LEVEL on the convolutions too, crop their output to what the next layers
 * need, so the wrong rows never reach it. Below that level a crop would move more memory than it saves
 * work, and the level computes its first layer's region throughout, rounded up to even so that its
 * pool's windows are the whole image's. relu5_1: input 70, level 1 34, the conv3 layers 15..12, conv4
 * 5..2, conv5_1 0: ~1.44x the interior's work at 512 px tiles, 1.72x with the input's 80 px at every
 * level. Returns the deepest level. */
static int nst__tile_halos(int last, int *lh, int *in_halo) {
    int need[NST_VGG_LAYERS], l, top = nst__layer_level(last), d = 0;
    for (l = 0; l < NST_VGG_LAYERS; l++) lh[l] = 0;
    for (l = last; l >= 0; l--) {
        int t = nst__layer_type(l), lv = nst__layer_level(l);
        if (t == NST__L_POOL && lv < NST__TILE_CROP_LEVEL && lv < top) d += d & 1;
        need[l] = d;
        if (t == NST__L_CONV) d++;
        else if (t == NST__L_POOL) d *= 2;
    }
    if (top > 0) d += d & 1;
    *in_halo = d;
    for (l = 0; l <= last; l++) {
        int t = nst__layer_type(l), lv = nst__layer_level(l);
        lh[l] = t == NST__L_POOL || (t == NST__L_CONV && lv >= NST__TILE_CROP_LEVEL) ? need[l] : l ? lh[l - 1] : d;
    }
    return top;
}

/* Pooling grid (tile interiors start on it, so every pooling window of a tile is one of the whole
 * image's) and the input's halo for a network ending at layer `last`. */
static void nst__tile_geometry(int last, int *grid, int *halo) {
    int lh[NST_VGG_LAYERS];
    *grid = 1 << nst__tile_halos(last, lh, halo);
}

static void nst__tiling_tile(const nst__tiling *t, int k, nst__tile *r) {
    int i = k / t->nx, j = k % t->nx, l;
    r->iy0 = i * t->ty; r->iy1 = NST__MIN(t->h, r->iy0 + t->ty);
    r->ix0 = j * t->tx; r->ix1 = NST__MIN(t->w, r->ix0 + t->tx);
    r->ey0 = NST__MAX(0, r->iy0 - t->halo); r->ey1 = NST__MIN(t->h, r->iy1 + t->halo);
    r->ex0 = NST__MAX(0, r->ix0 - t->halo); r->ex1 = NST__MIN(t->w, r->ix1 + t->halo);
    for (l = 0; l <= t->last; l++) {
        /* the last tile ends where the whole image's floor ends the level */
        int v = nst__layer_level(l);
        r->oy[l] = NST__MAX(0, (r->iy0 >> v) - t->lh[l]);
        r->ox[l] = NST__MAX(0, (r->ix0 >> v) - t->lh[l]);
        r->rh[l] = NST__MIN(t->h >> v, (r->iy1 >> v) + t->lh[l]) - r->oy[l];
        r->rw[l] = NST__MIN(t->w >> v, (r->ix1 >> v) + t->lh[l]) - r->ox[l];
    }
}

/* Tiles of at most size x size (rounded down to the grid) for a network ending at layer `last`,
 * balanced: as few as that allows, each the same size but the last, so no tile is a sliver. */
static void nst__tiling_plan(nst__tiling *t, int h, int w, int size, int last) {
    int grid, s, k;
    nst__tile r;
    t->last = last;
    t->top = nst__tile_halos(last, t->lh, &t->halo);
    grid = 1 << t->top;
    s = NST__MAX(grid, size / grid * grid);
    t->h = h; t->w = w; t->grid = grid;
    t->ny = (h + s - 1) / s;
    t->ty = ((h + t->ny - 1) / t->ny + grid - 1) / grid * grid;
    t->ny = (h + t->ty - 1) / t->ty;
    t->nx = (w + s - 1) / s;
    t->tx = ((w + t->nx - 1) / t->nx + grid - 1) / grid * grid;
    t->nx = (w + t->tx - 1) / t->tx;
    t->max_h = t->max_w = 0;
    for (k = 0; k < t->ny; k++) {
        nst__tiling_tile(t, k * t->nx, &r);
        t->max_h = NST__MAX(t->max_h, r.ey1 - r.ey0);
    }
    for (k = 0; k < t->nx; k++) {
        nst__tiling_tile(t, k, &r);
        t->max_w = NST__MAX(t->max_w, r.ex1 - r.ex0);
    }
}

/* Largest convolution scratch and ping-pong buffer over the tile shapes of a tiling (shapes repeat:
 * only runs of equal extents are visited). */
static nst_status nst__tiling_net_needs(const nst__tiling *t, const nst_model *m, int last, const unsigned char *keep,
                                        int avg, int nthreads, size_t *ws, size_t *bufs) {
    int i, j, ph = -1;
    nst__tile r;
    nst_status st;
    for (i = 0; i < t->ny; i++) {
        int pw = -1, eh;
        nst__tiling_tile(t, i * t->nx, &r);
        eh = r.ey1 - r.ey0;
        if (eh == ph) continue;
        ph = eh;
        for (j = 0; j < t->nx; j++) {
            nst__net n;
            int ew;
            nst__tiling_tile(t, i * t->nx + j, &r);
            ew = r.ex1 - r.ex0;
            if (ew == pw) continue;
            pw = ew;
            if ((st = nst__net_init(&n, m, eh, ew, last, keep, avg, nthreads, 0)) != NST_OK) return st;
            *ws = NST__MAX(*ws, n.ws_bytes);
            *bufs = NST__MAX(*bufs, n.buf_elems);
        }
    }
    return NST_OK;
}

/* The deepest layer the objective runs to, as nst_objective_create decides it. */
static int nst__objective_last(const int *content_l, int nc, const int *style_l, int ns) {
    return nst__deepest(style_l, ns, nst__deepest(content_l, nc, -1));
}

static int nst__tiling_needed(const nst_options *o, const nst_image *content, const nst_image *styles, int nstyles,
                              const int *content_l, int nc, const int *style_l, int ns) {
    int last = nst__objective_last(content_l, nc, style_l, ns), k;
    nst__tiling t;
    nst__tiling_plan(&t, content->height, content->width, o->tile, last);
    if (t.ny * t.nx > 1) return 1;
    for (k = 0; k < nstyles && ns > 0; k++) {
        nst__tiling_plan(&t, styles[k].height, styles[k].width, o->tile, last);
        if (t.ny * t.nx > 1) return 1;
    }
    return 0;
}

/* Points a network allocated for the largest extent of a tiling at a tile of h x w. */
static void nst__net_reshape(nst__net *n, int h, int w) {
    int l, ch = h, cw = w;
    n->h = h; n->w = w;
    for (l = 0; l <= n->last; l++) {
        if (nst__layer_type(l) == NST__L_POOL) { ch /= 2; cw /= 2; }
        n->h_[l] = ch; n->w_[l] = cw;
    }
}

/* Points a network allocated for the largest extent of a tiling at tile t: each level computes its
 * region only (nst__net.crop_y). */
static void nst__net_reshape_tile(nst__net *n, const nst__tile *t) {
    int l;
    n->h = t->ey1 - t->ey0; n->w = t->ex1 - t->ex0;
    for (l = 0; l <= n->last; l++) {
        int ty = nst__layer_type(l), py = l ? t->oy[l - 1] : t->ey0, px = l ? t->ox[l - 1] : t->ex0;
        n->h_[l] = t->rh[l]; n->w_[l] = t->rw[l];
        if (ty == NST__L_POOL) { py /= 2; px /= 2; }
        n->crop_y[l] = t->oy[l] - py;
        n->crop_x[l] = t->ox[l] - px;
    }
}

static nst__rect nst__tile_rect(const nst__tile *t, int l) {
    int k = nst__layer_level(l);
    nst__rect r;
    r.gy0 = t->iy0 >> k; r.gx0 = t->ix0 >> k;
    r.y0 = r.gy0 - t->oy[l]; r.y1 = (t->iy1 >> k) - t->oy[l];
    r.x0 = r.gx0 - t->ox[l]; r.x1 = (t->ix1 >> k) - t->ox[l];
    return r;
}

/* Crops tile k of a planar h x w image and runs the network on it. */
static nst_status nst__tile_load(nst_objective *o, const float *px, const nst__tiling *tl, int k) {
    struct nst__tiled *T = o->tiled;
    nst__tile t;
    int c, y, th, tw;
    nst__tiling_tile(tl, k, &t);
    th = t.ey1 - t.ey0; tw = t.ex1 - t.ex0;
    for (c = 0; c < 3; c++)
        for (y = 0; y < th; y++)
            memcpy(T->px + ((size_t)c * th + y) * tw, px + ((size_t)c * tl->h + t.ey0 + y) * tl->w + t.ex0,
                   sizeof(float) * (size_t)tw);
    nst__net_reshape_tile(&o->net, &t);
    T->cur = t;
    T->loaded = -1;
    return nst__net_forward(&o->net, T->px);
}

/* Copies the loaded tile's interior at layer l, [c][rows * cols], into d; with a guide (one whole-image
 * mask at the layer's resolution) each pixel is weighted by it. */
static void nst__tile_interior(const nst_objective *o, int l, const float *feat, const float *mask, float *d) {
    const struct nst__tiled *T = o->tiled;
    const nst__net *n = &o->net;
    nst__rect r = nst__tile_rect(&T->cur, l);
    int c = n->c_[l], fh = n->h_[l], fw = n->w_[l], ch, y, x;
    size_t rw = (size_t)(r.x1 - r.x0);
    for (ch = 0; ch < c; ch++)
        for (y = r.y0; y < r.y1; y++, d += rw) {
            const float *f = feat + ((size_t)ch * fh + y) * fw + r.x0;
            if (!mask) { memcpy(d, f, rw * sizeof(float)); continue; }
            {
                const float *mk = mask + (size_t)(r.gy0 + y - r.y0) * T->lw[l] + r.gx0;
                for (x = 0; x < (int)rw; x++) d[x] = f[x] * mk[x];
            }
        }
}

/* gram += scale * F F^T over the loaded tile's interior at layer l (F weighted by mask when not NULL). */
static nst_status nst__tile_gram_add(nst_objective *o, int l, float scale, float *gram, const float *mask) {
    struct nst__tiled *T = o->tiled;
    nst__net *n = &o->net;
    nst__rect r = nst__tile_rect(&T->cur, l);
    int c = n->c_[l];
    size_t rw = (size_t)(r.x1 - r.x0), hw = rw * (size_t)(r.y1 - r.y0), i;
    nst_status st;
    if (hw == 0) return NST_OK;
    /* buf[0] is idle after forward: the deepest layer is a loss layer, kept */
    nst__tile_interior(o, l, n->feat[l], mask, n->buf[0]);
    if ((st = nst__ssyrk_ex(n->nthreads, c, (int)hw, scale, n->buf[0], (int)hw, T->gtmp, c)) != NST_OK) return st;
    for (i = 0; i < (size_t)c * c; i++) gram[i] += T->gtmp[i];
    return NST_OK;
}

static void nst__tiled_free(struct nst__tiled *t) {
    int k;
    if (!t) return;
    for (k = 0; k < NST_VGG_CONVS; k++) { nst__aligned_free(t->kept_u[k][0]); nst__aligned_free(t->kept_u[k][1]); }
    nst__aligned_free(t->px);
    nst__aligned_free(t->grad);
    nst__aligned_free(t->gtmp);
    for (k = 0; k < NST__MAX_LOSS_LAYERS; k++) nst__aligned_free(t->diff[k]);
    nst__free(t);
}

/* Guided Grams' gradient on the loaded tile's interior at style layer k (nst__masked_style_grad's terms):
 * per style j, m . sc (G_j - A_j) (F.m) with F.m the interior's masked features, compact in fm, and the
 * product formed in column blocks of o->mtmp. */
static void nst__tiled_masked_grad(nst_objective *o, int k, const float *feat, float *g, float *fm) {
    const struct nst__tiled *T = o->tiled;
    const nst__style_layer *s = &o->style[k];
    const nst__net *n = &o->net;
    int l = s->layer, c = s->c, fw = n->w_[l], j;
    nst__rect r = nst__tile_rect(&T->cur, l);
    size_t rw = (size_t)(r.x1 - r.x0), hw = rw * (size_t)(r.y1 - r.y0), lhw = (size_t)T->lh[l] * T->lw[l];
    size_t fhw = (size_t)n->h_[l] * fw, cc = (size_t)c * c, b0;
    for (j = 0; j < o->nmask; j++) {
        const float *mk = o->mask[k] + (size_t)j * lhw;
        double coef = o->sw * s->weight * o->mfrac[k][j];
        float sc;
        if (!(o->mz[k][j] > 0) || coef == 0) continue;
        sc = (float)(coef * 4.0 / ((double)cc * c * o->mz[k][j]));
        nst__tile_interior(o, l, feat, mk, fm);
        for (b0 = 0; b0 < hw; b0 += NST__MASK_BLOCK) {
            int nb = (int)NST__MIN((size_t)NST__MASK_BLOCK, hw - b0), ch, q;
            nst__sgemm_ex(o->nthreads, 0, 0, c, nb, c, sc, T->diff[k] + (size_t)j * cc, c, fm + b0, (int)hw, 0.0f,
                          o->mtmp, nb);
            for (q = 0; q < nb; q++) {
                size_t p = b0 + (size_t)q, y = p / rw, x = p % rw;
                float mv = mk[(r.gy0 + y) * T->lw[l] + r.gx0 + x];
                float *gg = g + (r.y0 + y) * fw + r.x0 + x;
                for (ch = 0; ch < c; ch++) gg[(size_t)ch * fhw] += o->mtmp[(size_t)ch * nb + q] * mv;
            }
        }
    }
}

/* The loss gradient on the loaded tile's interior (zero on its halo). */
static nst_status nst__tiled_lossgrad(void *ctx, int layer, const float *feat, float *g, float *scratch) {
    nst_objective *o = (nst_objective *)ctx;
    struct nst__tiled *T = o->tiled;
    const nst__net *n = &o->net;
    nst__rect r = nst__tile_rect(&T->cur, layer);
    int c = n->c_[layer], fh = n->h_[layer], fw = n->w_[layer], k, ch, y, x;
    size_t el = (size_t)c * T->lh[layer] * T->lw[layer], fhw = (size_t)fh * fw;
    int interior = r.y1 > r.y0 && r.x1 > r.x0;
    for (k = 0; interior && k < o->ncontent; k++) {
        float sc = (float)(o->cw * 2.0 / (double)el);
        if (o->content_layer[k] != layer || o->cw == 0) continue;
        for (ch = 0; ch < c; ch++)
            for (y = r.y0; y < r.y1; y++) {
                const float *f = feat + (size_t)ch * fhw + (size_t)y * fw;
                const float *p = o->content_target[k] + ((size_t)ch * T->lh[layer] + r.gy0 + (y - r.y0)) * T->lw[layer] +
                                 r.gx0 - r.x0;
                float *gg = g + (size_t)ch * fhw + (size_t)y * fw;
                for (x = r.x0; x < r.x1; x++) gg[x] += sc * (f[x] - p[x]);
            }
    }
    for (k = 0; interior && k < o->nstyle; k++) {
        nst__style_layer *s = &o->style[k];
        double coef = o->sw * s->weight;
        size_t rows = (size_t)(r.y1 - r.y0) * fw;
        if (s->layer != layer || coef == 0) continue;
        if (o->nmask) {
            nst__tiled_masked_grad(o, k, feat, g, scratch);
            continue;
        }
        /* dL/dF = 4 w (G - A) F / (C^2 * C*H*W) over the interior's rows only, then its columns added */
        nst__sgemm_ex(n->nthreads, 0, 0, c, (int)rows, c, (float)(coef * 4.0 / ((double)c * c * el)), T->diff[k], c,
                      feat + (size_t)r.y0 * fw, (int)fhw, 0.0f, scratch + (size_t)r.y0 * fw, (int)fhw);
        for (ch = 0; ch < c; ch++)
            for (y = r.y0; y < r.y1; y++) {
                const float *sp = scratch + (size_t)ch * fhw + (size_t)y * fw;
                float *gg = g + (size_t)ch * fhw + (size_t)y * fw;
                for (x = r.x0; x < r.x1; x++) gg[x] += sp[x];
            }
    }
    /* the lossgrad contract: at a ReLU layer the ReLU's backward is applied here (no mask bits kept) */
    if (nst__layer_type(layer) == NST__L_RELU) nst__relu_backward_feat(g, feat, 0, (size_t)c * fhw, nst__simd_avx2());
    return NST_OK;
}

static nst_status nst__objective_eval_tiled(nst_objective *o, const float *pixels, nst_losses *lo, float *grad) {
    struct nst__tiled *T = o->tiled;
    nst__net *n = &o->net;
    int ntiles = T->t.ny * T->t.nx, i, k;
    double csum[NST__MAX_LOSS_LAYERS];
    nst_losses L;
    nst_status st;
    size_t j;
    memset(&L, 0, sizeof L);
    for (k = 0; k < o->ncontent; k++) csum[k] = 0;
    for (k = 0; k < o->nstyle; k++) {
        memset(o->style[k].gram, 0, sizeof(float) * (size_t)o->style[k].c * o->style[k].c);
        if (o->nmask) memset(o->mgram[k], 0, sizeof(float) * (size_t)o->style[k].c * o->style[k].c * o->nmask);
    }
    for (i = 0; i < ntiles; i++) {
        if ((st = nst__tile_load(o, pixels, &T->t, i)) != NST_OK) return st;
        T->loaded = i;
        for (k = 0; k < o->ncontent; k++) {
            int l = o->content_layer[k], c = n->c_[l], fh = n->h_[l], fw = n->w_[l], ch, y, x;
            nst__rect r = nst__tile_rect(&T->cur, l);
            double s = 0;
            for (ch = 0; ch < c; ch++)
                for (y = r.y0; y < r.y1; y++) {
                    const float *f = n->feat[l] + ((size_t)ch * fh + y) * fw;
                    const float *p = o->content_target[k] + ((size_t)ch * T->lh[l] + r.gy0 + (y - r.y0)) * T->lw[l] +
                                     r.gx0 - r.x0;
                    for (x = r.x0; x < r.x1; x++) { double d = (double)f[x] - p[x]; s += d * d; }
                }
            csum[k] += s;
        }
        for (k = 0; k < o->nstyle; k++) {
            nst__style_layer *s = &o->style[k];
            float scale = 1.0f / (float)((double)s->c * T->lh[s->layer] * T->lw[s->layer]);
            size_t lhw = (size_t)T->lh[s->layer] * T->lw[s->layer], cc = (size_t)s->c * s->c;
            int jm;
            for (jm = 0; jm < o->nmask; jm++)   /* guided Grams: each style's mask, as nst__masked_style_eval */
                if (o->mz[k][jm] > 0 &&
                    (st = nst__tile_gram_add(o, s->layer, 1.0f / (float)((double)s->c * o->mz[k][jm]),
                                             o->mgram[k] + (size_t)jm * cc, o->mask[k] + (size_t)jm * lhw)) != NST_OK)
                    return st;
            if (!o->nmask && (st = nst__tile_gram_add(o, s->layer, scale, s->gram, NULL)) != NST_OK) return st;
        }
    }
    for (k = 0; k < o->ncontent; k++) {
        int l = o->content_layer[k];
        L.content_raw += csum[k] / ((double)n->c_[l] * T->lh[l] * T->lw[l]);
    }
    for (k = 0; k < o->nstyle; k++) {
        nst__style_layer *s = &o->style[k];
        size_t cc = (size_t)s->c * s->c;
        double acc = 0;
        int jm;
        for (jm = 0; jm < o->nmask; jm++) {
            const float *gj = o->mgram[k] + (size_t)jm * cc, *aj = o->mtarget[k] + (size_t)jm * cc;
            float *dj = T->diff[k] + (size_t)jm * cc;
            acc = nst__sqdist(gj, aj, cc, o->nthreads);
            for (j = 0; j < cc; j++) dj[j] = gj[j] - aj[j];
            if (o->mz[k][jm] > 0) L.style_raw += s->weight * o->mfrac[k][jm] * acc / (double)cc;
        }
        if (o->nmask) {
            memcpy(s->gram, o->mgram[k], cc * sizeof(float));   /* nst_objective_gram: the first style's */
            continue;
        }
        acc = nst__sqdist(s->gram, s->target, cc, o->nthreads);
        for (j = 0; j < cc; j++) T->diff[k][j] = s->gram[j] - s->target[j];
        L.style_raw += s->weight * acc / (double)cc;
    }
    if (grad) {
        size_t hw = (size_t)o->h * o->w;
        memset(grad, 0, sizeof(float) * 3 * hw);
        for (i = ntiles - 1; i >= 0; i--) {
            nst__tile *t = &T->cur;
            int c, y, x, th, tw;
            if (T->loaded != i) {
                if ((st = nst__tile_load(o, pixels, &T->t, i)) != NST_OK) return st;
                T->loaded = i;
            }
            if ((st = nst__net_backward(n, nst__tiled_lossgrad, o, T->grad)) != NST_OK) return st;
            th = t->ey1 - t->ey0; tw = t->ex1 - t->ex0;
            for (c = 0; c < 3; c++)
                for (y = 0; y < th; y++) {
                    const float *s = T->grad + ((size_t)c * th + y) * tw;
                    float *d = grad + (size_t)c * hw + (size_t)(t->ey0 + y) * o->w + t->ex0;
                    for (x = 0; x < tw; x++) d[x] += s[x];
                }
        }
    }
    L.tv_raw = nst__tv(pixels, o->h, o->w, (float)o->tvw, o->m->is_random, grad, o->nthreads);
    L.content = o->cw * L.content_raw;
    L.style = o->sw * L.style_raw;
    L.tv = o->tvw * L.tv_raw;
    L.total = L.content + L.style + L.tv;
    if (o->tprev) {   /* per pixel of the image: no network, no tiles */
        L.temporal_raw = nst__temporal(o, pixels, grad);
        L.temporal = o->tw * L.temporal_raw;
        L.total += L.temporal;
    }
    o->last = L;
    o->evaluated = 1;
    if (lo) *lo = L;
    return NST_OK;
}

/* nst_objective_create for a tiled objective; the arguments are checked already. */
static nst_status nst__objective_create_tiled(const nst_model *m, const nst_image *content, const nst_image *styles,
                                              const float *blend, int nstyles, const nst_options *opt,
                                              nst_objective **out) {
    nst_objective *o;
    struct nst__tiled *T;
    int content_l[NST__MAX_LOSS_LAYERS], style_l[NST__MAX_LOSS_LAYERS], nc, ns, last, k, i, avg, maxh, maxw;
    int maxc = 0;
    unsigned char keep[NST_VGG_LAYERS];
    nst__tiling *st_t = NULL;
    size_t ws = 0, bufs = 0;
    float *px = NULL;
    double bsum = 0;
    nst_status st;
    if ((st = nst__objective_layout(m, opt, content_l, &nc, style_l, &ns, &last, keep)) != NST_OK) return st;
    if (nstyles == 0) ns = 0;
    if (opt->normalize_gradients)
        return nst__err(NST_ERR_UNSUPPORTED, "normalized gradients are not supported with tiling (use --tile 0)");
    for (k = 0; k < nstyles; k++) bsum += blend ? blend[k] : 1.0;
    o = (nst_objective *)nst__calloc(1, sizeof *o);
    T = (struct nst__tiled *)nst__calloc(1, sizeof *T);
    st_t = (nst__tiling *)nst__calloc((size_t)(nstyles ? nstyles : 1), sizeof *st_t);
    if (!o || !T || !st_t) {
        nst__free(o); nst__free(T); nst__free(st_t);
        return nst__err(NST_ERR_NOMEM, "objective: out of memory");
    }
    o->tiled = T;
    T->loaded = -1;
    o->m = m;
    o->h = content->height; o->w = content->width;
    o->nthreads = nst__resolve_threads(opt->threads);
    o->normalize = 0;
    o->cw = opt->content_weight; o->sw = opt->style_weight;
    o->tvw = opt->tv_weight < 0 ? nst_model_default_tv_weight(m) : opt->tv_weight;
    avg = (opt->pool == NST_POOL_DEFAULT ? m->pool : opt->pool) == NST_POOL_AVG;
    if (ns == 0) {
        memset(keep, 0, sizeof keep);
        for (k = 0; k < nc; k++) keep[content_l[k]] = 1;
    }
    last = nst__objective_last(content_l, nc, style_l, ns);
    if (opt->tile_keep_filters != 0) {
        nst__tiled_keep_filters(m, last, &T->mk, T->kept, T->kept_u, 1, o->nthreads, &st);
        if (st != NST_OK) goto fail;
        m = &T->mk;
    }
    nst__tiling_plan(&T->t, o->h, o->w, opt->tile, last);
    maxh = T->t.max_h; maxw = T->t.max_w;
    if ((st = nst__tiling_net_needs(&T->t, m, last, keep, avg, o->nthreads, &ws, &bufs)) != NST_OK) goto fail;
    for (i = 0; i < nstyles && ns > 0; i++) {
        nst__tiling_plan(&st_t[i], styles[i].height, styles[i].width, opt->tile, last);
        maxh = NST__MAX(maxh, st_t[i].max_h); maxw = NST__MAX(maxw, st_t[i].max_w);
        if ((st = nst__tiling_net_needs(&st_t[i], m, last, keep, avg, o->nthreads, &ws, &bufs)) != NST_OK) goto fail;
    }
    if ((st = nst__net_init_ws(&o->net, m, maxh, maxw, last, keep, avg, o->nthreads, 1, NULL, ws, bufs)) != NST_OK)
        goto fail;
    T->px = (float *)nst__aligned_alloc(sizeof(float) * 3 * (size_t)maxh * maxw);
    T->grad = (float *)nst__aligned_alloc(sizeof(float) * 3 * (size_t)maxh * maxw);
    if (!T->px || !T->grad) { st = nst__err(NST_ERR_NOMEM, "objective: out of memory"); goto fail; }
    for (k = 0; k <= last; k++) {
        T->lh[k] = o->h >> nst__layer_level(k);
        T->lw[k] = o->w >> nst__layer_level(k);
    }
    /* content targets, for the whole image, from the content image's tiles */
    px = (float *)nst__malloc(sizeof(float) * 3 * (size_t)o->w * o->h);
    if (!px) { st = nst__err(NST_ERR_NOMEM, "objective: out of memory"); goto fail; }
    nst__image_to_planar(content, px);
    for (k = 0; k < nc; k++) {
        int l = content_l[k];
        o->content_layer[k] = l;
        o->content_target[k] = (float *)nst__aligned_alloc(sizeof(float) * (size_t)o->net.c_[l] * T->lh[l] * T->lw[l]);
        o->ncontent = k + 1;
        if (!o->content_target[k]) { st = nst__err(NST_ERR_NOMEM, "objective: out of memory"); goto fail; }
    }
    for (i = 0; i < T->t.ny * T->t.nx && nc > 0; i++) {
        if ((st = nst__tile_load(o, px, &T->t, i)) != NST_OK) goto fail;
        for (k = 0; k < nc; k++) {
            int l = content_l[k], c = o->net.c_[l], fh = o->net.h_[l], fw = o->net.w_[l], ch, y;
            nst__rect r = nst__tile_rect(&T->cur, l);
            for (ch = 0; ch < c && r.x1 > r.x0; ch++)
                for (y = r.y0; y < r.y1; y++)
                    memcpy(o->content_target[k] + ((size_t)ch * T->lh[l] + r.gy0 + (y - r.y0)) * T->lw[l] + r.gx0,
                           o->net.feat[l] + ((size_t)ch * fh + y) * fw + r.x0, sizeof(float) * (size_t)(r.x1 - r.x0));
        }
    }
    nst__free(px);
    px = NULL;
    /* style targets: blended Grams, each style image tiled at its own size */
    for (k = 0; k < ns; k++) {
        int l = style_l[k], c = o->net.c_[l];
        nst__style_layer *s = &o->style[k];
        s->layer = l; s->c = c;
        s->weight = opt->style_layer_weights ? opt->style_layer_weights[k] : 1.0f;
        s->target = (float *)nst__aligned_alloc(sizeof(float) * (size_t)c * c);
        s->gram = (float *)nst__aligned_alloc(sizeof(float) * (size_t)c * c);
        T->diff[k] = (float *)nst__aligned_alloc(sizeof(float) * (size_t)c * c);
        o->nstyle = k + 1;
        if (!s->target || !s->gram || !T->diff[k]) { st = nst__err(NST_ERR_NOMEM, "objective: out of memory"); goto fail; }
        memset(s->target, 0, sizeof(float) * (size_t)c * c);
        maxc = NST__MAX(maxc, c);
    }
    if (ns > 0 && !(T->gtmp = (float *)nst__aligned_alloc(sizeof(float) * (size_t)maxc * maxc))) {
        st = nst__err(NST_ERR_NOMEM, "objective: out of memory");
        goto fail;
    }
    if (opt->style_masks && ns > 0 && nstyles > 0) {
        /* the masks at each layer's whole-image resolution: the network's shape is the image's meanwhile */
        if (nstyles > 8) { st = nst__err(NST_ERR_ARGUMENT, "objective: at most 8 masked styles"); goto fail; }
        nst__net_reshape(&o->net, o->h, o->w);
        st = nst__objective_masks(o, opt->style_masks, nstyles, blend, bsum);
        nst__net_reshape(&o->net, maxh, maxw);
        if (st != NST_OK) goto fail;
        for (k = 0; k < ns; k++) {
            size_t cc = (size_t)o->style[k].c * o->style[k].c;
            nst__aligned_free(T->diff[k]);
            if (!(T->diff[k] = (float *)nst__aligned_alloc(sizeof(float) * cc * (size_t)nstyles))) {
                st = nst__err(NST_ERR_NOMEM, "objective: out of memory");
                goto fail;
            }
        }
    }
    if (opt->temporal_weight > 0 && opt->temporal_image && (st = nst__objective_temporal(o, content, opt)) != NST_OK)
        goto fail;
    for (i = 0; i < nstyles && ns > 0; i++) {
        const nst_image *si = &styles[i];
        float wgt = (float)((blend ? blend[i] : 1.0) / bsum);
        int t;
        size_t j;
        px = (float *)nst__malloc(sizeof(float) * 3 * (size_t)si->width * si->height);
        if (!px) { st = nst__err(NST_ERR_NOMEM, "objective: out of memory"); goto fail; }
        nst__image_to_planar(si, px);
        for (k = 0; k < ns; k++) memset(o->style[k].gram, 0, sizeof(float) * (size_t)o->style[k].c * o->style[k].c);
        for (t = 0; t < st_t[i].ny * st_t[i].nx; t++) {
            if ((st = nst__tile_load(o, px, &st_t[i], t)) != NST_OK) goto fail;
            for (k = 0; k < ns; k++) {
                nst__style_layer *s = &o->style[k];
                int lv = nst__layer_level(s->layer);
                float scale = 1.0f / (float)((double)s->c * (si->height >> lv) * (si->width >> lv));
                if ((st = nst__tile_gram_add(o, s->layer, scale, s->gram, NULL)) != NST_OK) goto fail;
            }
        }
        for (k = 0; k < ns; k++) {
            size_t cc = (size_t)o->style[k].c * o->style[k].c;
            for (j = 0; j < cc; j++) o->style[k].target[j] += wgt * o->style[k].gram[j];
            if (o->nmask) memcpy(o->mtarget[k] + (size_t)i * cc, o->style[k].gram, cc * sizeof(float));
        }
        nst__free(px);
        px = NULL;
    }
    nst__free(st_t);
    *out = o;
    return NST_OK;
fail:
    nst__free(px);
    nst__free(st_t);
    nst_objective_free(o);
    return st;
}

/* ---- optimisers ------------------------------------------------------------------------------------*/
NSTDEF void nst_lbfgs_options_init(nst_lbfgs_options *o) {
    memset(o, 0, sizeof *o);
    o->max_iter = 100;
    o->history = 100;
    o->learning_rate = 1.0;
    o->tol_fun = 1e-5;
    o->tol_x = 1e-9;
}
NSTDEF void nst_adam_options_init(nst_adam_options *o) {
    memset(o, 0, sizeof *o);
    o->max_iter = 100;
    o->learning_rate = 1e-3;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
}

/* y += a * x, in fixed chunks (elementwise, so deterministic whatever the thread count). */
static void nst__axpy(float *y, double a, const float *x, size_t n, int nthreads) {
    long i;
    float af = (float)a;
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (i = 0; i < (long)n; i++) y[i] += af * x[i];
}

/* L-BFGS history vectors, f32 or bfloat16 (the top half of an f32: same range, 8-bit mantissa). In bf16
 * the history takes half the memory, which at 512 px with m = 100 is 315 MB saved. */
static uint16_t nst__to_bf16(float f) {
    uint32_t u = nst__bits_from_f32(f);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);   /* round to nearest even */
}
static float nst__from_bf16(uint16_t h) { return nst__f32_from_bits((uint32_t)h << 16); }

/* ---- the two-loop recursion, one pass per history vector per loop ----------------------------------
 * Each pass of the recursion updates d with the pair just used and takes the dot product with the
 * vector of the next pair in the same sweep, so every history vector is read once per loop and d,
 * which stays in the last-level cache, twice. Per element i of a pass:
 *     t = g ? -g[i] : d[i];   if (u) t += a * u[i];   if (scale) t = (float)(t * sc);   d[i] = t;
 *     dot += v[i] * t (in double);   asum += |t|
 * The same float operations as the plain loops (axpy, then scale), so the same d. Threads take fixed
 * chunks of 64-element-aligned ranges (NST__LB_CHUNKS per vector) and the partial sums are added in
 * chunk order: the result does not depend on the thread count. */
#define NST__LB_CHUNKS 64
typedef struct nst__lb_pass {
    const float *g;          /* d = -g first (NULL: start from d) */
    const void *u;           /* then d += a * u (history format), NULL: no update */
    float a;
    int scale;               /* then d = (float)(d * sc) */
    double sc;
    const void *v;           /* dot product with v (history format, or f32 with v_f32), NULL: none */
    int v_f32, want_asum, bf16;
} nst__lb_pass;

static float nst__lb_get(const void *h, int bf16, size_t i) {
    return bf16 ? nst__from_bf16(((const uint16_t *)h)[i]) : ((const float *)h)[i];
}
/* Scalar reference: elements [lo, hi). */
static void nst__lb_pass_scalar(const nst__lb_pass *p, float *d, size_t lo, size_t hi, double *dot, double *asum) {
    double s = 0, a = 0;
    size_t i;
    for (i = lo; i < hi; i++) {
        float t = p->g ? -p->g[i] : d[i];
        if (p->u) t += p->a * nst__lb_get(p->u, p->bf16, i);
        if (p->scale) t = (float)(t * p->sc);
        d[i] = t;
        if (p->v) s += (double)(p->v_f32 ? ((const float *)p->v)[i] : nst__lb_get(p->v, p->bf16, i)) * t;
        a += fabs((double)t);
    }
    *dot = s;
    *asum = a;
}

#if defined(NST__X86)
static NST__TARGET_AVX2 __m256 nst__lb_ld8_avx2(const void *h, int bf16, size_t i) {
    if (bf16)
        return _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)h + i))), 16));
    return _mm256_loadu_ps((const float *)h + i);
}
static NST__TARGET_AVX2 void nst__lb_pass_avx2(const nst__lb_pass *p, float *d, size_t lo, size_t hi, double *dot,
                                               double *asum) {
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd(), a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    const __m256 va = _mm256_set1_ps(p->a), sign = _mm256_set1_ps(-0.0f);
    const __m256d vsc = _mm256_set1_pd(p->sc), absm = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFll));
    double ts[4], ta[4], rd, ra;
    size_t i = lo;
    for (; i + 8 <= hi; i += 8) {
        __m256 t = p->g ? _mm256_xor_ps(_mm256_loadu_ps(p->g + i), sign) : _mm256_loadu_ps(d + i);
        __m256d lo4, hi4;
        if (p->u) t = _mm256_add_ps(t, _mm256_mul_ps(va, nst__lb_ld8_avx2(p->u, p->bf16, i)));
        lo4 = _mm256_cvtps_pd(_mm256_castps256_ps128(t));
        hi4 = _mm256_cvtps_pd(_mm256_extractf128_ps(t, 1));
        if (p->scale) {
            lo4 = _mm256_mul_pd(lo4, vsc);
            hi4 = _mm256_mul_pd(hi4, vsc);
            t = _mm256_set_m128(_mm256_cvtpd_ps(hi4), _mm256_cvtpd_ps(lo4));
            lo4 = _mm256_cvtps_pd(_mm256_castps256_ps128(t));
            hi4 = _mm256_cvtps_pd(_mm256_extractf128_ps(t, 1));
        }
        _mm256_storeu_ps(d + i, t);
        if (p->v) {
            __m256 v = p->v_f32 ? _mm256_loadu_ps((const float *)p->v + i) : nst__lb_ld8_avx2(p->v, p->bf16, i);
            s0 = _mm256_fmadd_pd(lo4, _mm256_cvtps_pd(_mm256_castps256_ps128(v)), s0);
            s1 = _mm256_fmadd_pd(hi4, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), s1);
        }
        if (p->want_asum) {
            a0 = _mm256_add_pd(a0, _mm256_and_pd(lo4, absm));
            a1 = _mm256_add_pd(a1, _mm256_and_pd(hi4, absm));
        }
    }
    _mm256_storeu_pd(ts, _mm256_add_pd(s0, s1));
    _mm256_storeu_pd(ta, _mm256_add_pd(a0, a1));
    nst__lb_pass_scalar(p, d, i, hi, &rd, &ra);
    *dot = ((ts[0] + ts[1]) + (ts[2] + ts[3])) + rd;
    *asum = ((ta[0] + ta[1]) + (ta[2] + ta[3])) + ra;
}
#endif

#if defined(NST__NEON)
static float32x4_t nst__lb_ld4_neon(const void *h, int bf16, size_t i) {
    if (bf16) return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16((const uint16_t *)h + i), 16));
    return vld1q_f32((const float *)h + i);
}
/* As the AVX2 pass: d in float with a separate multiply and add (no FMA, so the same d as the scalar
 * pass), the scale in double, dot products and |d| summed in double lanes. */
static void nst__lb_pass_neon(const nst__lb_pass *p, float *d, size_t lo, size_t hi, double *dot, double *asum) {
    float64x2_t s0 = vdupq_n_f64(0), s1 = vdupq_n_f64(0), a0 = vdupq_n_f64(0), a1 = vdupq_n_f64(0);
    const float32x4_t va = vdupq_n_f32(p->a);
    double rd, ra;
    size_t i = lo;
    for (; i + 4 <= hi; i += 4) {
        float32x4_t t = p->g ? vnegq_f32(vld1q_f32(p->g + i)) : vld1q_f32(d + i);
        float64x2_t lo2, hi2;
        if (p->u) t = vaddq_f32(t, vmulq_f32(va, nst__lb_ld4_neon(p->u, p->bf16, i)));
        lo2 = vcvt_f64_f32(vget_low_f32(t));
        hi2 = vcvt_high_f64_f32(t);
        if (p->scale) {
            t = vcvt_high_f32_f64(vcvt_f32_f64(vmulq_n_f64(lo2, p->sc)), vmulq_n_f64(hi2, p->sc));
            lo2 = vcvt_f64_f32(vget_low_f32(t));
            hi2 = vcvt_high_f64_f32(t);
        }
        vst1q_f32(d + i, t);
        if (p->v) {
            float32x4_t v = p->v_f32 ? vld1q_f32((const float *)p->v + i) : nst__lb_ld4_neon(p->v, p->bf16, i);
            s0 = vfmaq_f64(s0, lo2, vcvt_f64_f32(vget_low_f32(v)));
            s1 = vfmaq_f64(s1, hi2, vcvt_high_f64_f32(v));
        }
        if (p->want_asum) {
            a0 = vaddq_f64(a0, vabsq_f64(lo2));
            a1 = vaddq_f64(a1, vabsq_f64(hi2));
        }
    }
    nst__lb_pass_scalar(p, d, i, hi, &rd, &ra);
    s0 = vaddq_f64(s0, s1);
    a0 = vaddq_f64(a0, a1);
    *dot = (vgetq_lane_f64(s0, 0) + vgetq_lane_f64(s0, 1)) + rd;
    *asum = (vgetq_lane_f64(a0, 0) + vgetq_lane_f64(a0, 1)) + ra;
}
#endif

static size_t nst__lb_chunk(size_t n, long k) { return k >= NST__LB_CHUNKS ? n : (n * (size_t)k / NST__LB_CHUNKS) & ~(size_t)63; }

/* Runs a pass over all of d; returns the dot product (and the L1 norm of the new d in *asum). */
static double nst__lb_run(const nst__lb_pass *p, float *d, size_t n, int nthreads, double *asum) {
    double pd[NST__LB_CHUNKS], pa[NST__LB_CHUNKS], s = 0, a = 0;
    int simd = 0;
    long k;
#if defined(NST__X86)
    simd = nst__cpu_arch() == NST_ARCH_AVX2 || nst__cpu_arch() == NST_ARCH_AVX512;
#elif defined(NST__NEON)
    simd = nst__cpu_arch() == NST_ARCH_NEON;
#endif
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (k = 0; k < NST__LB_CHUNKS; k++) {
        size_t lo = nst__lb_chunk(n, k), hi = nst__lb_chunk(n, k + 1);
#if defined(NST__X86)
        if (simd) { nst__lb_pass_avx2(p, d, lo, hi, &pd[k], &pa[k]); continue; }
#elif defined(NST__NEON)
        if (simd) { nst__lb_pass_neon(p, d, lo, hi, &pd[k], &pa[k]); continue; }
#endif
        nst__lb_pass_scalar(p, d, lo, hi, &pd[k], &pa[k]);
    }
    (void)simd;
    for (k = 0; k < NST__LB_CHUNKS; k++) { s += pd[k]; a += pa[k]; }
    if (asum) *asum = a;
    return s;
}

/* The new pair: yn = g - g_old, sn = t * d, returning y's = yn . sn and y'y; deterministic as above. */
static void nst__lb_pair(float *yn, float *sn, const float *g, const float *g_old, const float *d, double t, size_t n,
                         int nthreads, double *ys, double *yy) {
    double p1[NST__LB_CHUNKS], p2[NST__LB_CHUNKS], a = 0, b = 0;
    long k;
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (k = 0; k < NST__LB_CHUNKS; k++) {
        size_t i, lo = nst__lb_chunk(n, k), hi = nst__lb_chunk(n, k + 1);
        double s1 = 0, s2 = 0;
        for (i = lo; i < hi; i++) {
            yn[i] = g[i] - g_old[i];
            sn[i] = (float)(t * d[i]);
            s1 += (double)yn[i] * sn[i];
            s2 += (double)yn[i] * yn[i];
        }
        p1[k] = s1; p2[k] = s2;
    }
    for (k = 0; k < NST__LB_CHUNKS; k++) { a += p1[k]; b += p2[k]; }
    *ys = a; *yy = b;
}

/* L1 norm, deterministic and threaded. */
static double nst__lb_asum(const float *x, size_t n, int nthreads) {
    double part[NST__LB_CHUNKS], s = 0;
    long k;
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (k = 0; k < NST__LB_CHUNKS; k++) {
        size_t i, lo = nst__lb_chunk(n, k), hi = nst__lb_chunk(n, k + 1);
        double a = 0;
        for (i = lo; i < hi; i++) a += fabs((double)x[i]);
        part[k] = a;
    }
    for (k = 0; k < NST__LB_CHUNKS; k++) s += part[k];
    return s;
}

/* Stores src in the history; in bf16, src is rounded in place to the stored values (the vector-free
 * recursion measures the new pair's inner products on these f32 copies). */
static void nst__hist_store(void *h, int bf16, float *src, size_t n, int nthreads) {
    long k;
    if (!bf16) { memcpy(h, src, n * sizeof(float)); return; }
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (k = 0; k < NST__LB_CHUNKS; k++) {
        size_t i, lo = nst__lb_chunk(n, k), hi = nst__lb_chunk(n, k + 1);
        for (i = lo; i < hi; i++) {
            uint16_t b = nst__to_bf16(src[i]);
            ((uint16_t *)h)[i] = b;
            src[i] = nst__from_bf16(b);
        }
    }
}

/* ---- the vector-free recursion (Chen, Wang, Zhou, Yu, "Large-scale L-BFGS using MapReduce", NIPS 2014) --
 * The direction is a combination of the basis {s_i, y_i, g}, so the two-loop recursion can run on the
 * coefficients alone given the basis's inner products B (a (2m+1)^2 matrix kept across iterations). Each
 * iteration then reads the history twice whatever m is: one pass measures the new inner products (g with
 * every stored vector, and the pair just stored with every stored vector), one pass forms
 * d = c_g g + sum c_j v_j. The pass-per-vector recursion above reads the history as often but streams d
 * through the cache 4m times and opens 2m parallel regions; it stays as the reference (nst__lbfgs with
 * two_loop = 1). The new pair's products are measured, not derived from the old ones (y.v = g.v - g_old.v
 * cancels when g changes little, and s.v = t sum_j c_j B_jv is the product of the unrounded s): measured,
 * B is the inner products of the vectors actually stored, as in the two-loop passes. With a bf16 history
 * that matters: deriving both moved the final f of test_iter's lbfgs_vf_matches_two_loop (n = 10007,
 * 7 pairs) 3.7% away from the reference, measuring 0.03%. The cost is a measuring pass that makes three
 * products per history element instead of one.
 * Both passes walk sub-chunks of NST__LB_SUB elements inside the fixed thread chunks: the f32 vectors of a
 * sub-chunk stay in L1/L2 while the history streams by once. */
#ifndef NST__LB_SUB
#define NST__LB_SUB 2048
#endif
typedef struct nst__lb_vf {
    const void *const *v;    /* nv history vectors (history format) */
    int nv, bf16;
    const float *w[3];       /* dots: v_j . w_r for r < nw (w_0 = g, then the new pair's f32 copies) */
    int nw;
    const float *c;          /* combine: d = cg * g + c_0 v_0 + c_1 v_1 + ..., in this order */
    float cg;
    const float *g;
} nst__lb_vf;

/* Scalar references. Dots: out[3 j + r] = v_j . w_r over [lo, hi) (in double). */
static void nst__lb_dots_scalar(const nst__lb_vf *p, size_t lo, size_t hi, double *out) {
    int j, r;
    size_t i;
    for (j = 0; j < p->nv; j++)
        for (r = 0; r < p->nw; r++) {
            double s = 0;
            for (i = lo; i < hi; i++) s += (double)nst__lb_get(p->v[j], p->bf16, i) * p->w[r][i];
            out[3 * j + r] = s;
        }
}
/* Combine: d over [lo, hi), a float product then a float add per vector, in basis order (the SIMD
 * kernels do the same operations, so d is the same to the bit); returns g . d and |d|_1 in double. */
static void nst__lb_comb_scalar(const nst__lb_vf *p, float *d, size_t lo, size_t hi, double *gd, double *asum) {
    double s = 0, a = 0;
    size_t i;
    int j;
    for (i = lo; i < hi; i++) {
        float t = p->cg * p->g[i];
        for (j = 0; j < p->nv; j++) {
            float u = p->c[j] * nst__lb_get(p->v[j], p->bf16, i);
            t += u;
        }
        d[i] = t;
        s += (double)p->g[i] * t;
        a += fabs((double)t);
    }
    *gd = s;
    *asum = a;
}

#if defined(NST__X86)
static NST__TARGET_AVX2 double nst__lb_hsum_avx2(__m256 a, __m256 b) {
    __m256d s = _mm256_add_pd(_mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(a)),
                                            _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1))),
                              _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(b)),
                                            _mm256_cvtps_pd(_mm256_extractf128_ps(b, 1))));
    double t[4];
    _mm256_storeu_pd(t, s);
    return (t[0] + t[1]) + (t[2] + t[3]);
}
/* Products summed in float lanes within a sub-chunk (at most NST__LB_SUB / 8 terms a lane), then in
 * double. Measured at 512 px, m = 100, 1 thread (CPU time, Zen 3): the three-product pass in float takes
 * 28-30 ms against 19-25 ms for a plain read of the history; double lanes would double its FMAs and add
 * the conversions. With an f32 history the runs agree with the pass-per-vector recursion (double dot
 * products) to 1e-7 in f after 25 iterations (bench_nst --lbfgs --size 64/128 --history 20 --f32). */
static NST__TARGET_AVX2 void nst__lb_dots_avx2(const nst__lb_vf *p, size_t lo, size_t hi, double *out) {
    const int bf = p->bf16;
    size_t a, b, i;
    int j, r;
    for (j = 0; j < 3 * p->nv; j++) out[j] = 0;
    for (a = lo; a < hi; a = b) {
        b = NST__MIN(a + NST__LB_SUB, hi);
        j = 0;
        if (p->nw == 1) {   /* four vectors at a time, two accumulators each */
            const float *w = p->w[0];
            for (; j + 4 <= p->nv; j += 4) {
                const void *v0 = p->v[j], *v1 = p->v[j + 1], *v2 = p->v[j + 2], *v3 = p->v[j + 3];
                __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
                double tail[4] = {0, 0, 0, 0};
                for (i = a; i + 16 <= b; i += 16) {
                    __m256 w0 = _mm256_loadu_ps(w + i), w1 = _mm256_loadu_ps(w + i + 8);
                    s0 = _mm256_fmadd_ps(nst__lb_ld8_avx2(v0, bf, i), w0, s0);
                    s1 = _mm256_fmadd_ps(nst__lb_ld8_avx2(v0, bf, i + 8), w1, s1);
                    s2 = _mm256_fmadd_ps(nst__lb_ld8_avx2(v1, bf, i), w0, s2);
                    s3 = _mm256_fmadd_ps(nst__lb_ld8_avx2(v1, bf, i + 8), w1, s3);
                    s4 = _mm256_fmadd_ps(nst__lb_ld8_avx2(v2, bf, i), w0, s4);
                    s5 = _mm256_fmadd_ps(nst__lb_ld8_avx2(v2, bf, i + 8), w1, s5);
                    s6 = _mm256_fmadd_ps(nst__lb_ld8_avx2(v3, bf, i), w0, s6);
                    s7 = _mm256_fmadd_ps(nst__lb_ld8_avx2(v3, bf, i + 8), w1, s7);
                }
                for (; i < b; i++) {
                    tail[0] += (double)nst__lb_get(v0, bf, i) * w[i];
                    tail[1] += (double)nst__lb_get(v1, bf, i) * w[i];
                    tail[2] += (double)nst__lb_get(v2, bf, i) * w[i];
                    tail[3] += (double)nst__lb_get(v3, bf, i) * w[i];
                }
                out[3 * j] += nst__lb_hsum_avx2(s0, s1) + tail[0];
                out[3 * j + 3] += nst__lb_hsum_avx2(s2, s3) + tail[1];
                out[3 * j + 6] += nst__lb_hsum_avx2(s4, s5) + tail[2];
                out[3 * j + 9] += nst__lb_hsum_avx2(s6, s7) + tail[3];
            }
        }
        for (; j < p->nv; j++) {   /* one vector with each w, two accumulators each */
            const void *v = p->v[j];
            const float *w0 = p->w[0], *w1 = p->w[p->nw > 1], *w2 = p->w[p->nw > 2 ? 2 : 0];
            __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0;
            double tail[3] = {0, 0, 0};
            for (i = a; i + 16 <= b; i += 16) {
                __m256 x0 = nst__lb_ld8_avx2(v, bf, i), x1 = nst__lb_ld8_avx2(v, bf, i + 8);
                s0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(w0 + i), s0);
                s1 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(w0 + i + 8), s1);
                if (p->nw > 1) {
                    s2 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(w1 + i), s2);
                    s3 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(w1 + i + 8), s3);
                    s4 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(w2 + i), s4);
                    s5 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(w2 + i + 8), s5);
                }
            }
            for (; i < b; i++) {
                double x = nst__lb_get(v, bf, i);
                for (r = 0; r < p->nw; r++) tail[r] += x * p->w[r][i];
            }
            out[3 * j] += nst__lb_hsum_avx2(s0, s1) + tail[0];
            if (p->nw > 1) {
                out[3 * j + 1] += nst__lb_hsum_avx2(s2, s3) + tail[1];
                out[3 * j + 2] += nst__lb_hsum_avx2(s4, s5) + tail[2];
            }
        }
    }
}
/* The combining kernels' sums once d[a, b) is formed: g'd and |d| over [a, e) in double lanes
 * (acc: g'd low/high, |d| low/high), [e, b) by the scalar kernel into r; then the reduction. */
static NST__TARGET_AVX2 void nst__lb_comb_sums_avx2(const nst__lb_vf *p, float *d, size_t a, size_t e, size_t b,
                                                    __m256d *acc, double *r) {
    const __m256d absm = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFll));
    size_t i;
    for (i = a; i < e; i += 8) {
        __m256 t = _mm256_loadu_ps(d + i), g = _mm256_loadu_ps(p->g + i);
        __m256d lo4 = _mm256_cvtps_pd(_mm256_castps256_ps128(t)), hi4 = _mm256_cvtps_pd(_mm256_extractf128_ps(t, 1));
        acc[0] = _mm256_fmadd_pd(lo4, _mm256_cvtps_pd(_mm256_castps256_ps128(g)), acc[0]);
        acc[1] = _mm256_fmadd_pd(hi4, _mm256_cvtps_pd(_mm256_extractf128_ps(g, 1)), acc[1]);
        acc[2] = _mm256_add_pd(acc[2], _mm256_and_pd(lo4, absm));
        acc[3] = _mm256_add_pd(acc[3], _mm256_and_pd(hi4, absm));
    }
    if (e < b) {
        double x, y;
        nst__lb_comb_scalar(p, d, e, b, &x, &y);
        r[0] += x;
        r[1] += y;
    }
}
static NST__TARGET_AVX2 void nst__lb_comb_reduce_avx2(const __m256d *acc, const double *r, double *gd, double *asum) {
    double ts[4], ta[4];
    _mm256_storeu_pd(ts, _mm256_add_pd(acc[0], acc[1]));
    _mm256_storeu_pd(ta, _mm256_add_pd(acc[2], acc[3]));
    *gd = ((ts[0] + ts[1]) + (ts[2] + ts[3])) + r[0];
    *asum = ((ta[0] + ta[1]) + (ta[2] + ta[3])) + r[1];
}
static NST__TARGET_AVX2 void nst__lb_comb_avx2(const nst__lb_vf *p, float *d, size_t lo, size_t hi, double *gd,
                                               double *asum) {
    const int bf = p->bf16;
    __m256d acc[4];
    double r[2] = {0, 0};
    size_t a, b, i;
    int j;
    acc[0] = acc[1] = acc[2] = acc[3] = _mm256_setzero_pd();
    for (a = lo; a < hi; a = b) {
        size_t e;
        b = NST__MIN(a + NST__LB_SUB, hi);
        e = a + ((b - a) & ~(size_t)7);   /* [a, e) in vectors; [e, b) by the scalar kernel */
        {
            const __m256 cg = _mm256_set1_ps(p->cg);
            for (i = a; i < e; i += 8) _mm256_storeu_ps(d + i, _mm256_mul_ps(cg, _mm256_loadu_ps(p->g + i)));
        }
        for (j = 0; j + 4 <= p->nv; j += 4) {
            const void *v0 = p->v[j], *v1 = p->v[j + 1], *v2 = p->v[j + 2], *v3 = p->v[j + 3];
            const __m256 c0 = _mm256_set1_ps(p->c[j]), c1 = _mm256_set1_ps(p->c[j + 1]);
            const __m256 c2 = _mm256_set1_ps(p->c[j + 2]), c3 = _mm256_set1_ps(p->c[j + 3]);
            for (i = a; i < e; i += 8) {
                __m256 t = _mm256_loadu_ps(d + i);
                t = _mm256_add_ps(t, _mm256_mul_ps(c0, nst__lb_ld8_avx2(v0, bf, i)));
                t = _mm256_add_ps(t, _mm256_mul_ps(c1, nst__lb_ld8_avx2(v1, bf, i)));
                t = _mm256_add_ps(t, _mm256_mul_ps(c2, nst__lb_ld8_avx2(v2, bf, i)));
                t = _mm256_add_ps(t, _mm256_mul_ps(c3, nst__lb_ld8_avx2(v3, bf, i)));
                _mm256_storeu_ps(d + i, t);
            }
        }
        for (; j < p->nv; j++) {
            const void *v0 = p->v[j];
            const __m256 c0 = _mm256_set1_ps(p->c[j]);
            for (i = a; i < e; i += 8)
                _mm256_storeu_ps(d + i, _mm256_add_ps(_mm256_loadu_ps(d + i), _mm256_mul_ps(c0, nst__lb_ld8_avx2(v0, bf, i))));
        }
        nst__lb_comb_sums_avx2(p, d, a, e, b, acc, r);
    }
    nst__lb_comb_reduce_avx2(acc, r, gd, asum);
}
#endif

#if defined(NST__X86)
/* bf16 histories: the 32-bit lane i of 16 loaded words holds word 2i+1 in its top half (an f32 once the
 * bottom half is masked off) and word 2i in its bottom half (an f32 once shifted up), so 16 values
 * take two instructions instead of four (zero-extend and shift, twice). The f32 operands of a sub-chunk
 * are dealt to match once (per 16: the 8 even elements, then the 8 odd ones), and d is formed dealt and
 * put back in order; the arithmetic per element is unchanged, so d is still the scalar kernel's. */
static NST__TARGET_AVX2 void nst__lb_deal(float *dst, const float *src, size_t len) {   /* len: a multiple of 16 */
    size_t b;
    for (b = 0; b < len; b += 16) {   /* per 128-bit lane (0 2 8 10 | 4 6 12 14), then the middle qwords swapped */
        __m256 lo = _mm256_loadu_ps(src + b), hi = _mm256_loadu_ps(src + b + 8);
        _mm256_storeu_ps(dst + b, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8)));
        _mm256_storeu_ps(dst + b + 8, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8)));
    }
}
/* The inverse: dst in order from 16-element groups dealt as above. */
static NST__TARGET_AVX2 void nst__lb_undeal(float *dst, const float *src, size_t len) {
    size_t b;
    for (b = 0; b < len; b += 16) {
        __m256 e = _mm256_loadu_ps(src + b), o = _mm256_loadu_ps(src + b + 8);
        __m256 lo = _mm256_unpacklo_ps(e, o), hi = _mm256_unpackhi_ps(e, o);   /* e0 o0 e1 o1 | e4 o4 e5 o5 ... */
        _mm256_storeu_ps(dst + b, _mm256_permute2f128_ps(lo, hi, 0x20));
        _mm256_storeu_ps(dst + b + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
    }
}
static NST__TARGET_AVX2 void nst__lb_dots_bf16_avx2(const nst__lb_vf *p, size_t lo, size_t hi, double *out) {
    float wp[3][NST__LB_SUB];
    const __m256i hm = _mm256_set1_epi32((int)0xFFFF0000u);
    size_t a, b, e, i;
    int j, r;
    for (j = 0; j < 3 * p->nv; j++) out[j] = 0;
    for (a = lo; a < hi; a = b) {
        b = NST__MIN(a + NST__LB_SUB, hi);
        e = a + ((b - a) & ~(size_t)15);
        for (r = 0; r < p->nw; r++) nst__lb_deal(wp[r], p->w[r] + a, e - a);
        j = 0;
        if (p->nw == 1)
            for (; j + 4 <= p->nv; j += 4) {
                const uint16_t *v0 = (const uint16_t *)p->v[j], *v1 = (const uint16_t *)p->v[j + 1];
                const uint16_t *v2 = (const uint16_t *)p->v[j + 2], *v3 = (const uint16_t *)p->v[j + 3];
                __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
                double tail[4] = {0, 0, 0, 0};
                for (i = a; i < e; i += 16) {
                    const float *wq = wp[0] + (i - a);
                    __m256 we = _mm256_loadu_ps(wq), wo = _mm256_loadu_ps(wq + 8);
                    __m256i x0 = _mm256_loadu_si256((const __m256i *)(v0 + i));
                    __m256i x1 = _mm256_loadu_si256((const __m256i *)(v1 + i));
                    __m256i x2 = _mm256_loadu_si256((const __m256i *)(v2 + i));
                    __m256i x3 = _mm256_loadu_si256((const __m256i *)(v3 + i));
                    s0 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(x0, 16)), we, s0);
                    s1 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(x0, hm)), wo, s1);
                    s2 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(x1, 16)), we, s2);
                    s3 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(x1, hm)), wo, s3);
                    s4 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(x2, 16)), we, s4);
                    s5 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(x2, hm)), wo, s5);
                    s6 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(x3, 16)), we, s6);
                    s7 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(x3, hm)), wo, s7);
                }
                for (i = e; i < b; i++) {
                    double w = p->w[0][i];
                    tail[0] += (double)nst__from_bf16(v0[i]) * w;
                    tail[1] += (double)nst__from_bf16(v1[i]) * w;
                    tail[2] += (double)nst__from_bf16(v2[i]) * w;
                    tail[3] += (double)nst__from_bf16(v3[i]) * w;
                }
                out[3 * j] += nst__lb_hsum_avx2(s0, s1) + tail[0];
                out[3 * j + 3] += nst__lb_hsum_avx2(s2, s3) + tail[1];
                out[3 * j + 6] += nst__lb_hsum_avx2(s4, s5) + tail[2];
                out[3 * j + 9] += nst__lb_hsum_avx2(s6, s7) + tail[3];
            }
        if (p->nw == 3)   /* four vectors at a time: each w load serves four FMAs */
            for (; j + 4 <= p->nv; j += 4) {
                /* 12 accumulators (vector x w), each taking the even and the odd half; the w operands come
                 * straight from L1 and the odd halves are cut with two shifts (no mask register), so the
                 * loop needs 15 registers and nothing spills. Two vectors at a time needed 18 loads per
                 * 32 products (one accumulator spilled to the stack): this pass took 1.45-1.6x the time of
                 * the combining pass over the same history, now 1.2-1.3x (1 thread, CPU time, Zen 3,
                 * 512 px, m = 100, bf16; software prefetch of the next vectors did not help). */
                const uint16_t *v0 = (const uint16_t *)p->v[j], *v1 = (const uint16_t *)p->v[j + 1];
                const uint16_t *v2 = (const uint16_t *)p->v[j + 2], *v3 = (const uint16_t *)p->v[j + 3];
                __m256 s00 = _mm256_setzero_ps(), s01 = s00, s02 = s00, s10 = s00, s11 = s00, s12 = s00;
                __m256 s20 = s00, s21 = s00, s22 = s00, s30 = s00, s31 = s00, s32 = s00;
                double tail[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
                int k;
#define NST__LB_DOT3(V, A0, A1, A2)                                                                     \
    do {                                                                                                \
        __m256i x_ = _mm256_loadu_si256((const __m256i *)((V) + i));                                    \
        __m256 e_ = _mm256_castsi256_ps(_mm256_slli_epi32(x_, 16));                                     \
        __m256 o_ = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_srli_epi32(x_, 16), 16));             \
        A0 = _mm256_fmadd_ps(e_, _mm256_loadu_ps(wp[0] + q), A0);                                       \
        A1 = _mm256_fmadd_ps(e_, _mm256_loadu_ps(wp[1] + q), A1);                                       \
        A2 = _mm256_fmadd_ps(e_, _mm256_loadu_ps(wp[2] + q), A2);                                       \
        A0 = _mm256_fmadd_ps(o_, _mm256_loadu_ps(wp[0] + q + 8), A0);                                   \
        A1 = _mm256_fmadd_ps(o_, _mm256_loadu_ps(wp[1] + q + 8), A1);                                   \
        A2 = _mm256_fmadd_ps(o_, _mm256_loadu_ps(wp[2] + q + 8), A2);                                   \
    } while (0)
                for (i = a; i < e; i += 16) {
                    size_t q = i - a;
                    NST__LB_DOT3(v0, s00, s01, s02);
                    NST__LB_DOT3(v1, s10, s11, s12);
                    NST__LB_DOT3(v2, s20, s21, s22);
                    NST__LB_DOT3(v3, s30, s31, s32);
                }
#undef NST__LB_DOT3
                for (i = e; i < b; i++) {
                    double x0 = nst__from_bf16(v0[i]), x1 = nst__from_bf16(v1[i]);
                    double x2 = nst__from_bf16(v2[i]), x3 = nst__from_bf16(v3[i]);
                    for (r = 0; r < 3; r++) {
                        double w = p->w[r][i];
                        tail[r] += x0 * w; tail[3 + r] += x1 * w; tail[6 + r] += x2 * w; tail[9 + r] += x3 * w;
                    }
                }
                {
                    const __m256 z = _mm256_setzero_ps();
                    const __m256 acc[12] = {s00, s01, s02, s10, s11, s12, s20, s21, s22, s30, s31, s32};
                    for (k = 0; k < 12; k++) out[3 * j + k] += nst__lb_hsum_avx2(acc[k], z) + tail[k];
                }
            }
        for (; j < p->nv; j++) {
            const uint16_t *v = (const uint16_t *)p->v[j];
            const float *w0 = wp[0], *w1 = wp[p->nw > 1], *w2 = wp[p->nw > 2 ? 2 : 0];
            __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0;
            double tail[3] = {0, 0, 0};
            for (i = a; i < e; i += 16) {
                __m256i x = _mm256_loadu_si256((const __m256i *)(v + i));
                __m256 xe = _mm256_castsi256_ps(_mm256_slli_epi32(x, 16)), xo = _mm256_castsi256_ps(_mm256_and_si256(x, hm));
                size_t q = i - a;
                s0 = _mm256_fmadd_ps(xe, _mm256_loadu_ps(w0 + q), s0);
                s1 = _mm256_fmadd_ps(xo, _mm256_loadu_ps(w0 + q + 8), s1);
                if (p->nw > 1) {
                    s2 = _mm256_fmadd_ps(xe, _mm256_loadu_ps(w1 + q), s2);
                    s3 = _mm256_fmadd_ps(xo, _mm256_loadu_ps(w1 + q + 8), s3);
                    s4 = _mm256_fmadd_ps(xe, _mm256_loadu_ps(w2 + q), s4);
                    s5 = _mm256_fmadd_ps(xo, _mm256_loadu_ps(w2 + q + 8), s5);
                }
            }
            for (i = e; i < b; i++) {
                double x = nst__from_bf16(v[i]);
                for (r = 0; r < p->nw; r++) tail[r] += x * p->w[r][i];
            }
            out[3 * j] += nst__lb_hsum_avx2(s0, s1) + tail[0];
            if (p->nw > 1) {
                out[3 * j + 1] += nst__lb_hsum_avx2(s2, s3) + tail[1];
                out[3 * j + 2] += nst__lb_hsum_avx2(s4, s5) + tail[2];
            }
        }
    }
}
static NST__TARGET_AVX2 void nst__lb_comb_bf16_avx2(const nst__lb_vf *p, float *d, size_t lo, size_t hi, double *gd,
                                                    double *asum) {
    float dp[NST__LB_SUB];
    const __m256i hm = _mm256_set1_epi32((int)0xFFFF0000u);
    __m256d acc[4];
    double r[2] = {0, 0};
    size_t a, b, e, q;
    int j;
    acc[0] = acc[1] = acc[2] = acc[3] = _mm256_setzero_pd();
    for (a = lo; a < hi; a = b) {
        b = NST__MIN(a + NST__LB_SUB, hi);
        e = a + ((b - a) & ~(size_t)15);
        nst__lb_deal(dp, p->g + a, e - a);
        {
            const __m256 cg = _mm256_set1_ps(p->cg);
            for (q = 0; q < e - a; q += 8) _mm256_storeu_ps(dp + q, _mm256_mul_ps(cg, _mm256_loadu_ps(dp + q)));
        }
        for (j = 0; j + 4 <= p->nv; j += 4) {
            const uint16_t *v0 = (const uint16_t *)p->v[j] + a, *v1 = (const uint16_t *)p->v[j + 1] + a;
            const uint16_t *v2 = (const uint16_t *)p->v[j + 2] + a, *v3 = (const uint16_t *)p->v[j + 3] + a;
            const __m256 c0 = _mm256_set1_ps(p->c[j]), c1 = _mm256_set1_ps(p->c[j + 1]);
            const __m256 c2 = _mm256_set1_ps(p->c[j + 2]), c3 = _mm256_set1_ps(p->c[j + 3]);
            for (q = 0; q < e - a; q += 16) {
                __m256 te = _mm256_loadu_ps(dp + q), to = _mm256_loadu_ps(dp + q + 8);
                __m256i x0 = _mm256_loadu_si256((const __m256i *)(v0 + q));
                __m256i x1 = _mm256_loadu_si256((const __m256i *)(v1 + q));
                __m256i x2 = _mm256_loadu_si256((const __m256i *)(v2 + q));
                __m256i x3 = _mm256_loadu_si256((const __m256i *)(v3 + q));
                te = _mm256_add_ps(te, _mm256_mul_ps(c0, _mm256_castsi256_ps(_mm256_slli_epi32(x0, 16))));
                to = _mm256_add_ps(to, _mm256_mul_ps(c0, _mm256_castsi256_ps(_mm256_and_si256(x0, hm))));
                te = _mm256_add_ps(te, _mm256_mul_ps(c1, _mm256_castsi256_ps(_mm256_slli_epi32(x1, 16))));
                to = _mm256_add_ps(to, _mm256_mul_ps(c1, _mm256_castsi256_ps(_mm256_and_si256(x1, hm))));
                te = _mm256_add_ps(te, _mm256_mul_ps(c2, _mm256_castsi256_ps(_mm256_slli_epi32(x2, 16))));
                to = _mm256_add_ps(to, _mm256_mul_ps(c2, _mm256_castsi256_ps(_mm256_and_si256(x2, hm))));
                te = _mm256_add_ps(te, _mm256_mul_ps(c3, _mm256_castsi256_ps(_mm256_slli_epi32(x3, 16))));
                to = _mm256_add_ps(to, _mm256_mul_ps(c3, _mm256_castsi256_ps(_mm256_and_si256(x3, hm))));
                _mm256_storeu_ps(dp + q, te);
                _mm256_storeu_ps(dp + q + 8, to);
            }
        }
        for (; j < p->nv; j++) {
            const uint16_t *v0 = (const uint16_t *)p->v[j] + a;
            const __m256 c0 = _mm256_set1_ps(p->c[j]);
            for (q = 0; q < e - a; q += 16) {
                __m256i x0 = _mm256_loadu_si256((const __m256i *)(v0 + q));
                _mm256_storeu_ps(dp + q, _mm256_add_ps(_mm256_loadu_ps(dp + q),
                                                       _mm256_mul_ps(c0, _mm256_castsi256_ps(_mm256_slli_epi32(x0, 16)))));
                _mm256_storeu_ps(dp + q + 8, _mm256_add_ps(_mm256_loadu_ps(dp + q + 8),
                                                           _mm256_mul_ps(c0, _mm256_castsi256_ps(_mm256_and_si256(x0, hm)))));
            }
        }
        nst__lb_undeal(d + a, dp, e - a);   /* back in order */
        nst__lb_comb_sums_avx2(p, d, a, e, b, acc, r);
    }
    nst__lb_comb_reduce_avx2(acc, r, gd, asum);
}
#endif

#if defined(NST__NEON)
static double nst__lb_hsum_neon(float32x4_t a, float32x4_t b) {
    float64x2_t s = vaddq_f64(vaddq_f64(vcvt_f64_f32(vget_low_f32(a)), vcvt_high_f64_f32(a)),
                              vaddq_f64(vcvt_f64_f32(vget_low_f32(b)), vcvt_high_f64_f32(b)));
    return vgetq_lane_f64(s, 0) + vgetq_lane_f64(s, 1);
}
/* As the AVX2 kernels, four lanes. */
static void nst__lb_dots_neon(const nst__lb_vf *p, size_t lo, size_t hi, double *out) {
    const int bf = p->bf16;
    size_t a, b, i;
    int j, r;
    for (j = 0; j < 3 * p->nv; j++) out[j] = 0;
    for (a = lo; a < hi; a = b) {
        b = NST__MIN(a + NST__LB_SUB, hi);
        j = 0;
        if (p->nw == 1) {
            const float *w = p->w[0];
            for (; j + 4 <= p->nv; j += 4) {
                const void *v0 = p->v[j], *v1 = p->v[j + 1], *v2 = p->v[j + 2], *v3 = p->v[j + 3];
                float32x4_t s0 = vdupq_n_f32(0), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
                double tail[4] = {0, 0, 0, 0};
                for (i = a; i + 8 <= b; i += 8) {
                    float32x4_t w0 = vld1q_f32(w + i), w1 = vld1q_f32(w + i + 4);
                    s0 = vfmaq_f32(s0, nst__lb_ld4_neon(v0, bf, i), w0);
                    s1 = vfmaq_f32(s1, nst__lb_ld4_neon(v0, bf, i + 4), w1);
                    s2 = vfmaq_f32(s2, nst__lb_ld4_neon(v1, bf, i), w0);
                    s3 = vfmaq_f32(s3, nst__lb_ld4_neon(v1, bf, i + 4), w1);
                    s4 = vfmaq_f32(s4, nst__lb_ld4_neon(v2, bf, i), w0);
                    s5 = vfmaq_f32(s5, nst__lb_ld4_neon(v2, bf, i + 4), w1);
                    s6 = vfmaq_f32(s6, nst__lb_ld4_neon(v3, bf, i), w0);
                    s7 = vfmaq_f32(s7, nst__lb_ld4_neon(v3, bf, i + 4), w1);
                }
                for (; i < b; i++) {
                    tail[0] += (double)nst__lb_get(v0, bf, i) * w[i];
                    tail[1] += (double)nst__lb_get(v1, bf, i) * w[i];
                    tail[2] += (double)nst__lb_get(v2, bf, i) * w[i];
                    tail[3] += (double)nst__lb_get(v3, bf, i) * w[i];
                }
                out[3 * j] += nst__lb_hsum_neon(s0, s1) + tail[0];
                out[3 * j + 3] += nst__lb_hsum_neon(s2, s3) + tail[1];
                out[3 * j + 6] += nst__lb_hsum_neon(s4, s5) + tail[2];
                out[3 * j + 9] += nst__lb_hsum_neon(s6, s7) + tail[3];
            }
        }
        for (; j < p->nv; j++) {
            const void *v = p->v[j];
            const float *w0 = p->w[0], *w1 = p->w[p->nw > 1], *w2 = p->w[p->nw > 2 ? 2 : 0];
            float32x4_t s0 = vdupq_n_f32(0), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0;
            double tail[3] = {0, 0, 0};
            for (i = a; i + 8 <= b; i += 8) {
                float32x4_t x0 = nst__lb_ld4_neon(v, bf, i), x1 = nst__lb_ld4_neon(v, bf, i + 4);
                s0 = vfmaq_f32(s0, x0, vld1q_f32(w0 + i));
                s1 = vfmaq_f32(s1, x1, vld1q_f32(w0 + i + 4));
                if (p->nw > 1) {
                    s2 = vfmaq_f32(s2, x0, vld1q_f32(w1 + i));
                    s3 = vfmaq_f32(s3, x1, vld1q_f32(w1 + i + 4));
                    s4 = vfmaq_f32(s4, x0, vld1q_f32(w2 + i));
                    s5 = vfmaq_f32(s5, x1, vld1q_f32(w2 + i + 4));
                }
            }
            for (; i < b; i++) {
                double x = nst__lb_get(v, bf, i);
                for (r = 0; r < p->nw; r++) tail[r] += x * p->w[r][i];
            }
            out[3 * j] += nst__lb_hsum_neon(s0, s1) + tail[0];
            if (p->nw > 1) {
                out[3 * j + 1] += nst__lb_hsum_neon(s2, s3) + tail[1];
                out[3 * j + 2] += nst__lb_hsum_neon(s4, s5) + tail[2];
            }
        }
    }
}
static void nst__lb_comb_neon(const nst__lb_vf *p, float *d, size_t lo, size_t hi, double *gd, double *asum) {
    const int bf = p->bf16;
    float64x2_t s0 = vdupq_n_f64(0), s1 = s0, a0 = s0, a1 = s0;
    double rs = 0, ra = 0;
    size_t a, b, i;
    int j;
    for (a = lo; a < hi; a = b) {
        size_t e;
        b = NST__MIN(a + NST__LB_SUB, hi);
        e = a + ((b - a) & ~(size_t)3);
        for (i = a; i < e; i += 4) vst1q_f32(d + i, vmulq_n_f32(vld1q_f32(p->g + i), p->cg));
        for (j = 0; j + 4 <= p->nv; j += 4) {
            const void *v0 = p->v[j], *v1 = p->v[j + 1], *v2 = p->v[j + 2], *v3 = p->v[j + 3];
            const float c0 = p->c[j], c1 = p->c[j + 1], c2 = p->c[j + 2], c3 = p->c[j + 3];
            for (i = a; i < e; i += 4) {
                float32x4_t t = vld1q_f32(d + i);
                t = vaddq_f32(t, vmulq_n_f32(nst__lb_ld4_neon(v0, bf, i), c0));
                t = vaddq_f32(t, vmulq_n_f32(nst__lb_ld4_neon(v1, bf, i), c1));
                t = vaddq_f32(t, vmulq_n_f32(nst__lb_ld4_neon(v2, bf, i), c2));
                t = vaddq_f32(t, vmulq_n_f32(nst__lb_ld4_neon(v3, bf, i), c3));
                vst1q_f32(d + i, t);
            }
        }
        for (; j < p->nv; j++) {
            const void *v0 = p->v[j];
            const float c0 = p->c[j];
            for (i = a; i < e; i += 4)
                vst1q_f32(d + i, vaddq_f32(vld1q_f32(d + i), vmulq_n_f32(nst__lb_ld4_neon(v0, bf, i), c0)));
        }
        for (i = a; i < e; i += 4) {
            float32x4_t t = vld1q_f32(d + i), g = vld1q_f32(p->g + i);
            float64x2_t lo2 = vcvt_f64_f32(vget_low_f32(t)), hi2 = vcvt_high_f64_f32(t);
            s0 = vfmaq_f64(s0, lo2, vcvt_f64_f32(vget_low_f32(g)));
            s1 = vfmaq_f64(s1, hi2, vcvt_high_f64_f32(g));
            a0 = vaddq_f64(a0, vabsq_f64(lo2));
            a1 = vaddq_f64(a1, vabsq_f64(hi2));
        }
        if (e < b) {
            double x, y;
            nst__lb_comb_scalar(p, d, e, b, &x, &y);
            rs += x;
            ra += y;
        }
    }
    s0 = vaddq_f64(s0, s1);
    a0 = vaddq_f64(a0, a1);
    *gd = (vgetq_lane_f64(s0, 0) + vgetq_lane_f64(s0, 1)) + rs;
    *asum = (vgetq_lane_f64(a0, 0) + vgetq_lane_f64(a0, 1)) + ra;
}
#endif

static int nst__lb_simd(void) {
#if defined(NST__X86)
    return nst__cpu_arch() == NST_ARCH_AVX2 || nst__cpu_arch() == NST_ARCH_AVX512;
#elif defined(NST__NEON)
    return nst__cpu_arch() == NST_ARCH_NEON;
#else
    return 0;
#endif
}

/* The measuring pass: out[3 j + r] = v_j . w_r over all n. part holds NST__LB_CHUNKS * 3 * nv doubles; the
 * chunks' sums are added in chunk order, so the result does not depend on the thread count. */
static void nst__lb_vf_dots(const nst__lb_vf *p, size_t n, int nthreads, double *part, double *out) {
    int simd = nst__lb_simd(), j;
    long k;
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (k = 0; k < NST__LB_CHUNKS; k++) {
        size_t lo = nst__lb_chunk(n, k), hi = nst__lb_chunk(n, k + 1);
        double *o = part + (size_t)k * 3 * p->nv;
#if defined(NST__X86)
        if (simd) {
            if (p->bf16) nst__lb_dots_bf16_avx2(p, lo, hi, o);
            else nst__lb_dots_avx2(p, lo, hi, o);
            continue;
        }
#elif defined(NST__NEON)
        if (simd) { nst__lb_dots_neon(p, lo, hi, o); continue; }
#endif
        nst__lb_dots_scalar(p, lo, hi, o);
    }
    (void)simd;
    for (j = 0; j < 3 * p->nv; j++) out[j] = 0;
    for (k = 0; k < NST__LB_CHUNKS; k++)
        for (j = 0; j < 3 * p->nv; j++) out[j] += part[(size_t)k * 3 * p->nv + j];
}

/* The combining pass: d = cg g + sum c_j v_j; returns g . d, and |d|_1 in *asum. */
static double nst__lb_vf_comb(const nst__lb_vf *p, float *d, size_t n, int nthreads, double *asum) {
    double pd[NST__LB_CHUNKS], pa[NST__LB_CHUNKS], s = 0, a = 0;
    int simd = nst__lb_simd();
    long k;
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (k = 0; k < NST__LB_CHUNKS; k++) {
        size_t lo = nst__lb_chunk(n, k), hi = nst__lb_chunk(n, k + 1);
#if defined(NST__X86)
        if (simd) {
            if (p->bf16) nst__lb_comb_bf16_avx2(p, d, lo, hi, &pd[k], &pa[k]);
            else nst__lb_comb_avx2(p, d, lo, hi, &pd[k], &pa[k]);
            continue;
        }
#elif defined(NST__NEON)
        if (simd) { nst__lb_comb_neon(p, d, lo, hi, &pd[k], &pa[k]); continue; }
#endif
        nst__lb_comb_scalar(p, d, lo, hi, &pd[k], &pa[k]);
    }
    (void)simd;
    for (k = 0; k < NST__LB_CHUNKS; k++) { s += pd[k]; a += pa[k]; }
    *asum = a;
    return s;
}

/* The vector-free recursion's workspace: B, the inner products of the basis (index q: s of history slot q,
 * m + q: its y, 2m: g), and the coefficients. */
typedef struct nst__lb_gram {
    double *B, *c, *part, *out;
    float *cf;
    const void **vp;
    int *ix;
} nst__lb_gram;

static double nst__lb_gram_dot(const nst__lb_gram *w, int M, int nv, int i) {   /* b_i . (sum c_j b_j) */
    const double *row = w->B + (size_t)i * M;
    double s = w->c[M - 1] * row[M - 1];
    int j;
    for (j = 0; j < nv; j++) s += w->c[w->ix[j]] * row[w->ix[j]];
    return s;
}

/* The direction d = -H g over the k pairs before head, by the vector-free recursion. fresh: the newest
 * pair was stored this iteration (sn, yn hold its stored values), so its inner products are measured
 * too. Returns g . d, and |d|_1 in *dsum. */
static double nst__lb_vf_direction(nst__lb_gram *w, const unsigned char *S, const unsigned char *Y, int bf16,
                                   size_t n, int m, int k, int head, int fresh, const float *g, const float *sn,
                                   const float *yn, const double *rho, double *alpha, double hdiag, float *d,
                                   int nthreads, double *dsum) {
    int M = 2 * m + 1, nv = 2 * k, ns = (head - 1 + m) % m, j;
    size_t es = bf16 ? 2 : 4;
    double *B = w->B;
    nst__lb_vf p;
    memset(&p, 0, sizeof p);
    for (j = 0; j < k; j++) {   /* newest pair first */
        int q = (head - 1 - j + 2 * m) % m;
        w->vp[2 * j] = S + (size_t)q * n * es;
        w->vp[2 * j + 1] = Y + (size_t)q * n * es;
        w->ix[2 * j] = q;
        w->ix[2 * j + 1] = m + q;
    }
    p.v = w->vp;
    p.nv = nv;
    p.bf16 = bf16;
    p.w[0] = p.g = g;
    p.w[1] = sn;
    p.w[2] = yn;
    p.nw = fresh ? 3 : 1;
    if (nv) nst__lb_vf_dots(&p, n, nthreads, w->part, w->out);
    for (j = 0; j < nv; j++) {
        size_t i = (size_t)w->ix[j];
        B[i * M + 2 * m] = B[(size_t)2 * m * M + i] = w->out[3 * j];
        if (fresh) {
            B[i * M + ns] = B[(size_t)ns * M + i] = w->out[3 * j + 1];
            B[i * M + m + ns] = B[(size_t)(m + ns) * M + i] = w->out[3 * j + 2];
        }
    }
    /* the two-loop recursion on the coefficients of q, starting from q = -g */
    for (j = 0; j < nv; j++) w->c[w->ix[j]] = 0;
    w->c[2 * m] = -1;
    for (j = 0; j < k; j++) {   /* newest to oldest */
        int q = (head - 1 - j + 2 * m) % m;
        alpha[q] = rho[q] * nst__lb_gram_dot(w, M, nv, q);
        w->c[m + q] -= alpha[q];
    }
    for (j = 0; j < nv; j++) w->c[w->ix[j]] *= hdiag;
    w->c[2 * m] *= hdiag;
    for (j = k - 1; j >= 0; j--) {   /* oldest to newest */
        int q = (head - 1 - j + 2 * m) % m;
        w->c[q] += alpha[q] - rho[q] * nst__lb_gram_dot(w, M, nv, m + q);
    }
    for (j = 0; j < nv; j++) w->cf[j] = (float)w->c[w->ix[j]];
    p.c = w->cf;
    p.cg = (float)w->c[2 * m];
    return nst__lb_vf_comb(&p, d, n, nthreads, dsum);
}

/* L-BFGS as torch's optim.lbfgs (which jcjohnson/neural-style and neural-style-pt use): two-loop
 * recursion over the last `history` pairs, H0 = s'y / y'y, no line search and a fixed step
 * (the first scaled by min(1, 1/|g|_1)), pairs with s'y <= 1e-10 skipped. The optional line search
 * backtracks from that step until the Armijo condition holds. The direction comes from the vector-free
 * recursion, or with two_loop from the pass-per-vector one (the reference: tests and bench compare them). */
static nst_status nst__lbfgs(float *x, size_t n, nst_value_grad_fn fg, void *user, const nst_lbfgs_options *opt,
                             double *final_value, int *evals, int two_loop) {
    nst_lbfgs_options def;
    nst__lb_gram gw;
    int m, k = 0, head = 0, iter, nev = 0, max_eval, nthreads = nst__resolve_threads(opt ? opt->threads : 0);
    unsigned char *S = NULL, *Y = NULL;
    float *g = NULL, *g_old = NULL, *d = NULL, *x0 = NULL, *sn = NULL, *yn = NULL;
    int bf16 = opt && opt->history_bf16;
    size_t es = bf16 ? 2 : 4;
    double *rho = NULL, *alpha = NULL, f = 0, f_old = 0, t = 0, hdiag = 1, move = 0, last_ys = 0;
    nst_status st = NST_OK;
    size_t bytes;
    if (!opt) { nst_lbfgs_options_init(&def); opt = &def; }
    if (evals) *evals = 0;
    memset(&gw, 0, sizeof gw);
    if (!x || !fg || n == 0) return nst__err(NST_ERR_ARGUMENT, "lbfgs: bad arguments");
    m = opt->history > 0 ? opt->history : 100;
    max_eval = opt->max_eval > 0 ? opt->max_eval : (int)(opt->max_iter * 1.25);
    if (!nst__mul_ok(n, (size_t)m * 2 * es, &bytes))
        return nst__err(NST_ERR_NOMEM, "lbfgs: history of %d x %lu floats is too large", m, (unsigned long)n);
    S = (unsigned char *)nst__aligned_alloc(n * (size_t)m * es);
    Y = (unsigned char *)nst__aligned_alloc(n * (size_t)m * es);
    sn = (float *)nst__aligned_alloc(n * sizeof(float));
    yn = (float *)nst__aligned_alloc(n * sizeof(float));
    g = (float *)nst__aligned_alloc(n * sizeof(float));
    g_old = (float *)nst__aligned_alloc(n * sizeof(float));
    d = (float *)nst__aligned_alloc(n * sizeof(float));
    if (opt->line_search) x0 = (float *)nst__aligned_alloc(n * sizeof(float));
    rho = (double *)nst__malloc(sizeof(double) * (size_t)m);
    alpha = (double *)nst__malloc(sizeof(double) * (size_t)m);
    if (!two_loop) {   /* (2m+1)^2 + 6m * (NST__LB_CHUNKS + 1) doubles: 0.6 MB at m = 100 */
        size_t M = (size_t)2 * m + 1;
        gw.B = (double *)nst__malloc(sizeof(double) * M * M);
        gw.c = (double *)nst__malloc(sizeof(double) * M);
        gw.part = (double *)nst__malloc(sizeof(double) * 3 * (M - 1) * NST__LB_CHUNKS);
        gw.out = (double *)nst__malloc(sizeof(double) * 3 * (M - 1));
        gw.cf = (float *)nst__malloc(sizeof(float) * (M - 1));
        gw.vp = (const void **)nst__malloc(sizeof(void *) * (M - 1));
        gw.ix = (int *)nst__malloc(sizeof(int) * (M - 1));
        if (gw.B) memset(gw.B, 0, sizeof(double) * M * M);
    }
    if (!S || !Y || !sn || !yn || !g || !g_old || !d || !rho || !alpha || (opt->line_search && !x0) ||
        (!two_loop && (!gw.B || !gw.c || !gw.part || !gw.out || !gw.cf || !gw.vp || !gw.ix))) {
        st = nst__err(NST_ERR_NOMEM, "lbfgs: out of memory for a history of %d (%lu MB)", m,
                      (unsigned long)(bytes >> 20));
        goto done;
    }
    if ((st = fg(x, g, &f, user)) != NST_OK) goto done;
    nev = 1;
    if (nst__lb_asum(g, n, nthreads) <= opt->tol_fun) goto done;
    for (iter = 1; iter <= opt->max_iter; iter++) {
        size_t i;
        double gtd, be, dsum = 0;
        if (iter == 1) {   /* d = -g (warm: -h0 g), the step: see first_step and curvature */
            nst__lb_pass ps;
            double h0 = opt->curvature && *opt->curvature > 0 ? *opt->curvature : 0;
            memset(&ps, 0, sizeof ps);
            ps.g = g;
            ps.v = g;
            ps.v_f32 = 1;
            ps.want_asum = 1;
            if (h0 > 0) { ps.scale = 1; ps.sc = h0; }
            gtd = nst__lb_run(&ps, d, n, nthreads, &dsum);
            if (h0 > 0) t = opt->learning_rate;
            else {
                t = NST__MIN(1.0, 1.0 / dsum);
                if (opt->first_step > 0 && dsum > 0) t = NST__MAX(t, opt->first_step * (double)n / dsum);
                t *= opt->learning_rate;
            }
        } else {
            /* s = t d (the step just taken), y = g - g_old */
            double ys, yy;
            int fresh = 0;
            nst__lb_pair(yn, sn, g, g_old, d, t, n, nthreads, &ys, &yy);
            last_ys = ys;
            if (opt->relative_curvature ? ys > 1e-10 * yy : ys > 1e-10) {
                fresh = 1;
                nst__hist_store(S + (size_t)head * n * es, bf16, sn, n, nthreads);
                nst__hist_store(Y + (size_t)head * n * es, bf16, yn, n, nthreads);
                rho[head] = 1.0 / ys;
                hdiag = ys / yy;
                if (opt->curvature) *opt->curvature = hdiag;
                head = (head + 1) % m;
                if (k < m) k++;
            }
            if (!two_loop)
                gtd = nst__lb_vf_direction(&gw, S, Y, bf16, n, m, k, head, fresh, g, sn, yn, rho, alpha, hdiag, d,
                                           nthreads, &dsum);
            /* two-loop recursion, newest pair first: pass j applies pair j-1 and measures pair j */
            else {
                nst__lb_pass ps;
                int j;
                memset(&ps, 0, sizeof ps);
                ps.bf16 = bf16;
                ps.g = g;
                for (j = 0; j <= k; j++) {
                    int p = (head - 1 - j + 2 * m) % m, q = (head - j + 2 * m) % m;   /* pair j, pair j-1 */
                    if (j > 0) { ps.u = Y + (size_t)q * n * es; ps.a = (float)-alpha[q]; }
                    if (j == k) {   /* d *= H0, then the second loop starts with the oldest pair */
                        ps.scale = 1;
                        ps.sc = hdiag;
                        p = (head - k + 2 * m) % m;
                        ps.v = k ? Y + (size_t)p * n * es : (const void *)g;
                        ps.v_f32 = k == 0;
                        ps.want_asum = k == 0;
                        be = nst__lb_run(&ps, d, n, nthreads, &dsum);
                    } else {
                        ps.v = S + (size_t)p * n * es;
                        alpha[p] = rho[p] * nst__lb_run(&ps, d, n, nthreads, NULL);
                    }
                    ps.g = NULL;
                }
                ps.scale = 0;
                /* oldest to newest: apply pair j with beta_j, measure pair j-1 (the last pass: g'd) */
                for (j = k - 1; j >= 0; j--) {
                    int p = (head - 1 - j + 2 * m) % m, q = (head - j + 2 * m) % m;
                    ps.u = S + (size_t)p * n * es;
                    ps.a = (float)(alpha[p] - rho[p] * be);
                    ps.v = j ? Y + (size_t)q * n * es : (const void *)g;
                    ps.v_f32 = j == 0;
                    ps.want_asum = j == 0;
                    be = nst__lb_run(&ps, d, n, nthreads, &dsum);
                }
                gtd = be;
            }
        }
        {   /* g_old takes g's buffer; the next evaluation writes the other */
            float *tmp = g_old;
            g_old = g;
            g = tmp;
        }
        f_old = f;
        if (iter > 1) {
            t = opt->learning_rate;
            /* no pair kept yet (first_step runs only): d is -g, whose size says nothing about the
             * scale. Keep the last step's move, 4x it after negative curvature (the slope steepened
             * along the step: the way down is further). From noise the loss is concave at first: the
             * pairs of a 512 px run were skipped for 32 iterations of ~1e-4 grey levels each (loss
             * 10102.5 -> 10101.5), with this the plateau ends at iteration 8 (402.6 at iteration 40 vs 1747) */
            if (k == 0 && opt->first_step > 0 && dsum > 0)
                t = NST__MAX(t, (last_ys > 0 ? 1.0 : 4.0) * move * (double)n / dsum);
        }
        if (opt->line_search) {
            int tries;
            memcpy(x0, x, n * sizeof(float));
            for (tries = 0; tries < 25; tries++) {
                for (i = 0; i < n; i++) x[i] = (float)(x0[i] + t * d[i]);
                if ((st = fg(x, g, &f, user)) != NST_OK) goto done;
                nev++;
                if (f <= f_old + 1e-4 * t * gtd || nev >= max_eval) break;
                t *= 0.5;
            }
        } else {
            nst__axpy(x, t, d, n, nthreads);
            if (iter == opt->max_iter && !opt->guard) break;   /* torch skips the evaluation after the last step */
            if ((st = fg(x, g, &f, user)) != NST_OK) goto done;
            nev++;
            /* guard: a fixed step that blows the loss up (or makes it non-finite) is halved until it
             * does not; ordinary non-monotone steps pass untouched */
            while (opt->guard && !(f <= 2.0 * fabs(f_old) + 1e-30) && nev < max_eval + 30) {
                t *= 0.5;
                nst__axpy(x, -t, d, n, nthreads);
                if ((st = fg(x, g, &f, user)) != NST_OK) goto done;
                nev++;
            }
        }
        move = fabs(t) * dsum / (double)n;   /* the mean |x change| of this step */
        if (opt->on_iter && opt->on_iter(iter, f, x, opt->user)) {
            st = nst__err(NST_ERR_CANCELLED, "lbfgs: cancelled");
            goto done;
        }
        if (iter == opt->max_iter || nev >= max_eval) break;
        if (nst__lb_asum(g, n, nthreads) <= opt->tol_fun) break;
        if (fabs(t) * dsum <= opt->tol_x) break;
        if (fabs(f - f_old) < opt->tol_x) break;
    }
done:
    if (final_value) *final_value = f;
    if (evals) *evals = nev;
    nst__aligned_free(S); nst__aligned_free(Y); nst__aligned_free(sn); nst__aligned_free(yn);
    nst__aligned_free(g); nst__aligned_free(g_old);
    nst__aligned_free(d); nst__aligned_free(x0);
    nst__free(rho); nst__free(alpha);
    nst__free(gw.B); nst__free(gw.c); nst__free(gw.part); nst__free(gw.out); nst__free(gw.cf);
    nst__free((void *)gw.vp); nst__free(gw.ix);
    return st;
}
NSTDEF nst_status nst_lbfgs(float *x, size_t n, nst_value_grad_fn fg, void *user, const nst_lbfgs_options *opt,
                            double *final_value, int *evals) {
    return nst__lbfgs(x, n, fg, user, opt, final_value, evals, 0);
}

/* Adam as torch's optim.adam: step = lr * sqrt(1 - b2^t) / (1 - b1^t), x -= step * m / (sqrt(v) + eps). */
NSTDEF nst_status nst_adam(float *x, size_t n, nst_value_grad_fn fg, void *user, const nst_adam_options *opt,
                           double *final_value) {
    nst_adam_options def;
    float *g, *mo, *v;
    double f = 0;
    nst_status st = NST_OK;
    int it;
    if (!opt) { nst_adam_options_init(&def); opt = &def; }
    if (!x || !fg || n == 0) return nst__err(NST_ERR_ARGUMENT, "adam: bad arguments");
    g = (float *)nst__aligned_alloc(n * sizeof(float));
    mo = (float *)nst__aligned_alloc(n * sizeof(float));
    v = (float *)nst__aligned_alloc(n * sizeof(float));
    if (!g || !mo || !v) { st = nst__err(NST_ERR_NOMEM, "adam: out of memory"); goto done; }
    memset(mo, 0, n * sizeof(float));
    memset(v, 0, n * sizeof(float));
    for (it = 1; it <= opt->max_iter; it++) {
        size_t i;
        double b1 = opt->beta1, b2 = opt->beta2;
        double step = opt->learning_rate * sqrt(1.0 - pow(b2, it)) / (1.0 - pow(b1, it));
        if ((st = fg(x, g, &f, user)) != NST_OK) goto done;
        for (i = 0; i < n; i++) {
            mo[i] = (float)(b1 * mo[i] + (1.0 - b1) * g[i]);
            v[i] = (float)(b2 * v[i] + (1.0 - b2) * (double)g[i] * g[i]);
            x[i] -= (float)(step * mo[i] / (sqrt((double)v[i]) + opt->eps));
        }
        if (opt->on_iter && opt->on_iter(it, f, x, opt->user)) {
            st = nst__err(NST_ERR_CANCELLED, "adam: cancelled");
            goto done;
        }
    }
done:
    if (final_value) *final_value = f;
    nst__aligned_free(g); nst__aligned_free(mo); nst__aligned_free(v);
    return st;
}

/* ---- the transfer driver -----------------------------------------------------------------------------*/
NSTDEF void nst_options_init(nst_options *o) {
    memset(o, 0, sizeof *o);
    o->iterations = 1000;
    o->image_size = 512;
    o->content_weight = 5.0f;
    o->style_weight = 100.0f;
    o->tv_weight = -1.0f;   /* the model's default: nst_model_default_tv_weight */
    o->content_layers = "relu4_2";
    o->style_layers = "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1";
    o->style_scale = 1.0f;
    o->init = NST_INIT_RANDOM;
    o->optimizer = NST_OPT_LBFGS;
    o->lbfgs_history = 100;
    o->lbfgs_history_bf16 = 1;   /* measured: same convergence as f32 (64 px, 56 its: 938 vs 944) */
    o->learning_rate = 0.0f;   /* 0 = per optimizer: 1 (L-BFGS), 10 (Adam) */
    o->pool = NST_POOL_DEFAULT;
    o->colors = NST_COLORS_STYLE;
    o->scales = 1;
    o->progress_every = 1;
    o->tile = -1;   /* tile only when the whole image would not fit */
    o->tile_keep_filters = 0;
}

/* Output size for a content image: longest side = size (0 keeps the content's size). */
static void nst__fit(int w, int h, int size, int *ow, int *oh) {
    if (size <= 0) { *ow = w; *oh = h; return; }
    if (w >= h) { *ow = size; *oh = (int)((double)h * size / w + 0.5); }
    else { *oh = size; *ow = (int)((double)w * size / h + 0.5); }
    if (*ow < 1) *ow = 1;
    if (*oh < 1) *oh = 1;
}

/* Resized copy (or plain copy when the size matches). */
static nst_status nst__resized(const nst_image *in, int w, int h, nst_image *out) {
    if (in->width == w && in->height == h) {
        nst_status st = nst_image_alloc(out, w, h, in->channels);
        if (st == NST_OK) memcpy(out->pixels, in->pixels, sizeof(float) * (size_t)w * h * in->channels);
        return st;
    }
    return nst_image_resize(in, w, h, out);
}

static size_t nst__available_memory(void) {
#if !defined(NST_NO_STDIO) && defined(__linux__)
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    size_t kb = 0;
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "MemAvailable:", 13) == 0) { kb = (size_t)strtoull(line + 13, NULL, 10); break; }
    fclose(f);
    return kb * 1024;
#else
    return 0;
#endif
}

/* One pass of the transfer at one size: what nst_transfer and the estimate share. */
typedef struct nst__pass_sizes {
    int w, h;
    int sw[8], sh[8];
} nst__pass_sizes;

/* ---- the memory estimate ---------------------------------------------------------------------------
 * Every buffer nst_transfer allocates is listed below, once, with the phase it lives in. Whole-call
 * buffers (the model, the inputs and their RGB copies, the runtime) live throughout; in each pass the
 * pass buffers (resized inputs, the previous pass's result, the objective) live throughout the pass,
 * and the phases in between come one after the other: resizing, building the targets, optimising. The
 * peak is the whole-call buffers plus, for the largest pass, its pass buffers plus its largest phase.
 * A new buffer in nst_transfer gets one nst__mem_add line here. Every size comes from the function the
 * allocation itself uses (nst__objective_net and nst__net_init_packed with alloc = 0, ...), so changes there
 * carry over. */
enum { NST__MEM_PASS, NST__MEM_RESIZE, NST__MEM_BUILD, NST__MEM_OPTIMIZE, NST__MEM_PHASES };
typedef struct nst__mem {
    size_t phase[NST__MEM_PHASES];
} nst__mem;

static void nst__mem_add(nst__mem *e, int phase, size_t bytes) { e->phase[phase] += bytes; }
/* one allocation: the allocator rounds up and keeps a header (aligned allocations add 64 bytes) */
static size_t nst__mem_block(size_t bytes) { return nst__round64(bytes + 64); }
static size_t nst__mem_image(int w, int h, int c) { return nst__mem_block((size_t)w * h * c * sizeof(float)); }

/* The model: weights and the convolution plans (transformed or packed filters). */
static size_t nst__model_bytes(const nst_model *m) {
    size_t b = m->block_bytes;
    int i, d;
    for (i = 0; i < m->nconv; i++)
        for (d = 0; d < 2 && m->plan[i]; d++) b += nst__mem_block(m->plan[i]->dir[d].u_bytes);
    return b;
}

/* What the process needs besides our allocations: the program, libc, libm and the OpenMP runtime
 * (measured on Linux/glibc/libgomp: ~3 MB resident before any work, and each worker thread's stack and
 * malloc arena ~0.5 MB), plus the allocator's slack (freed blocks it keeps, ~1% of what is used). */
static size_t nst__mem_runtime(int nthreads, size_t used) {
    return ((size_t)4 << 20) + (size_t)nthreads * ((size_t)1 << 19) + used / 100;
}

/* One pass at w x h with styles at sw x sh: adds the pass buffers and the phases to e. */
static void nst__pass_memory(const nst_model *m, const nst_options *o, int w, int h, const int *sw, const int *sh,
                             int nstyles, int prev_w, int prev_h, int nthreads, nst__mem *e) {
    int content_l[NST__MAX_LOSS_LAYERS], style_l[NST__MAX_LOSS_LAYERS], nc, ns, last, k, avg, slast;
    unsigned char keep[NST_VGG_LAYERS], skeep[NST_VGG_LAYERS];
    nst__net net, sn;
    size_t n = (size_t)3 * w * h, build = 0, hist;
    if (nst__objective_layout(m, o, content_l, &nc, style_l, &ns, &last, keep) != NST_OK) return;
    avg = (o->pool == NST_POOL_DEFAULT ? m->pool : o->pool) == NST_POOL_AVG;
    if (nstyles == 0) {   /* as nst_objective_create: only the content layers */
        ns = 0;
        memset(keep, 0, sizeof keep);
        for (k = 0; k < nc; k++) keep[content_l[k]] = 1;
        last = nst__deepest(content_l, nc, -1);
    }
    memset(skeep, 0, sizeof skeep);
    for (k = 0; k < ns; k++) skeep[style_l[k]] = 1;
    slast = nst__deepest(style_l, ns, -1);
    if (nst__objective_net(&net, m, h, w, last, keep, sh, sw, NST__MIN(nstyles, 8), ns > 0 ? slast : -1, skeep, avg,
                           nthreads, !o->normalize_gradients && !(o->style_masks && ns > 0 && nstyles > 0), 0) != NST_OK)
        return;

    /* pass buffers: the resized inputs, the previous pass's result, the objective */
    nst__mem_add(e, NST__MEM_PASS, nst__mem_image(w, h, 3));
    for (k = 0; k < nstyles; k++) nst__mem_add(e, NST__MEM_PASS, nst__mem_image(sw[k], sh[k], 3));
    if (prev_w) nst__mem_add(e, NST__MEM_PASS, nst__mem_block((size_t)3 * prev_w * prev_h * sizeof(float)));
    nst__mem_add(e, NST__MEM_PASS, net.bytes);
    for (k = 0; k < nc; k++)
        nst__mem_add(e, NST__MEM_PASS, nst__mem_block((size_t)net.c_[content_l[k]] * net.h_[content_l[k]] *
                                                      net.w_[content_l[k]] * sizeof(float)));
    for (k = 0; k < ns; k++)
        nst__mem_add(e, NST__MEM_PASS, 2 * nst__mem_block((size_t)net.c_[style_l[k]] * net.c_[style_l[k]] * sizeof(float)));
    {   /* the Grams' scratch while they are formed (nst__gram_rows; the packed GEMM's is in the margin) */
        size_t gs = 0;
        for (k = 0; k < ns; k++)
            if (nst__gram_block_for(nst__cpu_arch()) && net.c_[style_l[k]] <= NST__GRAM_ROWS_MAX_N)
                gs = NST__MAX(gs, nst__gram_rows_bytes(net.c_[style_l[k]], nthreads));
        nst__mem_add(e, NST__MEM_PASS, gs);
    }

    /* building the targets: the content's planar pixels, then each style's network and pixels in turn */
    build = nst__mem_block(n * sizeof(float));
    for (k = 0; k < nstyles && k < 8 && ns > 0; k++)
        if (nst__net_init_packed(&sn, m, sh[k], sw[k], slast, NULL, skeep, avg, nthreads, 0, &net, 0, 0, 0, 0) == NST_OK)
            build = NST__MAX(build, sn.bytes + nst__mem_block((size_t)12 * sw[k] * sh[k]));
    /* optimising: the pixels, the progress view, and the optimiser's state: L-BFGS 2m history vectors
     * (bf16 or f32) and g, g_old, d, s, y (+ x0 with the line search); Adam g, m, v */
    if (o->optimizer == NST_OPT_ADAM) {
        hist = 3 * nst__mem_block(n * sizeof(float));
    } else {
        size_t mh = (size_t)(o->lbfgs_history > 0 ? o->lbfgs_history : 100);
        hist = 2 * nst__mem_block(n * mh * (o->lbfgs_history_bf16 ? 2 : 4)) +
               (o->lbfgs_line_search ? 6 : 5) * nst__mem_block(n * sizeof(float));
    }
    nst__mem_add(e, NST__MEM_OPTIMIZE, 2 * nst__mem_block(n * sizeof(float)) + hist);
    nst__mem_add(e, NST__MEM_BUILD, build);
}

/* nst__pass_memory for a tiled pass (nst__objective_create_tiled's allocations): the network at the
 * largest tile extent, the tile buffers, content targets for the whole image, the Grams, and then the
 * larger of the planar copy of an input image (while targets are built) and the optimiser. */
static size_t nst__pass_memory_tiled(const nst_model *m, const nst_options *o, int w, int h, const int *sw,
                                     const int *sh, int nstyles) {
    int content_l[NST__MAX_LOSS_LAYERS], style_l[NST__MAX_LOSS_LAYERS], nc, ns, last, k, maxh, maxw, maxc = 0;
    int avg;
    unsigned char keep[NST_VGG_LAYERS];
    nst__tiling t;
    nst__net net;
    nst_model mk;
    nst__conv_plan kept[NST_VGG_CONVS];
    size_t total = 0, n = (size_t)3 * w * h, ws = 0, bufs = 0, transient = (size_t)12 * w * h, hist;
    nst_image ci, si[8];
    if (nst__objective_layout(m, o, content_l, &nc, style_l, &ns, &last, keep) != NST_OK) return 0;
    if (nstyles == 0) ns = 0;
    memset(&ci, 0, sizeof ci);
    memset(si, 0, sizeof si);
    ci.width = w; ci.height = h;
    for (k = 0; k < nstyles && k < 8; k++) { si[k].width = sw[k]; si[k].height = sh[k]; }
    if (!nst__tiling_needed(o, &ci, si, NST__MIN(nstyles, 8), content_l, nc, style_l, ns)) {
        nst__mem e;
        memset(&e, 0, sizeof e);
        nst__pass_memory(m, o, w, h, sw, sh, nstyles, 0, 0, nst__resolve_threads(o->threads), &e);
        return e.phase[NST__MEM_PASS] + NST__MAX(e.phase[NST__MEM_BUILD], e.phase[NST__MEM_OPTIMIZE]);
    }
    if (ns == 0) {
        memset(keep, 0, sizeof keep);
        for (k = 0; k < nc; k++) keep[content_l[k]] = 1;
    }
    avg = (o->pool == NST_POOL_DEFAULT ? m->pool : o->pool) == NST_POOL_AVG;
    last = nst__objective_last(content_l, nc, style_l, ns);
    if (o->tile_keep_filters != 0) {
        nst_status kst;
        total += nst__tiled_keep_filters(m, last, &mk, kept, NULL, 0, 1, &kst);
        m = &mk;
    }
    nst__tiling_plan(&t, h, w, o->tile, last);
    maxh = t.max_h; maxw = t.max_w;
    if (nst__tiling_net_needs(&t, m, last, keep, avg, o->threads, &ws, &bufs) != NST_OK) return 0;
    for (k = 0; k < nstyles && k < 8 && ns > 0; k++) {
        nst__tiling_plan(&t, sh[k], sw[k], o->tile, last);
        maxh = NST__MAX(maxh, t.max_h); maxw = NST__MAX(maxw, t.max_w);
        if (nst__tiling_net_needs(&t, m, last, keep, avg, o->threads, &ws, &bufs) != NST_OK) return 0;
        transient = NST__MAX(transient, (size_t)12 * sw[k] * sh[k]);
    }
    if (nst__net_init_ws(&net, m, maxh, maxw, last, keep, avg, o->threads, 0, NULL, ws, bufs) != NST_OK) return 0;
    total += net.bytes + 2 * nst__round64((size_t)12 * maxh * maxw);
    for (k = 0; k < nc; k++) {
        int l = content_l[k], lv = nst__layer_level(l);
        total += nst__round64((size_t)net.c_[l] * (size_t)(h >> lv) * (size_t)(w >> lv) * 4);
    }
    for (k = 0; k < ns; k++) {
        total += 3 * nst__round64((size_t)net.c_[style_l[k]] * net.c_[style_l[k]] * 4);
        maxc = NST__MAX(maxc, net.c_[style_l[k]]);
    }
    total += nst__round64((size_t)maxc * maxc * 4);
    if (o->style_masks && ns > 0 && nstyles > 0) {
        /* whole-image masks at each style layer, every style's Gram, guided Gram and G - A; while they
         * are built, three full-size planes per style */
        for (k = 0; k < ns; k++) {
            int lv = nst__layer_level(style_l[k]);
            size_t cc = (size_t)net.c_[style_l[k]] * net.c_[style_l[k]];
            total += nst__round64((size_t)nstyles * (size_t)(h >> lv) * (size_t)(w >> lv) * 4) +
                     3 * nst__round64(cc * 4 * (size_t)nstyles);
        }
        total += nst__round64((size_t)2 * nst__resolve_threads(o->threads) * maxc * NST__MASK_BLOCK * 4);
        transient = NST__MAX(transient, (size_t)nstyles * 12 * w * h + (size_t)24 * w * h);
    }
    if (o->temporal_image && o->temporal_weight > 0) total += nst__round64((size_t)16 * w * h);
    hist = o->optimizer == NST_OPT_ADAM ? 4 * 4 : (size_t)2 * (o->lbfgs_history > 0 ? o->lbfgs_history : 100) *
                                                  (o->lbfgs_history_bf16 ? 2 : 4) + 7 * 4;
    return total + NST__MAX(transient, hist * n);
}

/* Iterations of pass `pass` (scale_iterations: coarsest first, the last count repeats). */
static int nst__pass_iterations(const nst_options *o, int pass) {
    return o->scale_iterations ? o->scale_iterations[NST__MIN(pass, o->nscale_iterations - 1)] : o->iterations;
}

static void nst__pass_sizes_for(const nst_options *o, const nst_image *content, const nst_image *styles,
                                int nstyles, int pass, int passes, nst__pass_sizes *ps) {
    int size = o->image_size, k, full_w, full_h;
    nst__fit(content->width, content->height, size, &full_w, &full_h);
    size = NST__MAX(full_w, full_h);
    size = (int)((double)size / (double)(1 << (passes - 1 - pass)) + 0.5);
    nst__fit(content->width, content->height, size, &ps->w, &ps->h);
    for (k = 0; k < nstyles && k < 8; k++) {
        int ssize = (int)ceil(o->style_scale * (double)size);
        nst__fit(styles[k].width, styles[k].height, ssize < 1 ? 1 : ssize, &ps->sw[k], &ps->sh[k]);
    }
}

/* nst_transfer_memory of a tiled run: every pass counts, since at a lower scale a tile may still
 * cover more of the image than at the top. 0 when the run is not tiled. */
static size_t nst__transfer_memory_tiled(const nst_model *m, const nst_image *content, const nst_image *styles,
                                         int nstyles, const nst_options *opt) {
    nst_options r = *opt;
    nst__pass_sizes ps;
    size_t images, best = 0;
    int passes, pass, k;
    if (r.tile < 0 && nst_transfer_plan(m, content, styles, nstyles, &r) != NST_OK) return 0;
    if (r.tile <= 0) return 0;
    passes = r.scales > 1 ? r.scales : 1;
    nst__pass_sizes_for(&r, content, styles, nstyles, passes - 1, passes, &ps);
    images = (size_t)content->width * content->height * 4 * 3 * 2 + (size_t)ps.w * ps.h * 4 * 3 * 4;
    for (k = 0; k < nstyles; k++) images += (size_t)styles[k].width * styles[k].height * 4 * 3 * 2;
    for (pass = 0; pass < passes; pass++) {
        size_t b;
        nst__pass_sizes_for(&r, content, styles, nstyles, pass, passes, &ps);
        if (!(b = nst__pass_memory_tiled(m, &r, ps.w, ps.h, ps.sw, ps.sh, nstyles))) return 0;
        best = NST__MAX(best, b);
    }
    return nst__model_bytes(m) + images + best + nst__mem_runtime(nst__resolve_threads(r.threads), images + best);
}

NSTDEF size_t nst_transfer_memory(const nst_model *m, const nst_image *content, const nst_image *styles, int nstyles,
                                  const nst_options *opt) {
    nst_options def;
    nst__pass_sizes ps;
    size_t call = 0, peak = 0;
    int passes, pass, k, nthreads, prev_w = 0, prev_h = 0;
    if (!m || !content) return 0;
    if (!opt) { nst_options_init(&def); opt = &def; }
    if (opt->tile != 0 && (call = nst__transfer_memory_tiled(m, content, styles, nstyles, opt)) != 0) return call;
    passes = opt->scales > 1 ? opt->scales : 1;
    nthreads = nst__resolve_threads(opt->threads);
    /* whole call: the model, the caller's inputs and their RGB copies */
    call += nst__model_bytes(m);
    call += nst__mem_image(content->width, content->height, content->channels);
    call += nst__mem_image(content->width, content->height, 3);
    for (k = 0; k < nstyles; k++) {
        call += nst__mem_image(styles[k].width, styles[k].height, styles[k].channels);
        call += nst__mem_image(styles[k].width, styles[k].height, 3);
    }
    if (opt->init == NST_INIT_IMAGE && opt->init_image)
        call += nst__mem_image(opt->init_image->width, opt->init_image->height, opt->init_image->channels);
    for (pass = 0; pass < passes; pass++) {
        nst__mem e;
        size_t total;
        memset(&e, 0, sizeof e);
        nst__pass_sizes_for(opt, content, styles, nstyles, pass, passes, &ps);
        nst__pass_memory(m, opt, ps.w, ps.h, ps.sw, ps.sh, nstyles, prev_w, prev_h, nthreads, &e);
        /* resizing, one input at a time: the intermediate image of the horizontal pass (input height x
         * output width) */
        e.phase[NST__MEM_RESIZE] = nst__mem_image(ps.w, content->height, 3);
        for (k = 0; k < nstyles && k < 8; k++)
            e.phase[NST__MEM_RESIZE] = NST__MAX(e.phase[NST__MEM_RESIZE], nst__mem_image(ps.sw[k], styles[k].height, 3));
        total = e.phase[NST__MEM_PASS] +
                NST__MAX(e.phase[NST__MEM_RESIZE], NST__MAX(e.phase[NST__MEM_BUILD], e.phase[NST__MEM_OPTIMIZE]));
        peak = NST__MAX(peak, total);
        prev_w = ps.w; prev_h = ps.h;
    }
    return call + peak + nst__mem_runtime(nthreads, call + peak);
}

/* With r->tile_keep_filters < 0 the kept filters are tried first, then none; *keep gets what fitted. */
static int nst__plan_fits(const nst_model *m, const nst_image *content, const nst_image *styles, int nstyles,
                          const nst_options *r, size_t limit, size_t *need, int *keep) {
    nst_options q = *r;
    *keep = r->tile_keep_filters;
    if (r->tile_keep_filters < 0 && r->tile > 0) {
        q.tile_keep_filters = 1;
        *need = nst_transfer_memory(m, content, styles, nstyles, &q);
        if (*need && *need <= limit) { *keep = 1; return 1; }
        q.tile_keep_filters = *keep = 0;
    }
    *need = nst_transfer_memory(m, content, styles, nstyles, &q);
    return *need && *need <= limit;
}

/* Tiles below 256 px (or twice the halo) cost several times the untiled time: before going below, the
 * L-BFGS history is shortened, keeping tiles of up to 512 px. */
NSTDEF nst_status nst_transfer_plan(const nst_model *m, const nst_image *content, const nst_image *styles,
                                    int nstyles, nst_options *o) {
    int content_l[NST__MAX_LOSS_LAYERS], style_l[NST__MAX_LOSS_LAYERS], nc, ns, last, grid, halo, fw, fh;
    int tmax, tmin, tfloor, t, lo, hi, lbfgs, kf;
    unsigned char keep[NST_VGG_LAYERS];
    size_t limit, need;
    nst_options r;
    if (!m || !content || !o) return nst__err(NST_ERR_ARGUMENT, "transfer plan: NULL argument");
    if (o->tile >= 0) return NST_OK;
    o->tile = 0;
    limit = o->memory_limit ? o->memory_limit : nst__available_memory();
    need = nst_transfer_memory(m, content, styles, nstyles, o);
    if (!limit || !need || need <= limit) return NST_OK;
    if (nst__objective_layout(m, o, content_l, &nc, style_l, &ns, &last, keep) != NST_OK) return NST_OK;
    if (nstyles == 0) ns = 0;
    nst__tile_geometry(nst__objective_last(content_l, nc, style_l, ns), &grid, &halo);
    nst__fit(content->width, content->height, o->image_size, &fw, &fh);
    tmax = (NST__MAX(fw, fh) - 1) / grid * grid;
    tmin = NST__MAX(grid, 2 * halo);
    tfloor = NST__MAX(tmin, 256 / grid * grid);
    lbfgs = o->optimizer != NST_OPT_ADAM;
    r = *o;
    for (t = tmax; t >= tfloor; t -= grid) {
        r.tile = t;
        if (nst__plan_fits(m, content, styles, nstyles, &r, limit, &need, &kf)) {
            o->tile = t;
            o->tile_keep_filters = kf;
            return NST_OK;
        }
    }
    if (lbfgs) {
        int h0 = r.lbfgs_history > 0 ? r.lbfgs_history : 100;
        r.lbfgs_history = 5;
        for (t = NST__MIN(tmax, 512 / grid * grid); t >= tfloor; t -= grid) {
            r.tile = t;
            if (nst__plan_fits(m, content, styles, nstyles, &r, limit, &need, &kf)) break;
        }
        if (t >= tfloor && h0 > 5) {   /* the longest history that fits with this tile */
            lo = 5; hi = h0 - 1;
            while (lo < hi) {
                r.lbfgs_history = (lo + hi + 1) / 2;
                if (nst__plan_fits(m, content, styles, nstyles, &r, limit, &need, &kf)) lo = r.lbfgs_history;
                else hi = r.lbfgs_history - 1;
            }
            r.lbfgs_history = lo;
            nst__plan_fits(m, content, styles, nstyles, &r, limit, &need, &kf);
            o->tile = t;
            o->tile_keep_filters = kf;
            o->lbfgs_history = lo;
            return NST_OK;
        }
        r.lbfgs_history = NST__MIN(h0, 5);
    }
    for (t = NST__MIN(tmax, tfloor - grid); t >= tmin; t -= grid) {
        r.tile = t;
        if (nst__plan_fits(m, content, styles, nstyles, &r, limit, &need, &kf)) {
            o->tile = t;
            o->tile_keep_filters = kf;
            o->lbfgs_history = r.lbfgs_history;
            return NST_OK;
        }
    }
    /* nothing fits: the largest --size that would, with the smallest tile */
    r.tile = tmin;
    nst__plan_fits(m, content, styles, nstyles, &r, limit, &need, &kf);
    o->tile = -1;
    lo = 0; hi = NST__MAX(fw, fh) - 1;
    while (lo < hi) {
        size_t nd;
        r.image_size = (lo + hi + 1) / 2;
        if (nst__plan_fits(m, content, styles, nstyles, &r, limit, &nd, &kf)) lo = r.image_size;
        else hi = r.image_size - 1;
    }
    {
        char how[96] = "", fit[48] = "";
        if (tmax >= tmin)
            snprintf(how, sizeof how, " even in %d px tiles%s", tmin, lbfgs ? " with an L-BFGS history of 5" : "");
        if (lo > 0) snprintf(fit, sizeof fit, ": --size %d would fit", lo);
        return nst__err(NST_ERR_NOMEM, "transfer needs about %lu MB%s, but only %lu MB are available%s",
                        (unsigned long)(need >> 20), how, (unsigned long)(limit >> 20), fit);
    }
}

typedef struct nst__run {
    nst_objective *obj;
    const nst_options *o;
    nst_image view;        /* RGB [0,1] of the current pixels for the progress callback */
    int iteration, iterations, scale, scales;
    double t0, t_call;     /* start of this scale's optimisation, of the nst_transfer call */
    double work, work_rest;   /* pixels x iterations of this scale, of the scales after it (for the ETA) */
    nst_losses last;
    int cancelled;
    int per_step;          /* progress from nst__run_iter (L-BFGS) instead of every evaluation */
} nst__run;

/* One progress line for the point x the losses in r->last belong to, as iteration r->iteration. */
static nst_status nst__run_report(nst__run *r, const float *x) {
    int every = r->o->progress_every > 0 ? r->o->progress_every : 1;
    if (r->o->progress && (r->iteration % every == 0 || r->iteration == r->iterations || r->iteration == 1)) {
        nst_progress p;
        double now = nst__now(), el = now - r->t0, per_it = el / r->iteration;
        memset(&p, 0, sizeof p);
        p.iteration = r->iteration;
        p.iterations = NST__MAX(r->iterations, r->iteration);
        p.scale = r->scale; p.scales = r->scales;
        p.total = r->last.total; p.content = r->last.content; p.style = r->last.style; p.tv = r->last.tv;
        p.seconds = now - r->t_call;
        /* later scales at this scale's time per pixel (they cost a little more per pixel when tiled) */
        p.eta_seconds = per_it * (p.iterations - r->iteration) + (r->work > 0 ? per_it * r->iterations / r->work * r->work_rest : 0);
        nst__planar_to_image(x, &r->view);
        p.image = &r->view;
        if (r->o->progress(&p, r->o->user)) {
            r->cancelled = 1;
            return nst__err(NST_ERR_CANCELLED, "cancelled at iteration %d", r->iteration);
        }
    }
    return NST_OK;
}

/* The objective for the optimisers. With Adam every evaluation is an iteration and is reported here; with
 * L-BFGS only the first is (iteration 1, the start), the others through nst__run_iter, once per accepted
 * step: a guard's or line search's extra evaluations are not iterations. */
static nst_status nst__run_fg(const float *x, float *grad, double *value, void *user) {
    nst__run *r = (nst__run *)user;
    nst_status st;
    if ((st = nst_objective_eval(r->obj, x, &r->last, grad)) != NST_OK) return st;
    *value = r->last.total;
    if (r->per_step && r->iteration > 0) return NST_OK;
    r->iteration++;
    return nst__run_report(r, x);
}
/* L-BFGS's on_iter: step `iteration` was accepted and its point evaluated last (the guard evaluates after
 * every step), so r->last holds its losses; with the start counted as 1 it is iteration + 1. */
static int nst__run_iter(int iteration, double value, const float *x, void *user) {
    nst__run *r = (nst__run *)user;
    (void)value;
    r->iteration = iteration + 1;
    return nst__run_report(r, x) != NST_OK;
}

/* Initial pixels for a pass: noise around the model's mean colour (jcjohnson: randn * 0.001 in the
 * network's input space), the content, or a given image. */
static nst_status nst__init_pixels(const nst_model *m, const nst_options *o, const nst_image *content,
                                   int w, int h, float *px) {
    size_t hw = (size_t)w * h, i;
    nst_status st;
    if (o->init == NST_INIT_CONTENT || o->init == NST_INIT_IMAGE) {
        const nst_image *src = o->init == NST_INIT_CONTENT ? content : o->init_image;
        nst_image tmp;
        if ((st = nst__require_rgb(src, "the init image")) != NST_OK) return st;
        if ((st = nst__resized(src, w, h, &tmp)) != NST_OK) return st;
        nst__image_to_planar(&tmp, px);
        nst_image_free(&tmp);
    } else {
        nst__rng r;
        int c;
        r.s = o->seed * 0x9E3779B97F4A7C15ull + 12345;
        for (c = 0; c < 3; c++) {
            int ic = m->conv.bgr ? 2 - c : c;   /* input channel that pixel channel c feeds */
            for (i = 0; i < hw; i++)
                px[(size_t)c * hw + i] = (float)(255.0 / m->conv.scale *
                                                 (m->conv.mean[ic] + m->conv.std[ic] * 0.001 * nst__rng_normal(&r)));
        }
    }
    return NST_OK;
}

static void nst__upsample_planar(const float *src, int sw, int sh, float *dst, int dw, int dh) {
    int c, y, x;
    for (c = 0; c < 3; c++)
        for (y = 0; y < dh; y++) {
            double fy = ((y + 0.5) * sh / dh) - 0.5;
            int y0 = (int)floor(fy);
            double ay = fy - y0;
            int ya = y0 < 0 ? 0 : y0, yb = y0 + 1 >= sh ? sh - 1 : y0 + 1;
            for (x = 0; x < dw; x++) {
                double fx = ((x + 0.5) * sw / dw) - 0.5;
                int x0 = (int)floor(fx);
                double ax = fx - x0;
                int xa = x0 < 0 ? 0 : x0, xb = x0 + 1 >= sw ? sw - 1 : x0 + 1;
                const float *p = src + (size_t)c * sw * sh;
                if (ya > sh - 1) ya = sh - 1;
                if (xa > sw - 1) xa = sw - 1;
                dst[(size_t)c * dw * dh + (size_t)y * dw + x] =
                    (float)((1 - ay) * ((1 - ax) * p[(size_t)ya * sw + xa] + ax * p[(size_t)ya * sw + xb]) +
                            ay * ((1 - ax) * p[(size_t)yb * sw + xa] + ax * p[(size_t)yb * sw + xb]));
            }
        }
}

NSTDEF nst_status nst_transfer(const nst_model *m, const nst_image *content, const nst_image *styles,
                               const float *blend, int nstyles, const nst_options *opt, nst_image *out) {
    nst_options def, o;
    nst_image c_rgb, *s_rgb = NULL, cur_c, *cur_s = NULL;
    float *px = NULL, *prev = NULL;
    int prev_w = 0, prev_h = 0, pass, passes, k;
    nst_status st = NST_OK;
    double curv = 0;   /* L-BFGS s'y/y'y, carried from one scale to the next */
    double t_call = nst__now();
    size_t need, limit;
    memset(&c_rgb, 0, sizeof c_rgb);
    memset(&cur_c, 0, sizeof cur_c);
    if (!out) return nst__err(NST_ERR_ARGUMENT, "transfer: NULL output");
    memset(out, 0, sizeof *out);
    if (!opt) { nst_options_init(&def); opt = &def; }
    o = *opt;
    if (!m || !content || !content->pixels) return nst__err(NST_ERR_ARGUMENT, "transfer: no model or content image");
    if (nstyles < 0 || nstyles > 8 || (nstyles > 0 && !styles))
        return nst__err(NST_ERR_ARGUMENT, "transfer: 0 to 8 style images");
    if (o.iterations < 1) return nst__err(NST_ERR_ARGUMENT, "transfer: iterations must be >= 1");
    if (o.scale_iterations) {
        if (o.nscale_iterations < 1) return nst__err(NST_ERR_ARGUMENT, "transfer: no per-scale iteration counts");
        for (k = 0; k < o.nscale_iterations; k++)
            if (o.scale_iterations[k] < 1) return nst__err(NST_ERR_ARGUMENT, "transfer: iterations must be >= 1");
    }
    if (o.image_size < 0 || o.image_size > 16384) return nst__err(NST_ERR_ARGUMENT, "transfer: image size %d", o.image_size);
    if (!(o.style_scale > 0)) return nst__err(NST_ERR_ARGUMENT, "transfer: style scale must be > 0");
    if (o.scales < 1) o.scales = 1;
    if (o.scales > 6) return nst__err(NST_ERR_ARGUMENT, "transfer: at most 6 scales");
    if (o.init == NST_INIT_DEFAULT) o.init = NST_INIT_RANDOM;
    if (o.optimizer == NST_OPT_DEFAULT) o.optimizer = NST_OPT_LBFGS;
    if (o.init == NST_INIT_IMAGE && !o.init_image) return nst__err(NST_ERR_ARGUMENT, "transfer: init image missing");
    if (o.colors == NST_COLORS_DEFAULT) o.colors = NST_COLORS_STYLE;
    if ((st = nst_transfer_plan(m, content, styles, nstyles, &o)) != NST_OK) return st;
    need = nst_transfer_memory(m, content, styles, nstyles, &o);
    limit = o.memory_limit ? o.memory_limit : nst__available_memory();
    if (limit && need > limit)
        return nst__err(NST_ERR_NOMEM, "transfer needs about %lu MB but only %lu MB are available: use a smaller "
                        "--size, a shorter L-BFGS history, or Adam", (unsigned long)(need >> 20),
                        (unsigned long)(limit >> 20));
    if ((st = nst_image_to_rgb(content, &c_rgb)) != NST_OK) goto done;
    s_rgb = (nst_image *)nst__calloc((size_t)(nstyles ? nstyles : 1), sizeof *s_rgb);
    cur_s = (nst_image *)nst__calloc((size_t)(nstyles ? nstyles : 1), sizeof *cur_s);
    if (!s_rgb || !cur_s) { st = nst__err(NST_ERR_NOMEM, "transfer: out of memory"); goto done; }
    for (k = 0; k < nstyles; k++) {
        if ((st = nst_image_to_rgb(&styles[k], &s_rgb[k])) != NST_OK) goto done;
        if (o.colors == NST_COLORS_HISTOGRAM) {
            /* Gatys 2017: give the style the content's colour statistics before the transfer */
            nst_image matched;
            if ((st = nst_image_match_colors(&s_rgb[k], &c_rgb, &matched)) != NST_OK) goto done;
            nst_image_free(&s_rgb[k]);
            s_rgb[k] = matched;
        }
    }
    passes = o.scales;
    for (pass = 0; pass < passes; pass++) {
        nst__pass_sizes ps;
        nst__run run;
        size_t n;
        nst__pass_sizes_for(&o, &c_rgb, s_rgb, nstyles, pass, passes, &ps);
        n = (size_t)3 * ps.w * ps.h;
        if ((st = nst__resized(&c_rgb, ps.w, ps.h, &cur_c)) != NST_OK) goto done;
        for (k = 0; k < nstyles; k++)
            if ((st = nst__resized(&s_rgb[k], ps.sw[k], ps.sh[k], &cur_s[k])) != NST_OK) goto done;
        memset(&run, 0, sizeof run);
        if ((st = nst_objective_create(m, &cur_c, cur_s, blend, nstyles, &o, &run.obj)) != NST_OK) goto done;
        px = (float *)nst__aligned_alloc(n * sizeof(float));
        if (!px || (st = nst_image_alloc(&run.view, ps.w, ps.h, 3)) != NST_OK) {
            if (st == NST_OK) st = nst__err(NST_ERR_NOMEM, "transfer: out of memory");
            nst_objective_free(run.obj);
            goto done;
        }
        if (prev) nst__upsample_planar(prev, prev_w, prev_h, px, ps.w, ps.h);
        else if ((st = nst__init_pixels(m, &o, &cur_c, ps.w, ps.h, px)) != NST_OK) {
            nst_objective_free(run.obj); nst_image_free(&run.view);
            goto done;
        }
        run.o = &o;
        run.iterations = nst__pass_iterations(&o, pass);
        run.scale = pass + 1; run.scales = passes;
        run.t0 = nst__now();
        run.t_call = t_call;
        run.work = (double)ps.w * ps.h * run.iterations;
        {
            int q;
            for (q = pass + 1; q < passes; q++) {
                nst__pass_sizes qs;
                nst__pass_sizes_for(&o, &c_rgb, s_rgb, nstyles, q, passes, &qs);
                run.work_rest += (double)qs.w * qs.h * nst__pass_iterations(&o, q);
            }
        }
        if (o.optimizer == NST_OPT_ADAM) {
            nst_adam_options ao;
            nst_adam_options_init(&ao);
            ao.max_iter = run.iterations;
            ao.learning_rate = o.learning_rate > 0 ? o.learning_rate : 10.0;
            st = nst_adam(px, n, nst__run_fg, &run, &ao, NULL);
        } else {
            nst_lbfgs_options lo;
            nst_lbfgs_options_init(&lo);
            /* guarded, every step is evaluated: iterations - 1 steps make `iterations` evaluations, the
             * count jcjohnson reports */
            lo.max_iter = run.iterations - 1;
            lo.max_eval = run.iterations + 30;
            lo.history = o.lbfgs_history > 0 ? o.lbfgs_history : 100;
            lo.learning_rate = o.learning_rate > 0 ? o.learning_rate : 1.0;
            lo.tol_fun = -1; lo.tol_x = -1;   /* as jcjohnson: run all iterations */
            lo.line_search = o.lbfgs_line_search;
            lo.relative_curvature = 1;   /* see nst_lbfgs_options: small-loss models stall without it */
            lo.history_bf16 = o.lbfgs_history_bf16;
            lo.guard = 1;   /* torch's unguarded fixed step can throw a run away on badly scaled losses */
            lo.threads = run.obj->nthreads;   /* the optimiser's vector ops use the objective's count */
            /* torch's first step moves the pixels by ~1/n grey levels on average, which from 512 px on is
             * below float rounding (measured: iterations 1-3 of a 512 px scale after 256 px printed the
             * same loss). From an image (content, init image) at least 1% of its standard deviation
             * (~0.5 grey levels for a photo), a probe that measures a usable curvature (tiled and untiled
             * 1024 px runs then print the same losses; with 1e-4 they differed by 6% at iteration 3). From
             * noise only 1e-4: larger probes measured a curvature that stalled the run (1 grey level:
             * 9965 at iteration 100 at 512 px, 318 before; 1% of the noise's spread: 10090 at iteration
             * 50), 1e-4 did not (496 at iteration 50, 547 with torch's). Later
             * scales start from the curvature the previous one measured, unscaled: 8 iterations at
             * 512 px after 20 at 256 px reach 302.3 vs 315.8 with torch's start (scaling it by the pixel
             * ratio overshot: 475 at iteration 2) */
            {
                double sum = 0, sq = 0, mean;
                size_t i;
                for (i = 0; i < n; i++) sum += px[i];
                mean = sum / (double)n;
                for (i = 0; i < n; i++) sq += (px[i] - mean) * (px[i] - mean);
                lo.first_step = o.init == NST_INIT_RANDOM ? 1e-4 : NST__MAX(1e-4, 0.01 * sqrt(sq / (double)n));
            }
            lo.curvature = &curv;
            lo.on_iter = nst__run_iter;
            lo.user = &run;
            run.per_step = 1;
            st = nst_lbfgs(px, n, nst__run_fg, &run, &lo, NULL, NULL);
        }
        nst_objective_free(run.obj);
        nst_image_free(&run.view);
        nst__free(prev);
        prev = NULL;
        if (st != NST_OK && st != NST_ERR_CANCELLED) goto done;
        /* keep the result (also when cancelled: it is the last good image) */
        prev = (float *)nst__malloc(n * sizeof(float));
        if (!prev) { st = nst__err(NST_ERR_NOMEM, "transfer: out of memory"); goto done; }
        memcpy(prev, px, n * sizeof(float));
        prev_w = ps.w; prev_h = ps.h;
        nst__aligned_free(px);
        px = NULL;
        nst_image_free(&cur_c);
        for (k = 0; k < nstyles; k++) nst_image_free(&cur_s[k]);
        if (st == NST_ERR_CANCELLED) break;
    }
    {
        nst_status st2 = nst_image_alloc(out, prev_w, prev_h, 3);
        if (st2 != NST_OK) { st = st2; goto done; }
        nst__planar_to_image(prev, out);
        if (o.colors == NST_COLORS_LUMINANCE) {
            nst_image cc, kept;
            nst_status st3 = nst__resized(&c_rgb, prev_w, prev_h, &cc);
            if (st3 == NST_OK) st3 = nst_image_luminance_transfer(out, &cc, &kept);
            nst_image_free(&cc);
            if (st3 != NST_OK) { nst_image_free(out); st = st3; goto done; }
            nst_image_free(out);
            *out = kept;
        }
    }
done:
    nst__aligned_free(px);
    nst__free(prev);
    nst_image_free(&c_rgb);
    nst_image_free(&cur_c);
    for (k = 0; s_rgb && k < nstyles; k++) nst_image_free(&s_rgb[k]);
    for (k = 0; cur_s && k < nstyles; k++) nst_image_free(&cur_s[k]);
    nst__free(s_rgb);
    nst__free(cur_s);
    return st;
}

/* =====================================================================================================
 * >>image  PNG, JPEG, PPM codecs, zlib, resampling, colour
 * ===================================================================================================*/
/* Images: limits and allocation, zlib (inflate and deflate), pixel operations (alpha, resampling, colour),
 * and the PNG and PPM/PGM/PAM codecs with the load/save dispatch.
 *
 * Contract used by other sections (keep it stable):
 *   nst_image_alloc / nst_image_free / nst_image_to_rgb / nst_image_resize   always compiled
 *   nst__image_check_size(w, h, channels)   NST_ERR_LIMIT (with message) above this thread's limits
 *   nst__inflate(in, n, zlib_wrapper, max_out, &out, &out_n)   zlib (wrapper=1, Adler-32 checked) or raw
 *       deflate (0, zip members); output above max_out -> NST_ERR_LIMIT; always compiled (weight importers)
 *   nst__deflate(in, n, zlib_wrapper, level, &buf)   appends a zlib stream or raw deflate data to buf;
 *       level 0 stores, 1..9 as zlib's; always compiled (PNG, .npz writing)
 *   nst__adler32(adler, p, n)   running Adler-32 (start with 1)
 *   nst__jpeg_decode(data, n, &img) / nst__jpeg_encode(img, quality, chroma420, &buf)  in the >>jpeg section,
 *       declared here, compiled unless NST_NO_IMAGE_IO; img has 1 or 3 channels when encoding.
 *
 * Everything that parses bytes treats them as hostile: sizes are checked against the limits before
 * anything is allocated, every read is bounds-checked, and every loop is bounded by the input or the
 * output size, so a malformed file ends in an error message, never in a crash or a hang. */
#ifndef NST_NO_IMAGE_IO
static nst_status nst__jpeg_decode(const unsigned char *data, size_t n, nst_image *out);
static nst_status nst__jpeg_encode(const nst_image *img, int quality, int chroma420, nst__buf *out);
#endif

/* ---- limits and allocation -------------------------------------------------------------------------*/
static NST__TLS nst_image_limits nst__limits;
NSTDEF void nst_image_set_limits(const nst_image_limits *l) {
    if (l) nst__limits = *l; else memset(&nst__limits, 0, sizeof nst__limits);
}
static NST__UNUSED size_t nst__limit_bytes(void) {
    return nst__limits.max_bytes ? nst__limits.max_bytes : (size_t)4 << 30;
}
static NST__UNUSED nst_status nst__image_check_size(int w, int h, int channels) {
    size_t mw = nst__limits.max_width ? (size_t)nst__limits.max_width : 65535;
    size_t mh = nst__limits.max_height ? (size_t)nst__limits.max_height : 65535;
    size_t mp = nst__limits.max_pixels ? nst__limits.max_pixels : ((size_t)1 << 28);
    size_t mb = nst__limit_bytes();
    size_t px, bytes;
    if (w <= 0 || h <= 0 || channels <= 0 || channels > 4)
        return nst__err(NST_ERR_FORMAT, "image: invalid size %dx%d with %d channels", w, h, channels);
    if ((size_t)w > mw || (size_t)h > mh)
        return nst__err(NST_ERR_LIMIT, "image: %dx%d exceeds the limit of %lux%lu", w, h, (unsigned long)mw,
                        (unsigned long)mh);
    if (!nst__mul_ok((size_t)w, (size_t)h, &px) || px > mp)
        return nst__err(NST_ERR_LIMIT, "image: %dx%d exceeds the limit of %lu pixels", w, h, (unsigned long)mp);
    if (!nst__mul_ok(px, (size_t)channels * sizeof(float), &bytes) || bytes > mb)
        return nst__err(NST_ERR_LIMIT, "image: %dx%d needs more than the limit of %lu bytes", w, h,
                        (unsigned long)mb);
    return NST_OK;
}

NSTDEF nst_status nst_image_alloc(nst_image *img, int width, int height, int channels) {
    size_t n;
    nst_status st;
    img->width = img->height = img->channels = 0;
    img->pixels = NULL;
    if ((st = nst__image_check_size(width, height, channels)) != NST_OK) return st;
    n = (size_t)width * (size_t)height * (size_t)channels;
    img->pixels = (float *)nst__calloc(n, sizeof(float));
    if (!img->pixels) return nst__err(NST_ERR_NOMEM, "image: out of memory for %dx%d", width, height);
    img->width = width; img->height = height; img->channels = channels;
    return NST_OK;
}
/* nst_image_alloc without zeroing, for producers that write every sample (decoders, resize, colour):
 * the memset of a 12-megapixel float image costs as much as decoding it. */
static NST__UNUSED nst_status nst__image_alloc_raw(nst_image *img, int width, int height, int channels) {
    nst_status st;
    img->width = img->height = img->channels = 0;
    img->pixels = NULL;
    if ((st = nst__image_check_size(width, height, channels)) != NST_OK) return st;
    img->pixels = (float *)nst__malloc((size_t)width * (size_t)height * (size_t)channels * sizeof(float));
    if (!img->pixels) return nst__err(NST_ERR_NOMEM, "image: out of memory for %dx%d", width, height);
    img->width = width; img->height = height; img->channels = channels;
    return NST_OK;
}
NSTDEF void nst_image_free(nst_image *img) {
    if (!img) return;
    nst__free(img->pixels);
    img->pixels = NULL;
    img->width = img->height = img->channels = 0;
}

/* A caller's image is usable when it has a buffer, a positive size and 1..4 channels. */
static NST__UNUSED nst_status nst__image_valid(const nst_image *img, const char *what) {
    if (!img || !img->pixels || img->width <= 0 || img->height <= 0 || img->channels < 1 || img->channels > 4)
        return nst__err(NST_ERR_ARGUMENT, "%s: not a valid image (null, empty or bad channel count)", what);
    return NST_OK;
}

/* Prefixes this thread's error message ("png", a file name, ...) and returns st. */
static NST__UNUSED nst_status nst__err_prefix(nst_status st, const char *prefix) {
    char msg[sizeof nst__errbuf];
    size_t l = strlen(nst__errbuf);
    memcpy(msg, nst__errbuf, l + 1);
    return nst__err(st, "%s: %s", prefix, msg);
}

/* =====================================================================================================
 * zlib: RFC 1950 wrapper, RFC 1951 deflate
 * ===================================================================================================*/
static NST__UNUSED uint32_t nst__adler32(uint32_t adler, const unsigned char *p, size_t n) {
    uint32_t a = adler & 0xFFFF, b = adler >> 16;
    while (n) {   /* 5552 is the most bytes before b can overflow 32 bits (zlib's NMAX) */
        size_t k = n < 5552 ? n : 5552;
        n -= k;
        while (k >= 4) { a += p[0]; b += a; a += p[1]; b += a; a += p[2]; b += a; a += p[3]; b += a; p += 4; k -= 4; }
        while (k--) { a += *p++; b += a; }
        a %= 65521; b %= 65521;
    }
    return (b << 16) | a;
}

static const uint16_t nst__len_base[29] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51,
                                           59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const unsigned char nst__len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3,
                                                 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t nst__dist_base[30] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385,
                                            513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385,
                                            24577};
static const unsigned char nst__dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8,
                                                  9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
/* Order in which a dynamic block sends the code-length code's lengths. */
static const unsigned char nst__clen_order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

/* ---- inflate ---------------------------------------------------------------------------------------
 * Canonical Huffman decoding: codes up to NST__HFAST bits resolve with one table lookup on the low bits
 * of the bit buffer (deflate sends codes MSB-first into an LSB-first stream, so the table is indexed by
 * the bit-reversed code); the rare longer codes walk the per-length counts. */
#define NST__HFAST 10
typedef struct nst__huff {
    uint16_t fast[1 << NST__HFAST];   /* (length << 9) | symbol; 0 = longer than NST__HFAST bits */
    uint16_t count[16];               /* number of codes of each length */
    uint16_t symbol[288];             /* symbols ordered by code */
} nst__huff;

/* Returns 0 when the lengths over-subscribe the code space. Incomplete codes are accepted (a single
 * distance code is legal); a bit pattern that maps to no symbol fails when it is decoded. */
static int nst__huff_build(nst__huff *h, const unsigned char *lens, int n) {
    int offs[16], len, i, left = 1;
    unsigned next[16], code = 0;
    memset(h->count, 0, sizeof h->count);
    memset(h->fast, 0, sizeof h->fast);
    for (i = 0; i < n; i++) h->count[lens[i]]++;
    h->count[0] = 0;
    for (len = 1; len <= 15; len++) {
        left = (left << 1) - h->count[len];
        if (left < 0) return 0;
    }
    offs[1] = 0;
    for (len = 1; len < 15; len++) offs[len + 1] = offs[len] + h->count[len];
    for (i = 0; i < n; i++)
        if (lens[i]) h->symbol[offs[lens[i]]++] = (uint16_t)i;
    for (len = 1; len <= 15; len++) {
        code = (code + h->count[len - 1]) << 1;
        next[len] = code;
    }
    for (i = 0; i < n; i++) {
        int l = lens[i];
        unsigned c, rev = 0, j;
        int k;
        if (!l || l > NST__HFAST) continue;
        c = next[l]++;
        for (k = 0; k < l; k++) rev |= ((c >> k) & 1u) << (l - 1 - k);
        for (j = rev; j < (1u << NST__HFAST); j += 1u << l) h->fast[j] = (uint16_t)((l << 9) | i);
    }
    return 1;
}

typedef struct nst__inflate_state {
    const unsigned char *p, *end;
    uint64_t bits;
    int nbits;
    size_t pad;                 /* zero bytes fed past the end of the input */
    unsigned char *out;
    size_t len, cap, max;
    int fixed;                  /* out is the caller's buffer: never reallocated */
} nst__inflate_state;

/* Keeps at least 57 bits buffered: enough for a literal/length code, its extra bits, a distance code and
 * its extra bits. Past the end of the input it feeds zeros and counts them, so the decoder never reads
 * out of bounds; consuming a fed zero means the stream was truncated (nst__inf_overrun). */
static void nst__inf_refill(nst__inflate_state *s) {
    if (s->end - s->p >= 8) {
        /* fast path: one 8-byte load; the byte only partly taken lands again, at the same position, next
         * time, so the bits above nbits always hold the stream's true next bits */
        s->bits |= nst__rd64le(s->p) << s->nbits;
        s->p += (63 - s->nbits) >> 3;
        s->nbits |= 56;
        return;
    }
    while (s->nbits <= 56) {
        uint64_t b = 0;
        if (s->p < s->end) b = *s->p++; else s->pad++;
        s->bits |= b << s->nbits;
        s->nbits += 8;
    }
}
static int nst__inf_overrun(const nst__inflate_state *s) { return s->pad * 8 > (size_t)s->nbits; }
static unsigned nst__inf_bits(nst__inflate_state *s, int n) {
    unsigned v = (unsigned)(s->bits & ((1u << n) - 1));
    s->bits >>= n;
    s->nbits -= n;
    return v;
}
static int nst__inf_decode(nst__inflate_state *s, const nst__huff *h) {
    unsigned e = h->fast[s->bits & ((1u << NST__HFAST) - 1)];
    int code = 0, first = 0, index = 0, len;
    uint64_t b = s->bits;
    if (e) {
        s->bits >>= e >> 9;
        s->nbits -= (int)(e >> 9);
        return (int)(e & 511);
    }
    for (len = 1; len <= 15; len++) {
        int count = h->count[len];
        code |= (int)(b & 1);
        b >>= 1;
        if (code - first < count) {
            s->bits >>= len;
            s->nbits -= len;
            return h->symbol[index + code - first];
        }
        index += count;
        first = (first + count) << 1;
        code <<= 1;
    }
    return -1;
}
static nst_status nst__inf_reserve(nst__inflate_state *s, size_t extra) {
    size_t need = s->len + extra, cap;
    unsigned char *p;
    if (need <= s->cap) return NST_OK;
    if (need > s->max || need < s->len)
        return nst__err(NST_ERR_LIMIT, "inflate: output exceeds the limit of %lu bytes", (unsigned long)s->max);
    if (s->fixed) return nst__err(NST_ERR_LIMIT, "inflate: output exceeds %lu bytes", (unsigned long)s->cap);
    cap = s->cap < 4096 ? 4096 : s->cap;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > s->max) cap = s->max;
    p = (unsigned char *)nst__realloc(s->out, cap);
    if (!p) return nst__err(NST_ERR_NOMEM, "inflate: out of memory for %lu bytes", (unsigned long)cap);
    s->out = p;
    s->cap = cap;
    return NST_OK;
}
/* Hands the whole bytes still in the bit buffer back to the byte pointer (stored blocks, the Adler-32
 * trailer). Returns 0 if the buffer holds fed zeros that were already consumed. */
static int nst__inf_align(nst__inflate_state *s) {
    size_t whole;
    s->bits >>= s->nbits & 7;
    s->nbits -= s->nbits & 7;
    whole = (size_t)s->nbits / 8;
    if (whole < s->pad) return 0;
    s->p -= whole - s->pad;
    s->pad = 0;
    s->bits = 0;
    s->nbits = 0;
    return 1;
}

static nst_status nst__inf_dynamic(nst__inflate_state *s, nst__huff *lit, nst__huff *dist) {
    unsigned char lens[320], cl[19];
    int hlit, hdist, hclen, i, n;
    nst__huff *clh = dist;   /* the distance table is free until the lengths are read */
    nst__inf_refill(s);
    hlit = (int)nst__inf_bits(s, 5) + 257;
    hdist = (int)nst__inf_bits(s, 5) + 1;
    hclen = (int)nst__inf_bits(s, 4) + 4;
    if (hlit > 286 || hdist > 30)
        return nst__err(NST_ERR_FORMAT, "inflate: bad dynamic block header (%d literal, %d distance codes)", hlit,
                        hdist);
    memset(cl, 0, sizeof cl);
    for (i = 0; i < hclen; i++) {
        nst__inf_refill(s);
        cl[nst__clen_order[i]] = (unsigned char)nst__inf_bits(s, 3);
    }
    if (!nst__huff_build(clh, cl, 19)) return nst__err(NST_ERR_FORMAT, "inflate: bad code-length code");
    n = 0;
    while (n < hlit + hdist) {
        int sym, rep = 0, val = 0;
        nst__inf_refill(s);
        sym = nst__inf_decode(s, clh);
        if (sym < 0) return nst__err(NST_ERR_FORMAT, "inflate: invalid code-length code");
        if (sym < 16) { lens[n++] = (unsigned char)sym; continue; }
        if (sym == 16) {
            if (!n) return nst__err(NST_ERR_FORMAT, "inflate: length repeat with no previous length");
            val = lens[n - 1];
            rep = 3 + (int)nst__inf_bits(s, 2);
        } else if (sym == 17) rep = 3 + (int)nst__inf_bits(s, 3);
        else rep = 11 + (int)nst__inf_bits(s, 7);
        if (n + rep > hlit + hdist) return nst__err(NST_ERR_FORMAT, "inflate: code lengths overflow the block header");
        while (rep--) lens[n++] = (unsigned char)val;
    }
    if (nst__inf_overrun(s)) return nst__err(NST_ERR_FORMAT, "inflate: truncated stream (in a block header)");
    if (!lens[256]) return nst__err(NST_ERR_FORMAT, "inflate: dynamic block without an end-of-block code");
    if (!nst__huff_build(lit, lens, hlit)) return nst__err(NST_ERR_FORMAT, "inflate: over-subscribed literal code");
    if (!nst__huff_build(dist, lens + hlit, hdist))
        return nst__err(NST_ERR_FORMAT, "inflate: over-subscribed distance code");
    return NST_OK;
}

static nst_status nst__inf_codes(nst__inflate_state *s, const nst__huff *lit, const nst__huff *dist) {
    nst_status st;
    for (;;) {
        int sym;
        nst__inf_refill(s);
        sym = nst__inf_decode(s, lit);
        if (sym < 256) {
            if (sym < 0) return nst__err(NST_ERR_FORMAT, "inflate: invalid literal/length code");
            if (s->len >= s->cap && (st = nst__inf_reserve(s, 1)) != NST_OK) return st;
            s->out[s->len++] = (unsigned char)sym;
        } else if (sym == 256) {
            if (nst__inf_overrun(s)) return nst__err(NST_ERR_FORMAT, "inflate: truncated stream");
            return NST_OK;
        } else {
            int len, ds, d;
            sym -= 257;
            if (sym >= 29) return nst__err(NST_ERR_FORMAT, "inflate: invalid length code %d", sym + 257);
            len = nst__len_base[sym] + (int)nst__inf_bits(s, nst__len_extra[sym]);
            ds = nst__inf_decode(s, dist);
            if (ds < 0 || ds >= 30) return nst__err(NST_ERR_FORMAT, "inflate: invalid distance code");
            d = nst__dist_base[ds] + (int)nst__inf_bits(s, nst__dist_extra[ds]);
            if (nst__inf_overrun(s)) return nst__err(NST_ERR_FORMAT, "inflate: truncated stream");
            if ((size_t)d > s->len)
                return nst__err(NST_ERR_FORMAT, "inflate: distance %d reaches before the start of the output", d);
            if (s->cap - s->len < (size_t)len && (st = nst__inf_reserve(s, (size_t)len)) != NST_OK) return st;
            {
                unsigned char *dst = s->out + s->len;
                const unsigned char *src = dst - d;
                if (d >= len) memcpy(dst, src, (size_t)len);
                else if (d == 1) memset(dst, *src, (size_t)len);
                else { int k; for (k = 0; k < len; k++) dst[k] = src[k]; }
                s->len += (size_t)len;
            }
        }
        if (nst__inf_overrun(s)) return nst__err(NST_ERR_FORMAT, "inflate: truncated stream");
    }
}

/* The full decoder. With buf != NULL the output goes into the caller's buffer of cap bytes (never
 * reallocated: more output is NST_ERR_LIMIT); otherwise into a growing allocation capped at max_out. */
static nst_status nst__inflate_ex(const unsigned char *in, size_t n, int zlib_wrapper, int check_adler,
                                  unsigned char *buf, size_t cap, size_t max_out, unsigned char **out,
                                  size_t *out_n) {
    nst__inflate_state s;
    nst__huff *tabs;
    nst_status st = NST_OK;
    int final = 0;
    *out = NULL;
    *out_n = 0;
    memset(&s, 0, sizeof s);
    s.p = in;
    s.end = in + n;
    s.out = buf;
    s.cap = buf ? cap : 0;
    s.max = buf ? cap : max_out;
    s.fixed = buf != NULL;
    if (zlib_wrapper) {
        if (n < 2) return nst__err(NST_ERR_FORMAT, "zlib: stream too short (%lu bytes)", (unsigned long)n);
        if ((in[0] & 15) != 8 || (in[0] >> 4) > 7 || ((unsigned)in[0] * 256 + in[1]) % 31)
            return nst__err(NST_ERR_FORMAT, "zlib: bad header %02x %02x", in[0], in[1]);
        if (in[1] & 0x20) return nst__err(NST_ERR_UNSUPPORTED, "zlib: preset dictionaries are not supported");
        s.p += 2;
    }
    tabs = (nst__huff *)nst__malloc(2 * sizeof(nst__huff));
    if (!tabs) return nst__err(NST_ERR_NOMEM, "inflate: out of memory");
    while (!final && st == NST_OK) {
        unsigned type;
        nst__inf_refill(&s);
        final = (int)nst__inf_bits(&s, 1);
        type = nst__inf_bits(&s, 2);
        if (nst__inf_overrun(&s)) { st = nst__err(NST_ERR_FORMAT, "inflate: truncated stream (no final block)"); break; }
        if (type == 0) {
            size_t len, nlen;
            if (!nst__inf_align(&s) || s.end - s.p < 4) { st = nst__err(NST_ERR_FORMAT, "inflate: truncated stored block"); break; }
            len = (size_t)s.p[0] | ((size_t)s.p[1] << 8);
            nlen = (size_t)s.p[2] | ((size_t)s.p[3] << 8);
            s.p += 4;
            if (len != (~nlen & 0xFFFF)) { st = nst__err(NST_ERR_FORMAT, "inflate: stored block length check failed"); break; }
            if ((size_t)(s.end - s.p) < len) { st = nst__err(NST_ERR_FORMAT, "inflate: truncated stored block"); break; }
            if ((st = nst__inf_reserve(&s, len)) != NST_OK) break;
            if (len) memcpy(s.out + s.len, s.p, len);
            s.len += len;
            s.p += len;
        } else if (type == 1) {
            unsigned char lens[318];
            int i;
            for (i = 0; i < 144; i++) lens[i] = 8;
            for (; i < 256; i++) lens[i] = 9;
            for (; i < 280; i++) lens[i] = 7;
            for (; i < 288; i++) lens[i] = 8;
            for (; i < 318; i++) lens[i] = 5;
            nst__huff_build(&tabs[0], lens, 288);
            nst__huff_build(&tabs[1], lens + 288, 30);
            st = nst__inf_codes(&s, &tabs[0], &tabs[1]);
        } else if (type == 2) {
            if ((st = nst__inf_dynamic(&s, &tabs[0], &tabs[1])) == NST_OK) st = nst__inf_codes(&s, &tabs[0], &tabs[1]);
        } else {
            st = nst__err(NST_ERR_FORMAT, "inflate: invalid block type 3");
        }
    }
    nst__free(tabs);
    if (st == NST_OK && zlib_wrapper) {
        if (!nst__inf_align(&s) || s.end - s.p < 4)
            st = nst__err(NST_ERR_FORMAT, "zlib: truncated stream (missing Adler-32)");
        else if (check_adler && nst__rd32be(s.p) != nst__adler32(1, s.out, s.len))
            st = nst__err(NST_ERR_FORMAT, "zlib: Adler-32 mismatch (data corrupted)");
    }
    if (st != NST_OK) {
        if (!buf) nst__free(s.out);
        return st;
    }
    *out = s.out;
    *out_n = s.len;
    return NST_OK;
}

static NST__UNUSED nst_status nst__inflate(const unsigned char *in, size_t n, int zlib_wrapper, size_t max_out,
                                           unsigned char **out, size_t *out_n) {
    return nst__inflate_ex(in, n, zlib_wrapper, 1, NULL, 0, max_out, out, out_n);
}

/* ---- deflate ---------------------------------------------------------------------------------------
 * LZ77 over the whole input with hash chains (32 KiB window) and zlib-style lazy matching. The chains
 * hash 4 bytes, not 3: on filtered photo rows (many small residuals) 3-byte chains grow long and mostly
 * hold useless candidates; 4-byte chains made level 6 ~1.7x faster and ~2% smaller on a noisy 12 MP
 * photo (length-3 matches are rarely worth their bits anyway). Each block of NST__DEF_BLOCK symbols is
 * written as the cheapest of dynamic Huffman, fixed Huffman and stored. Code lengths come from a true
 * Huffman tree, limited to 15 (7 for the code-length code) by the count-shifting method of JPEG
 * Annex K.3. */
#define NST__WSIZE 32768
#define NST__HBITS 15
#define NST__DEF_BLOCK 16384

typedef struct nst__bitw {
    nst__buf *b;
    uint64_t acc;
    int n;
} nst__bitw;
static void nst__bw_put(nst__bitw *w, uint32_t v, int n) {
    w->acc |= (uint64_t)v << w->n;
    w->n += n;
    if (w->n >= 32) {
        unsigned char t[4];
        nst__wr32le(t, (uint32_t)w->acc);
        nst__buf_put(w->b, t, 4);
        w->acc >>= 32;
        w->n -= 32;
    }
}
static void nst__bw_flush(nst__bitw *w) {   /* pads to a byte boundary */
    while (w->n > 0) {
        nst__buf_byte(w->b, (int)(w->acc & 0xFF));
        w->acc >>= 8;
        w->n -= 8;
    }
    w->acc = 0;
    w->n = 0;
}

static int nst__u64_cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}
/* Huffman code lengths for freq[0..n-1] (n <= 288), none longer than maxlen. Unused symbols get 0; a
 * lone used symbol gets length 1. */
static void nst__huff_lengths(const uint32_t *freq, int n, int maxlen, unsigned char *len) {
    uint64_t key[288];
    uint32_t nf[288];
    int parent[576], depth[576], bl[600];
    int m = 0, i, j, k, l, maxd = 0;
    memset(len, 0, (size_t)n);
    for (i = 0; i < n; i++)
        if (freq[i]) key[m++] = ((uint64_t)freq[i] << 16) | (uint64_t)i;
    if (m == 0) return;
    if (m == 1) { len[key[0] & 0xFFFF] = 1; return; }
    qsort(key, (size_t)m, sizeof key[0], nst__u64_cmp);
    /* two-queue construction: leaves 0..m-1 ascending, internal nodes m.. created in ascending weight */
    i = 0; j = 0;
    for (k = 0; k < m - 1; k++) {
        uint32_t f[2];
        int t;
        for (t = 0; t < 2; t++) {
            if (i < m && (j >= k || (uint32_t)(key[i] >> 16) <= nf[j])) { f[t] = (uint32_t)(key[i] >> 16); parent[i++] = m + k; }
            else { f[t] = nf[j]; parent[m + j++] = m + k; }
        }
        nf[k] = f[0] + f[1];
    }
    depth[2 * m - 2] = 0;
    for (k = 2 * m - 3; k >= 0; k--) depth[k] = depth[parent[k]] + 1;
    memset(bl, 0, sizeof bl);
    for (i = 0; i < m; i++) { bl[depth[i]]++; if (depth[i] > maxd) maxd = depth[i]; }
    for (l = maxd; l > maxlen; l--) {
        while (bl[l] > 0) {   /* move a pair from depth l up, split a shorter leaf to make room */
            j = l - 2;
            while (bl[j] == 0) j--;
            bl[l] -= 2;
            bl[l - 1]++;
            bl[j + 1] += 2;
            bl[j]--;
        }
    }
    /* most frequent symbols get the shortest codes */
    l = 1;
    for (i = m - 1; i >= 0; i--) {
        while (bl[l] == 0) l++;
        len[key[i] & 0xFFFF] = (unsigned char)l;
        bl[l]--;
    }
}
/* Canonical codes for lengths, bit-reversed for the LSB-first stream. */
static void nst__huff_codes(const unsigned char *len, int n, uint16_t *code) {
    int count[16] = {0}, i, l;
    unsigned next[16], c = 0;
    for (i = 0; i < n; i++) count[len[i]]++;
    count[0] = 0;
    for (l = 1; l <= 15; l++) { c = (c + (unsigned)count[l - 1]) << 1; next[l] = c; }
    for (i = 0; i < n; i++) {
        unsigned v, r = 0;
        int k;
        if (!len[i]) { code[i] = 0; continue; }
        v = next[len[i]]++;
        for (k = 0; k < len[i]; k++) r |= ((v >> k) & 1u) << (len[i] - 1 - k);
        code[i] = (uint16_t)r;
    }
}

static int nst__ilog2(unsigned x) { int l = 0; while ((x >> l) > 1) l++; return l; }
/* Length 3..258 -> code 257..285 with extra bits; distance 1..32768 -> code 0..29. */
static int nst__len_code(int len, int *ebits, int *eval) {
    int x = len - 3, l;
    if (len == 258) { *ebits = 0; *eval = 0; return 285; }
    if (x < 8) { *ebits = 0; *eval = 0; return 257 + x; }
    l = nst__ilog2((unsigned)x);
    *ebits = l - 2;
    *eval = x & ((1 << (l - 2)) - 1);
    return 257 + 4 * (l - 1) + ((x >> (l - 2)) & 3);
}
static int nst__dist_code(int d, int *ebits, int *eval) {
    int x = d - 1, l, c;
    if (x < 4) { *ebits = 0; *eval = 0; return x; }
    l = nst__ilog2((unsigned)x);
    c = 2 * l + ((x >> (l - 1)) & 1);
    *ebits = l - 1;
    *eval = x - ((2 + ((x >> (l - 1)) & 1)) << (l - 1));
    return c;
}

typedef struct nst__deflate_ctx {
    const unsigned char *in;
    size_t n;
    int good, lazy, nice, chain, level, hbits;
    uint32_t *head, *prev;      /* low 32 bits of position + 1 (0 = none): per hash, and per window slot */
    uint16_t *ll, *dist;        /* the block's symbols: literal byte or match length, distance (0 = literal) */
    size_t nsym, block_start, emitted;
    nst__bitw bw;
} nst__deflate_ctx;

static void nst__def_stored(nst__deflate_ctx *c, size_t start, size_t end, int final) {
    do {
        size_t len = end - start > 65535 ? 65535 : end - start;
        unsigned char hdr[4];
        int last = final && start + len == end;
        nst__bw_put(&c->bw, (uint32_t)last, 3);   /* BFINAL, BTYPE 00 */
        nst__bw_flush(&c->bw);
        hdr[0] = (unsigned char)len; hdr[1] = (unsigned char)(len >> 8);
        hdr[2] = (unsigned char)~len; hdr[3] = (unsigned char)(~len >> 8);
        nst__buf_put(c->bw.b, hdr, 4);
        nst__buf_put(c->bw.b, c->in + start, len);
        start += len;
    } while (start < end);
}

/* Writes the pending symbols as one block, choosing the cheapest encoding. */
static void nst__def_block(nst__deflate_ctx *c, int final) {
    uint32_t lf[286], df[30], cf[19];
    unsigned char ll_len[286], d_len[30], c_len[19], fl_len[288], fd_len[30], rle[320], rle_x[320];
    uint16_t ll_code[286], d_code[30], c_code[19], fl_code[288], fd_code[30];
    unsigned char all[316];
    int hlit, hdist, hclen, nrle = 0, i, eb, ev;
    size_t k, dyn_bits, fix_bits, raw = c->emitted - c->block_start, stored_bits;
    const unsigned char *L, *D;
    const uint16_t *LC, *DC;
    memset(lf, 0, sizeof lf); memset(df, 0, sizeof df); memset(cf, 0, sizeof cf);
    for (k = 0; k < c->nsym; k++) {
        if (!c->dist[k]) lf[c->ll[k]]++;
        else { lf[nst__len_code(c->ll[k], &eb, &ev)]++; df[nst__dist_code(c->dist[k], &eb, &ev)]++; }
    }
    lf[256] = 1;
    nst__huff_lengths(lf, 286, 15, ll_len);
    nst__huff_lengths(df, 30, 15, d_len);
    /* decoders accept one distance code, but some reject a literal code with a single symbol: the block
     * always has 256 plus something, except for an empty block, which gets a second length-1 code */
    {
        int used = 0;
        for (i = 0; i < 286; i++) used += ll_len[i] != 0;
        if (used == 1) ll_len[0] = 1;
    }
    for (hlit = 286; hlit > 257 && !ll_len[hlit - 1]; hlit--) {}
    for (hdist = 30; hdist > 1 && !d_len[hdist - 1]; hdist--) {}
    memcpy(all, ll_len, (size_t)hlit);
    memcpy(all + hlit, d_len, (size_t)hdist);
    for (i = 0; i < hlit + hdist;) {   /* run-length code the lengths with 16 (repeat), 17/18 (zeros) */
        int cur = all[i], run = 1;
        while (i + run < hlit + hdist && all[i + run] == cur) run++;
        if (cur == 0 && run >= 3) {
            int r = run > 138 ? 138 : run;
            if (r >= 11) { rle[nrle] = 18; rle_x[nrle++] = (unsigned char)(r - 11); }
            else { rle[nrle] = 17; rle_x[nrle++] = (unsigned char)(r - 3); }
            i += r;
        } else if (cur != 0 && run >= 4) {
            int r = run - 1 > 6 ? 6 : run - 1;
            rle[nrle] = (unsigned char)cur; rle_x[nrle++] = 0;
            rle[nrle] = 16; rle_x[nrle++] = (unsigned char)(r - 3);
            i += 1 + r;
        } else {
            rle[nrle] = (unsigned char)cur; rle_x[nrle++] = 0;
            i++;
        }
    }
    for (i = 0; i < nrle; i++) cf[rle[i]]++;
    nst__huff_lengths(cf, 19, 7, c_len);
    for (hclen = 19; hclen > 4 && !c_len[nst__clen_order[hclen - 1]]; hclen--) {}
    /* costs in bits */
    dyn_bits = 3 + 14 + 3 * (size_t)hclen;
    for (i = 0; i < nrle; i++) dyn_bits += c_len[rle[i]] + (rle[i] == 16 ? 2 : rle[i] == 17 ? 3 : rle[i] == 18 ? 7 : 0);
    for (i = 0; i < 288; i++) fl_len[i] = (unsigned char)(i < 144 ? 8 : i < 256 ? 9 : i < 280 ? 7 : 8);
    for (i = 0; i < 30; i++) fd_len[i] = 5;
    fix_bits = 3;
    for (i = 0; i < 286; i++) {
        size_t e = i >= 257 ? nst__len_extra[i - 257] : 0;
        dyn_bits += (size_t)lf[i] * (ll_len[i] + e);
        fix_bits += (size_t)lf[i] * (fl_len[i] + e);
    }
    for (i = 0; i < 30; i++) {
        dyn_bits += (size_t)df[i] * (d_len[i] + nst__dist_extra[i]);
        fix_bits += (size_t)df[i] * (5 + nst__dist_extra[i]);
    }
    stored_bits = (raw / 65535 + 1) * 40 + 8 + raw * 8;
    if (stored_bits <= dyn_bits && stored_bits <= fix_bits) {
        nst__def_stored(c, c->block_start, c->emitted, final);
    } else {
        int dyn = dyn_bits < fix_bits;
        if (dyn) {
            nst__huff_codes(ll_len, 286, ll_code);
            nst__huff_codes(d_len, 30, d_code);
            nst__huff_codes(c_len, 19, c_code);
            nst__bw_put(&c->bw, (uint32_t)(final | 4), 3);
            nst__bw_put(&c->bw, (uint32_t)(hlit - 257), 5);
            nst__bw_put(&c->bw, (uint32_t)(hdist - 1), 5);
            nst__bw_put(&c->bw, (uint32_t)(hclen - 4), 4);
            for (i = 0; i < hclen; i++) nst__bw_put(&c->bw, c_len[nst__clen_order[i]], 3);
            for (i = 0; i < nrle; i++) {
                nst__bw_put(&c->bw, c_code[rle[i]], c_len[rle[i]]);
                if (rle[i] >= 16) nst__bw_put(&c->bw, rle_x[i], rle[i] == 16 ? 2 : rle[i] == 17 ? 3 : 7);
            }
            L = ll_len; D = d_len; LC = ll_code; DC = d_code;
        } else {
            nst__huff_codes(fl_len, 288, fl_code);
            nst__huff_codes(fd_len, 30, fd_code);
            nst__bw_put(&c->bw, (uint32_t)(final | 2), 3);
            L = fl_len; D = fd_len; LC = fl_code; DC = fd_code;
        }
        for (k = 0; k < c->nsym; k++) {
            if (!c->dist[k]) {
                nst__bw_put(&c->bw, LC[c->ll[k]], L[c->ll[k]]);
            } else {
                int lc = nst__len_code(c->ll[k], &eb, &ev), dc;
                nst__bw_put(&c->bw, LC[lc], L[lc]);
                if (eb) nst__bw_put(&c->bw, (uint32_t)ev, eb);
                dc = nst__dist_code(c->dist[k], &eb, &ev);
                nst__bw_put(&c->bw, DC[dc], D[dc]);
                if (eb) nst__bw_put(&c->bw, (uint32_t)ev, eb);
            }
        }
        nst__bw_put(&c->bw, LC[256], L[256]);
    }
    c->nsym = 0;
    c->block_start = c->emitted;
}

static void nst__def_sym(nst__deflate_ctx *c, int ll, int dist) {
    c->ll[c->nsym] = (uint16_t)ll;
    c->dist[c->nsym++] = (uint16_t)dist;
    c->emitted += dist ? (size_t)ll : 1;
    if (c->nsym == NST__DEF_BLOCK) nst__def_block(c, 0);
}
static void nst__def_insert(nst__deflate_ctx *c, size_t i) {
    uint32_t v, h;
    if (i + 4 > c->n) return;
    v = (uint32_t)c->in[i] | ((uint32_t)c->in[i + 1] << 8) | ((uint32_t)c->in[i + 2] << 16) | ((uint32_t)c->in[i + 3] << 24);
    h = (v * 2654435761u) >> (32 - c->hbits);
    c->prev[i & (NST__WSIZE - 1)] = c->head[h];
    c->head[h] = (uint32_t)(i + 1);
}
static int nst__match_len(const unsigned char *a, const unsigned char *b, int maxlen) {
    int l = 0;
    while (l + 8 <= maxlen) {
        uint64_t x, y;
        memcpy(&x, a + l, 8);
        memcpy(&y, b + l, 8);
        if (x != y) break;
        l += 8;
    }
    while (l < maxlen && a[l] == b[l]) l++;
    return l;
}
/* Longest match for position i (already inserted) longer than prev_len; 0 if none.
 * Positions are stored as 32-bit (i + 1) to halve the tables' cache footprint; a candidate's distance is
 * the wrapped difference, and the chain must move strictly further back within the window. Every
 * candidate is verified byte by byte, so even a stale entry on a > 4 GiB input can only cost time. */
static int nst__def_find(nst__deflate_ctx *c, size_t i, int prev_len, int *dist) {
    const unsigned char *cur = c->in + i;
    uint32_t cand = c->prev[i & (NST__WSIZE - 1)], now = (uint32_t)(i + 1), d = 0;
    int chain = c->chain, best = prev_len < 2 ? 2 : prev_len, found = 0;
    int maxlen = c->n - i < 258 ? (int)(c->n - i) : 258, nice = c->nice < maxlen ? c->nice : maxlen;
    if (best >= maxlen) return 0;
    if (prev_len >= c->good) chain >>= 2;
    while (cand && chain-- > 0) {
        uint32_t nd = now - cand;
        const unsigned char *m;
        if (nd <= d || nd > NST__WSIZE || nd > i) break;   /* not further back, or out of the window */
        d = nd;
        m = cur - d;
        if (m[best] == cur[best] && m[0] == cur[0] && m[1] == cur[1]) {
            int l = nst__match_len(m, cur, maxlen);
            if (l > best) {
                best = l;
                found = 1;
                *dist = (int)d;
                if (l >= nice) break;
            }
        }
        cand = c->prev[(i - d) & (NST__WSIZE - 1)];
    }
    return found ? best : 0;
}

/* Appends the deflate stream of in[0..n) (zlib_wrapper: with the RFC 1950 header and Adler-32) to out.
 * level 0 stores; 1..9 trade speed for size like zlib's levels. */
static NST__UNUSED nst_status nst__deflate(const unsigned char *in, size_t n, int zlib_wrapper, int level,
                                           nst__buf *out) {
    /* good, lazy, nice, chain: zlib's published tuning per level (levels 1-3 match greedily) */
    static const int cfg[10][4] = {{0, 0, 0, 0},       {4, 0, 8, 4},       {4, 0, 16, 8},
                                   {4, 0, 32, 32},     {4, 4, 16, 16},     {8, 16, 32, 32},
                                   {8, 16, 128, 128},  {8, 32, 128, 256},  {32, 128, 258, 1024},
                                   {32, 258, 258, 4096}};
    nst__deflate_ctx c;
    size_t start_len = out->len;
    if (level < 0 || level > 9) level = 6;
    memset(&c, 0, sizeof c);
    c.in = in; c.n = n; c.level = level;
    c.good = cfg[level][0]; c.lazy = cfg[level][1]; c.nice = cfg[level][2]; c.chain = cfg[level][3];
    c.bw.b = out;
    if (zlib_wrapper) {
        int flevel = level < 2 ? 0 : level < 6 ? 1 : level == 6 ? 2 : 3, flg = flevel << 6;
        flg += 31 - (0x78 * 256 + flg) % 31;
        nst__buf_byte(out, 0x78);
        nst__buf_byte(out, flg);
    }
    if (level == 0 || n == 0) {
        if (n == 0) { nst__bw_put(&c.bw, 3, 3); nst__bw_put(&c.bw, 0, 7); nst__bw_flush(&c.bw); }   /* fixed: EOB */
        else nst__def_stored(&c, 0, n, 1);
    } else {
        size_t i = 0;
        int have_prev = 0, plen = 0, pdist = 0;
        /* small inputs get small tables: the hash needs no more buckets than positions, and the chain
         * slots are indexed by position, so n of them suffice below the window size */
        c.hbits = 8;
        while (c.hbits < NST__HBITS && ((size_t)1 << c.hbits) < n) c.hbits++;
        c.head = (uint32_t *)nst__calloc((size_t)1 << c.hbits, sizeof(uint32_t));
        c.prev = (uint32_t *)nst__calloc(n < NST__WSIZE ? n : NST__WSIZE, sizeof(uint32_t));
        c.ll = (uint16_t *)nst__malloc(NST__DEF_BLOCK * sizeof(uint16_t));
        c.dist = (uint16_t *)nst__malloc(NST__DEF_BLOCK * sizeof(uint16_t));
        if (!c.head || !c.prev || !c.ll || !c.dist) {
            nst__free(c.head); nst__free(c.prev); nst__free(c.ll); nst__free(c.dist);
            out->len = start_len;
            return nst__err(NST_ERR_NOMEM, "deflate: out of memory");
        }
        while (i < n) {
            int clen = 0, cdist = 0;
            nst__def_insert(&c, i);
            if (!c.lazy) {   /* greedy */
                clen = nst__def_find(&c, i, 2, &cdist);
                if (clen == 3 && cdist > 4096) clen = 0;
                if (clen >= 3) {
                    size_t k;
                    nst__def_sym(&c, clen, cdist);
                    for (k = i + 1; k < i + (size_t)clen; k++) nst__def_insert(&c, k);
                    i += (size_t)clen;
                } else {
                    nst__def_sym(&c, in[i], 0);
                    i++;
                }
                continue;
            }
            if (!have_prev || plen < c.lazy) clen = nst__def_find(&c, i, have_prev ? plen : 2, &cdist);
            if (clen == 3 && cdist > 4096) clen = 0;   /* a far 3-byte match costs more than literals */
            if (have_prev && plen >= 3 && clen <= plen) {
                size_t k, end = i - 1 + (size_t)plen;
                nst__def_sym(&c, plen, pdist);
                for (k = i + 1; k < end; k++) nst__def_insert(&c, k);
                i = end;
                have_prev = 0;
            } else {
                if (have_prev) nst__def_sym(&c, in[i - 1], 0);
                have_prev = 1;
                plen = clen;
                pdist = cdist;
                i++;
            }
        }
        if (have_prev) nst__def_sym(&c, in[n - 1], 0);
        nst__def_block(&c, 1);
        nst__bw_flush(&c.bw);
        nst__free(c.head); nst__free(c.prev); nst__free(c.ll); nst__free(c.dist);
    }
    if (zlib_wrapper) {
        uint32_t a = nst__adler32(1, in, n);
        nst__buf_byte(out, (int)(a >> 24));
        nst__buf_byte(out, (int)(a >> 16));
        nst__buf_byte(out, (int)(a >> 8));
        nst__buf_byte(out, (int)a);
    }
    if (out->failed) return nst__err(NST_ERR_NOMEM, "deflate: out of memory for the output");
    return NST_OK;
}

/* =====================================================================================================
 * pixel operations: alpha, resampling, colour (always compiled: the transfer needs them)
 * ===================================================================================================*/
static NST__UNUSED float nst__clamp01(float v) { return v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f; }   /* NaN -> 0 */

NSTDEF nst_status nst_image_to_rgb(const nst_image *in, nst_image *out) {
    nst_status st;
    size_t i, n;
    const float *s;
    float *d;
    if ((st = nst__image_valid(in, "to_rgb")) != NST_OK) return st;
    if ((st = nst__image_alloc_raw(out, in->width, in->height, 3)) != NST_OK) return st;
    n = (size_t)in->width * (size_t)in->height;
    s = in->pixels;
    d = out->pixels;
    switch (in->channels) {
    case 1: for (i = 0; i < n; i++) d[3 * i] = d[3 * i + 1] = d[3 * i + 2] = s[i]; break;
    case 2:
        for (i = 0; i < n; i++) {
            float a = nst__clamp01(s[2 * i + 1]);
            d[3 * i] = d[3 * i + 1] = d[3 * i + 2] = s[2 * i] * a + (1.0f - a);
        }
        break;
    case 3: memcpy(d, s, n * 3 * sizeof(float)); break;
    default:
        for (i = 0; i < n; i++) {
            float a = nst__clamp01(s[4 * i + 3]);
            d[3 * i] = s[4 * i] * a + (1.0f - a);
            d[3 * i + 1] = s[4 * i + 1] * a + (1.0f - a);
            d[3 * i + 2] = s[4 * i + 2] * a + (1.0f - a);
        }
    }
    return NST_OK;
}

/* ---- resampling ------------------------------------------------------------------------------------
 * Separable: a horizontal pass into a float buffer, then a vertical one. For each output sample the
 * filter is centred on its position in input coordinates; when downscaling it is stretched by the
 * ratio, so it integrates over every input pixel the output pixel covers (that is what removes the
 * aliasing). Taps outside the image are dropped and the rest renormalised to sum 1, so a constant
 * image stays constant up to rounding. */
static double nst__sinc(double x) {
    if (x == 0.0) return 1.0;
    x *= 3.14159265358979323846;
    return sin(x) / x;
}
static double nst__filter_eval(nst_resize_filter f, double x) {
    x = fabs(x);
    switch (f) {
    case NST_FILTER_BOX: return x < 0.5 ? 1.0 : x == 0.5 ? 0.5 : 0.0;
    case NST_FILTER_TRIANGLE: return x < 1.0 ? 1.0 - x : 0.0;
    case NST_FILTER_MITCHELL: {   /* B = C = 1/3 */
        const double B = 1.0 / 3, C = 1.0 / 3;
        if (x < 1.0) return ((12 - 9 * B - 6 * C) * x * x * x + (-18 + 12 * B + 6 * C) * x * x + (6 - 2 * B)) / 6;
        if (x < 2.0) return ((-B - 6 * C) * x * x * x + (6 * B + 30 * C) * x * x + (-12 * B - 48 * C) * x + (8 * B + 24 * C)) / 6;
        return 0.0;
    }
    case NST_FILTER_LANCZOS3: return x < 3.0 ? nst__sinc(x) * nst__sinc(x / 3.0) : 0.0;
    default: {                    /* Catmull-Rom, a = -0.5 */
        const double a = -0.5;
        if (x < 1.0) return ((a + 2) * x - (a + 3)) * x * x + 1;
        if (x < 2.0) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
        return 0.0;
    }
    }
}
static double nst__filter_support(nst_resize_filter f) {
    return f == NST_FILTER_BOX ? 0.5 : f == NST_FILTER_TRIANGLE ? 1.0 : f == NST_FILTER_LANCZOS3 ? 3.0 : 2.0;
}

typedef struct nst__taps {
    int *start, *count;   /* first input index and tap count per output sample */
    float *w;             /* [out][maxtaps] */
    int maxtaps;
} nst__taps;
static void nst__taps_free(nst__taps *t) { nst__free(t->start); nst__free(t->count); nst__free(t->w); }
static nst_status nst__taps_make(nst__taps *t, int in, int out, nst_resize_filter f) {
    double scale = (double)out / in, fs = scale < 1.0 ? 1.0 / scale : 1.0, support = nst__filter_support(f) * fs;
    int i;
    memset(t, 0, sizeof *t);
    t->maxtaps = (int)ceil(support) * 2 + 2;
    if (t->maxtaps > in + 2) t->maxtaps = in + 2;
    t->start = (int *)nst__malloc((size_t)out * sizeof(int));
    t->count = (int *)nst__malloc((size_t)out * sizeof(int));
    t->w = (float *)nst__malloc((size_t)out * (size_t)t->maxtaps * sizeof(float));
    if (!t->start || !t->count || !t->w) { nst__taps_free(t); return nst__err(NST_ERR_NOMEM, "resize: out of memory"); }
    for (i = 0; i < out; i++) {
        double center = (i + 0.5) / scale, sum = 0.0;
        int lo = (int)floor(center - support), hi = (int)ceil(center + support), j, k = 0;
        float *w = t->w + (size_t)i * t->maxtaps;
        if (lo < 0) lo = 0;
        if (hi > in - 1) hi = in - 1;
        if (hi - lo + 1 > t->maxtaps) hi = lo + t->maxtaps - 1;
        for (j = lo; j <= hi; j++) {
            double v;
            if (f == NST_FILTER_BOX && fs > 1.0) {   /* exact area coverage of input pixel j */
                double a = center - 0.5 * fs > j ? center - 0.5 * fs : j, b = center + 0.5 * fs < j + 1 ? center + 0.5 * fs : j + 1;
                v = b > a ? b - a : 0.0;
            } else {
                v = nst__filter_eval(f, (j + 0.5 - center) / fs);
            }
            w[k++] = (float)v;
            sum += v;
        }
        if (sum == 0.0) {   /* box filter on an exact half-way point: take the nearest pixel */
            int nearest = (int)floor(center);
            if (nearest > in - 1) nearest = in - 1;
            lo = nearest; k = 1; w[0] = 1.0f;
        } else {
            for (j = 0; j < k; j++) w[j] = (float)(w[j] / sum);
        }
        /* trim zero taps at both ends so the inner loops do less work */
        while (k > 1 && w[k - 1] == 0.0f) k--;
        while (k > 1 && w[0] == 0.0f) { memmove(w, w + 1, (size_t)(k - 1) * sizeof(float)); lo++; k--; }
        t->start[i] = lo;
        t->count[i] = k;
    }
    return NST_OK;
}

static float nst__srgb_to_linear(float v) {
    return v <= 0.04045f ? v * (1.0f / 12.92f) : (float)pow((v + 0.055) / 1.055, 2.4);
}
static float nst__linear_to_srgb(float v) {
    if (!(v > 0.0f)) return 0.0f;
    return v <= 0.0031308f ? v * 12.92f : (float)(1.055 * pow(v, 1.0 / 2.4) - 0.055);
}

NSTDEF nst_status nst_image_resize_ex(const nst_image *in, int w, int h, const nst_resize_options *o,
                                      nst_image *out) {
    nst_resize_options opt;
    nst__taps tx, ty;
    nst_status st;
    float *src = NULL, *tmp = NULL;
    int c, alpha, nt, y;
    size_t npx;
    memset(&opt, 0, sizeof opt);
    if (o) opt = *o;
    if (opt.filter == NST_FILTER_DEFAULT || (int)opt.filter > (int)NST_FILTER_LANCZOS3) opt.filter = NST_FILTER_CUBIC;
    if ((st = nst__image_valid(in, "resize")) != NST_OK) return st;
    if (w <= 0 || h <= 0) return nst__err(NST_ERR_ARGUMENT, "resize: invalid target size %dx%d", w, h);
    c = in->channels;
    alpha = c == 2 || c == 4;
    if ((st = nst__image_alloc_raw(out, w, h, c)) != NST_OK) return st;
    npx = (size_t)in->width * (size_t)in->height;
    /* premultiplied (and optionally linear) working copy; the plain input is used when neither applies */
    if (alpha || opt.linear_light) {
        size_t i;
        int k;
        src = (float *)nst__malloc(npx * (size_t)c * sizeof(float));
        if (!src) { nst_image_free(out); return nst__err(NST_ERR_NOMEM, "resize: out of memory"); }
        for (i = 0; i < npx; i++) {
            const float *p = in->pixels + i * (size_t)c;
            float a = alpha ? nst__clamp01(p[c - 1]) : 1.0f;
            for (k = 0; k < c - alpha; k++) src[i * (size_t)c + (size_t)k] = (opt.linear_light ? nst__srgb_to_linear(nst__clamp01(p[k])) : p[k]) * a;
            if (alpha) src[i * (size_t)c + (size_t)c - 1] = a;
        }
    }
    if ((st = nst__taps_make(&tx, in->width, w, opt.filter)) != NST_OK) { nst__free(src); nst_image_free(out); return st; }
    if ((st = nst__taps_make(&ty, in->height, h, opt.filter)) != NST_OK) {
        nst__taps_free(&tx); nst__free(src); nst_image_free(out); return st;
    }
    tmp = (float *)nst__malloc((size_t)in->height * (size_t)w * (size_t)c * sizeof(float));
    if (!tmp) {
        nst__taps_free(&tx); nst__taps_free(&ty); nst__free(src); nst_image_free(out);
        return nst__err(NST_ERR_NOMEM, "resize: out of memory");
    }
    {
        const float *s = src ? src : in->pixels;
        int ih = in->height, iw = in->width;
        nt = nst__resolve_threads(0);
        (void)nt;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static)
#endif
        for (y = 0; y < ih; y++) {   /* horizontal */
            const float *row = s + (size_t)y * iw * c;
            float *dst = tmp + (size_t)y * w * c;
            int x, k, j;
            for (x = 0; x < w; x++) {
                const float *wt = tx.w + (size_t)x * tx.maxtaps;
                const float *p = row + (size_t)tx.start[x] * c;
                for (k = 0; k < c; k++) {
                    float acc = 0.0f;
                    for (j = 0; j < tx.count[x]; j++) acc += wt[j] * p[(size_t)j * c + k];
                    dst[(size_t)x * c + k] = acc;
                }
            }
        }
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static)
#endif
        for (y = 0; y < h; y++) {   /* vertical, then un-premultiply, back to sRGB, clamp */
            float *dst = out->pixels + (size_t)y * w * c;
            const float *wt = ty.w + (size_t)y * ty.maxtaps;
            int x, j, k, rowlen = w * c;
            for (x = 0; x < rowlen; x++) dst[x] = 0.0f;
            for (j = 0; j < ty.count[y]; j++) {
                const float *p = tmp + (size_t)(ty.start[y] + j) * rowlen;
                float wj = wt[j];
                for (x = 0; x < rowlen; x++) dst[x] += wj * p[x];
            }
            for (x = 0; x < w; x++) {
                float *q = dst + (size_t)x * c;
                float a = alpha ? nst__clamp01(q[c - 1]) : 1.0f, inv = a > 0.0f ? 1.0f / a : 0.0f;
                for (k = 0; k < c - alpha; k++) {
                    float v = alpha ? q[k] * inv : q[k];
                    q[k] = nst__clamp01(opt.linear_light ? nst__linear_to_srgb(v) : v);
                }
                if (alpha) q[c - 1] = a;
            }
        }
    }
    nst__free(tmp);
    nst__free(src);
    nst__taps_free(&tx);
    nst__taps_free(&ty);
    return NST_OK;
}
NSTDEF nst_status nst_image_resize(const nst_image *in, int w, int h, nst_image *out) {
    return nst_image_resize_ex(in, w, h, NULL, out);
}

/* ---- colour ----------------------------------------------------------------------------------------*/
/* NTSC YIQ (FCC 1953 coefficients); the inverse is computed from the forward matrix so the round trip is
 * exact to float precision. */
static const double nst__yiq[3][3] = {{0.299, 0.587, 0.114},
                                      {0.595716, -0.274453, -0.321263},
                                      {0.211456, -0.522591, 0.311135}};
static int nst__inv3(double m[3][3], double r[3][3]) {
    double det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
                 m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    int i, j;
    if (fabs(det) < 1e-300) return 0;
    for (i = 0; i < 3; i++)
        for (j = 0; j < 3; j++) {
            int a = (j + 1) % 3, b = (j + 2) % 3, c = (i + 1) % 3, d = (i + 2) % 3;
            r[i][j] = (m[a][c] * m[b][d] - m[a][d] * m[b][c]) / det;   /* cofactor transpose */
        }
    return 1;
}
/* Makes an RGB view of img: the image itself when it has 3 channels, else a converted copy in tmp. */
static nst_status nst__as_rgb(const nst_image *img, nst_image *tmp, const nst_image **rgb) {
    nst_status st;
    tmp->pixels = NULL;
    if (img->channels == 3) { *rgb = img; return NST_OK; }
    if ((st = nst_image_to_rgb(img, tmp)) != NST_OK) return st;
    *rgb = tmp;
    return NST_OK;
}

NSTDEF nst_status nst_image_luminance_transfer(const nst_image *src_luma, const nst_image *colors, nst_image *out) {
    nst_image ta, tb;
    const nst_image *a, *b;
    nst_status st;
    double inv[3][3], fwd[3][3];
    size_t i, n;
    if ((st = nst__image_valid(src_luma, "luminance_transfer")) != NST_OK ||
        (st = nst__image_valid(colors, "luminance_transfer")) != NST_OK)
        return st;
    if (src_luma->width != colors->width || src_luma->height != colors->height)
        return nst__err(NST_ERR_ARGUMENT, "luminance_transfer: sizes differ (%dx%d vs %dx%d)", src_luma->width,
                        src_luma->height, colors->width, colors->height);
    if ((st = nst__as_rgb(src_luma, &ta, &a)) != NST_OK) return st;
    if ((st = nst__as_rgb(colors, &tb, &b)) != NST_OK) { nst_image_free(&ta); return st; }
    if ((st = nst__image_alloc_raw(out, a->width, a->height, 3)) != NST_OK) { nst_image_free(&ta); nst_image_free(&tb); return st; }
    memcpy(fwd, nst__yiq, sizeof fwd);
    nst__inv3(fwd, inv);
    n = (size_t)a->width * (size_t)a->height;
    for (i = 0; i < n; i++) {
        const float *p = a->pixels + 3 * i, *q = b->pixels + 3 * i;
        double Y = nst__yiq[0][0] * p[0] + nst__yiq[0][1] * p[1] + nst__yiq[0][2] * p[2];
        double I = nst__yiq[1][0] * q[0] + nst__yiq[1][1] * q[1] + nst__yiq[1][2] * q[2];
        double Q = nst__yiq[2][0] * q[0] + nst__yiq[2][1] * q[1] + nst__yiq[2][2] * q[2];
        int k;
        for (k = 0; k < 3; k++) out->pixels[3 * i + k] = nst__clamp01((float)(inv[k][0] * Y + inv[k][1] * I + inv[k][2] * Q));
    }
    nst_image_free(&ta);
    nst_image_free(&tb);
    return NST_OK;
}

/* Eigen-decomposition of a symmetric 3x3 matrix by cyclic Jacobi rotations: a = v diag(e) v^T. */
static void nst__eig3(double a_in[3][3], double e[3], double v[3][3]) {
    double a[3][3];
    int i, j, k, sweep;
    memcpy(a, a_in, sizeof a);
    for (i = 0; i < 3; i++) for (j = 0; j < 3; j++) v[i][j] = i == j;
    for (sweep = 0; sweep < 50; sweep++) {
        double off = fabs(a[0][1]) + fabs(a[0][2]) + fabs(a[1][2]);
        if (off < 1e-300) break;
        for (i = 0; i < 2; i++)
            for (j = i + 1; j < 3; j++) {
                double th, t, c, s;
                if (fabs(a[i][j]) < 1e-300) continue;
                th = (a[j][j] - a[i][i]) / (2 * a[i][j]);
                t = (th >= 0 ? 1.0 : -1.0) / (fabs(th) + sqrt(th * th + 1));
                c = 1 / sqrt(t * t + 1);
                s = t * c;
                for (k = 0; k < 3; k++) {   /* a = J^T a J, columns then rows */
                    double x = a[k][i], y = a[k][j];
                    a[k][i] = c * x - s * y;
                    a[k][j] = s * x + c * y;
                }
                for (k = 0; k < 3; k++) {
                    double x = a[i][k], y = a[j][k];
                    a[i][k] = c * x - s * y;
                    a[j][k] = s * x + c * y;
                }
                for (k = 0; k < 3; k++) {
                    double x = v[k][i], y = v[k][j];
                    v[k][i] = c * x - s * y;
                    v[k][j] = s * x + c * y;
                }
            }
    }
    for (i = 0; i < 3; i++) e[i] = a[i][i];
}
/* r = v diag(f(e)) v^T with f(e) = e^p (eigenvalues clamped at a small floor). */
static void nst__sym_pow(double m[3][3], double p, double r[3][3]) {
    double e[3], v[3][3];
    int i, j, k;
    nst__eig3(m, e, v);
    for (k = 0; k < 3; k++) e[k] = pow(e[k] > 1e-10 ? e[k] : 1e-10, p);
    for (i = 0; i < 3; i++)
        for (j = 0; j < 3; j++) {
            double s = 0;
            for (k = 0; k < 3; k++) s += v[i][k] * e[k] * v[j][k];
            r[i][j] = s;
        }
}
static void nst__chol3(double m[3][3], double l[3][3]) {
    int i, j, k;
    memset(l, 0, 9 * sizeof(double));
    for (j = 0; j < 3; j++) {
        double d = m[j][j];
        for (k = 0; k < j; k++) d -= l[j][k] * l[j][k];
        l[j][j] = sqrt(d > 1e-12 ? d : 1e-12);
        for (i = j + 1; i < 3; i++) {
            double s = m[i][j];
            for (k = 0; k < j; k++) s -= l[i][k] * l[j][k];
            l[i][j] = s / l[j][j];
        }
    }
}
/* Mean and covariance of RGB pixels, plus a tiny eps on the diagonal so flat images stay invertible. */
static void nst__rgb_stats(const nst_image *img, double mean[3], double cov[3][3]) {
    size_t i, n = (size_t)img->width * (size_t)img->height;
    int a, b;
    double s[3] = {0, 0, 0};
    for (i = 0; i < n; i++) for (a = 0; a < 3; a++) s[a] += img->pixels[3 * i + a];
    for (a = 0; a < 3; a++) mean[a] = s[a] / (double)n;
    memset(cov, 0, 9 * sizeof(double));
    for (i = 0; i < n; i++) {
        double d[3];
        for (a = 0; a < 3; a++) d[a] = img->pixels[3 * i + a] - mean[a];
        for (a = 0; a < 3; a++) for (b = a; b < 3; b++) cov[a][b] += d[a] * d[b];
    }
    for (a = 0; a < 3; a++) for (b = a; b < 3; b++) { cov[a][b] /= (double)n; cov[b][a] = cov[a][b]; }
    for (a = 0; a < 3; a++) cov[a][a] += 1e-7;
}

NSTDEF nst_status nst_image_match_colors_ex(const nst_image *img, const nst_image *target, nst_match_mode mode,
                                            nst_image *out) {
    nst_image ta, tb;
    const nst_image *a, *b;
    nst_status st;
    double ma[3], mb[3], ca[3][3], cb[3][3], A[3][3], x[3][3], y[3][3];
    size_t i, n;
    int r, c, k;
    if ((st = nst__image_valid(img, "match_colors")) != NST_OK ||
        (st = nst__image_valid(target, "match_colors")) != NST_OK)
        return st;
    if ((st = nst__as_rgb(img, &ta, &a)) != NST_OK) return st;
    if ((st = nst__as_rgb(target, &tb, &b)) != NST_OK) { nst_image_free(&ta); return st; }
    nst__rgb_stats(a, ma, ca);
    nst__rgb_stats(b, mb, cb);
    if (mode == NST_MATCH_CHOLESKY) {   /* A = Lb La^-1 */
        double la[3][3];
        nst__chol3(ca, la);
        nst__chol3(cb, x);
        if (!nst__inv3(la, y)) nst__sym_pow(ca, -0.5, y);
    } else {                            /* A = Cb^1/2 Ca^-1/2 */
        nst__sym_pow(cb, 0.5, x);
        nst__sym_pow(ca, -0.5, y);
    }
    for (r = 0; r < 3; r++)
        for (c = 0; c < 3; c++) {
            double s = 0;
            for (k = 0; k < 3; k++) s += x[r][k] * y[k][c];
            A[r][c] = s;
        }
    if ((st = nst__image_alloc_raw(out, a->width, a->height, 3)) != NST_OK) { nst_image_free(&ta); nst_image_free(&tb); return st; }
    n = (size_t)a->width * (size_t)a->height;
    for (i = 0; i < n; i++) {
        const float *p = a->pixels + 3 * i;
        double d[3];
        for (k = 0; k < 3; k++) d[k] = p[k] - ma[k];
        for (r = 0; r < 3; r++)
            out->pixels[3 * i + r] = nst__clamp01((float)(A[r][0] * d[0] + A[r][1] * d[1] + A[r][2] * d[2] + mb[r]));
    }
    nst_image_free(&ta);
    nst_image_free(&tb);
    return NST_OK;
}
NSTDEF nst_status nst_image_match_colors(const nst_image *img, const nst_image *target, nst_image *out) {
    return nst_image_match_colors_ex(img, target, NST_MATCH_PCA, out);
}

#ifndef NST_NO_IMAGE_IO
/* =====================================================================================================
 * PNG (ISO/IEC 15948)
 * ===================================================================================================*/
static const unsigned char nst__png_sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};

/* Adam7 pass geometry: start x, start y, step x, step y. Pass 0 alone stands for a plain image. */
static const unsigned char nst__adam7[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                               {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};

static int nst__paeth(int a, int b, int c) {
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}
/* Undoes one row's filter in place. prev is the previous unfiltered row of the pass (NULL for the first).
 * The first bpp bytes have no left neighbour, so they are done apart and the main loops stay branch-free. */
static int nst__png_unfilter(unsigned char *row, const unsigned char *prev, size_t len, int bpp, int type) {
    size_t i, b = (size_t)bpp < len ? (size_t)bpp : len;
    if (!prev && (type == 2 || type == 4)) type = type == 2 ? 0 : 1;   /* no row above: Up = None, Paeth = Sub */
    switch (type) {
    case 0: break;
    case 1: for (i = b; i < len; i++) row[i] = (unsigned char)(row[i] + row[i - b]); break;
    case 2: for (i = 0; i < len; i++) row[i] = (unsigned char)(row[i] + prev[i]); break;
    case 3:
        if (!prev) {
            for (i = b; i < len; i++) row[i] = (unsigned char)(row[i] + (row[i - b] >> 1));
            break;
        }
        for (i = 0; i < b; i++) row[i] = (unsigned char)(row[i] + (prev[i] >> 1));
        for (; i < len; i++) row[i] = (unsigned char)(row[i] + ((row[i - b] + prev[i]) >> 1));
        break;
    case 4:
        for (i = 0; i < b; i++) row[i] = (unsigned char)(row[i] + prev[i]);   /* Paeth(0, up, 0) = up */
        for (; i < len; i++) row[i] = (unsigned char)(row[i] + nst__paeth(row[i - b], prev[i], prev[i - b]));
        break;
    default: return 0;
    }
    return 1;
}

typedef struct nst__png_info {
    uint32_t w, h;
    int depth, ctype, interlace, channels;   /* channels in the file (palette = 1) */
    int out_ch;                               /* channels decoded: palette expanded, tRNS -> alpha */
    float pal[256][4];
    int npal, has_trns;
    unsigned trns[3];                         /* gray or RGB key, at the file's bit depth */
} nst__png_info;

static unsigned nst__png_sample(const unsigned char *row, size_t k, int depth) {
    switch (depth) {
    case 8: return row[k];
    case 16: return ((unsigned)row[2 * k] << 8) | row[2 * k + 1];
    default: {
        size_t bit = k * (size_t)depth;
        return (row[bit >> 3] >> (8 - depth - (int)(bit & 7))) & ((1u << depth) - 1);
    }
    }
}
/* Converts one unfiltered row of a pass to float pixels at out (step: floats between output pixels). */
static void nst__png_row(const nst__png_info *pi, const unsigned char *row, uint32_t n, float *out, size_t step,
                         const float *lut8) {
    uint32_t x;
    int c, fc = pi->channels, oc = pi->out_ch;
    float scale = 1.0f / (float)((1u << pi->depth) - 1);
    if (pi->ctype == 3) {
        for (x = 0; x < n; x++, out += step) {
            unsigned v = nst__png_sample(row, x, pi->depth);
            const float *p = pi->pal[v];   /* indices past the palette read black (zeroed entries) */
            for (c = 0; c < oc; c++) out[c] = p[c];
        }
        return;
    }
    if (pi->depth == 8 && !pi->has_trns) {
        for (x = 0; x < n; x++, out += step, row += fc)
            for (c = 0; c < fc; c++) out[c] = lut8[row[c]];
        return;
    }
    for (x = 0; x < n; x++, out += step) {
        unsigned v[4] = {0, 0, 0, 0};
        for (c = 0; c < fc; c++) {
            v[c] = nst__png_sample(row, (size_t)x * fc + c, pi->depth);
            out[c] = pi->depth == 16 ? (float)v[c] * (1.0f / 65535.0f) : pi->depth == 8 ? lut8[v[c]] : (float)v[c] * scale;
        }
        if (pi->has_trns) {   /* only gray and RGB carry a colour key */
            int key = v[0] == pi->trns[0] && (fc == 1 || (v[1] == pi->trns[1] && v[2] == pi->trns[2]));
            out[fc] = key ? 0.0f : 1.0f;
        }
    }
}

static nst_status nst__png_decode(const unsigned char *d, size_t n, int checks, nst_image *img) {
    nst__png_info pi;
    nst__buf idat;
    size_t pos = 8, raw_size = 0, got;
    unsigned char *raw = NULL, *dummy;
    int seen_ihdr = 0, seen_idat = 0, seen_iend = 0, pass, i;
    float lut8[256];
    nst_status st;
    memset(&pi, 0, sizeof pi);
    memset(&idat, 0, sizeof idat);
    if (n < 8 || memcmp(d, nst__png_sig, 8) != 0) return nst__err(NST_ERR_FORMAT, "png: missing signature");
    while (!seen_iend) {
        uint32_t len;
        const unsigned char *type, *data;
        char name[5];
        if (pos == n) break;   /* no IEND: tolerated when the image data is complete */
        if (n - pos < 12) { st = nst__err(NST_ERR_FORMAT, "png: truncated chunk header at offset %lu", (unsigned long)pos); goto fail; }
        len = nst__rd32be(d + pos);
        type = d + pos + 4;
        data = d + pos + 8;
        for (i = 0; i < 4; i++) {
            int ch = type[i];
            name[i] = (char)(((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')) ? ch : '?');
        }
        name[4] = 0;
        if (strchr(name, '?')) { st = nst__err(NST_ERR_FORMAT, "png: invalid chunk type at offset %lu", (unsigned long)pos); goto fail; }
        if (len > 0x7FFFFFFFu || len > n - pos - 12) {
            st = nst__err(NST_ERR_FORMAT, "png: chunk %s is truncated (length %lu, %lu bytes left)", name,
                          (unsigned long)len, (unsigned long)(n - pos - 12));
            goto fail;
        }
        if (checks && nst__crc32(0, type, (size_t)len + 4) != nst__rd32be(data + len)) {
            st = nst__err(NST_ERR_FORMAT, "png: CRC mismatch in chunk %s (file corrupted)", name);
            goto fail;
        }
        if (!seen_ihdr && memcmp(name, "IHDR", 4) != 0) { st = nst__err(NST_ERR_FORMAT, "png: first chunk is %s, not IHDR", name); goto fail; }
        if (!memcmp(name, "IHDR", 4)) {
            static const int chans[7] = {1, 0, 3, 1, 2, 0, 4};
            int ok;
            if (seen_ihdr) { st = nst__err(NST_ERR_FORMAT, "png: duplicate IHDR"); goto fail; }
            if (len != 13) { st = nst__err(NST_ERR_FORMAT, "png: IHDR has length %lu, not 13", (unsigned long)len); goto fail; }
            seen_ihdr = 1;
            pi.w = nst__rd32be(data);
            pi.h = nst__rd32be(data + 4);
            pi.depth = data[8];
            pi.ctype = data[9];
            pi.interlace = data[12];
            switch (pi.ctype) {
            case 0: ok = pi.depth == 1 || pi.depth == 2 || pi.depth == 4 || pi.depth == 8 || pi.depth == 16; break;
            case 3: ok = pi.depth == 1 || pi.depth == 2 || pi.depth == 4 || pi.depth == 8; break;
            case 2: case 4: case 6: ok = pi.depth == 8 || pi.depth == 16; break;
            default: ok = 0;
            }
            if (!ok) { st = nst__err(NST_ERR_FORMAT, "png: invalid colour type %d with bit depth %d", pi.ctype, pi.depth); goto fail; }
            if (data[10] != 0 || data[11] != 0) { st = nst__err(NST_ERR_FORMAT, "png: unknown compression or filter method"); goto fail; }
            if (pi.interlace > 1) { st = nst__err(NST_ERR_FORMAT, "png: unknown interlace method %d", pi.interlace); goto fail; }
            if (pi.w == 0 || pi.h == 0 || pi.w > 0x7FFFFFFFu || pi.h > 0x7FFFFFFFu) {
                st = nst__err(NST_ERR_FORMAT, "png: invalid size %lux%lu", (unsigned long)pi.w, (unsigned long)pi.h);
                goto fail;
            }
            pi.channels = chans[pi.ctype];
            if ((st = nst__image_check_size((int)pi.w, (int)pi.h, pi.ctype == 3 ? 3 : pi.channels)) != NST_OK) goto fail;
        } else if (!memcmp(name, "PLTE", 4)) {
            if (seen_idat) { st = nst__err(NST_ERR_FORMAT, "png: PLTE after IDAT"); goto fail; }
            if (len % 3 || len == 0 || len > 768) { st = nst__err(NST_ERR_FORMAT, "png: PLTE has invalid length %lu", (unsigned long)len); goto fail; }
            pi.npal = (int)(len / 3);
            for (i = 0; i < pi.npal; i++) {
                pi.pal[i][0] = data[3 * i] / 255.0f;
                pi.pal[i][1] = data[3 * i + 1] / 255.0f;
                pi.pal[i][2] = data[3 * i + 2] / 255.0f;
            }
        } else if (!memcmp(name, "tRNS", 4)) {
            if (seen_idat) { st = nst__err(NST_ERR_FORMAT, "png: tRNS after IDAT"); goto fail; }
            if (pi.ctype == 3) {
                if (!pi.npal) { st = nst__err(NST_ERR_FORMAT, "png: tRNS before PLTE"); goto fail; }
                if (len > (uint32_t)pi.npal) { st = nst__err(NST_ERR_FORMAT, "png: tRNS has more entries than the palette"); goto fail; }
                for (i = 0; i < (int)len; i++) pi.pal[i][3] = data[i] / 255.0f;
                pi.has_trns = 2;   /* marks the palette alphas; applied below */
                pi.trns[0] = len;
            } else if (pi.ctype == 0 || pi.ctype == 2) {
                uint32_t want = pi.ctype == 0 ? 2 : 6;
                if (len != want) { st = nst__err(NST_ERR_FORMAT, "png: tRNS has length %lu, not %lu", (unsigned long)len, (unsigned long)want); goto fail; }
                for (i = 0; i < (int)len / 2; i++) pi.trns[i] = ((unsigned)data[2 * i] << 8) | data[2 * i + 1];
                pi.has_trns = 1;
            }   /* on types with alpha tRNS is not allowed; ignore it like libpng */
        } else if (!memcmp(name, "IDAT", 4)) {
            if (pi.ctype == 3 && !pi.npal) { st = nst__err(NST_ERR_FORMAT, "png: palette image without PLTE"); goto fail; }
            if (!seen_idat) nst__buf_reserve(&idat, n - pos);   /* the rest of the file bounds all IDATs */
            seen_idat = 1;
            nst__buf_put(&idat, data, len);
            if (idat.failed) { st = nst__err(NST_ERR_NOMEM, "png: out of memory"); goto fail; }
        } else if (!memcmp(name, "IEND", 4)) {
            seen_iend = 1;
        } else if (!(type[0] & 0x20)) {
            st = nst__err(NST_ERR_UNSUPPORTED, "png: unknown critical chunk %s", name);
            goto fail;
        }
        pos += 12 + (size_t)len;
    }
    if (!seen_ihdr) { st = nst__err(NST_ERR_FORMAT, "png: no IHDR chunk"); goto fail; }
    if (!seen_idat) { st = nst__err(NST_ERR_FORMAT, "png: no image data (IDAT)"); goto fail; }
    /* output channels and palette alpha */
    if (pi.ctype == 3) {
        int has_alpha = 0;
        for (i = 0; i < 256; i++) if (i >= pi.npal || pi.has_trns != 2 || i >= (int)pi.trns[0]) pi.pal[i][3] = 1.0f;
        for (i = 0; i < pi.npal; i++) if (pi.pal[i][3] != 1.0f) has_alpha = 1;
        pi.out_ch = has_alpha ? 4 : 3;
        pi.has_trns = 0;
    } else {
        pi.out_ch = pi.channels + (pi.has_trns ? 1 : 0);
    }
    /* expected decompressed size: per pass, rows of (filter byte + packed samples) */
    for (pass = 0; pass < (pi.interlace ? 7 : 1); pass++) {
        const unsigned char *a = nst__adam7[pass];
        size_t pw = pi.interlace ? (pi.w + a[2] - 1 - a[0]) / a[2] : pi.w;
        size_t ph = pi.interlace ? (pi.h + a[3] - 1 - a[1]) / a[3] : pi.h;
        size_t bits, rb, total;
        if (pi.interlace && (pi.w <= a[0] || pi.h <= a[1])) continue;
        if (!nst__mul_ok(pw, (size_t)pi.channels * (size_t)pi.depth, &bits) || !nst__mul_ok((bits + 7) / 8 + 1, ph, &total) ||
            raw_size + total < raw_size) {
            st = nst__err(NST_ERR_LIMIT, "png: image data size overflows");
            goto fail;
        }
        rb = total;
        raw_size += rb;
    }
    if ((st = nst__image_check_size((int)pi.w, (int)pi.h, pi.out_ch)) != NST_OK) goto fail;
    if (raw_size > nst__limit_bytes()) { st = nst__err(NST_ERR_LIMIT, "png: image data of %lu bytes exceeds the limit", (unsigned long)raw_size); goto fail; }
    /* deflate expands at most ~1032:1, so a small file cannot hold a huge image: refuse it before
     * allocating anything in proportion to the header's claim */
    if (raw_size / 1032 > idat.len + 16) {
        st = nst__err(NST_ERR_FORMAT, "png: image data is truncated (%lu compressed bytes cannot hold %lu bytes)",
                      (unsigned long)idat.len, (unsigned long)raw_size);
        goto fail;
    }
    raw = (unsigned char *)nst__malloc(raw_size);
    if (!raw) { st = nst__err(NST_ERR_NOMEM, "png: out of memory for %lu bytes of image data", (unsigned long)raw_size); goto fail; }
    st = nst__inflate_ex(idat.data, idat.len, 1, checks, raw, raw_size, raw_size, &dummy, &got);
    if (st == NST_ERR_LIMIT) { st = nst__err(NST_ERR_FORMAT, "png: more image data than the IHDR size allows"); goto fail; }
    if (st != NST_OK) { st = nst__err_prefix(st, "png"); goto fail; }
    if (got != raw_size) {
        st = nst__err(NST_ERR_FORMAT, "png: image data is truncated (%lu of %lu bytes)", (unsigned long)got, (unsigned long)raw_size);
        goto fail;
    }
    nst__buf_free(&idat);
    if ((st = nst__image_alloc_raw(img, (int)pi.w, (int)pi.h, pi.out_ch)) != NST_OK) goto fail;
    for (i = 0; i < 256; i++) lut8[i] = (float)i / 255.0f;
    {
        unsigned char *p = raw;
        for (pass = 0; pass < (pi.interlace ? 7 : 1); pass++) {
            const unsigned char *a = nst__adam7[pass];
            uint32_t pw = pi.interlace ? (pi.w + a[2] - 1 - a[0]) / a[2] : pi.w;
            uint32_t ph = pi.interlace ? (pi.h + a[3] - 1 - a[1]) / a[3] : pi.h;
            size_t rb = ((size_t)pw * pi.channels * pi.depth + 7) / 8, step = (size_t)pi.out_ch * (pi.interlace ? a[2] : 1);
            int bpp = (pi.channels * pi.depth + 7) / 8;
            const unsigned char *prev = NULL;
            uint32_t y;
            if (pi.interlace && (pi.w <= a[0] || pi.h <= a[1])) continue;
            for (y = 0; y < ph; y++, p += rb + 1) {
                size_t oy = pi.interlace ? (size_t)a[1] + (size_t)y * a[3] : y;
                size_t ox = pi.interlace ? a[0] : 0;
                if (!nst__png_unfilter(p + 1, prev, rb, bpp, p[0])) {
                    nst_image_free(img);
                    st = nst__err(NST_ERR_FORMAT, "png: invalid filter type %d in row %lu", p[0], (unsigned long)oy);
                    goto fail;
                }
                nst__png_row(&pi, p + 1, pw, img->pixels + (oy * pi.w + ox) * (size_t)pi.out_ch, step, lut8);
                prev = p + 1;
            }
        }
    }
    nst__free(raw);
    return NST_OK;
fail:
    nst__buf_free(&idat);
    nst__free(raw);
    return st;
}

/* Encoder: 8- or 16-bit gray, gray+alpha, RGB, RGBA; per row the filter with the smallest sum of absolute
 * (signed) residuals, the usual heuristic (libpng's, PNG spec 12.8); one zlib stream split into IDATs. */
static void nst__png_chunk(nst__buf *b, const char *type, const unsigned char *data, size_t len) {
    unsigned char hdr[8], crc[4];
    uint32_t c;
    hdr[0] = (unsigned char)(len >> 24); hdr[1] = (unsigned char)(len >> 16);
    hdr[2] = (unsigned char)(len >> 8); hdr[3] = (unsigned char)len;
    memcpy(hdr + 4, type, 4);
    nst__buf_put(b, hdr, 8);
    nst__buf_put(b, data, len);
    c = nst__crc32(nst__crc32(0, type, 4), data, len);
    crc[0] = (unsigned char)(c >> 24); crc[1] = (unsigned char)(c >> 16); crc[2] = (unsigned char)(c >> 8); crc[3] = (unsigned char)c;
    nst__buf_put(b, crc, 4);
}
static void nst__quantize_row(const float *src, size_t n, int bits16, unsigned char *dst) {
    size_t i;
    if (bits16) {
        for (i = 0; i < n; i++) {
            unsigned v = (unsigned)(nst__clamp01(src[i]) * 65535.0f + 0.5f);
            dst[2 * i] = (unsigned char)(v >> 8);
            dst[2 * i + 1] = (unsigned char)v;
        }
    } else {
        for (i = 0; i < n; i++) dst[i] = (unsigned char)(nst__clamp01(src[i]) * 255.0f + 0.5f);
    }
}
static nst_status nst__png_encode(const nst_image *img, int bits16, int level, nst__buf *out) {
    static const unsigned char ctypes[5] = {0, 0, 4, 2, 6};
    size_t rb, y, h = (size_t)img->height, total;
    int bpp;
    unsigned char *raw, ihdr[13];
    nst__buf z;
    nst_status st;
    long yy;
    bpp = img->channels * (bits16 ? 2 : 1);
    rb = (size_t)img->width * (size_t)bpp;
    if (!nst__mul_ok(rb + 1, h, &total)) return nst__err(NST_ERR_LIMIT, "png: image too large to encode");
    raw = (unsigned char *)nst__malloc(total + 2 * rb);
    if (!raw) return nst__err(NST_ERR_NOMEM, "png: out of memory");
    /* quantise all rows in place (row y's samples at raw + y*(rb+1) + 1), then filter from the bottom up
     * so each row's unfiltered predecessor is still intact while it is filtered */
    for (y = 0; y < h; y++)
        nst__quantize_row(img->pixels + y * (size_t)img->width * img->channels, (size_t)img->width * img->channels,
                          bits16, raw + y * (rb + 1) + 1);
    for (yy = (long)h - 1; yy >= 0; yy--) {
        unsigned char *row = raw + (size_t)yy * (rb + 1) + 1, *trial = raw + total, *best = raw + total + rb;
        const unsigned char *prev = yy ? row - (rb + 1) : NULL;
        size_t i, b = (size_t)bpp, best_score = (size_t)-1;
        int f, best_f = 0;
        for (f = 0; f < 5; f++) {
            size_t score = 0;
            for (i = 0; i < rb; i++) {
                int left = i >= b ? row[i - b] : 0, up = prev ? prev[i] : 0, ul = (prev && i >= b) ? prev[i - b] : 0, pred;
                signed char r;
                pred = f == 0 ? 0 : f == 1 ? left : f == 2 ? up : f == 3 ? (left + up) >> 1 : nst__paeth(left, up, ul);
                trial[i] = (unsigned char)(row[i] - pred);
                r = (signed char)trial[i];
                score += (size_t)(r < 0 ? -r : r);
            }
            if (score < best_score) {
                best_score = score;
                best_f = f;
                memcpy(best, trial, rb);
            }
        }
        memcpy(row, best, rb);
        row[-1] = (unsigned char)best_f;
    }
    memset(&z, 0, sizeof z);
    st = nst__deflate(raw, total, 1, level, &z);
    nst__free(raw);
    if (st != NST_OK) { nst__buf_free(&z); return st; }
    ihdr[0] = (unsigned char)(img->width >> 24); ihdr[1] = (unsigned char)(img->width >> 16);
    ihdr[2] = (unsigned char)(img->width >> 8); ihdr[3] = (unsigned char)img->width;
    ihdr[4] = (unsigned char)(img->height >> 24); ihdr[5] = (unsigned char)(img->height >> 16);
    ihdr[6] = (unsigned char)(img->height >> 8); ihdr[7] = (unsigned char)img->height;
    ihdr[8] = (unsigned char)(bits16 ? 16 : 8);
    ihdr[9] = ctypes[img->channels];
    ihdr[10] = ihdr[11] = ihdr[12] = 0;
    nst__buf_put(out, nst__png_sig, 8);
    nst__png_chunk(out, "IHDR", ihdr, 13);
    {
        size_t off = 0;
        do {
            size_t len = z.len - off > ((size_t)1 << 20) ? ((size_t)1 << 20) : z.len - off;
            nst__png_chunk(out, "IDAT", z.data + off, len);
            off += len;
        } while (off < z.len);
    }
    nst__png_chunk(out, "IEND", NULL, 0);
    nst__buf_free(&z);
    if (out->failed) return nst__err(NST_ERR_NOMEM, "png: out of memory for the output");
    return NST_OK;
}

/* =====================================================================================================
 * netpbm: PGM/PPM (P2 P3 P5 P6) and PAM (P7), maxval 1..65535
 * ===================================================================================================*/
typedef struct nst__pnm_rd {
    const unsigned char *p, *end;
} nst__pnm_rd;
static void nst__pnm_skip(nst__pnm_rd *r) {   /* whitespace and # comments */
    while (r->p < r->end) {
        if (*r->p == '#') {
            while (r->p < r->end && *r->p != '\n' && *r->p != '\r') r->p++;
        } else if (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r' || *r->p == '\v' || *r->p == '\f') {
            r->p++;
        } else {
            break;
        }
    }
}
/* A decimal number up to 2^31-1 after optional whitespace; 0 when there is none or it is too big. */
static int nst__pnm_uint(nst__pnm_rd *r, unsigned long *v) {
    unsigned long x = 0;
    int digits = 0;
    nst__pnm_skip(r);
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
        x = x * 10 + (unsigned long)(*r->p++ - '0');
        if (x > 0x7FFFFFFFul) return 0;
        digits++;
    }
    *v = x;
    return digits > 0;
}

static nst_status nst__pnm_decode(const unsigned char *d, size_t n, nst_image *img) {
    nst__pnm_rd r;
    unsigned long w = 0, h = 0, maxval = 0, depth = 0, v;
    int kind, ascii, bytes, ch;
    size_t count, i;
    float scale;
    nst_status st;
    const char *fmt;
    r.p = d + 2;
    r.end = d + n;
    kind = n >= 2 && d[0] == 'P' ? d[1] - '0' : 0;
    if (kind < 2 || kind > 7 || kind == 4) return nst__err(NST_ERR_FORMAT, "pnm: not a PGM/PPM/PAM file");
    fmt = kind == 2 || kind == 5 ? "pgm" : kind == 7 ? "pam" : "ppm";
    if (kind == 7) {
        int have_end = 0;
        while (!have_end) {
            const unsigned char *tok;
            size_t tl;
            nst__pnm_skip(&r);
            tok = r.p;
            while (r.p < r.end && *r.p > ' ') r.p++;
            tl = (size_t)(r.p - tok);
            if (tl == 0) return nst__err(NST_ERR_FORMAT, "pam: truncated header (no ENDHDR)");
            if (tl == 6 && !memcmp(tok, "ENDHDR", 6)) {
                while (r.p < r.end && *r.p != '\n') r.p++;
                if (r.p == r.end) return nst__err(NST_ERR_FORMAT, "pam: truncated header after ENDHDR");
                r.p++;
                have_end = 1;
            } else if (tl == 8 && !memcmp(tok, "TUPLTYPE", 8)) {
                while (r.p < r.end && *r.p != '\n') r.p++;
            } else {
                unsigned long *dst = tl == 5 && !memcmp(tok, "WIDTH", 5) ? &w : tl == 6 && !memcmp(tok, "HEIGHT", 6) ? &h
                                   : tl == 5 && !memcmp(tok, "DEPTH", 5) ? &depth : tl == 6 && !memcmp(tok, "MAXVAL", 6) ? &maxval : NULL;
                if (!dst) return nst__err(NST_ERR_FORMAT, "pam: unknown header field '%.*s'", (int)(tl > 20 ? 20 : tl), (const char *)tok);
                if (!nst__pnm_uint(&r, dst)) return nst__err(NST_ERR_FORMAT, "pam: bad number after '%.*s'", (int)tl, (const char *)tok);
            }
        }
        if (depth < 1 || depth > 4) return nst__err(NST_ERR_UNSUPPORTED, "pam: depth %lu (only 1..4 channels)", depth);
        ch = (int)depth;
        ascii = 0;
    } else {
        if (!nst__pnm_uint(&r, &w) || !nst__pnm_uint(&r, &h) || !nst__pnm_uint(&r, &maxval))
            return nst__err(NST_ERR_FORMAT, "%s: bad or truncated header", fmt);
        ch = kind == 2 || kind == 5 ? 1 : 3;
        ascii = kind <= 3;
        if (!ascii) {   /* exactly one whitespace byte separates the header from binary samples */
            if (r.p >= r.end || !(*r.p == ' ' || *r.p == '\t' || *r.p == '\n' || *r.p == '\r'))
                return nst__err(NST_ERR_FORMAT, "%s: no whitespace after the header", fmt);
            r.p++;
        }
    }
    if (maxval < 1 || maxval > 65535) return nst__err(NST_ERR_FORMAT, "%s: maxval %lu is outside 1..65535", fmt, maxval);
    if (w < 1 || h < 1 || w > 0x7FFFFFFFul || h > 0x7FFFFFFFul) return nst__err(NST_ERR_FORMAT, "%s: invalid size %lux%lu", fmt, w, h);
    if ((st = nst__image_check_size((int)w, (int)h, ch)) != NST_OK) return st;
    bytes = maxval > 255 ? 2 : 1;
    count = (size_t)w * (size_t)h * (size_t)ch;
    if (ascii && (size_t)(r.end - r.p) / 2 + 1 < count)   /* each sample takes a digit and a separator */
        return nst__err(NST_ERR_FORMAT, "%s: truncated pixel data (%lu bytes cannot hold %lu samples)", fmt,
                        (unsigned long)(r.end - r.p), (unsigned long)count);
    if (!ascii && (size_t)(r.end - r.p) / (size_t)bytes < count)
        return nst__err(NST_ERR_FORMAT, "%s: truncated pixel data (%lu of %lu bytes)", fmt, (unsigned long)(r.end - r.p),
                        (unsigned long)(count * (size_t)bytes));
    if ((st = nst__image_alloc_raw(img, (int)w, (int)h, ch)) != NST_OK) return st;
    scale = 1.0f / (float)maxval;
    for (i = 0; i < count; i++) {
        if (ascii) {
            if (!nst__pnm_uint(&r, &v)) {
                nst_image_free(img);
                return nst__err(NST_ERR_FORMAT, "%s: truncated or bad sample %lu of %lu", fmt, (unsigned long)i, (unsigned long)count);
            }
        } else if (bytes == 1) {
            v = *r.p++;
        } else {
            v = ((unsigned long)r.p[0] << 8) | r.p[1];
            r.p += 2;
        }
        if (v > maxval) {
            nst_image_free(img);
            return nst__err(NST_ERR_FORMAT, "%s: sample %lu is above maxval %lu", fmt, v, maxval);
        }
        img->pixels[i] = maxval == 255 ? (float)v / 255.0f : (float)v * scale;
    }
    return NST_OK;
}

/* Writes P5/P6/P7 (or P2/P3): .ppm is RGB with alpha composited over white, .pgm gray (Rec.601 luma). */
static nst_status nst__pnm_encode(const nst_image *img, nst_image_format f, int bits16, int ascii, nst__buf *out) {
    nst_image conv;
    const nst_image *src = img;
    nst_status st;
    char hdr[160];
    size_t i, count;
    int maxval = bits16 ? 65535 : 255, ch;
    conv.pixels = NULL;
    if (f == NST_IMAGE_PPM && img->channels != 3) {
        if ((st = nst_image_to_rgb(img, &conv)) != NST_OK) return st;
        src = &conv;
    } else if (f == NST_IMAGE_PGM && img->channels != 1) {
        nst_image rgb;
        size_t k, np = (size_t)img->width * (size_t)img->height;
        if (img->channels == 2) {   /* gray + alpha: composite over white */
            if ((st = nst__image_alloc_raw(&conv, img->width, img->height, 1)) != NST_OK) return st;
            for (k = 0; k < np; k++) {
                float a = nst__clamp01(img->pixels[2 * k + 1]);
                conv.pixels[k] = img->pixels[2 * k] * a + 1.0f - a;
            }
        } else {
            const nst_image *r3 = img;
            rgb.pixels = NULL;
            if (img->channels == 4) {
                if ((st = nst_image_to_rgb(img, &rgb)) != NST_OK) return st;
                r3 = &rgb;
            }
            if ((st = nst__image_alloc_raw(&conv, img->width, img->height, 1)) != NST_OK) { nst_image_free(&rgb); return st; }
            for (k = 0; k < np; k++)
                conv.pixels[k] = 0.299f * r3->pixels[3 * k] + 0.587f * r3->pixels[3 * k + 1] + 0.114f * r3->pixels[3 * k + 2];
            nst_image_free(&rgb);
        }
        src = &conv;
    }
    ch = src->channels;
    if (f == NST_IMAGE_PAM) {
        static const char *tt[5] = {"", "GRAYSCALE", "GRAYSCALE_ALPHA", "RGB", "RGB_ALPHA"};
        snprintf(hdr, sizeof hdr, "P7\nWIDTH %d\nHEIGHT %d\nDEPTH %d\nMAXVAL %d\nTUPLTYPE %s\nENDHDR\n", src->width,
                 src->height, ch, maxval, tt[ch]);
        ascii = 0;
    } else {
        snprintf(hdr, sizeof hdr, "P%d\n%d %d\n%d\n", (ch == 1 ? 2 : 3) + (ascii ? 0 : 3), src->width, src->height, maxval);
    }
    nst__buf_put(out, hdr, strlen(hdr));
    count = (size_t)src->width * (size_t)src->height * (size_t)ch;
    if (ascii) {
        int col = 0;
        for (i = 0; i < count; i++) {
            char num[8];
            int len;
            unsigned v = (unsigned)(nst__clamp01(src->pixels[i]) * (float)maxval + 0.5f);
            len = snprintf(num, sizeof num, "%u", v);
            if (col + len + 1 > 70) { nst__buf_byte(out, '\n'); col = 0; }
            else if (col) { nst__buf_byte(out, ' '); col++; }
            nst__buf_put(out, num, (size_t)len);
            col += len;
        }
        nst__buf_byte(out, '\n');
    } else if (nst__buf_reserve(out, count * (bits16 ? 2 : 1))) {
        nst__quantize_row(src->pixels, count, bits16, out->data + out->len);
        out->len += count * (bits16 ? 2 : 1);
    }
    nst_image_free(&conv);
    if (out->failed) return nst__err(NST_ERR_NOMEM, "pnm: out of memory for the output");
    return NST_OK;
}
#endif /* NST_NO_IMAGE_IO */

/* =====================================================================================================
 * load / save dispatch
 * ===================================================================================================*/
NSTDEF nst_image_format nst_image_detect_format(const void *bytes, size_t n) {
    const unsigned char *d = (const unsigned char *)bytes;
    if (!d) return NST_IMAGE_UNKNOWN;
    if (n >= 8 && !memcmp(d, "\211PNG\r\n\032\n", 8)) return NST_IMAGE_PNG;
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return NST_IMAGE_JPEG;
    if (n >= 2 && d[0] == 'P') {
        if (d[1] == '2' || d[1] == '5') return NST_IMAGE_PGM;
        if (d[1] == '3' || d[1] == '6') return NST_IMAGE_PPM;
        if (d[1] == '7') return NST_IMAGE_PAM;
    }
    return NST_IMAGE_UNKNOWN;
}
static int nst__ext_is(const char *ext, const char *want) {
    while (*ext && *want) {
        int a = *ext++, b = *want++;
        if (a >= 'A' && a <= 'Z') a += 'a' - 'A';
        if (a != b) return 0;
    }
    return !*ext && !*want;
}
NSTDEF nst_image_format nst_image_format_from_path(const char *path) {
    const char *dot = path ? strrchr(path, '.') : NULL;
    if (!dot || strchr(dot, '/') || strchr(dot, '\\')) return NST_IMAGE_UNKNOWN;
    dot++;
    if (nst__ext_is(dot, "png")) return NST_IMAGE_PNG;
    if (nst__ext_is(dot, "jpg") || nst__ext_is(dot, "jpeg") || nst__ext_is(dot, "jpe")) return NST_IMAGE_JPEG;
    if (nst__ext_is(dot, "ppm") || nst__ext_is(dot, "pnm")) return NST_IMAGE_PPM;
    if (nst__ext_is(dot, "pgm")) return NST_IMAGE_PGM;
    if (nst__ext_is(dot, "pam")) return NST_IMAGE_PAM;
    return NST_IMAGE_UNKNOWN;
}

NSTDEF nst_status nst_image_load_memory_ex(const void *bytes, size_t n, const nst_image_load_options *o,
                                           nst_image *out) {
#ifndef NST_NO_IMAGE_IO
    const unsigned char *d = (const unsigned char *)bytes;
    nst_status st;
    int checks = !(o && o->ignore_checksums);
    if (!out) return nst__err(NST_ERR_ARGUMENT, "image: output is NULL");
    memset(out, 0, sizeof *out);
    if (!d && n) return nst__err(NST_ERR_ARGUMENT, "image: bytes is NULL");
    switch (nst_image_detect_format(d, n)) {
    case NST_IMAGE_PNG: st = nst__png_decode(d, n, checks, out); break;
    case NST_IMAGE_JPEG: st = nst__jpeg_decode(d, n, out); break;
    case NST_IMAGE_PPM: case NST_IMAGE_PGM: case NST_IMAGE_PAM: st = nst__pnm_decode(d, n, out); break;
    default:
        if (n >= 2 && d[0] == 'P' && (d[1] == '1' || d[1] == '4'))
            return nst__err(NST_ERR_UNSUPPORTED, "image: PBM bitmaps (P1/P4) are not supported");
        if (n == 0) return nst__err(NST_ERR_FORMAT, "image: empty input");
        return nst__err(NST_ERR_FORMAT, "image: unknown format (not PNG, JPEG or PPM/PGM/PAM; starts %02x %02x %02x %02x)",
                        d[0], n > 1 ? d[1] : 0, n > 2 ? d[2] : 0, n > 3 ? d[3] : 0);
    }
    if (st != NST_OK) nst_image_free(out);
    return st;
#else
    (void)bytes; (void)n; (void)o;
    if (out) memset(out, 0, sizeof *out);
    return nst__err(NST_ERR_UNSUPPORTED, "image: built with NST_NO_IMAGE_IO");
#endif
}
NSTDEF nst_status nst_image_load_memory(const void *bytes, size_t n, nst_image *out) {
    return nst_image_load_memory_ex(bytes, n, NULL, out);
}

#ifndef NST_NO_IMAGE_IO
/* Encodes img as format f (not AUTO) into buf. */
static nst_status nst__image_encode_buf(const nst_image *img, nst_image_format f, const nst_image_save_options *o,
                                        nst__buf *buf) {
    nst_status st;
    int bits16 = o && o->bits == 16;
    if ((st = nst__image_valid(img, "image encode")) != NST_OK) return st;
    if (o && o->bits && o->bits != 8 && o->bits != 16) return nst__err(NST_ERR_ARGUMENT, "image encode: bits must be 8 or 16, not %d", o->bits);
    switch (f) {
    case NST_IMAGE_PNG: {
        int level = !o || o->compression == 0 ? 6 : o->compression < 0 ? 0 : o->compression > 9 ? 9 : o->compression;
        return nst__png_encode(img, bits16, level, buf);
    }
    case NST_IMAGE_JPEG: {
        int q = !o || o->quality == 0 ? 90 : o->quality;
        int sub = !o || o->subsampling == 0 ? 420 : o->subsampling;
        nst_image flat;
        if (q < 1 || q > 100) return nst__err(NST_ERR_ARGUMENT, "jpeg: quality %d is outside 1..100", q);
        if (sub != 420 && sub != 444) return nst__err(NST_ERR_ARGUMENT, "jpeg: subsampling must be 420 or 444, not %d", sub);
        if (img->channels == 1 || img->channels == 3) return nst__jpeg_encode(img, q, sub == 420, buf);
        /* JPEG has no alpha: composite over white first */
        if (img->channels == 4) {
            if ((st = nst_image_to_rgb(img, &flat)) != NST_OK) return st;
        } else {
            size_t k, np = (size_t)img->width * (size_t)img->height;
            if ((st = nst__image_alloc_raw(&flat, img->width, img->height, 1)) != NST_OK) return st;
            for (k = 0; k < np; k++) {
                float a = nst__clamp01(img->pixels[2 * k + 1]);
                flat.pixels[k] = img->pixels[2 * k] * a + 1.0f - a;
            }
        }
        st = nst__jpeg_encode(&flat, q, sub == 420, buf);
        nst_image_free(&flat);
        return st;
    }
    case NST_IMAGE_PPM: case NST_IMAGE_PGM: case NST_IMAGE_PAM:
        return nst__pnm_encode(img, f, bits16, o && o->pnm_ascii, buf);
    default:
        return nst__err(NST_ERR_ARGUMENT, "image encode: unknown format %d", (int)f);
    }
}
#endif

NSTDEF nst_status nst_image_encode(const nst_image *img, const nst_image_save_options *o, unsigned char **bytes,
                                   size_t *n) {
#ifndef NST_NO_IMAGE_IO
    nst__buf b;
    nst_status st;
    nst_image_format f = o && o->format != NST_IMAGE_AUTO ? o->format : NST_IMAGE_PNG;
    if (!bytes || !n) return nst__err(NST_ERR_ARGUMENT, "image encode: output pointers are NULL");
    *bytes = NULL;
    *n = 0;
    memset(&b, 0, sizeof b);
    if ((st = nst__image_encode_buf(img, f, o, &b)) != NST_OK) { nst__buf_free(&b); return st; }
    *bytes = b.data;
    *n = b.len;
    return NST_OK;
#else
    (void)img; (void)o;
    if (bytes) *bytes = NULL;
    if (n) *n = 0;
    return nst__err(NST_ERR_UNSUPPORTED, "image: built with NST_NO_IMAGE_IO");
#endif
}
NSTDEF void nst_image_free_encoded(unsigned char *bytes) { nst__free(bytes); }

#if !defined(NST_NO_STDIO) && !defined(NST_NO_IMAGE_IO)
NSTDEF nst_status nst_image_load_ex(const char *path, const nst_image_load_options *o, nst_image *out) {
    unsigned char *d;
    size_t n;
    nst_status st;
    if (!out) return nst__err(NST_ERR_ARGUMENT, "image load: output is NULL");
    memset(out, 0, sizeof *out);
    if (!path) return nst__err(NST_ERR_ARGUMENT, "image load: path is NULL");
    if ((st = nst__read_file(path, nst__limit_bytes(), &d, &n)) != NST_OK) return st;
    st = nst_image_load_memory_ex(d, n, o, out);
    nst__free(d);
    return st == NST_OK ? st : nst__err_prefix(st, path);
}
NSTDEF nst_status nst_image_save_ex(const char *path, const nst_image *img, const nst_image_save_options *o) {
    nst__buf b;
    nst_status st;
    nst_image_format f = o && o->format != NST_IMAGE_AUTO ? o->format : nst_image_format_from_path(path);
    if (!path) return nst__err(NST_ERR_ARGUMENT, "image save: path is NULL");
    if (f == NST_IMAGE_UNKNOWN)
        return nst__err(NST_ERR_ARGUMENT, "%s: unknown image extension (use .png, .jpg, .jpeg, .ppm, .pgm or .pam)", path);
    memset(&b, 0, sizeof b);
    st = nst__image_encode_buf(img, f, o, &b);
    if (st == NST_OK) st = nst__write_file_atomic(path, b.data, b.len);
    else st = nst__err_prefix(st, path);
    nst__buf_free(&b);
    return st;
}
#else
NSTDEF nst_status nst_image_load_ex(const char *path, const nst_image_load_options *o, nst_image *out) {
    (void)path; (void)o;
    if (out) memset(out, 0, sizeof *out);
    return nst__err(NST_ERR_UNSUPPORTED, "image: built without file or codec support (NST_NO_STDIO/NST_NO_IMAGE_IO)");
}
NSTDEF nst_status nst_image_save_ex(const char *path, const nst_image *img, const nst_image_save_options *o) {
    (void)path; (void)img; (void)o;
    return nst__err(NST_ERR_UNSUPPORTED, "image: built without file or codec support (NST_NO_STDIO/NST_NO_IMAGE_IO)");
}
#endif
NSTDEF nst_status nst_image_load(const char *path, nst_image *out) { return nst_image_load_ex(path, NULL, out); }
NSTDEF nst_status nst_image_save(const char *path, const nst_image *img) { return nst_image_save_ex(path, img, NULL); }
/* =====================================================================================================
 * >>jpeg  JPEG decoder (baseline + progressive Huffman) and baseline encoder
 *
 * Decoder. Output matches libjpeg-turbo's `djpeg -dct int` (the default) byte for byte on valid files:
 *   - the accurate integer IDCT ("islow": 13-bit constants, 2 extra bits between passes, 64-bit sums),
 *   - libjpeg's "fancy" upsampling (triangle filter) for h2v1, h1v2 and h2v2 chroma, with its exact
 *     rounding biases and edge replication, plain replication for other integral ratios (4:1:1, ...)
 *     and nearest-centre sampling for non-integral ones (which libjpeg refuses),
 *   - libjpeg's fixed-point YCbCr->RGB (16-bit fractions, the same rounding), and for CMYK/YCCK the
 *     conversion djpeg uses for PPM output: R = C*K/255 on the stored (Adobe-inverted) values.
 * A sequential file whose first scan holds every component (nearly all of them) is decoded one MCU row
 * at a time: Huffman -> IDCT into a ring of three MCU rows of 8-bit samples -> upsampling and colour
 * conversion of the row above straight into the float output, at the position EXIF orientation asks
 * for. Progressive and multi-scan files fill a whole-image coefficient store first, then go through the
 * same ring. Memory besides the output is a few MCU rows (or the coefficients: 2 bytes per sample).
 * Corrupt or truncated entropy data behaves like libjpeg: when a scan runs out of bits the current MCU
 * gets zero bits, the rest of the restart interval (or scan) is left as zero coefficients (mid-gray),
 * and decoding resynchronises at the next RST marker.
 * Refused with NST_ERR_UNSUPPORTED: arithmetic coding, lossless, hierarchical, 12/16-bit samples, DNL.
 *
 * A progressive file cut short (a partial download) gets libjpeg's block smoothing: the missing low
 * AC coefficients are guessed from the neighbouring blocks' DC values, as djpeg does.
 *
 * Encoder: baseline, JFIF, Annex K quantisation tables scaled like libjpeg's jpeg_quality_scaling,
 * 4:4:4 or 4:2:0 (gray images as one component; alpha composited over white), float separable DCT,
 * edge replication to whole MCUs, Huffman tables optimised per image (two passes over MCU-row bands,
 * libjpeg's length-limiting algorithm) or Annex K's. Output decodes identically in djpeg.
 * ===================================================================================================*/
#ifndef NST_NO_IMAGE_IO

#define NST__JPEG_FAST 9            /* bits looked up at once in the Huffman fast tables */
#define NST__JPEG_MAX_SCANS 1000    /* a progressive file has ~10; caps the work a hostile file can ask */

/* Zigzag index -> natural (row-major) index; 16 extra entries so a corrupt run cannot index past 63. */
static const unsigned char nst__jpeg_natural[80] = {
    0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,  12, 19, 26, 33, 40, 48,
    41, 34, 27, 20, 13, 6,  7,  14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23,
    30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
    63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63};

typedef struct nst__jhuff {
    uint16_t fast[1 << NST__JPEG_FAST];     /* (code length << 8) | symbol; 0 = code longer than FAST */
    int32_t  fast_ac[1 << NST__JPEG_FAST];  /* AC only: value*256 | run*16 | (code+value bits), 0 = none */
    int32_t  maxcode[18];                   /* largest code of each length, -1 if none */
    int32_t  valoff[17];                    /* index into vals of the first code of each length - mincode */
    unsigned char vals[256];
    int      present, max_sym;
} nst__jhuff;

typedef struct nst__jcomp {
    int id, h, v, tq;
    int bw, bh;              /* blocks per row / column of the MCU-padded coefficient store */
    int dw, dh;              /* downsampled size in samples: ceil(width * h / hmax) */
    int dc_tbl, ac_tbl, dc_pred;
    int latched;             /* quantisation table copied at its first scan (libjpeg does the same) */
    int bits[10], prev_bits[10];   /* progressive: Al of zigzag coefficients 0..9 so far (-1: none yet), and
                                      before this component's latest scan (libjpeg's coef_bits) */
    uint16_t qt[64];         /* natural order */
    int16_t *coef;           /* bw x bh blocks of 64 (or one MCU row of them when streaming), natural
                                order, not dequantised */
    unsigned char *plane;    /* IDCT output: a ring of 3 MCU rows (8*v sample rows each), bw*8 wide */
} nst__jcomp;

/* Per-image colour tables (libjpeg's jdcolor.c build_ycc_rgb_table, SCALEBITS 16). */
typedef struct nst__jycc { int cr_r[256], cb_b[256]; int32_t cr_g[256], cb_g[256]; } nst__jycc;

typedef struct nst__jdec {
    const unsigned char *data;
    size_t n, pos;
    uint16_t qt[4][64];
    int qt_present[4];
    nst__jhuff dc[4], ac[4];
    int frame, progressive, w, h, ncomp, hmax, vmax, mcux, mcuy;
    nst__jcomp comp[4];
    int restart_interval, jfif, adobe, adobe_transform, orientation, scans, flags;
    /* entropy bit reader: `bits` is left-aligned; the last `fake` of its `nbits` are zeros we invented
     * after reaching a marker or the end of the data */
    const unsigned char *bp, *bend;
    uint64_t bits;
    int nbits, fake, marker;
    /* current scan */
    int ns, sc[4], ss, se, ah, al, eobrun, next_rst;
    /* output, set up at the first scan. stream: a sequential file whose first scan holds every component
     * is decoded MCU row by MCU row straight into the output (no whole-image coefficient store) */
    int ready, stream, cs, ch;
    int last_good;                     /* last iMCU row whose decoding started with data left */
    nst_image *img;
    ptrdiff_t origin, sx, sy;          /* stored pixel (x, y) goes to pixel origin + x*sx + y*sy */
    unsigned char *rowbuf;
    size_t rbw;
    int *xmap;
    nst__jycc tab;
    float lut[256];
} nst__jdec;

#define NST__JPEG_NOSMOOTH 1   /* decode flag: replicate chroma (djpeg -nosmooth) instead of fancy upsampling */

/* ---- entropy bit reader ----------------------------------------------------------------------------*/
static void nst__jfill(nst__jdec *d) {
    while (d->nbits <= 56) {
        unsigned c;
        if (!d->marker && d->bp < d->bend) {
            c = *d->bp;
            if (c != 0xFF) { d->bp++; goto put; }
            if (d->bp + 1 < d->bend && d->bp[1] == 0x00) { d->bp += 2; goto put; }
            d->marker = 1;   /* a marker (or a lone 0xFF at the end): stop here, feed zeros */
        }
        c = 0;
        d->fake += 8;
    put:
        d->bits |= (uint64_t)c << (56 - d->nbits);
        d->nbits += 8;
    }
}
/* n in 1..16; the caller made sure nbits >= n */
static unsigned nst__jbits(nst__jdec *d, int n) {
    unsigned v = (unsigned)(d->bits >> (64 - n));
    d->bits <<= n;
    d->nbits -= n;
    return v;
}
static int nst__jextend(unsigned v, int s) {   /* JPEG's sign convention for an s-bit magnitude */
    return v < (1u << (s - 1)) ? (int)v - (1 << s) + 1 : (int)v;
}
static int nst__jreceive(nst__jdec *d, int s) {
    if (d->nbits < s) nst__jfill(d);
    return nst__jextend(nst__jbits(d, s), s);
}
static unsigned nst__jbit(nst__jdec *d) {
    if (d->nbits < 1) nst__jfill(d);
    return nst__jbits(d, 1);
}
static int nst__jdecode(nst__jdec *d, const nst__jhuff *t) {
    unsigned peek;
    int e, len;
    if (d->nbits < 16) nst__jfill(d);
    peek = (unsigned)(d->bits >> (64 - NST__JPEG_FAST));
    e = t->fast[peek];
    if (e) {
        len = e >> 8;
        d->bits <<= len;
        d->nbits -= len;
        return e & 255;
    }
    peek = (unsigned)(d->bits >> 48);
    for (len = NST__JPEG_FAST + 1; len <= 16; len++) {
        int32_t code = (int32_t)(peek >> (16 - len));
        if (code <= t->maxcode[len]) {
            d->bits <<= len;
            d->nbits -= len;
            return t->vals[(code + t->valoff[len]) & 255];
        }
    }
    /* no such code: libjpeg warns and decodes symbol 0; we also drop the 16 bits to make progress */
    d->bits <<= 16;
    d->nbits -= 16;
    return 0;
}
static int nst__joverrun(const nst__jdec *d) { return d->nbits < d->fake; }

/* ---- tables -------------------------------------------------------------------------------------*/
static nst_status nst__jhuff_build(nst__jhuff *t, const unsigned char *counts, const unsigned char *vals, int ac) {
    int len, i, k = 0, total = 0;
    int32_t code = 0;
    unsigned char size[256];
    uint16_t codes[256];
    for (i = 0; i < 16; i++) total += counts[i];
    if (total > 256) return nst__err(NST_ERR_FORMAT, "jpeg: Huffman table with %d symbols", total);
    memset(t, 0, sizeof *t);
    memcpy(t->vals, vals, (size_t)total);
    for (len = 1; len <= 16; len++) {
        t->valoff[len] = k - code;
        for (i = 0; i < counts[len - 1]; i++) { size[k] = (unsigned char)len; codes[k] = (uint16_t)code; k++; code++; }
        if (code > (1 << len)) return nst__err(NST_ERR_FORMAT, "jpeg: Huffman table has too many codes of length %d", len);
        t->maxcode[len] = counts[len - 1] ? code - 1 : -1;
        code <<= 1;
    }
    t->maxcode[17] = 0x7fffffff;
    for (i = 0; i < total; i++) {
        if (vals[i] > t->max_sym) t->max_sym = vals[i];
        if (size[i] <= NST__JPEG_FAST) {
            int shift = NST__JPEG_FAST - size[i], j;
            for (j = 0; j < (1 << shift); j++) t->fast[(codes[i] << shift) | j] = (uint16_t)((size[i] << 8) | vals[i]);
        }
    }
    if (ac) {   /* fold short codes and the short magnitudes after them into one lookup */
        for (i = 0; i < (1 << NST__JPEG_FAST); i++) {
            int e = t->fast[i], len = e >> 8, rs = e & 255, s = rs & 15, run = rs >> 4;
            if (e && s && len + s <= NST__JPEG_FAST) {
                unsigned m = ((unsigned)i >> (NST__JPEG_FAST - len - s)) & ((1u << s) - 1);
                int v = nst__jextend(m, s);
                t->fast_ac[i] = v * 256 + run * 16 + (len + s);
            }
        }
    }
    t->present = 1;
    return NST_OK;
}

/* ---- marker segments -----------------------------------------------------------------------------*/
static unsigned nst__jrd16(const unsigned char *p) { return (unsigned)(p[0] << 8 | p[1]); }

/* EXIF APP1: the TIFF header, IFD0 and its 0x0112 (Orientation) entry, every offset bounds-checked. */
static int nst__jpeg_exif_orientation(const unsigned char *p, size_t n) {
    int le, i, count;
    size_t ifd;
    if (n < 6 + 8 || memcmp(p, "Exif\0\0", 6) != 0) return 0;
    p += 6; n -= 6;
    if (p[0] == 'I' && p[1] == 'I') le = 1;
    else if (p[0] == 'M' && p[1] == 'M') le = 0;
    else return 0;
#define NST__X16(q) (le ? (unsigned)((q)[0] | (q)[1] << 8) : (unsigned)((q)[0] << 8 | (q)[1]))
#define NST__X32(q) (le ? nst__rd32le(q) : nst__rd32be(q))
    if (NST__X16(p + 2) != 42) return 0;
    ifd = NST__X32(p + 4);
    if (ifd < 8 || ifd > n - 2) return 0;
    count = (int)NST__X16(p + ifd);
    for (i = 0; i < count; i++) {
        const unsigned char *e = p + ifd + 2 + (size_t)i * 12;
        unsigned tag, type, v;
        if ((size_t)(e - p) + 12 > n) break;
        tag = NST__X16(e);
        type = NST__X16(e + 2);
        if (tag != 0x0112) continue;
        if (type == 3) v = NST__X16(e + 8);          /* SHORT, as the standard says */
        else if (type == 4) v = NST__X32(e + 8);     /* LONG: seen from a few writers */
        else return 0;
        return v >= 1 && v <= 8 ? (int)v : 0;
    }
#undef NST__X16
#undef NST__X32
    return 0;
}

static nst_status nst__jpeg_sof(nst__jdec *d, const unsigned char *p, unsigned len, int marker) {
    int i, j;
    if (d->frame) return nst__err(NST_ERR_FORMAT, "jpeg: more than one frame header");
    if (marker == 0xC3 || marker == 0xC7 || marker == 0xCB || marker == 0xCF)
        return nst__err(NST_ERR_UNSUPPORTED, "jpeg: lossless JPEG (SOF%d) is not supported", marker - 0xC0);
    if (marker == 0xC5 || marker == 0xC6 || marker == 0xCD || marker == 0xCE)
        return nst__err(NST_ERR_UNSUPPORTED, "jpeg: hierarchical JPEG (SOF%d) is not supported", marker - 0xC0);
    if (marker >= 0xC9)
        return nst__err(NST_ERR_UNSUPPORTED, "jpeg: arithmetic coding (SOF%d) is not supported", marker - 0xC0);
    if (len < 6) return nst__err(NST_ERR_FORMAT, "jpeg: frame header too short");
    if (p[0] != 8)
        return nst__err(NST_ERR_UNSUPPORTED, "jpeg: %d-bit samples are not supported (only 8-bit)", p[0]);
    d->h = (int)nst__jrd16(p + 1);
    d->w = (int)nst__jrd16(p + 3);
    d->ncomp = p[5];
    if (d->h == 0) return nst__err(NST_ERR_UNSUPPORTED, "jpeg: height defined by a DNL marker is not supported");
    if (d->w == 0) return nst__err(NST_ERR_FORMAT, "jpeg: zero width");
    if (d->ncomp != 1 && d->ncomp != 3 && d->ncomp != 4)
        return nst__err(d->ncomp == 2 || d->ncomp > 4 ? NST_ERR_UNSUPPORTED : NST_ERR_FORMAT,
                        "jpeg: %d colour components are not supported", d->ncomp);
    if (len < 6 + 3u * (unsigned)d->ncomp) return nst__err(NST_ERR_FORMAT, "jpeg: frame header too short");
    d->hmax = d->vmax = 1;
    for (i = 0; i < d->ncomp; i++) {
        nst__jcomp *c = &d->comp[i];
        c->id = p[6 + 3 * i];
        c->h = p[7 + 3 * i] >> 4;
        c->v = p[7 + 3 * i] & 15;
        c->tq = p[8 + 3 * i];
        if (c->h < 1 || c->h > 4 || c->v < 1 || c->v > 4)
            return nst__err(NST_ERR_FORMAT, "jpeg: bad sampling factors %dx%d", c->h, c->v);
        if (c->tq > 3) return nst__err(NST_ERR_FORMAT, "jpeg: bad quantisation table index %d", c->tq);
        for (j = 0; j < i; j++)
            if (d->comp[j].id == c->id) return nst__err(NST_ERR_FORMAT, "jpeg: duplicate component id %d", c->id);
        d->hmax = NST__MAX(d->hmax, c->h);
        d->vmax = NST__MAX(d->vmax, c->v);
    }
    if (d->ncomp == 1) d->comp[0].h = d->comp[0].v = d->hmax = d->vmax = 1;
    d->progressive = marker == 0xC2;
    d->frame = 1;
    return NST_OK;
}

static void nst__jpeg_release(nst__jdec *d) {
    int i;
    for (i = 0; i < 4; i++) {
        nst__free(d->comp[i].coef);
        nst__free(d->comp[i].plane);
        d->comp[i].coef = NULL;
        d->comp[i].plane = NULL;
    }
    nst__free(d->rowbuf);
    nst__free(d->xmap);
    d->rowbuf = NULL;
    d->xmap = NULL;
}

/* ---- block decoders -------------------------------------------------------------------------------*/
static void nst__jblock_seq(nst__jdec *d, int16_t *blk, const nst__jhuff *dc, const nst__jhuff *ac, int *pred) {
    int t, k, diff = 0;
    t = nst__jdecode(d, dc);
    if (t) diff = nst__jreceive(d, t);
    *pred = (int16_t)(*pred + diff);
    blk[0] = (int16_t)*pred;
    for (k = 1; k < 64;) {
        int32_t c;
        int rs, r, s;
        if (d->nbits < 32) nst__jfill(d);
        c = ac->fast_ac[d->bits >> (64 - NST__JPEG_FAST)];
        if (c) {
            s = c & 15;
            d->bits <<= s;
            d->nbits -= s;
            k += (c >> 4) & 15;
            blk[nst__jpeg_natural[k++]] = (int16_t)(c >> 8);
            continue;
        }
        rs = nst__jdecode(d, ac);
        r = rs >> 4;
        s = rs & 15;
        if (!s) {
            if (r != 15) break;
            k += 16;
            continue;
        }
        k += r;
        /* nbits >= 16 here: the refill above gave >= 32 and the code took <= 16 */
        blk[nst__jpeg_natural[k++]] = (int16_t)nst__jextend(nst__jbits(d, s), s);
    }
}

static void nst__jblock_dc_first(nst__jdec *d, int16_t *blk, const nst__jhuff *dc, int *pred) {
    int t = nst__jdecode(d, dc), diff = 0;
    if (t) diff = nst__jreceive(d, t);
    *pred = (int16_t)(*pred + diff);
    blk[0] = (int16_t)(*pred * (1 << d->al));
}
static void nst__jblock_dc_refine(nst__jdec *d, int16_t *blk) {
    if (nst__jbit(d)) blk[0] = (int16_t)(blk[0] | (1 << d->al));
}
static void nst__jblock_ac_first(nst__jdec *d, int16_t *blk, const nst__jhuff *ac) {
    int k;
    if (d->eobrun > 0) { d->eobrun--; return; }
    for (k = d->ss; k <= d->se; k++) {
        int rs = nst__jdecode(d, ac), r = rs >> 4, s = rs & 15;
        if (s) {
            k += r;
            blk[nst__jpeg_natural[k]] = (int16_t)(nst__jreceive(d, s) * (1 << d->al));
        } else if (r == 15) {
            k += 15;
        } else {
            d->eobrun = 1 << r;
            if (r) {
                if (d->nbits < r) nst__jfill(d);
                d->eobrun += (int)nst__jbits(d, r);
            }
            d->eobrun--;
            break;
        }
    }
}
/* Successive approximation of AC coefficients: newly non-zero coefficients get +-1<<al, the ones
 * already non-zero get a correction bit each as the run passes over them (G.1.2.3). */
static void nst__jblock_ac_refine(nst__jdec *d, int16_t *blk, const nst__jhuff *ac) {
    int p1 = 1 << d->al, m1 = -p1, k = d->ss;
    if (d->eobrun <= 0) {
        for (; k <= d->se; k++) {
            int rs = nst__jdecode(d, ac), r = rs >> 4, s = rs & 15;
            if (s) {
                s = nst__jbit(d) ? p1 : m1;   /* s must be 1; libjpeg treats other sizes as 1 too */
            } else if (r != 15) {
                d->eobrun = 1 << r;
                if (r) {
                    if (d->nbits < r) nst__jfill(d);
                    d->eobrun += (int)nst__jbits(d, r);
                }
                break;
            }
            do {
                int16_t *c = blk + nst__jpeg_natural[k];
                if (*c) {
                    if (nst__jbit(d) && (*c & p1) == 0) *c = (int16_t)(*c >= 0 ? *c + p1 : *c + m1);
                } else {
                    if (--r < 0) break;
                }
                k++;
            } while (k <= d->se);
            if (s) blk[nst__jpeg_natural[k]] = (int16_t)s;
        }
    }
    if (d->eobrun > 0) {
        for (; k <= d->se; k++) {
            int16_t *c = blk + nst__jpeg_natural[k];
            if (*c && nst__jbit(d) && (*c & p1) == 0) *c = (int16_t)(*c >= 0 ? *c + p1 : *c + m1);
        }
        d->eobrun--;
    }
}

/* At a restart boundary: drop the buffered bits, find the next RSTn (skipping any garbage left by a
 * corrupt interval) and reset the predictors. The marker's number tells where we are, as in libjpeg's
 * jpeg_resync_to_restart: the expected one -> decode the interval (1); one of the next three -> our
 * marker was lost, so leave it for a later boundary and give up this interval (2); an older one -> skip
 * it and keep looking. Returns 0 when a non-RST marker or the end comes first. */
static int nst__jrestart(nst__jdec *d) {
    const unsigned char *p = d->bp;
    int i;
    d->bits = 0; d->nbits = 0; d->fake = 0; d->marker = 0; d->eobrun = 0;
    for (i = 0; i < d->ncomp; i++) d->comp[i].dc_pred = 0;
    while (p + 1 < d->bend) {
        if (p[0] == 0xFF) {
            if (p[1] >= 0xD0 && p[1] <= 0xD7) {
                int delta = (p[1] - 0xD0 - d->next_rst) & 7;
                if (delta == 0 || delta > 3) {   /* expected, or an old one we skip */
                    p += 2;
                    if (delta) continue;
                    d->bp = p;
                    d->next_rst = (d->next_rst + 1) & 7;
                    return 1;
                }
                d->bp = p;
                d->next_rst = (d->next_rst + 1) & 7;
                return 2;
            }
            if (p[1] != 0x00 && p[1] != 0xFF) { d->bp = p; return 0; }
            p += p[1] == 0x00 ? 2 : 1;
            continue;
        }
        p++;
    }
    d->bp = d->bend;
    return 0;
}

static void nst__jdecode_mcu_block(nst__jdec *d, nst__jcomp *c, int16_t *blk) {
    if (!d->progressive) nst__jblock_seq(d, blk, &d->dc[c->dc_tbl], &d->ac[c->ac_tbl], &c->dc_pred);
    else if (d->ss == 0) {
        if (d->ah == 0) nst__jblock_dc_first(d, blk, &d->dc[c->dc_tbl], &c->dc_pred);
        else nst__jblock_dc_refine(d, blk);
    } else if (d->ah == 0) nst__jblock_ac_first(d, blk, &d->ac[c->ac_tbl]);
    else nst__jblock_ac_refine(d, blk, &d->ac[c->ac_tbl]);
}

static void nst__jidct_row(nst__jdec *d, int k);
static void nst__jemit(nst__jdec *d, int k);

/* Decodes the entropy-coded data of one scan starting at d->pos; leaves d->pos at the next marker.
 * When streaming, each finished MCU row is IDCT'd into the ring and the row above it is output. */
static void nst__jpeg_scan_data(nst__jdec *d) {
    int mx, my, nmx, nmy, i, todo, stopped = 0, dead = 0;
    nst__jcomp *c0 = &d->comp[d->sc[0]];
    d->bp = d->data + d->pos;
    d->bend = d->data + d->n;
    d->bits = 0; d->nbits = 0; d->fake = 0; d->marker = 0; d->eobrun = 0; d->next_rst = 0;
    for (i = 0; i < d->ncomp; i++) d->comp[i].dc_pred = 0;
    if (d->ns == 1) {   /* non-interleaved: one block per MCU, over the component's own size */
        nmx = (c0->dw + 7) / 8;
        nmy = (c0->dh + 7) / 8;
    } else {
        nmx = d->mcux;
        nmy = d->mcuy;
    }
    todo = d->restart_interval;
    for (my = 0; my < nmy; my++) {
        size_t row0 = d->stream ? 0 : (size_t)my;   /* MCU row within the coefficient buffer */
        if (d->stream)
            for (i = 0; i < d->ncomp; i++)
                memset(d->comp[i].coef, 0, (size_t)d->comp[i].bw * d->comp[i].v * 64 * sizeof(int16_t));
        for (mx = 0; mx < nmx && !dead; mx++) {
            if (d->restart_interval && todo == 0) {
                int r = nst__jrestart(d);
                if (!r) { dead = 1; break; }   /* no more data for this scan: the rest stays zero */
                todo = d->restart_interval;
                stopped = r == 2;
            }
            if (!stopped) {
                d->last_good = d->ns == 1 ? my / c0->v : my;
                if (d->ns == 1) {
                    nst__jdecode_mcu_block(d, c0, c0->coef + (row0 * c0->bw + mx) * 64);
                } else {
                    int s, bx, by;
                    for (s = 0; s < d->ns; s++) {
                        nst__jcomp *c = &d->comp[d->sc[s]];
                        for (by = 0; by < c->v; by++)
                            for (bx = 0; bx < c->h; bx++)
                                nst__jdecode_mcu_block(
                                    d, c, c->coef + ((row0 * c->v + by) * c->bw + (size_t)mx * c->h + bx) * 64);
                    }
                }
                if (nst__joverrun(d)) {   /* ran into a marker or the end: rest of the interval stays zero */
                    stopped = 1;
                    if (!d->restart_interval) dead = 1;
                }
            }
            todo--;
        }
        if (d->stream) {
            nst__jidct_row(d, my);
            if (my) nst__jemit(d, my - 1);
        } else if (dead) break;
    }
    if (d->stream) nst__jemit(d, nmy - 1);
    /* resume marker parsing at the first marker that can follow a scan (skip RSTn and garbage) */
    {
        const unsigned char *p = d->bp;
        while (p + 1 < d->bend && !(p[0] == 0xFF && p[1] != 0x00 && p[1] != 0xFF && !(p[1] >= 0xD0 && p[1] <= 0xD7)))
            p++;
        d->pos = (size_t)(p - d->data);
        if (p + 1 >= d->bend) d->pos = d->n;
    }
}

static nst_status nst__jpeg_sos(nst__jdec *d, const unsigned char *p, unsigned len) {
    int i, j, blocks = 0;
    if (!d->frame) return nst__err(NST_ERR_FORMAT, "jpeg: scan before the frame header");
    if (len < 1) return nst__err(NST_ERR_FORMAT, "jpeg: scan header too short");
    d->ns = p[0];
    if (d->ns < 1 || d->ns > d->ncomp || len < 4 + 2u * (unsigned)d->ns)
        return nst__err(NST_ERR_FORMAT, "jpeg: bad scan header (%d components)", d->ns);
    for (i = 0; i < d->ns; i++) {
        int id = p[1 + 2 * i], t = p[2 + 2 * i];
        for (j = 0; j < d->ncomp; j++) if (d->comp[j].id == id) break;
        if (j == d->ncomp) return nst__err(NST_ERR_FORMAT, "jpeg: scan names unknown component %d", id);
        d->sc[i] = j;
        d->comp[j].dc_tbl = t >> 4;
        d->comp[j].ac_tbl = t & 15;
        if (d->comp[j].dc_tbl > 3 || d->comp[j].ac_tbl > 3)
            return nst__err(NST_ERR_FORMAT, "jpeg: bad Huffman table index in scan header");
        blocks += d->comp[j].h * d->comp[j].v;
    }
    if (d->ns > 1 && blocks > 10) return nst__err(NST_ERR_FORMAT, "jpeg: more than 10 blocks per MCU");
    p += 1 + 2 * d->ns;
    d->ss = p[0]; d->se = p[1]; d->ah = p[2] >> 4; d->al = p[2] & 15;
    if (d->progressive) {
        if (d->ss > 63 || d->se > 63 || d->ss > d->se || (d->ss == 0 && d->se != 0) || (d->ss > 0 && d->ns != 1) ||
            d->ah > 13 || d->al > 13)
            return nst__err(NST_ERR_FORMAT, "jpeg: bad progressive scan parameters Ss=%d Se=%d Ah=%d Al=%d",
                            d->ss, d->se, d->ah, d->al);
    } else {
        d->ss = 0; d->se = 63; d->ah = d->al = 0;   /* libjpeg ignores these in sequential scans too */
    }
    for (i = 0; i < d->ns; i++) {
        nst__jcomp *c = &d->comp[d->sc[i]];
        int need_dc = d->ss == 0 && d->ah == 0, need_ac = d->ss > 0 || !d->progressive;
        if (need_dc && (!d->dc[c->dc_tbl].present || d->dc[c->dc_tbl].max_sym > 15))
            return nst__err(NST_ERR_FORMAT, "jpeg: scan uses a missing or invalid DC Huffman table %d", c->dc_tbl);
        if (need_ac && !d->ac[c->ac_tbl].present)
            return nst__err(NST_ERR_FORMAT, "jpeg: scan uses a missing AC Huffman table %d", c->ac_tbl);
        if (!c->latched) {
            if (!d->qt_present[c->tq]) return nst__err(NST_ERR_FORMAT, "jpeg: missing quantisation table %d", c->tq);
            memcpy(c->qt, d->qt[c->tq], sizeof c->qt);
            c->latched = 1;
            for (j = 0; j < 10; j++) c->bits[j] = c->prev_bits[j] = -1;
        }
        if (d->progressive) {   /* as libjpeg's start_pass_phuff_decoder: what block smoothing relies on */
            for (j = NST__MIN(d->ss, 1); j <= NST__MIN(NST__MAX(d->se, 9), 9); j++)
                c->prev_bits[j] = d->scans > 0 ? c->bits[j] : 0;
            for (j = d->ss; j <= NST__MIN(d->se, 9); j++) c->bits[j] = d->al;
        }
    }
    if (++d->scans > NST__JPEG_MAX_SCANS)
        return nst__err(NST_ERR_LIMIT, "jpeg: more than %d scans", NST__JPEG_MAX_SCANS);
    return NST_OK;
}

/* ---- IDCT: libjpeg's jpeg_idct_islow ---------------------------------------------------------------
 * Loeffler-Ligtenberg-Moschytz with 13-bit fixed-point constants; pass 1 (columns) keeps 2 extra bits,
 * pass 2 (rows) descales by 18 and clamps. Sums are 64-bit like libjpeg's JLONG, so any input is defined. */
#define NST__JFIX(x) ((int64_t)(x))
static void nst__jidct_islow(const int16_t *in, const uint16_t *q, unsigned char *out, size_t stride) {
    int32_t ws[64];
    int i;
    for (i = 0; i < 8; i++) {
        const int16_t *c = in + i;
        const uint16_t *qq = q + i;
        int64_t t0, t1, t2, t3, t10, t11, t12, t13, z1, z2, z3, z4, z5;
        if (!(c[8] | c[16] | c[24] | c[32] | c[40] | c[48] | c[56])) {
            int32_t dc = (int32_t)((int64_t)c[0] * qq[0] * 4);
            ws[i] = ws[8 + i] = ws[16 + i] = ws[24 + i] = ws[32 + i] = ws[40 + i] = ws[48 + i] = ws[56 + i] = dc;
            continue;
        }
        z2 = (int64_t)c[16] * qq[16];
        z3 = (int64_t)c[48] * qq[48];
        z1 = (z2 + z3) * 4433;
        t2 = z1 - z3 * 15137;
        t3 = z1 + z2 * 6270;
        z2 = (int64_t)c[0] * qq[0];
        z3 = (int64_t)c[32] * qq[32];
        t0 = (z2 + z3) * 8192;
        t1 = (z2 - z3) * 8192;
        t10 = t0 + t3; t13 = t0 - t3; t11 = t1 + t2; t12 = t1 - t2;
        t0 = (int64_t)c[56] * qq[56];
        t1 = (int64_t)c[40] * qq[40];
        t2 = (int64_t)c[24] * qq[24];
        t3 = (int64_t)c[8] * qq[8];
        z1 = t0 + t3; z2 = t1 + t2; z3 = t0 + t2; z4 = t1 + t3;
        z5 = (z3 + z4) * 9633;
        t0 *= 2446; t1 *= 16819; t2 *= 25172; t3 *= 12299;
        z1 *= -7373; z2 *= -20995; z3 *= -16069; z4 *= -3196;
        z3 += z5; z4 += z5;
        t0 += z1 + z3; t1 += z2 + z4; t2 += z2 + z3; t3 += z1 + z4;
        /* arithmetic right shifts of int64: defined by every compiler we target (gcc, clang, msvc) */
        ws[i] = (int32_t)((t10 + t3 + 1024) >> 11);
        ws[56 + i] = (int32_t)((t10 - t3 + 1024) >> 11);
        ws[8 + i] = (int32_t)((t11 + t2 + 1024) >> 11);
        ws[48 + i] = (int32_t)((t11 - t2 + 1024) >> 11);
        ws[16 + i] = (int32_t)((t12 + t1 + 1024) >> 11);
        ws[40 + i] = (int32_t)((t12 - t1 + 1024) >> 11);
        ws[24 + i] = (int32_t)((t13 + t0 + 1024) >> 11);
        ws[32 + i] = (int32_t)((t13 - t0 + 1024) >> 11);
    }
    for (i = 0; i < 8; i++) {
        const int32_t *w = ws + 8 * i;
        unsigned char *o = out + (size_t)i * stride;
        int64_t t0, t1, t2, t3, t10, t11, t12, t13, z1, z2, z3, z4, z5, r[8];
        int j;
        if (!(w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7])) {
            int64_t v = (((int64_t)w[0] + 16) >> 5) + 128;
            unsigned char b = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
            memset(o, b, 8);
            continue;
        }
        z2 = w[2]; z3 = w[6];
        z1 = (z2 + z3) * 4433;
        t2 = z1 - z3 * 15137;
        t3 = z1 + z2 * 6270;
        t0 = ((int64_t)w[0] + w[4]) * 8192;
        t1 = ((int64_t)w[0] - w[4]) * 8192;
        t10 = t0 + t3; t13 = t0 - t3; t11 = t1 + t2; t12 = t1 - t2;
        t0 = w[7]; t1 = w[5]; t2 = w[3]; t3 = w[1];
        z1 = t0 + t3; z2 = t1 + t2; z3 = t0 + t2; z4 = t1 + t3;
        z5 = (z3 + z4) * 9633;
        t0 *= 2446; t1 *= 16819; t2 *= 25172; t3 *= 12299;
        z1 *= -7373; z2 *= -20995; z3 *= -16069; z4 *= -3196;
        z3 += z5; z4 += z5;
        t0 += z1 + z3; t1 += z2 + z4; t2 += z2 + z3; t3 += z1 + z4;
        r[0] = t10 + t3; r[7] = t10 - t3; r[1] = t11 + t2; r[6] = t11 - t2;
        r[2] = t12 + t1; r[5] = t12 - t1; r[3] = t13 + t0; r[4] = t13 - t0;
        for (j = 0; j < 8; j++) {
            int64_t v = ((r[j] + ((int64_t)1 << 17)) >> 18) + 128;
            o[j] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
}

/* ---- upsampling and colour conversion ---------------------------------------------------------------
 * Returns a pointer to full-resolution row y of component c (width d->w, at least), computed into buf
 * when the component is subsampled. Rounding and edges follow libjpeg's jdsample.c. */
static const unsigned char *nst__jprow(const nst__jcomp *c, int r) {   /* sample row r of the ring */
    int band = 8 * c->v;
    return c->plane + ((size_t)((r / band) % 3) * band + (size_t)(r % band)) * ((size_t)c->bw * 8);
}
static const unsigned char *nst__jrow(const nst__jdec *d, const nst__jcomp *c, int y, unsigned char *buf,
                                      const int *xmap) {
    int fancy = !(d->flags & NST__JPEG_NOSMOOTH), x;
    if (c->h == d->hmax && c->v == d->vmax) return nst__jprow(c, y);
    if (fancy && d->hmax == 2 * c->h && d->vmax == c->v && c->dw > 2) {   /* h2v1 */
        const unsigned char *in = nst__jprow(c, y);
        int n = c->dw;
        buf[0] = in[0];
        buf[1] = (unsigned char)((in[0] * 3 + in[1] + 2) >> 2);
        for (x = 1; x < n - 1; x++) {
            int v = in[x] * 3;
            buf[2 * x] = (unsigned char)((v + in[x - 1] + 1) >> 2);
            buf[2 * x + 1] = (unsigned char)((v + in[x + 1] + 2) >> 2);
        }
        buf[2 * n - 2] = (unsigned char)((in[n - 1] * 3 + in[n - 2] + 1) >> 2);
        buf[2 * n - 1] = in[n - 1];
        return buf;
    }
    if (fancy && d->hmax == c->h && d->vmax == 2 * c->v) {   /* h1v2 */
        int iy = y >> 1, ny = (y & 1) ? NST__MIN(iy + 1, c->dh - 1) : NST__MAX(iy - 1, 0), bias = (y & 1) ? 2 : 1;
        const unsigned char *a = nst__jprow(c, iy), *b = nst__jprow(c, ny);
        for (x = 0; x < c->dw; x++) buf[x] = (unsigned char)((a[x] * 3 + b[x] + bias) >> 2);
        return buf;
    }
    if (fancy && d->hmax == 2 * c->h && d->vmax == 2 * c->v && c->dw > 2) {   /* h2v2 */
        int iy = y >> 1, ny = (y & 1) ? NST__MIN(iy + 1, c->dh - 1) : NST__MAX(iy - 1, 0), n = c->dw;
        const unsigned char *a = nst__jprow(c, iy), *b = nst__jprow(c, ny);
        int last = a[0] * 3 + b[0], cur = last, next;
        buf[0] = (unsigned char)((cur * 4 + 8) >> 4);
        for (x = 0; x < n - 1; x++) {
            next = a[x + 1] * 3 + b[x + 1];
            if (x) buf[2 * x] = (unsigned char)((cur * 3 + last + 8) >> 4);
            buf[2 * x + 1] = (unsigned char)((cur * 3 + next + 7) >> 4);
            last = cur;
            cur = next;
        }
        buf[2 * n - 2] = (unsigned char)((cur * 3 + last + 8) >> 4);
        buf[2 * n - 1] = (unsigned char)((cur * 4 + 7) >> 4);
        return buf;
    }
    {   /* generic: sample (x, y) takes the component sample whose area holds the pixel centre */
        int iy = (int)(((int64_t)(2 * y + 1) * c->v) / (2 * d->vmax));
        const unsigned char *in = nst__jprow(c, NST__MIN(iy, c->dh - 1));
        for (x = 0; x < d->w; x++) buf[x] = in[xmap[x]];
        return buf;
    }
}

static void nst__jycc_init(nst__jycc *t) {
    int i;
    for (i = 0; i < 256; i++) {
        int32_t x = i - 128;
        t->cr_r[i] = (int)((91881 * x + 32768) >> 16);     /* FIX(1.40200) */
        t->cb_b[i] = (int)((116130 * x + 32768) >> 16);    /* FIX(1.77200) */
        t->cr_g[i] = -46802 * x;                           /* FIX(0.71414) */
        t->cb_g[i] = -22554 * x + 32768;                   /* FIX(0.34414), with ONE_HALF folded in */
    }
}
static unsigned char nst__jclamp(int v) { return (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v); }

enum { NST__JCS_GRAY, NST__JCS_YCC, NST__JCS_RGB, NST__JCS_CMYK, NST__JCS_YCCK };

/* Once the frame and the first scan are known: size check first, then the output image (rotated as
 * EXIF asks), the coefficient buffers, the IDCT ring and the row buffers. */
static nst_status nst__jpeg_setup(nst__jdec *d, nst_image *out) {
    int i, ow, oh;
    nst_status st;
    /* colour space, as libjpeg's default_decompress_parms decides it */
    if (d->ncomp == 1) d->cs = NST__JCS_GRAY;
    else if (d->ncomp == 3) {
        if (d->jfif) d->cs = NST__JCS_YCC;
        else if (d->adobe) d->cs = d->adobe_transform == 0 ? NST__JCS_RGB : NST__JCS_YCC;
        else if (d->comp[0].id == 'R' && d->comp[1].id == 'G' && d->comp[2].id == 'B') d->cs = NST__JCS_RGB;
        else d->cs = NST__JCS_YCC;
    } else d->cs = d->adobe && d->adobe_transform != 0 ? NST__JCS_YCCK : NST__JCS_CMYK;   /* libjpeg: odd transform = YCCK */
    d->ch = d->cs == NST__JCS_GRAY ? 1 : 3;
    if ((st = nst__image_check_size(d->w, d->h, d->ch)) != NST_OK) return st;
    d->mcux = (d->w + 8 * d->hmax - 1) / (8 * d->hmax);
    d->mcuy = (d->h + 8 * d->vmax - 1) / (8 * d->vmax);
    d->stream = !d->progressive && d->ns == d->ncomp;
    for (i = 0; i < d->ncomp; i++) {
        nst__jcomp *c = &d->comp[i];
        c->bw = d->mcux * c->h;
        c->bh = d->mcuy * c->v;
        c->dw = (int)(((size_t)d->w * c->h + d->hmax - 1) / d->hmax);
        c->dh = (int)(((size_t)d->h * c->v + d->vmax - 1) / d->vmax);
        c->coef = (int16_t *)nst__calloc((size_t)c->bw * (d->stream ? (size_t)c->v : (size_t)c->bh), 64 * sizeof(int16_t));
        c->plane = (unsigned char *)nst__malloc((size_t)c->bw * 8 * 3 * 8 * (size_t)c->v);
        if (!c->coef || !c->plane) return nst__err(NST_ERR_NOMEM, "jpeg: out of memory for %dx%d", d->w, d->h);
    }
    d->rbw = (size_t)d->w + 80;
    d->rowbuf = (unsigned char *)nst__malloc(d->rbw * 4);
    d->xmap = (int *)nst__malloc(sizeof(int) * (size_t)d->w * 4);
    if (!d->rowbuf || !d->xmap) return nst__err(NST_ERR_NOMEM, "jpeg: out of memory");
    for (i = 0; i < d->ncomp; i++) {
        int x;
        for (x = 0; x < d->w; x++) {
            int ix = (int)(((int64_t)(2 * x + 1) * d->comp[i].h) / (2 * d->hmax));
            d->xmap[(size_t)i * d->w + x] = NST__MIN(ix, d->comp[i].dw - 1);
        }
    }
    nst__jycc_init(&d->tab);
    for (i = 0; i < 256; i++) d->lut[i] = (float)i / 255.0f;
    ow = d->orientation >= 5 ? d->h : d->w;
    oh = d->orientation >= 5 ? d->w : d->h;
    switch (d->orientation) {
    default: d->origin = 0; d->sx = 1; d->sy = ow; break;
    case 2: d->origin = ow - 1; d->sx = -1; d->sy = ow; break;
    case 3: d->origin = (ptrdiff_t)(oh - 1) * ow + ow - 1; d->sx = -1; d->sy = -(ptrdiff_t)ow; break;
    case 4: d->origin = (ptrdiff_t)(oh - 1) * ow; d->sx = 1; d->sy = -(ptrdiff_t)ow; break;
    case 5: d->origin = 0; d->sx = ow; d->sy = 1; break;
    case 6: d->origin = ow - 1; d->sx = ow; d->sy = -1; break;
    case 7: d->origin = (ptrdiff_t)(oh - 1) * ow + ow - 1; d->sx = -(ptrdiff_t)ow; d->sy = -1; break;
    case 8: d->origin = (ptrdiff_t)(oh - 1) * ow; d->sx = -(ptrdiff_t)ow; d->sy = 1; break;
    }
    if ((st = nst__image_alloc_raw(out, ow, oh, d->ch)) != NST_OK) return st;
    d->img = out;
    d->ready = 1;
    return NST_OK;
}

/* IDCT of MCU row k (block rows k*v .. k*v+v-1 of each component) into ring slot k % 3. */
static void nst__jidct_row(nst__jdec *d, int k) {
    int i;
    for (i = 0; i < d->ncomp; i++) {
        nst__jcomp *c = &d->comp[i];
        size_t stride = (size_t)c->bw * 8;
        int by, bx, nbx = (c->dw + 7) / 8;
        for (by = 0; by < c->v; by++) {
            const int16_t *src = c->coef + ((d->stream ? 0 : (size_t)k * c->v) + by) * c->bw * 64;
            unsigned char *dst = c->plane + ((size_t)(k % 3) * c->v * 8 + (size_t)by * 8) * stride;
            for (bx = 0; bx < nbx; bx++) nst__jidct_islow(src + (size_t)bx * 64, c->qt, dst + (size_t)bx * 8, stride);
        }
    }
}

/* ---- block smoothing (libjpeg's decompress_smooth_data, as in libjpeg-turbo 2.1) -------------------
 * A progressive file that ends before its last scans leaves the low AC coefficients of every block
 * unknown (or known only to their top bits). libjpeg guesses them from the DC values of the 5x5 blocks
 * around: the first 9 AC coefficients (zigzag 1..9) when no AC scan has been seen at all, together with
 * a smoothed DC, else the first 5 (Annex K.8's idea on a 5x5 window). A guess is used only where the
 * coefficient is still 0, and is kept below 2^Al where its top bits are known. Rows past the last one
 * the final scan reached use the progression state from before that scan. The kernels below are
 * libjpeg's, as 5x5 weights over the DC values (rows: two above .. two below, columns: two left ..
 * two right); the guess for a coefficient with quantiser Q is Q00 * sum(w * DC) / (256 Q), rounded
 * half away from zero. Replicated with libjpeg-turbo 2.1's edge handling (the version djpeg is in
 * Debian 12), so partial files decode as djpeg shows them. */
static const unsigned char nst__jsmooth_pos[9] = {1, 8, 16, 9, 2, 3, 10, 17, 24};   /* zigzag 1..9 */
static const short nst__jsmooth_k9[9][25] = {   /* no AC seen: coefficients zigzag 1..9 */
    {-1, -1, 0, 1, 1, -3, 13, 0, -13, 3, -3, 38, 0, -38, 3, -3, 13, 0, -13, 3, -1, -1, 0, 1, 1},
    {-1, -3, -3, -3, -1, -1, 13, 38, 13, -1, 0, 0, 0, 0, 0, 1, -13, -38, -13, 1, 1, 3, 3, 3, 1},
    {0, 0, 1, 0, 0, 0, 2, 7, 2, 0, 0, -5, -14, -5, 0, 0, 2, 7, 2, 0, 0, 0, 1, 0, 0},
    {-1, 0, 0, 0, 1, 0, 9, 0, -9, 0, 0, 0, 0, 0, 0, 0, -9, 0, 9, 0, 1, 0, 0, 0, -1},
    {0, 0, 0, 0, 0, 0, 2, -5, 2, 0, 1, 7, -14, 7, 1, 0, 2, -5, 2, 0, 0, 0, 0, 0, 0},
    {0, 0, 0, 0, 0, 0, 1, 0, -1, 0, 0, 2, 0, -2, 0, 0, 1, 0, -1, 0, 0, 0, 0, 0, 0},
    {0, 0, 0, 0, 0, 0, 1, -3, 1, 0, 0, 0, 0, 0, 0, 0, -1, 3, -1, 0, 0, 0, 0, 0, 0},
    {0, 0, 0, 0, 0, 0, 1, 0, -1, 0, 0, -3, 0, 3, 0, 0, 1, 0, -1, 0, 0, 0, 0, 0, 0},
    {0, 0, 0, 0, 0, 0, 1, 2, 1, 0, 0, 0, 0, 0, 0, 0, -1, -2, -1, 0, 0, 0, 0, 0, 0}};
static const short nst__jsmooth_k5[5][25] = {   /* some AC seen: zigzag 1..5 */
    {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -7, 50, 0, -50, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {0, 0, -7, 0, 0, 0, 0, 50, 0, 0, 0, 0, 0, 0, 0, 0, 0, -50, 0, 0, 0, 0, 7, 0, 0},
    {0, 0, -1, 0, 0, 0, 0, 13, 0, 0, 0, 0, -24, 0, 0, 0, 0, 13, 0, 0, 0, 0, -1, 0, 0},
    {0, -1, 0, 1, 0, -1, 10, 0, -10, 1, 0, 0, 0, 0, 0, 1, -10, 0, 10, -1, 0, 1, 0, -1, 0},
    {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -1, 13, -24, 13, -1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}};
static const short nst__jsmooth_kdc[25] = {-2, -6, -8, -6, -2, -6, 6, 42, 6, -6, -8, 42, 152, 42, -8, -6, 6, 42, 6, -6, -2, -6, -8, -6, -2};

/* libjpeg's smoothing_ok: progressive, every component seen with nonzero quantisers where the guesses
 * divide, every DC at least partly known, and some of the first 9 AC coefficients still inexact. */
static int nst__jsmooth_ok(const nst__jdec *d) {
    int i, j, useful = 0;
    if (!d->progressive) return 0;
    for (i = 0; i < d->ncomp; i++) {
        const nst__jcomp *c = &d->comp[i];
        if (!c->latched || c->qt[0] == 0 || c->bits[0] < 0) return 0;
        for (j = 0; j < 9; j++) if (c->qt[nst__jsmooth_pos[j]] == 0) return 0;
        for (j = 1; j < 10; j++) useful |= c->bits[j] != 0;
    }
    return useful;
}

static int nst__jsmooth_guess(const short *w, const int *dc, int64_t q00, int64_t q, int al) {
    int64_t num = 0;
    int t, pred;
    for (t = 0; t < 25; t++) num += w[t] * dc[t];
    num *= q00;
    pred = (int)(((q << 7) + (num >= 0 ? num : -num)) / (q << 8));
    if (al > 0 && pred >= (1 << al)) pred = (1 << al) - 1;
    return num >= 0 ? pred : -pred;
}

/* nst__jidct_row with block smoothing, for the whole-image coefficient store. */
static void nst__jidct_row_smooth(nst__jdec *d, int k) {
    int i, last = d->mcuy - 1;
    for (i = 0; i < d->ncomp; i++) {
        nst__jcomp *c = &d->comp[i];
        size_t stride = (size_t)c->bw * 8;
        int nbx = (c->dw + 7) / 8, hb = (c->dh + 7) / 8, v = c->v, rows = v, by, bx, t, change_dc;
        const int *bits = k > d->last_good ? c->prev_bits : c->bits;
        int prev[10];
        if (k > d->last_good && d->scans <= 1)   /* libjpeg: nothing before the first scan */
            for (t = 0, bits = prev; t < 10; t++) prev[t] = t ? -1 : c->bits[0];
        if (k == last) { rows = hb % v; if (rows == 0) rows = v; }
        for (change_dc = 1, t = 1; t < 10; t++) change_dc &= bits[t] == -1;
        for (by = 0; by < c->v; by++) {
            int b = by, r[5], dc[25];
            const int16_t *row[5];
            unsigned char *dst = c->plane + ((size_t)(k % 3) * c->v * 8 + (size_t)by * 8) * stride;
            int R = k * v + b;
            if (by >= rows) {   /* padding rows of the last MCU row: never shown */
                const int16_t *src = c->coef + (size_t)R * c->bw * 64;
                for (bx = 0; bx < nbx; bx++) nst__jidct_islow(src + (size_t)bx * 64, c->qt, dst + (size_t)bx * 8, stride);
                continue;
            }
            /* neighbouring block rows, clamped at the edges the way libjpeg-turbo 2.1 does it */
            r[2] = R;
            r[1] = (b > 0 || k > 0) ? R - 1 : R;
            r[0] = (b > 1 || k > 1) ? R - 2 : r[1];
            r[3] = (b < rows - 1 || k < last) ? R + 1 : R;
            r[4] = (b < rows - 2 || k + 1 < last) ? R + 2 : r[3];
            for (t = 0; t < 5; t++) row[t] = c->coef + (size_t)r[t] * c->bw * 64;
            for (t = 0; t < 25; t++) dc[t] = row[t / 5][0];
            for (bx = 0; bx < nbx; bx++) {
                int16_t ws[64];
                int j;
                memcpy(ws, row[2] + (size_t)bx * 64, sizeof ws);
                if (bx == 0 && nbx > 2 - 1 && 0 < nbx - 1)
                    for (t = 0; t < 5; t++) dc[t * 5 + 3] = row[t][64];
                if (bx + 1 < nbx - 1)
                    for (t = 0; t < 5; t++) dc[t * 5 + 4] = row[t][(size_t)(bx + 2) * 64];
                for (j = 0; j < (change_dc ? 9 : 5); j++) {
                    int pos = nst__jsmooth_pos[j];
                    if (bits[j + 1] != 0 && ws[pos] == 0)
                        ws[pos] = (int16_t)nst__jsmooth_guess(change_dc ? nst__jsmooth_k9[j] : nst__jsmooth_k5[j], dc,
                                                              c->qt[0], c->qt[pos], bits[j + 1]);
                }
                if (change_dc) ws[0] = (int16_t)nst__jsmooth_guess(nst__jsmooth_kdc, dc, c->qt[0], c->qt[0], 0);
                nst__jidct_islow(ws, c->qt, dst + (size_t)bx * 8, stride);
                for (t = 0; t < 5; t++) {   /* slide the window one block right */
                    dc[t * 5] = dc[t * 5 + 1]; dc[t * 5 + 1] = dc[t * 5 + 2];
                    dc[t * 5 + 2] = dc[t * 5 + 3]; dc[t * 5 + 3] = dc[t * 5 + 4];
                }
            }
        }
    }
}

/* Upsamples and colour-converts the pixel rows of MCU row k into the output image. Needs MCU rows
 * k-1 .. k+1 in the ring (the fancy filters look one chroma row up and down). */
static void nst__jemit(nst__jdec *d, int k) {
    int y, i, y0 = k * 8 * d->vmax, y1 = NST__MIN(d->h, y0 + 8 * d->vmax), ch = d->ch;
    const nst__jycc *tab = &d->tab;
    const float *lut = d->lut;
    for (y = y0; y < y1; y++) {
        const unsigned char *r[4];
        float *o = d->img->pixels + (d->origin + (ptrdiff_t)y * d->sy) * ch;
        ptrdiff_t step = d->sx * ch;
        int x;
        for (i = 0; i < d->ncomp; i++) r[i] = nst__jrow(d, &d->comp[i], y, d->rowbuf + d->rbw * i, d->xmap + (size_t)i * d->w);
        switch (d->cs) {
        case NST__JCS_GRAY:
            for (x = 0; x < d->w; x++, o += step) o[0] = lut[r[0][x]];
            break;
        case NST__JCS_RGB:
            for (x = 0; x < d->w; x++, o += step) { o[0] = lut[r[0][x]]; o[1] = lut[r[1][x]]; o[2] = lut[r[2][x]]; }
            break;
        case NST__JCS_YCC:
            for (x = 0; x < d->w; x++, o += step) {
                int yy = r[0][x], cb = r[1][x], cr = r[2][x];
                o[0] = lut[nst__jclamp(yy + tab->cr_r[cr])];
                o[1] = lut[nst__jclamp(yy + (int)((tab->cb_g[cb] + tab->cr_g[cr]) >> 16))];
                o[2] = lut[nst__jclamp(yy + tab->cb_b[cb])];
            }
            break;
        case NST__JCS_CMYK:   /* djpeg's PPM output: R = C*K/255 on the stored (Adobe-inverted) values */
            for (x = 0; x < d->w; x++, o += step) {
                int kk = r[3][x];
                o[0] = lut[(2 * r[0][x] * kk + 255) / 510];
                o[1] = lut[(2 * r[1][x] * kk + 255) / 510];
                o[2] = lut[(2 * r[2][x] * kk + 255) / 510];
            }
            break;
        default:   /* YCCK: YCbCr -> inverted RGB = CMY, then as CMYK */
            for (x = 0; x < d->w; x++, o += step) {
                int yy = r[0][x], cb = r[1][x], cr = r[2][x], kk = r[3][x];
                int c = 255 - nst__jclamp(yy + tab->cr_r[cr]);
                int m = 255 - nst__jclamp(yy + (int)((tab->cb_g[cb] + tab->cr_g[cr]) >> 16));
                int ye = 255 - nst__jclamp(yy + tab->cb_b[cb]);
                o[0] = lut[(2 * c * kk + 255) / 510];
                o[1] = lut[(2 * m * kk + 255) / 510];
                o[2] = lut[(2 * ye * kk + 255) / 510];
            }
            break;
        }
    }
}

/* ---- the decoder driver ------------------------------------------------------------------------------*/
static nst_status nst__jpeg_decode_ex(const unsigned char *data, size_t n, nst_image *out, int flags) {
    nst__jdec *d;
    nst_status st = NST_OK;
    int scanned = 0;
    out->width = out->height = out->channels = 0;
    out->pixels = NULL;
    if (!data || n < 4 || data[0] != 0xFF || data[1] != 0xD8) return nst__err(NST_ERR_FORMAT, "jpeg: not a JPEG file (no SOI)");
    d = (nst__jdec *)nst__calloc(1, sizeof *d);
    if (!d) return nst__err(NST_ERR_NOMEM, "jpeg: out of memory");
    d->data = data;
    d->n = n;
    d->pos = 2;
    d->flags = flags;
    for (;;) {
        int m;
        unsigned len;
        const unsigned char *p;
        /* next marker: skip garbage and 0xFF fill bytes, as libjpeg's next_marker does */
        while (d->pos + 1 < n && !(data[d->pos] == 0xFF && data[d->pos + 1] != 0xFF && data[d->pos + 1] != 0)) d->pos++;
        if (d->pos + 1 >= n) {
            if (scanned) break;   /* truncated after image data: output what we have, like libjpeg */
            st = nst__err(NST_ERR_FORMAT, "jpeg: truncated before the image data");
            goto fail;
        }
        m = data[d->pos + 1];
        d->pos += 2;
        if (m == 0xD9) break;                                   /* EOI */
        if ((m >= 0xD0 && m <= 0xD8) || m == 0x01) continue;   /* RSTn / SOI / TEM: no payload */
        if (d->pos + 2 > n || (len = nst__jrd16(data + d->pos)) < 2 || d->pos + len > n) {
            if (scanned) break;
            st = nst__err(NST_ERR_FORMAT, "jpeg: truncated marker segment 0x%02X", m);
            goto fail;
        }
        p = data + d->pos + 2;
        len -= 2;
        d->pos += len + 2;
        switch (m) {
        case 0xC4: {   /* DHT: one or more tables */
            unsigned o = 0;
            while (o < len) {
                unsigned tc, th, cnt = 0, i;
                if (len - o < 17) { st = nst__err(NST_ERR_FORMAT, "jpeg: truncated Huffman table"); goto fail; }
                tc = p[o] >> 4;
                th = p[o] & 15;
                for (i = 0; i < 16; i++) cnt += p[o + 1 + i];
                if (tc > 1 || th > 3 || len - o - 17 < cnt) { st = nst__err(NST_ERR_FORMAT, "jpeg: bad Huffman table"); goto fail; }
                if ((st = nst__jhuff_build(tc ? &d->ac[th] : &d->dc[th], p + o + 1, p + o + 17, (int)tc)) != NST_OK) goto fail;
                o += 17 + cnt;
            }
            break;
        }
        case 0xDB: {   /* DQT */
            unsigned o = 0;
            while (o < len) {
                unsigned pq = p[o] >> 4, tq = p[o] & 15, i, need = pq ? 129 : 65;
                if (pq > 1 || tq > 3 || len - o < need) { st = nst__err(NST_ERR_FORMAT, "jpeg: bad quantisation table"); goto fail; }
                for (i = 0; i < 64; i++)
                    d->qt[tq][nst__jpeg_natural[i]] = (uint16_t)(pq ? nst__jrd16(p + o + 1 + 2 * i) : p[o + 1 + i]);
                d->qt_present[tq] = 1;
                o += need;
            }
            break;
        }
        case 0xDD:   /* DRI */
            if (len < 2) { st = nst__err(NST_ERR_FORMAT, "jpeg: bad DRI segment"); goto fail; }
            d->restart_interval = (int)nst__jrd16(p);
            break;
        case 0xDA:   /* SOS */
            if ((st = nst__jpeg_sos(d, p, len)) != NST_OK) {
                if (scanned && st != NST_ERR_LIMIT) { st = NST_OK; goto output; }   /* corrupt later scan: keep the image */
                goto fail;
            }
            if (!d->ready && (st = nst__jpeg_setup(d, out)) != NST_OK) goto fail;
            nst__jpeg_scan_data(d);
            scanned = 1;
            if (d->stream) goto output;   /* a sequential file has nothing after its one full scan */
            break;
        case 0xDC:
            st = nst__err(NST_ERR_UNSUPPORTED, "jpeg: DNL marker is not supported");
            goto fail;
        case 0xCC:
            st = nst__err(NST_ERR_UNSUPPORTED, "jpeg: arithmetic coding is not supported");
            goto fail;
        case 0xE0:
            if (len >= 5 && memcmp(p, "JFIF\0", 5) == 0) d->jfif = 1;
            break;
        case 0xE1:
            if (!d->orientation) d->orientation = nst__jpeg_exif_orientation(p, len);
            break;
        case 0xEE:
            if (len >= 12 && memcmp(p, "Adobe", 5) == 0) { d->adobe = 1; d->adobe_transform = p[11]; }
            break;
        default:
            if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
                if ((st = nst__jpeg_sof(d, p, len, m)) != NST_OK) goto fail;
            }
            /* APPn (ICC profiles in APP2 included), COM, JPG extensions: skipped */
            break;
        }
    }
output:
    if (!scanned) { st = nst__err(NST_ERR_FORMAT, "jpeg: no image data (no scan)"); goto fail; }
    if (!d->stream) {   /* progressive or multi-scan: IDCT + output from the coefficient store */
        int k, smooth = nst__jsmooth_ok(d);
        for (k = 0; k < d->mcuy; k++) {
            if (smooth) nst__jidct_row_smooth(d, k);
            else nst__jidct_row(d, k);
            if (k) nst__jemit(d, k - 1);
        }
        nst__jemit(d, d->mcuy - 1);
    }
fail:
    if (st != NST_OK) nst_image_free(out);
    nst__jpeg_release(d);
    nst__free(d);
    return st;
}

static nst_status nst__jpeg_decode(const unsigned char *data, size_t n, nst_image *out) {
    return nst__jpeg_decode_ex(data, n, out, 0);
}

/* =====================================================================================================
 * JPEG encoder: baseline, JFIF, 4:4:4 or 4:2:0 (gray images as one component), optimised Huffman tables
 * ===================================================================================================*/
/* ITU-T T.81 Annex K.1 tables, natural order */
static const unsigned char nst__jpeg_std_q[2][64] = {
    {16, 11, 10, 16, 24,  40,  51,  61,  12, 12, 14, 19, 26,  58,  60,  55,
     14, 13, 16, 24, 40,  57,  69,  56,  14, 17, 22, 29, 51,  87,  80,  62,
     18, 22, 37, 56, 68,  109, 103, 77,  24, 35, 55, 64, 81,  104, 113, 92,
     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99},
    {17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99,
     99, 99, 47, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
     99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99}};
/* Annex K.3 Huffman tables: code counts per length 1..16, then symbols. [0] luma DC, [1] chroma DC,
 * [2] luma AC, [3] chroma AC */
static const unsigned char nst__jpeg_std_bits[4][16] = {
    {0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0},
    {0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0},
    {0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d},
    {0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77}};
static const unsigned char nst__jpeg_std_dc_vals[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
static const unsigned char nst__jpeg_std_ac_vals[2][162] = {
    {0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07, 0x22, 0x71,
     0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72,
     0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37,
     0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59,
     0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83,
     0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3,
     0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3,
     0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2,
     0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa},
    {0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71, 0x13, 0x22,
     0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0, 0x15, 0x62, 0x72, 0xd1,
     0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x35, 0x36,
     0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58,
     0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a,
     0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a,
     0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba,
     0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda,
     0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa}};

/* A Huffman table as written (counts + symbols) and as used (code and length per symbol). */
typedef struct nst__jetab {
    unsigned char bits[16], vals[256];
    int nvals;
    uint16_t code[256];
    unsigned char len[256];
} nst__jetab;

static void nst__jetab_codes(nst__jetab *t) {
    int l, i, k = 0;
    unsigned code = 0;
    memset(t->len, 0, sizeof t->len);
    for (l = 1; l <= 16; l++) {
        for (i = 0; i < t->bits[l - 1]; i++, k++) {
            t->code[t->vals[k]] = (uint16_t)code++;
            t->len[t->vals[k]] = (unsigned char)l;
        }
        code <<= 1;
    }
}
static void nst__jetab_std(nst__jetab *t, int which) {
    int i;
    memcpy(t->bits, nst__jpeg_std_bits[which], 16);
    for (t->nvals = 0, i = 0; i < 16; i++) t->nvals += t->bits[i];
    memcpy(t->vals, which < 2 ? nst__jpeg_std_dc_vals : nst__jpeg_std_ac_vals[which - 2], (size_t)t->nvals);
    nst__jetab_codes(t);
}
/* Optimal code lengths limited to 16 bits from symbol counts: libjpeg's jpeg_gen_optimal_table method
 * (Huffman merging with a reserved pseudo-symbol 256 so no code is all ones, then K.3-style folding). */
static void nst__jetab_optimal(nst__jetab *t, const long *count) {
    long freq[257];
    int codesize[257], others[257], bits[33], i, j, k;
    for (i = 0; i < 256; i++) freq[i] = count[i];
    freq[256] = 1;
    for (i = 0; i < 257; i++) { codesize[i] = 0; others[i] = -1; }
    memset(bits, 0, sizeof bits);
    for (;;) {
        int c1 = -1, c2 = -1;
        long v = LONG_MAX;
        for (i = 0; i <= 256; i++) if (freq[i] && freq[i] <= v) { v = freq[i]; c1 = i; }
        v = LONG_MAX;
        for (i = 0; i <= 256; i++) if (freq[i] && freq[i] <= v && i != c1) { v = freq[i]; c2 = i; }
        if (c2 < 0) break;
        freq[c1] += freq[c2];
        freq[c2] = 0;
        codesize[c1]++;
        while (others[c1] >= 0) { c1 = others[c1]; codesize[c1]++; }
        others[c1] = c2;
        codesize[c2]++;
        while (others[c2] >= 0) { c2 = others[c2]; codesize[c2]++; }
    }
    for (i = 0; i <= 256; i++) if (codesize[i]) bits[NST__MIN(codesize[i], 32)]++;
    for (i = 32; i > 16; i--) {
        while (bits[i] > 0) {
            j = i - 2;
            while (j > 0 && bits[j] == 0) j--;
            bits[i] -= 2;
            bits[i - 1]++;
            bits[j + 1] += 2;
            bits[j]--;
        }
    }
    for (i = 16; i > 0 && bits[i] == 0; i--) {}
    if (i > 0) bits[i]--;   /* drop the pseudo-symbol's code (the longest, all ones) */
    for (i = 0; i < 16; i++) t->bits[i] = (unsigned char)bits[i + 1];
    t->nvals = 0;
    for (i = 1; i <= 32; i++)
        for (k = 0; k < 256; k++)
            if (codesize[k] == i) t->vals[t->nvals++] = (unsigned char)k;
    nst__jetab_codes(t);
}

typedef struct nst__jbw {   /* entropy bit writer with 0xFF byte stuffing */
    nst__buf *out;
    uint32_t acc;
    int n, len;
    unsigned char chunk[4096 + 8];
} nst__jbw;
static void nst__jbw_flush(nst__jbw *w) { nst__buf_put(w->out, w->chunk, (size_t)w->len); w->len = 0; }
static void nst__jbw_put(nst__jbw *w, unsigned code, int len) {
    w->acc = (w->acc << len) | (code & ((1u << len) - 1));
    w->n += len;
    while (w->n >= 8) {
        unsigned char b = (unsigned char)(w->acc >> (w->n - 8));
        w->n -= 8;
        w->chunk[w->len++] = b;
        if (b == 0xFF) w->chunk[w->len++] = 0;
        if (w->len >= 4096) nst__jbw_flush(w);
    }
}
static int nst__jcat(int v) {   /* bits needed for |v| */
    int n = 0;
    unsigned a = (unsigned)(v < 0 ? -v : v);
    while (a) { n++; a >>= 1; }
    return n;
}
/* Either counts symbols (w == NULL) or writes one block. blk is quantised, natural order. */
static void nst__jenc_block(nst__jbw *w, const int16_t *blk, int *pred, const nst__jetab *dc, const nst__jetab *ac,
                            long *dcount, long *acount) {
    int diff = blk[0] - *pred, s, k, run = 0;
    *pred = blk[0];
    s = nst__jcat(diff);
    if (!w) dcount[s]++;
    else {
        nst__jbw_put(w, dc->code[s], dc->len[s]);
        if (s) nst__jbw_put(w, (unsigned)(diff < 0 ? diff - 1 : diff), s);
    }
    for (k = 1; k < 64; k++) {
        int v = blk[nst__jpeg_natural[k]];
        if (!v) { run++; continue; }
        while (run > 15) {
            if (!w) acount[0xF0]++;
            else nst__jbw_put(w, ac->code[0xF0], ac->len[0xF0]);
            run -= 16;
        }
        s = nst__jcat(v);
        if (!w) acount[run * 16 + s]++;
        else {
            nst__jbw_put(w, ac->code[run * 16 + s], ac->len[run * 16 + s]);
            nst__jbw_put(w, (unsigned)(v < 0 ? v - 1 : v), s);
        }
        run = 0;
    }
    if (run) {
        if (!w) acount[0]++;
        else nst__jbw_put(w, ac->code[0], ac->len[0]);
    }
}

/* Forward DCT (JPEG's scaling: F = 1/4 C(u) C(v) sum f cos cos) of a level-shifted 8x8 block, then
 * quantisation with rounding to nearest. Separable, as two 8x8 matrix products F = M f M^T, written with
 * the contiguous index innermost so compilers vectorise them (m = M, mt = M^T, rq = 1/q). */
static void nst__jfdct_quant(const unsigned char *in, size_t stride, const float *m, const float *mt, const float *rq,
                             int16_t *out) {
    float f[64], t[64], F[64];
    int u, x, y, v;
    for (y = 0; y < 8; y++)
        for (x = 0; x < 8; x++) f[y * 8 + x] = (float)in[(size_t)y * stride + x] - 128.0f;
    for (u = 0; u < 8; u++) {
        for (x = 0; x < 8; x++) t[u * 8 + x] = 0.0f;
        for (y = 0; y < 8; y++)
            for (x = 0; x < 8; x++) t[u * 8 + x] += m[u * 8 + y] * f[y * 8 + x];
    }
    for (u = 0; u < 8; u++) {
        for (v = 0; v < 8; v++) F[u * 8 + v] = 0.0f;
        for (x = 0; x < 8; x++)
            for (v = 0; v < 8; v++) F[u * 8 + v] += t[u * 8 + x] * mt[x * 8 + v];
    }
    for (u = 0; u < 64; u++) {   /* round to nearest without a branch on the sign: |q| < 2^11 << 2^22 */
        float q = F[u] * rq[u] + 12582912.0f;   /* 1.5 * 2^23: the sum keeps no fraction bits */
        out[u] = (int16_t)(int)(q - 12582912.0f);
    }
}

static void nst__jseg(nst__buf *b, int marker, unsigned len) {   /* marker + segment length */
    nst__buf_byte(b, 0xFF);
    nst__buf_byte(b, marker);
    nst__buf_byte(b, (int)(len >> 8));
    nst__buf_byte(b, (int)(len & 255));
}

/* Converts pixel rows y0 .. y0+rows-1 (clamped to the image: edge replication) to 8-bit Y/Cb/Cr (or gray)
 * band planes of width pw, compositing alpha over white, and replicates the last column to pw. */
static void nst__jenc_band(const nst_image *img, int y0, int rows, int pw, int nc, unsigned char **band) {
    int w = img->width, ch = img->channels, r, x, c;
    for (r = 0; r < rows; r++) {
        int y = NST__MIN(y0 + r, img->height - 1);
        const float *p = img->pixels + (size_t)y * w * ch;
        unsigned char *o0 = band[0] + (size_t)r * pw, *o1 = nc == 3 ? band[1] + (size_t)r * pw : NULL,
                      *o2 = nc == 3 ? band[2] + (size_t)r * pw : NULL;
        for (x = 0; x < w; x++, p += ch) {
            float rr, g, b, a = 1.0f;
            if (ch <= 2) { rr = g = b = p[0]; if (ch == 2) a = p[1]; }
            else { rr = p[0]; g = p[1]; b = p[2]; if (ch == 4) a = p[3]; }
            if (!(a >= 0.0f)) a = 0.0f;   /* also catches NaN */
            if (a > 1.0f) a = 1.0f;
            rr = rr * a + (1.0f - a); g = g * a + (1.0f - a); b = b * a + (1.0f - a);
            rr = !(rr > 0.0f) ? 0.0f : rr > 1.0f ? 255.0f : rr * 255.0f;
            g = !(g > 0.0f) ? 0.0f : g > 1.0f ? 255.0f : g * 255.0f;
            b = !(b > 0.0f) ? 0.0f : b > 1.0f ? 255.0f : b * 255.0f;
            if (nc == 1) o0[x] = (unsigned char)(rr + 0.5f);
            else {   /* JFIF YCbCr */
                float yy = 0.299f * rr + 0.587f * g + 0.114f * b;
                float cb = -0.168735892f * rr - 0.331264108f * g + 0.5f * b + 128.5f;
                float cr = 0.5f * rr - 0.418687589f * g - 0.081312411f * b + 128.5f;
                o0[x] = nst__jclamp((int)(yy + 0.5f));
                o1[x] = nst__jclamp((int)cb);
                o2[x] = nst__jclamp((int)cr);
            }
        }
        for (c = 0; c < nc; c++) {
            unsigned char *o = band[c] + (size_t)r * pw;
            memset(o + w, o[w - 1], (size_t)(pw - w));
        }
    }
}

/* optimize: 1 = per-image Huffman tables (smaller; the band pipeline runs twice, first to count
 * symbols), 0 = the Annex K tables (like cjpeg's default). Works one MCU row at a time, so memory is a
 * few rows whatever the image size. */
static nst_status nst__jpeg_encode_ex(const nst_image *img, int quality, int chroma420, int optimize, nst__buf *out) {
    int w, h, ch, nc, sub, pw, cw, nmx, nmy, i, x, c, scale, pass;
    unsigned char *band[3] = {NULL, NULL, NULL};
    int16_t *coef[3] = {NULL, NULL, NULL};
    nst__jetab tabs[4];
    nst__jbw *bw = NULL;
    uint16_t q[2][64];
    float rq[2][64], m[64], mt[64];
    long cnt[4][256];
    nst_status st = NST_OK;
    if (!img || !img->pixels || !out) return nst__err(NST_ERR_ARGUMENT, "jpeg: no image to encode");
    w = img->width; h = img->height; ch = img->channels;
    if (w < 1 || h < 1 || w > 65535 || h > 65535)
        return nst__err(NST_ERR_ARGUMENT, "jpeg: cannot encode a %dx%d image (1..65535 each side)", w, h);
    if (ch < 1 || ch > 4) return nst__err(NST_ERR_ARGUMENT, "jpeg: cannot encode %d channels", ch);
    quality = quality < 1 ? 1 : quality > 100 ? 100 : quality;
    nc = ch <= 2 ? 1 : 3;
    sub = nc == 3 && chroma420 ? 2 : 1;
    nmx = (w + 8 * sub - 1) / (8 * sub);
    nmy = (h + 8 * sub - 1) / (8 * sub);
    pw = nmx * 8 * sub;
    cw = pw / sub;
    /* quantisation tables: libjpeg's jpeg_quality_scaling and jpeg_add_quant_table(force_baseline) */
    scale = quality < 50 ? 5000 / quality : 200 - quality * 2;
    for (c = 0; c < 2; c++)
        for (i = 0; i < 64; i++) {
            long v = ((long)nst__jpeg_std_q[c][i] * scale + 50) / 100;
            q[c][i] = (uint16_t)(v < 1 ? 1 : v > 255 ? 255 : v);
            rq[c][i] = 1.0f / (float)q[c][i];
        }
    for (i = 0; i < 8; i++)
        for (x = 0; x < 8; x++)
            mt[x * 8 + i] = m[i * 8 + x] =
                (float)((i ? 0.5 : 0.35355339059327373) * cos((2 * x + 1) * i * 3.14159265358979323846 / 16));
    /* one MCU row: full-resolution band planes and the quantised blocks of each component */
    for (c = 0; c < nc; c++) {
        band[c] = (unsigned char *)nst__malloc((size_t)pw * 8 * sub);
        coef[c] = (int16_t *)nst__malloc((size_t)(c ? cw : pw) / 8 * (c ? 1 : sub) * 64 * sizeof(int16_t));
        if (!band[c] || !coef[c]) { st = nst__err(NST_ERR_NOMEM, "jpeg: out of memory encoding %dx%d", w, h); goto done; }
    }
    bw = (nst__jbw *)nst__malloc(sizeof *bw);
    if (!bw) { st = nst__err(NST_ERR_NOMEM, "jpeg: out of memory"); goto done; }
    bw->out = out; bw->acc = 0; bw->n = 0; bw->len = 0;
    memset(cnt, 0, sizeof cnt);
    for (pass = optimize ? 0 : 1; pass < 2; pass++) {
        int pred[3] = {0, 0, 0}, my;
        if (pass == 1) {   /* tables are known: write the headers */
            if (optimize) for (i = 0; i < 4; i++) nst__jetab_optimal(&tabs[i], cnt[i]);
            else for (i = 0; i < 4; i++) nst__jetab_std(&tabs[i], i);
            nst__buf_byte(out, 0xFF); nst__buf_byte(out, 0xD8);
            nst__jseg(out, 0xE0, 16);
            nst__buf_put(out, "JFIF\0\1\1\0\0\1\0\1\0\0", 14);   /* v1.01, no units, 1:1 pixel aspect, no thumbnail */
            nst__jseg(out, 0xDB, 2 + 65 * (nc == 3 ? 2 : 1));
            for (c = 0; c < (nc == 3 ? 2 : 1); c++) {
                nst__buf_byte(out, c);
                for (i = 0; i < 64; i++) nst__buf_byte(out, q[c][nst__jpeg_natural[i]]);
            }
            nst__jseg(out, 0xC0, 8 + 3 * (unsigned)nc);
            nst__buf_byte(out, 8);
            nst__buf_byte(out, h >> 8); nst__buf_byte(out, h & 255);
            nst__buf_byte(out, w >> 8); nst__buf_byte(out, w & 255);
            nst__buf_byte(out, nc);
            for (c = 0; c < nc; c++) {
                nst__buf_byte(out, c + 1);
                nst__buf_byte(out, c ? 0x11 : sub * 16 + sub);
                nst__buf_byte(out, c ? 1 : 0);
            }
            for (i = 0; i < 4; i++) {
                if (nc == 1 && (i & 1)) continue;
                nst__jseg(out, 0xC4, 2 + 17 + (unsigned)tabs[i].nvals);
                nst__buf_byte(out, (i >> 1) * 16 + (i & 1));
                nst__buf_put(out, tabs[i].bits, 16);
                nst__buf_put(out, tabs[i].vals, (size_t)tabs[i].nvals);
            }
            nst__jseg(out, 0xDA, 6 + 2 * (unsigned)nc);
            nst__buf_byte(out, nc);
            for (c = 0; c < nc; c++) { nst__buf_byte(out, c + 1); nst__buf_byte(out, c ? 0x11 : 0x00); }
            nst__buf_byte(out, 0); nst__buf_byte(out, 63); nst__buf_byte(out, 0);
        }
        for (my = 0; my < nmy; my++) {
            int mx, y, xx;
            nst__jenc_band(img, my * 8 * sub, 8 * sub, pw, nc, band);
            if (sub == 2)   /* 2x2 box average in place, libjpeg's alternating 1/2 rounding bias */
                for (c = 1; c < 3; c++)
                    for (y = 0; y < 8; y++)
                        for (xx = 0; xx < cw; xx++) {
                            const unsigned char *s0 = band[c] + (size_t)(2 * y) * pw + 2 * xx, *s1 = s0 + pw;
                            band[c][(size_t)y * cw + xx] =
                                (unsigned char)((s0[0] + s0[1] + s1[0] + s1[1] + 1 + (xx & 1)) >> 2);
                        }
            for (c = 0; c < nc; c++) {   /* forward DCT + quantisation of the row's blocks */
                int wc = c ? cw : pw, nbx = wc / 8, nby = c ? 1 : sub, bx, by;
                for (by = 0; by < nby; by++)
                    for (bx = 0; bx < nbx; bx++)
                        nst__jfdct_quant(band[c] + (size_t)by * 8 * wc + (size_t)bx * 8, (size_t)wc, m, mt,
                                         rq[c ? 1 : 0], coef[c] + ((size_t)by * nbx + bx) * 64);
            }
            for (mx = 0; mx < nmx; mx++)
                for (c = 0; c < nc; c++) {
                    int s = c ? 1 : sub, bx, by, nbx = (c ? cw : pw) / 8;
                    for (by = 0; by < s; by++)
                        for (bx = 0; bx < s; bx++) {
                            const int16_t *blk = coef[c] + ((size_t)by * nbx + (size_t)mx * s + bx) * 64;
                            if (pass == 0) nst__jenc_block(NULL, blk, &pred[c], NULL, NULL, cnt[c ? 1 : 0], cnt[c ? 3 : 2]);
                            else nst__jenc_block(bw, blk, &pred[c], &tabs[c ? 1 : 0], &tabs[c ? 3 : 2], NULL, NULL);
                        }
                }
        }
    }
    if (bw->n) nst__jbw_put(bw, 0x7F, 8 - bw->n);   /* pad the last byte with 1 bits */
    nst__jbw_flush(bw);
    nst__buf_byte(out, 0xFF); nst__buf_byte(out, 0xD9);
    if (out->failed) st = nst__err(NST_ERR_NOMEM, "jpeg: out of memory writing the file");
done:
    for (c = 0; c < 3; c++) { nst__free(band[c]); nst__free(coef[c]); }
    nst__free(bw);
    return st;
}

static nst_status nst__jpeg_encode(const nst_image *img, int quality, int chroma420, nst__buf *out) {
    return nst__jpeg_encode_ex(img, quality, chroma420, 1, out);
}

#endif /* NST_NO_IMAGE_IO */

/* =====================================================================================================
 * >>import  weight files of other libraries: .pth, .caffemodel, .npy/.npz
 * ===================================================================================================*/
/* ---------------------------------------------------------------------------------------------------
 * Weight files written by other libraries, read without Python.
 *
 *   nst__import_weights(bytes, n, &list)  detects the format from the bytes and fills canonical f32
 *   tensors "convX_Y.weight" [cout][cin][3][3] and "convX_Y.bias" [cout] (conv1_1 .. conv5_1, or all
 *   16 with nst__import_weights_ex(..., NST__IMPORT_ALL, ...)), plus the input convention the
 *   format implies. Formats:
 *     PyTorch zip     current torch.save: a zip with <name>/data.pkl and <name>/data/<key> storages
 *     PyTorch legacy  torch.save(_use_new_zipfile_serialization=False) and torchvision's
 *                     vgg19-dcbb9e9d.pth: pickles (magic, protocol, sys info, the object, storage
 *                     keys) followed by the raw storages
 *     Caffe           .caffemodel protobuf, V1 `layers` (field 2) and V2 `layer` (field 100)
 *     NumPy           .npz (stored or deflated members) and .npy holding a pickled dict of arrays
 *   Key names: torchvision `features.N.weight`, Gatys/Caffe `conv1_1.weight`, `conv1_1_W`, Keras
 *   `block1_conv1/kernel`, nested dicts/lists (`{"conv1_1": [W, b]}`); TensorFlow's [3][3][cin][cout]
 *   kernels are transposed for the NumPy formats.
 *
 * Everything here parses untrusted bytes: every read is bounds-checked, every declared size is
 * checked against the bytes present and against limits before anything is allocated, the pickle
 * interpreter is iterative (no recursion on input nesting) with caps on values, stack and memo, and
 * only the storages of the conv layers that are kept get converted: the classifier (fc6 alone is
 * 400 MB) is skipped without being read.
 * -------------------------------------------------------------------------------------------------*/

#define NST__IMPORT_ALL 1                         /* keep conv5_2..conv5_4 too */
#define NST__IMPORT_MAX_MEMBER ((uint64_t)1 << 30) /* largest storage / member we inflate or convert */
#define NST__PK_MAX_VALUES (1 << 22)              /* pickle: values, stack depth, memo slots */
#define NST__PK_MAX_STACK (1 << 20)
#define NST__PK_MAX_MEMO (1 << 22)

enum { NST__DT_NONE = 0, NST__DT_F32, NST__DT_F16, NST__DT_F64, NST__DT_BF16 };
static int nst__dt_size(int dt) { return dt == NST__DT_F32 ? 4 : dt == NST__DT_F64 ? 8 : dt ? 2 : 0; }

/* Where torchvision's `features` Sequential puts VGG-19's conv layers (names: nst__conv_names). */
static const int nst__tv_index[NST_VGG_CONVS] = {0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34};
#define NST__IMPORT_DEFAULT_CONVS 13   /* conv1_1 .. conv5_1: everything relu5_1 needs */

/* ===================================================================================================
 * Source tensors and the collector
 * A source tensor is a strided view of a storage in some dtype and byte order; the collector keeps
 * one slot per conv weight/bias. Formats fill shapes first; bytes are resolved only for the slots
 * that are kept, then converted to contiguous f32 by one bounds-checked gather.
 * =================================================================================================*/
typedef struct nst__src {
    int present;
    int dtype, swap;               /* NST__DT_*; swap: big-endian data */
    int ndim;
    int64_t shape[8], stride[8];   /* in elements */
    uint64_t offset;               /* first element */
    const unsigned char *p;        /* storage bytes (resolved), holding `elems` elements */
    uint64_t elems;
    int aux;                       /* format-specific handle used to resolve p */
    char origin[64];               /* the file's name for it, for messages */
} nst__src;

typedef struct nst__collect {
    nst__src w[NST_VGG_CONVS], b[NST_VGG_CONVS];
    int ignored;                   /* tensors that are not VGG conv layers (classifier, ...) */
    int allow_hwio;                /* NumPy formats: accept TensorFlow's [3][3][cin][cout] kernels */
    int nkeep;                     /* set by nst__collect_plan */
    nst_status err;                /* first problem found while collecting */
    unsigned char **owned;         /* buffers to free at the end (inflated members, gathered data) */
    int nowned, capowned;
    int has_conv;                  /* the file states its convention (npz input_convention) */
    nst_input_convention conv;
    int tv_names;                  /* keys were torchvision's features.N.* */
} nst__collect;

static void nst__collect_free(nst__collect *c) {
    int i;
    for (i = 0; i < c->nowned; i++) nst__free(c->owned[i]);
    nst__free(c->owned);
    c->owned = NULL;
    c->nowned = c->capowned = 0;
}

/* Takes ownership of buf (freed by nst__collect_free); on failure frees it and returns 0. */
static int nst__collect_own(nst__collect *c, unsigned char *buf) {
    if (c->nowned == c->capowned) {
        int cap = c->capowned ? 2 * c->capowned : 16;
        unsigned char **p = (unsigned char **)nst__realloc(c->owned, sizeof *p * (size_t)cap);
        if (!p) { nst__free(buf); return 0; }
        c->owned = p; c->capowned = cap;
    }
    c->owned[c->nowned++] = buf;
    return 1;
}

static int nst__is_digit(int ch) { return ch >= '0' && ch <= '9'; }

/* Reads a small decimal number at s[*i] (advancing *i); -1 if none or too large. */
static int nst__small_num(const char *s, size_t n, size_t *i) {
    int v = 0, any = 0;
    while (*i < n && nst__is_digit(s[*i])) {
        v = v * 10 + (s[*i] - '0');
        if (v > 100000) return -1;
        (*i)++; any = 1;
    }
    return any ? v : -1;
}

/* 1 weight, 2 bias, 0 neither. */
static int nst__suffix_kind(const char *s, size_t n) {
    static const char *const wn[] = {"weight", "weights", "w", "kernel", "filter", "filters", "0", "kernel:0", "w:0"};
    static const char *const bn[] = {"bias", "biases", "b", "1", "bias:0", "b:0"};
    size_t k;
    for (k = 0; k < sizeof wn / sizeof *wn; k++)
        if (strlen(wn[k]) == n && (memcmp(wn[k], s, n) == 0 || (n == 1 && (s[0] | 32) == wn[k][0]))) return 1;
    for (k = 0; k < sizeof bn / sizeof *bn; k++)
        if (strlen(bn[k]) == n && (memcmp(bn[k], s, n) == 0 || (n == 1 && (s[0] | 32) == bn[k][0]))) return 2;
    return 0;
}

/* Maps a key (path components joined by '.', '/' or ':') to a conv layer.
 * Returns the conv index 0..15 and *kind (1 weight, 2 bias); -1 when the key is not a VGG-19 conv
 * parameter; -2 when it is a conv-like parameter VGG-19 does not have (wrong architecture), with
 * *kind set to the reason (1: torchvision index, 2: batch norm). */
static int nst__map_key(const char *key, int *kind) {
    size_t n = strlen(key), i = 0;
    *kind = 0;
    while (i < n) {
        size_t j = i, t;
        if (key[i] == '.' || key[i] == '/' || key[i] == ':') { i++; continue; }
        /* torchvision: features.N.weight */
        if (n - i >= 9 && memcmp(key + i, "features", 8) == 0 && (key[i + 8] == '.' || key[i + 8] == '/')) {
            int num, k;
            j = i + 9;
            num = nst__small_num(key, n, &j);
            if (num >= 0 && j < n && (key[j] == '.' || key[j] == '/')) {
                int sk = nst__suffix_kind(key + j + 1, n - j - 1);
                const char *sfx = key + j + 1;
                if (!strcmp(sfx, "running_mean") || !strcmp(sfx, "running_var") || !strcmp(sfx, "num_batches_tracked")) {
                    *kind = 2;
                    return -2;
                }
                if (sk) {
                    for (k = 0; k < NST_VGG_CONVS; k++)
                        if (nst__tv_index[k] == num) { *kind = sk; return k; }
                    *kind = 1;
                    return -2;
                }
            }
        }
        /* convX_Y or blockX_convY, followed by a suffix (own component, or _W/_b in the same one) */
        {
            int blk = -1, sub = -1;
            if (n - i >= 7 && memcmp(key + i, "conv", 4) == 0 && nst__is_digit(key[i + 4])) {
                j = i + 4;
                blk = nst__small_num(key, n, &j);
                if (j < n && key[j] == '_') { j++; sub = nst__small_num(key, n, &j); }
            } else if (n - i >= 11 && memcmp(key + i, "block", 5) == 0 && nst__is_digit(key[i + 5])) {
                j = i + 5;
                blk = nst__small_num(key, n, &j);
                if (j + 4 < n && memcmp(key + j, "_conv", 5) == 0) { j += 5; sub = nst__small_num(key, n, &j); }
            }
            if (blk >= 1 && blk <= 5 && sub >= 1 && j < n && (key[j] == '.' || key[j] == '/' || key[j] == '_' || key[j] == ':')) {
                int sk = nst__suffix_kind(key + j + 1, n - j - 1), k;
                char nm[32];
                snprintf(nm, sizeof nm, "conv%d_%d", blk, sub);
                if (sk) {
                    for (k = 0; k < NST_VGG_CONVS; k++)
                        if (!strcmp(nm, nst__conv_names[k])) { *kind = sk; return k; }
                    *kind = 1;
                    return -2;
                }
            }
        }
        /* next component */
        t = i;
        while (t < n && key[t] != '.' && key[t] != '/' && key[t] != ':') t++;
        i = t;
    }
    return -1;
}

/* Returns the slot for `key`, NULL when the key is not a conv parameter (counted as ignored) or on
 * error (c->err set). */
static nst__src *nst__collect_slot(nst__collect *c, const char *key) {
    int kind, k = nst__map_key(key, &kind);
    nst__src *s;
    if (c->err) return NULL;
    if (k == -2) {
        c->err = kind == 2
            ? nst__err(NST_ERR_FORMAT, "weights: '%s' is a batch-norm parameter: this is VGG-19-BN (or another "
                       "network), not the plain VGG-19 style transfer uses", key)
            : nst__err(NST_ERR_FORMAT, "weights: '%s' is a conv parameter at a place VGG-19 has none: a different "
                       "network (VGG-16? VGG-19-BN?)", key);
        return NULL;
    }
    if (k < 0) { c->ignored++; return NULL; }
    if (strstr(key, "features")) c->tv_names = 1;
    s = kind == 1 ? &c->w[k] : &c->b[k];
    if (s->present) {
        c->err = nst__err(NST_ERR_FORMAT, "weights: two tensors for %s.%s ('%s' and '%s')", nst__conv_names[k],
                          kind == 1 ? "weight" : "bias", s->origin, key);
        return NULL;
    }
    memset(s, 0, sizeof *s);
    s->present = 1;
    snprintf(s->origin, sizeof s->origin, "%s", key);
    return s;
}

static int64_t nst__src_numel(const nst__src *s) {
    int64_t e = 1;
    int i;
    for (i = 0; i < s->ndim; i++) e *= s->shape[i];
    return e;
}

/* Decides which layers are kept and checks their shapes before any storage is touched. */
static nst_status nst__collect_plan(nst__collect *c, int flags) {
    int i, k = 0, last = -1;
    if (c->err) return c->err;
    for (i = 0; i < NST_VGG_CONVS; i++)
        if (c->w[i].present || c->b[i].present) last = i;
    while (k < NST_VGG_CONVS && c->w[k].present) k++;
    if (k == 0) {
        if (last >= 0)
            return nst__err(NST_ERR_FORMAT, "weights: %s is present but conv1_1.weight is missing", nst__conv_names[last]);
        return nst__err(NST_ERR_FORMAT, "weights: no VGG-19 conv layers found (expected keys like features.0.weight, "
                        "conv1_1.weight or conv1_1_W; %d other tensors)", c->ignored);
    }
    if (last >= k)
        return nst__err(NST_ERR_FORMAT, "weights: %s is present but %s.weight is missing (not a VGG-19)",
                        nst__conv_names[last], nst__conv_names[k]);
    if (!(flags & NST__IMPORT_ALL) && k > NST__IMPORT_DEFAULT_CONVS) k = NST__IMPORT_DEFAULT_CONVS;
    for (i = 0; i < k; i++) {
        nst__src *w = &c->w[i], *b = &c->b[i];
        int64_t cout, cin;
        if (w->dtype == NST__DT_NONE || (b->present && b->dtype == NST__DT_NONE))
            return nst__err(NST_ERR_UNSUPPORTED, "weights: %s has a dtype other than float16/bfloat16/float32/float64",
                            w->dtype == NST__DT_NONE ? w->origin : b->origin);
        if (w->ndim == 4 && c->allow_hwio && w->shape[0] == 3 && w->shape[1] == 3 &&
            !(w->shape[2] == 3 && w->shape[3] == 3)) {
            /* TensorFlow/Keras [kh][kw][cin][cout]: view it as [cout][cin][kh][kw] through the strides */
            int64_t sh[4], st[4];
            sh[0] = w->shape[3]; st[0] = w->stride[3];
            sh[1] = w->shape[2]; st[1] = w->stride[2];
            sh[2] = w->shape[0]; st[2] = w->stride[0];
            sh[3] = w->shape[1]; st[3] = w->stride[1];
            memcpy(w->shape, sh, sizeof sh);
            memcpy(w->stride, st, sizeof st);
        }
        if (w->ndim != 4 || w->shape[2] != 3 || w->shape[3] != 3)
            return nst__err(NST_ERR_FORMAT, "weights: %s ('%s') is not a 3x3 conv kernel [cout][cin][3][3]",
                            nst__conv_names[i], w->origin);
        cout = w->shape[0]; cin = w->shape[1];
        if (cout < 1 || cout > 4096 || cin < 1 || cin > 4096)
            return nst__err(NST_ERR_FORMAT, "weights: %s has %lld x %lld channels", nst__conv_names[i],
                            (long long)cout, (long long)cin);
        if (cin != (i ? c->w[i - 1].shape[0] : 3))
            return nst__err(NST_ERR_FORMAT, "weights: %s takes %lld channels but %s gives %lld: not a VGG-19",
                            nst__conv_names[i], (long long)cin, i ? nst__conv_names[i - 1] : "the RGB image",
                            (long long)(i ? c->w[i - 1].shape[0] : 3));
        if (!b->present) return nst__err(NST_ERR_FORMAT, "weights: %s.bias is missing", nst__conv_names[i]);
        if (nst__src_numel(b) != cout)
            return nst__err(NST_ERR_FORMAT, "weights: %s.bias has %lld values, the layer has %lld outputs",
                            nst__conv_names[i], (long long)nst__src_numel(b), (long long)cout);
    }
    c->nkeep = k;
    return NST_OK;
}

static float nst__src_elem(const nst__src *s, uint64_t idx) {
    const unsigned char *q = s->p + idx * (uint64_t)nst__dt_size(s->dtype);
    unsigned char t[8];
    int n = nst__dt_size(s->dtype), i;
    if (s->swap) { for (i = 0; i < n; i++) t[i] = q[n - 1 - i]; q = t; }
    switch (s->dtype) {
    case NST__DT_F32: return nst__f32_from_bits(nst__rd32le(q));
    case NST__DT_F16: return nst__half_to_float(nst__rd16le(q));
    case NST__DT_BF16: return nst__f32_from_bits((uint32_t)nst__rd16le(q) << 16);
    default: {
        double d;
        uint64_t u = nst__rd64le(q);
        memcpy(&d, &u, 8);
        return (float)d;
    }
    }
}

/* Converts a resolved slot to a canonical tensor (contiguous f32, [cout][cin][3][3] or [cout]). */
static nst_status nst__collect_convert(const nst__src *s, const char *name, int is_bias, nst__tensor_list *l) {
    uint64_t maxidx = s->offset, total = 1, i;
    int d, nd = is_bias ? 1 : s->ndim;
    nst__named_tensor *t;
    float *out;
    int64_t idx[8];
    for (d = 0; d < s->ndim; d++) {
        if (s->shape[d] < 1 || s->stride[d] < 0)
            return nst__err(NST_ERR_FORMAT, "weights: '%s' has a bad shape or negative stride", s->origin);
        if ((uint64_t)(s->shape[d] - 1) > ((uint64_t)1 << 40) / ((uint64_t)s->stride[d] + 1))
            return nst__err(NST_ERR_FORMAT, "weights: '%s' has out-of-range strides", s->origin);
        maxidx += (uint64_t)(s->shape[d] - 1) * (uint64_t)s->stride[d];
        total *= (uint64_t)s->shape[d];
    }
    if (!s->p || maxidx >= s->elems)
        return nst__err(NST_ERR_FORMAT, "weights: '%s' reaches element %llu of a storage of %llu (out of range)",
                        s->origin, (unsigned long long)maxidx, (unsigned long long)s->elems);
    if (total > ((uint64_t)1 << 28)) return nst__err(NST_ERR_LIMIT, "weights: '%s' is too large", s->origin);
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 32;
        nst__named_tensor *p = (nst__named_tensor *)nst__realloc(l->t, sizeof *p * (size_t)cap);
        if (!p) return nst__err(NST_ERR_NOMEM, "weights: out of memory");
        l->t = p; l->cap = cap;
    }
    out = (float *)nst__malloc((size_t)total * sizeof(float));
    if (!out) return nst__err(NST_ERR_NOMEM, "weights: out of memory for '%s'", s->origin);
    t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->data = out;
    t->ndim = nd;
    if (is_bias) t->shape[0] = (int64_t)total;
    else for (d = 0; d < 4; d++) t->shape[d] = s->shape[d];
    /* contiguous row-major fast path, else an odometer over the strided view */
    {
        int contiguous = 1;
        int64_t expect = 1;
        for (d = s->ndim - 1; d >= 0; d--) {
            if (s->shape[d] != 1 && s->stride[d] != expect) contiguous = 0;
            expect *= s->shape[d];
        }
        if (contiguous && s->dtype == NST__DT_F32 && !s->swap) {
            const unsigned char *q = s->p + s->offset * 4;
            for (i = 0; i < total; i++) out[i] = nst__f32_from_bits(nst__rd32le(q + 4 * i));
        } else if (contiguous) {
            for (i = 0; i < total; i++) out[i] = nst__src_elem(s, s->offset + i);
        } else {
            memset(idx, 0, sizeof idx);
            for (i = 0; i < total; i++) {
                uint64_t e = s->offset;
                for (d = 0; d < s->ndim; d++) e += (uint64_t)idx[d] * (uint64_t)s->stride[d];
                out[i] = nst__src_elem(s, e);
                for (d = s->ndim - 1; d >= 0; d--) {
                    if (++idx[d] < s->shape[d]) break;
                    idx[d] = 0;
                }
            }
        }
    }
    return NST_OK;
}

/* Converts every kept slot (bytes resolved by the format) into the list. */
static nst_status nst__collect_finish(nst__collect *c, nst__tensor_list *l) {
    int i;
    nst_status st;
    char name[64];
    for (i = 0; i < c->nkeep; i++) {
        snprintf(name, sizeof name, "%s.weight", nst__conv_names[i]);
        if ((st = nst__collect_convert(&c->w[i], name, 0, l)) != NST_OK) return st;
        snprintf(name, sizeof name, "%s.bias", nst__conv_names[i]);
        if ((st = nst__collect_convert(&c->b[i], name, 1, l)) != NST_OK) return st;
    }
    return NST_OK;
}

static void nst__src_contiguous(nst__src *s, int ndim, const int64_t *shape) {
    int d;
    int64_t st = 1;
    s->ndim = ndim;
    for (d = ndim - 1; d >= 0; d--) { s->shape[d] = shape[d]; s->stride[d] = st; st *= shape[d] > 0 ? shape[d] : 1; }
}

/* ===================================================================================================
 * Zip (PyTorch's container and .npz): central directory, zip64, stored and deflated members
 * =================================================================================================*/
typedef struct nst__zip_entry {
    const char *name;     /* not NUL-terminated: name_len bytes */
    size_t name_len;
    int method;           /* 0 stored, 8 deflate */
    uint32_t crc;
    uint64_t csize, usize, lho;
} nst__zip_entry;

typedef struct nst__zip {
    const unsigned char *p;
    size_t n;
    nst__zip_entry *e;
    size_t count;
} nst__zip;

static nst_status nst__zip_open(const unsigned char *p, size_t n, nst__zip *z) {
    size_t i, eocd = (size_t)-1, lo = n > 65557 ? n - 65557 : 0, pos;
    uint64_t count, cd_size, cd_off;
    memset(z, 0, sizeof *z);
    z->p = p; z->n = n;
    if (n < 22) return nst__err(NST_ERR_FORMAT, "zip: truncated (%lu bytes)", (unsigned long)n);
    for (i = n - 22 + 1; i-- > lo;)
        if (p[i] == 'P' && p[i + 1] == 'K' && p[i + 2] == 5 && p[i + 3] == 6) { eocd = i; break; }
    if (eocd == (size_t)-1) return nst__err(NST_ERR_FORMAT, "zip: no end-of-central-directory record (truncated file?)");
    count = nst__rd16le(p + eocd + 10);
    cd_size = nst__rd32le(p + eocd + 12);
    cd_off = nst__rd32le(p + eocd + 16);
    if (count == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
        /* zip64: the locator sits just before the EOCD and points at the zip64 EOCD record */
        uint64_t r;
        if (eocd < 20 || nst__rd32le(p + eocd - 20) != 0x07064b50u)
            return nst__err(NST_ERR_FORMAT, "zip: zip64 values without a zip64 locator");
        r = nst__rd64le(p + eocd - 12);
        if (r > n || n - r < 56 || nst__rd32le(p + r) != 0x06064b50u)
            return nst__err(NST_ERR_FORMAT, "zip: bad zip64 end-of-central-directory record");
        count = nst__rd64le(p + r + 32);
        cd_size = nst__rd64le(p + r + 40);
        cd_off = nst__rd64le(p + r + 48);
    }
    if (cd_off > n || cd_size > n - cd_off) return nst__err(NST_ERR_FORMAT, "zip: central directory out of range (truncated?)");
    if (count > cd_size / 46) return nst__err(NST_ERR_FORMAT, "zip: %llu entries cannot fit the central directory", (unsigned long long)count);
    if (count > ((uint64_t)1 << 20)) return nst__err(NST_ERR_LIMIT, "zip: %llu entries (weight files have a few hundred)", (unsigned long long)count);
    z->e = (nst__zip_entry *)nst__calloc(count ? (size_t)count : 1, sizeof *z->e);
    if (!z->e) return nst__err(NST_ERR_NOMEM, "zip: out of memory");
    pos = (size_t)cd_off;
    for (i = 0; i < count; i++) {
        nst__zip_entry *e = &z->e[i];
        size_t nl, xl, cl, x;
        if (pos > n || n - pos < 46 || nst__rd32le(p + pos) != 0x02014b50u)
            return nst__err(NST_ERR_FORMAT, "zip: bad central directory entry %lu", (unsigned long)i);
        e->method = nst__rd16le(p + pos + 10);
        e->crc = nst__rd32le(p + pos + 16);
        e->csize = nst__rd32le(p + pos + 20);
        e->usize = nst__rd32le(p + pos + 24);
        nl = nst__rd16le(p + pos + 28); xl = nst__rd16le(p + pos + 30); cl = nst__rd16le(p + pos + 32);
        e->lho = nst__rd32le(p + pos + 42);
        if (n - pos - 46 < nl + xl + cl) return nst__err(NST_ERR_FORMAT, "zip: central directory entry %lu truncated", (unsigned long)i);
        e->name = (const char *)p + pos + 46;
        e->name_len = nl;
        /* zip64 extra field: the 0xFFFFFFFF values follow in order usize, csize, offset */
        for (x = pos + 46 + nl; x + 4 <= pos + 46 + nl + xl;) {
            unsigned id = nst__rd16le(p + x), sz = nst__rd16le(p + x + 2);
            size_t q = x + 4, qe = x + 4 + sz;
            if (qe > pos + 46 + nl + xl) break;
            if (id == 1) {
                if (e->usize == 0xFFFFFFFFu && q + 8 <= qe) { e->usize = nst__rd64le(p + q); q += 8; }
                if (e->csize == 0xFFFFFFFFu && q + 8 <= qe) { e->csize = nst__rd64le(p + q); q += 8; }
                if (e->lho == 0xFFFFFFFFu && q + 8 <= qe) { e->lho = nst__rd64le(p + q); }
            }
            x = qe;
        }
        pos += 46 + nl + xl + cl;
        z->count++;
    }
    return NST_OK;
}

static void nst__zip_close(nst__zip *z) { nst__free(z->e); z->e = NULL; z->count = 0; }

static int nst__zip_name_is(const nst__zip_entry *e, const char *s, size_t n) {
    return e->name_len == n && memcmp(e->name, s, n) == 0;
}
static NST__UNUSED const nst__zip_entry *nst__zip_find(const nst__zip *z, const char *name, size_t n) {
    size_t i;
    for (i = 0; i < z->count; i++)
        if (nst__zip_name_is(&z->e[i], name, n)) return &z->e[i];
    return NULL;
}

/* Gives a member's bytes: a pointer into the archive when stored, else an inflated buffer handed to
 * the collector (so it lives until the conversion is done). The CRC is verified either way. */
static nst_status nst__zip_read(const nst__zip *z, const nst__zip_entry *e, nst__collect *c,
                                const unsigned char **out, size_t *out_n) {
    const unsigned char *p = z->p;
    size_t data;
    uint64_t lh = e->lho;
    *out = NULL; *out_n = 0;
    if (lh > z->n || z->n - lh < 30 || nst__rd32le(p + lh) != 0x04034b50u)
        return nst__err(NST_ERR_FORMAT, "zip: bad local header for '%.*s'", (int)e->name_len, e->name);
    data = (size_t)lh + 30 + nst__rd16le(p + lh + 26) + nst__rd16le(p + lh + 28);
    if (data > z->n || e->csize > z->n - data)
        return nst__err(NST_ERR_FORMAT, "zip: member '%.*s' runs past the end of the file (truncated?)", (int)e->name_len, e->name);
    if (e->usize > NST__IMPORT_MAX_MEMBER)
        return nst__err(NST_ERR_LIMIT, "zip: member '%.*s' declares %llu bytes, above the limit", (int)e->name_len,
                        e->name, (unsigned long long)e->usize);
    if (e->method == 0) {
        if (e->csize != e->usize) return nst__err(NST_ERR_FORMAT, "zip: stored member '%.*s' has mismatched sizes", (int)e->name_len, e->name);
        *out = p + data;
        *out_n = (size_t)e->usize;
    } else if (e->method == 8) {
        unsigned char *buf = NULL;
        size_t bn = 0;
        nst_status st;
        /* a deflate stream expands at most ~1032x: a larger declared size is a zip bomb or a lie */
        if (e->usize / 1032 > e->csize + 1)
            return nst__err(NST_ERR_FORMAT, "zip: member '%.*s' claims %llu bytes from %llu compressed (zip bomb?)",
                            (int)e->name_len, e->name, (unsigned long long)e->usize, (unsigned long long)e->csize);
        if ((st = nst__inflate(p + data, (size_t)e->csize, 0, (size_t)e->usize, &buf, &bn)) != NST_OK) {
            char msg[256];
            snprintf(msg, sizeof msg, "%.200s", nst_last_error());
            return nst__err(st, "zip: member '%.*s': %s", (int)e->name_len, e->name, msg);
        }
        if (bn != e->usize) {
            nst__free(buf);
            return nst__err(NST_ERR_FORMAT, "zip: member '%.*s' inflates to %lu bytes, the directory says %llu",
                            (int)e->name_len, e->name, (unsigned long)bn, (unsigned long long)e->usize);
        }
        if (!nst__collect_own(c, buf)) return nst__err(NST_ERR_NOMEM, "zip: out of memory");
        *out = buf;
        *out_n = bn;
    } else {
        return nst__err(NST_ERR_UNSUPPORTED, "zip: member '%.*s' uses compression method %d (only stored and deflate)",
                        (int)e->name_len, e->name, e->method);
    }
    if (nst__crc32(0, *out, *out_n) != e->crc)
        return nst__err(NST_ERR_FORMAT, "zip: CRC mismatch in member '%.*s' (corrupted file)", (int)e->name_len, e->name);
    return NST_OK;
}

/* ===================================================================================================
 * Pickle: a small stack machine for what state dicts (and NumPy object arrays) use
 * Values live in one arena and refer to each other by index, so aliasing through the memo and
 * mutation (APPEND, SETITEMS) need no reference counting, and freeing is one loop.
 * =================================================================================================*/
enum {
    NST__PV_NONE, NST__PV_BOOL, NST__PV_INT, NST__PV_BIGINT, NST__PV_FLOAT, NST__PV_STR, NST__PV_TUPLE,
    NST__PV_LIST, NST__PV_DICT, NST__PV_GLOBAL, NST__PV_STORAGE, NST__PV_TENSOR, NST__PV_OBJ,
    NST__PV_NDARRAY, NST__PV_DTYPE
};

typedef struct nst__pv {
    int type;
    int64_t i;                 /* INT/BOOL; STORAGE: root numel; TENSOR: storage offset */
    const unsigned char *s;    /* STR, BIGINT bytes; GLOBAL: module; STORAGE: key; DTYPE: type code */
    size_t sn;
    const unsigned char *s2;   /* GLOBAL: name */
    size_t sn2;
    int *items;                /* TUPLE/LIST items, DICT key,value pairs; OBJ: [callable, state] */
    int n, cap;
    int dtype, swap;           /* STORAGE/NDARRAY/DTYPE element type and byte order */
    int64_t voff, vlen;        /* STORAGE views (legacy): offset and length in the root, -1 = whole */
    int ndim;                  /* TENSOR/NDARRAY */
    int64_t shape[8], stride[8];
    int ref;                   /* TENSOR: its STORAGE value; OBJ: the class (GLOBAL) */
    int fortran;               /* NDARRAY: column-major data */
} nst__pv;

typedef struct nst__pickle {
    nst__pv *v;
    int nv, capv;
    int *stack, sp, capstack;
    int *marks, nmarks, capmarks;
    int *memo, capmemo;
    int64_t memo_next;         /* MEMOIZE's slot: how many slots PUTs have filled */
    int64_t memo_hi;           /* slots [0, memo_hi) may be set: what the next run resets */
} nst__pickle;

static void nst__pickle_free(nst__pickle *k) {
    int i;
    for (i = 0; i < k->nv; i++) nst__free(k->v[i].items);
    nst__free(k->v); nst__free(k->stack); nst__free(k->marks); nst__free(k->memo);
    memset(k, 0, sizeof *k);
}

static int nst__pk_new(nst__pickle *k, int type) {
    nst__pv *v;
    if (k->nv == k->capv) {
        int cap = k->capv ? 2 * k->capv : 256;
        nst__pv *p;
        if (k->nv >= NST__PK_MAX_VALUES) return -1;
        p = (nst__pv *)nst__realloc(k->v, sizeof *p * (size_t)cap);
        if (!p) return -1;
        k->v = p; k->capv = cap;
    }
    v = &k->v[k->nv];
    memset(v, 0, sizeof *v);
    v->type = type;
    v->ref = -1;
    v->voff = -1;
    return k->nv++;
}

static int nst__pk_push_item(nst__pickle *k, int owner, int item) {
    nst__pv *o = &k->v[owner];
    if (o->n == o->cap) {
        int cap = o->cap ? 2 * o->cap : 4;
        int *p;
        if (o->n >= NST__PK_MAX_VALUES) return 0;
        p = (int *)nst__realloc(o->items, sizeof *p * (size_t)cap);
        if (!p) return 0;
        o->items = p; o->cap = cap;
    }
    o->items[o->n++] = item;
    return 1;
}

static int nst__pk_push(nst__pickle *k, int v) {
    if (v < 0) return 0;
    if (k->sp == k->capstack) {
        int cap = k->capstack ? 2 * k->capstack : 256;
        int *p;
        if (k->sp >= NST__PK_MAX_STACK) return 0;
        p = (int *)nst__realloc(k->stack, sizeof *p * (size_t)cap);
        if (!p) return 0;
        k->stack = p; k->capstack = cap;
    }
    k->stack[k->sp++] = v;
    return 1;
}

static int nst__pk_str_is(const nst__pv *v, const char *s) {
    return v->type == NST__PV_STR && v->sn == strlen(s) && memcmp(v->s, s, v->sn) == 0;
}
static int nst__pk_global_is(const nst__pv *v, const char *mod, const char *name) {
    return v->type == NST__PV_GLOBAL && v->sn == strlen(mod) && memcmp(v->s, mod, v->sn) == 0 &&
           v->sn2 == strlen(name) && memcmp(v->s2, name, v->sn2) == 0;
}

/* The element type a torch storage class name stands for (FloatStorage, ...). */
static int nst__torch_storage_dtype(const nst__pv *g) {
    static const char *const names[] = {"FloatStorage", "HalfStorage", "DoubleStorage", "BFloat16Storage"};
    static const int dts[] = {NST__DT_F32, NST__DT_F16, NST__DT_F64, NST__DT_BF16};
    int i;
    if (g->type != NST__PV_GLOBAL) return -1;
    for (i = 0; i < 4; i++)
        if (g->sn2 == strlen(names[i]) && memcmp(g->s2, names[i], g->sn2) == 0) return dts[i];
    if (g->sn2 > 7 && memcmp(g->s2 + g->sn2 - 7, "Storage", 7) == 0) return NST__DT_NONE;   /* Long, Byte, ... */
    return -1;
}
static int nst__torch_dtype_global(const nst__pv *g) {   /* torch.float32 & co (rebuild_tensor_v3) */
    if (g->type != NST__PV_GLOBAL) return -1;
    if (nst__pk_global_is(g, "torch", "float32") || nst__pk_global_is(g, "torch", "float")) return NST__DT_F32;
    if (nst__pk_global_is(g, "torch", "float16") || nst__pk_global_is(g, "torch", "half")) return NST__DT_F16;
    if (nst__pk_global_is(g, "torch", "float64") || nst__pk_global_is(g, "torch", "double")) return NST__DT_F64;
    if (nst__pk_global_is(g, "torch", "bfloat16")) return NST__DT_BF16;
    return NST__DT_NONE;
}

/* A shape or stride tuple of small non-negative ints; returns ndim or -1. */
static int nst__pk_int_tuple(const nst__pickle *k, int t, int64_t *out) {
    const nst__pv *v;
    int i;
    if (t < 0) return -1;
    v = &k->v[t];
    if (v->type != NST__PV_TUPLE && v->type != NST__PV_LIST) return -1;
    if (v->n > 8) return -1;
    for (i = 0; i < v->n; i++) {
        const nst__pv *e = &k->v[v->items[i]];
        if (e->type != NST__PV_INT || e->i < 0 || e->i > ((int64_t)1 << 40)) return -1;
        out[i] = e->i;
    }
    return v->n;
}

/* Builds a TENSOR from (storage, offset, size, stride); -1 if the arguments do not fit. */
static int nst__pk_make_tensor(nst__pickle *k, int storage, int offset, int size, int stride) {
    int t, nd, ns;
    int64_t sh[8], st[8];
    if (k->v[storage].type != NST__PV_STORAGE || k->v[offset].type != NST__PV_INT || k->v[offset].i < 0) return -1;
    nd = nst__pk_int_tuple(k, size, sh);
    ns = nst__pk_int_tuple(k, stride, st);
    if (nd < 0 || ns != nd) return -1;
    if ((t = nst__pk_new(k, NST__PV_TENSOR)) < 0) return -1;
    k->v[t].ref = storage;
    k->v[t].i = k->v[offset].i;
    k->v[t].ndim = nd;
    memcpy(k->v[t].shape, sh, sizeof sh);
    memcpy(k->v[t].stride, st, sizeof st);
    return t;
}

/* Applies a callable to an argument tuple: the constructors state dicts use; anything else
 * becomes an opaque object (an error only if a conv tensor turns out to live inside it). */
static int nst__pk_call(nst__pickle *k, int fn, int args) {
    const nst__pv *f = &k->v[fn], *a = &k->v[args];
    int r;
    if (a->type != NST__PV_TUPLE) return nst__pk_new(k, NST__PV_OBJ);
    if (nst__pk_global_is(f, "collections", "OrderedDict") || nst__pk_global_is(f, "builtins", "dict") ||
        nst__pk_global_is(f, "__builtin__", "dict"))
        return nst__pk_new(k, NST__PV_DICT);
    if ((nst__pk_global_is(f, "torch._utils", "_rebuild_tensor_v2") && a->n >= 4) ||
        (nst__pk_global_is(f, "torch._utils", "_rebuild_tensor") && a->n == 4)) {
        r = nst__pk_make_tensor(k, a->items[0], a->items[1], a->items[2], a->items[3]);
        return r >= 0 ? r : nst__pk_new(k, NST__PV_OBJ);
    }
    if (nst__pk_global_is(f, "torch._utils", "_rebuild_tensor_v3") && a->n >= 7) {
        int dt = nst__torch_dtype_global(&k->v[a->items[6]]);
        r = nst__pk_make_tensor(k, a->items[0], a->items[1], a->items[2], a->items[3]);
        if (r >= 0 && dt >= 0) k->v[k->v[r].ref].dtype = dt;
        return r >= 0 ? r : nst__pk_new(k, NST__PV_OBJ);
    }
    if ((nst__pk_global_is(f, "torch._utils", "_rebuild_parameter") ||
         nst__pk_global_is(f, "torch._utils", "_rebuild_parameter_with_state")) && a->n >= 1)
        return a->items[0];
    if (nst__pk_global_is(f, "numpy.core.multiarray", "_reconstruct") ||
        nst__pk_global_is(f, "numpy._core.multiarray", "_reconstruct"))
        return nst__pk_new(k, NST__PV_NDARRAY);
    if (nst__pk_global_is(f, "numpy", "dtype") && a->n >= 1 && k->v[a->items[0]].type == NST__PV_STR) {
        const nst__pv *code = &k->v[a->items[0]];
        int dt = NST__DT_NONE;
        if (code->sn == 2 && code->s[0] == 'f') dt = code->s[1] == '4' ? NST__DT_F32 : code->s[1] == '2' ? NST__DT_F16 :
                                                     code->s[1] == '8' ? NST__DT_F64 : NST__DT_NONE;
        if ((r = nst__pk_new(k, NST__PV_DTYPE)) >= 0) k->v[r].dtype = dt;
        return r;
    }
    r = nst__pk_new(k, NST__PV_OBJ);
    if (r >= 0) k->v[r].ref = fn;
    return r;
}

/* BUILD: sets state on the object below it. Used for NumPy arrays and dtypes, the oldest torch
 * tensors (torch.FloatTensor() + state tuple), and module objects whose __dict__ holds parameters. */
static void nst__pk_build(nst__pickle *k, int obj, int state) {
    nst__pv *o = &k->v[obj];
    const nst__pv *s = &k->v[state];
    if (o->type == NST__PV_DTYPE && s->type == NST__PV_TUPLE && s->n >= 2) {
        const nst__pv *bo = &k->v[s->items[1]];
        if (bo->type == NST__PV_STR && bo->sn == 1) o->swap = bo->s[0] == '>';
    } else if (o->type == NST__PV_NDARRAY && s->type == NST__PV_TUPLE && s->n >= 5) {
        /* (version, shape, dtype, fortran_order, raw data) */
        const nst__pv *dt = &k->v[s->items[2]], *fo = &k->v[s->items[3]], *raw = &k->v[s->items[4]];
        int nd = nst__pk_int_tuple(k, s->items[1], o->shape);
        if (raw->type == NST__PV_LIST || raw->type == NST__PV_TUPLE) { o->i = s->items[4] + 1; return; }   /* object array */
        if (nd < 0 || dt->type != NST__PV_DTYPE || raw->type != NST__PV_STR) return;
        o->ndim = nd;
        o->dtype = dt->dtype;
        o->swap = dt->swap;
        o->fortran = (fo->type == NST__PV_BOOL || fo->type == NST__PV_INT) && fo->i;
        o->s = raw->s;
        o->sn = raw->sn;
        o->ref = 1;   /* built */
    } else if (o->type == NST__PV_OBJ && s->type == NST__PV_TUPLE && s->n == 4 && o->ref >= 0 &&
               nst__torch_storage_dtype(&k->v[o->ref]) < 0 && k->v[o->ref].type == NST__PV_GLOBAL &&
               k->v[o->ref].sn2 > 6 && memcmp(k->v[o->ref].s2 + k->v[o->ref].sn2 - 6, "Tensor", 6) == 0) {
        int t = nst__pk_make_tensor(k, s->items[0], s->items[1], s->items[2], s->items[3]);
        if (t >= 0) {
            nst__pv tv = k->v[t];
            k->v[obj] = tv;          /* becomes the tensor in place (aliases see it too) */
            k->v[t].items = NULL;
        }
    } else if (o->type == NST__PV_OBJ && (s->type == NST__PV_DICT || s->type == NST__PV_TUPLE)) {
        o->i = state + 1;          /* remember the state; walked when looking for tensors */
    }
}

/* Resolves a persistent id ('storage', type, key, location, numel[, view]) to a STORAGE value. */
static int nst__pk_persid(nst__pickle *k, int pid) {
    const nst__pv *t = &k->v[pid], *ty, *key, *numel;
    int r, dt;
    if (t->type != NST__PV_TUPLE || t->n < 5 || !nst__pk_str_is(&k->v[t->items[0]], "storage")) return -1;
    ty = &k->v[t->items[1]]; key = &k->v[t->items[2]]; numel = &k->v[t->items[4]];
    dt = nst__torch_storage_dtype(ty);
    if (dt < 0 || key->type != NST__PV_STR || numel->type != NST__PV_INT || numel->i < 0) return -1;
    if ((r = nst__pk_new(k, NST__PV_STORAGE)) < 0) return -1;
    t = &k->v[pid]; key = &k->v[t->items[2]]; numel = &k->v[t->items[4]];
    k->v[r].dtype = dt;
    k->v[r].s = key->s; k->v[r].sn = key->sn;
    k->v[r].i = numel->i;
    if (t->n >= 6 && k->v[t->items[5]].type == NST__PV_TUPLE) {
        /* legacy view: (view_key, offset, size) within the root storage */
        const nst__pv *vm = &k->v[t->items[5]];
        if (vm->n == 3 && k->v[vm->items[1]].type == NST__PV_INT && k->v[vm->items[2]].type == NST__PV_INT &&
            k->v[vm->items[1]].i >= 0 && k->v[vm->items[2]].i >= 0) {
            k->v[r].voff = k->v[vm->items[1]].i;
            k->v[r].vlen = k->v[vm->items[2]].i;
        } else {
            return -1;
        }
    }
    return r;
}

/* Runs one pickle from p[*pos] to its STOP; *result = the value left on the stack. */
static nst_status nst__pickle_run(nst__pickle *k, const unsigned char *p, size_t n, size_t *pos, int *result) {
    size_t i = *pos;
    int top, a, b;
    k->sp = 0; k->nmarks = 0; k->memo_next = 0;
    if (k->memo) memset(k->memo, 0xFF, sizeof *k->memo * (size_t)k->memo_hi);
    k->memo_hi = 0;
#define NST__PK_NEED(m) do { if (n - i < (size_t)(m)) return nst__err(NST_ERR_FORMAT, "pickle: truncated at byte %lu", (unsigned long)i); } while (0)
#define NST__PK_POP(x) do { if (k->sp <= (k->nmarks ? k->marks[k->nmarks - 1] : 0)) return nst__err(NST_ERR_FORMAT, "pickle: stack underflow at byte %lu", (unsigned long)(i - 1)); (x) = k->stack[--k->sp]; } while (0)
#define NST__PK_PUSH(x) do { if (!nst__pk_push(k, (x))) return nst__err(NST_ERR_NOMEM, "pickle: too many values or out of memory"); } while (0)
    for (;;) {
        int op;
        if (i >= n) return nst__err(NST_ERR_FORMAT, "pickle: truncated (no STOP)");
        op = p[i++];
        switch (op) {
        case 0x80: NST__PK_NEED(1); i++; break;                       /* PROTO */
        case 0x95: NST__PK_NEED(8); i += 8; break;                    /* FRAME: just a length hint */
        case '.':                                                     /* STOP */
            if (k->sp != 1 || k->nmarks) return nst__err(NST_ERR_FORMAT, "pickle: STOP with %d values on the stack", k->sp);
            *result = k->stack[0];
            *pos = i;
            return NST_OK;
        case '(':                                                     /* MARK */
            if (k->nmarks == k->capmarks) {
                int cap = k->capmarks ? 2 * k->capmarks : 64;
                int *q;
                if (k->nmarks >= NST__PK_MAX_STACK) return nst__err(NST_ERR_LIMIT, "pickle: nesting too deep");
                q = (int *)nst__realloc(k->marks, sizeof *q * (size_t)cap);
                if (!q) return nst__err(NST_ERR_NOMEM, "pickle: out of memory");
                k->marks = q; k->capmarks = cap;
            }
            k->marks[k->nmarks++] = k->sp;
            break;
        case 'N': NST__PK_PUSH(nst__pk_new(k, NST__PV_NONE)); break;
        case 0x88: case 0x89:                                         /* NEWTRUE, NEWFALSE */
            a = nst__pk_new(k, NST__PV_BOOL);
            if (a >= 0) k->v[a].i = op == 0x88;
            NST__PK_PUSH(a);
            break;
        case 'J': case 'K': case 'M': {                               /* BININT, BININT1, BININT2 */
            int64_t v;
            if (op == 'J') { NST__PK_NEED(4); v = (int32_t)nst__rd32le(p + i); i += 4; }
            else if (op == 'K') { NST__PK_NEED(1); v = p[i]; i += 1; }
            else { NST__PK_NEED(2); v = nst__rd16le(p + i); i += 2; }
            a = nst__pk_new(k, NST__PV_INT);
            if (a >= 0) k->v[a].i = v;
            NST__PK_PUSH(a);
            break;
        }
        case 0x8a: case 0x8b: {                                       /* LONG1, LONG4 */
            size_t len;
            if (op == 0x8a) { NST__PK_NEED(1); len = p[i++]; }
            else { NST__PK_NEED(4); len = nst__rd32le(p + i); i += 4; }
            NST__PK_NEED(len);
            if (len <= 8) {
                uint64_t u = 0;
                size_t j;
                for (j = 0; j < len; j++) u |= (uint64_t)p[i + j] << (8 * j);
                if (len && len < 8 && (p[i + len - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * len);   /* sign-extend */
                a = nst__pk_new(k, NST__PV_INT);
                if (a >= 0) k->v[a].i = (int64_t)u;
            } else {
                a = nst__pk_new(k, NST__PV_BIGINT);
                if (a >= 0) { k->v[a].s = p + i; k->v[a].sn = len; }
            }
            i += len;
            NST__PK_PUSH(a);
            break;
        }
        case 'I': case 'L': {                                         /* INT, LONG (text lines) */
            const unsigned char *e = (const unsigned char *)memchr(p + i, '\n', n - i);
            int64_t v = 0;
            int neg = 0;
            size_t j = i;
            if (!e) return nst__err(NST_ERR_FORMAT, "pickle: truncated text integer");
            if (j < (size_t)(e - p) && p[j] == '-') { neg = 1; j++; }
            for (; j < (size_t)(e - p) && nst__is_digit(p[j]); j++) {
                if (v > ((int64_t)1 << 56)) return nst__err(NST_ERR_UNSUPPORTED, "pickle: text integer too large");
                v = v * 10 + (p[j] - '0');
            }
            i = (size_t)(e - p) + 1;
            a = nst__pk_new(k, NST__PV_INT);
            if (a >= 0) k->v[a].i = neg ? -v : v;
            NST__PK_PUSH(a);
            break;
        }
        case 'G': {                                                   /* BINFLOAT (big-endian) */
            NST__PK_NEED(8);   /* floats never matter for weights: kept as an opaque value */
            i += 8;
            NST__PK_PUSH(nst__pk_new(k, NST__PV_FLOAT));
            break;
        }
        case 'X': case 0x8c: case 0x8d: case 'T': case 'U': case 'B': case 'C': case 0x8e: {
            /* BINUNICODE, SHORT_BINUNICODE, BINUNICODE8, BINSTRING, SHORT_BINSTRING, BINBYTES, SHORT_BINBYTES, BINBYTES8 */
            uint64_t len;
            if (op == 0x8c || op == 'U' || op == 'C') { NST__PK_NEED(1); len = p[i]; i += 1; }
            else if (op == 0x8d || op == 0x8e) { NST__PK_NEED(8); len = nst__rd64le(p + i); i += 8; }
            else { NST__PK_NEED(4); len = nst__rd32le(p + i); i += 4; }
            if (len > n - i) return nst__err(NST_ERR_FORMAT, "pickle: string of %llu bytes past the end", (unsigned long long)len);
            a = nst__pk_new(k, NST__PV_STR);
            if (a >= 0) { k->v[a].s = p + i; k->v[a].sn = (size_t)len; }
            i += (size_t)len;
            NST__PK_PUSH(a);
            break;
        }
        case 'V': case 'S': {                                         /* UNICODE, STRING (text lines) */
            const unsigned char *e = (const unsigned char *)memchr(p + i, '\n', n - i);
            size_t s0 = i, s1;
            if (!e) return nst__err(NST_ERR_FORMAT, "pickle: truncated text string");
            s1 = (size_t)(e - p);
            if (op == 'S' && s1 - s0 >= 2 && (p[s0] == '\'' || p[s0] == '"') && p[s1 - 1] == p[s0]) { s0++; s1--; }
            a = nst__pk_new(k, NST__PV_STR);
            if (a >= 0) { k->v[a].s = p + s0; k->v[a].sn = s1 - s0; }
            i = (size_t)(e - p) + 1;
            NST__PK_PUSH(a);
            break;
        }
        case ')': NST__PK_PUSH(nst__pk_new(k, NST__PV_TUPLE)); break;
        case ']': NST__PK_PUSH(nst__pk_new(k, NST__PV_LIST)); break;
        case '}': NST__PK_PUSH(nst__pk_new(k, NST__PV_DICT)); break;
        case 't': case 'l': case 'd': {                               /* TUPLE, LIST, DICT from the mark */
            int m, j;
            if (!k->nmarks) return nst__err(NST_ERR_FORMAT, "pickle: no MARK for opcode '%c'", op);
            m = k->marks[--k->nmarks];
            a = nst__pk_new(k, op == 't' ? NST__PV_TUPLE : op == 'l' ? NST__PV_LIST : NST__PV_DICT);
            if (a < 0) return nst__err(NST_ERR_NOMEM, "pickle: too many values");
            if (op == 'd' && ((k->sp - m) & 1)) return nst__err(NST_ERR_FORMAT, "pickle: odd DICT item count");
            for (j = m; j < k->sp; j++)
                if (!nst__pk_push_item(k, a, k->stack[j])) return nst__err(NST_ERR_NOMEM, "pickle: out of memory");
            k->sp = m;
            NST__PK_PUSH(a);
            break;
        }
        case 0x85: case 0x86: case 0x87: {                            /* TUPLE1..3 */
            int cnt = op - 0x84, j, base;
            if (k->sp - (k->nmarks ? k->marks[k->nmarks - 1] : 0) < cnt) return nst__err(NST_ERR_FORMAT, "pickle: stack underflow");
            a = nst__pk_new(k, NST__PV_TUPLE);
            if (a < 0) return nst__err(NST_ERR_NOMEM, "pickle: too many values");
            base = k->sp - cnt;
            for (j = base; j < k->sp; j++)
                if (!nst__pk_push_item(k, a, k->stack[j])) return nst__err(NST_ERR_NOMEM, "pickle: out of memory");
            k->sp = base;
            NST__PK_PUSH(a);
            break;
        }
        case 'a':                                                     /* APPEND */
            NST__PK_POP(b);
            if (k->sp < 1) return nst__err(NST_ERR_FORMAT, "pickle: APPEND without a list");
            top = k->stack[k->sp - 1];
            if (k->v[top].type == NST__PV_LIST && !nst__pk_push_item(k, top, b)) return nst__err(NST_ERR_NOMEM, "pickle: out of memory");
            break;
        case 'e': case 'u': {                                         /* APPENDS, SETITEMS */
            int m, j;
            if (!k->nmarks) return nst__err(NST_ERR_FORMAT, "pickle: no MARK for opcode '%c'", op);
            m = k->marks[--k->nmarks];
            if (m < 1) return nst__err(NST_ERR_FORMAT, "pickle: '%c' without a target", op);
            top = k->stack[m - 1];
            if (op == 'u' && ((k->sp - m) & 1)) return nst__err(NST_ERR_FORMAT, "pickle: odd SETITEMS count");
            if ((op == 'e' && k->v[top].type == NST__PV_LIST) || (op == 'u' && k->v[top].type == NST__PV_DICT))
                for (j = m; j < k->sp; j++)
                    if (!nst__pk_push_item(k, top, k->stack[j])) return nst__err(NST_ERR_NOMEM, "pickle: out of memory");
            k->sp = m;
            break;
        }
        case 's': {                                                   /* SETITEM */
            int key, val;
            NST__PK_POP(val);
            NST__PK_POP(key);
            if (k->sp < 1) return nst__err(NST_ERR_FORMAT, "pickle: SETITEM without a dict");
            top = k->stack[k->sp - 1];
            if (k->v[top].type == NST__PV_DICT &&
                (!nst__pk_push_item(k, top, key) || !nst__pk_push_item(k, top, val)))
                return nst__err(NST_ERR_NOMEM, "pickle: out of memory");
            break;
        }
        case 'q': case 'r': case 'p': case 0x94: {                    /* BINPUT, LONG_BINPUT, PUT, MEMOIZE */
            int64_t idx;
            if (k->sp < 1) return nst__err(NST_ERR_FORMAT, "pickle: memo store with an empty stack");
            if (op == 'q') { NST__PK_NEED(1); idx = p[i]; i += 1; }
            else if (op == 'r') { NST__PK_NEED(4); idx = nst__rd32le(p + i); i += 4; }
            else if (op == 'p') {
                const unsigned char *e = (const unsigned char *)memchr(p + i, '\n', n - i);
                size_t j = i;
                if (!e) return nst__err(NST_ERR_FORMAT, "pickle: truncated PUT");
                idx = 0;
                for (; j < (size_t)(e - p) && nst__is_digit(p[j]) && idx < NST__PK_MAX_MEMO; j++) idx = idx * 10 + (p[j] - '0');
                i = (size_t)(e - p) + 1;
            } else {
                idx = -1;   /* MEMOIZE: next free slot, tracked below */
            }
            if (idx < 0) idx = k->memo_next;
            /* picklers number slots 0, 1, 2, ...: an index far past the slots in use is hostile */
            if (idx >= NST__PK_MAX_MEMO || idx > k->memo_next + 65536)
                return nst__err(NST_ERR_LIMIT, "pickle: memo index %lld too large", (long long)idx);
            if (idx >= k->capmemo) {
                int cap = k->capmemo ? k->capmemo : 64, *q;
                while (cap <= idx) cap *= 2;
                q = (int *)nst__realloc(k->memo, sizeof *q * (size_t)cap);
                if (!q) return nst__err(NST_ERR_NOMEM, "pickle: out of memory");
                memset(q + k->capmemo, 0xFF, sizeof *q * (size_t)(cap - k->capmemo));
                k->memo = q; k->capmemo = cap;
            }
            if (k->memo[idx] < 0) k->memo_next++;
            k->memo[idx] = k->stack[k->sp - 1];
            if (idx >= k->memo_hi) k->memo_hi = idx + 1;
            break;
        }
        case 'h': case 'j': case 'g': {                               /* BINGET, LONG_BINGET, GET */
            int64_t idx;
            if (op == 'h') { NST__PK_NEED(1); idx = p[i]; i += 1; }
            else if (op == 'j') { NST__PK_NEED(4); idx = nst__rd32le(p + i); i += 4; }
            else {
                const unsigned char *e = (const unsigned char *)memchr(p + i, '\n', n - i);
                size_t j = i;
                if (!e) return nst__err(NST_ERR_FORMAT, "pickle: truncated GET");
                idx = 0;
                for (; j < (size_t)(e - p) && nst__is_digit(p[j]) && idx < NST__PK_MAX_MEMO; j++) idx = idx * 10 + (p[j] - '0');
                i = (size_t)(e - p) + 1;
            }
            if (idx >= k->capmemo || k->memo[idx] < 0) return nst__err(NST_ERR_FORMAT, "pickle: memo slot %lld is empty", (long long)idx);
            NST__PK_PUSH(k->memo[idx]);
            break;
        }
        case 'c': {                                                   /* GLOBAL "module\nname\n" */
            const unsigned char *e1 = (const unsigned char *)memchr(p + i, '\n', n - i), *e2;
            if (!e1) return nst__err(NST_ERR_FORMAT, "pickle: truncated GLOBAL");
            e2 = (const unsigned char *)memchr(e1 + 1, '\n', n - (size_t)(e1 + 1 - p));
            if (!e2) return nst__err(NST_ERR_FORMAT, "pickle: truncated GLOBAL");
            a = nst__pk_new(k, NST__PV_GLOBAL);
            if (a >= 0) {
                k->v[a].s = p + i; k->v[a].sn = (size_t)(e1 - (p + i));
                k->v[a].s2 = e1 + 1; k->v[a].sn2 = (size_t)(e2 - (e1 + 1));
            }
            i = (size_t)(e2 - p) + 1;
            NST__PK_PUSH(a);
            break;
        }
        case 0x93: {                                                  /* STACK_GLOBAL */
            int mod, name;
            NST__PK_POP(name);
            NST__PK_POP(mod);
            if (k->v[mod].type != NST__PV_STR || k->v[name].type != NST__PV_STR)
                return nst__err(NST_ERR_FORMAT, "pickle: STACK_GLOBAL needs two strings");
            a = nst__pk_new(k, NST__PV_GLOBAL);
            if (a >= 0) {
                k->v[a].s = k->v[mod].s; k->v[a].sn = k->v[mod].sn;
                k->v[a].s2 = k->v[name].s; k->v[a].sn2 = k->v[name].sn;
            }
            NST__PK_PUSH(a);
            break;
        }
        case 'R': case 0x81: {                                        /* REDUCE, NEWOBJ */
            int fn, args;
            NST__PK_POP(args);
            NST__PK_POP(fn);
            a = nst__pk_call(k, fn, args);
            NST__PK_PUSH(a);
            break;
        }
        case 'b': {                                                   /* BUILD */
            int state;
            NST__PK_POP(state);
            if (k->sp < 1) return nst__err(NST_ERR_FORMAT, "pickle: BUILD without an object");
            nst__pk_build(k, k->stack[k->sp - 1], state);
            break;
        }
        case 'Q': {                                                   /* BINPERSID */
            int pid;
            NST__PK_POP(pid);
            a = nst__pk_persid(k, pid);
            if (a < 0) return nst__err(NST_ERR_UNSUPPORTED, "pickle: persistent id at byte %lu is not a torch storage we read",
                                       (unsigned long)(i - 1));
            NST__PK_PUSH(a);
            break;
        }
        case '0': NST__PK_POP(a); (void)a; break;                     /* POP */
        case '1':                                                     /* POP_MARK */
            if (!k->nmarks) return nst__err(NST_ERR_FORMAT, "pickle: POP_MARK without MARK");
            k->sp = k->marks[--k->nmarks];
            break;
        case '2':                                                     /* DUP */
            if (k->sp < 1) return nst__err(NST_ERR_FORMAT, "pickle: DUP on an empty stack");
            NST__PK_PUSH(k->stack[k->sp - 1]);
            break;
        default:
            return nst__err(NST_ERR_UNSUPPORTED, "pickle: opcode 0x%02x at byte %lu is not supported by this reader",
                            op, (unsigned long)(i - 1));
        }
    }
#undef NST__PK_NEED
#undef NST__PK_POP
#undef NST__PK_PUSH
}

/* Walks the unpickled object for tensors/arrays, building dotted key names ("model.features.0.weight",
 * "conv1_1.0" for {"conv1_1": [W, b]}). Iterative with an explicit stack and a depth cap, so hostile
 * nesting costs neither recursion nor time (each container is visited once per path, capped). */
typedef void (*nst__pk_visit)(void *user, const char *key, int value);
static nst_status nst__pickle_walk(nst__pickle *k, int root, nst__pk_visit visit, void *user) {
    enum { MAXD = 12 };
    struct { int v, next; size_t keylen; } st[MAXD];
    char key[512];
    int d = 0;
    long budget = 1L << 20;   /* paths visited; real state dicts need hundreds, a self-referencing list hits this */
    st[0].v = root; st[0].next = 0; st[0].keylen = 0;
    while (d >= 0) {
        const nst__pv *c = &k->v[st[d].v], *cv;
        int child = -1;
        char comp[128];
        size_t base = st[d].keylen, cl, nl;
        if (--budget < 0) return nst__err(NST_ERR_LIMIT, "pickle: object too large to search");
        comp[0] = 0;
        if ((c->type == NST__PV_OBJ || c->type == NST__PV_NDARRAY) && c->i > 0 && st[d].next == 0) {
            child = (int)c->i - 1;        /* an object: look inside its state (a module's __dict__) */
            st[d].next = 1;
        } else if (c->type == NST__PV_DICT && st[d].next < c->n / 2) {
            const nst__pv *kv = &k->v[c->items[2 * st[d].next]];
            child = c->items[2 * st[d].next + 1];
            if (kv->type == NST__PV_STR) snprintf(comp, sizeof comp, "%.*s", (int)(kv->sn < 100 ? kv->sn : 100), (const char *)kv->s);
            else if (kv->type == NST__PV_INT) snprintf(comp, sizeof comp, "%lld", (long long)kv->i);
            else snprintf(comp, sizeof comp, "?");
            st[d].next++;
        } else if ((c->type == NST__PV_LIST || c->type == NST__PV_TUPLE) && st[d].next < c->n) {
            child = c->items[st[d].next];
            snprintf(comp, sizeof comp, "%d", st[d].next);
            st[d].next++;
        }
        if (child < 0) { d--; continue; }
        /* components starting with '_' (_modules, _parameters) are plumbing: leave them out */
        cl = strlen(comp);
        nl = base;
        if (cl && comp[0] != '_' && base + cl + 2 < sizeof key) {
            if (base) key[nl++] = '.';
            memcpy(key + nl, comp, cl);
            nl += cl;
        }
        key[nl] = 0;
        cv = &k->v[child];
        if (cv->type == NST__PV_TENSOR || (cv->type == NST__PV_NDARRAY && cv->i == 0)) {
            visit(user, key, child);
        } else if ((cv->type == NST__PV_DICT || cv->type == NST__PV_LIST || cv->type == NST__PV_TUPLE ||
                    ((cv->type == NST__PV_OBJ || cv->type == NST__PV_NDARRAY) && cv->i > 0)) && d + 1 < MAXD) {
            d++;
            st[d].v = child; st[d].next = 0; st[d].keylen = nl;
        }
    }
    return NST_OK;
}

static nst_input_convention nst__torchvision_convention(void) {
    nst_input_convention c;
    c.bgr = 0; c.scale = 1.0f;
    c.mean[0] = 0.485f; c.mean[1] = 0.456f; c.mean[2] = 0.406f;
    c.std[0] = 0.229f; c.std[1] = 0.224f; c.std[2] = 0.225f;
    return c;
}

/* PyTorch files carry no convention; the key names tell the source. torchvision trained on RGB
 * with ImageNet statistics; files with Caffe-style names (Gatys' vgg_conv.pth, jcjohnson's converted
 * models) hold the Caffe weights and expect Caffe's input. */
static void nst__torch_finish(const nst__collect *c, const char *container, nst__tensor_list *out) {
    out->has_conv = 1;
    out->conv = c->tv_names ? nst__torchvision_convention() : nst__caffe_convention();
    snprintf(out->format, sizeof out->format, "pytorch %s (%s names)", container, c->tv_names ? "torchvision" : "caffe-style");
}

/* ===================================================================================================
 * PyTorch: zip container and legacy stream
 * =================================================================================================*/
typedef struct nst__torch_ctx {
    nst__pickle *k;
    nst__collect *c;
} nst__torch_ctx;

static void nst__torch_visit(void *user, const char *key, int value) {
    nst__torch_ctx *x = (nst__torch_ctx *)user;
    const nst__pv *t = &x->k->v[value];
    nst__src *s;
    if (t->type != NST__PV_TENSOR) { x->c->ignored++; return; }
    if (!(s = nst__collect_slot(x->c, key))) return;
    s->dtype = x->k->v[t->ref].dtype;
    s->ndim = t->ndim;
    memcpy(s->shape, t->shape, sizeof s->shape);
    memcpy(s->stride, t->stride, sizeof s->stride);
    s->offset = (uint64_t)t->i;
    s->aux = t->ref;       /* the STORAGE value; bytes resolved later */
}

/* Points a slot at its storage bytes: base = the storage's first element, checked against the
 * bytes present; legacy views add their offset and narrow the length. */
static nst_status nst__torch_bind(nst__src *s, const nst__pv *sto, const unsigned char *bytes, uint64_t nbytes, int swap) {
    uint64_t es = (uint64_t)nst__dt_size(sto->dtype), elems;
    if (!es) return nst__err(NST_ERR_UNSUPPORTED, "pytorch: '%s' is not a floating-point tensor", s->origin);
    elems = nbytes / es;
    if ((uint64_t)sto->i > elems)
        return nst__err(NST_ERR_FORMAT, "pytorch: storage of '%s' holds %llu elements, the file has %llu",
                        s->origin, (unsigned long long)sto->i, (unsigned long long)elems);
    elems = (uint64_t)sto->i;
    if (sto->voff >= 0) {
        if ((uint64_t)sto->voff > elems || (uint64_t)sto->vlen > elems - (uint64_t)sto->voff)
            return nst__err(NST_ERR_FORMAT, "pytorch: storage view of '%s' is out of range", s->origin);
        bytes += (uint64_t)sto->voff * es;
        elems = (uint64_t)sto->vlen;
    }
    s->p = bytes;
    s->elems = elems;
    s->swap = swap;
    return NST_OK;
}

static nst_status nst__import_torch_zip(const nst__zip *z, int flags, nst__tensor_list *out) {
    const nst__zip_entry *pk = NULL;
    size_t i, plen = 0;
    const unsigned char *pb;
    size_t pn, pos = 0;
    nst__pickle k;
    nst__collect c;
    nst__torch_ctx x;
    nst_status st;
    int root, swap = 0, li;
    char prefix[256];
    for (i = 0; i < z->count; i++) {
        const nst__zip_entry *e = &z->e[i];
        if (e->name_len >= 8 && memcmp(e->name + e->name_len - 8, "data.pkl", 8) == 0 &&
            (e->name_len == 8 || e->name[e->name_len - 9] == '/') && (!pk || e->name_len < pk->name_len))
            pk = e;
    }
    if (!pk) return nst__err(NST_ERR_FORMAT, "pytorch: zip archive without data.pkl");
    plen = pk->name_len - 8;
    if (plen >= sizeof prefix - 32) return nst__err(NST_ERR_FORMAT, "pytorch: archive name too long");
    memcpy(prefix, pk->name, plen);
    prefix[plen] = 0;
    memset(&k, 0, sizeof k);
    memset(&c, 0, sizeof c);
    {
        char bo[300];
        const nst__zip_entry *e;
        snprintf(bo, sizeof bo, "%sbyteorder", prefix);
        if ((e = nst__zip_find(z, bo, strlen(bo))) != NULL) {
            const unsigned char *b;
            size_t bn;
            if ((st = nst__zip_read(z, e, &c, &b, &bn)) != NST_OK) goto done;
            if (bn == 3 && memcmp(b, "big", 3) == 0) swap = 1;
        }
    }
    if ((st = nst__zip_read(z, pk, &c, &pb, &pn)) != NST_OK) goto done;
    if ((st = nst__pickle_run(&k, pb, pn, &pos, &root)) != NST_OK) goto done;
    x.k = &k; x.c = &c;
    if ((st = nst__pickle_walk(&k, root, nst__torch_visit, &x)) != NST_OK) goto done;
    if ((st = nst__collect_plan(&c, flags)) != NST_OK) goto done;
    for (li = 0; li < 2 * c.nkeep; li++) {
        nst__src *s = li & 1 ? &c.b[li / 2] : &c.w[li / 2];
        const nst__pv *sto = &k.v[s->aux];
        const nst__zip_entry *e;
        const unsigned char *b;
        size_t bn;
        char name[400];
        snprintf(name, sizeof name, "%sdata/%.*s", prefix, (int)(sto->sn < 64 ? sto->sn : 64), (const char *)sto->s);
        if (!(e = nst__zip_find(z, name, strlen(name)))) {
            st = nst__err(NST_ERR_FORMAT, "pytorch: storage '%s' of '%s' is missing from the archive", name, s->origin);
            goto done;
        }
        if ((st = nst__zip_read(z, e, &c, &b, &bn)) != NST_OK) goto done;
        if ((st = nst__torch_bind(s, sto, b, bn, swap)) != NST_OK) goto done;
    }
    if ((st = nst__collect_finish(&c, out)) == NST_OK) nst__torch_finish(&c, "zip", out);
done:
    nst__pickle_free(&k);
    nst__collect_free(&c);
    return st;
}

/* Element sizes of the legacy storages, by key: one pass over the persistent ids, sorted, then a
 * binary search per key, so a file with many keys and values costs O(n log n), not O(n^2). */
typedef struct nst__legacy_key {
    const unsigned char *s;
    size_t n;
    int width;   /* bytes per element; -1 = a storage type this reader cannot size */
} nst__legacy_key;

static int nst__legacy_key_cmp(const void *a, const void *b) {
    const nst__legacy_key *x = (const nst__legacy_key *)a, *y = (const nst__legacy_key *)b;
    int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
    return c ? c : (x->n < y->n ? -1 : x->n > y->n);
}

static nst_status nst__legacy_key_table(const nst__pickle *k, nst__legacy_key **out, int *count) {
    static const char *const nm[] = {"FloatStorage", "HalfStorage", "DoubleStorage", "BFloat16Storage", "LongStorage",
                                     "IntStorage", "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage"};
    static const int w[] = {4, 2, 8, 2, 8, 4, 2, 1, 1, 1};
    nst__legacy_key *t;
    int q, z, n = 0;
    *out = NULL; *count = 0;
    for (q = 0; q < k->nv; q++)
        if (k->v[q].type == NST__PV_TUPLE && k->v[q].n >= 5 && nst__pk_str_is(&k->v[k->v[q].items[0]], "storage") &&
            k->v[k->v[q].items[2]].type == NST__PV_STR) n++;
    t = (nst__legacy_key *)nst__calloc(n ? (size_t)n : 1, sizeof *t);
    if (!t) return nst__err(NST_ERR_NOMEM, "pytorch: out of memory");
    n = 0;
    for (q = 0; q < k->nv; q++) {
        const nst__pv *v = &k->v[q], *g;
        if (!(v->type == NST__PV_TUPLE && v->n >= 5 && nst__pk_str_is(&k->v[v->items[0]], "storage") &&
              k->v[v->items[2]].type == NST__PV_STR)) continue;
        g = &k->v[v->items[1]];
        t[n].s = k->v[v->items[2]].s;
        t[n].n = k->v[v->items[2]].sn;
        t[n].width = -1;
        for (z = 0; z < 10; z++)
            if (g->type == NST__PV_GLOBAL && g->sn2 == strlen(nm[z]) && memcmp(g->s2, nm[z], g->sn2) == 0) t[n].width = w[z];
        n++;
    }
    qsort(t, (size_t)n, sizeof *t, nst__legacy_key_cmp);
    *out = t;
    *count = n;
    return NST_OK;
}

/* Element size of a storage key: 0 = not referenced by the object, -1 = unknown type. */
static int nst__legacy_elem_size(const nst__legacy_key *t, int n, const nst__pv *key) {
    nst__legacy_key probe;
    const nst__legacy_key *hit;
    probe.s = key->s; probe.n = key->sn; probe.width = 0;
    hit = n ? (const nst__legacy_key *)bsearch(&probe, t, (size_t)n, sizeof *t, nst__legacy_key_cmp) : NULL;
    return hit ? hit->width : 0;
}

static nst_status nst__import_torch_legacy(const unsigned char *p, size_t n, int flags, nst__tensor_list *out) {
    static const unsigned char magic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
    nst__pickle k;
    nst__collect c;
    nst__torch_ctx x;
    nst_status st;
    size_t pos = 0, j;
    int v, root, keys, swap = 0, li;
    uint64_t *koff = NULL, *klen = NULL;
    nst__legacy_key *ktab = NULL;
    int nktab = 0;
    memset(&k, 0, sizeof k);
    memset(&c, 0, sizeof c);
    if ((st = nst__pickle_run(&k, p, n, &pos, &v)) != NST_OK) goto done;
    if (k.v[v].type != NST__PV_BIGINT || k.v[v].sn != 10 || memcmp(k.v[v].s, magic, 10) != 0) {
        st = nst__err(NST_ERR_FORMAT, "pytorch: a pickle, but not a torch.save file (no magic number)");
        goto done;
    }
    if ((st = nst__pickle_run(&k, p, n, &pos, &v)) != NST_OK) goto done;
    if (k.v[v].type != NST__PV_INT || k.v[v].i != 1001) {
        st = nst__err(NST_ERR_UNSUPPORTED, "pytorch: legacy protocol version %lld (this reader knows 1001)", (long long)k.v[v].i);
        goto done;
    }
    if ((st = nst__pickle_run(&k, p, n, &pos, &v)) != NST_OK) goto done;   /* sys info */
    if (k.v[v].type == NST__PV_DICT) {
        int q;
        for (q = 0; q + 1 < k.v[v].n; q += 2)
            if (nst__pk_str_is(&k.v[k.v[v].items[q]], "little_endian")) {
                const nst__pv *b = &k.v[k.v[v].items[q + 1]];
                swap = (b->type == NST__PV_BOOL || b->type == NST__PV_INT) && !b->i;
            }
    }
    if ((st = nst__pickle_run(&k, p, n, &pos, &root)) != NST_OK) goto done;
    if ((st = nst__pickle_run(&k, p, n, &pos, &keys)) != NST_OK) goto done;
    if (k.v[keys].type != NST__PV_LIST) { st = nst__err(NST_ERR_FORMAT, "pytorch: storage key list missing"); goto done; }
    /* the raw storages follow, in key order: u64 element count, then the data. The element size
     * comes from the storages the object refers to. */
    if ((st = nst__legacy_key_table(&k, &ktab, &nktab)) != NST_OK) goto done;
    koff = (uint64_t *)nst__calloc((size_t)k.v[keys].n + 1, sizeof *koff);
    klen = (uint64_t *)nst__calloc((size_t)k.v[keys].n + 1, sizeof *klen);
    if (!koff || !klen) { st = nst__err(NST_ERR_NOMEM, "pytorch: out of memory"); goto done; }
    for (j = 0; j < (size_t)k.v[keys].n; j++) {
        const nst__pv *key = &k.v[k.v[keys].items[j]];
        int es;
        uint64_t cnt;
        if (key->type != NST__PV_STR) { st = nst__err(NST_ERR_FORMAT, "pytorch: storage key is not a string"); goto done; }
        es = nst__legacy_elem_size(ktab, nktab, key);
        if (es <= 0) {
            st = nst__err(es ? NST_ERR_UNSUPPORTED : NST_ERR_FORMAT, "pytorch: storage '%.*s' %s", (int)(key->sn < 64 ? key->sn : 64),
                          (const char *)key->s, es ? "has a type this reader cannot size" : "is not used by the object");
            goto done;
        }
        if (n - pos < 8) { st = nst__err(NST_ERR_FORMAT, "pytorch: truncated before storage %lu of %d", (unsigned long)j, k.v[keys].n); goto done; }
        cnt = nst__rd64le(p + pos);
        if (swap) { uint64_t r = 0; int q; for (q = 0; q < 8; q++) r = (r << 8) | p[pos + q]; cnt = r; }
        pos += 8;
        if (cnt > (uint64_t)(n - pos) / (uint64_t)es) {
            st = nst__err(NST_ERR_FORMAT, "pytorch: storage %lu declares %llu elements, past the end of the file (truncated?)",
                          (unsigned long)j, (unsigned long long)cnt);
            goto done;
        }
        koff[j] = pos;
        klen[j] = cnt * (uint64_t)es;
        pos += (size_t)klen[j];
    }
    x.k = &k; x.c = &c;
    if ((st = nst__pickle_walk(&k, root, nst__torch_visit, &x)) != NST_OK) goto done;
    if ((st = nst__collect_plan(&c, flags)) != NST_OK) goto done;
    for (li = 0; li < 2 * c.nkeep; li++) {
        nst__src *s = li & 1 ? &c.b[li / 2] : &c.w[li / 2];
        const nst__pv *sto = &k.v[s->aux];
        for (j = 0; j < (size_t)k.v[keys].n; j++) {
            const nst__pv *key = &k.v[k.v[keys].items[j]];
            if (key->sn == sto->sn && memcmp(key->s, sto->s, key->sn) == 0) break;
        }
        if (j == (size_t)k.v[keys].n) {
            st = nst__err(NST_ERR_FORMAT, "pytorch: storage of '%s' is not in the file", s->origin);
            goto done;
        }
        if ((st = nst__torch_bind(s, sto, p + koff[j], klen[j], swap)) != NST_OK) goto done;
    }
    if ((st = nst__collect_finish(&c, out)) == NST_OK) nst__torch_finish(&c, "legacy", out);
done:
    nst__free(ktab);
    nst__free(koff);
    nst__free(klen);
    nst__pickle_free(&k);
    nst__collect_free(&c);
    return st;
}

/* ===================================================================================================
 * NumPy: .npy headers, .npz archives, and .npy files holding a pickled dict of arrays
 * =================================================================================================*/
typedef struct nst__npy {
    int dtype, swap, fortran, ndim;
    int64_t shape[8];
    const unsigned char *data;
    size_t data_n;
    int object;            /* dtype '|O': the data is a pickle */
} nst__npy;

static nst_status nst__npy_parse(const unsigned char *p, size_t n, const char *what, nst__npy *r) {
    size_t hl, h0;
    const char *h;
    memset(r, 0, sizeof *r);
    if (n < 10 || memcmp(p, "\x93NUMPY", 6) != 0) return nst__err(NST_ERR_FORMAT, "npy: '%s' is not a .npy array", what);
    if (p[6] == 1) { hl = nst__rd16le(p + 8); h0 = 10; }
    else if (p[6] == 2 || p[6] == 3) { if (n < 12) return nst__err(NST_ERR_FORMAT, "npy: '%s' truncated", what); hl = nst__rd32le(p + 8); h0 = 12; }
    else return nst__err(NST_ERR_UNSUPPORTED, "npy: '%s' has format version %d", what, p[6]);
    if (hl > n - h0 || hl > 65536) return nst__err(NST_ERR_FORMAT, "npy: '%s' header truncated", what);
    h = (const char *)p + h0;
    /* the header is a Python dict literal: {'descr': '<f4', 'fortran_order': False, 'shape': (64, 3, 3, 3), } */
    {
        const char *d = NULL, *f = NULL, *s = NULL;
        size_t k2;
        for (k2 = 0; k2 + 8 < hl; k2++) {
            if (!d && !memcmp(h + k2, "'descr'", 7)) d = h + k2 + 7;
            if (!f && k2 + 15 < hl && !memcmp(h + k2, "'fortran_order'", 15)) f = h + k2 + 15;
            if (!s && !memcmp(h + k2, "'shape'", 7)) s = h + k2 + 7;
        }
        if (!d || !f || !s) return nst__err(NST_ERR_FORMAT, "npy: '%s' header lacks descr/fortran_order/shape", what);
        while (d < h + hl && (*d == ':' || *d == ' ')) d++;
        if (d + 4 > h + hl || (*d != '\'' && *d != '"')) return nst__err(NST_ERR_FORMAT, "npy: '%s' bad descr", what);
        d++;
        if (d[0] == '|' && d[1] == 'O') r->object = 1;
        else {
            char bo = d[0], kind = d[1], sz = d[2];
            if (bo != '<' && bo != '>' && bo != '=' && bo != '|') return nst__err(NST_ERR_FORMAT, "npy: '%s' bad descr", what);
            r->swap = bo == '>';
            if (kind == 'f' && sz == '4') r->dtype = NST__DT_F32;
            else if (kind == 'f' && sz == '2') r->dtype = NST__DT_F16;
            else if (kind == 'f' && sz == '8') r->dtype = NST__DT_F64;
            else r->dtype = NST__DT_NONE;   /* kept: fine unless a conv tensor has it */
            if (r->dtype == NST__DT_F32 && d + 3 < h + hl && d[3] != '\'' && d[3] != '"') r->dtype = NST__DT_NONE;
        }
        while (f < h + hl && (*f == ':' || *f == ' ')) f++;
        r->fortran = f + 4 <= h + hl && !memcmp(f, "True", 4);
        while (s < h + hl && (*s == ':' || *s == ' ')) s++;
        if (s >= h + hl || *s != '(') return nst__err(NST_ERR_FORMAT, "npy: '%s' bad shape", what);
        s++;
        for (;;) {
            int64_t v = 0;
            int any = 0;
            while (s < h + hl && (*s == ' ' || *s == ',')) s++;
            if (s >= h + hl) return nst__err(NST_ERR_FORMAT, "npy: '%s' bad shape", what);
            if (*s == ')') break;
            while (s < h + hl && nst__is_digit(*s)) {
                v = v * 10 + (*s - '0');
                if (v > ((int64_t)1 << 40)) return nst__err(NST_ERR_FORMAT, "npy: '%s' dimension too large", what);
                s++; any = 1;
            }
            while (s < h + hl && *s == 'L') s++;
            if (!any || r->ndim >= 8) return nst__err(NST_ERR_FORMAT, "npy: '%s' bad shape", what);
            r->shape[r->ndim++] = v;
        }
    }
    r->data = p + h0 + hl;
    r->data_n = n - h0 - hl;
    if (!r->object) {
        uint64_t e = 1;
        int d;
        for (d = 0; d < r->ndim; d++) {
            if (r->shape[d] && e > ((uint64_t)1 << 40) / (uint64_t)r->shape[d]) return nst__err(NST_ERR_FORMAT, "npy: '%s' too large", what);
            e *= (uint64_t)r->shape[d];
        }
        if (r->dtype != NST__DT_NONE && e > r->data_n / (uint64_t)nst__dt_size(r->dtype))
            return nst__err(NST_ERR_FORMAT, "npy: '%s' has %llu elements but only %lu data bytes (truncated?)", what,
                            (unsigned long long)e, (unsigned long)r->data_n);
    }
    return NST_OK;
}

/* Fills a slot from an array (C or Fortran order). */
static void nst__src_from_array(nst__src *s, int dtype, int swap, int fortran, int ndim, const int64_t *shape,
                                const unsigned char *data, size_t data_n) {
    int d;
    s->dtype = dtype;
    s->swap = swap;
    nst__src_contiguous(s, ndim, shape);
    if (fortran) {
        int64_t st = 1;
        for (d = 0; d < ndim; d++) { s->stride[d] = st; st *= shape[d] > 0 ? shape[d] : 1; }
    }
    s->p = data;
    s->elems = dtype ? data_n / (size_t)nst__dt_size(dtype) : 0;
}

/* A float array named "input_convention": [bgr, scale, mean0..2, std0..2]. */
static nst_status nst__npy_convention(nst__collect *c, const nst__npy *a) {
    nst__src s;
    float v[8];
    int i;
    memset(&s, 0, sizeof s);
    nst__src_from_array(&s, a->dtype, a->swap, 0, a->ndim, a->shape, a->data, a->data_n);
    if (!a->dtype || s.elems < 8 || a->ndim != 1 || a->shape[0] != 8)
        return nst__err(NST_ERR_FORMAT, "npz: input_convention must hold 8 floats: bgr, scale, mean[3], std[3]");
    for (i = 0; i < 8; i++) v[i] = nst__src_elem(&s, (uint64_t)i);
    c->has_conv = 1;
    c->conv.bgr = v[0] != 0.0f;
    c->conv.scale = v[1];
    for (i = 0; i < 3; i++) { c->conv.mean[i] = v[2 + i]; c->conv.std[i] = v[5 + i]; }
    return NST_OK;
}

static nst_status nst__import_npz(const nst__zip *z, int flags, nst__tensor_list *out) {
    nst__collect c;
    nst_status st = NST_OK;
    size_t i;
    int any_npy = 0;
    memset(&c, 0, sizeof c);
    c.allow_hwio = 1;
    for (i = 0; i < z->count && st == NST_OK; i++) {
        const nst__zip_entry *e = &z->e[i];
        char key[128];
        nst__src *s;
        int kind;
        if (e->name_len < 5 || memcmp(e->name + e->name_len - 4, ".npy", 4) != 0) continue;
        any_npy = 1;
        snprintf(key, sizeof key, "%.*s", (int)(e->name_len - 4 < 120 ? e->name_len - 4 : 120), e->name);
        if (!strcmp(key, "input_convention")) {
            const unsigned char *b;
            size_t bn;
            nst__npy a;
            if ((st = nst__zip_read(z, e, &c, &b, &bn)) == NST_OK && (st = nst__npy_parse(b, bn, key, &a)) == NST_OK)
                st = nst__npy_convention(&c, &a);
            continue;
        }
        if (nst__map_key(key, &kind) == -1) { c.ignored++; continue; }   /* skipped unread: fc layers */
        if (!(s = nst__collect_slot(&c, key))) break;
        s->aux = (int)i;
        /* the shape is in the member's header: read it now (cheap for stored members; deflated ones
         * are inflated once, and only for conv layers) */
        {
            const unsigned char *b;
            size_t bn;
            nst__npy a;
            if ((st = nst__zip_read(z, e, &c, &b, &bn)) != NST_OK) break;
            if ((st = nst__npy_parse(b, bn, key, &a)) != NST_OK) break;
            if (a.object) { st = nst__err(NST_ERR_UNSUPPORTED, "npz: '%s' is an object array", key); break; }
            nst__src_from_array(s, a.dtype, a.swap, a.fortran, a.ndim, a.shape, a.data, a.data_n);
        }
    }
    if (st == NST_OK && !any_npy) st = nst__err(NST_ERR_FORMAT, "npz: zip archive with neither .npy members nor data.pkl");
    if (st == NST_OK) st = nst__collect_plan(&c, flags);
    if (st == NST_OK) st = nst__collect_finish(&c, out);
    if (st == NST_OK && c.has_conv) { out->has_conv = 1; out->conv = c.conv; }
    nst__collect_free(&c);
    return st;
}

typedef struct nst__np_ctx {
    nst__pickle *k;
    nst__collect *c;
} nst__np_ctx;

static void nst__np_visit(void *user, const char *key, int value) {
    nst__np_ctx *x = (nst__np_ctx *)user;
    const nst__pv *a = &x->k->v[value];
    nst__src *s;
    if (a->type != NST__PV_NDARRAY || a->ref != 1) { x->c->ignored++; return; }
    if (!(s = nst__collect_slot(x->c, key))) return;
    nst__src_from_array(s, a->dtype, a->swap, a->fortran, a->ndim, a->shape, a->s, a->sn);
}

/* A .npy whose dtype is object: the pickle of a dict of arrays (e.g. {"conv1_1": [W, b], ...}). */
static nst_status nst__import_npy(const unsigned char *p, size_t n, int flags, nst__tensor_list *out) {
    nst__npy a;
    nst__pickle k;
    nst__collect c;
    nst__np_ctx x;
    nst_status st;
    size_t pos = 0;
    int root;
    if ((st = nst__npy_parse(p, n, ".npy", &a)) != NST_OK) return st;
    if (!a.object)
        return nst__err(NST_ERR_FORMAT, "npy: a single array of %d dimensions, not a set of VGG-19 weights "
                        "(use an .npz with one array per tensor)", a.ndim);
    memset(&k, 0, sizeof k);
    memset(&c, 0, sizeof c);
    c.allow_hwio = 1;
    /* object arrays: the pickle of the array object; the dict is its single element */
    if ((st = nst__pickle_run(&k, a.data, a.data_n, &pos, &root)) == NST_OK) {
        x.k = &k; x.c = &c;
        if ((st = nst__pickle_walk(&k, root, nst__np_visit, &x)) == NST_OK && (st = nst__collect_plan(&c, flags)) == NST_OK)
            st = nst__collect_finish(&c, out);
    }
    nst__pickle_free(&k);
    nst__collect_free(&c);
    return st;
}

/* ===================================================================================================
 * Caffe .caffemodel: protobuf NetParameter
 *   NetParameter:     name 1, layers 2 (V1LayerParameter), layer 100 (LayerParameter)
 *   V1LayerParameter: name 4, type 5 (enum; CONVOLUTION = 4), blobs 6, layer 1 (V0: name 1, type 2, blobs 50)
 *   LayerParameter:   name 1, type 2 (string "Convolution"), blobs 7
 *   BlobProto:        num 1, channels 2, height 3, width 4, data 5 (packed float), shape 7 (dim 1),
 *                     double_data 8
 * =================================================================================================*/
typedef struct nst__pb {
    const unsigned char *p, *end;
} nst__pb;

static int nst__pb_varint(nst__pb *b, uint64_t *v) {
    uint64_t r = 0;
    int sh;
    for (sh = 0; sh < 64 && b->p < b->end; sh += 7) {
        unsigned char ch = *b->p++;
        r |= (uint64_t)(ch & 0x7F) << sh;
        if (!(ch & 0x80)) { *v = r; return 1; }
    }
    return 0;
}

/* Reads one field: number, wire type, value (varint/fixed) or sub-slice (length-delimited). */
static int nst__pb_field(nst__pb *b, uint32_t *field, int *wire, uint64_t *val, nst__pb *sub) {
    uint64_t tag, len;
    if (!nst__pb_varint(b, &tag)) return 0;
    *field = (uint32_t)(tag >> 3);
    *wire = (int)(tag & 7);
    if (*field == 0) return 0;
    switch (*wire) {
    case 0: return nst__pb_varint(b, val);
    case 1: if (b->end - b->p < 8) return 0; *val = nst__rd64le(b->p); b->p += 8; return 1;
    case 5: if (b->end - b->p < 4) return 0; *val = nst__rd32le(b->p); b->p += 4; return 1;
    case 2:
        if (!nst__pb_varint(b, &len) || len > (uint64_t)(b->end - b->p)) return 0;
        sub->p = b->p; sub->end = b->p + len; b->p += len;
        return 1;
    default: return 0;   /* groups (3, 4) are not used by caffe.proto */
    }
}

/* Parses a BlobProto into a slot. Packed data is used in place; unpacked or split data is gathered. */
static nst_status nst__caffe_blob(nst__collect *c, nst__pb blob, nst__src *s) {
    uint32_t f;
    int wire, nd = 0, legacy = 0, ndata = 0, dt = 0, d;
    uint64_t v, count = 0;
    int64_t dims[8], leg[4] = {1, 1, 1, 1};
    nst__pb sub, data;
    nst__pb scan = blob;
    data.p = data.end = NULL;
    while (scan.p < scan.end) {
        if (!nst__pb_field(&scan, &f, &wire, &v, &sub)) return nst__err(NST_ERR_FORMAT, "caffe: malformed blob in '%s'", s->origin);
        if (f >= 1 && f <= 4 && wire == 0) {
            if (v > ((uint64_t)1 << 31)) return nst__err(NST_ERR_FORMAT, "caffe: blob dimension too large in '%s'", s->origin);
            leg[f - 1] = (int64_t)v; legacy = 1;
        } else if (f == 7 && wire == 2) {
            nd = 0;
            while (sub.p < sub.end) {
                uint32_t f2; int w2; uint64_t v2; nst__pb s2;
                if (!nst__pb_field(&sub, &f2, &w2, &v2, &s2)) return nst__err(NST_ERR_FORMAT, "caffe: malformed blob shape in '%s'", s->origin);
                if (f2 != 1) continue;
                if (w2 == 0) { if (nd >= 8) return nst__err(NST_ERR_FORMAT, "caffe: too many dims"); dims[nd++] = (int64_t)v2; }
                else if (w2 == 2) {
                    while (s2.p < s2.end) {
                        if (!nst__pb_varint(&s2, &v2) || nd >= 8) return nst__err(NST_ERR_FORMAT, "caffe: bad blob shape in '%s'", s->origin);
                        dims[nd++] = (int64_t)v2;
                    }
                }
            }
            for (d = 0; d < nd; d++)
                if (dims[d] < 0 || dims[d] > ((int64_t)1 << 31)) return nst__err(NST_ERR_FORMAT, "caffe: bad blob shape in '%s'", s->origin);
        } else if ((f == 5 && (wire == 2 || wire == 5)) || (f == 8 && (wire == 2 || wire == 1))) {
            int fdt = f == 5 ? NST__DT_F32 : NST__DT_F64;
            if (dt && dt != fdt) return nst__err(NST_ERR_FORMAT, "caffe: blob '%s' mixes float and double data", s->origin);
            dt = fdt;
            ndata++;
            if (wire == 2) { count += (uint64_t)(sub.end - sub.p) / (uint64_t)nst__dt_size(fdt); data = sub; }
            else count++;
        }
    }
    if (nd == 0 && legacy) { nd = 4; memcpy(dims, leg, sizeof leg); }
    if (!dt) return nst__err(NST_ERR_FORMAT, "caffe: blob of '%s' has no data", s->origin);
    s->dtype = dt;
    nst__src_contiguous(s, nd, dims);
    if (ndata == 1 && data.p) {
        s->p = data.p;   /* packed: in place */
        s->elems = count;
    } else {
        /* unpacked (one tag per value) or split: gather into a buffer */
        unsigned char *buf;
        size_t es = (size_t)nst__dt_size(dt), at = 0;
        if (count > NST__IMPORT_MAX_MEMBER / es) return nst__err(NST_ERR_LIMIT, "caffe: blob of '%s' too large", s->origin);
        buf = (unsigned char *)nst__malloc((size_t)count * es);
        if (!buf || !nst__collect_own(c, buf)) return nst__err(NST_ERR_NOMEM, "caffe: out of memory");
        scan = blob;
        while (scan.p < scan.end) {
            nst__pb_field(&scan, &f, &wire, &v, &sub);
            if (!((f == 5 && (wire == 2 || wire == 5)) || (f == 8 && (wire == 2 || wire == 1)))) continue;
            if (wire == 2) {
                size_t nb = (size_t)(sub.end - sub.p) / es * es;
                memcpy(buf + at, sub.p, nb);
                at += nb;
            } else if (es == 4) { nst__wr32le(buf + at, (uint32_t)v); at += 4; }
            else { nst__wr64le(buf + at, v); at += 8; }
        }
        s->p = buf;
        s->elems = count;
    }
    return NST_OK;
}

static nst_status nst__import_caffe(const unsigned char *p, size_t n, int flags, nst__tensor_list *out) {
    nst__pb top;
    nst__collect c;
    nst_status st = NST_OK;
    int layers = 0, convs_seen = 0, v1 = 0, v2 = 0;
    memset(&c, 0, sizeof c);
    top.p = p; top.end = p + n;
    while (top.p < top.end && st == NST_OK) {
        uint32_t f;
        int wire;
        uint64_t v;
        nst__pb layer;
        if (!nst__pb_field(&top, &f, &wire, &v, &layer)) {
            st = nst__err(NST_ERR_FORMAT, "caffe: malformed protobuf at byte %lu (not a .caffemodel, or truncated)",
                          (unsigned long)(top.p - p));
            break;
        }
        if (!((f == 2 || f == 100) && wire == 2)) continue;
        layers++;
        if (f == 2) v1 = 1; else v2 = 1;
        {
            /* first pass: name and type (blobs are skipped in O(1)) */
            nst__pb scan = layer, sub, blobs[2];
            uint32_t lf;
            int lw, is_conv = 0, nblobs = 0, blob_field = f == 2 ? 6 : 7;
            uint64_t lv;
            char name[64];
            name[0] = 0;
            while (scan.p < scan.end) {
                if (!nst__pb_field(&scan, &lf, &lw, &lv, &sub)) { st = nst__err(NST_ERR_FORMAT, "caffe: malformed layer %d", layers); break; }
                if (lw == 2 && lf == (f == 2 ? 4u : 1u))
                    snprintf(name, sizeof name, "%.*s", (int)(sub.end - sub.p < 60 ? sub.end - sub.p : 60), (const char *)sub.p);
                else if (f == 2 && lf == 5 && lw == 0) is_conv = lv == 4;
                else if (f == 100 && lf == 2 && lw == 2) is_conv = sub.end - sub.p == 11 && !memcmp(sub.p, "Convolution", 11);
                else if (f == 2 && lf == 1 && lw == 2) {
                    /* V0 layer inside V1: name 1, type 2 ("conv"), blobs 50 */
                    nst__pb s0 = sub, s1;
                    uint32_t f0; int w0; uint64_t v0;
                    while (s0.p < s0.end && nst__pb_field(&s0, &f0, &w0, &v0, &s1)) {
                        if (f0 == 1 && w0 == 2) snprintf(name, sizeof name, "%.*s", (int)(s1.end - s1.p < 60 ? s1.end - s1.p : 60), (const char *)s1.p);
                        else if (f0 == 2 && w0 == 2) is_conv = s1.end - s1.p == 4 && !memcmp(s1.p, "conv", 4);
                        else if (f0 == 50 && w0 == 2 && nblobs < 2) blobs[nblobs++] = s1;
                    }
                } else if (lf == (uint32_t)blob_field && lw == 2 && nblobs < 2) blobs[nblobs++] = sub;
            }
            if (st != NST_OK) break;
            {
                int kind, idx;
                char key[80];
                snprintf(key, sizeof key, "%s.weight", name);
                idx = nst__map_key(key, &kind);
                if (idx == -1 && is_conv && convs_seen < NST_VGG_CONVS) {
                    /* unnamed or oddly named conv layers: the n-th convolution is VGG's n-th */
                    snprintf(name, sizeof name, "%s", nst__conv_names[convs_seen]);
                    idx = convs_seen;
                }
                if (is_conv) convs_seen++;
                if (idx == -2) { st = nst__err(NST_ERR_FORMAT, "caffe: layer '%s' is not part of VGG-19", name); break; }
                if (idx < 0 || nblobs == 0) {
                    if (nblobs) c.ignored++;   /* fc6..fc8: skipped without reading their blobs */
                    continue;
                }
                if (nblobs < 2) { st = nst__err(NST_ERR_FORMAT, "caffe: conv layer '%s' has no bias blob", name); break; }
                snprintf(key, sizeof key, "%s.weight", name);
                {
                    nst__src *sw = nst__collect_slot(&c, key), *sb;
                    if (!sw) { st = c.err ? c.err : nst__err(NST_ERR_FORMAT, "caffe: layer '%s' is not usable", name); break; }
                    if ((st = nst__caffe_blob(&c, blobs[0], sw)) != NST_OK) break;
                    snprintf(key, sizeof key, "%s.bias", name);
                    if (!(sb = nst__collect_slot(&c, key))) { st = c.err; break; }
                    if ((st = nst__caffe_blob(&c, blobs[1], sb)) != NST_OK) break;
                }
            }
        }
    }
    if (st == NST_OK && layers == 0)
        st = nst__err(NST_ERR_FORMAT, "weights: unrecognised format (not .nstw, PyTorch, Caffe or NumPy)");
    if (st == NST_OK) st = nst__collect_plan(&c, flags);
    if (st == NST_OK) st = nst__collect_finish(&c, out);
    if (st == NST_OK) snprintf(out->format, sizeof out->format, "caffe %s", v1 && v2 ? "v1+v2" : v1 ? "v1 (layers)" : "v2 (layer)");
    nst__collect_free(&c);
    return st;
}

/* ===================================================================================================
 * Detection and the entry point
 * =================================================================================================*/
static nst_status nst__import_weights_ex(const unsigned char *bytes, size_t n, int flags, nst__tensor_list *out) {
    nst_status st;
    memset(out, 0, sizeof *out);
    if (!bytes || n < 8) return nst__err(NST_ERR_FORMAT, "weights: file too short (%lu bytes)", (unsigned long)n);
    if (bytes[0] == 'P' && bytes[1] == 'K' && bytes[2] == 3 && bytes[3] == 4) {
        nst__zip z;
        size_t i;
        int torch = 0;
        if ((st = nst__zip_open(bytes, n, &z)) != NST_OK) { nst__zip_close(&z); return st; }
        for (i = 0; i < z.count; i++)
            if (z.e[i].name_len >= 8 && !memcmp(z.e[i].name + z.e[i].name_len - 8, "data.pkl", 8)) torch = 1;
        if (torch) {
            st = nst__import_torch_zip(&z, flags, out);
        } else {
            st = nst__import_npz(&z, flags, out);
            if (st == NST_OK) snprintf(out->format, sizeof out->format, "npz");
        }
        nst__zip_close(&z);
    } else if (bytes[0] == 0x80 && bytes[2] == 0x8a && bytes[3] == 0x0a) {
        st = nst__import_torch_legacy(bytes, n, flags, out);
    } else if (bytes[0] == 0x80 || (bytes[0] == 0x1f && bytes[1] == 0x8b) || (n > 262 && !memcmp(bytes + 257, "ustar", 5))) {
        return nst__err(NST_ERR_UNSUPPORTED, "weights: a pickle, gzip or tar file that is not a torch.save file "
                        "(re-save it with torch.save(model.state_dict(), path))");
    } else if (!memcmp(bytes, "\x93NUMPY", 6)) {
        st = nst__import_npy(bytes, n, flags, out);
        if (st == NST_OK) snprintf(out->format, sizeof out->format, "npy (pickled dict)");
    } else if (!memcmp(bytes, "NSTW", 4)) {
        return nst__err(NST_ERR_ARGUMENT, "weights: an .nstw file: load it with nst_model_load");
    } else {
        st = nst__import_caffe(bytes, n, flags, out);
        if (st == NST_OK) { out->has_conv = 1; out->conv = nst__caffe_convention(); }
    }
    if (st != NST_OK) nst__tensor_list_free(out);
    return st;
}

static NST__UNUSED nst_status nst__import_weights(const unsigned char *bytes, size_t n, nst__tensor_list *out) {
    return nst__import_weights_ex(bytes, n, 0, out);
}

/* ===================================================================================================
 * Public: import with options, .nstw inspection, .npy output
 * =================================================================================================*/
NSTDEF nst_status nst_model_import_memory(const void *bytes, size_t n, const nst_import_options *o,
                                          nst_model **out, nst_import_info *info) {
    const unsigned char *p = (const unsigned char *)bytes;
    nst__tensor_list l;
    nst_status st;
    int i;
    if (!out) return nst__err(NST_ERR_ARGUMENT, "import: NULL output");
    *out = NULL;
    if (info) memset(info, 0, sizeof *info);
    if (!p && n) return nst__err(NST_ERR_ARGUMENT, "import: NULL bytes");
    if (n >= 4 && memcmp(p, "NSTW", 4) == 0) {
        if ((st = nst_model_load_memory(p, n, out)) != NST_OK) return st;
        if (o && o->set_convention) {
            nst_model_free(*out);
            *out = NULL;
            return nst__err(NST_ERR_ARGUMENT, "import: an .nstw file already states its input convention");
        }
        if (info) { snprintf(info->format, sizeof info->format, "nstw"); info->convention_known = 1; }
    } else {
        if ((st = nst__import_weights_ex(p, n, o && o->all_layers ? NST__IMPORT_ALL : 0, &l)) != NST_OK) return st;
        if (info) { snprintf(info->format, sizeof info->format, "%s", l.format); info->convention_known = l.has_conv; }
        if (o && o->set_convention) {
            l.conv = o->convention;
            l.has_conv = 1;
        } else if (!l.has_conv) {
            st = nst__err(NST_ERR_ARGUMENT, "import: this %s file does not say how its input is normalised: give the "
                          "convention (nst-convert --bgr|--rgb --scale S --mean a,b,c --std a,b,c)", l.format);
            nst__tensor_list_free(&l);
            return st;
        }
        st = nst__model_from_tensors(&l, out);
        nst__tensor_list_free(&l);
        if (st != NST_OK) return st;
    }
    if (info) {
        info->convention = nst_model_convention(*out);
        info->convs = nst_model_convs(*out);
        for (i = 0; i < info->convs; i++) nst_model_conv(*out, i, NULL, NULL, &info->cin[i], &info->cout[i]);
    }
    return NST_OK;
}

#ifndef NST_NO_STDIO
NSTDEF nst_status nst_model_import(const char *path, const nst_import_options *o, nst_model **out,
                                   nst_import_info *info) {
    unsigned char *bytes;
    size_t n;
    nst_status st;
    if (!path || !out) return nst__err(NST_ERR_ARGUMENT, "import: NULL argument");
    *out = NULL;
    if ((st = nst__read_file(path, sizeof(size_t) > 4 ? ((size_t)1 << 36) : ((size_t)1 << 31), &bytes, &n)) != NST_OK)
        return st;
    st = nst_model_import_memory(bytes, n, o, out, info);
    nst__free(bytes);
    if (st != NST_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%.399s", nst_last_error());
        return nst__err(st, "'%s': %s", path, msg);
    }
    return NST_OK;
}
#endif

NSTDEF nst_status nst_nstw_inspect_memory(const void *bytes, size_t n, nst_nstw_info *info) {
    const unsigned char *p = (const unsigned char *)bytes;
    unsigned char hdr[NST__NSTW_HEADER];
    uint32_t hsize, count, i, j;
    if (!info) return nst__err(NST_ERR_ARGUMENT, "nstw: NULL info");
    memset(info, 0, sizeof *info);
    if (!p || n < NST__NSTW_HEADER || memcmp(p, "NSTW", 4) != 0)
        return nst__err(NST_ERR_FORMAT, "nstw: not an .nstw file (bad magic)");
    info->version = nst__rd32le(p + 4);
    hsize = nst__rd32le(p + 8);
    count = nst__rd32le(p + 12);
    info->flags = nst__rd32le(p + 16);
    if (info->version != 1) return nst__err(NST_ERR_UNSUPPORTED, "nstw: version %u (this library reads 1)", info->version);
    if (count == 0 || count > 64 || hsize != NST__NSTW_HEADER + NST__NSTW_ENTRY * count)
        return nst__err(NST_ERR_FORMAT, "nstw: bad tensor count %u / header size %u", count, hsize);
    if (hsize > n) return nst__err(NST_ERR_FORMAT, "nstw: truncated inside the tensor table");
    memcpy(hdr, p, sizeof hdr);
    memset(hdr + 56, 0, 4);
    info->header_ok = nst__crc32(nst__crc32(0, hdr, sizeof hdr), p + sizeof hdr, hsize - sizeof hdr) == nst__rd32le(p + 56);
    info->convention.bgr = nst__rd32le(p + 20) != 0;
    info->convention.scale = nst__f32_from_bits(nst__rd32le(p + 24));
    for (i = 0; i < 3; i++) {
        info->convention.mean[i] = nst__f32_from_bits(nst__rd32le(p + 28 + 4 * i));
        info->convention.std[i] = nst__f32_from_bits(nst__rd32le(p + 40 + 4 * i));
    }
    info->pool = nst__rd32le(p + 52) == 2 ? NST_POOL_AVG : NST_POOL_MAX;
    info->count = (int)count;
    for (i = 0; i < count; i++) {
        const unsigned char *e = p + NST__NSTW_HEADER + (size_t)i * NST__NSTW_ENTRY;
        nst_nstw_tensor *t = &info->tensor[i];
        uint32_t dt = nst__rd32le(e + 48);
        memcpy(t->name, e, 47);
        t->name[47] = 0;
        t->dtype_bits = dt == 1 ? 32 : dt == 2 ? 16 : 0;
        t->ndim = (int)nst__rd32le(e + 52);
        if (t->ndim < 0 || t->ndim > 4) t->ndim = 0;
        for (j = 0; j < (uint32_t)t->ndim; j++) t->shape[j] = (int)nst__rd32le(e + 56 + 4 * j);
        t->offset = nst__rd64le(e + 72);
        t->bytes = nst__rd64le(e + 80);
        t->in_bounds = t->offset <= n && t->bytes <= n - t->offset;
        t->checksum_ok = t->in_bounds && nst__crc32(0, p + t->offset, (size_t)t->bytes) == nst__rd32le(e + 88);
    }
    return NST_OK;
}

/* .npy bytes (format 1.0, '<f4', C order), data 64-byte aligned in the file as NumPy writes it. */
static NST__UNUSED nst_status nst__npy_encode(const float *data, int ndim, const int *shape, unsigned char **out, size_t *out_n) {
    char hdr[256];
    int len, d, pad;
    size_t elems = 1, k;
    nst__buf b;
    if (!out || !out_n || ndim < 0 || ndim > 8 || (ndim && !shape)) return nst__err(NST_ERR_ARGUMENT, "npy: bad arguments");
    *out = NULL; *out_n = 0;
    len = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (d = 0; d < ndim; d++) {
        if (shape[d] < 0 || !nst__mul_ok(elems, (size_t)shape[d], &elems)) return nst__err(NST_ERR_ARGUMENT, "npy: bad shape");
        len += snprintf(hdr + len, sizeof hdr - (size_t)len, "%d%s", shape[d], ndim == 1 ? "," : d + 1 < ndim ? ", " : "");
    }
    if (elems && !data) return nst__err(NST_ERR_ARGUMENT, "npy: NULL data");
    len += snprintf(hdr + len, sizeof hdr - (size_t)len, "), }");
    pad = 64 - (10 + len + 1) % 64;   /* header + '\n' padded so the data starts 64-byte aligned */
    if (pad == 64) pad = 0;
    memset(&b, 0, sizeof b);
    nst__buf_put(&b, "\x93NUMPY\x01\x00", 8);
    nst__buf_byte(&b, (len + pad + 1) & 0xFF);
    nst__buf_byte(&b, (len + pad + 1) >> 8);
    nst__buf_put(&b, hdr, (size_t)len);
    for (d = 0; d < pad; d++) nst__buf_byte(&b, ' ');
    nst__buf_byte(&b, '\n');
    if (elems > SIZE_MAX / 4 || !nst__buf_reserve(&b, elems * 4)) { nst__buf_free(&b); return nst__err(NST_ERR_NOMEM, "npy: out of memory"); }
    for (k = 0; k < elems; k++) nst__wr32le(b.data + b.len + 4 * k, nst__bits_from_f32(data[k]));
    b.len += elems * 4;
    if (b.failed) { nst__buf_free(&b); return nst__err(NST_ERR_NOMEM, "npy: out of memory"); }
    *out = b.data;
    *out_n = b.len;
    return NST_OK;
}

#ifndef NST_NO_STDIO
NSTDEF nst_status nst_npy_write(const char *path, const float *data, int ndim, const int *shape) {
    unsigned char *b;
    size_t n;
    nst_status st;
    if (!path) return nst__err(NST_ERR_ARGUMENT, "npy: NULL path");
    if ((st = nst__npy_encode(data, ndim, shape, &b, &n)) != NST_OK) return st;
    st = nst__write_file_atomic(path, b, n);
    nst__free(b);
    return st;
}
#endif

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
