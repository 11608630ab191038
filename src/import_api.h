/* ---- weight import: VGG-19 files of other libraries ------------------------------------------------
 * nst_model_load reads these too (assuming Caffe's input convention when the file implies none);
 * the calls below add options and report what was found, for tools such as nst-convert. */
typedef struct nst_import_options {    /* zero-initialised = defaults */
    int all_layers;                    /* 0: conv1_1..conv5_1 (all style transfer uses); 1: all 16 */
    int set_convention;                /* nonzero: use `convention` instead of what the file implies */
    nst_input_convention convention;
} nst_import_options;

typedef struct nst_import_info {
    char format[48];                   /* "pytorch zip (torchvision names)", "caffe v1 (layers)", "npz", ... */
    int  convention_known;             /* the file or its format implies the input convention */
    nst_input_convention convention;   /* the convention the model got */
    int  convs;                        /* conv layers imported, from conv1_1 on */
    int  cin[NST_VGG_CONVS], cout[NST_VGG_CONVS];
} nst_import_info;

/* PyTorch .pth (zip and legacy), Caffe .caffemodel (V1/V2), NumPy .npz / pickled-dict .npy, or .nstw.
 * When neither the file nor the options give an input convention: NST_ERR_ARGUMENT, saying so.
 * info may be NULL. */
NSTDEF nst_status nst_model_import_memory(const void *bytes, size_t n, const nst_import_options *o,
                                          nst_model **out, nst_import_info *info);
NSTDEF nst_status nst_model_import(const char *path, const nst_import_options *o, nst_model **out,
                                   nst_import_info *info);

/* ---- .nstw inspection: what a weight file holds and whether its checksums hold ---------------------*/
typedef struct nst_nstw_tensor {
    char name[48];
    int  dtype_bits;                   /* 32 (f32) or 16 (f16); 0 unknown */
    int  ndim, shape[4];
    unsigned long long offset, bytes;
    int  in_bounds;                    /* the data lies inside the file */
    int  checksum_ok;                  /* CRC-32 of the data matches the table */
} nst_nstw_tensor;
typedef struct nst_nstw_info {
    unsigned version, flags;           /* flags bit 0: the weight-free random model */
    int  header_ok;                    /* header + table CRC-32 matches */
    nst_input_convention convention;
    nst_pool pool;                     /* the default pooling stored in the file */
    int  count;                        /* tensors in the table (entries below: at most 64) */
    nst_nstw_tensor tensor[64];
} nst_nstw_info;
/* Reads the header and table and checks every checksum, without stopping at the first bad one.
 * Fails only when the bytes are not an .nstw file at all (bad magic, version, truncated table). */
NSTDEF nst_status nst_nstw_inspect_memory(const void *bytes, size_t n, nst_nstw_info *info);

/* ---- NumPy .npy output (float32, C order), for dumps compared with other implementations ---------*/
NSTDEF nst_status nst_npy_write(const char *path, const float *data, int ndim, const int *shape);
