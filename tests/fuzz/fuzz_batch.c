/* fuzz_batch.c - libFuzzer harness for gateway/batch.c and gateway/frame.c.
 *
 * Input: one byte choosing the channel, then messages separated by 0x1E (ASCII record
 * separator). All messages go into one batch. Checks on the finished frame: FIN text frame
 * (0x81), unmasked, length in the shortest encoding and equal to what follows; payload is valid
 * JSON (pf_json_valid) and valid UTF-8; it is {"channel":"<chan>","messages":[...]} with exactly
 * one top-level item per message, in order, each item the message byte for byte when it is valid
 * JSON (that stays valid inside the frame) and otherwise a JSON string decoding to the message
 * (invalid UTF-8 as U+FFFD); nmsg and refs are right; the batch is empty and reusable afterwards. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "frame.h"
#include "fuzz_util.h"
#include "json.h"

#define RS 0x1E

static const char *const channels[] = {
    "news",
    "a",
    "user:42/feed@eu-1.prod_x",
    ("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
     "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"), /* 128: the longest */
};

struct msg {
    const unsigned char *p;
    size_t len;
};

/* Checks the header and returns the payload, setting *plen. */
static const unsigned char *check_header(const struct pf_frame *f, size_t *plen)
{
    const unsigned char *p = pf_frame_bytes(f);
    size_t hl, n = 0;
    int i;

    PF_FUZZ_ASSERT(f->len >= 2);
    PF_FUZZ_ASSERT(p[0] == 0x81);       /* FIN, text, no RSV bits */
    PF_FUZZ_ASSERT((p[1] & 0x80) == 0); /* a server never masks */
    if ((p[1] & 0x7F) < 126) {
        hl = 2;
        n = p[1] & 0x7F;
    } else if ((p[1] & 0x7F) == 126) {
        hl = 4;
        PF_FUZZ_ASSERT(f->len >= hl);
        n = (size_t)p[2] << 8 | p[3];
        PF_FUZZ_ASSERT(n >= 126); /* shortest form (RFC 6455 5.2) */
    } else {
        hl = 10;
        PF_FUZZ_ASSERT(f->len >= hl);
        PF_FUZZ_ASSERT((p[2] & 0x80) == 0);
        for (i = 0; i < 8; i++)
            n = n << 8 | p[2 + i];
        PF_FUZZ_ASSERT(n >= 65536);
    }
    PF_FUZZ_ASSERT(f->len == hl + n);
    PF_FUZZ_ASSERT(f->off + f->len == PF_FRAME_HEADROOM + n); /* header sits right before */
    *plen = n;
    return p + hl;
}

/* Checks the item at *c against message m and moves past it. */
static void check_item(struct pf_json_cur *c, const struct msg *m)
{
    const unsigned char *start = c->p;
    size_t cap = 3 * m->len + 4, got_len = 0, want_len; /* 4: see fuzz_json.c */
    unsigned char *got, *want;
    struct pf_json_cur s;
    enum pf_json_err e;
    int raw_fits = (size_t)(c->end - c->p) >= m->len && !memcmp(c->p, m->p, m->len);

    if (pf_json_valid(m->p, m->len)) {
        /* Valid JSON goes in byte for byte - at least when it is still valid two levels down,
         * inside {"messages":[ ]}. A value only valid at the top (63-64 levels deep) may go
         * either way; check_frame() then decides whether the frame as a whole is valid. */
        unsigned char *wrapped = malloc(m->len + 4);
        int deep_ok;
        PF_FUZZ_ASSERT(wrapped);
        memcpy(wrapped, "[[", 2);
        memcpy(wrapped + 2, m->p, m->len);
        memcpy(wrapped + 2 + m->len, "]]", 2);
        deep_ok = pf_json_valid(wrapped, m->len + 4);
        free(wrapped);
        PF_FUZZ_ASSERT(raw_fits || !deep_ok);
        if (raw_fits) { /* a string item starts with '"', a too-deep value never does */
            c->p += m->len;
            return;
        }
    }
    PF_FUZZ_ASSERT(c->p < c->end && *c->p == '"');
    got = malloc(cap);
    want = malloc(cap);
    PF_FUZZ_ASSERT(got && want);
    s = *c;
    PF_FUZZ_ASSERT(pf_json_skip_value(c) == PF_JSON_OK);
    e = pf_json_parse_string(&s, (char *)got, cap, &got_len);
    if (memchr(m->p, 0, m->len)) {
        PF_FUZZ_ASSERT(e == PF_JSON_NUL);
    } else {
        PF_FUZZ_ASSERT(e == PF_JSON_OK && s.p == c->p);
        want_len = ref_utf8_repair(m->p, m->len, want);
        PF_FUZZ_ASSERT(got_len == want_len && !memcmp(got, want, want_len));
    }
    PF_FUZZ_ASSERT(c->p > start);
    free(got);
    free(want);
}

