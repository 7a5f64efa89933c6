/* listener.h - a shard's listening socket, shared with every other shard and gateway process on
 * the same port through SO_REUSEPORT, so the kernel spreads connections over them.
 *
 * Owns: the listen fd and a spare fd kept for running out of descriptors. Must not: touch
 * connections once accepted. */
#ifndef PF_LISTENER_H
#define PF_LISTENER_H

#include <stdint.h>

struct pf_listener {
    int fd;
    int spare_fd; /* closed to accept-and-drop when at the fd limit, so poll() does not spin */
    uint64_t refused; /* connections dropped for lack of descriptors */
    int paused;       /* out of descriptors: the owner stops polling the listener for a while */
};

/* Opens host:port (host "" = all IPv4 interfaces) with SO_REUSEPORT; 0 or -1 (errno kept). */
int pf_listener_open(struct pf_listener *l, const char *host, int port);
/* Accepts one pending connection (non-blocking, TCP_NODELAY); -1 when none is pending. At the
 * fd limit it drops one pending connection and sets paused: the caller must stop watching the
 * listener until descriptors may be free again (pf_listener_resume), or a level-triggered
 * poller would spin on it. */
int pf_listener_accept(struct pf_listener *l);
/* Gets the spare descriptor back; 0 when the listener may be watched again. */
int pf_listener_resume(struct pf_listener *l);
void pf_listener_close(struct pf_listener *l);

#endif
