/* A C program that writes through a null pointer: only its task must die. */
#include "tlibc.h"

int main(void) {
    printf("faulty.c: about to write to address 0x10\n");
    *(volatile int *)0x10 = 1;
    printf("faulty.c: not reached\n");
    return 0;
}
