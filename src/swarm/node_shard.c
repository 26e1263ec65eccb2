/* node_shard.c — the node's shard work: verify/load/measure jobs on libuv workers, taking a
 * shard (set_shard), the shards-folder watch, and the planner that picks or moves a shard.
 * Not for: fetching itself (the BitTorrent session). */
#include "swarm/node_int.h"

/* ------------------------------------------------------------------ shard work */

/* Hashes the pieces of one file against the torrent (worker thread); map: the verdict per
 * piece, handed to the BitTorrent storage so that it need not hash again on the loop. */
static int verify_pieces(const struct sw_bt_metainfo *mi, uint32_t file, const char *path, uint8_t *map,
                         uint32_t *bad_out, uint32_t *n_out, char *msg, size_t msg_len)
{
    uint32_t good = 0, total = 0;
    int rc = sw_shard_file_check_map(mi, file, path, map, &good, &total, msg, msg_len);
    *bad_out = total - good;
    *n_out = total;
    return rc == SW_ERANGE ? SW_ECORRUPT : rc;
}

static void job_free(struct job *j)
{
    free(j->good_map);
    free(j);
}

/* The storage takes the worker's verdict (no hashing on the loop), else hashes itself. */
static void storage_check(struct sw_node *n, const struct job *j)
{
    if (j->good_map) sw_bt_torrent_apply_check(n->t, (uint32_t)j->file, j->good_map);
    else sw_bt_torrent_recheck_file(n->t, (uint32_t)j->file);
}

static void retired_unref(void *ud)
{
    struct retired *r = ud;
    if (--r->refs > 0) return;
    sw_stage_free(r->st);
    free(r);
}

/* Lets go of the compute stage: from now on sw_node_stage() is NULL (no new pipeline job
 * picks it up); the pipeline fails the sessions on it (their entries fail over) and the
 * stage is freed once no pipeline job and no measurement runs on it any more. */
void sw__node_retire_stage(struct sw_node *n, const char *reason)
{
    if (!n->stage) return;
    struct sw_stage *st = n->stage;
    n->stage = NULL;
    sw__node_watch_stop(n); /* nothing is served from the file any more */
    n->tps = 0;
    struct retired *r = calloc(1, sizeof *r);
    if (!r) { /* cannot track its users: leaking it is safe, freeing it is not */
        sw_log(SW_LOG_ERROR, "SHARD", "out of memory while releasing the compute stage (kept allocated)");
        return;
    }
    r->st = st;
    r->refs = 1;
    if (n->job && n->job->measure_only && n->job->stage == st) {
        n->job->retired = r; /* the worker still measures it */
        r->refs++;
    }
    if (n->release_fn) n->release_fn(n->release_ud, reason, retired_unref, r);
    else retired_unref(r);
}

/* The shard is fetched only on a LOAD_SHARD command (--no-auto-fetch, none came yet). */
static int fetch_held(const struct sw_node *n)
{
    return n->cfg.no_auto_fetch && !n->forced_fetch;
}

static double measure_tps(struct sw_stage *st)
{
    const struct sw_stage_info *si = sw_stage_info(st);
    uint32_t n_tok = 8;
    size_t in_floats = si->takes_tokens ? 0 : (size_t)n_tok * si->n_embd;
    void *in = si->takes_tokens ? calloc(n_tok, sizeof(int32_t)) : calloc(in_floats ? in_floats : 1, sizeof(float));
    float *out = malloc(sw_stage_out_floats(st, n_tok, 0) * sizeof(float) + 16);
    double tps = 0;
    uint64_t seq = 0x5357000000000001ull;
    if (in && out && !sw_stage_seq_new(st, seq)) {
        if (si->takes_tokens)
            for (uint32_t i = 0; i < n_tok; i++) ((int32_t *)in)[i] = (int32_t)(i % (si->n_vocab ? si->n_vocab : 1));
        /* prefill n_tok-1 tokens, then time single-token decode steps */
        if (!sw_stage_forward(st, seq, 0, n_tok - 4, in, out, 0)) {
            uint64_t t0 = sw_time_us();
            int ok = 1;
            for (uint32_t i = n_tok - 4; i < n_tok && ok; i++) {
                const void *one = si->takes_tokens ? (const void *)((int32_t *)in + i)
                                                   : (const void *)((float *)in + (size_t)i * si->n_embd);
                ok = !sw_stage_forward(st, seq, i, 1, one, out, 0);
            }
            uint64_t dt = sw_time_us() - t0;
            if (ok && dt) tps = 4.0 * 1e6 / (double)dt;
        }
        sw_stage_seq_free(st, seq);
    }
    free(in);
    free(out);
    return tps;
}

