// dropout.h: the counter-based generator and dropout masks; compiled per ISA.
//
// Philox4x32-10 (Salmon et al. 2011, "Parallel random numbers: as easy as
// 1, 2, 3"): element i of a stream draws from block i/4, lane i%4, with the
// counter (i/4 low, i/4 high, stream, step) and the key (seed low, seed high).
// An element's bits depend only on (seed, stream, step, i), never on thread
// count, SIMD width or batch order, and a mask can be regenerated in backward
// instead of being stored.
//
// The vector paths run W blocks at once, one per lane (4W elements), and
// transpose the four output words into element order; large arrays are split
// over threads at multiples of 4W elements. philox4x32_10 is the scalar twin
// and handles what is left at the end.
#pragma once
#include "kernels/cpu.h"
#include "kernels/simd.h"
#include "kernels/threads.h"

namespace dropkit {
namespace DK_ISA {

struct Philox4 { uint32_t v[4]; };

constexpr uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;

static inline Philox4 philox4x32_10(uint64_t block, RngKey key) {
  uint32_t c0 = (uint32_t)block, c1 = (uint32_t)(block >> 32), c2 = key.stream, c3 = key.step;
  uint32_t k0 = (uint32_t)key.seed, k1 = (uint32_t)(key.seed >> 32);
  for (int round = 0; round < 10; round++) {
    uint64_t p0 = (uint64_t)kPhiloxM0 * c0;
    uint64_t p1 = (uint64_t)kPhiloxM1 * c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
    uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    c1 = (uint32_t)p1;
    c3 = (uint32_t)p0;
    c0 = n0;
    c2 = n2;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// Calls f(i, bits) for i in [begin, n), four elements per generator call.
template <typename F>
static inline void for_each_random(int64_t begin, int64_t n, RngKey key, F f) {
  for (int64_t blk = begin / 4; blk * 4 < n; blk++) {
    Philox4 r = philox4x32_10((uint64_t)blk, key);
    for (int lane = 0; lane < 4; lane++) {
      int64_t i = blk * 4 + lane;
      if (i >= begin && i < n) f(i, r.v[lane]);
    }
  }
}

// ----------------------------------------------------------------------------
// W blocks at once

#if DK_VEC_WIDTH > 1
typedef uint32_t vu32 __attribute__((vector_size(4 * DK_VEC_WIDTH)));
typedef int32_t vi32 __attribute__((vector_size(4 * DK_VEC_WIDTH)));
typedef uint64_t vu64 __attribute__((vector_size(8 * DK_VEC_WIDTH)));
typedef uint32_t vu32_unaligned __attribute__((vector_size(4 * DK_VEC_WIDTH), aligned(4), may_alias));
typedef uint8_t vu8 __attribute__((vector_size(DK_VEC_WIDTH)));
constexpr int64_t kVecElems = 4 * W;  // elements per vector step

// hi, lo = the 64-bit products m * a, lane by lane: even lanes' products by
// one 32x32->64 multiply, odd lanes' by another, blended back into place.
static inline void mulhilo(vu32 a, uint32_t m, vu32& hi, vu32& lo) {
#if DK_VEC_WIDTH == 8 && defined(__AVX2__)
  const __m256i va = (__m256i)a, vm = _mm256_set1_epi32((int)m);
  const __m256i even = _mm256_mul_epu32(va, vm);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(va, 32), vm);
  lo = (vu32)_mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
  hi = (vu32)_mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
#else  // portable, slower: a width built without its instruction set
  vu64 p = __builtin_convertvector(a, vu64) * (uint64_t)m;
  hi = __builtin_convertvector(p >> 32, vu32);
  lo = __builtin_convertvector(p, vu32);
#endif
}

// out[q] lane e = element 4*block0 + q*W + e: block block0 + (q*W + e)/4, word e%4.
// The ten round keys of a seed, broadcast once per call rather than per block.
struct PhiloxKeys {
  vu32 k0[10], k1[10];
};

static inline PhiloxKeys philox_keys(uint64_t seed) {
  PhiloxKeys keys;
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int round = 0; round < 10; round++) {
    keys.k0[round] = (vu32){} + k0;
    keys.k1[round] = (vu32){} + k1;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  return keys;
}

#if DK_VEC_WIDTH == 16 && defined(__AVX512F__)
// Eight blocks per 512-bit vector, each word in the low half of a 64-bit
// lane: the 32x32->64 multiply then reads its operands and leaves hi and lo
// where the next round wants them, with no blending per round (the high
// halves carry junk that no multiply reads and the final packing drops).
static inline void philox_vec8(__m512i block, RngKey key, const PhiloxKeys& keys, __m512i& o0, __m512i& o1) {
  const __m512i m0 = _mm512_set1_epi64(kPhiloxM0), m1 = _mm512_set1_epi64(kPhiloxM1);
  __m512i c0 = block, c1 = _mm512_srli_epi64(block, 32);
  __m512i c2 = _mm512_set1_epi64(key.stream), c3 = _mm512_set1_epi64(key.step);
  for (int round = 0; round < 10; round++) {
    __m512i p0 = _mm512_mul_epu32(c0, m0), p1 = _mm512_mul_epu32(c2, m1);
    // 0x96: a ^ b ^ c
    __m512i n0 = _mm512_ternarylogic_epi32(_mm512_srli_epi64(p1, 32), c1, (__m512i)keys.k0[round], 0x96);
    __m512i n2 = _mm512_ternarylogic_epi32(_mm512_srli_epi64(p0, 32), c3, (__m512i)keys.k1[round], 0x96);
    c1 = p1;
    c3 = p0;
    c0 = n0;
    c2 = n2;
  }
  // words 0, 1 and 2, 3 of each block side by side, then the blocks in order:
  // lo holds blocks 0 2 4 6 (one per 128-bit lane), hi blocks 1 3 5 7
  __m512i w01 = _mm512_mask_blend_epi32((__mmask16)0xAAAA, c0, _mm512_slli_epi64(c1, 32));
  __m512i w23 = _mm512_mask_blend_epi32((__mmask16)0xAAAA, c2, _mm512_slli_epi64(c3, 32));
  __m512i lo = _mm512_unpacklo_epi64(w01, w23), hi = _mm512_unpackhi_epi64(w01, w23);
  o0 = _mm512_permutex2var_epi64(lo, _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11), hi);
  o1 = _mm512_permutex2var_epi64(lo, _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15), hi);
}

static inline void philox_vec(uint64_t block0, RngKey key, const PhiloxKeys& keys, vu32 out[4]) {
  const __m512i first = _mm512_add_epi64(_mm512_set1_epi64((long long)block0), _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
  __m512i o[4];
  philox_vec8(first, key, keys, o[0], o[1]);
  philox_vec8(_mm512_add_epi64(first, _mm512_set1_epi64(8)), key, keys, o[2], o[3]);
  for (int q = 0; q < 4; q++) out[q] = (vu32)o[q];
}
#elif DK_VEC_WIDTH == 8 && defined(__AVX2__)
// Four blocks per 256-bit vector, each word in the low half of a 64-bit lane
// (as philox_vec8 above), and two such vectors a round at a time: one
// vector's rounds are a chain of dependent multiplies, and two in step keep
// the multipliers busy.
static inline void philox_vec(uint64_t block0, RngKey key, const PhiloxKeys& keys, vu32 out[4]) {
  const __m256i m0 = _mm256_set1_epi64x(kPhiloxM0), m1 = _mm256_set1_epi64x(kPhiloxM1);
  const __m256i first = _mm256_add_epi64(_mm256_set1_epi64x((long long)block0), _mm256_setr_epi64x(0, 1, 2, 3));
  __m256i c0[2], c1[2], c2[2], c3[2];
  for (int h = 0; h < 2; h++) {
    c0[h] = _mm256_add_epi64(first, _mm256_set1_epi64x(4 * h));
    c1[h] = _mm256_srli_epi64(c0[h], 32);
    c2[h] = _mm256_set1_epi64x(key.stream);
    c3[h] = _mm256_set1_epi64x(key.step);
  }
  for (int round = 0; round < 10; round++) {
    const __m256i k0 = (__m256i)keys.k0[round], k1 = (__m256i)keys.k1[round];
    for (int h = 0; h < 2; h++) {
      __m256i p0 = _mm256_mul_epu32(c0[h], m0), p1 = _mm256_mul_epu32(c2[h], m1);
      __m256i n0 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), c1[h]), k0);
      __m256i n2 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), c3[h]), k1);
      c1[h] = p1;
      c3[h] = p0;
      c0[h] = n0;
      c2[h] = n2;
    }
  }
  // words 0, 1 and 2, 3 of each block side by side; lo then holds blocks 0
  // and 2 (one per 128-bit lane), hi blocks 1 and 3
  for (int h = 0; h < 2; h++) {
    __m256i w01 = _mm256_blend_epi32(c0[h], _mm256_slli_epi64(c1[h], 32), 0xAA);
    __m256i w23 = _mm256_blend_epi32(c2[h], _mm256_slli_epi64(c3[h], 32), 0xAA);
    __m256i lo = _mm256_unpacklo_epi64(w01, w23), hi = _mm256_unpackhi_epi64(w01, w23);
    out[2 * h] = (vu32)_mm256_permute2x128_si256(lo, hi, 0x20);
    out[2 * h + 1] = (vu32)_mm256_permute2x128_si256(lo, hi, 0x31);
  }
}
#else
static inline void philox_vec(uint64_t block0, RngKey key, const PhiloxKeys& keys, vu32 out[4]) {
  vu32 iota;
  for (int e = 0; e < W; e++) iota[e] = (uint32_t)e;
  const uint32_t lo0 = (uint32_t)block0;
  vu32 c0 = lo0 + iota;
  // a carry into the high word where the low word wrapped
  vu32 c1 = (uint32_t)(block0 >> 32) - (vu32)(c0 < lo0);
  vu32 c2 = (vu32){} + key.stream, c3 = (vu32){} + key.step;
  for (int round = 0; round < 10; round++) {
    vu32 hi0, lo0v, hi1, lo1;
    mulhilo(c0, kPhiloxM0, hi0, lo0v);
    mulhilo(c2, kPhiloxM1, hi1, lo1);
    vu32 n0 = hi1 ^ c1 ^ keys.k0[round];
    vu32 n2 = hi0 ^ c3 ^ keys.k1[round];
    c1 = lo1;
    c3 = lo0v;
    c0 = n0;
    c2 = n2;
  }
  // A 4 x W transpose from words-by-block to element order, written with
  // shuffles that stay inside 128-bit lanes (unpack lo/hi of 32- and 64-bit
  // pairs) until the last step, which moves whole 128-bit blocks.
  // Within each 128-bit lane t0..t3 hold pairs of words, u0..u3 whole blocks:
  // u_r's 128-bit lane c is block 4c + r (W = 8: lanes 0, 1 are blocks r, 4 + r).
#if DK_VEC_WIDTH == 8
  const vi32 unpack_lo32 = {0, 8, 1, 9, 4, 12, 5, 13}, unpack_hi32 = {2, 10, 3, 11, 6, 14, 7, 15};
  const vi32 unpack_lo64 = {0, 1, 8, 9, 4, 5, 12, 13}, unpack_hi64 = {2, 3, 10, 11, 6, 7, 14, 15};
#elif DK_VEC_WIDTH == 16
  const vi32 unpack_lo32 = {0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29};
  const vi32 unpack_hi32 = {2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31};
  const vi32 unpack_lo64 = {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29};
  const vi32 unpack_hi64 = {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31};
#else
#error "philox_vec: no shuffle masks for this width"
#endif
  vu32 t0 = __builtin_shuffle(c0, c1, unpack_lo32), t1 = __builtin_shuffle(c0, c1, unpack_hi32);
  vu32 t2 = __builtin_shuffle(c2, c3, unpack_lo32), t3 = __builtin_shuffle(c2, c3, unpack_hi32);
  vu32 u0 = __builtin_shuffle(t0, t2, unpack_lo64), u1 = __builtin_shuffle(t0, t2, unpack_hi64);
  vu32 u2 = __builtin_shuffle(t1, t3, unpack_lo64), u3 = __builtin_shuffle(t1, t3, unpack_hi64);
#if DK_VEC_WIDTH == 8
  // out0 = blocks 0, 1; out1 = 2, 3; out2 = 4, 5; out3 = 6, 7
  const vi32 low_lanes = {0, 1, 2, 3, 8, 9, 10, 11}, high_lanes = {4, 5, 6, 7, 12, 13, 14, 15};
  out[0] = __builtin_shuffle(u0, u1, low_lanes);
  out[1] = __builtin_shuffle(u2, u3, low_lanes);
  out[2] = __builtin_shuffle(u0, u1, high_lanes);
  out[3] = __builtin_shuffle(u2, u3, high_lanes);
#else
  // v0 = blocks 0 4 1 5, v1 = 2 6 3 7, v2 = 8 12 9 13, v3 = 10 14 11 15; then
  // out_q = blocks 4q .. 4q + 3
  const vi32 lanes01 = {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23};
  const vi32 lanes23 = {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31};
  const vi32 lanes02 = {0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27};
  const vi32 lanes13 = {4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31};
  vu32 v0 = __builtin_shuffle(u0, u1, lanes01), v1 = __builtin_shuffle(u2, u3, lanes01);
  vu32 v2 = __builtin_shuffle(u0, u1, lanes23), v3 = __builtin_shuffle(u2, u3, lanes23);
  out[0] = __builtin_shuffle(v0, v1, lanes02);
  out[1] = __builtin_shuffle(v0, v1, lanes13);
  out[2] = __builtin_shuffle(v2, v3, lanes02);
  out[3] = __builtin_shuffle(v2, v3, lanes13);
#endif
}
#endif  // philox_vec by width
#else
constexpr int64_t kVecElems = 4;
#endif

