/* The tiled objective (nst_options.tile) against the whole image: the same losses and gradient at odd
 * sizes, tile sizes that do and do not divide the image, max and average pooling, shallow and deep
 * layers; the plan's choices under a memory limit; the measured peak of a tiled run against its
 * estimate. */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L   /* fork, waitpid */
#endif
#define NST_IMPLEMENTATION
#include "nst.h"
#include "nst_test.h"
#include <stdlib.h>
#if defined(__linux__)
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#endif

static nst__rng rng = {12345};

/* A VGG-19-shaped model with every layer `widths` channels wide: all 16 layers, cheap at any size. */
static nst_model *tiny_model(int widths, unsigned long long seed) { return nst_t_tiny_model(&rng, widths, seed); }

/* Smooth random images: structure at several scales, so deep layers see more than noise. */
static void rand_image(nst_image *im, int w, int h) {
    int x, y, c;
    double f[3][4];
    nst_image_alloc(im, w, h, 3);
    for (c = 0; c < 3; c++)
        for (x = 0; x < 4; x++) f[c][x] = nst__rng_uniform(&rng) * 0.3;
    for (y = 0; y < h; y++)
        for (x = 0; x < w; x++)
            for (c = 0; c < 3; c++) {
                double v = 0.5 + 0.2 * sin(f[c][0] * x + 7 * f[c][1] * y) + 0.15 * cos(f[c][2] * (x + y) + c) +
                           0.15 * (nst__rng_uniform(&rng) - 0.5);
                im->pixels[((size_t)y * w + x) * 3 + c] = (float)(v < 0 ? 0 : v > 1 ? 1 : v);
            }
}

static double max_abs(const float *a, size_t n) {
    double m = 0;
    size_t i;
    for (i = 0; i < n; i++) if (fabs(a[i]) > m) m = fabs(a[i]);
    return m;
}

/* Whole image and tiled at each of tiles[], same content, styles and pixels: losses within 1e-5
 * relative, gradient within 1e-4 relative to its largest entry. */
static void compare_tiled(const nst_model *m, const nst_options *base, int w, int h, int sw, int sh, int nstyles,
                          const int *tiles, int ntiles, const char *what) {
    nst_image c, s[2];
    nst_objective *whole = NULL;
    nst_options o = *base;
    size_t n = (size_t)3 * w * h, i;
    float *x, *g0, *g1;
    nst_losses l0, l1;
    int k;
    rand_image(&c, w, h);
    rand_image(&s[0], sw, sh);
    rand_image(&s[1], sh, sw);
    x = (float *)malloc(n * sizeof(float));
    g0 = (float *)malloc(n * sizeof(float));
    g1 = (float *)malloc(n * sizeof(float));
    for (i = 0; i < n; i++) x[i] = (float)(255.0 * (0.3 + 0.4 * nst__rng_uniform(&rng)));
    o.tile = 0;
    CHECK_OK(nst_objective_create(m, &c, s, NULL, nstyles, &o, &whole));
    if (whole) CHECK_OK(nst_objective_eval(whole, x, &l0, g0));
    CHECK_MSG(l0.style > 0 && max_abs(g0, n) > 0, "%s: zero loss or gradient", what);
    for (k = 0; k < ntiles && whole; k++) {
        nst_objective *tiled = NULL;
        double gmax = max_abs(g0, n), worst = 0;
        o.tile = tiles[k];
        CHECK_OK(nst_objective_create(m, &c, s, NULL, nstyles, &o, &tiled));
        if (!tiled) continue;
        CHECK_MSG(tiled->tiled != NULL, "%s: tile %d did not tile", what, tiles[k]);
        CHECK_OK(nst_objective_eval(tiled, x, &l1, g1));
        for (i = 0; i < n; i++) if (fabs((double)g1[i] - g0[i]) > worst) worst = fabs((double)g1[i] - g0[i]);
        printf("  %s, tile %d: loss %.9g vs %.9g (content %.3g, style %.3g), gradient |diff|/max %.2g\n", what,
               tiles[k], l1.total, l0.total, fabs(l1.content / l0.content - 1), fabs(l1.style / l0.style - 1),
               worst / gmax);
        CHECK_MSG(fabs(l1.total / l0.total - 1) <= 1e-5, "%s, tile %d: loss %.9g vs %.9g", what, tiles[k], l1.total,
                  l0.total);
        CHECK_MSG(l0.content == 0 || fabs(l1.content / l0.content - 1) <= 1e-5, "%s, tile %d: content %.9g vs %.9g",
                  what, tiles[k], l1.content, l0.content);
        CHECK_MSG(fabs(l1.style / l0.style - 1) <= 1e-5, "%s, tile %d: style %.9g vs %.9g", what, tiles[k], l1.style,
                  l0.style);
        CHECK_MSG(fabs(l1.temporal - l0.temporal) <= 1e-5 * l0.temporal, "%s, tile %d: temporal %.9g vs %.9g", what,
                  tiles[k], l1.temporal, l0.temporal);
        CHECK_MSG(worst <= 1e-4 * gmax, "%s, tile %d: gradient |diff| %.3g, max %.3g", what, tiles[k], worst, gmax);
        {   /* value-only evaluation (pass 1 alone) agrees, and the Gram is the whole image's */
            nst_losses l2;
            const float *ga, *gb;
            int ca, cb;
            size_t j;
            double gw = 0;
            CHECK_OK(nst_objective_eval(tiled, x, &l2, NULL));
            CHECK(l2.total == l1.total);
            CHECK_OK(nst_objective_gram(whole, "relu1_1", &ca, &ga));
            CHECK_OK(nst_objective_gram(tiled, "relu1_1", &cb, &gb));
            CHECK(ca == cb);
            for (j = 0; j < (size_t)ca * ca && ca == cb; j++) gw = NST__MAX(gw, fabs((double)ga[j] - gb[j]));
            CHECK_MSG(gw <= 1e-5 * max_abs(ga, (size_t)ca * ca), "%s: Gram differs by %g", what, gw);
            CHECK(nst_objective_features(tiled, "relu1_1", NULL, NULL, NULL, NULL) == NST_ERR_UNSUPPORTED);
        }
        nst_objective_free(tiled);
    }
    nst_objective_free(whole);
    nst_image_free(&c); nst_image_free(&s[0]); nst_image_free(&s[1]);
    free(x); free(g0); free(g1);
}

