/* test_bt.c — unit tests of src/bt: metainfo create/parse (pad files, piece boundaries at
 * file boundaries, stable info-hash, unsafe paths), magnet links, the peer wire decoder fed
 * whole / byte by byte / in random chunks, malformed and oversized messages, the picker,
 * storage (bad piece never written, resume, rename only when complete), and two sessions on
 * one loop: a transfer plus the extension hook (handshake keys, priority messages), web
 * seeds (one bad piece; a corrupt one banned) and initial seeding to three leechers. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "bt/bt.h"
#include "bt/bt_int.h"
#include "test.h"

static const char *tmp;

static void write_file(const char *dir, const char *name, size_t n, uint32_t seed)
{
    char *p = sw_path_join(dir, name);
    uint8_t *d = malloc(n ? n : 1);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        d[i] = (uint8_t)x;
    }
    CHECK_EQ_INT(sw_file_write_atomic(p, d, n), 0);
    free(d);
    free(p);
}

static int exists(const char *dir, const char *name)
{
    char *p = sw_path_join(dir, name);
    int e = sw_path_exists(p);
    free(p);
    return e;
}

/* Three shards of awkward sizes, piece length 32 KiB. */
static void make_torrent(const char *dir, struct sw_bt_metainfo *mi, uint32_t piece_len)
{
    sw_mkdir_p(dir);
    write_file(dir, "shard-0.gguf", 100000, 1);
    write_file(dir, "shard-1.gguf", 65536, 2);
    write_file(dir, "shard-2.gguf", 1234, 3);
    struct sw_bt_create_file files[3] = {
        { "shard-0.gguf", 0, 0, 0, 3, NULL }, { "shard-1.gguf", 0, 1, 4, 7, NULL }, { "shard-2.gguf", 0, 2, 8, 9, NULL },
    };
    const char *tr[] = { "http://127.0.0.1:1/announce" };
    const char *ws[] = { "http://127.0.0.1:2/models/" };
    struct sw_bt_create_opts o = {
        .dir = dir, .name = "tiny", .files = files, .n_files = 3, .piece_length = piece_len, .architecture = "llama",
        .model_id = "abc", .n_layers = 10, .owner_key_hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        .trackers = tr, .n_trackers = 1, .web_seeds = ws, .n_web_seeds = 1,
    };
    char err[256] = "";
    int rc = sw_bt_metainfo_create(&o, mi, err, sizeof err);
    CHECK_MSG(rc == 0, "create: %d %s", rc, err);
}

static void test_metainfo_roundtrip(void)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/mi", tmp);
    struct sw_bt_metainfo mi, mi2, mi3;
    make_torrent(dir, &mi, 32768);
    CHECK_EQ_INT(mi.piece_length, 32768);
    /* files: shard-0, pad, shard-1 (exactly 2 pieces: no pad), shard-2 */
    CHECK_EQ_INT(mi.n_files, 4);
    CHECK(!mi.files[0].pad && mi.files[1].pad && !mi.files[2].pad && !mi.files[3].pad);
    CHECK_EQ_STR(mi.files[1].path, ".pad/31072");
    CHECK_EQ_U64(mi.files[1].length, 4 * 32768 - 100000);
    for (uint32_t i = 0; i < mi.n_files; i++)
        if (!mi.files[i].pad) CHECK_EQ_U64(mi.files[i].offset % mi.piece_length, 0); /* no piece spans two shards */
    CHECK_EQ_INT(mi.files[0].first_piece, 0);
    CHECK_EQ_INT(mi.files[0].last_piece, 3);
    CHECK_EQ_INT(mi.files[2].first_piece, 4);
    CHECK_EQ_INT(mi.files[2].last_piece, 5);
    CHECK_EQ_INT(mi.files[3].first_piece, 6);
    CHECK_EQ_INT(mi.n_pieces, 7);
    CHECK_EQ_INT(sw_bt_piece_size(&mi, 6), 1234);
    CHECK(mi.has_shardswarm);
    CHECK_EQ_STR(mi.architecture, "llama");
    CHECK_EQ_INT(mi.n_shards, 3);
    CHECK_EQ_INT(mi.n_layers, 10);
    CHECK_EQ_INT(mi.files[2].shard_index, 1);
    CHECK_EQ_INT(mi.files[2].layer_first, 4);
    CHECK_EQ_INT(mi.files[2].layer_last, 7);
    CHECK_EQ_INT(mi.files[1].shard_index, -1);
    CHECK_EQ_INT(strlen(mi.owner_key_hex), 64);
    /* Stable: the same files make the same info-hash. */
    make_torrent(dir, &mi2, 32768);
    CHECK_EQ_MEM(mi.info_hash, mi2.info_hash, 20);
    /* Encode + parse keeps the info-hash, trackers and web seeds. */
    struct sw_buf b = { 0 };
    CHECK_EQ_INT(sw_bt_metainfo_encode(&mi, &b), 0);
    char err[256] = "";
    CHECK_EQ_INT(sw_bt_metainfo_parse(b.data, b.len, &mi3, err, sizeof err), 0);
    CHECK_EQ_MEM(mi.info_hash, mi3.info_hash, 20);
    CHECK_EQ_INT(mi3.n_trackers, 1);
    CHECK_EQ_INT(mi3.n_web_seeds, 1);
    CHECK_EQ_STR(mi3.web_seeds[0], "http://127.0.0.1:2/models/");
    /* The info-hash is SHA-1 of the raw info dict. */
    uint8_t h[20];
    sw_sha1(mi3.info_raw, mi3.info_len, h);
    CHECK_EQ_MEM(h, mi3.info_hash, 20);
    /* Spans: piece 3 = the tail of shard-0 + the pad. */
    struct sw_bt_span sp[4];
    CHECK_EQ_INT(sw_bt_piece_spans(&mi, 3, 0, 32768, sp, 4), 2);
    CHECK_EQ_INT(sp[0].file, 0);
    CHECK_EQ_U64(sp[0].file_offset, 98304);
    CHECK_EQ_INT(sp[0].len, 100000 - 98304);
    CHECK_EQ_INT(sp[1].file, 1);
    sw_buf_free(&b);
    /* Piece length choice. */
    CHECK_EQ_INT(sw_bt_choose_piece_length(1000), 256u << 10);
    CHECK_EQ_INT(sw_bt_choose_piece_length(UINT64_C(1) << 30), 512u << 10);
    CHECK_EQ_INT(sw_bt_choose_piece_length(UINT64_C(12) << 30), 4u << 20);
    CHECK_EQ_INT(sw_bt_choose_piece_length(UINT64_C(1) << 40), 16u << 20);
    sw_bt_metainfo_free(&mi);
    sw_bt_metainfo_free(&mi2);
    sw_bt_metainfo_free(&mi3);
}

/* A hand-written torrent with one file at `path` (bencoded list elements). */
static int parse_with_path(const char *path_list, const char *name)
{
    struct sw_buf b = { 0 };
    uint8_t zeros[20] = { 0 };
    sw_buf_printf(&b, "d4:infod5:filesld6:lengthi10e4:path%see4:name%zu:%s12:piece lengthi16384e6:pieces20:", path_list,
                  strlen(name), name);
    sw_buf_append(&b, zeros, 20);
    sw_buf_printf(&b, "ee");
    struct sw_bt_metainfo mi;
    char err[256] = "";
    int rc = sw_bt_metainfo_parse(b.data, b.len, &mi, err, sizeof err);
    if (!rc) sw_bt_metainfo_free(&mi);
    sw_buf_free(&b);
    return rc;
}

static void test_unsafe_paths(void)
{
    CHECK_EQ_INT(parse_with_path("l1:a1:be", "ok"), 0);
    CHECK_EQ_INT(parse_with_path("l2:..1:be", "ok"), SW_ECORRUPT);
    CHECK_EQ_INT(parse_with_path("l1:a2:..e", "ok"), SW_ECORRUPT);
    CHECK_EQ_INT(parse_with_path("l0:1:be", "ok"), SW_ECORRUPT);
    CHECK_EQ_INT(parse_with_path("l4:/etce", "ok"), SW_ECORRUPT);
    CHECK_EQ_INT(parse_with_path("l3:a/be", "ok"), SW_ECORRUPT);
    CHECK_EQ_INT(parse_with_path("le", "ok"), SW_ECORRUPT);
    CHECK_EQ_INT(parse_with_path("l1:ae", ".."), SW_ECORRUPT);
    CHECK(sw_bt_path_is_safe("shard-0.gguf"));
    CHECK(sw_bt_path_is_safe("a/b/c"));
    CHECK(!sw_bt_path_is_safe("../x"));
    CHECK(!sw_bt_path_is_safe("/abs"));
    CHECK(!sw_bt_path_is_safe("a//b"));
    CHECK(!sw_bt_path_is_safe("a/./b"));
    CHECK(!sw_bt_path_is_safe("a\\b"));
    CHECK(!sw_bt_path_is_safe("a/"));
    CHECK(!sw_bt_path_is_safe(""));
    CHECK(!sw_bt_path_is_safe("C:x"));
}

