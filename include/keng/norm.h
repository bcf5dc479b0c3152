/* norm: normalizers for what officers and residents type — Vietnamese licence plates, phone
 * numbers, bank accounts — plus RFC 3339 times and UTF-8 validation. A floor-1 leaf: pure
 * functions over caller-owned buffers, no allocation, no global state (keng_time_now reads the
 * clock). Any thread.
 *
 * Normalized forms are what the store indexes and what /v1/lookup matches on, so the same plate
 * or phone typed in any of its everyday shapes lands on one key:
 *   plate   "29-MĐ1 123.45" -> "29MD112345"   (upper case, no separators, Đ -> D)
 *   phone   "0905 123 456"  -> "+84905123456" (E.164)
 * and, for what residents read, the other way (keng_norm_phone_display):
 *   phone   "+84905123456"  -> "0905 123 456" (national, grouped)
 *   account "0071 000.123-456" -> "0071000123456" (digits only)
 * Every function returns 0 or a negative errno: -EINVAL for input of the wrong shape, -ENOSPC
 * when out is too small. On error out is left as an empty string when outlen > 0. */
#ifndef KENG_NORM_H
#define KENG_NORM_H

#include <stddef.h>
#include <stdint.h>

/* Longest normalized forms, including the NUL: size out buffers with these. */
#define KENG_NORM_PLATE_MAX 16         /* at most 10 characters */
#define KENG_NORM_PHONE_MAX 16         /* "+84" + at most 10 digits */
#define KENG_NORM_PHONE_DISPLAY_MAX 16 /* "0236 3621 113": 11 digits, 2 spaces */
#define KENG_NORM_ACCOUNT_MAX 20       /* at most 19 digits */
#define KENG_TIME_RFC3339_MAX 32       /* "2026-11-23T14:30:00+07:00" */
#define KENG_TIME_LOCAL_MAX 24         /* "14:30 23/11/2026" */

/* Asia/Ho_Chi_Minh: +07:00 all year, no daylight saving. */
#define KENG_TZ_VN_MIN 420

/* Plate: 2-digit province code 11..99, a series of 1-2 letters optionally followed by one
 * digit, then 4 or 5 digits. Spaces, '-' and '.' are dropped, letters upper-cased, and 'Đ'/'đ'
 * (UTF-8) read as 'D'. */
__attribute__((warn_unused_result)) int keng_norm_plate(const char *in, char *out, size_t outlen);

/* Phone: national (0905 123 456), with +84 / 84 / 0084, with spaces, dots, dashes and
 * parentheses. Mobile: 10 national digits starting 03, 05, 07, 08, 09; landline: 11 starting
 * 02. Output is E.164, "+84" followed by the national number without its leading 0. */
__attribute__((warn_unused_result)) int keng_norm_phone(const char *in, char *out, size_t outlen);

/* Phone as a resident reads and dials it: the national number with its leading 0, in groups —
 * mobile "0905 123 456" (4-3-3); landline "024 3825 1234" for Hà Nội (024) and TP.HCM (028),
 * whose subscriber numbers have 8 digits, else "0236 3621 113" (area code, 4, 3). Takes any
 * shape keng_norm_phone accepts (the stored E.164 above all); -EINVAL for anything else, which
 * the caller shows as it was typed. */
__attribute__((warn_unused_result)) int keng_norm_phone_display(const char *in, char *out,
                                                                size_t outlen);

/* Bank account: digits with optional spaces, dots and dashes; 6..19 digits. */
__attribute__((warn_unused_result)) int keng_norm_account(const char *in, char *out, size_t outlen);

/* Parses "YYYY-MM-DDTHH:MM[:SS[.frac]](Z|+HH:MM|-HH:MM)"; 'T' may also be 't' or a space.
 * Without an offset the time is local to default_offset_min (minutes east of UTC, e.g.
 * KENG_TZ_VN_MIN). Fractions of a second are dropped; second 60 (leap) is accepted.
 * *unix_out gets the instant; *offset_min_out (may be NULL) the offset that applied. */
__attribute__((warn_unused_result)) int keng_time_parse(const char *in, int default_offset_min,
                                                        int64_t *unix_out, int *offset_min_out);

/* "2026-11-23T14:30:00+07:00" (offset 0 is written "Z"). -ERANGE outside years 0..9999. */
int keng_time_format(int64_t t, int offset_min, char *out, size_t len);

/* Vietnamese display form "14:30 23/11/2026", in the given offset. */
int keng_time_format_local(int64_t t, int offset_min, char *out, size_t len);

/* Wall-clock seconds since 1970-01-01T00:00:00Z. */
int64_t keng_time_now(void);

/* 1 if s[0..len) is well-formed UTF-8 (no overlong forms, no surrogates, nothing above
 * U+10FFFF), else 0. NUL bytes are valid UTF-8 and accepted. */
int keng_utf8_valid(const char *s, size_t len);

#endif
