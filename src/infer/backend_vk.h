/* backend_vk.h — internal to src/infer: the Vulkan compute backend behind the stage
 * (stage.c). It holds the first n of a stage's layers in device memory (weights uploaded
 * from the map at open, each sequence's KV cache of those layers) and runs them as one
 * command buffer per step; the stage computes the remaining layers, the embeddings and the
 * logits on the CPU. Built only with libvulkan-dev + glslc (backend_vk_none.c otherwise);
 * the loader is dlopen'ed, so a binary runs where Vulkan is absent.
 * Not for: anything outside src/infer (the stage is the public face, docs/gpu.md). */
#ifndef SW_INFER_BACKEND_VK_H
#define SW_INFER_BACKEND_VK_H

#include <stddef.h>
#include <stdint.h>

struct sw__model;
struct sw__vk;

/* An embedded SPIR-V module (generated vk_spv.c). */
struct sw__vk_spv {
    const char *name;
    const unsigned char *bytes;
    size_t size;
};
extern const struct sw__vk_spv sw__vk_spvs[];

/* What the stage asks for. */
struct sw__vk_opts {
    const char *gpu;       /* "auto" or a device index ("0", "1", ...) */
    uint32_t gpu_layers;   /* 0: as many as the device's free memory holds; N: at most N */
    uint32_t max_batch, max_seqs, n_ctx;
};

/* Opens the device and uploads the weights of layers layer_first .. layer_first + n - 1
 * (n chosen from gpu_layers, the device's memory and what the device can compute: the
 * first layer it cannot stops the range). Returns 0 with *out set (possibly holding 0
 * layers, with the reason in msg), or a negative sw_err with a message naming what is
 * missing (no loader, no device, no memory): the stage then computes on the CPU. */
int sw__vk_open(const struct sw__model *m, const struct sw__vk_opts *o, struct sw__vk **out, char *msg,
                size_t msg_len);
void sw__vk_free(struct sw__vk *g); /* NULL harmless */
uint32_t sw__vk_n_layers(const struct sw__vk *g);
/* The device's name and memory (bytes of its device-local heap), for info and logs. */
const char *sw__vk_device(const struct sw__vk *g);
uint64_t sw__vk_device_mem(const struct sw__vk *g);
uint64_t sw__vk_weight_bytes(const struct sw__vk *g); /* bytes uploaded */
/* Why the GPU range stops where it does ("" when it holds every layer). */
const char *sw__vk_stop_reason(const struct sw__vk *g);
/* The weight types uploaded as F16 for want of a shader, space-separated ("" when every
 * uploaded matrix is in its own type). */
const char *sw__vk_converted(const struct sw__vk *g);

/* A run of consecutive tokens of one sequence within a step (slot: the stage's sequence
 * slot, which owns one device KV cache). */
struct sw__vk_seg {
    uint32_t slot, pos, n;
};

/* The logits rows a step wants: row[i] (a token of the step) into dst[i] (n_vocab floats). */
struct sw__vk_logits {
    const uint32_t *row;
    float *const *dst;
    uint32_t n;
};
/* How many logits rows one step can compute on the device: 0 when the device does not
 * hold the stage's last layer and the output matrix. */
uint32_t sw__vk_logits_rows(const struct sw__vk *g);

/* Runs the device's layers over one step of T tokens: x (T x n_embd, f32) in and out;
 * rope: T x n_rot (cos then sin per token, the stage's table); rope_swa: the same for the
 * sliding-window layers (gemma's own base), or NULL when the model has none.
 * lg (NULL or lg->n == 0: none): also the output norm and logits of those rows
 * (lg->n <= sw__vk_logits_rows). Grows the segments' device caches as needed. Returns 0;
 * SW_ENOMEM (device memory for a cache: the step computed nothing); SW_ESTATE when the
 * device is lost (every later call fails the same way: the stage computes on the CPU from
 * then on). */
int sw__vk_step(struct sw__vk *g, float *x, uint32_t T, const float *rope, const float *rope_swa,
                const struct sw__vk_seg *sg, uint32_t n_seg, const struct sw__vk_logits *lg, char *err,
                size_t err_len);
/* Copies the first n positions of slot src's device cache into slot dst's (grown as
 * needed): 0, SW_EINVAL, SW_ENOMEM, or SW_ESTATE when the device is lost (as a step). */
int sw__vk_seq_copy(struct sw__vk *g, uint32_t dst, uint32_t src, uint32_t n, char *err, size_t err_len);
/* Releases a slot's device cache (sequence freed). */
void sw__vk_seq_free(struct sw__vk *g, uint32_t slot);
/* Device bytes held by caches. */
uint64_t sw__vk_kv_bytes(const struct sw__vk *g);

#endif
