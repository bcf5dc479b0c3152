/* Tests for thumb: every input is made here at run time with TurboJPEG and libpng, so the
 * fixtures cannot drift from what the code under test sees. */
#include "test.h"

#include "keng/thumb.h"

#include <errno.h>
#include <png.h>
#include <pthread.h>
#include <stdint.h>
#include <turbojpeg.h>

/* ---- helpers ---------------------------------------------------------------------------- */

typedef struct bytes {
    unsigned char *p;
    size_t n;
} bytes;

static const unsigned char RED[3] = {255, 0, 0}, GREEN[3] = {0, 255, 0}, BLUE[3] = {0, 0, 255},
                           WHITE[3] = {255, 255, 255};

/* Quadrants: TL red, TR green, BL blue, BR white, so every orientation is distinguishable. */
static unsigned char *quadrants(int w, int h)
{
    unsigned char *px = malloc((size_t)w * h * 3);
    ASSERT_NOT_NULL(px);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const unsigned char *c =
                y < h / 2 ? (x < w / 2 ? RED : GREEN) : (x < w / 2 ? BLUE : WHITE);
            memcpy(px + ((size_t)y * w + x) * 3, c, 3);
        }
    return px;
}

/* Gradient plus a little deterministic noise: something a JPEG encoder has to work for. */
static unsigned char *photo(int w, int h)
{
    unsigned char *px = malloc((size_t)w * h * 3);
    ASSERT_NOT_NULL(px);
    uint32_t s = 12345;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            s ^= s << 13, s ^= s >> 17, s ^= s << 5;
            int n = (int)(s & 15) - 8;
            unsigned char *p = px + ((size_t)y * w + x) * 3;
            int v[3] = {x * 255 / w + n, y * 255 / h + n, (x + y) * 127 / (w + h) + 64 + n};
            for (int c = 0; c < 3; c++)
                p[c] = (unsigned char)(v[c] < 0 ? 0 : v[c] > 255 ? 255 : v[c]);
        }
    return px;
}

static bytes jpeg_encode(const unsigned char *px, int w, int h, int pf, int ss, int q, int flags)
{
    tjhandle tj = tjInitCompress();
    ASSERT_NOT_NULL(tj);
    unsigned char *buf = NULL;
    unsigned long len = 0;
    if (tjCompress2(tj, px, w, 0, h, pf, &buf, &len, ss, q, flags) != 0)
        TEST_FAIL("tjCompress2: %s", tjGetErrorStr2(tj));
    tjDestroy(tj);
    bytes b = {malloc(len), len};
    ASSERT_NOT_NULL(b.p);
    memcpy(b.p, buf, len);
    tjFree(buf);
    return b;
}

static bytes rgb_jpeg(const unsigned char *px, int w, int h)
{
    return jpeg_encode(px, w, h, TJPF_RGB, TJSAMP_444, 95, 0);
}

/* A decoded thumbnail, for looking at its pixels. */
typedef struct decoded {
    int w, h, cs;
    unsigned char *px; /* RGB */
} decoded;

static decoded decode(const unsigned char *p, size_t n)
{
    decoded d = {0};
    int ss;
    tjhandle tj = tjInitDecompress();
    ASSERT_NOT_NULL(tj);
    ASSERT_EQ(tjDecompressHeader3(tj, p, n, &d.w, &d.h, &ss, &d.cs), 0);
    d.px = malloc((size_t)d.w * d.h * 3);
    ASSERT_NOT_NULL(d.px);
    ASSERT_EQ(tjDecompress2(tj, p, n, d.px, d.w, 0, d.h, TJPF_RGB, 0), 0);
    tjDestroy(tj);
    return d;
}

static void assert_near(const decoded *d, int x, int y, const unsigned char *want, int tol,
                        const char *what)
{
    const unsigned char *p = d->px + ((size_t)y * d->w + x) * 3;
    for (int c = 0; c < 3; c++)
        if (abs((int)p[c] - (int)want[c]) > tol)
            TEST_FAIL("%s: pixel (%d,%d) is %d,%d,%d, want %d,%d,%d", what, x, y, p[0], p[1], p[2],
                      want[0], want[1], want[2]);
}

/* Inserts an APP1 Exif segment right after SOI: Make "SECRETCAM", Orientation, and a GPS IFD
 * with GPSLatitudeRef "N", in either byte order. */
static void put16(unsigned char *t, int o, unsigned v, int little)
{
    t[o] = (unsigned char)(little ? v : v >> 8);
    t[o + 1] = (unsigned char)(little ? v >> 8 : v);
}

static void put32(unsigned char *t, int o, uint32_t v, int little)
{
    put16(t, o + (little ? 0 : 2), v & 0xffff, little);
    put16(t, o + (little ? 2 : 0), v >> 16, little);
}

static bytes with_exif(bytes j, int orientation, int little)
{
    unsigned char t[78] = {0};
    t[0] = t[1] = little ? 'I' : 'M';
    put16(t, 2, 42, little);
    put32(t, 4, 8, little);
    put16(t, 8, 3, little);       /* IFD0: 3 entries */
    put16(t, 10, 0x010F, little); /* Make, ASCII[10] at 50 */
    put16(t, 12, 2, little);
    put32(t, 14, 10, little);
    put32(t, 18, 50, little);
    put16(t, 22, 0x0112, little); /* Orientation, SHORT[1] */
    put16(t, 24, 3, little);
    put32(t, 26, 1, little);
    put16(t, 30, (unsigned)orientation, little);
    put16(t, 34, 0x8825, little); /* GPS IFD pointer, LONG[1] -> 60 */
    put16(t, 36, 4, little);
    put32(t, 38, 1, little);
    put32(t, 42, 60, little);
    put32(t, 46, 0, little);
    memcpy(t + 50, "SECRETCAM", 10);
    put16(t, 60, 1, little); /* GPS IFD: GPSLatitudeRef "N" */
    put16(t, 62, 0x0001, little);
    put16(t, 64, 2, little);
    put32(t, 66, 2, little);
    t[70] = 'N';
    put32(t, 74, 0, little);
    size_t seg = 2 + 6 + sizeof t;
    bytes b = {malloc(j.n + 2 + seg), j.n + 2 + seg};
    ASSERT_NOT_NULL(b.p);
    unsigned char *p = b.p;
    memcpy(p, j.p, 2);
    p += 2;
    *p++ = 0xFF, *p++ = 0xE1, *p++ = (unsigned char)(seg >> 8), *p++ = (unsigned char)seg;
    memcpy(p, "Exif\0\0", 6);
    p += 6;
    memcpy(p, t, sizeof t);
    p += sizeof t;
    memcpy(p, j.p + 2, j.n - 2);
    return b;
}

