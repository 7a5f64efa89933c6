/* redis_link.c - see redis_link.h.
 *
 * Channel state machine (one command in flight per channel, like a small TCP state machine):
 *   NONE --want--> SUBSCRIBING --reply--> SUBSCRIBED --no shard wants it--> UNSUBSCRIBING --reply-->
 *   NONE. pf_rchan_reconcile() moves a channel toward what the shards want whenever a reply or a
 *   WANT/DROP arrives, so bursts of churn collapse instead of piling up commands. Each command's
 *   reply, errors included, comes back to it through redis_conn's FIFO: a SUBSCRIBE that Redis
 *   refuses (ACL) fails that channel alone. */
#include "redis_link.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batch.h"
#include "log.h"
#include "redis_conn.h"
#include "shard.h"

/* Redis answers in order within milliseconds; a SUBSCRIBE without a reply this long means the
 * link is stuck, so it is dropped and made anew. */
#define PF_SUBSCRIBE_TIMEOUT_US 5000000u
#define PF_PING_EVERY_US 2000000u

enum pf_rstate { PF_RS_NONE, PF_RS_SUBSCRIBING, PF_RS_SUBSCRIBED, PF_RS_UNSUBSCRIBING };

struct pf_rchan {
    const char *name; /* the dict entry's key copy */
    size_t name_len;
    uint64_t want_mask;    /* shards with subscribers */
    uint64_t confirm_mask; /* shards waiting for CONFIRMED */
    enum pf_rstate state;
    int dirty;
    int failed;           /* Redis refused SUBSCRIBE: refused until no shard wants it */
    uint64_t deadline_us;
    struct pf_rchan *dirty_next;
    struct pf_batch batch;
    uint32_t seq[]; /* per shard: the seq of its latest WANT */
};

static uint64_t pf_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void pf_stat_add(uint64_t *p, int64_t d) { __atomic_add_fetch(p, (uint64_t)d, __ATOMIC_RELAXED); }

/* Out of memory, messages are dropped; the log says so once per second at most, with a count,
 * instead of once per message. */
static void pf_link_dropped(struct pf_link *l, const char *what, const char *chan, uint64_t n)
{
    uint64_t now = pf_now_us();

    pf_stat_add(&l->stats.dropped, (int64_t)n);
    l->drops_unlogged += n;
    if (now - l->drop_logged_us < 1000000u)
        return;
    pf_error("out of memory: dropped %llu message(s) since the last report (latest: %s for "
             "channel %s)", (unsigned long long)l->drops_unlogged, what, chan);
    l->drops_unlogged = 0;
    l->drop_logged_us = now;
}

/* ---- handing messages to shards ---------------------------------------------------------- */

static void pf_link_queue(struct pf_link *l, int shard, struct pf_msg *m)
{
    pf_msg_list_push(&l->out[shard], m);
    event_active(l->post_ev, EV_WRITE, 0);
}

/* Runs once per loop turn after the callbacks that produced messages: one lock and at most one
 * wake-up per shard, however many frames and confirmations this turn made. */
static void pf_link_post_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pf_link *l = arg;
    int i;

    for (i = 0; i < l->nshards; i++)
        if (l->out[i].head)
            pf_shard_post(l->shards[i], &l->out[i]);
}

static void pf_link_tell(struct pf_link *l, struct pf_rchan *c, int shard, enum pf_msg_type type)
{
    struct pf_msg *m = pf_msg_new(type, c->name, c->name_len);

    if (!m) {
        pf_error("out of memory telling shard %d about channel %s", shard, c->name);
        return;
    }
    m->seq = c->seq[shard];
    pf_link_queue(l, shard, m);
}

static void pf_link_confirm(struct pf_link *l, struct pf_rchan *c)
{
    int i;

    for (i = 0; i < l->nshards; i++)
        if (c->confirm_mask & (1ull << i))
            pf_link_tell(l, c, i, PF_MSG_CONFIRMED);
    c->confirm_mask = 0;
}

/* ---- merge windows ----------------------------------------------------------------------- */

