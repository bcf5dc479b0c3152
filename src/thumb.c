/* thumb: photo bytes -> small upright JPEG with no metadata. See include/keng/thumb.h.
 *
 * The pipeline, and why each step is where it is:
 *   sniff magic -> header (size limit before any pixel is allocated) -> EXIF orientation from our
 *   own bounds-checked marker walk -> TurboJPEG decode at the smallest DCT scale that still covers
 *   the target (1/8 for a 12 MP photo: the IDCT does most of the shrinking for free) -> area
 *   average to the exact size (no aliasing, unlike nearest neighbour) -> rotate/mirror the small
 *   image (cheap) -> encode with TurboJPEG, whose compressor writes no APPn markers but JFIF. */
#include "keng/thumb.h"

#include <errno.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#ifndef TJFLAG_LIMITSCANS
#define TJFLAG_LIMITSCANS 0
#endif
/* TurboJPEG's message buffer (JMSG_LENGTH_MAX in jpeglib.h, which we do not include). */
#define JMSG_LENGTH_MAX_KENG 200

enum kind { KIND_NONE, KIND_JPEG, KIND_PNG };

static const char MIME_JPEG[] = "image/jpeg";
static const char MIME_PNG[] = "image/png";

/* An 8-bit interleaved image: ch is 1 (grey), 3 (RGB) or 4 (CMYK, only straight after decode). */
typedef struct image {
    unsigned char *px;
    int w, h, ch;
} image;

/* What our own walk over the JPEG markers learnt (TurboJPEG does not expose APPn segments). */
typedef struct jpeg_markers {
    int orientation;
    int adobe;  /* an Adobe APP14 segment: its CMYK is stored inverted (Photoshop's convention) */
    size_t sos; /* offset just past the first SOS header; 0 if none was found */
} jpeg_markers;

static enum kind sniff(const unsigned char *d, size_t n)
{
    static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return KIND_JPEG;
    if (n >= 8 && memcmp(d, png_sig, 8) == 0) return KIND_PNG;
    return KIND_NONE;
}

static unsigned rd16(const unsigned char *p, int le)
{
    return le ? (unsigned)p[0] | (unsigned)p[1] << 8 : (unsigned)p[0] << 8 | (unsigned)p[1];
}

