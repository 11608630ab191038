/* libFuzzer harness for the weight readers: every importer (PyTorch zip and legacy pickle stream,
 * Caffe protobuf, .npz, pickled .npy) through nst__import_weights_ex, and the .nstw reader and
 * inspector through the public memory API. The first byte picks the path so one corpus covers all.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. tests/fuzz/fuzz_weights.c -o build/fuzz_weights -lm
 *   ./build/fuzz_weights -max_len=200000 corpus/ tests/fixtures/weights/
 *
 * Seeds: the fixtures in tests/fixtures/weights (prefix a byte 0x00 for the importers; the harness
 * also feeds unprefixed input to the importers, so the files work as they are). Without
 * -fsanitize=fuzzer, define NST_FUZZ_MAIN to get a main() that runs the harness over files. */
#define NST_IMPLEMENTATION
#define NST_STATIC
#include "nst.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nst__tensor_list l;
    nst_model *m = NULL;
    nst_nstw_info info;
    nst_import_options o;
    nst_import_info ii;
    /* the importers, on the raw bytes (fixtures are valid seeds as they are) */
    if (nst__import_weights_ex(data, size, NST__IMPORT_ALL, &l) == NST_OK) nst__tensor_list_free(&l);
    if (size < 1) return 0;
    switch (data[0] & 3) {
    case 0:   /* the same, without the prefix byte, keeping only conv1_1..conv5_1 */
        if (nst__import_weights(data + 1, size - 1, &l) == NST_OK) nst__tensor_list_free(&l);
        break;
    case 1:   /* .nstw reader and inspector */
        if (nst_model_load_memory(data + 1, size - 1, &m) == NST_OK) nst_model_free(m);
        (void)nst_nstw_inspect_memory(data + 1, size - 1, &info);
        break;
    default:  /* the public import with a convention, building a model */
        memset(&o, 0, sizeof o);
        o.set_convention = data[0] & 4;
        o.convention.scale = 1.0f;
        o.convention.std[0] = o.convention.std[1] = o.convention.std[2] = 1.0f;
        if (nst_model_import_memory(data + 1, size - 1, &o, &m, &ii) == NST_OK) nst_model_free(m);
        break;
    }
    return 0;
}

#include "fuzz_main.h"