static void pf_link_arm_flush(struct pf_link *l)
{
    struct timeval tv;
    uint64_t now = pf_now_us(), wait;

    if (!l->dirty_head)
        return;
    wait = l->dirty_head->deadline_us > now ? l->dirty_head->deadline_us - now : 0;
    tv.tv_sec = (time_t)(wait / 1000000u);
    tv.tv_usec = (suseconds_t)(wait % 1000000u);
    evtimer_add(l->flush_ev, &tv);
}

/* Closes c's batch into one frame and gives a reference to each shard that wants the channel. */
static void pf_link_flush_chan(struct pf_link *l, struct pf_rchan *c)
{
    struct pf_frame *f;
    uint32_t count = c->batch.count;
    int i, n = 0;

    if (!c->want_mask) {
        pf_batch_free(&c->batch); /* nobody left to read it */
        return;
    }
    f = pf_batch_finish(&c->batch);
    if (!f) {
        pf_link_dropped(l, "a batch", c->name, count);
        pf_batch_free(&c->batch);
        return;
    }
    for (i = 0; i < l->nshards; i++) {
        struct pf_msg *m;
        if (!(c->want_mask & (1ull << i)))
            continue;
        m = pf_msg_new(PF_MSG_FRAME, c->name, c->name_len);
        if (!m)
            continue;
        if (n++)
            pf_frame_ref(f, 1);
        m->frame = f;
        pf_link_queue(l, i, m);
    }
    if (!n)
        pf_frame_release(f);
    pf_stat_add(&l->stats.frames_out, 1);
}

static void pf_rchan_maybe_free(struct pf_link *l, struct pf_rchan *c);

static void pf_link_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pf_link *l = arg;
    uint64_t now = pf_now_us() + 500; /* a timer that fires a little early still counts */

    while (l->dirty_head && l->dirty_head->deadline_us <= now) {
        struct pf_rchan *c = l->dirty_head;
        l->dirty_head = c->dirty_next;
        if (!l->dirty_head)
            l->dirty_tail = NULL;
        c->dirty = 0;
        c->dirty_next = NULL;
        pf_link_flush_chan(l, c);
        pf_rchan_maybe_free(l, c);
    }
    pf_link_arm_flush(l);
}

static void pf_link_on_message(struct pf_link *l, const char *chan, size_t chan_len,
                               const char *data, size_t len)
{
    struct pf_rchan *c = pf_dict_get(&l->chans, chan, chan_len);

    pf_stat_add(&l->stats.messages_in, 1);
    if (!c || !c->want_mask || c->state != PF_RS_SUBSCRIBED)
        return;
    /* A message that would push the batch past the cap goes into a fresh batch. */
    if (c->batch.count && pf_batch_bytes(&c->batch) + len > l->cfg->merge_max_bytes)
        pf_link_flush_chan(l, c);
    if (pf_batch_add(&c->batch, c->name, c->name_len, (const unsigned char *)data, len)) {
        pf_link_dropped(l, "a message", c->name, 1);
        return;
    }
    if (l->cfg->merge_ms == 0 || pf_batch_bytes(&c->batch) >= l->cfg->merge_max_bytes) {
        pf_link_flush_chan(l, c);
        return;
    }
    if (c->dirty)
        return;
    c->dirty = 1;
    c->deadline_us = pf_now_us() + (uint64_t)l->cfg->merge_ms * 1000u;
    if (l->dirty_tail)
        l->dirty_tail->dirty_next = c;
    else
        l->dirty_head = c;
    l->dirty_tail = c;
    if (l->dirty_head == c)
        pf_link_arm_flush(l);
}

void pf_link_drain(struct pf_link *l)
{
    int i;

    /* The current window's batches go out now, ahead of the DRAIN in each shard's queue. */
    while (l->dirty_head) {
        struct pf_rchan *c = l->dirty_head;
        l->dirty_head = c->dirty_next;
        c->dirty = 0;
        c->dirty_next = NULL;
        pf_link_flush_chan(l, c);
    }
    l->dirty_tail = NULL;
    for (i = 0; i < l->nshards; i++) {
        struct pf_msg *m = pf_msg_new(PF_MSG_DRAIN, NULL, 0);
        if (m)
            pf_link_queue(l, i, m);
    }
}

/* ---- channel state ----------------------------------------------------------------------- */

