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

/* ---- VGG-19 layer table ------------------------------------------------------------------------
 * Configuration E: blocks of 2, 2, 4, 4, 4 convolutions, each followed by ReLU, each block by a pool. */
enum { NST__L_CONV = 0, NST__L_RELU = 1, NST__L_POOL = 2 };
static const char *const nst__layer_names[NST_VGG_LAYERS] = {
    "conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
    "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
    "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "conv3_4", "relu3_4", "pool3",
    "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "conv4_4", "relu4_4", "pool4",
    "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "conv5_4", "relu5_4", "pool5"};
static const int nst__vgg_cout[NST_VGG_CONVS] = {64, 64, 128, 128, 256, 256, 256, 256,
                                                 512, 512, 512, 512, 512, 512, 512, 512};
static const char *const nst__conv_names[NST_VGG_CONVS] = {
    "conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv3_4",
    "conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1", "conv5_2", "conv5_3", "conv5_4"};

static int nst__layer_type(int l) {
    const char *n = nst__layer_names[l];
    return n[0] == 'c' ? NST__L_CONV : n[0] == 'r' ? NST__L_RELU : NST__L_POOL;
}
/* The conv layer whose output a layer depends on last: conv i for convX_Y/reluX_Y, the block's last
 * conv for a pool. A layer is computable when this conv is present in the model. */
static int nst__layer_conv(int l) {
    int i, c = -1;
    for (i = 0; i <= l; i++)
        if (nst__layer_type(i) == NST__L_CONV) c++;
    return c;
}

NSTDEF const char *nst_layer_name(int index) {
    return index >= 0 && index < NST_VGG_LAYERS ? nst__layer_names[index] : NULL;
}
NSTDEF int nst_layer_index(const char *name) {
    int i;
    if (!name) return -1;
    for (i = 0; i < NST_VGG_LAYERS; i++)
        if (strcmp(name, nst__layer_names[i]) == 0) return i;
    return -1;
}

/* ---- the model ---------------------------------------------------------------------------------*/
struct nst_model {
    int nconv;                          /* conv layers present, from conv1_1 on */
    int cin[NST_VGG_CONVS], cout[NST_VGG_CONVS];
    float *w[NST_VGG_CONVS], *b[NST_VGG_CONVS];   /* into block */
    float *block;                       /* all weights and biases, one aligned allocation */
    size_t block_bytes;
    nst__conv_plan *plan[NST_VGG_CONVS];
    nst_input_convention conv;
    nst_pool pool;
    int is_random;
};

NSTDEF void nst_model_free(nst_model *m) {
    int i;
    if (!m) return;
    for (i = 0; i < m->nconv; i++) nst__conv_plan_free(m->plan[i]);
    nst__aligned_free(m->block);
    nst__free(m);
}
NSTDEF int nst_model_convs(const nst_model *m) { return m ? m->nconv : 0; }
NSTDEF int nst_model_is_random(const nst_model *m) { return m ? m->is_random : 0; }
NSTDEF nst_pool nst_model_default_pool(const nst_model *m) { return m ? m->pool : NST_POOL_MAX; }
NSTDEF nst_input_convention nst_model_convention(const nst_model *m) { return m->conv; }
NSTDEF nst_status nst_model_conv(const nst_model *m, int i, const float **weight, const float **bias,
                                 int *cin, int *cout) {
    if (!m || i < 0 || i >= m->nconv) return nst__err(NST_ERR_ARGUMENT, "model: no conv layer %d", i);
    if (weight) *weight = m->w[i];
    if (bias) *bias = m->b[i];
    if (cin) *cin = m->cin[i];
    if (cout) *cout = m->cout[i];
    return NST_OK;
}

static nst_input_convention nst__caffe_convention(void) {
    nst_input_convention c;
    c.bgr = 1; c.scale = 255.0f;
    c.mean[0] = 103.939f; c.mean[1] = 116.779f; c.mean[2] = 123.68f;
    c.std[0] = c.std[1] = c.std[2] = 1.0f;
    return c;
}

static nst_status nst__check_convention(const nst_input_convention *c) {
    int i;
    if (!(c->scale > 0.0f) || !(c->scale < 1e6f))
        return nst__err(NST_ERR_FORMAT, "weights: invalid input scale %g", (double)c->scale);
    for (i = 0; i < 3; i++)
        if (!(c->std[i] > 0.0f) || !(fabsf(c->mean[i]) < 1e6f))
            return nst__err(NST_ERR_FORMAT, "weights: invalid input mean/std");
    return NST_OK;
}

/* Allocates the weight block for the given channel counts and builds the convolution plans later. */
static nst_status nst__model_alloc(int nconv, const int *cin, const int *cout, nst_model **out) {
    nst_model *m;
    size_t total = 0, off = 0;
    int i;
    *out = NULL;
    m = (nst_model *)nst__calloc(1, sizeof *m);
    if (!m) return nst__err(NST_ERR_NOMEM, "model: out of memory");
    m->nconv = nconv;
    for (i = 0; i < nconv; i++) {
        size_t wn = (size_t)cout[i] * cin[i] * 9, bn = (size_t)cout[i];
        m->cin[i] = cin[i]; m->cout[i] = cout[i];
        total += ((wn + 15) & ~(size_t)15) + ((bn + 15) & ~(size_t)15);   /* keep each tensor 64-byte aligned */
    }
    m->block_bytes = total * sizeof(float);
    m->block = (float *)nst__aligned_alloc(m->block_bytes);
    if (!m->block) { nst__free(m); return nst__err(NST_ERR_NOMEM, "model: out of memory for weights"); }
    for (i = 0; i < nconv; i++) {
        size_t wn = (size_t)cout[i] * cin[i] * 9, bn = (size_t)cout[i];
        m->w[i] = m->block + off; off += (wn + 15) & ~(size_t)15;
        m->b[i] = m->block + off; off += (bn + 15) & ~(size_t)15;
    }
    m->conv = nst__caffe_convention();
    m->pool = NST_POOL_MAX;
    *out = m;
    return NST_OK;
}

static nst_status nst__model_finish(nst_model *m) {
    int i;
    nst_status st;
    for (i = 0; i < m->nconv; i++)
        if ((st = nst__conv_plan_create(m->w[i], m->b[i], m->cin[i], m->cout[i], &m->plan[i])) != NST_OK)
            return st;
    return NST_OK;
}

/* Channel counts must chain (cin of layer i == cout of layer i-1, conv1_1 takes 3): that is the
 * VGG-19 topology. Widths other than VGG-19's (64..512) are accepted so small test models work;
 * nst__model_is_vgg19 tells the two apart. */
static nst_status nst__check_topology(int nconv, const int *cin, const int *cout) {
    int i;
    if (nconv < 1 || nconv > NST_VGG_CONVS) return nst__err(NST_ERR_FORMAT, "weights: %d conv layers", nconv);
    for (i = 0; i < nconv; i++) {
        int want_in = i == 0 ? 3 : cout[i - 1];
        if (cin[i] != want_in)
            return nst__err(NST_ERR_FORMAT, "weights: %s takes %d input channels, VGG-19 needs %d (the output of %s)",
                            nst__conv_names[i], cin[i], want_in, i ? nst__conv_names[i - 1] : "the RGB image");
        if (cout[i] < 1 || cout[i] > 4096)
            return nst__err(NST_ERR_FORMAT, "weights: %s has %d output channels", nst__conv_names[i], cout[i]);
    }
    return NST_OK;
}

static NST__UNUSED int nst__model_is_vgg19(const nst_model *m) {
    int i;
    for (i = 0; i < m->nconv; i++)
        if (m->cout[i] != nst__vgg_cout[i]) return 0;
    return 1;
}

static const nst__named_tensor *nst__find_tensor(const nst__tensor_list *l, const char *name) {
    int i;
    for (i = 0; i < l->n; i++)
        if (strcmp(l->t[i].name, name) == 0) return &l->t[i];
    return NULL;
}

/* Builds a model from canonical tensors: conv1_1 on, as many consecutive layers as are present. */
static nst_status nst__model_from_tensors(const nst__tensor_list *l, nst_model **out) {
    int nconv = 0, cin[NST_VGG_CONVS], cout[NST_VGG_CONVS], i;
    nst_model *m;
    nst_status st;
    char name[80];
    *out = NULL;
    for (i = 0; i < NST_VGG_CONVS; i++) {
        const nst__named_tensor *w, *b;
        snprintf(name, sizeof name, "%s.weight", nst__conv_names[i]);
        w = nst__find_tensor(l, name);
        snprintf(name, sizeof name, "%s.bias", nst__conv_names[i]);
        b = nst__find_tensor(l, name);
        if (!w) break;
        if (w->ndim != 4 || w->shape[2] != 3 || w->shape[3] != 3 || w->shape[0] < 1 || w->shape[1] < 1 ||
            w->shape[0] > 4096 || w->shape[1] > 4096)
            return nst__err(NST_ERR_FORMAT, "weights: %s.weight must be [cout][cin][3][3]", nst__conv_names[i]);
        if (!b || b->ndim != 1 || b->shape[0] != w->shape[0])
            return nst__err(NST_ERR_FORMAT, "weights: %s.bias missing or not [%d]", nst__conv_names[i],
                            (int)w->shape[0]);
        cout[i] = (int)w->shape[0];
        cin[i] = (int)w->shape[1];
        nconv++;
    }
    if (nconv == 0) return nst__err(NST_ERR_FORMAT, "weights: no conv1_1 weight found");
    if ((st = nst__check_topology(nconv, cin, cout)) != NST_OK) return st;
    if ((st = nst__model_alloc(nconv, cin, cout, &m)) != NST_OK) return st;
    for (i = 0; i < nconv; i++) {
        snprintf(name, sizeof name, "%s.weight", nst__conv_names[i]);
        memcpy(m->w[i], nst__find_tensor(l, name)->data, sizeof(float) * (size_t)cout[i] * cin[i] * 9);
        snprintf(name, sizeof name, "%s.bias", nst__conv_names[i]);
        memcpy(m->b[i], nst__find_tensor(l, name)->data, sizeof(float) * (size_t)cout[i]);
    }
    if (l->has_conv) {
        if ((st = nst__check_convention(&l->conv)) != NST_OK) { nst_model_free(m); return st; }
        m->conv = l->conv;
    }
    if ((st = nst__model_finish(m)) != NST_OK) { nst_model_free(m); return st; }
    *out = m;
    return NST_OK;
}

/* ---- .nstw: our weight file --------------------------------------------------------------------
 * Little-endian. A 64-byte header, a table of 96-byte tensor entries, then tensor data at 64-byte
 * aligned offsets, so the file can be used in place after one fread or mmap.
 *   header: 0 "NSTW" | 4 u32 version (1) | 8 u32 header+table bytes | 12 u32 tensor count | 16 u32 flags
 *           (bit 0: random model) | 20 u32 bgr | 24 f32 scale | 28 f32 mean[3] | 40 f32 std[3] |
 *           52 u32 default pool (1 max, 2 avg) | 56 u32 CRC-32 of header+table with this field zero | 60 0
 *   entry:  0 name[48] NUL-padded | 48 u32 dtype (1 f32, 2 f16) | 52 u32 ndim | 56 u32 shape[4] |
 *           72 u64 offset | 80 u64 bytes | 88 u32 CRC-32 of the data | 92 0 */
#define NST__NSTW_HEADER 64
#define NST__NSTW_ENTRY 96
#define NST__NSTW_MAX_TENSORS 64

static nst_status nst__nstw_parse(const unsigned char *p, size_t n, nst_model **out) {
    uint32_t version, hsize, count, flags, crc, i;
    nst__tensor_list list;
    nst_status st = NST_OK;
    unsigned char hdr_copy[NST__NSTW_HEADER];
    *out = NULL;
    memset(&list, 0, sizeof list);
    if (n < NST__NSTW_HEADER || memcmp(p, "NSTW", 4) != 0)
        return nst__err(NST_ERR_FORMAT, "nstw: not an .nstw file (bad magic)");
    version = nst__rd32le(p + 4);
    hsize = nst__rd32le(p + 8);
    count = nst__rd32le(p + 12);
    flags = nst__rd32le(p + 16);
    if (version != 1) return nst__err(NST_ERR_UNSUPPORTED, "nstw: version %u (this library reads 1)", version);
    if (count == 0 || count > NST__NSTW_MAX_TENSORS || hsize != NST__NSTW_HEADER + NST__NSTW_ENTRY * count)
        return nst__err(NST_ERR_FORMAT, "nstw: bad tensor count %u / header size %u", count, hsize);
    if (hsize > n) return nst__err(NST_ERR_FORMAT, "nstw: truncated (%lu bytes, header needs %u)", (unsigned long)n, hsize);
    memcpy(hdr_copy, p, NST__NSTW_HEADER);
    memset(hdr_copy + 56, 0, 4);
    crc = nst__crc32(nst__crc32(0, hdr_copy, NST__NSTW_HEADER), p + NST__NSTW_HEADER, hsize - NST__NSTW_HEADER);
    if (crc != nst__rd32le(p + 56)) return nst__err(NST_ERR_FORMAT, "nstw: header checksum mismatch (corrupted file)");
    list.has_conv = 1;
    list.conv.bgr = nst__rd32le(p + 20) != 0;
    list.conv.scale = nst__f32_from_bits(nst__rd32le(p + 24));
    for (i = 0; i < 3; i++) {
        list.conv.mean[i] = nst__f32_from_bits(nst__rd32le(p + 28 + 4 * i));
        list.conv.std[i] = nst__f32_from_bits(nst__rd32le(p + 40 + 4 * i));
    }
    if ((st = nst__check_convention(&list.conv)) != NST_OK) return st;
    list.t = (nst__named_tensor *)nst__calloc(count, sizeof *list.t);
    if (!list.t) return nst__err(NST_ERR_NOMEM, "nstw: out of memory");
    list.cap = (int)count;
    for (i = 0; i < count && st == NST_OK; i++) {
        const unsigned char *e = p + NST__NSTW_HEADER + (size_t)i * NST__NSTW_ENTRY;
        nst__named_tensor *t = &list.t[list.n];
        uint32_t dtype = nst__rd32le(e + 48), ndim = nst__rd32le(e + 52), j;
        uint64_t off = nst__rd64le(e + 72), bytes = nst__rd64le(e + 80), elems = 1;
        size_t esize = dtype == 1 ? 4 : 2;
        if (memchr(e, 0, 48) == NULL) { st = nst__err(NST_ERR_FORMAT, "nstw: tensor %u has no name", i); break; }
        memcpy(t->name, e, 48);
        if ((dtype != 1 && dtype != 2) || ndim < 1 || ndim > 4) {
            st = nst__err(NST_ERR_FORMAT, "nstw: tensor '%s' has dtype %u, %u dims", t->name, dtype, ndim);
            break;
        }
        t->ndim = (int)ndim;
        for (j = 0; j < ndim; j++) {
            uint32_t d = nst__rd32le(e + 56 + 4 * j);
            if (d == 0 || d > (1u << 24)) { st = nst__err(NST_ERR_FORMAT, "nstw: tensor '%s' has dimension %u", t->name, d); break; }
            t->shape[j] = d;
            elems *= d;
            if (elems > ((uint64_t)1 << 34)) { st = nst__err(NST_ERR_FORMAT, "nstw: tensor '%s' is too large", t->name); break; }
        }
        if (st != NST_OK) break;
        if (bytes != elems * esize || (off & 63) || off < hsize || off > n || bytes > n - off) {
            st = nst__err(NST_ERR_FORMAT, "nstw: tensor '%s' data is out of bounds or the file is truncated", t->name);
            break;
        }
        if (nst__crc32(0, p + off, (size_t)bytes) != nst__rd32le(e + 88)) {
            st = nst__err(NST_ERR_FORMAT, "nstw: checksum mismatch in tensor '%s' (corrupted file)", t->name);
            break;
        }
        t->data = (float *)nst__malloc((size_t)elems * sizeof(float));
        if (!t->data) { st = nst__err(NST_ERR_NOMEM, "nstw: out of memory"); break; }
        list.n++;
        {
            const unsigned char *d = p + off;
            size_t k;
            if (dtype == 1)
                for (k = 0; k < elems; k++) t->data[k] = nst__f32_from_bits(nst__rd32le(d + 4 * k));
            else
                for (k = 0; k < elems; k++) t->data[k] = nst__half_to_float(nst__rd16le(d + 2 * k));
        }
    }
    if (st == NST_OK) st = nst__model_from_tensors(&list, out);
    if (st == NST_OK) {
        uint32_t pool = nst__rd32le(p + 52);
        (*out)->is_random = (int)(flags & 1);
        (*out)->pool = pool == 2 ? NST_POOL_AVG : NST_POOL_MAX;
    }
    nst__tensor_list_free(&list);
    return st;
}

/* Serialises a model to .nstw bytes (f32, or f16 with half). */
static NST__UNUSED nst_status nst__nstw_write(const nst_model *m, int half, nst__buf *b) {
    uint32_t count = (uint32_t)(2 * m->nconv), i;
    size_t hsize = NST__NSTW_HEADER + NST__NSTW_ENTRY * (size_t)count, off;
    unsigned char *p;
    uint32_t crc;
    memset(b, 0, sizeof *b);
    if (!nst__buf_reserve(b, hsize)) return nst__err(NST_ERR_NOMEM, "nstw: out of memory");
    memset(b->data, 0, hsize);
    b->len = hsize;
    off = (hsize + 63) & ~(size_t)63;
    for (i = 0; i < count; i++) {
        int li = (int)i / 2, isb = (int)i & 1;
        const float *src = isb ? m->b[li] : m->w[li];
        size_t elems = isb ? (size_t)m->cout[li] : (size_t)m->cout[li] * m->cin[li] * 9, k;
        size_t bytes = elems * (half ? 2 : 4);
        unsigned char *e, *d;
        while (b->len < off) nst__buf_byte(b, 0);
        if (!nst__buf_reserve(b, bytes)) return nst__err(NST_ERR_NOMEM, "nstw: out of memory");
        d = b->data + b->len;
        for (k = 0; k < elems; k++) {
            if (half) { uint16_t h = nst__float_to_half(src[k]); d[2 * k] = (unsigned char)h; d[2 * k + 1] = (unsigned char)(h >> 8); }
            else nst__wr32le(d + 4 * k, nst__bits_from_f32(src[k]));
        }
        b->len += bytes;
        e = b->data + NST__NSTW_HEADER + (size_t)i * NST__NSTW_ENTRY;
        snprintf((char *)e, 48, "%s.%s", nst__conv_names[li], isb ? "bias" : "weight");
        nst__wr32le(e + 48, half ? 2u : 1u);
        if (isb) {
            nst__wr32le(e + 52, 1); nst__wr32le(e + 56, (uint32_t)m->cout[li]);
        } else {
            nst__wr32le(e + 52, 4); nst__wr32le(e + 56, (uint32_t)m->cout[li]);
            nst__wr32le(e + 60, (uint32_t)m->cin[li]); nst__wr32le(e + 64, 3); nst__wr32le(e + 68, 3);
        }
        nst__wr64le(e + 72, off);
        nst__wr64le(e + 80, bytes);
        nst__wr32le(e + 88, nst__crc32(0, d, bytes));
        off = (b->len + 63) & ~(size_t)63;
    }
    if (b->failed) { nst__buf_free(b); return nst__err(NST_ERR_NOMEM, "nstw: out of memory"); }
    p = b->data;
    memcpy(p, "NSTW", 4);
    nst__wr32le(p + 4, 1);
    nst__wr32le(p + 8, (uint32_t)hsize);
    nst__wr32le(p + 12, count);
    nst__wr32le(p + 16, m->is_random ? 1u : 0u);
    nst__wr32le(p + 20, m->conv.bgr ? 1u : 0u);
    nst__wr32le(p + 24, nst__bits_from_f32(m->conv.scale));
    for (i = 0; i < 3; i++) {
        nst__wr32le(p + 28 + 4 * i, nst__bits_from_f32(m->conv.mean[i]));
        nst__wr32le(p + 40 + 4 * i, nst__bits_from_f32(m->conv.std[i]));
    }
    nst__wr32le(p + 52, m->pool == NST_POOL_AVG ? 2u : 1u);
    crc = nst__crc32(0, p, hsize);
    nst__wr32le(p + 56, crc);
    return NST_OK;
}

NSTDEF nst_status nst_model_load_memory(const void *bytes, size_t n, nst_model **out) {
    const unsigned char *p = (const unsigned char *)bytes;
    nst__tensor_list list;
    nst_status st;
    if (!out) return nst__err(NST_ERR_ARGUMENT, "model: NULL output");
    *out = NULL;
    if (!p && n) return nst__err(NST_ERR_ARGUMENT, "model: NULL bytes");
    if (n >= 4 && memcmp(p, "NSTW", 4) == 0) return nst__nstw_parse(p, n, out);
    memset(&list, 0, sizeof list);
    if ((st = nst__import_weights(p, n, &list)) != NST_OK) { nst__tensor_list_free(&list); return st; }
    if (!list.has_conv) {
        st = nst__err(NST_ERR_FORMAT, "the %s file does not say how its network expects pixels (channel "
                      "order, scale, mean): convert it with nst-convert and --bgr or --rgb, --scale, --mean, --std",
                      list.format[0] ? list.format : "weight");
        nst__tensor_list_free(&list);
        return st;
    }
    st = nst__model_from_tensors(&list, out);
    nst__tensor_list_free(&list);
    return st;
}

#ifndef NST_NO_STDIO
NSTDEF nst_status nst_model_load(const char *path, nst_model **out) {
    unsigned char *bytes;
    size_t n;
    nst_status st;
    if (!path || !out) return nst__err(NST_ERR_ARGUMENT, "model: NULL argument");
    *out = NULL;
    if ((st = nst__read_file(path, sizeof(size_t) > 4 ? ((size_t)1 << 36) : ((size_t)1 << 31), &bytes, &n)) != NST_OK)
        return st;
    st = nst_model_load_memory(bytes, n, out);
    nst__free(bytes);
    if (st != NST_OK) {
        char msg[sizeof nst__errbuf];
        snprintf(msg, sizeof msg, "%s", nst__errbuf);
        return nst__err(st, "'%s': %s", path, msg);
    }
    return NST_OK;
}

NSTDEF nst_status nst_model_save(const nst_model *m, const char *path, int half) {
    nst__buf b;
    nst_status st;
    if (!m || !path) return nst__err(NST_ERR_ARGUMENT, "model: NULL argument");
    if ((st = nst__nstw_write(m, half, &b)) != NST_OK) return st;
    st = nst__write_file_atomic(path, b.data, b.len);
    nst__buf_free(&b);
    return st;
}
#endif

/* ---- the network: forward that records what backward needs, backward to the pixels ------------
 * Kept for backward, per layer: ReLU masks as bits, max-pool argmax as 2-bit codes in a byte, and the
 * features at loss layers (written there directly by the layer, so no copy). Everything else lives
 * in two ping-pong buffers that forward and backward share. */
typedef struct nst__net {
    const nst_model *m;
    int h, w, last, avg, nthreads;
    int c_[NST_VGG_LAYERS], h_[NST_VGG_LAYERS], w_[NST_VGG_LAYERS];   /* output shape per layer */
    unsigned char keep[NST_VGG_LAYERS];      /* output kept for a loss */
    float *feat[NST_VGG_LAYERS];
    unsigned char *rec[NST_VGG_LAYERS];      /* relu bits or pool codes */
    float *buf[2];
    size_t buf_elems;
    void *ws;                                /* convolution scratch, owned unless ws_borrowed */
    size_t ws_bytes;
    int ws_borrowed, bufs_borrowed;
    size_t bytes;                            /* everything above, for the memory estimate */
    const float *out;                        /* output of the last layer after forward */
} nst__net;

static size_t nst__round64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Computes shapes and sizes; with alloc == 0 only sizes (for the estimate). A net may borrow the
 * ping-pong buffers and convolution scratch of another that is idle meanwhile (borrow, where they
 * are large enough) instead of allocating its own: the style networks do, from the main one. */
static nst_status nst__net_init_ws(nst__net *n, const nst_model *m, int h, int w, int last, const unsigned char *keep,
                                   int avg, int nthreads, int alloc, const nst__net *borrow, size_t min_ws,
                                   size_t min_buf) {
    int l, c = 3, ch = h, cw = w, ci;
    size_t maxel = (size_t)3 * h * w, ws = 0;
    memset(n, 0, sizeof *n);
    n->m = m; n->h = h; n->w = w; n->last = last; n->avg = avg;
    n->nthreads = nst__resolve_threads(nthreads);
    if (last < 0 || last >= NST_VGG_LAYERS || nst__layer_conv(last) >= m->nconv)
        return nst__err(NST_ERR_ARGUMENT, "layer %s needs %s, which the model does not have",
                        last >= 0 && last < NST_VGG_LAYERS ? nst__layer_names[last] : "?",
                        last >= 0 && last < NST_VGG_LAYERS ? nst__conv_names[nst__layer_conv(last)] : "?");
    if (h < 1 || w < 1) return nst__err(NST_ERR_ARGUMENT, "image size %dx%d", w, h);
    for (l = 0, ci = 0; l <= last; l++) {
        int t = nst__layer_type(l);
        if (t == NST__L_CONV) {
            size_t s = nst__conv_workspace(m->plan[ci], ch, cw, n->nthreads);
            if (s > ws) ws = s;
            c = m->cout[ci++];
        } else if (t == NST__L_POOL) {
            if (ch < 2 || cw < 2)
                return nst__err(NST_ERR_ARGUMENT, "image of %dx%d is too small for %s (needs at least %d pixels "
                                "on each side)", w, h, nst__layer_names[l], 2 * (h / ch > w / cw ? h / ch : w / cw));
            ch /= 2; cw /= 2;
        }
        n->c_[l] = c; n->h_[l] = ch; n->w_[l] = cw;
        if ((size_t)c * ch * cw > maxel) maxel = (size_t)c * ch * cw;
        n->keep[l] = keep ? keep[l] : 0;
    }
    if (maxel < min_buf) maxel = min_buf;
    n->buf_elems = maxel;
    if (ws < min_ws) ws = min_ws;
    n->ws_bytes = ws;
    n->ws_borrowed = borrow && borrow->ws_bytes >= ws;
    n->bufs_borrowed = borrow && borrow->buf_elems >= maxel;
    n->bytes = (n->bufs_borrowed ? 0 : 2 * nst__round64(maxel * sizeof(float))) + (n->ws_borrowed ? 0 : ws);
    for (l = 0; l <= last; l++) {
        size_t el = (size_t)n->c_[l] * n->h_[l] * n->w_[l];
        if (n->keep[l]) n->bytes += nst__round64(el * sizeof(float));
        if (nst__layer_type(l) == NST__L_RELU) n->bytes += nst__round64((el + 7) / 8);
        if (nst__layer_type(l) == NST__L_POOL && !avg) n->bytes += nst__round64(el);
    }
    if (!alloc) return NST_OK;
    if (n->bufs_borrowed) {
        n->buf[0] = borrow->buf[0];
        n->buf[1] = borrow->buf[1];
    } else {
        n->buf[0] = (float *)nst__aligned_alloc(maxel * sizeof(float));
        n->buf[1] = (float *)nst__aligned_alloc(maxel * sizeof(float));
    }
    n->ws = n->ws_borrowed ? borrow->ws : ws ? nst__aligned_alloc(ws) : NULL;
    if (!n->buf[0] || !n->buf[1] || (ws && !n->ws)) goto oom;
    for (l = 0; l <= last; l++) {
        size_t el = (size_t)n->c_[l] * n->h_[l] * n->w_[l];
        if (n->keep[l] && !(n->feat[l] = (float *)nst__aligned_alloc(el * sizeof(float)))) goto oom;
        if (nst__layer_type(l) == NST__L_RELU && !(n->rec[l] = (unsigned char *)nst__aligned_alloc((el + 7) / 8))) goto oom;
        if (nst__layer_type(l) == NST__L_POOL && !avg && !(n->rec[l] = (unsigned char *)nst__aligned_alloc(el))) goto oom;
    }
    return NST_OK;
oom:
    return nst__err(NST_ERR_NOMEM, "out of memory for the network at %dx%d", w, h);
}

static nst_status nst__net_init(nst__net *n, const nst_model *m, int h, int w, int last, const unsigned char *keep,
                                int avg, int nthreads, int alloc) {
    return nst__net_init_ws(n, m, h, w, last, keep, avg, nthreads, alloc, NULL, 0, 0);
}

static void nst__net_free(nst__net *n) {
    int l;
    if (!n->bufs_borrowed) {
        nst__aligned_free(n->buf[0]);
        nst__aligned_free(n->buf[1]);
    }
    if (!n->ws_borrowed) nst__aligned_free(n->ws);
    for (l = 0; l < NST_VGG_LAYERS; l++) {
        nst__aligned_free(n->feat[l]);
        nst__aligned_free(n->rec[l]);
    }
    memset(n, 0, sizeof *n);
}

/* Applies ReLU from src to dst (may alias) and records the mask, one bit per element. */
static void nst__relu_forward(float *dst, const float *src, unsigned char *bits, size_t n, int nthreads) {
    long nb = (long)((n + 7) / 8), i;
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (i = 0; i < nb; i++) {
        size_t k, base = (size_t)i * 8, end = NST__MIN(base + 8, n);
        unsigned v = 0;
        for (k = base; k < end; k++) {
            float x = src[k];
            int pos = x > 0.0f;
            dst[k] = pos ? x : 0.0f;
            v |= (unsigned)pos << (k - base);
        }
        bits[i] = (unsigned char)v;
    }
}
static void nst__relu_mask_bits(const float *x, unsigned char *bits, size_t n, int nthreads) {
    long nb = (long)((n + 7) / 8), i;
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (i = 0; i < nb; i++) {
        size_t k, base = (size_t)i * 8, end = NST__MIN(base + 8, n);
        unsigned v = 0;
        for (k = base; k < end; k++) v |= (unsigned)(x[k] > 0.0f) << (k - base);
        bits[i] = (unsigned char)v;
    }
}
static void nst__relu_backward(float *g, const unsigned char *bits, size_t n, int nthreads) {
    long nb = (long)((n + 7) / 8), i;
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (i = 0; i < nb; i++) {
        size_t k, base = (size_t)i * 8, end = NST__MIN(base + 8, n);
        unsigned v = bits[i];
        for (k = base; k < end; k++)
            if (!((v >> (k - base)) & 1)) g[k] = 0.0f;
    }
}

/* 2x2 max pooling that records which of the four won (0..3, first maximum in row-major order). */
static void nst__maxpool_forward_rec(float *out, unsigned char *code, const float *in, int c, int h, int w, int nthreads) {
    int ch, oh = h / 2, ow = w / 2;
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (ch = 0; ch < c; ch++) {
        const float *s = in + (size_t)ch * h * w;
        float *o = out + (size_t)ch * oh * ow;
        unsigned char *k = code + (size_t)ch * oh * ow;
        int y, x;
        for (y = 0; y < oh; y++) {
            const float *r0 = s + (size_t)(2 * y) * w, *r1 = r0 + w;
            for (x = 0; x < ow; x++) {
                float m = r0[2 * x];
                int best = 0;
                if (r0[2 * x + 1] > m) { m = r0[2 * x + 1]; best = 1; }
                if (r1[2 * x] > m) { m = r1[2 * x]; best = 2; }
                if (r1[2 * x + 1] > m) { m = r1[2 * x + 1]; best = 3; }
                o[(size_t)y * ow + x] = m;
                k[(size_t)y * ow + x] = (unsigned char)best;
            }
        }
    }
}
static void nst__maxpool_backward_rec(float *din, const float *dout, const unsigned char *code, int c, int h, int w,
                                      int nthreads) {
    int ch, oh = h / 2, ow = w / 2;
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (ch = 0; ch < c; ch++) {
        const float *g = dout + (size_t)ch * oh * ow;
        const unsigned char *k = code + (size_t)ch * oh * ow;
        float *d = din + (size_t)ch * h * w;
        int y, x;
        memset(d, 0, sizeof(float) * (size_t)h * w);
        for (y = 0; y < oh; y++)
            for (x = 0; x < ow; x++) {
                int b = k[(size_t)y * ow + x];
                d[(size_t)(2 * y + (b >> 1)) * w + 2 * x + (b & 1)] = g[(size_t)y * ow + x];
            }
    }
}

/* Pixels (planar RGB, 0..255) to network input under the model's convention. */
static void nst__preprocess(const nst_input_convention *cv, const float *px, float *in, size_t hw) {
    int c;
    for (c = 0; c < 3; c++) {
        const float *s = px + (size_t)(cv->bgr ? 2 - c : c) * hw;
        float *d = in + (size_t)c * hw;
        float a = cv->scale / (255.0f * cv->std[c]), b = -cv->mean[c] / cv->std[c];
        size_t i;
        for (i = 0; i < hw; i++) d[i] = s[i] * a + b;
    }
}

static float *nst__net_other(nst__net *n, const float *cur) { return cur == n->buf[0] ? n->buf[1] : n->buf[0]; }

static nst_status nst__net_forward(nst__net *n, const float *pixels) {
    const nst_model *m = n->m;
    float *cur = n->buf[0];
    int l, ci = 0, c = 3, h = n->h, w = n->w;
    nst_status st;
    nst__preprocess(&m->conv, pixels, cur, (size_t)h * w);
    for (l = 0; l <= n->last; l++) {
        int t = nst__layer_type(l);
        size_t el = (size_t)n->c_[l] * n->h_[l] * n->w_[l];
        float *out = n->keep[l] ? n->feat[l] : nst__net_other(n, cur);
        if (t == NST__L_CONV) {
            /* fuse the ReLU unless the pre-activation itself is a loss layer */
            int fuse = l + 1 <= n->last && !n->keep[l];
            if (fuse) out = n->keep[l + 1] ? n->feat[l + 1] : nst__net_other(n, cur);
            if ((st = nst__conv_forward(m->plan[ci], cur, out, h, w, fuse, n->nthreads, n->ws)) != NST_OK) return st;
            c = m->cout[ci++];
            if (fuse) {
                l++;
                nst__relu_mask_bits(out, n->rec[l], el, n->nthreads);
            }
        } else if (t == NST__L_RELU) {
            nst__relu_forward(out, cur, n->rec[l], el, n->nthreads);
        } else {
            if (n->avg) nst__pool_forward(out, cur, c, h, w, 1, n->nthreads);
            else nst__maxpool_forward_rec(out, n->rec[l], cur, c, h, w, n->nthreads);
            h /= 2; w /= 2;
        }
        cur = out;
    }
    n->out = cur;
    return NST_OK;
}

/* Adds d loss / d (output of layer) into g, given the layer's kept features; scratch has room for
 * one more feature map of that layer. */
typedef void (*nst__lossgrad_fn)(void *ctx, int layer, const float *feat, float *g, float *scratch);

/* Backward from the deepest layer to the pixels; grad_pixels is [3][h][w]. */
static nst_status nst__net_backward(nst__net *n, nst__lossgrad_fn lossgrad, void *ctx, float *grad_pixels) {
    const nst_model *m = n->m;
    float *g = n->buf[0];
    int l, ci = nst__layer_conv(n->last);
    size_t hw = (size_t)n->h * n->w;
    nst_status st;
    memset(g, 0, sizeof(float) * (size_t)n->c_[n->last] * n->h_[n->last] * n->w_[n->last]);
    for (l = n->last; l >= 0; l--) {
        int t = nst__layer_type(l);
        int inc = l ? n->c_[l - 1] : 3, inh = l ? n->h_[l - 1] : n->h, inw = l ? n->w_[l - 1] : n->w;
        size_t el = (size_t)n->c_[l] * n->h_[l] * n->w_[l];
        float *other = nst__net_other(n, g);
        if (n->keep[l]) lossgrad(ctx, l, n->feat[l], g, other);
        if (t == NST__L_RELU) {
            nst__relu_backward(g, n->rec[l], el, n->nthreads);
        } else if (t == NST__L_POOL) {
            if (n->avg) nst__pool_backward(other, g, NULL, inc, inh, inw, 1, n->nthreads);
            else nst__maxpool_backward_rec(other, g, n->rec[l], inc, inh, inw, n->nthreads);
            g = other;
        } else {
            if ((st = nst__conv_backward_data(m->plan[ci], g, other, inh, inw, n->nthreads, n->ws)) != NST_OK) return st;
            ci--;
            g = other;
        }
    }
    {
        const nst_input_convention *cv = &m->conv;
        int c;
        for (c = 0; c < 3; c++) {
            const float *s = g + (size_t)c * hw;
            float *d = grad_pixels + (size_t)(cv->bgr ? 2 - c : c) * hw;
            float a = cv->scale / (255.0f * cv->std[c]);
            size_t i;
            for (i = 0; i < hw; i++) d[i] = s[i] * a;
        }
    }
    return NST_OK;
}

/* ---- the random model ----------------------------------------------------------------------------
 * He-initialised VGG-19 whose layers are rescaled, one scalar per layer, so the mean post-ReLU
 * activation on a fixed calibration image is the same at every layer (the "normalised VGG" of Gatys
 * et al.); without it activations vanish or explode over 16 layers and the style loss barely moves
 * (DESIGN 5b). The common mean is 10, not 1: content loss scales with its square and style loss with
 * its fourth power, so at 10 jcjohnson's default weights (content 5, style 100) strike the balance that
 * style weight 1e4 strikes at 1, and the gradients are large enough that torch-style L-BFGS (unit step,
 * curvature pairs below 1e-10 dropped) does not crawl: at 1 it spent its first ~10 iterations as
 * plain gradient descent with steps too small to measure curvature. */
#define NST__RANDOM_MEAN 10.0
static void nst__calibration_image(float *px, int h, int w, unsigned long long seed) {
    nst__rng r;
    int c, k, y, x;
    r.s = seed ^ 0x5DEECE66DULL;
    for (c = 0; c < 3; c++) {
        float *p = px + (size_t)c * h * w;
        double fx[6], fy[6], ph[6], amp[6];
        for (k = 0; k < 6; k++) {
            fx[k] = 0.5 + 6.0 * nst__rng_uniform(&r);
            fy[k] = 0.5 + 6.0 * nst__rng_uniform(&r);
            ph[k] = 6.283185307 * nst__rng_uniform(&r);
            amp[k] = 20.0 + 20.0 * nst__rng_uniform(&r);
        }
        for (y = 0; y < h; y++)
            for (x = 0; x < w; x++) {
                double v = 128.0 + 10.0 * nst__rng_normal(&r);
                for (k = 0; k < 6; k++) v += amp[k] * sin(6.283185307 * (fx[k] * x / w + fy[k] * y / h) + ph[k]);
                p[(size_t)y * w + x] = (float)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    }
}

NSTDEF nst_status nst_model_random(unsigned long long seed, nst_model **out) {
    int cin[NST_VGG_CONVS], i;
    const int cal = 64;
    nst_model *m;
    nst_status st;
    nst__rng r;
    float *px;
    if (!out) return nst__err(NST_ERR_ARGUMENT, "model: NULL output");
    *out = NULL;
    for (i = 0; i < NST_VGG_CONVS; i++) cin[i] = i ? nst__vgg_cout[i - 1] : 3;
    if ((st = nst__model_alloc(NST_VGG_CONVS, cin, nst__vgg_cout, &m)) != NST_OK) return st;
    m->is_random = 1;
    m->pool = NST_POOL_AVG;
    m->conv.bgr = 0;
    m->conv.scale = 255.0f;
    m->conv.mean[0] = 123.68f; m->conv.mean[1] = 116.779f; m->conv.mean[2] = 103.939f;
    m->conv.std[0] = m->conv.std[1] = m->conv.std[2] = 1.0f;
    r.s = seed;
    for (i = 0; i < NST_VGG_CONVS; i++) {
        size_t k, nw = (size_t)m->cout[i] * m->cin[i] * 9;
        double sd = sqrt(2.0 / (9.0 * m->cin[i]));
        for (k = 0; k < nw; k++) m->w[i][k] = (float)(sd * nst__rng_normal(&r));
        memset(m->b[i], 0, sizeof(float) * (size_t)m->cout[i]);
    }
    if ((st = nst__model_finish(m)) != NST_OK) { nst_model_free(m); return st; }
    /* calibrate in one forward pass: scale each layer's output (and filters) so its mean is 1, then
     * feed the scaled output on, which is what the next layer sees after rescaling */
    {
        size_t cap = (size_t)64 * cal * cal;
        float *a = (float *)nst__aligned_alloc(cap * sizeof(float)), *b = (float *)nst__aligned_alloc(cap * sizeof(float));
        int h = cal, w = cal, c = 3, l;
        px = (float *)nst__malloc(sizeof(float) * 3 * cal * cal);
        if (!a || !b || !px) st = nst__err(NST_ERR_NOMEM, "model: out of memory");
        if (st == NST_OK) {
            nst__calibration_image(px, cal, cal, seed);
            nst__preprocess(&m->conv, px, a, (size_t)cal * cal);
        }
        for (l = 0, i = 0; l < NST_VGG_LAYERS && st == NST_OK; l++) {
            int t = nst__layer_type(l);
            float *tmp;
            if (t == NST__L_RELU) continue;
            if (t == NST__L_POOL) {
                if (h < 2 || w < 2) break;
                nst__pool_forward(b, a, c, h, w, 1, 0);
                h /= 2; w /= 2;
            } else {
                size_t k, el = (size_t)m->cout[i] * h * w, nw = (size_t)m->cout[i] * m->cin[i] * 9;
                double sum = 0;
                float sc;
                if ((st = nst__conv_forward(m->plan[i], a, b, h, w, 1, 0, NULL)) != NST_OK) break;
                for (k = 0; k < el; k++) sum += b[k];
                /* bias is zero and ReLU is positively homogeneous: scaling filters scales the output */
                sc = sum > 0 ? (float)(NST__RANDOM_MEAN * el / sum) : 1.0f;
                for (k = 0; k < el; k++) b[k] *= sc;
                for (k = 0; k < nw; k++) m->w[i][k] *= sc;
                c = m->cout[i++];
            }
            tmp = a; a = b; b = tmp;
        }
        nst__aligned_free(a);
        nst__aligned_free(b);
        nst__free(px);
    }
    /* the plans packed the unscaled filters: rebuild them */
    for (i = 0; i < m->nconv; i++) { nst__conv_plan_free(m->plan[i]); m->plan[i] = NULL; }
    if (st == NST_OK) st = nst__model_finish(m);
    if (st != NST_OK) { nst_model_free(m); return st; }
    *out = m;
    return NST_OK;
}

/* ---- losses (jcjohnson/neural-style) ---------------------------------------------------------------
 * content = content_weight * mean((F - P)^2) over each content layer
 * style   = style_weight * sum_l w_l * mean((G_l - A_l)^2), G = F F^T / (C*H*W), A = blend of style Grams
 * tv      = tv_weight * 1/2 * sum over the (H-1)x(W-1) corner of squared right and down differences,
 *           whose gradient is exactly jcjohnson's TVLoss gradient (it applies TV to the 0..255 image)
 * normalize_gradients divides each loss layer's gradient by its L1 norm (+1e-8) before weighting. */
#define NST__MAX_LOSS_LAYERS 16

typedef struct nst__style_layer {
    int layer, c;
    float weight;
    float *target;   /* A: c x c */
    float *gram;     /* G at the last evaluation */
} nst__style_layer;

struct nst_objective {
    const nst_model *m;
    nst__net net;
    int h, w, nthreads, normalize;
    double cw, sw, tvw;
    int ncontent, nstyle;
    int content_layer[NST__MAX_LOSS_LAYERS];
    float *content_target[NST__MAX_LOSS_LAYERS];
    nst__style_layer style[NST__MAX_LOSS_LAYERS];
    nst_losses last;
    int evaluated;
};

/* Parses "relu1_1,relu2_1" into layer indices. */
static nst_status nst__parse_layers(const char *spec, int *out, int *count) {
    const char *p = spec;
    *count = 0;
    if (!spec) return NST_OK;
    while (*p) {
        char name[32];
        size_t len = strcspn(p, ", ");
        int idx;
        if (len == 0) { p++; continue; }
        if (len >= sizeof name) return nst__err(NST_ERR_ARGUMENT, "unknown layer '%.*s'", (int)NST__MIN(len, 40), p);
        memcpy(name, p, len);
        name[len] = 0;
        idx = nst_layer_index(name);
        if (idx < 0) return nst__err(NST_ERR_ARGUMENT, "unknown layer '%s' (expected e.g. relu4_2)", name);
        if (*count >= NST__MAX_LOSS_LAYERS) return nst__err(NST_ERR_ARGUMENT, "too many layers in '%s'", spec);
        out[(*count)++] = idx;
        p += len;
    }
    return NST_OK;
}

static int nst__deepest(const int *a, int n, int d) {
    int i;
    for (i = 0; i < n; i++) if (a[i] > d) d = a[i];
    return d;
}

/* Deterministic parallel dot product: fixed 64 chunks, summed in order, so the result does not
 * depend on the thread count. */
static double nst__dot(const float *a, const float *b, size_t n, int nthreads) {
    double part[64], s = 0;
    long k;
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (k = 0; k < 64; k++) {
        size_t i, lo = n * (size_t)k / 64, hi = n * (size_t)(k + 1) / 64;
        double acc = 0;
        for (i = lo; i < hi; i++) acc += (double)a[i] * b[i];
        part[k] = acc;
    }
    for (k = 0; k < 64; k++) s += part[k];
    return s;
}
static double nst__asum(const float *a, size_t n) {
    double s = 0;
    size_t i;
    for (i = 0; i < n; i++) s += fabs((double)a[i]);
    return s;
}

/* loss = 1/2 sum (x[i][j]-x[i][j+1])^2 + (x[i][j]-x[i+1][j])^2 over i<H-1, j<W-1; grad += tvw * dloss */
static double nst__tv(const float *x, int h, int w, float tvw, float *grad) {
    double loss = 0;
    int c, y, xx;
    for (c = 0; c < 3; c++) {
        const float *p = x + (size_t)c * h * w;
        float *g = grad ? grad + (size_t)c * h * w : NULL;
        for (y = 0; y + 1 < h; y++)
            for (xx = 0; xx + 1 < w; xx++) {
                size_t i = (size_t)y * w + xx;
                float dx = p[i] - p[i + 1], dy = p[i] - p[i + w];
                loss += 0.5 * ((double)dx * dx + (double)dy * dy);
                if (g) {
                    g[i] += tvw * (dx + dy);
                    g[i + 1] -= tvw * dx;
                    g[i + w] -= tvw * dy;
                }
            }
    }
    return loss;
}

static nst_status nst__gram(float *g, const float *f, int c, size_t hw, int nthreads) {
    if (hw > INT_MAX) return nst__err(NST_ERR_ARGUMENT, "gram: feature map too large");
    return nst__ssyrk_ex(nthreads, c, (int)hw, 1.0f / (float)((double)c * hw), f, (int)hw, g, c);
}

static void nst__objective_lossgrad(void *ctx, int layer, const float *feat, float *g, float *scratch) {
    nst_objective *o = (nst_objective *)ctx;
    const nst__net *n = &o->net;
    size_t el = (size_t)n->c_[layer] * n->h_[layer] * n->w_[layer], i;
    int k;
    for (k = 0; k < o->ncontent; k++) {
        const float *p = o->content_target[k];
        if (o->content_layer[k] != layer || o->cw == 0) continue;
        if (o->normalize) {
            double a = 0, sc;
            for (i = 0; i < el; i++) { scratch[i] = 2.0f * (feat[i] - p[i]) / (float)el; a += fabs(scratch[i]); }
            sc = o->cw / (a + 1e-8);
            for (i = 0; i < el; i++) g[i] += (float)(sc * scratch[i]);
        } else {
            float sc = (float)(o->cw * 2.0 / (double)el);
            for (i = 0; i < el; i++) g[i] += sc * (feat[i] - p[i]);
        }
    }
    for (k = 0; k < o->nstyle; k++) {
        nst__style_layer *s = &o->style[k];
        int c = s->c;
        size_t hw = el / (size_t)c, cc = (size_t)c * c;
        double coef = o->sw * s->weight;
        float *d;
        if (s->layer != layer || coef == 0) continue;
        /* dL/dF = 4 w (G - A) F / (C^2 * C*H*W); G - A is formed in place of G (recomputed each eval) */
        d = s->gram;
        for (i = 0; i < cc; i++) d[i] -= s->target[i];
        if (o->normalize) {
            double a;
            nst__sgemm_ex(n->nthreads, 0, 0, c, (int)hw, c, (float)(4.0 / ((double)cc * el)), d, c, feat, (int)hw,
                          0.0f, scratch, (int)hw);
            a = nst__asum(scratch, el);
            for (i = 0; i < el; i++) g[i] += (float)(coef / (a + 1e-8)) * scratch[i];
        } else {
            nst__sgemm_ex(n->nthreads, 0, 0, c, (int)hw, c, (float)(coef * 4.0 / ((double)cc * el)), d, c, feat,
                          (int)hw, 1.0f, g, (int)hw);
        }
        for (i = 0; i < cc; i++) d[i] += s->target[i];   /* restore G for nst_objective_gram */
    }
}

NSTDEF void nst_objective_free(nst_objective *o) {
    int k;
    if (!o) return;
    nst__net_free(&o->net);
    for (k = 0; k < o->ncontent; k++) nst__aligned_free(o->content_target[k]);
    for (k = 0; k < o->nstyle; k++) {
        nst__aligned_free(o->style[k].target);
        nst__aligned_free(o->style[k].gram);
    }
    nst__free(o);
}

/* Image (RGB interleaved [0,1]) to planar 0..255. */
static void nst__image_to_planar(const nst_image *im, float *px) {
    size_t hw = (size_t)im->width * im->height, i;
    int c;
    for (c = 0; c < 3; c++)
        for (i = 0; i < hw; i++) px[(size_t)c * hw + i] = 255.0f * im->pixels[i * 3 + c];
}
static void nst__planar_to_image(const float *px, nst_image *im) {
    size_t hw = (size_t)im->width * im->height, i;
    int c;
    for (c = 0; c < 3; c++)
        for (i = 0; i < hw; i++) {
            float v = px[(size_t)c * hw + i] * (1.0f / 255.0f);
            im->pixels[i * 3 + c] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
        }
}

static nst_status nst__require_rgb(const nst_image *im, const char *what) {
    if (!im || !im->pixels || im->channels != 3 || im->width < 1 || im->height < 1)
        return nst__err(NST_ERR_ARGUMENT, "%s must be an RGB image (use nst_image_to_rgb)", what);
    return NST_OK;
}

/* Byte count of an objective at h x w (the network plus targets), for the memory estimate. */
static nst_status nst__objective_layout(const nst_model *m, const nst_options *o, int *content, int *nc, int *style,
                                        int *ns, int *last, unsigned char *keep) {
    nst_status st;
    int k;
    if ((st = nst__parse_layers(o->content_layers, content, nc)) != NST_OK) return st;
    if ((st = nst__parse_layers(o->style_layers, style, ns)) != NST_OK) return st;
    if (*nc + *ns == 0) return nst__err(NST_ERR_ARGUMENT, "no content or style layers");
    *last = nst__deepest(style, *ns, nst__deepest(content, *nc, -1));
    if (nst__layer_conv(*last) >= m->nconv)
        return nst__err(NST_ERR_ARGUMENT, "layer %s needs %s, but the model stops at %s", nst__layer_names[*last],
                        nst__conv_names[nst__layer_conv(*last)], nst__conv_names[m->nconv - 1]);
    memset(keep, 0, NST_VGG_LAYERS);
    for (k = 0; k < *nc; k++) keep[content[k]] = 1;
    for (k = 0; k < *ns; k++) keep[style[k]] = 1;
    return NST_OK;
}

NSTDEF nst_status nst_objective_create(const nst_model *m, const nst_image *content, const nst_image *styles,
                                       const float *blend, int nstyles, const nst_options *opt,
                                       nst_objective **out) {
    nst_objective *o;
    nst_options defaults;
    int content_l[NST__MAX_LOSS_LAYERS], style_l[NST__MAX_LOSS_LAYERS], nc, ns, last, k, i, avg;
    unsigned char keep[NST_VGG_LAYERS];
    nst_status st;
    float *px = NULL;
    double bsum = 0;
    if (!out) return nst__err(NST_ERR_ARGUMENT, "objective: NULL output");
    *out = NULL;
    if (!opt) { nst_options_init(&defaults); opt = &defaults; }
    if (!m) return nst__err(NST_ERR_ARGUMENT, "objective: no model");
    if ((st = nst__require_rgb(content, "the content image")) != NST_OK) return st;
    if (nstyles < 0 || (nstyles > 0 && !styles)) return nst__err(NST_ERR_ARGUMENT, "objective: bad style images");
    for (k = 0; k < nstyles; k++) {
        if ((st = nst__require_rgb(&styles[k], "a style image")) != NST_OK) return st;
        bsum += blend ? blend[k] : 1.0;
        if (blend && !(blend[k] >= 0)) return nst__err(NST_ERR_ARGUMENT, "style blend weights must be >= 0");
    }
    if (nstyles && !(bsum > 0)) return nst__err(NST_ERR_ARGUMENT, "style blend weights sum to 0");
    if ((st = nst__objective_layout(m, opt, content_l, &nc, style_l, &ns, &last, keep)) != NST_OK) return st;
    if (nstyles == 0) ns = 0;
    o = (nst_objective *)nst__calloc(1, sizeof *o);
    if (!o) return nst__err(NST_ERR_NOMEM, "objective: out of memory");
    o->m = m;
    o->h = content->height; o->w = content->width;
    o->nthreads = nst__resolve_threads(opt->threads);
    o->normalize = opt->normalize_gradients;
    o->cw = opt->content_weight; o->sw = opt->style_weight; o->tvw = opt->tv_weight;
    avg = (opt->pool == NST_POOL_DEFAULT ? m->pool : opt->pool) == NST_POOL_AVG;
    if (ns == 0) for (k = 0; k < NST_VGG_LAYERS; k++) keep[k] = 0;
    for (k = 0; k < nc; k++) keep[content_l[k]] = 1;
    if (ns == 0) last = nst__deepest(content_l, nc, -1);
    {
        /* one convolution scratch serves the main network and the style networks built beside it */
        size_t ws = 0, bufs = 0;
        nst__net sn;
        unsigned char skeep[NST_VGG_LAYERS];
        memset(skeep, 0, sizeof skeep);
        for (k = 0; k < ns; k++) skeep[style_l[k]] = 1;
        for (i = 0; i < nstyles && ns > 0; i++)
            if (nst__net_init(&sn, m, styles[i].height, styles[i].width, nst__deepest(style_l, ns, -1), skeep, avg,
                              o->nthreads, 0) == NST_OK) {
                ws = NST__MAX(ws, sn.ws_bytes);
                bufs = NST__MAX(bufs, sn.buf_elems);
            }
        if ((st = nst__net_init_ws(&o->net, m, o->h, o->w, last, keep, avg, o->nthreads, 1, NULL, ws, bufs)) != NST_OK)
            goto fail;
    }
    /* content targets */
    px = (float *)nst__malloc(sizeof(float) * 3 * (size_t)o->w * o->h);
    if (!px) { st = nst__err(NST_ERR_NOMEM, "objective: out of memory"); goto fail; }
    nst__image_to_planar(content, px);
    if ((st = nst__net_forward(&o->net, px)) != NST_OK) goto fail;
    for (k = 0; k < nc; k++) {
        int l = content_l[k];
        size_t el = (size_t)o->net.c_[l] * o->net.h_[l] * o->net.w_[l];
        o->content_layer[k] = l;
        o->content_target[k] = (float *)nst__aligned_alloc(el * sizeof(float));
        o->ncontent = k + 1;
        if (!o->content_target[k]) { st = nst__err(NST_ERR_NOMEM, "objective: out of memory"); goto fail; }
        memcpy(o->content_target[k], o->net.feat[l], el * sizeof(float));
    }
    nst__free(px);
    px = NULL;
    /* style targets: blended Grams, each style image at its own size */
    for (k = 0; k < ns; k++) {
        int l = style_l[k], c = o->net.c_[l];
        nst__style_layer *s = &o->style[k];
        s->layer = l; s->c = c;
        s->weight = opt->style_layer_weights ? opt->style_layer_weights[k] : 1.0f;
        s->target = (float *)nst__aligned_alloc(sizeof(float) * (size_t)c * c);
        s->gram = (float *)nst__aligned_alloc(sizeof(float) * (size_t)c * c);
        o->nstyle = k + 1;
        if (!s->target || !s->gram) { st = nst__err(NST_ERR_NOMEM, "objective: out of memory"); goto fail; }
        memset(s->target, 0, sizeof(float) * (size_t)c * c);
    }
    for (i = 0; i < nstyles && ns > 0; i++) {
        nst__net sn;
        unsigned char skeep[NST_VGG_LAYERS];
        const nst_image *si = &styles[i];
        int slast = nst__deepest(style_l, ns, -1);
        float wgt = (float)((blend ? blend[i] : 1.0) / bsum);
        memset(skeep, 0, sizeof skeep);
        for (k = 0; k < ns; k++) skeep[style_l[k]] = 1;
        if ((st = nst__net_init_ws(&sn, m, si->height, si->width, slast, skeep, avg, o->nthreads, 1, &o->net, 0, 0)) !=
            NST_OK) {
            nst__net_free(&sn);
            goto fail;
        }
        px = (float *)nst__malloc(sizeof(float) * 3 * (size_t)si->width * si->height);
        if (!px) { nst__net_free(&sn); st = nst__err(NST_ERR_NOMEM, "objective: out of memory"); goto fail; }
        nst__image_to_planar(si, px);
        st = nst__net_forward(&sn, px);
        for (k = 0; k < ns && st == NST_OK; k++) {
            nst__style_layer *s = &o->style[k];
            size_t hw = (size_t)sn.h_[s->layer] * sn.w_[s->layer], j;
            if ((st = nst__gram(s->gram, sn.feat[s->layer], s->c, hw, o->nthreads)) != NST_OK) break;
            for (j = 0; j < (size_t)s->c * s->c; j++) s->target[j] += wgt * s->gram[j];
        }
        nst__free(px);
        px = NULL;
        nst__net_free(&sn);
        if (st != NST_OK) goto fail;
    }
    *out = o;
    return NST_OK;
fail:
    nst__free(px);
    nst_objective_free(o);
    return st;
}

NSTDEF nst_status nst_objective_eval(nst_objective *o, const float *pixels, nst_losses *lo, float *grad) {
    nst__net *n;
    nst_losses L;
    nst_status st;
    int k;
    size_t i;
    if (!o || !pixels) return nst__err(NST_ERR_ARGUMENT, "objective: NULL argument");
    n = &o->net;
    memset(&L, 0, sizeof L);
    if ((st = nst__net_forward(n, pixels)) != NST_OK) return st;
    for (k = 0; k < o->ncontent; k++) {
        int l = o->content_layer[k];
        size_t el = (size_t)n->c_[l] * n->h_[l] * n->w_[l];
        const float *f = n->feat[l], *p = o->content_target[k];
        double s = 0;
        for (i = 0; i < el; i++) { double d = (double)f[i] - p[i]; s += d * d; }
        L.content_raw += s / (double)el;
    }
    for (k = 0; k < o->nstyle; k++) {
        nst__style_layer *s = &o->style[k];
        size_t hw = (size_t)n->h_[s->layer] * n->w_[s->layer], cc = (size_t)s->c * s->c;
        double acc = 0;
        if ((st = nst__gram(s->gram, n->feat[s->layer], s->c, hw, o->nthreads)) != NST_OK) return st;
        for (i = 0; i < cc; i++) { double d = (double)s->gram[i] - s->target[i]; acc += d * d; }
        L.style_raw += s->weight * acc / (double)cc;
    }
    if (grad) {
        if ((st = nst__net_backward(n, nst__objective_lossgrad, o, grad)) != NST_OK) return st;
    }
    L.tv_raw = nst__tv(pixels, o->h, o->w, (float)o->tvw, grad);
    L.content = o->cw * L.content_raw;
    L.style = o->sw * L.style_raw;
    L.tv = o->tvw * L.tv_raw;
    L.total = L.content + L.style + L.tv;
    o->last = L;
    o->evaluated = 1;
    if (lo) *lo = L;
    return NST_OK;
}

NSTDEF nst_status nst_objective_features(const nst_objective *o, const char *layer, int *c, int *h, int *w,
                                         const float **data) {
    int l = nst_layer_index(layer);
    if (!o || l < 0 || l > o->net.last || !o->net.keep[l] || !o->evaluated)
        return nst__err(NST_ERR_ARGUMENT, "objective: no features kept at '%s'", layer ? layer : "(null)");
    if (c) *c = o->net.c_[l];
    if (h) *h = o->net.h_[l];
    if (w) *w = o->net.w_[l];
    if (data) *data = o->net.feat[l];
    return NST_OK;
}

NSTDEF nst_status nst_objective_gram(const nst_objective *o, const char *layer, int *c, const float **data) {
    int l = nst_layer_index(layer), k;
    if (o && o->evaluated)
        for (k = 0; k < o->nstyle; k++)
            if (o->style[k].layer == l) {
                if (c) *c = o->style[k].c;
                if (data) *data = o->style[k].gram;
                return NST_OK;
            }
    return nst__err(NST_ERR_ARGUMENT, "objective: '%s' is not an evaluated style layer", layer ? layer : "(null)");
}

/* ---- optimisers ------------------------------------------------------------------------------------*/
NSTDEF void nst_lbfgs_options_init(nst_lbfgs_options *o) {
    memset(o, 0, sizeof *o);
    o->max_iter = 100;
    o->history = 100;
    o->learning_rate = 1.0;
    o->tol_fun = 1e-5;
    o->tol_x = 1e-9;
}
NSTDEF void nst_adam_options_init(nst_adam_options *o) {
    memset(o, 0, sizeof *o);
    o->max_iter = 100;
    o->learning_rate = 1e-3;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
}

/* y += a * x, in fixed chunks (elementwise, so deterministic whatever the thread count). */
static void nst__axpy(float *y, double a, const float *x, size_t n, int nthreads) {
    long i;
    float af = (float)a;
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (i = 0; i < (long)n; i++) y[i] += af * x[i];
}

/* L-BFGS history vectors, f32 or bfloat16 (the top half of an f32: same range, 8-bit mantissa). In bf16
 * the history takes half the memory, which at 512 px with m = 100 is 315 MB saved. */
static uint16_t nst__to_bf16(float f) {
    uint32_t u = nst__bits_from_f32(f);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);   /* round to nearest even */
}
static float nst__from_bf16(uint16_t h) { return nst__f32_from_bits((uint32_t)h << 16); }

static double nst__hist_dot(const void *h, int bf16, const float *b, size_t n, int nthreads) {
    double part[64], s = 0;
    long k;
    if (!bf16) return nst__dot((const float *)h, b, n, nthreads);
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (k = 0; k < 64; k++) {
        const uint16_t *a = (const uint16_t *)h;
        size_t i, lo = n * (size_t)k / 64, hi = n * (size_t)(k + 1) / 64;
        double acc = 0;
        for (i = lo; i < hi; i++) acc += (double)nst__from_bf16(a[i]) * b[i];
        part[k] = acc;
    }
    for (k = 0; k < 64; k++) s += part[k];
    return s;
}
static void nst__hist_axpy(float *y, double a, const void *h, int bf16, size_t n, int nthreads) {
    long i;
    float af = (float)a;
    const uint16_t *x = (const uint16_t *)h;
    if (!bf16) { nst__axpy(y, a, (const float *)h, n, nthreads); return; }
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (i = 0; i < (long)n; i++) y[i] += af * nst__from_bf16(x[i]);
}
static void nst__hist_store(void *h, int bf16, const float *src, size_t n) {
    size_t i;
    if (!bf16) { memcpy(h, src, n * sizeof(float)); return; }
    for (i = 0; i < n; i++) ((uint16_t *)h)[i] = nst__to_bf16(src[i]);
}

/* L-BFGS as torch's optim.lbfgs (which jcjohnson/neural-style and neural-style-pt use): two-loop
 * recursion over the last `history` pairs, H0 = s'y / y'y, no line search and a fixed step
 * (the first scaled by min(1, 1/|g|_1)), pairs with s'y <= 1e-10 skipped. The optional line search
 * backtracks from that step until the Armijo condition holds. */
NSTDEF nst_status nst_lbfgs(float *x, size_t n, nst_value_grad_fn fg, void *user, const nst_lbfgs_options *opt,
                            double *final_value, int *evals) {
    nst_lbfgs_options def;
    int m, k = 0, head = 0, iter, nev = 0, max_eval, nthreads = nst_get_threads();
    unsigned char *S = NULL, *Y = NULL;
    float *g = NULL, *g_old = NULL, *d = NULL, *x0 = NULL, *sn = NULL, *yn = NULL;
    int bf16 = opt && opt->history_bf16;
    size_t es = bf16 ? 2 : 4;
    double *rho = NULL, *alpha = NULL, f = 0, f_old = 0, t = 0, hdiag = 1;
    nst_status st = NST_OK;
    size_t bytes;
    if (!opt) { nst_lbfgs_options_init(&def); opt = &def; }
    if (evals) *evals = 0;
    if (!x || !fg || n == 0) return nst__err(NST_ERR_ARGUMENT, "lbfgs: bad arguments");
    m = opt->history > 0 ? opt->history : 100;
    max_eval = opt->max_eval > 0 ? opt->max_eval : (int)(opt->max_iter * 1.25);
    if (!nst__mul_ok(n, (size_t)m * 2 * es, &bytes))
        return nst__err(NST_ERR_NOMEM, "lbfgs: history of %d x %lu floats is too large", m, (unsigned long)n);
    S = (unsigned char *)nst__aligned_alloc(n * (size_t)m * es);
    Y = (unsigned char *)nst__aligned_alloc(n * (size_t)m * es);
    sn = (float *)nst__aligned_alloc(n * sizeof(float));
    yn = (float *)nst__aligned_alloc(n * sizeof(float));
    g = (float *)nst__aligned_alloc(n * sizeof(float));
    g_old = (float *)nst__aligned_alloc(n * sizeof(float));
    d = (float *)nst__aligned_alloc(n * sizeof(float));
    if (opt->line_search) x0 = (float *)nst__aligned_alloc(n * sizeof(float));
    rho = (double *)nst__malloc(sizeof(double) * (size_t)m);
    alpha = (double *)nst__malloc(sizeof(double) * (size_t)m);
    if (!S || !Y || !sn || !yn || !g || !g_old || !d || !rho || !alpha || (opt->line_search && !x0)) {
        st = nst__err(NST_ERR_NOMEM, "lbfgs: out of memory for a history of %d (%lu MB)", m,
                      (unsigned long)(bytes >> 20));
        goto done;
    }
    if ((st = fg(x, g, &f, user)) != NST_OK) goto done;
    nev = 1;
    if (nst__asum(g, n) <= opt->tol_fun) goto done;
    for (iter = 1; iter <= opt->max_iter; iter++) {
        size_t i;
        double gtd;
        if (iter == 1) {
            for (i = 0; i < n; i++) d[i] = -g[i];
        } else {
            /* s = t d (the step just taken), y = g - g_old */
            double ys, yy;
            for (i = 0; i < n; i++) { yn[i] = g[i] - g_old[i]; sn[i] = (float)(t * d[i]); }
            ys = nst__dot(yn, sn, n, nthreads);
            yy = nst__dot(yn, yn, n, nthreads);
            if (opt->relative_curvature ? ys > 1e-10 * yy : ys > 1e-10) {
                nst__hist_store(S + (size_t)head * n * es, bf16, sn, n);
                nst__hist_store(Y + (size_t)head * n * es, bf16, yn, n);
                rho[head] = 1.0 / ys;
                hdiag = ys / yy;
                head = (head + 1) % m;
                if (k < m) k++;
            }
            /* two-loop recursion, newest pair first */
            for (i = 0; i < n; i++) d[i] = -g[i];
            {
                int j;
                for (j = 0; j < k; j++) {
                    int p = (head - 1 - j + 2 * m) % m;
                    alpha[p] = rho[p] * nst__hist_dot(S + (size_t)p * n * es, bf16, d, n, nthreads);
                    nst__hist_axpy(d, -alpha[p], Y + (size_t)p * n * es, bf16, n, nthreads);
                }
                for (i = 0; i < n; i++) d[i] = (float)(d[i] * hdiag);
                for (j = k - 1; j >= 0; j--) {
                    int p = (head - 1 - j + 2 * m) % m;
                    double be = rho[p] * nst__hist_dot(Y + (size_t)p * n * es, bf16, d, n, nthreads);
                    nst__hist_axpy(d, alpha[p] - be, S + (size_t)p * n * es, bf16, n, nthreads);
                }
            }
        }
        memcpy(g_old, g, n * sizeof(float));
        f_old = f;
        gtd = nst__dot(g, d, n, nthreads);
        if (gtd > -opt->tol_x) break;   /* not a descent direction */
        t = iter == 1 ? NST__MIN(1.0, 1.0 / nst__asum(g, n)) * opt->learning_rate : opt->learning_rate;
        if (opt->line_search) {
            int tries;
            memcpy(x0, x, n * sizeof(float));
            for (tries = 0; tries < 25; tries++) {
                for (i = 0; i < n; i++) x[i] = (float)(x0[i] + t * d[i]);
                if ((st = fg(x, g, &f, user)) != NST_OK) goto done;
                nev++;
                if (f <= f_old + 1e-4 * t * gtd || nev >= max_eval) break;
                t *= 0.5;
            }
        } else {
            nst__axpy(x, t, d, n, nthreads);
            if (iter == opt->max_iter) break;   /* torch skips the evaluation after the last step */
            if ((st = fg(x, g, &f, user)) != NST_OK) goto done;
            nev++;
        }
        if (opt->on_iter && opt->on_iter(iter, f, x, opt->user)) {
            st = nst__err(NST_ERR_CANCELLED, "lbfgs: cancelled");
            goto done;
        }
        if (iter == opt->max_iter || nev >= max_eval) break;
        if (nst__asum(g, n) <= opt->tol_fun) break;
        if (fabs(t) * nst__asum(d, n) <= opt->tol_x) break;
        if (fabs(f - f_old) < opt->tol_x) break;
    }
done:
    if (final_value) *final_value = f;
    if (evals) *evals = nev;
    nst__aligned_free(S); nst__aligned_free(Y); nst__aligned_free(sn); nst__aligned_free(yn);
    nst__aligned_free(g); nst__aligned_free(g_old);
    nst__aligned_free(d); nst__aligned_free(x0);
    nst__free(rho); nst__free(alpha);
    return st;
}

/* Adam as torch's optim.adam: step = lr * sqrt(1 - b2^t) / (1 - b1^t), x -= step * m / (sqrt(v) + eps). */
NSTDEF nst_status nst_adam(float *x, size_t n, nst_value_grad_fn fg, void *user, const nst_adam_options *opt,
                           double *final_value) {
    nst_adam_options def;
    float *g, *mo, *v;
    double f = 0;
    nst_status st = NST_OK;
    int it;
    if (!opt) { nst_adam_options_init(&def); opt = &def; }
    if (!x || !fg || n == 0) return nst__err(NST_ERR_ARGUMENT, "adam: bad arguments");
    g = (float *)nst__aligned_alloc(n * sizeof(float));
    mo = (float *)nst__aligned_alloc(n * sizeof(float));
    v = (float *)nst__aligned_alloc(n * sizeof(float));
    if (!g || !mo || !v) { st = nst__err(NST_ERR_NOMEM, "adam: out of memory"); goto done; }
    memset(mo, 0, n * sizeof(float));
    memset(v, 0, n * sizeof(float));
    for (it = 1; it <= opt->max_iter; it++) {
        size_t i;
        double b1 = opt->beta1, b2 = opt->beta2;
        double step = opt->learning_rate * sqrt(1.0 - pow(b2, it)) / (1.0 - pow(b1, it));
        if ((st = fg(x, g, &f, user)) != NST_OK) goto done;
        for (i = 0; i < n; i++) {
            mo[i] = (float)(b1 * mo[i] + (1.0 - b1) * g[i]);
            v[i] = (float)(b2 * v[i] + (1.0 - b2) * (double)g[i] * g[i]);
            x[i] -= (float)(step * mo[i] / (sqrt((double)v[i]) + opt->eps));
        }
        if (opt->on_iter && opt->on_iter(it, f, x, opt->user)) {
            st = nst__err(NST_ERR_CANCELLED, "adam: cancelled");
            goto done;
        }
    }
done:
    if (final_value) *final_value = f;
    nst__aligned_free(g); nst__aligned_free(mo); nst__aligned_free(v);
    return st;
}

/* ---- the transfer driver -----------------------------------------------------------------------------*/
NSTDEF void nst_options_init(nst_options *o) {
    memset(o, 0, sizeof *o);
    o->iterations = 1000;
    o->image_size = 512;
    o->content_weight = 5.0f;
    o->style_weight = 100.0f;
    o->tv_weight = 1e-3f;
    o->content_layers = "relu4_2";
    o->style_layers = "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1";
    o->style_scale = 1.0f;
    o->init = NST_INIT_RANDOM;
    o->optimizer = NST_OPT_LBFGS;
    o->lbfgs_history = 100;
    o->lbfgs_history_bf16 = 1;   /* measured: same convergence as f32 (64 px, 56 its: 938 vs 944) */
    o->learning_rate = 0.0f;   /* 0 = per optimizer: 1 (L-BFGS), 10 (Adam) */
    o->pool = NST_POOL_DEFAULT;
    o->colors = NST_COLORS_STYLE;
    o->scales = 1;
    o->progress_every = 1;
}

/* Output size for a content image: longest side = size (0 keeps the content's size). */
static void nst__fit(int w, int h, int size, int *ow, int *oh) {
    if (size <= 0) { *ow = w; *oh = h; return; }
    if (w >= h) { *ow = size; *oh = (int)((double)h * size / w + 0.5); }
    else { *oh = size; *ow = (int)((double)w * size / h + 0.5); }
    if (*ow < 1) *ow = 1;
    if (*oh < 1) *oh = 1;
}

/* Resized copy (or plain copy when the size matches). */
static nst_status nst__resized(const nst_image *in, int w, int h, nst_image *out) {
    if (in->width == w && in->height == h) {
        nst_status st = nst_image_alloc(out, w, h, in->channels);
        if (st == NST_OK) memcpy(out->pixels, in->pixels, sizeof(float) * (size_t)w * h * in->channels);
        return st;
    }
    return nst_image_resize(in, w, h, out);
}

static size_t nst__available_memory(void) {
#if !defined(NST_NO_STDIO) && defined(__linux__)
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    size_t kb = 0;
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "MemAvailable:", 13) == 0) { kb = (size_t)strtoull(line + 13, NULL, 10); break; }
    fclose(f);
    return kb * 1024;
