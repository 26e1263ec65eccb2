/* kernels_avx512.c — AVX-512 F/BW/VL + VNNI kernels (compiled with those flags only; called only
 * after CPUID says the CPU has them). */
#include "infer/kernels_impl.h"

void sw__k_fill_avx512(struct sw_k_type_impl *tab, int n_tab)
{
    (void)tab;
    (void)n_tab;
}

void sw__k_vec_ops_avx512(struct sw_k_vec_ops *ops)
{
    (void)ops;
}
