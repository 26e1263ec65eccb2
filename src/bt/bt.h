/* bt.h — the BitTorrent engine for model shards: v1 metainfo (BEP 3, 47 pad files, 19 web
 * seeds), magnet links (BEP 9), the peer wire protocol as a socket-free state machine
 * (BEP 3, 6 fast, 10 extension protocol, 11 PEX), a piece picker, verified storage with
 * resume data, and a libuv session that ties them together, with a hook for shardswarm's
 * own BEP 10 extension messages.
 * Not for: the HTTP tracker client and the web-seed fetcher (bt_net.h), finding peers on
 * the DHT (src/dht), or the meaning of shardswarm's extension messages (src/swarm). */
#ifndef SW_BT_H
#define SW_BT_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

/* ================================================================ metainfo (BEP 3) */

/* Caps on outside input (bad input is data, not a crash). */
#define SW_BT_MAX_TORRENT_BYTES (64u << 20) /* a .torrent file */
#define SW_BT_MAX_INFO_BYTES (32u << 20)    /* BEP 9 metadata_size */
#define SW_BT_MAX_FILES 100000u
#define SW_BT_MAX_PATH 1024u                /* joined relative path of one file */
#define SW_BT_MIN_PIECE (16u << 10)
#define SW_BT_MAX_PIECE (64u << 20)
#define SW_BT_BLOCK (16u << 10)             /* request size (BEP 3 de-facto 16 KiB) */

struct sw_bt_file {
    char *path;          /* relative, components joined with '/', validated (no "..", no
                          * absolute, no empty components); owned by the metainfo */
    uint64_t length;
    uint64_t offset;     /* first byte in the torrent's concatenated data */
    int pad;             /* BEP 47 pad file (attr contains 'p'): zeros, never stored */
    uint32_t first_piece, last_piece; /* pieces it touches (last < first when length 0) */
    /* From the shardswarm dictionary (-1 when the file is not a shard). */
    int shard_index;
    int layer_first, layer_last;
    char sha256_hex[65]; /* "" when not given */
};

struct sw_bt_metainfo {
    uint8_t info_hash[20];  /* SHA-1 of the raw bencoded info dict: the model id */
    char info_hash_hex[41];
    char *name;
    uint32_t piece_length;
    uint32_t n_pieces;
    uint8_t *piece_hashes;  /* n_pieces * 20 bytes */
    uint64_t total_length;
    struct sw_bt_file *files;
    uint32_t n_files;
    int is_private;
    uint8_t *info_raw;      /* the raw info dict (served over BEP 9) */
    size_t info_len;
    /* Outside the info dict. */
    char **trackers;        /* announce + announce-list tiers, flattened, de-duplicated */
    uint32_t n_trackers;
    char **web_seeds;       /* url-list (BEP 19) */
    uint32_t n_web_seeds;
    /* The shardswarm dictionary of the info dict (zeros/empty when absent). */
    int has_shardswarm;
    char architecture[64];
    char model_name[128];
    char model_id[128];     /* split's id of the source model ("" when absent) */
    char owner_key_hex[65]; /* ed25519 public key of the model owner ("" when absent) */
    uint32_t n_layers;
    uint32_t n_shards;
};

/* Parses a whole .torrent file (data[0..len), borrowed). err receives a message naming the
 * field. Returns 0, SW_ECORRUPT, SW_ETOOBIG, SW_EUNSUPPORTED (v2-only) or SW_ENOMEM.
 * mi_out owns its memory after success; free with sw_bt_metainfo_free. */
int sw_bt_metainfo_parse(const uint8_t *data, size_t len, struct sw_bt_metainfo *mi_out,
                         char *err, size_t err_len);
/* Parses a raw info dict (e.g. received over BEP 9); checks nothing about its hash. */
int sw_bt_metainfo_parse_info(const uint8_t *info, size_t len, struct sw_bt_metainfo *mi_out,
                              char *err, size_t err_len);
int sw_bt_metainfo_load(const char *path, struct sw_bt_metainfo *mi_out, char *err, size_t err_len);
void sw_bt_metainfo_free(struct sw_bt_metainfo *mi); /* zeroes it; NULL harmless */
/* Serialises a whole .torrent (announce, announce-list, url-list, info) into out. */
int sw_bt_metainfo_encode(const struct sw_bt_metainfo *mi, struct sw_buf *out);
/* Size in bytes of piece i (the last one may be short). */
uint32_t sw_bt_piece_size(const struct sw_bt_metainfo *mi, uint32_t piece);
/* True when a relative path is safe to create under a folder (no "..", ".", empty or
 * absolute components, no backslash, no NUL, no control characters). */
int sw_bt_path_is_safe(const char *path);

/* One contiguous part of a piece that falls into one file. */
struct sw_bt_span {
    uint32_t file;
    uint64_t file_offset;
    uint32_t piece_offset;
    uint32_t len;
};
/* Splits [piece start + off, + len) over the files; returns the number of spans written
 * (at most max). Pad files are included (callers skip them via files[].pad). */
uint32_t sw_bt_piece_spans(const struct sw_bt_metainfo *mi, uint32_t piece, uint32_t off,
                           uint32_t len, struct sw_bt_span *spans, uint32_t max);

