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