// ----------------------------------------------------------------------------
// the kernels: what each does to one element, and the loops over a range

enum class RandomOp : int { bits, apply, apply_recording, mask };

struct RandomJob {
  RandomOp op;
  void* out;
  const float* in;
  int64_t n;
  uint32_t threshold;
  float scale;
  RngKey key;
  uint8_t* kept = nullptr;  // apply_recording: 1 where the element was kept, else 0
};

static inline void random_scalar(const RandomJob& j, int64_t begin, int64_t end) {
  float* out = static_cast<float*>(j.out);
  const float* in = j.in;
  const uint32_t thr = j.threshold;
  const float scale = j.scale;
  switch (j.op) {
    case RandomOp::bits:
      for_each_random(begin, end, j.key, [&](int64_t i, uint32_t bits) { static_cast<uint32_t*>(j.out)[i] = bits; });
      break;
    case RandomOp::apply:
      for_each_random(begin, end, j.key, [&](int64_t i, uint32_t bits) { out[i] = bits >= thr ? in[i] * scale : 0.0f; });
      break;
    case RandomOp::apply_recording:
      for_each_random(begin, end, j.key, [&](int64_t i, uint32_t bits) {
        out[i] = bits >= thr ? in[i] * scale : 0.0f;
        j.kept[i] = bits >= thr;
      });
      break;
    case RandomOp::mask:
      for_each_random(begin, end, j.key, [&](int64_t i, uint32_t bits) { out[i] = bits >= thr ? scale : 0.0f; });
      break;
  }
}

