/* dataset.c: clip lists for wav2mel from list files and from the metadata or folder layouts of ESC-50,
 * ESC-10, UrbanSound8K and GTZAN (include/dataset.h).  The layouts follow the datasets' own releases;
 * labels, folds and class names come from there.  A failure is one line, naming the file and line at
 * fault when there is one (the fuzz target tests/fuzz/fuzz_dataset.c holds the readers to that). */
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "dataset.h"

int dataset_add(dataset_list *L, const char *path, const char *name, int32_t label, int32_t fold,
                struct util_err *err)
{
    if (L->n == L->cap) {
        int64_t nc = L->cap ? 2 * L->cap : 256;
        dataset_item *nv = realloc(L->v, (size_t)nc * sizeof *nv);
        if (!nv) return util_err_set(err, "out of memory");
        L->v = nv;
        L->cap = nc;
    }
    dataset_item *it = &L->v[L->n];
    char base[4096];
    if (!name) {   /* clip id: the file name without directory and extension */
        const char *s = strrchr(path, '/');
        snprintf(base, sizeof base, "%s", s ? s + 1 : path);
        char *dot = strrchr(base, '.');
        if (dot && dot != base) *dot = 0;
        name = base;
    }
    if (strlen(name) > TSZ_MAX_NAME) return util_err_set(err, "%s: clip name longer than %d bytes", path, TSZ_MAX_NAME);
    if (!(it->path = strdup(path))) return util_err_set(err, "out of memory");
    strcpy(it->name, name);
    it->label = label;
    it->fold = fold;
    L->n++;
    return 0;
}

void dataset_free(dataset_list *L)
{
    for (int64_t i = 0; i < L->n; i++) free(L->v[i].path);
    free(L->v);
    if (L->classes) tsz_free_classes(L->classes, L->n_classes);
    memset(L, 0, sizeof *L);
}

/* Split a text buffer into lines in place; returns the next line or NULL.  Handles \r\n. */
static char *next_line(char **cur)
{
    char *s = *cur;
    if (!s || !*s) return NULL;
    char *e = strchr(s, '\n');
    if (e) {
        *e = 0;
        *cur = e + 1;
    } else {
        *cur = s + strlen(s);
    }
    size_t k = strlen(s);
    if (k && s[k - 1] == '\r') s[k - 1] = 0;
    return s;
}

/* Split one CSV line into at most max fields in place (double-quoted fields may hold commas). */
static int csv_split(char *s, char **f, int max)
{
    int n = 0;
    while (n < max) {
        char *out = s;
        f[n++] = s;
        if (*s == '"') {
            char *r = s + 1;
            out = s;
            for (;;) {
                if (!*r) break;
                if (*r == '"' && r[1] == '"') { *out++ = '"'; r += 2; continue; }
                if (*r == '"') { r++; break; }
                *out++ = *r++;
            }
            while (*r && *r != ',') r++;
            int more = *r == ',';
            *out = 0;
            if (!more) break;
            s = r + 1;
        } else {
            char *c = strchr(s, ',');
            if (!c) break;
            *c = 0;
            s = c + 1;
        }
    }
    return n;
}

static int read_text(const char *path, char **text, struct util_err *err)
{
    const size_t max = 256u << 20;   /* bytes of a list or metadata file */
    void *d = NULL;
    size_t n = 0;
    if (strcmp(path, "-") == 0) {
        size_t cap = 0;
        char buf[65536];
        size_t k;
        while ((k = fread(buf, 1, sizeof buf, stdin)) > 0) {
            if (n + k > max) { free(d); return util_err_set(err, "-: list longer than 256 MB"); }
            if (n + k + 1 > cap) {
                cap = (n + k + 1) * 2;
                if (cap > max + 1) cap = max + 1;   /* the limit is on the text, not on the doubled buffer */
                void *nd = realloc(d, cap);
                if (!nd) { free(d); return util_err_set(err, "out of memory"); }
                d = nd;
            }
            memcpy((char *)d + n, buf, k);
            n += k;
        }
        if (ferror(stdin)) { free(d); return util_err_sys(err, "-: read error"); }
    } else if (util_read_file(path, max, &d, &n, err) < 0) {
        return -1;
    }
    char *t = realloc(d, n + 1);
    if (!t) { free(d); return util_err_set(err, "out of memory"); }
    t[n] = 0;
    if (memchr(t, 0, n)) { free(t); return util_err_set(err, "%s: binary data in a text file", path); }
    *text = t;
    return 0;
}

