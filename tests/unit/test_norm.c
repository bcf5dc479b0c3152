#include "test.h"

#include "keng/norm.h"

#include <errno.h>

static void plate_is(const char *in, const char *want)
{
    char out[KENG_NORM_PLATE_MAX];
    int rc = keng_norm_plate(in, out, sizeof out);
    if (rc != 0) TEST_FAIL("plate \"%s\": rc %d, want \"%s\"", in, rc, want);
    if (strcmp(out, want) != 0) TEST_FAIL("plate \"%s\": \"%s\", want \"%s\"", in, out, want);
}

static void plate_bad(const char *in)
{
    char out[KENG_NORM_PLATE_MAX] = "x";
    int rc = keng_norm_plate(in, out, sizeof out);
    if (rc != -EINVAL) TEST_FAIL("plate \"%s\": rc %d (\"%s\"), want -EINVAL", in, rc, out);
    ASSERT_STR_EQ(out, "");
}

TEST(norm_plate_shapes)
{
    plate_is("30A-123.45", "30A12345");
    plate_is("51F-999.99", "51F99999");
    plate_is("29LD-012.34", "29LD01234");
    plate_is("29A-1234", "29A1234");
    plate_is("29-B1 123.45", "29B112345");
    plate_is("59-X2 678.90", "59X267890");
    plate_is("51F1 234.56", "51F123456");
    plate_is("29-MĐ1 123.45", "29MD112345");
    plate_is("29A12345", "29A12345"); /* already normalized: idempotent */
    plate_is("  99A-999.99 ", "99A99999");
    plate_is("11A-000.01", "11A00001");
}

TEST(norm_plate_case_and_d)
{
    plate_is("30a-123.45", "30A12345");
    plate_is("29-mđ1 123.45", "29MD112345");
    plate_is("29-md1 123.45", "29MD112345");
    plate_is("29LĐ-012.34", "29LD01234");
    plate_is("29lđ-012.34", "29LD01234");
}

TEST(norm_plate_bad)
{
    plate_bad("ABC");
    plate_bad("");
    plate_bad("30A-123.45.67.89.00.11.22.33.44.55"); /* too long */
    plate_bad("10A-123.45");                         /* province below 11 */
    plate_bad("3A-123.45");                          /* one-digit province */
    plate_bad("30-123.45");                          /* no series */
    plate_bad("30ABC-123.45");                       /* three letters */
    plate_bad("30A-123");                            /* three digits */
    plate_bad("30A-1234567");                        /* seven digits */
    plate_bad("30A_123.45");                         /* unknown separator */
    plate_bad("30Á-123.45");                         /* other accented letter */
    plate_bad("30A-123.4X");
    plate_bad("30A12-123.45"); /* two digits after the series */
    plate_bad("\xC4");         /* truncated UTF-8 */
    ASSERT_EQ(keng_norm_plate(NULL, (char[8]){0}, 8), -EINVAL);
}

TEST(norm_plate_small_buffer)
{
    char out[8] = "x";
    ASSERT_EQ(keng_norm_plate("30A-123.45", out, sizeof out), -ENOSPC);
    ASSERT_STR_EQ(out, "");
    char out9[9];
    ASSERT_EQ(keng_norm_plate("30A-123.45", out9, sizeof out9), 0);
    ASSERT_STR_EQ(out9, "30A12345");
}

static void phone_is(const char *in, const char *want)
{
    char out[KENG_NORM_PHONE_MAX];
    int rc = keng_norm_phone(in, out, sizeof out);
    if (rc != 0) TEST_FAIL("phone \"%s\": rc %d, want \"%s\"", in, rc, want);
    if (strcmp(out, want) != 0) TEST_FAIL("phone \"%s\": \"%s\", want \"%s\"", in, out, want);
}

static void phone_bad(const char *in)
{
    char out[KENG_NORM_PHONE_MAX] = "x";
    int rc = keng_norm_phone(in, out, sizeof out);
    if (rc != -EINVAL) TEST_FAIL("phone \"%s\": rc %d (\"%s\"), want -EINVAL", in, rc, out);
    ASSERT_STR_EQ(out, "");
}