static void job_work(uv_work_t *req)
{
    struct job *j = req->data;
    if (j->measure_only) {
        j->tps = measure_tps(j->stage);
        return;
    }
    const struct sw_bt_metainfo *mi = j->node->mi;
    j->has_fid = !sw_file_id(j->path, &j->fid);
    if (j->verify) {
        j->rc = verify_pieces(mi, (uint32_t)j->file, j->path, j->good_map, &j->bad_pieces, &j->n_pieces, j->msg,
                              sizeof j->msg);
        if (j->rc) return;
    }
    struct sw_stage_opts so = { 0 };
    so.layer_first = -1;
    so.layer_last = -1;
    so.n_threads = j->threads;
    const struct sw_node_config *nc = &j->node->cfg;
    so.machine_cores = nc->no_core_lease ? 0 : nc->machine_cores ? nc->machine_cores : (uint32_t)sw_sys_ncpu();
    so.cores_dir = nc->cores_dir;
    so.gpu = nc->gpu;
    so.gpu_layers = nc->gpu_layers;
    char err[400] = "";
    j->rc = sw_stage_open(j->path, &so, &j->stage, err, sizeof err);
    if (j->rc) snprintf(j->msg, sizeof j->msg, "%s", err[0] ? err : sw_strerror(j->rc));
}

static void job_done(uv_work_t *req, int status);

/* Measures tokens/s on a worker after the shard is announced as loaded (it never delays
 * readiness). */
void sw__node_start_measure(struct sw_node *n)
{
    if (!n->stage || n->job) return;
    struct job *j = calloc(1, sizeof *j);
    if (!j) return;
    j->node = n;
    j->shard = n->shard;
    j->measure_only = 1;
    j->stage = n->stage;
    j->req.data = j;
    n->job = j;
    if (uv_queue_work(n->loop, &j->req, job_work, job_done)) {
        n->job = NULL;
        free(j);
    }
}


