// losses.h: output losses with their gradients, and the output links; compiled per ISA.
//
// z (B, C) are the network's outputs (logits for the cross-entropies), y (B, C)
// the targets (one-hot or soft for softmax_ce, in [0, 1] for binary_ce).
//   softmax_ce: loss_b = -sum_c y log softmax(z)_c          dz = p - y
//   binary_ce:  loss_b = sum_c softplus(z) - y z            dz = sigmoid(z) - y
//   squared:    loss_b = (1/(2C)) sum_c (z - y)^2           dz = (z - y) / C
// `squared` averages over outputs as scikit-learn does. The kernel returns the
// weighted sum over rows; the caller divides by the batch's total weight and
// passes grad_scale = 1 / total weight.
#pragma once
#include "kernels/cpu.h"
#include "kernels/simd.h"

namespace dropkit {
namespace DK_ISA {

static double loss(float* dz, const float* z, const float* y, const float* weight, int64_t B,
                   int64_t C, Loss kind, float grad_scale) {
  double total = 0.0;
  for (int64_t b = 0; b < B; b++) {
    const float* z_b = z + b * C;
    const float* y_b = y + b * C;
    float* dz_b = dz ? dz + b * C : nullptr;
    float w = weight ? weight[b] : 1.0f;
    double loss_b = 0.0;
    switch (kind) {
      case Loss::softmax_ce: {
        float zmax = z_b[0];
        for (int64_t c = 1; c < C; c++) zmax = fmaxf_(zmax, z_b[c]);
        double sum = 0.0;
        for (int64_t c = 0; c < C; c++) sum += __builtin_exp((double)(z_b[c] - zmax));
        double lse = zmax + __builtin_log(sum);
        for (int64_t c = 0; c < C; c++) {
          if (y_b[c] != 0.0f) loss_b -= y_b[c] * (z_b[c] - lse);
          if (dz_b) dz_b[c] = grad_scale * w * (float)(__builtin_exp(z_b[c] - lse) - y_b[c]);
        }
        break;
      }
      case Loss::binary_ce:
        for (int64_t c = 0; c < C; c++) {
          double zc = z_b[c];
          // softplus(z) - y z, stable for both signs of z
          double softplus = (zc > 0 ? zc : 0.0) + __builtin_log1p(__builtin_exp(-(zc > 0 ? zc : -zc)));
          loss_b += softplus - y_b[c] * zc;
          if (dz_b) dz_b[c] = grad_scale * w * (float)(1.0 / (1.0 + __builtin_exp(-zc)) - y_b[c]);
        }
        break;
      case Loss::squared:
        for (int64_t c = 0; c < C; c++) {
          double r = (double)z_b[c] - y_b[c];
          loss_b += r * r / (2.0 * C);
          if (dz_b) dz_b[c] = grad_scale * w * (float)(r / C);
        }
        break;
    }
    total += w * loss_b;
  }
  return total;
}

static void output_link(float* out, const float* z, int64_t B, int64_t C, Loss kind) {
  for (int64_t b = 0; b < B; b++) {
    const float* z_b = z + b * C;
    float* o_b = out + b * C;
    switch (kind) {
      case Loss::softmax_ce: {
        float zmax = z_b[0];
        for (int64_t c = 1; c < C; c++) zmax = fmaxf_(zmax, z_b[c]);
        float sum = 0.0f;
        for (int64_t c = 0; c < C; c++) {
          o_b[c] = exp_approx(z_b[c] - zmax);
          sum += o_b[c];
        }
        float inv = 1.0f / sum;
        for (int64_t c = 0; c < C; c++) o_b[c] *= inv;
        break;
      }
      case Loss::binary_ce:
        for (int64_t c = 0; c < C; c++) o_b[c] = sigmoid_approx(z_b[c]);
        break;
      case Loss::squared:
        for (int64_t c = 0; c < C; c++) o_b[c] = z_b[c];
        break;
    }
  }
}

}  // namespace DK_ISA
}  // namespace dropkit
