/* shard.c - see shard.h.
 *
 * Each shard runs its own epoll loop: its SO_REUSEPORT listener, an eventfd that the Redis link
 * rings when it hands over messages, and the connections it accepted. The WebSocket protocol is
 * ours (ws.c), so every check RFC 6455 asks of a server is made and an idle connection costs a
 * small struct and no buffers.
 *
 * A connection's pending output is a FIFO of nodes pointing at shared frames; nodes come from a
 * per-shard free list, so the broadcast path allocates nothing once warm and never encodes per
 * connection. Connections that got output are written once per loop turn with writev(). A
 * subscription waits for Redis' confirmation (a CONFIRMED message carrying the seq of this
 * shard's latest WANT for the channel - stale confirmations from before a churn are ignored)
 * before its request is acknowledged; batches reach it only after that ack. */
#include "shard.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "json.h"
#include "log.h"
#include "op.h"
#include "redis_link.h"
#include "ws.h"

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

/* One subscribe request waiting for Redis; its reply goes out when remaining hits 0 and lists
 * the requested channels, less any that Redis refused meanwhile. */
struct pf_ack {
    struct pf_ack *next;
    struct pf_buf names;   /* the request's channels, NUL-separated, in order */
    struct pf_buf refused; /* channels Redis refused, NUL-separated */
    uint32_t remaining;
};

struct pf_sub {
    struct pf_sub *ch_prev, *ch_next;     /* in the channel's list */
    struct pf_sub *conn_prev, *conn_next; /* in the connection's list */
    struct pf_schan *ch;
    struct pf_conn *conn;
    struct pf_ack *ack; /* set until the request's ack is queued */
    uint8_t waiting;    /* channel not confirmed yet */
};

enum pf_conn_state { PF_CS_HTTP = 0, PF_CS_WS };

struct pf_conn {
    int fd;
    uint8_t state;
    uint8_t closing;    /* a close frame or final response is queued: nothing else goes out */
    uint8_t want_out;   /* EPOLLOUT is registered */
    uint8_t dirty;      /* on the shard's list of connections to write */
    uint8_t ping_sent;
    uint8_t in_message; /* a fragmented text message is being received */
    uint8_t dead;
    uint8_t shut;       /* our side is closed (FIN sent); waiting for the peer's */
    uint8_t counted;    /* included in the connections gauge */
    uint32_t utf8;      /* UTF-8 state of the text message being received */
    uint32_t last_rx;   /* shard clock (s) of the last bytes received */
    uint32_t deadline;  /* shard clock (s) by which a closing connection is dropped; 0 = none */
    uint32_t qoff;      /* bytes of the head frame already written */
    size_t qbytes;      /* queued frame bytes plus the queue nodes: what this reader costs */
    struct pf_shard *shard;
    struct pf_conn *prev, *next; /* the shard's connections */
    struct pf_conn *dirty_next;
    struct pf_qnode *qhead, *qtail;
    struct pf_sub *subs;
    uint32_t nsubs;
    struct pf_ack *acks;
    struct pf_buf *in;  /* unparsed input: a partial request or frame; NULL when idle */
    struct pf_buf *msg; /* fragments of the message being received */
};

#define PF_NODE_CHUNK 4096
/* A queued frame's bytes are shared, but the cap also counts the node: with many tiny frames
 * the nodes are what a slow reader really costs. */
#define PF_QCOST(f) ((size_t)(f)->len + sizeof(struct pf_qnode))
#define PF_SCRATCH 65536
#define PF_IOV 16

static void pf_stat(uint64_t *p, int64_t d) { __atomic_add_fetch(p, (uint64_t)d, __ATOMIC_RELAXED); }

static void pf_shard_drain(struct pf_shard *s);
static void pf_conn_fail(struct pf_conn *c, int code, const char *why);

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

/* Drops queued frames; a frame already partly written stays, or the stream would break. */
static void pf_conn_drop_queue(struct pf_conn *c, int keep_partial)
{
    struct pf_qnode *n = c->qhead, *next;

    if (keep_partial && n && c->qoff) {
        c->qbytes = PF_QCOST(n->frame);
        n = n->next;
        c->qhead->next = NULL;
        c->qtail = c->qhead;
    } else {
        c->qhead = c->qtail = NULL;
        c->qbytes = 0;
        c->qoff = 0;
    }
    for (; n; n = next) {
        next = n->next;
        pf_frame_release(n->frame);
        pf_node_put(c->shard, n);
    }
}

