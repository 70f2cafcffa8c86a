// dropout.h: the counter-based generator and dropout masks; compiled per ISA.
//
// Philox4x32-10 (Salmon et al. 2011, "Parallel random numbers: as easy as
// 1, 2, 3"): element i of a stream draws from block i/4, lane i%4, with the
// counter (i/4 low, i/4 high, stream, step) and the key (seed low, seed high).
// An element's bits depend only on (seed, stream, step, i), never on thread
// count, SIMD width or batch order, and a mask can be regenerated in backward
// instead of being stored.
#pragma once
#include "kernels/cpu.h"
#include "kernels/simd.h"

namespace dropkit {
namespace DK_ISA {

struct Philox4 { uint32_t v[4]; };

static inline Philox4 philox4x32_10(uint64_t block, RngKey key) {
  uint32_t c0 = (uint32_t)block, c1 = (uint32_t)(block >> 32), c2 = key.stream, c3 = key.step;
  uint32_t k0 = (uint32_t)key.seed, k1 = (uint32_t)(key.seed >> 32);
  for (int round = 0; round < 10; round++) {
    uint64_t p0 = (uint64_t)0xD2511F53u * c0;
    uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
    uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    c1 = (uint32_t)p1;
    c3 = (uint32_t)p0;
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// Calls f(i, bits) for i in [0, n), four elements per generator call; the
// blocks are independent, so the loop vectorises across them.
template <typename F>
static inline void for_each_random(int64_t n, RngKey key, F f) {
  int64_t full = n / 4;
  for (int64_t blk = 0; blk < full; blk++) {
    Philox4 r = philox4x32_10((uint64_t)blk, key);
    for (int lane = 0; lane < 4; lane++) f(blk * 4 + lane, r.v[lane]);
  }
  if (full * 4 < n) {
    Philox4 r = philox4x32_10((uint64_t)full, key);
    for (int64_t i = full * 4; i < n; i++) f(i, r.v[i - full * 4]);
  }
}

static void random_u32(uint32_t* out, int64_t n, RngKey key) {
  for_each_random(n, key, [&](int64_t i, uint32_t bits) { out[i] = bits; });
}

static void dropout_apply(float* out, const float* in, int64_t n, uint32_t threshold,
                          float scale, RngKey key) {
  for_each_random(n, key, [&](int64_t i, uint32_t bits) {
    out[i] = bits >= threshold ? in[i] * scale : 0.0f;
  });
}

static void dropout_mask(float* mask, int64_t n, uint32_t threshold, float scale, RngKey key) {
  for_each_random(n, key, [&](int64_t i, uint32_t bits) {
    mask[i] = bits >= threshold ? scale : 0.0f;
  });
}

// out[i] += keep(i) ? in[i] * scale : 0: DropConnect routes the weight
// gradient through the mask its forward pass used.
static void dropout_accumulate(float* out, const float* in, int64_t n, uint32_t threshold, float scale,
                               RngKey key) {
  for_each_random(n, key, [&](int64_t i, uint32_t bits) {
    out[i] += bits >= threshold ? in[i] * scale : 0.0f;
  });
}

}  // namespace DK_ISA
}  // namespace dropkit
