/* api_key.h - the optional API key of the HTTP publisher.
 *
 * Owns: reading the key from a file, the rule for what a key may contain, and the
 * constant-time check of an "Authorization: Bearer KEY" header. Must not: log the key or keep
 * copies of it. */
#ifndef PF_PUB_API_KEY_H
#define PF_PUB_API_KEY_H

#include <stddef.h>

#define PF_API_KEY_MAX 1024

/* Copies a key given on the command line; returns 0, or -1 with *err set. */
int pf_api_key_dup(const char *s, char **key, size_t *len, const char **err);
/* Reads the key from the file's one line (a trailing newline and spaces are ignored). */
int pf_api_key_load(const char *path, char **key, size_t *len, const char **err);
/* 1 when header (may be NULL) is "Bearer <key>" with exactly this key. The time taken depends
 * only on the key's length, never on how much of the key the header got right. */
int pf_api_key_check(const char *key, size_t keylen, const char *header);

#endif
