/* Images: limits and allocation, zlib (inflate and deflate), pixel operations (alpha, resampling, colour),
 * and the PNG and PPM/PGM/PAM codecs with the load/save dispatch.
 *
 * Contract used by other sections (keep it stable):
 *   nst_image_alloc / nst_image_free / nst_image_to_rgb / nst_image_resize   always compiled
 *   nst__image_check_size(w, h, channels)   NST_ERR_LIMIT (with message) above this thread's limits
 *   nst__inflate(in, n, zlib_wrapper, max_out, &out, &out_n)   zlib (wrapper=1, Adler-32 checked) or raw
 *       deflate (0, zip members); output above max_out -> NST_ERR_LIMIT; always compiled (weight importers)
 *   nst__deflate(in, n, zlib_wrapper, level, &buf)   appends a zlib stream or raw deflate data to buf;
 *       level 0 stores, 1..9 as zlib's; always compiled (PNG, .npz writing)
 *   nst__adler32(adler, p, n)   running Adler-32 (start with 1)
 *   nst__jpeg_decode(data, n, &img) / nst__jpeg_encode(img, quality, chroma420, &buf)  in src/jpeg.h,
 *       declared here, compiled unless NST_NO_IMAGE_IO; img has 1 or 3 channels when encoding.
 *
 * Everything that parses bytes treats them as hostile: sizes are checked against the limits before
 * anything is allocated, every read is bounds-checked, and every loop is bounded by the input or the
 * output size, so a malformed file ends in an error message, never in a crash or a hang. */
#ifndef NST_NO_IMAGE_IO
static nst_status nst__jpeg_decode(const unsigned char *data, size_t n, nst_image *out);
static nst_status nst__jpeg_encode(const nst_image *img, int quality, int chroma420, nst__buf *out);
#endif

/* ---- limits and allocation -------------------------------------------------------------------------*/
static NST__TLS nst_image_limits nst__limits;
NSTDEF void nst_image_set_limits(const nst_image_limits *l) {
    if (l) nst__limits = *l; else memset(&nst__limits, 0, sizeof nst__limits);
}
static NST__UNUSED size_t nst__limit_bytes(void) {
    return nst__limits.max_bytes ? nst__limits.max_bytes : (size_t)4 << 30;
}
static NST__UNUSED nst_status nst__image_check_size(int w, int h, int channels) {
    size_t mw = nst__limits.max_width ? (size_t)nst__limits.max_width : 65535;
    size_t mh = nst__limits.max_height ? (size_t)nst__limits.max_height : 65535;
    size_t mp = nst__limits.max_pixels ? nst__limits.max_pixels : ((size_t)1 << 28);
    size_t mb = nst__limit_bytes();
    size_t px, bytes;
    if (w <= 0 || h <= 0 || channels <= 0 || channels > 4)
        return nst__err(NST_ERR_FORMAT, "image: invalid size %dx%d with %d channels", w, h, channels);
    if ((size_t)w > mw || (size_t)h > mh)
        return nst__err(NST_ERR_LIMIT, "image: %dx%d exceeds the limit of %lux%lu", w, h, (unsigned long)mw,
                        (unsigned long)mh);
    if (!nst__mul_ok((size_t)w, (size_t)h, &px) || px > mp)
        return nst__err(NST_ERR_LIMIT, "image: %dx%d exceeds the limit of %lu pixels", w, h, (unsigned long)mp);
    if (!nst__mul_ok(px, (size_t)channels * sizeof(float), &bytes) || bytes > mb)
        return nst__err(NST_ERR_LIMIT, "image: %dx%d needs more than the limit of %lu bytes", w, h,
                        (unsigned long)mb);
    return NST_OK;
}

NSTDEF nst_status nst_image_alloc(nst_image *img, int width, int height, int channels) {
    size_t n;
    nst_status st;
    img->width = img->height = img->channels = 0;
    img->pixels = NULL;
    if ((st = nst__image_check_size(width, height, channels)) != NST_OK) return st;
    n = (size_t)width * (size_t)height * (size_t)channels;
    img->pixels = (float *)nst__calloc(n, sizeof(float));
    if (!img->pixels) return nst__err(NST_ERR_NOMEM, "image: out of memory for %dx%d", width, height);
    img->width = width; img->height = height; img->channels = channels;
    return NST_OK;
}
/* nst_image_alloc without zeroing, for producers that write every sample (decoders, resize, colour):
 * the memset of a 12-megapixel float image costs as much as decoding it. */
static NST__UNUSED nst_status nst__image_alloc_raw(nst_image *img, int width, int height, int channels) {
    nst_status st;
    img->width = img->height = img->channels = 0;
    img->pixels = NULL;
    if ((st = nst__image_check_size(width, height, channels)) != NST_OK) return st;
    img->pixels = (float *)nst__malloc((size_t)width * (size_t)height * (size_t)channels * sizeof(float));
    if (!img->pixels) return nst__err(NST_ERR_NOMEM, "image: out of memory for %dx%d", width, height);
    img->width = width; img->height = height; img->channels = channels;
    return NST_OK;
}
NSTDEF void nst_image_free(nst_image *img) {
    if (!img) return;
    nst__free(img->pixels);
    img->pixels = NULL;
    img->width = img->height = img->channels = 0;
}

/* A caller's image is usable when it has a buffer, a positive size and 1..4 channels. */
static NST__UNUSED nst_status nst__image_valid(const nst_image *img, const char *what) {
    if (!img || !img->pixels || img->width <= 0 || img->height <= 0 || img->channels < 1 || img->channels > 4)
        return nst__err(NST_ERR_ARGUMENT, "%s: not a valid image (null, empty or bad channel count)", what);
    return NST_OK;
}

/* Prefixes this thread's error message ("png", a file name, ...) and returns st. */
static NST__UNUSED nst_status nst__err_prefix(nst_status st, const char *prefix) {
    char msg[sizeof nst__errbuf];
    size_t l = strlen(nst__errbuf);
    memcpy(msg, nst__errbuf, l + 1);
    return nst__err(st, "%s: %s", prefix, msg);
}

/* =====================================================================================================
 * zlib: RFC 1950 wrapper, RFC 1951 deflate
 * ===================================================================================================*/
static NST__UNUSED uint32_t nst__adler32(uint32_t adler, const unsigned char *p, size_t n) {
    uint32_t a = adler & 0xFFFF, b = adler >> 16;
    while (n) {   /* 5552 is the most bytes before b can overflow 32 bits (zlib's NMAX) */
        size_t k = n < 5552 ? n : 5552;
        n -= k;
        while (k >= 4) { a += p[0]; b += a; a += p[1]; b += a; a += p[2]; b += a; a += p[3]; b += a; p += 4; k -= 4; }
        while (k--) { a += *p++; b += a; }
        a %= 65521; b %= 65521;
    }
    return (b << 16) | a;
}

static const uint16_t nst__len_base[29] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51,
                                           59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const unsigned char nst__len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3,
                                                 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t nst__dist_base[30] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385,
                                            513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385,
                                            24577};
static const unsigned char nst__dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8,
                                                  9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
/* Order in which a dynamic block sends the code-length code's lengths. */
static const unsigned char nst__clen_order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

/* ---- inflate ---------------------------------------------------------------------------------------
 * Canonical Huffman decoding: codes up to NST__HFAST bits resolve with one table lookup on the low bits
 * of the bit buffer (deflate sends codes MSB-first into an LSB-first stream, so the table is indexed by
 * the bit-reversed code); the rare longer codes walk the per-length counts. */
#define NST__HFAST 10
typedef struct nst__huff {
    uint16_t fast[1 << NST__HFAST];   /* (length << 9) | symbol; 0 = longer than NST__HFAST bits */
    uint16_t count[16];               /* number of codes of each length */
    uint16_t symbol[288];             /* symbols ordered by code */
} nst__huff;

/* Returns 0 when the lengths over-subscribe the code space. Incomplete codes are accepted (a single
 * distance code is legal); a bit pattern that maps to no symbol fails when it is decoded. */
static int nst__huff_build(nst__huff *h, const unsigned char *lens, int n) {
    int offs[16], len, i, left = 1;
    unsigned next[16], code = 0;
    memset(h->count, 0, sizeof h->count);
    memset(h->fast, 0, sizeof h->fast);
    for (i = 0; i < n; i++) h->count[lens[i]]++;
    h->count[0] = 0;
    for (len = 1; len <= 15; len++) {
        left = (left << 1) - h->count[len];
        if (left < 0) return 0;
    }
    offs[1] = 0;
    for (len = 1; len < 15; len++) offs[len + 1] = offs[len] + h->count[len];
    for (i = 0; i < n; i++)
        if (lens[i]) h->symbol[offs[lens[i]]++] = (uint16_t)i;
    for (len = 1; len <= 15; len++) {
        code = (code + h->count[len - 1]) << 1;
        next[len] = code;
    }
    for (i = 0; i < n; i++) {
        int l = lens[i];
        unsigned c, rev = 0, j;
        int k;
        if (!l || l > NST__HFAST) continue;
        c = next[l]++;
        for (k = 0; k < l; k++) rev |= ((c >> k) & 1u) << (l - 1 - k);
        for (j = rev; j < (1u << NST__HFAST); j += 1u << l) h->fast[j] = (uint16_t)((l << 9) | i);
    }
    return 1;
}

typedef struct nst__inflate_state {
    const unsigned char *p, *end;
    uint64_t bits;
    int nbits;
    size_t pad;                 /* zero bytes fed past the end of the input */
    unsigned char *out;
    size_t len, cap, max;
    int fixed;                  /* out is the caller's buffer: never reallocated */
} nst__inflate_state;

/* Keeps at least 57 bits buffered: enough for a literal/length code, its extra bits, a distance code and
 * its extra bits. Past the end of the input it feeds zeros and counts them, so the decoder never reads
 * out of bounds; consuming a fed zero means the stream was truncated (nst__inf_overrun). */
static void nst__inf_refill(nst__inflate_state *s) {
    if (s->end - s->p >= 8) {
        /* fast path: one 8-byte load; the byte only partly taken lands again, at the same position, next
         * time, so the bits above nbits always hold the stream's true next bits */
        s->bits |= nst__rd64le(s->p) << s->nbits;
        s->p += (63 - s->nbits) >> 3;
        s->nbits |= 56;
        return;
    }
    while (s->nbits <= 56) {
        uint64_t b = 0;
        if (s->p < s->end) b = *s->p++; else s->pad++;
        s->bits |= b << s->nbits;
        s->nbits += 8;
    }
}
static int nst__inf_overrun(const nst__inflate_state *s) { return s->pad * 8 > (size_t)s->nbits; }
static unsigned nst__inf_bits(nst__inflate_state *s, int n) {
    unsigned v = (unsigned)(s->bits & ((1u << n) - 1));
    s->bits >>= n;
    s->nbits -= n;
    return v;
}
static int nst__inf_decode(nst__inflate_state *s, const nst__huff *h) {
    unsigned e = h->fast[s->bits & ((1u << NST__HFAST) - 1)];
    int code = 0, first = 0, index = 0, len;
    uint64_t b = s->bits;
    if (e) {
        s->bits >>= e >> 9;
        s->nbits -= (int)(e >> 9);
        return (int)(e & 511);
    }
    for (len = 1; len <= 15; len++) {
        int count = h->count[len];
        code |= (int)(b & 1);
        b >>= 1;
        if (code - first < count) {
            s->bits >>= len;
            s->nbits -= len;
            return h->symbol[index + code - first];
        }
        index += count;
        first = (first + count) << 1;
        code <<= 1;
    }
    return -1;
}
static nst_status nst__inf_reserve(nst__inflate_state *s, size_t extra) {
    size_t need = s->len + extra, cap;
    unsigned char *p;
    if (need <= s->cap) return NST_OK;
    if (need > s->max || need < s->len)
        return nst__err(NST_ERR_LIMIT, "inflate: output exceeds the limit of %lu bytes", (unsigned long)s->max);
    if (s->fixed) return nst__err(NST_ERR_LIMIT, "inflate: output exceeds %lu bytes", (unsigned long)s->cap);
    cap = s->cap < 4096 ? 4096 : s->cap;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > s->max) cap = s->max;
    p = (unsigned char *)nst__realloc(s->out, cap);
    if (!p) return nst__err(NST_ERR_NOMEM, "inflate: out of memory for %lu bytes", (unsigned long)cap);
    s->out = p;
    s->cap = cap;
    return NST_OK;
}
/* Hands the whole bytes still in the bit buffer back to the byte pointer (stored blocks, the Adler-32
 * trailer). Returns 0 if the buffer holds fed zeros that were already consumed. */
static int nst__inf_align(nst__inflate_state *s) {
    size_t whole;
    s->bits >>= s->nbits & 7;
    s->nbits -= s->nbits & 7;
    whole = (size_t)s->nbits / 8;
    if (whole < s->pad) return 0;
    s->p -= whole - s->pad;
    s->pad = 0;
    s->bits = 0;
    s->nbits = 0;
    return 1;
}

