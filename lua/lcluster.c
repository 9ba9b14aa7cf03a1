/*
** lcluster.c - tand.cluster: machines shared by many hosts through NATS
** JetStream (the engine's tand_cluster), as Lua sees them.
**
** DESIGN: a cluster object is a "tand.cluster" userdata holding the
** engine's tand_cluster; its machines are ordinary machine handles
** (lmachine.c) with a cluster's machine in them, whose calls the engine
** sends to the owner. c:start's options are tand.start's, read into a
** spec (loptions.c) that the owner's control thread starts from when
** this host takes the machine over: the spec is the cluster's from then
** on and freed with the machine. Closing (c:close, __close, collection)
** stops what this host runs; each handle keeps its cluster object alive.
*/
#include "ltand.h"

#include <stdlib.h>
#include <string.h>

#define LTAND_CLUSTER "tand.cluster"

typedef struct lcluster {
    tand_cluster *c; /* NULL once closed */
} lcluster;

static lcluster *check_cluster(lua_State *L)
{
    lcluster *lc = luaL_checkudata(L, 1, LTAND_CLUSTER);
    if (lc->c == NULL)
        luaL_error(L, "attempt to use a closed cluster");
    return lc;
}

/* Reads tand.cluster's options at 1 into o; 0, or 3 with the failure
** pushed. Strings stay anchored in the options table. */
static int read_options(lua_State *L, tand_cluster_options *o)
{
    tand_cluster_options_init(o);
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2)
                                                        : NULL;
        int64_t v;
        if (k == NULL)
            return ltand_bad_config(L, "tand.cluster's options have string "
                                       "keys (got a %s)",
                                    luaL_typename(L, -2));
        if (strcmp(k, "servers") == 0) {
            if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0)
                return ltand_bad_config(L, "%s must be the NATS servers' "
                                           "URLs, comma-separated",
                                        k);
            o->servers = lua_tostring(L, -1);
        } else if (strcmp(k, "host") == 0) {
            if (!ltand_is_name(L, -1) ||
                strchr(lua_tostring(L, -1), ' ') != NULL)
                return ltand_bad_config(L, "%s must be a name of 1 to 255 "
                                           "bytes without spaces or NUL",
                                        k);
            o->host = lua_tostring(L, -1);
        } else if (strcmp(k, "lease_ms") == 0 || strcmp(k, "timeout") == 0) {
            if (ltand_get_integer(L, -1, &v) != 0 || v < 1)
                return ltand_bad_config(L, "%s must be a whole number of "
                                           "ms > 0",
                                        k);
            if (k[0] == 'l')
                o->lease_ms = v;
            else
                o->timeout_ms = v;
        } else if (strcmp(k, "replicas") == 0) {
            if (ltand_get_integer(L, -1, &v) != 0 || v < 1 || v > 5)
                return ltand_bad_config(L, "%s must be an integer from 1 "
                                           "to 5",
                                        k);
            o->replicas = (int)v;
        } else {
            return ltand_bad_config(L, "unknown tand.cluster option '%s'", k);
        }
        lua_pop(L, 1);
    }
    if (o->servers == NULL)
        return ltand_bad_config(L, "%s: give servers (the NATS URLs)",
                                "tand.cluster");
    if (o->host == NULL)
        return ltand_bad_config(L, "%s: give host (this host's name)",
                                "tand.cluster");
    return 0;
}

int ltand_cluster(lua_State *L)
{
    tand_cluster_options o;
    char err[1024];
    lcluster *lc;
    int rc;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (read_options(L, &o) != 0)
        return 3;
    o.error = err;
    o.error_size = sizeof err;
    lc = lua_newuserdatauv(L, sizeof *lc, 0);
    lc->c = NULL;
    luaL_setmetatable(L, LTAND_CLUSTER);
    if ((rc = tand_cluster_open(ltand_runtime(L), &o, &lc->c)) != 0)
        return ltand_fail(L, rc, err[0] ? err : NULL);
    return 1;
}

static int start_machine(tand_runtime *rt, const char *name, void *arg,
                         tand_server **out, char *err, size_t n)
{
    return ltand_spec_start(rt, arg, name, out, err, n);
}

