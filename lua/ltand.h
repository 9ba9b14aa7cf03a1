/*
** ltand.h - what the Lua binding's files share; not installed.
**
** The binding is a client of tand.h only. Every Lua state that loads the
** module uses the process-wide runtime (tand_runtime_default), so handles
** work across tand.spawn threads and inside messages.
*/
#ifndef LTAND_H
#define LTAND_H

#include "tand.h"

#include <lauxlib.h>
#include <stdatomic.h>
#include <lua.h>

#define LTAND_MACHINE "tand.machine"
#define LTAND_THREAD "tand.thread"
#define LTAND_DEFAULT_TIMEOUT_MS 5000
/* A policy callback that runs a second is a bug; a default call's 5000 ms
** covers it. */
#define LTAND_DEFAULT_CALLBACK_MS 1000
/* Above this many ms a timeout is none (TAND_FOREVER): about 146 years,
** the most whose nanoseconds still fit beside a clock reading (the
** engine's tand__deadline saturates at the same bound). */
#define LTAND_TIMEOUT_MAX_MS (INT64_MAX / 2000000)
/* The most values a message carries as a list to unpack: a reply, the
** arguments and the results of a tand.spawn thread. */
#define LTAND_MAX_VALUES 250

/* A machine handle (a server reference). */
typedef struct lmachine {
    tand_server *s;     /* NULL when closed or dead */
    tand_cluster_machine *cm; /* a cluster's machine (then s is NULL) */
    uint64_t id;        /* kept for a dead handle's identity */
    int64_t timeout_ms; /* call timeout of this handle */
    int closed;         /* closed by __close: using it is an error */
    char *name;         /* from tand.whereis: follows the name, or NULL */
    char *server_name;  /* the name its server was started or found
                        ** under, or NULL: sent with the handle */
} lmachine;

/* ---- lvalue.c: Lua values <-> MessagePack ---- */

/* A space: a buffer messages are encoded in and a message a reply lands
** in, freed with its owner, so that a Lua error while encoding or
** decoding leaks nothing. A Lua state's scratch holds its own space;
** code on a hot path holds the scratch (the machine methods as their
** upvalue 2, a policy in its struct) rather than looking it up. */
typedef struct ltand_scratch ltand_scratch;
typedef struct ltand_space ltand_space;

/* L's scratch, made on first use; it lives as long as L.
** [-0, +0, m] */
ltand_scratch *ltand_scratch_of(lua_State *L);

/* Pushes L's scratch userdata. [-0, +1, m] */
void ltand_push_scratch(lua_State *L);

/* Takes a space for one use (an encoding, or a call and the decoding of
** its reply), its reply message cleared: sc's own, or a new one when
** that is in use further up this thread's stack (a __gc finalizer that
** runs while an encoding or a decoding allocates). Pushes what keeps it
** (nil for sc's own): pop that only after ltand_space_give.
** [-0, +1, m] */
ltand_space *ltand_space_take(lua_State *L, ltand_scratch *sc);

/* Ends a use of sp, taken from sc. [-0, +0, -] */
void ltand_space_give(ltand_scratch *sc, ltand_space *sp);

/* The message a reply lands in. [-0, +0, -] */
tand_msg *ltand_space_reply(ltand_space *sp);

/* Encodes the n values at stack index first.. into msg->data (an array
** when as_array, else exactly one value), through sp's buffer. Returns
** 0, or TAND_EBADVALUE / TAND_ENOMEM with an error message pushed.
** [-0, +(0|1), m] */
int ltand_encode(lua_State *L, ltand_space *sp, int first, int n,
                 int as_array, tand_msg *msg);

/* ltand_encode in a space of sc (L's scratch) taken and given back
** around it, for an encoding that is not part of a call.
** [-0, +(0|1), m] */
int ltand_encode_once(lua_State *L, ltand_scratch *sc, int first, int n,
                      int as_array, tand_msg *msg);

/* Decodes one value from data and pushes it; with as_list, data must be
** an array and its elements are pushed (returns their count).
** Returns the number of values pushed, or -1 with an error message pushed.
** [-0, +n, m] */
int ltand_decode(lua_State *L, const char *data, size_t size, int as_list);

/* ---- lspawn.c ---- */

/* Dumps the Lua function at idx as a binary chunk into *out (malloc'ed),
** refusing C functions and upvalues other than _ENV and `tand` holding
** the module (ltand_bind_upvalues gives both back where the chunk is
** loaded). Returns 0, or -1 with an error message pushed.
** [-0, +(0|1), m] */
int ltand_dump_function(lua_State *L, int idx, char **out, size_t *size);

