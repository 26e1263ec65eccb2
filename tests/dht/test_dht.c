/* test_dht.c — the DHT state machine in process: KRPC parsing and malformed input, tokens
 * and their rotation, bucket splitting, rate limits, storage caps, BEP 44 vectors and store
 * rules, and a small in-memory network where lookups, announces and put/get work. */
#include <sodium.h>

#include "dht/dht.h"
#include "dht/krpc.h"
#include "test.h"

/* ------------------------------------------------------------------ helpers */

static void mkaddr(struct sw_dht_addr *a, uint32_t n, uint16_t port)
{
    memset(a, 0, sizeof *a);
    a->family = 4;
    a->ip[0] = 10;
    a->ip[1] = (uint8_t)(n >> 16);
    a->ip[2] = (uint8_t)(n >> 8);
    a->ip[3] = (uint8_t)n;
    a->port = port;
}

static void unhex(const char *h, uint8_t *out, size_t n)
{
    int rc = sw_hex_decode(h, out, n);
    if (rc) abort();
}

/* Sends one raw datagram to d and returns the first reply (decoded) or -1. */
static int exchange(struct sw_dht *d, const char *msg, size_t len, const struct sw_dht_addr *from, uint64_t now,
                    uint8_t *reply, size_t *reply_len)
{
    sw_dht_input(d, (const uint8_t *)msg, len, from, now);
    struct sw_dht_addr to;
    size_t n, got = 0;
    int found = -1;
    while ((n = sw_dht_pop_packet(d, &to, reply + (found < 0 ? 0 : 0), SW_DHT_MAX_PACKET)) > 0) {
        if (found < 0 && sw_dht_addr_eq(&to, from)) {
            /* the first packet to the sender: could be a verification ping; we want y=r/e */
            struct sw__krpc m;
            struct sw_bdoc doc;
            if (sw__krpc_parse(reply, n, &m, &doc) == 0) {
                int is_reply = m.y != 'q';
                sw_bdoc_free(&doc);
                if (is_reply) {
                    found = 0;
                    got = n;
                    uint8_t tmp[SW_DHT_MAX_PACKET];
                    /* drain the rest without clobbering the reply */
                    while (sw_dht_pop_packet(d, &to, tmp, sizeof tmp) > 0) {}
                    break;
                }
            }
        }
    }
    *reply_len = got;
    return found;
}

static int64_t reply_error_code(const uint8_t *r, size_t n)
{
    struct sw__krpc m;
    struct sw_bdoc doc;
    if (sw__krpc_parse(r, n, &m, &doc)) return -1;
    int64_t code = m.y == 'e' ? m.err_code : 0;
    sw_bdoc_free(&doc);
    return code;
}

static int reply_token(const uint8_t *r, size_t n, uint8_t *tok, size_t *tok_len)
{
    struct sw__krpc m;
    struct sw_bdoc doc;
    if (sw__krpc_parse(r, n, &m, &doc)) return -1;
    int ok = m.token && m.token_len <= 64;
    if (ok) {
        memcpy(tok, m.token, m.token_len);
        *tok_len = m.token_len;
    }
    sw_bdoc_free(&doc);
    return ok ? 0 : -1;
}

static const char *NODE_ID = "abcdefghij0123456789";

/* ------------------------------------------------------------------ parsing */

static void test_krpc_parse(void)
{
    struct sw__krpc m;
    struct sw_bdoc doc;
    const char *ping = "d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
    CHECK_EQ_INT(sw__krpc_parse((const uint8_t *)ping, strlen(ping), &m, &doc), 0);
    CHECK_EQ_INT(m.y, 'q');
    CHECK_EQ_INT(m.method, SW__Q_PING);
    CHECK(m.id && !memcmp(m.id, NODE_ID, 20));
    CHECK_EQ_INT(m.t_len, 2);
    sw_bdoc_free(&doc);
    /* BEP 5 example reply to get_peers with values */
    const char *gp = "d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re";
    CHECK_EQ_INT(sw__krpc_parse((const uint8_t *)gp, strlen(gp), &m, &doc), 0);
    CHECK(m.values && m.values->n_items == 2);
    CHECK_EQ_INT(m.token_len, 8);
    sw_bdoc_free(&doc);
    const char *err = "d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee";
    CHECK_EQ_INT(sw__krpc_parse((const uint8_t *)err, strlen(err), &m, &doc), 0);
    CHECK_EQ_INT(m.err_code, 201);
    sw_bdoc_free(&doc);
    const char *bad[] = {
        "", "garbage", "le", "d1:y1:qe",                                   /* no t */
        "d1:t2:aa1:y1:re",                                                 /* reply without r */
        "d1:rd2:id3:abce1:t2:aa1:y1:re",                                   /* short id */
        "d1:rd2:id20:abcdefghij01234567895:nodes3:abce1:t2:aa1:y1:re",      /* nodes not 26n */
        "d1:t2:aa1:y1:xe",                                                 /* unknown type */
        "d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:q",         /* truncated */
        "d1:t40:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1:y1:qe",          /* tid too long */
    };
    for (size_t i = 0; i < SW_ARRAY_LEN(bad); i++)
        CHECK_MSG(sw__krpc_parse((const uint8_t *)bad[i], strlen(bad[i]), &m, &doc) != 0, "accepted bad[%zu]", i);
    /* deep nesting is capped */
    char deep[400];
    size_t n = 0;
    for (int i = 0; i < 100; i++) deep[n++] = 'l';
    for (int i = 0; i < 100; i++) deep[n++] = 'e';
    CHECK(sw__krpc_parse((const uint8_t *)deep, n, &m, &doc) != 0);
}