// Elements [begin, end) of the stream, at any offset (a row of a block, say):
// vector steps, the ragged ends included. One loop per operation (OP a
// template argument): with a switch inside one loop, adding a fourth
// operation slowed the others (the epochs of nets that draw their masks
// again in backward by 8-14%).
template <RandomOp OP>
static void random_range_of(const RandomJob& j, int64_t begin, int64_t end) {
#if DK_VEC_WIDTH > 1
  const vu32 thr = (vu32){} + j.threshold;
  const vf scale = vbroadcast(j.scale), zero = vbroadcast(0.0f);
  float* out = static_cast<float*>(j.out);
  const float* in = j.in;
  uint8_t* kept = j.kept;
  const PhiloxKeys keys = philox_keys(j.key.seed);
  // Elements [lo, hi) of the step at i0: the whole step is drawn and only
  // the lanes in the range used, the same bits as drawing them four at a
  // time. At 2 threads the fused dropout of a layer 512 wide goes in spans
  // of 32 columns, inside the steps: drawn four at a time, with a branch
  // per element, they made the epoch 44% slower than without dropout; now 3%.
  auto partial_step = [&](int64_t i0, int64_t lo, int64_t hi) {
    vu32 step_bits[4];
    philox_vec((uint64_t)(i0 / 4), j.key, keys, step_bits);
    uint32_t bits[kVecElems];
    std::memcpy(bits, step_bits, sizeof bits);
    // no branch on the bits (at a rate of 0.5, half of them mispredicted):
    // in is read whether kept or not, and the loop is vectorised
    const uint32_t threshold = j.threshold;
    const float s = j.scale;
    for (int64_t i = lo; i < hi; i++) {
      const uint32_t b = bits[i - i0];
      if constexpr (OP == RandomOp::bits) {
        static_cast<uint32_t*>(j.out)[i] = b;
      } else if constexpr (OP == RandomOp::mask) {
        out[i] = b >= threshold ? s : 0.0f;
      } else {
        const float v = in[i] * s;
        out[i] = b >= threshold ? v : 0.0f;
        if constexpr (OP == RandomOp::apply_recording) kept[i] = b >= threshold;
      }
    }
  };
  int64_t i = (begin + kVecElems - 1) / kVecElems * kVecElems;  // the first whole step
  if (begin < i) partial_step(i - kVecElems, begin, imin(i, end));
  for (; i + kVecElems <= end; i += kVecElems) {
    vu32 bits[4];
    philox_vec((uint64_t)(i / 4), j.key, keys, bits);
    for (int q = 0; q < 4; q++) {
      int64_t at = i + q * W;
      vi32 keep = (vi32)(bits[q] >= thr);
      if (OP == RandomOp::bits) {
        *reinterpret_cast<vu32_unaligned*>(static_cast<uint32_t*>(j.out) + at) = bits[q];
      } else if (OP == RandomOp::mask) {
        vstore(out + at, keep ? scale : zero);
      } else {
        vstore(out + at, keep ? vload(in + at) * scale : zero);
        if (OP == RandomOp::apply_recording) {
          // lanes narrowed in registers: a store per lane would cost more than the generator
          const vu8 k = __builtin_convertvector(keep & 1, vu8);
          std::memcpy(kept + at, &k, sizeof k);
        }
      }
    }
  }
  if (i < end) partial_step(i, i, end);
#else
  random_scalar(j, begin, end);
#endif
}

