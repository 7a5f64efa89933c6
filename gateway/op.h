/* op.h - parses one client message ({"op":...}) into a request, or into an error to reply.
 *
 * Owns: the client protocol's input grammar (docs/PROTOCOL.md). Must not: touch connections,
 * channels or Redis - it only turns bytes into a struct, so it can be fuzzed alone.
 * Channel names are decoded from JSON (escapes included) and checked with pf_channel_check();
 * a name holding U+0000 or a lone surrogate is refused rather than truncated. */
#ifndef PF_OP_H
#define PF_OP_H

#include <stddef.h>

#include "buf.h"
#include "channel.h"

enum pf_op_type { PF_OP_SUBSCRIBE = 1, PF_OP_UNSUBSCRIBE, PF_OP_PING };

struct pf_op {
    enum pf_op_type type;
    size_t nchannels;
    struct pf_buf names; /* nchannels NUL-terminated names, one after the other */
    const char *err_code; /* set when parsing fails: bad_json, unknown_op, ... */
    char err_msg[256];
};

void pf_op_init(struct pf_op *op);
void pf_op_free(struct pf_op *op);
/* Returns 0 with op filled, or -1 with op->err_code/err_msg set. max_channels bounds the list. */
int pf_op_parse(struct pf_op *op, const unsigned char *msg, size_t len, size_t max_channels);
/* Walks the names: start with p = NULL; returns NULL after the last. */
const char *pf_op_next_name(const struct pf_op *op, const char *p);

#endif
