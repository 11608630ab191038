/* =====================================================================================================
 * >>jpeg  JPEG decoder (baseline + progressive Huffman) and baseline encoder
 *
 * Decoder. Output matches libjpeg-turbo's `djpeg -dct int` (the default) byte for byte on valid files:
 *   - the accurate integer IDCT ("islow": 13-bit constants, 2 extra bits between passes, 64-bit sums),
 *   - libjpeg's "fancy" upsampling (triangle filter) for h2v1, h1v2 and h2v2 chroma, with its exact
 *     rounding biases and edge replication, plain replication for other integral ratios (4:1:1, ...)
 *     and nearest-centre sampling for non-integral ones (which libjpeg refuses),
 *   - libjpeg's fixed-point YCbCr->RGB (16-bit fractions, the same rounding), and for CMYK/YCCK the
 *     conversion djpeg uses for PPM output: R = C*K/255 on the stored (Adobe-inverted) values.
 * A sequential file whose first scan holds every component (nearly all of them) is decoded one MCU row
 * at a time: Huffman -> IDCT into a ring of three MCU rows of 8-bit samples -> upsampling and colour
 * conversion of the row above straight into the float output, at the position EXIF orientation asks
 * for. Progressive and multi-scan files fill a whole-image coefficient store first, then go through the
 * same ring. Memory besides the output is a few MCU rows (or the coefficients: 2 bytes per sample).
 * Corrupt or truncated entropy data behaves like libjpeg: when a scan runs out of bits the current MCU
 * gets zero bits, the rest of the restart interval (or scan) is left as zero coefficients (mid-gray),
 * and decoding resynchronises at the next RST marker.
 * Refused with NST_ERR_UNSUPPORTED: arithmetic coding, lossless, hierarchical, 12/16-bit samples, DNL.
 *
 * Not done: libjpeg's progressive "block smoothing" (it guesses missing low AC coefficients of a file
 * cut short between scans), so such files differ from djpeg where those coefficients are missing.
 *
 * Encoder: baseline, JFIF, Annex K quantisation tables scaled like libjpeg's jpeg_quality_scaling,
 * 4:4:4 or 4:2:0 (gray images as one component; alpha composited over white), float separable DCT,
 * edge replication to whole MCUs, Huffman tables optimised per image (two passes over MCU-row bands,
 * libjpeg's length-limiting algorithm) or Annex K's. Output decodes identically in djpeg.
 * ===================================================================================================*/
#ifndef NST_NO_IMAGE_IO

#define NST__JPEG_FAST 9            /* bits looked up at once in the Huffman fast tables */
#define NST__JPEG_MAX_SCANS 1000    /* a progressive file has ~10; caps the work a hostile file can ask */

/* Zigzag index -> natural (row-major) index; 16 extra entries so a corrupt run cannot index past 63. */
static const unsigned char nst__jpeg_natural[80] = {
    0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,  12, 19, 26, 33, 40, 48,
    41, 34, 27, 20, 13, 6,  7,  14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23,
    30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
    63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63};

typedef struct nst__jhuff {
    uint16_t fast[1 << NST__JPEG_FAST];     /* (code length << 8) | symbol; 0 = code longer than FAST */
    int32_t  fast_ac[1 << NST__JPEG_FAST];  /* AC only: value*256 | run*16 | (code+value bits), 0 = none */
    int32_t  maxcode[18];                   /* largest code of each length, -1 if none */
    int32_t  valoff[17];                    /* index into vals of the first code of each length - mincode */
    unsigned char vals[256];
    int      present, max_sym;
} nst__jhuff;

typedef struct nst__jcomp {
    int id, h, v, tq;
    int bw, bh;              /* blocks per row / column of the MCU-padded coefficient store */
    int dw, dh;              /* downsampled size in samples: ceil(width * h / hmax) */
    int dc_tbl, ac_tbl, dc_pred;
    int latched;             /* quantisation table copied at its first scan (libjpeg does the same) */
    uint16_t qt[64];         /* natural order */
    int16_t *coef;           /* bw x bh blocks of 64 (or one MCU row of them when streaming), natural
                                order, not dequantised */
    unsigned char *plane;    /* IDCT output: a ring of 3 MCU rows (8*v sample rows each), bw*8 wide */
} nst__jcomp;

/* Per-image colour tables (libjpeg's jdcolor.c build_ycc_rgb_table, SCALEBITS 16). */
typedef struct nst__jycc { int cr_r[256], cb_b[256]; int32_t cr_g[256], cb_g[256]; } nst__jycc;

typedef struct nst__jdec {
    const unsigned char *data;
    size_t n, pos;
    uint16_t qt[4][64];
    int qt_present[4];
    nst__jhuff dc[4], ac[4];
    int frame, progressive, w, h, ncomp, hmax, vmax, mcux, mcuy;
    nst__jcomp comp[4];
    int restart_interval, jfif, adobe, adobe_transform, orientation, scans, flags;
    /* entropy bit reader: `bits` is left-aligned; the last `fake` of its `nbits` are zeros we invented
     * after reaching a marker or the end of the data */
    const unsigned char *bp, *bend;
    uint64_t bits;
    int nbits, fake, marker;
    /* current scan */
    int ns, sc[4], ss, se, ah, al, eobrun, next_rst;
    /* output, set up at the first scan. stream: a sequential file whose first scan holds every component
     * is decoded MCU row by MCU row straight into the output (no whole-image coefficient store) */
    int ready, stream, cs, ch;
    nst_image *img;
    ptrdiff_t origin, sx, sy;          /* stored pixel (x, y) goes to pixel origin + x*sx + y*sy */
    unsigned char *rowbuf;
    size_t rbw;
    int *xmap;
    nst__jycc tab;
    float lut[256];
} nst__jdec;

#define NST__JPEG_NOSMOOTH 1   /* decode flag: replicate chroma (djpeg -nosmooth) instead of fancy upsampling */

/* ---- entropy bit reader ----------------------------------------------------------------------------*/
static void nst__jfill(nst__jdec *d) {
    while (d->nbits <= 56) {
        unsigned c;
        if (!d->marker && d->bp < d->bend) {
            c = *d->bp;
            if (c != 0xFF) { d->bp++; goto put; }
            if (d->bp + 1 < d->bend && d->bp[1] == 0x00) { d->bp += 2; goto put; }
            d->marker = 1;   /* a marker (or a lone 0xFF at the end): stop here, feed zeros */
        }
        c = 0;
        d->fake += 8;
    put:
        d->bits |= (uint64_t)c << (56 - d->nbits);
        d->nbits += 8;
    }
}
/* n in 1..16; the caller made sure nbits >= n */
static unsigned nst__jbits(nst__jdec *d, int n) {
    unsigned v = (unsigned)(d->bits >> (64 - n));
    d->bits <<= n;
    d->nbits -= n;
    return v;
}
static int nst__jextend(unsigned v, int s) {   /* JPEG's sign convention for an s-bit magnitude */
    return v < (1u << (s - 1)) ? (int)v - (1 << s) + 1 : (int)v;
}
static int nst__jreceive(nst__jdec *d, int s) {
    if (d->nbits < s) nst__jfill(d);
    return nst__jextend(nst__jbits(d, s), s);
}
static unsigned nst__jbit(nst__jdec *d) {
    if (d->nbits < 1) nst__jfill(d);
    return nst__jbits(d, 1);
}
static int nst__jdecode(nst__jdec *d, const nst__jhuff *t) {
    unsigned peek;
    int e, len;
    if (d->nbits < 16) nst__jfill(d);
    peek = (unsigned)(d->bits >> (64 - NST__JPEG_FAST));
    e = t->fast[peek];
    if (e) {
        len = e >> 8;
        d->bits <<= len;
        d->nbits -= len;
        return e & 255;
    }
    peek = (unsigned)(d->bits >> 48);
    for (len = NST__JPEG_FAST + 1; len <= 16; len++) {
        int32_t code = (int32_t)(peek >> (16 - len));
        if (code <= t->maxcode[len]) {
            d->bits <<= len;
            d->nbits -= len;
            return t->vals[(code + t->valoff[len]) & 255];
        }
    }
    /* no such code: libjpeg warns and decodes symbol 0; we also drop the 16 bits to make progress */
    d->bits <<= 16;
    d->nbits -= 16;
    return 0;
}
static int nst__joverrun(const nst__jdec *d) { return d->nbits < d->fake; }