static void pf_conn_mark_dirty(struct pf_conn *c)
{
    if (c->dirty || c->dead)
        return;
    c->dirty = 1;
    c->dirty_next = c->shard->dirty;
    c->shard->dirty = c;
}

static int pf_conn_push(struct pf_conn *c, struct pf_frame *f)
{
    struct pf_qnode *n = pf_node_get(c->shard);

    if (!n)
        return -1;
    n->frame = f;
    n->next = NULL;
    if (c->qtail)
        c->qtail->next = n;
    else
        c->qhead = n;
    c->qtail = n;
    c->qbytes += PF_QCOST(f);
    pf_conn_mark_dirty(c);
    return 0;
}

/* The last thing a connection sends: after it, the socket is closed once written, or after
 * two seconds if the peer does not read it. */
static void pf_conn_finish(struct pf_conn *c, struct pf_frame *last)
{
    if (c->closing || c->dead) {
        if (last)
            pf_frame_release(last);
        return;
    }
    c->closing = 1;
    c->deadline = c->shard->now + 2;
    if (last && pf_conn_push(c, last))
        pf_frame_release(last);
    pf_conn_mark_dirty(c);
}

/* Sends a close frame with code and reason, then closes (RFC 6455 §7.1.7: the server does not
 * wait for the peer once it has failed the connection). */
static void pf_conn_close(struct pf_conn *c, int code, const char *reason)
{
    unsigned char p[125];
    size_t n = strlen(reason);

    if (n > sizeof(p) - 2)
        n = sizeof(p) - 2;
    p[0] = (unsigned char)(code >> 8);
    p[1] = (unsigned char)code;
    memcpy(p + 2, reason, n);
    pf_conn_finish(c, pf_frame_control(PF_WS_CLOSE, p, n + 2));
}

/* A reader that fell behind by more than the cap is closed: its memory is given back now, the
 * close frame goes out if it ever reads again, and the deadline ends it if it never does. */
static void pf_conn_close_slow(struct pf_conn *c)
{
    pf_conn_drop_queue(c, 1);
    pf_stat(&c->shard->stats.slow_closed, 1);
    pf_conn_close(c, PF_WS_POLICY, "slow consumer");
}

/* Queues a frame the caller holds a reference for; on success the queue owns that reference.
 * Returns -1 (reference still the caller's) when the connection is closing or over its cap. */
