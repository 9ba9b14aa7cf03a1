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
** foreign, corrupt, truncated or newer file is refused and never modified.
**
** DESIGN: one holder per journal, across processes. Two servers on one
** file would hand out the same numbers, so a journal is held from its
** open to tand__journal_close, in three layers, the first two taken
** before SQLite opens the file. The locks are POSIX record locks, which
** the kernel drops with the process (kill -9 included) and a child
** process does not inherit:
** - holders: the files (device, inode) this process holds, under
**   holders_mu. A second open in this process is refused from it at
**   once, whatever the spelling of the path, without opening the file:
**   closing any descriptor of a file drops all of the process's record
**   locks on it, the holder's included.
** - the gate: a write lock on one byte past SQLite's lock bytes, taken
**   with F_SETLK (one system call: of racers, exactly one gets it) on a
**   descriptor of our own kept open while the journal is held. It is
**   what orders processes. SQLite's own locks cannot: racers that both
**   take SQLite's SHARED lock then both fail to upgrade it, and with no
**   busy timeout every racer can lose (seen in tests, threads and
**   processes alike). SQLite touches locks outside its bytes only when
**   it goes to no lock, which in EXCLUSIVE locking mode is at close;
**   our descriptor is closed only after SQLite's, when no connection of
**   this process is on the file (holders says so), so it drops nothing.
** - SQLite's lock: locking_mode=EXCLUSIVE before the first read, then
**   BEGIN EXCLUSIVE; COMMIT, kept until the connection closes. It keeps
**   other programs (the sqlite3 shell) out, and lets the WAL index live
**   in heap memory: no -shm file. No busy timeout: only such a program
**   can be in the way, and it is reported at once as holding the file.
** Whether the journal is new is decided under the lock, from what the
** file holds (nothing, or no schema), never from an earlier stat(): a
** racer that lost the race to create the file but won the gate makes the
** schema. A failed start never removes the file (a racer may have it
** open); an empty or schema-less leftover is new to the next start. The
** schema is committed with init's first state, so a journal that has a
** schema always has a state.
*/
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* A file this process holds as a journal. */
typedef struct holder {
    dev_t dev;
    ino_t ino;
    int *parked; /* descriptors of it not to be closed before it is let go */
    size_t nparked;
    struct holder *next;
} holder;

static pthread_mutex_t holders_mu = PTHREAD_MUTEX_INITIALIZER;
static holder *holders; /* guarded by holders_mu; a leaf lock */

/* The gate's byte: past SQLite's lock bytes (0x40000000 to 0x400001ff),
** so that SQLite's own locking never touches it. */
#define GATE_BYTE ((off_t)0x40000200)

typedef struct sqlite_journal {
    tand_journal base; /* first: the interface (journal_api.c) */
    int fd;    /* the gate's descriptor: see DESIGN */
    holder *h; /* our entry in holders */
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    bool fresh;
    bool in_tx;
    int failed;      /* the first error of this batch, or 0 */
    char error[256]; /* and what SQLite said */
} sqlite_journal;

static int fail(sqlite_journal *j, const char *what)
{
    if (j->failed == 0) {
        j->failed = TAND_EJOURNAL;
        snprintf(j->error, sizeof j->error, "%.60s: %.180s", what,
                 sqlite3_errmsg(j->db));
    }
    return TAND_EJOURNAL;
}

static int exec(sqlite_journal *j, const char *q)
{
    if (sqlite3_exec(j->db, q, NULL, NULL, NULL) != SQLITE_OK)
        return fail(j, q);
    return 0;
}

static int begin(sqlite_journal *j)
{
    if (j->in_tx)
        return 0;
    if (exec(j, "BEGIN") != 0)
        return TAND_EJOURNAL;
    j->in_tx = true;
    return 0;
}

/* Runs a prepared write statement inside the batch's transaction. */
static int step_write(sqlite_journal *j, sqlite3_stmt *st, const char *what)
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

static void close_db(sqlite_journal *j)
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

static const char held_fmt[] =
    "'%s' is held by another server (in this process or another)%s";

