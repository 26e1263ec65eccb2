/* test_swarm.c — the heart of issue 6, without sockets: identities, signed capability
 * records, the swarm view (liveness, gossip relay), readiness and its reasons, the planner
 * and owner-command (LOAD_SHARD, DRAIN) checks. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "swarm/swarm.h"
#include "test.h"

static const uint8_t IH[20] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20 };

struct tnode {
    struct sw_identity id;
    struct sw_cap cap;
    struct sw_buf wire;
};

static void tnode_init(struct tnode *t, int32_t shard, enum sw_phase phase)
{
    memset(t, 0, sizeof *t);
    CHECK_EQ_INT(sw_identity_generate(&t->id), 0);
    memcpy(t->cap.node_id, t->id.pk, 32);
    memcpy(t->cap.info_hash, IH, 20);
    t->cap.seq = 1;
    t->cap.shard = shard;
    t->cap.phase = (uint8_t)phase;
    t->cap.layer_first = t->cap.layer_last = -1;
    t->cap.movable = 1; /* auto nodes unless a test pins them */
}

/* Re-signs the record with seq+1 and returns the wire bytes. */
static const struct sw_buf *tnode_sign(struct tnode *t)
{
    t->cap.seq++;
    sw_buf_free(&t->wire);
    CHECK_EQ_INT(sw_cap_encode(&t->cap, &t->id, &t->wire), 0);
    return &t->wire;
}

static int feed(struct sw_view *v, struct tnode *t, uint64_t now)
{
    const struct sw_buf *w = tnode_sign(t);
    return sw_view_receive(v, w->data, w->len, now, NULL);
}

static struct sw_view *mkview(struct tnode *self, uint32_t n_shards)
{
    struct sw_view_config cfg = { 0 };
    cfg.n_shards = n_shards;
    memcpy(cfg.self_id, self->id.pk, 32);
    memcpy(cfg.info_hash, IH, 20);
    cfg.expiry_ms = 3000;
    struct sw_view *v = NULL;
    CHECK_EQ_INT(sw_view_new(&cfg, &v), 0);
    tnode_sign(self);
    CHECK_EQ_INT(sw_view_set_self(v, &self->cap, self->wire.data, self->wire.len, 0), 0);
    return v;
}

static void test_identity(void)
{
    const char *dir = sw_test_tmpdir();
    CHECK(dir != NULL);
    struct sw_identity a, b;
    int created = 0;
    char err[256];
    CHECK_EQ_INT(sw_identity_load_or_create(dir, &a, &created, err, sizeof err), 0);
    CHECK_EQ_INT(created, 1);
    CHECK_EQ_INT(sw_identity_load_or_create(dir, &b, &created, err, sizeof err), 0);
    CHECK_EQ_INT(created, 0);
    CHECK_EQ_MEM(a.pk, b.pk, 32);
    CHECK_EQ_MEM(a.sk, b.sk, 64);
    char path[512];
    snprintf(path, sizeof path, "%s/bad.key", dir);
    CHECK_EQ_INT(sw_file_write_atomic(path, "hello\n", 6), 0);
    CHECK_EQ_INT(sw_identity_load(path, &b, err, sizeof err), SW_ECORRUPT);
    CHECK(strstr(err, "bad.key") != NULL);
    snprintf(path, sizeof path, "%s/none.key", dir);
    CHECK_EQ_INT(sw_identity_load(path, &b, err, sizeof err), SW_ENOTFOUND);
    uint8_t id[32] = { 0x5f, 0x2a };
    char s[16];
    CHECK_EQ_STR(sw_node_id_short(id, s, sizeof s), "5f2a\xe2\x80\xa6");
}

/* Connection binding: a peer proves the node id of its record by signing our challenge. */
static void test_auth(void)
{
    struct sw_identity a, b;
    sw_identity_generate(&a);
    sw_identity_generate(&b);
    uint8_t ch[32], ch2[32], proof[96], id[32];
    sw_random_bytes(ch, 32);
    memcpy(ch2, ch, 32);
    ch2[0] ^= 1;
    sw_swarm_auth_sign(&a, IH, ch, proof);
    CHECK_EQ_INT(sw_swarm_auth_verify(proof, IH, ch, id), 0);
    CHECK_EQ_MEM(id, a.pk, 32);
    CHECK_EQ_INT(sw_swarm_auth_verify(proof, IH, ch2, id), SW_EPERM);  /* another challenge */
    uint8_t ih2[20];
    memcpy(ih2, IH, 20);
    ih2[5] ^= 1;
    CHECK_EQ_INT(sw_swarm_auth_verify(proof, ih2, ch, id), SW_EPERM);  /* another model */
    memcpy(proof, b.pk, 32);                                           /* claims b's id */
    CHECK_EQ_INT(sw_swarm_auth_verify(proof, IH, ch, id), SW_EPERM);
}

static void test_record_roundtrip(void)
{
    struct tnode t;
    tnode_init(&t, 3, SW_PHASE_FETCHING);
    t.cap.bytes_done = 47;
    t.cap.bytes_total = 100;
    t.cap.rate_bps = 80000000;
    t.cap.eta_ms = 130000;
    t.cap.layer_first = 6;
    t.cap.layer_last = 8;
    t.cap.mem_free = 1ull << 33;
    t.cap.threads = 8;
    t.cap.tokens_per_s_milli = 12345;
    t.cap.queue = 2;
    snprintf(t.cap.api_addr, sizeof t.cap.api_addr, "127.0.0.1:8080");
    snprintf(t.cap.listen_addr, sizeof t.cap.listen_addr, "127.0.0.1:6881");
    t.cap.n_neighbours = 2;
    memset(t.cap.neighbours[0], 0xaa, 8);
    memset(t.cap.neighbours[1], 0xbb, 8);
    const struct sw_buf *w = tnode_sign(&t);
    struct sw_cap c;
    char err[200];
    CHECK_EQ_INT(sw_cap_decode(w->data, w->len, &c, err, sizeof err), 0);
    CHECK_EQ_MEM(&c, &t.cap, offsetof(struct sw_cap, neighbours));
    CHECK_EQ_MEM(c.neighbours, t.cap.neighbours, 16);
    /* Deterministic: the same record encodes to the same bytes. */
    struct sw_buf again = { 0 };
    CHECK_EQ_INT(sw_cap_encode(&t.cap, &t.id, &again), 0);
    CHECK_EQ_INT(again.len, w->len);
    CHECK_EQ_MEM(again.data, w->data, w->len);
    sw_buf_free(&again);

    /* Flip one byte inside the record: the signature no longer verifies. */
    uint8_t bad[SW_SWARM_MAX_RECORD];
    memcpy(bad, w->data, w->len);
    uint8_t *q = memmem(bad, w->len, "4:rate", 6);
    CHECK(q != NULL);
    if (q) q[7] = q[7] == '9' ? '8' : '9';
    CHECK_EQ_INT(sw_cap_decode(bad, w->len, &c, err, sizeof err), SW_EPERM);

    /* Unsigned: the record without its signature. */
    struct sw_buf u = { 0 };
    sw_benc_dict(&u);
    sw_benc_cstr(&u, "r");
    struct sw_buf rec = { 0 };
    sw_benc_dict(&rec);
    sw_benc_end(&rec);
    sw_benc_str(&u, rec.data, rec.len);
    sw_benc_end(&u);
    CHECK_EQ_INT(sw_cap_decode(u.data, u.len, &c, err, sizeof err), SW_EPERM);
    CHECK(strstr(err, "unsigned") != NULL);
    sw_buf_free(&u);
    sw_buf_free(&rec);

    /* Malformed envelopes, truncations and an oversized input. */
    CHECK_EQ_INT(sw_cap_decode((const uint8_t *)"i5e", 3, &c, err, sizeof err), SW_ECORRUPT);
    CHECK_EQ_INT(sw_cap_decode((const uint8_t *)"d1:r", 4, &c, err, sizeof err), SW_ECORRUPT);
    for (size_t cut = 0; cut < w->len; cut += 7)
        CHECK(sw_cap_decode(w->data, cut, &c, NULL, 0) < 0);
    static uint8_t big[SW_SWARM_MAX_RECORD + 1];
    CHECK_EQ_INT(sw_cap_decode(big, sizeof big, &c, err, sizeof err), SW_ETOOBIG);

    /* A GPU node's record carries the device (g, gl, gm); a CPU node's has no such keys. */
    CHECK(memmem(w->data, w->len, "1:g", 3) == NULL);
    snprintf(t.cap.gpu, sizeof t.cap.gpu, "NVIDIA H100 80GB HBM3 [discrete GPU]");
    t.cap.gpu_mem = 85ull << 30;
    t.cap.gpu_layers = 22;
    w = tnode_sign(&t);
    CHECK_EQ_INT(sw_cap_decode(w->data, w->len, &c, err, sizeof err), 0);
    CHECK_EQ_STR(c.gpu, t.cap.gpu);
    CHECK_EQ_U64(c.gpu_mem, t.cap.gpu_mem);
    CHECK_EQ_INT(c.gpu_layers, 22);
    sw_buf_free(&t.wire);
}

