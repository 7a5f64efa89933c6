/* serve.h - `push-publish serve`: the HTTP publisher process.
 *
 * Owns: the event base, the listening socket, the serve flags, SIGTERM/SIGINT and graceful
 * shutdown (stop accepting, let requests in flight finish, at most PF_DRAIN_MS, exit 0). Must
 * not: answer requests itself (http_api does) or speak to Redis (async_link does). */
#ifndef PF_PUB_SERVE_H
#define PF_PUB_SERVE_H

#define PF_DRAIN_MS 5000

/* argv[0] is "serve". Returns the process exit code (see enum pf_pub_exit). */
int pf_serve_main(int argc, char **argv);

#endif
