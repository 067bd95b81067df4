# frozen_string_literal: true

# The example Rack app forkscope runs under real Puma (and Unicorn, through
# ../unicorn/config.ru). Every request gets one span
# (Forkscope::Rack::Middleware) and answers with the pid that served it.
# /_forkscope/state (not traced) reports this process's exporter: counters,
# runtime generation and state, and its thread names, so a test can see
# whether the flush thread exists in a worker.
require "json"
require "forkscope"
require "forkscope/rack"

Forkscope.install
server = ENV.fetch("FORKSCOPE_SERVER", "puma")
# With preload this runs in the master, before the workers fork (Puma's
# preload_app!, Unicorn's preload_app true); without, in each worker.
Forkscope.publish_server_hook("config.ru", server, 0)
Forkscope.tracer(service: ENV["FORKSCOPE_SERVICE"] || "forkscope-#{server}-example")

thread_names = lambda do
  Dir.children("/proc/self/task").map(&:to_i).sort.filter_map do |tid|
    File.read("/proc/self/task/#{tid}/comm").strip
  rescue SystemCallError
    nil # the thread ended while we looked
  end
end

respond = lambda do |document|
  body = "#{JSON.generate(document)}\n"
  [200, { "content-type" => "application/json", "content-length" => body.bytesize.to_s }, [body]]
end

state = lambda do
  { pid: Process.pid, counters: Forkscope.tracer.transport.counters, threads: thread_names.call,
    fork_hooks: Forkscope::ForkStages.open.positive? }
end

use Forkscope::Rack::Middleware
run(lambda do |env|
  case env["PATH_INFO"]
  when "/_forkscope/state" then respond.call(state.call)
  when "/_forkscope/flush"
    Forkscope.flush(2_000)
    respond.call(state.call)
  else respond.call(pid: Process.pid, path: env["PATH_INFO"])
  end
end)