/* A properly signed record that is not in canonical form (an extra key) is malformed. */
static void test_record_noncanonical(void)
{
    struct tnode t;
    tnode_init(&t, 0, SW_PHASE_LOADED);
    const struct sw_buf *w = tnode_sign(&t);
    struct sw_bdoc d;
    CHECK_EQ_INT(sw_bdecode(w->data, w->len, NULL, &d, NULL, NULL, 0), 0);
    const struct sw_bnode *r = sw_bdict_get(&d, &d.nodes[0], "r");
    CHECK(r != NULL);
    /* rebuild the record with an extra trailing key "zz" */
    struct sw_buf rec = { 0 };
    sw_buf_append(&rec, r->str, r->str_len - 1);
    sw_benc_cstr(&rec, "zz");
    sw_benc_int(&rec, 1);
    sw_benc_end(&rec);
    uint8_t sig[64];
    crypto_sign_detached(sig, NULL, rec.data, rec.len, t.id.sk);
    struct sw_buf env = { 0 };
    sw_benc_dict(&env);
    sw_benc_cstr(&env, "r"); sw_benc_str(&env, rec.data, rec.len);
    sw_benc_cstr(&env, "s"); sw_benc_str(&env, sig, 64);
    sw_benc_end(&env);
    struct sw_cap c;
    char err[200];
    CHECK_EQ_INT(sw_cap_decode(env.data, env.len, &c, err, sizeof err), SW_ECORRUPT);
    CHECK(strstr(err, "canonical") != NULL);
    sw_bdoc_free(&d);
    sw_buf_free(&rec);
    sw_buf_free(&env);
    sw_buf_free(&t.wire);
}

static void test_view_seq_and_counts(void)
{
    struct tnode self, a;
    tnode_init(&self, 0, SW_PHASE_LOADED);
    tnode_init(&a, 1, SW_PHASE_FETCHING);
    struct sw_view *v = mkview(&self, 2);
    CHECK_EQ_INT(feed(v, &a, 10), SW_VIEW_FRESH);
    const struct sw_buf old = a.wire;
    struct sw_buf keep = { 0 };
    sw_buf_append(&keep, old.data, old.len);
    /* equal seq: stale */
    CHECK_EQ_INT(sw_view_receive(v, keep.data, keep.len, 11, NULL), SW_VIEW_STALE);
    a.cap.bytes_done = 10; /* only progress: newer, but nothing readiness depends on */
    a.cap.bytes_total = 100;
    CHECK_EQ_INT(feed(v, &a, 11), SW_VIEW_REFRESH);
    a.cap.phase = SW_PHASE_LOADED;
    CHECK_EQ_INT(feed(v, &a, 12), SW_VIEW_FRESH);
    /* the older record again: lower seq, ignored */
    CHECK_EQ_INT(sw_view_receive(v, keep.data, keep.len, 13, NULL), SW_VIEW_STALE);
    CHECK_EQ_INT(sw_view_find(v, a.id.pk)->cap.phase, SW_PHASE_LOADED);
    /* garbage and unsigned are dropped and counted */
    CHECK_EQ_INT(sw_view_receive(v, (const uint8_t *)"xyz", 3, 14, NULL), SW_ECORRUPT);
    uint8_t bad[SW_SWARM_MAX_RECORD];
    memcpy(bad, a.wire.data, a.wire.len);
    bad[a.wire.len - 3] ^= 1; /* inside the signature */
    CHECK_EQ_INT(sw_view_receive(v, bad, a.wire.len, 15, NULL), SW_EPERM);
    /* another model */
    struct tnode other;
    tnode_init(&other, 0, SW_PHASE_LOADED);
    other.cap.info_hash[0] ^= 0xff;
    CHECK_EQ_INT(feed(v, &other, 16), SW_EINVAL);
    /* our own record coming back through gossip is ignored */
    CHECK_EQ_INT(sw_view_receive(v, self.wire.data, self.wire.len, 17, NULL), SW_VIEW_STALE);
    /* a shard index beyond the model */
    struct tnode far;
    tnode_init(&far, 5, SW_PHASE_LOADED);
    CHECK_EQ_INT(feed(v, &far, 18), SW_ECORRUPT);
    struct sw_view_stats st = sw_view_stats(v);
    CHECK_EQ_U64(st.accepted, 3);
    CHECK_EQ_U64(st.malformed, 2);
    CHECK_EQ_U64(st.unsigned_or_bad_sig, 1);
    CHECK_EQ_U64(st.wrong_model, 1);
    CHECK_EQ_U64(st.stale, 3);
    CHECK_EQ_INT(sw_view_ready(v), 1); /* self holds shard 0, a holds shard 1 */
    sw_buf_free(&keep);
    sw_view_free(v);
    sw_buf_free(&self.wire); sw_buf_free(&a.wire); sw_buf_free(&other.wire); sw_buf_free(&far.wire);
}

static void test_view_self_counts(void)
{
    struct tnode self;
    tnode_init(&self, 0, SW_PHASE_LOADED);
    struct sw_view *v = mkview(&self, 1);
    CHECK_EQ_INT(sw_view_ready(v), 1);
    uint8_t best[32];
    CHECK_EQ_INT(sw_view_best_node(v, 0, best), 0);
    CHECK_EQ_MEM(best, self.id.pk, 32);
    /* self never expires */
    sw_view_expire(v, 1000000);
    CHECK_EQ_INT(sw_view_ready(v), 1);
    sw_view_free(v);
    sw_buf_free(&self.wire);
}

