/* async_link.c - see async_link.h.
 *
 * Teardown has two doors. hiredis closes a context itself after a failed connect or a
 * disconnect (pf_alink_lost: it must not be freed here), while a timeout or an error reply makes
 * us close it (pf_alink_drop: redisAsyncFree, which hiredis defers when called from inside one
 * of its callbacks). Both clear l->ac first; every hiredis callback compares its context with
 * l->ac, so callbacks from a context being torn down are ignored. */
#include "async_link.h"

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define PF_BACKOFF_MIN_MS 100
#define PF_BACKOFF_MAX_MS 2000

enum pf_alink_state { PF_AL_IDLE, PF_AL_CONNECTING, PF_AL_UP, PF_AL_RETRY };

struct pf_alink {
    struct event_base *base;
    struct pf_redis_url url;
    char desc[400];
    redisAsyncContext *ac;
    enum pf_alink_state state;
    struct event *retry_ev; /* waits out the backoff before the next connect */
    struct event *hs_ev;    /* deadline for connect + handshake */
    int backoff_ms;
    int ever_up;
    char last_err[160]; /* last reason logged: the same reason again is not logged again */
    unsigned rng;
};

/* One PUBLISH in flight. Freed only by its hiredis callback, which always comes (with a NULL
 * reply when the context is torn down). */
struct pf_acmd {
    struct pf_alink *link;
    struct event *timer;
    pf_link_reply_fn *fn;
    void *arg;
    int answered;
};

static struct timeval pf_ms_tv(int ms)
{
    struct timeval tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
    return tv;
}

/* +-25% so that many publishers restarted together do not reconnect in lockstep. */
static int pf_alink_jitter(struct pf_alink *l, int ms)
{
    l->rng ^= l->rng << 13;
    l->rng ^= l->rng >> 17;
    l->rng ^= l->rng << 5;
    return ms * 3 / 4 + (int)(l->rng % (unsigned)(ms / 2 + 1));
}

/* One line when the link goes down (or first fails at start), one when it comes back. While it
 * stays down, only a new refusal by Redis itself (wrong password, bad db) is worth a line:
 * it needs an operator, where "connection refused" again does not. */
static void pf_alink_log_down(struct pf_alink *l, const char *reason, int refused)
{
    if (l->state == PF_AL_UP)
        pf_warn("Redis link down (%s): %s; reconnecting in the background", l->desc, reason);
    else if (!l->last_err[0] || (refused && strcmp(l->last_err, reason) != 0))
        pf_warn("Redis unreachable (%s): %s; retrying in the background", l->desc, reason);
    else
        return;
    snprintf(l->last_err, sizeof(l->last_err), "%s", reason);
}

static void pf_alink_failed(struct pf_alink *l, const char *reason, int refused)
{
    struct timeval tv = pf_ms_tv(pf_alink_jitter(l, l->backoff_ms));

    evtimer_del(l->hs_ev);
    pf_alink_log_down(l, reason, refused);
    l->state = PF_AL_RETRY;
    l->backoff_ms = l->backoff_ms * 2 > PF_BACKOFF_MAX_MS ? PF_BACKOFF_MAX_MS : l->backoff_ms * 2;
    evtimer_add(l->retry_ev, &tv);
}

/* We close the context (timeout, error reply). */
static void pf_alink_drop(struct pf_alink *l, const char *reason, int refused)
{
    redisAsyncContext *ac = l->ac;

    l->ac = NULL;
    pf_alink_failed(l, reason, refused);
    if (ac)
        redisAsyncFree(ac);
}

/* hiredis closes the context itself once this callback returns. */
static void pf_alink_lost(struct pf_alink *l, const redisAsyncContext *ac, const char *reason)
{
    if (l->ac != ac)
        return;
    l->ac = NULL;
    pf_alink_failed(l, reason, 0);
}

