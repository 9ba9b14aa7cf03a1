/*
** cluster_journal.c - the journal of a clustered machine: its owner's
** batches appended to the machine's fenced log (cluster_log.c), the same
** effects a SQLite journal keeps (named integers and blobs, a queue of
** numbers), so that the machines journal alike on either (journal_ops).
**
** DESIGN: the log is the truth; this host keeps what replaying it gives
** in memory. Opening replays every entry, then appends a fence (this
** host, its epoch, the machine's kind) expecting the entry it replayed
** last: if another host appended meanwhile, the fence is refused and this
** host does not own the machine. From then on each commit appends the
** batch's changes expecting the entry before it, so the first append of
** a deposed owner is refused (not_owner) and nothing it answers comes
** from a stale state. A batch without changes appends a marker, since
** its replies too must come from a state still current. The changes are
** applied to the memory as they are made (a batch reads its own
** writes); a commit or a rollback that fails leaves that memory wrong,
** so the journal then refuses everything: the server stops anyway, and
** whoever owns the machine next replays the log.
** Snapshots keep the log short: once the entries since the last one add
** up to as many bytes as it held (and to snapshot_min at least), a
** commit appends the whole memory after its batch, in chunks that fit
** the servers' max_payload, then purges the entries before it. Its
** chunks are consecutive fenced entries, so a replay applies a snapshot
** only when it reads all of them in a row (an owner that died halfway
** left the entries before it in place); the purge is only a saving, and
** one that fails is tried again at the next snapshot.
** Entries (MessagePack): ["fence", kind, host, epoch], ["batch",
** [change...]], a change being ["i", key, int], ["b", key, bytes],
** ["p", n] (queued), ["r", n] (removed) or ["c"] (cleared), and ["snap",
** id, i, n, bytes], chunk i of n of the snapshot `id`, whose bytes put
** together are [kind, [[key, int or bytes]...], [number...]].
*/
#include "cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct meta {
    char *key;
    int is_blob;
    int64_t v;
    char *blob;
    size_t n;
} meta;

typedef struct cluster_journal {
    tand_journal base;      /* first: the interface */
    tand__log *log;         /* borrowed: the machine's */
    char kind[33];
    char host[TAND_NAME_MAX + 1];
    uint64_t epoch;
    int64_t timeout_ms;     /* for an append */
    uint64_t last;          /* the last entry replayed or appended */
    uint64_t batches;       /* appended by this owner, for their ids */
    meta *meta;
    size_t nmeta, capmeta;
    int64_t *q;             /* the queue, q[head..nq) in order */
    size_t head, nq, capq;
    tand_table *queued;     /* number -> present */
    tand_buf batch;         /* this batch's changes, packed */
    uint32_t nchanges;
    size_t snapshot_min;    /* see tand__cluster_journal_set_snapshot_min */
    size_t snap_bytes;      /* the last snapshot's size */
    size_t since_bytes;     /* of the entries after it */
    tand_buf snap;          /* a snapshot being replayed, */
    char snap_id[TAND_NAME_MAX + 48]; /* its id, */
    int64_t snap_next, snap_n; /* the chunk expected next, of snap_n */
    int failed;             /* refuse everything from now on */
    char error[256];
} cluster_journal;

#define SNAPSHOT_MIN (64 * 1024)
/* room in an entry for a chunk's framing: its id is at most a host name
** and two numbers */
#define CHUNK_FRAMING 400

static const journal_ops cluster_ops;

/* ---- the memory: meta and queue ---- */

static meta *find_meta(cluster_journal *j, const char *key)
{
    size_t i;
    for (i = 0; i < j->nmeta; i++)
        if (strcmp(j->meta[i].key, key) == 0)
            return &j->meta[i];
    return NULL;
}

