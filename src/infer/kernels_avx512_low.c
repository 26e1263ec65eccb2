/* kernels_avx512_low.c — the AVX-512 family's kernels for Q4_1, Q5_0, Q5_1, Q2_K, Q3_K,
 * IQ4_NL, IQ4_XS and MXFP4: the AVX2 kernels of kernels_avx2_low.c compiled again with
 * AVX-512VL available (EVEX encoding, 32 vector registers). Used only when CPUID has
 * AVX-512 (kernels.c). Not for: CPUs without it (they get kernels_avx2_low.c). */
#define SW_K_X86_BODY_ONLY
#include "kernels_avx2_low.c"

void sw__k_fill_avx512_low(struct sw_k_type_impl *tab, int n_tab)
{
    fill_x86_low(tab, n_tab);
}