static void pf_rchan_maybe_free(struct pf_link *l, struct pf_rchan *c)
{
    if (c->want_mask || c->state != PF_RS_NONE || c->dirty)
        return;
    pf_batch_free(&c->batch);
    pf_dict_del(&l->chans, c->name, c->name_len); /* frees the key c->name points at */
    free(c);
}

/* The reply comes back to pf_link_reply() with the channel as its tag; only one command per
 * channel is ever in flight, so the channel's state says which command it answers. */
static void pf_rchan_command(struct pf_link *l, struct pf_rchan *c, const char *cmd)
{
    char full[sizeof(l->cfg->prefix) + PF_CHANNEL_MAX];
    const char *argv[2] = {cmd, full};
    size_t lens[2] = {strlen(cmd), l->cfg->prefix_len + c->name_len};

    memcpy(full, l->cfg->prefix, l->cfg->prefix_len);
    memcpy(full + l->cfg->prefix_len, c->name, c->name_len);
    if (pf_rconn_command(l->rc, c, 2, argv, lens))
        pf_error("redis: cannot queue %s %s (out of memory)", cmd, c->name);
}

static void pf_rchan_reconcile(struct pf_link *l, struct pf_rchan *c)
{
    if (!l->ready) {
        if (!c->want_mask)
            pf_rchan_maybe_free(l, c);
        return;
    }
    if (!c->want_mask)
        c->failed = 0;
    if (c->state == PF_RS_NONE && c->want_mask && !c->failed) {
        c->state = PF_RS_SUBSCRIBING;
        pf_rchan_command(l, c, "SUBSCRIBE");
    } else if (c->state == PF_RS_SUBSCRIBED && !c->want_mask) {
        c->state = PF_RS_UNSUBSCRIBING;
        pf_rchan_command(l, c, "UNSUBSCRIBE");
    } else if (c->state == PF_RS_NONE) {
        pf_rchan_maybe_free(l, c);
    }
}

static struct pf_rchan *pf_rchan_get(struct pf_link *l, const char *name, size_t len)
{
    struct pf_rchan *c = pf_dict_get(&l->chans, name, len);
    struct pf_dict_entry *e;

    if (c)
        return c;
    c = calloc(1, sizeof(*c) + sizeof(uint32_t) * (size_t)l->nshards);
    if (!c)
        return NULL;
    pf_batch_init(&c->batch);
    e = pf_dict_add(&l->chans, name, len, c);
    if (!e) {
        free(c);
        return NULL;
    }
    c->name = e->key;
    c->name_len = len;
    return c;
}

static void pf_link_on_shard_msg(struct pf_link *l, struct pf_msg *m)
{
    struct pf_rchan *c = pf_rchan_get(l, m->chan, m->chan_len);
    uint64_t bit = 1ull << m->shard;

    if (!c) {
        pf_error("out of memory tracking channel %s", m->chan);
        return;
    }
    if (m->type == PF_MSG_WANT) {
        c->want_mask |= bit;
        c->seq[m->shard] = m->seq;
        if (c->failed)
            pf_link_tell(l, c, m->shard, PF_MSG_FAILED);
        else if (c->state == PF_RS_SUBSCRIBED && l->ready)
            pf_link_tell(l, c, m->shard, PF_MSG_CONFIRMED);
        else
            c->confirm_mask |= bit;
    } else {
        c->want_mask &= ~bit;
        c->confirm_mask &= ~bit;
    }
    pf_rchan_reconcile(l, c);
}

static void pf_link_inbox_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pf_link *l = arg;
    struct pf_msg *m = pf_queue_take(&l->inbox), *next;

    for (; m; m = next) {
        next = m->next;
        pf_link_on_shard_msg(l, m);
        pf_msg_free(m);
    }
}

void pf_link_post(struct pf_link *l, struct pf_msg_list *msgs)
{
    if (pf_queue_put(&l->inbox, msgs))
        event_active(l->inbox_ev, EV_READ, 0);
}

static void pf_link_drop(struct pf_link *l, const char *why);

/* A link whose oldest command has waited too long is stuck: drop it and connect again. */
/* An idle link is PINGed every PF_PING_EVERY_US (in RESP2 subscribed mode Redis answers
 * ["pong", ""]), so a frozen Redis is noticed within seconds, not when TCP gives up. */
