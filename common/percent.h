/* percent.h - decoding of %XX escapes, as URLs (RFC 3986) write them.
 *
 * Owns: that one rule, shared by the Redis URL parser and the gateway's query strings. Must not:
 * treat '+' as a space (that is form encoding, not URL encoding). */
#ifndef PF_PERCENT_H
#define PF_PERCENT_H

#include <stddef.h>

/* Decodes [s, s+n) into out (NUL-terminated). Returns the decoded length, or -1 for a bad
 * escape, a decoded NUL (it would cut a C string short) or an output that does not fit. */
int pf_percent_decode(const char *s, size_t n, char *out, size_t outlen);

#endif