static holder *find_holder(dev_t dev, ino_t ino) /* holders_mu held */
{
    holder *h;
    for (h = holders; h != NULL; h = h->next)
        if (h->dev == dev && h->ino == ino)
            return h;
    return NULL;
}

static void say_errno(char *err, size_t n, const char *fmt,
                      const char *path, int e)
{
    char buf[128];
    if (strerror_r(e, buf, sizeof buf) != 0)
        snprintf(buf, sizeof buf, "error %d", e);
    say(err, n, fmt, path, buf);
}

/* Takes the first two layers of the hold (see DESIGN): registers the
** file in holders and takes the gate, creating the file if it does not
** exist. Returns 0 with j->fd and j->h set, TAND_EJOURNALLOCKED when it
** is held, TAND_EJOURNAL or TAND_ENOMEM. */
static int gate(sqlite_journal *j, const char *path, char *err, size_t n)
{
    struct stat sb;
    struct flock fl;
    holder *h;
    int fd, e;

    pthread_mutex_lock(&holders_mu);
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode) &&
        find_holder(sb.st_dev, sb.st_ino) != NULL) {
        pthread_mutex_unlock(&holders_mu);
        say(err, n, held_fmt, path, "");
        return TAND_EJOURNALLOCKED;
    }
    /* SQLite makes its files 0644 (less the umask) too */
    if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0) {
        e = errno;
        pthread_mutex_unlock(&holders_mu);
        if (e == EISDIR)
            say(err, n, "'%s' is not a file%s", path, "");
        else
            say_errno(err, n, "cannot open the journal '%s': %s", path, e);
        return TAND_EJOURNAL;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        pthread_mutex_unlock(&holders_mu);
        close(fd); /* no journal of ours is anything but a regular file */
        say(err, n, "'%s' is not a file%s", path, "");
        return TAND_EJOURNAL;
    }
    if ((h = find_holder(sb.st_dev, sb.st_ino)) != NULL) {
        /* The path was renamed onto a file we hold between stat() and
        ** open(): closing fd now would drop that server's locks, so it
        ** waits for the holder's end (or, without memory, stays open). */
        int *p = realloc(h->parked, (h->nparked + 1) * sizeof *p);
        if (p != NULL) {
            p[h->nparked++] = fd;
            h->parked = p;
        }
        pthread_mutex_unlock(&holders_mu);
        say(err, n, held_fmt, path, "");
        return TAND_EJOURNALLOCKED;
    }
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = GATE_BYTE;
    fl.l_len = 1;
    if ((h = tand__calloc(1, sizeof *h)) == NULL ||
        fcntl(fd, F_SETLK, &fl) != 0) {
        /* closing fd is safe: no connection of ours is on this file */
        e = h == NULL ? ENOMEM : errno;
        pthread_mutex_unlock(&holders_mu);
        close(fd);
        free(h);
        if (e == ENOMEM)
            return TAND_ENOMEM;
        if (e == EACCES || e == EAGAIN)
            say(err, n, held_fmt, path, "");
        else
            say_errno(err, n, "cannot lock the journal '%s': %s", path, e);
        return e == EACCES || e == EAGAIN ? TAND_EJOURNALLOCKED
                                          : TAND_EJOURNAL;
    }
    h->dev = sb.st_dev;
    h->ino = sb.st_ino;
    h->next = holders;
    holders = h;
    pthread_mutex_unlock(&holders_mu);
    j->fd = fd;
    j->h = h;
    return 0;
}

/* Lets go of the gate and of the entry in holders, once SQLite's
** connection is closed: the descriptors first, so that no new holder
** in this process can have locks for them to drop. */
static void ungate(sqlite_journal *j)
{
    holder **p;
    size_t i;
    if (j->h == NULL)
        return;
    pthread_mutex_lock(&holders_mu);
    close(j->fd);
    for (i = 0; i < j->h->nparked; i++)
        close(j->h->parked[i]);
    for (p = &holders; *p != j->h; p = &(*p)->next)
        ;
    *p = j->h->next;
    pthread_mutex_unlock(&holders_mu);
    free(j->h->parked);
    free(j->h);
    j->h = NULL;
    j->fd = -1;
}

