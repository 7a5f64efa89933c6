/* shard.c - see shard.h.
 *
 * A connection's pending output is a FIFO of nodes pointing at shared frames; nodes come from a
 * per-shard free list, so the broadcast path allocates nothing once warm and never encodes per
 * connection. A subscription waits for Redis' confirmation (a CONFIRMED message carrying the seq
 * of this shard's latest WANT for the channel - stale confirmations from before a churn are
 * ignored) before its request is acknowledged; batches reach it only after that ack. */
#include "shard.h"

#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "json.h"
#include "log.h"
#include "op.h"
#include "redis_link.h"

struct pf_qnode {
    struct pf_qnode *next;
    struct pf_frame *frame;
};

struct pf_sub;

struct pf_schan {
    const char *name; /* dict key copy */
    size_t name_len;
    struct pf_sub *subs;
    uint32_t nsubs;
    uint32_t seq; /* seq of the WANT whose confirmation counts */
    int confirmed;
};

/* One subscribe request waiting for Redis: the reply is prebuilt, sent when remaining hits 0. */
struct pf_ack {
    struct pf_ack *next;
    struct pf_frame *reply;
    uint32_t remaining;
};

struct pf_sub {
    struct pf_sub *ch_prev, *ch_next; /* in the channel's list */
    struct pf_sub *conn_prev, *conn_next; /* in the connection's list */
    struct pf_schan *ch;
    struct pf_conn *conn;
    struct pf_ack *ack; /* set until the request's ack is queued */
    uint8_t waiting;    /* channel not confirmed yet */
};

struct pf_conn {
    struct lws *wsi;
    struct pf_shard *shard;
    struct pf_conn *prev, *next; /* the shard's connections, for draining */
    struct pf_qnode *qhead, *qtail;
    size_t qbytes;
    struct pf_sub *subs;
    uint32_t nsubs;
    struct pf_ack *acks;
    struct pf_buf *rx; /* only while a fragmented message is being reassembled */
    uint16_t close_code;
    uint8_t established;
};

#define PF_NODE_CHUNK 4096

static void pf_stat(uint64_t *p, int64_t d) { __atomic_add_fetch(p, (uint64_t)d, __ATOMIC_RELAXED); }

/* ---- output queues ----------------------------------------------------------------------- */

static struct pf_qnode *pf_node_get(struct pf_shard *s)
{
    struct pf_qnode *n = s->free_nodes;

    if (!n) {
        /* One chunk = a link word + PF_NODE_CHUNK nodes; chunks live until the shard ends. */
        void **chunk = malloc(sizeof(void *) + sizeof(struct pf_qnode) * PF_NODE_CHUNK);
        struct pf_qnode *nodes;
        int i;
        if (!chunk)
            return NULL;
        *chunk = s->node_chunks;
        s->node_chunks = chunk;
        nodes = (struct pf_qnode *)(chunk + 1);
        for (i = 0; i < PF_NODE_CHUNK - 1; i++)
            nodes[i].next = &nodes[i + 1];
        nodes[PF_NODE_CHUNK - 1].next = NULL;
        n = nodes;
    }
    s->free_nodes = n->next;
    return n;
}

static void pf_node_put(struct pf_shard *s, struct pf_qnode *n)
{
    n->next = s->free_nodes;
    s->free_nodes = n;
}

static void pf_conn_drop_queue(struct pf_conn *c)
{
    struct pf_qnode *n = c->qhead, *next;

    for (; n; n = next) {
        next = n->next;
        pf_frame_release(n->frame);
        pf_node_put(c->shard, n);
    }
    c->qhead = c->qtail = NULL;
    c->qbytes = 0;
}

/* A reader that fell behind by more than the cap is closed: its memory is given back now, the
 * close frame goes out if it ever reads again, and a timer ends it if it never does. */
static void pf_conn_close_slow(struct pf_conn *c)
{
    pf_conn_drop_queue(c);
    c->close_code = LWS_CLOSE_STATUS_POLICY_VIOLATION;
    pf_stat(&c->shard->stats.slow_closed, 1);
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, 2);
    lws_callback_on_writable(c->wsi);
}

