# frozen_string_literal: true

require "securerandom"

module Forkscope
  # One span; `finish` computes its duration. Ids are random 64-bit numbers.
  class Span
    attr_reader :trace_id, :span_id, :parent_id, :name, :service, :meta, :metrics
    attr_accessor :resource, :type, :error

    def initialize(name, service:, resource: nil, type: nil, parent: nil)
      @name = name
      @service = service
      @resource = resource || name
      @type = type
      @trace_id = parent ? parent.trace_id : Tracer.random_id
      @parent_id = parent ? parent.span_id : 0
      @span_id = Tracer.random_id
      @start_ns = Process.clock_gettime(Process::CLOCK_REALTIME, :nanosecond)
      @started = Process.clock_gettime(Process::CLOCK_MONOTONIC, :nanosecond)
      @duration_ns = nil
      @error = false
      @meta = {}
      @metrics = {}
    end

    def finish
      @duration_ns ||= Process.clock_gettime(Process::CLOCK_MONOTONIC, :nanosecond) - @started
      self
    end

    # The native extension's span layout.
    def to_native
      [@trace_id, @span_id, @parent_id, @name, @resource, @service, @type, @start_ns, @duration_ns || 0,
       @error, @meta, @metrics]
    end
  end

  # A tracer: `trace` runs a block in a span; a finished root span (with
  # its children) is one trace, enqueued on the transport. The root gets
  # `process_id` (as real tracers do), which the mock agent counts by.
  class Tracer
    attr_reader :service, :transport

    def self.random_id
      SecureRandom.random_number(1 << 63) + 1
    end

    def initialize(service:, transport:)
      @service = service
      @transport = transport
    end

    def trace(name, resource: nil, type: nil)
      stack = (Thread.current[:forkscope_spans] ||= [])
      span = Span.new(name, service: @service, resource: resource, type: type, parent: stack.last)
      stack.push(span)
      begin
        yield span
      rescue Exception # rubocop:disable Lint/RescueException -- marked, then re-raised unchanged
        span.error = true
        raise
      ensure
        stack.pop
        finish(span, stack)
      end
    end

    private

    def finish(span, stack)
      span.finish
      pending = (Thread.current[:forkscope_finished] ||= [])
      pending << span
      return unless stack.empty?

      Thread.current[:forkscope_finished] = []
      span.metrics["process_id"] = Process.pid
      @transport.enqueue(pending.map(&:to_native))
    end
  end
end