/* Torrent creation from a split folder. */
struct sw_bt_create_file {
    const char *name;        /* relative path, e.g. "shard-0.gguf" */
    uint64_t length;         /* 0: take the size from disk */
    int shard_index;         /* -1: not a shard */
    int layer_first, layer_last;
    const char *sha256_hex;  /* optional */
};

struct sw_bt_create_opts {
    const char *dir;              /* folder holding the files */
    const char *name;             /* torrent name (folder name in clients) */
    const struct sw_bt_create_file *files;
    uint32_t n_files;
    uint32_t piece_length;        /* 0: chosen from the largest file (sw_bt_choose_piece_length) */
    const char *architecture;     /* shardswarm dict; NULL/"" to omit */
    const char *model_id;
    uint32_t n_layers;
    const char *owner_key_hex;    /* 64 hex digits or NULL */
    const char *const *trackers;  /* announce = first, announce-list = one tier each */
    uint32_t n_trackers;
    const char *const *web_seeds; /* url-list */
    uint32_t n_web_seeds;
    int no_shardswarm_dict;       /* 1: an ordinary torrent (tests, interop) */
    /* Progress while hashing; may be NULL. */
    void (*progress)(void *ud, uint64_t done, uint64_t total);
    void *progress_ud;
};

/* Power of two between 256 KiB and 16 MiB giving at most ~4000 pieces for the largest file. */
uint32_t sw_bt_choose_piece_length(uint64_t largest_file);
/* Hashes the files (pad files between them, BEP 47, so no piece spans two files) and
 * builds the metainfo. err names the file on I/O errors. */
int sw_bt_metainfo_create(const struct sw_bt_create_opts *opts, struct sw_bt_metainfo *mi_out,
                          char *err, size_t err_len);

/* Options for making a model torrent from a split folder's model.json. */
struct sw_bt_model_torrent_opts {
    const char *owner_key_hex;   /* overrides the manifest's owner key; NULL keeps it */
    const char *const *trackers;
    uint32_t n_trackers;
    const char *const *web_seeds;
    uint32_t n_web_seeds;
    uint32_t piece_length;       /* 0: automatic */
    void (*progress)(void *ud, uint64_t done, uint64_t total);
    void *progress_ud;
};
/* Reads DIR/model.json (the split manifest), hashes the shards and writes the torrent to
 * out_path (NULL: DIR/model.torrent) atomically. info_hash_hex_out (41 bytes, may be NULL)
 * receives the model id. This is what `split --torrent` and `torrent create` call. */
int sw_bt_torrent_create_from_manifest(const char *dir, const struct sw_bt_model_torrent_opts *opts,
                                       const char *out_path, char info_hash_hex_out[41],
                                       char *err, size_t err_len);

/* ================================================================ magnet links */

struct sw_bt_magnet {
    uint8_t info_hash[20];
    char name[256];              /* dn, "" when absent */
    char **trackers;             /* tr */
    uint32_t n_trackers;
    char **peers;                /* x.pe "host:port" */
    uint32_t n_peers;
};

/* Parses "magnet:?xt=urn:btih:<40 hex | 32 base32>&dn=..&tr=..&x.pe=..". */
int sw_bt_magnet_parse(const char *uri, struct sw_bt_magnet *m_out, char *err, size_t err_len);
void sw_bt_magnet_free(struct sw_bt_magnet *m);
/* Formats a magnet link (hex info-hash, dn, tr for each tracker) into out. */
int sw_bt_magnet_format(const uint8_t info_hash[20], const char *name, const char *const *trackers,
                        uint32_t n_trackers, struct sw_buf *out);

/* ================================================================ peer wire (state machine) */

/* Message ids, BEP 3 / BEP 6 / BEP 10. */
enum sw_bt_msg_id {
    SW_BT_CHOKE = 0, SW_BT_UNCHOKE = 1, SW_BT_INTERESTED = 2, SW_BT_NOT_INTERESTED = 3,
    SW_BT_HAVE = 4, SW_BT_BITFIELD = 5, SW_BT_REQUEST = 6, SW_BT_PIECE = 7, SW_BT_CANCEL = 8,
    SW_BT_PORT = 9, SW_BT_SUGGEST = 13, SW_BT_HAVE_ALL = 14, SW_BT_HAVE_NONE = 15,
    SW_BT_REJECT = 16, SW_BT_ALLOWED_FAST = 17, SW_BT_EXTENDED = 20
};

enum sw_bt_wire_ev_type {
    SW_BT_WEV_HANDSHAKE = 1, /* info_hash, peer_id, reserved */
    SW_BT_WEV_KEEPALIVE,
    SW_BT_WEV_MSG,           /* a whole message other than PIECE: id + fields/payload */
    SW_BT_WEV_PIECE_DATA,    /* a fragment of a PIECE message's block (see below) */
};

