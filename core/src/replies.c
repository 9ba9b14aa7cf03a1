/*
** replies.c - reply boxes: where the replies of asynchronous calls go.
**
** DESIGN: two threads meet here, the box's owner (one host thread at a
** time) and whichever server thread replies. An asynchronous call's slot
** carries its box and tag. The owner keeps the slots it sent in a list by
** deadline (`pending`, owner only). A server publishes the reply on the
** slot as for any call (park.c), then hands the slot to the box: under
** `mu` it goes on the `done` list and, if the list was not yet signalled,
** one byte goes into the pipe, so the pipe holds at most one byte. The
** owner takes from `done`, drains the pipe once `done` is empty, and at a
** passed deadline abandons the slot by CAS (the server then drops the
** reply). Every slot that a server may still hand over holds a reference
** on the box; tand_replies_free() drops the owner's, so a reply that
** arrives after the free finds a closed box, frees itself, and the last
** reference frees the box: the owner never waits for a server.
** A server's own box (tand_send_request) has no pipe: the server is its
** owner, and where a byte would go into the pipe the server is woken
** instead (it holds a reference on the box's server for that).
*/
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct tand_replies {
    pthread_mutex_t mu;
    tand_slot *done_head, *done_tail; /* guarded by mu */
    bool signalled;                   /* guarded by mu: a byte is in */
    bool closed;                      /* guarded by mu */
    _Atomic int refs;
    int fds[2];                       /* the pipe: read end, write end;
                                      ** -1 for a server's own box */
    tand_server *server;              /* a server's own box: its server
                                      ** (retained), or NULL */
    tand_slot *head, *tail;           /* owner only: pending, by deadline */
    tand_slot *taken;                 /* owner only: done, moved out of
                                      ** done in one go, in order */
    size_t count;                     /* owner only: sent, not taken */
};

static void box_release(tand_replies *box)
{
    if (atomic_fetch_sub(&box->refs, 1) != 1)
        return;
    if (box->server != NULL) {
        tand_server_release(box->server);
    } else {
        close(box->fds[0]);
        close(box->fds[1]);
    }
    pthread_mutex_destroy(&box->mu);
    free(box);
}

/* Makes the descriptor readable (mu held; the pipe holds at most this
** one byte, drained when the box is empty again). */
static void pipe_signal(tand_replies *box)
{
    char b = 1;
    while (write(box->fds[1], &b, 1) < 0 && errno == EINTR)
        ;
}

static int set_flags(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    return fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 ? -1 : 0;
}

int tand_replies_new(tand_replies **out)
{
    tand_replies *box;
    if (out == NULL)
        return TAND_EINVAL;
    *out = NULL;
    if ((box = tand__calloc(1, sizeof *box)) == NULL)
        return TAND_ENOMEM;
    if (pipe(box->fds) != 0) {
        free(box);
        return TAND_ESYSTEM;
    }
    if (set_flags(box->fds[0]) != 0 || set_flags(box->fds[1]) != 0) {
        close(box->fds[0]);
        close(box->fds[1]);
        free(box);
        return TAND_ESYSTEM;
    }
    pthread_mutex_init(&box->mu, NULL);
    atomic_init(&box->refs, 1);
    *out = box;
    return 0;
}

int tand__replies_new_owned(tand_server *owner, tand_replies **out)
{
    tand_replies *box = tand__calloc(1, sizeof *box);
    *out = box;
    if (box == NULL)
        return TAND_ENOMEM;
    box->fds[0] = box->fds[1] = -1;
    box->server = owner;
    tand_server_retain(owner);
    pthread_mutex_init(&box->mu, NULL);
    atomic_init(&box->refs, 1);
    return 0;
}

int64_t tand__replies_next_deadline(const tand_replies *box)
{
    return box->head != NULL ? box->head->deadline_ns : INT64_MAX;
}

int tand_replies_fd(const tand_replies *box)
{
    return box != NULL ? box->fds[0] : -1;
}

size_t tand_replies_count(const tand_replies *box)
{
    return box != NULL ? box->count : 0;
}

