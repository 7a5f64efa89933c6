/* batch_body.h - the body of POST /publish: [{"channel":"a","data":...},...].
 *
 * Owns: that shape, and turning each element into a channel name and the exact payload bytes:
 * a JSON string's decoded content, any other JSON value's compact text (numbers keep their
 * exact spelling). Must not: publish, or hand out part of a batch: either every element is
 * good or the parse fails. */
#ifndef PF_PUB_BATCH_BODY_H
#define PF_PUB_BATCH_BODY_H

#include <stddef.h>

#include "buf.h"

struct pf_batch_item {
    size_t ch_off, ch_len;
    size_t data_off, data_len;
};

struct pf_batch {
    struct pf_batch_item *items;
    size_t n, cap;
    struct pf_buf bytes; /* every channel and payload, back to back; items hold offsets */
};

enum pf_batch_err {
    PF_BATCH_OK = 0,
    PF_BATCH_BAD_JSON,    /* not JSON, or not the documented shape */
    PF_BATCH_BAD_CHANNEL, /* a channel name breaks the channel rule */
    PF_BATCH_NOMEM,
};

void pf_batch_init(struct pf_batch *b);
void pf_batch_free(struct pf_batch *b);
/* Appends one message whose channel the caller has already checked. Returns 0 or -1. */
int pf_batch_add(struct pf_batch *b, const char *ch, size_t chlen, const void *data, size_t len);
/* On failure, err gets a human reason naming the element ("batch[2]: ..."). */
enum pf_batch_err pf_batch_parse(struct pf_batch *b, const unsigned char *body, size_t len,
                                 char *err, size_t errlen);

static inline const char *pf_batch_channel(const struct pf_batch *b, size_t i)
{
    return (const char *)b->bytes.data + b->items[i].ch_off;
}

static inline const unsigned char *pf_batch_data(const struct pf_batch *b, size_t i)
{
    return b->bytes.data + b->items[i].data_off;
}

#endif
