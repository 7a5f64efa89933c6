/* log.h - one line per event on stderr, with a timestamp and a level.
 *
 * Owns: formatting of log lines. Must not: allocate, or be called once per message on a hot path
 * (logging is for events that matter: link up/down, resubscribe, drain). Thread-safe: each line is
 * written with a single write(2). */
#ifndef PF_LOG_H
#define PF_LOG_H

enum pf_log_level { PF_LOG_DEBUG = 0, PF_LOG_INFO, PF_LOG_WARN, PF_LOG_ERROR };

/* Lines below this level are dropped; set once at start-up, before threads exist. */
void pf_log_set_level(enum pf_log_level level);
void pf_log_set_ident(const char *ident);
/* 1: one JSON object a line ({"ts","level","proc","pid","msg"}) for log shippers. */
void pf_log_set_json(int on);

void pf_log(enum pf_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define pf_debug(...) pf_log(PF_LOG_DEBUG, __VA_ARGS__)
#define pf_info(...) pf_log(PF_LOG_INFO, __VA_ARGS__)
#define pf_warn(...) pf_log(PF_LOG_WARN, __VA_ARGS__)
#define pf_error(...) pf_log(PF_LOG_ERROR, __VA_ARGS__)

#endif