TEST(geometry_relu5_1_needs_70_px_on_a_16_px_grid) {
    int grid, halo, lh[NST_VGG_LAYERS];
    nst__tile_geometry(nst_layer_index("relu5_1"), &grid, &halo);
    CHECK(grid == 16 && halo == 70);
    CHECK(nst__tile_halos(nst_layer_index("relu5_1"), lh, &halo) == 4 && halo == 70);
    CHECK(lh[nst_layer_index("conv1_1")] == 70 && lh[nst_layer_index("relu1_2")] == 70);
    CHECK(lh[nst_layer_index("pool1")] == 34 && lh[nst_layer_index("relu2_2")] == 34);
    CHECK(lh[nst_layer_index("pool2")] == 16 && lh[nst_layer_index("conv3_1")] == 15);
    CHECK(lh[nst_layer_index("relu3_4")] == 12 && lh[nst_layer_index("pool3")] == 6);
    CHECK(lh[nst_layer_index("conv4_4")] == 2 && lh[nst_layer_index("pool4")] == 1);
    CHECK(lh[nst_layer_index("relu5_1")] == 0);
    nst__tile_geometry(nst_layer_index("relu4_2"), &grid, &halo);
    CHECK(grid == 8 && halo == 38);
    nst__tile_geometry(nst_layer_index("relu1_1"), &grid, &halo);
    CHECK(grid == 1 && halo == 1);
}

/* Interiors partition the image; each layer's region holds the interior, within the image; a layer
 * computes from its input's region (a pool from an even origin, so its windows are the image's). */
