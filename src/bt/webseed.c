/* webseed.c — BEP 19 web seeds: a piece is cut into the byte ranges of the files it covers,
 * each fetched with an HTTP Range request (pad files are zeros and never fetched), and the
 * assembled, UNVERIFIED piece goes to the caller, who checks its SHA-1. Several pieces are
 * in flight per web seed; errors back the web seed off. Not for: hashing or disk writes. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bt/bt_net.h"

#define WS_MAX_FILES (1u << 20)
#define WS_MAX_RANGES 4096 /* files one piece may span (with pads) */

struct ws_piece;

/* One HTTP Range request: bytes of one file into one slice of the piece buffer. */
struct ws_xfer {
    struct ws_piece *pc;
    CURL *easy;
    uint64_t file_offset;
    uint64_t want;          /* bytes asked for */
    uint64_t got;           /* bytes written so far */
    uint8_t *dst;           /* where they go (inside pc->buf) */
    int whole_file;         /* the range is the whole file: 200 is acceptable */
    int err;                /* set by the write/header callbacks to abort */
    long status;            /* status line of the last response (redirects reset it) */
    uint32_t retry_after_s;
    struct ws_xfer *next;   /* in pc->xfers */
};

struct ws_piece {
    struct sw_bt_webseed *ws;
    uint32_t piece;
    uint32_t len;
    uint8_t *buf;
    struct ws_xfer *xfers;  /* transfers still running */
    unsigned pending;
    struct ws_piece *next;  /* in ws->pieces */
};

struct sw_bt_webseed {
    struct sw_bt_net *net;
    char *url;
    struct sw_bt_ws_layout layout;  /* own copy: files and strings below */
    struct sw_bt_ws_file *files;
    uint64_t *file_start;           /* byte offset of each file in the torrent */
    uint64_t total;
    struct sw_bt_webseed_config cfg;
    sw_bt_webseed_cb cb;
    void *ud;
    struct ws_piece *pieces;
    size_t n_in_flight;
    uint64_t backoff_until_ms;
    unsigned n_errors;              /* consecutive failures */
    int banned;
    uint64_t bytes;
    uv_timer_t kick;                /* delivers pad-only pieces from the loop */
    struct ws_piece *ready;         /* pad-only pieces waiting for `kick` */
};

/* ---------------------------------------------------------------- pure parts */

static int layout_offsets(const struct sw_bt_ws_layout *l, uint64_t *start, uint64_t *total_out)
{
    uint64_t off = 0;
    for (size_t i = 0; i < l->n_files; i++) {
        if (start) start[i] = off;
        if (l->files[i].length > UINT64_MAX / 2 - off) return SW_EINVAL;
        off += l->files[i].length;
    }
    *total_out = off;
    return 0;
}

static int layout_check(const struct sw_bt_ws_layout *l, uint64_t *total_out)
{
    if (!l || !l->name || !l->name[0] || l->piece_length == 0 || !l->files || l->n_files == 0 ||
        l->n_files > WS_MAX_FILES || (!l->multi_file && l->n_files != 1))
        return SW_EINVAL;
    uint64_t total;
    if (layout_offsets(l, NULL, &total) != 0) return SW_EINVAL;
    /* BEP 3: pieces = ceil(total / piece length). */
    uint64_t want = (total + l->piece_length - 1) / l->piece_length;
    if (want != l->n_pieces) return SW_EINVAL;
    *total_out = total;
    return 0;
}

int sw__bt_ws_piece_ranges(const struct sw_bt_ws_layout *l, uint32_t piece,
                           struct sw_bt_ws_range *out, size_t max, uint32_t *piece_len_out)
{
    uint64_t total;
    if (layout_check(l, &total) != 0) return SW_EINVAL;
    if (piece >= l->n_pieces) return SW_ERANGE;
    uint64_t begin = (uint64_t)piece * l->piece_length;
    uint64_t end = SW_MIN(begin + l->piece_length, total);
    if (piece_len_out) *piece_len_out = (uint32_t)(end - begin);
    size_t n = 0;
    uint64_t fstart = 0;
    for (size_t i = 0; i < l->n_files && fstart < end; i++) {
        uint64_t flen = l->files[i].length;
        uint64_t fend = fstart + flen;
        if (flen && fend > begin) {
            uint64_t a = SW_MAX(begin, fstart), b = SW_MIN(end, fend);
            if (n >= max) return SW_ERANGE;
            out[n].file = (uint32_t)i;
            out[n].file_offset = a - fstart;
            out[n].length = b - a;
            out[n].piece_offset = a - begin;
            n++;
        }
        fstart = fend;
    }
    return (int)n;
}

