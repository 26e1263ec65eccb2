/* test_api.c — the API router and client on loopback: /health, custom routes, 404/405,
 * POST bodies, the body cap (413), URL normalisation, an unreachable node. */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "test.h"

static void echo(void *ud, const struct sw_api_request *req, struct sw_api_response *resp)
{
    int *calls = ud;
    (*calls)++;
    struct sw_buf b = { 0 };
    sw_buf_printf(&b, "{\"method\":\"%s\",\"len\":%zu,\"body\":\"%.*s\"}", req->method, req->body_len,
                  (int)req->body_len, (const char *)req->body);
    resp->body = (char *)b.data;
    resp->body_len = b.len;
}

static void forbidden(void *ud, const struct sw_api_request *req, struct sw_api_response *resp)
{
    (void)ud;
    (void)req;
    sw_api_error(resp, 403, "nope");
}

static void test_server(void)
{
    struct sw_api *a = NULL;
    struct sw_api_config cfg = { NULL, 0, 1024, NULL };
    CHECK_EQ_INT(sw_api_new(&cfg, &a), 0);
    int calls = 0;
    CHECK_EQ_INT(sw_api_route(a, "POST", "/echo", echo, &calls), 0);
    CHECK_EQ_INT(sw_api_route(a, "GET", "/deny", forbidden, NULL), 0);
    char err[256];
    CHECK_EQ_INT(sw_api_start(a, err, sizeof err), 0);
    CHECK(sw_api_port(a) > 0);
    CHECK_EQ_INT(sw_api_route(a, "GET", "/late", echo, &calls), SW_EINVAL); /* after start */
    char base[256], url[300];
    snprintf(url, sizeof url, "%u", sw_api_port(a));
    CHECK_EQ_INT(sw_api_base_url(url, base, sizeof base), 0);
    char *body = NULL;
    int status = 0;
    snprintf(url, sizeof url, "%s/health", base);
    CHECK_EQ_INT(sw_api_fetch("GET", url, NULL, 0, 3000, &body, NULL, &status, err, sizeof err), 0);
    CHECK_EQ_INT(status, 200);
    CHECK(body && strstr(body, "\"status\":\"ok\""));
    free(body);
    snprintf(url, sizeof url, "%s/echo", base);
    CHECK_EQ_INT(sw_api_fetch("POST", url, "hello", 5, 3000, &body, NULL, &status, err, sizeof err), 0);
    CHECK_EQ_INT(status, 200);
    CHECK(body && strstr(body, "\"body\":\"hello\"") && strstr(body, "\"len\":5"));
    CHECK_EQ_INT(calls, 1);
    free(body);
    /* GET on a POST route: 405; unknown path: 404; handler status passes through */
    CHECK_EQ_INT(sw_api_fetch("GET", url, NULL, 0, 3000, &body, NULL, &status, err, sizeof err), 0);
    CHECK_EQ_INT(status, 405);
    free(body);
    snprintf(url, sizeof url, "%s/nothing", base);
    CHECK_EQ_INT(sw_api_fetch("GET", url, NULL, 0, 3000, &body, NULL, &status, err, sizeof err), 0);
    CHECK_EQ_INT(status, 404);
    free(body);
    snprintf(url, sizeof url, "%s/deny", base);
    CHECK_EQ_INT(sw_api_fetch("GET", url, NULL, 0, 3000, &body, NULL, &status, err, sizeof err), 0);
    CHECK_EQ_INT(status, 403);
    CHECK(body && strstr(body, "nope"));
    free(body);
    /* over the body cap: 413, the handler never runs */
    char *big = malloc(4096);
    memset(big, 'x', 4096);
    snprintf(url, sizeof url, "%s/echo", base);
    CHECK_EQ_INT(sw_api_fetch("POST", url, big, 4096, 3000, &body, NULL, &status, err, sizeof err), 0);
    CHECK_EQ_INT(status, 413);
    CHECK_EQ_INT(calls, 1);
    free(body);
    free(big);
    sw_api_free(a);
    /* the server is gone: a clear error */
    snprintf(url, sizeof url, "%s/health", base);
    CHECK_EQ_INT(sw_api_fetch("GET", url, NULL, 0, 1000, &body, NULL, &status, err, sizeof err), SW_EIO);
    CHECK(strstr(err, "127.0.0.1") != NULL);
}

static void test_base_url(void)
{
    char out[256];
    CHECK_EQ_INT(sw_api_base_url("8080", out, sizeof out), 0);
    CHECK_EQ_STR(out, "http://127.0.0.1:8080");
    CHECK_EQ_INT(sw_api_base_url("10.0.0.2:9000/", out, sizeof out), 0);
    CHECK_EQ_STR(out, "http://10.0.0.2:9000");
    CHECK_EQ_INT(sw_api_base_url("http://h:1//", out, sizeof out), 0);
    CHECK_EQ_STR(out, "http://h:1");
    CHECK_EQ_INT(sw_api_base_url("0", out, sizeof out), SW_EINVAL);
    CHECK_EQ_INT(sw_api_base_url("", out, sizeof out), SW_EINVAL);
    struct sw_api *a = NULL;
    struct sw_api_config bad = { "not-an-ip", 0, 0, NULL };
    CHECK_EQ_INT(sw_api_new(&bad, &a), 0);
    char err[256];
    CHECK_EQ_INT(sw_api_start(a, err, sizeof err), SW_EINVAL);
    CHECK(strstr(err, "not-an-ip") != NULL);
    sw_api_free(a);
}

