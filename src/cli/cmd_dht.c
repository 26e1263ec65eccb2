/* cmd_dht.c — `shardswarm dht`: tools for checking a mainline DHT by hand (run a node,
 * ping, get-peers, announce, BEP 44 put/get, keygen). Lines on stdout, or JSON with --json. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "cli.h"
#include "dht/dht.h"

#define MAX_BOOT 32

static const char *usage_text =
    "usage: shardswarm dht <subcommand> [options]\n"
    "\n"
    "  run --listen PORT [--bootstrap H:P ...] [--state FILE] [--announce HASH:PORT ...]\n"
    "                       run a long-lived DHT node (Ctrl-C stops it)\n"
    "  ping HOST:PORT       send a KRPC ping\n"
    "  find-node ID         look up the nodes closest to ID (40 hex digits)\n"
    "  get-peers HASH       find peers of an info-hash (40 hex digits)\n"
    "  announce HASH PORT   announce that we serve HASH on TCP PORT (0: implied port)\n"
    "  put --key FILE [--salt S] [--seq N] VALUE   store a signed mutable item (BEP 44)\n"
    "  put --immutable VALUE                        store an immutable item\n"
    "  get PUBKEY [--salt S] get a mutable item (64 hex digits), or an immutable one by\n"
    "                       its 40-hex-digit target\n"
    "  keygen --out FILE    write a new ed25519 key file (64 hex digits of seed)\n"
    "\n"
    "common options:\n"
    "  --bootstrap H:P      a node to join through (repeatable)\n"
    "  --timeout SECONDS    give up after this long (default 30)\n"
    "  --port PORT          local UDP port (default: any)\n"
    "  --bind HOST          local address (default 0.0.0.0, or :: with --ipv6)\n"
    "  --ipv6               run an IPv6 node (BEP 32); addresses as [::1]:PORT\n"
    "  --json               one JSON object per line instead of text\n"
    "  -v, --verbose        debug logging\n";

struct opts {
    const char *sub;
    const char *boot[MAX_BOOT];
    int n_boot;
    uint32_t timeout_s;
    uint32_t port;
    const char *bind;
    int json, verbose, ipv6;
    const char *state;
    const char *key_path;
    const char *salt;
    int64_t seq;
    int immutable;
    const char *out;
    const char *announce[MAX_BOOT];
    int n_announce;
    const char *pos[4];
    int n_pos;
};

/* ------------------------------------------------------------------ output */

static void json_str(FILE *f, const uint8_t *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned c = s[i];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\u%04x", c);
        else fputc((int)c, f);
    }
    fputc('"', f);
}

static void hex(const uint8_t *p, size_t n, char *out) { sw_hex_encode(p, n, out); }

/* ------------------------------------------------------------------ the run */

struct ctx {
    struct opts *o;
    uv_loop_t loop;
    uv_timer_t deadline, status;
    uv_signal_t sigint, sigterm;
    struct sw_dht_uv *u;
    int phase; /* 0 waiting for ready, 1 operation running, 2 finished */
    int rc;
    uint32_t lookup;
    uint8_t target[20];
    struct sw_dht_key key;
    uint8_t value[SW_DHT_MAX_VALUE];
    size_t value_len;
    int64_t found_seq;
    int found_item;
    uint64_t started_ms;
    uint32_t n_peers;
};

static void finish(struct ctx *c, int rc)
{
    if (c->phase == 2) return;
    c->phase = 2;
    c->rc = rc;
    uv_timer_stop(&c->deadline);
    uv_timer_stop(&c->status);
    uv_close((uv_handle_t *)&c->status, NULL);
    uv_signal_stop(&c->sigint);
    uv_signal_stop(&c->sigterm);
    sw_dht_uv_close(c->u);
    uv_close((uv_handle_t *)&c->deadline, NULL);
    uv_close((uv_handle_t *)&c->sigint, NULL);
    uv_close((uv_handle_t *)&c->sigterm, NULL);
}

