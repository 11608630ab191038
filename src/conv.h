/* STUB owned by the fast-convolution work (issue 4). Contract used by the VGG code:
 *   nst__conv_plan_create(w, bias, cin, cout, &plan)   packs filters once, for both directions
 *   nst__conv_workspace(plan, h, w, nthreads)        bytes of scratch forward/backward need at h x w
 *   nst__conv_forward(plan, in, out, h, w, relu, nthreads, ws)      ws: that scratch, or NULL (allocates)
 *   nst__conv_backward_data(plan, dout, din, h, w, nthreads, ws)
 *   nst__conv_plan_free(plan)
 *   nst__pool_forward(out, in, c, h, w, avg, nthreads)  2x2/2 pooling (floor), fast path of the ref
 *   nst__pool_backward(din, dout, in, c, h, w, avg, nthreads)  (in may be NULL for avg)
 * Layout: CHW float, batch 1. Deterministic for a given thread count. */
typedef struct nst__conv_plan {
    int cin, cout;
    const float *weight, *bias;   /* borrowed from the model; valid as long as the plan */
} nst__conv_plan;

static nst_status nst__conv_plan_create(const float *weight, const float *bias, int cin, int cout,
                                        nst__conv_plan **out) {
    nst__conv_plan *p = (nst__conv_plan *)nst__calloc(1, sizeof *p);
    *out = NULL;
    if (!p) return nst__err(NST_ERR_NOMEM, "conv: out of memory");
    p->cin = cin; p->cout = cout; p->weight = weight; p->bias = bias;
    *out = p;
    return NST_OK;
}
static void nst__conv_plan_free(nst__conv_plan *p) { nst__free(p); }
static NST__UNUSED size_t nst__conv_workspace(const nst__conv_plan *p, int h, int w, int nthreads) {
    (void)p; (void)h; (void)w; (void)nthreads;
    return 0;
}
static nst_status nst__conv_forward(const nst__conv_plan *p, const float *in, float *out, int h, int w,
                                    int relu, int nthreads, void *ws) {
    (void)ws;
    nst__conv3x3_forward_ref(out, in, p->weight, p->bias, p->cin, p->cout, h, w, relu, nthreads);
    return NST_OK;
}
static nst_status nst__conv_backward_data(const nst__conv_plan *p, const float *dout, float *din, int h, int w,
                                          int nthreads, void *ws) {
    (void)ws;
    nst__conv3x3_backward_data_ref(din, dout, p->weight, p->cin, p->cout, h, w, nthreads);
    return NST_OK;
}
static NST__UNUSED void nst__pool_forward(float *out, const float *in, int c, int h, int w, int avg, int nthreads) {
    nst__pool2x2_forward_ref(out, in, c, h, w, avg, nthreads);
}
static NST__UNUSED void nst__pool_backward(float *din, const float *dout, const float *in, int c, int h, int w, int avg,
                               int nthreads) {
    nst__pool2x2_backward_ref(din, dout, in, c, h, w, avg, nthreads);
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
