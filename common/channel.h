/* channel.h - the one rule for channel names, shared by gateway and publisher.
 *
 * A channel name is 1-128 bytes of A-Z a-z 0-9 _ - . : @ /. Glob characters are never special:
 * a channel is always a literal SUBSCRIBE. Owns: that rule. Must not: know about prefixes. */
#ifndef PF_CHANNEL_H
#define PF_CHANNEL_H

#include <stddef.h>

#define PF_CHANNEL_MAX 128

/* Returns NULL when valid, else a static human-readable reason. */
const char *pf_channel_check(const char *name, size_t len);

#endif
