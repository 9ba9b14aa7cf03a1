/*
** test_embed.c - what a C host gets from libtand beyond the engine: Lua
** policy servers started from C (from a file or from source text), their
** start errors, the tand module opened in the host's own Lua state, and
** handles that cross between C and Lua with their nonce and name.
*/
#include "check.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>

static tand_runtime *rt;

static const char doubler[] =
    "return {\n"
    "  init = function(opts) return { calls = 0 } end,\n"
    "  handle_call = function(req, from, state, machine)\n"
    "    if req[1] == 'double' then\n"
    "      state.calls = state.calls + 1\n"
    "      return req[2] * 2, state.calls\n"
    "    elseif req[1] == 'boom' then\n"
    "      error('boom')\n"
    "    end\n"
    "    return machine:default(req)\n"
    "  end,\n"
    "}\n";

/* Calls op with one integer; returns the status, *a and *b the results. */
static int call_op(tand_server *s, const char *op, int64_t x, int64_t *a,
                   int64_t *b)
{
    tand_msg req = {0}, reply;
    tand_buf buf;
    tand_reader r;
    tand_item it;
    int rc;
    tand_buf_init(&buf);
    tand_pack_array(&buf, 2);
    tand_pack_str(&buf, op, strlen(op));
    tand_pack_int(&buf, x);
    req.op = TAND_OP_ENCODED;
    if (tand_buf_to_msg(&buf, &req) != 0)
        return TAND_ENOMEM;
    rc = tand_call(s, &req, &reply, 5000, 0);
    if (rc == 0) {
        tand_reader_init(&r, reply.data, reply.size);
        if (tand_unpack(&r, &it) != 0 || it.type != TAND_T_ARRAY ||
            it.v.n != 2 || tand_unpack(&r, &it) != 0 ||
            it.type != TAND_T_INT)
            rc = TAND_EBADMSG;
        else
            *a = it.v.i;
        if (rc == 0 && (tand_unpack(&r, &it) != 0 || it.type != TAND_T_INT))
            rc = TAND_EBADMSG;
        else if (rc == 0)
            *b = it.v.i;
    }
    tand_msg_clear(&reply);
    return rc;
}

static void from_source(void)
{
    tand_policy_options o;
    tand_server *s;
    char err[512] = "";
    int64_t a = 0, b = 0, n;

    tand_policy_options_init(&o);
    o.source = doubler;
    o.source_size = sizeof doubler - 1;
    o.chunkname = "=doubler";
    o.min_number = 10;
    o.max_number = 12;
    o.name = "doubler";
    o.error = err;
    o.error_size = sizeof err;
    CHECK_OK(tand_policy_start(rt, &o, &s));
    CHECK_OK(call_op(s, "double", 21, &a, &b));
    CHECK_INT(a, 42);
    CHECK_INT(b, 1);
    CHECK_OK(call_op(s, "double", 5, &a, &b));
    CHECK_INT(b, 2); /* the state is the server's own */
    /* the deluxe ops work on a policy, with its bounds */
    CHECK_OK(tand_deluxe_queue(s, &n, 5000));
    CHECK_INT(n, 10);
    /* a request is an array: a map {1 = op, 2 = x} is refused, though it
    ** would make the same Lua table */
    {
        tand_msg req = {0}, reply;
        tand_buf buf;
        tand_buf_init(&buf);
        tand_pack_map(&buf, 2);
        tand_pack_int(&buf, 1);
        tand_pack_str(&buf, "double", 6);
        tand_pack_int(&buf, 2);
        tand_pack_int(&buf, 21);
        req.op = TAND_OP_ENCODED;
        CHECK_OK(tand_buf_to_msg(&buf, &req));
        CHECK_RC(tand_call(s, &req, &reply, 5000, 0), TAND_EBADREQ);
        tand_msg_clear(&reply);
    }
    /* a second start under the same name */
    {
        tand_server *again = (tand_server *)1;
        CHECK_RC(tand_policy_start(rt, &o, &again), TAND_ENAMETAKEN);
        CHECK(again == NULL);
        CHECK(strstr(err, "doubler") != NULL);
    }
    /* a callback that raises crashes the server, OTP style */
    CHECK_RC(call_op(s, "boom", 0, &a, &b), TAND_ECRASHED);
    WAIT_FOR(!tand_server_alive(s), 5000);
    tand_server_release(s);
}

