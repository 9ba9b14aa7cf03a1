/*
** lpattern.c - Lua 5.4's pattern matching (string.find, match, gmatch and
** gsub) for policy states, behaving as Lua 5.4.4's own.
**
** lstrlib's matcher is one C call that a count hook cannot interrupt, so a
** backtracking pattern would outlive its callback_timeout; this matcher
** calls ltand_deadline_check every CHECK_STEPS steps of its work. A step
** is a bounded piece of work whatever the input (one pattern item or match
** attempt, one subject byte, STEP_BYTES of a set, STEP_BYTES of a memchr,
** memcmp or memcpy of at most CHUNK_BYTES), so two checks are microseconds
** apart. Not split: what Lua does at once to make one string (a buffer's
** growth, the result, a capture pushed), about half a ms per MB.
*/
#include "ltand.h"

#include <ctype.h>
#include <lualib.h>
#include <stddef.h>
#include <string.h>

#ifndef LUA_MAXCAPTURES
#define LUA_MAXCAPTURES 32
#endif
#define MAX_CAPTURES LUA_MAXCAPTURES
#define MAX_DEPTH 200    /* nested matcher calls: "pattern too complex" */
#define CHECK_STEPS 1024 /* steps between two deadline checks */
#define STEP_BYTES 64    /* bytes of a set read, or scanned in bulk, a step */
#define CHUNK_BYTES 4096 /* the most one memchr, memcmp or memcpy takes */
/* A gsub function or table looked up: the matches that it makes start
** counts of their own, so it counts as a share of theirs. */
#define CALL_STEPS (CHECK_STEPS / 16)
#define CAP_OPEN (-1) /* a capture not yet closed */
#define CAP_POS (-2)  /* a position capture, () */
#define ESC '%'

#define uchar(c) ((unsigned char)(c))

/* Keeps a rare path's registers out of a hot caller. */
#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE
#endif

/* One search: the subject, the pattern and the captures so far. */
typedef struct matcher {
    lua_State *L;
    const char *src, *src_end;
    const char *pat_end;
    int depth_left; /* MAX_DEPTH when no match is running */
    int steps_left; /* until the next deadline check */
    int ncap;       /* captures opened, finished or not */
    struct {
        const char *start;
        ptrdiff_t len; /* or CAP_OPEN, CAP_POS */
    } cap[MAX_CAPTURES];
} matcher;

static void matcher_init(matcher *m, lua_State *L, const char *s, size_t ls,
                         const char *pat_end)
{
    m->L = L;
    m->src = s;
    m->src_end = s + ls;
    m->pat_end = pat_end;
    m->depth_left = MAX_DEPTH;
    m->steps_left = CHECK_STEPS;
    m->ncap = 0;
}

/* Accounts for n steps; may raise the callback_timeout error. */
static void tick(matcher *m, int n)
{
    m->steps_left -= n;
    if (m->steps_left <= 0) {
        m->steps_left = CHECK_STEPS;
        ltand_deadline_check(m->L);
    }
}

/* Accounts for one operation over len bytes: a step, and one for every
** STEP_BYTES. Past CHECK_STEPS of them (a Lua string made, done at once)
** it asks for a check now. */
static void tick_bytes(matcher *m, size_t len)
{
    tick(m, len >= (size_t)CHECK_STEPS * STEP_BYTES
                ? CHECK_STEPS
                : 1 + (int)(len / STEP_BYTES));
}

/* Accounts for copying len bytes within an operation counted otherwise:
** a step for every STEP_BYTES, a check now past CHECK_STEPS of them. */
static void tick_copy(matcher *m, size_t len)
{
    if (len >= STEP_BYTES)
        tick(m, len >= (size_t)CHECK_STEPS * STEP_BYTES
                    ? CHECK_STEPS
                    : (int)(len / STEP_BYTES));
}