static int pf_conn_enqueue(struct pf_conn *c, struct pf_frame *f)
{
    if (c->closing || c->dead || c->state != PF_CS_WS)
        return -1;
    /* Slow = a backlog past the cap. One frame bigger than the cap, queued on an empty queue, is
     * not a slow reader: the frame's bytes are shared, so it costs this reader only a node. */
    if (c->qbytes && c->qbytes + PF_QCOST(f) > c->shard->cfg->max_pending_bytes) {
        pf_conn_close_slow(c);
        return -1;
    }
    return pf_conn_push(c, f);
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

static int pf_names_has(const struct pf_buf *names, const char *name)
{
    size_t off = 0;

    while (off < names->len) {
        const char *n = (const char *)names->data + off;
        if (!strcmp(n, name))
            return 1;
        off += strlen(n) + 1;
    }
    return 0;
}

/* {"op":"<kind>","channels":["a","b"]} from NUL-separated names, leaving out those in skip.
 * The names passed pf_channel_check(), so they need no escaping. */
static struct pf_frame *pf_reply_channels(const char *kind, const struct pf_buf *names,
                                          const struct pf_buf *skip)
{
    struct pf_buf b;
    size_t off = 0;
    int first = 1;
    struct pf_frame *f;

    pf_buf_init(&b);
    pf_buf_append_str(&b, "{\"op\":\"");
    pf_buf_append_str(&b, kind);
    pf_buf_append_str(&b, "\",\"channels\":[");
    while (off < names->len) {
        const char *name = (const char *)names->data + off;
        off += strlen(name) + 1;
        if (skip && pf_names_has(skip, name))
            continue;
        if (!first)
            pf_buf_append_byte(&b, ',');
        first = 0;
        pf_buf_append_byte(&b, '"');
        pf_buf_append_str(&b, name);
        pf_buf_append_byte(&b, '"');
    }
    pf_buf_append_str(&b, "]}");
    f = pf_buf_ok(&b) ? pf_frame_text((const char *)b.data, b.len) : NULL;
    pf_buf_free(&b);
    return f;
}

static void pf_ack_free(struct pf_ack *ack)
{
    pf_buf_free(&ack->names);
    pf_buf_free(&ack->refused);
    free(ack);
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
    {
        struct pf_frame *reply = pf_reply_channels("subscribed", &ack->names, &ack->refused);
        if (reply && pf_conn_enqueue(c, reply))
            pf_frame_release(reply);
    }
    pf_ack_free(ack);
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
    if (!ack || pf_buf_append(&ack->names, op->names.data, op->names.len))
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
    if (ack)
        pf_ack_free(ack);
    pf_conn_error(c, "subscribe_failed", "out of memory");
}

static void pf_conn_unsubscribe(struct pf_conn *c, const struct pf_op *op)
{
    const char *name;
    struct pf_frame *reply = pf_reply_channels("unsubscribed", &op->names, NULL);

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
static void pf_conn_url_subscribe(struct pf_conn *c, const char *query)
{
    char arg[8192];
    struct pf_buf req;
    const char *p;
    int got = pf_http_query_param(query, "channels", arg, sizeof(arg));

    if (got == -1)
        return;
    if (got < 0) {
        /* Silence would leave the client waiting for an ack that never comes. */
        pf_conn_error(c, "bad_channel",
                      "channels= in the URL has a bad percent-escape, a %00 or is too long");
        return;
    }
    pf_buf_init(&req);
    pf_buf_append_str(&req, "{\"op\":\"subscribe\",\"channels\":[");
    for (p = arg; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (p != arg)
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
        pf_ack_free(ack);
    }
    c->acks = NULL;
    pf_conn_drop_queue(c, 0);
}

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
        if (sub->ack) /* its request's ack will not list this channel */
            pf_buf_append(&sub->ack->refused, ch->name, ch->name_len + 1);
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
    uint64_t one = 1;

    if (pf_queue_put(&s->inbox, msgs) && write(s->wake_fd, &one, sizeof(one)) < 0) {
        /* The eventfd counter cannot overflow at one write per empty->non-empty handoff. */
    }
}

/* ---- connection life --------------------------------------------------------------------- */

static void pf_conn_set_out(struct pf_conn *c, int want)
{
    struct epoll_event ev;

    if (c->want_out == want)
        return;
    ev.events = EPOLLIN | (want ? EPOLLOUT : 0);
    ev.data.ptr = c;
    if (epoll_ctl(c->shard->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->want_out = (uint8_t)want;
}

static void pf_conn_uncount(struct pf_conn *c)
{
    if (c->counted)
        pf_stat(&c->shard->stats.connections, -1);
    c->counted = 0;
}

/* Closes the socket and gives everything back; the struct itself is freed at the end of the
 * loop turn, since other events of this turn may still point at it. */
static void pf_conn_kill(struct pf_conn *c)
{
    struct pf_shard *s = c->shard;

    if (c->dead)
        return;
    c->dead = 1;
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    pf_conn_uncount(c);
    pf_conn_cleanup(c);
    if (c->msg) {
        pf_buf_free(c->msg);
        free(c->msg);
        c->msg = NULL;
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = s->graveyard;
    s->graveyard = c;
}

/* Writes as much of the queue as the socket takes, several frames per writev(). */
static void pf_conn_flush(struct pf_conn *c)
{
    struct iovec iov[PF_IOV];

    while (c->qhead) {
        struct pf_qnode *n = c->qhead;
        ssize_t w;
        int k = 0;
        for (; n && k < PF_IOV; n = n->next, k++) {
            size_t skip = k ? 0 : c->qoff;
            iov[k].iov_base = (void *)(pf_frame_bytes(n->frame) + skip);
            iov[k].iov_len = n->frame->len - skip;
        }
        w = writev(c->fd, iov, k);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            pf_conn_kill(c);
            return;
        }
        while (w > 0 && c->qhead) {
            struct pf_qnode *h = c->qhead;
            size_t left = h->frame->len - c->qoff;
            if ((size_t)w < left) {
                c->qoff += (uint32_t)w;
                break;
            }
            w -= (ssize_t)left;
            c->qoff = 0;
            c->qhead = h->next;
            if (!c->qhead)
                c->qtail = NULL;
            c->qbytes -= PF_QCOST(h->frame);
            pf_frame_release(h->frame);
            pf_node_put(c->shard, h);
        }
        if (c->qhead && c->qoff)
            break; /* the kernel took part of a frame: its buffer is full */
    }
    if (!c->qhead && c->closing) {
        /* Half-close, then wait (bounded by the deadline) for the peer's FIN: closing at once
         * with unread input would send an RST that can destroy the response or close frame
         * still in flight. */
        if (!c->shut) {
            c->shut = 1;
            pf_conn_uncount(c); /* closed as far as clients and the drain are concerned */
            pf_conn_cleanup(c); /* and its subscriptions go now, not when the peer answers */
            shutdown(c->fd, SHUT_WR);
            c->deadline = c->shard->now + 2;
        }
        pf_conn_set_out(c, 0);
        return;
    }
    pf_conn_set_out(c, c->qhead != NULL);
}

static void pf_shard_flush_dirty(struct pf_shard *s)
{
    while (s->dirty) {
        struct pf_conn *c = s->dirty;
        s->dirty = c->dirty_next;
        c->dirty = 0;
        if (!c->dead)
            pf_conn_flush(c);
    }
}

/* ---- WebSocket input --------------------------------------------------------------------- */

static void pf_conn_fail(struct pf_conn *c, int code, const char *why)
{
    pf_conn_close(c, code, why);
}

static void pf_conn_on_close_frame(struct pf_conn *c, const unsigned char *p, size_t n)
{
    int code, bad = pf_ws_check_close(p, n, &code);

    if (bad) {
        pf_conn_fail(c, bad, bad == PF_WS_BAD_DATA ? "close reason is not valid UTF-8"
                                                   : "invalid close frame");
        return;
    }
    /* Echo the peer's close (its status code and reason), then close the TCP connection. */
    pf_conn_finish(c, pf_frame_control(PF_WS_CLOSE, p, n));
}

/* One complete, unmasked data or control frame. */
static void pf_conn_on_frame(struct pf_conn *c, const struct pf_ws_frame *f, unsigned char *p)
{
    size_t n = (size_t)f->len;

    switch (f->opcode) {
    case PF_WS_PING:
        if (!c->closing) {
            struct pf_frame *pong = pf_frame_control(PF_WS_PONG, p, n);
            if (pong && pf_conn_push(c, pong))
                pf_frame_release(pong);
        }
        return;
    case PF_WS_PONG:
        return;
    case PF_WS_CLOSE:
        pf_conn_on_close_frame(c, p, n);
        return;
    case PF_WS_BINARY:
        pf_conn_fail(c, PF_WS_UNSUPPORTED, "binary frames are not accepted");
        return;
    case PF_WS_TEXT:
        c->utf8 = 0;
        break;
    default:
        break; /* continuation of a text message */
    }
    if (pf_utf8_feed(&c->utf8, p, n) < 0 || (f->fin && c->utf8 != 0)) {
        pf_conn_fail(c, PF_WS_BAD_DATA, "text is not valid UTF-8");
        return;
    }
    c->in_message = !f->fin;
    if (f->fin && !c->msg) {
        pf_conn_handle(c, p, n); /* the common case: one frame, no copy */
        return;
    }
    if (!c->msg && (c->msg = calloc(1, sizeof(*c->msg))) == NULL) {
        pf_conn_fail(c, PF_WS_INTERNAL, "out of memory");
        return;
    }
    if (pf_buf_append(c->msg, p, n)) {
        pf_conn_fail(c, PF_WS_INTERNAL, "out of memory");
        return;
    }
    if (f->fin) {
        pf_conn_handle(c, c->msg->data, c->msg->len);
        pf_buf_free(c->msg);
        free(c->msg);
        c->msg = NULL;
    }
}

/* Parses the frames in [buf, buf+len) (writable: payloads are unmasked in place); returns the
 * bytes consumed. Stops at the first incomplete frame. */
static size_t pf_conn_parse_ws(struct pf_conn *c, unsigned char *buf, size_t len)
{
    size_t off = 0;

    while (off < len && !c->closing && !c->dead) {
        struct pf_ws_frame f;
        const char *why = NULL;
        int code = 0;
        size_t have = c->msg ? c->msg->len : 0;
        uint64_t room = c->shard->cfg->max_message_bytes > have
                            ? c->shard->cfg->max_message_bytes - have
                            : 0;
        enum pf_ws_parse r = pf_ws_parse_header(buf + off, len - off, c->in_message, room, &f,
                                                &code, &why);
        if (r == PF_WS_NEED_MORE)
            break;
        if (r == PF_WS_ERROR) {
            pf_conn_fail(c, code, why);
            break;
        }
        if (len - off < f.header_len + f.len)
            break;
        pf_ws_unmask(buf + off + f.header_len, (size_t)f.len, f.mask, 0);
        pf_conn_on_frame(c, &f, buf + off + f.header_len);
        off += f.header_len + (size_t)f.len;
    }
    return c->closing ? len : off; /* after a close, the rest of the input is ignored */
}

/* ---- HTTP input and the handshake -------------------------------------------------------- */

static void pf_conn_respond(struct pf_conn *c, struct pf_frame *response)
{
    pf_conn_finish(c, response);
}

static void pf_conn_upgrade(struct pf_conn *c, const struct pf_http_req *req)
{
    char accept[29], head[256];
    int n;
    struct pf_frame *f;

    pf_ws_accept_key(req->key, accept);
    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                 accept);
    f = pf_frame_raw(head, (size_t)n);
    if (!f || pf_conn_push(c, f)) {
        if (f)
            pf_frame_release(f);
        pf_conn_kill(c);
        return;
    }
    c->state = PF_CS_WS;
    c->last_rx = c->shard->now;
    pf_stat(&c->shard->stats.connections, 1);
    c->counted = 1;
    pf_stat(&c->shard->stats.connections_total, 1);
    if (c->shard->draining) {
        pf_conn_close(c, PF_WS_GOING_AWAY, "server shutting down");
        return;
    }
    pf_conn_url_subscribe(c, req->query);
}

/* Handles one complete request head; returns 1 when the connection became a WebSocket. */
static int pf_conn_on_request(struct pf_conn *c, const struct pf_http_req *req)
{
    const char *why = NULL;
    int up = pf_ws_check_upgrade(req, &why);

    if (strcmp(req->path, "/ws") != 0) {
        if (up != 1)
            pf_conn_respond(c, pf_http_error(404, "WebSocket endpoint is /ws\n", NULL));
        else
            pf_conn_respond(c, pf_http_route(c->shard, req));
        return 0;
    }
    if (up == 1) {
        pf_conn_respond(c, pf_http_route(c->shard, req));
        return 0;
    }
    if (up) {
        pf_conn_respond(c, pf_http_error(up, why, up == 426 ? "Sec-WebSocket-Version: 13\r\n" : NULL));
        return 0;
    }
    if (req->origin[0] &&
        !pf_http_origin_allowed(req->origin, req->host, c->shard->cfg->allowed_origins)) {
        pf_conn_respond(c, pf_http_error(403, "Origin not allowed (see --allowed-origins)\n", NULL));
        return 0;
    }
    pf_conn_upgrade(c, req);
    return 1;
}

/* Returns the bytes consumed from buf. */
static size_t pf_conn_parse_http(struct pf_conn *c, unsigned char *buf, size_t len)
{
    struct pf_http_req req;
    enum pf_http_parse r = pf_http_parse((const char *)buf, len, &req);

    if (r == PF_HTTP_INCOMPLETE)
        return 0;
    if (r == PF_HTTP_BAD) {
        pf_conn_respond(c, pf_http_error(400, "malformed HTTP request\n", NULL));
        return len;
    }
    if (r == PF_HTTP_TOO_BIG) {
        pf_conn_respond(c, pf_http_error(431, "request headers too large\n", NULL));
        return len;
    }
    if (!pf_conn_on_request(c, &req))
        return len;
    /* Frames the client sent right behind its handshake. */
    return req.head_len + pf_conn_parse_ws(c, buf + req.head_len, len - req.head_len);
}

static size_t pf_conn_parse(struct pf_conn *c, unsigned char *buf, size_t len)
{
    if (c->closing)
        return len;
    return c->state == PF_CS_HTTP ? pf_conn_parse_http(c, buf, len) : pf_conn_parse_ws(c, buf, len);
}

/* Keeps the unparsed tail for the next read; NULL buffer again once everything is parsed. */
static int pf_conn_keep(struct pf_conn *c, const unsigned char *rest, size_t n)
{
    if (n == 0) {
        if (c->in) {
            pf_buf_free(c->in);
            free(c->in);
            c->in = NULL;
        }
        return 0;
    }
    if (!c->in && (c->in = calloc(1, sizeof(*c->in))) == NULL)
        return -1;
    if (rest != c->in->data) {
        pf_buf_reset(c->in);
        return pf_buf_append(c->in, rest, n);
    }
    return 0;
}

static void pf_conn_readable(struct pf_conn *c)
{
    struct pf_shard *s = c->shard;
    ssize_t n = read(c->fd, s->scratch, PF_SCRATCH);
    unsigned char *buf;
    size_t len, used;

    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        pf_conn_kill(c);
        return;
    }
    if (n < 0 || c->shut)
        return; /* after our FIN, input is read only to see the peer's EOF */
    c->last_rx = s->now;
    c->ping_sent = 0;
    if (c->in) {
        if (pf_buf_append(c->in, s->scratch, (size_t)n)) {
            pf_conn_kill(c);
            return;
        }
        buf = c->in->data;
        len = c->in->len;
    } else {
        buf = s->scratch;
        len = (size_t)n;
    }
    used = pf_conn_parse(c, buf, len);
    if (c->dead)
        return;
    if (len - used > PF_WS_MAX_REQUEST + c->shard->cfg->max_message_bytes + 16) {
        pf_conn_kill(c); /* cannot happen with the parsers' bounds; never grow without one */
        return;
    }
    if (used && c->in && used < len) {
        memmove(c->in->data, c->in->data + used, len - used);
        c->in->len = len - used;
    } else if (pf_conn_keep(c, buf + used, len - used)) {
        pf_conn_kill(c);
    }
}

/* ---- the loop ---------------------------------------------------------------------------- */

static void pf_shard_watch_listener(struct pf_shard *s, int on)
{
    struct epoll_event ev;

    ev.events = on ? EPOLLIN : 0;
    ev.data.ptr = &s->listener;
    if (s->listener.fd >= 0)
        epoll_ctl(s->epfd, EPOLL_CTL_MOD, s->listener.fd, &ev);
}

static void pf_shard_accept(struct pf_shard *s)
{
    int i;

    /* A bounded burst keeps an accept storm from starving the shard's other connections. */
    for (i = 0; i < 64; i++) {
        struct epoll_event ev;
        struct pf_conn *c;
        int fd = pf_listener_accept(&s->listener);
        if (fd < 0) {
            if (s->listener.paused)
                pf_shard_watch_listener(s, 0); /* back on the next tick */
            return;
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->shard = s;
        c->last_rx = s->now;
        c->deadline = s->now + 10; /* the handshake must be done by then */
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev)) {
            close(fd);
            free(c);
            continue;
        }
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
    }
}

