/* mapguard.c — mapped files that may shrink under us. Another process can truncate a shard
 * file while it is mapped; the next read of a page past the new end raises SIGBUS, which
 * would kill the node with no log line. For an address inside a guarded range, the handler
 * maps anonymous zero pages over the rest of the range (MAP_FIXED) and counts the fault:
 * the read goes on with zeros, and the owner of the range sees sw_map_guard_faults() > 0
 * and fails whatever it computed from it. Any other SIGBUS keeps its old meaning.
 * Not for: detecting that a file changed (the node polls stat for that). */
#include "util.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define GUARD_SLOTS 1024

/* Read by the signal handler without locks: lo is set last and cleared first. */
static struct {
    uintptr_t lo, hi;
    uint64_t faults;
} slots[GUARD_SLOTS];
static pthread_mutex_t guard_mu = PTHREAD_MUTEX_INITIALIZER;
static int installed;
static struct sigaction old_bus;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    uintptr_t a = (uintptr_t)si->si_addr;
    for (size_t i = 0; i < GUARD_SLOTS; i++) {
        uintptr_t lo = __atomic_load_n(&slots[i].lo, __ATOMIC_ACQUIRE);
        if (!lo || a < lo || a >= __atomic_load_n(&slots[i].hi, __ATOMIC_ACQUIRE)) continue;
        uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
        uintptr_t from = a & ~(pg - 1), to = (slots[i].hi + pg - 1) & ~(pg - 1);
        /* zeros from the faulting page to the end: a truncated tail faults once, not per page */
        if (mmap((void *)from, to - from, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED) {
            __atomic_add_fetch(&slots[i].faults, 1, __ATOMIC_RELEASE);
            return; /* the faulting instruction runs again and reads zeros */
        }
        break;
    }
    /* not ours (or the remap failed): what SIGBUS did before */
    if (old_bus.sa_flags & SA_SIGINFO) {
        if (old_bus.sa_sigaction) { old_bus.sa_sigaction(sig, si, uc); return; }
    } else if (old_bus.sa_handler != SIG_DFL && old_bus.sa_handler != SIG_IGN) {
        old_bus.sa_handler(sig);
        return;
    }
    signal(SIGBUS, SIG_DFL); /* a fault: the instruction faults again and the default action applies */
    if (si->si_code <= 0) raise(sig); /* sent by kill()/tgkill(): nothing re-executes, deliver it */
}

int sw_map_guard_add(const void *p, size_t len)
{
    if (!p || !len) return SW_EINVAL;
    pthread_mutex_lock(&guard_mu);
    if (!installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_sigbus;
        sa.sa_flags = SA_SIGINFO | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGBUS, &sa, &old_bus)) {
            pthread_mutex_unlock(&guard_mu);
            return SW_EIO;
        }
        installed = 1;
    }
    int rc = SW_ENOMEM;
    for (size_t i = 0; i < GUARD_SLOTS; i++) {
        if (__atomic_load_n(&slots[i].lo, __ATOMIC_ACQUIRE)) continue;
        __atomic_store_n(&slots[i].faults, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&slots[i].hi, (uintptr_t)p + len, __ATOMIC_RELEASE);
        __atomic_store_n(&slots[i].lo, (uintptr_t)p, __ATOMIC_RELEASE);
        rc = 0;
        break;
    }
    pthread_mutex_unlock(&guard_mu);
    return rc;
}

void sw_map_guard_remove(const void *p)
{
    if (!p) return;
    pthread_mutex_lock(&guard_mu);
    for (size_t i = 0; i < GUARD_SLOTS; i++)
        if (__atomic_load_n(&slots[i].lo, __ATOMIC_ACQUIRE) == (uintptr_t)p) {
            __atomic_store_n(&slots[i].lo, 0, __ATOMIC_RELEASE);
            __atomic_store_n(&slots[i].hi, 0, __ATOMIC_RELEASE);
            break;
        }
    pthread_mutex_unlock(&guard_mu);
}

uint64_t sw_map_guard_faults(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    for (size_t i = 0; a && i < GUARD_SLOTS; i++) {
        uintptr_t lo = __atomic_load_n(&slots[i].lo, __ATOMIC_ACQUIRE);
        if (lo && a >= lo && a < __atomic_load_n(&slots[i].hi, __ATOMIC_ACQUIRE))
            return __atomic_load_n(&slots[i].faults, __ATOMIC_ACQUIRE);
    }
    return 0;
}
