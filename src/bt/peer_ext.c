/* peer_ext.c — BEP 10 extensions: our extended handshake and the peer's, BEP 9 metadata
 * exchange, BEP 11 PEX, and the hook through which shardswarm speaks its own extension.
 * Not for: the base protocol (peer_msg.c). */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bt_session_int.h"

/* ------------------------------------------------------------------ extension handshake */

static int cmp_key(const void *a, const void *b)
{
    const char *const *x = a, *const *y = b;
    return strcmp(*x, *y);
}

void sw__put_ext_handshake(struct sw_bt_peer *p)
{
    struct sw_bt_session *s = p->s;
    struct sw_bt_torrent *t = p->t;
    /* BEP 10 handshake: keys sorted (extra keys from the node merged in). */
    const char *keys[32 + 8];
    uint32_t nk = 0;
    static const char *const own[] = { "m", "metadata_size", "p", "reqq", "v" };
    for (uint32_t i = 0; i < SW_ARRAY_LEN(own); i++)
        if (strcmp(own[i], "metadata_size") || (t && t->has_meta)) keys[nk++] = own[i];
    for (uint32_t i = 0; i < s->n_extra && nk < SW_ARRAY_LEN(keys); i++) keys[nk++] = s->extra[i].key;
    qsort(keys, nk, sizeof keys[0], cmp_key);
    struct sw_buf b = { 0 };
    sw_benc_dict(&b);
    for (uint32_t k = 0; k < nk; k++) {
        const char *key = keys[k];
        sw_benc_cstr(&b, key);
        if (!strcmp(key, "m")) {
            const char *names[3] = { "ut_metadata", "ut_pex", s->has_ext ? s->ext_name : NULL };
            int ids[3] = { EXT_METADATA, EXT_PEX, EXT_CUSTOM };
            uint32_t nn = s->has_ext ? 3 : 2;
            /* sort the (<=3) names */
            for (uint32_t i = 0; i < nn; i++)
                for (uint32_t j = i + 1; j < nn; j++)
                    if (strcmp(names[j], names[i]) < 0) {
                        const char *tn = names[i]; names[i] = names[j]; names[j] = tn;
                        int ti = ids[i]; ids[i] = ids[j]; ids[j] = ti;
                    }
            sw_benc_dict(&b);
            for (uint32_t i = 0; i < nn; i++) { sw_benc_cstr(&b, names[i]); sw_benc_int(&b, ids[i]); }
            sw_benc_end(&b);
        } else if (!strcmp(key, "metadata_size")) {
            sw_benc_int(&b, (int64_t)t->mi.info_len);
        } else if (!strcmp(key, "p")) {
            sw_benc_int(&b, s->port);
        } else if (!strcmp(key, "reqq")) {
            sw_benc_int(&b, s->o.max_peer_queue);
        } else if (!strcmp(key, "v")) {
            sw_benc_cstr(&b, s->client_name);
        } else {
            for (uint32_t i = 0; i < s->n_extra; i++)
                if (!strcmp(s->extra[i].key, key)) sw_buf_append(&b, s->extra[i].val, s->extra[i].len);
        }
    }
    sw_benc_end(&b);
    if (sw_buf_ok(&b)) sw_bt_wire_put_extended(&p->ctrl, 0, b.data, b.len);
    sw_buf_free(&b);
}


