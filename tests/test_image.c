/* Image I/O except JPEG: zlib, PNG, PPM/PGM/PAM, load/save dispatch, resampling, colour helpers.
 * Fixtures: tests/fixtures/png (PngSuite samples with reference pixels, gen/ made by make_fixtures.py)
 * and tests/fixtures/ppm (make_fixtures.py). Run from the repository root. */
#define NST_IMPLEMENTATION
#include "nst.h"
#include "nst_test.h"

#define PNG_DIR "tests/fixtures/png/"
#define PPM_DIR "tests/fixtures/ppm/"

static unsigned char *slurp(const char *path, size_t *n) {
    unsigned char *d = NULL;
    if (nst__read_file(path, (size_t)1 << 30, &d, n) != NST_OK) {
        fprintf(stderr, "  cannot read %s: %s\n", path, nst_last_error());
        return NULL;
    }
    return d;
}
static int q16(float v) { return (int)(v * 65535.0f + 0.5f); }
static int q8(float v) { return (int)(v * 255.0f + 0.5f); }

/* deterministic test pattern in [0,1] with 'levels' distinct values per sample */
static void fill_pattern(nst_image *img, int levels, unsigned seed) {
    size_t i, n = (size_t)img->width * img->height * img->channels;
    nst__rng r;
    r.s = seed;
    for (i = 0; i < n; i++) {
        size_t px = i / (size_t)img->channels;
        int x = (int)(px % (size_t)img->width), y = (int)(px / (size_t)img->width);
        int v = (x * 5 + y * 3 + (int)(i % (size_t)img->channels) * 40 + (int)(nst__rng_next(&r) % 7)) % levels;
        img->pixels[i] = (float)v / (float)(levels - 1);
    }
}

/* ---- zlib --------------------------------------------------------------------------------------------*/
TEST(inflate_known_streams) {
    /* zlib.compress(b"hello hello hello hello", 9) from Python, and a hand-made stored block */
    static const unsigned char z[] = {0x78, 0xda, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x57, 0xc8, 0x40, 0x27, 0x01,
                                      0x68, 0x03, 0x08, 0xb1};
    static const unsigned char stored[] = {0x01, 0x03, 0x00, 0xfc, 0xff, 'a', 'b', 'c'};
    unsigned char *out;
    size_t n;
    CHECK_OK(nst__inflate(z, sizeof z, 1, 1000, &out, &n));
    CHECK(n == 23 && out && !memcmp(out, "hello hello hello hello", 23));
    nst__free(out);
    CHECK_OK(nst__inflate(stored, sizeof stored, 0, 1000, &out, &n));
    CHECK(n == 3 && out && !memcmp(out, "abc", 3));
    nst__free(out);
}

TEST(inflate_rejects_bad_streams) {
    static const unsigned char z[] = {0x78, 0xda, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x57, 0xc8, 0x40, 0x27, 0x01,
                                      0x68, 0x03, 0x08, 0xb1};
    unsigned char bad[sizeof z], *out;
    size_t n, k;
    memcpy(bad, z, sizeof z);
    bad[sizeof z - 1] ^= 1;   /* Adler-32 */
    CHECK(nst__inflate(bad, sizeof bad, 1, 1000, &out, &n) == NST_ERR_FORMAT);
    CHECK(strstr(nst_last_error(), "Adler") != NULL);
    CHECK(out == NULL);
    {   /* block type 3 */
        static const unsigned char t3[] = {0x07, 0x00};
        CHECK(nst__inflate(t3, sizeof t3, 0, 1000, &out, &n) == NST_ERR_FORMAT);
        CHECK(strstr(nst_last_error(), "block type") != NULL);
    }
    {   /* stored block whose NLEN does not complement LEN */
        static const unsigned char st[] = {0x01, 0x03, 0x00, 0xfc, 0xfe, 'a', 'b', 'c'};
        CHECK(nst__inflate(st, sizeof st, 0, 1000, &out, &n) == NST_ERR_FORMAT);
    }
    {   /* fixed block: a match at distance 1 before any output (code 257 = 0000001, dist code 0 = 00000) */
        static const unsigned char far[] = {0x03, 0x02, 0x00};
        CHECK(nst__inflate(far, sizeof far, 0, 1000, &out, &n) == NST_ERR_FORMAT);
    }
    CHECK(nst__inflate(z, 2, 1, 1000, &out, &n) == NST_ERR_FORMAT);   /* header only */
    for (k = 0; k < sizeof z; k++) {   /* every truncation fails cleanly */
        nst_status st = nst__inflate(z, k, 1, 1000, &out, &n);
        CHECK(st != NST_OK);
        if (st == NST_OK) nst__free(out);
    }
    {
        static const unsigned char hdr[] = {0x78, 0xda};
        bad[0] = 0x79;
        CHECK(nst__inflate(bad, sizeof bad, 1, 1000, &out, &n) == NST_ERR_FORMAT);   /* bad CMF */
        CHECK(nst__inflate(hdr, 0, 1, 1000, &out, &n) == NST_ERR_FORMAT);
    }
}

TEST(inflate_limit_stops_bombs) {
    size_t n = 4 << 20, m;
    unsigned char *zeros = (unsigned char *)calloc(n, 1), *out;
    nst__buf z;
    memset(&z, 0, sizeof z);
    CHECK_OK(nst__deflate(zeros, n, 1, 9, &z));
    CHECK(z.len < n / 500);   /* 4 MiB of zeros: ~4 KiB */
    CHECK(nst__inflate(z.data, z.len, 1, 100000, &out, &m) == NST_ERR_LIMIT);
    CHECK(strstr(nst_last_error(), "limit") != NULL);
    CHECK_OK(nst__inflate(z.data, z.len, 1, n, &out, &m));
    CHECK(m == n);
    nst__free(out);
    nst__buf_free(&z);
    free(zeros);
}