/* Whether a WAL with something in it lies beside the file at path. */
static bool had_wal(const char *path)
{
    char wal[4096 + 8];
    struct stat sb;
    if (snprintf(wal, sizeof wal, "%s-wal", path) >= (int)sizeof wal)
        return true; /* cannot tell: leave it alone */
    return stat(wal, &sb) == 0 && sb.st_size > 0;
}

/* Before SQLite opens the file (the gate held): a file with anything in
** it must be an SQLite database, else it is refused here, untouched.
** *wal tells one in WAL mode (as tand makes them) or an empty file. */
static int check_kind_of_file(sqlite_journal *j, const char *path, bool *wal,
                              char *err, size_t n)
{
    static const char magic[16] = "SQLite format 3";
    unsigned char h[100];
    struct stat sb;
    if (fstat(j->fd, &sb) != 0) {
        say_errno(err, n, "cannot use the journal '%s': %s", path, errno);
        return TAND_EJOURNAL;
    }
    *wal = true;
    if (sb.st_size == 0)
        return 0; /* new */
    if (sb.st_size < (off_t)sizeof h ||
        pread(j->fd, h, sizeof h, 0) != (ssize_t)sizeof h ||
        memcmp(h, magic, sizeof magic) != 0) {
        say(err, n, "'%s' is not a tand journal (or is corrupt)%s", path,
            "");
        return TAND_EJOURNAL;
    }
    *wal = h[18] == 2 && h[19] == 2;
    return 0;
}

/* Takes SQLite's lock, the hold's third layer (see DESIGN): EXCLUSIVE
** locking mode before the first read, then, for a WAL-mode or new file,
** an exclusive transaction that writes nothing. A file in rollback mode
** (not of this tand: it is refused once read, or a journal someone
** converted) is only read here, which keeps a shared lock: committing
** even an empty exclusive transaction there rewrites its header. */
static int hold(sqlite3 *db, bool wal, const char *path, char *err,
                size_t n)
{
    int rc;
    sqlite3_busy_timeout(db, 0);
    rc = sqlite3_exec(db, "PRAGMA locking_mode=EXCLUSIVE", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db,
                          wal ? "BEGIN EXCLUSIVE; COMMIT"
                              : "SELECT 1 FROM sqlite_master LIMIT 1",
                          NULL, NULL, NULL);
    switch (rc & 0xff) {
    case SQLITE_OK:
        /* No busy timeout is restored: from now on no other connection
        ** can hold any lock on this file, so nothing can be busy. */
        return 0;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        /* We hold the gate: this is a program that is not a tand server
        ** (or an older tand), with the file open in SQLite. */
        say(err, n,
            "'%s' is held by another server (in this process or another)"
            "%s",
            path, ", or another SQLite program such as the sqlite3 shell");
        return TAND_EJOURNALLOCKED;
    case SQLITE_NOTADB:
        say(err, n, "'%s' is not a tand journal (or is corrupt): %s", path,
            sqlite3_errmsg(db));
        return TAND_EJOURNAL;
    case SQLITE_CORRUPT:
        say(err, n, "'%s' is truncated or corrupt: %s", path,
            sqlite3_errmsg(db));
        return TAND_EJOURNAL;
    default:
        say(err, n, "cannot use the journal '%s': %s", path,
            sqlite3_errmsg(db));
        return TAND_EJOURNAL;
    }
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | p[3];
}

