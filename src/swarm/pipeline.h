/* pipeline.h — pipeline inference sessions across the swarm (internal header of src/swarm;
 * swarm.h, the subsystem's public face, holds the "entry" and "node glue" parts: requests,
 * callbacks, sw_pipe_node_*). Three layers:
 *   1. the wire codec: bounds-checked, versioned binary messages carried as SW_MSG_PIPE
 *      extension payloads (pipeline_wire.c);
 *   2. the engine, struct sw_pipe: per node, the stage role (sessions that pass through
 *      this node's compute stage) and the entry role (sessions this node opened). Bytes +
 *      the current time in, messages / compute jobs / events out, next deadline out; no
 *      sockets, no clocks, no threads inside (pipeline.c);
 *   3. the node glue: a sw_pipe on a running sw_node, compute on libuv worker threads
 *      (pipeline_node.c).
 * Not for: tokenizing text (infer/tok.h), the peer wire (src/bt), HTTP (src/api). */
#ifndef SW_PIPELINE_H
#define SW_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "swarm/prefix.h"
#include "swarm/swarm.h"
#include "util/util.h"

struct sw_stage;

/* ================================================================ wire */

#define SW_PIPE_VERSION 1
#define SW_PIPE_MAX_STAGES 64          /* stages in a route */
#define SW_PIPE_MAX_EMBD 65536u        /* n_embd of a HIDDEN message */
#define SW_PIPE_MAX_LOGITS (1u << 20)  /* logits carried by TOKEN_OUT (tests) */
#define SW_PIPE_MAX_TEXT 512u          /* ERROR text bytes */
#define SW_PIPE_MAX_MSG (64u << 20)    /* whole message (the BT extension's cap) */
#define SW_PIPE_MAX_HEADER (SW_PIPE_MAX_MSG - 64u) /* shard header bytes in one HEADER */
#define SW_PIPE_MAX_CTX (1u << 24)     /* positions an AUDIT may name */

enum sw_pipe_type {
    SW_PIPE_OPEN = 1,      /* entry -> stage: session, route, sampling, dtype, limits */
    SW_PIPE_OPEN_OK = 2,   /* stage -> entry: KV reserved, ready for input */
    SW_PIPE_TOKENS = 3,    /* entry or last stage -> first stage: token ids at pos */
    SW_PIPE_HIDDEN = 4,    /* stage k -> stage k+1: n_tokens x n_embd hidden states */
    SW_PIPE_TOKEN_OUT = 5, /* last stage -> entry: the sampled token (+ sampler state) */
    SW_PIPE_ERROR = 6,     /* any -> entry: code + text, for one session only */
    SW_PIPE_CANCEL = 7,    /* entry -> stages: drop the session now (caller cancelled) */
    SW_PIPE_CLOSE = 8,     /* entry -> stages: the session ended normally */
    SW_PIPE_REPLAY = 9,    /* entry -> stages: new route after a failure; the stage whose
                              downstream changed replays its kept outputs to it */
    SW_PIPE_HEADER_GET = 10, /* light client -> a loaded node: "the GGUF header of your
                                shard file" (session = a request id, not a session) */
    SW_PIPE_HEADER = 11,   /* node -> client: torrent file index + bytes [0, L) of that file,
                              L = the GGUF header rounded up to whole pieces (an ERROR with
                              the request id when the node cannot) */
    SW_PIPE_PROGRESS = 12, /* stage -> entry: "still computing this session" (at most about
                              once a second while its step runs or waits at the stage, and
                              once when that work is done): stage index, positions computed,
                              tokens still to compute here, the stage's estimate of the µs
                              they need. The entry's stall deadline counts from it. */
    /* Spot checks (spotcheck.c, docs/pipeline.md "Spot checks"): */
    SW_PIPE_AUDIT = 13,    /* entry -> the stage upstream of the checked one (role FEED: send
                              your kept outputs [pos, pos+n) to the checker as HIDDEN under
                              the audit id) or the one downstream (role WITNESS: send the rows
                              you received [pos, pos+n) as CLAIM) */
    SW_PIPE_CLAIM = 14,    /* witness -> checker: rows the witness received from its upstream
                              (named), HIDDEN layout; flag LAST ends one check. Of the last
                              shard (flag TOKENS): entry -> checker, the tokens the checked
                              node returned, n_embd 0, 4-byte big-endian ids, the token of
                              `pos + i` drawn from row pos + i's logits */
    SW_PIPE_VERDICT = 15,  /* checker -> entry: the recomputed rows against the claimed ones */
};