/* Puts slot in the deadline list, searching from the back: calls made
** with one timeout come in deadline order, so this is O(1) for them. */
static void pending_add(tand_replies *box, tand_slot *slot)
{
    tand_slot *at = box->tail;
    while (at != NULL && at->deadline_ns > slot->deadline_ns)
        at = at->pprev;
    slot->pprev = at;
    slot->pnext = at != NULL ? at->pnext : box->head;
    if (slot->pnext != NULL)
        slot->pnext->pprev = slot;
    else
        box->tail = slot;
    if (at != NULL)
        at->pnext = slot;
    else
        box->head = slot;
    slot->pending = true;
}

static void pending_remove(tand_replies *box, tand_slot *slot)
{
    if (!slot->pending)
        return;
    if (slot->pprev != NULL)
        slot->pprev->pnext = slot->pnext;
    else
        box->head = slot->pnext;
    if (slot->pnext != NULL)
        slot->pnext->pprev = slot->pprev;
    else
        box->tail = slot->pprev;
    slot->pnext = slot->pprev = NULL;
    slot->pending = false;
}

void tand__replies_attach(tand_replies *box, tand_slot *slot, uint64_t tag,
                          int64_t deadline_ns)
{
    slot->box = box;
    slot->tag = tag;
    slot->deadline_ns = deadline_ns;
    atomic_fetch_add(&box->refs, 1);
    pending_add(box, slot);
    box->count++;
}

void tand__replies_detach(tand_replies *box, tand_slot *slot)
{
    pending_remove(box, slot);
    box->count--;
    slot->box = NULL;
    box_release(box);
}

void tand__replies_done(tand_replies *box, tand_slot *slot)
{
    bool closed, wake = false;
    /* After its deadline a reply is a timeout, as for tand_call (the
    ** deadline is fixed before the call is sent). */
    if (slot->deadline_ns != INT64_MAX && tand__now_ns() >= slot->deadline_ns) {
        tand_msg_clear(&slot->reply);
        slot->reply.status = TAND_ETIMEDOUT;
    }
    pthread_mutex_lock(&box->mu);
    closed = box->closed;
    if (!closed) {
        slot->done_next = NULL;
        if (box->done_tail != NULL)
            box->done_tail->done_next = slot;
        else
            box->done_head = slot;
        box->done_tail = slot;
        if (!box->signalled) {
            box->signalled = true;
            if (box->server != NULL)
                wake = true;
            else
                pipe_signal(box);
        }
    }
    pthread_mutex_unlock(&box->mu);
    if (closed)
        tand__slot_free(slot);
    if (wake)
        tand__server_wake_replies(box->server);
    box_release(box);
}

/* With mu held: once nothing waits to be taken, the descriptor is not
** readable any more. */
static void drain_locked(tand_replies *box)
{
    char b[16];
    if (box->done_head != NULL || !box->signalled)
        return;
    if (box->server == NULL)
        while (read(box->fds[0], b, sizeof b) > 0)
            ;
    box->signalled = false;
}

/* The next slot that came in, or NULL. The owner moves the whole done
** list out under one lock and then takes from it alone, so a busy box
** costs its owner a lock or two per batch of replies, not one per reply.
** The pipe stays readable while a reply waits, moved out or not: it is
** drained only when the last one is taken and done is empty. With close,
** marks the box closed in the same critical section. */
static tand_slot *pop_done(tand_replies *box, bool close)
{
    tand_slot *slot = box->taken;
    if (slot != NULL && slot->done_next != NULL) { /* more behind it */
        box->taken = slot->done_next;
        return slot;
    }
    pthread_mutex_lock(&box->mu);
    if (slot == NULL) {
        slot = box->done_head;
        box->done_head = box->done_tail = NULL;
    }
    box->taken = slot != NULL ? slot->done_next : NULL;
    if (box->taken == NULL)
        drain_locked(box);
    if (slot == NULL && close)
        box->closed = true;
    pthread_mutex_unlock(&box->mu);
    return slot;
}

