/* See mount_fixture.h. */
#include "mount_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "tests/lib/cluster.h"
#include "tests/lib/proc.h"
#include "tests/unit/mount_helper.h"

int mount_fixture_start(struct mount_fixture *m, const char *prefix, const char *const *tools,
                        const char *const *mount_args)
{
    const char *bins = getenv("RAFTFS_BIN_DIR");
    char why[512], errmsg[RFS_ERRMSG_SIZE];
    int rv;
    memset(m, 0, sizeof *m);
    snprintf(m->bin, sizeof m->bin, "%s/raftfs-mount", bins != NULL ? bins : "build/asan/bin");
    if (!cluster_bins_present(why, sizeof why) ||
        !mount_helper_usable(m->bin, tools, why, sizeof why)) {
        m->skipped = true;
        printf("SKIPPED: %s\n", why);
        return 0;
    }
    if (tmpdir_make(prefix, m->dir, sizeof m->dir, errmsg) != 0 ||
        sharded_start_joined(&m->s, 2, 1, false, NULL, 30000, errmsg) != 0) {
        fprintf(stderr, "setup: %s\n", errmsg);
        return -1;
    }
    snprintf(m->mnt, sizeof m->mnt, "%s/m", m->dir);
    snprintf(m->log, sizeof m->log, "%s/mount.log", m->dir);
    rv = mount_args != NULL
             ? mount_helper_start_args(m->bin, m->s.meta.group, m->mnt, mount_args, m->log, &m->pid,
                                       errmsg)
             : mount_helper_start(m->bin, m->s.meta.group, m->mnt, m->log, &m->pid, errmsg);
    if (rv != 0) {
        fprintf(stderr, "setup: %s\n", errmsg);
        mount_helper_dump_log(m->log);
        return -1;
    }
    return 0;
}

int mount_fixture_stop(struct mount_fixture *m, const char *other)
{
    int bad = 0;
    if (!m->skipped && m->dir[0] != '\0') {
        bad += mount_helper_teardown(m->mnt, &m->pid, m->log);
    }
    bad += sharded_destroy(&m->s);
    if (m->dir[0] != '\0') {
        /* Never remove a tree that is still mounted: that would empty the filesystem. */
        if (mount_helper_is_mount_point(m->mnt) ||
            (other != NULL && mount_helper_is_mount_point(other))) {
            fprintf(stderr, "teardown: %s is still mounted; left in place\n", m->dir);
            bad++;
        } else if (getenv("RAFTFS_KEEP_TEST_DIRS") == NULL) {
            tmpdir_remove(m->dir);
        }
    }
    return bad;
}
