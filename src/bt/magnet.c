/* magnet.c — magnet links (BEP 9): xt=urn:btih:<hex|base32>, dn, tr, x.pe; parse and format.
 * Not for: fetching the metadata (session.c does that over ut_metadata). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bt.h"
#include "bt_int.h"

#define ERR(...) (err && err_len ? (void)snprintf(err, err_len, __VA_ARGS__) : (void)0)
#define MAGNET_MAX 8192

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) ('+' is a space in query strings) into a fresh string. */
static char *pct_decode(const char *s, size_t n)
{
    char *o = malloc(n + 1), *q = o;
    if (!o) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            *q++ = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else if (s[i] == '+') {
            *q++ = ' ';
        } else {
            *q++ = s[i];
        }
    }
    *q = 0;
    if (strlen(o) != (size_t)(q - o)) { free(o); return NULL; } /* embedded NUL */
    return o;
}

/* RFC 4648 base32 of exactly 20 bytes (32 characters). */
static int base32_decode20(const char *s, uint8_t out[20])
{
    uint64_t acc = 0;
    int bits = 0, k = 0;
    for (int i = 0; i < 32; i++) {
        int c = toupper((unsigned char)s[i]), v;
        if (c >= 'A' && c <= 'Z') v = c - 'A';
        else if (c >= '2' && c <= '7') v = c - '2' + 26;
        else return SW_ECORRUPT;
        acc = (acc << 5) | (uint64_t)v;
        bits += 5;
        if (bits >= 8) {
            out[k++] = (uint8_t)(acc >> (bits - 8));
            bits -= 8;
        }
    }
    return k == 20 ? 0 : SW_ECORRUPT;
}

void sw_bt_magnet_free(struct sw_bt_magnet *m)
{
    if (!m) return;
    sw__strv_free(m->trackers, m->n_trackers);
    sw__strv_free(m->peers, m->n_peers);
    memset(m, 0, sizeof *m);
}

int sw_bt_magnet_parse(const char *uri, struct sw_bt_magnet *m, char *err, size_t err_len)
{
    memset(m, 0, sizeof *m);
    if (!uri || strncmp(uri, "magnet:?", 8)) { ERR("magnet: does not start with 'magnet:?'"); return SW_ECORRUPT; }
    if (strlen(uri) > MAGNET_MAX) { ERR("magnet: longer than %d characters", MAGNET_MAX); return SW_ETOOBIG; }
    int have_xt = 0, rc = 0;
    const char *p = uri + 8;
    while (*p && !rc) {
        const char *amp = strchr(p, '&');
        size_t n = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        if (eq) {
            size_t kl = (size_t)(eq - p);
            char *val = pct_decode(eq + 1, n - kl - 1);
            if (!val) { rc = SW_ENOMEM; break; }
            if (kl == 2 && !memcmp(p, "xt", 2) && !strncmp(val, "urn:btih:", 9)) {
                const char *h = val + 9;
                size_t hl = strlen(h);
                if (hl == 40 && !sw_hex_decode(h, m->info_hash, 20)) have_xt = 1;
                else if (hl == 32 && !base32_decode20(h, m->info_hash)) have_xt = 1;
                else { ERR("magnet: xt info-hash is neither 40 hex nor 32 base32 characters"); rc = SW_ECORRUPT; }
            } else if (kl == 2 && !memcmp(p, "dn", 2)) {
                snprintf(m->name, sizeof m->name, "%s", val);
            } else if (kl == 2 && !memcmp(p, "tr", 2) && *val) {
                rc = sw__strv_add(&m->trackers, &m->n_trackers, val, strlen(val));
            } else if (kl == 4 && !memcmp(p, "x.pe", 4) && *val) {
                rc = sw__strv_add(&m->peers, &m->n_peers, val, strlen(val));
            }
            free(val);
        }
        if (!amp) break;
        p = amp + 1;
    }
    if (!rc && !have_xt) { ERR("magnet: no xt=urn:btih:<info-hash>"); rc = SW_ECORRUPT; }
    if (rc) sw_bt_magnet_free(m);
    return rc;
}

static void pct_encode(struct sw_buf *out, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') sw_buf_append_byte(out, c);
        else sw_buf_printf(out, "%%%02X", c);
    }
}

int sw_bt_magnet_format(const uint8_t info_hash[20], const char *name, const char *const *trackers,
                        uint32_t n_trackers, struct sw_buf *out)
{
    char hex[41];
    sw_hex_encode(info_hash, 20, hex);
    sw_buf_printf(out, "magnet:?xt=urn:btih:%s", hex);
    if (name && *name) {
        sw_buf_printf(out, "&dn=");
        pct_encode(out, name);
    }
    for (uint32_t i = 0; i < n_trackers; i++) {
        sw_buf_printf(out, "&tr=");
        pct_encode(out, trackers[i]);
    }
    return sw_buf_ok(out) ? 0 : SW_ENOMEM;
}
