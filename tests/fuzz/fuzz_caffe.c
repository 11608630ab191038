/* libFuzzer harness for the .caffemodel reader (protobuf NetParameter, V1 "layers" and V2 "layer",
 * blobs with shape or num/channels/height/width, float and double data), called directly
 * (nst__import_caffe) and through the public import.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. tests/fuzz/fuzz_caffe.c -o build/fuzz/fuzz_caffe -lm
 *
 * Seeds: the .caffemodel files in tests/fixtures/weights (tests/fuzz/run.sh copies them). Without -fsanitize=fuzzer,
 * define NST_FUZZ_MAIN to get a main() that runs the harness over files. */
#define NST_IMPLEMENTATION
#define NST_STATIC
#include "nst.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nst__tensor_list l;
    nst_model *m = NULL;
    memset(&l, 0, sizeof l);
    (void)nst__import_caffe(data, size, (size & 1) ? NST__IMPORT_ALL : 0, &l);
    nst__tensor_list_free(&l);
    if (nst_model_load_memory(data, size, &m) == NST_OK) nst_model_free(m);
    return 0;
}

#include "fuzz_main.h"
