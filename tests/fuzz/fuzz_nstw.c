/* libFuzzer harness for the .nstw reader (nst_model_load_memory) and inspector (nst_nstw_inspect_memory).
 * The header and every tensor carry a CRC-32, so almost every mutation would stop at a checksum: when the
 * input's last byte is odd, the harness first rewrites the header CRC and each in-bounds tensor CRC of a
 * copy, so mutations reach the table and tensor parsing; the input itself always goes through unchanged
 * too. A model that loads is written back and must load again.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. tests/fuzz/fuzz_nstw.c -o build/fuzz/fuzz_nstw -lm
 *
 * Seeds: tests/fuzz/seeds/nstw (tiny test models converted from tests/fixtures/weights). Without
 * -fsanitize=fuzzer, define NST_FUZZ_MAIN to get a main() that runs the harness over files. */
#define NST_IMPLEMENTATION
#define NST_STATIC
#include "nst.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void nst_fuzz_nstw_once(const unsigned char *p, size_t n) {
    nst_model *m = NULL;
    nst_nstw_info info;
    if (nst_model_load_memory(p, n, &m) == NST_OK) {
        nst__buf b;
        nst_model *r = NULL;
        if (nst__nstw_write(m, (int)(n & 1), &b) != NST_OK) abort();
        if (nst_model_load_memory(b.data, b.len, &r) != NST_OK) abort();
        nst_model_free(r);
        nst__buf_free(&b);
        nst_model_free(m);
    } else if (nst_last_error()[0] == 0) {
        abort();
    }
    (void)nst_nstw_inspect_memory(p, n, &info);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nst_fuzz_nstw_once(data, size);
    if (size >= NST__NSTW_HEADER && (data[size - 1] & 1)) {
        unsigned char *c = (unsigned char *)malloc(size);
        uint32_t hsize, count, i;
        if (!c) return 0;
        memcpy(c, data, size);
        hsize = nst__rd32le(c + 8);
        count = nst__rd32le(c + 12);
        if (hsize <= size && count <= NST__NSTW_MAX_TENSORS && hsize >= NST__NSTW_HEADER + NST__NSTW_ENTRY * count) {
            for (i = 0; i < count; i++) {   /* tensor CRCs first: they are part of the header CRC */
                unsigned char *e = c + NST__NSTW_HEADER + (size_t)i * NST__NSTW_ENTRY;
                uint64_t off = nst__rd64le(e + 72), bytes = nst__rd64le(e + 80);
                if (off <= size && bytes <= size - off) nst__wr32le(e + 88, nst__crc32(0, c + off, (size_t)bytes));
            }
            memset(c + 56, 0, 4);
            nst__wr32le(c + 56, nst__crc32(0, c, hsize));
        }
        nst_fuzz_nstw_once(c, size);
        free(c);
    }
    return 0;
}

#include "fuzz_main.h"