/* Opens the standard libraries in a fresh state, sets package.path and
** package.cpath (when not NULL) and loads the tand module.
** [-0, +0, m] */
void ltand_setup_state(lua_State *L, const char *path, const char *cpath);

/* A malloc'ed copy of package[field] ("path", "cpath"), or NULL.
** [-0, +0, m] */
char *ltand_package_path(lua_State *L, const char *field);

int ltand_open_spawn(lua_State *L);

/* Gives a function loaded from ltand_dump_function's chunk its upvalues:
** _ENV the globals, tand the module. [-0, +0, -] */
void ltand_bind_upvalues(lua_State *L, int idx);

/* A message handler for lua_pcall: the error with a traceback.
** [-0, +1, m] */
int ltand_traceback(lua_State *L);

/* ---- lpolicy.c ---- */

typedef struct ltand_policy_options {
    int64_t min_number, max_number;
    int64_t auto_shutdown_ms; /* TAND_FOREVER for none */
    int64_t callback_ms;      /* TAND_FOREVER for none */
    size_t memory_limit;      /* bytes; 0 for none */
    int sandbox;
    const char *name;
    size_t mailbox;
    const char *journal;      /* or NULL */
    int durability;
} ltand_policy_options;

/* A policy made ready to start, as often as needed (a supervisor restarts
** from it), from any thread: its code, its init options, the paths. */
typedef struct policy_config ltand_policy;

/* Prepares the policy value at pidx, with the options table at oidx
** (handed to the policy's init). Returns 0 with *out set, or a TAND_E*
** code with a detail message pushed. o->name is not kept.
** [-0, +(0|1), m] */
int ltand_policy_prepare(lua_State *L, int pidx, int oidx,
                         const ltand_policy_options *o, ltand_policy **out);

/* Starts one policy server from c, registered as name (or NULL). On
** failure, detail gets the reason (the file and line of a bad policy).
** Thread: any. */
int ltand_policy_launch(tand_runtime *rt, ltand_policy *c, const char *name,
                        tand_server **out, char *detail, size_t size);

void ltand_policy_free(ltand_policy *c);

/* Makes m:reload's request for the policy value at idx (nil: the same
** code again; a module name is looked up on this state's package.path).
** 0, or TAND_ERELOAD / TAND_ENOMEM with the reason pushed; a value of a
** wrong type raises. [-0, +(0|1), e] */
int ltand_policy_reload_request(lua_State *L, int idx, tand_msg *req);

/* Whether s is a policy server. */
int ltand_is_policy(const tand_server *s);

/* While a policy callback runs on this thread: its deadline (monotonic
** ns), which caps the timeout of calls it makes; 0 otherwise. */
extern _Thread_local int64_t ltand_callback_deadline_ns;

/* ---- ldeadline.c: callback deadlines ---- */

/* A policy state's deadline; the policy host embeds one per state. */
typedef struct ltand_watch {
    tand_server *server;  /* borrowed: what the watchdog kills */
    int64_t callback_ms;  /* TAND_FOREVER for none */
    int64_t deadline_ns;  /* of the running callback, or 0; its thread */
    _Atomic int expired;  /* a callback passed its deadline: for good */
    _Atomic int killable; /* the server runs (not during its init) */
} ltand_watch;

void ltand_watch_init(ltand_watch *w, tand_server *server,
                      int64_t callback_ms);
/* Starts the process's watchdog thread if it is not running: 0, or -1
** when no thread can be started. Thread: any. */
int ltand_watch_start(void);
/* Ties L (a fresh policy state) to w and puts the guards in its
** libraries: coroutine.resume, wrap and close, and xpcall. [-0, +0, m] */
void ltand_watch_install(lua_State *L, ltand_watch *w);
/* lua_pcall under the callback deadline (see lua_pcall for the stack);
** an expired state runs nothing and gives LUA_ERRRUN. */
int ltand_watch_pcall(lua_State *L, int nargs, int nresults, int msgh);
/* lua_close, with the finalizers it runs watched as a callback. */
void ltand_watch_close(lua_State *L);
/* Raises the callback_timeout error once the running callback of L (a
** policy state) has passed its deadline; nothing otherwise. Long C steps
** (pattern matching) call it now and then so that they end with the
** callback. [-0, +0, v] */
void ltand_deadline_check(lua_State *L);

/* ---- lpattern.c ---- */

/* Replaces string.find, match, gmatch and gsub in L's string library
** (which the strings' metatable shares) with Lua 5.4.4's pattern matching
** that calls ltand_deadline_check as it goes, so that a long match ends
** with its callback. [-0, +0, e] */
void ltand_open_patterns(lua_State *L);

