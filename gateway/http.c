/* http.c - see http.h. Every response is one immutable buffer queued like any frame; the
 * connection closes once it is written. */
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

static const char *pf_http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 426: return "Upgrade Required";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    }
    return "Error";
}

static struct pf_frame *pf_http_reply(int status, const char *type, const void *body, size_t len,
                                      const char *extra_headers)
{
    struct pf_buf b;
    char head[512];
    struct pf_frame *f = NULL;

    snprintf(head, sizeof(head),
             "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
             "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
             status, pf_http_reason(status), type, len, extra_headers ? extra_headers : "");
    pf_buf_init(&b);
    pf_buf_append_str(&b, head);
    pf_buf_append(&b, body, len);
    if (pf_buf_ok(&b))
        f = pf_frame_raw(b.data, b.len);
    pf_buf_free(&b);
    return f;
}

struct pf_frame *pf_http_error(int status, const char *text, const char *extra_headers)
{
    return pf_http_reply(status, "text/plain; charset=utf-8", text, strlen(text), extra_headers);
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
        {"pushfabric_silent_peers_closed_total", "counter",
         "Connections closed after --ping-interval + --ping-timeout without a byte from the peer.",
         offsetof(struct pf_shard_stats, silent_closed)},
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
    pf_metric(b, "pushfabric_messages_dropped_total", "counter",
              "Messages lost because memory could not be allocated.");
    pf_metric_value(b, "pushfabric_messages_dropped_total", "", pf_load(&ls->dropped));
    pf_metric(b, "pushfabric_redis_up", "gauge", "1 while the Redis link is up.");
    pf_metric_value(b, "pushfabric_redis_up", "",
                    (uint64_t)__atomic_load_n(&ls->up, __ATOMIC_RELAXED));
}

struct pf_frame *pf_http_route(struct pf_shard *s, const struct pf_http_req *req)
{
    static const char ws_hint[] =
        "This is the pushfabric WebSocket endpoint: connect with a WebSocket client, e.g.\n"
        "  new WebSocket(\"ws://\" + location.host + \"/ws?channels=news\")\n"
        "See docs/PROTOCOL.md.\n";
    static const char not_found[] =
        "not found: try / (demo page), /ws (WebSocket), /metrics, /healthz, /readyz\n";
    const char *uri = req->path;

    if (!strcmp(uri, "/ws"))
        return pf_http_error(426, ws_hint, "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
    if (strcmp(req->method, "GET") != 0)
        return pf_http_error(405, "only GET is served here\n", "Allow: GET\r\n");
    if (!strcmp(uri, "/") || !strcmp(uri, "/index.html"))
        return pf_http_reply(200, "text/html; charset=utf-8", pf_page_html, pf_page_html_len, NULL);
    if (!strcmp(uri, "/favicon.ico"))
        return pf_http_reply(204, "image/x-icon", NULL, 0, NULL);
    if (!strcmp(uri, "/healthz"))
        return pf_http_error(200, "ok\n", NULL);
    if (!strcmp(uri, "/readyz")) {
        /* Ready = the Redis link is up and this gateway is not draining: a load balancer
         * should send new connections elsewhere otherwise. */
        if (s->draining)
            return pf_http_error(503, "not ready: draining\n", NULL);
        if (!__atomic_load_n(&s->link->stats.up, __ATOMIC_RELAXED))
            return pf_http_error(503, "not ready: redis link down\n", NULL);
        return pf_http_error(200, "ok\n", NULL);
    }
    if (!strcmp(uri, "/metrics")) {
        struct pf_buf b;
        struct pf_frame *f = NULL;
        pf_buf_init(&b);
        pf_metrics_render(s, &b);
        if (pf_buf_ok(&b))
            f = pf_http_reply(200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len, NULL);
        pf_buf_free(&b);
        return f;
    }
    return pf_http_error(404, not_found, NULL);
}
