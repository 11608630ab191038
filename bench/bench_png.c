/* PNG codec speed and size on a ~12-megapixel photo-like image, next to ImageMagick and zlib measured in
 * the same run.
 *
 *   make build/bench_png && ./build/bench_png [photo.png] [repeats]
 *
 * The image is made at run time (nothing big is committed): a repository photo (default
 * ../shared/images/content/kodim23.png, 768x512) upscaled 5.52x with the bicubic filter to 4240x2832,
 * plus a little deterministic noise (sigma 1/255) so it compresses like a real photo rather than a
 * smooth upscale. MB/s counts decoded pixel bytes (width * height * 3, 8-bit RGB) per CPU second: the
 * codecs are single-threaded, and CPU time (ours via clock(), ImageMagick's via times() on the child,
 * zlib's via Python's process_time) is not distorted by other jobs on a shared machine the way wall time
 * is. Each timing is the best of `repeats` (default 2). Comparisons, when the tools exist:
 *   - ImageMagick `convert`: decode (PNG -> null:) and encode (PPM -> PNG) of the same image, timed
 *     around the whole process (so it includes process start-up, ~20-40 ms).
 *   - zlib level 6 via /usr/bin/python3 on exactly our filtered scanlines: the deflate size ratio.
 * Files go to build/ and are removed at the end. */
#define _POSIX_C_SOURCE 200809L
#define NST_IMPLEMENTATION
#include "nst.h"
#include <sys/times.h>
#include <unistd.h>

#define BIG_PNG "build/bench_png_12mp.png"
#define BIG_PPM "build/bench_png_12mp.ppm"
#define IM_PNG  "build/bench_png_12mp_im.png"

static int have_tool(const char *name) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", name);
    return system(cmd) == 0;
}
static double cpu_self(void) { return (double)clock() / CLOCKS_PER_SEC; }
static double cpu_children(void) {
    struct tms t;
    times(&t);
    return (double)(t.tms_cutime + t.tms_cstime) / (double)sysconf(_SC_CLK_TCK);
}
/* CPU seconds (user + system) a shell command takes, best of repeats */
static double time_cmd(const char *cmd, int repeats) {
    double best = 1e30;
    int r;
    for (r = 0; r < repeats; r++) {
        double t0 = cpu_children();
        if (system(cmd) != 0) return -1;
        t0 = cpu_children() - t0;
        if (t0 < best) best = t0;
    }
    return best;
}
static long file_size(const char *path) {
    FILE *f = fopen(path, "rb");
    long n;
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fclose(f);
    return n;
}

