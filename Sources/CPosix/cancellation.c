#include "cancellation.h"
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <unistd.h>

static inline uint64_t pack(uint64_t sequence, uint64_t state) { return (sequence << 2) | state; }

static void drain(fks_cancellation *c) {
    uint64_t sink;
    while (read(c->eventfd, &sink, sizeof sink) < 0 && errno == EINTR) {}
}

bool fks_cancellation_begin(fks_cancellation *c, uint64_t sequence) {
    // A cancel that lost the race with the previous send's end may have
    // written after that end drained: start clean. (Senders re-check the
    // state after every wake-up anyway, so a stale wake is only a hint.)
    drain(c);
    uint64_t seen = atomic_load_explicit(&c->word, memory_order_acquire);
    if ((seen & 3) == FKS_SEND_RUNNING || (seen & 3) == FKS_SEND_CANCELLING) return false;
    // Idle, or a cancelled send that already ended: replace it.
    return atomic_compare_exchange_strong_explicit(&c->word, &seen, pack(sequence, FKS_SEND_RUNNING),
                                                   memory_order_acq_rel, memory_order_acquire);
}

bool fks_cancellation_end(fks_cancellation *c, uint64_t sequence) {
    uint64_t seen = atomic_load_explicit(&c->word, memory_order_acquire);
    for (;;) {
        // A cancel that claimed this send is between its two stores (a
        // thread preempted there): wait for it, so the reason read after
        // this end is this send's, never the previous cancellation's.
        if (seen == pack(sequence, FKS_SEND_CANCELLING)) {
            sched_yield();
            seen = atomic_load_explicit(&c->word, memory_order_acquire);
            continue;
        }
        if (atomic_compare_exchange_weak_explicit(&c->word, &seen, pack(sequence, FKS_SEND_IDLE),
                                                  memory_order_acq_rel, memory_order_acquire)) break;
    }
    bool cancelled = seen == pack(sequence, FKS_SEND_CANCELLED);
    drain(c);  // consume the wake-up meant for this send (the fd is non-blocking)
    return cancelled;
}

bool fks_cancellation_cancel(fks_cancellation *c, uint64_t sequence, uint64_t reason) {
    uint64_t expected = pack(sequence, FKS_SEND_RUNNING);
    // Claim the send (running → cancelling), store the reason, then show
    // it cancelled: whoever sees "cancelled" (release/acquire) sees this
    // reason. Going straight to "cancelled" let a sender read the previous
    // cancellation's reason when this thread was preempted between the two.
    if (!atomic_compare_exchange_strong_explicit(&c->word, &expected, pack(sequence, FKS_SEND_CANCELLING),
                                                 memory_order_acq_rel, memory_order_acquire)) {
        return false;
    }
    atomic_store_explicit(&c->reason, reason, memory_order_release);
    // Only this caller moves the word out of "cancelling" (end waits for it).
    atomic_store_explicit(&c->word, pack(sequence, FKS_SEND_CANCELLED), memory_order_release);
    atomic_fetch_add_explicit(&c->cancels, 1, memory_order_relaxed);
    uint64_t one = 1;
    int saved = errno;  // a signal handler must leave errno as it found it
    while (write(c->eventfd, &one, sizeof one) < 0 && errno == EINTR) {}
    errno = saved;
    return true;
}

bool fks_cancellation_cancel_current(fks_cancellation *c, uint64_t reason) {
    uint64_t seen = atomic_load_explicit(&c->word, memory_order_acquire);
    if ((seen & 3) != FKS_SEND_RUNNING) return false;
    return fks_cancellation_cancel(c, seen >> 2, reason);
}

bool fks_cancellation_is_cancelled(const fks_cancellation *c, uint64_t sequence) {
    return atomic_load_explicit(&c->word, memory_order_acquire) == pack(sequence, FKS_SEND_CANCELLED);
}

uint64_t fks_cancellation_running(const fks_cancellation *c) {
    uint64_t seen = atomic_load_explicit(&c->word, memory_order_acquire);
    return (seen & 3) == FKS_SEND_RUNNING ? seen >> 2 : 0;
}
