/*
** test_journal.c - journaled machines resume where they were; foreign,
** corrupt, truncated, newer and mismatched journals are refused and left
** untouched; concurrent callers are all answered after group commits; a
** journal is held by one server at a time, in this process or another
** (this program re-runs itself as the other process: "hold", "race").
*/
#include "check.h"
#include "echo.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static tand_runtime *rt;
static char dir[256];

static const char *path_of(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static int deluxe(const char *journal, int64_t min, int64_t max,
                  tand_server **out, char *err, size_t n)
{
    tand_deluxe_options o;
    memset(&o, 0, sizeof o);
    o.min_number = min;
    o.max_number = max;
    o.auto_shutdown_ms = TAND_FOREVER;
    o.journal = journal;
    o.error = err;
    o.error_size = n;
    return tand_deluxe_start(rt, &o, out);
}

static int64_t take(tand_server *s)
{
    int64_t n = -1;
    CHECK_OK(tand_deluxe_queue(s, &n, 5000));
    return n;
}

/* The queue, front first, via report_state: returns its length. */
static int queue_of(tand_server *s, int64_t *out, int max)
{
    tand_msg req = {0}, reply;
    tand_reader r;
    tand_item it;
    int n = 0, i, pairs;
    req.op = TAND_OP_REPORT_STATE;
    CHECK_OK(tand_call(s, &req, &reply, 5000, 0));
    tand_reader_init(&r, reply.data, reply.size);
    tand_unpack(&r, &it); /* [ */
    tand_unpack(&r, &it); /* { */
    pairs = (int)it.v.n;
    for (i = 0; i < pairs; i++) {
        tand_unpack(&r, &it);
        if (it.v.s.len == 5 && memcmp(it.v.s.p, "queue", 5) == 0) {
            tand_unpack(&r, &it);
            int len = (int)it.v.n, k;
            for (k = 0; k < len; k++) {
                tand_unpack(&r, &it);
                if (n < max)
                    out[n++] = it.v.i;
            }
        } else {
            tand_unpack(&r, &it); /* a scalar value */
        }
    }
    tand_msg_clear(&reply);
    return n;
}

static void resume(void)
{
    const char *p = path_of("deli.db");
    tand_server *s;
    int64_t q[16], prio = 2, n;
    char err[256];

    CHECK_OK(deluxe(p, 1, 100, &s, err, sizeof err));
    for (int i = 1; i <= 5; i++)
        CHECK_INT(take(s), i);
    CHECK_OK(tand_deluxe_serve(s, &prio, &n, 5000));
    CHECK_OK(tand_server_stop(s, 0, NULL, 5000));
    tand_server_release(s);

    CHECK_OK(deluxe(p, 1, 100, &s, err, sizeof err));
    CHECK_INT(queue_of(s, q, 16), 4);
    CHECK_INT(q[0], 1);
    CHECK_INT(q[1], 3);
    CHECK_INT(q[2], 4);
    CHECK_INT(q[3], 5);
    CHECK_INT(take(s), 6); /* after the highest: no number handed out twice */
    CHECK_OK(tand_deluxe_serve(s, NULL, &n, 5000));
    CHECK_INT(n, 1);
    tand_server_stop(s, 0, NULL, 5000);
    tand_server_release(s);

    /* the same journal with other bounds is refused, and says why */
    CHECK_RC(deluxe(p, 1, 50, &s, err, sizeof err), TAND_ECONFIG);
    CHECK(strstr(err, "1..100") != NULL);
    /* a reset is journaled too */
    CHECK_OK(deluxe(p, 1, 100, &s, err, sizeof err));
    {
        tand_msg m = {0};
        m.op = TAND_OP_RESET_STATE;
        CHECK_OK(tand_cast(s, &m, 5000, 0));
        /* a stop jumps the queue: let the cast be handled first */
        CHECK_INT(queue_of(s, q, 16), 0);
    }
    tand_server_stop(s, 0, NULL, 5000);
    tand_server_release(s);
    CHECK_OK(deluxe(p, 1, 100, &s, err, sizeof err));
    CHECK_INT(queue_of(s, q, 16), 0);
    tand_server_stop(s, 0, NULL, 5000);
    tand_server_release(s);
}

static void counter(void)
{
    tand_counter_options o;
    tand_server *s;
    tand_msg req = {0}, reply;
    char err[256];
    memset(&o, 0, sizeof o);
    o.initial_number = 100;
    o.journal = path_of("counter.db");
    o.error = err;
    o.error_size = sizeof err;
    CHECK_OK(tand_counter_start(rt, &o, &s));
    req.op = TAND_OP_NEXT;
    {
        tand_buf b;
        tand_buf_init(&b);
        tand_pack_str(&b, "user1", 5);
        tand_buf_to_msg(&b, &req);
    }
    CHECK_OK(tand_call(s, &req, &reply, 5000, 0));
    CHECK_INT(reply.ival[0], 100);
    tand_msg_clear(&reply);
    tand_server_stop(s, 0, NULL, 5000);
    tand_server_release(s);
    o.initial_number = 0; /* ignored: the journal wins */
    CHECK_OK(tand_counter_start(rt, &o, &s));
    req.op = TAND_OP_REPORT;
    CHECK_OK(tand_call(s, &req, &reply, 5000, 0));
    CHECK_INT(reply.ival[0], 101);
    CHECK(reply.size == 6 && memcmp(reply.data, "\xa5user1", 6) == 0);
    tand_msg_clear(&reply);
    tand_server_stop(s, 0, NULL, 5000);
    tand_server_release(s);
    /* a counter's journal is not a deluxe machine's */
    CHECK_RC(deluxe(o.journal, 1, 9, &s, err, sizeof err), TAND_EJOURNAL);
    CHECK(strstr(err, "counter") != NULL);
}

static char *slurp(const char *p, size_t *n)
{
    FILE *f = fopen(p, "rb");
    char *buf;
    long len;
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)len + 1);
    *n = fread(buf, 1, (size_t)len, f);
    fclose(f);
    return buf;
}

