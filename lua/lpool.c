/*
** lpool.c - keeps a policy's freed small blocks for its next allocations.
**
** DESIGN: every call into a policy allocates the request table, its array
** and the `from` userdata, and the collector frees them soon after; with
** malloc and free that churn costs about a quarter of a small handler. A
** pool keeps freed blocks of up to POOL_MAX bytes in lists by size class
** (multiples of 16 bytes, each block allocated at its class's full size,
** so any block of a class fits any request of it) and hands them back
** first. A pool belongs to one Lua state, which one thread at a time runs;
** the server's mutex hand-off that moves the state between workers orders
** the pool's accesses too, so it needs no lock of its own. What it keeps
** is bounded by POOL_KEEP_BYTES and freed with the pool.
*/
#include "ltand.h"

#include <stdlib.h>
#include <string.h>

/* Under AddressSanitizer a kept block is poisoned, so that a use after
** Lua freed it is still reported; all but its first word, the link to
** the next kept block, which the leak checker must be able to follow. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define KEEP_POISONED(b, n)                                                  \
    ASAN_POISON_MEMORY_REGION((char *)(b) + sizeof(void *),                \
                              (n) - sizeof(void *))
#define TAKE_UNPOISONED(b, n)                                                \
    ASAN_UNPOISON_MEMORY_REGION((char *)(b) + sizeof(void *),              \
                                (n) - sizeof(void *))
#else
#define KEEP_POISONED(b, n) ((void)(b), (void)(n))
#define TAKE_UNPOISONED(b, n) ((void)(b), (void)(n))
#endif

/* A size's class, or -1 for a block the pool leaves to malloc. */
static int class_of(size_t n)
{
    return n == 0 || n > POOL_MAX ? -1 : (int)((n - 1) / POOL_GRAIN);
}

static size_t class_size(int c)
{
    return (size_t)(c + 1) * POOL_GRAIN;
}

static void *take(ltand_pool *p, int c)
{
    void **b = p->free[c];
    if (b == NULL)
        return malloc(class_size(c));
    TAKE_UNPOISONED(b, class_size(c));
    p->free[c] = *b;
    p->kept -= class_size(c);
    return b;
}

static void give(ltand_pool *p, void *ptr, int c)
{
    if (p->kept + class_size(c) > POOL_KEEP_BYTES) {
        free(ptr);
        return;
    }
    *(void **)ptr = p->free[c];
    p->free[c] = ptr;
    p->kept += class_size(c);
    KEEP_POISONED(ptr, class_size(c));
}

void ltand_pool_init(ltand_pool *p)
{
    memset(p, 0, sizeof *p);
}

void ltand_pool_drain(ltand_pool *p)
{
    int c;
    for (c = 0; c < POOL_CLASSES; c++)
        while (p->free[c] != NULL) {
            void **b = p->free[c];
            TAKE_UNPOISONED(b, class_size(c));
            p->free[c] = *b;
            free(b);
        }
    p->kept = 0;
}

void *ltand_pool_realloc(ltand_pool *p, void *ptr, size_t osize, size_t nsize)
{
    int oc = ptr != NULL ? class_of(osize) : -1;
    int nc = class_of(nsize);
    void *q;

    if (nsize == 0) {
        if (oc >= 0)
            give(p, ptr, oc);
        else
            free(ptr);
        return NULL;
    }
    if (ptr == NULL)
        return nc >= 0 ? take(p, nc) : malloc(nsize);
    if (nsize <= osize && nc >= 0) {
        /* Lua counts on a shrink never failing: keep the block (its
        ** capacity serves the smaller class) or shrink it in place to the
        ** class's full size. */
        if (oc >= 0)
            return ptr;
        q = realloc(ptr, class_size(nc));
        return q != NULL ? q : ptr;
    }
    if (oc < 0 && nc < 0)
        return realloc(ptr, nsize);
    q = nc >= 0 ? take(p, nc) : malloc(nsize);
    if (q == NULL)
        return NULL; /* a growth may fail: Lua keeps the old block */
    memcpy(q, ptr, osize < nsize ? osize : nsize);
    if (oc >= 0)
        give(p, ptr, oc);
    else
        free(ptr);
    return q;
}