static int parse_int(const char *s, long lo, long hi, int32_t *out)
{
    long v;
    while (*s == ' ') s++;
    if (util_parse_long(s, lo, hi, &v) < 0) return -1;
    *out = (int32_t)v;
    return 0;
}

/* --list FILE: path<TAB>label<TAB>fold[<TAB>name]; label and fold may be left out. */
int dataset_read_list(const char *path, dataset_list *L, struct util_err *err)
{
    char *text, *cur, *line;
    if (read_text(path, &text, err) < 0) return -1;
    cur = text;
    int64_t ln = 0;
    int rc = 0;
    while ((line = next_line(&cur))) {
        ln++;
        if (!line[0] || line[0] == '#') continue;
        char *f[5] = { 0 };
        int nf = 0;
        for (char *s = line; nf < 5;) {
            f[nf++] = s;
            char *t = strchr(s, '\t');
            if (!t) break;
            *t = 0;
            s = t + 1;
        }
        int32_t label = -1, fold = 0;
        if (nf > 4 || !f[0][0] || (nf > 1 && f[1][0] && parse_int(f[1], -1, INT32_MAX, &label) < 0) ||
            (nf > 2 && f[2][0] && parse_int(f[2], 0, INT32_MAX, &fold) < 0) || (nf > 3 && !f[3][0])) {
            rc = util_err_set(err, "%s: line %lld: expected path<TAB>label<TAB>fold[<TAB>name]", path, (long long)ln);
            break;
        }
        if (dataset_add(L, f[0], nf > 3 ? f[3] : NULL, label, fold, err) < 0) { rc = -1; break; }
    }
    free(text);
    if (rc == 0 && L->n == 0) rc = util_err_set(err, "%s: no files listed", path);
    return rc;
}

/* Column index of name in a CSV header, or -1. */
static int col_of(char **h, int nh, const char *name)
{
    for (int i = 0; i < nh; i++)
        if (!strcmp(h[i], name)) return i;
    return -1;
}

/* Record class names by label; the same label must always name the same class. */
static int set_class(dataset_list *L, int label, const char *name, const char *where, struct util_err *err)
{
    if (label < 0 || label > 100000) return util_err_set(err, "%s: class id %d out of range", where, label);
    if (label >= L->n_classes) {
        char **nc = realloc(L->classes, (size_t)(label + 1) * sizeof *nc);
        if (!nc) return util_err_set(err, "out of memory");
        for (int i = L->n_classes; i <= label; i++) nc[i] = NULL;
        L->classes = nc;
        L->n_classes = label + 1;
    }
    if (!L->classes[label]) {
        if (!(L->classes[label] = strdup(name))) return util_err_set(err, "out of memory");
    } else if (strcmp(L->classes[label], name) != 0) {
        return util_err_set(err, "%s: class id %d is both '%s' and '%s'", where, label, L->classes[label], name);
    }
    return 0;
}

static int check_classes(dataset_list *L, const char *where, struct util_err *err)
{
    for (int i = 0; i < L->n_classes; i++)
        if (!L->classes[i]) return util_err_set(err, "%s: no clip of class id %d (ids must be 0..%d)", where, i, L->n_classes - 1);
    return 0;
}

