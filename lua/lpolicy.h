/*
** lpolicy.h - what the files of a policy server share; not installed.
**
** A policy server is split by job: lpolicy.c loads the policy into its
** private Lua state and starts the server, lpolicy_call.c runs the
** callbacks for the messages, lpolicy_machine.c is the `machine` and
** `from` objects the callbacks get, lpolicy_journal.c keeps the tickets
** and the state, journaled when there is a journal, and lsandbox.c closes
** the sandbox's doors. The callback deadline is ldeadline.c's.
*/
#ifndef LPOLICY_H
#define LPOLICY_H

#include "ltand.h"

#include <stddef.h>

/* The callbacks, in the order of policy_code.ref_callback. */
enum {
    CB_INIT, CB_CALL, CB_CAST, CB_INFO, CB_TERMINATE, CB_CODE_CHANGE,
    CB_COUNT
};

/* A policy's code once loaded: its table, its callbacks (looked up once:
** the table's later changes are not seen) and P.passthrough. */
typedef struct policy_code {
    int ref_policy;
    int ref_callback[CB_COUNT]; /* init, handle_call, ... or LUA_NOREF */
    unsigned passthrough;       /* bit op: P.passthrough lists that op */
} policy_code;

/* Where a policy's code comes from: a .lua file, or a dumped function (a
** binary chunk). One of the two is NULL. */
typedef struct policy_source {
    char *file;
    char *code;
    size_t code_size;
} policy_source;

typedef struct policy {
    ltand_watch watch;       /* the callbacks' deadline */
    lua_State *L;
    tand_tickets *tickets;
    tand_server *self;       /* borrowed: the server owns the policy */
    tand_journal *journal;   /* or NULL */
    int64_t auto_shutdown_ms;
    size_t mem_used, mem_limit;
    ltand_pool pool;         /* the Lua state's small blocks */
    policy_code code;
    policy_source source;    /* the code's, for a reload of the same */
    int ref_state, ref_machine;
    int ref_from_meta;       /* the metatable of `from` values */
    int ref_from_kept_meta;  /* and of those kept past their callback */
    int closing;             /* the state is being closed */
    int reloading;           /* m:reload's code runs: the machine only
                             ** reads (see lpolicy_machine.c) */
    int *load_stage;         /* while code loads: how far (load_msgh) */
    int ref_op[7];           /* the names of the fast-path ops */
    void *machine_ud;        /* the machine object, to recognise it */
    ltand_scratch *scratch;  /* the state's */
    char *name;              /* the server's name at its start, or NULL */
    uint64_t last_request;   /* the id of machine:send_request's last */
    int64_t last_monitor;    /* the ref of machine:monitor's last */
    int ref_monitors;        /* a table: ref -> the watched handle, for
                             ** the monitors not ended nor cancelled */
} policy;

typedef struct lfrom {
    tand_from *from;
    int answered;
} lfrom;

/* The configuration handed from tand.start to init. */
typedef struct policy_config {
    policy_source source;
    tand_msg opts;   /* the options table for init, MessagePack */
    char *path, *cpath;
    ltand_policy_options o;
    const char *launch_name; /* during a launch: the name it is given */
    int status;      /* why init failed */
    char err[2048];  /* and the detail */
} policy_config;

/* One callback run: what its protected part needs and what it found (see
** "running callbacks in protected mode" below). */
typedef struct cb_run {
    policy *p;
    int which;             /* one of CB_INIT .. CB_TERMINATE */
    const tand_msg *msg;   /* CB_CALL, CB_CAST: the request */
    const char *data;      /* CB_INIT, CB_INFO: MessagePack, or NULL */
    size_t size;
    const tand_msg *answer; /* CB_INFO: a request's reply (then not data) */
    const tand_msg *down;  /* CB_INFO: a DOWN notice (then not data) */
    uint64_t request;      /* and the request's id */
    const char *reason;    /* CB_TERMINATE */
    tand_from *from;       /* CB_CALL */
    tand_msg *reply;       /* CB_CALL: the reply the engine sends */
    lfrom *f;              /* CB_CALL: the `from` given to the callback */
    int called;            /* the arguments were built, the callback ran */
    int bad_request;       /* not {op, args...} (a saved state: not valid) */
    int engine_replies;    /* CB_CALL: *reply holds the callback's answer */
    int reset;             /* default_cast: the cast is reset_state */
} cb_run;

/* The policy whose state L is (or one of its coroutines). */
static inline policy *policy_of(lua_State *L)
{
    ltand_watch *w = *(ltand_watch **)lua_getextraspace(L);
    return (policy *)(void *)((char *)w - offsetof(policy, watch));
}

/* Calls the function below nargs arguments (a traceback handler sits
** below it) with the callback deadline armed. [-(nargs+1), +(n|1), -] */
static inline int invoke(policy *p, int nargs, int nresults)
{
    return ltand_watch_pcall(p->L, nargs, nresults,
                             lua_gettop(p->L) - nargs - 1);
}

/* ---- lpolicy.c ---- */