void sw__on_ext_handshake(struct sw_bt_peer *p, const uint8_t *pl, size_t n)
{
    struct sw_bt_session *s = p->s;
    struct sw_bt_torrent *t = p->t;
    struct sw_bdoc d = { 0 };
    struct sw_blimits lim = { .max_nodes = 4096, .max_depth = 16 };
    if (sw_bdecode(pl, n, &lim, &d, NULL, NULL, 0) || d.nodes[0].type != SW_BDICT) {
        sw_bdoc_free(&d);
        sw__peer_close(p, SW_ECORRUPT, "bad extended handshake");
        return;
    }
    const struct sw_bnode *root = &d.nodes[0];
    const struct sw_bnode *m = sw_bdict_get_type(&d, root, "m", SW_BDICT);
    if (m) {
        /* BEP 10: an id of 0 disables an extension; ids above 255 are invalid. */
        const struct sw_bnode *v;
        if ((v = sw_bdict_get_type(&d, m, "ut_metadata", SW_BINT))) p->ext_meta = v->ival > 0 && v->ival < 256 ? (uint8_t)v->ival : 0;
        if ((v = sw_bdict_get_type(&d, m, "ut_pex", SW_BINT))) p->ext_pex = v->ival > 0 && v->ival < 256 ? (uint8_t)v->ival : 0;
        if (s->has_ext && (v = sw_bdict_get_type(&d, m, s->ext_name, SW_BINT)))
            p->ext_custom = v->ival > 0 && v->ival < 256 ? (uint8_t)v->ival : 0;
    }
    const struct sw_bnode *v = sw_bdict_get_type(&d, root, "p", SW_BINT);
    if (v && v->ival > 0 && v->ival < 65536) p->listen_port = (uint16_t)v->ival;
    v = sw_bdict_get_type(&d, root, "reqq", SW_BINT);
    if (v && v->ival > 0) p->reqq = (uint32_t)SW_MIN(v->ival, (int64_t)4096);
    v = sw_bdict_get_type(&d, root, "metadata_size", SW_BINT);
    if (v && v->ival > 0 && v->ival <= (int64_t)SW_BT_MAX_INFO_BYTES) p->meta_size = (uint64_t)v->ival;
    sw_bdoc_free(&d);
    int first = !p->ext_hs_seen;
    p->ext_hs_seen = 1;
    /* Messages of our own extension may be large (max_msg_len), but only from a peer that
     * speaks it: anyone else gets the plain extension cap (no 64 MiB buffers for strangers). */
    if (!p->ext_custom) p->wire.big_ext[EXT_CUSTOM >> 3] &= (uint8_t)~(1u << (EXT_CUSTOM & 7));
    if (first && p->ext_pex) p->next_pex_ms = sw_time_ms() + PEX_FIRST_MS;
    if (!t->has_meta && p->meta_size && p->ext_meta) {
        if (!t->meta) {
            t->meta_size = p->meta_size;
            t->meta = malloc(t->meta_size);
            t->meta_got = calloc((t->meta_size + META_PIECE - 1) / META_PIECE, 1);
            if (!t->meta || !t->meta_got) { free(t->meta); free(t->meta_got); t->meta = t->meta_got = NULL; }
        }
        if (t->meta && t->meta_size == p->meta_size) sw__meta_request_more(p);
    }
    if (s->has_ext && s->ext.on_handshake) s->ext.on_handshake(s->ext.ud, p, pl, n);
}


/* ------------------------------------------------------------------ metadata (BEP 9) */


void sw__meta_request_more(struct sw_bt_peer *p)
{
    struct sw_bt_torrent *t = p->t;
    if (t->has_meta || !p->ext_meta || !t->meta) return;
    uint32_t n = (uint32_t)((t->meta_size + META_PIECE - 1) / META_PIECE);
    uint64_t now = sw_time_ms();
    if (p->meta_req_ms && now - p->meta_req_ms < 5000) return;
    p->meta_req_ms = now;
    for (uint32_t i = 0; i < n; i++) {
        if (t->meta_got[i]) continue;
        struct sw_buf b = { 0 };
        sw_benc_dict(&b);
        sw_benc_cstr(&b, "msg_type");
        sw_benc_int(&b, 0);
        sw_benc_cstr(&b, "piece");
        sw_benc_int(&b, i);
        sw_benc_end(&b);
        if (sw_buf_ok(&b)) sw_bt_wire_put_extended(&p->ctrl, p->ext_meta, b.data, b.len);
        sw_buf_free(&b);
    }
}

