/* test.h — the unit-test toolbox: checks that print both sides, and a tiny runner.
 * A test file defines static void test_x(void) functions and lists them in main via
 * SW_RUN(test_x). Exit status: 0 all passed, 1 failures, 77 skipped (CTest SKIP). */
#ifndef SW_TEST_H
#define SW_TEST_H

#include <ftw.h>
#include <sys/stat.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int sw_test_failures;
static int sw_test_checks;

#define SW_FAIL_AT(...)                                                         \
    do {                                                                        \
        fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);                   \
        fprintf(stderr, __VA_ARGS__);                                           \
        fputc('\n', stderr);                                                    \
        sw_test_failures++;                                                     \
    } while (0)

#define CHECK(cond)                                                             \
    do {                                                                        \
        sw_test_checks++;                                                       \
        if (!(cond)) SW_FAIL_AT("%s", #cond);                                   \
    } while (0)

#define CHECK_MSG(cond, ...)                                                    \
    do {                                                                        \
        sw_test_checks++;                                                       \
        if (!(cond)) SW_FAIL_AT(__VA_ARGS__);                                   \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                      \
    do {                                                                        \
        long long sw_a_ = (long long)(a), sw_b_ = (long long)(b);               \
        sw_test_checks++;                                                       \
        if (sw_a_ != sw_b_) SW_FAIL_AT("%s == %s: %lld != %lld", #a, #b, sw_a_, sw_b_); \
    } while (0)

#define CHECK_EQ_U64(a, b)                                                      \
    do {                                                                        \
        unsigned long long sw_a_ = (unsigned long long)(a), sw_b_ = (unsigned long long)(b); \
        sw_test_checks++;                                                       \
        if (sw_a_ != sw_b_) SW_FAIL_AT("%s == %s: %llu != %llu", #a, #b, sw_a_, sw_b_); \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                      \
    do {                                                                        \
        const char *sw_a_ = (a), *sw_b_ = (b);                                  \
        sw_test_checks++;                                                       \
        if (!sw_a_ || !sw_b_ || strcmp(sw_a_, sw_b_))                           \
            SW_FAIL_AT("%s == %s: \"%s\" != \"%s\"", #a, #b, sw_a_ ? sw_a_ : "(null)", \
                       sw_b_ ? sw_b_ : "(null)");                               \
    } while (0)

#define CHECK_EQ_MEM(a, b, n)                                                   \
    do {                                                                        \
        sw_test_checks++;                                                       \
        if (memcmp((a), (b), (n))) SW_FAIL_AT("%s and %s differ in %zu bytes", #a, #b, (size_t)(n)); \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                   \
    do {                                                                        \
        double sw_a_ = (double)(a), sw_b_ = (double)(b);                        \
        sw_test_checks++;                                                       \
        if (!(fabs(sw_a_ - sw_b_) <= (tol)))                                    \
            SW_FAIL_AT("%s ~= %s: %.9g vs %.9g (tol %g)", #a, #b, sw_a_, sw_b_, (double)(tol)); \
    } while (0)

#define SW_RUN(fn)                                                              \
    do {                                                                        \
        int sw_before_ = sw_test_failures;                                      \
        fn();                                                                   \
        fprintf(stderr, "%s %s\n", sw_test_failures == sw_before_ ? "ok  " : "FAIL", #fn); \
    } while (0)

#define SW_TEST_SKIP(...)                                                       \
    do {                                                                        \
        fprintf(stderr, "SKIP: ");                                              \
        fprintf(stderr, __VA_ARGS__);                                           \
        fputc('\n', stderr);                                                    \
        exit(77);                                                               \
    } while (0)

#define SW_TEST_DONE()                                                          \
    (fprintf(stderr, "%d checks, %d failed\n", sw_test_checks, sw_test_failures), \
     sw_test_failures ? 1 : 0)

/* The shared data folder (models/, vocab/), from $SW_SHARED_DATA or the build default;
 * NULL when it does not exist (tests then skip with a message). */
static inline const char *sw_test_shared_data(void)
{
    const char *p = getenv("SW_SHARED_DATA");
#ifdef SW_SHARED_DATA_DEFAULT
    if (!p || !*p) p = SW_SHARED_DATA_DEFAULT;
#endif
    if (!p) return NULL;
    FILE *f;
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/models/stories260K.gguf", p);
    f = fopen(probe, "rb");
    if (!f) return NULL;
    fclose(f);
    return p;
}

/* A fresh temporary folder for the test (mkdtemp); caller may leave it. */
static inline const char *sw_test_tmpdir(void)
{
    static char dir[256];
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/sw-test-XXXXXX", base && *base ? base : "/tmp");
    extern char *mkdtemp(char *);
    return mkdtemp(dir);
}

static inline int sw__test_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* Removes a test's temporary folder and everything in it (links are removed, not followed). */
static inline void sw_test_rm_tree(const char *dir)
{
    nftw(dir, sw__test_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
