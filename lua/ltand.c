/*
** ltand.c - the Lua module `tand`: luaopen_tand, its table of functions
** (start, whereis, supervise, sleep, now, noreply), and what every file of
** the binding shares: the runtime, failures, timeouts and names.
**
** Conventions (LuaSocket, luv): programming errors (wrong argument types,
** a closed handle, values that cannot be sent) raise; outcomes a caller
** should expect return nil, token, detail, the token being tand_errname().
*/
#define _GNU_SOURCE /* dladdr */
#include "ltand.h"

#include <dlfcn.h>
#include <math.h>
#include <string.h>
#include <time.h>

tand_runtime *ltand_runtime(lua_State *L)
{
    tand_runtime *rt = tand_runtime_default();
    if (rt != NULL)
        return rt;
    if (tand_runtime_default_error() == TAND_EENGINE)
        luaL_error(L, "tand: another copy of the tand engine runs in this "
                      "process (a host linked with the static libtand, or "
                      "libtand opened RTLD_LOCAL, and this module from "
                      "package.cpath): the host opens the module it holds "
                      "with luaL_requiref(L, \"tand\", luaopen_tand, 1), or "
                      "links the shared libtand, which this module then "
                      "uses");
    return luaL_error(L, "tand: cannot create the runtime: %s",
                      tand_strerror(tand_runtime_default_error())), NULL;
}

int ltand_fail(lua_State *L, int status, const char *detail)
{
    lua_pushnil(L);
    lua_pushstring(L, tand_errname(status));
    lua_pushstring(L, detail ? detail : tand_strerror(status));
    return 3;
}

int ltand_timeout(lua_State *L, int idx, int64_t *ms)
{
    lua_Number v;
    if (lua_type(L, idx) != LUA_TNUMBER)
        return -1;
    if (lua_isinteger(L, idx)) {
        lua_Integer i = lua_tointeger(L, idx);
        if (i < 0)
            return -1;
        *ms = i > LTAND_TIMEOUT_MAX_MS ? TAND_FOREVER : (int64_t)i;
        return 0;
    }
    v = lua_tonumber(L, idx);
    if (!(v >= 0)) /* negative or NaN */
        return -1;
    if (v > (lua_Number)LTAND_TIMEOUT_MAX_MS) { /* math.huge included */
        *ms = TAND_FOREVER;
        return 0;
    }
    if (v != floor(v))
        return -1;
    *ms = (int64_t)v;
    return 0;
}

int ltand_is_name(lua_State *L, int idx)
{
    size_t len;
    const char *s;
    if (lua_type(L, idx) != LUA_TSTRING)
        return 0;
    s = lua_tolstring(L, idx, &len);
    return len > 0 && len <= TAND_NAME_MAX && strlen(s) == len;
}

int ltand_stop_reason(lua_State *L, int idx, const char **detail)
{
    const char *r;
    *detail = NULL;
    if (lua_isnoneornil(L, idx))
        return 0;
    luaL_argexpected(L, lua_type(L, idx) == LUA_TSTRING, idx,
                     "string or nil");
    r = lua_tostring(L, idx);
    if (strcmp(r, "normal") == 0)
        return 0;
    *detail = r;
    return strcmp(r, "shutdown") == 0 ? 0 : TAND_ESTOPPED;
}

void ltand_push_reason(lua_State *L, int code, const char *detail)
{
    if (code == 0 || code == TAND_ESTOPPED)
        lua_pushstring(L, detail != NULL ? detail
                          : code == 0   ? "normal"
                                        : tand_errname(code));
    else if (detail != NULL && code != TAND_ENOPROC)
        lua_pushfstring(L, "%s: %s", tand_errname(code), detail);
    else
        lua_pushstring(L, tand_errname(code));
}

/* The server of the machine handle at idx, or raises. */
static tand_server *handle_server(lua_State *L, int idx)
{
    lmachine *m = luaL_checkudata(L, idx, LTAND_MACHINE);
    if (m->closed)
        luaL_error(L, "attempt to use a closed machine");
    return m->s;
}

/* tand.register(name, m): true, or nil, "name_taken" (another server
** has it), "noproc" (m's server has ended), "invalid_argument" (m's
** server has another name: one name each, as in OTP). */
static int l_register(lua_State *L)
{
    tand_server *s;
    int rc;
    luaL_argexpected(L, lua_type(L, 1) == LUA_TSTRING, 1, "string");
    luaL_argcheck(L, ltand_is_name(L, 1), 1,
                  "a name has 1 to 255 bytes without NUL");
    s = handle_server(L, 2);
    rc = s == NULL ? TAND_ENOPROC : tand_register(s, lua_tostring(L, 1));
    if (rc == TAND_EINVAL)
        return ltand_fail(L, rc, "the server is registered under another "
                                 "name");
    if (rc != 0)
        return ltand_fail(L, rc, NULL);
    lua_pushboolean(L, 1);
    return 1;
}

