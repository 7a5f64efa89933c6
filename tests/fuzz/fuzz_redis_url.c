/* fuzz_redis_url.c - libFuzzer harness for common/redis_url.c.
 *
 * The input, made NUL-terminated, is parsed as a Redis URL. Checks: no crash or overflow; a
 * failure always has a reason; on success every field is NUL-terminated, port is 1..65535, db is
 * 0..1000000 and exactly one of host (TCP) or path (unix socket) is set; describe() never prints
 * the password (when it is 4+ bytes and not part of what describe prints anyway), truncates
 * safely into a small buffer, and for a plain host its output parses back to the same place. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "redis_url.h"

#define FIELD_TERMINATED(f) (memchr((f), 0, sizeof(f)) != NULL)

/* Hosts describe() can print unambiguously: names, IPv4 and IPv6 literals. */
static int plain_host(const char *h)
{
    return h[0] && strspn(h, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-:") ==
                       strlen(h);
}

static void check_describe(const struct pf_redis_url *u)
{
    struct pf_redis_url masked = *u, back;
    char out[1024], rest[1024], small[12];
    size_t pwlen = strlen(u->password);

    pf_redis_url_describe(u, out, sizeof(out));
    PF_FUZZ_ASSERT(FIELD_TERMINATED(out));
    /* describe() may show that there is a password, never what it is: what it prints with the
     * password replaced by a marker is "the rest". */
    if (pwlen) {
        memset(masked.password, 0, sizeof(masked.password));
        masked.password[0] = '*';
    }
    pf_redis_url_describe(&masked, rest, sizeof(rest));
    if (pwlen >= 4 && !strstr(rest, u->password))
        PF_FUZZ_ASSERT(strstr(out, u->password) == NULL);
    PF_FUZZ_ASSERT(strcmp(out, rest) == 0); /* the output does not depend on the password */

    memset(small, 'x', sizeof(small));
    pf_redis_url_describe(u, small, sizeof(small));
    PF_FUZZ_ASSERT(memchr(small, 0, sizeof(small)) && strncmp(small, out, strlen(small)) == 0);

    if (!u->path[0] && plain_host(u->host)) {
        char *auth = strstr(out, " (auth)");
        const char *err = NULL;
        if (auth)
            *auth = 0;
        PF_FUZZ_ASSERT(pf_redis_url_parse(out, &back, &err) == 0);
        PF_FUZZ_ASSERT(strcmp(back.host, u->host) == 0 && back.port == u->port &&
                       back.db == u->db && back.password[0] == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = malloc(size + 1);
    struct pf_redis_url u, again;
    const char *err = NULL;
    int r;

    PF_FUZZ_ASSERT(url);
    memcpy(url, data, size);
    url[size] = 0;
    r = pf_redis_url_parse(url, &u, &err);
    PF_FUZZ_ASSERT(r == 0 || r == -1);
    PF_FUZZ_ASSERT(pf_redis_url_parse(url, &again, NULL) == r); /* err may be NULL */
    if (r) {
        PF_FUZZ_ASSERT(err && err[0]);
    } else {
        PF_FUZZ_ASSERT(FIELD_TERMINATED(u.host) && FIELD_TERMINATED(u.path) &&
                       FIELD_TERMINATED(u.user) && FIELD_TERMINATED(u.password));
        PF_FUZZ_ASSERT(u.port >= 1 && u.port <= 65535);
        PF_FUZZ_ASSERT(u.db >= 0 && u.db <= 1000000);
        PF_FUZZ_ASSERT((u.host[0] != 0) != (u.path[0] != 0));
        if (u.path[0])
            PF_FUZZ_ASSERT(u.path[0] == '/' && u.user[0] == 0 && u.port == 6379);
        PF_FUZZ_ASSERT(memcmp(&u, &again, sizeof(u)) == 0);
        check_describe(&u);
    }
    free(url);
    return 0;
}
