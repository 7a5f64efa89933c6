/* listener.c - see listener.h. */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

int pf_listener_open(struct pf_listener *l, const char *host, int port)
{
    struct addrinfo hints, *res = NULL;
    char portstr[8];
    int one = 1, fd = -1, rc;

    l->fd = l->spare_fd = -1;
    l->refused = 0;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(portstr, sizeof(portstr), "%d", port);
    rc = getaddrinfo(host[0] ? host : "0.0.0.0", portstr, &hints, &res);
    if (rc) {
        pf_error("listen: cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
        bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 4096))
        goto fail;
    freeaddrinfo(res);
    l->fd = fd;
    l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return 0;
fail:
    pf_error("listen on %s:%d: %s", host[0] ? host : "0.0.0.0", port, strerror(errno));
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return -1;
}

/* Out of descriptors: take the pending connection with the spare slot and close it at once,
 * rather than leave it pending and wake up for it forever. */
static void pf_listener_shed(struct pf_listener *l)
{
    int fd;

    if (l->spare_fd < 0)
        return;
    close(l->spare_fd);
    fd = accept(l->fd, NULL, NULL);
    if (fd >= 0) {
        close(fd);
        if (l->refused++ % 1000 == 0)
            pf_warn("out of file descriptors: refusing connections (%llu so far)",
                    (unsigned long long)l->refused);
    }
    l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

int pf_listener_accept(struct pf_listener *l)
{
    int one = 1, fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE) {
            pf_listener_shed(l);
            l->paused = 1;
        }
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

int pf_listener_resume(struct pf_listener *l)
{
    if (l->spare_fd < 0)
        l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (l->spare_fd < 0)
        return -1; /* still no descriptor to spare: stay paused */
    l->paused = 0;
    return 0;
}

void pf_listener_close(struct pf_listener *l)
{
    if (l->spare_fd >= 0)
        close(l->spare_fd);
    if (l->fd >= 0)
        close(l->fd);
    l->spare_fd = l->fd = -1;
}