#else
    return 0;
#endif
}

/* One pass of the transfer at one size: what nst_transfer and the estimate share. */
typedef struct nst__pass_sizes {
    int w, h;
    int sw[8], sh[8];
} nst__pass_sizes;

static size_t nst__pass_memory(const nst_model *m, const nst_options *o, int w, int h, const int *sw, const int *sh,
                               int nstyles) {
    int content_l[NST__MAX_LOSS_LAYERS], style_l[NST__MAX_LOSS_LAYERS], nc, ns, last, k;
    unsigned char keep[NST_VGG_LAYERS];
    nst__net net;
    size_t total = 0, n = (size_t)3 * w * h, style_net = 0, hist;
    if (nst__objective_layout(m, o, content_l, &nc, style_l, &ns, &last, keep) != NST_OK) return 0;
    {
        size_t ws = 0, bufs = 0;
        nst__net sn;
        unsigned char skeep[NST_VGG_LAYERS];
        memset(skeep, 0, sizeof skeep);
        for (k = 0; k < ns; k++) skeep[style_l[k]] = 1;
        for (k = 0; k < nstyles && k < 8 && ns > 0; k++)
            if (nst__net_init(&sn, m, sh[k], sw[k], nst__deepest(style_l, ns, -1), skeep, 1, o->threads, 0) == NST_OK) {
                ws = NST__MAX(ws, sn.ws_bytes);
                bufs = NST__MAX(bufs, sn.buf_elems);
            }
        if (nst__net_init_ws(&net, m, h, w, last, keep, 1, o->threads, 0, NULL, ws, bufs) != NST_OK) return 0;
    }
    total += net.bytes;
    for (k = 0; k < nc; k++)
        total += nst__round64((size_t)net.c_[content_l[k]] * net.h_[content_l[k]] * net.w_[content_l[k]] * 4);
    for (k = 0; k < ns; k++) total += 2 * nst__round64((size_t)net.c_[style_l[k]] * net.c_[style_l[k]] * 4);
    /* while the targets are built, one style network exists beside the main one */
    for (k = 0; k < nstyles && k < 8; k++) {
        nst__net sn;
        unsigned char skeep[NST_VGG_LAYERS];
        int j;
        memset(skeep, 0, sizeof skeep);
        for (j = 0; j < ns; j++) skeep[style_l[j]] = 1;
        if (ns && nst__net_init_ws(&sn, m, sh[k], sw[k], nst__deepest(style_l, ns, -1), skeep, 1, o->threads, 0, &net, 0,
                                   0) == NST_OK &&
            sn.bytes + (size_t)12 * sw[k] * sh[k] > style_net)
            style_net = sn.bytes + (size_t)12 * sw[k] * sh[k];
    }
    /* optimiser: L-BFGS keeps 2m vectors + 4 (x, g, g_old, d); Adam 4 */
    hist = o->optimizer == NST_OPT_ADAM ? 4 * 4 : (size_t)2 * (o->lbfgs_history > 0 ? o->lbfgs_history : 100) *
                                                  (o->lbfgs_history_bf16 ? 2 : 4) + 7 * 4;
    return total + NST__MAX(style_net, hist * n);
}

