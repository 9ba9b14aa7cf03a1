/*
** journal_api.c - a journal as the engine and the behaviours use it,
** whatever keeps it (journal_ops in internal.h): the checks every
** backend shares, then a call through its operations.
*/
#include "internal.h"

void tand__journal_close(tand_journal *j)
{
    if (j != NULL)
        j->ops->close(j);
}

int tand__journal_commit(tand_journal *j, char *err, size_t n)
{
    return j->ops->commit(j, err, n);
}

void tand__journal_rollback(tand_journal *j)
{
    j->ops->rollback(j);
}

bool tand__journal_dirty(const tand_journal *j)
{
    return j->ops->dirty(j);
}

int tand_journal_fresh(const tand_journal *j)
{
    return j != NULL && j->fresh;
}

int tand_journal_set_int(tand_journal *j, const char *key, int64_t v)
{
    if (j == NULL || key == NULL)
        return TAND_EINVAL;
    return j->ops->set_int(j, key, v);
}

int tand_journal_set_blob(tand_journal *j, const char *key, const void *p,
                          size_t n)
{
    if (j == NULL || key == NULL || n > INT32_MAX)
        return TAND_EINVAL;
    return j->ops->set_blob(j, key, p, n);
}

int tand_journal_get_int(tand_journal *j, const char *key, int64_t *v,
                         int *found)
{
    if (j == NULL || key == NULL || v == NULL || found == NULL)
        return TAND_EINVAL;
    *found = 0;
    return j->ops->get_int(j, key, v, found);
}

int tand_journal_get_blob(tand_journal *j, const char *key, char **out,
                          size_t *n, int *found)
{
    if (j == NULL || key == NULL || out == NULL || n == NULL ||
        found == NULL)
        return TAND_EINVAL;
    *out = NULL;
    *n = 0;
    *found = 0;
    return j->ops->get_blob(j, key, out, n, found);
}

int tand_journal_queue_push(tand_journal *j, int64_t number)
{
    return j == NULL ? TAND_EINVAL : j->ops->queue_push(j, number);
}

int tand_journal_queue_remove(tand_journal *j, int64_t number)
{
    return j == NULL ? TAND_EINVAL : j->ops->queue_remove(j, number);
}

int tand_journal_queue_clear(tand_journal *j)
{
    return j == NULL ? TAND_EINVAL : j->ops->queue_clear(j);
}

int tand_journal_queue_load(tand_journal *j,
                            int (*fn)(void *ud, int64_t number), void *ud)
{
    if (j == NULL || fn == NULL)
        return TAND_EINVAL;
    return j->ops->queue_load(j, fn, ud);
}
