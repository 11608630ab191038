/* libFuzzer harness for the JPEG decoder (src/jpeg.h): nst__jpeg_decode on the raw bytes, under image
 * limits small enough that a hostile header cannot ask for gigabytes, and the re-encode of what decoded
 * (so the encoder sees odd sizes and both channel counts too).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. tests/fuzz/fuzz_jpeg.c -o build/fuzz_jpeg -lm
 *   ./build/fuzz_jpeg -max_len=65536 corpus/ tests/fixtures/jpeg/
 *
 * Seeds: every file under tests/fixtures/jpeg (the reference PPMs there are harmless non-JPEG seeds).
 * Without -fsanitize=fuzzer, define NST_FUZZ_MAIN to get a main() that runs the harness over files. */
#define NST_IMPLEMENTATION
#define NST_STATIC
#include "nst.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nst_image im;
    nst_image_limits lim;
    memset(&lim, 0, sizeof lim);
    lim.max_pixels = (size_t)1 << 22;   /* 4 MP: a fuzzer's memory limit is ~2 GB */
    nst_image_set_limits(&lim);
    if (nst__jpeg_decode(data, size, &im) == NST_OK) {
        nst__buf b;
        memset(&b, 0, sizeof b);
        if ((size_t)im.width * im.height <= 65536) {   /* keep each run fast */
            if (nst__jpeg_encode(&im, 1 + (int)(size % 100), (int)(size & 1), &b) == NST_OK) {
                nst_image back;
                if (nst__jpeg_decode(b.data, b.len, &back) == NST_OK) nst_image_free(&back);
            }
            nst__buf_free(&b);
        }
        nst_image_free(&im);
    }
    return 0;
}

#include "fuzz_main.h"
