# frozen_string_literal: true

module Forkscope
  module Rack
    # One span per request (`rack.request`, resource "GET /path"), except
    # paths starting with an excluded prefix.
    class Middleware
      def initialize(app, tracer: nil, exclude: ["/_forkscope/"])
        @app = app
        @tracer = tracer
        @exclude = exclude
      end

      def call(env)
        path = env["PATH_INFO"].to_s
        return @app.call(env) if @exclude.any? { |prefix| path.start_with?(prefix) }

        (@tracer || Forkscope.tracer).trace("rack.request", resource: "#{env['REQUEST_METHOD']} #{path}", type: "web") do |span|
          span.meta["http.method"] = env["REQUEST_METHOD"].to_s
          span.meta["http.url"] = path
          status, headers, body = @app.call(env)
          span.meta["http.status_code"] = status.to_s
          [status, headers, body]
        end
      end
    end
  end
end
