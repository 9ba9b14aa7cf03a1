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
#include <errno.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef TAND_HAVE_EDITLINE
#include <editline/readline.h>
#endif

#include "cli_modules.h" /* generated: cli_modules[] = {name, text, size} */

/* Waits up to ms for input on fd 0: 1 when some is there (or the input
** ended), 0 when the time passed. */
static int input_within(int ms)
{
    struct pollfd p;
    int n;
    p.fd = 0;
    p.events = POLLIN;
    p.revents = 0;
    while ((n = poll(&p, 1, ms)) < 0 && errno == EINTR)
        ;
    return n != 0;
}

/* Calls the idle function at idx; a string it returns is printed on a
** line of its own (above the line being typed, on a terminal). Raises
** what the function raises. */
static void run_idle(lua_State *L, int idx, int editing)
{
    lua_pushvalue(L, idx);
    lua_call(L, 0, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
        fputs(editing ? "\r\33[K" : "", stdout);
        fputs(lua_tostring(L, -1), stdout);
        fputc('\n', stdout);
        fflush(stdout);
#ifdef TAND_HAVE_EDITLINE
        if (editing)
            rl_forced_update_display(); /* the prompt and the line again */
#endif
    }
    lua_pop(L, 1);
}

#ifdef TAND_HAVE_EDITLINE
static char *typed;     /* the line libedit's callback interface gave */
static int typed_done;

static void on_line(char *line)
{
    typed = line;
    typed_done = 1;
    rl_callback_handler_remove(); /* no prompt after the line */
}

/* The protected part of an edited read with an idle function: the
** handler is removed on every way out, errors included. */
static int edited_protected(lua_State *L)
{
    int idle = lua_isnoneornil(L, 2) ? 0 : 2;
    int ms = (int)luaL_optinteger(L, 3, 200);
    while (!typed_done) {
        if (idle == 0 || input_within(ms))
            rl_callback_read_char();
        else
            run_idle(L, idle, 1);
    }
    return 0;
}
#endif

/* native.readline(prompt [, idle [, ms]]): the next line without its
** newline, or nil at the end of the input. Edited, with history, on a
** terminal. While no key comes, idle() runs every ms (200) and a string
** it returns is printed (the repl's --watch). */
static int n_readline(lua_State *L)
{
    const char *prompt = luaL_optstring(L, 1, "");
    int idle = lua_isnoneornil(L, 2) ? 0 : 2;
    int ms = (int)luaL_optinteger(L, 3, 200);
    luaL_Buffer b;
    char c;
    ssize_t got;
    if (idle != 0)
        luaL_checktype(L, 2, LUA_TFUNCTION);
    luaL_argcheck(L, ms > 0, 3, "ms must be > 0");
#ifdef TAND_HAVE_EDITLINE
    if (isatty(0)) {
        int status;
        typed = NULL;
        typed_done = 0;
        rl_callback_handler_install(prompt, on_line);
        lua_pushcfunction(L, edited_protected);
        lua_insert(L, 1);
        status = lua_pcall(L, lua_gettop(L) - 1, 0, 0);
        if (!typed_done)
            rl_callback_handler_remove();
        if (status != LUA_OK)
            return lua_error(L);
        if (typed == NULL) { /* ^D: end the line the prompt is on */
            fputc('\n', stdout);
            return 0;
        }
        lua_pushstring(L, typed);
        free(typed);
        return 1;
    }
#endif
    /* unbuffered reads, so that poll sees what is still to come */
    fputs(prompt, stdout);
    fflush(stdout);
    luaL_buffinit(L, &b);
    for (;;) {
        if (idle != 0 && !input_within(ms)) {
            run_idle(L, idle, 0);
            continue;
        }
        while ((got = read(0, &c, 1)) < 0 && errno == EINTR)
            ;
        if (got <= 0 || c == '\n')
            break;
        luaL_addchar(&b, c);
    }
    if (got <= 0 && luaL_bufflen(&b) == 0)
        return 0;
    luaL_pushresult(&b);
    return 1;
}

/* native.stat(path): the file's modification time (ns) and size, or nil
** and the reason. */
static int n_stat(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (stat(path, &st) != 0)
        return luaL_fileresult(L, 0, path);
    lua_pushinteger(L, (lua_Integer)st.st_mtim.tv_sec * 1000000000 +
                           st.st_mtim.tv_nsec);
    lua_pushinteger(L, (lua_Integer)st.st_size);
    return 2;
}

#ifdef TAND_HAVE_EDITLINE
static char **completions; /* NULL-terminated, what Tab completes */

/* libedit's generator: the state-th word that starts with text. */
static char *next_completion(const char *text, int state)
{
    static size_t i, len;
    if (state == 0) {
        i = 0;
        len = strlen(text);
    }
    while (completions != NULL && completions[i] != NULL) {
        const char *w = completions[i++];
        if (strncmp(w, text, len) == 0)
            return strdup(w);
    }
    return NULL;
}

/* Tab completes the first word of a line only (a command or an op). */
static char **complete(const char *text, int start, int end)
{
    (void)end;
    rl_attempted_completion_over = 1; /* never file names */
    if (start != 0)
        return NULL;
    return completion_matches((char *)text, next_completion);
}
#endif

/* native.set_completions(words): the words Tab completes at the start of
** a line. */
static int n_set_completions(lua_State *L)
{
    lua_Integer n, i;
    luaL_checktype(L, 1, LUA_TTABLE);
    n = luaL_len(L, 1);
    for (i = 1; i <= n; i++)
        if (lua_geti(L, 1, i) != LUA_TSTRING)
            return luaL_argerror(L, 1, "a list of strings expected");
#ifdef TAND_HAVE_EDITLINE
    {
        char **words = calloc((size_t)n + 1, sizeof *words);
        if (words == NULL)
            return luaL_error(L, "not enough memory");
        for (i = 0; i < n; i++)
            if ((words[i] = strdup(lua_tostring(L, 2 + (int)i))) == NULL) {
                while (i-- > 0)
                    free(words[i]);
                free(words);
                return luaL_error(L, "not enough memory");
            }
        if (completions != NULL) {
            for (char **w = completions; *w != NULL; w++)
                free(*w);
            free(completions);
        }
        completions = words;
        rl_attempted_completion_function = complete;
    }
#endif
    return 0;
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
                                   {"stat", n_stat},
                                   {"set_completions", n_set_completions},
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