/* Text output stays one line per value: control bytes print as \xNN. */
static void text_str(FILE *f, const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x20 || s[i] == 0x7f || s[i] == '\\') fprintf(f, "\\x%02x", s[i]);
        else fputc(s[i], f);
    }
}

static void print_value(struct ctx *c, const uint8_t *v, size_t n)
{
    /* A bencoded string prints as its text; anything else as raw bencode. */
    struct sw_bdoc doc;
    const uint8_t *s = v;
    size_t sl = n;
    if (sw_bdecode(v, n, NULL, &doc, NULL, NULL, 0) == 0) {
        if (doc.nodes[0].type == SW_BSTR) {
            s = doc.nodes[0].str;
            sl = doc.nodes[0].str_len;
        }
        if (c->o->json) json_str(stdout, s, sl);
        else text_str(stdout, s, sl);
        sw_bdoc_free(&doc);
    } else {
        if (c->o->json) json_str(stdout, v, n);
        else text_str(stdout, v, n);
    }
}

static int start_operation(struct ctx *c);

static void on_event(void *ud, const struct sw_dht_event *ev)
{
    struct ctx *c = ud;
    struct opts *o = c->o;
    char as[64], h[129];
    uint64_t now = uv_now(&c->loop);
    switch (ev->type) {
    case SW_DHT_EV_READY:
        if (!strcmp(o->sub, "run")) {
            struct sw_dht_stats st;
            sw_dht_get_stats(sw_dht_uv_dht(c->u), &st);
            if (o->json) printf("{\"event\":\"ready\",\"nodes\":%u}\n", st.nodes);
            else printf("ready nodes %u\n", st.nodes);
            fflush(stdout);
        }
        if (c->phase == 0 && strcmp(o->sub, "run")) {
            c->phase = 1;
            int rc = start_operation(c);
            if (rc) {
                fprintf(stderr, "shardswarm dht %s: %s\n", o->sub, sw_strerror(rc));
                finish(c, SW_EXIT_FAIL);
            }
        }
        break;
    case SW_DHT_EV_PONG:
        if (ev->status) {
            fprintf(stderr, "shardswarm dht ping: no reply from %s\n", sw_dht_addr_str(&ev->addr, as, sizeof as));
            finish(c, SW_EXIT_FAIL);
            break;
        }
        hex(ev->id, 20, h);
        if (o->json)
            printf("{\"event\":\"pong\",\"addr\":\"%s\",\"id\":\"%s\",\"rtt_ms\":%llu}\n",
                   sw_dht_addr_str(&ev->addr, as, sizeof as), h, (unsigned long long)(now - c->started_ms));
        else
            printf("pong %s id %s rtt %llums\n", sw_dht_addr_str(&ev->addr, as, sizeof as), h,
                   (unsigned long long)(now - c->started_ms));
        finish(c, SW_EXIT_OK);
        break;
    case SW_DHT_EV_PEER:
        if (ev->lookup_id != c->lookup) break;
        c->n_peers++;
        if (o->json)
            printf("{\"event\":\"peer\",\"addr\":\"%s\",\"self\":%s}\n", sw_dht_addr_str(&ev->addr, as, sizeof as),
                   ev->is_self ? "true" : "false");
        else
            printf("peer %s%s\n", sw_dht_addr_str(&ev->addr, as, sizeof as), ev->is_self ? " (self)" : "");
        fflush(stdout);
        break;
    case SW_DHT_EV_NODE:
        if (ev->lookup_id != c->lookup) break;
        hex(ev->id, 20, h);
        if (o->json)
            printf("{\"event\":\"node\",\"id\":\"%s\",\"addr\":\"%s\"}\n", h, sw_dht_addr_str(&ev->addr, as, sizeof as));
        else
            printf("node %s %s\n", h, sw_dht_addr_str(&ev->addr, as, sizeof as));
        fflush(stdout);
        break;
    case SW_DHT_EV_ITEM:
        if (ev->lookup_id != c->lookup) break;
        c->found_item = 1;
        c->found_seq = ev->seq;
        if (o->json) {
            printf("{\"event\":\"item\",\"from\":\"%s\",", sw_dht_addr_str(&ev->addr, as, sizeof as));
            if (ev->is_mutable) printf("\"seq\":%lld,", (long long)ev->seq);
            printf("\"value\":");
            print_value(c, ev->value, ev->value_len);
            printf("}\n");
        } else {
            if (ev->is_mutable) printf("item seq %lld from %s\n", (long long)ev->seq, sw_dht_addr_str(&ev->addr, as, sizeof as));
            else printf("item from %s\n", sw_dht_addr_str(&ev->addr, as, sizeof as));
            printf("value ");
            print_value(c, ev->value, ev->value_len);
            printf("\n");
        }
        fflush(stdout);
        break;
    case SW_DHT_EV_DONE: {
        if (ev->lookup_id != c->lookup) break;
        hex(ev->target, 20, h);
        const char *sub = o->sub;
        if (!strcmp(sub, "put") && c->phase == 1 && ev->kind == SW_DHT_GET_ITEM) {
            /* Phase one of a put: learn the current seq, then put seq+1. */
            c->phase = 3;
            int rc = start_operation(c);
            if (rc) {
                fprintf(stderr, "shardswarm dht put: %s\n", sw_strerror(rc));
                finish(c, SW_EXIT_FAIL);
            }
            break;
        }
        if (o->json)
            printf("{\"event\":\"done\",\"target\":\"%s\",\"replies\":%u,\"queries\":%u,\"peers\":%u,"
                   "\"stored\":%u,\"hops\":%u,\"elapsed_ms\":%llu}\n",
                   h, ev->n_replies, ev->n_queries, ev->n_peers, ev->n_stored, ev->hops,
                   (unsigned long long)ev->elapsed_ms);
        else
            printf("done target %s replies %u queries %u peers %u stored %u hops %u elapsed %llums\n", h,
                   ev->n_replies, ev->n_queries, ev->n_peers, ev->n_stored, ev->hops,
                   (unsigned long long)ev->elapsed_ms);
        fflush(stdout);
        int rc = SW_EXIT_OK;
        if (!ev->n_replies) {
            fprintf(stderr, "shardswarm dht %s: no node answered\n", sub);
            rc = SW_EXIT_FAIL;
        } else if (!strcmp(sub, "get-peers") && !c->n_peers) {
            fprintf(stderr, "shardswarm dht get-peers: no peers found\n");
            rc = SW_EXIT_FAIL;
        } else if (!strcmp(sub, "get") && !c->found_item) {
            fprintf(stderr, "shardswarm dht get: no item found\n");
            rc = SW_EXIT_FAIL;
        } else if ((!strcmp(sub, "put") || !strcmp(sub, "announce")) && !ev->n_stored) {
            fprintf(stderr, "shardswarm dht %s: no node stored it\n", sub);
            rc = SW_EXIT_FAIL;
        }
        finish(c, rc);
        break;
    }
    default:
        break;
    }
}

