/* loadgen.c - owns the WebSocket load generator of bench/ (binary `loadgen`).
 *
 * One thread, one epoll set, non-blocking sockets, no thread per connection. Opens -n WebSocket
 * connections to the gateway (optionally from rotating source addresses 127.0.0.2 ...), waits for
 * each one's {"op":"subscribed"} ack, answers PINGs with masked PONGs, parses every server frame
 * (7/16/64-bit lengths, many frames per read, frames split across reads), counts frames and
 * messages, and records publish->receive latency (now - "t", both CLOCK_REALTIME microseconds, "t"
 * put in each message by pubload) in a log-linear histogram (~1.6 % resolution).
 *
 * Prints a status line every second on stderr and a JSON summary at the end (stdout and --out).
 * SIGUSR1 writes a snapshot summary to --out (or stdout) and then resets the per-phase counters
 * (frames, messages, bytes, latency), so a runner can cut one long connection run into phases;
 * SIGUSR2 writes the same snapshot without resetting anything (a peek).
 * SIGINT / SIGTERM end the run early with the final summary.
 *
 * Soak mode (bench/soak.sh): --channels N [--subs K] subscribes connection i (global index
 * --conn-offset + slot) to channels bench<(i*K+j) % N>, j < K, in the URL or with a subscribe op
 * (--sub-mode); --churn P closes P % of the connections per second with a normal close handshake
 * (1000, then wait for the gateway's close and its EOF) and opens replacements that subscribe
 * again; --check-seq checks pubload --seq-per-channel's per-channel "s" numbers on every
 * connection: after the ack, the first message of a channel sets the baseline and each next one
 * must be exactly previous + 1 (more = gap, the missing ones counted; less or equal = duplicate or
 * reorder); --expect-last FILE (pubload's --out) adds a tail check at the end.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LG_MAX_CONNS 19000
#define LG_SCRATCH (256 * 1024)
#define LG_MAX_FRAME (64u * 1024 * 1024)
#define LG_HIST_N (128 + 64 * 50)
#define LG_MAX_CODE 5000
#define LG_EVENTS 1024

enum lg_state { LG_IDLE, LG_CONNECTING, LG_HANDSHAKE, LG_OPEN, LG_SUBSCRIBED, LG_CLOSING, LG_CLOSE_WAIT,
                LG_CLOSED };

#define LG_MAX_SUBS 16
#define LG_CLOSE_TIMEOUT_US 5000000u
#define LG_REOPEN_DELAY_US 50000u

struct lg_conn {
    int fd;
    uint8_t state;
    uint8_t *pbuf; /* bytes of an incomplete frame (or of the HTTP response) */
    uint32_t plen, pcap;
    uint32_t gen;     /* how many times this slot was opened */
    uint64_t t_state; /* CLOCK_MONOTONIC us of the last close / close request */
    uint64_t ack_rt;  /* CLOCK_REALTIME us when the subscribed ack arrived */
};

struct lg_hist {
    uint64_t counts[LG_HIST_N];
    uint64_t total, max;
};

struct lg_opts {
    char host[256];
    int port;
    char path[1024];
    int n, src_ips, max_pending, quiet;
    double connect_rate, duration;
    const char *out;
    /* soak mode */
    int channels, subs, conn_offset, sub_mode, check_seq;
    double churn, churn_stop;
    char chan_prefix[64];
    const char *expect_last;
};

enum { LG_SUB_URL, LG_SUB_OP, LG_SUB_MIXED };

struct lg_seq {
    uint64_t checked, gaps, gap_events, dups, dup_events, wrong_channel, unknown_channel, pre_ack,
        parse_errors, after_close_sent;
    uint64_t tail_checked, tail_ok, tail_missing, tail_missing_conns, tail_none, tail_skipped;
};

struct lg_churn {
    uint64_t close_sent, close_replies, close_reply_bad_code, closed_clean, close_reset, close_timeouts, reopened,
        lost; /* lost = closes we did not ask for (close frame, EOF, reset) on open connections */
};

struct lg_phase {
    uint64_t frames, messages, bytes, pings, t_start;
    struct lg_hist hist;
};

struct lg_errors {
    uint64_t socket, connect, handshake, reset, eof, protocol, send, close_frames;
};

struct lg {
    struct lg_opts o;
    struct lg_conn *conns;
    struct epoll_event evs[LG_EVENTS];
    int ep, sigfd, snapshot_no, stop;
    struct sockaddr_in dst;
    int started, pending, open, subscribed, subscribed_peak, reached, handshakes;
    uint64_t t0, t_last_hs, t_all_sub, last_status_us;
    uint64_t last_msgs, last_frames, last_hs;
    struct lg_errors err;
    uint64_t closes[LG_MAX_CODE + 1]; /* by close code; [LG_MAX_CODE] holds any other */
    struct lg_phase ph;
    uint64_t rng;
    char req[1536];
    size_t req_len;
    /* soak mode */
    int64_t *last;  /* [slot * subs + j]: last seq seen, -1 = none yet */
    int *reopen;    /* FIFO of slots to open again (churn) */
    int ro_head, ro_len, closing;
    double churn_due;
    uint64_t t_churn;
    struct lg_seq seq;
    struct lg_churn ch;
    uint8_t scratch[LG_SCRATCH];
};

/* ---- time, histogram ---------------------------------------------------------------------- */

