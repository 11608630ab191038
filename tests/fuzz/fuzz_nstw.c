/* libFuzzer harness for the .nstw reader (nst_model_load_memory) and inspector (nst_nstw_inspect_memory).
 * The header and every tensor carry a CRC-32, so almost every mutation would stop at a checksum: when the
 * input's last byte is odd, the harness first rewrites the header CRC and each in-bounds tensor CRC of a
 * copy, so mutations reach the table and tensor parsing; the input itself always goes through unchanged
 * too. A model that loads is written back and must load again. nst_model_load reads .nstw files tensor by
 * tensor from disk instead: every input is also written to a temporary file and loaded from there, and
 * must give the same status and the same weights as from memory.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. tests/fuzz/fuzz_nstw.c -o build/fuzz/fuzz_nstw -lm
 *
 * Seeds: tests/fuzz/seeds/nstw (tiny test models converted from tests/fixtures/weights). Without
 * -fsanitize=fuzzer, define NST_FUZZ_MAIN to get a main() that runs the harness over files. */
#define NST_IMPLEMENTATION
#define NST_STATIC
#include "nst.h"
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The file path of the reader against the memory path (m: what memory gave, st its status). */
static void nst_fuzz_nstw_file(const unsigned char *p, size_t n, nst_status st, const nst_model *m) {
    static char path[64];
    nst_model *f = NULL;
    nst_status fst;
    FILE *fp;
    int i;
    if (!path[0]) snprintf(path, sizeof path, "/tmp/nst_fuzz_nstw_%lu.nstw", (unsigned long)getpid());
    fp = fopen(path, "wb");
    if (!fp) return;
    if (fwrite(p, 1, n, fp) != n) { fclose(fp); return; }
    fclose(fp);
    fst = nst_model_load(path, &f);
    if (fst != st) abort();
    if (f) {
        if (f->nconv != m->nconv) abort();
        for (i = 0; i < m->nconv; i++)
            if (memcmp(f->w[i], m->w[i], sizeof(float) * (size_t)m->cin[i] * m->cout[i] * 9) != 0 ||
                memcmp(f->b[i], m->b[i], sizeof(float) * (size_t)m->cout[i]) != 0) abort();
        nst_model_free(f);
    }
}

static void nst_fuzz_nstw_once(const unsigned char *p, size_t n) {
    nst_model *m = NULL;
    nst_nstw_info info;
    nst_status st = nst_model_load_memory(p, n, &m);
    nst_fuzz_nstw_file(p, n, st, m);
    if (st == NST_OK) {
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
