/* redis_conn.h - one RESP connection to Redis on a libevent base, for the gateway's pub/sub link.
 *
 * Owns: the socket, RESP framing (hiredis' reader, no hiredis async), and the FIFO of commands
 * awaiting replies, so that every reply - errors included - reaches the command it answers.
 * (hiredis 0.14's async API cannot route an error reply in subscribed mode and drops the whole
 * link instead; a refused SUBSCRIBE must not cost every other channel its messages.)
 * Pushes ("message" arrays) go to their own callback. Must not: know about channels, prefixes
 * or shards. */
#ifndef PF_REDIS_CONN_H
#define PF_REDIS_CONN_H

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "redis_url.h"

struct pf_rconn;

struct pf_rconn_handlers {
    /* Connected (TCP/unix up); commands may be sent. */
    void (*up)(void *ctx);
    /* Lost or could not connect; why is printable. Call pf_rconn_free() from here or later. */
    void (*down)(void *ctx, const char *why);
    /* The reply (maybe an error) to the command sent with priv. */
    void (*reply)(void *ctx, void *priv, redisReply *r);
    /* A pub/sub push: ["message", channel, payload]. */
    void (*push)(void *ctx, redisReply *r);
};

/* Starts connecting; NULL only when out of memory or the address cannot be used at all (the
 * down handler is not called then). */
struct pf_rconn *pf_rconn_connect(struct event_base *base, const struct pf_redis_url *u,
                                  const struct pf_rconn_handlers *h, void *ctx);
/* Sends one command of argc binary-safe arguments; its reply goes to h->reply with priv. */
int pf_rconn_command(struct pf_rconn *rc, void *priv, int argc, const char *const *argv,
                     const size_t *lens);
/* Microseconds (CLOCK_MONOTONIC) when the oldest unanswered command was sent; 0 if none. */
uint64_t pf_rconn_oldest_sent_us(const struct pf_rconn *rc);
/* Stops all I/O and handlers; safe from inside a handler. The memory stays until
 * pf_rconn_free(), which the owner calls later, outside any handler of rc. */
void pf_rconn_close(struct pf_rconn *rc);
void pf_rconn_free(struct pf_rconn *rc);

#endif
