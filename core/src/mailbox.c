/*
** mailbox.c - a server's bounded FIFO of envelopes.
**
** Not thread-safe by itself: the owning server's mu guards every call.
** The ring starts unallocated and doubles on demand up to its limit, so an
** idle server costs no buffer and a full mailbox never grows past it; only
** the engine's own notices (a monitored server's end) are forced in past
** the limit, and there is at most one per monitor. Room for each is
** reserved when the monitor is set up, so a notice never meets a full
** ring that cannot grow.
*/
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define FIRST_CAP 8

void tand__mbox_init(mailbox *mb, uint32_t limit)
{
    memset(mb, 0, sizeof *mb);
    mb->limit = limit;
}

/* Grows the ring to hold at least `need` envelopes. */
static int grow(mailbox *mb, uint64_t need)
{
    uint64_t bound = (uint64_t)mb->limit + mb->reserved;
    uint64_t cap = mb->cap ? (uint64_t)mb->cap * 2 : FIRST_CAP;
    envelope *ring;
    uint32_t i;
    while (cap < need)
        cap *= 2;
    if (cap > bound)
        cap = bound > need ? bound : need;
    if (cap > UINT32_MAX)
        return TAND_ENOMEM;
    ring = tand__malloc((size_t)cap * sizeof *ring);
    if (ring == NULL)
        return TAND_ENOMEM;
    for (i = 0; i < mb->count; i++)
        ring[i] = mb->ring[(mb->head + i) % mb->cap];
    free(mb->ring);
    mb->ring = ring;
    mb->cap = (uint32_t)cap;
    mb->head = 0;
    return 0;
}

int tand__mbox_push(mailbox *mb, const envelope *e, bool force)
{
    /* An ordinary message leaves the reserved room free. */
    uint64_t need = (uint64_t)mb->count + 1 + (force ? 0 : mb->reserved);
    if (mb->count >= mb->limit && !force)
        return TAND_EBUSY;
    if (need > mb->cap) {
        int rc = grow(mb, need);
        if (rc != 0)
            return rc;
    }
    mb->ring[(mb->head + mb->count) % mb->cap] = *e;
    mb->count++;
    if (mb->count > mb->peak)
        mb->peak = mb->count;
    if (force && mb->reserved > 0)
        mb->reserved--;
    return 0;
}

int tand__mbox_reserve(mailbox *mb)
{
    uint64_t need = (uint64_t)mb->count + mb->reserved + 1;
    if (need > mb->cap) {
        int rc;
        mb->reserved++; /* so that grow may pass the limit by it */
        rc = grow(mb, need);
        mb->reserved--;
        if (rc != 0)
            return rc;
    }
    mb->reserved++;
    return 0;
}

void tand__mbox_unreserve(mailbox *mb)
{
    if (mb->reserved > 0)
        mb->reserved--;
}

bool tand__mbox_pop(mailbox *mb, envelope *e)
{
    if (mb->count == 0)
        return false;
    *e = mb->ring[mb->head];
    mb->head = (mb->head + 1) % mb->cap;
    mb->count--;
    if (mb->count == 0)
        mb->head = 0;
    return true;
}

void tand__mbox_free(mailbox *mb)
{
    envelope e;
    while (tand__mbox_pop(mb, &e))
        tand_msg_clear(&e.msg);
    free(mb->ring);
    mb->ring = NULL;
    mb->cap = 0;
}
