/* fuzz_thumb: keng_thumb_probe and keng_thumb_make on the raw bytes of an upload, as
 * POST /v1/media receives them (max_side 64 to keep each run short). Checks what thumb.h
 * promises beyond not crashing: on success a JPEG no larger than 64 on its longest side, never
 * larger than the original; on failure no output and one of the documented errors. */
#include "keng/thumb.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define SIDE 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    keng_thumb_info info;
    int prc = keng_thumb_probe(data, size, &info);
    if (prc != 0 && prc != -EMEDIUMTYPE && prc != -EBADMSG && prc != -EFBIG && prc != -E2BIG)
        abort();

    unsigned char *out = (unsigned char *)"x";
    size_t out_len = 1;
    int rc = keng_thumb_make(data, size, SIDE, 0, &out, &out_len, &info);
    if (rc == 0) {
        int side = info.thumb_width > info.thumb_height ? info.thumb_width : info.thumb_height;
        if (!out || out_len < 4 || out[0] != 0xFF || out[1] != 0xD8 || side < 1 || side > SIDE ||
            info.thumb_width > info.width || info.thumb_height > info.height) {
            fprintf(stderr, "fuzz_thumb: bad success: %zu bytes, %dx%d from %dx%d\n", out_len,
                    info.thumb_width, info.thumb_height, info.width, info.height);
            abort();
        }
        free(out);
    } else {
        if (out != NULL || out_len != 0) abort(); /* "On error *out is NULL and *out_len 0" */
        if (rc != -EMEDIUMTYPE && rc != -EBADMSG && rc != -EFBIG && rc != -E2BIG &&
            rc != -ENOMEM && rc != -EIO) {
            fprintf(stderr, "fuzz_thumb: undocumented error %d\n", rc);
            abort();
        }
    }
    return 0;
}
