/*
** tand.h - the whole public C API of tand ("Take A Number Deluxe").
**
** tand runs serialized state servers: a server owns its state alone and
** handles its messages one at a time, while any number of threads call it.
** Handles are opaque and reference counted. Every function that can fail
** returns 0 or a negative TAND_E* code; tand_errname() gives the stable
** snake_case token and tand_strerror() a sentence.
*/
#ifndef TAND_H
#define TAND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TAND_API __attribute__((visibility("default")))
#else
#define TAND_API
#endif

#define TAND_VERSION_MAJOR 0
#define TAND_VERSION_MINOR 1
#define TAND_VERSION_PATCH 0
#define TAND_VERSION_STRING "0.1.0"

/* ---- errors ---------------------------------------------------------- */

/* XX(name, code, token, sentence) */
#define TAND_ERRNO_MAP(XX)                                                   \
    XX(ENOMEM, -1, "out_of_memory", "not enough memory")                     \
    XX(EINVAL, -2, "invalid_argument", "an argument is invalid")             \
    XX(ETIMEDOUT, -3, "timeout", "the deadline passed before the reply")     \
    XX(ENOPROC, -4, "noproc", "the server is not running")                   \
    XX(EBUSY, -5, "busy", "the server's mailbox is full")                    \
    XX(ECALLSELF, -6, "calling_self",                                        \
       "a server called itself from its own handler")                        \
    XX(ECRASHED, -7, "server_crashed", "the server crashed")                 \
    XX(ECONFIG, -8, "invalid_configuration",                                 \
       "the server's configuration is invalid")                              \
    XX(EEMPTY, -9, "empty_queue", "no number is queued")                     \
    XX(EFULL, -10, "all_possible_numbers_are_in_use",                        \
       "every number of the range is queued")                                \
    XX(ENOTQUEUED, -11, "priority_number_not_found",                         \
       "the priority number is not queued")                                  \
    XX(EBADREQ, -12, "unknown_request",                                      \
       "the server does not know this request")                              \
    XX(EBADVALUE, -13, "bad_value", "a value cannot be sent in a message")   \
    XX(EBADMSG, -14, "bad_message", "a message is not valid MessagePack")    \
    XX(ENAMETAKEN, -15, "name_taken", "the name is already registered")      \
    XX(ESYSTEM, -16, "system_error", "the system refused a resource")        \
    XX(EJOURNAL, -17, "journal_error", "the journal cannot be used")          \
    XX(EJOURNALLOCKED, -18, "journal_locked",                                \
       "the journal is held by another server")                              \
    XX(ECANCELED, -19, "cancelled", "the request was cancelled")             \
    XX(EEMPTY_SET, -20, "empty", "no request of the set is pending")        \
    XX(ESTOPPED, -21, "stopped",                                             \
       "the server was stopped for a reason of its own")                     \
    XX(ERELOAD, -22, "reload_failed",                                        \
       "the new code was refused and the old code runs on")                  \
    XX(ENOTFOUND, -23, "not_found", "the supervisor has no such child")      \
    XX(ERUNNING, -24, "running", "the child is running")                     \
    XX(EPRESENT, -25, "already_present",                                     \
       "the supervisor keeps a child of that name, not running")             \
    XX(ESTARTED, -26, "already_started",                                     \
       "the supervisor has a running child of that name")                    \
    XX(EANSWERED, -27, "already_answered",                                   \
       "the caller has been answered already")                               \
    XX(EENGINE, -28, "another_engine",                                       \
       "another copy of the tand engine runs in this process")               \
    XX(ENOTOWNER, -29, "not_owner",                                          \
       "another host owns the clustered machine now")                        \
    XX(ECLUSTER, -30, "cluster_unavailable",                                 \
       "the cluster's NATS servers cannot be used")

enum {
#define TAND_ERR_ENUM(name, code, token, text) TAND_##name = code,
    TAND_ERRNO_MAP(TAND_ERR_ENUM)
#undef TAND_ERR_ENUM
    TAND_ERR_LAST_ = -31
};

/* The stable snake_case token of an error code ("timeout"), "ok" for 0,
** "unknown_error" for a code that is not one of tand's.
** Thread: any. Blocks: no. */
TAND_API const char *tand_errname(int err);

/* The error code of a token from tand_errname(): 0 for "ok", 1 for a
** string that is not a token (so a caller can tell it from every code).
** Thread: any. Blocks: no. */
TAND_API int tand_errcode(const char *token);

/* A one-sentence description of an error code.
** Thread: any. Blocks: no. */
TAND_API const char *tand_strerror(int err);

/* ---- time ------------------------------------------------------------ */

/* The longest name of a server (tand_register) or a supervisor's child,
** in bytes, without the NUL. */
#define TAND_NAME_MAX 255

/* A timeout that never expires. Timeouts are in milliseconds, >= 0. */
#define TAND_FOREVER INT64_C(-1)

/* Milliseconds on CLOCK_MONOTONIC since an arbitrary start.
** Thread: any. Blocks: no. */
TAND_API int64_t tand_now_ms(void);

/* ---- messages -------------------------------------------------------- */

/* A message: a request, a cast, an info, or a reply. The integer fields
** carry the built-in machines' fast path; `data`, when not NULL, is a
** MessagePack payload of `size` bytes allocated with malloc(). Whoever
** holds a message owns its data: functions that take a message consume it
** on every path, success or failure, and leave `data` NULL.
** In a reply, `status` is 0 or a TAND_E* code; on an error, `data`, when
** set, is a NUL-terminated detail message (size excludes the NUL). */
typedef struct tand_msg {
    int status;      /* replies: 0 or a negative TAND_E* code */
    int op;          /* request code; 0 means "encoded in data" */
    int64_t ival[2]; /* integer arguments or results */
    char *data;      /* malloc'ed payload, or NULL */
    size_t size;
} tand_msg;

/* Frees msg->data and zeroes the message. NULL is fine.
** Thread: any. Blocks: no. */
TAND_API void tand_msg_clear(tand_msg *msg);

/* Sets msg->data to a copy of `len` bytes of `text` followed by a NUL
** (size = len), for an error detail; what data held is freed first. 0, or
** TAND_ENOMEM with data NULL and size 0. Thread: any. Blocks: no. */
TAND_API int tand_msg_set_text(tand_msg *msg, const char *text, size_t len);

/* ---- runtime --------------------------------------------------------- */

typedef struct tand_runtime tand_runtime;
typedef struct tand_server tand_server;
typedef struct tand_from tand_from;

/* Options structs: every field's zero is its default, so `= {0}` (or
** memset) gives the documented defaults, as each *_options_init does.
** A value that is not the default is asked for by its own number or a
** named constant, never by 0. */

/* tand_runtime_options.workers: no thread of the runtime's own; the host
** calls tand_runtime_pump(). */
#define TAND_PUMPED (-2)

typedef struct tand_runtime_options {
    int workers; /* worker threads, 1 to 1024; 0 (default): one per core
                 ** (-1 is read as 0 too); TAND_PUMPED: the host pumps */
} tand_runtime_options;

/* Fills *o (not NULL) with the defaults: one worker per core. Cannot fail.
** Thread: any. Blocks: no. */
TAND_API void tand_runtime_options_init(tand_runtime_options *o);

/* Creates a runtime. With worker threads (workers > 0, or 0 for one per
** core) it starts them and a timer thread; with workers == TAND_PUMPED it
** has no thread of its own and the host calls tand_runtime_pump(). `opts`
** may be NULL for the defaults (one worker per core). 0, or TAND_EINVAL
** (out NULL, workers < TAND_PUMPED or > 1024), TAND_ENOMEM, TAND_ESYSTEM
** (no thread or lock), TAND_EENGINE; on failure *out is NULL and nothing
** is left running.
** One engine a process: a process holds one copy of tand's code, with one
** default runtime and registry, however it is loaded. A host that links
** libtand and also lets its scripts `require "tand"` from package.cpath
** would get a second copy (tand.so holds the engine too). With the shared
** libtand, tand.so finds it and hands the module over to it (one engine,
** shared). Otherwise (the static libtand, or libtand opened RTLD_LOCAL)
** the copy that makes a runtime second is refused with TAND_EENGINE
** ("another_engine"), and from Lua require raises saying so: open the
** module from the host with luaL_requiref(L, "tand", luaopen_tand, 1)
** instead. The copies meet through an abstract Unix socket named after
** the process (Linux); without one the check is skipped.
** Thread: any. Blocks: no. */
TAND_API int tand_runtime_new(const tand_runtime_options *opts,
                              tand_runtime **out);

/* Stops every server of the runtime (their waiting callers get noproc),
** joins its threads and frees it. Other threads may go on using handles
** to its servers meanwhile: the free waits until none of them uses the
** runtime any more. Handles stay valid objects until released, but every
** call on them fails with noproc.
** Not to be called from one of the runtime's own handlers. NULL is fine.
** Thread: any but the runtime's.
** Blocks: until every server has ended and the threads are joined. */
TAND_API void tand_runtime_free(tand_runtime *rt);

/* The process-wide runtime the Lua module uses: threaded, one worker per
** core, created on first use and never freed. NULL only when it cannot be
** created (out of memory, no threads). Thread: any. Blocks: no. */
TAND_API tand_runtime *tand_runtime_default(void);

/* Why tand_runtime_default() gave NULL (its tand_runtime_new's error:
** TAND_EENGINE, TAND_ENOMEM, ...), 0 once it has a runtime.
** Thread: any. Blocks: no. */
TAND_API int tand_runtime_default_error(void);