TEST(tiles_partition_the_image) {
    nst__tiling t;
    nst__tile r;
    int k, l, covered = 0, h = 203, w = 181, last = nst_layer_index("relu5_1");
    nst__tiling_plan(&t, h, w, 70, last);   /* 70 rounds down to 64 */
    CHECK(t.ty % 16 == 0 && t.tx % 16 == 0 && t.ty <= 64 && t.tx <= 64 && t.halo == 70);
    for (k = 0; k < t.ny * t.nx; k++) {
        nst__tiling_tile(&t, k, &r);
        CHECK(r.iy0 % 16 == 0 && r.ix0 % 16 == 0);
        CHECK(r.ey1 - r.ey0 <= t.max_h && r.ex1 - r.ex0 <= t.max_w);
        CHECK(r.oy[0] == r.ey0 && r.ox[0] == r.ex0 && r.rh[0] == r.ey1 - r.ey0 && r.rw[0] == r.ex1 - r.ex0);
        for (l = 0; l <= last; l++) {
            int v = nst__layer_level(l), s = nst__layer_type(l) == NST__L_POOL;
            int py = l ? r.oy[l - 1] : r.ey0, ph = l ? r.rh[l - 1] : r.ey1 - r.ey0;
            int px = l ? r.ox[l - 1] : r.ex0, pw = l ? r.rw[l - 1] : r.ex1 - r.ex0;
            CHECK(r.oy[l] <= (r.iy0 >> v) && r.oy[l] + r.rh[l] >= (r.iy1 >> v) && r.oy[l] + r.rh[l] <= (h >> v));
            CHECK(r.ox[l] <= (r.ix0 >> v) && r.ox[l] + r.rw[l] >= (r.ix1 >> v) && r.ox[l] + r.rw[l] <= (w >> v));
            if (s) CHECK(py % 2 == 0 && px % 2 == 0);
            CHECK(py >> s <= r.oy[l] && (py + ph) >> s >= r.oy[l] + r.rh[l]);
            CHECK(px >> s <= r.ox[l] && (px + pw) >> s >= r.ox[l] + r.rw[l]);
        }
        covered += (r.iy1 - r.iy0) * (r.ix1 - r.ix0);
    }
    CHECK(covered == h * w);
}

TEST(tiled_matches_whole_tiny_model_deep_layers) {
    nst_model *m = tiny_model(6, 3);
    nst_options o;
    static const int tiles[] = {64, 112};
    if (!m) { CHECK(m != NULL); return; }
    nst_options_init(&o);
    o.threads = 1;
    o.style_weight = 1e3f;
    compare_tiled(m, &o, 203, 181, 190, 171, 2, tiles, 2, "relu5_1, max pool");
    o.pool = NST_POOL_AVG;
    compare_tiled(m, &o, 197, 211, 240, 150, 2, tiles + 1, 1, "relu5_1, avg pool");
    nst_model_free(m);
}

/* The random model's reflection padding at every region edge: layers of 8 channels take Winograd,
 * which pads with the blend itself (nst__conv_forward_pad); a region edge inside the image gets the
 * blend as if it were the image's edge, which makes only the row next to it wrong, as zero padding
 * did: the halo's rows that are cropped away. */
TEST(tiled_matches_whole_tiny_model_reflection) {
    nst_model *m = tiny_model(8, 13);
    nst_options o;
    static const int tiles[] = {64, 20};
    if (!m) { CHECK(m != NULL); return; }
    m->reflect = 1;
    nst_options_init(&o);
    o.threads = 2;
    o.style_weight = 1e3f;
    o.pool = NST_POOL_AVG;
    compare_tiled(m, &o, 163, 141, 120, 131, 1, tiles, 1, "relu5_1, reflection padding, avg pool");
    o.content_layers = "relu2_2,conv1_2";
    o.style_layers = "relu1_1,pool1,relu2_1";
    o.style_layer_weights = NULL;
    o.pool = NST_POOL_MAX;
    compare_tiled(m, &o, 47, 39, 41, 35, 1, tiles + 1, 1, "relu2_2, reflection padding, max pool");
    nst_model_free(m);
}

TEST(tiled_matches_whole_tiny_model_shallow_layers) {
    nst_model *m = tiny_model(6, 5);
    nst_options o;
    static const int tiles[] = {8, 20, 26};
    if (!m) { CHECK(m != NULL); return; }
    nst_options_init(&o);
    o.threads = 1;
    o.content_layers = "relu2_2,conv1_2";
    o.style_layers = "relu1_1,pool1,relu2_1";
    o.style_layer_weights = NULL;
    compare_tiled(m, &o, 47, 39, 41, 35, 2, tiles, 3, "relu2_2, max pool");
    o.pool = NST_POOL_AVG;
    compare_tiled(m, &o, 47, 39, 41, 35, 2, tiles, 3, "relu2_2, avg pool");
    nst_model_free(m);
}