static void from_file(void)
{
    tand_policy_options o;
    tand_server *s;
    char err[512] = "";
    int64_t n;

    tand_policy_options_init(&o);
    o.policy = "examples/policies/vip.lua";
    o.error = err;
    o.error_size = sizeof err;
    CHECK_OK(tand_policy_start(rt, &o, &s));
    CHECK_OK(tand_deluxe_queue(s, &n, 5000));
    CHECK_INT(n, 1); /* no bounds given: 1..INT64_MAX */
    CHECK_OK(tand_server_stop(s, 0, NULL, 5000));
    tand_server_release(s);
}

/* Starts with o and expects rc, with `text` in the error message. */
static void refused(tand_policy_options *o, int rc, const char *text)
{
    char err[512] = "";
    tand_server *s = (tand_server *)1;
    o->error = err;
    o->error_size = sizeof err;
    CHECK_RC(tand_policy_start(rt, o, &s), rc);
    CHECK(s == NULL);
    if (strstr(err, text) == NULL) {
        fprintf(stderr, "expected '%s' in: %s\n", text, err);
        CHECK(0);
    }
}

static void start_errors(void)
{
    tand_policy_options o;
    tand_server *s;
    static const char syntax[] = "return {\n  handle_call = function(\n";
    static const char crashing[] =
        "return { init = function() error('no luck') end }";

    tand_policy_options_init(&o);
    CHECK_RC(tand_policy_start(NULL, &o, &s), TAND_EINVAL);
    CHECK_RC(tand_policy_start(rt, NULL, &s), TAND_EINVAL);

    tand_policy_options_init(&o);
    refused(&o, TAND_ECONFIG, "exactly one of policy");
    o.policy = "x.lua";
    o.source = doubler;
    o.source_size = sizeof doubler - 1;
    refused(&o, TAND_ECONFIG, "exactly one of policy");

    tand_policy_options_init(&o);
    o.source = syntax;
    o.source_size = sizeof syntax - 1;
    o.chunkname = "=mine";
    refused(&o, TAND_ECONFIG, "mine:");

    tand_policy_options_init(&o);
    o.policy = "/nonexistent/policy.lua";
    refused(&o, TAND_ECONFIG, "/nonexistent/policy.lua");

    tand_policy_options_init(&o);
    o.policy = "examples/policies/vip.lua";
    o.min_number = 5;
    o.max_number = 5;
    refused(&o, TAND_ECONFIG, "min_number must be below max_number");
    o.min_number = 0;
    o.max_number = 0;
    o.callback_timeout_ms = -7; /* 0 is the default */
    refused(&o, TAND_ECONFIG, "callback_timeout");
    o.callback_timeout_ms = 1000;
    o.auto_shutdown_ms = -5;
    refused(&o, TAND_ECONFIG, "auto_shutdown_timeout");
    o.auto_shutdown_ms = TAND_FOREVER;
    o.durability = 99;
    refused(&o, TAND_ECONFIG, "durability");

    tand_policy_options_init(&o);
    o.source = crashing;
    o.source_size = sizeof crashing - 1;
    refused(&o, TAND_ECRASHED, "no luck");
}