/* Queues a frame the caller holds a reference for; on success the queue owns that reference.
 * Returns -1 (reference still the caller's) when the connection is closing or over its cap. */
static int pf_conn_enqueue(struct pf_conn *c, struct pf_frame *f)
{
    struct pf_qnode *n;

    if (c->close_code)
        return -1;
    if (c->qbytes + f->len > c->shard->cfg->max_pending_bytes) {
        pf_conn_close_slow(c);
        return -1;
    }
    n = pf_node_get(c->shard);
    if (!n)
        return -1;
    n->frame = f;
    n->next = NULL;
    if (c->qtail)
        c->qtail->next = n;
    else {
        c->qhead = n;
        lws_callback_on_writable(c->wsi);
    }
    c->qtail = n;
    c->qbytes += f->len;
    return 0;
}

static void pf_conn_send(struct pf_conn *c, const char *text, size_t len)
{
    struct pf_frame *f = pf_frame_text(text, len);

    if (f && pf_conn_enqueue(c, f))
        pf_frame_release(f);
}

static void pf_conn_error(struct pf_conn *c, const char *code, const char *msg)
{
    struct pf_buf b;

    pf_buf_init(&b);
    pf_buf_append_str(&b, "{\"op\":\"error\",\"code\":\"");
    pf_buf_append_str(&b, code);
    pf_buf_append_str(&b, "\",\"message\":");
    pf_json_append_string(&b, (const unsigned char *)msg, strlen(msg));
    pf_buf_append_str(&b, "}");
    if (pf_buf_ok(&b))
        pf_conn_send(c, (const char *)b.data, b.len);
    pf_buf_free(&b);
    pf_stat(&c->shard->stats.client_errors, 1);
}

/* {"op":"<kind>","channels":["a","b"]} - names passed pf_channel_check, so no escaping. */
static struct pf_frame *pf_reply_channels(const char *kind, const struct pf_op *op)
{
    struct pf_buf b;
    const char *name;
    struct pf_frame *f;

    pf_buf_init(&b);
    pf_buf_append_str(&b, "{\"op\":\"");
    pf_buf_append_str(&b, kind);
    pf_buf_append_str(&b, "\",\"channels\":[");
    for (name = pf_op_next_name(op, NULL); name; name = pf_op_next_name(op, name)) {
        if (name != (const char *)op->names.data)
            pf_buf_append_byte(&b, ',');
        pf_buf_append_byte(&b, '"');
        pf_buf_append_str(&b, name);
        pf_buf_append_byte(&b, '"');
    }
    pf_buf_append_str(&b, "]}");
    f = pf_buf_ok(&b) ? pf_frame_text((const char *)b.data, b.len) : NULL;
    pf_buf_free(&b);
    return f;
}

/* ---- channels and subscriptions ---------------------------------------------------------- */

static void pf_shard_tell_link(struct pf_shard *s, enum pf_msg_type type, struct pf_schan *ch)
{
    struct pf_msg *m = pf_msg_new(type, ch->name, ch->name_len);

    if (!m) {
        pf_error("out of memory telling the Redis link about channel %s", ch->name);
        return;
    }
    m->shard = s->id;
    m->seq = ch->seq;
    pf_msg_list_push(&s->to_link, m);
}

static void pf_shard_flush_link(struct pf_shard *s)
{
    if (s->to_link.head)
        pf_link_post(s->link, &s->to_link);
}

static struct pf_schan *pf_schan_get(struct pf_shard *s, const char *name, size_t len)
{
    struct pf_schan *ch = pf_dict_get(&s->chans, name, len);
    struct pf_dict_entry *e;

    if (ch)
        return ch;
    ch = calloc(1, sizeof(*ch));
    if (!ch)
        return NULL;
    e = pf_dict_add(&s->chans, name, len, ch);
    if (!e) {
        free(ch);
        return NULL;
    }
    ch->name = e->key;
    ch->name_len = len;
    ch->seq = ++s->next_seq;
    pf_stat(&s->stats.channels, 1);
    pf_shard_tell_link(s, PF_MSG_WANT, ch);
    return ch;
}

