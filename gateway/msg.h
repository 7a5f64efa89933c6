/* msg.h - what the Redis link and the shards tell each other, and the queue that carries it.
 *
 * Cross-thread handoff is explicit: the sender appends messages to the receiver's pf_queue under
 * its mutex, then wakes the receiver (an eventfd for a shard, event_active for the link).
 * The mutex is taken once per handoff (a list of messages), never per connection.
 * Owns: message layout and the queue. Must not: interpret messages. */
#ifndef PF_MSG_H
#define PF_MSG_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "channel.h"
#include "frame.h"

enum pf_msg_type {
    PF_MSG_WANT = 1, /* shard -> link: channel got its first subscriber here (seq identifies it) */
    PF_MSG_DROP,     /* shard -> link: channel lost its last subscriber here */
    PF_MSG_CONFIRMED, /* link -> shard: Redis confirmed SUBSCRIBE for the WANT with this seq */
    PF_MSG_FAILED,    /* link -> shard: SUBSCRIBE failed for good for the WANT with this seq */
    PF_MSG_FRAME,     /* link -> shard: a finished batch frame for a channel */
    PF_MSG_RESET,     /* link -> shard: Redis link lost; confirmations no longer hold */
    PF_MSG_DRAIN,     /* main -> shard: shutting down; flush queues, close with 1001 */
};

struct pf_msg {
    struct pf_msg *next;
    enum pf_msg_type type;
    int shard;
    uint32_t seq;
    struct pf_frame *frame;
    uint8_t chan_len;
    char chan[PF_CHANNEL_MAX + 1];
};

struct pf_msg *pf_msg_new(enum pf_msg_type type, const char *chan, size_t chan_len);
void pf_msg_free(struct pf_msg *m);

struct pf_msg_list {
    struct pf_msg *head, *tail;
};

static inline void pf_msg_list_push(struct pf_msg_list *l, struct pf_msg *m)
{
    m->next = NULL;
    if (l->tail)
        l->tail->next = m;
    else
        l->head = m;
    l->tail = m;
}

struct pf_queue {
    pthread_mutex_t lock;
    struct pf_msg_list list;
};

void pf_queue_init(struct pf_queue *q);
void pf_queue_destroy(struct pf_queue *q);
/* Appends a whole list; returns 1 when the queue was empty before (the receiver needs a wake-up
 * only then, which saves a syscall per handoff under load). */
int pf_queue_put(struct pf_queue *q, struct pf_msg_list *l);
/* Takes everything queued, in order. */
struct pf_msg *pf_queue_take(struct pf_queue *q);

#endif
