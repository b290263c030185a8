/* The filesystem's namespace over a real sharded cluster (a meta group and two shard groups),
 * through the fs/ API without FUSE: creating, listing, renaming and removing names with the
 * POSIX errors, link counts, ownership rules, and two rename races that could make a cycle
 * (exactly one wins, the tree stays a tree), extended attributes and a directory's parent.
 * Directories get their own placements, so many of
 * these operations are cross-group transactions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/log.h"
#include "fs/fs.h"
#include "fs/internal.h"
#include "fs_fixture.h"
#include "tests/lib/cluster.h"
#include "tests/lib/sharded.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#define RENAME_EXCHANGE  (1 << 1)
#endif

static const struct rfs_cred root_cred = {.uid = 0, .gid = 0};
static const struct rfs_cred user_cred = {.uid = 1000, .gid = 1000};

static uint64_t mkdir_ok(struct fs_fixture *f, uint64_t parent, const char *name)
{
    struct rfs_attr a;
    assert_int_equal(rfs_fs_mkdir(f->fs, parent, name, 0755, &root_cred, &a), 0);
    assert_true(S_ISDIR(a.mode));
    return a.ino;
}

static uint64_t create_ok(struct fs_fixture *f, uint64_t parent, const char *name)
{
    struct rfs_attr a;
    assert_int_equal(rfs_fs_mknod(f->fs, parent, name, S_IFREG | 0644, 0, &root_cred, &a), 0);
    assert_true(S_ISREG(a.mode));
    return a.ino;
}

struct names {
    char list[512][32];
    unsigned n;
};

static int collect(void *data, const char *name, uint64_t ino, uint32_t mode)
{
    struct names *n = data;
    (void)ino;
    (void)mode;
    if (n->n < 512) {
        snprintf(n->list[n->n++], sizeof n->list[0], "%s", name);
    }
    return 0;
}

/* A regular file that lost its last name is an orphan (nlink 0) until a collector pass
 * deletes it (fs/orphan.h). */
static void assert_gone_after_collect(struct fs_fixture *f, uint64_t ino)
{
    struct rfs_attr a;
    assert_int_equal(rfs_fs_getattr(f->fs, ino, &a), 0);
    assert_int_equal(a.nlink, 0);
    assert_true(fs_fixture_collect(f) >= 1);
    assert_int_equal(rfs_fs_getattr(f->fs, ino, &a), -ENOENT);
}

static void test_create_lookup_remove(void **state)
{
    struct fs_fixture *f = *state;
    struct rfs_attr a, root;
    uint64_t d, x;
    char longname[300];
    FS_SKIP_IF_NEEDED(f);
    assert_int_equal(rfs_fs_getattr(f->fs, FS_ROOT_INO, &root), 0);
    assert_true(S_ISDIR(root.mode));
    d = mkdir_ok(f, FS_ROOT_INO, "d");
    x = create_ok(f, d, "x");
    assert_int_equal(rfs_fs_lookup(f->fs, d, "x", &a), 0);
    assert_int_equal(a.ino, x);
    assert_int_equal(a.nlink, 1);
    /* A file lives beside its directory; a directory has a placement of its own. */
    assert_int_equal(fs_placement(x), fs_placement(d));
    assert_int_equal(rfs_fs_getattr(f->fs, FS_ROOT_INO, &a), 0);
    assert_int_equal(a.nlink, root.nlink + 1);

    assert_int_equal(rfs_fs_mknod(f->fs, d, "x", S_IFREG | 0644, 0, &root_cred, &a), -EEXIST);
    assert_int_equal(rfs_fs_mkdir(f->fs, d, "x", 0755, &root_cred, &a), -EEXIST);
    assert_int_equal(rfs_fs_lookup(f->fs, d, "nope", &a), -ENOENT);
    assert_int_equal(rfs_fs_mknod(f->fs, x, "y", S_IFREG | 0644, 0, &root_cred, &a), -ENOTDIR);
    memset(longname, 'n', 256);
    longname[256] = '\0';
    assert_int_equal(rfs_fs_mknod(f->fs, d, longname, S_IFREG | 0644, 0, &root_cred, &a),
                     -ENAMETOOLONG);
    longname[255] = '\0';
    assert_int_equal(rfs_fs_mknod(f->fs, d, longname, S_IFREG | 0644, 0, &root_cred, &a), 0);
    assert_int_equal(rfs_fs_unlink(f->fs, d, longname, NULL), 0);

    assert_int_equal(rfs_fs_rmdir(f->fs, FS_ROOT_INO, "d", NULL), -ENOTEMPTY);
    assert_int_equal(rfs_fs_unlink(f->fs, FS_ROOT_INO, "d", NULL), -EISDIR);
    assert_int_equal(rfs_fs_rmdir(f->fs, d, "x", NULL), -ENOTDIR);
    assert_int_equal(rfs_fs_unlink(f->fs, d, "x", NULL), 0);
    assert_gone_after_collect(f, x);
    assert_int_equal(rfs_fs_unlink(f->fs, d, "x", NULL), -ENOENT);
    assert_int_equal(rfs_fs_rmdir(f->fs, FS_ROOT_INO, "d", NULL), 0);
    assert_int_equal(rfs_fs_getattr(f->fs, FS_ROOT_INO, &a), 0);
    assert_int_equal(a.nlink, root.nlink);
}