/* Once a second: handshake and closing deadlines, keepalive pings, silent peers. */
static void pf_shard_tick(struct pf_shard *s)
{
    const struct pf_config *cfg = s->cfg;
    struct pf_conn *c, *next;

    if (s->listener.paused && pf_listener_resume(&s->listener) == 0)
        pf_shard_watch_listener(s, 1);
    for (c = s->conns; c; c = next) {
        next = c->next;
        if ((c->closing || c->state == PF_CS_HTTP) && c->deadline && s->now >= c->deadline) {
            pf_conn_kill(c);
        } else if (c->state == PF_CS_WS && !c->closing) {
            uint32_t idle = s->now - c->last_rx;
            if (idle >= (uint32_t)(cfg->ping_interval + cfg->ping_timeout)) {
                pf_stat(&s->stats.silent_closed, 1);
                pf_conn_kill(c); /* the peer is gone or stuck: a close frame would not arrive */
            } else if (idle >= (uint32_t)cfg->ping_interval && !c->ping_sent) {
                struct pf_frame *ping = pf_frame_control(PF_WS_PING, NULL, 0);
                c->ping_sent = 1;
                if (ping && pf_conn_push(c, ping))
                    pf_frame_release(ping);
            }
        }
    }
}

static void pf_shard_bury(struct pf_shard *s)
{
    while (s->graveyard) {
        struct pf_conn *c = s->graveyard;
        s->graveyard = c->next;
        if (c->in) {
            pf_buf_free(c->in);
            free(c->in);
        }
        free(c);
    }
}

