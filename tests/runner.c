/* The test runner: runs every registered test (or those whose name contains argv[1])
 * in a forked child with a timeout and ends with "N passed, N failed". */
#include "test.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TESTS 1024

static struct {
    const char *name, *file;
    keng_test_fn fn;
    int timeout;
} tests[MAX_TESTS];
static int ntests;

void keng_test_register(const char *name, const char *file, keng_test_fn fn, int timeout_s)
{
    if (ntests == MAX_TESTS) {
        fprintf(stderr, "too many tests\n");
        abort();
    }
    tests[ntests].name = name;
    tests[ntests].file = file;
    tests[ntests].fn = fn;
    tests[ntests].timeout = timeout_s;
    ntests++;
}

static int cmp_test(const void *a, const void *b)
{
    const __typeof__(tests[0]) *x = a, *y = b;
    int c = strcmp(x->file, y->file);
    return c ? c : strcmp(x->name, y->name);
}

static int run_one(int i)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        alarm((unsigned)tests[i].timeout);
        tests[i].fn();
        /* exit, not _exit: LeakSanitizer checks at exit, so a leak fails the test. */
        exit(0);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
        fprintf(stderr, "  timed out after %d s\n", tests[i].timeout);
    else if (WIFSIGNALED(status))
        fprintf(stderr, "  killed by signal %d\n", WTERMSIG(status));
    else
        fprintf(stderr, "  exit status %d\n", WEXITSTATUS(status));
    return -1;
}

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    const char *suite = getenv("KENG_TEST_SUITE");
    int passed = 0, failed = 0;
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    qsort(tests, (size_t)ntests, sizeof tests[0], cmp_test);
    for (int i = 0; i < ntests; i++) {
        if (filter && !strstr(tests[i].name, filter)) continue;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int rc = run_one(i);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
        printf("%s %s%s%s (%.0f ms)\n", rc == 0 ? "ok  " : "FAIL", suite ? suite : "",
               suite ? "/" : "", tests[i].name, ms);
        if (rc == 0)
            passed++;
        else
            failed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
