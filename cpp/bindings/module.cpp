// module.cpp: the Python face of the C++ core (dropkit._core). The only file
// that includes pybind11: it checks shapes, takes pointers, releases the GIL
// around the kernels and turns std::invalid_argument into ValueError. No
// arithmetic here. Arrays the kernels only read may be converted; arrays they
// write are taken as C-contiguous float32 without conversion.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "engine/network.h"
#include "kernels/cpu.h"
#include "kernels/threads.h"

namespace py = pybind11;
using namespace dropkit;

using FloatIn = py::array_t<float, py::array::c_style | py::array::forcecast>;
using FloatOut = py::array_t<float, py::array::c_style>;

namespace {

// ----------------------------------------------------------------------------
// argument checks

[[noreturn]] void bad(const std::string& msg) { throw std::invalid_argument(msg); }

void require_ndim(const py::array& a, int ndim, const char* name) {
  if (a.ndim() != ndim)
    bad(std::string(name) + ": expected a " + std::to_string(ndim) + "-d array, got " +
        std::to_string(a.ndim()) + "-d");
}

void require_writable(FloatOut& a, const char* name) {
  if (!a.writeable()) bad(std::string(name) + ": array is read-only");
}

Act parse_act(const std::string& name) {
  if (name == "identity") return Act::identity;
  if (name == "sigmoid" || name == "logistic") return Act::sigmoid;
  if (name == "tanh") return Act::tanh;
  if (name == "relu") return Act::relu;
  if (name == "leaky_relu") return Act::leaky_relu;
  if (name == "prelu") return Act::prelu;
  if (name == "elu") return Act::elu;
  bad("activation: unknown name '" + name + "'");
}

Loss parse_loss(const std::string& name) {
  if (name == "softmax_ce") return Loss::softmax_ce;
  if (name == "binary_ce") return Loss::binary_ce;
  if (name == "squared") return Loss::squared;
  bad("loss: unknown name '" + name + "'");
}

Optimizer parse_optimizer(const std::string& name) {
  if (name == "sgd") return Optimizer::sgd;
  if (name == "adagrad") return Optimizer::adagrad;
  if (name == "rmsprop") return Optimizer::rmsprop;
  if (name == "adam" || name == "adamw") return Optimizer::adam;
  bad("solver: unknown name '" + name + "'");
}

void check_rate(double rate, const char* name) {
  if (!(rate >= 0.0 && rate < 1.0)) bad(std::string(name) + ": must be in [0, 1), got " + std::to_string(rate));
}

// A view of C++ memory that keeps its owner alive.
py::array_t<float> view(py::handle owner, float* data, std::vector<py::ssize_t> shape) {
  std::vector<py::ssize_t> strides(shape.size());
  py::ssize_t s = sizeof(float);
  for (int i = (int)shape.size() - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
  return py::array_t<float>(shape, strides, data, owner);
}

// ----------------------------------------------------------------------------
// functional kernels

py::tuple dense_forward(FloatIn x, FloatIn w, py::object b, const std::string& act, float param,
                        py::object slopes) {
  require_ndim(x, 2, "x");
  require_ndim(w, 2, "w");
  int64_t B = x.shape(0), IN = x.shape(1), OUT = w.shape(1);
  if (w.shape(0) != IN) bad("w: expected " + std::to_string(IN) + " rows to match x's columns");
  FloatIn bias, sl;
  if (!b.is_none()) {
    bias = b.cast<FloatIn>();
    if (bias.ndim() != 1 || bias.shape(0) != OUT) bad("b: expected shape (" + std::to_string(OUT) + ",)");
  }
  Act kind = parse_act(act);
  if (kind == Act::prelu) {
    if (slopes.is_none()) bad("slopes: prelu needs one slope per unit");
    sl = slopes.cast<FloatIn>();
    if (sl.ndim() != 1 || sl.shape(0) != OUT) bad("slopes: expected shape (" + std::to_string(OUT) + ",)");
  }
  FloatOut z({B, OUT}), a({B, OUT});
  Epilogue ep;
  ep.bias = b.is_none() ? nullptr : bias.data();
  ep.act_out = a.mutable_data();
  ep.act = ActParams{kind, param, kind == Act::prelu ? sl.data() : nullptr};
  const float *xp = x.data(), *wp = w.data();
  float* zp = z.mutable_data();
  {
    py::gil_scoped_release nogil;
    DenormalGuard denormals;
    kernels().gemm(B, OUT, IN, 1.0f, xp, IN, false, wp, OUT, false, 0.0f, zp, OUT, &ep);
  }
  return py::make_tuple(z, a);
}

// True when the bytes of x and y overlap.
bool share_memory(const py::array& x, const py::array& y) {
  const char *x0 = static_cast<const char*>(x.data()), *y0 = static_cast<const char*>(y.data());
  return x0 < y0 + y.nbytes() && y0 < x0 + x.nbytes();
}

// out, when given, receives the product in place (as torch.matmul's out=):
// no allocation, and no page faults on first touching a fresh one.
FloatOut gemm(FloatIn a, FloatIn b, bool trans_a, bool trans_b, float alpha, py::object out) {
  require_ndim(a, 2, "a");
  require_ndim(b, 2, "b");
  int64_t M = trans_a ? a.shape(1) : a.shape(0), K = trans_a ? a.shape(0) : a.shape(1);
  int64_t KB = trans_b ? b.shape(1) : b.shape(0), N = trans_b ? b.shape(0) : b.shape(1);
  if (K != KB) bad("b: inner dimensions do not match (" + std::to_string(K) + " vs " + std::to_string(KB) + ")");
  FloatOut c;
  if (out.is_none()) {
    c = FloatOut({M, N});
  } else {
    if (!py::isinstance<FloatOut>(out)) bad("out: expected a C-contiguous float32 array");
    c = out.cast<FloatOut>();
    if (c.ndim() != 2 || c.shape(0) != M || c.shape(1) != N)
      bad("out: expected shape (" + std::to_string(M) + ", " + std::to_string(N) + ")");
    require_writable(c, "out");
    if (share_memory(c, a) || share_memory(c, b)) bad("out: must not share memory with a or b");
  }
  const float *ap = a.data(), *bp = b.data();
  float* cp = c.mutable_data();
  int64_t lda = a.shape(1), ldb = b.shape(1);
  {
    py::gil_scoped_release nogil;
    DenormalGuard denormals;
    kernels().gemm(M, N, K, alpha, ap, lda, trans_a, bp, ldb, trans_b, 0.0f, cp, N, nullptr);
  }
  return c;
}

ActParams act_params(const std::string& act, float param, py::object slopes, int64_t N, FloatIn& keep) {
  Act kind = parse_act(act);
  ActParams p{kind, param, nullptr};
  if (kind == Act::prelu) {
    if (slopes.is_none()) bad("slopes: prelu needs one slope per unit");
    keep = slopes.cast<FloatIn>();
    if (keep.ndim() != 1 || keep.shape(0) != N) bad("slopes: expected shape (" + std::to_string(N) + ",)");
    p.slopes = keep.data();
  }
  return p;
}

FloatOut activation_forward(FloatIn z, const std::string& act, float param, py::object slopes) {
  require_ndim(z, 2, "z");
  int64_t B = z.shape(0), N = z.shape(1);
  FloatIn keep;
  ActParams p = act_params(act, param, slopes, N, keep);
  FloatOut a({B, N});
  const float* zp = z.data();
  float* ap = a.mutable_data();
  {
    py::gil_scoped_release nogil;
    DenormalGuard denormals;
    kernels().act_forward(ap, zp, B, N, p);
  }
  return a;
}

py::tuple activation_backward(FloatIn da, FloatIn z, FloatIn a, const std::string& act, float param,
                              py::object slopes) {
  require_ndim(da, 2, "da");
  int64_t B = da.shape(0), N = da.shape(1);
  if (z.ndim() != 2 || z.shape(0) != B || z.shape(1) != N) bad("z: must have the shape of da");
  if (a.ndim() != 2 || a.shape(0) != B || a.shape(1) != N) bad("a: must have the shape of da");
  FloatIn keep;
  ActParams p = act_params(act, param, slopes, N, keep);
  FloatOut dz({B, N}), dslope({N});
  std::fill_n(dslope.mutable_data(), N, 0.0f);
  const float *dap = da.data(), *zp = z.data(), *ap = a.data();
  float *dzp = dz.mutable_data(), *dsp = dslope.mutable_data();
  {
    py::gil_scoped_release nogil;
    DenormalGuard denormals;
    kernels().act_backward(dzp, p.kind == Act::prelu ? dsp : nullptr, dap, zp, ap, B, N, p, nullptr, nullptr, nullptr);
  }
  return py::make_tuple(dz, dslope);
}

py::tuple maxout_forward(FloatIn z, int k) {
  require_ndim(z, 2, "z");
  if (k < 1) bad("k: must be at least 1");
  int64_t B = z.shape(0);
  if (z.shape(1) % k != 0) bad("z: the number of columns must be a multiple of k");
  int64_t U = z.shape(1) / k;
  FloatOut a({B, U});
  py::array_t<int32_t> argmax({B, U});
  const float* zp = z.data();
  float* ap = a.mutable_data();
  int32_t* ip = argmax.mutable_data();
  {
    py::gil_scoped_release nogil;
    kernels().maxout_forward(ap, ip, zp, B, U, k);
  }
  return py::make_tuple(a, argmax);
}

FloatOut maxout_backward(FloatIn da, py::array_t<int32_t, py::array::c_style | py::array::forcecast> argmax, int k) {
  require_ndim(da, 2, "da");
  if (k < 1) bad("k: must be at least 1");
  int64_t B = da.shape(0), U = da.shape(1);
  if (argmax.ndim() != 2 || argmax.shape(0) != B || argmax.shape(1) != U) bad("argmax: must have the shape of da");
  const int32_t* ip = argmax.data();
  for (int64_t i = 0; i < B * U; i++)
    if (ip[i] < 0 || ip[i] >= k) bad("argmax: entries must be in [0, k)");
  FloatOut dz({B, U * k});
  const float* dap = da.data();
  float* dzp = dz.mutable_data();
  {
    py::gil_scoped_release nogil;
    kernels().maxout_backward(dzp, dap, ip, B, U, k);
  }
  return dz;
}

RngKey rng_key(uint64_t seed, uint32_t stream, uint32_t step) { return RngKey{seed, stream, step}; }

FloatOut dropout_mask(int64_t n, double rate, double scale, uint64_t seed, uint32_t stream, uint32_t step) {
  if (n < 0) bad("n: must be non-negative");
  check_rate(rate, "rate");
  FloatOut mask({n});
  float* mp = mask.mutable_data();
  {
    py::gil_scoped_release nogil;
    DenormalGuard denormals;
    kernels().dropout_mask(mp, n, drop_threshold(rate), (float)scale, rng_key(seed, stream, step));
  }
  return mask;
}

FloatOut dropout_apply(FloatIn x, double rate, double scale, uint64_t seed, uint32_t stream, uint32_t step) {
  check_rate(rate, "rate");
  std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
  FloatOut out(shape);
  const float* xp = x.data();
  float* op = out.mutable_data();
  int64_t n = x.size();
  {
    py::gil_scoped_release nogil;
    DenormalGuard denormals;
    kernels().dropout_apply(op, xp, n, drop_threshold(rate), (float)scale, rng_key(seed, stream, step));
  }
  return out;
}

py::array_t<uint32_t> random_u32(int64_t n, uint64_t seed, uint32_t stream, uint32_t step) {
  if (n < 0) bad("n: must be non-negative");
  py::array_t<uint32_t> out({n});
  uint32_t* op = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    kernels().random_u32(op, n, rng_key(seed, stream, step));
  }
  return out;
}

const float* optional_weights(py::object sw, int64_t B, FloatIn& keep) {
  if (sw.is_none()) return nullptr;
  keep = sw.cast<FloatIn>();
  if (keep.ndim() != 1 || keep.shape(0) != B) bad("sample_weight: expected shape (" + std::to_string(B) + ",)");
  return keep.data();
}

py::tuple loss(FloatIn z, FloatIn y, py::object sw, const std::string& kind, float grad_scale) {
  require_ndim(z, 2, "z");
  int64_t B = z.shape(0), C = z.shape(1);
  if (y.ndim() != 2 || y.shape(0) != B || y.shape(1) != C) bad("y: must have the shape of z");
  Loss k = parse_loss(kind);
  FloatIn keep;
  const float* w = optional_weights(sw, B, keep);
  FloatOut dz({B, C});
  const float *zp = z.data(), *yp = y.data();
  float* dzp = dz.mutable_data();
  double total;
  {
    py::gil_scoped_release nogil;
    DenormalGuard denormals;
    total = kernels().loss(dzp, zp, yp, w, B, C, k, grad_scale);
  }
  return py::make_tuple(total, dz);
}

FloatOut output_link(FloatIn z, const std::string& kind) {
  require_ndim(z, 2, "z");
  int64_t B = z.shape(0), C = z.shape(1);
  Loss k = parse_loss(kind);
  FloatOut out({B, C});
  const float* zp = z.data();
  float* op = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    DenormalGuard denormals;
    kernels().output_link(op, zp, B, C, k);
  }
  return out;
}

