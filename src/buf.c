#include "keng/buf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void keng_buf_init(keng_buf *b, size_t max)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->max = max;
}

void keng_buf_free(keng_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void keng_buf_reset(keng_buf *b)
{
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

static int buf_reserve(keng_buf *b, size_t n)
{
    if (n > SIZE_MAX - b->len - 1) return -E2BIG;
    size_t need = b->len + n + 1;
    if (b->max && b->len + n > b->max) return -E2BIG;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p) return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int keng_buf_reserve(keng_buf *b, size_t n)
{
    int rc = buf_reserve(b, n);
    if (rc == 0 && b->len == 0) b->data[0] = '\0';
    return rc;
}

int keng_buf_append(keng_buf *b, const void *p, size_t n)
{
    int rc = buf_reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int keng_buf_puts(keng_buf *b, const char *s)
{
    return keng_buf_append(b, s, strlen(s));
}

int keng_buf_vprintf(keng_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) return -EINVAL;
    int rc = buf_reserve(b, (size_t)n);
    if (rc) return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int keng_buf_printf(keng_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = keng_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void keng_buf_consume(keng_buf *b, size_t n)
{
    if (n >= b->len) {
        keng_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

char *keng_buf_steal(keng_buf *b)
{
    if (!b->data && buf_reserve(b, 0)) return NULL;
    if (b->len == 0) b->data[0] = '\0';
    char *p = b->data;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}
