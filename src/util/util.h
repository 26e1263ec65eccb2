/* util.h — the small shared toolbox every subsystem stands on: error codes, logging,
 * byte buffers, bencode, hashing, hex, time and the OS interface (files, mmap, memory).
 * Not for: anything protocol- or model-specific; that lives in its own subsystem. */
#ifndef SW_UTIL_H
#define SW_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define SW_VERSION "0.1.0"

/* ---------------------------------------------------------------- errors */

/* Errors are values: 0 is success, a negative sw_err is a failure. */
enum sw_err {
    SW_OK = 0,
    SW_EINVAL = -1,       /* bad argument from the caller */
    SW_ENOMEM = -2,       /* allocation failed */
    SW_EIO = -3,          /* read/write/open failed (errno has more) */
    SW_ECORRUPT = -4,     /* malformed input */
    SW_EAGAIN = -5,       /* need more bytes / try again later */
    SW_ENOTFOUND = -6,    /* no such file, key, peer, ... */
    SW_ETOOBIG = -7,      /* input exceeds a named cap */
    SW_EUNSUPPORTED = -8, /* well-formed but not supported (arch, type, version) */
    SW_ETIMEDOUT = -9,
    SW_EEXIST = -10,
    SW_ENOSPC = -11,      /* disk full */
    SW_ECLOSED = -12,     /* connection closed */
    SW_EPERM = -13,       /* bad signature, refused command, not authorised */
    SW_EBUSY = -14,
    SW_ESTATE = -15,      /* call not valid in the current state */
    SW_ERANGE = -16,      /* value out of range (e.g. context length exceeded) */
};

/* Static text for an sw_err code; never NULL. */
const char *sw_strerror(int err);

/* Formats a message into the caller's error buffer (if err and err_len) and returns code:
 * `return sw_errf(err, err_len, SW_ECORRUPT, "%s: field x at byte %zu", path, off);` */