static void job_done(uv_work_t *req, int status)
{
    struct job *j = req->data;
    struct sw_node *n = j->node;
    n->job = NULL;
    if (j->measure_only) {
        if (j->retired) retired_unref(j->retired);
        else if (!status && j->stage == n->stage && !n->stopping) {
            n->tps = j->tps;
            sw_log(SW_LOG_INFO, "SHARD", "shard %d: %.1f tokens/s measured (decode, %u threads)", (int)j->shard, j->tps,
                   n->cfg.threads ? n->cfg.threads : (unsigned)sw_sys_ncpu());
            sw__node_publish(n, 1);
        }
        int again = n->job_stale && !n->stopping && !n->drained;
        n->job_stale = 0;
        job_free(j);
        if (again) sw__node_start_load(n, 1);
        return;
    }
    if (n->stopping || n->job_stale || status || j->shard != n->shard || n->drained) {
        sw_stage_free(j->stage);
        int again = n->job_stale && !n->stopping && !n->drained;
        n->job_stale = 0;
        job_free(j);
        if (again) sw__node_start_load(n, 1);
        return;
    }
    char size[32];
    sw_fmt_bytes(n->shard_bytes[j->shard], size, sizeof size);
    int gone = j->verify && (j->rc == SW_ENOTFOUND || j->rc == SW_ERANGE) && n->t &&
               (sw_bt_torrent_file_complete(n->t, (uint32_t)j->file) || n->served_id.size);
    if (gone) {
        /* The file we served vanished or changed size: what is left is hashed again by the
         * storage (kept as .part), and only what does not verify is fetched. */
        sw_log(SW_LOG_WARN, "SHARD", "shard %d: %s; %s", (int)j->shard, j->msg,
               fetch_held(n) ? "waiting for a LOAD_SHARD command or a good copy"
                                                        : "fetching what is missing from the swarm");
        memset(&n->served_id, 0, sizeof n->served_id);
        n->phase = fetch_held(n) ? SW_PHASE_WAITING : SW_PHASE_FETCHING;
        storage_check(n, j);
        if (n->phase == SW_PHASE_FETCHING) sw_bt_torrent_want_file(n->t, (uint32_t)j->file, 1);
        sw__node_publish(n, 1);
        job_free(j);
        return;
    }
    if (j->rc == SW_ECORRUPT && j->verify) {
        sw_log(SW_LOG_WARN, "SHARD", "shard %d at %s is corrupt (%s); not loading it, re-fetching %s from the swarm",
               (int)j->shard, j->path, j->msg, j->bad_pieces < j->n_pieces ? "only the bad pieces" : "it");
        n->phase = fetch_held(n) ? SW_PHASE_WAITING : SW_PHASE_FETCHING;
        if (n->t) storage_check(n, j); /* keep the good pieces */
        if (n->phase == SW_PHASE_FETCHING && n->t) sw_bt_torrent_want_file(n->t, (uint32_t)j->file, 1);
        sw__node_publish(n, 1);
        job_free(j);
        return;
    }
    if (j->rc) {
        sw_log(SW_LOG_ERROR, "SHARD", "shard %d at %s could not be loaded: %s", (int)j->shard, j->path, j->msg);
        n->phase = SW_PHASE_FAILED;
        sw__node_publish(n, 1);
        job_free(j);
        return;
    }
    sw__node_retire_stage(n, "the node reloaded its shard");
    n->stage = j->stage;
    n->tps = 0;
    n->phase = SW_PHASE_LOADED;
    const struct sw_stage_info *si = sw_stage_info(n->stage);
    sw_log(SW_LOG_INFO, "SHARD", "shard %d loaded (layers %u\xe2\x80\x93%u, %s, %s)", (int)j->shard, si->layer_first,
           si->layer_last, size, j->path);
    /* A file we served changed but re-verified good in place (same inode: `touch`, chmod,
     * bytes written back as they were): the storage takes the verdict, which binds its
     * resume data to the file as it is now, so the next start does not hash it again.
     * Only while the file is still what was hashed (else the watch sees the change). */
    int refresh = j->verify && j->good_map && j->has_fid && n->t && n->served_id.ino &&
                  n->served_id.dev == j->fid.dev && n->served_id.ino == j->fid.ino &&
                  sw_bt_torrent_file_complete(n->t, (uint32_t)j->file);
    struct sw_file_id now;
    if (refresh && !sw_file_id(j->path, &now) && !memcmp(&now, &j->fid, sizeof now) &&
        sw_bt_torrent_apply_check(n->t, (uint32_t)j->file, j->good_map) >= 0)
        sw_log(SW_LOG_INFO, "SHARD", "shard %d at %s: every piece still verifies; resume data bound to the file as "
               "it is now (the next start does not hash it)", (int)j->shard, j->path);
    if (j->has_fid) sw__node_watch_begin(n, &j->fid);
    sw__node_publish(n, 1);
    sw__node_changed(n);
    /* The BT engine rehashes a file that appeared by hand before it seeds it: after we
     * announced, so it never delays readiness (blocking; see docs/swarm.md). */
    if (j->verify && n->t && !sw_bt_torrent_file_complete(n->t, (uint32_t)j->file)) {
        uint64_t t0 = sw_time_ms();
        storage_check(n, j);
        uint64_t blocked = sw_time_ms() - t0;
        if (blocked > 500) {
            /* We could not read while hashing: our silence, not theirs. Refresh the peers we
             * are connected to, and tell them at once that we are alive. */
            for (struct peer *p = n->peers; p; p = p->next)
                if (p->has_id) sw_view_touch(n->view, p->id, sw_time_ms());
            sw__node_publish(n, 0);
            sw_log(SW_LOG_INFO, "SHARD", "the BitTorrent engine re-hashed shard %d in %llu ms before seeding it",
                   (int)j->shard, (unsigned long long)blocked);
        }
    }
    job_free(j);
    sw__node_start_measure(n);
}

void sw__node_start_load(struct sw_node *n, int verify)
{
    if (n->shard < 0 || n->drained) return; /* drained: only a LOAD_SHARD loads again */
    if (n->job) {
        n->job_stale = 1;
        return;
    }
    struct job *j = calloc(1, sizeof *j);
    if (!j) return;
    j->node = n;
    j->shard = n->shard;
    j->file = n->shard_file[n->shard];
    j->verify = verify;
    j->threads = n->cfg.threads;
    const struct sw_bt_file *bf = &n->mi->files[j->file];
    if (verify && bf->length && !(j->good_map = calloc(bf->last_piece - bf->first_piece + 1, 1))) {
        free(j);
        return;
    }
    snprintf(j->path, sizeof j->path, "%s", sw_bt_torrent_file_path(n->t, (uint32_t)j->file));
    j->req.data = j;
    n->job = j;
    n->phase = verify ? SW_PHASE_VERIFYING : SW_PHASE_LOADING;
    if (uv_queue_work(n->loop, &j->req, job_work, job_done)) {
        n->job = NULL;
        job_free(j);
        n->phase = SW_PHASE_FAILED;
    }
    sw__node_publish(n, 1);
}