static uint64_t lg_now_us(clockid_t clk)
{
    struct timespec ts;

    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t lg_mono(void) { return lg_now_us(CLOCK_MONOTONIC); }

static unsigned lg_hist_idx(uint64_t v)
{
    unsigned msb, shift, idx;

    if (v < 128)
        return (unsigned)v;
    msb = 63u - (unsigned)__builtin_clzll(v);
    shift = msb - 6u;
    idx = 128u + (shift - 1u) * 64u + (unsigned)((v >> shift) - 64u);
    return idx < LG_HIST_N ? idx : LG_HIST_N - 1;
}

/* Highest value that falls into bucket idx. */
static uint64_t lg_hist_val(unsigned idx)
{
    uint64_t shift, sub;

    if (idx < 128)
        return idx;
    shift = (idx - 128u) / 64u + 1u;
    sub = (idx - 128u) % 64u + 64u;
    return ((sub + 1u) << shift) - 1u;
}

static void lg_hist_add(struct lg_hist *h, uint64_t v)
{
    h->counts[lg_hist_idx(v)]++;
    h->total++;
    if (v > h->max)
        h->max = v;
}

static uint64_t lg_hist_pct(const struct lg_hist *h, double q)
{
    uint64_t want, acc = 0;
    unsigned i;

    if (!h->total)
        return 0;
    want = (uint64_t)(q * (double)h->total + 0.5);
    if (want < 1)
        want = 1;
    for (i = 0; i < LG_HIST_N; i++) {
        acc += h->counts[i];
        if (acc >= want)
            return lg_hist_val(i) < h->max ? lg_hist_val(i) : h->max;
    }
    return h->max;
}

/* ---- options ------------------------------------------------------------------------------ */

static void lg_usage(FILE *f)
{
    fprintf(f,
            "usage: loadgen [options]\n"
            "Opens N WebSocket connections to a push-gateway, waits for their subscribed acks and\n"
            "measures frames, messages and publish->receive latency (from the \"t\" field that pubload\n"
            "puts into each message, CLOCK_REALTIME us; both tools must run on the same host).\n\n"
            "  --host HOST          gateway address (default 127.0.0.1)\n"
            "  --port PORT          gateway port (default 8080)\n"
            "  --path PATH          request path (default /ws?channels=bench)\n"
            "  -n N                 connections (default 1000, at most %d per process)\n"
            "  --src-ips N          bind source addresses 127.0.0.2 .. 127.0.0.(1+N) in turn\n"
            "                       (default 0: let the kernel choose)\n"
            "  --connect-rate R     new connections per second (default 0: as fast as possible)\n"
            "  --max-pending N      at most N handshakes in flight (default 1000)\n"
            "  --duration S         run for S seconds, then print the summary (default 30)\n"
            "  --out FILE           also write the JSON summary (and SIGUSR1 snapshots) to FILE\n"
            "  --quiet              no per-second status line\n"
            "Soak mode (see bench/soak.sh):\n"
            "  --channels N         subscribe to pubload's channels: bench (N = 1) or bench0 ..\n"
            "                       bench<N-1>; connection i gets bench<(i*K+j) %% N>, j < K\n"
            "  --subs K             channels per connection (default 1, at most %d)\n"
            "  --conn-offset O      global index of this process's first connection (default 0)\n"
            "  --chan-prefix STR    channel name stem (default bench)\n"
            "  --sub-mode M         url (?channels=..., default), op (subscribe op after the\n"
            "                       101) or mixed (alternating)\n"
            "  --churn P            each second close P %% of -n with a normal close (1000) and\n"
            "                       open replacements that subscribe again (default 0)\n"
            "  --churn-stop S       stop churning S seconds after the start (default: never)\n"
            "  --check-seq          check pubload --seq-per-channel sequence numbers: gaps and\n"
            "                       duplicates per connection and channel, after the ack\n"
            "  --expect-last FILE   pubload --out summary read at the end: connections acked\n"
            "                       before a channel's last publish must have seen its last seq\n"
            "Signals: SIGUSR1 writes a snapshot to --out and resets frames/messages/latency;\n"
            "SIGUSR2 writes a snapshot without resetting;\n"
            "SIGINT/SIGTERM stop early and print the summary.\n",
            LG_MAX_CONNS, LG_MAX_SUBS);
}

enum { LG_OPT_HOST = 256, LG_OPT_PORT, LG_OPT_PATH, LG_OPT_SRC, LG_OPT_RATE, LG_OPT_PENDING,
       LG_OPT_DUR, LG_OPT_OUT, LG_OPT_QUIET, LG_OPT_HELP, LG_OPT_CHANS, LG_OPT_SUBS, LG_OPT_OFFSET,
       LG_OPT_CPREFIX, LG_OPT_SUBMODE, LG_OPT_CHURN, LG_OPT_CHURN_STOP, LG_OPT_CHECK, LG_OPT_EXPECT };

static void lg_opt_one(struct lg_opts *o, int opt, const char *arg)
{
    switch (opt) {
    case LG_OPT_HOST: snprintf(o->host, sizeof(o->host), "%s", arg); break;
    case LG_OPT_PORT: o->port = atoi(arg); break;
    case LG_OPT_PATH: snprintf(o->path, sizeof(o->path), "%s", arg); break;
    case 'n': o->n = atoi(arg); break;
    case LG_OPT_SRC: o->src_ips = atoi(arg); break;
    case LG_OPT_RATE: o->connect_rate = atof(arg); break;
    case LG_OPT_PENDING: o->max_pending = atoi(arg); break;
    case LG_OPT_DUR: o->duration = atof(arg); break;
    case LG_OPT_OUT: o->out = arg; break;
    case LG_OPT_QUIET: o->quiet = 1; break;
    case LG_OPT_CHANS: o->channels = atoi(arg); break;
    case LG_OPT_SUBS: o->subs = atoi(arg); break;
    case LG_OPT_OFFSET: o->conn_offset = atoi(arg); break;
    case LG_OPT_CPREFIX: snprintf(o->chan_prefix, sizeof(o->chan_prefix), "%s", arg); break;
    case LG_OPT_SUBMODE:
        o->sub_mode = !strcmp(arg, "url") ? LG_SUB_URL : !strcmp(arg, "op") ? LG_SUB_OP
                    : !strcmp(arg, "mixed") ? LG_SUB_MIXED : -1;
        break;
    case LG_OPT_CHURN: o->churn = atof(arg); break;
    case LG_OPT_CHURN_STOP: o->churn_stop = atof(arg); break;
    case LG_OPT_CHECK: o->check_seq = 1; break;
    case LG_OPT_EXPECT: o->expect_last = arg; break;
    case LG_OPT_HELP: lg_usage(stdout); exit(0);
    default: lg_usage(stderr); exit(2);
    }
}

static void lg_parse_opts(struct lg_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"host", required_argument, NULL, LG_OPT_HOST},   {"port", required_argument, NULL, LG_OPT_PORT},
        {"path", required_argument, NULL, LG_OPT_PATH},   {"src-ips", required_argument, NULL, LG_OPT_SRC},
        {"connect-rate", required_argument, NULL, LG_OPT_RATE},
        {"max-pending", required_argument, NULL, LG_OPT_PENDING},
        {"duration", required_argument, NULL, LG_OPT_DUR}, {"out", required_argument, NULL, LG_OPT_OUT},
        {"quiet", no_argument, NULL, LG_OPT_QUIET},        {"help", no_argument, NULL, LG_OPT_HELP},
        {"channels", required_argument, NULL, LG_OPT_CHANS}, {"subs", required_argument, NULL, LG_OPT_SUBS},
        {"conn-offset", required_argument, NULL, LG_OPT_OFFSET},
        {"chan-prefix", required_argument, NULL, LG_OPT_CPREFIX},
        {"sub-mode", required_argument, NULL, LG_OPT_SUBMODE},
        {"churn", required_argument, NULL, LG_OPT_CHURN},
        {"churn-stop", required_argument, NULL, LG_OPT_CHURN_STOP},
        {"check-seq", no_argument, NULL, LG_OPT_CHECK},
        {"expect-last", required_argument, NULL, LG_OPT_EXPECT},
        {NULL, 0, NULL, 0}};
    int opt;

    snprintf(o->host, sizeof(o->host), "127.0.0.1");
    snprintf(o->path, sizeof(o->path), "/ws?channels=bench");
    o->port = 8080;
    o->n = 1000;
    o->max_pending = 1000;
    o->duration = 30;
    o->subs = 1;
    snprintf(o->chan_prefix, sizeof(o->chan_prefix), "bench");
    while ((opt = getopt_long(argc, argv, "n:h", longopts, NULL)) != -1)
        lg_opt_one(o, opt == 'h' ? LG_OPT_HELP : opt, optarg);
    if (o->n < 1 || o->port < 1 || o->port > 65535 || o->src_ips < 0 || o->src_ips > 250 ||
        o->max_pending < 1 || o->duration <= 0 || o->channels < 0 || o->subs < 1 || o->subs > LG_MAX_SUBS ||
        (o->channels && o->subs > o->channels) || o->conn_offset < 0 || o->sub_mode < 0 || o->churn < 0 ||
        o->churn > 100 || o->churn_stop < 0 || ((o->check_seq || o->expect_last) && !o->channels)) {
        lg_usage(stderr);
        exit(2);
    }
}

