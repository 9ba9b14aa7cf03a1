#!/usr/bin/env bash
# luarocks_make.sh SOURCE_DIR - builds and installs the Lua module with
# `luarocks make` from a copy of the tree into a scratch rocks tree, then
# uses it from lua5.4: machines, a thread, a policy, and a clean exit.
set -euo pipefail
src=$1
if ! command -v luarocks >/dev/null; then
    echo "luarocks_make: luarocks is not installed (scripts/setup installs it)" >&2
    exit 1
fi
work=$(mktemp -d /tmp/tand-rock-XXXXXX)
trap 'rm -rf "$work"' EXIT
tar -C "$src" --exclude='./build*' --exclude=./.git -cf - . |
    tar -C "$work" -xf -
mkdir "$work/tree"
(cd "$work" && luarocks --lua-version=5.4 --tree "$work/tree" \
    make tand-scm-1.rockspec >"$work/make.log" 2>&1) || {
    cat "$work/make.log" >&2
    exit 1
}
cmod=$(dirname "$(find "$work/tree" -name tand.so -print -quit)")
lua5.4 -e "package.cpath = '$cmod/?.so'
local tand = require 'tand'
local m = assert(tand.start{ min_number = 1, max_number = 1000 })
local t = tand.spawn(function(h)
  for _ = 1, 100 do assert(h:queue_new_number()) end
  return true
end, m)
assert(t:join(10000) == true)
assert(m:queue_new_number() == 101)
local p = assert(tand.start{ policy = function()
  return { handle_call = function(r, f, s, mm) return mm:default(r) end }
end })
assert(p:queue_new_number() == 1)
print('luarocks: tand ' .. tand.version .. ' from ' ..
      package.searchpath('tand', package.cpath))"