/* Records why init failed: fmt takes text as its one %s. Returns status. */
int lpolicy_fail(policy_config *c, int status, const char *fmt,
                 const char *text);

/* Closes the policy's state and frees it. */
void lpolicy_free(policy *p);

/* How far lpolicy_load_code (and a reload) got. */
enum { LOAD_COMPILE, LOAD_RUN, LOAD_READ, LOAD_CHANGE, LOAD_DONE };

/* Compiles and runs the code of src in p->L (a function it returns is
** called too) and reads the policy table it gives into *code: refs in the
** registry, recorded as they are made, so that after an error
** lpolicy_drop_code frees them. Raises on failure, *stage saying where.
** Runs inside a protected call under the callback deadline whose message
** handler is lpolicy_push_load_msgh's. [-0, +0, e] */
void lpolicy_load_code(policy *p, const policy_source *src,
                       policy_code *code, int *stage);

/* Pushes the message handler for a protected call around
** lpolicy_load_code: a traceback for an error of the policy's code
** running (LOAD_RUN, LOAD_CHANGE), the message alone otherwise. A light
** C function, reading *stage through the policy: pushing it allocates
** nothing, so a state at its memory_limit cannot raise outside the
** protected call. [-0, +1, -] */
void lpolicy_push_load_msgh(lua_State *L, int *stage);

/* The start of a load failure's message for stage ("cannot load the
** policy: ", ...). */
const char *lpolicy_load_failure(int stage);

/* Drops the registry refs of *code (they become LUA_NOREF). */
void lpolicy_drop_code(policy *p, policy_code *code);

/* Frees what src holds and zeroes it. */
void lpolicy_source_free(policy_source *src);

/* Copies src into *dst (zeroed first); 0, or TAND_ENOMEM. */
int lpolicy_source_copy(policy_source *dst, const policy_source *src);

/* The op code (TAND_OP_QUEUE_NEW_NUMBER .. TAND_OP_RESET_STATE) of the
** built-in op named name (len bytes), or 0. */
int lpolicy_builtin_op(const char *name, size_t len);

/* ---- lpolicy_call.c: the behaviour's callbacks ---- */

/* Runs callback r->which under its deadline and the traceback handler.
** LUA_OK, or an error status with the message at the top of the stack. */
int lpolicy_run_callback(cb_run *r);

int lpolicy_call(void *state, tand_server *self, tand_msg *req,
                 tand_from *from, tand_msg *reply);
void lpolicy_cast(void *state, tand_server *self, tand_msg *msg);
void lpolicy_info(void *state, tand_server *self, tand_msg *msg);
/* The reply of machine:send_request: handle_info gets
** {"reply", id, ...} (lpolicy_call.c). */
void lpolicy_reply(void *state, tand_server *self, uint64_t tag,
                   tand_msg *reply);
void lpolicy_terminate(void *state, tand_server *self, int reason,
                       const char *detail);

/* A callback raised (or ran past its deadline): the server stops with
** server_crashed, carrying the error at the top of the stack; reply, when
** not NULL, gets it too. */
/* When the n values at `first` are nil, one of tand's tokens and at most
** a text detail, makes reply that failure (its status the token's code)
** and returns 1; else 0 with reply untouched. [-0, +0, m] */
int lpolicy_error_reply(lua_State *L, int first, int n, tand_msg *reply);
void lpolicy_crash(policy *p, tand_msg *reply);

/* ---- lpolicy_reload.c ---- */

/* m:reload: loads the code the request names between two messages (see
** lpolicy_reload.c). Its reply: 0, or TAND_ERELOAD with the reason. */
void lpolicy_reload(policy *p, const tand_msg *req, tand_msg *reply);

/* ---- lpolicy_machine.c: the `machine` and `from` objects ---- */

/* Makes the metatables of `machine` and `from` and the policy's machine
** object (p->ref_machine). [-0, +0, m] */
void lpolicy_open_machine(lua_State *L, policy *p);

/* machine:default(request): the built-in answer to a request by name.
** [-2, +n, e] */
int lpolicy_default(lua_State *L);

/* ---- lpolicy_journal.c: the tickets and the state ---- */

/* The built-in operations on the tickets, journaled when there is a
** journal (a failed write fails the batch: see tand.h). */
int lpolicy_queue(policy *p, int64_t *n);
int lpolicy_serve(policy *p, const int64_t *prio, int64_t *n);
void lpolicy_reset(policy *p);

/* Resumes the tickets (or records the bounds in a fresh journal) and
** pushes the saved state, or nothing when there is none. 0, or the
** failure recorded in c. */
int lpolicy_resume_journal(policy *p, policy_config *c);

/* Journals the state after a callback; 0, or -1 with the reason pushed
** (see lpolicy_journal.c). [-0, +(0|1), m] */
int lpolicy_save_state(policy *p);

/* ---- lsandbox.c ---- */

/* Closes every door of DESIGN.md's sandbox. [-0, +0, e] */
void lpolicy_open_sandbox(lua_State *L);

#endif