/* ---- setup -------------------------------------------------------------------------------- */

static void lg_raise_nofile(struct lg *g)
{
    struct rlimit rl;
    int cap;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    cap = rl.rlim_cur < LG_MAX_CONNS + 64 ? (int)rl.rlim_cur - 64 : LG_MAX_CONNS;
    if (g->o.n > cap) {
        fprintf(stderr, "loadgen: -n %d is more than one process holds here; using %d "
                        "(run several loadgen processes)\n", g->o.n, cap);
        g->o.n = cap;
    }
}

static int lg_resolve(struct lg *g)
{
    struct addrinfo hints, *res = NULL;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(g->o.host, NULL, &hints, &res) || !res) {
        fprintf(stderr, "loadgen: cannot resolve %s\n", g->o.host);
        return -1;
    }
    memcpy(&g->dst, res->ai_addr, sizeof(g->dst));
    g->dst.sin_port = htons((uint16_t)g->o.port);
    freeaddrinfo(res);
    return 0;
}

static int lg_setup(struct lg *g)
{
    sigset_t set;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, NULL);
    g->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    g->ep = epoll_create1(EPOLL_CLOEXEC);
    g->conns = calloc((size_t)g->o.n, sizeof(*g->conns));
    if (g->o.channels) {
        size_t i, nl = (size_t)g->o.n * (size_t)g->o.subs;
        g->last = malloc(nl * sizeof(*g->last));
        g->reopen = malloc((size_t)g->o.n * sizeof(*g->reopen));
        if (!g->last || !g->reopen) {
            perror("loadgen: setup");
            return -1;
        }
        for (i = 0; i < nl; i++)
            g->last[i] = -1;
    }
    if (g->sigfd < 0 || g->ep < 0 || !g->conns || epoll_ctl(g->ep, EPOLL_CTL_ADD, g->sigfd, &ev)) {
        perror("loadgen: setup");
        return -1;
    }
    g->req_len = (size_t)snprintf(g->req, sizeof(g->req),
                                  "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                  "Sec-WebSocket-Version: 13\r\n\r\n",
                                  g->o.path, g->o.host, g->o.port);
    g->rng = lg_mono() | 1u;
    return lg_resolve(g);
}

/* ---- soak mode: channels, requests --------------------------------------------------------- */

static int lg_slot(const struct lg *g, const struct lg_conn *c) { return (int)(c - g->conns); }

/* Channel index of subscription j of a slot. */
static int lg_chan(const struct lg *g, int slot, int j)
{
    return (int)((((long long)g->o.conn_offset + slot) * g->o.subs + j) % g->o.channels);
}

static int lg_chan_name(const struct lg *g, int ch, char *buf, size_t cap)
{
    if (g->o.channels == 1)
        return snprintf(buf, cap, "%s", g->o.chan_prefix);
    return snprintf(buf, cap, "%s%d", g->o.chan_prefix, ch);
}

static int lg_uses_op(const struct lg *g, const struct lg_conn *c)
{
    if (g->o.sub_mode == LG_SUB_MIXED)
        return (int)(((unsigned)lg_slot(g, c) + c->gen) & 1u);
    return g->o.sub_mode == LG_SUB_OP;
}

/* The HTTP upgrade request of a connection: --path, or the slot's channels in the URL. */
static size_t lg_build_req(struct lg *g, struct lg_conn *c, char *buf, size_t cap)
{
    char path[1024];
    size_t n;
    int j, slot = lg_slot(g, c);

    if (!g->o.channels) {
        memcpy(buf, g->req, g->req_len);
        return g->req_len;
    }
    n = (size_t)snprintf(path, sizeof(path), lg_uses_op(g, c) ? "/ws" : "/ws?channels=");
    for (j = 0; !lg_uses_op(g, c) && j < g->o.subs; j++) {
        if (j)
            path[n++] = ',';
        n += (size_t)lg_chan_name(g, lg_chan(g, slot, j), path + n, sizeof(path) - n);
    }
    return (size_t)snprintf(buf, cap,
                            "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                            "Sec-WebSocket-Version: 13\r\n\r\n",
                            path, g->o.host, g->o.port);
}

/* ---- connection lifecycle ----------------------------------------------------------------- */

static void lg_close(struct lg *g, struct lg_conn *c)
{
    if (c->state == LG_CONNECTING || c->state == LG_HANDSHAKE)
        g->pending--;
    if (c->state == LG_OPEN || c->state == LG_SUBSCRIBED)
        g->open--;
    if (c->state == LG_SUBSCRIBED)
        g->subscribed--;
    if (c->state == LG_CLOSING || c->state == LG_CLOSE_WAIT)
        g->closing--;
    if (g->o.channels && g->o.churn > 0 && !g->stop) { /* open it again a little later */
        g->reopen[(g->ro_head + g->ro_len) % g->o.n] = lg_slot(g, c);
        g->ro_len++;
    }
    c->t_state = lg_mono();
    close(c->fd);
    c->fd = -1;
    free(c->pbuf);
    c->pbuf = NULL;
    c->plen = c->pcap = 0;
    c->state = LG_CLOSED;
}

