// penalties.h: weight and activity penalties; compiled per ISA.
//
// The weight penalties' gradients and the L1 proximal step live inside the
// optimizer pass (optimizers.h); what is here is what the pass cannot do
// alone: max-norm's rescaling of columns, penalty values for reporting, and
// the activity penalties on a hidden layer's output h (B, N):
//   l1:        alpha * mean_b sum_j |h_bj|                 dh = alpha sign(h) / B
//   kl:        beta * sum_j KL(rho || rho_hat_j),          dh = beta (-(rho / rho_hat_j) + (1 - rho) / (1 - rho_hat_j)) / B
//              rho_hat_j = mean_b h_bj  (units in (0, 1))
//   student_t: alpha * mean_b sum_j log(1 + h_bj^2)        dh = alpha 2 h / (1 + h^2) / B
#pragma once
#include "kernels/cpu.h"
#include "kernels/simd.h"

namespace dropkit {
namespace DK_ISA {

// W (rows, cols): every column j whose norm sqrt(col_sq[j]) exceeds c is scaled to norm c.
static void max_norm_columns(float* W, int64_t rows, int64_t cols, const float* col_sq, float c) {
  float scale_stack[256];
  float* scale = cols <= 256 ? scale_stack : new float[cols];
  bool any = false;
  for (int64_t j = 0; j < cols; j++) {
    float norm = __builtin_sqrtf(col_sq[j]);
    scale[j] = norm > c ? c / norm : 1.0f;
    any |= norm > c;
  }
  if (any)
    for (int64_t r = 0; r < rows; r++)
      for (int64_t j = 0; j < cols; j++) W[r * cols + j] *= scale[j];
  if (scale != scale_stack) delete[] scale;
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
    for (int k = 0; k < 8; k++) part[k] += f((double)x[i + k]);
  for (int k = 0; i < n; i++, k++) part[k] += f((double)x[i]);
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

static double sum_abs(const float* x, int64_t n) {
  return sum_in_double(x, n, [](double v) { return v < 0.0 ? -v : v; });
}

static double sum_squares(const float* x, int64_t n) {
  return sum_in_double(x, n, [](double v) { return v * v; });
}

// KL(rho || q) for Bernoulli variables, q clamped away from 0 and 1.
static inline double kl_bernoulli(double rho, double q) {
  const double lo = 1e-6;
  q = q < lo ? lo : (q > 1.0 - lo ? 1.0 - lo : q);
  return rho * __builtin_log(rho / q) + (1.0 - rho) * __builtin_log((1.0 - rho) / (1.0 - q));
}

// The penalty's value on h (B, N); for kl also writes the column means, which
// the backward pass needs, into col_mean (N).
static double activity_value(const float* h, int64_t B, int64_t N, ActivityParams p, float* col_mean) {
  double total = 0.0;
  switch (p.kind) {
    case ActivityKind::none:
      break;
    case ActivityKind::l1:
      total = p.alpha * sum_abs(h, B * N) / B;
      break;
    case ActivityKind::student_t:
      for (int64_t i = 0; i < B * N; i++) total += __builtin_log1p((double)h[i] * h[i]);
      total *= p.alpha / B;
      break;
    case ActivityKind::kl:
      for (int64_t j = 0; j < N; j++) col_mean[j] = 0.0f;
      for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < N; j++) col_mean[j] += h[b * N + j];
      for (int64_t j = 0; j < N; j++) {
        col_mean[j] /= (float)B;
        total += kl_bernoulli(p.rho, col_mean[j]);
      }
      total *= p.alpha;
      break;
  }
  return total;
}

// dh (n) of the penalty for one row of h, added to da (the fused part of the
// layer's backward pass: dz = (da + dh) * act'(z)).
static inline float activity_grad(float h, int64_t j, const ActivityParams& p) {
  switch (p.kind) {
    case ActivityKind::l1:
      return p.alpha * p.inv_batch * (h > 0.0f ? 1.0f : (h < 0.0f ? -1.0f : 0.0f));
    case ActivityKind::student_t:
      return p.alpha * p.inv_batch * 2.0f * h / (1.0f + h * h);
    case ActivityKind::kl: {
      float q = fminf_(fmaxf_(p.col_mean[j], 1e-6f), 1.0f - 1e-6f);
      return p.alpha * p.inv_batch * (-p.rho / q + (1.0f - p.rho) / (1.0f - q));
    }
    case ActivityKind::none:
      break;
  }
  return 0.0f;
}

}  // namespace DK_ISA
}  // namespace dropkit