/* OPEN flags */
#define SW_PIPE_OPEN_LOGITS 1u     /* last stage: TOKEN_OUT carries the logits (tests) */
#define SW_PIPE_OPEN_IGNORE_EOS 2u /* last stage: do not stop at stop tokens */
#define SW_PIPE_OPEN_AUDIT 4u      /* a checker's session: compute, keep, compare with CLAIMs,
                                      send nothing downstream */
#define SW_PIPE_OPEN_WITNESS 8u    /* keep the hidden rows received (a spot check may ask) */
/* AUDIT roles, CLAIM flags, VERDICT results */
#define SW_PIPE_AUDIT_FEED 1u
#define SW_PIPE_AUDIT_WITNESS 2u
#define SW_PIPE_CLAIM_LAST 1u
#define SW_PIPE_CLAIM_TOKENS 2u /* the last shard's claim: sampled tokens, not rows */
enum { SW_PIPE_VERDICT_OK = 0, SW_PIPE_VERDICT_MISMATCH = 1, SW_PIPE_VERDICT_INCONCLUSIVE = 2 };
/* TOKENS flags */
#define SW_PIPE_TOK_SHORTCUT 1u    /* sent by the last stage straight to the first */
/* TOKENS and HIDDEN flags: a speculative step (issue 15): the input's first token is the
 * one just sampled, the rest are drafted; positions from pos on replace whatever the stage
 * holds there (the rejected drafts of the step before). The flag travels stage to stage;
 * the last stage computes the logits of every position and verifies the drafts. */
#define SW_PIPE_TOK_SPEC 2u
#define SW_PIPE_MAX_SPEC SW_PIPE_MAX_SPEC_K /* drafted tokens per step (swarm.h) */

/* A decoded message. Pointers borrow from the bytes given to sw_pipe_msg_decode. Fields
 * not used by a type are zero. */
struct sw_pipe_msg {
    uint8_t type;              /* enum sw_pipe_type */
    uint64_t session;
    uint8_t stage;             /* OPEN/OPEN_OK/ERROR: stage index (0xff: none) */
    uint8_t flags;
    /* OPEN / REPLAY */
    uint8_t n_stages;
    const uint8_t *route;      /* n_stages x SW_NODE_ID_LEN */
    const uint8_t *entry;      /* OPEN: SW_NODE_ID_LEN */
    uint8_t dtype;             /* OPEN, HIDDEN */
    uint32_t n_ctx;            /* OPEN: positions the session may use */
    uint32_t n_known;          /* OPEN: tokens whose successor is already known (last stage
                                  samples after position q only when q+1 >= n_known) */
    uint32_t max_pos;          /* OPEN: generation stops when the history reaches this */
    uint32_t n_stop;
    const uint8_t *stop;       /* n_stop big-endian int32 */
    uint32_t blob_len;
    const uint8_t *blob;       /* OPEN, TOKEN_OUT: sampler state (sw_sampler_save) */
    uint32_t progress_ms;      /* OPEN: PROGRESS at most this often (the stage takes 100..1000;
                                  0: 1000) */
    /* TOKENS / HIDDEN / TOKEN_OUT */
    uint32_t pos, n_tokens, n_embd;
    const uint8_t *data;       /* TOKENS: n_tokens BE int32; HIDDEN: LE floats (dtype) */
    size_t data_len;
    int32_t token;             /* TOKEN_OUT */
    uint32_t n_logits;
    const uint8_t *logits;     /* TOKEN_OUT: n_logits LE f32 */
    uint32_t compute_us;       /* TOKEN_OUT: the last stage's compute time for this step;
                                  PROGRESS: the stage's estimate of µs to finish n_tokens */
    /* PROGRESS: pos = positions the stage computed for the session, n_tokens = tokens
       queued or computing there (0: done, passed on), stage = its index */
    /* OPEN: the prompt's block hashes (prefix.h), less its last token, so that one
       position is always computed; CLOSE: the block hashes of every position the session
       computed (the stage may keep its KV under them) */
    uint32_t n_hashes;
    const uint8_t *hashes;     /* n_hashes x SW_PREFIX_HASH_LEN */
    /* OPEN (last stage): speculative decoding, up to spec_k drafted tokens per step
       (0: off), drafted by prompt lookup in the history ids[0..n_ids) (the tokens of the
       positions n_known - n_ids .. n_known - 1, big-endian int32; at most
       SW_PIPE_MAX_TOKENS, the latest) */
    uint8_t spec_k;
    uint32_t n_ids;
    const uint8_t *ids;
    /* OPEN_OK: positions this stage holds already (a cached prefix); the entry sends the
       input from the least of the route's, and every stage computes from there */
    uint32_t reused;
    /* ERROR */
    int32_t code;              /* negative sw_err */
    uint16_t text_len;
    const char *text;          /* not NUL-terminated */
    /* REPLAY */
    uint8_t replay_stage;      /* the stage (index) that must replay downstream */
    /* HEADER_GET: the most header bytes the asker takes (1..SW_PIPE_MAX_HEADER).
     * HEADER: the torrent file index; the bytes are data/data_len (1..SW_PIPE_MAX_HEADER). */
    uint32_t max_len;
    uint32_t file;
    /* AUDIT: session = the checked session's wire id, audit = the checker's session id,
     * role, node_a = the checker, node_b = the checked node, pos/n_tokens = the rows.
     * CLAIM: session = audit id, flags, dtype, pos, n_tokens, n_embd, node_a = the node the
     * witness received the rows from, data = the rows. VERDICT: session = audit id, stage,
     * verdict, pos/n_tokens = positions compared, bad_pos, max_abs, rel_err, node_a = the
     * witness's upstream (the node whose rows were compared), text. */
    uint64_t audit;
    uint8_t role, verdict;
    const uint8_t *node_a, *node_b;
    uint32_t bad_pos;
    float max_abs, rel_err;
};