static int put_meta(cluster_journal *j, const char *key, size_t klen,
                    int is_blob, int64_t v, const char *p, size_t n)
{
    char name[256];
    meta *m;
    char *copy = NULL;
    if (klen >= sizeof name)
        return TAND_EINVAL;
    memcpy(name, key, klen);
    name[klen] = '\0';
    if (is_blob && (copy = tand__malloc(n ? n : 1)) == NULL)
        return TAND_ENOMEM;
    if (is_blob && n > 0)
        memcpy(copy, p, n);
    if ((m = find_meta(j, name)) == NULL) {
        if (j->nmeta == j->capmeta) {
            size_t cap = j->capmeta ? 2 * j->capmeta : 8;
            meta *grown = tand__realloc(j->meta, cap * sizeof *grown);
            if (grown == NULL) {
                free(copy);
                return TAND_ENOMEM;
            }
            j->meta = grown;
            j->capmeta = cap;
        }
        m = &j->meta[j->nmeta];
        memset(m, 0, sizeof *m);
        if ((m->key = tand__strdup(name)) == NULL) {
            free(copy);
            return TAND_ENOMEM;
        }
        j->nmeta++;
    }
    free(m->blob);
    m->is_blob = is_blob;
    m->v = v;
    m->blob = copy;
    m->n = is_blob ? n : 0;
    return 0;
}

static int push_number(cluster_journal *j, int64_t n)
{
    if (tand__table_get(j->queued, &n, sizeof n) != NULL)
        return TAND_EJOURNAL; /* queued already: a broken log or caller */
    if (j->nq == j->capq) {
        size_t live = j->nq - j->head, cap;
        int64_t *grown;
        if (j->head > 0 && j->head >= live) { /* room at the front */
            memmove(j->q, j->q + j->head, live * sizeof *j->q);
            j->head = 0;
            j->nq = live;
        } else {
            cap = j->capq ? 2 * j->capq : 64;
            if ((grown = tand__realloc(j->q, cap * sizeof *grown)) == NULL)
                return TAND_ENOMEM;
            j->q = grown;
            j->capq = cap;
        }
    }
    if (tand__table_put(j->queued, &n, sizeof n, j) != 0)
        return TAND_ENOMEM;
    j->q[j->nq++] = n;
    return 0;
}

static int remove_number(cluster_journal *j, int64_t n)
{
    size_t i;
    if (tand__table_del(j->queued, &n, sizeof n) == NULL)
        return TAND_EJOURNAL; /* not queued */
    if (j->q[j->head] == n) { /* the front, as most serves are */
        j->head++;
        return 0;
    }
    for (i = j->head; i < j->nq && j->q[i] != n; i++)
        ;
    memmove(j->q + i, j->q + i + 1, (j->nq - i - 1) * sizeof *j->q);
    j->nq--;
    return 0;
}

static void clear_numbers(cluster_journal *j)
{
    size_t i;
    for (i = j->head; i < j->nq; i++)
        tand__table_del(j->queued, &j->q[i], sizeof j->q[i]);
    j->head = j->nq = 0;
}

static void clear_meta(cluster_journal *j)
{
    size_t i;
    for (i = 0; i < j->nmeta; i++) {
        free(j->meta[i].key);
        free(j->meta[i].blob);
    }
    j->nmeta = 0;
}

/* ---- entries ---- */

static int corrupt(cluster_journal *j, uint64_t seq, const char *why,
                   char *err, size_t n)
{
    snprintf(err, n, "entry %llu of the stream %s is not a sound tand "
             "entry: %s", (unsigned long long)seq, tand__log_stream(j->log),
             why);
    return TAND_EJOURNAL;
}

/* Applies one change read from r. */
static int apply_change(cluster_journal *j, tand_reader *r)
{
    tand_item it, key, val;
    uint32_t n;
    if (tand_unpack(r, &it) != 0 || it.type != TAND_T_ARRAY || it.v.n < 1)
        return TAND_EJOURNAL;
    n = it.v.n;
    if (tand_unpack(r, &it) != 0 || it.type != TAND_T_STR || it.v.s.len != 1)
        return TAND_EJOURNAL;
    switch (it.v.s.p[0]) {
    case 'i':
    case 'b':
        if (n != 3 || tand_unpack(r, &key) != 0 || key.type != TAND_T_STR ||
            tand_unpack(r, &val) != 0)
            return TAND_EJOURNAL;
        if (it.v.s.p[0] == 'i')
            return val.type == TAND_T_INT
                       ? put_meta(j, key.v.s.p, key.v.s.len, 0, val.v.i,
                                  NULL, 0)
                       : TAND_EJOURNAL;
        return val.type == TAND_T_STR
                   ? put_meta(j, key.v.s.p, key.v.s.len, 1, 0, val.v.s.p,
                              val.v.s.len)
                   : TAND_EJOURNAL;
    case 'p':
    case 'r':
        if (n != 2 || tand_unpack(r, &val) != 0 || val.type != TAND_T_INT)
            return TAND_EJOURNAL;
        return it.v.s.p[0] == 'p' ? push_number(j, val.v.i)
                                  : remove_number(j, val.v.i);
    case 'c':
        if (n != 1)
            return TAND_EJOURNAL;
        clear_numbers(j);
        return 0;
    }
    return TAND_EJOURNAL;
}

