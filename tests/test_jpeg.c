/* JPEG decoder and encoder tests (the >>jpeg section of nst.h).
 *
 * Reference decodes come from libjpeg-turbo 2.1.5's `djpeg -dct int` (accurate integer IDCT, fancy
 * upsampling). Tolerance, in 8-bit levels: max |error| <= 1 and mean <= 0.01 per file. Our decoder
 * reproduces libjpeg's arithmetic, so the measured error is 0 on every file (the tables printed below);
 * the slack of one level only allows for a libjpeg build whose SIMD rounds differently.
 * Fixtures: tests/fixtures/jpeg (WUFFS peacock set + refs) and tests/fixtures/jpeg/own (own/gen.sh).
 * Run from the repository root (as `make test` does). */
#define NST_IMPLEMENTATION
#include "nst.h"
#include "nst_test.h"
#include <stdlib.h>

#define FIX "tests/fixtures/jpeg/"
#define TOL_MAX 1.0
#define TOL_MEAN 0.01

/* ---- helpers -------------------------------------------------------------------------------------*/
static unsigned char *slurp(const char *path, size_t *n) {
    unsigned char *d = NULL;
    if (nst__read_file(path, (size_t)64 << 20, &d, n) != NST_OK) return NULL;
    return d;
}

/* Binary PGM/PPM with maxval 255 -> image (floats /255). */
static int read_pnm(const char *path, nst_image *im) {
    size_t n, i = 0, px;
    int v[4], k = 0, c;
    unsigned char *d = slurp(path, &n);
    if (!d) return 0;
    if (n < 3 || d[0] != 'P' || (d[1] != '5' && d[1] != '6')) { free(d); return 0; }
    c = d[1] == '6' ? 3 : 1;
    i = 2;
    while (k < 3 && i < n) {
        if (d[i] == '#') { while (i < n && d[i] != '\n') i++; continue; }
        if (d[i] >= '0' && d[i] <= '9') { v[k] = 0; while (i < n && d[i] >= '0' && d[i] <= '9') v[k] = v[k] * 10 + d[i++] - '0'; k++; continue; }
        i++;
    }
    i++;
    if (k < 3 || v[2] != 255 || nst_image_alloc(im, v[0], v[1], c) != NST_OK) { free(d); return 0; }
    px = (size_t)v[0] * v[1] * c;
    if (i + px > n) { free(d); nst_image_free(im); return 0; }
    for (k = 0; (size_t)k < px; k++) im->pixels[k] = d[i + k] / 255.0f;
    free(d);
    return 1;
}

/* max and mean |a - b| in 8-bit levels; -1 when the shapes differ */
static double img_err(const nst_image *a, const nst_image *b, double *mean) {
    size_t i, n;
    double mx = 0, s = 0;
    *mean = -1;
    if (a->width != b->width || a->height != b->height || a->channels != b->channels) return -1;
    n = (size_t)a->width * a->height * a->channels;
    for (i = 0; i < n; i++) {
        double e = fabs((double)a->pixels[i] - (double)b->pixels[i]) * 255.0;
        if (e > mx) mx = e;
        s += e;
    }
    *mean = s / (double)n;
    return mx;
}

static nst_status decode_file(const char *path, nst_image *im, int flags) {
    size_t n;
    nst_status st;
    unsigned char *d = slurp(path, &n);
    if (!d) return NST_ERR_IO;
    st = nst__jpeg_decode_ex(d, n, im, flags);
    free(d);
    return st;
}

static int image_sane(const nst_image *im) {
    size_t i, n;
    if (im->width < 1 || im->height < 1 || (im->channels != 1 && im->channels != 3) || !im->pixels) return 0;
    n = (size_t)im->width * im->height * im->channels;
    for (i = 0; i < n; i++)
        if (!(im->pixels[i] >= 0.0f && im->pixels[i] <= 1.0f)) return 0;
    return 1;
}

static double psnr(const nst_image *a, const nst_image *b) {
    size_t i, n = (size_t)a->width * a->height * a->channels;
    double s = 0;
    for (i = 0; i < n; i++) { double e = (a->pixels[i] - b->pixels[i]) * 255.0; s += e * e; }
    s /= (double)n;
    return s <= 0 ? 99.0 : 10.0 * log10(255.0 * 255.0 / s);
}

