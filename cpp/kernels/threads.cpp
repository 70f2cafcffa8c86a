// threads.cpp: the persistent worker pool behind parallel_for.
//
// Workers sleep on a condition variable between calls; a call publishes one
// job, each participant (workers and the caller) takes chunk indices from an
// atomic counter, a few chunks per thread, and the caller waits until every
// chunk is done. Chunks are contiguous ranges, so the split never changes
// what any element computes.
// A training step makes a few dozen calls in quick succession, so workers
// and the caller spin briefly (tens of microseconds) before sleeping: a
// futex wake-up costs more than many of the calls themselves.
#include "kernels/threads.h"

#include <pthread.h>
#include <sched.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "kernels/cpu.h"

namespace dropkit {

namespace {

thread_local bool in_parallel_region = false;

constexpr int kSpinRounds = 4000;  // about 20 to 50 microseconds
constexpr int kChunksPerThread = 4;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

class Pool {
 public:
  void run(int64_t n, int64_t grain, RangeFn fn, void* ctx, int threads) {
    // a few chunks per thread, claimed in turn: a thread on a slower core
    // (one whose other hyperthread the host gives away) takes fewer of them
    int64_t chunks = std::min<int64_t>((int64_t)threads * kChunksPerThread, (n + grain - 1) / grain);
    if (threads <= 1 || chunks <= 1 || in_parallel_region) {
      fn(ctx, 0, n);
      return;
    }
    std::lock_guard<std::mutex> call_lock(call_mutex_);  // one job at a time
    resize(threads - 1);
    uint64_t gen;
    {
      std::lock_guard<std::mutex> lk(mutex_);
      gen = generation_.load() + 1;
      job_ = Job{fn, ctx, n, chunks};
      pending_.store(chunks);
      claim_.store(gen << 32);
      generation_.store(gen);
    }
    wake_.notify_all();
    work(gen, job_);
    for (int i = 0; i < kSpinRounds && pending_.load() != 0; i++) cpu_relax();
    if (pending_.load() != 0) {
      std::unique_lock<std::mutex> lk(mutex_);
      done_.wait(lk, [&] { return pending_.load() == 0; });
    }
  }

 private:
  struct Job {
    RangeFn fn;
    void* ctx;
    int64_t n, chunks;
  };

  // Claims chunks of job `gen` until none are left. The claim counter carries
  // the generation in its high bits, so a worker that wakes late can never
  // take a chunk of a newer job with an older job's function.
  void work(uint64_t gen, Job job) {
    in_parallel_region = true;
    DenormalGuard guard;  // workers get flush-to-zero like the caller
    int64_t finished = 0;
    for (;;) {
      uint64_t s = claim_.load();
      if ((s >> 32) != (gen & 0xffffffffu) || (int64_t)(s & 0xffffffffu) >= job.chunks) break;
      if (!claim_.compare_exchange_weak(s, s + 1)) continue;
      int64_t c = (int64_t)(s & 0xffffffffu);
      job.fn(job.ctx, job.n * c / job.chunks, job.n * (c + 1) / job.chunks);
      finished++;
    }
    in_parallel_region = false;
    if (finished && pending_.fetch_sub(finished) == finished) {
      std::lock_guard<std::mutex> lk(mutex_);  // the caller may be about to sleep
      done_.notify_all();
    }
  }

  void worker_loop(int id) {
    uint64_t seen = 0;
    for (;;) {
      uint64_t gen;
      Job job;
      for (int i = 0; i < kSpinRounds && generation_.load() == seen && id < target_workers_.load(); i++)
        cpu_relax();
      {
        std::unique_lock<std::mutex> lk(mutex_);
        wake_.wait(lk, [&] { return generation_ != seen || id >= target_workers_; });
        if (id >= target_workers_) return;
        seen = gen = generation_;
        job = job_;
      }
      work(gen, job);
    }
  }

  void resize(int workers) {
    if ((int)threads_.size() == workers) return;
    {
      std::lock_guard<std::mutex> lk(mutex_);
      target_workers_ = 0;
    }
    wake_.notify_all();
    for (auto* t : threads_) {
      t->join();
      delete t;
    }
    threads_.clear();
    target_workers_ = workers;
    for (int i = 0; i < workers; i++) threads_.push_back(new std::thread([this, i] { worker_loop(i); }));
  }

  std::mutex call_mutex_, mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread*> threads_;
  std::atomic<int> target_workers_{0};
  std::atomic<uint64_t> generation_{0};
  Job job_{nullptr, nullptr, 0, 0};
  std::atomic<int64_t> pending_{0};
  std::atomic<uint64_t> claim_{0};
};

// Read once, when first needed (a forked child inherits the affinity and the
// environment): every product asks, and the system call costs about as much
// as a one-row product.
std::atomic<int> default_threads{0};

// Never destroyed: workers may outlive static teardown. A forked child has
// none of the parent's threads, so it starts a fresh pool (the old one leaks).
Pool* the_pool = nullptr;
Pool& pool() {
  static bool registered = [] {
    pthread_atfork(nullptr, nullptr, [] { the_pool = new Pool(); });
    return true;
  }();
  (void)registered;
  static std::once_flag once;
  std::call_once(once, [] { if (!the_pool) the_pool = new Pool(); });
  return *the_pool;
}

std::atomic<int> requested_threads{0};

int usable_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

// OMP_NUM_THREADS, as PyTorch and numpy's BLAS read it: joblib's worker
// processes set it to their share of the CPUs, so that n_jobs processes do
// not each start a thread per CPU. 0 when unset or not a positive integer.
int omp_num_threads() {
  const char* s = std::getenv("OMP_NUM_THREADS");
  if (!s) return 0;
  char* end = nullptr;
  long n = std::strtol(s, &end, 10);  // "4,2" (nested levels) counts its first level
  return end != s && n > 0 && n < 1 << 16 ? (int)n : 0;
}

}  // namespace

int default_num_threads() {
  int n = default_threads.load();
  if (n == 0) {
    n = usable_cpus();
    if (int omp = omp_num_threads()) n = std::min(n, omp);
    default_threads.store(n);
  }
  return n;
}

int num_threads() {
  int n = requested_threads.load();
  return n > 0 ? n : default_num_threads();
}

void set_num_threads(int n) { requested_threads.store(n < 1 ? 1 : n); }

void parallel_for(int64_t n, int64_t grain, RangeFn fn, void* ctx) {
  if (n <= 0) return;
  pool().run(n, std::max<int64_t>(grain, 1), fn, ctx, num_threads());
}

}  // namespace dropkit
