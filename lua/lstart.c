/*
** lstart.c - tand_policy_start(): a Lua policy server started from C.
** The C options become a tand.start table in a scratch Lua state, so a C
** host gets exactly the checks, defaults and error messages that a Lua
** script gets, and the policy is loaded the same way.
*/
#include "ltand.h"

#include <lualib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>


/* Every default is a zero (auto_shutdown_ms 0: never; callback_timeout_ms
** 0: LTAND_DEFAULT_CALLBACK_MS; TAND_DURABLE_FULL is 0). */
void tand_policy_options_init(tand_policy_options *o)
{
    memset(o, 0, sizeof *o);
}

typedef struct start_args {
    tand_runtime *rt;
    const tand_policy_options *o;
    tand_server *s;
    int rc;
    char detail[2048];
} start_args;

/* Sets field k of the table on top to the integer v. [-0, +0, m] */
static void set_int(lua_State *L, const char *k, int64_t v)
{
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

/* Builds the options table and starts the server. Runs under lua_pcall:
** its only errors are memory errors. */
static int start_in_lua(lua_State *L)
{
    start_args *a = lua_touserdata(L, 1);
    const tand_policy_options *o = a->o;

    luaL_openlibs(L); /* package.searchpath finds policy modules */
    lua_newtable(L);
    if (o->source != NULL) {
        const char *chunk = o->chunkname ? o->chunkname : "=policy";
        if (luaL_loadbufferx(L, o->source, o->source_size, chunk, "t") !=
            LUA_OK) {
            a->rc = TAND_ECONFIG;
            snprintf(a->detail, sizeof a->detail,
                     "cannot load the policy: %s", lua_tostring(L, -1));
            return 0;
        }
    } else {
        lua_pushstring(L, o->policy);
    }
    lua_setfield(L, -2, "policy");
    if (o->min_number != 0 || o->max_number != 0) {
        set_int(L, "min_number", o->min_number);
        set_int(L, "max_number", o->max_number);
    }
    /* 0 and TAND_FOREVER: never (the option's default, left out) */
    if (o->auto_shutdown_ms == TAND_SHUTDOWN_AT_ONCE)
        set_int(L, "auto_shutdown_timeout", 0);
    else if (o->auto_shutdown_ms != TAND_FOREVER && o->auto_shutdown_ms != 0)
        set_int(L, "auto_shutdown_timeout", o->auto_shutdown_ms);
    if (o->callback_timeout_ms == TAND_FOREVER)
        lua_pushnumber(L, HUGE_VAL);
    else if (o->callback_timeout_ms == 0)
        lua_pushinteger(L, LTAND_DEFAULT_CALLBACK_MS);
    else
        lua_pushinteger(L, (lua_Integer)o->callback_timeout_ms);
    lua_setfield(L, -2, "callback_timeout");
    if (o->memory_limit > 0)
        set_int(L, "memory_limit",
                o->memory_limit > INT64_MAX ? INT64_MAX
                                            : (int64_t)o->memory_limit);
    lua_pushboolean(L, o->sandbox);
    lua_setfield(L, -2, "sandbox");
    if (o->name != NULL) {
        lua_pushstring(L, o->name);
        lua_setfield(L, -2, "name");
    }
    if (o->mailbox_capacity > 0)
        set_int(L, "mailbox",
                o->mailbox_capacity > INT64_MAX ? INT64_MAX
                                                : (int64_t)o->mailbox_capacity);
    if (o->journal != NULL) {
        lua_pushstring(L, o->journal);
        lua_setfield(L, -2, "journal");
        lua_pushstring(L, o->durability == TAND_DURABLE_OS ? "os" : "full");
        lua_setfield(L, -2, "durability");
    }
    a->rc = ltand_start_table(L, -1, a->rt, &a->s, a->detail,
                              sizeof a->detail);
    return 0;
}

int tand_policy_start(tand_runtime *rt, const tand_policy_options *o,
                      tand_server **out)
{
    start_args a;
    lua_State *L;

    if (out != NULL)
        *out = NULL;
    if (rt == NULL || o == NULL || out == NULL)
        return TAND_EINVAL;
    memset(&a, 0, sizeof a);
    a.rt = rt;
    a.o = o;
    if ((o->policy == NULL) == (o->source == NULL)) {
        a.rc = TAND_ECONFIG;
        snprintf(a.detail, sizeof a.detail,
                 "give exactly one of policy (a module or file) and source");
    } else if (o->durability != TAND_DURABLE_FULL &&
               o->durability != TAND_DURABLE_OS) {
        a.rc = TAND_ECONFIG;
        snprintf(a.detail, sizeof a.detail,
                 "durability must be TAND_DURABLE_FULL or TAND_DURABLE_OS");
    } else if ((L = luaL_newstate()) == NULL) {
        a.rc = TAND_ENOMEM;
    } else {
        lua_pushcfunction(L, start_in_lua);
        lua_pushlightuserdata(L, &a);
        if (lua_pcall(L, 1, 0, 0) != LUA_OK && a.s == NULL) {
            a.rc = TAND_ENOMEM; /* the only error start_in_lua raises */
            snprintf(a.detail, sizeof a.detail, "%s", lua_tostring(L, -1));
        }
        lua_close(L);
    }
    if (a.s == NULL) {
        if (a.rc == 0)
            a.rc = TAND_ENOMEM;
        if (o->error != NULL && o->error_size > 0)
            snprintf(o->error, o->error_size, "%s",
                     a.detail[0] ? a.detail : tand_strerror(a.rc));
        return a.rc;
    }
    *out = a.s;
    return 0;
}