static void pf_ack_finish(struct pf_conn *c, struct pf_ack *ack);

static void pf_sub_remove(struct pf_sub *sub)
{
    struct pf_schan *ch = sub->ch;
    struct pf_conn *c = sub->conn;
    struct pf_shard *s = c->shard;

    if (sub->conn_prev)
        sub->conn_prev->conn_next = sub->conn_next;
    else
        c->subs = sub->conn_next;
    if (sub->conn_next)
        sub->conn_next->conn_prev = sub->conn_prev;
    c->nsubs--;
    if (sub->ch_prev)
        sub->ch_prev->ch_next = sub->ch_next;
    else
        ch->subs = sub->ch_next;
    if (sub->ch_next)
        sub->ch_next->ch_prev = sub->ch_prev;
    ch->nsubs--;
    pf_stat(&s->stats.subscriptions, -1);
    if (sub->ack && sub->waiting && --sub->ack->remaining == 0) {
        struct pf_ack *ack = sub->ack;
        free(sub);
        pf_ack_finish(c, ack);
    } else {
        free(sub);
    }
    if (ch->nsubs == 0) {
        pf_shard_tell_link(s, PF_MSG_DROP, ch);
        pf_dict_del(&s->chans, ch->name, ch->name_len);
        free(ch);
        pf_stat(&s->stats.channels, -1);
    }
}

static struct pf_sub *pf_conn_find_sub(struct pf_conn *c, const char *name, size_t len)
{
    struct pf_sub *sub;

    /* The analyzer cannot see that pf_sub_remove() unlinks before it frees (list invariant). */
    for (sub = c->subs; sub; sub = sub->conn_next)
        // NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
        if (sub->ch->name_len == len && !memcmp(sub->ch->name, name, len))
            return sub;
    return NULL;
}

/* Queues the request's reply and lets its subscriptions receive batches from now on. */
static void pf_ack_finish(struct pf_conn *c, struct pf_ack *ack)
{
    struct pf_ack **pp;
    struct pf_sub *sub;

    for (sub = c->subs; sub; sub = sub->conn_next)
        if (sub->ack == ack)
            sub->ack = NULL;
    for (pp = &c->acks; *pp; pp = &(*pp)->next)
        if (*pp == ack) {
            *pp = ack->next;
            break;
        }
    if (pf_conn_enqueue(c, ack->reply))
        pf_frame_release(ack->reply);
    free(ack);
}

static int pf_conn_count_new(struct pf_conn *c, const struct pf_op *op)
{
    const char *name, *prev;
    int n = 0;

    for (name = pf_op_next_name(op, NULL); name; name = pf_op_next_name(op, name)) {
        size_t len = strlen(name);
        int dup = pf_conn_find_sub(c, name, len) != NULL;
        for (prev = pf_op_next_name(op, NULL); !dup && prev != name; prev = pf_op_next_name(op, prev))
            dup = !strcmp(prev, name);
        n += !dup;
    }
    return n;
}

static void pf_conn_subscribe(struct pf_conn *c, const struct pf_op *op)
{
    struct pf_ack *ack;
    const char *name;

    if (c->nsubs + (size_t)pf_conn_count_new(c, op) > c->shard->cfg->max_channels_per_conn) {
        char msg[96];
        snprintf(msg, sizeof(msg), "at most %zu subscriptions per connection",
                 c->shard->cfg->max_channels_per_conn);
        pf_conn_error(c, "too_many_channels", msg);
        return;
    }
    ack = calloc(1, sizeof(*ack));
    if (!ack || !(ack->reply = pf_reply_channels("subscribed", op)))
        goto fail;
    ack->next = c->acks;
    c->acks = ack;
    for (name = pf_op_next_name(op, NULL); name; name = pf_op_next_name(op, name)) {
        size_t len = strlen(name);
        struct pf_schan *ch;
        struct pf_sub *sub;
        if (pf_conn_find_sub(c, name, len))
            continue;
        ch = pf_schan_get(c->shard, name, len);
        sub = ch ? calloc(1, sizeof(*sub)) : NULL;
        if (!sub) {
            pf_conn_error(c, "subscribe_failed", "out of memory");
            continue;
        }
        sub->ch = ch;
        sub->conn = c;
        sub->waiting = !ch->confirmed;
        sub->ack = ack;
        ack->remaining += sub->waiting;
        sub->ch_next = ch->subs;
        if (ch->subs)
            ch->subs->ch_prev = sub;
        ch->subs = sub;
        ch->nsubs++;
        sub->conn_next = c->subs;
        if (c->subs)
            c->subs->conn_prev = sub;
        c->subs = sub;
        c->nsubs++;
        pf_stat(&c->shard->stats.subscriptions, 1);
    }
    if (ack->remaining == 0)
        pf_ack_finish(c, ack);
    return;
fail:
    free(ack);
    pf_conn_error(c, "subscribe_failed", "out of memory");
}

