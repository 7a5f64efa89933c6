/* Unit tests for strict JSON validation and string escaping (common/json.c). */
#include "json.h"
#include "pf_test.h"

static int valid(const char *s) { return pf_json_valid((const unsigned char *)s, strlen(s)); }

static void check_escape(const char *in, size_t len, const char *want)
{
    struct pf_buf b;

    pf_buf_init(&b);
    PF_CHECK(pf_json_append_string(&b, (const unsigned char *)in, len) == 0);
    PF_CHECK_MEM(b.data, b.len, want, strlen(want));
    pf_buf_free(&b);
}

static void check_decode(const char *json, enum pf_json_err want_err, const char *want)
{
    struct pf_json_cur c = {(const unsigned char *)json, (const unsigned char *)json + strlen(json)};
    char out[64];
    size_t n = 0;
    enum pf_json_err e = pf_json_parse_string(&c, out, sizeof(out), &n);

    PF_CHECK(e == want_err);
    if (e == PF_JSON_OK && want)
        PF_CHECK_MEM(out, n, want, strlen(want));
}

int main(void)
{
    char deep[200];
    int i;

    /* Valid JSON of every kind, whitespace around allowed. */
    PF_CHECK(valid("{}"));
    PF_CHECK(valid(" {\"a\": [1, 2.5, -3e10, true, false, null, \"x\"]} \n"));
    PF_CHECK(valid("123"));
    PF_CHECK(valid("-0.0e+1"));
    PF_CHECK(valid("\"caf\xc3\xa9 \\u00e9 \\ud83d\\ude00\""));
    PF_CHECK(valid("\"\\ud800\"")); /* grammar allows a lone surrogate escape */
    PF_CHECK(valid("[[[]]]"));
    /* Not JSON. */
    PF_CHECK(!valid(""));
    PF_CHECK(!valid("hello"));
    PF_CHECK(!valid("{"));
    PF_CHECK(!valid("{\"a\":1,}"));
    PF_CHECK(!valid("[1,]"));
    PF_CHECK(!valid("01"));
    PF_CHECK(!valid("1."));
    PF_CHECK(!valid(".5"));
    PF_CHECK(!valid("+1"));
    PF_CHECK(!valid("NaN"));
    PF_CHECK(!valid("{} {}"));
    PF_CHECK(!valid("'x'"));
    PF_CHECK(!valid("\"tab\there\"")); /* raw control byte inside a string */
    PF_CHECK(!valid("\"\\x\""));
    PF_CHECK(!valid("\"\\u12\""));
    PF_CHECK(!valid("\"\xff\""));         /* invalid UTF-8 */
    PF_CHECK(!valid("\"\xc0\xaf\""));     /* overlong */
    PF_CHECK(!valid("\"\xed\xa0\x80\"")); /* UTF-8-encoded surrogate */
    PF_CHECK(!valid("\"\xf4\x90\x80\x80\"")); /* above U+10FFFF */
    PF_CHECK(!valid("tru"));
    PF_CHECK(pf_json_valid((const unsigned char *)"1\0", 2) == 0);
    /* Depth bound: 64 levels pass, 65 do not. */
    for (i = 0; i < 64; i++)
        deep[i] = '[';
    for (i = 0; i < 64; i++)
        deep[64 + i] = ']';
    PF_CHECK(pf_json_valid((const unsigned char *)deep, 128));
    for (i = 0; i < 65; i++)
        deep[i] = '[';
    for (i = 0; i < 65; i++)
        deep[65 + i] = ']';
    PF_CHECK(!pf_json_valid((const unsigned char *)deep, 130));

    /* UTF-8 validity on its own. */
    PF_CHECK(pf_utf8_valid((const unsigned char *)"a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 10));
    PF_CHECK(!pf_utf8_valid((const unsigned char *)"\xc3", 1));
    PF_CHECK(!pf_utf8_valid((const unsigned char *)"\xe2\x82", 2));

    /* Escaping: quotes, backslash, every control byte, UTF-8 kept, bad bytes -> U+FFFD. */
    check_escape("plain", 5, "\"plain\"");
    check_escape("a\"b\\c", 5, "\"a\\\"b\\\\c\"");
    check_escape("\n\r\t\b\f", 5, "\"\\n\\r\\t\\b\\f\"");
    check_escape("\x01\x1f\x7f", 3, "\"\\u0001\\u001f\x7f\"");
    check_escape("\0x", 2, "\"\\u0000x\"");
    check_escape("caf\xc3\xa9 \xf0\x9f\x98\x80", 10, "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"");
    check_escape("a\xff" "b", 3, "\"a\xef\xbf\xbd" "b\"");
    check_escape("\xc3", 1, "\"\xef\xbf\xbd\"");
    check_escape("\xe2\x82", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\"");
    check_escape("", 0, "\"\"");
    check_escape("</script>", 9, "\"</script>\"");

    /* Decoding strings for the op parser. */
    check_decode("\"news\"", PF_JSON_OK, "news");
    check_decode("\"\\u00e9\"", PF_JSON_OK, "\xc3\xa9");
    check_decode("\"\\ud83d\\ude00\"", PF_JSON_OK, "\xf0\x9f\x98\x80");
    check_decode("\"a\\/b\\n\"", PF_JSON_OK, "a/b\n");
    check_decode("\"a\\u0000b\"", PF_JSON_NUL, NULL);
    check_decode("\"\\ud800\"", PF_JSON_LONE_SURROGATE, NULL);
    check_decode("\"\\ude00\"", PF_JSON_LONE_SURROGATE, NULL);
    check_decode("\"\\ud800\\u0041\"", PF_JSON_LONE_SURROGATE, NULL);
    check_decode("\"0123456789012345678901234567890123456789012345678901234567890123456789\"",
                 PF_JSON_TOO_LONG, NULL);
    check_decode("\"open", PF_JSON_SYNTAX, NULL);
    PF_CHECK_STR(pf_json_err_str(PF_JSON_NUL), "string contains U+0000");
    return pf_test_summary();
}