/* Whether the len bytes at a and at b are the same. */
static int same_bytes(matcher *m, const char *a, const char *b, size_t len)
{
    for (;;) {
        size_t n = len < CHUNK_BYTES ? len : CHUNK_BYTES;
        tick_bytes(m, n);
        if (memcmp(a, b, n) != 0)
            return 0;
        if ((len -= n) == 0)
            return 1;
        a += n;
        b += n;
    }
}

/* add_bytes for more than CHUNK_BYTES. */
static NOINLINE void add_long_bytes(matcher *m, luaL_Buffer *b, const char *s,
                                    size_t len)
{
    char *to = luaL_prepbuffsize(b, len); /* grown once, not chunk by chunk */
    size_t done, n;
    for (done = 0; done < len; done += n) {
        n = len - done < CHUNK_BYTES ? len - done : CHUNK_BYTES;
        memcpy(to + done, s + done, n);
        tick_copy(m, n);
    }
    luaL_addsize(b, len);
}

/* Appends the len bytes at s to b, CHUNK_BYTES at a time, counted as
** tick_copy does. */
static void add_bytes(matcher *m, luaL_Buffer *b, const char *s, size_t len)
{
    if (len > CHUNK_BYTES) {
        add_long_bytes(m, b, s, len);
        return;
    }
    luaL_addlstring(b, s, len);
    tick_copy(m, len);
}

/* ---- single-character items ---- */

/* Whether c is in the class %cl; any other cl stands for itself. */
static int class_has(int c, int cl)
{
    int in;
    switch (tolower(cl)) {
    case 'a':
        in = isalpha(c);
        break;
    case 'c':
        in = iscntrl(c);
        break;
    case 'd':
        in = isdigit(c);
        break;
    case 'g':
        in = isgraph(c);
        break;
    case 'l':
        in = islower(c);
        break;
    case 'p':
        in = ispunct(c);
        break;
    case 's':
        in = isspace(c);
        break;
    case 'u':
        in = isupper(c);
        break;
    case 'w':
        in = isalnum(c);
        break;
    case 'x':
        in = isxdigit(c);
        break;
    case 'z': /* deprecated, still accepted by Lua 5.4 */
        in = (c == 0);
        break;
    default:
        return cl == c;
    }
    /* an upper-case letter is the complement */
    return islower(cl) ? in != 0 : in == 0;
}

/* Whether a member of a set from *pp to stop has c (the last one may run
** on to close, where the set ends); if none has, *pp is left at the next. */
static inline int members_have(int c, const char **pp, const char *stop,
                               const char *close)
{
    const char *p = *pp;
    for (; p < stop; p++) {
        if (*p == ESC) {
            p++;
            if (class_has(c, uchar(*p)))
                return 1;
        } else if (p[1] == '-' && p + 2 < close) {
            if (uchar(p[0]) <= c && c <= uchar(p[2]))
                return 1;
            p += 2;
        } else if (uchar(*p) == c) {
            return 1;
        }
    }
    *pp = p;
    return 0;
}

/* set_has for a long set, from its first member at p: STEP_BYTES a step. */
static NOINLINE int long_set_has(matcher *m, int c, const char *p,
                                 const char *close, int in)
{
    while (close - p > STEP_BYTES) {
        if (members_have(c, &p, p + STEP_BYTES, close))
            return in;
        tick(m, 1);
    }
    return members_have(c, &p, close, close) ? in : !in;
}

/* Whether c is in the set that opens at p ('[') and closes at close (']'). */
static int set_has(matcher *m, int c, const char *p, const char *close)
{
    int in = 1;
    p++;
    if (*p == '^') {
        in = 0;
        p++;
    }
    if (close - p > STEP_BYTES)
        return long_set_has(m, c, p, close, in);
    return members_have(c, &p, close, close) ? in : !in;
}

