/* opts.h - the publisher's settings and where they come from (flags, environment, defaults).
 *
 * Owns: defaults, the PUSH_REDIS_URL / PUSH_PREFIX environment variables, value validation and
 * the --help text. Must not: open sockets, touch Redis or read stdin. A flag always wins over the
 * environment, which wins over the default. */
#ifndef PF_PUB_OPTS_H
#define PF_PUB_OPTS_H

#include <stddef.h>

#include "redis_url.h"

#define PF_PUB_DEFAULT_REDIS    "redis://127.0.0.1:6379"
#define PF_PUB_DEFAULT_PREFIX   "push:"
#define PF_PUB_DEFAULT_LISTEN   "127.0.0.1:8081"
#define PF_PUB_DEFAULT_MAX_BODY 1048576
#define PF_PUB_MAX_BODY_LIMIT   (1024UL * 1024 * 1024)
/* Same bound as the gateway's prefix buffer, so a prefix accepted here works there too. */
#define PF_PUB_PREFIX_MAX 63

/* Exit codes, documented in --help. */
enum pf_pub_exit {
    PF_EXIT_DONE = -1, /* --help or --version printed: stop, exit 0 */
    PF_EXIT_OK = 0,
    PF_EXIT_FAIL = 1,  /* Redis (or stdout) failure */
    PF_EXIT_USAGE = 2, /* bad flag, bad channel, bad URL */
};

struct pf_pub_opts {
    const char *redis_url;
    const char *redis_from; /* "--redis", "PUSH_REDIS_URL" or "default": named in errors */
    struct pf_redis_url redis;
    char redis_desc[400]; /* printable, without the password */
    const char *prefix;
    size_t prefix_len;
    const char *prefix_from;
    /* serve only */
    char listen_host[256];
    int listen_port;
    size_t max_body;
    char *api_key; /* heap; NULL = no key required */
    size_t api_key_len;
};

/* Fills defaults, then the environment. */
void pf_opts_init(struct pf_pub_opts *o);
void pf_opts_free(struct pf_pub_opts *o);
void pf_opts_set_redis(struct pf_pub_opts *o, const char *url);
void pf_opts_set_prefix(struct pf_pub_opts *o, const char *prefix);
/* Validates the Redis URL and the prefix; logs the reason and returns PF_EXIT_USAGE if bad. */
int pf_opts_finish(struct pf_pub_opts *o);

/* HOST:PORT or [IPv6]:PORT; port 0 means any free port. Returns 0, or -1 with *err set. */
int pf_opts_parse_listen(struct pf_pub_opts *o, const char *s, const char **err);
/* A decimal byte count in [1, PF_PUB_MAX_BODY_LIMIT]. Returns 0 or -1. */
int pf_opts_parse_size(const char *s, size_t *out);

void pf_opts_usage(void);
void pf_opts_version(void);

#endif
