/* storage.c — a torrent's files on disk: "<path>.part" preallocated while downloading,
 * pieces SHA-1-verified before they are written, "<path>.resume" recording verified pieces
 * (one byte per piece, updated in place), rename to "<path>" only when every piece is held.
 * Held files are mapped read-only so uploads are served without copies.
 * Not for: deciding what to download (picker.c) or sockets (session.c). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bt.h"
#include "bt_int.h"

#define ERR(...) (err && err_len ? (void)snprintf(err, err_len, __VA_ARGS__) : (void)0)

/* Resume file: fixed header, then one byte per piece the file touches (1 = verified and
 * written). The header is written atomically (temp + rename) when the file is created; each
 * verified piece then flips its own byte with one pwrite, after the piece's data is written.
 * When the file is complete under its final name, the header also records the file's
 * identity (st_dev, st_ino, size, mtime and ctime in ns, taken after the rename): at the
 * next open the pieces are trusted only when stat() still gives exactly these values.
 * A write, truncation, replacement, rename or chmod changes ctime, which no user can set
 * back; anything else (a .part file, an older SWBTRES1 file, a mismatch) is rehashed. */
#define RESUME_MAGIC "SWBTRES2"
#define RESUME_HDR 88 /* magic 8, info-hash 20, file 4, piece len 4, first 4, count 4, length word 4, identity 40 */

struct sfile {
    char *path, *part_path, *resume_path;
    int fd;              /* data file (final or .part), -1 when not open */
    int writable;
    const uint8_t *map;  /* read-only shared map of the whole file */
    size_t map_len;
    int resume_fd;
    int complete;        /* final name, every piece held (atomic) */
    int wanted;
    uint32_t n_pieces;   /* pieces the file touches */
    uint32_t n_held;
};

struct sw_bt_storage {
    const struct sw_bt_metainfo *mi; /* borrowed: owned by the torrent */
    char *dir;
    struct sfile *f;
    uint8_t *have;                   /* bitfield */
    pthread_mutex_t lock;            /* opening/creating files from worker threads */
    sw_bt_hash_progress_fn on_hash;  /* progress of check_file (borrowed callback) */
    void *hash_ud;
};

static int errno_sw(int e)
{
    switch (e) {
    case ENOSPC: case EDQUOT: return SW_ENOSPC;
    case ENOENT: return SW_ENOTFOUND;
    case ENOMEM: return SW_ENOMEM;
    case EEXIST: return SW_EEXIST;
    case EACCES: case EPERM: case EROFS: return SW_EPERM;
    default: return SW_EIO;
    }
}

static char *cat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (!s) return NULL;
    memcpy(s, a, la);
    memcpy(s + la, b, lb + 1);
    return s;
}

static void unmap_file(struct sfile *sf)
{
    if (sf->map) {
        sw_map_guard_remove(sf->map);
        munmap((void *)sf->map, sf->map_len);
    }
    sf->map = NULL;
    sf->map_len = 0;
}

static void close_file(struct sfile *sf)
{
    unmap_file(sf);
    if (sf->fd >= 0) close(sf->fd);
    sf->fd = -1;
    if (sf->resume_fd >= 0) close(sf->resume_fd);
    sf->resume_fd = -1;
}

static int map_file(struct sfile *sf, uint64_t len)
{
    if (sf->map || len == 0 || sf->fd < 0) return 0;
    void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, sf->fd, 0);
    if (m == MAP_FAILED) return errno_sw(errno);
    sf->map = m;
    sf->map_len = len;
    sw_map_guard_add(m, len); /* a truncation by someone else: uploads read zeros, not SIGBUS */
    return 0;
}

const uint8_t *sw_bt_storage_have(const struct sw_bt_storage *st)
{
    return st->have;
}

int sw_bt_storage_has_piece(const struct sw_bt_storage *st, uint32_t piece)
{
    return piece < st->mi->n_pieces && sw__bit_get(st->have, piece);
}

int sw_bt_storage_file_complete(const struct sw_bt_storage *st, uint32_t file)
{
    return file < st->mi->n_files && __atomic_load_n(&st->f[file].complete, __ATOMIC_ACQUIRE);
}