/* The end of the single-character item at p (where a quantifier would
** be), a set read STEP_BYTES a step. Raises for a malformed item. */
static const char *item_end(matcher *m, const char *p)
{
    const char *end = m->pat_end;
    if (*p == ESC) {
        if (p + 1 >= end)
            luaL_error(m->L, "malformed pattern (ends with '%%')");
        return p + 2;
    }
    if (*p != '[')
        return p + 1;
    p++;
    if (p < end && *p == '^')
        p++;
    /* the first member is taken as is, even a ']' */
    for (;;) {
        const char *stop = (end - p > STEP_BYTES) ? p + STEP_BYTES : end;
        while (p < stop) {
            p += (*p == ESC && p + 1 < end) ? 2 : 1;
            if (p < end && *p == ']')
                return p + 1;
        }
        if (p >= end)
            luaL_error(m->L, "malformed pattern (missing ']')");
        tick(m, 1);
    }
}

/* Whether the item p..ep matches the byte at s (never past the end). */
static int item_matches(matcher *m, const char *s, const char *p,
                        const char *ep)
{
    int c;
    if (s >= m->src_end)
        return 0;
    c = uchar(*s);
    switch (*p) {
    case '.':
        return 1;
    case ESC:
        return class_has(c, uchar(p[1]));
    case '[':
        return set_has(m, c, p, ep - 1);
    default:
        return uchar(*p) == c;
    }
}

/* ---- the matcher ---- */

static const char *match_here(matcher *m, const char *s, const char *p);

/* %bxy at p (p points at x): the end of a balanced run at s, or NULL. */
static const char *balance_end(matcher *m, const char *s, const char *p)
{
    int open, close, depth = 1;
    if (p + 1 >= m->pat_end)
        luaL_error(m->L, "malformed pattern (missing arguments to '%%b')");
    open = uchar(p[0]);
    close = uchar(p[1]);
    if (s >= m->src_end || uchar(*s) != open)
        return NULL;
    while (++s < m->src_end) {
        tick(m, 1);
        if (uchar(*s) == close) {
            if (--depth == 0)
                return s + 1;
        } else if (uchar(*s) == open) {
            depth++;
        }
    }
    return NULL;
}

/* %1-%9 (c is the digit): the text of that capture again at s. */
static const char *backref_end(matcher *m, const char *s, int c)
{
    int i = c - '1';
    size_t len;
    if (i < 0 || i >= m->ncap || m->cap[i].len == CAP_OPEN)
        luaL_error(m->L, "invalid capture index %%%d", i + 1);
    /* a position capture has no text: its huge length never fits */
    len = (size_t)m->cap[i].len;
    if ((size_t)(m->src_end - s) < len)
        return NULL;
    return same_bytes(m, m->cap[i].start, s, len) ? s + len : NULL;
}

/* The item p..ep as often as it matches from s, then fewer and fewer. */
static const char *repeat_greedy(matcher *m, const char *s, const char *p,
                                 const char *ep)
{
    size_t n = 0;
    while (item_matches(m, s + n, p, ep)) {
        tick(m, 1);
        n++;
    }
    for (;;) {
        const char *e = match_here(m, s + n, ep + 1);
        if (e != NULL)
            return e;
        if (n-- == 0)
            return NULL;
    }
}

/* The item p..ep as few times as lets the rest match. */
static const char *repeat_lazy(matcher *m, const char *s, const char *p,
                               const char *ep)
{
    for (;;) {
        const char *e = match_here(m, s, ep + 1);
        if (e != NULL)
            return e;
        if (!item_matches(m, s, p, ep))
            return NULL;
        s++;
    }
}

static const char *open_capture(matcher *m, const char *s, const char *p,
                                ptrdiff_t kind)
{
    const char *e;
    int i = m->ncap;
    if (i >= MAX_CAPTURES)
        luaL_error(m->L, "too many captures");
    m->cap[i].start = s;
    m->cap[i].len = kind;
    m->ncap = i + 1;
    e = match_here(m, s, p);
    if (e == NULL)
        m->ncap--;
    return e;
}

static const char *close_capture(matcher *m, const char *s, const char *p)
{
    const char *e;
    int i = m->ncap - 1;
    while (i >= 0 && m->cap[i].len != CAP_OPEN)
        i--;
    if (i < 0)
        luaL_error(m->L, "invalid pattern capture");
    m->cap[i].len = s - m->cap[i].start;
    e = match_here(m, s, p);
    if (e == NULL)
        m->cap[i].len = CAP_OPEN;
    return e;
}

