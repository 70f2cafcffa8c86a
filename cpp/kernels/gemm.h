// gemm.h: packed single-precision GEMM with a fused epilogue; compiled per ISA.
//
// C (M, N) = alpha * op(A) op(B) + beta * C for the three products of a dense
// layer: forward X W, dX = dZ W^T, dW += X^T dZ. Panels of op(A) and op(B) are
// packed (which also absorbs the transposes and zero-pads the edges of B), and an
// MR x NR register-blocked micro-kernel does the arithmetic; on the last
// panel of the inner dimension the tile gets bias and activation before it
// leaves the registers, and each finished band of rows the next layer's
// input dropout while it is still in L2; a weight gradient's band instead
// takes the optimizer step of its weights (FusedStep), and is not stored.
//
// Threads split C into chunks (one parallel call per product, no barrier
// between panels): most products of a training step into groups of columns
// or of rows, several per thread and claimed in turn, so that a slower core
// takes fewer (plan_shared_tasks); any other into an even grid of row chunks
// x column chunks chosen per shape. Each thread packs what its
// chunks need into its own buffers. Chunks are whole tiles and panel
// boundaries in the inner dimension depend on K alone (panel_depth), so each
// output element is summed in the same order, through the same code,
// whatever the thread count: results are bit-identical.
//
// This is not a general BLAS: no complex types, no strides other than leading
// dimensions. gemm_reference is the plain triple loop the tests compare with.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>

#include "kernels/activations.h"
#include "kernels/dropout.h"
#include "kernels/optimizers.h"
#include "kernels/simd.h"
#include "kernels/threads.h"

