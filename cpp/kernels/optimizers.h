// optimizers.h: one fused pass over a segment of the flat parameter buffer per
// step; compiled per ISA. In one loop: L2 into the gradient, decoupled weight
// decay, then the optimizer's update. m and v are the optimizer's state, laid
// out like the parameters (unused ones may be null).
//   sgd:     m = momentum m + g;  w -= lr (nesterov ? g + momentum m : m)   (PyTorch's form)
//   adagrad: v += g^2;            w -= lr g / (sqrt(v) + eps)
//   rmsprop: v = rho v + (1 - rho) g^2;  w -= lr g / (sqrt(v) + eps)
//   adam:    m, v moving averages;  w -= lr (m / bc1) / (sqrt(v / bc2) + eps)
// AdamW is adam with weight_decay > 0; plain SGD is sgd with momentum 0.
#pragma once
#include "kernels/cpu.h"
#include "kernels/simd.h"

namespace dropkit {
namespace DK_ISA {

static void optimizer_step(float* __restrict w, const float* __restrict g, float* __restrict m,
                           float* __restrict v, int64_t n, OptParams p) {
  const float decay = 1.0f - p.lr * p.weight_decay;
  const float l2 = p.l2, lr = p.lr;
  switch (p.kind) {
    case Optimizer::sgd:
      if (p.momentum == 0.0f) {
        for (int64_t i = 0; i < n; i++) w[i] = w[i] * decay - lr * (g[i] + l2 * w[i]);
      } else {
        const float mu = p.momentum;
        const float nest = p.nesterov ? 1.0f : 0.0f;
        for (int64_t i = 0; i < n; i++) {
          float gi = g[i] + l2 * w[i];
          float mi = mu * m[i] + gi;
          m[i] = mi;
          // nesterov: g + mu m; classical: m
          float step = nest * (gi + mu * mi) + (1.0f - nest) * mi;
          w[i] = w[i] * decay - lr * step;
        }
      }
      break;
    case Optimizer::adagrad:
      for (int64_t i = 0; i < n; i++) {
        float gi = g[i] + l2 * w[i];
        float vi = v[i] + gi * gi;
        v[i] = vi;
        w[i] = w[i] * decay - lr * gi / (__builtin_sqrtf(vi) + p.eps);
      }
      break;
    case Optimizer::rmsprop:
      for (int64_t i = 0; i < n; i++) {
        float gi = g[i] + l2 * w[i];
        float vi = p.rho * v[i] + (1.0f - p.rho) * gi * gi;
        v[i] = vi;
        w[i] = w[i] * decay - lr * gi / (__builtin_sqrtf(vi) + p.eps);
      }
      break;
    case Optimizer::adam: {
      const float b1 = p.beta1, b2 = p.beta2;
      const float inv_bc1 = 1.0f / p.bias_correction1;
      const float inv_sqrt_bc2 = 1.0f / __builtin_sqrtf(p.bias_correction2);
      for (int64_t i = 0; i < n; i++) {
        float gi = g[i] + l2 * w[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] = w[i] * decay - lr * (mi * inv_bc1) / (__builtin_sqrtf(vi) * inv_sqrt_bc2 + p.eps);
      }
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
