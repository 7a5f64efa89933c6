/* api_key.c - see api_key.h. */
#include "api_key.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Visible ASCII only: the key has to travel in an HTTP header unchanged. */
static int pf_api_key_valid(const char *s, size_t len, const char **err)
{
    size_t i;

    if (len == 0 || len > PF_API_KEY_MAX) {
        *err = "API key must be 1 to 1024 bytes";
        return -1;
    }
    for (i = 0; i < len; i++) {
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e) {
            *err = "API key may only contain visible ASCII characters (no spaces)";
            return -1;
        }
    }
    return 0;
}

static int pf_api_key_copy(const char *s, size_t n, char **key, size_t *len, const char **err)
{
    if (pf_api_key_valid(s, n, err))
        return -1;
    *key = malloc(n + 1);
    if (!*key) {
        *err = "out of memory";
        return -1;
    }
    memcpy(*key, s, n);
    (*key)[n] = 0;
    *len = n;
    return 0;
}

int pf_api_key_dup(const char *s, char **key, size_t *len, const char **err)
{
    return pf_api_key_copy(s, strlen(s), key, len, err);
}

int pf_api_key_load(const char *path, char **key, size_t *len, const char **err)
{
    char buf[PF_API_KEY_MAX + 8];
    FILE *f = fopen(path, "r");
    size_t n;
    int rc = -1;

    if (!f) {
        *err = strerror(errno);
        return -1;
    }
    n = fread(buf, 1, sizeof(buf), f);
    if (ferror(f)) {
        *err = "cannot read the API key file";
        goto done;
    }
    if (n == sizeof(buf)) {
        *err = "API key file is longer than a 1024-byte key";
        goto done;
    }
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
                 buf[n - 1] == '\t'))
        n--;
    rc = pf_api_key_copy(buf, n, key, len, err);
done:
    memset(buf, 0, sizeof(buf));
    fclose(f);
    return rc;
}

int pf_api_key_check(const char *key, size_t keylen, const char *header)
{
    volatile unsigned char diff = 0;
    size_t i, toklen;
    const char *tok;

    if (!header || strncasecmp(header, "Bearer ", 7) != 0)
        return 0;
    tok = header + 7;
    while (*tok == ' ')
        tok++;
    toklen = strlen(tok);
    while (toklen && (tok[toklen - 1] == ' ' || tok[toklen - 1] == '\t'))
        toklen--;
    /* Loop over the key, not the token: an attacker controls only the token. */
    diff |= (unsigned char)(toklen != keylen);
    for (i = 0; i < keylen; i++)
        diff |= (unsigned char)((unsigned char)key[i] ^ (i < toklen ? (unsigned char)tok[i] : 0));
    return diff == 0;
}
