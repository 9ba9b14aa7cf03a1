/*
** journal.c - a server's durable state in SQLite.
**
** One database per journaled server, used only by the thread that runs
** the server (a connection opened SQLITE_OPEN_NOMUTEX). Two tables: meta
** (named integers and blobs: the format, its version, the server's kind,
** and whatever the behaviour keeps) and queue (a FIFO of numbers, ordered
** by rowid). Writes open a transaction lazily; the server commits it once
** per batch of messages (group commit). WAL mode with synchronous=FULL
** makes each commit durable before it returns; synchronous=OFF leaves the
** flushing to the OS. An existing file is only read until it has been
** recognised as a sound tand journal of the right kind and version, so a
** foreign, corrupt or newer file is refused and never modified.
*/
#include "internal.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FORMAT "tand-journal"
#define VERSION 1

enum { ST_SET, ST_GET, ST_PUSH, ST_REMOVE, ST_CLEAR, ST_LOAD, ST_COUNT };

static const char *const sql[ST_COUNT] = {
    "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
    "SELECT value FROM meta WHERE key = ?1",
    "INSERT INTO queue(number) VALUES (?1)",
    "DELETE FROM queue WHERE number = ?1",
    "DELETE FROM queue",
    "SELECT number FROM queue ORDER BY seq"};

struct tand_journal {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    bool fresh;
    bool in_tx;
    int failed;      /* the first error of this batch, or 0 */
    char error[256]; /* and what SQLite said */
};

static int fail(tand_journal *j, const char *what)
{
    if (j->failed == 0) {
        j->failed = TAND_EJOURNAL;
        snprintf(j->error, sizeof j->error, "%.60s: %.180s", what,
                 sqlite3_errmsg(j->db));
    }
    return TAND_EJOURNAL;
}

static int exec(tand_journal *j, const char *q)
{
    if (sqlite3_exec(j->db, q, NULL, NULL, NULL) != SQLITE_OK)
        return fail(j, q);
    return 0;
}

static int begin(tand_journal *j)
{
    if (j->in_tx)
        return 0;
    if (exec(j, "BEGIN") != 0)
        return TAND_EJOURNAL;
    j->in_tx = true;
    return 0;
}

/* Runs a prepared write statement inside the batch's transaction. */
static int step_write(tand_journal *j, sqlite3_stmt *st, const char *what)
{
    int rc;
    if (j->failed)
        return j->failed;
    if (begin(j) != 0)
        return TAND_EJOURNAL;
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : fail(j, what);
}

static void close_db(tand_journal *j)
{
    int i;
    for (i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(j->st[i]);
    sqlite3_close(j->db);
}

static void say(char *err, size_t n, const char *fmt, const char *path,
                const char *detail)
{
    if (err != NULL && n > 0)
        snprintf(err, n, fmt, path, detail ? detail : "");
}

/* Reads meta[key] as text into buf; false when absent or unreadable. */
static bool read_text(sqlite3 *db, const char *key, char *buf, size_t n)
{
    sqlite3_stmt *st;
    bool ok = false;
    if (sqlite3_prepare_v2(db, sql[ST_GET], -1, &st, NULL) != SQLITE_OK)
        return false;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        snprintf(buf, n, "%s", t ? (const char *)t : "");
        ok = true;
    }
    sqlite3_finalize(st);
    return ok;
}

/* Recognises an existing file, reading only. */
static int check_existing(sqlite3 *db, const char *path, const char *kind,
                          char *err, size_t n)
{
    char buf[64];
    sqlite3_stmt *st;
    bool ok;

    if (!read_text(db, "format", buf, sizeof buf) ||
        strcmp(buf, FORMAT) != 0) {
        say(err, n, "'%s' is not a tand journal (or is corrupt)%s", path,
            "");
        return TAND_EJOURNAL;
    }
    if (!read_text(db, "version", buf, sizeof buf) ||
        atoi(buf) != VERSION) {
        say(err, n,
            "'%s' was written by an incompatible version of tand "
            "(journal format %s; this tand reads format 1)",
            path, buf);
        return TAND_EJOURNAL;
    }
    if (!read_text(db, "kind", buf, sizeof buf) || strcmp(buf, kind) != 0) {
        char what[160];
        snprintf(what, sizeof what, "%s server, not a %s one", buf, kind);
        say(err, n, "'%s' is the journal of a %s", path, what);
        return TAND_EJOURNAL;
    }
    ok = false;
    if (sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL) ==
        SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW) {
            const unsigned char *t = sqlite3_column_text(st, 0);
            ok = t != NULL && strcmp((const char *)t, "ok") == 0;
        }
        sqlite3_finalize(st);
    }
    if (!ok) {
        say(err, n, "'%s' is corrupt (%s)", path, sqlite3_errmsg(db));
        return TAND_EJOURNAL;
    }
    return 0;
}

