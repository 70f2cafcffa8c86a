// optimizers.h: one fused pass over a segment of the flat parameter buffer per
// step; compiled per ISA. In one loop: L2 (and subgradient L1) into the
// gradient, decoupled weight decay, the optimizer's update, the L1 proximal
// step, and the column norms max-norm needs. m and v are the optimizer's
// state, laid out like the parameters (unused ones may be null).
//   sgd:     m = momentum m + g;  w -= lr (nesterov ? g + momentum m : m)   (PyTorch's form)
//   adagrad: v += g^2;            w -= lr g / (sqrt(v) + eps)
//   rmsprop: v = rho v + (1 - rho) g^2;  w -= lr g / (sqrt(v) + eps)
//   adam:    m, v moving averages;  w -= lr (m / bc1) / (sqrt(v / bc2) + eps)
// AdamW is adam with weight_decay > 0; plain SGD is sgd with momentum 0.
//
// Proximal L1: after the update, w = sign(w) max(|w| - t, 0) with t = l1 times
// the step size the optimizer applied to this coordinate: lr for sgd (the
// exact proximal gradient step without momentum), lr / (sqrt(v) + eps) for
// adagrad and rmsprop, lr / (sqrt(v / bc2) + eps) for adam.
#pragma once
#include "kernels/cpu.h"
#include "kernels/simd.h"

namespace dropkit {
namespace DK_ISA {

static inline float soft_threshold(float w, float t) {
  return w > t ? w - t : (w < -t ? w + t : 0.0f);
}

static inline float sign_of(float w) { return w > 0.0f ? 1.0f : (w < 0.0f ? -1.0f : 0.0f); }

// Calls update(i) -> (new w, step size) for every element of the (rows, cols)
// segment, then applies the proximal step and collects the column norms.
template <typename Update>
static inline void fused_pass(float* __restrict w, int64_t rows, int64_t cols, const OptParams& p,
                              float* __restrict col_sq, Update update) {
  const float l1 = p.l1_proximal ? p.l1 : 0.0f;
  for (int64_t r = 0; r < rows; r++) {
    float* __restrict w_r = w + r * cols;
    for (int64_t j = 0; j < cols; j++) {
      float step_size;
      float wi = update(r * cols + j, step_size);
      if (l1 != 0.0f) wi = soft_threshold(wi, l1 * step_size);
      w_r[j] = wi;
      if (col_sq) col_sq[j] += wi * wi;
    }
  }
}

static void optimizer_step(float* __restrict w, const float* __restrict g, float* __restrict m,
                           float* __restrict v, int64_t rows, int64_t cols, OptParams p,
                           float* __restrict col_sq) {
  const float decay = 1.0f - p.lr * p.weight_decay;
  const float l2 = p.l2, lr = p.lr;
  const float l1_sub = p.l1_proximal ? 0.0f : p.l1;
  auto grad = [&](int64_t i) { return g[i] + l2 * w[i] + l1_sub * sign_of(w[i]); };
  switch (p.kind) {
    case Optimizer::sgd:
      if (p.momentum == 0.0f) {
        fused_pass(w, rows, cols, p, col_sq, [&](int64_t i, float& step) {
          step = lr;
          return w[i] * decay - lr * grad(i);
        });
      } else {
        const float mu = p.momentum;
        const float nest = p.nesterov ? 1.0f : 0.0f;
        fused_pass(w, rows, cols, p, col_sq, [&](int64_t i, float& step) {
          float gi = grad(i);
          float mi = mu * m[i] + gi;
          m[i] = mi;
          step = lr;
          // nesterov: g + mu m; classical: m
          return w[i] * decay - lr * (nest * (gi + mu * mi) + (1.0f - nest) * mi);
        });
      }
      break;
    case Optimizer::adagrad:
      fused_pass(w, rows, cols, p, col_sq, [&](int64_t i, float& step) {
        float gi = grad(i);
        float vi = v[i] + gi * gi;
        v[i] = vi;
        step = lr / (__builtin_sqrtf(vi) + p.eps);
        return w[i] * decay - step * gi;
      });
      break;
    case Optimizer::rmsprop:
      fused_pass(w, rows, cols, p, col_sq, [&](int64_t i, float& step) {
        float gi = grad(i);
        float vi = p.rho * v[i] + (1.0f - p.rho) * gi * gi;
        v[i] = vi;
        step = lr / (__builtin_sqrtf(vi) + p.eps);
        return w[i] * decay - step * gi;
      });
      break;
    case Optimizer::adam: {
      const float b1 = p.beta1, b2 = p.beta2;
      const float inv_bc1 = 1.0f / p.bias_correction1;
      const float inv_sqrt_bc2 = 1.0f / __builtin_sqrtf(p.bias_correction2);
      fused_pass(w, rows, cols, p, col_sq, [&](int64_t i, float& step) {
        float gi = grad(i);
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        step = lr / (__builtin_sqrtf(vi) * inv_sqrt_bc2 + p.eps);
        return w[i] * decay - step * (mi * inv_bc1);
      });
      break;
    }
  }
}

// db (N) += column sums of dz (B, N)
static void column_sums(float* __restrict db, const float* __restrict dz, int64_t B, int64_t N) {
  for (int64_t b = 0; b < B; b++)
    for (int64_t j = 0; j < N; j++) db[j] += dz[b * N + j];
}

static double sum_squares(const float* x, int64_t n) {
  double total = 0.0;
  for (int64_t i = 0; i < n; i++) total += (double)x[i] * x[i];
  return total;
}

}  // namespace DK_ISA
}  // namespace dropkit
