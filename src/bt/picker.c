/* picker.c — which blocks to request next: wanted pieces only, partial pieces first (to
 * finish what is started), then rarest first with a random tie-break, endgame duplicates
 * when no unrequested block is left. Pure bookkeeping; the session owns the peers. */
#include <stdlib.h>
#include <string.h>

#include "bt.h"
#include "bt_int.h"

#define BLK_FREE 0
#define BLK_DONE 255 /* 1..254: number of outstanding requests */
#define MAX_DUP 3    /* endgame: at most this many peers asked for one block */

struct sw_bt_picker {
    uint32_t n_pieces, piece_length;
    uint64_t total_length;
    uint8_t *wanted, *have;
    uint32_t *avail;
    uint8_t **blocks;      /* per piece, allocated when first requested */
    uint32_t *n_recv;
    uint32_t *partial;     /* pieces with a block array and not yet had */
    uint32_t n_partial;
    uint32_t n_left;       /* wanted && !have */
    int endgame;
    uint64_t rng;
};

static uint32_t rnd(struct sw_bt_picker *pk)
{
    pk->rng ^= pk->rng << 13;
    pk->rng ^= pk->rng >> 7;
    pk->rng ^= pk->rng << 17;
    return (uint32_t)(pk->rng >> 11);
}

struct sw_bt_picker *sw_bt_picker_new(uint32_t n_pieces, uint32_t piece_length, uint64_t total_length)
{
    if (!n_pieces || !piece_length) return NULL;
    struct sw_bt_picker *pk = calloc(1, sizeof *pk);
    if (!pk) return NULL;
    pk->n_pieces = n_pieces;
    pk->piece_length = piece_length;
    pk->total_length = total_length;
    pk->wanted = calloc(n_pieces, 1);
    pk->have = calloc(n_pieces, 1);
    pk->avail = calloc(n_pieces, sizeof *pk->avail);
    pk->blocks = calloc(n_pieces, sizeof *pk->blocks);
    pk->n_recv = calloc(n_pieces, sizeof *pk->n_recv);
    pk->partial = calloc(n_pieces, sizeof *pk->partial);
    sw_random_bytes(&pk->rng, sizeof pk->rng);
    pk->rng |= 1;
    if (!pk->wanted || !pk->have || !pk->avail || !pk->blocks || !pk->n_recv || !pk->partial) {
        sw_bt_picker_free(pk);
        return NULL;
    }
    return pk;
}

void sw_bt_picker_free(struct sw_bt_picker *pk)
{
    if (!pk) return;
    if (pk->blocks)
        for (uint32_t i = 0; i < pk->n_pieces; i++) free(pk->blocks[i]);
    free(pk->blocks);
    free(pk->wanted);
    free(pk->have);
    free(pk->avail);
    free(pk->n_recv);
    free(pk->partial);
    free(pk);
}

uint32_t sw_bt_picker_blocks_in_piece(const struct sw_bt_picker *pk, uint32_t piece)
{
    uint64_t start = (uint64_t)piece * pk->piece_length;
    uint64_t sz = SW_MIN((uint64_t)pk->piece_length, pk->total_length - start);
    return (uint32_t)((sz + SW_BT_BLOCK - 1) / SW_BT_BLOCK);
}

static uint32_t block_len(const struct sw_bt_picker *pk, uint32_t piece, uint32_t b)
{
    uint64_t start = (uint64_t)piece * pk->piece_length;
    uint64_t sz = SW_MIN((uint64_t)pk->piece_length, pk->total_length - start);
    uint64_t off = (uint64_t)b * SW_BT_BLOCK;
    return (uint32_t)SW_MIN((uint64_t)SW_BT_BLOCK, sz - off);
}

static void drop_partial(struct sw_bt_picker *pk, uint32_t piece)
{
    for (uint32_t i = 0; i < pk->n_partial; i++)
        if (pk->partial[i] == piece) {
            pk->partial[i] = pk->partial[--pk->n_partial];
            break;
        }
    free(pk->blocks[piece]);
    pk->blocks[piece] = NULL;
    pk->n_recv[piece] = 0;
}

static uint8_t *ensure_blocks(struct sw_bt_picker *pk, uint32_t piece)
{
    if (pk->blocks[piece]) return pk->blocks[piece];
    uint8_t *b = calloc(sw_bt_picker_blocks_in_piece(pk, piece), 1);
    if (!b) return NULL;
    pk->blocks[piece] = b;
    pk->n_recv[piece] = 0;
    pk->partial[pk->n_partial++] = piece;
    return b;
}

