// CPosix: what Swift's Glibc module cannot express.
//  - C11 atomics on raw (shared-memory) addresses: Swift has no way to apply
//    an atomic operation to a byte offset inside an mmap'ed file.
//  - Process-global atomic state a signal handler or a forked child may touch
//    without Swift runtime initialisation or reference counting.
//  - static inline wrappers for calls and macros Glibc does not import.
#ifndef FORKSCOPE_CPOSIX_H
#define FORKSCOPE_CPOSIX_H

#include <stdint.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <errno.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <sched.h>
#include <spawn.h>
#include <poll.h>
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include "cancellation.h"
#include "locks.h"

// MARK: cache hints.

// Starts loading the cache line at p for a write soon: a hash table far
// larger than the cache (the agent's seen span ids) overlaps its misses.
static inline void fks_prefetch_for_write(const void *p) {
    __builtin_prefetch(p, 1, 3);
}

// MARK: atomics on raw memory.
// Every pointer must be naturally aligned; the ring format guarantees it.

static inline uint64_t fks_load_acquire_u64(const void *p) {
    return atomic_load_explicit((_Atomic uint64_t *)p, memory_order_acquire);
}
static inline uint64_t fks_load_relaxed_u64(const void *p) {
    return atomic_load_explicit((_Atomic uint64_t *)p, memory_order_relaxed);
}
static inline void fks_store_release_u64(void *p, uint64_t v) {
    atomic_store_explicit((_Atomic uint64_t *)p, v, memory_order_release);
}
static inline void fks_store_relaxed_u64(void *p, uint64_t v) {
    atomic_store_explicit((_Atomic uint64_t *)p, v, memory_order_relaxed);
}
static inline uint64_t fks_fetch_add_u64(void *p, uint64_t v) {
    return atomic_fetch_add_explicit((_Atomic uint64_t *)p, v, memory_order_acq_rel);
}
static inline uint64_t fks_fetch_add_relaxed_u64(void *p, uint64_t v) {
    return atomic_fetch_add_explicit((_Atomic uint64_t *)p, v, memory_order_relaxed);
}
/// Returns true on success; on failure *expected holds the value seen.
static inline bool fks_cas_u64(void *p, uint64_t *expected, uint64_t desired) {
    return atomic_compare_exchange_strong_explicit((_Atomic uint64_t *)p, expected, desired,
                                                   memory_order_acq_rel, memory_order_acquire);
}
static inline uint32_t fks_load_acquire_u32(const void *p) {
    return atomic_load_explicit((_Atomic uint32_t *)p, memory_order_acquire);
}
static inline void fks_store_release_u32(void *p, uint32_t v) {
    atomic_store_explicit((_Atomic uint32_t *)p, v, memory_order_release);
}
static inline bool fks_cas_u32(void *p, uint32_t *expected, uint32_t desired) {
    return atomic_compare_exchange_strong_explicit((_Atomic uint32_t *)p, expected, desired,
                                                   memory_order_acq_rel, memory_order_acquire);
}
/// Orders the payload stores of a slot before its committing stamp store,
/// and the reader's payload loads before its stamp re-check (seqlock).
static inline void fks_fence_acquire(void) { atomic_thread_fence(memory_order_acquire); }
static inline void fks_fence_release(void) { atomic_thread_fence(memory_order_release); }

// MARK: fork counter.
// Bumped by a pthread_atfork child handler, which glibc runs on every fork()
// of the process, including one that bypassed our hooks. Comparing a saved
// value is one load: cheaper than getpid() (~190 ns measured here).

extern _Atomic uint64_t fks_fork_counter;

