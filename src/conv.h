/* ---- 3x3 convolution fast paths and 2x2 pooling --------------------------------------------------
 * Contract used by the VGG code (src/core.h):
 *   nst__conv_plan_create(w, bias, cin, cout, &plan)   packs/transforms filters once, for both directions
 *   nst__conv_workspace(plan, h, w, nthreads)        bytes of scratch forward/backward need at h x w
 *   nst__conv_forward(plan, in, out, h, w, relu, nthreads, ws)      ws: that scratch, or NULL (allocates)
 *   nst__conv_backward_data(plan, dout, din, h, w, nthreads, ws)    overwrites din
 *   nst__conv_plan_free(plan)
 *   nst__pool_forward(out, in, c, h, w, avg, nthreads)  2x2/2 pooling (floor), fast path of the ref
 *   nst__pool_backward(din, dout, in, c, h, w, avg, nthreads)  (in may be NULL for avg)
 * Layout: CHW float, batch 1. The plan borrows weight and bias (they must outlive it). A ws sized for
 * (h, w, nthreads) serves both directions; forward/backward never allocate when ws is given.
 * Results depend on the CPU path (AVX-512 or scalar) but never on the thread count: every output is
 * summed by one thread in a fixed order.
 *
 * Two algorithms, chosen per layer and direction when the plan is made (nst__conv_choose):
 *
 *   Winograd F(4x4, 3x3)  (NST__CONV_WINO) whenever the input has >= 8 channels. Each 4x4 output tile
 *     comes from a 6x6 input patch with 36 multiplies per channel pair instead of 144, so a layer costs
 *     a quarter of direct convolution's FMAs plus the transforms:
 *       V = B^T d B (input patch), U = G g G^T (filter), Y = A^T (sum_ci U . V) A.
 *     The sum over input channels is, for each of the 36 transform elements, a GEMM
 *     M[e][cout x tiles] = U[e][cout x cin] * V[e][cin x tiles] on a 6 x (16..64) register-tile
 *     micro-kernel (U broadcast, 16 tiles per vector). Tiles go in blocks of up to 64 (one thread per
 *     block; its V and M scratch stay in L2), output channels in chunks of 48 so M stays small.
 *     The input transform de-interleaves the stride-4 tile columns in registers and the output
 *     transform interleaves them back, so feature maps stay plain CHW (no blocked layout needed).
 *     Backward-data is the same engine on the flipped, channel-transposed filters. Transformed filters
 *     take 4x the weights per direction, so only layers below 256x512 filters keep them in the plan
 *     (74 MB for conv1_2 .. conv3_4, both directions); conv4_1 and the 512-channel layers transform
 *     theirs into the workspace on every call (~3 ms per 512x512 layer on one core, AVX-512),
 *     which saves ~300 MB for VGG-19 to relu5_1 (530 MB with conv5_2 .. conv5_4).
 *     Accuracy: the transforms multiply by up to 8 and divide by 24, so the error is ~10x direct
 *     summation's: measured max |err| / max |out| 1e-5 (VGG shapes) .. 7e-5 (1..33 channels); tests
 *     bound it at 2e-4 per layer and check that it does not compound over 8 chained layers.
 *
 *   Direct (NST__CONV_DIRECT) for conv1_1's forward (cin = 3): a 6 output channels x 64 pixels
 *     register tile with masked loads at the borders (no padded copy); exact up to FMA rounding.
 *
 * Each has an AVX-512 kernel (nst__cpu_arch() == NST_ARCH_AVX512) and a scalar path (NST_NO_SIMD,
 * AVX2-only and ARM CPUs; the direct scalar path is the reference kernel). Pooling has the same two. */

enum { NST__CONV_AUTO = 0, NST__CONV_DIRECT = 1, NST__CONV_WINO = 2 };
#define NST__WINO_NT 64   /* tiles per block (multiple of 16) */
#define NST__WINO_CB 48   /* output channels per chunk (multiple of 6) */

/* One direction: a 3x3 convolution from kin to kout channels. */
typedef struct nst__conv_dir {
    int algo;          /* NST__CONV_DIRECT or NST__CONV_WINO */
    int kin, kout;
    int lazy;          /* WINO only: u is NULL and the filters are transformed into the workspace per call */
    float *u;          /* WINO: [36][ceil(kout/6)][6][kin] transformed filters (blocks of 6 output
                          rows, zero-padded); DIRECT with SIMD: [ceil(kout/6)][kin][9][6]; else NULL */
} nst__conv_dir;

typedef struct nst__conv_plan {
    int cin, cout;
    const float *weight, *bias;   /* borrowed from the model; valid as long as the plan */
    nst_arch arch;                /* kernels chosen at creation */
    nst__conv_dir dir[2];         /* [0] forward (cin -> cout), [1] backward-data (cout -> cin) */
} nst__conv_plan;

/* Filter tap t (0..8, row-major) from input channel i to output channel o in direction d:
 * backward-data reads the forward filter flipped and with its channels swapped. */
static float nst__conv_tap(const nst__conv_plan *p, int d, int o, int i, int t) {
    if (d == 0) return p->weight[((size_t)o * p->cin + i) * 9 + t];
    return p->weight[((size_t)i * p->cin + o) * 9 + (8 - t)];
}

/* Auto choice, from bench_conv on Zen 4: Winograd wins wherever the input has >= 8 channels, even with
 * 3 outputs (conv1_1's backward: the input transform dominates, and direct convolution there streams 64
 * planes per output row); with 3 inputs (conv1_1 forward) they tie, and direct is exact. */
static int nst__conv_choose(int kin, int kout) { (void)kout; return kin >= 8 ? NST__CONV_WINO : NST__CONV_DIRECT; }

/* Layers with at least this many filters (cin * cout: conv4_1 and the 512-channel layers) keep no
 * transformed filters: each call transforms them into the workspace (a few ms on 2 threads for
 * 512x512, ~5% of those layers' time at 512 px), which saves 8x their weight size, e.g. 300 MB for
 * VGG-19 to relu5_1. Smaller layers keep theirs (74 MB for conv1_1 .. conv3_4, both directions). */
#define NST__WINO_LAZY (256 * 512)

/* U = G g G^T for the 6 output channels of row block ob, every input channel, into
 * u[36][nob][6][kin] (rows past kout are zero). G is the filter transform of F(4x4, 3x3) with
 * points 0, 1, -1, 2, -2, infinity: rows (1/4,0,0), -(1,1,1)/6, -(1,-1,1)/6, (1/24,1/12,1/6),
 * (1/24,-1/12,1/6), (0,0,1), applied here in factored form. */
#define NST__WINO_G(a, b, c, t0, t1, t2, t3, t4, t5) do {                                  \
    float s_ = (a) + (c), q_ = (a) * (1.0f / 24) + (c) * (1.0f / 6), h_ = (b) * (1.0f / 12); \
    t0 = (a) * 0.25f; t1 = -(s_ + (b)) * (1.0f / 6); t2 = -(s_ - (b)) * (1.0f / 6);         \
    t3 = q_ + h_; t4 = q_ - h_; t5 = (c); } while (0)
