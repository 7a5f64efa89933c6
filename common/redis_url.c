/* redis_url.c - see redis_url.h. */
#include "redis_url.h"

#include "percent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copies [s, s+n) into out, decoding %XX; refuses NUL bytes and overflow. */
static int pf_copy_decoded(char *out, size_t outlen, const char *s, size_t n)
{
    return pf_percent_decode(s, n, out, outlen) < 0 ? -1 : 0;
}

static int pf_parse_int(const char *s, size_t n, int min, int max, int *out)
{
    long v = 0;
    size_t i;

    if (n == 0 || n > 9)
        return -1;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

/* unix:///path[?db=N[&password=P]] */
static int pf_parse_unix(const char *rest, struct pf_redis_url *u, const char **err)
{
    const char *q = strchr(rest, '?');
    size_t plen = q ? (size_t)(q - rest) : strlen(rest);

    if (plen == 0 || rest[0] != '/') {
        *err = "unix URL needs an absolute socket path (unix:///path/to/redis.sock)";
        return -1;
    }
    if (pf_copy_decoded(u->path, sizeof(u->path), rest, plen)) {
        *err = "unix socket path is too long or badly escaped";
        return -1;
    }
    while (q && *q) {
        const char *key = q + 1, *amp = strchr(key, '&'), *eq = strchr(key, '=');
        size_t kvlen = amp ? (size_t)(amp - key) : strlen(key);
        if (!eq || eq > key + kvlen) {
            *err = "unix URL query must be db=N or password=P";
            return -1;
        }
        if ((size_t)(eq - key) == 2 && !strncmp(key, "db", 2)) {
            if (pf_parse_int(eq + 1, kvlen - 3, 0, 1000000, &u->db)) {
                *err = "db must be a number";
                return -1;
            }
        } else if ((size_t)(eq - key) == 8 && !strncmp(key, "password", 8)) {
            if (pf_copy_decoded(u->password, sizeof(u->password), eq + 1, kvlen - 9)) {
                *err = "password is too long or badly escaped";
                return -1;
            }
        } else {
            *err = "unix URL query must be db=N or password=P";
            return -1;
        }
        q = amp;
    }
    return 0;
}

/* [user:password@] part; n is its length without the '@'. */
static int pf_parse_userinfo(const char *s, size_t n, struct pf_redis_url *u, const char **err)
{
    const char *colon = memchr(s, ':', n);

    if (!colon) {
        /* "redis://password@host" is a common slip; Redis URLs put the password after a colon. */
        *err = "credentials must be written :password@ or user:password@";
        return -1;
    }
    if (pf_copy_decoded(u->user, sizeof(u->user), s, (size_t)(colon - s)) ||
        pf_copy_decoded(u->password, sizeof(u->password), colon + 1, n - (size_t)(colon - s) - 1)) {
        *err = "user or password is too long or badly escaped";
        return -1;
    }
    return 0;
}

static int pf_parse_hostport(const char *s, size_t n, struct pf_redis_url *u, const char **err)
{
    const char *port = NULL;
    size_t hlen = n;

    if (n && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close) {
            *err = "IPv6 host is missing its closing ]";
            return -1;
        }
        hlen = (size_t)(close - s) - 1;
        if (hlen == 0 || hlen >= sizeof(u->host)) {
            *err = "bad IPv6 host";
            return -1;
        }
        memcpy(u->host, s + 1, hlen);
        u->host[hlen] = 0;
        if ((size_t)(close - s) + 1 < n) {
            if (close[1] != ':') {
                *err = "unexpected text after IPv6 host";
                return -1;
            }
            port = close + 2;
        }
    } else {
        const char *colon = memchr(s, ':', n);
        if (colon) {
            hlen = (size_t)(colon - s);
            port = colon + 1;
        }
        if (hlen == 0 || hlen >= sizeof(u->host)) {
            *err = "host is empty or too long";
            return -1;
        }
        memcpy(u->host, s, hlen);
        u->host[hlen] = 0;
    }
    if (port && pf_parse_int(port, (size_t)(s + n - port), 1, 65535, &u->port)) {
        *err = "port must be a number from 1 to 65535";
        return -1;
    }
    return 0;
}

static int pf_parse_tcp(const char *rest, struct pf_redis_url *u, const char **err)
{
    const char *slash = strchr(rest, '/');
    size_t alen = slash ? (size_t)(slash - rest) : strlen(rest);
    const char *at = NULL, *p;

    for (p = rest; p < rest + alen; p++)
        if (*p == '@')
            at = p; /* the last '@' ends the credentials: passwords may contain '@' escaped or not */
    if (at) {
        if (pf_parse_userinfo(rest, (size_t)(at - rest), u, err))
            return -1;
        alen -= (size_t)(at - rest) + 1;
        rest = at + 1;
    }
    if (pf_parse_hostport(rest, alen, u, err))
        return -1;
    if (slash && slash[1] && pf_parse_int(slash + 1, strlen(slash + 1), 0, 1000000, &u->db)) {
        *err = "database after / must be a number";
        return -1;
    }
    return 0;
}

int pf_redis_url_parse(const char *url, struct pf_redis_url *out, const char **err)
{
    const char *dummy;

    if (!err)
        err = &dummy;
    memset(out, 0, sizeof(*out));
    out->port = 6379;
    if (!url || !*url) {
        *err = "Redis URL is empty";
        return -1;
    }
    if (!strncmp(url, "redis://", 8))
        return pf_parse_tcp(url + 8, out, err);
    if (!strncmp(url, "unix://", 7))
        return pf_parse_unix(url + 7, out, err);
    if (!strncmp(url, "rediss://", 9)) {
        *err = "rediss:// (TLS) is not supported: Debian's hiredis 0.14 has no TLS";
        return -1;
    }
    *err = "Redis URL must start with redis:// or unix://";
    return -1;
}

void pf_redis_url_describe(const struct pf_redis_url *u, char *out, unsigned long outlen)
{
    if (u->path[0])
        snprintf(out, outlen, "unix://%s?db=%d%s", u->path, u->db, u->password[0] ? " (auth)" : "");
    else if (strchr(u->host, ':'))
        snprintf(out, outlen, "redis://[%s]:%d/%d%s", u->host, u->port, u->db,
                 u->password[0] ? " (auth)" : "");
    else
        snprintf(out, outlen, "redis://%s:%d/%d%s", u->host, u->port, u->db,
                 u->password[0] ? " (auth)" : "");
}
