// network.h: a multilayer perceptron over flat buffers, and its epoch loop.
//
// Parameters, gradients and optimizer state are each one contiguous float
// buffer with the same layout: for every layer W (n_in, width), b (width) and,
// for prelu, one slope per unit. Activations live in a Workspace sized for a
// batch; training owns one, and every predict call makes its own, so many
// threads may predict with one network at once. No Python here.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cpu.h"

namespace dropkit {

// Allocator of the flat parameter, gradient and optimizer buffers. From 4 MB
// up they are 2 MB-aligned and offered to the kernel as transparent huge
// pages (where it gives them only on request): the products walk W by rows,
// each row of a 1024-wide layer a 4 KB page of its own, one TLB entry per
// row of every packed strip (the products 0.5 to 1.6% faster with huge pages
// in interleaved runs).
template <class T>
struct FlatAllocator {
  using value_type = T;
  FlatAllocator() = default;
  template <class U>
  FlatAllocator(const FlatAllocator<U>&) {}
  T* allocate(size_t n);
  void deallocate(T* p, size_t) { std::free(p); }
  template <class U>
  bool operator==(const FlatAllocator<U>&) const { return true; }
  template <class U>
  bool operator!=(const FlatAllocator<U>&) const { return false; }
};
using FlatBuffer = std::vector<float, FlatAllocator<float>>;

struct LayerSpec {
  int64_t n_in = 0;
  int64_t units = 0;        // outputs of the layer
  Act act = Act::identity;  // elementwise part (identity for maxout)
  float act_param = 0.0f;   // leaky_relu slope, elu alpha, prelu initial slope
  int pieces = 1;           // maxout pieces per unit (1: not maxout)
  float input_dropout = 0.0f;  // drop probability applied to this layer's input
  float dropconnect = 0.0f;    // drop probability of each weight, one mask per step
  ActivityParams activity;     // penalty on this layer's output (hidden layers)

  int64_t width() const { return units * pieces; }  // columns of W
  bool has_slopes() const { return act == Act::prelu; }
};

enum class DropoutMode : int { inverted = 0, standard };
// What a mask of a layer drops; part of its stream id (layer * 8 + purpose).
enum MaskPurpose : uint32_t { kUnitMask = 0, kWeightMask = 1 };

// Per-batch activations of every layer; backward reads what forward cached.
struct Workspace {
  int64_t batch = 0;         // rows the buffers can hold
  int64_t batch_in_use = 0;  // rows of the last forward
  bool training = false;     // whether the last forward drew masks: backward goes through them only then
  std::vector<std::vector<float>> x_in;   // (B, n_in): the layer's input after dropout
  std::vector<std::vector<float>> z;      // (B, width): pre-activation
  std::vector<std::vector<float>> a;      // (B, units): output (unused when aliasing z)
  std::vector<std::vector<int32_t>> argmax;  // (B, units): maxout winners
  std::vector<std::vector<float>> dz;     // (B, width)
  std::vector<std::vector<float>> d_in;   // (B, n_in): gradient w.r.t. the layer's input
  std::vector<std::vector<float>> w_drop;  // (n_in, width): DropConnect's masked weights
  std::vector<std::vector<uint8_t>> w_kept;  // (n_in, width): and which of them it kept
  std::vector<std::vector<float>> col_mean;  // (units): KL sparsity's batch means
  std::vector<std::vector<float>> da_pen;  // (B, units): maxout's gradient plus its activity penalty
  std::vector<double> activity;           // each layer's activity penalty on the last batch
  std::vector<float> scratch;             // DropConnect's unmasked weight gradient, when it accumulates
  std::vector<float> input;               // a caller's batch, kept for backward
  std::vector<const float*> in_ptr, out_ptr;  // what each layer read and wrote last
};

struct EpochResult {
  double loss_sum = 0.0;    // sum over samples of weight * loss
  double weight_sum = 0.0;  // sum of sample weights seen
  int64_t batches = 0;
  std::vector<double> activity_sum;  // per layer, the activity penalty summed over batches
  bool interrupted = false;
  bool diverged = false;
};

class Network {
 public:
  Network(int64_t n_inputs, std::vector<LayerSpec> layers, DropoutMode mode, uint64_t seed);

  const std::vector<LayerSpec>& layers() const { return layers_; }
  int64_t n_inputs() const { return n_inputs_; }
  int64_t n_outputs() const { return layers_.back().units; }
  int64_t n_params() const { return (int64_t)params_.size(); }
  DropoutMode dropout_mode() const { return mode_; }

  float* params() { return params_.data(); }
  float* grads() { return grads_.data(); }
  float* opt_m() { return m_.data(); }
  float* opt_v() { return v_.data(); }
  int64_t weight_offset(int l) const { return w_off_[l]; }
  int64_t bias_offset(int l) const { return b_off_[l]; }
  int64_t slope_offset(int l) const { return s_off_[l]; }  // -1 without slopes