static uint32_t rd32(const unsigned char *p, int le)
{
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* p/n: the TIFF structure after "Exif\0\0". Anything out of bounds or odd means "upright": a
 * photo shown sideways is a nuisance, a crash on a hostile upload is an outage. */
static int exif_orientation(const unsigned char *p, size_t n)
{
    if (n < 8) return 1;
    int le;
    if (p[0] == 'I' && p[1] == 'I')
        le = 1;
    else if (p[0] == 'M' && p[1] == 'M')
        le = 0;
    else
        return 1;
    if (rd16(p + 2, le) != 42) return 1;
    uint32_t ifd = rd32(p + 4, le);
    if (ifd < 8 || ifd > n - 2) return 1;
    unsigned count = rd16(p + ifd, le);
    size_t at = (size_t)ifd + 2;
    for (unsigned i = 0; i < count; i++, at += 12) {
        if (n - at < 12) return 1;
        if (rd16(p + at, le) != 0x0112) continue;
        unsigned type = rd16(p + at + 2, le);
        uint32_t cnt = rd32(p + at + 4, le);
        uint32_t v;
        if (type == 3 && cnt >= 1) /* SHORT, the standard type: left-justified in the field */
            v = rd16(p + at + 8, le);
        else if (type == 4 && cnt == 1) /* LONG, seen from some writers */
            v = rd32(p + at + 8, le);
        else
            return 1;
        return v >= 1 && v <= 8 ? (int)v : 1;
    }
    return 1;
}

static void jpeg_walk(const unsigned char *d, size_t n, jpeg_markers *m)
{
    int exif_seen = 0;
    size_t i = 2;
    m->orientation = 1;
    m->adobe = 0;
    m->sos = 0;
    while (i < n && n - i >= 4) {
        if (d[i] != 0xFF) return;
        while (i < n && d[i] == 0xFF)
            i++; /* fill bytes are allowed before a marker */
        if (i >= n) return;
        unsigned mk = d[i++];
        if (mk == 0xD8 || mk == 0x01 || (mk >= 0xD0 && mk <= 0xD7)) continue;
        if (mk == 0xD9 || n - i < 2) return;
        size_t seg = rd16(d + i, 0);
        if (seg < 2 || seg > n - i) return;
        if (mk == 0xDA) {
            m->sos = i + seg;
            return;
        }
        const unsigned char *p = d + i + 2;
        size_t pl = seg - 2;
        if (mk == 0xE1 && !exif_seen && pl >= 6 && memcmp(p, "Exif\0\0", 6) == 0) {
            exif_seen = 1; /* only the first Exif APP1 counts, as in every viewer */
            m->orientation = exif_orientation(p + 6, pl - 6);
        } else if (mk == 0xEE && pl >= 5 && memcmp(p, "Adobe", 5) == 0) {
            m->adobe = 1;
        }
        i += seg;
    }
}

/* libjpeg decodes a truncated file with only a warning and grey fill. An EOI marker cannot occur
 * inside entropy-coded data (0xFF is stuffed there), so "no FFD9 after the first SOS" means the
 * upload was cut. The common case, EOI as the last two bytes, costs nothing; data appended after
 * EOI (motion photos) falls back to a search. */
static int jpeg_has_eoi(const unsigned char *d, size_t n, size_t from)
{
    if (from < 2 || from > n) from = 2;
    if (n - from >= 2 && d[n - 2] == 0xFF && d[n - 1] == 0xD9) return 1;
    return memmem(d + from, n - from, "\xFF\xD9", 2) != NULL;
}

static int too_many_pixels(int w, int h)
{
    return w <= 0 || h <= 0 || (uint64_t)w * (uint64_t)h > KENG_THUMB_MAX_PIXELS;
}

static void fill_info(keng_thumb_info *info, enum kind k, int w, int h, int orientation)
{
    if (!info) return;
    int swap = orientation >= 5;
    info->width = swap ? h : w;
    info->height = swap ? w : h;
    info->mime = k == KIND_JPEG ? MIME_JPEG : MIME_PNG;
    info->orientation = orientation;
    info->thumb_width = 0;
    info->thumb_height = 0;
}

static int check_input(const unsigned char *data, size_t len, enum kind *k)
{
    if (!data && len) return -EINVAL;
    if (len > KENG_THUMB_MAX_BYTES) return -E2BIG;
    *k = data ? sniff(data, len) : KIND_NONE;
    return *k == KIND_NONE ? -EMEDIUMTYPE : 0;
}

/* Reads the JPEG header with an existing handle; w/h as stored (before orientation). */
static int jpeg_header(tjhandle tj, const unsigned char *d, size_t n, int *w, int *h, int *cs)
{
    int subsamp = -1;
    *w = *h = 0;
    *cs = -1;
    if (tjDecompressHeader3(tj, d, (unsigned long)n, w, h, &subsamp, cs) != 0) return -EBADMSG;
    /* 2.1.5 answers 0 without filling anything when the data ends before SOF. */
    if (*w <= 0 || *h <= 0 || subsamp < 0 || *cs < 0) return -EBADMSG;
    return too_many_pixels(*w, *h) ? -EFBIG : 0;
}

static int png_header(png_image *im, const unsigned char *d, size_t n)
{
    memset(im, 0, sizeof *im);
    im->version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(im, d, n)) {
        png_image_free(im);
        return -EBADMSG;
    }
    return too_many_pixels((int)(im->width > INT32_MAX ? 0 : im->width),
                           (int)(im->height > INT32_MAX ? 0 : im->height))
               ? -EFBIG
               : 0;
}

int keng_thumb_probe(const unsigned char *data, size_t len, keng_thumb_info *out)
{
    enum kind k;
    if (!out) return -EINVAL;
    memset(out, 0, sizeof *out);
    int rc = check_input(data, len, &k);
    if (rc) return rc;
    if (k == KIND_PNG) {
        png_image im;
        rc = png_header(&im, data, len);
        if (rc != -EBADMSG) {
            fill_info(out, k, (int)(im.width > INT32_MAX ? INT32_MAX : im.width),
                      (int)(im.height > INT32_MAX ? INT32_MAX : im.height), 1);
            png_image_free(&im);
        }
        return rc;
    }
    tjhandle tj = tjInitDecompress();
    if (!tj) return -ENOMEM;
    int w = 0, h = 0, cs = 0;
    rc = jpeg_header(tj, data, len, &w, &h, &cs);
    tjDestroy(tj);
    if (rc == -EBADMSG) return rc;
    jpeg_markers m;
    jpeg_walk(data, len, &m);
    fill_info(out, k, w, h, m.orientation);
    return rc;
}

