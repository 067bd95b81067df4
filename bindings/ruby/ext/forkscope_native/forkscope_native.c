/*
 * forkscope_native: the Ruby side of libforkscope (forkscope.h).
 *
 * GVL discipline: every Ruby API call happens with the GVL held. The one
 * blocking call, Exporter#send_and_wait, runs without it through
 * rb_thread_call_without_gvl2 with a custom unblock function (UBF), as
 * dd-trace-rb's native exporter does (the first seed): the UBF only stores
 * a C11 atomic and calls forkscope_exporter_cancel_send_signal_safe (C
 * atomics and one write(2)), both async-signal-safe, since Ruby may call
 * it from another thread or its timer thread. The cancelled send's spans
 * are re-queued by the library, never dropped.
 *
 * After the call, a pending interrupt is checked unconditionally, also
 * when the send ran and came back cancelled (the path the seed's review
 * found swallowed into an error response), and re-raised with rb_jump_tag.
 */
#include <ruby.h>
#include <ruby/thread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "forkscope.h"

static VALUE mForkscope;
static VALUE mNative;
static VALUE cExporter;
static VALUE eError;

/* How often an interrupt was re-raised after the send had run (the
 * seed's review path) and how often the UBF fired. Touched with the GVL
 * held (interrupts) or from the UBF (atomic). */
static uint64_t interrupts_after_send_ran;
static uint64_t interrupts_before_send_ran;
static _Atomic uint64_t unblock_calls;
static uint64_t error_responses;

/* Raises Forkscope::Error with the library's message for this thread. */
static void raise_status(const char *what, int status) {
    VALUE error = rb_exc_new_str(eError, rb_sprintf("%s: %s: %s", what, forkscope_status_name(status), forkscope_last_error()));
    rb_iv_set(error, "@status", rb_str_new_cstr(forkscope_status_name(status)));
    rb_exc_raise(error);
}

static void check(const char *what, int status) {
    if (status != FORKSCOPE_OK) raise_status(what, status);
}

/* ------------------------------------------------------------------ ring */

static VALUE native_abi_version(VALUE self) { return UINT2NUM(forkscope_abi_version()); }

static VALUE native_ring_open(VALUE self, VALUE path) {
    check("forkscope_ring_open", forkscope_ring_open(NIL_P(path) ? NULL : StringValueCStr(path)));
    return Qtrue;
}

static VALUE native_ring_attached(VALUE self) { return forkscope_ring_attached() ? Qtrue : Qfalse; }

static VALUE native_publish_server_hook(VALUE self, VALUE hook, VALUE server, VALUE index) {
    if (!forkscope_ring_attached()) return Qfalse;
    check("forkscope_publish_server_hook",
          forkscope_publish_server_hook(StringValueCStr(hook), StringValueCStr(server), NUM2ULL(index)));
    return Qtrue;
}

/* process.start: ppid, role, name (the role is a forkscope_process_role). */
static VALUE native_publish_process_start(VALUE self, VALUE role, VALUE name) {
    if (!forkscope_ring_attached()) return Qfalse;
    uint64_t args[4] = {(uint64_t)getppid(), NUM2ULL(role), 0, 0};
    const char *strings[4] = {NULL, NULL, StringValueCStr(name), NULL};
    check("forkscope_publish_typed", forkscope_publish_typed(FORKSCOPE_EVENT_PROCESS_START, args, strings));
    return Qtrue;
}

/* ----------------------------------------------------------- fork stages */

/* Called with the GVL held, as Ruby's own fork holds it: a drain waits on
 * the library's flush thread, which needs no GVL. Not releasing it keeps
 * every other Ruby thread out of the library while its table lock is held
 * across fork(). */
static VALUE native_before_fork(VALUE self) {
    int status = forkscope_before_fork();
    if (status == FORKSCOPE_E_HOOK_FAILED) return Qfalse; /* parent stage already ran */
    check("forkscope_before_fork", status);
    return Qtrue;
}

static VALUE native_after_fork_parent(VALUE self, VALUE pid) {
    check("forkscope_after_fork_parent", forkscope_after_fork_parent(NUM2LL(pid)));
    return Qtrue;
}

static VALUE native_after_fork_child(VALUE self) {
    check("forkscope_after_fork_child", forkscope_after_fork_child());
    return Qtrue;
}

static VALUE native_fork_generation(VALUE self) { return UINT2NUM(forkscope_fork_generation()); }