static void test_links_symlinks_fifos(void **state)
{
    struct fs_fixture *f = *state;
    struct rfs_attr a;
    char buf[64];
    uint64_t x;
    FS_SKIP_IF_NEEDED(f);
    x = create_ok(f, FS_ROOT_INO, "file");
    assert_int_equal(rfs_fs_link(f->fs, x, FS_ROOT_INO, "hard", NULL, &a), 0);
    assert_int_equal(a.nlink, 2);
    assert_int_equal(rfs_fs_link(f->fs, FS_ROOT_INO, FS_ROOT_INO, "dirlink", NULL, &a), -EPERM);
    assert_int_equal(rfs_fs_unlink(f->fs, FS_ROOT_INO, "file", NULL), 0);
    assert_int_equal(rfs_fs_getattr(f->fs, x, &a), 0);
    assert_int_equal(a.nlink, 1);
    assert_int_equal(rfs_fs_symlink(f->fs, "hard", FS_ROOT_INO, "sym", &root_cred, &a), 0);
    assert_true(S_ISLNK(a.mode));
    assert_int_equal(a.size, 4);
    assert_int_equal(rfs_fs_readlink(f->fs, a.ino, buf, sizeof buf), 4);
    assert_string_equal(buf, "hard");
    assert_int_equal(rfs_fs_readlink(f->fs, x, buf, sizeof buf), -EINVAL);
    assert_int_equal(rfs_fs_mknod(f->fs, FS_ROOT_INO, "fifo", S_IFIFO | 0600, 0, &root_cred, &a),
                     0);
    assert_true(S_ISFIFO(a.mode));
}

static void test_readdir_in_order_with_offsets(void **state)
{
    struct fs_fixture *f = *state;
    struct names *all = calloc(1, sizeof *all), *rest = calloc(1, sizeof *rest);
    uint64_t d;
    FS_SKIP_IF_NEEDED(f);
    d = mkdir_ok(f, FS_ROOT_INO, "many");
    for (unsigned i = 0; i < 300; i++) {
        char name[32];
        snprintf(name, sizeof name, "f%03u", (i * 7) % 300);
        create_ok(f, d, name);
    }
    assert_int_equal(rfs_fs_readdir(f->fs, d, NULL, collect, all), 0);
    assert_int_equal(all->n, 300);
    for (unsigned i = 0; i < 300; i++) {
        char name[32];
        snprintf(name, sizeof name, "f%03u", i);
        assert_string_equal(all->list[i], name);
    }
    /* Resuming after a name is a stable offset. */
    assert_int_equal(rfs_fs_readdir(f->fs, d, "f149", collect, rest), 0);
    assert_int_equal(rest->n, 150);
    assert_string_equal(rest->list[0], "f150");
    assert_int_equal(rfs_fs_readdir(f->fs, FS_ROOT_INO + 12345, NULL, collect, rest), -ENOENT);
    free(all);
    free(rest);
}