static int start_operation(struct ctx *c)
{
    struct opts *o = c->o;
    struct sw_dht *d = sw_dht_uv_dht(c->u);
    uint64_t now = uv_now(&c->loop);
    const uint8_t *salt = (const uint8_t *)o->salt;
    size_t salt_len = o->salt ? strlen(o->salt) : 0;
    if (!strcmp(o->sub, "get-peers")) return sw_dht_get_peers(d, c->target, now, &c->lookup);
    if (!strcmp(o->sub, "find-node")) return sw_dht_find_node(d, c->target, now, &c->lookup);
    if (!strcmp(o->sub, "announce")) {
        uint32_t port = (uint32_t)o->seq;
        return sw_dht_announce(d, c->target, (uint16_t)port, 0, now, &c->lookup);
    }
    if (!strcmp(o->sub, "get")) {
        if (o->immutable) return sw_dht_get_item(d, c->target, NULL, NULL, 0, now, &c->lookup);
        return sw_dht_get_item(d, NULL, c->key.pk, salt, salt_len, now, &c->lookup);
    }
    if (!strcmp(o->sub, "put")) {
        if (o->immutable) {
            c->phase = 3;
            return sw_dht_put_immutable(d, c->value, c->value_len, now, &c->lookup);
        }
        if (c->phase == 1 && o->seq < 0) {
            c->found_item = 0;
            return sw_dht_get_item(d, NULL, c->key.pk, salt, salt_len, now, &c->lookup);
        }
        int64_t seq = o->seq >= 0 ? o->seq : (c->found_item ? c->found_seq + 1 : 1);
        /* read-modify-write: storers refuse it (301) if someone else put in between */
        int64_t cas = o->seq < 0 && c->found_item ? c->found_seq : -1;
        c->phase = 3;
        char h[41];
        sw_dht_mutable_target(c->key.pk, salt, salt_len, c->target);
        hex(c->target, 20, h);
        if (o->json) printf("{\"event\":\"put\",\"target\":\"%s\",\"seq\":%lld}\n", h, (long long)seq);
        else printf("put target %s seq %lld\n", h, (long long)seq);
        return sw_dht_put_mutable(d, &c->key, salt, salt_len, c->value, c->value_len, seq, cas, 0, now, &c->lookup);
    }
    return SW_EINVAL;
}

