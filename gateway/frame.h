/* frame.h - immutable, reference-counted WebSocket frames: encode once, write many.
 *
 * A frame holds the complete bytes that go on the wire (WebSocket header + payload), so every
 * connection writes the very same bytes and nobody touches them after pf_frame_make*() returns.
 * The reference count is the only mutable field; it is atomic because a frame is shared by all
 * shard threads. Owns: frame memory. Must not: know about connections or channels' subscribers. */
#ifndef PF_FRAME_H
#define PF_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Room kept in front of a payload so the header can be written in place (2, 4 or 10 bytes). */
#define PF_FRAME_HEADROOM 10

struct pf_frame {
    int refs;
    uint32_t off;        /* first byte of the frame inside mem */
    uint32_t len;        /* header + payload */
    uint32_t nmsg;       /* messages merged into it (0 for control replies) */
    unsigned char *mem;
};

/* Takes ownership of b, whose first PF_FRAME_HEADROOM bytes are reserved, and turns it into a
 * FIN text frame with refs = 1. b is left empty. Returns NULL on allocation failure. */
struct pf_frame *pf_frame_from_buf(struct pf_buf *b, uint32_t nmsg);

/* Copies a short text payload (acks, errors) into a new frame with refs = 1. */
struct pf_frame *pf_frame_text(const char *text, size_t len);
/* A control frame (close, ping, pong) with the given payload (at most 125 bytes). */
struct pf_frame *pf_frame_control(int opcode, const void *payload, size_t len);
/* Bytes sent as they are (an HTTP response), refs = 1. */
struct pf_frame *pf_frame_raw(const void *bytes, size_t len);

static inline const unsigned char *pf_frame_bytes(const struct pf_frame *f) { return f->mem + f->off; }

void pf_frame_ref(struct pf_frame *f, int n);
void pf_frame_release(struct pf_frame *f);

#endif
