/* quant_iq2.c — reference quantizers of IQ2_XXS, IQ2_XS and IQ2_S (what `synth` writes):
 * a valid encoding with a plain least-squares fit, no importance matrix. Per group of 8 the
 * signs are those of the values (IQ2_XXS/XS: when an odd number are negative, the smallest
 * in magnitude gives up its sign, as the format keeps the count even); the magnitudes go to
 * the codebook entry nearest in L2 under the sub-block's scale; the scale is searched over
 * a few candidates (the largest magnitude landing on 27..55) and refitted by least squares;
 * the sub-block scales are then quantized to 4 bits against the block scale and the entries
 * chosen again with the stored scales. Layouts: kernels_iq2.h.
 * Not for: the kernels (kernels_ref_iq2.c), other types (quant.c). */
#include <math.h>
#include <stdlib.h>

#include <pthread.h>

#include "infer/kernels_iq2.h"

#define POW3_8 6561 /* keys: 8 digits of level 0, 1, 2 (magnitude 8, 25, 43) */

/* A codebook's search index, built once per process (an immutable table like the codebook
 * itself): for each key (8 levels) the entry with exactly those levels (-1: none), and the
 * entries nearest to the key's point (squared distance at most the second-smallest there
 * is): the candidates searched for targets that round to that key. */
struct codebook {
    const uint64_t *grid;
    int n;
    int16_t of_key[POW3_8];
    uint32_t start[POW3_8 + 1]; /* candidates of key k: near[start[k] .. start[k+1]) */
    uint16_t *near;             /* NULL when out of memory: then every search is exhaustive */
};

static const uint8_t k_mag[3] = {8, 25, 43};

static inline int level_of(uint8_t v)
{
    return v == 8 ? 0 : v == 25 ? 1 : 2;
}

/* Squared distance between the point of key `key` and entry g. */
static int key_dist2(int key, const uint8_t *g)
{
    int d2 = 0;
    for (int j = 0; j < 8; j++, key /= 3) {
        int d = k_mag[key % 3] - g[j];
        d2 += d * d;
    }
    return d2;
}

/* The two smallest distinct squared distances from key's point to the entries. */
static int key_cutoff(const struct codebook *c, int key)
{
    int d1 = 1 << 30, d2 = 1 << 30;
    for (int k = 0; k < c->n; k++) {
        int d = key_dist2(key, (const uint8_t *)&c->grid[k]);
        if (d < d1) {
            d2 = d1;
            d1 = d;
        } else if (d > d1 && d < d2) {
            d2 = d;
        }
    }
    return d2 < (1 << 30) ? d2 : d1;
}

static void codebook_build(struct codebook *c, const uint64_t *grid, int n)
{
    c->grid = grid;
    c->n = n;
    for (int k = 0; k < POW3_8; k++) c->of_key[k] = -1;
    for (int k = 0; k < n; k++) {
        const uint8_t *g = (const uint8_t *)&grid[k];
        int key = 0;
        for (int j = 7; j >= 0; j--) key = 3 * key + level_of(g[j]);
        c->of_key[key] = (int16_t)k;
    }
    /* two passes: count the candidates, then store them */
    int *cut = malloc(POW3_8 * sizeof *cut);
    if (!cut) return;
    uint32_t total = 0;
    for (int key = 0; key < POW3_8; key++) {
        c->start[key] = total;
        if (c->of_key[key] >= 0) continue; /* exact: no search */
        cut[key] = key_cutoff(c, key);
        for (int k = 0; k < n; k++) total += key_dist2(key, (const uint8_t *)&grid[k]) <= cut[key];
    }
    c->start[POW3_8] = total;
    c->near = malloc((size_t)total * sizeof *c->near + 1);
    if (c->near)
        for (int key = 0; key < POW3_8; key++) {
            if (c->of_key[key] >= 0) continue;
            uint32_t at = c->start[key];
            for (int k = 0; k < n; k++)
                if (key_dist2(key, (const uint8_t *)&grid[k]) <= cut[key]) c->near[at++] = (uint16_t)k;
        }
    free(cut);
}

static struct codebook g_cb[3];
static pthread_once_t g_cb_once[3] = {PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT};