static void on_deadline(uv_timer_t *t)
{
    struct ctx *c = t->data;
    fprintf(stderr, "shardswarm dht %s: timed out after %us%s\n", c->o->sub, c->o->timeout_s,
            c->phase == 0 ? " (never joined the DHT: check --bootstrap)" : "");
    finish(c, SW_EXIT_FAIL);
}

/* `dht run`: one status line a minute, for people watching a node by hand. */
static void on_status(uv_timer_t *t)
{
    struct ctx *c = t->data;
    struct sw_dht_stats st;
    sw_dht_get_stats(sw_dht_uv_dht(c->u), &st);
    if (c->o->json)
        printf("{\"event\":\"status\",\"nodes\":%u,\"good\":%u,\"buckets\":%u,\"hashes\":%u,\"peers\":%u,"
               "\"items\":%u,\"queries_in\":%llu,\"malformed\":%llu,\"rate_limited\":%llu}\n",
               st.nodes, st.good_nodes, st.buckets, st.stored_hashes, st.stored_peers, st.stored_items,
               (unsigned long long)st.queries_in, (unsigned long long)st.malformed,
               (unsigned long long)st.rate_limited);
    else
        printf("status nodes %u good %u buckets %u hashes %u peers %u items %u queries_in %llu malformed %llu "
               "rate_limited %llu\n",
               st.nodes, st.good_nodes, st.buckets, st.stored_hashes, st.stored_peers, st.stored_items,
               (unsigned long long)st.queries_in, (unsigned long long)st.malformed,
               (unsigned long long)st.rate_limited);
    fflush(stdout);
}

static void on_signal(uv_signal_t *s, int sig)
{
    struct ctx *c = s->data;
    (void)sig;
    if (!strcmp(c->o->sub, "run")) {
        struct sw_dht_stats st;
        sw_dht_get_stats(sw_dht_uv_dht(c->u), &st);
        sw_log(SW_LOG_INFO, "DHT", "stopping: %u nodes, %u stored peers, %llu malformed, %llu rate-limited",
               st.nodes, st.stored_peers, (unsigned long long)st.malformed, (unsigned long long)st.rate_limited);
    }
    finish(c, !strcmp(c->o->sub, "run") ? SW_EXIT_OK : SW_EXIT_FAIL);
}

