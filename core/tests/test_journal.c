/*
** test_journal.c - journaled machines resume where they were; foreign,
** corrupt, truncated, newer and mismatched journals are refused and left
** untouched; concurrent callers are all answered after group commits.
*/
#include "check.h"
#include "echo.h"

#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>
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

/* Starting on `p` fails with `rc`, says `why`, and leaves it as it was. */
static void refused(const char *p, int rc, const char *why)
{
    size_t n1, n2;
    char *before = slurp(p, &n1), *after;
    char err[512] = "";
    tand_server *s;
    CHECK_RC(deluxe(p, 1, 100, &s, err, sizeof err), rc);
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

int main(void)
{
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
    tand_runtime_free(rt);
    {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", dir);
    }
    return check_done("test_journal");
}
