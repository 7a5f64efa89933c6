/* pubload.c - owns the publisher load tool of bench/ (binary `pubload`).
 *
 * PUBLISHes {"t":<CLOCK_REALTIME us>,"s":<seq>,"p":"xxx..."} to Redis at a paced rate: the
 * second is cut into 1 ms steps and each step sends the messages that are due by then, pipelined
 * (hiredis, synchronous: append all commands of a step, then read their replies). Channels are
 * used round-robin. Prints what it sent and the sum of PUBLISH's receiver counts (the number of
 * gateways, i.e. Redis subscribers, that got each message).
 *
 * --seq-per-channel (bench/soak.sh): {"t":..,"c":<channel index>,"s":<that channel's own sequence,
 * from 1>,"p":..}, so loadgen --check-seq can find gaps and duplicates per channel; --out FILE
 * gets the summary with per-channel counts, last seq and the "t" of each channel's last message.
 * SIGINT / SIGTERM stop publishing early and still write the summary.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PF_PUB_STEP_US 1000
#define PF_PUB_MAX_STEP 10000 /* commands in flight per step at most */

struct pf_pub_opts {
    char host[256], prefix[128];
    int port, channels, size;
    double rate, duration;
    int quiet, seq_per_channel;
    const char *out;
};

static volatile sig_atomic_t pf_pub_stop;

static void pf_pub_on_signal(int sig)
{
    (void)sig;
    pf_pub_stop = 1;
}

struct pf_pub {
    struct pf_pub_opts o;
    redisContext *rc;
    char **chans; /* full Redis channel names, prefix included */
    size_t *chan_len;
    char *pad;
    char *buf;
    size_t buf_cap;
    uint64_t sent, seq, receivers, errors, max_step_us, late_steps;
    uint64_t *ch_seq, *ch_last_t; /* --seq-per-channel: last seq (= count) and its "t" per channel */
};

static uint64_t pf_pub_now(clockid_t clk)
{
    struct timespec ts;

    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void pf_pub_usage(FILE *f)
{
    fprintf(f,
            "usage: pubload [options]\n"
            "Publishes timestamped JSON messages to Redis at a steady rate, for loadgen to time.\n\n"
            "  --redis-host HOST   Redis host (default 127.0.0.1)\n"
            "  --redis-port PORT   Redis port (default 6379)\n"
            "  --channels N        number of channels (default 1). N = 1 publishes to channel\n"
            "                      \"bench\"; N > 1 to \"bench0\" .. \"bench<N-1>\", round-robin\n"
            "  --prefix STR        Redis channel prefix (default push:), so 'push:bench'\n"
            "  --rate R            messages per second, all channels together (default 10);\n"
            "                      paced in 1 ms steps, not in bursts\n"
            "  --size B            payload bytes (default 64; padded with a \"p\":\"xxx...\" member;\n"
            "                      never less than the bare {\"t\":..,\"s\":..,\"p\":\"\"})\n"
            "  --duration S        seconds to publish (default 10)\n"
            "  --quiet             no per-second status line\n"
            "  --seq-per-channel   payload {\"t\":..,\"c\":<channel index>,\"s\":<per-channel seq>,\"p\":..},\n"
            "                      each channel counting from 1 (for loadgen --check-seq)\n"
            "  --out FILE          also write the JSON summary to FILE, with per-channel sent,\n"
            "                      last_seq and last_t arrays (for loadgen --expect-last)\n"
            "Payload: {\"t\":<CLOCK_REALTIME microseconds>,\"s\":<sequence>,\"p\":\"xxx...\"}\n"
            "SIGINT/SIGTERM stop publishing and print the summary.\n");
}

enum { PF_PUB_HOST = 256, PF_PUB_PORT, PF_PUB_CHANS, PF_PUB_PREFIX, PF_PUB_RATE, PF_PUB_SIZE,
       PF_PUB_DUR, PF_PUB_QUIET, PF_PUB_HELP, PF_PUB_SEQCH, PF_PUB_OUT };

static void pf_pub_opt(struct pf_pub_opts *o, int opt, const char *arg)
{
    switch (opt) {
    case PF_PUB_HOST: snprintf(o->host, sizeof(o->host), "%s", arg); break;
    case PF_PUB_PORT: o->port = atoi(arg); break;
    case PF_PUB_CHANS: o->channels = atoi(arg); break;
    case PF_PUB_PREFIX: snprintf(o->prefix, sizeof(o->prefix), "%s", arg); break;
    case PF_PUB_RATE: o->rate = atof(arg); break;
    case PF_PUB_SIZE: o->size = atoi(arg); break;
    case PF_PUB_DUR: o->duration = atof(arg); break;
    case PF_PUB_QUIET: o->quiet = 1; break;
    case PF_PUB_SEQCH: o->seq_per_channel = 1; break;
    case PF_PUB_OUT: o->out = arg; break;
    case PF_PUB_HELP: pf_pub_usage(stdout); exit(0);
    default: pf_pub_usage(stderr); exit(2);
    }
}

static void pf_pub_parse(struct pf_pub_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"redis-host", required_argument, NULL, PF_PUB_HOST}, {"redis-port", required_argument, NULL, PF_PUB_PORT},
        {"channels", required_argument, NULL, PF_PUB_CHANS},  {"prefix", required_argument, NULL, PF_PUB_PREFIX},
        {"rate", required_argument, NULL, PF_PUB_RATE},       {"size", required_argument, NULL, PF_PUB_SIZE},
        {"duration", required_argument, NULL, PF_PUB_DUR},    {"quiet", no_argument, NULL, PF_PUB_QUIET},
        {"help", no_argument, NULL, PF_PUB_HELP},             {"seq-per-channel", no_argument, NULL, PF_PUB_SEQCH},
        {"out", required_argument, NULL, PF_PUB_OUT},          {NULL, 0, NULL, 0}};
    int opt;

    snprintf(o->host, sizeof(o->host), "127.0.0.1");
    snprintf(o->prefix, sizeof(o->prefix), "push:");
    o->port = 6379;
    o->channels = 1;
    o->rate = 10;
    o->size = 64;
    o->duration = 10;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1)
        pf_pub_opt(o, opt == 'h' ? PF_PUB_HELP : opt, optarg);
    if (o->channels < 1 || o->rate <= 0 || o->size < 0 || o->size > 64 * 1024 * 1024 || o->duration <= 0) {
        pf_pub_usage(stderr);
        exit(2);
    }
}