void sw_bt_picker_set_wanted(struct sw_bt_picker *pk, uint32_t piece, int wanted)
{
    if (piece >= pk->n_pieces) return;
    wanted = !!wanted;
    if (pk->wanted[piece] == wanted) return;
    pk->wanted[piece] = (uint8_t)wanted;
    if (!pk->have[piece]) pk->n_left += wanted ? 1 : (uint32_t)-1;
    if (wanted && !pk->have[piece]) pk->endgame = 0; /* new work: not the end any more */
}

int sw_bt_picker_wanted(const struct sw_bt_picker *pk, uint32_t piece)
{
    return piece < pk->n_pieces && pk->wanted[piece];
}

void sw_bt_picker_set_have(struct sw_bt_picker *pk, uint32_t piece)
{
    if (piece >= pk->n_pieces || pk->have[piece]) return;
    pk->have[piece] = 1;
    if (pk->wanted[piece]) pk->n_left--;
    if (pk->blocks[piece]) drop_partial(pk, piece);
}

void sw_bt_picker_clear_have(struct sw_bt_picker *pk, uint32_t piece)
{
    if (piece >= pk->n_pieces || !pk->have[piece]) return;
    pk->have[piece] = 0;
    if (pk->wanted[piece]) pk->n_left++;
    pk->endgame = 0;
}

int sw_bt_picker_have(const struct sw_bt_picker *pk, uint32_t piece)
{
    return piece < pk->n_pieces && pk->have[piece];
}

void sw_bt_picker_inc(struct sw_bt_picker *pk, uint32_t piece)
{
    if (piece < pk->n_pieces) pk->avail[piece]++;
}

void sw_bt_picker_dec(struct sw_bt_picker *pk, uint32_t piece)
{
    if (piece < pk->n_pieces && pk->avail[piece]) pk->avail[piece]--;
}

void sw_bt_picker_inc_all(struct sw_bt_picker *pk, const uint8_t *bits)
{
    for (uint32_t i = 0; i < pk->n_pieces; i++)
        if (!bits || sw__bit_get(bits, i)) pk->avail[i]++;
}

void sw_bt_picker_dec_all(struct sw_bt_picker *pk, const uint8_t *bits)
{
    for (uint32_t i = 0; i < pk->n_pieces; i++)
        if ((!bits || sw__bit_get(bits, i)) && pk->avail[i]) pk->avail[i]--;
}

uint32_t sw_bt_picker_availability(const struct sw_bt_picker *pk, uint32_t piece)
{
    return piece < pk->n_pieces ? pk->avail[piece] : 0;
}

static int can_take(const struct sw_bt_picker *pk, uint32_t i, const uint8_t *peer_bits, const uint8_t *allowed)
{
    return pk->wanted[i] && !pk->have[i] && (!peer_bits || sw__bit_get(peer_bits, i)) &&
           (!allowed || sw__bit_get(allowed, i));
}

/* Takes free blocks of piece i into out. */
static uint32_t take_free(struct sw_bt_picker *pk, uint32_t piece, struct sw_bt_block *out, uint32_t max)
{
    uint8_t *b = ensure_blocks(pk, piece);
    if (!b) return 0;
    uint32_t nb = sw_bt_picker_blocks_in_piece(pk, piece), n = 0;
    for (uint32_t k = 0; k < nb && n < max; k++) {
        if (b[k] != BLK_FREE) continue;
        b[k] = 1;
        out[n].piece = piece;
        out[n].begin = k * SW_BT_BLOCK;
        out[n].len = block_len(pk, piece, k);
        n++;
    }
    return n;
}

