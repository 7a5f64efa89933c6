/* shard.h - one shard thread: an epoll loop of its own, the connections it accepted, and its
 * channel -> subscribers index.
 *
 * Every shard listens on the same port (SO_REUSEPORT), so the kernel spreads connections and no
 * connection ever moves. Owns: its epoll set, connections (HTTP and WebSocket), subscriptions,
 * output queues and the pool of queue nodes. Nothing here is locked on the broadcast path: only
 * this thread touches it. Must not: touch another shard's state or Redis; it talks to the link
 * through pf_msg. */
#ifndef PF_SHARD_H
#define PF_SHARD_H

#include <pthread.h>
#include <stdint.h>

#include "config.h"
#include "dict.h"
#include "listener.h"
#include "msg.h"

struct pf_link;
struct pf_qnode;
struct pf_conn;

/* Written by the owning shard only; read by any shard for /metrics (relaxed atomics). */
struct pf_shard_stats {
    uint64_t connections;
    uint64_t connections_total;
    uint64_t subscriptions;
    uint64_t channels;
    uint64_t frames_out;    /* frame copies handed to connections */
    uint64_t messages_out;  /* messages inside those frames */
    uint64_t bytes_out;
    uint64_t slow_closed;
    uint64_t silent_closed; /* peers that stopped answering pings */
    uint64_t client_errors; /* error replies sent */
};

struct pf_shard {
    int id;
    const struct pf_config *cfg;
    struct pf_link *link;
    struct pf_shard **all; /* every shard, for /metrics */
    int nshards;
    int epfd;
    int wake_fd; /* eventfd rung by the link */
    uint32_t now; /* monotonic seconds, updated each loop turn */
    unsigned char *scratch; /* reads land here; only partial input is copied per connection */
    struct pf_listener listener;
    struct pf_conn *conns;
    struct pf_conn *dirty;     /* connections with output to write this turn */
    struct pf_conn *graveyard; /* closed this turn, freed at its end */
    int draining;
    pthread_t thread;
    int started;
    int stop;
    uint32_t next_seq;
    struct pf_queue inbox;
    struct pf_msg_list to_link;
    struct pf_dict chans; /* name -> struct pf_schan */
    struct pf_qnode *free_nodes;
    void *node_chunks; /* list of node allocations, freed at exit */
    struct pf_shard_stats stats;
};

/* Opens the listener and the epoll set on the calling thread; 0 or -1. */
int pf_shard_init(struct pf_shard *s, int id, const struct pf_config *cfg, struct pf_link *link);
int pf_shard_start(struct pf_shard *s);
/* Asks the thread to finish and joins it; closes every connection. */
void pf_shard_stop(struct pf_shard *s);
void pf_shard_destroy(struct pf_shard *s);
/* Called from the link thread: hands messages over and wakes the shard. */
void pf_shard_post(struct pf_shard *s, struct pf_msg_list *msgs);

#endif
