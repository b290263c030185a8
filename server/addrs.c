/* The address book file, DIR/peers: "ID ADDR" lines, replaced atomically. */
#include "addrs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/err.h"

bool server_addr_valid(const char *addr, size_t len)
{
    if (len == 0 || len >= SERVER_ADDR_MAX || (len == 1 && addr[0] == '-')) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (addr[i] <= ' ' || addr[i] == ',' || (unsigned char)addr[i] >= 0x7f) {
            return false;
        }
    }
    return true;
}

int server_addrs_load(struct server_addrs *b, const char *path, char *errmsg)
{
    char line[SERVER_ADDR_MAX + 64];
    unsigned lineno = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        if (errno == ENOENT) {
            return 0;
        }
        rfs_errmsg_printf(errmsg, "cannot read %s: %s", path, strerror(errno));
        return RFS_EIO;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        char *end;
        char *addr;
        unsigned long long id;
        size_t len;
        lineno++;
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '\0' || line[0] == '#') {
            continue;
        }
        errno = 0;
        id = strtoull(line, &end, 10);
        addr = end + strspn(end, " \t");
        len = strlen(addr);
        if (errno != 0 || end == line || addr == end || id < 1 || id > SERVER_MAX_PEERS ||
            !server_addr_valid(addr, len)) {
            rfs_errmsg_printf(errmsg,
                              "%s line %u: expected 'ID HOST:PORT' with ID 1..%d; fix or delete "
                              "the line (the server rewrites the file as it learns addresses)",
                              path, lineno, SERVER_MAX_PEERS);
            fclose(f);
            return RFS_ECORRUPT;
        }
        memcpy(b->addr[id], addr, len + 1);
    }
    fclose(f);
    return 0;
}

int server_addrs_save(const struct server_addrs *b, const char *path, char *errmsg)
{
    char tmp[1024];
    char dir[1024];
    char *slash;
    FILE *f;
    int fd;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    f = fopen(tmp, "w");
    if (f == NULL) {
        rfs_errmsg_printf(errmsg, "cannot write %s: %s", tmp, strerror(errno));
        return RFS_EIO;
    }
    fprintf(f, "# server id and address, learned from membership changes (overrides --peers)\n");
    for (unsigned id = 1; id <= SERVER_MAX_PEERS; id++) {
        if (b->addr[id][0] != '\0') {
            fprintf(f, "%u %s\n", id, b->addr[id]);
        }
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        rfs_errmsg_printf(errmsg, "cannot write %s: %s", tmp, strerror(errno));
        fclose(f);
        unlink(tmp);
        return RFS_EIO;
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        rfs_errmsg_printf(errmsg, "cannot replace %s: %s", path, strerror(errno));
        unlink(tmp);
        return RFS_EIO;
    }
    snprintf(dir, sizeof dir, "%s", path);
    slash = strrchr(dir, '/');
    if (slash != NULL) {
        *slash = '\0';
    } else {
        snprintf(dir, sizeof dir, ".");
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0 || fsync(fd) != 0) {
        rfs_errmsg_printf(errmsg, "cannot sync directory %s: %s", dir, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return RFS_EIO;
    }
    close(fd);
    return 0;
}
