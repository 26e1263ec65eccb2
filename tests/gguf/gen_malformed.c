/* gen_malformed.c — writes the malformed cases of malformed_cases.h to a folder (the committed
 * tests/gguf/malformed/), and with a second folder also the fuzz seed corpus: small valid
 * files plus the malformed ones.  Usage: gen_malformed MALFORMED_DIR [CORPUS_DIR] */
#include <stdio.h>

#include "malformed_cases.h"
#include "testgen.h"

static int write_file(const char *dir, const char *name, const void *p, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return sw_file_write_atomic(path, p, n);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: gen_malformed MALFORMED_DIR [CORPUS_DIR]\n");
        return 2;
    }
    int rc = sw_mkdir_p(argv[1]);
    if (argc > 2) rc |= sw_mkdir_p(argv[2]);
    for (size_t i = 0; i < SW_ARRAY_LEN(malformed_cases) && !rc; i++) {
        struct sw_buf b;
        sw_buf_init(&b);
        malformed_cases[i].build(&b);
        char name[128];
        snprintf(name, sizeof name, "%s.gguf", malformed_cases[i].name);
        rc |= write_file(argv[1], name, b.data ? (const void *)b.data : "", b.len);
        if (argc > 2) {
            snprintf(name, sizeof name, "bad-%s.gguf", malformed_cases[i].name);
            rc |= write_file(argv[2], name, b.data ? (const void *)b.data : "", b.len);
        }
        sw_buf_free(&b);
    }
    if (argc > 2 && !rc) {
        char path[1024];
        struct tg_opts o1 = { .n_layers = 1, .n_vocab = 8 };
        snprintf(path, sizeof path, "%s/tiny-model.gguf", argv[2]);
        rc |= tg_write_model(path, &o1);
        struct tg_opts o2 = { .n_layers = 2, .n_vocab = 4, .tied = 1, .alignment = 8 };
        snprintf(path, sizeof path, "%s/tiny-tied-align8.gguf", argv[2]);
        rc |= tg_write_model(path, &o2);
        /* Metadata only: arrays of strings and nested arrays, no tensors. */
        struct sw_gguf_writer *w;
        snprintf(path, sizeof path, "%s/metadata-only.gguf", argv[2]);
        struct tg_opts o3 = { .n_layers = 0, .n_vocab = 5 };
        rc |= sw_gguf_writer_new(path, 32, &w);
        if (!rc) {
            rc |= tg_add_metadata(w, &o3);
            rc |= sw_gguf_writer_write_header(w);
            rc |= sw_gguf_writer_finish(w);
        }
    }
    if (rc) fprintf(stderr, "gen_malformed: %s\n", sw_strerror(rc));
    return rc ? 1 : 0;
}
