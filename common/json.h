/* json.h - strict JSON scanning and string escaping, without building trees.
 *
 * Owns: the JSON grammar (RFC 8259) and UTF-8 validity as the gateway sees them. Must not:
 * allocate (except through the pf_buf it is handed) or keep state between calls. The batch encoder
 * uses pf_json_valid() to decide whether a payload is embedded as JSON or escaped as a string; the
 * client-op parser walks frames with the cursor functions. */
#ifndef PF_JSON_H
#define PF_JSON_H

#include <stddef.h>

#include "buf.h"

#define PF_JSON_MAX_DEPTH 64

/* 1 when [p, p+len) is exactly one JSON value (whitespace around allowed) in valid UTF-8. */
int pf_json_valid(const unsigned char *p, size_t len);

/* The same, for a value that will sit `depth` levels deep inside another JSON text, so that the
 * whole text stays within PF_JSON_MAX_DEPTH. */
int pf_json_valid_at(const unsigned char *p, size_t len, int depth);

/* 1 when [p, p+len) is valid UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF). */
int pf_utf8_valid(const unsigned char *p, size_t len);

/* Appends [p, p+len) as a quoted JSON string. Control bytes are escaped; valid UTF-8 is copied
 * as is; each byte of an invalid UTF-8 sequence becomes U+FFFD, because a JSON text (and a
 * WebSocket text frame) must be UTF-8. Returns 0, or -1 if the buffer could not grow. */
int pf_json_append_string(struct pf_buf *b, const unsigned char *p, size_t len);

/* A read position inside a JSON text. */
struct pf_json_cur {
    const unsigned char *p;
    const unsigned char *end;
};

enum pf_json_err {
    PF_JSON_OK = 0,
    PF_JSON_SYNTAX,        /* not JSON at all */
    PF_JSON_TOO_DEEP,      /* nesting over PF_JSON_MAX_DEPTH */
    PF_JSON_BAD_UTF8,      /* raw bytes that are not UTF-8 */
    PF_JSON_NUL,           /* a string holds U+0000 (as \u0000) */
    PF_JSON_LONE_SURROGATE, /* \uD800-\uDFFF without its pair */
    PF_JSON_TOO_LONG,      /* decoded string does not fit the caller's buffer */
};

void pf_json_skip_ws(struct pf_json_cur *c);
/* Skips (and validates) one value of any type. */
enum pf_json_err pf_json_skip_value(struct pf_json_cur *c);
/* Decodes one string at the cursor (which must be at '"') into out (NUL-terminated, at most
 * cap-1 bytes). U+0000 and lone surrogates are refused because no C string or channel name can
 * hold them faithfully. */
enum pf_json_err pf_json_parse_string(struct pf_json_cur *c, char *out, size_t cap, size_t *outlen);
const char *pf_json_err_str(enum pf_json_err e);

#endif
