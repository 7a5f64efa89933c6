/* main.c - push-publish entry point: picks command-line mode or `serve`.
 *
 * Owns: that choice and the log identity. Must not: parse any flag itself. */
#include <string.h>

#include "log.h"
#include "publish.h"
#include "serve.h"

int main(int argc, char **argv)
{
    pf_log_set_ident("push-publish");
    if (argc > 1 && strcmp(argv[1], "serve") == 0)
        return pf_serve_main(argc - 1, argv + 1);
    return pf_publish_main(argc, argv);
}