static bool is(const tand_item *it, const char *s)
{
    return it->type == TAND_T_STR && it->v.s.len == strlen(s) &&
           memcmp(it->v.s.p, s, it->v.s.len) == 0;
}

/* TAND_ECONFIG unless kind (a string item) is the journal's. */
static int check_kind(cluster_journal *j, const tand_item *kind, char *err,
                      size_t n)
{
    if (is(kind, j->kind))
        return 0;
    snprintf(err, n, "the stream %s holds a machine of another kind (%.*s, "
             "not %s)", tand__log_stream(j->log),
             (int)(kind->v.s.len > 32 ? 32 : kind->v.s.len), kind->v.s.p,
             j->kind);
    return TAND_ECONFIG;
}

/* Replaces the memory with a whole snapshot's bytes, read at seq. */
static int apply_snapshot(cluster_journal *j, uint64_t seq, char *err,
                          size_t n)
{
    tand_reader r;
    tand_item it, key, val;
    uint32_t i, count;
    int rc;
    tand_reader_init(&r, j->snap.data, j->snap.size);
    if (tand_unpack(&r, &it) != 0 || it.type != TAND_T_ARRAY ||
        it.v.n != 3 || tand_unpack(&r, &it) != 0 || it.type != TAND_T_STR)
        return corrupt(j, seq, "a snapshot without a kind", err, n);
    if ((rc = check_kind(j, &it, err, n)) != 0)
        return rc;
    clear_meta(j);
    clear_numbers(j);
    if (tand_unpack(&r, &it) != 0 || it.type != TAND_T_ARRAY)
        return corrupt(j, seq, "a snapshot without its names", err, n);
    for (i = 0, count = it.v.n; i < count; i++) {
        if (tand_unpack(&r, &it) != 0 || it.type != TAND_T_ARRAY ||
            it.v.n != 2 || tand_unpack(&r, &key) != 0 ||
            key.type != TAND_T_STR || tand_unpack(&r, &val) != 0 ||
            (val.type != TAND_T_INT && val.type != TAND_T_STR))
            return corrupt(j, seq, "a snapshot's bad name", err, n);
        rc = val.type == TAND_T_INT
                 ? put_meta(j, key.v.s.p, key.v.s.len, 0, val.v.i, NULL, 0)
                 : put_meta(j, key.v.s.p, key.v.s.len, 1, 0, val.v.s.p,
                            val.v.s.len);
        if (rc != 0)
            return rc == TAND_ENOMEM ? rc
                                     : corrupt(j, seq, "a snapshot's bad "
                                                       "name", err, n);
    }
    if (tand_unpack(&r, &it) != 0 || it.type != TAND_T_ARRAY)
        return corrupt(j, seq, "a snapshot without its queue", err, n);
    for (i = 0, count = it.v.n; i < count; i++) {
        if (tand_unpack(&r, &val) != 0 || val.type != TAND_T_INT)
            return corrupt(j, seq, "a snapshot's bad number", err, n);
        if ((rc = push_number(j, val.v.i)) != 0)
            return rc == TAND_ENOMEM ? rc
                                     : corrupt(j, seq, "a number twice in "
                                                       "a snapshot", err, n);
    }
    return 0;
}