static uint32_t pf_clock_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)ts.tv_sec;
}

/* Shutdown: stop accepting, let every connection write what it has queued (the batches of the
 * last window included), then close it with 1001. */
static void pf_shard_drain(struct pf_shard *s)
{
    struct pf_conn *c, *next;

    s->draining = 1;
    if (s->listener.fd >= 0) {
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->listener.fd, NULL);
        pf_listener_close(&s->listener);
    }
    for (c = s->conns; c; c = next) {
        next = c->next;
        if (c->state == PF_CS_WS)
            pf_conn_close(c, PF_WS_GOING_AWAY, "server shutting down");
        else
            pf_conn_kill(c);
    }
}

static void pf_shard_event(struct pf_shard *s, struct epoll_event *ev)
{
    struct pf_conn *c = ev->data.ptr;

    if (ev->data.ptr == &s->listener) {
        pf_shard_accept(s);
        return;
    }
    if (ev->data.ptr == &s->wake_fd) {
        uint64_t v;
        if (read(s->wake_fd, &v, sizeof(v)) < 0) {
            /* EAGAIN: another turn already consumed it */
        }
        pf_shard_drain_inbox(s);
        return;
    }
    if (c->dead)
        return;
    if (ev->events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        pf_conn_readable(c);
    if (!c->dead && (ev->events & EPOLLOUT))
        pf_conn_flush(c);
}

static void *pf_shard_main(void *arg)
{
    struct pf_shard *s = arg;
    struct epoll_event evs[256];
    uint32_t last_tick = pf_clock_s();

    while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
        int n = epoll_wait(s->epfd, evs, 256, 1000), i;
        s->now = pf_clock_s();
        for (i = 0; i < n; i++)
            pf_shard_event(s, &evs[i]);
        if (s->now != last_tick) {
            last_tick = s->now;
            pf_shard_tick(s);
        }
        pf_shard_flush_dirty(s);
        pf_shard_flush_link(s);
        pf_shard_bury(s);
    }
    return NULL;
}