static int run_node(struct opts *o, struct ctx *c)
{
    struct sw_dht_uv_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.dht.on_event = on_event;
    cfg.dht.ud = c;
    cfg.bind_host = o->bind;
    cfg.port = (uint16_t)o->port;
    cfg.state_path = o->state;
    /* Short-lived tools join read-only (BEP 43) so they never linger in others' tables. */
    cfg.dht.read_only = strcmp(o->sub, "run") != 0;
    cfg.dht.family = o->ipv6 ? 6 : 4;
    uv_loop_init(&c->loop);
    int err = 0;
    c->u = sw_dht_uv_new(&c->loop, &cfg, &err);
    if (!c->u) {
        uv_run(&c->loop, UV_RUN_DEFAULT); /* lets the half-opened handles close */
        uv_loop_close(&c->loop);
        return sw_cli_fail("dht", "cannot start the DHT on port %u: %s", o->port, sw_strerror(err));
    }
    c->started_ms = uv_now(&c->loop);
    uv_timer_init(&c->loop, &c->deadline);
    uv_timer_init(&c->loop, &c->status);
    c->deadline.data = c->status.data = c;
    uv_signal_init(&c->loop, &c->sigint);
    uv_signal_init(&c->loop, &c->sigterm);
    c->sigint.data = c->sigterm.data = c;
    uv_signal_start(&c->sigint, on_signal, SIGINT);
    uv_signal_start(&c->sigterm, on_signal, SIGTERM);
    struct sw_dht *d = sw_dht_uv_dht(c->u);
    char h[41];
    uint8_t id[20];
    sw_dht_get_id(d, id);
    hex(id, 20, h);
    if (!strcmp(o->sub, "run")) {
        if (o->json) printf("{\"event\":\"listening\",\"port\":%u,\"id\":\"%s\"}\n", sw_dht_uv_port(c->u), h);
        else printf("listening udp %u id %s\n", sw_dht_uv_port(c->u), h);
        fflush(stdout);
        uv_timer_start(&c->status, on_status, 60000, 60000);
        for (int i = 0; i < o->n_announce; i++) {
            const char *s = o->announce[i];
            uint8_t ih[20];
            char hx[41];
            memcpy(hx, s, 40);
            hx[40] = 0;
            sw_hex_decode(hx, ih, 20); /* validated in parse */
            uint16_t port = (uint16_t)strtoul(s + 41, NULL, 10);
            sw_dht_announce(d, ih, port, 1, uv_now(&c->loop), NULL);
        }
    } else {
        sw_log(SW_LOG_DEBUG, "DHT", "read-only node on udp %u id %s", sw_dht_uv_port(c->u), h);
        uv_timer_start(&c->deadline, on_deadline, (uint64_t)o->timeout_s * 1000u, 0);
    }
    if (!strcmp(o->sub, "ping")) {
        struct sw_dht_addr a;
        sw_dht_addr_parse(o->pos[0], &a); /* validated in parse */
        c->phase = 1;
        sw_dht_ping(d, &a, uv_now(&c->loop));
    } else {
        sw_dht_uv_bootstrap(c->u, o->boot, (size_t)o->n_boot);
    }
    uv_run(&c->loop, UV_RUN_DEFAULT);
    uv_loop_close(&c->loop);
    return c->rc;
}

/* ------------------------------------------------------------------ flags */