/* ---- lpool.c ---- */

/* Freed blocks of up to POOL_MAX bytes kept for reuse, by classes of
** POOL_GRAIN bytes, at most POOL_KEEP_BYTES in all. One thread at a time. */
#define POOL_GRAIN 16
#define POOL_MAX 256
#define POOL_CLASSES (POOL_MAX / POOL_GRAIN)
#define POOL_KEEP_BYTES 16384

typedef struct ltand_pool {
    void *free[POOL_CLASSES];
    size_t kept;
} ltand_pool;

void ltand_pool_init(ltand_pool *p);
/* Frees what the pool keeps; call once the Lua state is closed. */
void ltand_pool_drain(ltand_pool *p);
/* A lua_Alloc body (see the manual's lua_Alloc for the arguments). */
void *ltand_pool_realloc(ltand_pool *p, void *ptr, size_t osize,
                         size_t nsize);

/* ---- lmachine.c: the machine handle ---- */

/* Pushes a new handle for s (retained), or a dead handle when s is NULL.
** [-0, +1, m] */
void ltand_push_machine(lua_State *L, tand_server *s, uint64_t id);
/* Pushes a handle to a cluster's machine cm (the handle owns the
** reference), keeping the cluster object at index cluster alive (0: none,
** for a handle that came in a message: the record keeps the cluster).
** [-0, +1, m] */
void ltand_push_cluster_machine(lua_State *L, tand_cluster_machine *cm,
                                int cluster);

/* tand.cluster (lcluster.c), and the metatable of its objects.
** [-0, +0, m] */
int ltand_cluster(lua_State *L);
void ltand_open_cluster(lua_State *L);

/* Pushes what a call's reply gives Lua: its results, or nil, token,
** detail (nil, "bad_value", why for a reply that does not decode here).
** Returns how many. [-0, +n, m] */
int ltand_push_reply(lua_State *L, const tand_msg *reply);

/* Sends the machine at midx the call {op, args...} of the values
** first..last (op a string: raises otherwise, and for what cannot be
** sent) into box, through a space of sc (L's), with the handle's
** timeout; never waits for room. With owner (box NULL), the call is a
** request of that server, running the callback (tand_send_request). mt: an index that may hold the machine
** metatable (an upvalue), for a check without a lookup by name. The tag
** is ++*ids (1 when ids is NULL), taken once the call is encoded, as is
** *closed looked at: a __gc finalizer run by the encoding may use the
** same set. 0, TAND_ECANCELED when *closed, or the engine's code
** (TAND_ENOPROC, TAND_EBUSY, ...). [-0, +0, e] */
int ltand_machine_async(lua_State *L, ltand_scratch *sc, int midx, int mt,
                        int first, int last, tand_replies *box,
                        tand_server *owner, uint64_t *ids, const int *closed);

/* The timeout a call on the handle m gets: its own, capped inside a
** policy callback by what is left of the callback's time. [-0, +0, -] */
int64_t ltand_timeout_of(const lmachine *m);

/* The machine at idx, or raises; mt: an index that may hold the machine
** metatable (an upvalue), for a check without a lookup by name. Follows
** a handle's name to its current server. [-0, +0, v] */
lmachine *ltand_check_machine(lua_State *L, int idx, int mt);

/* Makes the LTAND_MACHINE metatable in the registry, unless it is there;
** its methods hold it as their upvalue 1 (see check_self in lmachine.c) and the
** state's scratch userdata as their upvalue 2. [-0, +0, m] */
void ltand_open_machine(lua_State *L);

/* ---- ltand.c ---- */

/* The value of tand.noreply (a light userdata). */
void *ltand_noreply_marker(void);

int luaopen_tand(lua_State *L);

/* The process-wide runtime; raises when it cannot be created.
** [-0, +0, v] */
tand_runtime *ltand_runtime(lua_State *L);
/* Pushes nil, token, detail and returns 3. [-0, +3, m] */
int ltand_fail(lua_State *L, int status, const char *detail);
/* 1 when the value at idx is a name: a string of 1 to TAND_NAME_MAX
** bytes without NUL (the engine keeps names as C strings, so "a\0b"
** would be cut to "a"). [-0, +0, -] */
int ltand_is_name(lua_State *L, int idx);
/* The stop reason at idx (m:stop, machine:stop): nil and "normal" are a
** normal stop (0), "shutdown" too (0, with it as the detail), any other
** string an abnormal one (TAND_ESTOPPED, the string the detail, which
** monitors see). *detail points into the string at idx. Raises for what
** is not a string or nil. [-0, +0, v] */
int ltand_stop_reason(lua_State *L, int idx, const char **detail);
/* Pushes why a server ended, as monitors tell it: "normal", the reason
** of a stop ("shutdown", "maintenance"), "noproc" (it had ended before),
** or the token and the detail ("server_crashed: ..."). [-0, +1, m] */
void ltand_push_reason(lua_State *L, int code, const char *detail);