/* ---- decoding against libjpeg references ------------------------------------------------------------*/
TEST(wuffs_peacock_matches_djpeg) {
    static const char *files[][3] = {   /* jpeg, ref, ref-nosmooth ("" = same as ref) */
        {"peacock.s1x1-444.jpeg", "ref/peacock.s1x1-444.ppm", ""},
        {"peacock.s2x1-422.jpeg", "ref/peacock.s2x1-422.ppm", "ref-nosmooth/peacock.s2x1-422.ppm"},
        {"peacock.s2x2-420.jpeg", "ref/peacock.s2x2-420.ppm", "ref-nosmooth/peacock.s2x2-420.ppm"},
        {"peacock.grayscale.jpeg", "ref/peacock.grayscale.pgm", ""},
        {"peacock.progressive.jpeg", "ref/peacock.s2x2-420.ppm", "ref-nosmooth/peacock.s2x2-420.ppm"},
        {"peacock.restart-every-mcu.jpeg", "ref/peacock.s2x2-420.ppm", "ref-nosmooth/peacock.s2x2-420.ppm"}};
    size_t i;
    printf("  %-32s %-22s %-26s %s\n", "file (8-bit levels: max/mean)", "fancy vs ref", "fancy vs ref-nosmooth",
           "nosmooth mode vs ref-nosmooth");
    for (i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[256];
        nst_image im, ns, ref, refn;
        double mx, mean, mx2 = 0, mean2 = 0, mx3 = 0, mean3 = 0;
        snprintf(p, sizeof p, FIX "%s", files[i][0]);
        CHECK_OK(decode_file(p, &im, 0));
        CHECK_OK(decode_file(p, &ns, NST__JPEG_NOSMOOTH));
        snprintf(p, sizeof p, FIX "%s", files[i][1]);
        CHECK(read_pnm(p, &ref));
        mx = img_err(&im, &ref, &mean);
        CHECK_MSG(mx >= 0 && mx <= TOL_MAX && mean <= TOL_MEAN, "%s: max %g mean %g", files[i][0], mx, mean);
        if (files[i][2][0]) {
            snprintf(p, sizeof p, FIX "%s", files[i][2]);
            CHECK(read_pnm(p, &refn));
            mx2 = img_err(&im, &refn, &mean2);
            mx3 = img_err(&ns, &refn, &mean3);
            CHECK_MSG(mx3 >= 0 && mx3 <= TOL_MAX && mean3 <= TOL_MEAN, "%s nosmooth: max %g mean %g", files[i][0], mx3,
                      mean3);
            CHECK(mean2 > 0.5);   /* fancy upsampling really differs from replication */
            nst_image_free(&refn);
            printf("  %-32s %4.0f / %.4f          %4.0f / %.4f              %4.0f / %.4f\n", files[i][0], mx, mean, mx2,
                   mean2, mx3, mean3);
        } else {
            mx3 = img_err(&ns, &ref, &mean3);
            CHECK(mx3 == 0);   /* nothing to upsample: both modes identical */
            printf("  %-32s %4.0f / %.4f          (same as ref)\n", files[i][0], mx, mean);
        }
        nst_image_free(&im);
        nst_image_free(&ns);
        nst_image_free(&ref);
    }
}

TEST(own_fixtures_match_djpeg) {
    size_t n, i = 0;
    int count = 0;
    unsigned char *m = slurp(FIX "own/MANIFEST.tsv", &n);
    CHECK(m != NULL);
    if (!m) return;
    while (i < n && m[i] != '\n') i++;   /* header */
    i++;
    printf("  %-26s %-14s %s\n", "file", "max / mean", "covers");
    while (i < n) {
        char f[4][160];
        int k;
        for (k = 0; k < 4; k++) {
            size_t j = 0;
            while (i < n && m[i] != '\t' && m[i] != '\n') { if (j < 159) f[k][j++] = (char)m[i]; i++; }
            f[k][j] = 0;
            if (i < n && m[i] == '\t') i++;
        }
        while (i < n && m[i] != '\n') i++;
        i++;
        if (!f[0][0]) continue;
        {
            char p[256];
            nst_image im, ref;
            nst_status st;
            double mx, mean;
            snprintf(p, sizeof p, FIX "own/%s", f[0]);
            st = decode_file(p, &im, 0);
            count++;
            if (!strcmp(f[2], "unsupported")) {
                CHECK_MSG(st == NST_ERR_UNSUPPORTED, "%s: status %d", f[0], (int)st);
                printf("  %-26s %-14s %s: %s\n", f[0], "refused", f[3], nst_last_error());
                continue;
            }
            CHECK_MSG(st == NST_OK, "%s: %s", f[0], nst_last_error());
            if (st != NST_OK) continue;
            snprintf(p, sizeof p, FIX "own/%s", f[1]);
            CHECK(read_pnm(p, &ref));
            mx = img_err(&im, &ref, &mean);
            if (!strcmp(f[2], "approx")) /* an expectation of "close", not bit-exact (none today) */
                CHECK_MSG(mx >= 0 && mx <= 64 && mean <= 4, "%s: max %g mean %g", f[0], mx, mean);
            else
                CHECK_MSG(mx >= 0 && mx <= TOL_MAX && mean <= TOL_MEAN, "%s: max %g mean %g", f[0], mx, mean);
            printf("  %-26s %3.0f / %.4f   %s\n", f[0], mx, mean, f[3]);
            nst_image_free(&im);
            nst_image_free(&ref);
        }
    }
    CHECK(count >= 40);
    free(m);
}

/* ---- progressive files cut short: libjpeg's block smoothing ----------------------------------------------
 * Each progressive fixture cut right after each scan (and prog.jpg also in the middle of each scan's data,
 * a partial download) against djpeg -dct int's output of the same cut (own/cuts/, made by own/cuts/gen.py):
 * bit-exact. With djpeg installed, every progressive fixture's cuts are also compared live. */
