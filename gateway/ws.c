/* ws.c - see ws.h. */
#include "ws.h"

#include "percent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- SHA-1 (FIPS 180-4), only for Sec-WebSocket-Accept ----------------------------------- */

static uint32_t pf_rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void pf_sha1_block(uint32_t h[5], const unsigned char *p)
{
    uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], t;
    int i;

    for (i = 0; i < 16; i++, p += 4)
        w[i] = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    for (i = 16; i < 80; i++)
        w[i] = pf_rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    for (i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20)
            f = (b & c) | (~b & d), k = 0x5A827999;
        else if (i < 40)
            f = b ^ c ^ d, k = 0x6ED9EBA1;
        else if (i < 60)
            f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
        else
            f = b ^ c ^ d, k = 0xCA62C1D6;
        t = pf_rol(a, 5) + f + e + k + w[i];
        e = d, d = c, c = pf_rol(b, 30), b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

static void pf_sha1(const unsigned char *msg, size_t len, unsigned char out[20])
{
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    unsigned char block[64];
    size_t i, rem;
    uint64_t bits = (uint64_t)len * 8;

    for (i = 0; i + 64 <= len; i += 64)
        pf_sha1_block(h, msg + i);
    rem = len - i;
    memset(block, 0, sizeof(block));
    memcpy(block, msg + i, rem);
    block[rem] = 0x80;
    if (rem >= 56) {
        pf_sha1_block(h, block);
        memset(block, 0, sizeof(block));
    }
    for (i = 0; i < 8; i++)
        block[63 - i] = (unsigned char)(bits >> (8 * i));
    pf_sha1_block(h, block);
    for (i = 0; i < 20; i++)
        out[i] = (unsigned char)(h[i / 4] >> (24 - 8 * (i % 4)));
}

static const char pf_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void pf_ws_accept_key(const char *key, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char buf[64 + sizeof(guid)], dig[20];
    size_t klen = strlen(key), i, o = 0;

    if (klen > 64)
        klen = 64;
    memcpy(buf, key, klen);
    memcpy(buf + klen, guid, sizeof(guid) - 1);
    pf_sha1(buf, klen + sizeof(guid) - 1, dig);
    for (i = 0; i < 18; i += 3) {
        uint32_t v = (uint32_t)dig[i] << 16 | (uint32_t)dig[i + 1] << 8 | dig[i + 2];
        out[o++] = pf_b64[v >> 18], out[o++] = pf_b64[(v >> 12) & 63];
        out[o++] = pf_b64[(v >> 6) & 63], out[o++] = pf_b64[v & 63];
    }
    {
        uint32_t v = (uint32_t)dig[18] << 16 | (uint32_t)dig[19] << 8;
        out[o++] = pf_b64[v >> 18], out[o++] = pf_b64[(v >> 12) & 63];
        out[o++] = pf_b64[(v >> 6) & 63], out[o++] = '=';
    }
    out[o] = 0;
}

/* A valid key is base64 (with padding) of exactly 16 bytes: 22 symbols then "==". */
static int pf_ws_key_valid(const char *key)
{
    size_t i;

    if (strlen(key) != 24 || key[22] != '=' || key[23] != '=')
        return 0;
    for (i = 0; i < 22; i++)
        if (!strchr(pf_b64, key[i]) || !key[i])
            return 0;
    /* The last symbol carries 2 bits of data; its low 4 bits must be zero. */
    return ((strchr(pf_b64, key[21]) - pf_b64) & 15) == 0;
}

/* ---- HTTP request ------------------------------------------------------------------------ */

static int pf_token_in_list(const char *list, const char *token)
{
    size_t tl = strlen(token);
    const char *p = list;

    while (*p) {
        const char *e;
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        e = p;
        while (*e && *e != ',')
            e++;
        {
            const char *t = e;
            while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
                t--;
            if ((size_t)(t - p) == tl && !strncasecmp(p, token, tl))
                return 1;
        }
        p = e;
    }
    return 0;
}

static void pf_copy_value(char *dst, size_t cap, const char *v, size_t n, int *overflow)
{
    if (n >= cap) {
        *overflow = 1;
        n = cap - 1;
    }
    memcpy(dst, v, n);
    dst[n] = 0;
}

