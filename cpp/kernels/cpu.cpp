// cpu.cpp: instruction-set detection and the choice of kernel table.
#include "kernels/cpu.h"

#include <cmath>
#include <cstdlib>
#include <stdexcept>

#if defined(DROPKIT_HAVE_X86)
#include <immintrin.h>
#endif

namespace dropkit {

extern const KernelTable kernel_table_scalar;
#if defined(DROPKIT_HAVE_X86)
extern const KernelTable kernel_table_avx2;
extern const KernelTable kernel_table_avx512;
#endif

namespace {

struct Tables {
  const KernelTable& scalar = kernel_table_scalar;
#if defined(DROPKIT_HAVE_X86)
  const KernelTable& avx2 = kernel_table_avx2;
  const KernelTable& avx512 = kernel_table_avx512;
#else
  const KernelTable& avx2 = kernel_table_scalar;
  const KernelTable& avx512 = kernel_table_scalar;
#endif
  bool has_avx2 = false, has_avx512 = false;
  const KernelTable* active = nullptr;

  Tables() {
#if defined(DROPKIT_HAVE_X86)
    __builtin_cpu_init();
    has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    has_avx512 = has_avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                 __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#endif
    active = has_avx512 ? &avx512 : has_avx2 ? &avx2 : &scalar;
    // DROPKIT_ISA may only lower the choice; an unknown or unsupported name
    // leaves the best one (the Python package warns about it).
    if (const char* forced = std::getenv("DROPKIT_ISA")) {
      if (const KernelTable* t = find(forced)) active = t;
    }
  }

  const KernelTable* find(const std::string& name) const {
    if (name == "scalar") return &scalar;
    if (name == "avx2" && has_avx2) return &avx2;
    if (name == "avx512" && has_avx512) return &avx512;
    return nullptr;
  }
};

Tables& tables() {
  static Tables t;
  return t;
}

}  // namespace

const KernelTable& kernels() { return *tables().active; }

std::string simd_backend() { return kernels().name; }

std::vector<std::string> available_isas() {
  std::vector<std::string> out;
  if (tables().has_avx512) out.push_back("avx512");
  if (tables().has_avx2) out.push_back("avx2");
  out.push_back("scalar");
  return out;
}

void set_isa(const std::string& name) {
  const KernelTable* t = tables().find(name);
  if (!t) throw std::invalid_argument("isa: '" + name + "' is not available on this CPU");
  tables().active = t;
}

uint32_t drop_threshold(double rate) {
  double t = std::floor(rate * 4294967296.0);
  return t >= 4294967295.0 ? 4294967295u : (uint32_t)t;
}

#if defined(DROPKIT_HAVE_X86)
DenormalGuard::DenormalGuard() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040); }
DenormalGuard::~DenormalGuard() { _mm_setcsr(saved_); }
#else
DenormalGuard::DenormalGuard() {}
DenormalGuard::~DenormalGuard() {}
#endif

}  // namespace dropkit