static void spit(const char *p, const char *data, size_t n)
{
    FILE *f = fopen(p, "wb");
    fwrite(data, 1, n, f);
    fclose(f);
}

/* Starting a machine of 1..max on `p` fails with `rc`, says `why`, and
** leaves it as it was. */
static void refused_max(const char *p, int64_t max, int rc, const char *why)
{
    size_t n1, n2;
    char *before = slurp(p, &n1), *after;
    char err[512] = "";
    tand_server *s;
    CHECK_RC(deluxe(p, 1, max, &s, err, sizeof err), rc);
    CHECK(s == NULL);
    if (strstr(err, why) == NULL)
        fprintf(stderr, "error was: %s (wanted %s)\n", err, why);
    CHECK(strstr(err, why) != NULL);
    after = slurp(p, &n2);
    CHECK(before != NULL && after != NULL && n1 == n2 &&
          memcmp(before, after, n1) == 0);
    free(before);
    free(after);
}

static void refused(const char *p, int rc, const char *why)
{
    refused_max(p, 100, rc, why);
}

static void bad_files(void)
{
    char junk[4096];
    tand_server *s;
    char err[256];
    size_t n;
    char *whole;
    sqlite3 *db;
    const char *p;

    memset(junk, 'x', sizeof junk);
    p = path_of("junk.db");
    spit(p, junk, sizeof junk);
    refused(p, TAND_EJOURNAL, "not a tand journal");

    /* another SQLite database */
    p = path_of("other.db");
    sqlite3_open(p, &db);
    sqlite3_exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES (1)", NULL,
                 NULL, NULL);
    sqlite3_close(db);
    refused(p, TAND_EJOURNAL, "not a tand journal");

    /* a journal from a newer format */
    p = path_of("newer.db");
    CHECK_OK(deluxe(p, 1, 100, &s, err, sizeof err));
    tand_server_stop(s, 0, NULL, 5000);
    tand_server_release(s);
    sqlite3_open(p, &db);
    sqlite3_exec(db, "PRAGMA journal_mode=DELETE; UPDATE meta SET value=99 "
                     "WHERE key='version'",
                 NULL, NULL, NULL);
    sqlite3_close(db);
    refused(p, TAND_EJOURNAL, "incompatible version");

    /* another program's database with no tables, in rollback mode: not
    ** adopted as a new journal (that would write it) but refused as it is */
    p = path_of("schemaless.db");
    sqlite3_open(p, &db);
    sqlite3_exec(db, "CREATE TABLE t(x); DROP TABLE t", NULL, NULL, NULL);
    sqlite3_close(db);
    refused(p, TAND_EJOURNAL, "not a tand journal");

    /* a truncated journal */
    p = path_of("cut.db");
    CHECK_OK(deluxe(p, 1, 100000, &s, err, sizeof err));
    for (int i = 0; i < 3000; i++)
        take(s);
    tand_server_stop(s, 0, NULL, 5000);
    tand_server_release(s);
    sqlite3_open(p, &db); /* fold the WAL in: one file to cut */
    sqlite3_exec(db, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL);
    sqlite3_close(db);
    whole = slurp(p, &n);
    CHECK(n > 8192);
    spit(p, whole, n / 2);
    free(whole);
    {
        char e2[512] = "";
        tand_deluxe_options o;
        memset(&o, 0, sizeof o);
        o.min_number = 1;
        o.max_number = 100000;
        o.auto_shutdown_ms = TAND_FOREVER;
        o.journal = p;
        o.error = e2;
        o.error_size = sizeof e2;
        CHECK_RC(tand_deluxe_start(rt, &o, &s), TAND_EJOURNAL);
        CHECK(strstr(e2, "corrupt") != NULL);
    }

    /* a path that cannot be written */
    CHECK_RC(deluxe("/nonexistent-dir/x.db", 1, 9, &s, err, sizeof err),
             TAND_EJOURNAL);
    CHECK(strstr(err, "cannot open") != NULL);
    CHECK_RC(deluxe(dir, 1, 9, &s, err, sizeof err), TAND_EJOURNAL);
}

