/* reply.h - how the HTTP publisher answers, and how many answers are still under way.
 *
 * Owns: response bodies and the headers every response carries (CORS, no caching, Connection:
 * close while shutting down), and the count of requests not yet answered or not yet written
 * out, which shutdown waits on. Must not: choose status codes, parse requests or touch Redis. */
#ifndef PF_PUB_REPLY_H
#define PF_PUB_REPLY_H

#include <event2/http.h>
#include <stddef.h>

struct pf_flight {
    unsigned open;      /* requests received and not answered yet */
    unsigned unflushed; /* answers handed to libevent and not fully written yet */
    int closing;        /* shutting down: clients should not reuse their connection */
    void (*on_idle)(void *arg);
    void *idle_arg;
};

/* Every request counted here must get exactly one pf_reply_*() call. */
void pf_flight_begin(struct pf_flight *f);
/* Starts shutdown: on_idle(arg) is called once nothing is open or unflushed (maybe now). */
void pf_flight_drain(struct pf_flight *f, void (*on_idle)(void *), void *arg);

void pf_reply_json(struct pf_flight *f, struct evhttp_request *req, int code, const char *json,
                   size_t len);
/* {"error":code,"message":msg}; msg is escaped here. */
void pf_reply_error(struct pf_flight *f, struct evhttp_request *req, int status,
                    const char *code, const char *msg);
void pf_reply_empty(struct pf_flight *f, struct evhttp_request *req, int code);

#endif