static void nst__wino_filters(const nst__conv_plan *p, int d, float *u, int ob) {
    const nst__conv_dir *dd = &p->dir[d];
    int kin = dd->kin, kout = dd->kout, nob = (kout + 5) / 6, i, e, r;
    size_t es = (size_t)nob * 6 * kin;
    for (r = 0; r < 6; r++) {
        int o = ob * 6 + r;
        float *base = u + ((size_t)ob * 6 + r) * kin;   /* + e * es + i */
        for (i = 0; i < kin; i++) {
            float g[9], t[6][3], v[36];
            int k, c;
            if (o >= kout) {
                for (e = 0; e < 36; e++) base[e * es + i] = 0.0f;
                continue;
            }
            if (d == 0) memcpy(g, p->weight + ((size_t)o * p->cin + i) * 9, sizeof g);
            else {
                const float *w = p->weight + ((size_t)i * p->cin + o) * 9;
                for (k = 0; k < 9; k++) g[k] = w[8 - k];
            }
            for (c = 0; c < 3; c++) NST__WINO_G(g[c], g[3 + c], g[6 + c], t[0][c], t[1][c], t[2][c], t[3][c], t[4][c], t[5][c]);
            for (k = 0; k < 6; k++)
                NST__WINO_G(t[k][0], t[k][1], t[k][2], v[k * 6], v[k * 6 + 1], v[k * 6 + 2], v[k * 6 + 3], v[k * 6 + 4],
                            v[k * 6 + 5]);
            for (e = 0; e < 36; e++) base[e * es + i] = v[e];
        }
    }
}

#if defined(NST__X86_AVX512)
/* The same transform, 16 input channels per vector (gathered taps), stored straight into the
 * [6][kin] rows. Same operations as the scalar version, so the same values unless the compiler
 * contracts the scalar one into FMAs. */
static NST__TARGET_AVX512 void nst__wino_filters_avx512(const nst__conv_plan *p, int d, float *u, int ob) {
    const nst__conv_dir *dd = &p->dir[d];
    int kin = dd->kin, kout = dd->kout, nob = (kout + 5) / 6, i0, r;
    size_t es = (size_t)nob * 6 * kin;
    const __m512 c4 = _mm512_set1_ps(0.25f), c6 = _mm512_set1_ps(1.0f / 6), c12 = _mm512_set1_ps(1.0f / 12);
    const __m512 c24 = _mm512_set1_ps(1.0f / 24), neg = _mm512_set1_ps(-0.0f);
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i idx = _mm512_mullo_epi32(lane, _mm512_set1_epi32(d == 0 ? 9 : 9 * p->cin));
    for (r = 0; r < 6; r++) {
        int o = ob * 6 + r;
        float *base = u + ((size_t)ob * 6 + r) * kin;
        for (i0 = 0; i0 < kin; i0 += 16) {
            int n = NST__MIN(16, kin - i0), k, c;
            __mmask16 mk = (__mmask16)(n >= 16 ? 0xFFFF : (1u << n) - 1);
            __m512 g[9], t[6][3];
            if (o >= kout) {
                for (k = 0; k < 36; k++) _mm512_mask_storeu_ps(base + k * es + i0, mk, _mm512_setzero_ps());
                continue;
            }
            for (k = 0; k < 9; k++) {
                const float *src = d == 0 ? p->weight + ((size_t)o * p->cin + i0) * 9 + k
                                          : p->weight + ((size_t)i0 * p->cin + o) * 9 + (8 - k);
                g[k] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mk, idx, src, 4);
            }
#define NST__WINO_GV(a, b, cc, t0, t1, t2, t3, t4, t5) do {                                          \
    __m512 s_ = _mm512_add_ps(a, cc), q_ = _mm512_add_ps(_mm512_mul_ps(a, c24), _mm512_mul_ps(cc, c6)); \
    __m512 h_ = _mm512_mul_ps(b, c12);                                                                 \
    t0 = _mm512_mul_ps(a, c4);                                                                         \
    t1 = _mm512_mul_ps(_mm512_xor_ps(_mm512_add_ps(s_, b), neg), c6);                                  \
    t2 = _mm512_mul_ps(_mm512_xor_ps(_mm512_sub_ps(s_, b), neg), c6);                                  \
    t3 = _mm512_add_ps(q_, h_); t4 = _mm512_sub_ps(q_, h_); t5 = cc; } while (0)
            for (c = 0; c < 3; c++) NST__WINO_GV(g[c], g[3 + c], g[6 + c], t[0][c], t[1][c], t[2][c], t[3][c], t[4][c], t[5][c]);
            for (k = 0; k < 6; k++) {
                __m512 w0, w1, w2, w3, w4, w5;
                float *dst = base + (size_t)(k * 6) * es + i0;
                NST__WINO_GV(t[k][0], t[k][1], t[k][2], w0, w1, w2, w3, w4, w5);
                _mm512_mask_storeu_ps(dst, mk, w0); _mm512_mask_storeu_ps(dst + es, mk, w1);
                _mm512_mask_storeu_ps(dst + 2 * es, mk, w2); _mm512_mask_storeu_ps(dst + 3 * es, mk, w3);
                _mm512_mask_storeu_ps(dst + 4 * es, mk, w4); _mm512_mask_storeu_ps(dst + 5 * es, mk, w5);
            }
#undef NST__WINO_GV
        }
    }
}
#endif

static nst_status nst__conv_dir_init(nst__conv_plan *p, int d, int algo) {
    nst__conv_dir *dd = &p->dir[d];
    int kin = d == 0 ? p->cin : p->cout, kout = d == 0 ? p->cout : p->cin;
    int nob = (kout + 5) / 6, o, i, t;
    size_t n;
    dd->kin = kin; dd->kout = kout;
    dd->algo = algo == NST__CONV_AUTO ? nst__conv_choose(kin, kout) : algo;
    dd->u = NULL;
    if (dd->algo == NST__CONV_WINO) {
        dd->lazy = (size_t)kin * kout >= NST__WINO_LAZY;
        if (dd->lazy) return NST_OK;
        if (!nst__mul_ok((size_t)36 * nob * 6, (size_t)kin, &n) || !nst__mul_ok(n, sizeof(float), &n))
            return nst__err(NST_ERR_NOMEM, "conv: %dx%d filters are too large", kin, kout);
        dd->u = (float *)nst__aligned_alloc(n);
        if (!dd->u) return nst__err(NST_ERR_NOMEM, "conv: out of memory for transformed filters");
        for (o = 0; o < nob; o++) nst__wino_filters(p, d, dd->u, o);
    } else if (p->arch == NST_ARCH_AVX512) {
        if (!nst__mul_ok((size_t)nob * 6 * 9, (size_t)kin, &n) || !nst__mul_ok(n, sizeof(float), &n))
            return nst__err(NST_ERR_NOMEM, "conv: %dx%d filters are too large", kin, kout);
        dd->u = (float *)nst__aligned_alloc(n);
        if (!dd->u) return nst__err(NST_ERR_NOMEM, "conv: out of memory for packed filters");
        memset(dd->u, 0, n);
        for (o = 0; o < kout; o++)
            for (i = 0; i < kin; i++)
                for (t = 0; t < 9; t++)
                    dd->u[(((size_t)(o / 6) * kin + i) * 9 + t) * 6 + o % 6] = nst__conv_tap(p, d, o, i, t);
    }
    return NST_OK;
}

static void nst__conv_plan_free(nst__conv_plan *p) {
    if (!p) return;
    nst__aligned_free(p->dir[0].u);
    nst__aligned_free(p->dir[1].u);
    nst__free(p);
}

