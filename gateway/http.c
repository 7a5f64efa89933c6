/* http.c - see http.h. Bodies are small and written in one lws_write; lws buffers whatever the
 * socket does not take at once. */
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "redis_link.h"
#include "shard.h"

int pf_http_origin_allowed(const char *origin, const char *host, const char *allowed)
{
    const char *p = allowed, *oh;
    size_t olen = strlen(origin);

    while (*p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        while (n && *p == ' ')
            p++, n--;
        while (n && p[n - 1] == ' ')
            n--;
        if ((n == 1 && *p == '*') || (n == olen && !strncasecmp(p, origin, n)))
            return 1;
        p += n;
        while (*p == ' ' || *p == ',')
            p++;
    }
    if (*allowed)
        return 0;
    /* No list: same origin only. The Origin's authority must equal the Host header. */
    oh = strstr(origin, "://");
    return oh && host[0] && !strcasecmp(oh + 3, host);
}

int pf_http_filter_ws(struct lws *wsi, const char *allowed_origins)
{
    char uri[64], origin[256], host[256];

    if (lws_hdr_copy(wsi, uri, (int)sizeof(uri), WSI_TOKEN_GET_URI) < 0 || strcmp(uri, "/ws") != 0) {
        lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, "WebSocket endpoint is /ws");
        return 1;
    }
    if (lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN) <= 0)
        return 0; /* not a browser: Origin is a browser's claim, others need no check */
    if (lws_hdr_copy(wsi, origin, (int)sizeof(origin), WSI_TOKEN_ORIGIN) < 0 ||
        lws_hdr_copy(wsi, host, (int)sizeof(host), WSI_TOKEN_HOST) < 0 ||
        !pf_http_origin_allowed(origin, host, allowed_origins)) {
        lws_return_http_status(wsi, HTTP_STATUS_FORBIDDEN,
                               "Origin not allowed (see --allowed-origins)");
        return 1;
    }
    return 0;
}

static int pf_http_reply(struct lws *wsi, unsigned int status, const char *type,
                         const unsigned char *body, size_t len, int upgrade_hint)
{
    unsigned char hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof(hdr);
    unsigned char *copy;
    int n;

    if (lws_add_http_common_headers(wsi, status, type, (lws_filepos_t)len, &p, end))
        return 1;
    if (upgrade_hint && (lws_add_http_header_by_name(wsi, (const unsigned char *)"upgrade:",
                                                     (const unsigned char *)"websocket", 9, &p, end) ||
                         lws_add_http_header_by_name(wsi, (const unsigned char *)"connection:",
                                                     (const unsigned char *)"Upgrade", 7, &p, end)))
        return 1;
    if (lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &p, end))
        return 1;
    if (lws_finalize_write_http_header(wsi, start, &p, end))
        return 1;
    /* lws_write wants writable memory with LWS_PRE bytes of headroom. */
    copy = malloc(LWS_PRE + len + 1);
    if (!copy)
        return 1;
    if (len)
        memcpy(copy + LWS_PRE, body, len);
    n = lws_write(wsi, copy + LWS_PRE, len, LWS_WRITE_HTTP_FINAL);
    free(copy);
    if (n < (int)len)
        return 1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static uint64_t pf_load(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

static void pf_metric(struct pf_buf *b, const char *name, const char *type, const char *help)
{
    char line[256];

    snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    pf_buf_append_str(b, line);
}

static void pf_metric_value(struct pf_buf *b, const char *name, const char *labels, uint64_t v)
{
    char line[256];

    snprintf(line, sizeof(line), "%s%s %llu\n", name, labels, (unsigned long long)v);
    pf_buf_append_str(b, line);
}

/* Sums one per-shard counter (offset into pf_shard_stats) over all shards. */
static uint64_t pf_sum(const struct pf_shard *s, size_t off)
{
    uint64_t v = 0;
    int i;

    for (i = 0; i < s->nshards; i++)
        v += pf_load((const uint64_t *)((const char *)&s->all[i]->stats + off));
    return v;
}

static void pf_metrics_render(const struct pf_shard *s, struct pf_buf *b)
{
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } m[] = {
        {"pushfabric_subscriptions", "gauge", "Subscriptions held by WebSocket connections.",
         offsetof(struct pf_shard_stats, subscriptions)},
        {"pushfabric_connections_accepted_total", "counter", "WebSocket connections accepted.",
         offsetof(struct pf_shard_stats, connections_total)},
        {"pushfabric_frames_out_total", "counter", "Batch frames queued to connections.",
         offsetof(struct pf_shard_stats, frames_out)},
        {"pushfabric_messages_out_total", "counter", "Messages delivered inside those frames.",
         offsetof(struct pf_shard_stats, messages_out)},
        {"pushfabric_bytes_out_total", "counter", "Bytes of batch frames queued to connections.",
         offsetof(struct pf_shard_stats, bytes_out)},
        {"pushfabric_slow_consumers_closed_total", "counter",
         "Connections closed because their pending output passed --max-pending-bytes.",
         offsetof(struct pf_shard_stats, slow_closed)},
        {"pushfabric_client_errors_total", "counter", "Error replies sent to clients.",
         offsetof(struct pf_shard_stats, client_errors)},
    };
    const struct pf_link_stats *ls = &s->link->stats;
    char labels[32];
    size_t i;
    int k;

    pf_metric(b, "pushfabric_connections", "gauge", "Open WebSocket connections, per shard.");
    for (k = 0; k < s->nshards; k++) {
        snprintf(labels, sizeof(labels), "{shard=\"%d\"}", k);
        pf_metric_value(b, "pushfabric_connections", labels, pf_load(&s->all[k]->stats.connections));
    }
    for (i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
        pf_metric(b, m[i].name, m[i].type, m[i].help);
        pf_metric_value(b, m[i].name, "", pf_sum(s, m[i].off));
    }
    pf_metric(b, "pushfabric_redis_messages_in_total", "counter", "Messages received from Redis.");
    pf_metric_value(b, "pushfabric_redis_messages_in_total", "", pf_load(&ls->messages_in));
    pf_metric(b, "pushfabric_batches_total", "counter", "Batch frames encoded (once each).");
    pf_metric_value(b, "pushfabric_batches_total", "", pf_load(&ls->frames_out));
    pf_metric(b, "pushfabric_redis_channels", "gauge", "Channels subscribed in Redis.");
    pf_metric_value(b, "pushfabric_redis_channels", "", pf_load(&ls->channels));
    pf_metric(b, "pushfabric_redis_reconnects_total", "counter", "Times the Redis link was lost.");
    pf_metric_value(b, "pushfabric_redis_reconnects_total", "", pf_load(&ls->reconnects));
    pf_metric(b, "pushfabric_redis_down_seconds_total", "counter",
              "Time the Redis link was down after it first came up (messages lost in gaps).");
    {
        char line[64];
        uint64_t ms = pf_load(&ls->down_ms);
        snprintf(line, sizeof(line), "pushfabric_redis_down_seconds_total %llu.%03llu\n",
                 (unsigned long long)(ms / 1000), (unsigned long long)(ms % 1000));
        pf_buf_append_str(b, line);
    }
    pf_metric(b, "pushfabric_redis_subscribe_failures_total", "counter",
              "SUBSCRIBEs Redis refused (e.g. ACL NOPERM).");
    pf_metric_value(b, "pushfabric_redis_subscribe_failures_total", "",
                    pf_load(&ls->subscribe_failures));
    pf_metric(b, "pushfabric_redis_up", "gauge", "1 while the Redis link is up.");
    pf_metric_value(b, "pushfabric_redis_up", "",
                    (uint64_t)__atomic_load_n(&ls->up, __ATOMIC_RELAXED));
}

