/* fuzz_op.c - libFuzzer harness for gateway/op.c (client messages).
 *
 * Checks, for any bytes: pf_op_parse() stays inside the message; on success the op type is known,
 * subscribe/unsubscribe carry 1..max channels, the name list holds exactly nchannels names and
 * each passes pf_channel_check(); on failure err_code is one of the documented codes, err_msg is
 * NUL-terminated UTF-8 and the error reply built from it is valid JSON; and a larger channel limit
 * changes nothing unless the small one was what failed. */
#include <stdint.h>
#include <string.h>

#include "buf.h"
#include "channel.h"
#include "fuzz_util.h"
#include "json.h"
#include "op.h"

static const char *const pf_err_codes[] = {"bad_json", "bad_request", "unknown_op", "bad_channel",
                                           "too_many_channels"};

static void check_result(const struct pf_op *op, int r, size_t max, int json_ok)
{
    if (r == 0) {
        const char *name;
        size_t n = 0, bytes = 0;

        PF_FUZZ_ASSERT(op->type == PF_OP_SUBSCRIBE || op->type == PF_OP_UNSUBSCRIBE ||
                       op->type == PF_OP_PING);
        PF_FUZZ_ASSERT(json_ok);
        PF_FUZZ_ASSERT(op->nchannels <= max);
        if (op->type != PF_OP_PING)
            PF_FUZZ_ASSERT(op->nchannels >= 1);
        for (name = pf_op_next_name(op, NULL); name; name = pf_op_next_name(op, name)) {
            size_t len;
            PF_FUZZ_ASSERT((const unsigned char *)name >= op->names.data &&
                           (const unsigned char *)name < op->names.data + op->names.len);
            len = strnlen(name, (size_t)(op->names.data + op->names.len -
                                         (const unsigned char *)name));
            PF_FUZZ_ASSERT(name + len < (const char *)op->names.data + op->names.len);
            PF_FUZZ_ASSERT(pf_channel_check(name, len) == NULL);
            bytes += len + 1;
            n++;
        }
        PF_FUZZ_ASSERT(n == op->nchannels);
        if (n)
            PF_FUZZ_ASSERT(bytes == op->names.len);
    } else {
        struct pf_buf reply;
        size_t i, mlen;
        int known = 0;

        PF_FUZZ_ASSERT(r == -1);
        PF_FUZZ_ASSERT(op->err_code != NULL);
        for (i = 0; i < sizeof(pf_err_codes) / sizeof(pf_err_codes[0]); i++)
            known |= strcmp(op->err_code, pf_err_codes[i]) == 0;
        PF_FUZZ_ASSERT(known);
        if (!json_ok)
            PF_FUZZ_ASSERT(strcmp(op->err_code, "bad_json") == 0);
        PF_FUZZ_ASSERT(memchr(op->err_msg, 0, sizeof(op->err_msg)) != NULL);
        mlen = strlen(op->err_msg);
        PF_FUZZ_ASSERT(mlen > 0);
        PF_FUZZ_ASSERT(pf_utf8_valid((const unsigned char *)op->err_msg, mlen));
        /* The gateway sends {"op":"error","code":...,"message":<err_msg as a JSON string>}. */
        pf_buf_init(&reply);
        pf_buf_append_str(&reply, "{\"op\":\"error\",\"code\":\"");
        pf_buf_append_str(&reply, op->err_code);
        pf_buf_append_str(&reply, "\",\"message\":");
        pf_json_append_string(&reply, (const unsigned char *)op->err_msg, mlen);
        pf_buf_append_str(&reply, "}");
        PF_FUZZ_ASSERT(pf_buf_ok(&reply));
        PF_FUZZ_ASSERT(pf_json_valid(reply.data, reply.len));
        pf_buf_free(&reply);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pf_op small, big;
    int json_ok = pf_json_valid(data, size);
    int r_small, r_big;
    size_t big_max = size + 1; /* a message of size bytes cannot name that many channels */

    /* Fresh structs, as the gateway makes one per message. */
    pf_op_init(&small);
    pf_op_init(&big);
    r_small = pf_op_parse(&small, data, size, 3);
    check_result(&small, r_small, 3, json_ok);
    r_big = pf_op_parse(&big, data, size, big_max);
    check_result(&big, r_big, big_max, json_ok);
    if (r_small == 0 || strcmp(small.err_code, "too_many_channels") != 0) {
        /* The limit was never hit, so the larger one must give the very same answer. */
        PF_FUZZ_ASSERT(r_big == r_small);
        if (r_small == 0) {
            PF_FUZZ_ASSERT(big.type == small.type && big.nchannels == small.nchannels);
            PF_FUZZ_ASSERT(big.names.len == small.names.len);
            if (small.names.len)
                PF_FUZZ_ASSERT(memcmp(big.names.data, small.names.data, small.names.len) == 0);
        } else {
            PF_FUZZ_ASSERT(strcmp(big.err_code, small.err_code) == 0);
            PF_FUZZ_ASSERT(strcmp(big.err_msg, small.err_msg) == 0);
        }
    } else {
        PF_FUZZ_ASSERT(r_big == 0 || strcmp(big.err_code, "too_many_channels") != 0);
    }
    pf_op_free(&small);
    pf_op_free(&big);
    return 0;
}