static void nst__pass_sizes_for(const nst_options *o, const nst_image *content, const nst_image *styles,
                                int nstyles, int pass, int passes, nst__pass_sizes *ps) {
    int size = o->image_size, k, full_w, full_h;
    nst__fit(content->width, content->height, size, &full_w, &full_h);
    size = NST__MAX(full_w, full_h);
    size = (int)((double)size / (double)(1 << (passes - 1 - pass)) + 0.5);
    nst__fit(content->width, content->height, size, &ps->w, &ps->h);
    for (k = 0; k < nstyles && k < 8; k++) {
        int ssize = (int)ceil(o->style_scale * (double)size);
        nst__fit(styles[k].width, styles[k].height, ssize < 1 ? 1 : ssize, &ps->sw[k], &ps->sh[k]);
    }
}

NSTDEF size_t nst_transfer_memory(const nst_model *m, const nst_image *content, const nst_image *styles, int nstyles,
                                  const nst_options *opt) {
    nst_options def;
    nst__pass_sizes ps;
    size_t model = 0, images;
    int passes, k;
    if (!m || !content) return 0;
    if (!opt) { nst_options_init(&def); opt = &def; }
    passes = opt->scales > 1 ? opt->scales : 1;
    nst__pass_sizes_for(opt, content, styles, nstyles, passes - 1, passes, &ps);
    model = m->block_bytes;   /* plans are counted with the model */
    images = (size_t)content->width * content->height * 4 * 3 * 2 + (size_t)ps.w * ps.h * 4 * 3 * 4;
    for (k = 0; k < nstyles; k++) images += (size_t)styles[k].width * styles[k].height * 4 * 3 * 2;
    return model + images + nst__pass_memory(m, opt, ps.w, ps.h, ps.sw, ps.sh, nstyles);
}

