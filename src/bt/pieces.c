/* pieces.c — pieces once their blocks arrive: assembly buffers, SHA-1 checks on worker
 * threads, smart banning, completion and finalizing, and the web-seed pump.
 * Not for: choosing blocks (picker.c), files (storage.c). */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <string.h>

#include "bt_session_int.h"

/* ------------------------------------------------------------------ piece completion */

struct hash_job {
    uv_work_t req;
    struct sw_bt_torrent *t;
    uint32_t piece;
    uint8_t *buf;
    uint32_t *sender;
    uint32_t ws;               /* assembly.ws */
    int rc;
    char err[256];
};

struct final_job {
    uv_work_t req;
    struct sw_bt_torrent *t;
    uint32_t file;
    int rc;
    char err[256];
};

/* Piece buffers are recycled: a fresh malloc of a piece-sized buffer costs page faults on
 * every piece (measured: the largest kernel cost of the receive path). */
static uint8_t *buf_get(struct sw_bt_torrent *t)
{
    if (t->n_pool) return t->pool[--t->n_pool];
    return malloc(t->mi.piece_length);
}

static void buf_put(struct sw_bt_torrent *t, uint8_t *b)
{
    if (!b) return;
    if (!t->cap_pool) {
        uint32_t cap = (uint32_t)SW_MAX((uint64_t)4, (UINT64_C(64) << 20) / t->mi.piece_length);
        t->pool = calloc(cap, sizeof *t->pool);
        if (t->pool) t->cap_pool = cap;
    }
    if (t->n_pool < t->cap_pool) t->pool[t->n_pool++] = b;
    else free(b);
}


/* Receiving faster than the worker threads hash and write (a loaded machine, a slow disk)
 * would queue a piece buffer per piece: memory without bound, and every buffer past the pool
 * a fresh allocation whose pages fault in while the block is copied (measured: 45-60k page
 * faults per 512 MiB fetched on loopback). So requests pause while the backlog is full. */
int sw__hash_backlog_full(struct sw_bt_torrent *t)
{
    uint64_t max = SW_MAX((uint64_t)HASH_BACKLOG, 4 * (uint64_t)t->mi.piece_length);
    if ((uint64_t)t->n_hash_jobs * t->mi.piece_length < max) return 0;
    t->hash_throttled = 1;
    return 1;
}

static void hash_work(uv_work_t *req)
{
    struct hash_job *j = req->data;
    j->rc = sw_bt_storage_verify_write(j->t->st, j->piece, j->buf, j->err, sizeof j->err);
}

static void ban_peer_uid(struct sw_bt_torrent *t, uint32_t uid, uint32_t piece)
{
    for (struct sw_bt_peer *p = t->s->peers; p; p = p->next) {
        if (p->uid != uid) continue;
        char key[80];
        if (p->got_id) { sw__id_key(p->peer_id, key); sw__add_ban(t->s, key); }
        if (p->outgoing) sw__add_ban(t->s, p->addr_str);
        LOGW("peer %s sent data failing the hash of piece %u: banned", p->addr_str, piece);
        emit_simple(t, p, SW_BT_EV_PEER_BANNED, -1, piece, SW_ECORRUPT, "sent a piece that fails its hash");
        sw__peer_close(p, SW_ECORRUPT, "banned: bad piece data");
        return;
    }
}

int sw__all_wanted_complete(struct sw_bt_torrent *t)
{
    if (!t->has_meta) return 0;
    uint32_t wanted = 0;
    for (uint32_t i = 0; i < t->mi.n_files; i++) {
        if (!t->want_file[i] || t->mi.files[i].pad) continue;
        wanted++;
        if (!sw_bt_storage_file_complete(t->st, i)) return 0;
    }
    return wanted > 0; /* nothing wanted is not "complete" */
}

void sw__check_complete(struct sw_bt_torrent *t)
{
    if (t->complete_reported || !sw__all_wanted_complete(t)) return;
    t->complete_reported = 1;
    /* Done downloading: the spare piece buffers (up to 64 MiB) go back, and so does the
     * heap they and the assemblies grew (glibc keeps freed memory otherwise: a node that
     * fetched its 0.5 GB shard held ~125 MB more anonymous memory than one that had it). */
    for (uint32_t i = 0; i < t->n_pool; i++) free(t->pool[i]);
    t->n_pool = 0;
#ifdef __GLIBC__
    malloc_trim(0);
#endif
    emit_simple(t, NULL, SW_BT_EV_TORRENT_COMPLETE, -1, 0, 0, "every wanted file is complete");
}