static int parse(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof *o);
    o->timeout_s = 30;
    o->seq = -1;
    if (argc < 2) return sw_cli_usage_error("dht", "missing subcommand (run, ping, get-peers, announce, put, get, keygen)");
    o->sub = argv[1];
    static const char *subs[] = { "run", "ping", "find-node", "get-peers", "announce", "put", "get", "keygen" };
    int known = 0;
    for (size_t i = 0; i < SW_ARRAY_LEN(subs); i++) known |= !strcmp(o->sub, subs[i]);
    if (!known) return sw_cli_usage_error("dht", "unknown subcommand '%s'", o->sub);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VAL()                                                                     \
    do {                                                                               \
        if (!val) return sw_cli_usage_error("dht", "%s needs a value", a);             \
        i++;                                                                           \
    } while (0)
        if (!strcmp(a, "--bootstrap")) {
            NEED_VAL();
            char host[256];
            uint16_t port;
            int rc = sw_cli_parse_hostport("dht", "--bootstrap", val, host, &port);
            if (rc) return rc;
            if (o->n_boot >= MAX_BOOT) return sw_cli_usage_error("dht", "--bootstrap: at most %d nodes", MAX_BOOT);
            o->boot[o->n_boot++] = val;
        } else if (!strcmp(a, "--timeout")) {
            NEED_VAL();
            int rc = sw_cli_parse_u32("dht", "--timeout", val, 1, 86400, &o->timeout_s);
            if (rc) return rc;
        } else if (!strcmp(a, "--port") || !strcmp(a, "--listen")) {
            NEED_VAL();
            int rc = sw_cli_parse_u32("dht", a, val, 0, 65535, &o->port);
            if (rc) return rc;
        } else if (!strcmp(a, "--bind")) {
            NEED_VAL();
            o->bind = val;
        } else if (!strcmp(a, "--state")) {
            NEED_VAL();
            o->state = val;
        } else if (!strcmp(a, "--key")) {
            NEED_VAL();
            o->key_path = val;
        } else if (!strcmp(a, "--out")) {
            NEED_VAL();
            o->out = val;
        } else if (!strcmp(a, "--salt")) {
            NEED_VAL();
            if (strlen(val) > SW_DHT_MAX_SALT)
                return sw_cli_usage_error("dht", "--salt is at most %d bytes (BEP 44)", SW_DHT_MAX_SALT);
            o->salt = val;
        } else if (!strcmp(a, "--seq")) {
            NEED_VAL();
            uint64_t v;
            int rc = sw_cli_parse_u64("dht", "--seq", val, 0, INT64_MAX, &v);
            if (rc) return rc;
            o->seq = (int64_t)v;
        } else if (!strcmp(a, "--announce")) {
            NEED_VAL();
            uint8_t ih[20];
            uint32_t port;
            char hx[41];
            if (strlen(val) >= 42) {
                memcpy(hx, val, 40);
                hx[40] = 0;
            }
            if (strlen(val) < 42 || val[40] != ':' || sw_hex_decode(hx, ih, 20))
                return sw_cli_usage_error("dht", "--announce expects HASH:PORT (40 hex digits), got '%s'", val);
            int rc = sw_cli_parse_u32("dht", "--announce", val + 41, 0, 65535, &port);
            if (rc) return rc;
            if (o->n_announce >= MAX_BOOT) return sw_cli_usage_error("dht", "--announce: at most %d", MAX_BOOT);
            o->announce[o->n_announce++] = val;
        } else if (!strcmp(a, "--immutable")) {
            o->immutable = 1;
        } else if (!strcmp(a, "--ipv6")) {
            o->ipv6 = 1;
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            o->verbose = 1;
        } else if (a[0] == '-' && a[1]) {
            return sw_cli_usage_error("dht", "unknown option '%s'", a);
        } else {
            if (o->n_pos >= 4) return sw_cli_usage_error("dht", "too many arguments ('%s')", a);
            o->pos[o->n_pos++] = a;
        }
#undef NEED_VAL
    }
    return 0;
}

static int need_pos(const struct opts *o, int n, const char *what)
{
    if (o->n_pos != n) return sw_cli_usage_error("dht", "%s %s", o->sub, what);
    return 0;
}

