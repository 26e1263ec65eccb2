/* planner.c — which shard a node should hold: `--shard auto` at start and re-planning when
 * a shard has nobody working on it. Deterministic: every node that sees the same view
 * computes the same assignment, and simultaneous joiners spread out by hashing
 * (node id, shard) instead of all taking shard 0. Not for: carrying the move out (node.c). */
#include <stdlib.h>
#include <string.h>

#include "swarm/swarm.h"

uint64_t sw_plan_hash(const uint8_t id[SW_NODE_ID_LEN], uint32_t shard)
{
    uint8_t buf[SW_NODE_ID_LEN + 4], h[32];
    memcpy(buf, id, SW_NODE_ID_LEN);
    sw_put_be32(buf + SW_NODE_ID_LEN, shard);
    sw_sha256(buf, sizeof buf, h);
    return sw_get_be64(h);
}

static int fits(const struct sw_plan_input *in, uint64_t budget, uint32_t shard)
{
    if (!in || !in->shard_bytes || budget == 0) return 1;
    return in->shard_bytes[shard] <= budget;
}

static const struct sw_view_node *self_of(const struct sw_view *v)
{
    for (size_t i = 0; i < sw_view_count(v); i++)
        if (sw_view_at(v, i)->self) return sw_view_at(v, i);
    return NULL;
}

static int on_shard(const struct sw_view_node *n)
{
    return n->live && !n->cap.seed_all && n->cap.shard >= 0;
}

/* Actually getting or serving its shard: a node waiting for a command (--no-auto-fetch) or
 * one that failed to load does not make its shard "served". */
static int working(const struct sw_view_node *n)
{
    return on_shard(n) && n->cap.phase >= SW_PHASE_FETCHING && n->cap.phase <= SW_PHASE_LOADED;
}

int sw_plan_pick(const struct sw_view *v, const struct sw_plan_input *in)
{
    if (!v) return SW_EINVAL;
    uint32_t ns = sw_view_n_shards(v);
    const struct sw_view_node *me = self_of(v);
    int best = -1, bg = 0;
    uint32_t bl = 0, bc = 0;
    uint64_t bh = 0;
    for (uint32_t s = 0; s < ns; s++) {
        if (!fits(in, in ? in->mem_budget : 0, s)) continue;
        uint32_t loaded = 0, claims = 0;
        for (size_t i = 0; i < sw_view_count(v); i++) {
            const struct sw_view_node *n = sw_view_at(v, i);
            if (n->self || !working(n) || (uint32_t)n->cap.shard != s) continue;
            if (n->cap.phase == SW_PHASE_LOADED) loaded++;
            else claims++;
        }
        uint64_t h = me ? sw_plan_hash(me->cap.node_id, s) : s;
        /* on the GPU whole: a node with a device takes, of equally served shards, one it
         * computes entirely there (shards differ: the last holds the output matrix) */
        int g = in && in->gpu_mem && in->shard_bytes && in->shard_bytes[s] <= in->gpu_mem;
        if (best < 0 || loaded < bl || (loaded == bl && claims < bc) ||
            (loaded == bl && claims == bc && g > bg) || (loaded == bl && claims == bc && g == bg && h < bh)) {
            best = (int)s;
            bl = loaded;
            bc = claims;
            bg = g;
            bh = h;
        }
    }
    return best < 0 ? SW_ENOTFOUND : best;
}

struct spare {
    const struct sw_view_node *n;
    int loaded;
    uint64_t h;
    int taken;
};

static int spare_cmp(const void *a, const void *b)
{
    const struct spare *x = a, *y = b;
    if (x->loaded != y->loaded) return x->loaded - y->loaded; /* claimers move first */
    if (x->h != y->h) return x->h < y->h ? -1 : 1;
    return memcmp(x->n->cap.node_id, y->n->cap.node_id, SW_NODE_ID_LEN);
}

int sw_plan_review(const struct sw_view *v, const struct sw_plan_input *in)
{
    if (!v) return -1;
    const struct sw_view_node *me = self_of(v);
    if (!me || me->cap.shard < 0 || me->cap.seed_all) return -1;
    uint32_t ns = sw_view_n_shards(v);
    size_t nn = sw_view_count(v);
    uint8_t *served = calloc(ns, 1);
    struct spare *sp = calloc(nn ? nn : 1, sizeof *sp);
    const struct sw_view_node **keeper = calloc(ns, sizeof *keeper);
    int result = -1;
    if (!served || !sp || !keeper) goto done;
    /* The keeper of each shard: a loaded node first, then the lowest hash. */
    for (size_t i = 0; i < nn; i++) {
        const struct sw_view_node *n = sw_view_at(v, i);
        if (!on_shard(n)) continue;
        uint32_t s = (uint32_t)n->cap.shard;
        if (working(n)) served[s] = 1;
        const struct sw_view_node *k = keeper[s];
        if (!k) { keeper[s] = n; continue; }
        int np = !n->cap.movable, kp = !k->cap.movable; /* pinned nodes keep their shard */
        int nl = n->cap.phase == SW_PHASE_LOADED, kl = k->cap.phase == SW_PHASE_LOADED;
        uint64_t hn = sw_plan_hash(n->cap.node_id, s), hk = sw_plan_hash(k->cap.node_id, s);
        if (np != kp) { if (np) keeper[s] = n; continue; }
        if (nl > kl || (nl == kl && (hn < hk || (hn == hk && memcmp(n->cap.node_id, k->cap.node_id, SW_NODE_ID_LEN) < 0))))
            keeper[s] = n;
    }
    size_t n_sp = 0;
    for (size_t i = 0; i < nn; i++) {
        const struct sw_view_node *n = sw_view_at(v, i);
        if (!on_shard(n) || keeper[n->cap.shard] == n || !n->cap.movable) continue;
        sp[n_sp].n = n;
        sp[n_sp].loaded = n->cap.phase == SW_PHASE_LOADED;
        sp[n_sp].h = sw_plan_hash(n->cap.node_id, (uint32_t)n->cap.shard);
        n_sp++;
    }
    qsort(sp, n_sp, sizeof *sp, spare_cmp);
    for (uint32_t u = 0; u < ns; u++) {
        if (served[u]) continue;
        for (size_t j = 0; j < n_sp; j++) {
            if (sp[j].taken) continue;
            const struct sw_view_node *n = sp[j].n;
            uint64_t budget;
            if (n->self) budget = in ? in->mem_budget : 0;
            else {
                budget = n->cap.mem_free;
                if (budget && sp[j].loaded && in && in->shard_bytes)
                    budget += in->shard_bytes[n->cap.shard]; /* it would unload its shard */
            }
            if (!fits(in, budget, u)) continue;
            sp[j].taken = 1;
            if (n->self) { result = (int)u; goto done; }
            break;
        }
    }
done:
    free(served);
    free(sp);
    free(keeper);
    return result;
}
