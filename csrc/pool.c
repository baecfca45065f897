/* The engine's own worker threads (POSIX builds with OpenMP): why not an OpenMP parallel region.
 *
 * - Fork: libgomp is not fork-safe. A child forked after *any* library in the parent ran an
 *   OpenMP region hangs in its first parallel region, and fastlenet cannot know whether another
 *   library (scikit-learn, a ctypes helper...) did. These threads are fastlenet's own: a
 *   pthread_atfork child handler forgets them (they do not exist in the child), and the child's
 *   first batch starts fresh ones.
 * - Idle CPU: libgomp's workers spin after each region (GOMP_SPINCOUNT, about 0.7 of a core in
 *   a loop of batch 16 every 10 ms on this machine). These threads sleep on a condition
 *   variable the moment the work runs out; there is no spin phase.
 * - Signals: the workers block every signal, so that SIGINT reaches the Python main thread.
 *
 * One batch uses the pool at a time; a batch that finds it busy (another Python thread is
 * running one) runs on its caller's thread alone. Results never depend on which thread ran an
 * image, so neither does this choice. OpenMP is still linked: omp_get_max_threads() is the
 * thread limit that OMP_NUM_THREADS and threadpoolctl set (fl_thread_limit).
 */
#include "pool.h"

#include <limits.h>

#if FL_HAVE_POOL
#include <omp.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

#define FL_POOL_MAX 256

static struct {
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    int started;         /* worker threads alive in this process */
    int busy;            /* a batch owns the pool */
    unsigned long gen;   /* batch number: workers run each batch once */
    int wanted;          /* workers 0 .. wanted-1 take part in batch `gen` */
    int running;         /* of those, how many have not finished */
    fl_pool_fn fn;
    void *ctx;
    size_t count, chunk;
    size_t next;         /* the next item to hand out (atomic) */
} P = {.mu = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER,
       .done = PTHREAD_COND_INITIALIZER};

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void drain(void) {
    for (;;) {
        size_t i = __atomic_fetch_add(&P.next, P.chunk, __ATOMIC_RELAXED);
        if (i >= P.count) return;
        P.fn(P.ctx, i, P.count - i < P.chunk ? P.count : i + P.chunk);
    }
}

static void *worker(void *arg) {
    const int index = (int)(intptr_t)arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&P.mu);
    for (;;) {
        while (P.gen == seen) pthread_cond_wait(&P.work, &P.mu);
        seen = P.gen;
        if (index >= P.wanted) continue;
        pthread_mutex_unlock(&P.mu);
        drain();
        pthread_mutex_lock(&P.mu);
        if (--P.running == 0) pthread_cond_signal(&P.done);
    }
    return NULL;
}

/* fork: hold the lock across it, so that the child never inherits a half-written batch; the
 * child then forgets the parent's workers (only the forking thread exists in it). */
static void before_fork(void) { pthread_mutex_lock(&P.mu); }
static void after_fork_parent(void) { pthread_mutex_unlock(&P.mu); }
static void after_fork_child(void) {
    pthread_mutex_init(&P.mu, NULL);
    pthread_cond_init(&P.work, NULL);
    pthread_cond_init(&P.done, NULL);
    P.started = P.busy = P.wanted = P.running = 0;
    P.gen = 0;
}
static void register_atfork(void) {
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}

/* Called with P.mu held: make sure `n` workers exist; returns how many do. */
static int start_workers(int n) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* inherited by the new threads */
    while (P.started < n) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int rc = pthread_create(&t, &attr, worker, (void *)(intptr_t)P.started);
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        P.started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return P.started;
}

int fl_pool_run(int num_threads, size_t count, size_t chunk, fl_pool_fn fn, void *ctx) {
    if (num_threads < 2 || count == 0) return 0;
    if (num_threads > FL_POOL_MAX) num_threads = FL_POOL_MAX;
    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&P.mu);
    if (P.busy) {
        pthread_mutex_unlock(&P.mu);
        return 0;
    }
    const int helpers = start_workers(num_threads - 1) < num_threads - 1 ? P.started
                                                                         : num_threads - 1;
    if (helpers < 1) {
        pthread_mutex_unlock(&P.mu);
        return 0;
    }
    P.busy = 1;
    P.fn = fn, P.ctx = ctx, P.count = count, P.chunk = chunk ? chunk : 1;
    __atomic_store_n(&P.next, 0, __ATOMIC_RELAXED);
    P.wanted = P.running = helpers;
    P.gen++;
    pthread_cond_broadcast(&P.work);
    pthread_mutex_unlock(&P.mu);
    drain(); /* the caller works too */
    pthread_mutex_lock(&P.mu);
    while (P.running > 0) pthread_cond_wait(&P.done, &P.mu);
    P.busy = 0;
    pthread_mutex_unlock(&P.mu);
    return 1;
}

int fl_thread_limit(void) { return omp_get_max_threads(); }

#else /* no pool: net.c uses an OpenMP region where OpenMP exists, else one thread */

int fl_pool_run(int num_threads, size_t count, size_t chunk, fl_pool_fn fn, void *ctx) {
    (void)num_threads, (void)count, (void)chunk, (void)fn, (void)ctx;
    return 0;
}

#ifdef _OPENMP
#include <omp.h>
int fl_thread_limit(void) { return omp_get_max_threads(); }
#else
int fl_thread_limit(void) { return 1; }
#endif

#endif
