/* fma_peak.c: this machine's single-core FMA peak in GFLOP/s.
 *
 * Twelve independent chains of vector FMAs (enough to cover the FMA latency
 * on every current x86 core) run for a fixed count; the best of several
 * repeats is reported. Built by run.py once per ISA it measures:
 *   cc -O2 -mavx2 -mfma fma_peak.c          (8-wide, DK_WIDTH=8)
 *   cc -O2 -mavx512f fma_peak.c -DDK_WIDTH=16
 * Prints one line: "<width> <GFLOP/s>". */
#include <stdio.h>
#include <time.h>

#ifndef DK_WIDTH
#define DK_WIDTH 8
#endif
typedef float vf __attribute__((vector_size(4 * DK_WIDTH)));

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(void) {
  const long iters = 20000000;
  double best = 0.0;
  volatile float seed = 1.0f;
  for (int rep = 0; rep < 7; rep++) {
    vf a = {0}, b = {0};
    a += seed * 0.999999f;
    b += seed * 1e-7f;
    vf acc[12];
    for (int i = 0; i < 12; i++) acc[i] = b * (float)i;
    double t0 = now();
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
      for (int i = 0; i < 12; i++) acc[i] = acc[i] * a + b;
      __asm__ volatile("" : "+x"(a));
    }
    double t = now() - t0;
    vf s = {0};
    for (int i = 0; i < 12; i++) s += acc[i];
    if (s[0] == 12345.0f) printf("-");
    double gflops = 2.0 * DK_WIDTH * 12.0 * iters / t / 1e9;
    if (gflops > best) best = gflops;
  }
  printf("%d %.1f\n", DK_WIDTH, best);
  return 0;
}
