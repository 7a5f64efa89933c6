/* config.c - see config.h. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void pf_config_usage(FILE *out)
{
    fprintf(out,
            "usage: push-gateway [options]\n"
            "\n"
            "Holds WebSocket connections at GET /ws, subscribes to Redis pub/sub for the channels\n"
            "its clients want, merges each channel's messages of one window into one frame and\n"
            "writes that frame to every subscriber.\n"
            "\n"
            "  --listen HOST:PORT         where to listen (default 0.0.0.0:8080)\n"
            "  --redis URL                redis://[[user]:password@]host[:port] or\n"
            "                             unix:///path[?password=P]; pub/sub ignores the db\n"
            "                             (default redis://127.0.0.1:6379)\n"
            "  --prefix STR               Redis channel prefix (default push:)\n"
            "  --merge-ms N               merge window in ms; 0 sends each message at once\n"
            "                             (default 1000)\n"
            "  --merge-max-bytes N        a message that would take a batch past N bytes starts a\n"
            "                             new batch, sent at once (default 262144)\n"
            "  --threads N                shard threads (default: number of cores, at most 64)\n"
            "  --max-pending-bytes N      per-connection pending output before the connection is\n"
            "                             closed with 1008 \"slow consumer\" (default 1048576)\n"
            "  --max-message-bytes N      largest client message; bigger closes with 1009\n"
            "                             (default 65536)\n"
            "  --max-channels-per-conn N  subscriptions per connection (default 256)\n"
            "  --ping-interval S          WebSocket PING after S seconds idle (default 25)\n"
            "  --ping-timeout S           close a peer silent for interval + S seconds (default 10)\n"
            "  --allowed-origins LIST     browser Origins allowed to open a WebSocket, comma-\n"
            "                             separated (https://app.example.com,...); '*' allows\n"
            "                             any. Default: same origin only (Origin host = Host).\n"
            "                             Clients that send no Origin (not browsers) are allowed.\n"
            "  --drain-ms N               on SIGTERM/SIGINT: stop accepting, send the current\n"
            "                             window's batches, close clients with 1001, exit within\n"
            "                             N ms (default 5000)\n"

            "  --log-level LEVEL          debug, info, warn or error (default info)\n"
            "  --log-format FORMAT        text or json (one JSON object a line; default text)\n"
            "  --config FILE              settings file: lines of 'name = value' with the flag\n"
            "                             names above (e.g. merge-ms = 500); also PUSH_CONFIG\n"
            "  --help, --version\n"
            "\n"
            "Every setting can also come from the environment: PUSH_ + its name in capitals\n"
            "with '_' for '-' (PUSH_LISTEN, PUSH_MERGE_MS, ...), except --redis, which is\n"
            "PUSH_REDIS_URL. Precedence: flags, then environment, then the config file, then\n"
            "the defaults shown.\n");
}

static int pf_parse_size(const char *flag, const char *s, size_t min, size_t max, size_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
        fprintf(stderr, "push-gateway: %s must be a number from %zu to %zu, got '%s'\n", flag, min,
                max, s);
        return -1;
    }
    *out = (size_t)v;
    return 0;
}

static int pf_parse_int(const char *flag, const char *s, int min, int max, int *out)
{
    size_t v;

    if (pf_parse_size(flag, s, (size_t)min, (size_t)max, &v))
        return -1;
    *out = (int)v;
    return 0;
}

static int pf_parse_listen(struct pf_config *c, const char *s)
{
    const char *colon = strrchr(s, ':');
    size_t hlen;

    if (!colon) {
        fprintf(stderr, "push-gateway: --listen wants HOST:PORT, got '%s'\n", s);
        return -1;
    }
    if (pf_parse_int("--listen port", colon + 1, 1, 65535, &c->listen_port))
        return -1;
    hlen = (size_t)(colon - s);
    if (hlen >= sizeof(c->listen_host)) {
        fprintf(stderr, "push-gateway: --listen host is too long\n");
        return -1;
    }
    memcpy(c->listen_host, s, hlen);
    c->listen_host[hlen] = 0;
    if (!strcmp(c->listen_host, "0.0.0.0") || !strcmp(c->listen_host, "*"))
        c->listen_host[0] = 0;
    return 0;
}

static int pf_parse_level(struct pf_config *c, const char *s)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    int i;

    for (i = 0; i < 4; i++)
        if (!strcmp(s, names[i])) {
            c->log_level = (enum pf_log_level)i;
            return 0;
        }
    fprintf(stderr, "push-gateway: --log-level must be debug, info, warn or error\n");
    return -1;
}

static void pf_config_defaults(struct pf_config *c)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    memset(c, 0, sizeof(*c));
    c->listen_port = 8080;
    snprintf(c->redis_url, sizeof(c->redis_url), "redis://127.0.0.1:6379");
    snprintf(c->prefix, sizeof(c->prefix), "push:");
    c->merge_ms = 1000;
    c->merge_max_bytes = 262144;
    c->threads = cores > 0 ? (cores > 64 ? 64 : (int)cores) : 1;
    c->max_pending_bytes = 1048576;
    c->max_message_bytes = 65536;
    c->max_channels_per_conn = 256;
    c->ping_interval = 25;
    c->ping_timeout = 10;
    c->drain_ms = 5000;
    c->log_level = PF_LOG_INFO;
}

enum {
    OPT_LISTEN = 256, OPT_REDIS, OPT_PREFIX, OPT_MERGE_MS, OPT_MERGE_MAX, OPT_THREADS,
    OPT_MAX_PENDING, OPT_MAX_MSG, OPT_MAX_CHANS, OPT_PING_INTERVAL, OPT_PING_TIMEOUT,
    OPT_LOG_LEVEL, OPT_LOG_FORMAT, OPT_CONFIG, OPT_DRAIN_MS, OPT_ORIGINS, OPT_HELP, OPT_VERSION
};

static int pf_config_apply(struct pf_config *c, int opt, const char *arg)
{
    switch (opt) {
    case OPT_LISTEN: return pf_parse_listen(c, arg);
    case OPT_REDIS:
        if (strlen(arg) >= sizeof(c->redis_url)) {
            fprintf(stderr, "push-gateway: --redis URL is too long\n");
            return -1;
        }
        snprintf(c->redis_url, sizeof(c->redis_url), "%s", arg);
        return 0;
    case OPT_PREFIX:
        if (strlen(arg) >= sizeof(c->prefix)) {
            fprintf(stderr, "push-gateway: --prefix is longer than 63 bytes\n");
            return -1;
        }
        snprintf(c->prefix, sizeof(c->prefix), "%s", arg);
        return 0;
    case OPT_MERGE_MS: return pf_parse_int("--merge-ms", arg, 0, 60000, &c->merge_ms);
    case OPT_MERGE_MAX:
        return pf_parse_size("--merge-max-bytes", arg, 256, 64u << 20, &c->merge_max_bytes);
    case OPT_THREADS: return pf_parse_int("--threads", arg, 1, 64, &c->threads);
    case OPT_MAX_PENDING:
        return pf_parse_size("--max-pending-bytes", arg, 1024, (size_t)1 << 32,
                             &c->max_pending_bytes);
    case OPT_MAX_MSG:
        return pf_parse_size("--max-message-bytes", arg, 64, 16u << 20, &c->max_message_bytes);
    case OPT_MAX_CHANS:
        return pf_parse_size("--max-channels-per-conn", arg, 1, 100000, &c->max_channels_per_conn);
    case OPT_PING_INTERVAL: return pf_parse_int("--ping-interval", arg, 1, 3600, &c->ping_interval);
    case OPT_PING_TIMEOUT: return pf_parse_int("--ping-timeout", arg, 1, 3600, &c->ping_timeout);
    case OPT_LOG_LEVEL: return pf_parse_level(c, arg);
    case OPT_LOG_FORMAT:
        if (strcmp(arg, "text") != 0 && strcmp(arg, "json") != 0) {
            fprintf(stderr, "push-gateway: --log-format must be text or json\n");
            return -1;
        }
        c->log_json = !strcmp(arg, "json");
        return 0;
    case OPT_ORIGINS:
        if (strlen(arg) >= sizeof(c->allowed_origins)) {
            fprintf(stderr, "push-gateway: --allowed-origins is too long\n");
            return -1;
        }
        snprintf(c->allowed_origins, sizeof(c->allowed_origins), "%s", arg);
        return 0;
    case OPT_DRAIN_MS: return pf_parse_int("--drain-ms", arg, 0, 600000, &c->drain_ms);
    }
    return -1;
}

static const struct option pf_opts[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"redis", required_argument, NULL, OPT_REDIS},
    {"prefix", required_argument, NULL, OPT_PREFIX},
    {"merge-ms", required_argument, NULL, OPT_MERGE_MS},
    {"merge-max-bytes", required_argument, NULL, OPT_MERGE_MAX},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"max-pending-bytes", required_argument, NULL, OPT_MAX_PENDING},
    {"max-message-bytes", required_argument, NULL, OPT_MAX_MSG},
    {"max-channels-per-conn", required_argument, NULL, OPT_MAX_CHANS},
    {"ping-interval", required_argument, NULL, OPT_PING_INTERVAL},
    {"ping-timeout", required_argument, NULL, OPT_PING_TIMEOUT},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"drain-ms", required_argument, NULL, OPT_DRAIN_MS},
    {"allowed-origins", required_argument, NULL, OPT_ORIGINS},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0}};

/* PUSH_ + the flag's name in capitals with '_' for '-'; --redis is PUSH_REDIS_URL, the name
 * the publisher and docker-compose files use too. */
