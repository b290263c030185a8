/* tests/unit/mount_fixture.h: the fixture of the tests that mount through the kernel
 * (test_fs_mount.c, test_fs_posix.c, test_fs_exercise.c): a meta group and two joined shard
 * groups of one server each, and raftfs-mount -f at DIR/m (log DIR/mount.log), in a fresh
 * temp dir. Built on mount_helper.h and tests/lib/sharded.h; no cmocka asserts here. */
#ifndef TESTS_UNIT_MOUNT_FIXTURE_H
#define TESTS_UNIT_MOUNT_FIXTURE_H

#include <stdbool.h>
#include <sys/types.h>

#include "tests/lib/sharded.h"

struct mount_fixture {
    bool skipped; /* mounts cannot be tested here: said SKIPPED, every test skips */
    struct sharded s;
    char bin[300]; /* raftfs-mount */
    char dir[256]; /* the temp dir: mount points, logs, local files */
    char mnt[320]; /* the mount point */
    char log[320]; /* its daemon's log */
    pid_t pid;     /* its daemon, 0 when not running */
};

/* Zero m, then: raftfs-mount from $RAFTFS_BIN_DIR (or build/asan/bin); if the binaries, root,
 * /dev/fuse, fusermount3 or one of tools (NULL-terminated, may be NULL) are missing, print
 * "SKIPPED: why", set m->skipped and return 0. Else make a temp dir named after prefix,
 * start the cluster and mount it with mount_args (NULL-terminated extra raftfs-mount
 * arguments, may be NULL). Returns 0, or -1 with the reason on stderr (what started is left
 * for mount_fixture_stop). */
int mount_fixture_start(struct mount_fixture *m, const char *prefix, const char *const *tools,
                        const char *const *mount_args);

/* Stop the daemon (its log checked for sanitizer reports), the cluster, and remove the temp
 * dir unless RAFTFS_KEEP_TEST_DIRS is set or m->mnt or other (another mount point, or NULL)
 * is still mounted: a tree still mounted is never removed. Returns how many problems it
 * found. */
int mount_fixture_stop(struct mount_fixture *m, const char *other);

#endif
