/* gguf.h — GGUF v2/v3 model files: a bounds-checked, mmap-backed reader, a streaming
 * writer, the ggml tensor type table, and layer-range sharding (split / verify).
 * Not for: computing with tensors (src/infer) or moving files between machines (src/bt). */
#ifndef SW_GGUF_H
#define SW_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

/* ---------------------------------------------------------------- types */

/* ggml tensor types, numbered as in the GGUF spec. */
enum sw_ggml_type {
    SW_TYPE_F32 = 0, SW_TYPE_F16 = 1, SW_TYPE_Q4_0 = 2, SW_TYPE_Q4_1 = 3,
    SW_TYPE_Q5_0 = 6, SW_TYPE_Q5_1 = 7, SW_TYPE_Q8_0 = 8, SW_TYPE_Q8_1 = 9,
    SW_TYPE_Q2_K = 10, SW_TYPE_Q3_K = 11, SW_TYPE_Q4_K = 12, SW_TYPE_Q5_K = 13,
    SW_TYPE_Q6_K = 14, SW_TYPE_Q8_K = 15, SW_TYPE_IQ2_XXS = 16, SW_TYPE_IQ2_XS = 17,
    SW_TYPE_IQ3_XXS = 18, SW_TYPE_IQ1_S = 19, SW_TYPE_IQ4_NL = 20, SW_TYPE_IQ3_S = 21,
    SW_TYPE_IQ2_S = 22, SW_TYPE_IQ4_XS = 23, SW_TYPE_I8 = 24, SW_TYPE_I16 = 25,
    SW_TYPE_I32 = 26, SW_TYPE_I64 = 27, SW_TYPE_F64 = 28, SW_TYPE_IQ1_M = 29,
    SW_TYPE_BF16 = 30, SW_TYPE_TQ1_0 = 34, SW_TYPE_TQ2_0 = 35, SW_TYPE_MXFP4 = 39,
    SW_TYPE_COUNT_ = 40
};

struct sw_type_info {
    const char *name;    /* "Q4_K" */
    uint32_t block_size; /* elements per block */
    uint32_t type_size;  /* bytes per block */
};

/* NULL for a type number this build does not know. */
const struct sw_type_info *sw_gguf_type_info(uint32_t type);
/* Bytes of n_elems elements (n_elems must be a multiple of the block size). */
int sw_gguf_type_bytes(uint32_t type, uint64_t n_elems, uint64_t *bytes_out);

/* ---------------------------------------------------------------- values */

/* "u32", "string", "array", ...; "?" for an unknown number. */
const char *sw_gguf_vtype_name(uint32_t vtype);
/* Bytes of one scalar of value type t (0 for STRING, ARRAY and unknown types). */
uint32_t sw_gguf_vtype_size(uint32_t t);

enum sw_gguf_vtype {
    SW_GGUF_U8 = 0, SW_GGUF_I8 = 1, SW_GGUF_U16 = 2, SW_GGUF_I16 = 3, SW_GGUF_U32 = 4,
    SW_GGUF_I32 = 5, SW_GGUF_F32 = 6, SW_GGUF_BOOL = 7, SW_GGUF_STRING = 8,
    SW_GGUF_ARRAY = 9, SW_GGUF_U64 = 10, SW_GGUF_I64 = 11, SW_GGUF_F64 = 12
};

/* A string borrowed from the mapped file: not NUL-terminated. */
struct sw_gguf_str {
    const char *ptr;
    uint64_t len;
};

/* An array value. Elements of fixed-size types lie at `data` (little-endian, packed);
 * strings and nested arrays are reached through sw_gguf_arr_str / sw_gguf_arr_sub. */
struct sw_gguf_arr {
    uint32_t elem_type;   /* enum sw_gguf_vtype */
    uint64_t n;
    const uint8_t *data;  /* first element's encoding, borrowed from the map */
    uint64_t data_len;    /* encoded bytes of all elements */
    const uint64_t *offs; /* STRING/ARRAY elements: offset of element i from data (owned by the file handle) */
};

struct sw_gguf_kv {
    struct sw_gguf_str key;
    uint32_t type; /* enum sw_gguf_vtype */
    union {
        uint64_t u64;  /* U8/U16/U32/U64/BOOL */
        int64_t i64;   /* I8/I16/I32/I64 */
        double f64;    /* F32/F64 */
        struct sw_gguf_str str;
        struct sw_gguf_arr arr;
    } v;
    uint64_t file_offset; /* where the key/value pair starts, for error messages */
};

