/* mount/readahead_kb.h: the kernel's read-ahead window for this mount. */
#ifndef MOUNT_READAHEAD_KB_H
#define MOUNT_READAHEAD_KB_H

#include <stddef.h>

/* What raftfs-mount asks for (--readahead-kb): a stripe of file data (1 MiB), so that the
 * kernel asks the daemon for a stripe at a time. */
#define MOUNT_READAHEAD_KB 1024u

/* Set /sys/class/bdi/MAJ:MIN/read_ahead_kb of the mount at mountpoint (found in
 * /proc/self/mountinfo, without a call into the filesystem, which is not serving yet) to kb.
 * FUSE starts a mount at 128 KiB, so a sequential reader's page cache is filled in 128 KiB
 * requests, eight round trips to the daemon per MiB. Returns 0, or -1 with a reason in why
 * (not root, no such mount): the mount works either way. */
int mount_set_readahead_kb(const char *mountpoint, unsigned kb, char *why, size_t cap);

/* The kernel sets the window from the INIT reply (to at most 128 KiB), after the daemon's
 * init handler returns: so from there, start a detached thread that sets it a moment later
 * and checks that it stays (at most 2 s; failures are logged at info level). */
void mount_set_readahead_kb_soon(const char *mountpoint, unsigned kb);

#endif