static VALUE native_stats(VALUE self) {
    VALUE hash = rb_hash_new();
    rb_hash_aset(hash, ID2SYM(rb_intern("interrupts_after_send_ran")), ULL2NUM(interrupts_after_send_ran));
    rb_hash_aset(hash, ID2SYM(rb_intern("interrupts_before_send_ran")), ULL2NUM(interrupts_before_send_ran));
    rb_hash_aset(hash, ID2SYM(rb_intern("unblock_calls")), ULL2NUM(atomic_load(&unblock_calls)));
    rb_hash_aset(hash, ID2SYM(rb_intern("error_responses")), ULL2NUM(error_responses));
    return hash;
}

/* -------------------------------------------------------------- exporter */

typedef struct {
    forkscope_exporter handle; /* 0 once closed */
} exporter_t;

static void exporter_free(void *pointer) {
    exporter_t *exporter = pointer;
    /* A Transport closes deterministically; this is the fallback for a
     * dropped one, inside GC: nothing may wait here. The send in flight
     * (if any) is cancelled first, since close waits for it; what is
     * buffered is then dropped and counted (shutdown_deadline). */
    if (exporter->handle != 0) {
        (void)forkscope_exporter_cancel_send_signal_safe(exporter->handle, FORKSCOPE_CANCEL_CLOSE);
        (void)forkscope_exporter_close(exporter->handle, 0);
    }
    xfree(exporter);
}

static size_t exporter_size(const void *pointer) { return sizeof(exporter_t); }

static const rb_data_type_t exporter_type = {
    .wrap_struct_name = "Forkscope::Native::Exporter",
    .function = {.dmark = NULL, .dfree = exporter_free, .dsize = exporter_size},
    .flags = RUBY_TYPED_FREE_IMMEDIATELY,
};

static VALUE exporter_alloc(VALUE klass) {
    exporter_t *exporter;
    VALUE object = TypedData_Make_Struct(klass, exporter_t, &exporter_type, exporter);
    exporter->handle = 0;
    return object;
}

static exporter_t *open_exporter(VALUE self) {
    exporter_t *exporter;
    TypedData_Get_Struct(self, exporter_t, &exporter_type, exporter);
    if (exporter->handle == 0) rb_raise(eError, "the exporter is closed");
    return exporter;
}

/* Exporter.new(agent_url = nil, policy = nil) */
static VALUE exporter_initialize(int argc, VALUE *argv, VALUE self) {
    VALUE url, policy;
    rb_scan_args(argc, argv, "02", &url, &policy);
    exporter_t *exporter;
    TypedData_Get_Struct(self, exporter_t, &exporter_type, exporter);
    forkscope_exporter handle = 0;
    check("forkscope_exporter_create",
          forkscope_exporter_create(NIL_P(url) ? NULL : StringValueCStr(url), NIL_P(policy) ? NULL : StringValueCStr(policy), &handle));
    exporter->handle = handle;
    return self;
}

static VALUE exporter_handle(VALUE self) {
    exporter_t *exporter;
    TypedData_Get_Struct(self, exporter_t, &exporter_type, exporter);
    return ULL2NUM(exporter->handle);
}

static VALUE exporter_set_fork_detection(VALUE self, VALUE enabled) {
    check("forkscope_exporter_set_fork_detection", forkscope_exporter_set_fork_detection(open_exporter(self)->handle, RTEST(enabled) ? 1 : 0));
    return enabled;
}

static const char *optional_cstr(VALUE value) { return NIL_P(value) ? NULL : StringValueCStr(value); }

/* enqueue(trace): trace is an Array of span Arrays
 *   [trace_id, span_id, parent_id, name, resource, service, type,
 *    start_ns, duration_ns, error, meta Hash, metrics Hash]
 * Returns false when the library dropped (and counted) it. The C strings
 * point into the Ruby strings, which `trace` keeps alive for the call. */
