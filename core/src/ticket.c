/*
** ticket.c - the deluxe machine's queue and next-number rule.
**
** Pure logic, single-threaded. Every operation is O(log n) expected in
** the number of queued tickets; nothing is allocated per number of the
** range, so a range of billions costs nothing until numbers are issued.
*/
#include "ticket.h"

#include "alloc.h"

#include "tand.h"

#include <stdlib.h>

struct ticket {
    int64_t number;
    uint32_t prio;
    uint64_t size;        /* nodes in this subtree */
    ticket *left, *right; /* treap by number */
    ticket *prev, *next;  /* FIFO */
};

static uint64_t size_of(const ticket *t)
{
    return t ? t->size : 0;
}

static void update(ticket *t)
{
    t->size = 1 + size_of(t->left) + size_of(t->right);
}

/* Splits t into numbers < key (or <= key when inclusive) and the rest. */
static void split(ticket *t, int64_t key, int inclusive, ticket **lo,
                  ticket **hi)
{
    if (t == NULL) {
        *lo = *hi = NULL;
    } else if (t->number < key || (inclusive && t->number == key)) {
        split(t->right, key, inclusive, &t->right, hi);
        update(t);
        *lo = t;
    } else {
        split(t->left, key, inclusive, lo, &t->left);
        update(t);
        *hi = t;
    }
}

/* Joins two treaps where every number of a is below every number of b. */
static ticket *merge(ticket *a, ticket *b)
{
    if (a == NULL)
        return b;
    if (b == NULL)
        return a;
    if (a->prio > b->prio) {
        a->right = merge(a->right, b);
        update(a);
        return a;
    }
    b->left = merge(a, b->left);
    update(b);
    return b;
}

static uint32_t next_prio(deluxe *d)
{
    uint32_t x = d->seed; /* xorshift32 */
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    d->seed = x;
    return x;
}

static ticket *find(ticket *t, int64_t key)
{
    while (t != NULL && t->number != key)
        t = key < t->number ? t->left : t->right;
    return t;
}

static int64_t highest(const ticket *t)
{
    while (t->right != NULL)
        t = t->right;
    return t->number;
}

/* The smallest number of [min, max] not queued. Queued numbers are
** distinct and >= min, so the k-th smallest (0-based) is min + k exactly
** until the first gap; find the first rank where that fails. */
static int64_t smallest_free(const deluxe *d)
{
    const ticket *t = d->root;
    uint64_t offset = 0;
    while (t != NULL) {
        uint64_t rank = offset + size_of(t->left);
        if ((uint64_t)t->number - (uint64_t)d->min_number == rank) {
            offset = rank + 1;
            t = t->right;
        } else {
            t = t->left;
        }
    }
    return (int64_t)((uint64_t)d->min_number + offset);
}

int tand__deluxe_init(deluxe *d, int64_t min_number, int64_t max_number)
{
    if (min_number >= max_number)
        return TAND_ECONFIG;
    d->min_number = min_number;
    d->max_number = max_number;
    d->root = d->head = d->tail = NULL;
    d->count = 0;
    d->seed = 0x9E3779B9u;
    return 0;
}

/* Links a new ticket for n into the treap and at the back of the FIFO. */
static int insert(deluxe *d, int64_t n)
{
    ticket *t = tand__malloc(sizeof *t), *lo, *hi;
    if (t == NULL)
        return TAND_ENOMEM;
    t->number = n;
    t->prio = next_prio(d);
    t->size = 1;
    t->left = t->right = NULL;
    split(d->root, n, 0, &lo, &hi);
    d->root = merge(merge(lo, t), hi);
    t->next = NULL;
    t->prev = d->tail;
    if (d->tail)
        d->tail->next = t;
    else
        d->head = t;
    d->tail = t;
    d->count++;
    return 0;
}

