/* kv/txn_script.c: a transaction written as text, one command a line (kv/client.h), for
 * raftfs kv txn. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../common/alloc.h"
#include "client.h"

void kv_txn_script_clear(struct kv_txn_script *s)
{
    rfs_free(s->reads);
    rfs_free(s->writes);
    rfs_free(s->text);
    memset(s, 0, sizeof *s);
}

static bool is_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r';
}

/* The next whitespace-separated word of *p (NUL-terminated in place), or NULL at the end of
 * the line. */
static char *next_word(char **p)
{
    char *w = *p;
    while (is_blank(*w)) {
        w++;
    }
    if (*w == '\0') {
        *p = w;
        return NULL;
    }
    *p = w;
    while (**p != '\0' && !is_blank(**p)) {
        (*p)++;
    }
    if (**p != '\0') {
        *(*p)++ = '\0';
    }
    return w;
}

static int parse_line(struct kv_txn_script *s, char *line, unsigned lineno, char *errmsg)
{
    char *p = line;
    char *cmd = next_word(&p);
    char *key;
    if (cmd == NULL || cmd[0] == '#') {
        return 0;
    }
    key = strcmp(cmd, "put") == 0 ? p : NULL;
    if (key != NULL) {
        /* put KEY VALUE: the value is the rest of the line after one separator. */
        char *end;
        while (is_blank(*key)) {
            key++;
        }
        end = key;
        while (*end != '\0' && !is_blank(*end)) {
            end++;
        }
        if (end == key) {
            rfs_errmsg_printf(errmsg, "line %u: put needs KEY VALUE", lineno);
            return RFS_EINVAL;
        }
        if ((size_t)(end - key) > KV_TXN_SCRIPT_MAX_KEY) {
            rfs_errmsg_printf(errmsg, "line %u: key longer than %d bytes", lineno,
                              KV_TXN_SCRIPT_MAX_KEY);
            return RFS_EINVAL;
        }
        {
            struct kv_txn_write *w = &s->writes[s->n_writes++];
            char *value = *end != '\0' ? end + 1 : end;
            size_t vlen = strlen(value);
            if (vlen > 0 && value[vlen - 1] == '\r') {
                vlen--;
            }
            *end = '\0';
            w->key = key;
            w->klen = strlen(key);
            w->value = value;
            w->vlen = vlen;
            w->del = false;
        }
        return 0;
    }
    key = next_word(&p);
    if (strcmp(cmd, "del") == 0 || strcmp(cmd, "check") == 0) {
        char *arg = key != NULL ? next_word(&p) : NULL;
        bool del = cmd[0] == 'd';
        if (key == NULL || (del ? arg != NULL : arg == NULL) || next_word(&p) != NULL) {
            rfs_errmsg_printf(errmsg, "line %u: expected '%s'", lineno,
                              del ? "del KEY" : "check KEY VERSION");
            return RFS_EINVAL;
        }
        if (strlen(key) > KV_TXN_SCRIPT_MAX_KEY) {
            rfs_errmsg_printf(errmsg, "line %u: key longer than %d bytes", lineno,
                              KV_TXN_SCRIPT_MAX_KEY);
            return RFS_EINVAL;
        }
        if (del) {
            struct kv_txn_write *w = &s->writes[s->n_writes++];
            memset(w, 0, sizeof *w);
            w->key = key;
            w->klen = strlen(key);
            w->value = "";
            w->del = true;
        } else {
            struct kv_txn_read *r = &s->reads[s->n_reads];
            char *end = NULL;
            unsigned long long v;
            errno = 0;
            v = strtoull(arg, &end, 10);
            if (arg[0] < '0' || arg[0] > '9' || errno != 0 || *end != '\0') {
                rfs_errmsg_printf(
                    errmsg, "line %u: VERSION must be a number (0: the key is absent)", lineno);
                return RFS_EINVAL;
            }
            r->key = key;
            r->klen = strlen(key);
            r->version = v;
            s->n_reads++;
        }
        return 0;
    }
    rfs_errmsg_printf(errmsg, "line %u: unknown command '%.40s' (check, put, del)", lineno, cmd);
    return RFS_EINVAL;
}

int kv_txn_script_parse(struct kv_txn_script *s, const char *text, size_t len, char *errmsg)
{
    size_t lines = 1;
    unsigned lineno = 0;
    char *line;
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < len; i++) {
        lines += text[i] == '\n';
    }
    s->text = rfs_malloc(len + 1);
    s->reads = rfs_calloc(lines, sizeof *s->reads);
    s->writes = rfs_calloc(lines, sizeof *s->writes);
    if (s->text == NULL || s->reads == NULL || s->writes == NULL) {
        rfs_errmsg_printf(errmsg, "out of memory");
        return RFS_ENOMEM;
    }
    memcpy(s->text, text, len);
    s->text[len] = '\0';
    if (strlen(s->text) != len) {
        rfs_errmsg_printf(errmsg, "the script holds a NUL byte");
        return RFS_EINVAL;
    }
    line = s->text;
    while (line != NULL) {
        char *nl = strchr(line, '\n');
        int rv;
        if (nl != NULL) {
            *nl = '\0';
        }
        rv = parse_line(s, line, ++lineno, errmsg);
        if (rv != 0) {
            return rv;
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
    return 0;
}
