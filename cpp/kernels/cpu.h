// cpu.h: the ISA-free face of the kernels.
//
// Every kernel is written once (the *.h files beside this one) and compiled in
// dispatch_isa.cpp once per instruction set: scalar, AVX2+FMA and AVX-512. Each
// compilation fills one KernelTable; the rest of the code calls kernels() and
// never sees an ISA. The table is chosen once at import from CPUID, can be
// forced lower with the environment variable DROPKIT_ISA, and can be switched
// by set_isa() so the tests run every path this CPU supports.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace dropkit {

// `bytes` of memory aligned to `alignment` (a power of two), to be released
// with std::free, or null. aligned_alloc takes only a size that is a
// multiple of the alignment (and none of zero), so the size is rounded up.
inline void* aligned_bytes(size_t alignment, size_t bytes) {
  return std::aligned_alloc(alignment, (bytes + alignment - 1) / alignment * alignment + (bytes == 0 ? alignment : 0));
}

enum class Act : int { identity = 0, sigmoid, tanh, relu, leaky_relu, prelu, elu };
enum class Loss : int { softmax_ce = 0, binary_ce, squared };

// Elementwise activation of a (B, N) block. `param` is the slope of leaky_relu
// or the alpha of elu; prelu reads one learned slope per column from `slopes`.
struct ActParams {
  Act kind = Act::identity;
  float param = 0.0f;
  const float* slopes = nullptr;
};

// Counter-based random stream: Philox4x32-10 keyed by the seed; the counter
// holds the element's block index, a stream id (layer and purpose) and the step.
struct RngKey {
  uint64_t seed = 0;
  uint32_t stream = 0;
  uint32_t step = 0;
};

// Dropout of a (B, N) block: element (b, j) is kept when the stream's bits at
// index b * N + j are >= threshold, and kept values are multiplied by scale.
struct DropoutSpec {
  uint32_t threshold = 0;
  float scale = 1.0f;
  RngKey key;
};

enum class Optimizer : int { sgd = 0, adagrad, rmsprop, adam };

// One optimizer step over a segment of the flat parameter buffer.
struct OptParams {
  Optimizer kind = Optimizer::sgd;
  float lr = 1e-3f;
  float momentum = 0.0f;
  bool nesterov = false;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, rho = 0.99f;
  float l2 = 0.0f;            // L2 in the gradient: g += l2 * w
  float weight_decay = 0.0f;  // decoupled: w -= lr * weight_decay * w
  float l1 = 0.0f;
  bool l1_proximal = true;    // soft-threshold after the update; else l1 sign(w) in the gradient
  float bias_correction1 = 1.0f, bias_correction2 = 1.0f;  // adam: 1 - beta^t
};

// The optimizer step taken by the weight gradient's own product: each
// finished band of dW, kept in the thread's scratch in L2, updates its
// weights w and the state m, v (laid out like C, leading dimension ldc),
// instead of being stored and read back by a pass of its own. C then holds
// no gradient, at most partial sums (see gemm.h).
struct FusedStep {
  float* w = nullptr;
  float* m = nullptr;
  float* v = nullptr;
  OptParams p;
  // DropConnect: the gradient goes through the forward pass's record of the
  // weights it kept (w's layout), scaled as they were, before the update
  const uint8_t* kept = nullptr;
  float kept_scale = 1.0f;
};

// Applied to each output tile once its dot products are complete, while it is
// still in cache: z = acc + bias, then a = act(z) when `act_out` is given, then
// (once a band of rows is complete, in L2) the next layer's input dropout of a
// (or of z without act_out) into `dropped`. Or, for a weight gradient, the
// optimizer step (`step`, with nothing else).
struct Epilogue {
  const float* bias = nullptr;  // (N) or null
  float* act_out = nullptr;     // (M, N) with leading dimension N, or null
  ActParams act;
  float* dropped = nullptr;     // (M, N) with leading dimension N, or null (without act_out, C's is N too)
  DropoutSpec drop;
  const FusedStep* step = nullptr;
};

// A penalty on a hidden layer's output h (see penalties.h for the formulas).
enum class ActivityKind : int { none = 0, l1, kl, student_t };
struct ActivityParams {
  ActivityKind kind = ActivityKind::none;
  float alpha = 0.0f;  // strength (beta for kl)
  float rho = 0.0f;    // kl's target mean activation
  float inv_batch = 1.0f;
  const float* col_mean = nullptr;  // kl: mean of each unit over the batch
};

// Sums over a block of a float array in float64, with its zeros counted:
// the penalty's sums, the weights' zero fraction and, as an infinity or a
// NaN in x makes sum_squares one too, whether x is finite.
struct BlockStats {
  double sum_squares = 0.0, sum_abs = 0.0;
  int64_t zeros = 0;
};

struct KernelTable {
  const char* name;

  // C (M, N) = alpha * op(A) op(B) + beta * C, row-major with leading
  // dimensions; op(A) is (M, K), op(B) is (K, N). beta == 0 never reads C.
  // The epilogue (may be null) runs on each finished tile.
  void (*gemm)(int64_t M, int64_t N, int64_t K, float alpha,
               const float* A, int64_t lda, bool trans_a,
               const float* B, int64_t ldb, bool trans_b,
               float beta, float* C, int64_t ldc, const Epilogue* epilogue);

