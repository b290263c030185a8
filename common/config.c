/* The configuration file parser; see config.h.
 *
 * Reading a file: read it whole (bounded by RFS_CONFIG_MAX_BYTES), then go line by line:
 * trim, skip blanks and comments, split at the first '=', look the key up, check the value
 * against its type, refuse a key given twice, and hand the setting to the callback. Building
 * the arguments: one callback turns each setting into one or two argv strings and records
 * "FILE:LINE" beside them, so a program can name the line when its own parser rejects a
 * value (out of range, say). */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alloc.h"
#include "err.h"

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* Trim [*b, *e) in place of the pointers. */
static void trim(const char **b, const char **e)
{
    while (*b < *e && is_space(**b)) {
        (*b)++;
    }
    while (*e > *b && is_space((*e)[-1])) {
        (*e)--;
    }
}

static int bool_value(const char *v, int *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (unsigned i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* Check value against the key's type; on failure write why (without the file:line). */
static int check_value(const struct rfs_config_key *k, const char *v, char *why, size_t cap)
{
    char *end;
    int b;
    switch (k->type) {
        case RFS_CONFIG_STRING:
            return 0;
        case RFS_CONFIG_UINT:
            errno = 0;
            if (v[0] >= '0' && v[0] <= '9') {
                (void)strtoull(v, &end, 10);
                if (*end == '\0' && errno == 0) {
                    return 0;
                }
            }
            snprintf(why, cap, "%s: '%.80s' is not a whole number", k->name, v);
            return -1;
        case RFS_CONFIG_NUMBER: {
            double d;
            errno = 0;
            d = strtod(v, &end);
            if (*end == '\0' && end != v && errno == 0 && isfinite(d) && d >= 0) {
                return 0;
            }
            snprintf(why, cap, "%s: '%.80s' is not a number of 0 or more", k->name, v);
            return -1;
        }
        case RFS_CONFIG_BOOL:
            if (bool_value(v, &b) == 0) {
                return 0;
            }
            snprintf(why, cap, "%s: '%.80s' is not true or false", k->name, v);
            return -1;
    }
    snprintf(why, cap, "%s: unknown type", k->name);
    return -1;
}

__attribute__((format(printf, 4, 5))) static int fail(char *errmsg, const char *path, unsigned line,
                                                      const char *fmt, ...)
{
    char what[RFS_ERRMSG_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    rfs_errmsg_printf(errmsg, "%s:%u: %s", path, line, what);
    return RFS_EINVAL;
}

int rfs_config_parse(const char *path, const char *text, size_t len,
                     const struct rfs_config_key *keys, unsigned n_keys, rfs_config_cb cb,
                     void *data, char *errmsg)
{
    unsigned seen_line[64];
    const char *p = text, *end = text + len;
    unsigned line = 0;
    if (n_keys > sizeof seen_line / sizeof seen_line[0]) {
        rfs_errmsg_printf(errmsg, "%s: too many keys", path);
        return RFS_EINVAL;
    }
    memset(seen_line, 0, sizeof seen_line);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl != NULL ? nl : end;
        const char *kb = p, *ke, *vb, *ve, *eq;
        char value[RFS_CONFIG_MAX_LINE];
        char why[RFS_ERRMSG_SIZE];
        const struct rfs_config_key *k = NULL;
        unsigned ki = 0;
        int rv;

        line++;
        p = nl != NULL ? nl + 1 : end;
        if ((size_t)(le - kb) >= RFS_CONFIG_MAX_LINE) {
            return fail(errmsg, path, line, "line longer than %d bytes", RFS_CONFIG_MAX_LINE - 1);
        }
        if (memchr(kb, '\0', (size_t)(le - kb)) != NULL) {
            return fail(errmsg, path, line, "a NUL byte: not a text file");
        }
        ke = le;
        trim(&kb, &ke);
        if (kb == ke || *kb == '#') {
            continue;
        }
        eq = memchr(kb, '=', (size_t)(ke - kb));
        if (eq == NULL) {
            return fail(errmsg, path, line, "expected 'key = value'");
        }
        vb = eq + 1;
        ve = ke;
        /* A comment after the value: whitespace then '#'. */
        for (const char *c = vb; c < ve; c++) {
            if (*c == '#' && c > vb && is_space(c[-1])) {
                ve = c;
                break;
            }
        }
        ke = eq;
        trim(&kb, &ke);
        trim(&vb, &ve);
        if (kb == ke) {
            return fail(errmsg, path, line, "no key before '='");
        }
        for (unsigned i = 0; i < n_keys; i++) {
            if (strlen(keys[i].name) == (size_t)(ke - kb) &&
                memcmp(keys[i].name, kb, (size_t)(ke - kb)) == 0) {
                k = &keys[i];
                ki = i;
            }
        }
        if (k == NULL) {
            return fail(errmsg, path, line, "unknown key '%.*s'", (int)(ke - kb), kb);
        }
        if (vb == ve) {
            return fail(errmsg, path, line, "%s: no value", k->name);
        }
        if (seen_line[ki] != 0) {
            return fail(errmsg, path, line, "%s is already set on line %u", k->name, seen_line[ki]);
        }
        seen_line[ki] = line;
        memcpy(value, vb, (size_t)(ve - vb));
        value[ve - vb] = '\0';
        if (check_value(k, value, why, sizeof why) != 0) {
            return fail(errmsg, path, line, "%s", why);
        }
        why[0] = '\0';
        rv = cb(data, k, value, line, why);
        if (rv != 0) {
            rfs_errmsg_printf(errmsg, "%s:%u: %s", path, line, why[0] ? why : rfs_strerror(rv));
            return rv;
        }
    }
    return 0;
}

/* ---- arguments ---- */

struct build {
    struct rfs_config_args *a;
    int cap;
    const char *path;
};

static int push(struct build *b, const char *arg, const char *origin)
{
    struct rfs_config_args *a = b->a;
    if (a->argc + 1 >= b->cap) {
        int cap = b->cap ? b->cap * 2 : 16;
        char **argv = rfs_realloc(a->argv, (size_t)cap * sizeof *argv);
        char **orig;
        if (argv == NULL) {
            return RFS_ENOMEM;
        }
        a->argv = argv;
        orig = rfs_realloc(a->origin, (size_t)cap * sizeof *orig);
        if (orig == NULL) {
            return RFS_ENOMEM;
        }
        a->origin = orig;
        b->cap = cap;
    }
    a->argv[a->argc] = rfs_strdup(arg);
    a->origin[a->argc] = origin != NULL ? rfs_strdup(origin) : NULL;
    if (a->argv[a->argc] == NULL || (origin != NULL && a->origin[a->argc] == NULL)) {
        rfs_free(a->argv[a->argc]);
        rfs_free(a->origin[a->argc]);
        return RFS_ENOMEM;
    }
    a->argc++;
    a->argv[a->argc] = NULL; /* argv[argc] is NULL, as getopt and fuse_opt expect */
    a->origin[a->argc] = NULL;
    return 0;
}

static int add_setting(void *data, const struct rfs_config_key *k, const char *value, unsigned line,
                       char *errmsg)
{
    struct build *b = data;
    char origin[RFS_ERRMSG_SIZE];
    char arg[RFS_CONFIG_MAX_LINE + 128];
    int on = 1, rv;
    (void)errmsg;
    snprintf(origin, sizeof origin, "%s:%u", b->path, line);
    if (k->type == RFS_CONFIG_BOOL) {
        (void)bool_value(value, &on);
        if (!on) {
            return 0;
        }
        snprintf(arg, sizeof arg, "%s%s", k->flag != NULL ? "" : "--",
                 k->flag != NULL ? k->flag : k->name);
        rv = push(b, arg, origin);
    } else if (k->flag != NULL) {
        rv = push(b, k->flag, origin);
        if (rv == 0) {
            rv = push(b, value, origin);
        }
    } else {
        snprintf(arg, sizeof arg, "--%s=%s", k->name, value);
        rv = push(b, arg, origin);
    }
    if (rv == 0) {
        b->a->n_from_file++;
    }
    return rv;
}

static int read_file(const char *path, char **out, size_t *len, char *errmsg)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;
    if (f == NULL) {
        rfs_errmsg_printf(errmsg, "cannot read config file %s: %s", path, strerror(errno));
        return RFS_EIO;
    }
    buf = rfs_malloc(RFS_CONFIG_MAX_BYTES + 1);
    if (buf == NULL) {
        fclose(f);
        rfs_errmsg_printf(errmsg, "out of memory");
        return RFS_ENOMEM;
    }
    n = fread(buf, 1, RFS_CONFIG_MAX_BYTES + 1, f);
    if (ferror(f)) {
        rfs_errmsg_printf(errmsg, "cannot read config file %s: %s", path, strerror(errno));
        fclose(f);
        rfs_free(buf);
        return RFS_EIO;
    }
    fclose(f);
    if (n > RFS_CONFIG_MAX_BYTES) {
        rfs_errmsg_printf(errmsg, "config file %s is over %u bytes", path, RFS_CONFIG_MAX_BYTES);
        rfs_free(buf);
        return RFS_ETOOBIG;
    }
    *out = buf;
    *len = n;
    return 0;
}

int rfs_config_args_init(struct rfs_config_args *out, int argc, char *const *argv,
                         const struct rfs_config_key *keys, unsigned n_keys, char *errmsg)
{
    struct build b = {out, 0, NULL};
    int config_at = -1, config_n = 0;
    char *text = NULL;
    size_t len = 0;
    int rv;

    memset(out, 0, sizeof *out);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            break;
        }
        if (strcmp(argv[i], "--config") == 0 || strncmp(argv[i], "--config=", 9) == 0) {
            if (config_at >= 0) {
                rfs_errmsg_printf(errmsg, "--config is given twice");
                return RFS_EINVAL;
            }
            config_at = i;
            if (argv[i][8] == '=') {
                b.path = argv[i] + 9;
                config_n = 1;
            } else if (i + 1 < argc) {
                b.path = argv[i + 1];
                config_n = 2;
            }
            if (b.path == NULL || b.path[0] == '\0') {
                rfs_errmsg_printf(errmsg, "--config needs a file name");
                return RFS_EINVAL;
            }
        }
    }
    rv = push(&b, argc > 0 ? argv[0] : "raftfs", NULL);
    if (rv == 0 && b.path != NULL) {
        rv = read_file(b.path, &text, &len, errmsg);
        if (rv == 0) {
            rv = rfs_config_parse(b.path, text, len, keys, n_keys, add_setting, &b, errmsg);
        }
        rfs_free(text);
    }
    for (int i = 1; rv == 0 && i < argc; i++) {
        if (i >= config_at && i < config_at + config_n) {
            continue;
        }
        rv = push(&b, argv[i], NULL);
    }
    if (rv != 0) {
        if (rv == RFS_ENOMEM) {
            rfs_errmsg_printf(errmsg, "out of memory");
        }
        rfs_config_args_close(out);
    }
    return rv;
}

void rfs_config_args_close(struct rfs_config_args *a)
{
    for (int i = 0; i < a->argc; i++) {
        rfs_free(a->argv[i]);
        rfs_free(a->origin[i]);
    }
    rfs_free(a->argv);
    rfs_free(a->origin);
    memset(a, 0, sizeof *a);
}

const char *rfs_config_args_origin(const struct rfs_config_args *a, int i)
{
    if (i < 0 || i >= a->argc) {
        return NULL;
    }
    return a->origin[i];
}