static void test_magnet(void)
{
    struct sw_bt_magnet m;
    char err[256];
    CHECK_EQ_INT(sw_bt_magnet_parse("magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&dn=my%20model"
                                    "&tr=http%3A%2F%2Ft%2Fa&x.pe=127.0.0.1:6881&tr=udp://x:1",
                                    &m, err, sizeof err), 0);
    CHECK_EQ_INT(m.info_hash[0], 0x01);
    CHECK_EQ_INT(m.info_hash[19], 0x67);
    CHECK_EQ_STR(m.name, "my model");
    CHECK_EQ_INT(m.n_trackers, 2);
    CHECK_EQ_STR(m.trackers[0], "http://t/a");
    CHECK_EQ_INT(m.n_peers, 1);
    CHECK_EQ_STR(m.peers[0], "127.0.0.1:6881");
    uint8_t ih[20];
    memcpy(ih, m.info_hash, 20);
    sw_bt_magnet_free(&m);
    /* base32 of the same hash */
    CHECK_EQ_INT(sw_bt_magnet_parse("magnet:?xt=urn:btih:AERUKZ4JVPG66AJDIVTYTK6N54ASGRLH", &m, err, sizeof err), 0);
    CHECK_EQ_MEM(m.info_hash, ih, 20);
    sw_bt_magnet_free(&m);
    CHECK_EQ_INT(sw_bt_magnet_parse("magnet:?dn=x", &m, err, sizeof err), SW_ECORRUPT);
    CHECK_EQ_INT(sw_bt_magnet_parse("http://x", &m, err, sizeof err), SW_ECORRUPT);
    CHECK_EQ_INT(sw_bt_magnet_parse("magnet:?xt=urn:btih:0123", &m, err, sizeof err), SW_ECORRUPT);
    struct sw_buf b = { 0 };
    const char *tr[] = { "http://a/b?c=d" };
    CHECK_EQ_INT(sw_bt_magnet_format(ih, "a b", tr, 1, &b), 0);
    CHECK_EQ_INT(sw_bt_magnet_parse(sw_buf_cstr(&b), &m, err, sizeof err), 0);
    CHECK_EQ_MEM(m.info_hash, ih, 20);
    CHECK_EQ_STR(m.name, "a b");
    CHECK_EQ_STR(m.trackers[0], "http://a/b?c=d");
    sw_bt_magnet_free(&m);
    sw_buf_free(&b);
}

/* ------------------------------------------------------------------ wire */

struct evlog {
    struct sw_buf text;
    struct sw_buf piece;
};

static void log_ev(void *ud, const struct sw_bt_wire_ev *ev)
{
    struct evlog *l = ud;
    switch (ev->type) {
    case SW_BT_WEV_HANDSHAKE:
        sw_buf_printf(&l->text, "hs %02x%02x %02x;", ev->info_hash[0], ev->peer_id[19], ev->reserved[5]);
        break;
    case SW_BT_WEV_KEEPALIVE:
        sw_buf_printf(&l->text, "ka;");
        break;
    case SW_BT_WEV_MSG:
        sw_buf_printf(&l->text, "m%u %u %u %u x%u n%zu", ev->id, ev->index, ev->begin, ev->length, ev->ext_id, ev->payload_len);
        for (size_t i = 0; i < ev->payload_len && i < 8; i++) sw_buf_printf(&l->text, " %02x", ev->payload[i]);
        sw_buf_printf(&l->text, ";");
        break;
    case SW_BT_WEV_PIECE_DATA:
        sw_buf_append(&l->piece, ev->frag, ev->frag_len);
        if (ev->last) sw_buf_printf(&l->text, "piece %u %u %u;", ev->index, ev->block_begin, ev->block_len);
        break;
    }
}

static void build_stream(struct sw_buf *s, uint8_t *block)
{
    uint8_t ih[20], id[20];
    memset(ih, 0xab, 20);
    memset(id, 0x11, 20);
    sw_bt_wire_put_handshake(s, ih, id, 1, 1);
    uint8_t bits[2] = { 0xf0, 0x80 };
    sw_bt_wire_put_bitfield(s, bits, 9);
    sw_bt_wire_put_u32(s, SW_BT_HAVE, 7);
    sw_bt_wire_put_keepalive(s);
    sw_bt_wire_put_simple(s, SW_BT_UNCHOKE);
    sw_bt_wire_put_req(s, SW_BT_REQUEST, 1, 16384, 16384);
    uint8_t hdr[13];
    for (int i = 0; i < 16384; i++) block[i] = (uint8_t)(i * 7);
    sw_bt_wire_piece_header(hdr, 2, 32768, 16384);
    sw_buf_append(s, hdr, 13);
    sw_buf_append(s, block, 16384);
    sw_bt_wire_put_extended(s, 0, "d1:md6:ut_pexi1eee", 18);
    sw_bt_wire_put_simple(s, SW_BT_HAVE_ALL);
    sw_bt_wire_put_req(s, SW_BT_REJECT, 3, 0, 16384);
    sw_bt_wire_put_u32(s, SW_BT_ALLOWED_FAST, 5);
    sw_bt_wire_put_req(s, SW_BT_CANCEL, 1, 16384, 16384);
    uint8_t unknown[6] = { 0, 0, 0, 2, 99, 1 }; /* unknown id: ignored */
    sw_buf_append(s, unknown, 6);
    sw_bt_wire_put_simple(s, SW_BT_CHOKE);
}

static void test_wire_chunks(void)
{
    struct sw_buf s = { 0 };
    uint8_t block[16384];
    build_stream(&s, block);
    struct evlog whole = { 0 };
    struct sw_bt_wire w;
    sw_bt_wire_init(&w, NULL);
    CHECK_EQ_INT(sw_bt_wire_feed(&w, s.data, s.len, log_ev, &whole), 0);
    sw_bt_wire_free(&w);
    CHECK_EQ_U64(whole.piece.len, 16384);
    CHECK_EQ_MEM(whole.piece.data, block, 16384);
    CHECK(strstr(sw_buf_cstr(&whole.text), "m5 0 0 0 x0 n2 f0 80;") != NULL);
    CHECK(strstr(sw_buf_cstr(&whole.text), "piece 2 32768 16384;") != NULL);
    CHECK(strstr(sw_buf_cstr(&whole.text), "m20 0 0 0 x0 n18") != NULL);
    CHECK(strstr(sw_buf_cstr(&whole.text), "ka;") != NULL);
    /* Byte by byte, then random chunks: the same events. */
    for (int mode = 0; mode < 21; mode++) {
        struct evlog l = { 0 };
        sw_bt_wire_init(&w, NULL);
        uint32_t x = 12345u + (uint32_t)mode;
        size_t off = 0;
        while (off < s.len) {
            size_t n = 1;
            if (mode) {
                x ^= x << 13; x ^= x >> 17; x ^= x << 5;
                n = 1 + x % (mode < 10 ? 7u : 40000u);
            }
            if (n > s.len - off) n = s.len - off;
            CHECK_EQ_INT(sw_bt_wire_feed(&w, s.data + off, n, log_ev, &l), 0);
            off += n;
        }
        sw_bt_wire_free(&w);
        CHECK_MSG(l.text.len == whole.text.len && !memcmp(l.text.data, whole.text.data, l.text.len),
                  "mode %d events differ: %s", mode, sw_buf_cstr(&l.text));
        CHECK_MSG(l.piece.len == 16384 && !memcmp(l.piece.data, block, 16384), "mode %d piece bytes differ", mode);
        sw_buf_free(&l.text);
        sw_buf_free(&l.piece);
    }
    sw_buf_free(&whole.text);
    sw_buf_free(&whole.piece);
    sw_buf_free(&s);
}

static int feed_after_handshake(const uint8_t *msg, size_t n, const struct sw_bt_wire_limits *lim, uint8_t big_ext)
{
    struct sw_buf s = { 0 };
    uint8_t ih[20] = { 0 }, id[20] = { 0 };
    sw_bt_wire_put_handshake(&s, ih, id, 1, 1);
    sw_buf_append(&s, msg, n);
    struct evlog l = { 0 };
    struct sw_bt_wire w;
    sw_bt_wire_init(&w, lim);
    if (big_ext) sw_bt_wire_allow_big_ext(&w, big_ext);
    int rc = sw_bt_wire_feed(&w, s.data, s.len, log_ev, &l);
    if (rc) CHECK_EQ_INT(sw_bt_wire_feed(&w, s.data, 1, log_ev, &l), rc); /* stays failed */
    sw_bt_wire_free(&w);
    sw_buf_free(&s);
    sw_buf_free(&l.text);
    sw_buf_free(&l.piece);
    return rc;
}