/* An event from the decoder. Pointers are borrowed: valid only during the callback. */
struct sw_bt_wire_ev {
    enum sw_bt_wire_ev_type type;
    uint8_t id;                      /* SW_BT_WEV_MSG: enum sw_bt_msg_id */
    const uint8_t *info_hash;        /* HANDSHAKE */
    const uint8_t *peer_id;
    const uint8_t *reserved;
    uint32_t index, begin, length;   /* HAVE/REQUEST/CANCEL/REJECT/ALLOWED_FAST/SUGGEST:
                                      * index (begin, length where present); PORT: index=port */
    uint8_t ext_id;                  /* EXTENDED: BEP 10 sub-id (0 = handshake) */
    const uint8_t *payload;          /* BITFIELD bits; EXTENDED payload after ext_id */
    size_t payload_len;
    /* PIECE_DATA: the block (index, block_begin, block_len) arrives in one or more
     * fragments [frag_begin, frag_begin+frag_len) so a 16 KiB block never has to be
     * buffered whole; `last` is set on the fragment that completes the message. */
    uint32_t block_begin, block_len, frag_begin, frag_len;
    const uint8_t *frag;
    int last;
};

typedef void (*sw_bt_wire_cb)(void *ud, const struct sw_bt_wire_ev *ev);

struct sw_bt_wire_limits {
    uint32_t max_msg;        /* non-piece, non-extension messages (bitfield too); 0: 1 MiB */
    uint32_t max_block;      /* PIECE payload; 0: 128 KiB */
    uint32_t max_ext;        /* default cap for EXTENDED messages; 0: 1 MiB */
    uint32_t max_ext_big;    /* cap for the ext ids flagged big (shardswarm): 0: 64 MiB */
    uint32_t max_ext_pre;    /* any EXTENDED message before the peer's BEP 10 handshake: 0: 64 KiB */
    uint32_t max_bitfield;   /* BITFIELD payload, ceil(pieces/8) once known; 0: max_msg */
    uint32_t reserve_above;  /* with hooks->reserve: a message of more body bytes than this that
                              * must be buffered (it straddles reads) asks for room first */
};

/* Optional: how the connection's owner takes part in the caps (the session: the protocol
 * state of the peer, and a node-wide budget of buffered bytes). Called with feed's ud. */
struct sw_bt_wire_hooks {
    /* The cap for an EXTENDED message with a big ext id (after the peer's BEP 10 handshake),
     * asked when its length prefix and ext id are in; the smaller of this and max_ext_big
     * applies. NULL: max_ext_big. */
    uint32_t (*ext_cap)(void *ud, uint8_t ext_id, uint32_t body_len);
    /* A message of body_len bytes (> reserve_above) is about to be buffered: 0 to go on (the
     * room is the caller's until release), SW_EAGAIN to stop before its body: feed returns
     * SW_EAGAIN, w->unread of the input's last bytes were not consumed and must be fed
     * again (with what follows) once there is room; SW_ETOOBIG: never (feed fails). */
    int (*reserve)(void *ud, uint32_t body_len);
    void (*release)(void *ud, uint32_t body_len); /* the message was handed out */
};

/* The decoder of one connection. Zero-initialise with sw_bt_wire_init; it owns a buffer for
 * messages that straddle reads. */
struct sw_bt_wire {
    struct sw_bt_wire_limits lim;
    int got_handshake;
    uint8_t big_ext[256 / 8];  /* ext ids (our numbering) allowed max_ext_big */
    int got_ext_hs;            /* the peer's BEP 10 handshake (ext id 0) was decoded */
    struct sw_buf partial;     /* bytes of an incomplete non-piece message */
    /* In-progress PIECE message being streamed. */
    int in_piece;
    uint32_t piece_index, piece_begin, piece_len, piece_got;
    uint8_t piece_hdr[13];
    uint32_t hdr_got;
    const struct sw_bt_wire_hooks *hooks; /* NULL: none */
    uint32_t reserved;         /* body bytes of the message being buffered, reserved via hooks */
    size_t unread;             /* after SW_EAGAIN: bytes at the input's end not consumed */
    int closed;                /* after an error every feed fails */
    char err[160];
};

void sw_bt_wire_init(struct sw_bt_wire *w, const struct sw_bt_wire_limits *lim);
void sw_bt_wire_free(struct sw_bt_wire *w);
/* Allows up to max_ext_big bytes for incoming EXTENDED messages with this (our) ext id. */
void sw_bt_wire_allow_big_ext(struct sw_bt_wire *w, uint8_t ext_id);
/* Caps BITFIELD payloads at ceil(n_pieces/8) bytes (BEP 3), once the torrent is known. */
void sw_bt_wire_set_pieces(struct sw_bt_wire *w, uint32_t n_pieces);
/* Feeds received bytes (any split, one byte at a time is fine); calls cb for every event.
 * Returns 0, or SW_ECORRUPT / SW_ETOOBIG (w->err says why): the connection must be closed,
 * and later feeds fail too; or SW_EAGAIN (hooks->reserve said so: w->unread bytes at the
 * end of the input wait to be fed again). The callback may not free w. */
int sw_bt_wire_feed(struct sw_bt_wire *w, const uint8_t *p, size_t n, sw_bt_wire_cb cb, void *ud);

/* Encoders: append one message to out. */
#define SW_BT_HANDSHAKE_LEN 68
void sw_bt_wire_put_handshake(struct sw_buf *out, const uint8_t info_hash[20],
                              const uint8_t peer_id[20], int ext, int fast);
