# frozen_string_literal: true

module Forkscope
  # At-fork stages for Ruby's own forks, after dd-trace-rb's
  # AtForkMonkeyPatch: :before (in the parent, just before fork), :parent
  # (in the parent, after it, with the child's pid) and :child (in the new
  # process). `at_fork` returns the block as a handle; `remove_at_fork`
  # deregisters it (an unknown handle is a no-op).
  #
  # Ruby >= 3.1: Process._fork is the one point every Kernel#fork,
  # Process.fork and IO.popen("-") goes through, so only it is prepended
  # (patching Kernel#fork too would run the stages twice). On Ruby 3.1.7
  # `system`, backticks and IO.popen(argv) do not call _fork (measured),
  # but later Rubies and other libraries may: :before stays cheap when no
  # exporter is open. Process.daemon forks without _fork: it runs :before
  # and :child (its parent exits inside daemon(3)).
  module AtFork
    STAGES = %i[before parent child].freeze
    @blocks = { before: [], parent: [], child: [] }
    @lock = Mutex.new

    class << self
      def at_fork(stage, &block)
        raise ArgumentError, "at_fork needs a block" unless block
        check(stage)
        @lock.synchronize { @blocks[stage] = @blocks[stage] + [block] }
        block
      end

      def remove_at_fork(stage, handle)
        check(stage)
        @lock.synchronize do
          before = @blocks[stage]
          @blocks[stage] = before.reject { |block| block.equal?(handle) }
          before.size != @blocks[stage].size
        end
      end

      def registered(stage)
        check(stage)
        @blocks[stage].size
      end

      # Runs a stage's blocks in order (:parent gets the child's pid). The
      # list is copied on write, so a block that registers or removes
      # hooks does not change this run; a failing block is reported and
      # the others still run.
      def run(stage, *args)
        @blocks[stage].each do |block|
          block.call(*args)
        rescue StandardError => e
          warn "forkscope: at_fork(#{stage.inspect}) hook failed: #{e.class}: #{e.message} (the exporter may not be fork-safe in this process)"
        end
      end

      # The lock guards registration only; a child made while another
      # thread held it gets a fresh one.
      def reset_lock_in_child
        @lock = Mutex.new
      end

      def install
        return if @installed

        @installed = true
        if Process.respond_to?(:_fork)
          Process.singleton_class.prepend(ProcessFork)
        else
          Kernel.prepend(KernelFork)
          Kernel.singleton_class.prepend(KernelFork)
          Process.singleton_class.prepend(KernelFork)
        end
        Process.singleton_class.prepend(ProcessDaemon)
      end

      private

      def check(stage)
        raise ArgumentError, "unknown at_fork stage #{stage.inspect} (#{STAGES.map(&:inspect).join(', ')})" unless STAGES.include?(stage)
      end
    end

    # Ruby >= 3.1.
    module ProcessFork
      def _fork
        AtFork.run(:before)
        pid = begin
          super
        rescue SystemCallError => e
          AtFork.run(:parent, -e.errno)
          raise
        end
        if pid.zero?
          AtFork.reset_lock_in_child
          AtFork.run(:child)
        else
          AtFork.run(:parent, pid)
        end
        pid
      end
    end

    # Ruby < 3.1: Kernel#fork and Process.fork, with or without a block.
    module KernelFork
      def fork(&block)
        AtFork.run(:before)
        wrapped = block && proc do
          AtFork.reset_lock_in_child
          AtFork.run(:child)
          block.call
        end
        pid = super(&wrapped)
        if pid.nil?
          AtFork.reset_lock_in_child
          AtFork.run(:child)
        else
          AtFork.run(:parent, pid)
        end
        pid
      end
    end

    module ProcessDaemon
      def daemon(*args)
        AtFork.run(:before)
        result = super
        AtFork.reset_lock_in_child
        AtFork.run(:child)
        result
      end
    end
  end
end