static void test_malformed_dropped(void)
{
    struct sw_dht_config cfg = { 0 };
    cfg.rng_seed = 1;
    struct sw_dht *d = sw_dht_new(&cfg, 1000);
    struct sw_dht_addr from;
    mkaddr(&from, 7, 4000);
    const char *junk[] = { "hello", "d1:y1:qe", "i42e", "d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe" };
    for (size_t i = 0; i < 3; i++) sw_dht_input(d, (const uint8_t *)junk[i], strlen(junk[i]), &from, 1000);
    struct sw_dht_stats st;
    sw_dht_get_stats(d, &st);
    CHECK_EQ_U64(st.malformed, 3);
    uint8_t buf[SW_DHT_MAX_PACKET];
    struct sw_dht_addr to;
    CHECK_EQ_U64(sw_dht_pop_packet(d, &to, buf, sizeof buf), 0); /* silently */
    /* a well-formed query with a bad id gets a 203 */
    uint8_t r[SW_DHT_MAX_PACKET];
    size_t rl;
    CHECK_EQ_INT(exchange(d, junk[3], strlen(junk[3]), &from, 1000, r, &rl), 0);
    CHECK_EQ_INT(reply_error_code(r, rl), 203);
    /* unknown method: 204 */
    const char *unk = "d1:ad2:id20:abcdefghij0123456789e1:q6:frob121:t2:aa1:y1:qe";
    CHECK_EQ_INT(exchange(d, unk, strlen(unk), &from, 1000, r, &rl), 0);
    CHECK_EQ_INT(reply_error_code(r, rl), 204);
    /* a reply nobody asked for is counted as unmatched */
    const char *stray = "d1:rd2:id20:abcdefghij0123456789e1:t4:zzzz1:y1:re";
    sw_dht_input(d, (const uint8_t *)stray, strlen(stray), &from, 1000);
    sw_dht_get_stats(d, &st);
    CHECK_EQ_U64(st.unmatched, 1);
    sw_dht_free(d);
}

static void test_rate_limit(void)
{
    struct sw_dht_config cfg = { 0 };
    cfg.rng_seed = 2;
    cfg.rate_qps = 10;
    cfg.rate_burst = 20;
    struct sw_dht *d = sw_dht_new(&cfg, 1000);
    struct sw_dht_addr from, other;
    mkaddr(&from, 9, 5000);
    mkaddr(&other, 10, 5000);
    const char *ping = "d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
    for (int i = 0; i < 100; i++) sw_dht_input(d, (const uint8_t *)ping, strlen(ping), &from, 1000);
    struct sw_dht_stats st;
    sw_dht_get_stats(d, &st);
    CHECK_EQ_U64(st.rate_limited, 80);
    /* another source is unaffected; after a second the first gets 10 more */
    sw_dht_input(d, (const uint8_t *)ping, strlen(ping), &other, 1000);
    for (int i = 0; i < 20; i++) sw_dht_input(d, (const uint8_t *)ping, strlen(ping), &from, 2000);
    sw_dht_get_stats(d, &st);
    CHECK_EQ_U64(st.rate_limited, 90);
    /* loopback is exempt */
    struct sw_dht_addr lo;
    CHECK_EQ_INT(sw_dht_addr_parse("127.0.0.1:7000", &lo), 0);
    for (int i = 0; i < 100; i++) sw_dht_input(d, (const uint8_t *)ping, strlen(ping), &lo, 3000);
    sw_dht_get_stats(d, &st);
    CHECK_EQ_U64(st.rate_limited, 90);
    sw_dht_free(d);
}

/* ------------------------------------------------------------------ tokens and storage */

static void get_token(struct sw_dht *d, const struct sw_dht_addr *from, uint64_t now, uint8_t *tok, size_t *tl)
{
    const char *gp = "d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:gp1:y1:qe";
    uint8_t r[SW_DHT_MAX_PACKET];
    size_t rl = 0;
    CHECK_EQ_INT(exchange(d, gp, strlen(gp), from, now, r, &rl), 0);
    CHECK_EQ_INT(reply_token(r, rl, tok, tl), 0);
}

static int64_t announce_with(struct sw_dht *d, const struct sw_dht_addr *from, uint64_t now, const uint8_t *tok,
                             size_t tl, int port)
{
    char msg[512];
    int n = snprintf(msg, sizeof msg,
                     "d1:ad2:id20:abcdefghij012345678912:implied_porti0e9:info_hash20:mnopqrstuvwxyz1234564:porti%de5:token%zu:",
                     port, tl);
    memcpy(msg + n, tok, tl);
    n += (int)tl;
    n += snprintf(msg + n, sizeof msg - (size_t)n, "e1:q13:announce_peer1:t2:an1:y1:qe");
    uint8_t r[SW_DHT_MAX_PACKET];
    size_t rl = 0;
    if (exchange(d, msg, (size_t)n, from, now, r, &rl)) return -1;
    return reply_error_code(r, rl);
}

static void test_tokens_rotate(void)
{
    struct sw_dht_config cfg = { 0 };
    cfg.rng_seed = 3;
    uint64_t t0 = 1000000;
    struct sw_dht *d = sw_dht_new(&cfg, t0);
    struct sw_dht_addr from, other;
    mkaddr(&from, 11, 6000);
    mkaddr(&other, 12, 6000);
    uint8_t tok[64];
    size_t tl = 0;
    get_token(d, &from, t0, tok, &tl);
    CHECK_EQ_INT(announce_with(d, &from, t0, tok, tl, 7000), 0);
    /* the token is tied to the requester's IP */
    CHECK_EQ_INT(announce_with(d, &other, t0, tok, tl, 7000), 203);
    /* one rotation (5 min) later the previous secret is still accepted */
    sw_dht_periodic(d, t0 + 5 * 60 * 1000 + 10);
    CHECK_EQ_INT(announce_with(d, &from, t0 + 5 * 60 * 1000 + 20, tok, tl, 7001), 0);
    /* after a second rotation it is not */
    sw_dht_periodic(d, t0 + 10 * 60 * 1000 + 5100);
    CHECK_EQ_INT(announce_with(d, &from, t0 + 10 * 60 * 1000 + 5200, tok, tl, 7002), 203);
    struct sw_dht_stats st;
    sw_dht_get_stats(d, &st);
    CHECK_EQ_INT(st.stored_peers, 2);
    sw_dht_free(d);
}