static void build_xxs(void)
{
    codebook_build(&g_cb[0], sw__k_iq2xxs_grid, 256);
}
static void build_xs(void)
{
    codebook_build(&g_cb[1], sw__k_iq2xs_grid, 512);
}
static void build_s(void)
{
    codebook_build(&g_cb[2], sw__k_iq2s_grid, 1024);
}

static inline float dist2(const float *t, const uint8_t *g)
{
    float d = 0;
    for (int j = 0; j < 8; j++) d += (t[j] - (float)g[j]) * (t[j] - (float)g[j]);
    return d;
}

/* The entry nearest to t (8 targets in grid units). Each coordinate's nearest level makes
 * a key; when an entry has exactly those levels it is the nearest point; else the nearest
 * of the key's candidates (all entries when the index could not be built). */
static int nearest_entry(const struct codebook *c, const float *t)
{
    int key = 0;
    for (int j = 7; j >= 0; j--) key = 3 * key + (t[j] < 16.5f ? 0 : t[j] < 34.0f ? 1 : 2);
    if (c->of_key[key] >= 0) return c->of_key[key];
    int best = -1;
    float best_d = INFINITY;
    const uint32_t lo = c->near ? c->start[key] : 0, hi = c->near ? c->start[key + 1] : (uint32_t)c->n;
    for (uint32_t i = lo; i < hi; i++) {
        const int k = c->near ? c->near[i] : (int)i;
        const float d = dist2(t, (const uint8_t *)&c->grid[k]);
        if (d < best_d) {
            best_d = d;
            best = k;
        }
    }
    return best < 0 ? 0 : best;
}

/* Signs of a group of 8 (bit j: x[j] < 0) and the targets a[j] = x[j] * sign: |x[j]|, or
 * -|x[j]| for the element that gave up its sign to keep the count even (`even`). */
static uint8_t group_signs(const float *x, float *a, int even)
{
    uint8_t s = 0;
    int jmin = 0;
    for (int j = 0; j < 8; j++) {
        if (x[j] < 0) s |= (uint8_t)(1u << j);
        if (fabsf(x[j]) < fabsf(x[jmin])) jmin = j;
        a[j] = fabsf(x[j]);
    }
    if (even && (__builtin_popcount(s) & 1)) {
        s ^= (uint8_t)(1u << jmin);
        a[jmin] = -a[jmin];
    }
    return s;
}

/* Entries of ng groups of targets a (8 * ng) for the scale dl: idx[g]. */
static void assign(const struct codebook *c, const float *a, int ng, float dl, uint16_t *idx)
{
    const float id = dl > 0 ? 1.0f / dl : 0;
    for (int g = 0; g < ng; g++) {
        float t[8];
        for (int j = 0; j < 8; j++) t[j] = a[8 * g + j] * id;
        idx[g] = (uint16_t)nearest_entry(c, t);
    }
}

/* The scale of ng groups of targets a: for each candidate, the entries under it, then the
 * least-squares scale of those entries; keeps the fit with the least squared error
 * (sum a^2 - <a, v>^2 / |v|^2). Returns the scale (0 when all targets are <= 0). */
static float fit_scale(const struct codebook *c, const float *a, int ng)
{
    float amax = 0;
    for (int j = 0; j < 8 * ng; j++) amax = fmaxf(amax, a[j]);
    if (amax <= 0) return 0;
    float best = -1, best_scale = 0;
    for (int top = 27; top <= 55; top += 4) {
        uint16_t idx[4];
        assign(c, a, ng, amax / (float)top, idx);
        float sav = 0, svv = 0;
        for (int g = 0; g < ng; g++) {
            const uint8_t *v = (const uint8_t *)&c->grid[idx[g]];
            for (int j = 0; j < 8; j++) {
                sav += a[8 * g + j] * (float)v[j];
                svv += (float)v[j] * (float)v[j];
            }
        }
        if (sav > 0 && sav * sav / svv > best) {
            best = sav * sav / svv;
            best_scale = sav / svv;
        }
    }
    return best_scale;
}

