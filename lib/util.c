/* util.c: errors, option parsing, deterministic RNG (xoshiro256** / splitmix64), progress lines,
 * atomic output files and a sorted directory walk — the plumbing every tool shares. */
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char progname[64] = "earsight";

int util_err_set(struct util_err *err, const char *fmt, ...)
{
    if (!err) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int util_err_sys(struct util_err *err, const char *fmt, ...)
{
    int e = errno;
    if (!err) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    size_t n = strlen(err->msg);
    snprintf(err->msg + n, sizeof err->msg - n, ": %s", strerror(e));
    return -1;
}

void util_report(const struct util_err *err)
{
    fprintf(stderr, "%s: %s\n", progname, err && err->msg[0] ? err->msg : "unknown error");
}

void util_printable(char *dst, size_t cap, const void *src, size_t len)
{
    const uint8_t *p = src;
    size_t j = 0;
    if (!cap) return;
    for (size_t i = 0; i < len && j + 4 < cap; i++) dst[j++] = p[i] >= 32 && p[i] < 127 ? (char)p[i] : '?';
    if (len > j && j + 3 < cap) { dst[j++] = '.'; dst[j++] = '.'; dst[j++] = '.'; }
    dst[j] = 0;
}

struct util_msgname util_msgname(const char *name)
{
    struct util_msgname m;
    util_printable(m.s, sizeof m.s, name, strlen(name));
    return m;
}

void util_set_progname(const char *argv0)
{
    const char *s = strrchr(argv0, '/');
    snprintf(progname, sizeof progname, "%s", s ? s + 1 : argv0);
}

const char *util_progname(void) { return progname; }

void util_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", progname);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\ntry '%s --help'\n", progname);
    exit(UTIL_EXIT_USAGE);
}

void util_option_error(int c, char *const argv[])
{
    if (c == ':') util_usage_error("option '%s' needs a value", argv[optind - 1]);
    if (c == '?' && optopt > 0 && optopt < 256 && argv[optind - 1][1] != '-')
        util_usage_error("unknown option '-%c'", optopt);
    if (c == '?') util_usage_error("unknown option '%s'", argv[optind - 1]);
    util_usage_error("unhandled option %d", c);
}

void util_print_version(void)
{
    printf("%s (earsight) %s\n", progname, EARSIGHT_VERSION);
    exit(fflush(stdout) == 0 ? 0 : 1);
}

/* Quote for a POSIX shell only when needed, so history lines can be pasted back. */
char *util_cmdline(int argc, char **argv)
{
    size_t cap = 1;
    for (int i = 0; i < argc; i++) cap += 4 * strlen(argv[i]) + 3;
    char *s = malloc(cap), *p = s;
    if (!s) return NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int plain = a[0] != 0;
        for (const char *c = a; *c; c++)
            if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+%@", *c))
                plain = 0;
        if (i) *p++ = ' ';
        if (plain) {
            p = stpcpy(p, a);
        } else {
            *p++ = '\'';
            for (const char *c = a; *c; c++) {
                if (*c == '\'') p = stpcpy(p, "'\\''");
                else if (*c == '\n') *p++ = ' ';
                else *p++ = *c;
            }
            *p++ = '\'';
        }
    }
    *p = 0;
    return s;
}