static bytes png_encode(const unsigned char *px, int w, int h, png_uint_32 format)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = (png_uint_32)w;
    im.height = (png_uint_32)h;
    im.format = format;
    png_alloc_size_t n = 0;
    ASSERT(png_image_write_to_memory(&im, NULL, &n, 0, px, 0, NULL));
    bytes b = {malloc(n), 0};
    ASSERT_NOT_NULL(b.p);
    ASSERT(png_image_write_to_memory(&im, b.p, &n, 0, px, 0, NULL));
    b.n = n;
    return b;
}

static int make(bytes in, int side, unsigned char **out, size_t *out_len, keng_thumb_info *info)
{
    return keng_thumb_make(in.p, in.n, side, 80, out, out_len, info);
}

/* ---- sizes ------------------------------------------------------------------------------ */

static void check_size(int w, int h, int side, int want_w, int want_h)
{
    unsigned char *px = photo(w, h);
    bytes j = rgb_jpeg(px, w, h);
    unsigned char *out;
    size_t n;
    keng_thumb_info info;
    ASSERT_EQ(make(j, side, &out, &n, &info), 0);
    ASSERT_EQ(info.width, w);
    ASSERT_EQ(info.height, h);
    ASSERT_EQ(info.thumb_width, want_w);
    ASSERT_EQ(info.thumb_height, want_h);
    ASSERT_STR_EQ(info.mime, "image/jpeg");
    ASSERT_EQ(info.orientation, 1);
    decoded d = decode(out, n);
    ASSERT_EQ(d.w, want_w);
    ASSERT_EQ(d.h, want_h);
    ASSERT_EQ(d.cs, TJCS_YCbCr);
    free(d.px);
    free(out);
    free(j.p);
    free(px);
}

TEST(thumb_landscape)
{
    check_size(1000, 600, 0, 320, 192);
}
TEST(thumb_portrait)
{
    check_size(600, 1000, 320, 192, 320);
}
TEST(thumb_small_not_upscaled)
{
    check_size(200, 100, 320, 200, 100);
}
TEST(thumb_custom_side)
{
    check_size(1000, 1000, 100, 100, 100);
}
TEST(thumb_extreme_aspect)
{
    check_size(4000, 10, 320, 320, 1);
}
TEST(thumb_12mp)
{
    check_size(4000, 3000, 320, 320, 240);
}

TEST(thumb_is_4_2_0_at_requested_quality)
{
    unsigned char *px = photo(800, 600);
    bytes j = rgb_jpeg(px, 800, 600);
    unsigned char *lo, *hi;
    size_t nlo, nhi;
    ASSERT_EQ(keng_thumb_make(j.p, j.n, 320, 30, &lo, &nlo, NULL), 0);
    ASSERT_EQ(keng_thumb_make(j.p, j.n, 320, 95, &hi, &nhi, NULL), 0);
    ASSERT_LT(nlo, nhi);
    int w, h, ss, cs;
    tjhandle tj = tjInitDecompress();
    ASSERT_EQ(tjDecompressHeader3(tj, hi, nhi, &w, &h, &ss, &cs), 0);
    ASSERT_EQ(ss, TJSAMP_420);
    tjDestroy(tj);
    free(lo);
    free(hi);
    free(j.p);
    free(px);
}

/* Nearest neighbour would turn a 1-pixel checkerboard into solid black or white; an area filter
 * gives the mean grey. PNG input so the pattern arrives exactly. */
