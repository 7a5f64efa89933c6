/* fuzz_json.c - libFuzzer harness for common/json.c.
 *
 * Checks, for any bytes: pf_json_valid() stays inside the input (ASan, exact-size buffer); valid
 * JSON is valid UTF-8; pf_utf8_valid() agrees with the reference decoder in fuzz_util.h;
 * pf_json_append_string() always yields one valid JSON string in valid UTF-8 that decodes back to
 * the input (invalid bytes as U+FFFD) unless the input holds a NUL, which decoding refuses; and
 * pf_json_parse_string() on the raw input never writes past cap, agrees with the validator, and
 * only produces NUL-free UTF-8. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "fuzz_util.h"
#include "json.h"

/* Builds a JSON string from data and decodes it again. */
static void check_append_roundtrip(const unsigned char *data, size_t size)
{
    struct pf_buf b;
    struct pf_json_cur c;
    unsigned char *want, *got;
    size_t want_len, got_len = 0, cap = 3 * size + 1;
    enum pf_json_err e;

    pf_buf_init(&b);
    PF_FUZZ_ASSERT(pf_json_append_string(&b, data, size) == 0);
    PF_FUZZ_ASSERT(b.len >= 2 && b.data[0] == '"' && b.data[b.len - 1] == '"');
    PF_FUZZ_ASSERT(b.data[b.len] == 0);
    PF_FUZZ_ASSERT(pf_json_valid(b.data, b.len) == 1);
    PF_FUZZ_ASSERT(pf_utf8_valid(b.data, b.len) == 1);
    PF_FUZZ_ASSERT(memchr(b.data, 0, b.len) == NULL); /* control bytes are escaped */

    want = malloc(cap);
    PF_FUZZ_ASSERT(want);
    want_len = ref_utf8_repair(data, size, want);
    /* pf_json_parse_string() keeps 4 bytes free before decoding any escape, so "big enough"
     * is the decoded length + 4 (the NUL included). */
    cap = want_len + 4;
    got = malloc(cap);
    PF_FUZZ_ASSERT(got);
    c.p = b.data;
    c.end = b.data + b.len;
    e = pf_json_parse_string(&c, (char *)got, cap, &got_len);
    if (memchr(data, 0, size)) {
        PF_FUZZ_ASSERT(e == PF_JSON_NUL);
    } else {
        PF_FUZZ_ASSERT(e == PF_JSON_OK);
        PF_FUZZ_ASSERT(c.p == c.end);
        PF_FUZZ_ASSERT(got_len == want_len && memcmp(got, want, want_len) == 0);
        PF_FUZZ_ASSERT(got[got_len] == 0);
        if (ref_utf8_valid(data, size))
            PF_FUZZ_ASSERT(got_len == size && memcmp(got, data, size) == 0);
        /* One byte short of the string and its NUL: refused, never truncated or overrun. */
        free(got);
        got = malloc(want_len ? want_len : 1);
        PF_FUZZ_ASSERT(got);
        c.p = b.data;
        e = pf_json_parse_string(&c, (char *)got, want_len, &got_len);
        PF_FUZZ_ASSERT(e == PF_JSON_TOO_LONG);
    }
    free(want);
    free(got);
    pf_buf_free(&b);
}

/* Decodes the input itself as a string into an exact-size heap buffer of cap bytes. */
static void check_parse_string(const unsigned char *data, size_t size, size_t cap)
{
    struct pf_json_cur c = {data, data + size}, v = {data, data + size};
    char *out = malloc(cap ? cap : 1);
    size_t outlen = (size_t)-1;
    enum pf_json_err e, ve;

    PF_FUZZ_ASSERT(out);
    e = pf_json_parse_string(&c, out, cap, &outlen);
    PF_FUZZ_ASSERT(c.p >= data && c.p <= data + size);
    ve = pf_json_skip_value(&v);
    if (e == PF_JSON_OK) {
        /* A decoded string is a string the validator accepts, ending at the same byte. */
        PF_FUZZ_ASSERT(ve == PF_JSON_OK && v.p == c.p);
        PF_FUZZ_ASSERT(pf_json_valid(data, (size_t)(c.p - data)) == 1);
        PF_FUZZ_ASSERT(outlen < cap && out[outlen] == 0);
        PF_FUZZ_ASSERT(strlen(out) == outlen);
        PF_FUZZ_ASSERT(pf_utf8_valid((const unsigned char *)out, outlen));
        PF_FUZZ_ASSERT(outlen <= (size_t)(c.p - data)); /* decoding never grows the text */
    } else if (ve == PF_JSON_OK && size && data[0] == '"' && cap > size) {
        /* The validator accepted the string and the buffer is big enough: only U+0000 and lone
         * surrogates may still be refused. */
        PF_FUZZ_ASSERT(e == PF_JSON_NUL || e == PF_JSON_LONE_SURROGATE);
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int valid = pf_json_valid(data, size);
    int utf8 = pf_utf8_valid(data, size);

    PF_FUZZ_ASSERT(valid == 0 || valid == 1);
    PF_FUZZ_ASSERT(utf8 == ref_utf8_valid(data, size));
    if (valid)
        PF_FUZZ_ASSERT(utf8);
    if (size) {
        /* A valid value followed by a stray byte other than whitespace is not one value. */
        PF_FUZZ_ASSERT(pf_json_valid(data, size - 1) == 0 || !valid || data[size - 1] == ' ' ||
                       data[size - 1] == '\t' || data[size - 1] == '\n' ||
                       data[size - 1] == '\r' || (data[size - 1] >= '0' && data[size - 1] <= '9'));
    }

    check_append_roundtrip(data, size);
    if (size && data[0] == '"') {
        check_parse_string(data, size, size + 1);
        check_parse_string(data, size, 1 + data[size - 1] % 16);
    }
    return 0;
}
