/* tools.c — tool calling with the model's own chat template: the request's tools and
 * tool_choice checked, the conversation (tool definitions, assistant tool calls, tool
 * results) written the way the template family expects, the model's answer parsed back into
 * OpenAI tool_calls, and for tool_choice "required" or a named function a grammar that makes
 * the answer a call. Families (by the template sw_chat_detect found):
 *   llama3  (Llama 3.1+): the definitions open the first user message ("Given the following
 *           functions ..."), a call is {"name": ..., "parameters": {...}}, results are
 *           "ipython" messages;
 *   mistral (v3 tokenizers): [AVAILABLE_TOOLS] [...][/AVAILABLE_TOOLS] before the last
 *           [INST], a call is [TOOL_CALLS] [{"name", "arguments", "id"}], results are
 *           [TOOL_RESULTS] {"content", "call_id"}[/TOOL_RESULTS];
 *   hermes  (ChatML: Qwen 2.5 / Qwen 3, and every other family): # Tools with <tools></tools>
 *           in the system message, a call is <tool_call>\n{"name", "arguments"}\n</tool_call>,
 *           results are user messages of <tool_response></tool_response>.
 * Not for: running anything. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/oai_int.h"

#define MAX_TOOLS 128
#define MAX_CALLS 16

static int is_null(const json_t *v) { return !v || json_is_null(v); }

int sw__tools_family(const char *tmpl)
{
    if (!strncmp(tmpl, "llama3", 6)) return SW__TOOLS_LLAMA3;
    if (!strncmp(tmpl, "mistral", 7)) return SW__TOOLS_MISTRAL;
    return SW__TOOLS_HERMES;
}

/* ---------------------------------------------------------------- request */