static void test_wire_malformed(void)
{
    uint8_t m[16];
    /* have with 3 payload bytes */
    sw_put_be32(m, 4); m[4] = SW_BT_HAVE;
    CHECK_EQ_INT(feed_after_handshake(m, 8, NULL, 0), SW_ECORRUPT);
    /* a 2 MiB bitfield (cap 1 MiB): refused from the header alone */
    sw_put_be32(m, 2u << 20); m[4] = SW_BT_BITFIELD;
    CHECK_EQ_INT(feed_after_handshake(m, 5, NULL, 0), SW_ETOOBIG);
    /* a 1 GiB piece block */
    sw_put_be32(m, 1u << 30); m[4] = SW_BT_PIECE; memset(m + 5, 0, 8);
    CHECK_EQ_INT(feed_after_handshake(m, 13, NULL, 0), SW_ETOOBIG);
    /* a piece message too short to hold index and begin */
    sw_put_be32(m, 5); m[4] = SW_BT_PIECE;
    CHECK_EQ_INT(feed_after_handshake(m, 9, NULL, 0), SW_ECORRUPT);
    /* request with a wrong length */
    sw_put_be32(m, 9); m[4] = SW_BT_REQUEST;
    CHECK_EQ_INT(feed_after_handshake(m, 13, NULL, 0), SW_ECORRUPT);
    /* choke with a payload */
    sw_put_be32(m, 2); m[4] = SW_BT_CHOKE; m[5] = 0;
    CHECK_EQ_INT(feed_after_handshake(m, 6, NULL, 0), SW_ECORRUPT);
    /* empty extended message */
    sw_put_be32(m, 1); m[4] = SW_BT_EXTENDED;
    CHECK_EQ_INT(feed_after_handshake(m, 5, NULL, 0), SW_ECORRUPT);
    /* a 4 MiB extension message: refused by default, accepted for the big extension id
     * (both only after the peer's BEP 10 handshake, which goes first here) */
    size_t big = 4u << 20, hs = 8; /* ext handshake "de" = 4+1+1+2 bytes */
    uint8_t *bm = calloc(1, hs + big + 6);
    sw_bt_wire_ext_header(bm, 0, 2);
    memcpy(bm + 6, "de", 2);
    sw_bt_wire_ext_header(bm + hs, 3, big);
    CHECK_EQ_INT(feed_after_handshake(bm, hs + big + 6, NULL, 0), SW_ETOOBIG);
    CHECK_EQ_INT(feed_after_handshake(bm, hs + big + 6, NULL, 3), 0);
    struct sw_bt_wire_limits small = { .max_ext_big = 1u << 20 };
    CHECK_EQ_INT(feed_after_handshake(bm, hs + big + 6, &small, 3), SW_ETOOBIG);
    /* the same big message without the extension handshake first: refused */
    CHECK_EQ_INT(feed_after_handshake(bm + hs, big + 6, NULL, 3), SW_ETOOBIG);
    free(bm);
    /* wrong protocol string */
    struct sw_bt_wire w;
    struct evlog l = { 0 };
    sw_bt_wire_init(&w, NULL);
    CHECK_EQ_INT(sw_bt_wire_feed(&w, (const uint8_t *)"\x13" "BitTorrent protocoX", 20, log_ev, &l), SW_ECORRUPT);
    sw_bt_wire_free(&w);
    sw_bt_wire_init(&w, NULL);
    CHECK_EQ_INT(sw_bt_wire_feed(&w, (const uint8_t *)"GET / HTTP/1.1\r\n", 16, log_ev, &l), SW_ECORRUPT);
    sw_bt_wire_free(&w);
    sw_buf_free(&l.text);
}

/* Issue 13: caps are checked on the 4-byte length prefix, before the body is buffered. */
static void test_wire_prefix_caps(void)
{
    uint8_t hs[SW_BT_HANDSHAKE_LEN + 32], ih[20] = { 0 }, id[20] = { 0 };
    struct sw_buf s = { 0 };
    sw_bt_wire_put_handshake(&s, ih, id, 1, 1);
    memcpy(hs, s.data, SW_BT_HANDSHAKE_LEN);
    sw_buf_free(&s);
    struct evlog l = { 0 };
    struct sw_bt_wire w;
    /* a 64 MiB extension message (any ext id, the big one included) before the peer's BEP 10
     * handshake: refused from its 6-byte header, nothing allocated for the body */
    for (int eid = 0; eid < 4; eid += 3) {
        sw_bt_wire_init(&w, NULL);
        sw_bt_wire_allow_big_ext(&w, 3);
        CHECK_EQ_INT(sw_bt_wire_feed(&w, hs, SW_BT_HANDSHAKE_LEN, log_ev, &l), 0);
        size_t keep = w.partial.cap; /* the handshake's 68 bytes */
        uint8_t m[6];
        sw_bt_wire_ext_header(m, (uint8_t)eid, (64u << 20) - 2);
        CHECK_EQ_INT(sw_bt_wire_feed(&w, m, 6, log_ev, &l), SW_ETOOBIG);
        CHECK_MSG(w.partial.cap == keep, "ext %d: buffer grew to %zu", eid, w.partial.cap);
        CHECK_MSG(strstr(w.err, "before the extension handshake") && strstr(w.err, "65536"), "err: %s", w.err);
        sw_bt_wire_free(&w);
    }
    /* a bitfield longer than ceil(pieces/8): 100 pieces allow 13 bytes */
    for (uint32_t nb = 13; nb <= 14; nb++) {
        sw_bt_wire_init(&w, NULL);
        sw_bt_wire_set_pieces(&w, 100);
        CHECK_EQ_INT(sw_bt_wire_feed(&w, hs, SW_BT_HANDSHAKE_LEN, log_ev, &l), 0);
        uint8_t m[5 + 14] = { 0 };
        sw_put_be32(m, nb + 1);
        m[4] = SW_BT_BITFIELD;
        CHECK_EQ_INT(sw_bt_wire_feed(&w, m, 5, log_ev, &l), nb == 13 ? 0 : SW_ETOOBIG);
        if (nb == 14) CHECK_MSG(strstr(w.err, "bitfield of 14 bytes") && strstr(w.err, "= 13"), "err: %s", w.err);
        sw_bt_wire_free(&w);
    }
    /* a fixed-size message with a huge length prefix: refused without buffering */
    sw_bt_wire_init(&w, NULL);
    CHECK_EQ_INT(sw_bt_wire_feed(&w, hs, SW_BT_HANDSHAKE_LEN, log_ev, &l), 0);
    size_t keep = w.partial.cap;
    uint8_t m[5];
    sw_put_be32(m, 1u << 20);
    m[4] = SW_BT_HAVE;
    CHECK_EQ_INT(sw_bt_wire_feed(&w, m, 5, log_ev, &l), SW_ECORRUPT);
    CHECK_MSG(w.partial.cap == keep, "have: buffer grew to %zu", w.partial.cap);
    sw_bt_wire_free(&w);
    /* a piece block bigger than the block size we request (the node sets max_block) */
    struct sw_bt_wire_limits lim = { .max_block = SW_BT_BLOCK };
    sw_bt_wire_init(&w, &lim);
    CHECK_EQ_INT(sw_bt_wire_feed(&w, hs, SW_BT_HANDSHAKE_LEN, log_ev, &l), 0);
    uint8_t pm[13];
    sw_bt_wire_piece_header(pm, 0, 0, SW_BT_BLOCK + 1);
    CHECK_EQ_INT(sw_bt_wire_feed(&w, pm, 13, log_ev, &l), SW_ETOOBIG);
    sw_bt_wire_free(&w);
    sw_buf_free(&l.text);
    sw_buf_free(&l.piece);
}

/* The hooks through which the session takes part (peer_budget.c): a per-peer cap for the
 * big extension, and a budget that a buffered message takes its room from. */
struct hookt {
    struct evlog l;          /* first: log_ev gets the same pointer */
    uint32_t cap;            /* ext_cap's answer */
    uint64_t budget, used;
    int reserves, releases, too_big;
};

static uint32_t ht_cap(void *ud, uint8_t ext_id, uint32_t len)
{
    struct hookt *h = ud;
    (void)len;
    return ext_id == 3 ? h->cap : UINT32_MAX;
}

static int ht_reserve(void *ud, uint32_t len)
{
    struct hookt *h = ud;
    h->reserves++;
    if (h->too_big) return SW_ETOOBIG;
    if (h->used + len > h->budget) return SW_EAGAIN;
    h->used += len;
    return 0;
}

static void ht_release(void *ud, uint32_t len)
{
    struct hookt *h = ud;
    h->releases++;
    h->used -= len;
}

static void test_wire_hooks(void)
{
    static const struct sw_bt_wire_hooks hooks = { ht_cap, ht_reserve, ht_release };
    struct sw_buf s = { 0 };
    uint8_t ih[20] = { 0 }, id[20] = { 0 };
    sw_bt_wire_put_handshake(&s, ih, id, 1, 1);
    sw_bt_wire_put_extended(&s, 0, "de", 2); /* the peer's BEP 10 handshake */
    struct hookt h = { .cap = 2u << 20, .budget = 1u << 20 };
    struct sw_bt_wire_limits lim = { .reserve_above = 64u << 10 };
    struct sw_bt_wire w;

    /* the per-peer cap: 2 MiB now, whatever max_ext_big (64 MiB) allows */
    sw_bt_wire_init(&w, &lim);
    w.hooks = &hooks;
    sw_bt_wire_allow_big_ext(&w, 3);
    CHECK_EQ_INT(sw_bt_wire_feed(&w, s.data, s.len, log_ev, &h), 0);
    uint8_t m[6];
    sw_bt_wire_ext_header(m, 3, (64u << 20) - 2);
    CHECK_EQ_INT(sw_bt_wire_feed(&w, m, 6, log_ev, &h), SW_ETOOBIG);
    CHECK_MSG(strstr(w.err, "of 67108863 bytes exceeds its cap of 2097152 bytes for what this peer may send now"), "err: %s", w.err);
    CHECK_EQ_INT(h.reserves, 0);
    sw_bt_wire_free(&w);

    /* a 300 KiB message that straddles reads: room first; without room the feed stops
     * before its body (nothing buffered, the unread bytes named), and goes on later */
    sw_bt_wire_init(&w, &lim);
    w.hooks = &hooks;
    sw_bt_wire_allow_big_ext(&w, 3);
    CHECK_EQ_INT(sw_bt_wire_feed(&w, s.data, s.len, log_ev, &h), 0);
    size_t body = 300u << 10;
    struct sw_buf msg = { 0 };
    uint8_t *payload = calloc(1, body);
    payload[0] = 0x5a;
    sw_bt_wire_put_extended(&msg, 3, payload, body);
    sw_bt_wire_put_simple(&msg, SW_BT_UNCHOKE);
    h.budget = 100u << 10;
    size_t first = 6 + 1000;
    CHECK_EQ_INT(sw_bt_wire_feed(&w, msg.data, first, log_ev, &h), SW_EAGAIN);
    CHECK_EQ_U64(w.unread, 1000);
    CHECK_MSG(w.partial.cap < 4096, "buffered %zu bytes without room", w.partial.cap);
    CHECK_EQ_INT(sw_bt_wire_feed(&w, msg.data + 6, 1000, log_ev, &h), SW_EAGAIN); /* still none */
    h.budget = 1u << 20;
    CHECK_EQ_INT(sw_bt_wire_feed(&w, msg.data + 6, 1000, log_ev, &h), 0);
    CHECK_EQ_U64(h.used, body + 1);
    CHECK_EQ_INT(sw_bt_wire_feed(&w, msg.data + first, msg.len - first, log_ev, &h), 0);
    CHECK_EQ_U64(h.used, 0);
    CHECK_EQ_INT(h.releases, 1);
    CHECK_MSG(strstr((char *)h.l.text.data, "m20 0 0 0 x3 n307200 5a 00") && strstr((char *)h.l.text.data, "m1 0"),
              "events: %.*s", (int)h.l.text.len, (char *)h.l.text.data);

    /* the same message whole in one input (an extension message is still copied: room
     * taken and given back); a 300 KiB BITFIELD whole in one input is not copied at all */
    int before = h.reserves;
    CHECK_EQ_INT(sw_bt_wire_feed(&w, msg.data, msg.len, log_ev, &h), 0);
    CHECK_EQ_INT(h.reserves, before + 1);
    CHECK_EQ_U64(h.used, 0);
    struct sw_buf bf = { 0 };
    sw_bt_wire_put_bitfield(&bf, payload, (uint32_t)body * 8);
    CHECK_EQ_INT(sw_bt_wire_feed(&w, bf.data, bf.len, log_ev, &h), 0);
    CHECK_EQ_INT(h.reserves, before + 1);
    sw_buf_free(&bf);
    /* more than the whole budget: refused for good */
    h.too_big = 1;
    CHECK_EQ_INT(sw_bt_wire_feed(&w, msg.data, first, log_ev, &h), SW_ETOOBIG);
    CHECK_MSG(strstr(w.err, "budget"), "err: %s", w.err);
    sw_bt_wire_free(&w);
    free(payload);
    sw_buf_free(&msg);
    sw_buf_free(&s);
    sw_buf_free(&h.l.text);
    sw_buf_free(&h.l.piece);
}

