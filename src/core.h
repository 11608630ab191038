/* Owned by the lead (core). Contract used by src/import.h:
 *   nst__tensor_list: named f32 tensors an importer produced, canonical names "conv1_1.weight"/".bias"
 *   nst__model_from_tensors(list, &model)  validates shapes against VGG-19 and builds a model
 *   nst__import_weights(bytes, n, &list)   (src/import.h) detects .pth zip/legacy, .caffemodel, .npy/.npz */
typedef struct nst__named_tensor {
    char    name[64];        /* canonical: "conv1_1.weight", "conv1_1.bias", ... */
    int     ndim;
    int64_t shape[4];
    float  *data;            /* nst__malloc'ed, contiguous row-major */
} nst__named_tensor;
typedef struct nst__tensor_list {
    nst__named_tensor *t;
    int n, cap;
    nst_input_convention conv;   /* the convention the source format implies */
    int has_conv;                /* 0: unknown, the caller must choose */
    char format[48];             /* "pytorch zip", "pytorch legacy", "caffe v1", "npz", ... */
} nst__tensor_list;
static nst_status nst__import_weights(const unsigned char *bytes, size_t n, nst__tensor_list *out);
static NST__UNUSED void nst__tensor_list_free(nst__tensor_list *l) {
    int i;
    if (!l) return;
    for (i = 0; i < l->n; i++) nst__free(l->t[i].data);
    nst__free(l->t);
    memset(l, 0, sizeof *l);
}
