/* cores.c — a machine's cores shared by the processes that compute on it (several
 * shardswarm nodes on one machine): one lock file per core in a per-user folder; a stage
 * holds the flock(2) of as many of them as it computes with, for the length of one forward
 * call. The kernel drops the locks of a process that dies (kill -9 included), so a crash
 * never leaks a core, and no daemon or shared counter is needed.
 * Work-conserving and fair: alone, a stage computes with all its threads; a stage that
 * finds no free core announces itself (a shared lock on the "waiting" file) and polls; the
 * holders see it between layers (sw_cores_rebalance) and halve what they hold, so two busy
 * nodes on two cores settle at one core each, and grow back when the other is idle.
 * Not for: cores of other machines, or scheduling inside one process (one stage's pool). */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "infer/infer.h"

struct sw_cores {
    unsigned n;      /* cores in the budget (lock files) */
    unsigned start;  /* where this lease starts looking (spreads processes over the files) */
    int *fd;         /* n lock files, each its own open file description */
    int wait_fd;     /* "waiting": shared-locked by leases that wait for a core */
    unsigned *held;  /* indices held by the current claim */
    unsigned n_held;
    int broken;      /* a lock failed for another reason than contention: no lease */
    _Atomic uint64_t waits, wait_us; /* read by other threads (status) */
    char dir[512];
};

/* The folder: DIR if given, else /dev/shm (a tmpfs every Linux has) or $TMPDIR or /tmp,
 * + "shardswarm-cores-<uid>". It must be ours and not a link: another user's folder (or a
 * planted link) would let them starve or confuse our nodes. */
static int lease_dir(const char *dir, char *out, size_t out_len, char *err, size_t err_len)
{
    if (dir && *dir) {
        snprintf(out, out_len, "%s", dir);
    } else {
        const char *base = "/dev/shm";
        struct stat st;
        if (stat(base, &st) || !S_ISDIR(st.st_mode) || access(base, W_OK)) {
            base = getenv("TMPDIR");
            if (!base || !*base) base = "/tmp";
        }
        snprintf(out, out_len, "%s/shardswarm-cores-%u", base, (unsigned)getuid());
    }
    if (mkdir(out, 0700) && errno != EEXIST) {
        snprintf(err, err_len, "%s: cannot create the core-lease folder: %s", out, strerror(errno));
        return SW_EIO;
    }
    struct stat st;
    if (lstat(out, &st) || !S_ISDIR(st.st_mode) || st.st_uid != getuid()) {
        snprintf(err, err_len, "%s: not a folder owned by this user (core lease)", out);
        return SW_EINVAL;
    }
    return 0;
}