/* Parses one SW_MSG_PIPE payload (kind byte 'S' first, then version, type). Every length
 * is checked against what remains and against the caps above. Returns 0, SW_ECORRUPT
 * (malformed: err names the field), SW_EUNSUPPORTED (another version or unknown type),
 * SW_ETOOBIG (over a cap). */
int sw_pipe_msg_decode(const uint8_t *p, size_t len, struct sw_pipe_msg *out, char *err,
                       size_t err_len);
/* Appends the encoding of m (the fields its type uses) to out. SW_EINVAL for values over
 * the caps, SW_ENOMEM. */
int sw_pipe_msg_encode(const struct sw_pipe_msg *m, struct sw_buf *out);

/* IEEE half <-> single (round to nearest even; NaN/Inf kept). */
uint16_t sw_pipe_f32_to_f16(float f);
float sw_pipe_f16_to_f32(uint16_t h);
/* Bytes of one token's hidden state on the wire. */
size_t sw_pipe_dtype_size(uint8_t dtype);

/* ================================================================ engine */

struct sw_pipe;

/* A compute job: one sw_stage_forward call, or one sw_stage_forward_batch over the short
 * (decode) steps of several sessions that waited at this stage while it was busy. The host
 * runs sw_pipe_job_run on a worker thread (it touches only the job and the stage, whose
 * calls the stage serialises), then hands it back with sw_pipe_job_done on the engine's
 * thread. */
struct sw_pipe_job;
void sw_pipe_job_run(struct sw_pipe_job *j);


