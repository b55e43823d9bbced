/* gpuviz's compiled energy sampler: a thread that reads this process's CPU time and
 * resident memory every period and keeps the readings until Python takes them.
 *
 * The Python sampler's thread has to take the GIL from the training loop 100 times a
 * second; this one never touches Python. gpuviz.energy.native builds it with the C
 * compiler (no torch headers), loads it with ctypes, and turns the readings into the
 * estimate meter's joules at each step's end. Clocks: CLOCK_MONOTONIC (Python's
 * perf_counter_ns on Linux) and CLOCK_PROCESS_CPUTIME_ID (time.process_time).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int64_t t_ns;      /* CLOCK_MONOTONIC */
    int64_t cpu_ns;    /* this process's CPU time, every thread */
    int64_t rss_bytes; /* resident memory, or -1 where it was not read this time */
} gv_reading;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int running;
    int64_t period_ns, rss_every_ns, rss_t_ns;
    int statm;
    long page;
    gv_reading *buf;
    size_t n, cap;
    int64_t lost; /* readings not kept because memory ran out */
} gv_sampler;

static int64_t clock_ns(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t resident_bytes(gv_sampler *s) {
    char text[128];
    ssize_t k = pread(s->statm, text, sizeof text - 1, 0);
    if (k <= 0) return -1;
    text[k] = 0;
    char *p = text;
    strtoll(p, &p, 10); /* total program size; the second field is the resident set */
    return strtoll(p, NULL, 10) * s->page;
}

/* One reading, kept in the buffer; the caller holds the mutex. */
static void keep_reading(gv_sampler *s) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        gv_reading *grown = realloc(s->buf, cap * sizeof *grown);
        if (!grown) {
            s->lost++;
            return;
        }
        s->buf = grown;
        s->cap = cap;
    }
    gv_reading *r = &s->buf[s->n++];
    r->t_ns = clock_ns(CLOCK_MONOTONIC);
    r->cpu_ns = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    r->rss_bytes = -1;
    if (r->t_ns - s->rss_t_ns >= s->rss_every_ns) { /* memory moves slowly */
        r->rss_bytes = resident_bytes(s);
        s->rss_t_ns = r->t_ns;
    }
}

static void *run(void *arg) {
    gv_sampler *s = arg;
    /* A reading may come up to a tenth of a period late (it carries its own time): the
     * kernel can then serve it with a wake-up it makes anyway, not an interrupt of its own. */
    prctl(PR_SET_TIMERSLACK, (unsigned long)(s->period_ns / 10), 0, 0, 0);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    pthread_mutex_lock(&s->mu);
    while (s->running) {
        int64_t due = (int64_t)next.tv_sec * 1000000000LL + next.tv_nsec + s->period_ns;
        int64_t now = clock_ns(CLOCK_MONOTONIC);
        if (due < now) due = now; /* fell behind (a suspended process): no burst */
        next.tv_sec = due / 1000000000LL;
        next.tv_nsec = due % 1000000000LL;
        int rc = 0;
        while (s->running && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&s->cv, &s->mu, &next);
        if (s->running) keep_reading(s);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* A started sampler, or NULL (errno says why). */
gv_sampler *gv_start(int64_t period_ns, int64_t rss_every_ns) {
    gv_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&s->mu, NULL);
    s->period_ns = period_ns;
    s->rss_every_ns = rss_every_ns;
    s->page = sysconf(_SC_PAGESIZE);
    s->statm = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    s->running = 1;
    pthread_mutex_lock(&s->mu);
    keep_reading(s); /* the first reading, memory included */
    pthread_mutex_unlock(&s->mu);
    int rc = pthread_create(&s->thread, NULL, run, s);
    if (rc) {
        if (s->statm >= 0) close(s->statm);
        free(s->buf);
        free(s);
        errno = rc;
        return NULL;
    }
    return s;
}

/* Take a reading now, from the calling thread (a step's end). */
void gv_read_now(gv_sampler *s) {
    pthread_mutex_lock(&s->mu);
    keep_reading(s);
    pthread_mutex_unlock(&s->mu);
}

/* Move up to `max` kept readings, oldest first, into `out`; returns how many. */
size_t gv_take(gv_sampler *s, gv_reading *out, size_t max) {
    pthread_mutex_lock(&s->mu);
    size_t k = s->n < max ? s->n : max;
    for (size_t i = 0; i < k; i++) out[i] = s->buf[i];
    for (size_t i = k; i < s->n; i++) s->buf[i - k] = s->buf[i];
    s->n -= k;
    pthread_mutex_unlock(&s->mu);
    return k;
}

int64_t gv_lost(gv_sampler *s) { return s->lost; }

/* Stop the thread; the readings it kept stay until gv_free. */
void gv_stop(gv_sampler *s) {
    pthread_mutex_lock(&s->mu);
    int was = s->running;
    s->running = 0;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (was) pthread_join(s->thread, NULL);
}

void gv_free(gv_sampler *s) {
    gv_stop(s);
    if (s->statm >= 0) close(s->statm);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->buf);
    free(s);
}