/* algo: NST__CONV_AUTO, or one algorithm forced for both directions (tests, benches). */
static nst_status nst__conv_plan_create_ex(const float *weight, const float *bias, int cin, int cout, int algo,
                                           nst_arch arch, nst__conv_plan **out) {
    nst__conv_plan *p;
    nst_status st;
    *out = NULL;
    if (!weight || cin <= 0 || cout <= 0) return nst__err(NST_ERR_ARGUMENT, "conv: bad plan arguments");
    p = (nst__conv_plan *)nst__calloc(1, sizeof *p);
    if (!p) return nst__err(NST_ERR_NOMEM, "conv: out of memory");
    p->cin = cin; p->cout = cout; p->weight = weight; p->bias = bias;
    p->arch = arch == NST_ARCH_AVX512 ? NST_ARCH_AVX512 : NST_ARCH_SCALAR;
#if !defined(NST__X86_AVX512)
    p->arch = NST_ARCH_SCALAR;
#endif
    if ((st = nst__conv_dir_init(p, 0, algo)) != NST_OK || (st = nst__conv_dir_init(p, 1, algo)) != NST_OK) {
        nst__conv_plan_free(p);
        return st;
    }
    *out = p;
    return NST_OK;
}
static nst_status nst__conv_plan_create(const float *weight, const float *bias, int cin, int cout,
                                        nst__conv_plan **out) {
    return nst__conv_plan_create_ex(weight, bias, cin, cout, NST__CONV_AUTO, nst__cpu_arch(), out);
}

/* ---- Winograd F(4x4, 3x3) ------------------------------------------------------------------------
 * Tiles are numbered row-major over the (ceil(h/4) x ceil(w/4)) grid. A block is a run of nt consecutive
 * tiles; it may span several tile rows ("segments"). Per-thread scratch, in floats:
 *   V [36][kin][NT]   transformed input patches of the block (column = tile within the block)
 *   M [36][CB][NT]+16 transform-domain outputs of one chunk of output channels
 *   R [6][4*NT+80]    six zero-padded input rows of one segment */
static int nst__wino_nt(int tiles, int nthreads) {
    int per = (tiles + nthreads - 1) / nthreads;
    per = (per + 15) / 16 * 16;
    return per < NST__WINO_NT ? per : NST__WINO_NT;
}
static size_t nst__wino_thread_floats(int kin, int nt) {
    size_t v = (size_t)36 * kin * nt, m = (size_t)36 * NST__WINO_CB * nt + 16, r = (size_t)6 * (4 * nt + 80);
    /* each region rounded to 16 floats so all start 64-byte aligned */
    return (v + 15) / 16 * 16 + (m + 15) / 16 * 16 + (r + 15) / 16 * 16;
}

/* Row r (0..5) of a segment: in[y0 + r][x0 - 1 + i] for i < n, zero outside the image. */
static void nst__wino_rows(float *rows, size_t rstride, const float *src, int h, int w, int y0, int xs, int n) {
    int r;
    for (r = 0; r < 6; r++) {
        float *b = rows + r * rstride;
        int y = y0 + r, a = xs < 0 ? -xs : 0, e = w - xs < n ? w - xs : n;
        if (y < 0 || y >= h || e <= a) { memset(b, 0, sizeof(float) * (size_t)n); continue; }
        if (a > 0) memset(b, 0, sizeof(float) * (size_t)a);
        memcpy(b + a, src + (size_t)y * w + xs + a, sizeof(float) * (size_t)(e - a));
        if (e < n) memset(b + e, 0, sizeof(float) * (size_t)(n - e));
    }
}

/* B^T z for one 6-vector, the 1-D input transform. Shared by the scalar path (macro over floats). */
#define NST__WINO_BT(z0, z1, z2, z3, z4, z5, t0, t1, t2, t3, t4, t5) do { \
    t0 = 4 * (z0) - 5 * (z2) + (z4);                                     \
    t1 = -4 * ((z1) + (z2)) + (z3) + (z4);                               \
    t2 = 4 * ((z1) - (z2)) - (z3) + (z4);                                \
    t3 = 2 * ((z3) - (z1)) - (z2) + (z4);                                \
    t4 = 2 * ((z1) - (z3)) - (z2) + (z4);                                \
    t5 = 4 * (z1) - 5 * (z3) + (z5); } while (0)
/* A^T m, the 1-D output transform. */
#define NST__WINO_AT(m0, m1, m2, m3, m4, m5, y0, y1, y2, y3) do {        \
    y0 = (m0) + ((m1) + (m2)) + ((m3) + (m4));                           \
    y1 = ((m1) - (m2)) + 2 * ((m3) - (m4));                              \
    y2 = ((m1) + (m2)) + 4 * ((m3) + (m4));                              \
    y3 = ((m1) - (m2)) + 8 * ((m3) - (m4)) + (m5); } while (0)

/* Scalar input transform of `len` tiles of one segment into V columns jb.. (row stride nt). */
static void nst__wino_in_scalar(float *v, size_t estride, const float *rows, size_t rstride, int len) {
    int j, r, c;
    for (j = 0; j < len; j++) {
        float t[6][6], d[6];
        for (r = 0; r < 6; r++) {
            const float *z = rows + r * rstride + 4 * j;
            NST__WINO_BT(z[0], z[1], z[2], z[3], z[4], z[5], t[r][0], t[r][1], t[r][2], t[r][3], t[r][4], t[r][5]);
        }
        for (c = 0; c < 6; c++) {
            NST__WINO_BT(t[0][c], t[1][c], t[2][c], t[3][c], t[4][c], t[5][c], d[0], d[1], d[2], d[3], d[4], d[5]);
            for (r = 0; r < 6; r++) v[(size_t)(r * 6 + c) * estride + j] = d[r];
        }
    }
}

/* Scalar transform-domain GEMM: m[r][0..16*nv) = sum_k u[r][k] * v[k][..], r < 6 (u rows kk apart). */
static void nst__wino_gemm_scalar(int nv, int kk, const float *u, const float *v, size_t ldv, float *m, size_t ldm) {
    int r, k, j, n = 16 * nv;
    for (r = 0; r < 6; r++) {
        float acc[64];
        for (j = 0; j < n; j++) acc[j] = 0.0f;
        for (k = 0; k < kk; k++) {
            float a = u[(size_t)r * kk + k];
            const float *vr = v + (size_t)k * ldv;
            for (j = 0; j < n; j++) acc[j] += a * vr[j];
        }
        for (j = 0; j < n; j++) m[(size_t)r * ldm + j] = acc[j];
    }
}

/* Scalar output transform of `len` tiles of channel row m (element stride estride) to out tiles. */
static void nst__wino_out_scalar(float *out, int h, int w, int ty, int tx, int len, const float *m, size_t estride,
                                 float bias, int relu) {
    int j, r, c;
    for (j = 0; j < len; j++) {
        float t[4][6], y[4][4];
        for (c = 0; c < 6; c++) {
            const float *q = m + j + (size_t)c * estride;
            NST__WINO_AT(q[0], q[6 * estride], q[12 * estride], q[18 * estride], q[24 * estride], q[30 * estride],
                         t[0][c], t[1][c], t[2][c], t[3][c]);
        }
        for (r = 0; r < 4; r++) NST__WINO_AT(t[r][0], t[r][1], t[r][2], t[r][3], t[r][4], t[r][5], y[r][0], y[r][1], y[r][2], y[r][3]);
        for (r = 0; r < 4; r++) {
            int yy = 4 * ty + r;
            if (yy >= h) break;
            for (c = 0; c < 4; c++) {
                int xx = 4 * (tx + j) + c;
                float s = y[r][c] + bias;
                if (xx >= w) break;
                out[(size_t)yy * w + xx] = relu && !(s > 0.0f) ? 0.0f : s;
            }
        }
    }
}