static void test_storage_caps(void)
{
    struct sw_dht_config cfg = { 0 };
    cfg.rng_seed = 4;
    cfg.max_peers_per_hash = 5;
    cfg.max_hashes = 1;
    cfg.rate_qps = 1000;
    cfg.rate_burst = 1000;
    struct sw_dht *d = sw_dht_new(&cfg, 1000);
    for (int i = 0; i < 12; i++) {
        struct sw_dht_addr from;
        mkaddr(&from, 100 + (uint32_t)i, 6000);
        uint8_t tok[64];
        size_t tl;
        get_token(d, &from, 1000, tok, &tl);
        CHECK_EQ_INT(announce_with(d, &from, 1000 + (uint64_t)i, tok, tl, 7000), 0);
    }
    struct sw_dht_stats st;
    sw_dht_get_stats(d, &st);
    CHECK_EQ_INT(st.stored_peers, 5);
    CHECK_EQ_INT(st.stored_hashes, 1);
    /* a second info-hash does not fit: 201 */
    struct sw_dht_addr from;
    mkaddr(&from, 300, 6000);
    uint8_t tok[64];
    size_t tl;
    get_token(d, &from, 2000, tok, &tl);
    char msg[512];
    int n = snprintf(msg, sizeof msg,
                     "d1:ad2:id20:abcdefghij01234567899:info_hash20:zzzzzzzzzzzzzzzzzzzz4:porti80e5:token%zu:", tl);
    memcpy(msg + n, tok, tl);
    n += (int)tl;
    n += snprintf(msg + n, sizeof msg - (size_t)n, "e1:q13:announce_peer1:t2:an1:y1:qe");
    uint8_t r[SW_DHT_MAX_PACKET];
    size_t rl;
    CHECK_EQ_INT(exchange(d, msg, (size_t)n, &from, 2000, r, &rl), 0);
    CHECK_EQ_INT(reply_error_code(r, rl), 201);
    /* peers expire after their lifetime (30 min default) */
    sw_dht_periodic(d, 1000 + 31 * 60 * 1000);
    sw_dht_get_stats(d, &st);
    CHECK_EQ_INT(st.stored_peers, 0);
    sw_dht_free(d);
}

/* ------------------------------------------------------------------ routing table */

static void test_bucket_split(void)
{
    struct sw_dht_config cfg = { 0 };
    cfg.rng_seed = 5;
    memset(cfg.id, 0, 20);
    cfg.has_id = 1;
    cfg.rate_qps = 100000;
    cfg.rate_burst = 100000;
    struct sw_dht *d = sw_dht_new(&cfg, 1000);
    /* 400 nodes query us; each reply to our verification ping makes it good. */
    uint8_t buf[SW_DHT_MAX_PACKET];
    for (uint32_t i = 0; i < 400; i++) {
        uint8_t id[20];
        randombytes_buf(id, 20);
        if (i < 40) { id[0] = 0; id[1] = (uint8_t)(i * 3); } /* some close to us */
        struct sw_dht_addr from;
        mkaddr(&from, 1000 + i, 6881);
        char msg[128];
        int n = snprintf(msg, sizeof msg, "d1:ad2:id20:");
        memcpy(msg + n, id, 20);
        n += 20;
        n += snprintf(msg + n, sizeof msg - (size_t)n, "e1:q4:ping1:t2:aa1:y1:qe");
        sw_dht_input(d, (const uint8_t *)msg, (size_t)n, &from, 2000);
        struct sw_dht_addr to;
        size_t len;
        while ((len = sw_dht_pop_packet(d, &to, buf, sizeof buf)) > 0) {
            struct sw__krpc m;
            struct sw_bdoc doc;
            if (sw__krpc_parse(buf, len, &m, &doc)) continue;
            if (m.y == 'q' && m.method == SW__Q_PING) {
                char rep[128];
                int rn = snprintf(rep, sizeof rep, "d1:rd2:id20:");
                memcpy(rep + rn, id, 20);
                rn += 20;
                rn += snprintf(rep + rn, sizeof rep - (size_t)rn, "e1:t%zu:", m.t_len);
                memcpy(rep + rn, m.t, m.t_len);
                rn += (int)m.t_len;
                rn += snprintf(rep + rn, sizeof rep - (size_t)rn, "1:y1:re");
                sw_dht_input(d, (const uint8_t *)rep, (size_t)rn, &to, 2001);
            }
            sw_bdoc_free(&doc);
        }
    }
    struct sw_dht_stats st;
    sw_dht_get_stats(d, &st);
    CHECK_MSG(st.buckets >= 5, "buckets %u", st.buckets);
    CHECK_MSG(st.nodes <= st.buckets * SW_DHT_K, "nodes %u buckets %u", st.nodes, st.buckets);
    CHECK_MSG(st.nodes >= 30, "nodes %u", st.nodes);
    /* far buckets hold at most k: the bucket of ids starting with bit 1 (half of all) */
    uint8_t ids[2000][20];
    size_t n = sw_dht_get_nodes(d, NULL, ids, NULL, 2000);
    int far = 0;
    for (size_t i = 0; i < n; i++) far += (ids[i][0] & 0x80) != 0;
    CHECK_MSG(far <= SW_DHT_K, "far bucket has %d", far);
    /* save and load round trip */
    const char *dir = sw_test_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/dht.nodes", dir);
    CHECK_EQ_INT(sw_dht_save(d, path), 0);
    uint8_t id[20];
    struct sw_dht_addr addrs[2000];
    size_t na = 0;
    CHECK_EQ_INT(sw_dht_load(path, id, addrs, 2000, &na), 0);
    CHECK_EQ_U64(na, n);
    CHECK_EQ_MEM(id, cfg.id, 20);
    sw_dht_free(d);
}

