/* See usage.h. */
#include "usage.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "../common/alloc.h"
#include "../common/err.h"
#include "../common/log.h"
#include "../proto/proto.h"

void server_usage_init(struct server_usage *u, const char *dir, uint64_t min_free_mb)
{
    memset(u, 0, sizeof *u);
    u->dir = dir;
    u->min_free = min_free_mb << 20;
    if (gethostname(u->host, sizeof u->host - 1) != 0) {
        snprintf(u->host, sizeof u->host, "?");
    }
}

/* Sum the regular files under the open directory fd (closed here). */
static uint64_t dir_bytes_fd(int fd, unsigned depth)
{
    DIR *d = fdopendir(fd);
    struct dirent *e;
    uint64_t total = 0;
    if (d == NULL) {
        close(fd);
        return 0;
    }
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            continue; /* a file deleted meanwhile (LevelDB compacting) counts 0 */
        }
        if (S_ISREG(st.st_mode)) {
            total += (uint64_t)st.st_blocks * 512u;
        } else if (S_ISDIR(st.st_mode) && depth < SERVER_USAGE_MAX_DEPTH) {
            int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) {
                total += dir_bytes_fd(sub, depth + 1);
            }
        }
    }
    closedir(d);
    return total;
}

uint64_t server_usage_dir_bytes(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return fd < 0 ? 0 : dir_bytes_fd(fd, 0);
}

static void disk_refresh(struct server_usage *u, uint64_t now_ms)
{
    struct statvfs st;
    if (u->have_disk && now_ms - u->disk_ms < SERVER_USAGE_CACHE_MS) {
        return;
    }
    u->used = server_usage_dir_bytes(u->dir);
    if (statvfs(u->dir, &st) == 0) {
        u->free = (uint64_t)st.f_bavail * st.f_frsize;
        u->total = (uint64_t)st.f_blocks * st.f_frsize;
        u->fsid = (uint64_t)st.f_fsid;
    } else if (!u->have_disk) {
        rfs_warnf("cannot tell the free space of %s (statvfs failed): reporting none", u->dir);
    }
    u->have_disk = true;
    u->disk_ms = now_ms;
}

static int count_refresh(struct server_usage *u, const struct rfs_sm_ops *ops, void *sm,
                         const void *prefix, size_t len, uint64_t now_ms, char *errmsg)
{
    uint64_t n = 0;
    int exact = 0, rv;
    if (u->have_count && now_ms - u->count_ms < SERVER_USAGE_CACHE_MS && u->prefix_len == len &&
        memcmp(u->prefix, prefix, len) == 0) {
        return 0;
    }
    if (ops->count_keys != NULL) {
        rv = ops->count_keys(sm, prefix, len, &n, &exact, errmsg);
        if (rv != 0) {
            return rv;
        }
    }
    memcpy(u->prefix, prefix, len);
    u->prefix_len = len;
    u->keys = n;
    u->exact = exact;
    u->have_count = true;
    u->count_ms = now_ms;
    return 0;
}

int server_usage_reply(struct server_usage *u, const struct rfs_sm_ops *ops, void *sm,
                       const void *prefix, size_t len, uint64_t now_ms, struct rfs_buf *out)
{
    Raftfs__KvReply rep = RAFTFS__KV_REPLY__INIT;
    Raftfs__SpaceReply sp = RAFTFS__SPACE_REPLY__INIT;
    char errmsg[RFS_ERRMSG_SIZE] = "";
    uint8_t *spbuf = NULL;
    int rv = 0;
    *out = (struct rfs_buf){0};
    if (len > SERVER_USAGE_PREFIX_MAX) {
        rep.status = RFS_EINVAL;
        rfs_errmsg_printf(errmsg, "space: a prefix of %zu bytes (at most %d)", len,
                          SERVER_USAGE_PREFIX_MAX);
    } else {
        disk_refresh(u, now_ms);
        rv = count_refresh(u, ops, sm, prefix, len, now_ms, errmsg);
        if (rv == RFS_ENOMEM) {
            return rv;
        }
        rep.status = (uint32_t)rv;
    }
    if (rep.status != 0) {
        rep.error = errmsg;
    } else {
        sp.used_bytes = u->used;
        sp.free_bytes = u->free;
        sp.total_bytes = u->total;
        sp.reserve_bytes = u->min_free;
        sp.fsid = u->fsid;
        sp.host = u->host;
        sp.keys = u->keys;
        sp.keys_exact = u->exact != 0;
        rep.value.len = raftfs__space_reply__get_packed_size(&sp);
        spbuf = rfs_malloc(rep.value.len ? rep.value.len : 1);
        if (spbuf == NULL) {
            return RFS_ENOMEM;
        }
        rep.value.len = raftfs__space_reply__pack(&sp, spbuf);
        rep.value.data = spbuf;
    }
    out->len = raftfs__kv_reply__get_packed_size(&rep);
    out->base = rfs_malloc(out->len ? out->len : 1);
    if (out->base == NULL) {
        rfs_free(spbuf);
        return RFS_ENOMEM;
    }
    out->len = raftfs__kv_reply__pack(&rep, out->base);
    rfs_free(spbuf);
    return 0;
}