typedef struct taker {
    tand_server *s;
    int64_t got[500];
    int n;
} taker;

static void *take_many(void *arg)
{
    taker *t = arg;
    for (t->n = 0; t->n < 500; t->n++)
        if (tand_deluxe_queue(t->s, &t->got[t->n], 10000) != 0)
            break;
    return NULL;
}

static void group_commit(void)
{
    const char *p = path_of("group.db");
    tand_server *s;
    pthread_t th[8];
    taker t[8];
    int64_t *q = malloc(5000 * sizeof *q);
    char err[256];
    int i, total = 0;
    CHECK_OK(deluxe(p, 1, 1000000, &s, err, sizeof err));
    for (i = 0; i < 8; i++) {
        t[i].s = s;
        pthread_create(&th[i], NULL, take_many, &t[i]);
    }
    for (i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT(t[i].n, 500);
        total += t[i].n;
    }
    tand_server_stop(s, 0, NULL, 5000);
    tand_server_release(s);
    CHECK_OK(deluxe(p, 1, 1000000, &s, err, sizeof err));
    CHECK_INT(queue_of(s, q, 5000), total);
    for (i = 0; i < total; i++)
        if (q[i] != i + 1)
            break;
    CHECK_INT(i, total);
    tand_server_stop(s, 0, NULL, 5000);
    tand_server_release(s);
    free(q);
}

/* A full disk: the file size limit stops the journal from growing. The
** call that cannot be made durable gets journal_error, the server stops,
** and what was acknowledged before is what a restart finds. */
static void full_disk(void)
{
    const char *p = path_of("full.db");
    struct rlimit old, small;
    tand_server *s;
    char err[256];
    int64_t n = 0, last_ok = 0, q[8];
    int rc = 0, i;

    CHECK_OK(deluxe(p, 1, INT64_MAX / 2, &s, err, sizeof err));
    signal(SIGXFSZ, SIG_IGN);
    getrlimit(RLIMIT_FSIZE, &old);
    small = old;
    small.rlim_cur = 2 * 1024 * 1024;
    setrlimit(RLIMIT_FSIZE, &small);
    for (i = 0; i < 200000; i++) {
        rc = tand_deluxe_queue(s, &n, 5000);
        if (rc != 0)
            break;
        last_ok = n;
    }
    setrlimit(RLIMIT_FSIZE, &old);
    CHECK_RC(rc, TAND_EJOURNAL);
    CHECK(last_ok > 10);
    WAIT_FOR(!tand_server_alive(s), 5000);
    /* not alive is "stopping": wait for its end, which lets go of the
    ** journal (a stop of a stopped server waits, then says noproc) */
    CHECK_RC(tand_server_stop(s, 0, NULL, 5000), TAND_ENOPROC);
    tand_server_release(s);

    CHECK_OK(deluxe(p, 1, INT64_MAX / 2, &s, err, sizeof err));
    {
        /* the queue holds 1..last_ok: check its ends */
        int64_t prio = last_ok, got;
        CHECK_INT(queue_of(s, q, 1), last_ok >= 1 ? 1 : 0);
        CHECK_INT(q[0], 1);
        CHECK_OK(tand_deluxe_serve(s, &prio, &got, 5000));
        prio = last_ok + 1;
        CHECK_RC(tand_deluxe_serve(s, &prio, &got, 5000),
                 TAND_ENOTQUEUED);
    }
    tand_server_stop(s, 0, NULL, 5000);
    tand_server_release(s);
}