/* ---- tables -------------------------------------------------------------------------------------*/
static nst_status nst__jhuff_build(nst__jhuff *t, const unsigned char *counts, const unsigned char *vals, int ac) {
    int len, i, k = 0, total = 0;
    int32_t code = 0;
    unsigned char size[256];
    uint16_t codes[256];
    for (i = 0; i < 16; i++) total += counts[i];
    if (total > 256) return nst__err(NST_ERR_FORMAT, "jpeg: Huffman table with %d symbols", total);
    memset(t, 0, sizeof *t);
    memcpy(t->vals, vals, (size_t)total);
    for (len = 1; len <= 16; len++) {
        t->valoff[len] = k - code;
        for (i = 0; i < counts[len - 1]; i++) { size[k] = (unsigned char)len; codes[k] = (uint16_t)code; k++; code++; }
        if (code > (1 << len)) return nst__err(NST_ERR_FORMAT, "jpeg: Huffman table has too many codes of length %d", len);
        t->maxcode[len] = counts[len - 1] ? code - 1 : -1;
        code <<= 1;
    }
    t->maxcode[17] = 0x7fffffff;
    for (i = 0; i < total; i++) {
        if (vals[i] > t->max_sym) t->max_sym = vals[i];
        if (size[i] <= NST__JPEG_FAST) {
            int shift = NST__JPEG_FAST - size[i], j;
            for (j = 0; j < (1 << shift); j++) t->fast[(codes[i] << shift) | j] = (uint16_t)((size[i] << 8) | vals[i]);
        }
    }
    if (ac) {   /* fold short codes and the short magnitudes after them into one lookup */
        for (i = 0; i < (1 << NST__JPEG_FAST); i++) {
            int e = t->fast[i], len = e >> 8, rs = e & 255, s = rs & 15, run = rs >> 4;
            if (e && s && len + s <= NST__JPEG_FAST) {
                unsigned m = ((unsigned)i >> (NST__JPEG_FAST - len - s)) & ((1u << s) - 1);
                int v = nst__jextend(m, s);
                t->fast_ac[i] = v * 256 + run * 16 + (len + s);
            }
        }
    }
    t->present = 1;
    return NST_OK;
}

/* ---- marker segments -----------------------------------------------------------------------------*/
static unsigned nst__jrd16(const unsigned char *p) { return (unsigned)(p[0] << 8 | p[1]); }

/* EXIF APP1: the TIFF header, IFD0 and its 0x0112 (Orientation) entry, every offset bounds-checked. */
static int nst__jpeg_exif_orientation(const unsigned char *p, size_t n) {
    int le, i, count;
    size_t ifd;
    if (n < 6 + 8 || memcmp(p, "Exif\0\0", 6) != 0) return 0;
    p += 6; n -= 6;
    if (p[0] == 'I' && p[1] == 'I') le = 1;
    else if (p[0] == 'M' && p[1] == 'M') le = 0;
    else return 0;
#define NST__X16(q) (le ? (unsigned)((q)[0] | (q)[1] << 8) : (unsigned)((q)[0] << 8 | (q)[1]))
#define NST__X32(q) (le ? nst__rd32le(q) : nst__rd32be(q))
    if (NST__X16(p + 2) != 42) return 0;
    ifd = NST__X32(p + 4);
    if (ifd < 8 || ifd > n - 2) return 0;
    count = (int)NST__X16(p + ifd);
    for (i = 0; i < count; i++) {
        const unsigned char *e = p + ifd + 2 + (size_t)i * 12;
        unsigned tag, type, v;
        if ((size_t)(e - p) + 12 > n) break;
        tag = NST__X16(e);
        type = NST__X16(e + 2);
        if (tag != 0x0112) continue;
        if (type == 3) v = NST__X16(e + 8);          /* SHORT, as the standard says */
        else if (type == 4) v = NST__X32(e + 8);     /* LONG: seen from a few writers */
        else return 0;
        return v >= 1 && v <= 8 ? (int)v : 0;
    }
#undef NST__X16
#undef NST__X32
    return 0;
}

static nst_status nst__jpeg_sof(nst__jdec *d, const unsigned char *p, unsigned len, int marker) {
    int i, j;
    if (d->frame) return nst__err(NST_ERR_FORMAT, "jpeg: more than one frame header");
    if (marker == 0xC3 || marker == 0xC7 || marker == 0xCB || marker == 0xCF)
        return nst__err(NST_ERR_UNSUPPORTED, "jpeg: lossless JPEG (SOF%d) is not supported", marker - 0xC0);
    if (marker == 0xC5 || marker == 0xC6 || marker == 0xCD || marker == 0xCE)
        return nst__err(NST_ERR_UNSUPPORTED, "jpeg: hierarchical JPEG (SOF%d) is not supported", marker - 0xC0);
    if (marker >= 0xC9)
        return nst__err(NST_ERR_UNSUPPORTED, "jpeg: arithmetic coding (SOF%d) is not supported", marker - 0xC0);
    if (len < 6) return nst__err(NST_ERR_FORMAT, "jpeg: frame header too short");
    if (p[0] != 8)
        return nst__err(NST_ERR_UNSUPPORTED, "jpeg: %d-bit samples are not supported (only 8-bit)", p[0]);
    d->h = (int)nst__jrd16(p + 1);
    d->w = (int)nst__jrd16(p + 3);
    d->ncomp = p[5];
    if (d->h == 0) return nst__err(NST_ERR_UNSUPPORTED, "jpeg: height defined by a DNL marker is not supported");
    if (d->w == 0) return nst__err(NST_ERR_FORMAT, "jpeg: zero width");
    if (d->ncomp != 1 && d->ncomp != 3 && d->ncomp != 4)
        return nst__err(d->ncomp == 2 || d->ncomp > 4 ? NST_ERR_UNSUPPORTED : NST_ERR_FORMAT,
                        "jpeg: %d colour components are not supported", d->ncomp);
    if (len < 6 + 3u * (unsigned)d->ncomp) return nst__err(NST_ERR_FORMAT, "jpeg: frame header too short");
    d->hmax = d->vmax = 1;
    for (i = 0; i < d->ncomp; i++) {
        nst__jcomp *c = &d->comp[i];
        c->id = p[6 + 3 * i];
        c->h = p[7 + 3 * i] >> 4;
        c->v = p[7 + 3 * i] & 15;
        c->tq = p[8 + 3 * i];
        if (c->h < 1 || c->h > 4 || c->v < 1 || c->v > 4)
            return nst__err(NST_ERR_FORMAT, "jpeg: bad sampling factors %dx%d", c->h, c->v);
        if (c->tq > 3) return nst__err(NST_ERR_FORMAT, "jpeg: bad quantisation table index %d", c->tq);
        for (j = 0; j < i; j++)
            if (d->comp[j].id == c->id) return nst__err(NST_ERR_FORMAT, "jpeg: duplicate component id %d", c->id);
        d->hmax = NST__MAX(d->hmax, c->h);
        d->vmax = NST__MAX(d->vmax, c->v);
    }
    if (d->ncomp == 1) d->comp[0].h = d->comp[0].v = d->hmax = d->vmax = 1;
    d->progressive = marker == 0xC2;
    d->frame = 1;
    return NST_OK;
}

static void nst__jpeg_release(nst__jdec *d) {
    int i;
    for (i = 0; i < 4; i++) {
        nst__free(d->comp[i].coef);
        nst__free(d->comp[i].plane);
        d->comp[i].coef = NULL;
        d->comp[i].plane = NULL;
    }
    nst__free(d->rowbuf);
    nst__free(d->xmap);
    d->rowbuf = NULL;
    d->xmap = NULL;
}

/* ---- block decoders -------------------------------------------------------------------------------*/
static void nst__jblock_seq(nst__jdec *d, int16_t *blk, const nst__jhuff *dc, const nst__jhuff *ac, int *pred) {
    int t, k, diff = 0;
    t = nst__jdecode(d, dc);
    if (t) diff = nst__jreceive(d, t);
    *pred = (int16_t)(*pred + diff);
    blk[0] = (int16_t)*pred;
    for (k = 1; k < 64;) {
        int32_t c;
        int rs, r, s;
        if (d->nbits < 32) nst__jfill(d);
        c = ac->fast_ac[d->bits >> (64 - NST__JPEG_FAST)];
        if (c) {
            s = c & 15;
            d->bits <<= s;
            d->nbits -= s;
            k += (c >> 4) & 15;
            blk[nst__jpeg_natural[k++]] = (int16_t)(c >> 8);
            continue;
        }
        rs = nst__jdecode(d, ac);
        r = rs >> 4;
        s = rs & 15;
        if (!s) {
            if (r != 15) break;
            k += 16;
            continue;
        }
        k += r;
        /* nbits >= 16 here: the refill above gave >= 32 and the code took <= 16 */
        blk[nst__jpeg_natural[k++]] = (int16_t)nst__jextend(nst__jbits(d, s), s);
    }
}

static void nst__jblock_dc_first(nst__jdec *d, int16_t *blk, const nst__jhuff *dc, int *pred) {
    int t = nst__jdecode(d, dc), diff = 0;
    if (t) diff = nst__jreceive(d, t);
    *pred = (int16_t)(*pred + diff);
    blk[0] = (int16_t)(*pred * (1 << d->al));
}
static void nst__jblock_dc_refine(nst__jdec *d, int16_t *blk) {
    if (nst__jbit(d)) blk[0] = (int16_t)(blk[0] | (1 << d->al));
}
static void nst__jblock_ac_first(nst__jdec *d, int16_t *blk, const nst__jhuff *ac) {
    int k;
    if (d->eobrun > 0) { d->eobrun--; return; }
    for (k = d->ss; k <= d->se; k++) {
        int rs = nst__jdecode(d, ac), r = rs >> 4, s = rs & 15;
        if (s) {
            k += r;
            blk[nst__jpeg_natural[k]] = (int16_t)(nst__jreceive(d, s) * (1 << d->al));
        } else if (r == 15) {
            k += 15;
        } else {
            d->eobrun = 1 << r;
            if (r) {
                if (d->nbits < r) nst__jfill(d);
                d->eobrun += (int)nst__jbits(d, r);
            }
            d->eobrun--;
            break;
        }
    }
}
/* Successive approximation of AC coefficients: newly non-zero coefficients get +-1<<al, the ones
 * already non-zero get a correction bit each as the run passes over them (G.1.2.3). */
