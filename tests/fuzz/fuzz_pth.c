/* libFuzzer harness for the PyTorch readers: the zip container (data.pkl + storages, stored or deflated)
 * and the legacy pickle stream, called directly (nst__import_torch_zip, nst__import_torch_legacy) so a
 * mutation that breaks the magic bytes still reaches the parser, then through the public import.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. tests/fuzz/fuzz_pth.c -o build/fuzz/fuzz_pth -lm
 *
 * Seeds: the .pth files in tests/fixtures/weights (tests/fuzz/run.sh copies them). Without -fsanitize=fuzzer, define
 * NST_FUZZ_MAIN to get a main() that runs the harness over files. */
#define NST_IMPLEMENTATION
#define NST_STATIC
#include "nst.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nst__tensor_list l;
    nst__zip z;
    nst_model *m = NULL;
    int flags = (size & 1) ? NST__IMPORT_ALL : 0;
    memset(&l, 0, sizeof l);
    memset(&z, 0, sizeof z);
    if (nst__zip_open(data, size, &z) == NST_OK) {
        if (nst__import_torch_zip(&z, flags, &l) == NST_OK) { /* fallthrough */ }
        nst__tensor_list_free(&l);
    }
    nst__zip_close(&z);
    memset(&l, 0, sizeof l);
    (void)nst__import_torch_legacy(data, size, flags, &l);
    nst__tensor_list_free(&l);
    if (nst_model_load_memory(data, size, &m) == NST_OK) nst_model_free(m);
    return 0;
}

#include "fuzz_main.h"
