#define _GNU_SOURCE 1
#include <sys/socket.h>
#include <unistd.h>
#include "cposix.h"
#include <pthread.h>

_Atomic uint64_t fks_fork_counter = 0;
_Atomic uint32_t fks_fork_generation_word = 0;
_Thread_local struct fks_tid_cache fks_tid_cache = { 0, UINT64_MAX };
static _Atomic int fork_counter_installed = 0;
static _Atomic pid_t cached_pid = 0;

static _Atomic int32_t debug_stall_pid = 0;
int32_t fks_debug_stall_pid(void) { return atomic_load_explicit(&debug_stall_pid, memory_order_relaxed); }
void fks_set_debug_stall_pid(int32_t pid) { atomic_store_explicit(&debug_stall_pid, pid, memory_order_relaxed); }

// Runs in the child right after fork(), with one thread: only atomics here.
static void on_fork_child(void) {
    atomic_fetch_add_explicit(&fks_fork_counter, 1, memory_order_relaxed);
    atomic_store_explicit(&cached_pid, 0, memory_order_relaxed);
}


int fks_install_fork_counter(void) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&fork_counter_installed, &expected, 1)) return 0;
    int rc = pthread_atfork(NULL, NULL, on_fork_child);
    if (rc != 0) atomic_store(&fork_counter_installed, 0);
    return rc;
}

pid_t fks_cached_pid(void) {
    pid_t pid = atomic_load_explicit(&cached_pid, memory_order_relaxed);
    if (pid == 0) {
        // The child handler that clears the cache must exist before any
        // fork this value could outlive.
        fks_install_fork_counter();
        pid = getpid();
        atomic_store_explicit(&cached_pid, pid, memory_order_relaxed);
    }
    return pid;
}

pid_t fks_refresh_tid(void) {
    fks_tid_cache.tid = fks_gettid();
    fks_tid_cache.fork_count = fks_fork_count();
    return fks_tid_cache.tid;
}

int fks_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid) {
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
    *pid = cred.pid; *uid = cred.uid; *gid = cred.gid;
    return 0;
}

int fks_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }

char **fks_environ(void) { return environ; }
int fks_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags) {
    return accept4(fd, address, length, flags);
}