static void free_spec(void *arg)
{
    ltand_spec_free(arg);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Pushes the machine options at idx (parsed already: known keys only)
** as text, "key=value; ..." in the order of the keys: what every host
** must give alike. Left out: the name, and call_timeout (each caller's
** own). A policy given as a function or a table shows as its type. */
static void push_config(lua_State *L, int idx)
{
    const char *keys[64];
    size_t n = 0, i;
    luaL_Buffer b;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *k = lua_tostring(L, -2);
        lua_pop(L, 1);
        if (strcmp(k, "name") != 0 && strcmp(k, "call_timeout") != 0 &&
            n < sizeof keys / sizeof keys[0])
            keys[n++] = k; /* anchored in the table */
    }
    qsort(keys, n, sizeof keys[0], by_name);
    luaL_buffinit(L, &b);
    for (i = 0; i < n; i++) {
        lua_getfield(L, idx, keys[i]);
        if (i > 0)
            luaL_addstring(&b, "; ");
        luaL_addstring(&b, keys[i]);
        luaL_addchar(&b, '=');
        if (lua_type(L, -1) == LUA_TFUNCTION || lua_type(L, -1) == LUA_TTABLE)
            lua_pushstring(L, luaL_typename(L, -1));
        else
            luaL_tolstring(L, -1, NULL);
        lua_remove(L, -2);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
}

/* c:start{ name =, owner = "any" | "never", and tand.start's options }:
** a handle, or nil, token, detail. */
static int c_start(lua_State *L)
{
    lcluster *lc = check_cluster(L);
    tand_cluster_machine_options mo;
    tand_cluster_machine *cm;
    ltand_spec *sp;
    char err[1024];
    lmachine *m;
    int rc;

    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    memset(&mo, 0, sizeof mo);
    mo.owner = TAND_OWNER_ANY;
    /* its options without the cluster's own (owner, durability) */
    lua_newtable(L); /* 3 */
    lua_pushnil(L);
    while (lua_next(L, 2) != 0) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2)
                                                        : "";
        if (strcmp(k, "owner") == 0) {
            const char *v = lua_type(L, -1) == LUA_TSTRING
                                ? lua_tostring(L, -1)
                                : "";
            if (strcmp(v, "any") != 0 && strcmp(v, "never") != 0)
                return ltand_bad_config(L, "%s must be \"any\" or \"never\"",
                                        k);
            mo.owner = v[0] == 'n' ? TAND_OWNER_NEVER : TAND_OWNER_ANY;
            lua_pop(L, 1);
            continue;
        }
        if (strcmp(k, "durability") == 0) {
            if (lua_type(L, -1) != LUA_TSTRING ||
                strcmp(lua_tostring(L, -1), "replicated") != 0)
                return ltand_bad_config(L, "%s of a cluster's machine is "
                                           "\"replicated\" (a majority of "
                                           "the stream's servers have each "
                                           "batch: nats-server 2.9 gives no "
                                           "more)",
                                        k);
            lua_pop(L, 1);
            continue;
        }
        if (strcmp(k, "journal") == 0)
            return ltand_bad_config(L, "%s: a cluster's machine keeps its "
                                       "state in its stream",
                                    k);
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, 3);
    }
    lua_getfield(L, 3, "name");
    if (!ltand_is_name(L, -1))
        return ltand_bad_config(L, "%s: give the machine's name (1 to 255 "
                                   "bytes without NUL)",
                                "c:start");
    lua_pop(L, 1);
    if ((sp = ltand_spec_parse(L, 3)) == NULL)
        return 3;
    ltand_push_cluster_machine(L, NULL, 1); /* 4, empty until started */
    m = lua_touserdata(L, 4);
    push_config(L, 3); /* 5 */
    if (lua_rawlen(L, 5) > TAND_CLUSTER_CONFIG_MAX) {
        ltand_spec_free(sp);
        lua_pushfstring(L, "c:start: the options take %d bytes as text, "
                           "more than the %d a cluster's machine may have",
                        (int)lua_rawlen(L, 5), TAND_CLUSTER_CONFIG_MAX);
        return ltand_fail(L, TAND_ECONFIG, lua_tostring(L, -1));
    }
    mo.config = lua_tostring(L, 5);
    mo.name = ltand_spec_name(sp);
    mo.kind = ltand_spec_kind(sp);
    mo.start = start_machine;
    mo.arg = sp;
    mo.free_arg = free_spec;
    mo.error = err;
    mo.error_size = sizeof err;
    err[0] = '\0';
    if ((rc = tand_cluster_start(lc->c, &mo, &cm)) != 0) /* sp is freed */
        return ltand_fail(L, rc, err[0] ? err : NULL);
    m->cm = cm;
    lua_settop(L, 4);
    return 1;
}

static int c_whereis(lua_State *L)
{
    lcluster *lc = check_cluster(L);
    tand_cluster_machine *cm;
    char err[1024] = "";
    lmachine *m;
    int rc;
    if (!ltand_is_name(L, 2))
        return luaL_argerror(L, 2, "a name of 1 to 255 bytes without NUL "
                                   "expected");
    ltand_push_cluster_machine(L, NULL, 1);
    m = lua_touserdata(L, -1);
    if ((rc = tand_cluster_whereis(lc->c, lua_tostring(L, 2), &cm, err,
                                   sizeof err)) != 0)
        return ltand_fail(L, rc, err[0] ? err
                                 : rc == TAND_ENOPROC
                                     ? "no host ever started that machine"
                                     : NULL);
    m->cm = cm;
    return 1;
}

static int c_close(lua_State *L)
{
    lcluster *lc = luaL_checkudata(L, 1, LTAND_CLUSTER);
    tand_cluster *c = lc->c;
    lc->c = NULL;
    tand_cluster_close(c);
    return 0;
}

static int c_tostring(lua_State *L)
{
    lcluster *lc = luaL_checkudata(L, 1, LTAND_CLUSTER);
    lua_pushfstring(L, "tand.cluster: %p%s", (void *)lc,
                    lc->c == NULL ? " (closed)" : "");
    return 1;
}

void ltand_open_cluster(lua_State *L)
{
    static const luaL_Reg methods[] = {{"start", c_start},
                                       {"whereis", c_whereis},
                                       {"close", c_close},
                                       {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", c_close},
                                    {"__close", c_close},
                                    {"__tostring", c_tostring},
                                    {NULL, NULL}};
    if (luaL_newmetatable(L, LTAND_CLUSTER)) {
        luaL_setfuncs(L, meta, 0);
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
}