static void nst__jblock_ac_refine(nst__jdec *d, int16_t *blk, const nst__jhuff *ac) {
    int p1 = 1 << d->al, m1 = -p1, k = d->ss;
    if (d->eobrun <= 0) {
        for (; k <= d->se; k++) {
            int rs = nst__jdecode(d, ac), r = rs >> 4, s = rs & 15;
            if (s) {
                s = nst__jbit(d) ? p1 : m1;   /* s must be 1; libjpeg treats other sizes as 1 too */
            } else if (r != 15) {
                d->eobrun = 1 << r;
                if (r) {
                    if (d->nbits < r) nst__jfill(d);
                    d->eobrun += (int)nst__jbits(d, r);
                }
                break;
            }
            do {
                int16_t *c = blk + nst__jpeg_natural[k];
                if (*c) {
                    if (nst__jbit(d) && (*c & p1) == 0) *c = (int16_t)(*c >= 0 ? *c + p1 : *c + m1);
                } else {
                    if (--r < 0) break;
                }
                k++;
            } while (k <= d->se);
            if (s) blk[nst__jpeg_natural[k]] = (int16_t)s;
        }
    }
    if (d->eobrun > 0) {
        for (; k <= d->se; k++) {
            int16_t *c = blk + nst__jpeg_natural[k];
            if (*c && nst__jbit(d) && (*c & p1) == 0) *c = (int16_t)(*c >= 0 ? *c + p1 : *c + m1);
        }
        d->eobrun--;
    }
}

/* At a restart boundary: drop the buffered bits, find the next RSTn (skipping any garbage left by a
 * corrupt interval) and reset the predictors. The marker's number tells where we are, as in libjpeg's
 * jpeg_resync_to_restart: the expected one -> decode the interval (1); one of the next three -> our
 * marker was lost, so leave it for a later boundary and give up this interval (2); an older one -> skip
 * it and keep looking. Returns 0 when a non-RST marker or the end comes first. */
static int nst__jrestart(nst__jdec *d) {
    const unsigned char *p = d->bp;
    int i;
    d->bits = 0; d->nbits = 0; d->fake = 0; d->marker = 0; d->eobrun = 0;
    for (i = 0; i < d->ncomp; i++) d->comp[i].dc_pred = 0;
    while (p + 1 < d->bend) {
        if (p[0] == 0xFF) {
            if (p[1] >= 0xD0 && p[1] <= 0xD7) {
                int delta = (p[1] - 0xD0 - d->next_rst) & 7;
                if (delta == 0 || delta > 3) {   /* expected, or an old one we skip */
                    p += 2;
                    if (delta) continue;
                    d->bp = p;
                    d->next_rst = (d->next_rst + 1) & 7;
                    return 1;
                }
                d->bp = p;
                d->next_rst = (d->next_rst + 1) & 7;
                return 2;
            }
            if (p[1] != 0x00 && p[1] != 0xFF) { d->bp = p; return 0; }
            p += p[1] == 0x00 ? 2 : 1;
            continue;
        }
        p++;
    }
    d->bp = d->bend;
    return 0;
}

static void nst__jdecode_mcu_block(nst__jdec *d, nst__jcomp *c, int16_t *blk) {
    if (!d->progressive) nst__jblock_seq(d, blk, &d->dc[c->dc_tbl], &d->ac[c->ac_tbl], &c->dc_pred);
    else if (d->ss == 0) {
        if (d->ah == 0) nst__jblock_dc_first(d, blk, &d->dc[c->dc_tbl], &c->dc_pred);
        else nst__jblock_dc_refine(d, blk);
    } else if (d->ah == 0) nst__jblock_ac_first(d, blk, &d->ac[c->ac_tbl]);
    else nst__jblock_ac_refine(d, blk, &d->ac[c->ac_tbl]);
}

static void nst__jidct_row(nst__jdec *d, int k);
static void nst__jemit(nst__jdec *d, int k);

/* Decodes the entropy-coded data of one scan starting at d->pos; leaves d->pos at the next marker.
 * When streaming, each finished MCU row is IDCT'd into the ring and the row above it is output. */
static void nst__jpeg_scan_data(nst__jdec *d) {
    int mx, my, nmx, nmy, i, todo, stopped = 0, dead = 0;
    nst__jcomp *c0 = &d->comp[d->sc[0]];
    d->bp = d->data + d->pos;
    d->bend = d->data + d->n;
    d->bits = 0; d->nbits = 0; d->fake = 0; d->marker = 0; d->eobrun = 0; d->next_rst = 0;
    for (i = 0; i < d->ncomp; i++) d->comp[i].dc_pred = 0;
    if (d->ns == 1) {   /* non-interleaved: one block per MCU, over the component's own size */
        nmx = (c0->dw + 7) / 8;
        nmy = (c0->dh + 7) / 8;
    } else {
        nmx = d->mcux;
        nmy = d->mcuy;
    }
    todo = d->restart_interval;
    for (my = 0; my < nmy; my++) {
        size_t row0 = d->stream ? 0 : (size_t)my;   /* MCU row within the coefficient buffer */
        if (d->stream)
            for (i = 0; i < d->ncomp; i++)
                memset(d->comp[i].coef, 0, (size_t)d->comp[i].bw * d->comp[i].v * 64 * sizeof(int16_t));
        for (mx = 0; mx < nmx && !dead; mx++) {
            if (d->restart_interval && todo == 0) {
                int r = nst__jrestart(d);
                if (!r) { dead = 1; break; }   /* no more data for this scan: the rest stays zero */
                todo = d->restart_interval;
                stopped = r == 2;
            }
            if (!stopped) {
                if (d->ns == 1) {
                    nst__jdecode_mcu_block(d, c0, c0->coef + (row0 * c0->bw + mx) * 64);
                } else {
                    int s, bx, by;
                    for (s = 0; s < d->ns; s++) {
                        nst__jcomp *c = &d->comp[d->sc[s]];
                        for (by = 0; by < c->v; by++)
                            for (bx = 0; bx < c->h; bx++)
                                nst__jdecode_mcu_block(
                                    d, c, c->coef + ((row0 * c->v + by) * c->bw + (size_t)mx * c->h + bx) * 64);
                    }
                }
                if (nst__joverrun(d)) {   /* ran into a marker or the end: rest of the interval stays zero */
                    stopped = 1;
                    if (!d->restart_interval) dead = 1;
                }
            }
            todo--;
        }
        if (d->stream) {
            nst__jidct_row(d, my);
            if (my) nst__jemit(d, my - 1);
        } else if (dead) break;
    }
    if (d->stream) nst__jemit(d, nmy - 1);
    /* resume marker parsing at the first marker that can follow a scan (skip RSTn and garbage) */
    {
        const unsigned char *p = d->bp;
        while (p + 1 < d->bend && !(p[0] == 0xFF && p[1] != 0x00 && p[1] != 0xFF && !(p[1] >= 0xD0 && p[1] <= 0xD7)))
            p++;
        d->pos = (size_t)(p - d->data);
        if (p + 1 >= d->bend) d->pos = d->n;
    }
}

static nst_status nst__jpeg_sos(nst__jdec *d, const unsigned char *p, unsigned len) {
    int i, j, blocks = 0;
    if (!d->frame) return nst__err(NST_ERR_FORMAT, "jpeg: scan before the frame header");
    if (len < 1) return nst__err(NST_ERR_FORMAT, "jpeg: scan header too short");
    d->ns = p[0];
    if (d->ns < 1 || d->ns > d->ncomp || len < 4 + 2u * (unsigned)d->ns)
        return nst__err(NST_ERR_FORMAT, "jpeg: bad scan header (%d components)", d->ns);
    for (i = 0; i < d->ns; i++) {
        int id = p[1 + 2 * i], t = p[2 + 2 * i];
        for (j = 0; j < d->ncomp; j++) if (d->comp[j].id == id) break;
        if (j == d->ncomp) return nst__err(NST_ERR_FORMAT, "jpeg: scan names unknown component %d", id);
        d->sc[i] = j;
        d->comp[j].dc_tbl = t >> 4;
        d->comp[j].ac_tbl = t & 15;
        if (d->comp[j].dc_tbl > 3 || d->comp[j].ac_tbl > 3)
            return nst__err(NST_ERR_FORMAT, "jpeg: bad Huffman table index in scan header");
        blocks += d->comp[j].h * d->comp[j].v;
    }
    if (d->ns > 1 && blocks > 10) return nst__err(NST_ERR_FORMAT, "jpeg: more than 10 blocks per MCU");
    p += 1 + 2 * d->ns;
    d->ss = p[0]; d->se = p[1]; d->ah = p[2] >> 4; d->al = p[2] & 15;
    if (d->progressive) {
        if (d->ss > 63 || d->se > 63 || d->ss > d->se || (d->ss == 0 && d->se != 0) || (d->ss > 0 && d->ns != 1) ||
            d->ah > 13 || d->al > 13)
            return nst__err(NST_ERR_FORMAT, "jpeg: bad progressive scan parameters Ss=%d Se=%d Ah=%d Al=%d",
                            d->ss, d->se, d->ah, d->al);
    } else {
        d->ss = 0; d->se = 63; d->ah = d->al = 0;   /* libjpeg ignores these in sequential scans too */
    }
    for (i = 0; i < d->ns; i++) {
        nst__jcomp *c = &d->comp[d->sc[i]];
        int need_dc = d->ss == 0 && d->ah == 0, need_ac = d->ss > 0 || !d->progressive;
        if (need_dc && (!d->dc[c->dc_tbl].present || d->dc[c->dc_tbl].max_sym > 15))
            return nst__err(NST_ERR_FORMAT, "jpeg: scan uses a missing or invalid DC Huffman table %d", c->dc_tbl);
        if (need_ac && !d->ac[c->ac_tbl].present)
            return nst__err(NST_ERR_FORMAT, "jpeg: scan uses a missing AC Huffman table %d", c->ac_tbl);
        if (!c->latched) {
            if (!d->qt_present[c->tq]) return nst__err(NST_ERR_FORMAT, "jpeg: missing quantisation table %d", c->tq);
            memcpy(c->qt, d->qt[c->tq], sizeof c->qt);
            c->latched = 1;
        }
    }
    if (++d->scans > NST__JPEG_MAX_SCANS)
        return nst__err(NST_ERR_LIMIT, "jpeg: more than %d scans", NST__JPEG_MAX_SCANS);
    return NST_OK;
}

