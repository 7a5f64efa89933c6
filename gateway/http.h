/* http.h - the gateway's plain HTTP face: the demo page, /metrics, /healthz, and a helpful
 * answer to a non-WebSocket request on /ws.
 *
 * Owns: routing and bodies of those responses. Must not: touch subscriptions or queues; it only
 * reads counters. Runs on whichever shard accepted the request. */
#ifndef PF_HTTP_H
#define PF_HTTP_H

#include <libwebsockets.h>

struct pf_shard;

/* LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: 0 lets a WebSocket upgrade through; otherwise an
 * HTTP error has been sent (404 for another path, 403 for an Origin not allowed). */
int pf_http_filter_ws(struct lws *wsi, const char *allowed_origins);
/* 1 when origin (e.g. "https://app.example.com") may connect, given the Host header and the
 * --allowed-origins list. Pure function, tested on its own. */
int pf_http_origin_allowed(const char *origin, const char *host, const char *allowed);
/* LWS_CALLBACK_HTTP: answers the request; returns what the lws callback must return. */
int pf_http_serve(struct lws *wsi, struct pf_shard *s, const char *uri);

extern const unsigned char pf_page_html[];
extern const unsigned int pf_page_html_len;

#endif
