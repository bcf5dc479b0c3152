/* End to end: kill -9 in the middle of a burst of writes loses nothing that was acknowledged and
 * leaves a database SQLite itself calls sound (PRAGMA integrity_check through libsqlite3). */
#include "../e2e_util.h"
#include "../test.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define WRITERS 4

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

/* A writer process: POST /v1/members as fast as it can on one keep-alive connection; after each
 * 201 (the response read in full, so kengd has committed) the id goes to the ack file. Ends when
 * kengd is gone. */
static void writer(const kengd *k, int w, const char *acks)
{
    int fd = open(acks, O_WRONLY | O_APPEND | O_CREAT, 0600);
    if (fd < 0) _exit(2);
    CURL *c = curl_easy_init();
    if (!c) _exit(2);
    char url[128], auth[128], body[256], line[64];
    snprintf(url, sizeof url, "%s/v1/members", k->url);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", k->token);
    struct curl_slist *h = curl_slist_append(NULL, auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    for (int i = 0; i < 100000; i++) {
        char id[48];
        snprintf(id, sizeof id, "crash-%d-%05d", w, i);
        snprintf(body, sizeof body,
                 "{\"id\":\"%s\",\"name\":\"Hộ thử nghiệm %d-%d\",\"address\":\"%d Lê Lợi\","
                 "\"phone\":\"+8490%07d\"}",
                 id, w, i, i, w * 100000 + i);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        if (curl_easy_perform(c) != CURLE_OK) break; /* kengd was killed */
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (status != 201) _exit(3);
        int n = snprintf(line, sizeof line, "%s\n", id);
        if (write(fd, line, (size_t)n) != n) _exit(2); /* O_APPEND: whole lines */
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    close(fd);
    _exit(0);
}

static size_t count_lines(const char *path)
{
    char *s = read_file_all(path, NULL);
    size_t n = 0;
    for (const char *p = s; p && *p; p++)
        n += *p == '\n';
    free(s);
    return n;
}

TEST_TIMEOUT(e2e_kill9_during_write_burst_loses_no_acknowledged_write, 90)
{
    kengd k;
    /* no access log: the burst is about the store, not about stderr */
    const char *extra[] = {"--access-log", "off", NULL};
    kengd_start(&k, NULL, extra);
    char acks[512];
    snprintf(acks, sizeof acks, "%s/acks.txt", k.dir);
    pid_t pids[WRITERS];
    fflush(NULL);
    for (int w = 0; w < WRITERS; w++) {
        pids[w] = fork();
        ASSERT(pids[w] >= 0);
        if (pids[w] == 0) writer(&k, w, acks);
    }
    /* Let the burst run well past its start, then kill kengd in the middle of it. */
    long long t0 = now_ms();
    while (count_lines(acks) < 1000 && now_ms() - t0 < 30000)
        usleep(20000);
    size_t before = count_lines(acks);
    kengd_kill9(&k);
    for (int w = 0; w < WRITERS; w++) {
        int st;
        ASSERT_EQ(waitpid(pids[w], &st, 0), pids[w]);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            TEST_FAIL("writer %d: status %d (3: a POST got another answer than 201)", w,
                      WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    }
    ASSERT_GE(before, 1000); /* the kill did come during the burst */

    char why[512];
    if (!db_integrity_ok(k.dir, why, sizeof why)) TEST_FAIL("after kill -9: %s", why);

    /* Every acknowledged member is there after a restart. */
    kengd_restart(&k, extra);
    char *list = read_file_all(acks, NULL);
    ASSERT_NOT_NULL(list);
    size_t checked = 0;
    for (char *id = strtok(list, "\n"); id; id = strtok(NULL, "\n")) {
        char path[128];
        snprintf(path, sizeof path, "/v1/members/%s", id);
        resp r;
        http(&k, "GET", path, NULL, NULL, NULL, 0, &r);
        if (r.status != 200) TEST_FAIL("member %s was acknowledged with 201 but is gone: %ld", id, r.status);
        resp_free(&r);
        checked++;
    }
    free(list);
    ASSERT_GE(checked, before);
    kengd_stop(&k);
    if (!db_integrity_ok(k.dir, why, sizeof why)) TEST_FAIL("after restart: %s", why);
    kengd_cleanup(&k);
}

/* The check itself must be able to fail: a damaged page is reported, not waved through. */
TEST_TIMEOUT(e2e_integrity_check_sees_a_damaged_database, 30)
{
    kengd k;
    kengd_start(&k, NULL, NULL);
    kengd_stop(&k);
    char why[512];
    if (!db_integrity_ok(k.dir, why, sizeof why)) TEST_FAIL("fresh database: %s", why);
    char path[600];
    snprintf(path, sizeof path, "%s/keng.db", k.dir);
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_GT(st.st_size, 4 * 4096);
    int fd = open(path, O_WRONLY);
    ASSERT(fd >= 0);
    unsigned char junk[64];
    uint32_t s = 1;
    for (size_t i = 0; i < sizeof junk; i++) {
        s ^= s << 13, s ^= s >> 17, s ^= s << 5;
        junk[i] = (unsigned char)s;
    }
    /* page 2: the first table's root, right after the schema page; its header and cell
     * pointers become noise (byte 0, the page type, an invalid 0xFF) */
    junk[0] = 0xFF;
    ASSERT_EQ(pwrite(fd, junk, 64, 4096), 64);
    close(fd);
    ASSERT_EQ(db_integrity_ok(k.dir, why, sizeof why), 0);
    ASSERT_NE(strcmp(why, "ok"), 0);
    kengd_cleanup(&k);
}
