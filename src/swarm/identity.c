/* identity.c — ed25519 key pairs (libsodium) for node identities and the model owner's key,
 * and their key files. Not for: deciding what a key may do (command.c). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "swarm/swarm.h"

#define KEY_HEADER "shardswarm ed25519 secret key v1"

static int sodium_ready(void)
{
    return sodium_init() >= 0 ? 0 : SW_EUNSUPPORTED;
}

int sw_identity_generate(struct sw_identity *out)
{
    if (!out) return SW_EINVAL;
    if (sodium_ready()) return SW_EUNSUPPORTED;
    uint8_t seed[32];
    sw_random_bytes(seed, sizeof seed);
    crypto_sign_seed_keypair(out->pk, out->sk, seed);
    sodium_memzero(seed, sizeof seed);
    return 0;
}

int sw_identity_save(const char *path, const struct sw_identity *id)
{
    if (!path || !id) return SW_EINVAL;
    char hex[65], line[160];
    sw_hex_encode(id->sk, 32, hex); /* the seed is the first half of libsodium's sk */
    int n = snprintf(line, sizeof line, "%s\n%s\n", KEY_HEADER, hex);
    sodium_memzero(hex, sizeof hex);
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
        return SW_EINVAL;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return SW_EIO;
    int rc = 0;
    if (write(fd, line, (size_t)n) != n || fsync(fd)) rc = SW_EIO;
    close(fd);
    sodium_memzero(line, sizeof line);
    if (!rc && rename(tmp, path)) rc = SW_EIO;
    if (rc) unlink(tmp);
    return rc;
}

int sw_identity_load(const char *path, struct sw_identity *out, char *err, size_t err_len)
{
    if (!path || !out) return SW_EINVAL;
    if (sodium_ready()) return SW_EUNSUPPORTED;
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = sw_file_read_all(path, 4096, &data, &len);
    if (rc == SW_ENOTFOUND || (rc && !sw_path_exists(path))) {
        if (err_len) snprintf(err, err_len, "%s: no such key file", path);
        return SW_ENOTFOUND;
    }
    if (rc) {
        if (err_len) snprintf(err, err_len, "%s: cannot read key file (%s)", path, sw_strerror(rc));
        return rc;
    }
    const char *s = (const char *)data;
    size_t hl = strlen(KEY_HEADER);
    uint8_t seed[32];
    char hex[65] = { 0 };
    if (len >= hl + 1 + 64) memcpy(hex, s + hl + 1, 64);
    const char *tail = len >= hl + 1 + 64 ? s + hl + 1 + 64 : "";
    if (len < hl + 1 + 64 || memcmp(s, KEY_HEADER, hl) || s[hl] != '\n' ||
        (*tail && strcmp(tail, "\n")) || sw_hex_decode(hex, seed, 32)) {
        sodium_memzero(hex, sizeof hex);
        if (err_len)
            snprintf(err, err_len, "%s: not a shardswarm key file (expected '%s' and 64 hex digits)",
                     path, KEY_HEADER);
        sodium_memzero(data, len);
        free(data);
        return SW_ECORRUPT;
    }
    sodium_memzero(hex, sizeof hex);
    sodium_memzero(data, len);
    free(data);
    crypto_sign_seed_keypair(out->pk, out->sk, seed);
    sodium_memzero(seed, sizeof seed);
    return 0;
}

int sw_identity_load_or_create(const char *cache_dir, struct sw_identity *out, int *created_out,
                               char *err, size_t err_len)
{
    if (created_out) *created_out = 0;
    if (!cache_dir || !out) return SW_EINVAL;
    int rc = sw_mkdir_p(cache_dir);
    if (rc) {
        if (err_len) snprintf(err, err_len, "%s: cannot create cache folder", cache_dir);
        return rc;
    }
    char *path = sw_path_join(cache_dir, "node.key");
    if (!path) return SW_ENOMEM;
    rc = sw_identity_load(path, out, err, err_len);
    if (rc == SW_ENOTFOUND) {
        rc = sw_identity_generate(out);
        if (!rc) rc = sw_identity_save(path, out);
        if (rc && err_len) snprintf(err, err_len, "%s: cannot write node key (%s)", path, sw_strerror(rc));
        if (!rc && created_out) *created_out = 1;
    }
    free(path);
    return rc;
}

const char *sw_node_id_short(const uint8_t id[SW_NODE_ID_LEN], char *out, size_t out_len)
{
    char hex[5];
    sw_hex_encode(id, 2, hex);
    snprintf(out, out_len, "%s\xe2\x80\xa6", hex); /* U+2026 HORIZONTAL ELLIPSIS */
    return out;
}

const char *sw_node_id_hex(const uint8_t id[SW_NODE_ID_LEN], char *out)
{
    sw_hex_encode(id, SW_NODE_ID_LEN, out);
    return out;
}

/* Connection binding: the peer signs our random challenge (with the model's info-hash and a
 * context string, so the signature is good for nothing else). */
static size_t auth_msg(const uint8_t info_hash[20], const uint8_t challenge[32], uint8_t *out)
{
    size_t k = sizeof SW_SWARM_AUTH_CTX - 1;
    memcpy(out, SW_SWARM_AUTH_CTX, k);
    memcpy(out + k, info_hash, 20);
    memcpy(out + k + 20, challenge, 32);
    return k + 52;
}

void sw_swarm_auth_sign(const struct sw_identity *id, const uint8_t info_hash[20],
                        const uint8_t challenge[32], uint8_t proof_out[96])
{
    uint8_t msg[128];
    size_t n = auth_msg(info_hash, challenge, msg);
    memcpy(proof_out, id->pk, 32);
    if (sodium_ready()) {
        memset(proof_out + 32, 0, 64);
        return;
    }
    crypto_sign_detached(proof_out + 32, NULL, msg, n, id->sk);
}

int sw_swarm_auth_verify(const uint8_t proof[96], const uint8_t info_hash[20],
                         const uint8_t challenge[32], uint8_t id_out[SW_NODE_ID_LEN])
{
    if (sodium_ready()) return SW_EUNSUPPORTED;
    uint8_t msg[128];
    size_t n = auth_msg(info_hash, challenge, msg);
    if (crypto_sign_verify_detached(proof + 32, msg, n, proof)) return SW_EPERM;
    memcpy(id_out, proof, SW_NODE_ID_LEN);
    return 0;
}