/* Synchronous load before joining the network (startup). */
static void load_now(struct sw_node *n)
{
    struct job j = { 0 };
    j.node = n;
    j.shard = n->shard;
    j.file = n->shard_file[n->shard];
    j.threads = n->cfg.threads;
    snprintf(j.path, sizeof j.path, "%s", sw_bt_torrent_file_path(n->t, (uint32_t)j.file));
    j.req.data = &j;
    job_work(&j.req);
    char size[32];
    sw_fmt_bytes(n->shard_bytes[j.shard], size, sizeof size);
    if (j.rc) {
        sw_log(SW_LOG_ERROR, "SHARD", "shard %d at %s could not be loaded: %s", (int)j.shard, j.path, j.msg);
        n->phase = SW_PHASE_FAILED;
        return;
    }
    n->stage = j.stage;
    n->tps = 0;
    n->phase = SW_PHASE_LOADED;
    n->measure_pending = 1; /* on a worker once the loop runs */
    const struct sw_stage_info *si = sw_stage_info(n->stage);
    sw_log(SW_LOG_INFO, "SHARD", "shard %d loaded %s (layers %u\xe2\x80\x93%u, %s, %s)", (int)j.shard,
           n->is_magnet ? "as soon as the metadata arrived" : "before joining", si->layer_first, si->layer_last, size,
           j.path);
    if (j.has_fid) sw__node_watch_begin(n, &j.fid);
}

static int file_on_disk(struct sw_node *n, int32_t shard, uint64_t *size_out, uint64_t *mtime_out)
{
    struct sw_file_id fid;
    if (sw_file_id(sw_bt_torrent_file_path(n->t, (uint32_t)n->shard_file[shard]), &fid)) return 0;
    *size_out = fid.size;
    *mtime_out = fid.mtime_ns;
    return 1;
}

/* Takes shard `shard` (-1: none): unloads the old one, then loads, fetches or waits. */
void sw__node_set_shard(struct sw_node *n, int32_t shard, const char *why)
{
    if (shard == n->shard && n->phase != SW_PHASE_NONE) return;
    int32_t old = n->shard;
    if (n->job && !n->job->measure_only) n->job_stale = 1;
    if (n->stage) {
        char reason[160];
        if (shard >= 0)
            snprintf(reason, sizeof reason, "the node switched from shard %d to shard %d (%s)", (int)old, (int)shard,
                     why ? why : "?");
        else
            snprintf(reason, sizeof reason, "the node dropped shard %d (%s)", (int)old, why ? why : "?");
        sw__node_retire_stage(n, reason);
    }
    if (old >= 0 && old != shard && n->t && !n->cfg.seed_all)
        sw_bt_torrent_want_file(n->t, (uint32_t)n->shard_file[old], 0); /* held pieces stay seeded */
    n->shard = shard;
    n->watch_tried = 0;
    if (shard < 0) {
        n->phase = SW_PHASE_NONE;
        sw__node_publish(n, 1);
        return;
    }
    char size[32];
    sw_fmt_bytes(n->shard_bytes[shard], size, sizeof size);
    if (old >= 0 && old != shard)
        sw_log(SW_LOG_INFO, "SHARD", "switching from shard %d to shard %d (%s)", (int)old, (int)shard, why);
    else if (why && strcmp(why, "startup"))
        sw_log(SW_LOG_INFO, "SHARD", "taking shard %d (%s, %s)", (int)shard, why, size);
    uint32_t file = (uint32_t)n->shard_file[shard];
    const char *path = sw_bt_torrent_file_path(n->t, file);
    if (sw_bt_torrent_file_complete(n->t, file)) {
        if (!n->view) load_now(n);
        else sw__node_start_load(n, 0);
        sw__node_publish(n, 1);
        return;
    }
    uint64_t sz = 0, mt = 0;
    int present = file_on_disk(n, shard, &sz, &mt);
    if (n->pre_final == shard) {
        struct sw_bt_progress pr = { 0 };
        sw_bt_torrent_progress(n->t, (int32_t)file, &pr);
        const struct sw_bt_file *bf = &n->mi->files[file];
        uint32_t pl = n->mi->piece_length, n_p = bf->length ? bf->last_piece - bf->first_piece + 1 : 0;
        uint64_t missing = pr.bytes_total > pr.bytes_done ? pr.bytes_total - pr.bytes_done : 0;
        uint32_t bad = pl ? (uint32_t)SW_MIN((missing + pl - 1) / pl, (uint64_t)n_p) : n_p;
        sw_log(SW_LOG_WARN, "SHARD", "shard %d at %s is corrupt (%u of %u pieces fail their hash); "
               "it will not be loaded; %s", (int)shard, path, bad, n_p,
               fetch_held(n) ? "waiting for a LOAD_SHARD command or a good copy"
                                                        : "re-fetching the bad pieces from the swarm");
        n->pre_final = -1;
    } else if (present && sz == n->shard_bytes[shard])
        sw_log(SW_LOG_WARN, "SHARD", "shard %d at %s is corrupt (pieces fail their hash); it will not be loaded; %s",
               (int)shard, path, fetch_held(n) ? "waiting for a LOAD_SHARD command or a good copy"
                                                                         : "re-fetching from the swarm");
    else if (present)
        sw_log(SW_LOG_INFO, "SHARD", "shard %d at %s is partial (%llu of %llu bytes); %s", (int)shard, path,
               (unsigned long long)sz, (unsigned long long)n->shard_bytes[shard],
               fetch_held(n) ? "waiting for a LOAD_SHARD command" : "fetching the rest from the swarm");
    else if (fetch_held(n))
        sw_log(SW_LOG_INFO, "SHARD", "shard %d not found at %s; waiting for a LOAD_SHARD command (--no-auto-fetch) or a copy in the folder",
               (int)shard, path);
    else
        sw_log(SW_LOG_INFO, "SHARD", "shard %d not found at %s; fetching from the swarm (%s)", (int)shard, path, size);
    if (present) {
        n->watch_size = sz;
        n->watch_mtime = mt;
        n->watch_tried = 1; /* judged just now; look again when it changes */
    }
    if (fetch_held(n)) {
        n->phase = SW_PHASE_WAITING;
    } else {
        n->phase = SW_PHASE_FETCHING;
        sw_bt_torrent_want_file(n->t, file, 1);
    }
    sw__node_publish(n, 1);
}

