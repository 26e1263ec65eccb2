/* command.c — owner commands (LOAD_SHARD, DRAIN): signed by the model owner's ed25519 key
 * (named in the torrent's info dict), checked for owner, signature, model, target, freshness
 * and replay. One format for both; the signed `t` says which.
 * Not for: carrying a command out (node.c). Format: swarm.h / docs/swarm.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "swarm/swarm.h"

#define MAX_CMD 1024
#define MAX_NONCES 4096

static const char *const type_names[SW_CMD_COUNT_] = { "load_shard", "drain" };

const char *sw_cmd_type_name(enum sw_cmd_type t)
{
    return (unsigned)t < SW_CMD_COUNT_ ? type_names[t] : "unknown";
}

/* Keys in sorted order (BEP 3 dictionaries); DRAIN has no "sh". */
static void encode_cmd(const struct sw_load_cmd *c, struct sw_buf *b)
{
    sw_benc_dict(b);
    sw_benc_cstr(b, "h"); sw_benc_str(b, c->info_hash, 20);
    sw_benc_cstr(b, "n"); sw_benc_str(b, c->nonce, 16);
    sw_benc_cstr(b, "o"); sw_benc_str(b, c->owner, 32);
    if (c->type == SW_CMD_LOAD_SHARD) { sw_benc_cstr(b, "sh"); sw_benc_int(b, c->shard); }
    sw_benc_cstr(b, "t"); sw_benc_cstr(b, type_names[c->type]);
    sw_benc_cstr(b, "to"); sw_benc_str(b, c->target, SW_NODE_ID_LEN);
    sw_benc_cstr(b, "ts"); sw_benc_int(b, (int64_t)c->ts_s);
    sw_benc_end(b);
}

int sw_load_cmd_sign(struct sw_load_cmd *cmd, const struct sw_identity *owner, struct sw_buf *out)
{
    if (!cmd || !owner || !out || cmd->type >= SW_CMD_COUNT_) return SW_EINVAL;
    if (sodium_init() < 0) return SW_EUNSUPPORTED;
    sw_random_bytes(cmd->nonce, sizeof cmd->nonce);
    memcpy(cmd->owner, owner->pk, 32);
    struct sw_buf c = { 0 };
    encode_cmd(cmd, &c);
    if (!sw_buf_ok(&c)) { sw_buf_free(&c); return SW_ENOMEM; }
    uint8_t sig[crypto_sign_BYTES];
    crypto_sign_detached(sig, NULL, c.data, c.len, owner->sk);
    sw_benc_dict(out);
    sw_benc_cstr(out, "c"); sw_benc_str(out, c.data, c.len);
    sw_benc_cstr(out, "s"); sw_benc_str(out, sig, sizeof sig);
    sw_benc_end(out);
    sw_buf_free(&c);
    return sw_buf_ok(out) ? 0 : SW_ENOMEM;
}

