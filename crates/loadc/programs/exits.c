/* exit() from a nested call ends the program with that status. */
#include "tlibc.h"

static void leave(int code) {
    printf("exits.c: calling exit(%d)\n", code);
    exit(code);
}

int main(void) {
    leave(3);
    return 0;
}
