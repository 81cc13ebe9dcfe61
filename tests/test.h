/* test.h: the tiny harness every C test uses.  Each check prints one line the runner counts:
 * "PASS: what", "FAIL: what: why" or "SKIP: what: why"; main returns test_exit(). */
#ifndef EARSIGHT_TEST_H
#define EARSIGHT_TEST_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static int test_failures;

__attribute__((format(printf, 2, 3), unused)) static void test_check(int ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs(ok ? "PASS: " : "FAIL: ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    fflush(stdout);
    va_end(ap);
    if (!ok) test_failures++;
}

__attribute__((format(printf, 1, 2), unused)) static void test_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("SKIP: ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    fflush(stdout);
    va_end(ap);
}

/* Compare two float arrays: prints "what: max abs err A, max rel err R (tol T)".  Relative error is
 * |a-b| / max(|b|, floor) so that values near zero are judged by absolute error at floor. */
__attribute__((unused)) static int test_close(const char *what, const float *got, const float *want, long n, double tol,
                      double floor_)
{
    double max_abs = 0, max_rel = 0;
    long worst = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double s = fabs((double)want[i]);
        double rel = d / (s > floor_ ? s : floor_);
        if (!(d <= max_abs)) max_abs = d;
        if (!(rel <= max_rel)) { max_rel = rel; worst = i; }
    }
    int ok = max_rel <= tol;
    test_check(ok, "%s: max abs err %.3g, max rel err %.3g at %ld (tol %.3g)", what, max_abs, max_rel,
               worst, tol);
    return ok;
}

/* Path of the shared reference data (../shared beside the project), or NULL when absent. */
__attribute__((unused)) static const char *test_shared_dir(void)
{
    const char *d = getenv("EARSIGHT_SHARED");
    struct stat st;
    if (d && stat(d, &st) == 0 && S_ISDIR(st.st_mode)) return d;
    return NULL;
}

__attribute__((unused)) static int test_exit(void) { return test_failures ? 1 : 0; }

#endif