TEST(tiled_matches_whole_random_vgg19_to_relu3_1) {
    nst_model *m = NULL;
    nst_options o;
    static const int tiles1[] = {24, 40};
    CHECK_OK(nst_model_random(1, &m));
    if (!m) return;
    nst_options_init(&o);
    o.threads = 1;
    o.content_layers = "relu3_1";
    o.style_layers = "relu1_1,relu2_1,relu3_1";
    o.style_weight = 1e4f;
    compare_tiled(m, &o, 75, 61, 66, 50, 2, tiles1, 2, "random VGG-19 to relu3_1, avg pool");
    /* relu4_1's convolution is "lazy" (filters transformed per call): with them kept across tiles too */
    o.content_layers = "relu4_1";
    o.style_layers = "relu1_1,relu4_1";
    o.tile_keep_filters = 1;
    compare_tiled(m, &o, 70, 57, 50, 40, 1, tiles1 + 1, 1, "random VGG-19 to relu4_1, filters kept");
    /* relu5_1 is covered by the tiny model: with real widths each tile pays the per-call cost of the
     * convolutions' filter transforms, seconds at any size on this path */
    nst_model_free(m);
}

/* Style masks and the temporal term tiled: guided Grams sum over tile interiors with the whole image's
 * mask cut to each tile, the temporal term is per pixel. Two styles, odd sizes, masks at other sizes
 * than the output (resized), tiles that do not divide the image. */
TEST(tiled_matches_whole_with_masks_and_temporal) {
    nst_model *m = tiny_model(6, 7);
    nst_options o;
    nst_image masks[2], prev, prevc;
    static const int tiles[] = {48, 112};
    int x, y;
    if (!m) { CHECK(m != NULL); return; }
    nst_image_alloc(&masks[0], 61, 53, 1);
    for (y = 0; y < 53; y++)   /* left to right ramp, zero in a corner (the other style only there) */
        for (x = 0; x < 61; x++) masks[0].pixels[y * 61 + x] = x < 10 && y < 10 ? 0.0f : (float)x / 60.0f;
    rand_image(&masks[1], 70, 90);
    rand_image(&prev, 100, 90);
    rand_image(&prevc, 203, 181);
    nst_options_init(&o);
    o.threads = 1;
    o.style_weight = 1e3f;
    o.style_masks = masks;
    compare_tiled(m, &o, 203, 181, 190, 171, 2, tiles, 2, "relu5_1, masks");
    o.pool = NST_POOL_AVG;
    o.temporal_image = &prev;
    o.temporal_content = &prevc;
    o.temporal_weight = 10.0f;
    compare_tiled(m, &o, 203, 181, 150, 170, 2, tiles + 1, 1, "relu5_1, avg pool, masks, temporal");
    o.style_masks = NULL;
    compare_tiled(m, &o, 203, 181, 150, 170, 2, tiles + 1, 1, "relu5_1, avg pool, temporal");
    nst_image_free(&masks[0]); nst_image_free(&masks[1]); nst_image_free(&prev); nst_image_free(&prevc);
    nst_model_free(m);
}

/* nst_options.scale_iterations: each coarse-to-fine pass runs its own count, the last repeating. */
static int seen_iterations[8];
static int count_progress(const nst_progress *p, void *user) {
    (void)user;
    if (p->scale >= 1 && p->scale <= 8) {
        if (p->iteration > seen_iterations[p->scale - 1]) seen_iterations[p->scale - 1] = p->iteration;
        CHECK(p->iterations >= 2 && p->iterations <= 4);
    }
    return 0;
}
TEST(per_scale_iterations) {
    nst_model *m = tiny_model(4, 9);
    nst_image c, s, out;
    nst_options o;
    static const int its[] = {4, 3, 2};
    int k;
    if (!m) { CHECK(m != NULL); return; }
    rand_image(&c, 64, 48);
    rand_image(&s, 40, 40);
    nst_options_init(&o);
    o.threads = 1;
    o.image_size = 64;
    o.scales = 4;   /* 8 px at the coarsest: shallow layers */
    o.content_layers = "relu2_1";
    o.style_layers = "relu1_1,relu2_1";
    o.scale_iterations = its;
    o.nscale_iterations = 3;
    o.progress = count_progress;
    CHECK_OK(nst_transfer(m, &c, &s, NULL, 1, &o, &out));
    for (k = 0; k < 4; k++) CHECK_MSG(seen_iterations[k] == its[k < 3 ? k : 2], "scale %d ran %d iterations", k + 1,
                                      seen_iterations[k]);
    nst_image_free(&out);
    o.nscale_iterations = 0;
    CHECK(nst_transfer(m, &c, &s, NULL, 1, &o, &out) == NST_ERR_ARGUMENT);
    nst_image_free(&c); nst_image_free(&s);
    nst_model_free(m);
}