TEST(deflate_roundtrip_all_levels) {
    size_t sizes[] = {0, 1, 2, 3, 100, 65535, 65536, 70000, 300000};
    int kinds, level, wrap, si;
    unsigned char *data = (unsigned char *)malloc(300000), *out;
    for (kinds = 0; kinds < 4; kinds++) {
        size_t i;
        nst__rng r;
        r.s = (uint64_t)kinds + 1;
        for (i = 0; i < 300000; i++) {
            switch (kinds) {
            case 0: data[i] = (unsigned char)nst__rng_next(&r); break;                 /* incompressible */
            case 1: data[i] = 0; break;                                                /* runs */
            case 2: data[i] = (unsigned char)("the quick brown fox "[i % 20] + (nst__rng_next(&r) % 50 == 0)); break;
            default: data[i] = (unsigned char)((i / 3) % 251 + (i % 3) * (i / 1000)); /* image-like */
            }
        }
        for (si = 0; si < (int)(sizeof sizes / sizeof sizes[0]); si++)
            for (level = 0; level <= 9; level++)
                for (wrap = 0; wrap <= 1; wrap++) {
                    nst__buf z;
                    size_t m;
                    nst_status st;
                    if (sizes[si] > 70000 && level % 3 != 0) continue;   /* keep it fast */
                    memset(&z, 0, sizeof z);
                    CHECK_OK(nst__deflate(data, sizes[si], wrap, level, &z));
                    st = nst__inflate(z.data, z.len, wrap, sizes[si] + 1, &out, &m);
                    CHECK_MSG(st == NST_OK && m == sizes[si] && (m == 0 || !memcmp(out, data, m)),
                              "kind %d size %lu level %d wrap %d: %s", kinds, (unsigned long)sizes[si], level, wrap,
                              st ? nst_last_error() : "mismatch");
                    if (st == NST_OK) nst__free(out);
                    /* random data never grows by more than the stored-block overhead */
                    if (kinds == 0) CHECK(z.len <= sizes[si] + 5 * (sizes[si] / 16384 + 1) + 6);
                    if (kinds == 1 && level > 0 && sizes[si] >= 65536) CHECK(z.len < sizes[si] / 200);
                    nst__buf_free(&z);
                }
    }
    free(data);
}

/* ---- PNG decode --------------------------------------------------------------------------------------*/
TEST(pngsuite_exact) {
    static const char *names[] = {"basi6a08", "basn0g08", "basn2c08", "basn3p08", "basn6a08", "tbbn3p08"};
    static const int chans[] = {4, 1, 3, 3, 4, 4};
    int i;
    for (i = 0; i < 6; i++) {
        char path[256];
        nst_image a, ref;
        size_t k, n;
        int bad = 0;
        snprintf(path, sizeof path, PNG_DIR "%s.png", names[i]);
        CHECK_OK(nst_image_load(path, &a));
        snprintf(path, sizeof path, PNG_DIR "ref/%s.pam", names[i]);
        CHECK_OK(nst_image_load(path, &ref));
        if (!a.pixels || !ref.pixels) continue;
        CHECK(a.channels == chans[i]);
        CHECK(ref.channels == 4 && a.width == ref.width && a.height == ref.height);
        n = (size_t)a.width * a.height;
        for (k = 0; k < n; k++) {   /* the references are RGBA */
            int c, ch = a.channels;
            for (c = 0; c < 4; c++) {
                float v = c < 3 ? a.pixels[k * ch + (ch >= 3 ? c : 0)] : (ch == 2 || ch == 4) ? a.pixels[k * ch + ch - 1] : 1.0f;
                bad += q8(v) != q8(ref.pixels[k * 4 + c]);
            }
        }
        CHECK_MSG(bad == 0, "%s: %d samples differ from the reference", names[i], bad);
        nst_image_free(&a);
        nst_image_free(&ref);
    }
}

/* Reads gen/MANIFEST: "name channels" per line. */
static int read_manifest(char names[][64], int *chans, int max) {
    FILE *f = fopen(PNG_DIR "gen/MANIFEST", "r");
    int n = 0;
    if (!f) return 0;
    while (n < max && fscanf(f, "%63s %d", names[n], &chans[n]) == 2) n++;
    fclose(f);
    return n;
}

TEST(png_features_exact) {
    static char names[128][64];
    static int chans[128];
    int n = read_manifest(names, chans, 128), i;
    CHECK_MSG(n >= 45, "only %d fixtures in the manifest", n);
    for (i = 0; i < n; i++) {
        char path[256];
        nst_image a, ref;
        size_t k, cnt;
        int bad = 0;
        snprintf(path, sizeof path, PNG_DIR "gen/%.63s.png", names[i]);
        CHECK_OK(nst_image_load(path, &a));
        snprintf(path, sizeof path, PNG_DIR "gen/%.63s.pam", names[i]);
        CHECK_OK(nst_image_load(path, &ref));
        if (!a.pixels || !ref.pixels) { nst_image_free(&a); nst_image_free(&ref); continue; }
        CHECK_MSG(a.channels == chans[i] && ref.channels == chans[i], "%s: %d channels, expected %d", names[i],
                  a.channels, chans[i]);
        CHECK(a.width == ref.width && a.height == ref.height);
        if (a.channels != ref.channels || a.width != ref.width || a.height != ref.height) continue;
        cnt = (size_t)a.width * a.height * a.channels;
        for (k = 0; k < cnt; k++) bad += q16(a.pixels[k]) != q16(ref.pixels[k]);
        CHECK_MSG(bad == 0, "%s: %d samples differ", names[i], bad);
        nst_image_free(&a);
        nst_image_free(&ref);
    }
}

TEST(png_16bit_keeps_precision) {
    nst_image a;
    size_t k, n;
    int fine = 0;
    CHECK_OK(nst_image_load(PNG_DIR "gen/rgb16.png", &a));
    if (!a.pixels) return;
    n = (size_t)a.width * a.height * 3;
    for (k = 0; k < n; k++) {
        float v = a.pixels[k] * 65535.0f;
        CHECK(fabsf(v - floorf(v + 0.5f)) < 0.02f);    /* exactly on the 16-bit grid */
        fine += (q16(a.pixels[k]) % 257) != 0;         /* not representable in 8 bits */
    }
    CHECK(fine > (int)n / 2);
    nst_image_free(&a);
}