void sw_bt_wire_put_keepalive(struct sw_buf *out);
void sw_bt_wire_put_simple(struct sw_buf *out, uint8_t id); /* choke..not_interested, have_all/none */
void sw_bt_wire_put_u32(struct sw_buf *out, uint8_t id, uint32_t v); /* have, allowed_fast, suggest */
void sw_bt_wire_put_bitfield(struct sw_buf *out, const uint8_t *bits, uint32_t n_pieces);
/* request / cancel / reject (id selects) */
void sw_bt_wire_put_req(struct sw_buf *out, uint8_t id, uint32_t index, uint32_t begin, uint32_t len);
/* The 13-byte header of a PIECE message whose block of len bytes follows. */
void sw_bt_wire_piece_header(uint8_t hdr[13], uint32_t index, uint32_t begin, uint32_t len);
void sw_bt_wire_put_extended(struct sw_buf *out, uint8_t ext_id, const void *payload, size_t len);
/* The 6-byte header of an EXTENDED message with payload_len bytes following. */
void sw_bt_wire_ext_header(uint8_t hdr[6], uint8_t ext_id, size_t payload_len);

/* BEP 6 allowed-fast set for an IPv4 peer (k pieces out of n_pieces). */
uint32_t sw_bt_allowed_fast_set(const uint8_t info_hash[20], uint32_t ipv4_be, uint32_t n_pieces,
                                uint32_t k, uint32_t *out);

/* ================================================================ piece picker */

/* Chooses which 16 KiB blocks to request from whom: only wanted pieces, rarest first,
 * partial pieces first, endgame (duplicate requests) when nothing unrequested is left.
 * Pure bookkeeping, no I/O. */
struct sw_bt_picker;

struct sw_bt_block {
    uint32_t piece, begin, len;
};

struct sw_bt_picker *sw_bt_picker_new(uint32_t n_pieces, uint32_t piece_length, uint64_t total_length);
void sw_bt_picker_free(struct sw_bt_picker *pk);
void sw_bt_picker_set_wanted(struct sw_bt_picker *pk, uint32_t piece, int wanted);
int sw_bt_picker_wanted(const struct sw_bt_picker *pk, uint32_t piece);
void sw_bt_picker_set_have(struct sw_bt_picker *pk, uint32_t piece); /* verified and stored */
void sw_bt_picker_clear_have(struct sw_bt_picker *pk, uint32_t piece); /* lost (recheck failed) */
int sw_bt_picker_have(const struct sw_bt_picker *pk, uint32_t piece);
/* Availability: a peer has/lost pieces. */
void sw_bt_picker_inc(struct sw_bt_picker *pk, uint32_t piece);
void sw_bt_picker_dec(struct sw_bt_picker *pk, uint32_t piece);
void sw_bt_picker_inc_all(struct sw_bt_picker *pk, const uint8_t *bits); /* bits NULL: all */
void sw_bt_picker_dec_all(struct sw_bt_picker *pk, const uint8_t *bits);
uint32_t sw_bt_picker_availability(const struct sw_bt_picker *pk, uint32_t piece);
/* Picks up to max blocks that a peer holding `peer_bits` (NULL: every piece) can serve,
 * marking them requested. `allowed_only` (NULL or a bitfield) restricts to those pieces
 * (BEP 6 allowed-fast while choked). `whole_piece` picks one untouched piece's blocks
 * only (web seeds). Blocks the peer already requested (is_dup_cb) are skipped in endgame.
 * Returns the number written. */
uint32_t sw_bt_picker_pick(struct sw_bt_picker *pk, const uint8_t *peer_bits,
                           const uint8_t *allowed_only, int whole_piece,
                           int (*is_dup_cb)(void *ud, uint32_t piece, uint32_t begin), void *dup_ud,
                           struct sw_bt_block *out, uint32_t max);
/* A requested block will not come (cancel, reject, timeout, peer gone). */
void sw_bt_picker_abort(struct sw_bt_picker *pk, uint32_t piece, uint32_t begin);
/* A block arrived. Returns 1 when this was its first arrival (0: duplicate/unknown). */
int sw_bt_picker_received(struct sw_bt_picker *pk, uint32_t piece, uint32_t begin);
/* True when this block already arrived (its bytes must not be overwritten). */
int sw_bt_picker_block_received(const struct sw_bt_picker *pk, uint32_t piece, uint32_t begin);
/* True when every block of the piece has arrived (it can be hashed). */
int sw_bt_picker_piece_full(const struct sw_bt_picker *pk, uint32_t piece);
/* Hash failed: forget every block of the piece. */
void sw_bt_picker_reset_piece(struct sw_bt_picker *pk, uint32_t piece);
int sw_bt_picker_in_endgame(const struct sw_bt_picker *pk);
/* Wanted pieces not yet had. */
uint32_t sw_bt_picker_left(const struct sw_bt_picker *pk);
uint32_t sw_bt_picker_blocks_in_piece(const struct sw_bt_picker *pk, uint32_t piece);

/* ================================================================ storage */

/* Progress of hashing one file that is already on disk (storage open, recheck): called on
 * the hashing thread after each piece with the file's bytes hashed so far, and once more
 * when the file is done (done == total, good = pieces that verified of n). */
typedef void (*sw_bt_hash_progress_fn)(void *ud, uint32_t file, const char *path, uint64_t done,
                                       uint64_t total, uint32_t good, uint32_t n);

/* Files of one torrent under a folder: wanted files are written as "<path>.part"
 * (preallocated), renamed to "<path>" when every piece is verified; "<path>.resume" records
 * verified pieces (see docs/bt.md). Pieces are verified before they are written. */
