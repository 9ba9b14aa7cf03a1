#!/usr/bin/env bash
# luarocks_make.sh SOURCE_DIR - runs `luarocks make` at the top of a git
# copy of the tree into a scratch rocks tree, checks that the build left
# the copy as it was (git status, ignored files too), packs the installed
# rock as a binary rock and installs that into a second tree, then uses
# the module from lua5.4: machines, a thread, a policy, and a clean exit.
# KEEP=1 keeps the scratch directory (its rocks.log) for a look.
set -euo pipefail
src=$1
if ! command -v luarocks >/dev/null; then
    echo "luarocks_make: luarocks is not installed (scripts/setup installs it)" >&2
    exit 1
fi
work=$(mktemp -d /tmp/tand-rock-XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
mkdir "$work/src" "$work/out"
tar -C "$src" --exclude='./build*' --exclude=./.git -cf - . |
    tar -C "$work/src" -xf -
git -C "$work/src" init -q
git -C "$work/src" add -A
git -C "$work/src" -c user.name=tand -c user.email=tand@localhost \
    commit -q -m copy

# rocks [ARGS...]: luarocks for Lua 5.4, its log kept, shown on failure.
rocks() {
    luarocks --lua-version=5.4 "$@" >>"$work/rocks.log" 2>&1 || {
        cat "$work/rocks.log" >&2
        exit 1
    }
}
(cd "$work/src" && CMAKE_BUILD_PARALLEL_LEVEL=2 rocks --tree "$work/tree" make)
left=$(git -C "$work/src" status --porcelain --ignored)
if [ -n "$left" ]; then
    echo "luarocks make left files in the tree:" >&2
    echo "$left" >&2
    exit 1
fi

(cd "$work/out" && rocks --tree "$work/tree" pack tand)
rock=$(find "$work/out" -name 'tand-scm-1.*.rock' -print -quit)
if [ -z "$rock" ]; then
    echo "luarocks pack made no binary rock:" >&2
    ls -l "$work/out" >&2
    exit 1
fi
rocks --tree "$work/tree2" install "$rock"

for tree in "$work/tree" "$work/tree2"; do
    cmod=$(dirname "$(find "$tree" -name tand.so -print -quit)")
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
done
