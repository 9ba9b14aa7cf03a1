/*
** lpolicy_reload.c - m:reload: new code for a running policy server,
** taken in between two of its messages.
**
** DESIGN: the new code is loaded into the server's own Lua state, so what
** that state holds besides the policy's state (deferred callers' `from`
** objects, requests and monitors in flight) goes on working under the new
** code. Nothing of the server changes until every step has succeeded: the
** new code runs and its table is read into a policy_code of its own,
** code_change works on a deep copy of the state, and a journaled server's
** new state is encoded, all in one protected call under one callback
** deadline; only then are the code and the state swapped. A step that
** fails leaves the old code and state as they were, and the caller gets
** reload_failed (meanwhile the machine only reads: a refused reload has
** taken no number, answered no caller, stopped or sent nothing); running past callback_timeout crashes the server as any
** callback does (an expired state runs no more code). The reload is a
** batch of its own (tand_server_own_batch): the journal holds the state
** from before it or from after it, never a mixture with its neighbours.
** The new code's top level runs in the server's globals, as a module's
** does: what it sets there stays even when a later step fails.
*/
#include "lpolicy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One reload: what its protected part needs and what it made. */
typedef struct reload_run {
    policy *p;
    const policy_source *src;
    policy_code code;   /* the new code's */
    int stage;          /* LOAD_*: how far it got */
    int ref_state;      /* code_change's result, or LUA_NOREF */
    tand_msg saved;     /* a journaled server's new state, encoded */
    char refused[512];  /* why a result was refused, or "" */
} reload_run;

/* Pushes the copy of the value at idx in memo (copy by original), making
** an empty one and queueing the original in todo (n of them) when it is a
** table not met yet; anything else is itself. [-0, +1, m] */
static void copy_of(lua_State *L, int idx, int memo, int todo,
                    lua_Integer *n)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE) {
        lua_pushvalue(L, idx);
        return;
    }
    lua_pushvalue(L, idx);
    if (lua_rawget(L, memo) != LUA_TNIL)
        return;
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, idx);
    lua_pushvalue(L, -2);
    lua_rawset(L, memo);
    lua_pushvalue(L, idx);
    lua_rawseti(L, todo, ++*n);
}

/* Gives the table at copy the metatable at mt without marking it for
** finalization: the copy of a table whose metatable has __gc would run
** the policy's finalizer when it dies (for a refused reload, on what the
** old state shares with it, and outside any callback's deadline; in a
** sandbox, a finalizer the sandbox refuses). As in Lua for a __gc added
** after setmetatable, the field stays and is not run for the copy.
** Between hiding __gc and putting it back nothing allocates, so no
** collection runs and the field's node stays in place. [-0, +0, m] */
static void set_copied_metatable(lua_State *L, int copy, int mt)
{
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, mt) == LUA_TNIL) {
        lua_pop(L, 1);
        lua_pushvalue(L, mt);
        lua_setmetatable(L, copy);
        return;
    }
    lua_pushliteral(L, "__gc"); /* to put it back */
    lua_pushliteral(L, "__gc");
    lua_pushnil(L);
    lua_rawset(L, mt);
    lua_pushvalue(L, mt);
    lua_setmetatable(L, copy);
    lua_insert(L, -2);
    lua_rawset(L, mt);
}

/* Pushes a deep copy of the value at idx: every table reached is copied,
** keys included, with sharing and cycles kept and metatables shared
** (a copy is never finalized: see set_copied_metatable); other values
** (functions, handles, `from` objects) are themselves. Raw reads and
** writes only, so no code of the policy runs; a work list, not
** recursion, so any depth fits in the C stack. [-0, +1, m] */
static void deep_copy(lua_State *L, int idx)
{
    lua_Integer n = 0;
    int memo, todo, orig, copy;
    idx = lua_absindex(L, idx);
    lua_newtable(L);
    memo = lua_gettop(L);
    lua_newtable(L);
    todo = lua_gettop(L);
    copy_of(L, idx, memo, todo, &n); /* the result */
    while (n > 0) {
        lua_rawgeti(L, todo, n);
        lua_pushnil(L);
        lua_rawseti(L, todo, n--);
        orig = lua_gettop(L);
        lua_pushvalue(L, orig);
        lua_rawget(L, memo);
        copy = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, orig) != 0) {
            copy_of(L, -2, memo, todo, &n);
            copy_of(L, -2, memo, todo, &n);
            lua_rawset(L, copy);
            lua_pop(L, 1);
        }
        if (lua_getmetatable(L, orig))
            set_copied_metatable(L, copy, lua_gettop(L));
        lua_settop(L, orig - 1);
    }
    lua_replace(L, memo);
    lua_settop(L, memo);
}

static int refuse(reload_run *r, const char *what, const char *why)
{
    snprintf(r->refused, sizeof r->refused, "%s%s", what, why ? why : "");
    return 0;
}

