/* pipeline_int.h — the pipeline engine's internal types and the calls its files share
 * (pipeline.c: lifecycle and dispatch; pipeline_stage.c: compute jobs, batching and the
 * stage role; pipeline_entry.c: the entry role). Not a public face: pipeline.h is. */
#ifndef SW_PIPELINE_INT_H
#define SW_PIPELINE_INT_H

#include <string.h>

#include "swarm/pipeline.h"

#define DEFAULT_CHUNK 64u
#define MERGE_MAX 256u            /* queued inputs merged into one compute step, tokens */
#define REPLAY_CHUNK 256u         /* tokens per replayed message */
/* Stall detection: the entry rebuilds the route when no stage of it gave a sign of life
 * (OPEN_OK, PROGRESS, TOKEN_OUT) for deadline_ms, or when the stage holding the work keeps
 * answering but computes nothing for WORK_MARGIN x its own estimate + deadline_ms. A stage
 * sends PROGRESS at most every PROGRESS_MS per session while that session's work waits or
 * runs there. */
#define DEFAULT_DEADLINE_MS 5000u
#define PROGRESS_MS 1000u        /* the most a stage waits between two PROGRESS */
#define PROGRESS_MIN_MS 100u      /* the least (an entry with a short deadline asks more often) */
#define WORK_MARGIN 4u
/* An OPEN can be lost without an error reaching the entry: sent while the connection to the
 * stage's node was still being made, or on one that a duplicate replaced. The entry sends the
 * OPENs not yet answered again every OPEN_AGAIN_MS (at most 4 times per deadline); a stage
 * answers a repeated OPEN with OPEN_OK. So a lost OPEN costs about a second, not a deadline. */
#define OPEN_AGAIN_MS 1000u
#define MAX_REOPENS 3
#define MAX_EXCLUDE 64
/* Batched decode: a session's step of at most BATCH_STEP_MAX tokens (a decode step, or the
 * tail of a prompt) waits while a job runs at its stage, and then goes with the other steps
 * that waited meanwhile: up to BATCH_MAX sessions and BATCH_TOKENS tokens in one pass over
 * the weights. Longer steps (prefill chunks) are submitted alone at once, as before. */
#define BATCH_MAX ((uint32_t)SW_PIPE_BATCH_MAX)
#define BATCH_STEP_MAX 4u
#define BATCH_TOKENS 32u
/* Coalescing: sessions that decode at equal speed around a ring of stages never meet by
 * themselves (an idle stage kicks a step at once; the next session is always one step
 * behind: it waited at the previous stage for the first one's step there, so a hold
 * shorter than one step never sees it come). A decode step arriving at an idle stage is
 * held, at most coalesce_pct of the stage's recent decode step time (default 150 %: one
 * step and some), while another session decoding at this stage is due
 * within that bound (by its arrival interval here: steps that arrive together are
 * gathered), or is behind by under half its cycle and nearer than the session ahead (the
 * one ahead the short way round yields: it loses at most the bound per stage until the two
 * arrive together, and from then on they go as one batch). Not below COALESCE_MIN_US of
 * step time (a step that short costs less than the timer) nor over COALESCE_MAX_US of
 * hold. A lone session is never held. */
#define COALESCE_PCT 150u
/* Where the stage does not share its compute (host.shared_compute: one node per machine),
 * aligning sessions would take from the pipeline its stages working on different sessions
 * at once: then only steps due within this much of a step are gathered. */
#define COALESCE_GATHER_PCT 10u
#define COALESCE_MIN_US 1000u
#define COALESCE_MAX_US 250000u

/* ------------------------------------------------------------------ types */

struct chunk {
    struct chunk *next;
    uint32_t pos, n;
    uint8_t dtype;          /* hidden input: wire dtype */
    uint8_t flags;          /* SW_PIPE_TOK_SPEC */
    uint8_t *data;          /* TOKENS: host-order int32; HIDDEN: wire bytes */
    size_t len;
};

/* One session's step inside a compute job. */
struct jent {
    uint64_t session;       /* wire id */
    uint32_t pos, n;
    uint8_t in_dtype;
    uint8_t flags;          /* SW_PIPE_TOK_SPEC: the last stage computes every position's logits */
    uint8_t *in;            /* owned: tokens (int32) or hidden (wire bytes) */
    size_t in_len;
    float *out;             /* owned */
    size_t out_floats;
    int rc;                 /* set by sw_pipe_job_run */
    char msg[160];
};

/* A compute job: one session's step, or the decode steps of several sessions that
 * coincide at this stage, run as one sw_stage_forward_batch (BATCH_MAX entries at most). */