TEST(png_errors_name_the_problem) {
    size_t n;
    unsigned char *d = slurp(PNG_DIR "gen/rgb8.png", &n);
    nst_image img;
    nst_image_load_options lo;
    if (!d) { CHECK(0); return; }
    d[40] ^= 0x10;   /* inside the tEXt chunk: only the CRC notices */
    CHECK(nst_image_load_memory(d, n, &img) == NST_ERR_FORMAT);
    CHECK_MSG(strstr(nst_last_error(), "CRC") != NULL, "%s", nst_last_error());
    CHECK(img.pixels == NULL && img.width == 0);
    memset(&lo, 0, sizeof lo);
    lo.ignore_checksums = 1;
    CHECK_OK(nst_image_load_memory_ex(d, n, &lo, &img));
    nst_image_free(&img);
    d[40] ^= 0x10;
    CHECK(nst_image_load_memory(d, n / 2, &img) == NST_ERR_FORMAT);
    CHECK_MSG(strstr(nst_last_error(), "truncated") != NULL, "%s", nst_last_error());
    CHECK(nst_image_load_memory(d, 8, &img) == NST_ERR_FORMAT);
    CHECK(nst_image_load_memory("GIF89a..", 8, &img) == NST_ERR_FORMAT);
    CHECK(strstr(nst_last_error(), "unknown format") != NULL);
    CHECK(nst_image_load_memory(d, 0, &img) == NST_ERR_FORMAT);
    CHECK(nst_image_load("tests/fixtures/png/does-not-exist.png", &img) == NST_ERR_IO);
    CHECK(strstr(nst_last_error(), "does-not-exist") != NULL);
    free(d);
}

/* Builds a PNG from raw pieces (for hand-made headers). */
static void put_chunk(nst__buf *b, const char *type, const unsigned char *data, size_t len) { nst__png_chunk(b, type, data, len); }

TEST(png_limits_before_allocation) {
    nst__buf b;
    unsigned char ihdr[13] = {0, 0, 0xFF, 0xFF, 0, 0, 0xFF, 0xFF, 16, 6, 0, 0, 0};   /* 65535 x 65535 RGBA16 */
    nst_image img;
    nst_image_limits lim;
    memset(&b, 0, sizeof b);
    nst__buf_put(&b, nst__png_sig, 8);
    put_chunk(&b, "IHDR", ihdr, 13);
    put_chunk(&b, "IDAT", (const unsigned char *)"\x78\x9c\x03\x00\x00\x00\x00\x01", 8);
    put_chunk(&b, "IEND", NULL, 0);
    CHECK(nst_image_load_memory(b.data, b.len, &img) == NST_ERR_LIMIT);   /* 4.3 G pixels > 2^28 */
    memset(&lim, 0, sizeof lim);
    lim.max_width = 8;
    nst_image_set_limits(&lim);
    CHECK(nst_image_load(PNG_DIR "gen/rgb8.png", &img) == NST_ERR_LIMIT);
    CHECK(strstr(nst_last_error(), "limit") != NULL);
    nst_image_set_limits(NULL);
    CHECK_OK(nst_image_load(PNG_DIR "gen/rgb8.png", &img));
    nst_image_free(&img);
    {   /* a small header with too little data: a clean "truncated" error */
        unsigned char small[13] = {0, 0, 0, 40, 0, 0, 0, 40, 8, 2, 0, 0, 0};
        b.len = 0;
        nst__buf_put(&b, nst__png_sig, 8);
        put_chunk(&b, "IHDR", small, 13);
        put_chunk(&b, "IDAT", (const unsigned char *)"\x78\x9c\x03\x00\x00\x00\x00\x01", 8);
        put_chunk(&b, "IEND", NULL, 0);
        CHECK(nst_image_load_memory(b.data, b.len, &img) == NST_ERR_FORMAT);
        CHECK(strstr(nst_last_error(), "truncated") != NULL);
        /* 4000x4000 claimed by a 60-byte file: refused from the sizes alone, nothing big is allocated */
        small[2] = 0x0F; small[3] = 0xA0; small[6] = 0x0F; small[7] = 0xA0;
        b.len = 0;
        nst__buf_put(&b, nst__png_sig, 8);
        put_chunk(&b, "IHDR", small, 13);
        put_chunk(&b, "IDAT", (const unsigned char *)"\x78\x9c\x03\x00\x00\x00\x00\x01", 8);
        CHECK(nst_image_load_memory(b.data, b.len, &img) == NST_ERR_FORMAT);
        CHECK(strstr(nst_last_error(), "cannot hold") != NULL);
        small[9] = 5;   /* colour type 5 does not exist */
        b.len = 0;
        nst__buf_put(&b, nst__png_sig, 8);
        put_chunk(&b, "IHDR", small, 13);
        CHECK(nst_image_load_memory(b.data, b.len, &img) == NST_ERR_FORMAT);
        CHECK(strstr(nst_last_error(), "colour type") != NULL);
    }
    nst__buf_free(&b);
}