typedef struct nst__run {
    nst_objective *obj;
    const nst_options *o;
    nst_image view;        /* RGB [0,1] of the current pixels for the progress callback */
    int iteration, iterations, scale, scales;
    double t0;
    nst_losses last;
    int cancelled;
} nst__run;

static nst_status nst__run_fg(const float *x, float *grad, double *value, void *user) {
    nst__run *r = (nst__run *)user;
    nst_status st;
    if ((st = nst_objective_eval(r->obj, x, &r->last, grad)) != NST_OK) return st;
    *value = r->last.total;
    r->iteration++;
    if (r->o->progress) {
        int every = r->o->progress_every > 0 ? r->o->progress_every : 1;
        if (r->iteration % every == 0 || r->iteration == r->iterations || r->iteration == 1) {
            nst_progress p;
            double el = nst__now() - r->t0;
            memset(&p, 0, sizeof p);
            p.iteration = r->iteration;
            p.iterations = NST__MAX(r->iterations, r->iteration);   /* a line search may evaluate more */
            p.scale = r->scale; p.scales = r->scales;
            p.total = r->last.total; p.content = r->last.content; p.style = r->last.style; p.tv = r->last.tv;
            p.seconds = el;
            p.eta_seconds = el / r->iteration * (p.iterations - r->iteration);
            nst__planar_to_image(x, &r->view);
            p.image = &r->view;
            if (r->o->progress(&p, r->o->user)) {
                r->cancelled = 1;
                return nst__err(NST_ERR_CANCELLED, "cancelled at iteration %d", r->iteration);
            }
        }
    }
    return NST_OK;
}