/* The folder watch: a shard file that appears (or changes) is verified and loaded. */
void sw__node_check_folder(struct sw_node *n)
{
    if (n->shard < 0 || !n->t || n->job || n->drained || n->phase == SW_PHASE_LOADED || n->phase == SW_PHASE_LOADING ||
        n->phase == SW_PHASE_VERIFYING)
        return;
    uint32_t file = (uint32_t)n->shard_file[n->shard];
    if (sw_bt_torrent_file_complete(n->t, file)) { /* the download finished */
        sw__node_start_load(n, 0);
        return;
    }
    uint64_t sz, mt;
    if (!file_on_disk(n, n->shard, &sz, &mt) || sz != n->shard_bytes[n->shard]) return;
    if (n->watch_tried && sz == n->watch_size && mt == n->watch_mtime) return;
    n->watch_size = sz;
    n->watch_mtime = mt;
    n->watch_tried = 1;
    sw_log(SW_LOG_INFO, "SHARD", "shard %d appeared at %s; verifying", (int)n->shard,
           sw_bt_torrent_file_path(n->t, file));
    sw__node_start_load(n, 1);
}

void sw__node_on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    struct sw_node *n = h->data;
    (void)filename;
    (void)events;
    if (status || n->stopping) return;
    sw__node_watch_check(n); /* inotify: a write() to the served file shows here at once */
    sw__node_check_folder(n);
}

/* ------------------------------------------------------------------ disk errors */

static const char *disk_why(int code)
{
    return code == SW_ENOSPC ? "disk full" : code == SW_EPERM ? "not writable (read-only or no permission)"
         : code == SW_ENOTFOUND ? "the folder vanished" : "a write error";
}

/* Free bytes where the file goes, and whether we may write there now. */
static int disk_writable(struct sw_node *n, uint64_t *free_out)
{
    *free_out = 0;
    if (sw_mkdir_p(n->diskerr.dir)) return 0; /* a vanished folder comes back if it can */
    sw_sys_disk_free(n->diskerr.dir, free_out);
    return access(n->diskerr.dir, W_OK) == 0;
}

/* The BitTorrent engine stopped fetching our shard after a disk error: say it (path, bytes
 * needed, bytes free), phase failed, and look again every second (sw__node_disk_retry). */
