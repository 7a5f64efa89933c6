/* http_api.c - see http_api.h.
 *
 * A publish request sends all its PUBLISHes at once (pipelined, in order, on the one Redis
 * connection) and is answered when the last reply arrives. The async link guarantees one
 * callback per accepted command within 2 s, so no request waits longer than that. */
#include "http_api.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_key.h"
#include "batch_body.h"
#include "buf.h"
#include "channel.h"
#include "json.h"
#include "log.h"

enum pf_route { PF_ROUTE_NONE, PF_ROUTE_HEALTH, PF_ROUTE_BATCH, PF_ROUTE_ONE };

struct pf_pubreq;

/* The reply callback's argument: which message of which request. */
struct pf_pubslot {
    struct pf_pubreq *r;
    size_t i;
};

struct pf_pubreq {
    struct pf_api *api;
    struct evhttp_request *req;
    struct pf_batch batch; /* channels and payloads; a single publish is a batch of one */
    int is_batch;
    size_t done;
    size_t confirmed;
    size_t unsent; /* refused before reaching Redis: certainly not published */
    int issuing;   /* still sending: do not answer yet, even if every reply is in */
    enum pf_link_status fail; /* first failure, PF_LINK_OK if none */
    char redis_err[160];
    long long *receivers;
    struct pf_pubslot *slots;
};

void pf_api_init(struct pf_api *api, const struct pf_pub_opts *opts, struct pf_alink *link)
{
    memset(api, 0, sizeof(*api));
    api->opts = opts;
    api->link = link;
}

/* ---- publish requests ---- */

static void pf_pubreq_free(struct pf_pubreq *r)
{
    pf_batch_free(&r->batch);
    free(r->receivers);
    free(r->slots);
    free(r);
}

static struct pf_pubreq *pf_pubreq_new(struct pf_api *api, struct evhttp_request *req,
                                       struct pf_batch *batch, int is_batch)
{
    struct pf_pubreq *r = calloc(1, sizeof(*r));
    size_t n = batch->n ? batch->n : 1, i;

    if (!r)
        return NULL;
    r->receivers = calloc(n, sizeof(*r->receivers));
    r->slots = calloc(n, sizeof(*r->slots));
    if (!r->receivers || !r->slots) {
        pf_pubreq_free(r);
        return NULL;
    }
    for (i = 0; i < n; i++) {
        r->slots[i].r = r;
        r->slots[i].i = i;
    }
    r->api = api;
    r->req = req;
    r->batch = *batch; /* takes ownership */
    pf_batch_init(batch);
    r->is_batch = is_batch;
    return r;
}

/* Why a request failed, for the client: whether anything may have been published matters. */
static void pf_pubreq_fail_text(const struct pf_pubreq *r, char *out, size_t len)
{
    size_t n = r->batch.n;
    char tally[64] = "";

    if (r->is_batch)
        snprintf(tally, sizeof(tally), " (%zu of %zu messages confirmed)", r->confirmed, n);
    if (r->fail == PF_LINK_ERROR)
        snprintf(out, len, "Redis refused PUBLISH: %s%s", r->redis_err, tally);
    else if (r->fail == PF_LINK_TIMEOUT)
        snprintf(out, len, "Redis did not answer within 2 s%s; unconfirmed messages may or may "
                 "not have been published; retry later", tally);
    else if (r->unsent == n)
        snprintf(out, len, "Redis is not reachable; nothing was published; retry later");
    else
        snprintf(out, len, "the Redis connection broke%s; unconfirmed messages may or may not "
                 "have been published; retry later", tally);
}

static void pf_pubreq_reply_fail(struct pf_pubreq *r)
{
    static const char *codes[] = {"", "redis_unavailable", "redis_timeout", "redis_error"};
    char msg[400];

    pf_pubreq_fail_text(r, msg, sizeof(msg));
    evhttp_add_header(evhttp_request_get_output_headers(r->req), "Retry-After", "1");
    pf_reply_error(&r->api->flight, r->req, 503, codes[r->fail], msg);
}