/* Refuses a database file that is not whole, with the lock held; *empty
** tells a 0-byte file. SQLite counts a partial last page as a page and
** trusts the header's page count only up to the file's pages, so a file
** cut inside its last page passes its checks until that page is read.
** Without a WAL beside it the file must be whole pages, as many as its
** header says (when that count is valid: non-zero and written by the
** same change as the header's change counter). With a non-empty WAL the
** file may be mid-checkpoint: SQLite's recovery and quick_check decide.
** It is read after SQLite's first transaction, so a hot rollback journal
** has been rolled back; through the gate's descriptor (see DESIGN). */
static int check_whole(sqlite_journal *j, const char *path, bool *empty,
                       char *err, size_t n)
{
    unsigned char h[100];
    const char *wal;
    struct stat sb;
    uint32_t page, count;
    off_t size;
    char why[160];

    *empty = false;
    if (fstat(j->fd, &sb) != 0) {
        say_errno(err, n, "cannot use the journal '%s': %s", path, errno);
        return TAND_EJOURNAL;
    }
    if ((size = sb.st_size) == 0) {
        *empty = true;
        return 0;
    }
    wal = sqlite3_filename_wal(sqlite3_db_filename(j->db, "main"));
    if (wal != NULL && stat(wal, &sb) == 0 && sb.st_size > 0)
        return 0;
    if (size < (off_t)sizeof h || pread(j->fd, h, sizeof h, 0) !=
                                      (ssize_t)sizeof h) {
        snprintf(why, sizeof why, "%lld bytes, less than a header",
                 (long long)size);
        say(err, n, "'%s' is truncated or corrupt: %s", path, why);
        return TAND_EJOURNAL;
    }
    page = (uint32_t)h[16] << 8 | h[17];
    if (page == 1)
        page = 65536;
    if (page < 512 || (page & (page - 1)) != 0) {
        snprintf(why, sizeof why, "its header gives a page size of %u",
                 (unsigned)page);
        say(err, n, "'%s' is truncated or corrupt: %s", path, why);
        return TAND_EJOURNAL;
    }
    count = be32(h + 28);
    if (size % page != 0) {
        snprintf(why, sizeof why,
                 "%lld bytes is not a whole number of %u-byte pages",
                 (long long)size, (unsigned)page);
        say(err, n, "'%s' is truncated or corrupt: %s", path, why);
        return TAND_EJOURNAL;
    }
    if (count != 0 && memcmp(h + 24, h + 92, 4) == 0 &&
        (off_t)count * page != size) {
        snprintf(why, sizeof why,
                 "its header says %u pages of %u bytes, the file has %lld "
                 "bytes",
                 (unsigned)count, (unsigned)page, (long long)size);
        say(err, n, "'%s' is truncated or corrupt: %s", path, why);
        return TAND_EJOURNAL;
    }
    return 0;
}

/* Whether the database has any schema (tables); 1, 0, or a negative
** error with err set. */
static int has_schema(sqlite3 *db, const char *path, char *err, size_t n)
{
    sqlite3_stmt *st;
    int rc;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master LIMIT 1", -1,
                           &st, NULL) != SQLITE_OK) {
        say(err, n, "'%s' is truncated or corrupt: %s", path,
            sqlite3_errmsg(db));
        return TAND_EJOURNAL;
    }
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        say(err, n, "'%s' is truncated or corrupt: %s", path,
            sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : TAND_EJOURNAL;
}

/* Makes a new journal's schema inside a transaction left open: the
** server commits it with init's writes (its first batch), so a crash or
** a failed init leaves a file with no schema, which is new again. */
static int create_schema(sqlite_journal *j, const char *kind)
{
    char q[256];
    if (exec(j, "BEGIN") != 0)
        return TAND_EJOURNAL;
    j->in_tx = true;
    if (exec(j, "CREATE TABLE meta(key TEXT PRIMARY KEY, value)") != 0 ||
        exec(j, "CREATE TABLE queue(seq INTEGER PRIMARY KEY, "
                "number INTEGER NOT NULL UNIQUE)") != 0)
        return TAND_EJOURNAL;
    snprintf(q, sizeof q,
             "INSERT INTO meta VALUES ('format', '" FORMAT "'), "
             "('version', %d), ('kind', '%s')",
             VERSION, kind);
    return exec(j, q);
}

/* Opens (or creates) the journal at `path` for a server of `kind` and
** holds it until tand__journal_close (or the process's end). Returns 0;
** TAND_EJOURNALLOCKED when another server, here or in another process,
** holds it; TAND_EJOURNAL when it cannot be opened or is not a whole,
** sound tand journal of this kind and version; TAND_EINVAL for a bad
** kind; TAND_ENOMEM. On failure *out is NULL, `err` says why naming the
** path, and an existing file is unchanged (none is ever removed; a path
** that did not exist may be left as an empty file, new to the next
** start). */
static const journal_ops sqlite_ops;