  // a (B, N) = act(z); row-major, contiguous.
  void (*act_forward)(float* a, const float* z, int64_t B, int64_t N, ActParams p);
  // dz (B, N) = (drop(da) + dpenalty/da) * act'(z): da passes through the
  // dropout mask of `drop` (the one forward applied to a) and the activity
  // penalty's gradient joins when `activity` is not null, all in one pass;
  // prelu also accumulates dslope (N) += sum_b (drop(da) + dpenalty) * min(z, 0).
  // `dropped`, when not null, is drop(a) itself (B, N), which relu without a
  // penalty reads instead of regenerating the mask (act_backward_rows).
  void (*act_backward)(float* dz, float* dslope, const float* da, const float* z,
                       const float* a, int64_t B, int64_t N, ActParams p,
                       const ActivityParams* activity, const DropoutSpec* drop, const float* dropped);
  // maxout: a (B, U) = max over each group of k columns of z (B, U*k); argmax in (B, U).
  void (*maxout_forward)(float* a, int32_t* argmax, const float* z, int64_t B, int64_t U, int k);
  void (*maxout_backward)(float* dz, const float* da, const int32_t* argmax, int64_t B, int64_t U, int k);

  // out[i] = in[i] * keep(i) * scale, keep(i) = uniform32(i) >= threshold.
  // The same call drops units going forward and routes gradients going back.
  void (*dropout_apply)(float* out, const float* in, int64_t n, uint32_t threshold,
                        float scale, RngKey key);
  // mask[i] = keep(i) ? scale : 0
  void (*dropout_mask)(float* mask, int64_t n, uint32_t threshold, float scale, RngKey key);
  // raw 32-bit outputs of the stream, for tests and shuffling
  void (*random_u32)(uint32_t* out, int64_t n, RngKey key);

  // Returns the sum over rows of weight_b * loss_b; writes
  // dz = grad_scale * weight_b * dloss/dz when dz is not null.
  double (*loss)(float* dz, const float* z, const float* y, const float* weight,
                 int64_t B, int64_t C, Loss kind, float grad_scale);
  // out (B, C) = softmax(z) or sigmoid(z) per the loss's link.
  void (*output_link)(float* out, const float* z, int64_t B, int64_t C, Loss kind);

  // Over a (rows, cols) segment.
  void (*optimizer_step)(float* w, const float* g, float* m, float* v, int64_t rows, int64_t cols,
                         OptParams p);
  // db (N) += column sums of dz (B, N)
  void (*column_sums)(float* db, const float* dz, int64_t B, int64_t N);
  double (*sum_squares)(const float* x, int64_t n);

  double (*sum_abs)(const float* x, int64_t n);
  // whether no element of x (n) is an infinity or a NaN
  bool (*all_finite)(const float* x, int64_t n);
  // out[b] = the figures of block b of x (n), blocks `block` long (the last
  // may be shorter; at most 2^24 elements), split over threads, each summed
  // in a fixed order; sum_squares alone with squares_only
  void (*block_stats)(const float* x, int64_t n, int64_t block, bool squares_only, BlockStats* out);
  // W (rows, cols): columns with norm above c are rescaled to norm c.
  void (*max_norm_columns)(float* W, int64_t rows, int64_t cols, float c);
  double (*activity_value)(const float* h, int64_t B, int64_t N, ActivityParams p, float* col_mean);
  // dropout_apply that also writes kept (n): 1 where it kept the element, 0
  // where it dropped it; apply_kept then routes another array through that
  // mask: out (+)= kept ? in * scale : 0 (out may be in).
  void (*dropout_apply_recording)(float* out, uint8_t* kept, const float* in, int64_t n, uint32_t threshold,
                                  float scale, RngKey key);
  void (*apply_kept)(float* out, const float* in, const uint8_t* kept, int64_t n, float scale, bool accumulate);

  // Batch OMP-k (omp.h): codes of the signals X (n, d) over the unit-norm atoms
  // D (m, d), at most k per signal, stopping early once ||residual||^2 <= tol
  // (tol < 0: no target). Writes dense (n, m) and/or, per signal, its atoms in
  // ascending order with their coefficients into atoms, coefs (n, k) (-1 and 0
  // after the last) and their number into count (n); any output may be null.
  // Returns false when its work space could not be allocated.
  bool (*omp_encode)(float* dense, int32_t* atoms, float* coefs, int32_t* count,
                     const float* X, const float* D, int64_t n, int64_t d, int64_t m,
                     int k, double tol);
};

const KernelTable& kernels();
std::string simd_backend();
std::vector<std::string> available_isas();  // runnable here, best first
void set_isa(const std::string& name);       // throws std::invalid_argument

// Philox threshold for dropping with probability `rate` in [0, 1).
uint32_t drop_threshold(double rate);

// Flush-to-zero and denormals-are-zero for the life of the guard; the caller's
// floating-point state is restored after (subnormals slow training several-fold).
class DenormalGuard {
 public:
  DenormalGuard();
  ~DenormalGuard();
  DenormalGuard(const DenormalGuard&) = delete;
  DenormalGuard& operator=(const DenormalGuard&) = delete;

 private:
  unsigned saved_ = 0;
};

}  // namespace dropkit