static int create_schema(tand_journal *j, const char *kind)
{
    char q[256];
    if (exec(j, "BEGIN") != 0 ||
        exec(j, "CREATE TABLE meta(key TEXT PRIMARY KEY, value)") != 0 ||
        exec(j, "CREATE TABLE queue(seq INTEGER PRIMARY KEY, "
                "number INTEGER NOT NULL UNIQUE)") != 0)
        return TAND_EJOURNAL;
    snprintf(q, sizeof q,
             "INSERT INTO meta VALUES ('format', '" FORMAT "'), "
             "('version', %d), ('kind', '%s')",
             VERSION, kind);
    if (exec(j, q) != 0 || exec(j, "COMMIT") != 0)
        return TAND_EJOURNAL;
    return 0;
}

int tand__journal_open(const char *path, const char *kind, int durability,
                       tand_journal **out, char *err, size_t n)
{
    tand_journal *j;
    struct stat sb;
    bool exists = stat(path, &sb) == 0;
    int rc, i, flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;

    *out = NULL;
    if (strlen(kind) > 32 || strchr(kind, '\'') != NULL)
        return TAND_EINVAL;
    if ((j = tand__calloc(1, sizeof *j)) == NULL)
        return TAND_ENOMEM;
    if (exists && !S_ISREG(sb.st_mode)) {
        say(err, n, "'%s' is not a file%s", path, "");
        free(j);
        return TAND_EJOURNAL;
    }
    if (!exists)
        flags |= SQLITE_OPEN_CREATE;
    rc = sqlite3_open_v2(path, &j->db, flags, NULL);
    if (rc != SQLITE_OK) {
        say(err, n, "cannot open the journal '%s': %s", path,
            j->db ? sqlite3_errmsg(j->db) : sqlite3_errstr(rc));
        sqlite3_close(j->db);
        free(j);
        return TAND_EJOURNAL;
    }
    sqlite3_extended_result_codes(j->db, 1);
    sqlite3_busy_timeout(j->db, 5000);
    if (exists) {
        rc = check_existing(j->db, path, kind, err, n);
        if (rc != 0) {
            sqlite3_close(j->db);
            free(j);
            return rc;
        }
    }
    /* A new journal is made in WAL mode, which the file keeps; an
    ** existing one is used in the mode it has, so that opening it writes
    ** nothing before the server's first change. */
    rc = exists ? 0 : exec(j, "PRAGMA journal_mode=WAL");
    if (rc == 0)
        rc = exec(j, durability == TAND_DURABLE_OS
                         ? "PRAGMA synchronous=OFF"
                         : "PRAGMA synchronous=FULL");
    if (rc == 0 && !exists) {
        rc = create_schema(j, kind);
        j->fresh = true;
    }
    for (i = 0; rc == 0 && i < ST_COUNT; i++)
        if (sqlite3_prepare_v2(j->db, sql[i], -1, &j->st[i], NULL) !=
            SQLITE_OK)
            rc = fail(j, sql[i]);
    if (rc != 0) {
        say(err, n, "cannot use the journal '%s': %s", path, j->error);
        close_db(j);
        if (!exists)
            remove(path); /* only what we created ourselves */
        free(j);
        return TAND_EJOURNAL;
    }
    *out = j;
    return 0;
}

void tand__journal_close(tand_journal *j)
{
    if (j == NULL)
        return;
    if (j->in_tx)
        sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, NULL);
    close_db(j);
    free(j);
}

int tand__journal_commit(tand_journal *j, char *err, size_t n)
{
    int rc = j->failed;
    if (rc == 0 && j->in_tx && exec(j, "COMMIT") != 0)
        rc = TAND_EJOURNAL;
    if (rc != 0) {
        if (err != NULL && n > 0)
            snprintf(err, n, "%s", j->error);
        if (!sqlite3_get_autocommit(j->db))
            sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, NULL);
    }
    j->in_tx = false;
    j->failed = 0;
    return rc;
}

void tand__journal_rollback(tand_journal *j)
{
    if (!sqlite3_get_autocommit(j->db))
        sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, NULL);
    j->in_tx = false;
    j->failed = 0;
}