/* Matches the pattern from p against the subject from s: the end of the
** match, or NULL. Backtracking recurses (at most MAX_DEPTH deep, as
** lstrlib counts it); an item with nothing to undo loops instead. */
static const char *match_here(matcher *m, const char *s, const char *p)
{
    if (m->depth_left == 0)
        luaL_error(m->L, "pattern too complex");
    m->depth_left--;
    while (p < m->pat_end) {
        const char *ep;
        int q;
        tick(m, 1);
        switch (*p) {
        case '(':
            if (p + 1 < m->pat_end && p[1] == ')')
                s = open_capture(m, s, p + 2, CAP_POS);
            else
                s = open_capture(m, s, p + 1, CAP_OPEN);
            goto done;
        case ')':
            s = close_capture(m, s, p + 1);
            goto done;
        case '$':
            if (p + 1 != m->pat_end)
                break; /* a plain '$' */
            if (s != m->src_end)
                s = NULL;
            goto done;
        case ESC:
            if (p + 1 >= m->pat_end)
                break; /* item_end reports it */
            if (p[1] == 'b') {
                s = balance_end(m, s, p + 2);
                if (s == NULL)
                    goto done;
                p += 4;
                continue;
            }
            if (p[1] == 'f') {
                int before, after;
                p += 2;
                if (p >= m->pat_end || *p != '[')
                    luaL_error(m->L, "missing '[' after '%%f' in pattern");
                ep = item_end(m, p);
                before = (s == m->src) ? 0 : uchar(s[-1]);
                after = (s < m->src_end) ? uchar(*s) : 0;
                if (set_has(m, before, p, ep - 1) ||
                    !set_has(m, after, p, ep - 1)) {
                    s = NULL;
                    goto done;
                }
                p = ep;
                continue;
            }
            if (p[1] >= '0' && p[1] <= '9') {
                s = backref_end(m, s, uchar(p[1]));
                if (s == NULL)
                    goto done;
                p += 2;
                continue;
            }
            break;
        }
        /* a single-character item, perhaps quantified */
        ep = item_end(m, p);
        q = (ep < m->pat_end) ? *ep : 0;
        if (!item_matches(m, s, p, ep)) {
            if (q == '*' || q == '?' || q == '-') {
                p = ep + 1; /* zero times will do */
                continue;
            }
            s = NULL;
            goto done;
        }
        switch (q) {
        case '?': {
            const char *e = match_here(m, s + 1, ep + 1);
            if (e != NULL) {
                s = e;
                goto done;
            }
            p = ep + 1;
            continue;
        }
        case '+':
            s = repeat_greedy(m, s + 1, p, ep);
            goto done;
        case '*':
            s = repeat_greedy(m, s, p, ep);
            goto done;
        case '-':
            s = repeat_lazy(m, s, p, ep);
            goto done;
        default:
            s++;
            p = ep;
            continue;
        }
    }
done:
    m->depth_left++;
    return s;
}

/* One attempt at s from the pattern's start: a step, even for an empty
** pattern. */
static const char *match_at(matcher *m, const char *s, const char *p)
{
    tick(m, 1);
    m->ncap = 0;
    return match_here(m, s, p);
}

/* ---- captures to Lua ---- */

/* Capture i of the match s..e: its length with *text set, or CAP_POS.
** With no captures, capture 0 is the whole match. */
static ptrdiff_t capture_get(matcher *m, int i, const char *s, const char *e,
                             const char **text)
{
    if (i >= m->ncap) {
        if (i != 0)
            luaL_error(m->L, "invalid capture index %%%d", i + 1);
        *text = s;
        return e - s;
    }
    if (m->cap[i].len == CAP_OPEN)
        luaL_error(m->L, "unfinished capture");
    *text = m->cap[i].start;
    return m->cap[i].len;
}