/* ------------------------------------------------------------------ BEP 44 */

static void test_bep44_vectors(void)
{
    uint8_t pk[32], sig[64], t[20], want[20];
    unhex("77ff84905a91936367c01360803104f92432fcd904a43511876df5cdf3e7e548", pk, 32);
    const uint8_t *v = (const uint8_t *)"12:Hello World!";
    /* test 1: mutable without salt */
    uint8_t buf[128];
    size_t n = sw_dht_sign_buffer(NULL, 0, 1, v, 15, buf);
    CHECK_EQ_U64(n, strlen("3:seqi1e1:v12:Hello World!"));
    CHECK_EQ_MEM(buf, "3:seqi1e1:v12:Hello World!", n);
    sw_dht_mutable_target(pk, NULL, 0, t);
    unhex("4a533d47ec9c7d95b1ad75f576cffc641853b750", want, 20);
    CHECK_EQ_MEM(t, want, 20);
    unhex("305ac8aeb6c9c151fa120f120ea2cfb923564e11552d06a5d856091e5e853cff"
          "1260d3f39e4999684aa92eb73ffd136e6f4f3ecbfda0ce53a1608ecd7ae21f01", sig, 64);
    CHECK_EQ_INT(sw_dht_item_verify(pk, NULL, 0, 1, v, 15, sig), 0);
    CHECK_EQ_INT(sw_dht_item_verify(pk, NULL, 0, 2, v, 15, sig), SW_EPERM);
    /* test 2: mutable with salt "foobar" */
    n = sw_dht_sign_buffer((const uint8_t *)"foobar", 6, 1, v, 15, buf);
    CHECK_EQ_MEM(buf, "4:salt6:foobar3:seqi1e1:v12:Hello World!", n);
    sw_dht_mutable_target(pk, (const uint8_t *)"foobar", 6, t);
    unhex("411eba73b6f087ca51a3795d9c8c938d365e32c1", want, 20);
    CHECK_EQ_MEM(t, want, 20);
    unhex("6834284b6b24c3204eb2fea824d82f88883a3d95e8b4a21b8c0ded553d17d17d"
          "df9a8a7104b1258f30bed3787e6cb896fca78c58f8e03b5f18f14951a87d9a08", sig, 64);
    CHECK_EQ_INT(sw_dht_item_verify(pk, (const uint8_t *)"foobar", 6, 1, v, 15, sig), 0);
    /* test 3: immutable */
    sw_dht_immutable_target(v, 15, t);
    unhex("e5f96f6f38320f0f33959cb4d3d656452117aadb", want, 20);
    CHECK_EQ_MEM(t, want, 20);
    /* our signatures verify; key files round-trip */
    struct sw_dht_key k, k2;
    sw_dht_key_generate(&k);
    sw_dht_item_sign(&k, (const uint8_t *)"s", 1, 7, v, 15, sig);
    CHECK_EQ_INT(sw_dht_item_verify(k.pk, (const uint8_t *)"s", 1, 7, v, 15, sig), 0);
    const char *dir = sw_test_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/key", dir);
    CHECK_EQ_INT(sw_dht_key_save(path, &k), 0);
    CHECK_EQ_INT(sw_dht_key_load(path, &k2), 0);
    CHECK_EQ_MEM(k.pk, k2.pk, 32);
    FILE *f = fopen(path, "w");
    fputs("not a key", f);
    fclose(f);
    CHECK_EQ_INT(sw_dht_key_load(path, &k2), SW_ECORRUPT);
}

/* Builds a put query for a mutable item and returns the reply's error code (0 ok). */
static int64_t put_raw(struct sw_dht *d, const struct sw_dht_addr *from, uint64_t now, const struct sw_dht_key *k,
                       const char *salt, int64_t seq, int64_t cas, const char *value, int corrupt_sig)
{
    uint8_t tok[64];
    size_t tl;
    get_token(d, from, now, tok, &tl);
    struct sw_buf v, b;
    sw_buf_init(&v);
    sw_buf_init(&b);
    sw_benc_cstr(&v, value);
    uint8_t sig[64];
    size_t sl = salt ? strlen(salt) : 0;
    sw_dht_item_sign(k, (const uint8_t *)salt, sl, seq, v.data, v.len, sig);
    if (corrupt_sig) sig[5] ^= 1;
    sw_benc_dict(&b);
    sw_benc_cstr(&b, "a");
    sw_benc_dict(&b);
    if (cas >= 0) { sw_benc_cstr(&b, "cas"); sw_benc_int(&b, cas); }
    sw_benc_cstr(&b, "id"); sw_benc_str(&b, NODE_ID, 20);
    sw_benc_cstr(&b, "k"); sw_benc_str(&b, k->pk, 32);
    if (salt) { sw_benc_cstr(&b, "salt"); sw_benc_str(&b, salt, sl); }
    sw_benc_cstr(&b, "seq"); sw_benc_int(&b, seq);
    sw_benc_cstr(&b, "sig"); sw_benc_str(&b, sig, 64);
    sw_benc_cstr(&b, "token"); sw_benc_str(&b, tok, tl);
    sw_benc_cstr(&b, "v"); sw_buf_append(&b, v.data, v.len);
    sw_benc_end(&b);
    sw_benc_cstr(&b, "q"); sw_benc_cstr(&b, "put");
    sw_benc_cstr(&b, "t"); sw_benc_cstr(&b, "pt");
    sw_benc_cstr(&b, "y"); sw_benc_cstr(&b, "q");
    sw_benc_end(&b);
    uint8_t r[SW_DHT_MAX_PACKET];
    size_t rl = 0;
    int64_t code = -1;
    if (exchange(d, (const char *)b.data, b.len, from, now, r, &rl) == 0) code = reply_error_code(r, rl);
    sw_buf_free(&v);
    sw_buf_free(&b);
    return code;
}