static VALUE exporter_enqueue(VALUE self, VALUE trace) {
    exporter_t *exporter = open_exporter(self);
    Check_Type(trace, T_ARRAY);
    long count = RARRAY_LEN(trace);
    if (count < 1) rb_raise(rb_eArgError, "a trace needs at least one span");
    VALUE keep = rb_ary_new(); /* strings converted here, alive until the call returns */
    VALUE span_buffer;
    forkscope_span *spans = ALLOCV_N(forkscope_span, span_buffer, count);
    long total_meta = 0, total_metrics = 0;
    for (long i = 0; i < count; i++) {
        VALUE span = rb_ary_entry(trace, i);
        Check_Type(span, T_ARRAY);
        if (RARRAY_LEN(span) != 12) rb_raise(rb_eArgError, "span %ld has %ld fields, not 12", i, RARRAY_LEN(span));
        VALUE meta = rb_ary_entry(span, 10), metrics = rb_ary_entry(span, 11);
        if (!NIL_P(meta)) { Check_Type(meta, T_HASH); total_meta += RHASH_SIZE(meta); }
        if (!NIL_P(metrics)) { Check_Type(metrics, T_HASH); total_metrics += RHASH_SIZE(metrics); }
    }
    VALUE tag_buffer, metric_buffer;
    forkscope_tag *tags = ALLOCV_N(forkscope_tag, tag_buffer, total_meta > 0 ? total_meta : 1);
    forkscope_metric *values = ALLOCV_N(forkscope_metric, metric_buffer, total_metrics > 0 ? total_metrics : 1);
    long tag_at = 0, metric_at = 0;
    for (long i = 0; i < count; i++) {
        VALUE span = rb_ary_entry(trace, i);
        forkscope_span *c = &spans[i];
        memset(c, 0, sizeof *c);
        c->trace_id = NUM2ULL(rb_ary_entry(span, 0));
        c->span_id = NUM2ULL(rb_ary_entry(span, 1));
        c->parent_id = NUM2ULL(rb_ary_entry(span, 2));
        VALUE name = rb_ary_entry(span, 3), resource = rb_ary_entry(span, 4), service = rb_ary_entry(span, 5), type = rb_ary_entry(span, 6);
        rb_ary_push(keep, name);
        rb_ary_push(keep, resource);
        rb_ary_push(keep, service);
        rb_ary_push(keep, type);
        c->name = StringValueCStr(name);
        c->resource = optional_cstr(resource);
        c->service = StringValueCStr(service);
        c->type = optional_cstr(type);
        c->start_ns = NUM2LL(rb_ary_entry(span, 7));
        c->duration_ns = NUM2LL(rb_ary_entry(span, 8));
        c->error = RTEST(rb_ary_entry(span, 9)) ? 1 : 0;
        VALUE meta = rb_ary_entry(span, 10), metrics = rb_ary_entry(span, 11);
        if (!NIL_P(meta)) {
            VALUE pairs = rb_funcall(meta, rb_intern("to_a"), 0);
            rb_ary_push(keep, pairs);
            c->meta = &tags[tag_at];
            for (long j = 0; j < RARRAY_LEN(pairs); j++) {
                VALUE pair = rb_ary_entry(pairs, j);
                VALUE key = rb_obj_as_string(rb_ary_entry(pair, 0)), value = rb_obj_as_string(rb_ary_entry(pair, 1));
                rb_ary_push(keep, key);
                rb_ary_push(keep, value);
                tags[tag_at].key = StringValueCStr(key);
                tags[tag_at].value = StringValueCStr(value);
                tag_at++;
                c->meta_count++;
            }
        }
        if (!NIL_P(metrics)) {
            VALUE pairs = rb_funcall(metrics, rb_intern("to_a"), 0);
            rb_ary_push(keep, pairs);
            c->metrics = &values[metric_at];
            for (long j = 0; j < RARRAY_LEN(pairs); j++) {
                VALUE pair = rb_ary_entry(pairs, j);
                VALUE key = rb_obj_as_string(rb_ary_entry(pair, 0));
                rb_ary_push(keep, key);
                values[metric_at].key = StringValueCStr(key);
                values[metric_at].value = NUM2DBL(rb_ary_entry(pair, 1));
                metric_at++;
                c->metrics_count++;
            }
        }
    }
    int status = forkscope_exporter_enqueue(exporter->handle, spans, (size_t)count);
    RB_GC_GUARD(keep);
    ALLOCV_END(span_buffer);
    ALLOCV_END(tag_buffer);
    ALLOCV_END(metric_buffer);
    if (status == FORKSCOPE_E_DROPPED) return Qfalse;
    check("forkscope_exporter_enqueue", status);
    return Qtrue;
}

/* ---- the cancellable send ------------------------------------------- */

enum send_result { SEND_DELIVERED = 0, SEND_TIMED_OUT = 1, SEND_INTERRUPTED = 2, SEND_FAILED = 3 };

typedef struct {
    forkscope_exporter handle;
    uint32_t timeout_ms;
    /* Set by the UBF (async-signal-safe: a lock-free atomic store). */
    atomic_int interrupted;
    /* Set by the no-GVL function once it ran (read after the call, on
     * the same thread). */
    int ran;
    enum send_result result;
    int status;
} send_args;

static uint64_t monotonic_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
}