static void pf_link_check_cb(evutil_socket_t fd, short what, void *arg)
{
    static const char *const ping[1] = {"PING"};
    static const size_t ping_len[1] = {4};
    struct pf_link *l = arg;
    uint64_t now = pf_now_us(), sent = l->rc ? pf_rconn_oldest_sent_us(l->rc) : 0;

    if (sent && now - sent >= PF_SUBSCRIBE_TIMEOUT_US) {
        char why[80];
        snprintf(why, sizeof(why), "no reply from Redis for %.1f s", (double)(now - sent) / 1e6);
        pf_link_drop(l, why);
        return;
    }
    if (l->ready && !sent && now - l->ping_sent_us >= PF_PING_EVERY_US &&
        pf_rconn_command(l->rc, &l->ping_tag, 1, ping, ping_len) == 0)
        l->ping_sent_us = now;
}

/* Redis refused a SUBSCRIBE (e.g. the ACL user may not use that channel): a final answer.
 * The channel's subscribers get an error; nothing else is touched. */
static void pf_link_refused(struct pf_link *l, struct pf_rchan *c, const char *why)
{
    int s;

    /* Clients choose the names, so one line per refusal would let them flood the log: the
     * first refusal is logged, then at most one summary line every 10 s. */
    l->refused_unlogged++;
    if (pf_now_us() - l->refused_logged_us >= 10000000u) {
        pf_warn("redis refused SUBSCRIBE %s%s: %s; its subscribers get an error (%llu refusal(s) "
                "since the last such line)",
                l->cfg->prefix, c->name, why, (unsigned long long)l->refused_unlogged);
        l->refused_unlogged = 0;
        l->refused_logged_us = pf_now_us();
    }
    c->state = PF_RS_NONE;
    c->failed = 1;
    for (s = 0; s < l->nshards; s++)
        if (c->want_mask & (1ull << s))
            pf_link_tell(l, c, s, PF_MSG_FAILED);
    c->confirm_mask = 0;
    pf_stat_add(&l->stats.subscribe_failures, 1);
}

/* ---- Redis replies ----------------------------------------------------------------------- */

static int pf_reply_is(const redisReply *e, const char *s)
{
    size_t n = strlen(s);

    return e->type == REDIS_REPLY_STRING && (size_t)e->len == n && !strncasecmp(e->str, s, n);
}

static void pf_link_push(void *ctx, redisReply *r)
{
    struct pf_link *l = ctx;
    const redisReply *name = r->element[1], *data = r->element[2];

    if (name->type != REDIS_REPLY_STRING || data->type != REDIS_REPLY_STRING ||
        (size_t)name->len < l->cfg->prefix_len)
        return;
    pf_link_on_message(l, name->str + l->cfg->prefix_len, (size_t)name->len - l->cfg->prefix_len,
                       data->str, (size_t)data->len);
}

static void pf_link_chan_reply(struct pf_link *l, struct pf_rchan *c, redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR) {
        if (c->state == PF_RS_SUBSCRIBING)
            pf_link_refused(l, c, r->str);
        else {
            pf_warn("redis: UNSUBSCRIBE %s%s failed: %s", l->cfg->prefix, c->name, r->str);
            c->state = PF_RS_NONE;
        }
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
               pf_reply_is(r->element[0], "subscribe")) {
        c->state = PF_RS_SUBSCRIBED;
        pf_stat_add(&l->stats.channels, 1);
        pf_link_confirm(l, c);
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
               pf_reply_is(r->element[0], "unsubscribe")) {
        c->state = PF_RS_NONE;
        pf_stat_add(&l->stats.channels, -1);
    } else {
        pf_link_drop(l, "unexpected reply to (UN)SUBSCRIBE");
        return;
    }
    pf_rchan_reconcile(l, c);
}

/* ---- connection life --------------------------------------------------------------------- */

static void pf_link_connect(struct pf_link *l);

static void pf_link_retry_cb(evutil_socket_t fd, short what, void *arg) { pf_link_connect(arg); }