int sw__tools_parse(json_t *o, struct sw_api_oai_req *r, struct sw_api_oai_error *e)
{
    json_t *tools = json_object_get(o, "tools"), *choice = json_object_get(o, "tool_choice");
    json_t *par = json_object_get(o, "parallel_tool_calls");
    if (!is_null(par) && !json_is_boolean(par)) return SW__BAD(e, "parallel_tool_calls", "'parallel_tool_calls' must be a boolean");
    size_t n = 0;
    if (!is_null(tools)) {
        if (!json_is_array(tools)) return SW__BAD(e, "tools", "'tools' must be an array");
        n = json_array_size(tools);
        if (n > MAX_TOOLS) return SW__BAD(e, "tools", "at most %d tools", MAX_TOOLS);
    }
    char param[96];
    json_t *defs = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(tools, i), *type = json_is_object(t) ? json_object_get(t, "type") : NULL;
        snprintf(param, sizeof param, "tools[%zu].type", i);
        if (!json_is_string(type) || strcmp(json_string_value(type), "function")) {
            json_decref(defs);
            return SW__BAD(e, param, "'%s' must be \"function\"", param);
        }
        json_t *f = json_object_get(t, "function");
        json_t *name = json_is_object(f) ? json_object_get(f, "name") : NULL;
        snprintf(param, sizeof param, "tools[%zu].function.name", i);
        if (!json_is_string(name) || !json_string_length(name) || json_string_length(name) > 64) {
            json_decref(defs);
            return SW__BAD(e, param, "'%s' must be a name of 1 to 64 characters", param);
        }
        for (size_t k = 0; k < json_array_size(defs); k++)
            if (!strcmp(json_string_value(json_object_get(json_array_get(defs, k), "name")), json_string_value(name))) {
                json_decref(defs);
                return SW__BAD(e, param, "two tools are named '%s'", json_string_value(name));
            }
        json_t *desc = json_object_get(f, "description"), *params = json_object_get(f, "parameters");
        snprintf(param, sizeof param, "tools[%zu].function.description", i);
        if (!is_null(desc) && !json_is_string(desc)) {
            json_decref(defs);
            return SW__BAD(e, param, "'%s' must be a string", param);
        }
        snprintf(param, sizeof param, "tools[%zu].function.parameters", i);
        if (!is_null(params) && !json_is_object(params)) {
            json_decref(defs);
            return SW__BAD(e, param, "'%s' must be a JSON schema object", param);
        }
        json_t *d = json_pack("{s:O}", "name", name);
        if (json_is_string(desc)) json_object_set(d, "description", desc);
        json_object_set_new(d, "parameters", json_is_object(params) ? json_incref(params) : json_pack("{s:s,s:{}}", "type",
                                                                                                    "object", "properties"));
        json_array_append_new(defs, d);
    }
    r->tool_choice = n ? SW_API_TOOLS_AUTO : SW_API_TOOLS_NONE;
    if (!is_null(choice)) {
        const char *cs = json_is_string(choice) ? json_string_value(choice) : NULL;
        json_t *fn = json_is_object(choice) ? json_object_get(choice, "function") : NULL;
        json_t *fname = json_is_object(fn) ? json_object_get(fn, "name") : NULL;
        if (cs && !strcmp(cs, "none")) {
            r->tool_choice = SW_API_TOOLS_NONE;
        } else if (cs && (!strcmp(cs, "auto") || !strcmp(cs, "required"))) {
            if (!n && !strcmp(cs, "required")) {
                json_decref(defs);
                return SW__BAD(e, "tool_choice", "'tool_choice' is \"required\" but there are no 'tools'");
            }
            if (n) r->tool_choice = !strcmp(cs, "auto") ? SW_API_TOOLS_AUTO : SW_API_TOOLS_REQUIRED;
        } else if (json_is_string(fname)) {
            size_t k = 0;
            while (k < json_array_size(defs) &&
                   strcmp(json_string_value(json_object_get(json_array_get(defs, k), "name")), json_string_value(fname)))
                k++;
            if (k == json_array_size(defs)) {
                json_decref(defs);
                return SW__BAD(e, "tool_choice", "'tool_choice' names '%.64s', which is not in 'tools'",
                               json_string_value(fname));
            }
            r->tool_choice = SW_API_TOOLS_NAMED;
            r->tool_name = strdup(json_string_value(fname));
        } else {
            json_decref(defs);
            return SW__BAD(e, "tool_choice", "'tool_choice' must be \"none\", \"auto\", \"required\" or "
                                             "{\"type\":\"function\",\"function\":{\"name\":...}}");
        }
    }
    if (n && r->tool_choice != SW_API_TOOLS_NONE) r->tools = json_dumps(defs, JSON_COMPACT);
    json_decref(defs);
    if (n && r->tool_choice != SW_API_TOOLS_NONE && !r->tools)
        return sw__oai_err_set(e, 500, "server_error", NULL, NULL, "out of memory");
    return 0;
}