struct sw_pipe_job {
    /* set by the engine */
    struct sw_stage *st;
    int takes_tokens, gives_logits;
    uint32_t n_embd;
    uint32_t n_ent;
    struct jent ent[BATCH_MAX];
    uint64_t submit_us;     /* the engine's clock when it was submitted */
    int short_steps;        /* batchable (decode-sized) steps: times the coalescing bound */
    /* set by sw_pipe_job_run */
    uint64_t compute_us;
    uint64_t cpu_us;        /* the process's CPU time meanwhile (all its threads) */
};

/* A session as seen by one stage. */
struct ssess {
    struct ssess *next;
    uint64_t id;
    struct sw_stage *st;
    uint8_t idx, n_stages, dtype, flags;
    uint8_t route[SW_PIPE_MAX_STAGES][SW_NODE_ID_LEN];
    uint8_t entry[SW_NODE_ID_LEN];
    uint32_t n_ctx, n_known, max_pos, n_stop;
    int32_t stop[SW_PIPE_MAX_STOP];
    struct sw_sampler *smp;  /* last stage */
    uint32_t n_embd, n_vocab;
    int takes_tokens, gives_logits;
    uint32_t accepted;       /* positions queued or computed */
    struct chunk *qh, *qt;
    int busy, dead;
    uint8_t *kept;           /* outputs sent downstream, wire bytes, row i = position i */
    size_t kept_rows, kept_cap_rows, row_bytes;
    uint64_t reserved;       /* bytes counted against max_kv_bytes */
    uint64_t last_us;
    uint32_t computed;       /* positions computed (accepted - computed: work here) */
    uint64_t progress_us;    /* the last PROGRESS sent (0: none) */
    uint64_t progress_every_us; /* as the entry asked (OPEN), within the bounds above */
    uint64_t arr_us;         /* the last decode-sized input's arrival (0: none) */
    uint64_t prev_arr_us;    /* the one before */
    uint64_t cycle_us;       /* the recent interval between two of them (0: unknown) */
    int progress_open;       /* a PROGRESS said "working" and no "done" followed yet */
    /* spot checks (spotcheck.c): flags SW_PIPE_OPEN_WITNESS keeps the hidden rows received,
     * rows [0, recv_rows) all from node recv_from; SW_PIPE_OPEN_AUDIT makes a checker */
    uint8_t *recv;
    size_t recv_rows, recv_cap_rows;
    uint8_t recv_from[SW_NODE_ID_LEN];
    struct spot_chk *chk;
    uint32_t reused;         /* positions copied from the prefix cache at OPEN */
    int started;             /* an input came (the first one sets where computing starts) */
    uint32_t kept_from;      /* the first position whose output is kept (a replay starts there) */
    /* last stage, speculative decoding: the history's tokens (positions hist_base ..
     * hist_base + n_hist - 1, up to n_ctx of them) and the drafts of the step in flight */
    uint32_t spec_k;
    int32_t *hist;
    uint32_t n_hist, hist_base;
    int32_t draft[SW_PIPE_MAX_SPEC];
    uint32_t n_draft, draft_pos; /* draft[i] is the token of position draft_pos + i */
};

enum { E_OPENING = 1, E_RUNNING = 2 };

/* A session opened here (entry). */
struct esess {
    struct esess *next;
    uint64_t handle;         /* the caller's id (stable) */
    uint64_t wire;           /* the id on the wire (changes on a full reopen) */
    struct sw_pipe_session_cb cb;
    int state;
    uint32_t n_stages;
    uint8_t route[SW_PIPE_MAX_STAGES][SW_NODE_ID_LEN];
    uint64_t pending;        /* stages whose OPEN_OK is awaited (bit per stage) */
    uint64_t open_again_at;  /* while pending: when the unanswered OPENs are sent again (0: not set) */
    int failing;             /* stage being replaced (-1: none) */
    int topup;               /* after a failover: also send each token to the first stage */
    int32_t *hist;           /* prompt + generated */
    uint32_t n_hist, n_prompt, max_pos;
    uint8_t *blob;           /* latest sampler state */
    size_t blob_len;
    int32_t stop[SW_PIPE_MAX_STOP];
    uint32_t n_stop;
    uint8_t dtype, flags;
    uint32_t chunk, n_ctx;
    uint64_t deadline_us;    /* no sign of life from the route this long: a stall */
    uint64_t last_sign;      /* the last OPEN_OK / PROGRESS / TOKEN_OUT (or a new route) */
    /* where the work is, from the latest report: stage `holder`; hold_n > 0 when that
     * stage said it computes hold_n tokens (estimate hold_est_us), work_since: when the
     * holder or its computed position last changed */
    uint32_t holder, hold_n, hold_pos;
    uint64_t hold_est_us, work_since;
    int why_code;            /* the code of the last refusal (why) */
    uint32_t reopens;
    uint8_t excl[MAX_EXCLUDE][SW_NODE_ID_LEN];
    uint32_t excl_shard[MAX_EXCLUDE];
    uint32_t n_excl;
    char why[SW_PIPE_MAX_TEXT + 1]; /* the last refusal, for the final error */
    char first_why[200];     /* why the route was first rebuilt, for the final error */
    uint64_t t_open, t_first, t_last;
    uint32_t n_gen;
    struct spot_es *spot;    /* spot checks of this session's stages (spotcheck.c) */
    uint8_t *spot_blob;      /* the sampler state the route's last stage was opened with, */
    size_t spot_blob_len;    /* ... and the first position it draws (spotcheck.c checks the */
    uint32_t spot_last_from; /* ... tokens it drew from there on) */
    int no_prefix;           /* the request asked for no prefix reuse */
    uint32_t reuse_min;      /* while opening: the least of the stages' OPEN_OK reused */
    uint32_t reused;         /* positions the route reused (the input started there) */
    uint8_t *phash;          /* block hashes of hist[0 .. n_hist-1) sent with OPEN */
    uint32_t n_phash;
    uint32_t spec_k;         /* drafted tokens per step (0: off) */
};

