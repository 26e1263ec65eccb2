/* krpc.h — internal to src/dht: the KRPC message (BEP 5) parsed out of bencode into flat
 * fields, and the encoders for the messages we send. Not public API (see dht.h). */
#ifndef SW_DHT_KRPC_H
#define SW_DHT_KRPC_H

#include "dht.h"

#define SW__KRPC_MAX_IN 4096      /* datagrams larger than this are dropped */
#define SW__KRPC_MAX_TID 16       /* transaction ids we echo back */
#define SW__KRPC_MAX_TOKEN 64

enum sw__krpc_method {
    SW__Q_UNKNOWN = 0,
    SW__Q_PING,
    SW__Q_FIND_NODE,
    SW__Q_GET_PEERS,
    SW__Q_ANNOUNCE_PEER,
    SW__Q_GET,
    SW__Q_PUT,
};

/* A decoded message. Pointers borrow from the datagram (and `doc` for values). */
struct sw__krpc {
    char y;                          /* 'q', 'r' or 'e' */
    const uint8_t *t;
    size_t t_len;
    int ro;                          /* BEP 43 read-only sender */
    const uint8_t *ip;               /* BEP 42 `ip`: our address as the sender sees it */
    size_t ip_len;
    /* query */
    enum sw__krpc_method method;
    const uint8_t *method_name;
    size_t method_len;
    /* query args or reply body (a or r dict) */
    const uint8_t *id;               /* 20 bytes, NULL when absent */
    const uint8_t *target;           /* find_node target / get target */
    const uint8_t *info_hash;
    int64_t port;
    int has_port;
    int implied_port;
    const uint8_t *token;
    size_t token_len;
    const uint8_t *nodes;            /* compact IPv4 node info, 26 bytes each */
    size_t nodes_len;
    const uint8_t *nodes6;           /* BEP 32: 38 bytes each */
    size_t nodes6_len;
    const struct sw_bnode *values;   /* list of compact peers (6 or 18 bytes) */
    int want4, want6;                /* BEP 32 `want` */
    /* BEP 44 */
    const uint8_t *v;                /* raw bencoded v */
    size_t v_len;
    const uint8_t *k;                /* 32 bytes */
    const uint8_t *sig;              /* 64 bytes */
    int64_t seq;
    int has_seq;
    int64_t cas;
    int has_cas;
    const uint8_t *salt;
    size_t salt_len;
    int has_salt;
    /* error */
    int64_t err_code;
    const uint8_t *err_msg;
    size_t err_msg_len;
    int bad_args;                    /* a query whose arguments are malformed (reply 203) */
};

/* Parses one datagram. 0 on success (a KRPC message with t and y); SW_ECORRUPT when it is
 * not one (dropped silently by the caller). doc must be freed with sw_bdoc_free on success. */
int sw__krpc_parse(const uint8_t *buf, size_t len, struct sw__krpc *m, struct sw_bdoc *doc);

/* Compact forms (BEP 5 / BEP 32): ip then big-endian port. Return bytes written. */
size_t sw__compact_addr(const struct sw_dht_addr *a, uint8_t *out);
int sw__uncompact_addr(const uint8_t *p, size_t len, struct sw_dht_addr *out);

#endif