static void test_allowed_fast(void)
{
    /* BEP 6 example: 7 pieces of 1313 for 80.4.4.200 and info-hash 0xaa * 20. */
    uint8_t ih[20];
    memset(ih, 0xaa, 20);
    uint32_t out[9];
    uint32_t ip = (80u << 24) | (4u << 16) | (4u << 8) | 200u;
    CHECK_EQ_INT(sw_bt_allowed_fast_set(ih, ip, 1313, 7, out), 7);
    const uint32_t want[7] = { 1059, 431, 808, 1217, 287, 376, 1188 };
    for (int i = 0; i < 7; i++) CHECK_EQ_INT(out[i], want[i]);
    CHECK_EQ_INT(sw_bt_allowed_fast_set(ih, ip, 1313, 9, out), 9);
    CHECK_EQ_INT(out[7], 353);
    CHECK_EQ_INT(out[8], 508);
}

/* ------------------------------------------------------------------ MSE (receiving side) */

static uint8_t mse_ih[20];

static const uint8_t *mse_lookup_test(void *ud, const uint8_t req2[20])
{
    (void)ud;
    uint8_t buf[24], h[20];
    memcpy(buf, "req2", 4);
    memcpy(buf + 4, mse_ih, 20);
    sw_sha1(buf, 24, h);
    return memcmp(h, req2, 20) ? NULL : mse_ih;
}

/* Runs both ends: A (test helper) and B (sw__mse_feed), B fed in chunks of `chunk`. */
static int mse_run(size_t chunk, uint32_t provide, const uint8_t *skey, struct sw_buf *plain_out, int *select_out)
{
    struct sw_buf a1 = { 0 }, a3 = { 0 }, reply = { 0 };
    struct sw__mse_a *a = sw__mse_a_new(&a1);
    struct sw__mse *b = sw__mse_new();
    int rc = 0;
    for (size_t off = 0; off < a1.len && rc == 0; off += chunk)
        rc = sw__mse_feed(b, a1.data + off, SW_MIN(chunk, a1.len - off), &reply, plain_out, mse_lookup_test, NULL);
    CHECK_EQ_INT(rc, 0);
    CHECK(reply.len >= 96);
    uint8_t hs[68];
    memset(hs, 0, sizeof hs);
    hs[0] = 19;
    memcpy(hs + 1, "BitTorrent protocol", 19);
    CHECK_EQ_INT(sw__mse_a_step3(a, reply.data, skey, hs, sizeof hs, provide, &a3), 0);
    sw_buf_append(&a3, "\x00\x00\x00\x00", 4); /* a keep-alive after IA: plaintext */
    size_t yb_pad = reply.len;
    for (size_t off = 0; off < a3.len && rc >= 0; off += chunk)
        rc = sw__mse_feed(b, a3.data + off, SW_MIN(chunk, a3.len - off), &reply, plain_out, mse_lookup_test, NULL);
    if (rc == 1) {
        size_t used = 0;
        /* B's step 4 follows Yb + PadB: A finds it by trial decryption. */
        *select_out = sw__mse_a_step4(a, reply.data + 96, reply.len - 96, &used);
        CHECK(96 + used == reply.len);
        CHECK(yb_pad <= reply.len);
    }
    sw__mse_free(b);
    sw__mse_a_free(a);
    sw_buf_free(&a1);
    sw_buf_free(&a3);
    sw_buf_free(&reply);
    return rc;
}

static void test_mse(void)
{
    memset(mse_ih, 0x42, 20);
    static const size_t chunks[] = { 1, 7, 100, 100000 };
    for (size_t i = 0; i < SW_ARRAY_LEN(chunks); i++) {
        struct sw_buf plain = { 0 };
        int sel = -1;
        CHECK_EQ_INT(mse_run(chunks[i], 0x03, mse_ih, &plain, &sel), 1);
        CHECK_EQ_INT(sel, 1); /* plaintext selected */
        CHECK_EQ_U64(plain.len, 68 + 4);
        CHECK(plain.len >= 20 && plain.data[0] == 19 && !memcmp(plain.data + 1, "BitTorrent protocol", 19));
        sw_buf_free(&plain);
    }
    struct sw_buf plain = { 0 };
    int sel = -1;
    CHECK_EQ_INT(mse_run(1000, 0x02, mse_ih, &plain, &sel), SW_EUNSUPPORTED); /* RC4-only peers */
    uint8_t other[20];
    memset(other, 0x43, 20);
    CHECK_EQ_INT(mse_run(1000, 0x03, other, &plain, &sel), SW_ENOTFOUND); /* not our torrent */
    sw_buf_free(&plain);
    /* Garbage: no sync hash within 512 bytes of padding. */
    struct sw__mse *b = sw__mse_new();
    struct sw_buf reply = { 0 };
    uint8_t junk[2048];
    memset(junk, 7, sizeof junk);
    CHECK(sw__mse_feed(b, junk, sizeof junk, &reply, &plain, mse_lookup_test, NULL) < 0);
    sw__mse_free(b);
    sw_buf_free(&reply);
    sw_buf_free(&plain);
}

/* ------------------------------------------------------------------ picker */

static void test_picker(void)
{
    /* 8 pieces of 64 KiB (4 blocks each), the last 20000 bytes (2 blocks). */
    uint64_t total = 7 * 65536 + 20000;
    struct sw_bt_picker *pk = sw_bt_picker_new(8, 65536, total);
    CHECK(pk != NULL);
    CHECK_EQ_INT(sw_bt_picker_blocks_in_piece(pk, 7), 2);
    for (uint32_t i = 0; i < 8; i++) sw_bt_picker_set_wanted(pk, i, i != 2); /* piece 2: another file */
    CHECK_EQ_INT(sw_bt_picker_left(pk), 7);
    /* availability: piece 5 is the rarest (1 peer), others 3 */
    for (uint32_t i = 0; i < 8; i++)
        for (int k = 0; k < (i == 5 ? 1 : 3); k++) sw_bt_picker_inc(pk, i);
    struct sw_bt_block b[64];
    uint32_t n = sw_bt_picker_pick(pk, NULL, NULL, 0, NULL, NULL, b, 4);
    CHECK_EQ_INT(n, 4);
    for (uint32_t i = 0; i < n; i++) CHECK_EQ_INT(b[i].piece, 5); /* rarest first */
    CHECK_EQ_INT(b[3].begin, 3 * 16384);
    /* Partial first: after aborting one block of piece 5, it is picked again first. */
    sw_bt_picker_abort(pk, 5, 16384);
    n = sw_bt_picker_pick(pk, NULL, NULL, 0, NULL, NULL, b, 1);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(b[0].piece, 5);
    CHECK_EQ_INT(b[0].begin, 16384);
    /* A peer holding only pieces 2 and 7: piece 2 is unwanted, so only 7. */
    uint8_t bits[1] = { 0x21 }; /* pieces 2 and 7 */
    n = sw_bt_picker_pick(pk, bits, NULL, 0, NULL, NULL, b, 64);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(b[0].piece, 7);
    CHECK_EQ_INT(b[1].len, 20000 - 16384);
    /* Receive all of piece 5 -> full; have -> left drops. */
    for (uint32_t k = 0; k < 4; k++) CHECK_EQ_INT(sw_bt_picker_received(pk, 5, k * 16384), 1);
    CHECK_EQ_INT(sw_bt_picker_received(pk, 5, 0), 0); /* duplicate */
    CHECK(sw_bt_picker_piece_full(pk, 5));
    sw_bt_picker_set_have(pk, 5);
    CHECK_EQ_INT(sw_bt_picker_left(pk), 6);
    /* Take everything else: then no endgame while fresh blocks remain... */
    n = sw_bt_picker_pick(pk, NULL, NULL, 0, NULL, NULL, b, 64);
    CHECK_EQ_INT(n, 5 * 4); /* pieces 0,1,3,4,6 */
    CHECK(!sw_bt_picker_in_endgame(pk));
    /* ...and now every block is requested: endgame hands out duplicates. */
    n = sw_bt_picker_pick(pk, NULL, NULL, 0, NULL, NULL, b, 64);
    CHECK(n > 0);
    CHECK(sw_bt_picker_in_endgame(pk));
    /* Hash failure resets a piece. */
    for (uint32_t k = 0; k < 4; k++) sw_bt_picker_received(pk, 0, k * 16384);
    CHECK(sw_bt_picker_piece_full(pk, 0));
    sw_bt_picker_reset_piece(pk, 0);
    CHECK(!sw_bt_picker_piece_full(pk, 0));
    /* Whole-piece picks (web seeds) take untouched pieces only: none left here. */
    CHECK_EQ_INT(sw_bt_picker_pick(pk, NULL, NULL, 1, NULL, NULL, b, 64), 4); /* piece 0 again, whole */
    CHECK_EQ_INT(b[0].piece, 0);
    sw_bt_picker_free(pk);
}

