/* statfs over the cluster (space.h; the semantics are in docs/fs.md, "Space").
 *
 * A refresh reads the latest configuration from the meta group (the groups and their
 * addresses), then asks every group's leader KV_SPACE at once (one job per group on the
 * filesystem's I/O pool), through a plain client per group kept between refreshes (made
 * again when the group's addresses change). A group that does not answer within
 * FS_SPACE_TIMEOUT_MS keeps the numbers it gave last (logged); a group that never answered
 * counts nothing. Then:
 *
 *   used  = the sum over groups of what the leader's data directory takes (one replica: what
 *           the files cost once, plus the Raft log until it is compacted);
 *   avail = n_groups x the least over groups of what the group may still grow by: the free
 *           space of its leader's filesystem less the server's --min-free-mb reserve, shared
 *           evenly by the groups whose leaders store on that same filesystem (same host and
 *           f_fsid). Data spreads evenly over groups (files are striped over buckets), so the
 *           cluster is full when its fullest group is; and groups sharing a disk (one
 *           machine, as in tests and `raftfs cluster up`) are not counted twice.
 *   blocks = used + avail, bfree = bavail = avail (FS_BLOCK_SIZE units);
 *   files used = the inode keys ('i' keys) of every group, ffree = avail /
 *           FS_SPACE_INODE_BYTES, files = used + ffree. */
#include "space.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../common/alloc.h"
#include "../common/log.h"
#include "../meta/client.h"
#include "../proto/proto.h"
#include "internal.h"

/* The first byte of every inode key (fs/keys.h): the prefix the groups count. */
static const char INODE_PREFIX[] = "i";

struct fs_space_group {
    uint64_t gid;
    char addrs[1024]; /* the list the client was made with */
    struct kv_client *c;
    bool have; /* an answer arrived (these are its numbers) */
    uint64_t used, free, reserve, fsid, keys;
    char host[64];
    int rv; /* of the last ask (a job's result) */
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void fs_space_init(struct fs_space *sp)
{
    memset(sp, 0, sizeof *sp);
    pthread_mutex_init(&sp->mu, NULL);
}

void fs_space_close(struct fs_space *sp)
{
    for (unsigned i = 0; i < sp->n; i++) {
        kv_client_free(sp->groups[i].c);
    }
    rfs_free(sp->groups);
    sp->groups = NULL;
    sp->n = 0;
    pthread_mutex_destroy(&sp->mu);
}

/* Ask one group (an I/O pool job; g is the caller's until the batch is waited for). */
static int ask_group(void *arg)
{
    struct fs_space_group *g = arg;
    char errmsg[RFS_ERRMSG_SIZE];
    struct rfs_buf out = {0};
    Raftfs__SpaceReply *sp;
    int rv = kv_client_call_value(g->c, RAFTFS__KV_OP__KV_SPACE, INODE_PREFIX,
                                  sizeof INODE_PREFIX - 1, false, &out, errmsg);
    if (rv != 0) {
        rfs_warnf("fs: statfs: group %llu: %s (its last numbers stand)", (unsigned long long)g->gid,
                  errmsg);
        rfs_free(out.base);
        g->rv = rv;
        return 0;
    }
    sp = raftfs__space_reply__unpack(&proto_allocator, out.len, out.base);
    rfs_free(out.base);
    if (sp == NULL) {
        rfs_warnf("fs: statfs: group %llu sent a space reply that does not decode",
                  (unsigned long long)g->gid);
        g->rv = RFS_EPROTO;
        return 0;
    }
    g->used = sp->used_bytes;
    g->free = sp->free_bytes;
    g->reserve = sp->reserve_bytes;
    g->fsid = sp->fsid;
    g->keys = sp->keys;
    snprintf(g->host, sizeof g->host, "%s", sp->host != NULL ? sp->host : "");
    g->have = true;
    g->rv = 0;
    raftfs__space_reply__free_unpacked(sp, &proto_allocator);
    return 0;
}

/* "a,b,c" of a group's addresses into buf (cap bytes); false if they do not fit. */
static bool addr_list(const struct meta_group_info *gi, char *buf, size_t cap)
{
    size_t at = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < gi->n_addrs; i++) {
        int w = snprintf(buf + at, cap - at, "%s%s", i > 0 ? "," : "", gi->addrs[i]);
        if (w < 0 || (size_t)w >= cap - at) {
            return false;
        }
        at += (size_t)w;
    }
    return gi->n_addrs > 0;
}

/* Make sp->groups the groups of cfg: keep the clients (and last numbers) of groups whose
 * addresses did not change, connect the others, drop the rest. Returns 0 or -ENOMEM. */