static void final_work(uv_work_t *req)
{
    struct final_job *j = req->data;
    j->rc = sw_bt_storage_finalize_file(j->t->st, j->file, j->err, sizeof j->err);
}

static void final_done(uv_work_t *req, int status)
{
    struct final_job *j = req->data;
    struct sw_bt_torrent *t = j->t;
    {
        if (j->rc) {
            emit_simple(t, NULL, SW_BT_EV_ERROR, (int32_t)j->file, 0, j->rc, j->err);
        } else {
            emit_simple(t, NULL, SW_BT_EV_FILE_COMPLETE, (int32_t)j->file, 0, 0, sw_bt_storage_path(t->st, j->file));
            if (!t->closing) sw__check_complete(t);
        }
    }
    free(j);
    (void)status;
    t->jobs--; /* only now: an event above may close the session, which must not free t yet */
    sw__torrent_maybe_free(t);
}

void sw__start_finalize(struct sw_bt_torrent *t, uint32_t file)
{
    struct final_job *j = calloc(1, sizeof *j);
    if (!j) return;
    j->t = t;
    j->file = file;
    j->req.data = j;
    t->jobs++;
    uv_queue_work(t->s->loop, &j->req, final_work, final_done);
}

void sw__broadcast_have(struct sw_bt_torrent *t, uint32_t piece)
{
    for (struct sw_bt_peer *p = t->s->peers; p; p = p->next)
        if (p->t == t && p->state == P_ACTIVE) {
            sw_bt_wire_put_u32(&p->ctrl, SW_BT_HAVE, piece);
            sw__flush(p);
        }
}

static void piece_verified(struct sw_bt_torrent *t, uint32_t piece)
{
    uint32_t done[64];
    int nd = sw_bt_storage_mark_have(t->st, piece, done, 64);
    sw_bt_picker_set_have(t->pk, piece);
    struct sw_bt_span sp[64];
    uint32_t ns = sw_bt_piece_spans(&t->mi, piece, 0, sw_bt_piece_size(&t->mi, piece), sp, 64);
    uint64_t now = sw_time_ms();
    for (uint32_t i = 0; i < ns; i++) {
        t->file_verified[sp[i].file] += sp[i].len;
        t->verified_total += sp[i].len;
        sw_rate_add(&t->file_rate[sp[i].file], now, t->file_verified[sp[i].file]);
    }
    sw_rate_add(&t->rate, now, t->verified_total);
    sw__broadcast_have(t, piece);
    emit_simple(t, NULL, SW_BT_EV_PIECE_VERIFIED, (int32_t)(ns ? sp[0].file : 0), piece, 0, NULL);
    for (int i = 0; i < nd; i++) sw__start_finalize(t, done[i]);
    /* Smart ban: a piece that failed earlier is now known good; whoever sent blocks that
     * differ from the good data lied. */
    for (uint32_t k = 0; k < t->n_failed; k++) {
        struct failed_piece *f = &t->failed[k];
        if (f->piece != piece) continue;
        uint32_t psz = sw_bt_piece_size(&t->mi, piece);
        uint8_t *scratch = malloc(psz);
        /* read returns the map itself when it can (zero copy), else fills scratch */
        const uint8_t *good = scratch ? sw_bt_storage_read(t->st, piece, 0, psz, scratch) : NULL;
        if (good) {
            for (uint32_t b = 0; b < f->n_blocks; b++) {
                uint32_t off = b * SW_BT_BLOCK, len = SW_MIN(SW_BT_BLOCK, psz - off);
                if (f->sender[b] && memcmp(good + off, f->buf + off, len)) ban_peer_uid(t, f->sender[b], piece);
            }
        }
        free(scratch);
        buf_put(t, f->buf);
        free(f->sender);
        t->failed[k] = t->failed[--t->n_failed];
        break;
    }
}