/* ---- PNG encode --------------------------------------------------------------------------------------*/
TEST(png_roundtrip_exact) {
    static const int sizes[][2] = {{1, 1}, {1, 7}, {9, 1}, {13, 11}, {64, 33}};
    int s, ch, bits, lv;
    for (s = 0; s < 5; s++)
        for (ch = 1; ch <= 4; ch++)
            for (bits = 8; bits <= 16; bits += 8)
                for (lv = -1; lv <= 9; lv += 5) {
                    nst_image img, back;
                    nst_image_save_options o;
                    unsigned char *bytes;
                    size_t n, k, cnt;
                    int bad = 0;
                    CHECK_OK(nst_image_alloc(&img, sizes[s][0], sizes[s][1], ch));
                    fill_pattern(&img, bits == 8 ? 256 : 65536, (unsigned)(s * 10 + ch));
                    memset(&o, 0, sizeof o);
                    o.format = NST_IMAGE_PNG;
                    o.bits = bits;
                    o.compression = lv;
                    CHECK_OK(nst_image_encode(&img, &o, &bytes, &n));
                    CHECK_OK(nst_image_load_memory(bytes, n, &back));
                    CHECK(back.channels == ch && back.width == img.width && back.height == img.height);
                    cnt = (size_t)img.width * img.height * ch;
                    if (back.pixels && back.channels == ch)
                        for (k = 0; k < cnt; k++)
                            bad += bits == 8 ? q8(back.pixels[k]) != q8(img.pixels[k]) : q16(back.pixels[k]) != q16(img.pixels[k]);
                    CHECK_MSG(bad == 0, "%dx%d ch %d bits %d level %d: %d samples differ", sizes[s][0], sizes[s][1], ch,
                              bits, lv, bad);
                    nst_image_free_encoded(bytes);
                    nst_image_free(&img);
                    nst_image_free(&back);
                }
}

TEST(png_encode_compresses_photos) {
    /* re-encoding a photo lands near the size zlib level 6 gives (bench_png measures it exactly) */
    nst_image img;
    unsigned char *bytes;
    size_t n, orig;
    unsigned char *d = slurp("tests/fixtures/png/gen/deflate_multiblock.png", &orig);
    free(d);
    CHECK_OK(nst_image_load(PNG_DIR "basn2c08.png", &img));
    if (!img.pixels) return;
    CHECK_OK(nst_image_encode(&img, NULL, &bytes, &n));
    CHECK(n < (size_t)img.width * img.height * 3 / 4);   /* gradients: strongly compressible */
    nst_image_free_encoded(bytes);
    nst_image_free(&img);
}

/* ---- netpbm ------------------------------------------------------------------------------------------*/
TEST(ppm_fixtures_exact) {
    FILE *f = fopen(PPM_DIR "MANIFEST", "r");
    char name[64];
    int w, h, ch, maxval, count = 0;
    CHECK(f != NULL);
    if (!f) return;
    while (fscanf(f, "%63s %d %d %d %d", name, &w, &h, &ch, &maxval) == 5) {
        char path[256];
        nst_image img;
        int x, y, c, bad = 0;
        snprintf(path, sizeof path, PPM_DIR "%.63s", name);
        CHECK_OK(nst_image_load(path, &img));
        count++;
        if (!img.pixels) continue;
        CHECK_MSG(img.width == w && img.height == h && img.channels == ch, "%s: %dx%dx%d", name, img.width, img.height,
                  img.channels);
        if (img.width != w || img.height != h || img.channels != ch) { nst_image_free(&img); continue; }
        for (y = 0; y < h; y++)
            for (x = 0; x < w; x++)
                for (c = 0; c < ch; c++) {
                    double want = (double)((x * 31 + y * 17 + c * 101 + x * y) % (maxval + 1)) / maxval;
                    bad += fabs(img.pixels[((size_t)y * w + x) * ch + c] - want) > 1e-6;
                }
        CHECK_MSG(bad == 0, "%s: %d samples differ", name, bad);
        nst_image_free(&img);
    }
    fclose(f);
    CHECK(count >= 13);
}

TEST(ppm_roundtrip) {
    static const nst_image_format fmts[] = {NST_IMAGE_PPM, NST_IMAGE_PGM, NST_IMAGE_PAM};
    int fi, ch, bits, ascii;
    for (fi = 0; fi < 3; fi++)
        for (ch = 1; ch <= 4; ch++)
            for (bits = 8; bits <= 16; bits += 8)
                for (ascii = 0; ascii <= 1; ascii++) {
                    nst_image img, back, ref;
                    nst_image_save_options o;
                    unsigned char *bytes;
                    size_t n, k, cnt;
                    int bad = 0, want_ch;
                    CHECK_OK(nst_image_alloc(&img, 7, 5, ch));
                    fill_pattern(&img, bits == 8 ? 256 : 65536, (unsigned)(fi * 7 + ch));
                    memset(&o, 0, sizeof o);
                    o.format = fmts[fi];
                    o.bits = bits;
                    o.pnm_ascii = ascii;
                    CHECK_OK(nst_image_encode(&img, &o, &bytes, &n));
                    CHECK_OK(nst_image_load_memory(bytes, n, &back));
                    want_ch = fmts[fi] == NST_IMAGE_PPM ? 3 : fmts[fi] == NST_IMAGE_PGM ? 1 : ch;
                    CHECK(back.channels == want_ch && back.width == 7 && back.height == 5);
                    /* what the file should hold: the image itself, or its RGB composite / its luma */
                    ref.pixels = NULL;
                    if (want_ch == ch) ref = img;
                    else if (want_ch == 3) CHECK_OK(nst_image_to_rgb(&img, &ref));
                    if (back.pixels && ref.pixels && back.channels == want_ch) {
                        cnt = (size_t)7 * 5 * want_ch;
                        for (k = 0; k < cnt; k++)
                            bad += bits == 8 ? q8(back.pixels[k]) != q8(ref.pixels[k]) : q16(back.pixels[k]) != q16(ref.pixels[k]);
                        CHECK_MSG(bad == 0, "format %d ch %d bits %d ascii %d: %d differ", fi, ch, bits, ascii, bad);
                    }
                    if (ref.pixels && ref.pixels != img.pixels) nst_image_free(&ref);
                    nst_image_free_encoded(bytes);
                    nst_image_free(&img);
                    nst_image_free(&back);
                }
}

