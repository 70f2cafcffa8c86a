// network.cpp: forward, backward, the optimizer pass and the epoch loop.
#include "engine/network.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <stdexcept>
#ifdef __linux__
#include <sys/mman.h>
#endif

#include "kernels/threads.h"

namespace dropkit {

template <class T>
T* FlatAllocator<T>::allocate(size_t n) {
  constexpr size_t kHuge = (size_t)2 << 20;
  const size_t bytes = n * sizeof(T);
  const bool huge = bytes >= 2 * kHuge;
  void* p = aligned_bytes(huge ? kHuge : 64, bytes);
  if (!p) throw std::bad_alloc();
#ifdef __linux__
  // a hint, over the whole huge pages aligned_bytes rounded up to: without it, ordinary pages
  if (huge) madvise(p, (bytes + kHuge - 1) / kHuge * kHuge, MADV_HUGEPAGE);
#endif
  return static_cast<T*>(p);
}
template struct FlatAllocator<float>;

// Rows per block outside training (predict, statistics, the validation
// loss): few enough that each product's op(A) is kept packed whole and its
// column groups are claimed by the threads in turn (see gemm.h), and that a
// block's activations stay in L2.
constexpr int64_t kInferenceBlock = 256;

// Streams of the counter-based generator: layer * 8 + purpose for masks; the
// shuffle has its own stream, keyed by the epoch.
static constexpr uint32_t kShuffleStream = 0xFFFFFFF0u;

static RngKey mask_key(uint64_t seed, int layer, MaskPurpose purpose, uint32_t step) {
  return RngKey{seed, (uint32_t)layer * 8u + purpose, step};
}

// inverted scaling for dropout under `mode`; DropConnect is always inverted
static float keep_scale(float rate, DropoutMode mode) {
  return mode == DropoutMode::inverted ? 1.0f / (1.0f - rate) : 1.0f;
}

// The dropout of layer l's input (units) or of its weights (DropConnect,
// always inverted) at (seed, step).
DropoutSpec Network::layer_dropout(size_t l, MaskPurpose purpose, uint64_t mask_seed, uint32_t mask_step) const {
  bool units = purpose == kUnitMask;
  float rate = units ? layers_[l].input_dropout : layers_[l].dropconnect;
  return DropoutSpec{drop_threshold(rate), keep_scale(rate, units ? mode_ : DropoutMode::inverted),
                     mask_key(mask_seed, (int)l, purpose, mask_step)};
}

Network::Network(int64_t n_inputs, std::vector<LayerSpec> layers, DropoutMode mode, uint64_t seed_)
    : seed(seed_), n_inputs_(n_inputs), layers_(std::move(layers)), mode_(mode) {
  if (n_inputs_ < 1) throw std::invalid_argument("n_inputs: must be at least 1");
  if (layers_.empty()) throw std::invalid_argument("layers: at least one layer is needed");
  int64_t offset = 0, fan_in = n_inputs_;
  for (auto& L : layers_) {
    if (L.units < 1) throw std::invalid_argument("layers: every layer needs at least 1 unit");
    if (L.pieces < 1) throw std::invalid_argument("layers: maxout pieces must be at least 1");
    if (!(L.input_dropout >= 0.0f && L.input_dropout < 1.0f))
      throw std::invalid_argument("layers: dropout rates must be in [0, 1)");
    if (!(L.dropconnect >= 0.0f && L.dropconnect < 1.0f))
      throw std::invalid_argument("layers: dropconnect rates must be in [0, 1)");
    L.n_in = fan_in;
    w_off_.push_back(offset);
    offset += L.n_in * L.width();
    b_off_.push_back(offset);
    offset += L.width();
    s_off_.push_back(L.has_slopes() ? offset : -1);
    if (L.has_slopes()) offset += L.units;
    fan_in = L.units;
  }
  params_.assign(offset, 0.0f);
  grads_.assign(offset, 0.0f);
  m_.assign(offset, 0.0f);
  v_.assign(offset, 0.0f);
  for (size_t l = 0; l < layers_.size(); l++)
    if (s_off_[l] >= 0)
      std::fill_n(params_.data() + s_off_[l], layers_[l].units, layers_[l].act_param);
  l1.assign(layers_.size(), 0.0f);
  l2.assign(layers_.size(), 0.0f);
  weight_decay.assign(layers_.size(), 0.0f);
  max_norm.assign(layers_.size(), 0.0f);
}

// ----------------------------------------------------------------------------
// forward and backward

void Network::ensure(Workspace& ws, int64_t B) const {
  size_t L = layers_.size();
  if (ws.x_in.size() != L) {
    ws.batch = 0;  // a workspace of another network: size everything anew
    ws.x_in.resize(L); ws.z.resize(L); ws.a.resize(L); ws.argmax.resize(L);
    ws.dz.resize(L); ws.d_in.resize(L); ws.w_drop.resize(L); ws.w_kept.resize(L);
    ws.col_mean.resize(L); ws.da_pen.resize(L);
    ws.activity.assign(L, 0.0);
    ws.in_ptr.assign(L, nullptr); ws.out_ptr.assign(L, nullptr);
  }
  if (ws.batch >= B) return;
  for (size_t l = 0; l < L; l++) {
    const LayerSpec& S = layers_[l];
    if (S.input_dropout > 0.0f) ws.x_in[l].resize(B * S.n_in);
    ws.z[l].resize(B * S.width());
    if (S.pieces > 1 || S.act != Act::identity) ws.a[l].resize(B * S.units);
    if (S.pieces > 1) ws.argmax[l].resize(B * S.units);
    if (S.dropconnect > 0.0f) {
      ws.w_drop[l].resize(S.n_in * S.width());
      ws.w_kept[l].resize(S.n_in * S.width());
    }
    if (S.activity.kind == ActivityKind::kl) ws.col_mean[l].resize(S.units);
  }
  ws.batch = B;
}

const float* Network::forward(Workspace& ws, const float* X, int64_t B, bool training,
                              uint64_t mask_seed, uint32_t mask_step) const {
  const KernelTable& K = kernels();
  ensure(ws, B);
  ws.batch_in_use = B;
  ws.training = training;
  const float* x = X;
  bool x_dropped = false;  // the previous layer's epilogue applied this layer's input dropout
  for (size_t l = 0; l < layers_.size(); l++) {
    const LayerSpec& S = layers_[l];
    const float* W = params_.data() + w_off_[l];
    const float* b = params_.data() + b_off_[l];
    float alpha = 1.0f;
    if (S.input_dropout > 0.0f && !x_dropped) {
      if (training) {
        // inverted dropout scales the kept units now; standard scales at prediction
        DropoutSpec d = layer_dropout(l, kUnitMask, mask_seed, mask_step);
        K.dropout_apply(ws.x_in[l].data(), x, B * S.n_in, d.threshold, d.scale, d.key);
        x = ws.x_in[l].data();
      } else if (mode_ == DropoutMode::standard) {
        alpha = 1.0f - S.input_dropout;  // the weight-scaling rule, folded into the product
      }
    }
    if (training && S.dropconnect > 0.0f) {
      // one weight mask per step, shared by the batch; prediction uses the mean weights
      DropoutSpec d = layer_dropout(l, kWeightMask, mask_seed, mask_step);
      K.dropout_apply_recording(ws.w_drop[l].data(), ws.w_kept[l].data(), W, S.n_in * S.width(), d.threshold,
                                d.scale, d.key);
      W = ws.w_drop[l].data();
    }
    ws.in_ptr[l] = x;
    // z (B, width) = alpha * x (B, n_in) W (n_in, width) + b, activation in the epilogue
    float* z = ws.z[l].data();
    bool elementwise = S.pieces == 1;
    bool alias = elementwise && S.act == Act::identity;
    float* a = alias ? z : ws.a[l].data();
    Epilogue ep;
    ep.bias = b;
    if (elementwise && !alias) {
      ep.act_out = a;
      ep.act = ActParams{S.act, S.act_param, s_off_[l] >= 0 ? params_.data() + s_off_[l] : nullptr};
    }
    x_dropped = training && elementwise && l + 1 < layers_.size() && layers_[l + 1].input_dropout > 0.0f;
    if (x_dropped) {  // the next layer's input dropout, fused into this product
      ep.dropped = ws.x_in[l + 1].data();
      ep.drop = layer_dropout(l + 1, kUnitMask, mask_seed, mask_step);
    }
    K.gemm(B, S.width(), S.n_in, alpha, x, S.n_in, false, W, S.width(), false, 0.0f, z, S.width(), &ep);
    if (!elementwise) K.maxout_forward(a, ws.argmax[l].data(), z, B, S.units, S.pieces);
    if (training && S.activity.kind != ActivityKind::none)
      ws.activity[l] = K.activity_value(a, B, S.units, S.activity,
                                        S.activity.kind == ActivityKind::kl ? ws.col_mean[l].data() : nullptr);
    ws.out_ptr[l] = a;
    x = x_dropped ? ws.x_in[l + 1].data() : a;
  }
  return x;
}

// The gradient of what the last forward pass computed: through its dropout
// and DropConnect masks and with the activity penalties in training mode;
// without them, and with standard dropout's weight scaling, after a
// prediction-mode pass.
void Network::backward_impl(Workspace& ws, const float* dout, float* dX, bool accumulate, bool fuse_weights) {
  const KernelTable& K = kernels();
  int64_t B = ws.batch_in_use;
  const bool masked = ws.training;
  const float* da = dout;
  DropoutSpec next_input_mask;
  const DropoutSpec* da_mask = nullptr;  // the mask da must still go through (the next layer's input dropout)
  for (int l = (int)layers_.size() - 1; l >= 0; l--) {
    const LayerSpec& S = layers_[l];
    int64_t width = S.width();
    ws.dz[l].resize(B * width);
    float* dz = ws.dz[l].data();
    const float* z = ws.z[l].data();
    ActivityParams pen = S.activity;
    pen.inv_batch = 1.0f / (float)B;
    pen.col_mean = ws.col_mean[l].empty() ? nullptr : ws.col_mean[l].data();
    const ActivityParams* activity = masked && pen.kind != ActivityKind::none ? &pen : nullptr;
    const bool connect = masked && S.dropconnect > 0.0f;  // DropConnect's mask
    // the weight-scaling rule the prediction-mode forward folded into the product
    const float alpha = !masked && mode_ == DropoutMode::standard && S.input_dropout > 0.0f ? 1.0f - S.input_dropout
                                                                                              : 1.0f;
    if (S.pieces > 1) {
      // the mask and the penalty act on the max: they join before the routing
      if (activity || da_mask) {
        ws.da_pen[l].resize(B * S.units);
        K.act_backward(ws.da_pen[l].data(), nullptr, da, ws.out_ptr[l], ws.out_ptr[l], B, S.units,
                       ActParams{}, activity, da_mask, nullptr);
        da = ws.da_pen[l].data();
      }
      K.maxout_backward(dz, da, ws.argmax[l].data(), B, S.units, S.pieces);
    } else {
      float* dslope = s_off_[l] >= 0 ? grads_.data() + s_off_[l] : nullptr;
      if (dslope && !accumulate) std::fill_n(dslope, S.units, 0.0f);
      ActParams p{S.act, S.act_param, s_off_[l] >= 0 ? params_.data() + s_off_[l] : nullptr};
      // what the next layer read, when forward dropped it: relu reads its
      // mask off it rather than regenerating it
      const float* dropped =
          da_mask && ws.in_ptr[l + 1] == ws.x_in[l + 1].data() ? ws.in_ptr[l + 1] : nullptr;
      K.act_backward(dz, dslope, da, z, ws.out_ptr[l], B, width, p, activity, da_mask, dropped);
    }
    // db += sum_b dz
    if (!accumulate) std::fill_n(grads_.data() + b_off_[l], width, 0.0f);
    K.column_sums(grads_.data() + b_off_[l], dz, B, width);
    // d_in (B, n_in) = dz (B, width) W^T (width, n_in), then back through the
    // dropout mask; before dW, whose product may update W
    float* d_in = nullptr;
    if (l > 0 || dX) {
      const float* W_used = connect ? ws.w_drop[l].data() : params_.data() + w_off_[l];
      d_in = l == 0 ? dX : (ws.d_in[l].resize(B * S.n_in), ws.d_in[l].data());
      K.gemm(B, S.n_in, width, alpha, dz, width, false, W_used, width, true, 0.0f, d_in, S.n_in, nullptr);
    }
    // dW (n_in, width) += x_in^T (n_in, B) dz (B, width)
    float* dW = grads_.data() + w_off_[l];
    // DropConnect: only the weights the forward pass kept get a gradient,
    // scaled as they were
    const float kept_scale = connect ? layer_dropout(l, kWeightMask, seed, step).scale : 1.0f;
    if (fuse_weights) {
      const int64_t o = w_off_[l];
      FusedStep fused{params_.data() + o, m_.data() + o, v_.data() + o, weight_step_params(l)};
      if (connect) {
        fused.kept = ws.w_kept[l].data();
        fused.kept_scale = kept_scale;
      }
      Epilogue ep;
      ep.step = &fused;
      K.gemm(S.n_in, width, B, alpha, ws.in_ptr[l], S.n_in, true, dz, width, false, 0.0f, dW, width, &ep);
    } else if (connect) {
      // the product through the mask in place, or from a scratch copy onto
      // the gradient already there
      const int64_t n = S.n_in * width;
      float* sums = accumulate ? (ws.scratch.resize(n), ws.scratch.data()) : dW;
      K.gemm(S.n_in, width, B, alpha, ws.in_ptr[l], S.n_in, true, dz, width, false, 0.0f, sums, width, nullptr);
      K.apply_kept(dW, sums, ws.w_kept[l].data(), n, kept_scale, accumulate);
    } else {
      K.gemm(S.n_in, width, B, alpha, ws.in_ptr[l], S.n_in, true, dz, width, false, accumulate ? 1.0f : 0.0f,
             dW, width, nullptr);
    }
    if (!d_in) break;
    // Regenerating the mask from the counter-based stream is cheaper than
    // storing it. The network's input gradient dX gets it in place; any other
    // layer's input gradient gets it in the layer below's activation
    // derivative, in the same pass (relu's reads it off the dropped input
    // this layer kept, without the generator).
    da_mask = nullptr;
    if (masked && S.input_dropout > 0.0f) {
      next_input_mask = layer_dropout(l, kUnitMask, seed, step);
      da_mask = &next_input_mask;
      if (l == 0) K.dropout_apply(d_in, d_in, B * S.n_in, da_mask->threshold, da_mask->scale, da_mask->key);
    }
    da = d_in;
  }
}

void Network::zero_grad() { std::fill(grads_.begin(), grads_.end(), 0.0f); }

// ----------------------------------------------------------------------------
// the optimizer pass and penalties

// The weight segment's rows split over threads: the pass is elementwise, so
// the split changes nothing, and at large layers it is bound by memory
// bandwidth, which one core alone does not saturate.
struct OptimizerJob {
  float *w, *m, *v;
  const float* g;
  int64_t cols;
  OptParams p;
};

static void optimizer_rows(void* ctx, int64_t begin, int64_t end) {
  const OptimizerJob& j = *static_cast<const OptimizerJob*>(ctx);
  int64_t o = begin * j.cols;
  kernels().optimizer_step(j.w + o, j.g + o, j.m + o, j.v + o, end - begin, j.cols, j.p);
}

OptParams Network::weight_step_params(size_t l) const {
  OptParams p = opt;
  double t = (double)step + 1.0;
  p.bias_correction1 = (float)(1.0 - std::pow((double)opt.beta1, t));
  p.bias_correction2 = (float)(1.0 - std::pow((double)opt.beta2, t));
  p.l1_proximal = l1_proximal;
  p.l1 = l1[l];
  p.l2 = l2[l];
  p.weight_decay = weight_decay[l];
  return p;
}

void Network::optimizer_step_impl(bool weights_stepped) {
  for (size_t l = 0; l < layers_.size(); l++) {
    const KernelTable& K = kernels();
    const LayerSpec& S = layers_[l];
    int64_t width = S.width();
    int64_t rest = width + (S.has_slopes() ? S.units : 0);  // bias, then slopes
    OptParams p = weight_step_params(l);
    int64_t o = w_off_[l];
    if (!weights_stepped) {
      OptimizerJob job{params_.data() + o, m_.data() + o, v_.data() + o, grads_.data() + o, width, p};
      parallel_for(S.n_in, std::max<int64_t>(1, ((int64_t)1 << 16) / width), optimizer_rows, &job);
    }
    // max-norm (Srivastava et al. 2014): each unit's incoming weights to norm <= c, after the update
    if (max_norm[l] > 0.0f) K.max_norm_columns(params_.data() + o, S.n_in, width, max_norm[l]);
    if (!penalize_bias) p.l1 = p.l2 = p.weight_decay = 0.0f;
    o = b_off_[l];
    K.optimizer_step(params_.data() + o, grads_.data() + o, m_.data() + o, v_.data() + o, 1, rest, p);
  }
  step++;
}

namespace {

// The figures of x (n): blocks of a fixed length, added in order, so that
// they do not depend on the thread count.
BlockStats stats_of(const float* x, int64_t n, std::vector<BlockStats>& blocks, bool squares_only = false) {
  constexpr int64_t kBlock = (int64_t)1 << 16;
  BlockStats total;
  if (n <= 0) return total;
  blocks.resize((n + kBlock - 1) / kBlock);
  kernels().block_stats(x, n, kBlock, squares_only, blocks.data());
  for (const BlockStats& b : blocks) {
    total.sum_squares += b.sum_squares;
    total.sum_abs += b.sum_abs;
    total.zeros += b.zeros;
  }
  return total;
}

}  // namespace

// A term only where its strength is not 0: an infinite sum times 0 would be NaN.
double Network::penalty_of(size_t l, const BlockStats& x) const {
  return (l2[l] != 0.0f ? 0.5 * l2[l] * x.sum_squares : 0.0) + (l1[l] != 0.0f ? l1[l] * x.sum_abs : 0.0);
}

Network::ParamStats Network::param_stats() const {
  ParamStats s;
  std::vector<BlockStats> blocks;
  for (size_t l = 0; l < layers_.size(); l++) {
    const LayerSpec& S = layers_[l];
    const int64_t n_w = S.n_in * S.width();
    const BlockStats w = stats_of(params_.data() + w_off_[l], n_w, blocks);
    const BlockStats b = stats_of(params_.data() + b_off_[l], S.width(), blocks);
    s.penalty += penalty_of(l, w) + (penalize_bias ? penalty_of(l, b) : 0.0);
    s.finite = s.finite && std::isfinite(w.sum_squares) && std::isfinite(b.sum_squares);
    if (s_off_[l] >= 0)
      s.finite = s.finite && std::isfinite(stats_of(params_.data() + s_off_[l], S.units, blocks, true).sum_squares);
    s.zero_fraction.push_back(n_w > 0 ? (double)w.zeros / (double)n_w : 0.0);
    s.grad_norm.push_back(std::sqrt(stats_of(grads_.data() + w_off_[l], n_w, blocks, true).sum_squares));
  }
  return s;
}

// The same sums as param_stats, of the penalised layers' parameters only.
double Network::penalty_value() const {
  double total = 0.0;
  std::vector<BlockStats> blocks;
  for (size_t l = 0; l < layers_.size(); l++) {
    if (l1[l] == 0.0f && l2[l] == 0.0f) continue;
    const LayerSpec& S = layers_[l];
    const bool squares_only = l1[l] == 0.0f;  // the sum of |x| unused
    const double w = penalty_of(l, stats_of(params_.data() + w_off_[l], S.n_in * S.width(), blocks, squares_only));
    total += w + (penalize_bias ? penalty_of(l, stats_of(params_.data() + b_off_[l], S.width(), blocks, squares_only))
                                : 0.0);
  }
  return total;
}

// ----------------------------------------------------------------------------
// the epoch loop

EpochResult Network::train_epoch(const float* X, const float* Y, const float* sample_weight,
                                 int64_t n, Loss loss, int64_t batch_size, bool shuffle,
                                 uint32_t epoch, const std::function<bool()>& keep_going) {
  const KernelTable& K = kernels();
  DenormalGuard denormals;
  EpochResult r;
  r.activity_sum.assign(layers_.size(), 0.0);
  int64_t n_in = n_inputs_, n_out = n_outputs();
  batch_size = std::max<int64_t>(1, std::min(batch_size, n));
  order_.resize(n);
  for (int64_t i = 0; i < n; i++) order_[i] = i;
  if (shuffle && n > 1) {
    // Fisher-Yates with draws from the shuffle stream of this epoch
    shuffle_bits_.resize(n);
    K.random_u32(shuffle_bits_.data(), n, RngKey{seed, kShuffleStream, epoch});
    for (int64_t i = n - 1; i > 0; i--) {
      int64_t j = (int64_t)(((uint64_t)shuffle_bits_[i] * (uint64_t)(i + 1)) >> 32);
      std::swap(order_[i], order_[j]);
    }
  }
  xb_.resize(batch_size * n_in);
  yb_.resize(batch_size * n_out);
  swb_.resize(batch_size);
  dout_.resize(batch_size * n_out);
  for (int64_t start = 0; start < n; start += batch_size) {
    if (!keep_going()) {
      r.interrupted = true;
      break;
    }
    int64_t B = std::min(batch_size, n - start);
    double wsum = 0.0;
    // A batch's rows lie anywhere in X: the lines of the rows kAhead further
    // on are asked for while this one is copied, so that their misses
    // overlap instead of coming one row at a time (the copy 40% faster on
    // 64 MB of data, the large net at 2 threads a few % faster).
    constexpr int64_t kAhead = 4;
    auto prefetch_row = [&](int64_t b) {
      const float* row = X + order_[start + b] * n_in;
      for (int64_t off = 0; off < n_in; off += 16) __builtin_prefetch(row + off);
    };
    for (int64_t b = 0; b < std::min(kAhead, B); b++) prefetch_row(b);
    for (int64_t b = 0; b < B; b++) {
      int64_t i = order_[start + b];
      if (b + kAhead < B) prefetch_row(b + kAhead);
      std::memcpy(xb_.data() + b * n_in, X + i * n_in, n_in * sizeof(float));
      std::memcpy(yb_.data() + b * n_out, Y + i * n_out, n_out * sizeof(float));
      swb_[b] = sample_weight ? sample_weight[i] : 1.0f;
      wsum += swb_[b];
    }
    const float* out = forward(train_ws, xb_.data(), B, true, seed, step);
    float grad_scale = wsum > 0.0 ? (float)(1.0 / wsum) : 0.0f;
    double batch_loss = K.loss(dout_.data(), out, yb_.data(), swb_.data(), B, n_out, loss, grad_scale);
    // past float32's range the outputs themselves are about to overflow
    if (!std::isfinite((float)batch_loss)) {
      r.diverged = true;
      break;
    }
    // The weights' update inside their gradients' products (gemm.h's fused
    // step), except on the epoch's last batch, whose gradients grads() keeps
    // for the fit's history (their norms).
    if (start + batch_size < n) {
      backward_and_step(train_ws, dout_.data());
    } else {
      backward(train_ws, dout_.data(), nullptr, /*accumulate=*/false);
      optimizer_step();
    }
    r.loss_sum += batch_loss;
    r.weight_sum += wsum;
    r.batches++;
    for (size_t l = 0; l < layers_.size(); l++) r.activity_sum[l] += train_ws.activity[l];
  }
  return r;
}

void Network::predict(const float* X, int64_t n, float* out, bool link, Loss loss, int mc_samples,
                      uint64_t mc_seed) const {
  const KernelTable& K = kernels();
  DenormalGuard denormals;
  Workspace ws;
  const int64_t block = kInferenceBlock;
  int64_t n_out = n_outputs();
  std::vector<float> sample;
  uint32_t pass = 0;
  for (int64_t start = 0; start < n; start += block) {
    int64_t B = std::min(block, n - start);
    float* o_block = out + start * n_out;
    if (mc_samples <= 0) {
      const float* o = forward(ws, X + start * n_inputs_, B, false, 0, 0);
      if (link)
        K.output_link(o_block, o, B, n_out, loss);
      else
        std::memcpy(o_block, o, B * n_out * sizeof(float));
      continue;
    }
    // Monte Carlo dropout: the average of mc_samples stochastic passes
    sample.resize(B * n_out);
    std::fill(o_block, o_block + B * n_out, 0.0f);
    for (int k = 0; k < mc_samples; k++) {
      const float* o = forward(ws, X + start * n_inputs_, B, true, mc_seed, pass++);
      if (link) {
        K.output_link(sample.data(), o, B, n_out, loss);
        o = sample.data();
      }
      for (int64_t i = 0; i < B * n_out; i++) o_block[i] += o[i];
    }
    for (int64_t i = 0; i < B * n_out; i++) o_block[i] /= (float)mc_samples;
  }
}

// The sums by the vector kernel and the count in integers: a float64 sum
// element by element is one long dependent chain (50 us an epoch for a
// 32-row batch of the digits net, a quarter of its minibatch; now 13 us).
void Network::accumulate_stats(const Workspace& ws, float threshold, double* sum_abs, double* active) const {
  const KernelTable& K = kernels();
  for (size_t l = 0; l + 1 < layers_.size(); l++) {
    const float* h = ws.out_ptr[l];
    const int64_t n = ws.batch_in_use * layers_[l].units;
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++) count += std::fabs(h[i]) > threshold;
    sum_abs[l] += K.sum_abs(h, n);
    active[l] += (double)count;
  }
}

