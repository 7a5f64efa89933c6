/* redis_url.h - parses where Redis is.
 *
 * Accepted forms:
 *   redis://host[:port][/db]           redis://:password@host[:port][/db]
 *   redis://user:password@host[:port][/db]   (Redis 6 ACL user)
 *   unix:///path/to/redis.sock[?db=N[&password=P]]
 * host may be a bracketed IPv6 literal ([::1]). Percent-escapes (%XX) are decoded in user and
 * password. Owns: that grammar. Must not: connect, resolve or log. */
#ifndef PF_REDIS_URL_H
#define PF_REDIS_URL_H

struct pf_redis_url {
    char host[256];   /* empty for unix sockets */
    int port;         /* 6379 by default */
    char path[108];   /* unix socket path, empty for TCP */
    char user[128];   /* empty: no ACL user */
    char password[256]; /* empty: no AUTH */
    int db;           /* 0 by default */
};

/* Returns 0 on success; on failure returns -1 and sets *err to a static reason. */
int pf_redis_url_parse(const char *url, struct pf_redis_url *out, const char **err);

/* Writes a printable form without the password ("redis://127.0.0.1:6379/0"). */
void pf_redis_url_describe(const struct pf_redis_url *u, char *out, unsigned long outlen);

#endif
