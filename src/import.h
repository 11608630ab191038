/* ---------------------------------------------------------------------------------------------------
 * Weight files written by other libraries, read without Python.
 *
 *   nst__import_weights(bytes, n, &list)  detects the format from the bytes and fills canonical f32
 *   tensors "convX_Y.weight" [cout][cin][3][3] and "convX_Y.bias" [cout] (conv1_1 .. conv5_1, or all
 *   16 with nst__import_weights_ex(..., NST__IMPORT_ALL, ...)), plus the input convention the
 *   format implies. Formats:
 *     PyTorch zip     current torch.save: a zip with <name>/data.pkl and <name>/data/<key> storages
 *     PyTorch legacy  torch.save(_use_new_zipfile_serialization=False) and torchvision's
 *                     vgg19-dcbb9e9d.pth: pickles (magic, protocol, sys info, the object, storage
 *                     keys) followed by the raw storages
 *     Caffe           .caffemodel protobuf, V1 `layers` (field 2) and V2 `layer` (field 100)
 *     NumPy           .npz (stored or deflated members) and .npy holding a pickled dict of arrays
 *   Key names: torchvision `features.N.weight`, Gatys/Caffe `conv1_1.weight`, `conv1_1_W`, Keras
 *   `block1_conv1/kernel`, nested dicts/lists (`{"conv1_1": [W, b]}`); TensorFlow's [3][3][cin][cout]
 *   kernels are transposed for the NumPy formats.
 *
 * Everything here parses untrusted bytes: every read is bounds-checked, every declared size is
 * checked against the bytes present and against limits before anything is allocated, the pickle
 * interpreter is iterative (no recursion on input nesting) with caps on values, stack and memo, and
 * only the storages of the conv layers that are kept get converted: the classifier (fc6 alone is
 * 400 MB) is skipped without being read.
 * -------------------------------------------------------------------------------------------------*/

#define NST__IMPORT_ALL 1                         /* keep conv5_2..conv5_4 too */
#define NST__IMPORT_MAX_MEMBER ((uint64_t)1 << 30) /* largest storage / member we inflate or convert */
#define NST__PK_MAX_VALUES (1 << 22)              /* pickle: values, stack depth, memo slots */
#define NST__PK_MAX_STACK (1 << 20)
#define NST__PK_MAX_MEMO (1 << 22)

enum { NST__DT_NONE = 0, NST__DT_F32, NST__DT_F16, NST__DT_F64, NST__DT_BF16 };
static int nst__dt_size(int dt) { return dt == NST__DT_F32 ? 4 : dt == NST__DT_F64 ? 8 : dt ? 2 : 0; }

/* Where torchvision's `features` Sequential puts VGG-19's conv layers (names: nst__conv_names). */
static const int nst__tv_index[NST_VGG_CONVS] = {0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34};
#define NST__IMPORT_DEFAULT_CONVS 13   /* conv1_1 .. conv5_1: everything relu5_1 needs */

/* ===================================================================================================
 * Source tensors and the collector
 * A source tensor is a strided view of a storage in some dtype and byte order; the collector keeps
 * one slot per conv weight/bias. Formats fill shapes first; bytes are resolved only for the slots
 * that are kept, then converted to contiguous f32 by one bounds-checked gather.
 * =================================================================================================*/
typedef struct nst__src {
    int present;
    int dtype, swap;               /* NST__DT_*; swap: big-endian data */
    int ndim;
    int64_t shape[8], stride[8];   /* in elements */
    uint64_t offset;               /* first element */
    const unsigned char *p;        /* storage bytes (resolved), holding `elems` elements */
    uint64_t elems;
    int aux;                       /* format-specific handle used to resolve p */
    char origin[64];               /* the file's name for it, for messages */
} nst__src;

typedef struct nst__collect {
    nst__src w[NST_VGG_CONVS], b[NST_VGG_CONVS];
    int ignored;                   /* tensors that are not VGG conv layers (classifier, ...) */
    int allow_hwio;                /* NumPy formats: accept TensorFlow's [3][3][cin][cout] kernels */
    int nkeep;                     /* set by nst__collect_plan */
    nst_status err;                /* first problem found while collecting */
    unsigned char **owned;         /* buffers to free at the end (inflated members, gathered data) */
    int nowned, capowned;
    int has_conv;                  /* the file states its convention (npz input_convention) */
    nst_input_convention conv;
    int tv_names;                  /* keys were torchvision's features.N.* */
} nst__collect;

static void nst__collect_free(nst__collect *c) {
    int i;
    for (i = 0; i < c->nowned; i++) nst__free(c->owned[i]);
    nst__free(c->owned);
    c->owned = NULL;
    c->nowned = c->capowned = 0;
}

/* Takes ownership of buf (freed by nst__collect_free); on failure frees it and returns 0. */
static int nst__collect_own(nst__collect *c, unsigned char *buf) {
    if (c->nowned == c->capowned) {
        int cap = c->capowned ? 2 * c->capowned : 16;
        unsigned char **p = (unsigned char **)nst__realloc(c->owned, sizeof *p * (size_t)cap);
        if (!p) { nst__free(buf); return 0; }
        c->owned = p; c->capowned = cap;
    }
    c->owned[c->nowned++] = buf;
    return 1;
}

static int nst__is_digit(int ch) { return ch >= '0' && ch <= '9'; }

/* Reads a small decimal number at s[*i] (advancing *i); -1 if none or too large. */
static int nst__small_num(const char *s, size_t n, size_t *i) {
    int v = 0, any = 0;
    while (*i < n && nst__is_digit(s[*i])) {
        v = v * 10 + (s[*i] - '0');
        if (v > 100000) return -1;
        (*i)++; any = 1;
    }
    return any ? v : -1;
}

/* 1 weight, 2 bias, 0 neither. */
static int nst__suffix_kind(const char *s, size_t n) {
    static const char *const wn[] = {"weight", "weights", "w", "kernel", "filter", "filters", "0", "kernel:0", "w:0"};
    static const char *const bn[] = {"bias", "biases", "b", "1", "bias:0", "b:0"};
    size_t k;
    for (k = 0; k < sizeof wn / sizeof *wn; k++)
        if (strlen(wn[k]) == n && (memcmp(wn[k], s, n) == 0 || (n == 1 && (s[0] | 32) == wn[k][0]))) return 1;
    for (k = 0; k < sizeof bn / sizeof *bn; k++)
        if (strlen(bn[k]) == n && (memcmp(bn[k], s, n) == 0 || (n == 1 && (s[0] | 32) == bn[k][0]))) return 2;
    return 0;
}

/* Maps a key (path components joined by '.', '/' or ':') to a conv layer.
 * Returns the conv index 0..15 and *kind (1 weight, 2 bias); -1 when the key is not a VGG-19 conv
 * parameter; -2 when it is a conv-like parameter VGG-19 does not have (wrong architecture), with
 * *kind set to the reason (1: torchvision index, 2: batch norm). */
static int nst__map_key(const char *key, int *kind) {
    size_t n = strlen(key), i = 0;
    *kind = 0;
    while (i < n) {
        size_t j = i, t;
        if (key[i] == '.' || key[i] == '/' || key[i] == ':') { i++; continue; }
        /* torchvision: features.N.weight */
        if (n - i >= 9 && memcmp(key + i, "features", 8) == 0 && (key[i + 8] == '.' || key[i + 8] == '/')) {
            int num, k;
            j = i + 9;
            num = nst__small_num(key, n, &j);
            if (num >= 0 && j < n && (key[j] == '.' || key[j] == '/')) {
                int sk = nst__suffix_kind(key + j + 1, n - j - 1);
                const char *sfx = key + j + 1;
                if (!strcmp(sfx, "running_mean") || !strcmp(sfx, "running_var") || !strcmp(sfx, "num_batches_tracked")) {
                    *kind = 2;
                    return -2;
                }
                if (sk) {
                    for (k = 0; k < NST_VGG_CONVS; k++)
                        if (nst__tv_index[k] == num) { *kind = sk; return k; }
                    *kind = 1;
                    return -2;
                }
            }
        }
        /* convX_Y or blockX_convY, followed by a suffix (own component, or _W/_b in the same one) */
        {
            int blk = -1, sub = -1;
            if (n - i >= 7 && memcmp(key + i, "conv", 4) == 0 && nst__is_digit(key[i + 4])) {
                j = i + 4;
                blk = nst__small_num(key, n, &j);
                if (j < n && key[j] == '_') { j++; sub = nst__small_num(key, n, &j); }
            } else if (n - i >= 11 && memcmp(key + i, "block", 5) == 0 && nst__is_digit(key[i + 5])) {
                j = i + 5;
                blk = nst__small_num(key, n, &j);
                if (j + 4 < n && memcmp(key + j, "_conv", 5) == 0) { j += 5; sub = nst__small_num(key, n, &j); }
            }
            if (blk >= 1 && blk <= 5 && sub >= 1 && j < n && (key[j] == '.' || key[j] == '/' || key[j] == '_' || key[j] == ':')) {
                int sk = nst__suffix_kind(key + j + 1, n - j - 1), k;
                char nm[32];
                snprintf(nm, sizeof nm, "conv%d_%d", blk, sub);
                if (sk) {
                    for (k = 0; k < NST_VGG_CONVS; k++)
                        if (!strcmp(nm, nst__conv_names[k])) { *kind = sk; return k; }
                    *kind = 1;
                    return -2;
                }
            }
        }
        /* next component */
        t = i;
        while (t < n && key[t] != '.' && key[t] != '/' && key[t] != ':') t++;
        i = t;
    }
    return -1;
}

/* Returns the slot for `key`, NULL when the key is not a conv parameter (counted as ignored) or on
 * error (c->err set). */
static nst__src *nst__collect_slot(nst__collect *c, const char *key) {
    int kind, k = nst__map_key(key, &kind);
    nst__src *s;
    if (c->err) return NULL;
    if (k == -2) {
        c->err = kind == 2
            ? nst__err(NST_ERR_FORMAT, "weights: '%s' is a batch-norm parameter: this is VGG-19-BN (or another "
                       "network), not the plain VGG-19 style transfer uses", key)
            : nst__err(NST_ERR_FORMAT, "weights: '%s' is a conv parameter at a place VGG-19 has none: a different "
                       "network (VGG-16? VGG-19-BN?)", key);
        return NULL;
    }
    if (k < 0) { c->ignored++; return NULL; }
    if (strstr(key, "features")) c->tv_names = 1;
    s = kind == 1 ? &c->w[k] : &c->b[k];
    if (s->present) {
        c->err = nst__err(NST_ERR_FORMAT, "weights: two tensors for %s.%s ('%s' and '%s')", nst__conv_names[k],
                          kind == 1 ? "weight" : "bias", s->origin, key);
        return NULL;
    }
    memset(s, 0, sizeof *s);
    s->present = 1;
    snprintf(s->origin, sizeof s->origin, "%s", key);
    return s;
}

static int64_t nst__src_numel(const nst__src *s) {
    int64_t e = 1;
    int i;
    for (i = 0; i < s->ndim; i++) e *= s->shape[i];
    return e;
}

/* Decides which layers are kept and checks their shapes before any storage is touched. */
static nst_status nst__collect_plan(nst__collect *c, int flags) {
    int i, k = 0, last = -1;
    if (c->err) return c->err;
    for (i = 0; i < NST_VGG_CONVS; i++)
        if (c->w[i].present || c->b[i].present) last = i;
    while (k < NST_VGG_CONVS && c->w[k].present) k++;
    if (k == 0) {
        if (last >= 0)
            return nst__err(NST_ERR_FORMAT, "weights: %s is present but conv1_1.weight is missing", nst__conv_names[last]);
        return nst__err(NST_ERR_FORMAT, "weights: no VGG-19 conv layers found (expected keys like features.0.weight, "
                        "conv1_1.weight or conv1_1_W; %d other tensors)", c->ignored);
    }
    if (last >= k)
        return nst__err(NST_ERR_FORMAT, "weights: %s is present but %s.weight is missing (not a VGG-19)",
                        nst__conv_names[last], nst__conv_names[k]);
    if (!(flags & NST__IMPORT_ALL) && k > NST__IMPORT_DEFAULT_CONVS) k = NST__IMPORT_DEFAULT_CONVS;
    for (i = 0; i < k; i++) {
        nst__src *w = &c->w[i], *b = &c->b[i];
        int64_t cout, cin;
        if (w->dtype == NST__DT_NONE || (b->present && b->dtype == NST__DT_NONE))
            return nst__err(NST_ERR_UNSUPPORTED, "weights: %s has a dtype other than float16/bfloat16/float32/float64",
                            w->dtype == NST__DT_NONE ? w->origin : b->origin);
        if (w->ndim == 4 && c->allow_hwio && w->shape[0] == 3 && w->shape[1] == 3 &&
            !(w->shape[2] == 3 && w->shape[3] == 3)) {
            /* TensorFlow/Keras [kh][kw][cin][cout]: view it as [cout][cin][kh][kw] through the strides */
            int64_t sh[4], st[4];
            sh[0] = w->shape[3]; st[0] = w->stride[3];
            sh[1] = w->shape[2]; st[1] = w->stride[2];
            sh[2] = w->shape[0]; st[2] = w->stride[0];
            sh[3] = w->shape[1]; st[3] = w->stride[1];
            memcpy(w->shape, sh, sizeof sh);
            memcpy(w->stride, st, sizeof st);
        }
        if (w->ndim != 4 || w->shape[2] != 3 || w->shape[3] != 3)
            return nst__err(NST_ERR_FORMAT, "weights: %s ('%s') is not a 3x3 conv kernel [cout][cin][3][3]",
                            nst__conv_names[i], w->origin);
        cout = w->shape[0]; cin = w->shape[1];
        if (cout < 1 || cout > 4096 || cin < 1 || cin > 4096)
            return nst__err(NST_ERR_FORMAT, "weights: %s has %lld x %lld channels", nst__conv_names[i],
                            (long long)cout, (long long)cin);
        if (cin != (i ? c->w[i - 1].shape[0] : 3))
            return nst__err(NST_ERR_FORMAT, "weights: %s takes %lld channels but %s gives %lld: not a VGG-19",
                            nst__conv_names[i], (long long)cin, i ? nst__conv_names[i - 1] : "the RGB image",
                            (long long)(i ? c->w[i - 1].shape[0] : 3));
        if (!b->present) return nst__err(NST_ERR_FORMAT, "weights: %s.bias is missing", nst__conv_names[i]);
        if (nst__src_numel(b) != cout)
            return nst__err(NST_ERR_FORMAT, "weights: %s.bias has %lld values, the layer has %lld outputs",
                            nst__conv_names[i], (long long)nst__src_numel(b), (long long)cout);
    }
    c->nkeep = k;
    return NST_OK;
}