const char *sw_bt_storage_path(const struct sw_bt_storage *st, uint32_t file)
{
    return file < st->mi->n_files ? st->f[file].path : NULL;
}

/* Writes a fresh resume file (header + bytes, identity id or none) atomically and opens it
 * for updates. */
static int resume_create(struct sw_bt_storage *st, uint32_t fi, const uint8_t *bytes, const struct sw_file_id *id)
{
    struct sfile *sf = &st->f[fi];
    const struct sw_bt_file *bf = &st->mi->files[fi];
    size_t n = RESUME_HDR + sf->n_pieces;
    uint8_t *buf = calloc(1, n);
    if (!buf) return SW_ENOMEM;
    memcpy(buf, RESUME_MAGIC, 8);
    memcpy(buf + 8, st->mi->info_hash, 20);
    sw_put_be32(buf + 28, fi);
    sw_put_be32(buf + 32, st->mi->piece_length);
    sw_put_be32(buf + 36, bf->first_piece);
    sw_put_be32(buf + 40, sf->n_pieces);
    sw_put_be32(buf + 44, (uint32_t)(bf->length >> 32) ^ (uint32_t)bf->length); /* length check word */
    if (id) {
        sw_put_be64(buf + 48, id->dev);
        sw_put_be64(buf + 56, id->ino);
        sw_put_be64(buf + 64, id->size);
        sw_put_be64(buf + 72, id->mtime_ns);
        sw_put_be64(buf + 80, id->ctime_ns);
    }
    if (bytes) memcpy(buf + RESUME_HDR, bytes, sf->n_pieces);
    char *tmp = cat(sf->resume_path, ".tmp");
    int rc = tmp ? 0 : SW_ENOMEM;
    if (!rc) {
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) rc = errno_sw(errno);
        else {
            ssize_t w = write(fd, buf, n);
            if (w != (ssize_t)n) rc = w < 0 ? errno_sw(errno) : SW_EIO;
            close(fd);
            if (!rc && rename(tmp, sf->resume_path)) rc = errno_sw(errno);
            if (rc) unlink(tmp);
        }
    }
    free(tmp);
    free(buf);
    if (rc) return rc;
    if (sf->resume_fd >= 0) close(sf->resume_fd);
    sf->resume_fd = open(sf->resume_path, O_RDWR | O_CLOEXEC);
    return sf->resume_fd < 0 ? errno_sw(errno) : 0;
}

/* Reads a resume file; returns 0 and fills bytes (n_pieces) and the recorded identity when
 * it matches this file. */
static int resume_load(struct sw_bt_storage *st, uint32_t fi, uint8_t *bytes, struct sw_file_id *id)
{
    struct sfile *sf = &st->f[fi];
    const struct sw_bt_file *bf = &st->mi->files[fi];
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = sw_file_read_all(sf->resume_path, RESUME_HDR + (size_t)sf->n_pieces, &data, &len);
    if (rc) return rc;
    rc = SW_ECORRUPT;
    if (len == RESUME_HDR + (size_t)sf->n_pieces && !memcmp(data, RESUME_MAGIC, 8) &&
        !memcmp(data + 8, st->mi->info_hash, 20) && sw_get_be32(data + 28) == fi &&
        sw_get_be32(data + 32) == st->mi->piece_length && sw_get_be32(data + 36) == bf->first_piece &&
        sw_get_be32(data + 40) == sf->n_pieces &&
        sw_get_be32(data + 44) == ((uint32_t)(bf->length >> 32) ^ (uint32_t)bf->length)) {
        memcpy(bytes, data + RESUME_HDR, sf->n_pieces);
        id->dev = sw_get_be64(data + 48);
        id->ino = sw_get_be64(data + 56);
        id->size = sw_get_be64(data + 64);
        id->mtime_ns = sw_get_be64(data + 72);
        id->ctime_ns = sw_get_be64(data + 80);
        rc = 0;
    }
    free(data);
    return rc;
}