static int jpeg_scan_ends(const unsigned char *b, size_t n, size_t *d0, size_t *e, int max) {
    size_t i = 2;
    int k = 0;
    while (i + 4 <= n && k < max) {
        unsigned m, seg;
        if (b[i] != 0xFF || b[i + 1] == 0x00 || b[i + 1] == 0xFF) { i++; continue; }
        m = b[i + 1];
        if (m == 0xD8 || m == 0xD9 || (m >= 0xD0 && m <= 0xD7)) { i += 2; continue; }
        seg = (unsigned)b[i + 2] << 8 | b[i + 3];
        if (m == 0xDA) {
            size_t j = i + 2 + seg;
            while (j + 1 < n && !(b[j] == 0xFF && b[j + 1] != 0x00 && b[j + 1] != 0xFF && !(b[j + 1] >= 0xD0 && b[j + 1] <= 0xD7)))
                j++;
            d0[k] = i + 2 + seg; e[k] = j; k++;
            i = j;
            continue;
        }
        i += 2 + seg;
    }
    return k;
}

static int have_djpeg(void) { return system("djpeg -version > /dev/null 2>&1") == 0; }

/* djpeg's decode of the first n bytes of b; 0 when djpeg gave nothing */
static int djpeg_cut(const unsigned char *b, size_t n, nst_image *ref) {
    FILE *f = fopen("build/tests/cut.jpg", "wb");
    int ok;
    if (!f) return 0;
    ok = fwrite(b, 1, n, f) == n;
    fclose(f);
    remove("build/tests/cut.pnm");
    if (!ok || system("djpeg -dct int -pnm -outfile build/tests/cut.pnm build/tests/cut.jpg > /dev/null 2>&1") < 0) return 0;
    return read_pnm("build/tests/cut.pnm", ref);
}

TEST(progressive_cuts_match_djpeg) {
    static const struct { const char *name; int mid; } files[] = {
        {"prog", 1}, {"prog_custom", 0}, {"gray_prog", 0}, {"size17x13_prog422", 0}};
    static const char *const live[] = {"prog", "prog444", "prog_custom", "prog_rst", "gray_prog", "size17x13_prog422",
                                       "size1x1_prog"};
    size_t d0[64], e[64];
    int f, k, checked = 0, live_cuts = 0, live_exact = 0;
    for (f = 0; f < (int)(sizeof files / sizeof files[0]); f++) {
        char path[256];
        size_t n;
        unsigned char *b;
        int ns;
        snprintf(path, sizeof path, FIX "own/%s.jpg", files[f].name);
        b = slurp(path, &n);
        CHECK(b != NULL);
        if (!b) continue;
        ns = jpeg_scan_ends(b, n, d0, e, 64);
        CHECK(ns >= 6);
        for (k = 0; k < ns; k++) {
            int mid;
            for (mid = 0; mid <= files[f].mid; mid++) {
                size_t cut = mid ? (d0[k] + e[k]) / 2 : e[k];
                nst_image im, ref;
                double mx, mean;
                snprintf(path, sizeof path, FIX "own/cuts/%s.%c%d.png", files[f].name, mid ? 'm' : 's', k + 1);
                if (nst_image_load(path, &ref) != NST_OK) { CHECK_MSG(0, "%s: %s", path, nst_last_error()); continue; }
                CHECK_OK(nst__jpeg_decode(b, cut, &im));
                if (im.pixels) {
                    mx = img_err(&im, &ref, &mean);
                    CHECK_MSG(mx == 0, "%s cut at %lu (%s scan %d): max %g mean %g", files[f].name, (unsigned long)cut,
                              mid ? "inside" : "after", k + 1, mx, mean);
                    checked++;
                    nst_image_free(&im);
                }
                nst_image_free(&ref);
            }
        }
        free(b);
    }
    CHECK(checked >= 50);
    if (have_djpeg()) {
        for (f = 0; f < (int)(sizeof live / sizeof live[0]); f++) {
            char path[256];
            size_t n;
            unsigned char *b;
            int ns;
            snprintf(path, sizeof path, FIX "own/%s.jpg", live[f]);
            if (!(b = slurp(path, &n))) continue;
            ns = jpeg_scan_ends(b, n, d0, e, 64);
            for (k = 0; k < 2 * ns; k++) {
                size_t cut = k % 2 ? (d0[k / 2] + e[k / 2]) / 2 : e[k / 2];
                nst_image im, ref;
                double mx, mean;
                /* a cut right after a 0xFF byte in a file with restart markers differs (before smoothing too) */
                if (cut <= d0[k / 2] || b[cut - 1] == 0xFF || !djpeg_cut(b, cut, &ref)) continue;
                if (nst__jpeg_decode(b, cut, &im) == NST_OK) {
                    mx = img_err(&im, &ref, &mean);
                    live_cuts++;
                    live_exact += mx == 0;
                    CHECK_MSG(mx == 0, "%s cut at %lu: max %g mean %g (live djpeg)", live[f], (unsigned long)cut, mx, mean);
                    nst_image_free(&im);
                }
                nst_image_free(&ref);
            }
            free(b);
        }
        printf("  %d cuts against the stored references, %d/%d bit-exact against djpeg live\n", checked, live_exact,
               live_cuts);
    } else {
        printf("  %d cuts against the stored references (no djpeg: live comparison skipped)\n", checked);
    }
}