/* ---- IDCT: libjpeg's jpeg_idct_islow ---------------------------------------------------------------
 * Loeffler-Ligtenberg-Moschytz with 13-bit fixed-point constants; pass 1 (columns) keeps 2 extra bits,
 * pass 2 (rows) descales by 18 and clamps. Sums are 64-bit like libjpeg's JLONG, so any input is defined. */
#define NST__JFIX(x) ((int64_t)(x))
static void nst__jidct_islow(const int16_t *in, const uint16_t *q, unsigned char *out, size_t stride) {
    int32_t ws[64];
    int i;
    for (i = 0; i < 8; i++) {
        const int16_t *c = in + i;
        const uint16_t *qq = q + i;
        int64_t t0, t1, t2, t3, t10, t11, t12, t13, z1, z2, z3, z4, z5;
        if (!(c[8] | c[16] | c[24] | c[32] | c[40] | c[48] | c[56])) {
            int32_t dc = (int32_t)((int64_t)c[0] * qq[0] * 4);
            ws[i] = ws[8 + i] = ws[16 + i] = ws[24 + i] = ws[32 + i] = ws[40 + i] = ws[48 + i] = ws[56 + i] = dc;
            continue;
        }
        z2 = (int64_t)c[16] * qq[16];
        z3 = (int64_t)c[48] * qq[48];
        z1 = (z2 + z3) * 4433;
        t2 = z1 - z3 * 15137;
        t3 = z1 + z2 * 6270;
        z2 = (int64_t)c[0] * qq[0];
        z3 = (int64_t)c[32] * qq[32];
        t0 = (z2 + z3) * 8192;
        t1 = (z2 - z3) * 8192;
        t10 = t0 + t3; t13 = t0 - t3; t11 = t1 + t2; t12 = t1 - t2;
        t0 = (int64_t)c[56] * qq[56];
        t1 = (int64_t)c[40] * qq[40];
        t2 = (int64_t)c[24] * qq[24];
        t3 = (int64_t)c[8] * qq[8];
        z1 = t0 + t3; z2 = t1 + t2; z3 = t0 + t2; z4 = t1 + t3;
        z5 = (z3 + z4) * 9633;
        t0 *= 2446; t1 *= 16819; t2 *= 25172; t3 *= 12299;
        z1 *= -7373; z2 *= -20995; z3 *= -16069; z4 *= -3196;
        z3 += z5; z4 += z5;
        t0 += z1 + z3; t1 += z2 + z4; t2 += z2 + z3; t3 += z1 + z4;
        /* arithmetic right shifts of int64: defined by every compiler we target (gcc, clang, msvc) */
        ws[i] = (int32_t)((t10 + t3 + 1024) >> 11);
        ws[56 + i] = (int32_t)((t10 - t3 + 1024) >> 11);
        ws[8 + i] = (int32_t)((t11 + t2 + 1024) >> 11);
        ws[48 + i] = (int32_t)((t11 - t2 + 1024) >> 11);
        ws[16 + i] = (int32_t)((t12 + t1 + 1024) >> 11);
        ws[40 + i] = (int32_t)((t12 - t1 + 1024) >> 11);
        ws[24 + i] = (int32_t)((t13 + t0 + 1024) >> 11);
        ws[32 + i] = (int32_t)((t13 - t0 + 1024) >> 11);
    }
    for (i = 0; i < 8; i++) {
        const int32_t *w = ws + 8 * i;
        unsigned char *o = out + (size_t)i * stride;
        int64_t t0, t1, t2, t3, t10, t11, t12, t13, z1, z2, z3, z4, z5, r[8];
        int j;
        if (!(w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7])) {
            int64_t v = (((int64_t)w[0] + 16) >> 5) + 128;
            unsigned char b = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
            memset(o, b, 8);
            continue;
        }
        z2 = w[2]; z3 = w[6];
        z1 = (z2 + z3) * 4433;
        t2 = z1 - z3 * 15137;
        t3 = z1 + z2 * 6270;
        t0 = ((int64_t)w[0] + w[4]) * 8192;
        t1 = ((int64_t)w[0] - w[4]) * 8192;
        t10 = t0 + t3; t13 = t0 - t3; t11 = t1 + t2; t12 = t1 - t2;
        t0 = w[7]; t1 = w[5]; t2 = w[3]; t3 = w[1];
        z1 = t0 + t3; z2 = t1 + t2; z3 = t0 + t2; z4 = t1 + t3;
        z5 = (z3 + z4) * 9633;
        t0 *= 2446; t1 *= 16819; t2 *= 25172; t3 *= 12299;
        z1 *= -7373; z2 *= -20995; z3 *= -16069; z4 *= -3196;
        z3 += z5; z4 += z5;
        t0 += z1 + z3; t1 += z2 + z4; t2 += z2 + z3; t3 += z1 + z4;
        r[0] = t10 + t3; r[7] = t10 - t3; r[1] = t11 + t2; r[6] = t11 - t2;
        r[2] = t12 + t1; r[5] = t12 - t1; r[3] = t13 + t0; r[4] = t13 - t0;
        for (j = 0; j < 8; j++) {
            int64_t v = ((r[j] + ((int64_t)1 << 17)) >> 18) + 128;
            o[j] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
}

/* ---- upsampling and colour conversion ---------------------------------------------------------------
 * Returns a pointer to full-resolution row y of component c (width d->w, at least), computed into buf
 * when the component is subsampled. Rounding and edges follow libjpeg's jdsample.c. */
static const unsigned char *nst__jprow(const nst__jcomp *c, int r) {   /* sample row r of the ring */
    int band = 8 * c->v;
    return c->plane + ((size_t)((r / band) % 3) * band + (size_t)(r % band)) * ((size_t)c->bw * 8);
}
static const unsigned char *nst__jrow(const nst__jdec *d, const nst__jcomp *c, int y, unsigned char *buf,
                                      const int *xmap) {
    int fancy = !(d->flags & NST__JPEG_NOSMOOTH), x;
    if (c->h == d->hmax && c->v == d->vmax) return nst__jprow(c, y);
    if (fancy && d->hmax == 2 * c->h && d->vmax == c->v && c->dw > 2) {   /* h2v1 */
        const unsigned char *in = nst__jprow(c, y);
        int n = c->dw;
        buf[0] = in[0];
        buf[1] = (unsigned char)((in[0] * 3 + in[1] + 2) >> 2);
        for (x = 1; x < n - 1; x++) {
            int v = in[x] * 3;
            buf[2 * x] = (unsigned char)((v + in[x - 1] + 1) >> 2);
            buf[2 * x + 1] = (unsigned char)((v + in[x + 1] + 2) >> 2);
        }
        buf[2 * n - 2] = (unsigned char)((in[n - 1] * 3 + in[n - 2] + 1) >> 2);
        buf[2 * n - 1] = in[n - 1];
        return buf;
    }
    if (fancy && d->hmax == c->h && d->vmax == 2 * c->v) {   /* h1v2 */
        int iy = y >> 1, ny = (y & 1) ? NST__MIN(iy + 1, c->dh - 1) : NST__MAX(iy - 1, 0), bias = (y & 1) ? 2 : 1;
        const unsigned char *a = nst__jprow(c, iy), *b = nst__jprow(c, ny);
        for (x = 0; x < c->dw; x++) buf[x] = (unsigned char)((a[x] * 3 + b[x] + bias) >> 2);
        return buf;
    }
    if (fancy && d->hmax == 2 * c->h && d->vmax == 2 * c->v && c->dw > 2) {   /* h2v2 */
        int iy = y >> 1, ny = (y & 1) ? NST__MIN(iy + 1, c->dh - 1) : NST__MAX(iy - 1, 0), n = c->dw;
        const unsigned char *a = nst__jprow(c, iy), *b = nst__jprow(c, ny);
        int last = a[0] * 3 + b[0], cur = last, next;
        buf[0] = (unsigned char)((cur * 4 + 8) >> 4);
        for (x = 0; x < n - 1; x++) {
            next = a[x + 1] * 3 + b[x + 1];
            if (x) buf[2 * x] = (unsigned char)((cur * 3 + last + 8) >> 4);
            buf[2 * x + 1] = (unsigned char)((cur * 3 + next + 7) >> 4);
            last = cur;
            cur = next;
        }
        buf[2 * n - 2] = (unsigned char)((cur * 3 + last + 8) >> 4);
        buf[2 * n - 1] = (unsigned char)((cur * 4 + 7) >> 4);
        return buf;
    }
    {   /* generic: sample (x, y) takes the component sample whose area holds the pixel centre */
        int iy = (int)(((int64_t)(2 * y + 1) * c->v) / (2 * d->vmax));
        const unsigned char *in = nst__jprow(c, NST__MIN(iy, c->dh - 1));
        for (x = 0; x < d->w; x++) buf[x] = in[xmap[x]];
        return buf;
    }
}

static void nst__jycc_init(nst__jycc *t) {
    int i;
    for (i = 0; i < 256; i++) {
        int32_t x = i - 128;
        t->cr_r[i] = (int)((91881 * x + 32768) >> 16);     /* FIX(1.40200) */
        t->cb_b[i] = (int)((116130 * x + 32768) >> 16);    /* FIX(1.77200) */
        t->cr_g[i] = -46802 * x;                           /* FIX(0.71414) */
        t->cb_g[i] = -22554 * x + 32768;                   /* FIX(0.34414), with ONE_HALF folded in */
    }
}
static unsigned char nst__jclamp(int v) { return (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v); }

enum { NST__JCS_GRAY, NST__JCS_YCC, NST__JCS_RGB, NST__JCS_CMYK, NST__JCS_YCCK };

/* Once the frame and the first scan are known: size check first, then the output image (rotated as
 * EXIF asks), the coefficient buffers, the IDCT ring and the row buffers. */
static nst_status nst__jpeg_setup(nst__jdec *d, nst_image *out) {
    int i, ow, oh;
    nst_status st;
    /* colour space, as libjpeg's default_decompress_parms decides it */
    if (d->ncomp == 1) d->cs = NST__JCS_GRAY;
    else if (d->ncomp == 3) {
        if (d->jfif) d->cs = NST__JCS_YCC;
        else if (d->adobe) d->cs = d->adobe_transform == 0 ? NST__JCS_RGB : NST__JCS_YCC;
        else if (d->comp[0].id == 'R' && d->comp[1].id == 'G' && d->comp[2].id == 'B') d->cs = NST__JCS_RGB;
        else d->cs = NST__JCS_YCC;
    } else d->cs = d->adobe && d->adobe_transform != 0 ? NST__JCS_YCCK : NST__JCS_CMYK;   /* libjpeg: odd transform = YCCK */
    d->ch = d->cs == NST__JCS_GRAY ? 1 : 3;
    if ((st = nst__image_check_size(d->w, d->h, d->ch)) != NST_OK) return st;
    d->mcux = (d->w + 8 * d->hmax - 1) / (8 * d->hmax);
    d->mcuy = (d->h + 8 * d->vmax - 1) / (8 * d->vmax);
    d->stream = !d->progressive && d->ns == d->ncomp;
    for (i = 0; i < d->ncomp; i++) {
        nst__jcomp *c = &d->comp[i];
        c->bw = d->mcux * c->h;
        c->bh = d->mcuy * c->v;
        c->dw = (int)(((size_t)d->w * c->h + d->hmax - 1) / d->hmax);
        c->dh = (int)(((size_t)d->h * c->v + d->vmax - 1) / d->vmax);
        c->coef = (int16_t *)nst__calloc((size_t)c->bw * (d->stream ? (size_t)c->v : (size_t)c->bh), 64 * sizeof(int16_t));
        c->plane = (unsigned char *)nst__malloc((size_t)c->bw * 8 * 3 * 8 * (size_t)c->v);
        if (!c->coef || !c->plane) return nst__err(NST_ERR_NOMEM, "jpeg: out of memory for %dx%d", d->w, d->h);
    }
    d->rbw = (size_t)d->w + 80;
    d->rowbuf = (unsigned char *)nst__malloc(d->rbw * 4);
    d->xmap = (int *)nst__malloc(sizeof(int) * (size_t)d->w * 4);
    if (!d->rowbuf || !d->xmap) return nst__err(NST_ERR_NOMEM, "jpeg: out of memory");
    for (i = 0; i < d->ncomp; i++) {
        int x;
        for (x = 0; x < d->w; x++) {
            int ix = (int)(((int64_t)(2 * x + 1) * d->comp[i].h) / (2 * d->hmax));
            d->xmap[(size_t)i * d->w + x] = NST__MIN(ix, d->comp[i].dw - 1);
        }
    }
    nst__jycc_init(&d->tab);
    for (i = 0; i < 256; i++) d->lut[i] = (float)i / 255.0f;
    ow = d->orientation >= 5 ? d->h : d->w;
    oh = d->orientation >= 5 ? d->w : d->h;
    switch (d->orientation) {
    default: d->origin = 0; d->sx = 1; d->sy = ow; break;
    case 2: d->origin = ow - 1; d->sx = -1; d->sy = ow; break;
    case 3: d->origin = (ptrdiff_t)(oh - 1) * ow + ow - 1; d->sx = -1; d->sy = -(ptrdiff_t)ow; break;
    case 4: d->origin = (ptrdiff_t)(oh - 1) * ow; d->sx = 1; d->sy = -(ptrdiff_t)ow; break;
    case 5: d->origin = 0; d->sx = ow; d->sy = 1; break;
    case 6: d->origin = ow - 1; d->sx = ow; d->sy = -1; break;
    case 7: d->origin = (ptrdiff_t)(oh - 1) * ow + ow - 1; d->sx = -(ptrdiff_t)ow; d->sy = -1; break;
    case 8: d->origin = (ptrdiff_t)(oh - 1) * ow; d->sx = -(ptrdiff_t)ow; d->sy = 1; break;
    }
    if ((st = nst_image_alloc(out, ow, oh, d->ch)) != NST_OK) return st;
    d->img = out;
    d->ready = 1;
    return NST_OK;
}

/* IDCT of MCU row k (block rows k*v .. k*v+v-1 of each component) into ring slot k % 3. */
static void nst__jidct_row(nst__jdec *d, int k) {
    int i;
    for (i = 0; i < d->ncomp; i++) {
        nst__jcomp *c = &d->comp[i];
        size_t stride = (size_t)c->bw * 8;
        int by, bx, nbx = (c->dw + 7) / 8;
        for (by = 0; by < c->v; by++) {
            const int16_t *src = c->coef + ((d->stream ? 0 : (size_t)k * c->v) + by) * c->bw * 64;
            unsigned char *dst = c->plane + ((size_t)(k % 3) * c->v * 8 + (size_t)by * 8) * stride;
            for (bx = 0; bx < nbx; bx++) nst__jidct_islow(src + (size_t)bx * 64, c->qt, dst + (size_t)bx * 8, stride);
        }
    }
}

/* Upsamples and colour-converts the pixel rows of MCU row k into the output image. Needs MCU rows
 * k-1 .. k+1 in the ring (the fancy filters look one chroma row up and down). */
static void nst__jemit(nst__jdec *d, int k) {
    int y, i, y0 = k * 8 * d->vmax, y1 = NST__MIN(d->h, y0 + 8 * d->vmax), ch = d->ch;
    const nst__jycc *tab = &d->tab;
    const float *lut = d->lut;
    for (y = y0; y < y1; y++) {
        const unsigned char *r[4];
        float *o = d->img->pixels + (d->origin + (ptrdiff_t)y * d->sy) * ch;
        ptrdiff_t step = d->sx * ch;
        int x;
        for (i = 0; i < d->ncomp; i++) r[i] = nst__jrow(d, &d->comp[i], y, d->rowbuf + d->rbw * i, d->xmap + (size_t)i * d->w);
        switch (d->cs) {
        case NST__JCS_GRAY:
            for (x = 0; x < d->w; x++, o += step) o[0] = lut[r[0][x]];
            break;
        case NST__JCS_RGB:
            for (x = 0; x < d->w; x++, o += step) { o[0] = lut[r[0][x]]; o[1] = lut[r[1][x]]; o[2] = lut[r[2][x]]; }
            break;
        case NST__JCS_YCC:
            for (x = 0; x < d->w; x++, o += step) {
                int yy = r[0][x], cb = r[1][x], cr = r[2][x];
                o[0] = lut[nst__jclamp(yy + tab->cr_r[cr])];
                o[1] = lut[nst__jclamp(yy + (int)((tab->cb_g[cb] + tab->cr_g[cr]) >> 16))];
                o[2] = lut[nst__jclamp(yy + tab->cb_b[cb])];
            }
            break;
        case NST__JCS_CMYK:   /* djpeg's PPM output: R = C*K/255 on the stored (Adobe-inverted) values */
            for (x = 0; x < d->w; x++, o += step) {
                int kk = r[3][x];
                o[0] = lut[(2 * r[0][x] * kk + 255) / 510];
                o[1] = lut[(2 * r[1][x] * kk + 255) / 510];
                o[2] = lut[(2 * r[2][x] * kk + 255) / 510];
            }
            break;
        default:   /* YCCK: YCbCr -> inverted RGB = CMY, then as CMYK */
            for (x = 0; x < d->w; x++, o += step) {
                int yy = r[0][x], cb = r[1][x], cr = r[2][x], kk = r[3][x];
                int c = 255 - nst__jclamp(yy + tab->cr_r[cr]);
                int m = 255 - nst__jclamp(yy + (int)((tab->cb_g[cb] + tab->cr_g[cr]) >> 16));
                int ye = 255 - nst__jclamp(yy + tab->cb_b[cb]);
                o[0] = lut[(2 * c * kk + 255) / 510];
                o[1] = lut[(2 * m * kk + 255) / 510];
                o[2] = lut[(2 * ye * kk + 255) / 510];
            }
            break;
        }
    }
}

/* ---- the decoder driver ------------------------------------------------------------------------------*/
static nst_status nst__jpeg_decode_ex(const unsigned char *data, size_t n, nst_image *out, int flags) {
    nst__jdec *d;
    nst_status st = NST_OK;
    int scanned = 0;
    out->width = out->height = out->channels = 0;
    out->pixels = NULL;
    if (!data || n < 4 || data[0] != 0xFF || data[1] != 0xD8) return nst__err(NST_ERR_FORMAT, "jpeg: not a JPEG file (no SOI)");
    d = (nst__jdec *)nst__calloc(1, sizeof *d);
    if (!d) return nst__err(NST_ERR_NOMEM, "jpeg: out of memory");
    d->data = data;
    d->n = n;
    d->pos = 2;
    d->flags = flags;
    for (;;) {
        int m;
        unsigned len;
        const unsigned char *p;
        /* next marker: skip garbage and 0xFF fill bytes, as libjpeg's next_marker does */
        while (d->pos + 1 < n && !(data[d->pos] == 0xFF && data[d->pos + 1] != 0xFF && data[d->pos + 1] != 0)) d->pos++;
        if (d->pos + 1 >= n) {
            if (scanned) break;   /* truncated after image data: output what we have, like libjpeg */
            st = nst__err(NST_ERR_FORMAT, "jpeg: truncated before the image data");
            goto fail;
        }
        m = data[d->pos + 1];
        d->pos += 2;
        if (m == 0xD9) break;                                   /* EOI */
        if ((m >= 0xD0 && m <= 0xD8) || m == 0x01) continue;   /* RSTn / SOI / TEM: no payload */
        if (d->pos + 2 > n || (len = nst__jrd16(data + d->pos)) < 2 || d->pos + len > n) {
            if (scanned) break;
            st = nst__err(NST_ERR_FORMAT, "jpeg: truncated marker segment 0x%02X", m);
            goto fail;
        }
        p = data + d->pos + 2;
        len -= 2;
        d->pos += len + 2;
        switch (m) {
        case 0xC4: {   /* DHT: one or more tables */
            unsigned o = 0;
            while (o < len) {
                unsigned tc, th, cnt = 0, i;
                if (len - o < 17) { st = nst__err(NST_ERR_FORMAT, "jpeg: truncated Huffman table"); goto fail; }
                tc = p[o] >> 4;
                th = p[o] & 15;
                for (i = 0; i < 16; i++) cnt += p[o + 1 + i];
                if (tc > 1 || th > 3 || len - o - 17 < cnt) { st = nst__err(NST_ERR_FORMAT, "jpeg: bad Huffman table"); goto fail; }
                if ((st = nst__jhuff_build(tc ? &d->ac[th] : &d->dc[th], p + o + 1, p + o + 17, (int)tc)) != NST_OK) goto fail;
                o += 17 + cnt;
            }
            break;
        }
        case 0xDB: {   /* DQT */
            unsigned o = 0;
            while (o < len) {
                unsigned pq = p[o] >> 4, tq = p[o] & 15, i, need = pq ? 129 : 65;
                if (pq > 1 || tq > 3 || len - o < need) { st = nst__err(NST_ERR_FORMAT, "jpeg: bad quantisation table"); goto fail; }
                for (i = 0; i < 64; i++)
                    d->qt[tq][nst__jpeg_natural[i]] = (uint16_t)(pq ? nst__jrd16(p + o + 1 + 2 * i) : p[o + 1 + i]);
                d->qt_present[tq] = 1;
                o += need;
            }
            break;
        }
        case 0xDD:   /* DRI */
            if (len < 2) { st = nst__err(NST_ERR_FORMAT, "jpeg: bad DRI segment"); goto fail; }
            d->restart_interval = (int)nst__jrd16(p);
            break;
        case 0xDA:   /* SOS */
            if ((st = nst__jpeg_sos(d, p, len)) != NST_OK) {
                if (scanned && st != NST_ERR_LIMIT) { st = NST_OK; goto output; }   /* corrupt later scan: keep the image */
                goto fail;
            }
            if (!d->ready && (st = nst__jpeg_setup(d, out)) != NST_OK) goto fail;
            nst__jpeg_scan_data(d);
            scanned = 1;
            if (d->stream) goto output;   /* a sequential file has nothing after its one full scan */
            break;
        case 0xDC:
            st = nst__err(NST_ERR_UNSUPPORTED, "jpeg: DNL marker is not supported");
            goto fail;
        case 0xCC:
            st = nst__err(NST_ERR_UNSUPPORTED, "jpeg: arithmetic coding is not supported");
            goto fail;
        case 0xE0:
            if (len >= 5 && memcmp(p, "JFIF\0", 5) == 0) d->jfif = 1;
            break;
        case 0xE1:
            if (!d->orientation) d->orientation = nst__jpeg_exif_orientation(p, len);
            break;
        case 0xEE:
            if (len >= 12 && memcmp(p, "Adobe", 5) == 0) { d->adobe = 1; d->adobe_transform = p[11]; }
            break;
        default:
            if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
                if ((st = nst__jpeg_sof(d, p, len, m)) != NST_OK) goto fail;
            }
            /* APPn (ICC profiles in APP2 included), COM, JPG extensions: skipped */
            break;
        }
    }
output:
    if (!scanned) { st = nst__err(NST_ERR_FORMAT, "jpeg: no image data (no scan)"); goto fail; }
    if (!d->stream) {   /* progressive or multi-scan: IDCT + output from the coefficient store */
        int k;
        for (k = 0; k < d->mcuy; k++) {
            nst__jidct_row(d, k);
            if (k) nst__jemit(d, k - 1);
        }
        nst__jemit(d, d->mcuy - 1);
    }
fail:
    if (st != NST_OK) nst_image_free(out);
    nst__jpeg_release(d);
    nst__free(d);
    return st;
}