int tand_replies_take(tand_replies *box, uint64_t *tag, tand_msg *reply)
{
    tand_slot *slot;
    if (reply != NULL)
        memset(reply, 0, sizeof *reply);
    if (box == NULL || tag == NULL || reply == NULL)
        return 0;
    if ((slot = pop_done(box, false)) != NULL) {
        pending_remove(box, slot);
        *tag = slot->tag;
        *reply = slot->reply;
        memset(&slot->reply, 0, sizeof slot->reply);
        box->count--;
        tand__slot_free(slot);
        return 1;
    }
    while ((slot = box->head) != NULL &&
           tand__now_ns() >= slot->deadline_ns) {
        uint64_t t = slot->tag;
        /* Out of the list first: once abandoned the slot is the
        ** server's, and once replied it comes through done. */
        pending_remove(box, slot);
        if (tand__slot_abandon(slot)) {
            box->count--;
            box_release(box); /* the server will not hand it over */
            *tag = t;
            reply->status = TAND_ETIMEDOUT;
            return 1;
        }
    }
    return 0;
}

int64_t tand_replies_timeout_ms(tand_replies *box)
{
    int64_t left;
    if (box == NULL || box->head == NULL ||
        box->head->deadline_ns == INT64_MAX)
        return -1;
    left = box->head->deadline_ns - tand__now_ns();
    return left <= 0 ? 0 : (left + 999999) / 1000000;
}

/* Whether tand_replies_take would return a call now. When not, a byte
** left in the pipe (a cancel's) is drained, so that a wait does not find
** the descriptor readable with nothing to take. */
static bool ready(tand_replies *box)
{
    bool any;
    if (box->taken != NULL)
        return true;
    pthread_mutex_lock(&box->mu);
    any = box->done_head != NULL;
    drain_locked(box);
    pthread_mutex_unlock(&box->mu);
    return any || (box->head != NULL &&
                   tand__now_ns() >= box->head->deadline_ns);
}

int tand_replies_wait(tand_replies *box, int64_t timeout_ms)
{
    int64_t deadline = tand__deadline(timeout_ms);
    if (box == NULL)
        return TAND_EINVAL;
    for (;;) {
        struct pollfd p;
        int64_t now, until = deadline, ms;
        if (ready(box))
            return 0;
        now = tand__now_ns();
        if (box->head != NULL && box->head->deadline_ns < until)
            until = box->head->deadline_ns;
        if (now >= deadline)
            return TAND_ETIMEDOUT;
        ms = until == INT64_MAX ? -1 : (until - now + 999999) / 1000000;
        p.fd = box->fds[0];
        p.events = POLLIN;
        p.revents = 0;
        poll(&p, 1, ms > INT32_MAX ? INT32_MAX : (int)ms);
    }
}

/* Abandons every call in flight: an abandoned slot is the server's; one
** whose reply is being written reaches done, and is freed with those
** there. */
static void abandon_all(tand_replies *box)
{
    tand_slot *slot;
    while ((slot = box->head) != NULL) {
        pending_remove(box, slot);
        if (tand__slot_abandon(slot)) {
            box->count--;
            box_release(box);
        }
    }
}

void tand_replies_cancel(tand_replies *box)
{
    tand_slot *slot;
    if (box == NULL)
        return;
    abandon_all(box);
    while ((slot = pop_done(box, false)) != NULL) {
        pending_remove(box, slot);
        box->count--;
        tand__slot_free(slot);
    }
    /* wake whoever polls the descriptor: there is nothing left to wait
    ** for (the byte is drained by the next take) */
    pthread_mutex_lock(&box->mu);
    if (!box->signalled) {
        box->signalled = true;
        pipe_signal(box);
    }
    pthread_mutex_unlock(&box->mu);
}

void tand_replies_free(tand_replies *box)
{
    tand_slot *slot;
    if (box == NULL)
        return;
    /* First give up the calls in flight (a reply being written reaches
    ** done, here or, once the box is closed, nowhere: it frees itself),
    ** then the replies that came in, and close in the same breath. */
    abandon_all(box);
    while ((slot = pop_done(box, true)) != NULL)
        tand__slot_free(slot);
    box_release(box);
}
