/*
 * forkscope.h: the C ABI of libforkscope (the file libforkscope-c.so).
 *
 * A host runtime (Python through ctypes, Ruby, C) uses it to publish
 * lifecycle events into a forkscope session's ring, to run the exporter's
 * at-fork stages around a fork() the host performs itself, and to export
 * Datadog spans to a trace agent through the fork-safe exporter core.
 *
 * Conventions:
 *  - Every function that can fail returns an `int` status (forkscope_status).
 *    0 is success. On failure, forkscope_last_error() gives a message for
 *    the calling thread. No Swift error, trap or C++ exception crosses this
 *    boundary; arguments are checked, not trusted.
 *  - Strings are NUL-terminated UTF-8; anything else is refused with
 *    FORKSCOPE_E_NOT_UTF8 (nothing is truncated or replaced).
 *  - An exporter is a handle (a number), never a pointer: a null (0),
 *    never-issued or closed handle is reported as an error, never
 *    dereferenced.
 *  - Configuration comes from the arguments, else from the environment
 *    (FORKSCOPE_RING, FORKSCOPE_AGENT_URL, FORKSCOPE_POLICY, ...; see the
 *    README's table), else from the defaults stated below.
 *
 * The event vocabulary and the value tables between the GENERATED markers
 * are generated from the Swift list (Sources/EventRing/EventKind.swift);
 * ForkscopeCTests fails, printing the expected text, when they differ.
 */
#ifndef FORKSCOPE_H
#define FORKSCOPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FORKSCOPE_ABI_VERSION 1

/* ---------------------------------------------------------------- status */

typedef enum forkscope_status {
    FORKSCOPE_OK = 0,
    /** A null pointer, an out-of-range number, a malformed URL or policy. */
    FORKSCOPE_E_INVALID_ARGUMENT = 1,
    /** A string is not valid UTF-8. */
    FORKSCOPE_E_NOT_UTF8 = 2,
    /** 0, or a handle this process never issued. */
    FORKSCOPE_E_BAD_HANDLE = 3,
    /** The exporter was closed (closing twice is this error too). */
    FORKSCOPE_E_CLOSED = 4,
    /** No ring is attached, and FORKSCOPE_RING names none. */
    FORKSCOPE_E_NO_RING = 5,
    /** The ring could not be opened or created (see the message). */
    FORKSCOPE_E_RING = 6,
    /** The event kind is not in the vocabulary below. */
    FORKSCOPE_E_UNKNOWN_KIND = 7,
    /** The event or span was dropped and counted (ring lanes exhausted, buffer full, exporter closed). */
    FORKSCOPE_E_DROPPED = 8,
    /** A fork stage out of order (after_fork_* without before_fork, or before_fork twice). */
    FORKSCOPE_E_STAGE_ORDER = 9,
    /** An at-fork hook failed; the message names it. */
    FORKSCOPE_E_HOOK_FAILED = 10,
    /** The wait ended before the work did. */
    FORKSCOPE_E_TIMEOUT = 11,
    /** Nothing to cancel: no send was in flight. */
    FORKSCOPE_E_NO_SEND = 12,
    /** Too many exporters open in this process. */
    FORKSCOPE_E_LIMIT = 13,
    /** A system call failed (see the message). */
    FORKSCOPE_E_SYSTEM = 14,
    /** A different ring is already attached to this process. */
    FORKSCOPE_E_ALREADY_ATTACHED = 15
} forkscope_status;

/** FORKSCOPE_ABI_VERSION of the loaded library. */
uint32_t forkscope_abi_version(void);

/** The message of the last failed call on this thread ("" if none). Valid
 *  until the next failed call on this thread. Never NULL. */
const char *forkscope_last_error(void);

/** "FORKSCOPE_OK", "FORKSCOPE_E_CLOSED", ...; "FORKSCOPE_E_UNKNOWN_STATUS" otherwise. */
const char *forkscope_status_name(int status);

/* --------------------------------------------------------------- vocabulary */