/* ------------------------------------------------------------------ storage */

static uint8_t *piece_data(const char *dir, const struct sw_bt_metainfo *mi, uint32_t piece)
{
    uint32_t psz = sw_bt_piece_size(mi, piece);
    uint8_t *buf = calloc(1, psz);
    struct sw_bt_span sp[8];
    uint32_t n = sw_bt_piece_spans(mi, piece, 0, psz, sp, 8);
    for (uint32_t i = 0; i < n; i++) {
        if (mi->files[sp[i].file].pad) continue;
        char *p = sw_path_join(dir, mi->files[sp[i].file].path);
        int fd = open(p, O_RDONLY);
        CHECK(pread(fd, buf + sp[i].piece_offset, sp[i].len, (off_t)sp[i].file_offset) == (ssize_t)sp[i].len);
        close(fd);
        free(p);
    }
    return buf;
}

/* The storage takes a verdict hashed elsewhere (the node's worker): bad pieces dropped and
 * the name back to .part; all good → final again; a vanished file forgotten. */
static void test_storage_apply_check(void)
{
    char src[512], err[256] = "";
    snprintf(src, sizeof src, "%s/ac-src", tmp);
    struct sw_bt_metainfo mi;
    make_torrent(src, &mi, 32768);
    struct sw_bt_storage *st;
    struct sw_bt_storage_opts so = { .dir = src, .trust_complete = 1 };
    CHECK_EQ_INT(sw_bt_storage_open(&mi, &so, &st, err, sizeof err), 0);
    CHECK(sw_bt_storage_file_complete(st, 2)); /* shard-1: pieces 4, 5 */
    uint8_t verdict[2] = { 1, 0 };
    CHECK_EQ_INT(sw_bt_storage_apply_check(st, 2, verdict, err, sizeof err), 0);
    CHECK(sw_bt_storage_has_piece(st, 4));
    CHECK(!sw_bt_storage_has_piece(st, 5));
    CHECK(!sw_bt_storage_file_complete(st, 2));
    CHECK(exists(src, "shard-1.gguf.part") && !exists(src, "shard-1.gguf"));
    verdict[1] = 1;
    CHECK(sw_bt_storage_apply_check(st, 2, verdict, err, sizeof err) >= 0);
    CHECK(sw_bt_storage_file_complete(st, 2));
    CHECK(exists(src, "shard-1.gguf") && !exists(src, "shard-1.gguf.part"));
    char *p = sw_path_join(src, "shard-1.gguf");
    CHECK_EQ_INT(unlink(p), 0);
    free(p);
    CHECK_EQ_INT(sw_bt_storage_apply_check(st, 2, verdict, err, sizeof err), 0);
    CHECK(!sw_bt_storage_has_piece(st, 4) && !sw_bt_storage_has_piece(st, 5));
    CHECK(!sw_bt_storage_file_complete(st, 2));
    CHECK(sw_bt_storage_has_piece(st, 0)); /* the other files are untouched */
    sw_bt_storage_close(st);
    sw_bt_metainfo_free(&mi);
}

static void test_storage(void)
{
    char src[512], dst[512], err[256] = "";
    snprintf(src, sizeof src, "%s/st-src", tmp);
    snprintf(dst, sizeof dst, "%s/st-dst", tmp);
    struct sw_bt_metainfo mi;
    make_torrent(src, &mi, 32768);
    sw_mkdir_p(dst);
    struct sw_bt_storage *st;
    struct sw_bt_storage_opts o = { .dir = dst };
    CHECK_EQ_INT(sw_bt_storage_open(&mi, &o, &st, err, sizeof err), 0);
    CHECK(!sw_bt_storage_has_piece(st, 0));
    /* A corrupt piece is refused and nothing is written (not even a .part file). */
    uint8_t *p4 = piece_data(src, &mi, 4);
    p4[100] ^= 1;
    CHECK_EQ_INT(sw_bt_storage_verify_write(st, 4, p4, err, sizeof err), SW_ECORRUPT);
    CHECK(!exists(dst, "shard-1.gguf.part"));
    p4[100] ^= 1;
    /* Good pieces of shard-1 (pieces 4, 5). */
    CHECK_EQ_INT(sw_bt_storage_verify_write(st, 4, p4, err, sizeof err), 0);
    uint32_t done[4];
    CHECK_EQ_INT(sw_bt_storage_mark_have(st, 4, done, 4), 0);
    CHECK(exists(dst, "shard-1.gguf.part"));
    CHECK(exists(dst, "shard-1.gguf.resume"));
    CHECK(!exists(dst, "shard-1.gguf")); /* not complete: no final name */
    /* A held piece is served from the map (zero copy). */
    const uint8_t *rd = sw_bt_storage_read(st, 4, 16384, 16384, NULL);
    CHECK(rd != NULL && !memcmp(rd, p4 + 16384, 16384));
    free(p4);
    /* Shard-0's first piece too, then close: resume keeps both. */
    uint8_t *p0 = piece_data(src, &mi, 0);
    CHECK_EQ_INT(sw_bt_storage_verify_write(st, 0, p0, err, sizeof err), 0);
    sw_bt_storage_mark_have(st, 0, done, 4);
    free(p0);
    sw_bt_storage_close(st);
    CHECK_EQ_INT(sw_bt_storage_open(&mi, &o, &st, err, sizeof err), 0);
    CHECK(sw_bt_storage_has_piece(st, 0));
    CHECK(sw_bt_storage_has_piece(st, 4));
    CHECK(!sw_bt_storage_has_piece(st, 5));
    /* Finish shard-1: mark_have reports it; finalize renames. */
    uint8_t *p5 = piece_data(src, &mi, 5);
    CHECK_EQ_INT(sw_bt_storage_verify_write(st, 5, p5, err, sizeof err), 0);
    free(p5);
    CHECK_EQ_INT(sw_bt_storage_mark_have(st, 5, done, 4), 1);
    CHECK_EQ_INT(done[0], 2);
    CHECK_EQ_INT(sw_bt_storage_finalize_file(st, 2, err, sizeof err), 0);
    CHECK(exists(dst, "shard-1.gguf"));
    CHECK(!exists(dst, "shard-1.gguf.part"));
    CHECK(sw_bt_storage_file_complete(st, 2));
    sw_bt_storage_close(st);
    /* Corrupt the verified piece 0 in the .part behind the resume data's back: a .part file
     * is always rehashed at open (no identity binds it while it is written), so piece 0 is
     * dropped; the final shard-1 is still exactly the file its resume data sealed. */
    char *part = sw_path_join(dst, "shard-0.gguf.part");
    int fd = open(part, O_RDWR);
    uint8_t junk = 0x5a;
    CHECK(pwrite(fd, &junk, 1, 10) == 1);
    close(fd);
    free(part);
    CHECK_EQ_INT(sw_bt_storage_open(&mi, &o, &st, err, sizeof err), 0);
    CHECK(!sw_bt_storage_has_piece(st, 0));
    CHECK(sw_bt_storage_file_complete(st, 2));
    sw_bt_storage_close(st);
    /* The final file changed behind its resume data (one byte of piece 5, size and name
     * kept): its mtime/ctime no longer match, so it is rehashed and piece 5 dropped. */
    char *fin = sw_path_join(dst, "shard-1.gguf");
    fd = open(fin, O_RDWR);
    CHECK(pwrite(fd, &junk, 1, 32768 + 5) == 1);
    close(fd);
    CHECK_EQ_INT(sw_bt_storage_open(&mi, &o, &st, err, sizeof err), 0);
    CHECK(sw_bt_storage_has_piece(st, 4));
    CHECK(!sw_bt_storage_has_piece(st, 5));
    CHECK(!sw_bt_storage_file_complete(st, 2));
    CHECK(exists(dst, "shard-1.gguf.part")); /* no longer under its final name */
    sw_bt_storage_close(st);
    free(fin); /* put the byte back (under the .part name) */
    fin = sw_path_join(dst, "shard-1.gguf.part");
    fd = open(fin, O_RDWR);
    uint8_t *p5b = piece_data(src, &mi, 5);
    CHECK(pwrite(fd, p5b + 5, 1, 32768 + 5) == 1);
    close(fd);
    free(p5b);
    free(fin);
    o.verify_all = 1;
    CHECK_EQ_INT(sw_bt_storage_open(&mi, &o, &st, err, sizeof err), 0);
    CHECK(!sw_bt_storage_has_piece(st, 0));
    CHECK(sw_bt_storage_has_piece(st, 4));
    sw_bt_storage_close(st);
    /* A seeder over the source folder: complete files, trusted or hashed. */
    struct sw_bt_storage_opts so = { .dir = src };
    CHECK_EQ_INT(sw_bt_storage_open(&mi, &so, &st, err, sizeof err), 0);
    for (uint32_t i = 0; i < mi.n_pieces; i++) CHECK(sw_bt_storage_has_piece(st, i));
    /* Pad bytes read as zeros when a block crosses into the pad. */
    uint8_t scratch[32768];
    const uint8_t *r3 = sw_bt_storage_read(st, 3, 0, 32768, scratch);
    CHECK(r3 == scratch);
    CHECK_EQ_INT(r3[32767], 0);
    /* A complete, seeded file corrupted on disk: a recheck drops the bad piece, takes the
     * final name away, and keeps the good piece. */
    char *f1 = sw_path_join(src, "shard-1.gguf");
    int fd1 = open(f1, O_RDWR);
    uint8_t bad = 0xa5, orig = 0;
    CHECK(pread(fd1, &orig, 1, 40000) == 1);
    CHECK(pwrite(fd1, &bad, 1, 40000) == 1);
    CHECK(sw_bt_storage_file_complete(st, 2));
    CHECK(sw_bt_storage_check_file(st, 2, err, sizeof err) >= 0);
    CHECK(sw_bt_storage_has_piece(st, 4));
    CHECK(!sw_bt_storage_has_piece(st, 5));
    CHECK(!sw_bt_storage_file_complete(st, 2));
    CHECK(!exists(src, "shard-1.gguf") && exists(src, "shard-1.gguf.part"));
    /* repair it (as a download would) and recheck: complete again under the final name */
    char *p1 = sw_path_join(src, "shard-1.gguf.part");
    int fdp = open(p1, O_RDWR);
    CHECK(pwrite(fdp, &orig, 1, 40000) == 1);
    close(fdp);
    close(fd1);
    CHECK_EQ_INT(sw_bt_storage_check_file(st, 2, err, sizeof err), 1);
    CHECK(sw_bt_storage_file_complete(st, 2));
    CHECK(exists(src, "shard-1.gguf"));
    free(p1);
    free(f1);
    sw_bt_storage_close(st);
    /* A final-named file with a bad piece is not complete: renamed back to .part. */
    char *f2 = sw_path_join(src, "shard-2.gguf");
    fd = open(f2, O_RDWR);
    CHECK(pwrite(fd, &junk, 1, 0) == 1);
    close(fd);
    free(f2);
    so.verify_all = 1;
    CHECK_EQ_INT(sw_bt_storage_open(&mi, &so, &st, err, sizeof err), 0);
    CHECK(!sw_bt_storage_has_piece(st, 6));
    CHECK(!sw_bt_storage_file_complete(st, 3));
    CHECK(!exists(src, "shard-2.gguf"));
    CHECK(exists(src, "shard-2.gguf.part"));
    sw_bt_storage_close(st);
    sw_bt_metainfo_free(&mi);
}

