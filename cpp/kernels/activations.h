// activations.h: elementwise activations forward and backward, and maxout;
// compiled per ISA. Backward reads the cached pre-activation z and output a,
// whichever is cheaper for that function.
#pragma once
#include "kernels/cpu.h"
#include "kernels/dropout.h"
#include "kernels/penalties.h"
#include "kernels/simd.h"

namespace dropkit {
namespace DK_ISA {

// a (n) = act(z (n)); one row of a (B, N) block, so prelu's slopes line up.
static inline void act_forward_row(float* __restrict a, const float* __restrict z, int64_t n,
                                   ActParams p) {
  switch (p.kind) {
    case Act::identity:
      if (a != z)
        for (int64_t j = 0; j < n; j++) a[j] = z[j];
      break;
    case Act::sigmoid:
      for (int64_t j = 0; j < n; j++) a[j] = sigmoid_approx(z[j]);
      break;
    case Act::tanh:
      // tanh(z) = 2 sigmoid(2z) - 1; absolute error about 1e-7
      for (int64_t j = 0; j < n; j++) a[j] = 2.0f * sigmoid_approx(2.0f * z[j]) - 1.0f;
      break;
    case Act::relu:
      // !(z <= 0) rather than z > 0: a NaN stays NaN instead of becoming 0
      for (int64_t j = 0; j < n; j++) a[j] = !(z[j] <= 0.0f) ? z[j] : 0.0f;
      break;
    case Act::leaky_relu: {
      const float s = p.param;
      for (int64_t j = 0; j < n; j++) a[j] = z[j] > 0.0f ? z[j] : s * z[j];
      break;
    }
    case Act::prelu:
      for (int64_t j = 0; j < n; j++) a[j] = z[j] > 0.0f ? z[j] : p.slopes[j] * z[j];
      break;
    case Act::elu: {
      const float alpha = p.param;
      // exp on every element, not only where z <= 0: a call under the
      // condition is not if-converted, and the loop would stay scalar
      for (int64_t j = 0; j < n; j++) {
        const float neg = alpha * (exp_approx(z[j]) - 1.0f);
        a[j] = z[j] > 0.0f ? z[j] : neg;
      }
      break;
    }
  }
}

static void act_forward(float* a, const float* z, int64_t B, int64_t N, ActParams p) {
  for (int64_t b = 0; b < B; b++) act_forward_row(a + b * N, z + b * N, N, p);
}

// dz (n) = da * act'(z) for one row segment starting at column j0 (prelu's slopes).
// da_b may be dz_b itself (each element is read before it is written).
static inline void act_backward_span(float* dz_b, float* __restrict dslope,
                                     const float* da_b, const float* __restrict z_b,
                                     const float* __restrict a_b, int64_t n, ActParams p) {
  switch (p.kind) {
    case Act::identity:
      for (int64_t j = 0; j < n; j++) dz_b[j] = da_b[j];
      break;
    case Act::sigmoid:
      for (int64_t j = 0; j < n; j++) dz_b[j] = da_b[j] * a_b[j] * (1.0f - a_b[j]);
      break;
    case Act::tanh:
      for (int64_t j = 0; j < n; j++) dz_b[j] = da_b[j] * (1.0f - a_b[j] * a_b[j]);
      break;
    case Act::relu:
      for (int64_t j = 0; j < n; j++) dz_b[j] = z_b[j] > 0.0f ? da_b[j] : 0.0f;
      break;
    case Act::leaky_relu: {
      const float s = p.param;
      for (int64_t j = 0; j < n; j++) dz_b[j] = z_b[j] > 0.0f ? da_b[j] : s * da_b[j];
      break;
    }
    case Act::prelu:
      for (int64_t j = 0; j < n; j++) {
        bool pos = z_b[j] > 0.0f;
        dz_b[j] = pos ? da_b[j] : p.slopes[j] * da_b[j];
        if (dslope) dslope[j] += pos ? 0.0f : da_b[j] * z_b[j];
      }
      break;
    case Act::elu: {
      // for z <= 0, d/dz alpha*(e^z - 1) = a + alpha
      const float alpha = p.param;
      for (int64_t j = 0; j < n; j++) dz_b[j] = z_b[j] > 0.0f ? da_b[j] : da_b[j] * (a_b[j] + alpha);
      break;
    }
  }
}

struct ActBackwardJob {
  float *dz, *dslope;
  const float *da, *z, *a;
  int64_t B, N;
  ActParams p;
  const ActivityParams* activity;
  const float* kl_col_grad;  // (N): kl's gradient, the same in every row
  const DropoutSpec* drop;
  const float* dropped;  // drop(a), or null
};

// relu's derivative through a dropout mask, read off the dropped output:
// drop(a) > 0 exactly where the unit was kept and z > 0 (a = z > 0 there,
// the scale positive; a NaN compares false, as z > 0 does), so dz = da *
// scale there and 0 elsewhere, the same values as the mask regenerated and
// then relu' (two passes, one of them the generator's ten rounds).
static inline void relu_through_kept(float* __restrict dz_b, const float* __restrict da_b,
                                     const float* __restrict dropped_b, int64_t n, float scale) {
  for (int64_t j = 0; j < n; j++) dz_b[j] = dropped_b[j] > 0.0f ? da_b[j] * scale : 0.0f;
}

// Rows [b0, b1) and columns [j0, j1) of the job.
static void act_backward_block(const ActBackwardJob& J, int64_t b0, int64_t b1, int64_t j0, int64_t j1) {
  const int64_t N = J.N, n = j1 - j0;
  bool penalised = J.activity && J.activity->kind != ActivityKind::none;
  ActParams p = J.p;
  if (p.slopes) p.slopes += j0;
  float* dslope = J.dslope ? J.dslope + j0 : nullptr;
  const float* kl_col_grad = J.kl_col_grad ? J.kl_col_grad + j0 : nullptr;
  // the activity penalty's gradient joins the incoming one a slice at a time, in L1
  constexpr int64_t kSlice = 512;
  alignas(64) float da_pen[kSlice];
  for (int64_t b = b0; b < b1; b++) {
    const int64_t o = b * N + j0;
    float* dz_b = J.dz + o;
    const float* da_b = J.da + o;
    const float* a_b = J.a + o;
    if (J.drop && J.dropped && !penalised && p.kind == Act::relu) {
      relu_through_kept(dz_b, da_b, J.dropped + o, n, J.drop->scale);
      continue;
    }
    if (J.drop) {  // the row through the mask first, into dz: one pass over da instead of two
      dropout_span(J.dz, J.da, o, o + n, *J.drop);
      da_b = dz_b;
    }
    if (!penalised) {
      act_backward_span(dz_b, dslope, da_b, J.z + o, a_b, n, p);
      continue;
    }
    for (int64_t s0 = 0; s0 < n; s0 += kSlice) {
      int64_t len = imin(kSlice, n - s0);
      add_activity_grad(da_pen, da_b + s0, a_b + s0, len, *J.activity, kl_col_grad ? kl_col_grad + s0 : nullptr);
      ActParams ps = p;
      if (ps.slopes) ps.slopes += s0;
      act_backward_span(dz_b + s0, dslope ? dslope + s0 : nullptr, da_pen, J.z + o + s0, a_b + s0, len, ps);
    }
  }
}

static void act_backward_rows(void* ctx, int64_t b0, int64_t b1) {
  const ActBackwardJob& J = *static_cast<const ActBackwardJob*>(ctx);
  act_backward_block(J, b0, b1, 0, J.N);
}

static void act_backward_cols(void* ctx, int64_t j0, int64_t j1) {
  const ActBackwardJob& J = *static_cast<const ActBackwardJob*>(ctx);
  act_backward_block(J, 0, J.B, j0, j1);
}

// Rows split over threads; prelu's columns, as it sums its slope gradient
// over the rows (each column's sum in row order whatever the split: the
// same bits at any thread count).
static void act_backward(float* dz, float* dslope, const float* da, const float* z,
                         const float* a, int64_t B, int64_t N, ActParams p,
                         const ActivityParams* activity, const DropoutSpec* drop, const float* dropped) {
  std::vector<float> kl_col_grad;
  if (activity && activity->kind == ActivityKind::kl) {
    kl_col_grad.resize(N);
    for (int64_t j = 0; j < N; j++) kl_col_grad[j] = kl_grad(activity->col_mean[j], *activity);
  }
  ActBackwardJob job{dz, dslope, da, z, a, B, N, p, activity, kl_col_grad.empty() ? nullptr : kl_col_grad.data(),
                     drop, dropped};
  if (dslope) {
    parallel_for(N, slices_per_chunk(B), act_backward_cols, &job);
    return;
  }
  // A small batch, under slices_per_chunk's grain, still splits its rows
  // evenly (from 4096 elements), as the small products around it do on every
  // thread (gemm.h). Whole rows: split into parts of every row, the cores'
  // prefetchers fetched into each other's lines of dz.
  const bool small = B * N < ((int64_t)1 << 15) && B * N >= ((int64_t)1 << 12);
  parallel_for(B, small ? (B + num_threads() - 1) / num_threads() : slices_per_chunk(N), act_backward_rows, &job);
}

// z is (B, U*k): unit u owns columns u*k .. u*k+k-1; a and argmax are (B, U).
// Ties go to the first piece; a NaN piece wins (the first one), so that a
// diverged unit shows as NaN like numpy's max rather than being skipped.
// Selects rather than branches (which piece wins is data, not a pattern:
// branching, the forward pass of a batch of 128 x 1024 units of 2 pieces
// took 4.8 times as long), and rows split over threads.
struct MaxoutJob {
  float* a;
  int32_t* argmax;
  const float* z;
  int64_t U;
  int k;
};

static void maxout_forward_rows(void* ctx, int64_t b0, int64_t b1) {
  const MaxoutJob& J = *static_cast<const MaxoutJob*>(ctx);
  const int k = J.k;
  const float* __restrict z = J.z;
  float* __restrict a = J.a;
  int32_t* __restrict argmax = J.argmax;
  for (int64_t i = b0 * J.U; i < b1 * J.U; i++) {
    const float* z_i = z + i * k;
    float best = z_i[0];
    int32_t at = 0;
    for (int p = 1; p < k; p++) {
      const bool take = !(z_i[p] <= best) & (best == best);
      best = take ? z_i[p] : best;
      at = take ? p : at;
    }
    a[i] = best;
    argmax[i] = at;
  }
}

// dz (B, U*k) gets da at each winning piece and zero elsewhere.
struct MaxoutGradJob {
  float* dz;
  const float* da;
  const int32_t* argmax;
  int64_t U;
  int k;
};

static void maxout_backward_rows(void* ctx, int64_t b0, int64_t b1) {
  const MaxoutGradJob& J = *static_cast<const MaxoutGradJob*>(ctx);
  const int64_t k = J.k, i0 = b0 * J.U, i1 = b1 * J.U;
  std::memset(J.dz + i0 * k, 0, sizeof(float) * (i1 - i0) * k);
  for (int64_t i = i0; i < i1; i++) J.dz[i * k + J.argmax[i]] = J.da[i];
}

static void maxout_forward(float* a, int32_t* argmax, const float* z, int64_t B, int64_t U, int k) {
  MaxoutJob job{a, argmax, z, U, k};
  parallel_for(B, slices_per_chunk(U * k), maxout_forward_rows, &job);
}

static void maxout_backward(float* dz, const float* da, const int32_t* argmax, int64_t B, int64_t U, int k) {
  MaxoutGradJob job{dz, da, argmax, U, k};
  parallel_for(B, slices_per_chunk(U * k), maxout_backward_rows, &job);
}

}  // namespace DK_ISA
}  // namespace dropkit