/* RFC 3986: escape everything but unreserved characters in one path segment. */
static void escape_segment(struct sw_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
            c == '.' || c == '_' || c == '~') {
            sw_buf_append_byte(b, c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            sw_buf_append(b, e, 3);
        }
    }
}

int sw__bt_ws_file_url(struct sw_buf *out, const char *url, const struct sw_bt_ws_layout *l,
                       uint32_t file)
{
    size_t ulen = strlen(url);
    int slash = ulen > 0 && url[ulen - 1] == '/';
    sw_buf_append(out, url, ulen);
    if (!l->multi_file) {
        /* BEP 19: "If the URL ends in a slash, the name of the file is appended." */
        if (slash) escape_segment(out, l->name, strlen(l->name));
    } else {
        /* BEP 19, multi-file: url/name/path/to/file. */
        if (!slash) sw_buf_append_byte(out, '/');
        escape_segment(out, l->name, strlen(l->name));
        const char *p = l->files[file].path ? l->files[file].path : "";
        while (*p) {
            const char *q = strchr(p, '/');
            size_t n = q ? (size_t)(q - p) : strlen(p);
            sw_buf_append_byte(out, '/');
            escape_segment(out, p, n);
            p += n;
            if (*p == '/') p++;
        }
    }
    return sw_buf_cstr(out) ? 0 : SW_ENOMEM;
}

/* ---------------------------------------------------------------- handle */

static void kick_closed(uv_handle_t *h)
{
    struct sw_bt_webseed *ws = h->data;
    free(ws);
}

struct sw_bt_webseed *sw__bt_webseed_new(struct sw_bt_net *net, const char *url,
                                         const struct sw_bt_ws_layout *layout,
                                         const struct sw_bt_webseed_config *cfg,
                                         sw_bt_webseed_cb cb, void *ud)
{
    uint64_t total;
    if (!net || !url || !url[0] || !cb || layout_check(layout, &total) != 0) return NULL;
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) return NULL;
    struct sw_bt_webseed *ws = calloc(1, sizeof *ws);
    if (!ws) return NULL;
    ws->net = net;
    ws->cb = cb;
    ws->ud = ud;
    ws->total = total;
    if (cfg) ws->cfg = *cfg;
    if (!ws->cfg.max_in_flight) ws->cfg.max_in_flight = 4;
    if (!ws->cfg.timeout_ms) ws->cfg.timeout_ms = 60000;
    if (!ws->cfg.connect_timeout_ms) ws->cfg.connect_timeout_ms = 10000;
    if (!ws->cfg.backoff_min_ms) ws->cfg.backoff_min_ms = 5000;
    if (!ws->cfg.backoff_max_ms) ws->cfg.backoff_max_ms = 300000;
    ws->url = strdup(url);
    ws->layout = *layout;
    ws->layout.name = strdup(layout->name);
    ws->files = calloc(layout->n_files, sizeof *ws->files);
    ws->file_start = calloc(layout->n_files, sizeof *ws->file_start);
    int ok = ws->url && ws->layout.name && ws->files && ws->file_start;
    for (size_t i = 0; ok && i < layout->n_files; i++) {
        ws->files[i] = layout->files[i];
        ws->files[i].path = strdup(layout->files[i].path ? layout->files[i].path : "");
        if (!ws->files[i].path) ok = 0;
    }
    if (!ok) {
        for (size_t i = 0; ws->files && i < layout->n_files; i++) free((char *)ws->files[i].path);
        free(ws->files);
        free(ws->file_start);
        free((char *)ws->layout.name);
        free(ws->url);
        free(ws);
        return NULL;
    }
    ws->layout.files = ws->files;
    layout_offsets(&ws->layout, ws->file_start, &total);
    uv_timer_init(sw__bt_net_loop(net), &ws->kick);
    ws->kick.data = ws;
    return ws;
}