/* The field bug: the chosen node for a shard is not loaded although another node has it. */
static void test_best_among_loaded_only(void)
{
    struct tnode self, fast_unloaded, slow_loaded, relayed_loaded;
    tnode_init(&self, 0, SW_PHASE_LOADED);
    tnode_init(&fast_unloaded, 1, SW_PHASE_FETCHING);
    tnode_init(&slow_loaded, 1, SW_PHASE_LOADED);
    tnode_init(&relayed_loaded, 1, SW_PHASE_LOADED);
    fast_unloaded.cap.tokens_per_s_milli = 999999;
    struct sw_view *v = mkview(&self, 2);
    feed(v, &fast_unloaded, 1);
    feed(v, &slow_loaded, 1);
    feed(v, &relayed_loaded, 1);
    sw_view_set_direct(v, fast_unloaded.id.pk, 1, 1);
    sw_view_set_rtt(v, fast_unloaded.id.pk, 10);
    sw_view_set_direct(v, slow_loaded.id.pk, 1, 1);
    sw_view_set_rtt(v, slow_loaded.id.pk, 5000);
    CHECK_EQ_INT(sw_view_ready(v), 1);
    uint8_t best[32];
    CHECK_EQ_INT(sw_view_best_node(v, 1, best), 0);
    CHECK_EQ_MEM(best, slow_loaded.id.pk, 32); /* loaded + direct beats relayed */
    struct sw_shard_view sv;
    sw_view_shard(v, 1, &sv);
    CHECK_EQ_INT(sv.n_announced, 3);
    CHECK_EQ_INT(sv.n_loaded, 2);
    /* the direct loaded one leaves: the relayed loaded one is best */
    sw_view_set_direct(v, slow_loaded.id.pk, 0, 2);
    CHECK_EQ_INT(sw_view_best_node(v, 1, best), 0);
    CHECK_EQ_MEM(best, relayed_loaded.id.pk, 32);
    /* queue, then speed, break ties between equally near nodes */
    struct tnode q1, q2;
    tnode_init(&q1, 0, SW_PHASE_LOADED);
    tnode_init(&q2, 0, SW_PHASE_LOADED);
    q1.cap.queue = 3;
    q2.cap.queue = 1;
    feed(v, &q1, 3);
    feed(v, &q2, 3);
    self.cap.phase = SW_PHASE_FETCHING;
    tnode_sign(&self);
    sw_view_set_self(v, &self.cap, self.wire.data, self.wire.len, 3);
    CHECK_EQ_INT(sw_view_best_node(v, 0, best), 0);
    CHECK_EQ_MEM(best, q2.id.pk, 32);
    sw_view_free(v);
    struct tnode *all[] = { &self, &fast_unloaded, &slow_loaded, &relayed_loaded, &q1, &q2 };
    for (size_t i = 0; i < SW_ARRAY_LEN(all); i++) sw_buf_free(&all[i]->wire);
}

/* The other field bug: "ready" while no node holds a shard. */
static void test_missing_shard_never_skipped(void)
{
    struct tnode self, a;
    tnode_init(&self, 0, SW_PHASE_LOADED);
    tnode_init(&a, 1, SW_PHASE_LOADED);
    struct sw_view *v = mkview(&self, 3);
    feed(v, &a, 1);
    CHECK_EQ_INT(sw_view_ready(v), 0);
    CHECK_EQ_INT(sw_view_n_discovered(v), 2);
    char r[512];
    CHECK_EQ_INT(sw_view_shard_reason(v, 2, r, sizeof r), 1);
    CHECK_EQ_STR(r, "shard 2: no node announced it");
    CHECK_EQ_INT(sw_view_shard_reason(v, 1, r, sizeof r), 0);
    CHECK_EQ_STR(r, "");
    uint8_t best[32];
    CHECK_EQ_INT(sw_view_best_node(v, 2, best), SW_ENOTFOUND);
    /* a seeder holding every file does not make the shard loaded */
    struct tnode seeder;
    tnode_init(&seeder, -1, SW_PHASE_NONE);
    seeder.cap.seed_all = 1;
    feed(v, &seeder, 2);
    CHECK_EQ_INT(sw_view_ready(v), 0);
    struct sw_shard_view sv;
    sw_view_shard(v, 2, &sv);
    CHECK_EQ_INT(sv.n_seeders, 1);
    sw_view_free(v);
    sw_buf_free(&self.wire); sw_buf_free(&a.wire); sw_buf_free(&seeder.wire);
}

static void test_reason_texts(void)
{
    struct tnode self, d, w;
    tnode_init(&self, 0, SW_PHASE_LOADED);
    tnode_init(&d, 3, SW_PHASE_FETCHING);
    d.cap.bytes_done = 47;
    d.cap.bytes_total = 100;
    d.cap.rate_bps = 80000000;
    d.cap.eta_ms = 130000;
    tnode_init(&w, 5, SW_PHASE_WAITING);
    struct sw_view *v = mkview(&self, 7);
    feed(v, &d, 1);
    feed(v, &w, 1);
    char r[1024], want[512], id[16];
    CHECK_EQ_INT(sw_view_shard_reason(v, 3, r, sizeof r), 1);
    snprintf(want, sizeof want, "shard 3: no node has it loaded; node %s downloading 47%% at 80 MB/s, ETA 2m10s",
             sw_node_id_short(d.id.pk, id, sizeof id));
    CHECK_EQ_STR(r, want);
    CHECK_EQ_INT(sw_view_shard_reason(v, 5, r, sizeof r), 1);
    CHECK(strstr(r, "LOAD_SHARD") != NULL);
    CHECK_EQ_INT(sw_view_shard_reason(v, 6, r, sizeof r), 1);
    CHECK_EQ_STR(r, "shard 6: no node announced it");
    /* all reasons: shards 1,2,3,4,5,6 block */
    CHECK_EQ_INT(sw_view_reasons(v, r, sizeof r), 6);
    CHECK(strncmp(r, "shard 1: no node announced it | shard 2:", 40) == 0);
    char small[40];
    CHECK_EQ_INT(sw_view_reasons(v, small, sizeof small), 6);
    CHECK(strlen(small) < sizeof small);
    sw_view_free(v);
    sw_buf_free(&self.wire); sw_buf_free(&d.wire); sw_buf_free(&w.wire);
}

static void test_liveness(void)
{
    struct tnode self, a, b;
    tnode_init(&self, 0, SW_PHASE_LOADED);
    tnode_init(&a, 1, SW_PHASE_LOADED);
    tnode_init(&b, 1, SW_PHASE_LOADED);
    struct sw_view *v = mkview(&self, 2);
    feed(v, &a, 1000);
    sw_view_set_direct(v, a.id.pk, 1, 1000);
    CHECK_EQ_INT(sw_view_ready(v), 1);
    /* keep-alives hold it live */
    sw_view_touch(v, a.id.pk, 3500);
    CHECK_EQ_INT(sw_view_expire(v, 5000), 0);
    CHECK_EQ_INT(sw_view_ready(v), 1);
    /* silence for longer than the expiry: departed */
    CHECK_EQ_INT(sw_view_expire(v, 6600), 1);
    CHECK_EQ_INT(sw_view_ready(v), 0);
    char r[256];
    sw_view_shard_reason(v, 1, r, sizeof r);
    char want[160], ida[16];
    snprintf(want, sizeof want, "shard 1: node %s (departed 0s ago) had it; no live node has it loaded",
             sw_node_id_short(a.id.pk, ida, sizeof ida));
    CHECK_EQ_STR(r, want);
    /* it comes back with a fresh record */
    CHECK_EQ_INT(feed(v, &a, 7000), SW_VIEW_FRESH);
    CHECK_EQ_INT(sw_view_ready(v), 1);
    /* connection close: departed at once; a stale relayed copy does not revive it */
    struct sw_buf keep = { 0 };
    sw_buf_append(&keep, a.wire.data, a.wire.len);
    sw_view_set_direct(v, a.id.pk, 0, 7100);
    CHECK_EQ_INT(sw_view_ready(v), 0);
    CHECK_EQ_INT(sw_view_receive(v, keep.data, keep.len, 7200, NULL), SW_VIEW_STALE);
    CHECK_EQ_INT(sw_view_ready(v), 0);
    /* a second replica keeps the shard ready while the first is gone */
    feed(v, &b, 7300);
    CHECK_EQ_INT(sw_view_ready(v), 1);
    CHECK_EQ_U64(sw_view_stats(v).departed, 2);
    sw_buf_free(&keep);
    sw_view_free(v);
    sw_buf_free(&self.wire); sw_buf_free(&a.wire); sw_buf_free(&b.wire);
}

