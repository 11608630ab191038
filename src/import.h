/* STUB owned by the weight-import work (issue 6). */
static NST__UNUSED nst_status nst__import_weights(const unsigned char *bytes, size_t n, nst__tensor_list *out) {
    (void)bytes; (void)n;
    memset(out, 0, sizeof *out);
    return nst__err(NST_ERR_UNSUPPORTED, "weights: importers not implemented yet");
}
