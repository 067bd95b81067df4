// The part of the exporter handle table a signal handler touches, and the
// async-signal-safe cancel itself. The Swift side (ForkscopeC) owns the
// exporters and serialises open/close under its table lock; this file only
// holds what must be readable without a lock or the Swift runtime.
#include "forkscope.h"
#include "forkscope_slots.h"

#include <sched.h>
#include <stdatomic.h>

struct fksc_slot {
    _Atomic uint64_t state;   // (generation << 1) | open
    _Atomic uint64_t users;   // cancels in progress (signal handlers, other threads)
    _Atomic(fks_cancellation *) cancellation;
};

// Static storage: never moves, never freed, zero (never used) at load.
static struct fksc_slot slots[FKSC_SLOT_COUNT];
static _Atomic uint32_t max_cancel_reason;

uint64_t fksc_slot_state(uint32_t index) {
    return atomic_load_explicit(&slots[index].state, memory_order_acquire);
}

void fksc_slot_open(uint32_t index, uint64_t generation, fks_cancellation *cancellation) {
    atomic_store_explicit(&slots[index].cancellation, cancellation, memory_order_relaxed);
    atomic_store_explicit(&slots[index].state, (generation << 1) | 1, memory_order_release);
}

void fksc_slot_close(uint32_t index) {
    struct fksc_slot *slot = &slots[index];
    // Read-modify-writes on both words (not a store then a load): a cancel
    // increments `users` then loads `state`; with RMWs on each side one of
    // them sees the other (Dekker's pattern needs more than release/acquire).
    atomic_fetch_and_explicit(&slot->state, ~(uint64_t)1, memory_order_acq_rel);
    while (atomic_fetch_add_explicit(&slot->users, 0, memory_order_acq_rel) != 0) sched_yield();
    atomic_store_explicit(&slot->cancellation, (fks_cancellation *)0, memory_order_relaxed);
}

void fksc_slots_forget_users(void) {
    for (int i = 0; i < FKSC_SLOT_COUNT; i++) atomic_store_explicit(&slots[i].users, 0, memory_order_relaxed);
}

void fksc_set_max_cancel_reason(uint32_t reason) {
    atomic_store_explicit(&max_cancel_reason, reason, memory_order_release);
}

int forkscope_exporter_cancel_send_signal_safe(forkscope_exporter exporter, uint32_t reason) {
    uint64_t index = exporter & 0xFFFFFFFFu;
    uint64_t generation = exporter >> 32;
    if (index == 0 || index > FKSC_SLOT_COUNT || generation == 0) return FORKSCOPE_E_BAD_HANDLE;
    struct fksc_slot *slot = &slots[index - 1];
    atomic_fetch_add_explicit(&slot->users, 1, memory_order_acq_rel);
    uint64_t state = atomic_load_explicit(&slot->state, memory_order_acquire);
    int status;
    if (state == ((generation << 1) | 1)) {
        if (reason == 0 || reason > atomic_load_explicit(&max_cancel_reason, memory_order_acquire)) {
            status = FORKSCOPE_E_INVALID_ARGUMENT;
        } else {
            fks_cancellation *cancellation = atomic_load_explicit(&slot->cancellation, memory_order_relaxed);
            status = fks_cancellation_cancel_current(cancellation, reason) ? FORKSCOPE_OK : FORKSCOPE_E_NO_SEND;
        }
    } else if ((state >> 1) >= generation) {
        status = FORKSCOPE_E_CLOSED;
    } else {
        status = FORKSCOPE_E_BAD_HANDLE;
    }
    atomic_fetch_sub_explicit(&slot->users, 1, memory_order_acq_rel);
    return status;
}