/* Initial pixels for a pass: noise around the model's mean colour (jcjohnson: randn * 0.001 in the
 * network's input space), the content, or a given image. */
static nst_status nst__init_pixels(const nst_model *m, const nst_options *o, const nst_image *content,
                                   int w, int h, float *px) {
    size_t hw = (size_t)w * h, i;
    nst_status st;
    if (o->init == NST_INIT_CONTENT || o->init == NST_INIT_IMAGE) {
        const nst_image *src = o->init == NST_INIT_CONTENT ? content : o->init_image;
        nst_image tmp;
        if ((st = nst__require_rgb(src, "the init image")) != NST_OK) return st;
        if ((st = nst__resized(src, w, h, &tmp)) != NST_OK) return st;
        nst__image_to_planar(&tmp, px);
        nst_image_free(&tmp);
    } else {
        nst__rng r;
        int c;
        r.s = o->seed * 0x9E3779B97F4A7C15ull + 12345;
        for (c = 0; c < 3; c++) {
            int ic = m->conv.bgr ? 2 - c : c;   /* input channel that pixel channel c feeds */
            for (i = 0; i < hw; i++)
                px[(size_t)c * hw + i] = (float)(255.0 / m->conv.scale *
                                                 (m->conv.mean[ic] + m->conv.std[ic] * 0.001 * nst__rng_normal(&r)));
        }
    }
    return NST_OK;
}