/* Replies wait for the commit, but one for a caller who has given up is
** not held: tand_reply says so, as without a journal. */
static void deferred_reply(void)
{
    echo_shared sh = {0};
    tand_server_options o;
    tand_server *s;
    memset(&o, 0, sizeof o);
    o.behaviour = &echo_behaviour;
    o.arg = &sh;
    o.journal = path_of("echo.db");
    CHECK_OK(tand_server_start(rt, &o, &s));
    /* long enough for the server to keep the caller first, however loaded */
    CHECK_RC(echo_req(s, DEFER, 0, 0, 1000, NULL), TAND_ETIMEDOUT);
    CHECK_RC(echo_answer(s, 1), TAND_ETIMEDOUT);
    CHECK_OK(echo_req(s, ECHO, 3, 0, 1000, NULL));
    tand_server_stop(s, 0, NULL, 5000);
    tand_server_release(s);
}

/* ---- tand_server_own_batch ------------------------------------------ */

/* A journaled server whose ALONE request is a batch of its own: the
** replies held before it are sent while it runs, and its own is sent
** before the next message is handled. */
enum { OB_BLOCK = 1, OB_MARK, OB_ALONE, OB_AFTER };

typedef struct ob_shared {
    atomic_int gate;           /* OB_BLOCK waits for it */
    atomic_int mark_answered;  /* set by the MARK caller once answered */
    atomic_int alone_answered; /* and by the ALONE caller */
    atomic_int in_terminate;   /* tand_server_own_batch from terminate */
} ob_shared;

static int ob_init(tand_server *self, void *arg, void **state)
{
    (void)self;
    *state = arg;
    return 0;
}

static int ob_call(void *state, tand_server *self, tand_msg *req,
                   tand_from *from, tand_msg *reply)
{
    ob_shared *sh = state;
    int64_t until = tand_now_ms() + 2000;
    (void)from;
    /* every message changes the journal, so each batch has a commit */
    tand_journal_set_int(tand_server_journal(self), "last", req->op);
    switch (req->op) {
    case OB_BLOCK:
        while (!atomic_load(&sh->gate) && tand_now_ms() < until)
            sleep_ms(1);
        break;
    case OB_ALONE:
        reply->ival[1] = tand_server_own_batch(self);
        while (!atomic_load(&sh->mark_answered) && tand_now_ms() < until)
            sleep_ms(1);
        reply->ival[0] = atomic_load(&sh->mark_answered);
        break;
    case OB_AFTER: /* held with this batch, ALONE's reply would wait */
        while (!atomic_load(&sh->alone_answered) && tand_now_ms() < until)
            sleep_ms(1);
        reply->ival[0] = atomic_load(&sh->alone_answered);
        break;
    }
    return 0;
}

static void ob_terminate(void *state, tand_server *self, int reason,
                         const char *detail)
{
    ob_shared *sh = state;
    (void)reason;
    (void)detail;
    atomic_store(&sh->in_terminate, tand_server_own_batch(self));
}

static const tand_behaviour ob_behaviour = {.name = "own_batch",
                                            .init = ob_init,
                                            .handle_call = ob_call,
                                            .terminate = ob_terminate};

typedef struct ob_caller {
    tand_server *s;
    int op;
    atomic_int *answered;
    tand_msg reply;
    int rc;
    pthread_t t;
} ob_caller;

static void *ob_run(void *arg)
{
    ob_caller *c = arg;
    tand_msg req = {0};
    req.op = c->op;
    c->rc = tand_call(c->s, &req, &c->reply, 10000, 0);
    if (c->answered != NULL)
        atomic_store(c->answered, 1);
    return NULL;
}

static void own_batch(void)
{
    ob_shared sh = {0};
    tand_server_options o;
    ob_caller c[4] = {{0}};
    tand_server *s;
    tand_stats st;
    int i;

    memset(&o, 0, sizeof o);
    o.behaviour = &ob_behaviour;
    o.arg = &sh;
    o.journal = path_of("own_batch.db");
    CHECK_OK(tand_server_start(rt, &o, &s));
    /* outside a handler it is refused */
    CHECK_RC(tand_server_own_batch(s), TAND_EINVAL);
    CHECK_RC(tand_server_own_batch(NULL), TAND_EINVAL);
    c[0].op = OB_BLOCK;
    c[1].op = OB_MARK;
    c[1].answered = &sh.mark_answered;
    c[2].op = OB_ALONE;
    c[2].answered = &sh.alone_answered;
    c[3].op = OB_AFTER;
    /* BLOCK holds the server while the others queue behind it, in order,
    ** so that they would all be one batch */
    for (i = 0; i < 4; i++) {
        c[i].s = s;
        CHECK(pthread_create(&c[i].t, NULL, ob_run, &c[i]) == 0);
        if (i == 0)
            WAIT_FOR(tand_server_stats(s, &st) == 0 && st.calls >= 1, 5000);
        else
            WAIT_FOR(tand_server_stats(s, &st) == 0 &&
                         st.mailbox_depth >= (uint64_t)i,
                     5000);
    }
    atomic_store(&sh.gate, 1);
    for (i = 0; i < 4; i++) {
        pthread_join(c[i].t, NULL);
        CHECK_OK(c[i].rc);
    }
    CHECK_OK(c[2].reply.ival[1]);
    CHECK_INT(c[2].reply.ival[0], 1); /* MARK's reply went out meanwhile */
    CHECK_INT(c[3].reply.ival[0], 1); /* ALONE's, while AFTER ran */
    for (i = 0; i < 4; i++)
        tand_msg_clear(&c[i].reply);
    tand_server_stop(s, 0, NULL, 5000);
    tand_server_release(s);
    /* not a message's: refused */
    CHECK_RC(atomic_load(&sh.in_terminate), TAND_EINVAL);
}