/* ------------------------------------------------------------------ sessions on one loop */

struct sess_ctx {
    int complete;
    int metadata;
    uint16_t port;
    int ext_connected, ext_hs, ext_msgs;
    size_t ext_bytes;
    int ext_ok;
    int saw_extra_key;
    int echo;
    int measure;
    uint64_t lat_sum, lat_max, lat_n;
    struct sw_bt_peer *ext_peer;
};

static void on_ev(void *ud, const struct sw_bt_event *ev)
{
    struct sess_ctx *c = ud;
    if (ev->type == SW_BT_EV_TORRENT_COMPLETE) c->complete = 1;
    if (ev->type == SW_BT_EV_METADATA) c->metadata = 1;
    if (ev->type == SW_BT_EV_LISTENING) c->port = ev->port;
}

static void x_connected(void *ud, struct sw_bt_peer *p)
{
    struct sess_ctx *c = ud;
    c->ext_connected++;
    CHECK(sw_bt_peer_id(p) != NULL);
}

static void x_handshake(void *ud, struct sw_bt_peer *p, const uint8_t *dict, size_t len)
{
    struct sess_ctx *c = ud;
    c->ext_hs++;
    if (memmem(dict, len, "7:sw_test", 9)) c->saw_extra_key = 1;
    if (sw_bt_peer_has_ext(p)) c->ext_peer = p;
}

static void x_message(void *ud, struct sw_bt_peer *p, const uint8_t *payload, size_t len)
{
    struct sess_ctx *c = ud;
    if (c->echo) { sw_bt_peer_send_ext(p, payload, len); c->ext_msgs++; return; }
    if (c->measure && len == 8) {
        uint64_t sent;
        memcpy(&sent, payload, 8);
        uint64_t d = sw_time_us() - sent;
        c->lat_sum += d;
        c->lat_n++;
        if (d > c->lat_max) c->lat_max = d;
        return;
    }
    c->ext_msgs++;
    c->ext_bytes += len;
    int ok = 1;
    for (size_t i = 0; i < len; i++) ok &= payload[i] == (uint8_t)(i * 13 + len);
    c->ext_ok = ok;
}

static void x_closed(void *ud, struct sw_bt_peer *p, int reason)
{
    (void)ud;
    (void)p;
    (void)reason;
}

static void run_until(uv_loop_t *loop, int *flag, int ms)
{
    uint64_t end = sw_time_ms() + (uint64_t)ms;
    while (!*flag && sw_time_ms() < end) uv_run(loop, UV_RUN_NOWAIT), usleep(200);
}

/* The three shard files of a fake split are identical in src and dst (SHA-256). */
static void check_same_shards(const char *src, const char *dst)
{
    static const char *names[] = { "shard-0.gguf", "shard-1.gguf", "shard-2.gguf" };
    for (int i = 0; i < 3; i++) {
        char *a = sw_path_join(src, names[i]), *b = sw_path_join(dst, names[i]);
        uint8_t ha[32] = { 0 }, hb[32] = { 1 };
        sw_sha256_file(a, ha);
        sw_sha256_file(b, hb);
        CHECK_MSG(!memcmp(ha, hb, 32), "%s differs", names[i]);
        free(a);
        free(b);
    }
}

static void test_sessions(int magnet)
{
    char src[512], dst[512], err[256] = "";
    snprintf(src, sizeof src, "%s/ss-src%d", tmp, magnet);
    snprintf(dst, sizeof dst, "%s/ss-dst%d", tmp, magnet);
    struct sw_bt_metainfo mi;
    make_torrent(src, &mi, 32768);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sess_ctx cs = { 0 }, cl = { 0 };
    struct sw_bt_session *seed, *leech;
    struct sw_bt_session_opts os = { .listen_host = "127.0.0.1", .on_event = on_ev, .ud = &cs };
    struct sw_bt_session_opts ol = { .listen_host = "127.0.0.1", .on_event = on_ev, .ud = &cl };
    CHECK_EQ_INT(sw_bt_session_new(&loop, &os, &seed, err, sizeof err), 0);
    CHECK_EQ_INT(sw_bt_session_new(&loop, &ol, &leech, err, sizeof err), 0);
    CHECK(cs.port != 0 && cs.port == sw_bt_session_port(seed));
    struct sw_bt_ext_ops xs = { .name = "sw_test", .on_peer_connected = x_connected, .on_handshake = x_handshake,
                                .on_message = x_message, .on_peer_closed = x_closed, .ud = &cs };
    struct sw_bt_ext_ops xl = xs;
    xl.ud = &cl;
    CHECK_EQ_INT(sw_bt_session_register_ext(seed, &xs), 0);
    CHECK_EQ_INT(sw_bt_session_register_ext(leech, &xl), 0);
    CHECK_EQ_INT(sw_bt_session_set_handshake_extra(seed, "m", (const uint8_t *)"i1e", 3), SW_EINVAL);
    CHECK_EQ_INT(sw_bt_session_set_handshake_extra(seed, "sw_test", (const uint8_t *)"d3:capi7ee", 10), 0);
    struct sw_bt_torrent *ts, *tl;
    struct sw_bt_torrent_opts tos = { .dir = src, .trust_complete = 1, .seed_only = 1 };
    struct sw_bt_torrent_opts tol = { .dir = dst, .want_all = 1 };
    CHECK_EQ_INT(sw_bt_torrent_add(seed, &mi, &tos, &ts, err, sizeof err), 0);
    if (magnet) {
        struct sw_bt_magnet m = { 0 };
        memcpy(m.info_hash, mi.info_hash, 20);
        CHECK_EQ_INT(sw_bt_torrent_add_magnet(leech, &m, &tol, &tl, err, sizeof err), 0);
        CHECK(sw_bt_torrent_metainfo(tl) == NULL);
    } else {
        CHECK_EQ_INT(sw_bt_torrent_add(leech, &mi, &tol, &tl, err, sizeof err), 0);
    }
    struct sw_bt_peer *p = NULL;
    CHECK_EQ_INT(sw_bt_session_connect(tl, "127.0.0.1", cs.port, &p), 0);
    CHECK(p != NULL);
    run_until(&loop, &cl.complete, 10000);
    CHECK_MSG(cl.complete, "leecher did not complete");
    if (magnet) CHECK(cl.metadata);
    check_same_shards(src, dst);
    /* The extension hook: both sides connected, saw each other's handshake (with the
     * seeder's extra key), and a 3 MiB priority message crosses intact. */
    CHECK(cs.ext_connected >= 1 && cl.ext_connected >= 1);
    CHECK(cl.saw_extra_key);
    CHECK(cl.ext_peer != NULL);
    if (cl.ext_peer) {
        size_t n = 3u << 20;
        uint8_t *msg = malloc(n);
        for (size_t i = 0; i < n; i++) msg[i] = (uint8_t)(i * 13 + n);
        CHECK_EQ_INT(sw_bt_peer_send_ext2(cl.ext_peer, msg, 100, msg + 100, n - 100), 0);
        free(msg);
        int got = 0;
        uint64_t end = sw_time_ms() + 5000;
        while (!got && sw_time_ms() < end) { uv_run(&loop, UV_RUN_NOWAIT); got = cs.ext_msgs > 0; usleep(100); }
        CHECK_EQ_INT(cs.ext_msgs, 1);
        CHECK_EQ_U64(cs.ext_bytes, n);
        CHECK(cs.ext_ok);
        /* An update of the handshake key reaches the peer. */
        int before = cl.ext_hs;
        CHECK_EQ_INT(sw_bt_session_set_handshake_extra(seed, "sw_test", (const uint8_t *)"d3:capi8ee", 10), 0);
        end = sw_time_ms() + 3000;
        while (cl.ext_hs == before && sw_time_ms() < end) { uv_run(&loop, UV_RUN_NOWAIT); usleep(100); }
        CHECK(cl.ext_hs > before);
        /* Latency of the extension path: ping-pong of 64-byte messages on loopback (two
         * sessions on one loop, so each round trip is 2 hops, 4 syscalls, 2 loop turns). */
        cs.echo = 1;
        uint8_t ping[64] = { 0 };
        int rounds = 2000;
        uint64_t t0 = sw_time_us();
        for (int i = 0; i < rounds; i++) {
            int want = cl.ext_msgs + 1;
            ping[0] = (uint8_t)i;
            if (sw_bt_peer_send_ext(cl.ext_peer, ping, sizeof ping)) break;
            while (cl.ext_msgs < want && sw_time_us() - t0 < 10000000) uv_run(&loop, UV_RUN_NOWAIT);
        }
        double rtt = (double)(sw_time_us() - t0) / rounds;
        fprintf(stderr, "extension message round trip on loopback: %.1f us (%.1f us per hop)\n", rtt, rtt / 2);
        CHECK_MSG(rtt < 5000, "round trip %.1f us", rtt);
        cs.echo = 0;
    }
    sw_bt_session_close(seed);
    sw_bt_session_close(leech);
    uint64_t end = sw_time_ms() + 5000;
    while ((!sw_bt_session_closed(seed) || !sw_bt_session_closed(leech)) && sw_time_ms() < end) uv_run(&loop, UV_RUN_NOWAIT);
    CHECK(sw_bt_session_closed(seed) && sw_bt_session_closed(leech));
    sw_bt_session_free(seed);
    sw_bt_session_free(leech);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    sw_bt_metainfo_free(&mi);
}

