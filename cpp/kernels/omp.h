// omp.h: batch orthogonal matching pursuit (OMP-k); compiled per ISA.
//
// Codes h (m) for each signal x (d) over a dictionary D (m, d) of unit-norm
// atoms (rows), with at most k non-zeros, that minimise ||x - h D||^2 by
// greedy selection. This is Batch-OMP (Rubinstein, Zibulevsky & Elad 2008):
// the Gram matrix G = D D^T and the correlations alpha0 = D x of a block of
// signals come from the GEMM; then, per signal, each step
//   picks lam = argmax_j |alpha_j|            (first index on ties, as numpy)
//   extends the Cholesky factor L L^T = G_II   (float64, one row per step)
//   solves z = L^-1 alpha0_I, gamma = L^-T z   (float64, O(k^2))
//   updates alpha = alpha0 - G_I^T gamma       (float32 SIMD, O(m k))
// and ||x - h D||^2 = ||x||^2 - ||z||^2 gives the residual for `tol`.
// A signal stops early when its residual reaches `tol`, when the largest
// correlation left is at float32 noise level (the residual is numerically
// zero), or when the next atom is numerically in the span of those chosen.
// k = 1 needs neither G nor a factorisation: h_lam = alpha0_lam / ||d_lam||^2.
//
// Signals are split into contiguous chunks across threads; each signal's
// arithmetic is the same whatever chunk or block it falls in, so the codes do
// not depend on the thread count. Not here: dictionary learning (Python) and
// sparse output assembly (the caller compacts `atoms`/`coefs`).
//
// No std:: templates in this file: every ISA unit would instantiate its own
// copy under the same name (see dispatch_isa.cpp).
#pragma once
#include <new>

#include "kernels/cpu.h"
#include "kernels/gemm.h"
#include "kernels/simd.h"
#include "kernels/threads.h"

