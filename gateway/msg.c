/* msg.c - see msg.h. */
#include "msg.h"

#include <stdlib.h>
#include <string.h>

struct pf_msg *pf_msg_new(enum pf_msg_type type, const char *chan, size_t chan_len)
{
    struct pf_msg *m = calloc(1, sizeof(*m));

    if (!m)
        return NULL;
    m->type = type;
    if (chan_len > PF_CHANNEL_MAX)
        chan_len = PF_CHANNEL_MAX;
    if (chan_len)
        memcpy(m->chan, chan, chan_len);
    m->chan_len = (uint8_t)chan_len;
    return m;
}

void pf_msg_free(struct pf_msg *m)
{
    if (!m)
        return;
    if (m->frame)
        pf_frame_release(m->frame);
    free(m);
}

void pf_queue_init(struct pf_queue *q)
{
    pthread_mutex_init(&q->lock, NULL);
    q->list.head = q->list.tail = NULL;
}

void pf_queue_destroy(struct pf_queue *q)
{
    struct pf_msg *m = pf_queue_take(q), *next;

    for (; m; m = next) {
        next = m->next;
        pf_msg_free(m);
    }
    pthread_mutex_destroy(&q->lock);
}

int pf_queue_put(struct pf_queue *q, struct pf_msg_list *l)
{
    int was_empty;

    if (!l->head)
        return 0;
    pthread_mutex_lock(&q->lock);
    was_empty = q->list.head == NULL;
    if (q->list.tail)
        q->list.tail->next = l->head;
    else
        q->list.head = l->head;
    q->list.tail = l->tail;
    pthread_mutex_unlock(&q->lock);
    l->head = l->tail = NULL;
    return was_empty;
}

struct pf_msg *pf_queue_take(struct pf_queue *q)
{
    struct pf_msg *m;

    pthread_mutex_lock(&q->lock);
    m = q->list.head;
    q->list.head = q->list.tail = NULL;
    pthread_mutex_unlock(&q->lock);
    return m;
}