/* One "Name: value" line (without CRLF). */
static int pf_http_header(struct pf_http_req *r, const char *line, size_t n)
{
    const char *colon = memchr(line, ':', n), *v;
    size_t nl, vl;
    char val[1024];
    int of = 0;

    if (!colon || colon == line)
        return -1;
    nl = (size_t)(colon - line);
    if (memchr(line, ' ', nl) || memchr(line, '\t', nl))
        return -1; /* no whitespace before the colon (RFC 7230 §3.2.4) */
    v = colon + 1;
    vl = n - nl - 1;
    while (vl && (*v == ' ' || *v == '\t'))
        v++, vl--;
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--;
    pf_copy_value(val, sizeof(val), v, vl, &of);
#define PF_IS(name) (nl == sizeof(name) - 1 && !strncasecmp(line, name, nl))
    if (PF_IS("host")) {
        if (r->has_host)
            return -1; /* two Host headers: refuse, as RFC 7230 §5.4 asks */
        r->has_host = 1;
        pf_copy_value(r->host, sizeof(r->host), v, vl, &of);
    } else if (PF_IS("upgrade")) {
        r->upgrade_websocket |= pf_token_in_list(val, "websocket");
        r->upgrade_websocket |= 2; /* an Upgrade header was present */
    } else if (PF_IS("connection")) {
        r->connection_upgrade |= pf_token_in_list(val, "upgrade");
        r->connection_close |= pf_token_in_list(val, "close");
    } else if (PF_IS("sec-websocket-key")) {
        if (r->has_key)
            return -1;
        r->has_key = 1;
        pf_copy_value(r->key, sizeof(r->key), v, vl, &of);
    } else if (PF_IS("sec-websocket-version")) {
        char *end;
        if (r->has_version)
            return -1;
        r->has_version = 1;
        r->version = (int)strtol(val, &end, 10);
        if (end == val || *end || vl > 3)
            r->version = -1;
    } else if (PF_IS("origin")) {
        pf_copy_value(r->origin, sizeof(r->origin), v, vl, &of);
    }
#undef PF_IS
    return of ? -1 : 0;
}

static int pf_http_request_line(struct pf_http_req *r, const char *line, size_t n)
{
    const char *sp1 = memchr(line, ' ', n), *sp2, *target, *q;
    size_t tl;
    int of = 0;

    if (!sp1 || sp1 == line || (size_t)(sp1 - line) >= sizeof(r->method))
        return -1;
    memcpy(r->method, line, (size_t)(sp1 - line));
    r->method[sp1 - line] = 0;
    target = sp1 + 1;
    sp2 = memchr(target, ' ', n - (size_t)(target - line));
    if (!sp2 || sp2 == target)
        return -1;
    if ((size_t)(line + n - sp2 - 1) != 8 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
        (sp2[8] != '0' && sp2[8] != '1'))
        return -1;
    r->http_minor = sp2[8] - '0';
    tl = (size_t)(sp2 - target);
    q = memchr(target, '?', tl);
    pf_copy_value(r->path, sizeof(r->path), target, q ? (size_t)(q - target) : tl, &of);
    if (q)
        pf_copy_value(r->query, sizeof(r->query), q + 1, (size_t)(sp2 - q - 1), &of);
    return of ? -1 : 0;
}

enum pf_http_parse pf_http_parse(const char *buf, size_t len, struct pf_http_req *req)
{
    const char *end = NULL, *p, *eol;
    size_t i;

    for (i = 3; i < len && i < PF_WS_MAX_REQUEST; i++)
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r') {
            end = buf + i + 1;
            break;
        }
    if (!end)
        return len >= PF_WS_MAX_REQUEST ? PF_HTTP_TOO_BIG : PF_HTTP_INCOMPLETE;
    memset(req, 0, sizeof(*req));
    req->head_len = (size_t)(end - buf);
    eol = memchr(buf, '\r', (size_t)(end - buf));
    if (!eol || eol[1] != '\n' || pf_http_request_line(req, buf, (size_t)(eol - buf)))
        return PF_HTTP_BAD;
    for (p = eol + 2; p < end - 2; p = eol + 2) {
        eol = memchr(p, '\r', (size_t)(end - p));
        if (!eol || eol[1] != '\n')
            return PF_HTTP_BAD;
        if (memchr(p, '\n', (size_t)(eol - p)) || memchr(p, 0, (size_t)(eol - p)))
            return PF_HTTP_BAD; /* bare LF or NUL inside a header line */
        if (*p == ' ' || *p == '\t')
            return PF_HTTP_BAD; /* obsolete line folding */
        if (pf_http_header(req, p, (size_t)(eol - p)))
            return PF_HTTP_BAD;
    }
    return PF_HTTP_OK;
}

int pf_ws_check_upgrade(const struct pf_http_req *r, const char **why)
{
    if (!r->upgrade_websocket && !r->has_key && !r->connection_upgrade)
        return 1; /* plain HTTP */
    if (strcmp(r->method, "GET") != 0)
        return *why = "a WebSocket handshake must be a GET", 400;
    if (r->http_minor < 1)
        return *why = "a WebSocket handshake needs HTTP/1.1", 400;
    if (!r->has_host)
        return *why = "missing Host header", 400;
    if (!(r->upgrade_websocket & 1))
        return *why = "Upgrade header must name websocket", 400;
    if (!r->connection_upgrade)
        return *why = "Connection header must include Upgrade", 400;
    if (!r->has_version || r->version != 13)
        return *why = "only Sec-WebSocket-Version 13 is supported", 426;
    if (!r->has_key || !pf_ws_key_valid(r->key))
        return *why = "Sec-WebSocket-Key must be base64 of 16 bytes", 400;
    return 0;
}