/* A snapshot's chunk (the rest of ["snap", id, i, n, bytes] in r):
** gathered while they come in a row; the last applies the whole. */
static int apply_chunk(cluster_journal *j, uint64_t seq, tand_reader *r,
                       int *applied, char *err, size_t n)
{
    tand_item id, i, count, bytes;
    if (tand_unpack(r, &id) != 0 || id.type != TAND_T_STR ||
        id.v.s.len >= sizeof j->snap_id || tand_unpack(r, &i) != 0 ||
        i.type != TAND_T_INT || tand_unpack(r, &count) != 0 ||
        count.type != TAND_T_INT || count.v.i < 1 || i.v.i < 0 ||
        i.v.i >= count.v.i || tand_unpack(r, &bytes) != 0 ||
        bytes.type != TAND_T_STR)
        return corrupt(j, seq, "a bad snapshot chunk", err, n);
    if (i.v.i == 0) {
        j->snap.size = 0;
        memcpy(j->snap_id, id.v.s.p, id.v.s.len);
        j->snap_id[id.v.s.len] = '\0';
        j->snap_next = 0;
        j->snap_n = count.v.i;
    } else if (j->snap_n == 0 || !is(&id, j->snap_id) ||
               i.v.i != j->snap_next || count.v.i != j->snap_n) {
        return 0; /* not the one being gathered: only its owner's are */
    }
    tand_pack_raw(&j->snap, bytes.v.s.p, bytes.v.s.len);
    if (j->snap.err != 0)
        return TAND_ENOMEM;
    if (++j->snap_next < j->snap_n)
        return 0;
    j->snap_n = 0;
    *applied = 1;
    j->snap_bytes = j->snap.size; /* the log is counted from here */
    j->since_bytes = 0;
    return apply_snapshot(j, seq, err, n);
}

/* Applies entry seq (data, len); *batch tells whether it changed the
** memory (a batch, or the last chunk of a snapshot). */
static int apply_entry(cluster_journal *j, uint64_t seq, const char *data,
                       size_t len, int *batch, char *err, size_t n)
{
    tand_reader r;
    tand_item it, kind;
    uint32_t i, count;
    int rc;
    *batch = 0;
    tand_reader_init(&r, data, len);
    if (tand_unpack(&r, &it) != 0 || it.type != TAND_T_ARRAY || it.v.n < 2 ||
        tand_unpack(&r, &kind) != 0 || kind.type != TAND_T_STR)
        return corrupt(j, seq, "not an entry", err, n);
    count = it.v.n;
    if (is(&kind, "snap")) {
        if (count != 5)
            return corrupt(j, seq, "a bad snapshot chunk", err, n);
        return apply_chunk(j, seq, &r, batch, err, n);
    }
    j->snap_n = 0; /* a snapshot cut short: the entries before it stand */
    if (is(&kind, "fence")) {
        if (count != 4 || tand_unpack(&r, &it) != 0 || it.type != TAND_T_STR)
            return corrupt(j, seq, "a fence without a kind", err, n);
        return check_kind(j, &it, err, n);
    }
    if (!is(&kind, "batch") || count != 2 || tand_unpack(&r, &it) != 0 ||
        it.type != TAND_T_ARRAY)
        return corrupt(j, seq, "neither a fence nor a batch", err, n);
    for (i = 0; i < it.v.n; i++)
        if ((rc = apply_change(j, &r)) != 0)
            return rc == TAND_ENOMEM ? rc
                                     : corrupt(j, seq, "a bad change", err, n);
    *batch = 1;
    return 0;
}

/* Appends entry (b) as this owner's next, expecting j->last. */
static int append(cluster_journal *j, const tand_buf *b, char *err, size_t n)
{
    char id[TAND_NAME_MAX + 64];
    uint64_t seq = 0;
    int rc;
    snprintf(id, sizeof id, "%s:%llu:%llu", j->host,
             (unsigned long long)j->epoch, (unsigned long long)j->batches);
    rc = tand__log_append(j->log, b->data, b->size, id, j->last,
                          j->timeout_ms, &seq, err, n);
    if (rc == TAND_ETIMEDOUT) {
        /* once more, the same entry: "duplicate" if the first went in */
        rc = tand__log_append(j->log, b->data, b->size, id, j->last,
                              j->timeout_ms, &seq, err, n);
        if (rc == TAND_ENOTOWNER || rc == TAND_ETIMEDOUT) {
            snprintf(err, n, "no acknowledgement of the append to %s: its "
                     "outcome is unknown", tand__log_stream(j->log));
            return TAND_ETIMEDOUT;
        }
    }
    if (rc == 0) {
        j->last = seq;
        j->batches++;
    }
    return rc;
}