/* The thumbnail's size in stored orientation: longest side max_side, aspect kept, never larger
 * than the original (an upscaled thumbnail only costs bytes). */
static void fit(int w, int h, int max_side, int *tw, int *th)
{
    int lng = w > h ? w : h;
    if (lng <= max_side) {
        *tw = w;
        *th = h;
    } else if (w >= h) {
        *tw = max_side;
        *th = (int)(((int64_t)h * max_side + w / 2) / w);
    } else {
        *th = max_side;
        *tw = (int)(((int64_t)w * max_side + h / 2) / h);
    }
    if (*tw < 1) *tw = 1;
    if (*th < 1) *th = 1;
}

/* The smallest DCT scaling factor whose output still covers tw x th, so the area filter after it
 * always shrinks (never enlarges) and has real pixels to average. */
static tjscalingfactor pick_scale(int w, int h, int tw, int th)
{
    tjscalingfactor best = {1, 1};
    int n = 0;
    tjscalingfactor *sf = tjGetScalingFactors(&n);
    for (int i = 0; sf && i < n; i++) {
        if (sf[i].num > sf[i].denom) continue;
        int sw = TJSCALED(w, sf[i]), sh = TJSCALED(h, sf[i]);
        if (sw >= tw && sh >= th && sw <= TJSCALED(w, best)) best = sf[i];
    }
    return best;
}

/* Photoshop writes Adobe-inverted CMYK (255 = no ink); without an Adobe marker assume plain ink
 * amounts. No colour management: a thumbnail needs recognisable colours, not proofing. */
static void cmyk_to_rgb(image *im, int inverted)
{
    size_t n = (size_t)im->w * (size_t)im->h;
    unsigned char *p = im->px;
    for (size_t i = 0; i < n; i++) {
        unsigned c = p[4 * i], m = p[4 * i + 1], y = p[4 * i + 2], k = p[4 * i + 3];
        if (!inverted) {
            c = 255 - c;
            m = 255 - m;
            y = 255 - y;
            k = 255 - k;
        }
        p[3 * i] = (unsigned char)((c * k + 127) / 255);
        p[3 * i + 1] = (unsigned char)((m * k + 127) / 255);
        p[3 * i + 2] = (unsigned char)((y * k + 127) / 255);
    }
    im->ch = 3;
}

/* libjpeg reports damaged entropy data (a bad Huffman code, a marker in the middle of a scan,
 * data that ends early) as a warning, fills the rest with grey and carries on; TurboJPEG then
 * keeps only the first warning's text, and tjGetErrorCode() says "warning" even when a fatal
 * error ("Unsupported marker type") followed it. So we decode with TJFLAG_STOPONWARNING: the first
 * warning of any kind ends the decode and the photo is refused (422), on every path alike
 * (DCT-scaled or not, baseline or progressive, grey, YCbCr, CMYK/YCCK).
 *
 * One warning is let through: padding just before the EOI marker (0xD9). Some camera firmwares
 * fill the end of the last scan with a run of one byte value (0x00 as a rule); libjpeg calls it
 * "N extraneous bytes before marker 0xd9" (libjpeg-turbo's 64-bit bit buffer reads up to 7 bytes
 * ahead and swallows a shorter pad silently). When that is the *first* warning, every MCU of every
 * scan was decoded without complaint and nothing but EOI follows, so the picture is whole and
 * refusing it would refuse a good phone photo. The same message also comes from damage, though:
 * a flipped byte can make the decoder slip by a whole MCU and finish early, leaving the last
 * MCU's real entropy data unread. Real data is not a run of one value, so we look at the skipped
 * bytes in the file and accept only a uniform pad (eoi_padding_only). Then we decode once more
 * without stopping (the same path up to EOI; nothing is read after it) and insist the message
 * is still that one. Extraneous bytes anywhere else are refused: before a restart marker or a
 * later scan they mean a scan ended early or late (damaged data), and in the headers
 * tjDecompressHeader3 already refuses them (see jpeg_header).
 *
 * What no JPEG decoder can see is a flipped bit that still forms valid Huffman codes: JPEG has no
 * checksum, so such a photo is accepted with a small garbled block, as by every viewer. */
