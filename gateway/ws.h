/* ws.h - RFC 6455, server side, as pure functions over byte buffers.
 *
 * Owns: the opening handshake (request validation per §4.2.1, the 101 reply with
 * Sec-WebSocket-Accept), the client frame parser with every check §5 asks of a server
 * (mask bit, RSV bits, opcodes, control-frame length and FIN, continuation order), the close
 * payload rules of §5.5.1/§7.4, and incremental UTF-8 validation across fragments.
 * Must not: do I/O, allocate, or know about channels; so it can be fuzzed on its own. */
#ifndef PF_WS_H
#define PF_WS_H

#include <stddef.h>
#include <stdint.h>

/* ---- opening handshake ----------------------------------------------------------------- */

#define PF_WS_MAX_REQUEST 8192 /* request line + headers */

struct pf_http_req {
    char method[8];
    char path[1024];  /* without the query string */
    char query[2048]; /* after '?', raw (still percent-encoded) */
    int http_minor;   /* 0 for HTTP/1.0, 1 for HTTP/1.1 */
    int has_host;
    int upgrade_websocket;  /* Upgrade: websocket */
    int connection_upgrade; /* Connection: ... upgrade ... */
    int connection_close;
    char key[64];          /* Sec-WebSocket-Key */
    int has_key, has_version;
    int version;           /* Sec-WebSocket-Version */
    char origin[256];
    char host[256];
    size_t head_len;       /* bytes up to and including the blank line */
};

enum pf_http_parse {
    PF_HTTP_INCOMPLETE = 0, /* need more bytes */
    PF_HTTP_OK = 1,
    PF_HTTP_BAD = -1,       /* malformed: answer 400 */
    PF_HTTP_TOO_BIG = -2,   /* headers over PF_WS_MAX_REQUEST: answer 431 */
};

enum pf_http_parse pf_http_parse(const char *buf, size_t len, struct pf_http_req *req);

/* Checks a parsed GET as a WebSocket upgrade per RFC 6455 §4.2.1. Returns 0 when valid; else the
 * HTTP status to answer (400, 426 for a version other than 13) and a static reason. A request
 * without any Upgrade header is not an upgrade at all: returns 1 (serve it as plain HTTP). */
int pf_ws_check_upgrade(const struct pf_http_req *req, const char **why);

/* Writes the base64 Sec-WebSocket-Accept value (28 chars + NUL) for a client key. */
void pf_ws_accept_key(const char *key, char out[29]);

/* Decodes the value of a URL query parameter (name=value&...) with percent-decoding into out;
 * returns its length, -1 when absent, -2 when present but malformed (a bad escape, %00, or too
 * long). '+' is left as is. */
int pf_http_query_param(const char *query, const char *name, char *out, size_t outlen);

/* ---- frames ----------------------------------------------------------------------------- */

enum pf_ws_opcode {
    PF_WS_CONT = 0x0, PF_WS_TEXT = 0x1, PF_WS_BINARY = 0x2,
    PF_WS_CLOSE = 0x8, PF_WS_PING = 0x9, PF_WS_PONG = 0xA,
};

/* Close codes the gateway sends (RFC 6455 §7.4.1). */
enum pf_ws_close_code {
    PF_WS_NORMAL = 1000, PF_WS_GOING_AWAY = 1001, PF_WS_PROTOCOL_ERROR = 1002,
    PF_WS_UNSUPPORTED = 1003, PF_WS_BAD_DATA = 1007, PF_WS_POLICY = 1008,
    PF_WS_TOO_BIG = 1009, PF_WS_INTERNAL = 1011,
};

struct pf_ws_frame {
    int fin;
    int opcode;
    uint64_t len;            /* payload length */
    size_t header_len;       /* 2..14 */
    unsigned char mask[4];
};

enum pf_ws_parse {
    PF_WS_NEED_MORE = 0,
    PF_WS_FRAME = 1,  /* header parsed and valid; payload follows */
    PF_WS_ERROR = -1, /* protocol violation: close with *close_code */
};

/* Parses and checks one client frame header at buf. in_message says whether a fragmented data
 * message is in progress (continuation expected). max_payload bounds a single data frame. */
enum pf_ws_parse pf_ws_parse_header(const unsigned char *buf, size_t len, int in_message,
                                    uint64_t max_payload, struct pf_ws_frame *f,
                                    int *close_code, const char **why);

/* Unmasks in place; offset is the payload position of p (masks continue across reads). */
void pf_ws_unmask(unsigned char *p, size_t n, const unsigned char mask[4], uint64_t offset);

/* Validates a client close payload: 0 bytes, or a valid code + UTF-8 reason. Returns 0, or the
 * close code to answer with (1002 or 1007). *code gets the received code (1005 when absent). */
int pf_ws_check_close(const unsigned char *p, size_t n, int *code);

/* Writes a server frame header for a payload of len bytes; returns header length (2, 4, 10). */
size_t pf_ws_header(unsigned char *out, int opcode, uint64_t len);

/* ---- incremental UTF-8 (for text split across frames and reads) ------------------------ */

/* state 0 = at a character boundary; call with each chunk; returns -1 on invalid input. */
int pf_utf8_feed(uint32_t *state, const unsigned char *p, size_t n);

#endif
