/* End to end: POST /v1/media refuses a damaged photo (422) and one with too many pixels (413),
 * each with a code and a sentence a caller can act on. */
#include "../e2e_util.h"
#include "../test.h"

#include <turbojpeg.h>

/* A 1200x900 photo-like JPEG (gradient and noise), as a phone would send. */
static unsigned char *noisy_jpeg(int w, int h, size_t *len)
{
    unsigned char *px = malloc((size_t)w * h * 3);
    ASSERT_NOT_NULL(px);
    uint32_t s = 12345;
    for (size_t i = 0; i < (size_t)w * h * 3; i++) {
        s ^= s << 13, s ^= s >> 17, s ^= s << 5;
        size_t x = i / 3 % (size_t)w, y = i / 3 / (size_t)w;
        px[i] = (unsigned char)((i % 3 ? y * 200 / (size_t)h : x * 200 / (size_t)w) + (s & 31));
    }
    tjhandle t = tjInitCompress();
    unsigned char *jpeg = NULL;
    unsigned long jl = 0;
    ASSERT_EQ(tjCompress2(t, px, w, 0, h, TJPF_RGB, &jpeg, &jl, TJSAMP_420, 90, 0), 0);
    tjDestroy(t);
    free(px);
    unsigned char *out = malloc(jl);
    ASSERT_NOT_NULL(out);
    memcpy(out, jpeg, jl);
    tjFree(jpeg);
    *len = jl;
    return out;
}

/* The review's case: 20 KB in the middle of a good photo overwritten with random bytes was
 * stored with a half-grey thumbnail (201). */
TEST_TIMEOUT(e2e_media_corrupt_jpeg_is_422, 30)
{
    kengd k;
    kengd_start(&k, NULL, NULL);
    size_t n;
    unsigned char *j = noisy_jpeg(1200, 900, &n);
    ASSERT_GT(n, 60000);
    resp r;
    http(&k, "POST", "/v1/media", NULL, "image/jpeg", j, n, &r);
    ASSERT_EQ(r.status, 201); /* the good one */
    resp_free(&r);
    uint32_t s = 2024;
    for (size_t i = n / 2 - 10000; i < n / 2 + 10000; i++) {
        s ^= s << 13, s ^= s >> 17, s ^= s << 5;
        j[i] = (unsigned char)s;
    }
    http(&k, "POST", "/v1/media", NULL, "image/jpeg", j, n, &r);
    if (r.status != 422) TEST_FAIL("damaged JPEG: %ld %s", r.status, r.body);
    ASSERT_STR_EQ(jstr(r.json, "error.code"), "undecodable_image");
    ASSERT_STR_CONTAINS(jstr(r.json, "error.message"), "damaged");
    resp_free(&r);
    free(j);
    kengd_stop(&k);
    kengd_cleanup(&k);
}

/* DESIGN §8: 413 for too large. A photo's header claiming 8000 x 7000 (56 MP) is refused before
 * any pixel is decoded, and the answer says how large it was and what the limit is. */
TEST_TIMEOUT(e2e_media_over_50_megapixels_is_413, 30)
{
    kengd k;
    kengd_start(&k, NULL, NULL);
    size_t n;
    unsigned char *j = noisy_jpeg(16, 16, &n);
    int patched = 0;
    for (size_t i = 2; i + 9 < n && !patched; i++)
        if (j[i] == 0xFF && j[i + 1] == 0xC0) {
            j[i + 5] = 7000 >> 8, j[i + 6] = 7000 & 255; /* height */
            j[i + 7] = 8000 >> 8, j[i + 8] = 8000 & 255; /* width */
            patched = 1;
        }
    ASSERT(patched);
    resp r;
    http(&k, "POST", "/v1/media", NULL, "image/jpeg", j, n, &r);
    if (r.status != 413) TEST_FAIL("56 MP: %ld %s", r.status, r.body);
    ASSERT_STR_EQ(jstr(r.json, "error.code"), "too_large");
    ASSERT_STR_CONTAINS(jstr(r.json, "error.message"), "8000 x 7000 pixels");
    ASSERT_STR_CONTAINS(jstr(r.json, "error.message"), "50 megapixels");
    resp_free(&r);
    free(j);
    kengd_stop(&k);
    kengd_cleanup(&k);
}