static void pf_pubreq_reply_ok(struct pf_pubreq *r)
{
    struct pf_buf b;
    size_t i;
    char num[32];

    pf_buf_init(&b);
    if (!r->is_batch) {
        snprintf(num, sizeof(num), "%lld", r->receivers[0]);
        pf_buf_append_str(&b, "{\"receivers\":");
        pf_buf_append_str(&b, num);
        pf_buf_append_str(&b, "}");
    } else {
        pf_buf_append_str(&b, "{\"results\":[");
        for (i = 0; i < r->batch.n; i++) {
            const char *ch = pf_batch_channel(&r->batch, i);
            snprintf(num, sizeof(num), "%lld", r->receivers[i]);
            pf_buf_append_str(&b, i ? ",{\"channel\":" : "{\"channel\":");
            pf_json_append_string(&b, (const unsigned char *)ch, r->batch.items[i].ch_len);
            pf_buf_append_str(&b, ",\"receivers\":");
            pf_buf_append_str(&b, num);
            pf_buf_append_byte(&b, '}');
        }
        pf_buf_append_str(&b, "]}");
    }
    if (pf_buf_ok(&b))
        pf_reply_json(&r->api->flight, r->req, 200, (const char *)b.data, b.len);
    else
        pf_reply_error(&r->api->flight, r->req, 500, "internal", "out of memory");
    pf_buf_free(&b);
}

static void pf_pubreq_maybe_finish(struct pf_pubreq *r)
{
    if (r->issuing || r->done < r->batch.n)
        return;
    if (r->fail != PF_LINK_OK)
        pf_pubreq_reply_fail(r);
    else
        pf_pubreq_reply_ok(r);
    pf_pubreq_free(r);
}

static void pf_pubreq_on_reply(void *arg, enum pf_link_status st, long long value,
                               const char *errmsg)
{
    struct pf_pubslot *s = arg;
    struct pf_pubreq *r = s->r;

    r->done++;
    if (st == PF_LINK_OK) {
        r->receivers[s->i] = value;
        r->confirmed++;
    } else if (r->fail == PF_LINK_OK) {
        r->fail = st;
        snprintf(r->redis_err, sizeof(r->redis_err), "%s", errmsg ? errmsg : "");
    }
    pf_pubreq_maybe_finish(r);
}

static void pf_pubreq_issue(struct pf_pubreq *r, size_t i)
{
    const struct pf_pub_opts *o = r->api->opts;
    const struct pf_batch_item *it = &r->batch.items[i];
    char key[PF_PUB_PREFIX_MAX + PF_CHANNEL_MAX + 1];

    memcpy(key, o->prefix, o->prefix_len);
    memcpy(key + o->prefix_len, pf_batch_channel(&r->batch, i), it->ch_len);
    if (pf_alink_publish(r->api->link, key, o->prefix_len + it->ch_len,
                         pf_batch_data(&r->batch, i), it->data_len, pf_pubreq_on_reply,
                         &r->slots[i]) != 0) {
        r->unsent++;
        pf_pubreq_on_reply(&r->slots[i], PF_LINK_DOWN, 0, NULL);
    }
}

/* Takes batch (even on failure). */
static void pf_api_publish(struct pf_api *api, struct evhttp_request *req,
                           struct pf_batch *batch, int is_batch)
{
    struct pf_pubreq *r = pf_pubreq_new(api, req, batch, is_batch);
    size_t i;

    if (!r) {
        pf_batch_free(batch);
        pf_reply_error(&api->flight, req, 500, "internal", "out of memory");
        return;
    }
    r->issuing = 1;
    for (i = 0; i < r->batch.n; i++)
        pf_pubreq_issue(r, i);
    r->issuing = 0;
    pf_pubreq_maybe_finish(r);
}

/* ---- endpoints ---- */

static void pf_api_one(struct pf_api *api, struct evhttp_request *req, const char *raw_channel,
                       const unsigned char *body, size_t len)
{
    struct pf_batch b;
    size_t chlen = 0;
    char *ch = evhttp_uridecode(raw_channel, 0, &chlen);
    const char *why = ch ? pf_channel_check(ch, chlen) : "out of memory";

    pf_batch_init(&b);
    if (why)
        pf_reply_error(&api->flight, req, 400, "bad_channel", why);
    else if (pf_batch_add(&b, ch, chlen, body, len) != 0)
        pf_reply_error(&api->flight, req, 500, "internal", "out of memory");
    else
        pf_api_publish(api, req, &b, 0);
    pf_batch_free(&b);
    free(ch);
}

