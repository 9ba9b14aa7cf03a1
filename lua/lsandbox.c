/*
** lsandbox.c - the doors a sandboxed policy state has closed: io, os
** beyond time, debug, package loaders, binary chunks and long ones,
** __gc finalizers, and the tand functions that start threads, load code
** (m:reload too), sleep a worker or find servers by name (DESIGN.md,
** "the sandbox").
*/
#include "lpolicy.h"

#include <string.h>


/* setmetatable refusing __gc: a finalizer may run at lua_close, outside
** any callback's deadline. */
static int sandbox_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE &&
        lua_getfield(L, 2, "__gc") != LUA_TNIL)
        return luaL_error(L, "__gc metamethods are not allowed in a "
                             "sandbox");
    lua_settop(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 2, 1);
    return 1;
}

static int sandbox_require(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    if (lua_getfield(L, -1, name) == LUA_TNIL)
        return luaL_error(L, "module '%s' is not available in a sandbox",
                          name);
    return 1;
}

/* The most source one load() in a sandbox compiles: compiling runs in C,
** out of the callback deadline's reach, so it is kept short. */
#define LOAD_MAX_BYTES (1u << 20)

/* A load() reader (upvalue 1) whose pieces add up to LOAD_MAX_BYTES at
** most (upvalue 2 counts them). */
static int capped_reader(lua_State *L)
{
    lua_Integer used = lua_tointeger(L, lua_upvalueindex(2));
    size_t len = 0;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_call(L, 0, 1);
    if (lua_type(L, -1) == LUA_TSTRING)
        lua_tolstring(L, -1, &len);
    if ((size_t)used + len > LOAD_MAX_BYTES)
        return luaL_error(L, "a chunk is limited to %d bytes in a sandbox",
                          (int)LOAD_MAX_BYTES);
    lua_pushinteger(L, used + (lua_Integer)len);
    lua_replace(L, lua_upvalueindex(2));
    return 1;
}

/* load(chunk [, chunkname [, mode [, env]]]), text chunks of at most
** LOAD_MAX_BYTES only: the original load (upvalue 1) with mode "t". An
** env passed as nil stays passed, as load tells a missing env from a nil
** one. */
static int sandbox_load(lua_State *L)
{
    int nargs = lua_gettop(L) >= 4 ? 4 : 3;
    size_t len;
    if (lua_type(L, 1) == LUA_TSTRING) {
        lua_tolstring(L, 1, &len);
        if (len > LOAD_MAX_BYTES) {
            luaL_pushfail(L);
            lua_pushfstring(L, "a chunk is limited to %d bytes in a sandbox",
                            (int)LOAD_MAX_BYTES);
            return 2;
        }
    } else if (lua_type(L, 1) == LUA_TFUNCTION) {
        lua_pushvalue(L, 1);
        lua_pushinteger(L, 0);
        lua_pushcclosure(L, capped_reader, 2);
        lua_replace(L, 1);
    }
    lua_settop(L, nargs);
    lua_pushliteral(L, "t");
    lua_replace(L, 3);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, nargs, LUA_MULTRET);
    return lua_gettop(L);
}

/* Closes every door of DESIGN.md's sandbox: io, os beyond time, debug,
** package loaders, binary chunks, dofile and loadfile; and from tand,
** whatever starts threads, loads code or sleeps a worker. [-0, +0, e] */
void lpolicy_open_sandbox(lua_State *L)
{
    static const char *const gone[] = {"io", "debug", "package", "dofile",
                                       "loadfile", "require", NULL};
    static const char *const os_kept[] = {"time", "clock", "date",
                                          "difftime", NULL};
    /* ... and what finds a server by name: a sandboxed policy reaches
    ** only the handles it is given */
    static const char *const tand_gone[] = {"start", "spawn", "sleep",
                                            "whereis", "register",
                                            "unregister", "supervise",
                                            "cluster", NULL};
    int i, top;
    for (i = 0; gone[i]; i++) {
        lua_pushnil(L);
        lua_setglobal(L, gone[i]);
    }
    lua_getglobal(L, "os");
    lua_createtable(L, 0, 4);
    for (i = 0; os_kept[i]; i++) {
        lua_getfield(L, -2, os_kept[i]);
        lua_setfield(L, -2, os_kept[i]);
    }
    lua_setglobal(L, "os");
    lua_pop(L, 1);
    /* load: text only, through the original function */
    lua_getglobal(L, "load");
    lua_pushcclosure(L, sandbox_load, 1);
    lua_setglobal(L, "load");
    lua_pushcfunction(L, sandbox_require);
    lua_setglobal(L, "require");
    lua_getglobal(L, "setmetatable");
    lua_pushcclosure(L, sandbox_setmetatable, 1);
    lua_setglobal(L, "setmetatable");
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "tand");
    for (i = 0; tand_gone[i]; i++) {
        lua_pushnil(L);
        lua_setfield(L, -2, tand_gone[i]);
    }
    lua_pop(L, 1);
    /* the libraries' own tables in package.loaded lose the same doors */
    for (i = 0; gone[i]; i++) {
        lua_pushnil(L);
        lua_setfield(L, -2, gone[i]);
    }
    lua_getglobal(L, "os");
    lua_setfield(L, -2, "os");
    lua_pop(L, 1);
    /* m:reload loads code into the server a handle reaches, which may be
    ** no sandbox: handles here have no reload */
    top = lua_gettop(L);
    if (luaL_getmetatable(L, LTAND_MACHINE) == LUA_TTABLE &&
        lua_getfield(L, -1, "__index") == LUA_TTABLE) {
        lua_pushnil(L);
        lua_setfield(L, -2, "reload");
    }
    lua_settop(L, top);
}