static void piece_free(struct ws_piece *pc)
{
    while (pc->xfers) {
        struct ws_xfer *x = pc->xfers;
        pc->xfers = x->next;
        if (x->easy) sw__bt_net_cancel(pc->ws->net, x->easy);
        free(x);
    }
    free(pc->buf);
    free(pc);
}

static void piece_unlink(struct sw_bt_webseed *ws, struct ws_piece *pc)
{
    for (struct ws_piece **pp = &ws->pieces; *pp; pp = &(*pp)->next) {
        if (*pp == pc) {
            *pp = pc->next;
            ws->n_in_flight--;
            return;
        }
    }
    for (struct ws_piece **pp = &ws->ready; *pp; pp = &(*pp)->next) {
        if (*pp == pc) {
            *pp = pc->next;
            ws->n_in_flight--;
            return;
        }
    }
}

void sw__bt_webseed_free(struct sw_bt_webseed *ws)
{
    if (!ws) return;
    while (ws->pieces) {
        struct ws_piece *pc = ws->pieces;
        ws->pieces = pc->next;
        piece_free(pc);
    }
    while (ws->ready) {
        struct ws_piece *pc = ws->ready;
        ws->ready = pc->next;
        piece_free(pc);
    }
    for (size_t i = 0; i < ws->layout.n_files; i++) free((char *)ws->files[i].path);
    free(ws->files);
    free(ws->file_start);
    free((char *)ws->layout.name);
    free(ws->url);
    uv_timer_stop(&ws->kick);
    uv_close((uv_handle_t *)&ws->kick, kick_closed); /* frees ws */
}

const char *sw__bt_webseed_url(const struct sw_bt_webseed *ws) { return ws->url; }
size_t sw__bt_webseed_in_flight(const struct sw_bt_webseed *ws) { return ws->n_in_flight; }
uint64_t sw__bt_webseed_bytes(const struct sw_bt_webseed *ws) { return ws->bytes; }
int sw__bt_webseed_banned(const struct sw_bt_webseed *ws) { return ws->banned; }

uint64_t sw__bt_webseed_backoff_ms(const struct sw_bt_webseed *ws)
{
    uint64_t now = sw_time_ms();
    return ws->backoff_until_ms > now ? ws->backoff_until_ms - now : 0;
}

int sw__bt_webseed_can_fetch(const struct sw_bt_webseed *ws)
{
    return ws && !ws->banned && ws->n_in_flight < ws->cfg.max_in_flight && sw__bt_webseed_backoff_ms(ws) == 0;
}

void sw__bt_webseed_ban(struct sw_bt_webseed *ws)
{
    if (!ws || ws->banned) return;
    ws->banned = 1;
    sw_log(SW_LOG_WARN, "BT", "web seed %s sent a piece that failed its hash; not used again", ws->url);
}

static void backoff(struct sw_bt_webseed *ws, uint32_t retry_after_s)
{
    ws->n_errors++;
    uint64_t d = ws->cfg.backoff_min_ms;
    for (unsigned i = 1; i < ws->n_errors && d < ws->cfg.backoff_max_ms; i++) d *= 2;
    if (d > ws->cfg.backoff_max_ms) d = ws->cfg.backoff_max_ms;
    /* RFC 9110 Retry-After on 503: wait at least that long (capped by backoff_max). */
    uint64_t ra = (uint64_t)retry_after_s * 1000;
    if (ra > d) d = SW_MIN(ra, (uint64_t)ws->cfg.backoff_max_ms);
    ws->backoff_until_ms = sw_time_ms() + d;
}