static void pf_api_batch(struct pf_api *api, struct evhttp_request *req,
                         const unsigned char *body, size_t len)
{
    struct pf_batch b;
    char err[300];
    enum pf_batch_err e;

    pf_batch_init(&b);
    e = pf_batch_parse(&b, body, len, err, sizeof(err));
    if (e == PF_BATCH_OK) {
        pf_api_publish(api, req, &b, 1);
        return;
    }
    pf_batch_free(&b);
    if (e == PF_BATCH_NOMEM)
        pf_reply_error(&api->flight, req, 500, "internal", "out of memory");
    else
        pf_reply_error(&api->flight, req, 400,
                       e == PF_BATCH_BAD_CHANNEL ? "bad_channel" : "bad_json", err);
}

static void pf_api_preflight(struct pf_api *api, struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    evhttp_add_header(h, "Access-Control-Allow-Methods", "POST, GET, OPTIONS");
    evhttp_add_header(h, "Access-Control-Allow-Headers", "Content-Type, Authorization");
    evhttp_add_header(h, "Access-Control-Max-Age", "600");
    pf_reply_empty(&api->flight, req, 204);
}

static void pf_api_bad_method(struct pf_api *api, struct evhttp_request *req, const char *allow)
{
    char msg[80];

    snprintf(msg, sizeof(msg), "this endpoint accepts %s", allow);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    pf_reply_error(&api->flight, req, 405, "method_not_allowed", msg);
}

static int pf_api_authorized(const struct pf_api *api, struct evhttp_request *req)
{
    const char *h;

    if (!api->opts->api_key)
        return 1;
    h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    return pf_api_key_check(api->opts->api_key, api->opts->api_key_len, h);
}

static void pf_api_post(struct pf_api *api, struct evhttp_request *req, enum pf_route route,
                        const char *path)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const unsigned char *body;
    char msg[120];

    if (!pf_api_authorized(api, req)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                          "Bearer realm=\"push-publish\"");
        pf_reply_error(&api->flight, req, 401, "unauthorized",
                       "missing or wrong API key; send Authorization: Bearer KEY");
        return;
    }
    /* libevent already refuses bodies over the limit while reading; this guards the rest. */
    if (len > api->opts->max_body) {
        snprintf(msg, sizeof(msg), "request body is larger than %zu bytes", api->opts->max_body);
        pf_reply_error(&api->flight, req, 413, "body_too_large", msg);
        return;
    }
    body = len ? evbuffer_pullup(in, -1) : (const unsigned char *)"";
    if (!body)
        pf_reply_error(&api->flight, req, 500, "internal", "out of memory");
    else if (route == PF_ROUTE_ONE)
        pf_api_one(api, req, path + strlen("/publish/"), body, len);
    else
        pf_api_batch(api, req, body, len);
}

static enum pf_route pf_api_route(const char *path)
{
    if (strcmp(path, "/healthz") == 0)
        return PF_ROUTE_HEALTH;
    if (strcmp(path, "/publish") == 0)
        return PF_ROUTE_BATCH;
    if (strncmp(path, "/publish/", 9) == 0)
        return PF_ROUTE_ONE;
    return PF_ROUTE_NONE;
}

static const char *pf_api_path(struct evhttp_request *req)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;

    return path && *path ? path : "/";
}

void pf_api_handle(struct evhttp_request *req, void *arg)
{
    static const char health[] = "{\"status\":\"ok\"}";
    struct pf_api *api = arg;
    const char *path = pf_api_path(req);
    enum pf_route route = pf_api_route(path);
    enum evhttp_cmd_type method = evhttp_request_get_command(req);

    pf_flight_begin(&api->flight);
    if (route == PF_ROUTE_NONE)
        pf_reply_error(&api->flight, req, 404, "not_found",
                       "no such endpoint; use POST /publish/CHANNEL, POST /publish or "
                       "GET /healthz");
    else if (method == EVHTTP_REQ_OPTIONS)
        pf_api_preflight(api, req);
    else if (route == PF_ROUTE_HEALTH && method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD)
        pf_api_bad_method(api, req, "GET, HEAD, OPTIONS");
    else if (route == PF_ROUTE_HEALTH)
        pf_reply_json(&api->flight, req, 200, health, sizeof(health) - 1);
    else if (method != EVHTTP_REQ_POST)
        pf_api_bad_method(api, req, "POST, OPTIONS");
    else
        pf_api_post(api, req, route, path);
}
