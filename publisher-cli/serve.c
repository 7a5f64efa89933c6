/* serve.c - see serve.h. Everything runs on one libevent base: evhttp, the hiredis async
 * link, the signals and the drain deadline, so nothing needs a lock and nothing may block. */
#include "serve.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/http.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "api_key.h"
#include "async_link.h"
#include "http_api.h"
#include "log.h"
#include "opts.h"

#define PF_HTTP_IDLE_TIMEOUT_S 30
#define PF_HTTP_MAX_HEADERS    16384
#define PF_HTTP_ALL_METHODS    0x1ff /* GET..PATCH: we answer 405 ourselves, as JSON */

struct pf_server {
    struct pf_pub_opts opts;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    struct pf_alink *link;
    struct pf_api api;
    struct event *sig_term, *sig_int, *drain_ev;
    int draining;
};

static int pf_serve_key(struct pf_server *s, const char *key, const char *key_file)
{
    const char *err = NULL;

    if (key && key_file) {
        pf_error("use --api-key or --api-key-file, not both");
        return PF_EXIT_USAGE;
    }
    if (key && pf_api_key_dup(key, &s->opts.api_key, &s->opts.api_key_len, &err)) {
        pf_error("bad --api-key: %s", err);
        return PF_EXIT_USAGE;
    }
    if (key_file && pf_api_key_load(key_file, &s->opts.api_key, &s->opts.api_key_len, &err)) {
        pf_error("bad --api-key-file %s: %s", key_file, err);
        return PF_EXIT_USAGE;
    }
    return PF_EXIT_OK;
}

static int pf_serve_opt(struct pf_server *s, int c, const char **key, const char **key_file)
{
    const char *err = NULL;

    switch (c) {
    case 'l':
        if (pf_opts_parse_listen(&s->opts, optarg, &err) == 0)
            return PF_EXIT_OK;
        pf_error("%s", err);
        return PF_EXIT_USAGE;
    case 'm':
        if (pf_opts_parse_size(optarg, &s->opts.max_body) == 0)
            return PF_EXIT_OK;
        pf_error("--max-body-bytes must be a number from 1 to %lu", PF_PUB_MAX_BODY_LIMIT);
        return PF_EXIT_USAGE;
    case 'r': pf_opts_set_redis(&s->opts, optarg); return PF_EXIT_OK;
    case 'p': pf_opts_set_prefix(&s->opts, optarg); return PF_EXIT_OK;
    case 'k': *key = optarg; return PF_EXIT_OK;
    case 'f': *key_file = optarg; return PF_EXIT_OK;
    case 'h': pf_opts_usage(); return PF_EXIT_DONE;
    case 'V': pf_opts_version(); return PF_EXIT_DONE;
    default: return PF_EXIT_USAGE; /* '?' is reported by the caller */
    }
}

static int pf_serve_args(struct pf_server *s, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},       {"redis", required_argument, NULL, 'r'},
        {"prefix", required_argument, NULL, 'p'},       {"api-key", required_argument, NULL, 'k'},
        {"max-body-bytes", required_argument, NULL, 'm'},
        {"api-key-file", required_argument, NULL, 'f'}, {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},            {NULL, 0, NULL, 0}};
    const char *key = NULL, *key_file = NULL;
    int c, rc;

    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == '?') {
            pf_error("bad option or missing value: %s (see --help)", argv[optind - 1]);
            return PF_EXIT_USAGE;
        }
        if ((rc = pf_serve_opt(s, c, &key, &key_file)) != PF_EXIT_OK)
            return rc;
    }
    if (optind < argc) {
        pf_error("serve takes no arguments, got \"%s\" (see --help)", argv[optind]);
        return PF_EXIT_USAGE;
    }
    rc = pf_opts_finish(&s->opts);
    return rc ? rc : pf_serve_key(s, key, key_file);
}

static void pf_serve_exit(void *arg)
{
    struct pf_server *s = arg;

    event_base_loopexit(s->base, NULL);
}

static void pf_serve_on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct pf_server *s = arg;

    pf_warn("shutdown: %u request(s) still unanswered and %u unsent after %d ms; exiting",
            s->api.flight.open, s->api.flight.unflushed, PF_DRAIN_MS);
    event_base_loopexit(s->base, NULL);
}

static void pf_serve_on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct pf_server *s = arg;
    struct timeval tv = {PF_DRAIN_MS / 1000, (suseconds_t)(PF_DRAIN_MS % 1000) * 1000};

    if (s->draining) {
        pf_warn("signal %d again: exiting without waiting", (int)sig);
        event_base_loopexit(s->base, NULL);
        return;
    }
    s->draining = 1;
    /* Close the listener before saying so: whoever reads the log may connect right away. */
    evhttp_del_accept_socket(s->http, s->sock);
    s->sock = NULL;
    pf_info("signal %d: no longer accepting; finishing %u request(s) in flight", (int)sig,
            s->api.flight.open);
    evtimer_add(s->drain_ev, &tv);
    pf_flight_drain(&s->api.flight, pf_serve_exit, s);
}