static float nst__src_elem(const nst__src *s, uint64_t idx) {
    const unsigned char *q = s->p + idx * (uint64_t)nst__dt_size(s->dtype);
    unsigned char t[8];
    int n = nst__dt_size(s->dtype), i;
    if (s->swap) { for (i = 0; i < n; i++) t[i] = q[n - 1 - i]; q = t; }
    switch (s->dtype) {
    case NST__DT_F32: return nst__f32_from_bits(nst__rd32le(q));
    case NST__DT_F16: return nst__half_to_float(nst__rd16le(q));
    case NST__DT_BF16: return nst__f32_from_bits((uint32_t)nst__rd16le(q) << 16);
    default: {
        double d;
        uint64_t u = nst__rd64le(q);
        memcpy(&d, &u, 8);
        return (float)d;
    }
    }
}

/* Converts a resolved slot to a canonical tensor (contiguous f32, [cout][cin][3][3] or [cout]). */
static nst_status nst__collect_convert(const nst__src *s, const char *name, int is_bias, nst__tensor_list *l) {
    uint64_t maxidx = s->offset, total = 1, i;
    int d, nd = is_bias ? 1 : s->ndim;
    nst__named_tensor *t;
    float *out;
    int64_t idx[8];
    for (d = 0; d < s->ndim; d++) {
        if (s->shape[d] < 1 || s->stride[d] < 0)
            return nst__err(NST_ERR_FORMAT, "weights: '%s' has a bad shape or negative stride", s->origin);
        if ((uint64_t)(s->shape[d] - 1) > ((uint64_t)1 << 40) / ((uint64_t)s->stride[d] + 1))
            return nst__err(NST_ERR_FORMAT, "weights: '%s' has out-of-range strides", s->origin);
        maxidx += (uint64_t)(s->shape[d] - 1) * (uint64_t)s->stride[d];
        total *= (uint64_t)s->shape[d];
    }
    if (!s->p || maxidx >= s->elems)
        return nst__err(NST_ERR_FORMAT, "weights: '%s' reaches element %llu of a storage of %llu (out of range)",
                        s->origin, (unsigned long long)maxidx, (unsigned long long)s->elems);
    if (total > ((uint64_t)1 << 28)) return nst__err(NST_ERR_LIMIT, "weights: '%s' is too large", s->origin);
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 32;
        nst__named_tensor *p = (nst__named_tensor *)nst__realloc(l->t, sizeof *p * (size_t)cap);
        if (!p) return nst__err(NST_ERR_NOMEM, "weights: out of memory");
        l->t = p; l->cap = cap;
    }
    out = (float *)nst__malloc((size_t)total * sizeof(float));
    if (!out) return nst__err(NST_ERR_NOMEM, "weights: out of memory for '%s'", s->origin);
    t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->data = out;
    t->ndim = nd;
    if (is_bias) t->shape[0] = (int64_t)total;
    else for (d = 0; d < 4; d++) t->shape[d] = s->shape[d];
    /* contiguous row-major fast path, else an odometer over the strided view */
    {
        int contiguous = 1;
        int64_t expect = 1;
        for (d = s->ndim - 1; d >= 0; d--) {
            if (s->shape[d] != 1 && s->stride[d] != expect) contiguous = 0;
            expect *= s->shape[d];
        }
        if (contiguous && s->dtype == NST__DT_F32 && !s->swap) {
            const unsigned char *q = s->p + s->offset * 4;
            for (i = 0; i < total; i++) out[i] = nst__f32_from_bits(nst__rd32le(q + 4 * i));
        } else if (contiguous) {
            for (i = 0; i < total; i++) out[i] = nst__src_elem(s, s->offset + i);
        } else {
            memset(idx, 0, sizeof idx);
            for (i = 0; i < total; i++) {
                uint64_t e = s->offset;
                for (d = 0; d < s->ndim; d++) e += (uint64_t)idx[d] * (uint64_t)s->stride[d];
                out[i] = nst__src_elem(s, e);
                for (d = s->ndim - 1; d >= 0; d--) {
                    if (++idx[d] < s->shape[d]) break;
                    idx[d] = 0;
                }
            }
        }
    }
    return NST_OK;
}

/* Converts every kept slot (bytes resolved by the format) into the list. */
static nst_status nst__collect_finish(nst__collect *c, nst__tensor_list *l) {
    int i;
    nst_status st;
    char name[64];
    for (i = 0; i < c->nkeep; i++) {
        snprintf(name, sizeof name, "%s.weight", nst__conv_names[i]);
        if ((st = nst__collect_convert(&c->w[i], name, 0, l)) != NST_OK) return st;
        snprintf(name, sizeof name, "%s.bias", nst__conv_names[i]);
        if ((st = nst__collect_convert(&c->b[i], name, 1, l)) != NST_OK) return st;
    }
    return NST_OK;
}

static void nst__src_contiguous(nst__src *s, int ndim, const int64_t *shape) {
    int d;
    int64_t st = 1;
    s->ndim = ndim;
    for (d = ndim - 1; d >= 0; d--) { s->shape[d] = shape[d]; s->stride[d] = st; st *= shape[d] > 0 ? shape[d] : 1; }
}

/* ===================================================================================================
 * Zip (PyTorch's container and .npz): central directory, zip64, stored and deflated members
 * =================================================================================================*/
typedef struct nst__zip_entry {
    const char *name;     /* not NUL-terminated: name_len bytes */
    size_t name_len;
    int method;           /* 0 stored, 8 deflate */
    uint32_t crc;
    uint64_t csize, usize, lho;
} nst__zip_entry;

typedef struct nst__zip {
    const unsigned char *p;
    size_t n;
    nst__zip_entry *e;
    size_t count;
} nst__zip;

static nst_status nst__zip_open(const unsigned char *p, size_t n, nst__zip *z) {
    size_t i, eocd = (size_t)-1, lo = n > 65557 ? n - 65557 : 0, pos;
    uint64_t count, cd_size, cd_off;
    memset(z, 0, sizeof *z);
    z->p = p; z->n = n;
    if (n < 22) return nst__err(NST_ERR_FORMAT, "zip: truncated (%lu bytes)", (unsigned long)n);
    for (i = n - 22 + 1; i-- > lo;)
        if (p[i] == 'P' && p[i + 1] == 'K' && p[i + 2] == 5 && p[i + 3] == 6) { eocd = i; break; }
    if (eocd == (size_t)-1) return nst__err(NST_ERR_FORMAT, "zip: no end-of-central-directory record (truncated file?)");
    count = nst__rd16le(p + eocd + 10);
    cd_size = nst__rd32le(p + eocd + 12);
    cd_off = nst__rd32le(p + eocd + 16);
    if (count == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
        /* zip64: the locator sits just before the EOCD and points at the zip64 EOCD record */
        uint64_t r;
        if (eocd < 20 || nst__rd32le(p + eocd - 20) != 0x07064b50u)
            return nst__err(NST_ERR_FORMAT, "zip: zip64 values without a zip64 locator");
        r = nst__rd64le(p + eocd - 12);
        if (r > n || n - r < 56 || nst__rd32le(p + r) != 0x06064b50u)
            return nst__err(NST_ERR_FORMAT, "zip: bad zip64 end-of-central-directory record");
        count = nst__rd64le(p + r + 32);
        cd_size = nst__rd64le(p + r + 40);
        cd_off = nst__rd64le(p + r + 48);
    }
    if (cd_off > n || cd_size > n - cd_off) return nst__err(NST_ERR_FORMAT, "zip: central directory out of range (truncated?)");
    if (count > cd_size / 46) return nst__err(NST_ERR_FORMAT, "zip: %llu entries cannot fit the central directory", (unsigned long long)count);
    if (count > ((uint64_t)1 << 20)) return nst__err(NST_ERR_LIMIT, "zip: %llu entries (weight files have a few hundred)", (unsigned long long)count);
    z->e = (nst__zip_entry *)nst__calloc(count ? (size_t)count : 1, sizeof *z->e);
    if (!z->e) return nst__err(NST_ERR_NOMEM, "zip: out of memory");
    pos = (size_t)cd_off;
    for (i = 0; i < count; i++) {
        nst__zip_entry *e = &z->e[i];
        size_t nl, xl, cl, x;
        if (pos > n || n - pos < 46 || nst__rd32le(p + pos) != 0x02014b50u)
            return nst__err(NST_ERR_FORMAT, "zip: bad central directory entry %lu", (unsigned long)i);
        e->method = nst__rd16le(p + pos + 10);
        e->crc = nst__rd32le(p + pos + 16);
        e->csize = nst__rd32le(p + pos + 20);
        e->usize = nst__rd32le(p + pos + 24);
        nl = nst__rd16le(p + pos + 28); xl = nst__rd16le(p + pos + 30); cl = nst__rd16le(p + pos + 32);
        e->lho = nst__rd32le(p + pos + 42);
        if (n - pos - 46 < nl + xl + cl) return nst__err(NST_ERR_FORMAT, "zip: central directory entry %lu truncated", (unsigned long)i);
        e->name = (const char *)p + pos + 46;
        e->name_len = nl;
        /* zip64 extra field: the 0xFFFFFFFF values follow in order usize, csize, offset */
        for (x = pos + 46 + nl; x + 4 <= pos + 46 + nl + xl;) {
            unsigned id = nst__rd16le(p + x), sz = nst__rd16le(p + x + 2);
            size_t q = x + 4, qe = x + 4 + sz;
            if (qe > pos + 46 + nl + xl) break;
            if (id == 1) {
                if (e->usize == 0xFFFFFFFFu && q + 8 <= qe) { e->usize = nst__rd64le(p + q); q += 8; }
                if (e->csize == 0xFFFFFFFFu && q + 8 <= qe) { e->csize = nst__rd64le(p + q); q += 8; }
                if (e->lho == 0xFFFFFFFFu && q + 8 <= qe) { e->lho = nst__rd64le(p + q); }
            }
            x = qe;
        }
        pos += 46 + nl + xl + cl;
        z->count++;
    }
    return NST_OK;
}

static void nst__zip_close(nst__zip *z) { nst__free(z->e); z->e = NULL; z->count = 0; }

static int nst__zip_name_is(const nst__zip_entry *e, const char *s, size_t n) {
    return e->name_len == n && memcmp(e->name, s, n) == 0;
}
static NST__UNUSED const nst__zip_entry *nst__zip_find(const nst__zip *z, const char *name, size_t n) {
    size_t i;
    for (i = 0; i < z->count; i++)
        if (nst__zip_name_is(&z->e[i], name, n)) return &z->e[i];
    return NULL;
}

/* Gives a member's bytes: a pointer into the archive when stored, else an inflated buffer handed to
 * the collector (so it lives until the conversion is done). The CRC is verified either way. */
static nst_status nst__zip_read(const nst__zip *z, const nst__zip_entry *e, nst__collect *c,
                                const unsigned char **out, size_t *out_n) {
    const unsigned char *p = z->p;
    size_t data;
    uint64_t lh = e->lho;
    *out = NULL; *out_n = 0;
    if (lh > z->n || z->n - lh < 30 || nst__rd32le(p + lh) != 0x04034b50u)
        return nst__err(NST_ERR_FORMAT, "zip: bad local header for '%.*s'", (int)e->name_len, e->name);
    data = (size_t)lh + 30 + nst__rd16le(p + lh + 26) + nst__rd16le(p + lh + 28);
    if (data > z->n || e->csize > z->n - data)
        return nst__err(NST_ERR_FORMAT, "zip: member '%.*s' runs past the end of the file (truncated?)", (int)e->name_len, e->name);
    if (e->usize > NST__IMPORT_MAX_MEMBER)
        return nst__err(NST_ERR_LIMIT, "zip: member '%.*s' declares %llu bytes, above the limit", (int)e->name_len,
                        e->name, (unsigned long long)e->usize);
    if (e->method == 0) {
        if (e->csize != e->usize) return nst__err(NST_ERR_FORMAT, "zip: stored member '%.*s' has mismatched sizes", (int)e->name_len, e->name);
        *out = p + data;
        *out_n = (size_t)e->usize;
    } else if (e->method == 8) {
        unsigned char *buf = NULL;
        size_t bn = 0;
        nst_status st;
        /* a deflate stream expands at most ~1032x: a larger declared size is a zip bomb or a lie */
        if (e->usize / 1032 > e->csize + 1)
            return nst__err(NST_ERR_FORMAT, "zip: member '%.*s' claims %llu bytes from %llu compressed (zip bomb?)",
                            (int)e->name_len, e->name, (unsigned long long)e->usize, (unsigned long long)e->csize);
        if ((st = nst__inflate(p + data, (size_t)e->csize, 0, (size_t)e->usize, &buf, &bn)) != NST_OK) {
            char msg[256];
            snprintf(msg, sizeof msg, "%.200s", nst_last_error());
            return nst__err(st, "zip: member '%.*s': %s", (int)e->name_len, e->name, msg);
        }
        if (bn != e->usize) {
            nst__free(buf);
            return nst__err(NST_ERR_FORMAT, "zip: member '%.*s' inflates to %lu bytes, the directory says %llu",
                            (int)e->name_len, e->name, (unsigned long)bn, (unsigned long long)e->usize);
        }
        if (!nst__collect_own(c, buf)) return nst__err(NST_ERR_NOMEM, "zip: out of memory");
        *out = buf;
        *out_n = bn;
    } else {
        return nst__err(NST_ERR_UNSUPPORTED, "zip: member '%.*s' uses compression method %d (only stored and deflate)",
                        (int)e->name_len, e->name, e->method);
    }
    if (nst__crc32(0, *out, *out_n) != e->crc)
        return nst__err(NST_ERR_FORMAT, "zip: CRC mismatch in member '%.*s' (corrupted file)", (int)e->name_len, e->name);
    return NST_OK;
}

