/* batch.c - see batch.h. */
#include "batch.h"

#include <string.h>

#include "json.h"

void pf_batch_init(struct pf_batch *b)
{
    pf_buf_init(&b->buf);
    b->count = 0;
}

void pf_batch_free(struct pf_batch *b)
{
    pf_buf_free(&b->buf);
    b->count = 0;
}

static int pf_batch_open(struct pf_batch *b, const char *chan, size_t chan_len)
{
    static const unsigned char room[PF_FRAME_HEADROOM];

    pf_buf_reset(&b->buf);
    pf_buf_append(&b->buf, room, sizeof(room));
    pf_buf_append_str(&b->buf, "{\"channel\":\"");
    pf_buf_append(&b->buf, chan, chan_len);
    pf_buf_append_str(&b->buf, "\",\"messages\":[");
    return pf_buf_ok(&b->buf) ? 0 : -1;
}

int pf_batch_add(struct pf_batch *b, const char *chan, size_t chan_len, const unsigned char *msg,
                 size_t len)
{
    size_t mark;

    if (b->count == 0 && pf_batch_open(b, chan, chan_len))
        return -1;
    mark = b->buf.len;
    if (b->count)
        pf_buf_append_byte(&b->buf, ',');
    /* Depth 2: the message sits inside {"messages":[...]}, and the frame as a whole must stay
     * within the nesting bound every consumer of ours enforces. */
    if (pf_json_valid_at(msg, len, 2))
        pf_buf_append(&b->buf, msg, len);
    else
        pf_json_append_string(&b->buf, msg, len);
    if (!pf_buf_ok(&b->buf)) {
        /* Keep what was merged so far intact: undo the partial append. */
        b->buf.failed = 0;
        b->buf.len = mark;
        return -1;
    }
    b->count++;
    return 0;
}

struct pf_frame *pf_batch_finish(struct pf_batch *b)
{
    struct pf_frame *f;
    uint32_t n = b->count;

    if (n == 0)
        return NULL;
    b->count = 0;
    if (pf_buf_append_str(&b->buf, "]}"))
        return NULL;
    f = pf_frame_from_buf(&b->buf, n);
    pf_buf_init(&b->buf);
    return f;
}
