/* fuzz_ws.c - the client-facing RFC 6455 code (gateway/ws.c) on arbitrary bytes.
 *
 * The first input byte picks the part; the rest is the data:
 *   0: HTTP request parsing + upgrade checks: never reads past the input; a request that parses
 *      has head_len within the input, NUL-terminated fields, and an accepted upgrade has a key
 *      that is 24 base64 characters.
 *   1: frame header parsing as the shard does it (every in_message state, a small payload bound):
 *      a parsed header is self-consistent (length encodings minimal, control frames short and
 *      final, data frames within the bound), and unmasking twice gives the input back.
 *   2: close payloads: an accepted one has a valid code and a UTF-8 reason.
 *   3: incremental UTF-8: feeding the input in any split agrees with one-shot validation. */
#include <string.h>

#include "fuzz_util.h"
#include "json.h"
#include "ws.h"

static void fuzz_http(const uint8_t *d, size_t n)
{
    struct pf_http_req req;
    const char *why = NULL;
    enum pf_http_parse r = pf_http_parse((const char *)d, n, &req);

    if (r != PF_HTTP_OK)
        return;
    PF_FUZZ_ASSERT(req.head_len <= n && req.head_len >= 4);
    PF_FUZZ_ASSERT(memchr(req.path, 0, sizeof(req.path)) && memchr(req.key, 0, sizeof(req.key)));
    if (pf_ws_check_upgrade(&req, &why) == 0) {
        char accept[29];
        PF_FUZZ_ASSERT(strlen(req.key) == 24 && req.has_host && req.version == 13);
        pf_ws_accept_key(req.key, accept);
        PF_FUZZ_ASSERT(strlen(accept) == 28);
    }
}

static void fuzz_frame(const uint8_t *d, size_t n)
{
    int in_message;

    for (in_message = 0; in_message < 2; in_message++) {
        struct pf_ws_frame f;
        const char *why = NULL;
        int code = 0;
        enum pf_ws_parse r = pf_ws_parse_header(d, n, in_message, 1000, &f, &code, &why);
        if (r == PF_WS_ERROR) {
            PF_FUZZ_ASSERT((code == 1002 || code == 1009) && why);
            continue;
        }
        if (r != PF_WS_FRAME)
            continue;
        PF_FUZZ_ASSERT(f.header_len == 6 || f.header_len == 8 || f.header_len == 14);
        PF_FUZZ_ASSERT(f.header_len <= n);
        if (f.opcode >= 8)
            PF_FUZZ_ASSERT(f.fin && f.len <= 125);
        else
            PF_FUZZ_ASSERT(f.len <= 1000 && (f.opcode != 0) == !in_message);
        if (f.header_len == 8)
            PF_FUZZ_ASSERT(f.len >= 126 && f.len < 65536);
        if (f.header_len == 14)
            PF_FUZZ_ASSERT(f.len >= 65536);
        if (f.header_len + f.len <= n) {
            unsigned char copy[1000];
            size_t len = (size_t)f.len;
            memcpy(copy, d + f.header_len, len);
            pf_ws_unmask(copy, len, f.mask, 0);
            pf_ws_unmask(copy, len, f.mask, 0);
            PF_FUZZ_ASSERT(memcmp(copy, d + f.header_len, len) == 0);
        }
    }
}

static void fuzz_close(const uint8_t *d, size_t n)
{
    int code = 0, bad = pf_ws_check_close(d, n, &code);

    if (bad) {
        PF_FUZZ_ASSERT(bad == 1002 || bad == 1007);
        return;
    }
    if (n == 0) {
        PF_FUZZ_ASSERT(code == 1005);
        return;
    }
    PF_FUZZ_ASSERT((code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006) ||
                   (code >= 3000 && code <= 4999));
    PF_FUZZ_ASSERT(pf_utf8_valid(d + 2, n - 2));
}

static void fuzz_utf8(const uint8_t *d, size_t n)
{
    uint32_t st = 0;
    size_t cut = n ? d[0] % (n + 1) : 0;
    int whole = pf_utf8_valid(d, n), ok;

    ok = pf_utf8_feed(&st, d, cut) == 0 && pf_utf8_feed(&st, d + cut, n - cut) == 0 && st == 0;
    PF_FUZZ_ASSERT(ok == whole);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0] & 3) {
    case 0: fuzz_http(data + 1, size - 1); break;
    case 1: fuzz_frame(data + 1, size - 1); break;
    case 2: fuzz_close(data + 1, size - 1); break;
    default: fuzz_utf8(data + 1, size - 1); break;
    }
    return 0;
}