static void pf_link_schedule_retry(struct pf_link *l)
{
    /* Exponential backoff with +-25% jitter so a fleet of gateways does not reconnect in step. */
    int ms = l->retry_ms + (int)((unsigned)rand() % (unsigned)(l->retry_ms / 2 + 1)) - l->retry_ms / 4;
    struct timeval tv = {ms / 1000, (suseconds_t)(ms % 1000) * 1000};

    evtimer_add(l->retry_ev, &tv);
    l->retry_ms = l->retry_ms * 2 > 5000 ? 5000 : l->retry_ms * 2;
}

/* Everything Redis knew is gone: reset channel states and tell shards that no subscription is
 * confirmed any more, so new subscribers wait for the resubscribe before their ack. */
static void pf_link_lost(struct pf_link *l)
{
    size_t i;
    int s;

    l->ready = 0;
    if (!l->down_since_us)
        l->down_since_us = pf_now_us();
    __atomic_store_n(&l->stats.up, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&l->stats.channels, 0, __ATOMIC_RELAXED);
    for (i = 0; i <= l->chans.mask; i++) {
        struct pf_dict_entry *e;
        for (e = l->chans.buckets[i]; e; e = e->next) {
            struct pf_rchan *c = e->val;
            c->state = PF_RS_NONE;
            if (!c->failed)
                c->confirm_mask = c->want_mask;
        }
    }
    for (s = 0; s < l->nshards; s++) {
        struct pf_msg *m = pf_msg_new(PF_MSG_RESET, NULL, 0);
        if (m)
            pf_link_queue(l, s, m);
    }
    pf_link_schedule_retry(l);
}

static void pf_link_resubscribe(struct pf_link *l)
{
    size_t i, n = 0;

    for (i = 0; i <= l->chans.mask; i++) {
        struct pf_dict_entry *e, *next;
        for (e = l->chans.buckets[i]; e; e = next) {
            next = e->next; /* reconcile may free the entry */
            n += ((struct pf_rchan *)e->val)->want_mask != 0;
            pf_rchan_reconcile(l, e->val);
        }
    }
    if (l->was_up)
        pf_info("redis: resubscribing %zu channels", n);
}

/* The link is usable (AUTH and CLIENT SETNAME answered): (re)subscribe what shards want. */
static void pf_link_ready(struct pf_link *l)
{
    l->ready = 1;
    l->down_logged = 0;
    l->retry_ms = 100;
    __atomic_store_n(&l->stats.up, 1, __ATOMIC_RELAXED);
    if (l->was_up) {
        uint64_t gap = pf_now_us() - l->down_since_us;
        pf_stat_add(&l->stats.down_ms, (int64_t)(gap / 1000u));
        pf_info("redis link up after %.3f s down: messages published in that gap were not "
                "delivered", (double)gap / 1e6);
    } else {
        pf_info("redis link up");
    }
    l->down_since_us = 0;
    pf_link_resubscribe(l);
    l->was_up = 1;
}

static void pf_link_reply(void *ctx, void *priv, redisReply *r)
{
    struct pf_link *l = ctx;

    if (priv == &l->ping_tag)
        return; /* any reply will do: the link answers */
    if (priv == &l->auth_tag || priv == &l->hello_tag) {
        if (r->type == REDIS_REPLY_ERROR) {
            pf_error("redis: %s%s; retrying", r->str,
                     priv == &l->auth_tag ? " (check the credentials in --redis)" : "");
            pf_link_drop(l, r->str);
        } else if (priv == &l->hello_tag) {
            pf_link_ready(l);
        }
        return;
    }
    pf_link_chan_reply(l, priv, r);
}

/* Drops the connection (ours to close, or Redis closed it) and schedules a new one. */
static void pf_link_drop(struct pf_link *l, const char *why)
{
    if (!l->rc)
        return;
    /* We may be inside one of its handlers: close now, free when the next connect starts. */
    pf_rconn_close(l->rc);
    l->retired = l->rc;
    l->rc = NULL;
    if (l->ready || l->was_up) {
        if (l->ready)
            pf_stat_add(&l->stats.reconnects, 1);
        if (l->ready || !l->down_logged)
            pf_warn("redis link down: %s; messages published until it is back are not delivered",
                    why);
    } else if (!l->down_logged) {
        pf_warn("redis: cannot connect (%s); retrying with backoff", why);
    }
    /* One line per outage, not one per failed retry. */
    l->down_logged = 1;
    pf_link_lost(l);
}