TEST(norm_phone_shapes)
{
    phone_is("0905 123 456", "+84905123456");
    phone_is("0905.123.456", "+84905123456");
    phone_is("0905-123-456", "+84905123456");
    phone_is("0905123456", "+84905123456");
    phone_is("+84 905 123 456", "+84905123456");
    phone_is("84905123456", "+84905123456");
    phone_is("(+84) 905-123-456", "+84905123456");
    phone_is("+84905123456", "+84905123456");
    phone_is("0084 905 123 456", "+84905123456");
    phone_is("+84 (0) 905 123 456", "+84905123456");
    phone_is("0321 234 567", "+84321234567");
    phone_is("0561234567", "+84561234567");
    phone_is("0701234567", "+84701234567");
    phone_is("0812345678", "+84812345678");
    phone_is("0987654321", "+84987654321");
    phone_is("0236 3822 123", "+842363822123");
    phone_is("(0236) 3822.123", "+842363822123");
    phone_is("+84 236 3822 123", "+842363822123");
    phone_is("842363822123", "+842363822123");
}

TEST(norm_phone_bad)
{
    phone_bad("0123");
    phone_bad("");
    phone_bad("090512345678");   /* 12 digits */
    phone_bad("090512345");      /* 9 digits */
    phone_bad("0905 ABC 456");   /* letters */
    phone_bad("0105123456");     /* 01 is not a mobile prefix any more */
    phone_bad("0405123456");     /* 04 */
    phone_bad("0605123456");     /* 06 */
    phone_bad("02363822123456"); /* landline too long */
    phone_bad("0236382212");     /* landline 10 digits */
    phone_bad("+1 202 555 0100");
    phone_bad("0905+123456");
    phone_bad("++84905123456");
    phone_bad("0905_123_456");
    phone_bad("0905 123 456 0905 123 456 0905 123 456 0905");
}

static void phone_display_is(const char *in, const char *want)
{
    char out[KENG_NORM_PHONE_DISPLAY_MAX];
    int rc = keng_norm_phone_display(in, out, sizeof out);
    if (rc != 0) TEST_FAIL("phone display \"%s\": rc %d, want \"%s\"", in, rc, want);
    if (strcmp(out, want) != 0)
        TEST_FAIL("phone display \"%s\": \"%s\", want \"%s\"", in, out, want);
}

TEST(norm_phone_display_is_national_and_grouped)
{
    /* What the store holds (E.164) becomes what a resident dials. */
    phone_display_is("+84905123456", "0905 123 456");
    phone_display_is("+84321234567", "0321 234 567");
    phone_display_is("+84889123456", "0889 123 456");
    phone_display_is("+842363621113", "0236 3621 113"); /* Đà Nẵng: area 0236, 7 digits */
    phone_display_is("+842438251234", "024 3825 1234"); /* Hà Nội: 024, 8 digits */
    phone_display_is("+842838291234", "028 3829 1234"); /* TP.HCM: 028, 8 digits */
    phone_display_is("+842203123456", "0220 3123 456"); /* 022x is not Hà Nội */
    /* Every shape keng_norm_phone reads, so data stored before normalization shows the same. */
    phone_display_is("0905.123.456", "0905 123 456");
    phone_display_is("(+84) 905-123-456", "0905 123 456");
    phone_display_is("0084 236 3822 123", "0236 3822 123");
    /* Round trip: the display form normalizes back to the same key. */
    char disp[KENG_NORM_PHONE_DISPLAY_MAX], back[KENG_NORM_PHONE_MAX];
    ASSERT_EQ(keng_norm_phone_display("+842438251234", disp, sizeof disp), 0);
    ASSERT_EQ(keng_norm_phone(disp, back, sizeof back), 0);
    ASSERT_STR_EQ(back, "+842438251234");
}