/* Parses the envelope; *cmd_bytes and *sig point into p (sig NULL when absent). */
static int parse(const uint8_t *p, size_t len, struct sw_load_cmd *out, const uint8_t **cmd_bytes,
                 size_t *cmd_len, const uint8_t **sig, char *err, size_t err_len)
{
    if (len > MAX_CMD) {
        if (err_len) snprintf(err, err_len, "command of %zu bytes exceeds %d", len, MAX_CMD);
        return SW_ECORRUPT;
    }
    struct sw_blimits lim = { 64, 4 };
    struct sw_bdoc env = { 0 }, cd = { 0 };
    char berr[128];
    int rc = SW_ECORRUPT;
    *sig = NULL;
    if (sw_bdecode(p, len, &lim, &env, NULL, berr, sizeof berr)) {
        if (err_len) snprintf(err, err_len, "malformed command: %s", berr);
        return SW_ECORRUPT;
    }
    const struct sw_bnode *root = &env.nodes[0];
    const struct sw_bnode *c = root->type == SW_BDICT ? sw_bdict_get_type(&env, root, "c", SW_BSTR) : NULL;
    const struct sw_bnode *s = root->type == SW_BDICT ? sw_bdict_get_type(&env, root, "s", SW_BSTR) : NULL;
    if (!c) {
        if (err_len) snprintf(err, err_len, "malformed command: no 'c'");
        goto done;
    }
    if (sw_bdecode(c->str, c->str_len, &lim, &cd, NULL, berr, sizeof berr)) {
        if (err_len) snprintf(err, err_len, "malformed command body: %s", berr);
        goto done;
    }
    const struct sw_bnode *d = &cd.nodes[0], *n;
    memset(out, 0, sizeof *out);
    if (d->type != SW_BDICT) goto bad;
    if (!(n = sw_bdict_get_type(&cd, d, "t", SW_BSTR))) goto bad;
    if (sw_bstr_eq(n, "load_shard")) out->type = SW_CMD_LOAD_SHARD;
    else if (sw_bstr_eq(n, "drain")) out->type = SW_CMD_DRAIN;
    else {
        if (err_len) {
            char t[40];
            size_t k = 0;
            for (size_t i = 0; i < n->str_len && k + 1 < sizeof t; i++) /* printable, capped */
                t[k++] = n->str[i] >= 0x20 && n->str[i] < 0x7f ? (char)n->str[i] : '?';
            t[k] = 0;
            snprintf(err, err_len, "unknown command type '%s%s' (known: load_shard, drain)", t,
                     n->str_len >= sizeof t ? "…" : "");
        }
        goto done;
    }
    if (!(n = sw_bdict_get_type(&cd, d, "h", SW_BSTR)) || n->str_len != 20) goto bad;
    memcpy(out->info_hash, n->str, 20);
    if (!(n = sw_bdict_get_type(&cd, d, "n", SW_BSTR)) || n->str_len != 16) goto bad;
    memcpy(out->nonce, n->str, 16);
    if (!(n = sw_bdict_get_type(&cd, d, "o", SW_BSTR)) || n->str_len != 32) goto bad;
    memcpy(out->owner, n->str, 32);
    if (!(n = sw_bdict_get_type(&cd, d, "to", SW_BSTR)) || n->str_len != SW_NODE_ID_LEN) goto bad;
    memcpy(out->target, n->str, SW_NODE_ID_LEN);
    if (out->type == SW_CMD_LOAD_SHARD) { /* DRAIN: "sh" absent or ignored */
        if (!(n = sw_bdict_get_type(&cd, d, "sh", SW_BINT)) || n->ival < 0 || n->ival >= SW_SWARM_MAX_SHARDS) goto bad;
        out->shard = (uint32_t)n->ival;
    }
    if (!(n = sw_bdict_get_type(&cd, d, "ts", SW_BINT)) || n->ival < 0) goto bad;
    out->ts_s = (uint64_t)n->ival;
    *cmd_bytes = c->str;
    *cmd_len = c->str_len;
    if (s && s->str_len == crypto_sign_BYTES) *sig = s->str;
    rc = 0;
    goto done;
bad:
    if (err_len) snprintf(err, err_len, "malformed command: missing or bad field");
done:
    sw_bdoc_free(&cd);
    sw_bdoc_free(&env);
    return rc;
}

int sw_load_cmd_decode(const uint8_t *p, size_t len, struct sw_load_cmd *out, char *err,
                       size_t err_len)
{
    if (!p || !out) return SW_EINVAL;
    const uint8_t *cb, *sig;
    size_t cl;
    int rc = parse(p, len, out, &cb, &cl, &sig, err, err_len);
    if (rc) return rc;
    if (!sig) {
        if (err_len) snprintf(err, err_len, "unsigned");
        return SW_EPERM;
    }
    return 0;
}

struct sw_cmd_guard {
    struct sw_cmd_guard_config cfg;
    int has_owner;
    uint8_t owner[32];
    struct { uint8_t nonce[16]; uint64_t ts; } seen[MAX_NONCES];
    size_t n_seen, next;
};

