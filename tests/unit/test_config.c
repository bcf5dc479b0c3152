/* Tests for config: where the public URL of links comes from when no one names it. */
#include "test.h"

#include "keng/config.h"

#include <errno.h>
#include <unistd.h>

/* Loads flags the way kengd does (argv[0] first) into a fresh config. */
static void load(keng_config *c, const char *const *flags)
{
    const char *argv[16] = {"kengd"};
    int argc = 1;
    for (int i = 0; flags && flags[i] && argc < 15; i++)
        argv[argc++] = flags[i];
    unsetenv("KENG_PUBLIC_URL");
    unsetenv("KENG_LISTEN");
    unsetenv("KENG_CONFIG");
    keng_config_init(c);
    char err[256];
    if (keng_config_load(c, argc, (char **)argv, err, sizeof err)) TEST_FAIL("load: %s", err);
}

static void expect_derived(const char *listen, int bound_port, const char *want, int want_wild)
{
    keng_config c;
    const char *flags[] = {"--listen", listen, NULL};
    load(&c, flags);
    int wild = -1;
    ASSERT_EQ(keng_config_derive_public_url(&c, bound_port, &wild), 1);
    ASSERT_STR_EQ(c.public_url, want);
    ASSERT_EQ(wild, want_wild);
    keng_config_free(&c);
}

/* The review's case: --listen 127.0.0.1:9090 and links still said :8080. */
TEST(config_public_url_follows_listen)
{
    expect_derived("127.0.0.1:9090", 9090, "http://127.0.0.1:9090", 0);
    expect_derived("10.1.2.3:8443", 8443, "http://10.1.2.3:8443", 0);
    expect_derived("[::1]:9090", 9090, "http://[::1]:9090", 0);
    /* port 0 picks one: the bound port is what counts */
    expect_derived("127.0.0.1:0", 43210, "http://127.0.0.1:43210", 0);
    /* no bound port known yet: the one in --listen */
    expect_derived("127.0.0.1:9090", 0, "http://127.0.0.1:9090", 0);
}

TEST(config_public_url_wildcard_listen_uses_loopback)
{
    expect_derived("0.0.0.0:9090", 9090, "http://127.0.0.1:9090", 1);
    expect_derived("[::]:9090", 9090, "http://127.0.0.1:9090", 1);
}

TEST(config_public_url_given_is_kept)
{
    keng_config c;
    const char *flags[] = {"--listen", "0.0.0.0:9090", "--public-url",
                           "https://canhbao.example.vn/", NULL};
    load(&c, flags);
    int wild = -1;
    ASSERT_EQ(keng_config_derive_public_url(&c, 9090, &wild), 0);
    ASSERT_STR_EQ(c.public_url, "https://canhbao.example.vn");
    ASSERT_EQ(wild, 0);
    keng_config_free(&c);

    /* from the environment */
    keng_config_init(&c);
    setenv("KENG_PUBLIC_URL", "http://keng.lan:80", 1);
    char err[256];
    const char *argv[] = {"kengd", "--listen", "127.0.0.1:9090"};
    ASSERT_EQ(keng_config_load(&c, 3, (char **)argv, err, sizeof err), 0);
    ASSERT_EQ(keng_config_derive_public_url(&c, 9090, NULL), 0);
    ASSERT_STR_EQ(c.public_url, "http://keng.lan:80");
    keng_config_free(&c);
    unsetenv("KENG_PUBLIC_URL");

    /* from the config file */
    char path[64];
    snprintf(path, sizeof path, "/tmp/keng-config-test-%d.json", (int)getpid());
    FILE *f = fopen(path, "w");
    ASSERT_NOT_NULL(f);
    fputs("{\"listen\": \"127.0.0.1:9090\", \"public_url\": \"https://a.example\"}", f);
    fclose(f);
    const char *file[] = {"--config", path, NULL};
    load(&c, file);
    unlink(path);
    ASSERT_STR_EQ(c.listen, "127.0.0.1:9090");
    ASSERT_EQ(keng_config_derive_public_url(&c, 9090, NULL), 0);
    ASSERT_STR_EQ(c.public_url, "https://a.example");
    keng_config_free(&c);
}

/* Without --listen either, the default listen address gives the old default URL. */
TEST(config_public_url_default)
{
    keng_config c;
    load(&c, NULL);
    ASSERT_EQ(keng_config_derive_public_url(&c, 8080, NULL), 1);
    ASSERT_STR_EQ(c.public_url, "http://127.0.0.1:8080");
    keng_config_free(&c);
}

/* A CA file for webhooks that cannot be read stops kengd at start, naming it, rather than
 * failing every TLS webhook of the first alert. */
TEST(config_unreadable_webhook_ca_file_is_refused_at_start)
{
    const char *argv[] = {"kengd", "--webhook-ca-file", "/nonexistent/ward-ca.pem", NULL};
    unsetenv("KENG_CONFIG");
    unsetenv("KENG_WEBHOOK_CA_FILE");
    keng_config c;
    keng_config_init(&c);
    char err[512] = "";
    ASSERT_EQ(keng_config_load(&c, 3, (char **)argv, err, sizeof err), -EINVAL);
    ASSERT_STR_CONTAINS(err, "channels.webhook.ca_file");
    ASSERT_STR_CONTAINS(err, "/nonexistent/ward-ca.pem");
    ASSERT_STR_CONTAINS(err, "No such file");
    keng_config_free(&c);
    /* A readable one is taken. */
    char path[] = "/tmp/keng-ca-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    close(fd);
    const char *ok[] = {"kengd", "--webhook-ca-file", path, NULL};
    keng_config_init(&c);
    ASSERT_EQ(keng_config_load(&c, 3, (char **)ok, err, sizeof err), 0);
    ASSERT_STR_EQ(c.webhook_ca_file, path);
    keng_config_free(&c);
    unlink(path);
}
