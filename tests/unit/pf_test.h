/* pf_test.h - a minimal assertion kit for the unit tests: each check is counted, a failure
 * prints where and what, and main() ends with "N passed, M failed" and the exit status. */
#ifndef PF_TEST_H
#define PF_TEST_H

#include <stdio.h>
#include <string.h>

static int pf_t_pass, pf_t_fail;

#define PF_CHECK(cond)                                                                          \
    do {                                                                                        \
        if (cond)                                                                               \
            pf_t_pass++;                                                                        \
        else {                                                                                  \
            pf_t_fail++;                                                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);           \
        }                                                                                       \
    } while (0)

/* Compares bytes exactly and shows both sides on failure. */
#define PF_CHECK_MEM(got, glen, want, wlen)                                                     \
    do {                                                                                        \
        size_t gl_ = (glen), wl_ = (wlen);                                                      \
        if (gl_ == wl_ && memcmp((got), (want), gl_) == 0)                                      \
            pf_t_pass++;                                                                        \
        else {                                                                                  \
            pf_t_fail++;                                                                        \
            fprintf(stderr, "%s:%d: bytes differ\n  got  (%zu): %.*s\n  want (%zu): %.*s\n",   \
                    __FILE__, __LINE__, gl_, (int)gl_, (const char *)(got), wl_, (int)wl_,      \
                    (const char *)(want));                                                      \
        }                                                                                       \
    } while (0)

#define PF_CHECK_STR(got, want) PF_CHECK_MEM((got), strlen(got), (want), strlen(want))

static int pf_test_summary(void)
{
    printf("%d passed, %d failed\n", pf_t_pass, pf_t_fail);
    return pf_t_fail ? 1 : 0;
}

#endif