static void test_relay(void)
{
    struct tnode self, a, b, c;
    tnode_init(&self, 0, SW_PHASE_LOADED);
    tnode_init(&a, 1, SW_PHASE_LOADED);
    tnode_init(&b, 1, SW_PHASE_LOADED);
    tnode_init(&c, 1, SW_PHASE_LOADED);
    struct sw_view *v = mkview(&self, 2);
    a.cap.n_neighbours = 2;
    memcpy(a.cap.neighbours[0], self.id.pk, 8);
    memcpy(a.cap.neighbours[1], b.id.pk, 8);
    feed(v, &a, 1);
    /* a's record arrived from a: not back to a; b is a's neighbour already; c is not */
    CHECK_EQ_INT(sw_view_should_relay(v, a.id.pk, a.id.pk, a.id.pk), 0);
    CHECK_EQ_INT(sw_view_should_relay(v, a.id.pk, a.id.pk, b.id.pk), 0);
    CHECK_EQ_INT(sw_view_should_relay(v, a.id.pk, a.id.pk, c.id.pk), 1);
    /* received from c: never back to the sender */
    CHECK_EQ_INT(sw_view_should_relay(v, a.id.pk, c.id.pk, c.id.pk), 0);
    size_t len = 0;
    const uint8_t *w = sw_view_wire(v, a.id.pk, &len);
    CHECK(w && len == a.wire.len && !memcmp(w, a.wire.data, len));
    sw_view_free(v);
    sw_buf_free(&self.wire); sw_buf_free(&a.wire); sw_buf_free(&b.wire); sw_buf_free(&c.wire);
}

/* A line A - B - C: A's record reaches C only through B's relay; C counts A's shard, and
 * readiness at C needs no direct connection to A. */
static void test_relay_line(void)
{
    struct tnode a, b, c;
    tnode_init(&a, 0, SW_PHASE_LOADED);
    tnode_init(&b, 1, SW_PHASE_LOADED);
    tnode_init(&c, 2, SW_PHASE_LOADED);
    a.cap.n_neighbours = 1;
    memcpy(a.cap.neighbours[0], b.id.pk, 8);
    c.cap.n_neighbours = 1;
    memcpy(c.cap.neighbours[0], b.id.pk, 8);
    struct sw_view *vb = mkview(&b, 3), *vc = mkview(&c, 3);
    const struct sw_buf *wa = tnode_sign(&a);
    CHECK_EQ_INT(sw_view_receive(vb, wa->data, wa->len, 10, NULL), SW_VIEW_FRESH);
    sw_view_set_direct(vb, a.id.pk, 1, 10);
    /* B decides: relay A's record to C (C is not A's neighbour), not back to A */
    CHECK_EQ_INT(sw_view_should_relay(vb, a.id.pk, a.id.pk, c.id.pk), 1);
    CHECK_EQ_INT(sw_view_should_relay(vb, a.id.pk, a.id.pk, a.id.pk), 0);
    size_t len = 0;
    const uint8_t *relayed = sw_view_wire(vb, a.id.pk, &len);
    CHECK_EQ_INT(sw_view_receive(vc, relayed, len, 11, NULL), SW_VIEW_FRESH);
    const struct sw_buf *wb = tnode_sign(&b);
    CHECK_EQ_INT(sw_view_receive(vc, wb->data, wb->len, 11, NULL), SW_VIEW_FRESH);
    sw_view_set_direct(vc, b.id.pk, 1, 11);
    CHECK_EQ_INT(sw_view_ready(vc), 1);
    const struct sw_view_node *an = sw_view_find(vc, a.id.pk);
    CHECK(an && an->live && !an->direct);
    /* the same relayed bytes again (a second path): stale, not relayed again */
    CHECK_EQ_INT(sw_view_receive(vc, relayed, len, 12, NULL), SW_VIEW_STALE);
    /* A keeps refreshing through B; without refreshes it expires at C (relayed liveness) */
    CHECK_EQ_INT(sw_view_expire(vc, 11 + 2999), 0);
    sw_view_touch(vc, b.id.pk, 3500);
    CHECK_EQ_INT(sw_view_expire(vc, 3500), 1);
    CHECK_EQ_INT(sw_view_ready(vc), 0);
    char r[256];
    sw_view_shard_reason(vc, 0, r, sizeof r);
    /* the dead node is named, with how long ago it departed (the view's latest time) */
    char want[160], ida[16];
    snprintf(want, sizeof want, "shard 0: node %s (departed 0s ago) had it; no live node has it loaded",
             sw_node_id_short(a.id.pk, ida, sizeof ida));
    CHECK_EQ_STR(r, want);
    sw_view_touch(vc, b.id.pk, 15600);
    sw_view_shard_reason(vc, 0, r, sizeof r);
    snprintf(want, sizeof want, "shard 0: node %s (departed 12s ago) had it; no live node has it loaded", ida);
    CHECK_EQ_STR(r, want);
    sw_view_free(vb);
    sw_view_free(vc);
    sw_buf_free(&a.wire); sw_buf_free(&b.wire); sw_buf_free(&c.wire);
}

static void test_planner_pick(void)
{
    /* empty swarm, 8 shards: 32 simultaneous joiners seeing nothing spread over shards */
    uint32_t used[8] = { 0 };
    for (int i = 0; i < 32; i++) {
        struct tnode self;
        tnode_init(&self, -1, SW_PHASE_NONE);
        struct sw_view *v = mkview(&self, 8);
        int s = sw_plan_pick(v, NULL);
        CHECK(s >= 0 && s < 8);
        if (s >= 0 && s < 8) used[s]++;
        sw_view_free(v);
        sw_buf_free(&self.wire);
    }
    int distinct = 0;
    for (int s = 0; s < 8; s++) distinct += used[s] ? 1 : 0;
    CHECK_MSG(distinct >= 5, "32 joiners used only %d of 8 shards", distinct);

    /* fewest loaded replicas first; then fewest working on it; memory respected */
    struct tnode self, l0, l1, f2;
    tnode_init(&self, -1, SW_PHASE_NONE);
    tnode_init(&l0, 0, SW_PHASE_LOADED);
    tnode_init(&l1, 1, SW_PHASE_LOADED);
    tnode_init(&f2, 2, SW_PHASE_FETCHING);
    struct sw_view *v = mkview(&self, 4);
    feed(v, &l0, 1);
    feed(v, &l1, 1);
    feed(v, &f2, 1);
    CHECK_EQ_INT(sw_plan_pick(v, NULL), 3);
    uint64_t sizes[4] = { 100, 100, 100, 500 };
    struct sw_plan_input in = { sizes, 200, 0 };
    CHECK_EQ_INT(sw_plan_pick(v, &in), 2); /* shard 3 does not fit */
    in.mem_budget = 50;
    CHECK_EQ_INT(sw_plan_pick(v, &in), SW_ENOTFOUND);
    /* a GPU node: of the equally served shards 2 and 3 (one claimer each once f3 joins),
     * the one its device holds whole, whichever the hash prefers */
    struct tnode f3;
    tnode_init(&f3, 3, SW_PHASE_FETCHING);
    feed(v, &f3, 1);
    uint64_t sizes2[4] = { 100, 100, 300, 100 };
    struct sw_plan_input gin = { sizes2, 0, 0 };
    int plain = sw_plan_pick(v, &gin);
    CHECK(plain == 2 || plain == 3);
    gin.gpu_mem = 200;
    sizes2[2] = plain == 2 ? 300 : 100; /* make the hash's choice the one that does not fit */
    sizes2[3] = plain == 2 ? 100 : 300;
    CHECK_EQ_INT(sw_plan_pick(v, &gin), plain == 2 ? 3 : 2);
    gin.gpu_mem = 1000; /* both fit: the hash decides again */
    CHECK_EQ_INT(sw_plan_pick(v, &gin), plain);
    sw_view_free(v);
    sw_buf_free(&f3.wire);
    sw_buf_free(&self.wire); sw_buf_free(&l0.wire); sw_buf_free(&l1.wire); sw_buf_free(&f2.wire);
}