static void check_frame(const struct pf_frame *f, const char *chan, const struct msg *msgs,
                        size_t n)
{
    static const char mid[] = "\",\"messages\":[";
    size_t plen, clen = strlen(chan), i, items = 0;
    const unsigned char *pl = check_header(f, &plen);
    struct pf_json_cur c = {pl, pl + plen};

    PF_FUZZ_ASSERT(f->refs == 1 && f->nmsg == n);
    PF_FUZZ_ASSERT(pf_json_valid(pl, plen) == 1);
    PF_FUZZ_ASSERT(pf_utf8_valid(pl, plen) == 1);

    /* Prefix, then the items in order, then the end. */
    PF_FUZZ_ASSERT(plen >= 12 + clen + sizeof(mid) - 1 + 2);
    PF_FUZZ_ASSERT(!memcmp(pl, "{\"channel\":\"", 12));
    PF_FUZZ_ASSERT(!memcmp(pl + 12, chan, clen));
    PF_FUZZ_ASSERT(!memcmp(pl + 12 + clen, mid, sizeof(mid) - 1));
    c.p = pl + 12 + clen + sizeof(mid) - 1;
    for (i = 0; i < n; i++) {
        if (i) {
            PF_FUZZ_ASSERT(c.p < c.end && *c.p == ',');
            c.p++;
        }
        check_item(&c, &msgs[i]);
    }
    PF_FUZZ_ASSERT(c.end - c.p == 2 && c.p[0] == ']' && c.p[1] == '}');

    /* Counted the way a client would: top-level values of the array. */
    c.p = pl + 12 + clen + sizeof(mid) - 1;
    for (;;) {
        PF_FUZZ_ASSERT(pf_json_skip_value(&c) == PF_JSON_OK);
        items++;
        pf_json_skip_ws(&c);
        PF_FUZZ_ASSERT(c.p < c.end);
        if (*c.p++ == ']')
            break;
        PF_FUZZ_ASSERT(c.p[-1] == ',');
    }
    PF_FUZZ_ASSERT(items == n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *chan;
    struct msg *msgs;
    size_t n = 0, i, last;
    const uint8_t *p, *end = data + size;
    struct pf_batch b;
    struct pf_frame *f;

    if (size == 0)
        return 0;
    chan = channels[data[0] % (sizeof(channels) / sizeof(channels[0]))];
    msgs = malloc(sizeof(*msgs) * size); /* at most size pieces */
    PF_FUZZ_ASSERT(msgs);
    for (p = data + 1;;) {
        const uint8_t *sep = memchr(p, RS, (size_t)(end - p));
        msgs[n].p = p;
        msgs[n].len = (size_t)((sep ? sep : end) - p);
        n++;
        if (!sep)
            break;
        p = sep + 1;
    }

    pf_batch_init(&b);
    PF_FUZZ_ASSERT(pf_batch_finish(&b) == NULL);
    for (i = 0; i < n; i++) {
        last = pf_batch_bytes(&b);
        PF_FUZZ_ASSERT(pf_batch_add(&b, chan, strlen(chan), msgs[i].p, msgs[i].len) == 0);
        PF_FUZZ_ASSERT(b.count == i + 1 && pf_batch_bytes(&b) > last);
    }
    f = pf_batch_finish(&b);
    PF_FUZZ_ASSERT(f != NULL);
    PF_FUZZ_ASSERT(b.count == 0 && pf_batch_finish(&b) == NULL);
    check_frame(f, chan, msgs, n);
    pf_frame_release(f);

    /* The emptied batch starts over cleanly: the last message alone. */
    PF_FUZZ_ASSERT(pf_batch_add(&b, chan, strlen(chan), msgs[n - 1].p, msgs[n - 1].len) == 0);
    f = pf_batch_finish(&b);
    PF_FUZZ_ASSERT(f != NULL);
    check_frame(f, chan, &msgs[n - 1], 1);
    pf_frame_release(f);

    pf_batch_free(&b);
    free(msgs);
    return 0;
}