/* ===================================================================================================
 * Pickle: a small stack machine for what state dicts (and NumPy object arrays) use
 * Values live in one arena and refer to each other by index, so aliasing through the memo and
 * mutation (APPEND, SETITEMS) need no reference counting, and freeing is one loop.
 * =================================================================================================*/
enum {
    NST__PV_NONE, NST__PV_BOOL, NST__PV_INT, NST__PV_BIGINT, NST__PV_FLOAT, NST__PV_STR, NST__PV_TUPLE,
    NST__PV_LIST, NST__PV_DICT, NST__PV_GLOBAL, NST__PV_STORAGE, NST__PV_TENSOR, NST__PV_OBJ,
    NST__PV_NDARRAY, NST__PV_DTYPE
};

typedef struct nst__pv {
    int type;
    int64_t i;                 /* INT/BOOL; STORAGE: root numel; TENSOR: storage offset */
    const unsigned char *s;    /* STR, BIGINT bytes; GLOBAL: module; STORAGE: key; DTYPE: type code */
    size_t sn;
    const unsigned char *s2;   /* GLOBAL: name */
    size_t sn2;
    int *items;                /* TUPLE/LIST items, DICT key,value pairs; OBJ: [callable, state] */
    int n, cap;
    int dtype, swap;           /* STORAGE/NDARRAY/DTYPE element type and byte order */
    int64_t voff, vlen;        /* STORAGE views (legacy): offset and length in the root, -1 = whole */
    int ndim;                  /* TENSOR/NDARRAY */
    int64_t shape[8], stride[8];
    int ref;                   /* TENSOR: its STORAGE value; OBJ: the class (GLOBAL) */
    int fortran;               /* NDARRAY: column-major data */
} nst__pv;

typedef struct nst__pickle {
    nst__pv *v;
    int nv, capv;
    int *stack, sp, capstack;
    int *marks, nmarks, capmarks;
    int *memo, capmemo;
    int64_t memo_next;         /* MEMOIZE's slot: how many slots PUTs have filled */
    int64_t memo_hi;           /* slots [0, memo_hi) may be set: what the next run resets */
} nst__pickle;

static void nst__pickle_free(nst__pickle *k) {
    int i;
    for (i = 0; i < k->nv; i++) nst__free(k->v[i].items);
    nst__free(k->v); nst__free(k->stack); nst__free(k->marks); nst__free(k->memo);
    memset(k, 0, sizeof *k);
}

static int nst__pk_new(nst__pickle *k, int type) {
    nst__pv *v;
    if (k->nv == k->capv) {
        int cap = k->capv ? 2 * k->capv : 256;
        nst__pv *p;
        if (k->nv >= NST__PK_MAX_VALUES) return -1;
        p = (nst__pv *)nst__realloc(k->v, sizeof *p * (size_t)cap);
        if (!p) return -1;
        k->v = p; k->capv = cap;
    }
    v = &k->v[k->nv];
    memset(v, 0, sizeof *v);
    v->type = type;
    v->ref = -1;
    v->voff = -1;
    return k->nv++;
}

static int nst__pk_push_item(nst__pickle *k, int owner, int item) {
    nst__pv *o = &k->v[owner];
    if (o->n == o->cap) {
        int cap = o->cap ? 2 * o->cap : 4;
        int *p;
        if (o->n >= NST__PK_MAX_VALUES) return 0;
        p = (int *)nst__realloc(o->items, sizeof *p * (size_t)cap);
        if (!p) return 0;
        o->items = p; o->cap = cap;
    }
    o->items[o->n++] = item;
    return 1;
}

static int nst__pk_push(nst__pickle *k, int v) {
    if (v < 0) return 0;
    if (k->sp == k->capstack) {
        int cap = k->capstack ? 2 * k->capstack : 256;
        int *p;
        if (k->sp >= NST__PK_MAX_STACK) return 0;
        p = (int *)nst__realloc(k->stack, sizeof *p * (size_t)cap);
        if (!p) return 0;
        k->stack = p; k->capstack = cap;
    }
    k->stack[k->sp++] = v;
    return 1;
}

static int nst__pk_str_is(const nst__pv *v, const char *s) {
    return v->type == NST__PV_STR && v->sn == strlen(s) && memcmp(v->s, s, v->sn) == 0;
}
static int nst__pk_global_is(const nst__pv *v, const char *mod, const char *name) {
    return v->type == NST__PV_GLOBAL && v->sn == strlen(mod) && memcmp(v->s, mod, v->sn) == 0 &&
           v->sn2 == strlen(name) && memcmp(v->s2, name, v->sn2) == 0;
}

/* The element type a torch storage class name stands for (FloatStorage, ...). */
static int nst__torch_storage_dtype(const nst__pv *g) {
    static const char *const names[] = {"FloatStorage", "HalfStorage", "DoubleStorage", "BFloat16Storage"};
    static const int dts[] = {NST__DT_F32, NST__DT_F16, NST__DT_F64, NST__DT_BF16};
    int i;
    if (g->type != NST__PV_GLOBAL) return -1;
    for (i = 0; i < 4; i++)
        if (g->sn2 == strlen(names[i]) && memcmp(g->s2, names[i], g->sn2) == 0) return dts[i];
    if (g->sn2 > 7 && memcmp(g->s2 + g->sn2 - 7, "Storage", 7) == 0) return NST__DT_NONE;   /* Long, Byte, ... */
    return -1;
}
static int nst__torch_dtype_global(const nst__pv *g) {   /* torch.float32 & co (rebuild_tensor_v3) */
    if (g->type != NST__PV_GLOBAL) return -1;
    if (nst__pk_global_is(g, "torch", "float32") || nst__pk_global_is(g, "torch", "float")) return NST__DT_F32;
    if (nst__pk_global_is(g, "torch", "float16") || nst__pk_global_is(g, "torch", "half")) return NST__DT_F16;
    if (nst__pk_global_is(g, "torch", "float64") || nst__pk_global_is(g, "torch", "double")) return NST__DT_F64;
    if (nst__pk_global_is(g, "torch", "bfloat16")) return NST__DT_BF16;
    return NST__DT_NONE;
}

/* A shape or stride tuple of small non-negative ints; returns ndim or -1. */
static int nst__pk_int_tuple(const nst__pickle *k, int t, int64_t *out) {
    const nst__pv *v;
    int i;
    if (t < 0) return -1;
    v = &k->v[t];
    if (v->type != NST__PV_TUPLE && v->type != NST__PV_LIST) return -1;
    if (v->n > 8) return -1;
    for (i = 0; i < v->n; i++) {
        const nst__pv *e = &k->v[v->items[i]];
        if (e->type != NST__PV_INT || e->i < 0 || e->i > ((int64_t)1 << 40)) return -1;
        out[i] = e->i;
    }
    return v->n;
}

/* Builds a TENSOR from (storage, offset, size, stride); -1 if the arguments do not fit. */
static int nst__pk_make_tensor(nst__pickle *k, int storage, int offset, int size, int stride) {
    int t, nd, ns;
    int64_t sh[8], st[8];
    if (k->v[storage].type != NST__PV_STORAGE || k->v[offset].type != NST__PV_INT || k->v[offset].i < 0) return -1;
    nd = nst__pk_int_tuple(k, size, sh);
    ns = nst__pk_int_tuple(k, stride, st);
    if (nd < 0 || ns != nd) return -1;
    if ((t = nst__pk_new(k, NST__PV_TENSOR)) < 0) return -1;
    k->v[t].ref = storage;
    k->v[t].i = k->v[offset].i;
    k->v[t].ndim = nd;
    memcpy(k->v[t].shape, sh, sizeof sh);
    memcpy(k->v[t].stride, st, sizeof st);
    return t;
}

/* Applies a callable to an argument tuple: the constructors state dicts use; anything else
 * becomes an opaque object (an error only if a conv tensor turns out to live inside it). */
static int nst__pk_call(nst__pickle *k, int fn, int args) {
    const nst__pv *f = &k->v[fn], *a = &k->v[args];
    int r;
    if (a->type != NST__PV_TUPLE) return nst__pk_new(k, NST__PV_OBJ);
    if (nst__pk_global_is(f, "collections", "OrderedDict") || nst__pk_global_is(f, "builtins", "dict") ||
        nst__pk_global_is(f, "__builtin__", "dict"))
        return nst__pk_new(k, NST__PV_DICT);
    if ((nst__pk_global_is(f, "torch._utils", "_rebuild_tensor_v2") && a->n >= 4) ||
        (nst__pk_global_is(f, "torch._utils", "_rebuild_tensor") && a->n == 4)) {
        r = nst__pk_make_tensor(k, a->items[0], a->items[1], a->items[2], a->items[3]);
        return r >= 0 ? r : nst__pk_new(k, NST__PV_OBJ);
    }
    if (nst__pk_global_is(f, "torch._utils", "_rebuild_tensor_v3") && a->n >= 7) {
        int dt = nst__torch_dtype_global(&k->v[a->items[6]]);
        r = nst__pk_make_tensor(k, a->items[0], a->items[1], a->items[2], a->items[3]);
        if (r >= 0 && dt >= 0) k->v[k->v[r].ref].dtype = dt;
        return r >= 0 ? r : nst__pk_new(k, NST__PV_OBJ);
    }
    if ((nst__pk_global_is(f, "torch._utils", "_rebuild_parameter") ||
         nst__pk_global_is(f, "torch._utils", "_rebuild_parameter_with_state")) && a->n >= 1)
        return a->items[0];
    if (nst__pk_global_is(f, "numpy.core.multiarray", "_reconstruct") ||
        nst__pk_global_is(f, "numpy._core.multiarray", "_reconstruct"))
        return nst__pk_new(k, NST__PV_NDARRAY);
    if (nst__pk_global_is(f, "numpy", "dtype") && a->n >= 1 && k->v[a->items[0]].type == NST__PV_STR) {
        const nst__pv *code = &k->v[a->items[0]];
        int dt = NST__DT_NONE;
        if (code->sn == 2 && code->s[0] == 'f') dt = code->s[1] == '4' ? NST__DT_F32 : code->s[1] == '2' ? NST__DT_F16 :
                                                     code->s[1] == '8' ? NST__DT_F64 : NST__DT_NONE;
        if ((r = nst__pk_new(k, NST__PV_DTYPE)) >= 0) k->v[r].dtype = dt;
        return r;
    }
    r = nst__pk_new(k, NST__PV_OBJ);
    if (r >= 0) k->v[r].ref = fn;
    return r;
}

/* BUILD: sets state on the object below it. Used for NumPy arrays and dtypes, the oldest torch
 * tensors (torch.FloatTensor() + state tuple), and module objects whose __dict__ holds parameters. */
static void nst__pk_build(nst__pickle *k, int obj, int state) {
    nst__pv *o = &k->v[obj];
    const nst__pv *s = &k->v[state];
    if (o->type == NST__PV_DTYPE && s->type == NST__PV_TUPLE && s->n >= 2) {
        const nst__pv *bo = &k->v[s->items[1]];
        if (bo->type == NST__PV_STR && bo->sn == 1) o->swap = bo->s[0] == '>';
    } else if (o->type == NST__PV_NDARRAY && s->type == NST__PV_TUPLE && s->n >= 5) {
        /* (version, shape, dtype, fortran_order, raw data) */
        const nst__pv *dt = &k->v[s->items[2]], *fo = &k->v[s->items[3]], *raw = &k->v[s->items[4]];
        int nd = nst__pk_int_tuple(k, s->items[1], o->shape);
        if (raw->type == NST__PV_LIST || raw->type == NST__PV_TUPLE) { o->i = s->items[4] + 1; return; }   /* object array */
        if (nd < 0 || dt->type != NST__PV_DTYPE || raw->type != NST__PV_STR) return;
        o->ndim = nd;
        o->dtype = dt->dtype;
        o->swap = dt->swap;
        o->fortran = (fo->type == NST__PV_BOOL || fo->type == NST__PV_INT) && fo->i;
        o->s = raw->s;
        o->sn = raw->sn;
        o->ref = 1;   /* built */
    } else if (o->type == NST__PV_OBJ && s->type == NST__PV_TUPLE && s->n == 4 && o->ref >= 0 &&
               nst__torch_storage_dtype(&k->v[o->ref]) < 0 && k->v[o->ref].type == NST__PV_GLOBAL &&
               k->v[o->ref].sn2 > 6 && memcmp(k->v[o->ref].s2 + k->v[o->ref].sn2 - 6, "Tensor", 6) == 0) {
        int t = nst__pk_make_tensor(k, s->items[0], s->items[1], s->items[2], s->items[3]);
        if (t >= 0) {
            nst__pv tv = k->v[t];
            k->v[obj] = tv;          /* becomes the tensor in place (aliases see it too) */
            k->v[t].items = NULL;
        }
    } else if (o->type == NST__PV_OBJ && (s->type == NST__PV_DICT || s->type == NST__PV_TUPLE)) {
        o->i = state + 1;          /* remember the state; walked when looking for tensors */
    }
}