/* What the engine needs from its host (the node, or a test's in-memory network). */
struct sw_pipe_host {
    /* Sends one encoded message to node `to` (may be ourselves: the host must then feed it
     * back through sw_pipe_receive later, not from inside this call). Returns 0 or a
     * negative sw_err (SW_ENOTFOUND: not connected). Borrowed bytes. */
    int (*send)(void *ud, const uint8_t to[SW_NODE_ID_LEN], const uint8_t *p, size_t len);
    /* Queues a compute job (run sw_pipe_job_run off the engine thread, then
     * sw_pipe_job_done). Returns 0 or a negative sw_err. */
    int (*submit)(void *ud, struct sw_pipe_job *j);
    /* Entry: the best live node with shard `shard` loaded, not among `exclude`. */
    int (*pick)(void *ud, uint32_t shard, const uint8_t *exclude, size_t n_exclude,
                uint8_t id_out[SW_NODE_ID_LEN]);
    /* Entry: is node `id` live (connected or ourselves)? */
    int (*is_live)(void *ud, const uint8_t id[SW_NODE_ID_LEN]);
    /* Stage: the compute stage serving now (NULL: none). */
    struct sw_stage *(*stage)(void *ud);
    void *ud;
    /* Optional: call sw_pipe_tick at (or soon after) at_us — a decode step held briefly at
     * an idle stage for other sessions due there (coalescing). Without it nothing is held. */
    void (*wake)(void *ud, uint64_t at_us);
    /* Optional step validator: a compute step just finished on stage st, before its output
     * is sent or sampled. Nonzero (a negative sw_err, msg filled): every entry of the job
     * fails with it (its entry fails over), e.g. the file the stage maps changed meanwhile. */
    int (*validate)(void *ud, const struct sw_stage *st, char *msg, size_t cap);
    /* Optional: does this stage share its compute with other stages now (several nodes on
     * one machine's cores)? Only then does a session wait for one behind it to align (see
     * COALESCE_PCT); else only steps that arrive together are gathered (a swarm of one node
     * per machine keeps its stages working on different sessions at once). NULL: shared. */
    int (*shared_compute)(void *ud);
    /* Optional (entry): does live node `id` serve shard `shard` now (loaded, reachable)?
     * Lets a session go back to the nodes that cache its prefix. NULL: is_live. */
    int (*serves)(void *ud, const uint8_t id[SW_NODE_ID_LEN], uint32_t shard);
};

struct sw_pipe_config {
    uint8_t self_id[SW_NODE_ID_LEN];
    uint32_t n_shards;         /* entry: shards of the model (stages of a route) */
    struct sw_pipe_host host;
    /* stage limits */
    uint32_t max_sessions;     /* sessions at this stage; 0: 32 */
    uint64_t max_kv_bytes;     /* KV cache + kept outputs for all sessions; 0: unlimited */
    uint32_t idle_ms;          /* a stage session idle this long is evicted; 0: 300000 */
    uint32_t batch_max;        /* decode steps of different sessions run as one batched
                                  forward, at most this many; 0: 8 (the most); 1: never */
    uint32_t prefix_entries;   /* prefix cache: closed sessions' KV kept per stage (prefix.h),
                                  counted in max_kv_bytes, LRU; 0: 8; SW_PIPE_PREFIX_OFF: none */
    uint32_t coalesce_pct;     /* the longest a decode step is held at an idle stage for
                                  other decoding sessions due there, in percent of the
                                  stage's recent decode step time; 0: 150; 1000+: never hold */
    double spot_rate;          /* entry: the chance that a generated token starts a spot check
                                  (0: none; the node's default is SW_SPOT_DEFAULT_RATE) */
    double spot_rtol;          /* the checker's tolerance (0: SW_SPOT_RTOL) */
};

#define SW_PIPE_PREFIX_OFF UINT32_MAX

int sw_pipe_new(const struct sw_pipe_config *cfg, struct sw_pipe **out);
/* Frees every session (stage sequences included). Jobs still running must have been
 * drained by the host first (sw_pipe_jobs_in_flight() == 0). NULL harmless. */
void sw_pipe_free(struct sw_pipe *p);
size_t sw_pipe_jobs_in_flight(const struct sw_pipe *p);
/* The largest pipeline message node `from` may send us now, in bytes, by what is open here
 * (docs/security.md): HIDDEN/CLAIM rows of a stage session (min(n_ctx, SW_PIPE_MAX_TOKENS)
 * x n_embd x 4 bytes), logits for an entry session that asked for them, a shard header
 * this node asked `from` for; 0 when nothing large is expected. The largest value stays
 * allowed SW_PIPE_CAP_LINGER_US after its session ended (steps already on the wire). */