void optimizer_step(FloatOut w, FloatIn g, FloatOut m, FloatOut v, const std::string& kind, float lr,
                    float momentum, bool nesterov, float beta1, float beta2, float eps, float rho,
                    float l2, float weight_decay, int64_t t, float l1, bool l1_proximal) {
  int64_t n = w.size();
  require_writable(w, "w");
  require_writable(m, "m");
  require_writable(v, "v");
  if (g.size() != n || m.size() != n || v.size() != n) bad("g: w, g, m and v must have the same size");
  if (t < 1) bad("t: the step count starts at 1");
  OptParams p;
  p.kind = parse_optimizer(kind);
  p.lr = lr; p.momentum = momentum; p.nesterov = nesterov;
  p.beta1 = beta1; p.beta2 = beta2; p.eps = eps; p.rho = rho;
  p.l2 = l2; p.weight_decay = weight_decay; p.l1 = l1; p.l1_proximal = l1_proximal;
  p.bias_correction1 = (float)(1.0 - std::pow((double)beta1, (double)t));
  p.bias_correction2 = (float)(1.0 - std::pow((double)beta2, (double)t));
  float *wp = w.mutable_data(), *mp = m.mutable_data(), *vp = v.mutable_data();
  const float* gp = g.data();
  {
    py::gil_scoped_release nogil;
    DenormalGuard denormals;
    kernels().optimizer_step(wp, gp, mp, vp, 1, n, p);
  }
}

