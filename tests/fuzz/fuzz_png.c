/* libFuzzer harness for the PNG decoder (and the zlib inflate under it) through nst_image_load_memory.
 * Each input is decoded twice: with the CRC-32/Adler-32 checks off, so mutations reach the chunk parser,
 * inflate and the unfilter/convert code instead of stopping at a checksum, and with them on (the default
 * path). What decodes is re-encoded as PNG (8 and 16 bit) and decoded again: that must give the same
 * pixels, or the harness aborts and libFuzzer keeps the input.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. tests/fuzz/fuzz_png.c -o build/fuzz/fuzz_png -lm
 *   ./build/fuzz/fuzz_png corpus/ tests/fixtures/png/          (tests/fuzz/run.sh does this for every harness)
 *
 * Seeds: everything under tests/fixtures/png (PngSuite samples, gen/ feature fixtures; the .pam references
 * there are harmless extra seeds). Without -fsanitize=fuzzer, define NST_FUZZ_MAIN to get a main() that
 * runs the harness over files. */
#define NST_IMPLEMENTATION
#define NST_STATIC
#include "nst.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void nst_fuzz_roundtrip(const nst_image *im, int bits) {
    nst_image_save_options o;
    nst_image back;
    unsigned char *bytes;
    size_t n, k, cnt;
    memset(&o, 0, sizeof o);
    o.format = NST_IMAGE_PNG;
    o.bits = bits;
    o.compression = 1 + (im->width % 9);
    if (nst_image_encode(im, &o, &bytes, &n) != NST_OK) abort();
    if (nst_image_load_memory(bytes, n, &back) != NST_OK) abort();
    if (back.width != im->width || back.height != im->height || back.channels != im->channels) abort();
    cnt = (size_t)im->width * im->height * im->channels;
    for (k = 0; k < cnt; k++) {
        float scale = bits == 16 ? 65535.0f : 255.0f;
        if ((int)(back.pixels[k] * scale + 0.5f) != (int)(im->pixels[k] * scale + 0.5f)) abort();
    }
    nst_image_free(&back);
    nst_image_free_encoded(bytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nst_image im;
    nst_image_limits lim;
    nst_image_load_options lo;
    memset(&lim, 0, sizeof lim);
    lim.max_pixels = (size_t)1 << 22;   /* 4 MP: a fuzzer's memory limit is ~2 GB */
    nst_image_set_limits(&lim);
    memset(&lo, 0, sizeof lo);
    lo.ignore_checksums = 1;
    if (nst_image_load_memory_ex(data, size, &lo, &im) == NST_OK) {
        size_t k, cnt = (size_t)im.width * im.height * im.channels;
        for (k = 0; k < cnt; k++)
            if (!(im.pixels[k] >= 0.0f && im.pixels[k] <= 1.0f)) abort();
        if ((size_t)im.width * im.height <= 65536) nst_fuzz_roundtrip(&im, (size & 1) ? 16 : 8);
        nst_image_free(&im);
    } else if (nst_last_error()[0] == 0) {
        abort();   /* every failure carries a message */
    }
    if (nst_image_load_memory(data, size, &im) == NST_OK) nst_image_free(&im);
    return 0;
}

#include "fuzz_main.h"