static int eoi_padding_only(const unsigned char *d, size_t n, size_t sos, unsigned skipped)
{
    if (sos < 2 || sos > n) sos = 2;
    const unsigned char *e = memmem(d + sos, n - sos, "\xFF\xD9", 2);
    if (!e) return 0;
    size_t at = (size_t)(e - d);
    while (at > sos && d[at - 1] == 0xFF)
        at--; /* fill bytes before a marker are allowed and not counted */
    if (skipped == 0 || skipped > at - sos) return 0;
    for (size_t i = at - skipped; i < at; i++)
        if (d[i] != d[at - 1]) return 0;
    return 1;
}

static int jpeg_decompress_strict(tjhandle tj, const unsigned char *d, size_t n, size_t sos,
                                  image *out, int pf)
{
    unsigned long len = (unsigned long)n;
    int flags = TJFLAG_LIMITSCANS | TJFLAG_STOPONWARNING;
    if (tjDecompress2(tj, d, len, out->px, out->w, 0, out->h, pf, flags) == 0) return 0;
    const char *msg = tjGetErrorStr2(tj);
    unsigned skipped = 0, marker = 0;
    if (tjGetErrorCode(tj) != TJERR_WARNING || !msg ||
        sscanf(msg, "Corrupt JPEG data: %u extraneous bytes before marker 0x%x", &skipped,
               &marker) != 2 ||
        marker != 0xD9 || !eoi_padding_only(d, n, sos, skipped))
        return -EBADMSG;
    char first[JMSG_LENGTH_MAX_KENG];
    snprintf(first, sizeof first, "%s", msg);
    if (tjDecompress2(tj, d, len, out->px, out->w, 0, out->h, pf, TJFLAG_LIMITSCANS) == 0) return 0;
    msg = tjGetErrorStr2(tj); /* a fatal error after the warning replaces the text */
    return msg && strcmp(msg, first) == 0 ? 0 : -EBADMSG;
}

static int decode_jpeg(const unsigned char *d, size_t n, int max_side, image *out, int *ow, int *oh,
                       int *orientation, int *tw, int *th)
{
    jpeg_markers m;
    jpeg_walk(d, n, &m);
    *orientation = m.orientation;
    tjhandle tj = tjInitDecompress();
    if (!tj) return -ENOMEM;
    int w = 0, h = 0, cs = 0;
    int rc = jpeg_header(tj, d, n, &w, &h, &cs);
    *ow = w;
    *oh = h;
    if (rc) goto done;
    if (!jpeg_has_eoi(d, n, m.sos)) {
        rc = -EBADMSG;
        goto done;
    }
    fit(w, h, max_side, tw, th);

    tjscalingfactor sf = pick_scale(w, h, *tw, *th);
    int pf = TJPF_RGB;
    out->ch = 3;
    if (cs == TJCS_GRAY) {
        pf = TJPF_GRAY;
        out->ch = 1;
    } else if (cs == TJCS_CMYK || cs == TJCS_YCCK) {
        pf = TJPF_CMYK;
        out->ch = 4;
    }
    out->w = TJSCALED(w, sf);
    out->h = TJSCALED(h, sf);
    out->px = malloc((size_t)out->w * (size_t)out->h * (size_t)out->ch);
    if (!out->px) {
        rc = -ENOMEM;
        goto done;
    }
    rc = jpeg_decompress_strict(tj, d, n, m.sos, out, pf);
    if (rc == 0 && out->ch == 4) cmyk_to_rgb(out, m.adobe);
done:
    tjDestroy(tj);
    if (rc) {
        free(out->px);
        out->px = NULL;
    }
    return rc;
}

/* PNG's equivalent of a corrupt-data warning. libpng's simplified API fails on a bad critical
 * chunk, a zlib error or too little image data, but it only warns about (and drops) an ancillary
 * chunk whose CRC does not match, and it never looks for IEND, so a file cut right after its last
 * IDAT, or with bytes changed outside IDAT, would pass. Every chunk carries a CRC-32; a valid
 * encoder always writes it right, so one mismatch anywhere means the bytes were damaged on the way
 * and the photo is refused, as is a file that ends before IEND (bytes after IEND are ignored, as
 * after a JPEG's EOI). Content warnings from libpng about well-formed chunks (an odd iCCP or sRGB
 * profile, common in screenshots from some editors) are harmless and stay accepted. */