/* BEGIN GENERATED: vocabulary */
/** Event kinds (stable numbers; arguments a0..a3 as listed; (string) = a string-table offset). */
enum forkscope_event_kind {
    FORKSCOPE_EVENT_PROCESS_START = 1, /* process.start: ppid(pid) role(role) name(string) start_ticks(count) */
    FORKSCOPE_EVENT_PROCESS_EXIT = 2, /* process.exit: status(count) signal(signal) */
    FORKSCOPE_EVENT_FORK_BEFORE_START = 3, /* fork.before.start: hooks(count) */
    FORKSCOPE_EVENT_FORK_BEFORE_END = 4, /* fork.before.end: outcome(outcome) us(micros) failed_hooks(count) */
    FORKSCOPE_EVENT_FORK_PARENT = 5, /* fork.parent: child(pid) us(micros) */
    FORKSCOPE_EVENT_FORK_CHILD = 6, /* fork.child: parent(pid) generation(generation) */
    FORKSCOPE_EVENT_FORK_FAILED = 7, /* fork.failed: errno(errno) stage(stage) */
    FORKSCOPE_EVENT_FORK_DETECTED_WITHOUT_HOOKS = 8, /* fork.detected_without_hooks: previous_pid(pid) fork_count(count) */
    FORKSCOPE_EVENT_HOOK_RUN = 9, /* hook.run: stage(stage) name(string) outcome(outcome) us(micros) */
    FORKSCOPE_EVENT_HOOK_REGISTERED = 10, /* hook.registered: stage(stage) handle(id) name(string) */
    FORKSCOPE_EVENT_HOOK_REMOVED = 11, /* hook.removed: stage(stage) handle(id) found(bool) */
    FORKSCOPE_EVENT_RUNTIME_QUIESCE = 12, /* runtime.quiesce: generation(generation) workers(count) */
    FORKSCOPE_EVENT_RUNTIME_REBUILD = 13, /* runtime.rebuild: from(generation) to(generation) reason(string) */
    FORKSCOPE_EVENT_RUNTIME_RESUME = 14, /* runtime.resume: generation(generation) workers(count) */
    FORKSCOPE_EVENT_THREAD_START = 15, /* thread.start: tid(tid) name(string) */
    FORKSCOPE_EVENT_THREAD_STOP = 16, /* thread.stop: tid(tid) name(string) */
    FORKSCOPE_EVENT_SEND_START = 17, /* send.start: send(id) spans(count) bytes(count) attempt(count) */
    FORKSCOPE_EVENT_SEND_COMPLETE = 18, /* send.complete: send(id) status(httpStatus) us(micros) spans(count) */
    FORKSCOPE_EVENT_SEND_CANCEL = 19, /* send.cancel: send(id) reason(cancelReason) us(micros) spans(count) */
    FORKSCOPE_EVENT_SEND_FAIL = 20, /* send.fail: send(id) error(string) us(micros) errno(errno) */
    FORKSCOPE_EVENT_SPAN_REQUEUED = 21, /* span.requeued: spans(count) reason(cancelReason) send(id) */
    FORKSCOPE_EVENT_SPAN_DROPPED = 22, /* span.dropped: spans(count) reason(dropReason) send(id) */
    FORKSCOPE_EVENT_TRANSPORT_OPEN = 23, /* transport.open: transport(id) url(string) policy(policy) */
    FORKSCOPE_EVENT_TRANSPORT_CLOSE = 24, /* transport.close: transport(id) waited_us(micros) */
    FORKSCOPE_EVENT_OPERATOR_COMMAND = 25, /* operator.command: command(string) from_pid(pid) uid(count) target(pid) */
    FORKSCOPE_EVENT_WORKER_SPAWNED = 26, /* worker.spawned: worker(pid) index(count) */
    FORKSCOPE_EVENT_WORKER_EXITED = 27, /* worker.exited: worker(pid) status(count) signal(signal) index(count) */
    FORKSCOPE_EVENT_SERVER_HOOK = 28, /* server.hook: hook(string) server(string) worker_index(count) */
    FORKSCOPE_EVENT_WRITER_GAUGE = 29, /* writer.gauge: buffered(count) accepted(count) sent(count) lock_holder(tid) */
    FORKSCOPE_EVENT_WRITER_LOSSES = 30, /* writer.losses: requeued(count) dropped(count) cancelled(count) failed(count) */
    FORKSCOPE_EVENT_CANCEL_REQUESTED = 31, /* cancel.requested: send(id) reason(cancelReason) matched(bool) */
    FORKSCOPE_EVENT_DRAIN_WAIT = 32, /* drain.wait: send(id) timeout_ms(count) outcome(outcome) us(micros) */
    FORKSCOPE_EVENT_AGENT_REQUEST = 33, /* agent.request: spans(count) bytes(count) status(httpStatus) delay_ms(count) */
    FORKSCOPE_EVENT_MARK = 34 /* mark: a0(count) a1(count) a2(count) a3(count) */
};
/** Fork stages (argument type stage). */
enum forkscope_fork_stage {
    FORKSCOPE_FORK_STAGE_BEFORE = 1, /* before */
    FORKSCOPE_FORK_STAGE_PARENT = 2, /* parent */
    FORKSCOPE_FORK_STAGE_CHILD = 3 /* child */
};
/** What a fork does with a send in flight (policy). */
enum forkscope_fork_policy {
    FORKSCOPE_FORK_POLICY_DRAIN = 1, /* drain */
    FORKSCOPE_FORK_POLICY_CANCEL = 2, /* cancel */
    FORKSCOPE_FORK_POLICY_DRAIN_THEN_CANCEL = 3 /* drain:T */
};
/** Process roles (role). */
enum forkscope_process_role {
    FORKSCOPE_ROLE_UNKNOWN = 0, /* unknown */
    FORKSCOPE_ROLE_MASTER = 1, /* master */
    FORKSCOPE_ROLE_WORKER = 2, /* worker */
    FORKSCOPE_ROLE_DAEMON = 3, /* daemon */
    FORKSCOPE_ROLE_CHILD = 4, /* child */
    FORKSCOPE_ROLE_AGENT = 5, /* agent */
    FORKSCOPE_ROLE_HOST = 6, /* host */
    FORKSCOPE_ROLE_TOOL = 7 /* tool */
};
/** Why a send was cancelled (cancelReason). */
enum forkscope_cancel_reason {
    FORKSCOPE_CANCEL_FORK = 1, /* fork */
    FORKSCOPE_CANCEL_OPERATOR_REQUEST = 2, /* operator */
    FORKSCOPE_CANCEL_SHUTDOWN = 3, /* shutdown */
    FORKSCOPE_CANCEL_THREAD_KILLED = 4, /* thread_killed */
    FORKSCOPE_CANCEL_DRAIN_TIMEOUT = 5, /* drain_timeout */
    FORKSCOPE_CANCEL_CLOSE = 6, /* close */
    FORKSCOPE_CANCEL_AGENT_ERROR = 7 /* agent_error */
};
/** Why spans were dropped (dropReason). */
enum forkscope_drop_reason {
    FORKSCOPE_DROP_BUFFER_FULL = 1, /* buffer_full */
    FORKSCOPE_DROP_RETRIES_EXHAUSTED = 2, /* retries_exhausted */
    FORKSCOPE_DROP_CLOSED = 3, /* closed */
    FORKSCOPE_DROP_ENCODING_FAILED = 4, /* encoding_failed */
    FORKSCOPE_DROP_AGENT_REJECTED = 5, /* agent_rejected */
    FORKSCOPE_DROP_SHUTDOWN_DEADLINE = 6 /* shutdown_deadline */
};
/** Outcomes (outcome). */
enum forkscope_outcome {
    FORKSCOPE_OUTCOME_OK = 0, /* ok */
    FORKSCOPE_OUTCOME_FAILED = 1, /* failed */
    FORKSCOPE_OUTCOME_TIMED_OUT = 2, /* timed_out */
    FORKSCOPE_OUTCOME_CANCELLED = 3 /* cancelled */
};
/* END GENERATED: vocabulary */

