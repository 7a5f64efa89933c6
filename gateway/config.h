/* config.h - the gateway's settings, parsed once from the command line before threads start.
 *
 * Owns: flag names, defaults and validation. Must not: open sockets or start anything. After
 * pf_config_parse() the struct is read-only and shared by every thread. */
#ifndef PF_CONFIG_H
#define PF_CONFIG_H

#include <stddef.h>

#include "log.h"
#include "redis_url.h"

struct pf_config {
    char listen_host[256]; /* "" = all interfaces */
    int listen_port;
    char redis_url[512];
    struct pf_redis_url redis;
    char prefix[64];
    size_t prefix_len;
    int merge_ms;
    size_t merge_max_bytes;
    int threads;
    size_t max_pending_bytes;
    size_t max_message_bytes;
    size_t max_channels_per_conn;
    int ping_interval; /* seconds */
    int ping_timeout;  /* seconds */
    int drain_ms;      /* shutdown: time to flush and close connections */
    char allowed_origins[2048]; /* comma-separated; "" = same origin only; "*" = any */
    enum pf_log_level log_level;
    int log_json;
};

/* Returns 0 to run, 1 when --help/--version printed and the program should exit 0, -1 on a bad
 * flag (message already printed to stderr). */
int pf_config_parse(struct pf_config *c, int argc, char **argv);

#endif
