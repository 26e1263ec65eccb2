/* command.c — owner commands (LOAD_SHARD, DRAIN): signed by the model owner's ed25519 key
 * (named in the torrent's info dict), checked for owner, signature, model, target, freshness
 * and replay. One format for both; the signed `t` says which.
 * Not for: carrying a command out (node.c). Format: swarm.h / docs/swarm.md. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    char *nonce_file;          /* NULL: memory only */
    size_t n_appended;         /* lines appended since the file was last rewritten */
};

/* ---- seen nonces, kept on disk: one line "<32 hex> <ts>" each. A command is refused once
 * ts + max_skew_s has passed, so only the nonces of that window matter: the file is
 * rewritten with just those at start and whenever MAX_NONCES lines were appended (at most
 * 2 x MAX_NONCES lines of 45 bytes, ~370 KB). */

static int seen_has(const struct sw_cmd_guard *g, const uint8_t nonce[16])
{
    for (size_t i = 0; i < g->n_seen; i++)
        if (!memcmp(g->seen[i].nonce, nonce, 16)) return 1;
    return 0;
}

/* The oldest is forgotten when full (it is then outside the window too, unless a flood of
 * valid owner-signed commands arrives: the owner's own doing). */
static void seen_add(struct sw_cmd_guard *g, const uint8_t nonce[16], uint64_t ts)
{
    memcpy(g->seen[g->next].nonce, nonce, 16);
    g->seen[g->next].ts = ts;
    g->next = (g->next + 1) % MAX_NONCES;
    if (g->n_seen < MAX_NONCES) g->n_seen++;
}

static int nonce_line(char out[64], const uint8_t nonce[16], uint64_t ts)
{
    char hex[33];
    sw_hex_encode(nonce, 16, hex);
    return snprintf(out, 64, "%s %llu\n", hex, (unsigned long long)ts);
}

static void nonces_rewrite(struct sw_cmd_guard *g)
{
    struct sw_buf b = { 0 };
    char line[64];
    for (size_t i = 0; i < g->n_seen; i++) {
        int n = nonce_line(line, g->seen[i].nonce, g->seen[i].ts);
        sw_buf_append(&b, line, (size_t)n);
    }
    if (sw_buf_ok(&b) && sw_file_write_atomic(g->nonce_file, b.data ? (const void *)b.data : "", b.len))
        sw_log(SW_LOG_WARN, "SWARM", "%s: cannot write the owner-command nonces: a replay after a restart "
                                     "would not be caught", g->nonce_file);
    sw_buf_free(&b);
    g->n_appended = 0;
}

static void nonce_persist(struct sw_cmd_guard *g, const uint8_t nonce[16], uint64_t ts)
{
    if (!g->nonce_file) return;
    if (++g->n_appended > MAX_NONCES) {
        nonces_rewrite(g);
        return;
    }
    char line[64];
    int n = nonce_line(line, nonce, ts);
    int fd = open(g->nonce_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    /* no fsync: the page cache outlives the process (a restart is the replay window that
     * matters); a power loss within max_skew_s of a command may lose its line */
    int ok = fd >= 0 && write(fd, line, (size_t)n) == n;
    if (fd >= 0) close(fd);
    if (!ok)
        sw_log(SW_LOG_WARN, "SWARM", "%s: cannot record an owner-command nonce: a replay after a restart "
                                     "would not be caught", g->nonce_file);
}

/* Takes the nonces still inside the freshness window from the file (a missing file is an
 * empty one; a malformed line is skipped), then rewrites it with just those. */
static void nonces_load(struct sw_cmd_guard *g, uint64_t now_wall_s)
{
    uint8_t *data = NULL;
    size_t len = 0;
    if (sw_file_read_all(g->nonce_file, (size_t)4 * MAX_NONCES * 64, &data, &len) == 0) {
        size_t kept = 0, bad = 0;
        for (size_t p = 0; p < len;) {
            size_t e = p;
            while (e < len && data[e] != '\n') e++;
            char line[64] = "";
            if (e - p < sizeof line) memcpy(line, data + p, e - p);
            uint8_t nonce[16];
            char *end = NULL;
            unsigned long long ts = 0;
            int ok = e - p > 33 && e - p < sizeof line && line[32] == ' ';
            if (ok) {
                line[32] = 0;
                ok = !sw_hex_decode(line, nonce, 16);
                ts = strtoull(line + 33, &end, 10);
                ok = ok && end && !*end;
            }
            if (!ok) bad++;
            else if (ts + g->cfg.max_skew_s >= now_wall_s && !seen_has(g, nonce)) {
                seen_add(g, nonce, ts);
                kept++;
            }
            p = e + 1;
        }
        if (bad) sw_log(SW_LOG_WARN, "SWARM", "%s: %zu malformed lines skipped", g->nonce_file, bad);
        sw_log(SW_LOG_DEBUG, "SWARM", "%s: %zu owner-command nonces still inside the %llu s window", g->nonce_file, kept,
               (unsigned long long)g->cfg.max_skew_s);
    }
    free(data);
    nonces_rewrite(g);
}

int sw_cmd_guard_new(const struct sw_cmd_guard_config *cfg, struct sw_cmd_guard **out)
{
    if (!cfg || !out) return SW_EINVAL;
    struct sw_cmd_guard *g = calloc(1, sizeof *g);
    if (!g) return SW_ENOMEM;
    g->cfg = *cfg;
    if (cfg->owner_pk) { g->has_owner = 1; memcpy(g->owner, cfg->owner_pk, 32); }
    g->cfg.owner_pk = NULL;
    if (!g->cfg.max_skew_s) g->cfg.max_skew_s = 300;
    g->cfg.nonce_file = NULL;
    if (cfg->nonce_file) {
        if (!(g->nonce_file = strdup(cfg->nonce_file))) {
            free(g);
            return SW_ENOMEM;
        }
        nonces_load(g, sw_wall_time_s());
    }
    *out = g;
    return 0;
}

void sw_cmd_guard_free(struct sw_cmd_guard *g)
{
    if (!g) return;
    free(g->nonce_file);
    free(g);
}

int sw_cmd_guard_remember(struct sw_cmd_guard *g, const struct sw_load_cmd *cmd)
{
    if (!g || !cmd) return SW_EINVAL;
    if (seen_has(g, cmd->nonce)) return SW_EEXIST;
    seen_add(g, cmd->nonce, cmd->ts_s);
    nonce_persist(g, cmd->nonce, cmd->ts_s);
    return 0;
}

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
    if (sw_cmd_guard_remember(g, cmd_out) == SW_EEXIST) REFUSE("replayed (nonce already used)");
    return 0;
}
