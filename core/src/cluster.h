/*
** cluster.h - what the files of tand's cluster share (built only with
** libnats); not installed.
*/
#ifndef TAND_CLUSTER_H
#define TAND_CLUSTER_H

#include "internal.h"

#include <nats/nats.h>

/* ---- cluster_log.c: a machine's fenced log on JetStream ---- */

typedef struct tand__log tand__log;

/* Opens (creating it if need be) the stream of machine `name` with that
** many replicas. 0, or TAND_EINVAL, TAND_ENOMEM, TAND_ECLUSTER (NATS
** refused: why in err), TAND_ECONFIG (the stream exists with other
** replicas). */
TAND_HIDDEN int tand__log_open(jsCtx *js, const char *name, int replicas,
                               tand__log **out, char *err, size_t errsize);
TAND_HIDDEN void tand__log_close(tand__log *l);
TAND_HIDDEN const char *tand__log_stream(const tand__log *l);

/* The largest entry appended: the servers' max_payload less room for
** the headers (tand__log_set_max_entry; the tests make it small). A
** larger entry is TAND_EINVAL. */
#define TAND__LOG_MAX_ENTRY (1024 * 1024 - 4096)
TAND_HIDDEN void tand__log_set_max_entry(tand__log *l, size_t n);
TAND_HIDDEN size_t tand__log_max_entry(const tand__log *l);

/* Removes the entries before sequence `before` (a snapshot's first). 0,
** or TAND_ETIMEDOUT, TAND_ECLUSTER (why in err). */
TAND_HIDDEN int tand__log_purge(tand__log *l, uint64_t before, char *err,
                                size_t errsize);

/* Waits until the stream has a leader (a stream just made has none for a
** moment, and requests to it wait their whole timeout), timeout_ms at
** most. */
TAND_HIDDEN void tand__stream_wait_leader(jsCtx *js, const char *stream,
                                          int64_t timeout_ms);

/* The sequence of the stream's last entry (0 when empty). */
TAND_HIDDEN int tand__log_last(tand__log *l, uint64_t *seq, char *err,
                               size_t errsize);

/* Appends len bytes if the stream's last entry is still expect_last,
** with msg_id for deduplication; *seq gets the entry's sequence (a
** duplicate's is the first one's). 0, TAND_ENOTOWNER (the stream moved
** on: another host appended), TAND_ETIMEDOUT (no acknowledgement within
** timeout_ms: the outcome is unknown), TAND_ECLUSTER, TAND_ENOMEM,
** TAND_EINVAL. Blocks until the acknowledgement. */
TAND_HIDDEN int tand__log_append(tand__log *l, const void *data, size_t len,
                                 const char *msg_id, uint64_t expect_last,
                                 int64_t timeout_ms, uint64_t *seq,
                                 char *err, size_t errsize);

/* Calls fn(ud, seq, data, len) for every entry of the stream in order, up
** to `last` (from tand__log_last), read by one ordered consumer (the
** server pushes them); stops at fn's first nonzero return, which it
** returns. 0, or that, TAND_ETIMEDOUT (no entry for timeout_ms),
** TAND_ECLUSTER. */
TAND_HIDDEN int tand__log_replay(tand__log *l, uint64_t last,
                                 int (*fn)(void *ud, uint64_t seq,
                                           const char *data, size_t len),
                                 void *ud, int64_t timeout_ms, char *err,
                                 size_t errsize);

/* ---- cluster_journal.c: the journal of a clustered machine ---- */

/* Replays the log of a machine of `kind` into a new journal, then fences
** it for `host` at `epoch` (appends expecting the last entry replayed):
** TAND_ENOTOWNER when another host appended meanwhile, TAND_EJOURNAL
** for an entry that is not a sound tand entry (its sequence in err),
** TAND_ECONFIG for a log of another kind of machine, or a log error. The
** journal borrows log, which must outlive it. Appends wait timeout_ms
** for their acknowledgement. */
TAND_HIDDEN int tand__cluster_journal_open(tand__log *log, const char *kind,
                                           const char *host, uint64_t epoch,
                                           int64_t timeout_ms,
                                           tand_journal **out, char *err,
                                           size_t n);

/* Once the entries since the last snapshot add up to as many bytes as it
** held, and to at least min_bytes (64 KiB unless set: the tests make it
** small), a commit writes a snapshot and purges what it covers. */
TAND_HIDDEN void tand__cluster_journal_set_snapshot_min(tand_journal *j,
                                                        size_t min_bytes);

#endif
