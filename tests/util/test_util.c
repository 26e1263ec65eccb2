/* test_util.c — bencode decoder/encoder, buffers, hashes, hex, files. */
#include "test.h"
#include "util/util.h"

#include <unistd.h>

static int bdec(const char *s, struct sw_bdoc *doc)
{
    char err[128];
    return sw_bdecode((const uint8_t *)s, strlen(s), NULL, doc, NULL, err, sizeof err);
}

static void test_bencode_valid(void)
{
    struct sw_bdoc d;
    CHECK_EQ_INT(bdec("d3:bari-42e3:fool4:spami0eee", &d), 0);
    const struct sw_bnode *root = &d.nodes[0];
    CHECK_EQ_INT(root->type, SW_BDICT);
    CHECK_EQ_INT(root->n_items, 2);
    const struct sw_bnode *bar = sw_bdict_get_type(&d, root, "bar", SW_BINT);
    CHECK(bar && bar->ival == -42);
    const struct sw_bnode *foo = sw_bdict_get_type(&d, root, "foo", SW_BLIST);
    CHECK(foo && foo->n_items == 2);
    CHECK(sw_bstr_eq(sw_blist_at(&d, foo, 0), "spam"));
    CHECK_EQ_INT(sw_blist_at(&d, foo, 1)->ival, 0);
    CHECK(sw_blist_at(&d, foo, 2) == NULL);
    CHECK(sw_bdict_get(&d, root, "nope") == NULL);
    CHECK_EQ_INT(foo->raw_len, strlen("l4:spami0ee"));
    sw_bdoc_free(&d);

    CHECK_EQ_INT(bdec("0:", &d), 0);
    CHECK_EQ_INT(d.nodes[0].str_len, 0);
    sw_bdoc_free(&d);
    CHECK_EQ_INT(bdec("i9223372036854775807e", &d), 0);
    CHECK(d.nodes[0].ival == INT64_MAX);
    sw_bdoc_free(&d);
    CHECK_EQ_INT(bdec("de", &d), 0);
    sw_bdoc_free(&d);
}

static void test_bencode_malformed(void)
{
    static const char *bad[] = { "", "i", "i-0e", "i01e", "ie", "i12", "5:abc", "01:a", "l",
                                 "d1:ae", "di1ei2ee", "x", "i1ei2e", "i99999999999999999999e",
                                 "-1:a", "d3:foo" };
    for (size_t i = 0; i < SW_ARRAY_LEN(bad); i++) {
        struct sw_bdoc d;
        char err[128] = "";
        int rc = sw_bdecode((const uint8_t *)bad[i], strlen(bad[i]), NULL, &d, NULL, err, sizeof err);
        CHECK_MSG(rc < 0, "'%s' accepted", bad[i]);
        CHECK_MSG(rc == 0 || err[0], "'%s' has no error text", bad[i]);
    }
    /* depth cap */
    char deep[200];
    memset(deep, 'l', 100);
    memset(deep + 100, 'e', 100);
    struct sw_bdoc d;
    struct sw_blimits lim = { 0, 10 };
    CHECK_EQ_INT(sw_bdecode((const uint8_t *)deep, 200, &lim, &d, NULL, NULL, 0), SW_ETOOBIG);
    struct sw_blimits lim2 = { 5, 0 };
    CHECK_EQ_INT(sw_bdecode((const uint8_t *)"li1ei2ei3ei4ei5ee", 17, &lim2, &d, NULL, NULL, 0), SW_ETOOBIG);
}

static void test_bencode_stream(void)
{
    const char *s = "d1:ai1ee<raw data>";
    struct sw_bdoc d;
    size_t used = 0;
    CHECK_EQ_INT(sw_bdecode((const uint8_t *)s, strlen(s), NULL, &d, &used, NULL, 0), 0);
    CHECK_EQ_INT(used, 8);
    sw_bdoc_free(&d);
    CHECK_EQ_INT(sw_bdecode((const uint8_t *)s, 5, NULL, &d, &used, NULL, 0), SW_EAGAIN);
}

static void test_bencode_encode_roundtrip(void)
{
    struct sw_buf b;
    sw_buf_init(&b);
    sw_benc_dict(&b);
    sw_benc_cstr(&b, "a");
    sw_benc_int(&b, -7);
    sw_benc_cstr(&b, "b");
    sw_benc_list(&b);
    sw_benc_str(&b, "\0x", 2);
    sw_benc_end(&b);
    sw_benc_end(&b);
    CHECK_EQ_INT(b.len, strlen("d1:ai-7e1:bl2:") + 2 + 2);
    struct sw_bdoc d;
    CHECK_EQ_INT(sw_bdecode(b.data, b.len, NULL, &d, NULL, NULL, 0), 0);
    const struct sw_bnode *l = sw_bdict_get_type(&d, &d.nodes[0], "b", SW_BLIST);
    CHECK(l && sw_blist_at(&d, l, 0)->str_len == 2);
    sw_bdoc_free(&d);
    sw_buf_free(&b);
}