#if defined(NST__X86_AVX512)
/* AVX-512: 16 tiles per vector. Tiles sit 4 floats apart in a row, so the input transform
 * de-interleaves with stride 4 (two vpermt2ps and a blend per column) and the output transform
 * interleaves back (eight vpermt2ps per row of 16 tiles). */
static NST__TARGET_AVX512 __m512 nst__wino_deint4(__m512 a0, __m512 a1, __m512 a2, __m512 a3, __m512i idx) {
    return _mm512_mask_blend_ps(0xFF00, _mm512_permutex2var_ps(a0, idx, a1), _mm512_permutex2var_ps(a2, idx, a3));
}
static NST__TARGET_AVX512 void nst__wino_in_avx512(float *v, size_t estride, const float *rows, size_t rstride,
                                                   int len) {
    const __m512i i0 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
    const __m512i i1 = _mm512_add_epi32(i0, _mm512_set1_epi32(1));
    const __m512i i2 = _mm512_add_epi32(i0, _mm512_set1_epi32(2));
    const __m512i i3 = _mm512_add_epi32(i0, _mm512_set1_epi32(3));
    const __m512 c2 = _mm512_set1_ps(2), c4 = _mm512_set1_ps(4), c5 = _mm512_set1_ps(5);
    int g;
    for (g = 0; 16 * g < len; g++) {
        __m512 t[6][6];
        int r, c, n = len - 16 * g;
        __mmask16 mk = (__mmask16)(n >= 16 ? 0xFFFF : (1u << n) - 1);
        for (r = 0; r < 6; r++) {
            const float *b = rows + r * rstride + 64 * g;
            __m512 a0 = _mm512_loadu_ps(b), a1 = _mm512_loadu_ps(b + 16), a2 = _mm512_loadu_ps(b + 32),
                   a3 = _mm512_loadu_ps(b + 48);
            __m512 e0 = _mm512_loadu_ps(b + 2), e1 = _mm512_loadu_ps(b + 18), e2 = _mm512_loadu_ps(b + 34),
                   e3 = _mm512_loadu_ps(b + 50);
            __m512 z0 = nst__wino_deint4(a0, a1, a2, a3, i0), z1 = nst__wino_deint4(a0, a1, a2, a3, i1);
            __m512 z2 = nst__wino_deint4(a0, a1, a2, a3, i2), z3 = nst__wino_deint4(a0, a1, a2, a3, i3);
            __m512 z4 = nst__wino_deint4(e0, e1, e2, e3, i2), z5 = nst__wino_deint4(e0, e1, e2, e3, i3);
            __m512 s12 = _mm512_add_ps(z1, z2), d12 = _mm512_sub_ps(z1, z2), s34 = _mm512_add_ps(z3, z4);
            __m512 d31 = _mm512_sub_ps(z3, z1), z4mz2 = _mm512_sub_ps(z4, z2);
            t[r][0] = _mm512_add_ps(_mm512_fmsub_ps(c4, z0, _mm512_mul_ps(c5, z2)), z4);
            t[r][1] = _mm512_fnmadd_ps(c4, s12, s34);
            t[r][2] = _mm512_fmadd_ps(c4, d12, _mm512_sub_ps(z4, z3));
            t[r][3] = _mm512_fmadd_ps(c2, d31, z4mz2);
            t[r][4] = _mm512_fnmadd_ps(c2, d31, z4mz2);
            t[r][5] = _mm512_add_ps(_mm512_fmsub_ps(c4, z1, _mm512_mul_ps(c5, z3)), z5);
        }
        for (c = 0; c < 6; c++) {
            __m512 z0 = t[0][c], z1 = t[1][c], z2 = t[2][c], z3 = t[3][c], z4 = t[4][c], z5 = t[5][c];
            __m512 s12 = _mm512_add_ps(z1, z2), d12 = _mm512_sub_ps(z1, z2), s34 = _mm512_add_ps(z3, z4);
            __m512 d31 = _mm512_sub_ps(z3, z1), z4mz2 = _mm512_sub_ps(z4, z2);
            float *o = v + 16 * g + (size_t)c * estride;
            _mm512_mask_storeu_ps(o, mk, _mm512_add_ps(_mm512_fmsub_ps(c4, z0, _mm512_mul_ps(c5, z2)), z4));
            _mm512_mask_storeu_ps(o + 6 * estride, mk, _mm512_fnmadd_ps(c4, s12, s34));
            _mm512_mask_storeu_ps(o + 12 * estride, mk, _mm512_fmadd_ps(c4, d12, _mm512_sub_ps(z4, z3)));
            _mm512_mask_storeu_ps(o + 18 * estride, mk, _mm512_fmadd_ps(c2, d31, z4mz2));
            _mm512_mask_storeu_ps(o + 24 * estride, mk, _mm512_fnmadd_ps(c2, d31, z4mz2));
            _mm512_mask_storeu_ps(o + 30 * estride, mk, _mm512_add_ps(_mm512_fmsub_ps(c4, z1, _mm512_mul_ps(c5, z3)), z5));
        }
    }
}