static nst_status nst__inf_dynamic(nst__inflate_state *s, nst__huff *lit, nst__huff *dist) {
    unsigned char lens[320], cl[19];
    int hlit, hdist, hclen, i, n;
    nst__huff *clh = dist;   /* the distance table is free until the lengths are read */
    nst__inf_refill(s);
    hlit = (int)nst__inf_bits(s, 5) + 257;
    hdist = (int)nst__inf_bits(s, 5) + 1;
    hclen = (int)nst__inf_bits(s, 4) + 4;
    if (hlit > 286 || hdist > 30)
        return nst__err(NST_ERR_FORMAT, "inflate: bad dynamic block header (%d literal, %d distance codes)", hlit,
                        hdist);
    memset(cl, 0, sizeof cl);
    for (i = 0; i < hclen; i++) {
        nst__inf_refill(s);
        cl[nst__clen_order[i]] = (unsigned char)nst__inf_bits(s, 3);
    }
    if (!nst__huff_build(clh, cl, 19)) return nst__err(NST_ERR_FORMAT, "inflate: bad code-length code");
    n = 0;
    while (n < hlit + hdist) {
        int sym, rep = 0, val = 0;
        nst__inf_refill(s);
        sym = nst__inf_decode(s, clh);
        if (sym < 0) return nst__err(NST_ERR_FORMAT, "inflate: invalid code-length code");
        if (sym < 16) { lens[n++] = (unsigned char)sym; continue; }
        if (sym == 16) {
            if (!n) return nst__err(NST_ERR_FORMAT, "inflate: length repeat with no previous length");
            val = lens[n - 1];
            rep = 3 + (int)nst__inf_bits(s, 2);
        } else if (sym == 17) rep = 3 + (int)nst__inf_bits(s, 3);
        else rep = 11 + (int)nst__inf_bits(s, 7);
        if (n + rep > hlit + hdist) return nst__err(NST_ERR_FORMAT, "inflate: code lengths overflow the block header");
        while (rep--) lens[n++] = (unsigned char)val;
    }
    if (nst__inf_overrun(s)) return nst__err(NST_ERR_FORMAT, "inflate: truncated stream (in a block header)");
    if (!lens[256]) return nst__err(NST_ERR_FORMAT, "inflate: dynamic block without an end-of-block code");
    if (!nst__huff_build(lit, lens, hlit)) return nst__err(NST_ERR_FORMAT, "inflate: over-subscribed literal code");
    if (!nst__huff_build(dist, lens + hlit, hdist))
        return nst__err(NST_ERR_FORMAT, "inflate: over-subscribed distance code");
    return NST_OK;
}

static nst_status nst__inf_codes(nst__inflate_state *s, const nst__huff *lit, const nst__huff *dist) {
    nst_status st;
    for (;;) {
        int sym;
        nst__inf_refill(s);
        sym = nst__inf_decode(s, lit);
        if (sym < 256) {
            if (sym < 0) return nst__err(NST_ERR_FORMAT, "inflate: invalid literal/length code");
            if (s->len >= s->cap && (st = nst__inf_reserve(s, 1)) != NST_OK) return st;
            s->out[s->len++] = (unsigned char)sym;
        } else if (sym == 256) {
            if (nst__inf_overrun(s)) return nst__err(NST_ERR_FORMAT, "inflate: truncated stream");
            return NST_OK;
        } else {
            int len, ds, d;
            sym -= 257;
            if (sym >= 29) return nst__err(NST_ERR_FORMAT, "inflate: invalid length code %d", sym + 257);
            len = nst__len_base[sym] + (int)nst__inf_bits(s, nst__len_extra[sym]);
            ds = nst__inf_decode(s, dist);
            if (ds < 0 || ds >= 30) return nst__err(NST_ERR_FORMAT, "inflate: invalid distance code");
            d = nst__dist_base[ds] + (int)nst__inf_bits(s, nst__dist_extra[ds]);
            if (nst__inf_overrun(s)) return nst__err(NST_ERR_FORMAT, "inflate: truncated stream");
            if ((size_t)d > s->len)
                return nst__err(NST_ERR_FORMAT, "inflate: distance %d reaches before the start of the output", d);
            if (s->cap - s->len < (size_t)len && (st = nst__inf_reserve(s, (size_t)len)) != NST_OK) return st;
            {
                unsigned char *dst = s->out + s->len;
                const unsigned char *src = dst - d;
                if (d >= len) memcpy(dst, src, (size_t)len);
                else if (d == 1) memset(dst, *src, (size_t)len);
                else { int k; for (k = 0; k < len; k++) dst[k] = src[k]; }
                s->len += (size_t)len;
            }
        }
        if (nst__inf_overrun(s)) return nst__err(NST_ERR_FORMAT, "inflate: truncated stream");
    }
}

/* The full decoder. With buf != NULL the output goes into the caller's buffer of cap bytes (never
 * reallocated: more output is NST_ERR_LIMIT); otherwise into a growing allocation capped at max_out. */
static nst_status nst__inflate_ex(const unsigned char *in, size_t n, int zlib_wrapper, int check_adler,
                                  unsigned char *buf, size_t cap, size_t max_out, unsigned char **out,
                                  size_t *out_n) {
    nst__inflate_state s;
    nst__huff *tabs;
    nst_status st = NST_OK;
    int final = 0;
    *out = NULL;
    *out_n = 0;
    memset(&s, 0, sizeof s);
    s.p = in;
    s.end = in + n;
    s.out = buf;
    s.cap = buf ? cap : 0;
    s.max = buf ? cap : max_out;
    s.fixed = buf != NULL;
    if (zlib_wrapper) {
        if (n < 2) return nst__err(NST_ERR_FORMAT, "zlib: stream too short (%lu bytes)", (unsigned long)n);
        if ((in[0] & 15) != 8 || (in[0] >> 4) > 7 || ((unsigned)in[0] * 256 + in[1]) % 31)
            return nst__err(NST_ERR_FORMAT, "zlib: bad header %02x %02x", in[0], in[1]);
        if (in[1] & 0x20) return nst__err(NST_ERR_UNSUPPORTED, "zlib: preset dictionaries are not supported");
        s.p += 2;
    }
    tabs = (nst__huff *)nst__malloc(2 * sizeof(nst__huff));
    if (!tabs) return nst__err(NST_ERR_NOMEM, "inflate: out of memory");
    while (!final && st == NST_OK) {
        unsigned type;
        nst__inf_refill(&s);
        final = (int)nst__inf_bits(&s, 1);
        type = nst__inf_bits(&s, 2);
        if (nst__inf_overrun(&s)) { st = nst__err(NST_ERR_FORMAT, "inflate: truncated stream (no final block)"); break; }
        if (type == 0) {
            size_t len, nlen;
            if (!nst__inf_align(&s) || s.end - s.p < 4) { st = nst__err(NST_ERR_FORMAT, "inflate: truncated stored block"); break; }
            len = (size_t)s.p[0] | ((size_t)s.p[1] << 8);
            nlen = (size_t)s.p[2] | ((size_t)s.p[3] << 8);
            s.p += 4;
            if (len != (~nlen & 0xFFFF)) { st = nst__err(NST_ERR_FORMAT, "inflate: stored block length check failed"); break; }
            if ((size_t)(s.end - s.p) < len) { st = nst__err(NST_ERR_FORMAT, "inflate: truncated stored block"); break; }
            if ((st = nst__inf_reserve(&s, len)) != NST_OK) break;
            if (len) memcpy(s.out + s.len, s.p, len);
            s.len += len;
            s.p += len;
        } else if (type == 1) {
            unsigned char lens[318];
            int i;
            for (i = 0; i < 144; i++) lens[i] = 8;
            for (; i < 256; i++) lens[i] = 9;
            for (; i < 280; i++) lens[i] = 7;
            for (; i < 288; i++) lens[i] = 8;
            for (; i < 318; i++) lens[i] = 5;
            nst__huff_build(&tabs[0], lens, 288);
            nst__huff_build(&tabs[1], lens + 288, 30);
            st = nst__inf_codes(&s, &tabs[0], &tabs[1]);
        } else if (type == 2) {
            if ((st = nst__inf_dynamic(&s, &tabs[0], &tabs[1])) == NST_OK) st = nst__inf_codes(&s, &tabs[0], &tabs[1]);
        } else {
            st = nst__err(NST_ERR_FORMAT, "inflate: invalid block type 3");
        }
    }
    nst__free(tabs);
    if (st == NST_OK && zlib_wrapper) {
        if (!nst__inf_align(&s) || s.end - s.p < 4)
            st = nst__err(NST_ERR_FORMAT, "zlib: truncated stream (missing Adler-32)");
        else if (check_adler && nst__rd32be(s.p) != nst__adler32(1, s.out, s.len))
            st = nst__err(NST_ERR_FORMAT, "zlib: Adler-32 mismatch (data corrupted)");
    }
    if (st != NST_OK) {
        if (!buf) nst__free(s.out);
        return st;
    }
    *out = s.out;
    *out_n = s.len;
    return NST_OK;
}

static NST__UNUSED nst_status nst__inflate(const unsigned char *in, size_t n, int zlib_wrapper, size_t max_out,
                                           unsigned char **out, size_t *out_n) {
    return nst__inflate_ex(in, n, zlib_wrapper, 1, NULL, 0, max_out, out, out_n);
}

/* ---- deflate ---------------------------------------------------------------------------------------
 * LZ77 over the whole input with hash chains (32 KiB window) and zlib-style lazy matching. The chains
 * hash 4 bytes, not 3: on filtered photo rows (many small residuals) 3-byte chains grow long and mostly
 * hold useless candidates; 4-byte chains made level 6 ~1.7x faster and ~2% smaller on a noisy 12 MP
 * photo (length-3 matches are rarely worth their bits anyway). Each block of NST__DEF_BLOCK symbols is
 * written as the cheapest of dynamic Huffman, fixed Huffman and stored. Code lengths come from a true
 * Huffman tree, limited to 15 (7 for the code-length code) by the count-shifting method of JPEG
 * Annex K.3. */
#define NST__WSIZE 32768
#define NST__HBITS 15
#define NST__DEF_BLOCK 16384

typedef struct nst__bitw {
    nst__buf *b;
    uint64_t acc;
    int n;
} nst__bitw;
static void nst__bw_put(nst__bitw *w, uint32_t v, int n) {
    w->acc |= (uint64_t)v << w->n;
    w->n += n;
    if (w->n >= 32) {
        unsigned char t[4];
        nst__wr32le(t, (uint32_t)w->acc);
        nst__buf_put(w->b, t, 4);
        w->acc >>= 32;
        w->n -= 32;
    }
}
static void nst__bw_flush(nst__bitw *w) {   /* pads to a byte boundary */
    while (w->n > 0) {
        nst__buf_byte(w->b, (int)(w->acc & 0xFF));
        w->acc >>= 8;
        w->n -= 8;
    }
    w->acc = 0;
    w->n = 0;
}

static int nst__u64_cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}
/* Huffman code lengths for freq[0..n-1] (n <= 288), none longer than maxlen. Unused symbols get 0; a
 * lone used symbol gets length 1. */
static void nst__huff_lengths(const uint32_t *freq, int n, int maxlen, unsigned char *len) {
    uint64_t key[288];
    uint32_t nf[288];
    int parent[576], depth[576], bl[600];
    int m = 0, i, j, k, l, maxd = 0;
    memset(len, 0, (size_t)n);
    for (i = 0; i < n; i++)
        if (freq[i]) key[m++] = ((uint64_t)freq[i] << 16) | (uint64_t)i;
    if (m == 0) return;
    if (m == 1) { len[key[0] & 0xFFFF] = 1; return; }
    qsort(key, (size_t)m, sizeof key[0], nst__u64_cmp);
    /* two-queue construction: leaves 0..m-1 ascending, internal nodes m.. created in ascending weight */
    i = 0; j = 0;
    for (k = 0; k < m - 1; k++) {
        uint32_t f[2];
        int t;
        for (t = 0; t < 2; t++) {
            if (i < m && (j >= k || (uint32_t)(key[i] >> 16) <= nf[j])) { f[t] = (uint32_t)(key[i] >> 16); parent[i++] = m + k; }
            else { f[t] = nf[j]; parent[m + j++] = m + k; }
        }
        nf[k] = f[0] + f[1];
    }
    depth[2 * m - 2] = 0;
    for (k = 2 * m - 3; k >= 0; k--) depth[k] = depth[parent[k]] + 1;
    memset(bl, 0, sizeof bl);
    for (i = 0; i < m; i++) { bl[depth[i]]++; if (depth[i] > maxd) maxd = depth[i]; }
    for (l = maxd; l > maxlen; l--) {
        while (bl[l] > 0) {   /* move a pair from depth l up, split a shorter leaf to make room */
            j = l - 2;
            while (bl[j] == 0) j--;
            bl[l] -= 2;
            bl[l - 1]++;
            bl[j + 1] += 2;
            bl[j]--;
        }
    }
    /* most frequent symbols get the shortest codes */
    l = 1;
    for (i = m - 1; i >= 0; i--) {
        while (bl[l] == 0) l++;
        len[key[i] & 0xFFFF] = (unsigned char)l;
        bl[l]--;
    }
}
/* Canonical codes for lengths, bit-reversed for the LSB-first stream. */
static void nst__huff_codes(const unsigned char *len, int n, uint16_t *code) {
    int count[16] = {0}, i, l;
    unsigned next[16], c = 0;
    for (i = 0; i < n; i++) count[len[i]]++;
    count[0] = 0;
    for (l = 1; l <= 15; l++) { c = (c + (unsigned)count[l - 1]) << 1; next[l] = c; }
    for (i = 0; i < n; i++) {
        unsigned v, r = 0;
        int k;
        if (!len[i]) { code[i] = 0; continue; }
        v = next[len[i]]++;
        for (k = 0; k < len[i]; k++) r |= ((v >> k) & 1u) << (len[i] - 1 - k);
        code[i] = (uint16_t)r;
    }
}