/* A host with Lua states of its own opens the module in them. */
static void module_in_host_state(void)
{
    static const char script[] =
        "local tand = require 'tand'\n"
        "local m = assert(tand.start{ min_number = 1, max_number = 9 })\n"
        "assert(m:queue_new_number() == 1)\n"
        "assert(m:queue_new_number() == 2)\n"
        "m:stop()\n"
        "return tand.version\n";
    lua_State *L = luaL_newstate();
    CHECK(L != NULL);
    luaL_openlibs(L);
    luaL_requiref(L, "tand", luaopen_tand, 0);
    lua_pop(L, 1);
    if (luaL_dostring(L, script) != LUA_OK) {
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
        CHECK(0);
    } else {
        CHECK(lua_type(L, -1) == LUA_TSTRING);
    }
    lua_close(L);
}

/* Replies whose bytes a C server chose: the Lua side must take the
** valid ones and refuse the others with bad_value, reading each once. */
static const struct {
    const char *bytes;
    size_t size;
    int valid;
} raw_replies[] = {
    {"\x92\x01\xa2hi", 5, 1},               /* [1, "hi"] */
    {"\x92\x01", 2, 0},                     /* a list one value short */
    {"\x91\x01\x01", 3, 0},                 /* a trailing byte */
    {"\xdd\xff\xff\xff\xff\xc0", 6, 0},     /* 2^32 - 1 values claimed */
    {"\x91\xdd\xff\xff\xff\xff\xc0", 7, 0}, /* the same inside a list */
    {"\x91\xc1", 2, 0},                     /* a type MessagePack lacks */
    {"\x91\x81\xc0\x01", 4, 0},             /* a nil key */
};
/* [[...[1]...]] in the list: the list, 62 arrays and 1, 64 levels */
#define RAW_DEPTH_OK (TAND_MAX_DEPTH - 2)

static int raw_call(void *state, tand_server *self, tand_msg *req,
                    tand_from *from, tand_msg *reply)
{
    tand_reader r;
    tand_item it;
    tand_buf b;
    int64_t i = -1, depth;
    (void)state, (void)self, (void)from;
    tand_reader_init(&r, req->data, req->size);
    if (tand_unpack(&r, &it) == 0 && it.type == TAND_T_ARRAY &&
        tand_unpack(&r, &it) == 0 && it.type == TAND_T_STR &&
        tand_unpack(&r, &it) == 0 && it.type == TAND_T_INT)
        i = it.v.i; /* {"raw", i} */
    tand_buf_init(&b);
    if (i >= 0 && i < (int64_t)(sizeof raw_replies / sizeof *raw_replies)) {
        tand_pack_raw(&b, raw_replies[i].bytes, raw_replies[i].size);
    } else { /* -1 - depth: a list holding arrays nested depth deep */
        tand_pack_array(&b, 1);
        for (depth = -1 - i; depth > 0; depth--)
            tand_pack_array(&b, 1);
        tand_pack_int(&b, 1);
    }
    return tand_buf_to_msg(&b, reply);
}

static void replies_lua_refuses(void)
{
    static const tand_behaviour raw = {.name = "raw",
                                       .handle_call = raw_call};
    static const char script[] =
        "local tand = require 'tand'\n"
        "local valid, deep_ok = ...\n"
        "local m = assert(tand.whereis('embed_raw'))\n"
        "for i, ok in ipairs(valid) do\n"
        "  local r = table.pack(m:call('raw', i - 1))\n"
        "  if ok then\n"
        "    assert(r[1] == 1 and r[2] == 'hi', 'case ' .. i)\n"
        "  else\n"
        "    assert(r[1] == nil and r[2] == 'bad_value', 'case ' .. i)\n"
        "    assert(r[3]:find('cannot be received'), r[3])\n"
        "  end\n"
        "end\n"
        "local v = assert(m:call('raw', -1 - deep_ok))\n"
        "for _ = 1, deep_ok do v = v[1] end\n"
        "assert(v == 1)\n"
        "local n, err = m:call('raw', -1 - (deep_ok + 1))\n"
        "assert(n == nil and err == 'bad_value', 'one level too deep')\n"
        "assert(m:call('raw', -1 - 100000) == nil, 'far too deep')\n"
        "return true\n";
    tand_server_options so;
    tand_server *s;
    lua_State *L = luaL_newstate();
    size_t i, n = sizeof raw_replies / sizeof *raw_replies;
    CHECK(L != NULL);
    memset(&so, 0, sizeof so);
    so.behaviour = &raw;
    so.name = "embed_raw";
    CHECK_OK(tand_server_start(tand_runtime_default(), &so, &s));
    luaL_openlibs(L);
    luaL_requiref(L, "tand", luaopen_tand, 0);
    lua_pop(L, 1);
    CHECK(luaL_loadstring(L, script) == LUA_OK);
    lua_createtable(L, (int)n, 0);
    for (i = 0; i < n; i++) {
        lua_pushboolean(L, raw_replies[i].valid);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_pushinteger(L, RAW_DEPTH_OK);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
        CHECK(0);
    }
    lua_close(L);
    tand_server_stop(s, 0, NULL, 5000);
    tand_server_release(s);
}