static void test_session_transfer(void) { test_sessions(0); }

/* Priority: extension messages from a seeder to a leecher while the seeder streams piece
 * data to that leecher (32 MiB) arrive without waiting for the bulk transfer. */
static void test_priority_under_load(void)
{
    char src[512], dst[512], err[256] = "";
    snprintf(src, sizeof src, "%s/pl-src", tmp);
    snprintf(dst, sizeof dst, "%s/pl-dst", tmp);
    sw_mkdir_p(src);
    write_file(src, "shard-0.gguf", 32u << 20, 9);
    struct sw_bt_create_file files[1] = { { "shard-0.gguf", 0, 0, 0, 1, NULL } };
    struct sw_bt_create_opts co = { .dir = src, .name = "pl", .files = files, .n_files = 1, .architecture = "llama", .n_layers = 2 };
    struct sw_bt_metainfo mi;
    CHECK_EQ_INT(sw_bt_metainfo_create(&co, &mi, err, sizeof err), 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sess_ctx cs = { 0 }, cl = { 0 };
    struct sw_bt_session *seed, *leech;
    struct sw_bt_session_opts os = { .listen_host = "127.0.0.1", .on_event = on_ev, .ud = &cs };
    struct sw_bt_session_opts ol = { .listen_host = "127.0.0.1", .on_event = on_ev, .ud = &cl };
    CHECK_EQ_INT(sw_bt_session_new(&loop, &os, &seed, err, sizeof err), 0);
    CHECK_EQ_INT(sw_bt_session_new(&loop, &ol, &leech, err, sizeof err), 0);
    struct sw_bt_ext_ops xs = { .name = "sw_test", .on_peer_connected = x_connected, .on_handshake = x_handshake,
                                .on_message = x_message, .on_peer_closed = x_closed, .ud = &cs };
    struct sw_bt_ext_ops xl = xs;
    xl.ud = &cl;
    sw_bt_session_register_ext(seed, &xs);
    sw_bt_session_register_ext(leech, &xl);
    cl.measure = 1;
    struct sw_bt_torrent *ts, *tl;
    struct sw_bt_torrent_opts tos = { .dir = src, .trust_complete = 1, .seed_only = 1 };
    struct sw_bt_torrent_opts tol = { .dir = dst, .want_all = 1 };
    CHECK_EQ_INT(sw_bt_torrent_add(seed, &mi, &tos, &ts, err, sizeof err), 0);
    CHECK_EQ_INT(sw_bt_torrent_add(leech, &mi, &tol, &tl, err, sizeof err), 0);
    CHECK_EQ_INT(sw_bt_session_connect(tl, "127.0.0.1", cs.port, NULL), 0);
    uint64_t end = sw_time_ms() + 20000, last = 0;
    uint64_t sent = 0;
    while (!cl.complete && sw_time_ms() < end) {
        uv_run(&loop, UV_RUN_NOWAIT);
        uint64_t now = sw_time_us();
        if (cs.ext_peer && now - last > 1000) {
            last = now;
            if (sw_bt_peer_send_ext(cs.ext_peer, &now, 8) == 0) sent++;
        }
    }
    CHECK(cl.complete);
    end = sw_time_ms() + 2000;
    while (cl.lat_n < sent && sw_time_ms() < end) uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_EQ_U64(cl.lat_n, sent);
    if (cl.lat_n)
        fprintf(stderr, "priority messages during a 32 MiB transfer: %llu sent, mean %.0f us, max %llu us\n",
                (unsigned long long)cl.lat_n, (double)cl.lat_sum / (double)cl.lat_n, (unsigned long long)cl.lat_max);
    sw_bt_session_close(seed);
    sw_bt_session_close(leech);
    end = sw_time_ms() + 5000;
    while ((!sw_bt_session_closed(seed) || !sw_bt_session_closed(leech)) && sw_time_ms() < end) uv_run(&loop, UV_RUN_NOWAIT);
    sw_bt_session_free(seed);
    sw_bt_session_free(leech);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    sw_bt_metainfo_free(&mi);
}

/* Initial seeding: one seed and three leechers on one loop (4 MiB, 256 pieces of 16 KiB,
 * the leechers connected to each other too). While some piece has never left the seed it
 * uploads no second copy of any piece (it rejects those requests, BEP 6, and the leechers
 * fetch them from each other); every leecher completes with the right bytes. */
static void test_initial_seeding(void)
{
    enum { NL = 3 };
    char src[512], dst[NL][512], err[256] = "";
    snprintf(src, sizeof src, "%s/is-src", tmp);
    sw_mkdir_p(src);
    write_file(src, "blob.bin", 4u << 20, 7);
    struct sw_bt_create_file files[1] = { { "blob.bin", 0, -1, 0, 0, NULL } };
    struct sw_bt_create_opts co = { .dir = src, .name = "is", .files = files, .n_files = 1, .piece_length = 16384 };
    struct sw_bt_metainfo mi;
    int rc = sw_bt_metainfo_create(&co, &mi, err, sizeof err);
    CHECK_MSG(rc == 0, "create: %d %s", rc, err);
    if (rc) return;
    CHECK_EQ_INT((int)mi.n_pieces, 256);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sess_ctx cs = { 0 }, cl[NL];
    memset(cl, 0, sizeof cl);
    struct sw_bt_session *seed, *ls[NL];
    struct sw_bt_torrent *ts, *tl[NL];
    struct sw_bt_session_opts os = { .listen_host = "127.0.0.1", .on_event = on_ev, .ud = &cs };
    CHECK_EQ_INT(sw_bt_session_new(&loop, &os, &seed, err, sizeof err), 0);
    struct sw_bt_torrent_opts tos = { .dir = src, .trust_complete = 1, .seed_only = 1 };
    CHECK_EQ_INT(sw_bt_torrent_add(seed, &mi, &tos, &ts, err, sizeof err), 0);
    for (int i = 0; i < NL; i++) {
        snprintf(dst[i], sizeof dst[i], "%s/is-dst%d", tmp, i);
        struct sw_bt_session_opts ol = { .listen_host = "127.0.0.1", .on_event = on_ev, .ud = &cl[i] };
        CHECK_EQ_INT(sw_bt_session_new(&loop, &ol, &ls[i], err, sizeof err), 0);
        struct sw_bt_torrent_opts tol = { .dir = dst[i], .want_all = 1 };
        CHECK_EQ_INT(sw_bt_torrent_add(ls[i], &mi, &tol, &tl[i], err, sizeof err), 0);
    }
    for (int i = 0; i < NL; i++) {
        CHECK_EQ_INT(sw_bt_torrent_add_peer(tl[i], "127.0.0.1", cs.port), 0);
        for (int k = 0; k < i; k++) CHECK_EQ_INT(sw_bt_torrent_add_peer(tl[i], "127.0.0.1", cl[k].port), 0);
    }
    int all = 0;
    uint64_t t0 = sw_time_ms(), end = t0 + 30000;
    while (!all && sw_time_ms() < end) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(100);
        all = 1;
        for (int i = 0; i < NL; i++) all &= cl[i].complete;
    }
    CHECK_MSG(all, "leechers did not complete (%d %d %d)", cl[0].complete, cl[1].complete, cl[2].complete);
    struct sw_bt_torrent_stats st;
    sw_bt_torrent_stats(ts, &st);
    fprintf(stderr, "initial seeding: 3 leechers done in %llu ms; seed uploaded %llu bytes (%.2fx), "
            "%u pieces sent once, %llu bytes of second copies before all sent once\n",
            (unsigned long long)(sw_time_ms() - t0), (unsigned long long)st.uploaded,
            (double)st.uploaded / (double)mi.total_length, st.pieces_sent_once,
            (unsigned long long)st.dup_before_all_sent);
    CHECK_EQ_INT((int)st.pieces_sent_once, 256);
    CHECK_EQ_U64(st.dup_before_all_sent, 0);
    CHECK(st.uploaded >= mi.total_length);
    char *a = sw_path_join(src, "blob.bin");
    uint8_t ha[32] = { 0 };
    sw_sha256_file(a, ha);
    free(a);
    for (int i = 0; i < NL; i++) {
        char *b = sw_path_join(dst[i], "blob.bin");
        uint8_t hb[32] = { 1 };
        sw_sha256_file(b, hb);
        CHECK_MSG(!memcmp(ha, hb, 32), "leecher %d: blob.bin differs", i);
        free(b);
    }
    sw_bt_session_close(seed);
    for (int i = 0; i < NL; i++) sw_bt_session_close(ls[i]);
    int closed = 0;
    end = sw_time_ms() + 5000;
    while (!closed && sw_time_ms() < end) {
        uv_run(&loop, UV_RUN_NOWAIT);
        closed = sw_bt_session_closed(seed);
        for (int i = 0; i < NL; i++) closed &= sw_bt_session_closed(ls[i]);
    }
    CHECK(closed);
    sw_bt_session_free(seed);
    for (int i = 0; i < NL; i++) sw_bt_session_free(ls[i]);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    sw_bt_metainfo_free(&mi);
}

