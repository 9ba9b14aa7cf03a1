/*
** test_engines.c MODULE_DIR MODE - one engine a process, whichever way
** tand is loaded: a host linked with libtand whose Lua state also does
** `require "tand"` from package.cpath (MODULE_DIR/tand.so). Built twice:
** test_engines_shared (the shared libtand: the module hands itself over
** to it, so names registered on either side are found on the other) and
** test_engines_static (the static libtand: the copy that makes a runtime
** second is refused, saying why). MODE is host-first or module-first.
*/
#include "check.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

/* Runs chunk in L with package.cpath = dir/?.so; 0, or the error left in
** err. */
static int run_lua(lua_State *L, const char *dir, const char *chunk,
                   char *err, size_t size)
{
    char setup[1024];
    snprintf(setup, sizeof setup, "package.cpath = '%s/?.so'", dir);
    if (luaL_dostring(L, setup) != LUA_OK ||
        luaL_dostring(L, chunk) != LUA_OK) {
        snprintf(err, size, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        fprintf(stderr, "lua: %s\n", err);
        return -1;
    }
    return 0;
}

static tand_server *host_counter(void)
{
    tand_counter_options o;
    tand_server *s = NULL;
    memset(&o, 0, sizeof o);
    o.initial_number = 100;
    o.name = "host_counter";
    CHECK_OK(tand_counter_start(tand_runtime_default(), &o, &s));
    return s;
}

#ifdef TAND_SHARED_HOST
/* A name registered by the host is found from Lua, and one from Lua by
** the host: one engine. */
static void shared(const char *dir, lua_State *L, int host_first)
{
    char err[2048];
    tand_server *mine = NULL, *found = NULL;
    if (host_first)
        mine = host_counter();
    CHECK_OK(run_lua(L, dir,
                     "tand = require 'tand'\n"
                     "lua_counter = assert(tand.start{ initial_number = 7, "
                     "name = 'lua_counter' })",
                     err, sizeof err));
    if (!host_first)
        mine = host_counter();
    CHECK_OK(run_lua(L, dir,
                     "assert(tand.whereis('host_counter'):next('lua') == "
                     "100)",
                     err, sizeof err));
    CHECK_OK(tand_whereis(tand_runtime_default(), "lua_counter", &found));
    tand_server_release(found);
    tand_server_stop(mine, 0, NULL, 5000);
    tand_server_release(mine);
    CHECK_OK(run_lua(L, dir, "lua_counter:stop()", err, sizeof err));
}

#else
/* Two copies: the second to make a runtime is refused. */
static void refused(const char *dir, lua_State *L, int host_first)
{
    char err[2048];
    tand_runtime *rt = NULL;
    if (host_first) {
        tand_server *s = host_counter();
        CHECK_RC(run_lua(L, dir, "require 'tand'", err, sizeof err), -1);
        CHECK(strstr(err, "another copy of the tand engine") != NULL);
        CHECK(strstr(err, "luaL_requiref") != NULL);
        tand_server_stop(s, 0, NULL, 5000);
        tand_server_release(s);
        return;
    }
    CHECK_OK(run_lua(L, dir,
                     "local tand = require 'tand'\n"
                     "assert(tand.start(1)):stop()",
                     err, sizeof err));
    CHECK(tand_runtime_default() == NULL);
    CHECK_RC(tand_runtime_default_error(), TAND_EENGINE);
    CHECK_RC(tand_runtime_new(NULL, &rt), TAND_EENGINE);
    CHECK(rt == NULL);
    CHECK(strcmp(tand_errname(TAND_EENGINE), "another_engine") == 0);
}
#endif

int main(int argc, char **argv)
{
    lua_State *L;
    int host_first;
    if (argc != 3 || (strcmp(argv[2], "host-first") != 0 &&
                      strcmp(argv[2], "module-first") != 0)) {
        fprintf(stderr, "usage: %s MODULE_DIR host-first|module-first\n",
                argv[0]);
        return 2;
    }
    host_first = strcmp(argv[2], "host-first") == 0;
    L = luaL_newstate();
    luaL_openlibs(L);
#ifdef TAND_SHARED_HOST
    shared(argv[1], L, host_first);
#else
    refused(argv[1], L, host_first);
#endif
    lua_close(L);
    return check_done("test_engines");
}