  uint64_t seed = 0;
  uint32_t step = 0;  // optimizer steps taken; keys the dropout masks
  OptParams opt;      // lr, kind and hyperparameters; penalties come per layer
  std::vector<float> l1, l2, weight_decay, max_norm;  // per layer (max_norm 0: none)
  bool l1_proximal = true;
  bool penalize_bias = false;

  // Forward over a batch X (B, n_in); returns the last layer's output (B, n_out),
  // valid until the workspace is used again. Training draws the masks of
  // (seed, mask_step) and computes the activity penalties.
  const float* forward(Workspace& ws, const float* X, int64_t B, bool training, uint64_t mask_seed,
                       uint32_t mask_step) const;
  // Backward from dout (B, n_out), accumulating into grads(); writes the
  // gradient w.r.t. X into dX when it is not null. With accumulate false the
  // gradients overwrite grads() instead, which saves zeroing the buffer and
  // reading it back in every step of an epoch (each segment is written once).
  void backward(Workspace& ws, const float* dout, float* dX, bool accumulate = true) {
    backward_impl(ws, dout, dX, accumulate, false);
  }
  void zero_grad();
  void optimizer_step() { optimizer_step_impl(false); }  // one fused pass per parameter segment, then step++
  // backward(ws, dout, nullptr, false) and optimizer_step() in one, the
  // weights of every layer updated inside the products of their gradients
  // (gemm.h's FusedStep), which grads() then lacks.
  void backward_and_step(Workspace& ws, const float* dout) {
    backward_impl(ws, dout, nullptr, false, true);
    optimizer_step_impl(true);
  }
  // sum over layers of l1 |W|_1 + (l2/2) |W|^2 (biases too with penalize_bias)
  double penalty_value() const;
  // What the estimators record after each epoch, in one pass over the
  // parameters and one over the weight gradients, split over threads.
  struct ParamStats {
    double penalty = 0.0;                          // penalty_value()
    bool finite = true;                            // no parameter is an infinity or a NaN
    std::vector<double> zero_fraction, grad_norm;  // per layer, of the weights and of their gradients
  };
  ParamStats param_stats() const;

  // One epoch of minibatch training on (X, Y, sample_weight). keep_going() is
  // asked between batches; returning false ends the epoch early (Ctrl-C).
  EpochResult train_epoch(const float* X, const float* Y, const float* sample_weight, int64_t n,
                          Loss loss, int64_t batch_size, bool shuffle, uint32_t epoch,
                          const std::function<bool()>& keep_going);
  // Outputs for X (n, n_in) in blocks, through the loss's link when `link`.
  // With mc_samples > 0, the mean of that many passes with dropout and
  // DropConnect on, masks drawn from mc_seed (Monte Carlo dropout).
  void predict(const float* X, int64_t n, float* out, bool link, Loss loss, int mc_samples = 0,
               uint64_t mc_seed = 0) const;
  // Per hidden layer, the mean |output| and the fraction of outputs above
  // `threshold` in magnitude, over X without dropout.
  void hidden_stats(const float* X, int64_t n, float threshold, double* mean_abs, double* active) const;
  // The same figures for the last training batch (zeros before any).
  void last_batch_stats(float threshold, double* mean_abs, double* active) const;
  // Mean weighted loss over (X, Y), without penalties.
  double mean_loss(const float* X, const float* Y, const float* sample_weight, int64_t n,
                   Loss loss) const;

  Workspace train_ws;

 private:
  void ensure(Workspace& ws, int64_t B) const;
  // With fuse_weights (accumulate false) the weights are stepped by their
  // gradients' products, and optimizer_step_impl(true) leaves them out.
  void backward_impl(Workspace& ws, const float* dout, float* dX, bool accumulate, bool fuse_weights);
  void optimizer_step_impl(bool weights_stepped);
  // The optimizer's hyperparameters for layer l's weights at this step.
  OptParams weight_step_params(size_t l) const;
  // layer l's (l2/2) |x|^2 + l1 |x|_1 from the sums of x
  double penalty_of(size_t l, const BlockStats& x) const;
  DropoutSpec layer_dropout(size_t l, MaskPurpose purpose, uint64_t mask_seed, uint32_t mask_step) const;
  // Adds sum |h| and the count of |h| > threshold per hidden layer for the batch in ws.
  void accumulate_stats(const Workspace& ws, float threshold, double* sum_abs, double* active) const;
  // Turns those sums over `rows` rows into means and fractions.
  void stats_to_means(int64_t rows, double* mean_abs, double* active) const;

  int64_t n_inputs_;
  std::vector<LayerSpec> layers_;
  DropoutMode mode_;
  std::vector<int64_t> w_off_, b_off_, s_off_;
  FlatBuffer params_, grads_, m_, v_;
  std::vector<int64_t> order_;
  std::vector<uint32_t> shuffle_bits_;
  std::vector<float> xb_, yb_, swb_, dout_;
};

}  // namespace dropkit
