/* op.c - see op.h. The message is validated as a whole first (so "bad_json" is one clear
 * category), then walked key by key; unknown keys are skipped. */
#include "op.h"

#include <stdio.h>
#include <string.h>

#include "json.h"

void pf_op_init(struct pf_op *op)
{
    memset(op, 0, sizeof(*op));
    pf_buf_init(&op->names);
}

void pf_op_free(struct pf_op *op) { pf_buf_free(&op->names); }

static int pf_op_fail(struct pf_op *op, const char *code, const char *msg)
{
    op->err_code = code;
    snprintf(op->err_msg, sizeof(op->err_msg), "%s", msg);
    return -1;
}

/* Puts a printable, JSON-safe excerpt of a rejected name into the error message. */
static int pf_op_bad_channel(struct pf_op *op, const char *name, size_t len, const char *why)
{
    char shown[48];
    size_t i, o = 0;

    for (i = 0; i < len && o + 4 < sizeof(shown); i++) {
        unsigned char c = (unsigned char)name[i];
        shown[o++] = (char)((c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? c : '?');
    }
    if (i < len)
        shown[o++] = '.', shown[o++] = '.', shown[o++] = '.';
    shown[o] = 0;
    op->err_code = "bad_channel";
    snprintf(op->err_msg, sizeof(op->err_msg), "%s: \"%s\"", why, shown);
    return -1;
}

static int pf_op_channels(struct pf_op *op, struct pf_json_cur *c, size_t max_channels)
{
    /* Room for one over-long name so the error can say it is too long rather than "bad JSON". */
    char name[PF_CHANNEL_MAX * 4 + 8];
    size_t nlen;
    enum pf_json_err e;
    const char *why;

    if (c->p >= c->end || *c->p != '[')
        return pf_op_fail(op, "bad_request", "\"channels\" must be an array of strings");
    pf_buf_reset(&op->names);
    op->nchannels = 0;
    c->p++;
    pf_json_skip_ws(c);
    if (c->p < c->end && *c->p == ']') {
        c->p++;
        return 0;
    }
    for (;;) {
        pf_json_skip_ws(c);
        if (c->p >= c->end || *c->p != '"')
            return pf_op_fail(op, "bad_request", "\"channels\" must be an array of strings");
        e = pf_json_parse_string(c, name, sizeof(name), &nlen);
        if (e == PF_JSON_TOO_LONG)
            return pf_op_bad_channel(op, name, 0, "channel name is longer than 128 bytes");
        if (e == PF_JSON_NUL || e == PF_JSON_LONE_SURROGATE)
            return pf_op_bad_channel(op, "", 0, pf_json_err_str(e));
        if (e != PF_JSON_OK)
            return pf_op_fail(op, "bad_json", pf_json_err_str(e));
        if ((why = pf_channel_check(name, nlen)) != NULL)
            return pf_op_bad_channel(op, name, nlen, why);
        if (++op->nchannels > max_channels) {
            char msg[96];
            snprintf(msg, sizeof(msg), "at most %zu channels per request and per connection",
                     max_channels);
            return pf_op_fail(op, "too_many_channels", msg);
        }
        pf_buf_append(&op->names, name, nlen + 1);
        pf_json_skip_ws(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        if (c->p < c->end && *c->p == ']') {
            c->p++;
            return pf_buf_ok(&op->names) ? 0 : pf_op_fail(op, "bad_request", "out of memory");
        }
        return pf_op_fail(op, "bad_json", "not valid JSON");
    }
}

static int pf_op_kind(struct pf_op *op, struct pf_json_cur *c)
{
    char name[32];
    size_t nlen;

    if (c->p >= c->end || *c->p != '"')
        return pf_op_fail(op, "bad_request", "\"op\" must be a string");
    if (pf_json_parse_string(c, name, sizeof(name), &nlen) != PF_JSON_OK)
        return pf_op_fail(op, "unknown_op", "unknown op; expected subscribe, unsubscribe or ping");
    if (nlen == 9 && !memcmp(name, "subscribe", 9))
        op->type = PF_OP_SUBSCRIBE;
    else if (nlen == 11 && !memcmp(name, "unsubscribe", 11))
        op->type = PF_OP_UNSUBSCRIBE;
    else if (nlen == 4 && !memcmp(name, "ping", 4))
        op->type = PF_OP_PING;
    else
        return pf_op_fail(op, "unknown_op", "unknown op; expected subscribe, unsubscribe or ping");
    return 0;
}

/* One "key": value member; sets *seen_channels when the channels key was found. */
static int pf_op_member(struct pf_op *op, struct pf_json_cur *c, size_t max_channels,
                        int *seen_channels)
{
    char key[16];
    size_t klen = 0;
    enum pf_json_err e = pf_json_parse_string(c, key, sizeof(key), &klen);

    if (e != PF_JSON_OK && e != PF_JSON_TOO_LONG && e != PF_JSON_NUL &&
        e != PF_JSON_LONE_SURROGATE)
        return pf_op_fail(op, "bad_json", pf_json_err_str(e));
    if (e != PF_JSON_OK) {
        /* A long or odd key is no key of ours: skip the rest of it as a plain value. */
        klen = 0;
        while (c->p < c->end && *c->p != '"')
            c->p += (*c->p == '\\') ? 2 : 1;
        c->p++;
    }
    pf_json_skip_ws(c);
    c->p++; /* ':' - the whole text was validated already */
    pf_json_skip_ws(c);
    if (klen == 2 && !memcmp(key, "op", 2))
        return pf_op_kind(op, c);
    if (klen == 8 && !memcmp(key, "channels", 8)) {
        *seen_channels = 1;
        return pf_op_channels(op, c, max_channels);
    }
    return pf_json_skip_value(c) == PF_JSON_OK ? 0 : pf_op_fail(op, "bad_json", "not valid JSON");
}

int pf_op_parse(struct pf_op *op, const unsigned char *msg, size_t len, size_t max_channels)
{
    struct pf_json_cur c = {msg, msg + len};
    int seen_channels = 0;

    op->type = 0;
    op->nchannels = 0;
    pf_buf_reset(&op->names);
    op->err_code = NULL;
    op->err_msg[0] = 0;
    if (!pf_json_valid(msg, len))
        return pf_op_fail(op, "bad_json", "message is not valid JSON");
    pf_json_skip_ws(&c);
    if (*c.p != '{')
        return pf_op_fail(op, "bad_request", "message must be a JSON object with an \"op\"");
    c.p++;
    pf_json_skip_ws(&c);
    while (c.p < c.end && *c.p != '}') {
        if (pf_op_member(op, &c, max_channels, &seen_channels))
            return -1;
        pf_json_skip_ws(&c);
        if (c.p < c.end && *c.p == ',')
            c.p++;
        pf_json_skip_ws(&c);
    }
    if (!op->type)
        return pf_op_fail(op, "bad_request", "missing \"op\"");
    if (op->type != PF_OP_PING && !seen_channels)
        return pf_op_fail(op, "bad_request", "missing \"channels\"");
    if (op->type != PF_OP_PING && op->nchannels == 0)
        return pf_op_fail(op, "bad_request", "\"channels\" must not be empty");
    return 0;
}

const char *pf_op_next_name(const struct pf_op *op, const char *p)
{
    const char *end;

    if (!op->names.data || op->names.len == 0)
        return NULL;
    end = (const char *)op->names.data + op->names.len;
    if (!p)
        return (const char *)op->names.data;
    p += strlen(p) + 1;
    return p < end ? p : NULL;
}