/* The decoder must also work through the public loader once the dispatch in the >>image section sends JPEGs here. */
TEST(load_memory_dispatches_jpeg) {
    size_t n;
    nst_image a, b;
    nst_status st;
    unsigned char *d = slurp(FIX "own/orient6.jpg", &n);
    CHECK(d != NULL);
    if (!d) return;
    st = nst_image_load_memory(d, n, &a);
    if (st == NST_ERR_UNSUPPORTED || st == NST_ERR_FORMAT) { free(d); SKIP("nst_image_load_memory does not dispatch JPEG yet"); }
    CHECK_OK(st);
    CHECK_OK(nst__jpeg_decode(d, n, &b));
    CHECK(a.width == 15 && a.height == 23 && a.channels == 3);
    CHECK(a.width == b.width && a.height == b.height && !memcmp(a.pixels, b.pixels, sizeof(float) * 15 * 23 * 3));
    nst_image_free(&a);
    nst_image_free(&b);
    free(d);
}

/* ---- refusals and limits -------------------------------------------------------------------------------*/
static long find_marker(const unsigned char *d, size_t n, int m) {
    size_t i = 2;
    while (i + 4 <= n) {
        if (d[i] != 0xFF) return -1;
        if (d[i + 1] == m) return (long)i;
        if (d[i + 1] == 0xDA) return -1;
        i += 2 + (size_t)(d[i + 2] << 8 | d[i + 3]);
    }
    return -1;
}

TEST(refuses_unsupported_clearly) {
    size_t n;
    nst_image im;
    long sof;
    unsigned char *d = slurp(FIX "peacock.s1x1-444.jpeg", &n), *c;
    static const int sofs[] = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF};
    size_t i;
    CHECK(d != NULL);
    if (!d) return;
    sof = find_marker(d, n, 0xC0);
    CHECK(sof > 0);
    c = (unsigned char *)malloc(n);
    for (i = 0; i < sizeof sofs / sizeof sofs[0]; i++) {   /* lossless, hierarchical, arithmetic */
        memcpy(c, d, n);
        c[sof + 1] = (unsigned char)sofs[i];
        CHECK_MSG(nst__jpeg_decode(c, n, &im) == NST_ERR_UNSUPPORTED, "SOF 0x%02X", sofs[i]);
        CHECK(im.pixels == NULL);
    }
    memcpy(c, d, n);
    c[sof + 4] = 12;   /* 12-bit precision */
    CHECK(nst__jpeg_decode(c, n, &im) == NST_ERR_UNSUPPORTED);
    CHECK(strstr(nst_last_error(), "12-bit") != NULL);
    memcpy(c, d, n);
    c[sof + 5] = c[sof + 6] = 0;   /* height 0: defined later by DNL */
    CHECK(nst__jpeg_decode(c, n, &im) == NST_ERR_UNSUPPORTED);
    /* arithmetic conditioning segment */
    CHECK(decode_file(FIX "own/arith.jpg", &im, 0) == NST_ERR_UNSUPPORTED);
    CHECK(strstr(nst_last_error(), "arithmetic") != NULL);
    /* not a JPEG, empty, headers only */
    CHECK(nst__jpeg_decode((const unsigned char *)"P6\n1 1\n255\n", 11, &im) == NST_ERR_FORMAT);
    CHECK(nst__jpeg_decode(d, 0, &im) == NST_ERR_FORMAT);
    CHECK(nst__jpeg_decode(d, 2, &im) == NST_ERR_FORMAT);
    CHECK(nst__jpeg_decode(d, (size_t)find_marker(d, n, 0xC4), &im) == NST_ERR_FORMAT);
    CHECK(strstr(nst_last_error(), "jpeg:") != NULL);
    free(c);
    free(d);
}

TEST(limits_checked_before_allocation) {
    size_t n;
    nst_image im;
    nst_image_limits lim;
    long sof;
    unsigned char *d = slurp(FIX "peacock.s2x2-420.jpeg", &n);
    CHECK(d != NULL);
    if (!d) return;
    memset(&lim, 0, sizeof lim);
    lim.max_pixels = 100 * 74;
    nst_image_set_limits(&lim);
    CHECK(nst__jpeg_decode(d, n, &im) == NST_ERR_LIMIT);
    lim.max_pixels = 100 * 75;
    nst_image_set_limits(&lim);
    CHECK_OK(nst__jpeg_decode(d, n, &im));
    nst_image_free(&im);
    nst_image_set_limits(NULL);
    /* a 65535x65535 header over 2 KB of data: refused by the default pixel limit, nothing allocated */
    sof = find_marker(d, n, 0xC0);
    d[sof + 5] = d[sof + 6] = d[sof + 7] = d[sof + 8] = 0xFF;
    CHECK(nst__jpeg_decode(d, n, &im) == NST_ERR_LIMIT);
    CHECK(strstr(nst_last_error(), "65535x65535") != NULL);
    free(d);
}