/* Opens (creating and preallocating when `create`) the data file of fi for writing.
 * Called with st->lock held. */
static int open_for_write(struct sw_bt_storage *st, uint32_t fi, char *err, size_t err_len)
{
    struct sfile *sf = &st->f[fi];
    const struct sw_bt_file *bf = &st->mi->files[fi];
    if (sf->fd >= 0 && sf->writable) return 0;
    const char *path = sf->part_path;
    char *dirpart = strdup(path);
    if (!dirpart) return SW_ENOMEM;
    char *slash = strrchr(dirpart, '/');
    if (slash) {
        *slash = 0;
        int rc = sw_mkdir_p(dirpart);
        if (rc) { ERR("%s: cannot create folder: %s", dirpart, sw_strerror(rc)); free(dirpart); return rc; }
    }
    free(dirpart);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) { int rc = errno_sw(errno); ERR("%s: %s", path, strerror(errno)); return rc; }
    struct stat stt;
    if (fstat(fd, &stt) == 0 && (uint64_t)stt.st_size != bf->length) {
        /* Preallocate so a full disk shows now, not halfway (posix_fallocate reserves the
         * blocks; where the file system cannot, fall back to a sparse file). */
        int e = posix_fallocate(fd, 0, (off_t)bf->length);
        if (e == ENOSPC || e == EDQUOT) {
            ERR("%s: disk full: cannot reserve %llu bytes", path, (unsigned long long)bf->length);
            close(fd);
            unlink(path);
            return SW_ENOSPC;
        }
        if (e && ftruncate(fd, (off_t)bf->length) != 0) {
            int rc = errno_sw(errno);
            ERR("%s: cannot size the file: %s", path, strerror(errno));
            close(fd);
            return rc;
        }
    }
    if (sf->fd >= 0) { unmap_file(sf); close(sf->fd); }
    sf->fd = fd;
    sf->writable = 1;
    if (sf->resume_fd < 0) {
        int rc = resume_create(st, fi, NULL, NULL);
        if (rc) { ERR("%s: %s", sf->resume_path, sw_strerror(rc)); return rc; }
    }
    return 0;
}

static int pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    while (n) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno_sw(errno);
        }
        if (w == 0) return SW_EIO;
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

static int pread_all(int fd, uint8_t *p, size_t n, uint64_t off)
{
    while (n) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return errno_sw(errno);
        }
        if (r == 0) return SW_EIO; /* short file */
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static int piece_ok(const struct sw_bt_metainfo *mi, uint32_t piece, const uint8_t *data)
{
    uint8_t h[20];
    sw_sha1(data, sw_bt_piece_size(mi, piece), h);
    return !memcmp(h, mi->piece_hashes + (size_t)piece * 20, 20);
}

int sw_bt_storage_verify_write(struct sw_bt_storage *st, uint32_t piece, const uint8_t *data, char *err,
                               size_t err_len)
{
    const struct sw_bt_metainfo *mi = st->mi;
    if (piece >= mi->n_pieces) return SW_EINVAL;
    /* Verify BEFORE writing: a bad piece never touches the disk. */
    if (!piece_ok(mi, piece, data)) {
        ERR("piece %u: SHA-1 mismatch", piece);
        return SW_ECORRUPT;
    }
    struct sw_bt_span sp[64];
    uint32_t n = sw_bt_piece_spans(mi, piece, 0, sw_bt_piece_size(mi, piece), sp, 64);
    for (uint32_t i = 0; i < n; i++) {
        struct sfile *sf = &st->f[sp[i].file];
        if (mi->files[sp[i].file].pad) continue;
        if (__atomic_load_n(&sf->complete, __ATOMIC_ACQUIRE)) continue;
        pthread_mutex_lock(&st->lock);
        int rc = open_for_write(st, sp[i].file, err, err_len);
        int fd = sf->fd;
        pthread_mutex_unlock(&st->lock);
        if (rc) return rc;
        rc = pwrite_all(fd, data + sp[i].piece_offset, sp[i].len, sp[i].file_offset);
        if (rc) {
            ERR("%s: write failed: %s", sf->part_path, rc == SW_ENOSPC ? "disk full" : sw_strerror(rc));
            return rc;
        }
#ifdef SYNC_FILE_RANGE_WRITE
        /* Start writeback now, so the fdatasync before the final rename finds little left. */
        sync_file_range(fd, (off_t)sp[i].file_offset, sp[i].len, SYNC_FILE_RANGE_WRITE);
#endif
    }
    return 0;
}