/* Pumped mode: runs due idle timers, then servers with messages, until
** nothing is runnable or `budget_us` microseconds have passed (a handler
** is never interrupted; the budget is checked after each server's turn
** of up to 64 messages, so at least one turn runs). Returns the number of
** messages handled, or TAND_EINVAL if rt is NULL or has worker threads.
** Thread: any; while another thread pumps it, or runs one of its servers
** on its own thread (a caller: see "Who runs a server"), it returns 0 at
** once (a handler may pump its own runtime). Blocks: no (runs handlers). */
TAND_API int tand_runtime_pump(tand_runtime *rt, int64_t budget_us);

/* ---- servers --------------------------------------------------------- */

/* What handle_call returns to defer the reply (see tand_reply()). */
#define TAND_NOREPLY 1

/* Idle actions for tand_server_set_idle(). */
#define TAND_IDLE_NOTIFY 1 /* call the behaviour's handle_idle */
#define TAND_IDLE_STOP 2   /* stop the server normally */

/* A server's code. Every callback runs on the thread that currently runs
** the server, one at a time. Only handle_call is required: a NULL
** handle_cast or handle_info drops the message, a NULL terminate does
** nothing. The request or message is lent to the callback; a callback may
** keep its data by setting msg->data to NULL. */
typedef struct tand_behaviour {
    const char *name;
    /* Runs in tand_server_start()'s thread before the server is visible.
    ** Sets *state; returns 0 or a TAND_E* code (the start fails with it).
    ** May be NULL: the state is then `arg`. */
    int (*init)(tand_server *self, void *arg, void **state);
    /* Fills `reply` and returns 0, or returns TAND_NOREPLY and answers
    ** later through `from` with tand_reply(). A negative TAND_E* code
    ** fails the call with it, as init's does the start: the caller gets
    ** that status, with reply->data as its detail when the handler set
    ** one (tand_msg_set_text), and the other fields zeroed; a positive
    ** value other than TAND_NOREPLY fails it with TAND_EINVAL. Setting
    ** reply->status and returning 0 does the same. `req->op` is whatever
    ** the caller sent: TAND_OP_ENCODED, the built-in machines' codes 1 to
    ** 6 (from tand_deluxe_queue and the Lua machine methods, which any
    ** handle may send), the behaviour's own codes, or a reserved one a
    ** caller sent (TAND_OP_RELOAD from a Lua m:reload()); answer the
    ** ops it does not know with TAND_EBADREQ. tand itself sends a
    ** behaviour of its own no call; its infos are TAND_OP_DOWN notices
    ** (handle_info) of the monitors it asked for. */
    int (*handle_call)(void *state, tand_server *self, tand_msg *req,
                       tand_from *from, tand_msg *reply);
    void (*handle_cast)(void *state, tand_server *self, tand_msg *msg);
    void (*handle_info)(void *state, tand_server *self, tand_msg *msg);
    /* The idle timer fired with TAND_IDLE_NOTIFY. May be NULL. */
    void (*handle_idle)(void *state, tand_server *self);
    /* Runs once when the server ends; frees the state. `reason` is 0 for a
    ** normal stop or a TAND_E* code, `detail` a message or NULL. */
    void (*terminate)(void *state, tand_server *self, int reason,
                      const char *detail);
    /* The reply of a request this server sent with tand_send_request(),
    ** under its tag: reply->status is the call's (TAND_ETIMEDOUT once its
    ** deadline passed). The reply is lent, as a message is. May be NULL
    ** for a server that sends no requests. */
    void (*handle_reply)(void *state, tand_server *self, uint64_t tag,
                         tand_msg *reply);
} tand_behaviour;

/* Durability of a journal (tand_server_options.durability). */
enum {
    TAND_DURABLE_FULL, /* each batch is fsynced before its replies */
    TAND_DURABLE_OS    /* written before the replies, flushed by the OS */
};

typedef struct tand_server_options {
    const tand_behaviour *behaviour; /* required; must outlive the server */
    void *arg;                       /* handed to init */
    const char *name;                /* register under this name, or NULL */
    size_t mailbox_capacity;         /* messages; 0: TAND_MAILBOX_DEFAULT */
    const char *journal;    /* path of the server's journal, or NULL */
    int durability;         /* TAND_DURABLE_FULL (0, default) or _OS */
    char *error;            /* if not NULL, a failed start says why here
                            ** (also for a bad option) */
    size_t error_size;
    /* A bound the behaviour declares: no callback of this server runs
    ** longer than this many microseconds. 0 (the default): none. A caller
    ** whose deadline leaves that much, and who finds the server free,
    ** runs the call on its own thread (see "Who runs a server"). Ignored
    ** with a journal. Negative: TAND_EINVAL. */
    int64_t bound_us;
} tand_server_options;

#define TAND_MAILBOX_DEFAULT 4096
#define TAND_MAILBOX_MAX (1u << 24)

/* Fills *o (not NULL) with the defaults: all zero (no behaviour yet, no
** name, the default mailbox, no journal, TAND_DURABLE_FULL, no bound).
** Cannot fail. Thread: any. Blocks: no. */
TAND_API void tand_server_options_init(tand_server_options *o);

/* Starts a server: opens its journal if any, runs behaviour->init,
** registers `name` if given, and makes the server accept messages. `o` is
** read during the call only (the name is copied). *out gets a reference
** the caller releases. On failure nothing is registered, *out is NULL and
** a state init made has been passed to terminate: init's error (a
** positive one becomes TAND_EINVAL), TAND_EINVAL (a bad option),
** TAND_ENAMETAKEN, TAND_EJOURNAL (why in o->error), TAND_EJOURNALLOCKED
** (another server holds o->journal, in this process or another; o->error
** names the path; nothing was changed), TAND_ENOPROC (the runtime is
** being freed), TAND_ENOMEM, TAND_ESYSTEM. With o->journal the server
** holds that file until it has ended (the end tand_server_stop() waits
** for; tand_server_alive() is already 0 while it stops; for a server
** ended by tand_server_kill, until its stuck handler returns) or its
** process dies, kill -9 included; then a new start on it resumes its
** state.
** Thread: any. Blocks: while the journal opens and init runs; never for
** a held journal (refused at once). */
TAND_API int tand_server_start(tand_runtime *rt, const tand_server_options *o,
                               tand_server **out);

/* Reference counting: retain adds one (s must not be NULL); release drops
** one (NULL is fine) and the last frees the handle. A server lives until
** it stops; a handle outlives it and then answers noproc.
** Thread: any. Blocks: no. */
TAND_API void tand_server_retain(tand_server *s);
TAND_API void tand_server_release(tand_server *s);

/* Asks the server to stop with `reason` (0 for normal, or a TAND_E* code)
** and an optional `detail`. New messages fail with noproc at once; the
** server's terminate runs on its own thread after the message in progress;
** queued and deferred callers get noproc (normal stop) or the reason.
** Waits up to timeout_ms for terminate to finish (0: do not wait).
** Returns 0; TAND_ENOPROC if it was already stopping (still waiting, as
** above, for its end); TAND_ETIMEDOUT if terminate had not finished in
** time (it still will); TAND_EINVAL (NULL s, reason > 0) or TAND_ENOMEM
** (copying detail), and then nothing is changed.
** From the server's own handler it never waits.
** Thread: any. Blocks: up to timeout_ms. */
TAND_API int tand_server_stop(tand_server *s, int reason, const char *detail,
                              int64_t timeout_ms);

/* Ends s at once as crashed, from any thread, even while one of its
** handlers runs and does not return (OTP's exit(Pid, kill)): its waiting
** callers (queued, being served, deferred, or held for a journal commit)
** get TAND_ECRASHED with `detail`, its name and id are dropped, monitors
** get their DOWN notice, and tand_server_stop returns for its stoppers.
** The thread running the handler keeps the server's state until the
** handler returns; then the engine rolls its journal batch back, lets the
** journal go, and calls the behaviour's terminate (reason TAND_ECRASHED)
** to free the state; replies the handler still sends are dropped
** (tand_reply returns TAND_ENOPROC). A worker stuck in such a handler is
** replaced by a spare meanwhile. A supervisor restarts a journaled child
** only once its journal is let go. When no handler of s runs, this is
** tand_server_stop(s, TAND_ECRASHED, detail, 0). The caller must know s
** alive for the duration of the call (a handle, or a handler that cannot
** end meanwhile). Returns 0; TAND_ENOPROC if s has already ended;
** TAND_EBUSY if the handler is inside tand_reply this instant (try again);
** TAND_ENOMEM for the detail's copy (nothing done).
** Thread: any but s's own. Blocks: no (briefly takes s's locks). */
TAND_API int tand_server_kill(tand_server *s, const char *detail);

/* 1 while the server runs (has not been asked to stop), else 0.
** Thread: any. Blocks: no. */
TAND_API int tand_server_alive(const tand_server *s);

/* The server's id, unique in the process for its lifetime and never
** reused; how handles travel inside messages. Thread: any. Blocks: no. */
TAND_API uint64_t tand_server_id(const tand_server *s);

/* Finds a server of rt by id. *out gets a new reference, or NULL on
** failure: TAND_ENOPROC when no server of rt has that id (or it has
** ended), TAND_EINVAL for NULL rt or out. Thread: any. Blocks: no. */
TAND_API int tand_server_lookup(tand_runtime *rt, uint64_t id,
                                tand_server **out);