static int nst__ilog2(unsigned x) { int l = 0; while ((x >> l) > 1) l++; return l; }
/* Length 3..258 -> code 257..285 with extra bits; distance 1..32768 -> code 0..29. */
static int nst__len_code(int len, int *ebits, int *eval) {
    int x = len - 3, l;
    if (len == 258) { *ebits = 0; *eval = 0; return 285; }
    if (x < 8) { *ebits = 0; *eval = 0; return 257 + x; }
    l = nst__ilog2((unsigned)x);
    *ebits = l - 2;
    *eval = x & ((1 << (l - 2)) - 1);
    return 257 + 4 * (l - 1) + ((x >> (l - 2)) & 3);
}
static int nst__dist_code(int d, int *ebits, int *eval) {
    int x = d - 1, l, c;
    if (x < 4) { *ebits = 0; *eval = 0; return x; }
    l = nst__ilog2((unsigned)x);
    c = 2 * l + ((x >> (l - 1)) & 1);
    *ebits = l - 1;
    *eval = x - ((2 + ((x >> (l - 1)) & 1)) << (l - 1));
    return c;
}

typedef struct nst__deflate_ctx {
    const unsigned char *in;
    size_t n;
    int good, lazy, nice, chain, level, hbits;
    uint32_t *head, *prev;      /* low 32 bits of position + 1 (0 = none): per hash, and per window slot */
    uint16_t *ll, *dist;        /* the block's symbols: literal byte or match length, distance (0 = literal) */
    size_t nsym, block_start, emitted;
    nst__bitw bw;
} nst__deflate_ctx;

static void nst__def_stored(nst__deflate_ctx *c, size_t start, size_t end, int final) {
    do {
        size_t len = end - start > 65535 ? 65535 : end - start;
        unsigned char hdr[4];
        int last = final && start + len == end;
        nst__bw_put(&c->bw, (uint32_t)last, 3);   /* BFINAL, BTYPE 00 */
        nst__bw_flush(&c->bw);
        hdr[0] = (unsigned char)len; hdr[1] = (unsigned char)(len >> 8);
        hdr[2] = (unsigned char)~len; hdr[3] = (unsigned char)(~len >> 8);
        nst__buf_put(c->bw.b, hdr, 4);
        nst__buf_put(c->bw.b, c->in + start, len);
        start += len;
    } while (start < end);
}

/* Writes the pending symbols as one block, choosing the cheapest encoding. */
static void nst__def_block(nst__deflate_ctx *c, int final) {
    uint32_t lf[286], df[30], cf[19];
    unsigned char ll_len[286], d_len[30], c_len[19], fl_len[288], fd_len[30], rle[320], rle_x[320];
    uint16_t ll_code[286], d_code[30], c_code[19], fl_code[288], fd_code[30];
    unsigned char all[316];
    int hlit, hdist, hclen, nrle = 0, i, eb, ev;
    size_t k, dyn_bits, fix_bits, raw = c->emitted - c->block_start, stored_bits;
    const unsigned char *L, *D;
    const uint16_t *LC, *DC;
    memset(lf, 0, sizeof lf); memset(df, 0, sizeof df); memset(cf, 0, sizeof cf);
    for (k = 0; k < c->nsym; k++) {
        if (!c->dist[k]) lf[c->ll[k]]++;
        else { lf[nst__len_code(c->ll[k], &eb, &ev)]++; df[nst__dist_code(c->dist[k], &eb, &ev)]++; }
    }
    lf[256] = 1;
    nst__huff_lengths(lf, 286, 15, ll_len);
    nst__huff_lengths(df, 30, 15, d_len);
    /* decoders accept one distance code, but some reject a literal code with a single symbol: the block
     * always has 256 plus something, except for an empty block, which gets a second length-1 code */
    {
        int used = 0;
        for (i = 0; i < 286; i++) used += ll_len[i] != 0;
        if (used == 1) ll_len[0] = 1;
    }
    for (hlit = 286; hlit > 257 && !ll_len[hlit - 1]; hlit--) {}
    for (hdist = 30; hdist > 1 && !d_len[hdist - 1]; hdist--) {}
    memcpy(all, ll_len, (size_t)hlit);
    memcpy(all + hlit, d_len, (size_t)hdist);
    for (i = 0; i < hlit + hdist;) {   /* run-length code the lengths with 16 (repeat), 17/18 (zeros) */
        int cur = all[i], run = 1;
        while (i + run < hlit + hdist && all[i + run] == cur) run++;
        if (cur == 0 && run >= 3) {
            int r = run > 138 ? 138 : run;
            if (r >= 11) { rle[nrle] = 18; rle_x[nrle++] = (unsigned char)(r - 11); }
            else { rle[nrle] = 17; rle_x[nrle++] = (unsigned char)(r - 3); }
            i += r;
        } else if (cur != 0 && run >= 4) {
            int r = run - 1 > 6 ? 6 : run - 1;
            rle[nrle] = (unsigned char)cur; rle_x[nrle++] = 0;
            rle[nrle] = 16; rle_x[nrle++] = (unsigned char)(r - 3);
            i += 1 + r;
        } else {
            rle[nrle] = (unsigned char)cur; rle_x[nrle++] = 0;
            i++;
        }
    }
    for (i = 0; i < nrle; i++) cf[rle[i]]++;
    nst__huff_lengths(cf, 19, 7, c_len);
    for (hclen = 19; hclen > 4 && !c_len[nst__clen_order[hclen - 1]]; hclen--) {}
    /* costs in bits */
    dyn_bits = 3 + 14 + 3 * (size_t)hclen;
    for (i = 0; i < nrle; i++) dyn_bits += c_len[rle[i]] + (rle[i] == 16 ? 2 : rle[i] == 17 ? 3 : rle[i] == 18 ? 7 : 0);
    for (i = 0; i < 288; i++) fl_len[i] = (unsigned char)(i < 144 ? 8 : i < 256 ? 9 : i < 280 ? 7 : 8);
    for (i = 0; i < 30; i++) fd_len[i] = 5;
    fix_bits = 3;
    for (i = 0; i < 286; i++) {
        size_t e = i >= 257 ? nst__len_extra[i - 257] : 0;
        dyn_bits += (size_t)lf[i] * (ll_len[i] + e);
        fix_bits += (size_t)lf[i] * (fl_len[i] + e);
    }
    for (i = 0; i < 30; i++) {
        dyn_bits += (size_t)df[i] * (d_len[i] + nst__dist_extra[i]);
        fix_bits += (size_t)df[i] * (5 + nst__dist_extra[i]);
    }
    stored_bits = (raw / 65535 + 1) * 40 + 8 + raw * 8;
    if (stored_bits <= dyn_bits && stored_bits <= fix_bits) {
        nst__def_stored(c, c->block_start, c->emitted, final);
    } else {
        int dyn = dyn_bits < fix_bits;
        if (dyn) {
            nst__huff_codes(ll_len, 286, ll_code);
            nst__huff_codes(d_len, 30, d_code);
            nst__huff_codes(c_len, 19, c_code);
            nst__bw_put(&c->bw, (uint32_t)(final | 4), 3);
            nst__bw_put(&c->bw, (uint32_t)(hlit - 257), 5);
            nst__bw_put(&c->bw, (uint32_t)(hdist - 1), 5);
            nst__bw_put(&c->bw, (uint32_t)(hclen - 4), 4);
            for (i = 0; i < hclen; i++) nst__bw_put(&c->bw, c_len[nst__clen_order[i]], 3);
            for (i = 0; i < nrle; i++) {
                nst__bw_put(&c->bw, c_code[rle[i]], c_len[rle[i]]);
                if (rle[i] >= 16) nst__bw_put(&c->bw, rle_x[i], rle[i] == 16 ? 2 : rle[i] == 17 ? 3 : 7);
            }
            L = ll_len; D = d_len; LC = ll_code; DC = d_code;
        } else {
            nst__huff_codes(fl_len, 288, fl_code);
            nst__huff_codes(fd_len, 30, fd_code);
            nst__bw_put(&c->bw, (uint32_t)(final | 2), 3);
            L = fl_len; D = fd_len; LC = fl_code; DC = fd_code;
        }
        for (k = 0; k < c->nsym; k++) {
            if (!c->dist[k]) {
                nst__bw_put(&c->bw, LC[c->ll[k]], L[c->ll[k]]);
            } else {
                int lc = nst__len_code(c->ll[k], &eb, &ev), dc;
                nst__bw_put(&c->bw, LC[lc], L[lc]);
                if (eb) nst__bw_put(&c->bw, (uint32_t)ev, eb);
                dc = nst__dist_code(c->dist[k], &eb, &ev);
                nst__bw_put(&c->bw, DC[dc], D[dc]);
                if (eb) nst__bw_put(&c->bw, (uint32_t)ev, eb);
            }
        }
        nst__bw_put(&c->bw, LC[256], L[256]);
    }
    c->nsym = 0;
    c->block_start = c->emitted;
}

static void nst__def_sym(nst__deflate_ctx *c, int ll, int dist) {
    c->ll[c->nsym] = (uint16_t)ll;
    c->dist[c->nsym++] = (uint16_t)dist;
    c->emitted += dist ? (size_t)ll : 1;
    if (c->nsym == NST__DEF_BLOCK) nst__def_block(c, 0);
}
static void nst__def_insert(nst__deflate_ctx *c, size_t i) {
    uint32_t v, h;
    if (i + 4 > c->n) return;
    v = (uint32_t)c->in[i] | ((uint32_t)c->in[i + 1] << 8) | ((uint32_t)c->in[i + 2] << 16) | ((uint32_t)c->in[i + 3] << 24);
    h = (v * 2654435761u) >> (32 - c->hbits);
    c->prev[i & (NST__WSIZE - 1)] = c->head[h];
    c->head[h] = (uint32_t)(i + 1);
}
static int nst__match_len(const unsigned char *a, const unsigned char *b, int maxlen) {
    int l = 0;
    while (l + 8 <= maxlen) {
        uint64_t x, y;
        memcpy(&x, a + l, 8);
        memcpy(&y, b + l, 8);
        if (x != y) break;
        l += 8;
    }
    while (l < maxlen && a[l] == b[l]) l++;
    return l;
}
/* Longest match for position i (already inserted) longer than prev_len; 0 if none.
 * Positions are stored as 32-bit (i + 1) to halve the tables' cache footprint; a candidate's distance is
 * the wrapped difference, and the chain must move strictly further back within the window. Every
 * candidate is verified byte by byte, so even a stale entry on a > 4 GiB input can only cost time. */
static int nst__def_find(nst__deflate_ctx *c, size_t i, int prev_len, int *dist) {
    const unsigned char *cur = c->in + i;
    uint32_t cand = c->prev[i & (NST__WSIZE - 1)], now = (uint32_t)(i + 1), d = 0;
    int chain = c->chain, best = prev_len < 2 ? 2 : prev_len, found = 0;
    int maxlen = c->n - i < 258 ? (int)(c->n - i) : 258, nice = c->nice < maxlen ? c->nice : maxlen;
    if (best >= maxlen) return 0;
    if (prev_len >= c->good) chain >>= 2;
    while (cand && chain-- > 0) {
        uint32_t nd = now - cand;
        const unsigned char *m;
        if (nd <= d || nd > NST__WSIZE || nd > i) break;   /* not further back, or out of the window */
        d = nd;
        m = cur - d;
        if (m[best] == cur[best] && m[0] == cur[0] && m[1] == cur[1]) {
            int l = nst__match_len(m, cur, maxlen);
            if (l > best) {
                best = l;
                found = 1;
                *dist = (int)d;
                if (l >= nice) break;
            }
        }
        cand = c->prev[(i - d) & (NST__WSIZE - 1)];
    }
    return found ? best : 0;
}

/* Appends the deflate stream of in[0..n) (zlib_wrapper: with the RFC 1950 header and Adler-32) to out.
 * level 0 stores; 1..9 trade speed for size like zlib's levels. */