/* ---- journal_ops ---- */

static void cj_close(tand_journal *tj)
{
    cluster_journal *j = (cluster_journal *)tj;
    clear_meta(j);
    free(j->meta);
    free(j->q);
    tand__table_free(j->queued);
    tand_buf_free(&j->batch);
    tand_buf_free(&j->snap);
    free(j);
}

/* Packs the whole memory as a snapshot's bytes. */
static int pack_snapshot(cluster_journal *j, tand_buf *b)
{
    size_t i;
    tand_buf_init(b);
    tand_pack_array(b, 3);
    tand_pack_str(b, j->kind, strlen(j->kind));
    tand_pack_array(b, (uint32_t)j->nmeta);
    for (i = 0; i < j->nmeta; i++) {
        tand_pack_array(b, 2);
        tand_pack_str(b, j->meta[i].key, strlen(j->meta[i].key));
        if (j->meta[i].is_blob)
            tand_pack_str(b, j->meta[i].blob ? j->meta[i].blob : "",
                          j->meta[i].n);
        else
            tand_pack_int(b, j->meta[i].v);
    }
    tand_pack_array(b, (uint32_t)(j->nq - j->head));
    for (i = j->head; i < j->nq; i++)
        tand_pack_int(b, j->q[i]);
    return b->err ? TAND_ENOMEM : 0;
}

/* Appends the memory as a snapshot, in chunks that fit an entry, then
** purges the entries before its first. 0, or an append's failure (then
** where the log stands is not known: the journal refuses from then on). */
static int write_snapshot(cluster_journal *j)
{
    size_t max = tand__log_max_entry(j->log), chunk, off = 0;
    int64_t i, count;
    uint64_t first = 0;
    tand_buf body, e;
    char id[sizeof j->snap_id], why[256];
    int rc;
    chunk = max > 2 * CHUNK_FRAMING ? max - CHUNK_FRAMING : max / 2;
    if (pack_snapshot(j, &body) != 0) {
        tand_buf_free(&body);
        return 0; /* no memory for it now: the next commit tries again */
    }
    count = (int64_t)((body.size + chunk - 1) / chunk);
    snprintf(id, sizeof id, "%s:%llu:%llu", j->host,
             (unsigned long long)j->epoch, (unsigned long long)j->batches);
    tand_buf_init(&e);
    for (i = 0, rc = 0; i < count && rc == 0; i++, off += chunk) {
        size_t len = body.size - off < chunk ? body.size - off : chunk;
        e.size = 0;
        tand_pack_array(&e, 5);
        tand_pack_str(&e, "snap", 4);
        tand_pack_str(&e, id, strlen(id));
        tand_pack_int(&e, i);
        tand_pack_int(&e, count);
        tand_pack_str(&e, body.data + off, len);
        rc = e.err ? TAND_ENOMEM : append(j, &e, j->error, sizeof j->error);
        if (rc == 0 && i == 0)
            first = j->last;
    }
    if (rc == 0) {
        j->snap_bytes = body.size;
        j->since_bytes = 0;
        /* a purge that fails leaves a longer log, no wrong one */
        tand__log_purge(j->log, first, why, sizeof why);
    }
    tand_buf_free(&e);
    tand_buf_free(&body);
    return rc;
}

static void start_batch(cluster_journal *j)
{
    j->batch.size = 0;
    j->nchanges = 0;
}