/* Runs without the GVL: no Ruby API here. Waits, in slices of 20 ms, until
 * the library's flush thread has delivered everything buffered, checking
 * the UBF's word between slices; the UBF's cancel ends a held send at once
 * (the eventfd wakes the flush thread), so a kill is seen within a slice. */
static void *send_without_gvl(void *pointer) {
    send_args *args = pointer;
    args->ran = 1;
    uint64_t deadline = monotonic_ms() + args->timeout_ms;
    for (;;) {
        if (atomic_load_explicit(&args->interrupted, memory_order_acquire)) {
            args->result = SEND_INTERRUPTED;
            return NULL;
        }
        uint64_t now = monotonic_ms();
        if (now >= deadline) {
            args->result = SEND_TIMED_OUT;
            return NULL;
        }
        uint64_t left = deadline - now;
        int status = forkscope_exporter_flush(args->handle, left < 20 ? (uint32_t)left : 20);
        if (status == FORKSCOPE_OK) {
            args->result = SEND_DELIVERED;
            return NULL;
        }
        if (status != FORKSCOPE_E_TIMEOUT) {
            args->result = SEND_FAILED;
            args->status = status;
            return NULL;
        }
    }
}

/* The unblock function: Thread#kill, Thread#raise, VM shutdown. Only the
 * C cancellation word and the library's signal-safe cancel. */
static void unblock_send(void *pointer) {
    send_args *args = pointer;
    atomic_fetch_add_explicit(&unblock_calls, 1, memory_order_relaxed);
    atomic_store_explicit(&args->interrupted, 1, memory_order_release);
    (void)forkscope_exporter_cancel_send_signal_safe(args->handle, FORKSCOPE_CANCEL_THREAD_KILLED);
}

static VALUE check_ints(VALUE unused) {
    rb_thread_check_ints();
    return Qnil;
}

/* send_and_wait(timeout_ms) → :delivered | :timed_out
 * Asks the flush thread to send now and waits, without the GVL, until
 * nothing is buffered. Interrupted (Thread#kill/raise): the send in flight
 * is cancelled, its spans re-queued, and the interrupt propagates. */
static VALUE exporter_send_and_wait(VALUE self, VALUE timeout) {
    exporter_t *exporter = open_exporter(self);
    send_args args;
    memset(&args, 0, sizeof args);
    args.handle = exporter->handle;
    args.timeout_ms = NUM2UINT(timeout);
    atomic_init(&args.interrupted, 0);
    for (;;) {
        args.ran = 0;
        atomic_store(&args.interrupted, 0);
        rb_thread_call_without_gvl2(send_without_gvl, &args, unblock_send, &args);
        /* Unconditionally: also when the send ran and returned because the
         * UBF cancelled it (the seed's review path). Nothing is held here
         * that must be freed first (the spans are the library's, already
         * re-queued), so jump at once. */
        int state = 0;
        rb_protect(check_ints, Qnil, &state);
        if (state) {
            if (args.ran) interrupts_after_send_ran++;
            else interrupts_before_send_ran++;
            rb_jump_tag(state);
        }
        /* Not ran (an interrupt was pending and handled, e.g. a trap), or
         * the UBF fired for an interrupt that raised nothing: wait again. */
        if (!args.ran || args.result == SEND_INTERRUPTED) continue;
        break;
    }
    switch (args.result) {
    case SEND_DELIVERED: return ID2SYM(rb_intern("delivered"));
    case SEND_TIMED_OUT: return ID2SYM(rb_intern("timed_out"));
    case SEND_INTERRUPTED: case SEND_FAILED: break;
    }
    /* An error response: counted, so a test can check a kill never ends here. */
    error_responses++;
    raise_status("forkscope_exporter_flush", args.status);
    return Qnil;
}

static VALUE exporter_flush(VALUE self, VALUE timeout) {
    check("forkscope_exporter_flush", forkscope_exporter_flush(open_exporter(self)->handle, NUM2UINT(timeout)));
    return Qtrue;
}

static VALUE exporter_cancel_send(VALUE self, VALUE reason) {
    int status = forkscope_exporter_cancel_send(open_exporter(self)->handle, NUM2UINT(reason));
    if (status == FORKSCOPE_E_NO_SEND) return Qfalse;
    check("forkscope_exporter_cancel_send", status);
    return Qtrue;
}