/* ---- one holder per journal ---------------------------------------- */

static int counter_on(const char *journal, tand_server **out, char *err,
                      size_t n)
{
    tand_counter_options o;
    memset(&o, 0, sizeof o);
    o.initial_number = 100;
    o.journal = journal;
    o.error = err;
    o.error_size = n;
    return tand_counter_start(rt, &o, out);
}

/* TAND_OP_NEXT with the caller "who": the number handed out, or -1. */
static int64_t next_of(tand_server *s, const char *who)
{
    tand_msg req = {0}, reply;
    tand_buf b;
    int64_t n = -1;
    req.op = TAND_OP_NEXT;
    tand_buf_init(&b);
    tand_pack_str(&b, who, strlen(who));
    tand_buf_to_msg(&b, &req);
    if (tand_call(s, &req, &reply, 5000, 0) == 0) {
        n = reply.ival[0];
        tand_msg_clear(&reply);
    }
    return n;
}

/* The counter's current number, and whether its last caller is `who`. */
static int64_t report_of(tand_server *s, const char *who, int *last_is)
{
    tand_msg req = {0}, reply;
    char want[64];
    int64_t n = -1;
    size_t len = strlen(who);
    req.op = TAND_OP_REPORT;
    *last_is = 0;
    want[0] = (char)(0xa0 | len); /* a short MessagePack string */
    memcpy(want + 1, who, len);
    if (tand_call(s, &req, &reply, 5000, 0) == 0) {
        n = reply.ival[0];
        *last_is = reply.size == len + 1 && memcmp(reply.data, want,
                                                   len + 1) == 0;
        tand_msg_clear(&reply);
    }
    return n;
}

/* The names and sizes of the files in dir, one "name size" a line: what
** a refused open must leave as it was. Reads no journal (opendir opens
** the directory only), so it is safe while this process holds one. */
static char *listing(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t cap = 4096, len = 0;
    char *out = calloc(1, cap);
    while (d != NULL && (e = readdir(d)) != NULL) {
        char p[800];
        struct stat sb;
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (stat(p, &sb) != 0)
            continue;
        if (len + 600 > cap)
            out = realloc(out, cap *= 2);
        len += (size_t)snprintf(out + len, cap - len, "%s %lld %ld.%ld\n",
                                e->d_name, (long long)sb.st_size,
                                (long)sb.st_mtim.tv_sec,
                                (long)sb.st_mtim.tv_nsec);
    }
    if (d != NULL)
        closedir(d);
    return out; /* readdir's order is the directory's: stable here */
}

static void same_listing(const char *before)
{
    char *after = listing();
    if (strcmp(before, after) != 0)
        fprintf(stderr, "the directory changed:\n%s---\n%s", before, after);
    CHECK(strcmp(before, after) == 0);
    free(after);
}