/* Resolves a persistent id ('storage', type, key, location, numel[, view]) to a STORAGE value. */
static int nst__pk_persid(nst__pickle *k, int pid) {
    const nst__pv *t = &k->v[pid], *ty, *key, *numel;
    int r, dt;
    if (t->type != NST__PV_TUPLE || t->n < 5 || !nst__pk_str_is(&k->v[t->items[0]], "storage")) return -1;
    ty = &k->v[t->items[1]]; key = &k->v[t->items[2]]; numel = &k->v[t->items[4]];
    dt = nst__torch_storage_dtype(ty);
    if (dt < 0 || key->type != NST__PV_STR || numel->type != NST__PV_INT || numel->i < 0) return -1;
    if ((r = nst__pk_new(k, NST__PV_STORAGE)) < 0) return -1;
    t = &k->v[pid]; key = &k->v[t->items[2]]; numel = &k->v[t->items[4]];
    k->v[r].dtype = dt;
    k->v[r].s = key->s; k->v[r].sn = key->sn;
    k->v[r].i = numel->i;
    if (t->n >= 6 && k->v[t->items[5]].type == NST__PV_TUPLE) {
        /* legacy view: (view_key, offset, size) within the root storage */
        const nst__pv *vm = &k->v[t->items[5]];
        if (vm->n == 3 && k->v[vm->items[1]].type == NST__PV_INT && k->v[vm->items[2]].type == NST__PV_INT &&
            k->v[vm->items[1]].i >= 0 && k->v[vm->items[2]].i >= 0) {
            k->v[r].voff = k->v[vm->items[1]].i;
            k->v[r].vlen = k->v[vm->items[2]].i;
        } else {
            return -1;
        }
    }
    return r;
}