/* The CRC-32 table is built per call (2,048 steps, about a microsecond) rather than kept in a
 * global, so thumb stays free of state shared between threads. */
static void png_crc_init(uint32_t table[256])
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
}

static int png_chunks_intact(const unsigned char *d, size_t n)
{
    uint32_t table[256];
    png_crc_init(table);
    size_t at = 8; /* after the signature */
    while (n - at >= 12) {
        uint32_t len = rd32(d + at, 0);
        if (len > 0x7FFFFFFFu || len > n - at - 12) return -EBADMSG;
        uint32_t c = 0xFFFFFFFFu;
        for (const unsigned char *p = d + at + 4, *e = p + 4 + len; p < e; p++)
            c = table[(c ^ *p) & 0xFF] ^ (c >> 8);
        if ((c ^ 0xFFFFFFFFu) != rd32(d + at + 8 + len, 0)) return -EBADMSG;
        if (memcmp(d + at + 4, "IEND", 4) == 0) return 0;
        at += 12 + (size_t)len;
    }
    return -EBADMSG;
}

static int decode_png(const unsigned char *d, size_t n, int max_side, image *out, int *ow, int *oh,
                      int *tw, int *th)
{
    png_image im;
    int rc = png_header(&im, d, n);
    if (rc == -EBADMSG) return rc;
    *ow = (int)(im.width > INT32_MAX ? INT32_MAX : im.width);
    *oh = (int)(im.height > INT32_MAX ? INT32_MAX : im.height);
    if (rc) {
        png_image_free(&im);
        return rc;
    }
    rc = png_chunks_intact(d, n);
    if (rc) {
        png_image_free(&im);
        return rc;
    }
    int w = *ow, h = *oh;
    fit(w, h, max_side, tw, th);
    /* Screenshots are mostly colour; a grey PNG stays grey (smaller thumbnail, same look). */
    int grey = !(im.format & PNG_FORMAT_FLAG_COLOR);
    im.format = grey ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    out->w = w;
    out->h = h;
    out->ch = grey ? 1 : 3;
    out->px = malloc((size_t)w * (size_t)h * (size_t)out->ch);
    if (!out->px) {
        png_image_free(&im);
        return -ENOMEM;
    }
    /* Transparent parts of a screenshot are composed over white, as a phone shows them. */
    png_color white = {255, 255, 255};
    if (!png_image_finish_read(&im, &white, out->px, (png_int_32)(w * out->ch), NULL)) {
        free(out->px);
        out->px = NULL;
        rc = -EBADMSG;
    }
    png_image_free(&im);
    return rc;
}

/* Area averaging along one axis: output i covers [i*src/dst, (i+1)*src/dst) of the input and
 * each input pixel weighs by how much of it lies inside, in 1/16384ths summing to exactly 16384.
 * All in integers (units of 1/dst pixel), so the result does not depend on rounding of floats. */
typedef struct spans {
    int *start, *count;
    int32_t *w;
    int taps;
} spans;

#define WBITS 14

static int spans_make(spans *s, int src, int dst)
{
    s->taps = (src + dst - 1) / dst + 1;
    s->start = malloc(sizeof(int) * 2 * (size_t)dst);
    s->w = calloc((size_t)dst * (size_t)s->taps, sizeof(int32_t));
    if (!s->start || !s->w) {
        free(s->start);
        free(s->w);
        return -ENOMEM;
    }
    s->count = s->start + dst;
    for (int i = 0; i < dst; i++) {
        int64_t a = (int64_t)i * src, b = (int64_t)(i + 1) * src;
        int j0 = (int)(a / dst), j1 = (int)((b + dst - 1) / dst);
        if (j1 > src) j1 = src;
        int32_t *w = s->w + (size_t)i * (size_t)s->taps;
        int32_t sum = 0;
        int big = 0;
        for (int j = j0; j < j1; j++) {
            int64_t lo = (int64_t)j * dst, hi = lo + dst;
            if (lo < a) lo = a;
            if (hi > b) hi = b;
            int32_t wk = (int32_t)(((hi - lo) * (1 << WBITS) + src / 2) / src);
            w[j - j0] = wk;
            sum += wk;
            if (wk > w[big]) big = j - j0;
        }
        w[big] += (1 << WBITS) - sum;
        s->start[i] = j0;
        s->count[i] = j1 - j0;
    }
    return 0;
}