static void pf_serve_configure(struct pf_server *s)
{
    evhttp_set_max_body_size(s->http, (ev_ssize_t)s->opts.max_body);
    evhttp_set_max_headers_size(s->http, PF_HTTP_MAX_HEADERS);
    evhttp_set_timeout(s->http, PF_HTTP_IDLE_TIMEOUT_S);
    evhttp_set_allowed_methods(s->http, PF_HTTP_ALL_METHODS);
    /* Read an oversized body to its end before answering 413: closing at once would reset
     * the connection under a client still sending, and it would never see the 413. */
    evhttp_set_flags(s->http, EVHTTP_SERVER_LINGERING_CLOSE);
    evhttp_set_gencb(s->http, pf_api_handle, &s->api);
}

/* The startup line reports the bound port, which differs from --listen when that says 0. */
static void pf_serve_announce(const struct pf_server *s)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int port = s->opts.listen_port;
    const char *v6 = strchr(s->opts.listen_host, ':') ? "[" : "";

    memset(&ss, 0, sizeof(ss));
    if (getsockname(evhttp_bound_socket_get_fd(s->sock), (struct sockaddr *)&ss, &sl) == 0)
        port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                              : ((struct sockaddr_in *)&ss)->sin_port);
    pf_info("push-publish %s listening on %s%s%s:%d (redis %s, prefix \"%s\", max body %zu "
            "bytes, API key %s)",
            PF_VERSION, v6, s->opts.listen_host, *v6 ? "]" : "", port, s->opts.redis_desc,
            s->opts.prefix, s->opts.max_body, s->opts.api_key ? "required" : "not required");
}

static int pf_serve_setup(struct pf_server *s)
{
    s->base = event_base_new();
    if (!s->base)
        goto fail;
    s->link = pf_alink_new(s->base, &s->opts.redis, s->opts.redis_desc);
    s->http = evhttp_new(s->base);
    s->sig_term = evsignal_new(s->base, SIGTERM, pf_serve_on_signal, s);
    s->sig_int = evsignal_new(s->base, SIGINT, pf_serve_on_signal, s);
    s->drain_ev = evtimer_new(s->base, pf_serve_on_drain_timeout, s);
    if (!s->link || !s->http || !s->sig_term || !s->sig_int || !s->drain_ev)
        goto fail;
    pf_api_init(&s->api, &s->opts, s->link);
    pf_serve_configure(s);
    s->sock = evhttp_bind_socket_with_handle(s->http, s->opts.listen_host,
                                             (ev_uint16_t)s->opts.listen_port);
    if (!s->sock) {
        pf_error("cannot listen on %s:%d: %s", s->opts.listen_host, s->opts.listen_port,
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        return PF_EXIT_FAIL;
    }
    if (evsignal_add(s->sig_term, NULL) || evsignal_add(s->sig_int, NULL))
        goto fail;
    return PF_EXIT_OK;
fail:
    pf_error("cannot set up the server: out of memory");
    return PF_EXIT_FAIL;
}

/* The link goes first: freeing it answers requests still waiting on Redis, and their
 * connections must still exist for that. */
static void pf_serve_teardown(struct pf_server *s)
{
    pf_alink_free(s->link);
    if (s->http)
        evhttp_free(s->http);
    if (s->sig_term)
        event_free(s->sig_term);
    if (s->sig_int)
        event_free(s->sig_int);
    if (s->drain_ev)
        event_free(s->drain_ev);
    if (s->base)
        event_base_free(s->base);
    pf_opts_free(&s->opts);
}

int pf_serve_main(int argc, char **argv)
{
    struct pf_server s;
    int rc;

    memset(&s, 0, sizeof(s));
    pf_opts_init(&s.opts);
    /* A client that hangs up mid-answer must cost one connection, not the process. */
    signal(SIGPIPE, SIG_IGN);
    rc = pf_serve_args(&s, argc, argv);
    if (rc)
        goto done;
    rc = pf_serve_setup(&s);
    if (rc)
        goto done;
    pf_alink_start(s.link);
    pf_serve_announce(&s);
    if (event_base_dispatch(s.base) < 0) {
        pf_error("event loop failed");
        rc = PF_EXIT_FAIL;
    }
    pf_info("stopped");
done:
    pf_serve_teardown(&s);
    return rc == PF_EXIT_DONE ? PF_EXIT_OK : rc;
}
