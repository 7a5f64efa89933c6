/* batch_body.c - see batch_body.h. The body is first checked as JSON as a whole (so "not
 * JSON" and "wrong shape" get different messages); the walk after that can then rely on the
 * grammar and only checks the shape. */
#include "batch_body.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"
#include "json.h"

#define PF_SHAPE "an array of {\"channel\":\"name\",\"data\":...} objects"

struct pf_bparse {
    struct pf_json_cur c;
    struct pf_batch *b;
    size_t index;
    char *err;
    size_t errlen;
};

void pf_batch_init(struct pf_batch *b)
{
    memset(b, 0, sizeof(*b));
    pf_buf_init(&b->bytes);
}

void pf_batch_free(struct pf_batch *b)
{
    free(b->items);
    pf_buf_free(&b->bytes);
    pf_batch_init(b);
}

static enum pf_batch_err pf_bp_fail(struct pf_bparse *p, enum pf_batch_err e, const char *a,
                                    const char *b)
{
    snprintf(p->err, p->errlen, "batch[%zu]: %s%s", p->index, a, b);
    return e;
}

static int pf_bp_at(const struct pf_bparse *p, unsigned char ch)
{
    return p->c.p < p->c.end && *p->c.p == ch;
}

static void pf_bp_ws(struct pf_bparse *p) { pf_json_skip_ws(&p->c); }

static enum pf_batch_err pf_bp_channel(struct pf_bparse *p, struct pf_batch_item *it)
{
    char ch[PF_CHANNEL_MAX + 8];
    size_t n;
    enum pf_json_err e;
    const char *why;

    if (!pf_bp_at(p, '"'))
        return pf_bp_fail(p, PF_BATCH_BAD_JSON, "\"channel\" must be a string", "");
    e = pf_json_parse_string(&p->c, ch, sizeof(ch), &n);
    if (e == PF_JSON_TOO_LONG)
        return pf_bp_fail(p, PF_BATCH_BAD_CHANNEL, "channel name is longer than 128 bytes", "");
    if (e != PF_JSON_OK)
        return pf_bp_fail(p, PF_BATCH_BAD_CHANNEL, "channel: ", pf_json_err_str(e));
    if ((why = pf_channel_check(ch, n)) != NULL)
        return pf_bp_fail(p, PF_BATCH_BAD_CHANNEL, why, "");
    it->ch_off = p->b->bytes.len;
    it->ch_len = n;
    /* The NUL after each channel lets callers use it as a C string. */
    pf_buf_append(&p->b->bytes, ch, n + 1);
    return pf_buf_ok(&p->b->bytes) ? PF_BATCH_OK : PF_BATCH_NOMEM;
}

/* Copies a valid JSON value without the whitespace between tokens. */
static void pf_bp_compact(struct pf_buf *out, const unsigned char *p, const unsigned char *end)
{
    int in_str = 0;

    for (; p < end; p++) {
        unsigned char ch = *p;
        if (in_str && ch == '\\' && p + 1 < end) {
            pf_buf_append(out, p, 2);
            p++;
            continue;
        }
        if (in_str && ch == '"')
            in_str = 0;
        else if (!in_str && ch == '"')
            in_str = 1;
        else if (!in_str && (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'))
            continue;
        pf_buf_append_byte(out, ch);
    }
}

/* A string's decoded form is never longer than its JSON form, so raw + 8 bytes always fit. */
static enum pf_batch_err pf_bp_string_data(struct pf_bparse *p, size_t raw)
{
    struct pf_buf *out = &p->b->bytes;
    size_t n;
    enum pf_json_err e;

    if (pf_buf_reserve(out, raw + 8))
        return PF_BATCH_NOMEM;
    e = pf_json_parse_string(&p->c, (char *)out->data + out->len, raw + 8, &n);
    if (e != PF_JSON_OK)
        return pf_bp_fail(p, PF_BATCH_BAD_JSON, "data: ", pf_json_err_str(e));
    out->len += n;
    return PF_BATCH_OK;
}

static enum pf_batch_err pf_bp_data(struct pf_bparse *p, struct pf_batch_item *it)
{
    struct pf_json_cur probe = p->c;
    const unsigned char *start = p->c.p;
    enum pf_batch_err e = PF_BATCH_OK;

    if (pf_json_skip_value(&probe) != PF_JSON_OK)
        return pf_bp_fail(p, PF_BATCH_BAD_JSON, "\"data\" is not valid JSON", "");
    it->data_off = p->b->bytes.len;
    if (*start == '"') {
        e = pf_bp_string_data(p, (size_t)(probe.p - start));
    } else {
        pf_bp_compact(&p->b->bytes, start, probe.p);
        p->c.p = probe.p;
    }
    it->data_len = p->b->bytes.len - it->data_off;
    if (e == PF_BATCH_OK && !pf_buf_ok(&p->b->bytes))
        e = PF_BATCH_NOMEM;
    return e;
}

/* One "key": value pair; *seen has bit 1 for channel, bit 2 for data. */
static enum pf_batch_err pf_bp_member(struct pf_bparse *p, struct pf_batch_item *it, int *seen)
{
    char key[16];
    size_t klen;
    int bit;

    if (pf_json_parse_string(&p->c, key, sizeof(key), &klen) != PF_JSON_OK)
        return pf_bp_fail(p, PF_BATCH_BAD_JSON, "unknown key; expected \"channel\" and \"data\"",
                          "");
    if (strcmp(key, "channel") == 0)
        bit = 1;
    else if (strcmp(key, "data") == 0)
        bit = 2;
    else
        return pf_bp_fail(p, PF_BATCH_BAD_JSON, "unknown key; expected \"channel\" and \"data\"",
                          "");
    if (*seen & bit)
        return pf_bp_fail(p, PF_BATCH_BAD_JSON, "duplicate key ", bit == 1 ? "channel" : "data");
    *seen |= bit;
    pf_bp_ws(p);
    p->c.p++; /* ':' (the body is valid JSON) */
    pf_bp_ws(p);
    return bit == 1 ? pf_bp_channel(p, it) : pf_bp_data(p, it);
}

static enum pf_batch_err pf_bp_push(struct pf_batch *b, const struct pf_batch_item *it)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        struct pf_batch_item *items = realloc(b->items, cap * sizeof(*items));
        if (!items)
            return PF_BATCH_NOMEM;
        b->items = items;
        b->cap = cap;
    }
    b->items[b->n++] = *it;
    return PF_BATCH_OK;
}

