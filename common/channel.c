/* channel.c - see channel.h. */
#include "channel.h"

static int pf_channel_byte_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.' || c == ':' || c == '@' || c == '/';
}

const char *pf_channel_check(const char *name, size_t len)
{
    size_t i;

    if (!name || len == 0)
        return "channel name is empty";
    if (len > PF_CHANNEL_MAX)
        return "channel name is longer than 128 bytes";
    for (i = 0; i < len; i++)
        if (!pf_channel_byte_ok((unsigned char)name[i]))
            return "channel name may only contain A-Z a-z 0-9 _ - . : @ /";
    return NULL;
}