void sw__node_disk_error(struct sw_node *n, const struct sw_bt_event *ev)
{
    uint32_t file = (uint32_t)ev->file;
    const char *path = sw_bt_torrent_file_path(n->t, file);
    if (!path) return;
    int again = n->diskerr.on;
    n->diskerr.on = 1;
    n->diskerr.code = ev->err;
    snprintf(n->diskerr.path, sizeof n->diskerr.path, "%s.part", path);
    snprintf(n->diskerr.dir, sizeof n->diskerr.dir, "%s", path);
    char *slash = strrchr(n->diskerr.dir, '/');
    if (slash && slash != n->diskerr.dir) *slash = 0;
    /* the .part file is preallocated whole: what it needs is its size less what it holds */
    uint64_t len = n->mi->files[file].length, have = 0;
    struct stat s;
    if (!stat(n->diskerr.path, &s)) have = (uint64_t)s.st_blocks * 512;
    n->diskerr.need = len > have ? len - have : 0;
    disk_writable(n, &n->diskerr.free);
    n->diskerr.retries = again ? n->diskerr.retries + 1 : 0;
    n->diskerr.next_ms = sw_time_ms() + SW_MIN(1000u << SW_MIN(n->diskerr.retries, 5u), 30000u);
    char need[32], fr[32];
    sw_fmt_bytes(n->diskerr.need, need, sizeof need);
    sw_fmt_bytes(n->diskerr.free, fr, sizeof fr);
    sw_log(SW_LOG_ERROR, "SHARD", "shard %d cannot be written: %s: %s (needs %s, %s free in %s); the fetch is "
           "stopped and retried by itself when %s", (int)n->shard, n->diskerr.path, disk_why(ev->err), need, fr,
           n->diskerr.dir, ev->err == SW_ENOSPC ? "enough space is free" : "the folder is writable again");
    n->phase = SW_PHASE_FAILED;
    sw__node_publish(n, 1);
    sw__node_changed(n);
}

void sw__node_disk_retry(struct sw_node *n, uint64_t now)
{
    n->diskerr.next_ms = now + 1000;
    if (n->shard < 0 || !n->t || n->drained) {
        n->diskerr.on = 0;
        return;
    }
    uint64_t fr = 0;
    int ok = disk_writable(n, &fr);
    if (fr != n->diskerr.free) {
        n->diskerr.free = fr;
        sw__node_rebuild_json(n);
    }
    if (!ok || fr < n->diskerr.need) return;
    char f[32];
    sw_fmt_bytes(fr, f, sizeof f);
    sw_log(SW_LOG_INFO, "SHARD", "shard %d: %s is writable with %s free; fetching again", (int)n->shard,
           n->diskerr.dir, f);
    n->diskerr.on = 0;
    uint32_t file = (uint32_t)n->shard_file[n->shard];
    n->phase = fetch_held(n) ? SW_PHASE_WAITING : SW_PHASE_FETCHING;
    const char *path = sw_bt_torrent_file_path(n->t, file);
    if (path && !sw_path_exists(path) && !sw_path_exists(n->diskerr.path))
        sw_bt_torrent_recheck_file(n->t, file); /* the folder went with what was written: forget it (no hashing) */
    sw_bt_torrent_retry_file(n->t, file);
    if (n->phase == SW_PHASE_FETCHING) sw_bt_torrent_want_file(n->t, file, 1);
    sw__node_publish(n, 1);
    sw__node_changed(n);
}

/* ------------------------------------------------------------------ hashing progress */

/* The storage hashes a file found on disk (at start: before the node joins, the API already
 * answers; or a recheck): a line at most once a second, the status JSON follows. */
void sw__node_on_hash(void *ud, uint32_t file, const char *path, uint64_t done, uint64_t total, uint32_t good,
                      uint32_t n_pieces)
{
    struct sw_node *n = ud;
    if (n->cfg.hash_delay_ms && done < total) sw_sleep_ms(n->cfg.hash_delay_ms); /* testing only */
    uint64_t now = sw_time_ms();
    if (!n->hashing || n->hash_file != file || n->hash_path != path) {
        n->hashing = 1;
        n->hash_file = file;
        n->hash_path = path;
        n->hash_t0_ms = n->hash_last_ms = now;
    }
    n->hash_done = done;
    n->hash_total = total;
    double secs = (double)(now - n->hash_t0_ms) / 1000.0;
    double rate = secs > 0 ? (double)done / secs : 0;
    char a[32], b[32], r[32], e[32];
    sw_fmt_bytes(done, a, sizeof a);
    sw_fmt_bytes(total, b, sizeof b);
    sw_fmt_bytes((uint64_t)rate, r, sizeof r);
    if (done >= total) {
        n->hashing = 0;
        sw_log(SW_LOG_INFO, "SHARD", "verified %s in %.2f s (%s, %s/s): %u of %u pieces good", path, secs, b,
               rate > 0 ? r : "-", good, n_pieces);
        sw__node_rebuild_json(n);
        return;
    }
    if (now - n->hash_last_ms < 1000) {
        if (now - n->hash_json_ms >= 100) { /* /swarm/status: fresher than the log lines */
            n->hash_json_ms = now;
            sw__node_rebuild_json(n);
        }
        return;
    }
    n->hash_last_ms = n->hash_json_ms = now;
    if (rate > 0) sw_fmt_duration_ms((uint64_t)((double)(total - done) / rate * 1000.0), e, sizeof e);
    else snprintf(e, sizeof e, "unknown");
    sw_log(SW_LOG_INFO, "SHARD", "verifying %s: %u%% (%s of %s) at %s/s, ETA %s", path,
           (unsigned)(done * 100 / (total ? total : 1)), a, b, r, e);
    sw__node_rebuild_json(n);
}

