# Builds forkscope_native.so against Debian's ruby-dev, linking libforkscope-c.so.
#
#   ruby extconf.rb --with-forkscope-include=Sources/CForkscope/include \
#                   --with-forkscope-lib=.build/debug && make
#
# or with FORKSCOPE_INCLUDE / FORKSCOPE_LIBDIR in the environment. The
# library directory is also written as the extension's rpath, so a host
# needs no LD_LIBRARY_PATH.
require "mkmf"

here = File.expand_path(__dir__)
root = File.expand_path("../../../..", here)
default_include = ENV["FORKSCOPE_INCLUDE"] || File.join(root, "Sources/CForkscope/include")
default_lib = ENV["FORKSCOPE_LIBDIR"] || File.join(root, ".build/debug")
include_dir, lib_dir = dir_config("forkscope", default_include, default_lib)
include_dir ||= default_include
lib_dir ||= default_lib

$CFLAGS << " -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Werror=implicit-function-declaration"
$LDFLAGS << " -Wl,-rpath,#{File.expand_path(lib_dir)}"

abort "forkscope.h not found in #{include_dir}" unless find_header("forkscope.h", include_dir)
abort "libforkscope-c.so not found in #{lib_dir}: run `swift build` first" unless find_library("forkscope-c", "forkscope_abi_version", lib_dir)
abort "ruby/thread.h lacks rb_thread_call_without_gvl2" unless have_func("rb_thread_call_without_gvl2", "ruby/thread.h")

create_makefile("forkscope_native")