static void disk_error(struct sw_bt_torrent *t, uint32_t piece, int rc, const char *msg)
{
    /* Stop fetching the files this piece touches; they stay as .part (never complete). */
    struct sw_bt_span sp[64];
    uint32_t ns = sw_bt_piece_spans(&t->mi, piece, 0, sw_bt_piece_size(&t->mi, piece), sp, 64);
    for (uint32_t i = 0; i < ns; i++) {
        uint32_t f = sp[i].file;
        if (t->mi.files[f].pad || t->file_error[f]) continue;
        t->file_error[f] = 1;
        for (uint32_t q = t->mi.files[f].first_piece; q <= t->mi.files[f].last_piece; q++) sw_bt_picker_set_wanted(t->pk, q, 0);
        emit_simple(t, NULL, SW_BT_EV_ERROR, (int32_t)f, piece, rc, msg);
    }
    t->errored = 1;
}

static void webseed_bad_piece(struct sw_bt_torrent *t, struct webseed *ws, uint32_t piece)
{
    ws->bad++;
    LOGW("web seed %s: piece %u failed its SHA-1 check (%u bad)", ws->url, piece, ws->bad);
    if (ws->bad >= WS_MAX_BAD && !ws->banned) {
        ws->banned = 1;
        t->ws_banned++;
        LOGW("web seed %s banned: %u pieces failed their SHA-1 check", ws->url, ws->bad);
        if (t->s->wso.banned) t->s->wso.banned(t->s->wso.ud, t, ws->url);
    }
}

static void hash_done(uv_work_t *req, int status)
{
    struct hash_job *j = req->data;
    struct sw_bt_torrent *t = j->t;
    (void)status;
    if (!t->closing) {
        t->hashing[j->piece] = 0;
        if (j->rc == 0) {
            piece_verified(t, j->piece);
            buf_put(t, j->buf);
            free(j->sender);
        } else if (j->rc == SW_ECORRUPT) {
            sw_bt_picker_reset_piece(t->pk, j->piece);
            uint32_t nb = sw_bt_picker_blocks_in_piece(t->pk, j->piece), first = j->sender[0], single = 1;
            for (uint32_t b = 1; b < nb; b++) single &= j->sender[b] == first;
            LOGW("piece %u failed its SHA-1 check (%s); not written", j->piece, single ? "one sender" : "several senders");
            emit_simple(t, NULL, SW_BT_EV_PIECE_FAILED, -1, j->piece, SW_ECORRUPT, "hash mismatch");
            if (single && first) {
                ban_peer_uid(t, first, j->piece);
                buf_put(t, j->buf);
                free(j->sender);
            } else if (single && j->ws && j->ws <= t->n_ws) {
                /* A whole piece from one web seed: count it against that URL; the piece
                 * is picked again (from peers or other web seeds). */
                webseed_bad_piece(t, &t->ws[j->ws - 1], j->piece);
                buf_put(t, j->buf);
                free(j->sender);
            } else if (t->n_failed < MAX_FAILED) {
                t->failed[t->n_failed++] = (struct failed_piece){ j->piece, j->buf, j->sender, nb };
            } else {
                buf_put(t, j->buf);
                free(j->sender);
            }
            sw__update_interest_all(t);
        } else {
            sw_bt_picker_reset_piece(t->pk, j->piece);
            disk_error(t, j->piece, j->rc, j->err);
            buf_put(t, j->buf);
            free(j->sender);
        }
    } else {
        buf_put(t, j->buf);
        free(j->sender);
    }
    free(j);
    t->n_hash_jobs--;
    if (!t->closing && t->hash_throttled && !sw__hash_backlog_full(t)) {
        t->hash_throttled = 0; /* room again: the peers held back ask for more */
        for (struct sw_bt_peer *p = t->s->peers; p; p = p->next) {
            if (p->t != t || p->state != P_ACTIVE) continue;
            sw__fill_requests(p);
            sw__flush(p);
        }
    }
    if (!t->closing) sw__webseed_pump(t);
    t->jobs--;
    sw__torrent_maybe_free(t);
}

void sw__submit_piece(struct sw_bt_torrent *t, uint32_t piece)
{
    struct assembly *a = &t->as[piece];
    struct hash_job *j = calloc(1, sizeof *j);
    if (!j) return;
    j->t = t;
    j->piece = piece;
    j->buf = a->buf;
    j->sender = a->sender;
    j->ws = a->ws;
    a->buf = NULL;
    a->sender = NULL;
    a->ws = 0;
    j->req.data = j;
    t->hashing[piece] = 1;
    t->jobs++;
    t->n_hash_jobs++;
    uv_queue_work(t->s->loop, &j->req, hash_work, hash_done);
}

