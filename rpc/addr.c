/* "host:port" addresses: parsing (IPv4 literal or a name resolved to IPv4) and printing. */
#include "internal.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* Longest host part accepted (a DNS name is at most 253 characters). */
#define ADDR_HOST_MAX 255

int rpc_addr_parse(const char *addr, struct sockaddr_in *out, char *errmsg)
{
    char host[ADDR_HOST_MAX + 1];
    const char *colon, *port_str;
    unsigned long port = 0;
    struct addrinfo hints, *res = NULL;
    size_t host_len;
    int rv;

    if (addr == NULL || addr[0] == '\0') {
        rfs_errmsg_printf(errmsg, "empty address (want host:port)");
        return RFS_EINVAL;
    }
    colon = strrchr(addr, ':');
    if (colon == NULL) {
        rfs_errmsg_printf(errmsg, "address \"%.64s\": missing port (want host:port)", addr);
        return RFS_EINVAL;
    }
    host_len = (size_t)(colon - addr);
    port_str = colon + 1;
    if (host_len == 0) {
        rfs_errmsg_printf(errmsg, "address \"%.64s\": missing host (want host:port)", addr);
        return RFS_EINVAL;
    }
    if (host_len > ADDR_HOST_MAX) {
        rfs_errmsg_printf(errmsg, "address \"%.64s...\": host name too long", addr);
        return RFS_EINVAL;
    }
    if (port_str[0] == '\0') {
        rfs_errmsg_printf(errmsg, "address \"%.64s\": missing port (want host:port)", addr);
        return RFS_EINVAL;
    }
    for (const char *s = port_str; *s != '\0'; s++) {
        if (*s < '0' || *s > '9') {
            rfs_errmsg_printf(errmsg, "address \"%.64s\": port \"%.16s\" is not a number", addr,
                              port_str);
            return RFS_EINVAL;
        }
        port = port * 10 + (unsigned long)(*s - '0');
        if (port > 65535) {
            rfs_errmsg_printf(errmsg, "address \"%.64s\": port %.16s out of range (0-65535)", addr,
                              port_str);
            return RFS_EINVAL;
        }
    }
    memcpy(host, addr, host_len);
    host[host_len] = '\0';

    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &out->sin_addr) == 1) {
        return 0;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    rv = getaddrinfo(host, NULL, &hints, &res);
    if (rv != 0 || res == NULL) {
        rfs_errmsg_printf(errmsg, "address \"%.64s\": cannot resolve \"%.64s\": %s", addr, host,
                          rv != 0 ? gai_strerror(rv) : "no IPv4 address");
        if (res != NULL) {
            freeaddrinfo(res);
        }
        return RFS_EINVAL;
    }
    out->sin_addr = ((const struct sockaddr_in *)(const void *)res->ai_addr)->sin_addr;
    freeaddrinfo(res);
    return 0;
}

void rpc_addr_format(const struct sockaddr_in *sa, char *buf)
{
    char ip[INET_ADDRSTRLEN];
    if (inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof ip) == NULL) {
        snprintf(ip, sizeof ip, "?");
    }
    snprintf(buf, RPC_NAME_SIZE, "%s:%u", ip, (unsigned)ntohs(sa->sin_port));
}