TEST(ppm_errors) {
    nst_image img;
    CHECK(nst_image_load_memory("P6\n2 2\n255\n\1\2\3", 14, &img) == NST_ERR_FORMAT);
    CHECK(strstr(nst_last_error(), "truncated") != NULL);
    CHECK(nst_image_load_memory("P5\n2 2\n0\n\1\2\3\4", 13, &img) == NST_ERR_FORMAT);
    CHECK(strstr(nst_last_error(), "maxval") != NULL);
    CHECK(nst_image_load_memory("P2 2 1 10 3 11", 14, &img) == NST_ERR_FORMAT);
    CHECK(strstr(nst_last_error(), "above maxval") != NULL);
    CHECK(nst_image_load_memory("P2 2 1 10 3", 11, &img) == NST_ERR_FORMAT);
    CHECK(nst_image_load_memory("P5 99999999999 1 255 ", 21, &img) == NST_ERR_FORMAT);
    CHECK(nst_image_load_memory("P5 70000 70000 255 ", 19, &img) == NST_ERR_LIMIT);
    CHECK(nst_image_load_memory("P7\nWIDTH 1\nHEIGHT 1\nDEPTH 5\nMAXVAL 255\nENDHDR\n", 46, &img) == NST_ERR_UNSUPPORTED);
    CHECK(nst_image_load_memory("P4 1 1 x", 8, &img) == NST_ERR_UNSUPPORTED);
    CHECK_OK(nst_image_load_memory("P2 2 1 10 3 10", 14, &img));
    CHECK(img.channels == 1 && img.width == 2 && fabsf(img.pixels[1] - 1.0f) < 1e-7f);
    nst_image_free(&img);
}

/* ---- damaged inputs: every truncation and many bit flips end in an error or a sane image ------------*/
static int sane_or_error(nst_status st, const nst_image *img) {
    size_t k, n;
    if (st != NST_OK) return img->pixels == NULL && nst_last_error()[0] != 0;
    if (img->width <= 0 || img->height <= 0 || img->channels < 1 || img->channels > 4 || !img->pixels) return 0;
    n = (size_t)img->width * img->height * img->channels;
    for (k = 0; k < n; k++)
        if (!(img->pixels[k] >= 0.0f && img->pixels[k] <= 1.0f)) return 0;
    return 1;
}
static void damage_file(const char *path, int *tries) {
    size_t n, cut, step, pos;
    unsigned char *d = slurp(path, &n), *copy;
    nst_image_load_options lo;
    nst__rng r;
    if (!d) { CHECK(0); return; }
    copy = (unsigned char *)malloc(n);
    memset(&lo, 0, sizeof lo);
    step = n / 200 + 1;
    for (cut = 0; cut < n; cut += step) {
        nst_image img;
        nst_status st;
        memcpy(copy, d, cut);   /* a fresh block of exactly cut bytes: ASan sees any read past it */
        st = nst_image_load_memory(cut ? copy : NULL, cut, &img);
        CHECK_MSG(sane_or_error(st, &img), "%s cut at %lu", path, (unsigned long)cut);
        nst_image_free(&img);
        (*tries)++;
    }
    r.s = n;
    for (pos = 0; pos < n; pos += step) {
        int checks;
        for (checks = 0; checks <= 1; checks++) {
            nst_image img;
            nst_status st;
            size_t p = pos + (size_t)(nst__rng_next(&r) % step);
            if (p >= n) p = n - 1;
            memcpy(copy, d, n);
            copy[p] ^= (unsigned char)(1u << (nst__rng_next(&r) % 8));
            lo.ignore_checksums = checks;   /* without checksums the damage reaches the decoder itself */
            st = nst_image_load_memory_ex(copy, n, &lo, &img);
            CHECK_MSG(sane_or_error(st, &img), "%s bit flip at %lu", path, (unsigned long)p);
            nst_image_free(&img);
            (*tries)++;
        }
    }
    free(copy);
    free(d);
}
TEST(damaged_files_never_crash) {
    static char names[128][64];
    static int chans[128];
    static const char *suite[] = {"basi6a08", "basn0g08", "basn2c08", "basn3p08", "basn6a08", "tbbn3p08"};
    int n = read_manifest(names, chans, 128), i, tries = 0;
    char path[320], name[64];
    int w, h, ch, maxval;
    FILE *f;
    for (i = 0; i < n; i++) {
        snprintf(path, sizeof path, PNG_DIR "gen/%.63s.png", names[i]);
        damage_file(path, &tries);
    }
    for (i = 0; i < 6; i++) {
        snprintf(path, sizeof path, PNG_DIR "%s.png", suite[i]);
        damage_file(path, &tries);
    }
    f = fopen(PPM_DIR "MANIFEST", "r");
    if (f) {
        while (fscanf(f, "%63s %d %d %d %d", name, &w, &h, &ch, &maxval) == 5) {
            snprintf(path, sizeof path, PPM_DIR "%.63s", name);
            damage_file(path, &tries);
        }
        fclose(f);
    }
    CHECK(tries > 10000);
}

/* ---- dispatch and files ------------------------------------------------------------------------------*/
TEST(format_detection) {
    CHECK(nst_image_detect_format("\211PNG\r\n\032\n", 8) == NST_IMAGE_PNG);
    CHECK(nst_image_detect_format("\377\330\377\340", 4) == NST_IMAGE_JPEG);
    CHECK(nst_image_detect_format("P6", 2) == NST_IMAGE_PPM);
    CHECK(nst_image_detect_format("P5", 2) == NST_IMAGE_PGM);
    CHECK(nst_image_detect_format("P7", 2) == NST_IMAGE_PAM);
    CHECK(nst_image_detect_format("BM", 2) == NST_IMAGE_UNKNOWN);
    CHECK(nst_image_format_from_path("a/b.PNG") == NST_IMAGE_PNG);
    CHECK(nst_image_format_from_path("x.jpeg") == NST_IMAGE_JPEG);
    CHECK(nst_image_format_from_path("x.JPG") == NST_IMAGE_JPEG);
    CHECK(nst_image_format_from_path("x.pgm") == NST_IMAGE_PGM);
    CHECK(nst_image_format_from_path("x.ppm") == NST_IMAGE_PPM);
    CHECK(nst_image_format_from_path("dir.png/file") == NST_IMAGE_UNKNOWN);
    CHECK(nst_image_format_from_path("x.gif") == NST_IMAGE_UNKNOWN);
}