ActivityParams parse_activity(const std::string& kind, float alpha, float rho) {
  ActivityParams p;
  if (kind == "l1") p.kind = ActivityKind::l1;
  else if (kind == "kl") p.kind = ActivityKind::kl;
  else if (kind == "student_t") p.kind = ActivityKind::student_t;
  else if (kind == "none") p.kind = ActivityKind::none;
  else bad("activity_penalty: unknown kind '" + kind + "'");
  if (!(alpha >= 0.0f)) bad("activity_penalty: strength must be non-negative");
  if (p.kind == ActivityKind::kl && !(rho > 0.0f && rho < 1.0f)) bad("rho: must be in (0, 1)");
  p.alpha = alpha;
  p.rho = rho;
  return p;
}

// (value, dvalue/dh) of an activity penalty on h (B, N), for checks against numpy.
py::tuple activity_penalty(FloatIn h, const std::string& kind, float alpha, float rho) {
  require_ndim(h, 2, "h");
  int64_t B = h.shape(0), N = h.shape(1);
  if (B < 1) bad("h: no rows");
  ActivityParams p = parse_activity(kind, alpha, rho);
  std::vector<float> col_mean(N), zeros(B * N, 0.0f);
  FloatOut grad({B, N});
  const float* hp = h.data();
  float* gp = grad.mutable_data();
  double value;
  {
    py::gil_scoped_release nogil;
    value = kernels().activity_value(hp, B, N, p, col_mean.data());
    p.inv_batch = 1.0f / (float)B;
    p.col_mean = col_mean.data();
    kernels().act_backward(gp, nullptr, zeros.data(), hp, hp, B, N, ActParams{}, &p, nullptr, nullptr);
  }
  return py::make_tuple(value, grad);
}

