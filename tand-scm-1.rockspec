-- The tand Lua module (tand.so) for LuaRocks, at the top of the tree:
--   luarocks --lua-version=5.4 make
-- CMake builds it (the target tand_lua, as build/tand.so is built) in a
-- directory of its own under $TMPDIR, outside the tree, which is left as
-- it was; set CMAKE_BUILD_PARALLEL_LEVEL to build in parallel. It needs
-- CMake, a C compiler and the headers of SQLite and Lua 5.4 (cmake,
-- libsqlite3-dev and liblua5.4-dev on Debian).
--
-- Publishing: source.url names no server, so this rockspec builds from a
-- checkout only. After `luarocks make`, `luarocks pack tand` makes a
-- binary rock (tand-scm-1.linux-x86_64.rock) that `luarocks install`
-- takes as it is on a like system. A source rock for a rocks server is a
-- copy of this file named tand-VERSION-1.rockspec, with source.url the
-- published repository (git+https://...) and source.tag the release's
-- tag, given to `luarocks upload`.
package = "tand"
version = "scm-1"
source = {
   url = "git+file://."
}
description = {
   summary = "Serialized state servers (ticket machines) for Lua 5.4",
   detailed = [[
      tand runs servers that own their state alone and handle messages one
      at a time while any number of threads call them: a take-a-number
      ticket machine (counter and deluxe forms) whose call handling can be
      overridden with Lua policies, with supervision and SQLite journals.
   ]]
}
dependencies = {
   "lua >= 5.4, < 5.5"
}
external_dependencies = {
   SQLITE = { header = "sqlite3.h", library = "sqlite3" }
}
-- The build directory: named after the rock's install directory, so that
-- the build and install commands agree on it without writing to the tree.
local dir = [[T="${TMPDIR:-/tmp}/tand-luarocks-]] ..
   [[$(echo '$(PREFIX)' | cksum | cut -d ' ' -f 1)"]]
build = {
   type = "command",
   build_command = dir .. [[ &&
      rm -rf "$T" && mkdir "$T" &&
      { cmake -S . -B "$T" -DCMAKE_BUILD_TYPE=Release -DTAND_TESTS=OFF \
          -DCMAKE_INCLUDE_PATH="$(SQLITE_INCDIR)" \
          -DCMAKE_LIBRARY_PATH="$(SQLITE_LIBDIR)" &&
        cmake --build "$T" --target tand_lua ||
        { rm -rf "$T"; exit 1; }; }
   ]],
   install_command = dir .. [[ &&
      cp "$T/tand.so" "$(LIBDIR)/tand.so" && rm -rf "$T"
   ]]
}