namespace dropkit {
namespace DK_ISA {

// Largest |alpha_j| at or below this times ||x|| counts as a zero residual.
// On exactly sparse signals the correlations left after the true atoms are
// at most ~5e-7 ||x|| (float32 rounding), so this keeps a 20x margin; the
// price is that with k near d a code may stop a few atoms before a float64
// OMP would, whose extra coefficients are then below ~1e-5 ||x||.
constexpr double OMP_ZERO_CORRELATION = 1e-5;
// A new atom whose squared distance to the span of the chosen ones (the
// pivot L_ss^2) is below this is dependent on them; float32 G is good to ~1e-7.
constexpr double OMP_DEPENDENT_PIVOT = 1e-5;
constexpr int64_t OMP_BLOCK = 256;  // signals per correlation block: (256, m) floats
constexpr int64_t OMP_GRAIN = 32;   // fewest signals worth a thread
constexpr int OMP_CHAINS = 8;       // vectors per step of the correlation update

// ----------------------------------------------------------------------------
// argmax_j |a_j| (first on ties) with its value in *best

#if DK_VEC_WIDTH > 1
typedef int32_t vi __attribute__((vector_size(4 * DK_VEC_WIDTH)));
#endif

static int64_t argmax_abs(const float* __restrict a, int64_t m, float* best) {
  int64_t j = 0, arg = 0;
  float top = -1.0f;
#if DK_VEC_WIDTH > 1
  if (m >= W) {
    vi lane_arg, idx;
    for (int l = 0; l < W; l++) idx[l] = l;
    lane_arg = idx;
    vi abs_mask = (vi){} + 0x7fffffff;
    vf lane_top = (vf)((vi)vload(a) & abs_mask);
    for (j = W; j + W <= m; j += W) {
      idx += W;
      vf v = (vf)((vi)vload(a + j) & abs_mask);
      vi gt = v > lane_top;  // strict: each lane keeps its first maximum
      lane_top = (vf)(((vi)v & gt) | ((vi)lane_top & ~gt));
      lane_arg = (idx & gt) | (lane_arg & ~gt);
    }
    for (int l = 0; l < W; l++) {
      if (lane_top[l] > top || (lane_top[l] == top && lane_arg[l] < arg)) {
        top = lane_top[l];
        arg = lane_arg[l];
      }
    }
  }
#endif
  for (; j < m; j++) {
    float v = a[j] < 0.0f ? -a[j] : a[j];
    if (v > top) {
      top = v;
      arg = j;
    }
  }
  *best = top;
  return arg;
}

// alpha (m) = alpha0 - sum_i gamma_i G_sel (s, m), with the selected entries zeroed.
// G_sel holds copies of the chosen rows of G: contiguous and in L2, where G
// itself (m, m) is read once per chosen atom.
static void update_correlations(float* __restrict alpha, const float* __restrict alpha0,
                                const float* __restrict G_sel, int64_t m, const int32_t* sel,
                                const float* gamma, int64_t s) {
  // OMP_CHAINS independent accumulators hide the FMA latency; each element
  // still sums its terms in the order i = 0..s-1 on every path.
  int64_t j = 0;
  for (; j + OMP_CHAINS * W <= m; j += OMP_CHAINS * W) {
    vf acc[OMP_CHAINS];
    for (int u = 0; u < OMP_CHAINS; u++) acc[u] = vload(alpha0 + j + u * W);
    for (int64_t i = 0; i < s; i++) {
      const vf g = vbroadcast(gamma[i]);
      const float* G_ij = G_sel + i * m + j;
      for (int u = 0; u < OMP_CHAINS; u++) acc[u] -= g * vload(G_ij + u * W);
    }
    for (int u = 0; u < OMP_CHAINS; u++) vstore(alpha + j + u * W, acc[u]);
  }
#if DK_VEC_WIDTH > 1
  for (; j + W <= m; j += W) {
    vf acc = vload(alpha0 + j);
    for (int64_t i = 0; i < s; i++) acc -= vbroadcast(gamma[i]) * vload(G_sel + i * m + j);
    vstore(alpha + j, acc);
  }
#endif
  for (; j < m; j++) {
    float acc = alpha0[j];
    for (int64_t i = 0; i < s; i++) acc -= gamma[i] * G_sel[i * m + j];
    alpha[j] = acc;
  }
  for (int64_t i = 0; i < s; i++) alpha[sel[i]] = 0.0f;
}

// ----------------------------------------------------------------------------
// one signal

// Per-thread work space, allocated once per chunk of signals.
struct OmpScratch {
  float* alpha;    // (m)
  float* G_sel;    // (kmax, m) rows of G of the chosen atoms
  double* L;       // (kmax, kmax) Cholesky factor of G_II below the diagonal, its transpose above
  double* z;       // (kmax) L^-1 alpha0_I
  double* v;       // (kmax) work vector of the triangular solves
  double* gamma;   // (kmax) coefficients
  float* gamma_f;  // (kmax)
  int32_t* sel;    // (kmax) chosen atoms in the order chosen
  float* corr;     // (block, m) correlations of a block of signals

