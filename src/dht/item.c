/* item.c — BEP 44 item helpers (targets, the signed buffer, ed25519 via libsodium), key
 * files, address text forms and the routing-table state file. No network, no timers. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "dht.h"

/* ------------------------------------------------------------------ addresses */

int sw_dht_addr_parse(const char *s, struct sw_dht_addr *out)
{
    char host[64];
    memset(out, 0, sizeof *out);
    if (!s) return SW_EINVAL;
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s) return SW_EINVAL;
    size_t hl = (size_t)(colon - s);
    const char *h = s;
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') { h++; hl -= 2; }
    if (hl >= sizeof host) return SW_EINVAL;
    memcpy(host, h, hl);
    host[hl] = 0;
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (*end || !colon[1] || port == 0 || port > 65535) return SW_EINVAL;
    if (inet_pton(AF_INET, host, out->ip) == 1) out->family = 4;
    else if (inet_pton(AF_INET6, host, out->ip) == 1) out->family = 6;
    else return SW_EINVAL;
    out->port = (uint16_t)port;
    return 0;
}

const char *sw_dht_addr_str(const struct sw_dht_addr *a, char *out, size_t out_len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (a->family == 6) {
        inet_ntop(AF_INET6, a->ip, ip, sizeof ip);
        snprintf(out, out_len, "[%s]:%u", ip, a->port);
    } else {
        inet_ntop(AF_INET, a->ip, ip, sizeof ip);
        snprintf(out, out_len, "%s:%u", ip, a->port);
    }
    return out;
}

int sw_dht_addr_eq(const struct sw_dht_addr *a, const struct sw_dht_addr *b)
{
    return a->family == b->family && a->port == b->port &&
           !memcmp(a->ip, b->ip, a->family == 6 ? 16 : 4);
}

/* ------------------------------------------------------------------ keys */

static void sodium_once(void)
{
    /* sodium_init is idempotent and thread-safe; < 0 means no entropy source. */
    if (sodium_init() < 0) sw_log(SW_LOG_WARN, "DHT", "libsodium could not initialise");
}

void sw_dht_key_from_seed(struct sw_dht_key *key, const uint8_t seed[32])
{
    sodium_once();
    memcpy(key->seed, seed, 32);
    crypto_sign_seed_keypair(key->pk, key->sk, key->seed);
}

void sw_dht_key_generate(struct sw_dht_key *key)
{
    uint8_t seed[32];
    sodium_once();
    randombytes_buf(seed, sizeof seed);
    sw_dht_key_from_seed(key, seed);
    sodium_memzero(seed, sizeof seed);
}

int sw_dht_key_load(const char *path, struct sw_dht_key *key)
{
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = sw_file_read_all(path, 4096, &data, &len);
    if (rc) return rc;
    /* 64 hex digits, optional surrounding whitespace. */
    size_t b = 0, e = len;
    while (b < e && (data[b] == ' ' || data[b] == '\n' || data[b] == '\r' || data[b] == '\t')) b++;
    while (e > b && (data[e - 1] == ' ' || data[e - 1] == '\n' || data[e - 1] == '\r' || data[e - 1] == '\t')) e--;
    uint8_t seed[32];
    char hex[65];
    rc = SW_ECORRUPT;
    if (e - b == 64) {
        memcpy(hex, data + b, 64);
        hex[64] = 0;
        if (sw_hex_decode(hex, seed, 32) == 0) {
            sw_dht_key_from_seed(key, seed);
            rc = 0;
        }
    }
    sodium_memzero(data, len);
    free(data);
    sodium_memzero(seed, sizeof seed);
    return rc;
}

int sw_dht_key_save(const char *path, const struct sw_dht_key *key)
{
    char hex[66];
    sw_hex_encode(key->seed, 32, hex);
    hex[64] = '\n';
    hex[65] = 0;
    int rc = sw_file_write_atomic(path, hex, 65);
    sodium_memzero(hex, sizeof hex);
    if (rc) return rc;
    if (chmod(path, 0600) != 0) return SW_EIO;
    return 0;
}

/* ------------------------------------------------------------------ BEP 44 */

void sw_dht_immutable_target(const uint8_t *v, size_t v_len, uint8_t out[SW_DHT_ID_LEN])
{
    /* BEP 44: the target of an immutable item is the SHA-1 of its bencoded value. */
    sw_sha1(v, v_len, out);
}

