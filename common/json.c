/* json.c - see json.h. Recursive descent with an explicit depth bound; every function advances
 * the cursor only past what it accepted. */
#include "json.h"

#include <string.h>

/* Length of the UTF-8 sequence at p (1-4), or 0 when it is not valid UTF-8. */
static size_t pf_utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    size_t avail = (size_t)(end - p);

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return (avail >= 2 && (p[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned char lo = 0x80, hi = 0xBF;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        if (c == 0xED)
            hi = 0x9F; /* surrogates */
        return (avail >= 3 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80) ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned char lo = 0x80, hi = 0xBF;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
        return (avail >= 4 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 &&
                (p[3] & 0xC0) == 0x80)
                   ? 4
                   : 0;
    }
    return 0;
}

int pf_utf8_valid(const unsigned char *p, size_t len)
{
    const unsigned char *end = p + len;

    while (p < end) {
        size_t n;
        if (*p < 0x80) {
            p++;
            continue;
        }
        n = pf_utf8_seq(p, end);
        if (!n)
            return 0;
        p += n;
    }
    return 1;
}

void pf_json_skip_ws(struct pf_json_cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int pf_hex4(const unsigned char *p, const unsigned char *end, unsigned *out)
{
    unsigned v = 0;
    int i;

    if (end - p < 4)
        return -1;
    for (i = 0; i < 4; i++) {
        unsigned char h = p[i];
        v <<= 4;
        if (h >= '0' && h <= '9')
            v |= (unsigned)(h - '0');
        else if (h >= 'a' && h <= 'f')
            v |= (unsigned)(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F')
            v |= (unsigned)(h - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static size_t pf_utf8_put(unsigned cp, unsigned char *o)
{
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Reads the escape after a backslash (cursor at the char after '\'); *cp gets the code point. */
static enum pf_json_err pf_json_escape(struct pf_json_cur *c, unsigned *cp)
{
    unsigned hi, lo;

    if (c->p >= c->end)
        return PF_JSON_SYNTAX;
    switch (*c->p++) {
    case '"': *cp = '"'; return PF_JSON_OK;
    case '\\': *cp = '\\'; return PF_JSON_OK;
    case '/': *cp = '/'; return PF_JSON_OK;
    case 'b': *cp = '\b'; return PF_JSON_OK;
    case 'f': *cp = '\f'; return PF_JSON_OK;
    case 'n': *cp = '\n'; return PF_JSON_OK;
    case 'r': *cp = '\r'; return PF_JSON_OK;
    case 't': *cp = '\t'; return PF_JSON_OK;
    case 'u': break;
    default: return PF_JSON_SYNTAX;
    }
    if (pf_hex4(c->p, c->end, &hi))
        return PF_JSON_SYNTAX;
    c->p += 4;
    if (hi >= 0xDC00 && hi <= 0xDFFF)
        return PF_JSON_LONE_SURROGATE;
    if (hi >= 0xD800 && hi <= 0xDBFF) {
        if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u')
            return PF_JSON_LONE_SURROGATE;
        if (pf_hex4(c->p + 2, c->end, &lo))
            return PF_JSON_SYNTAX;
        if (lo < 0xDC00 || lo > 0xDFFF)
            return PF_JSON_LONE_SURROGATE;
        c->p += 6;
        hi = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
    }
    *cp = hi;
    return PF_JSON_OK;
}

/* Walks a string; out may be NULL (validate only). Surrogate and NUL checks apply only when
 * decoding, since a payload embedded as JSON may carry any escape the grammar allows. */
static enum pf_json_err pf_json_string(struct pf_json_cur *c, unsigned char *out, size_t cap,
                                       size_t *outlen)
{
    size_t o = 0;

    if (c->p >= c->end || *c->p != '"')
        return PF_JSON_SYNTAX;
    c->p++;
    while (c->p < c->end) {
        unsigned char ch = *c->p;
        if (ch == '"') {
            c->p++;
            if (out)
                out[o] = 0;
            if (outlen)
                *outlen = o;
            return PF_JSON_OK;
        }
        if (ch < 0x20)
            return PF_JSON_SYNTAX;
        if (ch == '\\') {
            unsigned cp;
            enum pf_json_err e;
            c->p++;
            e = pf_json_escape(c, &cp);
            if (e == PF_JSON_LONE_SURROGATE && !out)
                e = PF_JSON_OK, cp = 0xFFFD; /* grammar allows it; only decoding refuses */
            if (e != PF_JSON_OK)
                return e;
            if (out) {
                unsigned char enc[4];
                size_t n = pf_utf8_put(cp, enc);
                if (cp == 0)
                    return PF_JSON_NUL;
                if (o + n >= cap)
                    return PF_JSON_TOO_LONG;
                memcpy(out + o, enc, n);
                o += n;
            }
            continue;
        }
        {
            size_t n = pf_utf8_seq(c->p, c->end);
            if (!n)
                return PF_JSON_BAD_UTF8;
            if (out) {
                if (o + n >= cap)
                    return PF_JSON_TOO_LONG;
                memcpy(out + o, c->p, n);
                o += n;
            }
            c->p += n;
        }
    }
    return PF_JSON_SYNTAX;
}

enum pf_json_err pf_json_parse_string(struct pf_json_cur *c, char *out, size_t cap, size_t *outlen)
{
    if (cap == 0)
        return PF_JSON_TOO_LONG;
    return pf_json_string(c, (unsigned char *)out, cap, outlen);
}

static int pf_is_digit(const struct pf_json_cur *c)
{
    return c->p < c->end && *c->p >= '0' && *c->p <= '9';
}

static enum pf_json_err pf_json_number(struct pf_json_cur *c)
{
    if (c->p < c->end && *c->p == '-')
        c->p++;
    if (!pf_is_digit(c))
        return PF_JSON_SYNTAX;
    if (*c->p == '0')
        c->p++;
    else
        while (pf_is_digit(c))
            c->p++;
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (!pf_is_digit(c))
            return PF_JSON_SYNTAX;
        while (pf_is_digit(c))
            c->p++;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
            c->p++;
        if (!pf_is_digit(c))
            return PF_JSON_SYNTAX;
        while (pf_is_digit(c))
            c->p++;
    }
    return PF_JSON_OK;
}

static enum pf_json_err pf_json_literal(struct pf_json_cur *c, const char *word)
{
    size_t n = strlen(word);

    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
        return PF_JSON_SYNTAX;
    c->p += n;
    return PF_JSON_OK;
}

static enum pf_json_err pf_json_value(struct pf_json_cur *c, int depth);

/* Object or array body after the opening bracket; close is '}' or ']'. */
static enum pf_json_err pf_json_container(struct pf_json_cur *c, int depth, unsigned char close)
{
    enum pf_json_err e;

    if (depth >= PF_JSON_MAX_DEPTH)
        return PF_JSON_TOO_DEEP;
    c->p++;
    pf_json_skip_ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        return PF_JSON_OK;
    }
    for (;;) {
        if (close == '}') {
            if ((e = pf_json_string(c, NULL, 0, NULL)) != PF_JSON_OK)
                return e;
            pf_json_skip_ws(c);
            if (c->p >= c->end || *c->p != ':')
                return PF_JSON_SYNTAX;
            c->p++;
        }
        if ((e = pf_json_value(c, depth + 1)) != PF_JSON_OK)
            return e;
        pf_json_skip_ws(c);
        if (c->p >= c->end)
            return PF_JSON_SYNTAX;
        if (*c->p == close) {
            c->p++;
            return PF_JSON_OK;
        }
        if (*c->p != ',')
            return PF_JSON_SYNTAX;
        c->p++;
        pf_json_skip_ws(c);
    }
}

static enum pf_json_err pf_json_value(struct pf_json_cur *c, int depth)
{
    pf_json_skip_ws(c);
    if (c->p >= c->end)
        return PF_JSON_SYNTAX;
    switch (*c->p) {
    case '{': return pf_json_container(c, depth, '}');
    case '[': return pf_json_container(c, depth, ']');
    case '"': return pf_json_string(c, NULL, 0, NULL);
    case 't': return pf_json_literal(c, "true");
    case 'f': return pf_json_literal(c, "false");
    case 'n': return pf_json_literal(c, "null");
    default: return pf_json_number(c);
    }
}

enum pf_json_err pf_json_skip_value(struct pf_json_cur *c) { return pf_json_value(c, 0); }

int pf_json_valid(const unsigned char *p, size_t len) { return pf_json_valid_at(p, len, 0); }

int pf_json_valid_at(const unsigned char *p, size_t len, int depth)
{
    struct pf_json_cur c = {p, p + len};

    if (depth < 0 || depth > PF_JSON_MAX_DEPTH || pf_json_value(&c, depth) != PF_JSON_OK)
        return 0;
    pf_json_skip_ws(&c);
    return c.p == c.end;
}

int pf_json_append_string(struct pf_buf *b, const unsigned char *p, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *end = p + len, *run = p;

    /* Worst case is 6 output bytes per input byte; reserving once keeps the loop branch-light. */
    if (len > ((size_t)-1) / 8 || pf_buf_reserve(b, len * 6 + 2))
        return -1;
    b->data[b->len++] = '"';
    while (p < end) {
        unsigned char ch = *p;
        size_t n;
        if (ch >= 0x20 && ch != '"' && ch != '\\' && ch < 0x80) {
            p++;
            continue;
        }
        memcpy(b->data + b->len, run, (size_t)(p - run));
        b->len += (size_t)(p - run);
        if (ch >= 0x80) {
            n = pf_utf8_seq(p, end);
            if (n) {
                memcpy(b->data + b->len, p, n);
                b->len += n;
                p += n;
            } else {
                memcpy(b->data + b->len, "\xEF\xBF\xBD", 3); /* U+FFFD */
                b->len += 3;
                p++;
            }
        } else {
            unsigned char *o = b->data + b->len;
            o[0] = '\\';
            switch (ch) {
            case '"': o[1] = '"'; b->len += 2; break;
            case '\\': o[1] = '\\'; b->len += 2; break;
            case '\n': o[1] = 'n'; b->len += 2; break;
            case '\r': o[1] = 'r'; b->len += 2; break;
            case '\t': o[1] = 't'; b->len += 2; break;
            case '\b': o[1] = 'b'; b->len += 2; break;
            case '\f': o[1] = 'f'; b->len += 2; break;
            default:
                memcpy(o + 1, "u00", 3);
                o[4] = (unsigned char)hex[ch >> 4];
                o[5] = (unsigned char)hex[ch & 15];
                b->len += 6;
            }
            p++;
        }
        run = p;
    }
    memcpy(b->data + b->len, run, (size_t)(p - run));
    b->len += (size_t)(p - run);
    b->data[b->len++] = '"';
    b->data[b->len] = 0;
    return 0;
}

const char *pf_json_err_str(enum pf_json_err e)
{
    switch (e) {
    case PF_JSON_OK: return "ok";
    case PF_JSON_SYNTAX: return "not valid JSON";
    case PF_JSON_TOO_DEEP: return "JSON nested too deeply";
    case PF_JSON_BAD_UTF8: return "text is not valid UTF-8";
    case PF_JSON_NUL: return "string contains U+0000";
    case PF_JSON_LONE_SURROGATE: return "string contains a lone UTF-16 surrogate";
    case PF_JSON_TOO_LONG: return "string is too long";
    }
    return "unknown JSON error";
}
