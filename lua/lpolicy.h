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

/* The callbacks, in the order of policy.ref_callback. */
enum { CB_INIT, CB_CALL, CB_CAST, CB_INFO, CB_TERMINATE, CB_COUNT };

typedef struct policy {
    ltand_watch watch;       /* the callbacks' deadline */
    lua_State *L;
    tand_tickets *tickets;
    tand_server *self;       /* borrowed: the server owns the policy */
    tand_journal *journal;   /* or NULL */
    int64_t auto_shutdown_ms;
    size_t mem_used, mem_limit;
    ltand_pool pool;         /* the Lua state's small blocks */
    int ref_policy, ref_state, ref_machine;
    int ref_callback[CB_COUNT];     /* init, handle_call, ... or LUA_NOREF */
    int ref_from_meta;       /* the metatable of `from` values */
    int ref_from_kept_meta;  /* and of those kept past their callback */
    int closing;             /* the state is being closed */
    int ref_op[7];           /* the names of the fast-path ops */
    unsigned passthrough;    /* bit op: P.passthrough lists that op */
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
    char *code;      /* a dumped function (binary chunk), or NULL */
    size_t code_size;
    char *file;      /* a .lua file to load, or NULL */
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