/* Two servers of this process on one journal: the second is refused,
** names the path, changes nothing, and the first carries on; once the
** first has ended, a new start resumes it. */
static void held_in_process(void)
{
    const char *p = path_of("held.db");
    char other[600], err[512] = "", *before;
    tand_server *a, *b = (tand_server *)1;
    int last_is;

    CHECK_OK(counter_on(p, &a, err, sizeof err));
    for (int i = 0; i < 5; i++)
        CHECK_INT(next_of(a, "first"), 100 + i);
    /* the bytes cannot be compared here: reading the file would open
    ** and close a descriptor on it, which drops this process's lock */
    before = listing();
    CHECK_RC(counter_on(p, &b, err, sizeof err), TAND_EJOURNALLOCKED);
    CHECK(b == NULL);
    if (strstr(err, p) == NULL || strstr(err, "held") == NULL)
        fprintf(stderr, "error was: %s\n", err);
    CHECK(strstr(err, p) != NULL && strstr(err, "held") != NULL);
    CHECK(strcmp(tand_errname(TAND_EJOURNALLOCKED), "journal_locked") == 0);
    /* another spelling of the same file, and another kind of machine */
    snprintf(other, sizeof other, "%s/./held.db", dir);
    CHECK_RC(counter_on(other, &b, err, sizeof err), TAND_EJOURNALLOCKED);
    CHECK_RC(deluxe(p, 1, 100, &b, err, sizeof err), TAND_EJOURNALLOCKED);
    same_listing(before);
    free(before);

    CHECK_INT(next_of(a, "first"), 105);
    CHECK_INT(report_of(a, "first", &last_is), 106);
    CHECK(last_is);
    CHECK_OK(tand_server_stop(a, 0, NULL, 5000));
    tand_server_release(a);

    CHECK_OK(counter_on(other, &b, err, sizeof err));
    CHECK_INT(report_of(b, "first", &last_is), 106);
    CHECK(last_is);
    CHECK_INT(next_of(b, "second"), 106);
    CHECK_OK(tand_server_stop(b, 0, NULL, 5000));
    tand_server_release(b);
}

/* Another process of this program, talking over its stdin and stdout. */
typedef struct child {
    pid_t pid;
    int in, out;
    char buf[1024];
    size_t len;
} child;

static char self_exe[1024];

static void spawn(child *c, const char *mode, const char *arg)
{
    int to[2], from[2];
    memset(c, 0, sizeof *c);
    if (pipe(to) != 0 || pipe(from) != 0) {
        perror("pipe");
        exit(1);
    }
    /* not inherited by the other children, so each sees its EOF */
    for (int i = 0; i < 2; i++) {
        fcntl(to[i], F_SETFD, FD_CLOEXEC);
        fcntl(from[i], F_SETFD, FD_CLOEXEC);
    }
    if ((c->pid = fork()) == 0) {
        /* only async-signal-safe calls between fork and exec */
        dup2(to[0], 0);
        dup2(from[1], 1);
        execl(self_exe, self_exe, mode, arg, (char *)NULL);
        _exit(127);
    }
    CHECK(c->pid > 0);
    close(to[0]);
    close(from[1]);
    c->in = to[1];
    c->out = from[0];
}

static void say_to(child *c, const char *line)
{
    size_t n = strlen(line);
    CHECK(write(c->in, line, n) == (ssize_t)n);
}

/* The child's next line (without its newline) within ms; false on EOF
** or at the deadline. */
static bool hear(child *c, char *line, size_t n, int64_t ms)
{
    int64_t end = tand_now_ms() + ms;
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        struct pollfd pf = {c->out, POLLIN, 0};
        int64_t left;
        ssize_t r;
        if (nl != NULL) {
            size_t k = (size_t)(nl - c->buf);
            snprintf(line, n, "%.*s", (int)k, c->buf);
            memmove(c->buf, nl + 1, c->len - k - 1);
            c->len -= k + 1;
            return true;
        }
        if ((left = end - tand_now_ms()) <= 0 || c->len == sizeof c->buf)
            return false;
        if (poll(&pf, 1, (int)left) < 0 && errno != EINTR)
            return false;
        if (!(pf.revents & (POLLIN | POLLHUP)))
            continue;
        r = read(c->out, c->buf + c->len, sizeof c->buf - c->len);
        if (r <= 0)
            return false;
        c->len += (size_t)r;
    }
}

static void reap(child *c, bool kill_it)
{
    int status = 0;
    if (kill_it) /* before its stdin closes, which would end it cleanly */
        kill(c->pid, SIGKILL);
    close(c->in);
    CHECK(waitpid(c->pid, &status, 0) == c->pid);
    if (!kill_it)
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(c->out);
}

/* The child of held_by_a_process: takes five numbers, says each once it
** is acknowledged (durable), then "held", and waits to be killed. */
static int child_hold(const char *p)
{
    tand_server *s;
    char err[512] = "";
    int rc = counter_on(p, &s, err, sizeof err), i;
    if (rc != 0) {
        dprintf(1, "failed %s %s\n", tand_errname(rc), err);
        return 1;
    }
    for (i = 0; i < 5; i++)
        dprintf(1, "acked %lld\n", (long long)next_of(s, "child"));
    dprintf(1, "held\n");
    while (read(0, err, 1) > 0) /* until the parent goes */
        ;
    tand_server_stop(s, 0, NULL, 5000);
    tand_server_release(s);
    return 0;
}

