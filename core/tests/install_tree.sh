#!/usr/bin/env bash
# install_tree.sh BUILD_DIR SOURCE_DIR - installs the build into a scratch
# prefix, then builds and runs examples/outside against it with
# find_package(tand) (shared and static) and with pkg-config (shared and
# --static), runs the installed tand command, and loads the installed Lua
# module in lua5.4. The exported targets must name their dependencies
# (tand::lua, which tandConfig.cmake finds), never a library's path.
set -euo pipefail
build=$1
src=$2
prefix=$(mktemp -d /tmp/tand-install-XXXXXX)
trap 'rm -rf "$prefix"' EXIT

cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(dirname "$(find "$prefix" -name 'libtand.so' -print -quit)")
export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

echo "== the exported targets"
cmakedir=$(dirname "$(find "$prefix" -name tandConfig.cmake -print -quit)")
if grep -n 'liblua' "$cmakedir"/tandTargets*.cmake >&2; then
    echo "the exported targets name Lua's library by its path" >&2
    exit 1
fi
if grep -n 'INTERFACE_LINK_LIBRARIES.*/' "$cmakedir"/tandTargets*.cmake >&2
then
    echo "the exported targets link a library by its path" >&2
    exit 1
fi

echo "== find_package(tand)"
cmake -S "$src/examples/outside" -B "$prefix/outside" \
    -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/outside" >/dev/null
"$prefix/outside/outside_shared"
"$prefix/outside/outside_static"
# Without pkg-config, tandConfig.cmake finds Lua with CMake's FindLua.
cmake -S "$src/examples/outside" -B "$prefix/outside-findlua" \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON \
    >/dev/null
cmake --build "$prefix/outside-findlua" --target outside_static >/dev/null
"$prefix/outside-findlua/outside_static"
# Captured first: with pipefail, `ldd | grep -q` fails whenever grep quits
# before ldd has written its last line (ldd then dies of SIGPIPE).
deps=$(ldd "$prefix/outside/outside_shared")
if ! grep -q "$libdir/libtand.so" <<<"$deps"; then
    echo "outside_shared does not load $libdir/libtand.so:" >&2
    echo "$deps" >&2
    exit 1
fi

echo "== pkg-config"
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cc -o "$prefix/pc_shared" "$src/examples/outside/main.c" \
    $(pkg-config --cflags --libs tand)
"$prefix/pc_shared"
cc -o "$prefix/pc_static" "$src/examples/outside/main.c" \
    $(pkg-config --cflags tand) "$libdir/libtand.a" \
    $(pkg-config --libs-only-L --libs-only-l --static tand | sed 's/-ltand//')
"$prefix/pc_static"

echo "== the tand command"
"$prefix/bin/tand" --version
"$prefix/bin/tand" run /dev/stdin <<<'print((require "tand").version)'

echo "== the Lua module"
cmod=$(dirname "$(find "$prefix" -name 'tand.so' -path '*lua/5.4*' -print -quit)")
lua5.4 -e "package.cpath = '$cmod/?.so'
  local tand = require 'tand'
  local m = assert(tand.start{ min_number = 1, max_number = 3 })
  assert(m:queue_new_number() == 1)
  print('lua: tand ' .. tand.version .. ' from ' .. package.searchpath('tand', package.cpath))"
