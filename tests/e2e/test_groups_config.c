/* End to end: the ward-wide default relay timeout (alerts.relay_timeout_s) applies to groups
 * that do not give their own, from files and from the API. */
#include "../e2e_util.h"
#include "../test.h"

#include <stdlib.h>
#include <unistd.h>

TEST_TIMEOUT(e2e_default_relay_timeout_from_config, 30)
{
    char dir[] = "/tmp/keng-rt-XXXXXX";
    ASSERT_NOT_NULL(mkdtemp(dir));
    char p[512];
    static const char own[] = "{\"id\":\"to-1\",\"name\":\"Tổ 1\",\"kind\":\"inter_household\","
                              "\"relay\":\"leader\",\"leader\":\"hh-1\",\"relay_timeout\":120,"
                              "\"members\":[{\"id\":\"hh-1\",\"name\":\"Hộ ông Tư\"}]}";
    static const char none[] = "{\"id\":\"to-2\",\"name\":\"Tổ 2\",\"kind\":\"inter_household\","
                               "\"relay\":\"leader\",\"leader\":\"hh-2\","
                               "\"members\":[{\"id\":\"hh-2\",\"name\":\"Hộ bà Năm\"}]}";
    snprintf(p, sizeof p, "%s/to-1.json", dir);
    write_file(p, own, sizeof own - 1);
    snprintf(p, sizeof p, "%s/to-2.json", dir);
    write_file(p, none, sizeof none - 1);
    const char *extra[] = {"--relay-timeout-s", "300", NULL};
    kengd k;
    kengd_start(&k, dir, extra);
    resp r;
    http(&k, "GET", "/v1/groups/to-1", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(jnum(r.json, "relay_timeout"), 120); /* its own */
    resp_free(&r);
    http(&k, "GET", "/v1/groups/to-2", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(jnum(r.json, "relay_timeout"), 300); /* the ward's */
    resp_free(&r);
    http_json(&k, "POST", "/v1/groups",
              "{\"id\":\"cam-do\",\"name\":\"Tiệm cầm đồ\",\"kind\":\"pawnshop\"}", &r);
    ASSERT_EQ(r.status, 201);
    resp_free(&r);
    http(&k, "GET", "/v1/groups/cam-do", NULL, NULL, NULL, 0, &r);
    ASSERT_EQ(jnum(r.json, "relay_timeout"), 300);
    resp_free(&r);
    kengd_stop(&k);
    kengd_cleanup(&k);
    rm_rf(dir);
}