int main(int argc, char **argv) {
    const char *src = argc > 1 ? argv[1] : "../shared/images/content/kodim23.png";
    int repeats = argc > 2 ? atoi(argv[2]) : 2, r, level;
    nst_image photo, big, back;
    nst_resize_options ro;
    nst__rng rng;
    size_t k, n, pix_bytes;
    double t, best_dec = 1e30, best_enc[10];
    long sizes[10];
    unsigned char *bytes = NULL;
    int have_im = have_tool("convert"), have_py = have_tool("/usr/bin/python3");
    if (repeats < 1) repeats = 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (nst_image_load(src, &photo) != NST_OK) {
        fprintf(stderr, "bench_png: %s\n(pass a photo: ./build/bench_png photo.png)\n", nst_last_error());
        return 1;
    }
    memset(&ro, 0, sizeof ro);
    ro.filter = NST_FILTER_CUBIC;
    if (nst_image_resize_ex(&photo, 4240, 2832, &ro, &big) != NST_OK || big.channels != 3) {
        fprintf(stderr, "bench_png: %s\n", big.channels != 3 ? "need an RGB photo" : nst_last_error());
        return 1;
    }
    rng.s = 23;
    n = (size_t)big.width * big.height * 3;
    for (k = 0; k < n; k++) big.pixels[k] = nst__clamp01(big.pixels[k] + (float)(nst__rng_normal(&rng) / 255.0));
    pix_bytes = n;
    printf("PNG codec: %dx%d RGB8 (%.1f MP, %.1f MB of pixels), %s upscaled + noise; best of %d\n", big.width,
           big.height, big.width * (double)big.height / 1e6, pix_bytes / 1e6, src, repeats);

    /* encode at levels 1 and 6 */
    for (level = 0; level < 10; level++) { best_enc[level] = 1e30; sizes[level] = 0; }
    for (level = 1; level <= 6; level += 5) {
        nst_image_save_options o;
        memset(&o, 0, sizeof o);
        o.compression = level;
        for (r = 0; r < repeats; r++) {
            size_t len;
            t = cpu_self();
            if (nst_image_encode(&big, &o, &bytes, &len) != NST_OK) { fprintf(stderr, "%s\n", nst_last_error()); return 1; }
            t = cpu_self() - t;
            if (t < best_enc[level]) best_enc[level] = t;
            sizes[level] = (long)len;
            if (level == 6 && r == repeats - 1) {
                if (nst__write_file_atomic(BIG_PNG, bytes, len) != NST_OK) { fprintf(stderr, "%s\n", nst_last_error()); return 1; }
            }
            nst_image_free_encoded(bytes);
        }
    }
    for (r = 0; r < repeats; r++) {
        t = cpu_self();
        if (nst_image_load(BIG_PNG, &back) != NST_OK) { fprintf(stderr, "%s\n", nst_last_error()); return 1; }
        t = cpu_self() - t;
        if (t < best_dec) best_dec = t;
        nst_image_free(&back);
    }
    printf("\nMB of pixels per CPU second:\n%-34s %12s %12s %12s\n", "", "decode MB/s", "encode MB/s", "bytes");
    printf("%-34s %12.1f %12.1f %12ld\n", "nst level 6 (default)", pix_bytes / 1e6 / best_dec, pix_bytes / 1e6 / best_enc[6], sizes[6]);
    printf("%-34s %12s %12.1f %12ld\n", "nst level 1", "", pix_bytes / 1e6 / best_enc[1], sizes[1]);
    if (have_im) {
        nst_image_save_options o;
        double td, te;
        memset(&o, 0, sizeof o);
        o.format = NST_IMAGE_PPM;
        if (nst_image_save_ex(BIG_PPM, &big, &o) != NST_OK) { fprintf(stderr, "%s\n", nst_last_error()); return 1; }
        td = time_cmd("convert " BIG_PNG " null:", repeats);
        te = time_cmd("convert " BIG_PPM " " IM_PNG, repeats);
        printf("%-34s %12.1f %12.1f %12ld\n", "ImageMagick convert (default)", td > 0 ? pix_bytes / 1e6 / td : 0.0,
               te > 0 ? pix_bytes / 1e6 / te : 0.0, file_size(IM_PNG));
        printf("  (ImageMagick's times include process start-up, and its encode reads the %.0f MB PPM)\n", pix_bytes / 1e6);
    } else {
        printf("ImageMagick: not installed, skipped\n");
    }
    if (have_py) {
        /* deflate only: zlib level 6 on exactly our filtered scanlines, against our level 6 IDAT stream */
        char cmd[1024];
        FILE *p;
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 -c \"\n"
                 "import zlib,struct,sys,time\n"
                 "d=open('%s','rb').read();p=8;z=b''\n"
                 "while p<len(d):\n"
                 " l=struct.unpack('>I',d[p:p+4])[0]\n"
                 " if d[p+4:p+8]==b'IDAT': z+=d[p+8:p+8+l]\n"
                 " p+=12+l\n"
                 "raw=zlib.decompress(z);b=1e30\n"
                 "for r in range(%d):\n"
                 " t=time.process_time();z6=zlib.compress(raw,6);b=min(b,time.process_time()-t)\n"
                 "print(len(z),len(z6),len(raw),b)\"",
                 BIG_PNG, repeats);
        {   /* our deflate alone on the same filtered bytes, for a like-for-like speed */
            unsigned char *png, *raw;
            size_t pn, rn;
            const unsigned char *q;
            nst__buf idat, z;
            memset(&idat, 0, sizeof idat);
            if (nst__read_file(BIG_PNG, (size_t)1 << 30, &png, &pn) == NST_OK) {
                for (q = png + 8; q + 12 <= png + pn; q += 12 + nst__rd32be(q))
                    if (!memcmp(q + 4, "IDAT", 4)) nst__buf_put(&idat, q + 8, nst__rd32be(q));
                if (nst__inflate(idat.data, idat.len, 1, (size_t)1 << 30, &raw, &rn) == NST_OK) {
                    double best = 1e30;
                    for (r = 0; r < repeats; r++) {
                        memset(&z, 0, sizeof z);
                        t = cpu_self();
                        nst__deflate(raw, rn, 1, 6, &z);
                        t = cpu_self() - t;
                        if (t < best) best = t;
                        nst__buf_free(&z);
                    }
                    printf("\nnst deflate alone, level 6: %.1f MB/s of filtered bytes\n", rn / 1e6 / best);
                    nst__free(raw);
                }
                nst__buf_free(&idat);
                nst__free(png);
            }
        }
        p = popen(cmd, "r");
        if (p) {
            long ours = 0, z6 = 0, raw = 0;
            double tz = 0;
            if (fscanf(p, "%ld %ld %ld %lf", &ours, &z6, &raw, &tz) == 4 && z6 > 0) {
                printf("zlib deflate alone, level 6: %.1f MB/s (python3 zlib)\n", raw / 1e6 / tz);
                printf("deflate of the same %ld filtered bytes: nst level 6 %ld, zlib level 6 %ld -> ratio %.4f\n", raw,
                       ours, z6, (double)ours / z6);
            }
            pclose(p);
        }
    }
    if (have_im) {
        long im = file_size(IM_PNG);
        if (im > 0) printf("whole file: nst level 6 / ImageMagick = %.4f\n", (double)sizes[6] / im);
    }
    remove(BIG_PNG);
    remove(BIG_PPM);
    remove(IM_PNG);
    nst_image_free(&big);
    nst_image_free(&photo);
    return 0;
}