/* Ends a piece: unlinks it, cancels what still runs, calls back (data transferred on 0). */
static void piece_finish(struct ws_piece *pc, int err, uint32_t retry_after_s)
{
    struct sw_bt_webseed *ws = pc->ws;
    piece_unlink(ws, pc);
    uint8_t *data = NULL;
    if (err == 0) {
        data = pc->buf;
        pc->buf = NULL;
        ws->n_errors = 0;
    } else {
        backoff(ws, retry_after_s);
        sw_log(SW_LOG_INFO, "BT", "web seed %s: piece %u failed (%s); backing off %llu ms", ws->url,
               pc->piece, sw_strerror(err), (unsigned long long)sw__bt_webseed_backoff_ms(ws));
    }
    uint32_t piece = pc->piece, len = pc->len;
    piece_free(pc);
    ws->cb(ws->ud, ws, piece, err, data, len); /* may free ws: touch nothing after */
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    struct ws_xfer *x = ud;
    size_t n = size * nmemb;
    if (n >= 5 && !strncmp(p, "HTTP/", 5)) {
        /* A new response (after a redirect or 100-continue): start over. */
        x->status = 0;
        const char *sp = memchr(p, ' ', n);
        if (sp && (size_t)(sp - p) + 4 <= n) x->status = strtol(sp + 1, NULL, 10);
        return n;
    }
    char line[256];
    size_t k = SW_MIN(n, sizeof line - 1);
    memcpy(line, p, k);
    line[k] = '\0';
    if (!strncasecmp(line, "Content-Range:", 14) && x->status == 206) {
        /* RFC 9110 14.4: "bytes first-last/complete" must start where we asked. */
        unsigned long long first = 0, last = 0;
        const char *v = line + 14;
        while (*v == ' ' || *v == '\t') v++;
        if (sscanf(v, "bytes %llu-%llu", &first, &last) != 2 || first != x->file_offset ||
            last + 1 - first != x->want)
            x->err = SW_ECORRUPT;
    } else if (!strncasecmp(line, "Retry-After:", 12)) {
        long s = strtol(line + 12, NULL, 10);
        if (s > 0) x->retry_after_s = (uint32_t)SW_MIN(s, 86400L);
    }
    return n;
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud)
{
    struct ws_xfer *x = ud;
    size_t n = size * nmemb;
    if (x->err) return 0;
    if (x->status == 200 && !x->whole_file) {
        /* The server ignored Range: it would send the whole file. */
        x->err = SW_EUNSUPPORTED;
        return 0;
    }
    if (x->status != 200 && x->status != 206) return n; /* an error page: drop it */
    if (n > x->want - x->got) {
        x->err = SW_ECORRUPT; /* longer than asked */
        return 0;
    }
    memcpy(x->dst + x->got, p, n);
    x->got += n;
    return n;
}

static void on_xfer_done(void *ud, CURL *easy, CURLcode rc)
{
    struct ws_xfer *x = ud;
    struct ws_piece *pc = x->pc;
    struct sw_bt_webseed *ws = pc->ws;
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    int err = x->err;
    if (!err && rc != CURLE_OK)
        err = rc == CURLE_OPERATION_TIMEDOUT ? SW_ETIMEDOUT : SW_EIO;
    if (!err) {
        if (status == 404 || status == 410) err = SW_ENOTFOUND;
        else if (status == 503) err = SW_EBUSY;
        else if (status == 200 && !x->whole_file) err = SW_EUNSUPPORTED;
        else if (status != 206 && status != 200) err = SW_EIO;
        else if (x->got != x->want) err = SW_ECORRUPT; /* short read */
    }
    if (err)
        sw_log(SW_LOG_DEBUG, "BT", "web seed %s: piece %u range at %llu+%llu: HTTP %ld, curl %d, got %llu: %s",
               ws->url, pc->piece, (unsigned long long)x->file_offset, (unsigned long long)x->want, status,
               (int)rc, (unsigned long long)x->got, sw_strerror(err));
    ws->bytes += x->got;
    uint32_t retry_after = x->retry_after_s;
    /* This transfer is over: the net context cleans up `easy` after we return. */
    for (struct ws_xfer **pp = &pc->xfers; *pp; pp = &(*pp)->next) {
        if (*pp == x) {
            *pp = x->next;
            break;
        }
    }
    free(x);
    pc->pending--;
    if (err) piece_finish(pc, err, retry_after); /* cancels the piece's other ranges */
    else if (pc->pending == 0) piece_finish(pc, 0, 0);
}

static void on_kick(uv_timer_t *h)
{
    struct sw_bt_webseed *ws = h->data;
    /* Deliver one at a time: a callback may free ws. */
    if (ws->ready) {
        struct ws_piece *pc = ws->ready;
        if (pc->next) uv_timer_start(&ws->kick, on_kick, 0, 0);
        piece_finish(pc, 0, 0);
    }
}

