/* Unit tests for the channel-name rule (common/channel.c). */
#include "channel.h"
#include "pf_test.h"

static int valid(const char *s) { return pf_channel_check(s, strlen(s)) == NULL; }

int main(void)
{
    char name[200];
    int c;

    PF_CHECK(valid("a"));
    PF_CHECK(valid("news"));
    PF_CHECK(valid("user:42/inbox@eu-west_1.v2"));
    PF_CHECK(valid("ABCxyz019_-.:@/"));
    PF_CHECK(!valid(""));
    PF_CHECK(!valid("a b"));
    PF_CHECK(!valid("news*"));  /* glob characters are never special: they are refused */
    PF_CHECK(!valid("news?"));
    PF_CHECK(!valid("[ab]"));
    PF_CHECK(!valid("caf\xc3\xa9"));
    PF_CHECK(!valid("tab\there"));
    PF_CHECK(pf_channel_check("a\0b", 3) != NULL); /* NUL inside is refused, not truncated */
    PF_CHECK(pf_channel_check(NULL, 0) != NULL);
    memset(name, 'x', sizeof(name));
    PF_CHECK(pf_channel_check(name, 128) == NULL);
    PF_CHECK_STR(pf_channel_check(name, 129), "channel name is longer than 128 bytes");
    PF_CHECK_STR(pf_channel_check("", 0), "channel name is empty");
    /* Every byte outside the allowed set is refused, one by one. */
    for (c = 0; c < 256; c++) {
        char one = (char)c;
        int allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '-' || c == '.' || c == ':' || c == '@' || c == '/';
        PF_CHECK((pf_channel_check(&one, 1) == NULL) == allowed);
    }
    return pf_test_summary();
}
