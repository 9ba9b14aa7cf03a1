/*
** runner.c - a minimal `lua SCRIPT [args]` with the tand module linked
** in and preloaded. The TSan build runs the specs and examples with it:
** a sanitizer runtime cannot be preloaded into the uninstrumented lua5.4
** there, but it can be linked into this program.
*/
#include "ltand.h"

#include <lualib.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    lua_State *L;
    int i, rc;

    if (argc < 2) {
        fprintf(stderr, "usage: %s SCRIPT.lua [args]\n", argv[0]);
        return 2;
    }
    L = luaL_newstate();
    if (L == NULL) {
        fprintf(stderr, "%s: not enough memory\n", argv[0]);
        return 1;
    }
    ltand_setup_state(L, NULL, NULL);
    lua_createtable(L, argc, 1);
    for (i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - 1);
    }
    lua_setglobal(L, "arg");
    lua_pushcfunction(L, ltand_traceback);
    rc = luaL_loadfile(L, argv[1]);
    if (rc == LUA_OK) {
        for (i = 2; i < argc; i++)
            lua_pushstring(L, argv[i]);
        rc = lua_pcall(L, argc - 2, 0, 1);
    }
    if (rc != LUA_OK)
        fprintf(stderr, "%s: %s\n", argv[0], lua_tostring(L, -1));
    lua_close(L);
    return rc == LUA_OK ? 0 : 1;
}