static VALUE exporter_counters(VALUE self) {
    forkscope_counters c;
    check("forkscope_exporter_counters", forkscope_exporter_counters(open_exporter(self)->handle, &c));
    static const char *states[] = {"stopped", "running", "quiescing", "quiesced"};
    VALUE hash = rb_hash_new();
#define PUT(name, value) rb_hash_aset(hash, rb_str_new_cstr(name), value)
    PUT("accepted", ULL2NUM(c.accepted));
    PUT("sent", ULL2NUM(c.sent));
    PUT("buffered", ULL2NUM(c.buffered));
    PUT("requeued", ULL2NUM(c.requeued));
    PUT("cancelled", ULL2NUM(c.cancelled));
    PUT("failed", ULL2NUM(c.failed));
    PUT("dropped", ULL2NUM(c.dropped));
    PUT("runtime_generation", UINT2NUM(c.runtime_generation));
    PUT("runtime_state", rb_str_new_cstr(c.runtime_state < 4 ? states[c.runtime_state] : "unknown"));
    PUT("detects_unhooked_forks", c.detects_unhooked_forks ? Qtrue : Qfalse);
    PUT("pid", INT2NUM(c.pid));
#undef PUT
    return hash;
}

/* close(timeout_ms): flushes (bounded), stops, invalidates. Idempotent
 * here (the library reports a second close as an error). Waits for the
 * flush without the GVL is not needed: close is bounded by timeout_ms. */
static VALUE exporter_close(VALUE self, VALUE timeout) {
    exporter_t *exporter;
    TypedData_Get_Struct(self, exporter_t, &exporter_type, exporter);
    if (exporter->handle == 0) return Qfalse;
    forkscope_exporter handle = exporter->handle;
    exporter->handle = 0;
    check("forkscope_exporter_close", forkscope_exporter_close(handle, NUM2UINT(timeout)));
    return Qtrue;
}

static VALUE exporter_closed_p(VALUE self) {
    exporter_t *exporter;
    TypedData_Get_Struct(self, exporter_t, &exporter_type, exporter);
    return exporter->handle == 0 ? Qtrue : Qfalse;
}

void Init_forkscope_native(void) {
    mForkscope = rb_define_module("Forkscope");
    mNative = rb_define_module_under(mForkscope, "Native");
    eError = rb_define_class_under(mForkscope, "Error", rb_eStandardError);
    rb_define_attr(eError, "status", 1, 0);

    rb_define_module_function(mNative, "abi_version", native_abi_version, 0);
    rb_define_module_function(mNative, "ring_open", native_ring_open, 1);
    rb_define_module_function(mNative, "ring_attached?", native_ring_attached, 0);
    rb_define_module_function(mNative, "publish_server_hook", native_publish_server_hook, 3);
    rb_define_module_function(mNative, "publish_process_start", native_publish_process_start, 2);
    rb_define_module_function(mNative, "before_fork", native_before_fork, 0);
    rb_define_module_function(mNative, "after_fork_parent", native_after_fork_parent, 1);
    rb_define_module_function(mNative, "after_fork_child", native_after_fork_child, 0);
    rb_define_module_function(mNative, "fork_generation", native_fork_generation, 0);
    rb_define_module_function(mNative, "stats", native_stats, 0);
    rb_define_const(mNative, "CANCEL_OPERATOR", UINT2NUM(FORKSCOPE_CANCEL_OPERATOR_REQUEST));
    rb_define_const(mNative, "CANCEL_THREAD_KILLED", UINT2NUM(FORKSCOPE_CANCEL_THREAD_KILLED));
    rb_define_const(mNative, "ROLE_MASTER", UINT2NUM(FORKSCOPE_ROLE_MASTER));
    rb_define_const(mNative, "ROLE_WORKER", UINT2NUM(FORKSCOPE_ROLE_WORKER));
    rb_define_const(mNative, "ROLE_HOST", UINT2NUM(FORKSCOPE_ROLE_HOST));

    cExporter = rb_define_class_under(mNative, "Exporter", rb_cObject);
    rb_define_alloc_func(cExporter, exporter_alloc);
    rb_define_method(cExporter, "initialize", exporter_initialize, -1);
    rb_define_method(cExporter, "handle", exporter_handle, 0);
    rb_define_method(cExporter, "fork_detection=", exporter_set_fork_detection, 1);
    rb_define_method(cExporter, "enqueue", exporter_enqueue, 1);
    rb_define_method(cExporter, "send_and_wait", exporter_send_and_wait, 1);
    rb_define_method(cExporter, "flush", exporter_flush, 1);
    rb_define_method(cExporter, "cancel_send", exporter_cancel_send, 1);
    rb_define_method(cExporter, "counters", exporter_counters, 0);
    rb_define_method(cExporter, "close", exporter_close, 1);
    rb_define_method(cExporter, "closed?", exporter_closed_p, 0);
}