static nst_status nst__jpeg_decode(const unsigned char *data, size_t n, nst_image *out) {
    return nst__jpeg_decode_ex(data, n, out, 0);
}

/* =====================================================================================================
 * JPEG encoder: baseline, JFIF, 4:4:4 or 4:2:0 (gray images as one component), optimised Huffman tables
 * ===================================================================================================*/
/* ITU-T T.81 Annex K.1 tables, natural order */
static const unsigned char nst__jpeg_std_q[2][64] = {
    {16, 11, 10, 16, 24,  40,  51,  61,  12, 12, 14, 19, 26,  58,  60,  55,
     14, 13, 16, 24, 40,  57,  69,  56,  14, 17, 22, 29, 51,  87,  80,  62,
     18, 22, 37, 56, 68,  109, 103, 77,  24, 35, 55, 64, 81,  104, 113, 92,
     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99},
    {17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99,
     99, 99, 47, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
     99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99}};
/* Annex K.3 Huffman tables: code counts per length 1..16, then symbols. [0] luma DC, [1] chroma DC,
 * [2] luma AC, [3] chroma AC */
static const unsigned char nst__jpeg_std_bits[4][16] = {
    {0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0},
    {0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0},
    {0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d},
    {0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77}};
static const unsigned char nst__jpeg_std_dc_vals[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
static const unsigned char nst__jpeg_std_ac_vals[2][162] = {
    {0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07, 0x22, 0x71,
     0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72,
     0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37,
     0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59,
     0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83,
     0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3,
     0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3,
     0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2,
     0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa},
    {0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71, 0x13, 0x22,
     0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0, 0x15, 0x62, 0x72, 0xd1,
     0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x35, 0x36,
     0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58,
     0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a,
     0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a,
     0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba,
     0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda,
     0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa}};

/* A Huffman table as written (counts + symbols) and as used (code and length per symbol). */
typedef struct nst__jetab {
    unsigned char bits[16], vals[256];
    int nvals;
    uint16_t code[256];
    unsigned char len[256];
} nst__jetab;

static void nst__jetab_codes(nst__jetab *t) {
    int l, i, k = 0;
    unsigned code = 0;
    memset(t->len, 0, sizeof t->len);
    for (l = 1; l <= 16; l++) {
        for (i = 0; i < t->bits[l - 1]; i++, k++) {
            t->code[t->vals[k]] = (uint16_t)code++;
            t->len[t->vals[k]] = (unsigned char)l;
        }
        code <<= 1;
    }
}
static void nst__jetab_std(nst__jetab *t, int which) {
    int i;
    memcpy(t->bits, nst__jpeg_std_bits[which], 16);
    for (t->nvals = 0, i = 0; i < 16; i++) t->nvals += t->bits[i];
    memcpy(t->vals, which < 2 ? nst__jpeg_std_dc_vals : nst__jpeg_std_ac_vals[which - 2], (size_t)t->nvals);
    nst__jetab_codes(t);
}
/* Optimal code lengths limited to 16 bits from symbol counts: libjpeg's jpeg_gen_optimal_table method
 * (Huffman merging with a reserved pseudo-symbol 256 so no code is all ones, then K.3-style folding). */
static void nst__jetab_optimal(nst__jetab *t, const long *count) {
    long freq[257];
    int codesize[257], others[257], bits[33], i, j, k;
    for (i = 0; i < 256; i++) freq[i] = count[i];
    freq[256] = 1;
    for (i = 0; i < 257; i++) { codesize[i] = 0; others[i] = -1; }
    memset(bits, 0, sizeof bits);
    for (;;) {
        int c1 = -1, c2 = -1;
        long v = LONG_MAX;
        for (i = 0; i <= 256; i++) if (freq[i] && freq[i] <= v) { v = freq[i]; c1 = i; }
        v = LONG_MAX;
        for (i = 0; i <= 256; i++) if (freq[i] && freq[i] <= v && i != c1) { v = freq[i]; c2 = i; }
        if (c2 < 0) break;
        freq[c1] += freq[c2];
        freq[c2] = 0;
        codesize[c1]++;
        while (others[c1] >= 0) { c1 = others[c1]; codesize[c1]++; }
        others[c1] = c2;
        codesize[c2]++;
        while (others[c2] >= 0) { c2 = others[c2]; codesize[c2]++; }
    }
    for (i = 0; i <= 256; i++) if (codesize[i]) bits[NST__MIN(codesize[i], 32)]++;
    for (i = 32; i > 16; i--) {
        while (bits[i] > 0) {
            j = i - 2;
            while (j > 0 && bits[j] == 0) j--;
            bits[i] -= 2;
            bits[i - 1]++;
            bits[j + 1] += 2;
            bits[j]--;
        }
    }
    for (i = 16; i > 0 && bits[i] == 0; i--) {}
    if (i > 0) bits[i]--;   /* drop the pseudo-symbol's code (the longest, all ones) */
    for (i = 0; i < 16; i++) t->bits[i] = (unsigned char)bits[i + 1];
    t->nvals = 0;
    for (i = 1; i <= 32; i++)
        for (k = 0; k < 256; k++)
            if (codesize[k] == i) t->vals[t->nvals++] = (unsigned char)k;
    nst__jetab_codes(t);
}

typedef struct nst__jbw {   /* entropy bit writer with 0xFF byte stuffing */
    nst__buf *out;
    uint32_t acc;
    int n, len;
    unsigned char chunk[4096 + 8];
} nst__jbw;
static void nst__jbw_flush(nst__jbw *w) { nst__buf_put(w->out, w->chunk, (size_t)w->len); w->len = 0; }
static void nst__jbw_put(nst__jbw *w, unsigned code, int len) {
    w->acc = (w->acc << len) | (code & ((1u << len) - 1));
    w->n += len;
    while (w->n >= 8) {
        unsigned char b = (unsigned char)(w->acc >> (w->n - 8));
        w->n -= 8;
        w->chunk[w->len++] = b;
        if (b == 0xFF) w->chunk[w->len++] = 0;
        if (w->len >= 4096) nst__jbw_flush(w);
    }
}
static int nst__jcat(int v) {   /* bits needed for |v| */
    int n = 0;
    unsigned a = (unsigned)(v < 0 ? -v : v);
    while (a) { n++; a >>= 1; }
    return n;
}
/* Either counts symbols (w == NULL) or writes one block. blk is quantised, natural order. */
static void nst__jenc_block(nst__jbw *w, const int16_t *blk, int *pred, const nst__jetab *dc, const nst__jetab *ac,
                            long *dcount, long *acount) {
    int diff = blk[0] - *pred, s, k, run = 0;
    *pred = blk[0];
    s = nst__jcat(diff);
    if (!w) dcount[s]++;
    else {
        nst__jbw_put(w, dc->code[s], dc->len[s]);
        if (s) nst__jbw_put(w, (unsigned)(diff < 0 ? diff - 1 : diff), s);
    }
    for (k = 1; k < 64; k++) {
        int v = blk[nst__jpeg_natural[k]];
        if (!v) { run++; continue; }
        while (run > 15) {
            if (!w) acount[0xF0]++;
            else nst__jbw_put(w, ac->code[0xF0], ac->len[0xF0]);
            run -= 16;
        }
        s = nst__jcat(v);
        if (!w) acount[run * 16 + s]++;
        else {
            nst__jbw_put(w, ac->code[run * 16 + s], ac->len[run * 16 + s]);
            nst__jbw_put(w, (unsigned)(v < 0 ? v - 1 : v), s);
        }
        run = 0;
    }
    if (run) {
        if (!w) acount[0]++;
        else nst__jbw_put(w, ac->code[0], ac->len[0]);
    }
}

/* Forward DCT (JPEG's scaling: F = 1/4 C(u) C(v) sum f cos cos) of a level-shifted 8x8 block, then
 * quantisation with rounding to nearest. Separable, as two 8x8 matrix products F = M f M^T, written with
 * the contiguous index innermost so compilers vectorise them (m = M, mt = M^T, rq = 1/q). */
static void nst__jfdct_quant(const unsigned char *in, size_t stride, const float *m, const float *mt, const float *rq,
                             int16_t *out) {
    float f[64], t[64], F[64];
    int u, x, y, v;
    for (y = 0; y < 8; y++)
        for (x = 0; x < 8; x++) f[y * 8 + x] = (float)in[(size_t)y * stride + x] - 128.0f;
    for (u = 0; u < 8; u++) {
        for (x = 0; x < 8; x++) t[u * 8 + x] = 0.0f;
        for (y = 0; y < 8; y++)
            for (x = 0; x < 8; x++) t[u * 8 + x] += m[u * 8 + y] * f[y * 8 + x];
    }
    for (u = 0; u < 8; u++) {
        for (v = 0; v < 8; v++) F[u * 8 + v] = 0.0f;
        for (x = 0; x < 8; x++)
            for (v = 0; v < 8; v++) F[u * 8 + v] += t[u * 8 + x] * mt[x * 8 + v];
    }
    for (u = 0; u < 64; u++) {   /* round to nearest without a branch on the sign: |q| < 2^11 << 2^22 */
        float q = F[u] * rq[u] + 12582912.0f;   /* 1.5 * 2^23: the sum keeps no fraction bits */
        out[u] = (int16_t)(int)(q - 12582912.0f);
    }
}

static void nst__jseg(nst__buf *b, int marker, unsigned len) {   /* marker + segment length */
    nst__buf_byte(b, 0xFF);
    nst__buf_byte(b, marker);
    nst__buf_byte(b, (int)(len >> 8));
    nst__buf_byte(b, (int)(len & 255));
}

/* Converts pixel rows y0 .. y0+rows-1 (clamped to the image: edge replication) to 8-bit Y/Cb/Cr (or gray)
 * band planes of width pw, compositing alpha over white, and replicates the last column to pw. */
static void nst__jenc_band(const nst_image *img, int y0, int rows, int pw, int nc, unsigned char **band) {
    int w = img->width, ch = img->channels, r, x, c;
    for (r = 0; r < rows; r++) {
        int y = NST__MIN(y0 + r, img->height - 1);
        const float *p = img->pixels + (size_t)y * w * ch;
        unsigned char *o0 = band[0] + (size_t)r * pw, *o1 = nc == 3 ? band[1] + (size_t)r * pw : NULL,
                      *o2 = nc == 3 ? band[2] + (size_t)r * pw : NULL;
        for (x = 0; x < w; x++, p += ch) {
            float rr, g, b, a = 1.0f;
            if (ch <= 2) { rr = g = b = p[0]; if (ch == 2) a = p[1]; }
            else { rr = p[0]; g = p[1]; b = p[2]; if (ch == 4) a = p[3]; }
            if (!(a >= 0.0f)) a = 0.0f;   /* also catches NaN */
            if (a > 1.0f) a = 1.0f;
            rr = rr * a + (1.0f - a); g = g * a + (1.0f - a); b = b * a + (1.0f - a);
            rr = !(rr > 0.0f) ? 0.0f : rr > 1.0f ? 255.0f : rr * 255.0f;
            g = !(g > 0.0f) ? 0.0f : g > 1.0f ? 255.0f : g * 255.0f;
            b = !(b > 0.0f) ? 0.0f : b > 1.0f ? 255.0f : b * 255.0f;
            if (nc == 1) o0[x] = (unsigned char)(rr + 0.5f);
            else {   /* JFIF YCbCr */
                float yy = 0.299f * rr + 0.587f * g + 0.114f * b;
                float cb = -0.168735892f * rr - 0.331264108f * g + 0.5f * b + 128.5f;
                float cr = 0.5f * rr - 0.418687589f * g - 0.081312411f * b + 128.5f;
                o0[x] = nst__jclamp((int)(yy + 0.5f));
                o1[x] = nst__jclamp((int)cb);
                o2[x] = nst__jclamp((int)cr);
            }
        }
        for (c = 0; c < nc; c++) {
            unsigned char *o = band[c] + (size_t)r * pw;
            memset(o + w, o[w - 1], (size_t)(pw - w));
        }
    }
}

/* optimize: 1 = per-image Huffman tables (smaller; the band pipeline runs twice, first to count
 * symbols), 0 = the Annex K tables (like cjpeg's default). Works one MCU row at a time, so memory is a
 * few rows whatever the image size. */
static nst_status nst__jpeg_encode_ex(const nst_image *img, int quality, int chroma420, int optimize, nst__buf *out) {
    int w, h, ch, nc, sub, pw, cw, nmx, nmy, i, x, c, scale, pass;
    unsigned char *band[3] = {NULL, NULL, NULL};
    int16_t *coef[3] = {NULL, NULL, NULL};
    nst__jetab tabs[4];
    nst__jbw *bw = NULL;
    uint16_t q[2][64];
    float rq[2][64], m[64], mt[64];
    long cnt[4][256];
    nst_status st = NST_OK;
    if (!img || !img->pixels || !out) return nst__err(NST_ERR_ARGUMENT, "jpeg: no image to encode");
    w = img->width; h = img->height; ch = img->channels;
    if (w < 1 || h < 1 || w > 65535 || h > 65535)
        return nst__err(NST_ERR_ARGUMENT, "jpeg: cannot encode a %dx%d image (1..65535 each side)", w, h);
    if (ch < 1 || ch > 4) return nst__err(NST_ERR_ARGUMENT, "jpeg: cannot encode %d channels", ch);
    quality = quality < 1 ? 1 : quality > 100 ? 100 : quality;
    nc = ch <= 2 ? 1 : 3;
    sub = nc == 3 && chroma420 ? 2 : 1;
    nmx = (w + 8 * sub - 1) / (8 * sub);
    nmy = (h + 8 * sub - 1) / (8 * sub);
    pw = nmx * 8 * sub;
    cw = pw / sub;
    /* quantisation tables: libjpeg's jpeg_quality_scaling and jpeg_add_quant_table(force_baseline) */
    scale = quality < 50 ? 5000 / quality : 200 - quality * 2;
    for (c = 0; c < 2; c++)
        for (i = 0; i < 64; i++) {
            long v = ((long)nst__jpeg_std_q[c][i] * scale + 50) / 100;
            q[c][i] = (uint16_t)(v < 1 ? 1 : v > 255 ? 255 : v);
            rq[c][i] = 1.0f / (float)q[c][i];
        }
    for (i = 0; i < 8; i++)
        for (x = 0; x < 8; x++)
            mt[x * 8 + i] = m[i * 8 + x] =
                (float)((i ? 0.5 : 0.35355339059327373) * cos((2 * x + 1) * i * 3.14159265358979323846 / 16));
    /* one MCU row: full-resolution band planes and the quantised blocks of each component */
    for (c = 0; c < nc; c++) {
        band[c] = (unsigned char *)nst__malloc((size_t)pw * 8 * sub);
        coef[c] = (int16_t *)nst__malloc((size_t)(c ? cw : pw) / 8 * (c ? 1 : sub) * 64 * sizeof(int16_t));
        if (!band[c] || !coef[c]) { st = nst__err(NST_ERR_NOMEM, "jpeg: out of memory encoding %dx%d", w, h); goto done; }
    }
    bw = (nst__jbw *)nst__malloc(sizeof *bw);
    if (!bw) { st = nst__err(NST_ERR_NOMEM, "jpeg: out of memory"); goto done; }
    bw->out = out; bw->acc = 0; bw->n = 0; bw->len = 0;
    memset(cnt, 0, sizeof cnt);
    for (pass = optimize ? 0 : 1; pass < 2; pass++) {
        int pred[3] = {0, 0, 0}, my;
        if (pass == 1) {   /* tables are known: write the headers */
            if (optimize) for (i = 0; i < 4; i++) nst__jetab_optimal(&tabs[i], cnt[i]);
            else for (i = 0; i < 4; i++) nst__jetab_std(&tabs[i], i);
            nst__buf_byte(out, 0xFF); nst__buf_byte(out, 0xD8);
            nst__jseg(out, 0xE0, 16);
            nst__buf_put(out, "JFIF\0\1\1\0\0\1\0\1\0\0", 14);   /* v1.01, no units, 1:1 pixel aspect, no thumbnail */
            nst__jseg(out, 0xDB, 2 + 65 * (nc == 3 ? 2 : 1));
            for (c = 0; c < (nc == 3 ? 2 : 1); c++) {
                nst__buf_byte(out, c);
                for (i = 0; i < 64; i++) nst__buf_byte(out, q[c][nst__jpeg_natural[i]]);
            }
            nst__jseg(out, 0xC0, 8 + 3 * (unsigned)nc);
            nst__buf_byte(out, 8);
            nst__buf_byte(out, h >> 8); nst__buf_byte(out, h & 255);
            nst__buf_byte(out, w >> 8); nst__buf_byte(out, w & 255);
            nst__buf_byte(out, nc);
            for (c = 0; c < nc; c++) {
                nst__buf_byte(out, c + 1);
                nst__buf_byte(out, c ? 0x11 : sub * 16 + sub);
                nst__buf_byte(out, c ? 1 : 0);
            }
            for (i = 0; i < 4; i++) {
                if (nc == 1 && (i & 1)) continue;
                nst__jseg(out, 0xC4, 2 + 17 + (unsigned)tabs[i].nvals);
                nst__buf_byte(out, (i >> 1) * 16 + (i & 1));
                nst__buf_put(out, tabs[i].bits, 16);
                nst__buf_put(out, tabs[i].vals, (size_t)tabs[i].nvals);
            }
            nst__jseg(out, 0xDA, 6 + 2 * (unsigned)nc);
            nst__buf_byte(out, nc);
            for (c = 0; c < nc; c++) { nst__buf_byte(out, c + 1); nst__buf_byte(out, c ? 0x11 : 0x00); }
            nst__buf_byte(out, 0); nst__buf_byte(out, 63); nst__buf_byte(out, 0);
        }
        for (my = 0; my < nmy; my++) {
            int mx, y, xx;
            nst__jenc_band(img, my * 8 * sub, 8 * sub, pw, nc, band);
            if (sub == 2)   /* 2x2 box average in place, libjpeg's alternating 1/2 rounding bias */
                for (c = 1; c < 3; c++)
                    for (y = 0; y < 8; y++)
                        for (xx = 0; xx < cw; xx++) {
                            const unsigned char *s0 = band[c] + (size_t)(2 * y) * pw + 2 * xx, *s1 = s0 + pw;
                            band[c][(size_t)y * cw + xx] =
                                (unsigned char)((s0[0] + s0[1] + s1[0] + s1[1] + 1 + (xx & 1)) >> 2);
                        }
            for (c = 0; c < nc; c++) {   /* forward DCT + quantisation of the row's blocks */
                int wc = c ? cw : pw, nbx = wc / 8, nby = c ? 1 : sub, bx, by;
                for (by = 0; by < nby; by++)
                    for (bx = 0; bx < nbx; bx++)
                        nst__jfdct_quant(band[c] + (size_t)by * 8 * wc + (size_t)bx * 8, (size_t)wc, m, mt,
                                         rq[c ? 1 : 0], coef[c] + ((size_t)by * nbx + bx) * 64);
            }
            for (mx = 0; mx < nmx; mx++)
                for (c = 0; c < nc; c++) {
                    int s = c ? 1 : sub, bx, by, nbx = (c ? cw : pw) / 8;
                    for (by = 0; by < s; by++)
                        for (bx = 0; bx < s; bx++) {
                            const int16_t *blk = coef[c] + ((size_t)by * nbx + (size_t)mx * s + bx) * 64;
                            if (pass == 0) nst__jenc_block(NULL, blk, &pred[c], NULL, NULL, cnt[c ? 1 : 0], cnt[c ? 3 : 2]);
                            else nst__jenc_block(bw, blk, &pred[c], &tabs[c ? 1 : 0], &tabs[c ? 3 : 2], NULL, NULL);
                        }
                }
        }
    }
    if (bw->n) nst__jbw_put(bw, 0x7F, 8 - bw->n);   /* pad the last byte with 1 bits */
    nst__jbw_flush(bw);
    nst__buf_byte(out, 0xFF); nst__buf_byte(out, 0xD9);
    if (out->failed) st = nst__err(NST_ERR_NOMEM, "jpeg: out of memory writing the file");
done:
    for (c = 0; c < 3; c++) { nst__free(band[c]); nst__free(coef[c]); }
    nst__free(bw);
    return st;
}

static nst_status nst__jpeg_encode(const nst_image *img, int quality, int chroma420, nst__buf *out) {
    return nst__jpeg_encode_ex(img, quality, chroma420, 1, out);
}

#endif /* NST_NO_IMAGE_IO */