static int lg_bind_src(struct lg *g, int fd, int i)
{
    struct sockaddr_in src;
    int one = 1;

    if (!g->o.src_ips)
        return 0;
    memset(&src, 0, sizeof(src));
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)(i % g->o.src_ips));
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    return bind(fd, (struct sockaddr *)&src, sizeof(src));
}

static void lg_open_slot(struct lg *g, int slot)
{
    struct lg_conn *c = &g->conns[slot];
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    int fd, j;

    c->state = LG_CLOSED;
    c->ack_rt = 0;
    for (j = 0; g->last && j < g->o.subs; j++)
        g->last[(size_t)slot * (size_t)g->o.subs + (size_t)j] = -1;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || lg_bind_src(g, fd, slot + (int)c->gen * 7)) {
        g->err.socket++;
        if (fd >= 0)
            close(fd);
        return;
    }
    if (connect(fd, (struct sockaddr *)&g->dst, sizeof(g->dst)) && errno != EINPROGRESS) {
        g->err.connect++;
        close(fd);
        return;
    }
    c->fd = fd;
    c->state = LG_CONNECTING;
    c->gen++;
    g->pending++;
    epoll_ctl(g->ep, EPOLL_CTL_ADD, fd, &ev);
}

static void lg_start_one(struct lg *g)
{
    g->started++;
    lg_open_slot(g, g->started - 1);
}