TEST(save_and_load_files) {
    static const char *paths[] = {"build/tests/test_image_tmp.png", "build/tests/test_image_tmp.ppm",
                                  "build/tests/test_image_tmp.pgm", "build/tests/test_image_tmp.pam"};
    nst_image img, back;
    int i;
    FILE *probe = fopen("build/tests/test_image_probe", "wb");
    if (!probe) SKIP("build/tests is not writable (run from the repository root)");
    fclose(probe);
    remove("build/tests/test_image_probe");
    CHECK_OK(nst_image_alloc(&img, 10, 6, 3));
    fill_pattern(&img, 256, 5);
    for (i = 0; i < 4; i++) {
        FILE *tmp;
        char leftover[300];
        CHECK_OK(nst_image_save(paths[i], &img));
        CHECK_OK(nst_image_load(paths[i], &back));
        CHECK(back.width == 10 && back.height == 6 && back.channels == (i == 2 ? 1 : 3));
        nst_image_free(&back);
        snprintf(leftover, sizeof leftover, "%s.tmp", paths[i]);
        tmp = fopen(leftover, "rb");   /* the atomic writer leaves no temporary behind */
        CHECK(tmp == NULL);
        if (tmp) fclose(tmp);
        remove(paths[i]);
    }
    CHECK(nst_image_save("build/tests/test_image_tmp.gif", &img) == NST_ERR_ARGUMENT);
    CHECK(strstr(nst_last_error(), "extension") != NULL);
    CHECK(nst_image_save("build/no-such-dir/x.png", &img) == NST_ERR_IO);
    {   /* JPEG goes to the JPEG encoder (which may still be a stub) */
        nst_image_save_options o;
        unsigned char *bytes;
        size_t n;
        nst_status st;
        memset(&o, 0, sizeof o);
        o.format = NST_IMAGE_JPEG;
        st = nst_image_encode(&img, &o, &bytes, &n);
        CHECK(st == NST_OK || st == NST_ERR_UNSUPPORTED);
        if (st == NST_OK) {
            CHECK(n > 3 && bytes[0] == 0xFF && bytes[1] == 0xD8);
            nst_image_free_encoded(bytes);
        }
        o.quality = 101;
        CHECK(nst_image_encode(&img, &o, &bytes, &n) == NST_ERR_ARGUMENT);
    }
    nst_image_free(&img);
}

/* ---- resampling --------------------------------------------------------------------------------------*/
TEST(resize_constant_stays_constant) {
    static const int sz[][4] = {{17, 13, 5, 4}, {5, 4, 17, 13}, {1, 9, 1, 3}, {1, 1, 7, 3}, {9, 1, 1, 1},
                                {30, 1, 7, 1}, {1, 30, 1, 100}, {64, 64, 63, 65}};
    int s, f, c;
    for (s = 0; s < 8; s++)
        for (f = NST_FILTER_BOX; f <= NST_FILTER_LANCZOS3; f++)
            for (c = 1; c <= 4; c++) {
                nst_image in, out;
                nst_resize_options o;
                size_t k, n;
                float worst = 0;
                CHECK_OK(nst_image_alloc(&in, sz[s][0], sz[s][1], c));
                for (k = 0; k < (size_t)sz[s][0] * sz[s][1] * c; k++) in.pixels[k] = (k % c == (size_t)c - 1 && c % 2 == 0) ? 0.8f : 0.3f;
                memset(&o, 0, sizeof o);
                o.filter = (nst_resize_filter)f;
                o.linear_light = s & 1;
                CHECK_OK(nst_image_resize_ex(&in, sz[s][2], sz[s][3], &o, &out));
                CHECK(out.width == sz[s][2] && out.height == sz[s][3] && out.channels == c);
                n = (size_t)out.width * out.height * c;
                for (k = 0; k < n && out.pixels; k++) {
                    float want = (k % c == (size_t)c - 1 && c % 2 == 0) ? 0.8f : 0.3f;
                    if (fabsf(out.pixels[k] - want) > worst) worst = fabsf(out.pixels[k] - want);
                }
                CHECK_MSG(worst < 2e-5f, "%dx%d -> %dx%d filter %d ch %d: off by %g", sz[s][0], sz[s][1], sz[s][2],
                          sz[s][3], f, c, worst);
                nst_image_free(&in);
                nst_image_free(&out);
            }
}

/* mean and standard deviation of a rectangle of a 1-channel image */
static void stats(const nst_image *img, int x0, int y0, int x1, int y1, double *mean, double *sd) {
    double s = 0, s2 = 0;
    int x, y, n = 0;
    for (y = y0; y < y1; y++)
        for (x = x0; x < x1; x++) {
            double v = img->pixels[(size_t)y * img->width + x];
            s += v; s2 += v * v; n++;
        }
    *mean = s / n;
    *sd = sqrt(s2 / n - *mean * *mean > 0 ? s2 / n - *mean * *mean : 0);
}

/* the same over the pixels whose distance from the origin is in [r0, r1) */
static void ring_stats(const nst_image *img, double r0, double r1, double *mean, double *sd) {
    double s = 0, s2 = 0;
    int x, y, n = 0;
    for (y = 0; y < img->height; y++)
        for (x = 0; x < img->width; x++) {
            double r = sqrt((x + 0.5) * (x + 0.5) + (y + 0.5) * (y + 0.5)), v;
            if (r < r0 || r >= r1) continue;
            v = img->pixels[(size_t)y * img->width + x];
            s += v; s2 += v * v; n++;
        }
    *mean = s / n;
    *sd = sqrt(s2 / n - *mean * *mean > 0 ? s2 / n - *mean * *mean : 0);
}

