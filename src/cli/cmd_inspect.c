/* cmd_inspect.c — `shardswarm inspect FILE [--json]`: a GGUF file's header, metadata (long
 * arrays summarised), tensor table, bytes per layer and parameter count. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "gguf/gguf.h"
#include "infer/infer.h"

#define SHOW_ITEMS 6       /* array elements shown before "…" */
#define JSON_ARRAY_FULL 16 /* arrays up to this many elements are given in full in JSON */
#define SHOW_STR 64        /* string bytes shown in the human table */

static void usage(FILE *f)
{
    fprintf(f, "usage: shardswarm inspect FILE [--json] [--gpu auto|N [--gpu-layers N]]\n\n"
               "Shows a GGUF file: header, metadata (long arrays summarised), the tensor table\n"
               "(name, type, shape, bytes, offset), bytes per layer and the parameter count.\n\n"
               "  --json   one JSON object on stdout instead of the tables\n"
               "  --gpu D  also open the file as a stage on Vulkan device D (auto, or a number) and\n"
               "           say which layers run on the device and which on the CPU, and why\n"
               "Exit status: 0 ok, 1 the file is missing or not valid GGUF, 2 usage error.\n");
}

/* ------------------------------------------------------------------ human output */

static void print_str(const char *p, uint64_t n, uint64_t max)
{
    putchar('"');
    for (uint64_t i = 0; i < n && i < max; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('"');
    if (n > max) printf("…(%" PRIu64 " bytes)", n);
}

static void print_scalar(uint32_t type, const uint8_t *p)
{
    uint64_t u = 0;
    for (unsigned i = 0; i < 8; i++) u |= (uint64_t)p[i] << (8 * i);
    switch (type) {
    case SW_GGUF_U8: printf("%u", (unsigned)p[0]); break;
    case SW_GGUF_I8: printf("%d", (int8_t)p[0]); break;
    case SW_GGUF_U16: printf("%u", (unsigned)(uint16_t)u); break;
    case SW_GGUF_I16: printf("%d", (int16_t)(uint16_t)u); break;
    case SW_GGUF_U32: printf("%" PRIu32, (uint32_t)u); break;
    case SW_GGUF_I32: printf("%" PRId32, (int32_t)(uint32_t)u); break;
    case SW_GGUF_U64: printf("%" PRIu64, u); break;
    case SW_GGUF_I64: printf("%" PRId64, (int64_t)u); break;
    case SW_GGUF_BOOL: fputs(p[0] ? "true" : "false", stdout); break;
    case SW_GGUF_F32: {
        uint32_t b = (uint32_t)u;
        float f;
        memcpy(&f, &b, 4);
        printf("%g", f);
        break;
    }
    case SW_GGUF_F64: {
        double d;
        memcpy(&d, &u, 8);
        printf("%g", d);
        break;
    }
    }
}

static void print_array(const struct sw_gguf_arr *a, int depth)
{
    printf("[%s × %" PRIu64 "]", sw_gguf_vtype_name(a->elem_type), a->n);
    if (depth > 2) return;
    uint64_t show = a->n < SHOW_ITEMS ? a->n : SHOW_ITEMS;
    for (uint64_t i = 0; i < show; i++) {
        fputs(i ? ", " : " ", stdout);
        unsigned es = sw_gguf_vtype_size(a->elem_type);
        if (es) {
            uint8_t b[8] = { 0 };
            memcpy(b, a->data + i * es, es);
            print_scalar(a->elem_type, b);
        } else if (a->elem_type == SW_GGUF_STRING) {
            struct sw_gguf_str s;
            if (!sw_gguf_arr_str(a, i, &s)) print_str(s.ptr, s.len, 24);
        } else {
            struct sw_gguf_arr sub;
            if (!sw_gguf_arr_sub(a, i, &sub)) print_array(&sub, depth + 1);
        }
    }
    if (a->n > show) fputs(", …", stdout);
}

static void print_kv(const struct sw_gguf_kv *kv)
{
    printf("  %-44.*s %-7s ", (int)SW_MIN(kv->key.len, 200), kv->key.ptr, sw_gguf_vtype_name(kv->type));
    if (kv->type == SW_GGUF_STRING) print_str(kv->v.str.ptr, kv->v.str.len, SHOW_STR);
    else if (kv->type == SW_GGUF_ARRAY) print_array(&kv->v.arr, 0);
    else {
        uint8_t b[8] = { 0 };
        uint64_t u = kv->v.u64;
        if (kv->type == SW_GGUF_F32) {
            float f = (float)kv->v.f64;
            uint32_t x;
            memcpy(&x, &f, 4);
            u = x;
        } else if (kv->type == SW_GGUF_F64) {
            memcpy(&u, &kv->v.f64, 8);
        }
        for (unsigned i = 0; i < 8; i++) b[i] = (uint8_t)(u >> (8 * i));
        print_scalar(kv->type, b);
    }
    putchar('\n');
}

static uint64_t n_params(const struct sw_gguf_tensor *t)
{
    uint64_t n = 1;
    for (int d = 0; d < 4; d++) n *= (uint64_t)t->ne[d];
    return n;
}

static void shape_str(const struct sw_gguf_tensor *t, char *buf, size_t len)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, len - o, "[");
    for (uint32_t d = 0; d < t->n_dims && o < len; d++)
        o += (size_t)snprintf(buf + o, len - o, "%s%" PRId64, d ? ", " : "", t->ne[d]);
    if (o < len) snprintf(buf + o, len - o, "]");
}