#define SW_PIPE_CAP_LINGER_US 30000000ull
size_t sw_pipe_max_incoming(struct sw_pipe *p, const uint8_t from[SW_NODE_ID_LEN], uint64_t now_us);
/* Entry: the model's shard count, once known (a magnet resolves late). */
void sw_pipe_set_n_shards(struct sw_pipe *p, uint32_t n_shards);

/* Feeds one message received from node `from` (kind byte included, borrowed). Malformed
 * input is dropped (and counted); a well-formed message about a bad session gets an ERROR
 * for that session only. */
void sw_pipe_receive(struct sw_pipe *p, const uint8_t from[SW_NODE_ID_LEN], const uint8_t *msg,
                     size_t len, uint64_t now_us);
/* A compute job finished (on the engine's thread). Takes the job back (freed here). */
void sw_pipe_job_done(struct sw_pipe *p, struct sw_pipe_job *j, uint64_t now_us);
/* The connection to node `id` is gone (or it left the view). Stage sessions upstream of
 * it keep their outputs for a replay; entry sessions routed through it fail over. */
void sw_pipe_peer_lost(struct sw_pipe *p, const uint8_t id[SW_NODE_ID_LEN], uint64_t now_us);
/* Stage: fails every stage session (ERROR with `reason` to their entries) and releases
 * their KV sequences; compute jobs already running finish (sw_pipe_jobs_in_flight). A
 * node calls it before it frees or swaps its compute stage. Returns how many. */
size_t sw_pipe_drop_stage(struct sw_pipe *p, const char *reason);
/* Timers: eviction of idle stage sessions, entry deadlines. Returns the next deadline
 * (absolute µs; UINT64_MAX when none). Every time given to the engine is a monotonic
 * microsecond clock (sw_time_us in the node). */
uint64_t sw_pipe_tick(struct sw_pipe *p, uint64_t now_us);

/* Entry: opens a session (route chosen through host.pick). The session id is written to
 * *session_out; callbacks follow. Returns 0 or a negative sw_err (SW_EINVAL bad request,
 * SW_ENOTFOUND: some shard has no live loaded node — msg names it). */
int sw_pipe_open(struct sw_pipe *p, const struct sw_pipe_request *req,
                 const struct sw_pipe_session_cb *cb, uint64_t now_us, uint64_t *session_out,
                 char *msg, size_t msg_len);
/* Entry: cancels a session; on_end(SW_ECLOSED) follows at once. SW_ENOTFOUND unknown. */
int sw_pipe_cancel(struct sw_pipe *p, uint64_t session, uint64_t now_us);

#define SW_PIPE_BATCH_MAX 8 /* session steps one batched compute job carries at most */

struct sw_pipe_stats {
    /* stage: decode-sized (batchable) jobs by the sessions they carried, [k - 1] for k: how
     * many, their run time, the node process's CPU time meanwhile (all threads), and the
     * time from submit to done (the run plus any wait for a worker) */
    uint64_t dec_jobs[SW_PIPE_BATCH_MAX], dec_run_us[SW_PIPE_BATCH_MAX], dec_cpu_us[SW_PIPE_BATCH_MAX],
        dec_wall_us[SW_PIPE_BATCH_MAX];
    uint64_t msgs_in, malformed, errors_sent, sessions_opened, sessions_refused,
        sessions_evicted, failovers, replays, jobs, tokens_computed,
        opens_resent,          /* entry: OPENs sent again, unanswered for OPEN_AGAIN_MS (lost on the way) */
        batched_jobs,          /* jobs that ran several sessions' steps in one pass */
        batched_entries,       /* the session steps those jobs held */
        coalesce_holds,        /* decode steps held at an idle stage for sessions due there */
        coalesce_held_us,      /* the time they were held, in all */
        headers_served, header_bytes_sent, headers_refused, /* HEADER_GET answered / refused */
        header_replies_rejected, /* fetches: HEADER replies that failed the check */
        tokens_generated,      /* tokens delivered to sessions this node opened as the entry */
        spot_checks, spot_passed, spot_failed, spot_inconclusive, /* entry: checks asked, verdicts */
        spot_positions,        /* entry: positions compared in passed and failed checks */
        audits_served,         /* checker: verdicts this node sent */
        audit_positions,       /* checker: positions recomputed for spot checks */
        audit_compute_us,      /* checker: compute time of those (a batch's time shared by tokens) */
        spot_corrupted,        /* testing only: steps this stage perturbed (SW_TEST_CORRUPT_HIDDEN,
                                  SW_TEST_WRONG_TOKEN) */
        prefix_hits,           /* stage: sessions that reused a cached prefix */
        prefix_reused,         /* stage: positions they reused */
        prefix_kept,           /* stage: closed sessions kept in the prefix cache */
        prefix_evictions,      /* stage: entries evicted (LRU: count or memory) */
        spec_steps,            /* last stage: speculative steps verified */
        spec_drafted,          /* the drafted tokens they carried */
        spec_accepted;         /* the drafted tokens the sampler agreed with */
    uint32_t spot_distrusted;  /* entry: nodes excluded from routes by a failed check */
    uint32_t prefix_entries;   /* stage: entries in the prefix cache now */
    uint64_t prefix_bytes;     /* stage: their KV bytes */
    uint32_t stage_sessions, entry_sessions;
    uint64_t kept_bytes;
};
struct sw_pipe_stats sw_pipe_stats(const struct sw_pipe *p);