static void test_rename(void **state)
{
    struct fs_fixture *f = *state;
    struct rfs_attr a, before;
    uint64_t a_dir, b_dir, sub, x, y;
    FS_SKIP_IF_NEEDED(f);
    a_dir = mkdir_ok(f, FS_ROOT_INO, "a");
    b_dir = mkdir_ok(f, FS_ROOT_INO, "b");
    sub = mkdir_ok(f, a_dir, "sub");
    x = create_ok(f, a_dir, "x");
    y = create_ok(f, b_dir, "y");
    /* A file across directories (two groups, as like as not). */
    assert_int_equal(rfs_fs_rename(f->fs, a_dir, "x", b_dir, "x2", 0, NULL), 0);
    assert_int_equal(rfs_fs_lookup(f->fs, b_dir, "x2", &a), 0);
    assert_int_equal(a.ino, x);
    assert_int_equal(rfs_fs_lookup(f->fs, a_dir, "x", &a), -ENOENT);
    /* Over an existing file: the old one goes. */
    assert_int_equal(rfs_fs_rename(f->fs, b_dir, "x2", b_dir, "y", 0, NULL), 0);
    assert_gone_after_collect(f, y);
    assert_int_equal(rfs_fs_lookup(f->fs, b_dir, "y", &a), 0);
    assert_int_equal(a.ino, x);
    /* NOREPLACE and EXCHANGE. */
    create_ok(f, b_dir, "z");
    assert_int_equal(rfs_fs_rename(f->fs, b_dir, "y", b_dir, "z", RENAME_NOREPLACE, NULL), -EEXIST);
    assert_int_equal(rfs_fs_rename(f->fs, b_dir, "y", a_dir, "sub", RENAME_EXCHANGE, NULL), 0);
    assert_int_equal(rfs_fs_lookup(f->fs, a_dir, "sub", &a), 0);
    assert_int_equal(a.ino, x);
    assert_int_equal(rfs_fs_lookup(f->fs, b_dir, "y", &a), 0);
    assert_int_equal(a.ino, sub);
    assert_int_equal(rfs_fs_getattr(f->fs, b_dir, &a), 0);
    assert_int_equal(a.nlink, 3); /* it holds a directory now */
    assert_int_equal(rfs_fs_getattr(f->fs, a_dir, &a), 0);
    assert_int_equal(a.nlink, 2);
    /* Directories: not below themselves, not over a file, not over a non-empty one. */
    assert_int_equal(rfs_fs_rename(f->fs, FS_ROOT_INO, "b", sub, "b", 0, NULL), -EINVAL);
    assert_int_equal(rfs_fs_rename(f->fs, FS_ROOT_INO, "b", b_dir, "b", 0, NULL), -EINVAL);
    assert_int_equal(rfs_fs_rename(f->fs, b_dir, "y", b_dir, "z", 0, NULL), -ENOTDIR);
    assert_int_equal(rfs_fs_rename(f->fs, b_dir, "z", FS_ROOT_INO, "a", 0, NULL), -EISDIR);
    assert_int_equal(rfs_fs_rename(f->fs, b_dir, "y", FS_ROOT_INO, "a", 0, NULL), -ENOTEMPTY);
    assert_int_equal(rfs_fs_getattr(f->fs, FS_ROOT_INO, &before), 0);
    assert_int_equal(rfs_fs_rename(f->fs, b_dir, "y", FS_ROOT_INO, "moved", 0, NULL), 0);
    assert_int_equal(rfs_fs_getattr(f->fs, FS_ROOT_INO, &a), 0);
    assert_int_equal(a.nlink, before.nlink + 1);
    assert_int_equal(rfs_fs_rename(f->fs, b_dir, "nope", b_dir, "q", 0, NULL), -ENOENT);
}

/* Two renames that together would make a cycle (a into b, b into a) race: at most one wins,
 * and every directory still reaches the root. */
struct racer {
    struct rfs_fs *fs;
    uint64_t from_parent, to;
    const char *name;
    int rv;
};

static void *race_main(void *data)
{
    struct racer *r = data;
    r->rv = rfs_fs_rename(r->fs, r->from_parent, r->name, r->to, r->name, 0, NULL);
    return NULL;
}

static void test_rename_cycle_race(void **state)
{
    struct fs_fixture *f = *state;
    unsigned wins = 0;
    FS_SKIP_IF_NEEDED(f);
    for (unsigned round = 0; round < 10; round++) {
        char an[16], bn[16];
        struct racer r1, r2;
        pthread_t t1, t2;
        struct rfs_attr a;
        uint64_t ad, bd;
        snprintf(an, sizeof an, "ra%u", round);
        snprintf(bn, sizeof bn, "rb%u", round);
        ad = mkdir_ok(f, FS_ROOT_INO, an);
        bd = mkdir_ok(f, FS_ROOT_INO, bn);
        r1 = (struct racer){.fs = f->fs, .from_parent = FS_ROOT_INO, .to = bd, .name = an};
        r2 = (struct racer){.fs = f->fs, .from_parent = FS_ROOT_INO, .to = ad, .name = bn};
        pthread_create(&t1, NULL, race_main, &r1);
        pthread_create(&t2, NULL, race_main, &r2);
        pthread_join(t1, NULL);
        pthread_join(t2, NULL);
        assert_false(r1.rv == 0 && r2.rv == 0);
        assert_true(r1.rv == 0 || r1.rv == -EINVAL);
        assert_true(r2.rv == 0 || r2.rv == -EINVAL);
        wins += (r1.rv == 0) + (r2.rv == 0);
        /* Both directories are still reachable from the root. */
        assert_int_equal(rfs_fs_lookup(f->fs, r1.rv == 0 ? bd : FS_ROOT_INO, an, &a), 0);
        assert_int_equal(rfs_fs_lookup(f->fs, r2.rv == 0 ? ad : FS_ROOT_INO, bn, &a), 0);
    }
    printf("cycle races: %u of 10 had a winner\n", wins);
    assert_true(wins >= 1);
}

