# frozen_string_literal: true

# forkscope: watch a Ruby process tree's trace exporter around fork().
#
#   require "forkscope"
#   Forkscope.install            # ring from FORKSCOPE_RING, at-fork stages
#   Forkscope.tracer.trace("work") { ... }
#
# Configuration by environment (README table): FORKSCOPE_RING,
# FORKSCOPE_AGENT_URL, FORKSCOPE_POLICY, FORKSCOPE_FLUSH_INTERVAL_MS,
# FORKSCOPE_FORK_HOOKS, FORKSCOPE_DETECT_FORKS, FORKSCOPE_SERVICE.
require "forkscope_native"
require "forkscope/at_fork"
require "forkscope/transport"
require "forkscope/tracer"

module Forkscope
  @lock = Mutex.new
  @tracer = nil

  class << self
    def flag(name, default)
      value = ENV.fetch(name, "")
      return default if value.empty?
      raise Error, "#{name}=#{value.inspect} is not 0 or 1" unless %w[0 1].include?(value)

      value == "1"
    end

    def fork_hooks_enabled?
      flag("FORKSCOPE_FORK_HOOKS", true)
    end

    # Attaches the ring (FORKSCOPE_RING, if set) and installs the at_fork
    # patch (unless FORKSCOPE_FORK_HOOKS=0: then forks leave the exporter's
    # flush thread behind, as in the Sqreen post, and only fork detection
    # notices). Idempotent.
    def install(ring: ENV["FORKSCOPE_RING"])
      Native.ring_open(ring) if ring && !ring.empty? && !Native.ring_attached?
      AtFork.install if fork_hooks_enabled?
      true
    end

    # The process's tracer, created (with its exporter and flush thread)
    # on first use: with a preloading server, in the master before fork.
    def tracer(service: nil)
      @lock.synchronize do
        @tracer ||= Tracer.new(service: service || ENV["FORKSCOPE_SERVICE"] || "forkscope-ruby",
                               transport: Transport.new)
      end
    end

    def tracer?
      !@tracer.nil?
    end

    def flush(timeout_ms = 5_000)
      @tracer&.transport&.flush(timeout_ms)
    end

    # Flushes and closes the process's transport (idempotent): at exit,
    # and from the servers' worker-shutdown hooks (Puma workers exit!).
    def shutdown(timeout_ms = 2_000)
      current = @lock.synchronize do
        t = @tracer
        @tracer = nil
        t
      end
      current&.transport&.close(timeout_ms)
    end

    def publish_server_hook(hook, server, index = 0)
      Native.publish_server_hook(hook.to_s, server.to_s, Integer(index || 0))
    end

    def reset_lock_in_child
      @lock = Mutex.new
    end
  end
end

Forkscope::AtFork.at_fork(:child) { Forkscope.reset_lock_in_child }
at_exit { Forkscope.shutdown }