/* Pushes capture i, its bytes counted (its item was). [-0, +1, e] */
static void push_capture(matcher *m, int i, const char *s, const char *e)
{
    const char *text;
    ptrdiff_t len = capture_get(m, i, s, e, &text);
    if (len == CAP_POS) {
        lua_pushinteger(m->L, (lua_Integer)(text - m->src) + 1);
    } else {
        lua_pushlstring(m->L, text, (size_t)len);
        tick_copy(m, (size_t)len);
    }
}

/* Pushes the captures of the match s..e (the whole match when there are
** none, unless s is NULL). Returns their count. [-0, +n, e] */
static int push_captures(matcher *m, const char *s, const char *e)
{
    int i, n = (m->ncap == 0 && s != NULL) ? 1 : m->ncap;
    luaL_checkstack(m->L, n, "too many captures");
    for (i = 0; i < n; i++)
        push_capture(m, i, s, e);
    return n;
}

/* ---- string.find and string.match ---- */

/* A 1-based, possibly negative position made a 0-based offset; past the
** end when pos is. */
static size_t start_offset(lua_Integer pos, size_t len)
{
    if (pos > 0)
        return (size_t)pos - 1;
    if (pos == 0 || pos < -(lua_Integer)len)
        return 0;
    return len - (size_t)(-pos);
}

/* Whether c is one of lstrlib's SPECIALS, "^$*+?.([%-". */
static int is_special(int c)
{
    switch (c) {
    case '^':
    case '$':
    case '*':
    case '+':
    case '?':
    case '.':
    case '(':
    case '[':
    case '%':
    case '-':
        return 1;
    default:
        return 0;
    }
}

/* Whether the pattern p has one: if not, find looks for it as is. */
static int has_specials(matcher *m, const char *p, size_t lp)
{
    while (lp > 0) {
        size_t n = lp < CHUNK_BYTES ? lp : CHUNK_BYTES;
        for (size_t i = 0; i < n; i++)
            if (is_special(p[i]))
                return 1;
        tick_bytes(m, n);
        p += n;
        lp -= n;
    }
    return 0;
}

/* The first place of p (lp bytes) in s (ls bytes), or NULL: a scan of
** CHUNK_BYTES at a time, and each place of p's first byte compared. */
static const char *find_plain(matcher *m, const char *s, size_t ls,
                              const char *p, size_t lp)
{
    const char *end = s + ls;
    /* a compare's steps, or 0 when same_bytes counts them */
    int steps = lp <= CHUNK_BYTES ? 1 + (int)(lp / STEP_BYTES) : 0;
    if (lp == 0)
        return s;
    while ((size_t)(end - s) >= lp) {
        size_t room = (size_t)(end - s) - lp + 1; /* where p may start */
        const char *stop = s + (room < CHUNK_BYTES ? room : CHUNK_BYTES);
        const char *at;
        tick_bytes(m, (size_t)(stop - s));
        while ((at = memchr(s, *p, (size_t)(stop - s))) != NULL) {
            if (steps != 0) {
                tick(m, steps);
                if (memcmp(at + 1, p + 1, lp - 1) == 0)
                    return at;
            } else if (same_bytes(m, at + 1, p + 1, lp - 1)) {
                return at;
            }
            s = at + 1;
        }
        s = stop;
    }
    return NULL;
}

static int find_aux(lua_State *L, int find)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_offset(luaL_optinteger(L, 3, 1), ls);
    const char *pat_end = p + lp;
    matcher m;
    int anchored;
    if (init > ls) {
        luaL_pushfail(L);
        return 1;
    }
    matcher_init(&m, L, s, ls, pat_end);
    if (find && (lua_toboolean(L, 4) || !has_specials(&m, p, lp))) {
        const char *at = find_plain(&m, s + init, ls - init, p, lp);
        if (at == NULL) {
            luaL_pushfail(L);
            return 1;
        }
        lua_pushinteger(L, (lua_Integer)(at - s) + 1);
        lua_pushinteger(L, (lua_Integer)(at - s + lp));
        return 2;
    }
    anchored = (lp > 0 && *p == '^');
    if (anchored)
        p++;
    for (const char *at = s + init;; at++) {
        const char *e = match_at(&m, at, p);
        if (e != NULL) {
            if (!find)
                return push_captures(&m, at, e);
            lua_pushinteger(L, (lua_Integer)(at - s) + 1);
            lua_pushinteger(L, (lua_Integer)(e - s));
            return push_captures(&m, NULL, NULL) + 2;
        }
        if (anchored || at >= m.src_end)
            break;
    }
    luaL_pushfail(L);
    return 1;
}