/* The reload's protected part (argument 1: the reload_run). */
static int reload_protected(lua_State *L)
{
    reload_run *r = lua_touserdata(L, 1);
    policy *p = r->p;
    lpolicy_load_code(p, r->src, &r->code, &r->stage);
    if (r->code.ref_callback[CB_CODE_CHANGE] != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, r->code.ref_callback[CB_CODE_CHANGE]);
        lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref_state);
        deep_copy(L, -1);
        lua_remove(L, -2);
        lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref_machine);
        r->stage = LOAD_CHANGE;
        lua_call(L, 2, 1);
        r->stage = LOAD_DONE;
        if (lua_isnil(L, -1))
            return refuse(r, "code_change must return the new state (it "
                             "returned nil)", NULL);
        r->ref_state = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    if (p->journal != NULL) {
        lua_rawgeti(L, LUA_REGISTRYINDEX,
                    r->ref_state != LUA_NOREF ? r->ref_state : p->ref_state);
        if (ltand_encode_once(L, p->scratch, -1, 1, 0, &r->saved) != 0)
            return refuse(r, "the new state cannot be journaled: ",
                          lua_tostring(L, -1));
    }
    return 0;
}

/* The source the request names into *src: none (the same again), a file
** ('f' and its path) or a dumped function ('c' and its bytes). 0, -1 for
** a request that is none of these, or TAND_ENOMEM. */
static int read_source(const tand_msg *req, policy_source *src)
{
    memset(src, 0, sizeof *src);
    if (req->data == NULL)
        return 0;
    if (req->size < 2 || (req->data[0] != 'f' && req->data[0] != 'c'))
        return -1;
    if (req->data[0] == 'f') {
        if (memchr(req->data + 1, '\0', req->size - 1) != NULL)
            return -1;
        src->file = strndup(req->data + 1, req->size - 1);
        return src->file ? 0 : TAND_ENOMEM;
    }
    if ((src->code = malloc(req->size - 1)) == NULL)
        return TAND_ENOMEM;
    memcpy(src->code, req->data + 1, req->size - 1);
    src->code_size = req->size - 1;
    return 0;
}

static void fail(tand_msg *reply, int status, const char *what,
                 const char *why)
{
    char text[2048];
    snprintf(text, sizeof text, "%s%s", what, why ? why : "");
    reply->status = status;
    tand_msg_set_text(reply, text, strlen(text));
}

void lpolicy_reload(policy *p, const tand_msg *req, tand_msg *reply)
{
    lua_State *L = p->L;
    int base = lua_gettop(L), rc;
    policy_source fresh;
    reload_run r;

    rc = read_source(req, &fresh);
    if (rc != 0) {
        fail(reply, rc == TAND_ENOMEM ? rc : TAND_EBADREQ,
             rc == TAND_ENOMEM ? "not enough memory"
                               : "a reload names a file or a dumped "
                                 "function",
             NULL);
        return;
    }
    /* What the batch holds so far is committed under the old code. */
    if ((rc = tand_server_own_batch(p->self)) != 0) {
        lpolicy_source_free(&fresh);
        fail(reply, rc, "the batch before the reload was not committed",
             NULL);
        return;
    }
    memset(&r, 0, sizeof r);
    r.p = p;
    r.src = fresh.file || fresh.code ? &fresh : &p->source;
    r.stage = LOAD_COMPILE;
    r.ref_state = r.code.ref_policy = LUA_NOREF; /* even if it never runs */
    for (int i = 0; i < CB_COUNT; i++)
        r.code.ref_callback[i] = LUA_NOREF;
    lpolicy_push_load_msgh(L, &r.stage);
    lua_pushcfunction(L, reload_protected);
    lua_pushlightuserdata(L, &r);
    p->reloading = 1;
    rc = ltand_watch_pcall(L, 1, 0, base + 1);
    p->reloading = 0;
    if (rc == LUA_OK && r.refused[0] == '\0') {
        lpolicy_drop_code(p, &p->code);
        p->code = r.code;
        if (r.ref_state != LUA_NOREF) {
            luaL_unref(L, LUA_REGISTRYINDEX, p->ref_state);
            p->ref_state = r.ref_state;
        }
        if (r.saved.data != NULL) /* a failed write fails the commit */
            tand_journal_set_blob(p->journal, "policy_state", r.saved.data,
                                  r.saved.size);
        if (r.src == &fresh) {
            lpolicy_source_free(&p->source);
            p->source = fresh;
        }
        tand_msg_clear(&r.saved);
        lua_settop(L, base);
        return; /* true */
    }
    lpolicy_drop_code(p, &r.code);
    luaL_unref(L, LUA_REGISTRYINDEX, r.ref_state);
    tand_msg_clear(&r.saved);
    lpolicy_source_free(&fresh);
    if (rc != LUA_OK && atomic_load(&p->watch.expired))
        lpolicy_crash(p, reply); /* as any callback past its deadline */
    else if (rc == LUA_ERRMEM)
        fail(reply, TAND_ERELOAD, "not enough memory for the reload (see "
                                  "memory_limit)",
             NULL);
    else if (rc != LUA_OK)
        fail(reply, TAND_ERELOAD, lpolicy_load_failure(r.stage),
             lua_tostring(L, -1));
    else
        fail(reply, TAND_ERELOAD, r.refused, NULL);
    lua_settop(L, base);
}