uint32_t sw_bt_picker_pick(struct sw_bt_picker *pk, const uint8_t *peer_bits, const uint8_t *allowed_only,
                           int whole_piece, int (*is_dup_cb)(void *ud, uint32_t piece, uint32_t begin),
                           void *dup_ud, struct sw_bt_block *out, uint32_t max)
{
    uint32_t n = 0;
    if (max == 0 || pk->n_left == 0) return 0;
    /* 1. Partial pieces first: finishing pieces lets us verify and share them sooner. */
    if (!whole_piece) {
        for (uint32_t i = 0; i < pk->n_partial && n < max; i++) {
            uint32_t p = pk->partial[i];
            if (can_take(pk, p, peer_bits, allowed_only)) n += take_free(pk, p, out + n, max - n);
        }
    }
    /* 2. Fresh pieces, rarest first (BEP 3 recommends rarest first), random among equals. */
    while (n < max) {
        uint32_t best = UINT32_MAX, best_av = UINT32_MAX;
        uint32_t start = rnd(pk) % pk->n_pieces;
        for (uint32_t k = 0; k < pk->n_pieces; k++) {
            uint32_t i = start + k;
            if (i >= pk->n_pieces) i -= pk->n_pieces;
            if (pk->blocks[i] || !can_take(pk, i, peer_bits, allowed_only)) continue;
            uint32_t av = pk->avail[i];
            if (av < best_av) { best = i; best_av = av; }
            if (best_av <= 1) break; /* cannot be rarer than one holder */
        }
        if (best == UINT32_MAX) break;
        if (whole_piece && sw_bt_picker_blocks_in_piece(pk, best) > max - n) break;
        uint32_t got = take_free(pk, best, out + n, max - n);
        if (!got) break;
        n += got;
        if (whole_piece) return n;
    }
    if (n || whole_piece) return n;
    /* 3. Endgame: every remaining block is requested; ask this peer too for blocks it has
     * not asked for, so the last pieces don't wait on the slowest peer. */
    for (uint32_t i = 0; i < pk->n_partial; i++) {
        uint32_t p = pk->partial[i];
        if (!pk->wanted[p]) continue;
        uint8_t *b = pk->blocks[p];
        uint32_t nb = sw_bt_picker_blocks_in_piece(pk, p);
        for (uint32_t k = 0; k < nb; k++)
            if (b[k] == BLK_FREE) return 0; /* unrequested blocks remain (other peers' pieces) */
    }
    for (uint32_t i = 0; i < pk->n_pieces; i++)
        if (!pk->blocks[i] && pk->wanted[i] && !pk->have[i]) return 0; /* untouched pieces remain */
    pk->endgame = 1;
    for (uint32_t i = 0; i < pk->n_partial && n < max; i++) {
        uint32_t p = pk->partial[i];
        if (!can_take(pk, p, peer_bits, allowed_only)) continue;
        uint8_t *b = pk->blocks[p];
        uint32_t nb = sw_bt_picker_blocks_in_piece(pk, p);
        for (uint32_t k = 0; k < nb && n < max; k++) {
            if (b[k] == BLK_DONE || b[k] >= MAX_DUP) continue;
            if (is_dup_cb && is_dup_cb(dup_ud, p, k * SW_BT_BLOCK)) continue;
            b[k]++;
            out[n].piece = p;
            out[n].begin = k * SW_BT_BLOCK;
            out[n].len = block_len(pk, p, k);
            n++;
        }
    }
    return n;
}

void sw_bt_picker_abort(struct sw_bt_picker *pk, uint32_t piece, uint32_t begin)
{
    if (piece >= pk->n_pieces || !pk->blocks[piece] || begin % SW_BT_BLOCK) return;
    uint32_t k = begin / SW_BT_BLOCK;
    if (k >= sw_bt_picker_blocks_in_piece(pk, piece)) return;
    uint8_t *b = &pk->blocks[piece][k];
    if (*b != BLK_FREE && *b != BLK_DONE) (*b)--;
}

int sw_bt_picker_received(struct sw_bt_picker *pk, uint32_t piece, uint32_t begin)
{
    if (piece >= pk->n_pieces || pk->have[piece] || begin % SW_BT_BLOCK) return 0;
    uint32_t k = begin / SW_BT_BLOCK;
    if (k >= sw_bt_picker_blocks_in_piece(pk, piece)) return 0;
    uint8_t *b = ensure_blocks(pk, piece);
    if (!b || b[k] == BLK_DONE) return 0;
    b[k] = BLK_DONE;
    pk->n_recv[piece]++;
    return 1;
}

int sw_bt_picker_block_received(const struct sw_bt_picker *pk, uint32_t piece, uint32_t begin)
{
    if (piece >= pk->n_pieces || !pk->blocks[piece] || begin % SW_BT_BLOCK) return 0;
    uint32_t k = begin / SW_BT_BLOCK;
    return k < sw_bt_picker_blocks_in_piece(pk, piece) && pk->blocks[piece][k] == BLK_DONE;
}

int sw_bt_picker_piece_full(const struct sw_bt_picker *pk, uint32_t piece)
{
    return piece < pk->n_pieces && pk->blocks[piece] && pk->n_recv[piece] == sw_bt_picker_blocks_in_piece(pk, piece);
}

void sw_bt_picker_reset_piece(struct sw_bt_picker *pk, uint32_t piece)
{
    if (piece < pk->n_pieces && pk->blocks[piece]) drop_partial(pk, piece);
}

int sw_bt_picker_in_endgame(const struct sw_bt_picker *pk)
{
    return pk->endgame;
}

uint32_t sw_bt_picker_left(const struct sw_bt_picker *pk)
{
    return pk->n_left;
}