struct assembly *sw__assembly_get(struct sw_bt_torrent *t, uint32_t piece)
{
    struct assembly *a = &t->as[piece];
    if (!a->buf) {
        a->buf = buf_get(t);
        a->sender = calloc(sw_bt_picker_blocks_in_piece(t->pk, piece), sizeof *a->sender);
        if (!a->buf || !a->sender) {
            free(a->buf);
            free(a->sender);
            a->buf = NULL;
            a->sender = NULL;
            return NULL;
        }
    }
    return a;
}


void sw__webseed_pump(struct sw_bt_torrent *t)
{
    struct sw_bt_session *s = t->s;
    if (!s->has_ws || t->opts.seed_only || !t->has_meta || t->closing || t->in_ws_pump) return;
    t->in_ws_pump = 1; /* a fetcher may complete synchronously: no recursion */
    for (uint32_t w = 0; w < t->n_ws; w++) {
        struct webseed *ws = &t->ws[w];
        uint32_t maxf = s->wso.max_in_flight ? s->wso.max_in_flight : 4;
        while (!ws->banned && ws->failures < 3 && ws->in_flight < maxf && sw_bt_picker_left(t->pk)) {
            struct sw_bt_block blk[1024];
            uint32_t nb = sw_bt_picker_pick(t->pk, NULL, NULL, 1, NULL, NULL, blk, 1024);
            if (!nb) break;
            ws->in_flight++;
            if (s->wso.fetch(s->wso.ud, t, ws->url, blk[0].piece) < 0) {
                ws->in_flight--;
                ws->failures++;
                for (uint32_t i = 0; i < nb; i++) sw_bt_picker_abort(t->pk, blk[i].piece, blk[i].begin);
                break;
            }
        }
    }
    t->in_ws_pump = 0;
}


/* ------------------------------------------------------------------ web seeds */

void sw_bt_torrent_stats(const struct sw_bt_torrent *t, struct sw_bt_torrent_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!t) return;
    out->uploaded = t->up_total;
    out->pieces_sent_once = t->n_sent_once;
    out->dup_before_all_sent = t->dup_early;
    out->webseeds_banned = t->ws_banned;
}

int sw_bt_session_set_webseed(struct sw_bt_session *s, const struct sw_bt_webseed_ops *ops)
{
    if (!ops || !ops->fetch) return SW_EINVAL;
    s->wso = *ops;
    s->has_ws = 1;
    return 0;
}

void sw_bt_webseed_done(struct sw_bt_torrent *t, const char *url, uint32_t piece, const uint8_t *data, size_t len,
                        int status)
{
    struct webseed *ws = NULL;
    uint32_t wsi = 0;
    for (uint32_t i = 0; i < t->n_ws; i++)
        if (!strcmp(t->ws[i].url, url)) ws = &t->ws[i], wsi = i + 1;
    if (ws && ws->in_flight) ws->in_flight--;
    if (t->closing || !t->has_meta || piece >= t->mi.n_pieces) return;
    if (status < 0 || !data || len != sw_bt_piece_size(&t->mi, piece) || t->hashing[piece] ||
        sw_bt_picker_have(t->pk, piece)) {
        if (status < 0 && ws) ws->failures++;
        if (!t->hashing[piece] && !sw_bt_picker_have(t->pk, piece)) sw_bt_picker_reset_piece(t->pk, piece);
        return;
    }
    struct assembly *a = sw__assembly_get(t, piece);
    if (!a) return;
    if (ws) ws->failures = 0; /* a seed is given up after 3 failures in a row, not in total */
    memcpy(a->buf, data, len);
    t->down_total += len;
    uint32_t nb = sw_bt_picker_blocks_in_piece(t->pk, piece);
    for (uint32_t b = 0; b < nb; b++) {
        sw_bt_picker_received(t->pk, piece, b * SW_BT_BLOCK);
        a->sender[b] = 0; /* 0 = web seed */
    }
    a->ws = wsi; /* a SHA-1 failure counts against this URL (hash_done) */
    if (sw_bt_picker_piece_full(t->pk, piece)) sw__submit_piece(t, piece);
}
