/* batch.h - the merge buffer of one channel for one window, and its encoding.
 *
 * Messages are appended straight into the final JSON text
 *   {"channel":"<name>","messages":[m1,m2,...]}
 * behind room for the WebSocket header, so finishing a batch only closes the array and writes
 * the header: the frame is encoded once, whatever the number of subscribers. A payload that is
 * one valid JSON value in valid UTF-8 is embedded as is; anything else becomes a JSON string.
 * Owns: the bytes of an open batch. Must not: know about timers, Redis or shards. */
#ifndef PF_BATCH_H
#define PF_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "frame.h"

struct pf_batch {
    struct pf_buf buf;
    uint32_t count;
};

void pf_batch_init(struct pf_batch *b);
void pf_batch_free(struct pf_batch *b);
/* Appends one message; the first one opens the batch for channel [chan, chan+chan_len), a name
 * that already passed pf_channel_check() and so needs no escaping. Returns 0 or -1 (no memory). */
int pf_batch_add(struct pf_batch *b, const char *chan, size_t chan_len, const unsigned char *msg,
                 size_t len);
/* Bytes the finished frame's payload would have so far (for --merge-max-bytes). */
static inline size_t pf_batch_bytes(const struct pf_batch *b) { return b->buf.len; }
/* Closes the batch into a frame (refs = 1) and leaves b empty and reusable; NULL if empty or out
 * of memory. */
struct pf_frame *pf_batch_finish(struct pf_batch *b);

#endif