struct sw_gguf_tensor {
    struct sw_gguf_str name;
    uint32_t type;         /* enum sw_ggml_type */
    uint32_t n_dims;
    int64_t ne[4];         /* elements per dimension, unused dims are 1; ne[0] is the row length */
    uint64_t offset;       /* relative to the data section, as stored */
    uint64_t n_bytes;
    const uint8_t *data;   /* borrowed from the map: valid until sw_gguf_close */
    int layer;             /* "blk.N." prefix -> N; -1 for non-layer tensors */
};

/* ---------------------------------------------------------------- reader */

struct sw_gguf; /* an open, validated file */

/* Opens and validates the whole header, metadata and tensor table against the file size:
 * counts, lengths, offsets, alignment, overlaps, duplicate names, unknown types. On error
 * returns a negative sw_err and writes a message naming the file, the field and the byte
 * offset into err (if err_len > 0). *out is NULL on failure. */
int sw_gguf_open(const char *path, struct sw_gguf **out, char *err, size_t err_len);
/* Same, over bytes the caller owns (must outlive the handle); used by fuzz targets. */
int sw_gguf_open_mem(const uint8_t *data, size_t len, struct sw_gguf **out, char *err, size_t err_len);
void sw_gguf_close(struct sw_gguf *g); /* NULL harmless; invalidates every borrowed pointer */

uint32_t sw_gguf_version(const struct sw_gguf *g);
uint64_t sw_gguf_alignment(const struct sw_gguf *g);
uint64_t sw_gguf_data_offset(const struct sw_gguf *g); /* start of the tensor data section */
uint64_t sw_gguf_file_size(const struct sw_gguf *g);
const char *sw_gguf_path(const struct sw_gguf *g);
/* Bytes of header + metadata + tensor infos (the data section starts at the next aligned
 * offset), and the whole file's bytes (borrowed; valid until sw_gguf_close). */
uint64_t sw_gguf_header_size(const struct sw_gguf *g);
const uint8_t *sw_gguf_bytes(const struct sw_gguf *g);

uint64_t sw_gguf_n_kv(const struct sw_gguf *g);
const struct sw_gguf_kv *sw_gguf_kv_at(const struct sw_gguf *g, uint64_t i);
const struct sw_gguf_kv *sw_gguf_find(const struct sw_gguf *g, const char *key); /* NULL when absent */

/* Typed getters: return 0 and write *out, SW_ENOTFOUND when absent, SW_ECORRUPT when the
 * value has an incompatible type. Integer getters accept any integer type that fits. */
int sw_gguf_get_u64(const struct sw_gguf *g, const char *key, uint64_t *out);
/* The same for a kv already found: any non-negative integer value. */
int sw_gguf_kv_u64(const struct sw_gguf_kv *kv, uint64_t *out);
int sw_gguf_get_i64(const struct sw_gguf *g, const char *key, int64_t *out);
int sw_gguf_get_u32(const struct sw_gguf *g, const char *key, uint32_t *out);
int sw_gguf_get_f32(const struct sw_gguf *g, const char *key, float *out);
int sw_gguf_get_bool(const struct sw_gguf *g, const char *key, int *out);
int sw_gguf_get_str(const struct sw_gguf *g, const char *key, struct sw_gguf_str *out);
int sw_gguf_get_arr(const struct sw_gguf *g, const char *key, struct sw_gguf_arr *out);
/* Copies a string value into buf as a C string (truncating); returns buf or NULL when absent. */
const char *sw_gguf_get_cstr(const struct sw_gguf *g, const char *key, char *buf, size_t buf_len);

/* Array element access (index checked; SW_ERANGE past the end, SW_ECORRUPT wrong type). */
int sw_gguf_arr_str(const struct sw_gguf_arr *a, uint64_t i, struct sw_gguf_str *out);
int sw_gguf_arr_sub(const struct sw_gguf_arr *a, uint64_t i, struct sw_gguf_arr *out); /* nested */
int sw_gguf_arr_f32(const struct sw_gguf_arr *a, uint64_t i, float *out);
int sw_gguf_arr_i64(const struct sw_gguf_arr *a, uint64_t i, int64_t *out); /* any integer elem type */

uint64_t sw_gguf_n_tensors(const struct sw_gguf *g);
const struct sw_gguf_tensor *sw_gguf_tensor_at(const struct sw_gguf *g, uint64_t i);
const struct sw_gguf_tensor *sw_gguf_tensor_find(const struct sw_gguf *g, const char *name);