static void spans_free(spans *s)
{
    free(s->start);
    free(s->w);
}

static void resample_row(const unsigned char *row, const spans *sx, int tw, int ch, uint16_t *t)
{
    for (int x = 0; x < tw; x++) {
        const unsigned char *s = row + (size_t)sx->start[x] * (size_t)ch;
        const int32_t *w = sx->w + (size_t)x * (size_t)sx->taps;
        for (int c = 0; c < ch; c++) {
            uint32_t a = 0;
            for (int k = 0; k < sx->count[x]; k++)
                a += (uint32_t)s[k * ch + c] * (uint32_t)w[k];
            t[x * ch + c] = (uint16_t)((a + (1u << (WBITS - 9))) >> (WBITS - 8));
        }
    }
}

/* Horizontal then vertical, one output row at a time: the horizontally resampled rows live in a
 * ring of sy.taps rows (each source row is resampled once, as output windows only move down),
 * so the working memory is a few rows, not a second image. The intermediate keeps 8 extra bits
 * so the two roundings do not add up. */
static int resize_area(const image *in, image *out, int tw, int th)
{
    int ch = in->ch;
    spans sx, sy;
    if (spans_make(&sx, in->w, tw)) return -ENOMEM;
    if (spans_make(&sy, in->h, th)) {
        spans_free(&sx);
        return -ENOMEM;
    }
    size_t trow = (size_t)tw * (size_t)ch;
    uint16_t *ring = malloc(sizeof(uint16_t) * trow * (size_t)sy.taps);
    uint32_t *acc = malloc(sizeof(uint32_t) * trow);
    unsigned char *px = malloc(trow * (size_t)th);
    if (!ring || !acc || !px) {
        free(ring);
        free(acc);
        free(px);
        spans_free(&sx);
        spans_free(&sy);
        return -ENOMEM;
    }
    int have = -1; /* the last source row resampled into the ring */
    for (int y = 0; y < th; y++) {
        memset(acc, 0, sizeof(uint32_t) * trow);
        const int32_t *w = sy.w + (size_t)y * (size_t)sy.taps;
        for (int k = 0; k < sy.count[y]; k++) {
            int r = sy.start[y] + k;
            uint16_t *t = ring + (size_t)(r % sy.taps) * trow;
            if (r > have) {
                resample_row(in->px + (size_t)r * (size_t)in->w * (size_t)ch, &sx, tw, ch, t);
                have = r;
            }
            uint32_t wk = (uint32_t)w[k];
            for (size_t i = 0; i < trow; i++)
                acc[i] += t[i] * wk;
        }
        unsigned char *o = px + (size_t)y * trow;
        for (size_t i = 0; i < trow; i++) {
            uint32_t v = (acc[i] + (1u << (WBITS + 7))) >> (WBITS + 8);
            o[i] = (unsigned char)(v > 255 ? 255 : v);
        }
    }
    free(ring);
    free(acc);
    spans_free(&sx);
    spans_free(&sy);
    out->px = px;
    out->w = tw;
    out->h = th;
    out->ch = ch;
    return 0;
}

/* Turns the stored image upright. For each display pixel (x, y) of a dw x dh result, the stored
 * pixel (sx, sy) it shows, per the EXIF 2.3 definition of tag 0x0112. */
static int orient(const image *in, image *out, int o)
{
    int W = in->w, H = in->h, ch = in->ch;
    int swap = o >= 5;
    int dw = swap ? H : W, dh = swap ? W : H;
    unsigned char *px = malloc((size_t)dw * (size_t)dh * (size_t)ch);
    if (!px) return -ENOMEM;
    for (int y = 0; y < dh; y++) {
        for (int x = 0; x < dw; x++) {
            int sx, sy;
            switch (o) {
            case 2:
                sx = W - 1 - x;
                sy = y;
                break;
            case 3:
                sx = W - 1 - x;
                sy = H - 1 - y;
                break;
            case 4:
                sx = x;
                sy = H - 1 - y;
                break;
            case 5:
                sx = y;
                sy = x;
                break;
            case 6:
                sx = y;
                sy = H - 1 - x;
                break;
            case 7:
                sx = W - 1 - y;
                sy = H - 1 - x;
                break;
            case 8:
                sx = W - 1 - y;
                sy = x;
                break;
            default:
                sx = x;
                sy = y;
                break;
            }
            memcpy(px + ((size_t)y * (size_t)dw + (size_t)x) * (size_t)ch,
                   in->px + ((size_t)sy * (size_t)W + (size_t)sx) * (size_t)ch, (size_t)ch);
        }
    }
    out->px = px;
    out->w = dw;
    out->h = dh;
    out->ch = ch;
    return 0;
}