static void random_range(const RandomJob& j, int64_t begin, int64_t end) {
  switch (j.op) {
    case RandomOp::bits:
      return random_range_of<RandomOp::bits>(j, begin, end);
    case RandomOp::apply:
      return random_range_of<RandomOp::apply>(j, begin, end);
    case RandomOp::apply_recording:
      return random_range_of<RandomOp::apply_recording>(j, begin, end);
    case RandomOp::mask:
      return random_range_of<RandomOp::mask>(j, begin, end);
  }
}

static void random_chunks(void* ctx, int64_t begin, int64_t end) {
  const RandomJob& j = *static_cast<const RandomJob*>(ctx);
  random_range(j, begin * kVecElems, imin(end * kVecElems, j.n));
}

// Splits over threads past about 30 microseconds of work.
static void random_run(const RandomJob& j) {
  if (j.n <= 0) return;
  int64_t steps = (j.n + kVecElems - 1) / kVecElems;
  parallel_for(steps, ((int64_t)1 << 16) / kVecElems, random_chunks, const_cast<RandomJob*>(&j));
}

static void random_u32(uint32_t* out, int64_t n, RngKey key) {
  random_run(RandomJob{RandomOp::bits, out, nullptr, n, 0, 0.0f, key});
}

static void dropout_apply(float* out, const float* in, int64_t n, uint32_t threshold,
                          float scale, RngKey key) {
  random_run(RandomJob{RandomOp::apply, out, in, n, threshold, scale, key});
}

