/* A C program for `loadc`: exercises malloc, printf, strings, mmap/mprotect, qsort, strtol,
 * errno and setjmp/longjmp from tlibc. Prints "hello.c: all checks passed" at the end. */
#include "tlibc.h"

static int failures;

static void check(int ok, const char *what) {
    if (!ok) {
        printf("hello.c: FAILED: %s\n", what);
        failures++;
    }
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static jmp_buf env;

static void jump_back(int v) {
    longjmp(env, v);
}

int main(int argc, char **argv) {
    printf("hello from C: argc=%d", argc);
    for (int i = 1; i < argc; i++)
        printf(" argv[%d]=%s", i, argv[i]);
    printf("\n");

    /* malloc, realloc, calloc, strings */
    char *s = malloc(16);
    check(s != NULL, "malloc");
    strcpy(s, "Delos");
    s = realloc(s, 64);
    strcat(s, " runs C");
    printf("string: %s (%lu bytes)\n", s, (unsigned long)strlen(s));
    check(strcmp(s, "Delos runs C") == 0, "strcpy/realloc/strcat");
    int *zeros = calloc(100, sizeof(int));
    int sum = 0;
    for (int i = 0; i < 100; i++)
        sum += zeros[i];
    check(sum == 0, "calloc zeroes");
    free(zeros);
    free(s);

    /* snprintf and strtol */
    char buf[64];
    int n = snprintf(buf, sizeof buf, "[%5d|%-4s|%#x|%08.3d]", 42, "ab", 255, 7);
    printf("snprintf: %s (%d)\n", buf, n);
    check(strcmp(buf, "[   42|ab  |0xff|     007]") == 0, "snprintf");
    char *end;
    long v = strtol("  -0x1fz", &end, 0);
    check(v == -31 && *end == 'z', "strtol");
    errno = 0;
    strtol("99999999999999999999", NULL, 10);
    check(errno == ERANGE, "strtol overflow sets ERANGE");

    /* qsort */
    int a[] = {5, -3, 9, 0, 12, -7, 3};
    qsort(a, 7, sizeof(int), cmp_int);
    printf("qsort:");
    for (int i = 0; i < 7; i++)
        printf(" %d", a[i]);
    printf("\n");
    check(a[0] == -7 && a[6] == 12, "qsort");

    /* mmap, write, mprotect, munmap; W^X refused */
    char *page = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check(page != MAP_FAILED, "mmap");
    strcpy(page + 4096, "written to an mmap page");
    printf("mmap: %p holds \"%s\"\n", page, page + 4096);
    check(mprotect(page, 8192, PROT_READ) == 0, "mprotect read-only");
    void *wx = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check(wx == MAP_FAILED && errno == EINVAL, "W^X mapping refused");
    printf("mmap rwx: refused (%s)\n", strerror(errno));
    check(munmap(page, 8192) == 0, "munmap");

    /* setjmp/longjmp */
    int r = setjmp(env);
    if (r == 0)
        jump_back(7);
    check(r == 7, "longjmp");
    printf("setjmp/longjmp: came back with %d\n", r);

    if (failures == 0)
        puts("hello.c: all checks passed");
    return failures;
}
