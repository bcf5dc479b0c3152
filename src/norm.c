#include "keng/norm.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Raw inputs longer than these are not a plate / phone / account however they are spaced;
 * refusing early keeps the scratch buffers fixed-size. */
#define PLATE_IN_MAX 32
#define PHONE_IN_MAX 40
#define ACCOUNT_IN_MAX 64

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

static int emit(const char *s, size_t n, char *out, size_t outlen)
{
    if (n + 1 > outlen) return -ENOSPC;
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

static int fail(int rc, char *out, size_t outlen)
{
    if (out && outlen > 0) out[0] = '\0';
    return rc;
}

/* ---- plates ---- */

/* Does n[0..len) (already upper-case, separator-free) have the shape of a plate? Series and
 * serial overlap ("29A12345" is A + 12345 or A1 + 2345), so try every split. */
static int plate_shape_ok(const char *n, size_t len)
{
    if (len < 7 || len > 10 || !is_digit(n[0]) || !is_digit(n[1])) return 0;
    int province = (n[0] - '0') * 10 + (n[1] - '0');
    if (province < 11) return 0;
    for (size_t nl = 1; nl <= 2; nl++) {
        if (2 + nl > len) break;
        int letters = 1;
        for (size_t i = 2; i < 2 + nl; i++)
            if (!is_upper(n[i])) letters = 0;
        if (!letters) continue;
        for (size_t nd = 0; nd <= 1; nd++) {
            size_t at = 2 + nl + nd;
            if (at > len || (nd == 1 && !is_digit(n[2 + nl]))) continue;
            size_t rest = len - at;
            if (rest != 4 && rest != 5) continue;
            int digits = 1;
            for (size_t i = at; i < len; i++)
                if (!is_digit(n[i])) digits = 0;
            if (digits) return 1;
        }
    }
    return 0;
}

int keng_norm_plate(const char *in, char *out, size_t outlen)
{
    if (!in || !out) return fail(-EINVAL, out, outlen);
    size_t inlen = strnlen(in, PLATE_IN_MAX + 1);
    if (inlen > PLATE_IN_MAX) return fail(-EINVAL, out, outlen);
    char n[PLATE_IN_MAX + 1];
    size_t len = 0;
    for (size_t i = 0; i < inlen; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == ' ' || c == '-' || c == '.') continue;
        if (c == 0xC4 && i + 1 < inlen &&
            ((unsigned char)in[i + 1] == 0x90 || (unsigned char)in[i + 1] == 0x91)) {
            n[len++] = 'D';
            i++;
        } else if (c >= 'a' && c <= 'z') {
            n[len++] = (char)(c - 'a' + 'A');
        } else if (is_upper((char)c) || is_digit((char)c)) {
            n[len++] = (char)c;
        } else {
            return fail(-EINVAL, out, outlen);
        }
    }
    if (!plate_shape_ok(n, len)) return fail(-EINVAL, out, outlen);
    int rc = emit(n, len, out, outlen);
    return rc ? fail(rc, out, outlen) : 0;
}

/* ---- phones ---- */