/* Web seeds: a fake fetcher (what bt-net's webseed.c does over HTTP) reads whole pieces from
 * the source folder and hands them back through sw_bt_webseed_done. */
struct ws_ctx {
    const char *src;
    const struct sw_bt_metainfo *mi;
    int calls;
};

static int ws_fetch(void *ud, struct sw_bt_torrent *t, const char *url, uint32_t piece)
{
    struct ws_ctx *w = ud;
    w->calls++;
    uint8_t *d = piece_data(w->src, w->mi, piece);
    if (w->calls == 2) d[5] ^= 0xff; /* one bad piece: must be refused and fetched again */
    sw_bt_webseed_done(t, url, piece, d, sw_bt_piece_size(w->mi, piece), 0);
    free(d);
    return 0;
}

static void test_session_webseed(void)
{
    char src[512], dst[512], err[256] = "";
    snprintf(src, sizeof src, "%s/ws-src", tmp);
    snprintf(dst, sizeof dst, "%s/ws-dst", tmp);
    struct sw_bt_metainfo mi;
    make_torrent(src, &mi, 32768);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sess_ctx cl = { 0 };
    struct sw_bt_session *s;
    struct sw_bt_session_opts o = { .no_listen = 1, .on_event = on_ev, .ud = &cl };
    CHECK_EQ_INT(sw_bt_session_new(&loop, &o, &s, err, sizeof err), 0);
    struct ws_ctx w = { src, &mi, 0 };
    struct sw_bt_webseed_ops ops = { .fetch = ws_fetch, .ud = &w };
    CHECK_EQ_INT(sw_bt_session_set_webseed(s, &ops), 0);
    struct sw_bt_torrent *t;
    struct sw_bt_torrent_opts to = { .dir = dst };
    CHECK_EQ_INT(sw_bt_torrent_add(s, &mi, &to, &t, err, sizeof err), 0);
    CHECK_EQ_INT(sw_bt_torrent_want_file(t, 2, 1), 0); /* shard-1 only */
    run_until(&loop, &cl.complete, 10000);
    CHECK_MSG(cl.complete, "web seed download did not complete");
    CHECK(sw_bt_torrent_file_complete(t, 2));
    CHECK(!sw_bt_torrent_file_complete(t, 0));
    CHECK(w.calls >= 3); /* 2 pieces + the one refused */
    struct sw_bt_torrent_stats st;
    sw_bt_torrent_stats(t, &st);
    CHECK_EQ_INT((int)st.webseeds_banned, 0); /* one bad piece does not ban a web seed */
    CHECK(!exists(dst, "shard-0.gguf") && !exists(dst, "shard-0.gguf.part"));
    char *a = sw_path_join(src, "shard-1.gguf"), *b = sw_path_join(dst, "shard-1.gguf");
    uint8_t ha[32] = { 0 }, hb[32] = { 1 };
    sw_sha256_file(a, ha);
    sw_sha256_file(b, hb);
    CHECK_EQ_MEM(ha, hb, 32);
    free(a);
    free(b);
    sw_bt_session_close(s);
    uint64_t end = sw_time_ms() + 5000;
    while (!sw_bt_session_closed(s) && sw_time_ms() < end) uv_run(&loop, UV_RUN_NOWAIT);
    sw_bt_session_free(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    sw_bt_metainfo_free(&mi);
}
static void test_session_magnet(void) { test_sessions(1); }

/* A web seed that serves only corrupt data is banned after 3 pieces fail their SHA-1
 * check (the session asks it for nothing more and tells the fetcher); the pieces are
 * picked again and the download completes from the good web seed. */
struct wsb_ctx {
    const char *src;
    const struct sw_bt_metainfo *mi;
    int bad_calls, good_calls, banned, fetch_after_ban;
};

static int wsb_fetch(void *ud, struct sw_bt_torrent *t, const char *url, uint32_t piece)
{
    struct wsb_ctx *w = ud;
    int bad = strstr(url, "/bad/") != NULL;
    if (bad) w->bad_calls++, w->fetch_after_ban += w->banned;
    else w->good_calls++;
    uint8_t *d = piece_data(w->src, w->mi, piece);
    if (bad) d[piece % 100] ^= 0x5a;
    sw_bt_webseed_done(t, url, piece, d, sw_bt_piece_size(w->mi, piece), 0);
    free(d);
    return 0;
}

static void wsb_banned(void *ud, struct sw_bt_torrent *t, const char *url)
{
    struct wsb_ctx *w = ud;
    (void)t;
    CHECK_MSG(strstr(url, "/bad/") != NULL, "good web seed %s banned", url);
    w->banned++;
}

static void test_session_webseed_ban(void)
{
    char src[512], dst[512], err[256] = "";
    snprintf(src, sizeof src, "%s/wsb-src", tmp);
    snprintf(dst, sizeof dst, "%s/wsb-dst", tmp);
    struct sw_bt_metainfo mi;
    make_torrent(src, &mi, 16384);
    /* The corrupt URL first: the session fills web seeds in url-list order. */
    const char *bad_url = "http://127.0.0.1:3/bad/";
    CHECK_EQ_INT(sw__strv_add(&mi.web_seeds, &mi.n_web_seeds, bad_url, strlen(bad_url)), 0);
    CHECK_EQ_INT((int)mi.n_web_seeds, 2);
    char *tmpu = mi.web_seeds[0];
    mi.web_seeds[0] = mi.web_seeds[1];
    mi.web_seeds[1] = tmpu;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sess_ctx cl = { 0 };
    struct sw_bt_session *s;
    struct sw_bt_session_opts o = { .no_listen = 1, .on_event = on_ev, .ud = &cl };
    CHECK_EQ_INT(sw_bt_session_new(&loop, &o, &s, err, sizeof err), 0);
    struct wsb_ctx w = { src, &mi, 0, 0, 0, 0 };
    struct sw_bt_webseed_ops ops = { .fetch = wsb_fetch, .banned = wsb_banned, .ud = &w };
    CHECK_EQ_INT(sw_bt_session_set_webseed(s, &ops), 0);
    struct sw_bt_torrent *t;
    struct sw_bt_torrent_opts to = { .dir = dst, .want_all = 1 };
    CHECK_EQ_INT(sw_bt_torrent_add(s, &mi, &to, &t, err, sizeof err), 0);
    run_until(&loop, &cl.complete, 10000);
    CHECK_MSG(cl.complete, "download did not complete past a corrupt web seed");
    struct sw_bt_torrent_stats st;
    sw_bt_torrent_stats(t, &st);
    CHECK_EQ_INT((int)st.webseeds_banned, 1);
    CHECK_EQ_INT(w.banned, 1);
    CHECK_MSG(w.bad_calls >= 3, "corrupt web seed asked %d times", w.bad_calls);
    CHECK_EQ_INT(w.fetch_after_ban, 0);
    CHECK(w.good_calls >= 1);
    check_same_shards(src, dst);
    sw_bt_session_close(s);
    uint64_t end = sw_time_ms() + 5000;
    while (!sw_bt_session_closed(s) && sw_time_ms() < end) uv_run(&loop, UV_RUN_NOWAIT);
    sw_bt_session_free(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    sw_bt_metainfo_free(&mi);
}

int main(void)
{
    tmp = sw_test_tmpdir();
    if (!tmp) SW_TEST_SKIP("no temporary folder");
    SW_RUN(test_metainfo_roundtrip);
    SW_RUN(test_unsafe_paths);
    SW_RUN(test_magnet);
    SW_RUN(test_wire_chunks);
    SW_RUN(test_wire_malformed);
    SW_RUN(test_wire_prefix_caps);
    SW_RUN(test_wire_hooks);
    SW_RUN(test_allowed_fast);
    SW_RUN(test_mse);
    SW_RUN(test_picker);
    SW_RUN(test_storage);
    SW_RUN(test_storage_apply_check);
    SW_RUN(test_session_transfer);
    SW_RUN(test_session_magnet);
    SW_RUN(test_session_webseed);
    SW_RUN(test_session_webseed_ban);
    SW_RUN(test_priority_under_load);
    SW_RUN(test_initial_seeding);
    return SW_TEST_DONE();
}
