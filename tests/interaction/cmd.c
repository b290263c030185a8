/* Parsing of one script command line: `name arg key=value key=(v1,v2)`. */
#include "interact.h"

#include <ctype.h>
#include <string.h>

#include "../../common/alloc.h"

static char *skip_space(char *p)
{
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    return p;
}

/* Split "(a,b,c)" in place into vals. */
static int parse_list(struct interact_arg *a, char *p, char *errmsg)
{
    size_t len = strlen(p);
    char *item;
    if (len < 2 || p[len - 1] != ')') {
        rfs_errmsg_printf(errmsg, "argument %s: unterminated list", a->key);
        return RFS_EINVAL;
    }
    p[len - 1] = '\0';
    p++;
    if (*p == '\0') {
        return 0; /* empty list */
    }
    item = p;
    for (;;) {
        char *comma = strchr(item, ',');
        if (a->n_vals == INTERACT_MAX_VALS) {
            rfs_errmsg_printf(errmsg, "argument %s: more than %d values", a->key,
                              INTERACT_MAX_VALS);
            return RFS_EINVAL;
        }
        if (comma != NULL) {
            *comma = '\0';
        }
        a->vals[a->n_vals++] = item;
        if (comma == NULL) {
            return 0;
        }
        item = comma + 1;
    }
}

int interact_cmd_parse(struct interact_cmd *cmd, const char *text, char *errmsg)
{
    char *p;
    memset(cmd, 0, sizeof *cmd);
    cmd->line = rfs_strdup(text);
    if (cmd->line == NULL) {
        rfs_errmsg_printf(errmsg, "out of memory");
        return RFS_ENOMEM;
    }
    p = cmd->line;
    for (;;) {
        struct interact_arg *a;
        char *tok;
        char *eq;
        p = skip_space(p);
        if (*p == '\0') {
            break;
        }
        /* A token ends at the next blank, so lists may not contain spaces. */
        tok = p;
        while (*p != '\0' && !isspace((unsigned char)*p)) {
            p++;
        }
        if (*p != '\0') {
            *p++ = '\0';
        }
        if (cmd->name == NULL) {
            cmd->name = tok;
            continue;
        }
        if (cmd->n_args == INTERACT_MAX_ARGS) {
            rfs_errmsg_printf(errmsg, "more than %d arguments", INTERACT_MAX_ARGS);
            return RFS_EINVAL;
        }
        a = &cmd->args[cmd->n_args++];
        a->key = tok;
        eq = strchr(tok, '=');
        if (eq == NULL) {
            continue;
        }
        *eq = '\0';
        a->has_value = true;
        if (eq[1] == '(') {
            if (parse_list(a, eq + 1, errmsg) != 0) {
                return RFS_EINVAL;
            }
        } else {
            a->vals[a->n_vals++] = eq + 1;
        }
    }
    if (cmd->name == NULL) {
        rfs_errmsg_printf(errmsg, "empty command");
        return RFS_EINVAL;
    }
    return 0;
}

void interact_cmd_close(struct interact_cmd *cmd)
{
    rfs_free(cmd->line);
    memset(cmd, 0, sizeof *cmd);
}