TEST(norm_phone_display_refuses_what_is_not_a_vietnamese_number)
{
    char out[KENG_NORM_PHONE_DISPLAY_MAX] = "x";
    ASSERT_EQ(keng_norm_phone_display("+1 202 555 0100", out, sizeof out), -EINVAL);
    ASSERT_STR_EQ(out, "");
    ASSERT_EQ(keng_norm_phone_display("0905 ABC 456", out, sizeof out), -EINVAL);
    ASSERT_EQ(keng_norm_phone_display("", out, sizeof out), -EINVAL);
    ASSERT_EQ(keng_norm_phone_display(NULL, out, sizeof out), -EINVAL);
    /* "0236 3621 113" and its NUL need 14 bytes; one fewer is -ENOSPC, never a cut number. */
    char small[13] = "x";
    ASSERT_EQ(keng_norm_phone_display("+842363621113", small, sizeof small), -ENOSPC);
    ASSERT_STR_EQ(small, "");
    char exact[14];
    ASSERT_EQ(keng_norm_phone_display("+842363621113", exact, sizeof exact), 0);
    ASSERT_STR_EQ(exact, "0236 3621 113");
}

static void account_is(const char *in, const char *want)
{
    char out[KENG_NORM_ACCOUNT_MAX];
    int rc = keng_norm_account(in, out, sizeof out);
    if (rc != 0) TEST_FAIL("account \"%s\": rc %d", in, rc);
    ASSERT_STR_EQ(out, want);
}

TEST(norm_account)
{
    account_is("0071000123456", "0071000123456");
    account_is("0071 000 123 456", "0071000123456");
    account_is("0071.000.123-456", "0071000123456");
    account_is("123456", "123456");
    account_is("1234567890123456789", "1234567890123456789");
    char out[KENG_NORM_ACCOUNT_MAX];
    ASSERT_EQ(keng_norm_account("12345", out, sizeof out), -EINVAL);
    ASSERT_EQ(keng_norm_account("12345678901234567890", out, sizeof out), -EINVAL);
    ASSERT_EQ(keng_norm_account("1234 5678 ABC", out, sizeof out), -EINVAL);
    ASSERT_EQ(keng_norm_account("", out, sizeof out), -EINVAL);
    ASSERT_EQ(keng_norm_account("123/456/789", out, sizeof out), -EINVAL);
}

/* 2026-11-23T07:30:00Z, computed independently: 20780 days after 1970-01-01. */
#define T_2026_11_23_0730Z (20780LL * 86400 + 7 * 3600 + 30 * 60)

TEST(norm_time_parse_forms)
{
    int64_t t;
    int off = -1;
    ASSERT_EQ(keng_time_parse("2026-11-23T14:30:00+07:00", 0, &t, &off), 0);
    ASSERT_EQ(t, T_2026_11_23_0730Z);
    ASSERT_EQ(off, 420);
    ASSERT_EQ(keng_time_parse("2026-11-23T07:30:00Z", KENG_TZ_VN_MIN, &t, &off), 0);
    ASSERT_EQ(t, T_2026_11_23_0730Z);
    ASSERT_EQ(off, 0);
    ASSERT_EQ(keng_time_parse("2026-11-23t07:30:00.123456z", KENG_TZ_VN_MIN, &t, &off), 0);
    ASSERT_EQ(t, T_2026_11_23_0730Z);
    ASSERT_EQ(keng_time_parse("2026-11-23T14:30:00", KENG_TZ_VN_MIN, &t, &off), 0);
    ASSERT_EQ(t, T_2026_11_23_0730Z);
    ASSERT_EQ(off, 420);
    ASSERT_EQ(keng_time_parse("2026-11-23 14:30", KENG_TZ_VN_MIN, &t, NULL), 0);
    ASSERT_EQ(t, T_2026_11_23_0730Z);
    ASSERT_EQ(keng_time_parse("2026-11-23T02:00:00-05:30", 0, &t, &off), 0);
    ASSERT_EQ(t, T_2026_11_23_0730Z);
    ASSERT_EQ(off, -330);
    ASSERT_EQ(keng_time_parse("1970-01-01T00:00:00Z", 0, &t, NULL), 0);
    ASSERT_EQ(t, 0);
    ASSERT_EQ(keng_time_parse("1969-12-31T23:59:59Z", 0, &t, NULL), 0);
    ASSERT_EQ(t, -1);
    ASSERT_EQ(keng_time_parse("2000-03-01T00:00:00Z", 0, &t, NULL), 0);
    ASSERT_EQ(t, 951868800);
    /* A leap second reads as the first second of the next minute. */
    ASSERT_EQ(keng_time_parse("2016-12-31T23:59:60Z", 0, &t, NULL), 0);
    ASSERT_EQ(t, 1483228800);
}

