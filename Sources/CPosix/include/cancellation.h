// Cancellation state a signal handler may touch: plain C atomics, so a
// handler runs no Swift initialisation and no reference counting.
#ifndef FORKSCOPE_CANCELLATION_H
#define FORKSCOPE_CANCELLATION_H

#include <stdint.h>
#include <stdbool.h>
#include <stdatomic.h>

/// One per transport, created once (the eventfd never changes while the
/// transport lives, so cancelling never races with an fd being closed and
/// its number reused).
///
/// `word` = (send sequence << 2) | state. States: 0 idle (no send running),
/// 1 running, 2 cancelled, 3 cancelling (a cancel is storing its reason).
/// `reason` is the last cancellation's reason, stored before the word
/// shows "cancelled".
typedef struct fks_cancellation {
    _Atomic uint64_t word;
    _Atomic uint64_t reason;
    _Atomic uint64_t cancels;   // successful cancellations
    int eventfd;
} fks_cancellation;

enum { FKS_SEND_IDLE = 0, FKS_SEND_RUNNING = 1, FKS_SEND_CANCELLED = 2, FKS_SEND_CANCELLING = 3 };

/// Marks send `sequence` as running. Returns false if the word was not idle.
bool fks_cancellation_begin(fks_cancellation *c, uint64_t sequence);
/// Ends send `sequence`; returns true when it had been cancelled (the
/// reason is then in `reason`). Drains the eventfd so the next send starts
/// with no stale wake-up.
bool fks_cancellation_end(fks_cancellation *c, uint64_t sequence);
/// Cancels send `sequence` if it is the one running: compare-and-swap
/// running → cancelled, then one write(2) to the eventfd. A cancel aimed at
/// a finished send matches nothing and does nothing. Async-signal-safe.
bool fks_cancellation_cancel(fks_cancellation *c, uint64_t sequence, uint64_t reason);
/// Cancels whichever send is running now. Async-signal-safe.
bool fks_cancellation_cancel_current(fks_cancellation *c, uint64_t reason);
/// Whether send `sequence` has been cancelled.
bool fks_cancellation_is_cancelled(const fks_cancellation *c, uint64_t sequence);
/// The sequence of the running send, or 0.
uint64_t fks_cancellation_running(const fks_cancellation *c);

#endif
