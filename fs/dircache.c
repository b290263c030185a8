/* See dircache.h. */
#include "dircache.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

static struct fs_dircache_slot *slot_for(struct fs_dircache *c, uint64_t ino)
{
    uint64_t h = ino * 0x9E3779B97F4A7C15ull;
    return &c->slots[(h >> 32) % FS_DIRCACHE_SLOTS];
}

void fs_dircache_init(struct fs_dircache *c)
{
    memset(c->slots, 0, sizeof c->slots);
    pthread_mutex_init(&c->mu, NULL);
}

void fs_dircache_destroy(struct fs_dircache *c)
{
    pthread_mutex_destroy(&c->mu);
}

int fs_dircache_get(struct fs_dircache *c, uint64_t ino, struct fs_inode *out)
{
    struct fs_dircache_slot *s = slot_for(c, ino);
    int rv = -ENOENT;
    pthread_mutex_lock(&c->mu);
    if (s->ino == ino && ino != 0) {
        memset(out, 0, sizeof *out);
        out->a = s->a;
        out->parent = s->parent;
        out->version = s->version;
        rv = 0;
    }
    pthread_mutex_unlock(&c->mu);
    return rv;
}

void fs_dircache_put(struct fs_dircache *c, const struct fs_inode *in)
{
    struct fs_dircache_slot *s = slot_for(c, in->a.ino);
    if (!S_ISDIR(in->a.mode) || in->version == 0) {
        return;
    }
    pthread_mutex_lock(&c->mu);
    s->ino = in->a.ino;
    s->a = in->a;
    s->parent = in->parent;
    s->version = in->version;
    pthread_mutex_unlock(&c->mu);
}

void fs_dircache_drop(struct fs_dircache *c, uint64_t ino)
{
    struct fs_dircache_slot *s = slot_for(c, ino);
    pthread_mutex_lock(&c->mu);
    if (s->ino == ino) {
        s->ino = 0;
    }
    pthread_mutex_unlock(&c->mu);
}