static void test_bep44_store_rules(void)
{
    struct sw_dht_config cfg = { 0 };
    cfg.rng_seed = 6;
    cfg.rate_qps = 1000;
    cfg.rate_burst = 1000;
    struct sw_dht *d = sw_dht_new(&cfg, 1000);
    struct sw_dht_addr from;
    mkaddr(&from, 50, 6000);
    struct sw_dht_key k;
    sw_dht_key_generate(&k);
    CHECK_EQ_INT(put_raw(d, &from, 1000, &k, NULL, 5, -1, "five", 0), 0);
    CHECK_EQ_INT(put_raw(d, &from, 1001, &k, NULL, 4, -1, "four", 0), 302);   /* lower seq */
    CHECK_EQ_INT(put_raw(d, &from, 1002, &k, NULL, 6, -1, "six", 1), 206);    /* bad signature */
    CHECK_EQ_INT(put_raw(d, &from, 1003, &k, NULL, 6, 3, "six", 0), 301);     /* cas mismatch */
    CHECK_EQ_INT(put_raw(d, &from, 1004, &k, NULL, 6, 5, "six", 0), 0);       /* cas match */
    CHECK_EQ_INT(put_raw(d, &from, 1005, &k, NULL, 6, -1, "six", 0), 0);      /* same again: fine */
    CHECK_EQ_INT(put_raw(d, &from, 1006, &k, "salty", 1, -1, "x", 0), 0);     /* other target */
    char big_salt[80];
    memset(big_salt, 's', 70);
    big_salt[70] = 0;
    CHECK_EQ_INT(put_raw(d, &from, 1007, &k, big_salt, 1, -1, "x", 0), 207);
    char big[1100];
    memset(big, 'v', 1000);
    big[1000] = 0;
    CHECK_EQ_INT(put_raw(d, &from, 1008, &k, NULL, 9, -1, big, 0), 205);
    struct sw_dht_stats st;
    sw_dht_get_stats(d, &st);
    CHECK_EQ_INT(st.stored_items, 2);
    sw_dht_free(d);
}

/* ------------------------------------------------------------------ in-memory network */

#define NET_N 60

struct net;
struct netnode {
    struct net *net;
    int idx;
    struct sw_dht *d;
    struct sw_dht_addr addr;
    int ready, done;
    uint32_t peers, items, nodes_found;
    struct sw_dht_event last_done;
    int64_t last_seq;
    char last_value[64];
    int dead;
};

struct net {
    struct netnode n[NET_N];
    uint64_t now;
};

static void net_event(void *ud, const struct sw_dht_event *ev)
{
    struct netnode *nn = ud;
    if (ev->type == SW_DHT_EV_READY) nn->ready = 1;
    if (ev->type == SW_DHT_EV_PEER) nn->peers++;
    if (ev->type == SW_DHT_EV_NODE) nn->nodes_found++;
    if (ev->type == SW_DHT_EV_ITEM) {
        nn->items++;
        nn->last_seq = ev->seq;
        size_t l = ev->value_len < 63 ? ev->value_len : 63;
        memcpy(nn->last_value, ev->value, l);
        nn->last_value[l] = 0;
    }
    if (ev->type == SW_DHT_EV_DONE) {
        nn->done++;
        nn->last_done = *ev;
    }
}

/* Delivers every queued packet (zero latency, loss-free) and runs timers, for `ms`. */
static void net_run(struct net *net, uint64_t ms)
{
    uint64_t end = net->now + ms;
    uint8_t buf[SW_DHT_MAX_PACKET];
    while (net->now <= end) {
        int moved = 1;
        while (moved) {
            moved = 0;
            for (int i = 0; i < NET_N; i++) {
                struct sw_dht_addr to;
                size_t n;
                while ((n = sw_dht_pop_packet(net->n[i].d, &to, buf, sizeof buf)) > 0) {
                    moved = 1;
                    int dst = to.ip[3] - 1;
                    if (to.ip[0] != 10 || dst < 0 || dst >= NET_N || net->n[dst].dead) continue;
                    sw_dht_input(net->n[dst].d, buf, n, &net->n[i].addr, net->now);
                }
            }
        }
        net->now += 10;
        for (int i = 0; i < NET_N; i++)
            if (!net->n[i].dead && sw_dht_next_deadline(net->n[i].d) <= net->now) sw_dht_periodic(net->n[i].d, net->now);
    }
}

static struct net *net_new(void)
{
    struct net *net = calloc(1, sizeof *net);
    net->now = 100000;
    for (int i = 0; i < NET_N; i++) {
        struct netnode *nn = &net->n[i];
        nn->net = net;
        nn->idx = i;
        mkaddr(&nn->addr, (uint32_t)(i + 1), 6881);
        struct sw_dht_config cfg = { 0 };
        cfg.rng_seed = 1000 + (uint64_t)i;
        cfg.on_event = net_event;
        cfg.ud = nn;
        nn->d = sw_dht_new(&cfg, net->now);
    }
    for (int i = 1; i < NET_N; i++) {
        sw_dht_add_contact(net->n[i].d, &net->n[0].addr, net->now);
        net_run(net, 50);
    }
    net_run(net, 10000);
    return net;
}

