/* record.c — capability records: canonical bencoding, ed25519 signature, and a strict
 * decoder for records that arrive from other nodes. Not for: deciding what a record means
 * for readiness (view.c). Format: docs/swarm.md "Capability records". */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "swarm/swarm.h"

static const char *phase_names[SW_PHASE_COUNT_] = {
    "none", "waiting", "fetching", "verifying", "loading", "loaded", "failed", "drained",
};

const char *sw_phase_name(enum sw_phase p)
{
    return (unsigned)p < SW_PHASE_COUNT_ ? phase_names[p] : "unknown";
}

/* Record keys, written in this (sorted, BEP 3) order:
 * api bd bt eta [g gl gm] h id lf ll ln mem mv nb ph q rate sa seq sh th tps v
 * (g, gl, gm: the stage's GPU, only when it holds layers, so CPU nodes' records are what
 * they were before) */
static void encode_record(const struct sw_cap *c, struct sw_buf *b)
{
    sw_benc_dict(b);
    sw_benc_cstr(b, "api"); sw_benc_cstr(b, c->api_addr);
    sw_benc_cstr(b, "bd"); sw_benc_int(b, (int64_t)c->bytes_done);
    sw_benc_cstr(b, "bt"); sw_benc_int(b, (int64_t)c->bytes_total);
    sw_benc_cstr(b, "eta"); sw_benc_int(b, (int64_t)c->eta_ms);
    if (c->gpu[0]) {
        sw_benc_cstr(b, "g"); sw_benc_cstr(b, c->gpu);
        sw_benc_cstr(b, "gl"); sw_benc_int(b, c->gpu_layers);
        sw_benc_cstr(b, "gm"); sw_benc_int(b, (int64_t)c->gpu_mem);
    }
    sw_benc_cstr(b, "h"); sw_benc_str(b, c->info_hash, 20);
    sw_benc_cstr(b, "id"); sw_benc_str(b, c->node_id, SW_NODE_ID_LEN);
    sw_benc_cstr(b, "lf"); sw_benc_int(b, c->layer_first);
    sw_benc_cstr(b, "ll"); sw_benc_int(b, c->layer_last);
    sw_benc_cstr(b, "ln"); sw_benc_cstr(b, c->listen_addr);
    sw_benc_cstr(b, "mem"); sw_benc_int(b, (int64_t)c->mem_free);
    sw_benc_cstr(b, "mv"); sw_benc_int(b, c->movable ? 1 : 0);
    uint32_t nn = SW_MIN(c->n_neighbours, (uint32_t)SW_SWARM_MAX_NEIGHBOURS);
    sw_benc_cstr(b, "nb"); sw_benc_str(b, c->neighbours, (size_t)nn * SW_SWARM_NB_PREFIX);
    sw_benc_cstr(b, "ph"); sw_benc_int(b, c->phase);
    sw_benc_cstr(b, "q"); sw_benc_int(b, c->queue);
    sw_benc_cstr(b, "rate"); sw_benc_int(b, (int64_t)c->rate_bps);
    sw_benc_cstr(b, "sa"); sw_benc_int(b, c->seed_all ? 1 : 0);
    sw_benc_cstr(b, "seq"); sw_benc_int(b, (int64_t)c->seq);
    sw_benc_cstr(b, "sh"); sw_benc_int(b, c->shard);
    sw_benc_cstr(b, "th"); sw_benc_int(b, c->threads);
    sw_benc_cstr(b, "tps"); sw_benc_int(b, c->tokens_per_s_milli);
    sw_benc_cstr(b, "v"); sw_benc_int(b, 1);
    sw_benc_end(b);
}

int sw_cap_encode(const struct sw_cap *cap, const struct sw_identity *id, struct sw_buf *out)
{
    if (!cap || !id || !out) return SW_EINVAL;
    if (memcmp(cap->node_id, id->pk, SW_NODE_ID_LEN)) return SW_EINVAL;
    if (sodium_init() < 0) return SW_EUNSUPPORTED;
    struct sw_buf rec = { 0 };
    encode_record(cap, &rec);
    if (!sw_buf_ok(&rec)) { sw_buf_free(&rec); return SW_ENOMEM; }
    uint8_t sig[crypto_sign_BYTES];
    crypto_sign_detached(sig, NULL, rec.data, rec.len, id->sk);
    sw_benc_dict(out);
    sw_benc_cstr(out, "r");
    sw_benc_str(out, rec.data, rec.len);
    sw_benc_cstr(out, "s");
    sw_benc_str(out, sig, sizeof sig);
    sw_benc_end(out);
    sw_buf_free(&rec);
    return sw_buf_ok(out) ? 0 : SW_ENOMEM;
}