/* The runtime the server runs on, NULL for NULL (borrowed: no reference
** is taken; valid until tand_runtime_free()). Thread: any. Blocks: no. */
TAND_API tand_runtime *tand_server_runtime(const tand_server *s);

/* The behaviour s was started with (tand_server_options.behaviour), to
** tell what kind of server a handle reaches. Thread: any. Blocks: no. */
TAND_API const tand_behaviour *tand_server_behaviour(const tand_server *s);

/* The server whose callback runs on this thread now, or NULL (borrowed).
** Not the new server during its init: use init's `self` there.
** Thread: any. Blocks: no. */
TAND_API tand_server *tand_self(void);

/* Arms the idle timer: after idle_ms with no message of any kind handled
** (calls, casts, infos), run `action`. Every handled message re-arms it;
** idle_ms < 0 disarms it. Resolution is a millisecond. 0, or TAND_EINVAL
** (NULL s, or idle_ms >= 0 with another action), TAND_ENOPROC once the
** server is stopping; on failure nothing is changed.
** Thread: any. Blocks: no. */
TAND_API int tand_server_set_idle(tand_server *s, int64_t idle_ms,
                                  int action);

/* Per-server counters, read without stopping the server. */
typedef struct tand_stats {
    uint64_t calls, casts, infos; /* infos: replies to handle_reply too */
    uint64_t errors;   /* calls answered with a failure: a status < 0,
                       ** however it was made (reply->status, a
                       ** returned code, tand_reply, a failed commit);
                       ** a Lua policy's reply nil, token [, detail]
                       ** with one of tand's tokens is such a failure
                       ** (its status is the token's code), so every
                       ** machine counts the same failures. Callers
                       ** answered by the server's end (noproc, the
                       ** stop reason) do not count. */
    uint64_t timeouts; /* tand_call() callers that gave up before their
                       ** reply (an async call's deadline passes in its
                       ** reply box, which does not count it here) */
    uint64_t mailbox_depth, mailbox_peak;
    /* time the server ran, on whichever thread: its callbacks and the
    ** engine's work around them */
    uint64_t handler_ns;
    uint64_t restarts;   /* set by supervisors */
    uint64_t deferred;   /* calls taken and not answered yet: the one
                         ** being handled and those deferred */
} tand_stats;

/* Fills *out with the server's counters, also after it has ended (then
** they stay as they were). Each counter is read atomically, the set is
** not a snapshot. 0, or TAND_EINVAL for NULL arguments.
** Thread: any. Blocks: no. */
TAND_API int tand_server_stats(const tand_server *s, tand_stats *out);

/* ---- messaging ------------------------------------------------------- */

/* Flag: when the mailbox is full, fail with TAND_EBUSY at once instead of
** waiting for room until the deadline. */
#define TAND_NOWAIT 1

/* Who runs a server. A server is run by one thread at a time, whichever
** holds it. A call runs on the caller's own thread when the server is
** free (nothing queued, nobody running it), declares a bound
** (tand_server_options.bound_us) that fits in what is left of the call's
** deadline, has no journal, the thread has not opted out
** (tand_thread_set_inline) and fewer than 8 such runs are nested on it
** (on a worker thread, only for a server declared within 100 us);
** in a pumped runtime also only while no other thread pumps or runs one
** of its servers. Then the reply is the callback's return, with no other
** thread involved. A caller that finds the server held queues its request
** and waits; the holder serves the queue in order before it lets go when
** the server's callbacks are declared within 100 us (else a worker serves
** it); a call made from a handler serves only its own request. Casts,
** infos, asynchronous calls, idle timers and everything else run on the
** runtime's workers (or its pump). */

/* Whether calls made from this thread may run servers on it: 1 (the
** default) or 0 (a render or audio thread that must not run other code;
** its calls then always queue for a worker). Returns the previous
** setting. Thread: the calling thread's own setting. Blocks: no. */
TAND_API int tand_thread_set_inline(int allow);

/* Sends `req` and waits for the reply until timeout_ms (TAND_FOREVER for
** none). Consumes req on every path. Returns the reply's status: 0, the
** server's error (empty_queue, ...), or TAND_ETIMEDOUT (the server skips a
** request it had not started and drops a late reply), TAND_ENOPROC,
** TAND_EBUSY (with TAND_NOWAIT), TAND_ECALLSELF, TAND_ECRASHED,
** TAND_EINVAL (a NULL argument), TAND_ENOMEM.
** `reply` is always filled (zeroed on failure, with a detail in data when
** there is one) and owned by the caller: clear it with tand_msg_clear().
** Messages from one thread to one server are handled in the order sent.
** TAND_ECALLSELF: the server is in the call's causal chain (the servers
** whose handlers wait, on any thread, for the request that makes this
** call), so the call would wait on itself; it fails at once.
** In a pumped runtime a waiting caller pumps the runtime itself when no
** other thread does. Thread: any. Blocks: until the reply or deadline;
** the call may run the server's callback on this thread (above). */
TAND_API int tand_call(tand_server *s, tand_msg *req, tand_msg *reply,
                       int64_t timeout_ms, int flags);

/* ---- asynchronous calls ----------------------------------------------
** For a host with an event loop that must not block a thread on a call.
** A reply box collects the replies of calls sent with tand_call_async();
** its file descriptor becomes readable when a reply is ready, so the box
** fits in poll/epoll/libuv. A box is used by one thread at a time (its
** owner); servers on any thread deliver into it. Deadlines are those of
** tand_call(): a server skips a call past its deadline, a reply that
** comes after it is a TAND_ETIMEDOUT, and a call whose deadline passes
** with no reply is taken as one; tand_replies_timeout_ms() says how
** long the owner's loop may sleep (the descriptor does not turn readable
** at a deadline). In a pumped runtime, replies arrive
** while the host pumps. */
typedef struct tand_replies tand_replies;

/* Creates an empty box; the caller owns it and frees it with
** tand_replies_free(). 0, or TAND_EINVAL (out NULL), TAND_ENOMEM,
** TAND_ESYSTEM when no pipe can be made; *out is NULL on failure.
** Thread: any (the creator is the first owner). Blocks: no. */
TAND_API int tand_replies_new(tand_replies **out);

/* Frees the box. Calls still running are abandoned as if their deadline
** had passed (the servers drop their replies), and replies not yet taken
** are freed. NULL is fine. Thread: the owner. Blocks: no. */
TAND_API void tand_replies_free(tand_replies *box);

/* Abandons the calls in flight and frees the replies not yet taken, as
** tand_replies_free() does, but keeps the box: its descriptor stays
** valid and is made readable, so a loop polling it wakes. A reply being
** written at that moment may still come in. NULL is fine.
** Thread: the owner. Blocks: no. */
TAND_API void tand_replies_cancel(tand_replies *box);

/* The descriptor to poll for reading: readable while a reply waits in the
** box. Owned by the box: read nothing from it, do not close it.
** Thread: any. Blocks: no. */
TAND_API int tand_replies_fd(const tand_replies *box);

/* Sends `req` like tand_call() without waiting: the reply goes to box
** under `tag`. Consumes req on every path. 0 when the call is on its way
** (then exactly one reply, possibly TAND_ETIMEDOUT or TAND_ENOPROC, will
** be taken from the box), or an error and nothing is in the box:
** TAND_EINVAL, TAND_ENOPROC, TAND_EBUSY (a full mailbox with TAND_NOWAIT),
** TAND_ETIMEDOUT (no room before the deadline), TAND_ENOMEM. A handler
** may call its own server this way. Thread: the box's owner.
** Blocks: only on a full mailbox without TAND_NOWAIT. */
TAND_API int tand_call_async(tand_server *s, tand_msg *req,
                             int64_t timeout_ms, int flags,
                             tand_replies *box, uint64_t tag);

/* Takes one finished call: returns 1 with its tag and reply (the reply's
** status is the call's; clear it with tand_msg_clear()), or 0 when none
** is ready (then *reply is zeroed; also for NULL arguments). A call
** whose deadline has passed is taken as a reply with status
** TAND_ETIMEDOUT. Thread: the owner. Blocks: no. */
TAND_API int tand_replies_take(tand_replies *box, uint64_t *tag,
                               tand_msg *reply);

/* Milliseconds until the earliest deadline of the calls in flight (0 when
** one has passed), or -1 when none has a deadline: the longest the owner
** should sleep in poll. Thread: the owner. Blocks: no. */
TAND_API int64_t tand_replies_timeout_ms(tand_replies *box);

/* The number of calls sent and not yet taken. Thread: the owner.
** Blocks: no. */
TAND_API size_t tand_replies_count(const tand_replies *box);

/* Waits until tand_replies_take() would return a call, or timeout_ms: 0,
** TAND_ETIMEDOUT, or TAND_EINVAL for NULL. For hosts without a loop of
** their own; it does not pump a pumped runtime. Thread: the owner.
** Blocks: up to timeout_ms. */
TAND_API int tand_replies_wait(tand_replies *box, int64_t timeout_ms);