/* Two auto joiners that picked the same shard: exactly one moves, to the unserved shard. */
static void test_planner_conflict(void)
{
    struct tnode a, b;
    tnode_init(&a, 1, SW_PHASE_FETCHING);
    tnode_init(&b, 1, SW_PHASE_FETCHING);
    struct sw_view *va = mkview(&a, 2), *vb = mkview(&b, 2);
    struct sw_buf wa = { 0 }, wb = { 0 };
    sw_buf_append(&wa, a.wire.data, a.wire.len);
    sw_buf_append(&wb, b.wire.data, b.wire.len);
    CHECK_EQ_INT(sw_view_receive(va, wb.data, wb.len, 1, NULL), SW_VIEW_FRESH);
    CHECK_EQ_INT(sw_view_receive(vb, wa.data, wa.len, 1, NULL), SW_VIEW_FRESH);
    int ma = sw_plan_review(va, NULL), mb = sw_plan_review(vb, NULL);
    CHECK_MSG((ma == 0) != (mb == 0), "exactly one moves: a -> %d, b -> %d", ma, mb);
    CHECK(ma == -1 || ma == 0);
    CHECK(mb == -1 || mb == 0);
    sw_view_free(va);
    sw_view_free(vb);
    sw_buf_free(&wa); sw_buf_free(&wb); sw_buf_free(&a.wire); sw_buf_free(&b.wire);
}

/* The only node of shard 2 died: a spare (second replica of shard 0) takes it over; a node
 * whose shard has a single replica never moves; nothing moves when all is served. */
static void test_planner_replace(void)
{
    struct tnode self, other0, n1, n2;
    tnode_init(&self, 0, SW_PHASE_LOADED);
    tnode_init(&other0, 0, SW_PHASE_LOADED);
    tnode_init(&n1, 1, SW_PHASE_LOADED);
    tnode_init(&n2, 2, SW_PHASE_LOADED);
    struct sw_view *v = mkview(&self, 3);
    feed(v, &other0, 1);
    feed(v, &n1, 1);
    feed(v, &n2, 1);
    sw_view_set_direct(v, n2.id.pk, 1, 1);
    CHECK_EQ_INT(sw_plan_review(v, NULL), -1);
    sw_view_set_direct(v, n2.id.pk, 0, 2); /* killed */
    int keeper_is_self = sw_plan_hash(self.id.pk, 0) < sw_plan_hash(other0.id.pk, 0);
    CHECK_EQ_INT(sw_plan_review(v, NULL), keeper_is_self ? -1 : 2);
    /* the other node's own view gives the complementary answer */
    struct sw_view *vo = mkview(&other0, 3);
    feed(vo, &self, 3);
    feed(vo, &n1, 3);
    CHECK_EQ_INT(sw_plan_review(vo, NULL), keeper_is_self ? 2 : -1);
    /* memory: a shard that does not fit is not taken */
    uint64_t sizes[3] = { 10, 10, 1000 };
    struct sw_plan_input in = { sizes, 100, 0 };
    CHECK_EQ_INT(sw_plan_review(v, &in), -1);
    sw_view_free(v);
    sw_view_free(vo);
    /* single replica: n1 never moves away from shard 1 */
    struct sw_view *v1 = mkview(&n1, 3);
    feed(v1, &self, 4);
    CHECK_EQ_INT(sw_plan_review(v1, NULL), -1);
    sw_view_free(v1);
    /* a pinned node (--shard 0) always keeps its shard: the auto spare moves, whatever the hashes */
    self.cap.movable = 1;
    other0.cap.movable = 0;
    struct sw_view *vp = mkview(&self, 3);
    feed(vp, &other0, 5);
    feed(vp, &n1, 5);
    CHECK_EQ_INT(sw_plan_review(vp, NULL), 2);
    sw_view_free(vp);
    struct sw_view *vq = mkview(&other0, 3); /* and the pinned one never moves */
    feed(vq, &self, 6);
    feed(vq, &n1, 6);
    CHECK_EQ_INT(sw_plan_review(vq, NULL), -1);
    sw_view_free(vq);
    /* a node that failed to load (or waits for a command) does not serve its shard */
    struct tnode f2;
    tnode_init(&f2, 2, SW_PHASE_FAILED);
    f2.cap.movable = 0;
    struct sw_view *vf = mkview(&self, 3);
    feed(vf, &other0, 7);
    feed(vf, &n1, 7);
    feed(vf, &f2, 7);
    CHECK_EQ_INT(sw_plan_review(vf, NULL), 2);
    f2.cap.phase = SW_PHASE_FETCHING;
    feed(vf, &f2, 8);
    CHECK_EQ_INT(sw_plan_review(vf, NULL), -1);
    sw_view_free(vf);
    sw_buf_free(&f2.wire);
    sw_buf_free(&self.wire); sw_buf_free(&other0.wire); sw_buf_free(&n1.wire); sw_buf_free(&n2.wire);
}

/* Issue 13: the nonces of accepted (and forwarded) owner commands are kept in a file, so a
 * replay is refused after a restart too; lines outside the freshness window, and malformed
 * ones, are dropped when the file is read; the file stays bounded. */
static void test_cmd_nonce_file(void)
{
    struct sw_identity owner, node, other;
    sw_identity_generate(&owner);
    sw_identity_generate(&node);
    sw_identity_generate(&other);
    const char *dir = sw_test_tmpdir();
    char *path = sw_path_join(dir, "owner-nonces");
    uint64_t now = sw_wall_time_s();
    FILE *f = fopen(path, "w"); /* an old nonce (outside the 300 s window) and a bad line */
    fprintf(f, "%s %llu\nnot a nonce line\n", "aa00aa00aa00aa00aa00aa00aa00aa00", (unsigned long long)(now - 3600));
    fclose(f);
    struct sw_cmd_guard_config gc = { 0 };
    gc.owner_pk = owner.pk;
    memcpy(gc.self_id, node.pk, 32);
    memcpy(gc.info_hash, IH, 20);
    gc.nonce_file = path;
    struct sw_cmd_guard *g = NULL;
    CHECK_EQ_INT(sw_cmd_guard_new(&gc, &g), 0);
    uint8_t *data = NULL;
    size_t len = 0;
    CHECK_EQ_INT(sw_file_read_all(path, 1 << 20, &data, &len), 0);
    CHECK_MSG(len == 0, "stale and bad lines dropped at load: %zu bytes left", len);
    free(data);
    struct sw_load_cmd c = { 0 }, got;
    memcpy(c.info_hash, IH, 20);
    memcpy(c.target, node.pk, 32);
    c.shard = 1;
    c.ts_s = now;
    struct sw_buf w = { 0 }, w2 = { 0 };
    char why[256];
    CHECK_EQ_INT(sw_load_cmd_sign(&c, &owner, &w), 0);
    CHECK_EQ_INT(sw_cmd_guard_check(g, w.data, w.len, now, &got, why, sizeof why), 0);
    struct sw_load_cmd t = c; /* one for another node, forwarded here once */
    memcpy(t.target, other.pk, 32);
    CHECK_EQ_INT(sw_load_cmd_sign(&t, &owner, &w2), 0);
    CHECK_EQ_INT(sw_cmd_guard_check(g, w2.data, w2.len, now, &got, why, sizeof why), SW_ENOTFOUND);
    CHECK_EQ_INT(sw_cmd_guard_remember(g, &got), 0);
    CHECK_EQ_INT(sw_cmd_guard_remember(g, &got), SW_EEXIST);
    sw_cmd_guard_free(g);
    /* "restart": a new guard on the same file */
    CHECK_EQ_INT(sw_cmd_guard_new(&gc, &g), 0);
    CHECK_EQ_INT(sw_cmd_guard_check(g, w.data, w.len, now + 1, &got, why, sizeof why), SW_EPERM);
    CHECK_MSG(strstr(why, "replayed") != NULL, "after a restart: %s", why);
    CHECK_EQ_INT(sw_cmd_guard_check(g, w2.data, w2.len, now + 1, &got, why, sizeof why), SW_ENOTFOUND);
    CHECK_EQ_INT(sw_cmd_guard_remember(g, &got), SW_EEXIST);
    /* bounded: 10,000 more nonces leave at most 2 x 4096 lines */
    for (int i = 0; i < 10000; i++) {
        struct sw_load_cmd r = c;
        sw_random_bytes(r.nonce, 16);
        sw_cmd_guard_remember(g, &r);
    }
    uint64_t size = 0;
    CHECK_EQ_INT(sw_file_size(path, &size), 0);
    CHECK_MSG(size <= 2u * 4096 * 46, "nonce file of %llu bytes", (unsigned long long)size);
    sw_cmd_guard_free(g);
    sw_buf_free(&w);
    sw_buf_free(&w2);
    free(path);
}