// ----------------------------------------------------------------------------
// Network

std::unique_ptr<Network> make_network(int64_t n_inputs, py::list layers, const std::string& mode,
                                      uint64_t seed) {
  std::vector<LayerSpec> specs;
  for (py::handle h : layers) {
    py::dict d = py::reinterpret_borrow<py::dict>(h);
    LayerSpec S;
    S.units = d["units"].cast<int64_t>();
    std::string act = d["activation"].cast<std::string>();
    if (act == "maxout") {
      S.act = Act::identity;
      S.pieces = d["pieces"].cast<int>();
      if (S.pieces < 2) bad("pieces: maxout needs at least 2 pieces per unit");
    } else {
      S.act = parse_act(act);
    }
    S.act_param = d.contains("param") ? d["param"].cast<float>() : 0.0f;
    S.input_dropout = d.contains("dropout") ? d["dropout"].cast<float>() : 0.0f;
    check_rate(S.input_dropout, "dropout");
    S.dropconnect = d.contains("dropconnect") ? d["dropconnect"].cast<float>() : 0.0f;
    check_rate(S.dropconnect, "dropconnect");
    if (d.contains("activity") && !d["activity"].is_none()) {
      py::dict a = d["activity"].cast<py::dict>();
      S.activity = parse_activity(a["kind"].cast<std::string>(), a["alpha"].cast<float>(),
                                  a.contains("rho") ? a["rho"].cast<float>() : 0.0f);
    }
    specs.push_back(S);
  }
  DropoutMode m;
  if (mode == "inverted") m = DropoutMode::inverted;
  else if (mode == "standard") m = DropoutMode::standard;
  else bad("dropout_mode: expected 'inverted' or 'standard', got '" + mode + "'");
  return std::make_unique<Network>(n_inputs, std::move(specs), m, seed);
}

void check_batch(const FloatIn& X, const Network& net, const char* name) {
  require_ndim(X, 2, name);
  if (X.shape(1) != net.n_inputs())
    bad(std::string(name) + ": expected " + std::to_string(net.n_inputs()) + " features, got " +
        std::to_string(X.shape(1)));
}

// Asks Python for pending signals (Ctrl-C) at most every 50 ms; a raised
// signal ends the epoch after the current step, leaving the weights whole.
struct InterruptCheck {
  std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();
  bool raised = false;
  bool operator()() {
    auto now = std::chrono::steady_clock::now();
    if (now - last < std::chrono::milliseconds(50)) return true;
    last = now;
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) {
      raised = true;
      return false;
    }
    return true;
  }
};

