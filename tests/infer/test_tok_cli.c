/* test_tok_cli.c — `shardswarm tokenize` end to end: ids on one line, flags, and the exit
 * codes for usage errors (2) and unreadable inputs (1). Runs the binary named by $SW_BIN;
 * the cases that need a vocabulary skip without ../shared/data. */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

static const char *bin;

/* Runs "bin ARGS" through the shell; stdout into out (NUL-terminated). Returns the exit status. */
static int run(const char *args, char *out, size_t cap)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>/dev/null", bin, args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int main(void)
{
    bin = getenv("SW_BIN");
    if (!bin || access(bin, X_OK) != 0) SW_TEST_SKIP("shardswarm binary not found ($SW_BIN)");
    char out[65536];
    CHECK_EQ_INT(run("tokenize", out, sizeof out), 2);
    CHECK_EQ_INT(run("tokenize -m", out, sizeof out), 2);
    CHECK_EQ_INT(run("tokenize -m x.gguf --frobnicate hi", out, sizeof out), 2);
    CHECK_EQ_INT(run("tokenize -m x.gguf", out, sizeof out), 2);               /* no text */
    CHECK_EQ_INT(run("tokenize -m x.gguf hi --file y", out, sizeof out), 2);   /* both */
    CHECK_EQ_INT(run("tokenize -m x.gguf one two", out, sizeof out), 2);
    CHECK_EQ_INT(run("tokenize --help", out, sizeof out), 0);
    CHECK(strstr(out, "usage: shardswarm tokenize") != NULL);
    CHECK_EQ_INT(run("tokenize -m /nonexistent/model.gguf hi", out, sizeof out), 1);

    const char *data = sw_test_shared_data();
    if (!data) {
        fprintf(stderr, "shared data absent: vocabulary cases skipped\n");
        return SW_TEST_DONE();
    }
    char args[8192];
    snprintf(args, sizeof args, "tokenize -m '%s/vocab/ggml-vocab-llama-spm.gguf' 'Hello world'", data);
    CHECK_EQ_INT(run(args, out, sizeof out), 0);
    CHECK_EQ_STR(out, "1 15043 3186\n");
    snprintf(args, sizeof args, "tokenize -m '%s/vocab/ggml-vocab-llama-spm.gguf' --no-bos 'Hello world'", data);
    CHECK_EQ_INT(run(args, out, sizeof out), 0);
    CHECK_EQ_STR(out, "15043 3186\n");
    /* special tokens: parsed by default, plain text with --no-special */
    snprintf(args, sizeof args, "tokenize -m '%s/vocab/ggml-vocab-llama-spm.gguf' --no-bos 'a</s>'", data);
    CHECK_EQ_INT(run(args, out, sizeof out), 0);
    CHECK(strstr(out, " 2\n") != NULL);
    snprintf(args, sizeof args, "tokenize -m '%s/vocab/ggml-vocab-llama-spm.gguf' --no-bos --no-special 'a</s>'",
             data);
    CHECK_EQ_INT(run(args, out, sizeof out), 0);
    CHECK(strstr(out, " 2\n") == NULL && strstr(out, " 2 ") == NULL);
    /* --file: bytes as they are (the trailing newline is a token too) */
    const char *dir = sw_test_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/in.txt", dir ? dir : "/tmp");
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        fputs("Hello world\n", f);
        fclose(f);
        snprintf(args, sizeof args, "tokenize -m '%s/vocab/ggml-vocab-gpt-2.gguf' --file '%s'", data, path);
        CHECK_EQ_INT(run(args, out, sizeof out), 0);
        CHECK_EQ_STR(out, "15496 995 198\n");
        unlink(path);
    }
    snprintf(args, sizeof args, "tokenize -m '%s/vocab/ggml-vocab-gpt-2.gguf' --file /nonexistent/in.txt", data);
    CHECK_EQ_INT(run(args, out, sizeof out), 1);
    /* a file that is not a model */
    snprintf(args, sizeof args, "tokenize -m '%s/vocab/ggml-vocab-gpt-2.gguf.inp' hi", data);
    CHECK_EQ_INT(run(args, out, sizeof out), 1);
    if (dir) rmdir(dir);
    return SW_TEST_DONE();
}
