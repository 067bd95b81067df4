# frozen_string_literal: true

# The AtFork patch and Transport lifecycle, as dd-trace-rb's
# AtForkMonkeyPatch specs: stages and their order around Process.fork
# (block and no block) and Process.daemon, handles and removal, a
# Transport's close (idempotent, hooks removed) and its finalizer (captures
# only the hook handles, so a dropped Transport is collected). Needs
# FORKSCOPE_AGENT_URL (a `forkscope agent`); run by Tests/RubyHostTests.
require "minitest/autorun"
require "forkscope"

Forkscope.install

class AtForkTest < Minitest::Test
  AtFork = Forkscope::AtFork

  def setup
    @handles = []
  end

  def teardown
    @handles.each { |stage, handle| AtFork.remove_at_fork(stage, handle) }
  end

  def hook(stage, &block)
    handle = AtFork.at_fork(stage, &block)
    @handles << [stage, handle]
    handle
  end

  def test_at_fork_returns_the_block_and_remove_at_fork_deregisters_it_once
    before = AtFork.registered(:child)
    block = proc {}
    assert_same block, AtFork.at_fork(:child, &block)
    assert_equal before + 1, AtFork.registered(:child)
    assert AtFork.remove_at_fork(:child, block)
    refute AtFork.remove_at_fork(:child, block), "removing an unknown handle is a no-op"
    assert_equal before, AtFork.registered(:child)
  end

  def test_unknown_stage_is_an_argument_error
    assert_raises(ArgumentError) { AtFork.at_fork(:after) {} }
    assert_raises(ArgumentError) { AtFork.remove_at_fork(:prepare, proc {}) }
  end

  def test_fork_runs_before_then_parent_with_the_pid_and_child_in_the_child
    [true, false].each do |with_block|
      seen = []
      reader, writer = IO.pipe
      hook(:before) { seen << :before }
      hook(:parent) { |pid| seen << [:parent, pid] }
      hook(:child) { writer.write("child ") }
      pid = if with_block
              Process.fork { writer.write("body"); exit!(0) }
            else
              Process.fork || (writer.write("body"); exit!(0))
            end
      writer.close
      Process.wait(pid)
      assert_equal [:before, [:parent, pid]], seen
      assert_equal "child body", reader.read, "the child stage runs before the child's code"
      reader.close
      teardown
      @handles = []
    end
  end

  # daemon(3) forks and the parent exits inside it: :before and :child run,
  # :parent never does. Done in a forked child so the test process stays.
  def test_daemon_runs_before_and_child_only
    reader, writer = IO.pipe
    outer = Process.fork do
      reader.close
      AtFork.at_fork(:before) { writer.write("before ") }
      AtFork.at_fork(:parent) { |_pid| writer.write("parent ") }
      AtFork.at_fork(:child) { writer.write("child ") }
      # The outer child's own fork already ran; only what daemon does counts.
      Process.daemon(true, true)
      writer.write("daemon")
      writer.close
      exit!(0)
    end
    writer.close
    Process.wait(outer)
    assert_equal "before child daemon", reader.read
  end

  def test_before_stage_runs_the_library_only_while_a_transport_is_open
    generations = lambda do
      reader, writer = IO.pipe
      pid = Process.fork { writer.write(Forkscope::Native.fork_generation.to_s); exit!(0) }
      writer.close
      Process.wait(pid)
      reader.read.to_i
    end
    base = Forkscope::Native.fork_generation
    assert_equal 0, Forkscope::ForkStages.open
    assert_equal base, generations.call, "no transport: the stages are skipped (cheap :before)"
    transport = Forkscope::Transport.new(agent_url: ENV.fetch("FORKSCOPE_AGENT_URL"))
    assert_equal base + 1, generations.call, "with a transport: the library's stages ran"
  ensure
    transport&.close(0)
  end

  def test_transport_close_removes_its_hooks_and_is_idempotent
    counts = -> { AtFork::STAGES.map { |stage| AtFork.registered(stage) } }
    before = counts.call
    transport = Forkscope::Transport.new(agent_url: ENV.fetch("FORKSCOPE_AGENT_URL"))
    assert_equal before.map { |n| n + 1 }, counts.call
    assert_equal 1, Forkscope::ForkStages.open
    assert transport.close(0)
    refute transport.close(0), "a second close is a no-op"
    assert_equal before, counts.call
    assert_equal 0, Forkscope::ForkStages.open
    assert_raises(Forkscope::Error) { transport.enqueue([Forkscope::Span.new("x", service: "s").finish.to_native]) }
  end

  # The finalizer is built by a class method and closes over the hook
  # handles only: a Transport dropped without close is collected, and its
  # finalizer removes the hooks.
  def test_dropped_transport_is_collected_and_its_finalizer_removes_the_hooks
    finalizer = Forkscope::Transport.finalizer({})
    assert_equal [:hooks], finalizer.binding.local_variables
    counts = -> { AtFork::STAGES.map { |stage| AtFork.registered(stage) } }
    before = counts.call
    Thread.new { Forkscope::Transport.new(agent_url: ENV.fetch("FORKSCOPE_AGENT_URL")) && nil }.join
    collected = 20.times.any? do
      GC.start(full_mark: true, immediate_sweep: true)
      sleep 0.01
      counts.call == before
    end
    assert collected, "the dropped Transport was finalized (hooks #{counts.call} vs #{before})"
    assert_equal 0, Forkscope::ForkStages.open
  end
end
