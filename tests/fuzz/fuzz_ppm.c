/* libFuzzer harness for the netpbm reader (PGM/PPM P2 P3 P5 P6, PAM P7) through nst_image_load_memory.
 * What decodes is written back as PAM (8 or 16 bit, binary) and read again: the pixels must survive, or
 * the harness aborts and libFuzzer keeps the input.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. tests/fuzz/fuzz_ppm.c -o build/fuzz/fuzz_ppm -lm
 *   ./build/fuzz/fuzz_ppm corpus/ tests/fixtures/ppm/          (tests/fuzz/run.sh does this for every harness)
 *
 * Seeds: tests/fixtures/ppm. Without -fsanitize=fuzzer, define NST_FUZZ_MAIN to get a main() that runs the
 * harness over files. */
#define NST_IMPLEMENTATION
#define NST_STATIC
#include "nst.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nst_image im, back;
    nst_image_limits lim;
    memset(&lim, 0, sizeof lim);
    lim.max_pixels = (size_t)1 << 22;
    nst_image_set_limits(&lim);
    if (nst_image_load_memory(data, size, &im) == NST_OK) {
        nst_image_save_options o;
        unsigned char *bytes;
        size_t n, k, cnt = (size_t)im.width * im.height * im.channels;
        int bits = (size & 1) ? 16 : 8;
        float scale = bits == 16 ? 65535.0f : 255.0f;
        for (k = 0; k < cnt; k++)
            if (!(im.pixels[k] >= 0.0f && im.pixels[k] <= 1.0f)) abort();
        memset(&o, 0, sizeof o);
        o.format = NST_IMAGE_PAM;
        o.bits = bits;
        if (nst_image_encode(&im, &o, &bytes, &n) != NST_OK) abort();
        if (nst_image_load_memory(bytes, n, &back) != NST_OK) abort();
        if (back.width != im.width || back.height != im.height || back.channels != im.channels) abort();
        for (k = 0; k < cnt; k++)
            if ((int)(back.pixels[k] * scale + 0.5f) != (int)(im.pixels[k] * scale + 0.5f)) abort();
        nst_image_free(&back);
        nst_image_free_encoded(bytes);
        nst_image_free(&im);
    } else if (nst_last_error()[0] == 0) {
        abort();
    }
    return 0;
}

#include "fuzz_main.h"
