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

enum lg_state { LG_IDLE, LG_CONNECTING, LG_HANDSHAKE, LG_OPEN, LG_SUBSCRIBED, LG_CLOSED };

struct lg_conn {
    int fd;
    uint8_t state;
    uint8_t *pbuf; /* bytes of an incomplete frame (or of the HTTP response) */
    uint32_t plen, pcap;
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
            "Signals: SIGUSR1 writes a snapshot to --out and resets frames/messages/latency;\n"
            "SIGUSR2 writes a snapshot without resetting;\n"
            "SIGINT/SIGTERM stop early and print the summary.\n",
            LG_MAX_CONNS);
}

enum { LG_OPT_HOST = 256, LG_OPT_PORT, LG_OPT_PATH, LG_OPT_SRC, LG_OPT_RATE, LG_OPT_PENDING,
       LG_OPT_DUR, LG_OPT_OUT, LG_OPT_QUIET, LG_OPT_HELP };

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
        {NULL, 0, NULL, 0}};
    int opt;

    snprintf(o->host, sizeof(o->host), "127.0.0.1");
    snprintf(o->path, sizeof(o->path), "/ws?channels=bench");
    o->port = 8080;
    o->n = 1000;
    o->max_pending = 1000;
    o->duration = 30;
    while ((opt = getopt_long(argc, argv, "n:h", longopts, NULL)) != -1)
        lg_opt_one(o, opt == 'h' ? LG_OPT_HELP : opt, optarg);
    if (o->n < 1 || o->port < 1 || o->port > 65535 || o->src_ips < 0 || o->src_ips > 250 ||
        o->max_pending < 1 || o->duration <= 0) {
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

/* ---- connection lifecycle ----------------------------------------------------------------- */

static void lg_close(struct lg *g, struct lg_conn *c)
{
    if (c->state == LG_CONNECTING || c->state == LG_HANDSHAKE)
        g->pending--;
    if (c->state == LG_OPEN || c->state == LG_SUBSCRIBED)
        g->open--;
    if (c->state == LG_SUBSCRIBED)
        g->subscribed--;
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

static void lg_start_one(struct lg *g)
{
    struct lg_conn *c = &g->conns[g->started];
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    int fd;

    c->state = LG_CLOSED;
    g->started++;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || lg_bind_src(g, fd, g->started - 1)) {
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
    g->pending++;
    epoll_ctl(g->ep, EPOLL_CTL_ADD, fd, &ev);
}

static void lg_on_connected(struct lg *g, struct lg_conn *c)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    int soerr = 0;
    socklen_t sl = sizeof(soerr);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) || soerr) {
        g->err.connect++;
        lg_close(g, c);
        return;
    }
    if (send(c->fd, g->req, g->req_len, MSG_NOSIGNAL) != (ssize_t)g->req_len) {
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

/* Counts the messages of a batch by their "t": members and records their latency. */
static void lg_on_batch(struct lg *g, const uint8_t *p, size_t n, uint64_t now)
{
    const uint8_t *end = p + n, *q = p;

    while ((q = memmem(q, (size_t)(end - q), "\"t\":", 4)) != NULL) {
        uint64_t t = 0;
        q += 4;
        while (q < end && *q == ' ')
            q++;
        while (q < end && *q >= '0' && *q <= '9')
            t = t * 10 + (uint64_t)(*q++ - '0');
        g->ph.messages++;
        lg_hist_add(&g->ph.hist, now > t ? now - t : 0);
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
        return;
    }
    lg_on_batch(g, p, n, now);
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
    case 0x9: g->ph.pings++; lg_send_ctrl(g, c, 0xA, p, n); return 0;
    case 0xA: return 0;
    case 0x8:
        code = n >= 2 ? (unsigned)(p[0] << 8 | p[1]) : 1005u;
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
        if (r <= 0) {
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
    if (c->state >= LG_HANDSHAKE && c->state <= LG_SUBSCRIBED)
        lg_on_readable(g, c);
}

static void lg_run(struct lg *g)
{
    uint64_t end;

    g->t0 = g->last_status_us = g->ph.t_start = lg_mono();
    end = g->t0 + (uint64_t)(g->o.duration * 1e6);
    while (!g->stop) {
        uint64_t now = lg_mono();
        int i, n, tmo = g->started < g->o.n ? 1 : 100;
        if (now >= end)
            break;
        lg_start_more(g, now);
        n = epoll_wait(g->ep, g->evs, LG_EVENTS, tmo);
        for (i = 0; i < n; i++)
            lg_dispatch(g, &g->evs[i]);
        now = lg_mono();
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
    lg_report(g, 1);
    lg_free(g);
    return 0;
}