/* Entry: the routes of recently finished sessions and their prefixes, so a session that
 * continues one goes to the nodes that cache it. */
#define RECENT_MAX 16u
struct recent {
    uint8_t *hashes;
    uint32_t n_hashes, n_stages;
    uint64_t used;
    uint8_t route[SW_PIPE_MAX_STAGES][SW_NODE_ID_LEN];
};

struct sw_pipe {
    struct sw_pipe_config cfg;
    const struct sw_gvocab *(*vocab_fn)(void *ud); /* sw_pipe_set_vocab_source */
    void *vocab_ud;
    struct ssess *ss;
    struct ssess *dead;      /* closed while a job ran: released when it comes back */
    struct esess *es;
    size_t jobs;
    uint64_t reserved;
    struct sw_pipe_stats st;
    struct sw_buf out;       /* encode scratch */
    struct sw_pipe_hdr *hdr; /* shard headers for light clients (pipeline_header.c) */
    uint64_t us_per_token;   /* stage: recent wall time per token of its jobs (0: none yet) */
    uint64_t us_per_step;    /* stage: recent wall time per job */
    uint64_t us_short_step;  /* stage: recent wall time of a batchable (decode) job */
    uint64_t hold_start;     /* stage: a decode step held since (0: none) */
    struct sw_spot *spot;    /* spot checks: settings, distrusted nodes (spotcheck.c) */
    struct sw_prefix *prefix; /* stage: the prefix cache (NULL: off) */
    struct recent recent[RECENT_MAX]; /* entry: recent routes */
    size_t cap_hi;           /* sw_pipe_max_incoming: the largest step allowed lately */
    uint64_t cap_hi_until;   /* ... until then */
    uint64_t recent_tick;
};

/* ------------------------------------------------------------------ shared calls */

static inline int sw__pipe_id_eq(const uint8_t *a, const uint8_t *b) { return !memcmp(a, b, SW_NODE_ID_LEN); }

static inline int sw__pipe_is_stop(const int32_t *stop, uint32_t n_stop, int32_t t)
{
    for (uint32_t i = 0; i < n_stop; i++)
        if (stop[i] == t) return 1;
    return 0;
}

/* pipeline.c */
const char *sw__pipe_short_id(const uint8_t *id, char *buf, size_t len);
/* Encodes m into the engine's scratch and sends it (borrowed). 0 or a negative sw_err. */
int sw__pipe_send(struct sw_pipe *p, const uint8_t *to, const struct sw_pipe_msg *m);
/* An ERROR for one session to its entry (`to`). */
void sw__pipe_send_error(struct sw_pipe *p, const uint8_t *to, uint64_t session, uint8_t stage, int code,
                         const char *fmt, ...) __attribute__((format(printf, 6, 7)));
struct ssess *sw__pipe_ss_find(struct sw_pipe *p, uint64_t id);
struct esess *sw__pipe_es_by_wire(struct sw_pipe *p, uint64_t id);
struct esess *sw__pipe_es_by_handle(struct sw_pipe *p, uint64_t id);
/* Frees a stage session (already unlinked). */
void sw__pipe_ssess_release(struct sw_pipe *p, struct ssess *s);
/* Unlinks and frees, or parks it on p->dead while a job is in flight (freed by job_done). */
void sw__pipe_ssess_close(struct sw_pipe *p, struct ssess *s);
void sw__pipe_esess_free(struct esess *e);
void sw__pipe_esess_unlink(struct sw_pipe *p, struct esess *e);

/* pipeline_stage.c: the stage role */
void sw__pipe_stage_open(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m, uint64_t now_us);
void sw__pipe_stage_input(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m, uint64_t now_us);
void sw__pipe_stage_replay(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m);
/* CLOSE from the entry: keeps the session's KV in the prefix cache under the hashes it
 * carries (when it can), then closes the session. */