static int human(struct sw_gguf *g)
{
    char b1[32], b2[32];
    printf("file         %s (%s, %" PRIu64 " bytes)\n", sw_gguf_path(g),
           sw_fmt_bytes(sw_gguf_file_size(g), b1, sizeof b1), sw_gguf_file_size(g));
    printf("format       GGUF v%u, alignment %" PRIu64 ", data section at byte %" PRIu64 "\n",
           sw_gguf_version(g), sw_gguf_alignment(g), sw_gguf_data_offset(g));
    char name[128];
    const char *nm = sw_gguf_get_cstr(g, "general.name", name, sizeof name);
    printf("model        %s%s%s%s, %u layers\n", sw_gguf_arch(g)[0] ? sw_gguf_arch(g) : "(no architecture)",
           nm ? " \"" : "", nm ? nm : "", nm ? "\"" : "", sw_gguf_n_layers(g));
    struct sw_gguf_shard_info si;
    if (sw_gguf_shard_info(g, &si) == 0)
        printf("shard        %u of %u, layers %u–%u, model %s\n", si.index, si.count, si.layer_first,
               si.layer_last, si.model_id);

    printf("\nmetadata     %" PRIu64 " keys\n", sw_gguf_n_kv(g));
    for (uint64_t i = 0; i < sw_gguf_n_kv(g); i++) print_kv(sw_gguf_kv_at(g, i));

    uint64_t nt = sw_gguf_n_tensors(g);
    printf("\ntensors      %" PRIu64 "\n", nt);
    if (nt) printf("  %-36s %-8s %-22s %12s %12s\n", "name", "type", "shape", "bytes", "offset");
    uint32_t L = sw_gguf_n_layers(g);
    int max_layer = -1;
    uint64_t total = 0, params = 0, other = 0, other_params = 0;
    for (uint64_t i = 0; i < nt; i++) {
        const struct sw_gguf_tensor *t = sw_gguf_tensor_at(g, i);
        char shape[96];
        shape_str(t, shape, sizeof shape);
        printf("  %-36.*s %-8s %-22s %12" PRIu64 " %12" PRIu64 "\n", (int)t->name.len, t->name.ptr,
               sw_gguf_type_info(t->type)->name, shape, t->n_bytes, t->offset);
        total += t->n_bytes;
        params += n_params(t);
        if (t->layer > max_layer) max_layer = t->layer;
        if (t->layer < 0) {
            other += t->n_bytes;
            other_params += n_params(t);
        }
    }
    uint32_t n_rows = SW_MAX(L, (uint32_t)(max_layer + 1));
    if (n_rows) {
        uint64_t *lb = calloc(n_rows, sizeof *lb), *lp = calloc(n_rows, sizeof *lp);
        if (!lb || !lp) {
            free(lb);
            free(lp);
            return sw_cli_fail("inspect", "out of memory");
        }
        for (uint64_t i = 0; i < nt; i++) {
            const struct sw_gguf_tensor *t = sw_gguf_tensor_at(g, i);
            if (t->layer >= 0) {
                lb[t->layer] += t->n_bytes;
                lp[t->layer] += n_params(t);
            }
        }
        printf("\nbytes per layer\n");
        for (uint32_t l = 0; l < n_rows; l++)
            printf("  layer %-5u %12" PRIu64 " bytes  %10s  %" PRIu64 " parameters\n", l, lb[l],
                   sw_fmt_bytes(lb[l], b1, sizeof b1), lp[l]);
        printf("  other       %12" PRIu64 " bytes  %10s  %" PRIu64 " parameters (embedding, output, norms)\n",
               other, sw_fmt_bytes(other, b2, sizeof b2), other_params);
        free(lb);
        free(lp);
    }
    printf("\ntotal        %" PRIu64 " parameters, %" PRIu64 " tensor bytes (%s)\n", params, total,
           sw_fmt_bytes(total, b1, sizeof b1));
    return SW_EXIT_OK;
}