void sw__on_metadata_msg(struct sw_bt_peer *p, const uint8_t *pl, size_t n)
{
    struct sw_bt_torrent *t = p->t;
    struct sw_bdoc d = { 0 };
    size_t used = 0;
    struct sw_blimits lim = { .max_nodes = 32, .max_depth = 4 };
    if (sw_bdecode(pl, n, &lim, &d, &used, NULL, 0) || d.nodes[0].type != SW_BDICT) {
        sw_bdoc_free(&d);
        sw__peer_close(p, SW_ECORRUPT, "bad ut_metadata message");
        return;
    }
    const struct sw_bnode *mt = sw_bdict_get_type(&d, &d.nodes[0], "msg_type", SW_BINT);
    const struct sw_bnode *pc = sw_bdict_get_type(&d, &d.nodes[0], "piece", SW_BINT);
    int64_t type = mt ? mt->ival : -1, piece = pc ? pc->ival : -1;
    sw_bdoc_free(&d);
    if (type == 0) { /* request */
        struct sw_buf b = { 0 };
        sw_benc_dict(&b);
        if (t->has_meta && piece >= 0 && (uint64_t)piece * META_PIECE < t->mi.info_len) {
            size_t off = (size_t)piece * META_PIECE, len = SW_MIN((size_t)META_PIECE, t->mi.info_len - off);
            sw_benc_cstr(&b, "msg_type");
            sw_benc_int(&b, 1);
            sw_benc_cstr(&b, "piece");
            sw_benc_int(&b, piece);
            sw_benc_cstr(&b, "total_size");
            sw_benc_int(&b, (int64_t)t->mi.info_len);
            sw_benc_end(&b);
            sw_buf_append(&b, t->mi.info_raw + off, len);
        } else {
            sw_benc_cstr(&b, "msg_type");
            sw_benc_int(&b, 2);
            sw_benc_cstr(&b, "piece");
            sw_benc_int(&b, piece < 0 ? 0 : piece);
            sw_benc_end(&b);
        }
        if (sw_buf_ok(&b) && p->ext_meta) sw_bt_wire_put_extended(&p->ctrl, p->ext_meta, b.data, b.len);
        sw_buf_free(&b);
        return;
    }
    if (type != 1 || t->has_meta || !t->meta) return;
    uint32_t np = (uint32_t)((t->meta_size + META_PIECE - 1) / META_PIECE);
    if (piece < 0 || (uint64_t)piece >= np) return;
    size_t off = (size_t)piece * META_PIECE, want = SW_MIN((size_t)META_PIECE, t->meta_size - off);
    if (n - used != want) { sw__peer_close(p, SW_ECORRUPT, "ut_metadata piece of the wrong size"); return; }
    memcpy(t->meta + off, pl + used, want);
    t->meta_got[piece] = 1;
    for (uint32_t i = 0; i < np; i++)
        if (!t->meta_got[i]) return;
    /* All pieces: BEP 9 says check the SHA-1 against the info-hash. */
    uint8_t h[20];
    sw_sha1(t->meta, t->meta_size, h);
    if (memcmp(h, t->info_hash, 20)) {
        LOGW("metadata from %s does not match the info-hash; dropping it", p->addr_str);
        memset(t->meta_got, 0, np);
        sw__peer_close(p, SW_ECORRUPT, "bad metadata");
        return;
    }
    char err[256] = "";
    struct sw_bt_metainfo mi;
    int rc = sw_bt_metainfo_parse_info(t->meta, t->meta_size, &mi, err, sizeof err);
    if (rc) {
        emit_simple(t, NULL, SW_BT_EV_ERROR, -1, 0, rc, err);
        return;
    }
    for (uint32_t i = 0; i < t->n_trackers; i++) sw__strv_add(&mi.trackers, &mi.n_trackers, t->trackers[i], strlen(t->trackers[i]));
    t->mi = mi;
    free(t->meta);
    free(t->meta_got);
    t->meta = t->meta_got = NULL;
    rc = sw__torrent_init_meta(t, err, sizeof err);
    if (rc) {
        emit_simple(t, NULL, SW_BT_EV_ERROR, -1, 0, rc, err);
        return;
    }
    emit_simple(t, NULL, SW_BT_EV_METADATA, -1, 0, 0, t->mi.name);
}

/* ------------------------------------------------------------------ PEX (BEP 11) */

void sw__send_pex(struct sw_bt_peer *to)
{
    struct sw_bt_session *s = to->s;
    struct sw_buf added = { 0 };
    uint32_t n = 0;
    for (struct sw_bt_peer *p = s->peers; p && n < 50; p = p->next) {
        if (p == to || p->t != to->t || p->state != P_ACTIVE || p->addr.ss_family != AF_INET) continue;
        const struct sockaddr_in *a = (const struct sockaddr_in *)&p->addr;
        uint16_t port = p->outgoing ? ntohs(a->sin_port) : p->listen_port;
        if (!port) continue;
        uint8_t c[6];
        memcpy(c, &a->sin_addr, 4);
        sw_put_be16(c + 4, port);
        sw_buf_append(&added, c, 6);
        n++;
    }
    if (n) {
        struct sw_buf b = { 0 };
        sw_benc_dict(&b);
        sw_benc_cstr(&b, "added");
        sw_benc_str(&b, added.data, added.len);
        sw_benc_cstr(&b, "dropped");
        sw_benc_str(&b, "", 0);
        sw_benc_end(&b);
        if (sw_buf_ok(&b)) sw_bt_wire_put_extended(&to->ctrl, to->ext_pex, b.data, b.len);
        sw_buf_free(&b);
    }
    sw_buf_free(&added);
}