/* The plan under a memory limit: whole image when it fits, else the largest tile that fits, else a
 * shorter L-BFGS history, else a refusal naming the size that would fit. Estimates only: no run. */
TEST(plan_picks_tiles_then_history_then_refuses) {
    nst_model *m = NULL;
    nst_image c, s;
    nst_options o, p;
    size_t whole, need;
    CHECK_OK(nst_model_random(1, &m));
    if (!m) return;
    nst_image_alloc(&c, 2048, 1536, 3);
    nst_image_alloc(&s, 512, 512, 3);
    nst_options_init(&o);
    o.image_size = 2048;
    o.tile = 0;
    whole = nst_transfer_memory(m, &c, &s, 1, &o);
    o.tile = -1;
    o.memory_limit = whole + ((size_t)1 << 20);   /* fits whole: no tiling */
    p = o;
    CHECK_OK(nst_transfer_plan(m, &c, &s, 1, &p));
    CHECK(p.tile == 0 && p.lbfgs_history == 100);
    o.memory_limit = whole - ((size_t)300 << 20);   /* the history stays, tiles make room */
    p = o;
    CHECK_OK(nst_transfer_plan(m, &c, &s, 1, &p));
    need = nst_transfer_memory(m, &c, &s, 1, &p);
    printf("  limit %zu MB: tile %d, history %d, estimate %zu MB (whole image %zu MB)\n", o.memory_limit >> 20, p.tile,
           p.lbfgs_history, need >> 20, whole >> 20);
    CHECK(p.tile > 0 && p.tile % 16 == 0 && p.lbfgs_history == 100 && need <= o.memory_limit);
    CHECK(nst_transfer_memory(m, &c, &s, 1, &o) == need);   /* the estimate of an auto run is the plan's */
    o.memory_limit = (size_t)1536 << 20;   /* the history must shrink */
    p = o;
    CHECK_OK(nst_transfer_plan(m, &c, &s, 1, &p));
    need = nst_transfer_memory(m, &c, &s, 1, &p);
    printf("  limit %zu MB: tile %d, history %d, estimate %zu MB\n", o.memory_limit >> 20, p.tile, p.lbfgs_history,
           need >> 20);
    CHECK(p.tile >= 256 && p.lbfgs_history >= 5 && p.lbfgs_history < 100 && need <= o.memory_limit);
    o.memory_limit = (size_t)300 << 20;   /* nothing fits */
    p = o;
    CHECK(nst_transfer_plan(m, &c, &s, 1, &p) == NST_ERR_NOMEM);
    printf("  limit 300 MB: %s\n", nst_last_error());
    CHECK(strstr(nst_last_error(), "--size") != NULL && p.tile == -1);
    nst_image_free(&c); nst_image_free(&s);
    nst_model_free(m);
}

#if defined(__linux__)
static long proc_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, strlen(key)) == 0) { v = atol(line + strlen(key) + 1); break; }
    fclose(f);
    return v;
}
#endif

/* A tiled transfer's measured peak against nst_transfer_memory, in a child process whose high-water mark
 * is reset first (so what this program did before does not count). */
