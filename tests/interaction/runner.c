/* raftfs-interact: run Raft interaction scripts and compare them with their golden
 * transcripts (format in docs/testing.md, "Interaction scripts").
 *
 *   raftfs-interact [--rewrite] FILE...
 *
 * Each file gets a fresh cluster. A block is a command line, a "----" line, and the
 * expected output up to the next blank line or the end of the file; '#' lines and blank
 * lines between blocks are comments. On the first mismatch in a file the runner prints a
 * diff of that block and moves to the next file. Exit status: 0 if every block matched,
 * 1 if some output differed, 2 for a malformed script, an unreadable file or bad usage.
 * With --rewrite every block's expected output is replaced by the actual one, for review
 * with `git diff` after an intended change. */
#include "interact.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/alloc.h"

#define SEPARATOR "----"

/* The lines of a file or of a transcript, borrowed from one owned text buffer. */
struct lines {
    char *text;
    char **v;
    size_t n;
};

static void lines_close(struct lines *l)
{
    rfs_free(l->text);
    rfs_free(l->v);
    memset(l, 0, sizeof *l);
}

/* Split text (taken over) at newlines; a final newline does not start an empty line. */
static int lines_split(struct lines *l, char *text)
{
    size_t cap = 64;
    char *p = text;
    memset(l, 0, sizeof *l);
    l->text = text;
    l->v = rfs_malloc(cap * sizeof *l->v);
    if (l->v == NULL) {
        return RFS_ENOMEM;
    }
    while (*p != '\0') {
        char *nl = strchr(p, '\n');
        if (l->n == cap) {
            char **v = rfs_realloc(l->v, 2 * cap * sizeof *v);
            if (v == NULL) {
                return RFS_ENOMEM;
            }
            l->v = v;
            cap *= 2;
        }
        l->v[l->n++] = p;
        if (nl == NULL) {
            break;
        }
        *nl = '\0';
        p = nl + 1;
    }
    return 0;
}

static int file_read(const char *path, char **out)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0;
    size_t cap = 0;
    size_t n;
    if (f == NULL) {
        return RFS_EIO;
    }
    do {
        if (cap - len < 4096) {
            char *b = rfs_realloc(buf, cap + 65536);
            if (b == NULL) {
                rfs_free(buf);
                fclose(f);
                return RFS_ENOMEM;
            }
            buf = b;
            cap += 65536;
        }
        n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
    } while (n > 0);
    if (ferror(f)) {
        rfs_free(buf);
        fclose(f);
        return RFS_EIO;
    }
    fclose(f);
    buf[len] = '\0';
    *out = buf;
    return 0;
}

static bool is_blank(const char *s)
{
    return s[strspn(s, " \t\r")] == '\0';
}

/* Print a line diff of expected (file lines first..) against got, from the longest
 * common subsequence: ' ' both, '-' expected only, '+' got only. */
static void print_diff(const char *path, char **exp, size_t n_exp, size_t first, char **got,
                       size_t n_got)
{
    size_t w = n_got + 1;
    unsigned *lcs = rfs_calloc((n_exp + 1) * w, sizeof *lcs);
    size_t i = 0;
    size_t j = 0;
    printf("--- %s (expected, lines %zu-%zu)\n+++ actual\n@@ -%zu,%zu +%zu,%zu @@\n", path, first,
           first + n_exp - 1, first, n_exp, first, n_got);
    if (lcs == NULL) {
        for (i = 0; i < n_exp; i++) {
            printf("-%4zu | %s\n", first + i, exp[i]);
        }
        for (j = 0; j < n_got; j++) {
            printf("+     | %s\n", got[j]);
        }
        return;
    }
    for (size_t a = n_exp; a-- > 0;) {
        for (size_t b = n_got; b-- > 0;) {
            unsigned *cell = &lcs[a * w + b];
            if (strcmp(exp[a], got[b]) == 0) {
                *cell = lcs[(a + 1) * w + b + 1] + 1;
            } else {
                unsigned down = lcs[(a + 1) * w + b];
                unsigned right = lcs[a * w + b + 1];
                *cell = down > right ? down : right;
            }
        }
    }
    while (i < n_exp || j < n_got) {
        if (i < n_exp && j < n_got && strcmp(exp[i], got[j]) == 0) {
            printf(" %4zu | %s\n", first + i, exp[i]);
            i++;
            j++;
        } else if (i < n_exp && (j == n_got || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1])) {
            printf("-%4zu | %s\n", first + i, exp[i]);
            i++;
        } else {
            printf("+     | %s\n", got[j]);
            j++;
        }
    }
    rfs_free(lcs);
}