struct sw_bt_storage;

struct sw_bt_storage_opts {
    const char *dir;
    int verify_all;        /* ignore resume data and rehash what is on disk */
    int trust_complete;    /* a final-named file of the right size counts as complete when
                            * no resume data says otherwise (seeders); 0: rehash it */
    sw_bt_hash_progress_fn on_hash; /* hashing a file (at open or a check): progress; NULL none */
    void *hash_ud;
};

int sw_bt_storage_open(const struct sw_bt_metainfo *mi, const struct sw_bt_storage_opts *opts,
                       struct sw_bt_storage **out, char *err, size_t err_len);
void sw_bt_storage_close(struct sw_bt_storage *st); /* flushes resume data; NULL harmless */
/* Which pieces are held (verified and on disk) after open/check; bits of n_pieces. */
const uint8_t *sw_bt_storage_have(const struct sw_bt_storage *st);
int sw_bt_storage_has_piece(const struct sw_bt_storage *st, uint32_t piece);
/* Marks file i wanted (creates/preallocates its .part on the first write). */
int sw_bt_storage_want_file(struct sw_bt_storage *st, uint32_t file, int wanted);
/* Verifies a whole piece (SHA-1) and, when it matches, writes it. Thread-safe for
 * different pieces (called from worker threads). Returns 0, SW_ECORRUPT (hash mismatch:
 * nothing written), SW_ENOSPC or SW_EIO (err says which file). */
int sw_bt_storage_verify_write(struct sw_bt_storage *st, uint32_t piece, const uint8_t *data,
                               char *err, size_t err_len);
/* After a successful verify_write, on the owning thread: records the piece in resume data
 * (one byte pwrite per piece, so a kill loses at most the pieces in flight). Files whose
 * every piece is now held are reported in files_done_out[] (up to max; returns how many):
 * the caller then runs sw_bt_storage_finalize_file for each (it blocks: fsync + rename). */
int sw_bt_storage_mark_have(struct sw_bt_storage *st, uint32_t piece, uint32_t *files_done_out,
                            uint32_t max);
/* fdatasync "<path>.part" and rename it to "<path>". Thread-safe for distinct files. */
int sw_bt_storage_finalize_file(struct sw_bt_storage *st, uint32_t file, char *err, size_t err_len);
/* Borrowed pointer to len bytes of a held piece at off (from a read-only map); NULL if the
 * piece is not held or not mapped. Pad bytes read as zeros. May return a copy in
 * scratch (caller-provided, >= len bytes) when the range crosses files. */
const uint8_t *sw_bt_storage_read(struct sw_bt_storage *st, uint32_t piece, uint32_t off,
                                  uint32_t len, uint8_t *scratch);
/* Hints the kernel to read a held piece ahead (madvise WILLNEED on the map): called when a
 * peer starts requesting it, so uploads of cold files don't fault page by page. */
void sw_bt_storage_prefetch(struct sw_bt_storage *st, uint32_t piece);
/* (Re)checks file i on disk: hashes its pieces from "<path>" (or ".part"), updates held
 * pieces, renames when complete. Returns the number of newly held pieces, or < 0. This is
 * what the node calls when a shard file appears in the folder. Blocking (hashing). */
int sw_bt_storage_check_file(struct sw_bt_storage *st, uint32_t file, char *err, size_t err_len);
/* As check_file, with the verdict of a hash the caller already made (good: one byte per
 * piece of the file, 1 = verified), so nothing is hashed on the calling thread. */
int sw_bt_storage_apply_check(struct sw_bt_storage *st, uint32_t file, const uint8_t *good, char *err,
                              size_t err_len);
int sw_bt_storage_file_complete(const struct sw_bt_storage *st, uint32_t file);
/* Final path of file i (borrowed). */
const char *sw_bt_storage_path(const struct sw_bt_storage *st, uint32_t file);

/* ================================================================ session (libuv) */

struct uv_loop_s;
struct sw_bt_session;
struct sw_bt_torrent;
struct sw_bt_peer;

enum sw_bt_event_type {
    SW_BT_EV_PROGRESS = 1,     /* per wanted file, about once a second */
    SW_BT_EV_PIECE_VERIFIED,
    SW_BT_EV_PIECE_FAILED,     /* hash mismatch; peer = a sender (banned) */
    SW_BT_EV_FILE_COMPLETE,    /* file verified and renamed to its final name */
    SW_BT_EV_TORRENT_COMPLETE, /* every wanted file complete (at least one wanted) */
    SW_BT_EV_METADATA,         /* a magnet's info dict arrived and verified */
    SW_BT_EV_PEER_CONNECTED,   /* BitTorrent handshake done */
    SW_BT_EV_PEER_CLOSED,
    SW_BT_EV_PEER_BANNED,
    SW_BT_EV_LISTENING,        /* port = bound port */
    SW_BT_EV_ERROR,            /* err + msg; e.g. disk full: the file stops downloading */
};

