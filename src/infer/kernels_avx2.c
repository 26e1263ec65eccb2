/* kernels_avx2.c — AVX2 + FMA + F16C kernels (compiled with those flags only; called only
 * after CPUID says the CPU has them). */
#include "infer/kernels_impl.h"

void sw__k_fill_avx2(struct sw_k_type_impl *tab, int n_tab)
{
    (void)tab;
    (void)n_tab;
}

void sw__k_vec_ops_avx2(struct sw_k_vec_ops *ops)
{
    (void)ops;
}