static void net_free(struct net *net)
{
    for (int i = 0; i < NET_N; i++) sw_dht_free(net->n[i].d);
    free(net);
}

static void test_network(void)
{
    struct net *net = net_new();
    int ready = 0;
    for (int i = 1; i < NET_N; i++) ready += net->n[i].ready;
    CHECK_EQ_INT(ready, NET_N - 1);
    struct sw_dht_stats st;
    sw_dht_get_stats(net->n[5].d, &st);
    CHECK_MSG(st.nodes >= 10, "node 5 knows %u nodes", st.nodes);

    /* find_node converges on the target node itself */
    uint8_t tid[20];
    sw_dht_get_id(net->n[42].d, tid);
    uint32_t lid;
    CHECK_EQ_INT(sw_dht_find_node(net->n[7].d, tid, net->now, &lid), 0);
    net_run(net, 5000);
    CHECK_EQ_INT(net->n[7].done, 1);
    CHECK_MSG(net->n[7].last_done.found_hops > 0, "target not found");
    CHECK_MSG(net->n[7].last_done.hops <= 4, "hops %u", net->n[7].last_done.hops);
    if (getenv("SW_TEST_VERBOSE"))
        fprintf(stderr, "find_node: queries %u replies %u hops %u found_hops %u nodes %u\n", net->n[7].last_done.n_queries,
                net->n[7].last_done.n_replies, net->n[7].last_done.hops, net->n[7].last_done.found_hops, st.nodes);

    /* announce from 3 nodes, find all 3 (+ not ourselves) from another */
    uint8_t ih[20];
    memset(ih, 0x5a, 20);
    for (int i = 10; i < 13; i++) sw_dht_announce(net->n[i].d, ih, (uint16_t)(7000 + i), 1, net->now, NULL);
    net_run(net, 5000);
    CHECK_MSG(net->n[10].last_done.n_stored >= 4, "stored on %u", net->n[10].last_done.n_stored);
    net->n[30].peers = 0;
    sw_dht_get_peers(net->n[30].d, ih, net->now, NULL);
    net_run(net, 5000);
    CHECK_EQ_INT(net->n[30].peers, 3);
    /* an announcing node counts itself */
    net->n[11].peers = 0;
    sw_dht_get_peers(net->n[11].d, ih, net->now, NULL);
    net_run(net, 5000);
    CHECK_MSG(net->n[11].peers >= 3, "self-inclusive peers %u", net->n[11].peers);

    /* re-announce keeps it alive past the 30-minute peer lifetime */
    net_run(net, 40u * 60u * 1000u);
    net->n[31].peers = 0;
    sw_dht_get_peers(net->n[31].d, ih, net->now, NULL);
    net_run(net, 5000);
    CHECK_MSG(net->n[31].peers == 3, "after 40 min: %u peers", net->n[31].peers);

    /* BEP 44: mutable put, get from elsewhere; a newer seq wins; immutable too */
    struct sw_dht_key k;
    sw_dht_key_generate(&k);
    CHECK_EQ_INT(sw_dht_put_mutable(net->n[20].d, &k, (const uint8_t *)"s1", 2, (const uint8_t *)"5:hello", 7, 1, -1,
                                    0, net->now, NULL), 0);
    net_run(net, 5000);
    CHECK_MSG(net->n[20].last_done.n_stored >= 4, "put stored on %u", net->n[20].last_done.n_stored);
    sw_dht_get_item(net->n[40].d, NULL, k.pk, (const uint8_t *)"s1", 2, net->now, NULL);
    net_run(net, 5000);
    CHECK_EQ_INT(net->n[40].last_seq, 1);
    CHECK_EQ_STR(net->n[40].last_value, "5:hello");
    sw_dht_put_mutable(net->n[21].d, &k, (const uint8_t *)"s1", 2, (const uint8_t *)"5:world", 7, 2, 1, 0, net->now, NULL);
    net_run(net, 5000);
    sw_dht_get_item(net->n[41].d, NULL, k.pk, (const uint8_t *)"s1", 2, net->now, NULL);
    net_run(net, 5000);
    CHECK_EQ_INT(net->n[41].last_seq, 2);
    CHECK_EQ_STR(net->n[41].last_value, "5:world");
    /* an old seq is refused by the storers */
    sw_dht_put_mutable(net->n[22].d, &k, (const uint8_t *)"s1", 2, (const uint8_t *)"3:old", 5, 1, -1, 0, net->now, NULL);
    net_run(net, 5000);
    CHECK_EQ_INT(net->n[22].last_done.n_stored, 0);
    uint8_t it[20];
    sw_dht_immutable_target((const uint8_t *)"4:imm!", 6, it);
    sw_dht_put_immutable(net->n[23].d, (const uint8_t *)"4:imm!", 6, net->now, NULL);
    net_run(net, 5000);
    sw_dht_get_item(net->n[43].d, it, NULL, NULL, 0, net->now, NULL);
    net_run(net, 5000);
    CHECK_EQ_STR(net->n[43].last_value, "4:imm!");

    /* kill a third of the network; lookups still work and dead nodes go bad */
    for (int i = 45; i < NET_N; i++) net->n[i].dead = 1;
    for (int i = 0; i < 10; i++) net->n[i].peers = 0;
    sw_dht_get_peers(net->n[2].d, ih, net->now, NULL);
    net_run(net, 10000);
    CHECK_EQ_INT(net->n[2].peers, 3);
    net_free(net);
}