/* A progressive file may not ask for unbounded work: more than 1000 scans is refused. */
TEST(scan_count_is_capped) {
    size_t n, i, end, m;
    int extra;
    unsigned char *d = slurp(FIX "own/prog.jpg", &n), *f;
    static const unsigned char sos[15] = {0xFF, 0xDA, 0x00, 0x0C, 3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 0, 0x10, 0x00};
    CHECK(d != NULL);
    if (!d) return;
    end = (size_t)find_marker(d, n, 0xDA) + 2;   /* end of the first scan's data */
    while (end + 1 < n && !(d[end] == 0xFF && d[end + 1] != 0 && (d[end + 1] < 0xD0 || d[end + 1] > 0xD7))) end++;
    f = (unsigned char *)malloc(end + 1100 * sizeof sos + 2);
    for (extra = 900; extra <= 1000; extra += 100) {   /* 901 scans decode, 1001 are refused */
        nst_image im;
        nst_status st;
        memcpy(f, d, end);
        m = end;
        for (i = 0; i < (size_t)extra; i++) { memcpy(f + m, sos, sizeof sos); m += sizeof sos; }   /* DC refinements */
        f[m++] = 0xFF; f[m++] = 0xD9;
        st = nst__jpeg_decode(f, m, &im);
        if (extra == 900) CHECK_OK(st);
        else CHECK(st == NST_ERR_LIMIT && strstr(nst_last_error(), "scans") != NULL);
        nst_image_free(&im);
    }
    free(f);
    free(d);
}

/* ---- EXIF ---------------------------------------------------------------------------------------------*/
static size_t exif_blob(unsigned char *b, int le, unsigned ifd_off, unsigned count, unsigned type, unsigned val) {
    size_t i = 0;
#define W16(v) do { unsigned w_ = (v); if (le) { b[i++] = (unsigned char)(w_ & 255); b[i++] = (unsigned char)(w_ >> 8); } \
                    else { b[i++] = (unsigned char)(w_ >> 8); b[i++] = (unsigned char)(w_ & 255); } } while (0)
#define W32(v) do { unsigned long w32_ = (v); if (le) { W16(w32_ & 0xFFFF); W16(w32_ >> 16); } \
                    else { W16(w32_ >> 16); W16(w32_ & 0xFFFF); } } while (0)
    memcpy(b, "Exif\0\0", 6); i = 6;
    b[i++] = le ? 'I' : 'M'; b[i++] = le ? 'I' : 'M';
    W16(42); W32(ifd_off);
    W16(count);
    W16(0x0112); W16(type); W32(1); W16(val); W16(0);
    W32(0);
#undef W16
#undef W32
    return i;
}

TEST(exif_orientation_parsing_is_bounds_checked) {
    unsigned char b[64];
    size_t n;
    int le, k;
    for (le = 0; le < 2; le++) {
        n = exif_blob(b, le, 8, 1, 3, 6);
        CHECK(nst__jpeg_exif_orientation(b, n) == 6);
        n = exif_blob(b, le, 8, 1, 3, 9);
        CHECK(nst__jpeg_exif_orientation(b, n) == 0);    /* out of range value */
        n = exif_blob(b, le, 8, 1, 7, 6);
        CHECK(nst__jpeg_exif_orientation(b, n) == 0);    /* wrong type */
        n = exif_blob(b, le, 4000, 1, 3, 6);
        CHECK(nst__jpeg_exif_orientation(b, n) == 0);    /* IFD offset past the end */
        n = exif_blob(b, le, 0xFFFFFFF0u, 1, 3, 6);
        CHECK(nst__jpeg_exif_orientation(b, n) == 0);    /* offset that would wrap */
        n = exif_blob(b, le, 8, 60000, 3, 3);
        CHECK(nst__jpeg_exif_orientation(b, n) == 3);    /* huge count: found before running off the end */
        n = exif_blob(b, le, 8, 60000, 3, 3);
        b[6 + 8 + 2] = 0x99;                              /* ... and not found: stops at the end, no read past */
        CHECK(nst__jpeg_exif_orientation(b, n) == 0);
        n = exif_blob(b, le, 8, 1, 3, 6);
        for (k = 0; k < (int)n; k++) (void)nst__jpeg_exif_orientation(b, (size_t)k);   /* every truncation */
    }
    memcpy(b, "Exif\0\0XX", 8);
    CHECK(nst__jpeg_exif_orientation(b, 20) == 0);
}

TEST(exif_orientation_applied) {
    int o;
    nst_image base;
    CHECK_OK(decode_file(FIX "own/orient1.jpg", &base, 0));
    for (o = 1; o <= 8; o++) {
        char p[128];
        nst_image im;
        int x, y, ok = 1;
        snprintf(p, sizeof p, FIX "own/orient%d.jpg", o);
        CHECK_OK(decode_file(p, &im, 0));
        CHECK(im.width == (o >= 5 ? 15 : 23) && im.height == (o >= 5 ? 23 : 15));
        for (y = 0; y < base.height && ok; y++)   /* the mapping, stated independently of the decoder's */
            for (x = 0; x < base.width; x++) {
                int X = x, Y = y, W = base.width, H = base.height;
                switch (o) {
                case 2: X = W - 1 - x; break;
                case 3: X = W - 1 - x; Y = H - 1 - y; break;
                case 4: Y = H - 1 - y; break;
                case 5: X = y; Y = x; break;
                case 6: X = H - 1 - y; Y = x; break;
                case 7: X = H - 1 - y; Y = W - 1 - x; break;
                case 8: X = y; Y = W - 1 - x; break;
                }
                if (memcmp(base.pixels + ((size_t)y * W + x) * 3, im.pixels + ((size_t)Y * im.width + X) * 3, 12)) ok = 0;
            }
        CHECK_MSG(ok, "orientation %d", o);
        nst_image_free(&im);
    }
    nst_image_free(&base);
}