int keng_norm_phone(const char *in, char *out, size_t outlen)
{
    if (!in || !out) return fail(-EINVAL, out, outlen);
    size_t inlen = strnlen(in, PHONE_IN_MAX + 1);
    if (inlen > PHONE_IN_MAX) return fail(-EINVAL, out, outlen);
    char d[PHONE_IN_MAX + 1];
    size_t nd = 0;
    int plus = 0;
    for (size_t i = 0; i < inlen; i++) {
        char c = in[i];
        if (is_digit(c)) {
            d[nd++] = c;
        } else if (c == '+') {
            /* '+' only before the first digit, once: "(+84) 905…" but not "0905+123". */
            if (plus || nd > 0) return fail(-EINVAL, out, outlen);
            plus = 1;
        } else if (c != ' ' && c != '.' && c != '-' && c != '(' && c != ')') {
            return fail(-EINVAL, out, outlen);
        }
    }
    d[nd] = '\0';

    const char *rest = d;
    int intl = 0;
    if (plus) {
        if (strncmp(d, "84", 2) != 0) return fail(-EINVAL, out, outlen); /* not Vietnam */
        rest = d + 2;
        intl = 1;
    } else if (strncmp(d, "0084", 4) == 0) {
        rest = d + 4;
        intl = 1;
    } else if (strncmp(d, "84", 2) == 0) {
        /* A national number always starts with 0, so a bare leading 84 is the country code. */
        rest = d + 2;
        intl = 1;
    }
    /* People often keep the trunk 0 after the country code ("+84 0905…"). */
    if (intl && rest[0] == '0') rest++;
    char nat[PHONE_IN_MAX + 2];
    size_t nl = 0;
    if (intl) nat[nl++] = '0';
    size_t rl = strlen(rest);
    memcpy(nat + nl, rest, rl);
    nl += rl;
    nat[nl] = '\0';

    int ok = 0;
    if (nl == 10 && nat[0] == '0' && nat[1] != '\0' && strchr("35789", nat[1])) ok = 1;
    if (nl == 11 && nat[0] == '0' && nat[1] == '2') ok = 1;
    if (!ok) return fail(-EINVAL, out, outlen);

    char e164[KENG_NORM_PHONE_MAX];
    memcpy(e164, "+84", 3);
    memcpy(e164 + 3, nat + 1, nl - 1);
    int rc = emit(e164, 3 + nl - 1, out, outlen);
    return rc ? fail(rc, out, outlen) : 0;
}

int keng_norm_phone_display(const char *in, char *out, size_t outlen)
{
    char e164[KENG_NORM_PHONE_MAX];
    int rc = keng_norm_phone(in, e164, sizeof e164);
    if (rc) return fail(rc, out, outlen);
    char nat[KENG_NORM_PHONE_MAX];
    size_t nl = strlen(e164 + 3) + 1;
    nat[0] = '0';
    memcpy(nat + 1, e164 + 3, nl); /* with the NUL */
    /* Group sizes, the last running to the end: what is printed on shop signs and ward notices. */
    size_t g1 = 4, g2 = 3;
    if (nl == 11) {
        int big_city = nat[1] == '2' && (nat[2] == '4' || nat[2] == '8');
        g1 = big_city ? 3 : 4;
        g2 = 4;
    }
    char disp[KENG_NORM_PHONE_DISPLAY_MAX];
    int n =
        snprintf(disp, sizeof disp, "%.*s %.*s %s", (int)g1, nat, (int)g2, nat + g1, nat + g1 + g2);
    if (n < 0 || (size_t)n >= sizeof disp) return fail(-EINVAL, out, outlen);
    rc = emit(disp, (size_t)n, out, outlen);
    return rc ? fail(rc, out, outlen) : 0;
}

/* ---- bank accounts ---- */

int keng_norm_account(const char *in, char *out, size_t outlen)
{
    if (!in || !out) return fail(-EINVAL, out, outlen);
    size_t inlen = strnlen(in, ACCOUNT_IN_MAX + 1);
    if (inlen > ACCOUNT_IN_MAX) return fail(-EINVAL, out, outlen);
    char d[ACCOUNT_IN_MAX + 1];
    size_t nd = 0;
    for (size_t i = 0; i < inlen; i++) {
        char c = in[i];
        if (is_digit(c))
            d[nd++] = c;
        else if (c != ' ' && c != '.' && c != '-')
            return fail(-EINVAL, out, outlen);
    }
    if (nd < 6 || nd > 19) return fail(-EINVAL, out, outlen);
    int rc = emit(d, nd, out, outlen);
    return rc ? fail(rc, out, outlen) : 0;
}

/* ---- times ---- */

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil):
 * shift the year to start in March so the leap day is the last day of the "year". */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* Reads exactly n digits at *p. */
static int take_digits(const char **p, int n, int *v)
{
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit((*p)[i])) return -1;
        x = x * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *v = x;
    return 0;
}

static int take_char(const char **p, char c)
{
    if (**p != c) return -1;
    (*p)++;
    return 0;
}

#define OFFSET_MAX_MIN (23 * 60 + 59)