int pf_http_serve(struct lws *wsi, struct pf_shard *s, const char *uri)
{
    static const char ws_hint[] =
        "This is the pushfabric WebSocket endpoint: connect with a WebSocket client, e.g.\n"
        "  new WebSocket(\"ws://\" + location.host + \"/ws?channels=news\")\n"
        "See docs/PROTOCOL.md.\n";
    static const char not_found[] = "not found: try / (demo page), /ws (WebSocket), /metrics, /healthz, /readyz\n";
    static const char ok[] = "ok\n";

    if (!strcmp(uri, "/") || !strcmp(uri, "/index.html"))
        return pf_http_reply(wsi, HTTP_STATUS_OK, "text/html; charset=utf-8", pf_page_html,
                             pf_page_html_len, 0);
    if (!strcmp(uri, "/ws"))
        return pf_http_reply(wsi, 426, "text/plain; charset=utf-8", (const unsigned char *)ws_hint,
                             sizeof(ws_hint) - 1, 1);
    if (!strcmp(uri, "/favicon.ico"))
        return pf_http_reply(wsi, HTTP_STATUS_NO_CONTENT, "image/x-icon", NULL, 0, 0);
    if (!strcmp(uri, "/readyz")) {
        /* Ready = the Redis link is up and this gateway is not draining: a load balancer
         * should send new connections elsewhere otherwise. */
        static const char down[] = "not ready: redis link down\n", draining[] = "not ready: draining\n";
        if (__atomic_load_n(&s->draining, __ATOMIC_RELAXED))
            return pf_http_reply(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "text/plain",
                                 (const unsigned char *)draining, sizeof(draining) - 1, 0);
        if (!__atomic_load_n(&s->link->stats.up, __ATOMIC_RELAXED))
            return pf_http_reply(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "text/plain",
                                 (const unsigned char *)down, sizeof(down) - 1, 0);
        return pf_http_reply(wsi, HTTP_STATUS_OK, "text/plain", (const unsigned char *)ok, 3, 0);
    }
    if (!strcmp(uri, "/healthz"))
        return pf_http_reply(wsi, HTTP_STATUS_OK, "text/plain", (const unsigned char *)ok, 3, 0);
    if (!strcmp(uri, "/metrics")) {
        struct pf_buf b;
        int rc;
        pf_buf_init(&b);
        pf_metrics_render(s, &b);
        rc = pf_buf_ok(&b) ? pf_http_reply(wsi, HTTP_STATUS_OK, "text/plain; version=0.0.4",
                                           b.data, b.len, 0)
                           : 1;
        pf_buf_free(&b);
        return rc;
    }
    return pf_http_reply(wsi, HTTP_STATUS_NOT_FOUND, "text/plain", (const unsigned char *)not_found,
                         sizeof(not_found) - 1, 0);
}
