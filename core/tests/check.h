/*
** check.h - the C tests' assertions: a failure prints both values and
** the place, and the test exits non-zero at the end.
*/
#ifndef TAND_CHECK_H
#define TAND_CHECK_H

#include "tand.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int check_failures;
static int check_count;

#define CHECK(cond)                                                          \
    do {                                                                     \
        check_count++;                                                       \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__,           \
                    __LINE__, #cond);                                        \
            check_failures++;                                                \
        }                                                                    \
    } while (0)

#define CHECK_INT(a, b)                                                      \
    do {                                                                     \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);      \
        check_count++;                                                       \
        if (check_a_ != check_b_) {                                          \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n",        \
                    __FILE__, __LINE__, #a, #b, check_a_, check_b_);         \
            check_failures++;                                                \
        }                                                                    \
    } while (0)

/* Compares two status codes by name. */
#define CHECK_RC(a, b)                                                       \
    do {                                                                     \
        int check_a_ = (a), check_b_ = (b);                                  \
        check_count++;                                                       \
        if (check_a_ != check_b_) {                                          \
            fprintf(stderr, "%s:%d: %s gave %s, expected %s\n", __FILE__,    \
                    __LINE__, #a, tand_errname(check_a_),                    \
                    tand_errname(check_b_));                                 \
            check_failures++;                                                \
        }                                                                    \
    } while (0)

#define CHECK_OK(a) CHECK_RC(a, 0)

/* Polls `cond` every millisecond until it holds or `ms` have passed. */
#define WAIT_FOR(cond, ms)                                                   \
    do {                                                                     \
        int64_t wait_end_ = tand_now_ms() + (ms);                            \
        while (!(cond) && tand_now_ms() < wait_end_) {                       \
            struct timespec wait_ts_ = {0, 1000000};                         \
            nanosleep(&wait_ts_, NULL);                                      \
        }                                                                    \
        CHECK(cond);                                                         \
    } while (0)

static int check_done(const char *name)
{
    if (check_failures) {
        fprintf(stderr, "%s: %d of %d checks failed\n", name, check_failures,
                check_count);
        return 1;
    }
    printf("%s: %d checks passed\n", name, check_count);
    return 0;
}

#endif
