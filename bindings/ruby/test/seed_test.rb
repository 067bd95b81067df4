# frozen_string_literal: true

# The first seed's own tests, in Ruby, against a real `forkscope agent`
# (FORKSCOPE_AGENT_URL): a delaying agent holds a send while the process
# forks through the at_fork patch (policy drain), and Thread#kill of a
# thread whose send is held. Run by Tests/RubyHostTests (which builds the
# extension and starts the agent); by hand:
#
#   FORKSCOPE_AGENT_URL=http://127.0.0.1:PORT RUBYLIB=bindings/ruby/lib:EXTDIR ruby bindings/ruby/test/seed_test.rb
require "minitest/autorun"
require "json"
require "net/http"
require "rbconfig"
require "forkscope"

Forkscope.install

class SeedTest < Minitest::Test
  AGENT = ENV.fetch("FORKSCOPE_AGENT_URL")

  def setup
    control("/control/hold?enabled=false")
    control("/control/release")
    @transport = Forkscope::Transport.new(agent_url: AGENT, policy: "drain")
  end

  def teardown
    control("/control/hold?enabled=false")
    control("/control/release")
    @transport.close(2_000)
  end

  def control(path, method: :post)
    uri = URI(AGENT + path)
    response = method == :post ? Net::HTTP.post(uri, "") : Net::HTTP.get_response(uri)
    assert_equal "200", response.code, "#{path}: #{response.body}"
    JSON.parse(response.body)
  end

  def stats
    JSON.parse(Net::HTTP.get(URI("#{AGENT}/stats")))
  end

  def trace(name)
    span = Forkscope::Span.new(name, service: "seed-test")
    span.metrics["process_id"] = Process.pid
    [span.finish.to_native]
  end

  def now
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  # A send is held by the agent; Process.fork goes through the patch,
  # whose :before stage (policy drain) waits for that send. A releaser
  # process (Process.spawn: not a fork of ours) lets it go after 400 ms:
  # the fork returns only then; the child sends and exits 0; the parent's
  # transport still works.
  def test_fork_during_held_send_waits_for_drain_then_child_sends_and_parent_still_works
    document = stats
    unique_before = document["unique_spans"]
    mine_before = document.dig("per_process", Process.pid.to_s, "unique") || 0
    control("/control/hold")
    held = Thread.new { @transport.send_traces([trace("held")], timeout_ms: 10_000) }
    control("/control/wait-held?count=1&timeout_ms=5000", method: :get)
    control("/control/hold?enabled=false")

    releaser = Process.spawn(RbConfig.ruby, "-rnet/http", "-e",
                             "sleep 0.4; Net::HTTP.post(URI(#{"#{AGENT}/control/release".inspect}), '')")
    started = now
    pid = Process.fork do
      status = @transport.send_traces([trace("child")], timeout_ms: 5_000)
      exit!(status == :delivered ? 0 : 3)
    rescue Exception => e # rubocop:disable Lint/RescueException -- the child reports through its exit status
      warn "child: #{e.class}: #{e.message}"
      exit!(4)
    end
    blocked = now - started
    _, child_status = Process.wait2(pid)
    Process.wait(releaser)
    puts format("fork blocked %.0f ms until the held send drained", blocked * 1000)

    assert_operator blocked, :>=, 0.3, "the fork waited for the held send (drain)"
    assert_equal 0, child_status.exitstatus, "the child sent and exited 0"
    assert_equal :delivered, held.value, "the held send completed in the parent"
    assert_equal :delivered, @transport.send_traces([trace("after")], timeout_ms: 5_000), "the parent's transport still works"
    document = stats
    assert_equal unique_before + 3, document["unique_spans"], document.inspect
    assert_equal mine_before + 2, document.dig("per_process", Process.pid.to_s, "unique"), document.inspect
    assert_equal 1, document.dig("per_process", pid.to_s, "unique"), document.inspect
  end

  # Thread#kill of a thread whose send the agent holds: the UBF cancels the
  # send, the thread dies promptly (the interrupt is re-raised after the
  # send ran, never turned into an error response), and the spans are
  # re-queued and delivered once the agent answers again.
  def test_thread_kill_during_held_send_kills_promptly_reraises_and_requeues
    unique_before = stats["unique_spans"]
    native_before = Forkscope::Native.stats
    control("/control/hold")
    returned = []
    raised = []
    victim = Thread.new do
      returned << @transport.send_traces([trace("killed"), trace("killed too")], timeout_ms: 30_000)
    rescue StandardError => e
      raised << e
    end
    control("/control/wait-held?count=1&timeout_ms=5000", method: :get)
    sleep 0.05 # the victim is inside the no-GVL wait
    killed = now
    victim.kill
    died = victim.join(5)
    elapsed = now - killed
    puts format("kill-to-death %.1f ms", elapsed * 1000)

    refute_nil died, "the thread died within 5 s"
    refute victim.alive?
    assert_empty returned, "send_traces did not return a response"
    assert_empty raised, "the kill was not turned into an error"
    native = Forkscope::Native.stats
    assert_equal native_before[:interrupts_after_send_ran] + 1, native[:interrupts_after_send_ran], native.inspect
    assert_equal native_before[:error_responses], native[:error_responses], native.inspect
    assert_operator native[:unblock_calls], :>, native_before[:unblock_calls]
    assert_operator elapsed, :<, 1.0, "promptly"

    counters = @transport.counters
    assert_operator counters["requeued"], :>=, 2, counters.inspect
    assert_operator counters["cancelled"], :>=, 1, counters.inspect

    control("/control/hold?enabled=false")
    control("/control/release")
    @transport.flush(5_000)
    assert_equal unique_before + 2, stats["unique_spans"], "the re-queued spans were delivered later"
    assert_equal 0, @transport.counters["dropped"]
  end
end