static const char handler[] =
    "local tand = require 'tand'\n"
    "return {\n"
    "  handle_call = function(req, from, state, machine)\n"
    "    if req[1] == 'self' then return machine:self() end\n"
    "    if req[1] == 'whereis' then return tand.whereis(req[2]) end\n"
    "    if req[1] == 'echo' then return req[2] end\n"
    "    return machine:default(req)\n"
    "  end,\n"
    "}\n";

/* A handle as a C host reads it, its name copied out of the reply. */
typedef struct read_handle {
    uint64_t id, nonce;
    char name[TAND_NAME_MAX + 1];
    int follows;
} read_handle;

/* Calls s with the request in req (consumed) and reads the one handle it
** replies into *h: 0, a call error, or TAND_EBADMSG for another reply. */
static int call_handle(tand_server *s, tand_buf *req_buf, read_handle *h)
{
    tand_msg req = {0}, reply;
    tand_reader r;
    tand_item it;
    int rc;
    req.op = TAND_OP_ENCODED;
    if ((rc = tand_buf_to_msg(req_buf, &req)) != 0)
        return rc;
    if ((rc = tand_call(s, &req, &reply, 5000, 0)) != 0)
        return rc;
    tand_reader_init(&r, reply.data, reply.size);
    if (tand_unpack_check(reply.data, reply.size) != 0 ||
        tand_unpack(&r, &it) != 0 || it.type != TAND_T_ARRAY ||
        it.v.n != 1 || tand_unpack(&r, &it) != 0 ||
        it.type != TAND_T_HANDLE) {
        rc = TAND_EBADMSG;
    } else {
        h->id = it.v.h.id;
        h->nonce = it.v.h.nonce;
        memcpy(h->name, it.v.h.name != NULL ? it.v.h.name : "",
               it.v.h.name_len);
        h->name[it.v.h.name_len] = '\0';
        h->follows = it.v.h.follows;
    }
    tand_msg_clear(&reply);
    return rc;
}

/* Starts a request [op, x] in b: the caller packs x. */
static void request(tand_buf *b, const char *op)
{
    tand_buf_init(b);
    tand_pack_array(b, 2);
    tand_pack_str(b, op, strlen(op));
}

