# frozen_string_literal: true

# The same example app as Puma's (one span per request, /_forkscope/state).
ENV["FORKSCOPE_SERVER"] ||= "unicorn"
eval(File.read(File.expand_path("../puma/config.ru", __dir__)), binding, File.expand_path("../puma/config.ru", __dir__)) # rubocop:disable Security/Eval -- one app for both servers