static NST__UNUSED nst_status nst__deflate(const unsigned char *in, size_t n, int zlib_wrapper, int level,
                                           nst__buf *out) {
    /* good, lazy, nice, chain: zlib's published tuning per level (levels 1-3 match greedily) */
    static const int cfg[10][4] = {{0, 0, 0, 0},       {4, 0, 8, 4},       {4, 0, 16, 8},
                                   {4, 0, 32, 32},     {4, 4, 16, 16},     {8, 16, 32, 32},
                                   {8, 16, 128, 128},  {8, 32, 128, 256},  {32, 128, 258, 1024},
                                   {32, 258, 258, 4096}};
    nst__deflate_ctx c;
    size_t start_len = out->len;
    if (level < 0 || level > 9) level = 6;
    memset(&c, 0, sizeof c);
    c.in = in; c.n = n; c.level = level;
    c.good = cfg[level][0]; c.lazy = cfg[level][1]; c.nice = cfg[level][2]; c.chain = cfg[level][3];
    c.bw.b = out;
    if (zlib_wrapper) {
        int flevel = level < 2 ? 0 : level < 6 ? 1 : level == 6 ? 2 : 3, flg = flevel << 6;
        flg += 31 - (0x78 * 256 + flg) % 31;
        nst__buf_byte(out, 0x78);
        nst__buf_byte(out, flg);
    }
    if (level == 0 || n == 0) {
        if (n == 0) { nst__bw_put(&c.bw, 3, 3); nst__bw_put(&c.bw, 0, 7); nst__bw_flush(&c.bw); }   /* fixed: EOB */
        else nst__def_stored(&c, 0, n, 1);
    } else {
        size_t i = 0;
        int have_prev = 0, plen = 0, pdist = 0;
        /* small inputs get small tables: the hash needs no more buckets than positions, and the chain
         * slots are indexed by position, so n of them suffice below the window size */
        c.hbits = 8;
        while (c.hbits < NST__HBITS && ((size_t)1 << c.hbits) < n) c.hbits++;
        c.head = (uint32_t *)nst__calloc((size_t)1 << c.hbits, sizeof(uint32_t));
        c.prev = (uint32_t *)nst__calloc(n < NST__WSIZE ? n : NST__WSIZE, sizeof(uint32_t));
        c.ll = (uint16_t *)nst__malloc(NST__DEF_BLOCK * sizeof(uint16_t));
        c.dist = (uint16_t *)nst__malloc(NST__DEF_BLOCK * sizeof(uint16_t));
        if (!c.head || !c.prev || !c.ll || !c.dist) {
            nst__free(c.head); nst__free(c.prev); nst__free(c.ll); nst__free(c.dist);
            out->len = start_len;
            return nst__err(NST_ERR_NOMEM, "deflate: out of memory");
        }
        while (i < n) {
            int clen = 0, cdist = 0;
            nst__def_insert(&c, i);
            if (!c.lazy) {   /* greedy */
                clen = nst__def_find(&c, i, 2, &cdist);
                if (clen == 3 && cdist > 4096) clen = 0;
                if (clen >= 3) {
                    size_t k;
                    nst__def_sym(&c, clen, cdist);
                    for (k = i + 1; k < i + (size_t)clen; k++) nst__def_insert(&c, k);
                    i += (size_t)clen;
                } else {
                    nst__def_sym(&c, in[i], 0);
                    i++;
                }
                continue;
            }
            if (!have_prev || plen < c.lazy) clen = nst__def_find(&c, i, have_prev ? plen : 2, &cdist);
            if (clen == 3 && cdist > 4096) clen = 0;   /* a far 3-byte match costs more than literals */
            if (have_prev && plen >= 3 && clen <= plen) {
                size_t k, end = i - 1 + (size_t)plen;
                nst__def_sym(&c, plen, pdist);
                for (k = i + 1; k < end; k++) nst__def_insert(&c, k);
                i = end;
                have_prev = 0;
            } else {
                if (have_prev) nst__def_sym(&c, in[i - 1], 0);
                have_prev = 1;
                plen = clen;
                pdist = cdist;
                i++;
            }
        }
        if (have_prev) nst__def_sym(&c, in[n - 1], 0);
        nst__def_block(&c, 1);
        nst__bw_flush(&c.bw);
        nst__free(c.head); nst__free(c.prev); nst__free(c.ll); nst__free(c.dist);
    }
    if (zlib_wrapper) {
        uint32_t a = nst__adler32(1, in, n);
        nst__buf_byte(out, (int)(a >> 24));
        nst__buf_byte(out, (int)(a >> 16));
        nst__buf_byte(out, (int)(a >> 8));
        nst__buf_byte(out, (int)a);
    }
    if (out->failed) return nst__err(NST_ERR_NOMEM, "deflate: out of memory for the output");
    return NST_OK;
}

/* =====================================================================================================
 * pixel operations: alpha, resampling, colour (always compiled: the transfer needs them)
 * ===================================================================================================*/
static NST__UNUSED float nst__clamp01(float v) { return v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f; }   /* NaN -> 0 */

NSTDEF nst_status nst_image_to_rgb(const nst_image *in, nst_image *out) {
    nst_status st;
    size_t i, n;
    const float *s;
    float *d;
    if ((st = nst__image_valid(in, "to_rgb")) != NST_OK) return st;
    if ((st = nst__image_alloc_raw(out, in->width, in->height, 3)) != NST_OK) return st;
    n = (size_t)in->width * (size_t)in->height;
    s = in->pixels;
    d = out->pixels;
    switch (in->channels) {
    case 1: for (i = 0; i < n; i++) d[3 * i] = d[3 * i + 1] = d[3 * i + 2] = s[i]; break;
    case 2:
        for (i = 0; i < n; i++) {
            float a = nst__clamp01(s[2 * i + 1]);
            d[3 * i] = d[3 * i + 1] = d[3 * i + 2] = s[2 * i] * a + (1.0f - a);
        }
        break;
    case 3: memcpy(d, s, n * 3 * sizeof(float)); break;
    default:
        for (i = 0; i < n; i++) {
            float a = nst__clamp01(s[4 * i + 3]);
            d[3 * i] = s[4 * i] * a + (1.0f - a);
            d[3 * i + 1] = s[4 * i + 1] * a + (1.0f - a);
            d[3 * i + 2] = s[4 * i + 2] * a + (1.0f - a);
        }
    }
    return NST_OK;
}

/* ---- resampling ------------------------------------------------------------------------------------
 * Separable: a horizontal pass into a float buffer, then a vertical one. For each output sample the
 * filter is centred on its position in input coordinates; when downscaling it is stretched by the
 * ratio, so it integrates over every input pixel the output pixel covers (that is what removes the
 * aliasing). Taps outside the image are dropped and the rest renormalised to sum 1, so a constant
 * image stays constant up to rounding. */
static double nst__sinc(double x) {
    if (x == 0.0) return 1.0;
    x *= 3.14159265358979323846;
    return sin(x) / x;
}
static double nst__filter_eval(nst_resize_filter f, double x) {
    x = fabs(x);
    switch (f) {
    case NST_FILTER_BOX: return x < 0.5 ? 1.0 : x == 0.5 ? 0.5 : 0.0;
    case NST_FILTER_TRIANGLE: return x < 1.0 ? 1.0 - x : 0.0;
    case NST_FILTER_MITCHELL: {   /* B = C = 1/3 */
        const double B = 1.0 / 3, C = 1.0 / 3;
        if (x < 1.0) return ((12 - 9 * B - 6 * C) * x * x * x + (-18 + 12 * B + 6 * C) * x * x + (6 - 2 * B)) / 6;
        if (x < 2.0) return ((-B - 6 * C) * x * x * x + (6 * B + 30 * C) * x * x + (-12 * B - 48 * C) * x + (8 * B + 24 * C)) / 6;
        return 0.0;
    }
    case NST_FILTER_LANCZOS3: return x < 3.0 ? nst__sinc(x) * nst__sinc(x / 3.0) : 0.0;
    default: {                    /* Catmull-Rom, a = -0.5 */
        const double a = -0.5;
        if (x < 1.0) return ((a + 2) * x - (a + 3)) * x * x + 1;
        if (x < 2.0) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
        return 0.0;
    }
    }
}
static double nst__filter_support(nst_resize_filter f) {
    return f == NST_FILTER_BOX ? 0.5 : f == NST_FILTER_TRIANGLE ? 1.0 : f == NST_FILTER_LANCZOS3 ? 3.0 : 2.0;
}

typedef struct nst__taps {
    int *start, *count;   /* first input index and tap count per output sample */
    float *w;             /* [out][maxtaps] */
    int maxtaps;
} nst__taps;
static void nst__taps_free(nst__taps *t) { nst__free(t->start); nst__free(t->count); nst__free(t->w); }
static nst_status nst__taps_make(nst__taps *t, int in, int out, nst_resize_filter f) {
    double scale = (double)out / in, fs = scale < 1.0 ? 1.0 / scale : 1.0, support = nst__filter_support(f) * fs;
    int i;
    memset(t, 0, sizeof *t);
    t->maxtaps = (int)ceil(support) * 2 + 2;
    if (t->maxtaps > in + 2) t->maxtaps = in + 2;
    t->start = (int *)nst__malloc((size_t)out * sizeof(int));
    t->count = (int *)nst__malloc((size_t)out * sizeof(int));
    t->w = (float *)nst__malloc((size_t)out * (size_t)t->maxtaps * sizeof(float));
    if (!t->start || !t->count || !t->w) { nst__taps_free(t); return nst__err(NST_ERR_NOMEM, "resize: out of memory"); }
    for (i = 0; i < out; i++) {
        double center = (i + 0.5) / scale, sum = 0.0;
        int lo = (int)floor(center - support), hi = (int)ceil(center + support), j, k = 0;
        float *w = t->w + (size_t)i * t->maxtaps;
        if (lo < 0) lo = 0;
        if (hi > in - 1) hi = in - 1;
        if (hi - lo + 1 > t->maxtaps) hi = lo + t->maxtaps - 1;
        for (j = lo; j <= hi; j++) {
            double v;
            if (f == NST_FILTER_BOX && fs > 1.0) {   /* exact area coverage of input pixel j */
                double a = center - 0.5 * fs > j ? center - 0.5 * fs : j, b = center + 0.5 * fs < j + 1 ? center + 0.5 * fs : j + 1;
                v = b > a ? b - a : 0.0;
            } else {
                v = nst__filter_eval(f, (j + 0.5 - center) / fs);
            }
            w[k++] = (float)v;
            sum += v;
        }
        if (sum == 0.0) {   /* box filter on an exact half-way point: take the nearest pixel */
            int nearest = (int)floor(center);
            if (nearest > in - 1) nearest = in - 1;
            lo = nearest; k = 1; w[0] = 1.0f;
        } else {
            for (j = 0; j < k; j++) w[j] = (float)(w[j] / sum);
        }
        /* trim zero taps at both ends so the inner loops do less work */
        while (k > 1 && w[k - 1] == 0.0f) k--;
        while (k > 1 && w[0] == 0.0f) { memmove(w, w + 1, (size_t)(k - 1) * sizeof(float)); lo++; k--; }
        t->start[i] = lo;
        t->count[i] = k;
    }
    return NST_OK;
}

static float nst__srgb_to_linear(float v) {
    return v <= 0.04045f ? v * (1.0f / 12.92f) : (float)pow((v + 0.055) / 1.055, 2.4);
}
static float nst__linear_to_srgb(float v) {
    if (!(v > 0.0f)) return 0.0f;
    return v <= 0.0031308f ? v * 12.92f : (float)(1.055 * pow(v, 1.0 / 2.4) - 0.055);
}

NSTDEF nst_status nst_image_resize_ex(const nst_image *in, int w, int h, const nst_resize_options *o,
                                      nst_image *out) {
    nst_resize_options opt;
    nst__taps tx, ty;
    nst_status st;
    float *src = NULL, *tmp = NULL;
    int c, alpha, nt, y;
    size_t npx;
    memset(&opt, 0, sizeof opt);
    if (o) opt = *o;
    if (opt.filter == NST_FILTER_DEFAULT || (int)opt.filter > (int)NST_FILTER_LANCZOS3) opt.filter = NST_FILTER_CUBIC;
    if ((st = nst__image_valid(in, "resize")) != NST_OK) return st;
    if (w <= 0 || h <= 0) return nst__err(NST_ERR_ARGUMENT, "resize: invalid target size %dx%d", w, h);
    c = in->channels;
    alpha = c == 2 || c == 4;
    if ((st = nst__image_alloc_raw(out, w, h, c)) != NST_OK) return st;
    npx = (size_t)in->width * (size_t)in->height;
    /* premultiplied (and optionally linear) working copy; the plain input is used when neither applies */
    if (alpha || opt.linear_light) {
        size_t i;
        int k;
        src = (float *)nst__malloc(npx * (size_t)c * sizeof(float));
        if (!src) { nst_image_free(out); return nst__err(NST_ERR_NOMEM, "resize: out of memory"); }
        for (i = 0; i < npx; i++) {
            const float *p = in->pixels + i * (size_t)c;
            float a = alpha ? nst__clamp01(p[c - 1]) : 1.0f;
            for (k = 0; k < c - alpha; k++) src[i * (size_t)c + (size_t)k] = (opt.linear_light ? nst__srgb_to_linear(nst__clamp01(p[k])) : p[k]) * a;
            if (alpha) src[i * (size_t)c + (size_t)c - 1] = a;
        }
    }
    if ((st = nst__taps_make(&tx, in->width, w, opt.filter)) != NST_OK) { nst__free(src); nst_image_free(out); return st; }
    if ((st = nst__taps_make(&ty, in->height, h, opt.filter)) != NST_OK) {
        nst__taps_free(&tx); nst__free(src); nst_image_free(out); return st;
    }
    tmp = (float *)nst__malloc((size_t)in->height * (size_t)w * (size_t)c * sizeof(float));
    if (!tmp) {
        nst__taps_free(&tx); nst__taps_free(&ty); nst__free(src); nst_image_free(out);
        return nst__err(NST_ERR_NOMEM, "resize: out of memory");
    }
    {
        const float *s = src ? src : in->pixels;
        int ih = in->height, iw = in->width;
        nt = nst__resolve_threads(0);
        (void)nt;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static)
#endif
        for (y = 0; y < ih; y++) {   /* horizontal */
            const float *row = s + (size_t)y * iw * c;
            float *dst = tmp + (size_t)y * w * c;
            int x, k, j;
            for (x = 0; x < w; x++) {
                const float *wt = tx.w + (size_t)x * tx.maxtaps;
                const float *p = row + (size_t)tx.start[x] * c;
                for (k = 0; k < c; k++) {
                    float acc = 0.0f;
                    for (j = 0; j < tx.count[x]; j++) acc += wt[j] * p[(size_t)j * c + k];
                    dst[(size_t)x * c + k] = acc;
                }
            }
        }
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static)
#endif
        for (y = 0; y < h; y++) {   /* vertical, then un-premultiply, back to sRGB, clamp */
            float *dst = out->pixels + (size_t)y * w * c;
            const float *wt = ty.w + (size_t)y * ty.maxtaps;
            int x, j, k, rowlen = w * c;
            for (x = 0; x < rowlen; x++) dst[x] = 0.0f;
            for (j = 0; j < ty.count[y]; j++) {
                const float *p = tmp + (size_t)(ty.start[y] + j) * rowlen;
                float wj = wt[j];
                for (x = 0; x < rowlen; x++) dst[x] += wj * p[x];
            }
            for (x = 0; x < w; x++) {
                float *q = dst + (size_t)x * c;
                float a = alpha ? nst__clamp01(q[c - 1]) : 1.0f, inv = a > 0.0f ? 1.0f / a : 0.0f;
                for (k = 0; k < c - alpha; k++) {
                    float v = alpha ? q[k] * inv : q[k];
                    q[k] = nst__clamp01(opt.linear_light ? nst__linear_to_srgb(v) : v);
                }
                if (alpha) q[c - 1] = a;
            }
        }
    }
    nst__free(tmp);
    nst__free(src);
    nst__taps_free(&tx);
    nst__taps_free(&ty);
    return NST_OK;
}
NSTDEF nst_status nst_image_resize(const nst_image *in, int w, int h, nst_image *out) {
    return nst_image_resize_ex(in, w, h, NULL, out);
}