/* string.find(s, pattern [, init [, plain]]) */
static int pattern_find(lua_State *L)
{
    return find_aux(L, 1);
}

/* string.match(s, pattern [, init]) */
static int pattern_match(lua_State *L)
{
    return find_aux(L, 0);
}

/* ---- string.gmatch ---- */

/* The iterator's state; its closure holds the subject and the pattern. */
typedef struct gmatch_state {
    matcher m;
    const char *pat;
    const char *next;     /* where the next search starts */
    const char *last_end; /* the end of the last match, or NULL */
} gmatch_state;

static int gmatch_next(lua_State *L)
{
    gmatch_state *g = lua_touserdata(L, lua_upvalueindex(3));
    g->m.L = L; /* the iterator may run in another coroutine */
    g->m.depth_left = MAX_DEPTH;
    for (const char *at = g->next; at <= g->m.src_end; at++) {
        const char *e = match_at(&g->m, at, g->pat);
        /* an empty match right where the last one ended does not count */
        if (e != NULL && e != g->last_end) {
            g->next = g->last_end = e;
            return push_captures(&g->m, at, e);
        }
    }
    return 0;
}

/* string.gmatch(s, pattern [, init]); '^' is a plain character here, as
** in Lua 5.4.4. */
static int pattern_gmatch(lua_State *L)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_offset(luaL_optinteger(L, 3, 1), ls);
    gmatch_state *g;
    lua_settop(L, 2); /* the closure keeps both strings alive */
    g = lua_newuserdatauv(L, sizeof *g, 0);
    if (init > ls)
        init = ls + 1; /* nothing to find, and no overflow */
    matcher_init(&g->m, L, s, ls, p + lp);
    g->pat = p;
    g->next = s + init;
    g->last_end = NULL;
    lua_pushcclosure(L, gmatch_next, 3);
    return 1;
}

/* ---- string.gsub ---- */

/* Appends the replacement string t (tl bytes) with its %0-%9 and %%
** expanded for the match s..e: a step for each escape, and its bytes. */
static void add_expanded(matcher *m, luaL_Buffer *b, const char *t, size_t tl,
                         const char *s, const char *e)
{
    const char *end = t + tl;
    for (;;) {
        size_t n =
            (size_t)(end - t) < CHUNK_BYTES ? (size_t)(end - t) : CHUNK_BYTES;
        const char *pc = memchr(t, ESC, n);
        int c;
        if (pc == NULL) { /* its bytes (the last one's step: the match's) */
            luaL_addlstring(b, t, n);
            tick_copy(m, n);
            t += n;
            if (t == end)
                return;
            continue;
        }
        luaL_addlstring(b, t, (size_t)(pc - t));
        tick(m, 1);
        tick_copy(m, (size_t)(pc - t));
        c = (pc + 1 < end) ? uchar(pc[1]) : 0;
        if (c == ESC) {
            luaL_addchar(b, ESC);
        } else if (c == '0') {
            add_bytes(m, b, s, (size_t)(e - s));
        } else if (isdigit(c)) {
            const char *text;
            ptrdiff_t len = capture_get(m, c - '1', s, e, &text);
            if (len == CAP_POS) {
                lua_pushinteger(m->L, (lua_Integer)(text - m->src) + 1);
                luaL_addvalue(b);
            } else {
                add_bytes(m, b, text, (size_t)len);
            }
        } else {
            luaL_error(m->L, "invalid use of '%%' in replacement string");
        }
        t = pc + 2;
    }
}

