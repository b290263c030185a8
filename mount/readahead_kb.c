/* The kernel's read-ahead window of a mount; see readahead_kb.h. */
#include "readahead_kb.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"

/* mountinfo escapes space, tab, newline and backslash as \ooo: undo it in place. */
static void unescape(char *s)
{
    char *out = s;
    for (; *s != '\0'; s++) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            *out++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 3;
        } else {
            *out++ = *s;
        }
    }
    *out = '\0';
}

/* The major:minor of the last mount at path in /proc/self/mountinfo, into dev. */
static int mount_dev(const char *path, char *dev, size_t cap)
{
    FILE *fp = fopen("/proc/self/mountinfo", "r");
    char line[4096];
    int found = -1;
    if (fp == NULL) {
        return -1;
    }
    while (fgets(line, sizeof line, fp) != NULL) {
        /* id parent major:minor root mountpoint ... */
        char *save = NULL, *f[5];
        int n = 0;
        for (char *t = strtok_r(line, " ", &save); t != NULL && n < 5;
             t = strtok_r(NULL, " ", &save)) {
            f[n++] = t;
        }
        if (n < 5) {
            continue;
        }
        unescape(f[4]);
        if (strcmp(f[4], path) == 0 && strlen(f[2]) < cap) {
            snprintf(dev, cap, "%s", f[2]);
            found = 0;
        }
    }
    fclose(fp);
    return found;
}

int mount_set_readahead_kb(const char *mountpoint, unsigned kb, char *why, size_t cap)
{
    char real[PATH_MAX], dev[64], path[128];
    FILE *fp;
    if (realpath(mountpoint, real) == NULL) {
        snprintf(why, cap, "%s: %s", mountpoint, strerror(errno));
        return -1;
    }
    if (mount_dev(real, dev, sizeof dev) != 0) {
        snprintf(why, cap, "%s is not in /proc/self/mountinfo", real);
        return -1;
    }
    snprintf(path, sizeof path, "/sys/class/bdi/%s/read_ahead_kb", dev);
    fp = fopen(path, "w");
    if (fp == NULL) {
        snprintf(why, cap, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (fprintf(fp, "%u\n", kb) < 0 || fclose(fp) != 0) {
        snprintf(why, cap, "writing %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

struct soon {
    char *mountpoint;
    unsigned kb;
};

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The window now, or 0 if it cannot be read. */
static unsigned current_kb(const char *mountpoint)
{
    char real[PATH_MAX], dev[64], path[128];
    unsigned kb = 0;
    FILE *fp;
    if (realpath(mountpoint, real) == NULL || mount_dev(real, dev, sizeof dev) != 0) {
        return 0;
    }
    snprintf(path, sizeof path, "/sys/class/bdi/%s/read_ahead_kb", dev);
    fp = fopen(path, "r");
    if (fp != NULL) {
        if (fscanf(fp, "%u", &kb) != 1) {
            kb = 0;
        }
        fclose(fp);
    }
    return kb;
}

static void *soon_main(void *arg)
{
    struct soon *s = arg;
    char why[512] = "";
    bool done = false;
    for (int i = 0; i < 10 && !done; i++) {
        sleep_ms(100);
        if (mount_set_readahead_kb(s->mountpoint, s->kb, why, sizeof why) != 0) {
            break;
        }
        sleep_ms(100);
        done = current_kb(s->mountpoint) == s->kb;
    }
    if (!done) {
        rfs_infof("mount: kernel read-ahead left at its default: %s",
                  why[0] ? why : "it did not stay set");
    }
    free(s->mountpoint);
    free(s);
    return NULL;
}

void mount_set_readahead_kb_soon(const char *mountpoint, unsigned kb)
{
    struct soon *s = calloc(1, sizeof *s);
    pthread_attr_t attr;
    pthread_t t;
    if (s == NULL || (s->mountpoint = strdup(mountpoint)) == NULL) {
        free(s);
        return;
    }
    s->kb = kb;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, soon_main, s) != 0) {
        free(s->mountpoint);
        free(s);
    }
    pthread_attr_destroy(&attr);
}