py::dict train_epoch(Network& net, FloatIn X, FloatIn Y, py::object sw, const std::string& loss_name,
                     int64_t batch_size, bool shuffle, uint32_t epoch) {
  check_batch(X, net, "X");
  int64_t n = X.shape(0);
  if (n < 1) bad("X: no samples");
  if (Y.ndim() != 2 || Y.shape(0) != n || Y.shape(1) != net.n_outputs())
    bad("Y: expected shape (" + std::to_string(n) + ", " + std::to_string(net.n_outputs()) + ")");
  if (batch_size < 1) bad("batch_size: must be at least 1");
  Loss k = parse_loss(loss_name);
  FloatIn keep;
  const float* w = optional_weights(sw, n, keep);
  InterruptCheck check;
  std::function<bool()> keep_going = [&check] { return check(); };
  EpochResult r;
  {
    py::gil_scoped_release nogil;
    r = net.train_epoch(X.data(), Y.data(), w, n, k, batch_size, shuffle, epoch, keep_going);
  }
  if (check.raised) throw py::error_already_set();
  py::dict out;
  out["loss_sum"] = r.loss_sum;
  out["weight_sum"] = r.weight_sum;
  out["batches"] = r.batches;
  out["diverged"] = r.diverged;
  out["activity_sum"] = r.activity_sum;
  return out;
}

// X refused unless every value is finite (predict's check_finite): the
// estimators hand a float32 array straight to the engine, and this pass
// costs less than numpy's check (for one sample, a sixth of predicting it).
void refuse_non_finite(const FloatIn& X) {
  const float* x = X.data();
  uint32_t non_finite = 0;
  for (py::ssize_t i = 0, n = X.size(); i < n; i++) {
    uint32_t bits;
    std::memcpy(&bits, x + i, sizeof bits);
    non_finite |= (bits & 0x7f800000u) == 0x7f800000u;  // all exponent bits set: NaN or infinity
  }
  if (non_finite) bad("X: contains NaN or infinity");
}

FloatOut predict(const Network& net, FloatIn X, py::object link, int mc_samples, uint64_t mc_seed,
                 bool check_finite) {
  check_batch(X, net, "X");
  if (check_finite) refuse_non_finite(X);
  if (mc_samples < 0) bad("mc_samples: must be non-negative");
  int64_t n = X.shape(0);
  FloatOut out({n, net.n_outputs()});
  bool use_link = !link.is_none();
  Loss k = use_link ? parse_loss(link.cast<std::string>()) : Loss::squared;
  const float* xp = X.data();
  float* op = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    net.predict(xp, n, op, use_link, k, mc_samples, mc_seed);
  }
  return out;
}

// Class probabilities in float64 from the network's float32 logits, as numpy
// would compute them from those logits: a softmax over each row (shifted by
// its maximum), or per output the logistic function; with two_columns (a
// binary target, one output) the columns 1 - p and p. One call rather than
// numpy's half a dozen, each of which costs about a microsecond: for a single
// sample, as much as the network itself.
py::array_t<double> predict_proba(const Network& net, FloatIn X, const std::string& loss, bool two_columns,
                                  bool check_finite) {
  check_batch(X, net, "X");
  if (check_finite) refuse_non_finite(X);
  Loss k = parse_loss(loss);
  if (k == Loss::squared) bad("loss: squared error has no probabilities");
  const int64_t n = X.shape(0), C = net.n_outputs();
  if (two_columns && (k != Loss::binary_ce || C != 1)) bad("two_columns: only for one binary output");
  py::array_t<double> out({n, two_columns ? (int64_t)2 : C});
  std::vector<float> z((size_t)(n * C));
  const float* xp = X.data();
  double* op = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    net.predict(xp, n, z.data(), false, Loss::squared, 0, 0);
    for (int64_t i = 0; i < n; i++) {
      const float* z_i = z.data() + i * C;
      if (k == Loss::softmax_ce) {
        double zmax = z_i[0], sum = 0.0;
        for (int64_t c = 1; c < C; c++) zmax = std::max(zmax, (double)z_i[c]);
        double* o_i = op + i * C;
        for (int64_t c = 0; c < C; c++) sum += o_i[c] = std::exp((double)z_i[c] - zmax);
        for (int64_t c = 0; c < C; c++) o_i[c] /= sum;
      } else if (two_columns) {
        double p = 1.0 / (1.0 + std::exp(-(double)z_i[0]));
        op[2 * i] = 1.0 - p;
        op[2 * i + 1] = p;
      } else {
        for (int64_t c = 0; c < C; c++) op[i * C + c] = 1.0 / (1.0 + std::exp(-(double)z_i[c]));
      }
    }
  }
  return out;
}

// ----------------------------------------------------------------------------
// sparse coding (OMP)

