/* thumb: turns the bytes of an uploaded photo (JPEG, or a PNG screenshot of a scam message) into
 * a small JPEG thumbnail that is safe to send to thousands of residents: scaled in the DCT so a
 * 12-megapixel photo is never decoded at full size, area-averaged down to max_side, turned upright
 * from the EXIF Orientation, and re-encoded with no metadata at all (no EXIF, GPS, camera model).
 *
 * A pure function of bytes: no files, no loop, no globals. It owns nothing between calls; each
 * call makes and destroys its own TurboJPEG handle, so it is safe on any thread, and it is meant
 * to run on the libuv thread pool (uv_queue_work), never on the loop thread itself.
 *
 * Errors (negative errno) and the HTTP status a handler should answer with:
 *   -EINVAL       a NULL pointer where one is required                      (500: our bug)
 *   -E2BIG        more than KENG_THUMB_MAX_BYTES of input                   (413)
 *   -EMEDIUMTYPE  the bytes are neither JPEG nor PNG (also zero bytes)      (415)
 *   -EBADMSG      a JPEG or PNG, but corrupt or truncated                   (422)
 *                 (any libjpeg warning about the data except end-of-scan padding, a PNG chunk
 *                 whose CRC is wrong, no EOI / IEND: never a half-grey thumbnail)
 *   -EFBIG        width*height over KENG_THUMB_MAX_PIXELS (checked before decoding) (413)
 *   -ENOMEM       out of memory                                             (503)
 *   -EIO          the JPEG encoder failed for another reason                (500) */
#ifndef KENG_THUMB_H
#define KENG_THUMB_H

#include <stddef.h>

/* Decompression bombs: a 20-byte header may claim 65000x65000. */
#define KENG_THUMB_MAX_PIXELS (50u * 1000 * 1000)
/* The daemon's body limit for POST /v1/media checks this too; thumb refuses more on its own. */
#define KENG_THUMB_MAX_BYTES (25u * 1024 * 1024)
#define KENG_THUMB_DEFAULT_SIDE 320
#define KENG_THUMB_DEFAULT_QUALITY 80
/* A larger max_side is clamped: thumbnails are for messages, not for archiving. */
#define KENG_THUMB_MAX_SIDE 2048

typedef struct keng_thumb_info {
    int width, height; /* of the original, after orientation (swapped for 5..8) */
    const char *mime;  /* "image/jpeg" or "image/png"; a static string */
    int orientation;   /* EXIF 1..8; 1 when absent, malformed, or a PNG */
    int thumb_width;   /* of the thumbnail made; 0 after keng_thumb_probe */
    int thumb_height;
} keng_thumb_info;

/* Reads only the headers: type, size, orientation. Cheap (no pixel is decoded).
 * Fills *out even when it returns -EFBIG, so a handler can say how large the photo was. */
__attribute__((warn_unused_result)) int keng_thumb_probe(const unsigned char *data, size_t len,
                                                         keng_thumb_info *out);

/* Makes the thumbnail: longest side max_side (<= 0 means KENG_THUMB_DEFAULT_SIDE; never upscaled,
 * so a smaller photo keeps its size), JPEG quality 1..100 (<= 0 means the default), 4:2:0 colour
 * or greyscale for a greyscale photo. On success *out is a malloc'ed JPEG of *out_len bytes that
 * the caller free()s. On error *out is NULL and *out_len 0. info may be NULL. */
__attribute__((warn_unused_result)) int keng_thumb_make(const unsigned char *data, size_t len,
                                                        int max_side, int quality,
                                                        unsigned char **out, size_t *out_len,
                                                        keng_thumb_info *info);

/* A sentence for a user: what was wrong and what to do. Never NULL; static. */
const char *keng_thumb_strerror(int rc);

#endif
