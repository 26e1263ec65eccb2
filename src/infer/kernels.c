/* kernels.c — run-time choice of the kernel family (CPUID + SW_KERNELS), the per-type
 * tables, the vector helpers' entry points and get_rows.
 * Not for: the kernels themselves (kernels_ref.c, kernels_avx2.c, kernels_avx512.c). */
#include <pthread.h>
#include <stdlib.h>
#include <strings.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "infer/kernels_iq2.h"
#include "infer/kernels_impl.h"
#include "infer/kernels_iq3.h"

#define N_TYPES SW_TYPE_COUNT_

static struct {
    pthread_once_t once;
    enum sw_k_impl active;
    int available[SW_K_IMPL_COUNT_];
    struct sw_k_type_impl tab[SW_K_IMPL_COUNT_][N_TYPES];
    struct sw_k_vec_ops ops[SW_K_IMPL_COUNT_];
} g_k = {.once = PTHREAD_ONCE_INIT};

/* F16C straight from CPUID (leaf 1, ECX bit 29): clang does not accept "f16c" in
 * __builtin_cpu_supports. AVX state support by the OS is implied by the avx2 check. */
static int cpu_has_f16c(void)
{
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c >> 29) & 1u;
#else
    return 0;
#endif
}

static int cpu_has_avx2(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
#else
    return 0;
#endif
}

static int cpu_has_avx512(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}

static void k_init(void)
{
    g_k.available[SW_K_IMPL_REF] = 1;
    g_k.available[SW_K_IMPL_AVX2] = cpu_has_avx2();
    g_k.available[SW_K_IMPL_AVX512] = cpu_has_avx512();

    /* Each family starts from the reference and overrides what it specialises. */
    for (int f = 0; f < SW_K_IMPL_COUNT_; f++) {
        sw__k_fill_ref(g_k.tab[f], N_TYPES);
        sw__k_vec_ops_ref(&g_k.ops[f]);
    }
    if (g_k.available[SW_K_IMPL_AVX2]) {
        sw__k_fill_avx2(g_k.tab[SW_K_IMPL_AVX2], N_TYPES);
        sw__k_fill_avx2_low(g_k.tab[SW_K_IMPL_AVX2], N_TYPES);
        sw__k_fill_avx2_kq(g_k.tab[SW_K_IMPL_AVX2], N_TYPES);
        sw__k_fill_avx2_iq3(g_k.tab[SW_K_IMPL_AVX2], N_TYPES);
        sw__k_fill_avx2_iq2(g_k.tab[SW_K_IMPL_AVX2], N_TYPES);
        sw__k_vec_ops_avx2(&g_k.ops[SW_K_IMPL_AVX2]);
    }
    if (g_k.available[SW_K_IMPL_AVX512]) {
        /* AVX-512 builds on the AVX2 family for what it does not specialise. */
        sw__k_fill_avx2(g_k.tab[SW_K_IMPL_AVX512], N_TYPES);
        sw__k_vec_ops_avx2(&g_k.ops[SW_K_IMPL_AVX512]);
        sw__k_fill_avx512(g_k.tab[SW_K_IMPL_AVX512], N_TYPES);
        sw__k_fill_avx512_low(g_k.tab[SW_K_IMPL_AVX512], N_TYPES);
        sw__k_fill_avx2_iq3(g_k.tab[SW_K_IMPL_AVX512], N_TYPES); /* IQ3/IQ1: the AVX2 kernels */
        sw__k_fill_avx2_iq2(g_k.tab[SW_K_IMPL_AVX512], N_TYPES); /* IQ2: the AVX2 kernels */
        sw__k_vec_ops_avx512(&g_k.ops[SW_K_IMPL_AVX512]);
    }

    enum sw_k_impl best = g_k.available[SW_K_IMPL_AVX512] ? SW_K_IMPL_AVX512
                          : g_k.available[SW_K_IMPL_AVX2] ? SW_K_IMPL_AVX2
                                                          : SW_K_IMPL_REF;
    const char *env = getenv("SW_KERNELS");
    if (env && *env) {
        enum sw_k_impl want = best;
        if (!strcasecmp(env, "ref") || !strcasecmp(env, "scalar")) want = SW_K_IMPL_REF;
        else if (!strcasecmp(env, "avx2")) want = SW_K_IMPL_AVX2;
        else if (!strcasecmp(env, "avx512")) want = SW_K_IMPL_AVX512;
        else sw_log(SW_LOG_WARN, "infer", "SW_KERNELS=%s not understood (ref|avx2|avx512); using %s", env,
                    sw_k_impl_name(best));
        if (!g_k.available[want]) {
            sw_log(SW_LOG_WARN, "infer", "SW_KERNELS=%s: this CPU lacks it; using %s", env, sw_k_impl_name(best));
            want = best;
        }
        best = want;
    }
    g_k.active = best;
    sw_log(SW_LOG_DEBUG, "infer", "kernels: %s", sw_k_impl_name(best));
}