TEST(norm_time_leap_days)
{
    int64_t t;
    ASSERT_EQ(keng_time_parse("2028-02-29T12:00:00+07:00", 0, &t, NULL), 0);
    int64_t mar1;
    ASSERT_EQ(keng_time_parse("2028-03-01T12:00:00+07:00", 0, &mar1, NULL), 0);
    ASSERT_EQ(mar1 - t, 86400);
    ASSERT_EQ(keng_time_parse("2026-02-29T12:00:00+07:00", 0, &t, NULL), -EINVAL);
    ASSERT_EQ(keng_time_parse("2100-02-29T12:00:00Z", 0, &t, NULL), -EINVAL);
    ASSERT_EQ(keng_time_parse("2000-02-29T12:00:00Z", 0, &t, NULL), 0);
    ASSERT_EQ(keng_time_parse("2026-04-31T12:00:00Z", 0, &t, NULL), -EINVAL);
    ASSERT_EQ(keng_time_parse("2026-12-31T12:00:00Z", 0, &t, NULL), 0);
}

TEST(norm_time_parse_bad)
{
    int64_t t = 42;
    const char *bad[] = {
        "2026-11-23T25:00:00+07:00",
        "2026-11-23T24:00:00Z",
        "2026-11-23T14:60:00Z",
        "2026-11-23T14:30:61Z",
        "2026-13-01T00:00:00Z",
        "2026-00-10T00:00:00Z",
        "2026-11-00T00:00:00Z",
        "2026-11-23",
        "2026-11-23T14",
        "2026-11-23T14:30:00+0700",
        "2026-11-23T14:30:00+24:00",
        "2026-11-23T14:30:00+07:60",
        "2026-11-23T14:30:00 ",
        "2026-11-23T14:30:00.Z",
        "26-11-23T14:30:00Z",
        "2026/11/23 14:30",
        "",
        "now",
        "2026-11-23T14:30:00Zjunk",
        "2026-1-23T14:30:00Z",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = keng_time_parse(bad[i], KENG_TZ_VN_MIN, &t, NULL);
        if (rc != -EINVAL) TEST_FAIL("\"%s\" parsed (rc %d)", bad[i], rc);
    }
    ASSERT_EQ(t, 42);
    ASSERT_EQ(keng_time_parse("2026-11-23T14:30:00", 100000, &t, NULL), -EINVAL);
}

TEST(norm_time_format)
{
    char out[KENG_TIME_RFC3339_MAX];
    ASSERT_EQ(keng_time_format(T_2026_11_23_0730Z, 420, out, sizeof out), 0);
    ASSERT_STR_EQ(out, "2026-11-23T14:30:00+07:00");
    ASSERT_EQ(keng_time_format(T_2026_11_23_0730Z, 0, out, sizeof out), 0);
    ASSERT_STR_EQ(out, "2026-11-23T07:30:00Z");
    ASSERT_EQ(keng_time_format(T_2026_11_23_0730Z, -330, out, sizeof out), 0);
    ASSERT_STR_EQ(out, "2026-11-23T02:00:00-05:30");
    /* Crossing midnight and a year boundary in the local zone. */
    int64_t t;
    ASSERT_EQ(keng_time_parse("2026-12-31T20:00:00Z", 0, &t, NULL), 0);
    ASSERT_EQ(keng_time_format(t, 420, out, sizeof out), 0);
    ASSERT_STR_EQ(out, "2027-01-01T03:00:00+07:00");
    ASSERT_EQ(keng_time_format(-1, 0, out, sizeof out), 0);
    ASSERT_STR_EQ(out, "1969-12-31T23:59:59Z");
    ASSERT_EQ(keng_time_format(T_2026_11_23_0730Z, 420, out, 25), -ENOSPC);
    ASSERT_EQ(keng_time_format(T_2026_11_23_0730Z, 420, out, 26), 0);
    ASSERT_EQ(keng_time_format(INT64_MAX, 0, out, sizeof out), -ERANGE);
    ASSERT_EQ(keng_time_format(0, 5000, out, sizeof out), -EINVAL);
}

