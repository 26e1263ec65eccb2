/* krpc.c — KRPC (BEP 5) message decoding on top of the shared bounded bencode decoder.
 * Every field is type- and length-checked; a datagram that is not a KRPC message is
 * reported as SW_ECORRUPT and the caller drops it silently (and counts it). */
#include <string.h>

#include "krpc.h"

static const struct sw_blimits krpc_limits = { 1024, 8 };

static const uint8_t *fixed_str(const struct sw_bdoc *d, const struct sw_bnode *dict, const char *key,
                                size_t want_len, int *bad)
{
    const struct sw_bnode *n = sw_bdict_get(d, dict, key);
    if (!n) return NULL;
    if (n->type != SW_BSTR || n->str_len != want_len) {
        *bad = 1;
        return NULL;
    }
    return n->str;
}

size_t sw__compact_addr(const struct sw_dht_addr *a, uint8_t *out)
{
    size_t n = a->family == 6 ? 16 : 4;
    memcpy(out, a->ip, n);
    sw_put_be16(out + n, a->port);
    return n + 2;
}

int sw__uncompact_addr(const uint8_t *p, size_t len, struct sw_dht_addr *out)
{
    memset(out, 0, sizeof *out);
    if (len == 6) {
        out->family = 4;
        memcpy(out->ip, p, 4);
        out->port = sw_get_be16(p + 4);
    } else if (len == 18) {
        out->family = 6;
        memcpy(out->ip, p, 16);
        out->port = sw_get_be16(p + 16);
    } else {
        return SW_ECORRUPT;
    }
    return 0;
}

static void parse_args(const struct sw_bdoc *d, const struct sw_bnode *a, struct sw__krpc *m)
{
    int bad = 0;
    m->id = fixed_str(d, a, "id", SW_DHT_ID_LEN, &bad);
    m->target = fixed_str(d, a, "target", SW_DHT_ID_LEN, &bad);
    m->info_hash = fixed_str(d, a, "info_hash", SW_DHT_ID_LEN, &bad);
    m->k = fixed_str(d, a, "k", 32, &bad);
    m->sig = fixed_str(d, a, "sig", 64, &bad);

    const struct sw_bnode *n;
    if ((n = sw_bdict_get(d, a, "port"))) {
        if (n->type != SW_BINT || n->ival < 0 || n->ival > 65535) bad = 1;
        else { m->port = n->ival; m->has_port = 1; }
    }
    if ((n = sw_bdict_get_type(d, a, "implied_port", SW_BINT))) m->implied_port = n->ival != 0;
    if ((n = sw_bdict_get(d, a, "token"))) {
        if (n->type != SW_BSTR || n->str_len > SW__KRPC_MAX_TOKEN) bad = 1;
        else { m->token = n->str; m->token_len = n->str_len; }
    }
    if ((n = sw_bdict_get(d, a, "nodes"))) {
        if (n->type != SW_BSTR || n->str_len % 26) bad = 1;
        else { m->nodes = n->str; m->nodes_len = n->str_len; }
    }
    if ((n = sw_bdict_get(d, a, "nodes6"))) {
        if (n->type != SW_BSTR || n->str_len % 38) bad = 1;
        else { m->nodes6 = n->str; m->nodes6_len = n->str_len; }
    }
    if ((n = sw_bdict_get(d, a, "values"))) {
        if (n->type != SW_BLIST) bad = 1;
        else m->values = n;
    }
    if ((n = sw_bdict_get_type(d, a, "want", SW_BLIST))) {
        for (const struct sw_bnode *w = sw_bnode_child(d, n); w; w = sw_bnode_next(d, w)) {
            if (sw_bstr_eq(w, "n4")) m->want4 = 1;
            if (sw_bstr_eq(w, "n6")) m->want6 = 1;
        }
    }
    /* BEP 44 fields */
    if ((n = sw_bdict_get(d, a, "v"))) { m->v = n->raw; m->v_len = n->raw_len; }
    if ((n = sw_bdict_get(d, a, "seq"))) {
        if (n->type != SW_BINT || n->ival < 0) bad = 1;
        else { m->seq = n->ival; m->has_seq = 1; }
    }
    if ((n = sw_bdict_get(d, a, "cas"))) {
        if (n->type != SW_BINT || n->ival < 0) bad = 1;
        else { m->cas = n->ival; m->has_cas = 1; }
    }
    if ((n = sw_bdict_get(d, a, "salt"))) {
        if (n->type != SW_BSTR) bad = 1;
        else { m->salt = n->str; m->salt_len = n->str_len; m->has_salt = 1; }
    }
    m->bad_args = bad;
}

