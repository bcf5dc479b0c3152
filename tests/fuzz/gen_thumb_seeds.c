/* gen_thumb_seeds: writes the seed images of fuzz_thumb into the directory given (normally
 * tests/fuzz/corpus/thumb): small JPEGs (colour, greyscale, CMYK, progressive, 4:4:4, odd sizes,
 * with an EXIF Orientation in big- and little-endian TIFF) and PNGs (RGB, RGBA, grey, grey+alpha,
 * palette, 16-bit, interlaced). Each is a few hundred bytes, so the fuzzer mutates structure and
 * not pixels. Run by `make -f tests/fuzz/Makefile seeds`; the output is committed. */
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

static const char *dir;

static void put(const char *name, const unsigned char *d, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(d, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* A gradient with a diagonal stripe, so that orientation and scaling change the pixels. */
static unsigned char *pixels(int w, int h, int ch)
{
    unsigned char *p = malloc((size_t)w * h * ch);
    if (!p) exit(1);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < ch; c++)
                p[((size_t)y * w + x) * ch + c] =
                    (unsigned char)(x == y ? 255 : (x * 255 / w + y * 97 / h + c * 60) & 255);
    return p;
}

static void jpeg(const char *name, int w, int h, int pf, int subsamp, int flags,
                 const unsigned char *app1, size_t app1_len)
{
    tjhandle tj = tjInitCompress();
    unsigned char *px = pixels(w, h, tjPixelSize[pf]);
    unsigned char *out = NULL;
    unsigned long len = 0;
    if (!tj || tjCompress2(tj, px, w, 0, h, pf, &out, &len, subsamp, 60, flags) != 0) {
        fprintf(stderr, "%s: %s\n", name, tjGetErrorStr2(tj));
        exit(1);
    }
    if (app1) { /* after SOI, before the JFIF APP0 */
        unsigned char *e = malloc(len + app1_len);
        if (!e) exit(1);
        memcpy(e, out, 2);
        memcpy(e + 2, app1, app1_len);
        memcpy(e + 2 + app1_len, out + 2, len - 2);
        put(name, e, len + app1_len);
        free(e);
    } else {
        put(name, out, len);
    }
    tjFree(out);
    free(px);
    tjDestroy(tj);
}

/* APP1 "Exif" with one IFD entry: Orientation (0x0112) = o. */
static size_t exif(unsigned char *b, int o, int le)
{
    static const unsigned char be_tiff[] = {'M', 'M', 0, 42, 0, 0, 0, 8};
    static const unsigned char le_tiff[] = {'I', 'I', 42, 0, 8, 0, 0, 0};
    unsigned char t[26];
    memcpy(t, le ? le_tiff : be_tiff, 8);
    unsigned char ifd_be[] = {0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, (unsigned char)o, 0, 0,
                              0, 0, 0, 0};
    unsigned char ifd_le[] = {1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, (unsigned char)o, 0, 0, 0,
                              0, 0, 0, 0};
    memcpy(t + 8, le ? ifd_le : ifd_be, 18);
    size_t seg = 2 + 6 + sizeof t;
    b[0] = 0xFF;
    b[1] = 0xE1;
    b[2] = (unsigned char)(seg >> 8);
    b[3] = (unsigned char)seg;
    memcpy(b + 4, "Exif\0\0", 6);
    memcpy(b + 10, t, sizeof t);
    return 2 + seg;
}

static void png(const char *name, int w, int h, int color, int depth, int interlace)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(p);
    if (!f || !p || !info || setjmp(png_jmpbuf(p))) {
        fprintf(stderr, "%s: cannot write\n", path);
        exit(1);
    }
    png_init_io(p, f);
    png_set_IHDR(p, info, (png_uint_32)w, (png_uint_32)h, depth, color, interlace,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (color == PNG_COLOR_TYPE_PALETTE) {
        png_color pal[4] = {{0, 0, 0}, {255, 0, 0}, {0, 255, 0}, {255, 255, 255}};
        png_byte trans[2] = {0, 128};
        png_set_PLTE(p, info, pal, 4);
        png_set_tRNS(p, info, trans, 2, NULL);
    }
    png_write_info(p, info);
    int ch = color == PNG_COLOR_TYPE_RGB         ? 3
             : color == PNG_COLOR_TYPE_RGB_ALPHA ? 4
             : color == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                                                  : 1;
    size_t row = (size_t)w * ch * (depth == 16 ? 2 : 1);
    unsigned char *px = pixels((int)row, h, 1);
    if (color == PNG_COLOR_TYPE_PALETTE)
        for (size_t i = 0; i < row * h; i++) px[i] &= 3;
    int passes = interlace ? png_set_interlace_handling(p) : 1;
    for (int pass = 0; pass < passes; pass++)
        for (int y = 0; y < h; y++) png_write_row(p, px + row * y);
    png_write_end(p, info);
    png_destroy_write_struct(&p, &info);
    fclose(f);
    free(px);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    unsigned char app1[64];
    jpeg("rgb-420.jpg", 48, 32, TJPF_RGB, TJSAMP_420, 0, NULL, 0);
    jpeg("rgb-444-odd.jpg", 33, 17, TJPF_RGB, TJSAMP_444, 0, NULL, 0);
    jpeg("rgb-422-wide.jpg", 200, 8, TJPF_RGB, TJSAMP_422, 0, NULL, 0);
    jpeg("grey.jpg", 40, 40, TJPF_GRAY, TJSAMP_GRAY, 0, NULL, 0);
    jpeg("progressive.jpg", 64, 48, TJPF_RGB, TJSAMP_420, TJFLAG_PROGRESSIVE, NULL, 0);
    jpeg("cmyk.jpg", 24, 24, TJPF_CMYK, TJSAMP_444, 0, NULL, 0);
    jpeg("tall-1px.jpg", 1, 90, TJPF_RGB, TJSAMP_420, 0, NULL, 0);
    jpeg("grey-640.jpg", 640, 480, TJPF_GRAY, TJSAMP_GRAY, 0, NULL, 0);
    /* Orientations 2..9 (9 is out of range: it must read as upright). */
    for (int o = 2; o <= 8; o += 3) {
        char name[64];
        snprintf(name, sizeof name, "exif-be-o%d.jpg", o);
        jpeg(name, 40, 24, TJPF_RGB, TJSAMP_420, 0, app1, exif(app1, o, 0));
        snprintf(name, sizeof name, "exif-le-o%d.jpg", o + 1);
        jpeg(name, 24, 40, TJPF_RGB, TJSAMP_420, 0, app1, exif(app1, o + 1, 1));
    }
    jpeg("scaled-exif6.jpg", 256, 160, TJPF_RGB, TJSAMP_420, 0, app1, exif(app1, 6, 0));
    png("scaled.png", 300, 40, PNG_COLOR_TYPE_RGB_ALPHA, 8, PNG_INTERLACE_NONE);
    png("rgb.png", 40, 30, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_NONE);
    png("rgba.png", 30, 40, PNG_COLOR_TYPE_RGB_ALPHA, 8, PNG_INTERLACE_NONE);
    png("grey.png", 20, 20, PNG_COLOR_TYPE_GRAY, 8, PNG_INTERLACE_NONE);
    png("grey-alpha.png", 16, 16, PNG_COLOR_TYPE_GRAY_ALPHA, 8, PNG_INTERLACE_NONE);
    png("palette.png", 32, 32, PNG_COLOR_TYPE_PALETTE, 2, PNG_INTERLACE_NONE);
    png("rgb16.png", 12, 12, PNG_COLOR_TYPE_RGB, 16, PNG_INTERLACE_NONE);
    png("interlaced.png", 33, 21, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_ADAM7);
    png("grey1.png", 64, 8, PNG_COLOR_TYPE_GRAY, 1, PNG_INTERLACE_NONE);
    return 0;
}