int sw_cores_open(unsigned budget, const char *dir, struct sw_cores **out, char *err, size_t err_len)
{
    char e[256] = "", d[512];
    *out = NULL;
    if (!err || !err_len) { /* the caller does not want the message */
        err = e;
        err_len = sizeof e;
    }
    if (budget < 1 || budget > SW_CORES_MAX) {
        snprintf(err, err_len, "core budget %u out of range 1..%u", budget, SW_CORES_MAX);
        return SW_EINVAL;
    }
    int rc = lease_dir(dir, d, sizeof d, err, err_len);
    if (rc) return rc;
    struct sw_cores *c = calloc(1, sizeof *c);
    if (!c) return SW_ENOMEM;
    c->n = budget;
    snprintf(c->dir, sizeof c->dir, "%s", d);
    c->start = (unsigned)getpid() % budget;
    c->fd = malloc(budget * sizeof *c->fd);
    c->held = malloc(budget * sizeof *c->held);
    if (!c->fd || !c->held) {
        free(c->fd);
        free(c->held);
        free(c);
        return SW_ENOMEM;
    }
    for (unsigned i = 0; i < budget; i++) c->fd[i] = -1;
    char wpath[600];
    snprintf(wpath, sizeof wpath, "%s/waiting", d);
    c->wait_fd = open(wpath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (c->wait_fd < 0) {
        snprintf(err, err_len, "%s: %s", wpath, strerror(errno));
        c->n = 0;
        sw_cores_close(c);
        return SW_EIO;
    }
    for (unsigned i = 0; i < budget; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/core-%u", d, i);
        c->fd[i] = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (c->fd[i] < 0) {
            snprintf(err, err_len, "%s: %s", path, strerror(errno));
            c->n = i;
            sw_cores_close(c);
            return SW_EIO;
        }
    }
    *out = c;
    return 0;
}

void sw_cores_close(struct sw_cores *c)
{
    if (!c) return;
    for (unsigned i = 0; i < c->n; i++)
        if (c->fd[i] >= 0) close(c->fd[i]); /* drops any lock still held */
    if (c->wait_fd >= 0) close(c->wait_fd);
    free(c->fd);
    free(c->held);
    free(c);
}

static int lock_fd(int fd, int op)
{
    int r;
    while ((r = flock(fd, op)) && errno == EINTR) {
    }
    return r;
}

static int is_held(const struct sw_cores *c, unsigned i)
{
    for (unsigned k = 0; k < c->n_held; k++)
        if (c->held[k] == i) return 1;
    return 0;
}

/* Takes free cores (non-blocking) until `want` are held. A lock that fails for another
 * reason than "held by someone" (EWOULDBLOCK) marks the lease broken: compute unleased. */
static void take_free(struct sw_cores *c, unsigned want)
{
    for (unsigned k = 0; k < c->n && c->n_held < want; k++) {
        unsigned i = (c->start + k) % c->n;
        if (is_held(c, i)) continue;
        if (!lock_fd(c->fd[i], LOCK_EX | LOCK_NB)) c->held[c->n_held++] = i;
        else if (errno != EWOULDBLOCK && !c->broken) {
            c->broken = 1;
            sw_log(SW_LOG_WARN, "INFER", "%s: core lease lock failed (%s): computing without it", c->dir,
                   strerror(errno));
        }
    }
}

/* Poll period of a waiting lease: short next to a step (ms), long next to a flock (~1 µs). */
#define WAIT_POLL_NS 40000L
/* A wait longer than any step: a holder that is stopped (SIGSTOP, a debugger) must not stall
 * this node; past it the step computes on one thread without a claim. */
#define WAIT_MAX_US 2000000u

unsigned sw_cores_claim(struct sw_cores *c, unsigned want)
{
    if (!c) return want ? want : 1;
    if (want < 1) want = 1;
    if (want > c->n) want = c->n;
    c->n_held = 0;
    if (c->broken) return want;
    take_free(c, want);
    if (c->broken) {
        sw_cores_release(c);
        return want;
    }
    if (!c->n_held) {
        /* every core computes for someone: say so (the holders give up half of theirs at
         * their next layer) and poll for any core that frees */
        uint64_t t0 = sw_time_us();
        int announced = !lock_fd(c->wait_fd, LOCK_SH);
        int overdue = 0;
        while (!c->n_held && !c->broken && !overdue) {
            struct timespec ts = { 0, WAIT_POLL_NS };
            nanosleep(&ts, NULL);
            take_free(c, want);
            overdue = sw_time_us() - t0 > WAIT_MAX_US;
        }
        if (announced) lock_fd(c->wait_fd, LOCK_UN);
        if (!c->n_held) { /* broken, or every holder stuck: no claim */
            if (c->broken) return want;
            sw_log(SW_LOG_WARN, "INFER", "%s: no core came free in %u ms; computing on one thread anyway", c->dir,
                   WAIT_MAX_US / 1000);
            return 1;
        }
        atomic_fetch_add_explicit(&c->waits, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->wait_us, sw_time_us() - t0, memory_order_relaxed);
    }
    return c->n_held;
}

unsigned sw_cores_rebalance(struct sw_cores *c, unsigned want)
{
    if (!c) return want ? want : 1;
    if (want < 1) want = 1;
    if (want > c->n) want = c->n;
    if (c->broken) return want; /* as claim: unleased */
    if (!c->n_held) return 1;   /* a step that gave up waiting computes on one thread */
    /* someone waits when the exclusive probe of "waiting" fails */
    int waiting = 0;
    if (!lock_fd(c->wait_fd, LOCK_EX | LOCK_NB)) lock_fd(c->wait_fd, LOCK_UN);
    else waiting = errno == EWOULDBLOCK;
    if (waiting) {
        unsigned keep = c->n_held > 1 ? c->n_held / 2 : c->n_held;
        while (c->n_held > keep) lock_fd(c->fd[c->held[--c->n_held]], LOCK_UN);
    } else if (c->n_held < want) {
        take_free(c, want);
    }
    return c->n_held;
}

void sw_cores_release(struct sw_cores *c)
{
    if (!c) return;
    for (unsigned k = 0; k < c->n_held; k++) lock_fd(c->fd[c->held[k]], LOCK_UN);
    c->n_held = 0;
}

unsigned sw_cores_budget(const struct sw_cores *c)
{
    return c ? c->n : 0;
}

void sw_cores_waited(const struct sw_cores *c, uint64_t *waits, uint64_t *wait_us)
{
    *waits = c ? atomic_load_explicit(&c->waits, memory_order_relaxed) : 0;
    *wait_us = c ? atomic_load_explicit(&c->wait_us, memory_order_relaxed) : 0;
}

const char *sw_cores_dir(const struct sw_cores *c)
{
    return c ? c->dir : NULL;
}