static void test_ownership_rules(void **state)
{
    struct fs_fixture *f = *state;
    struct rfs_attr in = {0}, a;
    uint64_t d, x;
    FS_SKIP_IF_NEEDED(f);
    d = mkdir_ok(f, FS_ROOT_INO, "shared");
    /* An ordinary user cannot create in a 0755 root-owned directory... */
    assert_int_equal(rfs_fs_mknod(f->fs, d, "u", S_IFREG | 0644, 0, &user_cred, &a), -EACCES);
    in.mode = 01777;
    assert_int_equal(rfs_fs_setattr(f->fs, d, &in, RFS_SET_MODE, &root_cred, &a), 0);
    /* ...but can in a world-writable one, and owns what it creates. */
    assert_int_equal(rfs_fs_mknod(f->fs, d, "u", S_IFREG | 0644, 0, &user_cred, &a), 0);
    x = a.ino;
    assert_int_equal(a.uid, 1000);
    assert_int_equal(a.gid, 1000);
    /* chmod: only the owner (or root); chown of the uid: only root. */
    in.mode = 0600;
    assert_int_equal(rfs_fs_setattr(f->fs, d, &in, RFS_SET_MODE, &user_cred, &a), -EPERM);
    assert_int_equal(rfs_fs_setattr(f->fs, x, &in, RFS_SET_MODE, &user_cred, &a), 0);
    assert_int_equal(a.mode & 07777, 0600);
    in.uid = 0;
    assert_int_equal(rfs_fs_setattr(f->fs, x, &in, RFS_SET_UID, &user_cred, &a), -EPERM);
    /* chown clears setuid/setgid on a file. */
    in.mode = 06755;
    assert_int_equal(rfs_fs_setattr(f->fs, x, &in, RFS_SET_MODE, &root_cred, &a), 0);
    in.uid = 1001;
    assert_int_equal(rfs_fs_setattr(f->fs, x, &in, RFS_SET_UID, &root_cred, &a), 0);
    assert_int_equal(a.mode & 07777, 0755);
    /* A setgid directory passes on its group (and the bit to subdirectories). */
    in.mode = 02777;
    in.gid = 555;
    assert_int_equal(rfs_fs_setattr(f->fs, d, &in, RFS_SET_MODE | RFS_SET_GID, &root_cred, &a), 0);
    assert_int_equal(rfs_fs_mkdir(f->fs, d, "sub", 0755, &user_cred, &a), 0);
    assert_int_equal(a.gid, 555);
    assert_true(a.mode & S_ISGID);
    /* Explicit times: the owner only. */
    in.mtime_ns = 1000000000;
    assert_int_equal(rfs_fs_setattr(f->fs, d, &in, RFS_SET_MTIME, &user_cred, &a), -EPERM);
    assert_int_equal(rfs_fs_setattr(f->fs, x, &in, RFS_SET_MTIME, &root_cred, &a), 0);
    assert_int_equal(a.mtime_ns, 1000000000);
}

/* Whether inode ino still has the attribute key `name` in the store. */
static bool xattr_key_present(struct fs_fixture *f, uint64_t ino, const char *name)
{
    char key[FS_KEY_MAX], errmsg[RFS_ERRMSG_SIZE];
    struct kv_client_value v;
    bool found;
    memset(&v, 0, sizeof v);
    assert_int_equal(
        kv_client_get(f->fs->kv, key, fs_key_xattr(key, ino, name, strlen(name)), &v, errmsg), 0);
    found = v.found;
    kv_client_value_clear(&v);
    return found;
}

