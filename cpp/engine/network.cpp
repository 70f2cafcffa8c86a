// network.cpp: forward, backward, the optimizer pass and the epoch loop.
#include "engine/network.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

namespace dropkit {

// Streams of the counter-based generator: layer * 8 + purpose for masks; the
// shuffle has its own stream, keyed by the epoch.
static constexpr uint32_t kShuffleStream = 0xFFFFFFF0u;

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
  l2.assign(layers_.size(), 0.0f);
  weight_decay.assign(layers_.size(), 0.0f);
}

// ----------------------------------------------------------------------------
// forward and backward

void Network::ensure(Workspace& ws, int64_t B) const {
  size_t L = layers_.size();
  if (ws.x_in.size() != L) {
    ws = Workspace();
    ws.x_in.resize(L); ws.z.resize(L); ws.a.resize(L); ws.argmax.resize(L);
    ws.dz.resize(L); ws.d_in.resize(L);
    ws.in_ptr.assign(L, nullptr); ws.out_ptr.assign(L, nullptr);
  }
  if (ws.batch >= B) return;
  for (size_t l = 0; l < L; l++) {
    const LayerSpec& S = layers_[l];
    if (S.input_dropout > 0.0f) ws.x_in[l].resize(B * S.n_in);
    ws.z[l].resize(B * S.width());
    if (S.pieces > 1 || S.act != Act::identity) ws.a[l].resize(B * S.units);
    if (S.pieces > 1) ws.argmax[l].resize(B * S.units);
  }
  ws.batch = B;
}

const float* Network::forward(Workspace& ws, const float* X, int64_t B, bool training) const {
  const KernelTable& K = kernels();
  ensure(ws, B);
  ws.batch_in_use = B;
  const float* x = X;
  for (size_t l = 0; l < layers_.size(); l++) {
    const LayerSpec& S = layers_[l];
    const float* W = params_.data() + w_off_[l];
    const float* b = params_.data() + b_off_[l];
    float alpha = 1.0f;
    if (S.input_dropout > 0.0f) {
      if (training) {
        // inverted dropout scales the kept units now; standard scales at prediction
        float scale = mode_ == DropoutMode::inverted ? 1.0f / (1.0f - S.input_dropout) : 1.0f;
        K.dropout_apply(ws.x_in[l].data(), x, B * S.n_in, drop_threshold(S.input_dropout), scale,
                        dropout_key((int)l));
        x = ws.x_in[l].data();
      } else if (mode_ == DropoutMode::standard) {
        alpha = 1.0f - S.input_dropout;  // the weight-scaling rule, folded into the product
      }
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
      ep.ld_act = S.width();
      ep.act = ActParams{S.act, S.act_param, s_off_[l] >= 0 ? params_.data() + s_off_[l] : nullptr};
    }
    K.gemm(B, S.width(), S.n_in, alpha, x, S.n_in, false, W, S.width(), false, 0.0f, z, S.width(), &ep);
    if (!elementwise) K.maxout_forward(a, ws.argmax[l].data(), z, B, S.units, S.pieces);
    ws.out_ptr[l] = a;
    x = a;
  }
  return x;
}

void Network::backward(Workspace& ws, const float* dout, float* dX) {
  const KernelTable& K = kernels();
  int64_t B = ws.batch_in_use;
  const float* da = dout;
  for (int l = (int)layers_.size() - 1; l >= 0; l--) {
    const LayerSpec& S = layers_[l];
    int64_t width = S.width();
    ws.dz[l].resize(B * width);
    float* dz = ws.dz[l].data();
    const float* z = ws.z[l].data();
    if (S.pieces > 1) {
      K.maxout_backward(dz, da, ws.argmax[l].data(), B, S.units, S.pieces);
    } else {
      float* dslope = s_off_[l] >= 0 ? grads_.data() + s_off_[l] : nullptr;
      ActParams p{S.act, S.act_param, s_off_[l] >= 0 ? params_.data() + s_off_[l] : nullptr};
      K.act_backward(dz, dslope, da, z, ws.out_ptr[l], B, width, p);
    }
    // db += sum_b dz;  dW (n_in, width) += x_in^T (n_in, B) dz (B, width)
    K.column_sums(grads_.data() + b_off_[l], dz, B, width);
    K.gemm(S.n_in, width, B, 1.0f, ws.in_ptr[l], S.n_in, true, dz, width, false, 1.0f,
           grads_.data() + w_off_[l], width, nullptr);
    if (l == 0 && !dX) break;
    // d_in (B, n_in) = dz (B, width) W^T (width, n_in), then back through the dropout mask
    float* d_in = l == 0 ? dX : (ws.d_in[l].resize(B * S.n_in), ws.d_in[l].data());
    K.gemm(B, S.n_in, width, 1.0f, dz, width, false, params_.data() + w_off_[l], width, true, 0.0f,
           d_in, S.n_in, nullptr);
    if (S.input_dropout > 0.0f) {
      // regenerating the mask from the counter-based stream is cheaper than storing it
      float scale = mode_ == DropoutMode::inverted ? 1.0f / (1.0f - S.input_dropout) : 1.0f;
      K.dropout_apply(d_in, d_in, B * S.n_in, drop_threshold(S.input_dropout), scale,
                      dropout_key(l));
    }
    da = d_in;
  }
}