/* ------------------------------------------------------------------ JSON output */

/* Strings from a file may not be UTF-8: such bytes are kept as \xNN text. */
static json_t *jstr(const char *p, uint64_t n)
{
    json_t *s = json_stringn(p, (size_t)n);
    if (s) return s;
    char *buf = malloc((size_t)n * 4 + 1);
    if (!buf) return json_null();
    size_t o = 0;
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x80) buf[o++] = (char)c;
        else o += (size_t)sprintf(buf + o, "\\x%02x", c);
    }
    s = json_stringn(buf, o);
    free(buf);
    return s ? s : json_null();
}

static json_t *jint_u(uint64_t v)
{
    return v <= (uint64_t)INT64_MAX ? json_integer((json_int_t)v) : json_real((double)v);
}

static json_t *jscalar(uint32_t type, const uint8_t *p)
{
    uint64_t u = 0;
    for (unsigned i = 0; i < sw_gguf_vtype_size(type); i++) u |= (uint64_t)p[i] << (8 * i);
    switch (type) {
    case SW_GGUF_U8: case SW_GGUF_U16: case SW_GGUF_U32: case SW_GGUF_U64: return jint_u(u);
    case SW_GGUF_I8: return json_integer((int8_t)u);
    case SW_GGUF_I16: return json_integer((int16_t)u);
    case SW_GGUF_I32: return json_integer((int32_t)u);
    case SW_GGUF_I64: return json_integer((json_int_t)(int64_t)u);
    case SW_GGUF_BOOL: return json_boolean(u != 0);
    case SW_GGUF_F32: {
        uint32_t b = (uint32_t)u;
        float f;
        memcpy(&f, &b, 4);
        return json_real(f);
    }
    case SW_GGUF_F64: {
        double d;
        memcpy(&d, &u, 8);
        return json_real(d);
    }
    }
    return json_null();
}

static json_t *jarray(const struct sw_gguf_arr *a, int depth);

static json_t *jelems(const struct sw_gguf_arr *a, uint64_t count, int depth)
{
    json_t *arr = json_array();
    for (uint64_t i = 0; i < count; i++) {
        unsigned es = sw_gguf_vtype_size(a->elem_type);
        if (es) {
            json_array_append_new(arr, jscalar(a->elem_type, a->data + i * es));
        } else if (a->elem_type == SW_GGUF_STRING) {
            struct sw_gguf_str s;
            json_array_append_new(arr, sw_gguf_arr_str(a, i, &s) ? json_null() : jstr(s.ptr, s.len));
        } else {
            struct sw_gguf_arr sub;
            json_array_append_new(arr, sw_gguf_arr_sub(a, i, &sub) ? json_null() : jarray(&sub, depth + 1));
        }
    }
    return arr;
}

/* Short arrays: the elements. Long ones: {"type":"array","elem_type":..,"count":..,"first":[..]}. */
static json_t *jarray(const struct sw_gguf_arr *a, int depth)
{
    if (a->n <= JSON_ARRAY_FULL && depth < 4) return jelems(a, a->n, depth);
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string("array"));
    json_object_set_new(o, "elem_type", json_string(sw_gguf_vtype_name(a->elem_type)));
    json_object_set_new(o, "count", jint_u(a->n));
    if (depth < 4) json_object_set_new(o, "first", jelems(a, SW_MIN(a->n, (uint64_t)SHOW_ITEMS), depth));
    return o;
}