static void pf_conn_unsubscribe(struct pf_conn *c, const struct pf_op *op)
{
    const char *name;
    struct pf_frame *reply = pf_reply_channels("unsubscribed", op);

    for (name = pf_op_next_name(op, NULL); name; name = pf_op_next_name(op, name)) {
        struct pf_sub *sub = pf_conn_find_sub(c, name, strlen(name));
        if (sub)
            pf_sub_remove(sub);
    }
    if (reply && pf_conn_enqueue(c, reply))
        pf_frame_release(reply);
}

static void pf_conn_handle(struct pf_conn *c, const unsigned char *msg, size_t len)
{
    struct pf_op op;

    pf_op_init(&op);
    if (pf_op_parse(&op, msg, len, c->shard->cfg->max_channels_per_conn))
        pf_conn_error(c, op.err_code, op.err_msg);
    else if (op.type == PF_OP_SUBSCRIBE)
        pf_conn_subscribe(c, &op);
    else if (op.type == PF_OP_UNSUBSCRIBE)
        pf_conn_unsubscribe(c, &op);
    else
        pf_conn_send(c, "{\"op\":\"pong\"}", 13);
    pf_op_free(&op);
}

/* ?channels=a,b in the handshake URL is a subscribe request like any other. */
static void pf_conn_url_subscribe(struct pf_conn *c)
{
    char arg[8192];
    struct pf_buf req;
    const char *v = lws_get_urlarg_by_name(c->wsi, "channels=", arg, (int)sizeof(arg));
    const char *p;

    if (!v)
        return;
    pf_buf_init(&req);
    pf_buf_append_str(&req, "{\"op\":\"subscribe\",\"channels\":[");
    for (p = v; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (p != v)
            pf_buf_append_byte(&req, ',');
        pf_json_append_string(&req, (const unsigned char *)p, n);
        p += n + (comma ? 1 : 0);
        if (comma && !*p)
            pf_buf_append_str(&req, ",\"\""); /* "a," names an empty channel: say so */
    }
    pf_buf_append_str(&req, "]}");
    if (pf_buf_ok(&req))
        pf_conn_handle(c, req.data, req.len);
    pf_buf_free(&req);
}

static void pf_conn_cleanup(struct pf_conn *c)
{
    struct pf_ack *ack, *next;

    while (c->subs) {
        struct pf_sub *sub = c->subs;
        // NOLINTNEXTLINE(clang-analyzer-unix.Malloc): pf_sub_remove() unlinks sub from c->subs
        sub->ack = NULL; /* nobody to acknowledge any more */
        pf_sub_remove(sub);
    }
    for (ack = c->acks; ack; ack = next) {
        next = ack->next;
        pf_frame_release(ack->reply);
        free(ack);
    }
    c->acks = NULL;
    pf_conn_drop_queue(c);
    if (c->rx) {
        pf_buf_free(c->rx);
        free(c->rx);
        c->rx = NULL;
    }
}

static void pf_shard_drain(struct pf_shard *s);

/* ---- messages from the link -------------------------------------------------------------- */

static void pf_shard_on_confirmed(struct pf_shard *s, struct pf_schan *ch)
{
    struct pf_sub *sub, *next;

    ch->confirmed = 1;
    for (sub = ch->subs; sub; sub = next) {
        next = sub->ch_next; /* pf_ack_finish never removes subscriptions */
        if (!sub->waiting)
            continue;
        sub->waiting = 0;
        if (sub->ack && --sub->ack->remaining == 0)
            pf_ack_finish(sub->conn, sub->ack);
    }
}

