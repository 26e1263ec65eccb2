/* quant_iq3.c — reference weight quantizers for IQ3_XXS, IQ3_S, IQ1_S and IQ1_M (what
 * `synth` writes): a valid encoding of each format, without an importance matrix.
 * A "unit" is the run of elements that share one scale (32, or 16 for IQ1_M). Per unit,
 * a sweep of candidate scales: each group of 4 or 8 elements takes its nearest codebook
 * point (IQ3: magnitudes, the signs taken from the values, IQ3_XXS's parity repaired by
 * flipping the cheapest sign; IQ1: the point plus the +-1/8 shift, both shifts tried), the
 * best sweep point is refitted by least squares. The block scale d then covers the largest
 * unit scale with the top odd multiplier, and each unit is encoded again at the three
 * stored scales nearest its own, keeping the best.
 * Nearest point: each coordinate is rounded to its nearest level, and that key's candidate
 * list (codebook points within a margin of the one nearest the key, built once) is
 * searched with the exact distance. Not for: activations (kernels_ref*.c). */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include "infer/kernels_iq3.h"

static inline int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* ------------------------------------------------------------ codebook search */

struct codebook {
    int dim, n_pts, n_lev;
    float lev[8];     /* coordinate levels, ascending */
    float mid[7];     /* midpoints between neighbouring levels */
    float *pt;        /* n_pts x dim coordinates */
    uint32_t *start;  /* n_lev^dim + 1 offsets into cand; NULL: search every point */
    uint16_t *cand;
};

enum { CB_IQ3XXS, CB_IQ3S, CB_IQ1, CB_COUNT_ };
static struct codebook g_cb[CB_COUNT_];
static pthread_once_t g_cb_once = PTHREAD_ONCE_INIT;

/* The candidates of a key: the points within slack level steps^2 of the squared distance
 * from the key's level vector to its nearest point. With the slacks of cb_init (5, 3 and
 * 1.5: 8, 8 and 14 candidates a key on average) the choice was the full search's for all
 * of 200,000 Gaussian targets (IQ3) and for 99.2% (IQ1, whose misses add 0.1% to the
 * squared error; slack 2 gets 99.99% with 60 candidates, at 5x the time), checked when
 * written. */
static void cb_build(struct codebook *cb, int dim, int n_pts, const uint8_t *bytes, float step, float slack_steps)
{
    cb->dim = dim;
    cb->n_pts = n_pts;
    cb->pt = malloc(sizeof(float) * (size_t)(n_pts * dim));
    if (!cb->pt) return;
    /* the levels: the distinct coordinate values */
    int n_lev = 0;
    for (int p = 0; p < n_pts; p++)
        for (int j = 0; j < dim; j++) {
            float v = (float)(int8_t)bytes[p * dim + j]; /* IQ1's 0xff is -1; IQ3's are < 128 */
            cb->pt[p * dim + j] = v;
            int k = 0;
            while (k < n_lev && cb->lev[k] != v) k++;
            if (k == n_lev && n_lev < 8) cb->lev[n_lev++] = v;
        }
    for (int a = 1; a < n_lev; a++) /* insertion sort */
        for (int b = a; b > 0 && cb->lev[b - 1] > cb->lev[b]; b--) {
            float t = cb->lev[b];
            cb->lev[b] = cb->lev[b - 1];
            cb->lev[b - 1] = t;
        }
    cb->n_lev = n_lev;
    for (int k = 0; k + 1 < n_lev; k++) cb->mid[k] = 0.5f * (cb->lev[k] + cb->lev[k + 1]);
    int n_keys = 1;
    for (int j = 0; j < dim; j++) n_keys *= n_lev;
    uint32_t *start = malloc(sizeof(uint32_t) * (size_t)(n_keys + 1));
    float *d2 = malloc(sizeof(float) * (size_t)n_pts);
    size_t cap = (size_t)n_keys * 16, used = 0;
    uint16_t *cand = malloc(sizeof(uint16_t) * cap);
    const float slack = slack_steps * step * step;
    for (int key = 0; start && d2 && cand && key < n_keys; key++) {
        float kv[8], dmin = INFINITY;
        for (int j = 0, r = key; j < dim; j++, r /= n_lev) kv[j] = cb->lev[r % n_lev];
        for (int p = 0; p < n_pts; p++) {
            float s = 0;
            for (int j = 0; j < dim; j++) s += (kv[j] - cb->pt[p * dim + j]) * (kv[j] - cb->pt[p * dim + j]);
            d2[p] = s;
            if (s < dmin) dmin = s;
        }
        start[key] = (uint32_t)used;
        for (int p = 0; p < n_pts; p++) {
            if (d2[p] > dmin + slack) continue;
            if (used == cap) {
                uint16_t *nc = realloc(cand, sizeof(uint16_t) * cap * 2);
                if (!nc) {
                    free(cand);
                    cand = NULL;
                    break;
                }
                cand = nc;
                cap *= 2;
            }
            cand[used++] = (uint16_t)p;
        }
    }
    free(d2);
    if (start && cand) {
        start[n_keys] = (uint32_t)used;
        cb->start = start;
        cb->cand = cand;
    } else { /* out of memory: the full search still works */
        free(start);
        free(cand);
    }
}

