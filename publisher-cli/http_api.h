/* http_api.h - the HTTP publisher's endpoints: POST /publish/CHANNEL, POST /publish,
 * GET /healthz and CORS preflight.
 *
 * Owns: routing, the API-key check, body limits, and one record per publish request from the
 * moment it is accepted until Redis has answered every message in it. Must not: listen, handle
 * signals, or know how the Redis link connects and reconnects. */
#ifndef PF_PUB_HTTP_API_H
#define PF_PUB_HTTP_API_H

#include <event2/http.h>

#include "async_link.h"
#include "opts.h"
#include "reply.h"

struct pf_api {
    const struct pf_pub_opts *opts;
    struct pf_alink *link;
    struct pf_flight flight;
};

void pf_api_init(struct pf_api *api, const struct pf_pub_opts *opts, struct pf_alink *link);
/* evhttp generic callback; arg is the struct pf_api. */
void pf_api_handle(struct evhttp_request *req, void *arg);

#endif