static enum sw__krpc_method method_of(const struct sw_bnode *q)
{
    if (sw_bstr_eq(q, "ping")) return SW__Q_PING;
    if (sw_bstr_eq(q, "find_node")) return SW__Q_FIND_NODE;
    if (sw_bstr_eq(q, "get_peers")) return SW__Q_GET_PEERS;
    if (sw_bstr_eq(q, "announce_peer")) return SW__Q_ANNOUNCE_PEER;
    if (sw_bstr_eq(q, "get")) return SW__Q_GET;
    if (sw_bstr_eq(q, "put")) return SW__Q_PUT;
    return SW__Q_UNKNOWN;
}

int sw__krpc_parse(const uint8_t *buf, size_t len, struct sw__krpc *m, struct sw_bdoc *doc)
{
    memset(m, 0, sizeof *m);
    if (len == 0 || len > SW__KRPC_MAX_IN || buf[0] != 'd') return SW_ECORRUPT;
    int rc = sw_bdecode(buf, len, &krpc_limits, doc, NULL, NULL, 0);
    if (rc) return SW_ECORRUPT;
    const struct sw_bnode *root = &doc->nodes[0];
    const struct sw_bnode *y = sw_bdict_get_type(doc, root, "y", SW_BSTR);
    const struct sw_bnode *t = sw_bdict_get_type(doc, root, "t", SW_BSTR);
    /* BEP 5: every message has a transaction id and a type of one character. */
    if (!y || y->str_len != 1 || !t || t->str_len > SW__KRPC_MAX_TID) goto bad;
    m->y = (char)y->str[0];
    m->t = t->str;
    m->t_len = t->str_len;
    const struct sw_bnode *n;
    if ((n = sw_bdict_get_type(doc, root, "ro", SW_BINT))) m->ro = n->ival == 1;
    if ((n = sw_bdict_get_type(doc, root, "ip", SW_BSTR)) && (n->str_len == 6 || n->str_len == 18)) {
        m->ip = n->str;
        m->ip_len = n->str_len;
    }
    if (m->y == 'q') {
        const struct sw_bnode *q = sw_bdict_get_type(doc, root, "q", SW_BSTR);
        const struct sw_bnode *a = sw_bdict_get_type(doc, root, "a", SW_BDICT);
        if (!q || !a) goto bad;
        m->method = method_of(q);
        m->method_name = q->str;
        m->method_len = q->str_len;
        parse_args(doc, a, m);
        if (!m->id) m->bad_args = 1;
    } else if (m->y == 'r') {
        const struct sw_bnode *r = sw_bdict_get_type(doc, root, "r", SW_BDICT);
        if (!r) goto bad;
        parse_args(doc, r, m);
        if (!m->id || m->bad_args) goto bad;
    } else if (m->y == 'e') {
        /* BEP 5: "e" is a list of an integer code and a string message. */
        const struct sw_bnode *e = sw_bdict_get_type(doc, root, "e", SW_BLIST);
        const struct sw_bnode *code = e ? sw_blist_at(doc, e, 0) : NULL;
        const struct sw_bnode *msg = e ? sw_blist_at(doc, e, 1) : NULL;
        if (!code || code->type != SW_BINT) goto bad;
        m->err_code = code->ival;
        if (msg && msg->type == SW_BSTR) { m->err_msg = msg->str; m->err_msg_len = msg->str_len; }
    } else {
        goto bad;
    }
    return 0;
bad:
    sw_bdoc_free(doc);
    return SW_ECORRUPT;
}