struct sw_bt_progress {
    uint64_t bytes_done, bytes_total;
    double percent;
    double rate_bps;           /* download (verified bytes) per second over the last 5 s of
                                * real time, from the first verified piece of the run */
    double upload_bps;         /* same window */
    uint64_t eta_s;            /* eta_ms rounded to the nearest second; UINT64_MAX when unknown */
    uint64_t eta_ms;           /* what remains at rate_bps; UINT64_MAX when unknown */
    uint32_t n_peers;          /* connected peers holding a piece of this file */
    uint64_t uploaded;         /* torrent totals of payload bytes this session (for */
    uint64_t downloaded;       /* tracker announces: BEP 3 uploaded/downloaded) */
};

struct sw_bt_event {
    enum sw_bt_event_type type;
    struct sw_bt_torrent *torrent;
    struct sw_bt_peer *peer;   /* may be NULL */
    int32_t file;              /* -1 when not about one file */
    uint32_t piece;
    uint16_t port;
    int err;
    const char *msg;           /* borrowed: valid during the callback */
    struct sw_bt_progress progress;
};

typedef void (*sw_bt_event_fn)(void *ud, const struct sw_bt_event *ev);

struct sw_bt_session_opts {
    const char *listen_host;   /* NULL: "0.0.0.0" */
    uint16_t listen_port;      /* 0: any free port (see SW_BT_EV_LISTENING / sw_bt_session_port) */
    int no_listen;             /* 1: outgoing connections only */
    uint32_t max_peers;        /* per torrent; 0: 64 */
    uint32_t max_unchoked;     /* 0: 32 (a node serving the swarm unchokes generously) */
    uint32_t max_requests;     /* outstanding 16 KiB requests per peer; 0: 256 */
    uint32_t max_peer_queue;   /* requests we queue from one peer; 0: 512 (BEP 10 reqq) */
    const char *client_name;   /* BEP 10 "v"; NULL: "shardswarm 0.1.0" */
    /* A private swarm (docs/protocol.md): the 32-byte swarm key (copied). Every connection,
     * both ways, starts with the Noise NNpsk0 handshake under this key and carries only
     * sealed records after it; a peer without the key is refused at its first message, and
     * plain BitTorrent peers are not spoken to. NULL: a public swarm (plain BitTorrent). */
    const uint8_t *swarm_key;
    /* Bytes of incoming messages buffered at once, all connections together: a message of
     * more than SW_BT_SMALL_MSG bytes that straddles reads takes its announced length from
     * this budget before a byte of its body is buffered; when there is no room the
     * connection is not read (backpressure) until there is, and closed after
     * SW_BT_BUDGET_WAIT_MS (docs/bt.md "Message buffers"). 0: SW_BT_MSG_BUDGET. */
    uint64_t msg_budget;
    sw_bt_event_fn on_event;
    void *ud;
};

#define SW_BT_MSG_BUDGET (256ull << 20)
#define SW_BT_SMALL_MSG (64u << 10)
#define SW_BT_BUDGET_WAIT_MS 30000u
/* A message holding budget must keep coming: after SW_BT_BIG_GRACE_MS at least
 * SW_BT_BIG_MIN_BPS on average, or the connection is closed (a slow drip holds no room). */
#define SW_BT_BIG_GRACE_MS 5000u
#define SW_BT_BIG_MIN_BPS (256u << 10)

struct sw_bt_budget_stats {
    uint64_t budget, used, peak; /* bytes */
    uint32_t waiting;            /* connections not read now: no room */
    uint64_t waits;              /* times a connection had to wait */
    uint64_t closed_wait;        /* closed after waiting SW_BT_BUDGET_WAIT_MS */
    uint64_t closed_slow;        /* closed: a message holding room came too slowly */
};
void sw_bt_session_budget(const struct sw_bt_session *s, struct sw_bt_budget_stats *out);

/* Starts listening (unless no_listen) and the 1 s timer on loop. When listening fails the
 * error is returned AND *out is set to a session already closing: run the loop and free it
 * as after sw_bt_session_close. */
int sw_bt_session_new(struct uv_loop_s *loop, const struct sw_bt_session_opts *opts,
                      struct sw_bt_session **out, char *err, size_t err_len);
/* Closes every connection and torrent (resume data flushed). Call, then run the loop
 * until sw_bt_session_closed() or run it once more (UV_RUN_NOWAIT/DEFAULT) to release
 * handles, then sw_bt_session_free. */
void sw_bt_session_close(struct sw_bt_session *s);
int sw_bt_session_closed(const struct sw_bt_session *s);
void sw_bt_session_free(struct sw_bt_session *s); /* NULL harmless; after the loop drained */
uint16_t sw_bt_session_port(const struct sw_bt_session *s);
const uint8_t *sw_bt_session_peer_id(const struct sw_bt_session *s); /* our 20-byte id */

struct sw_bt_torrent_opts {
    const char *dir;           /* where files go; NULL: "models_cache/shards" */
    int want_all;              /* 1: every file; else only files set with want_file */
    int verify_all;            /* rehash everything on disk (--verify) */
    int trust_complete;        /* seeders: a final-named file of the right size is held */
    int seed_only;             /* never request pieces */
    sw_bt_hash_progress_fn on_hash; /* hashing files found on disk: progress (storage) */
    void *hash_ud;
};

/* Adds a torrent from its metainfo (copied) or from a magnet (metadata fetched over BEP 9
 * from peers). */
int sw_bt_torrent_add(struct sw_bt_session *s, const struct sw_bt_metainfo *mi,
                      const struct sw_bt_torrent_opts *opts, struct sw_bt_torrent **out,
                      char *err, size_t err_len);