/* Write the file with each block's expected output replaced by what was produced. */
static int file_rewrite(const char *path, const struct lines *file, const size_t *starts,
                        const size_t *ends, char **outputs, size_t n_blocks)
{
    char tmp[4096];
    FILE *f;
    size_t line = 0;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    f = fopen(tmp, "w");
    if (f == NULL) {
        return RFS_EIO;
    }
    for (size_t b = 0; b <= n_blocks; b++) {
        size_t until = b < n_blocks ? starts[b] : file->n;
        for (; line < until; line++) {
            fprintf(f, "%s\n", file->v[line]);
        }
        if (b < n_blocks) {
            fputs(outputs[b], f);
            line = ends[b];
        }
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        remove(tmp);
        return RFS_EIO;
    }
    return 0;
}

/* Run one script. Returns 0 if every block matched (or was rewritten), 1 on a mismatch,
 * 2 on a malformed script or an I/O error. */
static int run_file(const char *path, bool rewrite)
{
    struct lines file;
    struct interact_env *env = NULL;
    struct interact_out out;
    char *text;
    size_t *starts = NULL;
    size_t *ends = NULL;
    char **outputs = NULL;
    size_t n_blocks = 0;
    size_t i = 0;
    int result = 0;

    if (file_read(path, &text) != 0) {
        fprintf(stderr, "%s: cannot read\n", path);
        return 2;
    }
    if (lines_split(&file, text) != 0) {
        lines_close(&file);
        return 2;
    }
    starts = rfs_calloc(file.n + 1, sizeof *starts);
    ends = rfs_calloc(file.n + 1, sizeof *ends);
    outputs = rfs_calloc(file.n + 1, sizeof *outputs);
    env = interact_env_new();
    interact_out_init(&out);
    if (starts == NULL || ends == NULL || outputs == NULL || env == NULL) {
        result = 2;
        goto out;
    }
    while (i < file.n) {
        struct interact_cmd cmd;
        struct lines got;
        char errmsg[RFS_ERRMSG_SIZE] = "";
        size_t cmd_line = i;
        size_t end;
        if (is_blank(file.v[i]) || file.v[i][0] == '#') {
            i++;
            continue;
        }
        if (i + 1 >= file.n || strcmp(file.v[i + 1], SEPARATOR) != 0) {
            fprintf(stderr, "%s:%zu: expected a \"" SEPARATOR "\" line after the command\n", path,
                    i + 1);
            result = 2;
            goto out;
        }
        end = i + 2;
        while (end < file.n && !is_blank(file.v[end])) {
            end++;
        }
        if (interact_cmd_parse(&cmd, file.v[cmd_line], errmsg) != 0) {
            fprintf(stderr, "%s:%zu: %s\n", path, cmd_line + 1, errmsg);
            interact_cmd_close(&cmd);
            result = 2;
            goto out;
        }
        interact_out_reset(&out);
        interact_env_run(env, &cmd, &out);
        interact_cmd_close(&cmd);

        starts[n_blocks] = i + 2;
        ends[n_blocks] = end;
        outputs[n_blocks] = rfs_strdup(out.buf);
        if (outputs[n_blocks] == NULL || lines_split(&got, rfs_strdup(out.buf)) != 0) {
            result = 2;
            goto out;
        }
        n_blocks++;
        if (!rewrite) {
            bool same = got.n == end - (i + 2);
            for (size_t k = 0; same && k < got.n; k++) {
                same = strcmp(got.v[k], file.v[i + 2 + k]) == 0;
            }
            if (!same) {
                printf("%s:%zu: output of \"%s\" differs\n", path, cmd_line + 1, file.v[cmd_line]);
                print_diff(path, file.v + i + 2, end - (i + 2), i + 3, got.v, got.n);
                result = 1;
            }
        }
        lines_close(&got);
        if (result != 0) {
            break;
        }
        i = end;
    }
    if (rewrite && file_rewrite(path, &file, starts, ends, outputs, n_blocks) != 0) {
        fprintf(stderr, "%s: cannot rewrite\n", path);
        result = 2;
    }
    if (result == 0) {
        printf("%s %s (%zu commands)\n", rewrite ? "rewrote" : "ok", path, n_blocks);
    }

out:
    for (size_t b = 0; b < n_blocks; b++) {
        rfs_free(outputs[b]);
    }
    rfs_free(outputs);
    rfs_free(starts);
    rfs_free(ends);
    interact_out_close(&out);
    interact_env_free(env);
    lines_close(&file);
    return result;
}

int main(int argc, char **argv)
{
    bool rewrite = false;
    int first = 1;
    int failed = 0;
    int worst = 0;
    if (argc > 1 && strcmp(argv[1], "--rewrite") == 0) {
        rewrite = true;
        first = 2;
    }
    if (first >= argc || argv[first][0] == '-') {
        fprintf(stderr, "usage: %s [--rewrite] FILE...\n", argv[0]);
        return 2;
    }
    for (int i = first; i < argc; i++) {
        int rv = run_file(argv[i], rewrite);
        if (rv != 0) {
            failed++;
            worst = rv > worst ? rv : worst;
        }
    }
    if (failed > 0) {
        printf("%d of %d scripts FAILED\n", failed, argc - first);
    }
    return worst;
}