/* 6 x (16*NV) register tile: m[r][..] = sum_k u[r][k] * v[k][..] (u rows kk apart). */
#define NST__WK_ROW(NV, r)                                                  \
    { __m512 a = _mm512_set1_ps(u##r[k]);                               \
      c##r##0 = _mm512_fmadd_ps(a, b0, c##r##0);                        \
      if (NV > 1) c##r##1 = _mm512_fmadd_ps(a, b1, c##r##1);            \
      if (NV > 2) c##r##2 = _mm512_fmadd_ps(a, b2, c##r##2);            \
      if (NV > 3) c##r##3 = _mm512_fmadd_ps(a, b3, c##r##3); }
#define NST__WK_ST(NV, r)                                                   \
    { float *q = m + r * ldm;                                           \
      _mm512_storeu_ps(q, c##r##0);                                     \
      if (NV > 1) _mm512_storeu_ps(q + 16, c##r##1);                    \
      if (NV > 2) _mm512_storeu_ps(q + 32, c##r##2);                    \
      if (NV > 3) _mm512_storeu_ps(q + 48, c##r##3); }
#define NST__WK_DEF(NV)                                                                                  \
static NST__TARGET_AVX512 void nst__wino_gemm##NV##_avx512(int kk, const float *u, const float *v, size_t ldv, \
                                                          float *m, size_t ldm) {                        \
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00,  \
           c13 = c00, c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00,       \
           c33 = c00, c40 = c00, c41 = c00, c42 = c00, c43 = c00, c50 = c00, c51 = c00, c52 = c00,       \
           c53 = c00;                                                                                    \
    const float *u0 = u, *u1 = u + kk, *u2 = u1 + kk, *u3 = u2 + kk, *u4 = u3 + kk, *u5 = u4 + kk;     \
    int k;                                                                                               \
    for (k = 0; k < kk; k++, v += ldv) {                                                                 \
        __m512 b0 = _mm512_loadu_ps(v), b1 = b0, b2 = b0, b3 = b0;                                       \
        if (NV > 1) b1 = _mm512_loadu_ps(v + 16);                                                        \
        if (NV > 2) b2 = _mm512_loadu_ps(v + 32);                                                        \
        if (NV > 3) b3 = _mm512_loadu_ps(v + 48);                                                        \
        NST__WK_ROW(NV, 0) NST__WK_ROW(NV, 1) NST__WK_ROW(NV, 2) NST__WK_ROW(NV, 3) NST__WK_ROW(NV, 4) NST__WK_ROW(NV, 5)       \
    }                                                                                                    \
    NST__WK_ST(NV, 0) NST__WK_ST(NV, 1) NST__WK_ST(NV, 2) NST__WK_ST(NV, 3) NST__WK_ST(NV, 4) NST__WK_ST(NV, 5)                 \
}
NST__WK_DEF(1)
NST__WK_DEF(2)
NST__WK_DEF(3)
NST__WK_DEF(4)
#undef NST__WK_DEF
#undef NST__WK_ROW
#undef NST__WK_ST
static NST__TARGET_AVX512 void nst__wino_gemm_avx512(int nv, int kk, const float *u, const float *v, size_t ldv,
                                                     float *m, size_t ldm) {
    switch (nv) {
    case 1: nst__wino_gemm1_avx512(kk, u, v, ldv, m, ldm); break;
    case 2: nst__wino_gemm2_avx512(kk, u, v, ldv, m, ldm); break;
    case 3: nst__wino_gemm3_avx512(kk, u, v, ldv, m, ldm); break;
    default: nst__wino_gemm4_avx512(kk, u, v, ldv, m, ldm); break;
    }
}

static NST__TARGET_AVX512 void nst__wino_out_avx512(float *out, int h, int w, int ty, int tx, int len,
                                                    const float *m, size_t estride, float bias, int relu) {
    const __m512i p_lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i p_hi = _mm512_add_epi32(p_lo, _mm512_set1_epi32(8));
    const __m512i q_a = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
    const __m512i q_b = _mm512_add_epi32(q_a, _mm512_set1_epi32(8));
    const __m512 c2 = _mm512_set1_ps(2), c4 = _mm512_set1_ps(4), c8 = _mm512_set1_ps(8);
    const __m512 vb = _mm512_set1_ps(bias), zero = _mm512_setzero_ps();
    int g;
    for (g = 0; 16 * g < len; g++) {
        __m512 t[4][6];
        int r, c, xb = 4 * (tx + 16 * g);
        int n = 4 * (len - 16 * g);
        if (n > 64) n = 64;
        if (n > w - xb) n = w - xb;
        for (c = 0; c < 6; c++) {
            const float *q = m + 16 * g + (size_t)c * estride;
            __m512 m0 = _mm512_loadu_ps(q), m1 = _mm512_loadu_ps(q + 6 * estride),
                   m2 = _mm512_loadu_ps(q + 12 * estride), m3 = _mm512_loadu_ps(q + 18 * estride),
                   m4 = _mm512_loadu_ps(q + 24 * estride), m5 = _mm512_loadu_ps(q + 30 * estride);
            __m512 s12 = _mm512_add_ps(m1, m2), d12 = _mm512_sub_ps(m1, m2);
            __m512 s34 = _mm512_add_ps(m3, m4), d34 = _mm512_sub_ps(m3, m4);
            t[0][c] = _mm512_add_ps(_mm512_add_ps(m0, s12), s34);
            t[1][c] = _mm512_fmadd_ps(c2, d34, d12);
            t[2][c] = _mm512_fmadd_ps(c4, s34, s12);
            t[3][c] = _mm512_add_ps(_mm512_fmadd_ps(c8, d34, d12), m5);
        }
        for (r = 0; r < 4 && 4 * ty + r < h; r++) {
            __m512 m0 = t[r][0], m1 = t[r][1], m2 = t[r][2], m3 = t[r][3], m4 = t[r][4], m5 = t[r][5];
            __m512 s12 = _mm512_add_ps(m1, m2), d12 = _mm512_sub_ps(m1, m2);
            __m512 s34 = _mm512_add_ps(m3, m4), d34 = _mm512_sub_ps(m3, m4);
            __m512 y0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(m0, s12), s34), vb);
            __m512 y1 = _mm512_add_ps(_mm512_fmadd_ps(c2, d34, d12), vb);
            __m512 y2 = _mm512_add_ps(_mm512_fmadd_ps(c4, s34, s12), vb);
            __m512 y3 = _mm512_add_ps(_mm512_add_ps(_mm512_fmadd_ps(c8, d34, d12), m5), vb);
            __m512 l01, h01, l23, h23;
            float *o = out + (size_t)(4 * ty + r) * w + xb;
            int qq;
            if (relu) {
                y0 = _mm512_maskz_max_ps(0xFFFF, y0, zero); y1 = _mm512_maskz_max_ps(0xFFFF, y1, zero);
                y2 = _mm512_maskz_max_ps(0xFFFF, y2, zero); y3 = _mm512_maskz_max_ps(0xFFFF, y3, zero);
            }
            l01 = _mm512_permutex2var_ps(y0, p_lo, y1); h01 = _mm512_permutex2var_ps(y0, p_hi, y1);
            l23 = _mm512_permutex2var_ps(y2, p_lo, y3); h23 = _mm512_permutex2var_ps(y2, p_hi, y3);
            for (qq = 0; qq < 4; qq++) {
                int cnt = n - 16 * qq;
                __m512 val;
                if (cnt <= 0) break;
                val = qq == 0 ? _mm512_permutex2var_ps(l01, q_a, l23)
                    : qq == 1 ? _mm512_permutex2var_ps(l01, q_b, l23)
                    : qq == 2 ? _mm512_permutex2var_ps(h01, q_a, h23)
                              : _mm512_permutex2var_ps(h01, q_b, h23);
                if (cnt >= 16) _mm512_storeu_ps(o + 16 * qq, val);
                else _mm512_mask_storeu_ps(o + 16 * qq, (__mmask16)((1u << cnt) - 1), val);
            }
        }
    }
}
#endif

/* One block of nt tiles starting at tile t0, all output channels. */
static void nst__wino_block(const nst__conv_dir *dd, int simd, const float *in, float *out, int h, int w,
                            const float *bias, int relu, int t0, int nt, int ntcap, float *ws) {
    int kin = dd->kin, kout = dd->kout, tw = (w + 3) / 4, nob = (kout + 5) / 6;
    int nv = (nt + 15) / 16, ci, c0, e, t;
    size_t hw = (size_t)h * w, est = (size_t)kin * ntcap, rstride = (size_t)4 * ntcap + 80;
    float *V = ws, *M = V + ((size_t)36 * kin * ntcap + 15) / 16 * 16;
    float *R = M + ((size_t)36 * NST__WINO_CB * ntcap + 16 + 15) / 16 * 16;
    (void)simd;
    /* input transform, segment by segment (a segment = the block's tiles within one tile row) */
    for (t = t0; t < t0 + nt;) {
        int ty = t / tw, tx = t % tw, len = NST__MIN(tw - tx, t0 + nt - t), jb = t - t0;
        int nrow = simd ? 64 * ((len + 15) / 16) + 66 : 4 * len + 2;
        for (ci = 0; ci < kin; ci++) {
            nst__wino_rows(R, rstride, in + ci * hw, h, w, 4 * ty - 1, 4 * tx - 1, nrow);
#if defined(NST__X86_AVX512)
            if (simd) nst__wino_in_avx512(V + (size_t)ci * ntcap + jb, est, R, rstride, len);
            else
#endif
                nst__wino_in_scalar(V + (size_t)ci * ntcap + jb, est, R, rstride, len);
        }
        t += len;
    }
    if (nt < 16 * nv)   /* the GEMM runs whole vectors: keep the unused columns finite */
        for (e = 0; e < 36 * kin; e++) memset(V + (size_t)e * ntcap + nt, 0, sizeof(float) * (size_t)(16 * nv - nt));
    for (c0 = 0; c0 < kout; c0 += NST__WINO_CB) {
        int cb = NST__MIN(NST__WINO_CB, kout - c0), co;
        size_t mest = (size_t)NST__WINO_CB * ntcap;
        for (e = 0; e < 36; e++) {
            int ob;
            for (ob = 0; ob * 6 < cb; ob++) {
                const float *u = dd->u + (((size_t)e * nob + c0 / 6 + ob) * 6) * kin;
                float *m = M + (size_t)e * mest + (size_t)ob * 6 * ntcap;
#if defined(NST__X86_AVX512)
                if (simd) nst__wino_gemm_avx512(nv, kin, u, V + (size_t)e * est, ntcap, m, ntcap);
                else
#endif
                    nst__wino_gemm_scalar(nv, kin, u, V + (size_t)e * est, ntcap, m, ntcap);
            }
        }
        for (co = c0; co < c0 + cb; co++) {
            float b = bias ? bias[co] : 0.0f;
            const float *mrow = M + (size_t)(co - c0) * ntcap;
            for (t = t0; t < t0 + nt;) {
                int ty = t / tw, tx = t % tw, len = NST__MIN(tw - tx, t0 + nt - t), jb = t - t0;
#if defined(NST__X86_AVX512)
                if (simd) nst__wino_out_avx512(out + co * hw, h, w, ty, tx, len, mrow + jb, mest, b, relu);
                else
#endif
                    nst__wino_out_scalar(out + co * hw, h, w, ty, tx, len, mrow + jb, mest, b, relu);
                t += len;
            }
        }
    }
}

/* Blocks are handed out dynamically (a descheduled thread on a busy machine does not stall the others);
 * the result does not depend on which thread runs a block, so it stays deterministic. */
static void nst__wino_run(const nst__conv_dir *dd, int simd, const float *in, float *out, int h, int w,
                          const float *bias, int relu, int nthreads, float *ws) {
    int tiles = ((h + 3) / 4) * ((w + 3) / 4), nt = nst__wino_nt(tiles, nthreads);
    int nblocks = (tiles + nt - 1) / nt, b;
    size_t per = nst__wino_thread_floats(dd->kin, nt);
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
#endif
    for (b = 0; b < nblocks; b++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        nst__wino_block(dd, simd, in, out, h, w, bias, relu, b * nt, NST__MIN(nt, tiles - b * nt), nt,
                        ws + (size_t)tid * per);
    }
}

/* ---- direct convolution (thin layers) ------------------------------------------------------------*/
#if defined(NST__X86_AVX512)
/* out[o][y][x0..x0+64) for 6 output channels, masked at the image borders; 24 accumulators. */
#define NST__DK_ROW(r)                                                  \
    { __m512 a = _mm512_set1_ps(wt[r]);                                 \
      c##r##0 = _mm512_fmadd_ps(a, b0, c##r##0);                        \
      c##r##1 = _mm512_fmadd_ps(a, b1, c##r##1);                        \
      c##r##2 = _mm512_fmadd_ps(a, b2, c##r##2);                        \
      c##r##3 = _mm512_fmadd_ps(a, b3, c##r##3); }
#define NST__DK_ST(r)                                                   \
    if (ob * 6 + r < kout) {                                            \
        int o = ob * 6 + r;                                             \
        __m512 vb = _mm512_set1_ps(bias ? bias[o] : 0.0f);              \
        float *dst = out + o * hw + (size_t)y * w + x0;                 \
        c##r##0 = _mm512_add_ps(c##r##0, vb); c##r##1 = _mm512_add_ps(c##r##1, vb); \
        c##r##2 = _mm512_add_ps(c##r##2, vb); c##r##3 = _mm512_add_ps(c##r##3, vb); \
        if (relu) {                                                     \
            c##r##0 = _mm512_maskz_max_ps(0xFFFF, c##r##0, z); c##r##1 = _mm512_maskz_max_ps(0xFFFF, c##r##1, z); \
            c##r##2 = _mm512_maskz_max_ps(0xFFFF, c##r##2, z); c##r##3 = _mm512_maskz_max_ps(0xFFFF, c##r##3, z); \
        }                                                               \
        _mm512_mask_storeu_ps(dst, ms[0], c##r##0); _mm512_mask_storeu_ps(dst + 16, ms[1], c##r##1); \
        _mm512_mask_storeu_ps(dst + 32, ms[2], c##r##2); _mm512_mask_storeu_ps(dst + 48, ms[3], c##r##3); \
    }
static NST__TARGET_AVX512 void nst__direct_avx512(const nst__conv_dir *dd, const float *in, float *out, int h, int w,
                                                  const float *bias, int relu, int ob, int y, int x0) {
    int kin = dd->kin, kout = dd->kout, ci, ky, kx, v;
    size_t hw = (size_t)h * w;
    __m512 z = _mm512_setzero_ps();
    __m512 c00 = z, c01 = z, c02 = z, c03 = z, c10 = z, c11 = z, c12 = z, c13 = z, c20 = z, c21 = z, c22 = z,
           c23 = z, c30 = z, c31 = z, c32 = z, c33 = z, c40 = z, c41 = z, c42 = z, c43 = z, c50 = z, c51 = z,
           c52 = z, c53 = z;
    __mmask16 mk[3][4], ms[4];
    for (kx = 0; kx < 3; kx++)
        for (v = 0; v < 4; v++) {
            int b = x0 + 16 * v + kx - 1, lo = b < 0 ? -b : 0, hi = w - b < 16 ? w - b : 16;
            mk[kx][v] = (__mmask16)(hi <= lo ? 0 : (((1u << hi) - 1) & ~((1u << lo) - 1)));
        }
    for (v = 0; v < 4; v++) {
        int hi = w - (x0 + 16 * v);
        ms[v] = (__mmask16)(hi <= 0 ? 0 : hi >= 16 ? 0xFFFF : (1u << hi) - 1);
    }
    for (ci = 0; ci < kin; ci++)
        for (ky = 0; ky < 3; ky++) {
            int sy = y + ky - 1;
            if (sy < 0 || sy >= h) continue;
            for (kx = 0; kx < 3; kx++) {
                const float *row = in + ci * hw + (size_t)sy * w + x0 + kx - 1;
                const float *wt = dd->u + ((size_t)(ob * kin + ci) * 9 + ky * 3 + kx) * 6;
                __m512 b0 = _mm512_maskz_loadu_ps(mk[kx][0], row), b1 = _mm512_maskz_loadu_ps(mk[kx][1], row + 16);
                __m512 b2 = _mm512_maskz_loadu_ps(mk[kx][2], row + 32), b3 = _mm512_maskz_loadu_ps(mk[kx][3], row + 48);
                NST__DK_ROW(0) NST__DK_ROW(1) NST__DK_ROW(2) NST__DK_ROW(3) NST__DK_ROW(4) NST__DK_ROW(5)
            }
        }
    NST__DK_ST(0) NST__DK_ST(1) NST__DK_ST(2) NST__DK_ST(3) NST__DK_ST(4) NST__DK_ST(5)
}
#undef NST__DK_ROW
#undef NST__DK_ST
#endif

/* ---- entry points ----------------------------------------------------------------------------------*/
/* Floats of workspace a lazy direction's transformed filters take (at the start of the workspace). */
static size_t nst__wino_lazy_floats(const nst__conv_dir *dd) {
    return dd->lazy ? ((size_t)36 * ((dd->kout + 5) / 6) * 6 * dd->kin + 15) / 16 * 16 : 0;
}

static NST__UNUSED size_t nst__conv_workspace(const nst__conv_plan *p, int h, int w, int nthreads) {
    size_t best = 0;
    int d;
    if (!p || h <= 0 || w <= 0) return 0;
    nthreads = nst__resolve_threads(nthreads);
    for (d = 0; d < 2; d++)
        if (p->dir[d].algo == NST__CONV_WINO) {
            int tiles = ((h + 3) / 4) * ((w + 3) / 4);
            size_t n = nst__wino_thread_floats(p->dir[d].kin, nst__wino_nt(tiles, nthreads)) * nthreads;
            n += nst__wino_lazy_floats(&p->dir[d]);
            if (n > best) best = n;
        }
    return best ? best * sizeof(float) + 64 : 0;
}

static nst_status nst__conv_run(const nst__conv_plan *p, int d, const float *in, float *out, int h, int w,
                                int relu, int nthreads, void *ws) {
    const nst__conv_dir *dd = &p->dir[d];
    const float *bias = d == 0 ? p->bias : NULL;
    int simd = p->arch == NST_ARCH_AVX512;
    if (!in || !out || h <= 0 || w <= 0) return nst__err(NST_ERR_ARGUMENT, "conv: bad arguments");
    nthreads = nst__resolve_threads(nthreads);
    if (dd->algo == NST__CONV_WINO) {
        void *own = NULL;
        if (!ws) {
            own = ws = nst__aligned_alloc(nst__conv_workspace(p, h, w, nthreads));
            if (!own) return nst__err(NST_ERR_NOMEM, "conv: out of memory for a %dx%d workspace", w, h);
        }
        /* align the caller's scratch to 64 bytes (the workspace size includes the slack) */
        ws = (void *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
        if (dd->lazy) {
            nst__conv_dir tmp = *dd;
            int nob = (dd->kout + 5) / 6, ob;
            tmp.u = (float *)ws;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
#endif
            for (ob = 0; ob < nob; ob++) {
#if defined(NST__X86_AVX512)
                if (simd && (size_t)p->cin * 9 * 16 < (size_t)INT_MAX) nst__wino_filters_avx512(p, d, tmp.u, ob);
                else
#endif
                    nst__wino_filters(p, d, tmp.u, ob);
            }
            nst__wino_run(&tmp, simd, in, out, h, w, bias, relu, nthreads, tmp.u + nst__wino_lazy_floats(dd));
        } else {
            nst__wino_run(dd, simd, in, out, h, w, bias, relu, nthreads, (float *)ws);
        }
        nst__aligned_free(own);
        return NST_OK;
    }
#if defined(NST__X86_AVX512)
    if (simd) {
        /* jobs: (6 output channels, one row, 64 pixels); the OpenMP loop stays outside the
         * target-attributed function (clang cannot outline a parallel region from one) */
        int nx = (w + 63) / 64, job, njobs = (dd->kout + 5) / 6 * h * nx;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 8)
#endif
        for (job = 0; job < njobs; job++)
            nst__direct_avx512(dd, in, out, h, w, bias, relu, job / (h * nx), (job / nx) % h, 64 * (job % nx));
        return NST_OK;
    }
#endif
    if (d == 0) nst__conv3x3_forward_ref(out, in, p->weight, bias, p->cin, p->cout, h, w, relu, nthreads);
    else nst__conv3x3_backward_data_ref(out, in, p->weight, p->cin, p->cout, h, w, nthreads);
    return NST_OK;
}
static nst_status nst__conv_forward(const nst__conv_plan *p, const float *in, float *out, int h, int w,
                                    int relu, int nthreads, void *ws) {
    return nst__conv_run(p, 0, in, out, h, w, relu, nthreads, ws);
}
static nst_status nst__conv_backward_data(const nst__conv_plan *p, const float *dout, float *din, int h, int w,
                                          int nthreads, void *ws) {
    return nst__conv_run(p, 1, dout, din, h, w, 0, nthreads, ws);
}

/* ---- 2x2 stride-2 pooling ---------------------------------------------------------------------------
 * Same results as the reference bit for bit: max keeps the first maximum in row-major order (so a NaN
 * never wins, as in the reference), avg sums ((a + b) + c) + d. */
#if defined(NST__X86_AVX512)
static NST__TARGET_AVX512 void nst__pool_fwd_avx512(float *out, const float *in, int ch, int h, int w, int avg) {
    int oh = h / 2, ow = w / 2;
    {
        const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        const __m512i io = _mm512_add_epi32(ie, _mm512_set1_epi32(1));
        const float *s = in + (size_t)ch * h * w;
        float *o = out + (size_t)ch * oh * ow;
        int y, x;
        for (y = 0; y < oh; y++) {
            const float *r0 = s + (size_t)(2 * y) * w, *r1 = r0 + w;
            for (x = 0; x < ow; x += 16) {
                int n = NST__MIN(16, ow - x), n0 = NST__MIN(16, 2 * n), n1 = 2 * n - n0;
                __mmask16 k0 = (__mmask16)(n0 >= 16 ? 0xFFFF : (1u << n0) - 1);
                __mmask16 k1 = (__mmask16)(n1 >= 16 ? 0xFFFF : (1u << n1) - 1);
                __mmask16 ko = (__mmask16)(n >= 16 ? 0xFFFF : (1u << n) - 1);
                __m512 p0 = _mm512_maskz_loadu_ps(k0, r0 + 2 * x), p1 = _mm512_maskz_loadu_ps(k1, r0 + 2 * x + 16);
                __m512 q0 = _mm512_maskz_loadu_ps(k0, r1 + 2 * x), q1 = _mm512_maskz_loadu_ps(k1, r1 + 2 * x + 16);
                __m512 a = _mm512_permutex2var_ps(p0, ie, p1), b = _mm512_permutex2var_ps(p0, io, p1);
                __m512 cc = _mm512_permutex2var_ps(q0, ie, q1), d = _mm512_permutex2var_ps(q0, io, q1), m;
                if (avg) {
                    m = _mm512_mul_ps(_mm512_set1_ps(0.25f), _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a, b), cc), d));
                } else {
                    m = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(b, a, _CMP_GT_OQ), a, b);
                    m = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(cc, m, _CMP_GT_OQ), m, cc);
                    m = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(d, m, _CMP_GT_OQ), m, d);
                }
                _mm512_mask_storeu_ps(o + (size_t)y * ow + x, ko, m);
            }
        }
    }
}
static NST__TARGET_AVX512 void nst__pool_bwd_avx512(float *din, const float *dout, const float *in, int ch, int h,
                                                    int w, int avg) {
    int oh = h / 2, ow = w / 2;
    {
        const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        const __m512i io = _mm512_add_epi32(ie, _mm512_set1_epi32(1));
        const __m512i il = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        const __m512i ih = _mm512_add_epi32(il, _mm512_set1_epi32(8));
        const float *s = in ? in + (size_t)ch * h * w : NULL;
        const float *g = dout + (size_t)ch * oh * ow;
        float *dd = din + (size_t)ch * h * w;
        int y, x;
        for (y = 0; y < oh; y++) {
            float *r0 = dd + (size_t)(2 * y) * w, *r1 = r0 + w;
            for (x = 0; x < ow; x += 16) {
                int n = NST__MIN(16, ow - x), n0 = NST__MIN(16, 2 * n), n1 = 2 * n - n0;
                __mmask16 k0 = (__mmask16)(n0 >= 16 ? 0xFFFF : (1u << n0) - 1);
                __mmask16 k1 = (__mmask16)(n1 >= 16 ? 0xFFFF : (1u << n1) - 1);
                __mmask16 ko = (__mmask16)(n >= 16 ? 0xFFFF : (1u << n) - 1);
                __m512 gv = _mm512_maskz_loadu_ps(ko, g + (size_t)y * ow + x), ga, gb, gc, gd;
                if (avg) {
                    ga = gb = gc = gd = _mm512_mul_ps(_mm512_set1_ps(0.25f), gv);
                } else {
                    const float *s0 = s + (size_t)(2 * y) * w, *s1 = s0 + w;
                    __m512 p0 = _mm512_maskz_loadu_ps(k0, s0 + 2 * x), p1 = _mm512_maskz_loadu_ps(k1, s0 + 2 * x + 16);
                    __m512 q0 = _mm512_maskz_loadu_ps(k0, s1 + 2 * x), q1 = _mm512_maskz_loadu_ps(k1, s1 + 2 * x + 16);
                    __m512 a = _mm512_permutex2var_ps(p0, ie, p1), b = _mm512_permutex2var_ps(p0, io, p1);
                    __m512 cc = _mm512_permutex2var_ps(q0, ie, q1), d = _mm512_permutex2var_ps(q0, io, q1), m;
                    __mmask16 sb, sc, sd, wa, wb, wc;
                    sb = _mm512_cmp_ps_mask(b, a, _CMP_GT_OQ);
                    m = _mm512_mask_blend_ps(sb, a, b);
                    sc = _mm512_cmp_ps_mask(cc, m, _CMP_GT_OQ);
                    m = _mm512_mask_blend_ps(sc, m, cc);
                    sd = _mm512_cmp_ps_mask(d, m, _CMP_GT_OQ);
                    wc = (__mmask16)(sc & ~sd);
                    wb = (__mmask16)(sb & ~sc & ~sd);
                    wa = (__mmask16)(~sb & ~sc & ~sd);
                    ga = _mm512_maskz_mov_ps(wa, gv); gb = _mm512_maskz_mov_ps(wb, gv);
                    gc = _mm512_maskz_mov_ps(wc, gv); gd = _mm512_maskz_mov_ps(sd, gv);
                }
                _mm512_mask_storeu_ps(r0 + 2 * x, k0, _mm512_permutex2var_ps(ga, il, gb));
                _mm512_mask_storeu_ps(r0 + 2 * x + 16, k1, _mm512_permutex2var_ps(ga, ih, gb));
                _mm512_mask_storeu_ps(r1 + 2 * x, k0, _mm512_permutex2var_ps(gc, il, gd));
                _mm512_mask_storeu_ps(r1 + 2 * x + 16, k1, _mm512_permutex2var_ps(gc, ih, gd));
            }
            if (w & 1) { r0[w - 1] = 0.0f; r1[w - 1] = 0.0f; }
        }
        if (h & 1) memset(dd + (size_t)(h - 1) * w, 0, sizeof(float) * (size_t)w);
    }
}
#endif

static void nst__pool_forward_ex(float *out, const float *in, int c, int h, int w, int avg, int nthreads,
                                 nst_arch arch) {
    (void)arch;
#if defined(NST__X86_AVX512)
    if (arch == NST_ARCH_AVX512) {
        int ch;
        nthreads = nst__resolve_threads(nthreads);
        (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
        for (ch = 0; ch < c; ch++) nst__pool_fwd_avx512(out, in, ch, h, w, avg);
        return;
    }
#endif
    nst__pool2x2_forward_ref(out, in, c, h, w, avg, nthreads);
}
static void nst__pool_backward_ex(float *din, const float *dout, const float *in, int c, int h, int w, int avg,
                                  int nthreads, nst_arch arch) {
    (void)arch;
#if defined(NST__X86_AVX512)
    if (arch == NST_ARCH_AVX512) {
        int ch;
        nthreads = nst__resolve_threads(nthreads);
        (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
        for (ch = 0; ch < c; ch++) nst__pool_bwd_avx512(din, dout, in, ch, h, w, avg);
        return;
    }
#endif
    nst__pool2x2_backward_ref(din, dout, in, c, h, w, avg, nthreads);
}
static NST__UNUSED void nst__pool_forward(float *out, const float *in, int c, int h, int w, int avg, int nthreads) {
    nst__pool_forward_ex(out, in, c, h, w, avg, nthreads, nst__cpu_arch());
}
static NST__UNUSED void nst__pool_backward(float *din, const float *dout, const float *in, int c, int h, int w,
                                           int avg, int nthreads) {
    nst__pool_backward_ex(din, dout, in, c, h, w, avg, nthreads, nst__cpu_arch());
}

NSTDEF nst_status nst_conv3x3_forward(float *out, const float *in, const float *weight, const float *bias,
                                      int cin, int cout, int h, int w, int relu) {
    nst__conv_plan *p;
    nst_status st;
    if (!out || !in || !weight || cin <= 0 || cout <= 0 || h <= 0 || w <= 0)
        return nst__err(NST_ERR_ARGUMENT, "conv3x3_forward: bad arguments");
    if ((st = nst__conv_plan_create(weight, bias, cin, cout, &p)) != NST_OK) return st;
    st = nst__conv_forward(p, in, out, h, w, relu, 0, NULL);
    nst__conv_plan_free(p);
    return st;
}
NSTDEF nst_status nst_conv3x3_backward_data(float *din, const float *dout, const float *weight,
                                            int cin, int cout, int h, int w) {
    nst__conv_plan *p;
    nst_status st;
    if (!din || !dout || !weight || cin <= 0 || cout <= 0 || h <= 0 || w <= 0)
        return nst__err(NST_ERR_ARGUMENT, "conv3x3_backward_data: bad arguments");
    if ((st = nst__conv_plan_create(weight, NULL, cin, cout, &p)) != NST_OK) return st;
    st = nst__conv_backward_data(p, dout, din, h, w, 0, NULL);
    nst__conv_plan_free(p);
    return st;
}