int tand__sqlite_journal_open(const char *path, const char *kind,
                              int durability, tand_journal **out, char *err,
                              size_t n)
{
    sqlite_journal *j;
    bool empty = false, wal = false;
    int rc, i;

    *out = NULL;
    if (strlen(kind) > 32 || strchr(kind, '\'') != NULL)
        return TAND_EINVAL;
    if ((j = tand__calloc(1, sizeof *j)) == NULL)
        return TAND_ENOMEM;
    j->base.ops = &sqlite_ops;
    j->fd = -1;
    if ((rc = gate(j, path, err, n)) != 0) {
        free(j);
        return rc;
    }
    if ((rc = check_kind_of_file(j, path, &wal, err, n)) != 0) {
        ungate(j);
        free(j);
        return rc;
    }
    /* the gate made the file: SQLite only opens it */
    rc = sqlite3_open_v2(path, &j->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK && had_wal(path))
        /* if the file is refused, its WAL is left as it was */
        sqlite3_db_config(j->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    if (rc != SQLITE_OK) {
        say(err, n, "cannot open the journal '%s': %s", path,
            j->db ? sqlite3_errmsg(j->db) : sqlite3_errstr(rc));
        rc = TAND_EJOURNAL;
    } else {
        sqlite3_extended_result_codes(j->db, 1);
        rc = hold(j->db, wal, path, err, n);
    }
    if (rc == 0)
        rc = check_whole(j, path, &empty, err, n);
    if (rc == 0 && !empty) {
        /* no schema: what a failed tand start leaves (in WAL mode, set
        ** first), new again; a schema-less file of another program is
        ** not ours to write */
        rc = has_schema(j->db, path, err, n);
        empty = rc == 0 && wal;
        if (rc == 0 && !wal)
            say(err, n, "'%s' is not a tand journal (or is corrupt)%s", path,
                "");
        rc = rc < 0 ? rc : rc == 0 && !wal ? TAND_EJOURNAL : 0;
    }
    if (rc == 0 && !empty)
        rc = check_existing(j->db, path, kind, err, n);
    if (rc != 0) {
        sqlite3_close(j->db);
        ungate(j);
        free(j);
        return rc;
    }
    /* A new journal is made in WAL mode, which the file keeps; an
    ** existing one is used in the mode it has, so that opening it writes
    ** nothing before the server's first change. */
    j->base.fresh = empty;
    rc = empty ? exec(j, "PRAGMA journal_mode=WAL") : 0;
    if (rc == 0)
        rc = exec(j, durability == TAND_DURABLE_OS
                         ? "PRAGMA synchronous=OFF"
                         : "PRAGMA synchronous=FULL");
    if (rc == 0 && empty)
        rc = create_schema(j, kind);
    for (i = 0; rc == 0 && i < ST_COUNT; i++)
        if (sqlite3_prepare_v2(j->db, sql[i], -1, &j->st[i], NULL) !=
            SQLITE_OK)
            rc = fail(j, sql[i]);
    if (rc != 0) {
        say(err, n, "cannot use the journal '%s': %s", path, j->error);
        if (j->in_tx)
            sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, NULL);
        close_db(j);
        ungate(j);
        free(j);
        return TAND_EJOURNAL;
    }
    /* accepted: its WAL is folded in at close again */
    sqlite3_db_config(j->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0, NULL);
    *out = &j->base;
    return 0;
}

/* Closes the journal and lets go of it: SQLite's connection (its locks
** with it, after folding the WAL in), then the gate (see DESIGN). */
static void sq_close(tand_journal *tj)
{
    sqlite_journal *j = (sqlite_journal *)tj;
    if (j->in_tx)
        sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, NULL);
    close_db(j);
    ungate(j);
    free(j);
}