int sw_cmd_guard_new(const struct sw_cmd_guard_config *cfg, struct sw_cmd_guard **out)
{
    if (!cfg || !out) return SW_EINVAL;
    struct sw_cmd_guard *g = calloc(1, sizeof *g);
    if (!g) return SW_ENOMEM;
    g->cfg = *cfg;
    if (cfg->owner_pk) { g->has_owner = 1; memcpy(g->owner, cfg->owner_pk, 32); }
    g->cfg.owner_pk = NULL;
    if (!g->cfg.max_skew_s) g->cfg.max_skew_s = 300;
    *out = g;
    return 0;
}

void sw_cmd_guard_free(struct sw_cmd_guard *g) { free(g); }

#define REFUSE(...) do { if (reason_len) snprintf(reason, reason_len, __VA_ARGS__); return SW_EPERM; } while (0)

int sw_cmd_guard_check_relay(const struct sw_cmd_guard *g, const uint8_t *p, size_t len,
                             uint64_t now_wall_s, struct sw_load_cmd *cmd_out, char *reason,
                             size_t reason_len)
{
    if (!g || !p || !cmd_out) return SW_EINVAL;
    if (sodium_init() < 0) return SW_EUNSUPPORTED;
    const uint8_t *cb, *sig;
    size_t cl;
    int rc = parse(p, len, cmd_out, &cb, &cl, &sig, reason, reason_len);
    if (rc) return rc;
    char a[17], b[17];
    if (!sig) REFUSE("unsigned");
    if (!g->has_owner) REFUSE("this model's torrent names no owner key, so no command is accepted");
    if (memcmp(cmd_out->owner, g->owner, 32)) {
        sw_hex_encode(cmd_out->owner, 8, a);
        sw_hex_encode(g->owner, 8, b);
        REFUSE("signed by a foreign key %s…, not the model owner %s…", a, b);
    }
    if (crypto_sign_verify_detached(sig, cb, cl, g->owner)) REFUSE("bad signature");
    if (memcmp(cmd_out->info_hash, g->cfg.info_hash, 20)) REFUSE("for another model");
    if (cmd_out->ts_s + g->cfg.max_skew_s < now_wall_s) REFUSE("too old (%llu s)", (unsigned long long)(now_wall_s - cmd_out->ts_s));
    if (cmd_out->ts_s > now_wall_s + g->cfg.max_skew_s) REFUSE("from the future (clock skew over %llu s)", (unsigned long long)g->cfg.max_skew_s);
    return 0;
}

int sw_cmd_guard_check(struct sw_cmd_guard *g, const uint8_t *p, size_t len, uint64_t now_wall_s,
                       struct sw_load_cmd *cmd_out, char *reason, size_t reason_len)
{
    int rc = sw_cmd_guard_check_relay(g, p, len, now_wall_s, cmd_out, reason, reason_len);
    if (rc) return rc;
    if (memcmp(cmd_out->target, g->cfg.self_id, SW_NODE_ID_LEN)) {
        char id[16];
        sw_node_id_short(cmd_out->target, id, sizeof id);
        if (reason_len) snprintf(reason, reason_len, "addressed to node %s, not this node", id);
        return SW_ENOTFOUND;
    }
    for (size_t i = 0; i < g->n_seen; i++)
        if (!memcmp(g->seen[i].nonce, cmd_out->nonce, 16)) REFUSE("replayed (nonce already used)");
    /* Remember the nonce; the oldest is forgotten when full (it is then outside the window
     * too, unless a flood of valid owner-signed commands arrives: the owner's own doing). */
    memcpy(g->seen[g->next].nonce, cmd_out->nonce, 16);
    g->seen[g->next].ts = cmd_out->ts_s;
    g->next = (g->next + 1) % MAX_NONCES;
    if (g->n_seen < MAX_NONCES) g->n_seen++;
    return 0;
}