/* A dataset CSV: columns named file_col, fold_col, label_col, class_col; audio at dir/sub(fold)/file. */
static int read_csv_dataset(const char *dir, const char *csv_rel, const char *file_col, const char *fold_col,
                            const char *label_col, const char *class_col, int us8k, dataset_list *L,
                            struct util_err *err)
{
    char csv[4096];
    snprintf(csv, sizeof csv, "%s/%s", dir, csv_rel);
    char *text, *cur, *line;
    if (read_text(csv, &text, err) < 0) return -1;
    cur = text;
    char *h[64];
    int nh = 0, rc = 0;
    line = next_line(&cur);
    if (line) nh = csv_split(line, h, 64);
    int cf = col_of(h, nh, file_col), co = col_of(h, nh, fold_col), cl = col_of(h, nh, label_col),
        cc = col_of(h, nh, class_col);
    if (!line || cf < 0 || co < 0 || cl < 0 || cc < 0) {
        free(text);
        return util_err_set(err, "%s: header must name the columns %s, %s, %s and %s", csv, file_col, fold_col, label_col,
                            class_col);
    }
    int need = cf > co ? cf : co;
    need = need > cl ? need : cl;
    need = need > cc ? need : cc;
    int64_t ln = 1;
    while ((line = next_line(&cur))) {
        ln++;
        if (!line[0]) continue;
        char *f[64];
        int nf = csv_split(line, f, 64);
        char where[4200];
        snprintf(where, sizeof where, "%s: line %lld", csv, (long long)ln);
        int32_t fold, label;
        if (nf <= need || parse_int(f[co], 0, 1000, &fold) < 0 || parse_int(f[cl], 0, 100000, &label) < 0 || !f[cf][0] ||
            strchr(f[cf], '/')) {
            rc = util_err_set(err, "%s: malformed row", where);
            break;
        }
        char path[8192];
        if (us8k) snprintf(path, sizeof path, "%s/audio/fold%d/%s", dir, (int)fold, f[cf]);
        else snprintf(path, sizeof path, "%s/audio/%s", dir, f[cf]);
        if (set_class(L, label, f[cc], where, err) < 0 || dataset_add(L, path, NULL, label, fold, err) < 0) {
            rc = -1;
            break;
        }
    }
    free(text);
    if (rc == 0 && L->n == 0) rc = util_err_set(err, "%s: no rows", csv);
    if (rc == 0) rc = check_classes(L, csv, err);
    return rc;
}

int dataset_read_esc50(const char *dir, dataset_list *L, struct util_err *err)
{
    L->dataset = "esc50";
    return read_csv_dataset(dir, "meta/esc50.csv", "filename", "fold", "target", "category", 0, L, err);
}

int dataset_read_us8k(const char *dir, dataset_list *L, struct util_err *err)
{
    L->dataset = "urbansound8k";
    return read_csv_dataset(dir, "metadata/UrbanSound8K.csv", "slice_file_name", "fold", "classID", "class", 1, L, err);
}

/* Sorted names of the entries of dir that are directories (want_dirs) or audio files. */

static int list_dir(const char *dir, int want_dirs, const char *const *exts, char ***out, int *n_out,
                    struct util_err *err)
{
    DIR *d = opendir(dir);
    if (!d) return util_err_sys(err, "%s", dir);
    char **v = NULL;
    int n = 0, cap = 0, rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[8192];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p, &st) != 0) continue;
        if (want_dirs ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) continue;
        if (exts) {
            const char *dot = strrchr(e->d_name, '.');
            int ok = 0;
            for (int i = 0; dot && exts[i]; i++) ok |= strcasecmp(dot + 1, exts[i]) == 0;
            if (!ok) continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nv = realloc(v, (size_t)cap * sizeof *nv);
            if (!nv) { rc = util_err_set(err, "out of memory"); break; }
            v = nv;
        }
        if (!(v[n] = strdup(e->d_name))) { rc = util_err_set(err, "out of memory"); break; }
        n++;
    }
    closedir(d);
    if (rc) {
        tsz_free_classes(v, n);
        return -1;
    }
    qsort(v, (size_t)n, sizeof *v, util_cmp_str);
    *out = v;
    *n_out = n;
    return 0;
}

