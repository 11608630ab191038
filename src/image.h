/* STUB owned by the image work (issue 5). Contract used elsewhere:
 *   nst_image_alloc / nst_image_free / nst_image_to_rgb / nst_image_resize   (always compiled)
 *   nst__image_check_size(w, h, channels)   NST_ERR_LIMIT (with message) above this thread's limits
 *   nst__inflate(in, n, zlib_wrapper, max_out, &out, &out_n)   zlib (wrapper=1) or raw deflate (0);
 *       refuses output above max_out with NST_ERR_LIMIT; always compiled (the weight importers need it)
 *   nst__jpeg_decode(data, n, &img) / nst__jpeg_encode(img, quality, chroma420, &buf)  in src/jpeg.h */
static nst_status nst__jpeg_decode(const unsigned char *data, size_t n, nst_image *out);
static nst_status nst__jpeg_encode(const nst_image *img, int quality, int chroma420, nst__buf *out);

static NST__TLS nst_image_limits nst__limits;
NSTDEF void nst_image_set_limits(const nst_image_limits *l) {
    if (l) nst__limits = *l; else memset(&nst__limits, 0, sizeof nst__limits);
}
static NST__UNUSED nst_status nst__image_check_size(int w, int h, int channels) {
    size_t mw = nst__limits.max_width ? (size_t)nst__limits.max_width : 65535;
    size_t mh = nst__limits.max_height ? (size_t)nst__limits.max_height : 65535;
    size_t mp = nst__limits.max_pixels ? nst__limits.max_pixels : ((size_t)1 << 28);
    size_t mb = nst__limits.max_bytes ? nst__limits.max_bytes : (size_t)4 << 30;
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
NSTDEF void nst_image_free(nst_image *img) {
    if (!img) return;
    nst__free(img->pixels);
    img->pixels = NULL;
    img->width = img->height = img->channels = 0;
}

static NST__UNUSED nst_status nst__inflate(const unsigned char *in, size_t n, int zlib_wrapper, size_t max_out,
                                           unsigned char **out, size_t *out_n) {
    (void)in; (void)n; (void)zlib_wrapper; (void)max_out;
    *out = NULL; *out_n = 0;
    return nst__err(NST_ERR_UNSUPPORTED, "inflate: not implemented yet");
}