static void cb_init(void)
{
    /* coordinate j of a point is byte j of its word (shifts: any host byte order) */
    static uint8_t b3x[256 * 4], b3s[512 * 4], b1[2048 * 8];
    for (int p = 0; p < 512; p++)
        for (int j = 0; j < 4; j++) {
            if (p < 256) b3x[4 * p + j] = (uint8_t)(sw__k_iq3xxs_grid[p] >> (8 * j));
            b3s[4 * p + j] = (uint8_t)(sw__k_iq3s_grid[p] >> (8 * j));
        }
    for (int p = 0; p < 2048; p++)
        for (int j = 0; j < 8; j++) b1[8 * p + j] = (uint8_t)(sw__k_iq1s_grid[p] >> (8 * j));
    cb_build(&g_cb[CB_IQ3XXS], 4, 256, b3x, 8.0f, 5.0f);
    cb_build(&g_cb[CB_IQ3S], 4, 512, b3s, 2.0f, 3.0f);
    cb_build(&g_cb[CB_IQ1], 8, 2048, b1, 1.0f, 1.5f);
}

/* Index of the codebook point nearest t[DIM]; *err_out its squared distance. DIM is the
 * codebook's (4 or 8), a constant in each caller so the loops unroll. */
static inline __attribute__((always_inline)) int cb_nearest_dim(const struct codebook *cb, const float *t,
                                                                float *err_out, const int DIM)
{
    int key = 0, mult = 1;
    for (int j = 0; j < DIM; j++, mult *= cb->n_lev) {
        int k = 0;
        while (k + 1 < cb->n_lev && t[j] > cb->mid[k]) k++;
        key += k * mult;
    }
    uint32_t lo = 0, hi = (uint32_t)cb->n_pts;
    if (cb->start) {
        lo = cb->start[key];
        hi = cb->start[key + 1];
    }
    int best = 0;
    float best_e = INFINITY;
    for (uint32_t c = lo; c < hi; c++) {
        int p = cb->start ? cb->cand[c] : (int)c;
        const float *q = cb->pt + p * DIM;
        float e = 0;
        for (int j = 0; j < DIM; j++) e += (t[j] - q[j]) * (t[j] - q[j]);
        if (e < best_e) {
            best_e = e;
            best = p;
        }
    }
    *err_out = best_e;
    return best;
}

static int cb_nearest4(const struct codebook *cb, const float *t, float *err_out)
{
    return cb_nearest_dim(cb, t, err_out, 4);
}

static int cb_nearest8(const struct codebook *cb, const float *t, float *err_out)
{
    return cb_nearest_dim(cb, t, err_out, 8);
}

/* ------------------------------------------------------------ units */

/* The codes of one unit: codebook indices per group, sign bytes (IQ3), shift signs (IQ1). */
struct unit_code {
    uint16_t idx[8];
    uint8_t sgn[4];
    uint8_t neg[4];
};