static void pf_shard_on_frame(struct pf_shard *s, struct pf_schan *ch, struct pf_frame *f)
{
    struct pf_sub *sub;
    int n = 0;

    for (sub = ch->subs; sub; sub = sub->ch_next) {
        if (sub->ack) /* its request is not acknowledged yet */
            continue;
        if (pf_conn_enqueue(sub->conn, f) == 0)
            n++;
    }
    /* One atomic add for all the connections that now hold the frame. */
    if (n)
        pf_frame_ref(f, n);
    pf_stat(&s->stats.frames_out, n);
    pf_stat(&s->stats.messages_out, (int64_t)n * f->nmsg);
    pf_stat(&s->stats.bytes_out, (int64_t)n * f->len);
}

static void pf_shard_on_reset(struct pf_shard *s)
{
    size_t i;

    for (i = 0; i <= s->chans.mask; i++) {
        struct pf_dict_entry *e;
        for (e = s->chans.buckets[i]; e; e = e->next)
            ((struct pf_schan *)e->val)->confirmed = 0;
    }
}

/* Redis refused the channel: every subscriber of it here gets an error and loses the
 * subscription, rather than waiting for messages that will never come. */
static void pf_shard_on_failed(struct pf_shard *s, struct pf_schan *ch)
{
    char msg[200];

    snprintf(msg, sizeof(msg), "Redis did not accept SUBSCRIBE for channel %s", ch->name);
    while (ch->nsubs) {
        struct pf_sub *sub = ch->subs;
        int last = ch->nsubs == 1;
        // NOLINTNEXTLINE(clang-analyzer-unix.Malloc): pf_sub_remove() unlinks sub from ch->subs
        pf_conn_error(sub->conn, "subscribe_failed", msg);
        pf_sub_remove(sub); /* completes its request's ack once nothing else is waiting */
        if (last)
            return; /* ch is freed */
    }
}

static void pf_shard_drain_inbox(struct pf_shard *s)
{
    struct pf_msg *m = pf_queue_take(&s->inbox), *next;

    for (; m; m = next) {
        struct pf_schan *ch;
        next = m->next;
        if (m->type == PF_MSG_RESET) {
            pf_shard_on_reset(s);
        } else if (m->type == PF_MSG_DRAIN) {
            pf_shard_drain(s);
        } else if ((ch = pf_dict_get(&s->chans, m->chan, m->chan_len)) != NULL) {
            if (m->type == PF_MSG_FRAME)
                pf_shard_on_frame(s, ch, m->frame);
            else if (m->type == PF_MSG_CONFIRMED && m->seq == ch->seq)
                pf_shard_on_confirmed(s, ch);
            else if (m->type == PF_MSG_FAILED && m->seq == ch->seq)
                pf_shard_on_failed(s, ch);
        }
        pf_msg_free(m); /* drops the shard's own frame reference */
    }
    pf_shard_flush_link(s);
}

void pf_shard_post(struct pf_shard *s, struct pf_msg_list *msgs)
{
    if (pf_queue_put(&s->inbox, msgs) && s->ctx)
        lws_cancel_service(s->ctx);
}

/* ---- lws callbacks ----------------------------------------------------------------------- */

static int pf_conn_close_now(struct pf_conn *c)
{
    static const char slow[] = "slow consumer", away[] = "server shutting down";
    const char *reason = c->close_code == LWS_CLOSE_STATUS_GOINGAWAY ? away : slow;

    lws_close_reason(c->wsi, (enum lws_close_status)c->close_code, (unsigned char *)reason,
                     strlen(reason));
    return -1;
}