static void nst__upsample_planar(const float *src, int sw, int sh, float *dst, int dw, int dh) {
    int c, y, x;
    for (c = 0; c < 3; c++)
        for (y = 0; y < dh; y++) {
            double fy = ((y + 0.5) * sh / dh) - 0.5;
            int y0 = (int)floor(fy);
            double ay = fy - y0;
            int ya = y0 < 0 ? 0 : y0, yb = y0 + 1 >= sh ? sh - 1 : y0 + 1;
            for (x = 0; x < dw; x++) {
                double fx = ((x + 0.5) * sw / dw) - 0.5;
                int x0 = (int)floor(fx);
                double ax = fx - x0;
                int xa = x0 < 0 ? 0 : x0, xb = x0 + 1 >= sw ? sw - 1 : x0 + 1;
                const float *p = src + (size_t)c * sw * sh;
                if (ya > sh - 1) ya = sh - 1;
                if (xa > sw - 1) xa = sw - 1;
                dst[(size_t)c * dw * dh + (size_t)y * dw + x] =
                    (float)((1 - ay) * ((1 - ax) * p[(size_t)ya * sw + xa] + ax * p[(size_t)ya * sw + xb]) +
                            ay * ((1 - ax) * p[(size_t)yb * sw + xa] + ax * p[(size_t)yb * sw + xb]));
            }
        }
}