int keng_time_parse(const char *in, int default_offset_min, int64_t *unix_out, int *offset_min_out)
{
    if (!in || !unix_out) return -EINVAL;
    if (default_offset_min < -OFFSET_MAX_MIN || default_offset_min > OFFSET_MAX_MIN) return -EINVAL;
    const char *p = in;
    int y, mo, d, h, mi, s = 0, off = default_offset_min;
    if (take_digits(&p, 4, &y) || take_char(&p, '-') || take_digits(&p, 2, &mo) ||
        take_char(&p, '-') || take_digits(&p, 2, &d))
        return -EINVAL;
    if (*p != 'T' && *p != 't' && *p != ' ') return -EINVAL;
    p++;
    if (take_digits(&p, 2, &h) || take_char(&p, ':') || take_digits(&p, 2, &mi)) return -EINVAL;
    if (*p == ':') {
        p++;
        if (take_digits(&p, 2, &s)) return -EINVAL;
        if (*p == '.') {
            p++;
            if (!is_digit(*p)) return -EINVAL;
            while (is_digit(*p))
                p++;
        }
    }
    if (*p == 'Z' || *p == 'z') {
        off = 0;
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om;
        p++;
        if (take_digits(&p, 2, &oh) || take_char(&p, ':') || take_digits(&p, 2, &om))
            return -EINVAL;
        if (oh > 23 || om > 59) return -EINVAL;
        off = sign * (oh * 60 + om);
    }
    if (*p != '\0') return -EINVAL;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo)) return -EINVAL;
    if (h > 23 || mi > 59 || s > 60) return -EINVAL;
    int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - (int64_t)off * 60;
    *unix_out = t;
    if (offset_min_out) *offset_min_out = off;
    return 0;
}

/* Broken-down local time of t at the given offset. */
static int split(int64_t t, int offset_min, int64_t *y, int *mo, int *d, int *h, int *mi, int *s)
{
    if (offset_min < -OFFSET_MAX_MIN || offset_min > OFFSET_MAX_MIN) return -EINVAL;
    /* Keeps the arithmetic far from overflow; years 0..9999 fit well inside. */
    if (t < -62167219200LL - 86400 || t > 253402300799LL + 86400) return -ERANGE;
    int64_t local = t + (int64_t)offset_min * 60;
    int64_t days = local >= 0 ? local / 86400 : -((-local + 86399) / 86400);
    int64_t sod = local - days * 86400;
    civil_from_days(days, y, mo, d);
    if (*y < 0 || *y > 9999) return -ERANGE;
    *h = (int)(sod / 3600);
    *mi = (int)(sod % 3600 / 60);
    *s = (int)(sod % 60);
    return 0;
}

int keng_time_format(int64_t t, int offset_min, char *out, size_t len)
{
    if (!out) return -EINVAL;
    int64_t y;
    int mo, d, h, mi, s;
    int rc = split(t, offset_min, &y, &mo, &d, &h, &mi, &s);
    if (rc) return fail(rc, out, len);
    char zone[16];
    if (offset_min == 0) {
        memcpy(zone, "Z", 2);
    } else {
        int a = offset_min < 0 ? -offset_min : offset_min;
        snprintf(zone, sizeof zone, "%c%02d:%02d", offset_min < 0 ? '-' : '+', a / 60, a % 60);
    }
    int n = snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d%s", (int)y, mo, d, h, mi, s, zone);
    if (n < 0 || (size_t)n >= len) return fail(-ENOSPC, out, len);
    return 0;
}

int keng_time_format_local(int64_t t, int offset_min, char *out, size_t len)
{
    if (!out) return -EINVAL;
    int64_t y;
    int mo, d, h, mi, s;
    int rc = split(t, offset_min, &y, &mo, &d, &h, &mi, &s);
    if (rc) return fail(rc, out, len);
    int n = snprintf(out, len, "%02d:%02d %02d/%02d/%04d", h, mi, d, mo, (int)y);
    if (n < 0 || (size_t)n >= len) return fail(-ENOSPC, out, len);
    return 0;
}

int64_t keng_time_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

/* ---- UTF-8 ---- */

int keng_utf8_valid(const char *s, size_t len)
{
    if (!s) return len == 0;
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        unsigned c = *p;
        if (c < 0x80) {
            p++;
            continue;
        }
        size_t n;
        unsigned cp, min;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1, cp = c & 0x1F, min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2, cp = c & 0x0F, min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0; /* continuation byte, C0/C1 overlong lead, or F5..FF */
        }
        if ((size_t)(end - p) < n + 1) return 0;
        for (size_t i = 1; i <= n; i++) {
            if ((p[i] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        p += n + 1;
    }
    return 1;
}
