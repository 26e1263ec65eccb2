/* os.c — the platform interface: time, files, mmap, system memory and disk.
 * POSIX here; a Windows port replaces this one file. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

uint64_t sw_time_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
uint64_t sw_time_us(void) { return sw_time_ns() / 1000u; }
uint64_t sw_time_ms(void) { return sw_time_ns() / 1000000u; }
uint64_t sw_wall_time_s(void) { return (uint64_t)time(NULL); }

void sw_sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
}

static int errno_to_sw(int e)
{
    switch (e) {
    case ENOENT: return SW_ENOTFOUND;
    case ENOMEM: return SW_ENOMEM;
    case ENOSPC: return SW_ENOSPC;
    case EEXIST: return SW_EEXIST;
    case EACCES: case EPERM: return SW_EPERM;
    default: return SW_EIO;
    }
}

int sw_file_map(const char *path, struct sw_mmap *out)
{
    out->data = NULL;
    out->len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno_to_sw(errno);
    struct stat st;
    if (fstat(fd, &st) != 0) { int e = errno; close(fd); return errno_to_sw(e); }
    if (!S_ISREG(st.st_mode)) { close(fd); return SW_EINVAL; }
    if ((uint64_t)st.st_size > SIZE_MAX) { close(fd); return SW_ETOOBIG; }
    if (st.st_size == 0) { close(fd); return 0; }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return errno_to_sw(e);
    out->data = p;
    out->len = (size_t)st.st_size;
    sw_map_guard_add(p, out->len); /* best effort: unguarded, a truncation is fatal as before */
    return 0;
}

void sw_file_unmap(struct sw_mmap *m)
{
    if (!m || !m->data) return;
    sw_map_guard_remove(m->data);
    munmap((void *)m->data, m->len);
    m->data = NULL;
    m->len = 0;
}

int sw_file_size(const char *path, uint64_t *size_out)
{
    struct stat st;
    if (stat(path, &st) != 0) return errno_to_sw(errno);
    *size_out = (uint64_t)st.st_size;
    return 0;
}

int sw_file_id(const char *path, struct sw_file_id *out)
{
    struct stat st;
    memset(out, 0, sizeof *out);
    if (!path) return SW_EINVAL;
    if (stat(path, &st) != 0) return errno_to_sw(errno);
    out->dev = (uint64_t)st.st_dev;
    out->ino = (uint64_t)st.st_ino;
    out->size = (uint64_t)st.st_size;
    out->mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000ull + (uint64_t)st.st_mtim.tv_nsec;
    out->ctime_ns = (uint64_t)st.st_ctim.tv_sec * 1000000000ull + (uint64_t)st.st_ctim.tv_nsec;
    return 0;
}

int sw_path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int sw_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int sw_mkdir_p(const char *path)
{
    size_t n = strlen(path);
    if (n == 0) return SW_EINVAL;
    char *tmp = malloc(n + 1);
    if (!tmp) return SW_ENOMEM;
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] == '/' || tmp[i] == 0) {
            char save = tmp[i];
            tmp[i] = 0;
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
                int e = errno;
                free(tmp);
                return errno_to_sw(e);
            }
            tmp[i] = save;
        }
    }
    free(tmp);
    return sw_is_dir(path) ? 0 : SW_EIO;
}

int sw_file_read_all(const char *path, size_t max_len, uint8_t **data_out, size_t *len_out)
{
    *data_out = NULL;
    *len_out = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return errno_to_sw(errno);
    struct sw_buf b;
    sw_buf_init(&b);
    uint8_t chunk[65536];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b.len + n > max_len) { rc = SW_ETOOBIG; break; }
        if (sw_buf_append(&b, chunk, n)) { rc = SW_ENOMEM; break; }
    }
    if (!rc && ferror(f)) rc = SW_EIO;
    fclose(f);
    if (!rc && !sw_buf_cstr(&b)) rc = SW_ENOMEM;
    if (rc) { sw_buf_free(&b); return rc; }
    *data_out = b.data;
    *len_out = b.len;
    return 0;
}

int sw_file_write_atomic(const char *path, const void *p, size_t n)
{
    size_t plen = strlen(path) + 32;
    char *tmp = malloc(plen);
    if (!tmp) return SW_ENOMEM;
    snprintf(tmp, plen, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) { int e = errno; free(tmp); return errno_to_sw(e); }
    const uint8_t *q = p;
    size_t left = n;
    int rc = 0;
    while (left) {
        ssize_t w = write(fd, q, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            rc = errno_to_sw(errno);
            break;
        }
        q += w;
        left -= (size_t)w;
    }
    if (!rc && fsync(fd) != 0) rc = errno_to_sw(errno);
    if (close(fd) != 0 && !rc) rc = errno_to_sw(errno);
    if (!rc && rename(tmp, path) != 0) rc = errno_to_sw(errno);
    if (rc) unlink(tmp);
    free(tmp);
    return rc;
}

char *sw_path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    int slash = a > 0 && dir[a - 1] != '/';
    char *s = malloc(a + b + 2);
    if (!s) return NULL;
    memcpy(s, dir, a);
    if (slash) s[a++] = '/';
    memcpy(s + a, name, b + 1);
    return s;
}

static int meminfo(const char *key, uint64_t *out)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return SW_EUNSUPPORTED;
    char line[256];
    size_t kl = strlen(key);
    int rc = SW_ENOTFOUND;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            unsigned long long kb = strtoull(line + kl + 1, NULL, 10);
            *out = (uint64_t)kb * 1024u;
            rc = 0;
            break;
        }
    }
    fclose(f);
    return rc;
}

int sw_sys_mem_available(uint64_t *bytes_out) { return meminfo("MemAvailable", bytes_out); }
int sw_sys_mem_total(uint64_t *bytes_out) { return meminfo("MemTotal", bytes_out); }

int sw_sys_disk_free(const char *path, uint64_t *bytes_out)
{
    struct statvfs s;
    if (statvfs(path, &s) != 0) return errno_to_sw(errno);
    *bytes_out = (uint64_t)s.f_bavail * s.f_frsize;
    return 0;
}

int sw_sys_ncpu(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

uint64_t sw_sys_peak_rss(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (uint64_t)ru.ru_maxrss * 1024u; /* Linux reports KiB */
}

const char *sw_fmt_bytes(uint64_t n, char *out, size_t out_len)
{
    static const char *units[] = { "B", "KB", "MB", "GB", "TB" };
    double v = (double)n;
    unsigned u = 0;
    while (v >= 1000.0 && u + 1 < SW_ARRAY_LEN(units)) { v /= 1000.0; u++; }
    if (u == 0) snprintf(out, out_len, "%llu B", (unsigned long long)n);
    else snprintf(out, out_len, "%.1f %s", v, units[u]);
    return out;
}

const char *sw_fmt_duration_ms(uint64_t ms, char *out, size_t out_len)
{
    if (ms < 1000) snprintf(out, out_len, "%llums", (unsigned long long)ms);
    else if (ms < 60000) snprintf(out, out_len, "%.1fs", (double)ms / 1000.0);
    else if (ms < 3600000) snprintf(out, out_len, "%llum%02llus", (unsigned long long)(ms / 60000), (unsigned long long)(ms / 1000 % 60));
    else snprintf(out, out_len, "%lluh%02llum", (unsigned long long)(ms / 3600000), (unsigned long long)(ms / 60000 % 60));
    return out;
}