/* ------------------------------------------------------------------ served-file watch */

static const char *served_path(struct sw_node *n)
{
    return n->shard >= 0 && n->t ? sw_bt_torrent_file_path(n->t, (uint32_t)n->shard_file[n->shard]) : NULL;
}

/* The stage now maps the shard file: remember what the file was when it was hashed and
 * opened (a change meanwhile is noticed at the next check), and hold it open so that each
 * compute step can fstat it (sw_node_stage_check). */
void sw__node_watch_begin(struct sw_node *n, const struct sw_file_id *fid)
{
    sw__node_watch_stop(n);
    n->served_id = *fid;
    n->watching = 1;
    n->last_watch = 0; /* look at once */
    const char *path = served_path(n);
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    struct stat s;
    if (fd >= 0 && !fstat(fd, &s)) {
        n->served_fd1 = fd + 1;
        /* another file than the one hashed: the first check says so */
        n->served_nlink = (uint64_t)s.st_dev == fid->dev && (uint64_t)s.st_ino == fid->ino ? (uint64_t)s.st_nlink : 0;
    } else { /* the watch's stat is all there is then (it also sees a vanished file) */
        sw_log(SW_LOG_WARN, "SHARD", "%s cannot be held open (%s): compute steps are not checked one by one, "
               "only by the file watch", path ? path : "the shard file", strerror(errno));
        if (fd >= 0) close(fd);
    }
}

void sw__node_watch_stop(struct sw_node *n)
{
    n->watching = 0;
    n->watch_due = 0;
    if (n->served_fd1) close(n->served_fd1 - 1);
    n->served_fd1 = 0;
}

/* The served file as the fd held open sees it: 0 unchanged, else why (in why). */
static int served_fd_changed(const struct sw_node *n, char *why, size_t cap)
{
    const struct sw_file_id *was = &n->served_id;
    struct stat s;
    if (!n->served_fd1) return 0; /* not held open: the watch's stat decides */
    if (fstat(n->served_fd1 - 1, &s)) snprintf(why, cap, "it cannot be read (%s)", strerror(errno));
    else if (!n->served_nlink) snprintf(why, cap, "the file was replaced by another one");
    else if ((uint64_t)s.st_nlink != n->served_nlink)
        snprintf(why, cap, s.st_nlink ? "its links changed" : "the file was deleted or replaced");
    else if ((uint64_t)s.st_size != was->size)
        snprintf(why, cap, "its size changed from %llu to %llu bytes", (unsigned long long)was->size,
                 (unsigned long long)s.st_size);
    else if ((uint64_t)s.st_mtim.tv_sec * 1000000000ull + (uint64_t)s.st_mtim.tv_nsec != was->mtime_ns)
        snprintf(why, cap, "its bytes were modified");
    else if ((uint64_t)s.st_ctim.tv_sec * 1000000000ull + (uint64_t)s.st_ctim.tv_nsec != was->ctime_ns)
        snprintf(why, cap, "its metadata changed");
    else return 0;
    return 1;
}

int sw_node_stage_check(struct sw_node *n, const struct sw_stage *st, char *msg, size_t cap)
{
    if (!n || !st || st != n->stage || !n->watching) return 0;
    char why[160];
    if (!n->watch_due && !served_fd_changed(n, why, sizeof why)) return 0;
    if (n->watch_due) snprintf(why, sizeof why, "a change is being handled");
    n->steps_refused++;
    snprintf(msg, cap, "shard %d at %s changed while this step ran (%s): its output is not used", (int)n->shard,
             served_path(n), why);
    if (!n->watch_due) sw_log(SW_LOG_WARN, "SHARD", "%s", msg);
    n->watch_due = 1; /* the next tick releases the stage and re-verifies (sw__node_watch_check) */
    return SW_ESTATE; /* like a stage dropped: the entry fails over to a replica */
}