/* From a handler of `self`: sends `req` to `to` like tand_call() without
** waiting; the reply comes back later to self's handle_reply under
** `tag`, between two of self's messages (OTP's gen_server:send_request),
** so a server asks another without holding its own callers up. Consumes
** req on every path. The deadline is timeout_ms from now: the callee
** skips a request past it, and at the deadline self gets TAND_ETIMEDOUT
** even if the callee never answers. 0 when the request is on its way
** (then exactly one reply comes, unless self ends first: its requests in
** flight are then abandoned), or an error and no reply will come:
** TAND_EINVAL (NULL, not on a handler of self, or a behaviour without
** handle_reply), TAND_ENOPROC (`to` has ended, or self is stopping),
** TAND_EBUSY (to's mailbox is full: this
** never waits), TAND_ENOMEM. `to` may be self.
** Thread: a handler of self (not its init). Blocks: no. */
TAND_API int tand_send_request(tand_server *self, tand_server *to,
                               tand_msg *req, int64_t timeout_ms,
                               uint64_t tag);

/* Sends a message with no reply: handled by handle_cast. Consumes msg on
** every path. Waits for room in a full mailbox until timeout_ms unless
** TAND_NOWAIT (or sent from the server's own handler). 0 when queued, or
** TAND_EINVAL, TAND_ENOPROC, TAND_EBUSY (full, not waiting),
** TAND_ETIMEDOUT (no room in time), TAND_ENOMEM.
** Thread: any. Blocks: only on a full mailbox. */
TAND_API int tand_cast(tand_server *s, tand_msg *msg, int64_t timeout_ms,
                       int flags);

/* Like tand_cast, but the server gets the message in handle_info (an
** unexpected message). Same results, ownership and waiting.
** Thread: any. Blocks: only on a full mailbox. */
TAND_API int tand_send(tand_server *s, tand_msg *msg, int64_t timeout_ms,
                       int flags);

/* Answers a call deferred with TAND_NOREPLY, from any thread (OTP's
** gen_server:reply). A tand_from is a name, not memory: it may be copied
** and kept anywhere, and stays harmless once its call is answered.
** Consumes reply on every path. Returns 0 when the reply is on its way;
** TAND_ETIMEDOUT when the caller had already given up (the reply is
** dropped); TAND_EANSWERED when `from` names no call waiting for an
** answer: it was answered already (by tand_reply, or by handle_call
** returning a reply), or its server ended or was killed, which answers
** every caller; TAND_ENOPROC from a handler of a killed server that
** still runs; TAND_EINVAL for NULL. A handler may answer its current
** call this way and then return TAND_NOREPLY (a reply returned after
** that is dropped), and may hand `from` to another thread before it
** returns; a `from` answered while its server stops or is killed is
** answered exactly once, by whichever comes first.
** With a journal a reply is sent only after the batch that the server
** runs when it gets the reply commits (its effects and those before it
** are then durable): from a handler of the server, its current batch;
** from another thread, the reply is handed to the server, which sends
** it after its next batch's commit (0 means handed over; a caller that
** gave up meanwhile is not told apart). If that server crashes or is
** killed first, the caller gets its crash instead.
** Thread: any. Blocks: no (briefly takes a process-wide lock that only
** tand_reply and the ends of servers take). */
TAND_API int tand_reply(tand_from *from, tand_msg *reply);

/* ---- journals -------------------------------------------------------- */

/* A server started with a journal keeps its state in an SQLite database
** at that path (inspect it with the sqlite3 shell). The engine wraps each
** batch of messages in one transaction and holds the batch's replies,
** deferred ones included, until it has committed: a reply is sent only
** after its effect is durable (group commit). If a write or the commit
** fails, the batch is rolled back, its callers get TAND_EJOURNAL and the
** server stops with TAND_EJOURNAL, so its last durable state is the one a
** restart resumes from. A journal is refused, untouched, when it is not a
** tand journal, is corrupt or truncated (not whole pages, or not as many
** as its header says), was written by another format version or belongs
** to another kind of server (TAND_EJOURNAL).
** One server at a time holds a journal, across processes: a start on a
** path that a living server holds (here or in another process, by any
** spelling of the path) fails at once with TAND_EJOURNALLOCKED
** ("journal_locked"), naming the path and changing nothing; of servers
** racing to create a new journal exactly one wins and the others get
** TAND_EJOURNALLOCKED. The hold is made of POSIX record locks (a byte
** of tand's own and SQLite's exclusive lock: a local file system is
** needed), taken at start and kept until the server ends or its process
** dies. Anything else that opens the file while it is held (the sqlite3
** shell) is told "database is locked"; and a process holding a journal
** must not open and close the file itself, since closing any descriptor
** of a file drops the process's locks on it.
** The functions below may only be called from the server's own callbacks
** (init included, on tand_server_start()'s thread): "Thread: the
** server's". */
typedef struct tand_journal tand_journal;

/* The server's journal (borrowed; closed when the server ends), or NULL
** without one. Thread: the server's. Blocks: no. */
TAND_API tand_journal *tand_server_journal(tand_server *self);

/* Makes the message being handled a batch of its own: what the batch
** holds so far (the earlier messages' changes) is committed now and their
** held replies sent, and the batch is committed again right after this
** message, before the next one is taken. For a change that must not share
** a transaction with its neighbours (a policy's code reload). 0, also
** without a journal; a failed commit is TAND_EJOURNAL (or the commit's
** error) and stops the server, as any failed commit does.
** With a journal, TAND_EINVAL from anywhere else (another thread, init,
** handle_reply, terminate, handle_idle), changing nothing.
** Thread: the server's, inside handle_call, handle_cast or handle_info.
** Blocks: while the commit runs. */
TAND_API int tand_server_own_batch(tand_server *self);

/* 1 when this start created the journal (nothing to resume; it stays 1
** for the server's life), else 0, also for NULL.
** Thread: the server's. Blocks: no. */
TAND_API int tand_journal_fresh(const tand_journal *j);

/* Named values: integers and byte strings, written in the current
** batch's transaction (a set replaces the key's value). *found says
** whether the key exists (*v is untouched when not). 0, or TAND_EINVAL
** for NULL arguments or a blob over INT32_MAX bytes, TAND_EJOURNAL when
** SQLite fails (the batch then fails as a whole, see above, and its later
** writes fail at once) or get_int finds no integer, TAND_ENOMEM.
** Thread: the server's. Blocks: on the disk. */
TAND_API int tand_journal_set_int(tand_journal *j, const char *key,
                                  int64_t v);
TAND_API int tand_journal_get_int(tand_journal *j, const char *key,
                                  int64_t *v, int *found);
TAND_API int tand_journal_set_blob(tand_journal *j, const char *key,
                                   const void *p, size_t n);
/* *out gets a malloc'ed copy the caller frees; NULL (and *n 0) for an
** empty or missing value and on failure. */
TAND_API int tand_journal_get_blob(tand_journal *j, const char *key,
                                   char **out, size_t *n, int *found);

/* A journaled FIFO of distinct numbers (a ticket queue): push appends at
** the back (a number already queued is a journal error), remove deletes a
** number wherever it is (an absent one is no error), clear empties it.
** queue_load calls fn(ud, number) for each, front first, and stops at the
** first non-zero return, which it returns. Otherwise results as for the
** named values (TAND_EINVAL for NULL j or fn).
** Thread: the server's. Blocks: on the disk. */
TAND_API int tand_journal_queue_push(tand_journal *j, int64_t number);
TAND_API int tand_journal_queue_remove(tand_journal *j, int64_t number);
TAND_API int tand_journal_queue_clear(tand_journal *j);
TAND_API int tand_journal_queue_load(tand_journal *j,
                                     int (*fn)(void *ud, int64_t number),
                                     void *ud);

/* ---- monitors --------------------------------------------------------- */

/* Asks to be told when `watched` ends: `watcher` then gets an info message
** with op TAND_OP_DOWN, ival[0] = tag, ival[1] = the reason (0 for a
** normal stop, or a TAND_E* code) and data = the detail text or NULL.
** The notice is never refused for a full mailbox (room is reserved now);
** it is dropped if the watcher has ended. If `watched` has ended already,
** the notice comes at once with reason TAND_ENOPROC. The monitor holds a
** reference on watcher until then; it cannot be cancelled. 0, or
** TAND_EINVAL (NULL), TAND_ENOMEM, and then nothing is changed.
** Thread: any. Blocks: no. */
TAND_API int tand_monitor(tand_server *watched, tand_server *watcher,
                          int64_t tag);

/* Cancels the monitor that tand_monitor(watched, watcher, tag) set: 0,
** or TAND_ENOPROC when there is none (watched has ended: its notice may
** already be in watcher's mailbox, so a watcher that cancels drops the
** notices of tags it cancelled, as OTP's demonitor with flush does), or
** TAND_EINVAL (NULL). The reference on watcher and the room kept for the
** notice are given back. Thread: any. Blocks: no. */
TAND_API int tand_demonitor(tand_server *watched, tand_server *watcher,
                            int64_t tag);

/* Like tand_monitor, but the notice is a reply in `box` under `tag`, as
** an asynchronous call's with no deadline: its status is the reason (0
** for a normal stop, TAND_ENOPROC if watched had ended already) and its
** data the detail text or NULL. Until then it is a call in flight of the
** box: tand_replies_cancel() and tand_replies_free() give it up. 0, or
** TAND_EINVAL (NULL), TAND_ENOMEM, and then nothing is changed.
** Thread: the box's owner. Blocks: no. */
TAND_API int tand_monitor_async(tand_server *watched, tand_replies *box,
                                uint64_t tag);

/* ---- supervisors ------------------------------------------------------ */

enum { TAND_ONE_FOR_ONE, TAND_ONE_FOR_ALL, TAND_REST_FOR_ONE };
enum {
    TAND_PERMANENT, /* restarted whenever it ends */
    TAND_TRANSIENT, /* restarted when it ends abnormally */
    TAND_TEMPORARY  /* never restarted */
};

