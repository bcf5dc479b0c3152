/* buf: a growable byte buffer with a size cap (curl's dynbuf idea). Any thread; not shared.
 * The buffer owns its memory; keng_buf_free releases it and leaves an empty buffer.
 * data is always NUL-terminated when len > 0 so it can be used as a C string. */
#ifndef KENG_BUF_H
#define KENG_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct keng_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max; /* appending past this returns -E2BIG; 0 means no cap */
} keng_buf;

void keng_buf_init(keng_buf *b, size_t max);
void keng_buf_free(keng_buf *b);
void keng_buf_reset(keng_buf *b); /* len = 0, memory kept */
/* 0, -ENOMEM, or -E2BIG when the cap would be exceeded (nothing appended). */
__attribute__((warn_unused_result)) int keng_buf_append(keng_buf *b, const void *p, size_t n);
__attribute__((warn_unused_result)) int keng_buf_puts(keng_buf *b, const char *s);
__attribute__((warn_unused_result, format(printf, 2, 3))) int keng_buf_printf(keng_buf *b,
                                                                             const char *fmt, ...);
__attribute__((warn_unused_result)) int keng_buf_vprintf(keng_buf *b, const char *fmt, va_list ap);
/* Makes room for n more bytes without writing them (no page is touched). 0, -ENOMEM, -E2BIG. */
__attribute__((warn_unused_result)) int keng_buf_reserve(keng_buf *b, size_t n);
/* Removes the first n bytes. */
void keng_buf_consume(keng_buf *b, size_t n);
/* Hands the memory to the caller (NUL-terminated, never NULL unless out of memory). */
char *keng_buf_steal(keng_buf *b);

#endif
