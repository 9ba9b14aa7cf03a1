-- The tand Lua module for LuaRocks, built from this tree:
--   luarocks --lua-version=5.4 make tand-scm-1.rockspec
-- (from the top of the repository; it needs SQLite's headers,
-- libsqlite3-dev on Debian). CMake builds the same module as build/tand.so.
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
build = {
   type = "builtin",
   modules = {
      tand = {
         sources = {
            "core/src/codec.c", "core/src/journal.c", "core/src/machines.c",
            "core/src/mailbox.c", "core/src/park.c", "core/src/registry.c",
            "core/src/replies.c", "core/src/runtime.c", "core/src/server.c",
            "core/src/supervisor.c", "core/src/table.c", "core/src/ticket.c",
            "core/src/util.c",
            "lua/ltand.c", "lua/lmachine.c", "lua/loptions.c",
            "lua/lsupervise.c", "lua/ldeadline.c", "lua/lpattern.c",
            "lua/lpolicy.c", "lua/lpolicy_call.c",
            "lua/lpolicy_journal.c", "lua/lpolicy_machine.c",
            "lua/lpolicy_reload.c",
            "lua/lpool.c", "lua/lrequest.c", "lua/lsandbox.c",
            "lua/lspawn.c",
            "lua/lvalue.c"
         },
         defines = { "_POSIX_C_SOURCE=200809L" },
         incdirs = { "core/include", "core/src", "$(SQLITE_INCDIR)" },
         libdirs = { "$(SQLITE_LIBDIR)" },
         libraries = { "sqlite3", "pthread", "m", "dl" }
      }
   }
}
