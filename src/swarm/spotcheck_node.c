/* spotcheck_node.c — the spot checks' face outside the engine: the status JSON's
 * pipeline."spot" object (shown by /swarm/status, /metrics and the dashboard) and the
 * rate parser of `node --spot-check` / `generate --swarm --spot-check`.
 * Not for: the checks themselves (spotcheck.c). */
#include "swarm/pipeline_int.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sw_spot_parse_rate(const char *s, double *out)
{
    if (!s || !*s || !out) return SW_EINVAL;
    if (!strcmp(s, "off") || !strcmp(s, "0")) {
        *out = -1;
        return 0;
    }
    char *end;
    if (!strncmp(s, "1/", 2)) {
        unsigned long long n = strtoull(s + 2, &end, 10);
        if (*end || !n || s[2] < '0' || s[2] > '9') return SW_EINVAL;
        *out = 1.0 / (double)n;
        return 0;
    }
    double v = strtod(s, &end);
    if (*end || !(v > 0) || v > 1) return SW_EINVAL;
    *out = v;
    return 0;
}

void sw_spot_status_json(const struct sw_pipe *p, struct json_t *pl, uint64_t now_us)
{
    if (!p || !pl) return;
    struct sw_pipe_stats st = sw_pipe_stats(p);
    double rate, rtol;
    sw__spot_settings(p, &rate, &rtol);
    json_t *o = json_object();
    json_object_set_new(o, "rate", json_real(rate));
    json_object_set_new(o, "rtol", json_real(rtol));
    json_object_set_new(o, "checks", json_integer((json_int_t)st.spot_checks));
    json_object_set_new(o, "passed", json_integer((json_int_t)st.spot_passed));
    json_object_set_new(o, "failed", json_integer((json_int_t)st.spot_failed));
    json_object_set_new(o, "inconclusive", json_integer((json_int_t)st.spot_inconclusive));
    json_object_set_new(o, "positions_checked", json_integer((json_int_t)st.spot_positions));
    json_object_set_new(o, "audits_served", json_integer((json_int_t)st.audits_served));
    json_object_set_new(o, "audit_positions", json_integer((json_int_t)st.audit_positions));
    json_object_set_new(o, "audit_compute_seconds", json_real((double)st.audit_compute_us / 1e6));
    if (st.spot_corrupted) /* the test hook is on: say so */
        json_object_set_new(o, "test_corrupted_steps", json_integer((json_int_t)st.spot_corrupted));
    json_t *arr = json_array();
    size_t n = sw_pipe_distrusted(p, 0, NULL, now_us);
    for (size_t i = 0; i < n; i++) {
        struct sw_pipe_distrust_info d;
        sw_pipe_distrusted(p, i, &d, now_us);
        char hex[2 * SW_NODE_ID_LEN + 1], chex[2 * SW_NODE_ID_LEN + 1], sess[17];
        sw_hex_encode(d.node, SW_NODE_ID_LEN, hex);
        sw_hex_encode(d.checker, SW_NODE_ID_LEN, chex);
        snprintf(sess, sizeof sess, "%016llx", (unsigned long long)d.session);
        json_t *x = json_object();
        json_object_set_new(x, "node", json_string(hex));
        json_object_set_new(x, "shard", json_integer(d.shard));
        json_object_set_new(x, "what", json_string(d.token ? "wrong token" : "wrong hidden states"));
        json_object_set_new(x, "session", json_string(sess));
        json_object_set_new(x, "pos", json_integer(d.pos));
        json_object_set_new(x, "max_abs_diff", json_real(isfinite(d.max_abs) ? d.max_abs : 1e30));
        json_object_set_new(x, "rel_err", json_real(isfinite(d.rel_err) ? d.rel_err : 1e30));
        json_object_set_new(x, "checker", json_string(chex));
        json_object_set_new(x, "age_s", json_real(d.age_s));
        json_object_set_new(x, "evidence", json_string(d.evidence));
        json_array_append_new(arr, x);
    }
    json_object_set_new(o, "distrusted", arr);
    json_object_set_new(pl, "spot", o);
}
