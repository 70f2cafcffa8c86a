// penalties.h: weight and activity penalties; compiled per ISA.
//
// The weight penalties' gradients and the L1 proximal step live inside the
// optimizer pass (optimizers.h); what is here is what the pass cannot do
// alone: max-norm's rescaling of columns, penalty values for reporting (and,
// beside those sums, the check that data is finite), and the activity
// penalties on a hidden layer's output h (B, N):
//   l1:        alpha * mean_b sum_j |h_bj|                 dh = alpha sign(h) / B
//   kl:        beta * sum_j KL(rho || rho_hat_j),          dh = beta (-(rho / rho_hat_j) + (1 - rho) / (1 - rho_hat_j)) / B
//              rho_hat_j = mean_b h_bj  (units in (0, 1))
//   student_t: alpha * mean_b sum_j log(1 + h_bj^2)        dh = alpha 2 h / (1 + h^2) / B
#pragma once
#include "kernels/cpu.h"
#include "kernels/simd.h"
#include "kernels/threads.h"

#include <atomic>
#include <vector>

namespace dropkit {
namespace DK_ISA {

struct MaxNormJob {
  float* W;
  int64_t rows, cols;
  float c;
};

// Columns [j0, j1) of W, a slice at a time: their squared norms summed down
// the rows in order (whichever thread has them, so the result does not
// depend on the thread count), then those with norm above c scaled to c.
static void max_norm_span(void* ctx, int64_t j0, int64_t j1) {
  const MaxNormJob& J = *static_cast<const MaxNormJob*>(ctx);
  constexpr int64_t kSlice = 256;
  alignas(64) float sq[kSlice];
  alignas(64) float scale[kSlice];
  for (int64_t s = j0; s < j1; s += kSlice) {
    const int64_t n = imin(kSlice, j1 - s);
    for (int64_t j = 0; j < n; j++) sq[j] = 0.0f;
    for (int64_t r = 0; r < J.rows; r++) {
      const float* __restrict w_r = J.W + r * J.cols + s;
      for (int64_t j = 0; j < n; j++) sq[j] += w_r[j] * w_r[j];
    }
    bool any = false;
    for (int64_t j = 0; j < n; j++) {
      const float norm = __builtin_sqrtf(sq[j]);
      scale[j] = norm > J.c ? J.c / norm : 1.0f;
      any |= norm > J.c;
    }
    if (!any) continue;
    for (int64_t r = 0; r < J.rows; r++) {
      float* __restrict w_r = J.W + r * J.cols + s;
      for (int64_t j = 0; j < n; j++) w_r[j] *= scale[j];
    }
  }
}

// W (rows, cols): every column whose norm exceeds c is scaled to norm c.
// Columns split over threads: each column's norm is one thread's sum.
static void max_norm_columns(float* W, int64_t rows, int64_t cols, float c) {
  MaxNormJob job{W, rows, cols, c};
  parallel_for(cols, std::max<int64_t>(16, ((int64_t)1 << 15) / std::max<int64_t>(rows, 1)), max_norm_span, &job);
}

// sum over x of f(x) in float64, in eight independent partial sums: one
// running sum would wait on the adder's latency at every element (the
// penalty and the gradient norms are taken over every parameter each epoch).
// The order is fixed, so the result is too.
template <typename F>
static inline double sum_in_double(const float* x, int64_t n, F f) {
  double part[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; k++) part[k] += f(x[i + k]);
  for (int k = 0; i < n; i++, k++) part[k] += f(x[i]);
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

static double sum_abs(const float* x, int64_t n) {
  return sum_in_double(x, n, [](float v) { return (double)(v < 0.0f ? -v : v); });
}

static double sum_squares(const float* x, int64_t n) {
  return sum_in_double(x, n, [](float v) { return (double)v * v; });
}

// The zeros of x, counted in float lanes: exact below 2^24 per lane, far
// more than a block of block_stats holds.
static int64_t count_zeros(const float* x, int64_t n) {
  int64_t i = 0, count = 0;
#if DK_VEC_WIDTH > 1
  const vf zero = vbroadcast(0.0f), one = vbroadcast(1.0f);
  vf acc = zero;
  for (; i + W <= n; i += W) acc += vload(x + i) == zero ? one : zero;
  for (int k = 0; k < W; k++) count += (int64_t)acc[k];
#endif
  for (; i < n; i++) count += x[i] == 0.0f;
  return count;
}

// Three passes over a block that stays in L1 or L2 rather than one: each
// of these loops vectorises, and a loop doing the three at once did not
// (0.6 ns an element against under 0.1 for the three).
static BlockStats span_stats(const float* x, int64_t n, bool squares_only) {
  if (squares_only) return BlockStats{sum_squares(x, n), 0.0, 0};
  return BlockStats{sum_squares(x, n), sum_abs(x, n), count_zeros(x, n)};
}

struct StatsJob {
  const float* x;
  int64_t n, block;
  bool squares_only;
  BlockStats* out;
};

static void block_stats_range(void* ctx, int64_t b0, int64_t b1) {
  const StatsJob& j = *static_cast<const StatsJob*>(ctx);
  for (int64_t b = b0; b < b1; b++)
    j.out[b] = span_stats(j.x + b * j.block, imin(j.block, j.n - b * j.block), j.squares_only);
}

static void block_stats(const float* x, int64_t n, int64_t block, bool squares_only, BlockStats* out) {
  StatsJob job{x, n, block, squares_only, out};
  parallel_for((n + block - 1) / block, 1, block_stats_range, &job);
}

// Whether every element of x is finite: x * 0 is 0 for a finite x and NaN
// for an infinity or a NaN, and a NaN stays in any sum it joins. One
// multiply-add per element, without branches or float64 (numpy's float64
// sum of a float32 array, which did this before, took 0.5-0.6 ns per
// element on one core, 1-2% of an epoch of the large net; this, 0.05-0.1).
static bool all_finite_span(const float* x, int64_t n) {
  constexpr int kSums = 4;  // independent sums: the adder's latency
  const vf zero = vbroadcast(0.0f);
  vf acc[kSums] = {zero, zero, zero, zero};
  int64_t i = 0;
  for (; i + kSums * W <= n; i += kSums * W)
    for (int k = 0; k < kSums; k++) acc[k] += vload(x + i + k * W) * zero;
  float tail = 0.0f;
  for (; i < n; i++) tail += x[i] * 0.0f;
  return vsum((acc[0] + acc[1]) + (acc[2] + acc[3])) + tail == 0.0f;
}

struct FiniteJob {
  const float* x;
  std::atomic<bool> found_nonfinite{false};
};

static void all_finite_chunk(void* ctx, int64_t begin, int64_t end) {
  FiniteJob& j = *static_cast<FiniteJob*>(ctx);
  if (!j.found_nonfinite.load(std::memory_order_relaxed) && !all_finite_span(j.x + begin, end - begin))
    j.found_nonfinite.store(true, std::memory_order_relaxed);
}

static bool all_finite(const float* x, int64_t n) {
  FiniteJob job{x};
  parallel_for(n, (int64_t)1 << 16, all_finite_chunk, &job);
  return !job.found_nonfinite.load();
}

// log(1 + h^2) in float. From |h| = 2^16 on, 1 + h^2 rounds to h^2, so it is
// 2 log|h| there, which stays finite up to |h| = FLT_MAX, as float64 does.
static inline float log1p_square(float h) {
  const float x = h < 0.0f ? -h : h;
  return x < 65536.0f ? log1p_approx(x * x) : 2.0f * log_approx(x);
}

// KL(rho || q) for Bernoulli variables, q clamped away from 0 and 1.
static inline double kl_bernoulli(double rho, double q) {
  const double lo = 1e-6;
  q = q < lo ? lo : (q > 1.0 - lo ? 1.0 - lo : q);
  return rho * __builtin_log(rho / q) + (1.0 - rho) * __builtin_log((1.0 - rho) / (1.0 - q));
}

// kl's gradient in h_bj, the same for every row: it depends on the column mean alone.
static inline float kl_grad(float col_mean, const ActivityParams& p) {
  const float q = fminf_(fmaxf_(col_mean, 1e-6f), 1.0f - 1e-6f);
  return p.alpha * p.inv_batch * (-p.rho / q + (1.0f - p.rho) / (1.0f - q));
}

struct ActivityValueJob {
  const float* h;
  int64_t B, N;
  ActivityParams p;
  float* col_mean;  // kl
  double* part;     // the sum over each row (l1, student_t) or each column's KL (kl)
};

static void activity_value_rows(void* ctx, int64_t b0, int64_t b1) {
  const ActivityValueJob& J = *static_cast<const ActivityValueJob*>(ctx);
  for (int64_t b = b0; b < b1; b++) {
    const float* h_b = J.h + b * J.N;
    J.part[b] = J.p.kind == ActivityKind::l1
                    ? sum_abs(h_b, J.N)
                    : sum_in_double(h_b, J.N, [](float v) { return (double)log1p_square(v); });
  }
}

static void activity_value_columns(void* ctx, int64_t j0, int64_t j1) {
  const ActivityValueJob& J = *static_cast<const ActivityValueJob*>(ctx);
  float* mean = J.col_mean;
  for (int64_t j = j0; j < j1; j++) mean[j] = 0.0f;
  for (int64_t b = 0; b < J.B; b++) {
    const float* h_b = J.h + b * J.N;
    for (int64_t j = j0; j < j1; j++) mean[j] += h_b[j];
  }
  for (int64_t j = j0; j < j1; j++) {
    mean[j] /= (float)J.B;
    J.part[j] = kl_bernoulli(J.p.rho, mean[j]);
  }
}

// The penalty's value on h (B, N); for kl also writes the column means, which
// the backward pass needs, into col_mean (N). Rows (or, for kl, columns) are
// split over threads, and their partial sums are added in order afterwards,
// so the value does not depend on the thread count.
static double activity_value(const float* h, int64_t B, int64_t N, ActivityParams p, float* col_mean) {
  if (p.kind == ActivityKind::none) return 0.0;
  const bool by_column = p.kind == ActivityKind::kl;
  std::vector<double> part(by_column ? N : B);
  ActivityValueJob job{h, B, N, p, col_mean, part.data()};
  if (by_column)
    parallel_for(N, imin(N, ((int64_t)1 << 15) / (B > 0 ? B : 1) + 16), activity_value_columns, &job);
  else
    parallel_for(B, slices_per_chunk(N), activity_value_rows, &job);
  double total = 0.0;
  for (double v : part) total += v;
  return by_column ? p.alpha * total : p.alpha * total / B;
}

// da_pen (n) = da (n) + the penalty's gradient at h (n), for one row segment;
// kl's gradient is per column, in col_grad (n) of the same segment. The
// switch stays outside the loops, so that each of them vectorises.
static inline void add_activity_grad(float* __restrict da_pen, const float* da, const float* __restrict h,
                                     int64_t n, const ActivityParams& p, const float* __restrict col_grad) {
  const float c = p.alpha * p.inv_batch;
  switch (p.kind) {
    case ActivityKind::l1:
      for (int64_t j = 0; j < n; j++) da_pen[j] = da[j] + (h[j] > 0.0f ? c : (h[j] < 0.0f ? -c : 0.0f));
      break;
    case ActivityKind::student_t:
      // 2h / (1 + h^2) as 2 / (h + 1/h): the same within an ulp, and 0 rather
      // than inf / inf where h^2 overflows (|h| > 1.8e19); 0 at h = 0 too
      for (int64_t j = 0; j < n; j++) da_pen[j] = da[j] + c * 2.0f / (h[j] + 1.0f / h[j]);
      break;
    case ActivityKind::kl:
      for (int64_t j = 0; j < n; j++) da_pen[j] = da[j] + col_grad[j];
      break;
    case ActivityKind::none:
      for (int64_t j = 0; j < n; j++) da_pen[j] = da[j];
      break;
  }
}

}  // namespace DK_ISA
}  // namespace dropkit