static uint32_t early_peers, early_done;
static struct sw_dht_addr early_addr;
static void early_event(void *ud, const struct sw_dht_event *ev)
{
    (void)ud;
    if (ev->type == SW_DHT_EV_PEER && !ev->is_self) {
        early_peers++;
        early_addr = ev->addr;
    }
    if (ev->type == SW_DHT_EV_DONE) early_done++;
}

/* A lookup started right after add_contact, before any reply, waits for the bootstrap. */
static void test_lookup_before_bootstrap(void)
{
    struct sw_dht_config cfg = { 0 };
    struct sw_dht *d[2];
    struct sw_dht_addr a[2];
    for (int i = 0; i < 2; i++) {
        cfg.rng_seed = 90 + (uint64_t)i;
        cfg.on_event = i == 1 ? early_event : NULL;
        d[i] = sw_dht_new(&cfg, 1000);
        mkaddr(&a[i], 200 + (uint32_t)i, 6881);
    }
    uint8_t ih[20];
    memset(ih, 0x77, 20);
    sw_dht_announce(d[0], ih, 5000, 0, 1000, NULL); /* d[0] knows no one: stores locally */
    sw_dht_add_contact(d[1], &a[0], 1000);
    CHECK_EQ_INT(sw_dht_get_peers(d[1], ih, 1000, NULL), 0);
    uint8_t buf[SW_DHT_MAX_PACKET];
    for (uint64_t now = 1000; now < 20000 && !early_done; now += 50) {
        for (int i = 0; i < 2; i++) {
            struct sw_dht_addr to;
            size_t n;
            if (sw_dht_next_deadline(d[i]) <= now) sw_dht_periodic(d[i], now);
            while ((n = sw_dht_pop_packet(d[i], &to, buf, sizeof buf)) > 0)
                sw_dht_input(d[1 - i], buf, n, &a[i], now + 10);
        }
    }
    CHECK_EQ_INT(early_done, 1);
    /* d[0] learned its address from d[1]'s reply (BEP 42 `ip`) and lists itself */
    CHECK_EQ_INT(early_peers, 1);
    struct sw_dht_addr want = a[0];
    want.port = 5000;
    CHECK(sw_dht_addr_eq(&early_addr, &want));
    for (int i = 0; i < 2; i++) sw_dht_free(d[i]);
}

/* Drains d's queue; returns the number of queries of `method` sent to `to`, and answers
 * them as node `id` when answer is set. */
static int answer_queries(struct sw_dht *d, const struct sw_dht_addr *to, const char *id, enum sw__krpc_method method,
                          int answer, uint64_t now, int *pings_out)
{
    uint8_t buf[SW_DHT_MAX_PACKET];
    struct sw_dht_addr dst;
    size_t n;
    int count = 0;
    while ((n = sw_dht_pop_packet(d, &dst, buf, sizeof buf)) > 0) {
        struct sw__krpc m;
        struct sw_bdoc doc;
        if (!sw_dht_addr_eq(&dst, to) || sw__krpc_parse(buf, n, &m, &doc)) continue;
        if (pings_out && m.y == 'q' && m.method == SW__Q_PING) (*pings_out)++;
        if (m.y == 'q' && m.method == method) {
            count++;
            if (answer) {
                char rep[128];
                int rn = snprintf(rep, sizeof rep, "d1:rd2:id20:%se1:t4:", id);
                memcpy(rep + rn, m.t, 4);
                rn += 4;
                rn += snprintf(rep + rn, sizeof rep - (size_t)rn, "1:y1:re");
                sw_bdoc_free(&doc);
                sw_dht_input(d, (const uint8_t *)rep, (size_t)rn, to, now);
                continue;
            }
        }
        sw_bdoc_free(&doc);
    }
    return count;
}

/* BEP 5 node states: good while heard from within 15 minutes, then questionable and
 * pinged, bad after failing queries twice in a row, and then no longer handed out. */
static void test_node_states(void)
{
    struct sw_dht_config cfg = { 0 };
    cfg.rng_seed = 97;
    uint64_t t = 50000;
    struct sw_dht *d = sw_dht_new(&cfg, t);
    struct sw_dht_addr b;
    mkaddr(&b, 77, 6881);
    const char *bid = "BBBBBBBBBBBBBBBBBBBB";
    sw_dht_add_contact(d, &b, t);
    CHECK_EQ_INT(answer_queries(d, &b, bid, SW__Q_FIND_NODE, 1, t + 5, NULL), 1);
    answer_queries(d, &b, bid, SW__Q_FIND_NODE, 1, t + 6, NULL); /* the self-lookup, if any */
    struct sw_dht_stats st;
    sw_dht_get_stats(d, &st);
    CHECK_EQ_INT(st.nodes, 1);
    CHECK_EQ_INT(st.good_nodes, 1);
    /* it answers everything for 10 minutes: good, and never pinged */
    uint64_t now = t + 5000;
    int pings = 0;
    for (; now <= t + 10 * 60000; now += 1000) {
        sw_dht_periodic(d, now);
        answer_queries(d, &b, bid, SW__Q_FIND_NODE, 1, now, &pings);
    }
    CHECK_EQ_INT(pings, 0);
    sw_dht_get_stats(d, &st);
    CHECK_EQ_INT(st.good_nodes, 1);
    /* then silence: still good 14 minutes later (BEP 5: 15 minutes) */
    for (; now <= t + 24 * 60000; now += 1000) {
        sw_dht_periodic(d, now);
        answer_queries(d, &b, bid, SW__Q_FIND_NODE, 0, now, &pings);
    }
    sw_dht_get_stats(d, &st);
    CHECK_EQ_INT(st.good_nodes, 1);
    CHECK_EQ_INT(pings, 0);
    /* past 15 minutes it is questionable: pinged, fails twice in a row, bad */
    for (; now <= t + 30 * 60000; now += 1000) {
        sw_dht_periodic(d, now);
        answer_queries(d, &b, bid, SW__Q_FIND_NODE, 0, now, &pings);
    }
    CHECK_MSG(pings >= 1, "pings %d", pings);
    sw_dht_get_stats(d, &st);
    CHECK_EQ_INT(st.good_nodes, 0);
    uint8_t ids[4][20];
    uint8_t target[20] = { 0 };
    CHECK_EQ_U64(sw_dht_get_nodes(d, target, ids, NULL, 4), 0); /* bad: not handed out */
    sw_dht_free(d);
}