int sw_bt_storage_mark_have(struct sw_bt_storage *st, uint32_t piece, uint32_t *files_done_out, uint32_t max)
{
    const struct sw_bt_metainfo *mi = st->mi;
    if (piece >= mi->n_pieces || sw__bit_get(st->have, piece)) return 0;
    sw__bit_set(st->have, piece);
    struct sw_bt_span sp[64];
    uint32_t n = sw_bt_piece_spans(mi, piece, 0, sw_bt_piece_size(mi, piece), sp, 64), done = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t fi = sp[i].file;
        struct sfile *sf = &st->f[fi];
        if (mi->files[fi].pad || sf->complete) continue;
        if (sf->resume_fd >= 0) {
            uint8_t one = 1;
            /* The data is written (pwrite returned) before this byte flips. */
            if (pwrite(sf->resume_fd, &one, 1, RESUME_HDR + (off_t)(piece - mi->files[fi].first_piece)) != 1)
                sw_log(SW_LOG_WARN, "BT", "%s: cannot update resume data: %s", sf->resume_path, strerror(errno));
        }
        sf->n_held++;
        if (!sf->map && sf->fd >= 0) map_file(sf, mi->files[fi].length);
        if (sf->n_held == sf->n_pieces && done < max) files_done_out[done++] = fi;
    }
    return (int)done;
}

/* The file is complete under its final name: record every piece held and the file's
 * identity as it is now (after the rename, which changed its ctime). */
static void resume_seal(struct sw_bt_storage *st, uint32_t fi)
{
    struct sfile *sf = &st->f[fi];
    struct sw_file_id id;
    uint8_t *bytes = malloc(sf->n_pieces ? sf->n_pieces : 1);
    int rc = bytes ? sw_file_id(sf->path, &id) : SW_ENOMEM;
    if (!rc) {
        memset(bytes, 1, sf->n_pieces);
        rc = resume_create(st, fi, bytes, &id);
    }
    if (rc) sw_log(SW_LOG_WARN, "BT", "%s: cannot record resume data (%s): the file is rehashed at the next start",
                   sf->resume_path, rc < 0 ? sw_strerror(rc) : strerror(errno));
    free(bytes);
}

int sw_bt_storage_finalize_file(struct sw_bt_storage *st, uint32_t fi, char *err, size_t err_len)
{
    if (fi >= st->mi->n_files) return SW_EINVAL;
    struct sfile *sf = &st->f[fi];
    if (__atomic_load_n(&sf->complete, __ATOMIC_ACQUIRE)) return 0;
    if (sf->n_held != sf->n_pieces) return SW_ESTATE;
    if (sf->fd >= 0 && fdatasync(sf->fd) != 0) {
        int rc = errno_sw(errno);
        ERR("%s: fsync failed: %s", sf->part_path, strerror(errno));
        return rc;
    }
    if (st->mi->files[fi].length == 0 && sf->fd < 0) {
        int fd = open(sf->part_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) { ERR("%s: %s", sf->part_path, strerror(errno)); return errno_sw(errno); }
        close(fd);
    }
    /* Rename only now: a file under its final name is always complete and verified. */
    if (rename(sf->part_path, sf->path) != 0) {
        int rc = errno_sw(errno);
        ERR("%s: rename to %s failed: %s", sf->part_path, sf->path, strerror(errno));
        return rc;
    }
    __atomic_store_n(&sf->complete, 1, __ATOMIC_RELEASE);
    resume_seal(st, fi);
    return 0;
}