/* An API key: every route but /health wants "Authorization: Bearer KEY" (sw_api_fetch
 * sends $SHARDSWARM_API_KEY); a wrong or missing key gets 401 and the handler never runs. */
static void test_api_key(void)
{
    CHECK_EQ_INT(sw_api_key_check("s3cret-KEY_1"), 0);
    CHECK_EQ_INT(sw_api_key_check(""), SW_EINVAL);
    CHECK_EQ_INT(sw_api_key_check("with space"), SW_EINVAL);
    CHECK_EQ_INT(sw_api_key_check("tab\there"), SW_EINVAL);
    struct sw_api *a = NULL;
    struct sw_api_config badkey = { NULL, 0, 0, "a b" };
    CHECK_EQ_INT(sw_api_new(&badkey, &a), SW_EINVAL);
    struct sw_api_config cfg = { NULL, 0, 1024, "s3cret-KEY_1" };
    CHECK_EQ_INT(sw_api_new(&cfg, &a), 0);
    int calls = 0;
    CHECK_EQ_INT(sw_api_route(a, "POST", "/echo", echo, &calls), 0);
    char err[256], base[256], url[300];
    CHECK_EQ_INT(sw_api_start(a, err, sizeof err), 0);
    snprintf(url, sizeof url, "%u", sw_api_port(a));
    CHECK_EQ_INT(sw_api_base_url(url, base, sizeof base), 0);
    char *body = NULL;
    int status = 0;
    unsetenv("SHARDSWARM_API_KEY");
    snprintf(url, sizeof url, "%s/health", base); /* open */
    CHECK_EQ_INT(sw_api_fetch("GET", url, NULL, 0, 3000, &body, NULL, &status, err, sizeof err), 0);
    CHECK_EQ_INT(status, 200);
    free(body);
    snprintf(url, sizeof url, "%s/echo", base);
    const char *keys[] = { NULL, "wrong", "s3cret-KEY_", "s3cret-KEY_12", "s3cret-KEY_1" };
    const int want[] = { 401, 401, 401, 401, 200 };
    for (int i = 0; i < 5; i++) {
        if (keys[i]) setenv("SHARDSWARM_API_KEY", keys[i], 1);
        else unsetenv("SHARDSWARM_API_KEY");
        CHECK_EQ_INT(sw_api_fetch("POST", url, "hi", 2, 3000, &body, NULL, &status, err, sizeof err), 0);
        CHECK_MSG(status == want[i], "key %s: status %d", keys[i] ? keys[i] : "(none)", status);
        if (want[i] == 401) CHECK(body && strstr(body, "Authorization: Bearer"));
        free(body);
    }
    CHECK_EQ_INT(calls, 1); /* only the request with the right key reached the handler */
    unsetenv("SHARDSWARM_API_KEY");
    sw_api_free(a);
}

static void echo_path(void *ud, const struct sw_api_request *req, struct sw_api_response *resp)
{
    (void)ud;
    char buf[300];
    snprintf(buf, sizeof buf, "{\"path\":\"%.200s\"}", req->path);
    resp->body = strdup(buf);
}

/* Prefix routes: every path under "/items/" (not "/items/" itself), exact routes first. */
static void test_prefix_route(void)
{
    struct sw_api *a = NULL;
    struct sw_api_config cfg = { NULL, 0, 1024, NULL };
    CHECK_EQ_INT(sw_api_new(&cfg, &a), 0);
    CHECK_EQ_INT(sw_api_route_prefix(a, "GET", "/items", echo_path, NULL), SW_EINVAL); /* no trailing '/' */
    CHECK_EQ_INT(sw_api_route_prefix(a, "GET", "/items/", echo_path, NULL), 0);
    CHECK_EQ_INT(sw_api_route(a, "GET", "/items/special", forbidden, NULL), 0);
    char err[256], base[256], url[300];
    CHECK_EQ_INT(sw_api_start(a, err, sizeof err), 0);
    snprintf(url, sizeof url, "%u", sw_api_port(a));
    CHECK_EQ_INT(sw_api_base_url(url, base, sizeof base), 0);
    const char *paths[] = { "/items/a", "/items/a/b", "/items/special", "/items/", "/itemsx" };
    const int want[] = { 200, 200, 403, 404, 404 };
    for (int i = 0; i < 5; i++) {
        char *body = NULL;
        int status = 0;
        snprintf(url, sizeof url, "%s%s", base, paths[i]);
        CHECK_EQ_INT(sw_api_fetch("GET", url, NULL, 0, 3000, &body, NULL, &status, err, sizeof err), 0);
        CHECK_MSG(status == want[i], "%s: status %d", paths[i], status);
        if (want[i] == 200) CHECK(body && strstr(body, paths[i]));
        free(body);
    }
    sw_api_free(a);
}

int main(void)
{
    SW_RUN(test_prefix_route);
    SW_RUN(test_server);
    SW_RUN(test_api_key);
    SW_RUN(test_base_url);
    return SW_TEST_DONE();
}
