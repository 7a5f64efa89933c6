/* fuzz_util.h - what every harness shares: a property assertion that aborts (so libFuzzer keeps
 * the input as a crash) and an independent reference for UTF-8, written from the definition
 * (decode, then refuse overlongs, surrogates and code points above U+10FFFF) rather than from
 * the byte ranges json.c uses, so the two can disagree when one of them is wrong. */
#ifndef PF_FUZZ_UTIL_H
#define PF_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A broken property is a crash: libFuzzer writes the input out and the run fails. */
#define PF_FUZZ_ASSERT(cond)                                                                    \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond);        \
            abort();                                                                            \
        }                                                                                       \
    } while (0)

/* Length (1-4) of the well-formed UTF-8 sequence at p, or 0 when there is none. */
static inline size_t ref_utf8_len(const unsigned char *p, size_t avail)
{
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    uint32_t cp;
    size_t n, i;

    if (avail == 0)
        return 0;
    if (p[0] < 0x80)
        return 1;
    if ((p[0] & 0xE0) == 0xC0)
        n = 2, cp = p[0] & 0x1Fu;
    else if ((p[0] & 0xF0) == 0xE0)
        n = 3, cp = p[0] & 0x0Fu;
    else if ((p[0] & 0xF8) == 0xF0)
        n = 4, cp = p[0] & 0x07u;
    else
        return 0; /* a continuation byte or 0xF8-0xFF cannot start a sequence */
    if (avail < n)
        return 0;
    for (i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3Fu);
    }
    if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

static inline int ref_utf8_valid(const unsigned char *p, size_t len)
{
    size_t i = 0, n;

    while (i < len) {
        if (!(n = ref_utf8_len(p + i, len - i)))
            return 0;
        i += n;
    }
    return 1;
}

/* What a JSON string built from [p, p+len) must decode to: valid sequences unchanged, every other
 * byte U+FFFD. out needs room for 3 * len bytes; returns the length written. */
static inline size_t ref_utf8_repair(const unsigned char *p, size_t len, unsigned char *out)
{
    size_t i = 0, o = 0, n;

    while (i < len) {
        if ((n = ref_utf8_len(p + i, len - i))) {
            memcpy(out + o, p + i, n);
            o += n, i += n;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3, i++;
        }
    }
    return o;
}

#endif
