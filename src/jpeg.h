/* STUB owned by the JPEG work (issue 5). */
static NST__UNUSED nst_status nst__jpeg_decode(const unsigned char *data, size_t n, nst_image *out) {
    (void)data; (void)n; (void)out;
    return nst__err(NST_ERR_UNSUPPORTED, "jpeg: decoder not implemented yet");
}
static NST__UNUSED nst_status nst__jpeg_encode(const nst_image *img, int quality, int chroma420, nst__buf *out) {
    (void)img; (void)quality; (void)chroma420; (void)out;
    return nst__err(NST_ERR_UNSUPPORTED, "jpeg: encoder not implemented yet");
}