/* Appends the replacement of the match s..e made from the table or the
** function at index 3. Returns 0 when it keeps the match (false or nil),
** 1 when it replaced it. */
static int add_looked_up(matcher *m, luaL_Buffer *b, int type, const char *s,
                         const char *e)
{
    lua_State *L = m->L;
    size_t before = luaL_bufflen(b), len;
    if (type == LUA_TFUNCTION) {
        int n;
        lua_pushvalue(L, 3);
        n = push_captures(m, s, e);
        lua_call(L, n, 1);
    } else {
        push_capture(m, 0, s, e);
        lua_gettable(L, 3);
    }
    if (!lua_toboolean(L, -1)) {
        lua_pop(L, 1);
        tick(m, CALL_STEPS);
        add_bytes(m, b, s, (size_t)(e - s));
        return 0;
    }
    if (!lua_isstring(L, -1))
        return luaL_error(L, "invalid replacement value (a %s)",
                          luaL_typename(L, -1));
    luaL_addvalue(b);
    len = luaL_bufflen(b) - before;
    tick(m, len >= (size_t)CHECK_STEPS * STEP_BYTES
                ? CHECK_STEPS
                : CALL_STEPS + (int)(len / STEP_BYTES));
    return 1;
}

/* string.gsub(s, pattern, repl [, n]) */
static int pattern_gsub(lua_State *L)
{
    size_t ls, lp, tl = 0;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    const char *pat_end = p + lp;
    int type = lua_type(L, 3);
    lua_Integer max_n = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    const char *last_end = NULL, *t = NULL;
    lua_Integer n = 0;
    int changed = 0, anchored;
    matcher m;
    luaL_Buffer b;
    luaL_argexpected(L,
                     type == LUA_TNUMBER || type == LUA_TSTRING ||
                         type == LUA_TFUNCTION || type == LUA_TTABLE,
                     3, "string/function/table");
    if (type == LUA_TNUMBER || type == LUA_TSTRING)
        t = lua_tolstring(L, 3, &tl);
    luaL_buffinit(L, &b);
    anchored = (lp > 0 && *p == '^');
    if (anchored)
        p++;
    matcher_init(&m, L, s, ls, pat_end);
    while (n < max_n) {
        const char *e = match_at(&m, s, p);
        if (e != NULL && e != last_end) {
            n++;
            if (t != NULL) {
                add_expanded(&m, &b, t, tl, s, e);
                changed = 1;
            } else {
                changed |= add_looked_up(&m, &b, type, s, e);
            }
            s = last_end = e;
        } else if (s < m.src_end) {
            luaL_addchar(&b, *s++);
        } else {
            break;
        }
        if (anchored)
            break;
    }
    if (changed) {
        add_bytes(&m, &b, s, (size_t)(m.src_end - s));
        luaL_pushresult(&b);
    } else {
        lua_pushvalue(L, 1); /* the subject itself, unchanged */
    }
    lua_pushinteger(L, n);
    return 2;
}

static const luaL_Reg pattern_funcs[] = {{"find", pattern_find},
                                         {"gmatch", pattern_gmatch},
                                         {"gsub", pattern_gsub},
                                         {"match", pattern_match},
                                         {NULL, NULL}};

void ltand_open_patterns(lua_State *L)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    if (lua_getfield(L, -1, LUA_STRLIBNAME) != LUA_TTABLE)
        luaL_error(L, "ltand_open_patterns: the string library is not open");
    luaL_setfuncs(L, pattern_funcs, 0);
    /* s:find(...) goes through the strings' metatable */
    lua_pushliteral(L, "");
    if (luaL_getmetafield(L, -1, "__index") != LUA_TNIL) {
        if (lua_istable(L, -1) && !lua_rawequal(L, -1, -3))
            luaL_setfuncs(L, pattern_funcs, 0);
        lua_pop(L, 1);
    }
    lua_pop(L, 3);
}
