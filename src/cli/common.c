/* common.c — helpers shared by the subcommands (see cli.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "infer/tok.h"
#include "net/noise.h"

int sw_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "shardswarm %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'shardswarm %s --help'.\n", cmd);
    return SW_EXIT_USAGE;
}

int sw_cli_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "shardswarm %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return SW_EXIT_FAIL;
}

int sw_cli_swarm_key(const char *cmd, const char *path, uint8_t key[32])
{
    char err[512];
    if (sw_swarm_key_load(path, key, err, sizeof err)) return sw_cli_usage_error(cmd, "--swarm-key %s", err);
    return 0;
}

int sw_cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ logging */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static void log_human(void *ud, enum sw_log_level level, const char *subsys, const char *msg)
{
    (void)ud;
    pthread_mutex_lock(&log_lock);
    if (level >= SW_LOG_WARN)
        fprintf(stderr, "[%s] %s: %s\n", subsys, sw_log_level_name(level), msg);
    else
        fprintf(stderr, "[%s] %s\n", subsys, msg);
    fflush(stderr);
    pthread_mutex_unlock(&log_lock);
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static void log_json(void *ud, enum sw_log_level level, const char *subsys, const char *msg)
{
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    pthread_mutex_lock(&log_lock);
    fprintf(stderr, "{\"ts\":%lld.%03ld,\"level\":\"%s\",\"subsys\":", (long long)ts.tv_sec,
            ts.tv_nsec / 1000000L, sw_log_level_name(level));
    json_str(stderr, subsys);
    fputs(",\"msg\":", stderr);
    json_str(stderr, msg);
    fputs("}\n", stderr);
    fflush(stderr);
    pthread_mutex_unlock(&log_lock);
}

int sw_cli_log_setup(const char *format, int verbose)
{
    enum sw_log_level min = verbose ? SW_LOG_DEBUG : SW_LOG_INFO;
    if (!format || !strcmp(format, "human")) sw_log_set(log_human, NULL, min);
    else if (!strcmp(format, "json")) sw_log_set(log_json, NULL, min);
    else return SW_EXIT_USAGE;
    return 0;
}

/* ------------------------------------------------------------------ numbers */

int sw_cli_parse_u64(const char *cmd, const char *flag, const char *s, uint64_t min, uint64_t max,
                     uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return sw_cli_usage_error(cmd, "%s expects a number, got '%s'", flag, s ? s : "");
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return sw_cli_usage_error(cmd, "%s expects a whole number, got '%s'", flag, s);
    if (v < min || v > max)
        return sw_cli_usage_error(cmd, "%s must be between %llu and %llu, got %s", flag,
                                  (unsigned long long)min, (unsigned long long)max, s);
    *out = v;
    return 0;
}

int sw_cli_parse_u32(const char *cmd, const char *flag, const char *s, uint32_t min, uint32_t max,
                     uint32_t *out)
{
    uint64_t v = 0;
    int rc = sw_cli_parse_u64(cmd, flag, s, min, max, &v);
    if (rc) return rc;
    *out = (uint32_t)v;
    return 0;
}

int sw_cli_parse_f32(const char *cmd, const char *flag, const char *s, float min, float max,
                     float *out)
{
    if (!s || !*s) return sw_cli_usage_error(cmd, "%s expects a number", flag);
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v))
        return sw_cli_usage_error(cmd, "%s expects a number, got '%s'", flag, s);
    if (v < min || v > max)
        return sw_cli_usage_error(cmd, "%s must be between %g and %g, got %s", flag, min, max, s);
    *out = (float)v;
    return 0;
}

int sw_cli_parse_ids(const char *s, int32_t **ids_out, size_t *n_out)
{
    size_t cap = 16, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return SW_ENOMEM;
    while (*s) {
        while (*s == ' ' || *s == ',' || *s == '\t' || *s == '\n') s++;
        if (!*s) break;
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > INT32_MAX) {
            free(ids);
            return SW_EINVAL;
        }
        if (n == cap) {
            int32_t *p = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!p) {
                free(ids);
                return SW_ENOMEM;
            }
            ids = p;
        }
        ids[n++] = (int32_t)v;
        s = end;
    }
    *ids_out = ids;
    *n_out = n;
    return 0;
}

void sw_cli_synth_prompt(uint32_t n_vocab, int32_t bos, int32_t *ids, uint32_t n)
{
    uint64_t x = 12345;
    for (uint32_t i = 0; i < n; i++) { /* ids 259.. keep clear of byte and control tokens */
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((x >> 33) % (n_vocab > 300 ? n_vocab - 300 : n_vocab)) + (n_vocab > 300 ? 259 : 0);
    }
    if (bos >= 0 && n) ids[0] = bos;
}