static void lg_on_connected(struct lg *g, struct lg_conn *c)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    char req[2048];
    size_t len;

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) || soerr) {
        g->err.connect++;
        lg_close(g, c);
        return;
    }
    len = lg_build_req(g, c, req, sizeof(req));
    if (send(c->fd, req, len, MSG_NOSIGNAL) != (ssize_t)len) {
        g->err.send++;
        lg_close(g, c);
        return;
    }
    c->state = LG_HANDSHAKE;
    epoll_ctl(g->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void lg_start_more(struct lg *g, uint64_t now)
{
    int target = g->o.n;

    if (g->o.connect_rate > 0) {
        double due = g->o.connect_rate * (double)(now - g->t0) / 1e6 + 1;
        if (due < target)
            target = (int)due;
    }
    while (g->started < target && g->pending < g->o.max_pending)
        lg_start_one(g);
    while (g->ro_len && g->pending < g->o.max_pending && !g->stop) {
        int slot = g->reopen[g->ro_head];
        if (g->conns[slot].t_state + LG_REOPEN_DELAY_US > now)
            break;
        g->ro_head = (g->ro_head + 1) % g->o.n;
        g->ro_len--;
        g->ch.reopened++;
        lg_open_slot(g, slot);
    }
}

/* ---- frames ------------------------------------------------------------------------------- */

static int lg_append(struct lg_conn *c, const uint8_t *p, size_t n)
{
    if (c->plen + n > LG_MAX_FRAME + 16)
        return -1;
    if (c->plen + n > c->pcap) {
        uint32_t cap = c->pcap ? c->pcap : 512;
        uint8_t *nb;
        while (cap < c->plen + n)
            cap *= 2;
        nb = realloc(c->pbuf, cap);
        if (!nb)
            return -1;
        c->pbuf = nb;
        c->pcap = cap;
    }
    memcpy(c->pbuf + c->plen, p, n);
    c->plen += (uint32_t)n;
    return 0;
}

static void lg_send_ctrl(struct lg *g, struct lg_conn *c, int opcode, const uint8_t *p, size_t n)
{
    uint8_t fr[2 + 4 + 125];
    uint32_t key;
    size_t i;

    if (n > 125)
        n = 125;
    g->rng ^= g->rng << 13;
    g->rng ^= g->rng >> 7;
    g->rng ^= g->rng << 17;
    key = (uint32_t)g->rng;
    fr[0] = (uint8_t)(0x80 | opcode);
    fr[1] = (uint8_t)(0x80 | n);
    memcpy(fr + 2, &key, 4);
    for (i = 0; i < n; i++)
        fr[6 + i] = p[i] ^ fr[2 + (i & 3)];
    if (send(c->fd, fr, 6 + n, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)(6 + n))
        g->err.send++;
}

/* A masked text frame (the subscribe op); at most 65535 bytes. */
static void lg_send_text(struct lg *g, struct lg_conn *c, const char *p, size_t n)
{
    uint8_t fr[8 + 2048];
    size_t i, h = n < 126 ? 2 : 4;
    uint8_t *key;

    if (n > sizeof(fr) - 8)
        return;
    g->rng ^= g->rng << 13;
    g->rng ^= g->rng >> 7;
    g->rng ^= g->rng << 17;
    fr[0] = 0x81;
    if (n < 126) {
        fr[1] = (uint8_t)(0x80 | n);
    } else {
        fr[1] = 0x80 | 126;
        fr[2] = (uint8_t)(n >> 8);
        fr[3] = (uint8_t)n;
    }
    key = fr + h;
    memcpy(key, &g->rng, 4);
    for (i = 0; i < n; i++)
        fr[h + 4 + i] = (uint8_t)p[i] ^ key[i & 3];
    if (send(c->fd, fr, h + 4 + n, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)(h + 4 + n))
        g->err.send++;
}

static void lg_send_subscribe(struct lg *g, struct lg_conn *c)
{
    char op[1024];
    size_t n = (size_t)snprintf(op, sizeof(op), "{\"op\":\"subscribe\",\"channels\":[");
    int j;

    for (j = 0; j < g->o.subs; j++) {
        n += (size_t)snprintf(op + n, sizeof(op) - n, "%s\"", j ? "," : "");
        n += (size_t)lg_chan_name(g, lg_chan(g, lg_slot(g, c), j), op + n, sizeof(op) - n);
        n += (size_t)snprintf(op + n, sizeof(op) - n, "\"");
    }
    n += (size_t)snprintf(op + n, sizeof(op) - n, "]}");
    lg_send_text(g, c, op, n);
}

static uint64_t lg_digits(const uint8_t **q, const uint8_t *end, int *ok)
{
    uint64_t v = 0;
    const uint8_t *s = *q;

    while (*q < end && **q >= '0' && **q <= '9')
        v = v * 10 + (uint64_t)(*(*q)++ - '0');
    *ok = *q > s;
    return v;
}

/* Channel index of a batch from its "channel":"<prefix><n>" member; -1 if not one of ours. */
static int lg_batch_chan(const struct lg *g, const uint8_t *p, size_t n)
{
    const uint8_t *end = p + n, *q = memmem(p, n, "\"channel\":\"", 11);
    size_t pl = strlen(g->o.chan_prefix);
    int ok;
    uint64_t v;

    if (!q)
        return -1;
    q += 11;
    if ((size_t)(end - q) < pl + 1 || memcmp(q, g->o.chan_prefix, pl))
        return -1;
    q += pl;
    if (g->o.channels == 1)
        return *q == '"' ? 0 : -1;
    v = lg_digits(&q, end, &ok);
    return ok && q < end && *q == '"' && v < (uint64_t)g->o.channels ? (int)v : -1;
}

/* One message's "c" and "s" (pubload --seq-per-channel writes {"t":..,"c":..,"s":..}). */
static void lg_seq_one(struct lg *g, struct lg_conn *c, int bch, int64_t *last, const uint8_t *q,
                       const uint8_t *end)
{
    int ok;
    uint64_t ch, s;

    if ((size_t)(end - q) < 5 || memcmp(q, ",\"c\":", 5)) {
        g->seq.parse_errors++;
        return;
    }
    q += 5;
    ch = lg_digits(&q, end, &ok);
    if (!ok || (size_t)(end - q) < 5 || memcmp(q, ",\"s\":", 5)) {
        g->seq.parse_errors++;
        return;
    }
    q += 5;
    s = lg_digits(&q, end, &ok);
    if (!ok) {
        g->seq.parse_errors++;
        return;
    }
    g->seq.checked++;
    if (c->state == LG_CLOSING)
        g->seq.after_close_sent++;
    if (ch != (uint64_t)bch) {
        g->seq.wrong_channel++;
        return;
    }
    if (*last >= 0 && (int64_t)s != *last + 1) {
        if ((int64_t)s > *last + 1) {
            g->seq.gaps += (uint64_t)((int64_t)s - *last - 1);
            g->seq.gap_events++;
        } else {
            g->seq.dups++;
            g->seq.dup_events++;
            if (g->seq.dup_events <= 5)
                fprintf(stderr, "loadgen: duplicate/reorder on slot %d channel %d: seq %llu after %lld\n",
                        lg_slot(g, c), bch, (unsigned long long)s, (long long)*last);
            return; /* keep the highest seen as the reference */
        }
        if (g->seq.gap_events <= 5)
            fprintf(stderr, "loadgen: gap on slot %d channel %d: seq %llu after %lld\n", lg_slot(g, c), bch,
                    (unsigned long long)s, (long long)*last);
    }
    *last = (int64_t)s;
}

/* Counts the messages of a batch by their "t": members and records their latency. */
static void lg_on_batch(struct lg *g, struct lg_conn *c, const uint8_t *p, size_t n, uint64_t now)
{
    const uint8_t *end = p + n, *q = p;
    int64_t *last = NULL;
    int bch = -1, j;

    if (g->o.check_seq) {
        bch = lg_batch_chan(g, p, n);
        for (j = 0; bch >= 0 && j < g->o.subs; j++)
            if (lg_chan(g, lg_slot(g, c), j) == bch)
                last = &g->last[(size_t)lg_slot(g, c) * (size_t)g->o.subs + (size_t)j];
        if (!last && memmem(p, n, "\"messages\":", 11))
            g->seq.unknown_channel++;
        if (last && c->state == LG_OPEN)
            g->seq.pre_ack++; /* a batch before the ack: §3 says never */
    }
    while ((q = memmem(q, (size_t)(end - q), "\"t\":", 4)) != NULL) {
        uint64_t t = 0;
        q += 4;
        while (q < end && *q == ' ')
            q++;
        while (q < end && *q >= '0' && *q <= '9')
            t = t * 10 + (uint64_t)(*q++ - '0');
        g->ph.messages++;
        lg_hist_add(&g->ph.hist, now > t ? now - t : 0);
        if (last)
            lg_seq_one(g, c, bch, last, q, end);
    }
}

static void lg_on_text(struct lg *g, struct lg_conn *c, const uint8_t *p, size_t n, uint64_t now)
{
    if (c->state == LG_OPEN && memmem(p, n, "\"op\":\"subscribed\"", 17)) {
        c->state = LG_SUBSCRIBED;
        g->subscribed++;
        g->reached++;
        if (g->subscribed > g->subscribed_peak)
            g->subscribed_peak = g->subscribed;
        if (g->reached == g->o.n)
            g->t_all_sub = lg_mono();
        c->ack_rt = lg_now_us(CLOCK_REALTIME);
        return;
    }
    lg_on_batch(g, c, p, n, now);
}

/* Returns 0 to go on, -1 when the connection was closed. */
static int lg_on_frame(struct lg *g, struct lg_conn *c, int op, uint8_t *p, size_t n, uint64_t now)
{
    unsigned code;

    g->ph.frames++;
    switch (op) {
    case 0x0: /* continuation: the gateway does not fragment; count it as text */
    case 0x1:
    case 0x2: lg_on_text(g, c, p, n, now); return 0;
    case 0x9: /* after our close frame nothing more may go out (RFC 6455 §5.5.1) */
        g->ph.pings++;
        if (c->state != LG_CLOSING)
            lg_send_ctrl(g, c, 0xA, p, n);
        return 0;
    case 0xA: return 0;
    case 0x8:
        code = n >= 2 ? (unsigned)(p[0] << 8 | p[1]) : 1005u;
        if (c->state == LG_CLOSING) { /* the gateway's answer to our close: now wait for its EOF */
            g->ch.close_replies++;
            if (code != 1000)
                g->ch.close_reply_bad_code++;
            c->state = LG_CLOSE_WAIT;
            c->plen = 0;
            return -1;
        }
        if (g->o.channels)
            g->ch.lost++;
        g->closes[code < LG_MAX_CODE ? code : LG_MAX_CODE]++;
        g->err.close_frames++;
        lg_send_ctrl(g, c, 0x8, p, n >= 2 ? 2 : 0);
        lg_close(g, c);
        return -1;
    default: g->err.protocol++; lg_close(g, c); return -1;
    }
}

/* Parses whole frames of buf; returns bytes consumed, or -1 when the connection was closed. */
static long lg_parse(struct lg *g, struct lg_conn *c, uint8_t *buf, size_t len, uint64_t now)
{
    size_t off = 0;

    while (len - off >= 2) {
        uint8_t *p = buf + off;
        uint64_t plen = p[1] & 0x7f, hdr = 2, i;
        int masked = p[1] & 0x80;
        if (plen == 126) {
            if (len - off < 4)
                break;
            plen = (uint64_t)p[2] << 8 | p[3];
            hdr = 4;
        } else if (plen == 127) {
            if (len - off < 10)
                break;
            for (plen = 0, i = 0; i < 8; i++)
                plen = plen << 8 | p[2 + i];
            hdr = 10;
        }
        hdr += masked ? 4u : 0u;
        if (plen > LG_MAX_FRAME) {
            g->err.protocol++;
            lg_close(g, c);
            return -1;
        }
        if (len - off < hdr + plen)
            break;
        if (masked) { /* servers must not mask; tolerate it */
            g->err.protocol++;
            for (i = 0; i < plen; i++)
                p[hdr + i] ^= p[hdr - 4 + (i & 3)];
        }
        off += hdr + plen;
        if (lg_on_frame(g, c, p[0] & 0x0f, p + hdr, plen, now))
            return -1;
    }
    return (long)off;
}

/* Frames from scratch bytes; keeps an incomplete tail in c->pbuf. */
static int lg_feed(struct lg *g, struct lg_conn *c, uint8_t *p, size_t n, uint64_t now)
{
    long used;

    if (c->plen) {
        if (lg_append(c, p, n))
            goto toobig;
        used = lg_parse(g, c, c->pbuf, c->plen, now);
        if (used < 0)
            return -1;
        memmove(c->pbuf, c->pbuf + used, c->plen - (size_t)used);
        c->plen -= (uint32_t)used;
        return 0;
    }
    used = lg_parse(g, c, p, n, now);
    if (used < 0)
        return -1;
    if ((size_t)used < n && lg_append(c, p + used, n - (size_t)used))
        goto toobig;
    return 0;
toobig:
    g->err.protocol++;
    lg_close(g, c);
    return -1;
}

/* HTTP response bytes: accumulate until the blank line, check 101, pass the rest on as frames. */
static int lg_feed_handshake(struct lg *g, struct lg_conn *c, uint8_t *p, size_t n, uint64_t now)
{
    uint8_t *end;
    size_t hlen, rest;

    if (lg_append(c, p, n) || c->plen > 16384)
        goto bad;
    end = memmem(c->pbuf, c->plen, "\r\n\r\n", 4);
    if (!end)
        return 0;
    if (c->plen < 12 || memcmp(c->pbuf + 9, "101", 3))
        goto bad;
    hlen = (size_t)(end - c->pbuf) + 4;
    rest = c->plen - hlen;
    memcpy(g->scratch, c->pbuf + hlen, rest); /* scratch's bytes are in pbuf already */
    c->plen = 0;
    c->state = LG_OPEN;
    g->pending--;
    g->open++;
    g->handshakes++;
    g->t_last_hs = lg_mono();
    if (g->o.channels && lg_uses_op(g, c))
        lg_send_subscribe(g, c);
    return rest ? lg_feed(g, c, g->scratch, rest, now) : 0;
bad:
    g->err.handshake++;
    lg_close(g, c);
    return -1;
}

static void lg_on_readable(struct lg *g, struct lg_conn *c)
{
    int rounds;

    for (rounds = 0; rounds < 4; rounds++) {
        ssize_t r = recv(c->fd, g->scratch, sizeof(g->scratch), 0);
        uint64_t now;
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (c->state == LG_CLOSE_WAIT) { /* after the gateway's close frame only its EOF counts */
            if (r > 0)
                continue;
            if (r == 0)
                g->ch.closed_clean++;
            else
                g->ch.close_reset++;
            lg_close(g, c);
            return;
        }
        if (r <= 0) {
            if (g->o.channels && c->state >= LG_OPEN)
                g->ch.lost++;
            if (r == 0)
                g->err.eof++;
            else
                g->err.reset++;
            lg_close(g, c);
            return;
        }
        g->ph.bytes += (uint64_t)r;
        now = lg_now_us(CLOCK_REALTIME);
        if (c->state == LG_HANDSHAKE ? lg_feed_handshake(g, c, g->scratch, (size_t)r, now)
                                     : lg_feed(g, c, g->scratch, (size_t)r, now))
            return;
        if ((size_t)r < sizeof(g->scratch))
            return;
    }
}

/* ---- reporting ---------------------------------------------------------------------------- */

static void lg_status(struct lg *g, uint64_t now)
{
    double dt = (double)(now - g->last_status_us) / 1e6;

    if (!g->o.quiet)
        fprintf(stderr,
                "[%5.0fs] open %d sub %d pending %d hs/s %.0f | msgs/s %.0f frames/s %.0f | "
                "p50 %.2fms p99 %.2fms max %.2fms | err %llu\n",
                (double)(now - g->t0) / 1e6, g->open, g->subscribed, g->pending,
                (double)(g->handshakes - g->last_hs) / dt, (double)(g->ph.messages - g->last_msgs) / dt,
                (double)(g->ph.frames - g->last_frames) / dt, lg_hist_pct(&g->ph.hist, 0.5) / 1e3,
                lg_hist_pct(&g->ph.hist, 0.99) / 1e3, (double)g->ph.hist.max / 1e3,
                (unsigned long long)(g->err.socket + g->err.connect + g->err.handshake + g->err.reset +
                                     g->err.eof + g->err.protocol + g->err.close_frames));
    g->last_status_us = now;
    g->last_hs = (uint64_t)g->handshakes;
    g->last_msgs = g->ph.messages;
    g->last_frames = g->ph.frames;
}

static void lg_json_hist(FILE *f, const struct lg_hist *h)
{
    const char *sep = "";
    unsigned i;

    fprintf(f, "\"latency_ms\":{\"count\":%llu,\"p50\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f},",
            (unsigned long long)h->total, lg_hist_pct(h, 0.5) / 1e3, lg_hist_pct(h, 0.99) / 1e3,
            lg_hist_pct(h, 0.999) / 1e3, (double)h->max / 1e3);
    fprintf(f, "\"latency_hist_us\":[");
    for (i = 0; i < LG_HIST_N; i++)
        if (h->counts[i]) {
            fprintf(f, "%s[%llu,%llu]", sep, (unsigned long long)lg_hist_val(i),
                    (unsigned long long)h->counts[i]);
            sep = ",";
        }
    fprintf(f, "],");
}

static void lg_json_errors(FILE *f, const struct lg *g)
{
    const struct lg_errors *e = &g->err;
    const char *sep = "";
    unsigned i;

    fprintf(f, "\"errors\":{\"socket\":%llu,\"connect\":%llu,\"handshake\":%llu,\"reset\":%llu,"
               "\"eof\":%llu,\"protocol\":%llu,\"send\":%llu,\"close_frames\":%llu},\"closes\":{",
            (unsigned long long)e->socket, (unsigned long long)e->connect, (unsigned long long)e->handshake,
            (unsigned long long)e->reset, (unsigned long long)e->eof, (unsigned long long)e->protocol,
            (unsigned long long)e->send, (unsigned long long)e->close_frames);
    for (i = 0; i <= LG_MAX_CODE; i++)
        if (g->closes[i]) {
            fprintf(f, "%s\"%s%u\":%llu", sep, i == LG_MAX_CODE ? "other" : "", i == LG_MAX_CODE ? 0 : i,
                    (unsigned long long)g->closes[i]);
            sep = ",";
        }
    fprintf(f, "}");
}

static void lg_json_soak(FILE *f, const struct lg *g)
{
    const struct lg_seq *q = &g->seq;
    const struct lg_churn *h = &g->ch;

    if (!g->o.channels)
        return;
    fprintf(f, ",\"soak\":{\"channels\":%d,\"subs\":%d,\"conn_offset\":%d,\"churn_pct\":%.2f,"
               "\"closing_now\":%d,\"reopen_queued\":%d,",
            g->o.channels, g->o.subs, g->o.conn_offset, g->o.churn, g->closing, g->ro_len);
    fprintf(f, "\"churn\":{\"close_sent\":%llu,\"close_replies\":%llu,\"close_reply_bad_code\":%llu,"
               "\"closed_clean\":%llu,\"close_reset\":%llu,\"close_timeouts\":%llu,\"reopened\":%llu,"
               "\"lost\":%llu},",
            (unsigned long long)h->close_sent, (unsigned long long)h->close_replies,
            (unsigned long long)h->close_reply_bad_code, (unsigned long long)h->closed_clean,
            (unsigned long long)h->close_reset, (unsigned long long)h->close_timeouts, (unsigned long long)h->reopened, (unsigned long long)h->lost);
    fprintf(f, "\"seq\":{\"enabled\":%s,\"checked\":%llu,\"gaps\":%llu,\"gap_events\":%llu,\"dups\":%llu,"
               "\"wrong_channel\":%llu,\"unknown_channel\":%llu,\"pre_ack\":%llu,\"parse_errors\":%llu,"
               "\"after_close_sent\":%llu,\"tail_checked\":%llu,\"tail_ok\":%llu,\"tail_missing\":%llu,"
               "\"tail_missing_conns\":%llu,\"tail_none\":%llu,\"tail_skipped\":%llu}}",
            g->o.check_seq ? "true" : "false", (unsigned long long)q->checked, (unsigned long long)q->gaps,
            (unsigned long long)q->gap_events, (unsigned long long)q->dups, (unsigned long long)q->wrong_channel,
            (unsigned long long)q->unknown_channel, (unsigned long long)q->pre_ack,
            (unsigned long long)q->parse_errors, (unsigned long long)q->after_close_sent,
            (unsigned long long)q->tail_checked, (unsigned long long)q->tail_ok,
            (unsigned long long)q->tail_missing, (unsigned long long)q->tail_missing_conns,
            (unsigned long long)q->tail_none, (unsigned long long)q->tail_skipped);
}

/* Reads the array `"key":[n,n,...]` of pubload's --out summary into v[0..cap). */
static int lg_read_array(const char *doc, const char *key, uint64_t *v, int cap)
{
    char pat[64];
    const char *q;
    int i = 0;

    snprintf(pat, sizeof(pat), "\"%s\":[", key);
    q = strstr(doc, pat);
    if (!q)
        return -1;
    q += strlen(pat);
    while (i < cap && *q && *q != ']') {
        char *e;
        v[i++] = strtoull(q, &e, 10);
        if (e == q)
            return -1;
        q = e;
        while (*q == ',' || *q == ' ')
            q++;
    }
    return i;
}

/* End of run: every connection that got its ack before a channel's last publish (both
 * CLOCK_REALTIME; the ack means Redis had confirmed the SUBSCRIBE) must have seen that last seq.
 * Connections in their close handshake are not checked. */
static void lg_tail_check(struct lg *g)
{
    uint64_t *last_seq, *last_t;
    char *doc;
    long sz;
    FILE *f = fopen(g->o.expect_last, "r");
    int slot, j, nch = g->o.channels;

    if (!f) {
        perror("loadgen: --expect-last");
        return;
    }
    fseek(f, 0, SEEK_END);
    sz = ftell(f);
    rewind(f);
    doc = calloc(1, (size_t)(sz > 0 ? sz : 0) + 1);
    last_seq = calloc((size_t)nch, sizeof(*last_seq));
    last_t = calloc((size_t)nch, sizeof(*last_t));
    if (!doc || !last_seq || !last_t || fread(doc, 1, (size_t)sz, f) != (size_t)sz ||
        lg_read_array(doc, "last_seq", last_seq, nch) != nch || lg_read_array(doc, "last_t", last_t, nch) != nch) {
        fprintf(stderr, "loadgen: --expect-last %s: no last_seq/last_t arrays for %d channels\n",
                g->o.expect_last, nch);
        g->seq.tail_skipped = 1;
        goto out;
    }
    for (slot = 0; slot < g->started; slot++) {
        struct lg_conn *c = &g->conns[slot];
        int bad = 0;
        if (c->state != LG_SUBSCRIBED)
            continue;
        for (j = 0; j < g->o.subs; j++) {
            int ch = lg_chan(g, slot, j);
            int64_t seen = g->last[(size_t)slot * (size_t)g->o.subs + (size_t)j];
            if (!last_seq[ch] || c->ack_rt >= last_t[ch]) {
                g->seq.tail_skipped++;
                continue;
            }
            g->seq.tail_checked++;
            if (seen < 0) {
                g->seq.tail_none++;
                bad = 1;
            } else if ((uint64_t)seen < last_seq[ch]) {
                g->seq.tail_missing += last_seq[ch] - (uint64_t)seen;
                bad = 1;
            } else {
                g->seq.tail_ok++;
            }
        }
        g->seq.tail_missing_conns += (uint64_t)bad;
    }
out:
    fclose(f);
    free(doc);
    free(last_seq);
    free(last_t);
}

static void lg_json(FILE *f, const struct lg *g, uint64_t now, int final)
{
    double conn_s = (double)((g->t_last_hs > g->t0 ? g->t_last_hs : now) - g->t0) / 1e6;
    double phase_s = (double)(now - g->ph.t_start) / 1e6;

    fprintf(f, "{\"final\":%s,\"snapshot\":%d,\"elapsed_s\":%.3f,\"phase_s\":%.3f,", final ? "true" : "false",
            g->snapshot_no, (double)(now - g->t0) / 1e6, phase_s);
    fprintf(f, "\"connections_target\":%d,\"connections_reached\":%d,\"subscribed_now\":%d,"
               "\"subscribed_peak\":%d,\"open_now\":%d,\"handshakes\":%d,\"handshakes_per_s\":%.1f,"
               "\"all_subscribed_s\":%.3f,",
            g->o.n, g->reached, g->subscribed, g->subscribed_peak, g->open, g->handshakes,
            conn_s > 0 ? g->handshakes / conn_s : 0.0,
            g->t_all_sub ? (double)(g->t_all_sub - g->t0) / 1e6 : -1.0);
    fprintf(f, "\"frames\":%llu,\"messages\":%llu,\"bytes\":%llu,\"pings\":%llu,\"messages_per_s\":%.1f,",
            (unsigned long long)g->ph.frames, (unsigned long long)g->ph.messages,
            (unsigned long long)g->ph.bytes, (unsigned long long)g->ph.pings,
            phase_s > 0 ? (double)g->ph.messages / phase_s : 0.0);
    lg_json_hist(f, &g->ph.hist);
    lg_json_errors(f, g);
    lg_json_soak(f, g);
    fprintf(f, "}\n");
}

static void lg_report(struct lg *g, int final)
{
    uint64_t now = lg_mono();
    char tmp[4096];
    FILE *f;

    if (final || !g->o.out)
        lg_json(stdout, g, now, final);
    fflush(stdout);
    if (!g->o.out)
        return;
    snprintf(tmp, sizeof(tmp), "%s.tmp", g->o.out);
    f = fopen(tmp, "w");
    if (!f) {
        perror("loadgen: --out");
        return;
    }
    lg_json(f, g, now, final);
    fclose(f);
    rename(tmp, g->o.out);
}

static void lg_on_signal(struct lg *g)
{
    struct signalfd_siginfo si;

    while (read(g->sigfd, &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo != SIGUSR1 && si.ssi_signo != SIGUSR2) {
            g->stop = 1;
            continue;
        }
        g->snapshot_no++;
        lg_report(g, 0);
        if (si.ssi_signo == SIGUSR2)
            continue;
        memset(&g->ph, 0, sizeof(g->ph));
        g->ph.t_start = lg_mono();
        g->last_msgs = g->last_frames = 0;
    }
}

/* ---- main loop ---------------------------------------------------------------------------- */

static void lg_dispatch(struct lg *g, struct epoll_event *ev)
{
    struct lg_conn *c = ev->data.ptr;

    if (!c) {
        lg_on_signal(g);
        return;
    }
    if (c->state == LG_CONNECTING) {
        lg_on_connected(g, c);
        return;
    }
    if (c->state >= LG_HANDSHAKE && c->state <= LG_CLOSE_WAIT)
        lg_on_readable(g, c);
}

/* Churn: every 100 ms close the due share of --churn % of -n, picked at random among the
 * subscribed connections, with a close frame 1000; end those whose close handshake stalls. */
static void lg_churn_tick(struct lg *g, uint64_t now)
{
    static const uint8_t bye[2] = {0x03, 0xe8}; /* 1000 */
    int i, tries;

    uint64_t dt;

    if (!g->o.channels || now - g->t_churn < 100000)
        return;
    dt = g->t_churn ? now - g->t_churn : 100000;
    g->t_churn = now;
    for (i = 0; i < g->o.n; i++) {
        struct lg_conn *c = &g->conns[i];
        if ((c->state == LG_CLOSING || c->state == LG_CLOSE_WAIT) && now - c->t_state > LG_CLOSE_TIMEOUT_US) {
            g->ch.close_timeouts++;
            lg_close(g, c);
        }
    }
    if (g->o.churn <= 0 || (g->o.churn_stop > 0 && (double)(now - g->t0) / 1e6 >= g->o.churn_stop))
        return;
    g->churn_due += g->o.churn / 100.0 * g->o.n * (double)dt / 1e6;
    for (tries = 0; g->churn_due >= 1 && tries < 20 * g->o.n; tries++) {
        struct lg_conn *c;
        g->rng ^= g->rng << 13;
        g->rng ^= g->rng >> 7;
        g->rng ^= g->rng << 17;
        c = &g->conns[g->rng % (uint64_t)g->o.n];
        if (c->state != LG_SUBSCRIBED)
            continue;
        lg_send_ctrl(g, c, 0x8, bye, 2);
        g->open--;
        g->subscribed--;
        g->closing++;
        c->state = LG_CLOSING;
        c->t_state = now;
        g->ch.close_sent++;
        g->churn_due -= 1;
    }
    if (g->churn_due > 1)
        g->churn_due = 1; /* not enough subscribed connections: do not pile up */
}

static void lg_run(struct lg *g)
{
    uint64_t end;

    g->t0 = g->last_status_us = g->ph.t_start = lg_mono();
    end = g->t0 + (uint64_t)(g->o.duration * 1e6);
    while (!g->stop) {
        uint64_t now = lg_mono();
        int i, n, tmo = g->started < g->o.n || g->ro_len ? 1 : g->o.channels ? 20 : 100;
        if (now >= end)
            break;
        lg_start_more(g, now);
        n = epoll_wait(g->ep, g->evs, LG_EVENTS, tmo);
        for (i = 0; i < n; i++)
            lg_dispatch(g, &g->evs[i]);
        now = lg_mono();
        lg_churn_tick(g, now);
        if (now - g->last_status_us >= 1000000)
            lg_status(g, now);
    }
}

static void lg_free(struct lg *g)
{
    int i;

    for (i = 0; i < g->started; i++)
        if (g->conns[i].state != LG_CLOSED && g->conns[i].state != LG_IDLE)
            lg_close(g, &g->conns[i]);
    free(g->conns);
    free(g->last);
    free(g->reopen);
    close(g->ep);
    close(g->sigfd);
    free(g);
}

int main(int argc, char **argv)
{
    struct lg *g = calloc(1, sizeof(*g));

    if (!g)
        return 1;
    lg_parse_opts(&g->o, argc, argv);
    lg_raise_nofile(g);
    if (lg_setup(g))
        return 1;
    lg_run(g);
    if (g->o.expect_last)
        lg_tail_check(g);
    lg_report(g, 1);
    lg_free(g);
    return 0;
}