static void pf_link_rc_down(void *ctx, const char *why) { pf_link_drop(ctx, why); }

static void pf_link_rc_up(void *ctx)
{
    struct pf_link *l = ctx;
    const struct pf_redis_url *u = &l->cfg->redis;
    static const char *const setname[3] = {"CLIENT", "SETNAME", "push-gateway"};
    static const size_t setname_len[3] = {6, 7, 12};

    /* AUTH (when configured), then CLIENT SETNAME: its reply proves the link usable (and names
     * the connection in CLIENT LIST) before any SUBSCRIBE. */
    if (u->password[0]) {
        const char *argv[3] = {"AUTH", u->user, u->password};
        size_t lens[3] = {4, strlen(u->user), strlen(u->password)};
        if (u->user[0])
            pf_rconn_command(l->rc, &l->auth_tag, 3, argv, lens);
        else {
            argv[1] = u->password;
            lens[1] = lens[2];
            pf_rconn_command(l->rc, &l->auth_tag, 2, argv, lens);
        }
    }
    pf_rconn_command(l->rc, &l->hello_tag, 3, setname, setname_len);
}

static void pf_link_connect(struct pf_link *l)
{
    static const struct pf_rconn_handlers h = {pf_link_rc_up, pf_link_rc_down, pf_link_reply,
                                               pf_link_push};

    pf_rconn_free(l->retired);
    l->retired = NULL;
    l->rc = pf_rconn_connect(l->base, &l->cfg->redis, &h, l);
    if (!l->rc) {
        if (!l->down_logged)
            pf_warn("redis: cannot connect to %s (address not usable); retrying", l->cfg->redis_url);
        l->down_logged = 1;
        pf_link_schedule_retry(l);
    }
}

int pf_link_init(struct pf_link *l, const struct pf_config *cfg, struct event_base *base,
                 struct pf_shard **shards, int nshards)
{
    memset(l, 0, sizeof(*l));
    l->cfg = cfg;
    l->base = base;
    l->shards = shards;
    l->nshards = nshards;
    l->retry_ms = 100;
    pf_queue_init(&l->inbox);
    if (pf_dict_init(&l->chans))
        goto fail;
    l->flush_ev = evtimer_new(base, pf_link_flush_cb, l);
    l->inbox_ev = event_new(base, -1, 0, pf_link_inbox_cb, l);
    l->post_ev = event_new(base, -1, 0, pf_link_post_cb, l);
    l->retry_ev = evtimer_new(base, pf_link_retry_cb, l);
    l->check_ev = event_new(base, -1, EV_PERSIST, pf_link_check_cb, l);
    if (!l->flush_ev || !l->inbox_ev || !l->post_ev || !l->retry_ev || !l->check_ev)
        goto fail;
    {
        struct timeval second = {1, 0};
        event_add(l->check_ev, &second);
    }
    /* Lower numbers run first and the default is 1: posts go out after the turn's replies. */
    event_priority_set(l->post_ev, 2);
    return 0;
fail:
    pf_link_destroy(l);
    return -1;
}

void pf_link_start(struct pf_link *l) { pf_link_connect(l); }

void pf_link_destroy(struct pf_link *l)
{
    size_t i;

    pf_rconn_free(l->rc);
    pf_rconn_free(l->retired);
    l->rc = l->retired = NULL;
    if (l->chans.buckets)
        for (i = 0; i <= l->chans.mask; i++) {
            struct pf_dict_entry *e;
            for (e = l->chans.buckets[i]; e; e = e->next) {
                struct pf_rchan *c = e->val;
                pf_batch_free(&c->batch);
                free(c);
            }
        }
    pf_dict_free(&l->chans);
    if (l->flush_ev)
        event_free(l->flush_ev);
    if (l->inbox_ev)
        event_free(l->inbox_ev);
    if (l->post_ev)
        event_free(l->post_ev);
    if (l->retry_ev)
        event_free(l->retry_ev);
    if (l->check_ev)
        event_free(l->check_ev);
    for (i = 0; i < 64; i++) {
        struct pf_msg *m = l->out[i].head, *next;
        for (; m; m = next) {
            next = m->next;
            pf_msg_free(m);
        }
    }
    pf_queue_destroy(&l->inbox);
}