static void test_load_shard(void)
{
    struct sw_identity owner, foreign, node, other;
    sw_identity_generate(&owner);
    sw_identity_generate(&foreign);
    sw_identity_generate(&node);
    sw_identity_generate(&other);
    struct sw_cmd_guard_config gc = { 0 };
    gc.owner_pk = owner.pk;
    memcpy(gc.self_id, node.pk, 32);
    memcpy(gc.info_hash, IH, 20);
    struct sw_cmd_guard *g = NULL;
    CHECK_EQ_INT(sw_cmd_guard_new(&gc, &g), 0);
    uint64_t now = 1700000000;
    char why[256];
    struct sw_load_cmd c = { 0 }, got;
    memcpy(c.info_hash, IH, 20);
    memcpy(c.target, node.pk, 32);
    c.shard = 3;
    c.ts_s = now;
    struct sw_buf w = { 0 };
    CHECK_EQ_INT(sw_load_cmd_sign(&c, &owner, &w), 0);
    CHECK_EQ_INT(sw_cmd_guard_check(g, w.data, w.len, now + 1, &got, why, sizeof why), 0);
    CHECK_EQ_INT(got.shard, 3);
    /* the same bytes again: replayed */
    CHECK_EQ_INT(sw_cmd_guard_check(g, w.data, w.len, now + 2, &got, why, sizeof why), SW_EPERM);
    CHECK(strstr(why, "replayed") != NULL);
    /* a foreign key */
    struct sw_buf f = { 0 };
    CHECK_EQ_INT(sw_load_cmd_sign(&c, &foreign, &f), 0);
    CHECK_EQ_INT(sw_cmd_guard_check(g, f.data, f.len, now, &got, why, sizeof why), SW_EPERM);
    CHECK(strstr(why, "foreign key") != NULL);
    /* claims the owner's key but signed by another: bad signature */
    struct sw_load_cmd forged = c;
    struct sw_buf fo = { 0 };
    sw_load_cmd_sign(&forged, &foreign, &fo);
    uint8_t *o = memmem(fo.data, fo.len, foreign.pk, 32);
    CHECK(o != NULL);
    if (o) memcpy(o, owner.pk, 32);
    CHECK_EQ_INT(sw_cmd_guard_check(g, fo.data, fo.len, now, &got, why, sizeof why), SW_EPERM);
    CHECK_EQ_STR(why, "bad signature");
    /* unsigned: strip the signature */
    struct sw_bdoc d;
    CHECK_EQ_INT(sw_bdecode(w.data, w.len, NULL, &d, NULL, NULL, 0), 0);
    const struct sw_bnode *cb = sw_bdict_get(&d, &d.nodes[0], "c");
    struct sw_buf u = { 0 };
    sw_benc_dict(&u);
    sw_benc_cstr(&u, "c");
    sw_benc_str(&u, cb->str, cb->str_len);
    sw_benc_end(&u);
    sw_bdoc_free(&d);
    CHECK_EQ_INT(sw_cmd_guard_check(g, u.data, u.len, now, &got, why, sizeof why), SW_EPERM);
    CHECK_EQ_STR(why, "unsigned");
    /* addressed to another node: not ours (forwarded, not refused), not remembered */
    struct sw_load_cmd t2 = c;
    memcpy(t2.target, other.pk, 32);
    struct sw_buf w2 = { 0 };
    sw_load_cmd_sign(&t2, &owner, &w2);
    CHECK_EQ_INT(sw_cmd_guard_check(g, w2.data, w2.len, now, &got, why, sizeof why), SW_ENOTFOUND);
    CHECK(strstr(why, "not this node") != NULL);
    CHECK_EQ_INT(sw_cmd_guard_check_relay(g, w2.data, w2.len, now, &got, why, sizeof why), 0);
    /* too old, and from the future */
    struct sw_load_cmd t3 = c;
    t3.ts_s = now - 3600;
    struct sw_buf w3 = { 0 };
    sw_load_cmd_sign(&t3, &owner, &w3);
    CHECK_EQ_INT(sw_cmd_guard_check(g, w3.data, w3.len, now, &got, why, sizeof why), SW_EPERM);
    CHECK(strstr(why, "too old") != NULL);
    CHECK_EQ_INT(sw_cmd_guard_check(g, w3.data, w3.len, now - 7200, &got, why, sizeof why), SW_EPERM);
    CHECK(strstr(why, "future") != NULL);
    /* another model */
    struct sw_load_cmd t4 = c;
    t4.info_hash[0] ^= 1;
    struct sw_buf w4 = { 0 };
    sw_load_cmd_sign(&t4, &owner, &w4);
    CHECK_EQ_INT(sw_cmd_guard_check(g, w4.data, w4.len, now, &got, why, sizeof why), SW_EPERM);
    CHECK(strstr(why, "another model") != NULL);
    /* garbage */
    CHECK_EQ_INT(sw_cmd_guard_check(g, (const uint8_t *)"d1:ci1ee", 8, now, &got, why, sizeof why), SW_ECORRUPT);
    for (size_t cut = 0; cut < w.len; cut += 5)
        CHECK(sw_cmd_guard_check(g, w.data, cut, now, &got, NULL, 0) < 0);
    /* a model without an owner key refuses everything */
    struct sw_cmd_guard *g0 = NULL;
    gc.owner_pk = NULL;
    sw_cmd_guard_new(&gc, &g0);
    struct sw_buf w5 = { 0 };
    sw_load_cmd_sign(&c, &owner, &w5);
    CHECK_EQ_INT(sw_cmd_guard_check(g0, w5.data, w5.len, now, &got, why, sizeof why), SW_EPERM);
    CHECK(strstr(why, "no owner key") != NULL);
    sw_cmd_guard_free(g0);
    sw_cmd_guard_free(g);
    struct sw_buf *bufs[] = { &w, &f, &fo, &u, &w2, &w3, &w4, &w5 };
    for (size_t i = 0; i < SW_ARRAY_LEN(bufs); i++) sw_buf_free(bufs[i]);
}

/* Signs an arbitrary command body `c` as the owner would (to build bodies sw_load_cmd_sign
 * never writes: unknown types, a LOAD_SHARD without its shard). */
