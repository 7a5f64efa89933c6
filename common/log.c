/* log.c - see log.h. The level and ident are written once before any thread starts. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum pf_log_level pf_log_min = PF_LOG_INFO;
static const char *pf_log_ident = "pushfabric";
static int pf_log_json;

void pf_log_set_level(enum pf_log_level level) { pf_log_min = level; }
void pf_log_set_ident(const char *ident) { pf_log_ident = ident; }
void pf_log_set_json(int on) { pf_log_json = on; }

/* Copies msg into out as the body of a JSON string; stops early rather than overflow. */
static size_t pf_log_escape(char *out, size_t cap, const char *msg)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    for (; *msg && o + 7 < cap; msg++) {
        unsigned char c = (unsigned char)*msg;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[c >> 4];
            out[o + 5] = hex[c & 15];
            o += 6;
        } else {
            out[o++] = (char)c;
        }
    }
    return o;
}

void pf_log(enum pf_log_level level, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    char line[1024];
    struct timeval tv;
    struct tm tm;
    va_list ap;
    int n, m;

    if (level < pf_log_min)
        return;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    if (pf_log_json) {
        char msg[768];
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        n = snprintf(line, sizeof(line),
                     "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\",\"level\":\"%s\","
                     "\"proc\":\"%s\",\"pid\":%d,\"msg\":\"",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(tv.tv_usec / 1000), names[level], pf_log_ident,
                     (int)getpid());
        n += (int)pf_log_escape(line + n, sizeof(line) - (size_t)n - 3, msg);
        line[n++] = '"';
        line[n++] = '}';
        line[n++] = '\n';
        if (write(STDERR_FILENO, line, (size_t)n) < 0) {
            /* Nothing sensible to do when stderr is gone. */
        }
        return;
    }
    n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s[%d] %s: ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(tv.tv_usec / 1000), pf_log_ident, (int)getpid(), names[level]);
    va_start(ap, fmt);
    m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += m;
    if (n > (int)sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, (size_t)n) < 0) {
        /* Nothing sensible to do when stderr is gone. */
    }
}
