/*
** test_ticket.c - the deluxe rules, exhaustively against a model.
*/
#include "check.h"
#include "ticket.h"

#include <time.h>

/* A slow, obviously right model of the queue: an array in FIFO order. */
typedef struct model {
    int64_t min, max;
    int64_t q[64];
    int n;
} model;

static int model_has(const model *m, int64_t v)
{
    int i;
    for (i = 0; i < m->n; i++)
        if (m->q[i] == v)
            return 1;
    return 0;
}

static int model_queue(model *m, int64_t *out)
{
    int64_t h, v;
    int i;
    if ((int64_t)m->n == m->max - m->min + 1)
        return TAND_EFULL;
    if (m->n == 0) {
        v = m->min;
    } else {
        h = m->q[0];
        for (i = 1; i < m->n; i++)
            if (m->q[i] > h)
                h = m->q[i];
        if (h < m->max) {
            v = h + 1;
        } else {
            for (v = m->min; model_has(m, v); v++)
                ;
        }
    }
    m->q[m->n++] = v;
    *out = v;
    return 0;
}

static int model_serve(model *m, const int64_t *p, int64_t *out)
{
    int i = 0;
    if (m->n == 0)
        return TAND_EEMPTY;
    if (p != NULL) {
        for (i = 0; i < m->n && m->q[i] != *p; i++)
            ;
        if (i == m->n)
            return TAND_ENOTQUEUED;
    }
    *out = m->q[i];
    memmove(&m->q[i], &m->q[i + 1], (size_t)(m->n - i - 1) * sizeof(int64_t));
    m->n--;
    return 0;
}

static void same_queue(const deluxe *d, const model *m)
{
    const ticket *t = tand__deluxe_first(d);
    int i;
    for (i = 0; i < m->n; i++, t = tand__deluxe_next(t)) {
        CHECK(t != NULL);
        if (t == NULL)
            return;
        CHECK_INT(tand__ticket_number(t), m->q[i]);
    }
    CHECK(t == NULL);
    CHECK_INT(d->count, m->n);
}

static void random_against_model(int64_t min, int64_t max, unsigned seed)
{
    deluxe d;
    model m;
    int step;
    CHECK_OK(tand__deluxe_init(&d, min, max));
    m.min = min;
    m.max = max;
    m.n = 0;
    srand(seed);
    for (step = 0; step < 4000; step++) {
        int op = rand() % 10;
        int64_t a = 0, b = 0, p;
        int ra, rb;
        if (op < 5) {
            ra = tand__deluxe_queue(&d, &a);
            rb = model_queue(&m, &b);
        } else if (op < 8) {
            ra = tand__deluxe_serve(&d, NULL, &a);
            rb = model_serve(&m, NULL, &b);
        } else if (op < 9) {
            p = min + rand() % (max - min + 3) - 1; /* sometimes outside */
            ra = tand__deluxe_serve(&d, &p, &a);
            rb = model_serve(&m, &p, &b);
        } else {
            if (rand() % 20 == 0) {
                tand__deluxe_reset(&d);
                m.n = 0;
            }
            continue;
        }
        CHECK_RC(ra, rb);
        if (ra == 0)
            CHECK_INT(a, b);
        if (check_failures)
            break;
    }
    same_queue(&d, &m);
    tand__deluxe_free(&d);
}

