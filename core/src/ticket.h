/*
** ticket.h - the deluxe ticket machine's rules, as pure data structure
** code: no threads, no Lua, no engine. machines.c runs it as a server.
*/
#ifndef TAND_TICKET_H
#define TAND_TICKET_H

#include "tand.h"

#include <stdint.h>

typedef struct ticket ticket;

/* Queued numbers live in a treap ordered by number (with subtree sizes,
** to find the smallest free number in O(log n)) and, through the same
** nodes, in a doubly linked FIFO in the order they were issued. */
typedef struct deluxe {
    int64_t min_number, max_number;
    ticket *root;        /* by number */
    ticket *head, *tail; /* FIFO */
    uint64_t count;
    uint32_t seed;       /* treap priorities */
} deluxe;

/* TAND_ECONFIG unless min_number < max_number. */
int tand__deluxe_init(deluxe *d, int64_t min_number, int64_t max_number);
void tand__deluxe_free(deluxe *d);
/* Issues a number by the rule of DESIGN.md; TAND_EFULL, TAND_ENOMEM.
** On error nothing changes. */
int tand__deluxe_queue(deluxe *d, int64_t *number);
/* Serves the front, or `*priority` when given; TAND_EEMPTY,
** TAND_ENOTQUEUED. On error nothing changes. */
int tand__deluxe_serve(deluxe *d, const int64_t *priority, int64_t *number);
/* Appends `number` at the back (restoring a saved queue); TAND_EINVAL
** outside the range or already queued, TAND_ENOMEM. */
int tand__deluxe_append(deluxe *d, int64_t number);
/* Empties the queue, keeping the bounds. */
void tand__deluxe_reset(deluxe *d);
/* FIFO iteration: first, then next until NULL. */
const ticket *tand__deluxe_first(const deluxe *d);
const ticket *tand__deluxe_next(const ticket *t);
int64_t tand__ticket_number(const ticket *t);

/* The deluxe queue inside a public tand_tickets. */
deluxe *tand__tickets_deluxe(tand_tickets *t);

#endif
