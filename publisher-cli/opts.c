/* opts.c - see opts.h. */
#include "opts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

void pf_opts_init(struct pf_pub_opts *o)
{
    const char *env, *ignored;

    memset(o, 0, sizeof(*o));
    o->redis_url = PF_PUB_DEFAULT_REDIS;
    o->redis_from = "default";
    o->prefix = PF_PUB_DEFAULT_PREFIX;
    o->prefix_from = "default";
    o->max_body = PF_PUB_DEFAULT_MAX_BODY;
    /* The default listen string is a constant that always parses. */
    (void)pf_opts_parse_listen(o, PF_PUB_DEFAULT_LISTEN, &ignored);
    if ((env = getenv("PUSH_REDIS_URL")) != NULL) {
        o->redis_url = env;
        o->redis_from = "PUSH_REDIS_URL";
    }
    if ((env = getenv("PUSH_PREFIX")) != NULL) {
        o->prefix = env;
        o->prefix_from = "PUSH_PREFIX";
    }
}

void pf_opts_free(struct pf_pub_opts *o)
{
    if (o->api_key) {
        /* The key should not outlive its use in freed heap memory. */
        memset(o->api_key, 0, o->api_key_len);
        free(o->api_key);
    }
    o->api_key = NULL;
    o->api_key_len = 0;
}

void pf_opts_set_redis(struct pf_pub_opts *o, const char *url)
{
    o->redis_url = url;
    o->redis_from = "--redis";
}

void pf_opts_set_prefix(struct pf_pub_opts *o, const char *prefix)
{
    o->prefix = prefix;
    o->prefix_from = "--prefix";
}

int pf_opts_finish(struct pf_pub_opts *o)
{
    const char *err = NULL;

    if (pf_redis_url_parse(o->redis_url, &o->redis, &err)) {
        /* The URL itself is not echoed: it may carry a password. */
        pf_error("bad Redis URL (from %s): %s", o->redis_from, err);
        return PF_EXIT_USAGE;
    }
    pf_redis_url_describe(&o->redis, o->redis_desc, sizeof(o->redis_desc));
    o->prefix_len = strlen(o->prefix);
    if (o->prefix_len > PF_PUB_PREFIX_MAX) {
        pf_error("bad prefix (from %s): longer than %d bytes", o->prefix_from, PF_PUB_PREFIX_MAX);
        return PF_EXIT_USAGE;
    }
    return PF_EXIT_OK;
}

static int pf_parse_port(const char *s, int *port)
{
    char *end;
    long v;

    if (!*s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < 0 || v > 65535)
        return -1;
    *port = (int)v;
    return 0;
}

int pf_opts_parse_listen(struct pf_pub_opts *o, const char *s, const char **err)
{
    const char *colon, *host = s;
    size_t hlen;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            goto fail;
        host = s + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            goto fail;
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= sizeof(o->listen_host) || pf_parse_port(colon + 1, &o->listen_port))
        goto fail;
    memcpy(o->listen_host, host, hlen);
    o->listen_host[hlen] = 0;
    return 0;
fail:
    *err = "--listen must be HOST:PORT or [IPv6]:PORT with a port from 0 to 65535";
    return -1;
}

int pf_opts_parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v;

    if (!*s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || v < 1 || v > PF_PUB_MAX_BODY_LIMIT)
        return -1;
    *out = (size_t)v;
    return 0;
}

void pf_opts_version(void) { printf("push-publish %s\n", PF_VERSION); }

void pf_opts_usage(void)
{
    printf(
        "Usage:\n"
        "  push-publish [--redis URL] [--prefix STR] CHANNEL MESSAGE\n"
        "  push-publish [--redis URL] [--prefix STR] CHANNEL < lines\n"
        "  push-publish serve [--listen HOST:PORT] [--redis URL] [--prefix STR]\n"
        "                     [--max-body-bytes N] [--api-key KEY | --api-key-file PATH]\n"
        "\n"
        "Publishes messages to push-gateway subscribers through Redis: a message for CHANNEL\n"
        "becomes PUBLISH <prefix><CHANNEL> <message bytes>.\n"
        "\n"
        "Command-line mode prints, for each message, how many gateways received it (one line\n"
        "per message, in order). Without MESSAGE, every line of stdin is one message: the\n"
        "trailing \\n (and a \\r before it) is removed and empty lines are skipped. Options\n"
        "must come before CHANNEL; everything after CHANNEL is the message, even if it starts\n"
        "with '-'. To publish to a channel named \"serve\", write -- before it.\n"
        "\n"
        "Options (both modes):\n"
        "  --redis URL        Redis to publish to (default: $PUSH_REDIS_URL, else\n"
        "                     " PF_PUB_DEFAULT_REDIS ").\n"
        "                     Forms: redis://[[user]:password@]host[:port][/db],\n"
        "                     unix:///path/to/redis.sock[?db=N&password=P]\n"
        "  --prefix STR       Redis channel prefix, at most 63 bytes (default: $PUSH_PREFIX,\n"
        "                     else \"" PF_PUB_DEFAULT_PREFIX "\")\n"
        "  -h, --help         Show this help and exit\n"
        "  --version          Print the version and exit\n"
        "\n"
        "Options for serve (HTTP publisher):\n"
        "  --listen HOST:PORT  Address to listen on (default " PF_PUB_DEFAULT_LISTEN
        "; port 0 picks\n"
        "                      a free port, shown in the startup line)\n"
        "  --max-body-bytes N  Largest request body accepted, else 413 (default 1048576)\n"
        "  --api-key KEY       Require \"Authorization: Bearer KEY\" on /publish (default: none)\n"
        "  --api-key-file PATH Same, with the key read from the first line of PATH\n"
        "\n"
        "HTTP endpoints (every response carries Access-Control-Allow-Origin: *):\n"
        "  POST /publish/CHANNEL  body = the message bytes        -> 200 {\"receivers\":N}\n"
        "  POST /publish          [{\"channel\":\"a\",\"data\":...},...] -> 200 "
        "{\"results\":[...]}\n"
        "                         a string data is published decoded, other JSON values as\n"
        "                         compact JSON; the whole batch is checked before anything is\n"
        "                         published\n"
        "  GET  /healthz          -> 200 {\"status\":\"ok\"} (no API key needed)\n"
        "  OPTIONS (CORS preflight) -> 204\n"
        "  Errors: {\"error\":CODE,\"message\":TEXT} with 400 (bad channel or JSON), 401 (API\n"
        "  key), 404, 405, 413 (body too large), 503 (Redis down or silent for 2 s; retry).\n"
        "  SIGTERM/SIGINT: stop accepting, finish requests in flight (at most 5 s), exit 0.\n"
        "\n"
        "Channel names: 1-128 bytes of A-Z a-z 0-9 _ - . : @ /\n"
        "\n"
        "Exit status: 0 ok; 1 Redis unreachable, authentication failed, Redis error, or\n"
        "stdout not writable; 2 usage error (bad flag, bad channel name, bad Redis URL).\n");
}