/* ---- colour ----------------------------------------------------------------------------------------*/
/* NTSC YIQ (FCC 1953 coefficients); the inverse is computed from the forward matrix so the round trip is
 * exact to float precision. */
static const double nst__yiq[3][3] = {{0.299, 0.587, 0.114},
                                      {0.595716, -0.274453, -0.321263},
                                      {0.211456, -0.522591, 0.311135}};
static int nst__inv3(double m[3][3], double r[3][3]) {
    double det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
                 m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    int i, j;
    if (fabs(det) < 1e-300) return 0;
    for (i = 0; i < 3; i++)
        for (j = 0; j < 3; j++) {
            int a = (j + 1) % 3, b = (j + 2) % 3, c = (i + 1) % 3, d = (i + 2) % 3;
            r[i][j] = (m[a][c] * m[b][d] - m[a][d] * m[b][c]) / det;   /* cofactor transpose */
        }
    return 1;
}
/* Makes an RGB view of img: the image itself when it has 3 channels, else a converted copy in tmp. */
static nst_status nst__as_rgb(const nst_image *img, nst_image *tmp, const nst_image **rgb) {
    nst_status st;
    tmp->pixels = NULL;
    if (img->channels == 3) { *rgb = img; return NST_OK; }
    if ((st = nst_image_to_rgb(img, tmp)) != NST_OK) return st;
    *rgb = tmp;
    return NST_OK;
}

NSTDEF nst_status nst_image_luminance_transfer(const nst_image *src_luma, const nst_image *colors, nst_image *out) {
    nst_image ta, tb;
    const nst_image *a, *b;
    nst_status st;
    double inv[3][3], fwd[3][3];
    size_t i, n;
    if ((st = nst__image_valid(src_luma, "luminance_transfer")) != NST_OK ||
        (st = nst__image_valid(colors, "luminance_transfer")) != NST_OK)
        return st;
    if (src_luma->width != colors->width || src_luma->height != colors->height)
        return nst__err(NST_ERR_ARGUMENT, "luminance_transfer: sizes differ (%dx%d vs %dx%d)", src_luma->width,
                        src_luma->height, colors->width, colors->height);
    if ((st = nst__as_rgb(src_luma, &ta, &a)) != NST_OK) return st;
    if ((st = nst__as_rgb(colors, &tb, &b)) != NST_OK) { nst_image_free(&ta); return st; }
    if ((st = nst__image_alloc_raw(out, a->width, a->height, 3)) != NST_OK) { nst_image_free(&ta); nst_image_free(&tb); return st; }
    memcpy(fwd, nst__yiq, sizeof fwd);
    nst__inv3(fwd, inv);
    n = (size_t)a->width * (size_t)a->height;
    for (i = 0; i < n; i++) {
        const float *p = a->pixels + 3 * i, *q = b->pixels + 3 * i;
        double Y = nst__yiq[0][0] * p[0] + nst__yiq[0][1] * p[1] + nst__yiq[0][2] * p[2];
        double I = nst__yiq[1][0] * q[0] + nst__yiq[1][1] * q[1] + nst__yiq[1][2] * q[2];
        double Q = nst__yiq[2][0] * q[0] + nst__yiq[2][1] * q[1] + nst__yiq[2][2] * q[2];
        int k;
        for (k = 0; k < 3; k++) out->pixels[3 * i + k] = nst__clamp01((float)(inv[k][0] * Y + inv[k][1] * I + inv[k][2] * Q));
    }
    nst_image_free(&ta);
    nst_image_free(&tb);
    return NST_OK;
}

/* Eigen-decomposition of a symmetric 3x3 matrix by cyclic Jacobi rotations: a = v diag(e) v^T. */
static void nst__eig3(double a_in[3][3], double e[3], double v[3][3]) {
    double a[3][3];
    int i, j, k, sweep;
    memcpy(a, a_in, sizeof a);
    for (i = 0; i < 3; i++) for (j = 0; j < 3; j++) v[i][j] = i == j;
    for (sweep = 0; sweep < 50; sweep++) {
        double off = fabs(a[0][1]) + fabs(a[0][2]) + fabs(a[1][2]);
        if (off < 1e-300) break;
        for (i = 0; i < 2; i++)
            for (j = i + 1; j < 3; j++) {
                double th, t, c, s;
                if (fabs(a[i][j]) < 1e-300) continue;
                th = (a[j][j] - a[i][i]) / (2 * a[i][j]);
                t = (th >= 0 ? 1.0 : -1.0) / (fabs(th) + sqrt(th * th + 1));
                c = 1 / sqrt(t * t + 1);
                s = t * c;
                for (k = 0; k < 3; k++) {   /* a = J^T a J, columns then rows */
                    double x = a[k][i], y = a[k][j];
                    a[k][i] = c * x - s * y;
                    a[k][j] = s * x + c * y;
                }
                for (k = 0; k < 3; k++) {
                    double x = a[i][k], y = a[j][k];
                    a[i][k] = c * x - s * y;
                    a[j][k] = s * x + c * y;
                }
                for (k = 0; k < 3; k++) {
                    double x = v[k][i], y = v[k][j];
                    v[k][i] = c * x - s * y;
                    v[k][j] = s * x + c * y;
                }
            }
    }
    for (i = 0; i < 3; i++) e[i] = a[i][i];
}
/* r = v diag(f(e)) v^T with f(e) = e^p (eigenvalues clamped at a small floor). */
static void nst__sym_pow(double m[3][3], double p, double r[3][3]) {
    double e[3], v[3][3];
    int i, j, k;
    nst__eig3(m, e, v);
    for (k = 0; k < 3; k++) e[k] = pow(e[k] > 1e-10 ? e[k] : 1e-10, p);
    for (i = 0; i < 3; i++)
        for (j = 0; j < 3; j++) {
            double s = 0;
            for (k = 0; k < 3; k++) s += v[i][k] * e[k] * v[j][k];
            r[i][j] = s;
        }
}
static void nst__chol3(double m[3][3], double l[3][3]) {
    int i, j, k;
    memset(l, 0, 9 * sizeof(double));
    for (j = 0; j < 3; j++) {
        double d = m[j][j];
        for (k = 0; k < j; k++) d -= l[j][k] * l[j][k];
        l[j][j] = sqrt(d > 1e-12 ? d : 1e-12);
        for (i = j + 1; i < 3; i++) {
            double s = m[i][j];
            for (k = 0; k < j; k++) s -= l[i][k] * l[j][k];
            l[i][j] = s / l[j][j];
        }
    }
}
/* Mean and covariance of RGB pixels, plus a tiny eps on the diagonal so flat images stay invertible. */
static void nst__rgb_stats(const nst_image *img, double mean[3], double cov[3][3]) {
    size_t i, n = (size_t)img->width * (size_t)img->height;
    int a, b;
    double s[3] = {0, 0, 0};
    for (i = 0; i < n; i++) for (a = 0; a < 3; a++) s[a] += img->pixels[3 * i + a];
    for (a = 0; a < 3; a++) mean[a] = s[a] / (double)n;
    memset(cov, 0, 9 * sizeof(double));
    for (i = 0; i < n; i++) {
        double d[3];
        for (a = 0; a < 3; a++) d[a] = img->pixels[3 * i + a] - mean[a];
        for (a = 0; a < 3; a++) for (b = a; b < 3; b++) cov[a][b] += d[a] * d[b];
    }
    for (a = 0; a < 3; a++) for (b = a; b < 3; b++) { cov[a][b] /= (double)n; cov[b][a] = cov[a][b]; }
    for (a = 0; a < 3; a++) cov[a][a] += 1e-7;
}

NSTDEF nst_status nst_image_match_colors_ex(const nst_image *img, const nst_image *target, nst_match_mode mode,
                                            nst_image *out) {
    nst_image ta, tb;
    const nst_image *a, *b;
    nst_status st;
    double ma[3], mb[3], ca[3][3], cb[3][3], A[3][3], x[3][3], y[3][3];
    size_t i, n;
    int r, c, k;
    if ((st = nst__image_valid(img, "match_colors")) != NST_OK ||
        (st = nst__image_valid(target, "match_colors")) != NST_OK)
        return st;
    if ((st = nst__as_rgb(img, &ta, &a)) != NST_OK) return st;
    if ((st = nst__as_rgb(target, &tb, &b)) != NST_OK) { nst_image_free(&ta); return st; }
    nst__rgb_stats(a, ma, ca);
    nst__rgb_stats(b, mb, cb);
    if (mode == NST_MATCH_CHOLESKY) {   /* A = Lb La^-1 */
        double la[3][3];
        nst__chol3(ca, la);
        nst__chol3(cb, x);
        if (!nst__inv3(la, y)) nst__sym_pow(ca, -0.5, y);
    } else {                            /* A = Cb^1/2 Ca^-1/2 */
        nst__sym_pow(cb, 0.5, x);
        nst__sym_pow(ca, -0.5, y);
    }
    for (r = 0; r < 3; r++)
        for (c = 0; c < 3; c++) {
            double s = 0;
            for (k = 0; k < 3; k++) s += x[r][k] * y[k][c];
            A[r][c] = s;
        }
    if ((st = nst__image_alloc_raw(out, a->width, a->height, 3)) != NST_OK) { nst_image_free(&ta); nst_image_free(&tb); return st; }
    n = (size_t)a->width * (size_t)a->height;
    for (i = 0; i < n; i++) {
        const float *p = a->pixels + 3 * i;
        double d[3];
        for (k = 0; k < 3; k++) d[k] = p[k] - ma[k];
        for (r = 0; r < 3; r++)
            out->pixels[3 * i + r] = nst__clamp01((float)(A[r][0] * d[0] + A[r][1] * d[1] + A[r][2] * d[2] + mb[r]));
    }
    nst_image_free(&ta);
    nst_image_free(&tb);
    return NST_OK;
}
NSTDEF nst_status nst_image_match_colors(const nst_image *img, const nst_image *target, nst_image *out) {
    return nst_image_match_colors_ex(img, target, NST_MATCH_PCA, out);
}

#ifndef NST_NO_IMAGE_IO
/* =====================================================================================================
 * PNG (ISO/IEC 15948)
 * ===================================================================================================*/
static const unsigned char nst__png_sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};