void Network::stats_to_means(int64_t rows, double* mean_abs, double* active) const {
  for (size_t l = 0; l + 1 < layers_.size(); l++) {
    double count = (double)rows * layers_[l].units;
    mean_abs[l] /= count;
    active[l] /= count;
  }
}

void Network::hidden_stats(const float* X, int64_t n, float threshold, double* mean_abs, double* active) const {
  DenormalGuard denormals;
  Workspace ws;
  const int64_t block = kInferenceBlock;
  size_t hidden = layers_.size() - 1;
  std::fill(mean_abs, mean_abs + hidden, 0.0);
  std::fill(active, active + hidden, 0.0);
  for (int64_t start = 0; start < n; start += block) {
    int64_t B = std::min(block, n - start);
    forward(ws, X + start * n_inputs_, B, false, 0, 0);
    accumulate_stats(ws, threshold, mean_abs, active);
  }
  stats_to_means(n, mean_abs, active);
}

void Network::last_batch_stats(float threshold, double* mean_abs, double* active) const {
  size_t hidden = layers_.size() - 1;
  std::fill(mean_abs, mean_abs + hidden, 0.0);
  std::fill(active, active + hidden, 0.0);
  int64_t B = train_ws.batch_in_use;
  if (B == 0 || train_ws.out_ptr.empty() || !train_ws.out_ptr[0]) return;
  accumulate_stats(train_ws, threshold, mean_abs, active);
  stats_to_means(B, mean_abs, active);
}

double Network::mean_loss(const float* X, const float* Y, const float* sample_weight, int64_t n,
                          Loss loss) const {
  const KernelTable& K = kernels();
  DenormalGuard denormals;
  Workspace ws;
  const int64_t block = kInferenceBlock;
  int64_t n_out = n_outputs();
  double total = 0.0, wsum = 0.0;
  for (int64_t start = 0; start < n; start += block) {
    int64_t B = std::min(block, n - start);
    const float* o = forward(ws, X + start * n_inputs_, B, false, 0, 0);
    const float* w = sample_weight ? sample_weight + start : nullptr;
    total += K.loss(nullptr, o, Y + start * n_out, w, B, n_out, loss, 0.0f);
    if (w)
      for (int64_t b = 0; b < B; b++) wsum += w[b];
    else
      wsum += B;
  }
  return wsum > 0.0 ? total / wsum : 0.0;
}

}  // namespace dropkit