int sw__tools_parse_msg(json_t *m, size_t i, struct sw_api_oai_msg *out, struct sw_api_oai_error *e)
{
    char param[96];
    if (!strcmp(out->role, "tool")) {
        json_t *id = json_object_get(m, "tool_call_id");
        snprintf(param, sizeof param, "messages[%zu].tool_call_id", i);
        if (!is_null(id) && !json_is_string(id)) return SW__BAD(e, param, "'%s' must be a string", param);
        out->tool_call_id = strdup(json_is_string(id) ? json_string_value(id) : "");
        return out->tool_call_id ? 0 : sw__oai_err_set(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    json_t *calls = json_object_get(m, "tool_calls");
    if (is_null(calls)) return 0;
    snprintf(param, sizeof param, "messages[%zu].tool_calls", i);
    if (strcmp(out->role, "assistant")) return SW__BAD(e, param, "only assistant messages have '%s'", "tool_calls");
    if (!json_is_array(calls) || json_array_size(calls) > MAX_CALLS)
        return SW__BAD(e, param, "'%s' must be an array of at most %d calls", param, MAX_CALLS);
    json_t *norm = json_array();
    for (size_t k = 0; k < json_array_size(calls); k++) {
        json_t *c = json_array_get(calls, k), *f = json_is_object(c) ? json_object_get(c, "function") : NULL;
        json_t *name = json_is_object(f) ? json_object_get(f, "name") : NULL;
        json_t *args = json_is_object(f) ? json_object_get(f, "arguments") : NULL;
        json_t *id = json_is_object(c) ? json_object_get(c, "id") : NULL;
        snprintf(param, sizeof param, "messages[%zu].tool_calls[%zu].function", i, k);
        if (!json_is_string(name) || !(json_is_string(args) || json_is_object(args))) {
            json_decref(norm);
            return SW__BAD(e, param, "'%s' must have a string 'name' and 'arguments' (JSON text)", param);
        }
        /* OpenAI sends the arguments as JSON text, Ollama as an object */
        json_t *a = json_is_object(args) ? json_deep_copy(args) : json_loads(json_string_value(args), JSON_DECODE_ANY, NULL);
        if (!json_is_object(a)) {
            json_decref(a);
            json_decref(norm);
            return SW__BAD(e, param, "'%s.arguments' must be a JSON object in a string", param);
        }
        json_array_append_new(norm, json_pack("{s:s,s:O,s:o}", "id", json_is_string(id) ? json_string_value(id) : "",
                                              "name", name, "arguments", a));
    }
    out->tool_calls = json_dumps(norm, JSON_COMPACT);
    json_decref(norm);
    return out->tool_calls ? 0 : sw__oai_err_set(e, 500, "server_error", NULL, NULL, "out of memory");
}

/* ---------------------------------------------------------------- the prompt */

static char *dumps(json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    return s;
}

int sw__tools_block(const struct sw_api_oai_req *r, int family, struct sw_buf *out)
{
    json_t *defs = json_loads(r->tools, 0, NULL);
    if (!json_is_array(defs)) {
        json_decref(defs);
        return SW_EINVAL;
    }
    if (family == SW__TOOLS_LLAMA3) {
        sw_buf_printf(out, "Given the following functions, please respond with a JSON for a function call with its proper "
                           "arguments that best answers the given prompt.\n\nRespond in the format {\"name\": function "
                           "name, \"parameters\": dictionary of argument name and its value}. Do not use variables.\n\n");
        for (size_t i = 0; i < json_array_size(defs); i++) {
            json_t *t = json_pack("{s:s,s:O}", "type", "function", "function", json_array_get(defs, i));
            char *s = json_dumps(t, JSON_INDENT(4));
            sw_buf_printf(out, "%s\n\n", s ? s : "");
            free(s);
            json_decref(t);
        }
    } else if (family == SW__TOOLS_MISTRAL) {
        json_t *all = json_array();
        for (size_t i = 0; i < json_array_size(defs); i++)
            json_array_append_new(all, json_pack("{s:s,s:O}", "type", "function", "function", json_array_get(defs, i)));
        char *s = dumps(all);
        sw_buf_printf(out, "%s", s ? s : "[]");
        free(s);
        json_decref(all);
    } else {
        sw_buf_printf(out, "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are "
                           "provided with function signatures within <tools></tools> XML tags:\n<tools>");
        for (size_t i = 0; i < json_array_size(defs); i++) {
            json_t *t = json_pack("{s:s,s:O}", "type", "function", "function", json_array_get(defs, i));
            char *s = dumps(t);
            sw_buf_printf(out, "\n%s", s ? s : "");
            free(s);
            json_decref(t);
        }
        sw_buf_printf(out, "\n</tools>\n\nFor each function call, return a json object with function name and "
                           "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
                           "<function-name>, \"arguments\": <args-json-object>}\n</tool_call>");
    }
    json_decref(defs);
    return sw_buf_ok(out) ? 0 : SW_ENOMEM;
}

/* An assistant's earlier calls as the family writes them. */
static void calls_text(const char *calls_json, int family, struct sw_buf *out)
{
    json_t *calls = json_loads(calls_json, 0, NULL);
    for (size_t k = 0; k < json_array_size(calls); k++) {
        json_t *c = json_array_get(calls, k);
        json_t *one;
        if (family == SW__TOOLS_LLAMA3)
            one = json_pack("{s:O,s:O}", "name", json_object_get(c, "name"), "parameters", json_object_get(c, "arguments"));
        else
            one = json_pack("{s:O,s:O}", "name", json_object_get(c, "name"), "arguments", json_object_get(c, "arguments"));
        if (family == SW__TOOLS_MISTRAL) json_object_set(one, "id", json_object_get(c, "id"));
        char *s = dumps(one);
        if (family == SW__TOOLS_HERMES)
            sw_buf_printf(out, "%s<tool_call>\n%s\n</tool_call>", out->len ? "\n" : "", s ? s : "");
        else if (family == SW__TOOLS_MISTRAL)
            sw_buf_printf(out, "%s%s", k ? ", " : "[TOOL_CALLS] [", s ? s : "");
        else
            sw_buf_printf(out, "%s%s", k ? "; " : "", s ? s : "");
        free(s);
        json_decref(one);
    }
    if (family == SW__TOOLS_MISTRAL && json_array_size(calls)) sw_buf_printf(out, "]");
    json_decref(calls);
}

int sw__tools_render(const struct sw_api_oai_req *r, int family, struct sw__msgs *out)
{
    memset(out, 0, sizeof *out);
    size_t cap = r->n_msgs + 2;
    out->m = calloc(cap, sizeof *out->m);
    out->owned = calloc(cap, sizeof *out->owned);
    if (!out->m || !out->owned) return SW_ENOMEM;
    struct sw_buf block = { 0 };
    int with_tools = r->tools && r->tool_choice != SW_API_TOOLS_NONE;
    if (with_tools && sw__tools_block(r, family, &block)) {
        sw_buf_free(&block);
        return SW_ENOMEM;
    }
    size_t last_user = SIZE_MAX, first_user = SIZE_MAX;
    for (size_t i = 0; i < r->n_msgs; i++)
        if (!strcmp(r->msgs[i].role, "user")) {
            last_user = i;
            if (first_user == SIZE_MAX) first_user = i;
        }
    int placed = 0;
    for (size_t i = 0; i < r->n_msgs; i++) {
        const struct sw_api_oai_msg *m = &r->msgs[i];
        struct sw_buf t = { 0 };
        const char *role = m->role;
        if (with_tools && !placed && family == SW__TOOLS_HERMES && i == 0) {
            /* the definitions end the system message (one is added when there is none) */
            if (!strcmp(role, "system")) {
                sw_buf_printf(&t, "%s\n\n%s", m->content, sw_buf_cstr(&block));
                placed = 1;
            } else {
                out->owned[out->n] = strdup(sw_buf_cstr(&block) ? sw_buf_cstr(&block) : "");
                out->m[out->n].role = "system";
                out->m[out->n].content = out->owned[out->n];
                out->n++;
                placed = 1;
            }
        }
        if (with_tools && !placed && family == SW__TOOLS_MISTRAL && i == last_user) {
            out->owned[out->n] = strdup(sw_buf_cstr(&block) ? sw_buf_cstr(&block) : "");
            out->m[out->n].role = "tools"; /* chat.c: [AVAILABLE_TOOLS] ...[/AVAILABLE_TOOLS] */
            out->m[out->n].content = out->owned[out->n];
            out->n++;
            placed = 1;
        }
        if (with_tools && !placed && family == SW__TOOLS_LLAMA3 && i == first_user) {
            sw_buf_printf(&t, "%s%s", sw_buf_cstr(&block), m->content);
            placed = 1;
        }
        if (!strcmp(role, "tool")) {
            if (family == SW__TOOLS_LLAMA3) {
                role = "ipython";
                sw_buf_printf(&t, "%s", m->content);
            } else if (family == SW__TOOLS_MISTRAL) {
                json_t *o = json_pack("{s:s,s:s}", "content", m->content, "call_id", m->tool_call_id ? m->tool_call_id : "");
                char *s = dumps(o);
                sw_buf_printf(&t, "%s", s ? s : "");
                free(s);
                json_decref(o);
            } else {
                /* consecutive results share one user turn */
                role = "user";
                if (out->n && i && !strcmp(r->msgs[i - 1].role, "tool")) {
                    struct sw_buf j = { 0 };
                    sw_buf_printf(&j, "%s\n<tool_response>\n%s\n</tool_response>", out->owned[out->n - 1], m->content);
                    free(out->owned[out->n - 1]);
                    out->owned[out->n - 1] = strdup(sw_buf_cstr(&j) ? sw_buf_cstr(&j) : "");
                    out->m[out->n - 1].content = out->owned[out->n - 1];
                    sw_buf_free(&j);
                    sw_buf_free(&t);
                    continue;
                }
                sw_buf_printf(&t, "<tool_response>\n%s\n</tool_response>", m->content);
            }
        } else if (m->tool_calls) {
            if (family != SW__TOOLS_MISTRAL || !m->content[0]) sw_buf_printf(&t, "%s", m->content);
            calls_text(m->tool_calls, family, &t);
        } else if (!t.len) {
            sw_buf_printf(&t, "%s", m->content);
        }
        out->owned[out->n] = strdup(sw_buf_cstr(&t) ? sw_buf_cstr(&t) : "");
        sw_buf_free(&t);
        out->m[out->n].role = role;
        out->m[out->n].content = out->owned[out->n];
        if (!out->owned[out->n]) {
            sw_buf_free(&block);
            return SW_ENOMEM;
        }
        out->n++;
    }
    sw_buf_free(&block);
    return 0;
}

void sw__msgs_free(struct sw__msgs *m)
{
    for (size_t i = 0; i < m->n; i++) free(m->owned[i]);
    free(m->owned);
    free(m->m);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- grammar */

int sw__tools_grammar(const struct sw_api_oai_req *r, int family, uint8_t **g, size_t *gl, struct sw_api_oai_error *e)
{
    json_t *defs = json_loads(r->tools, 0, NULL);
    json_t *any = json_array();
    int rc = 0;
    for (size_t i = 0; !rc && i < json_array_size(defs); i++) {
        json_t *d = json_array_get(defs, i);
        const char *name = json_string_value(json_object_get(d, "name"));
        if (r->tool_choice == SW_API_TOOLS_NAMED && strcmp(name, r->tool_name)) continue;
        json_t *params = json_object_get(d, "parameters");
        /* each tool's parameters compile on their own first, so an error names its path */
        char field[96];
        snprintf(field, sizeof field, "tools[%zu].function.parameters", i);
        uint8_t *tg = NULL;
        size_t tl = 0;
        if ((rc = sw__schema_compile(params, field, NULL, NULL, &tg, &tl, e))) break;
        free(tg);
        json_t *call = json_pack("{s:s,s:{s:{s:s},s:O},s:[s,s],s:b}", "type", "object", "properties", "name", "const",
                                 name, family == SW__TOOLS_LLAMA3 ? "parameters" : "arguments", params, "required",
                                 "name", family == SW__TOOLS_LLAMA3 ? "parameters" : "arguments",
                                 "additionalProperties", 0);
        json_array_append_new(any, call);
    }
    if (!rc) {
        json_t *schema = json_pack("{s:O}", "anyOf", any);
        const char *pre = family == SW__TOOLS_HERMES ? "<tool_call>\n" : family == SW__TOOLS_MISTRAL ? "[" : "";
        const char *post = family == SW__TOOLS_HERMES ? "\n</tool_call>" : family == SW__TOOLS_MISTRAL ? "]" : "";
        rc = sw__schema_compile(schema, "tools", pre, post, g, gl, e);
        json_decref(schema);
    }
    json_decref(any);
    json_decref(defs);
    return rc;
}

/* ---------------------------------------------------------------- the answer */

/* One call object {name, arguments|parameters} of a known tool -> OpenAI's tool call. */
static json_t *openai_call(json_t *c, json_t *defs)
{
    json_t *name = json_is_object(c) ? json_object_get(c, "name") : NULL;
    json_t *args = json_object_get(c, "arguments");
    if (!args) args = json_object_get(c, "parameters");
    if (!json_is_string(name) || !json_is_object(args)) return NULL;
    int known = 0;
    for (size_t i = 0; i < json_array_size(defs); i++)
        known |= !strcmp(json_string_value(json_object_get(json_array_get(defs, i), "name")), json_string_value(name));
    if (!known) return NULL;
    uint8_t rnd[12];
    char hex[25], id[32];
    sw_random_bytes(rnd, sizeof rnd);
    sw_hex_encode(rnd, sizeof rnd, hex);
    snprintf(id, sizeof id, "call_%s", hex);
    char *a = dumps(args);
    json_t *o = json_pack("{s:s,s:s,s:{s:O,s:s}}", "id", id, "type", "function", "function", "name", name, "arguments",
                          a ? a : "{}");
    free(a);
    return o;
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')) p++;
    return p;
}

json_t *sw__tools_extract(const struct sw_api_oai_req *r, int family, const char *text, size_t len, size_t *content_len)
{
    json_t *defs = json_loads(r->tools, 0, NULL);
    json_t *calls = json_array();
    const char *end = text + len;
    *content_len = len;
    if (family == SW__TOOLS_HERMES) {
        const char *p = text;
        const char *first = NULL;
        while ((p = memmem(p, (size_t)(end - p), "<tool_call>", 11))) {
            if (!first) first = p;
            const char *b = p + 11, *q = memmem(b, (size_t)(end - b), "</tool_call>", 12);
            const char *stop = q ? q : end;
            json_error_t je;
            json_t *c = json_loadb(b, (size_t)(stop - b), JSON_DECODE_ANY, &je);
            json_t *oc = openai_call(c, defs);
            json_decref(c);
            if (!oc) break;
            json_array_append_new(calls, oc);
            p = q ? q + 12 : end;
        }
        if (first && json_array_size(calls)) {
            const char *c = first;
            while (c > text && (c[-1] == ' ' || c[-1] == '\n')) c--;
            *content_len = (size_t)(c - text);
        }
    } else {
        const char *p = skip_ws(text, end);
        if (family == SW__TOOLS_MISTRAL && end - p >= 12 && !memcmp(p, "[TOOL_CALLS]", 12)) p = skip_ws(p + 12, end);
        if (family == SW__TOOLS_LLAMA3 && end - p >= 14 && !memcmp(p, "<|python_tag|>", 14)) p = skip_ws(p + 14, end);
        json_error_t je;
        json_t *v = p < end ? json_loadb(p, (size_t)(end - p), JSON_DECODE_ANY, &je) : NULL;
        if (json_is_object(v)) {
            json_t *oc = openai_call(v, defs);
            if (oc) json_array_append_new(calls, oc);
        } else if (json_is_array(v)) {
            for (size_t i = 0; i < json_array_size(v); i++) {
                json_t *oc = openai_call(json_array_get(v, i), defs);
                if (!oc) {
                    json_array_clear(calls);
                    break;
                }
                json_array_append_new(calls, oc);
            }
        }
        json_decref(v);
        if (json_array_size(calls)) *content_len = 0;
    }
    json_decref(defs);
    if (!json_array_size(calls)) {
        json_decref(calls);
        *content_len = len;
        return NULL;
    }
    return calls;
}

size_t sw__tools_safe(int family, const char *text, size_t len, int *held)
{
    *held = 0;
    if (family == SW__TOOLS_HERMES) {
        const char *p = memmem(text, len, "<tool_call>", 11);
        if (p) {
            *held = 1;
            while (p > text && (p[-1] == '\n' || p[-1] == ' ')) p--;
            return (size_t)(p - text);
        }
        /* a tail that may start the marker waits, and the blanks before it (a call's text
         * is cut before them) */
        static const char mk[] = "<tool_call>";
        size_t safe = len;
        for (size_t k = SW_MIN(len, sizeof mk - 2); k > 0; k--)
            if (!memcmp(text + len - k, mk, k)) {
                safe = len - k;
                break;
            }
        while (safe > 0 && (text[safe - 1] == '\n' || text[safe - 1] == ' ')) safe--;
        return safe;
    }
    const char *p = skip_ws(text, text + len);
    if (p == text + len) return 0; /* only blanks so far: the answer may still be a call */
    if (*p == '{' || *p == '[' || *p == '<') {
        *held = 1;
        return 0;
    }
    return len;
}
