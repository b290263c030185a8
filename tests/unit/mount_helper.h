/* tests/unit/mount_helper.h: raftfs-mount -f as a child process of a test, for the tests that
 * mount through the kernel (test_fs_mount.c, test_fs_faults.c).
 *
 * Whether real mounts can be tested here, starting a daemon and waiting until its mount
 * answers, stopping it, a lazy unmount that never blocks on a dead daemon, and the daemon's
 * log (dumped, or checked for sanitizer reports). Every wait is bounded; nothing here fails
 * the test itself (return codes, with errmsg of RFS_ERRMSG_SIZE bytes where one is taken). */
#ifndef TESTS_UNIT_MOUNT_HELPER_H
#define TESTS_UNIT_MOUNT_HELPER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Whether real mounts can be tested: bin (raftfs-mount) is built, /dev/fuse is usable,
 * fusermount3 and each of tools (NULL-terminated, or NULL for none) are in PATH, and we run
 * as root. If not, the reason goes into why (cap bytes). */
bool mount_helper_usable(const char *bin, const char *const *tools, char *why, size_t cap);

/* Whether path is a mount point, from /proc/self/mountinfo (never touches the mount). */
bool mount_helper_is_mount_point(const char *path);

/* Run fusermount3 -u -z on mnt if it is still mounted (a lazy unmount never blocks on a dead
 * daemon). */
void mount_helper_force_unmount(const char *mnt);

/* Start `bin --meta meta mnt -f` (mnt created if missing; output to log) and wait until the
 * mount answers. On success *pid is the daemon. Returns 0, or RFS_EIO with errmsg, *pid = 0
 * and nothing left mounted. */
int mount_helper_start(const char *bin, const char *meta, const char *mnt, const char *log,
                       pid_t *pid, char *errmsg);

/* mount_helper_start with extra arguments after -f (extra NULL-terminated, at most 16; NULL:
 * none), e.g. {"-o", "allow_other,default_permissions", NULL}. */
int mount_helper_start_args(const char *bin, const char *meta, const char *mnt,
                            const char *const *extra, const char *log, pid_t *pid, char *errmsg);

/* Stop the daemon *pid if running (SIGTERM: it unmounts; *pid becomes 0), then unmount mnt if
 * it is still mounted. Returns the daemon's exit status, or -1 if none was running. */
int mount_helper_stop(const char *mnt, pid_t *pid);

/* A fixture's teardown of one mount: mount_helper_stop, then report on stderr a daemon that
 * exited with a non-zero status (its log dumped) and any sanitizer report in log. Returns how
 * many problems it found (0 when the daemon stopped cleanly). */
int mount_helper_teardown(const char *mnt, pid_t *pid, const char *log);

/* Whether the log holds a sanitizer report (each such line is printed to stderr). */
bool mount_helper_log_has_sanitizer_report(const char *log);

/* Run sh -c "cd dir && { cmd; }" with its stdout and stderr into out (cap bytes, always
 * NUL-terminated). Returns the exit status, or -1 if it could not run or did not exit. */
int mount_helper_sh(const char *dir, const char *cmd, char *out, size_t cap);

/* Copy the log to stderr (nothing if it cannot be opened). */
void mount_helper_dump_log(const char *log);

#endif