static json_t *jkv(const struct sw_gguf_kv *kv)
{
    if (kv->type == SW_GGUF_STRING) return jstr(kv->v.str.ptr, kv->v.str.len);
    if (kv->type == SW_GGUF_ARRAY) return jarray(&kv->v.arr, 0);
    if (kv->type == SW_GGUF_F32 || kv->type == SW_GGUF_F64) return json_real(kv->v.f64);
    if (kv->type == SW_GGUF_BOOL) return json_boolean(kv->v.u64 != 0);
    if (kv->type == SW_GGUF_I8 || kv->type == SW_GGUF_I16 || kv->type == SW_GGUF_I32 || kv->type == SW_GGUF_I64)
        return json_integer((json_int_t)kv->v.i64);
    return jint_u(kv->v.u64);
}

static int as_json(struct sw_gguf *g)
{
    json_t *root = json_object();
    json_object_set_new(root, "file", jstr(sw_gguf_path(g), strlen(sw_gguf_path(g))));
    json_object_set_new(root, "size", jint_u(sw_gguf_file_size(g)));
    json_object_set_new(root, "version", json_integer(sw_gguf_version(g)));
    json_object_set_new(root, "alignment", jint_u(sw_gguf_alignment(g)));
    json_object_set_new(root, "data_offset", jint_u(sw_gguf_data_offset(g)));
    json_object_set_new(root, "architecture", jstr(sw_gguf_arch(g), strlen(sw_gguf_arch(g))));
    json_object_set_new(root, "n_layers", json_integer(sw_gguf_n_layers(g)));
    struct sw_gguf_shard_info si;
    if (sw_gguf_shard_info(g, &si) == 0) {
        json_t *s = json_object();
        json_object_set_new(s, "index", json_integer(si.index));
        json_object_set_new(s, "count", json_integer(si.count));
        json_object_set_new(s, "layer_first", json_integer(si.layer_first));
        json_object_set_new(s, "layer_last", json_integer(si.layer_last));
        json_object_set_new(s, "model_id", jstr(si.model_id, strlen(si.model_id)));
        json_object_set_new(root, "shard", s);
    }
    json_t *meta = json_object(), *types = json_object();
    for (uint64_t i = 0; i < sw_gguf_n_kv(g); i++) {
        const struct sw_gguf_kv *kv = sw_gguf_kv_at(g, i);
        char *key = strndup(kv->key.ptr, (size_t)kv->key.len);
        if (!key) continue;
        json_object_set_new(meta, key, jkv(kv));
        json_object_set_new(types, key, json_string(sw_gguf_vtype_name(kv->type)));
        free(key);
    }
    json_object_set_new(root, "metadata", meta);
    json_object_set_new(root, "metadata_types", types);

    json_t *tensors = json_array();
    uint32_t L = sw_gguf_n_layers(g);
    uint64_t total = 0, params = 0, other = 0;
    int max_layer = -1;
    for (uint64_t i = 0; i < sw_gguf_n_tensors(g); i++) {
        const struct sw_gguf_tensor *t = sw_gguf_tensor_at(g, i);
        json_t *o = json_object(), *shape = json_array();
        for (uint32_t d = 0; d < t->n_dims; d++) json_array_append_new(shape, json_integer(t->ne[d]));
        json_object_set_new(o, "name", jstr(t->name.ptr, t->name.len));
        json_object_set_new(o, "type", json_string(sw_gguf_type_info(t->type)->name));
        json_object_set_new(o, "shape", shape);
        json_object_set_new(o, "bytes", jint_u(t->n_bytes));
        json_object_set_new(o, "offset", jint_u(t->offset));
        json_object_set_new(o, "layer", t->layer >= 0 ? json_integer(t->layer) : json_null());
        json_array_append_new(tensors, o);
        total += t->n_bytes;
        params += n_params(t);
        if (t->layer < 0) other += t->n_bytes;
        if (t->layer > max_layer) max_layer = t->layer;
    }
    json_object_set_new(root, "tensors", tensors);
    uint32_t n_rows = SW_MAX(L, (uint32_t)(max_layer + 1));
    json_t *layers = json_array();
    for (uint32_t l = 0; l < n_rows; l++) {
        uint64_t b = 0, p = 0;
        for (uint64_t i = 0; i < sw_gguf_n_tensors(g); i++) {
            const struct sw_gguf_tensor *t = sw_gguf_tensor_at(g, i);
            if (t->layer == (int)l) {
                b += t->n_bytes;
                p += n_params(t);
            }
        }
        json_t *o = json_object();
        json_object_set_new(o, "layer", json_integer(l));
        json_object_set_new(o, "bytes", jint_u(b));
        json_object_set_new(o, "parameters", jint_u(p));
        json_array_append_new(layers, o);
    }
    json_object_set_new(root, "layers", layers);
    json_object_set_new(root, "other_bytes", jint_u(other));
    json_object_set_new(root, "tensor_bytes", jint_u(total));
    json_object_set_new(root, "total_parameters", jint_u(params));
    int rc = json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    putchar('\n');
    json_decref(root);
    return rc ? sw_cli_fail("inspect", "cannot write the JSON output") : SW_EXIT_OK;
}

