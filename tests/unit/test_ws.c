/* Unit tests for the RFC 6455 pieces (gateway/ws.c): handshake, frame headers, close payloads,
 * incremental UTF-8. */
#include "pf_test.h"
#include "ws.h"

static struct pf_http_req req;

static enum pf_http_parse parse(const char *s) { return pf_http_parse(s, strlen(s), &req); }

static int check_frame(const char *bytes, size_t n, int in_msg, uint64_t max, int *code)
{
    struct pf_ws_frame f;
    const char *why;

    return pf_ws_parse_header((const unsigned char *)bytes, n, in_msg, max, &f, code, &why);
}

int main(void)
{
    char accept[29], out[64];
    const char *why = NULL;
    int code = 0;
    uint32_t st = 0;
    unsigned char hdr[10];
    struct pf_ws_frame f;

    /* RFC 6455 §1.3's example key and accept value. */
    pf_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", accept);
    PF_CHECK_STR(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    PF_CHECK(parse("GET /ws?channels=a,b HTTP/1.1\r\nHost: x:1\r\nUpgrade: WebSocket\r\n"
                   "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\nOrigin: http://x:1\r\n\r\nrest") == PF_HTTP_OK);
    PF_CHECK_STR(req.path, "/ws");
    PF_CHECK_STR(req.query, "channels=a,b");
    PF_CHECK_STR(req.origin, "http://x:1");
    PF_CHECK_STR(req.host, "x:1");
    PF_CHECK(req.head_len == strlen("GET /ws?channels=a,b HTTP/1.1\r\nHost: x:1\r\nUpgrade: WebSocket\r\n"
                                    "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: "
                                    "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                                    "Origin: http://x:1\r\n\r\n"));
    PF_CHECK(pf_ws_check_upgrade(&req, &why) == 0);
    PF_CHECK(pf_http_query_param(req.query, "channels", out, sizeof(out)) == 3);
    PF_CHECK_STR(out, "a,b");
    PF_CHECK(pf_http_query_param("x=1&channels=a%2Cb%40c", "channels", out, sizeof(out)) == 5);
    PF_CHECK_STR(out, "a,b@c");
    PF_CHECK(pf_http_query_param("channels=%zz", "channels", out, sizeof(out)) == -2);
    PF_CHECK(pf_http_query_param("channels=ab%00cd", "channels", out, sizeof(out)) == -2);
    PF_CHECK(pf_http_query_param("channels=news%2", "channels", out, sizeof(out)) == -2);
    PF_CHECK(pf_http_query_param("other=1", "channels", out, sizeof(out)) == -1);

    PF_CHECK(parse("GET / HTTP/1.1\r\nHost: x\r\n") == PF_HTTP_INCOMPLETE);
    PF_CHECK(parse("GET / HTTP/1.1\r\nHost: x\r\n\r\n") == PF_HTTP_OK);
    PF_CHECK(pf_ws_check_upgrade(&req, &why) == 1); /* plain HTTP */
    PF_CHECK(parse("GET / HTTP/2.0\r\n\r\n") == PF_HTTP_BAD);
    PF_CHECK(parse("GET /\r\n\r\n") == PF_HTTP_BAD);
    PF_CHECK(parse("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n") == PF_HTTP_BAD);
    PF_CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") == PF_HTTP_BAD);
    PF_CHECK(parse("GET / HTTP/1.1\r\n folded\r\n\r\n") == PF_HTTP_BAD);

    /* Each §4.2.1 refusal. */
#define UP(extra, want)                                                                            \
    do {                                                                                           \
        PF_CHECK(parse("GET /ws HTTP/1.1\r\n" extra "\r\n") == PF_HTTP_OK);                        \
        PF_CHECK(pf_ws_check_upgrade(&req, &why) == (want));                                       \
    } while (0)
#define GOOD_KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    UP("Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" GOOD_KEY
       "Sec-WebSocket-Version: 13\r\n", 0);
    UP("Upgrade: websocket\r\nConnection: Upgrade\r\n" GOOD_KEY "Sec-WebSocket-Version: 13\r\n", 400);
    UP("Host: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n" GOOD_KEY "Sec-WebSocket-Version: 13\r\n",
       400);
    UP("Host: x\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n" GOOD_KEY
       "Sec-WebSocket-Version: 13\r\n", 400);
    UP("Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n", 400);
    UP("Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: abc\r\n"
       "Sec-WebSocket-Version: 13\r\n", 400);
    UP("Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" GOOD_KEY, 426);
    UP("Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" GOOD_KEY
       "Sec-WebSocket-Version: 8\r\n", 426);
    PF_CHECK(parse("POST /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   GOOD_KEY "Sec-WebSocket-Version: 13\r\n\r\n") == PF_HTTP_OK);
    PF_CHECK(pf_ws_check_upgrade(&req, &why) == 400);
    PF_CHECK(parse("GET /ws HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   GOOD_KEY "Sec-WebSocket-Version: 13\r\n\r\n") == PF_HTTP_OK);
    PF_CHECK(pf_ws_check_upgrade(&req, &why) == 400);

    /* Frame headers: a masked FIN text frame of 5 bytes. */
    PF_CHECK(check_frame("\x81\x85\x01\x02\x03\x04", 6, 0, 100, &code) == PF_WS_FRAME);
    PF_CHECK(pf_ws_parse_header((const unsigned char *)"\x81\x85\x01\x02\x03\x04", 6, 0, 100, &f,
                                &code, &why) == PF_WS_FRAME &&
             f.len == 5 && f.header_len == 6 && f.fin && f.opcode == 1);
    PF_CHECK(check_frame("\x81", 1, 0, 100, &code) == PF_WS_NEED_MORE);
    PF_CHECK(check_frame("\x81\x85\x01", 3, 0, 100, &code) == PF_WS_NEED_MORE);
    PF_CHECK(check_frame("\x81\x05", 2, 0, 100, &code) == PF_WS_ERROR && code == 1002); /* unmasked */
    PF_CHECK(check_frame("\xc1\x85xxxx", 6, 0, 100, &code) == PF_WS_ERROR && code == 1002); /* RSV1 */
    PF_CHECK(check_frame("\x83\x80xxxx", 6, 0, 100, &code) == PF_WS_ERROR);  /* opcode 3 */
    PF_CHECK(check_frame("\x09\x80xxxx", 6, 0, 100, &code) == PF_WS_ERROR);  /* fragmented ping */
    PF_CHECK(check_frame("\x89\xfexxxx", 6, 0, 100, &code) == PF_WS_ERROR);  /* ping > 125 */
    PF_CHECK(check_frame("\x80\x80xxxx", 6, 0, 100, &code) == PF_WS_ERROR);  /* stray continuation */
    PF_CHECK(check_frame("\x80\x80xxxx", 6, 1, 100, &code) == PF_WS_FRAME);
    PF_CHECK(check_frame("\x81\x80xxxx", 6, 1, 100, &code) == PF_WS_ERROR);  /* text mid-message */
    PF_CHECK(check_frame("\x89\x80xxxx", 6, 1, 100, &code) == PF_WS_FRAME);  /* ping mid-message */
    PF_CHECK(check_frame("\x81\xe4xxxx", 6, 0, 100, &code) == PF_WS_FRAME);  /* 100: at the bound */
    PF_CHECK(check_frame("\x81\xe5xxxx", 6, 0, 100, &code) == PF_WS_ERROR && code == 1009);
    PF_CHECK(check_frame("\x81\xfe\x00\x7dxxxx", 8, 0, 1000, &code) == PF_WS_ERROR); /* not shortest */
    PF_CHECK(check_frame("\x81\xfe\x01\x00xxxx", 8, 0, 100, &code) == PF_WS_ERROR && code == 1009);
    PF_CHECK(check_frame("\x81\xff\x80\x00\x00\x00\x00\x00\x00\x00xxxx", 14, 0, 100, &code) ==
             PF_WS_ERROR);

    /* Close payloads. */
    PF_CHECK(pf_ws_check_close((const unsigned char *)"", 0, &code) == 0 && code == 1005);
    PF_CHECK(pf_ws_check_close((const unsigned char *)"\x03", 1, &code) == 1002);
    PF_CHECK(pf_ws_check_close((const unsigned char *)"\x03\xe8ok", 4, &code) == 0 && code == 1000);
    PF_CHECK(pf_ws_check_close((const unsigned char *)"\x0f\xa0", 2, &code) == 0 && code == 4000);
    PF_CHECK(pf_ws_check_close((const unsigned char *)"\x13\x88", 2, &code) == 1002); /* 5000 */
    PF_CHECK(pf_ws_check_close((const unsigned char *)"\x03\xed", 2, &code) == 1002); /* 1005 */
    PF_CHECK(pf_ws_check_close((const unsigned char *)"\x03\xe8\xff", 3, &code) == 1007);
    PF_CHECK(pf_ws_check_close((const unsigned char *)"\x03\xe8\xe2\x82", 4, &code) == 1007);

    /* Server headers. */
    PF_CHECK(pf_ws_header(hdr, 1, 5) == 2 && hdr[0] == 0x81 && hdr[1] == 5);
    PF_CHECK(pf_ws_header(hdr, 8, 300) == 4 && hdr[0] == 0x88 && hdr[1] == 126 && hdr[3] == 44);
    PF_CHECK(pf_ws_header(hdr, 1, 70000) == 10 && hdr[1] == 127);

    /* Incremental UTF-8: a euro sign split over three chunks, then bad input. */
    PF_CHECK(pf_utf8_feed(&st, (const unsigned char *)"a\xe2", 2) == 0 && st != 0);
    PF_CHECK(pf_utf8_feed(&st, (const unsigned char *)"\x82", 1) == 0 && st != 0);
    PF_CHECK(pf_utf8_feed(&st, (const unsigned char *)"\xac", 1) == 0 && st == 0);
    st = 0;
    PF_CHECK(pf_utf8_feed(&st, (const unsigned char *)"\xed", 1) == 0);
    PF_CHECK(pf_utf8_feed(&st, (const unsigned char *)"\xa0", 1) == -1); /* surrogate */
    st = 0;
    PF_CHECK(pf_utf8_feed(&st, (const unsigned char *)"\xf4\x90", 2) == -1); /* > U+10FFFF */
    st = 0;
    PF_CHECK(pf_utf8_feed(&st, (const unsigned char *)"\xc0\xaf", 2) == -1); /* overlong */
    return pf_test_summary();
}
