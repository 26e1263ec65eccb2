// moe_group.comp — groups a step's (token, expert) slots by expert for the grouped
// expert-indexed matmul (mm.comp -DMM_IDG): one workgroup counts each expert's slots,
// lays out tiles of up to `tb` slots of one expert (tile i: expert, first, count at
// tiles[1 + 3i ..], their number at tiles[0]) and lists the slots expert by expert.
// The order of slots within an expert does not matter: each slot's output row is its own.
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) coherent buffer U { uint u[]; }; // scratch, as uints
layout(push_constant) uniform P {
    uint S, n, tb;
    uint id_off, cnt_off, tile_off, list_off; // 4-byte words of the scratch buffer
} p;
void main()
{
    const uint lid = gl_LocalInvocationID.x;
    for (uint e = lid; e < p.n; e += 256u) u[p.cnt_off + e] = 0u;
    memoryBarrierBuffer();
    barrier();
    for (uint s = lid; s < p.S; s += 256u) {
        const uint e = u[p.id_off + s];
        if (e < p.n) atomicAdd(u[p.cnt_off + e], 1u);
    }
    memoryBarrierBuffer();
    barrier();
    if (lid == 0u) { // counts -> each expert's first list index, and the tiles
        uint off = 0u, nt = 0u;
        for (uint e = 0u; e < p.n; e++) {
            const uint c = u[p.cnt_off + e];
            for (uint i = 0u; i < c; i += p.tb) {
                const uint tb = p.tile_off + 1u + 3u * nt;
                u[tb] = e;
                u[tb + 1u] = off + i;
                u[tb + 2u] = min(p.tb, c - i);
                nt++;
            }
            u[p.cnt_off + e] = off;
            off += c;
        }
        u[p.tile_off] = nt;
    }
    memoryBarrierBuffer();
    barrier();
    for (uint s = lid; s < p.S; s += 256u) {
        const uint e = u[p.id_off + s];
        if (e < p.n) u[p.list_off + atomicAdd(u[p.cnt_off + e], 1u)] = s;
    }
}