static void pf_alink_set_up(struct pf_alink *l)
{
    evtimer_del(l->hs_ev);
    l->state = PF_AL_UP;
    l->backoff_ms = PF_BACKOFF_MIN_MS;
    l->last_err[0] = 0;
    if (l->ever_up)
        pf_info("Redis link up again (%s)", l->desc);
    else
        pf_info("Redis link up (%s)", l->desc);
    l->ever_up = 1;
}

static void pf_alink_on_connect(const redisAsyncContext *ac, int status)
{
    if (status != REDIS_OK)
        pf_alink_lost(ac->data, ac, ac->c.errstr[0] ? ac->c.errstr : "connect failed");
}

static void pf_alink_on_disconnect(const redisAsyncContext *ac, int status)
{
    const char *why = status == REDIS_OK || !ac->c.errstr[0] ? "disconnected" : ac->c.errstr;

    pf_alink_lost(ac->data, ac, why);
}

/* privdata names the handshake command; PING's answer means the link is usable. */
static void pf_alink_on_handshake(redisAsyncContext *ac, void *reply, void *what)
{
    struct pf_alink *l = ac->data;
    const redisReply *r = reply;
    char reason[200];

    if (!r || l->ac != ac)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(reason, sizeof(reason), "%s refused: %s", (const char *)what, r->str);
        pf_alink_drop(l, reason, 1);
    } else if (strcmp(what, "PING") == 0) {
        pf_alink_set_up(l);
    }
}

static int pf_alink_send_handshake(struct pf_alink *l)
{
    const struct pf_redis_url *u = &l->url;
    char db[16];
    const char *auth_user[] = {"AUTH", u->user, u->password};
    const char *auth[] = {"AUTH", u->password};
    const char *select[] = {"SELECT", db};
    const char *ping[] = {"PING"};
    int rc = REDIS_OK;

    /* Queued before the connect completes; hiredis writes them once the socket is ready. */
    if (u->user[0])
        rc = redisAsyncCommandArgv(l->ac, pf_alink_on_handshake, "AUTH", 3, auth_user, NULL);
    else if (u->password[0])
        rc = redisAsyncCommandArgv(l->ac, pf_alink_on_handshake, "AUTH", 2, auth, NULL);
    if (rc == REDIS_OK && u->db) {
        snprintf(db, sizeof(db), "%d", u->db);
        rc = redisAsyncCommandArgv(l->ac, pf_alink_on_handshake, "SELECT", 2, select, NULL);
    }
    if (rc == REDIS_OK)
        rc = redisAsyncCommandArgv(l->ac, pf_alink_on_handshake, "PING", 1, ping, NULL);
    return rc;
}

static redisAsyncContext *pf_alink_open(const struct pf_redis_url *u, char *err, size_t errlen)
{
    redisAsyncContext *ac = u->path[0] ? redisAsyncConnectUnix(u->path)
                                       : redisAsyncConnect(u->host, u->port);

    if (ac && !ac->err)
        return ac;
    snprintf(err, errlen, "%s", ac ? ac->c.errstr : "out of memory");
    if (ac)
        redisAsyncFree(ac);
    return NULL;
}

static void pf_alink_connect(struct pf_alink *l)
{
    struct timeval tv = pf_ms_tv(PF_LINK_TIMEOUT_MS);
    char err[160];
    redisAsyncContext *ac = pf_alink_open(&l->url, err, sizeof(err));

    if (!ac) {
        pf_alink_failed(l, err, 0);
        return;
    }
    ac->data = l;
    if (redisLibeventAttach(ac, l->base) != REDIS_OK) {
        redisAsyncFree(ac);
        pf_alink_failed(l, "cannot attach to the event loop", 0);
        return;
    }
    redisAsyncSetConnectCallback(ac, pf_alink_on_connect);
    redisAsyncSetDisconnectCallback(ac, pf_alink_on_disconnect);
    l->ac = ac;
    l->state = PF_AL_CONNECTING;
    evtimer_add(l->hs_ev, &tv);
    if (pf_alink_send_handshake(l) != REDIS_OK)
        pf_alink_drop(l, "cannot queue the handshake", 0);
}

