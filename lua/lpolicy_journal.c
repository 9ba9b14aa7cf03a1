/*
** lpolicy_journal.c - a policy server's tickets and its state, journaled
** when the server has a journal: the built-in ticket operations write
** their change to the batch, the state is saved after each callback, and
** a restart resumes both. Runs on the thread running the server.
*/
#include "lpolicy.h"

#include <stdio.h>
#include <stdlib.h>

int lpolicy_queue(policy *p, int64_t *n)
{
    int rc = tand_tickets_queue(p->tickets, n);
    if (rc == 0 && p->journal)
        tand_journal_queue_push(p->journal, *n);
    return rc;
}

int lpolicy_serve(policy *p, const int64_t *prio, int64_t *n)
{
    int rc = tand_tickets_serve(p->tickets, prio, n);
    if (rc == 0 && p->journal)
        tand_journal_queue_remove(p->journal, *n);
    return rc;
}

void lpolicy_reset(policy *p)
{
    tand_tickets_reset(p->tickets);
    if (p->journal)
        tand_journal_queue_clear(p->journal);
}

static int restore_ticket(void *ud, int64_t number)
{
    return tand_tickets_append(ud, number) == 0 ? 0 : TAND_EJOURNAL;
}

/* Pushes the value a saved state decodes to (bad_request when it is not
** MessagePack), in protected mode. [-0, +(0|1), e] */
static int decode_protected(lua_State *L)
{
    cb_run *r = lua_touserdata(L, 1);
    if (ltand_decode(L, r->data, r->size, 0) < 0) {
        r->bad_request = 1;
        return 0;
    }
    return 1;
}

/* Resumes the tickets (or records the bounds in a fresh journal) and
** pushes the saved state, or nothing when there is none.
** Returns 0, or a code with c->err set. [-0, +(0|1), m] */
int lpolicy_resume_journal(policy *p, policy_config *c)
{
    tand_journal *j = p->journal;
    int64_t min, max;
    int fmin, fmax, found, rc;
    char *blob;
    size_t n;
    if (tand_journal_fresh(j)) {
        if ((rc = tand_journal_set_int(j, "min_number",
                                       c->o.min_number)) != 0 ||
            (rc = tand_journal_set_int(j, "max_number",
                                       c->o.max_number)) != 0)
            return lpolicy_fail(c, rc, "%scannot write the journal", "");
        return 0;
    }
    if (tand_journal_get_int(j, "min_number", &min, &fmin) != 0 ||
        tand_journal_get_int(j, "max_number", &max, &fmax) != 0 || !fmin ||
        !fmax)
        return lpolicy_fail(c, TAND_EJOURNAL, "%sthe journal has no bounds", "");
    if (min != c->o.min_number || max != c->o.max_number) {
        char text[128];
        snprintf(text, sizeof text, "%lld..%lld", (long long)min,
                 (long long)max);
        return lpolicy_fail(c, TAND_ECONFIG,
                         "the journal holds the range %s, not the one given",
                         text);
    }
    if (tand_journal_queue_load(j, restore_ticket, p->tickets) != 0)
        return lpolicy_fail(c, TAND_EJOURNAL,
                         "%sthe journal's queue does not fit its range", "");
    rc = tand_journal_get_blob(j, "policy_state", &blob, &n, &found);
    if (rc != 0)
        return lpolicy_fail(c, rc, "%scannot read the journal", "");
    if (found) {
        cb_run r = {0};
        int status;
        r.data = blob;
        r.size = n;
        lua_pushcfunction(p->L, decode_protected);
        lua_pushlightuserdata(p->L, &r);
        status = lua_pcall(p->L, 1, 1, 0);
        free(blob);
        if (status != LUA_OK || r.bad_request)
            lua_pop(p->L, 1);
        if (status != LUA_OK)
            return lpolicy_fail(c, TAND_ENOMEM,
                             "%sthe journal's policy state does not fit in "
                             "memory_limit", "");
        if (r.bad_request)
            return lpolicy_fail(c, TAND_EJOURNAL,
                             "%sthe journal's policy state is not valid", "");
    }
    return 0;
}

/* Journals the state after a callback. A state that cannot be encoded
** (a function, a coroutine, a cycle) fails the batch: nothing of it is
** journaled, its callers get bad_value, and the server stops, so a
** restart resumes the last acknowledged state. During init it fails the
** start instead. Returns 0, or -1 with the reason pushed. [-0, +(0|1), m] */
int lpolicy_save_state(policy *p)
{
    lua_State *L = p->L;
    tand_msg m = {0};
    int top = lua_gettop(L), rc;
    if (p->journal == NULL)
        return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref_state);
    rc = ltand_encode_once(L, p->scratch, -1, 1, 0, &m);
    if (rc == 0)
        tand_journal_set_blob(p->journal, "policy_state", m.data, m.size);
    tand_msg_clear(&m);
    if (rc != 0) {
        lua_pushfstring(L, "the policy's state cannot be journaled: %s",
                        lua_tostring(L, -1));
        lua_replace(L, top + 1);
        lua_settop(L, top + 1);
        return -1;
    }
    lua_settop(L, top);
    return 0;
}
