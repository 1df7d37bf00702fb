/* threads.c: a small pthread pool (no OpenMP runtime to clash with
 * NumPy's or torch's).
 *
 * One job at a time: a call that finds the pool busy (another Python thread
 * is inside a kernel with the GIL released) runs on its own thread instead of
 * waiting.  After fork() the child has no workers; the atfork handler resets
 * the pool so the child builds a new one on first use.
 *
 * Threads claim ranges of a job as they get free, about four per thread,
 * instead of one fixed share each: on a shared machine one core is often
 * slower than the other for a while (a neighbour's load), and a fixed half
 * made the job wait for it (figures in docs/performance.md, "Threads"). */
#define _POSIX_C_SOURCE 200809L /* sysconf, pthreads */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "scan.h"

#define SCAN_MAX_THREADS 256

typedef struct {
    pthread_mutex_t lock;        /* guards everything below */
    pthread_cond_t wake;         /* workers wait here for a new generation */
    pthread_cond_t done;         /* the caller waits here for pending == 0 */
    pthread_mutex_t busy;        /* held by the one caller using the pool */
    pthread_t workers[SCAN_MAX_THREADS];
    int nworkers;
    unsigned long generation;
    int pending;
    int active;                  /* workers taking part in this job */
    scan_task_fn fn;
    void *ctx;
    int64_t count, grain;
    int down;
    atomic_int_fast64_t next; /* the start of the next range to claim */
} pool_t;

static pool_t pool = {.lock = PTHREAD_MUTEX_INITIALIZER,
                      .wake = PTHREAD_COND_INITIALIZER,
                      .done = PTHREAD_COND_INITIALIZER,
                      .busy = PTHREAD_MUTEX_INITIALIZER};
static int num_threads = 0; /* 0: not yet decided */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* claims and runs ranges of the current job until none is left */
static void take_ranges(scan_task_fn fn, void *ctx, int64_t count, int64_t grain, int down)
{
    for (;;) {
        const int64_t b = atomic_fetch_add(&pool.next, grain);
        if (b >= count)
            return;
        const int64_t e = count - b > grain ? b + grain : count;
        if (down)
            fn(ctx, count - e, count - b);
        else
            fn(ctx, b, e);
    }
}

static void *worker_main(void *arg)
{
    const int id = (int)(intptr_t)arg; /* 1 .. nworkers; part 0 is the caller's */
    unsigned long seen = 0;
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        while (pool.generation == seen)
            pthread_cond_wait(&pool.wake, &pool.lock);
        seen = pool.generation;
        if (id <= pool.active) {
            scan_task_fn fn = pool.fn;
            void *ctx = pool.ctx;
            const int64_t count = pool.count, grain = pool.grain;
            const int down = pool.down;
            pthread_mutex_unlock(&pool.lock);
            take_ranges(fn, ctx, count, grain, down);
            pthread_mutex_lock(&pool.lock);
        }
        if (--pool.pending == 0)
            pthread_cond_signal(&pool.done);
    }
    return NULL;
}

static void reset_after_fork(void)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    pool.lock = m;
    pool.busy = m;
    pool.wake = c;
    pool.done = c;
    pool.nworkers = 0;
    pool.pending = 0;
    pool.generation = 0;
}

static void install_atfork(void) { pthread_atfork(NULL, NULL, reset_after_fork); }

int scan_get_num_threads(void)
{
    if (num_threads <= 0) {
        const char *env = getenv("SCANAD_NUM_THREADS");
        long n = env ? strtol(env, NULL, 10) : 0;
        if (n <= 0)
            n = sysconf(_SC_NPROCESSORS_ONLN);
        if (n <= 0)
            n = 1;
        num_threads = n > SCAN_MAX_THREADS ? SCAN_MAX_THREADS : (int)n;
    }
    return num_threads;
}

void scan_set_num_threads(int n)
{
    num_threads = n < 1 ? 1 : n > SCAN_MAX_THREADS ? SCAN_MAX_THREADS : n;
}

void scan_parallel_for(scan_task_fn fn, void *ctx, int64_t count, int nthreads, int down)
{
    if (nthreads > count)
        nthreads = (int)count;
    if (nthreads > SCAN_MAX_THREADS)
        nthreads = SCAN_MAX_THREADS;
    if (nthreads <= 1 || pthread_mutex_trylock(&pool.busy) != 0) {
        fn(ctx, 0, count);
        return;
    }
    pthread_once(&atfork_once, install_atfork);
    pthread_mutex_lock(&pool.lock);
    while (pool.nworkers < nthreads - 1) {
        const int id = pool.nworkers + 1;
        if (pthread_create(&pool.workers[pool.nworkers], NULL, worker_main, (void *)(intptr_t)id) != 0)
            break;
        pthread_detach(pool.workers[pool.nworkers]);
        pool.nworkers++;
    }
    if (nthreads - 1 > pool.nworkers)
        nthreads = pool.nworkers + 1;
    pool.fn = fn;
    pool.ctx = ctx;
    pool.count = count;
    const int64_t grain = count / (4 * (int64_t)nthreads) > 1 ? count / (4 * (int64_t)nthreads) : 1;
    pool.grain = grain;
    pool.down = down;
    atomic_store(&pool.next, 0);
    pool.active = nthreads - 1;
    pool.pending = pool.nworkers; /* every worker wakes and reports, active or not */
    pool.generation++;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);

    take_ranges(fn, ctx, count, grain, down);

    pthread_mutex_lock(&pool.lock);
    while (pool.pending > 0)
        pthread_cond_wait(&pool.done, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.busy);
}
