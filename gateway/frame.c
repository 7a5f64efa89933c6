/* frame.c - see frame.h. */
#include "frame.h"

#include <stdlib.h>
#include <string.h>

/* Writes the server-to-client header (FIN, text, unmasked) right before the payload at
 * mem + PF_FRAME_HEADROOM and returns where the frame starts. */
static uint32_t pf_frame_header_op(unsigned char *mem, size_t plen, int opcode);

static uint32_t pf_frame_header(unsigned char *mem, size_t plen)
{
    return pf_frame_header_op(mem, plen, 0x1);
}

static uint32_t pf_frame_header_op(unsigned char *mem, size_t plen, int opcode)
{
    unsigned char *p = mem + PF_FRAME_HEADROOM;

    if (plen < 126) {
        p -= 2;
        p[1] = (unsigned char)plen;
    } else if (plen < 65536) {
        p -= 4;
        p[1] = 126;
        p[2] = (unsigned char)(plen >> 8);
        p[3] = (unsigned char)plen;
    } else {
        int i;
        p -= 10;
        p[1] = 127;
        for (i = 0; i < 8; i++)
            p[2 + i] = (unsigned char)((uint64_t)plen >> (56 - 8 * i));
    }
    p[0] = (unsigned char)(0x80 | opcode);
    return (uint32_t)(p - mem);
}

struct pf_frame *pf_frame_from_buf(struct pf_buf *b, uint32_t nmsg)
{
    struct pf_frame *f;
    size_t plen;

    if (!pf_buf_ok(b) || b->len < PF_FRAME_HEADROOM || b->len - PF_FRAME_HEADROOM > UINT32_MAX - 16)
        goto fail;
    f = malloc(sizeof(*f));
    if (!f)
        goto fail;
    plen = b->len - PF_FRAME_HEADROOM;
    f->refs = 1;
    f->nmsg = nmsg;
    f->mem = (unsigned char *)pf_buf_take(b, NULL);
    f->off = pf_frame_header(f->mem, plen);
    f->len = (uint32_t)(PF_FRAME_HEADROOM - f->off + plen);
    return f;
fail:
    pf_buf_free(b);
    return NULL;
}

struct pf_frame *pf_frame_text(const char *text, size_t len)
{
    struct pf_buf b;
    static const unsigned char room[PF_FRAME_HEADROOM];

    pf_buf_init(&b);
    pf_buf_append(&b, room, sizeof(room));
    pf_buf_append(&b, text, len);
    return pf_frame_from_buf(&b, 0);
}

struct pf_frame *pf_frame_control(int opcode, const void *payload, size_t len)
{
    struct pf_frame *f = malloc(sizeof(*f));

    if (!f || len > 125 || !(f->mem = malloc(PF_FRAME_HEADROOM + len + 1))) {
        free(f);
        return NULL;
    }
    if (len)
        memcpy(f->mem + PF_FRAME_HEADROOM, payload, len);
    f->refs = 1;
    f->nmsg = 0;
    f->off = pf_frame_header_op(f->mem, len, opcode);
    f->len = (uint32_t)(PF_FRAME_HEADROOM - f->off + len);
    return f;
}

struct pf_frame *pf_frame_raw(const void *bytes, size_t len)
{
    struct pf_frame *f = malloc(sizeof(*f));

    if (!f || len > UINT32_MAX || !(f->mem = malloc(len + 1))) {
        free(f);
        return NULL;
    }
    if (len)
        memcpy(f->mem, bytes, len);
    f->refs = 1;
    f->nmsg = 0;
    f->off = 0;
    f->len = (uint32_t)len;
    return f;
}

void pf_frame_ref(struct pf_frame *f, int n) { __atomic_add_fetch(&f->refs, n, __ATOMIC_RELAXED); }

void pf_frame_release(struct pf_frame *f)
{
    /* acq_rel: the thread that frees must see every other thread's last use of the bytes. */
    if (f && __atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        free(f->mem);
        free(f);
    }
}