static int pf_pub_setup(struct pf_pub *p)
{
    int i;

    p->chans = calloc((size_t)p->o.channels, sizeof(*p->chans));
    p->chan_len = calloc((size_t)p->o.channels, sizeof(*p->chan_len));
    p->pad = malloc((size_t)p->o.size + 1);
    p->buf_cap = (size_t)p->o.size + 128;
    p->buf = malloc(p->buf_cap);
    p->ch_seq = calloc((size_t)p->o.channels, sizeof(*p->ch_seq));
    p->ch_last_t = calloc((size_t)p->o.channels, sizeof(*p->ch_last_t));
    if (!p->chans || !p->chan_len || !p->pad || !p->buf || !p->ch_seq || !p->ch_last_t)
        return -1;
    memset(p->pad, 'x', (size_t)p->o.size);
    p->pad[p->o.size] = 0;
    for (i = 0; i < p->o.channels; i++) {
        char name[200];
        if (p->o.channels == 1)
            snprintf(name, sizeof(name), "%sbench", p->o.prefix);
        else
            snprintf(name, sizeof(name), "%sbench%d", p->o.prefix, i);
        p->chans[i] = strdup(name);
        p->chan_len[i] = strlen(name);
    }
    p->rc = redisConnect(p->o.host, p->o.port);
    if (!p->rc || p->rc->err) {
        fprintf(stderr, "pubload: redis %s:%d: %s\n", p->o.host, p->o.port, p->rc ? p->rc->errstr : "oom");
        return -1;
    }
    return 0;
}

/* Builds the next payload (for channel ch) into p->buf, padded to --size bytes; returns its length. */
static size_t pf_pub_payload(struct pf_pub *p, int ch)
{
    uint64_t t = pf_pub_now(CLOCK_REALTIME);
    int head;
    int pad;

    if (p->o.seq_per_channel) {
        p->ch_seq[ch]++;
        p->ch_last_t[ch] = t;
        head = snprintf(p->buf, p->buf_cap, "{\"t\":%llu,\"c\":%d,\"s\":%llu,\"p\":\"", (unsigned long long)t, ch,
                        (unsigned long long)p->ch_seq[ch]);
        p->seq++;
    } else {
        head = snprintf(p->buf, p->buf_cap, "{\"t\":%llu,\"s\":%llu,\"p\":\"", (unsigned long long)t,
                        (unsigned long long)p->seq++);
    }
    pad = p->o.size - head - 2;

    if (pad < 0)
        pad = 0;
    memcpy(p->buf + head, p->pad, (size_t)pad);
    memcpy(p->buf + head + pad, "\"}", 2);
    return (size_t)head + (size_t)pad + 2;
}

static int pf_pub_step(struct pf_pub *p, uint64_t n)
{
    uint64_t i;

    for (i = 0; i < n; i++) {
        int ch = (int)((p->sent + i) % (uint64_t)p->o.channels);
        size_t len = pf_pub_payload(p, ch);
        redisAppendCommand(p->rc, "PUBLISH %b %b", p->chans[ch], p->chan_len[ch], p->buf, len);
    }
    for (i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(p->rc, (void **)&r) != REDIS_OK || !r) {
            fprintf(stderr, "pubload: redis: %s\n", p->rc->errstr);
            return -1;
        }
        if (r->type == REDIS_REPLY_INTEGER)
            p->receivers += (uint64_t)r->integer;
        else
            p->errors++;
        freeReplyObject(r);
    }
    p->sent += n;
    return 0;
}