/* tand.unregister(name): true, or nil, "noproc" when no server has it. */
static int l_unregister(lua_State *L)
{
    int rc;
    luaL_argexpected(L, lua_type(L, 1) == LUA_TSTRING, 1, "string");
    luaL_argcheck(L, ltand_is_name(L, 1), 1,
                  "a name has 1 to 255 bytes without NUL");
    rc = tand_unregister(ltand_runtime(L), lua_tostring(L, 1));
    if (rc != 0)
        return ltand_fail(L, rc, NULL);
    lua_pushboolean(L, 1);
    return 1;
}

/* tand.whereis(name): a string that cannot be a name (empty, over 255
** bytes, or with a NUL) is a wrong argument and raises. */
static int l_whereis(lua_State *L)
{
    const char *name;
    tand_server *s;
    lmachine *m;
    luaL_argexpected(L, lua_type(L, 1) == LUA_TSTRING, 1, "string");
    luaL_argcheck(L, ltand_is_name(L, 1), 1,
                  "a name has 1 to 255 bytes without NUL");
    name = lua_tostring(L, 1);
    ltand_push_machine(L, NULL, 0);
    m = lua_touserdata(L, -1);
    if ((m->name = strdup(name)) == NULL ||
        (m->server_name = strdup(name)) == NULL)
        return luaL_error(L, "not enough memory");
    if (tand_whereis(ltand_runtime(L), name, &s) != 0) {
        lua_pushfstring(L, "no server is registered as '%s'", name);
        return ltand_fail(L, TAND_ENOPROC, lua_tostring(L, -1));
    }
    m->s = s;
    m->id = tand_server_id(s);
    return 1;
}

static int l_sleep(lua_State *L)
{
    lua_Number ms = luaL_checknumber(L, 1);
    struct timespec ts;
    luaL_argcheck(L, ms >= 0 && ms < 1e12, 1, "must be ms >= 0");
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)((ms - (lua_Number)ts.tv_sec * 1000) * 1e6);
    while (nanosleep(&ts, &ts) != 0)
        ;
    return 0;
}

static int l_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec * 1e3 +
                          (lua_Number)ts.tv_nsec / 1e6);
    return 1;
}

static const char noreply_marker = 'n';

void *ltand_noreply_marker(void)
{
    return (void *)&noreply_marker;
}

static const luaL_Reg funcs[] = {{"start", ltand_start},
                                 {"cluster", ltand_cluster},
                                 {"whereis", l_whereis},
                                 {"register", l_register},
                                 {"unregister", l_unregister},
                                 {"supervise", ltand_supervise},
                                 {"requests", ltand_requests},
                                 {"sleep", l_sleep},
                                 {"now", l_now},
                                 {NULL, NULL}};

/* lua_close() unloads C modules, but the runtime's worker threads run
** this code for the life of the process: when the module is a shared
** object of its own, it stays loaded (the build links it -z nodelete too;
** this covers other builds, such as LuaRocks'). */
static void stay_loaded(void)
{
#ifdef RTLD_NODELETE
    Dl_info info;
    if (dladdr((void *)&stay_loaded, &info) != 0 && info.dli_fname != NULL)
        dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
#endif
}

/* The luaopen_tand of another copy of tand that the process exports (a
** host linked with the shared libtand), or NULL: this module then hands
** itself over to it, so that the process has one engine (see
** tand_runtime_new in tand.h). */
static lua_CFunction exported_engine(void)
{
    /* Told apart by the object each is in: within this module the name
    ** luaopen_tand may itself resolve to the exported one. */
    void *other = dlsym(RTLD_DEFAULT, "luaopen_tand");
    Dl_info mine, theirs;
    if (other == NULL || dladdr((void *)&stay_loaded, &mine) == 0 ||
        dladdr(other, &theirs) == 0 || mine.dli_fbase == theirs.dli_fbase)
        return NULL;
    return (lua_CFunction)other;
}

__attribute__((visibility("default"))) int luaopen_tand(lua_State *L)
{
    lua_CFunction other = exported_engine();
    if (other != NULL)
        return other(L);
    stay_loaded();
    ltand_runtime(L);
    ltand_open_machine(L);
    ltand_open_requests(L);
    ltand_open_cluster(L);
    luaL_newlib(L, funcs);
    ltand_open_spawn(L);
    lua_pushliteral(L, TAND_VERSION_STRING);
    lua_setfield(L, -2, "version");
    lua_pushlightuserdata(L, (void *)&noreply_marker);
    lua_setfield(L, -2, "noreply");
    return 1;
}