/* The 4-bit code ls of a sub-scale s against d: s ~ d * (2 ls + 1) / 8. */
static inline int scale_code(float s, float d)
{
    if (d <= 0) return 0;
    int ls = (int)lrintf((s * 8.0f / d - 1.0f) * 0.5f);
    return ls < 0 ? 0 : ls > 15 ? 15 : ls;
}

/* The three types share the fit; they differ in the scale granularity (16 or 32), the sign
 * constraint and the packing. `per` = elements per scale. Outputs per block: d, 16 or 8 scale
 * codes ls[], 32 entries idx[] and 32 sign bytes signs[]. */
struct fitted {
    float d;
    int ls[16];
    uint16_t idx[32];
    uint8_t signs[32];
};

static void fit_block(const struct codebook *c, const float *x, int per, int even, struct fitted *f, sw_f16 *d16)
{
    float a[SW_QK_K], sc[16];
    const int ns = SW_QK_K / per, ng = per / 8;
    for (int g = 0; g < 32; g++) f->signs[g] = group_signs(x + 8 * g, a + 8 * g, even);
    float max_sc = 0;
    for (int s = 0; s < ns; s++) {
        sc[s] = fit_scale(c, a + per * s, ng);
        max_sc = fmaxf(max_sc, sc[s]);
    }
    *d16 = sw_k_f32_to_f16(max_sc * 8.0f / 31.0f); /* the largest sub-scale takes ls = 15 */
    f->d = sw_k_f16_to_f32(*d16);
    for (int s = 0; s < ns; s++) {
        f->ls[s] = scale_code(sc[s], f->d);
        assign(c, a + per * s, ng, f->d * (float)(2 * f->ls[s] + 1) * 0.125f, f->idx + ng * s);
    }
}

void sw__k_quantize_iq2_xxs_ref(const float *x, void *dst, int64_t n)
{
    pthread_once(&g_cb_once[0], build_xxs);
    const struct codebook *c = &g_cb[0];
    struct sw_block_iq2_xxs *b = dst;
    struct fitted f;
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++, x += SW_QK_K) {
        fit_block(c, x, 32, 1, &f, &b->d);
        for (int ib = 0; ib < 8; ib++) {
            uint32_t a0 = 0, a1 = (uint32_t)f.ls[ib] << 28;
            for (int l = 0; l < 4; l++) {
                a0 |= (uint32_t)f.idx[4 * ib + l] << (8 * l);
                a1 |= (uint32_t)(f.signs[4 * ib + l] & 127) << (7 * l);
            }
            memcpy(b->qs + 4 * ib, &a0, 4);
            memcpy(b->qs + 4 * ib + 2, &a1, 4);
        }
    }
}

void sw__k_quantize_iq2_xs_ref(const float *x, void *dst, int64_t n)
{
    pthread_once(&g_cb_once[1], build_xs);
    const struct codebook *c = &g_cb[1];
    struct sw_block_iq2_xs *b = dst;
    struct fitted f;
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++, x += SW_QK_K) {
        fit_block(c, x, 16, 1, &f, &b->d);
        for (int g = 0; g < 32; g++) b->qs[g] = (uint16_t)(f.idx[g] | (f.signs[g] & 127) << 9);
        for (int ib = 0; ib < 8; ib++) b->scales[ib] = (uint8_t)(f.ls[2 * ib] | f.ls[2 * ib + 1] << 4);
    }
}

void sw__k_quantize_iq2_s_ref(const float *x, void *dst, int64_t n)
{
    pthread_once(&g_cb_once[2], build_s);
    const struct codebook *c = &g_cb[2];
    struct sw_block_iq2_s *b = dst;
    struct fitted f;
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++, x += SW_QK_K) {
        fit_block(c, x, 16, 0, &f, &b->d);
        memset(b->qh, 0, sizeof(b->qh));
        for (int g = 0; g < 32; g++) {
            b->qs[g] = (uint8_t)f.idx[g];
            b->qh[g / 4] |= (uint8_t)((f.idx[g] >> 8) << (2 * (g % 4)));
            b->qs[SW_QK_K / 8 + g] = f.signs[g];
        }
        for (int ib = 0; ib < 8; ib++) b->scales[ib] = (uint8_t)(f.ls[2 * ib] | f.ls[2 * ib + 1] << 4);
    }
}
