/* reply.c - see reply.h.
 *
 * An answer counts as written when libevent reports the request complete, or when its
 * connection is freed first (client gone mid-write). One token per answer links both events:
 * whichever comes first settles the count, and completion unhooks the close callback so the
 * same connection can carry the next request. libevent handles one request per connection at a
 * time, so a connection never has two tokens. */
#include "reply.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"
#include "log.h"

struct pf_reply_token {
    struct pf_flight *f;
    struct evhttp_connection *evcon;
};

static void pf_flight_check(struct pf_flight *f)
{
    if (f->on_idle && f->open == 0 && f->unflushed == 0)
        f->on_idle(f->idle_arg);
}

void pf_flight_begin(struct pf_flight *f) { f->open++; }

void pf_flight_drain(struct pf_flight *f, void (*on_idle)(void *), void *arg)
{
    f->closing = 1;
    f->on_idle = on_idle;
    f->idle_arg = arg;
    pf_flight_check(f);
}

static void pf_reply_settle(struct pf_reply_token *t)
{
    struct pf_flight *f = t->f;

    free(t);
    f->unflushed--;
    pf_flight_check(f);
}

static void pf_reply_conn_closed(struct evhttp_connection *evcon, void *arg)
{
    pf_reply_settle(arg);
}

static void pf_reply_complete(struct evhttp_request *req, void *arg)
{
    struct pf_reply_token *t = arg;

    evhttp_connection_set_closecb(t->evcon, NULL, NULL);
    pf_reply_settle(t);
}

/* Without a connection the client is gone and libevent frees req as soon as it is answered. */
static void pf_reply_track(struct pf_flight *f, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct pf_reply_token *t;

    if (!evcon || !(t = malloc(sizeof(*t))))
        return;
    t->f = f;
    t->evcon = evcon;
    f->unflushed++;
    evhttp_connection_set_closecb(evcon, pf_reply_conn_closed, t);
    evhttp_request_set_on_complete_cb(req, pf_reply_complete, t);
}

static const char *pf_reply_phrase(int code)
{
    switch (code) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 503: return "Service Unavailable";
    default: return "Internal Server Error";
    }
}

static void pf_reply_send(struct pf_flight *f, struct evhttp_request *req, int code, int json)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    /* The gateway's demo page, served from another port, calls us from the browser. */
    evhttp_add_header(h, "Access-Control-Allow-Origin", "*");
    evhttp_add_header(h, "Cache-Control", "no-store");
    if (json) {
        evhttp_add_header(h, "Content-Type", "application/json");
        evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    }
    if (f->closing)
        evhttp_add_header(h, "Connection", "close");
    f->open--;
    pf_reply_track(f, req);
    evhttp_send_reply(req, code, pf_reply_phrase(code), NULL);
    pf_flight_check(f);
}

void pf_reply_json(struct pf_flight *f, struct evhttp_request *req, int code, const char *json,
                   size_t len)
{
    if (evbuffer_add(evhttp_request_get_output_buffer(req), json, len) != 0) {
        pf_error("out of memory writing a response");
        code = 500;
    }
    pf_reply_send(f, req, code, 1);
}

void pf_reply_error(struct pf_flight *f, struct evhttp_request *req, int status,
                    const char *code, const char *msg)
{
    static const char oom[] = "{\"error\":\"internal\",\"message\":\"out of memory\"}";
    struct pf_buf b;

    pf_buf_init(&b);
    pf_buf_append_str(&b, "{\"error\":");
    pf_json_append_string(&b, (const unsigned char *)code, strlen(code));
    pf_buf_append_str(&b, ",\"message\":");
    pf_json_append_string(&b, (const unsigned char *)msg, strlen(msg));
    pf_buf_append_byte(&b, '}');
    if (pf_buf_ok(&b))
        pf_reply_json(f, req, status, (const char *)b.data, b.len);
    else
        pf_reply_json(f, req, 500, oom, sizeof(oom) - 1);
    pf_buf_free(&b);
}

void pf_reply_empty(struct pf_flight *f, struct evhttp_request *req, int code)
{
    pf_reply_send(f, req, code, 0);
}