/* `--gpu`: the file opened as a stage on that device: where each layer computes. */
static int compute_split(const char *file, const char *gpu, uint32_t gpu_layers)
{
    struct sw_stage_opts so = { .layer_first = -1, .layer_last = -1, .n_threads = 1, .max_batch = 32, .max_seqs = 1,
                                .no_prefault = 1, .gpu = gpu, .gpu_layers = gpu_layers };
    struct sw_stage *st = NULL;
    char err[512] = "";
    int rc = sw_stage_open(file, &so, &st, err, sizeof err);
    if (rc) return sw_cli_fail("inspect", "cannot open %s as a stage: %s", file, err[0] ? err : sw_strerror(rc));
    const struct sw_stage_info *in = sw_stage_info(st);
    char b1[32], b2[32];
    printf("\nCompute (--gpu %s): %s layers %u-%u\n", gpu, in->arch, in->layer_first, in->layer_last);
    if (in->gpu_layers) {
        printf("  device:  %s, %s of memory\n", in->device, sw_fmt_bytes(in->device_mem, b1, sizeof b1));
        printf("  on the device: layers %u-%u (%s uploaded)\n", in->layer_first, in->layer_first + in->gpu_layers - 1,
               sw_fmt_bytes(in->gpu_weight_bytes, b2, sizeof b2));
        if (in->n_expert)
            printf("  experts: %u per layer, %u per token: router, top-k and the chosen experts' matmuls on the "
                   "device\n", in->n_expert, in->n_expert_used);
    }
    if (in->layer_first + in->gpu_layers <= in->layer_last)
        printf("  on the CPU:    layers %u-%u\n", in->layer_first + in->gpu_layers, in->layer_last);
    if (in->gives_logits) printf("  logits:  on the %s\n", in->gpu_logits ? "device" : "CPU");
    if (in->gpu_note[0]) printf("  why:     %s\n", in->gpu_note);
    sw_stage_free(st);
    return SW_EXIT_OK;
}

int sw_cmd_inspect(int argc, char **argv)
{
    if (sw_cli_wants_help(argc, argv)) {
        usage(stdout);
        return SW_EXIT_OK;
    }
    const char *file = NULL, *gpu = NULL;
    uint32_t gpu_layers = 0;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--gpu") && i + 1 < argc) gpu = argv[++i];
        else if (!strcmp(argv[i], "--gpu-layers") && i + 1 < argc) {
            int prc = sw_cli_parse_u32("inspect", "--gpu-layers", argv[++i], 1, 1u << 16, &gpu_layers);
            if (prc) return prc;
        }
        else if (argv[i][0] == '-' && argv[i][1]) return sw_cli_usage_error("inspect", "unknown option '%s'", argv[i]);
        else if (file) return sw_cli_usage_error("inspect", "one FILE only (got '%s' and '%s')", file, argv[i]);
        else file = argv[i];
    }
    if (!file) return sw_cli_usage_error("inspect", "missing FILE (a .gguf model or shard)");
    struct sw_gguf *g = NULL;
    char err[512];
    int rc = sw_gguf_open(file, &g, err, sizeof err);
    if (rc) return sw_cli_fail("inspect", "%s", err);
    if (gpu && json) {
        sw_gguf_close(g);
        return sw_cli_usage_error("inspect", "--gpu goes with the table output, not --json");
    }
    rc = json ? as_json(g) : human(g);
    sw_gguf_close(g);
    if (!rc && gpu) rc = compute_split(file, gpu, gpu_layers);
    return rc;
}
