/* threadpool.c — persistent worker threads for the kernels: one dispatch runs a task's
 * nth parts (fn(arg, ith, nth)) and returns when all are done. The caller runs part 0 and
 * then any part whose worker has not claimed it yet, so a worker that is descheduled (a
 * busy 2-core machine) never holds up a dispatch it has not started. Workers spin for a
 * short while after a task (the generation loop dispatches ~150 tasks per token), then
 * sleep on a futex so an idle pool costs no CPU. The number of parts per dispatch can be
 * lowered below the pool's size (sw_k_pool_set_active: the cores this process may use right
 * now); the workers beyond it park on a second futex and neither spin nor wake.
 * Not for: general job queues (libuv's pool) or anything with more than one producer. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#include "infer/kernels_impl.h"

/* Spin iterations (each a pause, ~10-40 ns) before a worker goes to sleep: ~100 µs
 * covers the gap between the dispatches of one token. */
#define SPIN_BEFORE_SLEEP 4000

struct sw_k_worker {
    struct sw_k_pool *pool;
    pthread_t thread;
    int ith;
    /* Generation of the last dispatch whose part ith was claimed (by this worker or by
     * the caller). Every part of every dispatch is claimed before it completes, so when
     * dispatch g starts all claims hold g-1, and a claim is CAS(g-1 -> g): exactly one
     * claimant wins, and a worker still holding an old g can never win a newer part. */
    _Atomic uint32_t claim;
    char pad[64];
};

struct sw_k_pool {
    int n_threads;
    struct sw_k_worker *workers; /* n_threads - 1; worker i runs part i + 1 */
    _Atomic uint32_t gen;        /* bumped for every dispatch (futex word) */
    _Atomic int parts_done;      /* parts 1..n-1 finished in the current dispatch */
    _Atomic int sleepers;        /* workers in (or entering) futex wait */
    _Atomic int stop;
    _Atomic int active;          /* parts per dispatch, 1..n_threads (sw_k_pool_set_active) */
    _Atomic uint32_t active_seq; /* bumped when active grows or the pool stops (futex word) */
    _Atomic int parked;          /* workers in (or entering) the active_seq wait */
    int nth;         /* parts of the current dispatch: written before gen is bumped */
    sw_k_task_fn fn; /* written before gen is bumped; read only after a successful claim */
    void *arg;
    void *scratch; /* matmul activations (sw__k_pool_scratch) */
    size_t scratch_len;
};

static void gen_wait(struct sw_k_pool *p, uint32_t seen)
{
#if defined(__linux__)
    syscall(SYS_futex, (uint32_t *)&p->gen, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
#else
    (void)p;
    (void)seen;
    struct timespec ts = {0, 50000};
    nanosleep(&ts, NULL);
#endif
}

static void gen_wake_all(struct sw_k_pool *p)
{
#if defined(__linux__)
    syscall(SYS_futex, (uint32_t *)&p->gen, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
#else
    (void)p;
#endif
}

/* A worker beyond the active count waits here until set_active lets it take part again
 * (or the pool stops); it neither spins nor is woken by dispatches meanwhile. */
static void park(struct sw_k_pool *p, const struct sw_k_worker *w)
{
    atomic_fetch_add(&p->parked, 1);
    for (;;) {
        uint32_t seq = atomic_load(&p->active_seq);
        if (w->ith < atomic_load(&p->active) || atomic_load(&p->stop)) break;
#if defined(__linux__)
        syscall(SYS_futex, (uint32_t *)&p->active_seq, FUTEX_WAIT_PRIVATE, seq, NULL, NULL, 0);
#else
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
#endif
    }
    atomic_fetch_sub(&p->parked, 1);
}

static int claim_part(struct sw_k_worker *w, uint32_t g)
{
    uint32_t expect = g - 1;
    return atomic_compare_exchange_strong(&w->claim, &expect, g);
}

static void park_wake_all(struct sw_k_pool *p)
{
#if defined(__linux__)
    syscall(SYS_futex, (uint32_t *)&p->active_seq, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
#else
    (void)p;
#endif
}

static void *worker_main(void *arg)
{
    struct sw_k_worker *w = arg;
    struct sw_k_pool *p = w->pool;
    uint32_t seen = 0; /* gen at creation: a dispatch may come before this thread runs */
    for (;;) {
        uint32_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) {
            if (w->ith >= atomic_load_explicit(&p->active, memory_order_relaxed) &&
                !atomic_load_explicit(&p->stop, memory_order_relaxed)) {
                park(p, w);
                spins = 0;
                continue;
            }
            if (++spins < SPIN_BEFORE_SLEEP) {
                /* on an oversubscribed machine let a runnable thread (often the caller,
                 * preparing the next dispatch) have this core now and then */
                if (!(spins & 255)) sched_yield();
                else CPU_RELAX();
                continue;
            }
            atomic_fetch_add(&p->sleepers, 1);
            /* re-check after announcing ourselves, so a bump in between is not missed */
            if (atomic_load_explicit(&p->gen, memory_order_acquire) == seen) gen_wait(p, seen);
            atomic_fetch_sub(&p->sleepers, 1);
            spins = 0;
        }
        seen = g;
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        if (!claim_part(w, g)) continue; /* the caller ran our part already (or g is stale) */
        if (w->ith < p->nth) p->fn(p->arg, w->ith, p->nth); /* else: not in this dispatch */
        atomic_fetch_add_explicit(&p->parts_done, 1, memory_order_acq_rel);
    }
    return NULL;
}

int sw_k_pool_new(int n_threads, struct sw_k_pool **out)
{
    *out = NULL;
    if (n_threads < 1 || n_threads > 1024) return SW_EINVAL;
    struct sw_k_pool *p = calloc(1, sizeof(*p));
    if (!p) return SW_ENOMEM;
    p->n_threads = n_threads;
    atomic_init(&p->gen, 0);
    atomic_init(&p->parts_done, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->active, n_threads);
    atomic_init(&p->active_seq, 0);
    atomic_init(&p->parked, 0);
    p->nth = n_threads;
    if (n_threads > 1) {
        p->workers = calloc((size_t)n_threads - 1, sizeof(*p->workers));
        if (!p->workers) {
            free(p);
            return SW_ENOMEM;
        }
        for (int i = 0; i < n_threads - 1; i++) {
            p->workers[i].pool = p;
            p->workers[i].ith = i + 1;
            atomic_init(&p->workers[i].claim, 0);
        }
        for (int i = 0; i < n_threads - 1; i++) {
            if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i])) {
                p->n_threads = i + 1; /* the ones started so far, for shutdown */
                sw_k_pool_free(p);
                return SW_ENOMEM;
            }
        }
    }
    *out = p;
    return 0;
}