static void test_hash_hex(void)
{
    uint8_t h[32];
    char hex[65];
    sw_sha1("abc", 3, h);
    sw_hex_encode(h, 20, hex);
    CHECK_EQ_STR(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    sw_sha256("abc", 3, h);
    sw_hex_encode(h, 32, hex);
    CHECK_EQ_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    struct sw_hash *inc = sw_hash_new_sha256();
    sw_hash_update(inc, "a", 1);
    sw_hash_update(inc, "bc", 2);
    uint8_t h2[32];
    sw_hash_final(inc, h2);
    sw_hash_free(inc);
    CHECK_EQ_MEM(h, h2, 32);
    uint8_t back[32];
    CHECK_EQ_INT(sw_hex_decode(hex, back, 32), 0);
    CHECK_EQ_MEM(back, h, 32);
    CHECK_EQ_INT(sw_hex_decode("zz", back, 1), SW_ECORRUPT);
    CHECK_EQ_INT(sw_hex_decode("abc", back, 1), SW_ECORRUPT);
}

static void test_files(void)
{
    const char *dir = sw_test_tmpdir();
    CHECK(dir != NULL);
    char *sub = sw_path_join(dir, "a/b/c");
    CHECK_EQ_INT(sw_mkdir_p(sub), 0);
    CHECK(sw_is_dir(sub));
    char *f = sw_path_join(sub, "x.bin");
    CHECK_EQ_INT(sw_file_write_atomic(f, "hello", 5), 0);
    uint8_t *data;
    size_t len;
    CHECK_EQ_INT(sw_file_read_all(f, 100, &data, &len), 0);
    CHECK_EQ_INT(len, 5);
    CHECK_EQ_STR((char *)data, "hello");
    free(data);
    CHECK_EQ_INT(sw_file_read_all(f, 3, &data, &len), SW_ETOOBIG);
    struct sw_mmap m;
    CHECK_EQ_INT(sw_file_map(f, &m), 0);
    CHECK(m.len == 5 && !memcmp(m.data, "hello", 5));
    sw_file_unmap(&m);
    sw_file_unmap(NULL);
    uint64_t sz;
    CHECK_EQ_INT(sw_file_size("/nonexistent/x", &sz), SW_ENOTFOUND);
    free(f);
    free(sub);
}

/* A mapped file truncated by someone else: reads past the new end give zeros and count a
 * fault (mapguard.c), instead of SIGBUS killing the process. */
static void test_map_guard(void)
{
    const char *dir = sw_test_tmpdir();
    CHECK(dir != NULL);
    char *f = sw_path_join(dir, "shrinks.bin");
    long pg = sysconf(_SC_PAGESIZE);
    size_t len = (size_t)pg * 4;
    uint8_t *buf = malloc(len);
    CHECK(buf != NULL);
    memset(buf, 0x5a, len);
    CHECK_EQ_INT(sw_file_write_atomic(f, buf, len), 0);
    struct sw_mmap m;
    CHECK_EQ_INT(sw_file_map(f, &m), 0);
    CHECK_EQ_INT(sw_map_guard_faults(m.data), 0);
    CHECK_EQ_INT(m.data[len - 1], 0x5a);
    CHECK_EQ_INT(truncate(f, pg), 0);
    CHECK_EQ_INT(m.data[0], 0x5a);                 /* still in the file */
    volatile const uint8_t *p = m.data;
    CHECK_EQ_INT(p[(size_t)pg * 2 + 7], 0);        /* past the end: zeros, not SIGBUS */
    CHECK_EQ_INT(p[len - 1], 0);
    CHECK(sw_map_guard_faults(m.data + len - 1) >= 1);
    CHECK_EQ_INT(sw_map_guard_faults(buf), 0);     /* not a guarded range */
    sw_file_unmap(&m);
    CHECK_EQ_INT(sw_map_guard_faults(m.data), 0);
    free(buf);
    free(f);
}

static void test_fmt(void)
{
    char b[32];
    CHECK_EQ_STR(sw_fmt_bytes(12400000000ull, b, sizeof b), "12.4 GB");
    CHECK_EQ_STR(sw_fmt_duration_ms(130000, b, sizeof b), "2m10s");
    uint64_t m = 0;
    CHECK_EQ_INT(sw_sys_mem_available(&m), 0);
    CHECK(m > 0);
}

/* The rate meter is fed known byte counts at known times (no clock is read). */
#define MB 1000000.0
static void test_rate_steady(void)
{
    struct sw_rate r;
    sw_rate_reset(&r, 5000);
    sw_rate_add(&r, 0, 0);               /* torrent added at t=0 */
    CHECK_NEAR(sw_rate_bps(&r, 500), 0, 0);
    CHECK_EQ_U64(sw_rate_eta_ms(&r, 500, 100), UINT64_MAX);
    CHECK_EQ_U64(sw_rate_eta_ms(&r, 500, 0), 0);
    /* 1 s to connect, then 10 MB/s in 100 ms steps: the set-up second is not averaged in */
    uint64_t total = 0;
    for (uint64_t t = 1000; t <= 3000; t += 100) {
        sw_rate_add(&r, t, total);
        total += 1000000;
    }
    total -= 1000000; /* the count fed last, at t=3000 */
    CHECK_NEAR(sw_rate_bps(&r, 3000) / MB, 10.0, 0.01);
    CHECK_NEAR((double)sw_rate_eta_ms(&r, 3000, 50000000), 5000, 5);
    /* 10 s more at 10 MB/s, then 6 s at 2 MB/s: the window holds only the slow part */
    uint64_t t = 3000;
    for (int i = 0; i < 100; i++) sw_rate_add(&r, t += 100, total += 1000000);
    CHECK_NEAR(sw_rate_bps(&r, t) / MB, 10.0, 0.01);
    for (int i = 0; i < 60; i++) sw_rate_add(&r, t += 100, total += 200000);
    CHECK_NEAR(sw_rate_bps(&r, t) / MB, 2.0, 0.01);
    /* half-way through the switch back: 2.5 s of each in the window → 6 MB/s */
    for (int i = 0; i < 25; i++) sw_rate_add(&r, t += 100, total += 1000000);
    CHECK_NEAR(sw_rate_bps(&r, t) / MB, 6.0, 0.05);
}

static void test_rate_stall(void)
{
    struct sw_rate r;
    sw_rate_reset(&r, 5000);
    sw_rate_add(&r, 0, 0);
    uint64_t t = 0, total = 0;
    for (int i = 0; i < 100; i++) sw_rate_add(&r, t += 100, total += 1000000);
    CHECK_NEAR(sw_rate_bps(&r, t) / MB, 10.0, 0.01);
    /* nothing arrives: the rate falls as the time passes, to 0 after a whole window */
    CHECK_NEAR(sw_rate_bps(&r, t + 2500) / MB, 5.0, 0.01);
    CHECK_NEAR(sw_rate_bps(&r, t + 5000), 0, 0);
    CHECK_EQ_U64(sw_rate_eta_ms(&r, t + 6000, 1000), UINT64_MAX);
    /* a long idle spell (over 4 windows): the next run starts afresh, not averaged with it */
    t += 60000;
    sw_rate_add(&r, t, total += 3000000);
    CHECK_NEAR(sw_rate_bps(&r, t), 0, 0);
    for (int i = 0; i < 10; i++) sw_rate_add(&r, t += 100, total += 300000);
    CHECK_NEAR(sw_rate_bps(&r, t) / MB, 3.0, 0.01);
    /* a count that goes back (a re-check dropped pieces) starts over */
    sw_rate_add(&r, t += 100, 5);
    CHECK_NEAR(sw_rate_bps(&r, t), 0, 0);
    sw_rate_add(&r, t += 100, 1000005);
    sw_rate_add(&r, t += 1000, 2000005);
    CHECK_NEAR(sw_rate_bps(&r, t) / MB, 1.0, 0.01);
}

/* The figure that matters: a 500 MB shard at 200 MB/s arrives in 256 KiB pieces verified in
 * bursts of 8 (a hashing worker's batch) after 300 ms of set-up; asked at any moment past
 * 20 % and before 80 %, the ETA is within 20 % of the time that the rest then takes. */
static void test_rate_eta_truthful(void)
{
    const uint64_t len = 500000000, piece = 262144, burst = 8 * piece;
    const double bps = 200e6;
    struct sw_rate r;
    sw_rate_reset(&r, 5000);
    sw_rate_add(&r, 0, 0);
    const double finish_ms = 300 + (double)len / bps * 1000.0;
    uint64_t done = 0, at_ms = 300;
    double worst = 0;
    int asked = 0;
    while (done < len) {
        uint64_t next = done + burst < len ? done + burst : len;
        uint64_t next_ms = 300 + (uint64_t)((double)next / bps * 1000.0);
        /* asked between this burst and the next, as a status page would */
        for (uint64_t q = at_ms; done > len / 5 && done < len / 5 * 4 && q < next_ms; q += 2) {
            uint64_t eta = sw_rate_eta_ms(&r, q, len - done);
            double actual = finish_ms - (double)q;
            double err = fabs((double)eta - actual) / actual;
            if (err > worst) worst = err;
            asked++;
        }
        done = next;
        at_ms = next_ms;
        sw_rate_add(&r, at_ms, done);
    }
    CHECK(asked > 500);
    fprintf(stderr, "  worst ETA error %.1f%% over %d asks\n", worst * 100, asked);
    CHECK_MSG(worst < 0.20, "worst ETA error %.1f%% (want < 20%%)", worst * 100);
}

int main(void)
{
    SW_RUN(test_bencode_valid);
    SW_RUN(test_bencode_malformed);
    SW_RUN(test_bencode_stream);
    SW_RUN(test_bencode_encode_roundtrip);
    SW_RUN(test_hash_hex);
    SW_RUN(test_files);
    SW_RUN(test_map_guard);
    SW_RUN(test_fmt);
    SW_RUN(test_rate_steady);
    SW_RUN(test_rate_stall);
    SW_RUN(test_rate_eta_truthful);
    return SW_TEST_DONE();
}