bool tand__journal_dirty(const tand_journal *j)
{
    return j->in_tx || j->failed;
}

int tand_journal_fresh(const tand_journal *j)
{
    return j != NULL && j->fresh;
}

int tand_journal_set_int(tand_journal *j, const char *key, int64_t v)
{
    if (j == NULL || key == NULL)
        return TAND_EINVAL;
    sqlite3_bind_text(j->st[ST_SET], 1, key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(j->st[ST_SET], 2, v);
    return step_write(j, j->st[ST_SET], "saving a value");
}

int tand_journal_set_blob(tand_journal *j, const char *key, const void *p,
                          size_t n)
{
    if (j == NULL || key == NULL || n > INT32_MAX)
        return TAND_EINVAL;
    sqlite3_bind_text(j->st[ST_SET], 1, key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(j->st[ST_SET], 2, p ? p : "", (int)n,
                      SQLITE_TRANSIENT);
    return step_write(j, j->st[ST_SET], "saving a value");
}

/* Steps the GET statement for key; the caller reads column 0 and resets. */
static int get(tand_journal *j, const char *key, int *found)
{
    int rc;
    *found = 0;
    sqlite3_bind_text(j->st[ST_GET], 1, key, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(j->st[ST_GET]);
    if (rc == SQLITE_ROW) {
        *found = 1;
        return 0;
    }
    sqlite3_reset(j->st[ST_GET]);
    return rc == SQLITE_DONE ? 0 : fail(j, "reading a value");
}

int tand_journal_get_int(tand_journal *j, const char *key, int64_t *v,
                         int *found)
{
    int rc;
    if (j == NULL || key == NULL || v == NULL || found == NULL)
        return TAND_EINVAL;
    if ((rc = get(j, key, found)) != 0 || !*found)
        return rc;
    if (sqlite3_column_type(j->st[ST_GET], 0) != SQLITE_INTEGER)
        rc = TAND_EJOURNAL; /* not what this key holds */
    else
        *v = sqlite3_column_int64(j->st[ST_GET], 0);
    sqlite3_reset(j->st[ST_GET]);
    return rc;
}

int tand_journal_get_blob(tand_journal *j, const char *key, char **out,
                          size_t *n, int *found)
{
    const void *p;
    int rc, len;
    if (j == NULL || key == NULL || out == NULL || n == NULL ||
        found == NULL)
        return TAND_EINVAL;
    *out = NULL;
    *n = 0;
    if ((rc = get(j, key, found)) != 0 || !*found)
        return rc;
    p = sqlite3_column_blob(j->st[ST_GET], 0);
    len = sqlite3_column_bytes(j->st[ST_GET], 0);
    if (len > 0) {
        if ((*out = tand__malloc((size_t)len)) == NULL)
            rc = TAND_ENOMEM;
        else {
            memcpy(*out, p, (size_t)len);
            *n = (size_t)len;
        }
    }
    sqlite3_reset(j->st[ST_GET]);
    return rc;
}

int tand_journal_queue_push(tand_journal *j, int64_t number)
{
    if (j == NULL)
        return TAND_EINVAL;
    sqlite3_bind_int64(j->st[ST_PUSH], 1, number);
    return step_write(j, j->st[ST_PUSH], "queueing a number");
}

int tand_journal_queue_remove(tand_journal *j, int64_t number)
{
    if (j == NULL)
        return TAND_EINVAL;
    sqlite3_bind_int64(j->st[ST_REMOVE], 1, number);
    return step_write(j, j->st[ST_REMOVE], "removing a number");
}

int tand_journal_queue_clear(tand_journal *j)
{
    if (j == NULL)
        return TAND_EINVAL;
    return step_write(j, j->st[ST_CLEAR], "clearing the queue");
}

int tand_journal_queue_load(tand_journal *j,
                            int (*fn)(void *ud, int64_t number), void *ud)
{
    sqlite3_stmt *st;
    int rc = 0, s;
    if (j == NULL || fn == NULL)
        return TAND_EINVAL;
    st = j->st[ST_LOAD];
    while ((s = sqlite3_step(st)) == SQLITE_ROW && rc == 0)
        rc = fn(ud, sqlite3_column_int64(st, 0));
    if (rc == 0 && s != SQLITE_DONE && s != SQLITE_ROW)
        rc = fail(j, "reading the queue");
    sqlite3_reset(st);
    return rc;
}
