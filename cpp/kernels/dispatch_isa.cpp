// dispatch_isa.cpp: compiled once per instruction set (see CMakeLists.txt);
// defines that set's KernelTable. Nothing here may use a template or inline
// function shared with other translation units: the linker would keep one copy,
// possibly compiled for an ISA this CPU lacks. Every kernel lives in the
// DK_ISA namespace with internal linkage.
#include "kernels/activations.h"
#include "kernels/dropout.h"
#include "kernels/gemm.h"
#include "kernels/losses.h"
#include "kernels/omp.h"
#include "kernels/optimizers.h"
#include "kernels/penalties.h"

#define DK_STR2(x) #x
#define DK_STR(x) DK_STR2(x)
#define DK_CAT2(a, b) a##b
#define DK_CAT(a, b) DK_CAT2(a, b)

namespace dropkit {

// A constant-initialised table: no code of this unit runs before the CPU
// has been checked (a fill function would itself be compiled for this ISA).
extern const KernelTable DK_CAT(kernel_table_, DK_ISA);
const KernelTable DK_CAT(kernel_table_, DK_ISA) = {
    DK_STR(DK_ISA),
    DK_ISA::gemm,
    DK_ISA::act_forward,
    DK_ISA::act_backward,
    DK_ISA::maxout_forward,
    DK_ISA::maxout_backward,
    DK_ISA::dropout_apply,
    DK_ISA::dropout_mask,
    DK_ISA::random_u32,
    DK_ISA::loss,
    DK_ISA::output_link,
    DK_ISA::optimizer_step,
    DK_ISA::column_sums,
    DK_ISA::sum_squares,
    DK_ISA::sum_abs,
    DK_ISA::all_finite,
    DK_ISA::block_stats,
    DK_ISA::max_norm_columns,
    DK_ISA::activity_value,
    DK_ISA::dropout_apply_recording,
    DK_ISA::apply_kept,
    DK_ISA::omp_encode,
};

}  // namespace dropkit