/** "fork.before.start", ...; NULL when `kind` is not in the vocabulary. */
const char *forkscope_event_kind_name(uint32_t kind);

/* --------------------------------------------------------------------- ring */

/** Attaches this process to a session's ring for writing: `path`, or when
 *  NULL the file named by FORKSCOPE_RING. Children forked later inherit it.
 *  Attaching again to the same path succeeds; to another fails
 *  (FORKSCOPE_E_ALREADY_ATTACHED). Attach before starting threads that
 *  publish (the exporter reads the attachment without a lock). */
int forkscope_ring_open(const char *path);

/** Creates a new ring file at `path` (its directory must exist, be owned by
 *  this user and be mode 0700) and attaches to it. 0 for `lanes` or
 *  `slots_per_lane` means FORKSCOPE_RING_LANES / FORKSCOPE_RING_SLOTS, else
 *  64 lanes of 4096 slots. */
int forkscope_ring_create(const char *path, uint32_t lanes, uint32_t slots_per_lane);

/** 1 when a ring is attached, else 0. */
int forkscope_ring_attached(void);

/** Interns `utf8` in the ring's string table; `*offset` is what an event's
 *  string argument carries. */
int forkscope_intern(const char *utf8, uint64_t *offset);

/** Publishes one event; string arguments must be offsets from
 *  forkscope_intern. On success it takes no lock and allocates nothing
 *  (the error path writes the thread's message). */