/* Adam7 pass geometry: start x, start y, step x, step y. Pass 0 alone stands for a plain image. */
static const unsigned char nst__adam7[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                               {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};

static int nst__paeth(int a, int b, int c) {
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}
/* Undoes one row's filter in place. prev is the previous unfiltered row of the pass (NULL for the first).
 * The first bpp bytes have no left neighbour, so they are done apart and the main loops stay branch-free. */
static int nst__png_unfilter(unsigned char *row, const unsigned char *prev, size_t len, int bpp, int type) {
    size_t i, b = (size_t)bpp < len ? (size_t)bpp : len;
    if (!prev && (type == 2 || type == 4)) type = type == 2 ? 0 : 1;   /* no row above: Up = None, Paeth = Sub */
    switch (type) {
    case 0: break;
    case 1: for (i = b; i < len; i++) row[i] = (unsigned char)(row[i] + row[i - b]); break;
    case 2: for (i = 0; i < len; i++) row[i] = (unsigned char)(row[i] + prev[i]); break;
    case 3:
        if (!prev) {
            for (i = b; i < len; i++) row[i] = (unsigned char)(row[i] + (row[i - b] >> 1));
            break;
        }
        for (i = 0; i < b; i++) row[i] = (unsigned char)(row[i] + (prev[i] >> 1));
        for (; i < len; i++) row[i] = (unsigned char)(row[i] + ((row[i - b] + prev[i]) >> 1));
        break;
    case 4:
        for (i = 0; i < b; i++) row[i] = (unsigned char)(row[i] + prev[i]);   /* Paeth(0, up, 0) = up */
        for (; i < len; i++) row[i] = (unsigned char)(row[i] + nst__paeth(row[i - b], prev[i], prev[i - b]));
        break;
    default: return 0;
    }
    return 1;
}

typedef struct nst__png_info {
    uint32_t w, h;
    int depth, ctype, interlace, channels;   /* channels in the file (palette = 1) */
    int out_ch;                               /* channels decoded: palette expanded, tRNS -> alpha */
    float pal[256][4];
    int npal, has_trns;
    unsigned trns[3];                         /* gray or RGB key, at the file's bit depth */
} nst__png_info;

static unsigned nst__png_sample(const unsigned char *row, size_t k, int depth) {
    switch (depth) {
    case 8: return row[k];
    case 16: return ((unsigned)row[2 * k] << 8) | row[2 * k + 1];
    default: {
        size_t bit = k * (size_t)depth;
        return (row[bit >> 3] >> (8 - depth - (int)(bit & 7))) & ((1u << depth) - 1);
    }
    }
}
/* Converts one unfiltered row of a pass to float pixels at out (step: floats between output pixels). */
static void nst__png_row(const nst__png_info *pi, const unsigned char *row, uint32_t n, float *out, size_t step,
                         const float *lut8) {
    uint32_t x;
    int c, fc = pi->channels, oc = pi->out_ch;
    float scale = 1.0f / (float)((1u << pi->depth) - 1);
    if (pi->ctype == 3) {
        for (x = 0; x < n; x++, out += step) {
            unsigned v = nst__png_sample(row, x, pi->depth);
            const float *p = pi->pal[v];   /* indices past the palette read black (zeroed entries) */
            for (c = 0; c < oc; c++) out[c] = p[c];
        }
        return;
    }
    if (pi->depth == 8 && !pi->has_trns) {
        for (x = 0; x < n; x++, out += step, row += fc)
            for (c = 0; c < fc; c++) out[c] = lut8[row[c]];
        return;
    }
    for (x = 0; x < n; x++, out += step) {
        unsigned v[4] = {0, 0, 0, 0};
        for (c = 0; c < fc; c++) {
            v[c] = nst__png_sample(row, (size_t)x * fc + c, pi->depth);
            out[c] = pi->depth == 16 ? (float)v[c] * (1.0f / 65535.0f) : pi->depth == 8 ? lut8[v[c]] : (float)v[c] * scale;
        }
        if (pi->has_trns) {   /* only gray and RGB carry a colour key */
            int key = v[0] == pi->trns[0] && (fc == 1 || (v[1] == pi->trns[1] && v[2] == pi->trns[2]));
            out[fc] = key ? 0.0f : 1.0f;
        }
    }
}

static nst_status nst__png_decode(const unsigned char *d, size_t n, int checks, nst_image *img) {
    nst__png_info pi;
    nst__buf idat;
    size_t pos = 8, raw_size = 0, got;
    unsigned char *raw = NULL, *dummy;
    int seen_ihdr = 0, seen_idat = 0, seen_iend = 0, pass, i;
    float lut8[256];
    nst_status st;
    memset(&pi, 0, sizeof pi);
    memset(&idat, 0, sizeof idat);
    if (n < 8 || memcmp(d, nst__png_sig, 8) != 0) return nst__err(NST_ERR_FORMAT, "png: missing signature");
    while (!seen_iend) {
        uint32_t len;
        const unsigned char *type, *data;
        char name[5];
        if (pos == n) break;   /* no IEND: tolerated when the image data is complete */
        if (n - pos < 12) { st = nst__err(NST_ERR_FORMAT, "png: truncated chunk header at offset %lu", (unsigned long)pos); goto fail; }
        len = nst__rd32be(d + pos);
        type = d + pos + 4;
        data = d + pos + 8;
        for (i = 0; i < 4; i++) {
            int ch = type[i];
            name[i] = (char)(((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')) ? ch : '?');
        }
        name[4] = 0;
        if (strchr(name, '?')) { st = nst__err(NST_ERR_FORMAT, "png: invalid chunk type at offset %lu", (unsigned long)pos); goto fail; }
        if (len > 0x7FFFFFFFu || len > n - pos - 12) {
            st = nst__err(NST_ERR_FORMAT, "png: chunk %s is truncated (length %lu, %lu bytes left)", name,
                          (unsigned long)len, (unsigned long)(n - pos - 12));
            goto fail;
        }
        if (checks && nst__crc32(0, type, (size_t)len + 4) != nst__rd32be(data + len)) {
            st = nst__err(NST_ERR_FORMAT, "png: CRC mismatch in chunk %s (file corrupted)", name);
            goto fail;
        }
        if (!seen_ihdr && memcmp(name, "IHDR", 4) != 0) { st = nst__err(NST_ERR_FORMAT, "png: first chunk is %s, not IHDR", name); goto fail; }
        if (!memcmp(name, "IHDR", 4)) {
            static const int chans[7] = {1, 0, 3, 1, 2, 0, 4};
            int ok;
            if (seen_ihdr) { st = nst__err(NST_ERR_FORMAT, "png: duplicate IHDR"); goto fail; }
            if (len != 13) { st = nst__err(NST_ERR_FORMAT, "png: IHDR has length %lu, not 13", (unsigned long)len); goto fail; }
            seen_ihdr = 1;
            pi.w = nst__rd32be(data);
            pi.h = nst__rd32be(data + 4);
            pi.depth = data[8];
            pi.ctype = data[9];
            pi.interlace = data[12];
            switch (pi.ctype) {
            case 0: ok = pi.depth == 1 || pi.depth == 2 || pi.depth == 4 || pi.depth == 8 || pi.depth == 16; break;
            case 3: ok = pi.depth == 1 || pi.depth == 2 || pi.depth == 4 || pi.depth == 8; break;
            case 2: case 4: case 6: ok = pi.depth == 8 || pi.depth == 16; break;
            default: ok = 0;
            }
            if (!ok) { st = nst__err(NST_ERR_FORMAT, "png: invalid colour type %d with bit depth %d", pi.ctype, pi.depth); goto fail; }
            if (data[10] != 0 || data[11] != 0) { st = nst__err(NST_ERR_FORMAT, "png: unknown compression or filter method"); goto fail; }
            if (pi.interlace > 1) { st = nst__err(NST_ERR_FORMAT, "png: unknown interlace method %d", pi.interlace); goto fail; }
            if (pi.w == 0 || pi.h == 0 || pi.w > 0x7FFFFFFFu || pi.h > 0x7FFFFFFFu) {
                st = nst__err(NST_ERR_FORMAT, "png: invalid size %lux%lu", (unsigned long)pi.w, (unsigned long)pi.h);
                goto fail;
            }
            pi.channels = chans[pi.ctype];
            if ((st = nst__image_check_size((int)pi.w, (int)pi.h, pi.ctype == 3 ? 3 : pi.channels)) != NST_OK) goto fail;
        } else if (!memcmp(name, "PLTE", 4)) {
            if (seen_idat) { st = nst__err(NST_ERR_FORMAT, "png: PLTE after IDAT"); goto fail; }
            if (len % 3 || len == 0 || len > 768) { st = nst__err(NST_ERR_FORMAT, "png: PLTE has invalid length %lu", (unsigned long)len); goto fail; }
            pi.npal = (int)(len / 3);
            for (i = 0; i < pi.npal; i++) {
                pi.pal[i][0] = data[3 * i] / 255.0f;
                pi.pal[i][1] = data[3 * i + 1] / 255.0f;
                pi.pal[i][2] = data[3 * i + 2] / 255.0f;
            }
        } else if (!memcmp(name, "tRNS", 4)) {
            if (seen_idat) { st = nst__err(NST_ERR_FORMAT, "png: tRNS after IDAT"); goto fail; }
            if (pi.ctype == 3) {
                if (!pi.npal) { st = nst__err(NST_ERR_FORMAT, "png: tRNS before PLTE"); goto fail; }
                if (len > (uint32_t)pi.npal) { st = nst__err(NST_ERR_FORMAT, "png: tRNS has more entries than the palette"); goto fail; }
                for (i = 0; i < (int)len; i++) pi.pal[i][3] = data[i] / 255.0f;
                pi.has_trns = 2;   /* marks the palette alphas; applied below */
                pi.trns[0] = len;
            } else if (pi.ctype == 0 || pi.ctype == 2) {
                uint32_t want = pi.ctype == 0 ? 2 : 6;
                if (len != want) { st = nst__err(NST_ERR_FORMAT, "png: tRNS has length %lu, not %lu", (unsigned long)len, (unsigned long)want); goto fail; }
                for (i = 0; i < (int)len / 2; i++) pi.trns[i] = ((unsigned)data[2 * i] << 8) | data[2 * i + 1];
                pi.has_trns = 1;
            }   /* on types with alpha tRNS is not allowed; ignore it like libpng */
        } else if (!memcmp(name, "IDAT", 4)) {
            if (pi.ctype == 3 && !pi.npal) { st = nst__err(NST_ERR_FORMAT, "png: palette image without PLTE"); goto fail; }
            if (!seen_idat) nst__buf_reserve(&idat, n - pos);   /* the rest of the file bounds all IDATs */
            seen_idat = 1;
            nst__buf_put(&idat, data, len);
            if (idat.failed) { st = nst__err(NST_ERR_NOMEM, "png: out of memory"); goto fail; }
        } else if (!memcmp(name, "IEND", 4)) {
            seen_iend = 1;
        } else if (!(type[0] & 0x20)) {
            st = nst__err(NST_ERR_UNSUPPORTED, "png: unknown critical chunk %s", name);
            goto fail;
        }
        pos += 12 + (size_t)len;
    }
    if (!seen_ihdr) { st = nst__err(NST_ERR_FORMAT, "png: no IHDR chunk"); goto fail; }
    if (!seen_idat) { st = nst__err(NST_ERR_FORMAT, "png: no image data (IDAT)"); goto fail; }
    /* output channels and palette alpha */
    if (pi.ctype == 3) {
        int has_alpha = 0;
        for (i = 0; i < 256; i++) if (i >= pi.npal || pi.has_trns != 2 || i >= (int)pi.trns[0]) pi.pal[i][3] = 1.0f;
        for (i = 0; i < pi.npal; i++) if (pi.pal[i][3] != 1.0f) has_alpha = 1;
        pi.out_ch = has_alpha ? 4 : 3;
        pi.has_trns = 0;
    } else {
        pi.out_ch = pi.channels + (pi.has_trns ? 1 : 0);
    }
    /* expected decompressed size: per pass, rows of (filter byte + packed samples) */
    for (pass = 0; pass < (pi.interlace ? 7 : 1); pass++) {
        const unsigned char *a = nst__adam7[pass];
        size_t pw = pi.interlace ? (pi.w + a[2] - 1 - a[0]) / a[2] : pi.w;
        size_t ph = pi.interlace ? (pi.h + a[3] - 1 - a[1]) / a[3] : pi.h;
        size_t bits, rb, total;
        if (pi.interlace && (pi.w <= a[0] || pi.h <= a[1])) continue;
        if (!nst__mul_ok(pw, (size_t)pi.channels * (size_t)pi.depth, &bits) || !nst__mul_ok((bits + 7) / 8 + 1, ph, &total) ||
            raw_size + total < raw_size) {
            st = nst__err(NST_ERR_LIMIT, "png: image data size overflows");
            goto fail;
        }
        rb = total;
        raw_size += rb;
    }
    if ((st = nst__image_check_size((int)pi.w, (int)pi.h, pi.out_ch)) != NST_OK) goto fail;
    if (raw_size > nst__limit_bytes()) { st = nst__err(NST_ERR_LIMIT, "png: image data of %lu bytes exceeds the limit", (unsigned long)raw_size); goto fail; }
    /* deflate expands at most ~1032:1, so a small file cannot hold a huge image: refuse it before
     * allocating anything in proportion to the header's claim */
    if (raw_size / 1032 > idat.len + 16) {
        st = nst__err(NST_ERR_FORMAT, "png: image data is truncated (%lu compressed bytes cannot hold %lu bytes)",
                      (unsigned long)idat.len, (unsigned long)raw_size);
        goto fail;
    }
    raw = (unsigned char *)nst__malloc(raw_size);
    if (!raw) { st = nst__err(NST_ERR_NOMEM, "png: out of memory for %lu bytes of image data", (unsigned long)raw_size); goto fail; }
    st = nst__inflate_ex(idat.data, idat.len, 1, checks, raw, raw_size, raw_size, &dummy, &got);
    if (st == NST_ERR_LIMIT) { st = nst__err(NST_ERR_FORMAT, "png: more image data than the IHDR size allows"); goto fail; }
    if (st != NST_OK) { st = nst__err_prefix(st, "png"); goto fail; }
    if (got != raw_size) {
        st = nst__err(NST_ERR_FORMAT, "png: image data is truncated (%lu of %lu bytes)", (unsigned long)got, (unsigned long)raw_size);
        goto fail;
    }
    nst__buf_free(&idat);
    if ((st = nst__image_alloc_raw(img, (int)pi.w, (int)pi.h, pi.out_ch)) != NST_OK) goto fail;
    for (i = 0; i < 256; i++) lut8[i] = (float)i / 255.0f;
    {
        unsigned char *p = raw;
        for (pass = 0; pass < (pi.interlace ? 7 : 1); pass++) {
            const unsigned char *a = nst__adam7[pass];
            uint32_t pw = pi.interlace ? (pi.w + a[2] - 1 - a[0]) / a[2] : pi.w;
            uint32_t ph = pi.interlace ? (pi.h + a[3] - 1 - a[1]) / a[3] : pi.h;
            size_t rb = ((size_t)pw * pi.channels * pi.depth + 7) / 8, step = (size_t)pi.out_ch * (pi.interlace ? a[2] : 1);
            int bpp = (pi.channels * pi.depth + 7) / 8;
            const unsigned char *prev = NULL;
            uint32_t y;
            if (pi.interlace && (pi.w <= a[0] || pi.h <= a[1])) continue;
            for (y = 0; y < ph; y++, p += rb + 1) {
                size_t oy = pi.interlace ? (size_t)a[1] + (size_t)y * a[3] : y;
                size_t ox = pi.interlace ? a[0] : 0;
                if (!nst__png_unfilter(p + 1, prev, rb, bpp, p[0])) {
                    nst_image_free(img);
                    st = nst__err(NST_ERR_FORMAT, "png: invalid filter type %d in row %lu", p[0], (unsigned long)oy);
                    goto fail;
                }
                nst__png_row(&pi, p + 1, pw, img->pixels + (oy * pi.w + ox) * (size_t)pi.out_ch, step, lut8);
                prev = p + 1;
            }
        }
    }
    nst__free(raw);
    return NST_OK;
fail:
    nst__buf_free(&idat);
    nst__free(raw);
    return st;
}

/* Encoder: 8- or 16-bit gray, gray+alpha, RGB, RGBA; per row the filter with the smallest sum of absolute
 * (signed) residuals, the usual heuristic (libpng's, PNG spec 12.8); one zlib stream split into IDATs. */
static void nst__png_chunk(nst__buf *b, const char *type, const unsigned char *data, size_t len) {
    unsigned char hdr[8], crc[4];
    uint32_t c;
    hdr[0] = (unsigned char)(len >> 24); hdr[1] = (unsigned char)(len >> 16);
    hdr[2] = (unsigned char)(len >> 8); hdr[3] = (unsigned char)len;
    memcpy(hdr + 4, type, 4);
    nst__buf_put(b, hdr, 8);
    nst__buf_put(b, data, len);
    c = nst__crc32(nst__crc32(0, type, 4), data, len);
    crc[0] = (unsigned char)(c >> 24); crc[1] = (unsigned char)(c >> 16); crc[2] = (unsigned char)(c >> 8); crc[3] = (unsigned char)c;
    nst__buf_put(b, crc, 4);
}
static void nst__quantize_row(const float *src, size_t n, int bits16, unsigned char *dst) {
    size_t i;
    if (bits16) {
        for (i = 0; i < n; i++) {
            unsigned v = (unsigned)(nst__clamp01(src[i]) * 65535.0f + 0.5f);
            dst[2 * i] = (unsigned char)(v >> 8);
            dst[2 * i + 1] = (unsigned char)v;
        }
    } else {
        for (i = 0; i < n; i++) dst[i] = (unsigned char)(nst__clamp01(src[i]) * 255.0f + 0.5f);
    }
}
static nst_status nst__png_encode(const nst_image *img, int bits16, int level, nst__buf *out) {
    static const unsigned char ctypes[5] = {0, 0, 4, 2, 6};
    size_t rb, y, h = (size_t)img->height, total;
    int bpp;
    unsigned char *raw, ihdr[13];
    nst__buf z;
    nst_status st;
    long yy;
    bpp = img->channels * (bits16 ? 2 : 1);
    rb = (size_t)img->width * (size_t)bpp;
    if (!nst__mul_ok(rb + 1, h, &total)) return nst__err(NST_ERR_LIMIT, "png: image too large to encode");
    raw = (unsigned char *)nst__malloc(total + 2 * rb);
    if (!raw) return nst__err(NST_ERR_NOMEM, "png: out of memory");
    /* quantise all rows in place (row y's samples at raw + y*(rb+1) + 1), then filter from the bottom up
     * so each row's unfiltered predecessor is still intact while it is filtered */
    for (y = 0; y < h; y++)
        nst__quantize_row(img->pixels + y * (size_t)img->width * img->channels, (size_t)img->width * img->channels,
                          bits16, raw + y * (rb + 1) + 1);
    for (yy = (long)h - 1; yy >= 0; yy--) {
        unsigned char *row = raw + (size_t)yy * (rb + 1) + 1, *trial = raw + total, *best = raw + total + rb;
        const unsigned char *prev = yy ? row - (rb + 1) : NULL;
        size_t i, b = (size_t)bpp, best_score = (size_t)-1;
        int f, best_f = 0;
        for (f = 0; f < 5; f++) {
            size_t score = 0;
            for (i = 0; i < rb; i++) {
                int left = i >= b ? row[i - b] : 0, up = prev ? prev[i] : 0, ul = (prev && i >= b) ? prev[i - b] : 0, pred;
                signed char r;
                pred = f == 0 ? 0 : f == 1 ? left : f == 2 ? up : f == 3 ? (left + up) >> 1 : nst__paeth(left, up, ul);
                trial[i] = (unsigned char)(row[i] - pred);
                r = (signed char)trial[i];
                score += (size_t)(r < 0 ? -r : r);
            }
            if (score < best_score) {
                best_score = score;
                best_f = f;
                memcpy(best, trial, rb);
            }
        }
        memcpy(row, best, rb);
        row[-1] = (unsigned char)best_f;
    }
    memset(&z, 0, sizeof z);
    st = nst__deflate(raw, total, 1, level, &z);
    nst__free(raw);
    if (st != NST_OK) { nst__buf_free(&z); return st; }
    ihdr[0] = (unsigned char)(img->width >> 24); ihdr[1] = (unsigned char)(img->width >> 16);
    ihdr[2] = (unsigned char)(img->width >> 8); ihdr[3] = (unsigned char)img->width;
    ihdr[4] = (unsigned char)(img->height >> 24); ihdr[5] = (unsigned char)(img->height >> 16);
    ihdr[6] = (unsigned char)(img->height >> 8); ihdr[7] = (unsigned char)img->height;
    ihdr[8] = (unsigned char)(bits16 ? 16 : 8);
    ihdr[9] = ctypes[img->channels];
    ihdr[10] = ihdr[11] = ihdr[12] = 0;
    nst__buf_put(out, nst__png_sig, 8);
    nst__png_chunk(out, "IHDR", ihdr, 13);
    {
        size_t off = 0;
        do {
            size_t len = z.len - off > ((size_t)1 << 20) ? ((size_t)1 << 20) : z.len - off;
            nst__png_chunk(out, "IDAT", z.data + off, len);
            off += len;
        } while (off < z.len);
    }
    nst__png_chunk(out, "IEND", NULL, 0);
    nst__buf_free(&z);
    if (out->failed) return nst__err(NST_ERR_NOMEM, "png: out of memory for the output");
    return NST_OK;
}

/* =====================================================================================================
 * netpbm: PGM/PPM (P2 P3 P5 P6) and PAM (P7), maxval 1..65535
 * ===================================================================================================*/
typedef struct nst__pnm_rd {
    const unsigned char *p, *end;
} nst__pnm_rd;
static void nst__pnm_skip(nst__pnm_rd *r) {   /* whitespace and # comments */
    while (r->p < r->end) {
        if (*r->p == '#') {
            while (r->p < r->end && *r->p != '\n' && *r->p != '\r') r->p++;
        } else if (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r' || *r->p == '\v' || *r->p == '\f') {
            r->p++;
        } else {
            break;
        }
    }
}
/* A decimal number up to 2^31-1 after optional whitespace; 0 when there is none or it is too big. */
static int nst__pnm_uint(nst__pnm_rd *r, unsigned long *v) {
    unsigned long x = 0;
    int digits = 0;
    nst__pnm_skip(r);
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
        x = x * 10 + (unsigned long)(*r->p++ - '0');
        if (x > 0x7FFFFFFFul) return 0;
        digits++;
    }
    *v = x;
    return digits > 0;
}

static nst_status nst__pnm_decode(const unsigned char *d, size_t n, nst_image *img) {
    nst__pnm_rd r;
    unsigned long w = 0, h = 0, maxval = 0, depth = 0, v;
    int kind, ascii, bytes, ch;
    size_t count, i;
    float scale;
    nst_status st;
    const char *fmt;
    r.p = d + 2;
    r.end = d + n;
    kind = n >= 2 && d[0] == 'P' ? d[1] - '0' : 0;
    if (kind < 2 || kind > 7 || kind == 4) return nst__err(NST_ERR_FORMAT, "pnm: not a PGM/PPM/PAM file");
    fmt = kind == 2 || kind == 5 ? "pgm" : kind == 7 ? "pam" : "ppm";
    if (kind == 7) {
        int have_end = 0;
        while (!have_end) {
            const unsigned char *tok;
            size_t tl;
            nst__pnm_skip(&r);
            tok = r.p;
            while (r.p < r.end && *r.p > ' ') r.p++;
            tl = (size_t)(r.p - tok);
            if (tl == 0) return nst__err(NST_ERR_FORMAT, "pam: truncated header (no ENDHDR)");
            if (tl == 6 && !memcmp(tok, "ENDHDR", 6)) {
                while (r.p < r.end && *r.p != '\n') r.p++;
                if (r.p == r.end) return nst__err(NST_ERR_FORMAT, "pam: truncated header after ENDHDR");
                r.p++;
                have_end = 1;
            } else if (tl == 8 && !memcmp(tok, "TUPLTYPE", 8)) {
                while (r.p < r.end && *r.p != '\n') r.p++;
            } else {
                unsigned long *dst = tl == 5 && !memcmp(tok, "WIDTH", 5) ? &w : tl == 6 && !memcmp(tok, "HEIGHT", 6) ? &h
                                   : tl == 5 && !memcmp(tok, "DEPTH", 5) ? &depth : tl == 6 && !memcmp(tok, "MAXVAL", 6) ? &maxval : NULL;
                if (!dst) return nst__err(NST_ERR_FORMAT, "pam: unknown header field '%.*s'", (int)(tl > 20 ? 20 : tl), (const char *)tok);
                if (!nst__pnm_uint(&r, dst)) return nst__err(NST_ERR_FORMAT, "pam: bad number after '%.*s'", (int)tl, (const char *)tok);
            }
        }
        if (depth < 1 || depth > 4) return nst__err(NST_ERR_UNSUPPORTED, "pam: depth %lu (only 1..4 channels)", depth);
        ch = (int)depth;
        ascii = 0;
    } else {
        if (!nst__pnm_uint(&r, &w) || !nst__pnm_uint(&r, &h) || !nst__pnm_uint(&r, &maxval))
            return nst__err(NST_ERR_FORMAT, "%s: bad or truncated header", fmt);
        ch = kind == 2 || kind == 5 ? 1 : 3;
        ascii = kind <= 3;
        if (!ascii) {   /* exactly one whitespace byte separates the header from binary samples */
            if (r.p >= r.end || !(*r.p == ' ' || *r.p == '\t' || *r.p == '\n' || *r.p == '\r'))
                return nst__err(NST_ERR_FORMAT, "%s: no whitespace after the header", fmt);
            r.p++;
        }
    }
    if (maxval < 1 || maxval > 65535) return nst__err(NST_ERR_FORMAT, "%s: maxval %lu is outside 1..65535", fmt, maxval);
    if (w < 1 || h < 1 || w > 0x7FFFFFFFul || h > 0x7FFFFFFFul) return nst__err(NST_ERR_FORMAT, "%s: invalid size %lux%lu", fmt, w, h);
    if ((st = nst__image_check_size((int)w, (int)h, ch)) != NST_OK) return st;
    bytes = maxval > 255 ? 2 : 1;
    count = (size_t)w * (size_t)h * (size_t)ch;
    if (ascii && (size_t)(r.end - r.p) / 2 + 1 < count)   /* each sample takes a digit and a separator */
        return nst__err(NST_ERR_FORMAT, "%s: truncated pixel data (%lu bytes cannot hold %lu samples)", fmt,
                        (unsigned long)(r.end - r.p), (unsigned long)count);
    if (!ascii && (size_t)(r.end - r.p) / (size_t)bytes < count)
        return nst__err(NST_ERR_FORMAT, "%s: truncated pixel data (%lu of %lu bytes)", fmt, (unsigned long)(r.end - r.p),
                        (unsigned long)(count * (size_t)bytes));
    if ((st = nst__image_alloc_raw(img, (int)w, (int)h, ch)) != NST_OK) return st;
    scale = 1.0f / (float)maxval;
    for (i = 0; i < count; i++) {
        if (ascii) {
            if (!nst__pnm_uint(&r, &v)) {
                nst_image_free(img);
                return nst__err(NST_ERR_FORMAT, "%s: truncated or bad sample %lu of %lu", fmt, (unsigned long)i, (unsigned long)count);
            }
        } else if (bytes == 1) {
            v = *r.p++;
        } else {
            v = ((unsigned long)r.p[0] << 8) | r.p[1];
            r.p += 2;
        }
        if (v > maxval) {
            nst_image_free(img);
            return nst__err(NST_ERR_FORMAT, "%s: sample %lu is above maxval %lu", fmt, v, maxval);
        }
        img->pixels[i] = maxval == 255 ? (float)v / 255.0f : (float)v * scale;
    }
    return NST_OK;
}

/* Writes P5/P6/P7 (or P2/P3): .ppm is RGB with alpha composited over white, .pgm gray (Rec.601 luma). */
static nst_status nst__pnm_encode(const nst_image *img, nst_image_format f, int bits16, int ascii, nst__buf *out) {
    nst_image conv;
    const nst_image *src = img;
    nst_status st;
    char hdr[160];
    size_t i, count;
    int maxval = bits16 ? 65535 : 255, ch;
    conv.pixels = NULL;
    if (f == NST_IMAGE_PPM && img->channels != 3) {
        if ((st = nst_image_to_rgb(img, &conv)) != NST_OK) return st;
        src = &conv;
    } else if (f == NST_IMAGE_PGM && img->channels != 1) {
        nst_image rgb;
        size_t k, np = (size_t)img->width * (size_t)img->height;
        if (img->channels == 2) {   /* gray + alpha: composite over white */
            if ((st = nst__image_alloc_raw(&conv, img->width, img->height, 1)) != NST_OK) return st;
            for (k = 0; k < np; k++) {
                float a = nst__clamp01(img->pixels[2 * k + 1]);
                conv.pixels[k] = img->pixels[2 * k] * a + 1.0f - a;
            }
        } else {
            const nst_image *r3 = img;
            rgb.pixels = NULL;
            if (img->channels == 4) {
                if ((st = nst_image_to_rgb(img, &rgb)) != NST_OK) return st;
                r3 = &rgb;
            }
            if ((st = nst__image_alloc_raw(&conv, img->width, img->height, 1)) != NST_OK) { nst_image_free(&rgb); return st; }
            for (k = 0; k < np; k++)
                conv.pixels[k] = 0.299f * r3->pixels[3 * k] + 0.587f * r3->pixels[3 * k + 1] + 0.114f * r3->pixels[3 * k + 2];
            nst_image_free(&rgb);
        }
        src = &conv;
    }
    ch = src->channels;
    if (f == NST_IMAGE_PAM) {
        static const char *tt[5] = {"", "GRAYSCALE", "GRAYSCALE_ALPHA", "RGB", "RGB_ALPHA"};
        snprintf(hdr, sizeof hdr, "P7\nWIDTH %d\nHEIGHT %d\nDEPTH %d\nMAXVAL %d\nTUPLTYPE %s\nENDHDR\n", src->width,
                 src->height, ch, maxval, tt[ch]);
        ascii = 0;
    } else {
        snprintf(hdr, sizeof hdr, "P%d\n%d %d\n%d\n", (ch == 1 ? 2 : 3) + (ascii ? 0 : 3), src->width, src->height, maxval);
    }
    nst__buf_put(out, hdr, strlen(hdr));
    count = (size_t)src->width * (size_t)src->height * (size_t)ch;
    if (ascii) {
        int col = 0;
        for (i = 0; i < count; i++) {
            char num[8];
            int len;
            unsigned v = (unsigned)(nst__clamp01(src->pixels[i]) * (float)maxval + 0.5f);
            len = snprintf(num, sizeof num, "%u", v);
            if (col + len + 1 > 70) { nst__buf_byte(out, '\n'); col = 0; }
            else if (col) { nst__buf_byte(out, ' '); col++; }
            nst__buf_put(out, num, (size_t)len);
            col += len;
        }
        nst__buf_byte(out, '\n');
    } else if (nst__buf_reserve(out, count * (bits16 ? 2 : 1))) {
        nst__quantize_row(src->pixels, count, bits16, out->data + out->len);
        out->len += count * (bits16 ? 2 : 1);
    }
    nst_image_free(&conv);
    if (out->failed) return nst__err(NST_ERR_NOMEM, "pnm: out of memory for the output");
    return NST_OK;
}
#endif /* NST_NO_IMAGE_IO */

/* =====================================================================================================
 * load / save dispatch
 * ===================================================================================================*/
NSTDEF nst_image_format nst_image_detect_format(const void *bytes, size_t n) {
    const unsigned char *d = (const unsigned char *)bytes;
    if (!d) return NST_IMAGE_UNKNOWN;
    if (n >= 8 && !memcmp(d, "\211PNG\r\n\032\n", 8)) return NST_IMAGE_PNG;
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return NST_IMAGE_JPEG;
    if (n >= 2 && d[0] == 'P') {
        if (d[1] == '2' || d[1] == '5') return NST_IMAGE_PGM;
        if (d[1] == '3' || d[1] == '6') return NST_IMAGE_PPM;
        if (d[1] == '7') return NST_IMAGE_PAM;
    }
    return NST_IMAGE_UNKNOWN;
}
static int nst__ext_is(const char *ext, const char *want) {
    while (*ext && *want) {
        int a = *ext++, b = *want++;
        if (a >= 'A' && a <= 'Z') a += 'a' - 'A';
        if (a != b) return 0;
    }
    return !*ext && !*want;
}
NSTDEF nst_image_format nst_image_format_from_path(const char *path) {
    const char *dot = path ? strrchr(path, '.') : NULL;
    if (!dot || strchr(dot, '/') || strchr(dot, '\\')) return NST_IMAGE_UNKNOWN;
    dot++;
    if (nst__ext_is(dot, "png")) return NST_IMAGE_PNG;
    if (nst__ext_is(dot, "jpg") || nst__ext_is(dot, "jpeg") || nst__ext_is(dot, "jpe")) return NST_IMAGE_JPEG;
    if (nst__ext_is(dot, "ppm") || nst__ext_is(dot, "pnm")) return NST_IMAGE_PPM;
    if (nst__ext_is(dot, "pgm")) return NST_IMAGE_PGM;
    if (nst__ext_is(dot, "pam")) return NST_IMAGE_PAM;
    return NST_IMAGE_UNKNOWN;
}

NSTDEF nst_status nst_image_load_memory_ex(const void *bytes, size_t n, const nst_image_load_options *o,
                                           nst_image *out) {
#ifndef NST_NO_IMAGE_IO
    const unsigned char *d = (const unsigned char *)bytes;
    nst_status st;
    int checks = !(o && o->ignore_checksums);
    if (!out) return nst__err(NST_ERR_ARGUMENT, "image: output is NULL");
    memset(out, 0, sizeof *out);
    if (!d && n) return nst__err(NST_ERR_ARGUMENT, "image: bytes is NULL");
    switch (nst_image_detect_format(d, n)) {
    case NST_IMAGE_PNG: st = nst__png_decode(d, n, checks, out); break;
    case NST_IMAGE_JPEG: st = nst__jpeg_decode(d, n, out); break;
    case NST_IMAGE_PPM: case NST_IMAGE_PGM: case NST_IMAGE_PAM: st = nst__pnm_decode(d, n, out); break;
    default:
        if (n >= 2 && d[0] == 'P' && (d[1] == '1' || d[1] == '4'))
            return nst__err(NST_ERR_UNSUPPORTED, "image: PBM bitmaps (P1/P4) are not supported");
        if (n == 0) return nst__err(NST_ERR_FORMAT, "image: empty input");
        return nst__err(NST_ERR_FORMAT, "image: unknown format (not PNG, JPEG or PPM/PGM/PAM; starts %02x %02x %02x %02x)",
                        d[0], n > 1 ? d[1] : 0, n > 2 ? d[2] : 0, n > 3 ? d[3] : 0);
    }
    if (st != NST_OK) nst_image_free(out);
    return st;
#else
    (void)bytes; (void)n; (void)o;
    if (out) memset(out, 0, sizeof *out);
    return nst__err(NST_ERR_UNSUPPORTED, "image: built with NST_NO_IMAGE_IO");
#endif
}
NSTDEF nst_status nst_image_load_memory(const void *bytes, size_t n, nst_image *out) {
    return nst_image_load_memory_ex(bytes, n, NULL, out);
}

#ifndef NST_NO_IMAGE_IO
/* Encodes img as format f (not AUTO) into buf. */
static nst_status nst__image_encode_buf(const nst_image *img, nst_image_format f, const nst_image_save_options *o,
                                        nst__buf *buf) {
    nst_status st;
    int bits16 = o && o->bits == 16;
    if ((st = nst__image_valid(img, "image encode")) != NST_OK) return st;
    if (o && o->bits && o->bits != 8 && o->bits != 16) return nst__err(NST_ERR_ARGUMENT, "image encode: bits must be 8 or 16, not %d", o->bits);
    switch (f) {
    case NST_IMAGE_PNG: {
        int level = !o || o->compression == 0 ? 6 : o->compression < 0 ? 0 : o->compression > 9 ? 9 : o->compression;
        return nst__png_encode(img, bits16, level, buf);
    }
    case NST_IMAGE_JPEG: {
        int q = !o || o->quality == 0 ? 90 : o->quality;
        int sub = !o || o->subsampling == 0 ? 420 : o->subsampling;
        nst_image flat;
        if (q < 1 || q > 100) return nst__err(NST_ERR_ARGUMENT, "jpeg: quality %d is outside 1..100", q);
        if (sub != 420 && sub != 444) return nst__err(NST_ERR_ARGUMENT, "jpeg: subsampling must be 420 or 444, not %d", sub);
        if (img->channels == 1 || img->channels == 3) return nst__jpeg_encode(img, q, sub == 420, buf);
        /* JPEG has no alpha: composite over white first */
        if (img->channels == 4) {
            if ((st = nst_image_to_rgb(img, &flat)) != NST_OK) return st;
        } else {
            size_t k, np = (size_t)img->width * (size_t)img->height;
            if ((st = nst__image_alloc_raw(&flat, img->width, img->height, 1)) != NST_OK) return st;
            for (k = 0; k < np; k++) {
                float a = nst__clamp01(img->pixels[2 * k + 1]);
                flat.pixels[k] = img->pixels[2 * k] * a + 1.0f - a;
            }
        }
        st = nst__jpeg_encode(&flat, q, sub == 420, buf);
        nst_image_free(&flat);
        return st;
    }
    case NST_IMAGE_PPM: case NST_IMAGE_PGM: case NST_IMAGE_PAM:
        return nst__pnm_encode(img, f, bits16, o && o->pnm_ascii, buf);
    default:
        return nst__err(NST_ERR_ARGUMENT, "image encode: unknown format %d", (int)f);
    }
}
#endif

NSTDEF nst_status nst_image_encode(const nst_image *img, const nst_image_save_options *o, unsigned char **bytes,
                                   size_t *n) {
#ifndef NST_NO_IMAGE_IO
    nst__buf b;
    nst_status st;
    nst_image_format f = o && o->format != NST_IMAGE_AUTO ? o->format : NST_IMAGE_PNG;
    if (!bytes || !n) return nst__err(NST_ERR_ARGUMENT, "image encode: output pointers are NULL");
    *bytes = NULL;
    *n = 0;
    memset(&b, 0, sizeof b);
    if ((st = nst__image_encode_buf(img, f, o, &b)) != NST_OK) { nst__buf_free(&b); return st; }
    *bytes = b.data;
    *n = b.len;
    return NST_OK;
#else
    (void)img; (void)o;
    if (bytes) *bytes = NULL;
    if (n) *n = 0;
    return nst__err(NST_ERR_UNSUPPORTED, "image: built with NST_NO_IMAGE_IO");
#endif
}
NSTDEF void nst_image_free_encoded(unsigned char *bytes) { nst__free(bytes); }

#if !defined(NST_NO_STDIO) && !defined(NST_NO_IMAGE_IO)
NSTDEF nst_status nst_image_load_ex(const char *path, const nst_image_load_options *o, nst_image *out) {
    unsigned char *d;
    size_t n;
    nst_status st;
    if (!out) return nst__err(NST_ERR_ARGUMENT, "image load: output is NULL");
    memset(out, 0, sizeof *out);
    if (!path) return nst__err(NST_ERR_ARGUMENT, "image load: path is NULL");
    if ((st = nst__read_file(path, nst__limit_bytes(), &d, &n)) != NST_OK) return st;
    st = nst_image_load_memory_ex(d, n, o, out);
    nst__free(d);
    return st == NST_OK ? st : nst__err_prefix(st, path);
}
NSTDEF nst_status nst_image_save_ex(const char *path, const nst_image *img, const nst_image_save_options *o) {
    nst__buf b;
    nst_status st;
    nst_image_format f = o && o->format != NST_IMAGE_AUTO ? o->format : nst_image_format_from_path(path);
    if (!path) return nst__err(NST_ERR_ARGUMENT, "image save: path is NULL");
    if (f == NST_IMAGE_UNKNOWN)
        return nst__err(NST_ERR_ARGUMENT, "%s: unknown image extension (use .png, .jpg, .jpeg, .ppm, .pgm or .pam)", path);
    memset(&b, 0, sizeof b);
    st = nst__image_encode_buf(img, f, o, &b);
    if (st == NST_OK) st = nst__write_file_atomic(path, b.data, b.len);
    else st = nst__err_prefix(st, path);
    nst__buf_free(&b);
    return st;
}
#else
NSTDEF nst_status nst_image_load_ex(const char *path, const nst_image_load_options *o, nst_image *out) {
    (void)path; (void)o;
    if (out) memset(out, 0, sizeof *out);
    return nst__err(NST_ERR_UNSUPPORTED, "image: built without file or codec support (NST_NO_STDIO/NST_NO_IMAGE_IO)");
}
NSTDEF nst_status nst_image_save_ex(const char *path, const nst_image *img, const nst_image_save_options *o) {
    (void)path; (void)img; (void)o;
    return nst__err(NST_ERR_UNSUPPORTED, "image: built without file or codec support (NST_NO_STDIO/NST_NO_IMAGE_IO)");
}
#endif
NSTDEF nst_status nst_image_load(const char *path, nst_image *out) { return nst_image_load_ex(path, NULL, out); }
NSTDEF nst_status nst_image_save(const char *path, const nst_image *img) { return nst_image_save_ex(path, img, NULL); }