static int groups_sync(struct fs_space *sp, const struct meta_config *cfg)
{
    unsigned n = cfg->n_groups < FS_SPACE_MAX_GROUPS ? cfg->n_groups : FS_SPACE_MAX_GROUPS;
    struct fs_space_group *ng = rfs_calloc(n > 0 ? n : 1, sizeof *ng);
    if (ng == NULL) {
        return -ENOMEM;
    }
    for (unsigned i = 0; i < n; i++) {
        const struct meta_group_info *gi = &cfg->groups[i];
        struct fs_space_group *g = &ng[i];
        char errmsg[RFS_ERRMSG_SIZE];
        g->gid = gi->gid;
        g->rv = RFS_EUNAVAIL;
        if (!addr_list(gi, g->addrs, sizeof g->addrs)) {
            rfs_warnf("fs: statfs: group %llu has no usable address list",
                      (unsigned long long)gi->gid);
            continue;
        }
        for (unsigned k = 0; k < sp->n; k++) {
            struct fs_space_group *old = &sp->groups[k];
            if (old->c != NULL && old->gid == g->gid && strcmp(old->addrs, g->addrs) == 0) {
                *g = *old;
                old->c = NULL; /* moved */
                break;
            }
        }
        if (g->c == NULL && kv_client_connect(&g->c, g->addrs, false, g->gid, FS_SPACE_TIMEOUT_MS,
                                              0, errmsg) != 0) {
            rfs_warnf("fs: statfs: group %llu: %s", (unsigned long long)g->gid, errmsg);
            g->c = NULL;
        }
    }
    for (unsigned k = 0; k < sp->n; k++) {
        kv_client_free(sp->groups[k].c);
    }
    rfs_free(sp->groups);
    sp->groups = ng;
    sp->n = n;
    return 0;
}

/* The sums of the top of this file over the groups that ever answered. */
static void aggregate(const struct fs_space *sp, struct rfs_statfs *out)
{
    uint64_t used = 0, keys = 0, least = UINT64_MAX;
    unsigned counted = 0;
    for (unsigned i = 0; i < sp->n; i++) {
        const struct fs_space_group *g = &sp->groups[i];
        unsigned sharing = 0;
        uint64_t room;
        if (!g->have) {
            continue;
        }
        for (unsigned k = 0; k < sp->n; k++) {
            const struct fs_space_group *o = &sp->groups[k];
            sharing += o->have && o->fsid == g->fsid && strcmp(o->host, g->host) == 0;
        }
        room = (g->free > g->reserve ? g->free - g->reserve : 0) / sharing;
        least = room < least ? room : least;
        used += g->used;
        keys += g->keys;
        counted++;
    }
    if (counted == 0) {
        least = 0;
    }
    least *= counted;
    out->blocks = (used + least) / FS_BLOCK_SIZE;
    out->bfree = least / FS_BLOCK_SIZE;
    out->ffree = least / FS_SPACE_INODE_BYTES;
    out->files = keys + out->ffree;
}

/* Holds sp->mu. Returns 0 (numbers in sp->last) or a negative errno. */
static int space_refresh(struct rfs_fs *fs, struct fs_space *sp)
{
    struct meta_config cfg;
    struct fs_io_batch batch;
    char errmsg[RFS_ERRMSG_SIZE];
    bool any = false;
    int rv;
    memset(&cfg, 0, sizeof cfg);
    rv = meta_client_query(fs->meta, true, 0, &cfg, errmsg);
    if (rv != 0) {
        rfs_warnf("fs: statfs: reading the configuration: %s", errmsg);
        return fs_errno(rv);
    }
    rv = groups_sync(sp, &cfg);
    meta_config_clear(&cfg);
    if (rv != 0) {
        return rv;
    }
    fs_io_batch_init(&batch);
    for (unsigned i = 0; i < sp->n; i++) {
        struct fs_space_group *g = &sp->groups[i];
        if (g->c != NULL && fs_io_submit(fs->io, &batch, ask_group, g) != 0) {
            (void)ask_group(g); /* no memory for a job: ask from here */
        }
    }
    (void)fs_io_batch_wait(&batch, 0);
    fs_io_batch_destroy(&batch);
    for (unsigned i = 0; i < sp->n; i++) {
        any |= sp->groups[i].have;
    }
    if (!any) {
        return -EIO; /* no group ever answered */
    }
    aggregate(sp, &sp->last);
    return 0;
}

int rfs_fs_statfs(struct rfs_fs *fs, struct rfs_statfs *out)
{
    struct fs_space *sp = &fs->space;
    uint64_t now = mono_ms();
    int rv = 0;
    pthread_mutex_lock(&sp->mu);
    if (!sp->have || now - sp->at_ms >= FS_SPACE_CACHE_MS) {
        rv = space_refresh(fs, sp);
        if (rv == 0) {
            sp->have = true;
            sp->at_ms = mono_ms();
        } else if (sp->have) {
            rv = 0; /* the last numbers, a little older */
        }
    }
    if (rv == 0) {
        *out = sp->last;
    }
    pthread_mutex_unlock(&sp->mu);
    return rv;
}