TEST(resize_downscale_has_no_aliasing) {
    nst_image cb, zp, out;
    int x, y, f;
    double m, sd;
    /* 1-pixel checkerboard: all of its energy is above any downscaled Nyquist, so the result is flat grey */
    CHECK_OK(nst_image_alloc(&cb, 200, 120, 1));
    for (y = 0; y < 120; y++) for (x = 0; x < 200; x++) cb.pixels[y * 200 + x] = (float)((x + y) & 1);
    for (f = NST_FILTER_DEFAULT; f <= NST_FILTER_LANCZOS3; f++) {
        nst_resize_options o;
        memset(&o, 0, sizeof o);
        o.filter = (nst_resize_filter)f;
        CHECK_OK(nst_image_resize_ex(&cb, 61, 37, &o, &out));
        stats(&out, 0, 0, 61, 37, &m, &sd);
        CHECK_MSG(fabs(m - 0.5) < 0.01 && sd < 0.02, "filter %d: checkerboard mean %g sd %g", f, m, sd);
        nst_image_free(&out);
    }
    /* zone plate cos(pi r^2 / 1536): local frequency r/1536 cycles/pixel, below 0.5 everywhere in the
     * source, passes the 4x-reduced Nyquist (1/8) at r = 192 (48 after the downscale). Beyond r ~ 80 the
     * downscaled image must be flat; near the centre it keeps its contrast. */
    CHECK_OK(nst_image_alloc(&zp, 512, 512, 1));
    for (y = 0; y < 512; y++)
        for (x = 0; x < 512; x++) {
            double r2 = (double)x * x + (double)y * y;
            zp.pixels[y * 512 + x] = (float)(0.5 + 0.5 * cos(3.14159265358979 * r2 / 1536.0));
        }
    for (f = NST_FILTER_DEFAULT; f <= NST_FILTER_LANCZOS3; f++) {
        nst_resize_options o;
        if (f == NST_FILTER_BOX) continue;   /* a box passes some alias by design (sinc side lobes) */
        memset(&o, 0, sizeof o);
        o.filter = (nst_resize_filter)f;
        CHECK_OK(nst_image_resize_ex(&zp, 128, 128, &o, &out));
        ring_stats(&out, 80, 1000, &m, &sd);
        CHECK_MSG(sd < 0.02 && fabs(m - 0.5) < 0.02, "filter %d: aliasing in the zone plate (sd %g)", f, sd);
        stats(&out, 0, 0, 6, 6, &m, &sd);
        CHECK_MSG(sd > 0.1, "filter %d: low frequencies lost (sd %g)", f, sd);
        nst_image_free(&out);
    }
    {   /* a point-sampled downscale would alias: make sure the test notices that */
        double sd_point;
        CHECK_OK(nst_image_alloc(&out, 128, 128, 1));
        for (y = 0; y < 128; y++) for (x = 0; x < 128; x++) out.pixels[y * 128 + x] = zp.pixels[(y * 4) * 512 + x * 4];
        ring_stats(&out, 80, 1000, &m, &sd_point);
        CHECK(sd_point > 0.2);
        nst_image_free(&out);
    }
    nst_image_free(&cb);
    nst_image_free(&zp);
}

TEST(resize_upscale_and_alpha) {
    nst_image in, out;
    nst_resize_options o;
    int x;
    /* Catmull-Rom reproduces a linear ramp exactly away from the borders */
    CHECK_OK(nst_image_alloc(&in, 16, 1, 1));
    for (x = 0; x < 16; x++) in.pixels[x] = x / 20.0f;
    CHECK_OK(nst_image_resize(&in, 64, 1, &out));
    for (x = 8; x < 56 && out.pixels; x++) CHECK_NEAR(out.pixels[x], ((x + 0.5) / 4.0 - 0.5) / 20.0, 1e-5);
    nst_image_free(&out);
    nst_image_free(&in);
    /* transparent red next to opaque blue: no red may bleed into the blue */
    CHECK_OK(nst_image_alloc(&in, 8, 8, 4));
    for (x = 0; x < 64; x++) {
        float *p = in.pixels + 4 * x;
        if ((x % 8) < 4) { p[0] = 1; p[1] = 0; p[2] = 0; p[3] = 0; }
        else { p[0] = 0; p[1] = 0; p[2] = 1; p[3] = 1; }
    }
    CHECK_OK(nst_image_resize(&in, 3, 3, &out));
    for (x = 0; x < 9 && out.pixels; x++)
        if (out.pixels[4 * x + 3] > 0.01f) CHECK(out.pixels[4 * x] < 1e-4f && out.pixels[4 * x + 2] > 0.999f);
    nst_image_free(&out);
    nst_image_free(&in);
    /* linear light: black + white averages to sRGB 0.735, not 0.5 */
    CHECK_OK(nst_image_alloc(&in, 2, 1, 1));
    in.pixels[1] = 1.0f;
    memset(&o, 0, sizeof o);
    o.filter = NST_FILTER_BOX;
    CHECK_OK(nst_image_resize_ex(&in, 1, 1, &o, &out));
    CHECK_NEAR(out.pixels[0], 0.5, 1e-6);
    nst_image_free(&out);
    o.linear_light = 1;
    CHECK_OK(nst_image_resize_ex(&in, 1, 1, &o, &out));
    CHECK_NEAR(out.pixels[0], 0.7354, 1e-3);
    nst_image_free(&out);
    CHECK(nst_image_resize(&in, 0, 5, &out) == NST_ERR_ARGUMENT);
    nst_image_free(&in);
}

