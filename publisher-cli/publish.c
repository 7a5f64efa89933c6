/* publish.c - see publish.h. Messages read from stdin are pipelined one read(2) chunk at a
 * time: a file is sent in large batches, while an interactive user sees each line's count as
 * soon as it is typed. Replies come back in send order, so the printed counts keep order. */
#include "publish.h"

#include <errno.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "channel.h"
#include "log.h"
#include "opts.h"

#define PF_CLI_TIMEOUT_S 2
#define PF_CLI_CHUNK     65536

struct pf_cli {
    struct pf_pub_opts opts;
    const char *channel;
    const char *message; /* NULL: one message per stdin line */
    struct pf_buf key;   /* prefix + channel */
    redisContext *rc;
};

static int pf_cli_args(struct pf_cli *cli, int argc, char **argv)
{
    static const struct option longopts[] = {{"redis", required_argument, NULL, 'r'},
                                             {"prefix", required_argument, NULL, 'p'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    int c;

    opterr = 0;
    /* '+': stop at CHANNEL, so a message such as "-5" is not taken for an option. */
    while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        switch (c) {
        case 'r': pf_opts_set_redis(&cli->opts, optarg); break;
        case 'p': pf_opts_set_prefix(&cli->opts, optarg); break;
        case 'h': pf_opts_usage(); return PF_EXIT_DONE;
        case 'V': pf_opts_version(); return PF_EXIT_DONE;
        default:
            pf_error("bad option or missing value: %s (see --help)", argv[optind - 1]);
            return PF_EXIT_USAGE;
        }
    }
    if (argc - optind < 1 || argc - optind > 2) {
        pf_error("expected CHANNEL [MESSAGE] (see --help)");
        return PF_EXIT_USAGE;
    }
    /* "push-publish --redis URL serve" would otherwise read stdin into channel "serve". */
    if (strcmp(argv[optind], "serve") == 0 && strcmp(argv[optind - 1], "--") != 0) {
        pf_error("serve must come first (push-publish serve [options]); to publish to a "
                 "channel named serve, write -- before it");
        return PF_EXIT_USAGE;
    }
    cli->channel = argv[optind];
    cli->message = argc - optind == 2 ? argv[optind + 1] : NULL;
    return PF_EXIT_OK;
}

/* Everything that can be refused without touching Redis is refused first. */
static int pf_cli_check(struct pf_cli *cli)
{
    const char *why = pf_channel_check(cli->channel, strlen(cli->channel));
    int rc = pf_opts_finish(&cli->opts);

    if (rc)
        return rc;
    if (why) {
        pf_error("bad channel name: %s", why);
        return PF_EXIT_USAGE;
    }
    pf_buf_append(&cli->key, cli->opts.prefix, cli->opts.prefix_len);
    pf_buf_append_str(&cli->key, cli->channel);
    if (!pf_buf_ok(&cli->key)) {
        pf_error("out of memory");
        return PF_EXIT_FAIL;
    }
    return PF_EXIT_OK;
}

/* hiredis reports a command timeout as EAGAIN's text; say what it means instead. */
static const char *pf_sync_errstr(const redisContext *rc, int saved_errno)
{
    if (rc->err == REDIS_ERR_IO && (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK))
        return "no answer within 2 s";
    if (rc->err == REDIS_ERR_EOF)
        return "Redis closed the connection";
    return rc->errstr;
}

static int pf_sync_command(struct pf_cli *cli, const char *what, int argc, const char **argv)
{
    redisReply *r = redisCommandArgv(cli->rc, argc, argv, NULL);
    int rc = PF_EXIT_OK;

    if (!r) {
        pf_error("Redis %s failed (%s): %s", what, cli->opts.redis_desc,
                 pf_sync_errstr(cli->rc, errno));
        return PF_EXIT_FAIL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        pf_error("Redis %s failed (%s): %s", what, cli->opts.redis_desc, r->str);
        rc = PF_EXIT_FAIL;
    }
    freeReplyObject(r);
    return rc;
}

static int pf_sync_handshake(struct pf_cli *cli)
{
    const struct pf_redis_url *u = &cli->opts.redis;
    char db[16];
    const char *auth_user[] = {"AUTH", u->user, u->password};
    const char *auth[] = {"AUTH", u->password};
    const char *select[] = {"SELECT", db};
    int rc = PF_EXIT_OK;

    if (u->user[0])
        rc = pf_sync_command(cli, "authentication", 3, auth_user);
    else if (u->password[0])
        rc = pf_sync_command(cli, "authentication", 2, auth);
    if (rc == PF_EXIT_OK && u->db) {
        snprintf(db, sizeof(db), "%d", u->db);
        rc = pf_sync_command(cli, "SELECT", 2, select);
    }
    return rc;
}

static int pf_sync_connect(struct pf_cli *cli)
{
    const struct pf_redis_url *u = &cli->opts.redis;
    struct timeval tv = {PF_CLI_TIMEOUT_S, 0};

    cli->rc = u->path[0] ? redisConnectUnixWithTimeout(u->path, tv)
                         : redisConnectWithTimeout(u->host, u->port, tv);
    if (!cli->rc || cli->rc->err) {
        pf_error("cannot connect to Redis at %s: %s", cli->opts.redis_desc,
                 cli->rc ? cli->rc->errstr : "out of memory");
        return PF_EXIT_FAIL;
    }
    if (redisSetTimeout(cli->rc, tv) != REDIS_OK) {
        pf_error("cannot set the Redis command timeout: %s", cli->rc->errstr);
        return PF_EXIT_FAIL;
    }
    return pf_sync_handshake(cli);
}

static int pf_publish_append(struct pf_cli *cli, const char *msg, size_t len)
{
    const char *argv[] = {"PUBLISH", (const char *)cli->key.data, msg};
    size_t lens[] = {7, cli->key.len, len};

    if (redisAppendCommandArgv(cli->rc, 3, argv, lens) != REDIS_OK) {
        pf_error("out of memory queueing PUBLISH");
        return PF_EXIT_FAIL;
    }
    return PF_EXIT_OK;
}

static int pf_publish_print(const struct pf_cli *cli, const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER) {
        printf("%lld\n", r->integer);
        return PF_EXIT_OK;
    }
    if (r->type == REDIS_REPLY_ERROR)
        pf_error("Redis refused PUBLISH (%s): %s", cli->opts.redis_desc, r->str);
    else
        pf_error("unexpected Redis reply type %d to PUBLISH", r->type);
    return PF_EXIT_FAIL;
}