static int cj_commit(tand_journal *tj, char *err, size_t n)
{
    cluster_journal *j = (cluster_journal *)tj;
    tand_buf b;
    int rc;
    if (j->failed) {
        snprintf(err, n, "%s", j->error);
        return j->failed;
    }
    if (j->batch.err != 0) {
        j->failed = TAND_ENOMEM;
        snprintf(j->error, sizeof j->error, "not enough memory for a batch");
        snprintf(err, n, "%s", j->error);
        return j->failed;
    }
    tand_buf_init(&b);
    tand_pack_array(&b, 2);
    tand_pack_str(&b, "batch", 5);
    tand_pack_array(&b, j->nchanges);
    tand_pack_raw(&b, j->batch.data, j->batch.size);
    rc = b.err ? TAND_ENOMEM : append(j, &b, j->error, sizeof j->error);
    j->since_bytes += b.size;
    tand_buf_free(&b);
    start_batch(j);
    if (rc != 0) { /* the memory holds the batch: no use any more */
        j->failed = rc;
        snprintf(err, n, "%s", j->error);
        return rc;
    }
    /* The batch is in: its replies stand whatever the snapshot does. */
    if (j->since_bytes >= j->snap_bytes && j->since_bytes >= j->snapshot_min)
        j->failed = write_snapshot(j);
    return 0;
}

static void cj_rollback(tand_journal *tj)
{
    cluster_journal *j = (cluster_journal *)tj;
    if (j->nchanges > 0 && !j->failed) {
        j->failed = TAND_EJOURNAL;
        snprintf(j->error, sizeof j->error, "a batch of the stream %s was "
                 "rolled back", tand__log_stream(j->log));
    }
    start_batch(j);
}

static bool cj_dirty(const tand_journal *tj)
{
    const cluster_journal *j = (const cluster_journal *)tj;
    return j->nchanges > 0 || j->failed;
}

/* Packs one change into the batch and applies it. */
static int change(cluster_journal *j, char op, const char *key, int64_t v,
                  const void *p, size_t n)
{
    int rc;
    char c = op;
    if (j->failed)
        return j->failed;
    tand_pack_array(&j->batch, op == 'c' ? 1 : key ? 3 : 2);
    tand_pack_str(&j->batch, &c, 1);
    if (key != NULL)
        tand_pack_str(&j->batch, key, strlen(key));
    if (op == 'b')
        tand_pack_str(&j->batch, p ? p : "", n);
    else if (op != 'c')
        tand_pack_int(&j->batch, v);
    j->nchanges++;
    switch (op) {
    case 'i': rc = put_meta(j, key, strlen(key), 0, v, NULL, 0); break;
    case 'b': rc = put_meta(j, key, strlen(key), 1, 0, p, n); break;
    case 'p': rc = push_number(j, v); break;
    case 'r': rc = remove_number(j, v); break;
    default: clear_numbers(j); rc = 0; break;
    }
    if (rc != 0) { /* what the memory holds is no longer the batch's */
        j->failed = rc;
        snprintf(j->error, sizeof j->error, "%s",
                 rc == TAND_ENOMEM ? "not enough memory"
                 : op == 'p'       ? "a number queued twice"
                                   : "a number not queued removed");
    }
    return rc;
}

static int cj_set_int(tand_journal *tj, const char *key, int64_t v)
{
    return change((cluster_journal *)tj, 'i', key, v, NULL, 0);
}

static int cj_set_blob(tand_journal *tj, const char *key, const void *p,
                       size_t n)
{
    return change((cluster_journal *)tj, 'b', key, 0, p, n);
}

static int cj_get_int(tand_journal *tj, const char *key, int64_t *v,
                      int *found)
{
    meta *m = find_meta((cluster_journal *)tj, key);
    if (m == NULL)
        return 0;
    if (m->is_blob)
        return TAND_EJOURNAL; /* not what this key holds */
    *v = m->v;
    *found = 1;
    return 0;
}

static int cj_get_blob(tand_journal *tj, const char *key, char **out,
                       size_t *n, int *found)
{
    meta *m = find_meta((cluster_journal *)tj, key);
    if (m == NULL)
        return 0;
    if (!m->is_blob)
        return TAND_EJOURNAL;
    if (m->n > 0) {
        if ((*out = tand__malloc(m->n)) == NULL)
            return TAND_ENOMEM;
        memcpy(*out, m->blob, m->n);
        *n = m->n;
    }
    *found = 1;
    return 0;
}