int pf_http_query_param(const char *query, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    const char *p = query;

    while (p && *p) {
        const char *amp = strchr(p, '&');
        size_t seg = amp ? (size_t)(amp - p) : strlen(p);
        if (seg > nl && p[nl] == '=' && !strncmp(p, name, nl)) {
            int n = pf_percent_decode(p + nl + 1, seg - nl - 1, out, outlen);
            return n < 0 ? -2 : n;
        }
        p = amp ? amp + 1 : NULL;
    }
    return -1;
}

/* ---- frames ------------------------------------------------------------------------------ */

enum pf_ws_parse pf_ws_parse_header(const unsigned char *b, size_t len, int in_message,
                                    uint64_t max_payload, struct pf_ws_frame *f,
                                    int *close_code, const char **why)
{
    size_t need = 2;
    uint64_t plen;
    int op, control;

    if (len < 2)
        return PF_WS_NEED_MORE;
    *close_code = PF_WS_PROTOCOL_ERROR;
    f->fin = b[0] >> 7;
    op = f->opcode = b[0] & 0x0F;
    if (b[0] & 0x70)
        return *why = "RSV bits set without a negotiated extension", PF_WS_ERROR;
    if (!(b[1] & 0x80))
        return *why = "client frames must be masked", PF_WS_ERROR;
    control = op >= 0x8;
    if ((op > 0x2 && op < 0x8) || op > 0xA)
        return *why = "unknown opcode", PF_WS_ERROR;
    if (control && !f->fin)
        return *why = "control frames must not be fragmented", PF_WS_ERROR;
    if (op == PF_WS_CONT && !in_message)
        return *why = "continuation frame without a message to continue", PF_WS_ERROR;
    if ((op == PF_WS_TEXT || op == PF_WS_BINARY) && in_message)
        return *why = "new data frame while a fragmented message is unfinished", PF_WS_ERROR;
    plen = b[1] & 0x7F;
    if (plen == 126)
        need = 4;
    else if (plen == 127)
        need = 10;
    if (control && plen > 125)
        return *why = "control frame payload over 125 bytes", PF_WS_ERROR;
    if (len < need + 4)
        return PF_WS_NEED_MORE;
    if (plen == 126) {
        plen = (uint64_t)b[2] << 8 | b[3];
        if (plen < 126)
            return *why = "length not in its shortest form", PF_WS_ERROR;
    } else if (plen == 127) {
        int i;
        plen = 0;
        for (i = 0; i < 8; i++)
            plen = plen << 8 | b[2 + i];
        if (plen >> 63)
            return *why = "length has its top bit set", PF_WS_ERROR;
        if (plen < 65536)
            return *why = "length not in its shortest form", PF_WS_ERROR;
    }
    if (!control && plen > max_payload) {
        *close_code = PF_WS_TOO_BIG;
        return *why = "message too big", PF_WS_ERROR;
    }
    memcpy(f->mask, b + need, 4);
    f->len = plen;
    f->header_len = need + 4;
    return PF_WS_FRAME;
}

void pf_ws_unmask(unsigned char *p, size_t n, const unsigned char mask[4], uint64_t offset)
{
    size_t i;

    for (i = 0; i < n; i++)
        p[i] ^= mask[(offset + i) & 3];
}

static int pf_close_code_valid(int code)
{
    if (code >= 3000 && code <= 4999)
        return 1;
    return code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006;
}

int pf_ws_check_close(const unsigned char *p, size_t n, int *code)
{
    uint32_t st = 0;

    *code = 1005;
    if (n == 0)
        return 0;
    if (n == 1)
        return PF_WS_PROTOCOL_ERROR;
    *code = p[0] << 8 | p[1];
    if (!pf_close_code_valid(*code))
        return PF_WS_PROTOCOL_ERROR;
    if (pf_utf8_feed(&st, p + 2, n - 2) < 0 || st != 0)
        return PF_WS_BAD_DATA;
    return 0;
}

size_t pf_ws_header(unsigned char *out, int opcode, uint64_t len)
{
    out[0] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        out[1] = (unsigned char)len;
        return 2;
    }
    if (len < 65536) {
        out[1] = 126;
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        return 4;
    }
    {
        int i;
        out[1] = 127;
        for (i = 0; i < 8; i++)
            out[2 + i] = (unsigned char)(len >> (56 - 8 * i));
    }
    return 10;
}

/* state: bits 0-1 continuation bytes still needed, bits 8-15 / 16-23 the allowed range of the
 * next byte (narrower than 80..BF right after E0, ED, F0, F4). */
int pf_utf8_feed(uint32_t *state, const unsigned char *p, size_t n)
{
    uint32_t need = *state & 3, lo = (*state >> 8) & 0xFF, hi = (*state >> 16) & 0xFF;
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (need) {
            if (c < lo || c > hi)
                return -1;
            need--;
            lo = 0x80, hi = 0xBF;
            continue;
        }
        if (c < 0x80)
            continue;
        lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            need = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0;
            if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90;
            if (c == 0xF4)
                hi = 0x8F;
        } else
            return -1;
    }
    *state = need | lo << 8 | hi << 16;
    if (!need)
        *state = 0;
    return 0;
}