/* "<arch>.<suffix>" lookups, e.g. sw_gguf_arch_u32(g, "block_count", &n). */
const char *sw_gguf_arch(const struct sw_gguf *g); /* general.architecture, "" if absent */
int sw_gguf_arch_u32(const struct sw_gguf *g, const char *suffix, uint32_t *out);
int sw_gguf_arch_f32(const struct sw_gguf *g, const char *suffix, float *out);
uint32_t sw_gguf_n_layers(const struct sw_gguf *g); /* <arch>.block_count, 0 if absent */

/* Shard keys written by split (DESIGN.md). All return SW_ENOTFOUND for an unsplit model. */
#define SW_KEY_SHARD_INDEX "shardswarm.shard.index"             /* u32 */
#define SW_KEY_SHARD_COUNT "shardswarm.shard.count"             /* u32 */
#define SW_KEY_SHARD_LAYER_FIRST "shardswarm.shard.layer_first" /* u32 */
#define SW_KEY_SHARD_LAYER_LAST "shardswarm.shard.layer_last"   /* u32, inclusive */
#define SW_KEY_MODEL_ID "shardswarm.model.id"                   /* string */
struct sw_gguf_shard_info {
    uint32_t index, count;
    uint32_t layer_first, layer_last; /* inclusive */
    char model_id[80];                /* shardswarm.model.id */
};
int sw_gguf_shard_info(const struct sw_gguf *g, struct sw_gguf_shard_info *out);

/* ---------------------------------------------------------------- writer */

/* Streams a GGUF v3 file: add metadata and tensor infos first, then write the header and
 * tensor data in the order the infos were added. Tensor bytes are never held: each is
 * written from the caller's pointer (typically another file's map) as it comes. The file is
 * written to "<path>.tmp" and renamed on sw_gguf_writer_finish; sw_gguf_writer_free without
 * finish removes the temporary file. */
struct sw_gguf_writer;

int sw_gguf_writer_new(const char *path, uint64_t alignment, struct sw_gguf_writer **out);
void sw_gguf_writer_free(struct sw_gguf_writer *w);
/* Copies a key/value (key and value bytes are copied into the writer). */
int sw_gguf_writer_add_kv(struct sw_gguf_writer *w, const struct sw_gguf_kv *kv);
int sw_gguf_writer_set_u32(struct sw_gguf_writer *w, const char *key, uint32_t v);
int sw_gguf_writer_set_i32(struct sw_gguf_writer *w, const char *key, int32_t v);
int sw_gguf_writer_set_u64(struct sw_gguf_writer *w, const char *key, uint64_t v);
int sw_gguf_writer_set_f32(struct sw_gguf_writer *w, const char *key, float v);
int sw_gguf_writer_set_bool(struct sw_gguf_writer *w, const char *key, int v);
int sw_gguf_writer_set_str(struct sw_gguf_writer *w, const char *key, const char *v);
/* Arrays of fixed-size elements (count elements of elem_type at data) or of C strings. */
int sw_gguf_writer_set_arr(struct sw_gguf_writer *w, const char *key, uint32_t elem_type,
                           const void *data, uint64_t count);
int sw_gguf_writer_set_arr_str(struct sw_gguf_writer *w, const char *key,
                               const char *const *strs, uint64_t count);
int sw_gguf_writer_add_tensor(struct sw_gguf_writer *w, const char *name, uint32_t type,
                              uint32_t n_dims, const int64_t *ne);
/* After all kvs/tensors are added: writes header, metadata and tensor infos. */
int sw_gguf_writer_write_header(struct sw_gguf_writer *w);
/* Appends the next tensor's bytes (must be exactly its size; may be called several times
 * per tensor with consecutive chunks). Padding is inserted automatically. */
int sw_gguf_writer_write_data(struct sw_gguf_writer *w, const void *p, uint64_t n);
int sw_gguf_writer_finish(struct sw_gguf_writer *w); /* fsync + rename; then free */
/* The same, also giving the SHA-256 and size of the file written (either may be NULL).
 * The writer is freed whatever the outcome; on failure nothing is left at path. */
int sw_gguf_writer_finish_ex(struct sw_gguf_writer *w, uint8_t sha256_out[32], uint64_t *size_out);
/* Drops a key added earlier (SW_ENOTFOUND when absent). set_* and add_kv replace a key
 * that exists, keeping its position. */