/* One supervised child. `start` starts an incarnation registered under
** `name` (it runs on the supervisor's thread); `arg` is handed to the
** supervisor, which calls free_arg(arg), if not NULL, exactly once: when
** the child's spec is deleted (tand_supervisor_delete_child, a temporary
** child's end) or the supervisor ends, or on the failure paths below.
** A child's name is how the supervisor's operations find it. */
typedef struct tand_child_spec {
    const char *name; /* copied */
    int restart;      /* TAND_PERMANENT (default), ... */
    int (*start)(tand_runtime *rt, const char *name, void *arg,
                 tand_server **out);
    void *arg;
    void (*free_arg)(void *arg);
} tand_child_spec;

/* tand_supervisor_options.max_restarts: no restart is allowed (OTP's
** intensity 0): the first child that ends ends the supervisor. */
#define TAND_NO_RESTARTS (-1)

typedef struct tand_supervisor_options {
    int strategy;            /* TAND_ONE_FOR_ONE (0, default), ... */
    int max_restarts;        /* restarts allowed within max_seconds, 1 to
                             ** 1000000; 0: the default 3;
                             ** TAND_NO_RESTARTS: none */
    int64_t max_seconds;     /* the window, > 0; 0: the default 5 */
    const char *name;        /* register the supervisor, or NULL */
} tand_supervisor_options;

/* Fills *o (not NULL) with the defaults: one_for_one, 3 restarts in 5
** seconds (Elixir's), no name; a zeroed struct means the same. Cannot
** fail. Thread: any. Blocks: no. */
TAND_API void tand_supervisor_options_init(tand_supervisor_options *o);

/* Starts a supervisor, a server that starts the children in order and
** restarts them by its strategy when they end, as OTP's supervisor does:
** a permanent child whenever it ends, a transient one when it ends
** abnormally (after a normal end its spec is kept, not running), a
** temporary one never (its spec is deleted when it ends). one_for_one
** restarts the one; one_for_all stops the others (in reverse order),
** deletes the temporary ones among them and starts the rest in order,
** those that were not running too; rest_for_one does that for the
** children after it in the current child list (which the operations
** below change).
** A restart that fails is tried again at once, each try counting as a
** restart; more than max_restarts within max_seconds and it gives up:
** it stops its children and ends with TAND_ECRASHED.
** Stopping the supervisor (tand_server_stop) stops its children in
** reverse order first. Each incarnation's stats count its restarts.
** `o` may be NULL for the defaults. *out gets a reference the caller
** releases. On failure (TAND_EINVAL, TAND_ECONFIG for a bad option or
** child spec, a child's start error, a tand_server_start() error) nothing
** is left running, free_arg has been called for every child, and *out
** is NULL.
** Thread: any but a pumped runtime's pump. Blocks: while children start. */
TAND_API int tand_supervisor_start(tand_runtime *rt,
                                   const tand_supervisor_options *o,
                                   const tand_child_spec *children,
                                   size_t nchildren, tand_server **out);

/* The dynamic operations (OTP's which_children, start_child,
** terminate_child, restart_child, delete_child, count_children) are
** calls into the supervisor `sup`, handled between its other messages.
** Each returns 0 or: TAND_EINVAL (a NULL argument, a name that is empty
** or longer than TAND_NAME_MAX, or `sup` is not a supervisor: see
** tand_server_is_supervisor), TAND_ENOPROC (the supervisor has ended,
** or has not started its first children yet: a name it registers is
** visible meanwhile), TAND_ETIMEDOUT (no reply within timeout_ms, the
** deadline of tand_call; the operation may have been done or not:
** which_children tells), TAND_ECALLSELF (called from the supervisor's
** own thread, a child's start function included), TAND_ENOMEM, or as
** each says. On failure out-parameters are zeroed or NULL.
** Thread: any but the supervisor's own, and in a pumped runtime not its
** pump (as tand_supervisor_start). Blocks: until the reply or
** timeout_ms; the supervisor meanwhile starts or stops (waiting up to
** 5 s for its end) the child concerned. */

/* 1 when s is a supervisor (made by tand_supervisor_start), else 0, also
** for NULL; whether it has ended does not matter.
** Thread: any. Blocks: no. */
TAND_API int tand_server_is_supervisor(const tand_server *s);

/* One child as tand_supervisor_which_children() lists it. */
typedef struct tand_child_info {
    char name[TAND_NAME_MAX + 1]; /* NUL-terminated */
    int restart;       /* TAND_PERMANENT, TAND_TRANSIENT, TAND_TEMPORARY */
    int alive;         /* 1 while an incarnation of it runs */
    uint64_t restarts; /* times the supervisor restarted it by its
                       ** strategy (not tand_supervisor_restart_child) */
} tand_child_info;

/* OTP's count_children. */
typedef struct tand_child_counts {
    size_t specs;       /* children kept, running or not */
    size_t active;      /* of them, running */
    size_t supervisors; /* of them, those whose last incarnation was a
                        ** supervisor (tand_server_is_supervisor) */
    size_t workers;     /* the others */
} tand_child_counts;

/* Lists the children in start order (the order of the child list) into
** out[0..cap-1]; *count gets how many there are, also when that is more
** than cap (only cap are written, as snprintf does). out may be NULL
** when cap is 0. Errors as above (count NULL, or out NULL with cap > 0:
** TAND_EINVAL); *count is 0 on failure.
** Thread: any but the supervisor's own (and a pumped runtime's pump).
** Blocks: until the supervisor's reply or the deadline. */
TAND_API int tand_supervisor_which_children(tand_server *sup,
                                            tand_child_info *out,
                                            size_t cap, size_t *count,
                                            int64_t timeout_ms);

/* Appends *spec to the child list and starts the child (read during the
** call only; spec->name is copied). spec->arg is the supervisor's from
** the call on, on every path: free_arg is called exactly once, here on
** a failure before or instead of the handling (a NULL sup or bad spec,
** a deadline that passed before the supervisor took the spec, a
** supervisor that had ended), else by the supervisor (at once if the
** child is not kept). *out, when not NULL, gets a reference to the new
** incarnation, which the caller releases. 0, or besides the above:
** TAND_ECONFIG (a bad spec: no name, no start, a bad restart type; or
** the supervisor has 100000 children already),
** TAND_ESTARTED (a child of that name is running), TAND_EPRESENT (a
** child of that name is kept, not running), or the start's error (the
** child's name taken by another server: TAND_ENAMETAKEN), and then
** nothing is kept.
** Thread: any but the supervisor's own (and a pumped runtime's pump).
** Blocks: until the supervisor's reply or the deadline. */
TAND_API int tand_supervisor_start_child(tand_server *sup,
                                         const tand_child_spec *spec,
                                         tand_server **out,
                                         int64_t timeout_ms);

/* Stops the child `name` with reason "shutdown" (a normal stop: it is
** not restarted) and waits for its end; its spec is kept, not running,
** but a temporary child's is deleted (free_arg), as in OTP. 0, also when
** it was not running; TAND_ENOTFOUND for no such child.
** Thread: any but the supervisor's own (and a pumped runtime's pump).
** Blocks: until the supervisor's reply or the deadline. */
TAND_API int tand_supervisor_terminate_child(tand_server *sup,
                                             const char *name,
                                             int64_t timeout_ms);

/* Starts the kept child `name` that is not running. A restart by hand:
** it counts neither toward the restart intensity nor in the child's
** restarts. *out, when not NULL, gets a reference to the new incarnation.
** 0, or TAND_ERUNNING (it runs), TAND_ENOTFOUND, or the start's error
** (the spec stays kept, not running).
** Thread: any but the supervisor's own (and a pumped runtime's pump).
** Blocks: until the supervisor's reply or the deadline. */
TAND_API int tand_supervisor_restart_child(tand_server *sup,
                                           const char *name,
                                           tand_server **out,
                                           int64_t timeout_ms);

/* Deletes the spec of the child `name` that is not running: free_arg is
** called, on the supervisor's thread. 0, TAND_ERUNNING (it runs),
** TAND_ENOTFOUND.
** Thread: any but the supervisor's own (and a pumped runtime's pump).
** Blocks: until the supervisor's reply or the deadline. */
TAND_API int tand_supervisor_delete_child(tand_server *sup, const char *name,
                                          int64_t timeout_ms);

/* Fills *out with OTP's counts of the children. Errors as above; *out is
** zeroed on failure.
** Thread: any but the supervisor's own (and a pumped runtime's pump).
** Blocks: until the supervisor's reply or the deadline. */
TAND_API int tand_supervisor_count_children(tand_server *sup,
                                            tand_child_counts *out,
                                            int64_t timeout_ms);

/* ---- cluster ---------------------------------------------------------- */

/* Machines shared by many hosts (processes, usually on several machines)
** through NATS JetStream: each host opens the cluster and starts the same
** machine with the same options; one host owns it and runs it, the
** others' calls reach it over NATS. Ownership is exclusive by the fence
** of the machine's JetStream stream alone: every batch of the owner is
** appended expecting the stream's last entry, so a host that lost the
** machine (a pause past its lease, a partition) has its first batch
** refused and answers its callers TAND_ENOTOWNER ("not_owner"), never
** from a stale state. A lease in a JetStream KV bucket (lease_ms, its
** max age) only picks which host tries to own it. When the owner dies
** another host that started the machine takes over within about lease_ms
** (plus a second), resuming from the stream. Durability: a batch is
** acknowledged once a majority of the stream's replicas have it (what
** nats-server 2.9 gives), then its replies are sent. Built only with
** libnats; without it every function here gives TAND_ECLUSTER
** ("cluster_unavailable"). */
typedef struct tand_cluster tand_cluster;
typedef struct tand_cluster_machine tand_cluster_machine;