const uint8_t *sw_bt_storage_read(struct sw_bt_storage *st, uint32_t piece, uint32_t off, uint32_t len,
                                  uint8_t *scratch)
{
    const struct sw_bt_metainfo *mi = st->mi;
    if (piece >= mi->n_pieces || !sw__bit_get(st->have, piece)) return NULL;
    struct sw_bt_span sp[64];
    uint32_t n = sw_bt_piece_spans(mi, piece, off, len, sp, 64);
    if (n == 0) return NULL;
    uint32_t total = 0;
    for (uint32_t i = 0; i < n; i++) total += sp[i].len;
    if (total != len) return NULL;
    if (n == 1 && !mi->files[sp[0].file].pad) {
        struct sfile *sf = &st->f[sp[0].file];
        if (sf->map) return sf->map + sp[0].file_offset; /* zero copy */
    }
    if (!scratch) return NULL;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *dst = scratch + (sp[i].piece_offset - off);
        if (mi->files[sp[i].file].pad) { memset(dst, 0, sp[i].len); continue; }
        struct sfile *sf = &st->f[sp[i].file];
        if (sf->map) memcpy(dst, sf->map + sp[i].file_offset, sp[i].len);
        else if (sf->fd < 0 || pread_all(sf->fd, dst, sp[i].len, sp[i].file_offset)) return NULL;
    }
    return scratch;
}

void sw_bt_storage_prefetch(struct sw_bt_storage *st, uint32_t piece)
{
    const struct sw_bt_metainfo *mi = st->mi;
    if (piece >= mi->n_pieces) return;
    struct sw_bt_span sp[8];
    uint32_t n = sw_bt_piece_spans(mi, piece, 0, sw_bt_piece_size(mi, piece), sp, 8);
    long pg = sysconf(_SC_PAGESIZE);
    for (uint32_t i = 0; i < n; i++) {
        struct sfile *sf = &st->f[sp[i].file];
        if (mi->files[sp[i].file].pad || !sf->map) continue;
        uint64_t start = sp[i].file_offset & ~(uint64_t)(pg - 1);
        uint64_t end = SW_MIN(sp[i].file_offset + sp[i].len, (uint64_t)sf->map_len);
        madvise((void *)(sf->map + start), end - start, MADV_WILLNEED);
    }
}

/* Reads a whole piece from whatever is on disk now (final or .part files). */
static int read_piece_disk(struct sw_bt_storage *st, uint32_t piece, uint8_t *buf)
{
    const struct sw_bt_metainfo *mi = st->mi;
    struct sw_bt_span sp[64];
    uint32_t n = sw_bt_piece_spans(mi, piece, 0, sw_bt_piece_size(mi, piece), sp, 64);
    for (uint32_t i = 0; i < n; i++) {
        if (mi->files[sp[i].file].pad) { memset(buf + sp[i].piece_offset, 0, sp[i].len); continue; }
        struct sfile *sf = &st->f[sp[i].file];
        int fd = sf->fd;
        int own = 0;
        if (fd < 0) {
            fd = open(sf->path, O_RDONLY | O_CLOEXEC);
            if (fd < 0) fd = open(sf->part_path, O_RDONLY | O_CLOEXEC);
            if (fd < 0) return SW_ENOTFOUND;
            own = 1;
        }
        int rc = pread_all(fd, buf + sp[i].piece_offset, sp[i].len, sp[i].file_offset);
        if (own) close(fd);
        if (rc) return rc;
    }
    return 0;
}

static void recount(struct sw_bt_storage *st, uint32_t fi)
{
    const struct sw_bt_file *bf = &st->mi->files[fi];
    struct sfile *sf = &st->f[fi];
    sf->n_held = 0;
    for (uint32_t p = bf->first_piece; bf->length && p <= bf->last_piece; p++) sf->n_held += sw__bit_get(st->have, p);
}

