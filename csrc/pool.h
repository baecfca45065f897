/* The engine's worker pool (pool.c): internal to the C engine. */
#ifndef FASTLENET_POOL_H
#define FASTLENET_POOL_H

#include <stddef.h>
#include <stdint.h>

#if defined(_OPENMP) && (defined(__unix__) || defined(__APPLE__))
#define FL_HAVE_POOL 1
#else
#define FL_HAVE_POOL 0
#endif

/* Work on items [begin, end). */
typedef void (*fl_pool_fn)(void *ctx, size_t begin, size_t end);

/* Runs fn over items [0, count), handed out `chunk` at a time, on the calling thread and up to
 * num_threads - 1 pool threads. Returns 1 when done; 0 when nothing ran because the pool is
 * absent, busy with another caller's batch, or num_threads < 2: the caller then runs the work
 * itself. */
int fl_pool_run(int num_threads, size_t count, size_t chunk, fl_pool_fn fn, void *ctx);

#endif
