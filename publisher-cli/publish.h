/* publish.h - command-line mode: `push-publish [opts] CHANNEL [MESSAGE]`.
 *
 * Owns: one blocking hiredis connection (connect timeout and command timeout), the stdin line
 * reader and the receiver counts printed on stdout. Must not: be used by `serve`, whose event
 * loop must never block. */
#ifndef PF_PUB_PUBLISH_H
#define PF_PUB_PUBLISH_H

/* Returns the process exit code (see enum pf_pub_exit). */
int pf_publish_main(int argc, char **argv);

#endif