int sw_cmd_dht(int argc, char **argv)
{
    if (sw_cli_wants_help(argc, argv)) {
        fputs(usage_text, stdout);
        return SW_EXIT_OK;
    }
    struct opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    sw_cli_log_setup("human", o.verbose);
    signal(SIGPIPE, SIG_IGN);
    struct ctx *c = calloc(1, sizeof *c);
    if (!c) return sw_cli_fail("dht", "out of memory");
    c->o = &o;
    if (!strcmp(o.sub, "keygen")) {
        if ((rc = need_pos(&o, 0, "takes no arguments (use --out FILE)"))) goto out;
        if (!o.out) { rc = sw_cli_usage_error("dht", "keygen needs --out FILE"); goto out; }
        sw_dht_key_generate(&c->key);
        int e = sw_dht_key_save(o.out, &c->key);
        if (e) { rc = sw_cli_fail("dht", "cannot write %s: %s", o.out, sw_strerror(e)); goto out; }
        char h[65];
        hex(c->key.pk, 32, h);
        if (o.json) printf("{\"event\":\"key\",\"file\":\"%s\",\"public_key\":\"%s\"}\n", o.out, h);
        else printf("public key %s\n", h);
        rc = SW_EXIT_OK;
        goto out;
    }
    if (!strcmp(o.sub, "run")) {
        if ((rc = need_pos(&o, 0, "takes no arguments"))) goto out;
    } else if (!strcmp(o.sub, "ping")) {
        struct sw_dht_addr a;
        if ((rc = need_pos(&o, 1, "needs HOST:PORT"))) goto out;
        if (sw_dht_addr_parse(o.pos[0], &a)) {
            rc = sw_cli_usage_error("dht", "ping expects a numeric IP:PORT, got '%s'", o.pos[0]);
            goto out;
        }
    } else {
        if (o.n_boot == 0) { rc = sw_cli_usage_error("dht", "%s needs --bootstrap HOST:PORT", o.sub); goto out; }
        if (!strcmp(o.sub, "get-peers") || !strcmp(o.sub, "announce") || !strcmp(o.sub, "find-node")) {
            if ((rc = need_pos(&o, !strcmp(o.sub, "announce") ? 2 : 1, !strcmp(o.sub, "announce") ? "needs HASH PORT" : "needs HASH")))
                goto out;
            if (strlen(o.pos[0]) != 40 || sw_hex_decode(o.pos[0], c->target, 20)) {
                rc = sw_cli_usage_error("dht", "%s: HASH must be 40 hex digits, got '%s'", o.sub, o.pos[0]);
                goto out;
            }
            if (!strcmp(o.sub, "announce")) {
                uint32_t port;
                if ((rc = sw_cli_parse_u32("dht", "PORT", o.pos[1], 0, 65535, &port))) goto out;
                o.seq = port;
            }
        } else if (!strcmp(o.sub, "get")) {
            if ((rc = need_pos(&o, 1, "needs PUBKEY (64 hex digits) or TARGET (40)"))) goto out;
            size_t l = strlen(o.pos[0]);
            if (l == 40 && sw_hex_decode(o.pos[0], c->target, 20) == 0) {
                o.immutable = 1;
            } else if (l == 64 && sw_hex_decode(o.pos[0], c->key.pk, 32) == 0) {
                o.immutable = 0;
            } else {
                rc = sw_cli_usage_error("dht", "get: expected 64 hex digits (public key) or 40 (target), got '%s'", o.pos[0]);
                goto out;
            }
        } else if (!strcmp(o.sub, "put")) {
            if ((rc = need_pos(&o, 1, "needs VALUE"))) goto out;
            size_t vl = strlen(o.pos[0]);
            struct sw_buf b;
            sw_buf_init(&b);
            sw_benc_str(&b, o.pos[0], vl); /* the value travels as a bencoded string */
            if (!sw_buf_ok(&b) || b.len > SW_DHT_MAX_VALUE) {
                sw_buf_free(&b);
                rc = sw_cli_usage_error("dht", "put: VALUE is too long (bencoded at most %d bytes)", SW_DHT_MAX_VALUE);
                goto out;
            }
            memcpy(c->value, b.data, b.len);
            c->value_len = b.len;
            sw_buf_free(&b);
            if (o.immutable) {
                if (o.key_path || o.salt) { rc = sw_cli_usage_error("dht", "--immutable takes no --key or --salt"); goto out; }
            } else {
                if (!o.key_path) { rc = sw_cli_usage_error("dht", "put needs --key FILE (or --immutable)"); goto out; }
                int e = sw_dht_key_load(o.key_path, &c->key);
                if (e) {
                    rc = sw_cli_fail("dht", "cannot use key file %s: %s", o.key_path,
                                     e == SW_ECORRUPT ? "expected 64 hex digits of ed25519 seed" : sw_strerror(e));
                    goto out;
                }
            }
        }
    }
    rc = run_node(&o, c);
out:
    free(c);
    return rc;
}
