/*
** alloc.h - the engine's allocation functions (util.c). Each is the libc
** function of the same name, except that a test can make the N-th call
** fail, to check that every allocation failure is handled.
*/
#ifndef TAND_ALLOC_H
#define TAND_ALLOC_H

#include <stddef.h>

void *tand__malloc(size_t n);
void *tand__calloc(size_t n, size_t size);
void *tand__realloc(void *p, size_t n);
char *tand__strdup(const char *s);

/* Tests: the n-th allocation from now (0: the next) fails, once; -1 turns
** the injector off. Returns the previous countdown: >= 0 when that
** allocation never came. */
long tand__fail_allocation(long n);

#endif
