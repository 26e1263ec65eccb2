/* err_log.c — sw_strerror and the process-wide log sink.
 * The sink is set once by the host; library code only calls sw_log(). */
#include "util.h"

#include <pthread.h>
#include <stdio.h>

const char *sw_strerror(int err)
{
    switch (err) {
    case SW_OK: return "success";
    case SW_EINVAL: return "invalid argument";
    case SW_ENOMEM: return "out of memory";
    case SW_EIO: return "input/output error";
    case SW_ECORRUPT: return "malformed input";
    case SW_EAGAIN: return "need more data";
    case SW_ENOTFOUND: return "not found";
    case SW_ETOOBIG: return "too big";
    case SW_EUNSUPPORTED: return "not supported";
    case SW_ETIMEDOUT: return "timed out";
    case SW_EEXIST: return "already exists";
    case SW_ENOSPC: return "no space left on device";
    case SW_ECLOSED: return "connection closed";
    case SW_EPERM: return "not permitted";
    case SW_EBUSY: return "busy";
    case SW_ESTATE: return "not valid in the current state";
    case SW_ERANGE: return "out of range";
    default: return "unknown error";
    }
}

int sw_errf(char *err, size_t err_len, int code, const char *fmt, ...)
{
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return code;
}

static void log_default(void *ud, enum sw_log_level level, const char *subsys, const char *msg)
{
    (void)ud;
    fprintf(stderr, "[%s] %s: %s\n", subsys, sw_log_level_name(level), msg);
}

/* The one process-wide setting, by design (like a ggml log callback): the host owns it. */
static struct {
    sw_log_fn fn;
    void *ud;
    enum sw_log_level min;
} g_log = { log_default, NULL, SW_LOG_WARN };

void sw_log_set(sw_log_fn fn, void *ud, enum sw_log_level min_level)
{
    g_log.fn = fn ? fn : log_default;
    g_log.ud = fn ? ud : NULL;
    g_log.min = fn ? min_level : SW_LOG_WARN;
}

int sw_log_enabled(enum sw_log_level level) { return level >= g_log.min; }

const char *sw_log_level_name(enum sw_log_level level)
{
    switch (level) {
    case SW_LOG_DEBUG: return "debug";
    case SW_LOG_INFO: return "info";
    case SW_LOG_WARN: return "warning";
    case SW_LOG_ERROR: return "error";
    }
    return "?";
}

void sw_logv(enum sw_log_level level, const char *subsys, const char *fmt, va_list ap)
{
    if (level < g_log.min) return;
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    g_log.fn(g_log.ud, level, subsys ? subsys : "-", msg);
}

void sw_log(enum sw_log_level level, const char *subsys, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sw_logv(level, subsys, fmt, ap);
    va_end(ap);
}
