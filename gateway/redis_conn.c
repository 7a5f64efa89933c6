/* redis_conn.c - see redis_conn.h. */
#include "redis_conn.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

struct pf_rcmd {
    struct pf_rcmd *next;
    void *priv;
    uint64_t sent_us;
};

struct pf_rconn {
    struct bufferevent *bev;
    redisReader *reader;
    struct pf_rconn_handlers h;
    void *ctx;
    struct pf_rcmd *head, *tail;
    int closing;
};

static uint64_t pf_rc_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void pf_rconn_free(struct pf_rconn *rc)
{
    if (!rc)
        return;
    while (rc->head) {
        struct pf_rcmd *c = rc->head;
        rc->head = c->next;
        free(c);
    }
    if (rc->bev)
        bufferevent_free(rc->bev);
    if (rc->reader)
        redisReaderFree(rc->reader);
    free(rc);
}

void pf_rconn_close(struct pf_rconn *rc)
{
    if (!rc || rc->closing)
        return;
    rc->closing = 1;
    if (rc->bev)
        bufferevent_disable(rc->bev, EV_READ | EV_WRITE);
}

static void pf_rconn_lost(struct pf_rconn *rc, const char *why)
{
    if (rc->closing)
        return;
    rc->h.down(rc->ctx, why);
}

static int pf_rconn_is_message(const redisReply *r)
{
    const redisReply *k;

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3)
        return 0;
    k = r->element[0];
    return k->type == REDIS_REPLY_STRING && k->len == 7 && !memcmp(k->str, "message", 7);
}

static void pf_rconn_dispatch(struct pf_rconn *rc, redisReply *r)
{
    struct pf_rcmd *c;

    if (pf_rconn_is_message(r)) {
        rc->h.push(rc->ctx, r);
        return;
    }
    c = rc->head;
    if (!c) {
        /* Redis speaks only when asked, pushes aside: an unasked reply is an error from the
         * server about the connection itself (e.g. max clients reached). */
        pf_rconn_lost(rc, r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply from Redis");
        return;
    }
    rc->head = c->next;
    if (!rc->head)
        rc->tail = NULL;
    rc->h.reply(rc->ctx, c->priv, r);
    free(c);
}

static void pf_rconn_read(struct bufferevent *bev, void *arg)
{
    struct pf_rconn *rc = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    char chunk[16384];
    int n;

    while (!rc->closing && (n = evbuffer_remove(in, chunk, sizeof(chunk))) > 0) {
        void *reply;
        if (redisReaderFeed(rc->reader, chunk, (size_t)n) != REDIS_OK) {
            pf_rconn_lost(rc, "Redis protocol error");
            return;
        }
        while (!rc->closing) {
            if (redisReaderGetReply(rc->reader, &reply) != REDIS_OK) {
                pf_rconn_lost(rc, "Redis protocol error");
                return;
            }
            if (!reply)
                break;
            pf_rconn_dispatch(rc, reply);
            freeReplyObject(reply);
        }
    }
}

static void pf_rconn_event(struct bufferevent *bev, short what, void *arg)
{
    struct pf_rconn *rc = arg;
    char why[160];

    if (what & BEV_EVENT_CONNECTED) {
        evutil_socket_t fd = bufferevent_getfd(bev);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* no-op on unix sockets */
        rc->h.up(rc->ctx);
        return;
    }
    if (what & BEV_EVENT_EOF)
        snprintf(why, sizeof(why), "connection closed by Redis");
    else if (what & BEV_EVENT_TIMEOUT)
        snprintf(why, sizeof(why), "timed out");
    else
        snprintf(why, sizeof(why), "%s", strerror(EVUTIL_SOCKET_ERROR()));
    pf_rconn_lost(rc, why);
}

/* Resolves the address (numeric hosts never block; names use the system resolver). */
static int pf_rconn_addr(const struct pf_redis_url *u, struct sockaddr_storage *ss, int *sl)
{
    struct addrinfo hints, *res = NULL;
    char port[8];

    memset(ss, 0, sizeof(*ss));
    if (u->path[0]) {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        un->sun_family = AF_UNIX;
        snprintf(un->sun_path, sizeof(un->sun_path), "%s", u->path);
        *sl = (int)sizeof(*un);
        return 0;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%d", u->port);
    if (getaddrinfo(u->host, port, &hints, &res) || !res)
        return -1;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *sl = (int)res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

struct pf_rconn *pf_rconn_connect(struct event_base *base, const struct pf_redis_url *u,
                                  const struct pf_rconn_handlers *h, void *ctx)
{
    struct pf_rconn *rc = calloc(1, sizeof(*rc));
    struct sockaddr_storage ss;
    struct timeval connect_timeout = {5, 0};
    int sl;

    if (!rc)
        return NULL;
    rc->h = *h;
    rc->ctx = ctx;
    rc->reader = redisReaderCreate();
    rc->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!rc->reader || !rc->bev)
        goto fail;
    bufferevent_setcb(rc->bev, pf_rconn_read, NULL, pf_rconn_event, rc);
    bufferevent_set_timeouts(rc->bev, NULL, &connect_timeout);
    bufferevent_enable(rc->bev, EV_READ | EV_WRITE);
    if (pf_rconn_addr(u, &ss, &sl) || bufferevent_socket_connect(rc->bev, (struct sockaddr *)&ss, sl))
        goto fail;
    return rc;
fail:
    pf_rconn_free(rc);
    return NULL;
}

int pf_rconn_command(struct pf_rconn *rc, void *priv, int argc, const char *const *argv,
                     const size_t *lens)
{
    struct evbuffer *out = bufferevent_get_output(rc->bev);
    struct pf_rcmd *c;
    int i;

    if (rc->closing || !(c = calloc(1, sizeof(*c))))
        return -1;
    evbuffer_add_printf(out, "*%d\r\n", argc);
    for (i = 0; i < argc; i++) {
        evbuffer_add_printf(out, "$%zu\r\n", lens[i]);
        evbuffer_add(out, argv[i], lens[i]);
        evbuffer_add(out, "\r\n", 2);
    }
    c->priv = priv;
    c->sent_us = pf_rc_now_us();
    if (rc->tail)
        rc->tail->next = c;
    else
        rc->head = c;
    rc->tail = c;
    return 0;
}

uint64_t pf_rconn_oldest_sent_us(const struct pf_rconn *rc)
{
    return rc->head ? rc->head->sent_us : 0;
}
