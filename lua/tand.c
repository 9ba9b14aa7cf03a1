/*
** tand.c - the `tand` command: a Lua 5.4 interpreter with the tand module
** built in, and the subcommands of the Lua files in lua/cli/ (run, repl,
** check, bench), compiled into the program so that it works wherever it is
** copied. Also gives the Lua side what plain Lua lacks for a console:
** line editing and history (libedit, when the build found it), isatty
** and the terminal's width, as the module `tand.cli.native`.
*/
#include "ltand.h"

#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#ifdef TAND_HAVE_EDITLINE
#include <editline/readline.h>
#endif

#include "cli_modules.h" /* generated: cli_modules[] = {name, text, size} */

/* native.readline(prompt): the next line without its newline, or nil at
** the end of the input. Edited, with history, on a terminal. */
static int n_readline(lua_State *L)
{
    const char *prompt = luaL_optstring(L, 1, "");
#ifdef TAND_HAVE_EDITLINE
    if (isatty(0)) {
        char *line = readline(prompt);
        if (line == NULL)
            return 0;
        lua_pushstring(L, line);
        free(line);
        return 1;
    }
#endif
    {
        luaL_Buffer b;
        int c;
        fputs(prompt, stdout);
        fflush(stdout);
        luaL_buffinit(L, &b);
        while ((c = getchar()) != EOF && c != '\n')
            luaL_addchar(&b, (char)c);
        if (c == EOF && luaL_bufflen(&b) == 0)
            return 0;
        luaL_pushresult(&b);
        return 1;
    }
}

static int n_add_history(lua_State *L)
{
    const char *line = luaL_checkstring(L, 1);
#ifdef TAND_HAVE_EDITLINE
    if (line[0] != '\0')
        add_history(line);
#else
    (void)line;
#endif
    return 0;
}

static int n_isatty(lua_State *L)
{
    lua_Integer fd = luaL_checkinteger(L, 1);
    luaL_argcheck(L, fd >= 0 && fd <= 2, 1, "0, 1 or 2");
    lua_pushboolean(L, isatty((int)fd));
    return 1;
}

static int n_term_width(lua_State *L)
{
    struct winsize ws;
    if (ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        lua_pushinteger(L, ws.ws_col);
    else if (ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        lua_pushinteger(L, ws.ws_col);
    else
        lua_pushnil(L);
    return 1;
}

static int open_native(lua_State *L)
{
    static const luaL_Reg fns[] = {{"readline", n_readline},
                                   {"add_history", n_add_history},
                                   {"isatty", n_isatty},
                                   {"term_width", n_term_width},
                                   {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_pushboolean(L,
#ifdef TAND_HAVE_EDITLINE
                    1
#else
                    0
#endif
    );
    lua_setfield(L, -2, "line_editing");
    return 1;
}

/* package.preload loader of one built-in CLI module (upvalue: its index
** in cli_modules). [-0, +1, e] */
static int load_cli_module(lua_State *L)
{
    const cli_module *m = &cli_modules[lua_tointeger(L, lua_upvalueindex(1))];
    if (luaL_loadbufferx(L, m->text, m->size, m->chunkname, "t") != LUA_OK)
        return lua_error(L);
    lua_pushstring(L, m->name);
    lua_call(L, 1, 1);
    return 1;
}

/* Runs the CLI: preloads the modules, calls tand.cli.main's main(argv)
** and leaves its exit code on the stack. Under lua_pcall. */
static int run_cli(lua_State *L)
{
    int argc = (int)lua_tointeger(L, 1), i;
    char **argv = lua_touserdata(L, 2);
    size_t k;

    luaL_openlibs(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_tand);
    lua_setfield(L, -2, "tand");
    lua_pushcfunction(L, open_native);
    lua_setfield(L, -2, "tand.cli.native");
    for (k = 0; k < sizeof cli_modules / sizeof cli_modules[0]; k++) {
        lua_pushinteger(L, (lua_Integer)k);
        lua_pushcclosure(L, load_cli_module, 1);
        lua_setfield(L, -2, cli_modules[k].name);
    }
    lua_pop(L, 1);

    lua_getglobal(L, "require");
    lua_pushliteral(L, "tand.cli.main");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "main");
    lua_createtable(L, argc > 1 ? argc - 1 : 0, 1);
    lua_pushstring(L, argv[0]);
    lua_rawseti(L, -2, 0);
    for (i = 1; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    lua_call(L, 1, 1);
    return 1;
}

int main(int argc, char **argv)
{
    lua_State *L = luaL_newstate();
    int code;

    if (L == NULL) {
        fprintf(stderr, "tand: not enough memory\n");
        return 1;
    }
    lua_pushcfunction(L, ltand_traceback);
    lua_pushcfunction(L, run_cli);
    lua_pushinteger(L, argc);
    lua_pushlightuserdata(L, argv);
    if (lua_pcall(L, 2, 1, 1) != LUA_OK) {
        fprintf(stderr, "tand: %s\n", lua_tostring(L, -1));
        code = 1;
    } else {
        code = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 0;
    }
    fflush(stdout);
    lua_close(L);
    return code;
}