static void pf_env_name(const char *flag, char *out, size_t outlen)
{
    size_t o;

    if (!strcmp(flag, "redis")) {
        snprintf(out, outlen, "PUSH_REDIS_URL");
        return;
    }
    o = (size_t)snprintf(out, outlen, "PUSH_");
    for (; *flag && o + 1 < outlen; flag++)
        out[o++] = *flag == '-' ? '_' : (char)toupper((unsigned char)*flag);
    out[o] = 0;
}

static const struct option *pf_opt_by_name(const char *name)
{
    const struct option *o;

    for (o = pf_opts; o->name; o++)
        if (!strcmp(o->name, name) && o->has_arg == required_argument && o->val != OPT_CONFIG)
            return o;
    return NULL;
}

/* name = value lines; '#' starts a comment; names are the long flags without "--". */
static int pf_config_file(struct pf_config *c, const char *path)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    int lineno = 0, rc = 0;

    if (!f) {
        fprintf(stderr, "push-gateway: cannot read config file %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (!rc && fgets(line, sizeof(line), f)) {
        char *p = line, *key, *val, *end;
        const struct option *o;
        lineno++;
        p[strcspn(p, "#\r\n")] = 0;
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            continue;
        key = p;
        p += strcspn(p, " \t=");
        val = p + strspn(p, " \t");
        if (*val == '=')
            val++;
        *p = 0;
        val += strspn(val, " \t");
        for (end = val + strlen(val); end > val && (end[-1] == ' ' || end[-1] == '\t');)
            *--end = 0;
        o = pf_opt_by_name(key);
        if (!o || !*val) {
            fprintf(stderr, "push-gateway: %s:%d: %s\n", path, lineno,
                    o ? "missing value" : "unknown setting (use the flag names of --help)");
            rc = -1;
        } else {
            rc = pf_config_apply(c, o->val, val);
        }
    }
    fclose(f);
    return rc;
}