/* A journal held by another process is refused, byte for byte untouched;
** after that process is killed (-9) it resumes its last acknowledged
** state. */
static void held_by_a_process(void)
{
    const char *p = path_of("other.proc.db");
    char line[600], err[512] = "", *before, *bytes, *after;
    size_t n1 = 0, n2 = 0;
    long long last = -1;
    tand_server *s = (tand_server *)1;
    child c;
    int last_is;

    spawn(&c, "hold", p);
    while (hear(&c, line, sizeof line, 30000) && strcmp(line, "held") != 0)
        if (sscanf(line, "acked %lld", &last) != 1)
            fprintf(stderr, "the child said: %s\n", line);
    CHECK_INT(last, 104);
    before = listing();
    bytes = slurp(p, &n1); /* this process holds no lock on it to drop */
    CHECK_RC(counter_on(p, &s, err, sizeof err), TAND_EJOURNALLOCKED);
    CHECK(s == NULL);
    CHECK(strstr(err, p) != NULL);
    after = slurp(p, &n2);
    CHECK(bytes != NULL && after != NULL && n1 == n2 &&
          memcmp(bytes, after, n1) == 0);
    same_listing(before);
    free(before);
    free(bytes);
    free(after);

    reap(&c, true); /* kill -9: the kernel drops its lock */
    CHECK_OK(counter_on(p, &s, err, sizeof err));
    if (s != NULL) {
        CHECK_INT(report_of(s, "child", &last_is), last + 1);
        CHECK(last_is);
        CHECK_INT(next_of(s, "parent"), last + 1);
        tand_server_stop(s, 0, NULL, 5000);
        tand_server_release(s);
    }
}

/* The child of racing_creators: for each path it reads, starts a deluxe
** machine on it, says "ok" or the error's name and detail, holds the
** machine until told "stop", then says "stopped". */
static int child_race(void)
{
    char line[600];
    FILE *in = fdopen(0, "r");
    dprintf(1, "ready\n");
    while (in != NULL && fgets(line, sizeof line, in) != NULL) {
        char err[512] = "";
        tand_server *s = NULL;
        int rc;
        line[strcspn(line, "\n")] = '\0';
        rc = deluxe(line, 1, 1000, &s, err, sizeof err);
        dprintf(1, "%s %s\n", rc == 0 ? "ok" : tand_errname(rc), err);
        if (fgets(line, sizeof line, in) == NULL)
            break;
        if (s != NULL) {
            tand_server_stop(s, 0, NULL, 5000);
            tand_server_release(s);
        }
        dprintf(1, "stopped\n");
    }
    return 0;
}

enum { RACE_THREADS = 4, RACE_PROCS = 2 };

typedef struct racer {
    pthread_barrier_t *gate;
    const char *path;
    tand_server *s;
    int rc;
    char err[512];
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    pthread_barrier_wait(r->gate);
    r->rc = deluxe(r->path, 1, 1000, &r->s, r->err, sizeof r->err);
    return NULL;
}

/* Threads of this process and other processes start on one new path at
** once, round after round (TAND_RACE_ROUNDS, 40 by default): exactly one
** wins each round, every other one is told journal_locked, and the
** winner's journal is whole. */
static void racing_creators(void)
{
    child c[RACE_PROCS];
    char line[600];
    const char *env = getenv("TAND_RACE_ROUNDS");
    int rounds = env ? atoi(env) : 40, round, i, bad = 0;

    for (i = 0; i < RACE_PROCS; i++) {
        spawn(&c[i], "race", "");
        CHECK(hear(&c[i], line, sizeof line, 30000) &&
              strcmp(line, "ready") == 0);
    }
    for (round = 0; round < rounds && bad == 0; round++) {
        pthread_barrier_t gate;
        pthread_t th[RACE_THREADS];
        racer r[RACE_THREADS];
        char name[64], cmd[600];
        const char *p;
        tand_server *s;
        int wins = 0, locked = 0;

        snprintf(name, sizeof name, "race%d.db", round);
        p = path_of(name);
        pthread_barrier_init(&gate, NULL, RACE_THREADS + 1);
        for (i = 0; i < RACE_THREADS; i++) {
            memset(&r[i], 0, sizeof r[i]);
            r[i].gate = &gate;
            r[i].path = p;
            pthread_create(&th[i], NULL, race, &r[i]);
        }
        snprintf(cmd, sizeof cmd, "%s\n", p);
        for (i = 0; i < RACE_PROCS; i++)
            say_to(&c[i], cmd);
        pthread_barrier_wait(&gate); /* and the threads go too */
        for (i = 0; i < RACE_THREADS; i++) {
            pthread_join(th[i], NULL);
            if (r[i].rc == 0)
                wins++;
            else if (r[i].rc == TAND_EJOURNALLOCKED && strstr(r[i].err, p))
                locked++;
            else
                fprintf(stderr, "round %d, thread %d: %s: %s\n", round, i,
                        tand_errname(r[i].rc), r[i].err);
        }
        pthread_barrier_destroy(&gate);
        for (i = 0; i < RACE_PROCS; i++) {
            if (!hear(&c[i], line, sizeof line, 30000))
                snprintf(line, sizeof line, "(no answer)");
            if (strncmp(line, "ok ", 3) == 0)
                wins++;
            else if (strncmp(line, "journal_locked ", 15) == 0 &&
                     strstr(line, p) != NULL)
                locked++;
            else
                fprintf(stderr, "round %d, process %d: %s\n", round, i,
                        line);
        }
        if (wins != 1 || locked != RACE_THREADS + RACE_PROCS - 1) {
            fprintf(stderr, "round %d: %d won, %d were told it is held\n",
                    round, wins, locked);
            bad++;
        }
        for (i = 0; i < RACE_THREADS; i++)
            if (r[i].s != NULL) {
                CHECK_OK(tand_server_stop(r[i].s, 0, NULL, 5000));
                tand_server_release(r[i].s);
            }
        for (i = 0; i < RACE_PROCS; i++) {
            say_to(&c[i], "stop\n");
            CHECK(hear(&c[i], line, sizeof line, 30000) &&
                  strcmp(line, "stopped") == 0);
        }
        /* what the winner made is a whole journal with its bounds */
        CHECK_OK(deluxe(p, 1, 1000, &s, line, sizeof line));
        if (s != NULL) {
            CHECK_INT(take(s), 1);
            tand_server_stop(s, 0, NULL, 5000);
            tand_server_release(s);
        }
    }
    CHECK_INT(bad, 0);
    printf("racing_creators: %d rounds of %d threads and %d processes\n",
           round, RACE_THREADS, RACE_PROCS);
    for (i = 0; i < RACE_PROCS; i++)
        reap(&c[i], false);
}