typedef struct tand_cluster_options {
    const char *servers; /* NATS URLs, comma-separated */
    const char *host;    /* this host's name: unique in the cluster */
    int64_t lease_ms;    /* 100..3600000; 3000 by default */
    int replicas;        /* copies of streams and leases, 1..5; 1 */
    int64_t timeout_ms;  /* for NATS requests and appends; 2000 */
    char *error;         /* a message on failure, or NULL */
    size_t error_size;
} tand_cluster_options;

/* Fills *o with the defaults. Thread: any. Blocks: no. */
TAND_API void tand_cluster_options_init(tand_cluster_options *o);

/* Connects to the NATS servers and joins the cluster as o->host, starting
** this host's two threads (leases and takeovers; NATS calls to the
** machines it owns). 0, or TAND_EINVAL, TAND_ECONFIG (a bad option, or
** options other hosts gave otherwise: the lease bucket's lease_ms or
** replicas), TAND_ECLUSTER (the servers cannot be reached or used: why
** in o->error), TAND_ENOMEM, TAND_ESYSTEM.
** Thread: any. Blocks: while it connects. */
TAND_API int tand_cluster_open(tand_runtime *rt, const tand_cluster_options *o,
                               tand_cluster **out);

/* Stops the machines this host runs (their last batches appended, so the
** next owner resumes them; their leases expire), leaves the cluster and
** frees c. Handles to its machines answer TAND_ECLUSTER after it.
** Thread: any but c's own. Blocks: while the machines stop. */
TAND_API void tand_cluster_close(tand_cluster *c);

enum { TAND_OWNER_ANY = 0, TAND_OWNER_NEVER = 1 };

/* A clustered machine as this host starts it. When this host comes to own
** it, start(rt, name, arg, &s, err, err_size) starts the machine: it must
** start one server registered as name, with no journal of its own (the
** cluster's takes that place), and on failure may say why in err (what
** tand_cluster_error gives then); kind is its behaviour's name ("deluxe", "counter",
** "policy"), checked against the stream's. config is the machine's
** options as text (up to TAND_CLUSTER_CONFIG_MAX bytes; NULL is ""),
** which every host gives alike: a host whose config is not the one the
** machine's owner runs it with is refused (TAND_ECONFIG, both in the
** error); while nobody owns it, the next owner's stands. owner
** TAND_OWNER_NEVER makes this host only a client. arg is the cluster's
** from the call on: freed by free_arg (if not NULL) when the handle is
** released, or at once on failure. */
#define TAND_CLUSTER_CONFIG_MAX 2048
typedef struct tand_cluster_machine_options {
    const char *name; /* 1..TAND_NAME_MAX bytes */
    const char *kind;
    const char *config;
    int owner;        /* TAND_OWNER_ANY (0) or TAND_OWNER_NEVER */
    int (*start)(tand_runtime *rt, const char *name, void *arg,
                 tand_server **out, char *err, size_t err_size);
    void *arg;
    void (*free_arg)(void *arg);
    char *error;
    size_t error_size;
} tand_cluster_machine_options;

/* Starts a clustered machine on this host: a handle to it, whoever owns
** it. 0, or TAND_EINVAL, TAND_ENAMETAKEN (started on this host already),
** TAND_ECONFIG (its stream exists with other replicas, or its owner runs
** it with another config), TAND_ECLUSTER, TAND_ENOMEM. Thread: any.
** Blocks: while its stream is made and its owner looked up. */
TAND_API int tand_cluster_start(tand_cluster *c,
                                const tand_cluster_machine_options *o,
                                tand_cluster_machine **out);

/* A handle to a machine some host started (this one only calls it):
** TAND_ENOPROC if none ever did. Thread: any. Blocks: a NATS request. */
TAND_API int tand_cluster_whereis(tand_cluster *c, const char *name,
                                  tand_cluster_machine **out, char *err,
                                  size_t n);

/* tand_call on the machine: on this host's own server when it owns the
** machine, else over NATS to its owner with the deadline carried along.
** The same results as tand_call's, and TAND_ENOTOWNER (the owner was
** deposed: the call was not applied), TAND_ETIMEDOUT (no answer in time,
** or no owner within it: the outcome is unknown), TAND_ECLUSTER.
** Consumes req. Thread: any. Blocks: until the reply or the deadline. */
TAND_API int tand_cluster_call(tand_cluster_machine *m, tand_msg *req,
                               tand_msg *reply, int64_t timeout_ms);

/* tand_call_async on the machine: the reply goes to box under tag, as
** for a server (the same results, and TAND_ENOTOWNER, TAND_ECLUSTER). On
** this host's own server when it owns the machine (a full mailbox is
** TAND_EBUSY: it never waits for room), else a NATS request to its owner,
** sent again while nobody owns the machine until the deadline; closing
** the cluster answers what is in flight TAND_ECLUSTER. Consumes req.
** Thread: the box's owner. Blocks: no. */
TAND_API int tand_cluster_call_async(tand_cluster_machine *m, tand_msg *req,
                                     int64_t timeout_ms, tand_replies *box,
                                     uint64_t tag);

/* tand_cast (info 0) or tand_send (info 1) on the machine: to this
** host's own server when it owns the machine (a full mailbox is
** TAND_EBUSY), else published over NATS to its owner, whose full mailbox
** drops it. As with OTP's cast to another node, nothing says whether it
** arrived: one sent while nobody owns the machine (a takeover) is lost.
** 0, or TAND_EINVAL, TAND_EBUSY, TAND_ECLUSTER (closed, or NATS refused
** it), TAND_ENOMEM. Consumes msg. Thread: any. Blocks: no. */
TAND_API int tand_cluster_cast(tand_cluster_machine *m, tand_msg *msg,
                               int info);

/* The host that owns the machine now and its epoch (the lease's: larger
** at each takeover). 0, or TAND_ENOPROC when nobody does.
** Thread: any. Blocks: a NATS request. */
TAND_API int tand_cluster_owner(tand_cluster_machine *m, char *host,
                                size_t size, uint64_t *epoch);

/* Why this host's last try to take the machine over failed (its log could
** not be replayed or fenced, or its start failed; such a try is made again
** every lease_ms / 4 while this host holds the lease), copied into buf (n
** bytes): 1, or 0 with buf "" when the last try did not fail or none was
** made. Thread: any. Blocks: no. */
TAND_API int tand_cluster_error(tand_cluster_machine *m, char *buf,
                                size_t n);

/* Drops the handle. Thread: any. Blocks: no. */
TAND_API void tand_cluster_machine_release(tand_cluster_machine *m);

/* The machine record's id in this process: never 0, never reused while
** the process runs, for a handle to travel in a message between threads
** (tand_pack_cluster_handle). Thread: any. Blocks: no. */
TAND_API uint64_t tand_cluster_machine_id(const tand_cluster_machine *m);

/* A new reference to the machine record of that id (release it with
** tand_cluster_machine_release): 0, or TAND_ENOPROC when no handle keeps
** it any more, TAND_EINVAL (out NULL). Thread: any. Blocks: no. */
TAND_API int tand_cluster_machine_find(uint64_t id,
                                       tand_cluster_machine **out);

/* ---- registry -------------------------------------------------------- */

/* Registers a running server under `name` (copied; 1 to TAND_NAME_MAX
** bytes). A server has at most one name: 0 if it has this one already,
** TAND_EINVAL if another (or for a bad argument). TAND_ENAMETAKEN if
** another server has it, TAND_ENOPROC if s is stopping, TAND_ENOMEM; on
** failure nothing is changed. The name is dropped when the server ends.
** Thread: any. Blocks: no. */
TAND_API int tand_register(tand_server *s, const char *name);

/* Drops a name (the server keeps running and may register another): 0,
** TAND_ENOPROC if it was not registered, TAND_EINVAL for NULL.
** Thread: any. Blocks: no. */
TAND_API int tand_unregister(tand_runtime *rt, const char *name);

/* Looks a name up; *out gets a new reference, or NULL on failure:
** TAND_ENOPROC (no server has the name), TAND_EINVAL for NULL arguments.
** Thread: any. Blocks: no. */
TAND_API int tand_whereis(tand_runtime *rt, const char *name,
                          tand_server **out);

/* ---- values: MessagePack --------------------------------------------- */

/* Payloads are MessagePack (msgpack.org): nil, booleans, integers (int64
** range), float64 (float32 is read too), str, bin (read as a string),
** arrays, maps, and ext type TAND_EXT_HANDLE for server handles. Nesting
** deeper than TAND_MAX_DEPTH is refused.
**
** A handle's ext data is 17 to 272 bytes (written as ext 8, or ext 16
** past 255 bytes; ext 32 is read too):
** the server's 8-byte id and its process's 8-byte nonce (both big
** endian), a flags byte (bit 0 TAND_HANDLE_FOLLOWS: the handle follows
** its name, as one from tand.whereis does; bit 1 TAND_HANDLE_CLUSTER: the
** id is a cluster's machine record's, tand_cluster_machine_id(), which
** only this process can use; not both; the other bits 0), then the name's
** bytes
** (0 to TAND_NAME_MAX, no NUL; none: no name). The 8-byte
** form that tand 0.1 wrote (fixext 8: the id alone) is still read, as a
** handle of this process: nonce 0. Any other length, flag or a NUL in
** the name is TAND_EBADMSG.
**
** Server ids restart from 1 in every process, and a value can come back
** in another one (a journaled policy state, a file), so the nonce tells
** this process's ids from others': the Lua binding decodes a handle of
** this process (nonce 0 or tand_process_nonce()) to its server, and one
** of another process to the server its name has here, or, without a
** name, to an ended handle; never to whichever server has its id. */
#define TAND_EXT_HANDLE 1
#define TAND_HANDLE_FOLLOWS 0x01
#define TAND_HANDLE_CLUSTER 0x02
#define TAND_MAX_DEPTH 64