/* ============================================== spot checks (spotcheck.c) */

/* The node's default: one generated token in 256 starts (or extends) a check (docs/pipeline.md). */
#define SW_SPOT_DEFAULT_RATE (1.0 / 256)
/* A recomputed row agrees with the claimed one when ||a-b|| <= rtol * max(||a||, ||b||) (L2
 * over the row). Honest kernels differ by up to ~1 % (the reference C kernels against AVX2 on
 * Q4_0 weights at TinyLlama shape: 0.97 %; the same kernels: 0); docs/pipeline.md. */
#define SW_SPOT_RTOL 0.05

/* A node this entry excluded from its routes after a failed check, with the evidence. */
struct sw_pipe_distrust_info {
    uint8_t node[SW_NODE_ID_LEN], checker[SW_NODE_ID_LEN];
    uint32_t shard, pos;
    uint64_t session;          /* the entry's session handle */
    int token;                 /* the last shard: a token its sampler could not have drawn (pos:
                                  the token's position; max_abs: the logit gap) */
    float max_abs, rel_err;
    double age_s;              /* since the verdict */
    char evidence[400];
};
/* The distrusted nodes: returns how many; fills *out with entry i when i is below that. */
size_t sw_pipe_distrusted(const struct sw_pipe *p, size_t i, struct sw_pipe_distrust_info *out, uint64_t now_us);
/* Compares two rows of n_embd values in the wire dtype: 1 when they differ beyond rtol
 * (||a-b|| > rtol * max(||a||, ||b||); a NaN or Inf on one side only differs). *max_abs gets
 * max|a-b|, *rel the relative L2 difference. */
/* The status JSON's pipeline."spot" object (spotcheck_node.c): settings, counters, the
 * distrusted nodes with their evidence. */
struct json_t;
void sw_spot_status_json(const struct sw_pipe *p, struct json_t *pipeline, uint64_t now_us);
int sw_spot_compare_row(const uint8_t *a, const uint8_t *b, uint8_t dtype, uint32_t n_embd, double rtol, float *max_abs,
                        float *rel);

/* ============================================== shard headers (light clients) */

/* Serving: fills `out` with the header bytes of this node's shard file (at most max_len) and
 * *file_out with its torrent file index; or returns a negative sw_err with a reason in err
 * (SW_ENOTFOUND: no shard loaded; SW_ETOOBIG: the header is over max_len). */
typedef int (*sw_pipe_header_src_fn)(void *ud, uint32_t max_len, struct sw_buf *out, uint32_t *file_out,
                                     char *err, size_t err_len);
/* Constrained decoding: the model's vocabulary bytes where this node is a last stage (a
 * session whose sampler has a grammar: sw_sampler_set_vocab); fn returns NULL when the node
 * has no tokenizer, and without a source such sessions are refused. The result is borrowed
 * and must live as long as the engine. */
