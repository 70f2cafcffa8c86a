// gemm.h: packed single-precision GEMM with a fused epilogue; compiled per ISA.
//
// C (M, N) = alpha * op(A) op(B) + beta * C for the three products of a dense
// layer: forward X W, dX = dZ W^T, dW += X^T dZ. Panels of op(A) and op(B) are
// packed (which also absorbs the transposes and zero-pads the edges), and an
// MR x NR register-blocked micro-kernel does the arithmetic. Each output
// element is always summed in the same order, whatever the thread count, so
// results do not depend on how many threads ran.
//
// This is not a general BLAS: no complex types, no strides other than leading
// dimensions. gemm_reference is the plain triple loop the tests compare with.
#pragma once
#include "kernels/activations.h"
#include "kernels/simd.h"
#include "kernels/threads.h"

namespace dropkit {
namespace DK_ISA {

// ----------------------------------------------------------------------------
// blocking

#if DK_VEC_WIDTH == 1
constexpr int MR = 4, NR = 4;
#else
constexpr int MR = 6, NR = 2 * W;
#endif
constexpr int NV = NR / (W > NR ? NR : W);  // vectors per micro-tile row
constexpr int64_t KC = 256;                 // depth of a packed panel (L1)
constexpr int64_t MC = MR * 24;             // rows of a packed A block (L2)
constexpr int64_t NC = NR * 128;            // columns of a packed B block (L3)

// ----------------------------------------------------------------------------
// the naive twin: reference for tests and fallback for tiny products

static void gemm_reference(int64_t M, int64_t N, int64_t K, float alpha,
                           const float* A, int64_t lda, bool trans_a,
                           const float* B, int64_t ldb, bool trans_b,
                           float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; i++) {
    for (int64_t j = 0; j < N; j++) {
      float acc = 0.0f;
      for (int64_t k = 0; k < K; k++) {
        float a = trans_a ? A[k * lda + i] : A[i * lda + k];
        float b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
        acc += a * b;
      }
      float* c = C + i * ldc + j;
      *c = alpha * acc + (beta == 0.0f ? 0.0f : beta * *c);
    }
  }
}

// ----------------------------------------------------------------------------
// packing

// Ap holds ceil(mc/MR) strips; strip s is (kc, MR): row r of the strip at k
// is op(A)[i0 + s*MR + r, k0 + k], zero past the edge.
static void pack_a(float* Ap, const float* A, int64_t lda, bool trans_a,
                   int64_t i0, int64_t mc, int64_t k0, int64_t kc) {
  for (int64_t s = 0; s < mc; s += MR) {
    int64_t rows = imin(MR, mc - s);
    float* dst = Ap + s * kc;
    for (int64_t k = 0; k < kc; k++) {
      for (int64_t r = 0; r < MR; r++) {
        float v = 0.0f;
        if (r < rows) {
          int64_t i = i0 + s + r, kk = k0 + k;
          v = trans_a ? A[kk * lda + i] : A[i * lda + kk];
        }
        dst[k * MR + r] = v;
      }
    }
  }
}

// Bp holds ceil(nc/NR) strips; strip s is (kc, NR) of op(B), zero past the edge.
static void pack_b(float* Bp, const float* B, int64_t ldb, bool trans_b,
                   int64_t k0, int64_t kc, int64_t j0, int64_t nc) {
  for (int64_t s = 0; s < nc; s += NR) {
    int64_t cols = imin(NR, nc - s);
    float* dst = Bp + s * kc;
    if (!trans_b && cols == NR) {
      for (int64_t k = 0; k < kc; k++)
        for (int64_t c = 0; c < NR; c++) dst[k * NR + c] = B[(k0 + k) * ldb + j0 + s + c];
      continue;
    }
    for (int64_t k = 0; k < kc; k++) {
      for (int64_t c = 0; c < NR; c++) {
        float v = 0.0f;
        if (c < cols) {
          int64_t j = j0 + s + c, kk = k0 + k;
          v = trans_b ? B[j * ldb + kk] : B[kk * ldb + j];
        }
        dst[k * NR + c] = v;
      }
    }
  }
}

// ----------------------------------------------------------------------------
// micro-kernel: an MR x NR tile of C from one packed strip of A and of B

static inline void micro_kernel(int64_t kc, const float* Ap, const float* Bp, float* tile) {
  vf acc[MR][NV];
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) acc[r][v] = vbroadcast(0.0f);
  for (int64_t k = 0; k < kc; k++) {
    vf b[NV];
    for (int v = 0; v < NV; v++) b[v] = vload(Bp + k * NR + v * W);
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
      vf a = vbroadcast(Ap[k * MR + r]);
      for (int v = 0; v < NV; v++) acc[r][v] += a * b[v];
    }
  }
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) vstore(tile + r * NR + v * W, acc[r][v]);
}