TEST(norm_time_round_trip)
{
    /* Every day from 1999 to 2032 (incl. three leap days) survives format -> parse. */
    int64_t t0, t1;
    ASSERT_EQ(keng_time_parse("1999-01-01T13:05:09+07:00", 0, &t0, NULL), 0);
    ASSERT_EQ(keng_time_parse("2032-12-31T13:05:09+07:00", 0, &t1, NULL), 0);
    int days = 0;
    for (int64_t t = t0; t <= t1; t += 86400, days++) {
        char s[KENG_TIME_RFC3339_MAX];
        ASSERT_EQ(keng_time_format(t, 420, s, sizeof s), 0);
        int64_t back;
        int off;
        ASSERT_EQ(keng_time_parse(s, 0, &back, &off), 0);
        ASSERT_EQ(back, t);
        ASSERT_EQ(off, 420);
        ASSERT_STR_CONTAINS(s, "T13:05:09+07:00");
    }
    ASSERT_EQ(days, 34 * 365 + 9); /* 2000,04,08,12,16,20,24,28,32 */
}

TEST(norm_time_format_local)
{
    char out[KENG_TIME_LOCAL_MAX];
    ASSERT_EQ(keng_time_format_local(T_2026_11_23_0730Z, KENG_TZ_VN_MIN, out, sizeof out), 0);
    ASSERT_STR_EQ(out, "14:30 23/11/2026");
    ASSERT_EQ(keng_time_format_local(0, KENG_TZ_VN_MIN, out, sizeof out), 0);
    ASSERT_STR_EQ(out, "07:00 01/01/1970");
    ASSERT_EQ(keng_time_format_local(0, 0, out, 10), -ENOSPC);
}

TEST(norm_time_now)
{
    int64_t now = keng_time_now();
    ASSERT_GT(now, 1700000000); /* after 2023-11 */
    ASSERT_LT(now, 4102444800); /* before 2100 */
}

TEST(norm_utf8)
{
    ASSERT_EQ(keng_utf8_valid("", 0), 1);
    ASSERT_EQ(keng_utf8_valid("abc", 3), 1);
    const char *vi = "Tổ liên gia số 7 – Khu phố 2, Đà Nẵng";
    ASSERT_EQ(keng_utf8_valid(vi, strlen(vi)), 1);
    ASSERT_EQ(keng_utf8_valid("\xF0\x9F\x9A\xA8", 4), 1); /* U+1F6A8 */
    ASSERT_EQ(keng_utf8_valid("\xF4\x8F\xBF\xBF", 4), 1); /* U+10FFFF */
    ASSERT_EQ(keng_utf8_valid("\xEF\xBF\xBF", 3), 1);     /* U+FFFF */
    ASSERT_EQ(keng_utf8_valid("a\0b", 3), 1);
    ASSERT_EQ(keng_utf8_valid("\xC0\xAF", 2), 0);         /* overlong '/' */
    ASSERT_EQ(keng_utf8_valid("\xC1\xBF", 2), 0);         /* overlong */
    ASSERT_EQ(keng_utf8_valid("\xE0\x80\xAF", 3), 0);     /* overlong 3-byte */
    ASSERT_EQ(keng_utf8_valid("\xF0\x80\x80\xAF", 4), 0); /* overlong 4-byte */
    ASSERT_EQ(keng_utf8_valid("\xED\xA0\x80", 3), 0);     /* U+D800 surrogate */
    ASSERT_EQ(keng_utf8_valid("\xED\xBF\xBF", 3), 0);     /* U+DFFF surrogate */
    ASSERT_EQ(keng_utf8_valid("\xF4\x90\x80\x80", 4), 0); /* U+110000 */
    ASSERT_EQ(keng_utf8_valid("\xF5\x80\x80\x80", 4), 0);
    ASSERT_EQ(keng_utf8_valid("\x80", 1), 0);     /* lone continuation */
    ASSERT_EQ(keng_utf8_valid("\xC3", 1), 0);     /* truncated */
    ASSERT_EQ(keng_utf8_valid("\xE1\xBB", 2), 0); /* truncated */
    ASSERT_EQ(keng_utf8_valid("\xC3\x28", 2), 0); /* bad continuation */
    ASSERT_EQ(keng_utf8_valid("\xFF", 1), 0);
    /* The length bounds the check: a valid prefix of a longer string. */
    ASSERT_EQ(keng_utf8_valid("ab\xFF", 2), 1);
}