int pf_shard_init(struct pf_shard *s, int id, const struct pf_config *cfg, struct pf_link *link)
{
    struct epoll_event ev;

    memset(s, 0, sizeof(*s));
    s->listener.fd = s->listener.spare_fd = -1;
    s->epfd = s->wake_fd = -1;
    s->id = id;
    s->cfg = cfg;
    s->link = link;
    s->now = pf_clock_s();
    pf_queue_init(&s->inbox);
    if (pf_dict_init(&s->chans))
        return -1;
    s->scratch = malloc(PF_SCRATCH);
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!s->scratch || s->epfd < 0 || s->wake_fd < 0)
        return -1;
    if (pf_listener_open(&s->listener, cfg->listen_host, cfg->listen_port))
        return -1;
    ev.events = EPOLLIN;
    ev.data.ptr = &s->listener;
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->listener.fd, &ev))
        return -1;
    ev.data.ptr = &s->wake_fd;
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->wake_fd, &ev))
        return -1;
    return 0;
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
    uint64_t one = 1;

    if (!s->started)
        return;
    __atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
    if (write(s->wake_fd, &one, sizeof(one)) < 0) {
        /* the thread still wakes within a second */
    }
    pthread_join(s->thread, NULL);
    s->started = 0;
}

void pf_shard_destroy(struct pf_shard *s)
{
    void *chunk, *next;

    while (s->conns)
        pf_conn_kill(s->conns);
    s->dirty = NULL;
    pf_shard_bury(s);
    pf_listener_close(&s->listener);
    if (s->epfd >= 0)
        close(s->epfd);
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    free(s->scratch);
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
