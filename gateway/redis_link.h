/* redis_link.h - the gateway's one Redis connection, and the merge windows.
 *
 * Runs on the main thread's libevent base. Owns: the Redis connection (redis_conn), the table of
 * channels the gateway wants from Redis (which shards want each, SUBSCRIBE state, open batch),
 * the merge timer and reconnect with backoff. It keeps at most one SUBSCRIBE/UNSUBSCRIBE in
 * flight per channel, so Redis ends with exactly one subscription per wanted channel.
 * Must not: touch connections or shard state; it talks to shards only through pf_msg. */
#ifndef PF_REDIS_LINK_H
#define PF_REDIS_LINK_H

#include <event2/event.h>
#include <stdint.h>

#include "config.h"
#include "dict.h"
#include "msg.h"

struct pf_shard;
struct pf_rconn;
struct pf_rchan;

struct pf_link_stats {
    uint64_t messages_in;
    uint64_t frames_out;
    uint64_t reconnects;
    uint64_t channels; /* channels subscribed in Redis right now */
    uint64_t down_ms;  /* total time the link was down after first coming up */
    uint64_t subscribe_failures; /* SUBSCRIBEs Redis refused */
    uint64_t dropped;            /* messages lost to allocation failures */
    int up;
};

struct pf_link {
    const struct pf_config *cfg;
    struct event_base *base;
    struct pf_rconn *rc;
    struct pf_rconn *retired; /* closed inside its own handler; freed at the next connect */
    char auth_tag, hello_tag, ping_tag; /* addresses that tag AUTH, CLIENT SETNAME, PING replies */
    uint64_t ping_sent_us;
    int ready; /* connected, authenticated, channels (re)subscribing */
    int was_up;
    int down_logged; /* the current outage has been logged */
    uint64_t down_since_us;
    uint64_t drops_unlogged, drop_logged_us;
    uint64_t refused_unlogged, refused_logged_us;
    int retry_ms;
    struct pf_dict chans; /* channel name (no prefix) -> struct pf_rchan */
    struct pf_rchan *dirty_head, *dirty_tail; /* open batches, oldest deadline first */
    struct event *flush_ev, *inbox_ev, *post_ev, *retry_ev, *check_ev;
    struct pf_queue inbox; /* from shards */
    struct pf_shard **shards;
    int nshards;
    struct pf_msg_list out[64]; /* to shards, handed over once per loop turn */
    struct pf_link_stats stats; /* written here, read by shards (relaxed atomics) */
};

int pf_link_init(struct pf_link *l, const struct pf_config *cfg, struct event_base *base,
                 struct pf_shard **shards, int nshards);
void pf_link_start(struct pf_link *l);
void pf_link_destroy(struct pf_link *l);
/* Shutdown: flushes every open batch, then tells each shard to drain. */
void pf_link_drain(struct pf_link *l);
/* Called from shard threads: hands a list of WANT/DROP messages to the link. */
void pf_link_post(struct pf_link *l, struct pf_msg_list *msgs);

#endif
