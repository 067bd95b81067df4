# frozen_string_literal: true

# Puma (cluster mode) configuration of the forkscope example: each of
# Puma's hooks is published by its real name as a server.hook event, so the
# ring shows Puma's own order around each worker fork (cluster.rb
# spawn_workers/spawn_worker, cluster/worker.rb run):
#
#   master: config.ru (preload_app!) → before_fork → on_worker_fork(i)
#           → fork.before → fork() → fork.parent → after_worker_fork(i) …
#   worker: fork.child → on_worker_boot(i) → … → on_worker_shutdown(i)
#
# With fork_worker, worker 0 forks workers 1..N-1 (and reforks them on
# SIGURG or after FORKSCOPE_FORK_WORKER requests): their on_worker_fork /
# after_worker_fork and the fork stages run in worker 0.
#
# `forkscope host puma` runs Puma with this file; by hand:
#   FORKSCOPE_LISTEN=127.0.0.1:9292 RUBYLIB=bindings/ruby/lib:.build-ruby \
#     puma -C examples/puma/puma.rb examples/puma/config.ru
here = File.expand_path(__dir__)
lib = File.expand_path("../../bindings/ruby/lib", here)
$LOAD_PATH.unshift(lib) unless $LOAD_PATH.include?(lib)
require "forkscope"

Forkscope.install
ENV["FORKSCOPE_SERVER"] = "puma"
hook = ->(name, index = 0) { Forkscope.publish_server_hook(name, "puma", index || 0) }

workers Integer(ENV.fetch("FORKSCOPE_WORKERS", "2"))
threads 1, 4
bind "tcp://#{ENV.fetch('FORKSCOPE_LISTEN', '127.0.0.1:9292')}"
rackup File.join(here, "config.ru")
environment "production"
# SIGTERM is the graceful stop here; exit 0 after it rather than re-raising.
raise_exception_on_sigterm false
worker_timeout 30
# A worker's spans are flushed in on_worker_shutdown; give it time.
worker_shutdown_timeout Integer(ENV.fetch("FORKSCOPE_GRACEFUL_TIMEOUT", "10"))
preload_app! if ENV["FORKSCOPE_PRELOAD"] == "1"
fork_worker Integer(ENV["FORKSCOPE_FORK_WORKER"]) if ENV.fetch("FORKSCOPE_FORK_WORKER", "") != ""

before_fork { hook.call("before_fork") }
on_worker_fork { |index| hook.call("on_worker_fork", index) }
after_worker_fork { |index| hook.call("after_worker_fork", index) }
on_worker_boot { |index| hook.call("on_worker_boot", index) }
on_refork { hook.call("on_refork") }
on_worker_shutdown do |index|
  hook.call("on_worker_shutdown", index)
  # Puma workers leave with exit!: no at_exit runs, so flush here.
  Forkscope.shutdown(5_000)
end
