// simd.h: the vector type each ISA compiles the kernels with.
//
// DK_VEC_WIDTH is set per translation unit by the build: 16 floats for
// AVX-512, 8 for AVX2, 1 for the scalar path. GCC's vector extensions turn the
// same source into zmm, ymm or plain float code.
#pragma once
#include <cstdint>
#include <cstring>
#if DK_VEC_WIDTH > 1
#include <immintrin.h>  // static inline intrinsics only: safe in every ISA unit
#endif

#ifndef DK_VEC_WIDTH
#error "DK_VEC_WIDTH must be set by the build"
#endif

namespace dropkit {
namespace DK_ISA {

constexpr int W = DK_VEC_WIDTH;
#if DK_VEC_WIDTH == 1
typedef float vf;
static inline vf vload(const float* p) { return *p; }
static inline void vstore(float* p, vf v) { *p = v; }
static inline vf vbroadcast(float s) { return s; }
#else
typedef float vf __attribute__((vector_size(4 * DK_VEC_WIDTH)));
typedef float vf_unaligned __attribute__((vector_size(4 * DK_VEC_WIDTH), aligned(4), may_alias));
static inline vf vload(const float* p) { return *reinterpret_cast<const vf_unaligned*>(p); }
static inline void vstore(float* p, vf v) { *reinterpret_cast<vf_unaligned*>(p) = v; }
// The intrinsic, not a loop filling lanes: GCC turns that loop into a chain
// of inserts that spills the GEMM's accumulators. The loop remains for a
// width built without its instruction set (a 16-wide build with AVX2 flags
// runs the AVX-512 source on a machine without AVX-512, for testing).
static inline vf vbroadcast(float s) {
#if DK_VEC_WIDTH == 16 && defined(__AVX512F__)
  return (vf)_mm512_set1_ps(s);
#elif DK_VEC_WIDTH == 8 && defined(__AVX__)
  return (vf)_mm256_set1_ps(s);
#else
  vf v;
  for (int i = 0; i < DK_VEC_WIDTH; i++) v[i] = s;
  return v;
#endif
}
#endif

// The sum of a vector's lanes, in a fixed order per ISA.
static inline float vsum(vf v) {
#if DK_VEC_WIDTH == 1
  return v;
#elif DK_VEC_WIDTH == 16 && defined(__AVX512F__)
  return _mm512_reduce_add_ps((__m512)v);
#else
  float s = 0.0f;
  for (int i = 0; i < W; i++) s += v[i];
  return s;
#endif
}

// sqrt, and 1/x to within one unit in the last place with AVX-512, three
// with AVX2 (a 12-bit estimate, not 14): the approximate reciprocal refined
// by one Newton step, where the vector divider, shared with sqrt and far
// slower than the multipliers, would bound the loop (Adam's step: 9-17%
// faster on 85,000 parameters in L2). Exact in scalar code.
static inline float vsqrt(float x) { return __builtin_sqrtf(x); }
static inline float vrecip(float x) { return 1.0f / x; }
#if DK_VEC_WIDTH > 1
static inline vf vsqrt(vf x) {
#if DK_VEC_WIDTH == 16 && defined(__AVX512F__)
  return (vf)_mm512_sqrt_ps((__m512)x);
#elif DK_VEC_WIDTH == 8 && defined(__AVX__)
  return (vf)_mm256_sqrt_ps((__m256)x);
#else
  for (int i = 0; i < DK_VEC_WIDTH; i++) x[i] = __builtin_sqrtf(x[i]);
  return x;
#endif
}
static inline vf vrecip(vf x) {
#if DK_VEC_WIDTH == 16 && defined(__AVX512F__)
  vf r = (vf)_mm512_rcp14_ps((__m512)x);
#elif DK_VEC_WIDTH == 8 && defined(__AVX__)
  vf r = (vf)_mm256_rcp_ps((__m256)x);
#else
  return 1.0f / x;
#endif
  return r * (2.0f - x * r);
}
#endif

// The scalar math below is always inlined: in a function as large as the
// GEMM's driver the compiler called exp_approx out of line, which kept the
// fused sigmoid, tanh and elu epilogues scalar, a call per element.
#define DK_MATH static inline __attribute__((always_inline))
DK_MATH uint32_t f2u(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
DK_MATH float u2f(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
static inline float fmaxf_(float a, float b) { return a > b ? a : b; }
static inline float fminf_(float a, float b) { return a < b ? a : b; }
static inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// exp(x) in float with only arithmetic and bit operations, so that loops
// calling it vectorise (Cephes expf: range reduction by ln 2, degree-6
// polynomial, exponent by integer add). Relative error about 2e-7; inputs are
// clamped to [-87.3, 88.3], so the result is never subnormal or infinite.
// The clamp is written so that a NaN passes through it (every comparison with
// NaN is false) and comes out NaN, as from std::exp.
DK_MATH float exp_approx(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.3f ? 88.3f : x;
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  float t = x * 1.44269504088896341f + shifter;
  float n = t - shifter;
  int32_t ni = (int32_t)(f2u(t) - f2u(shifter));
  float g = x - n * 0.693359375f;
  g = g - n * -2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * g + 1.3981999507e-3f;
  y = y * g + 8.3334519073e-3f;
  y = y * g + 4.1665795894e-2f;
  y = y * g + 1.6666665459e-1f;
  y = y * g + 5.0000001201e-1f;
  y = y * g * g + g + 1.0f;
  return y * u2f((uint32_t)(ni + 127) << 23);
}

DK_MATH float sigmoid_approx(float z) { return 1.0f / (1.0f + exp_approx(-z)); }

// log(x) for x >= FLT_MIN, +inf or NaN, the same way (Cephes logf: x = m 2^e
// with m in [sqrt(1/2), sqrt(2)), a degree-9 polynomial in m - 1). Relative
// error about 1e-7; +inf and NaN come out as they went in. Not for 0 or
// subnormals, which dropkit's kernels see as 0 anyway (denormals-are-zero).
DK_MATH float log_approx(float x) {
  const uint32_t u = f2u(x);
  float e = (float)((int32_t)(u >> 23) - 127);
  float m = u2f((u & 0x007fffffu) | 0x3f800000u);  // in [1, 2)
  if (m > 1.41421356f) {
    m *= 0.5f;
    e += 1.0f;
  }
  const float t = m - 1.0f, t2 = t * t;
  float y = 7.0376836292e-2f;
  y = y * t - 1.1514610310e-1f;
  y = y * t + 1.1676998740e-1f;
  y = y * t - 1.2420140846e-1f;
  y = y * t + 1.4249322787e-1f;
  y = y * t - 1.6668057665e-1f;
  y = y * t + 2.0000714765e-1f;
  y = y * t - 2.4999993993e-1f;
  y = y * t + 3.3333331174e-1f;
  y = y * t * t2 + e * -2.12194440e-4f - 0.5f * t2;
  const float r = t + y + e * 0.693359375f;
  return x <= 3.40282347e38f ? r : x;  // +inf and NaN pass through
}

// log(1 + x) for x >= 0, accurate for small x as well: log(u) (x / (u - 1))
// with u = 1 + x rounded, which cancels u's rounding error (Goldberg, 1991).
DK_MATH float log1p_approx(float x) {
  const float u = 1.0f + x;
  const float r = log_approx(u) * (x / (u - 1.0f));
  return u == 1.0f || !(x <= 3.40282347e38f) ? x : r;
}

}  // namespace DK_ISA
}  // namespace dropkit