/* Opens the data file of fi read-only (final name first) for serving. */
static void open_existing(struct sw_bt_storage *st, uint32_t fi)
{
    struct sfile *sf = &st->f[fi];
    if (sf->fd >= 0) return;
    int complete = __atomic_load_n(&sf->complete, __ATOMIC_ACQUIRE);
    int fd = open(complete ? sf->path : sf->part_path, (complete ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) return;
    sf->fd = fd;
    sf->writable = !complete;
    map_file(sf, st->mi->files[fi].length);
}

/* Checks file fi on disk: hashes its pieces, or (given != NULL: one byte per piece of the
 * file, 1 = good) takes the verdict of a hash the caller made (on a worker thread). */
static int check_file(struct sw_bt_storage *st, uint32_t fi, const uint8_t *given, char *err, size_t err_len)
{
    const struct sw_bt_metainfo *mi = st->mi;
    if (fi >= mi->n_files) return SW_EINVAL;
    const struct sw_bt_file *bf = &mi->files[fi];
    struct sfile *sf = &st->f[fi];
    if (bf->pad) return 0;
    uint64_t sz = 0;
    int is_final = sw_file_size(sf->path, &sz) == 0 && sz == bf->length;
    if (!is_final && !(sw_file_size(sf->part_path, &sz) == 0 && sz == bf->length)) {
        int had = __atomic_load_n(&sf->complete, __ATOMIC_ACQUIRE) || sf->n_held;
        if (!had) {
            ERR("%s: not present (or wrong size)", sf->path);
            return SW_ENOTFOUND;
        }
        /* A file we held shrank, grew or vanished: nothing of it is held now. What is left
         * goes back to "<path>.part" at its right size (the missing tail reads as zeros and
         * fails its hash), so only the pieces that do not verify are fetched again. */
        __atomic_store_n(&sf->complete, 0, __ATOMIC_RELEASE);
        close_file(sf);
        for (uint32_t p = bf->first_piece; bf->length && p <= bf->last_piece; p++) sw__bit_clear(st->have, p);
        recount(st, fi);
        int on_final = sw_path_exists(sf->path), on_part = !on_final && sw_path_exists(sf->part_path);
        if (!on_final && !on_part) {
            unlink(sf->resume_path);
            ERR("%s: the file is gone; nothing of it is held", sf->path);
            return 0; /* the state is right now (nothing held): the caller re-fetches it all */
        }
        sz = 0;
        sw_file_size(on_final ? sf->path : sf->part_path, &sz);
        if (on_final && rename(sf->path, sf->part_path)) {
            int rc = errno_sw(errno);
            ERR("%s: rename to %s failed: %s", sf->path, sf->part_path, strerror(errno));
            return rc;
        }
        if (truncate(sf->part_path, (off_t)bf->length)) {
            int rc = errno_sw(errno);
            ERR("%s: cannot size the file: %s", sf->part_path, strerror(errno));
            return rc;
        }
        sw_log(SW_LOG_WARN, "BT", "%s had %llu bytes instead of %llu; kept as %s, its pieces are hashed again",
               on_final ? sf->path : sf->part_path, (unsigned long long)sz, (unsigned long long)bf->length,
               sf->part_path);
    }
    if (is_final) {
        /* A final-named file we may be writing into as .part: drop the old handles. */
        if (sf->fd >= 0 && sf->writable) { unmap_file(sf); close(sf->fd); sf->fd = -1; }
    }
    uint8_t *buf = malloc(mi->piece_length);
    uint8_t *bytes = calloc(sf->n_pieces ? sf->n_pieces : 1, 1);
    if (!buf || !bytes) { free(buf); free(bytes); return SW_ENOMEM; }
    int fresh = 0;
    uint64_t hashed = 0;
    uint32_t n_good = 0;
    for (uint32_t p = bf->first_piece; bf->length && p <= bf->last_piece; p++) {
        if (sf->fd < 0) {
            sf->fd = open(is_final ? sf->path : sf->part_path, (is_final ? O_RDONLY : O_RDWR) | O_CLOEXEC);
            sf->writable = !is_final;
        }
        /* Other files' parts of a spanning piece come from disk as they are. */
        int ok = given ? given[p - bf->first_piece] != 0 : read_piece_disk(st, p, buf) == 0 && piece_ok(mi, p, buf);
        bytes[p - bf->first_piece] = (uint8_t)ok;
        if (ok && !sw__bit_get(st->have, p)) { sw__bit_set(st->have, p); fresh++; }
        if (!ok) sw__bit_clear(st->have, p); /* what is on disk now decides */
        n_good += (uint32_t)ok;
        hashed = SW_MIN(hashed + sw_bt_piece_size(mi, p), bf->length);
        if (st->on_hash && !given && p < bf->last_piece)
            st->on_hash(st->hash_ud, fi, sf->path, hashed, bf->length, n_good, sf->n_pieces);
    }
    if (st->on_hash && !given) st->on_hash(st->hash_ud, fi, sf->path, bf->length, bf->length, n_good, sf->n_pieces);
    free(buf);
    recount(st, fi);
    int rc = 0;
    if (sf->n_held == sf->n_pieces) {
        if (is_final) {
            __atomic_store_n(&sf->complete, 1, __ATOMIC_RELEASE);
        } else {
            if (sf->fd < 0) { sf->fd = open(sf->part_path, O_RDWR | O_CLOEXEC); sf->writable = 1; }
            rc = sw_bt_storage_finalize_file(st, fi, err, err_len);
        }
    } else if (is_final) {
        /* Under its final name but not complete: it must not claim to be a finished shard. */
        __atomic_store_n(&sf->complete, 0, __ATOMIC_RELEASE);
        if (sf->fd >= 0) { unmap_file(sf); close(sf->fd); sf->fd = -1; }
        if (rename(sf->path, sf->part_path) == 0)
            sw_log(SW_LOG_WARN, "BT", "%s: %u of %u pieces fail their hash; renamed to %s and fetching the rest",
                   sf->path, sf->n_pieces - sf->n_held, sf->n_pieces, sf->part_path);
    }
    if (!rc && is_final && sf->n_held == sf->n_pieces) {
        resume_seal(st, fi);
    } else if (!rc && (sf->n_held || sf->resume_fd >= 0 || sw_path_exists(sf->resume_path))) {
        int r2 = resume_create(st, fi, bytes, NULL);
        if (r2) sw_log(SW_LOG_WARN, "BT", "%s: %s", sf->resume_path, sw_strerror(r2));
    }
    free(bytes);
    if (!rc) open_existing(st, fi);
    return rc ? rc : fresh;
}

int sw_bt_storage_check_file(struct sw_bt_storage *st, uint32_t fi, char *err, size_t err_len)
{
    return check_file(st, fi, NULL, err, err_len);
}

int sw_bt_storage_apply_check(struct sw_bt_storage *st, uint32_t fi, const uint8_t *good, char *err, size_t err_len)
{
    if (!good) return SW_EINVAL;
    return check_file(st, fi, good, err, err_len);
}

/* Loads state of file fi at open: resume data when it matches, else hash what is there. */
static int load_file(struct sw_bt_storage *st, uint32_t fi, const struct sw_bt_storage_opts *o, char *err,
                     size_t err_len)
{
    const struct sw_bt_metainfo *mi = st->mi;
    const struct sw_bt_file *bf = &mi->files[fi];
    struct sfile *sf = &st->f[fi];
    if (bf->pad) return 0;
    uint64_t sz = 0;
    int final_ok = sw_file_size(sf->path, &sz) == 0 && sz == bf->length;
    int part_ok = !final_ok && sw_file_size(sf->part_path, &sz) == 0 && sz == bf->length;
    if (!final_ok && !part_ok) {
        unlink(sf->resume_path); /* stale resume data without its file */
        return 0;
    }
    uint8_t *bytes = calloc(sf->n_pieces ? sf->n_pieces : 1, 1);
    if (!bytes) return SW_ENOMEM;
    struct sw_file_id rec, now;
    int have_resume = !o->verify_all && resume_load(st, fi, bytes, &rec) == 0;
    int all = 1;
    for (uint32_t k = 0; k < sf->n_pieces; k++) all &= bytes[k];
    /* Resume data speaks for a final file only while the file is exactly the one it sealed. */
    int same = have_resume && final_ok && rec.ctime_ns && !sw_file_id(sf->path, &now) && rec.dev == now.dev &&
               rec.ino == now.ino && rec.size == now.size && rec.mtime_ns == now.mtime_ns &&
               rec.ctime_ns == now.ctime_ns;
    if (have_resume && final_ok && all && !same)
        sw_log(SW_LOG_INFO, "BT", "%s changed since its pieces were verified (%s); rehashing it", sf->path,
               !rec.ctime_ns ? "no identity recorded" : rec.size != now.size ? "size" : rec.ino != now.ino || rec.dev != now.dev
               ? "another file" : rec.mtime_ns != now.mtime_ns ? "modification time" : "change time");
    if (final_ok && !o->verify_all && (have_resume ? all && same : o->trust_complete)) {
        for (uint32_t p = bf->first_piece; bf->length && p <= bf->last_piece; p++) sw__bit_set(st->have, p);
        __atomic_store_n(&sf->complete, 1, __ATOMIC_RELEASE);
        free(bytes);
        recount(st, fi);
        open_existing(st, fi);
        return 0;
    }
    free(bytes);
    /* No resume data bound to this very file (a .part file always: nothing binds it while it
     * is written), or --verify: hash what is on disk. */
    int rc = sw_bt_storage_check_file(st, fi, err, err_len);
    return rc < 0 && rc != SW_ENOTFOUND ? rc : 0;
}

int sw_bt_storage_open(const struct sw_bt_metainfo *mi, const struct sw_bt_storage_opts *o,
                       struct sw_bt_storage **out, char *err, size_t err_len)
{
    *out = NULL;
    if (!mi || !o || !o->dir) return SW_EINVAL;
    struct sw_bt_storage *st = calloc(1, sizeof *st);
    if (!st) return SW_ENOMEM;
    pthread_mutex_init(&st->lock, NULL);
    st->mi = mi;
    st->on_hash = o->on_hash;
    st->hash_ud = o->hash_ud;
    st->dir = strdup(o->dir);
    st->f = calloc(mi->n_files, sizeof *st->f);
    st->have = calloc((mi->n_pieces + 7) / 8, 1);
    if (!st->dir || !st->f || !st->have) { sw_bt_storage_close(st); return SW_ENOMEM; }
    for (uint32_t i = 0; i < mi->n_files; i++) {
        struct sfile *sf = &st->f[i];
        sf->fd = sf->resume_fd = -1;
        const struct sw_bt_file *bf = &mi->files[i];
        sf->n_pieces = bf->length ? bf->last_piece - bf->first_piece + 1 : 0;
        if (bf->pad) continue;
        if (!sw_bt_path_is_safe(bf->path)) { ERR("unsafe path '%s'", bf->path); sw_bt_storage_close(st); return SW_ECORRUPT; }
        sf->path = sw_path_join(o->dir, bf->path);
        sf->part_path = sf->path ? cat(sf->path, ".part") : NULL;
        sf->resume_path = sf->path ? cat(sf->path, ".resume") : NULL;
        if (!sf->path || !sf->part_path || !sf->resume_path) { sw_bt_storage_close(st); return SW_ENOMEM; }
    }
    for (uint32_t i = 0; i < mi->n_files; i++) {
        int rc = load_file(st, i, o, err, err_len);
        if (rc) { sw_bt_storage_close(st); return rc; }
    }
    /* A piece spanning files is held only when every file holds it (pad files always do). */
    *out = st;
    return 0;
}

int sw_bt_storage_want_file(struct sw_bt_storage *st, uint32_t file, int wanted)
{
    if (file >= st->mi->n_files) return SW_EINVAL;
    st->f[file].wanted = wanted;
    return 0;
}

void sw_bt_storage_close(struct sw_bt_storage *st)
{
    if (!st) return;
    if (st->f) {
        for (uint32_t i = 0; i < st->mi->n_files; i++) {
            close_file(&st->f[i]);
            free(st->f[i].path);
            free(st->f[i].part_path);
            free(st->f[i].resume_path);
        }
    }
    free(st->f);
    free(st->have);
    free(st->dir);
    pthread_mutex_destroy(&st->lock);
    free(st);
}