static inline void k_ready(void)
{
    pthread_once(&g_k.once, k_init);
}

const char *sw_k_impl_name(enum sw_k_impl impl)
{
    switch (impl) {
    case SW_K_IMPL_REF: return "ref";
    case SW_K_IMPL_AVX2: return "avx2";
    case SW_K_IMPL_AVX512: return "avx512";
    default: return "?";
    }
}

int sw_k_impl_available(enum sw_k_impl impl)
{
    k_ready();
    return impl >= 0 && impl < SW_K_IMPL_COUNT_ && g_k.available[impl];
}

enum sw_k_impl sw_k_impl_active(void)
{
    k_ready();
    return g_k.active;
}

const struct sw_k_type *sw_k_type_get_impl(uint32_t type, enum sw_k_impl impl)
{
    k_ready();
    if (type >= N_TYPES || impl < 0 || impl >= SW_K_IMPL_COUNT_ || !g_k.available[impl]) return NULL;
    const struct sw_k_type_impl *e = &g_k.tab[impl][type];
    return e->pub.name ? &e->pub : NULL;
}

const struct sw_k_type *sw_k_type_get(uint32_t type)
{
    return sw_k_type_get_impl(type, sw_k_impl_active());
}

const struct sw_k_vec_ops *sw__k_vec_ops(void)
{
    k_ready();
    return &g_k.ops[g_k.active];
}

size_t sw_k_row_bytes(uint32_t type, int64_t n)
{
    const struct sw_k_type *t = sw_k_type_get_impl(type, SW_K_IMPL_REF);
    if (!t || n < 0 || n % t->block_size) return 0;
    return (size_t)(n / t->block_size) * t->type_size;
}

int sw_k_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n)
{
    const struct sw_k_type *t = sw_k_type_get(type);
    if (!t) return SW_EUNSUPPORTED;
    if (n < 0 || n % t->block_size) return SW_EINVAL;
    t->dequantize_row(src, dst, n);
    return 0;
}

/* ------------------------------------------------------------ vector helpers */

void sw_k_f16_to_f32_row(const sw_f16 *x, float *y, int64_t n)
{
    sw__k_vec_ops()->f16_to_f32_row(x, y, n);
}

void sw_k_f32_to_f16_row(const float *x, sw_f16 *y, int64_t n)
{
    sw__k_vec_ops()->f32_to_f16_row(x, y, n);
}

void sw_k_bf16_to_f32_row(const sw_bf16 *x, float *y, int64_t n)
{
    sw__k_vec_ops()->bf16_to_f32_row(x, y, n);
}

float sw_k_dot_f32(int64_t n, const float *x, const float *y)
{
    return sw__k_vec_ops()->dot_f32(n, x, y);
}

float sw_k_dot_f16_f32(int64_t n, const sw_f16 *x, const float *y)
{
    return sw__k_vec_ops()->dot_f16_f32(n, x, y);
}

void sw_k_axpy_f32(int64_t n, float a, const float *x, float *y)
{
    sw__k_vec_ops()->axpy_f32(n, a, x, y);
}

void sw_k_axpy_f16(int64_t n, float a, const sw_f16 *x, float *y)
{
    sw__k_vec_ops()->axpy_f16(n, a, x, y);
}

void sw_k_scale_f32(int64_t n, float a, float *y)
{
    sw__k_vec_ops()->scale_f32(n, a, y);
}

/* ------------------------------------------------------------ get_rows */

int sw_k_get_rows(const void *w, uint32_t type, int64_t n_rows, int64_t cols, const int32_t *ids,
                  int64_t n_ids, float *out)
{
    const struct sw_k_type *t = sw_k_type_get(type);
    if (!t) return SW_EUNSUPPORTED;
    size_t rb = sw_k_row_bytes(type, cols);
    if (!rb) return SW_EINVAL;
    for (int64_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= n_rows) return SW_ERANGE;
    for (int64_t i = 0; i < n_ids; i++)
        t->dequantize_row((const uint8_t *)w + (size_t)ids[i] * rb, out + i * cols, cols);
    return 0;
}