/* Encodes x[unit] at scale s (x ~ s * v); writes the codes and v; returns sum (x - s v)^2. */
typedef double (*enc_fn)(const float *x, float s, struct unit_code *c, float *v);

/* IQ3: 8 groups of 4 magnitudes, signs from x; IQ3_XXS needs an even count of negatives in
 * each 8: when odd, the sign whose flip costs least (4 |x| s |v|) is flipped. */
static double enc_iq3(const float *x, float s, struct unit_code *c, float *v, const struct codebook *cb,
                      int parity)
{
    const float inv = 1.0f / s;
    for (int k = 0; k < 8; k++) {
        float t[4], e;
        for (int j = 0; j < 4; j++) t[j] = fabsf(x[4 * k + j]) * inv;
        c->idx[k] = (uint16_t)cb_nearest4(cb, t, &e);
        for (int j = 0; j < 4; j++) v[4 * k + j] = cb->pt[c->idx[k] * 4 + j];
    }
    for (int l = 0; l < 4; l++) {
        uint8_t sg = 0;
        int cheap = 0;
        for (int j = 0; j < 8; j++) {
            const int e = 8 * l + j;
            if (x[e] < 0) sg |= (uint8_t)(1u << j);
            if (fabsf(x[e]) * v[e] < fabsf(x[8 * l + cheap]) * v[8 * l + cheap]) cheap = j;
        }
        if (parity && __builtin_parity(sg)) sg ^= (uint8_t)(1u << cheap);
        c->sgn[l] = sg;
        for (int j = 0; j < 8; j++)
            if (sg >> j & 1) v[8 * l + j] = -v[8 * l + j];
    }
    double err = 0;
    for (int e = 0; e < 32; e++) err += (double)(x[e] - s * v[e]) * (x[e] - s * v[e]);
    return err;
}

static double enc_iq3_xxs(const float *x, float s, struct unit_code *c, float *v)
{
    return enc_iq3(x, s, c, v, &g_cb[CB_IQ3XXS], 1);
}

static double enc_iq3_s(const float *x, float s, struct unit_code *c, float *v)
{
    return enc_iq3(x, s, c, v, &g_cb[CB_IQ3S], 0);
}

/* IQ1: n_groups groups of 8; the shift sign is one per unit (IQ1_S) or per group (IQ1_M). */
static double enc_iq1(const float *x, float s, struct unit_code *c, float *v, int n_groups, int shared_shift)
{
    const struct codebook *cb = &g_cb[CB_IQ1];
    const float inv = 1.0f / s;
    double total[2] = {0, 0};
    uint16_t idx[2][4];
    for (int neg = 0; neg < 2; neg++) {
        const float delta = neg ? -0.125f : 0.125f;
        for (int k = 0; k < n_groups; k++) {
            float t[8], e;
            for (int j = 0; j < 8; j++) t[j] = x[8 * k + j] * inv - delta;
            idx[neg][k] = (uint16_t)cb_nearest8(cb, t, &e);
        }
    }
    for (int k = 0; k < n_groups; k++) {
        double ek[2];
        for (int neg = 0; neg < 2; neg++) {
            const float delta = neg ? -0.125f : 0.125f;
            ek[neg] = 0;
            for (int j = 0; j < 8; j++) {
                float r = x[8 * k + j] - s * (cb->pt[idx[neg][k] * 8 + j] + delta);
                ek[neg] += (double)r * r;
            }
            total[neg] += ek[neg];
        }
        if (!shared_shift) c->neg[k] = ek[1] < ek[0];
    }
    if (shared_shift)
        for (int k = 0; k < n_groups; k++) c->neg[k] = total[1] < total[0];
    double err = 0;
    for (int k = 0; k < n_groups; k++) {
        const int neg = c->neg[k];
        const float delta = neg ? -0.125f : 0.125f;
        c->idx[k] = idx[neg][k];
        for (int j = 0; j < 8; j++) {
            v[8 * k + j] = cb->pt[c->idx[k] * 8 + j] + delta;
            err += (double)(x[8 * k + j] - s * v[8 * k + j]) * (x[8 * k + j] - s * v[8 * k + j]);
        }
    }
    return err;
}

