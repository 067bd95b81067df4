/*
 * Calls every function of forkscope.h, with good and bad arguments, as a C
 * host would. Compiled and run by ForkscopeCTests (ABITests):
 *
 *     abi_test RING_DIR AGENT_URL SLOW_AGENT_URL
 *
 * RING_DIR: a private (0700) empty directory; AGENT_URL: a forkscope agent;
 * SLOW_AGENT_URL: one that delays each reply (a send stays in flight).
 * Prints "FAIL <line>: ..." per failed check and "checks N failures M";
 * exits with the number of failures (capped), 0 when all passed.
 */
#define _GNU_SOURCE
#include "forkscope.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int checks, failures;

#define CHECK(condition, ...) do { \
    checks++; \
    if (!(condition)) { \
        failures++; \
        printf("FAIL %d: %s: ", __LINE__, #condition); \
        printf(__VA_ARGS__); \
        printf(" (last error: %s)\n", forkscope_last_error()); \
    } \
} while (0)

/* A call's status must be `expected`; on a failure status the thread's
 * message must say something. */
#define EXPECT(expected, call) do { \
    int status_ = (call); \
    CHECK(status_ == (expected), "%s returned %s, expected %s", #call, forkscope_status_name(status_), forkscope_status_name(expected)); \
    if ((expected) != FORKSCOPE_OK && status_ == (expected)) \
        CHECK(forkscope_last_error()[0] != '\0', "%s failed without a message", #call); \
} while (0)

static const char NOT_UTF8[] = {'a', (char)0xff, 'b', 0};

static void sleep_ms(long ms) {
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

static forkscope_span make_span(uint64_t trace, uint64_t id, uint64_t parent) {
    static forkscope_tag meta[] = {{"http.method", "GET"}, {"component", "abi_test"}};
    static forkscope_metric metrics[1];
    metrics[0].key = "process_id";
    metrics[0].value = (double)getpid();
    forkscope_span span;
    memset(&span, 0, sizeof span);
    span.trace_id = trace;
    span.span_id = id;
    span.parent_id = parent;
    span.name = "abi.test";
    span.resource = "GET /abi";
    span.service = "abi-test";
    span.type = "web";
    span.start_ns = (int64_t)time(NULL) * 1000000000LL;
    span.duration_ns = 1000;
    span.meta_count = 2;
    span.meta = meta;
    if (parent == 0) {
        span.metrics_count = 1;
        span.metrics = metrics;
    }
    return span;
}

/* Counters settle after the flush thread's send returns: wait (bounded). */
static forkscope_counters wait_for_cancelled(forkscope_exporter exporter, uint64_t cancelled) {
    forkscope_counters counters;
    memset(&counters, 0, sizeof counters);
    for (int i = 0; i < 500; i++) {
        if (forkscope_exporter_counters(exporter, &counters) != FORKSCOPE_OK || counters.cancelled >= cancelled) break;
        sleep_ms(10);
    }
    return counters;
}

static uint64_t next_id = 1000;

static int enqueue_trace(forkscope_exporter exporter, int spans) {
    forkscope_span trace[8];
    uint64_t trace_id = ++next_id * 7919 + (uint64_t)getpid();
    for (int i = 0; i < spans && i < 8; i++) trace[i] = make_span(trace_id, ++next_id * 104729 + (uint64_t)getpid(), i == 0 ? 0 : trace[0].span_id);
    return forkscope_exporter_enqueue(exporter, trace, (size_t)spans);
}

static void test_status_and_vocabulary(void) {
    CHECK(forkscope_abi_version() == FORKSCOPE_ABI_VERSION, "abi version %u", forkscope_abi_version());
    CHECK(strcmp(forkscope_last_error(), "") == 0, "no error yet: \"%s\"", forkscope_last_error());
    CHECK(strcmp(forkscope_status_name(FORKSCOPE_OK), "FORKSCOPE_OK") == 0, "status name");
    CHECK(strcmp(forkscope_status_name(FORKSCOPE_E_CLOSED), "FORKSCOPE_E_CLOSED") == 0, "status name");
    CHECK(strcmp(forkscope_status_name(FORKSCOPE_E_ALREADY_ATTACHED), "FORKSCOPE_E_ALREADY_ATTACHED") == 0, "status name");
    CHECK(strcmp(forkscope_status_name(-1), "FORKSCOPE_E_UNKNOWN_STATUS") == 0, "unknown status");
    CHECK(strcmp(forkscope_status_name(9999), "FORKSCOPE_E_UNKNOWN_STATUS") == 0, "unknown status");
    const char *name = forkscope_event_kind_name(FORKSCOPE_EVENT_PROCESS_START);
    CHECK(name && strcmp(name, "process.start") == 0, "kind name %s", name ? name : "(null)");
    name = forkscope_event_kind_name(FORKSCOPE_EVENT_SERVER_HOOK);
    CHECK(name && strcmp(name, "server.hook") == 0, "kind name %s", name ? name : "(null)");
    CHECK(forkscope_event_kind_name(0) == NULL, "kind 0 has no name");
    CHECK(forkscope_event_kind_name(FORKSCOPE_EVENT_MARK + 1) == NULL, "past the last kind");
    CHECK(forkscope_event_kind_name(0x10000 + FORKSCOPE_EVENT_MARK) == NULL, "a kind wider than 16 bits");
}

static void test_without_ring(void) {
    uint64_t offset = 0;
    CHECK(forkscope_ring_attached() == 0, "no ring yet");
    unsetenv("FORKSCOPE_RING");
    EXPECT(FORKSCOPE_E_NO_RING, forkscope_ring_open(NULL));
    EXPECT(FORKSCOPE_E_NO_RING, forkscope_publish(FORKSCOPE_EVENT_MARK, 1, 2, 3, 4));
    EXPECT(FORKSCOPE_E_NO_RING, forkscope_intern("text", &offset));
    EXPECT(FORKSCOPE_E_NO_RING, forkscope_publish_server_hook("pre_fork", "abi", 1));
    EXPECT(FORKSCOPE_E_NO_RING, forkscope_publish_typed(FORKSCOPE_EVENT_MARK, NULL, NULL));
    EXPECT(FORKSCOPE_E_UNKNOWN_KIND, forkscope_publish(0, 0, 0, 0, 0));
    EXPECT(FORKSCOPE_E_RING, forkscope_ring_open("/nonexistent/forkscope/ring"));
    EXPECT(FORKSCOPE_E_NOT_UTF8, forkscope_ring_open(NOT_UTF8));
    setenv("FORKSCOPE_RING", "/nonexistent/forkscope/ring", 1);
    EXPECT(FORKSCOPE_E_RING, forkscope_ring_open(NULL));
    unsetenv("FORKSCOPE_RING");
    CHECK(forkscope_ring_attached() == 0, "still no ring");
}

static void test_ring(const char *directory) {
    char path[4096], other[4096];
    snprintf(path, sizeof path, "%s/ring", directory);
    snprintf(other, sizeof other, "%s/other-ring", directory);
    EXPECT(FORKSCOPE_E_INVALID_ARGUMENT, forkscope_ring_create(NULL, 4, 64));
    EXPECT(FORKSCOPE_E_NOT_UTF8, forkscope_ring_create(NOT_UTF8, 4, 64));
    EXPECT(FORKSCOPE_E_RING, forkscope_ring_create(path, 4, 3));          /* not a power of two */
    EXPECT(FORKSCOPE_E_INVALID_ARGUMENT, forkscope_ring_create(path, 5000, 64));
    setenv("FORKSCOPE_RING_SLOTS", "lots", 1);
    EXPECT(FORKSCOPE_E_INVALID_ARGUMENT, forkscope_ring_create(path, 4, 0));
    unsetenv("FORKSCOPE_RING_SLOTS");
    EXPECT(FORKSCOPE_OK, forkscope_ring_create(path, 16, 256));
    CHECK(forkscope_ring_attached() == 1, "attached");
    EXPECT(FORKSCOPE_OK, forkscope_ring_open(path));                      /* the same ring again */
    EXPECT(FORKSCOPE_E_ALREADY_ATTACHED, forkscope_ring_create(other, 4, 64));
    EXPECT(FORKSCOPE_E_ALREADY_ATTACHED, forkscope_ring_open(other));

    uint64_t first = 0, second = 1;
    EXPECT(FORKSCOPE_E_INVALID_ARGUMENT, forkscope_intern(NULL, &first));
    EXPECT(FORKSCOPE_E_INVALID_ARGUMENT, forkscope_intern("text", NULL));
    EXPECT(FORKSCOPE_E_NOT_UTF8, forkscope_intern(NOT_UTF8, &first));
    EXPECT(FORKSCOPE_OK, forkscope_intern("abi_test", &first));
    EXPECT(FORKSCOPE_OK, forkscope_intern("abi_test", &second));
    CHECK(first != 0 && first == second, "interned once: %llu %llu", (unsigned long long)first, (unsigned long long)second);

    EXPECT(FORKSCOPE_OK, forkscope_publish(FORKSCOPE_EVENT_MARK, 1, 2, 3, 4));
    EXPECT(FORKSCOPE_OK, forkscope_publish(FORKSCOPE_EVENT_PROCESS_START, (uint64_t)getppid(), FORKSCOPE_ROLE_HOST, first, 0));
    EXPECT(FORKSCOPE_E_UNKNOWN_KIND, forkscope_publish(0, 0, 0, 0, 0));
    EXPECT(FORKSCOPE_E_UNKNOWN_KIND, forkscope_publish(FORKSCOPE_EVENT_MARK + 1, 0, 0, 0, 0));
    EXPECT(FORKSCOPE_E_UNKNOWN_KIND, forkscope_publish(0x10000 + FORKSCOPE_EVENT_MARK, 0, 0, 0, 0));

    uint64_t args[4] = {0, 0, 7, 0};
    const char *strings[4] = {"pre_fork", "abi", NULL, NULL};
    EXPECT(FORKSCOPE_OK, forkscope_publish_typed(FORKSCOPE_EVENT_SERVER_HOOK, args, strings));
    EXPECT(FORKSCOPE_OK, forkscope_publish_typed(FORKSCOPE_EVENT_MARK, NULL, NULL));
    EXPECT(FORKSCOPE_OK, forkscope_publish_typed(FORKSCOPE_EVENT_MARK, args, NULL));
    const char *wrong[4] = {NULL, NULL, "seven", NULL};                   /* worker_index is a count */
    EXPECT(FORKSCOPE_E_INVALID_ARGUMENT, forkscope_publish_typed(FORKSCOPE_EVENT_SERVER_HOOK, args, wrong));
    const char *unused[4] = {NULL, NULL, NULL, "x"};                      /* server.hook has 3 arguments */
    EXPECT(FORKSCOPE_E_INVALID_ARGUMENT, forkscope_publish_typed(FORKSCOPE_EVENT_SERVER_HOOK, args, unused));
    const char *bad[4] = {NOT_UTF8, "abi", NULL, NULL};
    EXPECT(FORKSCOPE_E_NOT_UTF8, forkscope_publish_typed(FORKSCOPE_EVENT_SERVER_HOOK, args, bad));
    EXPECT(FORKSCOPE_E_UNKNOWN_KIND, forkscope_publish_typed(999, args, strings));

    EXPECT(FORKSCOPE_OK, forkscope_publish_server_hook("post_fork", "abi", 3));
    EXPECT(FORKSCOPE_E_INVALID_ARGUMENT, forkscope_publish_server_hook(NULL, "abi", 3));
    EXPECT(FORKSCOPE_E_INVALID_ARGUMENT, forkscope_publish_server_hook("post_fork", NULL, 3));
    EXPECT(FORKSCOPE_E_NOT_UTF8, forkscope_publish_server_hook(NOT_UTF8, "abi", 3));
}

/* Forks through the stages; the child runs `in_child` and exits with the
 * number of its failed checks. Returns the child's exit status. */
static int fork_with_stages(forkscope_exporter exporter, int pass_pid) {
    EXPECT(FORKSCOPE_OK, forkscope_before_fork());
    pid_t pid = fork();
    if (pid == 0) {
        failures = 0;
        EXPECT(FORKSCOPE_OK, forkscope_after_fork_child());
        CHECK(forkscope_fork_generation() >= 1, "generation %u", forkscope_fork_generation());
        EXPECT(FORKSCOPE_E_STAGE_ORDER, forkscope_after_fork_child());
        EXPECT(FORKSCOPE_OK, forkscope_publish_server_hook("child_ran", "abi", 0));
        if (exporter) {
            EXPECT(FORKSCOPE_OK, enqueue_trace(exporter, 2));
            EXPECT(FORKSCOPE_OK, forkscope_exporter_flush(exporter, 5000));
            forkscope_counters counters;
            EXPECT(FORKSCOPE_OK, forkscope_exporter_counters(exporter, &counters));
            CHECK(counters.accepted == 2 && counters.sent == 2, "child counters start empty: accepted %llu sent %llu",
                  (unsigned long long)counters.accepted, (unsigned long long)counters.sent);
            CHECK(counters.runtime_generation == 2, "fresh runtime in the child: generation %u", counters.runtime_generation);
            EXPECT(FORKSCOPE_OK, forkscope_exporter_close(exporter, 2000));
        }
        fflush(stdout);
        _exit(failures > 100 ? 100 : failures);
    }
    CHECK(pid > 0, "fork: %s", strerror(errno));
    EXPECT(FORKSCOPE_OK, forkscope_after_fork_parent(pass_pid ? pid : 0));
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

static void test_fork_stages(void) {
    EXPECT(FORKSCOPE_E_STAGE_ORDER, forkscope_after_fork_parent(0));
    EXPECT(FORKSCOPE_E_STAGE_ORDER, forkscope_after_fork_child());
    EXPECT(FORKSCOPE_OK, forkscope_before_fork());
    EXPECT(FORKSCOPE_E_STAGE_ORDER, forkscope_before_fork());
    EXPECT(FORKSCOPE_OK, forkscope_after_fork_parent(-EAGAIN));          /* the host's fork() failed */
    EXPECT(FORKSCOPE_E_STAGE_ORDER, forkscope_after_fork_parent(0));
    int status = fork_with_stages(0, 1);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    status = fork_with_stages(0, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    CHECK(forkscope_fork_generation() == 0, "the parent's generation stays 0: %u", forkscope_fork_generation());
}

static volatile sig_atomic_t handler_status = -1;
static forkscope_exporter signal_target;

static void cancel_from_signal(int signal) {
    (void)signal;
    handler_status = forkscope_exporter_cancel_send_signal_safe(signal_target, FORKSCOPE_CANCEL_THREAD_KILLED);
}

static void test_exporter(const char *agent, const char *slow_agent) {
    forkscope_exporter exporter = 0;
    EXPECT(FORKSCOPE_E_INVALID_ARGUMENT, forkscope_exporter_create(agent, "drain", NULL));
    EXPECT(FORKSCOPE_E_INVALID_ARGUMENT, forkscope_exporter_create("ftp://127.0.0.1:1", "drain", &exporter));
    EXPECT(FORKSCOPE_E_INVALID_ARGUMENT, forkscope_exporter_create(agent, "sometimes", &exporter));
    EXPECT(FORKSCOPE_E_NOT_UTF8, forkscope_exporter_create(agent, NOT_UTF8, &exporter));
    EXPECT(FORKSCOPE_E_NOT_UTF8, forkscope_exporter_create(NOT_UTF8, "drain", &exporter));
    setenv("FORKSCOPE_FLUSH_INTERVAL_MS", "never", 1);
    EXPECT(FORKSCOPE_E_INVALID_ARGUMENT, forkscope_exporter_create(agent, "drain", &exporter));
    setenv("FORKSCOPE_FLUSH_INTERVAL_MS", "100", 1);
    setenv("FORKSCOPE_AGENT_URL", agent, 1);
    setenv("FORKSCOPE_POLICY", "drain:200ms", 1);
    EXPECT(FORKSCOPE_OK, forkscope_exporter_create(NULL, NULL, &exporter));  /* from the environment */
    CHECK(exporter != 0, "a handle");

    EXPECT(FORKSCOPE_E_BAD_HANDLE, forkscope_exporter_set_fork_detection(0, 1));
    EXPECT(FORKSCOPE_E_INVALID_ARGUMENT, forkscope_exporter_set_fork_detection(exporter, 2));
    EXPECT(FORKSCOPE_OK, forkscope_exporter_set_fork_detection(exporter, 0));
    EXPECT(FORKSCOPE_OK, forkscope_exporter_set_fork_detection(exporter, 1));

    forkscope_span span = make_span(1, 2, 0);
    EXPECT(FORKSCOPE_E_BAD_HANDLE, forkscope_exporter_enqueue(0, &span, 1));
    EXPECT(FORKSCOPE_E_BAD_HANDLE, forkscope_exporter_enqueue(exporter + (1ULL << 32), &span, 1));  /* never issued */
    EXPECT(FORKSCOPE_E_BAD_HANDLE, forkscope_exporter_enqueue((1ULL << 32) | 300, &span, 1));        /* no such slot */
    EXPECT(FORKSCOPE_E_INVALID_ARGUMENT, forkscope_exporter_enqueue(exporter, NULL, 1));
    EXPECT(FORKSCOPE_E_INVALID_ARGUMENT, forkscope_exporter_enqueue(exporter, &span, 0));
    EXPECT(FORKSCOPE_E_INVALID_ARGUMENT, forkscope_exporter_enqueue(exporter, &span, (size_t)-1));
    forkscope_span broken = span;
    broken.name = NULL;
    EXPECT(FORKSCOPE_E_INVALID_ARGUMENT, forkscope_exporter_enqueue(exporter, &broken, 1));
    broken = span;
    broken.service = NOT_UTF8;
    EXPECT(FORKSCOPE_E_NOT_UTF8, forkscope_exporter_enqueue(exporter, &broken, 1));
    broken = span;
    broken.meta = NULL;
    EXPECT(FORKSCOPE_E_INVALID_ARGUMENT, forkscope_exporter_enqueue(exporter, &broken, 1));
    broken = span;
    broken.error = 2;
    EXPECT(FORKSCOPE_E_INVALID_ARGUMENT, forkscope_exporter_enqueue(exporter, &broken, 1));
    broken = span;
    broken.duration_ns = -5;
    EXPECT(FORKSCOPE_E_INVALID_ARGUMENT, forkscope_exporter_enqueue(exporter, &broken, 1));
    broken = span;
    forkscope_tag bad_tag = {"key", NOT_UTF8};
    broken.meta = &bad_tag;
    broken.meta_count = 1;
    EXPECT(FORKSCOPE_E_NOT_UTF8, forkscope_exporter_enqueue(exporter, &broken, 1));

    forkscope_counters counters;
    EXPECT(FORKSCOPE_E_INVALID_ARGUMENT, forkscope_exporter_counters(exporter, NULL));
    EXPECT(FORKSCOPE_OK, forkscope_exporter_counters(exporter, &counters));
    CHECK(counters.accepted == 0, "refused spans are not accepted: %llu", (unsigned long long)counters.accepted);
    EXPECT(FORKSCOPE_OK, enqueue_trace(exporter, 3));
    EXPECT(FORKSCOPE_OK, forkscope_exporter_flush(exporter, 5000));
    EXPECT(FORKSCOPE_OK, forkscope_exporter_counters(exporter, &counters));
    CHECK(counters.accepted == 3 && counters.sent == 3 && counters.buffered == 0, "accepted %llu sent %llu buffered %llu",
          (unsigned long long)counters.accepted, (unsigned long long)counters.sent, (unsigned long long)counters.buffered);
    CHECK(counters.runtime_state == FORKSCOPE_RUNTIME_RUNNING && counters.runtime_generation == 1 && counters.pid == getpid(),
          "state %u generation %u pid %d", counters.runtime_state, counters.runtime_generation, counters.pid);
    CHECK(counters.detects_unhooked_forks == 1, "detection on");

    EXPECT(FORKSCOPE_E_NO_SEND, forkscope_exporter_cancel_send(exporter, FORKSCOPE_CANCEL_OPERATOR_REQUEST));
    EXPECT(FORKSCOPE_E_INVALID_ARGUMENT, forkscope_exporter_cancel_send(exporter, 0));
    EXPECT(FORKSCOPE_E_INVALID_ARGUMENT, forkscope_exporter_cancel_send(exporter, 99));
    EXPECT(FORKSCOPE_E_BAD_HANDLE, forkscope_exporter_cancel_send(0, FORKSCOPE_CANCEL_OPERATOR_REQUEST));
    CHECK(forkscope_exporter_cancel_send_signal_safe(exporter, FORKSCOPE_CANCEL_OPERATOR_REQUEST) == FORKSCOPE_E_NO_SEND, "idle");
    CHECK(forkscope_exporter_cancel_send_signal_safe(exporter, 0) == FORKSCOPE_E_INVALID_ARGUMENT, "reason 0");
    CHECK(forkscope_exporter_cancel_send_signal_safe(exporter, 99) == FORKSCOPE_E_INVALID_ARGUMENT, "reason 99");
    CHECK(forkscope_exporter_cancel_send_signal_safe(0, 2) == FORKSCOPE_E_BAD_HANDLE, "handle 0");
    CHECK(forkscope_exporter_cancel_send_signal_safe((7ULL << 32) | 9000, 2) == FORKSCOPE_E_BAD_HANDLE, "no such slot");

    /* Forks with an exporter: through the stages, then bypassing them (fork detection). */
    int status = fork_with_stages(exporter, 1);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "hooked child status %d", status);
    pid_t pid = fork();
    if (pid == 0) {
        failures = 0;
        EXPECT(FORKSCOPE_OK, enqueue_trace(exporter, 1));                    /* detects the fork, rebuilds */
        EXPECT(FORKSCOPE_OK, forkscope_exporter_flush(exporter, 5000));
        EXPECT(FORKSCOPE_OK, forkscope_exporter_counters(exporter, &counters));
        CHECK(counters.sent == 1 && counters.runtime_generation == 2, "unhooked child: sent %llu generation %u",
              (unsigned long long)counters.sent, counters.runtime_generation);
        EXPECT(FORKSCOPE_OK, forkscope_exporter_close(exporter, 2000));
        fflush(stdout);
        _exit(failures > 100 ? 100 : failures);
    }
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "unhooked child status %d", status);
    EXPECT(FORKSCOPE_OK, enqueue_trace(exporter, 1));
    EXPECT(FORKSCOPE_OK, forkscope_exporter_flush(exporter, 5000));

    /* Close, then every function on the closed handle. */
    EXPECT(FORKSCOPE_OK, forkscope_exporter_close(exporter, 2000));
    EXPECT(FORKSCOPE_E_CLOSED, forkscope_exporter_close(exporter, 2000));
    EXPECT(FORKSCOPE_E_CLOSED, enqueue_trace(exporter, 1));
    EXPECT(FORKSCOPE_E_CLOSED, forkscope_exporter_flush(exporter, 10));
    EXPECT(FORKSCOPE_E_CLOSED, forkscope_exporter_counters(exporter, &counters));
    EXPECT(FORKSCOPE_E_CLOSED, forkscope_exporter_cancel_send(exporter, FORKSCOPE_CANCEL_OPERATOR_REQUEST));
    EXPECT(FORKSCOPE_E_CLOSED, forkscope_exporter_set_fork_detection(exporter, 1));
    CHECK(forkscope_exporter_cancel_send_signal_safe(exporter, 2) == FORKSCOPE_E_CLOSED, "closed, signal-safe");
    EXPECT(FORKSCOPE_E_BAD_HANDLE, forkscope_exporter_close(0, 10));

    /* The slot is reused with a new generation: the old handle stays closed. */
    forkscope_exporter again = 0;
    EXPECT(FORKSCOPE_OK, forkscope_exporter_create(agent, "cancel", &again));
    CHECK(again != exporter && (again & 0xFFFFFFFFu) == (exporter & 0xFFFFFFFFu), "slot reused: %llx after %llx",
          (unsigned long long)again, (unsigned long long)exporter);
    EXPECT(FORKSCOPE_E_CLOSED, forkscope_exporter_counters(exporter, &counters));
    EXPECT(FORKSCOPE_OK, forkscope_exporter_close(again, 100));

    /* A send in flight (the slow agent holds each reply), cancelled from a
     * signal handler; the spans are re-queued and sent again. */
    forkscope_exporter slow = 0;
    EXPECT(FORKSCOPE_OK, forkscope_exporter_create(slow_agent, "drain", &slow));
    signal_target = slow;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = cancel_from_signal;
    sigaction(SIGUSR1, &action, NULL);
    EXPECT(FORKSCOPE_OK, enqueue_trace(slow, 2));
    for (int i = 0; i < 400 && handler_status != FORKSCOPE_OK; i++) {
        raise(SIGUSR1);
        sleep_ms(10);
    }
    CHECK(handler_status == FORKSCOPE_OK, "a send in flight was cancelled from a signal handler: %s",
          forkscope_status_name(handler_status));
    counters = wait_for_cancelled(slow, 1);
    CHECK(counters.cancelled >= 1 && counters.requeued >= 2, "cancelled %llu requeued %llu",
          (unsigned long long)counters.cancelled, (unsigned long long)counters.requeued);
    EXPECT(FORKSCOPE_OK, forkscope_exporter_flush(slow, 8000));            /* re-sent, not lost */
    EXPECT(FORKSCOPE_OK, forkscope_exporter_counters(slow, &counters));
    CHECK(counters.sent == 2 && counters.dropped == 0, "sent %llu dropped %llu", (unsigned long long)counters.sent,
          (unsigned long long)counters.dropped);
    EXPECT(FORKSCOPE_OK, enqueue_trace(slow, 1));
    for (int i = 0; i < 400; i++) {                                       /* the ordinary cancel */
        int cancelled = forkscope_exporter_cancel_send(slow, FORKSCOPE_CANCEL_OPERATOR_REQUEST);
        if (cancelled == FORKSCOPE_OK) break;
        CHECK(cancelled == FORKSCOPE_E_NO_SEND, "cancel: %s", forkscope_status_name(cancelled));
        sleep_ms(10);
    }
    counters = wait_for_cancelled(slow, 2);
    CHECK(counters.cancelled >= 2, "cancelled %llu", (unsigned long long)counters.cancelled);
    EXPECT(FORKSCOPE_E_TIMEOUT, forkscope_exporter_flush(slow, 1));
    EXPECT(FORKSCOPE_OK, forkscope_exporter_close(slow, 8000));

    /* The handle table is finite: the error says so, and closing frees it. */
    static forkscope_exporter many[300];
    int opened = 0, status_at_limit = FORKSCOPE_OK;
    for (; opened < 300; opened++) {
        status_at_limit = forkscope_exporter_create(agent, "cancel", &many[opened]);
        if (status_at_limit != FORKSCOPE_OK) break;
    }
    CHECK(status_at_limit == FORKSCOPE_E_LIMIT && opened == 256, "limit after %d: %s", opened, forkscope_status_name(status_at_limit));
    CHECK(strstr(forkscope_last_error(), "256") != NULL, "the message names the limit: %s", forkscope_last_error());
    for (int i = 0; i < opened; i++) EXPECT(FORKSCOPE_OK, forkscope_exporter_close(many[i], 0));
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: abi_test RING_DIR AGENT_URL SLOW_AGENT_URL\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_status_and_vocabulary();
    test_without_ring();
    test_ring(argv[1]);
    test_fork_stages();
    test_exporter(argv[2], argv[3]);
    printf("checks %d failures %d\n", checks, failures);
    return failures > 100 ? 100 : failures;
}
