/* http.h - the gateway's plain HTTP face: the demo page, /metrics, /healthz, and a helpful
 * answer to a non-WebSocket request on /ws.
 *
 * Owns: routing and bodies of those responses. Must not: touch subscriptions or queues; it only
 * reads counters. Runs on whichever shard accepted the request. */
#ifndef PF_HTTP_H
#define PF_HTTP_H

#include <libwebsockets.h>

struct pf_shard;

/* LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: 0 lets a WebSocket upgrade through (path /ws only). */
int pf_http_filter_ws(struct lws *wsi);
/* LWS_CALLBACK_HTTP: answers the request; returns what the lws callback must return. */
int pf_http_serve(struct lws *wsi, struct pf_shard *s, const char *uri);

extern const unsigned char pf_page_html[];
extern const unsigned int pf_page_html_len;

#endif