/* A caller whose clock reads a little ahead of the loop's (sw_time_ms vs a cached uv_now):
 * time must not run backwards inside, or `now - start` wraps and lookups end at once. */
static void test_clock_skew(void)
{
    struct sw_dht_config cfg = { 0 };
    cfg.rng_seed = 95;
    cfg.on_event = early_event;
    struct sw_dht *d = sw_dht_new(&cfg, 10000);
    struct sw_dht_addr silent;
    mkaddr(&silent, 250, 6881);
    sw_dht_add_contact(d, &silent, 10000);
    uint8_t ih[20];
    memset(ih, 0x12, 20);
    early_done = 0;
    sw_dht_get_peers(d, ih, 10500, NULL); /* the caller's clock */
    sw_dht_periodic(d, 10010);             /* the loop's, read earlier */
    CHECK_EQ_INT(early_done, 0);
    sw_dht_periodic(d, 10000 + 16000);     /* the bootstrap wait (15 s) is over */
    CHECK_EQ_INT(early_done, 1);
    sw_dht_free(d);
}

/* BEP 32: an IPv6 table answers with nodes6 (38 bytes each) and 18-byte peer values. */
static void test_ipv6(void)
{
    struct sw_dht *d[3];
    struct sw_dht_addr a[3];
    uint32_t peers = 0;
    for (int i = 0; i < 3; i++) {
        struct sw_dht_config cfg = { 0 };
        cfg.rng_seed = 70 + (uint64_t)i;
        cfg.family = 6;
        d[i] = sw_dht_new(&cfg, 1000);
        char s[64];
        snprintf(s, sizeof s, "[fd00::%d]:6881", i + 1);
        CHECK_EQ_INT(sw_dht_addr_parse(s, &a[i]), 0);
        CHECK_EQ_INT(a[i].family, 6);
    }
    char txt[64];
    CHECK_EQ_STR(sw_dht_addr_str(&a[1], txt, sizeof txt), "[fd00::2]:6881");
    /* an IPv4 contact is refused by an IPv6 table */
    struct sw_dht_addr v4;
    mkaddr(&v4, 1, 1);
    CHECK_EQ_INT(sw_dht_add_contact(d[0], &v4, 1000), SW_EINVAL);
    sw_dht_add_contact(d[1], &a[0], 1000);
    sw_dht_add_contact(d[2], &a[0], 1000);
    uint8_t buf[SW_DHT_MAX_PACKET];
    int saw_nodes6 = 0;
    uint64_t now = 1000;
    uint8_t ih[20];
    memset(ih, 0x66, 20);
    for (int round = 0; round < 400; round++, now += 10) {
        if (round == 100) sw_dht_announce(d[1], ih, 4242, 0, now, NULL);
        if (round == 200) {
            struct sw_dht_stats st;
            sw_dht_get_stats(d[2], &st);
            CHECK_MSG(st.nodes >= 2, "v6 node 2 knows %u", st.nodes);
        }
        for (int i = 0; i < 3; i++) {
            struct sw_dht_addr to;
            size_t n;
            while ((n = sw_dht_pop_packet(d[i], &to, buf, sizeof buf)) > 0) {
                struct sw__krpc m;
                struct sw_bdoc doc;
                if (sw__krpc_parse(buf, n, &m, &doc) == 0) {
                    if (m.y == 'r' && m.nodes6) saw_nodes6 = 1;
                    CHECK(m.nodes == NULL);
                    sw_bdoc_free(&doc);
                }
                for (int j = 0; j < 3; j++)
                    if (sw_dht_addr_eq(&to, &a[j])) sw_dht_input(d[j], buf, n, &a[i], now);
            }
            if (sw_dht_next_deadline(d[i]) <= now) sw_dht_periodic(d[i], now);
        }
    }
    CHECK(saw_nodes6);
    struct sw_dht_stats st;
    sw_dht_get_stats(d[0], &st);
    CHECK_EQ_INT(st.stored_peers, 1);
    (void)peers;
    for (int i = 0; i < 3; i++) sw_dht_free(d[i]);
}

int main(void)
{
    sw_log_set(NULL, NULL, SW_LOG_ERROR);
    if (sodium_init() < 0) SW_TEST_SKIP("libsodium cannot initialise");
    SW_RUN(test_krpc_parse);
    SW_RUN(test_malformed_dropped);
    SW_RUN(test_rate_limit);
    SW_RUN(test_tokens_rotate);
    SW_RUN(test_storage_caps);
    SW_RUN(test_bucket_split);
    SW_RUN(test_bep44_vectors);
    SW_RUN(test_bep44_store_rules);
    SW_RUN(test_lookup_before_bootstrap);
    SW_RUN(test_node_states);
    SW_RUN(test_clock_skew);
    SW_RUN(test_ipv6);
    SW_RUN(test_network);
    return SW_TEST_DONE();
}
