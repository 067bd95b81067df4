#define _GNU_SOURCE 1
#include <pthread.h>
#include <string.h>
#include <time.h>
#include "locks.h"

int fks_mutex_lock_until(pthread_mutex_t *mutex, const struct timespec *monotonic_deadline) {
    return pthread_mutex_clocklock(mutex, CLOCK_MONOTONIC, monotonic_deadline);
}

int fks_thread_tryjoin(pthread_t thread) {
    return pthread_tryjoin_np(thread, NULL);
}

int fks_set_current_thread_name(const char *name) {
    char cut[16];
    strncpy(cut, name, sizeof cut - 1);
    cut[sizeof cut - 1] = 0;
    return pthread_setname_np(pthread_self(), cut);
}