int tand__deluxe_append(deluxe *d, int64_t number)
{
    if (number < d->min_number || number > d->max_number ||
        find(d->root, number) != NULL)
        return TAND_EINVAL;
    return insert(d, number);
}

int tand__deluxe_queue(deluxe *d, int64_t *number)
{
    uint64_t range = (uint64_t)d->max_number - (uint64_t)d->min_number;
    int64_t n;
    int rc;

    if (d->count > range) /* count == range + 1: every number is queued */
        return TAND_EFULL;
    if (d->count == 0) {
        n = d->min_number;
    } else {
        int64_t h = highest(d->root);
        n = h < d->max_number ? h + 1 : smallest_free(d);
    }
    if ((rc = insert(d, n)) != 0)
        return rc;
    *number = n;
    return 0;
}

static void unlink_fifo(deluxe *d, ticket *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        d->head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    else
        d->tail = t->prev;
}

int tand__deluxe_serve(deluxe *d, const int64_t *priority, int64_t *number)
{
    ticket *t, *lo, *mid, *hi;
    if (d->count == 0)
        return TAND_EEMPTY;
    t = priority ? find(d->root, *priority) : d->head;
    if (t == NULL)
        return TAND_ENOTQUEUED;
    split(d->root, t->number, 0, &lo, &mid);
    split(mid, t->number, 1, &mid, &hi);
    d->root = merge(lo, hi);
    unlink_fifo(d, t);
    d->count--;
    *number = t->number;
    free(t);
    return 0;
}

void tand__deluxe_reset(deluxe *d)
{
    ticket *t = d->head;
    while (t != NULL) {
        ticket *next = t->next;
        free(t);
        t = next;
    }
    d->root = d->head = d->tail = NULL;
    d->count = 0;
}

void tand__deluxe_free(deluxe *d)
{
    tand__deluxe_reset(d);
}

const ticket *tand__deluxe_first(const deluxe *d)
{
    return d->head;
}

const ticket *tand__deluxe_next(const ticket *t)
{
    return t->next;
}

int64_t tand__ticket_number(const ticket *t)
{
    return t->number;
}

/* ---- the public face: tand_tickets ---- */

struct tand_tickets {
    deluxe d;
};

int tand_tickets_new(int64_t min_number, int64_t max_number,
                     tand_tickets **out)
{
    tand_tickets *t;
    int rc;
    if (out == NULL)
        return TAND_EINVAL;
    *out = NULL;
    if ((t = tand__malloc(sizeof *t)) == NULL)
        return TAND_ENOMEM;
    if ((rc = tand__deluxe_init(&t->d, min_number, max_number)) != 0) {
        free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void tand_tickets_free(tand_tickets *t)
{
    if (t != NULL) {
        tand__deluxe_free(&t->d);
        free(t);
    }
}

int tand_tickets_queue(tand_tickets *t, int64_t *number)
{
    return tand__deluxe_queue(&t->d, number);
}

int tand_tickets_serve(tand_tickets *t, const int64_t *priority,
                       int64_t *number)
{
    return tand__deluxe_serve(&t->d, priority, number);
}

void tand_tickets_reset(tand_tickets *t)
{
    tand__deluxe_reset(&t->d);
}

uint64_t tand_tickets_count(const tand_tickets *t)
{
    return t->d.count;
}

void tand_tickets_bounds(const tand_tickets *t, int64_t *min_number,
                         int64_t *max_number)
{
    *min_number = t->d.min_number;
    *max_number = t->d.max_number;
}

int tand_tickets_append(tand_tickets *t, int64_t number)
{
    return tand__deluxe_append(&t->d, number);
}

deluxe *tand__tickets_deluxe(tand_tickets *t)
{
    return &t->d;
}

size_t tand_tickets_list(const tand_tickets *t, int64_t *out, size_t max)
{
    const ticket *k;
    size_t n = 0;
    for (k = t->d.head; k != NULL && n < max; k = k->next)
        out[n++] = k->number;
    return n;
}