TEST(tiled_run_peak_follows_the_estimate) {
#if defined(__linux__)
    pid_t pid;
    int status = 0;
    fflush(stdout);
    pid = fork();
    if (pid < 0) SKIP("fork failed");
    if (pid == 0) {
        nst_model *m = NULL;
        nst_image c, s, out;
        nst_options o;
        size_t est, whole, i;
        long base, peak;
        double measured;
        FILE *f;
        int bad = 0;
        /* after fork only the calling thread exists: a parallel region with more threads would wait on
         * the parent's OpenMP pool forever, so everything here runs on one thread */
        nst_set_threads(1);
#if defined(__GLIBC__)
        malloc_trim(0);   /* and give back what the parent freed, for the same reason */
#endif
        if (nst_model_random(1, &m) != NST_OK) _exit(3);
        nst_image_alloc(&c, 256, 192, 3);
        nst_image_alloc(&s, 128, 128, 3);
        for (i = 0; i < (size_t)256 * 192 * 3; i++) c.pixels[i] = (float)((i * 2654435761u) % 1000) / 1000.0f;
        for (i = 0; i < (size_t)128 * 128 * 3; i++) s.pixels[i] = (float)((i * 40503u) % 997) / 997.0f;
        nst_options_init(&o);
        o.image_size = 256;
        o.iterations = 3;
        o.lbfgs_history = 4;
        o.threads = 1;
        o.content_layers = "relu3_1";
        o.style_layers = "relu1_1,relu2_1,relu3_1";
        o.tile = 0;
        whole = nst_transfer_memory(m, &c, &s, 1, &o);
        o.tile = 80;
        est = nst_transfer_memory(m, &c, &s, 1, &o);
#if defined(__GLIBC__)
        /* the random model's calibration freed its network and lazy filter workspace: glibc keeps those
         * pages resident and the transfer reuses them, so VmRSS would count them into base and the peak
         * would look ~10 MB smaller than what the transfer allocates */
        malloc_trim(0);
#endif
        f = fopen("/proc/self/clear_refs", "w");
        if (!f || fputs("5", f) < 0 || fclose(f) != 0) _exit(4);   /* resets VmHWM (Linux 4.0+) */
        /* the estimate counts the model (weights and conv plans), the caller's images and the runtime, all
         * resident before the reset */
        base = proc_kb("VmRSS:") - (long)((nst__model_bytes(m) + nst__mem_runtime(1, 0) +
                                           (size_t)(256 * 192 + 128 * 128) * 12) / 1024);
        if (nst_transfer(m, &c, &s, NULL, 1, &o, &out) != NST_OK) _exit(5);
        peak = proc_kb("VmHWM:");
        measured = (double)(peak - base) * 1024.0;
        printf("  tiled estimate %.1f MB, measured peak %.1f MB (ratio %.3f); whole image estimate %.1f MB\n",
               est / 1048576.0, measured / 1048576.0, est / measured, whole / 1048576.0);
        if (fabs(est / measured - 1.0) > 0.10) { fprintf(stderr, "  estimate off by more than 10%%\n"); bad = 1; }
        /* of what depends on the image: the model (weights, conv plans) is the same either way */
        if (est - nst__model_bytes(m) > (whole - nst__model_bytes(m)) * 0.7) {
            fprintf(stderr, "  tiling saved too little\n");
            bad = 1;
        }
        fflush(stdout);
        _exit(bad);
    }
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) { CHECK(!"child crashed"); return; }
    if (WEXITSTATUS(status) == 4) SKIP("cannot reset VmHWM through /proc/self/clear_refs");
    CHECK_MSG(WEXITSTATUS(status) == 0, "child exit status %d", WEXITSTATUS(status));
#else
    SKIP("Linux only (VmHWM)");
#endif
}

int main(int argc, char **argv) {
    nst_test_begin(argc, argv);
    /* first: the forked child inherits the parent's heap, and free chunks left there by earlier tests would
     * be reused without raising its resident peak (measured 99 instead of 120 MB after the other tests) */
    RUN(tiled_run_peak_follows_the_estimate);
    RUN(geometry_relu5_1_needs_70_px_on_a_16_px_grid);
    RUN(tiles_partition_the_image);
    RUN(tiled_matches_whole_tiny_model_deep_layers);
    RUN(tiled_matches_whole_tiny_model_reflection);
    RUN(tiled_matches_whole_tiny_model_shallow_layers);
    RUN(tiled_matches_whole_random_vgg19_to_relu3_1);
    RUN(tiled_matches_whole_with_masks_and_temporal);
    RUN(per_scale_iterations);
    RUN(plan_picks_tiles_then_history_then_refuses);
    return nst_test_end("test_tiling");
}
