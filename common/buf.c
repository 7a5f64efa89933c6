/* buf.c - see buf.h. */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

void pf_buf_init(struct pf_buf *b) { memset(b, 0, sizeof(*b)); }

void pf_buf_free(struct pf_buf *b)
{
    free(b->data);
    pf_buf_init(b);
}

void pf_buf_reset(struct pf_buf *b)
{
    b->len = 0;
    b->failed = 0;
}

int pf_buf_reserve(struct pf_buf *b, size_t extra)
{
    size_t want, cap;
    unsigned char *p;

    if (b->failed)
        return -1;
    if (extra > ((size_t)-1) / 2 - b->len)
        goto fail;
    want = b->len + extra + 1; /* +1 keeps room for a terminating NUL */
    if (want <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 64;
    while (cap < want)
        cap *= 2;
    p = realloc(b->data, cap);
    if (!p)
        goto fail;
    b->data = p;
    b->cap = cap;
    return 0;
fail:
    b->failed = 1;
    return -1;
}

int pf_buf_append(struct pf_buf *b, const void *p, size_t n)
{
    if (pf_buf_reserve(b, n))
        return -1;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

int pf_buf_append_str(struct pf_buf *b, const char *s) { return pf_buf_append(b, s, strlen(s)); }

int pf_buf_append_byte(struct pf_buf *b, unsigned char c) { return pf_buf_append(b, &c, 1); }

char *pf_buf_take(struct pf_buf *b, size_t *len)
{
    char *p;

    if (pf_buf_reserve(b, 0)) {
        pf_buf_free(b);
        return NULL;
    }
    b->data[b->len] = 0;
    p = (char *)b->data;
    if (len)
        *len = b->len;
    pf_buf_init(b);
    return p;
}
