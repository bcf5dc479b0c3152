#include "keng/audit.h"

#include "keng/auth.h"
#include "keng/buf.h"
#include "keng/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define AUDIT_GENESIS "0000000000000000000000000000000000000000000000000000000000000000"

/* The hashed form of an entry: one line, fields separated by '\n'-free JSON strings. */
static int entry_hash(const char *prev, int64_t seq, int64_t at, const char *actor,
                      const char *action, const char *subject, const char *detail, char out[65])
{
    cJSON *arr = cJSON_CreateArray();
    cJSON_AddItemToArray(arr, cJSON_CreateString(prev));
    cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)seq));
    cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)at));
    cJSON_AddItemToArray(arr, cJSON_CreateString(actor));
    cJSON_AddItemToArray(arr, cJSON_CreateString(action));
    cJSON_AddItemToArray(arr, cJSON_CreateString(subject));
    cJSON_AddItemToArray(arr, cJSON_CreateString(detail));
    char *s = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    if (!s) return -ENOMEM;
    keng_sha256_hex(s, strlen(s), out);
    cJSON_free(s);
    return 0;
}

int64_t keng_audit_append(keng_store *st, const char *actor, const char *action,
                          const char *subject, cJSON *detail_take)
{
    char *detail = detail_take ? cJSON_PrintUnformatted(detail_take) : NULL;
    cJSON_Delete(detail_take);
    const char *d = detail ? detail : "{}";
    int rc = keng_store_begin(st);
    if (rc) {
        cJSON_free(detail);
        return rc;
    }
    char prev[65] = AUDIT_GENESIS, hash[65];
    int64_t seq = 1;
    sqlite3_stmt *s = keng_store_stmt(st, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1");
    if (s && sqlite3_step(s) == SQLITE_ROW) {
        seq = sqlite3_column_int64(s, 0) + 1;
        snprintf(prev, sizeof prev, "%s", keng_store_text(s, 1));
    }
    if (s) sqlite3_reset(s);
    int64_t at = (int64_t)time(NULL);
    rc = entry_hash(prev, seq, at, actor, action, subject ? subject : "", d, hash);
    s = keng_store_stmt(st, "INSERT INTO audit(seq, at, actor, action, subject, detail, prev_hash,"
                            " hash) VALUES (?,?,?,?,?,?,?,?)");
    if (!rc && s) {
        sqlite3_bind_int64(s, 1, seq);
        sqlite3_bind_int64(s, 2, at);
        sqlite3_bind_text(s, 3, actor, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 4, action, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 5, subject ? subject : "", -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 6, d, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 7, prev, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 8, hash, -1, SQLITE_TRANSIENT);
        int r = sqlite3_step(s);
        sqlite3_reset(s);
        rc = r == SQLITE_DONE ? 0 : keng_store_errno(r);
    } else if (!rc) {
        rc = -EIO;
    }
    cJSON_free(detail);
    if (rc) {
        keng_store_rollback(st);
        keng_error("audit: could not append %s %s", action, subject ? subject : "");
        return rc;
    }
    rc = keng_store_commit(st);
    return rc ? rc : seq;
}

cJSON *keng_audit_list(keng_store *st, int64_t since, int limit)
{
    cJSON *arr = cJSON_CreateArray();
    sqlite3_stmt *s = keng_store_stmt(st, "SELECT seq, at, actor, action, subject, detail,"
                                          " prev_hash, hash FROM audit WHERE seq > ?"
                                          " ORDER BY seq LIMIT ?");
    if (!s) return arr;
    sqlite3_bind_int64(s, 1, since);
    sqlite3_bind_int(s, 2, limit);
    while (sqlite3_step(s) == SQLITE_ROW) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "seq", (double)sqlite3_column_int64(s, 0));
        cJSON_AddNumberToObject(e, "at", (double)sqlite3_column_int64(s, 1));
        cJSON_AddStringToObject(e, "actor", keng_store_text(s, 2));
        cJSON_AddStringToObject(e, "action", keng_store_text(s, 3));
        cJSON_AddStringToObject(e, "subject", keng_store_text(s, 4));
        cJSON *d = cJSON_Parse(keng_store_text(s, 5));
        cJSON_AddItemToObject(e, "detail", d ? d : cJSON_CreateObject());
        cJSON_AddStringToObject(e, "prev_hash", keng_store_text(s, 6));
        cJSON_AddStringToObject(e, "hash", keng_store_text(s, 7));
        cJSON_AddItemToArray(arr, e);
    }
    sqlite3_reset(s);
    return arr;
}

int64_t keng_audit_verify(keng_store *st, char *why, size_t whylen)
{
    sqlite3_stmt *s = keng_store_stmt(st, "SELECT seq, at, actor, action, subject, detail,"
                                          " prev_hash, hash FROM audit ORDER BY seq");
    if (!s) return -EIO;
    char prev[65] = AUDIT_GENESIS, hash[65];
    int64_t expect = 1, bad = 0;
    while (!bad && sqlite3_step(s) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(s, 0);
        if (seq != expect) {
            snprintf(why, whylen, "entry %lld is missing", (long long)expect);
            bad = expect;
            break;
        }
        if (strcmp(keng_store_text(s, 6), prev) != 0) {
            snprintf(why, whylen, "entry %lld does not follow entry %lld", (long long)seq,
                     (long long)seq - 1);
            bad = seq;
            break;
        }
        entry_hash(prev, seq, sqlite3_column_int64(s, 1), keng_store_text(s, 2),
                   keng_store_text(s, 3), keng_store_text(s, 4), keng_store_text(s, 5), hash);
        if (strcmp(hash, keng_store_text(s, 7)) != 0) {
            snprintf(why, whylen, "entry %lld was altered (its hash does not match)",
                     (long long)seq);
            bad = seq;
            break;
        }
        memcpy(prev, hash, sizeof prev);
        expect++;
    }
    sqlite3_reset(s);
    return bad;
}