static double enc_iq1_s(const float *x, float s, struct unit_code *c, float *v)
{
    return enc_iq1(x, s, c, v, 4, 1);
}

static double enc_iq1_m(const float *x, float s, struct unit_code *c, float *v)
{
    return enc_iq1(x, s, c, v, 2, 0);
}

/* ------------------------------------------------------------ scales */

struct spec {
    int unit;      /* elements per scale */
    int ls_max;    /* scale codes 0..ls_max, multiplier (2 ls + 1) * mult_c */
    float mult_c;  /* 1/4 (IQ3_XXS) or 1 */
    float v_max;   /* largest |v| of the codebook */
    enc_fn enc;
};

/* The unit's best free scale: a sweep of s = amax / v_max * f, f = 0.3, 0.5, .., 1.3, each
 * refitted by least squares (s = <x, v> / <v, v> with its codes). 0 for all-zero input.
 * (Steps of 0.1 cost twice the time for 0.1% less round-trip error.) */
static float unit_scale(const float *x, const struct spec *q)
{
    float amax = 0, v[32];
    for (int j = 0; j < q->unit; j++) amax = fmaxf(amax, fabsf(x[j]));
    if (amax == 0) return 0;
    double best = INFINITY;
    float best_s = 0;
    struct unit_code c;
    for (int k = 0; k < 6; k++) {
        float s = amax / q->v_max * (0.3f + 0.2f * (float)k);
        double e = q->enc(x, s, &c, v), xv = 0, vv = 0;
        for (int j = 0; j < q->unit; j++) {
            xv += (double)x[j] * v[j];
            vv += (double)v[j] * v[j];
        }
        if (vv > 0 && xv > 0) { /* the least-squares scale of these codes errs no more */
            float s2 = (float)(xv / vv);
            double e2 = 0;
            for (int j = 0; j < q->unit; j++) e2 += (double)(x[j] - s2 * v[j]) * (x[j] - s2 * v[j]);
            if (e2 < e) {
                e = e2;
                s = s2;
            }
        }
        if (e < best) {
            best = e;
            best_s = s;
        }
    }
    return best_s;
}

/* One block of 256: the block scale d (returned, already rounded to fp16 in *d16) and per
 * unit its scale code and codes, encoded at the stored scales. */
static void quant_block(const float *x, const struct spec *q, sw_f16 *d16, int *ls, struct unit_code *codes)
{
    const int n_units = SW_QK_K / q->unit;
    float sc[16], smax = 0;
    for (int u = 0; u < n_units; u++) {
        sc[u] = unit_scale(x + q->unit * u, q);
        smax = fmaxf(smax, sc[u]);
    }
    *d16 = sw_k_f32_to_f16(smax / (q->mult_c * (float)(2 * q->ls_max + 1)));
    const float d = sw_k_f16_to_f32(*d16);
    memset(codes, 0, sizeof(*codes) * (size_t)n_units);
    for (int u = 0; u < n_units; u++) {
        ls[u] = 0;
        if (d == 0) continue; /* scale 0: any codes decode to 0 */
        float v[32];
        struct unit_code c;
        double best = INFINITY;
        const int l0 = clampi((int)lrintf((sc[u] / (d * q->mult_c) - 1) * 0.5f), 0, q->ls_max);
        for (int l = l0 - 1; l <= l0 + 1; l++) {
            if (l < 0 || l > q->ls_max) continue;
            double e = q->enc(x + q->unit * u, d * q->mult_c * (float)(2 * l + 1), &c, v);
            if (e < best) {
                best = e;
                ls[u] = l;
                codes[u] = c;
            }
        }
    }
}

/* ------------------------------------------------------------ the formats */