void sw_dht_mutable_target(const uint8_t pk[32], const uint8_t *salt, size_t salt_len,
                           uint8_t out[SW_DHT_ID_LEN])
{
    /* BEP 44: the target of a mutable item is SHA-1(k || salt). */
    uint8_t buf[32 + SW_DHT_MAX_SALT];
    if (salt_len > SW_DHT_MAX_SALT) salt_len = SW_DHT_MAX_SALT;
    memcpy(buf, pk, 32);
    if (salt_len) memcpy(buf + 32, salt, salt_len);
    sw_sha1(buf, 32 + salt_len, out);
}

size_t sw_dht_sign_buffer(const uint8_t *salt, size_t salt_len, int64_t seq, const uint8_t *v,
                          size_t v_len, uint8_t *out)
{
    /* BEP 44: the signature covers the bencoded dict body "4:salt<n>:<salt>3:seqi<seq>e1:v<v>"
     * without the outer d/e, and the salt entry only when a salt is used. */
    char head[96];
    int hn = 0;
    size_t n = 0;
    if (salt_len) {
        hn = snprintf(head, sizeof head, "4:salt%zu:", salt_len);
        if (out) memcpy(out + n, head, (size_t)hn);
        n += (size_t)hn;
        if (out) memcpy(out + n, salt, salt_len);
        n += salt_len;
    }
    hn = snprintf(head, sizeof head, "3:seqi%llde1:v", (long long)seq);
    if (out) memcpy(out + n, head, (size_t)hn);
    n += (size_t)hn;
    if (out && v_len) memcpy(out + n, v, v_len);
    return n + v_len;
}

void sw_dht_item_sign(const struct sw_dht_key *key, const uint8_t *salt, size_t salt_len,
                      int64_t seq, const uint8_t *v, size_t v_len, uint8_t sig_out[64])
{
    uint8_t buf[SW_DHT_MAX_VALUE + SW_DHT_MAX_SALT + 64];
    sodium_once();
    if (v_len > SW_DHT_MAX_VALUE || salt_len > SW_DHT_MAX_SALT) {
        memset(sig_out, 0, 64);
        return;
    }
    size_t n = sw_dht_sign_buffer(salt, salt_len, seq, v, v_len, buf);
    crypto_sign_detached(sig_out, NULL, buf, n, key->sk);
}

int sw_dht_item_verify(const uint8_t pk[32], const uint8_t *salt, size_t salt_len, int64_t seq,
                       const uint8_t *v, size_t v_len, const uint8_t sig[64])
{
    uint8_t buf[SW_DHT_MAX_VALUE + SW_DHT_MAX_SALT + 64];
    sodium_once();
    if (v_len > SW_DHT_MAX_VALUE || salt_len > SW_DHT_MAX_SALT) return SW_EPERM;
    size_t n = sw_dht_sign_buffer(salt, salt_len, seq, v, v_len, buf);
    return crypto_sign_verify_detached(sig, buf, n, pk) == 0 ? 0 : SW_EPERM;
}

/* ------------------------------------------------------------------ state file */

int sw_dht_load(const char *path, uint8_t id_out[SW_DHT_ID_LEN], struct sw_dht_addr *addrs,
                size_t max, size_t *n_out)
{
    uint8_t *data = NULL;
    size_t len = 0;
    *n_out = 0;
    int rc = sw_file_read_all(path, 1 << 20, &data, &len);
    if (rc) return rc;
    char *save = NULL, *line = strtok_r((char *)data, "\n", &save);
    rc = SW_ECORRUPT;
    if (!line || strcmp(line, "sw-dht 1")) goto out;
    line = strtok_r(NULL, "\n", &save);
    if (!line || strncmp(line, "id ", 3) || strlen(line) != 43 || sw_hex_decode(line + 3, id_out, 20))
        goto out;
    rc = 0;
    while ((line = strtok_r(NULL, "\n", &save)) && *n_out < max) {
        char *sp = strchr(line, ' ');
        if (!sp) continue;
        *sp = 0;
        if (sw_dht_addr_parse(line, &addrs[*n_out]) == 0) (*n_out)++;
    }
out:
    free(data);
    return rc;
}
