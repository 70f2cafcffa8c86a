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
#include "kernels/threads.h"

namespace dropkit {
namespace DK_ISA {

// sign(w) max(|w| - t, 0); a NaN stays NaN so that divergence is seen.
static inline float soft_threshold(float w, float t) {
  return w > t ? w - t : (w < -t ? w + t : (w != w ? w : 0.0f));
}

static inline float sign_of(float w) { return w > 0.0f ? 1.0f : (w < 0.0f ? -1.0f : 0.0f); }

struct AdamHyper {
  float l2, b1, b2, lr, eps, decay, inv_bc1, inv_sqrt_bc2;
};

#if DK_VEC_WIDTH > 1
static inline vf sign_of(vf w) { return w > 0.0f ? vbroadcast(1.0f) : (w < 0.0f ? vbroadcast(-1.0f) : vbroadcast(0.0f)); }
static inline vf soft_threshold(vf w, vf t) {
  return w > t ? w - t : (w < -t ? w + t : (w != w ? w : vbroadcast(0.0f)));
}
#endif

// Adam on one element or one vector of them (T is float or vf). SIGN adds
// l1 sign(w) to the gradient (subgradient L1), PROX soft-thresholds the
// updated weight by l1 times the step (proximal L1).
template <bool SIGN, bool PROX, class T>
static inline void adam_update(T& w, T g, T& m, T& v, const AdamHyper& h, float l1) {
  T gi = g + h.l2 * w;
  if (SIGN) gi += l1 * sign_of(w);
  m = h.b1 * m + (1.0f - h.b1) * gi;
  v = h.b2 * v + (1.0f - h.b2) * gi * gi;
  T step = h.lr * vrecip(vsqrt(v) * h.inv_sqrt_bc2 + h.eps);
  T wn = w * h.decay - step * (m * h.inv_bc1);
  w = PROX ? soft_threshold(wn, step * l1) : wn;
}

// Adam over one row of columns, whole vectors then the rest: written with
// vectors, not left to the compiler, for vrecip in place of a division. One
// loop compiled per L1 case, so that none carries another's work (with AVX2
// the sign and the threshold cost more than the rest of the update where
// the state sits in L2).
template <bool SIGN, bool PROX>
static inline void adam_row(float* __restrict w_r, const float* __restrict g_r, float* __restrict m_r,
                            float* __restrict v_r, int64_t cols, const AdamHyper& h, float l1) {
  int64_t j = 0;
#if DK_VEC_WIDTH > 1
  for (; j + W <= cols; j += W) {
    vf w = vload(w_r + j), m = vload(m_r + j), v = vload(v_r + j);
    adam_update<SIGN, PROX>(w, vload(g_r + j), m, v, h, l1);
    vstore(w_r + j, w);
    vstore(m_r + j, m);
    vstore(v_r + j, v);
  }
#endif
  for (; j < cols; j++) adam_update<SIGN, PROX>(w_r[j], g_r[j], m_r[j], v_r[j], h, l1);
}

// A step's parameters with Adam's constants (a square root and divisions)
// worked out once per segment or product rather than per call of
// update_rows (the fused step of gemm.h updates a band of rows at a time).
struct StepConsts {
  OptParams p;
  AdamHyper adam;
};

static inline StepConsts step_consts(const OptParams& p) {
  const float decay = 1.0f - p.lr * p.weight_decay;
  return StepConsts{p, AdamHyper{p.l2, p.beta1, p.beta2, p.lr, p.eps, decay, 1.0f / p.bias_correction1,
                                 1.0f / __builtin_sqrtf(p.bias_correction2)}};
}

// One loop per optimizer, each over rows and then contiguous columns, so that
// the inner loop vectorises (no branches, no aliasing between the buffers).
// Rows of w, m and v are ld apart, rows of g ldg apart. The soft threshold
// runs even without L1 (with t = 0 it returns w unchanged), except for Adam
// (adam_row).
static void update_rows(float* __restrict w, const float* __restrict g, float* __restrict m,
                        float* __restrict v, int64_t rows, int64_t cols, int64_t ld, int64_t ldg,
                        const StepConsts& s) {
  // copies: the stores through w could alias s's floats for all the
  // compiler knows, which would reload them in every iteration
  const OptParams p = s.p;
  const AdamHyper h = s.adam;
  const float decay = h.decay, l2 = p.l2, lr = p.lr, eps = p.eps;
  const float l1_sub = p.l1_proximal ? 0.0f : p.l1;
  const float l1_prox = p.l1_proximal ? p.l1 : 0.0f;
  const float mu = p.momentum, nest = p.nesterov ? 1.0f : 0.0f, rho = p.rho;
  for (int64_t r = 0; r < rows; r++) {
    float* __restrict w_r = w + r * ld;
    const float* __restrict g_r = g + r * ldg;
    float* __restrict m_r = m ? m + r * ld : nullptr;
    float* __restrict v_r = v ? v + r * ld : nullptr;
    switch (p.kind) {
      case Optimizer::sgd:
        if (mu == 0.0f) {
          for (int64_t j = 0; j < cols; j++) {
            float gi = g_r[j] + l2 * w_r[j] + l1_sub * sign_of(w_r[j]);
            w_r[j] = soft_threshold(w_r[j] * decay - lr * gi, lr * l1_prox);
          }
        } else {
          for (int64_t j = 0; j < cols; j++) {
            float gi = g_r[j] + l2 * w_r[j] + l1_sub * sign_of(w_r[j]);
            float mi = mu * m_r[j] + gi;
            m_r[j] = mi;
            // nesterov: g + mu m; classical: m
            float update = nest * (gi + mu * mi) + (1.0f - nest) * mi;
            w_r[j] = soft_threshold(w_r[j] * decay - lr * update, lr * l1_prox);
          }
        }
        break;
      case Optimizer::adagrad:
      case Optimizer::rmsprop: {
        // adagrad sums the squares; rmsprop keeps their moving average
        const float keep = p.kind == Optimizer::adagrad ? 1.0f : rho;
        const float add = p.kind == Optimizer::adagrad ? 1.0f : 1.0f - rho;
        for (int64_t j = 0; j < cols; j++) {
          float gi = g_r[j] + l2 * w_r[j] + l1_sub * sign_of(w_r[j]);
          float vi = keep * v_r[j] + add * gi * gi;
          v_r[j] = vi;
          float step = lr / (__builtin_sqrtf(vi) + eps);
          w_r[j] = soft_threshold(w_r[j] * decay - step * gi, step * l1_prox);
        }
        break;
      }
      case Optimizer::adam:
        if (l1_sub != 0.0f)
          adam_row<true, false>(w_r, g_r, m_r, v_r, cols, h, l1_sub);
        else if (l1_prox != 0.0f)
          adam_row<false, true>(w_r, g_r, m_r, v_r, cols, h, l1_prox);
        else
          adam_row<false, false>(w_r, g_r, m_r, v_r, cols, h, 0.0f);
        break;
    }
  }
}

// A contiguous (rows, cols) segment of the flat buffers.
static void optimizer_step(float* w, const float* g, float* m, float* v, int64_t rows, int64_t cols, OptParams p) {
  update_rows(w, g, m, v, rows, cols, cols, cols, step_consts(p));
}

struct ColumnSumsJob {
  float* db;
  const float* dz;
  int64_t B, N;
};

static void column_sums_span(void* ctx, int64_t j0, int64_t j1) {
  const ColumnSumsJob& J = *static_cast<const ColumnSumsJob*>(ctx);
  float* __restrict db = J.db;
  const float* __restrict dz = J.dz;
  for (int64_t b = 0; b < J.B; b++)
    for (int64_t j = j0; j < j1; j++) db[j] += dz[b * J.N + j];
}

// db (N) += column sums of dz (B, N), split over threads by columns: each
// column summed down the rows in order, whatever the split.
static void column_sums(float* db, const float* dz, int64_t B, int64_t N) {
  ColumnSumsJob job{db, dz, B, N};
  parallel_for(N, slices_per_chunk(B), column_sums_span, &job);
}

}  // namespace DK_ISA
}  // namespace dropkit