/// How many hooked forks (`Fork.fork()`/`daemon()`) separate this process
/// from the first one. A C global, not a Swift `static var`: a Swift
/// global's lazy initialisation and exclusivity checks run code and touch
/// pages that, in a freshly forked child, each cost a page fault.
extern _Atomic uint32_t fks_fork_generation_word;
static inline uint32_t fks_fork_generation(void) {
    return atomic_load_explicit(&fks_fork_generation_word, memory_order_relaxed);
}
static inline void fks_advance_fork_generation(void) {
    atomic_fetch_add_explicit(&fks_fork_generation_word, 1, memory_order_relaxed);
}
/// The number of fork()s this process's ancestry went through since the
/// counter was installed; differs in a child from the value its parent saw.
static inline uint64_t fks_fork_count(void) {
    return atomic_load_explicit(&fks_fork_counter, memory_order_relaxed);
}
/// Installs the pthread_atfork child handler once per process (idempotent,
/// thread-safe). Returns 0 or an errno value.
int fks_install_fork_counter(void);

struct fks_tid_cache { pid_t tid; uint64_t fork_count; };
extern _Thread_local struct fks_tid_cache fks_tid_cache;
pid_t fks_refresh_tid(void);
/// The calling thread's kernel tid, cached per thread and refreshed after a
/// fork (the forking thread becomes a new tid in the child).
static inline pid_t fks_cached_tid(void) {
    if (__builtin_expect(fks_tid_cache.fork_count != fks_fork_count(), 0)) return fks_refresh_tid();
    return fks_tid_cache.tid;
}
/// The process id, cached and refreshed after a fork.
pid_t fks_cached_pid(void);

// MARK: debug stall point (tests only).
// A ring writer checks this after it has claimed a slot with an odd stamp;
// when set to the writer's pid, it stops itself with SIGSTOP, so tests can
// observe a pending write and then kill the writer to see it abandoned.
int32_t fks_debug_stall_pid(void);
void fks_set_debug_stall_pid(int32_t pid);

// MARK: wrappers Glibc lacks or imports poorly.

static inline pid_t fks_gettid(void) { return (pid_t)syscall(SYS_gettid); }
static inline int fks_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }
static inline int fks_set_pdeathsig(int sig) { return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0); }
static inline int fks_set_thread_name(const char *name) { return prctl(PR_SET_NAME, name, 0, 0, 0); }
static inline int fks_eventfd(unsigned int initval, int flags) { return eventfd(initval, flags); }

static inline int fks_errno(void) { return errno; }
static inline void fks_set_errno(int e) { errno = e; }

static inline bool fks_wifexited(int status) { return WIFEXITED(status); }
static inline int fks_wexitstatus(int status) { return WEXITSTATUS(status); }
static inline bool fks_wifsignaled(int status) { return WIFSIGNALED(status); }
static inline int fks_wtermsig(int status) { return WTERMSIG(status); }
static inline bool fks_wifstopped(int status) { return WIFSTOPPED(status); }
static inline int fks_wstopsig(int status) { return WSTOPSIG(status); }

/// SO_PEERCRED: the pid, uid and gid of a Unix socket's peer (-1 + errno on failure).
int fks_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid);
/// pipe2(2), which needs _GNU_SOURCE (kept out of this header: it would
/// make these declarations disagree with Swift's Glibc module).
int fks_pipe2(int fds[2], int flags);

/// Installs a plain (non-SA_SIGINFO) handler with the given flags.
static inline int fks_sigaction(int sig, void (*handler)(int), int flags) {
    struct sigaction sa;
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = handler;
    sa.sa_flags = flags;
    return sigaction(sig, &sa, NULL);
}
static inline void (*fks_sig_dfl(void))(int) { return SIG_DFL; }
static inline void (*fks_sig_ign(void))(int) { return SIG_IGN; }

// MARK: process descriptors and the environment (added for Posix.Spawn / ProcessControl).

/// pidfd_open(2): a descriptor that polls readable once `pid` has exited, so
/// a wait can have a deadline without a sleep loop (Linux 5.3+).
static inline int fks_pidfd_open(pid_t pid, unsigned int flags) {
    return (int)syscall(SYS_pidfd_open, pid, flags);
}
/// The process environment (`environ`): a C global Swift 6 will not read
/// directly, and whose declaration needs _GNU_SOURCE.
char **fks_environ(void);
/// accept4(2), which needs _GNU_SOURCE like pipe2.
int fks_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags);

#endif