/* ---- robustness: truncated and bit-flipped versions of every fixture --------------------------------------*/
static const char *all_fixtures[] = {
    "peacock.s1x1-444.jpeg", "peacock.s2x1-422.jpeg", "peacock.s2x2-420.jpeg", "peacock.grayscale.jpeg",
    "peacock.progressive.jpeg", "peacock.restart-every-mcu.jpeg", "own/s422.jpg", "own/s411.jpg", "own/s440.jpg",
    "own/s22_12.jpg", "own/s21_12_11.jpg", "own/s11_22_11.jpg", "own/s31.jpg", "own/s42.jpg", "own/seq_3scans.jpg",
    "own/prog.jpg", "own/prog444.jpg", "own/prog_custom.jpg", "own/prog_rst.jpg", "own/rst_row.jpg", "own/rst7.jpg",
    "own/rst_seq.jpg", "own/gray_prog.jpg", "own/gray_rst.jpg", "own/rgb.jpg", "own/cmyk.jpg", "own/ycck.jpg",
    "own/q3_dqt16.jpg", "own/q100.jpg", "own/optimize.jpg", "own/icc.jpg", "own/size1x1.jpg", "own/size1x1_prog.jpg",
    "own/size17x13.jpg", "own/size17x13_444.jpg", "own/size17x13_prog422.jpg", "own/arith.jpg", "own/trunc_base.jpg",
    "own/trunc_prog.jpg", "own/trunc_prog_early.jpg", "own/trunc_rst.jpg", "own/orient3.jpg", "own/orient6.jpg"};

static int try_decode(const unsigned char *d, size_t n) {   /* 1 = clean outcome */
    nst_image im;
    nst_status st = nst__jpeg_decode(d, n, &im);
    int ok = st == NST_OK ? image_sane(&im) : (im.pixels == NULL && nst_last_error()[0] != 0);
    nst_image_free(&im);
    return ok;
}

TEST(truncated_and_bitflipped_never_crash) {
    size_t f;
    nst__rng rng;
    long decoded = 0, refused = 0;
    rng.s = 12345;
    for (f = 0; f < sizeof all_fixtures / sizeof all_fixtures[0]; f++) {
        char p[256];
        size_t n, cut, i;
        int t;
        unsigned char *d, *c;
        snprintf(p, sizeof p, FIX "%s", all_fixtures[f]);
        d = slurp(p, &n);
        CHECK_MSG(d != NULL, "%s", p);
        if (!d) continue;
        c = (unsigned char *)malloc(n);
        for (cut = 0; cut < n; cut += 1 + n / 97) {   /* ~100 truncations each, in a buffer of exactly that size */
            unsigned char *t2 = (unsigned char *)malloc(cut ? cut : 1);
            memcpy(t2, d, cut);
            CHECK_MSG(try_decode(t2, cut), "%s cut at %lu", p, (unsigned long)cut);
            free(t2);
        }
        for (t = 0; t < 150; t++) {   /* 1-4 flipped bits, or a random byte, anywhere */
            int k, nflip = 1 + (int)(nst__rng_next(&rng) % 4);
            nst_image im;
            nst_status st;
            memcpy(c, d, n);
            for (k = 0; k < nflip; k++) {
                i = (size_t)(nst__rng_next(&rng) % n);
                if (t % 5 == 4) c[i] = (unsigned char)nst__rng_next(&rng);
                else c[i] ^= (unsigned char)(1u << (nst__rng_next(&rng) % 8));
            }
            st = nst__jpeg_decode(c, n, &im);
            if (st == NST_OK) { CHECK_MSG(image_sane(&im), "%s flip %d", p, t); decoded++; }
            else { CHECK(im.pixels == NULL); refused++; }
            nst_image_free(&im);
        }
        free(c);
        free(d);
    }
    printf("  bit-flipped variants: %ld decoded, %ld refused\n", decoded, refused);
}

/* A damaged RST marker: the decoder resynchronises at the next one by its number, so only the damaged
 * intervals are lost (libjpeg loses the same amount, with different garbage in them). */