static void rules(void)
{
    deluxe d;
    int64_t n, p;

    CHECK_RC(tand__deluxe_init(&d, 5, 5), TAND_ECONFIG);
    CHECK_RC(tand__deluxe_init(&d, 6, 5), TAND_ECONFIG);

    CHECK_OK(tand__deluxe_init(&d, 1, 3));
    /* empty queue: fails even with a priority number */
    CHECK_RC(tand__deluxe_serve(&d, NULL, &n), TAND_EEMPTY);
    p = 2;
    CHECK_RC(tand__deluxe_serve(&d, &p, &n), TAND_EEMPTY);
    CHECK_OK(tand__deluxe_queue(&d, &n));
    CHECK_INT(n, 1);
    CHECK_OK(tand__deluxe_queue(&d, &n));
    CHECK_INT(n, 2);
    CHECK_OK(tand__deluxe_queue(&d, &n));
    CHECK_INT(n, 3);
    CHECK_RC(tand__deluxe_queue(&d, &n), TAND_EFULL);
    CHECK_INT(d.count, 3); /* errors change nothing */
    p = 9;
    CHECK_RC(tand__deluxe_serve(&d, &p, &n), TAND_ENOTQUEUED);
    p = 2;
    CHECK_OK(tand__deluxe_serve(&d, &p, &n));
    CHECK_INT(n, 2);
    /* queue is 1, 3: highest is max, wrap to the smallest free: 2 */
    CHECK_OK(tand__deluxe_queue(&d, &n));
    CHECK_INT(n, 2);
    CHECK_OK(tand__deluxe_serve(&d, NULL, &n));
    CHECK_INT(n, 1);
    CHECK_OK(tand__deluxe_serve(&d, NULL, &n));
    CHECK_INT(n, 3);
    CHECK_OK(tand__deluxe_serve(&d, NULL, &n));
    CHECK_INT(n, 2);
    /* empty again: restart at min */
    CHECK_OK(tand__deluxe_queue(&d, &n));
    CHECK_INT(n, 1);
    tand__deluxe_reset(&d);
    CHECK_INT(d.count, 0);
    CHECK_INT(d.min_number, 1);
    CHECK_INT(d.max_number, 3);
    tand__deluxe_free(&d);

    /* negative bounds */
    CHECK_OK(tand__deluxe_init(&d, -3, -1));
    CHECK_OK(tand__deluxe_queue(&d, &n));
    CHECK_INT(n, -3);
    tand__deluxe_free(&d);

    /* the extreme range: no overflow anywhere */
    CHECK_OK(tand__deluxe_init(&d, INT64_MIN, INT64_MAX));
    CHECK_OK(tand__deluxe_queue(&d, &n));
    CHECK_INT(n, INT64_MIN);
    tand__deluxe_free(&d);
    CHECK_OK(tand__deluxe_init(&d, INT64_MAX - 1, INT64_MAX));
    CHECK_OK(tand__deluxe_queue(&d, &n));
    CHECK_OK(tand__deluxe_queue(&d, &n));
    CHECK_INT(n, INT64_MAX);
    CHECK_RC(tand__deluxe_queue(&d, &n), TAND_EFULL);
    CHECK_OK(tand__deluxe_serve(&d, NULL, &n));
    CHECK_OK(tand__deluxe_queue(&d, &n));
    CHECK_INT(n, INT64_MAX - 1);
    tand__deluxe_free(&d);
}

/* A big range, a big queue: the wrap finds the gap in O(log n). */
static void scale(void)
{
    deluxe d;
    int64_t n, i, p;
    const int64_t count = 200000;
    CHECK_OK(tand__deluxe_init(&d, 0, 50000000));
    for (i = 0; i < count; i++) {
        CHECK_OK(tand__deluxe_queue(&d, &n));
        if (n != i)
            break;
    }
    CHECK_INT(n, count - 1);
    p = 123456;
    CHECK_OK(tand__deluxe_serve(&d, &p, &n));
    tand__deluxe_free(&d);

    CHECK_OK(tand__deluxe_init(&d, 0, count - 1));
    for (i = 0; i < count; i++)
        tand__deluxe_queue(&d, &n);
    for (i = 0; i < count; i += 2) { /* open every other gap */
        p = i;
        CHECK_OK(tand__deluxe_serve(&d, &p, &n));
    }
    for (i = 0; i < count; i += 2) { /* refills gaps smallest first */
        CHECK_OK(tand__deluxe_queue(&d, &n));
        if (n != i) {
            CHECK_INT(n, i);
            break;
        }
    }
    CHECK_RC(tand__deluxe_queue(&d, &n), TAND_EFULL);
    tand__deluxe_free(&d);
}

int main(void)
{
    unsigned seed;
    rules();
    for (seed = 1; seed <= 40; seed++) {
        random_against_model(1, 1 + (int64_t)(seed % 12) + 1, seed);
        random_against_model(-20, 20, seed * 7);
    }
    scale();
    return check_done("test_ticket");
}