int sw_bt_torrent_add_magnet(struct sw_bt_session *s, const struct sw_bt_magnet *m,
                             const struct sw_bt_torrent_opts *opts, struct sw_bt_torrent **out,
                             char *err, size_t err_len);
struct sw_bt_torrent *sw_bt_session_find(struct sw_bt_session *s, const uint8_t info_hash[20]);
/* NULL until the metadata is known (magnet). Borrowed. */
const struct sw_bt_metainfo *sw_bt_torrent_metainfo(const struct sw_bt_torrent *t);
const uint8_t *sw_bt_torrent_info_hash(const struct sw_bt_torrent *t);
/* Per-file priority, changeable at any time (0: skip, 1: fetch). Before the metadata of a
 * magnet is known the wish is remembered. */
int sw_bt_torrent_want_file(struct sw_bt_torrent *t, uint32_t file, int want);
/* Re-checks file i on disk (a shard copied in by hand) and starts seeding what verifies.
 * Returns the number of newly held pieces or < 0. Blocking: hashes the file. */
int sw_bt_torrent_recheck_file(struct sw_bt_torrent *t, uint32_t file);
/* A file stopped by a disk error (SW_BT_EV_ERROR: disk full, read-only, folder gone) is
 * fetched again as wanted before; the caller decides when (e.g. once space appeared). */
int sw_bt_torrent_retry_file(struct sw_bt_torrent *t, uint32_t file);
/* recheck_file with the verdict of a hash the caller made on a worker (good: one byte per
 * piece of the file): bad pieces are dropped and fetched again, without hashing here. */
int sw_bt_torrent_apply_check(struct sw_bt_torrent *t, uint32_t file, const uint8_t *good);
int sw_bt_torrent_file_complete(const struct sw_bt_torrent *t, uint32_t file);
/* 1 when at least one file is wanted and every wanted file is complete. */
int sw_bt_torrent_complete(const struct sw_bt_torrent *t);
int sw_bt_torrent_progress(const struct sw_bt_torrent *t, int32_t file, struct sw_bt_progress *out);
/* Read-only counters of one torrent this session (tests, logs). */
struct sw_bt_torrent_stats {
    uint64_t uploaded;            /* payload bytes sent */
    uint32_t pieces_sent_once;    /* pieces we accepted a request for at least once */
    uint64_t dup_before_all_sent; /* bytes accepted for a piece already sent to another peer
                                   * while some piece had never left us (initial seeding
                                   * keeps this 0 for a seed with >= 2 fast peers) */
    uint32_t webseeds_banned;     /* URLs banned for pieces failing their SHA-1 check */
};
void sw_bt_torrent_stats(const struct sw_bt_torrent *t, struct sw_bt_torrent_stats *out);
const char *sw_bt_torrent_file_path(const struct sw_bt_torrent *t, uint32_t file);
/* Connects to a peer (IPv4/IPv6 literal or host name). Peers from the DHT, a tracker, PEX
 * or --peer all come here; duplicates and banned addresses are ignored. */
int sw_bt_torrent_add_peer(struct sw_bt_torrent *t, const char *host, uint16_t port);
/* Same, for a sockaddr (struct sockaddr_in / sockaddr_in6). */
int sw_bt_torrent_add_peer_addr(struct sw_bt_torrent *t, const void *sockaddr);
uint32_t sw_bt_torrent_n_peers(const struct sw_bt_torrent *t);
/* Connected peers (handshake done) of t, up to max, into out (borrowed pointers, valid
 * until their on_peer_closed / SW_BT_EV_PEER_CLOSED). Returns how many were written. */
uint32_t sw_bt_torrent_peers(const struct sw_bt_torrent *t, struct sw_bt_peer **out, uint32_t max);

/* ---------------------------------------------------------------- extension hook (BEP 10)
 *
 * shardswarm's own protocol (capabilities, LOAD_SHARD, pipeline hidden states) travels as
 * BEP 10 extension messages on the same peer connections. The node registers one named
 * extension before peers connect:
 *
 *   - the name goes into our extended handshake's "m" dict; peers that list the same name
 *     speak it (sw_bt_peer_has_ext);
 *   - on_handshake gets the peer's WHOLE extended-handshake dict (raw bencode, borrowed)
 *     each time the peer sends one (BEP 10 allows re-sending to update); the node reads its
 *     own keys there (e.g. "shardswarm" capabilities);
 *   - sw_bt_session_set_handshake_extra adds top-level keys to OUR extended handshake;
 *     calling it again re-sends the handshake to every connected peer (an update);
 *   - sw_bt_peer_send_ext sends a message with PRIORITY: it is written at once when the
 *     socket can take it (uv_try_write), otherwise it goes into a high-priority queue that
 *     is flushed before any piece data; piece data is written in chunks of at most
 *     SW_BT_SEND_CHUNK bytes so a priority message waits at most one chunk (the kernel
 *     keeps at most about as much unsent, TCP_NOTSENT_LOWAT); on the receiving side TCP
 *     still delivers in order, so piece data already in flight arrives first;
 *   - incoming messages for the extension may be up to max_msg_len (default 64 MiB)
 *     while standard messages stay capped at 1 MiB;
 *   - sw_bt_session_connect opens a connection to host:port on demand; on_peer_connected
 *     reports the peer's 20-byte peer id (from the BitTorrent handshake) and then
 *     on_handshake its extension dict (with the node's identity).
 * Callbacks run on the loop thread. A struct sw_bt_peer * stays valid until on_peer_closed
 * returns. */
