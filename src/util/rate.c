/* rate.c — a byte-rate meter over a sliding window of real time, for download and hashing
 * progress. Pure: the caller passes the time. Not for: formatting (sw_fmt_bytes). */
#include <string.h>

#include "util.h"

#define MIN_SPAN_MS 100 /* under this, a rate is noise */

void sw_rate_reset(struct sw_rate *r, uint64_t window_ms)
{
    memset(r, 0, sizeof *r);
    r->window_ms = window_ms ? window_ms : 5000;
}

static void start_run(struct sw_rate *r, uint64_t now_ms, uint64_t total)
{
    r->n = 1;
    r->head = 0;
    r->t_ms[0] = now_ms;
    r->bytes[0] = total;
}

void sw_rate_add(struct sw_rate *r, uint64_t now_ms, uint64_t total)
{
    if (!r->window_ms) r->window_ms = 5000;
    if (!r->fed || total < r->cur_bytes || now_ms < r->cur_ms) {
        /* first count, or the count or the clock went back: nothing to measure from yet */
        r->fed = 1;
        r->n = 0;
        r->cur_ms = now_ms;
        r->cur_bytes = total;
        return;
    }
    if (total == r->cur_bytes) return; /* no progress: the time passing lowers the rate by itself */
    if (!r->n || now_ms - r->cur_ms > SW_RATE_IDLE_WINDOWS * r->window_ms) {
        /* A run starts at its first increase: the time before it (connecting, waiting for a
         * peer, a long idle spell) is not transfer time, and the bytes of this first step
         * arrived over an unknown span, so the run is measured from here. */
        start_run(r, now_ms, total);
    } else if (now_ms - r->t_ms[r->head] >= r->window_ms / 16) {
        r->head = (r->head + 1) % SW_RATE_SLOTS;
        r->t_ms[r->head] = now_ms;
        r->bytes[r->head] = total;
        if (r->n < SW_RATE_SLOTS) r->n++;
    }
    r->cur_ms = now_ms;
    r->cur_bytes = total;
}

double sw_rate_bps(const struct sw_rate *r, uint64_t now_ms)
{
    if (!r->n || now_ms < r->cur_ms) return 0;
    uint64_t from = now_ms > r->window_ms ? now_ms - r->window_ms : 0;
    uint32_t oldest = (r->head + SW_RATE_SLOTS - (r->n - 1)) % SW_RATE_SLOTS;
    uint64_t t0 = r->t_ms[oldest];
    double b0 = (double)r->bytes[oldest];
    if (t0 < from) {
        /* The window starts between two samples (or after the last one): the count at its
         * start is interpolated, as if the bytes between samples came evenly. */
        uint32_t i = oldest;
        for (uint32_t k = 1; k < r->n; k++) {
            uint32_t j = (i + 1) % SW_RATE_SLOTS;
            if (r->t_ms[j] > from) break;
            i = j;
        }
        uint32_t j = (i + 1) % SW_RATE_SLOTS;
        uint64_t ta = r->t_ms[i], tb = i == r->head ? r->cur_ms : r->t_ms[j];
        double ba = (double)r->bytes[i], bb = (double)(i == r->head ? r->cur_bytes : r->bytes[j]);
        if (tb <= from) {
            b0 = bb; /* nothing counted since before the window: only the stall is inside it */
        } else {
            b0 = ba + (bb - ba) * (double)(from - ta) / (double)(tb - ta);
        }
        t0 = from;
    }
    uint64_t span = now_ms - t0;
    if (span < MIN_SPAN_MS) return 0;
    return ((double)r->cur_bytes - b0) * 1000.0 / (double)span;
}

uint64_t sw_rate_eta_ms(const struct sw_rate *r, uint64_t now_ms, uint64_t remaining)
{
    if (!remaining) return 0;
    double bps = sw_rate_bps(r, now_ms);
    if (bps <= 0) return UINT64_MAX;
    double ms = (double)remaining * 1000.0 / bps;
    return ms >= 1e15 ? UINT64_MAX : (uint64_t)(ms + 0.5);
}