TEST(thumb_filter_averages)
{
    int w = 640, h = 480; /* 2:1 exactly (pure grey), then a non-integer ratio */
    unsigned char *px = malloc((size_t)w * h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            px[(size_t)y * w + x] = (x + y) % 2 ? 255 : 0;
    bytes p = png_encode(px, w, h, PNG_FORMAT_GRAY);
    int sides[2] = {320, 277}, tol[2] = {6, 30};
    for (int i = 0; i < 2; i++) {
        unsigned char *out;
        size_t n;
        ASSERT_EQ(keng_thumb_make(p.p, p.n, sides[i], 90, &out, &n, NULL), 0);
        decoded d = decode(out, n);
        ASSERT_EQ(d.cs, TJCS_GRAY);
        ASSERT_EQ(d.w, sides[i]);
        for (int y = 0; y < d.h; y += 7)
            for (int x = 0; x < d.w; x += 5) {
                int v = d.px[((size_t)y * d.w + x) * 3];
                if (abs(v - 128) > tol[i]) TEST_FAIL("side %d: (%d,%d) = %d", sides[i], x, y, v);
            }
        free(d.px);
        free(out);
    }
    free(p.p);
    free(px);
}

/* ---- orientation ------------------------------------------------------------------------ */

/* Which stored corner each EXIF orientation shows at the display's top-left, top-right and
 * bottom-left (EXIF 2.3, tag 0x0112: "0th row is visual top/bottom/left/right, 0th column..."). */
static const unsigned char *const expect_tl[9] = {NULL, RED,  GREEN, WHITE, BLUE,
                                                  RED,  BLUE, WHITE, GREEN};
static const unsigned char *const expect_tr[9] = {NULL, GREEN, RED,   BLUE, WHITE,
                                                  BLUE, RED,   GREEN, WHITE};
static const unsigned char *const expect_bl[9] = {NULL,  BLUE,  WHITE, GREEN, RED,
                                                  GREEN, WHITE, BLUE,  RED};

static void check_orientation(int o, int little)
{
    int w = 240, h = 160;
    unsigned char *px = quadrants(w, h);
    bytes j = rgb_jpeg(px, w, h);
    bytes e = with_exif(j, o, little);
    keng_thumb_info pi;
    ASSERT_EQ(keng_thumb_probe(e.p, e.n, &pi), 0);
    ASSERT_EQ(pi.orientation, o);
    unsigned char *out;
    size_t n;
    keng_thumb_info info;
    ASSERT_EQ(make(e, 120, &out, &n, &info), 0);
    ASSERT_EQ(info.orientation, o);
    int swap = o >= 5;
    ASSERT_EQ(info.width, swap ? h : w);
    ASSERT_EQ(info.height, swap ? w : h);
    ASSERT_EQ(pi.width, info.width);
    ASSERT_EQ(pi.height, info.height);
    decoded d = decode(out, n);
    ASSERT_EQ(d.w, swap ? 80 : 120);
    ASSERT_EQ(d.h, swap ? 120 : 80);
    char what[64];
    snprintf(what, sizeof what, "orientation %d %s top-left", o, little ? "II" : "MM");
    assert_near(&d, 4, 4, expect_tl[o], 40, what);
    snprintf(what, sizeof what, "orientation %d %s top-right", o, little ? "II" : "MM");
    assert_near(&d, d.w - 5, 4, expect_tr[o], 40, what);
    snprintf(what, sizeof what, "orientation %d %s bottom-left", o, little ? "II" : "MM");
    assert_near(&d, 4, d.h - 5, expect_bl[o], 40, what);
    free(d.px);
    free(out);
    free(e.p);
    free(j.p);
    free(px);
}

TEST(thumb_orientation_all_8_both_byte_orders)
{
    for (int o = 1; o <= 8; o++) {
        check_orientation(o, 1);
        check_orientation(o, 0);
    }
}

TEST(thumb_orientation_out_of_range_is_upright)
{
    unsigned char *px = quadrants(64, 32);
    bytes j = rgb_jpeg(px, 64, 32);
    int bad[3] = {0, 9, 0xFFFF};
    for (int i = 0; i < 3; i++) {
        bytes e = with_exif(j, bad[i], 1);
        keng_thumb_info info;
        ASSERT_EQ(keng_thumb_probe(e.p, e.n, &info), 0);
        ASSERT_EQ(info.orientation, 1);
        ASSERT_EQ(info.width, 64);
        free(e.p);
    }
    free(j.p);
    free(px);
}

/* Every byte of the Exif segment (APP1 length included) replaced by a few hostile values, and the
 * segment cut at every length: no crash (ASan watches the reads), orientation always 1..8. */
TEST(thumb_malformed_exif_never_crashes)
{
    unsigned char *px = quadrants(32, 32);
    bytes j = rgb_jpeg(px, 32, 32);
    bytes e = with_exif(j, 6, 0);
    const unsigned char vals[4] = {0x00, 0xFF, 0x7F, 0x12};
    size_t seg_end = 2 + 2 + 2 + 6 + 78;
    for (size_t i = 2; i < seg_end; i++)
        for (int v = 0; v < 4; v++) {
            unsigned char keep = e.p[i];
            e.p[i] = vals[v];
            keng_thumb_info info;
            int rc = keng_thumb_probe(e.p, e.n, &info);
            if (rc != 0 && rc != -EBADMSG && !(i == 2 && rc == -EMEDIUMTYPE))
                TEST_FAIL("byte %zu = %d: rc %d", i, vals[v], rc);
            if (rc == 0) ASSERT(info.orientation >= 1 && info.orientation <= 8);
            e.p[i] = keep;
        }
    for (size_t cut = 0; cut < seg_end; cut++) {
        keng_thumb_info info;
        int rc = keng_thumb_probe(e.p, cut, &info);
        ASSERT(rc == -EBADMSG || rc == -EMEDIUMTYPE);
        unsigned char *out;
        size_t n;
        rc = keng_thumb_make(e.p, cut, 0, 0, &out, &n, NULL);
        ASSERT(rc == -EBADMSG || rc == -EMEDIUMTYPE);
        ASSERT_NULL(out);
        ASSERT_EQ(n, 0);
    }
    /* A whole file whose Exif points its IFD0 far outside the segment still makes a thumb. */
    memset(e.p + 2 + 2 + 2 + 6 + 4, 0xFF, 4);
    unsigned char *out;
    size_t n;
    keng_thumb_info info;
    ASSERT_EQ(keng_thumb_make(e.p, e.n, 0, 0, &out, &n, &info), 0);
    ASSERT_EQ(info.orientation, 1);
    free(out);
    free(e.p);
    free(j.p);
    free(px);
}

/* ---- privacy ---------------------------------------------------------------------------- */

static int has(const unsigned char *p, size_t n, const char *s)
{
    return memmem(p, n, s, strlen(s)) != NULL;
}

TEST(thumb_output_carries_no_metadata)
{
    unsigned char *px = photo(640, 480);
    bytes j = rgb_jpeg(px, 640, 480);
    bytes e = with_exif(j, 1, 1);
    ASSERT(has(e.p, e.n, "Exif"));
    ASSERT(has(e.p, e.n, "SECRETCAM"));
    unsigned char *out;
    size_t n;
    ASSERT_EQ(make(e, 320, &out, &n, NULL), 0);
    ASSERT(!has(out, n, "Exif"));
    ASSERT(!has(out, n, "SECRETCAM"));
    /* Walk the output's headers: JFIF's APP0 is the only application segment, no comment. */
    size_t i = 2;
    ASSERT(out[0] == 0xFF && out[1] == 0xD8);
    for (;;) {
        ASSERT_LT(i + 4, n);
        ASSERT_EQ(out[i], 0xFF);
        unsigned m = out[i + 1];
        if (m == 0xDA) break;
        ASSERT(m == 0xE0 || m < 0xE0 || m > 0xEF);
        ASSERT_NE(m, 0xFE);
        i += 2 + ((size_t)out[i + 2] << 8 | out[i + 3]);
    }
    free(out);
    free(e.p);
    free(j.p);
    free(px);
}

/* ---- colour models and encodings -------------------------------------------------------- */

TEST(thumb_greyscale_jpeg)
{
    int w = 640, h = 480;
    unsigned char *g = malloc((size_t)w * h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            g[(size_t)y * w + x] = x < w / 2 ? 30 : 220;
    bytes j = jpeg_encode(g, w, h, TJPF_GRAY, TJSAMP_GRAY, 90, 0);
    unsigned char *out;
    size_t n;
    ASSERT_EQ(make(j, 320, &out, &n, NULL), 0);
    decoded d = decode(out, n);
    ASSERT_EQ(d.cs, TJCS_GRAY);
    ASSERT_EQ(d.w, 320);
    ASSERT_EQ(d.h, 240);
    const unsigned char dark[3] = {30, 30, 30}, light[3] = {220, 220, 220};
    assert_near(&d, 10, 120, dark, 8, "grey left");
    assert_near(&d, 310, 120, light, 8, "grey right");
    free(d.px);
    free(out);
    free(j.p);
    free(g);
}

/* Photoshop's convention, which real CMYK JPEGs follow: an Adobe APP14 marker (TurboJPEG writes
 * one for YCCK) and inverted values, 255 meaning no ink. Left red, right blue. */
TEST(thumb_cmyk_jpeg)
{
    int w = 400, h = 200;
    unsigned char *px = malloc((size_t)w * h * 4);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            unsigned char *p = px + ((size_t)y * w + x) * 4;
            /* ink: red = M+Y, blue = C+M; stored inverted */
            unsigned char c = x < w / 2 ? 0 : 255, m = 255, yy = x < w / 2 ? 255 : 0, k = 0;
            p[0] = (unsigned char)(255 - c), p[1] = (unsigned char)(255 - m);
            p[2] = (unsigned char)(255 - yy), p[3] = (unsigned char)(255 - k);
        }
    bytes j = jpeg_encode(px, w, h, TJPF_CMYK, TJSAMP_444, 95, 0);
    int jw, jh, ss, cs;
    tjhandle tj = tjInitDecompress();
    ASSERT_EQ(tjDecompressHeader3(tj, j.p, j.n, &jw, &jh, &ss, &cs), 0);
    ASSERT_EQ(cs, TJCS_YCCK);
    tjDestroy(tj);
    unsigned char *out;
    size_t n;
    keng_thumb_info info;
    ASSERT_EQ(make(j, 200, &out, &n, &info), 0);
    decoded d = decode(out, n);
    ASSERT_EQ(d.cs, TJCS_YCbCr);
    ASSERT_EQ(d.w, 200);
    ASSERT_EQ(d.h, 100);
    assert_near(&d, 20, 50, RED, 40, "cmyk red");
    assert_near(&d, 180, 50, BLUE, 40, "cmyk blue");
    free(d.px);
    free(out);
    free(j.p);
    free(px);
}

TEST(thumb_progressive_jpeg)
{
    unsigned char *px = quadrants(1200, 800);
    bytes j = jpeg_encode(px, 1200, 800, TJPF_RGB, TJSAMP_420, 90, TJFLAG_PROGRESSIVE);
    ASSERT(has(j.p, j.n, "\xFF\xC2")); /* SOF2: it really is progressive */
    unsigned char *out;
    size_t n;
    ASSERT_EQ(make(j, 320, &out, &n, NULL), 0);
    decoded d = decode(out, n);
    ASSERT_EQ(d.w, 320);
    ASSERT_EQ(d.h, 213);
    assert_near(&d, 10, 10, RED, 40, "progressive TL");
    assert_near(&d, 310, 203, WHITE, 40, "progressive BR");
    free(d.px);
    free(out);
    free(j.p);
    free(px);
}

/* ---- PNG -------------------------------------------------------------------------------- */

TEST(thumb_png_rgb)
{
    unsigned char *px = quadrants(800, 400);
    bytes p = png_encode(px, 800, 400, PNG_FORMAT_RGB);
    keng_thumb_info info;
    ASSERT_EQ(keng_thumb_probe(p.p, p.n, &info), 0);
    ASSERT_STR_EQ(info.mime, "image/png");
    ASSERT_EQ(info.width, 800);
    ASSERT_EQ(info.height, 400);
    unsigned char *out;
    size_t n;
    ASSERT_EQ(make(p, 320, &out, &n, &info), 0);
    ASSERT_STR_EQ(info.mime, "image/png");
    ASSERT(out[0] == 0xFF && out[1] == 0xD8); /* the thumbnail is a JPEG whatever came in */
    decoded d = decode(out, n);
    ASSERT_EQ(d.w, 320);
    ASSERT_EQ(d.h, 160);
    assert_near(&d, 5, 5, RED, 40, "png TL");
    assert_near(&d, 314, 5, GREEN, 40, "png TR");
    assert_near(&d, 5, 154, BLUE, 40, "png BL");
    free(d.px);
    free(out);
    free(p.p);
    free(px);
}

TEST(thumb_png_alpha_over_white)
{
    int w = 100, h = 50;
    unsigned char *px = calloc((size_t)w * h, 4); /* fully transparent black */
    bytes p = png_encode(px, w, h, PNG_FORMAT_RGBA);
    unsigned char *out;
    size_t n;
    ASSERT_EQ(make(p, 320, &out, &n, NULL), 0);
    decoded d = decode(out, n);
    ASSERT_EQ(d.w, 100);
    assert_near(&d, 50, 25, WHITE, 6, "transparent");
    free(d.px);
    free(out);
    free(p.p);
    free(px);
}

TEST(thumb_png_truncated_and_corrupt)
{
    unsigned char *px = photo(300, 200);
    bytes p = png_encode(px, 300, 200, PNG_FORMAT_RGB);
    size_t cuts[4] = {8, 20, p.n / 2, p.n - 20};
    for (int i = 0; i < 4; i++) {
        unsigned char *out = (unsigned char *)1;
        size_t n = 1;
        int rc = keng_thumb_make(p.p, cuts[i], 0, 0, &out, &n, NULL);
        if (rc != -EBADMSG) TEST_FAIL("cut at %zu of %zu: %d", cuts[i], p.n, rc);
        ASSERT_NULL(out);
    }
    p.p[p.n / 2] ^= 0x55; /* inside IDAT: the CRC no longer matches */
    unsigned char *out;
    size_t n;
    ASSERT_EQ(keng_thumb_make(p.p, p.n, 0, 0, &out, &n, NULL), -EBADMSG);
    free(p.p);
    free(px);
}

/* ---- hostile and broken input ----------------------------------------------------------- */

TEST(thumb_zero_bytes_and_garbage)
{
    unsigned char *out = (unsigned char *)1;
    size_t n = 1;
    keng_thumb_info info;
    ASSERT_EQ(keng_thumb_make(NULL, 0, 0, 0, &out, &n, NULL), -EMEDIUMTYPE);
    ASSERT_NULL(out);
    ASSERT_EQ(n, 0);
    ASSERT_EQ(keng_thumb_make((const unsigned char *)"", 0, 0, 0, &out, &n, NULL), -EMEDIUMTYPE);
    ASSERT_EQ(keng_thumb_probe((const unsigned char *)"", 0, &info), -EMEDIUMTYPE);
    const char *texts[] = {"GIF89a\x01\x00\x01\x00", "<html><body>hi</body></html>", "\xFF\xD8",
                           "\x89PNG\r\n\x1a"};
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(keng_thumb_make((const unsigned char *)texts[i], strlen(texts[i]) + (i >= 2), 0,
                                  0, &out, &n, NULL),
                  -EMEDIUMTYPE);
    unsigned char junk[4096];
    uint32_t s = 99;
    for (size_t i = 0; i < sizeof junk; i++) {
        s ^= s << 13, s ^= s >> 17, s ^= s << 5;
        junk[i] = (unsigned char)s;
    }
    junk[0] = 0x42;
    ASSERT_EQ(keng_thumb_make(junk, sizeof junk, 0, 0, &out, &n, NULL), -EMEDIUMTYPE);
    /* The right magic, then noise: a JPEG or PNG that is broken, not a wrong type. */
    junk[0] = 0xFF, junk[1] = 0xD8, junk[2] = 0xFF;
    ASSERT_EQ(keng_thumb_make(junk, sizeof junk, 0, 0, &out, &n, NULL), -EBADMSG);
    memcpy(junk, "\x89PNG\r\n\x1a\n", 8);
    ASSERT_EQ(keng_thumb_make(junk, sizeof junk, 0, 0, &out, &n, NULL), -EBADMSG);
    ASSERT_EQ(keng_thumb_probe(junk, sizeof junk, &info), -EBADMSG);
    ASSERT_EQ(keng_thumb_make(junk, sizeof junk, 0, 0, NULL, &n, NULL), -EINVAL);
}

TEST(thumb_truncated_jpeg)
{
    unsigned char *px = photo(800, 600);
    bytes js[2] = {rgb_jpeg(px, 800, 600),
                   jpeg_encode(px, 800, 600, TJPF_RGB, TJSAMP_420, 90, TJFLAG_PROGRESSIVE)};
    for (int k = 0; k < 2; k++) {
        bytes j = js[k];
        size_t cuts[6] = {3, 100, j.n / 3, j.n / 2, j.n - 2, j.n - 1};
        for (int i = 0; i < 6; i++) {
            unsigned char *out;
            size_t n;
            int rc = keng_thumb_make(j.p, cuts[i], 0, 0, &out, &n, NULL);
            if (rc != -EBADMSG) TEST_FAIL("%d: cut at %zu of %zu: rc %d", k, cuts[i], j.n, rc);
            ASSERT_NULL(out);
        }
        /* Entropy data flipped in the middle: either a whole (garbled) picture or an error,
         * never a crash. */
        j.p[j.n / 2] ^= 0xA5;
        unsigned char *out;
        size_t n;
        int rc = keng_thumb_make(j.p, j.n, 0, 0, &out, &n, NULL);
        ASSERT(rc == 0 || rc == -EBADMSG);
        if (rc == 0) free(out);
        free(j.p);
    }
    free(px);
}

/* Trailing bytes after EOI (motion photos append a video) are not truncation. */
TEST(thumb_data_after_eoi_is_fine)
{
    unsigned char *px = photo(400, 300);
    bytes j = rgb_jpeg(px, 400, 300);
    bytes t = {malloc(j.n + 1000), j.n + 1000};
    memcpy(t.p, j.p, j.n);
    memset(t.p + j.n, 0x42, 1000);
    unsigned char *out;
    size_t n;
    ASSERT_EQ(make(t, 320, &out, &n, NULL), 0);
    free(out);
    free(t.p);
    free(j.p);
    free(px);
}

static void set_sof_size(bytes j, int w, int h)
{
    for (size_t i = 2; i + 9 < j.n; i++)
        if (j.p[i] == 0xFF && (j.p[i + 1] == 0xC0 || j.p[i + 1] == 0xC2)) {
            j.p[i + 5] = (unsigned char)(h >> 8), j.p[i + 6] = (unsigned char)h;
            j.p[i + 7] = (unsigned char)(w >> 8), j.p[i + 8] = (unsigned char)w;
            return;
        }
    TEST_FAIL("no SOF");
}

static uint32_t crc32_png(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

TEST_TIMEOUT(thumb_decompression_bomb, 10)
{
    unsigned char *px = photo(16, 16);
    bytes j = rgb_jpeg(px, 16, 16);
    set_sof_size(j, 65000, 65000);
    unsigned char *out;
    size_t n;
    keng_thumb_info info;
    ASSERT_EQ(keng_thumb_probe(j.p, j.n, &info), -EFBIG);
    ASSERT_EQ(info.width, 65000);
    ASSERT_EQ(keng_thumb_make(j.p, j.n, 0, 0, &out, &n, &info), -EFBIG);
    ASSERT_NULL(out);
    ASSERT_EQ(info.height, 65000);
    set_sof_size(j, 7072, 7072); /* 50,013,184: just over */
    ASSERT_EQ(keng_thumb_make(j.p, j.n, 0, 0, &out, &n, NULL), -EFBIG);
    free(j.p);

    bytes p = png_encode(px, 16, 16, PNG_FORMAT_RGB);
    /* IHDR data at 16..24, its CRC at 29: make it say 60000 x 60000 with a valid CRC. */
    ASSERT_EQ(memcmp(p.p + 12, "IHDR", 4), 0);
    unsigned char big[4] = {0, 0, 0xEA, 0x60};
    memcpy(p.p + 16, big, 4);
    memcpy(p.p + 20, big, 4);
    uint32_t crc = crc32_png(p.p + 12, 17);
    p.p[29] = (unsigned char)(crc >> 24), p.p[30] = (unsigned char)(crc >> 16);
    p.p[31] = (unsigned char)(crc >> 8), p.p[32] = (unsigned char)crc;
    ASSERT_EQ(keng_thumb_probe(p.p, p.n, &info), -EFBIG);
    ASSERT_EQ(info.width, 60000);
    ASSERT_EQ(keng_thumb_make(p.p, p.n, 0, 0, &out, &n, NULL), -EFBIG);
    free(p.p);
    free(px);
}

TEST(thumb_input_over_25mb)
{
    size_t len = KENG_THUMB_MAX_BYTES + 1;
    unsigned char *big = calloc(len, 1);
    ASSERT_NOT_NULL(big);
    big[0] = 0xFF, big[1] = 0xD8, big[2] = 0xFF;
    unsigned char *out;
    size_t n;
    ASSERT_EQ(keng_thumb_make(big, len, 0, 0, &out, &n, NULL), -E2BIG);
    free(big);
}

TEST(thumb_strerror)
{
    int codes[] = {-EMEDIUMTYPE, -EBADMSG, -EFBIG, -E2BIG, -ENOMEM, -EINVAL, -EIO};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *s = keng_thumb_strerror(codes[i]);
        ASSERT_NOT_NULL(s);
        ASSERT_GT(strlen(s), 10);
    }
    ASSERT_STR_CONTAINS(keng_thumb_strerror(-EMEDIUMTYPE), "JPEG or PNG");
    ASSERT_STR_CONTAINS(keng_thumb_strerror(-12345), "unexpected");
}

/* ---- damaged data: corrupt or truncated -> 422, never a half-grey thumbnail ------------- */

static uint32_t xorshift(uint32_t *s)
{
    *s ^= *s << 13, *s ^= *s >> 17, *s ^= *s << 5;
    return *s;
}

/* A phone-sized photo in each colour model and coding the decoder has a path for. */
enum { SRC_BASELINE, SRC_PROGRESSIVE, SRC_GREY, SRC_CMYK, SRC_COUNT };
static const char *const src_name[SRC_COUNT] = {"baseline", "progressive", "greyscale", "cmyk"};

static bytes damage_source(int kind, int w, int h)
{
    unsigned char *px = photo(w, h);
    bytes j;
    if (kind == SRC_BASELINE) {
        j = jpeg_encode(px, w, h, TJPF_RGB, TJSAMP_420, 90, 0);
    } else if (kind == SRC_PROGRESSIVE) {
        j = jpeg_encode(px, w, h, TJPF_RGB, TJSAMP_420, 90, TJFLAG_PROGRESSIVE);
    } else if (kind == SRC_GREY) {
        unsigned char *g = malloc((size_t)w * h);
        ASSERT_NOT_NULL(g);
        for (size_t i = 0; i < (size_t)w * h; i++)
            g[i] = px[3 * i];
        j = jpeg_encode(g, w, h, TJPF_GRAY, TJSAMP_GRAY, 90, 0);
        free(g);
    } else {
        unsigned char *c = malloc((size_t)w * h * 4);
        ASSERT_NOT_NULL(c);
        for (size_t i = 0; i < (size_t)w * h; i++) {
            memcpy(c + 4 * i, px + 3 * i, 3);
            c[4 * i + 3] = (unsigned char)(255 - px[3 * i + 1] / 4);
        }
        j = jpeg_encode(c, w, h, TJPF_CMYK, TJSAMP_444, 90, 0);
        free(c);
    }
    free(px);
    return j;
}

/* Offset just past the first SOS header: where the entropy-coded data starts. */
static size_t entropy_start(bytes j)
{
    for (size_t i = 2; i + 4 < j.n; i++)
        if (j.p[i] == 0xFF && j.p[i + 1] == 0xDA) return i + 2 + ((size_t)j.p[i + 2] << 8 | j.p[i + 3]);
    TEST_FAIL("no SOS");
}

/* Both the DCT-scaled path (320: decoded at 3/8) and the full-size one (2048: decoded at 1/1). */
static void expect_refused(bytes j, const char *what)
{
    static const int sides[2] = {320, 2048};
    for (int s = 0; s < 2; s++) {
        unsigned char *out = (unsigned char *)1;
        size_t n = 1;
        int rc = keng_thumb_make(j.p, j.n, sides[s], 80, &out, &n, NULL);
        if (rc != -EBADMSG) {
            if (rc == 0) free(out);
            TEST_FAIL("%s, side %d: rc %d, want -EBADMSG (%d)", what, sides[s], rc, -EBADMSG);
        }
        ASSERT_NULL(out);
        ASSERT_EQ(n, 0);
    }
}

/* The review's case: a good 1200x900 photo with 20 KB in the middle overwritten by random bytes
 * got a half-grey thumbnail (djpeg: "Unsupported marker type"). Several seeds and positions, in
 * every decode path. */
TEST_TIMEOUT(thumb_jpeg_mid_file_garbage_refused, 60)
{
    for (int k = 0; k < SRC_COUNT; k++) {
        bytes good = damage_source(k, 1200, 900);
        size_t start = entropy_start(good), span = 20000;
        ASSERT_GT(good.n, start + span + 1000);
        bytes j = {malloc(good.n), good.n};
        ASSERT_NOT_NULL(j.p);
        for (uint32_t seed = 1; seed <= 5; seed++) {
            memcpy(j.p, good.p, good.n);
            uint32_t s = seed * 2654435761u;
            size_t at = start + (good.n - start - span - 2) * seed / 6;
            for (size_t i = 0; i < span; i++)
                j.p[at + i] = (unsigned char)xorshift(&s);
            char what[96];
            snprintf(what, sizeof what, "%s, 20 KB of garbage at %zu of %zu", src_name[k], at,
                     good.n);
            expect_refused(j, what);
        }
        free(j.p);
        free(good.p);
    }
}

/* A byte turned into 0xFF mid-scan makes a marker where none belongs (0xD3: a restart marker in
 * a photo without restarts, 0x37: no marker at all, 0xD9: an early EOI). */
TEST_TIMEOUT(thumb_jpeg_marker_in_entropy_data_refused, 60)
{
    static const unsigned char codes[3] = {0xD3, 0x37, 0xD9};
    for (int k = 0; k < SRC_COUNT; k++) {
        bytes good = damage_source(k, 1200, 900);
        size_t start = entropy_start(good);
        for (int c = 0; c < 3; c++)
            for (int q = 1; q <= 3; q++) {
                size_t at = start + (good.n - start) * (size_t)q / 4;
                unsigned char keep[2] = {good.p[at], good.p[at + 1]};
                good.p[at] = 0xFF, good.p[at + 1] = codes[c];
                char what[96];
                snprintf(what, sizeof what, "%s, FF %02X at %zu of %zu", src_name[k], codes[c], at,
                         good.n);
                expect_refused(good, what);
                good.p[at] = keep[0], good.p[at + 1] = keep[1];
            }
        free(good.p);
    }
}

/* Runs of flipped bytes in the entropy data. (A single flipped bit that still spells valid
 * Huffman codes is invisible to every JPEG decoder: the format has no checksum.) */
TEST_TIMEOUT(thumb_jpeg_flipped_entropy_bytes_refused, 60)
{
    for (int k = 0; k < SRC_COUNT; k++) {
        bytes good = damage_source(k, 1200, 900);
        size_t start = entropy_start(good), span = 512;
        for (int q = 1; q <= 4; q++) {
            size_t at = start + (good.n - start - span - 2) * (size_t)q / 5;
            for (size_t i = 0; i < span; i++)
                good.p[at + i] ^= 0x5A;
            char what[96];
            snprintf(what, sizeof what, "%s, %zu bytes flipped at %zu of %zu", src_name[k], span,
                     at, good.n);
            expect_refused(good, what);
            for (size_t i = 0; i < span; i++)
                good.p[at + i] ^= 0x5A;
        }
        free(good.p);
    }
}

/* One flipped byte can make the decoder slip by a whole MCU and finish the scan early; libjpeg
 * then reports the last MCU's unread data as "extraneous bytes before marker 0xd9", the same
 * words it uses for a camera's harmless end-of-scan padding. Find such flips with TurboJPEG
 * itself, then check thumb tells them apart from padding. */
TEST_TIMEOUT(thumb_jpeg_slipped_mcu_refused, 60)
{
    bytes good = damage_source(SRC_BASELINE, 1200, 900);
    size_t start = entropy_start(good);
    tjhandle tj = tjInitDecompress();
    ASSERT_NOT_NULL(tj);
    unsigned char *px = malloc(150 * 113 * 3);
    ASSERT_NOT_NULL(px);
    int found = 0;
    uint32_t s = 7;
    for (int t = 0; t < 400 && found < 3; t++) {
        size_t at = start + 16 + xorshift(&s) % (good.n - start - 64);
        unsigned char keep = good.p[at];
        good.p[at] ^= 0x5A;
        if (tjDecompress2(tj, good.p, good.n, px, 150, 0, 113, TJPF_RGB, TJFLAG_STOPONWARNING) &&
            strstr(tjGetErrorStr2(tj), "extraneous bytes before marker 0xd9")) {
            char what[96];
            snprintf(what, sizeof what, "flip at %zu: %s", at, tjGetErrorStr2(tj));
            expect_refused(good, what);
            found++;
        }
        good.p[at] = keep;
    }
    ASSERT_GT(found, 0);
    tjDestroy(tj);
    free(px);
    free(good.p);
}

/* Some camera firmwares pad the last scan with zero bytes before EOI; every pixel is there and
 * the photo must be accepted, with the same thumbnail as without the padding, in every path. */
TEST_TIMEOUT(thumb_jpeg_padding_before_eoi_accepted, 60)
{
    static const size_t pads[3] = {3, 16, 300};
    for (int k = 0; k < SRC_COUNT; k++) {
        bytes good = damage_source(k, 1200, 900);
        ASSERT(good.p[good.n - 2] == 0xFF && good.p[good.n - 1] == 0xD9);
        unsigned char *want;
        size_t nwant;
        ASSERT_EQ(keng_thumb_make(good.p, good.n, 320, 80, &want, &nwant, NULL), 0);
        for (int i = 0; i < 3; i++) {
            bytes j = {malloc(good.n + pads[i]), good.n + pads[i]};
            ASSERT_NOT_NULL(j.p);
            memcpy(j.p, good.p, good.n - 2);
            memset(j.p + good.n - 2, 0, pads[i]);
            memcpy(j.p + j.n - 2, "\xFF\xD9", 2);
            unsigned char *out;
            size_t n;
            int rc = keng_thumb_make(j.p, j.n, 320, 80, &out, &n, NULL);
            if (rc != 0) TEST_FAIL("%s, %zu zero bytes before EOI: rc %d", src_name[k], pads[i], rc);
            ASSERT_EQ(n, nwant);
            ASSERT_EQ(memcmp(out, want, n), 0);
            free(out);
            free(j.p);
        }
        free(want);
        free(good.p);
    }
}

/* PNG: every chunk has a CRC. Walks the chunks of p and returns the offset of the first one of
 * the given type (or p.n). */
static size_t png_find(bytes p, const char *type)
{
    size_t at = 8;
    while (at + 12 <= p.n) {
        size_t len = (size_t)p.p[at] << 24 | (size_t)p.p[at + 1] << 16 | (size_t)p.p[at + 2] << 8 |
                     p.p[at + 3];
        if (memcmp(p.p + at + 4, type, 4) == 0) return at;
        at += 12 + len;
    }
    return p.n;
}

static void png_put_crc(unsigned char *chunk, size_t len)
{
    uint32_t c = crc32_png(chunk + 4, 4 + len);
    unsigned char *q = chunk + 8 + len;
    q[0] = (unsigned char)(c >> 24), q[1] = (unsigned char)(c >> 16);
    q[2] = (unsigned char)(c >> 8), q[3] = (unsigned char)c;
}

/* A noisy screenshot-sized PNG: several IDAT chunks. */
static bytes noisy_png(int w, int h)
{
    unsigned char *px = photo(w, h);
    bytes p = png_encode(px, w, h, PNG_FORMAT_RGB);
    free(px);
    return p;
}

static void expect_png_refused(bytes p, const char *what)
{
    unsigned char *out = (unsigned char *)1;
    size_t n = 1;
    int rc = keng_thumb_make(p.p, p.n, 320, 80, &out, &n, NULL);
    if (rc != -EBADMSG) {
        if (rc == 0) free(out);
        TEST_FAIL("%s: rc %d, want -EBADMSG (%d)", what, rc, -EBADMSG);
    }
    ASSERT_NULL(out);
}

TEST(thumb_png_mid_file_garbage_refused)
{
    bytes good = noisy_png(600, 400);
    size_t span = 4000;
    bytes p = {malloc(good.n), good.n};
    ASSERT_NOT_NULL(p.p);
    for (uint32_t seed = 1; seed <= 5; seed++) {
        memcpy(p.p, good.p, good.n);
        uint32_t s = seed * 40503u;
        size_t at = 100 + (good.n - span - 200) * seed / 6;
        for (size_t i = 0; i < span; i++)
            p.p[at + i] = (unsigned char)xorshift(&s);
        char what[64];
        snprintf(what, sizeof what, "4 KB of garbage at %zu of %zu", at, good.n);
        expect_png_refused(p, what);
    }
    free(p.p);
    free(good.p);
}

/* A CRC mismatch anywhere means the bytes changed on the way, even in a chunk libpng would only
 * warn about and drop; a valid encoder never writes one. */
TEST(thumb_png_crc_error_refused)
{
    bytes good = noisy_png(300, 200);
    size_t idat = png_find(good, "IDAT");
    ASSERT_LT(idat, good.n);
    /* A tEXt chunk before the first IDAT: accepted with a right CRC, refused with a wrong one. */
    static const unsigned char text[] = "Software\0keng test";
    size_t tlen = sizeof text - 1, add = 12 + tlen;
    bytes p = {malloc(good.n + add), good.n + add};
    ASSERT_NOT_NULL(p.p);
    memcpy(p.p, good.p, idat);
    unsigned char *c = p.p + idat;
    c[0] = c[1] = c[2] = 0, c[3] = (unsigned char)tlen;
    memcpy(c + 4, "tEXt", 4);
    memcpy(c + 8, text, tlen);
    png_put_crc(c, tlen);
    memcpy(p.p + idat + add, good.p + idat, good.n - idat);
    unsigned char *out;
    size_t n;
    ASSERT_EQ(keng_thumb_make(p.p, p.n, 320, 80, &out, &n, NULL), 0);
    free(out);
    c[8] ^= 0x20; /* "software": the text changed, its CRC did not */
    expect_png_refused(p, "tEXt with a bad CRC");
    c[8] ^= 0x20;
    p.p[p.n - 1] ^= 0x01; /* IEND's CRC */
    expect_png_refused(p, "IEND with a bad CRC");
    free(p.p);
    free(good.p);
}

/* Truncated at a chunk boundary, every CRC right: the end of the image data (libpng refuses that
 * itself) or only the IEND chunk is missing. */
TEST(thumb_png_truncated_idat_refused)
{
    bytes good = noisy_png(300, 200);
    size_t idat = png_find(good, "IDAT"), iend = png_find(good, "IEND");
    ASSERT_LT(iend, good.n);
    size_t first_len = (size_t)good.p[idat + 2] << 8 | good.p[idat + 3];
    size_t after_first = idat + 12 + first_len;
    ASSERT_LT(after_first, iend); /* several IDAT chunks */
    bytes p = {malloc(after_first + 12), after_first + 12};
    ASSERT_NOT_NULL(p.p);
    memcpy(p.p, good.p, after_first);
    memcpy(p.p + after_first, good.p + iend, 12);
    expect_png_refused(p, "only the first IDAT, then IEND");
    bytes cut = {good.p, iend};
    expect_png_refused(cut, "every IDAT, no IEND");
    free(p.p);
    free(good.p);
}

/* ---- threads ---------------------------------------------------------------------------- */

struct worker {
    bytes in, want;
    int fails;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < 10; i++) {
        unsigned char *out;
        size_t n;
        if (keng_thumb_make(w->in.p, w->in.n, 320, 80, &out, &n, NULL) != 0 || n != w->want.n ||
            memcmp(out, w->want.p, n) != 0)
            w->fails++;
        free(out);
    }
    return NULL;
}

/* The daemon runs thumb on several thread-pool workers at once: same bytes in, same bytes out. */
TEST(thumb_thread_safe)
{
    unsigned char *px = photo(1600, 1200);
    bytes plain = rgb_jpeg(px, 1600, 1200);
    bytes a = with_exif(plain, 6, 0);
    free(plain.p);
    bytes b = png_encode(px, 640, 480, PNG_FORMAT_RGB);
    struct worker ws[4] = {{.in = a}, {.in = a}, {.in = b}, {.in = b}};
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(
            keng_thumb_make(ws[i].in.p, ws[i].in.n, 320, 80, &ws[i].want.p, &ws[i].want.n, NULL),
            0);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(pthread_create(&t[i], NULL, work, &ws[i]), 0);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(ws[i].fails, 0);
        free(ws[i].want.p);
    }
    free(a.p);
    free(b.p);
    free(px);
}