static void pf_pub_sleep_until(uint64_t mono_us)
{
    struct timespec ts = {.tv_sec = (time_t)(mono_us / 1000000u), .tv_nsec = (long)(mono_us % 1000000u) * 1000};

    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static int pf_pub_run(struct pf_pub *p, uint64_t *t_elapsed)
{
    uint64_t t0 = pf_pub_now(CLOCK_MONOTONIC), next = t0, last_print = t0, last_sent = 0;
    uint64_t total = (uint64_t)(p->o.rate * p->o.duration + 0.5);

    while (p->sent < total && !pf_pub_stop) {
        uint64_t now = pf_pub_now(CLOCK_MONOTONIC);
        uint64_t due = (uint64_t)(p->o.rate * (double)(now - t0) / 1e6) + 1, n;
        if (due > total)
            due = total;
        n = due > p->sent ? due - p->sent : 0;
        if (n > PF_PUB_MAX_STEP) {
            n = PF_PUB_MAX_STEP;
            p->late_steps++;
        }
        if (n && pf_pub_step(p, n))
            return -1;
        now = pf_pub_now(CLOCK_MONOTONIC);
        if (now - last_print >= 1000000 && !p->o.quiet) {
            fprintf(stderr, "[%5.0fs] sent %llu (%.0f/s) receivers %llu\n", (double)(now - t0) / 1e6,
                    (unsigned long long)p->sent, (double)(p->sent - last_sent) * 1e6 / (double)(now - last_print),
                    (unsigned long long)p->receivers);
            last_print = now;
            last_sent = p->sent;
        }
        next += PF_PUB_STEP_US;
        if (next > now)
            pf_pub_sleep_until(next);
        else
            next = now;
    }
    *t_elapsed = pf_pub_now(CLOCK_MONOTONIC) - t0;
    return 0;
}

static void pf_pub_free(struct pf_pub *p)
{
    int i;

    for (i = 0; p->chans && i < p->o.channels; i++)
        free(p->chans[i]);
    free(p->chans);
    free(p->chan_len);
    free(p->pad);
    free(p->buf);
    free(p->ch_seq);
    free(p->ch_last_t);
    if (p->rc)
        redisFree(p->rc);
}

static void pf_pub_array(FILE *f, const char *key, const uint64_t *v, int n)
{
    int i;

    fprintf(f, ",\"%s\":[", key);
    for (i = 0; i < n; i++)
        fprintf(f, "%s%llu", i ? "," : "", (unsigned long long)v[i]);
    fprintf(f, "]");
}

static void pf_pub_summary(FILE *f, const struct pf_pub *p, uint64_t el, int rc, int per_channel)
{
    fprintf(f, "{\"sent\":%llu,\"elapsed_s\":%.3f,\"rate\":%.1f,\"channels\":%d,\"size\":%d,\"receivers\":%llu,"
               "\"receivers_per_msg\":%.3f,\"errors\":%llu,\"late_steps\":%llu,\"ok\":%s",
            (unsigned long long)p->sent, (double)el / 1e6, el ? (double)p->sent * 1e6 / (double)el : 0.0,
            p->o.channels, p->o.size, (unsigned long long)p->receivers,
            p->sent ? (double)p->receivers / (double)p->sent : 0.0, (unsigned long long)p->errors,
            (unsigned long long)p->late_steps, rc ? "false" : "true");
    if (per_channel && p->o.seq_per_channel) {
        fprintf(f, ",\"seq_per_channel\":true,\"stopped_early\":%s", pf_pub_stop ? "true" : "false");
        pf_pub_array(f, "sent_per_channel", p->ch_seq, p->o.channels); /* seqs start at 1: count = last */
        pf_pub_array(f, "last_seq", p->ch_seq, p->o.channels);
        pf_pub_array(f, "last_t", p->ch_last_t, p->o.channels);
    }
    fprintf(f, "}\n");
}

int main(int argc, char **argv)
{
    struct pf_pub p;
    struct sigaction sa;
    uint64_t el = 0;
    int rc;

    memset(&p, 0, sizeof(p));
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = pf_pub_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    pf_pub_parse(&p.o, argc, argv);
    if (pf_pub_setup(&p)) {
        pf_pub_free(&p);
        return 1;
    }
    rc = pf_pub_run(&p, &el);
    pf_pub_summary(stdout, &p, el, rc, 0);
    if (p.o.seq_per_channel && !p.o.quiet) {
        int i;
        fprintf(stderr, "pubload: last seq per channel:");
        for (i = 0; i < p.o.channels; i++)
            fprintf(stderr, " %d:%llu", i, (unsigned long long)p.ch_seq[i]);
        fprintf(stderr, "\n");
    }
    if (p.o.out) {
        char tmp[4096];
        FILE *f;
        snprintf(tmp, sizeof(tmp), "%s.tmp", p.o.out);
        f = fopen(tmp, "w");
        if (f) {
            pf_pub_summary(f, &p, el, rc, 1);
            fclose(f);
            rename(tmp, p.o.out);
        } else {
            perror("pubload: --out");
        }
    }
    pf_pub_free(&p);
    return rc ? 1 : 0;
}