static void sign_raw(const struct sw_buf *c, const struct sw_identity *owner, struct sw_buf *out)
{
    uint8_t sig[crypto_sign_BYTES];
    crypto_sign_detached(sig, NULL, c->data, c->len, owner->sk);
    sw_benc_dict(out);
    sw_benc_cstr(out, "c"); sw_benc_str(out, c->data, c->len);
    sw_benc_cstr(out, "s"); sw_benc_str(out, sig, sizeof sig);
    sw_benc_end(out);
}

/* A command body with keys in sorted order; shard < 0: no "sh". */
static void raw_body(struct sw_buf *b, const uint8_t *owner_pk, const uint8_t *target, const char *type,
                     int64_t shard, uint64_t ts, uint8_t nonce_byte)
{
    uint8_t nonce[16];
    memset(nonce, nonce_byte, sizeof nonce);
    sw_benc_dict(b);
    sw_benc_cstr(b, "h"); sw_benc_str(b, IH, 20);
    sw_benc_cstr(b, "n"); sw_benc_str(b, nonce, 16);
    sw_benc_cstr(b, "o"); sw_benc_str(b, owner_pk, 32);
    if (shard >= 0) { sw_benc_cstr(b, "sh"); sw_benc_int(b, shard); }
    sw_benc_cstr(b, "t"); sw_benc_cstr(b, type);
    sw_benc_cstr(b, "to"); sw_benc_str(b, target, 32);
    sw_benc_cstr(b, "ts"); sw_benc_int(b, (int64_t)ts);
    sw_benc_end(b);
}

/* DRAIN: the LOAD_SHARD format with t=drain and no shard; the same guard and checks. */
static void test_drain_cmd(void)
{
    struct sw_identity owner, foreign, node, other;
    sw_identity_generate(&owner);
    sw_identity_generate(&foreign);
    sw_identity_generate(&node);
    sw_identity_generate(&other);
    CHECK_EQ_STR(sw_cmd_type_name(SW_CMD_DRAIN), "drain");
    CHECK_EQ_STR(sw_cmd_type_name(SW_CMD_LOAD_SHARD), "load_shard");
    CHECK_EQ_STR(sw_phase_name(SW_PHASE_DRAINED), "drained");
    struct sw_cmd_guard_config gc = { 0 };
    gc.owner_pk = owner.pk;
    memcpy(gc.self_id, node.pk, 32);
    memcpy(gc.info_hash, IH, 20);
    struct sw_cmd_guard *g = NULL;
    CHECK_EQ_INT(sw_cmd_guard_new(&gc, &g), 0);
    uint64_t now = 1700000000;
    char why[256];
    struct sw_load_cmd c = { 0 }, got;
    c.type = SW_CMD_DRAIN;
    memcpy(c.info_hash, IH, 20);
    memcpy(c.target, node.pk, 32);
    c.shard = 5; /* not written for a DRAIN */
    c.ts_s = now;
    struct sw_buf w = { 0 };
    CHECK_EQ_INT(sw_load_cmd_sign(&c, &owner, &w), 0);
    CHECK(memmem(w.data, w.len, "1:t5:drain", 10) != NULL);
    CHECK(memmem(w.data, w.len, "2:sh", 4) == NULL);
    memset(&got, 0xee, sizeof got);
    CHECK_EQ_INT(sw_load_cmd_decode(w.data, w.len, &got, why, sizeof why), 0);
    CHECK_EQ_INT(got.type, SW_CMD_DRAIN);
    CHECK_EQ_INT(got.shard, 0);
    CHECK_EQ_MEM(got.target, node.pk, 32);
    CHECK_EQ_INT(sw_cmd_guard_check(g, w.data, w.len, now + 1, &got, why, sizeof why), 0);
    CHECK_EQ_INT(got.type, SW_CMD_DRAIN);
    /* replayed */
    CHECK_EQ_INT(sw_cmd_guard_check(g, w.data, w.len, now + 2, &got, why, sizeof why), SW_EPERM);
    CHECK(strstr(why, "replayed") != NULL);
    /* a foreign key */
    struct sw_buf f = { 0 };
    CHECK_EQ_INT(sw_load_cmd_sign(&c, &foreign, &f), 0);
    CHECK_EQ_INT(sw_cmd_guard_check(g, f.data, f.len, now, &got, why, sizeof why), SW_EPERM);
    CHECK(strstr(why, "foreign key") != NULL);
    /* forged: claims the owner's key, signed by another */
    struct sw_buf fo = { 0 };
    sw_load_cmd_sign(&c, &foreign, &fo);
    uint8_t *o = memmem(fo.data, fo.len, foreign.pk, 32);
    CHECK(o != NULL);
    if (o) memcpy(o, owner.pk, 32);
    CHECK_EQ_INT(sw_cmd_guard_check(g, fo.data, fo.len, now, &got, why, sizeof why), SW_EPERM);
    CHECK_EQ_STR(why, "bad signature");
    /* a signed DRAIN cannot be turned into a LOAD_SHARD (or back): the type is signed */
    struct sw_buf ty = { 0 };
    struct sw_load_cmd c2 = c;
    sw_load_cmd_sign(&c2, &owner, &ty);
    uint8_t *tp = memmem(ty.data, ty.len, "5:drain", 7);
    CHECK(tp != NULL);
    if (tp) memcpy(tp, "5:drail", 7);
    CHECK(sw_cmd_guard_check(g, ty.data, ty.len, now, &got, why, sizeof why) < 0);
    /* addressed to another node: forwarded (relay check passes), not applied */
    struct sw_load_cmd t2 = c;
    memcpy(t2.target, other.pk, 32);
    struct sw_buf w2 = { 0 };
    sw_load_cmd_sign(&t2, &owner, &w2);
    CHECK_EQ_INT(sw_cmd_guard_check(g, w2.data, w2.len, now, &got, why, sizeof why), SW_ENOTFOUND);
    CHECK(strstr(why, "not this node") != NULL);
    CHECK_EQ_INT(sw_cmd_guard_check_relay(g, w2.data, w2.len, now, &got, why, sizeof why), 0);
    CHECK_EQ_INT(got.type, SW_CMD_DRAIN);
    /* stale and from the future */
    struct sw_load_cmd t3 = c;
    t3.ts_s = now - 3600;
    struct sw_buf w3 = { 0 };
    sw_load_cmd_sign(&t3, &owner, &w3);
    CHECK_EQ_INT(sw_cmd_guard_check(g, w3.data, w3.len, now, &got, why, sizeof why), SW_EPERM);
    CHECK(strstr(why, "too old") != NULL);
    CHECK_EQ_INT(sw_cmd_guard_check(g, w3.data, w3.len, now - 7200, &got, why, sizeof why), SW_EPERM);
    CHECK(strstr(why, "future") != NULL);
    /* unknown type, signed by the owner: refused, naming it */
    struct sw_buf rb = { 0 }, rw = { 0 };
    raw_body(&rb, owner.pk, node.pk, "reboot", -1, now, 0x41);
    sign_raw(&rb, &owner, &rw);
    CHECK_EQ_INT(sw_cmd_guard_check(g, rw.data, rw.len, now, &got, why, sizeof why), SW_ECORRUPT);
    CHECK(strstr(why, "unknown command type 'reboot'") != NULL);
    CHECK_EQ_INT(sw_load_cmd_decode(rw.data, rw.len, &got, why, sizeof why), SW_ECORRUPT);
    /* an unprintable, long type name is shown escaped and cut */
    struct sw_buf lb = { 0 }, lw = { 0 };
    raw_body(&lb, owner.pk, node.pk, "x\x01yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy", -1, now, 0x42);
    sign_raw(&lb, &owner, &lw);
    CHECK_EQ_INT(sw_cmd_guard_check(g, lw.data, lw.len, now, &got, why, sizeof why), SW_ECORRUPT);
    CHECK(strstr(why, "unknown command type 'x?yyy") != NULL);
    /* a LOAD_SHARD without its shard is malformed; a DRAIN with one is accepted (ignored) */
    struct sw_buf nb = { 0 }, nw = { 0 }, db = { 0 }, dw = { 0 };
    raw_body(&nb, owner.pk, node.pk, "load_shard", -1, now, 0x43);
    sign_raw(&nb, &owner, &nw);
    CHECK_EQ_INT(sw_cmd_guard_check(g, nw.data, nw.len, now, &got, why, sizeof why), SW_ECORRUPT);
    raw_body(&db, owner.pk, node.pk, "drain", 2, now, 0x44);
    sign_raw(&db, &owner, &dw);
    CHECK_EQ_INT(sw_cmd_guard_check(g, dw.data, dw.len, now, &got, why, sizeof why), 0);
    CHECK_EQ_INT(got.type, SW_CMD_DRAIN);
    CHECK_EQ_INT(got.shard, 0);
    /* a LOAD_SHARD still decodes as one; nonces are shared across types */
    struct sw_load_cmd ls = c;
    ls.type = SW_CMD_LOAD_SHARD;
    ls.shard = 2;
    struct sw_buf lsw = { 0 };
    CHECK_EQ_INT(sw_load_cmd_sign(&ls, &owner, &lsw), 0);
    CHECK_EQ_INT(sw_cmd_guard_check(g, lsw.data, lsw.len, now, &got, why, sizeof why), 0);
    CHECK_EQ_INT(got.type, SW_CMD_LOAD_SHARD);
    CHECK_EQ_INT(got.shard, 2);
    /* a bad type refuses to sign */
    struct sw_load_cmd bad = c;
    bad.type = SW_CMD_COUNT_;
    struct sw_buf bw = { 0 };
    CHECK_EQ_INT(sw_load_cmd_sign(&bad, &owner, &bw), SW_EINVAL);
    for (size_t cut = 0; cut < w.len; cut += 3)
        CHECK(sw_cmd_guard_check(g, w.data, cut, now, &got, NULL, 0) < 0);
    sw_cmd_guard_free(g);
    struct sw_buf *bufs[] = { &w, &f, &fo, &ty, &w2, &w3, &rb, &rw, &lb, &lw, &nb, &nw, &db, &dw, &lsw, &bw };
    for (size_t i = 0; i < SW_ARRAY_LEN(bufs); i++) sw_buf_free(bufs[i]);
}

