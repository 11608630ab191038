NSTDEF nst_status nst_tensor_alloc(nst_tensor *t, int c, int h, int w) {
    size_t n;
    t->c = t->h = t->w = 0;
    t->data = NULL;
    if (c <= 0 || h <= 0 || w <= 0) return nst__err(NST_ERR_ARGUMENT, "tensor: bad shape %dx%dx%d", c, h, w);
    if (!nst__mul_ok((size_t)c * (size_t)h, (size_t)w, &n) || !nst__mul_ok(n, sizeof(float), &n))
        return nst__err(NST_ERR_NOMEM, "tensor: %dx%dx%d is too large", c, h, w);
    t->data = (float *)nst__aligned_alloc(n);
    if (!t->data) return nst__err(NST_ERR_NOMEM, "tensor: out of memory for %dx%dx%d", c, h, w);
    memset(t->data, 0, n);
    t->c = c; t->h = h; t->w = w;
    return NST_OK;
}
NSTDEF void nst_tensor_free(nst_tensor *t) {
    if (!t) return;
    nst__aligned_free(t->data);
    t->data = NULL;
    t->c = t->h = t->w = 0;
}

/* ---- scalar reference kernels ------------------------------------------------------------------
 * Plain loops every fast path is tested against. Threaded over output channels only, so each output
 * element is summed in the same order whatever the thread count. */

/* out[co] = bias[co] + sum_ci sum_taps w * in, with the tap loop outside the row loop so the
 * inner loop is a contiguous, vectorisable axpy. */
static void nst__conv3x3_forward_ref(float *out, const float *in, const float *wt, const float *bias,
                                     int cin, int cout, int h, int w, int relu, int nthreads) {
    int co;
    size_t hw = (size_t)h * w;
    nthreads = nst__resolve_threads(nthreads);
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (co = 0; co < cout; co++) {
        float *o = out + (size_t)co * hw;
        int ci, ky, kx, y, x;
        size_t i;
        for (i = 0; i < hw; i++) o[i] = bias ? bias[co] : 0.0f;
        for (ci = 0; ci < cin; ci++) {
            const float *src = in + (size_t)ci * hw;
            const float *k9 = wt + ((size_t)co * cin + ci) * 9;
            for (ky = 0; ky < 3; ky++)
                for (kx = 0; kx < 3; kx++) {
                    float k = k9[ky * 3 + kx];
                    int x0 = kx == 0 ? 1 : 0, x1 = kx == 2 ? w - 1 : w;
                    for (y = 0; y < h; y++) {
                        int sy = y + ky - 1;
                        const float *srow;
                        float *orow;
                        if (sy < 0 || sy >= h) continue;
                        srow = src + (size_t)sy * w + (kx - 1);
                        orow = o + (size_t)y * w;
                        for (x = x0; x < x1; x++) orow[x] += k * srow[x];
                    }
                }
        }
        if (relu)
            for (i = 0; i < hw; i++) o[i] = o[i] > 0.0f ? o[i] : 0.0f;
    }
}

/* din[ci] = sum_co sum_taps w[co][ci][2-ky][2-kx] * dout[co]: the transposed convolution. */
static void nst__conv3x3_backward_data_ref(float *din, const float *dout, const float *wt, int cin, int cout,
                                           int h, int w, int nthreads) {
    int ci;
    size_t hw = (size_t)h * w;
    nthreads = nst__resolve_threads(nthreads);
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (ci = 0; ci < cin; ci++) {
        float *o = din + (size_t)ci * hw;
        int co, ky, kx, y, x;
        size_t i;
        for (i = 0; i < hw; i++) o[i] = 0.0f;
        for (co = 0; co < cout; co++) {
            const float *src = dout + (size_t)co * hw;
            const float *k9 = wt + ((size_t)co * cin + ci) * 9;
            for (ky = 0; ky < 3; ky++)
                for (kx = 0; kx < 3; kx++) {
                    /* in[y+ky-1][x+kx-1] received k*out[y][x], so din[y][x] += k * dout[y-ky+1][x-kx+1] */
                    float k = k9[ky * 3 + kx];
                    int dx = 1 - kx;
                    int x0 = dx < 0 ? -dx : 0, x1 = dx > 0 ? w - dx : w;
                    for (y = 0; y < h; y++) {
                        int sy = y + 1 - ky;
                        const float *srow;
                        float *orow;
                        if (sy < 0 || sy >= h) continue;
                        srow = src + (size_t)sy * w + dx;
                        orow = o + (size_t)y * w;
                        for (x = x0; x < x1; x++) orow[x] += k * srow[x];
                    }
                }
        }
    }
}

/* 2x2 stride-2 pooling; odd trailing rows/columns are dropped (floor), as torch and Caffe's VGG do. */
static NST__UNUSED void nst__pool2x2_forward_ref(float *out, const float *in, int c, int h, int w, int avg, int nthreads) {
    int ch, oh = h / 2, ow = w / 2;
    nthreads = nst__resolve_threads(nthreads);
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (ch = 0; ch < c; ch++) {
        const float *s = in + (size_t)ch * h * w;
        float *o = out + (size_t)ch * oh * ow;
        int y, x;
        for (y = 0; y < oh; y++)
            for (x = 0; x < ow; x++) {
                const float *p = s + (size_t)(2 * y) * w + 2 * x;
                float a = p[0], b = p[1], cc = p[w], d = p[w + 1];
                if (avg) {
                    o[(size_t)y * ow + x] = 0.25f * (a + b + cc + d);
                } else {
                    float m = a;
                    if (b > m) m = b;
                    if (cc > m) m = cc;
                    if (d > m) m = d;
                    o[(size_t)y * ow + x] = m;
                }
            }
    }
}

/* Max pooling sends the gradient to the first maximum in row-major order (as torch does). */
static NST__UNUSED void nst__pool2x2_backward_ref(float *din, const float *dout, const float *in, int c, int h, int w,
                                      int avg, int nthreads) {
    int ch, oh = h / 2, ow = w / 2;
    nthreads = nst__resolve_threads(nthreads);
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (ch = 0; ch < c; ch++) {
        const float *s = in ? in + (size_t)ch * h * w : NULL;
        const float *g = dout + (size_t)ch * oh * ow;
        float *d = din + (size_t)ch * h * w;
        int y, x;
        memset(d, 0, sizeof(float) * (size_t)h * w);
        for (y = 0; y < oh; y++)
            for (x = 0; x < ow; x++) {
                size_t base = (size_t)(2 * y) * w + 2 * x;
                float gv = g[(size_t)y * ow + x];
                if (avg) {
                    float q = 0.25f * gv;
                    d[base] = q; d[base + 1] = q; d[base + w] = q; d[base + w + 1] = q;
                } else {
                    size_t best = base;
                    if (s[base + 1] > s[best]) best = base + 1;
                    if (s[base + w] > s[best]) best = base + w;
                    if (s[base + w + 1] > s[best]) best = base + w + 1;
                    d[best] = gv;
                }
            }
    }
}

NSTDEF nst_status nst_gram(float *g, const float *f, int c, int hw, float scale) {
    if (!g || !f || c <= 0 || hw <= 0) return nst__err(NST_ERR_ARGUMENT, "gram: bad arguments");
    return nst__ssyrk_ex(0, c, hw, scale, f, hw, g, c);
}