int sw_errf(char *err, size_t err_len, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* --------------------------------------------------------------- logging */

enum sw_log_level { SW_LOG_DEBUG = 0, SW_LOG_INFO = 1, SW_LOG_WARN = 2, SW_LOG_ERROR = 3 };

/* The host (the CLI, a test) decides where log lines go. `subsys` is a short tag such as
 * "SHARD", "DHT", "BT"; `msg` has no trailing newline. May be called from any thread. */
typedef void (*sw_log_fn)(void *ud, enum sw_log_level level, const char *subsys, const char *msg);

/* Sets the process-wide log sink (NULL restores the default: WARN and above to stderr).
 * Messages below `min_level` are dropped before formatting. */
void sw_log_set(sw_log_fn fn, void *ud, enum sw_log_level min_level);
int sw_log_enabled(enum sw_log_level level);
void sw_log(enum sw_log_level level, const char *subsys, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sw_logv(enum sw_log_level level, const char *subsys, const char *fmt, va_list ap);
const char *sw_log_level_name(enum sw_log_level level);

/* ---------------------------------------------------------------- buffer */

/* A growable byte buffer. Zero-initialised is valid and empty. After an allocation
 * failure `oom` is set, later appends are ignored, and sw_buf_ok() is false. */
struct sw_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    int oom;
};

void sw_buf_init(struct sw_buf *b);
void sw_buf_free(struct sw_buf *b);           /* frees data, leaves b empty */
int sw_buf_reserve(struct sw_buf *b, size_t extra);
int sw_buf_append(struct sw_buf *b, const void *p, size_t n);
int sw_buf_append_byte(struct sw_buf *b, uint8_t c);
int sw_buf_printf(struct sw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sw_buf_consume(struct sw_buf *b, size_t n); /* drops n bytes from the front */
int sw_buf_ok(const struct sw_buf *b);
/* Appends a NUL (not counted in len) and returns data as a C string; NULL on oom. */
const char *sw_buf_cstr(struct sw_buf *b);

/* Big-endian integer helpers for wire formats. */
void sw_put_be16(uint8_t *p, uint16_t v);
void sw_put_be32(uint8_t *p, uint32_t v);
void sw_put_be64(uint8_t *p, uint64_t v);
uint16_t sw_get_be16(const uint8_t *p);
uint32_t sw_get_be32(const uint8_t *p);
uint64_t sw_get_be64(const uint8_t *p);

/* --------------------------------------------------------------- bencode */

/* BEP 3 bencoding. The decoder builds a flat node array that points into the input
 * (borrowed: the input must outlive the document). Every length is checked against the
 * bytes that remain and against the caps before use. */
enum sw_btype { SW_BINT = 1, SW_BSTR = 2, SW_BLIST = 3, SW_BDICT = 4 };

struct sw_bnode {
    uint8_t type;         /* enum sw_btype */
    int64_t ival;         /* SW_BINT */
    const uint8_t *str;   /* SW_BSTR: the string bytes (not NUL-terminated) */
    size_t str_len;
    const uint8_t *raw;   /* the node's whole encoding, e.g. for hashing an info dict */
    size_t raw_len;
    uint32_t n_items;     /* SW_BLIST: elements; SW_BDICT: key/value pairs */
    uint32_t first;       /* index of the first child (dict: key, value, key, value ...) */
    uint32_t next;        /* index of the next sibling, 0 when none */
};

struct sw_bdoc {
    struct sw_bnode *nodes; /* nodes[0] is the root */
    uint32_t n_nodes;
};

struct sw_blimits {
    size_t max_nodes;  /* 0: default 100000 */
    unsigned max_depth; /* 0: default 32 */
};

/* Decodes one value from p[0..len). If consumed_out is NULL the value must span the whole
 * input; otherwise trailing bytes are allowed and the value's length is stored.
 * Returns 0, SW_EAGAIN when the input ends inside the value (only when consumed_out is
 * set: a stream may bring more), SW_ECORRUPT (malformed; `err` says what and where),
 * SW_ETOOBIG (cap exceeded) or SW_ENOMEM. On success *doc_out owns the node array. */
int sw_bdecode(const uint8_t *p, size_t len, const struct sw_blimits *lim,
               struct sw_bdoc *doc_out, size_t *consumed_out, char *err, size_t err_len);
void sw_bdoc_free(struct sw_bdoc *doc);

/* Navigation: all return NULL when absent or of the wrong type. */
const struct sw_bnode *sw_bdict_get(const struct sw_bdoc *d, const struct sw_bnode *dict,
                                    const char *key);
const struct sw_bnode *sw_bdict_get_type(const struct sw_bdoc *d, const struct sw_bnode *dict,
                                         const char *key, enum sw_btype type);
const struct sw_bnode *sw_blist_at(const struct sw_bdoc *d, const struct sw_bnode *list,
                                   uint32_t index);
const struct sw_bnode *sw_bnode_child(const struct sw_bdoc *d, const struct sw_bnode *n);
const struct sw_bnode *sw_bnode_next(const struct sw_bdoc *d, const struct sw_bnode *n);
/* True when a SW_BSTR node equals the C string s. */
int sw_bstr_eq(const struct sw_bnode *n, const char *s);

/* Encoder: appends to a buffer. Dict keys must be written in sorted order by the caller
 * (BEP 3: keys are sorted as raw strings). */
void sw_benc_int(struct sw_buf *b, int64_t v);
void sw_benc_str(struct sw_buf *b, const void *p, size_t n);
void sw_benc_cstr(struct sw_buf *b, const char *s);
void sw_benc_list(struct sw_buf *b); /* 'l' */
void sw_benc_dict(struct sw_buf *b); /* 'd' */
void sw_benc_end(struct sw_buf *b);  /* 'e' */

/* --------------------------------------------------------------- hashing */

void sw_sha1(const void *p, size_t n, uint8_t out[20]);
void sw_sha256(const void *p, size_t n, uint8_t out[32]);

/* Incremental hashing (OpenSSL EVP underneath). new returns NULL on oom. */
struct sw_hash;
struct sw_hash *sw_hash_new_sha1(void);
struct sw_hash *sw_hash_new_sha256(void);
void sw_hash_update(struct sw_hash *h, const void *p, size_t n);
/* Writes the digest (20 or 32 bytes) and resets h for reuse. */
void sw_hash_final(struct sw_hash *h, uint8_t *out);
void sw_hash_free(struct sw_hash *h);

/* SHA-256 of a whole file, streamed. */
int sw_sha256_file(const char *path, uint8_t out[32]);

/* Lower-case hex; out must hold 2*n+1 bytes. */
void sw_hex_encode(const uint8_t *p, size_t n, char *out);
/* Decodes exactly n bytes from 2*n hex digits; SW_ECORRUPT on bad input. */
int sw_hex_decode(const char *hex, uint8_t *out, size_t n);

/* Cryptographically strong random bytes. */
void sw_random_bytes(void *p, size_t n);

/* --------------------------------------------------------------- time */

uint64_t sw_time_ms(void);   /* monotonic milliseconds */
uint64_t sw_time_us(void);   /* monotonic microseconds */
uint64_t sw_time_ns(void);   /* monotonic nanoseconds */
uint64_t sw_wall_time_s(void); /* seconds since the Unix epoch */
void sw_sleep_ms(unsigned ms);

/* --------------------------------------------------------------- rate meter */

/* A byte rate over a sliding window of real elapsed time. The caller feeds the cumulative
 * count and the time (its own clock: tests pass made-up times); nothing here reads a clock.
 * A run starts at the first increase (so set-up time before the first byte is not averaged
 * in) and restarts after SW_RATE_IDLE_WINDOWS windows without progress. */
#define SW_RATE_SLOTS 20          /* samples kept: spaced window/16 apart, the window and one more */
#define SW_RATE_IDLE_WINDOWS 4
struct sw_rate {
    uint64_t window_ms;
    uint64_t t_ms[SW_RATE_SLOTS], bytes[SW_RATE_SLOTS];
    uint32_t head, n;             /* ring of samples of this run, newest at head */
    uint64_t cur_ms, cur_bytes;   /* the latest count and when it was seen */
    int fed;                      /* some count was seen */
};
/* Forgets everything; window_ms 0 means 5000. */
void sw_rate_reset(struct sw_rate *r, uint64_t window_ms);
/* The count reached total at now_ms. A smaller total than before starts over. */
void sw_rate_add(struct sw_rate *r, uint64_t now_ms, uint64_t total);
/* Bytes per second over [now - window, now] (since the run started when that is later):
 * a stall lowers it as time passes. 0 when unknown (no run, or under 100 ms of it). */
double sw_rate_bps(const struct sw_rate *r, uint64_t now_ms);
/* Milliseconds until `remaining` more bytes at that rate; 0 when nothing remains,
 * UINT64_MAX when the rate is unknown. */
uint64_t sw_rate_eta_ms(const struct sw_rate *r, uint64_t now_ms, uint64_t remaining);

/* --------------------------------------------------------------- files */

/* A read-only memory map of a whole file. */
struct sw_mmap {
    const uint8_t *data;
    size_t len;
};

int sw_file_map(const char *path, struct sw_mmap *out);
void sw_file_unmap(struct sw_mmap *m); /* NULL/empty harmless */
/* SIGBUS guard (mapguard.c): a mapped file truncated by someone else must not kill us. A
 * read past the new end inside a guarded range reads zeros (the rest of the range is
 * remapped to zero pages) and is counted; the owner checks sw_map_guard_faults(any address
 * in the range) and fails what it computed. sw_file_map guards its maps itself. The slots
 * are process-wide (a signal handler has no handle to look in): 1,024 ranges at most. */
int sw_map_guard_add(const void *p, size_t len);
void sw_map_guard_remove(const void *p); /* p: the start given to add; NULL harmless */
uint64_t sw_map_guard_faults(const void *p); /* 0 when p is in no guarded range */
int sw_file_size(const char *path, uint64_t *size_out); /* SW_ENOTFOUND when absent */
/* What a file is now: a change to its bytes, size or name changes one of these (ctime cannot
 * be set by a user). Resume data and the node's watch of a served file compare them. */
struct sw_file_id {
    uint64_t dev, ino, size, mtime_ns, ctime_ns; /* all 0: none */
};
int sw_file_id(const char *path, struct sw_file_id *out); /* zeroes *out; SW_ENOTFOUND … */
int sw_path_exists(const char *path);
int sw_is_dir(const char *path);
int sw_mkdir_p(const char *path);
/* Reads a whole file of at most max_len bytes; *data_out is malloc'd (caller frees) and
 * NUL-terminated (not counted). SW_ETOOBIG when larger. */
int sw_file_read_all(const char *path, size_t max_len, uint8_t **data_out, size_t *len_out);
/* Writes to "<path>.tmp.<pid>", fsyncs, renames over path: never leaves a partial file. */
int sw_file_write_atomic(const char *path, const void *p, size_t n);
/* Joins dir and name with one '/'; returns malloc'd string or NULL. */
char *sw_path_join(const char *dir, const char *name);

/* --------------------------------------------------------------- system */

int sw_sys_mem_available(uint64_t *bytes_out);   /* MemAvailable */
int sw_sys_mem_total(uint64_t *bytes_out);
int sw_sys_disk_free(const char *path, uint64_t *bytes_out);
int sw_sys_ncpu(void);
/* Peak resident set size of this process in bytes (0 when unknown). */
uint64_t sw_sys_peak_rss(void);

/* Human-readable byte size ("12.4 GB", "512 KB") into out. */
const char *sw_fmt_bytes(uint64_t n, char *out, size_t out_len);
/* Human-readable duration ("2m10s", "350ms"). */
const char *sw_fmt_duration_ms(uint64_t ms, char *out, size_t out_len);

#define SW_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define SW_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SW_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