#define SW_BT_SEND_CHUNK (256u << 10)

struct sw_bt_ext_ops {
    const char *name;          /* BEP 10 m-dict key, e.g. "shardswarm" */
    size_t max_msg_len;        /* 0: 64 MiB */
    /* Optional: the most bytes peer p may send in one message of the extension NOW (its
     * protocol state: e.g. hidden states only as large as a session open here allows);
     * asked at each message's length prefix when it is over 1 MiB; a larger message
     * closes the connection (logged). NULL: max_msg_len for every peer speaking it. */
    size_t (*msg_cap)(void *ud, struct sw_bt_peer *p, size_t len);
    void (*on_peer_connected)(void *ud, struct sw_bt_peer *p);
    void (*on_handshake)(void *ud, struct sw_bt_peer *p, const uint8_t *dict, size_t len);
    void (*on_message)(void *ud, struct sw_bt_peer *p, const uint8_t *payload, size_t len);
    void (*on_peer_closed)(void *ud, struct sw_bt_peer *p, int reason);
    void *ud;
};

/* Registers the extension (one per session; call before adding torrents). ops is copied;
 * name is copied. */
int sw_bt_session_register_ext(struct sw_bt_session *s, const struct sw_bt_ext_ops *ops);
/* Sets (or replaces, or with value NULL removes) a top-level key of our extended
 * handshake. value is a complete bencoded value (copied). Keys "m", "v", "p", "reqq",
 * "metadata_size" are ours and refused. Re-sends the handshake to connected peers. */
int sw_bt_session_set_handshake_extra(struct sw_bt_session *s, const char *key,
                                      const uint8_t *value, size_t len);
/* Opens a connection to host:port for torrent t (also when it is already connected: then
 * the existing peer is returned in *peer_out). The peer is reported through
 * on_peer_connected / SW_BT_EV_PEER_CONNECTED once the handshake is done. */
int sw_bt_session_connect(struct sw_bt_torrent *t, const char *host, uint16_t port,
                          struct sw_bt_peer **peer_out);
/* Sends one extension message (payload copied when it cannot be written at once).
 * SW_ESTATE: the peer has not (yet) announced the extension; SW_ECLOSED: closing. */
int sw_bt_peer_send_ext(struct sw_bt_peer *p, const void *payload, size_t len);
/* Same with the payload in two parts (e.g. a header and hidden states), no concatenation. */
int sw_bt_peer_send_ext2(struct sw_bt_peer *p, const void *a, size_t a_len, const void *b,
                         size_t b_len);
int sw_bt_peer_has_ext(const struct sw_bt_peer *p);
const uint8_t *sw_bt_peer_id(const struct sw_bt_peer *p); /* 20 bytes; NULL before handshake */
/* "a.b.c.d:port" of the connection into buf. */
const char *sw_bt_peer_addr(const struct sw_bt_peer *p, char *buf, size_t len);
uint16_t sw_bt_peer_listen_port(const struct sw_bt_peer *p); /* BEP 10 "p", 0 if unknown */
struct sw_bt_torrent *sw_bt_peer_torrent(const struct sw_bt_peer *p);
int sw_bt_peer_outgoing(const struct sw_bt_peer *p);
void sw_bt_peer_set_userdata(struct sw_bt_peer *p, void *ud);
void *sw_bt_peer_userdata(const struct sw_bt_peer *p);
void sw_bt_peer_close(struct sw_bt_peer *p);

/* ---------------------------------------------------------------- web seeds (BEP 19)
 *
 * The fetcher lives in bt-net's webseed.c; the session calls it for whole pieces when the
 * torrent has url-list entries and a fetcher is registered. The fetcher downloads the
 * piece's spans (sw_bt_piece_spans; for a multi-file torrent the URL of file f is
 * url + name + "/" + path, BEP 19) and hands the bytes back with sw_bt_webseed_done on the
 * loop thread; they go through the same SHA-1 verify / write path as peer data. */
struct sw_bt_webseed_ops {
    /* Start fetching `piece` from `url`; returns 0 when started (then exactly one
     * sw_bt_webseed_done follows, possibly with an error), < 0 when it cannot. */
    int (*fetch)(void *ud, struct sw_bt_torrent *t, const char *url, uint32_t piece);
    /* Optional: url delivered 3 pieces that failed their SHA-1 check; the session asks it
     * for nothing more (the fetcher may drop its connections). */
    void (*banned)(void *ud, struct sw_bt_torrent *t, const char *url);
    uint32_t max_in_flight;    /* pieces per URL; 0: 4 */
    void *ud;
};
int sw_bt_session_set_webseed(struct sw_bt_session *s, const struct sw_bt_webseed_ops *ops);
/* data: the whole piece (sw_bt_piece_size bytes), borrowed; status < 0 on failure. */
void sw_bt_webseed_done(struct sw_bt_torrent *t, const char *url, uint32_t piece,
                        const uint8_t *data, size_t len, int status);

#endif
