/* tests/unit/fs_fixture.h: the fixture of the filesystem tests that call fs/ directly
 * (test_fs_ns.c, test_fs_data.c): a meta group and two joined shard groups of one server
 * each, and an rfs_fs open on them; one per test file (cmocka group setup/teardown). */
#ifndef TESTS_UNIT_FS_FIXTURE_H
#define TESTS_UNIT_FS_FIXTURE_H

#include <stdbool.h>

#include "fs/fs.h"
#include "tests/lib/sharded.h"

struct fs_fixture {
    bool skipped; /* binaries missing: said SKIPPED, every test skips */
    struct sharded s;
    struct rfs_fs *fs;
};

/* cmocka group setup and teardown; teardown fails on sanitizer reports in server logs. */
int fs_fixture_setup(void **state);
int fs_fixture_teardown(void **state);
/* Delete the files unlinked so far that nothing holds open: a collector pass that does not
 * wait out the grace period (fs/orphan.h). Returns how many went. */
int fs_fixture_collect(struct fs_fixture *f);

#define FS_SKIP_IF_NEEDED(f)                                                                       \
    do {                                                                                           \
        if ((f)->skipped) {                                                                        \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

#endif