static void test_xattrs_set_get_list_remove(void **state)
{
    struct fs_fixture *f = *state;
    struct rfs_attr before, after;
    char buf[256], big[300];
    size_t len = 0;
    uint64_t x;
    FS_SKIP_IF_NEEDED(f);
    x = create_ok(f, FS_ROOT_INO, "xa");
    /* Nothing yet: an empty list, and no attribute. */
    assert_int_equal(rfs_fs_listxattr(f->fs, x, buf, sizeof buf, &len), 0);
    assert_int_equal(len, 0);
    assert_int_equal(rfs_fs_getxattr(f->fs, x, "user.a", buf, sizeof buf, &len), -ENODATA);
    /* security.capability's absence is remembered (the kernel asks before every write), but
     * not past a change made here. */
    assert_int_equal(rfs_fs_getxattr(f->fs, x, "security.capability", buf, sizeof buf, &len),
                     -ENODATA);
    assert_int_equal(rfs_fs_getxattr(f->fs, x, "security.capability", buf, sizeof buf, &len),
                     -ENODATA);
    assert_int_equal(rfs_fs_setxattr(f->fs, x, "security.capability", "cap", 3, 0, &root_cred), 0);
    assert_int_equal(rfs_fs_getxattr(f->fs, x, "security.capability", buf, sizeof buf, &len), 0);
    assert_int_equal(len, 3);
    assert_int_equal(rfs_fs_removexattr(f->fs, x, "security.capability", &root_cred), 0);
    assert_int_equal(rfs_fs_getxattr(f->fs, x, "security.capability", buf, sizeof buf, &len),
                     -ENODATA);
    /* Set bumps the ctime (in the same transaction as the value). */
    assert_int_equal(rfs_fs_getattr(f->fs, x, &before), 0);
    usleep(2000);
    assert_int_equal(rfs_fs_setxattr(f->fs, x, "user.a", "one", 3, 0, &root_cred), 0);
    assert_int_equal(rfs_fs_getattr(f->fs, x, &after), 0);
    assert_true(after.ctime_ns > before.ctime_ns);
    assert_int_equal(after.mtime_ns, before.mtime_ns);
    /* Size probe (cap 0), too small (-ERANGE), then the value. */
    assert_int_equal(rfs_fs_getxattr(f->fs, x, "user.a", NULL, 0, &len), 0);
    assert_int_equal(len, 3);
    assert_int_equal(rfs_fs_getxattr(f->fs, x, "user.a", buf, 2, &len), -ERANGE);
    memset(buf, 0, sizeof buf);
    assert_int_equal(rfs_fs_getxattr(f->fs, x, "user.a", buf, sizeof buf, &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(buf, "one", 3);
    /* XATTR_CREATE on an existing one, XATTR_REPLACE on a missing one. */
    assert_int_equal(rfs_fs_setxattr(f->fs, x, "user.a", "two", 3, XATTR_CREATE, &root_cred),
                     -EEXIST);
    assert_int_equal(rfs_fs_setxattr(f->fs, x, "user.b", "two", 3, XATTR_REPLACE, &root_cred),
                     -ENODATA);
    assert_int_equal(rfs_fs_setxattr(f->fs, x, "user.a", "second", 6, XATTR_REPLACE, &root_cred),
                     0);
    assert_int_equal(rfs_fs_setxattr(f->fs, x, "user.b", "", 0, XATTR_CREATE, &root_cred), 0);
    assert_int_equal(rfs_fs_getxattr(f->fs, x, "user.a", buf, sizeof buf, &len), 0);
    assert_int_equal(len, 6);
    assert_memory_equal(buf, "second", 6);
    assert_int_equal(rfs_fs_getxattr(f->fs, x, "user.b", buf, sizeof buf, &len), 0);
    assert_int_equal(len, 0);
    /* Binary values are kept as given; the other namespaces. */
    for (int i = 0; i < (int)sizeof big; i++) {
        big[i] = (char)i;
    }
    assert_int_equal(rfs_fs_setxattr(f->fs, x, "trusted.t", big, sizeof big, 0, &root_cred), 0);
    assert_int_equal(rfs_fs_setxattr(f->fs, x, "security.s", "s", 1, 0, &root_cred), 0);
    memset(buf, 0, sizeof buf);
    {
        char got[sizeof big];
        assert_int_equal(rfs_fs_getxattr(f->fs, x, "trusted.t", got, sizeof got, &len), 0);
        assert_int_equal(len, sizeof big);
        assert_memory_equal(got, big, sizeof big);
    }
    /* The list: names in key order, each NUL-terminated; probe and -ERANGE too. */
    static const char want[] = "security.s\0trusted.t\0user.a\0user.b";
    assert_int_equal(rfs_fs_listxattr(f->fs, x, NULL, 0, &len), 0);
    assert_int_equal(len, sizeof want);
    assert_int_equal(rfs_fs_listxattr(f->fs, x, buf, sizeof want - 1, &len), -ERANGE);
    assert_int_equal(rfs_fs_listxattr(f->fs, x, buf, sizeof buf, &len), 0);
    assert_int_equal(len, sizeof want);
    assert_memory_equal(buf, want, sizeof want);
    /* Remove: gone, ctime bumped, a second remove finds nothing. */
    assert_int_equal(rfs_fs_getattr(f->fs, x, &before), 0);
    usleep(2000);
    assert_int_equal(rfs_fs_removexattr(f->fs, x, "user.a", &root_cred), 0);
    assert_int_equal(rfs_fs_getattr(f->fs, x, &after), 0);
    assert_true(after.ctime_ns > before.ctime_ns);
    assert_int_equal(rfs_fs_getxattr(f->fs, x, "user.a", buf, sizeof buf, &len), -ENODATA);
    assert_int_equal(rfs_fs_removexattr(f->fs, x, "user.a", &root_cred), -ENODATA);
    assert_int_equal(rfs_fs_listxattr(f->fs, x, buf, sizeof buf, &len), 0);
    assert_int_equal(len, sizeof "security.s\0trusted.t\0user.b");
    /* Directories have them too. */
    x = mkdir_ok(f, FS_ROOT_INO, "xdir");
    assert_int_equal(rfs_fs_setxattr(f->fs, x, "user.d", "dir", 3, 0, &root_cred), 0);
    assert_int_equal(rfs_fs_getxattr(f->fs, x, "user.d", buf, sizeof buf, &len), 0);
    assert_int_equal(len, 3);
}

static void test_xattr_errors(void **state)
{
    struct fs_fixture *f = *state;
    char name[300], buf[16];
    size_t len;
    void *huge;
    uint64_t x, mine;
    struct rfs_attr a;
    FS_SKIP_IF_NEEDED(f);
    x = create_ok(f, FS_ROOT_INO, "xe"); /* root's, 0644 */
    /* Names: too long, empty, outside the namespaces kept. */
    memset(name, 'n', sizeof name);
    memcpy(name, "user.", 5);
    name[256] = '\0';
    assert_int_equal(rfs_fs_setxattr(f->fs, x, name, "v", 1, 0, &root_cred), -ERANGE);
    assert_int_equal(rfs_fs_getxattr(f->fs, x, name, buf, sizeof buf, &len), -ERANGE);
    name[255] = '\0'; /* 255 bytes: fine */
    assert_int_equal(rfs_fs_setxattr(f->fs, x, name, "v", 1, 0, &root_cred), 0);
    assert_int_equal(rfs_fs_removexattr(f->fs, x, name, &root_cred), 0);
    assert_int_equal(rfs_fs_setxattr(f->fs, x, "", "v", 1, 0, &root_cred), -ERANGE);
    assert_int_equal(rfs_fs_setxattr(f->fs, x, "system.posix_acl_access", "v", 1, 0, &root_cred),
                     -EOPNOTSUPP);
    assert_int_equal(rfs_fs_setxattr(f->fs, x, "os2.x", "v", 1, 0, &root_cred), -EOPNOTSUPP);
    assert_int_equal(rfs_fs_getxattr(f->fs, x, "os2.x", buf, sizeof buf, &len), -EOPNOTSUPP);
    assert_int_equal(rfs_fs_removexattr(f->fs, x, "os2.x", &root_cred), -EOPNOTSUPP);
    /* Values: 64 KiB is the most. */
    huge = calloc(1, FS_XATTR_SIZE_MAX + 1);
    assert_non_null(huge);
    assert_int_equal(
        rfs_fs_setxattr(f->fs, x, "user.big", huge, FS_XATTR_SIZE_MAX + 1, 0, &root_cred), -E2BIG);
    assert_int_equal(rfs_fs_setxattr(f->fs, x, "user.big", huge, FS_XATTR_SIZE_MAX, 0, &root_cred),
                     0);
    assert_int_equal(rfs_fs_getxattr(f->fs, x, "user.big", NULL, 0, &len), 0);
    assert_int_equal(len, FS_XATTR_SIZE_MAX);
    free(huge);
    /* Both flags at once, unknown flags. */
    assert_int_equal(
        rfs_fs_setxattr(f->fs, x, "user.f", "v", 1, XATTR_CREATE | XATTR_REPLACE, &root_cred),
        -EINVAL);
    assert_int_equal(rfs_fs_setxattr(f->fs, x, "user.f", "v", 1, 0x100, &root_cred), -EINVAL);
    /* Permissions: trusted.* is root's; user.* needs the owner or write permission. */
    assert_int_equal(rfs_fs_setxattr(f->fs, x, "trusted.t", "v", 1, 0, &user_cred), -EPERM);
    assert_int_equal(rfs_fs_setxattr(f->fs, x, "user.u", "v", 1, 0, &user_cred), -EACCES);
    assert_int_equal(rfs_fs_setxattr(f->fs, x, "user.u", "v", 1, 0, &root_cred), 0);
    assert_int_equal(rfs_fs_removexattr(f->fs, x, "user.u", &user_cred), -EACCES);
    assert_int_equal(rfs_fs_removexattr(f->fs, x, "trusted.t", &user_cred), -EPERM);
    /* ...write permission without ownership is enough... */
    {
        struct rfs_attr in = {.mode = 0666};
        assert_int_equal(rfs_fs_setattr(f->fs, x, &in, RFS_SET_MODE, &root_cred, &a), 0);
    }
    assert_int_equal(rfs_fs_setxattr(f->fs, x, "user.u", "w", 1, 0, &user_cred), 0);
    assert_int_equal(rfs_fs_removexattr(f->fs, x, "user.u", &user_cred), 0);
    /* ...and so is ownership without write permission. */
    {
        struct rfs_attr in = {.mode = 0777};
        assert_int_equal(rfs_fs_setattr(f->fs, FS_ROOT_INO, &in, RFS_SET_MODE, &root_cred, &a), 0);
        assert_int_equal(
            rfs_fs_mknod(f->fs, FS_ROOT_INO, "xmine", S_IFREG | 0444, 0, &user_cred, &a), 0);
        mine = a.ino;
        in.mode = 0755;
        assert_int_equal(rfs_fs_setattr(f->fs, FS_ROOT_INO, &in, RFS_SET_MODE, &root_cred, &a), 0);
    }
    assert_int_equal(rfs_fs_setxattr(f->fs, mine, "user.o", "v", 1, 0, &user_cred), 0);
    assert_int_equal(rfs_fs_removexattr(f->fs, mine, "user.o", &user_cred), 0);
    /* No such inode. */
    assert_int_equal(rfs_fs_setxattr(f->fs, x + 100000, "user.a", "v", 1, 0, &root_cred), -ENOENT);
    assert_int_equal(rfs_fs_getxattr(f->fs, x + 100000, "user.a", buf, sizeof buf, &len), -ENOENT);
    assert_int_equal(rfs_fs_listxattr(f->fs, x + 100000, buf, sizeof buf, &len), -ENOENT);
}

/* An inode's attributes go with it (unlink of the last name, rmdir, rename over), not before. */
static void test_xattrs_go_with_their_inode(void **state)
{
    struct fs_fixture *f = *state;
    struct rfs_attr a;
    uint64_t x, d, y;
    FS_SKIP_IF_NEEDED(f);
    x = create_ok(f, FS_ROOT_INO, "xg");
    assert_int_equal(rfs_fs_setxattr(f->fs, x, "user.a", "1", 1, 0, &root_cred), 0);
    assert_int_equal(rfs_fs_setxattr(f->fs, x, "trusted.b", "2", 1, 0, &root_cred), 0);
    assert_int_equal(rfs_fs_link(f->fs, x, FS_ROOT_INO, "xg2", NULL, &a), 0);
    assert_int_equal(rfs_fs_unlink(f->fs, FS_ROOT_INO, "xg", NULL), 0);
    assert_true(xattr_key_present(f, x, "user.a")); /* one name left */
    assert_int_equal(rfs_fs_unlink(f->fs, FS_ROOT_INO, "xg2", NULL), 0);
    assert_true(xattr_key_present(f, x, "user.a")); /* an orphan until collected */
    assert_gone_after_collect(f, x);
    assert_false(xattr_key_present(f, x, "user.a"));
    assert_false(xattr_key_present(f, x, "trusted.b"));
    d = mkdir_ok(f, FS_ROOT_INO, "xgd");
    assert_int_equal(rfs_fs_setxattr(f->fs, d, "user.d", "1", 1, 0, &root_cred), 0);
    assert_int_equal(rfs_fs_rmdir(f->fs, FS_ROOT_INO, "xgd", NULL), 0);
    assert_false(xattr_key_present(f, d, "user.d"));
    x = create_ok(f, FS_ROOT_INO, "xgsrc");
    y = create_ok(f, FS_ROOT_INO, "xgdst");
    assert_int_equal(rfs_fs_setxattr(f->fs, x, "user.s", "1", 1, 0, &root_cred), 0);
    assert_int_equal(rfs_fs_setxattr(f->fs, y, "user.d", "1", 1, 0, &root_cred), 0);
    assert_int_equal(rfs_fs_rename(f->fs, FS_ROOT_INO, "xgsrc", FS_ROOT_INO, "xgdst", 0, NULL), 0);
    assert_gone_after_collect(f, y);
    assert_false(xattr_key_present(f, y, "user.d"));
    assert_true(xattr_key_present(f, x, "user.s")); /* the moved file keeps its own */
}

static void test_parent_of_directory(void **state)
{
    struct fs_fixture *f = *state;
    uint64_t a, b, p = 0, x;
    FS_SKIP_IF_NEEDED(f);
    a = mkdir_ok(f, FS_ROOT_INO, "pa");
    b = mkdir_ok(f, a, "pb");
    assert_int_equal(rfs_fs_parent(f->fs, b, &p), 0);
    assert_int_equal(p, a);
    assert_int_equal(rfs_fs_parent(f->fs, a, &p), 0);
    assert_int_equal(p, FS_ROOT_INO);
    assert_int_equal(rfs_fs_parent(f->fs, FS_ROOT_INO, &p), 0);
    assert_int_equal(p, FS_ROOT_INO);
    assert_int_equal(rfs_fs_rename(f->fs, a, "pb", FS_ROOT_INO, "pb", 0, NULL), 0);
    assert_int_equal(rfs_fs_parent(f->fs, b, &p), 0);
    assert_int_equal(p, FS_ROOT_INO);
    x = create_ok(f, a, "file");
    assert_int_equal(rfs_fs_parent(f->fs, x, &p), -ENOTDIR);
}

/* Two filesystems on one cluster (two mounts): each caches the directories it changed, and
 * the other's changes make those entries stale. A stale entry must never give a wrong
 * answer: creates and removes through either one land (the other's names included), a
 * permission the other took away is refused, one it gave is granted, and a directory the
 * other removed is gone. */
static void test_directory_cache_of_two_mounts(void **state)
{
    struct fs_fixture *f = *state;
    struct rfs_fs_options o = {0};
    struct rfs_fs *b = NULL;
    struct rfs_attr a, set;
    struct names n = {0};
    char errmsg[RFS_ERRMSG_SIZE], name[32];
    uint64_t d;
    FS_SKIP_IF_NEEDED(f);
    o.meta = f->s.meta.group;
    assert_int_equal(rfs_fs_open(&b, &o, errmsg), 0);
    d = mkdir_ok(f, FS_ROOT_INO, "two");
    memset(&set, 0, sizeof set);
    set.mode = S_IFDIR | 0777;
    assert_int_equal(rfs_fs_setattr(f->fs, d, &set, RFS_SET_MODE, &root_cred, &a), 0);
    for (int i = 0; i < 20; i++) {
        struct rfs_fs *who = i % 3 == 0 ? b : f->fs;
        snprintf(name, sizeof name, "n%d", i);
        assert_int_equal(rfs_fs_mknod(who, d, name, S_IFREG | 0644, 0, &user_cred, &a), 0);
    }
    for (int i = 0; i < 20; i += 2) {
        struct rfs_fs *who = i % 4 == 0 ? f->fs : b;
        snprintf(name, sizeof name, "n%d", i);
        assert_int_equal(rfs_fs_unlink(who, d, name, &user_cred), 0);
    }
    assert_int_equal(rfs_fs_readdir(b, d, NULL, collect, &n), 0);
    assert_int_equal(n.n, 10);
    assert_int_equal(rfs_fs_getattr(f->fs, d, &a), 0);
    assert_int_equal(a.nlink, 2);

    /* b takes write permission away; f's cached directory still allows it */
    set.mode = S_IFDIR | 0755;
    assert_int_equal(rfs_fs_setattr(b, d, &set, RFS_SET_MODE, &root_cred, &a), 0);
    assert_int_equal(rfs_fs_mknod(f->fs, d, "refused", S_IFREG | 0644, 0, &user_cred, &a), -EACCES);
    assert_int_equal(rfs_fs_unlink(f->fs, d, "n1", &user_cred), -EACCES);
    /* and gives it back: f now caches 0755, which would refuse */
    set.mode = S_IFDIR | 0777;
    assert_int_equal(rfs_fs_setattr(b, d, &set, RFS_SET_MODE, &root_cred, &a), 0);
    assert_int_equal(rfs_fs_mknod(f->fs, d, "granted", S_IFREG | 0644, 0, &user_cred, &a), 0);
    assert_int_equal(rfs_fs_unlink(f->fs, d, "n1", &user_cred), 0);

    /* b empties and removes the directory f has cached */
    memset(&n, 0, sizeof n);
    assert_int_equal(rfs_fs_readdir(b, d, NULL, collect, &n), 0);
    for (unsigned i = 0; i < n.n; i++) {
        assert_int_equal(rfs_fs_unlink(b, d, n.list[i], &root_cred), 0);
    }
    assert_int_equal(rfs_fs_rmdir(b, FS_ROOT_INO, "two", &root_cred), 0);
    assert_int_equal(rfs_fs_mknod(f->fs, d, "late", S_IFREG | 0644, 0, &root_cred, &a), -ENOENT);
    assert_int_equal(rfs_fs_lookup(b, d, "late", &a), -ENOENT);
    rfs_fs_close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_lookup_remove),
        cmocka_unit_test(test_links_symlinks_fifos),
        cmocka_unit_test(test_readdir_in_order_with_offsets),
        cmocka_unit_test(test_rename),
        cmocka_unit_test(test_rename_cycle_race),
        cmocka_unit_test(test_ownership_rules),
        cmocka_unit_test(test_xattrs_set_get_list_remove),
        cmocka_unit_test(test_xattr_errors),
        cmocka_unit_test(test_xattrs_go_with_their_inode),
        cmocka_unit_test(test_parent_of_directory),
        cmocka_unit_test(test_directory_cache_of_two_mounts),
    };
    rfs_log_set_level(RFS_LOG_ERROR);
    /* One cluster for the whole file: the tests use names of their own. */
    return cmocka_run_group_tests(tests, fs_fixture_setup, fs_fixture_teardown);
}