/* Is the served file still the one we loaded? Called every WATCH_MS, on inotify events and
 * on the tick after a compute step saw a change (watch_due). A write through another
 * process's mmap shows only in mtime (at its next writeback); every other change (write,
 * truncate, replace, delete, chmod) also moves ctime. */
void sw__node_watch_check(struct sw_node *n)
{
    if (!n->watching || n->stopping) return;
    n->last_watch = sw_time_ms();
    const char *path = served_path(n);
    struct sw_file_id now;
    const struct sw_file_id *was = &n->served_id;
    char why[200];
    if (sw_file_id(path, &now)) snprintf(why, sizeof why, "the file vanished");
    else if (now.dev != was->dev || now.ino != was->ino) snprintf(why, sizeof why, "the file was replaced by another one");
    else if (now.size != was->size)
        snprintf(why, sizeof why, "its size changed from %llu to %llu bytes", (unsigned long long)was->size,
                 (unsigned long long)now.size);
    else if (now.mtime_ns != was->mtime_ns) snprintf(why, sizeof why, "its bytes were modified");
    else if (now.ctime_ns != was->ctime_ns) snprintf(why, sizeof why, "its metadata changed");
    else if (!served_fd_changed(n, why, sizeof why)) {
        n->watch_due = 0;
        return;
    }
    sw__node_watch_stop(n);
    sw_log(SW_LOG_WARN, "SHARD", "shard %d at %s changed under the running node (%s): no longer serving it "
           "(sessions fail over); re-verifying its pieces", (int)n->shard, path, why);
    char reason[300];
    snprintf(reason, sizeof reason, "shard %d at %s changed under the node (%s)", (int)n->shard, path, why);
    sw__node_retire_stage(n, reason);
    sw__node_start_load(n, 1); /* hash on a worker; bad pieces are fetched again (job_done) */
    sw__node_publish(n, 1);
    sw__node_changed(n);
}

/* ------------------------------------------------------------------ planner */

void sw__node_plan(struct sw_node *n, uint64_t now)
{
    if (!n->view || !n->auto_mode || n->cfg.seed_all || n->drained) return;
    struct sw_plan_input in = { n->shard_bytes, 0, 0 };
    uint64_t mem = 0;
    if (!sw_sys_mem_available(&mem)) in.mem_budget = mem + (n->stage ? n->shard_bytes[n->shard] : 0);
    if (n->shard < 0) {
        int settled = n->first_peer_ms ? now - n->first_peer_ms >= AUTO_SETTLE_MS : now - n->started_ms >= AUTO_ALONE_MS;
        if (!settled) return;
        if (n->cfg.gpu && !n->gpu_probed) { /* once, before the first pick (a Vulkan instance and device: 129 ms first on lavapipe) */
            struct sw_gpu_probe gp;
            char msg[256] = "";
            n->gpu_probed = 1;
            if (!sw_gpu_probe(n->cfg.gpu, &gp, msg, sizeof msg)) {
                n->gpu_free = gp.mem_free;
                sw_log(SW_LOG_INFO, "SHARD", "--shard auto: GPU %s, %.1f GB free for weights: a shard it holds whole "
                       "is preferred", gp.name, gp.mem_free / 1e9);
            } else
                sw_log(SW_LOG_INFO, "SHARD", "--shard auto: no GPU for the planner (%s)", msg);
        }
        in.gpu_mem = n->gpu_free;
        int s = sw_plan_pick(n->view, &in);
        if (s < 0) {
            if (now - n->last_status >= 5000)
                sw_log(SW_LOG_WARN, "SHARD", "--shard auto: no shard fits in %llu bytes of free memory",
                       (unsigned long long)in.mem_budget);
            return;
        }
        struct sw_shard_view sv;
        sw_view_shard(n->view, (uint32_t)s, &sv);
        sw_log(SW_LOG_INFO, "SHARD", "--shard auto: taking shard %d (%u loaded replicas, %u nodes on it)", s, sv.n_loaded,
               sv.n_announced);
        sw__node_set_shard(n, s, "planner");
        return;
    }
    if (n->job) return;
    int t = sw_plan_review(n->view, &in);
    if (t < 0) {
        n->replan_target = -1;
        return;
    }
    if (t != n->replan_target) {
        n->replan_target = t;
        n->replan_since = now;
        return;
    }
    if (now - n->replan_since < REPLAN_GRACE_MS) return;
    sw_log(SW_LOG_INFO, "SHARD", "re-planning: shard %d has no node working on it and shard %d has another replica; moving",
           t, (int)n->shard);
    n->replan_target = -1;
    sw__node_set_shard(n, t, "planner: replacing a missing shard");
}
