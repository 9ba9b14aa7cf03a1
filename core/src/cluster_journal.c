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
** Entries (MessagePack): ["fence", kind, host, epoch] and ["batch",
** [change...]], a change being ["i", key, int], ["b", key, bytes],
** ["p", n] (queued), ["r", n] (removed) or ["c"] (cleared).
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
    int failed;             /* refuse everything from now on */
    char error[256];
} cluster_journal;

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

/* Applies entry seq (data, len); *batch tells whether it was a batch. */
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
    if (kind.v.s.len == 5 && memcmp(kind.v.s.p, "fence", 5) == 0) {
        if (count != 4 || tand_unpack(&r, &it) != 0 || it.type != TAND_T_STR)
            return corrupt(j, seq, "a fence without a kind", err, n);
        if (it.v.s.len != strlen(j->kind) ||
            memcmp(it.v.s.p, j->kind, it.v.s.len) != 0) {
            snprintf(err, n, "the stream %s holds a machine of another "
                     "kind (%.*s, not %s)", tand__log_stream(j->log),
                     (int)(it.v.s.len > 32 ? 32 : it.v.s.len), it.v.s.p,
                     j->kind);
            return TAND_ECONFIG;
        }
        return 0;
    }
    if (kind.v.s.len != 5 || memcmp(kind.v.s.p, "batch", 5) != 0 ||
        count != 2 || tand_unpack(&r, &it) != 0 || it.type != TAND_T_ARRAY)
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
    size_t i;
    for (i = 0; i < j->nmeta; i++) {
        free(j->meta[i].key);
        free(j->meta[i].blob);
    }
    free(j->meta);
    free(j->q);
    tand__table_free(j->queued);
    tand_buf_free(&j->batch);
    free(j);
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
    tand_buf_free(&b);
    start_batch(j);
    if (rc != 0) { /* the memory holds the batch: no use any more */
        j->failed = rc;
        snprintf(err, n, "%s", j->error);
    }
    return rc;
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
    int batch, rc = apply_entry(r->j, seq, data, len, &batch, r->err, r->n);
    r->batches += batch;
    return rc;
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
    tand_buf_init(&j->batch);
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
