/*
** table.c - a chained hash table from byte-string keys to pointers.
**
** Holds the runtime's registry of names and its index of server ids. Not
** thread-safe by itself: rt->table_mu guards both tables.
*/
#include "internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct entry {
    struct entry *next;
    uint64_t hash;
    void *value;
    size_t len;
    char key[];
} entry;

struct tand_table {
    entry **slots;
    size_t nslots, count;
};

static uint64_t hash_bytes(const void *key, size_t len)
{
    /* FNV-1a, then a final mix so sequential ids spread. */
    const unsigned char *p = key;
    uint64_t h = UINT64_C(1469598103934665603);
    size_t i;
    for (i = 0; i < len; i++) {
        h ^= p[i];
        h *= UINT64_C(1099511628211);
    }
    h ^= h >> 29;
    h *= UINT64_C(0xBF58476D1CE4E5B9);
    h ^= h >> 32;
    return h;
}

tand_table *tand__table_new(void)
{
    tand_table *t = tand__calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->nslots = 16;
    t->slots = tand__calloc(t->nslots, sizeof *t->slots);
    if (t->slots == NULL) {
        free(t);
        return NULL;
    }
    return t;
}

void tand__table_free(tand_table *t)
{
    size_t i;
    if (t == NULL)
        return;
    for (i = 0; i < t->nslots; i++) {
        entry *e = t->slots[i];
        while (e != NULL) {
            entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(t->slots);
    free(t);
}

static entry **find(tand_table *t, const void *key, size_t len, uint64_t h)
{
    entry **pe = &t->slots[h & (t->nslots - 1)];
    while (*pe != NULL) {
        entry *e = *pe;
        if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0)
            return pe;
        pe = &e->next;
    }
    return pe;
}

/* Doubling is optional: a table that cannot grow stays correct. */
static void grow(tand_table *t)
{
    size_t n = t->nslots * 2, i;
    entry **slots = tand__calloc(n, sizeof *slots);
    if (slots == NULL)
        return;
    for (i = 0; i < t->nslots; i++) {
        entry *e = t->slots[i];
        while (e != NULL) {
            entry *next = e->next;
            e->next = slots[e->hash & (n - 1)];
            slots[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(t->slots);
    t->slots = slots;
    t->nslots = n;
}

int tand__table_put(tand_table *t, const void *key, size_t len, void *value)
{
    uint64_t h = hash_bytes(key, len);
    entry **pe = find(t, key, len, h);
    entry *e;
    if (*pe != NULL)
        return TAND_ENAMETAKEN;
    e = tand__malloc(sizeof *e + len);
    if (e == NULL)
        return TAND_ENOMEM;
    e->next = NULL;
    e->hash = h;
    e->value = value;
    e->len = len;
    memcpy(e->key, key, len);
    *pe = e;
    if (++t->count > t->nslots)
        grow(t);
    return 0;
}

void *tand__table_get(tand_table *t, const void *key, size_t len)
{
    entry *e = *find(t, key, len, hash_bytes(key, len));
    return e ? e->value : NULL;
}

void *tand__table_del(tand_table *t, const void *key, size_t len)
{
    entry **pe = find(t, key, len, hash_bytes(key, len));
    entry *e = *pe;
    void *value;
    if (e == NULL)
        return NULL;
    *pe = e->next;
    value = e->value;
    free(e);
    t->count--;
    return value;
}

void tand__table_each(tand_table *t, void (*fn)(void *, void *), void *ud)
{
    size_t i;
    for (i = 0; i < t->nslots; i++) {
        entry *e;
        for (e = t->slots[i]; e != NULL; e = e->next)
            fn(e->value, ud);
    }
}

size_t tand__table_count(const tand_table *t)
{
    return t->count;
}
