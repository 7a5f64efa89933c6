/* buf.h - a growable byte buffer.
 *
 * Owns: one heap block and its length. Must not: be shared between threads while it grows.
 * Allocation failure is sticky: every later append fails and pf_buf_ok() reports it, so callers
 * check once at the end instead of after every append. */
#ifndef PF_BUF_H
#define PF_BUF_H

#include <stddef.h>

struct pf_buf {
    unsigned char *data;
    size_t len;
    size_t cap;
    int failed;
};

void pf_buf_init(struct pf_buf *b);
void pf_buf_free(struct pf_buf *b);
void pf_buf_reset(struct pf_buf *b);
int pf_buf_reserve(struct pf_buf *b, size_t extra);
int pf_buf_append(struct pf_buf *b, const void *p, size_t n);
int pf_buf_append_str(struct pf_buf *b, const char *s);
int pf_buf_append_byte(struct pf_buf *b, unsigned char c);
/* Hands the block to the caller (NUL-terminated) and leaves b empty. */
char *pf_buf_take(struct pf_buf *b, size_t *len);
static inline int pf_buf_ok(const struct pf_buf *b) { return !b->failed; }

#endif
