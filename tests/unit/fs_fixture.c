/* See fs_fixture.h. */
#include "fs_fixture.h"

#include <stdio.h>
#include <stdlib.h>

#include "fs/internal.h"
#include "fs/orphan.h"
#include "tests/lib/cluster.h"

int fs_fixture_setup(void **state)
{
    struct fs_fixture *f = calloc(1, sizeof *f);
    char why[256], errmsg[RFS_ERRMSG_SIZE];
    struct rfs_fs_options o = {0};
    *state = f;
    if (f == NULL) {
        return -1;
    }
    if (!cluster_bins_present(why, sizeof why)) {
        f->skipped = true;
        printf("SKIPPED: %s\n", why);
        return 0;
    }
    if (sharded_start_joined(&f->s, 2, 1, false, NULL, 30000, errmsg) != 0) {
        fprintf(stderr, "setup: %s\n", errmsg);
        return -1;
    }
    o.meta = f->s.meta.group;
    /* Unlinked files: deleted by fs_fixture_collect, not by the background scan. */
    o.orphan_scan_ms = 3600 * 1000;
    if (rfs_fs_open(&f->fs, &o, errmsg) != 0) {
        fprintf(stderr, "fs open: %s\n", errmsg);
        return -1;
    }
    return 0;
}

int fs_fixture_teardown(void **state)
{
    struct fs_fixture *f = *state;
    int bad;
    rfs_fs_close(f->fs);
    bad = sharded_destroy(&f->s);
    free(f);
    return bad == 0 ? 0 : -1;
}

int fs_fixture_collect(struct fs_fixture *f)
{
    return fs_orphans_collect_now(f->fs->orphans);
}