void sw_k_pool_free(struct sw_k_pool *p)
{
    if (!p) return;
    if (p->workers) {
        atomic_store_explicit(&p->stop, 1, memory_order_release);
        atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
        gen_wake_all(p);
        atomic_fetch_add(&p->active_seq, 1);
        park_wake_all(p);
        for (int i = 0; i < p->n_threads - 1; i++) pthread_join(p->workers[i].thread, NULL);
        free(p->workers);
    }
    free(p->scratch);
    free(p);
}

int sw_k_pool_n_threads(const struct sw_k_pool *p)
{
    return p ? p->n_threads : 1;
}

int sw_k_pool_active(const struct sw_k_pool *p)
{
    return p ? atomic_load_explicit(&p->active, memory_order_relaxed) : 1;
}

void sw_k_pool_set_active(struct sw_k_pool *p, int n)
{
    if (!p) return;
    if (n < 1) n = 1;
    if (n > p->n_threads) n = p->n_threads;
    int old = atomic_exchange(&p->active, n);
    if (n > old) {
        atomic_fetch_add(&p->active_seq, 1); /* seq_cst: ordered against the parked load */
        if (atomic_load(&p->parked) > 0) park_wake_all(p);
    }
}

void sw_k_pool_run(struct sw_k_pool *p, sw_k_task_fn fn, void *arg)
{
    const int nth = p ? atomic_load_explicit(&p->active, memory_order_relaxed) : 1;
    if (nth == 1) { /* no dispatch at all: the workers' claims stay as they are */
        fn(arg, 0, 1);
        return;
    }
    /* Every worker's slot is claimed in every dispatch (by the worker or here), parts
     * beyond nth without running anything, so the claim invariant holds for any nth. */
    const int nw = p->n_threads - 1;
    p->nth = nth;
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->parts_done, 0, memory_order_relaxed);
    uint32_t g = atomic_fetch_add(&p->gen, 1) + 1; /* seq_cst: ordered against the sleepers load */
    for (int i = nth - 1; i < nw; i++) /* slots not in this dispatch */
        if (claim_part(&p->workers[i], g)) atomic_fetch_add_explicit(&p->parts_done, 1, memory_order_relaxed);
    if (atomic_load(&p->sleepers) > 0) gen_wake_all(p);
    fn(arg, 0, nth);
    /* parts no worker has started yet: run them here rather than wait for their thread */
    for (int i = 0; i < nth - 1; i++) {
        if (!claim_part(&p->workers[i], g)) continue;
        fn(arg, i + 1, nth);
        atomic_fetch_add_explicit(&p->parts_done, 1, memory_order_relaxed);
    }
    int spins = 0;
    while (atomic_load_explicit(&p->parts_done, memory_order_acquire) < nw) {
        if (++spins < 2000) CPU_RELAX();
        else sched_yield(); /* a worker that started its part was descheduled */
    }
}

void *sw__k_pool_scratch(struct sw_k_pool *p, size_t n_bytes)
{
    if (n_bytes <= p->scratch_len) return p->scratch;
    size_t want = n_bytes + n_bytes / 4 + 64;
    void *b = NULL;
    if (posix_memalign(&b, 64, want)) return NULL;
    free(p->scratch);
    p->scratch = b;
    p->scratch_len = want;
    return b;
}

void sw_k_split(int64_t n, int64_t align, int ith, int nth, int64_t *begin, int64_t *end)
{
    if (align < 1) align = 1;
    int64_t units = (n + align - 1) / align;
    int64_t per = units / nth, extra = units % nth;
    int64_t b = ith * per + (ith < extra ? ith : extra);
    int64_t e = b + per + (ith < extra ? 1 : 0);
    b *= align;
    e *= align;
    *begin = b < n ? b : n;
    *end = e < n ? e : n;
}