int sw__bt_webseed_fetch(struct sw_bt_webseed *ws, uint32_t piece)
{
    if (!ws) return SW_EINVAL;
    if (piece >= ws->layout.n_pieces) return SW_ERANGE;
    for (struct ws_piece *p = ws->pieces; p; p = p->next)
        if (p->piece == piece) return SW_EEXIST;
    for (struct ws_piece *p = ws->ready; p; p = p->next)
        if (p->piece == piece) return SW_EEXIST;
    if (!sw__bt_webseed_can_fetch(ws)) return SW_EBUSY;

    struct sw_bt_ws_range ranges[64];
    struct sw_bt_ws_range *rg = ranges;
    uint32_t plen = 0;
    int n = sw__bt_ws_piece_ranges(&ws->layout, piece, ranges, SW_ARRAY_LEN(ranges), &plen);
    if (n == SW_ERANGE) {
        /* A piece over many tiny files: take the slow path with a heap array. */
        rg = malloc(WS_MAX_RANGES * sizeof *rg);
        if (!rg) return SW_ENOMEM;
        n = sw__bt_ws_piece_ranges(&ws->layout, piece, rg, WS_MAX_RANGES, &plen);
    }
    if (n < 0) {
        if (rg != ranges) free(rg);
        return n;
    }
    struct ws_piece *pc = calloc(1, sizeof *pc);
    uint8_t *buf = calloc(1, plen ? plen : 1); /* zeros: pad ranges stay zero */
    if (!pc || !buf) {
        free(pc);
        free(buf);
        if (rg != ranges) free(rg);
        return SW_ENOMEM;
    }
    pc->ws = ws;
    pc->piece = piece;
    pc->len = plen;
    pc->buf = buf;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        const struct sw_bt_ws_range *r = &rg[i];
        const struct sw_bt_ws_file *f = &ws->files[r->file];
        if (f->pad) continue; /* BEP 47: pad bytes are zeros, never requested */
        struct ws_xfer *x = calloc(1, sizeof *x);
        struct sw_buf u = {0};
        CURL *e = NULL;
        if (!x || sw__bt_ws_file_url(&u, ws->url, &ws->layout, r->file) != 0 ||
            !(e = sw__bt_net_easy(ws->net))) {
            free(x);
            sw_buf_free(&u);
            rc = SW_ENOMEM;
            break;
        }
        x->pc = pc;
        x->file_offset = r->file_offset;
        x->want = r->length;
        x->dst = buf + r->piece_offset;
        x->whole_file = r->file_offset == 0 && r->length == f->length;
        char range[64];
        snprintf(range, sizeof range, "%llu-%llu", (unsigned long long)r->file_offset,
                 (unsigned long long)(r->file_offset + r->length - 1));
        curl_easy_setopt(e, CURLOPT_URL, (const char *)u.data);
        curl_easy_setopt(e, CURLOPT_RANGE, range);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)ws->cfg.timeout_ms);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)ws->cfg.connect_timeout_ms);
        sw_buf_free(&u);
        x->easy = e;
        x->next = pc->xfers;
        pc->xfers = x;
        pc->pending++;
        rc = sw__bt_net_start(ws->net, e, on_xfer_done, x);
        if (rc != 0) {
            pc->xfers = x->next;
            pc->pending--;
            free(x);
        }
    }
    if (rg != ranges) free(rg);
    if (rc != 0) {
        piece_free(pc);
        return rc;
    }
    ws->n_in_flight++;
    if (pc->pending == 0) {
        pc->next = ws->ready;
        ws->ready = pc;
        uv_timer_start(&ws->kick, on_kick, 0, 0);
    } else {
        pc->next = ws->pieces;
        ws->pieces = pc;
    }
    return 0;
}

void sw__bt_webseed_cancel(struct sw_bt_webseed *ws, uint32_t piece)
{
    if (!ws) return;
    for (struct ws_piece *p = ws->pieces; p; p = p->next) {
        if (p->piece == piece) {
            piece_unlink(ws, p);
            piece_free(p);
            return;
        }
    }
    for (struct ws_piece *p = ws->ready; p; p = p->next) {
        if (p->piece == piece) {
            piece_unlink(ws, p);
            piece_free(p);
            return;
        }
    }
}
