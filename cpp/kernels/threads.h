// threads.h: a persistent pool of worker threads shared by every kernel.
//
// Work is split into contiguous chunks of [0, n); the caller's thread takes a
// chunk too. The interface is a plain function pointer so that the per-ISA
// kernel units can call it without instantiating any shared template.
#pragma once
#include <cstdint>

namespace dropkit {

using RangeFn = void (*)(void* ctx, int64_t begin, int64_t end);

// Runs fn(ctx, begin, end) over chunks covering [0, n) on up to num_threads()
// threads, each chunk at least `grain` long; returns when all are done. Nested
// calls run inline on the calling thread.
void parallel_for(int64_t n, int64_t grain, RangeFn fn, void* ctx);

// The grain for splitting slices of `per_slice` elements each (rows or
// columns of an elementwise pass): at least about a thread wake-up's worth of
// elements (2^15) per chunk, so that small passes stay on the calling thread.
// Static: each ISA's unit keeps its own copy (see dispatch_isa.cpp).
static inline int64_t slices_per_chunk(int64_t per_slice) { return ((int64_t)1 << 15) / (per_slice > 0 ? per_slice : 1) + 1; }

int num_threads();
void set_num_threads(int n);  // n >= 1; the pool grows or shrinks lazily
int default_num_threads();    // the CPUs this process may use, at most OMP_NUM_THREADS

}  // namespace dropkit