static int pf_conn_writeable(struct pf_conn *c)
{
    int burst = 0;

    if (c->close_code && !c->qhead)
        return pf_conn_close_now(c);
    /* Several frames per wake-up while the kernel takes them whole; stop at the first partial
     * write (lws keeps the rest) so one fast reader cannot hog the loop. */
    while (c->qhead && burst++ < 16) {
        struct pf_qnode *n = c->qhead;
        struct pf_frame *f = n->frame;
        if (lws_write(c->wsi, (unsigned char *)pf_frame_bytes(f), f->len, LWS_WRITE_HTTP) <
            (int)f->len)
            return -1;
        c->qhead = n->next;
        if (!c->qhead)
            c->qtail = NULL;
        c->qbytes -= f->len;
        pf_frame_release(f);
        pf_node_put(c->shard, n);
        if (lws_partial_buffered(c->wsi))
            break;
    }
    if (c->qhead || c->close_code)
        lws_callback_on_writable(c->wsi);
    return 0;
}

/* Shutdown: stop accepting, let every connection write what it has queued (the batches of the
 * last window included), then close it with 1001. */
static void pf_shard_drain(struct pf_shard *s)
{
    struct pf_conn *c;

    s->draining = 1;
    if (s->listen_wsi)
        lws_set_timeout(s->listen_wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    s->listen_wsi = NULL;
    for (c = s->conns; c; c = c->next) {
        if (c->close_code)
            continue;
        c->close_code = LWS_CLOSE_STATUS_GOINGAWAY;
        lws_callback_on_writable(c->wsi);
    }
}

static int pf_conn_receive(struct pf_conn *c, const unsigned char *in, size_t len)
{
    int final = lws_is_final_fragment(c->wsi) && !lws_remaining_packet_payload(c->wsi);
    size_t have = c->rx ? c->rx->len : 0;

    if (lws_frame_is_binary(c->wsi)) {
        static const char reason[] = "binary frames are not accepted";
        lws_close_reason(c->wsi, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE, (unsigned char *)reason,
                         sizeof(reason) - 1);
        return -1;
    }
    if (have + len > c->shard->cfg->max_message_bytes) {
        static const char reason[] = "message too big";
        lws_close_reason(c->wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, (unsigned char *)reason,
                         sizeof(reason) - 1);
        return -1;
    }
    if (final && !c->rx) {
        pf_conn_handle(c, in, len); /* the common case: one frame, no copy */
        return 0;
    }
    if (!c->rx && (c->rx = calloc(1, sizeof(*c->rx))) == NULL)
        return -1;
    if (pf_buf_append(c->rx, in, len))
        return -1;
    if (final) {
        pf_conn_handle(c, c->rx->data, c->rx->len);
        pf_buf_free(c->rx);
        free(c->rx);
        c->rx = NULL;
    }
    return 0;
}

static int pf_shard_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                             void *in, size_t len)
{
    struct pf_shard *s = lws_context_user(lws_get_context(wsi));
    struct pf_conn *c = user;
    int rc = 0;

    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return pf_http_filter_ws(wsi, s->cfg->allowed_origins);
    case LWS_CALLBACK_ESTABLISHED:
        memset(c, 0, sizeof(*c));
        c->wsi = wsi;
        c->shard = s;
        c->established = 1;
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        pf_stat(&s->stats.connections, 1);
        if (s->draining) {
            c->close_code = LWS_CLOSE_STATUS_GOINGAWAY;
            lws_callback_on_writable(wsi);
            break;
        }
        pf_stat(&s->stats.connections_total, 1);
        pf_conn_url_subscribe(c);
        break;
    case LWS_CALLBACK_RECEIVE:
        rc = pf_conn_receive(c, in, len);
        break;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        rc = pf_conn_writeable(c);
        break;
    case LWS_CALLBACK_CLOSED:
        if (c && c->established) {
            pf_conn_cleanup(c);
            c->established = 0;
            if (c->prev)
                c->prev->next = c->next;
            else
                s->conns = c->next;
            if (c->next)
                c->next->prev = c->prev;
            pf_stat(&s->stats.connections, -1);
        }
        break;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        pf_shard_drain_inbox(s);
        return 0;
    case LWS_CALLBACK_HTTP:
        return pf_http_serve(wsi, s, (const char *)in);
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
    pf_shard_flush_link(s);
    return rc;
}