static int pf_config_env(struct pf_config *c)
{
    const struct option *o;
    char name[64];

    for (o = pf_opts; o->name; o++) {
        const char *v;
        if (o->has_arg != required_argument || o->val == OPT_CONFIG)
            continue;
        pf_env_name(o->name, name, sizeof(name));
        v = getenv(name);
        if (v && *v && pf_config_apply(c, o->val, v)) {
            fprintf(stderr, "push-gateway: (from the environment variable %s)\n", name);
            return -1;
        }
    }
    return 0;
}

/* The config file comes first so that the environment and then flags override it; a scan for
 * --config runs before the real parse. */
static const char *pf_config_path(int argc, char **argv)
{
    int i;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            return argv[i + 1];
        if (!strncmp(argv[i], "--config=", 9))
            return argv[i] + 9;
    }
    return getenv("PUSH_CONFIG");
}

int pf_config_parse(struct pf_config *c, int argc, char **argv)
{
    const char *err = NULL, *path = pf_config_path(argc, argv);
    int opt;

    pf_config_defaults(c);
    if (path && *path && pf_config_file(c, path))
        return -1;
    if (pf_config_env(c))
        return -1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", pf_opts, NULL)) != -1) {
        if (opt == OPT_HELP) {
            pf_config_usage(stdout);
            return 1;
        }
        if (opt == OPT_VERSION) {
            printf("push-gateway %s\n", PF_VERSION);
            return 1;
        }
        if (opt == '?' || opt == ':') {
            fprintf(stderr, "push-gateway: unknown or incomplete option '%s' (see --help)\n",
                    argv[optind - 1]);
            return -1;
        }
        if (opt != OPT_CONFIG && pf_config_apply(c, opt, optarg))
            return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "push-gateway: unexpected argument '%s' (see --help)\n", argv[optind]);
        return -1;
    }
    if (pf_redis_url_parse(c->redis_url, &c->redis, &err)) {
        fprintf(stderr, "push-gateway: bad --redis URL '%s': %s\n", c->redis_url, err);
        return -1;
    }
    c->prefix_len = strlen(c->prefix);
    return 0;
}
