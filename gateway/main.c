/* main.c - push-gateway: wires the configuration, the shards and the Redis link together.
 *
 * The main thread runs the libevent loop that carries the Redis link and the signals; each shard
 * runs its own epoll loop on its own thread. Owns: start-up order and shutdown. Must not: hold any
 * state beyond the lifetime of main(). */
#include <event2/event.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "redis_link.h"
#include "shard.h"

struct pf_gateway {
    struct pf_config cfg;
    struct event_base *base;
    struct pf_link link;
    struct pf_shard *shards;
    struct pf_shard *shard_ptrs[64];
    struct event *sigint_ev, *sigterm_ev, *drain_ev;
    struct timespec drain_deadline;
};

static uint64_t pf_open_connections(const struct pf_gateway *gw)
{
    uint64_t n = 0;
    int i;

    for (i = 0; i < gw->cfg.threads; i++)
        n += __atomic_load_n(&gw->shards[i].stats.connections, __ATOMIC_RELAXED);
    return n;
}

/* Polls the shards until every connection is closed or --drain-ms has passed. */
static void pf_on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct pf_gateway *gw = arg;
    struct timespec now;
    struct timeval tick = {0, 20000};
    uint64_t left = pf_open_connections(gw);

    clock_gettime(CLOCK_MONOTONIC, &now);
    if (left == 0 || now.tv_sec > gw->drain_deadline.tv_sec ||
        (now.tv_sec == gw->drain_deadline.tv_sec && now.tv_nsec >= gw->drain_deadline.tv_nsec)) {
        if (left)
            pf_warn("drain: %llu connections still open after %d ms; closing them",
                    (unsigned long long)left, gw->cfg.drain_ms);
        event_base_loopbreak(gw->base);
        return;
    }
    evtimer_add(gw->drain_ev, &tick);
}

/* Raises the soft fd limit to the hard one: every connection is a descriptor. */
static rlim_t pf_raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl))
        return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

static void pf_on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct pf_gateway *gw = arg;
    struct timeval now = {0, 0};

    if (gw->drain_ev) {
        pf_info("second signal: stopping now");
        event_base_loopbreak(gw->base);
        return;
    }
    pf_info("%s: draining %llu connections (up to %d ms)", sig == SIGINT ? "SIGINT" : "SIGTERM",
            (unsigned long long)pf_open_connections(gw), gw->cfg.drain_ms);
    clock_gettime(CLOCK_MONOTONIC, &gw->drain_deadline);
    gw->drain_deadline.tv_sec += gw->cfg.drain_ms / 1000;
    gw->drain_deadline.tv_nsec += (long)(gw->cfg.drain_ms % 1000) * 1000000L;
    if (gw->drain_deadline.tv_nsec >= 1000000000L) {
        gw->drain_deadline.tv_sec++;
        gw->drain_deadline.tv_nsec -= 1000000000L;
    }
    pf_link_drain(&gw->link);
    gw->drain_ev = evtimer_new(gw->base, pf_on_drain_tick, gw);
    if (!gw->drain_ev) {
        event_base_loopbreak(gw->base);
        return;
    }
    evtimer_add(gw->drain_ev, &now);
}

static int pf_gateway_start(struct pf_gateway *gw)
{
    int i;

    gw->shards = calloc((size_t)gw->cfg.threads, sizeof(*gw->shards));
    if (!gw->shards)
        return -1;
    for (i = 0; i < gw->cfg.threads; i++) {
        gw->shard_ptrs[i] = &gw->shards[i];
        if (pf_shard_init(&gw->shards[i], i, &gw->cfg, &gw->link))
            return -1;
    }
    for (i = 0; i < gw->cfg.threads; i++) {
        gw->shards[i].all = gw->shard_ptrs;
        gw->shards[i].nshards = gw->cfg.threads;
    }
    if (pf_link_init(&gw->link, &gw->cfg, gw->base, gw->shard_ptrs, gw->cfg.threads))
        return -1;
    for (i = 0; i < gw->cfg.threads; i++)
        if (pf_shard_start(&gw->shards[i]))
            return -1;
    gw->sigint_ev = evsignal_new(gw->base, SIGINT, pf_on_signal, gw);
    gw->sigterm_ev = evsignal_new(gw->base, SIGTERM, pf_on_signal, gw);
    if (!gw->sigint_ev || !gw->sigterm_ev || evsignal_add(gw->sigint_ev, NULL) ||
        evsignal_add(gw->sigterm_ev, NULL))
        return -1;
    pf_link_start(&gw->link);
    return 0;
}

static void pf_gateway_stop(struct pf_gateway *gw)
{
    int i;

    if (gw->shards) {
        for (i = 0; i < gw->cfg.threads; i++)
            pf_shard_stop(&gw->shards[i]);
        for (i = 0; i < gw->cfg.threads; i++)
            pf_shard_destroy(&gw->shards[i]);
    }
    pf_link_destroy(&gw->link);
    free(gw->shards);
    if (gw->sigint_ev)
        event_free(gw->sigint_ev);
    if (gw->sigterm_ev)
        event_free(gw->sigterm_ev);
    if (gw->drain_ev)
        event_free(gw->drain_ev);
    if (gw->base)
        event_base_free(gw->base);
}

int main(int argc, char **argv)
{
    struct pf_gateway gw;
    char redis_desc[400];
    rlim_t nofile;
    int rc;

    memset(&gw, 0, sizeof(gw));
    rc = pf_config_parse(&gw.cfg, argc, argv);
    if (rc)
        return rc > 0 ? 0 : 2;
    pf_log_set_ident("push-gateway");
    pf_log_set_level(gw.cfg.log_level);
    pf_log_set_json(gw.cfg.log_json);
    signal(SIGPIPE, SIG_IGN);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    nofile = pf_raise_nofile();
    /* The link's inbox is woken from shard threads with event_active(). */
    if (evthread_use_pthreads() || !(gw.base = event_base_new()) ||
        event_base_priority_init(gw.base, 3) || pf_gateway_start(&gw)) {
        pf_error("start-up failed");
        pf_gateway_stop(&gw);
        return 1;
    }
    pf_redis_url_describe(&gw.cfg.redis, redis_desc, sizeof(redis_desc));
    pf_info("push-gateway %s listening on %s:%d (ws path /ws), redis %s, prefix \"%s\", "
            "%d threads, merge window %d ms, capacity %llu connections (RLIMIT_NOFILE %llu)",
            PF_VERSION, gw.cfg.listen_host[0] ? gw.cfg.listen_host : "0.0.0.0",
            gw.cfg.listen_port, redis_desc, gw.cfg.prefix, gw.cfg.threads, gw.cfg.merge_ms,
            (unsigned long long)(nofile > 64 ? nofile - 64 : 0), (unsigned long long)nofile);
    event_base_dispatch(gw.base);
    pf_gateway_stop(&gw);
    pf_info("stopped");
    return 0;
}
