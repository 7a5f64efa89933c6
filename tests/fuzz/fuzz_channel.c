/* fuzz_channel.c - libFuzzer harness for common/channel.c.
 *
 * Checks that pf_channel_check() agrees with a reference written here from the rule in channel.h
 * (1-128 bytes of A-Z a-z 0-9 _ - . : @ /), on the whole input and on every split of it at a NUL
 * (what a C caller that trusted strlen() would pass), that it reads only the len bytes it is
 * given (exact-size buffer under ASan), and that a refusal always comes with a reason. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"
#include "fuzz_util.h"

static int ref_channel_ok(const unsigned char *p, size_t len)
{
    static const char allowed[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.:@/";
    size_t i;

    if (len < 1 || len > 128)
        return 0;
    for (i = 0; i < len; i++)
        if (p[i] == 0 || !memchr(allowed, p[i], sizeof(allowed) - 1))
            return 0;
    return 1;
}

static void check_one(const unsigned char *p, size_t len)
{
    /* Copy into a buffer of exactly len bytes so any read past it is caught. */
    char *copy = malloc(len ? len : 1);
    const char *why;

    PF_FUZZ_ASSERT(copy);
    if (len)
        memcpy(copy, p, len);
    why = pf_channel_check(copy, len);
    PF_FUZZ_ASSERT((why == NULL) == ref_channel_ok(p, len));
    if (why)
        PF_FUZZ_ASSERT(why[0] != 0);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size, *nul;

    check_one(data, size);
    PF_FUZZ_ASSERT(pf_channel_check(NULL, size) != NULL);
    /* Each NUL-separated piece, as several names packed into one buffer. */
    while ((nul = memchr(p, 0, (size_t)(end - p))) != NULL) {
        check_one(p, (size_t)(nul - p));
        p = nul + 1;
    }
    if (p != data)
        check_one(p, (size_t)(end - p));
    return 0;
}