int util_parse_long(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int util_parse_double(const char *s, double lo, double hi, double *out)
{
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

long util_opt_long(const char *opt, const char *s, long lo, long hi)
{
    long v;
    if (util_parse_long(s, lo, hi, &v) < 0)
        util_usage_error("%s: '%s' is not an integer in [%ld, %ld]", opt, s ? s : "", lo, hi);
    return v;
}

double util_opt_double(const char *opt, const char *s, double lo, double hi)
{
    double v;
    if (util_parse_double(s, lo, hi, &v) < 0)
        util_usage_error("%s: '%s' is not a number in [%g, %g]", opt, s ? s : "", lo, hi);
    return v;
}

/* ---- random numbers ---- */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void util_rng_seed(util_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

util_rng util_rng_split(uint64_t seed, uint64_t stream)
{
    util_rng r;
    uint64_t x = seed;
    uint64_t a = splitmix64(&x);
    util_rng_seed(&r, a ^ (stream * 0xd1342543de82ef95ULL + 0x632be59bd9b4e019ULL));
    return r;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t util_rng_u64(util_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double util_rng_uniform(util_rng *r) { return (double)(util_rng_u64(r) >> 11) * 0x1.0p-53; }

double util_rng_normal(util_rng *r)
{
    double u1 = util_rng_uniform(r), u2 = util_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

uint64_t util_rng_below(util_rng *r, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n, v;
    do v = util_rng_u64(r); while (v >= limit);
    return v % n;
}

void util_shuffle_i64(util_rng *r, int64_t *a, int64_t n)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)util_rng_below(r, (uint64_t)i + 1);
        int64_t t = a[i]; a[i] = a[j]; a[j] = t;
    }
}

double util_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- progress ---- */
void util_progress_start(util_progress *p, const char *what, int64_t total, int verbose)
{
    p->what = what;
    p->total = total;
    p->is_tty = isatty(2);
    p->enabled = p->is_tty || verbose;
    p->t_start = p->t_last = util_now();
}

static void progress_line(util_progress *p, int64_t done, const char *extra, int final)
{
    double t = util_now(), el = t - p->t_start;
    double rate = el > 0 ? done / el : 0;
    char eta[32] = "";
    if (p->total > 0 && rate > 0 && !final) {
        double left = (p->total - done) / rate;
        snprintf(eta, sizeof eta, " ETA %d:%02d", (int)(left / 60), (int)fmod(left, 60));
    }
    char tot[32] = "";
    if (p->total > 0) snprintf(tot, sizeof tot, "/%lld", (long long)p->total);
    fprintf(stderr, "%s%s: %lld%s %s, %.1f/s%s%s%s%s", p->is_tty ? "\r\033[K" : "", progname,
            (long long)done, tot, p->what, rate, eta, extra ? ", " : "", extra ? extra : "",
            (final || !p->is_tty) ? "\n" : "");
    fflush(stderr);
    p->t_last = t;
}

void util_progress_update(util_progress *p, int64_t done, const char *extra)
{
    if (!p->enabled) return;
    double t = util_now();
    /* A terminal redraws 5 times a second; a log (-v into a pipe) gets a line every 10 s. */
    if (t - p->t_last < (p->is_tty ? 0.2 : 10.0)) return;
    progress_line(p, done, extra, 0);
}

void util_progress_end(util_progress *p, int64_t done, const char *extra)
{
    if (!p->enabled) return;
    progress_line(p, done, extra, 1);
}

int util_ncpu(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

void *util_malloc(size_t n, size_t size, struct util_err *err)
{
    if (size && n > SIZE_MAX / size) {
        util_err_set(err, "allocation of %zu x %zu bytes overflows", n, size);
        return NULL;
    }
    size_t bytes = n * size;
    void *p = malloc(bytes ? bytes : 1);
    if (!p) util_err_set(err, "out of memory (%zu bytes)", n * size);
    return p;
}

void *util_calloc(size_t n, size_t size, struct util_err *err)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) util_err_set(err, "out of memory (%zu x %zu bytes)", n, size);
    return p;
}

/* ---- atomic files ---- */
int util_atomic_open(util_atomic_file *af, const char *path, struct util_err *err)
{
    memset(af, 0, sizeof *af);
    if (strcmp(path, "-") == 0) {
        af->fp = stdout;
        return 0;
    }
    /* An existing device or FIFO (/dev/null, a named pipe, /dev/stdout) is written in place: renaming
     * a temporary file over it would replace /dev/null with a regular file for every process on the
     * machine.  Through a symbolic link the temporary file goes next to the link's target. */
    struct stat st;
    char *resolved = lstat(path, &st) == 0 && S_ISLNK(st.st_mode) ? realpath(path, NULL) : NULL;
    const char *target = resolved ? resolved : path;
    if (stat(target, &st) == 0 && !S_ISREG(st.st_mode)) {
        free(resolved);
        if (S_ISDIR(st.st_mode)) return util_err_set(err, "%s: is a directory", path);
        af->fp = fopen(path, "wb");
        if (!af->fp) return util_err_sys(err, "%s", path);
        if (!(af->path = strdup(path))) {
            fclose(af->fp);
            af->fp = NULL;
            return util_err_set(err, "%s: out of memory", path);
        }
        return 0;
    }
    size_t n = strlen(target) + 32;
    af->path = strdup(target);
    free(resolved);
    af->tmp_path = malloc(n);
    if (!af->path || !af->tmp_path) {
        free(af->path); free(af->tmp_path);
        af->path = af->tmp_path = NULL;
        return util_err_set(err, "%s: out of memory", path);
    }
    snprintf(af->tmp_path, n, "%s.tmp.XXXXXX", af->path);
    int fd = mkstemp(af->tmp_path);
    if (fd < 0) {
        util_err_sys(err, "%s: cannot create temporary file", path);
        free(af->path); free(af->tmp_path);
        af->path = af->tmp_path = NULL;
        return -1;
    }
    fchmod(fd, 0644 & ~0u);
    af->fp = fdopen(fd, "wb");
    if (!af->fp) {
        util_err_sys(err, "%s", path);
        close(fd);
        unlink(af->tmp_path);
        free(af->path); free(af->tmp_path);
        af->path = af->tmp_path = NULL;
        return -1;
    }
    return 0;
}

int util_atomic_commit(util_atomic_file *af, struct util_err *err)
{
    if (!af->fp) return util_err_set(err, "output already closed");
    if (!af->path) {  /* stdout */
        af->fp = NULL;
        if (fflush(stdout) != 0 || ferror(stdout)) return util_err_sys(err, "standard output");
        return 0;
    }
    int bad = fflush(af->fp) != 0 || ferror(af->fp);
    bad |= fclose(af->fp) != 0;
    af->fp = NULL;
    if (!af->tmp_path) {  /* written in place */
        if (bad) util_err_sys(err, "%s: write failed", af->path);
    } else if (bad) {
        util_err_sys(err, "%s: write failed", af->path);
        unlink(af->tmp_path);
    } else if (rename(af->tmp_path, af->path) != 0) {
        util_err_sys(err, "%s: cannot rename from temporary file", af->path);
        unlink(af->tmp_path);
        bad = 1;
    }
    free(af->path); free(af->tmp_path);
    af->path = af->tmp_path = NULL;
    return bad ? -1 : 0;
}

void util_atomic_abort(util_atomic_file *af)
{
    if (af->fp && af->path) {
        fclose(af->fp);
        if (af->tmp_path) unlink(af->tmp_path);
    }
    af->fp = NULL;
    free(af->path); free(af->tmp_path);
    af->path = af->tmp_path = NULL;
}

int util_write_file_atomic(const char *path, const void *data, size_t n, struct util_err *err)
{
    util_atomic_file af;
    if (util_atomic_open(&af, path, err) < 0) return -1;
    if (n && fwrite(data, 1, n, af.fp) != n) {
        util_err_sys(err, "%s: write failed", path);
        util_atomic_abort(&af);
        return -1;
    }
    return util_atomic_commit(&af, err);
}

int util_read_file(const char *path, size_t max_bytes, void **data, size_t *n, struct util_err *err)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) return util_err_sys(err, "%s", path);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    if (!buf) { if (f != stdin) fclose(f); return util_err_set(err, "%s: out of memory", path); }
    for (;;) {
        if (len == cap) {
            if (cap >= max_bytes) {
                free(buf);
                if (f != stdin) fclose(f);
                return util_err_set(err, "%s: larger than %zu bytes", path, max_bytes);
            }
            size_t nc = cap * 2 > max_bytes ? max_bytes + 1 : cap * 2;
            char *nb = realloc(buf, nc);
            if (!nb) { free(buf); if (f != stdin) fclose(f); return util_err_set(err, "%s: out of memory", path); }
            buf = nb; cap = nc;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    if (f != stdin) fclose(f);
    if (bad) { free(buf); return util_err_sys(err, "%s: read failed", path); }
    if (len > max_bytes) { free(buf); return util_err_set(err, "%s: larger than %zu bytes", path, max_bytes); }
    *data = buf;
    *n = len;
    return 0;
}

/* ---- directory walk ---- */
int util_cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int util_walk_dir(const char *dir, int (*fn)(const char *path, void *ctx), void *ctx, struct util_err *err)
{
    DIR *d = opendir(dir);
    if (!d) return util_err_sys(err, "%s", dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;  /* ".", ".." and hidden files */
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, cap * sizeof *names);
            if (!nn) { rc = util_err_set(err, "%s: out of memory", dir); goto out; }
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name))) { rc = util_err_set(err, "%s: out of memory", dir); goto out; }
        n++;
    }
    if (n > 1) qsort(names, n, sizeof *names, util_cmp_str);
    for (size_t i = 0; i < n && rc == 0; i++) {
        size_t len = strlen(dir) + strlen(names[i]) + 2;
        char *p = malloc(len);
        if (!p) { rc = util_err_set(err, "%s: out of memory", dir); break; }
        snprintf(p, len, "%s%s%s", dir, dir[0] && dir[strlen(dir) - 1] == '/' ? "" : "/", names[i]);
        struct stat st;
        if (stat(p, &st) != 0) rc = util_err_sys(err, "%s", p);
        else if (S_ISDIR(st.st_mode)) rc = util_walk_dir(p, fn, ctx, err);
        else if (S_ISREG(st.st_mode)) rc = fn(p, ctx);
        free(p);
    }
out:
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    closedir(d);
    return rc;
}

/* ---- CPU features (cpuid; x86-64 only, other machines report none) ---- */
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
static int xgetbv_ok(unsigned mask)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0;  /* OSXSAVE */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & mask) == mask;
}
int util_cpu_has_avx512f(void)
{
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b & (1u << 16)) && xgetbv_ok(0xe6);  /* AVX-512F and the OS saves zmm state */
}
int util_cpu_has_avx2_fma(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 12))) return 0;  /* FMA */
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b & (1u << 5)) && xgetbv_ok(0x6);
}
#else
int util_cpu_has_avx512f(void) { return 0; }
int util_cpu_has_avx2_fma(void) { return 0; }
#endif