/* Handles a Lua policy sends are TAND_T_HANDLE to the C host, with the
** server's name, this process's nonce and whether they follow the name;
** handles the host packs reach Lua by the same rules as Lua's own. */
static void handles_between_c_and_lua(void)
{
    tand_runtime *def = tand_runtime_default(); /* the binding's */
    tand_policy_options o;
    tand_deluxe_options d;
    tand_server *s, *target;
    tand_buf b;
    read_handle h;
    char err[512] = "";
    uint64_t here = tand_process_nonce(), other = here ^ 1;
    static const char old_form[] = "\xd7\x01\0\0\0\0\0\0\0\0";
    char raw[sizeof old_form - 1];

    if (other == 0)
        other = 2;
    CHECK(def != NULL);
    memset(&d, 0, sizeof d);
    d.min_number = 1;
    d.max_number = 9;
    d.auto_shutdown_ms = TAND_FOREVER;
    d.name = "embed_target";
    CHECK_OK(tand_deluxe_start(def, &d, &target));
    tand_policy_options_init(&o);
    o.source = handler;
    o.source_size = sizeof handler - 1;
    o.chunkname = "=handler";
    o.name = "embed_handles";
    o.error = err;
    o.error_size = sizeof err;
    if (tand_policy_start(def, &o, &s) != 0) {
        fprintf(stderr, "the handler did not start: %s\n", err);
        CHECK(0);
        tand_server_release(target);
        return;
    }

    /* machine:self(): the server's own name, not followed */
    request(&b, "self");
    tand_pack_nil(&b);
    CHECK_OK(call_handle(s, &b, &h));
    CHECK(h.id == tand_server_id(s));
    CHECK(h.nonce == here);
    CHECK(strcmp(h.name, "embed_handles") == 0);
    CHECK_INT(h.follows, 0);

    /* tand.whereis: follows the name */
    request(&b, "whereis");
    tand_pack_str(&b, "embed_target", 12);
    CHECK_OK(call_handle(s, &b, &h));
    CHECK(h.id == tand_server_id(target));
    CHECK(h.nonce == here);
    CHECK(strcmp(h.name, "embed_target") == 0);
    CHECK_INT(h.follows, 1);

    /* this process's, following a name: comes back the same */
    request(&b, "echo");
    tand_pack_handle_ex(&b, tand_server_id(target), here, "embed_target",
                        12, 1);
    CHECK_OK(call_handle(s, &b, &h));
    CHECK(h.id == tand_server_id(target) && h.nonce == here);
    CHECK(strcmp(h.name, "embed_target") == 0 && h.follows == 1);

    /* tand_pack_handle: this process's, no name */
    request(&b, "echo");
    tand_pack_handle(&b, tand_server_id(target));
    CHECK_OK(call_handle(s, &b, &h));
    CHECK(h.id == tand_server_id(target) && h.nonce == here);
    CHECK(h.name[0] == '\0' && h.follows == 0);

    /* the 8-byte form: an id of this process */
    CHECK(tand_server_id(target) < 256);
    memcpy(raw, old_form, sizeof raw);
    raw[9] = (char)tand_server_id(target);
    request(&b, "echo");
    tand_pack_raw(&b, raw, sizeof raw);
    CHECK_OK(call_handle(s, &b, &h));
    CHECK(h.id == tand_server_id(target) && h.nonce == here);

    /* another process's with a name: the server of that name here, which
    ** it follows from now on */
    request(&b, "echo");
    tand_pack_handle_ex(&b, UINT64_C(999999), other, "embed_target", 12, 0);
    CHECK_OK(call_handle(s, &b, &h));
    CHECK(h.id == tand_server_id(target) && h.nonce == here);
    CHECK(strcmp(h.name, "embed_target") == 0 && h.follows == 1);

    /* another process's without a name: ended, whatever its id */
    request(&b, "echo");
    tand_pack_handle_ex(&b, tand_server_id(target), other, NULL, 0, 0);
    CHECK_OK(call_handle(s, &b, &h));
    CHECK(h.id == 0 && h.nonce == here && h.name[0] == '\0');

    CHECK_OK(tand_server_stop(s, 0, NULL, 5000));
    CHECK_OK(tand_server_stop(target, 0, NULL, 5000));
    tand_server_release(s);
    tand_server_release(target);
}

int main(void)
{
    CHECK_OK(tand_runtime_new(NULL, &rt));
    from_source();
    from_file();
    start_errors();
    module_in_host_state();
    replies_lua_refuses();
    handles_between_c_and_lua();
    tand_runtime_free(rt);
    return check_done("test_embed");
}