namespace dropkit {
namespace DK_ISA {

// ----------------------------------------------------------------------------
// blocking

// AVX-512 has 32 vector registers: a 12 x 32 tile keeps 24 accumulators, two
// rows of B and a broadcast in them, enough independent multiply-adds to
// cover the FMA latency with loads to spare. AVX2's 16 registers fit 6 x 16.
#if DK_VEC_WIDTH == 1
constexpr int MR = 4, NR = 4;
#elif DK_VEC_WIDTH == 16
constexpr int MR = 12, NR = 2 * W;
#else
constexpr int MR = 6, NR = 2 * W;
#endif
constexpr int NV = NR / (W > NR ? NR : W);  // vectors per micro-tile row
// A (KC, NR) strip of B stays in L1 while the micro-kernel walks the rows of
// an (MC, KC) block of A, which stays in L2; a (KC, NC) block of B sits in L3.
constexpr int64_t KC = 264;

// The depth of the panels of an inner dimension K: as few as KC allows, of
// equal depth (a multiple of 8, for the 8 x 8 transposes of pack_b). K = 784
// (a 28 x 28 input) takes three panels of 264, 264 and 256 rather than
// 256 x 3 and a last of 16, whose tiles cost almost what a whole panel's do
// (X W at a batch of 128, 1024 wide: 4.5% faster in interleaved runs on Zen
// 5); K = 1024 keeps four of 256: deeper strips crowd L1 (262-deep panels
// made dZ W^T 3% slower there).
static int64_t panel_depth(int64_t K) {
  const int64_t panels = std::max<int64_t>(1, (K + KC - 1) / KC);
  return ((K + panels - 1) / panels + 7) / 8 * 8;
}
constexpr int64_t MC = MR * 24;
constexpr int64_t NC = NR * (W == 16 ? 32 : 64);

// ----------------------------------------------------------------------------
// the naive twin: reference for tests

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

// The packing routines are kept out of line: inlined into gemm_chunk, whose
// micro-kernels hold most of the vector registers, their 8 x 8 transposes
// spilled to the stack.

// Ap holds ceil(mc/MR) strips; strip s is (kc, MR): row r of the strip at k
// is op(A)[i0 + s*MR + r, k0 + k], left unset past the edge.
__attribute__((noinline)) static void pack_a(float* __restrict Ap, const float* __restrict A, int64_t lda, bool trans_a,
                   int64_t i0, int64_t mc, int64_t k0, int64_t kc) {
  for (int64_t s = 0; s < mc; s += MR) {
    int64_t rows = imin(MR, mc - s);
    float* __restrict dst = Ap + s * kc;
    if (trans_a && rows == MR) {  // op(A) = A^T: the strip's rows are contiguous in A
      for (int64_t k = 0; k < kc; k++)
        for (int r = 0; r < MR; r++) dst[k * MR + r] = A[(k0 + k) * lda + i0 + s + r];
      continue;
    }
    if (!trans_a && rows == MR) {
      const float* a_s = A + (i0 + s) * lda + k0;
      int r = 0;
#if DK_VEC_WIDTH > 1 && defined(__AVX__)
      // 4 x 4 blocks transposed in registers: four stores per 16 elements
      // instead of a store per element
      const int64_t k4 = kc & ~(int64_t)3;
      for (; r + 4 <= MR; r += 4) {
        for (int64_t k = 0; k < k4; k += 4) {
          __m128 r0 = _mm_loadu_ps(a_s + (r + 0) * lda + k), r1 = _mm_loadu_ps(a_s + (r + 1) * lda + k);
          __m128 r2 = _mm_loadu_ps(a_s + (r + 2) * lda + k), r3 = _mm_loadu_ps(a_s + (r + 3) * lda + k);
          _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
          _mm_storeu_ps(dst + (k + 0) * MR + r, r0);
          _mm_storeu_ps(dst + (k + 1) * MR + r, r1);
          _mm_storeu_ps(dst + (k + 2) * MR + r, r2);
          _mm_storeu_ps(dst + (k + 3) * MR + r, r3);
        }
        for (int rr = r; rr < r + 4; rr++)
          for (int64_t k = k4; k < kc; k++) dst[k * MR + rr] = a_s[rr * lda + k];
      }
#endif
      for (; r < MR; r++)
        for (int64_t k = 0; k < kc; k++) dst[k * MR + r] = a_s[r * lda + k];
      continue;
    }
    // a short last strip: its missing rows are never read (micro_kernel<rows>)
    for (int64_t k = 0; k < kc; k++) {
      for (int r = 0; r < rows; r++) {
        int64_t i = i0 + s + r, kk = k0 + k;
        dst[k * MR + r] = trans_a ? A[kk * lda + i] : A[i * lda + kk];
      }
    }
  }
}

#if DK_VEC_WIDTH > 1 && defined(__AVX__)
// dst[i * ldd + r] = src[r * lds + i] for an 8 x 8 block
static inline void transpose_8x8(float* __restrict dst, int64_t ldd, const float* __restrict src, int64_t lds) {
  __m256 r0 = _mm256_loadu_ps(src + 0 * lds), r1 = _mm256_loadu_ps(src + 1 * lds);
  __m256 r2 = _mm256_loadu_ps(src + 2 * lds), r3 = _mm256_loadu_ps(src + 3 * lds);
  __m256 r4 = _mm256_loadu_ps(src + 4 * lds), r5 = _mm256_loadu_ps(src + 5 * lds);
  __m256 r6 = _mm256_loadu_ps(src + 6 * lds), r7 = _mm256_loadu_ps(src + 7 * lds);
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_storeu_ps(dst + 0 * ldd, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(dst + 1 * ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(dst + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(dst + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(dst + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(dst + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(dst + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(dst + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#endif

// Bp holds ceil(nc/NR) strips; strip s is (kc, NR) of op(B), zero past the edge.
__attribute__((noinline)) static void pack_b(float* __restrict Bp, const float* __restrict B, int64_t ldb, bool trans_b,
                   int64_t k0, int64_t kc, int64_t j0, int64_t nc) {
  if (!trans_b && nc % NR == 0 && nc <= 2 * NR) {
    // A group of strips packed just before use (by_strip in gemm_chunk): row
    // by row, each row's part read once, and rows kPrefetchRows ahead asked
    // for early, as the rows of a wide B lie in different pages, where the
    // hardware prefetcher stops (X W at 1024 x 1024: 0.96-0.98 of the time).
    constexpr int64_t kPrefetchRows = 8;
    for (int64_t k = 0; k < kc; k++) {
      const float* b_k = B + (k0 + k) * ldb + j0;
      if (k + kPrefetchRows < kc)
        for (int64_t c = 0; c < nc; c += 16) __builtin_prefetch(b_k + kPrefetchRows * ldb + c);
      for (int64_t s = 0; s < nc; s += NR)
        for (int v = 0; v < NV; v++) vstore(Bp + s * kc + k * NR + v * W, vload(b_k + s + v * W));
    }
    return;
  }
  for (int64_t s = 0; s < nc; s += NR) {
    int64_t cols = imin(NR, nc - s);
    float* __restrict dst = Bp + s * kc;
    if (!trans_b && cols == NR) {
      for (int64_t k = 0; k < kc; k++) {
        const float* b_k = B + (k0 + k) * ldb + j0 + s;
        for (int v = 0; v < NV; v++) vstore(dst + k * NR + v * W, vload(b_k + v * W));
      }
      continue;
    }
    if (trans_b) {  // op(B) = B^T: column c of the strip is a contiguous row of B
      int64_t c_done = 0;
#if DK_VEC_WIDTH > 1 && defined(__AVX__)
      // 8 x 8 blocks transposed in registers: element-wise copies cost a
      // store each, as much as the products dX = dZ W^T they feed
      const int64_t k8 = kc & ~(int64_t)7;
      for (; c_done + 8 <= cols; c_done += 8) {
        const float* b_c = B + (j0 + s + c_done) * ldb + k0;
        for (int64_t k = 0; k < k8; k += 8)
          transpose_8x8(dst + k * NR + c_done, NR, b_c + k, ldb);
        for (int64_t c = c_done; c < c_done + 8; c++)
          for (int64_t k = k8; k < kc; k++) dst[k * NR + c] = B[(j0 + s + c) * ldb + k0 + k];
      }
#endif
      for (int64_t c = c_done; c < NR; c++) {
        if (c < cols) {
          const float* b_c = B + (j0 + s + c) * ldb + k0;
          for (int64_t k = 0; k < kc; k++) dst[k * NR + c] = b_c[k];
        } else {
          for (int64_t k = 0; k < kc; k++) dst[k * NR + c] = 0.0f;
        }
      }
      continue;
    }
    for (int64_t k = 0; k < kc; k++)
      for (int64_t c = 0; c < NR; c++) dst[k * NR + c] = c < cols ? B[(k0 + k) * ldb + j0 + s + c] : 0.0f;
  }
}

// ----------------------------------------------------------------------------
// micro-kernel: one MR x NR tile of C from a packed strip of A (kc, MR) and a
// strip of B (kc, NR) whose rows are ldbs apart (NR when packed, ldb when read
// in place). C is (MR, NR) with leading dimension ldc: the real output for a
// whole tile, a padded copy at the edges, so that every element goes through
// the same arithmetic.

struct TileOut {
  float alpha, beta;
  bool first, last;      // first / last panel of the inner dimension
  const float* bias;     // (NR) slice, or null; applied on the last panel
};

// f(r, v) for each vector of a tile of ROWS rows of V vectors, unrolled
template <int ROWS, int V, class F>
static inline __attribute__((always_inline)) void each_vector(F&& f) {
#pragma GCC unroll 16
  for (int r = 0; r < ROWS; r++)
#pragma GCC unroll 16
    for (int v = 0; v < V; v++) f(r, v);
}

// C = alpha * acc + (beta * C, or C on later panels), + bias on the last
// panel. The cases are told apart once per tile, not per vector: with the
// tests inside its loops the compiler kept the accumulators on the stack
// and stored them in a loop over rows.
template <int ROWS, int V>
static inline void store_tile(vf (&acc)[ROWS][V], float* C, int64_t ldc, const TileOut& o) {
  const vf alpha = vbroadcast(o.alpha), beta = vbroadcast(o.beta);
  auto c = [&](int r, int v) { return C + r * ldc + v * W; };
  if (!o.first)
    each_vector<ROWS, V>([&](int r, int v) { acc[r][v] = vload(c(r, v)) + alpha * acc[r][v]; });
  else if (o.beta != 0.0f)
    each_vector<ROWS, V>([&](int r, int v) { acc[r][v] = alpha * acc[r][v] + beta * vload(c(r, v)); });
  else
    each_vector<ROWS, V>([&](int r, int v) { acc[r][v] = alpha * acc[r][v]; });
  if (o.last && o.bias) each_vector<ROWS, V>([&](int r, int v) { acc[r][v] += vload(o.bias + v * W); });
  each_vector<ROWS, V>([&](int r, int v) { vstore(c(r, v), acc[r][v]); });
}

// ROWS < MR serves the last strip of rows when M is not a multiple of MR (a
// batch of 32 is two strips of 12 and one of 8 on AVX-512): only its rows are computed and
// stored, each element by the same sequence of multiply-adds as in a whole
// tile, so results do not depend on where a row falls.
template <int ROWS>
static inline void micro_kernel(int64_t kc, const float* __restrict Ap, const float* __restrict Bs,
                                int64_t ldbs, float* __restrict C, int64_t ldc, const TileOut& o) {
  vf acc[ROWS][NV];
  for (int r = 0; r < ROWS; r++)
    for (int v = 0; v < NV; v++) acc[r][v] = vbroadcast(0.0f);
  // four steps per trip: fewer loop instructions beside the multiply-adds
  // (the products 1-6% faster in interleaved runs)
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; k++) {
    vf b[NV];
    for (int v = 0; v < NV; v++) b[v] = vload(Bs + k * ldbs + v * W);
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; r++) {
      vf a = vbroadcast(Ap[k * MR + r]);
      for (int v = 0; v < NV; v++) acc[r][v] += a * b[v];
    }
  }
  store_tile(acc, C, ldc, o);
}

// One row of C across S strips at once. A one-row tile has only NV
// independent sums, each a chain of dependent multiply-adds bound by the FMA
// latency; S strips side by side give S * NV chains. Every element is summed
// in the same order as in micro_kernel, so results do not change.
template <int S>
static inline void row_kernel(int64_t kc, const float* __restrict Ap, const float* __restrict Bs,
                              int64_t ldbs, float* __restrict C, const TileOut& o) {
  constexpr int V = S * NV;
  vf acc[1][V];
  for (int v = 0; v < V; v++) acc[0][v] = vbroadcast(0.0f);
  for (int64_t k = 0; k < kc; k++) {
    vf a = vbroadcast(Ap[k * MR]);
    for (int v = 0; v < V; v++) acc[0][v] += a * vload(Bs + k * ldbs + v * W);
  }
  store_tile(acc, C, 0, o);
}
// strips a single row computes together: enough chains to cover the latency
constexpr int ROW_GROUP = W == 1 ? 1 : W == 16 ? 8 : 4;

// A tile of rows <= MR whole rows of C.
template <int R>
static inline void micro_kernel_rows_(int64_t rows, int64_t kc, const float* Ap, const float* Bs, int64_t ldbs,
                                      float* C, int64_t ldc, const TileOut& o) {
  if constexpr (R > 1) {
    if (rows < R) return micro_kernel_rows_<R - 1>(rows, kc, Ap, Bs, ldbs, C, ldc, o);
  }
  micro_kernel<R>(kc, Ap, Bs, ldbs, C, ldc, o);
}
static void micro_kernel_rows(int64_t rows, int64_t kc, const float* Ap, const float* Bs, int64_t ldbs,
                              float* C, int64_t ldc, const TileOut& o) {
  micro_kernel_rows_<MR>(rows, kc, Ap, Bs, ldbs, C, ldc, o);
}

// Activation of a finished (rows, cols) tile of z at (i0, j0), while in L1;
// a is (M, N).
static inline void tile_activation(const Epilogue* ep, int64_t N, const float* C, int64_t ldc, int64_t i0,
                                   int64_t j0, int64_t rows, int64_t cols) {
  ActParams p = ep->act;
  if (p.slopes) p.slopes += j0;
  for (int64_t r = 0; r < rows; r++)
    act_forward_row(ep->act_out + (i0 + r) * N + j0, C + (i0 + r) * ldc + j0, cols, p);
}

// Dropout of finished rows [i0, i1), columns [j0, j1), while in L2. A band of
// whole rows rather than each tile: a tile row (NR columns) is shorter than
// one vector step of the generator.
static inline void band_dropout(const Epilogue* ep, int64_t N, const float* C, int64_t i0, int64_t i1,
                                int64_t j0, int64_t j1) {
  const float* a = ep->act_out ? ep->act_out : C;  // C is then (M, N) too
  for (int64_t i = i0; i < i1; i++) dropout_span(ep->dropped, a, i * N + j0, i * N + j1, ep->drop);
}

// The fused optimizer step of a finished (rows, cols) block of dW at (i0, j0),
// its gradient in g (leading dimension ldg), which DropConnect's mask changes
// in place first.
static inline void block_step(const FusedStep& f, const StepConsts& s, int64_t ldc, float* g, int64_t ldg,
                             int64_t i0, int64_t j0, int64_t rows, int64_t cols) {
  const int64_t o = i0 * ldc + j0;
  if (f.kept)
    for (int64_t r = 0; r < rows; r++)
      apply_kept_span(g + r * ldg, g + r * ldg, f.kept + o + r * ldc, cols, f.kept_scale, false);
  update_rows(f.w + o, g, f.m + o, f.v + o, rows, cols, ldc, ldg, s);
}

// Activation, dropout or the step over all of C, for the paths that do not tile it.
static void whole_epilogue(const Epilogue* ep, int64_t M, int64_t N, float* C, int64_t ldc) {
  if (ep && ep->act_out) tile_activation(ep, N, C, ldc, 0, 0, M, N);
  if (ep && ep->dropped) band_dropout(ep, N, C, 0, M, 0, N);
  if (ep && ep->step) block_step(*ep->step, step_consts(ep->step->p), ldc, C, ldc, 0, 0, M, N);
}

// Below this many multiply-adds per thread a product runs on the calling
// thread alone. Between the calls of a training step the workers spin, and
// one takes a job in about 0.4 us, a few times less than this much
// arithmetic (a small net's products, 32 x 256 x 256 at a batch of 32, then
// split: about 0.85 of the epoch at 2 threads). A sleeping worker is never waited
// for: the caller claims every chunk no one else has.
constexpr double kMinFmaPerThread = 5e3 * W;

// The private cache of a core (L2) on the machines measured: 1 MB.
constexpr int64_t kCoreCacheBytes = (int64_t)1 << 20;

// ----------------------------------------------------------------------------
// the blocked driver

struct GemmJob {
  int64_t M, N, K;
  float alpha, beta;
  const float* A; int64_t lda; bool trans_a;
  const float* B; int64_t ldb; bool trans_b;
  float* C; int64_t ldc;
  const Epilogue* ep;
  int64_t row_chunk, col_chunk, col_tasks;  // the task grid, in elements (whole tiles)
  std::atomic<bool>* out_of_memory;         // set by a thread that had no packing buffers
  // With shared tasks (plan_shared_tasks): more tasks than threads, claimed
  // one at a time, and the operand every task reads whole packed once per
  // thread; id tells this product's packed operand from an earlier one's.
  enum class Share { none, a, b } share = Share::none;
  uint64_t id = 0;
  int64_t tasks = 0;
  std::atomic<int64_t>* next_task = nullptr;
  // stable: thread chunk c of `threads` takes a fixed range of the tasks
  bool stable = false;
  int threads = 1;
};

// A thread's scratch of floats, 64-byte aligned, grown when asked for more;
// empty when the memory cannot be had.
struct GrowBuffer {
  float* data = nullptr;
  int64_t capacity = 0;
  GrowBuffer() = default;
  GrowBuffer(const GrowBuffer&) = delete;
  GrowBuffer& operator=(const GrowBuffer&) = delete;
  ~GrowBuffer() { std::free(data); }
  // room for n floats (the old contents are not kept); false if it cannot be had
  bool reserve(int64_t n) {
    if (capacity >= n) return true;
    std::free(data);
    data = static_cast<float*>(aligned_bytes(64, sizeof(float) * n));
    capacity = data ? n : 0;
    return data != nullptr;
  }
};

// With the fused optimizer step, the tiles go into this thread's scratch
// instead of C, and each band, once finished, updates its weights row by
// row, as the separate pass would: the gradient never leaves L2 and the
// update runs over long rows (done tile by tile, 12 rows of 32 columns, the
// update cost half again as much). The scratch is kept to 256 KB, beside
// the packed panel of B in L2: with one panel of the inner dimension (a
// batch of up to KC) it holds one band at a time, bands made that small;
// with more, the whole chunk's sums across the panels, when they fit. When
// they do not, the sums go to C and each band steps from C while in cache.
constexpr int64_t kStepScratchFloats = (int64_t)1 << 16;
// Its room: one band's rows are at most a strip more than that.
constexpr int64_t kStepSumsFloats = kStepScratchFloats + MR * NC;

// Per-thread packing buffers and the fused step's sums, allocated once at
// their largest size (a product that updates weights cannot then fail half
// done for want of memory), and the whole of op(A) for shared tasks, grown as
// needed.
struct PackBuffers {
  float* a = nullptr;  // (MC, KC)
  float* b = nullptr;  // (KC, NC)
  uint64_t b_id = 0;   // b holds panel (b_k0, b_jc) of product b_id (0: nothing shared)
  int64_t b_k0 = 0, b_jc = 0;
  GrowBuffer a_all;  // every panel of op(A) of product a_id
  uint64_t a_id = 0;
  float* step_sums = nullptr;  // (kStepSumsFloats): dW's sums for the fused optimizer step
  ~PackBuffers() {
    std::free(a);
    std::free(b);
    std::free(step_sums);
  }
};

static PackBuffers& pack_buffers() {
  static thread_local PackBuffers buf;
  if (!buf.a) buf.a = static_cast<float*>(aligned_bytes(64, sizeof(float) * MC * KC));
  if (!buf.b) buf.b = static_cast<float*>(aligned_bytes(64, sizeof(float) * KC * NC));
  if (!buf.step_sums) buf.step_sums = static_cast<float*>(aligned_bytes(64, sizeof(float) * kStepSumsFloats));
  return buf;
}

// Rows of op(A) padded to whole strips: the height of its packed panels.
static int64_t padded_rows(int64_t M) { return (M + MR - 1) / MR * MR; }

// Makes room for the whole of op(A) in buf.a_all; false if it cannot be had.
static bool reserve_shared_a(const GemmJob& g, PackBuffers& buf) {
  const int64_t need = padded_rows(g.M) * g.K;
  if (buf.a_all.capacity < need) buf.a_id = 0;  // to be reallocated: nothing packed in it
  return buf.a_all.reserve(need);
}

// Rows [ic, ...) of panel k0 of op(A) for shared tasks: every panel is
// packed, all rows, on this thread's first task of the product, then read by
// the others. A panel's strips follow each other, kc * MR floats apiece.
static const float* shared_a_panel(const GemmJob& g, PackBuffers& buf, int64_t ic, int64_t k0, int64_t kc) {
  const int64_t rows = padded_rows(g.M);
  if (buf.a_id != g.id) {
    const int64_t depth = panel_depth(g.K);
    for (int64_t p = 0; p < g.K; p += depth) pack_a(buf.a_all.data + rows * p, g.A, g.lda, g.trans_a, 0, g.M, p, imin(depth, g.K - p));
    buf.a_id = g.id;
  }
  return buf.a_all.data + rows * k0 + ic * kc;
}

// C[i0:i1, j0:j1], every panel of the inner dimension, on this thread; false
// when this thread's packing buffers could not be allocated (nothing written).
//
// B, unless read in place, is packed one of two ways. When the rows fit one
// block of A (a batch of up to MC), each strip of B is packed just before its
// tiles use it, into the start of the buffer, which stays in L1 (packing the
// whole panel first writes it out to L2 and reads it back: for a batch of 128
// against a 1024 x 1024 weight matrix, that made X W 6% and dZ W^T 16%
// slower). With more rows the panel is packed once and shared by the blocks
// of A.
//
// A few strips of rows read B in place when all of it fits in half of L2:
// packing costs more than it saves there (a batch of 32 against a 256 x 256
// weight matrix: X W 12-16% faster in interleaved runs). From L3, packing,
// which streams B, is faster (6-9% at 1024 x 1024), and more strips share one
// packing, as do a thread's groups of rows when they share its packed panel
// of B (X^T dZ of a batch of 128 at 2 threads). Where the gain ends was
// measured per width: 48 rows of AVX-512 (none left at 64, on Intel and Zen
// 5); with AVX2 on Zen 3, 64 rows (32 to 64 rows against 256 x 256 and
// 512 x 512: 3-11% faster in place, 96 and 128 even).
constexpr int64_t kDirectBRows = W == 8 ? 64 : 4 * MR;
constexpr int64_t kDirectBFloats = (int64_t)1 << 18;

static bool gemm_chunk(const GemmJob& g, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  PackBuffers& buf = pack_buffers();
  if (!buf.a || !buf.b || !buf.step_sums) return false;
  alignas(64) float edge[MR * NR];
  alignas(64) float edge_bias[NR];
  const float* bias = g.ep ? g.ep->bias : nullptr;
  const FusedStep* fused = g.ep ? g.ep->step : nullptr;
  const StepConsts step = fused ? step_consts(fused->p) : StepConsts{};
  const int64_t nc_max = imin(NC, j1 - j0);
  const int64_t depth = panel_depth(g.K);
  const bool one_panel = g.K <= KC;
  const int64_t band_rows =
      fused && one_panel ? std::min(MC, padded_rows(std::max<int64_t>(1, kStepScratchFloats / nc_max))) : MC;
  const bool in_scratch = fused && (one_panel || (i1 - i0) * nc_max <= kStepScratchFloats);
  // A single row strip reads each element of B once, and a few strips read a
  // small B (above) faster than they pack it: B read in place.
  const bool small_b = g.share != GemmJob::Share::b && i1 - i0 <= kDirectBRows && g.K * g.N <= kDirectBFloats;
  const bool direct_b = !g.trans_b && (i1 - i0 <= MR || small_b);
  const bool one_row = direct_b && i1 - i0 == 1 && !fused;
  const bool by_strip = !direct_b && g.share != GemmJob::Share::b && i1 - i0 <= band_rows;
  for (int64_t jc = j0; jc < j1; jc += NC) {
    int64_t nc = imin(NC, j1 - jc);
    for (int64_t k0 = 0; k0 < g.K; k0 += depth) {
      int64_t kc = imin(depth, g.K - k0);
      TileOut o{g.alpha, g.beta, k0 == 0, k0 + kc == g.K, nullptr};
      if (!direct_b && !by_strip) {
        const bool shared = g.share == GemmJob::Share::b;
        if (!shared || buf.b_id != g.id || buf.b_k0 != k0 || buf.b_jc != jc)
          pack_b(buf.b, g.B, g.ldb, g.trans_b, k0, kc, jc, nc);
        buf.b_id = shared ? g.id : 0;
        buf.b_k0 = k0;
        buf.b_jc = jc;
      } else {
        buf.b_id = 0;  // what follows writes over it
        if (direct_b && nc % NR)  // the ragged last strip is packed, zero-padded
          pack_b(buf.b + (nc / NR) * NR * kc, g.B, g.ldb, false, k0, kc, jc + (nc / NR) * NR, nc % NR);
      }
      for (int64_t ic = i0; ic < i1; ic += band_rows) {
        int64_t mc = imin(band_rows, i1 - ic);
        // where this band's tiles go: C, or the fused step's scratch (with
        // beta C in it first)
        float* c_band = g.C + ic * g.ldc + jc;
        int64_t ldc = g.ldc;
        if (in_scratch) {
          float* sums = buf.step_sums + (one_panel ? 0 : (ic - i0) * nc);
          if (o.first && o.beta != 0.0f)
            for (int64_t r = 0; r < mc; r++) std::memcpy(sums + r * nc, c_band + r * ldc, sizeof(float) * nc);
          c_band = sums;
          ldc = nc;
        }
        const float* Ap = buf.a;
        if (g.share == GemmJob::Share::a)
          Ap = shared_a_panel(g, buf, ic, k0, kc);
        else
          pack_a(buf.a, g.A, g.lda, g.trans_a, ic, mc, k0, kc);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          int64_t cols = imin(NR, nc - jr);
          if (one_row && nc - jr >= ROW_GROUP * NR) {
            o.bias = o.last && bias ? bias + jc + jr : nullptr;
            row_kernel<ROW_GROUP>(kc, Ap, g.B + k0 * g.ldb + jc + jr, g.ldb, g.C + ic * g.ldc + jc + jr, o);
            if (o.last && g.ep && g.ep->act_out) tile_activation(g.ep, g.N, g.C, g.ldc, ic, jc + jr, 1, ROW_GROUP * NR);
            jr += (ROW_GROUP - 1) * NR;
            continue;
          }
          constexpr int64_t kStripGroup = 2;
          if (by_strip && jr % (kStripGroup * NR) == 0) pack_b(buf.b, g.B, g.ldb, g.trans_b, k0, kc, jc + jr, imin(kStripGroup * NR, nc - jr));
          const float* Bs = by_strip ? buf.b + (jr % (kStripGroup * NR)) * kc : buf.b + jr * kc;
          int64_t ldbs = NR;
          if (direct_b && cols == NR) {
            Bs = g.B + k0 * g.ldb + jc + jr;
            ldbs = g.ldb;
          }
          o.bias = nullptr;
          if (o.last && bias) {
            o.bias = bias + jc + jr;
            if (cols < NR) {
              for (int64_t j = 0; j < NR; j++) edge_bias[j] = j < cols ? bias[jc + jr + j] : 0.0f;
              o.bias = edge_bias;
            }
          }
          for (int64_t ir = 0; ir < mc; ir += MR) {
            int64_t rows = imin(MR, mc - ir);
            float* c = c_band + ir * ldc + jr;
            if (rows == MR && cols == NR) {
              micro_kernel<MR>(kc, Ap + ir * kc, Bs, ldbs, c, ldc, o);
            } else if (cols == NR) {
              micro_kernel_rows(rows, kc, Ap + ir * kc, Bs, ldbs, c, ldc, o);
            } else {
              for (int64_t r = 0; r < MR; r++)
                for (int64_t j = 0; j < NR; j++) edge[r * NR + j] = r < rows && j < cols ? c[r * ldc + j] : 0.0f;
              micro_kernel_rows(rows, kc, Ap + ir * kc, Bs, ldbs, edge, NR, o);
              for (int64_t r = 0; r < rows; r++)
                for (int64_t j = 0; j < cols; j++) c[r * ldc + j] = edge[r * NR + j];
            }
            if (o.last && g.ep && g.ep->act_out) tile_activation(g.ep, g.N, g.C, g.ldc, ic + ir, jc + jr, rows, cols);
          }
        }
        if (o.last && g.ep && g.ep->dropped) band_dropout(g.ep, g.N, g.C, ic, ic + mc, jc, jc + nc);
        if (o.last && fused) block_step(*fused, step, g.ldc, c_band, ldc, ic, jc, mc, nc);
      }
    }
  }
  return true;
}

static bool gemm_task(const GemmJob& g, int64_t t) {
  int64_t i0 = (t / g.col_tasks) * g.row_chunk, j0 = (t % g.col_tasks) * g.col_chunk;
  return gemm_chunk(g, i0, imin(g.M, i0 + g.row_chunk), j0, imin(g.N, j0 + g.col_chunk));
}

static void gemm_tasks(void* ctx, int64_t begin, int64_t end) {
  const GemmJob& g = *static_cast<const GemmJob*>(ctx);
  for (int64_t t = begin; t < end; t++)
    if (!gemm_task(g, t)) g.out_of_memory->store(true);  // no exception may leave a pool thread
}

// Shared tasks: each thread claims the next task until none is left. A
// thread without its buffers claims none and leaves the tasks to the others.
// A stable split (small products, plan_shared_tasks) gives chunk c of the T
// its own range instead; a thread without buffers then leaves its range
// undone, and the product fails with bad_alloc as the even grid does.
static void gemm_claim(void* ctx, int64_t first_chunk, int64_t end_chunk) {
  const GemmJob& g = *static_cast<const GemmJob*>(ctx);
  PackBuffers& buf = pack_buffers();
  if (!buf.a || !buf.b || !buf.step_sums || (g.share == GemmJob::Share::a && !reserve_shared_a(g, buf))) return;
  if (g.stable) {  // chunk c of the threads' T: the same tasks every time (all of them, run inline)
    for (int64_t t = g.tasks * first_chunk / g.threads; t < g.tasks * end_chunk / g.threads; t++) {
      if (!gemm_task(g, t)) g.out_of_memory->store(true);
      g.next_task->fetch_add(1);  // counts the tasks done
    }
    return;
  }
  for (int64_t t; (t = g.next_task->fetch_add(1)) < g.tasks;)
    if (!gemm_task(g, t)) g.out_of_memory->store(true);
}

// Chooses the thread grid (rows x columns of C) for T threads: the one with
// the least work on its busiest thread, counting the arithmetic of its chunk
// (whole tiles) and the packing it does for them.
static int plan_grid(GemmJob& g, int T) {
  int64_t row_strips = (g.M + MR - 1) / MR, col_strips = (g.N + NR - 1) / NR;
  double fma = (double)g.M * g.N * g.K;
  if (T > 1 && fma < kMinFmaPerThread * 2) T = 1;
  double best = -1.0;
  g.row_chunk = row_strips * MR;
  g.col_chunk = col_strips * NR;
  g.col_tasks = 1;
  for (int tr = 1; tr <= T; tr++) {
    if (T % tr) continue;
    int tc = T / tr;
    if (tr > row_strips || tc > col_strips) continue;
    int64_t rs = (row_strips + tr - 1) / tr, cs = (col_strips + tc - 1) / tc;
    // FMA units do 2*W per cycle; packing moves about one element per cycle
    double cost = (double)rs * MR * cs * NR * g.K / (2.0 * W) + (double)(rs * MR + cs * NR) * g.K;
    if (best < 0 || cost < best) {
      best = cost;
      g.row_chunk = rs * MR;
      g.col_chunk = cs * NR;
      g.col_tasks = (col_strips + cs - 1) / cs;
    }
  }
  return T;
}

static int64_t operand_bytes(const GemmJob& g) { return (int64_t)sizeof(float) * (g.M * g.K + g.K * g.N + g.M * g.N); }

// On several threads, a product whose op(A) is small enough to keep packed
// whole on each thread (X W and dZ W^T at a batch, dW at a batch above KC)
// is cut into groups of column strips, and one with a single panel of B (dW
// = X^T dZ at a batch of up to KC) into groups of row strips, a few per
// thread, claimed one at a time. An even split waits for its slowest thread,
// and a core whose other hyperthread the host gives to someone else runs at
// half speed or less; claimed groups let the faster core take more of them.
// Each thread packs the operand all groups read once (op(A) or the panel of
// B), as it would for an even split. A small product, whose operands fit in
// the cores' caches, is split the same way every call instead (stable): see
// the two cases below. False when the product keeps the even grid of
// plan_grid.
static bool plan_shared_tasks(GemmJob& g, int T) {
  const int64_t row_strips = (g.M + MR - 1) / MR, col_strips = (g.N + NR - 1) / NR;
  const int64_t per_thread = 8;  // groups per thread: balance against per-group work
  const int64_t max_shared_a = (int64_t)1 << 20;  // floats of packed op(A) a thread may keep
  if (T < 2) return false;
  const int64_t state_bytes = 3 * (int64_t)sizeof(float) * g.M * g.N;  // weights, m and v
  if (g.ep && g.ep->step && state_bytes <= T * kCoreCacheBytes / 2 && g.K <= KC && g.N <= NC &&
      row_strips >= 2 * T) {
    // A weight gradient with the optimizer's step fused whose weights and
    // state fit in the cores' caches: each thread the same contiguous rows
    // every step, so that its part stays in its core's cache. Split by
    // columns or claimed anew each step, the parts moved between the cores
    // (in 128-byte pieces of every row, which the prefetchers of both cores
    // fetch past), and the step cost several times its time on one thread.
    g.share = GemmJob::Share::b;
    g.row_chunk = (row_strips + T - 1) / T * MR;
    g.col_chunk = col_strips * NR;
    g.col_tasks = 1;
    g.tasks = (g.M + g.row_chunk - 1) / g.row_chunk;
    g.stable = true;
  } else if (g.M > MC && g.K <= KC && g.N <= NC) {
    g.share = GemmJob::Share::b;
    g.row_chunk = std::max<int64_t>(2, row_strips / (per_thread * T)) * MR;  // 2: not one strip, which reads B in place
    g.col_chunk = col_strips * NR;
    g.col_tasks = 1;
    g.tasks = (g.M + g.row_chunk - 1) / g.row_chunk;
  } else if (g.M > MR && col_strips >= 4 * T && padded_rows(g.M) * g.K <= max_shared_a) {  // several groups each
    g.share = GemmJob::Share::a;
    g.row_chunk = row_strips * MR;
    g.col_chunk = std::max<int64_t>(1, col_strips / (per_thread * T)) * NR;
    if (operand_bytes(g) <= T * kCoreCacheBytes / 2) {
      // small: each thread the same contiguous columns every time, as above
      g.col_chunk = (col_strips + T - 1) / T * NR;
      g.stable = true;
    }
    g.col_tasks = (g.N + g.col_chunk - 1) / g.col_chunk;
    g.tasks = g.col_tasks;
  } else {
    return false;
  }
  static std::atomic<uint64_t> products{0};
  g.id = ++products;
  g.threads = T;
  return true;
}

// Scratch of the two paths below, per thread and path (the transposed
// product's inner call may take the other); null when it cannot be had (the
// product then takes the ordinary path).
enum class Scratch { narrow = 0, dot = 1 };
static float* scratch(Scratch which, int64_t n) {
  static thread_local GrowBuffer bufs[2];
  GrowBuffer& buf = bufs[(int)which];
  return buf.reserve(n) ? buf.data : nullptr;
}

// A product only a few columns wide that the dot products below do not take
// (the weight gradient X^T dZ of an output layer of 10 classes) wastes most
// of each NR-wide tile; its transpose C^T = op(B)^T op(A)^T is that few rows
// tall instead, which tiles well. Every element is the same sum either way
// (beta = 0: nothing of C joins the panels), so results do not change.
static bool narrow(int64_t M, int64_t N, float beta) { return beta == 0.0f && 2 * N <= NR && M >= 2 * N; }

// ----------------------------------------------------------------------------
// few columns, A by rows: dot products

// A product at most kDotColumns wide whose op(A) is A itself, read by rows
// (an output layer going forward: X W with W (K, 10)), is a set of dot
// products: op(B)'s columns are packed as contiguous rows, and each element
// of C is the dot product of a row of A with one of them, summed in W lanes
// and then across the lanes in a fixed order. A is read once, in place; the
// transposed product (narrow) packed all of A^T, which took longer than its
// arithmetic. Each row of C is the same sum whatever M is, so one sample and
// a batch give the same bits.
constexpr int kDotColumns = 16;
constexpr int kDotRows = 6;   // rows of A at a time
constexpr int kDotGroup = 4;  // columns at a time: kDotRows * kDotGroup sums in registers

// Rows [0, R) of C (., N) from rows of A and Bt (N rounded up to kDotGroup
// rows of K, zero past N), plus bias (N) when not null, as the tiles add it.
template <int R>
static void dot_rows(int64_t N, int64_t K, float alpha, const float* __restrict A, int64_t lda,
                     const float* __restrict Bt, const float* __restrict bias, float* __restrict C, int64_t ldc) {
  const int64_t k_vec = K / W * W;
  for (int64_t j0 = 0; j0 < N; j0 += kDotGroup) {
    const float* b = Bt + j0 * K;
    vf acc[R][kDotGroup];
    for (int r = 0; r < R; r++)
      for (int c = 0; c < kDotGroup; c++) acc[r][c] = vbroadcast(0.0f);
    for (int64_t k = 0; k < k_vec; k += W) {
      vf bk[kDotGroup];
      for (int c = 0; c < kDotGroup; c++) bk[c] = vload(b + c * K + k);
      for (int r = 0; r < R; r++) {
        vf a = vload(A + r * lda + k);
        for (int c = 0; c < kDotGroup; c++) acc[r][c] += a * bk[c];
      }
    }
    for (int r = 0; r < R; r++)
      for (int c = 0; c < kDotGroup && j0 + c < N; c++) {
        float sum = vsum(acc[r][c]);
        for (int64_t k = k_vec; k < K; k++) sum += A[r * lda + k] * b[c * K + k];
        C[r * ldc + j0 + c] = bias ? alpha * sum + bias[j0 + c] : alpha * sum;
      }
  }
}

struct DotJob {
  int64_t N, K;
  float alpha;
  const float* A; int64_t lda;
  const float* Bt;
  const float* bias;
  float* C; int64_t ldc;
};

template <int R>
static void dot_rows_upto(int64_t rows, const DotJob& j, const float* a, float* c) {
  if constexpr (R > 1) {
    if (rows < R) return dot_rows_upto<R - 1>(rows, j, a, c);
  }
  dot_rows<R>(j.N, j.K, j.alpha, a, j.lda, j.Bt, j.bias, c, j.ldc);
}

static void dot_job_rows(void* ctx, int64_t begin, int64_t end) {
  const DotJob& j = *static_cast<const DotJob*>(ctx);
  for (int64_t i = begin; i < end; i += kDotRows)
    dot_rows_upto<kDotRows>(imin(kDotRows, end - i), j, j.A + i * j.lda, j.C + i * j.ldc);
}

// C = alpha op(A) op(B), then the epilogue, as dot products (above); false
// when the product is not of that kind.
static bool dot_products(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, bool trans_a,
                         const float* B, int64_t ldb, bool trans_b, float beta, float* C, int64_t ldc,
                         const Epilogue* ep) {
  if (beta != 0.0f || trans_a || N > kDotColumns) return false;  // K > 0: gemm took the empty sums
  const int64_t rows = (N + kDotGroup - 1) / kDotGroup * kDotGroup;
  float* Bt = scratch(Scratch::dot, rows * K);
  if (!Bt) return false;
  if (trans_b) {  // op(B)'s columns are B's rows
    for (int64_t j = 0; j < N; j++) std::memcpy(Bt + j * K, B + j * ldb, sizeof(float) * K);
  } else {  // B read once, row by row
    for (int64_t k = 0; k < K; k++)
      for (int64_t j = 0; j < N; j++) Bt[j * K + k] = B[k * ldb + j];
  }
  std::fill(Bt + N * K, Bt + rows * K, 0.0f);
  DotJob job{N, K, alpha, A, lda, Bt, ep ? ep->bias : nullptr, C, ldc};
  const int64_t grain = std::max<int64_t>(kDotRows, (int64_t)(kMinFmaPerThread / (double)(N * K)) + 1);
  parallel_for(M, grain, dot_job_rows, &job);
  whole_epilogue(ep, M, N, C, ldc);
  return true;
}

static void gemm(int64_t M, int64_t N, int64_t K, float alpha,
                 const float* A, int64_t lda, bool trans_a,
                 const float* B, int64_t ldb, bool trans_b,
                 float beta, float* C, int64_t ldc, const Epilogue* ep) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {  // an empty sum: C = beta * C, then the epilogue
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        float* c = C + i * ldc + j;
        *c = (beta == 0.0f ? 0.0f : beta * *c) + (ep && ep->bias ? ep->bias[j] : 0.0f);
      }
    whole_epilogue(ep, M, N, C, ldc);
    return;
  }
  if (dot_products(M, N, K, alpha, A, lda, trans_a, B, ldb, trans_b, beta, C, ldc, ep)) return;
  if (float* t = narrow(M, N, beta) ? scratch(Scratch::narrow, M * N) : nullptr) {
    // t (N, M) = C^T, bias and the rest of the epilogue applied on the way back
    gemm(N, M, K, alpha, B, ldb, !trans_b, A, lda, !trans_a, 0.0f, t, M, nullptr);
    const float* bias = ep ? ep->bias : nullptr;
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) C[i * ldc + j] = bias ? t[j * M + i] + bias[j] : t[j * M + i];
    whole_epilogue(ep, M, N, C, ldc);
    return;
  }
  std::atomic<bool> out_of_memory{false};
  std::atomic<int64_t> next_task{0};
  GemmJob g{M, N, K, alpha, beta, A, lda, trans_a, B, ldb, trans_b, C, ldc, ep, 0, 0, 1, &out_of_memory};
  g.next_task = &next_task;
  int T = plan_grid(g, num_threads());
  if (plan_shared_tasks(g, T)) {
    parallel_for(T, 1, gemm_claim, &g);
    if (next_task.load() < g.tasks || out_of_memory.load()) throw std::bad_alloc();  // a thread lacked its buffers
    return;
  }
  int64_t row_tasks = (M + g.row_chunk - 1) / g.row_chunk;
  parallel_for(row_tasks * g.col_tasks, 1, gemm_tasks, &g);
  if (out_of_memory.load()) throw std::bad_alloc();  // on the calling thread, which reaches Python
}

}  // namespace DK_ISA
}  // namespace dropkit