  OmpScratch(int64_t m, int64_t kmax, bool with_gram, int64_t block)
      : alpha(new float[m]), G_sel(new float[with_gram ? kmax * m : 1]),
        L(new double[kmax * kmax]), z(new double[kmax]), v(new double[kmax]),
        gamma(new double[kmax]), gamma_f(new float[kmax]), sel(new int32_t[kmax]),
        corr(new float[block * m]) {}
  ~OmpScratch() {
    delete[] corr;
    delete[] sel;
    delete[] gamma_f;
    delete[] gamma;
    delete[] v;
    delete[] z;
    delete[] L;
    delete[] G_sel;
    delete[] alpha;
  }
  OmpScratch(const OmpScratch&) = delete;
  OmpScratch& operator=(const OmpScratch&) = delete;
};

// Returns the number of atoms chosen, s; sel[0..s) and gamma[0..s) hold them.
// x_norm2 is ||x||^2; tol < 0 means no residual target. Both triangular
// solves sweep along contiguous rows (of L^T forward, of L backward), so
// their inner loops are independent multiply-adds rather than one long
// dependency chain of dot products.
static int64_t omp_signal(OmpScratch& w, const float* alpha0, const float* G,
                          const double* atom_norm2, int64_t m, int64_t kmax,
                          double x_norm2, double tol) {
  if (tol >= 0.0 && x_norm2 <= tol) return 0;
  const double zero_level = OMP_ZERO_CORRELATION * __builtin_sqrt(x_norm2);
  double resid2 = x_norm2;
  float top;
  int64_t lam = argmax_abs(alpha0, m, &top);
  int64_t s = 0;
  for (;;) {
    if (!(top > zero_level)) break;
    double* L_s = w.L + s * kmax;
    double pivot2 = atom_norm2[lam];
    if (s > 0) {
      // L_s[0..s) = L^-1 G_I,lam; G[sel_i, lam] is read from the copied rows
      double* v = w.v;
      for (int64_t i = 0; i < s; i++) v[i] = w.G_sel[i * m + lam];
      for (int64_t i = 0; i < s; i++) {
        const double l = v[i] / w.L[i * kmax + i];
        L_s[i] = l;
        const double* Lt_i = w.L + i * kmax;  // row i of L^T, right of the diagonal
        for (int64_t t = i + 1; t < s; t++) v[t] -= Lt_i[t] * l;
      }
      double norm2 = 0.0;
      for (int64_t i = 0; i < s; i++) norm2 += L_s[i] * L_s[i];
      pivot2 -= norm2;
    }
    if (pivot2 <= OMP_DEPENDENT_PIVOT) break;
    L_s[s] = __builtin_sqrt(pivot2);
    for (int64_t t = 0; t < s; t++) w.L[t * kmax + s] = L_s[t];
    double zs = alpha0[lam];
    for (int64_t t = 0; t < s; t++) zs -= L_s[t] * w.z[t];
    zs /= L_s[s];
    w.z[s] = zs;
    w.sel[s] = (int32_t)lam;
    resid2 -= zs * zs;
    s++;
    // gamma = L^-T z
    for (int64_t i = 0; i < s; i++) w.v[i] = w.z[i];
    for (int64_t i = s - 1; i >= 0; i--) {
      const double* L_i = w.L + i * kmax;
      const double g = w.v[i] / L_i[i];
      w.gamma[i] = g;
      for (int64_t t = 0; t < i; t++) w.v[t] -= L_i[t] * g;
    }
    if (s == kmax || (tol >= 0.0 && resid2 <= tol)) break;
    const float* G_lam = G + lam * m;
    float* G_sel_s = w.G_sel + (s - 1) * m;
    for (int64_t j = 0; j < m; j++) G_sel_s[j] = G_lam[j];
    for (int64_t i = 0; i < s; i++) w.gamma_f[i] = (float)w.gamma[i];
    update_correlations(w.alpha, alpha0, w.G_sel, m, w.sel, w.gamma_f, s);
    lam = argmax_abs(w.alpha, m, &top);
  }
  return s;
}

// ----------------------------------------------------------------------------
// the batch driver

struct OmpJob {
  float* dense;    // (n, m) or null
  int32_t* atoms;  // (n, k) or null
  float* coefs;    // (n, k) or null
  int32_t* count;
  const float* X;
  const float* D;
  const float* G;            // (m, m), null when kmax == 1
  const double* atom_norm2;  // (m)
  int64_t n, d, m, k, kmax;
  double tol;
  int out_of_memory;  // set by a chunk that could not allocate its work space
};

static void omp_rows(const OmpJob& J, OmpScratch& w, int64_t begin, int64_t end, int64_t block) {
  const int64_t m = J.m, d = J.d;
  for (int64_t b0 = begin; b0 < end; b0 += block) {
    const int64_t nb = imin(block, end - b0);
    // corr (nb, m) = X_b (nb, d) D^T (d, m)
    gemm(nb, m, d, 1.0f, J.X + b0 * d, d, false, J.D, d, true, 0.0f, w.corr, m, nullptr);
    for (int64_t r = 0; r < nb; r++) {
      const int64_t i = b0 + r;
      const float* x_i = J.X + i * d;
      double x_norm2 = 0.0;
      for (int64_t t = 0; t < d; t++) x_norm2 += (double)x_i[t] * x_i[t];
      int64_t s = omp_signal(w, w.corr + r * m, J.G, J.atom_norm2, m, J.kmax, x_norm2, J.tol);
      // ascending atom order (insertion sort: s is small and no std:: here)
      for (int64_t a = 1; a < s; a++) {
        int32_t key = w.sel[a];
        double val = w.gamma[a];
        int64_t b = a - 1;
        for (; b >= 0 && w.sel[b] > key; b--) {
          w.sel[b + 1] = w.sel[b];
          w.gamma[b + 1] = w.gamma[b];
        }
        w.sel[b + 1] = key;
        w.gamma[b + 1] = val;
      }
      if (J.dense) {
        float* h_i = J.dense + i * m;
        for (int64_t j = 0; j < m; j++) h_i[j] = 0.0f;
        for (int64_t a = 0; a < s; a++) h_i[w.sel[a]] = (float)w.gamma[a];
      }
      if (J.atoms) {
        int32_t* idx_i = J.atoms + i * J.k;
        float* val_i = J.coefs + i * J.k;
        for (int64_t a = 0; a < J.k; a++) {
          idx_i[a] = a < s ? w.sel[a] : -1;
          val_i[a] = a < s ? (float)w.gamma[a] : 0.0f;
        }
      }
      if (J.count) J.count[i] = (int32_t)s;
    }
  }
}

// An exception must not leave a pool thread, so a chunk that cannot get its
// work space (k and d in the thousands) reports it instead.
static void omp_chunk(void* ctx, int64_t begin, int64_t end) {
  OmpJob& J = *static_cast<OmpJob*>(ctx);
  const int64_t block = imin(OMP_BLOCK, end - begin);
  try {
    OmpScratch w(J.m, J.kmax, J.G != nullptr, block);
    omp_rows(J, w, begin, end, block);
  } catch (const std::bad_alloc&) {
    __atomic_store_n(&J.out_of_memory, 1, __ATOMIC_RELAXED);
  }
}

// dense (n, m) or null; atoms, coefs (n, k) or null: the chosen atoms of each
// signal in ascending order and their coefficients, then -1 and 0; count (n)
// or null: atoms per signal. X (n, d); D (m, d) with unit-norm rows; k >= 1;
// tol < 0 for none. Returns false when the work space could not be
// allocated (the caller raises; this unit constructs no std:: exception).
static bool omp_encode(float* dense, int32_t* atoms, float* coefs, int32_t* count,
                       const float* X, const float* D, int64_t n, int64_t d, int64_t m,
                       int k, double tol) {
  if (n <= 0) return true;
  // at most d atoms can be independent, and at most m exist
  const int64_t kmax = imin(imin((int64_t)k, m), d < 1 ? 1 : d);
  struct Shared {  // frees what was allocated, also when an allocation throws
    double* atom_norm2 = nullptr;
    float* G = nullptr;
    ~Shared() {
      delete[] G;
      delete[] atom_norm2;
    }
  } shared;
  try {
    shared.atom_norm2 = new double[m];
    if (kmax > 1) shared.G = new float[m * m];
  } catch (const std::bad_alloc&) {
    return false;
  }
  for (int64_t j = 0; j < m; j++) {
    double acc = 0.0;
    for (int64_t t = 0; t < d; t++) acc += (double)D[j * d + t] * D[j * d + t];
    shared.atom_norm2[j] = acc;
  }
  if (shared.G) gemm(m, m, d, 1.0f, D, d, false, D, d, true, 0.0f, shared.G, m, nullptr);
  OmpJob job{dense, atoms, coefs, count, X, D, shared.G, shared.atom_norm2, n, d, m, k, kmax, tol, 0};
  parallel_for(n, OMP_GRAIN, omp_chunk, &job);
  return !job.out_of_memory;
}

}  // namespace DK_ISA
}  // namespace dropkit