void sw__on_pex_msg(struct sw_bt_peer *p, const uint8_t *pl, size_t n)
{
    struct sw_bdoc d = { 0 };
    struct sw_blimits lim = { .max_nodes = 64, .max_depth = 4 };
    if (sw_bdecode(pl, n, &lim, &d, NULL, NULL, 0) || d.nodes[0].type != SW_BDICT) {
        sw_bdoc_free(&d);
        return; /* PEX is a hint: ignore bad ones */
    }
    const struct sw_bnode *a = sw_bdict_get_type(&d, &d.nodes[0], "added", SW_BSTR);
    for (size_t i = 0; a && i + 6 <= a->str_len && i < 6 * 50; i += 6) {
        struct sockaddr_in sa = { .sin_family = AF_INET };
        memcpy(&sa.sin_addr, a->str + i, 4);
        sa.sin_port = htons(sw_get_be16(a->str + i + 4));
        if (sa.sin_port) sw_bt_torrent_add_peer_addr(p->t, &sa);
    }
    sw_bdoc_free(&d);
}


/* ------------------------------------------------------------------ extension hook */

int sw_bt_session_register_ext(struct sw_bt_session *s, const struct sw_bt_ext_ops *ops)
{
    if (!ops || !ops->name || !*ops->name || strlen(ops->name) > 64) return SW_EINVAL;
    if (!strcmp(ops->name, "ut_metadata") || !strcmp(ops->name, "ut_pex")) return SW_EINVAL;
    if (s->has_ext) return SW_EEXIST;
    s->ext = *ops;
    s->ext_name = strdup(ops->name);
    if (!s->ext_name) return SW_ENOMEM;
    s->ext.name = s->ext_name;
    if (!s->ext.max_msg_len) s->ext.max_msg_len = 64u << 20;
    s->has_ext = 1;
    return 0;
}

int sw_bt_session_set_handshake_extra(struct sw_bt_session *s, const char *key, const uint8_t *value, size_t len)
{
    static const char *const reserved[] = { "m", "v", "p", "reqq", "metadata_size" };
    if (!key || !*key || strlen(key) > 64) return SW_EINVAL;
    for (uint32_t i = 0; i < SW_ARRAY_LEN(reserved); i++)
        if (!strcmp(key, reserved[i])) return SW_EINVAL;
    if (value) {
        struct sw_bdoc d = { 0 };
        int rc = sw_bdecode(value, len, NULL, &d, NULL, NULL, 0);
        sw_bdoc_free(&d);
        if (rc) return SW_EINVAL; /* must be one complete bencoded value */
    }
    uint32_t i;
    for (i = 0; i < s->n_extra; i++)
        if (!strcmp(s->extra[i].key, key)) break;
    if (!value) {
        if (i < s->n_extra) {
            free(s->extra[i].key);
            free(s->extra[i].val);
            s->extra[i] = s->extra[--s->n_extra];
        }
    } else {
        uint8_t *v = malloc(len ? len : 1);
        if (!v) return SW_ENOMEM;
        memcpy(v, value, len);
        if (i == s->n_extra) {
            if (s->n_extra >= 32) { free(v); return SW_ETOOBIG; }
            void *ne = realloc(s->extra, (s->n_extra + 1) * sizeof *s->extra);
            if (!ne) { free(v); return SW_ENOMEM; }
            s->extra = ne;
            s->extra[i].key = strdup(key);
            if (!s->extra[i].key) { free(v); return SW_ENOMEM; }
            s->extra[i].val = NULL;
            s->n_extra++;
        }
        free(s->extra[i].val);
        s->extra[i].val = v;
        s->extra[i].len = len;
    }
    /* BEP 10: a handshake may be sent again at any time to update values. */
    for (struct sw_bt_peer *p = s->peers; p; p = p->next)
        if (p->state == P_ACTIVE && p->ext) {
            sw__put_ext_handshake(p);
            sw__flush(p);
        }
    return 0;
}