#define FAIL(...) do { if (err_len) snprintf(err, err_len, __VA_ARGS__); rc = SW_ECORRUPT; goto done; } while (0)

static int get_int(const struct sw_bdoc *d, const struct sw_bnode *dict, const char *key,
                   int64_t min, int64_t max, int64_t *out)
{
    const struct sw_bnode *n = sw_bdict_get_type(d, dict, key, SW_BINT);
    if (!n || n->ival < min || n->ival > max) return -1;
    *out = n->ival;
    return 0;
}

static int get_text(const struct sw_bdoc *d, const struct sw_bnode *dict, const char *key,
                    char *out, size_t cap)
{
    const struct sw_bnode *n = sw_bdict_get_type(d, dict, key, SW_BSTR);
    if (!n || n->str_len >= cap) return -1;
    for (size_t i = 0; i < n->str_len; i++)
        if (n->str[i] < 0x20 || n->str[i] > 0x7e) return -1; /* printable ASCII addresses only */
    memcpy(out, n->str, n->str_len);
    out[n->str_len] = 0;
    return 0;
}

int sw_cap_decode(const uint8_t *p, size_t len, struct sw_cap *out, char *err, size_t err_len)
{
    if (!p || !out) return SW_EINVAL;
    if (err_len) err[0] = 0;
    if (len > SW_SWARM_MAX_RECORD) {
        if (err_len) snprintf(err, err_len, "record of %zu bytes exceeds %d", len, SW_SWARM_MAX_RECORD);
        return SW_ETOOBIG;
    }
    if (sodium_init() < 0) return SW_EUNSUPPORTED;
    struct sw_blimits lim = { 64, 4 };
    struct sw_bdoc outer = { 0 }, rec = { 0 };
    char berr[128];
    int rc = sw_bdecode(p, len, &lim, &outer, NULL, berr, sizeof berr);
    if (rc) {
        if (err_len) snprintf(err, err_len, "record envelope: %s", berr);
        return rc == SW_ETOOBIG ? SW_ETOOBIG : SW_ECORRUPT;
    }
    const struct sw_bnode *root = &outer.nodes[0];
    if (root->type != SW_BDICT) FAIL("record envelope is not a dictionary");
    const struct sw_bnode *r = sw_bdict_get_type(&outer, root, "r", SW_BSTR);
    const struct sw_bnode *s = sw_bdict_get_type(&outer, root, "s", SW_BSTR);
    if (!r) FAIL("record envelope has no 'r'");
    if (!s || s->str_len != crypto_sign_BYTES) {
        if (err_len) snprintf(err, err_len, "record is unsigned");
        rc = SW_EPERM;
        goto done;
    }
    struct sw_blimits rlim = { 128, 2 };
    rc = sw_bdecode(r->str, r->str_len, &rlim, &rec, NULL, berr, sizeof berr);
    if (rc) {
        rec.nodes = NULL;
        FAIL("record: %s", berr);
    }
    const struct sw_bnode *d = &rec.nodes[0];
    if (d->type != SW_BDICT) FAIL("record is not a dictionary");
    memset(out, 0, sizeof *out);
    const struct sw_bnode *n = sw_bdict_get_type(&rec, d, "id", SW_BSTR);
    if (!n || n->str_len != SW_NODE_ID_LEN) FAIL("record field 'id' missing or not 32 bytes");
    memcpy(out->node_id, n->str, SW_NODE_ID_LEN);
    if (crypto_sign_verify_detached(s->str, r->str, r->str_len, out->node_id)) {
        if (err_len) snprintf(err, err_len, "record signature does not verify");
        rc = SW_EPERM;
        goto done;
    }
    n = sw_bdict_get_type(&rec, d, "h", SW_BSTR);
    if (!n || n->str_len != 20) FAIL("record field 'h' missing or not 20 bytes");
    memcpy(out->info_hash, n->str, 20);
    int64_t v;
    if (get_int(&rec, d, "v", 1, 1, &v)) FAIL("record field 'v' missing or unsupported");
    if (get_int(&rec, d, "seq", 0, INT64_MAX, &v)) FAIL("record field 'seq' missing or negative");
    out->seq = (uint64_t)v;
    if (get_int(&rec, d, "sh", -1, SW_SWARM_MAX_SHARDS - 1, &v)) FAIL("record field 'sh' out of range");
    out->shard = (int32_t)v;
    if (get_int(&rec, d, "ph", 0, SW_PHASE_COUNT_ - 1, &v)) FAIL("record field 'ph' out of range");
    out->phase = (uint8_t)v;
    if (get_int(&rec, d, "sa", 0, 1, &v)) FAIL("record field 'sa' not 0/1");
    out->seed_all = (uint8_t)v;
    if (get_int(&rec, d, "mv", 0, 1, &v)) FAIL("record field 'mv' not 0/1");
    out->movable = (uint8_t)v;
    if (get_int(&rec, d, "bd", 0, INT64_MAX, &v)) FAIL("record field 'bd' missing or negative");
    out->bytes_done = (uint64_t)v;
    if (get_int(&rec, d, "bt", 0, INT64_MAX, &v)) FAIL("record field 'bt' missing or negative");
    out->bytes_total = (uint64_t)v;
    if (out->bytes_done > out->bytes_total) FAIL("record field 'bd' exceeds 'bt'");
    if (get_int(&rec, d, "rate", 0, INT64_MAX, &v)) FAIL("record field 'rate' missing or negative");
    out->rate_bps = (uint64_t)v;
    if (get_int(&rec, d, "eta", 0, INT64_MAX, &v)) FAIL("record field 'eta' missing or negative");
    out->eta_ms = (uint64_t)v;
    if (get_int(&rec, d, "lf", -1, INT32_MAX, &v)) FAIL("record field 'lf' out of range");
    out->layer_first = (int32_t)v;
    if (get_int(&rec, d, "ll", -1, INT32_MAX, &v)) FAIL("record field 'll' out of range");
    out->layer_last = (int32_t)v;
    if (get_int(&rec, d, "mem", 0, INT64_MAX, &v)) FAIL("record field 'mem' missing or negative");
    out->mem_free = (uint64_t)v;
    if (get_int(&rec, d, "th", 0, 65536, &v)) FAIL("record field 'th' out of range");
    out->threads = (uint32_t)v;
    if (get_int(&rec, d, "tps", 0, UINT32_MAX, &v)) FAIL("record field 'tps' out of range");
    out->tokens_per_s_milli = (uint32_t)v;
    if (get_int(&rec, d, "q", 0, UINT32_MAX, &v)) FAIL("record field 'q' out of range");
    out->queue = (uint32_t)v;
    if (get_text(&rec, d, "api", out->api_addr, sizeof out->api_addr))
        FAIL("record field 'api' missing, too long or not printable");
    if (get_text(&rec, d, "ln", out->listen_addr, sizeof out->listen_addr))
        FAIL("record field 'ln' missing, too long or not printable");
    if (sw_bdict_get(&rec, d, "g")) { /* optional: the GPU */
        if (get_text(&rec, d, "g", out->gpu, sizeof out->gpu) || !out->gpu[0])
            FAIL("record field 'g' empty, too long or not printable");
        if (get_int(&rec, d, "gl", 1, 65536, &v)) FAIL("record field 'gl' missing or out of range");
        out->gpu_layers = (uint32_t)v;
        if (get_int(&rec, d, "gm", 0, INT64_MAX, &v)) FAIL("record field 'gm' missing or negative");
        out->gpu_mem = (uint64_t)v;
    }
    n = sw_bdict_get_type(&rec, d, "nb", SW_BSTR);
    if (!n || n->str_len % SW_SWARM_NB_PREFIX ||
        n->str_len / SW_SWARM_NB_PREFIX > SW_SWARM_MAX_NEIGHBOURS)
        FAIL("record field 'nb' missing or malformed");
    out->n_neighbours = (uint32_t)(n->str_len / SW_SWARM_NB_PREFIX);
    memcpy(out->neighbours, n->str, n->str_len);
    /* Canonical form: the bytes must be exactly what our encoder writes for these values
     * (sorted keys, no extra or duplicate keys, minimal integers). */
    struct sw_buf again = { 0 };
    encode_record(out, &again);
    int same = sw_buf_ok(&again) && again.len == r->str_len && !memcmp(again.data, r->str, r->str_len);
    sw_buf_free(&again);
    if (!same) FAIL("record is not in canonical form (unknown, duplicate or unsorted keys)");
    rc = 0;
done:
    sw_bdoc_free(&rec);
    sw_bdoc_free(&outer);
    return rc;
}
