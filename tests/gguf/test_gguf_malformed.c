/* test_gguf_malformed.c — every hand-made malformed file (tests/gguf/malformed/) is refused
 * with the expected code and an error naming the field and the byte offset, and the committed
 * files equal what malformed_cases.h builds. Then every truncation and many corruptions of a
 * valid file: never a crash (run under ASan+UBSan by `make test`). */
#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include "malformed_cases.h"
#include "test.h"
#include "testgen.h"

static void test_cases(void)
{
    const char *src = getenv("SW_SOURCE_DIR");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/gguf/malformed", src && *src ? src : ".");
    for (size_t i = 0; i < SW_ARRAY_LEN(malformed_cases); i++) {
        const struct malformed_case *mc = &malformed_cases[i];
        struct sw_buf b;
        sw_buf_init(&b);
        uint64_t at = mc->build(&b);
        char err[512], want[256];
        struct sw_gguf *g = (struct sw_gguf *)1;
        int rc = sw_gguf_open_mem(b.data ? b.data : (const uint8_t *)"", b.len, &g, err, sizeof err);
        CHECK_MSG(rc == mc->rc, "%s: rc %d (%s), expected %d; error: %s", mc->name, rc, sw_strerror(rc), mc->rc, err);
        CHECK(g == NULL);
        snprintf(want, sizeof want, "%s at byte %llu:", mc->field, (unsigned long long)at);
        CHECK_MSG(strstr(err, want) != NULL, "%s: error \"%s\" lacks \"%s\"", mc->name, err, want);

        /* The committed file: same bytes, same error, prefixed by its path. */
        char path[1200];
        snprintf(path, sizeof path, "%s/%s.gguf", dir, mc->name);
        uint8_t *data = NULL;
        size_t len = 0;
        int frc = sw_file_read_all(path, 1 << 20, &data, &len);
        CHECK_MSG(frc == 0, "%s: cannot read (%s); regenerate with gen_malformed", path, sw_strerror(frc));
        if (!frc) {
            CHECK_MSG(len == b.len && (len == 0 || !memcmp(data, b.data, len)),
                      "%s differs from malformed_cases.h; regenerate with gen_malformed", path);
            free(data);
            rc = sw_gguf_open(path, &g, err, sizeof err);
            CHECK_EQ_INT(rc, mc->rc);
            CHECK_MSG(!strncmp(err, path, strlen(path)) && strstr(err, want),
                      "%s: error \"%s\"", mc->name, err);
        }
        sw_buf_free(&b);
    }
    /* Every file in the folder is a known case. */
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        int known = 0;
        for (size_t i = 0; i < SW_ARRAY_LEN(malformed_cases); i++) {
            char n[128];
            snprintf(n, sizeof n, "%s.gguf", malformed_cases[i].name);
            if (!strcmp(n, e->d_name)) known = 1;
        }
        CHECK_MSG(known, "%s/%s is not in malformed_cases.h", dir, e->d_name);
    }
    if (d) closedir(d);
}

static uint8_t *small_model(size_t *len)
{
    const char *tmp = sw_test_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/m.gguf", tmp ? tmp : "/tmp");
    struct tg_opts o = { .n_layers = 2, .n_vocab = 16 };
    if (tg_write_model(path, &o)) return NULL;
    uint8_t *data = NULL;
    if (sw_file_read_all(path, 1 << 24, &data, len)) return NULL;
    remove(path);
    if (tmp) remove(tmp);
    return data;
}

/* Every prefix of a valid file is refused cleanly (the data section included). */
static void test_truncations(void)
{
    size_t len = 0;
    uint8_t *data = small_model(&len);
    CHECK(data != NULL);
    if (!data) return;
    struct sw_gguf *g = NULL;
    char err[512];
    CHECK_EQ_INT(sw_gguf_open_mem(data, len, &g, err, sizeof err), 0);
    uint64_t header = g ? sw_gguf_data_offset(g) : 0;
    sw_gguf_close(g);
    size_t refused = 0;
    for (size_t n = 0; n < len; n += (n < header + 64 ? 1 : 97)) {
        /* A copy of exactly n bytes, so that ASan sees any read past the end. */
        uint8_t *p = malloc(n ? n : 1);
        memcpy(p, data, n);
        int rc = sw_gguf_open_mem(p, n, &g, err, sizeof err);
        if (rc) {
            refused++;
            CHECK_MSG(strstr(err, " at byte ") != NULL, "prefix %zu: error without offset: %s", n, err);
        } else {
            CHECK_MSG(0, "prefix of %zu of %zu bytes accepted", n, len);
            sw_gguf_close(g);
        }
        free(p);
    }
    CHECK(refused > 0);
    free(data);
}

/* Bytes of the header changed one at a time: accepted or refused, never a crash, and an
 * accepted file's tensors always lie inside it. */
static void test_corruptions(void)
{
    size_t len = 0;
    uint8_t *data = small_model(&len);
    if (!data) return;
    struct sw_gguf *g = NULL;
    char err[512];
    CHECK_EQ_INT(sw_gguf_open_mem(data, len, &g, err, sizeof err), 0);
    size_t header = g ? (size_t)sw_gguf_data_offset(g) : 0;
    sw_gguf_close(g);
    static const uint8_t vals[] = { 0x00, 0x01, 0x7f, 0x80, 0xff, 0x40 };
    size_t accepted = 0, refused = 0;
    for (size_t i = 0; i < header; i++) {
        for (size_t k = 0; k < sizeof vals; k++) {
            uint8_t old = data[i];
            if (old == vals[k]) continue;
            data[i] = vals[k];
            int rc = sw_gguf_open_mem(data, len, &g, err, sizeof err);
            if (rc == 0) {
                accepted++;
                for (uint64_t t = 0; t < sw_gguf_n_tensors(g); t++) {
                    const struct sw_gguf_tensor *ti = sw_gguf_tensor_at(g, t);
                    CHECK(ti->data >= data && ti->data + ti->n_bytes <= data + len);
                }
                for (uint64_t j = 0; j < sw_gguf_n_kv(g); j++) {
                    const struct sw_gguf_kv *kv = sw_gguf_kv_at(g, j);
                    if (kv->type == SW_GGUF_ARRAY && kv->v.arr.elem_type == SW_GGUF_STRING) {
                        struct sw_gguf_str s;
                        for (uint64_t x = 0; x < kv->v.arr.n; x++)
                            if (!sw_gguf_arr_str(&kv->v.arr, x, &s))
                                CHECK((const uint8_t *)s.ptr + s.len <= data + len);
                    }
                }
                sw_gguf_close(g);
            } else {
                refused++;
            }
            data[i] = old;
        }
    }
    fprintf(stderr, "  %zu header bytes x %zu values: %zu accepted, %zu refused\n", header, sizeof vals,
            accepted, refused);
    CHECK(refused > 0);
    free(data);
}

int main(void)
{
    SW_RUN(test_cases);
    SW_RUN(test_truncations);
    SW_RUN(test_corruptions);
    return SW_TEST_DONE();
}