// out[i] = keep(i) ? in[i] * scale : 0 for i in [begin, end), on this thread:
// a part of a block whose other parts other calls do.
static inline void dropout_span(float* out, const float* in, int64_t begin, int64_t end, const DropoutSpec& d) {
  random_range(RandomJob{RandomOp::apply, out, in, end, d.threshold, d.scale, d.key}, begin, end);
}

static void dropout_mask(float* mask, int64_t n, uint32_t threshold, float scale, RngKey key) {
  random_run(RandomJob{RandomOp::mask, mask, nullptr, n, threshold, scale, key});
}

// dropout_apply that also records which elements it kept, in kept (n): for
// DropConnect, whose backward pass reads the mask again over every weight;
// a byte an element costs less to write and read than the generator's ten
// rounds do to run again.
static void dropout_apply_recording(float* out, uint8_t* kept, const float* in, int64_t n, uint32_t threshold,
                                    float scale, RngKey key) {
  random_run(RandomJob{RandomOp::apply_recording, out, in, n, threshold, scale, key, kept});
}

struct KeptJob {
  float* out;
  const float* in;
  const uint8_t* kept;
  float scale;
  bool accumulate;
};

// out (n) (+)= kept ? in * scale : 0; out may be in.
static inline void apply_kept_span(float* out, const float* in, const uint8_t* __restrict kept, int64_t n,
                                   float scale, bool accumulate) {
  // in is read whether kept or not: a load under the condition keeps the loop scalar
  if (accumulate)
    for (int64_t i = 0; i < n; i++) {
      const float v = in[i] * scale;
      out[i] += kept[i] ? v : 0.0f;
    }
  else
    for (int64_t i = 0; i < n; i++) {
      const float v = in[i] * scale;
      out[i] = kept[i] ? v : 0.0f;
    }
}

static void kept_span(void* ctx, int64_t begin, int64_t end) {
  const KeptJob& j = *static_cast<const KeptJob*>(ctx);
  apply_kept_span(j.out + begin, j.in + begin, j.kept + begin, end - begin, j.scale, j.accumulate);
}

// out[i] (+)= kept[i] ? in[i] * scale : 0, through a mask dropout_apply_recording
// wrote: DropConnect routes the weight gradient through its forward's mask.
// out may be in.
static void apply_kept(float* out, const float* in, const uint8_t* kept, int64_t n, float scale, bool accumulate) {
  KeptJob job{out, in, kept, scale, accumulate};
  parallel_for(n, (int64_t)1 << 16, kept_span, &job);
}

}  // namespace DK_ISA
}  // namespace dropkit