int pf_batch_add(struct pf_batch *b, const char *ch, size_t chlen, const void *data, size_t len)
{
    struct pf_batch_item it;

    it.ch_off = b->bytes.len;
    it.ch_len = chlen;
    pf_buf_append(&b->bytes, ch, chlen);
    pf_buf_append_byte(&b->bytes, 0);
    it.data_off = b->bytes.len;
    it.data_len = len;
    pf_buf_append(&b->bytes, data, len);
    if (!pf_buf_ok(&b->bytes))
        return -1;
    return pf_bp_push(b, &it) == PF_BATCH_OK ? 0 : -1;
}

static enum pf_batch_err pf_bp_element(struct pf_bparse *p)
{
    struct pf_batch_item it = {0, 0, 0, 0};
    int seen = 0;
    enum pf_batch_err e;

    if (!pf_bp_at(p, '{'))
        return pf_bp_fail(p, PF_BATCH_BAD_JSON, "must be an object; the body must be ", PF_SHAPE);
    p->c.p++;
    pf_bp_ws(p);
    while (pf_bp_at(p, '"')) {
        if ((e = pf_bp_member(p, &it, &seen)) != PF_BATCH_OK)
            return e;
        pf_bp_ws(p);
        if (pf_bp_at(p, ','))
            p->c.p++;
        pf_bp_ws(p);
    }
    p->c.p++; /* '}' */
    if (!(seen & 1))
        return pf_bp_fail(p, PF_BATCH_BAD_JSON, "missing \"channel\"", "");
    if (!(seen & 2))
        return pf_bp_fail(p, PF_BATCH_BAD_JSON, "missing \"data\"", "");
    return pf_bp_push(p->b, &it);
}

enum pf_batch_err pf_batch_parse(struct pf_batch *b, const unsigned char *body, size_t len,
                                 char *err, size_t errlen)
{
    struct pf_bparse p = {{body, body + len}, b, 0, err, errlen};
    enum pf_batch_err e;

    if (!pf_json_valid(body, len)) {
        snprintf(err, errlen, "body is not valid JSON (or not UTF-8); it must be %s", PF_SHAPE);
        return PF_BATCH_BAD_JSON;
    }
    pf_bp_ws(&p);
    if (!pf_bp_at(&p, '[')) {
        snprintf(err, errlen, "body must be %s", PF_SHAPE);
        return PF_BATCH_BAD_JSON;
    }
    p.c.p++;
    pf_bp_ws(&p);
    while (!pf_bp_at(&p, ']')) {
        if ((e = pf_bp_element(&p)) != PF_BATCH_OK)
            return e;
        pf_bp_ws(&p);
        if (pf_bp_at(&p, ','))
            p.c.p++;
        pf_bp_ws(&p);
        p.index++;
    }
    return PF_BATCH_OK;
}
