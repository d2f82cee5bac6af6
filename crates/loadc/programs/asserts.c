/* asserts.c: a failed assert, and abort(), end only this program, saying why.
 * loadc asserts.o assert | loadc asserts.o abort */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "assert";
    printf("asserts.c: mode %s\n", mode);
    if (strcmp(mode, "abort") == 0) {
        abort();
    }
    int asked = strcmp(mode, "assert") == 0;
    assert(!asked && "asked to fail");
    printf("asserts.c: not reached\n");
    return 0;
}