void sw__k_quantize_iq3_xxs_ref(const float *x, void *dst, int64_t n)
{
    pthread_once(&g_cb_once, cb_init);
    const struct spec q = {32, 15, 0.25f, 62.0f, enc_iq3_xxs};
    struct sw_block_iq3_xxs *b = dst;
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++, x += SW_QK_K) {
        struct unit_code c[8];
        int ls[8];
        quant_block(x, &q, &b->d, ls, c);
        for (int ib = 0; ib < 8; ib++) {
            uint32_t aux = (uint32_t)ls[ib] << 28;
            for (int k = 0; k < 8; k++) b->qs[8 * ib + k] = (uint8_t)c[ib].idx[k];
            for (int l = 0; l < 4; l++) aux |= (uint32_t)(c[ib].sgn[l] & 127) << (7 * l);
            memcpy(b->qs + 64 + 4 * ib, &aux, 4);
        }
    }
}

void sw__k_quantize_iq3_s_ref(const float *x, void *dst, int64_t n)
{
    pthread_once(&g_cb_once, cb_init);
    const struct spec q = {32, 15, 1.0f, 15.0f, enc_iq3_s};
    struct sw_block_iq3_s *b = dst;
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++, x += SW_QK_K) {
        struct unit_code c[8];
        int ls[8];
        quant_block(x, &q, &b->d, ls, c);
        memset(b->qh, 0, sizeof(b->qh));
        memset(b->scales, 0, sizeof(b->scales));
        for (int ib = 0; ib < 8; ib++) {
            for (int k = 0; k < 8; k++) {
                b->qs[8 * ib + k] = (uint8_t)c[ib].idx[k];
                b->qh[ib] |= (uint8_t)((c[ib].idx[k] >> 8) << k);
            }
            memcpy(b->signs + 4 * ib, c[ib].sgn, 4);
            b->scales[ib / 2] |= (uint8_t)(ls[ib] << (4 * (ib % 2)));
        }
    }
}

void sw__k_quantize_iq1_s_ref(const float *x, void *dst, int64_t n)
{
    pthread_once(&g_cb_once, cb_init);
    const struct spec q = {32, 7, 1.0f, 1.125f, enc_iq1_s};
    struct sw_block_iq1_s *b = dst;
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++, x += SW_QK_K) {
        struct unit_code c[8];
        int ls[8];
        quant_block(x, &q, &b->d, ls, c);
        for (int ib = 0; ib < 8; ib++) {
            uint16_t h = (uint16_t)(ls[ib] << 12 | c[ib].neg[0] << 15);
            for (int k = 0; k < 4; k++) {
                b->qs[4 * ib + k] = (uint8_t)c[ib].idx[k];
                h |= (uint16_t)((c[ib].idx[k] >> 8) << (3 * k));
            }
            b->qh[ib] = h;
        }
    }
}

void sw__k_quantize_iq1_m_ref(const float *x, void *dst, int64_t n)
{
    pthread_once(&g_cb_once, cb_init);
    const struct spec q = {16, 7, 1.0f, 1.125f, enc_iq1_m};
    struct sw_block_iq1_m *b = dst;
    for (int64_t i = 0; i < n / SW_QK_K; i++, b++, x += SW_QK_K) {
        struct unit_code c[16];
        int ls[16];
        sw_f16 d16;
        quant_block(x, &q, &d16, ls, c);
        memset(b->qh, 0, sizeof(b->qh));
        uint16_t w[4] = {0, 0, 0, 0};
        for (int u = 0; u < 16; u++) {
            for (int k = 0; k < 2; k++) {
                const int g = 2 * u + k;
                b->qs[g] = (uint8_t)c[u].idx[k];
                b->qh[g / 2] |= (uint8_t)(((c[u].idx[k] >> 8) | c[u].neg[k] << 3) << (4 * (g % 2)));
            }
            w[u / 4] |= (uint16_t)(ls[u] << (3 * (u % 4)));
        }
        /* the fp16 d in the top nibbles: word k takes its bits 4k..4k+3 */
        for (int k = 0; k < 4; k++) w[k] |= (uint16_t)(((d16 >> (4 * k)) & 0xF) << 12);
        memcpy(b->scales, w, 8);
    }
}