/* A drained node: in the record, not loaded, and named in the readiness reason. */
static void test_drained_phase(void)
{
    struct tnode self, l, d;
    tnode_init(&self, -1, SW_PHASE_NONE);
    tnode_init(&l, 0, SW_PHASE_LOADED);
    tnode_init(&d, 1, SW_PHASE_DRAINED);
    const struct sw_buf *dw = tnode_sign(&d);
    struct sw_cap back;
    char err[128];
    CHECK_EQ_INT(sw_cap_decode(dw->data, dw->len, &back, err, sizeof err), 0);
    CHECK_EQ_INT(back.phase, SW_PHASE_DRAINED);
    struct sw_view *v = mkview(&self, 2);
    feed(v, &l, 1);
    feed(v, &d, 1);
    CHECK_EQ_INT(sw_view_ready(v), 0);
    struct sw_shard_view sv;
    CHECK_EQ_INT(sw_view_shard(v, 1, &sv), 0);
    CHECK_EQ_INT(sv.n_loaded, 0);
    CHECK_EQ_INT(sv.n_announced, 1);
    char r[512], id[16];
    CHECK_EQ_INT(sw_view_shard_reason(v, 1, r, sizeof r), 1);
    CHECK(strncmp(r, "shard 1: no node has it loaded; node ", 37) == 0);
    CHECK(strstr(r, sw_node_id_short(d.id.pk, id, sizeof id)) != NULL);
    CHECK(strstr(r, "drained by the owner") != NULL);
    /* a drained node is not "working on" its shard: an auto spare is matched to it */
    CHECK_EQ_INT(sw_plan_pick(v, NULL), 1);
    sw_view_free(v);
    sw_buf_free(&self.wire); sw_buf_free(&l.wire); sw_buf_free(&d.wire);
}

/* Every single-byte corruption of a signed record or command is rejected, never crashes,
 * and never yields an accepted record with other contents (a cheap stand-in for the fuzz
 * target). */
static void test_mutation_sweep(void)
{
    struct tnode t;
    tnode_init(&t, 2, SW_PHASE_FETCHING);
    snprintf(t.cap.api_addr, sizeof t.cap.api_addr, "127.0.0.1:9");
    const struct sw_buf *w = tnode_sign(&t);
    uint8_t buf[SW_SWARM_MAX_RECORD];
    size_t accepted = 0;
    static const uint8_t xors[] = { 0x01, 0x20, 0x80, 0xff };
    for (size_t i = 0; i < w->len; i++) {
        for (size_t x = 0; x < SW_ARRAY_LEN(xors); x++) {
            memcpy(buf, w->data, w->len);
            buf[i] ^= xors[x];
            struct sw_cap c;
            if (sw_cap_decode(buf, w->len, &c, NULL, 0) == 0) accepted++;
        }
    }
    CHECK_EQ_U64(accepted, 0);
    struct sw_identity owner, node;
    sw_identity_generate(&owner);
    sw_identity_generate(&node);
    struct sw_cmd_guard_config gc = { 0 };
    gc.owner_pk = owner.pk;
    memcpy(gc.self_id, node.pk, 32);
    memcpy(gc.info_hash, IH, 20);
    struct sw_cmd_guard *g = NULL;
    sw_cmd_guard_new(&gc, &g);
    struct sw_load_cmd cmd = { 0 }, got;
    memcpy(cmd.info_hash, IH, 20);
    memcpy(cmd.target, node.pk, 32);
    cmd.ts_s = 1000;
    struct sw_buf cw = { 0 };
    sw_load_cmd_sign(&cmd, &owner, &cw);
    accepted = 0;
    for (size_t i = 0; i < cw.len; i++) {
        uint8_t cb[1024];
        memcpy(cb, cw.data, cw.len);
        cb[i] ^= 0x01;
        if (sw_cmd_guard_check(g, cb, cw.len, 1000, &got, NULL, 0) == 0) accepted++;
    }
    CHECK_EQ_U64(accepted, 0);
    CHECK_EQ_INT(sw_cmd_guard_check(g, cw.data, cw.len, 1000, &got, NULL, 0), 0); /* the original still passes */
    sw_cmd_guard_free(g);
    sw_buf_free(&cw);
    sw_buf_free(&t.wire);
}

int main(void)
{
    if (sodium_init() < 0) return 1;
    SW_RUN(test_identity);
    SW_RUN(test_auth);
    SW_RUN(test_record_roundtrip);
    SW_RUN(test_record_noncanonical);
    SW_RUN(test_view_seq_and_counts);
    SW_RUN(test_view_self_counts);
    SW_RUN(test_best_among_loaded_only);
    SW_RUN(test_missing_shard_never_skipped);
    SW_RUN(test_reason_texts);
    SW_RUN(test_liveness);
    SW_RUN(test_relay);
    SW_RUN(test_relay_line);
    SW_RUN(test_planner_pick);
    SW_RUN(test_planner_conflict);
    SW_RUN(test_planner_replace);
    SW_RUN(test_load_shard);
    SW_RUN(test_cmd_nonce_file);
    SW_RUN(test_drain_cmd);
    SW_RUN(test_drained_phase);
    SW_RUN(test_mutation_sweep);
    return SW_TEST_DONE();
}
