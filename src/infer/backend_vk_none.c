/* backend_vk_none.c — the Vulkan backend's stand-in in builds without libvulkan-dev and
 * glslc (src/infer/CMakeLists.txt): --gpu says so and the stage computes on the CPU.
 * Not for: anything else. */
#include <stdio.h>
#include <string.h>

#include "infer/backend_vk.h"
#include "infer/infer.h"
#include "util/util.h"

int sw__vk_open(const struct sw__model *m, const struct sw__vk_opts *o, struct sw__vk **out, char *msg,
                size_t msg_len)
{
    (void)m;
    (void)o;
    *out = NULL;
    snprintf(msg, msg_len, "this build has no Vulkan backend (built without libvulkan-dev and glslc: "
                           "scripts/install-deps build, then rebuild)");
    return SW_EUNSUPPORTED;
}
void sw__vk_free(struct sw__vk *g) { (void)g; }
int sw_gpu_probe(const char *which, struct sw_gpu_probe *out, char *msg, size_t msg_len)
{
    (void)which;
    if (out) memset(out, 0, sizeof *out);
    snprintf(msg, msg_len, "this build has no Vulkan backend");
    return SW_EUNSUPPORTED;
}
uint32_t sw__vk_n_layers(const struct sw__vk *g) { (void)g; return 0; }
const char *sw__vk_device(const struct sw__vk *g) { (void)g; return ""; }
uint64_t sw__vk_device_mem(const struct sw__vk *g) { (void)g; return 0; }
uint64_t sw__vk_weight_bytes(const struct sw__vk *g) { (void)g; return 0; }
const char *sw__vk_stop_reason(const struct sw__vk *g) { (void)g; return ""; }
const char *sw__vk_converted(const struct sw__vk *g) { (void)g; return ""; }
uint32_t sw__vk_logits_rows(const struct sw__vk *g) { (void)g; return 0; }
int sw__vk_step(struct sw__vk *g, float *x, uint32_t T, const float *rope, const float *rope_swa,
                const struct sw__vk_seg *sg, uint32_t n_seg, const struct sw__vk_logits *lg, char *err,
                size_t err_len)
{
    (void)g, (void)x, (void)T, (void)rope, (void)rope_swa, (void)sg, (void)n_seg, (void)lg;
    snprintf(err, err_len, "no Vulkan backend in this build");
    return SW_EUNSUPPORTED;
}
int sw__vk_seq_copy(struct sw__vk *g, uint32_t dst, uint32_t src, uint32_t n, char *err, size_t err_len)
{
    (void)g, (void)dst, (void)src, (void)n;
    snprintf(err, err_len, "no Vulkan backend in this build");
    return SW_EUNSUPPORTED;
}
void sw__vk_seq_free(struct sw__vk *g, uint32_t slot) { (void)g, (void)slot; }
uint64_t sw__vk_kv_bytes(const struct sw__vk *g) { (void)g; return 0; }