int sw_cli_parse_bind(const char *cmd, const char *flag, const char *s, int *family_out)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (s && inet_pton(AF_INET, s, &a4) == 1) { *family_out = 4; return 0; }
    if (s && inet_pton(AF_INET6, s, &a6) == 1) { *family_out = 6; return 0; }
    return sw_cli_usage_error(cmd, "%s expects an IP address of this machine (like 127.0.0.1, 0.0.0.0 or ::1), "
                                   "got '%s'", flag, s ? s : "");
}

int sw_cli_parse_hostport(const char *cmd, const char *flag, const char *s, char *host_out,
                          uint16_t *port_out)
{
    const char *colon = s ? strrchr(s, ':') : NULL;
    if (!colon || colon == s || (size_t)(colon - s) >= 256)
        return sw_cli_usage_error(cmd, "%s expects HOST:PORT, got '%s'", flag, s ? s : "");
    uint32_t port;
    int rc = sw_cli_parse_u32(cmd, flag, colon + 1, 1, 65535, &port);
    if (rc) return rc;
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') { h++; hl -= 2; } /* [::1]:port */
    memcpy(host_out, h, hl);
    host_out[hl] = 0;
    *port_out = (uint16_t)port;
    return 0;
}

/* ------------------------------------------------------------------ progress */

void sw_cli_bar_init(struct sw_cli_bar *b, const char *label)
{
    memset(b, 0, sizeof *b);
    b->label = label;
    b->tty = isatty(STDERR_FILENO);
    sw_rate_reset(&b->rate, 3000);
}

static void bar_draw(struct sw_cli_bar *b, uint64_t done, uint64_t total, double rate, uint64_t eta_ms,
                     uint64_t now)
{
    if (!b->tty || total == 0 || b->finished) return;
    int last = done >= total;
    if (!last && b->last_ms && now - b->last_ms < SW_CLI_BAR_MS) return;
    b->last_ms = now ? now : 1;
    double frac = (double)done / (double)total;
    if (frac > 1) frac = 1;
    int width = 30, fill = (int)(frac * width);
    char rbuf[32], ebuf[32];
    if (rate > 0) sw_fmt_bytes((uint64_t)rate, rbuf, sizeof rbuf);
    else snprintf(rbuf, sizeof rbuf, "?");
    if (last) snprintf(ebuf, sizeof ebuf, "0s");
    else if (eta_ms == UINT64_MAX) snprintf(ebuf, sizeof ebuf, "?");
    else sw_fmt_duration_ms(eta_ms, ebuf, sizeof ebuf);
    fprintf(stderr, "\r%s [%.*s%*s] %5.1f%% %s/s ETA %s  ", b->label, fill,
            "##############################", width - fill, "", frac * 100.0, rbuf, ebuf);
    if (last) {
        fputc('\n', stderr);
        b->finished = 1;
    }
    fflush(stderr);
}

void sw_cli_bar_update(struct sw_cli_bar *b, uint64_t done, uint64_t total)
{
    if (!b->tty) return;
    uint64_t now = sw_time_ms();
    sw_rate_add(&b->rate, now, done);
    bar_draw(b, done, total, sw_rate_bps(&b->rate, now),
             sw_rate_eta_ms(&b->rate, now, done < total ? total - done : 0), now);
}

void sw_cli_bar_update_rate(struct sw_cli_bar *b, uint64_t done, uint64_t total, double rate_bps,
                            uint64_t eta_ms)
{
    bar_draw(b, done, total, rate_bps, eta_ms, sw_time_ms());
}

int sw_cli_sampler_flag(const char *cmd, const char *f, const char *v, struct sw_sampler_params *sp,
                        int *seed_set, int *rc)
{
    *rc = 0;
    if (!strcmp(f, "--temp")) *rc = sw_cli_parse_f32(cmd, f, v, 0, 100, &sp->temperature);
    else if (!strcmp(f, "--top-k")) *rc = sw_cli_parse_u32(cmd, f, v, 0, 1u << 24, &sp->top_k);
    else if (!strcmp(f, "--top-p")) *rc = sw_cli_parse_f32(cmd, f, v, 0, 1, &sp->top_p);
    else if (!strcmp(f, "--min-p")) *rc = sw_cli_parse_f32(cmd, f, v, 0, 1, &sp->min_p);
    /* the sampler divides by it: 0 is refused here, not later by a stage */
    else if (!strcmp(f, "--repeat-penalty")) *rc = sw_cli_parse_f32(cmd, f, v, 0.01f, 100, &sp->repeat_penalty);
    else if (!strcmp(f, "--repeat-last-n"))
        *rc = sw_cli_parse_u32(cmd, f, v, 0, SW_SAMPLER_MAX_WINDOW, &sp->repeat_last_n);
    else if (!strcmp(f, "--seed")) {
        *rc = sw_cli_parse_u64(cmd, f, v, 0, UINT64_MAX, &sp->seed);
        if (!*rc) *seed_set = 1;
    } else return 0;
    return 1;
}