int forkscope_publish(uint32_t kind, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3);

/** Publishes one event with typed arguments: `args` (NULL: all 0) and, for
 *  an argument the vocabulary says is a string, `strings[i]` (NULL array
 *  or NULL entry: use args[i] as an offset), interned first. A string for
 *  an argument that is not a string is refused. */
int forkscope_publish_typed(uint32_t kind, const uint64_t args[4], const char *const strings[4]);

/** A server's own hook point (`pre_fork`, `post_fork`, `post_worker_init`,
 *  ...): FORKSCOPE_EVENT_SERVER_HOOK with both names interned. */
int forkscope_publish_server_hook(const char *hook, const char *server, uint64_t worker_index);

/* ---------------------------------------------------------------- fork stages */

/* For a fork() the host performs itself (Python's os.register_at_fork,
 * Ruby's Process._fork): the same at-fork stages, events and lock
 * discipline as forkscope's own fork. Call before_fork just before fork()
 * and exactly one of the after_fork_* just after it, on the same thread.
 * An exporter's stages (by its policy): before = stop new sends, drain or
 * cancel the one in flight, join the flush thread, hold the send lock;
 * parent = release, restart; child = fresh locks, fresh runtime (generation
 * + 1), the parent's buffer forgotten. */

/** The `before` stage. On FORKSCOPE_E_HOOK_FAILED the `parent` stage has
 *  already run for the hooks whose `before` succeeded: do not call
 *  after_fork_parent; a child made anyway recovers through fork detection. */
int forkscope_before_fork(void);

/** The `parent` stage. `child_pid`: the child's pid; 0 when the host does
 *  not know it (found from /proc/thread-self/children when possible);
 *  -errno when fork() failed. */
int forkscope_after_fork_parent(int64_t child_pid);

/** The `child` stage, in the new process. */
int forkscope_after_fork_child(void);

/** Forks between the first process and this one that ran the stages. */
uint32_t forkscope_fork_generation(void);

/* ------------------------------------------------------------------ exporter */

/** An exporter: a number, 0 is never valid. */
typedef uint64_t forkscope_exporter;

typedef struct forkscope_tag {
    const char *key;
    const char *value;
} forkscope_tag;

typedef struct forkscope_metric {
    const char *key;
    double value;
} forkscope_metric;

/** One Datadog span. */
typedef struct forkscope_span {
    uint64_t trace_id;
    uint64_t span_id;
    /** 0 for a trace's root span. */
    uint64_t parent_id;
    /** Required: the operation (`wsgi.request`). */
    const char *name;
    /** NULL: the name. */
    const char *resource;
    /** Required. */
    const char *service;
    /** `web`, `http`, ...; NULL: none. */
    const char *type;
    /** Nanoseconds since the Unix epoch. */
    int64_t start_ns;
    int64_t duration_ns;
    /** 0, or 1 for an error span. */
    int32_t error;
    uint32_t meta_count;
    const forkscope_tag *meta;
    uint32_t metrics_count;
    /** Real tracers put `process_id` here on a trace's local root. */
    const forkscope_metric *metrics;
} forkscope_span;

