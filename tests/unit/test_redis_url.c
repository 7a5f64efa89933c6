/* Unit tests for Redis URL parsing (common/redis_url.c). */
#include "pf_test.h"
#include "redis_url.h"

static struct pf_redis_url u;
static const char *err;

static int parse(const char *s) { return pf_redis_url_parse(s, &u, &err); }

int main(void)
{
    char desc[400];

    PF_CHECK(parse("redis://127.0.0.1:6379") == 0);
    PF_CHECK_STR(u.host, "127.0.0.1");
    PF_CHECK(u.port == 6379 && u.db == 0 && !u.password[0] && !u.user[0] && !u.path[0]);

    PF_CHECK(parse("redis://localhost") == 0);
    PF_CHECK_STR(u.host, "localhost");
    PF_CHECK(u.port == 6379);

    PF_CHECK(parse("redis://:s3cret@redis.internal:6380/2") == 0);
    PF_CHECK_STR(u.host, "redis.internal");
    PF_CHECK_STR(u.password, "s3cret");
    PF_CHECK(u.user[0] == 0 && u.port == 6380 && u.db == 2);

    PF_CHECK(parse("redis://app:p%40ss%3Aw@10.0.0.5/15") == 0);
    PF_CHECK_STR(u.user, "app");
    PF_CHECK_STR(u.password, "p@ss:w");
    PF_CHECK(u.port == 6379 && u.db == 15);

    PF_CHECK(parse("redis://:a@b@host:1") == 0); /* the last @ ends the credentials */
    PF_CHECK_STR(u.password, "a@b");
    PF_CHECK_STR(u.host, "host");
    PF_CHECK(u.port == 1);

    PF_CHECK(parse("redis://[::1]:7000/3") == 0);
    PF_CHECK_STR(u.host, "::1");
    PF_CHECK(u.port == 7000 && u.db == 3);

    PF_CHECK(parse("unix:///var/run/redis/redis.sock") == 0);
    PF_CHECK_STR(u.path, "/var/run/redis/redis.sock");
    PF_CHECK(u.db == 0 && u.host[0] == 0);

    PF_CHECK(parse("unix:///tmp/r.sock?db=4&password=x%20y") == 0);
    PF_CHECK_STR(u.path, "/tmp/r.sock");
    PF_CHECK_STR(u.password, "x y");
    PF_CHECK(u.db == 4);

    PF_CHECK(parse("redis://127.0.0.1:6379/") == 0 && u.db == 0);

    /* Refusals, each with its reason. */
    PF_CHECK(parse("") == -1);
    PF_CHECK_STR(err, "Redis URL is empty");
    PF_CHECK(parse("http://x") == -1);
    PF_CHECK_STR(err, "Redis URL must start with redis:// or unix://");
    PF_CHECK(parse("rediss://x") == -1);
    PF_CHECK_STR(err, "rediss:// (TLS) is not supported: Debian's hiredis 0.14 has no TLS");
    PF_CHECK(parse("redis://host:0") == -1);
    PF_CHECK_STR(err, "port must be a number from 1 to 65535");
    PF_CHECK(parse("redis://host:65536") == -1);
    PF_CHECK(parse("redis://host:12ab") == -1);
    PF_CHECK(parse("redis://host:") == -1);
    PF_CHECK(parse("redis://") == -1);
    PF_CHECK_STR(err, "host is empty or too long");
    PF_CHECK(parse("redis://:pw@") == -1);
    PF_CHECK(parse("redis://pw@host") == -1);
    PF_CHECK_STR(err, "credentials must be written :password@ or user:password@");
    PF_CHECK(parse("redis://host/x") == -1);
    PF_CHECK_STR(err, "database after / must be a number");
    PF_CHECK(parse("redis://:%zz@host") == -1);
    PF_CHECK(parse("redis://:%4@host") == -1);
    PF_CHECK(parse("redis://:%00@host") == -1); /* an escaped NUL would truncate the password */
    PF_CHECK(parse("redis://[::1") == -1);
    PF_CHECK(parse("unix://relative.sock") == -1);
    PF_CHECK(parse("unix:///tmp/s?foo=1") == -1);
    PF_CHECK(parse(NULL) == -1);

    PF_CHECK(parse("redis://:pw@127.0.0.1:6380/1") == 0);
    pf_redis_url_describe(&u, desc, sizeof(desc));
    PF_CHECK_STR(desc, "redis://127.0.0.1:6380/1 (auth)"); /* never prints the password */
    PF_CHECK(parse("redis://[::1]") == 0);
    pf_redis_url_describe(&u, desc, sizeof(desc));
    PF_CHECK_STR(desc, "redis://[::1]:6379/0");
    return pf_test_summary();
}