void Network::zero_grad() { std::fill(grads_.begin(), grads_.end(), 0.0f); }

// ----------------------------------------------------------------------------
// the optimizer pass and penalties

void Network::optimizer_step() {
  const KernelTable& K = kernels();
  OptParams p = opt;
  double t = (double)step + 1.0;
  p.bias_correction1 = (float)(1.0 - std::pow((double)opt.beta1, t));
  p.bias_correction2 = (float)(1.0 - std::pow((double)opt.beta2, t));
  for (size_t l = 0; l < layers_.size(); l++) {
    const LayerSpec& S = layers_[l];
    int64_t nw = S.n_in * S.width();
    int64_t rest = S.width() + (S.has_slopes() ? S.units : 0);  // bias, then slopes
    p.l2 = l2[l];
    p.weight_decay = weight_decay[l];
    int64_t o = w_off_[l];
    K.optimizer_step(params_.data() + o, grads_.data() + o, m_.data() + o, v_.data() + o, nw, p);
    if (!penalize_bias) p.l2 = p.weight_decay = 0.0f;
    o = b_off_[l];
    K.optimizer_step(params_.data() + o, grads_.data() + o, m_.data() + o, v_.data() + o, rest, p);
  }
  step++;
}

double Network::penalty_value() const {
  const KernelTable& K = kernels();
  double total = 0.0;
  for (size_t l = 0; l < layers_.size(); l++) {
    if (l2[l] == 0.0f) continue;
    const LayerSpec& S = layers_[l];
    double sq = K.sum_squares(params_.data() + w_off_[l], S.n_in * S.width());
    if (penalize_bias) sq += K.sum_squares(params_.data() + b_off_[l], S.width());
    total += 0.5 * l2[l] * sq;
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
    for (int64_t b = 0; b < B; b++) {
      int64_t i = order_[start + b];
      std::memcpy(xb_.data() + b * n_in, X + i * n_in, n_in * sizeof(float));
      std::memcpy(yb_.data() + b * n_out, Y + i * n_out, n_out * sizeof(float));
      swb_[b] = sample_weight ? sample_weight[i] : 1.0f;
      wsum += swb_[b];
    }
    const float* out = forward(train_ws, xb_.data(), B, true);
    float grad_scale = wsum > 0.0 ? (float)(1.0 / wsum) : 0.0f;
    double batch_loss = K.loss(dout_.data(), out, yb_.data(), swb_.data(), B, n_out, loss, grad_scale);
    // past float32's range the outputs themselves are about to overflow
    if (!std::isfinite((float)batch_loss)) {
      r.diverged = true;
      break;
    }
    zero_grad();
    backward(train_ws, dout_.data(), nullptr);
    optimizer_step();
    r.loss_sum += batch_loss;
    r.weight_sum += wsum;
    r.batches++;
  }
  return r;
}

void Network::predict(const float* X, int64_t n, float* out, bool link, Loss loss) const {
  const KernelTable& K = kernels();
  DenormalGuard denormals;
  Workspace ws;
  const int64_t block = 1024;
  int64_t n_out = n_outputs();
  for (int64_t start = 0; start < n; start += block) {
    int64_t B = std::min(block, n - start);
    const float* o = forward(ws, X + start * n_inputs_, B, false);
    if (link)
      K.output_link(out + start * n_out, o, B, n_out, loss);
    else
      std::memcpy(out + start * n_out, o, B * n_out * sizeof(float));
  }
}

double Network::mean_loss(const float* X, const float* Y, const float* sample_weight, int64_t n,
                          Loss loss) const {
  const KernelTable& K = kernels();
  DenormalGuard denormals;
  Workspace ws;
  const int64_t block = 1024;
  int64_t n_out = n_outputs();
  double total = 0.0, wsum = 0.0;
  for (int64_t start = 0; start < n; start += block) {
    int64_t B = std::min(block, n - start);
    const float* o = forward(ws, X + start * n_inputs_, B, false);
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
