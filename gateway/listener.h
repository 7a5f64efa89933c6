/* listener.h - a shard's listening socket, shared with every other shard and gateway process on
 * the same port through SO_REUSEPORT.
 *
 * lws 4.1 cannot share a port (it never sets SO_REUSEPORT), so each shard opens its own listener
 * here, lws watches it as a raw descriptor, and accepted sockets are adopted into the shard's
 * context. Owns: the listen fd and a spare fd kept for running out of descriptors. Must not:
 * touch connections after handing them to lws. */
#ifndef PF_LISTENER_H
#define PF_LISTENER_H

#include <libwebsockets.h>
#include <stdint.h>

struct pf_listener {
    int fd;
    int spare_fd; /* closed to accept-and-drop when at the fd limit, so poll() does not spin */
    uint64_t refused; /* connections dropped for lack of descriptors */
};

/* Opens host:port (host "" = all IPv4 interfaces) with SO_REUSEPORT; 0 or -1 (errno kept). */
int pf_listener_open(struct pf_listener *l, const char *host, int port);
/* Accepts what is pending (bounded per call) and adopts each socket into vh. */
void pf_listener_accept(struct pf_listener *l, struct lws_vhost *vh);
void pf_listener_close(struct pf_listener *l);

#endif