TEST(corrupt_restart_marker_resyncs) {
    size_t n, i, tail;
    int hit = 0;
    nst_image ref, im;
    double mx, mean;
    unsigned char *d = slurp(FIX "own/rst7.jpg", &n);   /* 61x45 4:4:4, 8x6 MCUs, DRI=7 */
    CHECK(d != NULL);
    if (!d) return;
    CHECK_OK(nst__jpeg_decode(d, n, &ref));
    for (i = (size_t)find_marker(d, n, 0xDA); i + 1 < n; i++)
        if (d[i] == 0xFF && d[i + 1] >= 0xD0 && d[i + 1] <= 0xD7 && ++hit == 2) { d[i + 1] = 0x00; d[i] = 0x12; break; }
    CHECK(hit == 2);
    CHECK_OK(nst__jpeg_decode(d, n, &im));
    mx = img_err(&im, &ref, &mean);
    CHECK(mx >= 0 && mean > 0 && mean < 15.0);
    /* intervals 2 and 3 (MCUs 7..20) are gone; from MCU row 3 on, everything is intact */
    tail = (size_t)24 * 61 * 3;
    CHECK(im.pixels && !memcmp(im.pixels + tail, ref.pixels + tail, sizeof(float) * ((size_t)61 * 45 * 3 - tail)));
    printf("  one RST marker destroyed: max %.0f mean %.3f levels vs the intact decode; MCU rows 3-5 exact\n", mx, mean);
    nst_image_free(&im);
    nst_image_free(&ref);
    free(d);
}

/* ---- encoder ------------------------------------------------------------------------------------------*/
static nst_status encode_decode(const nst_image *src, int q, int c420, int opt, nst_image *dec, size_t *bytes) {
    nst__buf b;
    nst_status st;
    memset(&b, 0, sizeof b);
    st = nst__jpeg_encode_ex(src, q, c420, opt, &b);
    if (st == NST_OK) st = nst__jpeg_decode(b.data, b.len, dec);
    if (bytes) *bytes = b.len;
    nst__buf_free(&b);
    return st;
}

TEST(encode_roundtrip_psnr) {
    nst_image src, dec;
    size_t b444, b420, b10, bstd;
    double p444, p420, p10;
    CHECK(read_pnm(FIX "peacock.ppm", &src));
    CHECK_OK(encode_decode(&src, 90, 0, 1, &dec, &b444));
    p444 = psnr(&src, &dec);
    nst_image_free(&dec);
    CHECK_OK(encode_decode(&src, 90, 1, 1, &dec, &b420));
    p420 = psnr(&src, &dec);
    nst_image_free(&dec);
    CHECK_OK(encode_decode(&src, 10, 1, 1, &dec, &b10));
    p10 = psnr(&src, &dec);
    nst_image_free(&dec);
    CHECK_OK(encode_decode(&src, 90, 1, 0, &dec, &bstd));
    nst_image_free(&dec);
    printf("  peacock 100x75: q90 4:4:4 %.2f dB %lu B, q90 4:2:0 %.2f dB %lu B (standard tables %lu B), q10 %.2f dB %lu B\n",
           p444, (unsigned long)b444, p420, (unsigned long)b420, (unsigned long)bstd, p10, (unsigned long)b10);
    CHECK(p444 > 34.0);    /* bounds ~1.5 dB under the measured values */
    CHECK(p420 > 29.0);
    CHECK(b10 < b420 / 2);
    CHECK(b420 < bstd);    /* optimised tables help */
    CHECK(p10 > 20.0 && p10 < p420);
    nst_image_free(&src);
}

