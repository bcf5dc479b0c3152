/* End to end: GET answers kept between database changes (api.c) are never stale and never cross
 * from one caller's scope to another's. */
#include "../e2e_util.h"
#include "../test.h"

static void get(kengd *k, const char *path, const char *token, resp *r)
{
    http(k, "GET", path, token, NULL, NULL, 0, r);
}

TEST_TIMEOUT(e2e_cached_reads_follow_every_change_and_scope, 30)
{
    kengd k;
    kengd_start(&k, NULL, NULL);
    resp r;
    /* Read twice (the second from the cache), then change the group: the next read sees it. */
    for (int i = 0; i < 2; i++) {
        get(&k, "/v1/groups/to-lien-gia-07", NULL, &r);
        ASSERT_EQ(r.status, 200);
        ASSERT_STR_EQ(jstr(r.json, "name"), "Tổ liên gia số 7 – Khu phố 2");
        resp_free(&r);
    }
    get(&k, "/v1/groups/to-lien-gia-07", NULL, &r);
    int before = (int)jnum(r.json, "member_count");
    resp_free(&r);
    get(&k, "/v1/members?group=to-lien-gia-07", NULL, &r);
    int total = (int)jnum(r.json, "total");
    resp_free(&r);
    http_json(&k, "POST", "/v1/members",
              "{\"id\":\"hh-2-099\",\"name\":\"Hộ bà Lê Thị Hoa\",\"address\":\"K45/12 Núi Thành\","
              "\"groups\":[\"to-lien-gia-07\"],\"contacts\":[{\"type\":\"file\"}]}",
              &r);
    ASSERT_EQ(r.status, 201);
    resp_free(&r);
    get(&k, "/v1/groups/to-lien-gia-07", NULL, &r);
    ASSERT_EQ(jnum(r.json, "member_count"), before + 1);
    resp_free(&r);
    get(&k, "/v1/members?group=to-lien-gia-07", NULL, &r);
    ASSERT_EQ(jnum(r.json, "total"), total + 1);
    resp_free(&r);
    get(&k, "/v1/members/hh-2-099", NULL, &r);
    ASSERT_STR_EQ(jstr(r.json, "name"), "Hộ bà Lê Thị Hoa");
    resp_free(&r);
    http_json(&k, "PUT", "/v1/members/hh-2-099",
              "{\"name\":\"Hộ ông Trần Văn Hùng\",\"groups\":[\"to-lien-gia-07\"],"
              "\"contacts\":[{\"type\":\"file\"}]}",
              &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    get(&k, "/v1/members/hh-2-099", NULL, &r);
    ASSERT_STR_EQ(jstr(r.json, "name"), "Hộ ông Trần Văn Hùng");
    resp_free(&r);
    /* Scope: an admin's read of another group is never served to a leader. */
    http_json(&k, "POST", "/v1/tokens", "{\"role\":\"leader\",\"group\":\"to-lien-gia-07\"}", &r);
    ASSERT_EQ(r.status, 201);
    char leader[64];
    snprintf(leader, sizeof leader, "%s", jstr(r.json, "token"));
    resp_free(&r);
    get(&k, "/v1/groups/khu-pho-2", NULL, &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    for (int i = 0; i < 2; i++) {
        get(&k, "/v1/groups/khu-pho-2", leader, &r);
        ASSERT_EQ(r.status, 403);
        resp_free(&r);
        get(&k, "/v1/groups/to-lien-gia-07", leader, &r);
        ASSERT_EQ(r.status, 200);
        ASSERT_EQ(jnum(r.json, "member_count"), before + 1);
        resp_free(&r);
    }
    get(&k, "/v1/groups/to-lien-gia-07", "", &r); /* no token: never from the cache */
    ASSERT_EQ(r.status, 401);
    resp_free(&r);
    kengd_stop(&k);
    kengd_cleanup(&k);
}