/* ---- colour ------------------------------------------------------------------------------------------*/
TEST(to_rgb_composites_on_white) {
    nst_image g, ga, rgba, out;
    CHECK_OK(nst_image_alloc(&g, 1, 1, 1));
    g.pixels[0] = 0.25f;
    CHECK_OK(nst_image_to_rgb(&g, &out));
    CHECK(out.channels == 3 && out.pixels[0] == 0.25f && out.pixels[1] == 0.25f && out.pixels[2] == 0.25f);
    nst_image_free(&out);
    CHECK_OK(nst_image_alloc(&ga, 1, 1, 2));
    ga.pixels[0] = 0.0f; ga.pixels[1] = 0.5f;
    CHECK_OK(nst_image_to_rgb(&ga, &out));
    CHECK_NEAR(out.pixels[2], 0.5, 1e-7);
    nst_image_free(&out);
    CHECK_OK(nst_image_alloc(&rgba, 1, 1, 4));
    rgba.pixels[0] = 1.0f; rgba.pixels[3] = 0.25f;
    CHECK_OK(nst_image_to_rgb(&rgba, &out));
    CHECK_NEAR(out.pixels[0], 1.0, 1e-7);
    CHECK_NEAR(out.pixels[1], 0.75, 1e-7);
    nst_image_free(&out);
    nst_image_free(&g); nst_image_free(&ga); nst_image_free(&rgba);
}

static void yiq(const float *p, double *y, double *i, double *q) {
    *y = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    *i = 0.595716 * p[0] - 0.274453 * p[1] - 0.321263 * p[2];
    *q = 0.211456 * p[0] - 0.522591 * p[1] + 0.311135 * p[2];
}
TEST(luminance_transfer_keeps_y_and_iq) {
    nst_image a, b, out;
    int k, checked = 0;
    CHECK_OK(nst_image_alloc(&a, 16, 16, 3));
    CHECK_OK(nst_image_alloc(&b, 16, 16, 3));
    fill_pattern(&a, 256, 1);
    fill_pattern(&b, 256, 2);
    for (k = 0; k < 256 * 3; k++) { a.pixels[k] = 0.3f + 0.4f * a.pixels[k]; b.pixels[k] = 0.4f + 0.2f * b.pixels[k]; }
    CHECK_OK(nst_image_luminance_transfer(&a, &b, &out));
    for (k = 0; k < 256 && out.pixels; k++) {
        double ya, ia, qa, yb, ib, qb, yo, io, qo;
        const float *o = out.pixels + 3 * k;
        yiq(a.pixels + 3 * k, &ya, &ia, &qa);
        yiq(b.pixels + 3 * k, &yb, &ib, &qb);
        yiq(o, &yo, &io, &qo);
        if (o[0] <= 0 || o[0] >= 1 || o[1] <= 0 || o[1] >= 1 || o[2] <= 0 || o[2] >= 1) continue;   /* clamped */
        CHECK_NEAR(yo, ya, 1e-5);
        CHECK_NEAR(io, ib, 1e-5);
        CHECK_NEAR(qo, qb, 1e-5);
        checked++;
    }
    CHECK(checked > 200);
    nst_image_free(&out);
    b.width = 8;
    CHECK(nst_image_luminance_transfer(&a, &b, &out) == NST_ERR_ARGUMENT);
    b.width = 16;
    nst_image_free(&a);
    nst_image_free(&b);
}

TEST(match_colors_matches_mean_and_covariance) {
    nst_image a, b, out;
    int mode, k;
    nst__rng r;
    r.s = 9;
    CHECK_OK(nst_image_alloc(&a, 40, 30, 3));
    CHECK_OK(nst_image_alloc(&b, 30, 40, 3));
    for (k = 0; k < 1200; k++) {   /* correlated colours in the middle of the range */
        double t = nst__rng_uniform(&r), u = nst__rng_uniform(&r), v = nst__rng_uniform(&r);
        a.pixels[3 * k] = (float)(0.3 + 0.3 * t);
        a.pixels[3 * k + 1] = (float)(0.35 + 0.2 * t + 0.1 * u);
        a.pixels[3 * k + 2] = (float)(0.4 + 0.1 * v);
        b.pixels[3 * k] = (float)(0.5 + 0.1 * u);
        b.pixels[3 * k + 1] = (float)(0.3 + 0.15 * v - 0.05 * t);
        b.pixels[3 * k + 2] = (float)(0.45 + 0.1 * t + 0.05 * v);
    }
    for (mode = NST_MATCH_PCA; mode <= NST_MATCH_CHOLESKY; mode++) {
        double mo[3], co[3][3], mb[3], cb[3][3];
        int i, j;
        CHECK_OK(nst_image_match_colors_ex(&a, &b, (nst_match_mode)mode, &out));
        if (!out.pixels) continue;
        nst__rgb_stats(&out, mo, co);
        nst__rgb_stats(&b, mb, cb);
        for (i = 0; i < 3; i++) {
            CHECK_NEAR(mo[i], mb[i], 1e-4);
            for (j = 0; j < 3; j++) CHECK_NEAR(co[i][j], cb[i][j], 1e-6);
        }
        nst_image_free(&out);
    }
    nst_image_free(&a);
    nst_image_free(&b);
}

int main(int argc, char **argv) {
    nst_test_begin(argc, argv);
    RUN(inflate_known_streams);
    RUN(inflate_rejects_bad_streams);
    RUN(inflate_limit_stops_bombs);
    RUN(deflate_roundtrip_all_levels);
    RUN(pngsuite_exact);
    RUN(png_features_exact);
    RUN(png_16bit_keeps_precision);
    RUN(png_errors_name_the_problem);
    RUN(png_limits_before_allocation);
    RUN(png_roundtrip_exact);
    RUN(png_encode_compresses_photos);
    RUN(ppm_fixtures_exact);
    RUN(ppm_roundtrip);
    RUN(ppm_errors);
    RUN(damaged_files_never_crash);
    RUN(format_detection);
    RUN(save_and_load_files);
    RUN(resize_constant_stays_constant);
    RUN(resize_downscale_has_no_aliasing);
    RUN(resize_upscale_and_alpha);
    RUN(to_rgb_composites_on_white);
    RUN(luminance_transfer_keeps_y_and_iq);
    RUN(match_colors_matches_mean_and_covariance);
    return nst_test_end("test_image");
}
