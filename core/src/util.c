/*
** util.c - error names, message helpers, monotonic time and the process
** nonce.
*/
#define _GNU_SOURCE /* glibc: PTHREAD_MUTEX_ADAPTIVE_NP, getrandom */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__has_include)
#if __has_include(<sys/random.h>)
#include <sys/random.h>
#define HAVE_GETRANDOM 1
#endif
#endif

const char *tand_errname(int err)
{
    switch (err) {
    case 0:
        return "ok";
#define XX(name, code, token, text)                                          \
    case code:                                                               \
        return token;
        TAND_ERRNO_MAP(XX)
#undef XX
    default:
        return "unknown_error";
    }
}

int tand_errcode(const char *token)
{
    if (token == NULL)
        return 1;
    if (strcmp(token, "ok") == 0)
        return 0;
#define XX(name, code, tok, text)                                            \
    if (strcmp(token, tok) == 0)                                             \
        return code;
    TAND_ERRNO_MAP(XX)
#undef XX
    return 1;
}

const char *tand_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define XX(name, code, token, text)                                          \
    case code:                                                               \
        return text;
        TAND_ERRNO_MAP(XX)
#undef XX
    default:
        return "unknown error";
    }
}

/* ---- allocation, with a fault injector for the tests ----
** Every allocation of the engine goes through these, so a test can make
** the N-th one fail and check that each failure is an error, not a crash
** or a leak. Freed memory is always free()'s: message data stays
** malloc-compatible, as tand.h promises. */

static _Atomic long fail_countdown = -1;

long tand__fail_allocation(long n)
{
    return atomic_exchange(&fail_countdown, n);
}

static bool injected_failure(void)
{
    long c = atomic_load_explicit(&fail_countdown, memory_order_relaxed);
    if (c < 0)
        return false;
    return atomic_fetch_sub(&fail_countdown, 1) == 0;
}

void *tand__malloc(size_t n)
{
    return injected_failure() ? NULL : malloc(n);
}

void *tand__calloc(size_t n, size_t size)
{
    return injected_failure() ? NULL : calloc(n, size);
}

void *tand__realloc(void *p, size_t n)
{
    return injected_failure() ? NULL : realloc(p, n);
}

char *tand__strdup(const char *s)
{
    return injected_failure() ? NULL : strdup(s);
}

void tand_msg_clear(tand_msg *msg)
{
    if (msg == NULL)
        return;
    free(msg->data);
    memset(msg, 0, sizeof *msg);
}

int tand_msg_set_text(tand_msg *msg, const char *text, size_t len)
{
    char *p = tand__malloc(len + 1);
    free(msg->data);
    msg->data = NULL;
    msg->size = 0;
    if (p == NULL)
        return TAND_ENOMEM;
    memcpy(p, text, len);
    p[len] = '\0';
    msg->data = p;
    msg->size = len;
    return 0;
}

int64_t tand__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t tand_now_ms(void)
{
    return tand__now_ns() / 1000000;
}

int tand__mutex_init(pthread_mutex_t *mu)
{
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
    pthread_mutexattr_t a;
    int rc;
    if (pthread_mutexattr_init(&a) != 0)
        return -1;
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
    rc = pthread_mutex_init(mu, &a);
    pthread_mutexattr_destroy(&a);
    return rc;
#else
    return pthread_mutex_init(mu, NULL);
#endif
}

int64_t tand__deadline(int64_t timeout_ms)
{
    lazy_deadline d = tand__lazy(timeout_ms);
    return tand__lazy_ns(&d);
}

void tand__lazy_from(lazy_deadline *d, int64_t now)
{
    if (d->known)
        return;
    d->known = true;
    d->ns = d->timeout_ms > INT64_MAX / 2000000
                ? INT64_MAX
                : now + d->timeout_ms * 1000000;
}

int64_t tand__lazy_ns(lazy_deadline *d)
{
    if (!d->known)
        tand__lazy_from(d, tand__now_ns());
    return d->ns;
}

void tand__timespec(int64_t ns, struct timespec *ts)
{
    ts->tv_sec = (time_t)(ns / 1000000000);
    ts->tv_nsec = (long)(ns % 1000000000);
}

int tand__cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t attr;
    int rc;
    if (pthread_condattr_init(&attr) != 0)
        return TAND_ESYSTEM;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    rc = pthread_cond_init(cv, &attr);
    pthread_condattr_destroy(&attr);
    return rc == 0 ? 0 : TAND_ESYSTEM;
}

bool tand__cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu,
                           int64_t deadline_ns)
{
    struct timespec ts;
    if (deadline_ns == INT64_MAX) {
        pthread_cond_wait(cv, mu);
        return true;
    }
    if (tand__now_ns() >= deadline_ns)
        return false;
    tand__timespec(deadline_ns, &ts);
    return pthread_cond_timedwait(cv, mu, &ts) != ETIMEDOUT;
}

void tand__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* ---- the process nonce ---- */

static _Atomic uint64_t nonce_value; /* 0 until taken */
static pthread_once_t nonce_once = PTHREAD_ONCE_INIT;

/* A forked child is another process with the same ids: it takes a nonce
** of its own. */
static void nonce_forget(void)
{
    atomic_store(&nonce_value, 0);
}

static void nonce_register(void)
{
    pthread_atfork(NULL, NULL, nonce_forget);
}

/* splitmix64's finalizer: every input bit reaches every output bit. */
static uint64_t mix64(uint64_t x)
{
    x += UINT64_C(0x9e3779b97f4a7c15);
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

/* 64 bits from the kernel's generator when it gives them, mixed with the
** pid and both clocks, so that even without it two processes differ. */
static uint64_t take_nonce(void)
{
    uint64_t r = 0, v;
    struct timespec rt, mono;
    int got = 0;
#ifdef HAVE_GETRANDOM
    got = getrandom(&r, sizeof r, GRND_NONBLOCK) == (ssize_t)sizeof r;
#endif
    if (!got) {
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            if (read(fd, &r, sizeof r) != (ssize_t)sizeof r)
                r = 0;
            close(fd);
        }
    }
    clock_gettime(CLOCK_REALTIME, &rt);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    v = mix64(r ^ mix64((uint64_t)getpid() ^
                        mix64((uint64_t)rt.tv_sec * 1000000000u +
                              (uint64_t)rt.tv_nsec) ^
                        mix64((uint64_t)mono.tv_nsec ^
                              (uint64_t)(uintptr_t)&nonce_value)));
    return v != 0 ? v : 1;
}

uint64_t tand_process_nonce(void)
{
    uint64_t v = atomic_load_explicit(&nonce_value, memory_order_acquire);
    uint64_t none = 0;
    if (v != 0)
        return v;
    pthread_once(&nonce_once, nonce_register);
    v = take_nonce();
    if (!atomic_compare_exchange_strong(&nonce_value, &none, v))
        v = none; /* another thread took it first */
    return v;
}