/** What the flush thread is doing (WorkerRuntime.State). */
typedef enum forkscope_runtime_state {
    FORKSCOPE_RUNTIME_STOPPED = 0,
    FORKSCOPE_RUNTIME_RUNNING = 1,
    FORKSCOPE_RUNTIME_QUIESCING = 2,
    FORKSCOPE_RUNTIME_QUIESCED = 3
} forkscope_runtime_state;

/** One process's exporter counters. At every quiet point
 *  accepted == sent + buffered + dropped. */
typedef struct forkscope_counters {
    uint64_t accepted;
    uint64_t sent;
    /** Queued, waiting for a retry, or in flight. */
    uint64_t buffered;
    uint64_t requeued;
    uint64_t cancelled;
    uint64_t failed;
    uint64_t dropped;
    /** Indexed by forkscope_drop_reason. */
    uint64_t dropped_by_reason[8];
    uint32_t runtime_generation;
    /** forkscope_runtime_state: what the runtime believes; after an
     *  unhooked fork with detection off it says RUNNING with no thread. */
    uint32_t runtime_state;
    uint32_t detects_unhooked_forks;
    int32_t pid;
} forkscope_counters;

/** Creates an exporter: a buffer, a flush thread and a transport to the
 *  agent, registered with the at-fork stages. `agent_url` (NULL:
 *  FORKSCOPE_AGENT_URL, else http://127.0.0.1:8126) is http://HOST:PORT or
 *  unix:///path; `policy` (NULL: FORKSCOPE_POLICY, else "drain") is
 *  "drain", "cancel" or "drain:T" (T in ms, or with ms/s). The flush
 *  interval is FORKSCOPE_FLUSH_INTERVAL_MS (default 1000); detection of
 *  unhooked forks is FORKSCOPE_DETECT_FORKS (default 1). */
int forkscope_exporter_create(const char *agent_url, const char *policy, forkscope_exporter *out);

/** Whether the exporter detects a fork() that bypassed the stages (fork
 *  counter) and rebuilds itself on its next use. Off shows the failure of
 *  the Sqreen post: the flush thread does not exist in the child. Set it
 *  before the process forks. */
int forkscope_exporter_set_fork_detection(forkscope_exporter exporter, int enabled);

/** Enqueues one trace (`count` spans, sent together). FORKSCOPE_E_DROPPED:
 *  refused and counted (buffer full, closing). */
int forkscope_exporter_enqueue(forkscope_exporter exporter, const forkscope_span *spans, size_t count);

/** Asks the flush thread to send now and waits up to `timeout_ms` until
 *  nothing is buffered (FORKSCOPE_E_TIMEOUT otherwise). */
int forkscope_exporter_flush(forkscope_exporter exporter, uint32_t timeout_ms);

/** This process's counters. */
int forkscope_exporter_counters(forkscope_exporter exporter, forkscope_counters *out);

/** Cancels the send in flight, if any (`reason`: forkscope_cancel_reason);
 *  its spans are re-queued, not lost. FORKSCOPE_E_NO_SEND when idle. */
int forkscope_exporter_cancel_send(forkscope_exporter exporter, uint32_t reason);

/** The same, async-signal-safe (a signal handler, a Ruby unblock function):
 *  C atomics and one write(2), no lock, no allocation; errors are returned
 *  but leave forkscope_last_error() unchanged. Safe against a concurrent
 *  close: close waits for a cancel in progress. */
int forkscope_exporter_cancel_send_signal_safe(forkscope_exporter exporter, uint32_t reason);

/** Sends what is buffered (up to `timeout_ms`; the rest is dropped and
 *  counted as shutdown_deadline), stops the flush thread, deregisters the
 *  at-fork stages and invalidates the handle. Closing again:
 *  FORKSCOPE_E_CLOSED. */
int forkscope_exporter_close(forkscope_exporter exporter, uint32_t timeout_ms);

#ifdef __cplusplus
}
#endif

#endif /* FORKSCOPE_H */