NSTDEF nst_status nst_transfer(const nst_model *m, const nst_image *content, const nst_image *styles,
                               const float *blend, int nstyles, const nst_options *opt, nst_image *out) {
    nst_options def, o;
    nst_image c_rgb, *s_rgb = NULL, cur_c, *cur_s = NULL;
    float *px = NULL, *prev = NULL;
    int prev_w = 0, prev_h = 0, pass, passes, k;
    nst_status st = NST_OK;
    size_t need, limit;
    memset(&c_rgb, 0, sizeof c_rgb);
    memset(&cur_c, 0, sizeof cur_c);
    if (!out) return nst__err(NST_ERR_ARGUMENT, "transfer: NULL output");
    memset(out, 0, sizeof *out);
    if (!opt) { nst_options_init(&def); opt = &def; }
    o = *opt;
    if (!m || !content || !content->pixels) return nst__err(NST_ERR_ARGUMENT, "transfer: no model or content image");
    if (nstyles < 0 || nstyles > 8 || (nstyles > 0 && !styles))
        return nst__err(NST_ERR_ARGUMENT, "transfer: 0 to 8 style images");
    if (o.iterations < 1) return nst__err(NST_ERR_ARGUMENT, "transfer: iterations must be >= 1");
    if (o.image_size < 0 || o.image_size > 16384) return nst__err(NST_ERR_ARGUMENT, "transfer: image size %d", o.image_size);
    if (!(o.style_scale > 0)) return nst__err(NST_ERR_ARGUMENT, "transfer: style scale must be > 0");
    if (o.scales < 1) o.scales = 1;
    if (o.scales > 6) return nst__err(NST_ERR_ARGUMENT, "transfer: at most 6 scales");
    if (o.init == NST_INIT_DEFAULT) o.init = NST_INIT_RANDOM;
    if (o.optimizer == NST_OPT_DEFAULT) o.optimizer = NST_OPT_LBFGS;
    if (o.init == NST_INIT_IMAGE && !o.init_image) return nst__err(NST_ERR_ARGUMENT, "transfer: init image missing");
    if (o.colors == NST_COLORS_DEFAULT) o.colors = NST_COLORS_STYLE;
    need = nst_transfer_memory(m, content, styles, nstyles, &o);
    limit = o.memory_limit ? o.memory_limit : nst__available_memory();
    if (limit && need > limit)
        return nst__err(NST_ERR_NOMEM, "transfer needs about %lu MB but only %lu MB are available: use a smaller "
                        "--size, a shorter L-BFGS history, or Adam", (unsigned long)(need >> 20),
                        (unsigned long)(limit >> 20));
    if ((st = nst_image_to_rgb(content, &c_rgb)) != NST_OK) goto done;
    s_rgb = (nst_image *)nst__calloc((size_t)(nstyles ? nstyles : 1), sizeof *s_rgb);
    cur_s = (nst_image *)nst__calloc((size_t)(nstyles ? nstyles : 1), sizeof *cur_s);
    if (!s_rgb || !cur_s) { st = nst__err(NST_ERR_NOMEM, "transfer: out of memory"); goto done; }
    for (k = 0; k < nstyles; k++) {
        if ((st = nst_image_to_rgb(&styles[k], &s_rgb[k])) != NST_OK) goto done;
        if (o.colors == NST_COLORS_HISTOGRAM) {
            /* Gatys 2017: give the style the content's colour statistics before the transfer */
            nst_image matched;
            if ((st = nst_image_match_colors(&s_rgb[k], &c_rgb, &matched)) != NST_OK) goto done;
            nst_image_free(&s_rgb[k]);
            s_rgb[k] = matched;
        }
    }
    passes = o.scales;
    for (pass = 0; pass < passes; pass++) {
        nst__pass_sizes ps;
        nst__run run;
        size_t n;
        nst__pass_sizes_for(&o, &c_rgb, s_rgb, nstyles, pass, passes, &ps);
        n = (size_t)3 * ps.w * ps.h;
        if ((st = nst__resized(&c_rgb, ps.w, ps.h, &cur_c)) != NST_OK) goto done;
        for (k = 0; k < nstyles; k++)
            if ((st = nst__resized(&s_rgb[k], ps.sw[k], ps.sh[k], &cur_s[k])) != NST_OK) goto done;
        memset(&run, 0, sizeof run);
        if ((st = nst_objective_create(m, &cur_c, cur_s, blend, nstyles, &o, &run.obj)) != NST_OK) goto done;
        px = (float *)nst__aligned_alloc(n * sizeof(float));
        if (!px || (st = nst_image_alloc(&run.view, ps.w, ps.h, 3)) != NST_OK) {
            if (st == NST_OK) st = nst__err(NST_ERR_NOMEM, "transfer: out of memory");
            nst_objective_free(run.obj);
            goto done;
        }
        if (prev) nst__upsample_planar(prev, prev_w, prev_h, px, ps.w, ps.h);
        else if ((st = nst__init_pixels(m, &o, &cur_c, ps.w, ps.h, px)) != NST_OK) {
            nst_objective_free(run.obj); nst_image_free(&run.view);
            goto done;
        }
        run.o = &o;
        run.iterations = o.iterations;
        run.scale = pass + 1; run.scales = passes;
        run.t0 = nst__now();
        if (o.optimizer == NST_OPT_ADAM) {
            nst_adam_options ao;
            nst_adam_options_init(&ao);
            ao.max_iter = o.iterations;
            ao.learning_rate = o.learning_rate > 0 ? o.learning_rate : 10.0;
            st = nst_adam(px, n, nst__run_fg, &run, &ao, NULL);
        } else {
            nst_lbfgs_options lo;
            nst_lbfgs_options_init(&lo);
            lo.max_iter = o.iterations;
            lo.history = o.lbfgs_history > 0 ? o.lbfgs_history : 100;
            lo.learning_rate = o.learning_rate > 0 ? o.learning_rate : 1.0;
            lo.tol_fun = -1; lo.tol_x = -1;   /* as jcjohnson: run all iterations */
            lo.line_search = o.lbfgs_line_search;
            lo.relative_curvature = 1;   /* see nst_lbfgs_options: small-loss models stall without it */
            lo.history_bf16 = o.lbfgs_history_bf16;
            {
                int prev_threads = nst__threads_setting;
                nst__threads_setting = run.obj->nthreads;   /* the optimiser's vector ops use the same count */
                st = nst_lbfgs(px, n, nst__run_fg, &run, &lo, NULL, NULL);
                nst__threads_setting = prev_threads;
            }
        }
        nst_objective_free(run.obj);
        nst_image_free(&run.view);
        nst__free(prev);
        prev = NULL;
        if (st != NST_OK && st != NST_ERR_CANCELLED) goto done;
        /* keep the result (also when cancelled: it is the last good image) */
        prev = (float *)nst__malloc(n * sizeof(float));
        if (!prev) { st = nst__err(NST_ERR_NOMEM, "transfer: out of memory"); goto done; }
        memcpy(prev, px, n * sizeof(float));
        prev_w = ps.w; prev_h = ps.h;
        nst__aligned_free(px);
        px = NULL;
        nst_image_free(&cur_c);
        for (k = 0; k < nstyles; k++) nst_image_free(&cur_s[k]);
        if (st == NST_ERR_CANCELLED) break;
    }
    {
        nst_status st2 = nst_image_alloc(out, prev_w, prev_h, 3);
        if (st2 != NST_OK) { st = st2; goto done; }
        nst__planar_to_image(prev, out);
        if (o.colors == NST_COLORS_LUMINANCE) {
            nst_image cc, kept;
            nst_status st3 = nst__resized(&c_rgb, prev_w, prev_h, &cc);
            if (st3 == NST_OK) st3 = nst_image_luminance_transfer(out, &cc, &kept);
            nst_image_free(&cc);
            if (st3 != NST_OK) { nst_image_free(out); st = st3; goto done; }
            nst_image_free(out);
            *out = kept;
        }
    }
done:
    nst__aligned_free(px);
    nst__free(prev);
    nst_image_free(&c_rgb);
    nst_image_free(&cur_c);
    for (k = 0; s_rgb && k < nstyles; k++) nst_image_free(&s_rgb[k]);
    for (k = 0; cur_s && k < nstyles; k++) nst_image_free(&cur_s[k]);
    nst__free(s_rgb);
    nst__free(cur_s);
    return st;
}