static void pf_alink_on_retry(evutil_socket_t fd, short what, void *arg) { pf_alink_connect(arg); }

static void pf_alink_on_hs_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct pf_alink *l = arg;

    if (l->ac)
        pf_alink_drop(l, "no answer to connect or handshake within 2 s", 0);
}

struct pf_alink *pf_alink_new(struct event_base *base, const struct pf_redis_url *url,
                              const char *desc)
{
    struct pf_alink *l = calloc(1, sizeof(*l));

    if (!l)
        return NULL;
    l->base = base;
    l->url = *url;
    snprintf(l->desc, sizeof(l->desc), "%s", desc);
    l->backoff_ms = PF_BACKOFF_MIN_MS;
    l->rng = (unsigned)time(NULL) ^ ((unsigned)getpid() << 16) ^ 0x9e3779b9u;
    l->retry_ev = evtimer_new(base, pf_alink_on_retry, l);
    l->hs_ev = evtimer_new(base, pf_alink_on_hs_timeout, l);
    if (!l->retry_ev || !l->hs_ev)
        goto fail;
    return l;
fail:
    pf_alink_free(l);
    return NULL;
}

void pf_alink_start(struct pf_alink *l) { pf_alink_connect(l); }

int pf_alink_up(const struct pf_alink *l) { return l->state == PF_AL_UP; }

static void pf_acmd_answer(struct pf_acmd *c, enum pf_link_status st, long long v, const char *e)
{
    c->answered = 1;
    c->fn(c->arg, st, v, e);
}

static void pf_acmd_on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct pf_acmd *c = privdata;
    const redisReply *r = reply;

    if (!c->answered) {
        if (!r)
            pf_acmd_answer(c, PF_LINK_DOWN, 0, NULL);
        else if (r->type == REDIS_REPLY_INTEGER)
            pf_acmd_answer(c, PF_LINK_OK, r->integer, NULL);
        else
            pf_acmd_answer(c, PF_LINK_ERROR, 0,
                           r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply type");
    }
    event_free(c->timer);
    free(c);
}

static void pf_acmd_on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct pf_acmd *c = arg;
    struct pf_alink *l = c->link;

    pf_acmd_answer(c, PF_LINK_TIMEOUT, 0, NULL);
    /* A silent Redis would make every later command wait too: fail them now and reconnect.
     * This frees c (its reply callback runs with NULL). */
    if (l->ac)
        pf_alink_drop(l, "no answer to PUBLISH within 2 s", 0);
}

int pf_alink_publish(struct pf_alink *l, const char *key, size_t keylen, const void *msg,
                     size_t len, pf_link_reply_fn *fn, void *arg)
{
    struct timeval tv = pf_ms_tv(PF_LINK_TIMEOUT_MS);
    const char *argv[] = {"PUBLISH", key, msg ? (const char *)msg : ""};
    size_t lens[] = {7, keylen, len};
    struct pf_acmd *c;

    if (l->state != PF_AL_UP || !l->ac)
        return -1;
    c = calloc(1, sizeof(*c));
    if (!c)
        return -1;
    c->timer = evtimer_new(l->base, pf_acmd_on_timeout, c);
    if (!c->timer)
        goto fail;
    c->link = l;
    c->fn = fn;
    c->arg = arg;
    if (redisAsyncCommandArgv(l->ac, pf_acmd_on_reply, c, 3, argv, lens) != REDIS_OK)
        goto fail;
    evtimer_add(c->timer, &tv);
    return 0;
fail:
    if (c->timer)
        event_free(c->timer);
    free(c);
    return -1;
}

void pf_alink_free(struct pf_alink *l)
{
    redisAsyncContext *ac;

    if (!l)
        return;
    ac = l->ac;
    l->ac = NULL;
    l->state = PF_AL_IDLE;
    if (ac)
        redisAsyncFree(ac);
    if (l->retry_ev)
        event_free(l->retry_ev);
    if (l->hs_ev)
        event_free(l->hs_ev);
    free(l);
}