/* Reads the timeout (ms) at idx into *ms: a whole number >= 0, or
** TAND_FOREVER for math.huge and anything above LTAND_TIMEOUT_MAX_MS.
** Returns 0, or -1 (nothing set) for a value that is not a number (a
** numeric string neither), a negative one, NaN or a fraction.
** [-0, +0, -] */
int ltand_timeout(lua_State *L, int idx, int64_t *ms);

/* ---- loptions.c: tand.start's options ---- */

/* A parsed tand.start options table: what it takes to start the server
** again, from any thread and with no Lua state. */
typedef struct lspec ltand_spec;

/* Reads the options at idx (a table or an initial number) into a new spec.
** Returns it, or NULL with nil, token, detail on top of the stack (a
** failure found after the options were read leaves its detail string
** below them too). [-0, +(0|3|4), m] */
ltand_spec *ltand_spec_parse(lua_State *L, int idx);
/* Starts one server from a spec, registered as name (or NULL). On failure
** detail gets the reason. Thread: any. */
int ltand_spec_start(tand_runtime *rt, ltand_spec *sp, const char *name,
                     tand_server **out, char *detail, size_t size);
/* The name option of sp, or NULL; sp keeps it. */
const char *ltand_spec_name(const ltand_spec *sp);
/* The behaviour its server runs: "deluxe", "counter" or "policy". */
const char *ltand_spec_kind(const ltand_spec *sp);
/* Whether it names a journal. */
int ltand_spec_has_journal(const ltand_spec *sp);
/* Frees sp (NULL is nothing to free). Thread: any. */
void ltand_spec_free(ltand_spec *sp);

/* Starts a server from the tand.start options table at idx, on rt. On
** failure detail gets the reason (and the stray detail string of
** ltand_spec_parse stays pushed). [-0, +(0|1), m] */
int ltand_start_table(lua_State *L, int idx, tand_runtime *rt,
                      tand_server **out, char *detail, size_t size);
/* tand.start(options): a handle, or nil, token, detail. */
int ltand_start(lua_State *L);

/* Pushes the message fmt with key in it, then nil, "invalid_configuration"
** and the message; returns 3 (for `return ltand_bad_config(...)`).
** [-0, +4, m] */
int ltand_bad_config(lua_State *L, const char *fmt, const char *key);
/* Reads the integer at idx (a number with an integer value, not a
** string) into *out: 0, or -1 with nothing set. [-0, +0, -] */
int ltand_get_integer(lua_State *L, int idx, int64_t *out);

/* ---- lsupervise.c ---- */

/* tand.supervise(flags, children): a handle to the supervisor, or nil,
** token, detail. */
int ltand_supervise(lua_State *L);

/* The supervisor handle's methods, on the machine handle's method table
** (their upvalue 1 is the machine metatable): sup:which_children(),
** sup:start_child(spec), sup:terminate_child(name),
** sup:restart_child(name), sup:delete_child(name),
** sup:count_children(). Each returns its result or nil, token[, detail];
** each raises for a bad argument or a handle whose server is not a
** supervisor. */
int ltand_sup_which_children(lua_State *L);
int ltand_sup_start_child(lua_State *L);
int ltand_sup_terminate_child(lua_State *L);
int ltand_sup_restart_child(lua_State *L);
int ltand_sup_delete_child(lua_State *L);
int ltand_sup_count_children(lua_State *L);

/* ---- lrequest.c: requests and request sets ---- */

/* m:send_request: pushes a request for the call of the values from first
** on to the machine at midx, or nil, token, detail (above the request it
** made, which then goes with the stack). [-0, +(1|4), e] */
int ltand_request_send(lua_State *L, ltand_scratch *sc, int midx, int mt,
                       int first);

/* tand.requests(): pushes a new, empty set. [-0, +(1|3), m] */
int ltand_requests(lua_State *L);

/* m:monitor: pushes a request that finishes when s ends (NULL: it had
** ended already), its answer the reason (ltand_push_reason); a wait
** without ms waits up to wait_ms, the handle's timeout, and leaves it
** pending. Or nil, token, detail. [-0, +(1|4), m] */
int ltand_request_monitor(lua_State *L, tand_server *s, int64_t wait_ms);

/* Makes the metatables of requests and sets. [-0, +0, m] */
void ltand_open_requests(lua_State *L);

#endif