/* Runs one pickle from p[*pos] to its STOP; *result = the value left on the stack. */
static nst_status nst__pickle_run(nst__pickle *k, const unsigned char *p, size_t n, size_t *pos, int *result) {
    size_t i = *pos;
    int top, a, b;
    k->sp = 0; k->nmarks = 0; k->memo_next = 0;
    if (k->memo) memset(k->memo, 0xFF, sizeof *k->memo * (size_t)k->memo_hi);
    k->memo_hi = 0;
#define NST__PK_NEED(m) do { if (n - i < (size_t)(m)) return nst__err(NST_ERR_FORMAT, "pickle: truncated at byte %lu", (unsigned long)i); } while (0)
#define NST__PK_POP(x) do { if (k->sp <= (k->nmarks ? k->marks[k->nmarks - 1] : 0)) return nst__err(NST_ERR_FORMAT, "pickle: stack underflow at byte %lu", (unsigned long)(i - 1)); (x) = k->stack[--k->sp]; } while (0)
#define NST__PK_PUSH(x) do { if (!nst__pk_push(k, (x))) return nst__err(NST_ERR_NOMEM, "pickle: too many values or out of memory"); } while (0)
    for (;;) {
        int op;
        if (i >= n) return nst__err(NST_ERR_FORMAT, "pickle: truncated (no STOP)");
        op = p[i++];
        switch (op) {
        case 0x80: NST__PK_NEED(1); i++; break;                       /* PROTO */
        case 0x95: NST__PK_NEED(8); i += 8; break;                    /* FRAME: just a length hint */
        case '.':                                                     /* STOP */
            if (k->sp != 1 || k->nmarks) return nst__err(NST_ERR_FORMAT, "pickle: STOP with %d values on the stack", k->sp);
            *result = k->stack[0];
            *pos = i;
            return NST_OK;
        case '(':                                                     /* MARK */
            if (k->nmarks == k->capmarks) {
                int cap = k->capmarks ? 2 * k->capmarks : 64;
                int *q;
                if (k->nmarks >= NST__PK_MAX_STACK) return nst__err(NST_ERR_LIMIT, "pickle: nesting too deep");
                q = (int *)nst__realloc(k->marks, sizeof *q * (size_t)cap);
                if (!q) return nst__err(NST_ERR_NOMEM, "pickle: out of memory");
                k->marks = q; k->capmarks = cap;
            }
            k->marks[k->nmarks++] = k->sp;
            break;
        case 'N': NST__PK_PUSH(nst__pk_new(k, NST__PV_NONE)); break;
        case 0x88: case 0x89:                                         /* NEWTRUE, NEWFALSE */
            a = nst__pk_new(k, NST__PV_BOOL);
            if (a >= 0) k->v[a].i = op == 0x88;
            NST__PK_PUSH(a);
            break;
        case 'J': case 'K': case 'M': {                               /* BININT, BININT1, BININT2 */
            int64_t v;
            if (op == 'J') { NST__PK_NEED(4); v = (int32_t)nst__rd32le(p + i); i += 4; }
            else if (op == 'K') { NST__PK_NEED(1); v = p[i]; i += 1; }
            else { NST__PK_NEED(2); v = nst__rd16le(p + i); i += 2; }
            a = nst__pk_new(k, NST__PV_INT);
            if (a >= 0) k->v[a].i = v;
            NST__PK_PUSH(a);
            break;
        }
        case 0x8a: case 0x8b: {                                       /* LONG1, LONG4 */
            size_t len;
            if (op == 0x8a) { NST__PK_NEED(1); len = p[i++]; }
            else { NST__PK_NEED(4); len = nst__rd32le(p + i); i += 4; }
            NST__PK_NEED(len);
            if (len <= 8) {
                uint64_t u = 0;
                size_t j;
                for (j = 0; j < len; j++) u |= (uint64_t)p[i + j] << (8 * j);
                if (len && len < 8 && (p[i + len - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * len);   /* sign-extend */
                a = nst__pk_new(k, NST__PV_INT);
                if (a >= 0) k->v[a].i = (int64_t)u;
            } else {
                a = nst__pk_new(k, NST__PV_BIGINT);
                if (a >= 0) { k->v[a].s = p + i; k->v[a].sn = len; }
            }
            i += len;
            NST__PK_PUSH(a);
            break;
        }
        case 'I': case 'L': {                                         /* INT, LONG (text lines) */
            const unsigned char *e = (const unsigned char *)memchr(p + i, '\n', n - i);
            int64_t v = 0;
            int neg = 0;
            size_t j = i;
            if (!e) return nst__err(NST_ERR_FORMAT, "pickle: truncated text integer");
            if (j < (size_t)(e - p) && p[j] == '-') { neg = 1; j++; }
            for (; j < (size_t)(e - p) && nst__is_digit(p[j]); j++) {
                if (v > ((int64_t)1 << 56)) return nst__err(NST_ERR_UNSUPPORTED, "pickle: text integer too large");
                v = v * 10 + (p[j] - '0');
            }
            i = (size_t)(e - p) + 1;
            a = nst__pk_new(k, NST__PV_INT);
            if (a >= 0) k->v[a].i = neg ? -v : v;
            NST__PK_PUSH(a);
            break;
        }
        case 'G': {                                                   /* BINFLOAT (big-endian) */
            NST__PK_NEED(8);   /* floats never matter for weights: kept as an opaque value */
            i += 8;
            NST__PK_PUSH(nst__pk_new(k, NST__PV_FLOAT));
            break;
        }
        case 'X': case 0x8c: case 0x8d: case 'T': case 'U': case 'B': case 'C': case 0x8e: {
            /* BINUNICODE, SHORT_BINUNICODE, BINUNICODE8, BINSTRING, SHORT_BINSTRING, BINBYTES, SHORT_BINBYTES, BINBYTES8 */
            uint64_t len;
            if (op == 0x8c || op == 'U' || op == 'C') { NST__PK_NEED(1); len = p[i]; i += 1; }
            else if (op == 0x8d || op == 0x8e) { NST__PK_NEED(8); len = nst__rd64le(p + i); i += 8; }
            else { NST__PK_NEED(4); len = nst__rd32le(p + i); i += 4; }
            if (len > n - i) return nst__err(NST_ERR_FORMAT, "pickle: string of %llu bytes past the end", (unsigned long long)len);
            a = nst__pk_new(k, NST__PV_STR);
            if (a >= 0) { k->v[a].s = p + i; k->v[a].sn = (size_t)len; }
            i += (size_t)len;
            NST__PK_PUSH(a);
            break;
        }
        case 'V': case 'S': {                                         /* UNICODE, STRING (text lines) */
            const unsigned char *e = (const unsigned char *)memchr(p + i, '\n', n - i);
            size_t s0 = i, s1;
            if (!e) return nst__err(NST_ERR_FORMAT, "pickle: truncated text string");
            s1 = (size_t)(e - p);
            if (op == 'S' && s1 - s0 >= 2 && (p[s0] == '\'' || p[s0] == '"') && p[s1 - 1] == p[s0]) { s0++; s1--; }
            a = nst__pk_new(k, NST__PV_STR);
            if (a >= 0) { k->v[a].s = p + s0; k->v[a].sn = s1 - s0; }
            i = (size_t)(e - p) + 1;
            NST__PK_PUSH(a);
            break;
        }
        case ')': NST__PK_PUSH(nst__pk_new(k, NST__PV_TUPLE)); break;
        case ']': NST__PK_PUSH(nst__pk_new(k, NST__PV_LIST)); break;
        case '}': NST__PK_PUSH(nst__pk_new(k, NST__PV_DICT)); break;
        case 't': case 'l': case 'd': {                               /* TUPLE, LIST, DICT from the mark */
            int m, j;
            if (!k->nmarks) return nst__err(NST_ERR_FORMAT, "pickle: no MARK for opcode '%c'", op);
            m = k->marks[--k->nmarks];
            a = nst__pk_new(k, op == 't' ? NST__PV_TUPLE : op == 'l' ? NST__PV_LIST : NST__PV_DICT);
            if (a < 0) return nst__err(NST_ERR_NOMEM, "pickle: too many values");
            if (op == 'd' && ((k->sp - m) & 1)) return nst__err(NST_ERR_FORMAT, "pickle: odd DICT item count");
            for (j = m; j < k->sp; j++)
                if (!nst__pk_push_item(k, a, k->stack[j])) return nst__err(NST_ERR_NOMEM, "pickle: out of memory");
            k->sp = m;
            NST__PK_PUSH(a);
            break;
        }
        case 0x85: case 0x86: case 0x87: {                            /* TUPLE1..3 */
            int cnt = op - 0x84, j, base;
            if (k->sp - (k->nmarks ? k->marks[k->nmarks - 1] : 0) < cnt) return nst__err(NST_ERR_FORMAT, "pickle: stack underflow");
            a = nst__pk_new(k, NST__PV_TUPLE);
            if (a < 0) return nst__err(NST_ERR_NOMEM, "pickle: too many values");
            base = k->sp - cnt;
            for (j = base; j < k->sp; j++)
                if (!nst__pk_push_item(k, a, k->stack[j])) return nst__err(NST_ERR_NOMEM, "pickle: out of memory");
            k->sp = base;
            NST__PK_PUSH(a);
            break;
        }
        case 'a':                                                     /* APPEND */
            NST__PK_POP(b);
            if (k->sp < 1) return nst__err(NST_ERR_FORMAT, "pickle: APPEND without a list");
            top = k->stack[k->sp - 1];
            if (k->v[top].type == NST__PV_LIST && !nst__pk_push_item(k, top, b)) return nst__err(NST_ERR_NOMEM, "pickle: out of memory");
            break;
        case 'e': case 'u': {                                         /* APPENDS, SETITEMS */
            int m, j;
            if (!k->nmarks) return nst__err(NST_ERR_FORMAT, "pickle: no MARK for opcode '%c'", op);
            m = k->marks[--k->nmarks];
            if (m < 1) return nst__err(NST_ERR_FORMAT, "pickle: '%c' without a target", op);
            top = k->stack[m - 1];
            if (op == 'u' && ((k->sp - m) & 1)) return nst__err(NST_ERR_FORMAT, "pickle: odd SETITEMS count");
            if ((op == 'e' && k->v[top].type == NST__PV_LIST) || (op == 'u' && k->v[top].type == NST__PV_DICT))
                for (j = m; j < k->sp; j++)
                    if (!nst__pk_push_item(k, top, k->stack[j])) return nst__err(NST_ERR_NOMEM, "pickle: out of memory");
            k->sp = m;
            break;
        }
        case 's': {                                                   /* SETITEM */
            int key, val;
            NST__PK_POP(val);
            NST__PK_POP(key);
            if (k->sp < 1) return nst__err(NST_ERR_FORMAT, "pickle: SETITEM without a dict");
            top = k->stack[k->sp - 1];
            if (k->v[top].type == NST__PV_DICT &&
                (!nst__pk_push_item(k, top, key) || !nst__pk_push_item(k, top, val)))
                return nst__err(NST_ERR_NOMEM, "pickle: out of memory");
            break;
        }
        case 'q': case 'r': case 'p': case 0x94: {                    /* BINPUT, LONG_BINPUT, PUT, MEMOIZE */
            int64_t idx;
            if (k->sp < 1) return nst__err(NST_ERR_FORMAT, "pickle: memo store with an empty stack");
            if (op == 'q') { NST__PK_NEED(1); idx = p[i]; i += 1; }
            else if (op == 'r') { NST__PK_NEED(4); idx = nst__rd32le(p + i); i += 4; }
            else if (op == 'p') {
                const unsigned char *e = (const unsigned char *)memchr(p + i, '\n', n - i);
                size_t j = i;
                if (!e) return nst__err(NST_ERR_FORMAT, "pickle: truncated PUT");
                idx = 0;
                for (; j < (size_t)(e - p) && nst__is_digit(p[j]) && idx < NST__PK_MAX_MEMO; j++) idx = idx * 10 + (p[j] - '0');
                i = (size_t)(e - p) + 1;
            } else {
                idx = -1;   /* MEMOIZE: next free slot, tracked below */
            }
            if (idx < 0) idx = k->memo_next;
            /* picklers number slots 0, 1, 2, ...: an index far past the slots in use is hostile */
            if (idx >= NST__PK_MAX_MEMO || idx > k->memo_next + 65536)
                return nst__err(NST_ERR_LIMIT, "pickle: memo index %lld too large", (long long)idx);
            if (idx >= k->capmemo) {
                int cap = k->capmemo ? k->capmemo : 64, *q;
                while (cap <= idx) cap *= 2;
                q = (int *)nst__realloc(k->memo, sizeof *q * (size_t)cap);
                if (!q) return nst__err(NST_ERR_NOMEM, "pickle: out of memory");
                memset(q + k->capmemo, 0xFF, sizeof *q * (size_t)(cap - k->capmemo));
                k->memo = q; k->capmemo = cap;
            }
            if (k->memo[idx] < 0) k->memo_next++;
            k->memo[idx] = k->stack[k->sp - 1];
            if (idx >= k->memo_hi) k->memo_hi = idx + 1;
            break;
        }
        case 'h': case 'j': case 'g': {                               /* BINGET, LONG_BINGET, GET */
            int64_t idx;
            if (op == 'h') { NST__PK_NEED(1); idx = p[i]; i += 1; }
            else if (op == 'j') { NST__PK_NEED(4); idx = nst__rd32le(p + i); i += 4; }
            else {
                const unsigned char *e = (const unsigned char *)memchr(p + i, '\n', n - i);
                size_t j = i;
                if (!e) return nst__err(NST_ERR_FORMAT, "pickle: truncated GET");
                idx = 0;
                for (; j < (size_t)(e - p) && nst__is_digit(p[j]) && idx < NST__PK_MAX_MEMO; j++) idx = idx * 10 + (p[j] - '0');
                i = (size_t)(e - p) + 1;
            }
            if (idx >= k->capmemo || k->memo[idx] < 0) return nst__err(NST_ERR_FORMAT, "pickle: memo slot %lld is empty", (long long)idx);
            NST__PK_PUSH(k->memo[idx]);
            break;
        }
        case 'c': {                                                   /* GLOBAL "module\nname\n" */
            const unsigned char *e1 = (const unsigned char *)memchr(p + i, '\n', n - i), *e2;
            if (!e1) return nst__err(NST_ERR_FORMAT, "pickle: truncated GLOBAL");
            e2 = (const unsigned char *)memchr(e1 + 1, '\n', n - (size_t)(e1 + 1 - p));
            if (!e2) return nst__err(NST_ERR_FORMAT, "pickle: truncated GLOBAL");
            a = nst__pk_new(k, NST__PV_GLOBAL);
            if (a >= 0) {
                k->v[a].s = p + i; k->v[a].sn = (size_t)(e1 - (p + i));
                k->v[a].s2 = e1 + 1; k->v[a].sn2 = (size_t)(e2 - (e1 + 1));
            }
            i = (size_t)(e2 - p) + 1;
            NST__PK_PUSH(a);
            break;
        }
        case 0x93: {                                                  /* STACK_GLOBAL */
            int mod, name;
            NST__PK_POP(name);
            NST__PK_POP(mod);
            if (k->v[mod].type != NST__PV_STR || k->v[name].type != NST__PV_STR)
                return nst__err(NST_ERR_FORMAT, "pickle: STACK_GLOBAL needs two strings");
            a = nst__pk_new(k, NST__PV_GLOBAL);
            if (a >= 0) {
                k->v[a].s = k->v[mod].s; k->v[a].sn = k->v[mod].sn;
                k->v[a].s2 = k->v[name].s; k->v[a].sn2 = k->v[name].sn;
            }
            NST__PK_PUSH(a);
            break;
        }
        case 'R': case 0x81: {                                        /* REDUCE, NEWOBJ */
            int fn, args;
            NST__PK_POP(args);
            NST__PK_POP(fn);
            a = nst__pk_call(k, fn, args);
            NST__PK_PUSH(a);
            break;
        }
        case 'b': {                                                   /* BUILD */
            int state;
            NST__PK_POP(state);
            if (k->sp < 1) return nst__err(NST_ERR_FORMAT, "pickle: BUILD without an object");
            nst__pk_build(k, k->stack[k->sp - 1], state);
            break;
        }
        case 'Q': {                                                   /* BINPERSID */
            int pid;
            NST__PK_POP(pid);
            a = nst__pk_persid(k, pid);
            if (a < 0) return nst__err(NST_ERR_UNSUPPORTED, "pickle: persistent id at byte %lu is not a torch storage we read",
                                       (unsigned long)(i - 1));
            NST__PK_PUSH(a);
            break;
        }
        case '0': NST__PK_POP(a); (void)a; break;                     /* POP */
        case '1':                                                     /* POP_MARK */
            if (!k->nmarks) return nst__err(NST_ERR_FORMAT, "pickle: POP_MARK without MARK");
            k->sp = k->marks[--k->nmarks];
            break;
        case '2':                                                     /* DUP */
            if (k->sp < 1) return nst__err(NST_ERR_FORMAT, "pickle: DUP on an empty stack");
            NST__PK_PUSH(k->stack[k->sp - 1]);
            break;
        default:
            return nst__err(NST_ERR_UNSUPPORTED, "pickle: opcode 0x%02x at byte %lu is not supported by this reader",
                            op, (unsigned long)(i - 1));
        }
    }
#undef NST__PK_NEED
#undef NST__PK_POP
#undef NST__PK_PUSH
}

/* Walks the unpickled object for tensors/arrays, building dotted key names ("model.features.0.weight",
 * "conv1_1.0" for {"conv1_1": [W, b]}). Iterative with an explicit stack and a depth cap, so hostile
 * nesting costs neither recursion nor time (each container is visited once per path, capped). */
typedef void (*nst__pk_visit)(void *user, const char *key, int value);
static nst_status nst__pickle_walk(nst__pickle *k, int root, nst__pk_visit visit, void *user) {
    enum { MAXD = 12 };
    struct { int v, next; size_t keylen; } st[MAXD];
    char key[512];
    int d = 0;
    long budget = 1L << 20;   /* paths visited; real state dicts need hundreds, a self-referencing list hits this */
    st[0].v = root; st[0].next = 0; st[0].keylen = 0;
    while (d >= 0) {
        const nst__pv *c = &k->v[st[d].v], *cv;
        int child = -1;
        char comp[128];
        size_t base = st[d].keylen, cl, nl;
        if (--budget < 0) return nst__err(NST_ERR_LIMIT, "pickle: object too large to search");
        comp[0] = 0;
        if ((c->type == NST__PV_OBJ || c->type == NST__PV_NDARRAY) && c->i > 0 && st[d].next == 0) {
            child = (int)c->i - 1;        /* an object: look inside its state (a module's __dict__) */
            st[d].next = 1;
        } else if (c->type == NST__PV_DICT && st[d].next < c->n / 2) {
            const nst__pv *kv = &k->v[c->items[2 * st[d].next]];
            child = c->items[2 * st[d].next + 1];
            if (kv->type == NST__PV_STR) snprintf(comp, sizeof comp, "%.*s", (int)(kv->sn < 100 ? kv->sn : 100), (const char *)kv->s);
            else if (kv->type == NST__PV_INT) snprintf(comp, sizeof comp, "%lld", (long long)kv->i);
            else snprintf(comp, sizeof comp, "?");
            st[d].next++;
        } else if ((c->type == NST__PV_LIST || c->type == NST__PV_TUPLE) && st[d].next < c->n) {
            child = c->items[st[d].next];
            snprintf(comp, sizeof comp, "%d", st[d].next);
            st[d].next++;
        }
        if (child < 0) { d--; continue; }
        /* components starting with '_' (_modules, _parameters) are plumbing: leave them out */
        cl = strlen(comp);
        nl = base;
        if (cl && comp[0] != '_' && base + cl + 2 < sizeof key) {
            if (base) key[nl++] = '.';
            memcpy(key + nl, comp, cl);
            nl += cl;
        }
        key[nl] = 0;
        cv = &k->v[child];
        if (cv->type == NST__PV_TENSOR || (cv->type == NST__PV_NDARRAY && cv->i == 0)) {
            visit(user, key, child);
        } else if ((cv->type == NST__PV_DICT || cv->type == NST__PV_LIST || cv->type == NST__PV_TUPLE ||
                    ((cv->type == NST__PV_OBJ || cv->type == NST__PV_NDARRAY) && cv->i > 0)) && d + 1 < MAXD) {
            d++;
            st[d].v = child; st[d].next = 0; st[d].keylen = nl;
        }
    }
    return NST_OK;
}

static nst_input_convention nst__torchvision_convention(void) {
    nst_input_convention c;
    c.bgr = 0; c.scale = 1.0f;
    c.mean[0] = 0.485f; c.mean[1] = 0.456f; c.mean[2] = 0.406f;
    c.std[0] = 0.229f; c.std[1] = 0.224f; c.std[2] = 0.225f;
    return c;
}

/* PyTorch files carry no convention; the key names tell the source. torchvision trained on RGB
 * with ImageNet statistics; files with Caffe-style names (Gatys' vgg_conv.pth, jcjohnson's converted
 * models) hold the Caffe weights and expect Caffe's input. */
static void nst__torch_finish(const nst__collect *c, const char *container, nst__tensor_list *out) {
    out->has_conv = 1;
    out->conv = c->tv_names ? nst__torchvision_convention() : nst__caffe_convention();
    snprintf(out->format, sizeof out->format, "pytorch %s (%s names)", container, c->tv_names ? "torchvision" : "caffe-style");
}

/* ===================================================================================================
 * PyTorch: zip container and legacy stream
 * =================================================================================================*/
typedef struct nst__torch_ctx {
    nst__pickle *k;
    nst__collect *c;
} nst__torch_ctx;

static void nst__torch_visit(void *user, const char *key, int value) {
    nst__torch_ctx *x = (nst__torch_ctx *)user;
    const nst__pv *t = &x->k->v[value];
    nst__src *s;
    if (t->type != NST__PV_TENSOR) { x->c->ignored++; return; }
    if (!(s = nst__collect_slot(x->c, key))) return;
    s->dtype = x->k->v[t->ref].dtype;
    s->ndim = t->ndim;
    memcpy(s->shape, t->shape, sizeof s->shape);
    memcpy(s->stride, t->stride, sizeof s->stride);
    s->offset = (uint64_t)t->i;
    s->aux = t->ref;       /* the STORAGE value; bytes resolved later */
}

/* Points a slot at its storage bytes: base = the storage's first element, checked against the
 * bytes present; legacy views add their offset and narrow the length. */
static nst_status nst__torch_bind(nst__src *s, const nst__pv *sto, const unsigned char *bytes, uint64_t nbytes, int swap) {
    uint64_t es = (uint64_t)nst__dt_size(sto->dtype), elems;
    if (!es) return nst__err(NST_ERR_UNSUPPORTED, "pytorch: '%s' is not a floating-point tensor", s->origin);
    elems = nbytes / es;
    if ((uint64_t)sto->i > elems)
        return nst__err(NST_ERR_FORMAT, "pytorch: storage of '%s' holds %llu elements, the file has %llu",
                        s->origin, (unsigned long long)sto->i, (unsigned long long)elems);
    elems = (uint64_t)sto->i;
    if (sto->voff >= 0) {
        if ((uint64_t)sto->voff > elems || (uint64_t)sto->vlen > elems - (uint64_t)sto->voff)
            return nst__err(NST_ERR_FORMAT, "pytorch: storage view of '%s' is out of range", s->origin);
        bytes += (uint64_t)sto->voff * es;
        elems = (uint64_t)sto->vlen;
    }
    s->p = bytes;
    s->elems = elems;
    s->swap = swap;
    return NST_OK;
}

static nst_status nst__import_torch_zip(const nst__zip *z, int flags, nst__tensor_list *out) {
    const nst__zip_entry *pk = NULL;
    size_t i, plen = 0;
    const unsigned char *pb;
    size_t pn, pos = 0;
    nst__pickle k;
    nst__collect c;
    nst__torch_ctx x;
    nst_status st;
    int root, swap = 0, li;
    char prefix[256];
    for (i = 0; i < z->count; i++) {
        const nst__zip_entry *e = &z->e[i];
        if (e->name_len >= 8 && memcmp(e->name + e->name_len - 8, "data.pkl", 8) == 0 &&
            (e->name_len == 8 || e->name[e->name_len - 9] == '/') && (!pk || e->name_len < pk->name_len))
            pk = e;
    }
    if (!pk) return nst__err(NST_ERR_FORMAT, "pytorch: zip archive without data.pkl");
    plen = pk->name_len - 8;
    if (plen >= sizeof prefix - 32) return nst__err(NST_ERR_FORMAT, "pytorch: archive name too long");
    memcpy(prefix, pk->name, plen);
    prefix[plen] = 0;
    memset(&k, 0, sizeof k);
    memset(&c, 0, sizeof c);
    {
        char bo[300];
        const nst__zip_entry *e;
        snprintf(bo, sizeof bo, "%sbyteorder", prefix);
        if ((e = nst__zip_find(z, bo, strlen(bo))) != NULL) {
            const unsigned char *b;
            size_t bn;
            if ((st = nst__zip_read(z, e, &c, &b, &bn)) != NST_OK) goto done;
            if (bn == 3 && memcmp(b, "big", 3) == 0) swap = 1;
        }
    }
    if ((st = nst__zip_read(z, pk, &c, &pb, &pn)) != NST_OK) goto done;
    if ((st = nst__pickle_run(&k, pb, pn, &pos, &root)) != NST_OK) goto done;
    x.k = &k; x.c = &c;
    if ((st = nst__pickle_walk(&k, root, nst__torch_visit, &x)) != NST_OK) goto done;
    if ((st = nst__collect_plan(&c, flags)) != NST_OK) goto done;
    for (li = 0; li < 2 * c.nkeep; li++) {
        nst__src *s = li & 1 ? &c.b[li / 2] : &c.w[li / 2];
        const nst__pv *sto = &k.v[s->aux];
        const nst__zip_entry *e;
        const unsigned char *b;
        size_t bn;
        char name[400];
        snprintf(name, sizeof name, "%sdata/%.*s", prefix, (int)(sto->sn < 64 ? sto->sn : 64), (const char *)sto->s);
        if (!(e = nst__zip_find(z, name, strlen(name)))) {
            st = nst__err(NST_ERR_FORMAT, "pytorch: storage '%s' of '%s' is missing from the archive", name, s->origin);
            goto done;
        }
        if ((st = nst__zip_read(z, e, &c, &b, &bn)) != NST_OK) goto done;
        if ((st = nst__torch_bind(s, sto, b, bn, swap)) != NST_OK) goto done;
    }
    if ((st = nst__collect_finish(&c, out)) == NST_OK) nst__torch_finish(&c, "zip", out);
done:
    nst__pickle_free(&k);
    nst__collect_free(&c);
    return st;
}

/* Element sizes of the legacy storages, by key: one pass over the persistent ids, sorted, then a
 * binary search per key, so a file with many keys and values costs O(n log n), not O(n^2). */
typedef struct nst__legacy_key {
    const unsigned char *s;
    size_t n;
    int width;   /* bytes per element; -1 = a storage type this reader cannot size */
} nst__legacy_key;

static int nst__legacy_key_cmp(const void *a, const void *b) {
    const nst__legacy_key *x = (const nst__legacy_key *)a, *y = (const nst__legacy_key *)b;
    int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
    return c ? c : (x->n < y->n ? -1 : x->n > y->n);
}

static nst_status nst__legacy_key_table(const nst__pickle *k, nst__legacy_key **out, int *count) {
    static const char *const nm[] = {"FloatStorage", "HalfStorage", "DoubleStorage", "BFloat16Storage", "LongStorage",
                                     "IntStorage", "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage"};
    static const int w[] = {4, 2, 8, 2, 8, 4, 2, 1, 1, 1};
    nst__legacy_key *t;
    int q, z, n = 0;
    *out = NULL; *count = 0;
    for (q = 0; q < k->nv; q++)
        if (k->v[q].type == NST__PV_TUPLE && k->v[q].n >= 5 && nst__pk_str_is(&k->v[k->v[q].items[0]], "storage") &&
            k->v[k->v[q].items[2]].type == NST__PV_STR) n++;
    t = (nst__legacy_key *)nst__calloc(n ? (size_t)n : 1, sizeof *t);
    if (!t) return nst__err(NST_ERR_NOMEM, "pytorch: out of memory");
    n = 0;
    for (q = 0; q < k->nv; q++) {
        const nst__pv *v = &k->v[q], *g;
        if (!(v->type == NST__PV_TUPLE && v->n >= 5 && nst__pk_str_is(&k->v[v->items[0]], "storage") &&
              k->v[v->items[2]].type == NST__PV_STR)) continue;
        g = &k->v[v->items[1]];
        t[n].s = k->v[v->items[2]].s;
        t[n].n = k->v[v->items[2]].sn;
        t[n].width = -1;
        for (z = 0; z < 10; z++)
            if (g->type == NST__PV_GLOBAL && g->sn2 == strlen(nm[z]) && memcmp(g->s2, nm[z], g->sn2) == 0) t[n].width = w[z];
        n++;
    }
    qsort(t, (size_t)n, sizeof *t, nst__legacy_key_cmp);
    *out = t;
    *count = n;
    return NST_OK;
}

/* Element size of a storage key: 0 = not referenced by the object, -1 = unknown type. */
static int nst__legacy_elem_size(const nst__legacy_key *t, int n, const nst__pv *key) {
    nst__legacy_key probe;
    const nst__legacy_key *hit;
    probe.s = key->s; probe.n = key->sn; probe.width = 0;
    hit = n ? (const nst__legacy_key *)bsearch(&probe, t, (size_t)n, sizeof *t, nst__legacy_key_cmp) : NULL;
    return hit ? hit->width : 0;
}

static nst_status nst__import_torch_legacy(const unsigned char *p, size_t n, int flags, nst__tensor_list *out) {
    static const unsigned char magic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
    nst__pickle k;
    nst__collect c;
    nst__torch_ctx x;
    nst_status st;
    size_t pos = 0, j;
    int v, root, keys, swap = 0, li;
    uint64_t *koff = NULL, *klen = NULL;
    nst__legacy_key *ktab = NULL;
    int nktab = 0;
    memset(&k, 0, sizeof k);
    memset(&c, 0, sizeof c);
    if ((st = nst__pickle_run(&k, p, n, &pos, &v)) != NST_OK) goto done;
    if (k.v[v].type != NST__PV_BIGINT || k.v[v].sn != 10 || memcmp(k.v[v].s, magic, 10) != 0) {
        st = nst__err(NST_ERR_FORMAT, "pytorch: a pickle, but not a torch.save file (no magic number)");
        goto done;
    }
    if ((st = nst__pickle_run(&k, p, n, &pos, &v)) != NST_OK) goto done;
    if (k.v[v].type != NST__PV_INT || k.v[v].i != 1001) {
        st = nst__err(NST_ERR_UNSUPPORTED, "pytorch: legacy protocol version %lld (this reader knows 1001)", (long long)k.v[v].i);
        goto done;
    }
    if ((st = nst__pickle_run(&k, p, n, &pos, &v)) != NST_OK) goto done;   /* sys info */
    if (k.v[v].type == NST__PV_DICT) {
        int q;
        for (q = 0; q + 1 < k.v[v].n; q += 2)
            if (nst__pk_str_is(&k.v[k.v[v].items[q]], "little_endian")) {
                const nst__pv *b = &k.v[k.v[v].items[q + 1]];
                swap = (b->type == NST__PV_BOOL || b->type == NST__PV_INT) && !b->i;
            }
    }
    if ((st = nst__pickle_run(&k, p, n, &pos, &root)) != NST_OK) goto done;
    if ((st = nst__pickle_run(&k, p, n, &pos, &keys)) != NST_OK) goto done;
    if (k.v[keys].type != NST__PV_LIST) { st = nst__err(NST_ERR_FORMAT, "pytorch: storage key list missing"); goto done; }
    /* the raw storages follow, in key order: u64 element count, then the data. The element size
     * comes from the storages the object refers to. */
    if ((st = nst__legacy_key_table(&k, &ktab, &nktab)) != NST_OK) goto done;
    koff = (uint64_t *)nst__calloc((size_t)k.v[keys].n + 1, sizeof *koff);
    klen = (uint64_t *)nst__calloc((size_t)k.v[keys].n + 1, sizeof *klen);
    if (!koff || !klen) { st = nst__err(NST_ERR_NOMEM, "pytorch: out of memory"); goto done; }
    for (j = 0; j < (size_t)k.v[keys].n; j++) {
        const nst__pv *key = &k.v[k.v[keys].items[j]];
        int es;
        uint64_t cnt;
        if (key->type != NST__PV_STR) { st = nst__err(NST_ERR_FORMAT, "pytorch: storage key is not a string"); goto done; }
        es = nst__legacy_elem_size(ktab, nktab, key);
        if (es <= 0) {
            st = nst__err(es ? NST_ERR_UNSUPPORTED : NST_ERR_FORMAT, "pytorch: storage '%.*s' %s", (int)(key->sn < 64 ? key->sn : 64),
                          (const char *)key->s, es ? "has a type this reader cannot size" : "is not used by the object");
            goto done;
        }
        if (n - pos < 8) { st = nst__err(NST_ERR_FORMAT, "pytorch: truncated before storage %lu of %d", (unsigned long)j, k.v[keys].n); goto done; }
        cnt = nst__rd64le(p + pos);
        if (swap) { uint64_t r = 0; int q; for (q = 0; q < 8; q++) r = (r << 8) | p[pos + q]; cnt = r; }
        pos += 8;
        if (cnt > (uint64_t)(n - pos) / (uint64_t)es) {
            st = nst__err(NST_ERR_FORMAT, "pytorch: storage %lu declares %llu elements, past the end of the file (truncated?)",
                          (unsigned long)j, (unsigned long long)cnt);
            goto done;
        }
        koff[j] = pos;
        klen[j] = cnt * (uint64_t)es;
        pos += (size_t)klen[j];
    }
    x.k = &k; x.c = &c;
    if ((st = nst__pickle_walk(&k, root, nst__torch_visit, &x)) != NST_OK) goto done;
    if ((st = nst__collect_plan(&c, flags)) != NST_OK) goto done;
    for (li = 0; li < 2 * c.nkeep; li++) {
        nst__src *s = li & 1 ? &c.b[li / 2] : &c.w[li / 2];
        const nst__pv *sto = &k.v[s->aux];
        for (j = 0; j < (size_t)k.v[keys].n; j++) {
            const nst__pv *key = &k.v[k.v[keys].items[j]];
            if (key->sn == sto->sn && memcmp(key->s, sto->s, key->sn) == 0) break;
        }
        if (j == (size_t)k.v[keys].n) {
            st = nst__err(NST_ERR_FORMAT, "pytorch: storage of '%s' is not in the file", s->origin);
            goto done;
        }
        if ((st = nst__torch_bind(s, sto, p + koff[j], klen[j], swap)) != NST_OK) goto done;
    }
    if ((st = nst__collect_finish(&c, out)) == NST_OK) nst__torch_finish(&c, "legacy", out);
done:
    nst__free(ktab);
    nst__free(koff);
    nst__free(klen);
    nst__pickle_free(&k);
    nst__collect_free(&c);
    return st;
}

/* ===================================================================================================
 * NumPy: .npy headers, .npz archives, and .npy files holding a pickled dict of arrays
 * =================================================================================================*/
typedef struct nst__npy {
    int dtype, swap, fortran, ndim;
    int64_t shape[8];
    const unsigned char *data;
    size_t data_n;
    int object;            /* dtype '|O': the data is a pickle */
} nst__npy;

static nst_status nst__npy_parse(const unsigned char *p, size_t n, const char *what, nst__npy *r) {
    size_t hl, h0;
    const char *h;
    memset(r, 0, sizeof *r);
    if (n < 10 || memcmp(p, "\x93NUMPY", 6) != 0) return nst__err(NST_ERR_FORMAT, "npy: '%s' is not a .npy array", what);
    if (p[6] == 1) { hl = nst__rd16le(p + 8); h0 = 10; }
    else if (p[6] == 2 || p[6] == 3) { if (n < 12) return nst__err(NST_ERR_FORMAT, "npy: '%s' truncated", what); hl = nst__rd32le(p + 8); h0 = 12; }
    else return nst__err(NST_ERR_UNSUPPORTED, "npy: '%s' has format version %d", what, p[6]);
    if (hl > n - h0 || hl > 65536) return nst__err(NST_ERR_FORMAT, "npy: '%s' header truncated", what);
    h = (const char *)p + h0;
    /* the header is a Python dict literal: {'descr': '<f4', 'fortran_order': False, 'shape': (64, 3, 3, 3), } */
    {
        const char *d = NULL, *f = NULL, *s = NULL;
        size_t k2;
        for (k2 = 0; k2 + 8 < hl; k2++) {
            if (!d && !memcmp(h + k2, "'descr'", 7)) d = h + k2 + 7;
            if (!f && k2 + 15 < hl && !memcmp(h + k2, "'fortran_order'", 15)) f = h + k2 + 15;
            if (!s && !memcmp(h + k2, "'shape'", 7)) s = h + k2 + 7;
        }
        if (!d || !f || !s) return nst__err(NST_ERR_FORMAT, "npy: '%s' header lacks descr/fortran_order/shape", what);
        while (d < h + hl && (*d == ':' || *d == ' ')) d++;
        if (d + 4 > h + hl || (*d != '\'' && *d != '"')) return nst__err(NST_ERR_FORMAT, "npy: '%s' bad descr", what);
        d++;
        if (d[0] == '|' && d[1] == 'O') r->object = 1;
        else {
            char bo = d[0], kind = d[1], sz = d[2];
            if (bo != '<' && bo != '>' && bo != '=' && bo != '|') return nst__err(NST_ERR_FORMAT, "npy: '%s' bad descr", what);
            r->swap = bo == '>';
            if (kind == 'f' && sz == '4') r->dtype = NST__DT_F32;
            else if (kind == 'f' && sz == '2') r->dtype = NST__DT_F16;
            else if (kind == 'f' && sz == '8') r->dtype = NST__DT_F64;
            else r->dtype = NST__DT_NONE;   /* kept: fine unless a conv tensor has it */
            if (r->dtype == NST__DT_F32 && d + 3 < h + hl && d[3] != '\'' && d[3] != '"') r->dtype = NST__DT_NONE;
        }
        while (f < h + hl && (*f == ':' || *f == ' ')) f++;
        r->fortran = f + 4 <= h + hl && !memcmp(f, "True", 4);
        while (s < h + hl && (*s == ':' || *s == ' ')) s++;
        if (s >= h + hl || *s != '(') return nst__err(NST_ERR_FORMAT, "npy: '%s' bad shape", what);
        s++;
        for (;;) {
            int64_t v = 0;
            int any = 0;
            while (s < h + hl && (*s == ' ' || *s == ',')) s++;
            if (s >= h + hl) return nst__err(NST_ERR_FORMAT, "npy: '%s' bad shape", what);
            if (*s == ')') break;
            while (s < h + hl && nst__is_digit(*s)) {
                v = v * 10 + (*s - '0');
                if (v > ((int64_t)1 << 40)) return nst__err(NST_ERR_FORMAT, "npy: '%s' dimension too large", what);
                s++; any = 1;
            }
            while (s < h + hl && *s == 'L') s++;
            if (!any || r->ndim >= 8) return nst__err(NST_ERR_FORMAT, "npy: '%s' bad shape", what);
            r->shape[r->ndim++] = v;
        }
    }
    r->data = p + h0 + hl;
    r->data_n = n - h0 - hl;
    if (!r->object) {
        uint64_t e = 1;
        int d;
        for (d = 0; d < r->ndim; d++) {
            if (r->shape[d] && e > ((uint64_t)1 << 40) / (uint64_t)r->shape[d]) return nst__err(NST_ERR_FORMAT, "npy: '%s' too large", what);
            e *= (uint64_t)r->shape[d];
        }
        if (r->dtype != NST__DT_NONE && e > r->data_n / (uint64_t)nst__dt_size(r->dtype))
            return nst__err(NST_ERR_FORMAT, "npy: '%s' has %llu elements but only %lu data bytes (truncated?)", what,
                            (unsigned long long)e, (unsigned long)r->data_n);
    }
    return NST_OK;
}

/* Fills a slot from an array (C or Fortran order). */
static void nst__src_from_array(nst__src *s, int dtype, int swap, int fortran, int ndim, const int64_t *shape,
                                const unsigned char *data, size_t data_n) {
    int d;
    s->dtype = dtype;
    s->swap = swap;
    nst__src_contiguous(s, ndim, shape);
    if (fortran) {
        int64_t st = 1;
        for (d = 0; d < ndim; d++) { s->stride[d] = st; st *= shape[d] > 0 ? shape[d] : 1; }
    }
    s->p = data;
    s->elems = dtype ? data_n / (size_t)nst__dt_size(dtype) : 0;
}

/* A float array named "input_convention": [bgr, scale, mean0..2, std0..2]. */
static nst_status nst__npy_convention(nst__collect *c, const nst__npy *a) {
    nst__src s;
    float v[8];
    int i;
    memset(&s, 0, sizeof s);
    nst__src_from_array(&s, a->dtype, a->swap, 0, a->ndim, a->shape, a->data, a->data_n);
    if (!a->dtype || s.elems < 8 || a->ndim != 1 || a->shape[0] != 8)
        return nst__err(NST_ERR_FORMAT, "npz: input_convention must hold 8 floats: bgr, scale, mean[3], std[3]");
    for (i = 0; i < 8; i++) v[i] = nst__src_elem(&s, (uint64_t)i);
    c->has_conv = 1;
    c->conv.bgr = v[0] != 0.0f;
    c->conv.scale = v[1];
    for (i = 0; i < 3; i++) { c->conv.mean[i] = v[2 + i]; c->conv.std[i] = v[5 + i]; }
    return NST_OK;
}

static nst_status nst__import_npz(const nst__zip *z, int flags, nst__tensor_list *out) {
    nst__collect c;
    nst_status st = NST_OK;
    size_t i;
    int any_npy = 0;
    memset(&c, 0, sizeof c);
    c.allow_hwio = 1;
    for (i = 0; i < z->count && st == NST_OK; i++) {
        const nst__zip_entry *e = &z->e[i];
        char key[128];
        nst__src *s;
        int kind;
        if (e->name_len < 5 || memcmp(e->name + e->name_len - 4, ".npy", 4) != 0) continue;
        any_npy = 1;
        snprintf(key, sizeof key, "%.*s", (int)(e->name_len - 4 < 120 ? e->name_len - 4 : 120), e->name);
        if (!strcmp(key, "input_convention")) {
            const unsigned char *b;
            size_t bn;
            nst__npy a;
            if ((st = nst__zip_read(z, e, &c, &b, &bn)) == NST_OK && (st = nst__npy_parse(b, bn, key, &a)) == NST_OK)
                st = nst__npy_convention(&c, &a);
            continue;
        }
        if (nst__map_key(key, &kind) == -1) { c.ignored++; continue; }   /* skipped unread: fc layers */
        if (!(s = nst__collect_slot(&c, key))) break;
        s->aux = (int)i;
        /* the shape is in the member's header: read it now (cheap for stored members; deflated ones
         * are inflated once, and only for conv layers) */
        {
            const unsigned char *b;
            size_t bn;
            nst__npy a;
            if ((st = nst__zip_read(z, e, &c, &b, &bn)) != NST_OK) break;
            if ((st = nst__npy_parse(b, bn, key, &a)) != NST_OK) break;
            if (a.object) { st = nst__err(NST_ERR_UNSUPPORTED, "npz: '%s' is an object array", key); break; }
            nst__src_from_array(s, a.dtype, a.swap, a.fortran, a.ndim, a.shape, a.data, a.data_n);
        }
    }
    if (st == NST_OK && !any_npy) st = nst__err(NST_ERR_FORMAT, "npz: zip archive with neither .npy members nor data.pkl");
    if (st == NST_OK) st = nst__collect_plan(&c, flags);
    if (st == NST_OK) st = nst__collect_finish(&c, out);
    if (st == NST_OK && c.has_conv) { out->has_conv = 1; out->conv = c.conv; }
    nst__collect_free(&c);
    return st;
}

typedef struct nst__np_ctx {
    nst__pickle *k;
    nst__collect *c;
} nst__np_ctx;

static void nst__np_visit(void *user, const char *key, int value) {
    nst__np_ctx *x = (nst__np_ctx *)user;
    const nst__pv *a = &x->k->v[value];
    nst__src *s;
    if (a->type != NST__PV_NDARRAY || a->ref != 1) { x->c->ignored++; return; }
    if (!(s = nst__collect_slot(x->c, key))) return;
    nst__src_from_array(s, a->dtype, a->swap, a->fortran, a->ndim, a->shape, a->s, a->sn);
}

/* A .npy whose dtype is object: the pickle of a dict of arrays (e.g. {"conv1_1": [W, b], ...}). */
static nst_status nst__import_npy(const unsigned char *p, size_t n, int flags, nst__tensor_list *out) {
    nst__npy a;
    nst__pickle k;
    nst__collect c;
    nst__np_ctx x;
    nst_status st;
    size_t pos = 0;
    int root;
    if ((st = nst__npy_parse(p, n, ".npy", &a)) != NST_OK) return st;
    if (!a.object)
        return nst__err(NST_ERR_FORMAT, "npy: a single array of %d dimensions, not a set of VGG-19 weights "
                        "(use an .npz with one array per tensor)", a.ndim);
    memset(&k, 0, sizeof k);
    memset(&c, 0, sizeof c);
    c.allow_hwio = 1;
    /* object arrays: the pickle of the array object; the dict is its single element */
    if ((st = nst__pickle_run(&k, a.data, a.data_n, &pos, &root)) == NST_OK) {
        x.k = &k; x.c = &c;
        if ((st = nst__pickle_walk(&k, root, nst__np_visit, &x)) == NST_OK && (st = nst__collect_plan(&c, flags)) == NST_OK)
            st = nst__collect_finish(&c, out);
    }
    nst__pickle_free(&k);
    nst__collect_free(&c);
    return st;
}

/* ===================================================================================================
 * Caffe .caffemodel: protobuf NetParameter
 *   NetParameter:     name 1, layers 2 (V1LayerParameter), layer 100 (LayerParameter)
 *   V1LayerParameter: name 4, type 5 (enum; CONVOLUTION = 4), blobs 6, layer 1 (V0: name 1, type 2, blobs 50)
 *   LayerParameter:   name 1, type 2 (string "Convolution"), blobs 7
 *   BlobProto:        num 1, channels 2, height 3, width 4, data 5 (packed float), shape 7 (dim 1),
 *                     double_data 8
 * =================================================================================================*/
typedef struct nst__pb {
    const unsigned char *p, *end;
} nst__pb;

static int nst__pb_varint(nst__pb *b, uint64_t *v) {
    uint64_t r = 0;
    int sh;
    for (sh = 0; sh < 64 && b->p < b->end; sh += 7) {
        unsigned char ch = *b->p++;
        r |= (uint64_t)(ch & 0x7F) << sh;
        if (!(ch & 0x80)) { *v = r; return 1; }
    }
    return 0;
}

/* Reads one field: number, wire type, value (varint/fixed) or sub-slice (length-delimited). */
static int nst__pb_field(nst__pb *b, uint32_t *field, int *wire, uint64_t *val, nst__pb *sub) {
    uint64_t tag, len;
    if (!nst__pb_varint(b, &tag)) return 0;
    *field = (uint32_t)(tag >> 3);
    *wire = (int)(tag & 7);
    if (*field == 0) return 0;
    switch (*wire) {
    case 0: return nst__pb_varint(b, val);
    case 1: if (b->end - b->p < 8) return 0; *val = nst__rd64le(b->p); b->p += 8; return 1;
    case 5: if (b->end - b->p < 4) return 0; *val = nst__rd32le(b->p); b->p += 4; return 1;
    case 2:
        if (!nst__pb_varint(b, &len) || len > (uint64_t)(b->end - b->p)) return 0;
        sub->p = b->p; sub->end = b->p + len; b->p += len;
        return 1;
    default: return 0;   /* groups (3, 4) are not used by caffe.proto */
    }
}

/* Parses a BlobProto into a slot. Packed data is used in place; unpacked or split data is gathered. */
static nst_status nst__caffe_blob(nst__collect *c, nst__pb blob, nst__src *s) {
    uint32_t f;
    int wire, nd = 0, legacy = 0, ndata = 0, dt = 0, d;
    uint64_t v, count = 0;
    int64_t dims[8], leg[4] = {1, 1, 1, 1};
    nst__pb sub, data;
    nst__pb scan = blob;
    data.p = data.end = NULL;
    while (scan.p < scan.end) {
        if (!nst__pb_field(&scan, &f, &wire, &v, &sub)) return nst__err(NST_ERR_FORMAT, "caffe: malformed blob in '%s'", s->origin);
        if (f >= 1 && f <= 4 && wire == 0) {
            if (v > ((uint64_t)1 << 31)) return nst__err(NST_ERR_FORMAT, "caffe: blob dimension too large in '%s'", s->origin);
            leg[f - 1] = (int64_t)v; legacy = 1;
        } else if (f == 7 && wire == 2) {
            nd = 0;
            while (sub.p < sub.end) {
                uint32_t f2; int w2; uint64_t v2; nst__pb s2;
                if (!nst__pb_field(&sub, &f2, &w2, &v2, &s2)) return nst__err(NST_ERR_FORMAT, "caffe: malformed blob shape in '%s'", s->origin);
                if (f2 != 1) continue;
                if (w2 == 0) { if (nd >= 8) return nst__err(NST_ERR_FORMAT, "caffe: too many dims"); dims[nd++] = (int64_t)v2; }
                else if (w2 == 2) {
                    while (s2.p < s2.end) {
                        if (!nst__pb_varint(&s2, &v2) || nd >= 8) return nst__err(NST_ERR_FORMAT, "caffe: bad blob shape in '%s'", s->origin);
                        dims[nd++] = (int64_t)v2;
                    }
                }
            }
            for (d = 0; d < nd; d++)
                if (dims[d] < 0 || dims[d] > ((int64_t)1 << 31)) return nst__err(NST_ERR_FORMAT, "caffe: bad blob shape in '%s'", s->origin);
        } else if ((f == 5 && (wire == 2 || wire == 5)) || (f == 8 && (wire == 2 || wire == 1))) {
            int fdt = f == 5 ? NST__DT_F32 : NST__DT_F64;
            if (dt && dt != fdt) return nst__err(NST_ERR_FORMAT, "caffe: blob '%s' mixes float and double data", s->origin);
            dt = fdt;
            ndata++;
            if (wire == 2) { count += (uint64_t)(sub.end - sub.p) / (uint64_t)nst__dt_size(fdt); data = sub; }
            else count++;
        }
    }
    if (nd == 0 && legacy) { nd = 4; memcpy(dims, leg, sizeof leg); }
    if (!dt) return nst__err(NST_ERR_FORMAT, "caffe: blob of '%s' has no data", s->origin);
    s->dtype = dt;
    nst__src_contiguous(s, nd, dims);
    if (ndata == 1 && data.p) {
        s->p = data.p;   /* packed: in place */
        s->elems = count;
    } else {
        /* unpacked (one tag per value) or split: gather into a buffer */
        unsigned char *buf;
        size_t es = (size_t)nst__dt_size(dt), at = 0;
        if (count > NST__IMPORT_MAX_MEMBER / es) return nst__err(NST_ERR_LIMIT, "caffe: blob of '%s' too large", s->origin);
        buf = (unsigned char *)nst__malloc((size_t)count * es);
        if (!buf || !nst__collect_own(c, buf)) return nst__err(NST_ERR_NOMEM, "caffe: out of memory");
        scan = blob;
        while (scan.p < scan.end) {
            nst__pb_field(&scan, &f, &wire, &v, &sub);
            if (!((f == 5 && (wire == 2 || wire == 5)) || (f == 8 && (wire == 2 || wire == 1)))) continue;
            if (wire == 2) {
                size_t nb = (size_t)(sub.end - sub.p) / es * es;
                memcpy(buf + at, sub.p, nb);
                at += nb;
            } else if (es == 4) { nst__wr32le(buf + at, (uint32_t)v); at += 4; }
            else { nst__wr64le(buf + at, v); at += 8; }
        }
        s->p = buf;
        s->elems = count;
    }
    return NST_OK;
}

static nst_status nst__import_caffe(const unsigned char *p, size_t n, int flags, nst__tensor_list *out) {
    nst__pb top;
    nst__collect c;
    nst_status st = NST_OK;
    int layers = 0, convs_seen = 0, v1 = 0, v2 = 0;
    memset(&c, 0, sizeof c);
    top.p = p; top.end = p + n;
    while (top.p < top.end && st == NST_OK) {
        uint32_t f;
        int wire;
        uint64_t v;
        nst__pb layer;
        if (!nst__pb_field(&top, &f, &wire, &v, &layer)) {
            st = nst__err(NST_ERR_FORMAT, "caffe: malformed protobuf at byte %lu (not a .caffemodel, or truncated)",
                          (unsigned long)(top.p - p));
            break;
        }
        if (!((f == 2 || f == 100) && wire == 2)) continue;
        layers++;
        if (f == 2) v1 = 1; else v2 = 1;
        {
            /* first pass: name and type (blobs are skipped in O(1)) */
            nst__pb scan = layer, sub, blobs[2];
            uint32_t lf;
            int lw, is_conv = 0, nblobs = 0, blob_field = f == 2 ? 6 : 7;
            uint64_t lv;
            char name[64];
            name[0] = 0;
            while (scan.p < scan.end) {
                if (!nst__pb_field(&scan, &lf, &lw, &lv, &sub)) { st = nst__err(NST_ERR_FORMAT, "caffe: malformed layer %d", layers); break; }
                if (lw == 2 && lf == (f == 2 ? 4u : 1u))
                    snprintf(name, sizeof name, "%.*s", (int)(sub.end - sub.p < 60 ? sub.end - sub.p : 60), (const char *)sub.p);
                else if (f == 2 && lf == 5 && lw == 0) is_conv = lv == 4;
                else if (f == 100 && lf == 2 && lw == 2) is_conv = sub.end - sub.p == 11 && !memcmp(sub.p, "Convolution", 11);
                else if (f == 2 && lf == 1 && lw == 2) {
                    /* V0 layer inside V1: name 1, type 2 ("conv"), blobs 50 */
                    nst__pb s0 = sub, s1;
                    uint32_t f0; int w0; uint64_t v0;
                    while (s0.p < s0.end && nst__pb_field(&s0, &f0, &w0, &v0, &s1)) {
                        if (f0 == 1 && w0 == 2) snprintf(name, sizeof name, "%.*s", (int)(s1.end - s1.p < 60 ? s1.end - s1.p : 60), (const char *)s1.p);
                        else if (f0 == 2 && w0 == 2) is_conv = s1.end - s1.p == 4 && !memcmp(s1.p, "conv", 4);
                        else if (f0 == 50 && w0 == 2 && nblobs < 2) blobs[nblobs++] = s1;
                    }
                } else if (lf == (uint32_t)blob_field && lw == 2 && nblobs < 2) blobs[nblobs++] = sub;
            }
            if (st != NST_OK) break;
            {
                int kind, idx;
                char key[80];
                snprintf(key, sizeof key, "%s.weight", name);
                idx = nst__map_key(key, &kind);
                if (idx == -1 && is_conv && convs_seen < NST_VGG_CONVS) {
                    /* unnamed or oddly named conv layers: the n-th convolution is VGG's n-th */
                    snprintf(name, sizeof name, "%s", nst__conv_names[convs_seen]);
                    idx = convs_seen;
                }
                if (is_conv) convs_seen++;
                if (idx == -2) { st = nst__err(NST_ERR_FORMAT, "caffe: layer '%s' is not part of VGG-19", name); break; }
                if (idx < 0 || nblobs == 0) {
                    if (nblobs) c.ignored++;   /* fc6..fc8: skipped without reading their blobs */
                    continue;
                }
                if (nblobs < 2) { st = nst__err(NST_ERR_FORMAT, "caffe: conv layer '%s' has no bias blob", name); break; }
                snprintf(key, sizeof key, "%s.weight", name);
                {
                    nst__src *sw = nst__collect_slot(&c, key), *sb;
                    if (!sw) { st = c.err ? c.err : nst__err(NST_ERR_FORMAT, "caffe: layer '%s' is not usable", name); break; }
                    if ((st = nst__caffe_blob(&c, blobs[0], sw)) != NST_OK) break;
                    snprintf(key, sizeof key, "%s.bias", name);
                    if (!(sb = nst__collect_slot(&c, key))) { st = c.err; break; }
                    if ((st = nst__caffe_blob(&c, blobs[1], sb)) != NST_OK) break;
                }
            }
        }
    }
    if (st == NST_OK && layers == 0)
        st = nst__err(NST_ERR_FORMAT, "weights: unrecognised format (not .nstw, PyTorch, Caffe or NumPy)");
    if (st == NST_OK) st = nst__collect_plan(&c, flags);
    if (st == NST_OK) st = nst__collect_finish(&c, out);
    if (st == NST_OK) snprintf(out->format, sizeof out->format, "caffe %s", v1 && v2 ? "v1+v2" : v1 ? "v1 (layers)" : "v2 (layer)");
    nst__collect_free(&c);
    return st;
}

/* ===================================================================================================
 * Detection and the entry point
 * =================================================================================================*/
static nst_status nst__import_weights_ex(const unsigned char *bytes, size_t n, int flags, nst__tensor_list *out) {
    nst_status st;
    memset(out, 0, sizeof *out);
    if (!bytes || n < 8) return nst__err(NST_ERR_FORMAT, "weights: file too short (%lu bytes)", (unsigned long)n);
    if (bytes[0] == 'P' && bytes[1] == 'K' && bytes[2] == 3 && bytes[3] == 4) {
        nst__zip z;
        size_t i;
        int torch = 0;
        if ((st = nst__zip_open(bytes, n, &z)) != NST_OK) { nst__zip_close(&z); return st; }
        for (i = 0; i < z.count; i++)
            if (z.e[i].name_len >= 8 && !memcmp(z.e[i].name + z.e[i].name_len - 8, "data.pkl", 8)) torch = 1;
        if (torch) {
            st = nst__import_torch_zip(&z, flags, out);
        } else {
            st = nst__import_npz(&z, flags, out);
            if (st == NST_OK) snprintf(out->format, sizeof out->format, "npz");
        }
        nst__zip_close(&z);
    } else if (bytes[0] == 0x80 && bytes[2] == 0x8a && bytes[3] == 0x0a) {
        st = nst__import_torch_legacy(bytes, n, flags, out);
    } else if (bytes[0] == 0x80 || (bytes[0] == 0x1f && bytes[1] == 0x8b) || (n > 262 && !memcmp(bytes + 257, "ustar", 5))) {
        return nst__err(NST_ERR_UNSUPPORTED, "weights: a pickle, gzip or tar file that is not a torch.save file "
                        "(re-save it with torch.save(model.state_dict(), path))");
    } else if (!memcmp(bytes, "\x93NUMPY", 6)) {
        st = nst__import_npy(bytes, n, flags, out);
        if (st == NST_OK) snprintf(out->format, sizeof out->format, "npy (pickled dict)");
    } else if (!memcmp(bytes, "NSTW", 4)) {
        return nst__err(NST_ERR_ARGUMENT, "weights: an .nstw file: load it with nst_model_load");
    } else {
        st = nst__import_caffe(bytes, n, flags, out);
        if (st == NST_OK) { out->has_conv = 1; out->conv = nst__caffe_convention(); }
    }
    if (st != NST_OK) nst__tensor_list_free(out);
    return st;
}

static NST__UNUSED nst_status nst__import_weights(const unsigned char *bytes, size_t n, nst__tensor_list *out) {
    return nst__import_weights_ex(bytes, n, 0, out);
}

/* ===================================================================================================
 * Public: import with options, .nstw inspection, .npy output
 * =================================================================================================*/
NSTDEF nst_status nst_model_import_memory(const void *bytes, size_t n, const nst_import_options *o,
                                          nst_model **out, nst_import_info *info) {
    const unsigned char *p = (const unsigned char *)bytes;
    nst__tensor_list l;
    nst_status st;
    int i;
    if (!out) return nst__err(NST_ERR_ARGUMENT, "import: NULL output");
    *out = NULL;
    if (info) memset(info, 0, sizeof *info);
    if (!p && n) return nst__err(NST_ERR_ARGUMENT, "import: NULL bytes");
    if (n >= 4 && memcmp(p, "NSTW", 4) == 0) {
        if ((st = nst_model_load_memory(p, n, out)) != NST_OK) return st;
        if (o && o->set_convention) {
            nst_model_free(*out);
            *out = NULL;
            return nst__err(NST_ERR_ARGUMENT, "import: an .nstw file already states its input convention");
        }
        if (info) { snprintf(info->format, sizeof info->format, "nstw"); info->convention_known = 1; }
    } else {
        if ((st = nst__import_weights_ex(p, n, o && o->all_layers ? NST__IMPORT_ALL : 0, &l)) != NST_OK) return st;
        if (info) { snprintf(info->format, sizeof info->format, "%s", l.format); info->convention_known = l.has_conv; }
        if (o && o->set_convention) {
            l.conv = o->convention;
            l.has_conv = 1;
        } else if (!l.has_conv) {
            st = nst__err(NST_ERR_ARGUMENT, "import: this %s file does not say how its input is normalised: give the "
                          "convention (nst-convert --bgr|--rgb --scale S --mean a,b,c --std a,b,c)", l.format);
            nst__tensor_list_free(&l);
            return st;
        }
        st = nst__model_from_tensors(&l, out);
        nst__tensor_list_free(&l);
        if (st != NST_OK) return st;
    }
    if (info) {
        info->convention = nst_model_convention(*out);
        info->convs = nst_model_convs(*out);
        for (i = 0; i < info->convs; i++) nst_model_conv(*out, i, NULL, NULL, &info->cin[i], &info->cout[i]);
    }
    return NST_OK;
}

#ifndef NST_NO_STDIO
NSTDEF nst_status nst_model_import(const char *path, const nst_import_options *o, nst_model **out,
                                   nst_import_info *info) {
    unsigned char *bytes;
    size_t n;
    nst_status st;
    if (!path || !out) return nst__err(NST_ERR_ARGUMENT, "import: NULL argument");
    *out = NULL;
    if ((st = nst__read_file(path, sizeof(size_t) > 4 ? ((size_t)1 << 36) : ((size_t)1 << 31), &bytes, &n)) != NST_OK)
        return st;
    st = nst_model_import_memory(bytes, n, o, out, info);
    nst__free(bytes);
    if (st != NST_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%.399s", nst_last_error());
        return nst__err(st, "'%s': %s", path, msg);
    }
    return NST_OK;
}
#endif

NSTDEF nst_status nst_nstw_inspect_memory(const void *bytes, size_t n, nst_nstw_info *info) {
    const unsigned char *p = (const unsigned char *)bytes;
    unsigned char hdr[NST__NSTW_HEADER];
    uint32_t hsize, count, i, j;
    if (!info) return nst__err(NST_ERR_ARGUMENT, "nstw: NULL info");
    memset(info, 0, sizeof *info);
    if (!p || n < NST__NSTW_HEADER || memcmp(p, "NSTW", 4) != 0)
        return nst__err(NST_ERR_FORMAT, "nstw: not an .nstw file (bad magic)");
    info->version = nst__rd32le(p + 4);
    hsize = nst__rd32le(p + 8);
    count = nst__rd32le(p + 12);
    info->flags = nst__rd32le(p + 16);
    if (info->version != 1) return nst__err(NST_ERR_UNSUPPORTED, "nstw: version %u (this library reads 1)", info->version);
    if (count == 0 || count > 64 || hsize != NST__NSTW_HEADER + NST__NSTW_ENTRY * count)
        return nst__err(NST_ERR_FORMAT, "nstw: bad tensor count %u / header size %u", count, hsize);
    if (hsize > n) return nst__err(NST_ERR_FORMAT, "nstw: truncated inside the tensor table");
    memcpy(hdr, p, sizeof hdr);
    memset(hdr + 56, 0, 4);
    info->header_ok = nst__crc32(nst__crc32(0, hdr, sizeof hdr), p + sizeof hdr, hsize - sizeof hdr) == nst__rd32le(p + 56);
    info->convention.bgr = nst__rd32le(p + 20) != 0;
    info->convention.scale = nst__f32_from_bits(nst__rd32le(p + 24));
    for (i = 0; i < 3; i++) {
        info->convention.mean[i] = nst__f32_from_bits(nst__rd32le(p + 28 + 4 * i));
        info->convention.std[i] = nst__f32_from_bits(nst__rd32le(p + 40 + 4 * i));
    }
    info->pool = nst__rd32le(p + 52) == 2 ? NST_POOL_AVG : NST_POOL_MAX;
    info->count = (int)count;
    for (i = 0; i < count; i++) {
        const unsigned char *e = p + NST__NSTW_HEADER + (size_t)i * NST__NSTW_ENTRY;
        nst_nstw_tensor *t = &info->tensor[i];
        uint32_t dt = nst__rd32le(e + 48);
        memcpy(t->name, e, 47);
        t->name[47] = 0;
        t->dtype_bits = dt == 1 ? 32 : dt == 2 ? 16 : 0;
        t->ndim = (int)nst__rd32le(e + 52);
        if (t->ndim < 0 || t->ndim > 4) t->ndim = 0;
        for (j = 0; j < (uint32_t)t->ndim; j++) t->shape[j] = (int)nst__rd32le(e + 56 + 4 * j);
        t->offset = nst__rd64le(e + 72);
        t->bytes = nst__rd64le(e + 80);
        t->in_bounds = t->offset <= n && t->bytes <= n - t->offset;
        t->checksum_ok = t->in_bounds && nst__crc32(0, p + t->offset, (size_t)t->bytes) == nst__rd32le(e + 88);
    }
    return NST_OK;
}

/* .npy bytes (format 1.0, '<f4', C order), data 64-byte aligned in the file as NumPy writes it. */
static NST__UNUSED nst_status nst__npy_encode(const float *data, int ndim, const int *shape, unsigned char **out, size_t *out_n) {
    char hdr[256];
    int len, d, pad;
    size_t elems = 1, k;
    nst__buf b;
    if (!out || !out_n || ndim < 0 || ndim > 8 || (ndim && !shape)) return nst__err(NST_ERR_ARGUMENT, "npy: bad arguments");
    *out = NULL; *out_n = 0;
    len = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (d = 0; d < ndim; d++) {
        if (shape[d] < 0 || !nst__mul_ok(elems, (size_t)shape[d], &elems)) return nst__err(NST_ERR_ARGUMENT, "npy: bad shape");
        len += snprintf(hdr + len, sizeof hdr - (size_t)len, "%d%s", shape[d], ndim == 1 ? "," : d + 1 < ndim ? ", " : "");
    }
    if (elems && !data) return nst__err(NST_ERR_ARGUMENT, "npy: NULL data");
    len += snprintf(hdr + len, sizeof hdr - (size_t)len, "), }");
    pad = 64 - (10 + len + 1) % 64;   /* header + '\n' padded so the data starts 64-byte aligned */
    if (pad == 64) pad = 0;
    memset(&b, 0, sizeof b);
    nst__buf_put(&b, "\x93NUMPY\x01\x00", 8);
    nst__buf_byte(&b, (len + pad + 1) & 0xFF);
    nst__buf_byte(&b, (len + pad + 1) >> 8);
    nst__buf_put(&b, hdr, (size_t)len);
    for (d = 0; d < pad; d++) nst__buf_byte(&b, ' ');
    nst__buf_byte(&b, '\n');
    if (elems > SIZE_MAX / 4 || !nst__buf_reserve(&b, elems * 4)) { nst__buf_free(&b); return nst__err(NST_ERR_NOMEM, "npy: out of memory"); }
    for (k = 0; k < elems; k++) nst__wr32le(b.data + b.len + 4 * k, nst__bits_from_f32(data[k]));
    b.len += elems * 4;
    if (b.failed) { nst__buf_free(&b); return nst__err(NST_ERR_NOMEM, "npy: out of memory"); }
    *out = b.data;
    *out_n = b.len;
    return NST_OK;
}

#ifndef NST_NO_STDIO
NSTDEF nst_status nst_npy_write(const char *path, const float *data, int ndim, const int *shape) {
    unsigned char *b;
    size_t n;
    nst_status st;
    if (!path) return nst__err(NST_ERR_ARGUMENT, "npy: NULL path");
    if ((st = nst__npy_encode(data, ndim, shape, &b, &n)) != NST_OK) return st;
    st = nst__write_file_atomic(path, b, n);
    nst__free(b);
    return st;
}
#endif
