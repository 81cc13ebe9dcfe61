/* util.h: errors, option helpers, deterministic random numbers, progress lines and small file helpers
 * shared by every earsight tool.  Library code reports failures through struct util_err and never
 * prints or exits; tools print the message with util_report and choose the exit code. */
#ifndef EARSIGHT_UTIL_H
#define EARSIGHT_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define EARSIGHT_VERSION "0.1.0"

/* Exit codes shared by all tools. */
enum { UTIL_EXIT_OK = 0, UTIL_EXIT_RUNTIME = 1, UTIL_EXIT_USAGE = 2 };

/* One error message: "FILE: record N: what went wrong" (no tool name, no final period). */
struct util_err {
    char msg[1024];
};

/* Set err->msg with printf formatting (err may be NULL).  Always returns -1 so that
 * `return util_err_set(err, ...)` reads naturally. */
int util_err_set(struct util_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Like util_err_set, appending ": strerror(errno)". */
int util_err_sys(struct util_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print "TOOL: MSG\n" on stderr (tool name from util_set_progname). */
void util_report(const struct util_err *err);
/* Printable copy of untrusted bytes (a name or token read from a file) for a one-line message: controls
 * and non-ASCII bytes as '?', "..." when cut to fit cap. */
void util_printable(char *dst, size_t cap, const void *src, size_t len);
/* The same for a NUL-terminated name (up to 259 bytes shown), as a value usable inside a call:
 * util_err_set(err, "record %lld (%s): ...", i, util_msgname(rec.name).s).  C11 keeps the
 * temporary alive to the end of the full expression. */
struct util_msgname { char s[264]; };
struct util_msgname util_msgname(const char *name);

/* The tool's name for messages ("wav2mel"); set once at the top of main from argv[0]. */
void util_set_progname(const char *argv0);
const char *util_progname(void);
/* Usage error: "TOOL: MSG" and "try 'TOOL --help'" on stderr, then exit(2). */
void util_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* "TOOL (earsight) VERSION" on stdout, exit 0. */
void util_print_version(void) __attribute__((noreturn));
/* The usage error for what getopt_long returned (':' a missing value, '?' an unknown option; the
 * option string must start with ':').  Call from the switch's default case. */
void util_option_error(int c, char *const argv[]) __attribute__((noreturn));
/* The whole command line as one shell-quoted string, for the `history` attribute.  Caller frees. */
char *util_cmdline(int argc, char **argv);

/* Strict number parsing for options: the whole string must parse and lie in [lo, hi].
 * Return 0, or -1 (no message; the caller names the option). */
int util_parse_long(const char *s, long lo, long hi, long *out);
int util_parse_double(const char *s, double lo, double hi, double *out);
/* Parse an option argument or exit 2 naming the option: util_opt_long("--epochs", optarg, 1, 100000). */
long util_opt_long(const char *opt, const char *s, long lo, long hi);
double util_opt_double(const char *opt, const char *s, double lo, double hi);

/* Deterministic random numbers (xoshiro256** seeded by splitmix64): the same seed gives the same
 * sequence on every machine.  util_rng_split derives an independent stream for item i (e.g. record i
 * of an epoch), which is how multi-threaded tools stay independent of the thread count. */
typedef struct {
    uint64_t s[4];
} util_rng;
void util_rng_seed(util_rng *r, uint64_t seed);
util_rng util_rng_split(uint64_t seed, uint64_t stream);
uint64_t util_rng_u64(util_rng *r);
double util_rng_uniform(util_rng *r);           /* [0, 1) with 53 random bits */
double util_rng_normal(util_rng *r);            /* standard normal (Box-Muller, no cached value) */
uint64_t util_rng_below(util_rng *r, uint64_t n); /* uniform in [0, n), unbiased; n > 0 */
void util_shuffle_i64(util_rng *r, int64_t *a, int64_t n); /* Fisher-Yates */

/* Seconds from a monotonic clock. */
double util_now(void);

/* Progress on stderr: shown when stderr is a terminal or verbose is set; otherwise silent.
 * util_progress_update redraws at most ~5 times a second with rate and ETA. */
typedef struct {
    const char *what;     /* "clips", "images", "steps" */
    int64_t total;        /* 0 if unknown */
    int enabled;
    int is_tty;
    double t_start, t_last;
} util_progress;
void util_progress_start(util_progress *p, const char *what, int64_t total, int verbose);
/* done = items finished so far; extra may be NULL or a short text such as "loss 1.234". */
void util_progress_update(util_progress *p, int64_t done, const char *extra);
void util_progress_end(util_progress *p, int64_t done, const char *extra);

/* Number of online CPUs (at least 1). */
int util_ncpu(void);

/* Checked allocation of n*size bytes (overflow checked); NULL and err set on failure. */
void *util_malloc(size_t n, size_t size, struct util_err *err);
void *util_calloc(size_t n, size_t size, struct util_err *err);

/* Write a whole file atomically: data goes to PATH.tmp.PID, then rename.  0 or -1. */
int util_write_file_atomic(const char *path, const void *data, size_t n, struct util_err *err);
/* Read a whole file (at most max_bytes) into a malloc'd buffer.  0 or -1. */
int util_read_file(const char *path, size_t max_bytes, void **data, size_t *n, struct util_err *err);

/* Temporary-name output files: util_atomic_open creates a unique temporary file next to PATH and
 * returns a FILE* for writing; util_atomic_commit closes and renames it to PATH; util_atomic_abort
 * closes and removes it.  PATH "-" means stdout (commit flushes, abort does nothing); an existing
 * device or FIFO (/dev/null) is written in place, never replaced. */
typedef struct {
    FILE *fp;
    char *path;      /* final name, NULL for stdout */
    char *tmp_path;  /* temporary name, NULL for stdout and in-place writes */
} util_atomic_file;
int util_atomic_open(util_atomic_file *af, const char *path, struct util_err *err);
int util_atomic_commit(util_atomic_file *af, struct util_err *err);
void util_atomic_abort(util_atomic_file *af);

/* Sorted recursive directory walk: calls fn(path, ctx) for each regular file, in byte order of the
 * path components.  Returns 0, -1 on error (err set), or fn's non-zero return. */
int util_walk_dir(const char *dir, int (*fn)(const char *path, void *ctx), void *ctx,
                  struct util_err *err);
/* qsort/bsearch comparison of two char * elements (byte order, strcmp). */
int util_cmp_str(const void *a, const void *b);

/* The CPU's vector support, read at run time with cpuid. */
int util_cpu_has_avx512f(void);
int util_cpu_has_avx2_fma(void);

#endif