// Adds (or stores, on the first panel) a computed tile into C.
static inline void store_tile(const float* tile, float* C, int64_t ldc, int64_t rows,
                              int64_t cols, float alpha, float beta, bool first_panel) {
  for (int64_t r = 0; r < rows; r++) {
    float* c = C + r * ldc;
    const float* t = tile + r * NR;
    if (!first_panel) {
      for (int64_t j = 0; j < cols; j++) c[j] += alpha * t[j];
    } else if (beta == 0.0f) {
      for (int64_t j = 0; j < cols; j++) c[j] = alpha * t[j];
    } else {
      for (int64_t j = 0; j < cols; j++) c[j] = alpha * t[j] + beta * c[j];
    }
  }
}

static inline void apply_epilogue(const Epilogue* ep, float* C, int64_t ldc, int64_t i0,
                                  int64_t j0, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; r++) {
    float* c = C + (i0 + r) * ldc + j0;
    if (ep->bias)
      for (int64_t j = 0; j < cols; j++) c[j] += ep->bias[j0 + j];
    if (ep->act_out) {
      ActParams p = ep->act;
      if (p.slopes) p.slopes += j0;
      act_forward_row(ep->act_out + (i0 + r) * ep->ld_act + j0, c, cols, p);
    }
  }
}

// ----------------------------------------------------------------------------
// the blocked driver; threads split the row blocks of each packed B block

struct GemmJob {
  int64_t M, N, K;
  float alpha, beta;
  const float* A; int64_t lda; bool trans_a;
  const float* B; int64_t ldb; bool trans_b;
  float* C; int64_t ldc;
  const Epilogue* ep;
  const float* Bp;           // packed (kc, nc) block being worked on
  int64_t j0, nc, k0, kc;
  bool first_panel, last_panel;
};

static void gemm_row_blocks(void* ctx, int64_t begin, int64_t end) {
  const GemmJob& g = *static_cast<const GemmJob*>(ctx);
  alignas(64) float Ap[MC * KC];
  alignas(64) float tile[MR * NR];
  for (int64_t blk = begin; blk < end; blk++) {
    int64_t i0 = blk * MC, mc = imin(MC, g.M - i0);
    pack_a(Ap, g.A, g.lda, g.trans_a, i0, mc, g.k0, g.kc);
    for (int64_t jr = 0; jr < g.nc; jr += NR) {
      int64_t cols = imin(NR, g.nc - jr);
      for (int64_t ir = 0; ir < mc; ir += MR) {
        int64_t rows = imin(MR, mc - ir);
        micro_kernel(g.kc, Ap + ir * g.kc, g.Bp + jr * g.kc, tile);
        float* c = g.C + (i0 + ir) * g.ldc + g.j0 + jr;
        store_tile(tile, c, g.ldc, rows, cols, g.alpha, g.beta, g.first_panel);
        if (g.last_panel && g.ep) apply_epilogue(g.ep, g.C, g.ldc, i0 + ir, g.j0 + jr, rows, cols);
      }
    }
  }
}

static void gemm(int64_t M, int64_t N, int64_t K, float alpha,
                 const float* A, int64_t lda, bool trans_a,
                 const float* B, int64_t ldb, bool trans_b,
                 float beta, float* C, int64_t ldc, const Epilogue* ep) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {  // an empty sum: C = beta * C, then the epilogue
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    if (ep) apply_epilogue(ep, C, ldc, 0, 0, M, N);
    return;
  }
  // One packed B block at a time; heap so that large N*K does not hit the stack.
  int64_t bp_size = KC * ((imin(NC, N) + NR - 1) / NR) * NR;
  float* Bp = new float[bp_size];
  GemmJob g{M, N, K, alpha, beta, A, lda, trans_a, B, ldb, trans_b, C, ldc, ep,
            Bp, 0, 0, 0, 0, false, false};
  int64_t row_blocks = (M + MC - 1) / MC;
  for (int64_t j0 = 0; j0 < N; j0 += NC) {
    int64_t nc = imin(NC, N - j0);
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
      int64_t kc = imin(KC, K - k0);
      pack_b(Bp, B, ldb, trans_b, k0, kc, j0, nc);
      g.j0 = j0; g.nc = nc; g.k0 = k0; g.kc = kc;
      g.first_panel = (k0 == 0);
      g.last_panel = (k0 + kc == K);
      // Each row block costs about MC*nc*kc FMAs; threads pay off past ~1e6.
      int64_t grain = (MC * nc * kc < (int64_t)1 << 20) ? row_blocks : 1;
      parallel_for(row_blocks, grain, gemm_row_blocks, &g);
    }
  }
  delete[] Bp;
}

}  // namespace DK_ISA
}  // namespace dropkit