TEST(encode_channels_sizes_and_bad_values) {
    static const int sizes[][2] = {{1, 1}, {17, 13}, {8, 8}, {16, 16}, {33, 7}, {7, 33}};
    size_t s;
    int ch;
    for (s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (ch = 1; ch <= 4; ch++) {
            nst_image src, dec;
            size_t i, n;
            int c420;
            CHECK_OK(nst_image_alloc(&src, sizes[s][0], sizes[s][1], ch));
            n = (size_t)src.width * src.height * ch;
            for (i = 0; i < n; i++) src.pixels[i] = (float)((i * 37) % 101) / 100.0f;
            if (ch == 2 || ch == 4)   /* fully transparent -> white */
                for (i = 0; i < (size_t)src.width * src.height; i++) src.pixels[i * ch + ch - 1] = 0.0f;
            for (c420 = 0; c420 < 2; c420++) {
                CHECK_OK(encode_decode(&src, 95, c420, c420, &dec, NULL));
                CHECK(dec.width == src.width && dec.height == src.height && dec.channels == (ch <= 2 ? 1 : 3));
                if (ch == 2 || ch == 4) {
                    size_t k, m = (size_t)dec.width * dec.height * dec.channels;
                    float mn = 1;
                    for (k = 0; k < m; k++) mn = dec.pixels[k] < mn ? dec.pixels[k] : mn;
                    CHECK_MSG(mn > 0.98f, "alpha over white: min %g", mn);
                }
                nst_image_free(&dec);
            }
            nst_image_free(&src);
        }
    {   /* NaN, infinities and out-of-range values are clamped, not undefined behaviour */
        nst_image src, dec;
        CHECK_OK(nst_image_alloc(&src, 9, 9, 3));
        src.pixels[0] = NAN; src.pixels[1] = -5; src.pixels[2] = 7; src.pixels[3] = INFINITY; src.pixels[4] = -INFINITY;
        CHECK_OK(encode_decode(&src, 50, 1, 1, &dec, NULL));
        CHECK(image_sane(&dec));
        nst_image_free(&dec);
        src.width = 0;
        CHECK(encode_decode(&src, 50, 1, 1, &dec, NULL) == NST_ERR_ARGUMENT);
        src.width = 9; src.channels = 5;
        CHECK(encode_decode(&src, 50, 1, 1, &dec, NULL) == NST_ERR_ARGUMENT);
        src.channels = 3;
        nst_image_free(&src);
    }
}

/* Quantisation tables: libjpeg's jpeg_quality_scaling of the Annex K tables, read back from the DQT. */
TEST(encode_quality_scaling_like_libjpeg) {
    static const int qs[] = {1, 10, 25, 50, 75, 90, 100};
    nst_image src;
    size_t k;
    CHECK_OK(nst_image_alloc(&src, 8, 8, 3));
    for (k = 0; k < sizeof qs / sizeof qs[0]; k++) {
        nst__buf b;
        long dqt;
        int i, t, scale = qs[k] < 50 ? 5000 / qs[k] : 200 - 2 * qs[k];
        memset(&b, 0, sizeof b);
        CHECK_OK(nst__jpeg_encode(&src, qs[k], 1, &b));
        dqt = find_marker(b.data, b.len, 0xDB);
        CHECK(dqt > 0 && b.data[dqt + 2] == 0 && b.data[dqt + 3] == 132);
        for (t = 0; t < 2 && dqt > 0; t++)
            for (i = 0; i < 64; i++) {
                long v = (nst__jpeg_std_q[t][nst__jpeg_natural[i]] * (long)scale + 50) / 100;
                v = v < 1 ? 1 : v > 255 ? 255 : v;
                CHECK(b.data[dqt + 4 + 65 * t] == t && b.data[dqt + 5 + 65 * t + i] == v);
            }
        nst__buf_free(&b);
    }
    nst_image_free(&src);
}

/* Our files decode in libjpeg exactly as in our decoder (when djpeg is installed). */
TEST(encoder_output_decodes_in_djpeg) {
    static const int modes[][4] = {{3, 90, 1, 1}, {3, 90, 0, 1}, {3, 75, 1, 0}, {1, 90, 0, 1}, {4, 30, 1, 1}};
    nst_image src;
    size_t m;
    char cmd[512], jp[64], pp[64];
    if (system("command -v djpeg >/dev/null 2>&1") != 0) SKIP("djpeg not installed");
    CHECK(read_pnm(FIX "peacock.ppm", &src));
    snprintf(jp, sizeof jp, "/tmp/nst_test_jpeg_%d.jpg", (int)((long)(nst__now() * 1e6) % 1000000));
    snprintf(pp, sizeof pp, "/tmp/nst_test_jpeg_%d.pnm", (int)((long)(nst__now() * 1e6) % 1000000));
    for (m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        nst_image in, ours, theirs;
        nst__buf b;
        double mx, mean;
        size_t i;
        CHECK_OK(nst_image_alloc(&in, src.width, src.height, modes[m][0]));
        for (i = 0; i < (size_t)src.width * src.height; i++) {
            int c;
            for (c = 0; c < modes[m][0]; c++) in.pixels[i * modes[m][0] + c] = c < 3 ? src.pixels[i * 3 + c] : 0.5f;
        }
        memset(&b, 0, sizeof b);
        CHECK_OK(nst__jpeg_encode_ex(&in, modes[m][1], modes[m][2], modes[m][3], &b));
        CHECK_OK(nst__write_file_atomic(jp, b.data, b.len));
        CHECK_OK(nst__jpeg_decode(b.data, b.len, &ours));
        snprintf(cmd, sizeof cmd, "djpeg -dct int -pnm -outfile %s %s", pp, jp);
        CHECK(system(cmd) == 0);
        CHECK(read_pnm(pp, &theirs));
        mx = img_err(&ours, &theirs, &mean);
        CHECK_MSG(mx == 0, "mode %lu: max %g mean %g", (unsigned long)m, mx, mean);
        nst_image_free(&in); nst_image_free(&ours); nst_image_free(&theirs);
        nst__buf_free(&b);
    }
    remove(jp);
    remove(pp);
    nst_image_free(&src);
}

int main(int argc, char **argv) {
    nst_test_begin(argc, argv);
    RUN(wuffs_peacock_matches_djpeg);
    RUN(own_fixtures_match_djpeg);
    RUN(progressive_cuts_match_djpeg);
    RUN(load_memory_dispatches_jpeg);
    RUN(refuses_unsupported_clearly);
    RUN(limits_checked_before_allocation);
    RUN(scan_count_is_capped);
    RUN(exif_orientation_parsing_is_bounds_checked);
    RUN(exif_orientation_applied);
    RUN(truncated_and_bitflipped_never_crash);
    RUN(corrupt_restart_marker_resyncs);
    RUN(encode_roundtrip_psnr);
    RUN(encode_channels_sizes_and_bad_values);
    RUN(encode_quality_scaling_like_libjpeg);
    RUN(encoder_output_decodes_in_djpeg);
    return nst_test_end("test_jpeg");
}