static int sq_commit(tand_journal *tj, char *err, size_t n)
{
    sqlite_journal *j = (sqlite_journal *)tj;
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

static void sq_rollback(tand_journal *tj)
{
    sqlite_journal *j = (sqlite_journal *)tj;
    if (!sqlite3_get_autocommit(j->db))
        sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, NULL);
    j->in_tx = false;
    j->failed = 0;
}

static bool sq_dirty(const tand_journal *tj)
{
    const sqlite_journal *j = (const sqlite_journal *)tj;
    return j->in_tx || j->failed;
}

static int sq_set_int(tand_journal *tj, const char *key, int64_t v)
{
    sqlite_journal *j = (sqlite_journal *)tj;
    sqlite3_bind_text(j->st[ST_SET], 1, key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(j->st[ST_SET], 2, v);
    return step_write(j, j->st[ST_SET], "saving a value");
}

static int sq_set_blob(tand_journal *tj, const char *key, const void *p,
                       size_t n)
{
    sqlite_journal *j = (sqlite_journal *)tj;
    if (n > INT32_MAX)
        return TAND_EINVAL;
    sqlite3_bind_text(j->st[ST_SET], 1, key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(j->st[ST_SET], 2, p ? p : "", (int)n,
                      SQLITE_TRANSIENT);
    return step_write(j, j->st[ST_SET], "saving a value");
}

/* Steps the GET statement for key; the caller reads column 0 and resets. */
static int get(sqlite_journal *j, const char *key, int *found)
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

static int sq_get_int(tand_journal *tj, const char *key, int64_t *v,
                      int *found)
{
    sqlite_journal *j = (sqlite_journal *)tj;
    int rc;
    if ((rc = get(j, key, found)) != 0 || !*found)
        return rc;
    if (sqlite3_column_type(j->st[ST_GET], 0) != SQLITE_INTEGER)
        rc = TAND_EJOURNAL; /* not what this key holds */
    else
        *v = sqlite3_column_int64(j->st[ST_GET], 0);
    sqlite3_reset(j->st[ST_GET]);
    return rc;
}

static int sq_get_blob(tand_journal *tj, const char *key, char **out,
                       size_t *n, int *found)
{
    sqlite_journal *j = (sqlite_journal *)tj;
    const void *p;
    int rc, len;
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

static int sq_queue_push(tand_journal *tj, int64_t number)
{
    sqlite_journal *j = (sqlite_journal *)tj;
    sqlite3_bind_int64(j->st[ST_PUSH], 1, number);
    return step_write(j, j->st[ST_PUSH], "queueing a number");
}

static int sq_queue_remove(tand_journal *tj, int64_t number)
{
    sqlite_journal *j = (sqlite_journal *)tj;
    sqlite3_bind_int64(j->st[ST_REMOVE], 1, number);
    return step_write(j, j->st[ST_REMOVE], "removing a number");
}

static int sq_queue_clear(tand_journal *tj)
{
    sqlite_journal *j = (sqlite_journal *)tj;
    return step_write(j, j->st[ST_CLEAR], "clearing the queue");
}

static int sq_queue_load(tand_journal *tj,
                         int (*fn)(void *ud, int64_t number), void *ud)
{
    sqlite_journal *j = (sqlite_journal *)tj;
    sqlite3_stmt *st;
    int rc = 0, s;
    st = j->st[ST_LOAD];
    while ((s = sqlite3_step(st)) == SQLITE_ROW && rc == 0)
        rc = fn(ud, sqlite3_column_int64(st, 0));
    if (rc == 0 && s != SQLITE_DONE && s != SQLITE_ROW)
        rc = fail(j, "reading the queue");
    sqlite3_reset(st);
    return rc;
}

static const journal_ops sqlite_ops = {
    .close = sq_close,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .dirty = sq_dirty,
    .set_int = sq_set_int,
    .set_blob = sq_set_blob,
    .get_int = sq_get_int,
    .get_blob = sq_get_blob,
    .queue_push = sq_queue_push,
    .queue_remove = sq_queue_remove,
    .queue_clear = sq_queue_clear,
    .queue_load = sq_queue_load};
