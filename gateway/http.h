/* http.h - the gateway's plain HTTP face: the demo page, /metrics, /healthz, /readyz, and clear
 * answers to requests that are not a valid WebSocket handshake.
 *
 * Owns: routing and the bytes of those responses (each ends the connection: Connection: close).
 * Must not: touch subscriptions or queues; it only reads counters. Runs on the shard that
 * accepted the request. */
#ifndef PF_HTTP_H
#define PF_HTTP_H

#include "frame.h"
#include "ws.h"

struct pf_shard;

/* A complete response for a request that is not a WebSocket upgrade. */
struct pf_frame *pf_http_route(struct pf_shard *s, const struct pf_http_req *req);
/* A text/plain error response; extra_headers ("Name: value\r\n"...) may be NULL. */
struct pf_frame *pf_http_error(int status, const char *text, const char *extra_headers);
/* 1 when origin (e.g. "https://app.example.com") may connect, given the Host header and the
 * --allowed-origins list. */
int pf_http_origin_allowed(const char *origin, const char *host, const char *allowed);

extern const unsigned char pf_page_html[];
extern const unsigned int pf_page_html_len;

#endif