/* The output buffer is ours (malloc) and big enough (tjBufSize is the worst case), so the caller
 * can free() it and TurboJPEG never reallocates it with its own allocator. */
static int encode(const image *im, int quality, unsigned char **out, size_t *out_len)
{
    int grey = im->ch == 1;
    int ss = grey ? TJSAMP_GRAY : TJSAMP_420;
    unsigned long cap = tjBufSize(im->w, im->h, ss);
    if (cap == (unsigned long)-1) return -EIO;
    unsigned char *buf = malloc(cap);
    if (!buf) return -ENOMEM;
    tjhandle tj = tjInitCompress();
    if (!tj) {
        free(buf);
        return -ENOMEM;
    }
    unsigned long size = cap;
    int rc = tjCompress2(tj, im->px, im->w, 0, im->h, grey ? TJPF_GRAY : TJPF_RGB, &buf, &size, ss,
                         quality, TJFLAG_NOREALLOC);
    tjDestroy(tj);
    if (rc != 0) {
        free(buf);
        return -EIO;
    }
    unsigned char *small = realloc(buf, size); /* tjBufSize is generous; give the slack back */
    *out = small ? small : buf;
    *out_len = size;
    return 0;
}

int keng_thumb_make(const unsigned char *data, size_t len, int max_side, int quality,
                    unsigned char **out, size_t *out_len, keng_thumb_info *info)
{
    if (!out || !out_len) return -EINVAL;
    *out = NULL;
    *out_len = 0;
    if (info) memset(info, 0, sizeof *info);
    enum kind k;
    int rc = check_input(data, len, &k);
    if (rc) return rc;
    if (max_side <= 0) max_side = KENG_THUMB_DEFAULT_SIDE;
    if (max_side > KENG_THUMB_MAX_SIDE) max_side = KENG_THUMB_MAX_SIDE;
    if (quality <= 0) quality = KENG_THUMB_DEFAULT_QUALITY;
    if (quality > 100) quality = 100;

    image dec = {0}, small = {0}, up = {0};
    int w = 0, h = 0, o = 1, tw = 0, th = 0;
    if (k == KIND_JPEG)
        rc = decode_jpeg(data, len, max_side, &dec, &w, &h, &o, &tw, &th);
    else
        rc = decode_png(data, len, max_side, &dec, &w, &h, &tw, &th);
    if (w > 0 && h > 0) fill_info(info, k, w, h, o);
    if (rc) return rc;

    const image *cur = &dec;
    if (dec.w != tw || dec.h != th) {
        rc = resize_area(&dec, &small, tw, th);
        if (rc) goto done;
        cur = &small;
    }
    if (o != 1) {
        rc = orient(cur, &up, o);
        if (rc) goto done;
        cur = &up;
    }
    rc = encode(cur, quality, out, out_len);
    if (rc == 0 && info) {
        info->thumb_width = cur->w;
        info->thumb_height = cur->h;
    }
done:
    free(dec.px);
    free(small.px);
    free(up.px);
    return rc;
}

const char *keng_thumb_strerror(int rc)
{
    switch (rc) {
    case 0:
        return "ok";
    case -EINVAL:
        return "thumbnail: invalid argument (a bug in the caller)";
    case -E2BIG:
        return "the photo is larger than 25 MB; send a smaller or more compressed photo";
    case -EMEDIUMTYPE:
        return "the file is not a JPEG or PNG image; send a photo as JPEG or PNG";
    case -EBADMSG:
        return "the image is damaged or incomplete and cannot be decoded; send the photo again";
    case -EFBIG:
        return "the image has more than 50 megapixels; send a smaller photo";
    case -ENOMEM:
        return "out of memory while making the thumbnail; try again later";
    case -EIO:
        return "the thumbnail could not be encoded; try again later";
    default:
        return "thumbnail: unexpected error";
    }
}
