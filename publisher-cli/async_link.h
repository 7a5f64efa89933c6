/* async_link.h - the HTTP publisher's non-blocking link to Redis.
 *
 * Runs on the server's libevent base. Owns: the hiredis async context, its handshake (AUTH,
 * SELECT, PING), reconnecting with backoff, logging each link up/down event once, and a 2 s
 * deadline on every command. A command that misses its deadline drops the link, so the
 * commands behind it fail at once instead of each waiting out its own deadline. Must not:
 * know about HTTP. */
#ifndef PF_PUB_ASYNC_LINK_H
#define PF_PUB_ASYNC_LINK_H

#include <event2/event.h>
#include <stddef.h>

#include "redis_url.h"

#define PF_LINK_TIMEOUT_MS 2000

enum pf_link_status {
    PF_LINK_OK,      /* value = PUBLISH's reply */
    PF_LINK_DOWN,    /* the link broke before a reply: not confirmed */
    PF_LINK_TIMEOUT, /* no reply within PF_LINK_TIMEOUT_MS: may or may not have happened */
    PF_LINK_ERROR,   /* Redis answered with an error (errmsg) */
};

/* Called exactly once per accepted command, never from inside pf_alink_publish(). */
typedef void pf_link_reply_fn(void *arg, enum pf_link_status st, long long value,
                              const char *errmsg);

struct pf_alink;

struct pf_alink *pf_alink_new(struct event_base *base, const struct pf_redis_url *url,
                              const char *desc);
/* Starts connecting; failures are retried in the background. */
void pf_alink_start(struct pf_alink *l);
int pf_alink_up(const struct pf_alink *l);
/* Sends PUBLISH key msg. Returns 0 when queued (fn will be called), -1 when the link is not
 * up (fn will not be called). */
int pf_alink_publish(struct pf_alink *l, const char *key, size_t keylen, const void *msg,
                     size_t len, pf_link_reply_fn *fn, void *arg);
/* Closes the link; commands still waiting get PF_LINK_DOWN before this returns. */
void pf_alink_free(struct pf_alink *l);

#endif