static int cj_queue_push(tand_journal *tj, int64_t number)
{
    return change((cluster_journal *)tj, 'p', NULL, number, NULL, 0);
}

static int cj_queue_remove(tand_journal *tj, int64_t number)
{
    return change((cluster_journal *)tj, 'r', NULL, number, NULL, 0);
}

static int cj_queue_clear(tand_journal *tj)
{
    return change((cluster_journal *)tj, 'c', NULL, 0, NULL, 0);
}

static int cj_queue_load(tand_journal *tj, int (*fn)(void *, int64_t),
                         void *ud)
{
    cluster_journal *j = (cluster_journal *)tj;
    size_t i;
    int rc = 0;
    for (i = j->head; i < j->nq && rc == 0; i++)
        rc = fn(ud, j->q[i]);
    return rc;
}

static const journal_ops cluster_ops = {
    .close = cj_close,
    .commit = cj_commit,
    .rollback = cj_rollback,
    .dirty = cj_dirty,
    .set_int = cj_set_int,
    .set_blob = cj_set_blob,
    .get_int = cj_get_int,
    .get_blob = cj_get_blob,
    .queue_push = cj_queue_push,
    .queue_remove = cj_queue_remove,
    .queue_clear = cj_queue_clear,
    .queue_load = cj_queue_load};

/* ---- opening: replay, then fence ---- */

typedef struct replay {
    cluster_journal *j;
    char *err;
    size_t n;
    int batches; /* batch entries applied */
} replay;

static int replay_one(void *ud, uint64_t seq, const char *data, size_t len)
{
    replay *r = ud;
    int batch, rc;
    r->j->since_bytes += len; /* from 0 again at a whole snapshot */
    rc = apply_entry(r->j, seq, data, len, &batch, r->err, r->n);
    r->batches += batch;
    return rc;
}

void tand__cluster_journal_set_snapshot_min(tand_journal *tj,
                                            size_t min_bytes)
{
    ((cluster_journal *)tj)->snapshot_min = min_bytes;
}

int tand__cluster_journal_open(tand__log *log, const char *kind,
                               const char *host, uint64_t epoch,
                               int64_t timeout_ms, tand_journal **out,
                               char *err, size_t n)
{
    cluster_journal *j;
    uint64_t last;
    tand_buf b;
    int rc = 0, batches = 0;

    *out = NULL;
    if (log == NULL || kind == NULL || strlen(kind) > 32 || host == NULL ||
        host[0] == '\0' || strlen(host) > TAND_NAME_MAX)
        return TAND_EINVAL;
    if ((j = tand__calloc(1, sizeof *j)) == NULL)
        return TAND_ENOMEM;
    j->base.ops = &cluster_ops;
    j->log = log;
    snprintf(j->kind, sizeof j->kind, "%s", kind);
    snprintf(j->host, sizeof j->host, "%s", host);
    j->epoch = epoch;
    j->timeout_ms = timeout_ms;
    j->snapshot_min = SNAPSHOT_MIN;
    tand_buf_init(&j->batch);
    tand_buf_init(&j->snap);
    if ((j->queued = tand__table_new()) == NULL) {
        free(j);
        return TAND_ENOMEM;
    }
    rc = tand__log_last(log, &last, err, n);
    if (rc == 0) {
        replay r;
        r.j = j;
        r.err = err;
        r.n = n;
        r.batches = 0;
        rc = tand__log_replay(log, last, replay_one, &r, timeout_ms, err, n);
        batches = r.batches;
        tand_buf_free(&j->snap); /* the last snapshot's copy: applied */
    }
    j->last = last;
    j->base.fresh = batches == 0;
    if (rc == 0) {
        tand_buf_init(&b);
        tand_pack_array(&b, 4);
        tand_pack_str(&b, "fence", 5);
        tand_pack_str(&b, kind, strlen(kind));
        tand_pack_str(&b, host, strlen(host));
        tand_pack_int(&b, (int64_t)epoch);
        rc = b.err ? TAND_ENOMEM : append(j, &b, err, n);
        tand_buf_free(&b);
    }
    if (rc != 0) {
        cj_close(&j->base);
        return rc;
    }
    *out = &j->base;
    return 0;
}
