# frozen_string_literal: true

module Forkscope
  # The fork stages of libforkscope are process-wide (one call runs every
  # exporter's participant), while each Transport registers its own
  # at_fork hooks as in dd-trace-rb: the stages run once per fork however
  # many transports are open, and only while at least one is.
  module ForkStages
    @open = 0
    @lock = Mutex.new

    class << self
      attr_reader :open

      def retain
        @lock.synchronize { @open += 1 }
      end

      def release
        @lock.synchronize { @open -= 1 if @open.positive? }
      end

      def before
        return if @open.zero? || Thread.current.thread_variable_get(:forkscope_prepared)

        # false: a hook failed and the library already ran :parent for
        # the others; a child made anyway recovers through fork detection.
        Thread.current.thread_variable_set(:forkscope_prepared, Native.before_fork)
      end

      def parent(pid)
        return unless Thread.current.thread_variable_get(:forkscope_prepared)

        Thread.current.thread_variable_set(:forkscope_prepared, false)
        Native.after_fork_parent(pid)
      end

      def child
        @lock = Mutex.new
        return unless Thread.current.thread_variable_get(:forkscope_prepared)

        Thread.current.thread_variable_set(:forkscope_prepared, false)
        Native.after_fork_child
      end
    end
  end

  # One exporter (buffer, flush thread, agent connection in libforkscope),
  # with its fork hooks. `send_traces` is the seed's send: it runs without
  # the GVL and a Thread#kill cancels it (spans re-queued, the kill goes
  # on); `enqueue` hands a trace to the flush thread and returns at once.
  class Transport
    attr_reader :exporter

    def initialize(agent_url: nil, policy: nil, fork_hooks: Forkscope.fork_hooks_enabled?)
      @exporter = Native::Exporter.new(agent_url, policy)
      @hooks = fork_hooks ? Transport.register_fork_hooks : {}
      ForkStages.retain unless @hooks.empty?
      @closed = false
      ObjectSpace.define_finalizer(self, Transport.finalizer(@hooks))
    end

    # The hooks call ForkStages only: they capture nothing of a Transport,
    # so a dropped Transport stays collectable.
    def self.register_fork_hooks
      {
        before: AtFork.at_fork(:before) { ForkStages.before },
        parent: AtFork.at_fork(:parent) { |pid| ForkStages.parent(pid) },
        child: AtFork.at_fork(:child) { ForkStages.child },
      }
    end

    # Captures only the hook handles (not self, not the exporter).
    def self.finalizer(hooks)
      proc do
        unless hooks.empty?
          hooks.each { |stage, handle| AtFork.remove_at_fork(stage, handle) }
          ForkStages.release
        end
      end
    end

    def fork_detection=(enabled)
      @exporter.fork_detection = enabled
    end

    def enqueue(trace)
      @exporter.enqueue(trace)
    end

    # Enqueues `traces` and waits (without the GVL, at most timeout_ms)
    # until the agent has them: :delivered or :timed_out.
    def send_traces(traces, timeout_ms: 5_000)
      traces.each { |trace| @exporter.enqueue(trace) }
      @exporter.send_and_wait(timeout_ms)
    end

    def flush(timeout_ms = 5_000)
      @exporter.flush(timeout_ms)
    end

    def counters
      @exporter.counters
    end

    def closed?
      @closed
    end

    # Removes the fork hooks, flushes (bounded), stops the exporter.
    # Idempotent.
    def close(timeout_ms = 2_000)
      return false if @closed

      @closed = true
      Transport.finalizer(@hooks).call
      @hooks = {}
      ObjectSpace.undefine_finalizer(self)
      @exporter.close(timeout_ms)
      true
    end
  end
end