/* A journal cut inside its last page (which SQLite would accept until
** that page is read), cut by a page, or grown by a page past what its
** header says, is refused at start and left as it was. */
static void not_whole(void)
{
    const char *p = path_of("whole.db");
    char wal[600], err[512], *whole, *grown;
    tand_server *s;
    size_t n;
    struct stat sb;

    CHECK_OK(deluxe(p, 1, 100000, &s, err, sizeof err));
    for (int i = 0; i < 3000; i++)
        take(s);
    CHECK_OK(tand_server_stop(s, 0, NULL, 5000));
    tand_server_release(s);
    snprintf(wal, sizeof wal, "%s-wal", p);
    CHECK(stat(wal, &sb) != 0); /* a clean stop folded the WAL in */
    whole = slurp(p, &n);
    CHECK(n > 3 * 4096 && n % 4096 == 0);

    spit(p, whole, n - 1);
    refused_max(p, 100000, TAND_EJOURNAL, "truncated or corrupt");
    spit(p, whole, n - 4096);
    refused_max(p, 100000, TAND_EJOURNAL, "truncated or corrupt");
    grown = calloc(1, n + 4096);
    memcpy(grown, whole, n);
    spit(p, grown, n + 4096);
    refused_max(p, 100000, TAND_EJOURNAL, "truncated or corrupt");
    CHECK(stat(wal, &sb) != 0); /* and nothing was left beside it */
    free(grown);

    spit(p, whole, n); /* whole again, it resumes */
    CHECK_OK(deluxe(p, 1, 100000, &s, err, sizeof err));
    CHECK_INT(take(s), 3001);
    tand_server_stop(s, 0, NULL, 5000);
    tand_server_release(s);
    free(whole);
}

int main(int argc, char **argv)
{
    ssize_t len = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (len <= 0) {
        perror("readlink /proc/self/exe");
        return 1;
    }
    self_exe[len] = '\0';
    if (argc == 3) { /* another process of held_by_a_process or a race */
        int rc;
        CHECK_OK(tand_runtime_new(NULL, &rt));
        rc = strcmp(argv[1], "hold") == 0 ? child_hold(argv[2])
                                          : child_race();
        tand_runtime_free(rt);
        return rc;
    }
    signal(SIGPIPE, SIG_IGN); /* a child that died is seen, not fatal */
    snprintf(dir, sizeof dir, "/tmp/tand-journal-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    CHECK_OK(tand_runtime_new(NULL, &rt));
    resume();
    counter();
    bad_files();
    group_commit();
    full_disk();
    deferred_reply();
    own_batch();
    held_in_process();
    held_by_a_process();
    racing_creators();
    not_whole();
    tand_runtime_free(rt);
    {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", dir);
    }
    return check_done("test_journal");
}