struct sw_gvocab;
void sw_pipe_set_vocab_source(struct sw_pipe *p, const struct sw_gvocab *(*fn)(void *ud), void *ud);
/* Without a source, HEADER_GET is answered with an ERROR (SW_EUNSUPPORTED). */
void sw_pipe_set_header_source(struct sw_pipe *p, sw_pipe_header_src_fn fn, void *ud);
/* The node glue's source: ud is the struct sw_node (its loaded, verified shard file). */
int sw_pipe_node_header_source(void *ud, uint32_t max_len, struct sw_buf *out, uint32_t *file_out, char *err,
                               size_t err_len);

/* Fetching: a fetch asks one node at a time for its shard header until a reply passes
 * `check`, trying the next node after an ERROR, a reply that fails the check, a lost
 * connection or reply_ms without an answer; when every candidate was tried it waits a
 * second and starts a new round; wait_ms after the start it gives up. */
struct sw_pipe_fetch_ops {
    /* The next node to ask, not among tried (n_tried ids): 0, or SW_ENOTFOUND (none now:
     * asked again at the next sw_pipe_tick). */
    int (*next)(void *ud, const uint8_t *tried, size_t n_tried, uint8_t id_out[SW_NODE_ID_LEN]);
    /* A HEADER reply (bytes borrowed for the call): 0 accepts it (the fetch ends with
     * done(0)); a negative sw_err with a reason in why rejects it (the next node is asked). */
    int (*check)(void *ud, const uint8_t from[SW_NODE_ID_LEN], uint32_t file, const uint8_t *bytes, size_t len,
                 char *why, size_t why_len);
    /* The end, exactly once: 0 after an accepted reply, else SW_ETIMEDOUT (msg: every node
     * tried and why), SW_ECLOSED (cancelled, or the engine freed). The fetch is gone after. */
    void (*done)(void *ud, int rc, const char *msg);
    void *ud;
};
/* Starts a fetch (the first request goes out at once when a node is there). max_len: the
 * most bytes taken per reply (0: SW_PIPE_MAX_HEADER); wait_ms 0: 60 s; reply_ms 0: 10 s. */
int sw_pipe_fetch_header(struct sw_pipe *p, const struct sw_pipe_fetch_ops *ops, uint32_t max_len,
                         uint32_t wait_ms, uint32_t reply_ms, uint64_t now_us, uint64_t *id_out);
/* done(SW_ECLOSED) follows at once; SW_ENOTFOUND for an unknown id. */
int sw_pipe_fetch_cancel(struct sw_pipe *p, uint64_t id);

/* Internal to src/swarm: the engine's header part (pipeline_header.c), driven by pipeline.c.
 * receive returns 1 when the message was the header part's (HEADER_GET, HEADER, or an
 * ERROR answering one of its requests). */
struct sw_pipe_hdr;
struct sw_pipe_hdr *sw__pipe_hdr_new(const struct sw_pipe_host *host, const uint8_t self[SW_NODE_ID_LEN]);
void sw__pipe_hdr_free(struct sw_pipe_hdr *h);
int sw__pipe_hdr_receive(struct sw_pipe_hdr *h, const uint8_t *from, const struct sw_pipe_msg *m, uint64_t now_us);
uint64_t sw__pipe_hdr_tick(struct sw_pipe_hdr *h, uint64_t now_us);
void sw__pipe_hdr_stats(const struct sw_pipe_hdr *h, struct sw_pipe_stats *st);
/* The HEADER bytes this node expects from `from` (a fetch asked it), 0: none. */
size_t sw__pipe_hdr_expect(const struct sw_pipe_hdr *h, const uint8_t *from);
void sw__pipe_hdr_set_source(struct sw_pipe_hdr *h, sw_pipe_header_src_fn fn, void *ud);
int sw__pipe_hdr_fetch(struct sw_pipe_hdr *h, const struct sw_pipe_fetch_ops *ops, uint32_t max_len, uint32_t wait_ms,
                       uint32_t reply_ms, uint64_t now_us, uint64_t *id_out);
int sw__pipe_hdr_cancel(struct sw_pipe_hdr *h, uint64_t id);

/* ================================================================ node glue */

/* The node glue's public half (struct sw_pipe_node, attach/detach/open/cancel, the async
 * entry, release_stage) is in swarm.h. Internal: */
struct sw_pipe *sw_pipe_node_engine(struct sw_pipe_node *pn);
struct sw_node *sw_pipe_node_node(struct sw_pipe_node *pn);

#endif