int sw_gguf_writer_remove(struct sw_gguf_writer *w, const char *key);
/* Data-section offset chosen for the i-th tensor added (UINT64_MAX past the end). */
uint64_t sw_gguf_writer_tensor_offset(const struct sw_gguf_writer *w, uint64_t i);

/* ---------------------------------------------------------------- sharding */

struct sw_split_opts {
    uint32_t n_shards;
    const char *out_dir;
    const char *owner_pubkey_hex; /* optional: recorded in the manifest (and torrent) */
    /* Progress: called with bytes done/total; may be NULL. */
    void (*progress)(void *ud, uint64_t done, uint64_t total);
    void *progress_ud;
    /* Optional: the value of shardswarm.model.id. NULL: the hex SHA-256 of the source's
     * header bytes (magic through tensor infos, of every part in order). */
    const char *model_id;
};

struct sw_shard_plan {
    uint32_t index;
    uint32_t layer_first, layer_last;
    uint64_t n_bytes; /* tensor bytes */
};

/* Shard file name for index k: "shard-<k>.gguf". */
#define SW_SHARD_FILE_FMT "shard-%u.gguf"
#define SW_MANIFEST_FILE "model.json"

/* Splits a model (or a llama.cpp split model, named by any of its parts
 * "<name>-0000K-of-0000N.gguf") into out_dir/shard-K.gguf and out_dir/model.json, balancing
 * tensor bytes (docs/gguf.md). plans_out (n_shards entries, may be NULL) receives the chosen
 * layer ranges. On failure err names the file and field, and no shard of this run is left. */
int sw_gguf_split(const char *model_path, const struct sw_split_opts *opts,
                  struct sw_shard_plan *plans_out, char *err, size_t err_len);

/* The plan split would use, without writing anything (n_shards entries in plans_out);
 * *n_layers_out (may be NULL) receives the model's layer count. */
int sw_gguf_split_plan(const char *model_path, uint32_t n_shards, struct sw_shard_plan *plans_out,
                       uint32_t *n_layers_out, char *err, size_t err_len);

/* The manifest DIR/model.json that split writes (format in docs/gguf.md). */
struct sw_manifest_shard {
    uint32_t index;
    uint32_t layer_first, layer_last; /* inclusive */
    uint64_t size;                    /* bytes of the shard file */
    uint64_t tensor_bytes;            /* of which tensor data */
    uint32_t n_tensors;
    char file[256];                   /* name inside the folder, e.g. "shard-0.gguf" */
    char sha256_hex[65];
};

struct sw_manifest {
    char model_id[80];
    char arch[64];
    char name[128];            /* general.name, "" if absent */
    char owner_pubkey_hex[65]; /* "" if absent */
    uint32_t n_layers;
    uint32_t n_shards;
    uint64_t alignment;
    uint64_t source_size;      /* bytes of the source model file(s) */
    struct sw_manifest_shard *shards; /* n_shards entries, shards[i].index == i */
};

/* Loads and validates a manifest: path is a folder (reads path/model.json) or the JSON file.
 * Errors name the file and the field. *out is owned by the caller: sw_gguf_manifest_free. */
int sw_gguf_manifest_load(const char *path, struct sw_manifest **out, char *err, size_t err_len);
void sw_gguf_manifest_free(struct sw_manifest *m); /* NULL harmless */

enum sw_shard_state { SW_SHARD_OK, SW_SHARD_MISSING, SW_SHARD_WRONG_SIZE, SW_SHARD_CORRUPT };

struct sw_shard_check {
    uint32_t index;
    enum sw_shard_state state;
    uint64_t expected_size, actual_size;
    char path[512];
    char detail[256];
};

/* Checks every shard of dir/model.json (dir may also name the JSON file; shards lie beside
 * it). checks_out: array of at least *n_io entries; *n_io receives the shard count
 * (SW_ERANGE when the array is too small). Returns 0 when the manifest was read, whatever
 * the shards' states; an error (with err) when it could not be. */
int sw_gguf_verify_dir(const char *dir, struct sw_shard_check *checks_out, uint32_t *n_io,
                       char *err, size_t err_len);
/* Checks one shard file against its manifest entry (size, SHA-256, valid GGUF whose shard
 * keys match). path: the file to check. Fills *out. */
void sw_gguf_verify_shard(const struct sw_manifest *m, uint32_t index, const char *path,
                          struct sw_shard_check *out);
const char *sw_shard_state_name(enum sw_shard_state s); /* "ok", "missing", ... */

#endif