void sw__pipe_stage_close(struct sw_pipe *p, struct ssess *s, const struct sw_pipe_msg *m);
/* Makes room for `need` more bytes under max_kv_bytes by evicting prefix-cache entries:
 * 1 when they fit. */
int sw__pipe_prefix_room(struct sw_pipe *p, uint64_t need);
/* PROGRESS for session s to its entry when due (work here, PROGRESS_MS since the last) or
 * when its work here is done after a "working" one. Returns when the next is due. */
uint64_t sw__pipe_stage_progress(struct sw_pipe *p, struct ssess *s, uint64_t now_us);
/* A held decode step's bound passed (or its session came): kick what waits. */
void sw__pipe_stage_release_hold(struct sw_pipe *p, uint64_t now_us);
/* Kicks every session with input waiting (a checker's claims came). */
void sw__pipe_stage_kick(struct sw_pipe *p, uint64_t now_us);

/* pipeline_entry.c: the entry role */
void sw__pipe_entry_open_ok(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m, uint64_t now_us);
void sw__pipe_entry_error(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m, uint64_t now_us);
void sw__pipe_entry_token(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m, uint64_t now_us);
void sw__pipe_entry_progress(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m, uint64_t now_us);
/* The deadlines of one entry session: reopens it on a stall. Returns the next deadline
 * (UINT64_MAX: none), or 0 when the session is gone (failed). */
uint64_t sw__pipe_entry_check(struct sw_pipe *p, struct esess *e, uint64_t now_us);
/* Stage k of the route is gone: a replica takes its place (or the session fails). */
void sw__pipe_e_failover(struct sw_pipe *p, struct esess *e, uint32_t k, uint64_t now_us, const char *why);
/* Opens a whole new route (avoid_old: other nodes than the current ones where possible). */
void sw__pipe_e_reopen(struct sw_pipe *p, struct esess *e, uint64_t now_us, int avoid_old, const char *why);
void sw__pipe_recent_free(struct sw_pipe *p);

/* spotcheck.c: spot checks of pipeline work (docs/pipeline.md "Spot checks") */
int sw__spot_new(struct sw_pipe *p);
void sw__spot_free(struct sw_pipe *p);
/* Handles AUDIT, CLAIM, VERDICT, and OPEN_OK/ERROR about audit sessions: 1 when taken. */
int sw__spot_receive(struct sw_pipe *p, const uint8_t *from, const struct sw_pipe_msg *m, uint64_t now_us);
/* Entry: a token arrived for e (a check may start); e ends (its checks are closed). */
void sw__spot_entry_token(struct sw_pipe *p, struct esess *e, uint64_t now_us);
void sw__spot_entry_end(struct sw_pipe *p, struct esess *e);
/* Entry: OPEN flags every stage gets (the witness flag while checks are on). */
uint8_t sw__spot_open_flags(const struct sw_pipe *p);
/* Entry: appends the distrusted nodes to an exclusion list of cap ids; returns the count. */
size_t sw__spot_exclude(const struct sw_pipe *p, uint8_t *ex, size_t n, size_t cap);
/* Stage: a HIDDEN message arrived (witness rows); a step's outputs are ready (test hook:
 * perturbs them; checker: compares them). */
void sw__spot_witness(struct ssess *s, const uint8_t *from, const struct sw_pipe_msg *m);
void sw__spot_test_corrupt(struct sw_pipe *p, const struct ssess *s, float *out, uint32_t n_tokens);
void sw__spot_checker_step(struct sw_pipe *p, struct ssess *s);
/* Entry: OPEN goes to the route's last stage (its sampler state and first drawn position). */
void sw__spot_entry_last_open(struct esess *e);
/* Last stage (SW_TEST_WRONG_TOKEN): the token t sampled from lg, or a wrong one. */
int32_t sw__spot_test_token(struct sw_pipe *p, const struct ssess *s, const float *lg, int32_t t);
/* A checker of the last shard: 1 while the step ending at row `end` must wait for the
 * claimed tokens; a step's logits (every row) are checked against them. */
int sw__spot_checker_wait(const struct ssess *s, uint32_t end);
uint32_t sw__spot_checker_logits_from(const struct ssess *s); /* the first row checked */
void sw__spot_checker_logits(struct sw_pipe *p, struct ssess *s, uint32_t pos, uint32_t n, const float *logits);
void sw__spot_ssess_free(struct ssess *s);
void sw__spot_settings(const struct sw_pipe *p, double *rate, double *rtol);
/* A job came back: its audit sessions' share of compute_us goes to stats.audit_compute_us. */
void sw__spot_job_account(struct sw_pipe *p, const struct sw_pipe_job *j);

#endif