/* The listening socket, watched by lws as a raw descriptor. */
static int pf_listen_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                              void *in, size_t len)
{
    struct pf_shard *s = lws_context_user(lws_get_context(wsi));

    if (reason == LWS_CALLBACK_RAW_RX_FILE)
        pf_listener_accept(&s->listener, s->vhost);
    return 0;
}

static const struct lws_protocols pf_protocols[] = {
    /* A small receive buffer keeps idle connections cheap; client ops are short and longer
     * messages arrive in pieces that pf_conn_receive() joins. */
    {"pushfabric", pf_shard_callback, sizeof(struct pf_conn), 128, 0, NULL, 0},
    {"pf-listen", pf_listen_callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

static void pf_lws_log(int level, const char *line)
{
    size_t n = strlen(line);

    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    pf_log(level == LLL_ERR ? PF_LOG_ERROR : PF_LOG_WARN, "lws: %.*s", (int)n, line);
}

int pf_shard_init(struct pf_shard *s, int id, const struct pf_config *cfg, struct pf_link *link)
{
    struct lws_context_creation_info info;
    lws_sock_file_fd_type fd;

    memset(s, 0, sizeof(*s));
    s->listener.fd = s->listener.spare_fd = -1;
    s->id = id;
    s->cfg = cfg;
    s->link = link;
    pf_queue_init(&s->inbox);
    if (pf_dict_init(&s->chans))
        return -1;
    s->retry.secs_since_valid_ping = (uint16_t)cfg->ping_interval;
    s->retry.secs_since_valid_hangup = (uint16_t)(cfg->ping_interval + cfg->ping_timeout);
    lws_set_log_level(LLL_ERR | LLL_WARN, pf_lws_log);
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    info.protocols = pf_protocols;
    info.user = s;
    info.retry_and_idle_policy = &s->retry; /* lws keeps the pointer */
    info.timeout_secs = 10;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 | LWS_SERVER_OPTION_DISABLE_IPV6;
    if (!strcmp(cfg->event_lib, "libev"))
        info.options |= LWS_SERVER_OPTION_LIBEV;
    else if (!strcmp(cfg->event_lib, "libuv"))
        info.options |= LWS_SERVER_OPTION_LIBUV;
    s->ctx = lws_create_context(&info);
    if (!s->ctx)
        return -1;
    s->vhost = lws_get_vhost_by_name(s->ctx, "default");
    if (!s->vhost || pf_listener_open(&s->listener, cfg->listen_host, cfg->listen_port))
        return -1;
    fd.filefd = s->listener.fd;
    s->listen_wsi = lws_adopt_descriptor_vhost(s->vhost, LWS_ADOPT_RAW_FILE_DESC, fd, "pf-listen",
                                               NULL);
    if (!s->listen_wsi) {
        pf_error("shard %d: lws cannot watch the listening socket", id);
        close(s->listener.fd);
        return -1;
    }
    return 0;
}

static void *pf_shard_main(void *arg)
{
    struct pf_shard *s = arg;

    while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE))
        if (lws_service(s->ctx, 0) < 0)
            break;
    return NULL;
}

int pf_shard_start(struct pf_shard *s)
{
    if (pthread_create(&s->thread, NULL, pf_shard_main, s))
        return -1;
    s->started = 1;
    return 0;
}

void pf_shard_stop(struct pf_shard *s)
{
    if (!s->started)
        return;
    __atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
    lws_cancel_service(s->ctx);
    pthread_join(s->thread, NULL);
    s->started = 0;
}

void pf_shard_destroy(struct pf_shard *s)
{
    void *chunk, *next;

    if (s->ctx)
        lws_context_destroy(s->ctx); /* closes connections: their cleanup runs here */
    s->ctx = NULL;
    pf_listener_close(&s->listener);
    pf_queue_destroy(&s->inbox);
    pf_dict_free(&s->chans);
    for (chunk = s->node_chunks; chunk; chunk = next) {
        next = *(void **)chunk;
        free(chunk);
    }
    s->node_chunks = NULL;
    while (s->to_link.head) {
        struct pf_msg *m = s->to_link.head;
        s->to_link.head = m->next;
        pf_msg_free(m);
    }
}