/* This process's nonce: 64 random bits (from the kernel's generator, mixed
** with the pid and the clocks), never 0, taken on the first call and
** taken again in a forked child, which is another process with the same
** server ids. tand_pack_handle() writes it; a host that stores handles
** outside the process (or reads them back) compares with it.
** Thread: any. Blocks: no. */
TAND_API uint64_t tand_process_nonce(void);

/* A growing output buffer owned by its user (usually on the stack). A
** write that fails sets `err` and turns later writes into no-ops, so a
** caller checks once at the end. */
typedef struct tand_buf {
    char *data;
    size_t size, cap;
    int err;
} tand_buf;

/* These apply to each function below, up to tand_pack_raw: b is not
** NULL. tand_buf_init makes it empty (nothing allocated, err 0);
** tand_buf_free frees its bytes and makes it empty again. Each
** tand_pack_* appends one MessagePack item, copying what it is given (an
** array or map header is followed by its n elements, or n key-value
** pairs). On failure it sets err, the first error staying: TAND_ENOMEM
** when the buffer cannot grow, TAND_EBADVALUE for a string over 4 GiB or
** a bad handle name; the bytes are then void (tand_buf_to_msg() returns
** the error). tand_pack_handle writes a handle of this process (its
** tand_process_nonce()) without a name; tand_pack_handle_ex writes the
** id, nonce, name and follows flag given (name_len 0 to TAND_NAME_MAX,
** no NUL; name may be NULL when name_len is 0; follows is a boolean);
** tand_pack_cluster_handle writes a cluster's machine handle of this
** process (machine_id from tand_cluster_machine_id; no name).
** Thread: one at a time per buffer. Blocks: no. */
TAND_API void tand_buf_init(tand_buf *b);
TAND_API void tand_buf_free(tand_buf *b);
TAND_API void tand_pack_nil(tand_buf *b);
TAND_API void tand_pack_bool(tand_buf *b, int v);
TAND_API void tand_pack_int(tand_buf *b, int64_t v);
TAND_API void tand_pack_double(tand_buf *b, double v);
TAND_API void tand_pack_str(tand_buf *b, const char *s, size_t len);
TAND_API void tand_pack_array(tand_buf *b, uint32_t n);
TAND_API void tand_pack_map(tand_buf *b, uint32_t n);
TAND_API void tand_pack_handle(tand_buf *b, uint64_t server_id);
TAND_API void tand_pack_handle_ex(tand_buf *b, uint64_t server_id,
                                  uint64_t nonce, const char *name,
                                  size_t name_len, int follows);
TAND_API void tand_pack_cluster_handle(tand_buf *b, uint64_t machine_id);
/* Appends bytes that already are MessagePack (one or more whole values;
** not checked). */
TAND_API void tand_pack_raw(tand_buf *b, const char *p, size_t n);

/* Moves the buffer's bytes into msg->data and size (freeing what data
** held; NULL for an empty buffer): msg owns them and the buffer is left
** empty, nothing to free. Returns the buffer's error, or 0; on error the
** buffer is freed and msg->data is NULL. Thread: one at a time per
** buffer and message. Blocks: no. */
TAND_API int tand_buf_to_msg(tand_buf *b, tand_msg *msg);

enum {
    TAND_T_NIL,
    TAND_T_BOOL,
    TAND_T_INT,
    TAND_T_FLOAT,
    TAND_T_STR,
    TAND_T_ARRAY,
    TAND_T_MAP,
    TAND_T_HANDLE
};

typedef struct tand_item {
    int type; /* TAND_T_* */
    union {
        int b;
        int64_t i;
        double f;
        struct {
            const char *p; /* points into the payload; not NUL-terminated */
            size_t len;
        } s;
        uint32_t n; /* arrays: elements; maps: pairs (2n items follow) */
        struct {
            uint64_t id;      /* the server's id in its process */
            uint64_t nonce;   /* its process's; 0: this process */
            const char *name; /* into the payload, not NUL-terminated;
                              ** NULL when name_len is 0 (no name) */
            size_t name_len;  /* 0 to TAND_NAME_MAX, no NUL inside */
            int follows;      /* 1: follows its name (TAND_HANDLE_FOLLOWS) */
            int cluster;      /* 1: a cluster's machine (TAND_HANDLE_CLUSTER) */
        } h;
    } v;
} tand_item;

typedef struct tand_reader {
    const char *p, *end;
} tand_reader;

/* A reader over data (borrowed: it must outlive the reader and the items
** read from it; NULL makes an empty reader). Cannot fail.
** Thread: one at a time per reader. Blocks: no. */
TAND_API void tand_reader_init(tand_reader *r, const char *data, size_t size);

/* Reads the next item; the elements of an array or map follow it as the
** next items (not checked here: tand_unpack_check() untrusted data
** first). Returns 0, or TAND_EBADMSG at the end or on bad input, after
** which the reader and *it are unspecified. Strings and handle names in
** *it point into the reader's data. Thread: one at a time per reader.
** Blocks: no. */
TAND_API int tand_unpack(tand_reader *r, tand_item *it);

/* Checks that data holds exactly one well-formed value, nested at most
** TAND_MAX_DEPTH deep, with no unknown types and no trailing bytes.
** 0 or TAND_EBADMSG (also for NULL data). Reads only.
** Thread: any. Blocks: no. */
TAND_API int tand_unpack_check(const char *data, size_t size);

/* ---- the deluxe rules as a plain data structure ---------------------- */

/* The deluxe machine's queue without a server: no threads, no locks, for
** code that already runs serialized (a Lua policy's machine object, or a
** host's own thread). Same rules as the "deluxe" server. For each
** function below: t is not NULL (but for tand_tickets_free), and an
** error changes nothing (*number is left as it was). Queue, serve and
** append are O(log n) expected in the queued tickets; reset, free and
** list are O(n).
** Thread: one at a time per queue. Blocks: no. */
typedef struct tand_tickets tand_tickets;

/* Creates an empty queue over min_number..max_number, owned by the
** caller: 0, TAND_ECONFIG unless min_number < max_number, TAND_ENOMEM,
** TAND_EINVAL for NULL out; *out is NULL on failure.
** tand_tickets_free frees it and its tickets (NULL is fine). */
TAND_API int tand_tickets_new(int64_t min_number, int64_t max_number,
                              tand_tickets **out);
TAND_API void tand_tickets_free(tand_tickets *t);
/* Queues the next number by the deluxe rule (min_number when empty, else
** one above the highest queued, or the smallest free number once that is
** max_number) at the back, into *number: 0, or TAND_EFULL when every
** number of the range is queued, TAND_ENOMEM. */
TAND_API int tand_tickets_queue(tand_tickets *t, int64_t *number);
/* Removes the front, or *priority when not NULL, into *number: 0, or
** TAND_EEMPTY (even with a priority), TAND_ENOTQUEUED. */
TAND_API int tand_tickets_serve(tand_tickets *t, const int64_t *priority,
                                int64_t *number);
/* Empties the queue (the bounds stay); how many numbers are queued; the
** bounds (both pointers not NULL). Cannot fail. */
TAND_API void tand_tickets_reset(tand_tickets *t);
TAND_API uint64_t tand_tickets_count(const tand_tickets *t);
TAND_API void tand_tickets_bounds(const tand_tickets *t, int64_t *min_number,
                                  int64_t *max_number);
/* Copies up to `max` queued numbers into out, front first; returns how
** many. */
TAND_API size_t tand_tickets_list(const tand_tickets *t, int64_t *out,
                                  size_t max);
/* Appends a given number at the back (restoring a saved queue): 0,
** TAND_EINVAL outside the range or already queued, TAND_ENOMEM. */
TAND_API int tand_tickets_append(tand_tickets *t, int64_t number);
/* Answers req as the "deluxe" server does, on t: by op code
** (TAND_OP_QUEUE_NEW_NUMBER .. TAND_OP_RESET_STATE) or encoded {op,
** args...}, with the same replies and errors, report_state showing
** auto_shutdown_ms (encoded as in tand_deluxe_options: 0 or TAND_FOREVER
** for never, shown as infinity; TAND_SHUTDOWN_AT_ONCE shown as 0) as its
** auto_shutdown_timeout. With j not NULL each change is journaled as that server
** journals it (for a host that runs its own batches: see
** tand_journal_*). With reply NULL, req is a cast (only reset_state
** acts). req stays the caller's; reply is filled as a handler's. */
TAND_API void tand_tickets_handle(tand_tickets *t, tand_journal *j,
                                  int64_t auto_shutdown_ms,
                                  const tand_msg *req, tand_msg *reply);

/* ---- the built-in ticket machines ------------------------------------ */

