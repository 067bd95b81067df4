/*
 * Internal to libforkscope (not part of the ABI; symbols hidden): the
 * exporter handle table's state that a signal handler reads. Kept in C
 * atomics so forkscope_exporter_cancel_send_signal_safe runs no Swift
 * code: no runtime initialisation, no reference counting, no lock.
 */
#ifndef FORKSCOPE_SLOTS_H
#define FORKSCOPE_SLOTS_H

#include <stdint.h>
#include <stdbool.h>
#include "cancellation.h"

#define FKSC_HIDDEN __attribute__((visibility("hidden")))

/** Exporters a process may have open at once. */
#define FKSC_SLOT_COUNT 256

/** A slot's state word: (generation << 1) | open. Generation 0: never used. */
FKSC_HIDDEN uint64_t fksc_slot_state(uint32_t index);

/** Publishes an open slot: its cancellation word first, then the state
 *  (release), so a handler that sees "open" sees the word. */
FKSC_HIDDEN void fksc_slot_open(uint32_t index, uint64_t generation, fks_cancellation *cancellation);

/** Marks the slot closed (same generation), then waits until no signal
 *  handler is inside a cancel on it; after that the cancellation word may
 *  be freed. */
FKSC_HIDDEN void fksc_slot_close(uint32_t index);

/** In a forked child: cancels counted in the parent by threads that do not
 *  exist here never finish; forget them. */
FKSC_HIDDEN void fksc_slots_forget_users(void);

/** The largest forkscope_cancel_reason (set once from the Swift list). */
FKSC_HIDDEN void fksc_set_max_cancel_reason(uint32_t reason);

#endif