/* Reads the replies to the last n queued messages and prints their receiver counts. */
static int pf_publish_collect(struct pf_cli *cli, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        void *reply = NULL;
        int rc;
        if (redisGetReply(cli->rc, &reply) != REDIS_OK || !reply) {
            pf_error("Redis PUBLISH failed (%s): %s", cli->opts.redis_desc,
                     pf_sync_errstr(cli->rc, errno));
            return PF_EXIT_FAIL;
        }
        rc = pf_publish_print(cli, reply);
        freeReplyObject(reply);
        if (rc)
            return rc;
    }
    if (fflush(stdout) != 0) {
        pf_error("cannot write to stdout: %s", strerror(errno));
        return PF_EXIT_FAIL;
    }
    return PF_EXIT_OK;
}

/* Queues every complete line of in (and, at eof, the unterminated rest); keeps the partial
 * last line for the next chunk. *queued gets the number of messages queued. */
static int pf_queue_lines(struct pf_cli *cli, struct pf_buf *in, int eof, size_t *queued)
{
    char *p = (char *)in->data, *end = p + in->len, *nl;

    *queued = 0;
    while (p < end) {
        size_t len;
        nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl && !eof)
            break;
        len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (nl && len && p[len - 1] == '\r')
            len--;
        if (len) {
            if (pf_publish_append(cli, p, len))
                return PF_EXIT_FAIL;
            (*queued)++;
        }
        p = nl ? nl + 1 : end;
    }
    in->len = (size_t)(end - p);
    memmove(in->data, p, in->len);
    return PF_EXIT_OK;
}

/* Appends one read(2) worth of stdin to in; returns bytes read, 0 at eof, -1 on error. */
static ssize_t pf_read_chunk(struct pf_buf *in)
{
    ssize_t got;

    if (pf_buf_reserve(in, PF_CLI_CHUNK))
        return -1;
    do
        got = read(STDIN_FILENO, in->data + in->len, PF_CLI_CHUNK);
    while (got < 0 && errno == EINTR);
    if (got > 0)
        in->len += (size_t)got;
    return got;
}

static int pf_publish_stdin(struct pf_cli *cli)
{
    struct pf_buf in;
    ssize_t got;
    size_t queued;
    int rc = PF_EXIT_OK;

    pf_buf_init(&in);
    do {
        got = pf_read_chunk(&in);
        if (got < 0) {
            pf_error("cannot read stdin: %s", in.failed ? "out of memory" : strerror(errno));
            rc = PF_EXIT_FAIL;
            goto done;
        }
        rc = pf_queue_lines(cli, &in, got == 0, &queued);
        if (rc == PF_EXIT_OK)
            rc = pf_publish_collect(cli, queued);
    } while (rc == PF_EXIT_OK && got > 0);
done:
    pf_buf_free(&in);
    return rc;
}

static int pf_publish_arg(struct pf_cli *cli)
{
    int rc = pf_publish_append(cli, cli->message, strlen(cli->message));

    return rc ? rc : pf_publish_collect(cli, 1);
}

int pf_publish_main(int argc, char **argv)
{
    struct pf_cli cli;
    int rc;

    memset(&cli, 0, sizeof(cli));
    pf_opts_init(&cli.opts);
    pf_buf_init(&cli.key);
    /* A dropped Redis connection must become an error message, not a silent death. */
    signal(SIGPIPE, SIG_IGN);
    rc = pf_cli_args(&cli, argc, argv);
    if (rc)
        goto done;
    rc = pf_cli_check(&cli);
    if (rc)
        goto done;
    rc = pf_sync_connect(&cli);
    if (rc)
        goto done;
    rc = cli.message ? pf_publish_arg(&cli) : pf_publish_stdin(&cli);
done:
    if (cli.rc)
        redisFree(cli.rc);
    pf_buf_free(&cli.key);
    pf_opts_free(&cli.opts);
    return rc == PF_EXIT_DONE ? PF_EXIT_OK : rc;
}
