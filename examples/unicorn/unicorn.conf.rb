# frozen_string_literal: true

# Unicorn configuration of the forkscope example: Unicorn's hooks are
# published by their real names, so the ring shows Unicorn's own order
# (http_server.rb spawn_missing_workers, init_worker_process, worker_loop):
#
#   master: config.ru (preload_app true) → before_fork(nr) → fork.before
#           → fork() → fork.parent → … → after_worker_exit(nr)
#   worker: fork.child → after_fork(nr) → (config.ru without preload)
#           → after_worker_ready(nr) → … → at_exit (flush)
#
# `forkscope host unicorn` runs Unicorn with this file; by hand:
#   FORKSCOPE_LISTEN=127.0.0.1:9292 RUBYLIB=bindings/ruby/lib:.build-ruby \
#     unicorn -c examples/unicorn/unicorn.conf.rb examples/unicorn/config.ru
here = File.expand_path(__dir__)
lib = File.expand_path("../../bindings/ruby/lib", here)
$LOAD_PATH.unshift(lib) unless $LOAD_PATH.include?(lib)
require "forkscope"

Forkscope.install
ENV["FORKSCOPE_SERVER"] = "unicorn"
hook = ->(name, index) { Forkscope.publish_server_hook(name, "unicorn", index) }

worker_processes Integer(ENV.fetch("FORKSCOPE_WORKERS", "2"))
listen ENV.fetch("FORKSCOPE_LISTEN", "127.0.0.1:9292")
timeout 30
preload_app ENV["FORKSCOPE_PRELOAD"] == "1"

before_fork { |_server, worker| hook.call("before_fork", worker.nr) }
after_fork do |_server, worker|
  hook.call("after_fork", worker.nr)
  # Workers leave through `exit` after a graceful QUIT: at_exit flushes.
  at_exit { hook.call("at_exit", worker.nr) }
end
after_worker_ready { |_server, worker| hook.call("after_worker_ready", worker.nr) }
after_worker_exit { |_server, worker, _status| hook.call("after_worker_exit", worker.nr) }
