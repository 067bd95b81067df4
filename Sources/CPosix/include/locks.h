#ifndef FORKSCOPE_LOCKS_H
#define FORKSCOPE_LOCKS_H
#include <pthread.h>
#include <time.h>
/// pthread_mutex_clocklock on CLOCK_MONOTONIC (a GNU extension, so it is
/// wrapped here rather than imported): a lock wait with a deadline that a
/// wall-clock change cannot stretch. Returns 0, ETIMEDOUT or an error number.
int fks_mutex_lock_until(pthread_mutex_t *mutex, const struct timespec *monotonic_deadline);
/// pthread_tryjoin_np (a GNU extension): 0 once the thread has ended and
/// is joined, EBUSY while it still runs.
int fks_thread_tryjoin(pthread_t thread);
/// pthread_setname_np for the calling thread (≤ 15 bytes; longer is cut).
int fks_set_current_thread_name(const char *name);
/// SIGRTMIN is a function call in glibc (the first few are taken by the
/// threads library), so Swift cannot import it as a constant.
#include <signal.h>
static inline int fks_sigrtmin(void) { return SIGRTMIN; }
#endif