/* Request codes of the built-in machines (tand_msg.op). op 0 carries a
** MessagePack array [op_name, args...] in data and is answered with an
** array of results in data. The codes 1 to 6 are the built-in machines'
** and TAND_OP_RESERVED_FIRST to _LAST are tand's own (DOWN notices,
** supervisors' and policy servers' internal calls): a behaviour of its
** own may use any other positive code. */
enum {
    TAND_OP_ENCODED = 0,
    TAND_OP_QUEUE_NEW_NUMBER = 1, /* reply ival[0] = the number */
    TAND_OP_SERVE_NEXT = 2,  /* ival[1] != 0: ival[0] is a priority number */
    TAND_OP_REPORT_STATE = 3, /* reply data = [map of the state] */
    TAND_OP_RESET_STATE = 4,  /* a cast */
    TAND_OP_NEXT = 5,   /* data = the caller (any value); reply ival[0] */
    TAND_OP_REPORT = 6, /* reply ival[0] = current, data = last caller */
    TAND_OP_DOWN = 100, /* an info: a monitored server ended */
    TAND_OP_SUPERVISOR_INIT = 101, /* internal: a supervisor starts up */
    TAND_OP_RELOAD = 102, /* internal: a policy server loads new code */
    TAND_OP_RESERVED_FIRST = 100,
    TAND_OP_RESERVED_LAST = 127
};

/* auto_shutdown_ms of the deluxe and policy options: stop at the first
** moment the machine is idle (the Lua option auto_shutdown_timeout = 0).
** 0 and TAND_FOREVER mean never. */
#define TAND_SHUTDOWN_AT_ONCE INT64_C(-2)

typedef struct tand_deluxe_options {
    int64_t min_number, max_number; /* min_number < max_number; both 0
                                    ** (default): 1..INT64_MAX */
    int64_t auto_shutdown_ms;       /* stop after this many ms idle, > 0;
                                    ** 0 (default) or TAND_FOREVER: never;
                                    ** TAND_SHUTDOWN_AT_ONCE: at the first
                                    ** idle moment */
    const char *name;               /* or NULL */
    size_t mailbox_capacity;        /* 0: default */
    const char *journal;            /* resume from / keep state here */
    int durability;                 /* TAND_DURABLE_FULL (0) or _OS */
    char *error;                    /* a failed start says why here */
    size_t error_size;
} tand_deluxe_options;

/* Fills *o (not NULL) with the defaults: all zero, that is numbers
** 1..INT64_MAX, no auto shutdown, no name, the default mailbox, no
** journal, TAND_DURABLE_FULL. Cannot fail. Thread: any. Blocks: no. */
TAND_API void tand_deluxe_options_init(tand_deluxe_options *o);

/* Starts a "deluxe" ticket machine (with o->journal, resuming from it
** when the file holds a journal, and holding it: see "journals");
** `o` is read during the call only and *out gets
** a reference the caller releases. TAND_ECONFIG for bounds that are not
** min < max (but both 0), an auto_shutdown_ms below TAND_SHUTDOWN_AT_ONCE,
** or a journal of another range; TAND_EINVAL for NULL arguments (o->error
** untouched then, as for a NULL o) or a bad option of tand_server_start
** (a name, a mailbox capacity, a durability); else as
** tand_server_start(). Every failure with o not NULL says why in
** o->error. Thread: any. Blocks: while a journal opens and loads. */
TAND_API int tand_deluxe_start(tand_runtime *rt, const tand_deluxe_options *o,
                               tand_server **out);

typedef struct tand_counter_options {
    int64_t initial_number;   /* 0 by default */
    const char *name;         /* or NULL */
    size_t mailbox_capacity;  /* 0: default */
    const char *journal;      /* resume from / keep state here */
    int durability;           /* TAND_DURABLE_FULL (0) or _OS */
    char *error;              /* a failed start says why here */
    size_t error_size;
} tand_counter_options;

/* Fills *o (not NULL) with the defaults: all zero (the counter starts at
** 0). Cannot fail. Thread: any. Blocks: no. */
TAND_API void tand_counter_options_init(tand_counter_options *o);

/* Starts a "counter" machine: TAND_OP_NEXT replies the current number and
** records the caller; TAND_OP_REPORT replies both. It resumes from
** o->journal when that file holds a journal (and holds it: see
** "journals"); `o` is read during the call only
** and *out gets a reference the caller releases. TAND_EINVAL for NULL
** arguments (o->error untouched) or a bad option, else as
** tand_server_start(); every failure with o not NULL says why in
** o->error. Thread: any. Blocks: while a journal opens and loads. */
TAND_API int tand_counter_start(tand_runtime *rt,
                                const tand_counter_options *o,
                                tand_server **out);

/* Convenience calls on the built-in machines (and policies, which speak
** their ops): tand_call with TAND_OP_QUEUE_NEW_NUMBER, or with
** TAND_OP_SERVE_NEXT and the priority number when `priority` is not
** NULL. Each returns the call's status (0, TAND_EFULL, TAND_EEMPTY,
** TAND_ENOTQUEUED, TAND_EBADREQ from a server without these ops, or a
** tand_call error); *number, when not NULL, is set on success only.
** Thread: any but the server's own. Blocks: until the reply or
** timeout_ms. */
TAND_API int tand_deluxe_queue(tand_server *s, int64_t *number,
                               int64_t timeout_ms);
TAND_API int tand_deluxe_serve(tand_server *s, const int64_t *priority,
                               int64_t *number, int64_t timeout_ms);

/* ---- Lua policies ----------------------------------------------------
** A policy is a deluxe machine whose handle_call (and cast, info, init,
** terminate) are Lua callbacks; README.md "Write your own policy" gives
** the Lua side. Each policy server has a Lua state of its own. These two
** functions, and luaopen_tand, are in libtand, which links Lua 5.4. */

typedef struct tand_policy_options {
    const char *policy;             /* a module name or a .lua file, */
    const char *source;             /* or the policy's Lua source text */
    size_t source_size;
    const char *chunkname;          /* names source in errors ("=policy") */
    int64_t min_number, max_number; /* both 0: 1..INT64_MAX */
    int64_t auto_shutdown_ms;       /* as tand_deluxe_options' (0 or
                                    ** TAND_FOREVER: never) */
    int64_t callback_timeout_ms;    /* > 0 or TAND_FOREVER; 0: 1000 */
    size_t memory_limit;            /* bytes; 0: none (sandbox: 32 MiB) */
    int sandbox;                    /* run the callbacks in a sandbox */
    const char *name;               /* or NULL */
    size_t mailbox_capacity;        /* 0: default */
    const char *journal;            /* resume from / keep state here */
    int durability;                 /* TAND_DURABLE_FULL or _OS */
    char *error;                    /* a failed start says why here */
    size_t error_size;
} tand_policy_options;

/* Fills *o (not NULL) with the defaults: no policy yet, numbers
** 1..INT64_MAX, no auto shutdown, a callback timeout of 1 s, no sandbox
** or memory limit, TAND_DURABLE_FULL; all of them zero, so a zeroed
** struct means the same. Cannot fail.
** Thread: any. Blocks: no. */
TAND_API void tand_policy_options_init(tand_policy_options *o);

/* Starts a policy server: exactly one of o->policy and o->source is set.
** The policy is loaded and its init runs before this returns, on this
** thread, so a policy that cannot load fails here: TAND_ECONFIG with the
** file and line in o->error (also for every bad option, as tand.start
** would say it), TAND_ECRASHED if init raised, TAND_ENAMETAKEN,
** TAND_EJOURNAL, TAND_EJOURNALLOCKED (o->journal is held by another
** server: see "journals"), TAND_ENOMEM, TAND_EINVAL for NULL arguments
** (o->error untouched then). The server speaks the deluxe machine's ops
** (tand_deluxe_queue() works) and the policy's own ops as TAND_OP_ENCODED
** requests: a MessagePack array [op_name, args...], answered with an
** array of the results. `o` is read during the call only; *out gets a
** reference the caller releases. On failure *out is NULL and nothing is
** left running.
** A callback that runs past callback_timeout_ms crashes the server
** (TAND_ECRASHED, "callback_timeout" in the detail) whatever the policy
** does: the thread running it arms a count hook for the callback's
** length, and pcall, xpcall handlers, coroutines and pattern matching
** cannot outlast it; its terminate does not run and its journal batch is
** rolled back. A callback stuck where no hook runs (a trusted policy in a
** C function or in a __gc finalizer) is ended from outside with
** tand_server_kill about 50 ms past its deadline; the stuck thread frees
** the state when it returns. With o->sandbox no C step of the policy
** keeps its thread long, so that never happens; outside it, any code the
** policy can load (C modules, os.execute) is trusted. Thread: any.
** Blocks: while the policy loads, a journal opens and init runs. */
TAND_API int tand_policy_start(tand_runtime *rt, const tand_policy_options *o,
                               tand_server **out);

/* The Lua module's opener, for a host with Lua states of its own:
** luaL_requiref(L, "tand", luaopen_tand, 0) or package.preload.tand.
** Pushes the module table and returns 1 [-0, +1, e]. The module's servers
** run on tand_runtime_default(), created (threads started) on first use;
** if it cannot be, or memory runs out, it raises a Lua error. The library
** stays loaded for the process's life.
** Thread: the one running L (each Lua state on one thread at a time;
** states on different threads may open it). Blocks: no. */
struct lua_State;
TAND_API int luaopen_tand(struct lua_State *L);

#ifdef __cplusplus
}
#endif
#endif /* TAND_H */