int sw_bt_peer_send_ext2(struct sw_bt_peer *p, const void *a, size_t a_len, const void *b, size_t b_len)
{
    if (p->state != P_ACTIVE) return SW_ECLOSED;
    if (!p->ext_custom) return SW_ESTATE;
    size_t total = a_len + b_len;
    if (total + 2 > UINT32_MAX - 4 || total > p->s->ext.max_msg_len) return SW_ETOOBIG;
    uint8_t hdr[6];
    sw_bt_wire_ext_header(hdr, p->ext_custom, total);
    uv_buf_t bufs[3] = { uv_buf_init((char *)hdr, 6), uv_buf_init((char *)a, (unsigned)a_len),
                         uv_buf_init((char *)b, (unsigned)b_len) };
    if (p->nz) return sw__send_sealed3(p, hdr, 6, a, a_len, b, b_len); /* private swarm */
    size_t off = 0;
    /* Latency first: straight into the socket when nothing is ahead of us. */
    if (!p->prio.len && !p->ctrl.len) {
        int n = uv_try_write((uv_stream_t *)&p->tcp, bufs, b_len ? 3 : 2);
        if (n > 0) {
            off = (size_t)n;
            p->last_send_ms = sw_time_ms();
        }
        if (off == 6 + total) return 0;
        if (off > 0) {
            /* A partial write: the rest must go next, ahead of anything else. */
            struct sw_buf rest = { 0 };
            for (int i = 0; i < 3; i++) {
                size_t l = bufs[i].len;
                if (off >= l) { off -= l; continue; }
                sw_buf_append(&rest, bufs[i].base + off, l - off);
                off = 0;
            }
            if (!sw_buf_ok(&rest)) { sw_buf_free(&rest); sw__peer_close(p, SW_ENOMEM, "out of memory"); return SW_ENOMEM; }
            uint8_t *d = rest.data;
            size_t l = rest.len;
            int rc = sw__write_owned(p, d, l);
            if (rc) { sw__peer_close(p, rc, "write failed"); return rc; }
            return 0;
        }
    }
    sw_buf_append(&p->prio, hdr, 6);
    sw_buf_append(&p->prio, a, a_len);
    if (b_len) sw_buf_append(&p->prio, b, b_len);
    if (!sw_buf_ok(&p->prio)) { sw__peer_close(p, SW_ENOMEM, "out of memory"); return SW_ENOMEM; }
    sw__flush(p);
    return 0;
}

int sw_bt_peer_send_ext(struct sw_bt_peer *p, const void *payload, size_t len)
{
    return sw_bt_peer_send_ext2(p, payload, len, NULL, 0);
}

int sw_bt_peer_has_ext(const struct sw_bt_peer *p)
{
    return p->ext_custom != 0;
}

const uint8_t *sw_bt_peer_id(const struct sw_bt_peer *p)
{
    return p->got_id ? p->peer_id : NULL;
}

const char *sw_bt_peer_addr(const struct sw_bt_peer *p, char *buf, size_t len)
{
    snprintf(buf, len, "%s", p->addr_str);
    return buf;
}

uint16_t sw_bt_peer_listen_port(const struct sw_bt_peer *p)
{
    if (p->listen_port) return p->listen_port;
    if (p->outgoing && p->addr.ss_family == AF_INET) return ntohs(((const struct sockaddr_in *)&p->addr)->sin_port);
    return 0;
}

struct sw_bt_torrent *sw_bt_peer_torrent(const struct sw_bt_peer *p)
{
    return p->t;
}

int sw_bt_peer_outgoing(const struct sw_bt_peer *p)
{
    return p->outgoing;
}

void sw_bt_peer_set_userdata(struct sw_bt_peer *p, void *ud)
{
    p->userdata = ud;
}

void *sw_bt_peer_userdata(const struct sw_bt_peer *p)
{
    return p->userdata;
}

void sw_bt_peer_close(struct sw_bt_peer *p)
{
    sw__peer_close(p, SW_ECLOSED, "closed by the node");
}
