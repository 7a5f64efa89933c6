/* Unit tests for batch encoding and frames (gateway/batch.c, gateway/frame.c): the exact bytes
 * that every subscriber receives. */
#include <stdlib.h>

#include "batch.h"
#include "frame.h"
#include "json.h"
#include "pf_test.h"

static void add(struct pf_batch *b, const char *msg, size_t len)
{
    PF_CHECK(pf_batch_add(b, "news", 4, (const unsigned char *)msg, len) == 0);
}

/* Checks the frame is a FIN text frame whose payload is exactly want. */
static void check_frame(struct pf_frame *f, const char *want)
{
    const unsigned char *p = pf_frame_bytes(f);
    size_t wl = strlen(want), hl = wl < 126 ? 2 : (wl < 65536 ? 4 : 10);

    PF_CHECK(f->len == hl + wl);
    PF_CHECK(p[0] == 0x81);
    if (wl < 126)
        PF_CHECK(p[1] == wl);
    else if (wl < 65536)
        PF_CHECK(p[1] == 126 && (size_t)(p[2] << 8 | p[3]) == wl);
    else
        PF_CHECK(p[1] == 127);
    PF_CHECK_MEM(p + hl, f->len - hl, want, wl);
}

int main(void)
{
    struct pf_batch b;
    struct pf_frame *f;
    char *big;
    size_t i;

    pf_batch_init(&b);
    PF_CHECK(pf_batch_finish(&b) == NULL); /* nothing merged, nothing sent */

    /* Order kept; JSON embedded as is; everything else a string. */
    add(&b, "{\"n\":1}", 7);
    add(&b, "hello", 5);
    add(&b, " [1, 2] ", 8);
    add(&b, "42", 2);
    add(&b, "\"quoted\"", 8);
    add(&b, "line\nbreak\t\"q\"\\", 15);
    add(&b, "\x01\x02", 2);
    add(&b, "caf\xc3\xa9 \xe2\x82\xac", 9);
    add(&b, "bad\xff\xfe", 5);
    add(&b, "", 0);
    add(&b, "{\"unterminated\":", 16);
    add(&b, "\"\\u00e9\"", 8);
    PF_CHECK(b.count == 12);
    f = pf_batch_finish(&b);
    PF_CHECK(f != NULL && f->nmsg == 12 && f->refs == 1);
    check_frame(f, "{\"channel\":\"news\",\"messages\":[{\"n\":1},\"hello\", [1, 2] ,42,\"quoted\","
                   "\"line\\nbreak\\t\\\"q\\\"\\\\\",\"\\u0001\\u0002\",\"caf\xc3\xa9 \xe2\x82\xac\","
                   "\"bad\xef\xbf\xbd\xef\xbf\xbd\",\"\",\"{\\\"unterminated\\\":\",\"\\u00e9\"]}");
    pf_frame_release(f);

    /* The batch is reusable and starts afresh. */
    add(&b, "x", 1);
    f = pf_batch_finish(&b);
    check_frame(f, "{\"channel\":\"news\",\"messages\":[\"x\"]}");
    PF_CHECK(f->nmsg == 1);
    pf_frame_release(f);

    /* 16-bit and 64-bit length headers; the envelope {"channel":"news","messages":[...]} is 32 bytes. */
    big = malloc(70000);
    memset(big, 'a', 70000);
    add(&b, big, 200);
    f = pf_batch_finish(&b);
    PF_CHECK(f->len == 4 + 32 + 202);
    PF_CHECK(pf_frame_bytes(f)[1] == 126 && pf_frame_bytes(f)[2] == 0 && pf_frame_bytes(f)[3] == 234);
    pf_frame_release(f);
    add(&b, big, 70000);
    f = pf_batch_finish(&b);
    PF_CHECK(f->len == 10 + 32 + 70002);
    {
        const unsigned char *p = pf_frame_bytes(f);
        uint64_t n = 0;
        for (i = 0; i < 8; i++)
            n = n << 8 | p[2 + i];
        PF_CHECK(p[0] == 0x81 && p[1] == 127 && n == 32 + 70002);
    }
    pf_frame_release(f);
    free(big);

    /* Nesting: 62 levels are embedded as JSON, 63 become a string, so the frame stays within
     * the 64 levels that pf_json_valid accepts. */
    {
        char deep[130];
        int k;
        for (k = 0; k < 62; k++)
            deep[k] = '[', deep[124 - 1 - k] = ']';
        add(&b, deep, 124);
        f = pf_batch_finish(&b);
        PF_CHECK(f->len == 4 + 32 + 124);
        PF_CHECK(pf_frame_bytes(f)[4 + 30] == '[');
        PF_CHECK(pf_json_valid(pf_frame_bytes(f) + 4, f->len - 4));
        pf_frame_release(f);
        for (k = 0; k < 63; k++)
            deep[k] = '[', deep[126 - 1 - k] = ']';
        add(&b, deep, 126);
        f = pf_batch_finish(&b);
        PF_CHECK(pf_frame_bytes(f)[4 + 30] == '"'); /* escaped as a string */
        PF_CHECK(pf_json_valid(pf_frame_bytes(f) + 4, f->len - 4));
        pf_frame_release(f);
    }

    /* Reference counting: shared by three readers, freed by the last (ASan checks the free). */
    f = pf_frame_text("{\"op\":\"pong\"}", 13);
    check_frame(f, "{\"op\":\"pong\"}");
    pf_frame_ref(f, 2);
    PF_CHECK(f->refs == 3);
    pf_frame_release(f);
    pf_frame_release(f);
    PF_CHECK(f->refs == 1);
    pf_frame_release(f);
    pf_batch_free(&b);
    return pf_test_summary();
}
