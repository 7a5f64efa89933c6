/* Unit tests for the client-op parser (gateway/op.c). */
#include "op.h"
#include "pf_test.h"

static struct pf_op op;

static int parse(const char *s) { return pf_op_parse(&op, (const unsigned char *)s, strlen(s), 4); }

static void check_names(const char *const *want, size_t n)
{
    const char *p;
    size_t i = 0;

    PF_CHECK(op.nchannels == n);
    for (p = pf_op_next_name(&op, NULL); p; p = pf_op_next_name(&op, p), i++)
        PF_CHECK(i < n && !strcmp(p, want[i]));
    PF_CHECK(i == n);
}

static void check_err(const char *msg, const char *code)
{
    PF_CHECK(parse(msg) == -1);
    PF_CHECK(op.err_code && !strcmp(op.err_code, code));
}

int main(void)
{
    static const char *const ab[] = {"a", "b"};
    static const char *const e1[] = {"caf\xc3\xa9"};

    pf_op_init(&op);
    PF_CHECK(parse("{\"op\":\"subscribe\",\"channels\":[\"a\",\"b\"]}") == 0);
    PF_CHECK(op.type == PF_OP_SUBSCRIBE);
    check_names(ab, 2);
    PF_CHECK(parse(" { \"channels\" : [ \"a\" , \"b\" ] , \"extra\":{\"x\":[1,{}]}, \"op\" : \"unsubscribe\" } ") == 0);
    PF_CHECK(op.type == PF_OP_UNSUBSCRIBE);
    check_names(ab, 2);
    PF_CHECK(parse("{\"op\":\"ping\"}") == 0 && op.type == PF_OP_PING);
    PF_CHECK(parse("{\"op\":\"p\\u0069ng\"}") == 0 && op.type == PF_OP_PING);
    PF_CHECK(parse("{\"op\":\"subscribe\",\"channels\":[\"\\u0061\",\"b\"]}") == 0);
    check_names(ab, 2);

    check_err("", "bad_json");
    check_err("{", "bad_json");
    check_err("{\"op\":\"subscribe\",\"channels\":[\"a\"]", "bad_json");
    check_err("not json", "bad_json");
    check_err("{\"op\":\"subscribe\",\"channels\":[\"\xff\"]}", "bad_json");
    check_err("[\"op\"]", "bad_request");
    check_err("42", "bad_request");
    check_err("{}", "bad_request");
    PF_CHECK_STR(op.err_msg, "missing \"op\"");
    check_err("{\"op\":1}", "bad_request");
    check_err("{\"op\":\"subscribe\"}", "bad_request");
    PF_CHECK_STR(op.err_msg, "missing \"channels\"");
    check_err("{\"op\":\"subscribe\",\"channels\":\"a\"}", "bad_request");
    check_err("{\"op\":\"subscribe\",\"channels\":[1]}", "bad_request");
    check_err("{\"op\":\"subscribe\",\"channels\":[]}", "bad_request");
    check_err("{\"op\":\"publish\",\"channels\":[\"a\"]}", "unknown_op");
    check_err("{\"op\":\"SUBSCRIBE\",\"channels\":[\"a\"]}", "unknown_op");
    check_err("{\"op\":\"subscribe\",\"channels\":[\"a b\"]}", "bad_channel");
    PF_CHECK_STR(op.err_msg, "channel name may only contain A-Z a-z 0-9 _ - . : @ /: \"a b\"");
    check_err("{\"op\":\"subscribe\",\"channels\":[\"\"]}", "bad_channel");
    check_err("{\"op\":\"subscribe\",\"channels\":[\"a\\u0000b\"]}", "bad_channel");
    PF_CHECK_STR(op.err_msg, "string contains U+0000: \"\"");
    check_err("{\"op\":\"subscribe\",\"channels\":[\"\\ud800\"]}", "bad_channel");
    check_err("{\"op\":\"subscribe\",\"channels\":[\"a\\n\"]}", "bad_channel");
    check_err("{\"op\":\"subscribe\",\"channels\":[\"news*\"]}", "bad_channel");
    check_err("{\"op\":\"subscribe\",\"channels\":[\"0123456789012345678901234567890123456789"
              "01234567890123456789012345678901234567890123456789012345678901234567890123456789"
              "0123456789\"]}",
              "bad_channel");
    PF_CHECK(strstr(op.err_msg, "longer than 128 bytes") != NULL);
    check_err("{\"op\":\"subscribe\",\"channels\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", "too_many_channels");
    /* Non-ASCII decodes correctly but is not a valid channel name. */
    check_err("{\"op\":\"subscribe\",\"channels\":[\"caf\\u00e9\"]}", "bad_channel");
    (void)e1;
    pf_op_free(&op);
    return pf_test_summary();
}