// Dense codes (n, m), or the padded per-signal lists (atoms, coefs, count)
// from which the Python layer assembles a CSR matrix.
py::object omp_encode(FloatIn X, FloatIn D, int k, py::object tol, const std::string& output) {
  require_ndim(X, 2, "X");
  require_ndim(D, 2, "D");
  int64_t n = X.shape(0), d = X.shape(1), m = D.shape(0);
  if (m < 1) bad("D: the dictionary has no atoms");
  if (D.shape(1) != d)
    bad("D: atoms have " + std::to_string(D.shape(1)) + " features but X has " + std::to_string(d));
  if (d < 1) bad("X: signals have no features");
  if (k < 1 || k > m) bad("k: expected 1 <= k <= n_atoms = " + std::to_string(m) + ", got " + std::to_string(k));
  double tol_value = -1.0;
  if (!tol.is_none()) {
    tol_value = tol.cast<double>();
    if (!(tol_value >= 0.0)) bad("tol: expected a non-negative squared residual norm");
  }
  bool dense = output == "dense";
  if (!dense && output != "lists") bad("output: expected 'dense' or 'lists', got '" + output + "'");
  const float *xp = X.data(), *dp = D.data();
  auto run = [&](float* dense_out, int32_t* atoms_out, float* coefs_out, int32_t* count_out) {
    bool ok;
    {
      py::gil_scoped_release nogil;
      DenormalGuard denormals;
      ok = kernels().omp_encode(dense_out, atoms_out, coefs_out, count_out, xp, dp, n, d, m, k, tol_value);
    }
    if (!ok) {
      PyErr_SetString(PyExc_MemoryError,
                      "omp_encode: not enough memory for the Gram matrix (n_atoms^2 floats) and the work space "
                      "of each thread (about min(k, n_features) * n_atoms floats)");
      throw py::error_already_set();
    }
  };
  if (dense) {
    FloatOut codes({n, m});
    run(codes.mutable_data(), nullptr, nullptr, nullptr);
    return codes;
  }
  py::array_t<int32_t> atoms({n, (int64_t)k}), count({n});
  FloatOut coefs({n, (int64_t)k});
  run(nullptr, atoms.mutable_data(), coefs.mutable_data(), count.mutable_data());
  return py::make_tuple(atoms, coefs, count);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "dropkit's C++ core: SIMD kernels and the training engine";

  m.def("simd_backend", &simd_backend, "The instruction set the kernels run on.");
  m.def("available_isas", &available_isas, "Instruction sets this CPU can run, best first.");
  m.def("set_isa", &set_isa, py::arg("name"));
  m.def("set_num_threads", [](int n) {
    if (n < 1) bad("n_threads: must be at least 1");
    set_num_threads(n);
  }, py::arg("n"));
  m.def("get_num_threads", &num_threads);
  m.def("default_num_threads", &default_num_threads);

  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("alpha") = 1.0f, py::arg("out") = py::none());
  m.def("dense_forward", &dense_forward, py::arg("x"), py::arg("w"), py::arg("b"),
        py::arg("activation"), py::arg("param") = 0.0f, py::arg("slopes") = py::none());
  m.def("activation_forward", &activation_forward, py::arg("z"), py::arg("activation"),
        py::arg("param") = 0.0f, py::arg("slopes") = py::none());
  m.def("activation_backward", &activation_backward, py::arg("da"), py::arg("z"), py::arg("a"),
        py::arg("activation"), py::arg("param") = 0.0f, py::arg("slopes") = py::none());
  m.def("maxout_forward", &maxout_forward, py::arg("z"), py::arg("k"));
  m.def("maxout_backward", &maxout_backward, py::arg("da"), py::arg("argmax"), py::arg("k"));
  m.def("dropout_mask", &dropout_mask, py::arg("n"), py::arg("rate"), py::arg("scale"),
        py::arg("seed"), py::arg("stream") = 0, py::arg("step") = 0);
  m.def("dropout_apply", &dropout_apply, py::arg("x"), py::arg("rate"), py::arg("scale"),
        py::arg("seed"), py::arg("stream") = 0, py::arg("step") = 0);
  m.def("random_u32", &random_u32, py::arg("n"), py::arg("seed"), py::arg("stream") = 0,
        py::arg("step") = 0);
  m.def("loss", &loss, py::arg("z"), py::arg("y"), py::arg("sample_weight"), py::arg("kind"),
        py::arg("grad_scale"));
  m.def("output_link", &output_link, py::arg("z"), py::arg("kind"));
  m.def("optimizer_step", &optimizer_step, py::arg("w").noconvert(), py::arg("g"),
        py::arg("m").noconvert(), py::arg("v").noconvert(), py::arg("kind"), py::arg("lr"),
        py::arg("momentum") = 0.0f, py::arg("nesterov") = false, py::arg("beta1") = 0.9f,
        py::arg("beta2") = 0.999f, py::arg("eps") = 1e-8f, py::arg("rho") = 0.99f,
        py::arg("l2") = 0.0f, py::arg("weight_decay") = 0.0f, py::arg("t") = 1, py::arg("l1") = 0.0f,
        py::arg("l1_proximal") = true);
  m.def("sum_abs", [](FloatIn x) {
    py::gil_scoped_release nogil;
    return kernels().sum_abs(x.data(), x.size());
  }, py::arg("x"));
  m.def("sum_squares", [](FloatIn x) {
    py::gil_scoped_release nogil;
    return kernels().sum_squares(x.data(), x.size());
  }, py::arg("x"));
  m.def("all_finite", [](FloatOut x) {
    py::gil_scoped_release nogil;
    return kernels().all_finite(x.data(), x.size());
  }, py::arg("x").noconvert());
  m.def("activity_penalty", &activity_penalty, py::arg("h"), py::arg("kind"), py::arg("alpha"),
        py::arg("rho") = 0.0f);
  m.def("max_norm_columns", [](FloatOut W, float c) {
    require_ndim(W, 2, "W");
    require_writable(W, "W");
    if (!(c > 0.0f)) bad("max_norm: must be positive");
    int64_t rows = W.shape(0), cols = W.shape(1);
    float* wp = W.mutable_data();
    py::gil_scoped_release nogil;
    kernels().max_norm_columns(wp, rows, cols, c);
  }, py::arg("W").noconvert(), py::arg("c"));

  py::class_<Network>(m, "Network")
      .def(py::init(&make_network), py::arg("n_inputs"), py::arg("layers"),
           py::arg("dropout_mode") = "inverted", py::arg("seed") = 0)
      .def_property_readonly("n_inputs", &Network::n_inputs)
      .def_property_readonly("n_outputs", &Network::n_outputs)
      .def_property_readonly("n_params", &Network::n_params)
      .def_property_readonly("n_layers", [](const Network& n) { return (int)n.layers().size(); })
      .def_readwrite("seed", &Network::seed)
      .def_readwrite("step", &Network::step)
      .def_property_readonly("params", [](py::object self) {
        Network& n = self.cast<Network&>();
        return view(self, n.params(), {n.n_params()});
      })
      .def_property_readonly("grads", [](py::object self) {
        Network& n = self.cast<Network&>();
        return view(self, n.grads(), {n.n_params()});
      })
      .def_property_readonly("opt_m", [](py::object self) {
        Network& n = self.cast<Network&>();
        return view(self, n.opt_m(), {n.n_params()});
      })
      .def_property_readonly("opt_v", [](py::object self) {
        Network& n = self.cast<Network&>();
        return view(self, n.opt_v(), {n.n_params()});
      })
      .def("weight", [](py::object self, int l) {
        Network& n = self.cast<Network&>();
        if (l < 0 || l >= (int)n.layers().size()) throw py::index_error("layer index out of range");
        const LayerSpec& S = n.layers()[l];
        return view(self, n.params() + n.weight_offset(l), {S.n_in, S.width()});
      }, py::arg("layer"))
      .def("bias", [](py::object self, int l) {
        Network& n = self.cast<Network&>();
        if (l < 0 || l >= (int)n.layers().size()) throw py::index_error("layer index out of range");
        return view(self, n.params() + n.bias_offset(l), {n.layers()[l].width()});
      }, py::arg("layer"))
      .def("slopes", [](py::object self, int l) -> py::object {
        Network& n = self.cast<Network&>();
        if (l < 0 || l >= (int)n.layers().size()) throw py::index_error("layer index out of range");
        if (n.slope_offset(l) < 0) return py::none();
        return view(self, n.params() + n.slope_offset(l), {n.layers()[l].units});
      }, py::arg("layer"))
      .def("segment", [](const Network& n, int l) {
        // (weight offset, weight size, bias offset, bias + slope size) in the flat buffers
        const LayerSpec& S = n.layers().at(l);
        return py::make_tuple(n.weight_offset(l), S.n_in * S.width(), n.bias_offset(l),
                              S.width() + (S.has_slopes() ? S.units : 0));
      }, py::arg("layer"))
      .def("set_optimizer", [](Network& n, const std::string& kind, float lr, float momentum,
                               bool nesterov, float beta1, float beta2, float eps, float rho) {
        n.opt.kind = parse_optimizer(kind);
        n.opt.lr = lr; n.opt.momentum = momentum; n.opt.nesterov = nesterov;
        n.opt.beta1 = beta1; n.opt.beta2 = beta2; n.opt.eps = eps; n.opt.rho = rho;
      }, py::arg("kind"), py::arg("lr"), py::arg("momentum") = 0.0f, py::arg("nesterov") = false,
         py::arg("beta1") = 0.9f, py::arg("beta2") = 0.999f, py::arg("eps") = 1e-8f, py::arg("rho") = 0.99f)
      .def_property("lr", [](const Network& n) { return n.opt.lr; },
                    [](Network& n, float lr) { n.opt.lr = lr; })
      .def("set_penalties", [](Network& n, std::vector<float> l1, std::vector<float> l2, std::vector<float> wd,
                               std::vector<float> max_norm, bool l1_proximal, bool penalize_bias) {
        size_t L = n.layers().size();
        if (l1.size() != L) bad("l1: expected one value per layer");
        if (l2.size() != L) bad("l2: expected one value per layer");
        if (wd.size() != L) bad("weight_decay: expected one value per layer");
        if (max_norm.size() != L) bad("max_norm: expected one value per layer");
        n.l1 = l1; n.l2 = l2; n.weight_decay = wd; n.max_norm = max_norm;
        n.l1_proximal = l1_proximal; n.penalize_bias = penalize_bias;
      }, py::arg("l1"), py::arg("l2"), py::arg("weight_decay"), py::arg("max_norm"),
         py::arg("l1_proximal") = true, py::arg("penalize_bias") = false)
      .def("penalty_value", &Network::penalty_value)
      .def("param_stats", [](const Network& n) {
        Network::ParamStats s;
        {
          py::gil_scoped_release nogil;
          s = n.param_stats();
        }
        py::dict d;
        d["penalty"] = s.penalty;
        d["finite"] = s.finite;
        d["zero_fraction"] = s.zero_fraction;
        d["grad_norm"] = s.grad_norm;
        return d;
      })
      .def("forward", [](Network& n, FloatIn X, bool training) {
        check_batch(X, n, "X");
        int64_t B = X.shape(0);
        FloatOut out({B, n.n_outputs()});
        const float* xp = X.data();
        float* op = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          DenormalGuard denormals;
          // backward reads the input again: keep a copy that outlives the caller's array
          n.train_ws.input.assign(xp, xp + B * n.n_inputs());
          const float* o = n.forward(n.train_ws, n.train_ws.input.data(), B, training, n.seed, n.step);
          std::copy(o, o + B * n.n_outputs(), op);
        }
        return out;
      }, py::arg("X"), py::arg("training") = false)
      .def("backward", [](Network& n, FloatIn dout) {
        int64_t B = n.train_ws.batch_in_use;
        if (B == 0 || n.train_ws.in_ptr.empty() || !n.train_ws.in_ptr[0])
          throw std::logic_error("backward: call forward first");
        if (dout.ndim() != 2 || dout.shape(0) != B || dout.shape(1) != n.n_outputs())
          bad("dout: expected shape (" + std::to_string(B) + ", " + std::to_string(n.n_outputs()) + ")");
        FloatOut dX({B, n.n_inputs()});
        const float* dp = dout.data();
        float* xp = dX.mutable_data();
        {
          py::gil_scoped_release nogil;
          DenormalGuard denormals;
          n.backward(n.train_ws, dp, xp);
        }
        return dX;
      }, py::arg("dout"))
      .def("zero_grad", &Network::zero_grad)
      .def("step_optimizer", [](Network& n) {
        py::gil_scoped_release nogil;
        DenormalGuard denormals;
        n.optimizer_step();
      })
      .def("train_epoch", &train_epoch, py::arg("X"), py::arg("Y"), py::arg("sample_weight"),
           py::arg("loss"), py::arg("batch_size"), py::arg("shuffle"), py::arg("epoch"))
      .def("predict", &predict, py::arg("X"), py::arg("link") = py::none(), py::arg("mc_samples") = 0,
           py::arg("mc_seed") = 0, py::arg("check_finite") = false)
      .def("predict_proba", &predict_proba, py::arg("X"), py::arg("loss"), py::arg("two_columns") = false,
           py::arg("check_finite") = false)
      .def("hidden_stats", [](const Network& n, FloatIn X, float threshold) {
        check_batch(X, n, "X");
        size_t hidden = n.layers().size() - 1;
        std::vector<double> mean_abs(hidden), active(hidden);
        {
          py::gil_scoped_release nogil;
          n.hidden_stats(X.data(), X.shape(0), threshold, mean_abs.data(), active.data());
        }
        return py::make_tuple(mean_abs, active);
      }, py::arg("X"), py::arg("threshold"))
      .def_property_readonly("last_activity", [](const Network& n) {
        // each layer's activity penalty on the last training-mode forward pass
        return n.train_ws.activity;
      })
      .def("last_batch_stats", [](const Network& n, float threshold) {
        size_t hidden = n.layers().size() - 1;
        std::vector<double> mean_abs(hidden), active(hidden);
        n.last_batch_stats(threshold, mean_abs.data(), active.data());
        return py::make_tuple(mean_abs, active);
      }, py::arg("threshold"))
      .def("mean_loss", [](const Network& n, FloatIn X, FloatIn Y, py::object sw, const std::string& loss) {
        check_batch(X, n, "X");
        int64_t N = X.shape(0);
        if (Y.ndim() != 2 || Y.shape(0) != N || Y.shape(1) != n.n_outputs()) bad("Y: shape does not match X and the outputs");
        FloatIn keep;
        const float* w = optional_weights(sw, N, keep);
        Loss k = parse_loss(loss);
        py::gil_scoped_release nogil;
        return n.mean_loss(X.data(), Y.data(), w, N, k);
      }, py::arg("X"), py::arg("Y"), py::arg("sample_weight"), py::arg("loss"));

  m.def("omp_encode", &omp_encode, py::arg("X"), py::arg("D"), py::arg("k"), py::arg("tol") = py::none(),
        py::arg("output") = "dense",
        "Batch OMP-k codes of the rows of X over the unit-norm rows of D (see sparse_coding.py).");
}