/* GTZAN: genres/<genre>/<file>.wav|.au (also genres_original/ or the genre folders directly);
 * genres sorted by name are the labels; files sorted by name; fold = index within genre % 10 + 1. */
int dataset_read_gtzan(const char *dir, dataset_list *L, struct util_err *err)
{
    L->dataset = "gtzan";
    static const char *const exts[] = { "wav", "au", NULL };
    char root[4096];
    struct stat st;
    snprintf(root, sizeof root, "%s/genres", dir);
    if (stat(root, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(root, sizeof root, "%s/genres_original", dir);
        if (stat(root, &st) != 0 || !S_ISDIR(st.st_mode)) snprintf(root, sizeof root, "%s", dir);
    }
    char **genres;
    int ng;
    if (list_dir(root, 1, NULL, &genres, &ng, err) < 0) return -1;
    int rc = 0;
    for (int g = 0; g < ng && rc == 0; g++) {
        char gd[8192];
        snprintf(gd, sizeof gd, "%s/%s", root, genres[g]);
        char **files;
        int nf;
        if (list_dir(gd, 0, exts, &files, &nf, err) < 0) { rc = -1; break; }
        if (nf == 0) rc = util_err_set(err, "%s: no .wav or .au files", gd);
        for (int i = 0; i < nf && rc == 0; i++) {
            char p[16384];
            snprintf(p, sizeof p, "%s/%s", gd, files[i]);
            rc = set_class(L, g, genres[g], gd, err);
            if (rc == 0) rc = dataset_add(L, p, NULL, g, i % 10 + 1, err);
        }
        tsz_free_classes(files, nf);
    }
    tsz_free_classes(genres, ng);
    if (rc == 0 && L->n == 0) rc = util_err_set(err, "%s: no genre folders", root);
    return rc;
}

/* ESC-10 and the original ESC-50 release: "NNN - Class/<fold>-<id>-<take>.ogg".  Folders sorted
 * by name give the labels (so NNN - 1), the class is the text after " - ", the fold the leading
 * number of the file name. */
int dataset_read_esc10(const char *dir, dataset_list *L, struct util_err *err)
{
    L->dataset = "esc10";
    static const char *const exts[] = { "ogg", "wav", "flac", NULL };
    char **cls;
    int nc;
    if (list_dir(dir, 1, NULL, &cls, &nc, err) < 0) return -1;
    int rc = 0, label = 0;
    for (int c = 0; c < nc && rc == 0; c++) {
        const char *dash = strstr(cls[c], " - ");
        if (!isdigit((unsigned char)cls[c][0]) || !dash) continue;   /* not a class folder */
        char cd[8192];
        snprintf(cd, sizeof cd, "%s/%s", dir, cls[c]);
        char **files;
        int nf;
        if (list_dir(cd, 0, exts, &files, &nf, err) < 0) { rc = -1; break; }
        for (int i = 0; i < nf && rc == 0; i++) {
            char p[16384];
            snprintf(p, sizeof p, "%s/%s", cd, files[i]);
            int32_t fold = 0;
            char num[16];
            size_t k = strspn(files[i], "0123456789");
            if (k == 0 || k >= sizeof num || files[i][k] != '-') {
                rc = util_err_set(err, "%s: file name does not start with '<fold>-'", p);
                break;
            }
            memcpy(num, files[i], k);
            num[k] = 0;
            parse_int(num, 0, 1000, &fold);
            rc = set_class(L, label, dash + 3, cd, err);
            if (rc == 0) rc = dataset_add(L, p, NULL, label, fold, err);
        }
        tsz_free_classes(files, nf);
        label++;
    }
    tsz_free_classes(cls, nc);
    if (rc == 0 && L->n == 0) rc = util_err_set(err, "%s: no 'NNN - Class' folders with audio files", dir);
    return rc;
}
